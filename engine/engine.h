/* engine.h — the native Llama-3 decoder (prefix engine_): build information and devices.
 * This header is the engine's table of contents; the engine knows nothing of coding or SQLite. */
#ifndef NY_ENGINE_H
#define NY_ENGINE_H

#include "common.h"

/* ---- build and device information ----------------------------------------------------------- */
struct engine_build_info {
    int have_cuda;         /* CUDA backend compiled in (NY_HAVE_CUDA) */
    int have_nccl;         /* NCCL tensor parallel compiled in (NY_HAVE_NCCL) */
    char cuda_runtime[32]; /* "13.0" or "" when not built in */
    char cublas[32];       /* cuBLAS library version, "" when not built in */
    char nccl[32];         /* NCCL library version, "" when not built in */
    char blas[160];        /* CPU BLAS (OpenBLAS config string) */
};

/* Fill *out with what this build was compiled and linked against. Never touches a GPU. */
void engine_build_info_get(struct engine_build_info *out);

/* Number of CUDA devices visible. Returns NY_E_UNSUPPORTED when the CUDA backend is not built in
 * ("CUDA backend not built in"), NY_E_DEVICE when the driver cannot be queried; 0 devices is
 * success with *count = 0. */
int engine_device_count(int *count, struct ny_err *err);

/* Runs a small kernel and a cuBLAS GEMM on device `dev` and checks the results against the CPU.
 * For the gpu test suite and `nyxaudit --version --probe`. */
int engine_device_selftest(int dev, char *name_out, size_t name_len, struct ny_err *err);

/* ---- tokenizer and chat template (engine/tokenizer*.c) --------------------------------------- */
/* Byte-level BPE tokenizers in Hugging Face's tokenizer.json format (the Llama-3 tokenizer and
 * ones trained like it), exact to Hugging Face `tokenizers`; and the Llama-3 chat template.
 * A tokenizer is immutable once open: encode, decode and lookups may run from several threads. */
struct engine_tokenizer;

/* Load a tokenizer.json (and tokenizer_config.json beside it when present: bos_token, eos_token,
 * chat_template). Features outside byte-level BPE (other models, normalizers, truncation, ...)
 * are refused with NY_E_UNSUPPORTED naming the file and field; malformed files with NY_E_FORMAT.
 * *out owned by the caller (engine_tokenizer_close). */
int engine_tokenizer_open(const char *path, struct engine_tokenizer **out, struct ny_err *err);
void engine_tokenizer_close(struct engine_tokenizer *tok); /* NULL is a no-op */

/* Encode len bytes of UTF-8 text (invalid UTF-8: NY_E_INVALID naming the byte offset). Added
 * and special tokens written in the text are recognised, as Hugging Face does. add_special:
 * also add what the post-processor adds (TemplateProcessing: BOS; a ByteLevel post-processor,
 * as in ../shared/tokenizers/llama3, adds nothing). *ids (ny_free) may be NULL when *n_ids == 0. */
int engine_tokenizer_encode(const struct engine_tokenizer *tok, const char *text, size_t len,
                            int add_special, int32_t **ids, size_t *n_ids, struct ny_err *err);

/* Decode ids to text as Hugging Face's decode does (byte-level decoding, then invalid UTF-8
 * replaced by U+FFFD); skip_special drops special tokens. An id outside [0, vocab size) is
 * NY_E_RANGE. *text (ny_free) is NUL-terminated; *len excludes the NUL. */
int engine_tokenizer_decode(const struct engine_tokenizer *tok, const int32_t *ids, size_t n_ids,
                            int skip_special, char **text, size_t *len, struct ny_err *err);

/* Id of a token written as in the vocabulary ("<|eot_id|>", "Ġthe"), or -1. */
int32_t engine_tokenizer_token_id(const struct engine_tokenizer *tok, const char *token);
/* The token's string as in the vocabulary (borrowed, valid until close), or NULL. */
const char *engine_tokenizer_token_str(const struct engine_tokenizer *tok, int32_t id);
/* Number of ids: the highest id (model or added token) plus one. */
size_t engine_tokenizer_vocab_size(const struct engine_tokenizer *tok);
/* Ids of tokenizer_config.json's bos_token / eos_token, or -1 when not given. */
int32_t engine_tokenizer_bos_id(const struct engine_tokenizer *tok);
int32_t engine_tokenizer_eos_id(const struct engine_tokenizer *tok);

/* One chat message; both strings borrowed, NUL-terminated UTF-8. */
struct engine_chat_msg {
    const char *role;
    const char *content;
};

/* Llama-3 chat template to ids, exactly as transformers' apply_chat_template(tokenize=True):
 * BOS once, then per message "<|start_header_id|>" role "<|end_header_id|>\n\n" content (trimmed
 * as Jinja's trim) "<|eot_id|>", then "<|start_header_id|>assistant<|end_header_id|>\n\n" when
 * add_generation_prompt (the template of ../shared/tokenizers/llama3 appends it always, so there
 * the flag is ignored). A tokenizer_config.json chat_template other than Llama-3's is
 * NY_E_UNSUPPORTED; no messages, or a message that is not valid UTF-8, NY_E_INVALID.
 * Special-token strings inside content are recognised, as transformers does. *ids owned by the
 * caller (ny_free). */
int engine_chat_encode(const struct engine_tokenizer *tok, const struct engine_chat_msg *msgs,
                       size_t n_msgs, int add_generation_prompt, int32_t **ids, size_t *n_ids,
                       struct ny_err *err);
/* The same from a JSON array of {"role": string, "content": string} objects; `what` names the
 * source in messages ("requests.jsonl line 3"). */
int engine_chat_encode_json(const struct engine_tokenizer *tok, const struct json_t *messages,
                            int add_generation_prompt, const char *what, int32_t **ids,
                            size_t *n_ids, struct ny_err *err);
/* The template's text before tokenisation (for tests and logs); *text owned by the caller. */
int engine_chat_render(const struct engine_tokenizer *tok, const struct engine_chat_msg *msgs,
                       size_t n_msgs, int add_generation_prompt, char **text, size_t *len,
                       struct ny_err *err);


/* ---- model files, adapters, forward pass and greedy generation (engine/model*.c, cpu/) -------- */
/* A Llama-family model in Hugging Face format (config.json, generation_config.json, safetensors
 * single or sharded; BF16, F16 or F32), loaded onto a backend (fp32 on the CPU), with any number
 * of PEFT LoRA adapters over the one base, chosen per request. Greedy decoding only. Results are
 * deterministic: a request's ids and logits are bit-identical run to run whatever the thread
 * count and whatever other requests share the call (on one machine and build: OpenBLAS picks its
 * kernels by CPU model, so another CPU may round differently; parity with transformers holds to
 * ~1e-6 relative on the logits either way). */
struct engine_model;

struct engine_model_opts {
    const char *device;  /* "cpu" (default when NULL) or "cuda" */
    int threads;         /* CPU worker threads; 0 = one per online core */
    int tp;              /* tensor-parallel ranks, 0 or 1 = none; on cuda GPUs gpu..gpu+tp-1
                          * (NCCL), on the cpu (for checking the sharding) threads split
                          * between the ranks. tp must divide the heads and the intermediate
                          * size, and divide or be a multiple of the key/value heads (then
                          * each of those is copied onto the ranks of its query heads). */
    int gpu;             /* first GPU index (cuda only) */
};

/* Open the model in directory dir. Every tensor's offset, shape and dtype is checked against
 * the header, the file size and config.json; errors name the file and tensor. *out is owned by
 * the caller (engine_model_close). opts may be NULL (cpu, all cores). */
int engine_model_open(const char *dir, const struct engine_model_opts *opts,
                      struct engine_model **out, struct ny_err *err);
void engine_model_close(struct engine_model *m); /* NULL is a no-op */

/* Attach the PEFT LoRA adapter in directory dir (adapter_config.json, adapter_model.safetensors)
 * under `name` (unique; borrowed, copied). Unmerged (merge = 0): y = W·x + scale·B·(A·x), used by
 * requests that name it; *index (optional) receives its index for engine_request.adapter.
 * Merged (merge = 1): W += scale·B·A is folded into the base weights in fp32 — then EVERY request
 * sees it, and no index is usable (*index = -1). DoRA, modules_to_save, bias != "none" and
 * shapes or ranks that disagree with the config are refused with a clear error. */
int engine_model_adapter_add(struct engine_model *m, const char *name, const char *dir,
                             int merge, int *index, struct ny_err *err);
/* Index of the adapter called name, or -1. */
int engine_model_adapter_find(const struct engine_model *m, const char *name);

/* What callers need to know about the loaded model (borrowed, valid until close). */
struct engine_model_info {
    int vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size;
    int max_position_embeddings;
    int bos_id;           /* -1 when the config gives none */
    int n_eos;            /* eos ids of config.json and generation_config.json */
    const int *eos_ids;
    int n_adapters;
    const char *device;   /* "cpu", "cuda" */
    int threads;          /* CPU threads per rank */
    int tp;               /* tensor-parallel ranks (1: none) */
};
void engine_model_info_get(const struct engine_model *m, struct engine_model_info *out);

/* One request of a batch; the ids are borrowed for the call. */
struct engine_request {
    const int32_t *input_ids;  /* n_input >= 1 ids, each < vocab_size */
    size_t n_input;
    int adapter;               /* index from engine_model_adapter_add, or -1 for the base */
};

struct engine_gen_opts {
    int max_new_tokens;        /* >= 1 */
    int ignore_eos;            /* 1: generate exactly max_new_tokens */
    int first_logits;          /* 1: return the vocabulary's logits at the first new position */
    int max_batch;             /* requests decoded together (KV-cache slots); 0 = 16 */
};

/* The outcome of one request; owned by the caller, released with engine_result_fini. */
struct engine_result {
    int32_t *output_ids;       /* generated ids, ending with the eos id when it stopped on one */
    size_t n_output;
    int stopped_on_eos;        /* 1 when the last id is an eos id (and ignore_eos is 0) */
    float *first_logits;       /* vocab_size floats when asked, else NULL */
};

/* Greedy decoding of n requests (ties to the lowest id), stopping on the model's eos ids (unless
 * ignore_eos) or after max_new_tokens. results[0..n) are written only when the whole call
 * succeeds. A backend failure poisons the model (later calls: NY_E_STATE). */
int engine_generate(struct engine_model *m, const struct engine_request *reqs, size_t n,
                    const struct engine_gen_opts *opts, struct engine_result *results,
                    struct ny_err *err);
void engine_result_fini(struct engine_result *r); /* NULL is a no-op; frees the arrays */

/* ---- benchmark (engine/cuda/cuda_bench.c; only in builds with the CUDA backend) -------------- */
/* A Llama-shaped decoder with random bf16 weights made on the device (no files); the workload is
 * `prompts` prompts of `prompt_len` tokens, each decoding `new_tokens` tokens greedily, `batch`
 * requests at a time; lora_rank > 0 adds one random adapter of that rank on all 7 projections,
 * used by every request. */
struct engine_bench_opts {
    int hidden, intermediate, layers, heads, kv_heads, head_dim, vocab;
    int prompts, prompt_len, new_tokens, batch, lora_rank;
    int via_generate; /* 1: the workload through engine_generate (the scheduler of nyxaudit's
                       * runs, max_batch = batch, ignore_eos) instead of groups of steps */
    int device;      /* first GPU index */
    int tp;          /* tensor-parallel GPUs device..device+tp-1 (0 or 1: one GPU) */
    uint64_t seed;
    int32_t *ids;    /* optional [prompts * new_tokens]: the generated ids, prompt by prompt */
};
/* Runs the workload on the CUDA backend and prints, to out, the card's measured copy bandwidth
 * and bf16 GEMM rate, prefill tokens/s and TFLOP/s, decode ms per step and TB/s, and the peak
 * device memory. NY_E_INVALID for a bad shape, NY_E_DEVICE for a device failure. */
int engine_bench_run(const struct engine_bench_opts *o, FILE *out, struct ny_err *err);

#endif /* NY_ENGINE_H */
