#include "gw_buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gw_buf_reserve(struct gw_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap;
    char *data;

    if (need <= b->cap)
        return 0;
    if (extra > ((size_t)-1) / 4)
        return -ENOMEM;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    data = realloc(b->data, cap);
    if (!data)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

int gw_buf_append(struct gw_buf *b, const void *data, size_t len)
{
    if (gw_buf_reserve(b, len) < 0)
        return -ENOMEM;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int gw_buf_puts(struct gw_buf *b, const char *s)
{
    return gw_buf_append(b, s, strlen(s));
}

int gw_buf_putc(struct gw_buf *b, char c)
{
    return gw_buf_append(b, &c, 1);
}

int gw_buf_vprintf(struct gw_buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    int n;

    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return -EINVAL;
    if (gw_buf_reserve(b, (size_t)n) < 0)
        return -ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

char *gw_vformat_at(const char *file, int line, const char *fmt, va_list ap)
{
    struct gw_buf b = GW_BUF_INIT;
    int r = line > 0 ? gw_buf_printf(&b, "%s:%d: ", file, line) : gw_buf_printf(&b, "%s: ", file);

    if (r < 0 || gw_buf_vprintf(&b, fmt, ap) < 0) {
        gw_buf_free(&b);
        return NULL;
    }
    return b.data;
}

int gw_buf_printf(struct gw_buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = gw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- JSON strings (RFC 8259) ---- */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if there is none. p
 * is NUL-terminated and a NUL never passes as a continuation byte, so
 * this stops at the end of the string. */
static size_t utf8_length(const unsigned char *p)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        if (p[0] == 0xe0)
            lo = 0xa0; /* overlong */
        else if (p[0] == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        if (p[0] == 0xf0)
            lo = 0x90; /* overlong */
        else if (p[0] == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Copies runs of bytes that need no escape in one append each. */
int gw_buf_json_string(struct gw_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run = p;
    size_t start = b->len;
    const char *esc;
    char u[8];

    if (gw_buf_putc(b, '"') < 0)
        return -ENOMEM;
    while (*p) {
        size_t n = utf8_length(p);

        if (n > 1 || (n == 1 && *p >= 0x20 && *p != '"' && *p != '\\')) {
            p += n;
            continue;
        }
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            /* A control character, or a byte that starts no UTF-8 sequence. */
            snprintf(u, sizeof(u), "\\u%04x", n == 1 ? (unsigned)*p : 0xfffdu);
            esc = u;
            break;
        }
        if (gw_buf_append(b, run, (size_t)(p - run)) < 0 || gw_buf_puts(b, esc) < 0)
            goto nomem;
        run = ++p;
    }
    if (gw_buf_append(b, run, (size_t)(p - run)) < 0 || gw_buf_putc(b, '"') < 0)
        goto nomem;
    return 0;
nomem:
    gw_buf_truncate(b, start);
    return -ENOMEM;
}

void gw_buf_truncate(struct gw_buf *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
        b->data[len] = '\0';
    }
}

void gw_buf_reset(struct gw_buf *b)
{
    gw_buf_truncate(b, 0);
}

void gw_buf_free(struct gw_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int gw_buf_read_file(struct gw_buf *b, const char *path, size_t max_bytes)
{
    struct stat st;
    int fd, r = 0;

    gw_buf_reset(b);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        r = -EISDIR;
        goto out;
    }
    /* st_size is only a first guess: 0 for a pipe, stale for a file that
     * grows while we read. As a guess it sizes the buffer exactly: the
     * file, the NUL, and one byte of room for the read that meets the end.
     * (Rounded up to a power of two, then doubled for that last read, a
     * 34 MB devices file asked for 134 MB.) */
    if (st.st_size > 0 && (size_t)st.st_size < max_bytes && b->cap < (size_t)st.st_size + 2) {
        char *data = realloc(b->data, (size_t)st.st_size + 2);

        if (!data) {
            r = -ENOMEM;
            goto out;
        }
        b->data = data;
        b->cap = (size_t)st.st_size + 2;
    }
    for (;;) {
        ssize_t n;

        if (b->len > max_bytes) {
            r = -EFBIG;
            goto out;
        }
        /* Full (a pipe, or a file larger than st_size said): double. */
        if (b->cap - b->len < 2 && gw_buf_reserve(b, b->cap ? b->cap : 4096) < 0) {
            r = -ENOMEM;
            goto out;
        }
        n = read(fd, b->data + b->len, b->cap - 1 - b->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        b->len += (size_t)n;
    }
    b->data[b->len] = '\0';
    if (b->len > max_bytes)
        r = -EFBIG;
out:
    close(fd);
    if (r < 0)
        gw_buf_free(b);
    return r;
}
