#include "payload.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gw_reading.h"
#include "payload_int.h"

/* How much of a device-chosen name a reason quotes before cutting it. */
#define QUOTE_MAX 40

void payload__reason(char *reason, size_t reason_len, const char *fmt, ...)
{
    va_list ap;

    if (!reason || reason_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(reason, reason_len, fmt, ap);
    va_end(ap);
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. p is NUL-terminated;
 * a NUL is never a continuation byte, so this never reads past it. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0], lo, hi;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        size_t n = utf8_seq(p);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

static bool is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

const char *payload__quote(char *out, size_t out_len, const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t used = 0;

    if (out_len < PAYLOAD_QUOTE_LEN) {
        if (out_len > 0)
            out[0] = '\0';
        return out;
    }
    out[used++] = '"';
    while (*p) {
        char piece[8];
        size_t n = utf8_seq(p), piece_len;

        if (n == 1 && (*p == '"' || *p == '\\')) {
            piece[0] = '\\';
            piece[1] = (char)*p;
            piece_len = 2;
        } else if (n == 0 || (n == 1 && is_control(*p))) {
            snprintf(piece, sizeof(piece), "\\x%02x", *p);
            piece_len = 4;
            n = 1;
        } else {
            memcpy(piece, p, n);
            piece_len = n;
        }
        if (used - 1 + piece_len > QUOTE_MAX) {
            memcpy(out + used, "...", 3);
            used += 3;
            break;
        }
        memcpy(out + used, piece, piece_len);
        used += piece_len;
        p += n;
    }
    out[used++] = '"';
    out[used] = '\0';
    return out;
}

int payload__check_name(const char *name, char *reason, size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN];
    size_t len = strlen(name);

    if (len == 0) {
        payload__reason(reason, reason_len, "field name is empty");
        return -EBADMSG;
    }
    if (len > PAYLOAD_MAX_NAME) {
        payload__reason(reason, reason_len, "field %s: name is %zu bytes; the limit is %d",
                        payload__quote(q, sizeof(q), name), len, PAYLOAD_MAX_NAME);
        return -EMSGSIZE;
    }
    if (!utf8_valid(name)) {
        payload__reason(reason, reason_len, "field %s: name is not valid UTF-8",
                        payload__quote(q, sizeof(q), name));
        return -EBADMSG;
    }
    /* A name becomes an InfluxDB field key, a Lua table key and part of log
     * lines; line protocol cannot carry a newline in a key at all. */
    for (const char *c = name; *c; c++) {
        if (is_control((unsigned char)*c)) {
            payload__reason(reason, reason_len, "field %s: name holds a control character",
                            payload__quote(q, sizeof(q), name));
            return -EBADMSG;
        }
    }
    return 0;
}

int payload__add_field(struct gw_reading *reading, size_t n_before, const char *name,
                       const struct gw_value *value, char *reason, size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN];
    size_t len;
    int err;

    err = payload__check_name(name, reason, reason_len);
    if (err < 0)
        return err;
    if (!gw_reading_field(reading, name) && reading->n_fields - n_before >= PAYLOAD_MAX_FIELDS) {
        payload__reason(reason, reason_len, "more than %d fields", PAYLOAD_MAX_FIELDS);
        return -EMSGSIZE;
    }
    switch (value->type) {
    case GW_VALUE_NUMBER:
        if (!isfinite(value->u.number)) {
            payload__reason(reason, reason_len, "field %s: number is not finite",
                            payload__quote(q, sizeof(q), name));
            return -EBADMSG;
        }
        err = gw_reading_add_number(reading, name, value->u.number);
        break;
    case GW_VALUE_INTEGER:
        err = gw_reading_add_integer(reading, name, value->u.integer);
        break;
    case GW_VALUE_BOOL:
        err = gw_reading_add_bool(reading, name, value->u.boolean);
        break;
    case GW_VALUE_STRING:
        len = strlen(value->u.string);
        if (len > PAYLOAD_MAX_STRING) {
            payload__reason(reason, reason_len, "field %s: string is %zu bytes; the limit is %d",
                            payload__quote(q, sizeof(q), name), len, PAYLOAD_MAX_STRING);
            return -EMSGSIZE;
        }
        if (!utf8_valid(value->u.string)) {
            payload__reason(reason, reason_len, "field %s: string is not valid UTF-8",
                            payload__quote(q, sizeof(q), name));
            return -EBADMSG;
        }
        err = gw_reading_add_string(reading, name, value->u.string);
        break;
    default:
        payload__reason(reason, reason_len, "field %s: unknown value type",
                        payload__quote(q, sizeof(q), name));
        return -EBADMSG;
    }
    if (err < 0) {
        payload__reason(reason, reason_len, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int payload_decode(enum payload_format format, const void *data, size_t len,
                   struct gw_reading *reading, char *reason, size_t reason_len)
{
    if (reason && reason_len > 0)
        reason[0] = '\0';
    if (len > PAYLOAD_MAX_BYTES) {
        payload__reason(reason, reason_len, "payload is %zu bytes; the limit is %d", len,
                        PAYLOAD_MAX_BYTES);
        return -EMSGSIZE;
    }
    switch (format) {
    case PAYLOAD_JSON:
        if (!data || len == 0) {
            payload__reason(reason, reason_len, "empty payload");
            return -EBADMSG;
        }
        return payload__decode_json(data, len, reading, reason, reason_len);
    case PAYLOAD_SENML_JSON:
        /* Honest until the SenML decoders land: the caller answers 4.15. */
        payload__reason(reason, reason_len, "SenML JSON is not supported yet");
        return -EPROTONOSUPPORT;
    case PAYLOAD_SENML_CBOR:
        payload__reason(reason, reason_len, "SenML CBOR is not supported yet");
        return -EPROTONOSUPPORT;
    }
    payload__reason(reason, reason_len, "unknown payload format %d", (int)format);
    return -EPROTONOSUPPORT;
}

const char *payload_format_name(enum payload_format format)
{
    switch (format) {
    case PAYLOAD_JSON:
        return "json";
    case PAYLOAD_SENML_JSON:
        return "senml+json";
    case PAYLOAD_SENML_CBOR:
        return "senml+cbor";
    }
    return "unknown";
}
