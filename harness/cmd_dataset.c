/* cmd_dataset.c — `nyxaudit dataset import|synth|prompts`: the CLI over datasets/ (record store,
 * synthetic corpus, prompt export). The library does the work; this file parses arguments. */
#include <stdlib.h>
#include <string.h>

#include "datasets.h"
#include "engine.h"
#include "harness_int.h"

#define DEFAULT_DB "nyxaudit-records.db"

static const char usage[] =
    "usage: nyxaudit dataset import FILE --split NAME [--db FILE] [--replace]\n"
    "       nyxaudit dataset synth --n N --seed S --out FILE [--prefix P]\n"
    "       nyxaudit dataset synth --demo [--db FILE]\n"
    "       nyxaudit dataset prompts --split NAME --n N --out FILE [--seed S] [--db FILE]\n"
    "                [--k N] [--K N] [--train-split NAME] [--rules FILE] [--max-tokens N]\n"
    "                [--max-report-tokens N] [--tokenizer tokenizer.json] [--threads N]\n"
    "The default store is " DEFAULT_DB "; records are JSONL (see datasets/datasets.h).\n";

struct args {
    const char *file, *split, *db, *out, *prefix, *rules, *tokenizer, *train_split;
    int replace, demo;
    long long n, k, K, max_tokens, max_report, threads;
    unsigned long long seed;
    int have_n, have_seed;
};

static int bad(const char *cmd, const char *fmt, const char *what)
{
    fprintf(stderr, "nyxaudit dataset %s: ", cmd);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n%s", usage);
    return HARNESS_EXIT_INVALID;
}

static int parse_num(const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(const char *cmd, int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->db = DEFAULT_DB;
    a->k = a->K = a->max_report = a->threads = -1;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long num;
        if (!strcmp(o, "--replace"))
            a->replace = 1;
        else if (!strcmp(o, "--demo"))
            a->demo = 1;
        else if (o[0] != '-' && !a->file)
            a->file = o;
        else if (!v)
            return bad(cmd, "option %s needs a value", o);
        else {
            i++;
            if (!strcmp(o, "--split"))
                a->split = v;
            else if (!strcmp(o, "--db"))
                a->db = v;
            else if (!strcmp(o, "--out"))
                a->out = v;
            else if (!strcmp(o, "--prefix"))
                a->prefix = v;
            else if (!strcmp(o, "--rules"))
                a->rules = v;
            else if (!strcmp(o, "--tokenizer"))
                a->tokenizer = v;
            else if (!strcmp(o, "--train-split"))
                a->train_split = v;
            else if (parse_num(v, &num))
                return bad(cmd, "option %s needs a non-negative integer", o);
            else if (!strcmp(o, "--n"))
                a->n = num, a->have_n = 1;
            else if (!strcmp(o, "--seed"))
                a->seed = (unsigned long long)num, a->have_seed = 1;
            else if (!strcmp(o, "--k"))
                a->k = num;
            else if (!strcmp(o, "--K"))
                a->K = num;
            else if (!strcmp(o, "--max-tokens"))
                a->max_tokens = num;
            else if (!strcmp(o, "--max-report-tokens"))
                a->max_report = num;
            else if (!strcmp(o, "--threads"))
                a->threads = num;
            else
                return bad(cmd, "unknown option %s", o);
        }
    }
    return 0;
}

static int cmd_import(struct args *a)
{
    if (!a->file || !a->split)
        return bad("import", "%s", "needs FILE and --split NAME");
    struct ny_err err;
    ny_err_init(&err);
    struct dataset_store *st = NULL;
    struct dataset_import_stats s;
    int rc = dataset_store_open(a->db, &st, &err);
    if (!rc)
        rc = dataset_store_import_file(st, a->file, a->split, a->replace, &s, &err);
    dataset_store_close(st);
    if (rc)
        return harness_fail("dataset import", rc, &err);
    printf("%s: split %s: %zu added, %zu unchanged, %zu replaced (store %s)\n", a->file, a->split,
           s.added, s.unchanged, s.replaced, a->db);
    return HARNESS_EXIT_OK;
}

static int cmd_synth(struct args *a)
{
    struct ny_err err;
    ny_err_init(&err);
    int rc;
    if (a->demo) {
        struct dataset_store *st = NULL;
        rc = dataset_store_open(a->db, &st, &err);
        if (!rc)
            rc = dataset_store_create_demo(st, &err);
        dataset_store_close(st);
        if (rc)
            return harness_fail("dataset synth", rc, &err);
        printf("demo corpus in %s: heldout %d, train %d records\n", a->db, DATASET_DEMO_HELDOUT,
               DATASET_DEMO_TRAIN);
        return HARNESS_EXIT_OK;
    }
    if (!a->have_n || !a->have_seed || !a->out)
        return bad("synth", "%s", "needs --n N --seed S --out FILE (or --demo)");
    if (a->n > 10000000)
        return bad("synth", "%s", "--n is limited to 10,000,000");
    rc = dataset_synth_write(a->out, a->prefix ? a->prefix : "synth", a->seed, 0, (size_t)a->n,
                             &err);
    if (rc)
        return harness_fail("dataset synth", rc, &err);
    printf("%s: %lld synthetic records (seed %llu)\n", a->out, a->n, a->seed);
    return HARNESS_EXIT_OK;
}

/* The real tokenizer as the prompt builder's counter. */
static int count_with_tokenizer(void *ctx, const char *text, size_t len, size_t *n)
{
    int32_t *ids = NULL;
    size_t nids = 0;
    int rc = engine_tokenizer_encode(ctx, text, len, 0, &ids, &nids, NULL);
    ny_free(ids);
    if (!rc)
        *n = nids;
    return rc;
}

static int cmd_prompts(struct args *a)
{
    if (!a->split || !a->have_n || !a->out)
        return bad("prompts", "%s", "needs --split NAME --n N --out FILE");
    if (a->n == 0)
        return bad("prompts", "%s", "--n must be at least 1");
    struct ny_err err;
    ny_err_init(&err);
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    char *rules = NULL;
    size_t rules_len;
    struct engine_tokenizer *tok = NULL;
    struct dataset_store *st = NULL;
    size_t blocked[3];
    int rc = NY_OK;
    if (a->k >= 0)
        o.k = (size_t)a->k;
    if (a->K >= 0)
        o.K = (size_t)a->K;
    if (a->max_report > 0)
        o.max_report_tokens = (size_t)a->max_report;
    if (a->threads > 0)
        o.threads = (size_t)a->threads;
    o.max_prompt_tokens = (size_t)a->max_tokens;
    if (a->train_split)
        o.train_split = a->train_split;
    if (a->rules && !(rc = ny_file_read(a->rules, 1 << 20, &rules, &rules_len, &err)))
        o.rules_text = rules;
    if (!rc && a->tokenizer && !(rc = engine_tokenizer_open(a->tokenizer, &tok, &err))) {
        o.count = count_with_tokenizer;
        o.count_ctx = tok;
    }
    if (!rc)
        rc = dataset_store_open(a->db, &st, &err);
    if (!rc)
        rc = dataset_prompts_export(st, a->split, (size_t)a->n, a->seed, &o, a->out, blocked,
                                    &err);
    dataset_store_close(st);
    engine_tokenizer_close(tok);
    ny_free(rules);
    if (rc)
        return harness_fail("dataset prompts", rc, &err);
    printf("%s: prompts for up to %lld records of %s (seed %llu); leakage blocked: %zu by content"
           " hash, %zu by cosine, %zu by fingerprint\n", a->out, a->n, a->split, a->seed,
           blocked[0], blocked[1], blocked[2]);
    return HARNESS_EXIT_OK;
}

int harness_cmd_dataset(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? HARNESS_EXIT_INVALID : HARNESS_EXIT_OK;
    }
    struct args a;
    int rc = parse_args(argv[1], argc, argv, &a);
    if (rc)
        return rc;
    if (!strcmp(argv[1], "import"))
        return cmd_import(&a);
    if (!strcmp(argv[1], "synth"))
        return cmd_synth(&a);
    if (!strcmp(argv[1], "prompts"))
        return cmd_prompts(&a);
    return bad(argv[1], "unknown subcommand \"%s\"", argv[1]);
}
