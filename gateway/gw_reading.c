#include "gw_reading.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"

struct gw_reading *gw_reading_new(const char *device_id, enum gw_channel channel, int64_t ts_ns)
{
    struct gw_reading *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->device_id = strdup(device_id);
    if (!r->device_id) {
        free(r);
        return NULL;
    }
    r->channel = channel;
    r->ts_ns = ts_ns;
    r->refs = 1;
    return r;
}

void gw_reading_ref(struct gw_reading *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
}

static void value_clear(struct gw_value *v)
{
    if (v->type == GW_VALUE_STRING)
        free(v->u.string);
}

void gw_reading_unref(struct gw_reading *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < r->n_fields; i++)
        gw_field_clear(&r->fields[i]);
    free(r->fields);
    free(r->device_id);
    free(r);
}

void gw_field_clear(struct gw_field *field)
{
    free(field->name);
    value_clear(&field->value);
}

const struct gw_field *gw_reading_field(const struct gw_reading *r, const char *name)
{
    for (size_t i = 0; i < r->n_fields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return &r->fields[i];
    return NULL;
}

/* Takes ownership of value (its string, if any) on success only. */
static int add_value(struct gw_reading *r, const char *name, struct gw_value value)
{
    struct gw_field *f = (struct gw_field *)gw_reading_field(r, name);

    if (f) {
        value_clear(&f->value);
        f->value = value;
        return 0;
    }
    if (r->n_fields == r->cap_fields) {
        size_t cap = r->cap_fields ? r->cap_fields * 2 : 8;
        struct gw_field *fields = realloc(r->fields, cap * sizeof(*fields));
        if (!fields)
            return -ENOMEM;
        r->fields = fields;
        r->cap_fields = cap;
    }
    f = &r->fields[r->n_fields];
    f->name = strdup(name);
    if (!f->name)
        return -ENOMEM;
    f->value = value;
    r->n_fields++;
    return 0;
}

int gw_reading_add_number(struct gw_reading *r, const char *name, double v)
{
    return add_value(r, name, (struct gw_value){ .type = GW_VALUE_NUMBER, .u.number = v });
}

int gw_reading_add_integer(struct gw_reading *r, const char *name, int64_t v)
{
    return add_value(r, name, (struct gw_value){ .type = GW_VALUE_INTEGER, .u.integer = v });
}

int gw_reading_add_bool(struct gw_reading *r, const char *name, bool v)
{
    return add_value(r, name, (struct gw_value){ .type = GW_VALUE_BOOL, .u.boolean = v });
}

int gw_reading_add_string(struct gw_reading *r, const char *name, const char *v)
{
    struct gw_value value = { .type = GW_VALUE_STRING, .u.string = strdup(v) };

    if (!value.u.string)
        return -ENOMEM;
    if (add_value(r, name, value) < 0) {
        free(value.u.string);
        return -ENOMEM;
    }
    return 0;
}

const char *gw_channel_name(enum gw_channel channel)
{
    switch (channel) {
    case GW_CHANNEL_TELEMETRY:
        return "telemetry";
    case GW_CHANNEL_EVENT:
        return "event";
    case GW_CHANNEL_STATUS:
        return "status";
    }
    return "unknown";
}

/* Record layout, version 1, all integers little-endian:
 *   u8 version, u8 channel, u8 flags (bit 0: ts from device), i64 ts_ns,
 *   u16 id length, id, u16 field count, then per field:
 *   u8 type, u16 name length, name, value (f64 | i64 | u8 | u32 length + bytes).
 * The version byte lets a newer gateway read an older journal. */
#define RECORD_VERSION 1

static int put_bytes(struct gw_buf *b, const void *p, size_t n)
{
    return gw_buf_append(b, p, n);
}

static int put_uint(struct gw_buf *b, uint64_t v, size_t n)
{
    unsigned char bytes[8];

    for (size_t i = 0; i < n; i++)
        bytes[i] = (unsigned char)(v >> (8 * i));
    return put_bytes(b, bytes, n);
}

static int put_string(struct gw_buf *b, const char *s, size_t width)
{
    size_t n = strlen(s);

    if (n >= ((size_t)1 << (8 * width)))
        return -EINVAL;
    if (put_uint(b, n, width) < 0)
        return -ENOMEM;
    return put_bytes(b, s, n);
}

int gw_reading_encode(const struct gw_reading *r, struct gw_buf *buf)
{
    size_t start = buf->len;
    int rc = 0;

    if (r->n_fields > 0xffff) {
        rc = -EINVAL;
        goto out;
    }
    if (put_uint(buf, RECORD_VERSION, 1) < 0 || put_uint(buf, (uint64_t)r->channel, 1) < 0 ||
        put_uint(buf, r->ts_from_device ? 1 : 0, 1) < 0 ||
        put_uint(buf, (uint64_t)r->ts_ns, 8) < 0 || put_string(buf, r->device_id, 2) < 0 ||
        put_uint(buf, r->n_fields, 2) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r->n_fields && rc == 0; i++) {
        const struct gw_field *f = &r->fields[i];
        uint64_t bits;

        if (put_uint(buf, (uint64_t)f->value.type, 1) < 0 || put_string(buf, f->name, 2) < 0) {
            rc = -ENOMEM;
            break;
        }
        switch (f->value.type) {
        case GW_VALUE_NUMBER:
            memcpy(&bits, &f->value.u.number, sizeof(bits));
            rc = put_uint(buf, bits, 8);
            break;
        case GW_VALUE_INTEGER:
            rc = put_uint(buf, (uint64_t)f->value.u.integer, 8);
            break;
        case GW_VALUE_BOOL:
            rc = put_uint(buf, f->value.u.boolean ? 1 : 0, 1);
            break;
        case GW_VALUE_STRING:
            rc = put_string(buf, f->value.u.string, 4);
            break;
        }
    }
out:
    if (rc < 0)
        gw_buf_truncate(buf, start);
    return rc;
}

struct reader {
    const unsigned char *p;
    const unsigned char *end;
    bool bad;
};

static uint64_t get_uint(struct reader *rd, size_t n)
{
    uint64_t v = 0;

    if (rd->bad || (size_t)(rd->end - rd->p) < n) {
        rd->bad = true;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)rd->p[i] << (8 * i);
    rd->p += n;
    return v;
}

/* A malloc'd NUL-terminated copy; strings with a NUL inside are refused. */
static char *get_string(struct reader *rd, size_t width)
{
    uint64_t n = get_uint(rd, width);
    char *s;

    if (rd->bad || (uint64_t)(rd->end - rd->p) < n || memchr(rd->p, '\0', (size_t)n)) {
        rd->bad = true;
        return NULL;
    }
    s = strndup((const char *)rd->p, (size_t)n);
    if (!s)
        rd->bad = true;
    rd->p += n;
    return s;
}

struct gw_reading *gw_reading_decode(const void *data, size_t len)
{
    return gw_reading_decode_as(data, len, NULL);
}

struct gw_reading *gw_reading_decode_as(const void *data, size_t len, const char *device_id)
{
    struct reader rd = { data, (const unsigned char *)data + len, false };
    struct gw_reading *r = NULL;
    uint64_t channel, flags, n_fields;
    int64_t ts_ns;
    char *id = NULL;

    if (get_uint(&rd, 1) != RECORD_VERSION)
        return NULL;
    channel = get_uint(&rd, 1);
    flags = get_uint(&rd, 1);
    ts_ns = (int64_t)get_uint(&rd, 8);
    id = get_string(&rd, 2);
    n_fields = get_uint(&rd, 2);
    if (rd.bad || channel > GW_CHANNEL_STATUS)
        goto fail;
    r = gw_reading_new(device_id ? device_id : id, (enum gw_channel)channel, ts_ns);
    if (!r)
        goto fail;
    r->ts_from_device = flags & 1;
    for (uint64_t i = 0; i < n_fields; i++) {
        uint64_t type = get_uint(&rd, 1), bits;
        char *name = get_string(&rd, 2), *string;
        double number;
        int rc = -EINVAL;

        if (rd.bad) {
            free(name);
            goto fail;
        }
        switch (type) {
        case GW_VALUE_NUMBER:
            bits = get_uint(&rd, 8);
            memcpy(&number, &bits, sizeof(number));
            rc = rd.bad ? -EINVAL : gw_reading_add_number(r, name, number);
            break;
        case GW_VALUE_INTEGER:
            bits = get_uint(&rd, 8);
            rc = rd.bad ? -EINVAL : gw_reading_add_integer(r, name, (int64_t)bits);
            break;
        case GW_VALUE_BOOL:
            bits = get_uint(&rd, 1);
            rc = rd.bad || bits > 1 ? -EINVAL : gw_reading_add_bool(r, name, bits == 1);
            break;
        case GW_VALUE_STRING:
            string = get_string(&rd, 4);
            rc = rd.bad ? -EINVAL : gw_reading_add_string(r, name, string);
            free(string);
            break;
        }
        free(name);
        if (rc < 0)
            goto fail;
    }
    if (rd.p != rd.end)
        goto fail;
    free(id);
    return r;
fail:
    free(id);
    gw_reading_unref(r);
    return NULL;
}

int gw_reading_record_device(const void *data, size_t len, const char **ret_id, size_t *ret_len)
{
    struct reader rd = { data, (const unsigned char *)data + len, false };
    uint64_t id_len;

    if (get_uint(&rd, 1) != RECORD_VERSION)
        return -EINVAL;
    get_uint(&rd, 1);      /* channel */
    get_uint(&rd, 1);      /* flags */
    get_uint(&rd, 8);      /* ts */
    id_len = get_uint(&rd, 2);
    if (rd.bad || (uint64_t)(rd.end - rd.p) < id_len)
        return -EINVAL;
    *ret_id = (const char *)rd.p;
    *ret_len = (size_t)id_len;
    return 0;
}

/* The header before the id: version, channel, flags, time. */
#define RECORD_ID_AT (1 + 1 + 1 + 8)

ssize_t gw_reading_record_without_device(const void *data, size_t len, void *out)
{
    const char *id;
    size_t id_len, rest;

    if (gw_reading_record_device(data, len, &id, &id_len) < 0)
        return -EINVAL;
    rest = len - (size_t)(id - (const char *)data) - id_len;
    memcpy(out, data, RECORD_ID_AT);
    memset((unsigned char *)out + RECORD_ID_AT, 0, 2); /* an empty id */
    memcpy((unsigned char *)out + RECORD_ID_AT + 2, id + id_len, rest);
    return (ssize_t)(RECORD_ID_AT + 2 + rest);
}

/* ---- JSON (gw_reading_to_json) ---- */

static int json_number(struct gw_buf *b, double v)
{
    char text[40];

    if (!isfinite(v))
        return gw_buf_puts(b, "null");
    snprintf(text, sizeof(text), "%.15g", v);
    if (strtod(text, NULL) != v)
        snprintf(text, sizeof(text), "%.17g", v);
    /* "3" would come back as an integer from most JSON readers. */
    if (text[strspn(text, "-0123456789")] == '\0')
        return gw_buf_printf(b, "%s.0", text);
    return gw_buf_puts(b, text);
}

static int json_value(struct gw_buf *b, const struct gw_value *v)
{
    switch (v->type) {
    case GW_VALUE_NUMBER:
        return json_number(b, v->u.number);
    case GW_VALUE_INTEGER:
        return gw_buf_printf(b, "%" PRId64, v->u.integer);
    case GW_VALUE_BOOL:
        return gw_buf_puts(b, v->u.boolean ? "true" : "false");
    case GW_VALUE_STRING:
        return gw_buf_json_string(b, v->u.string);
    }
    return gw_buf_puts(b, "null");
}

int gw_reading_to_json(const struct gw_reading *r, struct gw_buf *out)
{
    size_t start = out->len;
    /* Rounded down, also before 1970. */
    int64_t ms = r->ts_ns / 1000000 - (r->ts_ns % 1000000 < 0 ? 1 : 0);
    bool failed;

    failed = gw_buf_puts(out, "{\"device\":") < 0 || gw_buf_json_string(out, r->device_id) < 0 ||
             gw_buf_printf(out, ",\"channel\":\"%s\",\"ts\":%" PRId64 ",\"fields\":{",
                           gw_channel_name(r->channel), ms) < 0;
    for (size_t i = 0; i < r->n_fields && !failed; i++) {
        const struct gw_field *f = &r->fields[i];

        failed = (i > 0 && gw_buf_putc(out, ',') < 0) || gw_buf_json_string(out, f->name) < 0 ||
                 gw_buf_putc(out, ':') < 0 || json_value(out, &f->value) < 0;
    }
    if (failed || gw_buf_puts(out, "}}") < 0) {
        gw_buf_truncate(out, start);
        return -ENOMEM;
    }
    return 0;
}
