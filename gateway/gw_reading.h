/* gw_reading: one decoded reading (or device event) on its way through
 * the pipeline.
 *
 * Owns the device id, the field names and string values it holds. Does not
 * own the registry entry it points to: the registry outlives every reading.
 * A reading is built by a decoder, resolved by the registry, then shared
 * read-only by the consumers, which release it with gw_reading_unref().
 */
#ifndef GW_READING_H
#define GW_READING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct gw_device;

/* JSON has one number type, so decoded numbers are doubles; integers are
 * for values the gateway itself produces (counters, ids), so that an
 * InfluxDB field never changes type between a device's readings. */
enum gw_value_type {
    GW_VALUE_NUMBER,
    GW_VALUE_INTEGER,
    GW_VALUE_BOOL,
    GW_VALUE_STRING,
};

struct gw_value {
    enum gw_value_type type;
    union {
        double number;
        int64_t integer;
        bool boolean;
        char *string;
    } u;
};

struct gw_field {
    char *name;
    struct gw_value value;
};

/* What the device sent on: DESIGN.md's telemetry, event and status. */
enum gw_channel {
    GW_CHANNEL_TELEMETRY,
    GW_CHANNEL_EVENT,
    GW_CHANNEL_STATUS,
};

struct gw_reading {
    char *device_id;
    enum gw_channel channel;
    int64_t ts_ns;        /* the device's time if it sent one, else arrival */
    bool ts_from_device;
    struct gw_field *fields;
    size_t n_fields;
    size_t cap_fields;
    const struct gw_device *device; /* set by the registry lookup */
    int refs;
};

/* Returns NULL on allocation failure. The reading starts with one ref. */
struct gw_reading *gw_reading_new(const char *device_id, enum gw_channel channel, int64_t ts_ns);
void gw_reading_ref(struct gw_reading *r);
/* Frees the reading when the last reference goes; NULL is fine. */
void gw_reading_unref(struct gw_reading *r);

/* Add a field; names are copied. A name already present is replaced, so
 * the last value of a repeated key wins. Return 0 or -ENOMEM. */
int gw_reading_add_number(struct gw_reading *r, const char *name, double v);
int gw_reading_add_integer(struct gw_reading *r, const char *name, int64_t v);
int gw_reading_add_bool(struct gw_reading *r, const char *name, bool v);
int gw_reading_add_string(struct gw_reading *r, const char *name, const char *v);

/* Frees a field's name and string value (the field itself is the
 * caller's); used by everything that builds field lists. */
void gw_field_clear(struct gw_field *field);

const struct gw_field *gw_reading_field(const struct gw_reading *r, const char *name);
const char *gw_channel_name(enum gw_channel channel);

struct gw_buf;

/* The journal's record of a reading: device id, channel, time and typed
 * fields in a compact little-endian binary form (not the registry entry,
 * which the reader looks up again). Appends to buf; 0 or -ENOMEM. */
int gw_reading_encode(const struct gw_reading *r, struct gw_buf *buf);
/* Rebuilds a reading from a record (device left unresolved). Returns NULL
 * for a malformed or truncated record or on allocation failure. */
struct gw_reading *gw_reading_decode(const void *data, size_t len);
/* The same, with device_id as the reading's device (unless NULL): for a
 * record kept without its own (below). */
struct gw_reading *gw_reading_decode_as(const void *data, size_t len, const char *device_id);
/* The device id of a record without decoding the rest (not NUL-terminated:
 * *ret_len bytes). Returns 0 or -EINVAL for a malformed record. */
int gw_reading_record_device(const void *data, size_t len, const char **ret_id, size_t *ret_len);
/* Copies the record into out (room for len bytes) with an empty device id:
 * for stores that key records by device, the id is theirs already.
 * Returns the bytes written, or -EINVAL for a malformed record. */
ssize_t gw_reading_record_without_device(const void *data, size_t len, void *out);

/* The reading as one JSON object, appended to out (the provenance of a
 * case: what the rule saw):
 *   {"device":"smoke-0001","channel":"telemetry","ts":1700000000000,
 *    "fields":{"smoke":0.31,"battery":87,"alarm":true,"fw":"1.2"}}
 * ts is in milliseconds since the epoch (rounded down). Each value keeps
 * its type: a number with the fewest digits that read back to the same
 * double (%.15g, else %.17g), with ".0" added when those digits would
 * read as an integer; an integer as digits; true or false; a string.
 * NaN and infinities, which JSON cannot hold, are written as null.
 * Strings are escaped as RFC 8259 asks (quote, backslash, control
 * characters); well-formed UTF-8 is copied as it is and any other byte
 * (a reading not built by a decoder) becomes U+FFFD, so the result is
 * always valid JSON. Needs the C locale's decimal point, like
 * influx_line. Returns 0 or -ENOMEM, out then left as it was. */
int gw_reading_to_json(const struct gw_reading *r, struct gw_buf *out);

#endif
