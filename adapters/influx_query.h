/* influx_query: one InfluxQL query against InfluxDB 1.x, for tools that
 * read back what gridgate wrote (`gridgate rules replay --from-influx`).
 *
 * Owns nothing between calls: each call opens its own connection, sends
 * GET /query?db=...&epoch=u&q=... and hands back the JSON body. Times
 * come in microseconds: exact in a JSON number (a double), which
 * nanoseconds since 1970 are not. Does not
 * interpret the result beyond the HTTP status and InfluxDB's own "error"
 * fields; the caller parses the series.
 */
#ifndef INFLUX_QUERY_H
#define INFLUX_QUERY_H

#include <stddef.h>

struct gw_buf;

struct influx_query_options {
    const char *url;      /* "http://127.0.0.1:8086", no query part */
    const char *database; /* required */
    const char *username; /* NULL: no authentication (HTTP basic otherwise) */
    const char *password;
    int timeout_ms;       /* 0: 30000 */
    size_t max_bytes;     /* the body at most; 0: 256 MiB */
};

/* Runs query. Returns 0 with the JSON body appended to ret_body, or a
 * negative errno with *ret_error a malloc'd message: the connection's
 * failure, an HTTP status other than 200 with InfluxDB's error text, a
 * body over max_bytes, or an "error" InfluxDB reported for a statement. */
int influx_query(const struct influx_query_options *options, const char *query,
                 struct gw_buf *ret_body, char **ret_error);

#endif
