/* InfluxDB line protocol as InfluxDB 1.x parses it (models/points.go), which
 * 2.x's /api/v2/write shares:
 *
 *   measurement[,tag=value...] field=value[,field=value...] timestamp\n
 *
 * Escaping, from the 1.x line protocol reference ("Special characters"):
 * - measurement: comma and space get a backslash;
 * - tag keys, tag values, field keys: comma, equals sign and space;
 * - string field values: double-quoted, with double quote and backslash
 *   escaped;
 * - nothing else is escaped; a backslash is otherwise written as it is.
 *
 * What the protocol cannot carry, and what this file does about it:
 * - A newline anywhere in a measurement, tag or field key, or tag value
 *   (the docs: "Line protocol does not support the newline character \n in
 *   tag values or field values"). In the measurement or a tag that makes
 *   the line invalid (-EINVAL): a point without one of its tags would land
 *   in another series. In a field key the field is left out (n_skipped).
 * - A newline in a string field value: the 1.x parser happens to accept it
 *   inside quotes, but the docs say it is unsupported and there is no
 *   escape for it (the parser does not turn "\n" back into a newline), so
 *   the field is left out (n_skipped) rather than stored altered.
 * - A backslash at the end of a name or tag value, or just before a
 *   character this file escapes or a double quote: the parser would read
 *   it as escaping the separator or our escape (and it unescapes \" in
 *   field keys), so such a part is treated like one with a newline.
 * - A measurement beginning with '#' (the parser takes the line for a
 *   comment) or a tab (the parser skips leading whitespace; a leading space
 *   is escaped, so it is kept): invalid.
 * - The key "time": InfluxDB 1.x refuses a field or tag of that name (a
 *   point whose only field it is fails as a partial write). A field "time"
 *   is left out (n_skipped); a tag "time" makes the line invalid.
 * - NaN and infinities have no line protocol form: left out (n_skipped).
 *
 * Floats are written so that they read back to the same double, bit for
 * bit: in fixed notation with the fewest decimals that do when 1e-4 <= |v|
 * < 1e15 (the usual reading, without printf), else %.15g, or %.17g when 15
 * digits are not enough. "1" for 1.0 is a float in line protocol, as only a
 * trailing 'i' makes an integer. Integers get their 'i'; booleans are
 * true/false; timestamps are nanoseconds, within InfluxDB's range. This needs the C locale's
 * decimal point: nothing in gridgate may call setlocale(LC_NUMERIC or LC_ALL).
 */
#include "influx_line.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_reading.h"
#include "gw_registry.h"

/* InfluxDB 1.x's models.MinNanoTime and MaxNanoTime. */
#define TS_MIN_NS (INT64_MIN + 2)
#define TS_MAX_NS (INT64_MAX - 1)

#define ESC_MEASUREMENT ", "
#define ESC_KEY ", ="
#define ESC_STRING "\"\\"

/* Whether s can be written with the escapes in specials (see the top of
 * the file): no newline, no backslash at the end or before a special or a
 * double quote. */
static bool writable(const char *s, const char *specials)
{
    /* the common case: neither, found at strpbrk's speed */
    if (!strpbrk(s, "\n\\"))
        return true;
    for (const char *p = s; *p; p++) {
        if (*p == '\n')
            return false;
        if (*p == '\\' && (p[1] == '\0' || p[1] == '"' || strchr(specials, p[1])))
            return false;
    }
    return true;
}

static void fail(struct influx_line *line, int err)
{
    if (!line->error)
        line->error = err;
}

static void put(struct influx_line *line, const char *s, size_t len)
{
    if (!line->error && gw_buf_append(line->buf, s, len) < 0)
        fail(line, -ENOMEM);
}

static void put_char(struct influx_line *line, char c)
{
    put(line, &c, 1);
}

/* Writes s with a backslash before each character of specials. */
static void put_escaped(struct influx_line *line, const char *s, const char *specials)
{
    struct gw_buf *b = line->buf;
    size_t len = strlen(s);
    char *out;

    if (line->error)
        return;
    if (s[strcspn(s, specials)] == '\0') {
        put(line, s, len); /* nothing to escape: most names */
        return;
    }
    if (len > ((size_t)-1) / 4 || gw_buf_reserve(b, 2 * len) < 0) {
        fail(line, -ENOMEM);
        return;
    }
    out = b->data + b->len;
    for (size_t i = 0; i < len; i++) {
        if (strchr(specials, s[i]))
            *out++ = '\\';
        *out++ = s[i];
    }
    b->len = (size_t)(out - b->data);
    b->data[b->len] = '\0';
}

void influx_line_begin(struct influx_line *line, struct gw_buf *buf, const char *measurement)
{
    *line = (struct influx_line){ .buf = buf, .start = buf->len };
    if (!measurement || !measurement[0] || measurement[0] == '#' || measurement[0] == '\t' ||
        !writable(measurement, ESC_MEASUREMENT)) {
        fail(line, -EINVAL);
        return;
    }
    put_escaped(line, measurement, ESC_MEASUREMENT);
}

void influx_line_tag(struct influx_line *line, const char *key, const char *value)
{
    if (line->error)
        return;
    if (line->n_fields > 0) {
        fail(line, -EINVAL); /* tags after fields: a caller's bug */
        return;
    }
    if (!key || !key[0] || !value || !value[0])
        return;
    if (!writable(key, ESC_KEY) || !writable(value, ESC_KEY) || strcmp(key, "time") == 0) {
        fail(line, -EINVAL);
        return;
    }
    put_char(line, ',');
    put_escaped(line, key, ESC_KEY);
    put_char(line, '=');
    put_escaped(line, value, ESC_KEY);
    line->n_tags++;
}

/* Writes the separator, key and '=' of a field, or counts the field as
 * skipped if its key cannot be written. Returns whether to write the
 * value. */
static bool field_begin(struct influx_line *line, const char *key)
{
    if (line->error)
        return false;
    if (!key || !key[0] || !writable(key, ESC_KEY) || strcmp(key, "time") == 0) {
        line->n_skipped++;
        return false;
    }
    put_char(line, line->n_fields > 0 ? ',' : ' ');
    put_escaped(line, key, ESC_KEY);
    put_char(line, '=');
    return true;
}

/* Writes v in decimal into out (at least 21 bytes); returns the length. */
static size_t format_uint(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t format_int(char *out, int64_t v)
{
    if (v >= 0)
        return format_uint(out, (uint64_t)v);
    out[0] = '-';
    /* -(v + 1) + 1: no overflow at INT64_MIN */
    return 1 + format_uint(out + 1, (uint64_t)(-(v + 1)) + 1);
}

static const double pow10_table[] = { 1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15 };

/* The fast path for the usual reading (24.5, 0.12, 87): v in fixed
 * notation with the fewest decimals m / 10^d that read back as v, for
 * 1e-4 <= |v| < 1e15 (where %g writes fixed notation too) and m < 2^53.
 * Exact: m and 10^d are exact doubles, so m / 10^d is the correctly
 * rounded value of that decimal, which is what a correctly rounding
 * parser (glibc's strtod, Go's ParseFloat in InfluxDB) reads back. Returns
 * the length written to out (at least 32 bytes), or 0 when the slow path
 * must decide. */
static size_t format_float_fixed(char *out, double v)
{
    double a = fabs(v);
    char digits[24];
    size_t n = 0, len = 0;

    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (size_t d = 0; d < sizeof(pow10_table) / sizeof(pow10_table[0]); d++) {
        double scaled = a * pow10_table[d];
        double m;

        if (scaled >= 9007199254740992.0) /* 2^53 */
            return 0;
        m = nearbyint(scaled);
        if (m / pow10_table[d] != a)
            continue;
        n = format_uint(digits, (uint64_t)m);
        if (v < 0)
            out[len++] = '-';
        if (n <= d) {
            out[len++] = '0';
            out[len++] = '.';
            for (size_t z = n; z < d; z++)
                out[len++] = '0';
            memcpy(out + len, digits, n);
            len += n;
        } else {
            memcpy(out + len, digits, n - d);
            len += n - d;
            if (d > 0) {
                out[len++] = '.';
                memcpy(out + len, digits + n - d, d);
                len += d;
            }
        }
        return len;
    }
    return 0;
}

static void field_end(struct influx_line *line)
{
    if (!line->error)
        line->n_fields++;
}

void influx_line_field_float(struct influx_line *line, const char *key, double v)
{
    char text[32];

    if (line->error)
        return;
    if (!isfinite(v)) {
        line->n_skipped++;
        return;
    }
    if (!field_begin(line, key))
        return;
    if (v == 0) {
        put(line, signbit(v) ? "-0" : "0", signbit(v) ? 2 : 1);
    } else {
        size_t len = format_float_fixed(text, v);

        if (len == 0) {
            snprintf(text, sizeof(text), "%.15g", v);
            if (strtod(text, NULL) != v)
                snprintf(text, sizeof(text), "%.17g", v);
            len = strlen(text);
        }
        put(line, text, len);
    }
    field_end(line);
}

void influx_line_field_int(struct influx_line *line, const char *key, int64_t v)
{
    char text[32];

    size_t len;

    if (!field_begin(line, key))
        return;
    len = format_int(text, v);
    text[len++] = 'i';
    put(line, text, len);
    field_end(line);
}

void influx_line_field_bool(struct influx_line *line, const char *key, bool v)
{
    if (!field_begin(line, key))
        return;
    put(line, v ? "true" : "false", v ? 4 : 5);
    field_end(line);
}

void influx_line_field_string(struct influx_line *line, const char *key, const char *v)
{
    if (line->error)
        return;
    if (!v || strchr(v, '\n')) {
        line->n_skipped++;
        return;
    }
    if (!field_begin(line, key))
        return;
    put_char(line, '"');
    put_escaped(line, v, ESC_STRING);
    put_char(line, '"');
    field_end(line);
}

void influx_line_field(struct influx_line *line, const char *key, const struct gw_value *value)
{
    switch (value->type) {
    case GW_VALUE_NUMBER:
        influx_line_field_float(line, key, value->u.number);
        return;
    case GW_VALUE_INTEGER:
        influx_line_field_int(line, key, value->u.integer);
        return;
    case GW_VALUE_BOOL:
        influx_line_field_bool(line, key, value->u.boolean);
        return;
    case GW_VALUE_STRING:
        influx_line_field_string(line, key, value->u.string);
        return;
    }
    if (!line->error)
        line->n_skipped++;
}

int influx_line_end(struct influx_line *line, int64_t ts_ns)
{
    char text[32];

    if (!line->error && line->n_fields == 0)
        fail(line, -EINVAL);
    if (!line->error && (ts_ns < TS_MIN_NS || ts_ns > TS_MAX_NS))
        fail(line, -EINVAL);
    if (!line->error) {
        size_t len = 1;

        text[0] = ' ';
        len += format_int(text + 1, ts_ns);
        text[len++] = '\n';
        put(line, text, len);
    }
    if (line->error)
        gw_buf_truncate(line->buf, line->start);
    return line->error;
}

int influx_line_reading(struct gw_buf *buf, const struct gw_reading *reading)
{
    const struct gw_device *device = reading->device;
    const struct gw_grid *grid;
    struct influx_line line;

    if (!device)
        return -EINVAL;
    grid = device->grid;
    influx_line_begin(&line, buf, device->type);
    /* In key order, as InfluxDB recommends for write performance. */
    if (grid)
        influx_line_tag(&line, "community", grid->community_id);
    influx_line_tag(&line, "device", device->id);
    if (grid) {
        influx_line_tag(&line, "grid", grid->id);
        influx_line_tag(&line, "street", grid->street_id);
    }
    for (size_t i = 0; i < reading->n_fields; i++)
        influx_line_field(&line, reading->fields[i].name, &reading->fields[i].value);
    return influx_line_end(&line, reading->ts_ns);
}
