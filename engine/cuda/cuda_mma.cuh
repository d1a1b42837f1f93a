/* cuda_mma.cuh — the tensor-core building blocks shared by the GEMM and attention kernels:
 * one mma.sync m16n8k16 (bf16 operands, fp32 accumulators in place), fp32 pairs rounded to a
 * packed bf16x2 operand register, and 8 consecutive fp32 (32-byte aligned) as an operand's 4
 * registers. One definition, so every kernel rounds and multiplies the same way. */
#ifndef NY_CUDA_MMA_CUH
#define NY_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ static void cuda_mma_bf16(float *d, uint32_t a0, uint32_t a1,
                                                     uint32_t a2, uint32_t a3, uint32_t b0,
                                                     uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ static uint32_t cuda_pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ static uint4 cuda_load_x8(const float *p)
{
    float4 a = *reinterpret_cast<const float4 *>(p), b = *reinterpret_cast<const float4 *>(p + 4);
    return make_uint4(cuda_pack_bf16x2(a.x, a.y), cuda_pack_bf16x2(a.z, a.w),
                      cuda_pack_bf16x2(b.x, b.y), cuda_pack_bf16x2(b.z, b.w));
}

#endif
