#include "gw_reading.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
