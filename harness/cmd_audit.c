/* cmd_audit.c — the default command, `nyxaudit --split heldout --n 500`: reads the configuration
 * (built in, or --config FILE), applies the flags, loads the checkpoints on the engine and runs
 * the audit (harness/audit.c). Exit codes as in README.md. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_int.h"

struct overrides {
    const char *config, *split, *out, *device, *store, *shard;
    int64_t n, seed, tp; /* -1 = not given */
    int quiet;
};

static int parse_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out,
                     struct ny_err *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!s[0] || *end || errno || v < lo || v > hi)
        return NY_ERR(err, NY_E_INVALID, "%s needs an integer in [%lld, %lld], not \"%s\"", flag,
                      (long long)lo, (long long)hi, s);
    *out = v;
    return NY_OK;
}

static int parse_args(int argc, char **argv, struct overrides *o, struct ny_err *err)
{
    *o = (struct overrides){.n = -1, .seed = -1, .tp = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o->quiet = 1;
            continue;
        }
        static const char *const valued[] = {"--config", "--split", "--n", "--seed", "--out",
                                             "--device", "--tp", "--store", "--shard",
                                             NULL};
        int known = 0;
        for (int k = 0; valued[k]; k++)
            known |= !strcmp(a, valued[k]);
        if (!known)
            return NY_ERR(err, NY_E_INVALID, "unexpected argument '%s' (see nyxaudit --help)", a);
        if (i + 1 >= argc || !argv[i + 1][0])
            return NY_ERR(err, NY_E_INVALID, "%s needs a value", a);
        const char *v = argv[++i];
        int rc = NY_OK;
        if (!strcmp(a, "--config"))
            o->config = v;
        else if (!strcmp(a, "--split"))
            o->split = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--device"))
            o->device = v;
        else if (!strcmp(a, "--store"))
            o->store = v;
        else if (!strcmp(a, "--shard"))
            o->shard = v;
        else if (!strcmp(a, "--n"))
            rc = parse_int(a, v, 1, 10000000, &o->n, err);
        else if (!strcmp(a, "--seed"))
            rc = parse_int(a, v, 0, INT64_MAX, &o->seed, err);
        else
            rc = parse_int(a, v, 1, 64, &o->tp, err);
        if (rc)
            return rc;
    }
    return NY_OK;
}

/* "I/N" with 0 <= I < N <= HARNESS_SHARDS_MAX (what names where it came from). */
#define HARNESS_SHARDS_MAX 4096
static int parse_shard(const char *what, const char *s, int64_t *index, int64_t *count,
                       struct ny_err *err)
{
    const char *slash = strchr(s, '/');
    char head[32];
    int64_t i = 0, n = 0;
    if (!slash || (size_t)(slash - s) >= sizeof head)
        return NY_ERR(err, NY_E_INVALID, "%s: \"%s\" is not I/N (e.g. 0/4)", what, s);
    memcpy(head, s, (size_t)(slash - s));
    head[slash - s] = '\0';
    if (parse_int(what, slash + 1, 1, HARNESS_SHARDS_MAX, &n, err) ||
        parse_int(what, head, 0, n - 1, &i, err))
        return NY_ERR(err, NY_E_INVALID, "%s: \"%s\" is not I/N with 0 <= I < N <= %d", what, s,
                      HARNESS_SHARDS_MAX);
    *index = i;
    *count = n;
    return NY_OK;
}

/* The shard from the launcher's environment: Open MPI's mpirun, then PMI (MPICH, Intel MPI,
 * srun --mpi=pmi2), then Slurm. Neither variable of a pair set: no sharding. */
static int shard_from_env(int64_t *index, int64_t *count, struct ny_err *err)
{
    static const char *const pairs[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                           {"PMI_RANK", "PMI_SIZE"},
                                           {"SLURM_PROCID", "SLURM_NTASKS"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        const char *r = getenv(pairs[k][0]), *n = getenv(pairs[k][1]);
        if (!r && !n)
            continue;
        if (!r || !n)
            return NY_ERR(err, NY_E_INVALID, "environment: %s is set but %s is not",
                          r ? pairs[k][0] : pairs[k][1], r ? pairs[k][1] : pairs[k][0]);
        char what[96];
        snprintf(what, sizeof what, "environment %s/%s", pairs[k][0], pairs[k][1]);
        struct ny_buf v;
        ny_buf_init(&v);
        ny_buf_printf(&v, "%s/%s", r, n);
        int rc = v.failed ? NY_ERR(err, NY_E_NOMEM, "out of memory")
                          : parse_shard(what, v.data, index, count, err);
        ny_buf_fini(&v);
        return rc;
    }
    *index = 0;
    *count = 1;
    return NY_OK;
}

static int replace(char **slot, const char *v, struct ny_err *err)
{
    char *d = ny_strdup(v);
    if (!d)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    ny_free(*slot);
    *slot = d;
    return NY_OK;
}

static int apply(struct harness_config *cfg, const struct overrides *o, struct ny_err *err)
{
    int rc = NY_OK;
    if (o->split)
        rc = replace(&cfg->split, o->split, err);
    if (!rc && o->out)
        rc = replace(&cfg->out_dir, o->out, err);
    if (!rc && o->device)
        rc = replace(&cfg->device, o->device, err);
    if (!rc && o->store)
        rc = replace(&cfg->run_store, o->store, err);
    if (!rc)
        rc = o->shard ? parse_shard("--shard", o->shard, &cfg->shard_index, &cfg->shard_count,
                                    err)
                      : shard_from_env(&cfg->shard_index, &cfg->shard_count, err);
    if (o->n > 0)
        cfg->n = o->n;
    if (o->seed >= 0)
        cfg->seed = (uint64_t)o->seed;
    if (o->tp > 0)
        cfg->tp = o->tp;
    cfg->quiet = o->quiet;
    return rc ? rc : harness_config_validate(cfg, err);
}

/* Name every missing checkpoint directory at once (exit 2), so a user fixes them in one go. */
static int check_checkpoints(const struct harness_config *cfg, struct ny_err *err)
{
    int missing = 0;
    for (size_t i = 0; i < cfg->n_checkpoints; i++) {
        const struct harness_checkpoint *c = &cfg->checkpoints[i];
        const char *dirs[2] = {c->model_path, c->adapter_path};
        for (int k = 0; k < 2; k++)
            if (dirs[k] && !ny_dir_exists(dirs[k])) {
                fprintf(stderr, "nyxaudit: checkpoint %s: %s directory missing: %s\n", c->label,
                        k ? "adapter" : "model", dirs[k]);
                missing++;
            }
    }
    if (!missing)
        return NY_OK;
    if (!strcmp(cfg->source, "built-in demo configuration"))
        return NY_ERR(err, NY_E_NOTFOUND,
                      "cannot audit: the default configuration audits the demo checkpoints "
                      "(V16, V17, Epoch-1) in golden/demo (or $NYXAUDIT_DEMO_DIR), and %d "
                      "director%s missing. They are made by the demo checkpoint work (issue #8); "
                      "point --config at real checkpoints instead.", missing,
                      missing == 1 ? "y is" : "ies are");
    return NY_ERR(err, NY_E_NOTFOUND, "%s: %d checkpoint director%s missing", cfg->source,
                  missing, missing == 1 ? "y is" : "ies are");
}

static void on_signal(int sig)
{
    (void)sig;
    harness_audit_request_stop();
}

static int run(const struct harness_config *cfg, struct ny_err *err, int *gates_failed)
{
    struct harness_decoder *dec = NULL;
    int rc = harness_engine_decoder_open(cfg, &dec, err);
    if (rc)
        return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct harness_audit_outcome out;
    rc = harness_audit_run(cfg, dec, &out, err);
    harness_engine_decoder_close(dec);
    if (rc == NY_E_INCOMPLETE && out.shard_done) { /* exit 3: a merge is needed */
        if (!cfg->quiet)
            fprintf(stderr, "nyxaudit: %s\n", err->msg);
        *gates_failed = -1;
        return NY_OK;
    }
    if (rc)
        return rc;
    *gates_failed = out.gates_failed;
    if (!cfg->quiet)
        fprintf(stderr, "nyxaudit: run %s: %s (%d gate%s failed; %lld predictions decoded, %lld "
                "from the store); outputs in %s/\n", out.run_id,
                out.gates_failed ? "FAIL" : "PASS", out.gates_failed,
                out.gates_failed == 1 ? "" : "s", (long long)out.decoded,
                (long long)out.cached, cfg->out_dir);
    return NY_OK;
}

int harness_cmd_audit(int argc, char **argv)
{
    struct ny_err err;
    ny_err_init(&err);
    struct overrides o;
    int rc = parse_args(argc, argv, &o, &err);
    if (rc)
        return harness_fail("audit", rc, &err);
    struct harness_config cfg;
    rc = o.config ? harness_config_load(o.config, &cfg, &err)
                  : harness_config_default(&cfg, &err);
    if (rc)
        return harness_fail("audit", rc == NY_E_NOMEM ? rc : NY_E_INVALID, &err);
    rc = apply(&cfg, &o, &err);
    if (!rc)
        rc = check_checkpoints(&cfg, &err);
    if (rc) {
        harness_config_fini(&cfg);
        return harness_fail("audit", rc == NY_E_NOMEM ? rc : NY_E_INVALID, &err);
    }
    int failed = 0;
    rc = run(&cfg, &err, &failed);
    harness_config_fini(&cfg);
    if (rc)
        return harness_fail("audit", rc, &err);
    if (failed < 0)
        return HARNESS_EXIT_INCOMPLETE;
    return failed ? HARNESS_EXIT_GATE : HARNESS_EXIT_OK;
}
