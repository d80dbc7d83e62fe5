/* influx_line: InfluxDB line protocol, written exactly as the protocol's
 * escaping rules say.
 *
 * Owns nothing: it appends to a caller's gw_buf. A line is begun, given
 * tags then fields, and ended; a line that cannot be valid (no field, a
 * bad measurement, out of memory) is rolled back so the buffer only ever
 * holds whole lines.
 */
#ifndef INFLUX_LINE_H
#define INFLUX_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_buf;
struct gw_value;
struct gw_reading;

struct influx_line {
    struct gw_buf *buf;
    size_t start; /* where this line began, for rollback */
    unsigned n_tags;
    unsigned n_fields;
    /* Fields left out: NaN, infinities, empty keys, the key "time", keys
     * and strings line protocol cannot carry (newlines; see influx_line.c). */
    unsigned n_skipped;
    int error;
};

void influx_line_begin(struct influx_line *line, struct gw_buf *buf, const char *measurement);
/* Tags must come before fields. An empty key or value leaves the tag out
 * (InfluxDB refuses empty tag values). */
void influx_line_tag(struct influx_line *line, const char *key, const char *value);
void influx_line_field(struct influx_line *line, const char *key, const struct gw_value *value);
void influx_line_field_float(struct influx_line *line, const char *key, double v);
void influx_line_field_int(struct influx_line *line, const char *key, int64_t v);
void influx_line_field_bool(struct influx_line *line, const char *key, bool v);
void influx_line_field_string(struct influx_line *line, const char *key, const char *v);
/* Ends the line with a nanosecond timestamp and a newline. Returns 0, or
 * -EINVAL (no field, or an invalid part) / -ENOMEM, the line rolled back. */
int influx_line_end(struct influx_line *line, int64_t ts_ns);

/* DESIGN.md's reading line: measurement = device type, tags device, grid,
 * community, street; fields = the reading's values. The reading's device
 * must be resolved. Returns as influx_line_end(). */
int influx_line_reading(struct gw_buf *buf, const struct gw_reading *reading);

#endif
