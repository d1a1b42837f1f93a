/* tokenizer_regex.c — pre-tokenization patterns: Hugging Face's (Oniguruma) pattern rewritten so
 * that PCRE2 (UTF + UCP) matches the same strings, and the byte-level alphabet.
 *
 * The two engines differ in their Unicode tables (Oniguruma in tokenizers follows Unicode 16,
 * PCRE2 10.42 Unicode 14, and PCRE2's \s also matches U+180E) and in caseless matching (PCRE2
 * folds 's to 'ſ; Oniguruma as used by tokenizers does not). So \p{L} and \p{N} are widened by the
 * generated ranges in tokenizer_uclass.c, \s and \S are spelled out as the reference's set, and
 * (?i:...) groups become case-sensitive groups with ASCII letters written as [xX]. Constructs whose
 * meaning depends on Unicode tables we do not carry (\w, \d, \b, other properties, inline flags)
 * are refused rather than risk silent differences. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void tok_alphabet_init(struct engine_tokenizer *t)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves; the others map to
     * U+0100 upwards in byte order. */
    int next = 256;
    for (int i = 0; i < 324; i++)
        t->chr_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = keep ? b : next++;
        t->byte_chr_len[b] = (uint8_t)ny_utf8_encode((uint32_t)cp, t->byte_chr[b]);
        t->chr_byte[cp] = (int16_t)b;
    }
}

struct rx {
    struct ny_buf out;
    const char *what;
    struct ny_err *err;
};

static void put_ranges(struct ny_buf *b, const struct tok_urange *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].lo == r[i].hi)
            ny_buf_printf(b, "\\x{%X}", (unsigned)r[i].lo);
        else
            ny_buf_printf(b, "\\x{%X}-\\x{%X}", (unsigned)r[i].lo, (unsigned)r[i].hi);
    }
}

/* The body of a character class for \p{L}, \p{N} or \s (without brackets). */
static void put_class_body(struct ny_buf *b, char which)
{
    if (which == 'L') {
        ny_buf_puts(b, "\\p{L}");
        put_ranges(b, tok_uclass_extra_l, tok_uclass_extra_l_n);
    } else if (which == 'N') {
        ny_buf_puts(b, "\\p{N}");
        put_ranges(b, tok_uclass_extra_n, tok_uclass_extra_n_n);
    } else {
        put_ranges(b, tok_uclass_space, tok_uclass_space_n);
    }
}

static int unsupported(struct rx *x, size_t at, const char *what)
{
    return NY_ERR(x->err, NY_E_UNSUPPORTED, "%s: %s at character %zu is not supported", x->what,
                  what, at);
}

/* Translates one escape at p (p[0] == '\\'); returns the bytes consumed, or a negative code. */
static int escape(struct rx *x, const char *p, const char *end, const char *start, int in_class)
{
    size_t at = (size_t)(p - start);
    if (p + 1 >= end)
        return NY_ERR(x->err, NY_E_FORMAT, "%s: pattern ends with a backslash", x->what);
    char d = p[1];
    if (d == 'p' || d == 'P') {
        char name = 0;
        int used = 3;
        if (p + 2 < end && p[2] == '{') {
            if (p + 4 < end && p[4] == '}' && (p[3] == 'L' || p[3] == 'N'))
                name = p[3], used = 5;
        } else if (p + 2 < end && (p[2] == 'L' || p[2] == 'N')) {
            name = p[2];
        }
        if (!name)
            return unsupported(x, at, "a Unicode property other than \\p{L} and \\p{N}");
        if (d == 'P' && in_class)
            return unsupported(x, at, "\\P inside a character class");
        ny_buf_puts(&x->out, in_class ? "" : d == 'P' ? "[^" : "[");
        put_class_body(&x->out, name);
        ny_buf_puts(&x->out, in_class ? "" : "]");
        return used;
    }
    if (d == 's' || d == 'S') {
        if (d == 'S' && in_class)
            return unsupported(x, at, "\\S inside a character class");
        ny_buf_puts(&x->out, in_class ? "" : d == 'S' ? "[^" : "[");
        put_class_body(&x->out, 's');
        ny_buf_puts(&x->out, in_class ? "" : "]");
        return 2;
    }
    if (d == 'x') {
        const char *q = p + 2;
        if (q < end && *q == '{') {
            while (q < end && *q != '}')
                q++;
            q = q < end ? q + 1 : q;
        } else {
            for (int k = 0; k < 2 && q < end && strchr("0123456789abcdefABCDEF", *q); k++)
                q++;
        }
        ny_buf_append(&x->out, p, (size_t)(q - p));
        return (int)(q - p);
    }
    if (((unsigned char)d < 0x80 && !strchr("abcdefghijklmnopqrstuvwxyz"
                                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                                            d)) ||
        strchr("rntfeaAzZG", d)) {
        ny_buf_append(&x->out, p, 2);
        return 2;
    }
    char what[48];
    snprintf(what, sizeof what, "the escape \\%c", d);
    return unsupported(x, at, what);
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char other_case(char c)
{
    return (char)(c >= 'a' && c <= 'z' ? c - 32 : c + 32);
}

/* One character outside escapes; updates the class and caseless-group state. */
static int plain(struct rx *x, const char *p, const char *end, const char *start, int *in_class,
                 int *stack, int *depth)
{
    size_t at = (size_t)(p - start);
    char c = *p;
    int caseless = stack[*depth];
    if (*in_class) {
        if (c == ']') {
            *in_class = 0;
        } else if (c == '[' && p + 1 < end && p[1] == ':') {
            return unsupported(x, at, "a POSIX class");
        } else if (caseless && is_alpha(c)) {
            if ((p + 1 < end && p[1] == '-') || (p > start && p[-1] == '-'))
                return unsupported(x, at, "a letter range inside (?i:...)");
            char both[2] = {c, other_case(c)};
            ny_buf_append(&x->out, both, 2);
            return 1;
        } else if (caseless && (unsigned char)c >= 0x80) {
            return unsupported(x, at, "a non-ASCII character inside (?i:...)");
        }
        ny_buf_append(&x->out, p, 1);
        return 1;
    }
    if (c == '[') {
        size_t n = 1;
        if (p + n < end && p[n] == '^')
            n++;
        if (p + n < end && p[n] == ']')
            n++; /* a ']' first in a class is literal */
        ny_buf_append(&x->out, p, n);
        *in_class = 1;
        return (int)n;
    }
    if (c == '(') {
        if (*depth + 1 >= 64)
            return unsupported(x, at, "groups nested over 64 deep");
        if (end - p >= 4 && memcmp(p, "(?i:", 4) == 0) {
            stack[++*depth] = 1;
            ny_buf_puts(&x->out, "(?:");
            return 4;
        }
        if (p + 1 < end && p[1] == '?' && (p + 2 >= end || !strchr(":=!<>|", p[2])))
            return unsupported(x, at, "an inline option other than (?i:...)");
        stack[*depth + 1] = caseless;
        ++*depth;
        ny_buf_append(&x->out, p, 1);
        return 1;
    }
    if (c == ')') {
        if (*depth > 0)
            --*depth;
    } else if (caseless && is_alpha(c)) {
        ny_buf_printf(&x->out, "[%c%c]", c, other_case(c));
        return 1;
    } else if (caseless && (unsigned char)c >= 0x80) {
        return unsupported(x, at, "a non-ASCII character inside (?i:...)");
    }
    ny_buf_append(&x->out, p, 1);
    return 1;
}

/* The widening ranges assume PCRE2's tables are at Unicode 14 or later (Debian 12's 10.42). */
static int pcre2_unicode_ok(void)
{
    char v[32] = "";
    if (pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, v) < 0)
        return 0;
    return atoi(v) >= 14;
}

int tok_regex_compile(const char *pattern, size_t len, const char *what, pcre2_code **out,
                      struct ny_err *err)
{
    if (!pcre2_unicode_ok())
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: the PCRE2 library's Unicode tables are older "
                      "than Unicode 14; the tokenizer needs PCRE2 10.40 or later",
                      what);
    struct rx x = {.what = what, .err = err};
    ny_buf_init(&x.out);
    int stack[64] = {0}, depth = 0, in_class = 0, rc = NY_OK;
    const char *p = pattern, *end = pattern + len;
    while (p < end) {
        int used = *p == '\\' ? escape(&x, p, end, pattern, in_class)
                              : plain(&x, p, end, pattern, &in_class, stack, &depth);
        if (used < 0) {
            rc = used;
            break;
        }
        p += used;
    }
    if (!rc && x.out.failed)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    if (rc) {
        ny_buf_fini(&x.out);
        return rc;
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(x.out.data ? x.out.data : ""), x.out.len,
                                   PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    ny_buf_fini(&x.out);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return NY_ERR(err, NY_E_FORMAT, "%s: the pattern does not compile: %s", what,
                      (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: same matches, faster */
    *out = re;
    return NY_OK;
}
