/* parity_run.h — run a golden/parity fixture (expected.json from make_fixtures.py) through the
 * engine on a device and compare with transformers' ids and first-step logits. Shared by the CPU
 * parity test (golden.engine.parity) and the GPU one (gpu.model). */
#ifndef NY_PARITY_RUN_H
#define NY_PARITY_RUN_H

#include <stddef.h>

struct parity_outcome {
    size_t n;             /* requests generated (every run × prompt of the fixture) */
    int bf16;             /* the fixture's weights are bfloat16 */
    int id_mismatch;      /* requests whose greedy ids differ from transformers' */
    char first_mismatch[256]; /* what differs in the first such request */
    double worst_rel;     /* max over requests of max|ours - ref| / max|ref| of first logits */
    size_t worst_index;   /* the request with that error */
};

/* All (run, prompt) pairs of golden/parity/<name> in one engine_generate call on `device` with
 * `threads` CPU threads (0: the engine's default) over `tp` tensor-parallel ranks (1: none);
 * merge_first: open with the first adapter merged and run only its requests. Fails the calling
 * CMocka test on any engine error; fills *out. */
void parity_run(const char *name, const char *device, int threads, int tp, int merge_first,
                struct parity_outcome *out);

#endif
