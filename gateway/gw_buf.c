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

int gw_buf_printf(struct gw_buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = gw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
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
    size_t chunk;
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
     * grows while we read. */
    chunk = st.st_size > 0 && (size_t)st.st_size < max_bytes ? (size_t)st.st_size + 1 : 4096;
    for (;;) {
        ssize_t n;

        if (b->len > max_bytes) {
            r = -EFBIG;
            goto out;
        }
        if (gw_buf_reserve(b, chunk) < 0) {
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
        chunk = b->cap; /* double on the next growth */
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
