/* engine_backend_int.h — private to engine/: the small ops table the forward pass is written
 * against once (engine/forward.c). Backends (engine/cpu/, engine/cuda/) provide primitives only.
 *
 * SHAPES AND LAYOUT
 *   All activations are row-major fp32 matrices [n_rows, width] in device buffers; a "row" is one
 *   token of one request. Weights are uploaded once from the mmap'd file (BF16, F16 or F32 source);
 *   each backend stores them as it likes (the CPU keeps fp32, CUDA bf16) and computes in fp32.
 *   A linear weight W is [out, in] row-major as in Hugging Face files (nn.Linear.weight); matmul
 *   computes y[r, :] = W · x[r, :] (plus LoRA terms), i.e. Y = X · Wᵀ.
 *
 * BATCHES
 *   One forward step processes a struct engine_batch: n_seqs requests, each contributing a
 *   contiguous run of rows (prefill: its prompt or a chunk of it; decode: one row). Request s owns
 *   rows [seq_start[s], seq_start[s+1]), uses KV-cache slot seq_slot[s], its first row in this
 *   step sits at position seq_pos0[s] (= tokens of that slot already in the cache), and is served
 *   by adapter seq_adapter[s] (-1 = base only). Row r of request s has position
 *   seq_pos0[s] + (r - seq_start[s]). The forward calls step_begin() with the batch before the ops
 *   of that step; a backend may stage the metadata on the device there. The batch pointer and its
 *   arrays stay valid and unchanged until the next step_begin().
 *
 * KV CACHE
 *   Owned by the backend (kv_create): n_slots independent sequences of at most max_tokens tokens
 *   per slot, per layer n_kv_heads × head_dim keys and values. A GPU backend may page it; the
 *   forward never sees its layout. attention() first stores the step's k/v rows at their positions
 *   in their slots, then computes causal attention of every q row over its slot's positions
 *   0..pos (inclusive). kv_slot_reset() forgets a slot's contents (the next use starts at pos 0).
 *
 * DETERMINISM CONTRACT (required of every backend)
 *   The values a row produces depend only on that request's own tokens, adapter and the weights:
 *   never on the thread count, on which other requests share the batch, their order, or the
 *   row's index in the batch. Consequences: reductions use a fixed order per output element
 *   (no atomics, no split-K whose split depends on the batch or the thread count); work is
 *   partitioned by fixed-size blocks of weight rows/columns, never by "n_threads" pieces; a
 *   request's prefill rows are processed as a unit of their own (other requests' rows may not
 *   change its GEMM blocking). Run to run, the same inputs give bit-identical results.
 *   A backend need not match another backend bit for bit (the CPU is the reference; CUDA
 *   documents its tolerance), and a request's prefill and decode paths may round differently.
 *
 * TENSOR PARALLELISM (optional ops, NULL in a backend without it)
 *   n instances (one per device, made by create()) are joined by tp_create into a group; rank i
 *   is bes[i]. Each rank holds a Megatron shard of the model (q, k, v, gate, up split by output
 *   rows; o, down by input columns; lm_head by vocabulary) and is then driven by its own thread
 *   through the same sequence of ops with the same shapes (SPMD). tp_allreduce, tp_argmax and
 *   tp_allreduce_add_rmsnorm are collectives: every rank calls them in the same order with the
 *   same shape.
 *   Sums across ranks are deterministic and batch invariant: element e of the result is
 *   ((x_0[e] + x_1[e]) + x_2[e]) + ... in fp32, rank order, whatever the row count or the
 *   transport (no reduction inside the communication library).
 *   A rank that fails calls tp_abort(); every rank then blocked in (or entering) a collective of
 *   the group returns NY_E_STATE ("aborted") instead of waiting forever; the group stays unusable.
 *
 * ERRORS
 *   Every op returns 0 or a negative NY_E_* and fills err. After a device failure a backend
 *   returns NY_E_DEVICE (and may refuse further calls with NY_E_STATE): the engine is poisoned.
 */
#ifndef NY_ENGINE_BACKEND_INT_H
#define NY_ENGINE_BACKEND_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Source dtypes of tensors in safetensors files. */
enum engine_dtype {
    ENGINE_DTYPE_F32 = 0,
    ENGINE_DTYPE_F16 = 1,
    ENGINE_DTYPE_BF16 = 2,
};

struct engine_backend;  /* one instance per loaded model (opaque, backend-defined) */
struct engine_buf;      /* a device buffer: activations (fp32) or an uploaded weight */
struct engine_kv;       /* the KV cache of one backend instance */
struct engine_tp;       /* a tensor-parallel group of instances (backend-defined) */

/* One forward step's rows, grouped by request (see BATCHES above). Host memory. */
struct engine_batch {
    int n_rows;               /* total rows in the step (sum of all requests' rows) */
    int n_seqs;               /* requests in the step */
    const int *seq_start;     /* [n_seqs + 1] row offsets; seq_start[0] = 0, [n_seqs] = n_rows */
    const int *seq_slot;      /* [n_seqs] KV-cache slot of each request */
    const int *seq_pos0;      /* [n_seqs] position of each request's first row in this step */
    const int *seq_adapter;   /* [n_seqs] adapter index into the lora arrays, -1 = none */
};

/* One adapter's unmerged LoRA term on one linear weight:
 *   y[r, :] += scale · B · (A · x[r, :])   with A [rank, in], B [out, rank].
 * a == NULL means this adapter does not touch this weight. */
struct engine_lora_term {
    struct engine_buf *a;     /* uploaded weight [rank, in] */
    struct engine_buf *b;     /* uploaded weight [out, rank] */
    int rank;
    float scale;              /* lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA */
};

/* One product of matmul_multi: y = W·x (+ its LoRA terms), W [out, in]. */
#define ENGINE_MATMUL_MAX_PARTS 3
struct engine_matmul_part {
    const struct engine_buf *w;
    int out;
    const struct engine_lora_term *lora; /* n_lora entries, or NULL */
    struct engine_buf *y;
};

/* Shape of the KV cache. */
struct engine_kv_shape {
    int n_layers;
    int n_kv_heads;
    int head_dim;
    int n_slots;              /* concurrent sequences */
    int max_tokens;           /* prompt + generated tokens per slot */
};

/* The ops table. Every pointer is required unless marked optional. `be` is the instance made by
 * create(). Buffers passed to one op may not alias unless the op says so. */
struct engine_backend_ops {
    const char *name;         /* "cpu", "cuda" */

    /* ---- lifecycle ---- */
    /* threads: CPU worker threads (>= 1; ignored by GPU backends). device: GPU index (ignored by
     * the CPU). On success *out is owned by the caller, freed with destroy(). */
    int (*create)(int threads, int device, struct engine_backend **out, struct ny_err *err);
    void (*destroy)(struct engine_backend *be); /* NULL is a no-op; frees nothing it handed out */

    /* ---- buffers ---- */
    /* fp32 activation buffer of n_floats floats, contents undefined. Freed with buf_free. */
    int (*buf_alloc)(struct engine_backend *be, size_t n_floats, struct engine_buf **out,
                     struct ny_err *err);
    void (*buf_free)(struct engine_backend *be, struct engine_buf *b); /* NULL is a no-op */
    /* Copy n_floats floats between host memory and an activation buffer at float offset off. */
    int (*buf_write)(struct engine_backend *be, struct engine_buf *b, size_t off, const float *src,
                     size_t n_floats, struct ny_err *err);
    int (*buf_read)(struct engine_backend *be, const struct engine_buf *b, size_t off, float *dst,
                    size_t n_floats, struct ny_err *err);

    /* Upload a weight matrix [rows, cols] row-major of dtype dt from host memory (usually the
     * mmap'd file, read-only, possibly unaligned for F16/BF16 — read with memcpy). A 1-D weight
     * (norm) has rows = 1. The backend keeps its own copy; src may be unmapped afterwards.
     * Freed with buf_free. */
    int (*weight_upload)(struct engine_backend *be, enum engine_dtype dt, const void *src,
                         size_t rows, size_t cols, struct engine_buf **out, struct ny_err *err);

    /* ---- per step ---- */
    int (*step_begin)(struct engine_backend *be, const struct engine_batch *batch,
                      struct ny_err *err);

    /* ---- primitives (all rows of the current batch unless stated) ---- */
    /* out[r, :] = table[ids[r], :]; table is a weight [vocab, dim]; ids: host, n_rows entries,
     * already checked to be < vocab by the caller. */
    int (*embed)(struct engine_backend *be, const struct engine_buf *table, const int32_t *ids,
                 int dim, struct engine_buf *out, struct ny_err *err);

    /* out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w   (w a weight of dim floats; the
     * mean of squares accumulated in fp32 in index order, as transformers' LlamaRMSNorm does in
     * fp32). out may alias x. */
    int (*rmsnorm)(struct engine_backend *be, const struct engine_buf *x,
                   const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                   struct ny_err *err);

    /* y[r, :] = W · x[r, :] + (adapter a = seq_adapter of r's request, a >= 0 and
     * lora[a].a != NULL) lora[a].scale · B · (A · x[r, :]).
     * x [n_rows, in], W [out, in], y [n_rows, out]. lora: n_lora entries or NULL.
     * rows: when not NULL, only rows[0..n_out_rows) of x are used (host indices), and y has
     * n_out_rows rows (used for the final logits of each request's last row); when NULL all
     * n_rows rows. */
    int (*matmul)(struct engine_backend *be, const struct engine_buf *x, int in,
                  const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                  int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
                  struct ny_err *err);

    /* Rotary embedding in place on x [n_rows, n_heads * head_dim], Hugging Face "rotate_half"
     * pairing (i, i + head_dim/2). inv_freq: host array of head_dim/2 floats (llama3 scaling
     * already applied by the caller). For row position p: angle_i = (float)p * inv_freq[i];
     * cos/sin computed in fp32 then multiplied by attn_factor (1.0 for llama3). */
    int (*rope)(struct engine_backend *be, struct engine_buf *x, int n_heads, int head_dim,
                const float *inv_freq, float attn_factor, struct ny_err *err);

    /* Store this step's k, v [n_rows, n_kv_heads * head_dim] of layer `layer` in the cache at the
     * rows' slots and positions, then for each row and query head h (kv head h / (n_heads /
     * n_kv_heads)) compute softmax(scale · q·K[0..pos]ᵀ) · V[0..pos] into out
     * [n_rows, n_heads * head_dim]. Softmax in fp32 with max subtraction. */
    int (*attention)(struct engine_backend *be, struct engine_kv *kv, int layer,
                     const struct engine_buf *q, const struct engine_buf *k,
                     const struct engine_buf *v, int n_heads, float scale,
                     struct engine_buf *out, struct ny_err *err);

    /* out[r, i] = silu(gate[r, i]) * up[r, i], silu(g) = g / (1 + exp(-g)); width ff.
     * out may alias gate. */
    int (*swiglu)(struct engine_backend *be, const struct engine_buf *gate,
                  const struct engine_buf *up, int ff, struct engine_buf *out,
                  struct ny_err *err);

    /* x[r, :] += y[r, :], width dim. */
    int (*add)(struct engine_backend *be, struct engine_buf *x, const struct engine_buf *y,
               int dim, struct ny_err *err);

    /* ids[i] = argmax_j logits[i, j] for i < n (n rows of width vocab; host ids). Ties go to the
     * lowest j; NaN never wins over a number. */
    int (*argmax)(struct engine_backend *be, const struct engine_buf *logits, int n, int vocab,
                  int32_t *ids, struct ny_err *err);

    /* ---- KV cache ---- */
    int (*kv_create)(struct engine_backend *be, const struct engine_kv_shape *shape,
                     struct engine_kv **out, struct ny_err *err);
    void (*kv_destroy)(struct engine_backend *be, struct engine_kv *kv); /* NULL is a no-op */
    int (*kv_slot_reset)(struct engine_backend *be, struct engine_kv *kv, int slot,
                         struct ny_err *err);

    /* ---- tensor parallelism (optional, see TENSOR PARALLELISM) ---- */
    /* Join n >= 2 instances into a group (called once, from one thread, before any step of
     * theirs). *out is freed with tp_destroy after the ranks' last op and before destroy(). */
    int (*tp_create)(struct engine_backend *const *bes, int n, struct engine_tp **out,
                     struct ny_err *err);
    void (*tp_abort)(struct engine_tp *g);          /* any thread; idempotent */
    void (*tp_destroy)(struct engine_tp *g);        /* NULL is a no-op */
    /* x[r, :] = sum over ranks, in rank order, of every rank's x[r, :], for the n_rows rows of
     * the current step, width dim (fp32). Collective. */
    int (*tp_allreduce)(struct engine_backend *be, struct engine_buf *x, int dim,
                        struct ny_err *err);
    /* Vocabulary-sharded greedy argmax: this rank holds logits [n, vocab_local] of the ids
     * [vocab_off, vocab_off + vocab_local); ids[i] (host, same on every rank) = the global argmax
     * of row i, ties to the lowest global id, NaN never winning (all NaN: id 0). Collective. */
    int (*tp_argmax)(struct engine_backend *be, const struct engine_buf *logits, int n,
                     int vocab_local, int vocab_off, int32_t *ids, struct ny_err *err);

    /* ---- benchmarks (optional) ---- */
    /* A weight [rows, cols] (bf16 on a GPU) made on the device, no file involved: the block at
     * (row0, col0) of a virtual [*, full_cols] matrix whose element (i, j) is uniform in
     * [-scale, scale), drawn from (seed, i * full_cols + j) alone. So the shards of a matrix made
     * on several ranks are exactly the slices of the one made whole (TP parity checks). */
    int (*weight_random)(struct engine_backend *be, size_t rows, size_t cols, size_t row0,
                         size_t col0, size_t full_cols, uint64_t seed, float scale,
                         struct engine_buf **out, struct ny_err *err);

    /* ---- fused products (optional) ---- */
    /* For each part p < n_parts (1..ENGINE_MATMUL_MAX_PARTS): exactly what
     * matmul(x, in, p.w, p.out, p.lora, p.lora ? n_lora : 0, NULL, 0, p.y) does, all rows — the
     * products of one input (q, k, v; gate, up), which a backend may run in fewer launches. Each
     * y is bit-identical to the separate call's. NULL: the caller makes the separate calls. */
    int (*matmul_multi)(struct engine_backend *be, const struct engine_buf *x, int in,
                        const struct engine_matmul_part *parts, int n_parts, int n_lora,
                        struct ny_err *err);

    /* ---- fused row ops (optional) ---- */
    /* Exactly add(x, y, dim) followed by rmsnorm(x, w, dim, eps, out), all rows: x is updated in
     * place (x += y) and out = norm(updated x) · w — the residual add and the norm after it, in
     * fewer launches. x and out are bit-identical to the separate calls'. out may alias y (not
     * x); x may not alias y. NULL: the caller makes the separate calls. */
    int (*add_rmsnorm)(struct engine_backend *be, struct engine_buf *x,
                       const struct engine_buf *y, const struct engine_buf *w, int dim,
                       float eps, struct engine_buf *out, struct ny_err *err);
    /* Exactly rope(q, n_q_heads, head_dim, inv_freq, attn_factor) followed by rope(k,
     * n_k_heads, ...), all rows, in fewer launches; q and k are bit-identical to the separate
     * calls'. q and k are distinct buffers. NULL: the caller makes the separate calls. */
    int (*rope_qk)(struct engine_backend *be, struct engine_buf *q, int n_q_heads,
                   struct engine_buf *k, int n_k_heads, int head_dim, const float *inv_freq,
                   float attn_factor, struct ny_err *err);

    /* ---- fused MLP tail (optional) ---- */
    /* y = exactly what swiglu(gate, up, ff, gate) followed by matmul(gate, ff, w, out, lora,
     * n_lora, NULL, 0, y) gives, all rows: the down projection of silu(gate)·up, which a backend
     * may compute without writing the fp32 product (e.g. straight into its GEMM's bf16 input
     * staging). y is bit-identical to the separate calls'. gate afterwards: rows of one-row
     * requests (decode rows) hold silu(gate)·up bit-identical to swiglu's; rows of requests
     * with >= 2 rows are unspecified (CUDA leaves either the gate input or swiglu's output
     * there): the caller must not read them. up is unchanged. y may not alias gate or up.
     * NULL: the caller makes the two calls. */
    int (*swiglu_matmul)(struct engine_backend *be, struct engine_buf *gate,
                         const struct engine_buf *up, int ff, const struct engine_buf *w, int out,
                         const struct engine_lora_term *lora, int n_lora, struct engine_buf *y,
                         struct ny_err *err);

    /* ---- fused MLP (optional) ---- */
    /* The MLP of a layer: gu[0] and gu[1] are the gate and up products of x (their y the ff-wide
     * gate and up buffers), then y = the down product (w, out, lora) of silu(gate)·up: what
     * matmul_multi(x, in, gu, 2, n_lora) followed by swiglu_matmul(gate, up, ff, w, out, lora,
     * n_lora, y) gives, all rows, with one difference allowed: on the rows of requests with >= 2
     * rows (prefill rows) the gate and up LoRA terms may be added where the swiglu reads them
     * (rounded once there, not stored into gate and up), so those rows may differ from the two
     * calls' in the last bits; a row's arithmetic still depends only on its own request. Decode
     * rows are bit-identical to the two calls'. gate and up afterwards: unspecified. y may be x
     * (not gate or up). NULL: the caller makes the two calls. */
    int (*mlp)(struct engine_backend *be, const struct engine_buf *x, int in,
               const struct engine_matmul_part *gu, int n_lora, int ff,
               const struct engine_buf *w, int out, const struct engine_lora_term *lora,
               struct engine_buf *y, struct ny_err *err);

    /* ---- fused tensor-parallel sum (optional) ---- */
    /* Exactly tp_allreduce(h, dim) followed by add_rmsnorm(x, h, w, dim, eps, out), all rows:
     * the sum over ranks of the o or down partials, the residual add and the next norm, in fewer
     * launches. x and out are bit-identical to the two calls'; h afterwards: unspecified unless
     * out is h. x may not alias h or out. Collective. NULL: the caller makes the two calls. */
    int (*tp_allreduce_add_rmsnorm)(struct engine_backend *be, struct engine_buf *x,
                                    struct engine_buf *h, const struct engine_buf *w, int dim,
                                    float eps, struct engine_buf *out, struct ny_err *err);

    /* ---- overlapped tensor-parallel sums (optional) ---- */
    /* Announces that the next product writing y (all rows, width dim: a matmul, swiglu_matmul or
     * the mlp op's down product) is followed by tp_allreduce(y, dim) or
     * tp_allreduce_add_rmsnorm(x, y, ...): the backend may sum each request's rows over the
     * ranks as soon as the product has written them, beside the rest of the work, and run the
     * residual add + norm of a request's rows as its sum lands, when the next product reads
     * them. Every result stays bit-identical to the calls without it, and y holds this rank's
     * partial until that sum call. Collective (every rank, same order). NULL: nothing to do. */
    int (*tp_sum_announce)(struct engine_backend *be, const struct engine_buf *y, int dim,
                           struct ny_err *err);

    /* ---- read hint (optional) ---- */
    /* The next op is a product (matmul, matmul_multi or mlp) whose input is x, and after it no
     * op reads x before writing it: the backend may leave unwritten the values of x that the op
     * before (the add + norm that made x, possibly deferred under tp_sum_announce) owes to that
     * product alone, where the product takes them another way (CUDA: prefill rows from the bf16
     * staging the norm writes too). The product and every other result stay bit-identical. The
     * hint holds for the next op only. NULL: no hint. */
    void (*last_read)(struct engine_backend *be, const struct engine_buf *x);

    /* ---- overlapped tensor-parallel sums with their norm (optional) ---- */
    /* tp_sum_announce(y, dim), and moreover the sum call that follows the product is exactly
     * tp_allreduce_add_rmsnorm(x, y, w, dim, eps, y) (any other sum call fails NY_E_STATE): the
     * backend may run each request's residual add and norm beside its sum. out_last_read: y's
     * values after that call are read only by the next product, as its input (last_read's
     * promise, made early). x_next: after that call x is read or written next by the sum call
     * of the next tp_sum_announce_norm of this step (same x and dim), and by no other op before
     * it: the backend may leave each request's rows of x current only on the rank that adds
     * and norms them (x's other values unspecified until then; reading x meanwhile fails
     * NY_E_STATE). Every result stays bit-identical to the calls without it. Collective. NULL:
     * the caller uses tp_sum_announce. */
    int (*tp_sum_announce_norm)(struct engine_backend *be, const struct engine_buf *y, int dim,
                                struct engine_buf *x, const struct engine_buf *w, float eps,
                                int out_last_read, int x_next, struct ny_err *err);
};

/* The CPU reference backend (engine/cpu/). Always built. */
extern const struct engine_backend_ops engine_cpu_ops;

/* The CUDA backend (engine/cuda/), defined there when built. Declared weak so the registry links
 * before engine/cuda/ provides it; engine_backend_find() checks its address. */
#if NY_HAVE_CUDA
extern const struct engine_backend_ops engine_cuda_ops __attribute__((weak));
#endif

/* Registry: the ops of device "cpu" or "cuda". *out points at static storage. "cuda" gives
 * NY_E_UNSUPPORTED "CUDA backend not built in" (or "not yet available") until engine/cuda/
 * provides engine_cuda_ops and registers it here. */
int engine_backend_find(const char *device, const struct engine_backend_ops **out,
                        struct ny_err *err);

/* Host conversions used by weight_upload implementations (engine/engine_dtype.c). */
float engine_bf16_to_f32(uint16_t h);
float engine_f16_to_f32(uint16_t h);
/* Convert n elements of dt at src (any alignment) to fp32 at dst. */
void engine_dtype_to_f32(enum engine_dtype dt, const void *src, float *dst, size_t n);
size_t engine_dtype_size(enum engine_dtype dt);

#ifdef __cplusplus
}
#endif
#endif /* NY_ENGINE_BACKEND_INT_H */
