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
 * read past the end faults, in cJSON (not built with sanitizers) too. */
static int decode_bytes(struct decoded *d, enum payload_format format, const void *data, size_t len)
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
    d->ret = payload_decode(format, copy, len, d->reading, d->reason, sizeof(d->reason));
    munmap(map, map_len);
    /* A reason is always a terminated string, and says something on error. */
    assert_non_null(memchr(d->reason, '\0', sizeof(d->reason)));
    if (d->ret < 0)
        assert_true(d->reason[0] != '\0');
    return d->ret;
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
    assert_int_equal(payload_decode(PAYLOAD_JSON, NULL, 0, r, reason, sizeof(reason)), -EBADMSG);
    assert_string_equal(reason, "empty payload");

    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_JSON, "[{\"n\":\"t\",\"v\":1}]", 17),
                     -EPROTONOSUPPORT);
    assert_string_equal(d.reason, "SenML JSON is not supported yet");
    assert_int_equal(d.reading->n_fields, 0);
    done(&d);
    assert_int_equal(decode_bytes(&d, PAYLOAD_SENML_CBOR, "\x81\xa2", 2), -EPROTONOSUPPORT);
    assert_string_equal(d.reason, "SenML CBOR is not supported yet");
    done(&d);
    assert_int_equal(payload_decode((enum payload_format)42, "{}", 2, r, reason, sizeof(reason)),
                     -EPROTONOSUPPORT);
    assert_string_equal(reason, "unknown payload format 42");

    assert_string_equal(payload_format_name(PAYLOAD_JSON), "json");
    assert_string_equal(payload_format_name(PAYLOAD_SENML_JSON), "senml+json");
    assert_string_equal(payload_format_name(PAYLOAD_SENML_CBOR), "senml+cbor");
    assert_string_equal(payload_format_name((enum payload_format)42), "unknown");

    /* No reason buffer, or a tiny one, is fine. */
    assert_int_equal(payload_decode(PAYLOAD_JSON, "{}", 2, r, NULL, 0), -EBADMSG);
    assert_int_equal(payload_decode(PAYLOAD_JSON, "{\"x\":[]}", 8, r, reason, 8), -EBADMSG);
    assert_string_equal(reason, "field \"");
    assert_int_equal(payload_decode(PAYLOAD_JSON, "{\"x\":1}", 7, r, NULL, 0), 0);
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

/* MQTT and CoAP decode on their own threads at once: no shared state, and
 * each reason belongs to its own call. */
static void *decode_many(void *arg)
{
    const char *bad = arg;
    char good[64], reason[128];

    for (int i = 0; i < 2000; i++) {
        struct gw_reading *r = gw_reading_new("dev", GW_CHANNEL_TELEMETRY, 0);
        int n = snprintf(good, sizeof(good), "{\"v\":%d,\"ts\":1700000000000}", i);

        if (!r)
            return (void *)1;
        if (payload_decode(PAYLOAD_JSON, good, (size_t)n, r, reason, sizeof(reason)) != 0 ||
            r->fields[0].value.u.number != i || strcmp(reason, "") != 0) {
            gw_reading_unref(r);
            return (void *)1;
        }
        gw_reading_unref(r);
        r = gw_reading_new("dev", GW_CHANNEL_TELEMETRY, 0);
        if (!r)
            return (void *)1;
        if (payload_decode(PAYLOAD_JSON, bad, strlen(bad), r, reason, sizeof(reason)) != -EBADMSG ||
            strcmp(reason, "not valid JSON (error at byte 5)") != 0) {
            gw_reading_unref(r);
            return (void *)1;
        }
        gw_reading_unref(r);
    }
    return NULL;
}

static void concurrent_decoders(void **state)
{
    static const char *bad[] = { "{\"a\":}", "{\"bb\"x}", "{\"a\":-}", "{\"a\":tx}" };
    pthread_t threads[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, decode_many, (void *)bad[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *ret;
        assert_int_equal(pthread_join(threads[i], &ret), 0);
        assert_null(ret);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type),          cmocka_unit_test(repeated_and_reserved_names),
        cmocka_unit_test(device_timestamp),    cmocka_unit_test(bad_timestamp),
        cmocka_unit_test(malformed),           cmocka_unit_test(empty_and_unsupported),
        cmocka_unit_test(not_nul_terminated),  cmocka_unit_test(limits),
        cmocka_unit_test(deep_nesting),        cmocka_unit_test(garbage_never_crashes),
        cmocka_unit_test(concurrent_decoders),
    };

    return cmocka_run_group_tests_name("payload", tests, NULL, NULL);
}
