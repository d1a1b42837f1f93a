/* cmd_bench.c — `nyxaudit bench`: speed of the CUDA backend on random weights of a named or given
 * Llama-3 shape (engine_bench_run does the work; this file parses the command line). */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "harness_int.h"

static const char usage[] =
    "usage: nyxaudit bench --shape llama3-8b|llama3-70b|custom [--hidden N] [--intermediate N]\n"
    "                      [--layers N] [--heads N] [--kv-heads N] [--head-dim N] [--vocab N]\n"
    "                      [--prompts P] [--prompt-len L] [--new-tokens N] [--batch B]\n"
    "                      [--lora-rank R] [--gpu I] [--seed S]\n"
    "  Random bf16 weights made on the GPU; P prompts x L tokens x N new tokens, B at a time.\n"
    "  --layers also overrides a named shape (e.g. the 70B shape's per-layer cost on one card).\n";

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int harness_cmd_bench(int argc, char **argv)
{
    struct engine_bench_opts o;
    memset(&o, 0, sizeof o);
    o.prompts = 4;
    o.prompt_len = 2048;
    o.new_tokens = 32;
    o.batch = 4;
    o.seed = 1;
    const char *shape = NULL;
    struct {
        const char *flag;
        int *v;
        int lo, hi;
    } ints[] = {{"--hidden", &o.hidden, 1, 1 << 16},         {"--intermediate", &o.intermediate, 1, 1 << 18},
                {"--layers", &o.layers, 1, 1024},            {"--heads", &o.heads, 1, 1024},
                {"--kv-heads", &o.kv_heads, 1, 1024},        {"--head-dim", &o.head_dim, 2, 512},
                {"--vocab", &o.vocab, 1, 1 << 22},           {"--prompts", &o.prompts, 1, 1 << 20},
                {"--prompt-len", &o.prompt_len, 1, 1 << 20}, {"--new-tokens", &o.new_tokens, 1, 1 << 20},
                {"--batch", &o.batch, 1, 1024},              {"--lora-rank", &o.lora_rank, 0, 4096},
                {"--gpu", &o.device, 0, 1024}};
    struct engine_bench_opts given;
    memset(&given, 0, sizeof given);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return HARNESS_EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nyxaudit bench: %s needs a value\n%s", argv[i], usage);
            return HARNESS_EXIT_INVALID;
        }
        const char *val = argv[++i];
        if (!strcmp(argv[i - 1], "--shape")) {
            shape = val;
            continue;
        }
        if (!strcmp(argv[i - 1], "--seed")) {
            char *end;
            o.seed = strtoull(val, &end, 10);
            if (!*val || *end) {
                fprintf(stderr, "nyxaudit bench: --seed: not a number: '%s'\n", val);
                return HARNESS_EXIT_INVALID;
            }
            continue;
        }
        size_t k = 0;
        while (k < sizeof ints / sizeof ints[0] && strcmp(argv[i - 1], ints[k].flag))
            k++;
        if (k == sizeof ints / sizeof ints[0]) {
            fprintf(stderr, "nyxaudit bench: unknown option '%s'\n%s", argv[i - 1], usage);
            return HARNESS_EXIT_INVALID;
        }
        if (parse_int(val, ints[k].lo, ints[k].hi, ints[k].v)) {
            fprintf(stderr, "nyxaudit bench: %s: '%s' is not an integer in [%d, %d]\n",
                    ints[k].flag, val, ints[k].lo, ints[k].hi);
            return HARNESS_EXIT_INVALID;
        }
    }
    given = o;
    if (!shape) {
        fprintf(stderr, "nyxaudit bench: --shape is required\n%s", usage);
        return HARNESS_EXIT_INVALID;
    }
    int named = 1;
    if (!strcmp(shape, "llama3-8b")) {
        o.hidden = 4096, o.intermediate = 14336, o.layers = 32, o.heads = 32, o.kv_heads = 8;
    } else if (!strcmp(shape, "llama3-70b")) {
        o.hidden = 8192, o.intermediate = 28672, o.layers = 80, o.heads = 64, o.kv_heads = 8;
    } else if (!strcmp(shape, "custom")) {
        named = 0;
    } else {
        fprintf(stderr, "nyxaudit bench: unknown shape '%s'\n%s", shape, usage);
        return HARNESS_EXIT_INVALID;
    }
    if (named) {
        o.head_dim = 128, o.vocab = 128256;
        if (given.layers) /* a named shape with fewer layers: per-layer costs on one card */
            o.layers = given.layers;
    } else if (!o.hidden || !o.intermediate || !o.layers || !o.heads || !o.vocab) {
        fprintf(stderr, "nyxaudit bench: --shape custom needs --hidden, --intermediate, "
                        "--layers, --heads and --vocab\n");
        return HARNESS_EXIT_INVALID;
    }
    if (!named) {
        if (!o.kv_heads)
            o.kv_heads = o.heads;
        if (!o.head_dim)
            o.head_dim = o.hidden / o.heads;
    }
#if NY_HAVE_CUDA
    printf("bench: shape %s (hidden %d, ffn %d, %d layers, %d/%d heads x %d, vocab %d), "
           "%d prompts x %d tokens x %d new, batch %d, LoRA rank %d\n",
           shape, o.hidden, o.intermediate, o.layers, o.heads, o.kv_heads, o.head_dim, o.vocab,
           o.prompts, o.prompt_len, o.new_tokens, o.batch, o.lora_rank);
    fflush(stdout);
    struct ny_err err;
    ny_err_init(&err);
    int rc = engine_bench_run(&o, stdout, &err);
    if (rc)
        return harness_fail("bench", rc, &err);
    return HARNESS_EXIT_OK;
#else
    fprintf(stderr, "nyxaudit bench: the CUDA backend is not built in\n");
    return HARNESS_EXIT_INVALID;
#endif
}
