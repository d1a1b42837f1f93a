/* cmd_bench.c — `nyxaudit bench`: speed of the CUDA backend on random weights of a named or given
 * Llama-3 shape, on one GPU or tensor parallel over several (engine_bench_run does the work; this
 * file parses the command line and writes the generated ids when asked). */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "harness_int.h"

static const char usage[] =
    "usage: nyxaudit bench --shape llama3-8b|llama3-70b|custom [--hidden N] [--intermediate N]\n"
    "                      [--layers N] [--heads N] [--kv-heads N] [--head-dim N] [--vocab N]\n"
    "                      [--prompts P] [--prompt-len L] [--new-tokens N] [--batch B]\n"
    "                      [--lora-rank R] [--gpu I] [--tp T] [--seed S] [--ids-out FILE]\n"
    "                      [--generate 0|1]\n"
    "  Random bf16 weights made on the GPU; P prompts x L tokens x N new tokens, B at a time.\n"
    "  --layers also overrides a named shape (e.g. the 70B shape's per-layer cost on one card).\n"
    "  --tp T: tensor parallel over GPUs I..I+T-1 (1..8; NCCL); the weights of one --seed are the\n"
    "  same logical model whatever T. --ids-out FILE: the generated ids, one line per prompt.\n"
    "  --generate 1: the workload through the scheduler of nyxaudit's runs (engine_generate,\n"
    "  B requests decoded together) instead of groups of B (a prefill step, then decode steps).\n";

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Parse argv into *o, *shape and *ids_out. Returns -1 after --help (usage printed), else an exit
 * code (HARNESS_EXIT_OK or HARNESS_EXIT_INVALID, message printed). */
static int bench_parse(int argc, char **argv, struct engine_bench_opts *o, const char **shape,
                       const char **ids_out)
{
    struct {
        const char *flag;
        int *v;
        int lo, hi;
    } ints[] = {{"--hidden", &o->hidden, 1, 1 << 16},
                {"--intermediate", &o->intermediate, 1, 1 << 18},
                {"--layers", &o->layers, 1, 1024},
                {"--heads", &o->heads, 1, 1024},
                {"--kv-heads", &o->kv_heads, 1, 1024},
                {"--head-dim", &o->head_dim, 2, 512},
                {"--vocab", &o->vocab, 1, 1 << 22},
                {"--prompts", &o->prompts, 1, 1 << 20},
                {"--prompt-len", &o->prompt_len, 1, 1 << 20},
                {"--new-tokens", &o->new_tokens, 1, 1 << 20},
                {"--batch", &o->batch, 1, 1024},
                {"--lora-rank", &o->lora_rank, 0, 4096},
                {"--gpu", &o->device, 0, 1024},
                {"--tp", &o->tp, 1, 8},
                {"--generate", &o->via_generate, 0, 1}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nyxaudit bench: %s needs a value\n%s", argv[i], usage);
            return HARNESS_EXIT_INVALID;
        }
        const char *flag = argv[i], *val = argv[++i];
        if (!strcmp(flag, "--shape") || !strcmp(flag, "--ids-out")) {
            if (!*val || !strncmp(val, "--", 2)) {
                fprintf(stderr, "nyxaudit bench: %s needs a value\n%s", flag, usage);
                return HARNESS_EXIT_INVALID;
            }
            *(flag[2] == 's' ? shape : ids_out) = val;
            continue;
        }
        if (!strcmp(flag, "--seed")) {
            char *end;
            o->seed = strtoull(val, &end, 10);
            if (!*val || *end) {
                fprintf(stderr, "nyxaudit bench: --seed: not a number: '%s'\n", val);
                return HARNESS_EXIT_INVALID;
            }
            continue;
        }
        size_t k = 0;
        while (k < sizeof ints / sizeof ints[0] && strcmp(flag, ints[k].flag))
            k++;
        if (k == sizeof ints / sizeof ints[0]) {
            fprintf(stderr, "nyxaudit bench: unknown option '%s'\n%s", flag, usage);
            return HARNESS_EXIT_INVALID;
        }
        if (parse_int(val, ints[k].lo, ints[k].hi, ints[k].v)) {
            fprintf(stderr, "nyxaudit bench: %s: '%s' is not an integer in [%d, %d]\n",
                    ints[k].flag, val, ints[k].lo, ints[k].hi);
            return HARNESS_EXIT_INVALID;
        }
    }
    return HARNESS_EXIT_OK;
}

/* Fill in the shape's dimensions (a named shape keeps a given --layers). */
static int bench_shape(const char *shape, struct engine_bench_opts *o)
{
    int layers = o->layers;
    if (!strcmp(shape, "llama3-8b")) {
        o->hidden = 4096, o->intermediate = 14336, o->layers = 32, o->heads = 32, o->kv_heads = 8;
    } else if (!strcmp(shape, "llama3-70b")) {
        o->hidden = 8192, o->intermediate = 28672, o->layers = 80, o->heads = 64, o->kv_heads = 8;
    } else if (!strcmp(shape, "custom")) {
        if (!o->hidden || !o->intermediate || !o->layers || !o->heads || !o->vocab) {
            fprintf(stderr, "nyxaudit bench: --shape custom needs --hidden, --intermediate, "
                            "--layers, --heads and --vocab\n");
            return HARNESS_EXIT_INVALID;
        }
        if (!o->kv_heads)
            o->kv_heads = o->heads;
        if (!o->head_dim)
            o->head_dim = o->hidden / o->heads;
        return HARNESS_EXIT_OK;
    } else {
        fprintf(stderr, "nyxaudit bench: unknown shape '%s'\n%s", shape, usage);
        return HARNESS_EXIT_INVALID;
    }
    o->head_dim = 128, o->vocab = 128256;
    if (layers) /* a named shape with fewer layers: per-layer costs on one card */
        o->layers = layers;
    return HARNESS_EXIT_OK;
}

#if NY_HAVE_CUDA
/* Write ids [prompts x new_tokens] to path atomically, one line per prompt, space-separated. */
static int bench_ids_write(const char *path, const int32_t *ids, int prompts, int new_tokens,
                           struct ny_err *err)
{
    struct ny_buf b;
    ny_buf_init(&b);
    for (int p = 0; p < prompts; p++) {
        for (int t = 0; t < new_tokens; t++)
            ny_buf_printf(&b, "%s%d", t ? " " : "", (int)ids[(size_t)p * new_tokens + t]);
        ny_buf_puts(&b, "\n");
    }
    if (b.failed) {
        ny_buf_fini(&b);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory formatting the ids", path);
    }
    int rc = ny_file_write_atomic(path, b.data ? b.data : "", b.len, err);
    ny_buf_fini(&b);
    return rc;
}
#endif

/* The directory that will hold path exists (checked before a run of minutes, not after). */
static int bench_ids_dir_ok(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return 1;
    if (slash == path)
        return ny_dir_exists("/");
    char *dir = ny_strndup(path, (size_t)(slash - path));
    int ok = dir && ny_dir_exists(dir);
    ny_free(dir);
    return ok;
}

int harness_cmd_bench(int argc, char **argv)
{
    struct engine_bench_opts o;
    memset(&o, 0, sizeof o);
    o.prompts = 4, o.prompt_len = 2048, o.new_tokens = 32, o.batch = 4, o.seed = 1, o.tp = 1;
    const char *shape = NULL, *ids_out = NULL;
    int code = bench_parse(argc, argv, &o, &shape, &ids_out);
    if (code < 0)
        return HARNESS_EXIT_OK;
    if (code)
        return code;
    if (!shape) {
        fprintf(stderr, "nyxaudit bench: --shape is required\n%s", usage);
        return HARNESS_EXIT_INVALID;
    }
    if ((code = bench_shape(shape, &o)))
        return code;
    if (ids_out && !bench_ids_dir_ok(ids_out)) {
        fprintf(stderr, "nyxaudit bench: --ids-out %s: its directory does not exist\n", ids_out);
        return HARNESS_EXIT_INVALID;
    }
#if NY_HAVE_CUDA
    struct engine_build_info bi;
    engine_build_info_get(&bi);
    if (o.tp > 1 && !bi.have_nccl) {
        fprintf(stderr, "nyxaudit bench: --tp %d needs NCCL, which this build lacks\n", o.tp);
        return HARNESS_EXIT_INVALID;
    }
    printf("bench: shape %s (hidden %d, ffn %d, %d layers, %d/%d heads x %d, vocab %d), "
           "%d prompts x %d tokens x %d new, batch %d, LoRA rank %d, tp %d (GPU %d..%d), "
           "seed %llu\n",
           shape, o.hidden, o.intermediate, o.layers, o.heads, o.kv_heads, o.head_dim, o.vocab,
           o.prompts, o.prompt_len, o.new_tokens, o.batch, o.lora_rank, o.tp, o.device,
           o.device + o.tp - 1, (unsigned long long)o.seed);
    fflush(stdout);
    struct ny_err err;
    ny_err_init(&err);
    if (ids_out && !(o.ids = ny_calloc((size_t)o.prompts * (size_t)o.new_tokens, sizeof *o.ids))) {
        NY_ERR(&err, NY_E_NOMEM, "--ids-out: %d x %d ids: out of memory", o.prompts,
               o.new_tokens);
        return harness_fail("bench", NY_E_NOMEM, &err);
    }
    size_t n_ids = ids_out ? (size_t)o.prompts * (size_t)o.new_tokens : 0;
    for (size_t i = 0; i < n_ids; i++)
        o.ids[i] = -1; /* an id the engine did not write stays visible */
    int rc = engine_bench_run(&o, stdout, &err);
    for (size_t i = 0; !rc && i < n_ids; i++)
        if (o.ids[i] < 0 || o.ids[i] >= o.vocab)
            rc = NY_ERR(&err, NY_E_INTERNAL, "--ids-out: prompt %zu, new token %zu: id %d not "
                        "written or outside the vocabulary", i / (size_t)o.new_tokens,
                        i % (size_t)o.new_tokens, (int)o.ids[i]);
    if (!rc && ids_out) {
        rc = bench_ids_write(ids_out, o.ids, o.prompts, o.new_tokens, &err);
        if (!rc)
            printf("bench: ids written to %s (%d lines of %d)\n", ids_out, o.prompts,
                   o.new_tokens);
    }
    ny_free(o.ids);
    if (rc)
        return harness_fail("bench", rc, &err);
    return HARNESS_EXIT_OK;
#else
    fprintf(stderr, "nyxaudit bench: the CUDA backend is not built in\n");
    return HARNESS_EXIT_INVALID;
#endif
}
