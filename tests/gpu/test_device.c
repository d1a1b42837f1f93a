/* test_device.c — the CUDA backend finds the devices and passes its kernel + cuBLAS self-test on
 * each. Exits 77 (SKIP) when the backend is not built in or no device is present. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine.h"

static int ndev;

static void test_selftest_every_device(void **state)
{
    (void)state;
    for (int d = 0; d < ndev; d++) {
        struct ny_err err;
        ny_err_init(&err);
        char name[160];
        int rc = engine_device_selftest(d, name, sizeof name, &err);
        if (rc)
            print_error("device %d: %s\n", d, err.msg);
        assert_int_equal(rc, NY_OK);
        print_message("device %d: %s\n", d, name);
    }
}

static void test_bad_device_is_an_error(void **state)
{
    (void)state;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(engine_device_selftest(ndev + 7, NULL, 0, &err), NY_E_DEVICE);
    assert_true(err.msg[0] != '\0');
}

int main(void)
{
    struct ny_err err;
    ny_err_init(&err);
    if (engine_device_count(&ndev, &err) != NY_OK || ndev == 0) {
        printf("SKIP: %s\n", err.msg[0] ? err.msg : "no CUDA device");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selftest_every_device),
        cmocka_unit_test(test_bad_device_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
