/* libFuzzer target for the line-protocol encoder (adapters/influx_line.c),
 * as a round trip: the fuzz bytes become a point (measurement, tags,
 * fields of every type: floats from raw bits, so NaN, infinities, -0,
 * subnormals and huge values too, and from small decimals, the usual
 * readings; integers; booleans; strings with any bytes), written either
 * through the builder calls or as a reading of a device through
 * influx_line_reading(). The line is then read back by the strict parser
 * below, written from the InfluxDB 1.x line protocol reference:
 *
 * - measurement: "\," and "\ " are a comma and a space; an unescaped
 *   comma starts the tags, an unescaped space the fields;
 * - tag keys and values, field keys: "\,", "\=" and "\ " likewise;
 * - any other backslash stands for itself;
 * - string field values are double-quoted, with \" and \\ inside (and
 *   nothing else after a backslash: the encoder escapes every backslash);
 * - other field values: true/false, an integer with a trailing 'i', or a
 *   float (no leading zero before a digit, an optional exponent);
 * - then a space, the timestamp and the newline, and nothing else.
 *
 * What the encoder promises (influx_line.h, the top of influx_line.c) is
 * the oracle: a point it refuses must have a reason (a measurement or tag
 * line protocol cannot carry, no field kept, a timestamp out of range), a
 * field it leaves out must be one it may leave out (NaN or infinity, a
 * key or string it cannot carry, the key "time"), and a line it writes
 * must parse back to exactly the kept parts: the same bytes in every name
 * and string, the same bits in every float (-0 included), in order.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "influx_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STR 48
#define MAX_TAGS 4
#define MAX_FIELDS 6
#define ESC_MEASUREMENT ", "
#define ESC_KEY ", ="

/* ---- the fuzz bytes as a point ----------------------------------------- */

struct src {
    const uint8_t *p;
    size_t n;
};

static uint8_t take_byte(struct src *s)
{
    if (s->n == 0)
        return 0;
    s->n--;
    return *s->p++;
}

static uint64_t take_u64(struct src *s)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)take_byte(s) << (8 * i);
    return v;
}

/* A string of up to MAX_STR bytes, cut at a NUL (C strings cannot hold one). */
static void take_str(struct src *s, char out[MAX_STR + 1])
{
    size_t len = take_byte(s) % (MAX_STR + 1);

    if (len > s->n)
        len = s->n;
    memcpy(out, s->p, len);
    out[len] = '\0';
    s->p += len;
    s->n -= len;
}

struct tag {
    char key[MAX_STR + 1], value[MAX_STR + 1];
};

struct field {
    char key[MAX_STR + 1];
    struct gw_value value;
    char string[MAX_STR + 1];
};

struct point {
    char measurement[MAX_STR + 1];
    struct tag tags[MAX_TAGS];
    size_t n_tags;
    struct field fields[MAX_FIELDS];
    size_t n_fields;
    int64_t ts;
};

static void take_field(struct src *s, struct field *f)
{
    uint8_t kind = take_byte(s) % 5;

    take_str(s, f->key);
    switch (kind) {
    case 0: { /* any bits: NaN, infinities, -0, subnormals, huge */
        uint64_t bits = take_u64(s);

        f->value.type = GW_VALUE_NUMBER;
        memcpy(&f->value.u.number, &bits, sizeof(bits));
        break;
    }
    case 1: { /* the usual reading: a few digits and decimals */
        int32_t m = (int32_t)(uint32_t)take_u64(s);

        f->value.type = GW_VALUE_NUMBER;
        f->value.u.number = m / pow(10, take_byte(s) % 12);
        break;
    }
    case 2:
        f->value.type = GW_VALUE_INTEGER;
        f->value.u.integer = (int64_t)take_u64(s);
        break;
    case 3:
        f->value.type = GW_VALUE_BOOL;
        f->value.u.boolean = take_byte(s) & 1;
        break;
    default:
        f->value.type = GW_VALUE_STRING;
        take_str(s, f->string);
        f->value.u.string = f->string;
        break;
    }
}

/* ---- what the encoder promises ------------------------------------------ */

/* Whether line protocol can carry s with the escapes in specials: no
 * newline, and no backslash that the parser would take as escaping the
 * next character (a special, a double quote) or that ends s. */
static bool carriable(const char *s, const char *specials)
{
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\n')
            return false;
        if (s[i] == '\\' && (s[i + 1] == '\0' || s[i + 1] == '"' || strchr(specials, s[i + 1])))
            return false;
    }
    return true;
}

static bool measurement_ok(const char *m)
{
    return m[0] && m[0] != '#' && m[0] != '\t' && carriable(m, ESC_MEASUREMENT);
}

/* -1: the tag makes the line invalid; 0: left out; 1: written. */
static int tag_fate(const struct tag *t)
{
    if (!t->key[0] || !t->value[0])
        return 0;
    if (!carriable(t->key, ESC_KEY) || !carriable(t->value, ESC_KEY) || !strcmp(t->key, "time"))
        return -1;
    return 1;
}

static bool field_kept(const struct field *f)
{
    if (!f->key[0] || !carriable(f->key, ESC_KEY) || !strcmp(f->key, "time"))
        return false;
    if (f->value.type == GW_VALUE_NUMBER && !isfinite(f->value.u.number))
        return false;
    if (f->value.type == GW_VALUE_STRING && strchr(f->value.u.string, '\n'))
        return false;
    return true;
}

/* ---- the strict parser ---------------------------------------------------- */

struct parsed {
    char *measurement;
    struct tag tags[MAX_TAGS];
    size_t n_tags;
    struct field fields[MAX_FIELDS];
    size_t n_fields;
    int64_t ts;
};

/* Reads a name up to an unescaped character of stops into out (at most
 * MAX_STR bytes, or the whole rest for the measurement when out is big
 * enough); returns the stop's position or NULL. */
static const char *read_name(const char *p, const char *specials, const char *stops, char *out,
                             size_t cap)
{
    size_t n = 0;

    for (; *p && !strchr(stops, *p); p++) {
        char c = *p;

        if (c == '\n')
            return NULL;
        if (c == '\\' && p[1] && strchr(specials, p[1]))
            c = *++p;
        if (n + 1 >= cap)
            return NULL;
        out[n++] = c;
    }
    out[n] = '\0';
    return *p && n > 0 ? p : NULL;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return !(s[0] == '0' && n > 1); /* no leading zero */
}

/* A float as the 1.x scanner takes it: -?digits[.digits][e[+-]digits]. */
static bool float_syntax(const char *s, size_t n)
{
    size_t i = s[0] == '-', start = i, int_end;

    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    int_end = i;
    if (int_end == start || (s[start] == '0' && int_end - start > 1))
        return false;
    if (i < n && s[i] == '.') {
        size_t frac = ++i;

        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == frac)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp;

        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        exp = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == exp)
            return false;
    }
    return i == n;
}

/* A field value at p into f; returns what follows it or NULL. */
static const char *read_value(const char *p, struct field *f)
{
    const char *end;
    size_t n = 0, len;
    char text[64];

    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            char c = *p;

            if (c == '\0' || c == '\n')
                return NULL;
            if (c == '\\') {
                if (p[1] != '"' && p[1] != '\\')
                    return NULL;
                c = *++p;
            }
            if (n >= MAX_STR)
                return NULL;
            f->string[n++] = c;
        }
        f->string[n] = '\0';
        f->value.type = GW_VALUE_STRING;
        f->value.u.string = f->string;
        return p + 1;
    }
    len = strcspn(p, ", \n");
    end = p + len;
    if (len == 0 || len >= sizeof(text))
        return NULL;
    memcpy(text, p, len);
    text[len] = '\0';
    if (!strcmp(text, "true") || !strcmp(text, "false")) {
        f->value.type = GW_VALUE_BOOL;
        f->value.u.boolean = text[0] == 't';
    } else if (text[len - 1] == 'i') {
        size_t neg = text[0] == '-';

        if (!all_digits(text + neg, len - 1 - neg))
            return NULL;
        errno = 0;
        f->value.type = GW_VALUE_INTEGER;
        f->value.u.integer = strtoll(text, NULL, 10);
        if (errno)
            return NULL;
    } else {
        if (!float_syntax(text, len))
            return NULL;
        f->value.type = GW_VALUE_NUMBER;
        f->value.u.number = strtod(text, NULL);
    }
    return end;
}

/* Parses the one line in text (all of it); false when it breaks a rule. */
static bool parse_line(const char *text, size_t len, struct parsed *out)
{
    const char *p = text;
    size_t ts_len;

    if (len == 0 || text[len - 1] != '\n' || memchr(text, '\n', len) != text + len - 1 ||
        strlen(text) != len)
        return false;
    p = read_name(p, ESC_MEASUREMENT, ", ", out->measurement, len + 1);
    if (!p)
        return false;
    while (*p == ',') {
        struct tag *t = &out->tags[out->n_tags];

        if (out->n_tags == MAX_TAGS)
            return false;
        p = read_name(p + 1, ESC_KEY, "=, ", t->key, sizeof(t->key));
        if (!p || *p != '=')
            return false;
        p = read_name(p + 1, ESC_KEY, "=, ", t->value, sizeof(t->value));
        if (!p || *p == '=')
            return false;
        out->n_tags++;
    }
    if (*p != ' ')
        return false;
    do {
        struct field *f = &out->fields[out->n_fields];

        if (out->n_fields == MAX_FIELDS)
            return false;
        p = read_name(p + 1, ESC_KEY, "=, ", f->key, sizeof(f->key));
        if (!p || *p != '=')
            return false;
        p = read_value(p + 1, f);
        if (!p)
            return false;
        out->n_fields++;
    } while (*p == ',');
    if (*p != ' ')
        return false;
    p++;
    ts_len = strlen(p) - 1; /* up to the newline */
    if (!all_digits(p + (*p == '-'), ts_len - (*p == '-')))
        return false;
    errno = 0;
    out->ts = strtoll(p, NULL, 10);
    return errno == 0;
}

/* ---- the round trip ---------------------------------------------------- */

static bool same_value(const struct gw_value *a, const struct gw_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case GW_VALUE_NUMBER:
        return memcmp(&a->u.number, &b->u.number, sizeof(double)) == 0;
    case GW_VALUE_INTEGER:
        return a->u.integer == b->u.integer;
    case GW_VALUE_BOOL:
        return a->u.boolean == b->u.boolean;
    case GW_VALUE_STRING:
        return strcmp(a->u.string, b->u.string) == 0;
    }
    return false;
}

/* Checks what the encoder did with pt (ret, the buffer, the skipped
 * count) against its promises; skipped < 0 when it is not known. */
static void check(const struct point *pt, int ret, const struct gw_buf *buf, size_t before,
                  long skipped)
{
    bool invalid = !measurement_ok(pt->measurement);
    size_t kept = 0, n_tags = 0;
    long left_out = 0;
    struct parsed got = { 0 };
    char *measurement;

    for (size_t i = 0; i < pt->n_tags; i++) {
        int fate = tag_fate(&pt->tags[i]);

        invalid |= fate < 0;
        n_tags += fate > 0;
    }
    for (size_t i = 0; i < pt->n_fields; i++) {
        if (field_kept(&pt->fields[i]))
            kept++;
        else
            left_out++;
    }
    invalid |= kept == 0 || pt->ts < INT64_MIN + 2 || pt->ts > INT64_MAX - 1;
    if (invalid) {
        /* refused, and rolled back */
        if (ret != -EINVAL || buf->len != before)
            abort();
        return;
    }
    if (ret != 0 || (skipped >= 0 && skipped != left_out))
        abort();

    measurement = malloc(buf->len - before + 1);
    if (!measurement)
        abort();
    got.measurement = measurement;
    if (!parse_line(buf->data + before, buf->len - before, &got))
        abort();
    if (strcmp(got.measurement, pt->measurement) != 0 || got.n_tags != n_tags ||
        got.n_fields != kept || got.ts != pt->ts)
        abort();
    for (size_t i = 0, j = 0; i < pt->n_tags; i++) {
        if (tag_fate(&pt->tags[i]) <= 0)
            continue;
        if (strcmp(got.tags[j].key, pt->tags[i].key) || strcmp(got.tags[j].value, pt->tags[i].value))
            abort();
        j++;
    }
    for (size_t i = 0, j = 0; i < pt->n_fields; i++) {
        if (!field_kept(&pt->fields[i]))
            continue;
        if (strcmp(got.fields[j].key, pt->fields[i].key) ||
            !same_value(&got.fields[j].value, &pt->fields[i].value))
            abort();
        j++;
    }
    free(measurement);
}

/* Through the builder calls, each tag and field as given. */
static void round_trip_builder(struct point *pt, struct gw_buf *buf)
{
    struct influx_line line;
    size_t before = buf->len;
    int ret;

    influx_line_begin(&line, buf, pt->measurement);
    for (size_t i = 0; i < pt->n_tags; i++)
        influx_line_tag(&line, pt->tags[i].key, pt->tags[i].value);
    for (size_t i = 0; i < pt->n_fields; i++)
        influx_line_field(&line, pt->fields[i].key, &pt->fields[i].value);
    ret = influx_line_end(&line, pt->ts);
    /* Once the line is refused the encoder stops counting: compare the
     * skipped fields only for a line written. */
    check(pt, ret, buf, before, ret == 0 ? (long)line.n_skipped : -1);
}

/* As the pipeline writes a reading: device type, the grid's tags. */
static void round_trip_reading(struct point *pt, struct gw_buf *buf, bool with_grid)
{
    static const char *const tag_keys[MAX_TAGS] = { "community", "device", "grid", "street" };
    struct gw_grid grid = { .id = pt->tags[2].value,
                            .community_id = pt->tags[0].value,
                            .street_id = pt->tags[3].value };
    struct gw_device device = { .id = pt->tags[1].value,
                                .type = pt->measurement,
                                .grid = with_grid ? &grid : NULL };
    struct gw_reading *r = gw_reading_new(device.id, GW_CHANNEL_TELEMETRY, pt->ts);
    struct point expect = *pt;
    size_t before = buf->len;
    int ret = 0;

    if (!r)
        return;
    r->device = &device;
    for (size_t i = 0; i < pt->n_fields && ret == 0; i++) {
        const struct field *f = &pt->fields[i];

        switch (f->value.type) {
        case GW_VALUE_NUMBER:
            ret = gw_reading_add_number(r, f->key, f->value.u.number);
            break;
        case GW_VALUE_INTEGER:
            ret = gw_reading_add_integer(r, f->key, f->value.u.integer);
            break;
        case GW_VALUE_BOOL:
            ret = gw_reading_add_bool(r, f->key, f->value.u.boolean);
            break;
        case GW_VALUE_STRING:
            ret = gw_reading_add_string(r, f->key, f->value.u.string);
            break;
        }
    }
    if (ret < 0) {
        gw_reading_unref(r);
        return;
    }
    /* The expected point: the reading's fields (a repeated name keeps its
     * place and takes the last value), the four tags without a grid's
     * three when there is no grid. */
    expect.n_tags = 0;
    for (size_t i = 0; i < MAX_TAGS; i++) {
        if (!with_grid && i != 1)
            continue;
        strcpy(expect.tags[expect.n_tags].key, tag_keys[i]);
        strcpy(expect.tags[expect.n_tags].value, pt->tags[i].value);
        expect.n_tags++;
    }
    expect.n_fields = r->n_fields;
    for (size_t i = 0; i < r->n_fields; i++) {
        struct field *f = &expect.fields[i];

        strcpy(f->key, r->fields[i].name);
        f->value = r->fields[i].value;
        if (f->value.type == GW_VALUE_STRING) {
            strcpy(f->string, f->value.u.string);
            f->value.u.string = f->string;
        }
    }
    ret = influx_line_reading(buf, r);
    check(&expect, ret, buf, before, -1);
    gw_reading_unref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct src s = { data, size };
    struct point pt;
    struct gw_buf buf = GW_BUF_INIT;
    uint8_t mode = take_byte(&s);

    memset(&pt, 0, sizeof(pt));
    take_str(&s, pt.measurement);
    pt.n_tags = mode & 4 ? MAX_TAGS : take_byte(&s) % (MAX_TAGS + 1);
    for (size_t i = 0; i < pt.n_tags; i++) {
        take_str(&s, pt.tags[i].key);
        take_str(&s, pt.tags[i].value);
    }
    pt.n_fields = take_byte(&s) % (MAX_FIELDS + 1);
    for (size_t i = 0; i < pt.n_fields; i++)
        take_field(&s, &pt.fields[i]);
    pt.ts = mode & 8 ? (int64_t)take_u64(&s) : INT64_C(1700000000000000000) + take_byte(&s);

    /* A line already in the buffer must stay as it was. */
    if (mode & 16)
        gw_buf_puts(&buf, "earlier value=1 1\n");
    if (mode & 1)
        round_trip_reading(&pt, &buf, mode & 2);
    else
        round_trip_builder(&pt, &buf);
    if ((mode & 16) && (buf.len < 18 || memcmp(buf.data, "earlier value=1 1\n", 18) != 0))
        abort();
    gw_buf_free(&buf);
    return 0;
}
