/* engine_model_int.h — private to engine/: safetensors files, the model configuration, the loaded
 * model and its adapters, shared by model_st.c, model_config.c, model_load.c, model_adapter.c,
 * model_forward.c and model_generate.c. */
#ifndef NY_ENGINE_MODEL_INT_H
#define NY_ENGINE_MODEL_INT_H

#include <stdint.h>

#include "engine.h"
#include "engine_backend_int.h"

/* ---- safetensors (model_st.c) ---------------------------------------------------------------- */
#define ENGINE_MAX_DIMS 4

/* One tensor of a mapped file; every field checked against the header and the file size. */
struct engine_tensor {
    char *name;
    enum engine_dtype dtype;
    int ndim;
    uint64_t shape[ENGINE_MAX_DIMS];
    uint64_t n_elems;
    const uint8_t *data;   /* inside the mapping */
    size_t nbytes;
    const char *file;      /* path of the file holding it (owned by the set) */
};

/* A set of safetensors files (one, or the shards of an index), mapped read-only. */
struct engine_st;

/* Open one file. *out owned by the caller (engine_st_close). */
int engine_st_open_file(const char *path, struct engine_st **out, struct ny_err *err);
/* Open a model directory: model.safetensors.index.json with its shards when present, else
 * model.safetensors (or `single` when not NULL). */
int engine_st_open_dir(const char *dir, const char *single, struct engine_st **out,
                       struct ny_err *err);
void engine_st_close(struct engine_st *st);
/* NULL when absent. */
const struct engine_tensor *engine_st_find(const struct engine_st *st, const char *name);
size_t engine_st_count(const struct engine_st *st);
const struct engine_tensor *engine_st_at(const struct engine_st *st, size_t i);
/* Find `name` and check it is 2-D [rows, cols] (cols == 0: 1-D [rows]); errors name the file. */
int engine_st_get(const struct engine_st *st, const char *name, uint64_t rows, uint64_t cols,
                  const struct engine_tensor **out, struct ny_err *err);

/* ---- configuration (model_config.c) ---------------------------------------------------------- */
#define ENGINE_MAX_EOS 16

struct engine_config {
    int hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim, vocab, max_pos;
    float rms_eps;
    double rope_theta;
    int rope_llama3;       /* 1: llama3 rope scaling; 0: none; 2: linear */
    double rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    int tie_embeddings;
    int bos_id;            /* -1 when not given */
    int n_eos;
    int eos_ids[ENGINE_MAX_EOS]; /* config.json's and generation_config.json's, deduplicated */
};

/* Parse dir/config.json and (when present) dir/generation_config.json. */
int engine_config_load(const char *dir, struct engine_config *out, struct ny_err *err);
/* Parse config.json text (what names it in messages). */
int engine_config_parse(const char *text, size_t len, const char *what, struct engine_config *out,
                        struct ny_err *err);
/* Add the eos ids of a generation_config.json text. */
int engine_config_parse_generation(const char *text, size_t len, const char *what,
                                   struct engine_config *cfg, struct ny_err *err);
/* RoPE inverse frequencies (head_dim / 2 floats) as transformers computes them in fp32. */
void engine_config_inv_freq(const struct engine_config *cfg, float *inv_freq);

/* ---- the loaded model ------------------------------------------------------------------------ */
enum engine_proj { ENGINE_Q, ENGINE_K, ENGINE_V, ENGINE_O, ENGINE_GATE, ENGINE_UP, ENGINE_DOWN,
                   ENGINE_N_PROJ };

#define ENGINE_MAX_ADAPTERS 32
#define ENGINE_MAX_TP 8

struct engine_layer {
    struct engine_buf *in_norm, *post_norm;
    struct engine_buf *w[ENGINE_N_PROJ];
    /* per adapter: its term on each projection (a == NULL: none) */
    struct engine_lora_term *lora[ENGINE_N_PROJ]; /* [ENGINE_MAX_ADAPTERS] or NULL */
};

struct engine_adapter {
    char *name;
    char *dir;
    int merged;
};

struct engine_model {
    char *dir;
    struct engine_config cfg;
    const struct engine_backend_ops *ops;
    struct engine_backend *be;
    struct engine_st *st;          /* the base weights, kept mapped for merging */
    struct engine_buf *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    struct engine_layer *layers;
    float *inv_freq;               /* head_dim / 2 */
    struct engine_adapter *adapters;
    int n_adapters;
    int n_threads;
    int poisoned;                  /* a backend failure happened: refuse further work */
    /* tensor parallelism (model_tp.c): this instance is rank `rank` of `tp` and holds its shard */
    int tp, rank;
    int l_heads, l_kv_heads, l_ff; /* this rank's heads, kv heads, intermediate width */
    int kv_head0;                  /* its first key/value head (shared by ranks when tp > kv) */
    int l_vocab, vocab_off;        /* this rank's lm_head rows: ids [vocab_off, +l_vocab) */
    struct engine_model **ranks;   /* the lead (rank 0, the caller's handle) only: [tp] */
    struct engine_tp *group;       /* the lead only; NULL when tp == 1 */
};

/* Projection names as in the files ("q_proj"), and their module path inside a layer. */
const char *engine_proj_name(enum engine_proj p);
const char *engine_proj_module(enum engine_proj p); /* "self_attn.q_proj" */
/* [out, in] of a projection for cfg. */
void engine_proj_shape(const struct engine_config *cfg, enum engine_proj p, int *out, int *in);

/* ---- tensor parallelism (model_tp.c) ---------------------------------------------------------
 * A model opened with tp > 1 is a lead (rank 0, the handle callers hold) and tp - 1 rank
 * instances, each with its own backend instance on its own device and a Megatron shard of every
 * weight. Everything that touches weights or activations runs on every rank, a thread each. */

/* [out, in] of projection p on this rank. */
void engine_proj_shape_local(const struct engine_model *m, enum engine_proj p, int *out, int *in);
/* The block of the full [out, in] weight of p that this rank holds: rows [*row0, +*nrows) and
 * columns [*col0, +*ncols). lora: 'A' or 'B' for the adapter matrices of p (A [r, in] is split
 * like W's columns, B [out, r] like W's rows; rank r columns/rows are never split), 0 for W. */
void engine_proj_block(const struct engine_model *m, enum engine_proj p, int lora, int r,
                       int *row0, int *nrows, int *col0, int *ncols);
/* Upload the block (row0, nrows, col0, ncols) of the row-major [rows, cols] matrix src of dtype
 * dt to m's backend (a staging copy when the columns are split). */
int engine_upload_block(struct engine_model *m, enum engine_dtype dt, const void *src,
                        size_t rows, size_t cols, int row0, int nrows, int col0, int ncols,
                        struct engine_buf **out, struct ny_err *err);
/* Set m's local sizes for rank `rank` of `tp` (checked: tp divides heads, kv heads and the
 * intermediate width). */
int engine_tp_shard_sizes(struct engine_model *m, int tp, int rank, struct ny_err *err);
/* Run fn on every rank of lead (rank 0 on the calling thread, the others on threads of their
 * own) and wait for all. When a rank fails, the group is aborted so no rank waits for it; the
 * error returned is the first rank's that did not fail merely because of the abort. */
typedef int (*engine_rank_fn)(struct engine_model *rank_m, void *ctx, struct ny_err *err);
int engine_tp_run(struct engine_model *lead, engine_rank_fn fn, void *ctx, struct ny_err *err);

/* ---- opening ---------------------------------------------------------------------------------
 * The model object with its configuration (config.json of dir, or cfg when dir is NULL), its
 * safetensors mapped (dir only), every rank's backend instance and the group: all but the weights
 * (model_load.c). */
int engine_model_start(const char *dir, const struct engine_config *cfg,
                       const struct engine_model_opts *opts, struct engine_model **out,
                       struct ny_err *err);
/* A model of configuration cfg with random weights made on the device by the backend's
 * weight_random op (no files), sharded as a file would be, so that every tp gives the same
 * logical model for a seed; lora_rank > 0 attaches one random adapter (index 0, "random") on all
 * 7 projections. For the benchmark (model_random.c). */
int engine_model_open_random(const struct engine_config *cfg, const struct engine_model_opts *o,
                             uint64_t seed, int lora_rank, struct engine_model **out,
                             struct ny_err *err);

/* ---- the forward pass (model_forward.c) ------------------------------------------------------ */
/* Per-call state: the KV cache and activation buffers sized for the largest step so far. */
struct engine_fwd {
    struct engine_model *m;
    struct engine_kv *kv;
    struct engine_buf *x, *h, *q, *k, *v, *att, *g, *u; /* [rows, width] */
    struct engine_buf *logits;                          /* [seqs, vocab] */
    int cap_rows, cap_seqs;
    int *last_rows;                                     /* [cap_seqs] */
};

int engine_fwd_init(struct engine_fwd *f, struct engine_model *m, const struct engine_kv_shape *kvs,
                    struct ny_err *err);
void engine_fwd_fini(struct engine_fwd *f);
/* One step: ids [b->n_rows] (checked < vocab by the caller) → f->logits [b->n_seqs, vocab], the
 * logits of each request's last row. */
int engine_fwd_step(struct engine_fwd *f, const struct engine_batch *b, const int32_t *ids,
                    struct ny_err *err);
/* engine_fwd_step, then next[s] = the greedy id of request s (over the whole vocabulary, every
 * rank getting the same ids under tensor parallelism). */
int engine_fwd_next(struct engine_fwd *f, const struct engine_batch *b, const int32_t *ids,
                    int32_t *next, struct ny_err *err);

#endif
