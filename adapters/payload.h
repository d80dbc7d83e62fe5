/* payload: decoders for what devices send (DESIGN.md, "Payloads").
 *
 * Owns nothing beyond one call: it adds fields to a caller's reading.
 * Never trusts the input: every failure is an error code plus a short
 * reason naming the offending key, record or byte offset, for the caller
 * to count and log with the device. Every function may be called from
 * several threads at once.
 */
#ifndef PAYLOAD_H
#define PAYLOAD_H

#include <stddef.h>

struct gw_reading;

enum payload_format {
    PAYLOAD_JSON,       /* flat JSON object; CoAP Content-Format 50 */
    PAYLOAD_SENML_JSON, /* RFC 8428 JSON; Content-Format 110 */
    PAYLOAD_SENML_CBOR, /* RFC 8428 CBOR; Content-Format 112 */
};

/* The compiled defaults of struct payload_limits. */
#define PAYLOAD_MAX_BYTES 65536
#define PAYLOAD_MAX_FIELDS 64
#define PAYLOAD_MAX_STRING 1024
/* Not configurable: a field name is also an InfluxDB key and a Lua key. */
#define PAYLOAD_MAX_NAME 64

/* What one payload may hold (the config's payload section). A member that
 * is 0 means its compiled default. */
struct payload_limits {
    size_t max_bytes;  /* the payload as received */
    size_t max_fields; /* distinct fields; for SenML also records per pack */
    size_t max_string; /* bytes of one string value */
};

/* Decodes data into reading's fields, under limits (NULL: the compiled
 * defaults).
 *
 * Flat JSON: {"ts": <ms since the epoch, optional>, "name": value, ...}.
 *
 * SenML (RFC 8428), JSON or CBOR (integer or text labels): one pack makes
 * one reading.
 *  - Field name: the record's "n" (the device prefix is "bn", by RFC
 *    8428's convention); without "n", the record's unit ("u", else "bu":
 *    RFC 8428 §5.1.3 tells humidity, longitude and latitude of one name
 *    apart by unit alone); without either, the part of "bn" after its
 *    last ':' or '/'. The resolved name ("bn" + "n") must follow RFC 8428
 *    §4.5.1 (but may start with '/', as LwM2M names do). Two records
 *    that make the same field must have the same resolved name and unit,
 *    else the pack is refused (two devices, or two units, in one pack).
 *  - Values: "v" (plus "bv") is a number, "vs" a string, "vb" a boolean,
 *    "vd" the base64url text (CBOR's byte string is encoded so, without
 *    padding). A sum "s" (plus "bs") is the number field "<name>_sum".
 *    Units and "ut" are otherwise checked for type, not kept.
 *  - Time: "bt" + "t" in seconds; below 2^28 it is relative to the
 *    reading's arrival (reading->ts_ns on entry), else absolute and then
 *    within the years 2000..2100. A name repeated in one pack (a time
 *    series) keeps its newest value; the reading's time is the newest
 *    record time, and ts_from_device is set when that one is absolute.
 *    A pack without any time keeps the arrival time.
 *  - A record without a value or sum must hold base labels only.
 *  - Unknown labels are ignored unless they end in '_' (must-understand,
 *    RFC 8428 §4.4: refused); "bver" above 10 is refused.
 *  - CBOR: definite and indefinite lengths, half/single/double floats,
 *    tag 4 (decimal fraction) for numbers, tag 55799 (self-described)
 *    before the pack; any other tag is refused.
 *  - Reasons name the record (counted from 0) and the label:
 *    "record 3: \"v\" is not a number".
 *
 * Returns 0, -EBADMSG (malformed or not as above), -EMSGSIZE (over a
 * limit), -ENOMEM or -EPROTONOSUPPORT (an unknown format), and writes a
 * reason into reason[reason_len]. On failure the reading may hold some
 * fields but keeps its time: discard it. */
int payload_decode(enum payload_format format, const void *data, size_t len,
                   const struct payload_limits *limits, struct gw_reading *reading, char *reason,
                   size_t reason_len);

/* The format of an MQTT payload, which has no content type: first
 * non-space byte '{' is flat JSON, '[' SenML JSON, a CBOR array head
 * (0x80..0x9f, or the self-described CBOR tag) SenML CBOR, anything else
 * flat JSON (which then fails with a reason). */
enum payload_format payload_guess_format(const void *data, size_t len);

/* Decodes a devices/{id}/status payload: "online" or "offline" (any case,
 * surrounding white space allowed), or {"status": "online"|"offline",
 * "ts": <ms, optional>}. Adds the string field "status" ("online" or
 * "offline"). Returns as payload_decode(). */
int payload_decode_status(const void *data, size_t len, struct gw_reading *reading, char *reason,
                          size_t reason_len);

const char *payload_format_name(enum payload_format format);

#endif
