/* bench_prompts.c — benchmark (meson benchmark "datasets.prompts"): prompts for 500 held-out
 * records with retrieval over a 50,000-record train pool. Prints the setup and build times.
 * Usage: bench_datasets_prompts [POOL [N]] (defaults 50000 and 500). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "datasets.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    size_t pool = argc > 1 ? (size_t)atol(argv[1]) : 50000;
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 500;
    char dir[] = "/tmp/ny_dsbench_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char *db = ny_path_join(dir, "records.db"), *out = ny_path_join(dir, "prompts.jsonl");
    struct ny_err err;
    ny_err_init(&err);
    struct dataset_store *st = NULL;
    double t0 = now();
    int rc = dataset_store_open(db, &st, &err);
    if (!rc)
        rc = dataset_synth_to_store(st, "heldout", "heldout", DATASET_DEMO_SEED_HELDOUT,
                                    DATASET_DEMO_HELDOUT, &err);
    if (!rc)
        rc = dataset_synth_to_store(st, "train", "train", DATASET_DEMO_SEED_TRAIN, pool, &err);
    double t1 = now(), c1 = cpu();
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    size_t blocked[3] = {0, 0, 0};
    if (!rc)
        rc = dataset_prompts_export(st, "heldout", n, 1, &o, out, blocked, &err);
    double t2 = now(), c2 = cpu();
    dataset_store_close(st);
    if (rc)
        fprintf(stderr, "bench: %s\n", err.msg);
    else
        printf("datasets.prompts: store of %d held-out + %zu train records built in %.2f s\n"
               "datasets.prompts: %zu prompts (k=%zu, K=%zu) in %.3f s wall, %.3f s CPU"
               " (%.2f ms each); leakage blocked: hash %zu, cosine %zu, fingerprint %zu\n",
               DATASET_DEMO_HELDOUT, pool, t1 - t0, n, o.k, o.K, t2 - t1, c2 - c1,
               1000.0 * (t2 - t1) / (double)n, blocked[0], blocked[1], blocked[2]);
    unlink(out);
    unlink(db);
    rmdir(dir);
    ny_free(db);
    ny_free(out);
    return rc ? 1 : 0;
}
