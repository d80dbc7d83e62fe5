/* Unit tests for InfluxDB line protocol: the escaping examples of the 1.x
 * line protocol reference, every field type, what is skipped and what
 * makes a line invalid (rolled back), DESIGN.md's reading line, and a
 * round trip of hostile names and values through a real influxd. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "influx_line.h"
#include "influx_query.h"
#include "influx_writer.h"
#include "influxd_fixture.h"

#define TS INT64_C(1465839830100400200)

/* One line "measurement,tagkey=tagvalue fieldkey=<float 82> TS". */
static void expect_simple(const char *measurement, const char *tag_key, const char *tag_value,
                          const char *field_key, const char *expected)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;

    influx_line_begin(&line, &b, measurement);
    influx_line_tag(&line, tag_key, tag_value);
    influx_line_field_float(&line, field_key, 82);
    assert_int_equal(influx_line_end(&line, TS), 0);
    assert_string_equal(b.data, expected);
    gw_buf_free(&b);
}

static void escaping_as_documented(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;

    (void)state;
    expect_simple("weather", "location", "us-midwest", "temperature",
                  "weather,location=us-midwest temperature=82 1465839830100400200\n");
    /* Tag keys, tag values and field keys: comma, equals sign, space. */
    expect_simple("weather", "location place", "us-midwest", "temperature",
                  "weather,location\\ place=us-midwest temperature=82 1465839830100400200\n");
    expect_simple("weather", "location", "us,midwest", "temperature",
                  "weather,location=us\\,midwest temperature=82 1465839830100400200\n");
    expect_simple("weather", "location", "us=midwest", "temperature",
                  "weather,location=us\\=midwest temperature=82 1465839830100400200\n");
    expect_simple("weather", "loc=ation", "us midwest", "temp=rature",
                  "weather,loc\\=ation=us\\ midwest temp\\=rature=82 1465839830100400200\n");
    expect_simple("weather", "location", "us-midwest", "temp, rature",
                  "weather,location=us-midwest temp\\,\\ rature=82 1465839830100400200\n");
    /* Measurements: comma and space, not the equals sign. */
    expect_simple("wea,ther", "location", "us-midwest", "temperature",
                  "wea\\,ther,location=us-midwest temperature=82 1465839830100400200\n");
    expect_simple("wea ther", "location", "us-midwest", "temperature",
                  "wea\\ ther,location=us-midwest temperature=82 1465839830100400200\n");
    expect_simple("wea=ther", "location", "us-midwest", "temperature",
                  "wea=ther,location=us-midwest temperature=82 1465839830100400200\n");
    /* Nothing else is escaped: quotes, a backslash before an ordinary
     * character, UTF-8. */
    expect_simple("\"weather\"", "loc\"ation", "us\\midwest", "温度",
                  "\"weather\",loc\"ation=us\\midwest 温度=82 1465839830100400200\n");

    /* String field values: double-quoted, double quote and backslash
     * escaped; commas, spaces and equals signs left alone. */
    influx_line_begin(&line, &b, "weather");
    influx_line_tag(&line, "location", "us-midwest");
    influx_line_field_string(&line, "temperature", "too\"hot\"");
    assert_int_equal(influx_line_end(&line, TS), 0);
    influx_line_begin(&line, &b, "weather");
    influx_line_tag(&line, "location", "us-midwest");
    influx_line_field_string(&line, "temperature_str", "too hot\\cold");
    assert_int_equal(influx_line_end(&line, TS + 1000), 0);
    influx_line_begin(&line, &b, "weather");
    influx_line_field_string(&line, "s", "a,b c=d\\\"\\");
    assert_int_equal(influx_line_end(&line, TS + 2000), 0);
    assert_string_equal(b.data, "weather,location=us-midwest temperature=\"too\\\"hot\\\"\" "
                                "1465839830100400200\n"
                                "weather,location=us-midwest temperature_str=\"too hot\\\\cold\" "
                                "1465839830100401200\n"
                                "weather s=\"a,b c=d\\\\\\\"\\\\\" 1465839830100402200\n");
    gw_buf_free(&b);
}

static void every_field_type(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;
    struct gw_value v;

    (void)state;
    influx_line_begin(&line, &b, "m");
    influx_line_field_float(&line, "f", 24.5);
    influx_line_field_int(&line, "i", -42);
    influx_line_field_bool(&line, "t", true);
    influx_line_field_bool(&line, "b", false);
    influx_line_field_string(&line, "s", "");
    v = (struct gw_value){ .type = GW_VALUE_NUMBER, .u.number = 1 };
    influx_line_field(&line, "vf", &v);
    v = (struct gw_value){ .type = GW_VALUE_INTEGER, .u.integer = INT64_MIN };
    influx_line_field(&line, "vi", &v);
    v = (struct gw_value){ .type = GW_VALUE_BOOL, .u.boolean = true };
    influx_line_field(&line, "vb", &v);
    v = (struct gw_value){ .type = GW_VALUE_STRING, .u.string = (char *)"门 A" };
    influx_line_field(&line, "vs", &v);
    assert_int_equal(line.n_fields, 9);
    assert_int_equal(line.n_tags, 0);
    assert_int_equal(influx_line_end(&line, 0), 0);
    assert_string_equal(b.data, "m f=24.5,i=-42i,t=true,b=false,s=\"\",vf=1,"
                                "vi=-9223372036854775808i,vb=true,vs=\"门 A\" 0\n");
    gw_buf_reset(&b);

    /* Timestamps: before 1970, and InfluxDB's own bounds. */
    influx_line_begin(&line, &b, "m");
    influx_line_field_int(&line, "i", INT64_MAX);
    assert_int_equal(influx_line_end(&line, -1), 0);
    influx_line_begin(&line, &b, "m");
    influx_line_field_int(&line, "i", 0);
    assert_int_equal(influx_line_end(&line, INT64_MIN + 2), 0);
    assert_string_equal(b.data, "m i=9223372036854775807i -1\n"
                                "m i=0i -9223372036854775806\n");
    gw_buf_free(&b);
}

static const char *float_text(struct gw_buf *b, double v)
{
    struct influx_line line;
    const char *text;

    gw_buf_reset(b);
    influx_line_begin(&line, b, "m");
    influx_line_field_float(&line, "x", v);
    assert_int_equal(influx_line_end(&line, 1), 0);
    /* "m x=<text> 1\n": cut the text out in place. */
    text = b->data + 4;
    *strchr(b->data + 4, ' ') = '\0';
    return text;
}

static void floats_round_trip(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    uint64_t x = UINT64_C(88172645463325252);

    (void)state;
    /* Shortest form: a bare "1" is still a float in line protocol. */
    assert_string_equal(float_text(&b, 1), "1");
    assert_string_equal(float_text(&b, 0), "0");
    assert_string_equal(float_text(&b, -0.0), "-0");
    assert_string_equal(float_text(&b, 0.1), "0.1");
    assert_string_equal(float_text(&b, 0.12), "0.12");
    assert_string_equal(float_text(&b, -24.5), "-24.5");
    assert_string_equal(float_text(&b, 1e21), "1e+21");
    assert_string_equal(float_text(&b, 1.5e-7), "1.5e-07");
    assert_string_equal(float_text(&b, 123456789012345678.0), "1.2345678901234568e+17");
    /* Where 15 digits are not enough, 17. */
    assert_string_equal(float_text(&b, 1.0 / 3), "0.33333333333333331");
    assert_string_equal(float_text(&b, 0.1 + 0.2), "0.30000000000000004");
    assert_string_equal(float_text(&b, DBL_MAX), "1.7976931348623157e+308");
    assert_string_equal(float_text(&b, DBL_MIN), "2.2250738585072014e-308");
    assert_string_equal(float_text(&b, 4.9406564584124654e-324), "4.94065645841247e-324");

    /* Any finite double reads back bit for bit. */
    for (int i = 0; i < 20000; i++) {
        double v;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(&v, &x, sizeof(v));
        if (!isfinite(v))
            continue;
        const char *text = float_text(&b, v);
        double back = strtod(text, NULL);
        assert_memory_equal(&back, &v, sizeof(v));
        assert_null(strpbrk(text, "inIN,"));
    }

    /* Readings as devices send them (decimals, the fast path): exact, and
     * never longer than printf's %.15g (or %.17g where that is not exact). */
    for (int i = 0; i < 200000; i++) {
        static const double scale[] = { 1, 10, 100, 1000, 1e4, 1e5, 1e6, 3, 7 };
        double v;
        char ref[40];

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = (double)(int64_t)(x % 20000001 - 10000000) / scale[x % 9];
        if (x % 5 == 0)
            v *= 1e9;
        snprintf(ref, sizeof(ref), "%.15g", v);
        if (strtod(ref, NULL) != v)
            snprintf(ref, sizeof(ref), "%.17g", v);
        const char *text = float_text(&b, v);
        double back = strtod(text, NULL);
        assert_memory_equal(&back, &v, sizeof(v));
        if (strlen(text) > strlen(ref))
            fail_msg("%.17g: wrote %s, %s is shorter", v, text, ref);
    }
    assert_string_equal(float_text(&b, 0.0001), "0.0001");
    assert_string_equal(float_text(&b, 0.00012), "0.00012");
    assert_string_equal(float_text(&b, 9.9999e-5), "9.9999e-05");
    assert_string_equal(float_text(&b, -87), "-87");
    assert_string_equal(float_text(&b, 100), "100");
    assert_string_equal(float_text(&b, 999999999999999.0), "999999999999999");
    assert_string_equal(float_text(&b, 1e15), "1e+15");
    assert_string_equal(float_text(&b, 116.397128), "116.397128");
    gw_buf_free(&b);
}

static void skipped_fields(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;

    (void)state;
    influx_line_begin(&line, &b, "m");
    influx_line_field_float(&line, "nan", NAN);
    influx_line_field_float(&line, "inf", INFINITY);
    influx_line_field_float(&line, "ninf", -INFINITY);
    influx_line_field_float(&line, "ok", 2.5);
    influx_line_field_int(&line, "", 1);                /* empty key */
    influx_line_field_bool(&line, NULL, true);          /* no key */
    influx_line_field_float(&line, "time", 1);          /* InfluxDB refuses "time" */
    influx_line_field_float(&line, "a\nb", 1);          /* newline in a key */
    influx_line_field_float(&line, "end\\", 1);         /* backslash before the '=' */
    influx_line_field_float(&line, "a\\,b", 1);         /* backslash before an escape */
    influx_line_field_float(&line, "a\\\"b", 1);        /* \" in a field key unescapes */
    influx_line_field_string(&line, "s", "two\nlines"); /* newline in a string */
    influx_line_field_string(&line, "n", NULL);
    influx_line_field_string(&line, "cr", "a\rb\tc"); /* only \n is a problem */
    influx_line_field_string(&line, "bs", "end\\");   /* escaped in strings */
    influx_line_field_int(&line, "Time", 7);          /* only "time" itself */
    assert_int_equal(line.n_fields, 4);
    assert_int_equal(line.n_skipped, 12);
    assert_int_equal(influx_line_end(&line, 5), 0);
    assert_string_equal(b.data, "m ok=2.5,cr=\"a\rb\tc\",bs=\"end\\\\\",Time=7i 5\n");
    gw_buf_free(&b);
}

static void skipped_tags(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;

    (void)state;
    /* Empty tag keys and values are left out (InfluxDB refuses empty tag
     * values); that is not an error. */
    influx_line_begin(&line, &b, "m");
    influx_line_tag(&line, "a", "");
    influx_line_tag(&line, "", "x");
    influx_line_tag(&line, "b", NULL);
    influx_line_tag(&line, NULL, "x");
    influx_line_tag(&line, "c", "3");
    influx_line_field_int(&line, "v", 1);
    assert_int_equal(line.n_tags, 1);
    assert_int_equal(influx_line_end(&line, 5), 0);
    assert_string_equal(b.data, "m,c=3 v=1i 5\n");
    gw_buf_free(&b);
}

/* A line that cannot be valid leaves the buffer exactly as it was. */
static void expect_rollback(void (*build)(struct influx_line *, struct gw_buf *), int64_t ts,
                            int err)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;

    assert_int_equal(gw_buf_puts(&b, "prev v=1 1\n"), 0);
    build(&line, &b);
    assert_int_equal(influx_line_end(&line, ts), err);
    assert_int_equal(b.len, 11);
    assert_string_equal(b.data, "prev v=1 1\n");
    /* And the buffer takes the next line. */
    influx_line_begin(&line, &b, "next");
    influx_line_field_bool(&line, "ok", true);
    assert_int_equal(influx_line_end(&line, 2), 0);
    assert_string_equal(b.data, "prev v=1 1\nnext ok=true 2\n");
    gw_buf_free(&b);
}

static void build_no_field(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_tag(line, "t", "x");
}

static void build_only_skipped(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_tag(line, "t", "x");
    influx_line_field_float(line, "nan", NAN);
    influx_line_field_float(line, "time", 1);
    influx_line_field_string(line, "s", "a\nb");
}

static void build_bad_measurement(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "sm\noke");
    influx_line_field_float(line, "v", 1);
}

static void build_empty_measurement(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "");
    influx_line_field_float(line, "v", 1);
}

static void build_null_measurement(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, NULL);
    influx_line_field_float(line, "v", 1);
}

static void build_comment_measurement(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "#smoke");
    influx_line_field_float(line, "v", 1);
}

static void build_tab_measurement(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "\tsmoke");
    influx_line_field_float(line, "v", 1);
}

static void build_backslash_measurement(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "smoke\\");
    influx_line_field_float(line, "v", 1);
}

static void build_bad_tag_value(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_tag(line, "device", "a\nb");
    influx_line_field_float(line, "v", 1);
}

static void build_bad_tag_key(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_tag(line, "dev\nice", "a");
    influx_line_field_float(line, "v", 1);
}

static void build_backslash_tag(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_tag(line, "device", "a\\ b");
    influx_line_field_float(line, "v", 1);
}

static void build_time_tag(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_tag(line, "time", "1");
    influx_line_field_float(line, "v", 1);
}

static void build_tag_after_field(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_field_float(line, "v", 1);
    influx_line_tag(line, "late", "x");
    influx_line_field_float(line, "w", 2);
}

static void build_good(struct influx_line *line, struct gw_buf *b)
{
    influx_line_begin(line, b, "m");
    influx_line_field_float(line, "v", 1);
}

static void rollback(void **state)
{
    (void)state;
    expect_rollback(build_no_field, 1, -EINVAL);
    expect_rollback(build_only_skipped, 1, -EINVAL);
    expect_rollback(build_bad_measurement, 1, -EINVAL);
    expect_rollback(build_empty_measurement, 1, -EINVAL);
    expect_rollback(build_null_measurement, 1, -EINVAL);
    expect_rollback(build_comment_measurement, 1, -EINVAL);
    expect_rollback(build_tab_measurement, 1, -EINVAL);
    expect_rollback(build_backslash_measurement, 1, -EINVAL);
    expect_rollback(build_bad_tag_value, 1, -EINVAL);
    expect_rollback(build_bad_tag_key, 1, -EINVAL);
    expect_rollback(build_backslash_tag, 1, -EINVAL);
    expect_rollback(build_time_tag, 1, -EINVAL);
    expect_rollback(build_tag_after_field, 1, -EINVAL);
    /* Timestamps InfluxDB cannot store. */
    expect_rollback(build_good, INT64_MIN, -EINVAL);
    expect_rollback(build_good, INT64_MAX, -EINVAL);
}

static void rollback_from_empty_buffer(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    struct influx_line line;

    (void)state;
    influx_line_begin(&line, &b, "m");
    influx_line_tag(&line, "t", "x");
    assert_int_equal(influx_line_end(&line, 1), -EINVAL);
    assert_int_equal(b.len, 0);
    assert_true(b.data == NULL || b.data[0] == '\0');
    gw_buf_free(&b);
}

static void reading_line(void **state)
{
    struct gw_grid grid = {
        .id = (char *)"110101001001001",
        .name = (char *)"东华门 1",
        .community_id = (char *)"110101001001",
        .community = (char *)"多福巷社区",
        .street_id = (char *)"110101001",
        .street = (char *)"东华门街道",
        .type = GW_GRID_CROWDED,
        .level = GW_LEVEL_ATTENTION,
    };
    struct gw_device device = {
        .id = (char *)"smoke-0001",
        .type = (char *)"smoke",
        .grid = &grid,
        .lat = 39.91,
        .lon = 116.40,
        .label = (char *)"lobby",
    };
    struct gw_reading *r =
        gw_reading_new("smoke-0001", GW_CHANNEL_TELEMETRY, INT64_C(1700000000123000000));
    struct gw_buf b = GW_BUF_INIT;

    (void)state;
    assert_non_null(r);
    /* Not resolved yet. */
    assert_int_equal(influx_line_reading(&b, r), -EINVAL);
    assert_int_equal(b.len, 0);

    r->device = &device;
    assert_int_equal(gw_reading_add_number(r, "smoke", 0.12), 0);
    assert_int_equal(gw_reading_add_number(r, "battery", 87), 0);
    assert_int_equal(gw_reading_add_bool(r, "alarm", false), 0);
    assert_int_equal(gw_reading_add_string(r, "note", "door \"B\""), 0);
    assert_int_equal(gw_reading_add_integer(r, "seq", 12), 0);
    assert_int_equal(gw_reading_add_number(r, "glitch", NAN), 0);
    assert_int_equal(influx_line_reading(&b, r), 0);
    assert_string_equal(b.data, "smoke,community=110101001001,device=smoke-0001,"
                                "grid=110101001001001,street=110101001 "
                                "smoke=0.12,battery=87,alarm=false,note=\"door \\\"B\\\"\",seq=12i "
                                "1700000000123000000\n");

    /* Ids with characters to escape. */
    gw_buf_reset(&b);
    device.id = (char *)"cam 7,east=1";
    device.type = (char *)"camera, ptz";
    assert_int_equal(influx_line_reading(&b, r), 0);
    assert_string_equal(b.data, "camera\\,\\ ptz,community=110101001001,device=cam\\ 7\\,east\\=1,"
                                "grid=110101001001001,street=110101001 "
                                "smoke=0.12,battery=87,alarm=false,note=\"door \\\"B\\\"\",seq=12i "
                                "1700000000123000000\n");

    /* A reading whose only field cannot be written: nothing is written. */
    gw_reading_unref(r);
    r = gw_reading_new("smoke-0001", GW_CHANNEL_TELEMETRY, 1);
    assert_non_null(r);
    r->device = &device;
    assert_int_equal(gw_reading_add_number(r, "v", INFINITY), 0);
    gw_buf_reset(&b);
    assert_int_equal(gw_buf_puts(&b, "keep v=1 1\n"), 0);
    assert_int_equal(influx_line_reading(&b, r), -EINVAL);
    assert_string_equal(b.data, "keep v=1 1\n");

    /* A device type that cannot be a measurement: the line is invalid. */
    assert_int_equal(gw_reading_add_number(r, "w", 1), 0);
    device.type = (char *)"";
    assert_int_equal(influx_line_reading(&b, r), -EINVAL);
    assert_string_equal(b.data, "keep v=1 1\n");

    /* No grid: only the device tag. */
    device.type = (char *)"gas";
    device.id = (char *)"gas-1";
    device.grid = NULL;
    assert_int_equal(influx_line_reading(&b, r), 0);
    assert_string_equal(b.data, "keep v=1 1\ngas,device=gas-1 w=1 1\n");

    gw_reading_unref(r);
    gw_buf_free(&b);
}

/* ---- a round trip through a real influxd ---- */

struct hostile {
    const char *measurement, *tag_key, *tag_value, *field_key, *string;
    double f;
    int64_t i;
};

static const struct hostile hostile[] = {
    { "m,comma", "k,comma", "v,comma", "f,comma", "s,comma", 0.1, 1 },
    { "m space", "k space", "v space", "f space", "s space", 1.0 / 3, -2 },
    { " lead", " lead", " lead", " lead", " lead", 1e-300, 3 },
    { "trail ", "trail ", "trail ", "trail ", "trail ", -2.5e300, -4 },
    { "m=eq", "k=eq", "v=eq", "f=eq", "s=eq", 123456.789, 5 },
    { "m\"quote", "k\"quote", "v\"quote", "f\"quote", "s\"quote\"", 0.30000000000000004, 6 },
    { "m\\back", "k\\back", "v\\back", "f\\back", "s\\back\\", DBL_MAX, 7 },
    { "温度", "街道", "东华门街道", "字段", "中文 值", DBL_MIN, 9007199254740993 - 1 },
    { "🔥smoke", "🔥", "🚒", "🧯", "🔥 fire", -0.0, -9007199254740992 },
    { "m#hash", "#", "#", "#f", "# not a comment", 4.9406564584124654e-324, 0 },
    { "m=", "=", "=", "=", "=", 1e21, 10 },
    { "all, b=c\\d\"é🔥 ", " k, =\"\\x ", " v, =\"\\x🔥 ", " f, =\"\\x ", " \\\"\\\\ , = 🔥 \" ",
      2.2250738585072014e-308, 11 },
    { "m'apos", "k'apos", "v'apos", "f'apos", "'", 42, 12 },
    { "tab\tin", "k\ttab", "v\ttab", "f\ttab", "s\ttab\r", 7.0e-5, 13 },
};
#define N_HOSTILE (sizeof(hostile) / sizeof(hostile[0]))
#define RT_TS INT64_C(1700000000123456789)

static const cJSON *column_value(const cJSON *series, const char *name)
{
    const cJSON *columns = cJSON_GetObjectItemCaseSensitive(series, "columns");
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(series, "values"), 0);
    int i = 0;
    const cJSON *c;

    cJSON_ArrayForEach(c, columns)
    {
        if (cJSON_IsString(c) && strcmp(c->valuestring, name) == 0)
            return cJSON_GetArrayItem(row, i);
        i++;
    }
    return NULL;
}

static void round_trip_through_influxd(void **state)
{
    struct influxd_fixture server;
    struct influx_writer_options wo = { .database = "rt", .flush_interval_ms = 10, .gzip = true };
    struct influx_query_options qo = { .database = "rt" };
    struct gw_buf lines = GW_BUF_INIT, answer = GW_BUF_INIT, raw = GW_BUF_INIT;
    struct influx_writer_stats st;
    struct influx_writer *w;
    char *error = NULL;
    cJSON *json, *series_list, *series;
    int r;

    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    assert_int_equal(influxd_fixture_init(&server), 0);
    if (influxd_fixture_start(&server) < 0)
        fail_msg("cannot start influxd (see above)");
    assert_int_equal(influxd_fixture_create_db(&server, "rt"), 0);

    for (size_t k = 0; k < N_HOSTILE; k++) {
        const struct hostile *h = &hostile[k];
        struct influx_line line;

        influx_line_begin(&line, &lines, h->measurement);
        influx_line_tag(&line, h->tag_key, h->tag_value);
        influx_line_field_string(&line, h->field_key, h->string);
        influx_line_field_float(&line, "f", h->f);
        influx_line_field_int(&line, "i", h->i);
        influx_line_field_bool(&line, "b", k % 2);
        assert_int_equal(influx_line_end(&line, RT_TS + (int64_t)k), 0);
    }
    /* integers at the limits, checked in the raw answer below */
    {
        struct influx_line line;
        influx_line_begin(&line, &lines, "limits");
        influx_line_field_int(&line, "max", INT64_MAX);
        influx_line_field_int(&line, "min", INT64_MIN);
        assert_int_equal(influx_line_end(&line, -1), 0);
    }

    wo.url = server.url;
    w = influx_writer_start(&wo, &error);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, N_HOSTILE + 1), 0);
    for (int i = 0; i < 500; i++) {
        influx_writer_stats(w, &st);
        if (st.lines_done >= N_HOSTILE + 1)
            break;
        usleep(10000);
    }
    influx_writer_stats(w, &st);
    influx_writer_stop(w, 1000);
    assert_int_equal(st.lines_done, N_HOSTILE + 1);
    assert_int_equal(st.points_rejected, 0);
    assert_int_equal(st.points_written, N_HOSTILE + 1);

    qo.url = server.url;
    r = influx_query(&qo, "SELECT * FROM /.*/ GROUP BY *", &answer, &error);
    if (r < 0)
        fail_msg("influx_query: %s", error);
    json = cJSON_Parse(answer.data);
    assert_non_null(json);
    series_list = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json, "results"), 0), "series");
    assert_int_equal(cJSON_GetArraySize(series_list), N_HOSTILE + 1);

    for (size_t k = 0; k < N_HOSTILE; k++) {
        const struct hostile *h = &hostile[k];
        const cJSON *found = NULL, *tags, *tag, *v;

        cJSON_ArrayForEach(series, series_list)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(series, "name");
            if (cJSON_IsString(name) && strcmp(name->valuestring, h->measurement) == 0)
                found = series;
        }
        if (!found)
            fail_msg("measurement \"%s\" did not come back", h->measurement);
        /* A regex FROM with GROUP BY * lists every measurement's tag keys, empty
         * where a series has no such tag: exactly one is set here. */
        tags = cJSON_GetObjectItemCaseSensitive(found, "tags");
        {
            int set = 0;
            cJSON_ArrayForEach(tag, tags) set += cJSON_IsString(tag) && tag->valuestring[0];
            assert_int_equal(set, 1);
        }
        tag = cJSON_GetObjectItemCaseSensitive(tags, h->tag_key);
        if (!cJSON_IsString(tag))
            fail_msg("tag key \"%s\" of \"%s\" did not come back", h->tag_key, h->measurement);
        assert_string_equal(tag->valuestring, h->tag_value);

        v = column_value(found, "time");
        assert_true(cJSON_IsNumber(v));
        assert_true(v->valuedouble == (double)((RT_TS + (int64_t)k) / 1000)); /* epoch=u */
        v = column_value(found, h->field_key);
        if (!cJSON_IsString(v))
            fail_msg("field \"%s\" of \"%s\" did not come back", h->field_key, h->measurement);
        assert_string_equal(v->valuestring, h->string);
        v = column_value(found, "f");
        assert_true(cJSON_IsNumber(v));
        if (h->f == 0) /* JSON has no -0: InfluxDB answers 0 */
            assert_true(v->valuedouble == 0);
        else
            assert_memory_equal(&v->valuedouble, &h->f, sizeof(double));
        v = column_value(found, "i");
        assert_true(cJSON_IsNumber(v));
        assert_true(v->valuedouble == (double)h->i);
        v = column_value(found, "b");
        assert_true(k % 2 ? cJSON_IsTrue(v) : cJSON_IsFalse(v));
    }
    cJSON_Delete(json);

    /* Nanoseconds and 64-bit integers, which a JSON double cannot hold:
     * from the raw text of an epoch=ns answer. */
    assert_int_equal(influxd_fixture_query(&server, "rt", "SELECT max, min FROM limits", &raw),
                     200);
    assert_non_null(strstr(raw.data, "[-1,9223372036854775807,-9223372036854775808]"));
    gw_buf_reset(&raw);
    assert_int_equal(influxd_fixture_query(&server, "rt", "SELECT * FROM \"m,comma\"", &raw), 200);
    assert_non_null(strstr(raw.data, "[1700000000123456789,"));

    influxd_fixture_destroy(&server);
    gw_buf_free(&lines);
    gw_buf_free(&answer);
    gw_buf_free(&raw);
    free(error);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escaping_as_documented),
        cmocka_unit_test(every_field_type),
        cmocka_unit_test(floats_round_trip),
        cmocka_unit_test(skipped_fields),
        cmocka_unit_test(skipped_tags),
        cmocka_unit_test(rollback),
        cmocka_unit_test(rollback_from_empty_buffer),
        cmocka_unit_test(reading_line),
        cmocka_unit_test(round_trip_through_influxd),
    };

    return cmocka_run_group_tests_name("influx_line", tests, NULL, NULL);
}
