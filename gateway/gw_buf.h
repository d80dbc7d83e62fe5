/* gw_buf: a growable byte buffer, always NUL-terminated.
 *
 * Owns its bytes. Used wherever text is built piece by piece (line
 * protocol, JSON notices, SQL-free messages). Not thread-safe.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct gw_buf {
    char *data;
    size_t len;
    size_t cap;
};

#define GW_BUF_INIT { NULL, 0, 0 }

/* All return 0 or -ENOMEM; on failure the buffer is left as it was. */
int gw_buf_reserve(struct gw_buf *b, size_t extra);
int gw_buf_append(struct gw_buf *b, const void *data, size_t len);
int gw_buf_puts(struct gw_buf *b, const char *s);
int gw_buf_putc(struct gw_buf *b, char c);
int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gw_buf_vprintf(struct gw_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* "FILE:LINE: message" (or "FILE: message" when line <= 0) as a malloc'd
 * string: the form of every error about a file gridgate reads. NULL when
 * out of memory. */
char *gw_vformat_at(const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Appends s as a JSON string, quotes included, escaped as RFC 8259 asks
 * (quote, backslash, control characters); well-formed UTF-8 is copied as
 * it is and any other byte becomes U+FFFD, so the result is always valid
 * JSON whatever s holds (a title from a device or a citizen). */
int gw_buf_json_string(struct gw_buf *b, const char *s);

/* Reads the whole file at path into an empty buffer (NUL-terminated, so
 * text parsers may rely on it). Grows as it reads rather than trusting
 * st_size, so pipes and files that grow work too. Returns 0, a negative
 * errno from open/read, -EISDIR, -EFBIG past max_bytes, or -ENOMEM; on
 * failure the buffer is left empty. */
int gw_buf_read_file(struct gw_buf *b, const char *path, size_t max_bytes);

/* Cuts the buffer back to len bytes (len <= b->len). */
void gw_buf_truncate(struct gw_buf *b, size_t len);
void gw_buf_reset(struct gw_buf *b);
void gw_buf_free(struct gw_buf *b);

#endif
