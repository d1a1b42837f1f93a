/* ny_file.c — whole-file reads with a size cap, atomic writes, directories and read-only mmap. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

int ny_file_read(const char *path, size_t max_size, char **out, size_t *out_len,
                 struct ny_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NY_ERR(err, errno == ENOENT ? NY_E_NOTFOUND : NY_E_IO, "%s: cannot open: %s", path,
                      strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NY_ERR(err, NY_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_size) {
        close(fd);
        return NY_ERR(err, NY_E_RANGE, "%s: file is %lld bytes, more than the %zu allowed", path,
                      (long long)st.st_size, max_size);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            close(fd);
            return NY_ERR(err, NY_E_IO, "%s: read failed after %zu of %zu bytes", path, got, size);
        }
        got += (size_t)n;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    if (out_len)
        *out_len = size;
    return NY_OK;
}

int ny_stream_read(FILE *f, const char *what, size_t max_size, char **out, size_t *out_len,
                   struct ny_err *err)
{
    struct ny_buf b;
    ny_buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n > max_size - b.len) {
            ny_buf_fini(&b);
            return NY_ERR(err, NY_E_RANGE, "%s: more than %zu bytes", what, max_size);
        }
        ny_buf_append(&b, chunk, n);
    }
    if (ferror(f) || b.failed) {
        int code = b.failed ? NY_E_NOMEM : NY_E_IO;
        ny_buf_fini(&b);
        return NY_ERR(err, code, "%s: read failed", what);
    }
    size_t len = b.len;
    char *data = ny_buf_take(&b);
    if (!data)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    *out = data;
    if (out_len)
        *out_len = len;
    return NY_OK;
}

int ny_file_write_atomic(const char *path, const void *data, size_t len, struct ny_err *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return NY_ERR(err, NY_E_IO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    const char *p = data;
    size_t left = len;
    int rc = NY_OK;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = NY_ERR(err, NY_E_IO, "%s: write failed: %s", path, strerror(errno));
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (!rc && fsync(fd) != 0)
        rc = NY_ERR(err, NY_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (fchmod(fd, 0644) != 0 && !rc)
        rc = NY_ERR(err, NY_E_IO, "%s: chmod failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = NY_ERR(err, NY_E_IO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = NY_ERR(err, NY_E_IO, "%s: rename failed: %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

int ny_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ny_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ny_mkdir_p(const char *path, struct ny_err *err)
{
    char *p = ny_strdup(path);
    if (!p)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                free(p);
                return NY_ERR(err, NY_E_IO, "%s: cannot create directory: %s", path, strerror(e));
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    if (!ny_dir_exists(path))
        return NY_ERR(err, NY_E_IO, "%s: exists and is not a directory", path);
    return NY_OK;
}

char *ny_path_join(const char *dir, const char *name)
{
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, dir);
    if (b.len > 0 && b.data[b.len - 1] != '/')
        ny_buf_puts(&b, "/");
    ny_buf_puts(&b, name);
    return ny_buf_take(&b);
}

int ny_mmap_open(struct ny_mmap *m, const char *path, struct ny_err *err)
{
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NY_ERR(err, errno == ENOENT ? NY_E_NOTFOUND : NY_E_IO, "%s: cannot open: %s", path,
                      strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NY_ERR(err, NY_E_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return NY_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return NY_ERR(err, NY_E_IO, "%s: mmap failed: %s", path, strerror(errno));
    m->data = p;
    m->size = (size_t)st.st_size;
    return NY_OK;
}

void ny_mmap_close(struct ny_mmap *m)
{
    if (m && m->data)
        munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}
