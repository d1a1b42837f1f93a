/* codeset_zip.c — just enough of the zip format to read one member of a CMS release archive:
 * the end-of-central-directory record, central directory entries, local headers, stored and
 * deflate data (zlib raw inflate), CRC-32 and size checks. No zip64, no encryption. */
#include <string.h>
#include <zlib.h>

#include "metrics_int.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int codeset_zip_is_zip(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint8_t b[4];
    int ok = fread(b, 1, 4, f) == 4 && rd32(b) == SIG_LOCAL;
    fclose(f);
    return ok;
}

struct zip_entry {
    uint16_t method, flags;
    uint32_t crc, csize, usize, local_off;
    const char *name;
    size_t name_len;
};

static int find_eocd(const struct ny_mmap *m, const char *path, size_t *cd_off, size_t *cd_size,
                     size_t *count, struct ny_err *err)
{
    if (m->size < 22)
        return NY_ERR(err, NY_E_FORMAT, "%s: not a zip archive (too short)", path);
    size_t lowest = m->size > 22 + 65535 ? m->size - 22 - 65535 : 0;
    for (size_t i = m->size - 22 + 1; i-- > lowest;) {
        if (rd32(m->data + i) != SIG_EOCD)
            continue;
        const uint8_t *e = m->data + i;
        if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
            return NY_ERR(err, NY_E_UNSUPPORTED, "%s: multi-disk zip archives are not supported",
                          path);
        *count = rd16(e + 10);
        *cd_size = rd32(e + 12);
        *cd_off = rd32(e + 16);
        if (*cd_off == 0xFFFFFFFFu || *count == 0xFFFF)
            return NY_ERR(err, NY_E_UNSUPPORTED, "%s: zip64 archives are not supported", path);
        if (*cd_off > i || *cd_size > i - *cd_off)
            return NY_ERR(err, NY_E_FORMAT, "%s: zip central directory lies outside the file",
                          path);
        return 0;
    }
    return NY_ERR(err, NY_E_FORMAT, "%s: not a zip archive (no end-of-central-directory record)",
                  path);
}

static int inflate_entry(const struct ny_mmap *m, const char *path, const struct zip_entry *e,
                         size_t max_size, char **out, size_t *out_len, struct ny_err *err)
{
    const char *nm = e->name;
    int nl = (int)(e->name_len > 200 ? 200 : e->name_len);
    if (e->flags & 1)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: member %.*s is encrypted", path, nl, nm);
    if (e->method != 0 && e->method != 8)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: member %.*s uses compression method %u",
                      path, nl, nm, e->method);
    if (e->usize > max_size)
        return NY_ERR(err, NY_E_RANGE, "%s: member %.*s is %u bytes (limit %zu)", path, nl, nm,
                      e->usize, max_size);
    size_t lo = e->local_off;
    if (lo > m->size || m->size - lo < 30 || rd32(m->data + lo) != SIG_LOCAL)
        return NY_ERR(err, NY_E_FORMAT, "%s: member %.*s: bad local header", path, nl, nm);
    size_t data_off = lo + 30 + rd16(m->data + lo + 26) + rd16(m->data + lo + 28);
    if (data_off > m->size || m->size - data_off < e->csize)
        return NY_ERR(err, NY_E_FORMAT, "%s: member %.*s is truncated", path, nl, nm);
    char *buf = ny_malloc((size_t)e->usize + 1);
    if (!buf)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory for %u bytes", path, e->usize);
    const uint8_t *src = m->data + data_off;
    if (e->method == 0) {
        if (e->csize != e->usize) {
            ny_free(buf);
            return NY_ERR(err, NY_E_FORMAT, "%s: stored member %.*s has inconsistent sizes", path,
                          nl, nm);
        }
        memcpy(buf, src, e->usize);
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
            ny_free(buf);
            return NY_ERR(err, NY_E_NOMEM, "%s: zlib could not start", path);
        }
        zs.next_in = (Bytef *)src;
        zs.avail_in = e->csize;
        zs.next_out = (Bytef *)buf;
        zs.avail_out = e->usize;
        int zr = inflate(&zs, Z_FINISH);
        size_t got = zs.total_out;
        inflateEnd(&zs);
        if (zr != Z_STREAM_END || got != e->usize) {
            ny_free(buf);
            return NY_ERR(err, NY_E_FORMAT, "%s: member %.*s: corrupt deflate data (%s)", path,
                          nl, nm, zr == Z_BUF_ERROR ? "longer than its recorded size" : "bad data");
        }
    }
    if ((uint32_t)crc32(0L, (const Bytef *)buf, e->usize) != e->crc) {
        ny_free(buf);
        return NY_ERR(err, NY_E_FORMAT, "%s: member %.*s: CRC-32 mismatch", path, nl, nm);
    }
    buf[e->usize] = '\0';
    *out = buf;
    *out_len = e->usize;
    return 0;
}

int codeset_zip_extract(const char *path, int (*match)(const char *base), size_t max_size,
                        char **out, size_t *out_len, char **name_out, struct ny_err *err)
{
    struct ny_mmap m;
    int rc = ny_mmap_open(&m, path, err);
    if (rc)
        return rc;
    size_t cd_off = 0, cd_size = 0, count = 0;
    rc = find_eocd(&m, path, &cd_off, &cd_size, &count, err);
    size_t p = cd_off, end = cd_off + cd_size;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (end - p < 46 || rd32(m.data + p) != SIG_CENTRAL) {
            rc = NY_ERR(err, NY_E_FORMAT, "%s: zip central directory entry %zu is corrupt", path,
                        i);
            break;
        }
        const uint8_t *c = m.data + p;
        struct zip_entry e = {rd16(c + 10), rd16(c + 8), rd32(c + 16), rd32(c + 20),
                              rd32(c + 24), rd32(c + 42), (const char *)c + 46, rd16(c + 28)};
        size_t rec = 46 + (size_t)rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
        if (end - p < rec) {
            rc = NY_ERR(err, NY_E_FORMAT, "%s: zip central directory entry %zu is truncated",
                        path, i);
            break;
        }
        p += rec;
        /* Base name, NUL-terminated, for the caller's predicate. */
        size_t b = e.name_len;
        while (b > 0 && e.name[b - 1] != '/')
            b--;
        char *base = ny_strndup(e.name + b, e.name_len - b);
        if (!base) {
            rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
            break;
        }
        if (memchr(e.name, '\0', e.name_len) || !match(base)) {
            ny_free(base);
            continue;
        }
        char *data = NULL;
        size_t len = 0;
        rc = inflate_entry(&m, path, &e, max_size, &data, &len, err);
        if (rc == 0) {
            *out = data;
            *out_len = len;
            if (name_out)
                *name_out = base;
            else
                ny_free(base);
            ny_mmap_close(&m);
            return 0;
        }
        ny_free(base);
    }
    if (rc == 0)
        rc = NY_ERR(err, NY_E_NOTFOUND, "%s: the zip archive holds no member of the expected "
                    "name", path);
    ny_mmap_close(&m);
    return rc;
}
