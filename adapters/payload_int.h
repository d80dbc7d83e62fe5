/* payload_int: what the payload decoders (payload_*.c) share and nothing
 * outside adapters/payload*.c may use.
 *
 * Owns the checks every format applies the same way (field names, string
 * and number values, the field count) and the wording of their reasons, so
 * that a device gets the same answer whichever format it speaks. Does not
 * parse anything itself.
 */
#ifndef PAYLOAD_INT_H
#define PAYLOAD_INT_H

#include <stddef.h>

struct gw_reading;
struct gw_value;

/* Each decoder: data is len bytes (1..PAYLOAD_MAX_BYTES), not
 * NUL-terminated. Returns as payload_decode(). */
int payload__decode_json(const char *data, size_t len, struct gw_reading *reading, char *reason,
                         size_t reason_len);

/* Writes a reason (formatted like printf) if reason is not NULL. */
void payload__reason(char *reason, size_t reason_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes name, quoted for a log line, into out[out_len]: at most about 40
 * bytes of it, control characters, quotes, backslashes and invalid UTF-8
 * escaped, "..." when cut. Returns out. */
const char *payload__quote(char *out, size_t out_len, const char *name);
#define PAYLOAD_QUOTE_LEN 64

/* 0 when name may be a field name (not empty, at most PAYLOAD_MAX_NAME
 * bytes, valid UTF-8, no control characters), else -EBADMSG or -EMSGSIZE
 * with a reason. */
int payload__check_name(const char *name, char *reason, size_t reason_len);

/* Adds one field to reading after the checks every format shares: the
 * name (payload__check_name()), a finite number, a string of valid UTF-8
 * and at most PAYLOAD_MAX_STRING bytes, and at most PAYLOAD_MAX_FIELDS
 * distinct names added since the reading held n_before fields. value is copied (its
 * string too). Returns 0, -EBADMSG, -EMSGSIZE or -ENOMEM with a reason. */
int payload__add_field(struct gw_reading *reading, size_t n_before, const char *name,
                       const struct gw_value *value, char *reason, size_t reason_len);

#endif
