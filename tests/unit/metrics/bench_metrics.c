/* bench_metrics.c — `meson test --benchmark --suite metrics`: prints the time to score 500
 * records x 3 models (metrics_evaluate with a code set, 2000 bootstrap resamples) and the time of
 * 100,000 indexed code lookups (the FY2025 ICD-10-CM release from $NY_SHARED_DIR when present). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *const cpts[] = {"74177", "71046", "73721", "70450", "72193", "74176"};
static const char *const icds[] = {"R10.84", "K57.30", "J18.9", "M25.511", "M25.5", "R10.9",
                                   "N20.0",  "S72.001A", "I10", "C34.90", "R91.8", "Q99.ZZZ"};
static const char *const mods[] = {"26", "TC", "RT", "LT"};

static void make_line(struct metrics_rng *r, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s, %s", cpts[metrics_rng_below(r, 6)],
                     mods[metrics_rng_below(r, 4)]);
    int k = 1 + (int)metrics_rng_below(r, 3);
    for (int i = 0; i < k; i++)
        n += snprintf(out + n, cap - (size_t)n, ", %s", icds[metrics_rng_below(r, 12)]);
}

static int bench_score(void)
{
    enum { N = 500, M = 3 };
    static char lines[(M + 1) * N][96];
    static struct metrics_gold gold[N];
    static const char *outs[M][N];
    struct metrics_rng r;
    metrics_rng_seed(&r, 1);
    for (int i = 0; i < N; i++) {
        make_line(&r, lines[i], sizeof lines[i]);
        gold[i] = (struct metrics_gold){.id = "x", .codes = lines[i],
                                        .modality = (i % 3) ? "CT" : "MR"};
        for (int j = 0; j < M; j++) {
            char *l = lines[N * (j + 1) + i];
            if (metrics_rng_below(&r, 4) == 0)
                make_line(&r, l, 96);
            else
                memcpy(l, lines[i], sizeof lines[i]);
            outs[j][i] = l;
        }
    }
    struct codeset_row rows[32];
    size_t nr = 0;
    for (int i = 0; i < 6; i++)
        rows[nr++] = (struct codeset_row){"cpt", cpts[i], 1, NULL};
    for (int i = 0; i < 11; i++)
        rows[nr++] = (struct codeset_row){"icd10cm", icds[i], strcmp(icds[i], "M25.5") != 0, NULL};
    rows[nr++] = (struct codeset_row){"modifier", "RT", 1, NULL};
    rows[nr++] = (struct codeset_row){"modifier", "LT", 1, NULL};
    rows[nr++] = (struct codeset_row){"modifier", "TC", 1, NULL};
    struct codeset_db *db = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (codeset_open(":memory:", &db, &err) || codeset_import_rows(db, "B", "2020-01-01", rows, nr,
                                                                   &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    struct metrics_model models[M] = {{"V16", outs[0]}, {"V17", outs[1]}, {"E1", outs[2]}};
    struct metrics_input in = {gold, N, models, M, db, "B", 42};
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        json_t *out = NULL;
        double t0 = now();
        if (metrics_evaluate(&in, &out, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        double t = now() - t0;
        best = t < best ? t : best;
        json_decref(out);
    }
    printf("score: 500 records x 3 models (code set, %d bootstrap resamples, 3 pairs): "
           "%.1f ms (best of 5)\n", METRICS_BOOTSTRAP_B, best * 1e3);
    codeset_close(db);
    return 0;
}

static int bench_lookup(void)
{
    struct codeset_db *db = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (codeset_open(":memory:", &db, &err))
        return 1;
    const char *sd = getenv("NY_SHARED_DIR");
    char zip[1024];
    snprintf(zip, sizeof zip, "%s/codesets/icd10cm/cms_2025_dx.zip", sd ? sd : ".");
    const char *rel = "FY2025";
    double t0 = now();
    if (ny_file_exists(zip)) {
        if (codeset_import_files(db, zip, NULL, NULL, NULL, NULL, NULL, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        printf("import: FY2025 ICD-10-CM order file from the CMS zip: %.0f ms\n",
               (now() - t0) * 1e3);
    } else {
        struct codeset_row rows[12];
        for (int i = 0; i < 12; i++)
            rows[i] = (struct codeset_row){"icd10cm", icds[i], 1, NULL};
        rel = "small";
        codeset_import_rows(db, rel, "2020-01-01", rows, 12, NULL);
        printf("import: (no $NY_SHARED_DIR: a 12-code release)\n");
    }
    enum { K = 100000 };
    struct metrics_rng r;
    metrics_rng_seed(&r, 3);
    size_t valid = 0;
    t0 = now();
    for (int i = 0; i < K; i++) {
        enum codeset_status st;
        if (codeset_lookup(db, rel, METRICS_KIND_ICD, icds[metrics_rng_below(&r, 12)], &st, &err))
            return 1;
        valid += st == CODESET_VALID;
    }
    double t = now() - t0;
    printf("lookup: 100,000 ICD validations: %.1f ms (%.2f us each; %zu valid)\n", t * 1e3,
           t * 1e6 / K, valid);
    codeset_close(db);
    return 0;
}

int main(void)
{
    return bench_score() || bench_lookup();
}
