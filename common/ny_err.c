/* ny_err.c — status code names, struct ny_err reporting, and levelled logging to stderr. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"

const char *ny_status_name(int code)
{
    switch (code) {
    case NY_OK: return "NY_OK";
    case NY_E_INVALID: return "NY_E_INVALID";
    case NY_E_NOMEM: return "NY_E_NOMEM";
    case NY_E_IO: return "NY_E_IO";
    case NY_E_FORMAT: return "NY_E_FORMAT";
    case NY_E_RANGE: return "NY_E_RANGE";
    case NY_E_NOTFOUND: return "NY_E_NOTFOUND";
    case NY_E_UNSUPPORTED: return "NY_E_UNSUPPORTED";
    case NY_E_DB: return "NY_E_DB";
    case NY_E_DEVICE: return "NY_E_DEVICE";
    case NY_E_STATE: return "NY_E_STATE";
    case NY_E_INTERNAL: return "NY_E_INTERNAL";
    case NY_E_INCOMPLETE: return "NY_E_INCOMPLETE";
    default: return "NY_E_UNKNOWN";
    }
}

void ny_err_init(struct ny_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
    err->src_file = NULL;
    err->src_line = 0;
}

int ny_err_vset(struct ny_err *err, int code, const char *file, int line, const char *fmt,
                va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    err->src_file = file;
    err->src_line = line;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return code;
}

int ny_err_set(struct ny_err *err, int code, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ny_err_vset(err, code, file, line, fmt, ap);
    va_end(ap);
    return code;
}

void ny_err_prefix(struct ny_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char head[NY_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    size_t hl = strlen(head);
    size_t ol = strlen(err->msg);
    if (hl >= sizeof err->msg - 1)
        hl = sizeof err->msg - 1;
    if (hl + ol > sizeof err->msg - 1)
        ol = sizeof err->msg - 1 - hl;
    memmove(err->msg + hl, err->msg, ol);
    memcpy(err->msg, head, hl);
    err->msg[hl + ol] = '\0';
}

/* ---- logging ---- */

static int log_level = -1; /* -1: not yet read from the environment */

static enum ny_log_level log_level_from_env(void)
{
    const char *v = getenv("NYXAUDIT_LOG");
    if (!v)
        return NY_LOG_INFO;
    if (!strcasecmp(v, "error"))
        return NY_LOG_ERROR;
    if (!strcasecmp(v, "warn"))
        return NY_LOG_WARN;
    if (!strcasecmp(v, "debug"))
        return NY_LOG_DEBUG;
    return NY_LOG_INFO;
}

void ny_log_set_level(enum ny_log_level level) { log_level = (int)level; }

enum ny_log_level ny_log_get_level(void)
{
    if (log_level < 0)
        log_level = (int)log_level_from_env();
    return (enum ny_log_level)log_level;
}

void ny_log(enum ny_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if ((int)level > (int)ny_log_get_level())
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nyxaudit: %s: ", names[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
