/* metrics_table.c — a readable text table of a "metrics" object (for `nyxaudit score`). */
#include <jansson.h>

#include "metrics.h"

static const char *const table_keys[] = {
    "cpt_exact",       "cpt_primary",      "modifier_exact", "icd_exact",
    "icd_any_overlap", "icd_root_overlap", "icd_recall",     "icd_precision",
    "all_three_exact", "icd_micro_precision", "icd_micro_recall", "icd_micro_f1",
};

void metrics_print_table(const struct json_t *metrics_c, FILE *f)
{
    json_t *metrics = (json_t *)metrics_c;
    json_t *models = json_object_get(metrics, "models");
    fprintf(f, "n = %lld records\n\n%-20s",
            (long long)json_integer_value(json_object_get(metrics, "n")), "metric");
    const char *name;
    json_t *mo;
    json_object_foreach(models, name, mo) fprintf(f, " %27.27s", name);
    fputc('\n', f);
    for (size_t k = 0; k < sizeof table_keys / sizeof *table_keys; k++) {
        fprintf(f, "%-20s", table_keys[k]);
        json_object_foreach(models, name, mo) {
            json_t *v = json_object_get(json_object_get(mo, "metrics"), table_keys[k]);
            json_t *ci = json_object_get(v, "ci95");
            fprintf(f, "   %6.4f [%6.4f, %6.4f]", json_real_value(json_object_get(v, "value")),
                    json_real_value(json_array_get(ci, 0)), json_real_value(json_array_get(ci, 1)));
        }
        fputc('\n', f);
    }
    static const char *const counts[][2] = {
        {"format_errors", NULL},       {"missing", NULL},          {"specificity", "taxonomy"},
        {"wrong_category", "taxonomy"}, {"hallucinated", "taxonomy"}, {"missed", "taxonomy"},
        {"extra", "taxonomy"},
    };
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        fprintf(f, "%-20s", counts[k][0]);
        json_object_foreach(models, name, mo) {
            json_t *o = counts[k][1] ? json_object_get(mo, counts[k][1]) : mo;
            fprintf(f, " %27lld", (long long)json_integer_value(json_object_get(o, counts[k][0])));
        }
        fputc('\n', f);
    }
    static const char *const vkeys[] = {"icd_invalid", "icd_nonbillable", "cpt_invalid",
                                        "modifier_invalid"};
    for (size_t k = 0; k < 4; k++) {
        fprintf(f, "%-20s", vkeys[k]);
        json_object_foreach(models, name, mo) {
            json_t *v = json_object_get(json_object_get(mo, "validity"), vkeys[k]);
            if (json_is_real(v))
                fprintf(f, " %27.4f", json_real_value(v));
            else
                fprintf(f, " %27s", "-");
        }
        fputc('\n', f);
    }
    json_t *cmp = json_object_get(metrics, "comparisons");
    if (json_array_size(cmp) > 0)
        fprintf(f, "\n%-12s %-12s %-18s %9s %21s %10s\n", "a", "b", "metric", "delta", "ci95",
                "mcnemar_p");
    size_t i;
    json_t *c;
    json_array_foreach(cmp, i, c) {
        json_t *ci = json_object_get(c, "ci95");
        fprintf(f, "%-12.12s %-12.12s %-18s %+9.4f [%+8.4f, %+8.4f] %10.4g\n",
                json_string_value(json_object_get(c, "a")),
                json_string_value(json_object_get(c, "b")),
                json_string_value(json_object_get(c, "metric")),
                json_real_value(json_object_get(c, "delta")),
                json_real_value(json_array_get(ci, 0)), json_real_value(json_array_get(ci, 1)),
                json_real_value(json_object_get(c, "mcnemar_p")));
    }
}
