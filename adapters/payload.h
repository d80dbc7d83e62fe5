/* payload: decoders for what devices send (DESIGN.md, "Payloads").
 *
 * Owns nothing beyond one call: it adds fields to a caller's reading.
 * Never trusts the input: every failure is an error code plus a short
 * reason naming the offending key or byte offset, for the caller to count
 * and log with the device.
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

/* Limits on what one payload may hold. */
#define PAYLOAD_MAX_BYTES 65536
#define PAYLOAD_MAX_FIELDS 64
#define PAYLOAD_MAX_NAME 64
#define PAYLOAD_MAX_STRING 1024

/* Decodes data into reading's fields; a "ts" (ms since the epoch) sets
 * reading->ts_ns and ts_from_device. Returns 0, -EBADMSG (malformed or
 * not as DESIGN.md says), -EMSGSIZE (over a limit) or -EPROTONOSUPPORT
 * (a format not built in), and writes a reason into reason[reason_len].
 * On failure the reading may hold some fields: discard it. */
int payload_decode(enum payload_format format, const void *data, size_t len,
                   struct gw_reading *reading, char *reason, size_t reason_len);

const char *payload_format_name(enum payload_format format);

#endif
