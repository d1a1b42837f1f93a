/* harness_test.h — a helper of the harness tests: dir/records.sqlite holding synthetic records
 * (the datasets module's corpus): n_heldout in split "heldout" (ids "ho…", seed_heldout) and
 * n_train in split "train" (ids "tr…", seed_train). Returns 0, or -1 after printing why. */
#ifndef NY_HARNESS_TEST_H
#define NY_HARNESS_TEST_H

#include <stdio.h>

#include "common.h"
#include "datasets.h"

static inline int ht_records_store(const char *dir, uint64_t seed_heldout, size_t n_heldout,
                                   uint64_t seed_train, size_t n_train)
{
    char *p = ny_path_join(dir, "records.sqlite");
    struct dataset_store *ds = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = p ? dataset_store_open(p, &ds, &err) : NY_E_NOMEM;
    if (!rc)
        rc = dataset_synth_to_store(ds, "heldout", "ho", seed_heldout, n_heldout, &err);
    if (!rc)
        rc = dataset_synth_to_store(ds, "train", "tr", seed_train, n_train, &err);
    if (rc)
        fprintf(stderr, "records store in %s: %s\n", dir, err.msg);
    if (ds)
        dataset_store_close(ds);
    ny_free(p);
    return rc ? -1 : 0;
}

#endif
