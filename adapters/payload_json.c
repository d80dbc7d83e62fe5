/* The flat JSON payload: {"ts": <ms>, "name": value, ...} (DESIGN.md,
 * "Payloads"). */
#include "payload.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gw_json.h"
#include "gw_reading.h"
#include "payload_int.h"

/* A device's "ts" must fall in the years 2000..2100: 2000-01-01T00:00:00Z
 * up to, not including, 2101-01-01T00:00:00Z, in ms. Anything else is a
 * device clock gone wrong or seconds sent for ms; keeping it would file
 * the point decades away in InfluxDB. */
#define TS_MIN_MS 946684800000.0
#define TS_END_MS 4133980800000.0
#define NS_PER_MS INT64_C(1000000)

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const char *payload__json_type_name(const cJSON *item)
{
    if (cJSON_IsObject(item))
        return "an object";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    return "something else";
}

/* Offset of the first \u0000 escape in data, or len. cJSON decodes it into
 * a NUL that silently cuts the C string: "a\u0000b" would be stored as "a"
 * and a name "ts\u0000x" read as "ts". Backslashes are only valid inside
 * strings, and each one escapes the next character. */
static size_t escaped_nul_at(const char *data, size_t len)
{
    const char *p = data, *end = data + len;

    while (p < end && (p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
            return (size_t)(p - data);
        p += 2;
    }
    return len;
}

cJSON *payload__json_parse(const char *data, size_t len, char *reason, size_t reason_len)
{
    const char *end = NULL;
    size_t nul_at;
    cJSON *root;

    /* Not NUL-terminated: cJSON reads no further than len, and since
     * require_null_terminated would look for a NUL inside len, trailing
     * bytes are checked here instead. */
    root = gw_json_parse(data, len, &end, false);
    if (!root) {
        if (end && end >= data && end < data + len)
            payload__reason(reason, reason_len, "not valid JSON (error at byte %zu)",
                            (size_t)(end - data));
        else
            payload__reason(reason, reason_len, "not valid JSON");
        return NULL;
    }
    while (end && end < data + len && is_json_space(*end))
        end++;
    if (end != data + len) {
        payload__reason(reason, reason_len, "not valid JSON (unexpected data at byte %zu)",
                        (size_t)(end ? end - data : 0));
        cJSON_Delete(root);
        return NULL;
    }
    nul_at = escaped_nul_at(data, len);
    if (nul_at < len) {
        payload__reason(reason, reason_len, "\\u0000 at byte %zu: no NUL in names or strings",
                        nul_at);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* "ts" as a nanosecond time; *ret_have is false for "ts": null. */
static int parse_ts(const cJSON *item, int64_t *ret_ns, bool *ret_have, char *reason,
                    size_t reason_len)
{
    double ms;

    if (cJSON_IsNull(item)) {
        *ret_have = false;
        return 0;
    }
    if (!cJSON_IsNumber(item)) {
        payload__reason(reason, reason_len, "\"ts\" must be a number (ms since the epoch), not %s",
                        payload__json_type_name(item));
        return -EBADMSG;
    }
    ms = item->valuedouble;
    if (!isfinite(ms) || ms != floor(ms)) {
        payload__reason(reason, reason_len, "\"ts\" must be a whole number of ms since the epoch");
        return -EBADMSG;
    }
    if (ms < TS_MIN_MS || ms >= TS_END_MS) {
        payload__reason(reason, reason_len,
                        "\"ts\" %.17g is outside the years 2000..2100 (ms since the epoch)", ms);
        return -EBADMSG;
    }
    *ret_ns = (int64_t)ms * NS_PER_MS;
    *ret_have = true;
    return 0;
}

/* The payload as a JSON object, or NULL with the reason (not JSON, or
 * JSON but not an object). */
static cJSON *parse_object(const char *data, size_t len, char *reason, size_t reason_len)
{
    cJSON *root = payload__json_parse(data, len, reason, reason_len);

    if (root && !cJSON_IsObject(root)) {
        payload__reason(reason, reason_len, "expected a JSON object, got %s",
                        payload__json_type_name(root));
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

int payload__decode_json(const char *data, size_t len, const struct payload_limits *limits,
                         struct gw_reading *reading, char *reason, size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN];
    size_t n_before = reading->n_fields, n_added = 0;
    int64_t ts_ns = 0;
    bool have_ts = false;
    const cJSON *item;
    cJSON *root;
    int err = 0;

    root = parse_object(data, len, reason, reason_len);
    if (!root)
        return -EBADMSG;
    cJSON_ArrayForEach(item, root)
    {
        const char *name = item->string;
        struct gw_value value;

        if (strcmp(name, "ts") == 0) {
            err = parse_ts(item, &ts_ns, &have_ts, reason, reason_len);
            if (err < 0)
                goto out;
            continue;
        }
        if (cJSON_IsNumber(item)) {
            /* Always a double, 87 as much as 87.5: JSON has one number
             * type, and an InfluxDB field must never flip type. */
            value = (struct gw_value){ .type = GW_VALUE_NUMBER, .u.number = item->valuedouble };
        } else if (cJSON_IsBool(item)) {
            value = (struct gw_value){ .type = GW_VALUE_BOOL, .u.boolean = cJSON_IsTrue(item) };
        } else if (cJSON_IsString(item)) {
            value = (struct gw_value){ .type = GW_VALUE_STRING, .u.string = item->valuestring };
        } else {
            /* payload__add_field() checks the name of every other field. */
            err = payload__check_name(name, reason, reason_len);
            if (err < 0)
                goto out;
            if (cJSON_IsNull(item))
                continue;
            payload__reason(reason, reason_len, "field %s: %s not allowed",
                            payload__quote(q, sizeof(q), name),
                            cJSON_IsObject(item)  ? "nested object"
                            : cJSON_IsArray(item) ? "array"
                                                  : "this value");
            err = -EBADMSG;
            goto out;
        }
        err = payload__add_field(reading, n_before, limits, name, &value, reason, reason_len);
        if (err < 0)
            goto out;
        n_added++;
    }
    if (n_added == 0) {
        payload__reason(reason, reason_len, "no fields");
        err = -EBADMSG;
        goto out;
    }
    if (have_ts) {
        reading->ts_ns = ts_ns;
        reading->ts_from_device = true;
    }
out:
    cJSON_Delete(root);
    return err;
}

int payload__decode_status_json(const char *data, size_t len, struct gw_reading *reading,
                                char *reason, size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN];
    const cJSON *item, *status = NULL;
    int64_t ts_ns = 0;
    bool have_ts = false;
    cJSON *root;
    int err = 0;

    root = parse_object(data, len, reason, reason_len);
    if (!root)
        return -EBADMSG;
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "status") == 0) {
            status = item;
        } else if (strcmp(item->string, "ts") == 0) {
            err = parse_ts(item, &ts_ns, &have_ts, reason, reason_len);
            if (err < 0)
                goto out;
        } else {
            payload__reason(reason, reason_len, "unexpected key %s (only \"status\" and \"ts\")",
                            payload__quote(q, sizeof(q), item->string));
            err = -EBADMSG;
            goto out;
        }
    }
    if (!status) {
        payload__reason(reason, reason_len, "no \"status\"");
        err = -EBADMSG;
        goto out;
    }
    if (!cJSON_IsString(status)) {
        payload__reason(reason, reason_len, "\"status\" must be a string, not %s",
                        payload__json_type_name(status));
        err = -EBADMSG;
        goto out;
    }
    err = payload__status_value(status->valuestring, strlen(status->valuestring), reading, reason,
                                reason_len);
    if (err < 0)
        goto out;
    if (have_ts) {
        reading->ts_ns = ts_ns;
        reading->ts_from_device = true;
    }
out:
    cJSON_Delete(root);
    return err;
}
