/* Unit tests for the payload decoders: the flat JSON object with every
 * value type, "ts", every error with its reason, the limits, input that is
 * not NUL-terminated, and garbage that must never crash. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_reading.h"
#include "payload.h"

#define ARRIVAL_NS INT64_C(1111)

struct decoded {
    struct gw_reading *reading;
    char reason[256];
    int ret;
};

/* Decodes len bytes placed right before an inaccessible page, so that any
 * read past the end faults, in cJSON and libcbor (not built with
 * sanitizers) too. */
static int decode_limited(struct decoded *d, enum payload_format format, const void *data,
                          size_t len, const struct payload_limits *limits)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    size_t map_len = (data_pages + 1) * page;
    char *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *copy;

    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + data_pages * page, page, PROT_NONE), 0);
    copy = map + data_pages * page - len;
    if (len)
        memcpy(copy, data, len);
    d->reading = gw_reading_new("dev-1", GW_CHANNEL_TELEMETRY, ARRIVAL_NS);
    assert_non_null(d->reading);
    memset(d->reason, 'X', sizeof(d->reason));
    d->ret = payload_decode(format, copy, len, limits, d->reading, d->reason, sizeof(d->reason));
    munmap(map, map_len);
    /* A reason is always a terminated string, and says something on error. */
    assert_non_null(memchr(d->reason, '\0', sizeof(d->reason)));
    if (d->ret < 0)
        assert_true(d->reason[0] != '\0');
    else
        assert_string_equal(d->reason, "");
    return d->ret;
}

static int decode_bytes(struct decoded *d, enum payload_format format, const void *data, size_t len)
{
    return decode_limited(d, format, data, len, NULL);
}

static int decode(struct decoded *d, const char *json)
{
    return decode_bytes(d, PAYLOAD_JSON, json, strlen(json));
}

static void done(struct decoded *d)
{
    gw_reading_unref(d->reading);
    d->reading = NULL;
}

/* Asserts json fails with err and exactly reason. */
static void expect_error(const char *json, int err, const char *reason)
{
    struct decoded d;

    assert_int_equal(decode(&d, json), err);
    assert_string_equal(d.reason, reason);
    done(&d);
}

static const struct gw_value *value_of(const struct decoded *d, const char *name)
{
    const struct gw_field *f = gw_reading_field(d->reading, name);

    assert_non_null(f);
    return &f->value;
}

static void expect_number(const struct decoded *d, const char *name, double v)
{
    const struct gw_value *value = value_of(d, name);

    assert_int_equal(value->type, GW_VALUE_NUMBER);
    assert_true(value->u.number == v);
}

static void every_type(void **state)
{
    struct decoded d;

    (void)state;
    assert_int_equal(decode(&d,
                            "{\"smoke\": 0.12, \"temp\": -24.5, \"battery\": 87,"
                            " \"alarm\": false, \"door\": true, \"label\": \"门 A\\n\\\"x\\\"\","
                            " \"big\": 1e300, \"gone\": null}"),
                     0);
    assert_string_equal(d.reason, "");
    assert_int_equal(d.reading->n_fields, 7);
    expect_number(&d, "smoke", 0.12);
    expect_number(&d, "temp", -24.5);
    /* 87 stays a double: JSON has one number type. */
    expect_number(&d, "battery", 87.0);
    expect_number(&d, "big", 1e300);
    assert_int_equal(value_of(&d, "alarm")->type, GW_VALUE_BOOL);
    assert_false(value_of(&d, "alarm")->u.boolean);
    assert_int_equal(value_of(&d, "door")->type, GW_VALUE_BOOL);
    assert_true(value_of(&d, "door")->u.boolean);
    assert_int_equal(value_of(&d, "label")->type, GW_VALUE_STRING);
    assert_string_equal(value_of(&d, "label")->u.string, "门 A\n\"x\"");
    assert_null(gw_reading_field(d.reading, "gone"));
    /* No "ts": the arrival time stays. */
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    assert_false(d.reading->ts_from_device);
    /* Fields keep the payload's order. */
    assert_string_equal(d.reading->fields[0].name, "smoke");
    assert_string_equal(d.reading->fields[6].name, "big");
    done(&d);

    /* Whitespace around, a UTF-8 byte order mark, Chinese names, an empty
     * string, -0. */
    assert_int_equal(decode(&d, "\xEF\xBB\xBF \n\t{\"温度\":24.5,\"s\":\"\",\"z\":-0}\r\n "), 0);
    expect_number(&d, "温度", 24.5);
    assert_string_equal(value_of(&d, "s")->u.string, "");
    assert_true(signbit(value_of(&d, "z")->u.number));
    done(&d);
}

static void repeated_and_reserved_names(void **state)
{
    struct decoded d;

    (void)state;
    /* The last value of a repeated key wins, even of another type. */
    assert_int_equal(decode(&d, "{\"a\":1,\"b\":2,\"a\":\"x\"}"), 0);
    assert_int_equal(d.reading->n_fields, 2);
    assert_string_equal(value_of(&d, "a")->u.string, "x");
    done(&d);

    /* Names the Lua API reserves for r.NAME stay fields (r.fields.NAME). */
    assert_int_equal(
        decode(&d, "{\"device\":1,\"type\":\"t\",\"grid\":true,\"fields\":2,\"Ts\":3,\"time\":4}"),
        0);
    assert_int_equal(d.reading->n_fields, 6);
    expect_number(&d, "device", 1);
    expect_number(&d, "Ts", 3); /* "ts" is case-sensitive */
    expect_number(&d, "time", 4);
    assert_false(d.reading->ts_from_device);
    done(&d);
}

static void device_timestamp(void **state)
{
    struct decoded d;

    (void)state;
    assert_int_equal(decode(&d, "{\"ts\":1700000000123,\"v\":1}"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(1700000000123000000));
    assert_true(d.reading->ts_from_device);
    assert_null(gw_reading_field(d.reading, "ts"));
    assert_int_equal(d.reading->n_fields, 1);
    done(&d);

    /* "ts" may come anywhere, also as 1.7e12 or 1700000000123.0. */
    assert_int_equal(decode(&d, "{\"v\":1,\"ts\":1.7e12}"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(1700000000000000000));
    done(&d);
    assert_int_equal(decode(&d, "{\"v\":1,\"ts\":1700000000123.0}"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(1700000000123000000));
    done(&d);

    /* The bounds: 2000-01-01T00:00:00Z up to the end of 2100. */
    assert_int_equal(decode(&d, "{\"ts\":946684800000,\"v\":1}"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(946684800000000000));
    done(&d);
    assert_int_equal(decode(&d, "{\"ts\":4133980799999,\"v\":1}"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(4133980799999000000));
    done(&d);

    /* "ts": null is no device time, like a missing "ts". */
    assert_int_equal(decode(&d, "{\"ts\":null,\"v\":1}"), 0);
    assert_false(d.reading->ts_from_device);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    done(&d);

    /* A "ts" is not set on a reading that fails. */
    assert_int_equal(decode(&d, "{\"ts\":1700000000123,\"v\":[1]}"), -EBADMSG);
    assert_false(d.reading->ts_from_device);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    done(&d);
}

static void bad_timestamp(void **state)
{
    (void)state;
    expect_error("{\"ts\":\"2024-01-01T00:00:00Z\",\"v\":1}", -EBADMSG,
                 "\"ts\" must be a number (ms since the epoch), not a string");
    expect_error("{\"ts\":true,\"v\":1}", -EBADMSG,
                 "\"ts\" must be a number (ms since the epoch), not a boolean");
    expect_error("{\"ts\":{},\"v\":1}", -EBADMSG,
                 "\"ts\" must be a number (ms since the epoch), not an object");
    expect_error("{\"ts\":1700000000123.5,\"v\":1}", -EBADMSG,
                 "\"ts\" must be a whole number of ms since the epoch");
    expect_error("{\"ts\":1e999,\"v\":1}", -EBADMSG,
                 "\"ts\" must be a whole number of ms since the epoch");
    /* Seconds sent for ms. */
    expect_error("{\"ts\":1700000000,\"v\":1}", -EBADMSG,
                 "\"ts\" 1700000000 is outside the years 2000..2100 (ms since the epoch)");
    expect_error("{\"ts\":946684799999,\"v\":1}", -EBADMSG,
                 "\"ts\" 946684799999 is outside the years 2000..2100 (ms since the epoch)");
    expect_error("{\"ts\":4133980800000,\"v\":1}", -EBADMSG,
                 "\"ts\" 4133980800000 is outside the years 2000..2100 (ms since the epoch)");
    expect_error("{\"ts\":-1,\"v\":1}", -EBADMSG,
                 "\"ts\" -1 is outside the years 2000..2100 (ms since the epoch)");
    expect_error("{\"ts\":1e300,\"v\":1}", -EBADMSG,
                 "\"ts\" 1.0000000000000001e+300 is outside the years 2000..2100 (ms since the "
                 "epoch)");
}

static void malformed(void **state)
{
    struct decoded d;

    (void)state;
    expect_error("{\"a\":}", -EBADMSG, "not valid JSON (error at byte 5)");
    expect_error("{\"a\":1", -EBADMSG, "not valid JSON (error at byte 5)");
    expect_error("{\"a\":tru}", -EBADMSG, "not valid JSON (error at byte 5)");
    expect_error("   ", -EBADMSG, "not valid JSON (error at byte 2)");
    expect_error("{\"a\":1} x", -EBADMSG, "not valid JSON (unexpected data at byte 8)");
    expect_error("{\"a\":1}{}", -EBADMSG, "not valid JSON (unexpected data at byte 7)");
    expect_error("{\"a\":NaN}", -EBADMSG, "not valid JSON (error at byte 5)");
    expect_error("[{\"a\":1}]", -EBADMSG, "expected a JSON object, got an array");
    expect_error("\"a\"", -EBADMSG, "expected a JSON object, got a string");
    expect_error("42", -EBADMSG, "expected a JSON object, got a number");
    expect_error("null", -EBADMSG, "expected a JSON object, got null");
    expect_error("{\"x\":{\"y\":1}}", -EBADMSG, "field \"x\": nested object not allowed");
    expect_error("{\"a\":1,\"x\":[1,2]}", -EBADMSG, "field \"x\": array not allowed");
    expect_error("{\"x\":[]}", -EBADMSG, "field \"x\": array not allowed");
    expect_error("{\"\":1}", -EBADMSG, "field name is empty");
    expect_error("{\"\":null}", -EBADMSG, "field name is empty");
    expect_error("{}", -EBADMSG, "no fields");
    expect_error("{\"a\":null,\"b\":null}", -EBADMSG, "no fields");
    expect_error("{\"ts\":1700000000123}", -EBADMSG, "no fields");
    expect_error("{\"x\":1e999}", -EBADMSG, "field \"x\": number is not finite");
    expect_error("{\"x\":-1e999}", -EBADMSG, "field \"x\": number is not finite");

    /* Names: control characters and invalid UTF-8 rejected, and quoted
     * safely in the reason. */
    expect_error("{\"a\\nb\":1}", -EBADMSG, "field \"a\\x0ab\": name holds a control character");
    expect_error("{\"a\\u007f\":1}", -EBADMSG, "field \"a\\x7f\": name holds a control character");
    expect_error("{\"a\xff\":1}", -EBADMSG, "field \"a\\xff\": name is not valid UTF-8");
    expect_error("{\"\xc0\xaf\":1}", -EBADMSG,
                 "field \"\\xc0\\xaf\": name is not valid UTF-8"); /* overlong '/' */
    expect_error("{\"\xed\xa0\x80\":1}", -EBADMSG,
                 "field \"\\xed\\xa0\\x80\": name is not valid UTF-8"); /* surrogate */
    expect_error("{\"q\\\"\\\\\":[]}", -EBADMSG, "field \"q\\\"\\\\\": array not allowed");
    expect_error("{\"s\":\"ok\xe6\xb8\"}", -EBADMSG, "field \"s\": string is not valid UTF-8");
    expect_error("{\"s\":\"\xf4\x90\x80\x80\"}", -EBADMSG,
                 "field \"s\": string is not valid UTF-8"); /* above U+10FFFF */

    /* \u0000 would cut a C string: refused. An escaped backslash before
     * "u0000" is just text. */
    expect_error("{\"s\":\"a\\u0000b\"}", -EBADMSG,
                 "\\u0000 at byte 7: no NUL in names or strings");
    expect_error("{\"ts\\u0000x\":1}", -EBADMSG, "\\u0000 at byte 4: no NUL in names or strings");
    assert_int_equal(decode(&d, "{\"s\":\"a\\\\u0000\",\"\\u0041\":1}"), 0);
    assert_string_equal(value_of(&d, "s")->u.string, "a\\u0000");
    expect_number(&d, "A", 1);
    done(&d);

    /* Control characters are fine inside string values. */
    assert_int_equal(decode(&d, "{\"s\":\"a\\tb\\u0001\"}"), 0);
    assert_string_equal(value_of(&d, "s")->u.string, "a\tb\x01");
    done(&d);

    /* Nothing of the payload before the error has to be kept, but the
     * reading must still be freeable. */
    assert_int_equal(decode(&d, "{\"a\":1,\"b\":\"x\",\"c\":{}}"), -EBADMSG);
    done(&d);
}

static void empty_and_unsupported(void **state)
{
    struct decoded d;
    char reason[64];
    struct gw_reading *r = gw_reading_new("dev-1", GW_CHANNEL_TELEMETRY, 0);

    (void)state;
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, "", 0), -EBADMSG);
    assert_string_equal(d.reason, "empty payload");
    done(&d);
    assert_int_equal(payload_decode(PAYLOAD_JSON, NULL, 0, NULL, r, reason, sizeof(reason)),
                     -EBADMSG);
    assert_string_equal(reason, "empty payload");

    /* Empty is empty in every format. */
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, "", 0), -EBADMSG);
    assert_string_equal(d.reason, "empty payload");
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_CBOR, "", 0), -EBADMSG);
    assert_string_equal(d.reason, "empty payload");
    done(&d);
    assert_int_equal(
        payload_decode((enum payload_format)42, "{}", 2, NULL, r, reason, sizeof(reason)),
        -EPROTONOSUPPORT);
    assert_string_equal(reason, "unknown payload format 42");

    assert_string_equal(payload_format_name(PAYLOAD_JSON), "json");
    assert_string_equal(payload_format_name(PAYLOAD_SENML_JSON), "senml+json");
    assert_string_equal(payload_format_name(PAYLOAD_SENML_CBOR), "senml+cbor");
    assert_string_equal(payload_format_name((enum payload_format)42), "unknown");

    /* No reason buffer, or a tiny one, is fine. */
    assert_int_equal(payload_decode(PAYLOAD_JSON, "{}", 2, NULL, r, NULL, 0), -EBADMSG);
    assert_int_equal(payload_decode(PAYLOAD_JSON, "{\"x\":[]}", 8, NULL, r, reason, 8), -EBADMSG);
    assert_string_equal(reason, "field \"");
    assert_int_equal(payload_decode(PAYLOAD_JSON, "{\"x\":1}", 7, NULL, r, NULL, 0), 0);
    assert_int_equal(payload_decode(PAYLOAD_SENML_JSON, "[{}]", 4, NULL, r, NULL, 0), -EBADMSG);
    assert_int_equal(payload_decode(PAYLOAD_SENML_CBOR, "\x81\xa0", 2, NULL, r, reason, 3),
                     -EBADMSG);
    assert_string_equal(reason, "re");
    gw_reading_unref(r);
}

static void not_nul_terminated(void **state)
{
    /* The decoder must stop at len: what follows is another message. */
    static const char stream[] = "{\"a\":1}{\"b\":2}";
    struct decoded d;

    (void)state;
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, stream, 7), 0);
    assert_int_equal(d.reading->n_fields, 1);
    expect_number(&d, "a", 1);
    done(&d);
    /* Cut inside a number, a string, a literal: malformed, never read on. */
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, "{\"a\":12345}", 8), -EBADMSG);
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, "{\"a\":\"xyz\"}", 8), -EBADMSG);
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, "{\"a\":true}", 8), -EBADMSG);
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, "{\"a\":null}", 7), -EBADMSG);
    done(&d);
    /* Every prefix of a good payload: no crash, no over-read (ASan). */
    static const char good[] = "{\"ts\":1700000000123,\"t\":-1.5e3,\"ok\":true,\"s\":\"\\u6e29\"}";
    for (size_t len = 0; len <= strlen(good); len++) {
        decode_bytes(&d, PAYLOAD_JSON, good, len);
        assert_int_equal(d.ret, len == strlen(good) ? 0 : -EBADMSG);
        done(&d);
    }
    /* A NUL inside len is not the end of the payload. */
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, "{\"a\":1}\0", 8), -EBADMSG);
    assert_string_equal(d.reason, "not valid JSON (unexpected data at byte 7)");
    done(&d);
}

/* Builds {"f0":0,"f1":1,...} with n fields. */
static char *many_fields(int n, const char *prefix)
{
    struct {
        char *p;
        size_t len;
    } out = { NULL, 0 };
    FILE *f = open_memstream(&out.p, &out.len);

    assert_non_null(f);
    fputc('{', f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\"%s%d\":%d", i ? "," : "", prefix, i, i);
    fputc('}', f);
    fclose(f);
    return out.p;
}

static void limits(void **state)
{
    struct decoded d;
    char *json, *name, *text;
    size_t len;

    (void)state;
    /* Bytes: exactly the limit passes (padded with spaces), one more not. */
    text = malloc(PAYLOAD_MAX_BYTES + 1);
    assert_non_null(text);
    memset(text, ' ', PAYLOAD_MAX_BYTES + 1);
    memcpy(text, "{\"a\":1}", 7);
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, text, PAYLOAD_MAX_BYTES), 0);
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, text, PAYLOAD_MAX_BYTES + 1), -EMSGSIZE);
    assert_string_equal(d.reason, "payload is 65537 bytes; the limit is 65536");
    done(&d);
    /* The size is checked whatever the format. */
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, text, PAYLOAD_MAX_BYTES + 1), -EMSGSIZE);
    done(&d);
    free(text);

    /* Fields: 64 pass, 65 do not; nulls and repeats do not count. */
    json = many_fields(PAYLOAD_MAX_FIELDS, "f");
    assert_int_equal(decode(&d, json), 0);
    assert_int_equal(d.reading->n_fields, PAYLOAD_MAX_FIELDS);
    done(&d);
    free(json);
    json = many_fields(PAYLOAD_MAX_FIELDS + 1, "f");
    assert_int_equal(decode(&d, json), -EMSGSIZE);
    assert_string_equal(d.reason, "more than 64 fields");
    done(&d);
    free(json);
    json = many_fields(PAYLOAD_MAX_FIELDS, "f");
    len = strlen(json);
    json = realloc(json, len + 64);
    assert_non_null(json);
    strcpy(json + len - 1, ",\"x\":null,\"f0\":5,\"f63\":true,\"ts\":1700000000000}");
    assert_int_equal(decode(&d, json), 0);
    assert_int_equal(d.reading->n_fields, PAYLOAD_MAX_FIELDS);
    expect_number(&d, "f0", 5);
    done(&d);
    free(json);

    /* Name length: 64 bytes pass, 65 do not; the reason cuts the name. */
    name = malloc(PAYLOAD_MAX_NAME + 2);
    text = malloc(PAYLOAD_MAX_NAME + 16);
    assert_non_null(name);
    assert_non_null(text);
    memset(name, 'n', PAYLOAD_MAX_NAME);
    name[PAYLOAD_MAX_NAME] = '\0';
    snprintf(text, PAYLOAD_MAX_NAME + 16, "{\"%s\":1}", name);
    assert_int_equal(decode(&d, text), 0);
    done(&d);
    strcat(name, "n");
    snprintf(text, PAYLOAD_MAX_NAME + 16, "{\"%s\":1}", name);
    assert_int_equal(decode(&d, text), -EMSGSIZE);
    assert_string_equal(d.reason, "field \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\": name is "
                                  "65 bytes; the limit is 64");
    done(&d);
    /* ... also under a null value. */
    snprintf(text, PAYLOAD_MAX_NAME + 16, "{\"%s\":null}", name);
    assert_int_equal(decode(&d, text), -EMSGSIZE);
    done(&d);
    free(name);
    free(text);
    /* A name cut in the reason never splits a UTF-8 character: 22 x "温"
     * is 66 bytes; 13 of them (39 bytes) fit the 40-byte quote. */
    assert_int_equal(decode(&d, "{\"温温温温温温温温温温温温温温温温温温温温温温\":1}"), -EMSGSIZE);
    assert_string_equal(
        d.reason, "field \"温温温温温温温温温温温温温...\": name is 66 bytes; the limit is 64");
    done(&d);

    /* String length: 1024 bytes pass, 1025 do not. */
    text = malloc(PAYLOAD_MAX_STRING + 32);
    assert_non_null(text);
    strcpy(text, "{\"s\":\"");
    memset(text + 6, 'v', PAYLOAD_MAX_STRING);
    strcpy(text + 6 + PAYLOAD_MAX_STRING, "\"}");
    assert_int_equal(decode(&d, text), 0);
    assert_int_equal(strlen(value_of(&d, "s")->u.string), PAYLOAD_MAX_STRING);
    done(&d);
    strcpy(text + 6 + PAYLOAD_MAX_STRING, "v\"}");
    assert_int_equal(decode(&d, text), -EMSGSIZE);
    assert_string_equal(d.reason, "field \"s\": string is 1025 bytes; the limit is 1024");
    done(&d);
    free(text);
    /* The limit is on decoded bytes: 342 escapes of 3-byte "温" = 1026. */
    text = malloc(342 * 6 + 16);
    assert_non_null(text);
    strcpy(text, "{\"s\":\"");
    for (int i = 0; i < 342; i++)
        strcat(text, "\\u6e29");
    strcat(text, "\"}");
    assert_int_equal(decode(&d, text), -EMSGSIZE);
    assert_string_equal(d.reason, "field \"s\": string is 1026 bytes; the limit is 1024");
    done(&d);
    free(text);
}

static void deep_nesting(void **state)
{
    struct decoded d;
    size_t depth = 20000, len = 0;
    char *text = malloc(2 * depth + 16);

    (void)state;
    assert_non_null(text);
    /* Inside an object, and as the root: bounded by cJSON's nesting limit. */
    memcpy(text, "{\"a\":", 5);
    len = 5;
    for (size_t i = 0; i < depth; i++)
        text[len++] = '[';
    for (size_t i = 0; i < depth; i++)
        text[len++] = ']';
    text[len++] = '}';
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, text, len), -EBADMSG);
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_JSON, text + 5, len - 6), -EBADMSG);
    done(&d);
    free(text);
}

/* xorshift64*: a fixed sequence, so that a failure can be replayed. */
static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static void check_garbage_result(const struct decoded *d)
{
    assert_true(d->ret == 0 || d->ret == -EBADMSG || d->ret == -EMSGSIZE);
    if (d->ret == 0)
        assert_true(d->reading->n_fields > 0 && d->reading->n_fields <= PAYLOAD_MAX_FIELDS);
}

static void garbage_never_crashes(void **state)
{
    static const char alphabet[] = "{}[]\":,0123456789.eE+- \\untrfals\xe6\xb8\xa9\xff\x00";
    static const char seed[] = "{\"ts\":1700000000123,\"smoke\":0.12,\"temp\":24.5,"
                               "\"battery\":87,\"alarm\":false,\"label\":\"A\\u6e29\","
                               "\"n\":null}";
    unsigned char buf[1024];
    struct decoded d;

    (void)state;
    /* Random bytes. */
    for (int i = 0; i < 3000; i++) {
        size_t len = rng() % sizeof(buf);
        for (size_t j = 0; j < len; j++)
            buf[j] = (unsigned char)rng();
        decode_bytes(&d, PAYLOAD_JSON, buf, len);
        check_garbage_result(&d);
        done(&d);
    }
    /* Random JSON-ish bytes, more likely to get deep into the parser. */
    for (int i = 0; i < 3000; i++) {
        size_t len = rng() % 256;
        for (size_t j = 0; j < len; j++)
            buf[j] = (unsigned char)alphabet[rng() % (sizeof(alphabet) - 1)];
        if (len)
            buf[0] = '{';
        decode_bytes(&d, PAYLOAD_JSON, buf, len);
        check_garbage_result(&d);
        done(&d);
    }
    /* A good payload with a few bytes changed, dropped or cut. */
    for (int i = 0; i < 5000; i++) {
        size_t len = sizeof(seed) - 1;
        memcpy(buf, seed, len);
        for (int k = 1 + (int)(rng() % 4); k > 0; k--) {
            size_t at = rng() % len;
            switch (rng() % 3) {
            case 0:
                buf[at] = (unsigned char)rng();
                break;
            case 1:
                buf[at] = (unsigned char)alphabet[rng() % (sizeof(alphabet) - 1)];
                break;
            default:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            }
        }
        if (rng() % 4 == 0)
            len = rng() % (len + 1);
        decode_bytes(&d, PAYLOAD_JSON, buf, len);
        check_garbage_result(&d);
        done(&d);
    }
}

/* Configurable limits: each one, for the flat JSON; NULL and 0 members
 * are the compiled defaults (tested above). */
static void configured_limits(void **state)
{
    const struct payload_limits small = { .max_bytes = 32, .max_fields = 2, .max_string = 4 };
    const struct payload_limits only_fields = { .max_fields = 1 };
    static const char *fits = "{\"a\":1,\"s\":\"four\"}";
    static const char *two = "[{\"n\":\"a\",\"v\":1},{\"n\":\"b\",\"v\":2}]";
    char padded[33];
    struct decoded d;

    (void)state;
    assert_int_equal(decode_limited(&d, PAYLOAD_JSON, fits, strlen(fits), &small), 0);
    done(&d);
    assert_int_equal(decode_limited(&d, PAYLOAD_JSON, "{\"a\":1,\"b\":2,\"c\":3}", 19, &small),
                     -EMSGSIZE);
    assert_string_equal(d.reason, "more than 2 fields");
    done(&d);
    assert_int_equal(decode_limited(&d, PAYLOAD_JSON, "{\"s\":\"five!\"}", 13, &small), -EMSGSIZE);
    assert_string_equal(d.reason, "field \"s\": string is 5 bytes; the limit is 4");
    done(&d);
    memset(padded, ' ', sizeof(padded));
    memcpy(padded, "{\"a\":1}", 7);
    assert_int_equal(decode_limited(&d, PAYLOAD_JSON, padded, 32, &small), 0);
    done(&d);
    assert_int_equal(decode_limited(&d, PAYLOAD_JSON, padded, 33, &small), -EMSGSIZE);
    assert_string_equal(d.reason, "payload is 33 bytes; the limit is 32");
    done(&d);
    /* Members left 0 keep their defaults. */
    assert_int_equal(decode_limited(&d, PAYLOAD_JSON, "{\"a\":1,\"b\":2}", 13, &only_fields),
                     -EMSGSIZE);
    assert_string_equal(d.reason, "more than 1 fields");
    done(&d);
    assert_int_equal(decode_limited(&d, PAYLOAD_SENML_JSON, two, strlen(two), &only_fields),
                     -EMSGSIZE);
    assert_string_equal(d.reason, "more than 1 records");
    done(&d);
}

/* SenML JSON helpers. */

static int senml(struct decoded *d, const char *json)
{
    return decode_bytes(d, PAYLOAD_SENML_JSON, json, strlen(json));
}

static void expect_senml_error(const char *json, int err, const char *reason)
{
    struct decoded d;

    assert_int_equal(senml(&d, json), err);
    assert_string_equal(d.reason, reason);
    done(&d);
}

static void expect_text(const struct decoded *d, const char *name, const char *v)
{
    const struct gw_value *value = value_of(d, name);

    assert_int_equal(value->type, GW_VALUE_STRING);
    assert_string_equal(value->u.string, v);
}

static void expect_flag(const struct decoded *d, const char *name, bool v)
{
    const struct gw_value *value = value_of(d, name);

    assert_int_equal(value->type, GW_VALUE_BOOL);
    assert_int_equal(value->u.boolean, v);
}

#define S_NS(s) ((int64_t)(s)*INT64_C(1000000000))

/* CBOR, built by hand: heads in their shortest form, or raw bytes. */
struct cb {
    unsigned char b[8192];
    size_t n;
};

static void cb_byte(struct cb *c, unsigned v)
{
    assert_true(c->n < sizeof(c->b));
    c->b[c->n++] = (unsigned char)v;
}

static void cb_head(struct cb *c, unsigned major, uint64_t v)
{
    int bytes = v < 24 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffff ? 4 : 8;

    cb_byte(c, major << 5 | (bytes == 0   ? (unsigned)v
                             : bytes == 1 ? 24
                             : bytes == 2 ? 25
                             : bytes == 4 ? 26
                                          : 27));
    for (int i = bytes - 1; i >= 0; i--)
        cb_byte(c, (unsigned)(v >> (8 * i)) & 0xff);
}

static void cb_int(struct cb *c, int64_t v)
{
    if (v >= 0)
        cb_head(c, 0, (uint64_t)v);
    else
        cb_head(c, 1, (uint64_t)(-1 - v));
}

static void cb_text(struct cb *c, const char *s)
{
    cb_head(c, 3, strlen(s));
    for (const char *p = s; *p; p++)
        cb_byte(c, (unsigned char)*p);
}

/* Raw bytes in hex, spaces ignored. */
static void cb_hex(struct cb *c, const char *hex)
{
    while (*hex) {
        unsigned v;

        if (*hex == ' ') {
            hex++;
            continue;
        }
        assert_int_equal(sscanf(hex, "%2x", &v), 1);
        cb_byte(c, v);
        hex += 2;
    }
}

static int cbor(struct decoded *d, const struct cb *c)
{
    return decode_bytes(d, PAYLOAD_SENML_CBOR, c->b, c->n);
}

static int cbor_hex(struct decoded *d, const char *hex)
{
    struct cb c = { .n = 0 };

    cb_hex(&c, hex);
    return cbor(d, &c);
}

static void expect_cbor_error(const char *hex, int err, const char *reason)
{
    struct decoded d;

    assert_int_equal(cbor_hex(&d, hex), err);
    assert_string_equal(d.reason, reason);
    done(&d);
}

/* RFC 8428's own examples. */
static void senml_rfc_examples(void **state)
{
    struct decoded d;
    struct cb c = { .n = 0 };

    (void)state;
    /* §5.1.1 Single Datapoint: no "bn", so the name is all of "n"; no
     * time, so the arrival time. */
    assert_int_equal(
        senml(&d, "[{\"n\":\"urn:dev:ow:10e2073a01080063\",\"u\":\"Cel\",\"v\":23.1}]"), 0);
    assert_int_equal(d.reading->n_fields, 1);
    expect_number(&d, "urn:dev:ow:10e2073a01080063", 23.1);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    assert_false(d.reading->ts_from_device);
    done(&d);

    /* §5.1.2 Multiple Datapoints. */
    assert_int_equal(
        senml(&d, "[{\"bn\":\"urn:dev:ow:10e2073a01080063:\",\"n\":\"voltage\",\"u\":\"V\","
                  "\"v\":120.1},\n {\"n\":\"current\",\"u\":\"A\",\"v\":1.2}]"),
        0);
    assert_int_equal(d.reading->n_fields, 2);
    assert_string_equal(d.reading->fields[0].name, "voltage");
    expect_number(&d, "voltage", 120.1);
    expect_number(&d, "current", 1.2);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    done(&d);

    /* §5.1.2, with times: current for each of the last 5 seconds, in "A"
     * from "bu". One reading: the newest current (1.7, at "bt"). */
    assert_int_equal(senml(&d, "[{\"bn\":\"urn:dev:ow:10e2073a0108006:\",\"bt\":1.276020076001e+09,"
                               "\"bu\":\"A\",\"bver\":5,\"n\":\"voltage\",\"u\":\"V\",\"v\":120.1},"
                               "{\"n\":\"current\",\"t\":-5,\"v\":1.2},"
                               "{\"n\":\"current\",\"t\":-4,\"v\":1.3},"
                               "{\"n\":\"current\",\"t\":-3,\"v\":1.4},"
                               "{\"n\":\"current\",\"t\":-2,\"v\":1.5},"
                               "{\"n\":\"current\",\"t\":-1,\"v\":1.6},"
                               "{\"n\":\"current\",\"v\":1.7}]"),
                     0);
    assert_int_equal(d.reading->n_fields, 2);
    expect_number(&d, "voltage", 120.1);
    expect_number(&d, "current", 1.7);
    assert_int_equal(d.reading->ts_ns, INT64_C(1276020076001000000));
    assert_true(d.reading->ts_from_device);
    done(&d);

    /* §5.1.3 Multiple Measurements: one name; humidity, position and
     * battery told apart by unit, so the units name the fields; each keeps
     * its newest value; the reading's time is the newest (bt + 180). */
    assert_int_equal(senml(&d, "[{\"bn\":\"urn:dev:ow:10e2073a01080063\",\"bt\":1.320067464e+09,"
                               "\"bu\":\"%RH\",\"v\":20},"
                               "{\"u\":\"lon\",\"v\":24.30621},"
                               "{\"u\":\"lat\",\"v\":60.07965},"
                               "{\"t\":60,\"v\":20.3},"
                               "{\"u\":\"lon\",\"t\":60,\"v\":24.30622},"
                               "{\"u\":\"lat\",\"t\":60,\"v\":60.07965},"
                               "{\"t\":120,\"v\":20.7},"
                               "{\"u\":\"lon\",\"t\":120,\"v\":24.30623},"
                               "{\"u\":\"lat\",\"t\":120,\"v\":60.07966},"
                               "{\"u\":\"%EL\",\"t\":150,\"v\":98},"
                               "{\"t\":180,\"v\":21.2},"
                               "{\"u\":\"lon\",\"t\":180,\"v\":24.30628},"
                               "{\"u\":\"lat\",\"t\":180,\"v\":60.07967}]"),
                     0);
    assert_int_equal(d.reading->n_fields, 4);
    expect_number(&d, "%RH", 21.2);
    expect_number(&d, "lon", 24.30628);
    expect_number(&d, "lat", 60.07967);
    expect_number(&d, "%EL", 98);
    assert_int_equal(d.reading->ts_ns, S_NS(1320067644));
    assert_true(d.reading->ts_from_device);
    done(&d);

    /* §5.1.5 Multiple Data Types. */
    assert_int_equal(
        senml(&d, "[{\"bn\":\"urn:dev:ow:10e2073a01080063:\",\"n\":\"temp\",\"u\":\"Cel\","
                  "\"v\":23.1},{\"n\":\"label\",\"vs\":\"Machine Room\"},"
                  "{\"n\":\"open\",\"vb\":false},{\"n\":\"nfc-reader\",\"vd\":\"aGkgCg\"}]"),
        0);
    assert_int_equal(d.reading->n_fields, 4);
    expect_number(&d, "temp", 23.1);
    expect_text(&d, "label", "Machine Room");
    expect_flag(&d, "open", false);
    expect_text(&d, "nfc-reader", "aGkgCg");
    done(&d);

    /* §5.1.6 Collection of Resources: two devices' temperatures in one
     * pack cannot be one device's reading. */
    expect_senml_error("[{\"bn\":\"2001:db8::2/\",\"bt\":1.320078429e+09,\"n\":\"temperature\","
                       "\"u\":\"Cel\",\"v\":25.2},{\"n\":\"humidity\",\"u\":\"%RH\",\"v\":30},"
                       "{\"bn\":\"2001:db8::1/\",\"n\":\"temperature\",\"u\":\"Cel\",\"v\":12.3},"
                       "{\"n\":\"humidity\",\"u\":\"%RH\",\"v\":67}]",
                       -EBADMSG,
                       "record 2: \"2001:db8::2/temperature\" in \"Cel\" and "
                       "\"2001:db8::1/temperature\" in \"Cel\" both make field \"temperature\"");

    /* §5.1.7 Setting an Actuator: a record of base values only. */
    assert_int_equal(
        senml(&d, "[{\"bn\":\"urn:dev:ow:10e2073a01080063:\"},"
                  "{\"n\":\"temp\",\"u\":\"Cel\",\"v\":23.1},"
                  "{\"n\":\"heat\",\"u\":\"/\",\"v\":1},{\"n\":\"fan\",\"u\":\"/\",\"v\":0}]"),
        0);
    assert_int_equal(d.reading->n_fields, 3);
    expect_number(&d, "heat", 1);
    expect_number(&d, "fan", 0);
    done(&d);

    /* §6: the CBOR of §5.1.2, integer labels (bn -2, n 0, u 1, v 2). */
    cb_hex(&c, "82 a4 21 78 1c");
    for (const char *p = "urn:dev:ow:10e2073a01080063:"; *p; p++)
        cb_byte(&c, (unsigned char)*p);
    cb_hex(&c, "00 67 766f6c74616765 01 61 56 02 fb 405e066666666666"
               " a3 00 67 63757272656e74 01 61 41 02 fb 3ff3333333333333");
    assert_int_equal(c.n, 78);
    assert_int_equal(cbor(&d, &c), 0);
    assert_int_equal(d.reading->n_fields, 2);
    assert_string_equal(d.reading->fields[0].name, "voltage");
    expect_number(&d, "voltage", 120.1);
    expect_number(&d, "current", 1.2);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    done(&d);

    /* DOMAIN-NOTES §4.4, what the district's devices send. */
    assert_int_equal(
        senml(&d,
              "[{\"bn\":\"urn:dev:imei:868000000000001:\",\"bt\":1700000000,\"n\":\"temp\","
              "\"u\":\"Cel\",\"v\":23.5},\n {\"n\":\"smoke\",\"u\":\"%\",\"v\":1.2},\n"
              " {\"n\":\"battery\",\"u\":\"%EL\",\"v\":87},\n {\"n\":\"alarm\",\"vb\":false},\n"
              " {\"n\":\"tamper\",\"vb\":false},\n {\"n\":\"grid\",\"vs\":\"110101009003001\"}]"),
        0);
    assert_int_equal(d.reading->n_fields, 6);
    expect_number(&d, "temp", 23.5);
    expect_number(&d, "smoke", 1.2);
    expect_number(&d, "battery", 87);
    expect_flag(&d, "alarm", false);
    expect_flag(&d, "tamper", false);
    expect_text(&d, "grid", "110101009003001");
    assert_int_equal(d.reading->ts_ns, S_NS(1700000000));
    assert_true(d.reading->ts_from_device);
    done(&d);
}

static void senml_names(void **state)
{
    struct decoded d;

    (void)state;
    /* "n" after a "bn" ending in ':' or '/'; "n" may hold '/' (LwM2M). */
    assert_int_equal(senml(&d, "[{\"bn\":\"urn:dev:mac:0024befffe804ff1/\",\"n\":\"temp\",\"v\":1},"
                               "{\"bn\":\"/3303/0/\",\"n\":\"5700\",\"v\":2},"
                               "{\"bn\":\"\",\"n\":\"3304/0/5700\",\"v\":3}]"),
                     0);
    expect_number(&d, "temp", 1);
    expect_number(&d, "5700", 2);
    expect_number(&d, "3304/0/5700", 3);
    done(&d);
    /* No "n": the unit, else what follows the last ':' or '/' of "bn". */
    assert_int_equal(senml(&d, "[{\"bn\":\"urn:dev:imei:868000000000001:temp\",\"v\":1}]"), 0);
    expect_number(&d, "temp", 1);
    done(&d);
    assert_int_equal(senml(&d, "[{\"bn\":\"dev/7/smoke\",\"n\":\"\",\"v\":1}]"), 0);
    expect_number(&d, "smoke", 1);
    done(&d);
    assert_int_equal(senml(&d, "[{\"bn\":\"urn:dev:x:1:temp\",\"u\":\"Cel\",\"v\":1}]"), 0);
    expect_number(&d, "Cel", 1);
    done(&d);
    assert_int_equal(senml(&d, "[{\"bn\":\"temp\",\"v\":1}]"), 0);
    expect_number(&d, "temp", 1);
    done(&d);
    expect_senml_error("[{\"bn\":\"urn:dev:x:1:\",\"v\":1}]", -EBADMSG,
                       "record 0: no field name: \"bn\" \"urn:dev:x:1:\" ends in ':' or '/' and "
                       "there is no \"n\" or unit");
    expect_senml_error("[{\"v\":1}]", -EBADMSG, "record 0: no name (\"bn\" and \"n\" are empty)");
    expect_senml_error("[{\"n\":\"\",\"v\":1}]", -EBADMSG,
                       "record 0: no name (\"bn\" and \"n\" are empty)");

    /* RFC 8428 §4.5.1: A-Z a-z 0-9 - : . / _, starting with A-Z a-z 0-9. */
    assert_int_equal(senml(&d, "[{\"n\":\"A-z.9_:/x\",\"v\":1}]"), 0);
    done(&d);
    expect_senml_error(
        "[{\"bn\":\"urn:dev:x:\",\"n\":\"a b\",\"v\":1}]", -EBADMSG,
        "record 0: name \"urn:dev:x:a b\" holds a character RFC 8428 does not allow");
    expect_senml_error("[{\"n\":\"-temp\",\"v\":1}]", -EBADMSG,
                       "record 0: name \"-temp\" holds a character RFC 8428 does not allow");
    expect_senml_error("[{\"n\":\"温度\",\"v\":1}]", -EBADMSG,
                       "record 0: name \"温度\" holds a character RFC 8428 does not allow");
    expect_senml_error("[{\"n\":\"a\\nb\",\"v\":1}]", -EBADMSG,
                       "record 0: name \"a\\x0ab\" holds a character RFC 8428 does not allow");
    /* The field name's own limit (64 bytes) still holds, "_sum" added. */
    {
        char text[128];

        snprintf(text, sizeof(text), "[{\"n\":\"%065d\",\"v\":1}]", 0);
        expect_senml_error(text, -EMSGSIZE,
                           "record 0: field \"0000000000000000000000000000000000000000...\": name "
                           "is 65 bytes; the limit is 64");
        snprintf(text, sizeof(text), "[{\"n\":\"%061d\",\"s\":1}]", 0);
        expect_senml_error(text, -EMSGSIZE,
                           "record 0: field \"0000000000000000000000000000000000000000...\": name "
                           "is 65 bytes; the limit is 64");
        snprintf(text, sizeof(text), "[{\"n\":\"%065d\",\"s\":1}]", 0);
        expect_senml_error(text, -EMSGSIZE,
                           "record 0: field \"0000000000000000000000000000000000000000...\": name "
                           "is 65 bytes; the limit is 64");
        snprintf(text, sizeof(text), "[{\"n\":\"%060d\",\"s\":1}]", 0);
        assert_int_equal(senml(&d, text), 0);
        done(&d);
    }

    /* One field from two names, units or kinds of value: refused. */
    expect_senml_error("[{\"bn\":\"a:\",\"n\":\"t\",\"v\":1},{\"bn\":\"b:\",\"n\":\"t\",\"v\":2}]",
                       -EBADMSG, "record 1: \"a:t\" and \"b:t\" both make field \"t\"");
    expect_senml_error("[{\"n\":\"t\",\"u\":\"Cel\",\"v\":1},{\"n\":\"t\",\"u\":\"K\",\"v\":274}]",
                       -EBADMSG,
                       "record 1: \"t\" in \"Cel\" and \"t\" in \"K\" both make field \"t\"");
    expect_senml_error("[{\"n\":\"x\",\"s\":1},{\"n\":\"x_sum\",\"v\":2}]", -EBADMSG,
                       "record 1: \"x\" (sum) and \"x_sum\" both make field \"x_sum\"");
    /* The same name from "bn" + "n" split differently is one name: a
     * time series. "n" still names the field first: "t", "d:t", "t". */
    assert_int_equal(
        senml(&d, "[{\"bn\":\"d:\",\"n\":\"t\",\"v\":1},{\"bn\":\"\",\"n\":\"d:t\",\"v\":2},"
                  "{\"bn\":\"d:t\",\"n\":\"\",\"v\":3}]"),
        0);
    assert_int_equal(d.reading->n_fields, 2);
    expect_number(&d, "t", 3);
    expect_number(&d, "d:t", 2);
    done(&d);
}

static void senml_values(void **state)
{
    struct decoded d;

    (void)state;
    /* Every type; "bv" is added to "v" (not to other values), "bs" to "s";
     * a sum is "<name>_sum"; "ut", units and unknown labels are not kept. */
    assert_int_equal(senml(&d, "[{\"bn\":\"d:\",\"bv\":100,\"bs\":1000,\"n\":\"e\",\"v\":5,\"s\":7,"
                               "\"ut\":60,\"u\":\"W\",\"x\":{\"ignored\":1}}]"),
                     -EBADMSG);
    assert_string_equal(
        d.reason, "record 0: label \"x\": nested object not allowed (SenML records are flat)");
    done(&d);
    assert_int_equal(senml(&d, "[{\"bn\":\"d:\",\"bv\":100,\"bs\":1000,\"n\":\"e\",\"v\":5,\"s\":7,"
                               "\"ut\":60,\"u\":\"W\",\"x\":\"unknown\",\"y\":null},"
                               "{\"n\":\"s\",\"vs\":\"text\"},{\"n\":\"b\",\"vb\":true},"
                               "{\"n\":\"d\",\"vd\":\"AAEC-_8\"},{\"n\":\"o\",\"s\":-2.5},"
                               "{\"n\":\"neg\",\"v\":-1e-300}]"),
                     0);
    assert_int_equal(d.reading->n_fields, 7);
    expect_number(&d, "e", 105);
    expect_number(&d, "e_sum", 1007);
    expect_text(&d, "s", "text");
    expect_flag(&d, "b", true);
    expect_text(&d, "d", "AAEC-_8");
    expect_number(&d, "o_sum", 997.5);
    expect_number(&d, "neg", 100 - 1e-300);
    done(&d);
    /* Padding is tolerated in "vd", kept as sent. */
    assert_int_equal(senml(&d, "[{\"n\":\"d\",\"vd\":\"aGkgCg==\"},{\"n\":\"e\",\"vd\":\"\"}]"), 0);
    expect_text(&d, "d", "aGkgCg==");
    expect_text(&d, "e", "");
    done(&d);
    expect_senml_error("[{\"n\":\"d\",\"vd\":\"aGk+Cg\"}]", -EBADMSG,
                       "record 0: \"vd\" is not base64url (RFC 4648 §5)");
    expect_senml_error("[{\"n\":\"d\",\"vd\":\"aGkgC\"}]", -EBADMSG,
                       "record 0: \"vd\" is not base64url (RFC 4648 §5)");
    expect_senml_error("[{\"n\":\"d\",\"vd\":\"aG=k\"}]", -EBADMSG,
                       "record 0: \"vd\" is not base64url (RFC 4648 §5)");
    expect_senml_error("[{\"n\":\"d\",\"vd\":\"aGk===\"}]", -EBADMSG,
                       "record 0: \"vd\" is not base64url (RFC 4648 §5)");

    /* One value per record; none only in a record of base values. */
    expect_senml_error("[{\"n\":\"a\",\"v\":1,\"vs\":\"x\"}]", -EBADMSG,
                       "record 0: \"v\" and \"vs\" in one record; it may have one value");
    expect_senml_error("[{\"n\":\"a\",\"vb\":true,\"vd\":\"AA\"}]", -EBADMSG,
                       "record 0: \"vb\" and \"vd\" in one record; it may have one value");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{\"n\":\"b\",\"u\":\"W\"}]", -EBADMSG,
                       "record 1: no value (\"v\", \"vs\", \"vb\", \"vd\" or \"s\")");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{}]", -EBADMSG,
                       "record 1: no value (\"v\", \"vs\", \"vb\", \"vd\" or \"s\")");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{\"t\":5}]", -EBADMSG,
                       "record 1: no value (\"v\", \"vs\", \"vb\", \"vd\" or \"s\")");
    expect_senml_error("[{\"bn\":\"d:\",\"bt\":1700000000}]", -EBADMSG, "no fields");
    expect_senml_error("[]", -EBADMSG, "no records");
    expect_senml_error(" [ ] ", -EBADMSG, "no records");

    /* Base values hold until changed. */
    assert_int_equal(senml(&d, "[{\"bv\":10,\"n\":\"a\",\"v\":1},{\"n\":\"b\",\"v\":2},"
                               "{\"bv\":0,\"n\":\"c\",\"v\":3}]"),
                     0);
    expect_number(&d, "a", 11);
    expect_number(&d, "b", 12);
    expect_number(&d, "c", 3);
    done(&d);

    /* "bver": up to 10, a positive integer. */
    assert_int_equal(senml(&d, "[{\"bver\":10,\"n\":\"a\",\"v\":1}]"), 0);
    done(&d);
    expect_senml_error("[{\"bver\":11,\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bver\" 11 is newer than SenML version 10");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{\"bver\":1e6}]", -EBADMSG,
                       "record 1: \"bver\" 1000000 is newer than SenML version 10");
    expect_senml_error("[{\"bver\":0,\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bver\" must be a positive integer");
    expect_senml_error("[{\"bver\":5.5,\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bver\" must be a positive integer");
    expect_senml_error("[{\"bver\":\"10\",\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bver\" is not a number");

    /* Unknown labels: ignored unless must-understand (ending in '_'). */
    expect_senml_error("[{\"n\":\"a\",\"v\":1,\"rt_\":\"x\"}]", -EBADMSG,
                       "record 0: label \"rt_\" must be understood and is not");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{\"_\":1}]", -EBADMSG,
                       "record 1: label \"_\" must be understood and is not");
    expect_senml_error("[{\"n\":\"a\",\"v\":1,\"ct\":[60]}]", -EBADMSG,
                       "record 0: label \"ct\": array not allowed (SenML records are flat)");
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"v\":1,\"ct\":\"60\",\"V\":true,\"bn_x\":1}]"), 0);
    assert_int_equal(d.reading->n_fields, 1);
    done(&d);

    /* Wrong types, one per label type. */
    expect_senml_error("[{\"n\":\"a\",\"v\":\"1\"}]", -EBADMSG, "record 0: \"v\" is not a number");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{\"n\":\"b\",\"v\":true}]", -EBADMSG,
                       "record 1: \"v\" is not a number");
    expect_senml_error("[{\"n\":\"a\",\"v\":null}]", -EBADMSG, "record 0: \"v\" is not a number");
    expect_senml_error("[{\"n\":\"a\",\"v\":[1]}]", -EBADMSG, "record 0: \"v\" is not a number");
    expect_senml_error("[{\"n\":\"a\",\"vs\":1}]", -EBADMSG, "record 0: \"vs\" is not a string");
    expect_senml_error("[{\"n\":\"a\",\"vb\":1}]", -EBADMSG, "record 0: \"vb\" is not a boolean");
    expect_senml_error("[{\"n\":\"a\",\"vd\":{}}]", -EBADMSG, "record 0: \"vd\" is not a string");
    expect_senml_error("[{\"n\":1,\"v\":1}]", -EBADMSG, "record 0: \"n\" is not a string");
    expect_senml_error("[{\"bn\":false,\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bn\" is not a string");
    expect_senml_error("[{\"n\":\"a\",\"u\":1,\"v\":1}]", -EBADMSG,
                       "record 0: \"u\" is not a string");
    expect_senml_error("[{\"bu\":[],\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bu\" is not a string");
    expect_senml_error("[{\"n\":\"a\",\"t\":\"now\",\"v\":1}]", -EBADMSG,
                       "record 0: \"t\" is not a number");
    expect_senml_error("[{\"bt\":\"2024\",\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: \"bt\" is not a number");
    expect_senml_error("[{\"n\":\"a\",\"s\":\"1\"}]", -EBADMSG, "record 0: \"s\" is not a number");
    expect_senml_error("[{\"n\":\"a\",\"v\":1,\"ut\":true}]", -EBADMSG,
                       "record 0: \"ut\" is not a number");

    /* Huge numbers: JSON has no infinity, but 1e999 overflows to one. */
    expect_senml_error("[{\"n\":\"a\",\"v\":1e999}]", -EBADMSG,
                       "record 0: \"v\" is not a finite number");
    expect_senml_error("[{\"n\":\"a\",\"v\":-1e999}]", -EBADMSG,
                       "record 0: \"v\" is not a finite number");
    expect_senml_error("[{\"bv\":1e308,\"n\":\"a\",\"v\":1e308}]", -EBADMSG,
                       "record 0: \"bv\" + \"v\" is not a finite number");
    expect_senml_error("[{\"bs\":-1e308,\"n\":\"a\",\"s\":-1e308}]", -EBADMSG,
                       "record 0: \"bs\" + \"s\" is not a finite number");
    assert_int_equal(
        senml(&d, "[{\"n\":\"a\",\"v\":1.7976931348623157e308},{\"n\":\"b\",\"v\":1e-400}]"), 0);
    expect_number(&d, "a", 1.7976931348623157e308);
    expect_number(&d, "b", 0);
    done(&d);

    /* Strings: the limit and UTF-8, named by record and field. */
    expect_senml_error("[{\"n\":\"a\",\"v\":1},{\"n\":\"s\",\"vs\":\"ok\xe6\xb8\"}]", -EBADMSG,
                       "record 1: field \"s\": string is not valid UTF-8");
    assert_int_equal(senml(&d, "[{\"n\":\"s\",\"vs\":\"温度 \\u00e9\"}]"), 0);
    expect_text(&d, "s", "温度 é");
    done(&d);
}

static void senml_times(void **state)
{
    struct decoded d;

    (void)state;
    /* Below 2^28 s: relative to arrival (here 1111 ns), not the device's
     * clock. */
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"t\":-2.5,\"v\":1}]"), 0);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS - INT64_C(2500000000));
    assert_false(d.reading->ts_from_device);
    done(&d);
    assert_int_equal(senml(&d, "[{\"bt\":-10,\"n\":\"a\",\"t\":3,\"v\":1},{\"n\":\"b\",\"v\":2}]"),
                     0);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS - S_NS(7));
    done(&d);
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"t\":268435455,\"v\":1}]"), 0);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS + S_NS(268435455));
    assert_false(d.reading->ts_from_device);
    done(&d);
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"t\":-268435456,\"v\":1}]"), 0);
    done(&d);
    expect_senml_error("[{\"n\":\"a\",\"t\":-268435457,\"v\":1}]", -EBADMSG,
                       "record 0: relative time -268435457 is more than 2^28 s in the past");
    expect_senml_error("[{\"n\":\"a\",\"t\":-1e300,\"v\":1}]", -EBADMSG,
                       "record 0: relative time -1.0000000000000001e+300 is more than 2^28 s in "
                       "the past");
    /* From 2^28 s on: absolute, then in the years 2000..2100. */
    expect_senml_error("[{\"n\":\"a\",\"t\":268435456,\"v\":1}]", -EBADMSG,
                       "record 0: time 268435456 is outside the years 2000..2100 (s since the "
                       "epoch)");
    expect_senml_error("[{\"n\":\"a\",\"t\":1700000000000,\"v\":1}]", -EBADMSG,
                       "record 0: time 1700000000000 is outside the years 2000..2100 (s since the "
                       "epoch)");
    expect_senml_error("[{\"bt\":1e300,\"n\":\"a\",\"v\":1}]", -EBADMSG,
                       "record 0: time 1.0000000000000001e+300 is outside the years 2000..2100 (s "
                       "since the epoch)");
    expect_senml_error("[{\"bt\":1.7e308,\"n\":\"a\",\"t\":1.7e308,\"v\":1}]", -EBADMSG,
                       "record 0: \"bt\" + \"t\" is not a finite number");
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"t\":946684800,\"v\":1}]"), 0);
    assert_int_equal(d.reading->ts_ns, S_NS(946684800));
    assert_true(d.reading->ts_from_device);
    done(&d);
    expect_senml_error("[{\"n\":\"a\",\"t\":4133980800,\"v\":1}]", -EBADMSG,
                       "record 0: time 4133980800 is outside the years 2000..2100 (s since the "
                       "epoch)");
    /* "bt" + relative "t"; fractions kept to the microsecond. */
    assert_int_equal(senml(&d, "[{\"bt\":1700000000,\"n\":\"a\",\"t\":-0.25,\"v\":1}]"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(1699999999750000000));
    done(&d);
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"t\":1700000000.123456,\"v\":1}]"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(1700000000123456000));
    done(&d);

    /* A time series of one name keeps the newest sample, wherever it is
     * in the pack; equal times: the later record. The reading's time is
     * the newest of all records. */
    assert_int_equal(senml(&d, "[{\"bt\":1700000000,\"n\":\"a\",\"t\":30,\"v\":3},"
                               "{\"n\":\"a\",\"t\":10,\"v\":1},{\"n\":\"b\",\"t\":20,\"v\":5},"
                               "{\"n\":\"b\",\"t\":20,\"v\":6},{\"n\":\"a\",\"t\":20,\"v\":2}]"),
                     0);
    assert_int_equal(d.reading->n_fields, 2);
    expect_number(&d, "a", 3);
    expect_number(&d, "b", 6);
    assert_int_equal(d.reading->ts_ns, S_NS(1700000030));
    assert_true(d.reading->ts_from_device);
    done(&d);
    /* Absolute against relative: both on one clock (arrival is 1111 ns,
     * so the absolute time is the newer). */
    assert_int_equal(
        senml(&d, "[{\"n\":\"a\",\"t\":1700000000,\"v\":1},{\"n\":\"a\",\"t\":-1,\"v\":2}]"), 0);
    expect_number(&d, "a", 1);
    assert_int_equal(d.reading->ts_ns, S_NS(1700000000));
    assert_true(d.reading->ts_from_device);
    done(&d);

    /* A failed pack leaves the reading's time alone. */
    assert_int_equal(
        senml(&d, "[{\"bt\":1700000000,\"n\":\"a\",\"v\":1},{\"n\":\"b\",\"v\":\"x\"}]"), -EBADMSG);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    assert_false(d.reading->ts_from_device);
    done(&d);
}

/* Builds a pack of n records "f0".."f<n-1>". */
static char *many_records(size_t n)
{
    struct {
        char *p;
        size_t len;
    } out = { NULL, 0 };
    FILE *f = open_memstream(&out.p, &out.len);

    assert_non_null(f);
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s{\"n\":\"f%zu\",\"v\":%zu}", i ? "," : "", i, i);
    fputc(']', f);
    fclose(f);
    return out.p;
}

static void senml_json_malformed(void **state)
{
    struct decoded d;
    char *text;
    size_t depth = 20000, len;

    (void)state;
    /* Not JSON, or not a SenML array of objects. */
    expect_senml_error("[{\"n\":\"a\",\"v\":1}", -EBADMSG, "not valid JSON (error at byte 15)");
    expect_senml_error("[{\"n\":\"a\",\"v\":1}]]", -EBADMSG,
                       "not valid JSON (unexpected data at byte 17)");
    expect_senml_error("[{\"n\":\"a\",\"v\":NaN}]", -EBADMSG, "not valid JSON (error at byte 14)");
    expect_senml_error("[{\"n\":\"a\",\"v\":Infinity}]", -EBADMSG,
                       "not valid JSON (error at byte 14)");
    expect_senml_error("{\"n\":\"a\",\"v\":1}", -EBADMSG, "expected a SenML array, got an object");
    expect_senml_error("\"x\"", -EBADMSG, "expected a SenML array, got a string");
    expect_senml_error("[{\"n\":\"a\",\"v\":1},2]", -EBADMSG,
                       "record 1: expected an object, got a number");
    expect_senml_error("[[{\"n\":\"a\",\"v\":1}]]", -EBADMSG,
                       "record 0: expected an object, got an array");
    expect_senml_error("[{\"n\":\"a\",\"vs\":\"a\\u0000b\"}]", -EBADMSG,
                       "\\u0000 at byte 17: no NUL in names or strings");
    expect_senml_error("[{\"n\\u0000\":\"a\",\"v\":1}]", -EBADMSG,
                       "\\u0000 at byte 4: no NUL in names or strings");
    /* Duplicate labels: refused, unknown ones aside. */
    expect_senml_error("[{\"n\":\"a\",\"v\":1,\"v\":2}]", -EBADMSG,
                       "record 0: \"v\" appears twice");
    expect_senml_error("[{\"bn\":\"a\",\"bn\":\"b\",\"v\":2}]", -EBADMSG,
                       "record 0: \"bn\" appears twice");
    assert_int_equal(senml(&d, "[{\"n\":\"a\",\"v\":1,\"x\":1,\"x\":2}]"), 0);
    done(&d);
    /* Binary garbage. */
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, "\x81\xa2\x00\xff", 4), -EBADMSG);
    assert_string_equal(d.reason, "not valid JSON (error at byte 0)");
    done(&d);
    /* Every prefix of a good pack: malformed, no over-read. */
    static const char good[] = "[{\"bn\":\"d:\",\"bt\":1.7e9,\"n\":\"t\",\"v\":-1.5e3},"
                               "{\"n\":\"s\",\"vs\":\"\\u6e29\"},{\"n\":\"b\",\"vb\":false}]";
    for (len = 0; len <= strlen(good); len++) {
        decode_bytes(&d, PAYLOAD_SENML_JSON, good, len);
        assert_int_equal(d.ret, len == strlen(good) ? 0 : -EBADMSG);
        done(&d);
    }

    /* Deep nesting: bounded by cJSON's limit (1000), as a record and as a
     * value. */
    text = malloc(2 * depth + 32);
    assert_non_null(text);
    for (size_t i = 0; i < depth; i++)
        text[i] = '[';
    for (size_t i = 0; i < depth; i++)
        text[depth + i] = ']';
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, text, 2 * depth), -EBADMSG);
    assert_string_equal(d.reason, "not valid JSON (error at byte 1000)");
    done(&d);
    for (size_t i = 0; i < 999; i++)
        text[999 + i] = ']';
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, text, 2 * 999), -EBADMSG);
    assert_string_equal(d.reason, "record 0: expected an object, got an array");
    done(&d);
    memcpy(text, "[{\"n\":\"a\",\"v\":", 14);
    for (size_t i = 14; i < 14 + 990; i++)
        text[i] = '[';
    for (size_t i = 14 + 990; i < 14 + 2 * 990; i++)
        text[i] = ']';
    memcpy(text + 14 + 2 * 990, "}]", 2);
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, text, 14 + 2 * 990 + 2), -EBADMSG);
    assert_string_equal(d.reason, "record 0: \"v\" is not a number");
    done(&d);
    free(text);

    /* Limits: records (64), bytes, strings. */
    text = many_records(PAYLOAD_MAX_FIELDS);
    assert_int_equal(senml(&d, text), 0);
    assert_int_equal(d.reading->n_fields, PAYLOAD_MAX_FIELDS);
    done(&d);
    free(text);
    text = many_records(PAYLOAD_MAX_FIELDS + 1);
    assert_int_equal(senml(&d, text), -EMSGSIZE);
    assert_string_equal(d.reason, "more than 64 records");
    done(&d);
    free(text);
    /* 64 records, 65 fields: the sum makes one more. */
    text = many_records(PAYLOAD_MAX_FIELDS);
    len = strlen(text);
    text = realloc(text, len + 16);
    assert_non_null(text);
    memcpy(text + len - 2, ",\"s\":1}]", 9);
    assert_int_equal(senml(&d, text), -EMSGSIZE);
    assert_string_equal(d.reason, "record 63: more than 64 fields");
    done(&d);
    free(text);
    text = malloc(PAYLOAD_MAX_STRING + 64);
    assert_non_null(text);
    strcpy(text, "[{\"n\":\"s\",\"vs\":\"");
    len = strlen(text);
    memset(text + len, 'v', PAYLOAD_MAX_STRING + 1);
    strcpy(text + len + PAYLOAD_MAX_STRING + 1, "\"}]");
    assert_int_equal(senml(&d, text), -EMSGSIZE);
    assert_string_equal(d.reason, "record 0: field \"s\": string is 1025 bytes; the limit is 1024");
    done(&d);
    free(text);
}

static void senml_cbor(void **state)
{
    struct decoded d;
    struct cb c = { .n = 0 };

    (void)state;
    /* Text labels as well as integers; every value type; integers of each
     * width, negative too; half, single and double floats. */
    cb_head(&c, 4, 10);
    cb_hex(&c, "a4"); /* {bn: "d:", bt: 1700000000, "n": "i0", "v": 0} */
    cb_int(&c, -2);
    cb_text(&c, "d:");
    cb_int(&c, -3);
    cb_int(&c, 1700000000);
    cb_text(&c, "n");
    cb_text(&c, "i0");
    cb_text(&c, "v");
    cb_int(&c, 0);
    cb_hex(&c, "a2 00 62 6931 02 3b 0000000000000000"); /* i1: -1 in 8 bytes */
    cb_hex(&c, "a2 00 62 6932 02 39 ffff");             /* i2: -65536 */
    cb_hex(&c, "a2 00 62 6933 02 1b ffffffffffffffff"); /* i3: 2^64 - 1 */
    cb_hex(&c, "a2 00 62 6834 02 f9 3e00");             /* h4: half 1.5 */
    cb_hex(&c, "a2 00 62 6835 02 f9 0001");             /* h5: smallest half subnormal */
    cb_hex(&c, "a2 00 62 6636 02 fa 3fc00000");         /* f6: single 1.5 */
    cb_hex(&c, "a2 00 62 7337 03 63 616263");           /* s7: "abc" */
    cb_hex(&c, "a3 00 62 6238 04 f5 06 01");            /* b8: true, t = 1 */
    cb_hex(&c, "a3 00 62 6439 08 43 fbff00 05 20");     /* d9: vd 3 bytes, s = -1 */
    assert_int_equal(cbor(&d, &c), 0);
    assert_int_equal(d.reading->n_fields, 11);
    expect_number(&d, "i0", 0);
    expect_number(&d, "i1", -1);
    expect_number(&d, "i2", -65536);
    expect_number(&d, "i3", 18446744073709551615.0);
    expect_number(&d, "h4", 1.5);
    expect_number(&d, "h5", ldexp(1, -24));
    expect_number(&d, "f6", 1.5);
    expect_text(&d, "s7", "abc");
    expect_flag(&d, "b8", true);
    expect_text(&d, "d9", "-_8A");
    expect_number(&d, "d9_sum", -1);
    assert_int_equal(d.reading->ts_ns, S_NS(1700000001));
    assert_true(d.reading->ts_from_device);
    done(&d);

    /* Indefinite lengths everywhere; strings in chunks; base64url of 0, 1,
     * 2 and 3 bytes. */
    assert_int_equal(cbor_hex(&d, "9f bf 00 7f 61 61 60 62 6263 ff 02 01 ff"
                                  " a2 00 61 78 08 5f 41 ff 42 0001 ff"
                                  " a2 00 61 79 08 40 a2 00 61 7a 08 41 00"
                                  " a2 00 61 71 7f 61 76 ff f4 ff"),
                     -EBADMSG);
    /* ...the last record's "v" is a boolean: a number was due. */
    assert_string_equal(d.reason, "record 4: \"v\" is not a number");
    done(&d);
    assert_int_equal(cbor_hex(&d, "9f bf 00 7f 61 61 60 62 6263 ff 02 01 ff"
                                  " a2 00 61 78 08 5f 41 ff 42 0001 ff"
                                  " a2 00 61 79 08 40 a2 00 61 7a 08 41 00"
                                  " a2 00 61 77 08 43 000000 ff"),
                     0);
    expect_number(&d, "abc", 1);
    expect_text(&d, "x", "_wAB");
    expect_text(&d, "y", "");
    expect_text(&d, "z", "AA");
    expect_text(&d, "w", "AAAA");
    done(&d);

    /* Tag 4 (decimal fraction) for numbers; tag 55799 before the pack. */
    assert_int_equal(cbor_hex(&d, "d9d9f7 82 a2 00 61 61 02 c4 82 21 19 6ab3"
                                  " a2 00 61 62 02 c4 82 01 20"),
                     0);
    expect_number(&d, "a", 273.15);
    expect_number(&d, "b", -10);
    done(&d);
    expect_cbor_error("81 a2 00 61 61 02 c4 82 1b 7fffffffffffffff 01", -EBADMSG,
                      "record 0: \"v\" is not a finite number");
    expect_cbor_error("81 a2 00 61 61 02 c4 82 21 c2 41 01", -EBADMSG,
                      "record 0: \"v\": a decimal fraction (tag 4) must be [exponent, mantissa] of "
                      "integers");
    expect_cbor_error("81 a2 00 61 61 02 c4 01", -EBADMSG,
                      "record 0: \"v\": a decimal fraction (tag 4) must be [exponent, mantissa] of "
                      "integers");
    /* Any other tag: refused, wherever it is. */
    expect_cbor_error("81 a2 00 61 61 02 c1 1a 6553f100", -EBADMSG,
                      "record 0: \"v\": CBOR tag 1 not allowed");
    expect_cbor_error("81 a2 00 61 61 18 63 d8 20 61 78", -EBADMSG,
                      "record 0: label 99: CBOR tag 32 not allowed");
    expect_cbor_error("c1 81 a2 00 61 61 02 01", -EBADMSG, "CBOR tag 1 not allowed");
    expect_cbor_error("81 c1 a2 00 61 61 02 01", -EBADMSG, "record 0: expected a map, got a tag");
    expect_cbor_error("81 a2 c1 00 61 61 02 01", -EBADMSG,
                      "record 0: a label must be an integer or a text string, not a tag");
    /* libcbor 0.8 takes tags 6..20 in one byte for malformed. */
    expect_cbor_error("81 a2 00 61 61 02 c6 01", -EBADMSG, "not valid CBOR (at byte 6)");

    /* NaN and infinities, which CBOR can carry. */
    expect_cbor_error("81 a2 00 61 61 02 f9 7e00", -EBADMSG,
                      "record 0: \"v\" is not a finite number");
    expect_cbor_error("81 a2 00 61 61 02 f9 fc00", -EBADMSG,
                      "record 0: \"v\" is not a finite number");
    expect_cbor_error("81 a2 00 61 61 02 fa 7f800000", -EBADMSG,
                      "record 0: \"v\" is not a finite number");
    expect_cbor_error("81 a2 00 61 61 02 fb 7ff8000000000001", -EBADMSG,
                      "record 0: \"v\" is not a finite number");
    expect_cbor_error("81 a3 00 61 61 02 01 06 fb fff0000000000000", -EBADMSG,
                      "record 0: \"t\" is not a finite number");
    expect_cbor_error("81 a3 00 61 61 02 01 22 f9 7c00", -EBADMSG,
                      "record 0: \"bt\" is not a finite number");

    /* Wrong types. */
    expect_cbor_error("81 a2 00 61 61 02 61 31", -EBADMSG, "record 0: \"v\" is not a number");
    expect_cbor_error("81 a2 00 61 61 02 f6", -EBADMSG, "record 0: \"v\" is not a number");
    expect_cbor_error("81 a2 00 61 61 02 f7", -EBADMSG, "record 0: \"v\" is not a number");
    expect_cbor_error("81 a2 00 61 61 03 41 61", -EBADMSG, "record 0: \"vs\" is not a text string");
    expect_cbor_error("81 a2 00 61 61 08 61 61", -EBADMSG, "record 0: \"vd\" is not a byte string");
    expect_cbor_error("81 a2 00 61 61 04 01", -EBADMSG, "record 0: \"vb\" is not a boolean");
    expect_cbor_error("81 a2 00 01 02 01", -EBADMSG, "record 0: \"n\" is not a text string");
    expect_cbor_error("81 a2 00 61 61 02 a0", -EBADMSG, "record 0: \"v\" is not a number");
    expect_cbor_error("81 a2 41 76 01 00 61 61", -EBADMSG,
                      "record 0: a label must be an integer or a text string, not a byte string");
    expect_cbor_error("81 a2 f9 4000 01 00 61 61", -EBADMSG,
                      "record 0: a label must be an integer or a text string, not a float");
    expect_cbor_error("a1 00 61 61", -EBADMSG, "expected a SenML array, got a map");
    expect_cbor_error("01", -EBADMSG, "expected a SenML array, got an integer");
    expect_cbor_error("82 a2 00 61 61 02 01 02", -EBADMSG,
                      "record 1: expected a map, got an integer");
    /* NUL and invalid UTF-8 in text. */
    expect_cbor_error("81 a2 00 61 61 03 63 610062", -EBADMSG, "record 0: \"vs\" holds a NUL");
    expect_cbor_error("81 a2 00 63 610062 02 01", -EBADMSG, "record 0: \"n\" holds a NUL");
    expect_cbor_error("81 a2 00 61 73 03 63 6fe6b8", -EBADMSG,
                      "record 0: field \"s\": string is not valid UTF-8");
    expect_cbor_error("81 a2 00 62 61ff 02 01", -EBADMSG,
                      "record 0: name \"a\\xff\" holds a character RFC 8428 does not allow");
    /* Duplicates, also of an integer and a text label. */
    expect_cbor_error("81 a3 00 61 61 02 01 02 02", -EBADMSG, "record 0: \"v\" appears twice");
    expect_cbor_error("81 a3 00 61 61 02 01 61 76 02", -EBADMSG, "record 0: \"v\" appears twice");
    /* Unknown labels: ignored (any scalar), unless must-understand or
     * nested. */
    assert_int_equal(
        cbor_hex(&d,
                 "81 a6 00 61 61 02 01 18 63 f6 38 63 41 00 63 78797a f4 09 fb 0000000000000000"),
        0);
    assert_int_equal(d.reading->n_fields, 1);
    done(&d);
    expect_cbor_error("81 a3 00 61 61 02 01 62 615f 01", -EBADMSG,
                      "record 0: label \"a_\" must be understood and is not");
    expect_cbor_error(
        "81 a3 00 61 61 02 01 18 63 80", -EBADMSG,
        "record 0: label 99: nested array or map not allowed (SenML records are flat)");
    expect_cbor_error(
        "81 a3 00 61 61 02 01 38 63 bf ff", -EBADMSG,
        "record 0: label -100: nested array or map not allowed (SenML records are flat)");
    expect_cbor_error("81 a3 00 61 61 02 01 61 78 9f ff", -EBADMSG,
                      "record 0: label \"x\": nested array or map not allowed (SenML records are "
                      "flat)");

    /* Structure: truncated, trailing bytes, breaks, bad chunks, reserved
     * bytes, lengths longer than the payload. */
    expect_cbor_error("81", -EBADMSG, "CBOR ends early (at byte 1)");
    expect_cbor_error("81 a2 00 61 61 02", -EBADMSG, "CBOR ends early (at byte 6)");
    expect_cbor_error("81 a2 00 61 61 02 fb 4000", -EBADMSG,
                      "CBOR ends early (in the item at byte 6)");
    expect_cbor_error("81 a2 00 65 61", -EBADMSG, "CBOR ends early (in the item at byte 3)");
    expect_cbor_error("9f a2 00 61 61 02 01", -EBADMSG, "CBOR ends early (at byte 7)");
    expect_cbor_error("81 a2 00 61 61 02 01 00", -EBADMSG,
                      "not valid CBOR (unexpected data at byte 7)");
    expect_cbor_error("81 a2 00 61 61 02 01 81 a2 00 61 61 02 01", -EBADMSG,
                      "not valid CBOR (unexpected data at byte 7)");
    expect_cbor_error("81 ff", -EBADMSG, "not valid CBOR (unexpected break at byte 1)");
    expect_cbor_error("81 a2 00 61 61 ff", -EBADMSG, "not valid CBOR (unexpected break at byte 5)");
    expect_cbor_error("81 a2 00 61 61 02 ff", -EBADMSG,
                      "not valid CBOR (unexpected break at byte 6)");
    expect_cbor_error("ff", -EBADMSG, "not valid CBOR (unexpected break at byte 0)");
    expect_cbor_error("81 a2 00 7f 41 61 ff 02 01", -EBADMSG,
                      "not valid CBOR (a byte string in an indefinite-length string at byte 4)");
    expect_cbor_error("81 a2 00 7f 7f ff ff 02 01", -EBADMSG,
                      "not valid CBOR (a text string in an indefinite-length string at byte 4)");
    expect_cbor_error("81 a2 00 61 61 02 1c", -EBADMSG, "not valid CBOR (at byte 6)");
    expect_cbor_error("81 a2 00 61 61 02 f8 20", -EBADMSG, "not valid CBOR (at byte 6)");
    expect_cbor_error("81 a2 00 61 61 02 e0", -EBADMSG, "not valid CBOR (at byte 6)");
    expect_cbor_error("81 a2 00 7b ffffffffffffffff 61", -EBADMSG,
                      "CBOR ends early (in the item at byte 3)");
    expect_cbor_error("81 bb ffffffffffffffff 00 61 61", -EBADMSG, "CBOR ends early (at byte 13)");
    expect_cbor_error("9b ffffffffffffffff a0", -EMSGSIZE, "more than 64 records");
    expect_cbor_error("80", -EBADMSG, "no records");
    expect_cbor_error("9f ff", -EBADMSG, "no records");
    /* Binary garbage that is not CBOR's array head. */
    expect_cbor_error("7b 22 61 22 3a 31 7d", -EBADMSG, "CBOR ends early (in the item at byte 0)");
}

static void senml_cbor_nesting_and_limits(void **state)
{
    size_t depth = 60000;
    struct cb *c = malloc(sizeof(*c));
    unsigned char *deep = malloc(depth + 16);
    struct decoded d;

    (void)state;
    assert_non_null(c);
    assert_non_null(deep);
    /* Deep nesting costs one item: no recursion, no allocation per level. */
    memset(deep, 0x81, depth);
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_CBOR, deep, depth), -EBADMSG);
    assert_string_equal(d.reason, "record 0: expected a map, got an array");
    done(&d);
    memcpy(deep, "\x81\xa2\x00\x61\x61\x02", 6);
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_CBOR, deep, depth), -EBADMSG);
    assert_string_equal(d.reason, "record 0: \"v\" is not a number");
    done(&d);
    memset(deep + 6, 0x9f, depth - 6);
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_CBOR, deep, depth), -EBADMSG);
    assert_string_equal(d.reason, "record 0: \"v\" is not a number");
    done(&d);
    free(deep);

    /* Records: 64 pass, 65 do not, definite or not. */
    *c = (struct cb){ .n = 0 };
    cb_head(c, 4, PAYLOAD_MAX_FIELDS);
    for (int i = 0; i < PAYLOAD_MAX_FIELDS; i++) {
        char name[8];

        snprintf(name, sizeof(name), "f%d", i);
        cb_hex(c, "a2 00");
        cb_text(c, name);
        cb_hex(c, "02");
        cb_int(c, i);
    }
    assert_int_equal(cbor(&d, c), 0);
    assert_int_equal(d.reading->n_fields, PAYLOAD_MAX_FIELDS);
    done(&d);
    c->b[0] = 0x9f; /* 98 40: 64 records; 9f: indefinite */
    memmove(c->b + 1, c->b + 2, c->n - 2);
    c->n--;
    cb_hex(c, "a2 00 62 6678 02 01 ff");
    assert_int_equal(cbor(&d, c), -EMSGSIZE);
    assert_string_equal(d.reason, "more than 64 records");
    done(&d);

    /* A string of 1024 bytes passes, 1025 do not; the limit is the
     * configured one. */
    *c = (struct cb){ .n = 0 };
    cb_hex(c, "81 a2 00 61 73 03 79 0401");
    memset(c->b + c->n, 'v', 1025);
    c->n += 1025;
    assert_int_equal(cbor(&d, c), -EMSGSIZE);
    assert_string_equal(d.reason, "record 0: field \"s\": string is 1025 bytes; the limit is 1024");
    done(&d);
    c->b[8] = 0x00;
    c->n--;
    assert_int_equal(cbor(&d, c), 0);
    done(&d);
    {
        const struct payload_limits lim = { .max_string = 1023 };

        assert_int_equal(decode_limited(&d, PAYLOAD_SENML_CBOR, c->b, c->n, &lim), -EMSGSIZE);
        assert_string_equal(d.reason,
                            "record 0: field \"s\": string is 1024 bytes; the limit is 1023");
        done(&d);
    }
    /* "vd": the limit holds for the base64url text. */
    *c = (struct cb){ .n = 0 };
    cb_hex(c, "81 a2 00 61 64 08 59 0300");
    memset(c->b + c->n, 0xff, 768);
    c->n += 768;
    assert_int_equal(cbor(&d, c), 0);
    assert_int_equal(strlen(value_of(&d, "d")->u.string), 1024);
    done(&d);
    c->b[8] = 0x01;
    memset(c->b + c->n, 0xff, 1);
    c->n++;
    assert_int_equal(cbor(&d, c), -EMSGSIZE);
    assert_string_equal(d.reason, "record 0: field \"d\": string is 1026 bytes; the limit is 1024");
    done(&d);
    free(c);
}

static void guess_format(void **state)
{
    (void)state;
    assert_int_equal(payload_guess_format("{\"a\":1}", 7), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format(" \r\n\t{", 5), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format("[{\"n\":\"a\",\"v\":1}]", 17), PAYLOAD_SENML_JSON);
    assert_int_equal(payload_guess_format("\n  [", 4), PAYLOAD_SENML_JSON);
    assert_int_equal(payload_guess_format("\xEF\xBB\xBF [", 5), PAYLOAD_SENML_JSON);
    assert_int_equal(payload_guess_format("\x81\xa2", 2), PAYLOAD_SENML_CBOR);
    assert_int_equal(payload_guess_format("\x80", 1), PAYLOAD_SENML_CBOR);
    assert_int_equal(payload_guess_format("\x9f", 1), PAYLOAD_SENML_CBOR);
    assert_int_equal(payload_guess_format("\xd9\xd9\xf7\x81", 4), PAYLOAD_SENML_CBOR);
    /* Anything else: flat JSON, which then says what is wrong. */
    assert_int_equal(payload_guess_format("\xa0", 1), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format("\x7f", 1), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format("online", 6), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format("   ", 3), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format("", 0), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format(NULL, 0), PAYLOAD_JSON);
    /* Only len bytes are looked at. */
    assert_int_equal(payload_guess_format("  [", 2), PAYLOAD_JSON);
    assert_int_equal(payload_guess_format("\xd9\xd9", 2), PAYLOAD_JSON);
}

static int status(struct decoded *d, const char *text)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);

    assert_non_null(copy);
    memcpy(copy, text, len);
    d->reading = gw_reading_new("dev-1", GW_CHANNEL_STATUS, ARRIVAL_NS);
    assert_non_null(d->reading);
    memset(d->reason, 'X', sizeof(d->reason));
    d->ret = payload_decode_status(copy, len, d->reading, d->reason, sizeof(d->reason));
    free(copy);
    assert_non_null(memchr(d->reason, '\0', sizeof(d->reason)));
    if (d->ret == 0)
        assert_string_equal(d->reason, "");
    return d->ret;
}

static void expect_status(const char *text, const char *value)
{
    struct decoded d;

    assert_int_equal(status(&d, text), 0);
    assert_int_equal(d.reading->n_fields, 1);
    expect_text(&d, "status", value);
    done(&d);
}

static void expect_status_error(const char *text, int err, const char *reason)
{
    struct decoded d;

    assert_int_equal(status(&d, text), err);
    assert_string_equal(d.reason, reason);
    done(&d);
}

static void decode_status(void **state)
{
    struct decoded d;
    char *big;

    (void)state;
    expect_status("online", "online");
    expect_status("offline", "offline");
    expect_status("ONLINE", "online");
    expect_status(" \r\n\tOffLine\n", "offline");
    expect_status("{\"status\":\"online\"}", "online");
    expect_status(" {\"status\" : \"Offline\"} \n", "offline");
    assert_int_equal(status(&d, "{\"ts\":1700000000123,\"status\":\"online\"}"), 0);
    assert_int_equal(d.reading->ts_ns, INT64_C(1700000000123000000));
    assert_true(d.reading->ts_from_device);
    done(&d);
    assert_int_equal(status(&d, "online"), 0);
    assert_int_equal(d.reading->ts_ns, ARRIVAL_NS);
    assert_false(d.reading->ts_from_device);
    done(&d);

    expect_status_error("", -EBADMSG, "empty payload");
    expect_status_error("   ", -EBADMSG, "status must be \"online\" or \"offline\"");
    expect_status_error("on line", -EBADMSG, "status must be \"online\" or \"offline\"");
    expect_status_error("onlinex", -EBADMSG, "status must be \"online\" or \"offline\"");
    expect_status_error("\"online\"", -EBADMSG, "status must be \"online\" or \"offline\"");
    expect_status_error("1", -EBADMSG, "status must be \"online\" or \"offline\"");
    expect_status_error("{\"status\":\"away\"}", -EBADMSG,
                        "status must be \"online\" or \"offline\"");
    expect_status_error("{\"status\":true}", -EBADMSG,
                        "\"status\" must be a string, not a boolean");
    expect_status_error("{\"ts\":1700000000123}", -EBADMSG, "no \"status\"");
    expect_status_error("{\"status\":\"online\",\"rssi\":-70}", -EBADMSG,
                        "unexpected key \"rssi\" (only \"status\" and \"ts\")");
    expect_status_error("{\"status\":\"online\",\"ts\":17}", -EBADMSG,
                        "\"ts\" 17 is outside the years 2000..2100 (ms since the epoch)");
    expect_status_error("{\"status\":\"online\"", -EBADMSG, "not valid JSON (error at byte 17)");
    expect_status_error("{\"status\":\"on\\u0000line\"}", -EBADMSG,
                        "\\u0000 at byte 13: no NUL in names or strings");
    /* A NUL inside len is not the end. */
    d.reading = gw_reading_new("d", GW_CHANNEL_STATUS, 0);
    assert_non_null(d.reading);
    assert_int_equal(payload_decode_status("online\0", 7, d.reading, d.reason, sizeof(d.reason)),
                     -EBADMSG);
    assert_string_equal(d.reason, "status must be \"online\" or \"offline\"");
    done(&d);
    big = malloc(PAYLOAD_MAX_BYTES + 2);
    assert_non_null(big);
    memset(big, ' ', PAYLOAD_MAX_BYTES + 1);
    memcpy(big, "online", 6);
    big[PAYLOAD_MAX_BYTES + 1] = '\0';
    expect_status_error(big, -EMSGSIZE, "payload is 65537 bytes; the limit is 65536");
    free(big);
}

static void check_any_result(const struct decoded *d)
{
    assert_true(d->ret == 0 || d->ret == -EBADMSG || d->ret == -EMSGSIZE);
    if (d->ret == 0)
        assert_true(d->reading->n_fields > 0 && d->reading->n_fields <= 2 * PAYLOAD_MAX_FIELDS);
}

/* Mutations of good packs: dropped, changed or cut bytes never crash. */
static void senml_garbage_never_crashes(void **state)
{
    static const char json_alphabet[] = "{}[]\":,0123456789.eE+- \\untrfalsbvdt_\xe6\xb8\xa9\xff";
    static const char json_seed[] =
        "[{\"bn\":\"urn:dev:imei:1:\",\"bt\":1700000000,\"n\":\"temp\",\"u\":\"Cel\",\"v\":23.5},"
        "{\"n\":\"alarm\",\"vb\":false},{\"n\":\"grid\",\"vs\":\"g1\"},{\"n\":\"d\",\"vd\":\"AA\"},"
        "{\"n\":\"e\",\"s\":1,\"t\":-1}]";
    static const char cbor_seed[] =
        "9f a5 21 62 643a 22 1a 6553f100 00 64 74656d70 01 63 43656c"
        " 02 fb 4037800000000000 a2 00 65 616c61726d 04 f4"
        " a2 00 62 6731 03 7f 61 67 61 31 ff a2 00 61 64 08 5f 41 00 ff"
        " a3 00 61 65 05 f9 3c00 06 20 a2 00 61 66 02 c4 82 21 19 6ab3 ff";
    struct cb seed = { .n = 0 };
    unsigned char buf[512];
    struct decoded d;

    (void)state;
    cb_hex(&seed, cbor_seed);
    assert_int_equal(cbor(&d, &seed), 0);
    assert_int_equal(d.reading->n_fields, 6);
    done(&d);
    assert_int_equal(senml(&d, json_seed), 0);
    done(&d);
    for (int fmt = 0; fmt < 2; fmt++) {
        const unsigned char *src = fmt ? seed.b : (const unsigned char *)json_seed;
        size_t src_len = fmt ? seed.n : sizeof(json_seed) - 1;

        for (int i = 0; i < 6000; i++) {
            size_t len = src_len;

            memcpy(buf, src, len);
            for (int k = 1 + (int)(rng() % 4); k > 0 && len > 0; k--) {
                size_t at = rng() % len;
                switch (rng() % 3) {
                case 0:
                    buf[at] = (unsigned char)rng();
                    break;
                case 1:
                    buf[at] =
                        fmt ? (unsigned char)(rng() % 0x20 + 0x80 * (rng() % 8 / 4))
                            : (unsigned char)json_alphabet[rng() % (sizeof(json_alphabet) - 1)];
                    break;
                default:
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                    break;
                }
            }
            if (rng() % 4 == 0)
                len = rng() % (len + 1);
            decode_bytes(&d, fmt ? PAYLOAD_SENML_CBOR : PAYLOAD_SENML_JSON, buf, len);
            check_any_result(&d);
            done(&d);
        }
        /* Random bytes. */
        for (int i = 0; i < 3000; i++) {
            size_t len = rng() % sizeof(buf);

            for (size_t j = 0; j < len; j++)
                buf[j] = (unsigned char)rng();
            if (len)
                buf[0] = fmt ? 0x9f : '[';
            decode_bytes(&d, fmt ? PAYLOAD_SENML_CBOR : PAYLOAD_SENML_JSON, buf, len);
            check_any_result(&d);
            done(&d);
        }
    }
}

/* MQTT and CoAP decode on their own threads at once: no shared state, and
 * each reason belongs to its own call. */
struct thread_case {
    enum payload_format format;
    const char *bad;
    const char *bad_reason;
};

static int decode_good(enum payload_format format, int i, struct gw_reading *r, char *reason,
                       size_t reason_len)
{
    unsigned char good[64];
    int n = 0;

    switch (format) {
    case PAYLOAD_JSON:
        n = snprintf((char *)good, sizeof(good), "{\"v\":%d,\"ts\":1700000000000}", i);
        break;
    case PAYLOAD_SENML_JSON:
        n = snprintf((char *)good, sizeof(good), "[{\"bt\":1700000000,\"n\":\"v\",\"v\":%d}]", i);
        break;
    case PAYLOAD_SENML_CBOR:
        memcpy(good, "\x81\xa3\x22\x1a\x65\x53\xf1\x00\x00\x61\x76\x02\x19", 13);
        good[13] = (unsigned char)(i >> 8);
        good[14] = (unsigned char)i;
        n = 15;
        break;
    }
    return payload_decode(format, good, (size_t)n, NULL, r, reason, reason_len);
}

static void *decode_many(void *arg)
{
    const struct thread_case *tc = arg;
    char reason[128];

    for (int i = 0; i < 2000; i++) {
        struct gw_reading *r = gw_reading_new("dev", GW_CHANNEL_TELEMETRY, 0);

        if (!r)
            return (void *)1;
        if (decode_good(tc->format, i, r, reason, sizeof(reason)) != 0 ||
            r->fields[0].value.u.number != i || strcmp(reason, "") != 0 ||
            r->ts_ns != INT64_C(1700000000000000000)) {
            gw_reading_unref(r);
            return (void *)1;
        }
        gw_reading_unref(r);
        r = gw_reading_new("dev", GW_CHANNEL_TELEMETRY, 0);
        if (!r)
            return (void *)1;
        if (payload_decode(tc->format, tc->bad, strlen(tc->bad), NULL, r, reason, sizeof(reason)) !=
                -EBADMSG ||
            strcmp(reason, tc->bad_reason) != 0) {
            gw_reading_unref(r);
            return (void *)1;
        }
        gw_reading_unref(r);
    }
    return NULL;
}

static void concurrent_decoders(void **state)
{
    static const struct thread_case cases[] = {
        { PAYLOAD_JSON, "{\"a\":}", "not valid JSON (error at byte 5)" },
        { PAYLOAD_JSON, "{\"bb\"x}", "not valid JSON (error at byte 5)" },
        { PAYLOAD_SENML_JSON, "[{\"a\":}]", "not valid JSON (error at byte 6)" },
        { PAYLOAD_SENML_JSON, "[{\"v\":1,\"n\":2}]", "record 0: \"n\" is not a string" },
        { PAYLOAD_SENML_CBOR, "\x81\xa1\x02\x61", "CBOR ends early (in the item at byte 3)" },
        { PAYLOAD_SENML_CBOR, "\x81\x01", "record 0: expected a map, got an integer" },
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    pthread_t threads[N];

    (void)state;
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, decode_many, (void *)&cases[i]), 0);
    for (int i = 0; i < N; i++) {
        void *ret;
        assert_int_equal(pthread_join(threads[i], &ret), 0);
        assert_null(ret);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type),
        cmocka_unit_test(repeated_and_reserved_names),
        cmocka_unit_test(device_timestamp),
        cmocka_unit_test(bad_timestamp),
        cmocka_unit_test(malformed),
        cmocka_unit_test(empty_and_unsupported),
        cmocka_unit_test(not_nul_terminated),
        cmocka_unit_test(limits),
        cmocka_unit_test(configured_limits),
        cmocka_unit_test(deep_nesting),
        cmocka_unit_test(garbage_never_crashes),
        cmocka_unit_test(senml_rfc_examples),
        cmocka_unit_test(senml_names),
        cmocka_unit_test(senml_values),
        cmocka_unit_test(senml_times),
        cmocka_unit_test(senml_json_malformed),
        cmocka_unit_test(senml_cbor),
        cmocka_unit_test(senml_cbor_nesting_and_limits),
        cmocka_unit_test(senml_garbage_never_crashes),
        cmocka_unit_test(guess_format),
        cmocka_unit_test(decode_status),
        cmocka_unit_test(concurrent_decoders),
    };

    return cmocka_run_group_tests_name("payload", tests, NULL, NULL);
}
