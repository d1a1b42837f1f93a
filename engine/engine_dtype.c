/* engine_dtype.c — host conversions of BF16, F16 and F32 tensor data to fp32 (unaligned-safe). */
#include <string.h>

#include "engine_backend_int.h"

float engine_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE half to single, exact for every input (subnormals, inf, NaN). */
float engine_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

size_t engine_dtype_size(enum engine_dtype dt)
{
    return dt == ENGINE_DTYPE_F32 ? 4 : 2;
}

void engine_dtype_to_f32(enum engine_dtype dt, const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    if (dt == ENGINE_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = dt == ENGINE_DTYPE_BF16 ? engine_bf16_to_f32(h) : engine_f16_to_f32(h);
    }
}
