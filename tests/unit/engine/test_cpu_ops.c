/* test_cpu_ops.c — the CPU backend's primitives against hand-computed values: dtype conversion,
 * embedding, RMSNorm, RoPE, matmul with per-request LoRA and row selection, SwiGLU, residual add,
 * causal GQA attention over the KV cache, argmax ties and NaN, and range errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engine_backend_int.h"

static const struct engine_backend_ops *ops = &engine_cpu_ops;
static struct engine_backend *be;

static int setup(void **state)
{
    (void)state;
    return ops->create(2, 0, &be, NULL);
}

static int teardown(void **state)
{
    (void)state;
    ops->destroy(be);
    return 0;
}

static struct engine_buf *act(const float *v, size_t n)
{
    struct engine_buf *b;
    assert_int_equal(ops->buf_alloc(be, n, &b, NULL), NY_OK);
    if (v)
        assert_int_equal(ops->buf_write(be, b, 0, v, n, NULL), NY_OK);
    return b;
}

static struct engine_buf *weight(const float *v, size_t rows, size_t cols)
{
    struct engine_buf *b;
    assert_int_equal(ops->weight_upload(be, ENGINE_DTYPE_F32, v, rows, cols, &b, NULL), NY_OK);
    return b;
}

static void buf_get(const struct engine_buf *b, float *out, size_t n)
{
    assert_int_equal(ops->buf_read(be, b, 0, out, n, NULL), NY_OK);
}

/* A batch of requests with the given row counts, slots 0.., positions pos0, adapters. */
struct batch {
    int start[8], slot[8], pos0[8], adapter[8];
    struct engine_batch b;
};

static void batch_init(struct batch *bt, int n, const int *rows, const int *pos0,
                       const int *adapter)
{
    bt->start[0] = 0;
    for (int s = 0; s < n; s++) {
        bt->start[s + 1] = bt->start[s] + rows[s];
        bt->slot[s] = s;
        bt->pos0[s] = pos0 ? pos0[s] : 0;
        bt->adapter[s] = adapter ? adapter[s] : -1;
    }
    bt->b = (struct engine_batch){bt->start[n], n, bt->start, bt->slot, bt->pos0, bt->adapter};
    assert_int_equal(ops->step_begin(be, &bt->b, NULL), NY_OK);
}

static void test_dtypes(void **state)
{
    (void)state;
    assert_true(engine_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(engine_bf16_to_f32(0xc040) == -3.0f);
    assert_true(engine_f16_to_f32(0x3c00) == 1.0f);
    assert_true(engine_f16_to_f32(0xc000) == -2.0f);
    assert_true(engine_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(engine_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(isinf(engine_f16_to_f32(0x7c00)));
    assert_true(isnan(engine_f16_to_f32(0x7e00)));
    assert_true(engine_f16_to_f32(0x7bff) == 65504.0f);
    uint8_t raw[5] = {0xff, 0x80, 0x3f, 0x00, 0x40}; /* unaligned bf16 1.0 and 2.0 at +1 */
    float out[2];
    engine_dtype_to_f32(ENGINE_DTYPE_BF16, raw + 1, out, 2);
    assert_true(out[0] == 1.0f && out[1] == 2.0f);
}

static void test_norm_rope_swiglu_add_embed(void **state)
{
    (void)state;
    struct batch bt;
    int rows[1] = {2}, pos0[1] = {1};
    batch_init(&bt, 1, rows, pos0, NULL);
    float xv[4] = {3, 4, 1, -1}, wv[2] = {1, 2}, out[4];
    struct engine_buf *x = act(xv, 4), *w = weight(wv, 1, 2), *y = act(NULL, 4);
    assert_int_equal(ops->rmsnorm(be, x, w, 2, 0.0f, y, NULL), NY_OK);
    buf_get(y, out, 4); /* [3,4]: rms = sqrt(12.5); [1,-1]: rms 1 */
    assert_true(fabsf(out[0] - 3 / sqrtf(12.5f)) < 1e-6f);
    assert_true(fabsf(out[1] - 8 / sqrtf(12.5f)) < 1e-6f);
    assert_true(fabsf(out[2] - 1) < 1e-6f && fabsf(out[3] + 2) < 1e-6f);
    /* rope, head_dim 2, inv_freq 1: row 0 at position 1, row 1 at position 2 */
    float rv[4] = {1, 0, 0, 1}, inv = 1.0f;
    struct engine_buf *r = act(rv, 4);
    assert_int_equal(ops->rope(be, r, 1, 2, &inv, 1.0f, NULL), NY_OK);
    buf_get(r, out, 4);
    assert_true(fabsf(out[0] - cosf(1)) < 1e-6f && fabsf(out[1] - sinf(1)) < 1e-6f);
    assert_true(fabsf(out[2] + sinf(2)) < 1e-6f && fabsf(out[3] - cosf(2)) < 1e-6f);
    /* swiglu: silu(1) * 2 = 2 / (1 + e^-1); silu(0) = 0 */
    float gv[4] = {1, 0, -1, 2}, uv[4] = {2, 5, 1, 1};
    struct engine_buf *g = act(gv, 4), *u = act(uv, 4);
    assert_int_equal(ops->swiglu(be, g, u, 2, g, NULL), NY_OK);
    buf_get(g, out, 4);
    assert_true(fabsf(out[0] - 2 / (1 + expf(-1))) < 1e-6f && out[1] == 0.0f);
    assert_true(fabsf(out[2] + 1 / (1 + expf(1))) < 1e-6f);
    assert_int_equal(ops->add(be, x, u, 2, NULL), NY_OK);
    buf_get(x, out, 4);
    assert_true(out[0] == 5 && out[1] == 9 && out[2] == 2 && out[3] == 0);
    /* embedding rows 2 and 0 of a [3, 2] table; an id beyond it is a range error */
    float tv[6] = {0, 1, 10, 11, 20, 21};
    struct engine_buf *t = weight(tv, 3, 2);
    int32_t ids[2] = {2, 0}, bad[2] = {3, 0};
    assert_int_equal(ops->embed(be, t, ids, 2, y, NULL), NY_OK);
    buf_get(y, out, 4);
    assert_true(out[0] == 20 && out[1] == 21 && out[2] == 0 && out[3] == 1);
    assert_int_equal(ops->embed(be, t, bad, 2, y, NULL), NY_E_RANGE);
    struct engine_buf *all[] = {x, w, y, r, g, u, t};
    for (size_t i = 0; i < 7; i++)
        ops->buf_free(be, all[i]);
}

static void test_matmul_lora(void **state)
{
    (void)state;
    /* 3 requests: 2 rows with adapter 0, 1 row base, 1 row adapter 1 (which has no term here) */
    struct batch bt;
    int rows[3] = {2, 1, 1}, ad[3] = {0, -1, 1};
    batch_init(&bt, 3, rows, NULL, ad);
    float xv[8] = {1, 2, 3, 4, 5, 6, 7, 8}, wv[6] = {1, 0, 0, 1, 1, 1}; /* W [3, 2] */
    float av[2] = {1, 1}, bv[3] = {1, 0, 2};                         /* A [1, 2], B [3, 1] */
    struct engine_buf *x = act(xv, 8), *w = weight(wv, 3, 2), *y = act(NULL, 12);
    struct engine_lora_term lora[2] = {{weight(av, 1, 2), weight(bv, 3, 1), 1, 0.5f},
                                       {NULL, NULL, 0, 0}};
    assert_int_equal(ops->matmul(be, x, 2, w, 3, lora, 2, NULL, 0, y, NULL), NY_OK);
    float out[12];
    buf_get(y, out, 12);
    /* row [1,2]: W·x = [1,2,3], A·x = 3, + 0.5·3·[1,0,2] = [2.5, 2, 6] */
    const float want[12] = {2.5f, 2, 6, 6.5f, 4, 14, 5, 6, 11, 7, 8, 15};
    for (int i = 0; i < 12; i++)
        if (fabsf(out[i] - want[i]) > 1e-6f)
            fail_msg("y[%d] = %g, expected %g", i, out[i], want[i]);
    int sel[2] = {3, 1}; /* rows 3 and 1 only, in that order */
    assert_int_equal(ops->matmul(be, x, 2, w, 3, lora, 2, sel, 2, y, NULL), NY_OK);
    buf_get(y, out, 6);
    assert_true(out[0] == 7 && out[1] == 8 && out[2] == 15);
    assert_true(fabsf(out[3] - 6.5f) < 1e-6f && out[4] == 4 && fabsf(out[5] - 14) < 1e-6f);
    ops->buf_free(be, lora[0].a);
    ops->buf_free(be, lora[0].b);
    ops->buf_free(be, x);
    ops->buf_free(be, w);
    ops->buf_free(be, y);
}

static void test_attention_gqa(void **state)
{
    (void)state;
    struct engine_kv_shape sh = {1, 1, 2, 2, 3}; /* 1 layer, 1 kv head, head_dim 2, 2 slots, 3 */
    struct engine_kv *kv;
    assert_int_equal(ops->kv_create(be, &sh, &kv, NULL), NY_OK);
    struct batch bt;
    int rows[1] = {2};
    batch_init(&bt, 1, rows, NULL, NULL);
    /* 2 query heads share the kv head. keys k0 = [0,0], k1 = [1,0]; values v0 = [1,0], v1 = [0,1].
     * Row 0 (pos 0) sees only k0: out = v0 for both heads. Row 1 (pos 1), head 0 q = [1,0],
     * scale 1: scores [0, 1] → p1 = e/(1+e); head 1 q = [0,0]: equal weights → [0.5, 0.5]. */
    float qv[8] = {5, 5, 7, 7, 1, 0, 0, 0}, kvv[4] = {0, 0, 1, 0}, vv[4] = {1, 0, 0, 1};
    struct engine_buf *q = act(qv, 8), *k = act(kvv, 4), *v = act(vv, 4), *o = act(NULL, 8);
    assert_int_equal(ops->attention(be, kv, 0, q, k, v, 2, 1.0f, o, NULL), NY_OK);
    float out[8], p1 = expf(1) / (1 + expf(1));
    buf_get(o, out, 8);
    const float want[8] = {1, 0, 1, 0, 1 - p1, p1, 0.5f, 0.5f};
    for (int i = 0; i < 8; i++)
        if (fabsf(out[i] - want[i]) > 1e-6f)
            fail_msg("out[%d] = %g, expected %g", i, out[i], want[i]);
    /* decode one more token (position 2) in the same slot: k2 = [0,1], v2 = [2,2]; q = [0,0]
     * for both heads → mean of v0, v1, v2 = [1, 1] */
    int rows1[1] = {1}, pos1[1] = {2};
    batch_init(&bt, 1, rows1, pos1, NULL);
    float q2[4] = {0, 0, 0, 0}, k2[2] = {0, 1}, v2[2] = {2, 2};
    assert_int_equal(ops->buf_write(be, q, 0, q2, 4, NULL), NY_OK);
    assert_int_equal(ops->buf_write(be, k, 0, k2, 2, NULL), NY_OK);
    assert_int_equal(ops->buf_write(be, v, 0, v2, 2, NULL), NY_OK);
    assert_int_equal(ops->attention(be, kv, 0, q, k, v, 2, 1.0f, o, NULL), NY_OK);
    buf_get(o, out, 4);
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(out[i] - 1.0f) < 1e-6f);
    /* a fourth token does not fit the 3-token cache */
    int pos3[1] = {3};
    batch_init(&bt, 1, rows1, pos3, NULL);
    assert_int_equal(ops->attention(be, kv, 0, q, k, v, 2, 1.0f, o, NULL), NY_E_RANGE);
    ops->kv_destroy(be, kv);
    ops->buf_free(be, q);
    ops->buf_free(be, k);
    ops->buf_free(be, v);
    ops->buf_free(be, o);
}

static void test_argmax(void **state)
{
    (void)state;
    float lv[12] = {1, 3, 3, 2, NAN, -1, -1, -5, NAN, NAN, NAN, NAN};
    struct engine_buf *l = act(lv, 12);
    int32_t ids[3];
    assert_int_equal(ops->argmax(be, l, 3, 4, ids, NULL), NY_OK);
    assert_int_equal(ids[0], 1); /* tie between 1 and 2: the lowest id */
    assert_int_equal(ids[1], 1); /* NaN never wins */
    assert_int_equal(ids[2], 0); /* all NaN: 0 */
    ops->buf_free(be, l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test_setup_teardown(test_norm_rope_swiglu_add_embed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matmul_lora, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_gqa, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argmax, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
