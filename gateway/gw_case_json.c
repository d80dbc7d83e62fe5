#include "gw_case_json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_domain.h"
#include "store.h"

/* One JSON object being written. Errors are sticky, so the field lists
 * below read as the documents they write; the caller checks once and cuts
 * the buffer back to where the object began. */
struct writer {
    struct gw_buf *b;
    bool failed;
    bool first; /* no member written yet in the innermost object */
};

static void check(struct writer *w, int r)
{
    if (r < 0)
        w->failed = true;
}

static void open_object(struct writer *w)
{
    check(w, gw_buf_putc(w->b, '{'));
    w->first = true;
}

static void close_object(struct writer *w)
{
    check(w, gw_buf_putc(w->b, '}'));
    w->first = false;
}

static void key(struct writer *w, const char *name)
{
    if (!w->first)
        check(w, gw_buf_putc(w->b, ','));
    w->first = false;
    /* Keys are this file's literals: nothing to escape. */
    check(w, gw_buf_printf(w->b, "\"%s\":", name));
}

static void put_null(struct writer *w, const char *name)
{
    key(w, name);
    check(w, gw_buf_puts(w->b, "null"));
}

static void put_string(struct writer *w, const char *name, const char *value)
{
    if (!value) {
        put_null(w, name);
        return;
    }
    key(w, name);
    check(w, gw_buf_json_string(w->b, value));
}

static void put_int(struct writer *w, const char *name, int64_t value)
{
    key(w, name);
    check(w, gw_buf_printf(w->b, "%" PRId64, value));
}

/* 0 stands for "none" in the store (an id, a score): null here. */
static void put_int_or_null(struct writer *w, const char *name, int64_t value)
{
    if (value == 0)
        put_null(w, name);
    else
        put_int(w, name, value);
}

static void put_bool(struct writer *w, const char *name, bool value)
{
    key(w, name);
    check(w, gw_buf_puts(w->b, value ? "true" : "false"));
}

/* The fewest digits that read back as the same double; JSON has no NaN. */
static void put_double(struct writer *w, const char *name, double value)
{
    char text[40];

    if (!isfinite(value)) {
        put_null(w, name);
        return;
    }
    snprintf(text, sizeof(text), "%.15g", value);
    if (strtod(text, NULL) != value)
        snprintf(text, sizeof(text), "%.17g", value);
    key(w, name);
    check(w, gw_buf_puts(w->b, text));
}

static void put_time(struct writer *w, const char *name, int64_t ns)
{
    key(w, name);
    check(w, gw_case_json_time(w->b, ns));
}

/* Stored JSON (a reading as gw_reading_to_json wrote it) goes in as it
 * is: gridgate wrote it and it is valid JSON by construction, so parsing
 * it again on every read would only cost. */
static void put_raw_json(struct writer *w, const char *name, const char *json)
{
    if (!json || !*json) {
        put_null(w, name);
        return;
    }
    key(w, name);
    check(w, gw_buf_puts(w->b, json));
}

static const char *escalation_level(int escalation)
{
    if (escalation <= 0)
        return "community";
    return escalation == 1 ? "street" : "district";
}

/* Ends a document: on failure the buffer goes back to where it began. */
static int finish(struct writer *w, size_t start)
{
    if (!w->failed)
        return 0;
    gw_buf_truncate(w->b, start);
    return -ENOMEM;
}

int gw_case_json_time(struct gw_buf *out, int64_t ns)
{
    /* Rounded down, also before 1970. */
    int64_t ms = ns / 1000000 - (ns % 1000000 < 0 ? 1 : 0);
    int64_t secs = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
    time_t t = (time_t)secs;
    struct tm tm;

    if (ns == 0)
        return gw_buf_puts(out, "null");
    if (!gmtime_r(&t, &tm))
        return gw_buf_puts(out, "null");
    return gw_buf_printf(out, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         (int)(ms - secs * 1000));
}

static void put_location(struct writer *w, const struct store_case *c)
{
    if (!c->has_location) {
        put_null(w, "location");
        return;
    }
    key(w, "location");
    open_object(w);
    put_double(w, "lat", c->lat);
    put_double(w, "lon", c->lon);
    close_object(w);
}

static void put_case(struct writer *w, const struct store_case *c, int with_trigger)
{
    open_object(w);
    put_int(w, "id", c->id);
    put_int(w, "version", c->version);
    put_int_or_null(w, "incident_id", c->incident_id);
    put_string(w, "rule", c->rule);
    put_string(w, "subject", c->subject);
    put_string(w, "category", c->category);
    put_string(w, "severity", gw_severity_name(c->severity));
    put_string(w, "state", gw_case_state_name(c->state));
    put_string(w, "title", c->title);
    put_string(w, "detail", c->detail);
    put_string(w, "grid_id", c->grid_id);
    put_string(w, "community_id", c->community_id);
    put_string(w, "street_id", c->street_id);
    put_string(w, "device_id", c->device_id);
    put_string(w, "assignee_role", c->has_assignee_role ? gw_role_name(c->assignee_role) : NULL);
    put_string(w, "assignee", c->assignee);
    put_int(w, "escalation", c->escalation);
    put_string(w, "escalation_level", escalation_level(c->escalation));
    put_bool(w, "overdue", c->overdue);
    put_int(w, "count", c->count);
    put_int(w, "rework_count", c->rework_count);
    put_int(w, "return_count", c->return_count);
    put_int_or_null(w, "score", c->score);
    put_string(w, "reporter", c->reporter);
    put_string(w, "reported_by", c->reported_by);
    put_location(w, c);
    put_time(w, "first_seen_at", c->first_seen_at);
    put_time(w, "last_seen_at", c->last_seen_at);
    put_time(w, "opened_at", c->opened_at);
    put_time(w, "updated_at", c->updated_at);
    put_time(w, "dispatched_at", c->dispatched_at);
    put_time(w, "first_dispatched_at", c->first_dispatched_at);
    put_time(w, "state_since", c->state_since);
    put_time(w, "deadline_at", c->deadline_at);
    put_time(w, "closed_at", c->closed_at);
    put_time(w, "cleared_at", c->cleared_at);
    put_string(w, "rule_file", c->rule_file);
    put_string(w, "rule_hash", c->rule_hash);
    if (with_trigger)
        put_raw_json(w, "trigger", c->trigger);
    close_object(w);
}

int gw_case_json(struct gw_buf *out, const struct store_case *c, int with_trigger)
{
    struct writer w = { .b = out };
    size_t start = out->len;

    put_case(&w, c, with_trigger);
    return finish(&w, start);
}

static void put_history_row(struct writer *w, const struct store_history *h)
{
    open_object(w);
    put_time(w, "at", h->at);
    put_string(w, "actor", h->actor);
    put_string(w, "from", h->has_from ? gw_case_state_name(h->from_state) : NULL);
    put_string(w, "to", gw_case_state_name(h->to_state));
    put_string(w, "note", h->note);
    put_string(w, "rule_hash", h->rule_hash);
    put_raw_json(w, "trigger", h->trigger);
    close_object(w);
}

int gw_case_history_json(struct gw_buf *out, const struct store_history *rows, size_t n)
{
    struct writer w = { .b = out };
    size_t start = out->len;

    check(&w, gw_buf_putc(out, '['));
    for (size_t i = 0; i < n && !w.failed; i++) {
        if (i > 0)
            check(&w, gw_buf_putc(out, ','));
        put_history_row(&w, &rows[i]);
    }
    check(&w, gw_buf_putc(out, ']'));
    return finish(&w, start);
}

int gw_case_event_json(struct gw_buf *out, const struct gw_case_event *event)
{
    struct writer w = { .b = out };
    size_t start = out->len;

    open_object(&w);
    put_string(&w, "event", event->kind);
    put_time(&w, "at", event->ts_ns);
    put_string(&w, "actor", event->actor);
    put_string(&w, "from", event->has_from ? gw_case_state_name(event->from) : NULL);
    put_string(&w, "note", event->note);
    key(&w, "case");
    put_case(&w, event->c, 0);
    close_object(&w);
    return finish(&w, start);
}
