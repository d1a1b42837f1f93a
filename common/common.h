/* common.h — the base module (prefix ny_): status codes and struct ny_err, levelled logging,
 * checked allocation and arithmetic, growable byte buffers, files, SHA-256, UTF-8 and JSON helpers.
 * Every other module includes this header; it depends on libc and jansson only. */
#ifndef NY_COMMON_H
#define NY_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ny_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes: 0 is success, failures are negative -------------------------------------- */
enum {
    NY_OK = 0,
    NY_E_INVALID = -1,     /* bad argument or malformed input (file, record, field) */
    NY_E_NOMEM = -2,       /* allocation failed */
    NY_E_IO = -3,          /* open/read/write/mmap failed */
    NY_E_FORMAT = -4,      /* a file does not follow its format (truncated, wrong dtype, ...) */
    NY_E_RANGE = -5,       /* a size, offset or count out of range or overflowing */
    NY_E_NOTFOUND = -6,    /* a named thing (file, id, code, tensor) does not exist */
    NY_E_UNSUPPORTED = -7, /* valid but not supported here (e.g. DoRA, CUDA not built in) */
    NY_E_DB = -8,          /* SQLite failure */
    NY_E_DEVICE = -9,      /* CUDA, cuBLAS or NCCL failure */
    NY_E_STATE = -10,      /* object used in the wrong state (poisoned engine, closed store) */
    NY_E_INTERNAL = -11,   /* a bug: an invariant did not hold */
    NY_E_INCOMPLETE = -12, /* a run or result is not complete */
};

/* Short stable name of a status code ("NY_E_FORMAT"); never NULL. */
const char *ny_status_name(int code);

/* ---- errors ---------------------------------------------------------------------------------- */
#define NY_ERR_MSG_MAX 512

/* Caller-owned error report. Functions take an optional `struct ny_err *` (may be NULL) and fill
 * it when they fail. The message names the file, record or field and the problem. */
struct ny_err {
    int code;                  /* NY_E_* or 0 */
    char msg[NY_ERR_MSG_MAX];  /* human-readable, NUL-terminated */
    const char *src_file;      /* source location that raised it (static string) */
    int src_line;
};

void ny_err_init(struct ny_err *err);

/* Record an error (printf-style message) and return `code`, so callers can write
 * `return NY_ERR(err, NY_E_FORMAT, "%s: truncated header", path);`. NULL err is allowed. */
int ny_err_set(struct ny_err *err, int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int ny_err_vset(struct ny_err *err, int code, const char *file, int line, const char *fmt,
                va_list ap);
#define NY_ERR(err, code, ...) ny_err_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)

/* Prefix an existing message with context ("loading V17: " + old message). Keeps the code. */
void ny_err_prefix(struct ny_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- logging (stderr) ------------------------------------------------------------------------ */
enum ny_log_level { NY_LOG_ERROR = 0, NY_LOG_WARN = 1, NY_LOG_INFO = 2, NY_LOG_DEBUG = 3 };

/* Messages above the level are dropped. Default NY_LOG_INFO; NYXAUDIT_LOG=error|warn|info|debug
 * in the environment sets it on first use. */
void ny_log_set_level(enum ny_log_level level);
enum ny_log_level ny_log_get_level(void);
void ny_log(enum ny_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ny_log_error(...) ny_log(NY_LOG_ERROR, __VA_ARGS__)
#define ny_log_warn(...) ny_log(NY_LOG_WARN, __VA_ARGS__)
#define ny_log_info(...) ny_log(NY_LOG_INFO, __VA_ARGS__)
#define ny_log_debug(...) ny_log(NY_LOG_DEBUG, __VA_ARGS__)

/* ---- checked allocation and arithmetic ------------------------------------------------------- */
/* Return NULL on failure (never abort); n*size overflow is a failure. ny_free(NULL) is a no-op. */
void *ny_malloc(size_t size);
void *ny_calloc(size_t n, size_t size);
void *ny_reallocarray(void *p, size_t n, size_t size);
char *ny_strdup(const char *s);
char *ny_strndup(const char *s, size_t n);
void ny_free(void *p);

/* 1 when a*b (or a+b) overflows size_t / uint64_t, else 0 and *out holds the result. */
int ny_mul_overflow(size_t a, size_t b, size_t *out);
int ny_add_overflow(size_t a, size_t b, size_t *out);
int ny_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out);
int ny_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out);

/* ---- growable byte buffer (always NUL-terminated) -------------------------------------------- */
struct ny_buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;   /* bytes used, excluding the terminating NUL */
    size_t cap;
    int failed;   /* set once an append ran out of memory; later appends are ignored */
};
void ny_buf_init(struct ny_buf *b);
void ny_buf_fini(struct ny_buf *b); /* frees data; the struct can be reused after init */
int ny_buf_append(struct ny_buf *b, const void *data, size_t len);
int ny_buf_puts(struct ny_buf *b, const char *s);
int ny_buf_printf(struct ny_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the string to the caller (who frees it with ny_free) and reset the buffer. */
char *ny_buf_take(struct ny_buf *b);

/* ---- files ----------------------------------------------------------------------------------- */
/* Read a whole file into a NUL-terminated heap buffer (*out owned by caller, freed with ny_free).
 * Files larger than max_size are refused (NY_E_RANGE) so hostile sizes cannot exhaust memory. */
int ny_file_read(const char *path, size_t max_size, char **out, size_t *out_len,
                 struct ny_err *err);
/* Read a whole stream (stdin for CLI commands) into a NUL-terminated heap buffer (*out owned by
 * the caller, freed with ny_free; "" when empty). More than max_size bytes is NY_E_RANGE; `what`
 * names the stream in messages ("stdin"). */
int ny_stream_read(FILE *f, const char *what, size_t max_size, char **out, size_t *out_len,
                   struct ny_err *err);
/* Write data to path atomically: a temp file in the same directory, fsync, rename. A failure
 * leaves no partial file under `path`. */
int ny_file_write_atomic(const char *path, const void *data, size_t len, struct ny_err *err);
int ny_file_exists(const char *path);
int ny_dir_exists(const char *path);
/* mkdir -p */
int ny_mkdir_p(const char *path, struct ny_err *err);
/* Join dir and name with one '/'; heap result freed with ny_free, NULL on OOM. */
char *ny_path_join(const char *dir, const char *name);

/* Read-only memory map of a whole file. Empty files map to data == NULL, size == 0. */
struct ny_mmap {
    const uint8_t *data;
    size_t size;
};
int ny_mmap_open(struct ny_mmap *m, const char *path, struct ny_err *err);
void ny_mmap_close(struct ny_mmap *m);

/* ---- SHA-256 --------------------------------------------------------------------------------- */
struct ny_sha256 {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t block[64];
    size_t used;
};
void ny_sha256_init(struct ny_sha256 *s);
void ny_sha256_update(struct ny_sha256 *s, const void *data, size_t len);
void ny_sha256_final(struct ny_sha256 *s, uint8_t digest[32]);
/* One-shot helpers; hex is 64 lowercase characters plus NUL. */
void ny_sha256(const void *data, size_t len, uint8_t digest[32]);
void ny_sha256_hex(const void *data, size_t len, char hex[65]);
/* hex_out needs room for 2n+1 characters. */
void ny_hex_encode(const uint8_t *bytes, size_t n, char *hex_out);
/* SHA-256 of a file's contents, streamed. */
int ny_sha256_file(const char *path, char hex[65], struct ny_err *err);

/* 64-bit FNV-1a, for hash tables (not for security or manifests). */
uint64_t ny_hash64(const void *data, size_t len);

/* ---- UTF-8 ----------------------------------------------------------------------------------- */
/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF). On
 * failure, *bad_offset (optional) receives the offset of the first bad byte. */
int ny_utf8_valid(const char *s, size_t len, size_t *bad_offset);
/* Decode one code point at s (len bytes available); returns its byte length (1..4), or 0 when
 * malformed. */
int ny_utf8_decode(const char *s, size_t len, uint32_t *cp);
/* Encode cp into out (4 bytes room); returns the byte length (1..4), 0 for invalid cp. */
int ny_utf8_encode(uint32_t cp, char *out);

/* ---- JSON (jansson) -------------------------------------------------------------------------- */
/* The jansson types are exposed (json_t) where modules need them: include <jansson.h>. These
 * helpers turn jansson failures into ny_err messages that name the file and position. */
struct json_t;
/* Parse a whole file. `what` names it in messages (usually the path). *out owned by the caller
 * (json_decref). Invalid UTF-8, trailing garbage and files over max_size are errors. */
int ny_json_load_file(const char *path, size_t max_size, struct json_t **out, struct ny_err *err);
/* Parse a buffer; `what` names the source in messages ("requests.jsonl line 7"). */
int ny_json_load_buf(const char *buf, size_t len, const char *what, struct json_t **out,
                     struct ny_err *err);
/* Typed member access. `required` 0 means a missing (or null) member leaves *out untouched and
 * returns NY_E_NOTFOUND without setting err; a present member of the wrong type is NY_E_FORMAT. */
int ny_json_get_string(struct json_t *obj, const char *key, int required, const char **out,
                       const char *what, struct ny_err *err);
int ny_json_get_int(struct json_t *obj, const char *key, int required, int64_t *out,
                    const char *what, struct ny_err *err);
int ny_json_get_real(struct json_t *obj, const char *key, int required, double *out,
                     const char *what, struct ny_err *err);
int ny_json_get_bool(struct json_t *obj, const char *key, int required, int *out,
                     const char *what, struct ny_err *err);
/* Serialise with sorted keys, compact, and real numbers printed with 17 significant digits so
 * the output is byte-stable. Heap string freed with ny_free. */
char *ny_json_dumps(const struct json_t *v, int indent);

/* Line reader over a memory buffer: splits on '\n', strips a trailing '\r'. Used for JSONL. */
struct ny_lines {
    const char *p, *end;
    size_t lineno; /* 1-based number of the line last returned */
};
void ny_lines_init(struct ny_lines *it, const char *buf, size_t len);
/* Returns 1 and sets *line and *len to the next line, 0 at the end. */
int ny_lines_next(struct ny_lines *it, const char **line, size_t *len);

/* ---- build information ----------------------------------------------------------------------- */
const char *ny_version(void);    /* "0.1.0" */
const char *ny_git_commit(void); /* short hash or "unknown" */

#ifdef __cplusplus
}
#endif
#endif /* NY_COMMON_H */
