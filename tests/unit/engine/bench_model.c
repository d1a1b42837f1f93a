/* bench_model.c — CPU engine speed (meson benchmark 'engine.model'): prefill and decode tokens/s
 * on the gqa_llama3_f32 fixture's shape and on a ~10M-parameter random model, on 1 thread and on
 * every core. Prefill = a call with max_new_tokens 1; decode = the extra time of N new tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "engine_testutil.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double run(struct engine_model *m, struct engine_request *r, int n, int new_tokens)
{
    struct engine_result *res = calloc((size_t)n, sizeof *res);
    struct engine_gen_opts o = {.max_new_tokens = new_tokens, .ignore_eos = 1, .max_batch = n};
    struct ny_err err;
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) { /* best of 3 */
        double t0 = now();
        if (engine_generate(m, r, (size_t)n, &o, res, &err) != NY_OK) {
            fprintf(stderr, "generate: %s\n", err.msg);
            exit(1);
        }
        double t = now() - t0;
        best = t < best ? t : best;
        for (int i = 0; i < n; i++)
            engine_result_fini(&res[i]);
    }
    free(res);
    return best;
}

static void bench(const char *label, const char *dir, int threads, int n_prompts, int prompt_len,
                  int new_tokens)
{
    struct engine_model *m;
    struct engine_model_opts o = {.threads = threads};
    struct ny_err err;
    if (engine_model_open(dir, &o, &m, &err) != NY_OK) {
        fprintf(stderr, "%s: %s\n", dir, err.msg);
        exit(1);
    }
    struct engine_model_info info;
    engine_model_info_get(m, &info);
    int32_t *ids = malloc((size_t)n_prompts * prompt_len * sizeof *ids);
    struct engine_request *r = calloc((size_t)n_prompts, sizeof *r);
    for (int i = 0; i < n_prompts * prompt_len; i++)
        ids[i] = (int32_t)((i * 7919u + 13u) % (unsigned)info.vocab_size);
    for (int i = 0; i < n_prompts; i++)
        r[i] = (struct engine_request){ids + (size_t)i * prompt_len, (size_t)prompt_len, -1};
    double t1 = run(m, r, n_prompts, 1), tn = run(m, r, n_prompts, new_tokens);
    double prefill = (double)n_prompts * prompt_len / t1;
    double decode = (double)n_prompts * (new_tokens - 1) / (tn - t1);
    printf("%-24s threads %d  %d x %3d prompt tokens: prefill %9.0f tok/s   decode (batch %d) "
           "%7.1f tok/s  (%.2f ms/step)\n",
           label, threads, n_prompts, prompt_len, prefill, n_prompts, decode,
           1e3 * (tn - t1) / (new_tokens - 1));
    free(ids);
    free(r);
    engine_model_close(m);
}

int main(void)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char fixture[1024];
    snprintf(fixture, sizeof fixture, "%s/golden/parity/gqa_llama3_f32", src ? src : ".");
    const char *tmp = tu_tmpdir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tmp ? tmp : "/tmp");
    /* ~10.3M parameters: H 256, FF 768, 8 layers, 8 heads / 4 KV heads, vocab 8000, untied */
    struct tu_shape s = {.hidden = 256, .intermediate = 768, .layers = 8, .heads = 8,
                         .kv_heads = 4, .vocab = 8000};
    /* the demo checkpoints' shape (golden/demo/train_demo.py defaults), long prompts */
    char demo[300];
    snprintf(demo, sizeof demo, "%s/demo", dir);
    struct tu_shape sd = {.hidden = 128, .intermediate = 384, .layers = 4, .heads = 4,
                          .kv_heads = 2, .vocab = 3072, .bf16 = 1};
    if (!tmp || tu_write_random_model(dir, &s, 3) != 0 || mkdir(demo, 0700) != 0 ||
        tu_write_random_model(demo, &sd, 4) != 0) {
        fprintf(stderr, "cannot write the random model\n");
        return 1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt[2] = {1, cores > 1 ? (int)cores : 1};
    for (int k = 0; k < (nt[1] > 1 ? 2 : 1); k++) {
        bench("fixture (0.1M params)", fixture, nt[k], 4, 64, 32);
        bench("random 10.3M params", dir, nt[k], 1, 128, 32);
        bench("random 10.3M params", dir, nt[k], 4, 128, 32);
        bench("demo shape (1.6M, bf16)", demo, nt[k], 4, 512, 128);
    }
    tu_rmdir(dir);
    return 0;
}
