/* reports.h — the reports module (prefix report_): the compliance PDF (libharu), the engineers'
 * HTML dashboard and the history page, all made from results.json objects (harness/RESULTS.md). */
#ifndef NY_REPORTS_H
#define NY_REPORTS_H

#include <stddef.h>

#include <jansson.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one schema these writers accept (results["schema"]). */
#define REPORT_RESULTS_SCHEMA "nyxaudit.results/1"

/* Check that `results` follows harness/RESULTS.md closely enough to be reported: every field the
 * reports print is present with the right type, exactly one checkpoint is the baseline, every
 * checkpoint has its metrics. Returns 0, or NY_E_FORMAT with err naming the field path
 * ("results.metrics.models.V17.metrics.cpt_exact.ci95: expected an array of 2 numbers"). */
int report_results_check(const json_t *results, struct ny_err *err);

/* SHA-256 (64 lowercase hex + NUL) of the canonical serialisation of results
 * (ny_json_dumps(results, 0)): the figure printed in every report footer. 0 or NY_E_NOMEM. */
int report_results_sha256(const json_t *results, char hex[65], struct ny_err *err);

/* Write the compliance PDF for one run to `path` (A4, DejaVu Sans embedded, compressed).
 * Identical results give identical bytes: the creation date is run.started and the file holds no
 * random ids. The font is read from /usr/share/fonts/truetype/dejavu (Debian fonts-dejavu-core)
 * or from $NYXAUDIT_FONT_DIR when set. The file is written atomically: on any failure (invalid
 * results, missing font, I/O) nothing is left at `path`. `results` is borrowed. Returns 0 or
 * NY_E_FORMAT (results), NY_E_NOTFOUND (font), NY_E_IO, NY_E_NOMEM, NY_E_INTERNAL (libharu). */
int report_pdf_write(const json_t *results, const char *path, struct ny_err *err);

/* Write the self-contained HTML dashboard for one run (inline CSS, SVG and a small sorting /
 * filtering script; nothing fetched from the network) to `path`, atomically. Every string from
 * results is HTML-escaped. Same errors as report_pdf_write except NY_E_NOTFOUND. */
int report_html_write(const json_t *results, const char *path, struct ny_err *err);

/* Write the history page over `n` runs (results objects, e.g. read from the run store; borrowed,
 * any order; n >= 1): each metric per checkpoint over time (ordered by run.started, then run.id)
 * with the code-set release of each run. Each run is checked as by report_results_check; a run
 * that fails the check is left out of the charts and listed on the page under "Runs not shown"
 * with its index, run id and the reason, so one bad row in the store does not hide the others.
 * When no run passes, nothing is written and the first run's error is returned (NY_E_FORMAT;
 * err names its index and run id). n == 0 is NY_E_INVALID. Written atomically. */
int report_history_html_write(const json_t *const *runs, size_t n, const char *path,
                              struct ny_err *err);

#ifdef __cplusplus
}
#endif
#endif /* NY_REPORTS_H */
