#include "gw_pipeline.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_case_json.h"
#include "gw_cases.h"
#include "gw_casesvc.h"
#include "gw_config.h"
#include "gw_duration.h"
#include "gw_journal.h"
#include "gw_last.h"
#include "gw_log.h"
#include "gw_queue.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "influx_line.h"
#include "influx_writer.h"
#include "payload.h"
#include "rule_engine.h"
#include "rule_tools.h"

#define MAX_ADAPTERS 8
/* How long a stop waits for InfluxDB to take what is queued. */
#define INFLUX_DRAIN_MS 10000
/* At a stop the rule workers go on reading the journal this long at most;
 * what they have not read waits there for the next start. */
#define RULES_DRAIN_MS 10000
/* Records a consumer handles between two commits of its position. */
#define COMMIT_EVERY 256
/* Lines the InfluxDB feeder gathers before handing them to the writer. */
#define FEED_BATCH_LINES 1000
/* Quarantined devices at most (district.unknown_devices: quarantine). */
#define QUARANTINE_MAX 10000
/* Best-effort lines (health, case figures) waiting for the feeder. */
#define SIDE_QUEUE_LINES 4096
/* What the feeder reads from the outbox at once. */
#define OUTBOX_READ_ROWS 64
#define OUTBOX_READ_BYTES ((size_t)1 << 20)
/* The feeder looks at the outbox at least this often, whatever the case
 * service says it wrote. */
#define OUTBOX_POLL_NS ((int64_t)1000000000)
/* Lines handed to the writer and not answered yet, at most, in writer
 * batches: the journal and the outbox are the buffers of an outage, not
 * the writer's memory (and a crash replays no more than this). */
#define IN_FLIGHT_BATCHES 4
/* The window of the case_rates figure. */
#define RATES_WINDOW_NS ((int64_t)30 * 86400 * 1000000000)

/* How often a rule worker looks for silent devices. */
#define SILENCE_SCAN_MS 5000
static const char *const CONSUMER_INFLUX = "influx";

/* One rule worker: its own Lua state, the devices of its shard, and its
 * own journal position. Its case actions go to the case service. */
struct rule_worker {
    struct gw_pipeline *p;
    unsigned index;
    char consumer[24];
    struct gw_journal_cursor *cursor;
    struct rule_engine *engine;
    struct rule_model *pending; /* a reload's checked rules, taken between readings */
    struct rule_actions actions;
    struct gw_buf lines;
    const struct gw_device **devices; /* this shard's, for deadman scans */
    size_t n_devices;
    int64_t next_scan_ns;
    /* Journal positions: the last record read, the last committed, and
     * the record of the last action handed to the case service. */
    uint64_t read_seq;
    uint64_t committed_seq;
    uint64_t submitted_seq;
    pthread_t thread;
    bool running;
};

/* A run of lines handed to the writer and where they came from: the last
 * journal record among them, or the outbox row they are (0: neither,
 * best-effort lines from the side queue). Once the writer's lines_done
 * passes lines_end, the journal position is committed and the outbox rows
 * up to the id deleted: one mark, two kinds of position. */
struct feed_mark {
    uint64_t lines_end; /* the writer's line count once these are done */
    uint64_t seq;
    int64_t outbox_id;
};

struct gw_pipeline {
    const struct gw_config *cfg;
    struct gw_registry *reg;
    struct gw_last *last; /* each device's newest reading, for the API */
    struct payload_limits limits;
    bool quarantine;

    struct gw_journal *journal;

    /* Rule workers: journal cursors "rules-N" -> Lua -> cases. */
    struct rule_worker *workers;
    unsigned n_workers;
    struct rule_limits rule_limits;
    struct gw_duration_table *heartbeats;
    int64_t started_ns;
    pthread_mutex_t reload_lock;
    /* The main thread's own store connection: devices' last-seen times. */
    struct gw_cases *seen_store;

    /* The one writer of cases. Its events (on its own thread) become
     * case_event lines in its outbox (format_case_event, inside its
     * transactions), then MQTT notices and log lines through the buffers
     * below, which only that thread touches. */
    struct gw_casesvc *casesvc;
    struct gw_buf notice;
    struct gw_buf notice_topic;
    /* The adapter that publishes notices: set once the adapters run,
     * cleared before they stop; notify_lock keeps a publish from racing
     * the adapter's stop. */
    pthread_mutex_t notify_lock;
    struct gw_adapter *notifier;

    /* The InfluxDB feeder: journal cursor "influx", the outbox (through
     * its own store connection) and the side queue -> line protocol ->
     * writer; it commits journal positions and deletes outbox rows once
     * InfluxDB has answered them. */
    struct influx_writer *influx;
    struct gw_journal_cursor *influx_cursor;
    struct gw_cases *outbox_store; /* the feeder thread's */
    struct gw_queue *side_lines;   /* malloc'd char* of whole lines: best effort */
    pthread_t feed_thread;
    bool feed_running;
    struct feed_mark *marks; /* ring of what the writer has not answered yet */
    size_t marks_cap, marks_head, marks_count;
    uint64_t lines_submitted;
    uint64_t in_flight_max;
    uint64_t feed_last_seq; /* the last journal record the feeder read */
    int64_t outbox_sent_id; /* the last outbox row handed to the writer */
    int64_t outbox_done_id; /* answered: to delete up to it */
    int64_t outbox_deleted_id;
    uint64_t outbox_seen_rows; /* the case service's row count at the last read */
    int64_t outbox_next_poll;
    bool outbox_more; /* the last read gave rows: there may be more */
    uint64_t in_flight_bytes;
    /* The outbox's depth without a query (outbox_depth): its rows at the
     * feeder's start less the case service's count then, and the rows the
     * feeder deleted since. */
    int64_t outbox_base;
    uint64_t outbox_deleted_rows;

    /* The case service's thread: the last case_event timestamp, so two
     * events never share one point (InfluxDB keeps one per series and
     * time). */
    int64_t last_event_ts;

    /* The main thread's reader for the case figures and the outbox's
     * depth, and the (street, category) pairs of the last case_open
     * report ("street\ncategory"), to write their zeros. */
    struct gw_cases *report_store;
    char **open_keys;
    size_t n_open_keys;

    struct gw_adapter adapters[MAX_ADAPTERS];
    size_t n_adapters;
    int stopping;
    int64_t rules_drain_until; /* monotonic ns; set before stopping */

    struct gw_pipeline_stats stats; /* updated with __atomic builtins */
};

static struct gw_log_limit ingest_log_limit = GW_LOG_LIMIT_INIT(5.0, 20.0);
static struct gw_log_limit worker_log_limit = GW_LOG_LIMIT_INIT(5.0, 20.0);
static struct gw_log_limit journal_log_limit = GW_LOG_LIMIT_INIT(0.2, 3.0);

static void count(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static bool stopping(const struct gw_pipeline *p)
{
    return __atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE);
}

/* ---- ingest: adapters' threads ---------------------------------------- */

static enum gw_ingest_result decode_failure(int r)
{
    switch (r) {
    case -EMSGSIZE:
        return GW_INGEST_TOO_LARGE;
    case -EPROTONOSUPPORT:
        return GW_INGEST_UNSUPPORTED;
    default:
        return GW_INGEST_BAD_PAYLOAD;
    }
}

static void count_rejection(struct gw_pipeline *p, enum gw_ingest_result result)
{
    switch (result) {
    case GW_INGEST_BAD_PAYLOAD:
        count(&p->stats.bad_payload, 1);
        break;
    case GW_INGEST_UNKNOWN_DEVICE:
        count(&p->stats.unknown_device, 1);
        break;
    case GW_INGEST_TOO_LARGE:
        count(&p->stats.too_large, 1);
        break;
    case GW_INGEST_UNSUPPORTED:
        count(&p->stats.unsupported, 1);
        break;
    case GW_INGEST_OK:
    case GW_INGEST_SHUTDOWN:
        break;
    }
}

static const struct gw_device *resolve_device(struct gw_pipeline *p, const char *device_id)
{
    const struct gw_device *device = gw_registry_device(p->reg, device_id);

    if (!device && p->quarantine) {
        device = gw_registry_quarantine(p->reg, device_id);
        if (device && device->last_seen_ns == 0)
            gw_log_limited(&ingest_log_limit, GW_LOG_WARN, "pipeline",
                           "device %s is not in the devices file: quarantined in grid %s",
                           device_id, GW_UNASSIGNED_GRID);
    }
    return device;
}

/* Appends the record, waiting while the journal is full (back-pressure:
 * the adapter holds its message unacknowledged meanwhile) and retrying
 * while the file system refuses (a full disk: the broker keeps the rest).
 * Gives up only when the gateway stops. */
static int journal_append(struct gw_pipeline *p, const struct gw_buf *record, const char *device_id)
{
    int delay_ms = 100;

    for (;;) {
        int r = gw_journal_append(p->journal, record->data, record->len, NULL);

        if (r == 0 || r == -ESHUTDOWN || r == -EMSGSIZE)
            return r;
        count(&p->stats.journal_errors, 1);
        gw_log_limited(&journal_log_limit, GW_LOG_ERROR, "pipeline",
                       "device %s: the journal cannot take the reading: %s; holding it and "
                       "retrying",
                       device_id, strerror(-r));
        if (stopping(p))
            return -ESHUTDOWN;
        usleep((useconds_t)delay_ms * 1000);
        delay_ms = delay_ms >= 2000 ? 5000 : delay_ms * 2;
    }
}

enum gw_ingest_result gw_pipeline_ingest(void *pipeline, const struct gw_message *msg,
                                         char *reason, size_t reason_len)
{
    struct gw_pipeline *p = pipeline;
    const struct gw_device *device;
    struct gw_reading *reading = NULL;
    struct gw_buf record = GW_BUF_INIT;
    enum gw_ingest_result result = GW_INGEST_OK;
    int64_t now = gw_now_ns();
    int r;

    count(&p->stats.received, 1);
    reason[0] = '\0';
    device = resolve_device(p, msg->device_id);
    if (!device) {
        snprintf(reason, reason_len, p->quarantine ? "unknown device, and the quarantine is full"
                                                   : "device is not in the district's devices file");
        result = GW_INGEST_UNKNOWN_DEVICE;
        goto out;
    }
    reading = gw_reading_new(msg->device_id, msg->channel, now);
    if (!reading) {
        /* Refusing would make the broker redeliver into the same shortage;
         * the reading is reported as bad and counted instead. */
        snprintf(reason, reason_len, "out of memory");
        result = GW_INGEST_BAD_PAYLOAD;
        goto out;
    }
    reading->device = device;
    if (msg->channel == GW_CHANNEL_STATUS)
        r = payload_decode_status(msg->payload, msg->len, reading, reason, reason_len);
    else
        r = payload_decode(msg->format, msg->payload, msg->len, &p->limits, reading, reason,
                           reason_len);
    if (r < 0) {
        result = decode_failure(r);
        goto out;
    }

    if (msg->channel == GW_CHANNEL_STATUS) {
        const struct gw_field *status = gw_reading_field(reading, "status");
        bool online = status && strcmp(status->value.u.string, "online") == 0;

        gw_device_set_online(device, online, now);
        /* An "offline" (often the broker's Last Will) is not the device
         * speaking: it must not restart the deadman's clock. */
        if (online)
            gw_device_touch(device, now);
    } else {
        gw_device_touch(device, now);
    }
    if (gw_reading_encode(reading, &record) < 0) {
        snprintf(reason, reason_len, "reading cannot be recorded (out of memory or too large)");
        result = GW_INGEST_TOO_LARGE;
        goto out;
    }
    r = journal_append(p, &record, msg->device_id);
    if (r == -EMSGSIZE) {
        snprintf(reason, reason_len, "reading too large for a journal segment");
        result = GW_INGEST_TOO_LARGE;
        goto out;
    }
    if (r < 0) {
        snprintf(reason, reason_len, "gateway is stopping");
        result = GW_INGEST_SHUTDOWN;
        goto out;
    }
    count(&p->stats.accepted, 1);

out:
    if (result != GW_INGEST_OK && result != GW_INGEST_SHUTDOWN) {
        count_rejection(p, result);
        if (device)
            gw_device_count_rejected(device);
        gw_log_limited(&ingest_log_limit, GW_LOG_WARN, "pipeline", "device %s: %s %s: %s",
                       msg->device_id, gw_channel_name(msg->channel),
                       gw_ingest_result_name(result), reason);
    }
    gw_buf_free(&record);
    gw_reading_unref(reading);
    return result;
}

/* A journal record as a reading with its device resolved. Records that
 * cannot be decoded (a journal written by a newer gateway) or whose device
 * is gone (the devices file changed between runs) give NULL, counted. */
static struct gw_reading *resolve_record(struct gw_pipeline *p, const void *data, size_t len,
                                         uint64_t seq)
{
    struct gw_reading *reading = gw_reading_decode(data, len);

    if (reading) {
        reading->device = resolve_device(p, reading->device_id);
        if (reading->device)
            return reading;
        gw_reading_unref(reading);
    }
    count(&p->stats.records_skipped, 1);
    gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                   "journal record %llu skipped: undecodable, or its device is no longer known",
                   (unsigned long long)seq);
    return NULL;
}

/* The next record, read within timeout_ms, as resolve_record() makes it:
 * 0 with *ret_reading (NULL for a skipped record), or the read's error. */
static int next_reading(struct gw_pipeline *p, struct gw_journal_cursor *cursor, int timeout_ms,
                        struct gw_reading **ret_reading, uint64_t *ret_seq)
{
    const void *data;
    size_t len;
    int r = gw_journal_read(cursor, timeout_ms, &data, &len, ret_seq);

    *ret_reading = r < 0 ? NULL : resolve_record(p, data, len, *ret_seq);
    return r < 0 ? r : 0;
}

/* ---- the rule worker ---------------------------------------------------- */

static size_t count_lines(const char *text, size_t len)
{
    size_t n = 0;

    for (const char *c = text; (c = memchr(c, '\n', len - (size_t)(c - text))); c++)
        n++;
    return n;
}

/* Best-effort lines for InfluxDB (gateway health, case figures: each
 * report supersedes the last) go through the feeder too, so that it alone
 * talks to the writer. They never wait for it: while InfluxDB is down and
 * the side queue is full, they are dropped and counted. What must not be
 * lost takes other ways: readings the journal, case events and rules'
 * emits the outbox. */
static void send_side_lines(struct gw_pipeline *p, struct gw_buf *lines)
{
    char *copy;
    int r;

    if (!p->influx || lines->len == 0) {
        gw_buf_reset(lines); /* InfluxDB off: nothing may pile up */
        return;
    }
    copy = strdup(lines->data);
    r = copy ? gw_queue_try_push(p->side_lines, copy) : -ENOMEM;
    if (r < 0) {
        free(copy);
        count(&p->stats.side_dropped, count_lines(lines->data, lines->len));
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "lines for InfluxDB lost: %s",
                       r == -EAGAIN ? "InfluxDB is behind and the side queue is full"
                                    : r == -ENOMEM ? "out of memory" : "stopping");
    }
    gw_buf_reset(lines);
}

/* ---- case events: the case service's thread ----------------------------- */

static bool kind_is(const struct gw_case_event *ev, const char *kind)
{
    return strcmp(ev->kind, kind) == 0;
}

static void log_case_event(const struct gw_case_event *ev)
{
    const struct store_case *c = ev->c;

    gw_info("cases", "case %lld %s by %s: %s (%s, %s) grid %s, state %s%s%s%s", (long long)c->id,
            ev->kind, ev->actor ? ev->actor : "?", c->title ? c->title : "",
            c->category ? c->category : "", gw_severity_name(c->severity),
            c->grid_id ? c->grid_id : "?", gw_case_state_name(c->state),
            c->has_assignee_role ? ", to " : "",
            c->has_assignee_role ? gw_role_name(c->assignee_role) : "",
            c->overdue ? ", overdue" : "");
}

/* Where a case is: the report's location, else its device's position in
 * the registry; false when neither is known. */
static bool case_position(const struct gw_pipeline *p, const struct store_case *c, double *ret_lat,
                          double *ret_lon)
{
    const struct gw_device *d;

    if (c->has_location && isfinite(c->lat) && isfinite(c->lon)) {
        *ret_lat = c->lat;
        *ret_lon = c->lon;
        return true;
    }
    d = c->device_id ? gw_registry_device(p->reg, c->device_id) : NULL;
    if (!d || !isfinite(d->lat) || !isfinite(d->lon))
        return false;
    *ret_lat = d->lat;
    *ret_lon = d->lon;
    return true;
}

/* The case service's formatter (gw_case_format_fn), inside the batch: the
 * case_event point (issue 5 spec, "InfluxDB case_event"): tags grid,
 * community, street, rule ("report" for a staff or citizen report),
 * category, severity, state; fields case_id, title, escalation, event,
 * count, actor, role (when assigned), overdue, and lat/lon (issue 6) when
 * the case's place is known. Each point gets a timestamp of its own (a
 * nanosecond after the previous one when the clock has not moved), since
 * two events of one series at one time would be one point in InfluxDB. */
static int format_case_event(const struct gw_case_event *ev, struct gw_buf *lines, void *userdata)
{
    struct gw_pipeline *p = userdata;
    const struct store_case *c = ev->c;
    int64_t ts = ev->ts_ns > p->last_event_ts ? ev->ts_ns : p->last_event_ts + 1;
    struct influx_line line;
    double lat, lon;
    int r;

    influx_line_begin(&line, lines, "case_event");
    influx_line_tag(&line, "category", c->category);
    influx_line_tag(&line, "community", c->community_id);
    influx_line_tag(&line, "grid", c->grid_id);
    influx_line_tag(&line, "rule", c->rule ? c->rule : "report");
    influx_line_tag(&line, "severity", gw_severity_name(c->severity));
    influx_line_tag(&line, "state", gw_case_state_name(c->state));
    influx_line_tag(&line, "street", c->street_id);
    influx_line_field_int(&line, "case_id", c->id);
    influx_line_field_string(&line, "title", c->title ? c->title : "");
    influx_line_field_int(&line, "escalation", c->escalation);
    influx_line_field_string(&line, "event", ev->kind);
    influx_line_field_int(&line, "count", c->count);
    influx_line_field_string(&line, "actor", ev->actor ? ev->actor : "");
    if (c->has_assignee_role)
        influx_line_field_string(&line, "role", gw_role_name(c->assignee_role));
    influx_line_field_bool(&line, "overdue", c->overdue);
    if (case_position(p, c, &lat, &lon)) {
        influx_line_field_float(&line, "lat", lat);
        influx_line_field_float(&line, "lon", lon);
    }
    r = influx_line_end(&line, ts);
    if (r == 0)
        p->last_event_ts = ts;
    else if (r != -ENOMEM)
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "case %lld: %s event could not be written as line protocol",
                       (long long)c->id, ev->kind);
    return r;
}

/* cases.notify_topic with every "{grid_id}" replaced. Returns 0, or
 * -EINVAL for a grid id that cannot be part of a topic name. */
static int notice_topic(struct gw_buf *out, const char *pattern, const char *grid_id)
{
    static const char placeholder[] = "{grid_id}";
    const char *at;

    /* Wildcards in a PUBLISH topic make the broker drop the connection. */
    if (strpbrk(grid_id, "+#"))
        return -EINVAL;
    gw_buf_reset(out);
    while ((at = strstr(pattern, placeholder))) {
        if (gw_buf_append(out, pattern, (size_t)(at - pattern)) < 0 ||
            gw_buf_puts(out, grid_id) < 0)
            return -ENOMEM;
        pattern = at + sizeof(placeholder) - 1;
    }
    return gw_buf_puts(out, pattern);
}

/* The MQTT notice on the case's grid topic (QoS 1, not retained), for the
 * grid's handheld terminals. Skipped when notices are off or no adapter
 * publishes (before the adapters start, after they stop). */
static void send_notice(struct gw_pipeline *p, const struct gw_case_event *ev)
{
    const char *pattern = p->cfg->cases.notify_topic;
    int r;

    if (!pattern || !*pattern || !ev->c->grid_id)
        return;
    r = notice_topic(&p->notice_topic, pattern, ev->c->grid_id);
    if (r == 0) {
        gw_buf_reset(&p->notice);
        r = gw_case_event_json(&p->notice, ev);
    }
    if (r == 0) {
        pthread_mutex_lock(&p->notify_lock);
        if (!p->notifier)
            r = 1; /* nobody to publish through: not a failure */
        else
            r = p->notifier->ops->publish(p->notifier, p->notice_topic.data, p->notice.data,
                                          p->notice.len);
        pthread_mutex_unlock(&p->notify_lock);
    }
    if (r == 0) {
        count(&p->stats.notices, 1);
    } else if (r < 0) {
        count(&p->stats.notice_failures, 1);
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "case %lld: %s notice for grid %s not published: %s", (long long)ev->c->id,
                       ev->kind, ev->c->grid_id, strerror(-r));
    }
}

/* The case service's listener: every change, once durable, in order. */
static void on_case_event(const struct gw_case_event *ev, void *userdata)
{
    struct gw_pipeline *p = userdata;

    count(&p->stats.case_events, 1);
    if (kind_is(ev, "opened"))
        count(&p->stats.cases_opened, 1);
    else if (kind_is(ev, "escalated"))
        count(&p->stats.cases_escalated, 1);
    log_case_event(ev);
    send_notice(p, ev);
}

/* ---- the rule worker (continued) ----------------------------------------- */

static void emit_line(struct rule_worker *w, const struct rule_action *a)
{
    struct influx_line line;

    influx_line_begin(&line, &w->lines, a->measurement);
    for (size_t i = 0; i < a->n_tags; i++)
        influx_line_tag(&line, a->tags[i].key, a->tags[i].value);
    for (size_t i = 0; i < a->n_fields; i++)
        influx_line_field(&line, a->fields[i].name, &a->fields[i].value);
    if (influx_line_end(&line, a->ts_ns) < 0)
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "rule %s (%s): emit(\"%s\") is not a valid InfluxDB point", a->rule,
                       a->file, a->measurement);
}

/* Hands a case action to the case service, which takes its contents and
 * a reference on the reading; seq is the journal record it came from. */
static void submit_case_action(struct rule_worker *w, struct rule_action *a,
                               struct gw_reading *reading, uint64_t seq)
{
    struct gw_pipeline *p = w->p;
    int r = gw_casesvc_submit(p->casesvc, w->index, seq, a, reading);

    if (r == 0) {
        w->submitted_seq = seq;
        return;
    }
    count(&p->stats.store_errors, 1);
    gw_log_limited(&worker_log_limit, GW_LOG_ERROR, "pipeline",
                   "rule %s, device %s: the case service refused the action: %s", a->rule,
                   reading->device_id, strerror(-r));
}

/* The reading's emit() lines go to the case service, which writes them to
 * the outbox: durable before the reading counts as done, like its case
 * actions. */
static void submit_emits(struct rule_worker *w, uint64_t seq)
{
    struct gw_pipeline *p = w->p;
    int r;

    if (w->lines.len == 0)
        return;
    if (!p->influx) {
        gw_buf_reset(&w->lines); /* InfluxDB off: nothing may pile up */
        return;
    }
    r = gw_casesvc_submit_lines(p->casesvc, w->index, seq, w->lines.data, w->lines.len);
    if (r == 0) {
        w->submitted_seq = seq;
    } else {
        count(&p->stats.lines_lost, count_lines(w->lines.data, w->lines.len));
        gw_log_limited(&worker_log_limit, GW_LOG_ERROR, "pipeline",
                       "rules' emit() lines for InfluxDB lost: the case service refused them: %s",
                       strerror(-r));
    }
    gw_buf_reset(&w->lines);
}

/* Carries out what the rules asked for: case actions and emits to the
 * case service. A shadow rule's actions are only logged and
 * counted, so a liaison can watch a new rule on live traffic. seq is the
 * journal record the actions come from (for the deadman, the last one
 * read). */
static void apply_actions(struct rule_worker *w, struct gw_reading *reading, uint64_t seq,
                          int failed)
{
    struct gw_pipeline *p = w->p;

    if (failed > 0)
        count(&p->stats.rule_errors, (uint64_t)failed);
    for (size_t i = 0; i < w->actions.n; i++) {
        struct rule_action *a = &w->actions.items[i];

        if (a->shadow) {
            count(&p->stats.shadow_actions, 1);
            gw_info("shadow", "rule %s would %s for %s: %s", a->rule, rule_action_kind_name(a->kind),
                    a->subject ? a->subject : reading->device_id,
                    a->title ? a->title : a->measurement ? a->measurement : "");
            continue;
        }
        if (a->kind == RULE_ACTION_EMIT) {
            emit_line(w, a);
            continue;
        }
        submit_case_action(w, a, reading, seq);
    }
    /* Submitted actions are left zeroed: clearing frees only the rest. */
    rule_actions_clear(&w->actions);
    submit_emits(w, seq);
}

/* record: the journal's bytes of the reading, kept as the device's newest
 * for the API. */
static void run_rules(struct rule_worker *w, struct gw_reading *reading, const void *record,
                      size_t len, uint64_t seq)
{
    int failed;

    if (reading->channel == GW_CHANNEL_TELEMETRY) {
        /* Out of memory: the API shows the reading before. */
        (void)gw_last_put(w->p->last, reading->device, record, len);
        failed = rule_engine_on_reading(w->engine, reading, &w->actions);
    } else {
        failed = rule_engine_on_event(w->engine, reading, &w->actions);
    }
    apply_actions(w, reading, seq, failed);
    count(&w->p->stats.rule_runs, 1);
}

static void commit(struct gw_journal_cursor *cursor, uint64_t seq, const char *consumer)
{
    int r = gw_journal_commit(cursor, seq);

    if (r < 0)
        gw_log_limited(&journal_log_limit, GW_LOG_ERROR, "pipeline",
                       "%s: cannot commit journal position %llu: %s", consumer,
                       (unsigned long long)seq, strerror(-r));
}

/* FNV-1a: the same device always lands on the same worker, so its readings
 * are handled in order and its state in one Lua state, without a lock. */
static unsigned shard_of(const char *id, size_t len, unsigned n_workers)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 16777619u;
    return h % n_workers;
}

/* Deadman: every SILENCE_SCAN_MS the worker looks at each device of its
 * shard (from the registry, so a device never heard from goes silent too)
 * and runs on_silence where a rule's threshold has passed. Nothing fires
 * in the grace period after a start. */
static void scan_silence(struct rule_worker *w, int64_t now)
{
    struct gw_pipeline *p = w->p;

    if (now < w->next_scan_ns)
        return;
    w->next_scan_ns = now + (int64_t)SILENCE_SCAN_MS * 1000000;
    if (now < p->started_ns + (int64_t)p->cfg->rules.silence_grace_s * 1000000000)
        return;
    for (size_t i = 0; i < w->n_devices; i++) {
        const struct gw_device *d = w->devices[i];
        struct gw_device_state st;
        struct rule_silence silence;
        int64_t threshold;

        gw_device_state(d, &st);
        silence.now_ns = now;
        silence.last_seen_ns = st.last_seen_ns;
        /* Never heard from: silent since the gateway started knowing it. */
        silence.silent_ns = now - (st.last_seen_ns ? st.last_seen_ns : p->started_ns);
        silence.heartbeat_ns =
            d->heartbeat_ns > 0 ? d->heartbeat_ns : gw_duration_table_get(p->heartbeats, d->type);
        threshold = rule_engine_silence_threshold(w->engine, d, silence.heartbeat_ns);
        if (threshold == 0 || silence.silent_ns < threshold)
            continue;
        struct gw_reading *reading = gw_reading_new(d->id, GW_CHANNEL_STATUS, now);
        if (!reading)
            continue;
        reading->device = d;
        /* A deadman's action comes from no record: it holds back the last
         * one read, and a crash before it is durable fires it again. */
        apply_actions(w, reading, w->read_seq,
                      rule_engine_on_silence(w->engine, d, &silence, &w->actions));
        gw_reading_unref(reading);
    }
}

/* The cases rules opened that the store holds open (and not cleared),
 * about devices: each worker's engine is told of those of its shard, so
 * that the rules' clear_case{} reaches them (rule_engine_note_open_case)
 * after a restart, or for a rule a reload brings back. */
struct case_note {
    char *rule;
    const char *device_id; /* the registry's */
};
struct case_notes {
    struct case_note *items;
    size_t n, cap;
};

static void case_notes_free(struct case_notes *notes)
{
    for (size_t i = 0; i < notes->n; i++)
        free(notes->items[i].rule);
    free(notes->items);
    *notes = (struct case_notes){ 0 };
}

struct notes_ctx {
    const struct gw_pipeline *p;
    struct case_notes *notes;
};

static int collect_case_note(const char *rule, const char *subject, void *userdata)
{
    struct notes_ctx *c = userdata;
    struct case_notes *notes = c->notes;
    const struct gw_device *device = gw_registry_device(c->p->reg, subject);

    if (!device)
        return 0; /* a building, say: its clears always pass */
    if (notes->n == notes->cap) {
        size_t cap = notes->cap ? notes->cap * 2 : 64;
        struct case_note *items = realloc(notes->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        notes->items = items;
        notes->cap = cap;
    }
    notes->items[notes->n].rule = strdup(rule);
    if (!notes->items[notes->n].rule)
        return -ENOMEM;
    notes->items[notes->n++].device_id = device->id;
    return 0;
}

/* Reads the notes from the main thread's store connection. On failure the
 * engines are told nothing: a case left open is then cleared only after
 * its rule opens it again, which the log says. */
static void collect_case_notes(struct gw_pipeline *p, struct case_notes *notes)
{
    struct notes_ctx c = { p, notes };
    int r = gw_cases_open_rule_cases(p->seen_store, collect_case_note, &c);

    if (r < 0) {
        gw_error("rules", "cannot read the open cases of rules from the store (%s): cases opened "
                 "before this start are cleared only once opened again", strerror(-r));
        case_notes_free(notes);
    }
}

/* Tells the worker's engine of the notes of its shard. */
static void note_open_cases(struct rule_worker *w, const struct case_notes *notes)
{
    size_t noted = 0;

    for (size_t i = 0; i < notes->n; i++) {
        const struct case_note *n = &notes->items[i];
        int r;

        if (shard_of(n->device_id, strlen(n->device_id), w->p->n_workers) != w->index)
            continue;
        r = rule_engine_note_open_case(w->engine, n->rule, n->device_id);
        if (r == 0)
            noted++;
        else if (r != -ENOENT) /* a rule no longer loaded: nothing of it runs */
            gw_error("rules", "worker %u: cannot note the open case of %s about %s: %s", w->index,
                     n->rule, n->device_id, strerror(-r));
    }
    if (noted)
        gw_debug("rules", "worker %u: %zu open case(s) of rules noted", w->index, noted);
}

/* At start, before the workers run. */
static void note_store_cases(struct gw_pipeline *p)
{
    struct case_notes notes = { 0 };

    collect_case_notes(p, &notes);
    for (unsigned i = 0; i < p->n_workers; i++)
        note_open_cases(&p->workers[i], &notes);
    if (notes.n)
        gw_info("rules", "%zu case(s) opened by rules before this start are open", notes.n);
    case_notes_free(&notes);
}

/* A reload's rules, loaded once and checked: each worker loads the same
 * bytes into its own engine (rule_engine_reload_like), and the last one
 * to take them frees the model. */
struct rule_model {
    struct rule_engine *engine;
    struct case_notes notes; /* the store's open cases when the reload was asked for */
    unsigned refs;
};

static void model_release(struct rule_model *m)
{
    if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        rule_engine_free(m->engine);
        case_notes_free(&m->notes);
        free(m);
    }
}

/* The worker takes a reload between two readings: its engine loads the
 * new rules next to the running ones and hands the per-device state over
 * by reference, so the pause does not grow with the devices. */
static void take_new_rules(struct rule_worker *w)
{
    struct rule_model *model = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);
    char *error = NULL;
    int64_t t0;
    int r;

    if (!model)
        return;
    t0 = gw_monotonic_ns();
    r = rule_engine_reload_like(w->engine, model->engine, &error);
    if (r < 0)
        gw_error("rules", "worker %u: cannot take the reloaded rules (%s); keeping the old ones",
                 w->index, error ? error : strerror(-r));
    else
        gw_info("rules", "worker %u: reloaded rules in use after a %.2f ms pause", w->index,
                (double)(gw_monotonic_ns() - t0) / 1e6);
    if (r == 0)
        note_open_cases(w, &model->notes);
    free(error);
    model_release(model);
}

/* The position the worker may commit: what it has read, but while the
 * case service still holds an action of it, no further than what the
 * service has made durable, so a case action is in the store before its
 * record counts as done. */
static uint64_t committable(struct rule_worker *w)
{
    uint64_t durable;

    if (w->submitted_seq == 0)
        return w->read_seq;
    durable = gw_casesvc_durable(w->p->casesvc, w->index);
    return durable >= w->submitted_seq ? w->read_seq : durable;
}

static void commit_durable(struct rule_worker *w)
{
    uint64_t seq = committable(w);

    if (seq <= w->committed_seq)
        return;
    commit(w->cursor, seq, w->consumer);
    w->committed_seq = seq;
}

/* How long to wait for the next record: not at all while records read
 * since the last commit wait for it, briefly while their case actions
 * wait for the case service, else long enough to idle. */
static int read_timeout_ms(const struct rule_worker *w, uint64_t uncommitted)
{
    if (uncommitted)
        return 0;
    return w->committed_seq < w->read_seq ? 10 : 200;
}

/* Reads the journal from its committed position until shutdown, handling
 * the devices of its shard. Positions it cannot commit yet (actions not
 * durable) are committed by gw_pipeline_free once the case service has
 * drained. */
static void *rule_worker_main(void *arg)
{
    struct rule_worker *w = arg;
    struct gw_pipeline *p = w->p;
    uint64_t seq = 0, uncommitted = 0;

    for (;;) {
        const void *data;
        size_t len, id_len;
        const char *id;
        int r = gw_journal_read(w->cursor, read_timeout_ms(w, uncommitted), &data, &len, &seq);

        take_new_rules(w);
        if (r == 0) {
            w->read_seq = seq;
            if (gw_reading_record_device(data, len, &id, &id_len) < 0 ||
                shard_of(id, id_len, p->n_workers) == w->index) {
                struct gw_reading *reading = resolve_record(p, data, len, seq);
                if (reading)
                    run_rules(w, reading, data, len, seq);
                gw_reading_unref(reading);
            }
            if (++uncommitted < COMMIT_EVERY)
                continue;
        } else if (r != -EAGAIN && r != -ESHUTDOWN) {
            gw_log_limited(&journal_log_limit, GW_LOG_ERROR, "pipeline",
                           "%s: cannot read the journal: %s", w->consumer, strerror(-r));
            usleep(100 * 1000);
        }
        commit_durable(w);
        uncommitted = 0;
        if (r == -ESHUTDOWN)
            break;
        if (stopping(p) && gw_monotonic_ns() > p->rules_drain_until) {
            gw_warn("rules", "%s: stopped before the end of the journal (%d s passed); the rest "
                             "is taken at the next start",
                    w->consumer, RULES_DRAIN_MS / 1000);
            break;
        }
        scan_silence(w, gw_now_ns());
    }
    return NULL;
}

/* ---- the InfluxDB feeder ------------------------------------------------ */

static int push_mark(struct gw_pipeline *p, uint64_t lines_end, uint64_t seq, int64_t outbox_id)
{
    if (p->marks_count == p->marks_cap) {
        size_t cap = p->marks_cap ? p->marks_cap * 2 : 64;
        struct feed_mark *marks = malloc(cap * sizeof(*marks));

        if (!marks)
            return -ENOMEM;
        for (size_t i = 0; i < p->marks_count; i++)
            marks[i] = p->marks[(p->marks_head + i) % p->marks_cap];
        free(p->marks);
        p->marks = marks;
        p->marks_cap = cap;
        p->marks_head = 0;
    }
    p->marks[(p->marks_head + p->marks_count) % p->marks_cap] =
        (struct feed_mark){ .lines_end = lines_end, .seq = seq, .outbox_id = outbox_id };
    p->marks_count++;
    return 0;
}

/* Remembers where the lines handed to the writer so far came from. */
static void mark(struct gw_pipeline *p, uint64_t seq, int64_t outbox_id)
{
    if (push_mark(p, p->lines_submitted, seq, outbox_id) < 0)
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "out of memory: InfluxDB's journal position or outbox not advanced");
}

/* Of everything InfluxDB has answered: commits the journal position and
 * deletes the outbox rows. A delete that fails (the store busy) is tried
 * again next time: the rows are only sent again after a restart. */
static void commit_answered(struct gw_pipeline *p)
{
    struct influx_writer_stats w;
    uint64_t seq = 0;

    influx_writer_stats(p->influx, &w);
    while (p->marks_count > 0) {
        struct feed_mark *m = &p->marks[p->marks_head];

        if (m->lines_end > w.lines_done)
            break;
        if (m->seq)
            seq = m->seq;
        if (m->outbox_id)
            p->outbox_done_id = m->outbox_id;
        p->marks_head = (p->marks_head + 1) % p->marks_cap;
        p->marks_count--;
    }
    if (seq)
        commit(p->influx_cursor, seq, CONSUMER_INFLUX);
    if (p->outbox_done_id > p->outbox_deleted_id) {
        int64_t n = gw_cases_outbox_delete(p->outbox_store, p->outbox_done_id);

        if (n >= 0) {
            p->outbox_deleted_id = p->outbox_done_id;
            __atomic_add_fetch(&p->outbox_deleted_rows, (uint64_t)n, __ATOMIC_RELAXED);
        }
    }
}

/* Whether the writer holds as much as the feeder may hand it: then the
 * feeder reads nothing more until InfluxDB answers. */
static bool writer_full(struct gw_pipeline *p)
{
    struct influx_writer_stats w;

    influx_writer_stats(p->influx, &w);
    return p->lines_submitted - w.lines_done >= p->in_flight_max ||
           w.queue_bytes >= p->in_flight_bytes;
}

/* Hands n whole lines to the writer (blocking while its queue is full)
 * and marks where they came from: journal record seq, outbox row
 * outbox_id, or neither (0, 0). Lines the writer refuses as malformed
 * can never be written: they are counted, logged and marked done, so an
 * outbox row of them does not come back for ever. Returns the writer's
 * answer. */
static int feed(struct gw_pipeline *p, const char *lines, size_t len, size_t n, uint64_t seq,
                int64_t outbox_id)
{
    int r;

    if (n == 0) {
        if (outbox_id)
            mark(p, 0, outbox_id); /* nothing to send: done */
        return 0;
    }
    r = influx_writer_submit(p->influx, lines, len, n);
    if (r < 0) {
        count(&p->stats.lines_lost, n);
        gw_log_limited(&worker_log_limit, GW_LOG_ERROR, "pipeline",
                       "%zu line(s) not handed to the InfluxDB writer: %s", n, strerror(-r));
        if (r == -EINVAL || r == -EMSGSIZE)
            mark(p, 0, outbox_id);
        return r;
    }
    p->lines_submitted += n;
    if (seq || outbox_id)
        mark(p, seq, outbox_id);
    return 0;
}

/* Devices' status messages go to their own measurement, so that a smoke
 * detector's series keep only its readings. */
static int status_line(struct gw_buf *buf, const struct gw_reading *reading)
{
    const struct gw_grid *grid = reading->device->grid;
    const struct gw_field *status = gw_reading_field(reading, "status");
    struct influx_line line;

    if (!status || status->value.type != GW_VALUE_STRING)
        return -EINVAL;
    influx_line_begin(&line, buf, "device_status");
    influx_line_tag(&line, "community", grid->community_id);
    influx_line_tag(&line, "device", reading->device_id);
    influx_line_tag(&line, "grid", grid->id);
    influx_line_tag(&line, "street", grid->street_id);
    influx_line_tag(&line, "type", reading->device->type);
    influx_line_field_bool(&line, "online", strcmp(status->value.u.string, "online") == 0);
    return influx_line_end(&line, reading->ts_ns);
}

/* One outbox row to the writer (store_outbox_fn). */
static int feed_outbox_row(int64_t id, const char *lines, size_t len, void *userdata)
{
    struct gw_pipeline *p = userdata;
    int r = feed(p, lines, len, count_lines(lines, len), 0, id);

    if (r == -ESHUTDOWN || r == -ENOMEM)
        return r; /* sent again after the next start (or the next read) */
    p->outbox_sent_id = id;
    return 0;
}

/* Sends the outbox rows after the last one sent, in id order, when the
 * case service wrote some since the last look (or the last read was cut
 * by its bounds, or a while has passed: a row committed by another
 * process). force: look anyway. Returns the rows read, or a negative
 * errno (the store logged it). */
static int feed_outbox(struct gw_pipeline *p, bool force)
{
    uint64_t rows = gw_casesvc_outbox_rows(p->casesvc);
    int64_t now = gw_monotonic_ns();
    int n;

    if (!force && !p->outbox_more && rows == p->outbox_seen_rows && now < p->outbox_next_poll)
        return 0;
    /* Read the count before the rows: a row committed after this read
     * changes the count again, so it is not missed. */
    p->outbox_seen_rows = rows;
    p->outbox_next_poll = now + OUTBOX_POLL_NS;
    n = gw_cases_outbox_read(p->outbox_store, p->outbox_sent_id, OUTBOX_READ_ROWS,
                             OUTBOX_READ_BYTES, feed_outbox_row, p);
    p->outbox_more = n > 0;
    return n;
}

/* The next journal record as lines, counting the records a drop_oldest
 * took before the feeder could read them. */
static int feed_read(struct gw_pipeline *p, struct gw_buf *lines, size_t *n_lines, int timeout_ms,
                     uint64_t *ret_seq)
{
    struct gw_reading *reading;
    int r = next_reading(p, p->influx_cursor, timeout_ms, &reading, ret_seq);

    if (r < 0)
        return r;
    if (p->feed_last_seq && *ret_seq > p->feed_last_seq + 1)
        count(&p->stats.influx_skipped, *ret_seq - p->feed_last_seq - 1);
    p->feed_last_seq = *ret_seq;
    if (reading) {
        int lr = reading->channel == GW_CHANNEL_STATUS ? status_line(lines, reading)
                                                        : influx_line_reading(lines, reading);
        if (lr == 0)
            (*n_lines)++;
        else
            gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                           "device %s: reading has no field InfluxDB can store",
                           reading->device_id);
    }
    gw_reading_unref(reading);
    return 0;
}

/* The best-effort lines waiting in the side queue. */
static void feed_side_lines(struct gw_pipeline *p, int timeout_ms)
{
    char *side;

    while ((side = gw_queue_pop(p->side_lines, timeout_ms))) {
        size_t len = strlen(side);

        feed(p, side, len, count_lines(side, len), 0, 0);
        free(side);
    }
}

/* Readings from the journal, case events and emits from the outbox, health
 * and figures from the side queue, in batches to the writer; what InfluxDB
 * answered is committed (journal) or deleted (outbox). While the writer
 * holds as much as it may (InfluxDB down or slow), the feeder reads
 * nothing: the journal and the outbox keep the rest. Once the gateway
 * stops it goes on for at most INFLUX_DRAIN_MS; what is left waits for the
 * next start. */
/* The outbox's depth at the start, for outbox_depth: the case service
 * may be writing meanwhile, so its count is read around the query until
 * it holds still. */
static void outbox_count_base(struct gw_pipeline *p)
{
    for (int tries = 0; tries < 5; tries++) {
        uint64_t before = gw_casesvc_outbox_rows(p->casesvc);
        int64_t rows = gw_cases_outbox_count(p->outbox_store);

        if (rows < 0)
            return;
        if (gw_casesvc_outbox_rows(p->casesvc) == before) {
            __atomic_store_n(&p->outbox_base, rows - (int64_t)before, __ATOMIC_RELAXED);
            if (rows > 0)
                gw_info("pipeline",
                        "%lld row(s) of case events and emits wait in the outbox for InfluxDB",
                        (long long)rows);
            return;
        }
    }
}

static void *influx_feeder(void *arg)
{
    struct gw_pipeline *p = arg;
    struct gw_buf lines = GW_BUF_INIT;
    size_t n_lines = 0;
    uint64_t seq = 0, pending_seq = 0;
    bool journal_done = false;
    int64_t stop_by = 0;

    outbox_count_base(p);
    /* After a restart, from the outbox's first row: rows go only once
     * answered. */
    feed_outbox(p, true);

    while (!journal_done || !gw_queue_closed(p->side_lines) || gw_queue_depth(p->side_lines)) {
        bool full = writer_full(p);
        int r;

        if (stopping(p) && !stop_by)
            stop_by = gw_monotonic_ns() + (int64_t)INFLUX_DRAIN_MS * 1000000;
        if (stop_by && (full || gw_monotonic_ns() >= stop_by))
            break;
        if (full) {
            usleep(20 * 1000);
            commit_answered(p);
            continue;
        }
        r = journal_done ? -ESHUTDOWN : feed_read(p, &lines, &n_lines, n_lines ? 0 : 100, &seq);
        if (r == 0) {
            pending_seq = seq;
            if (n_lines < FEED_BATCH_LINES)
                continue;
        } else if (r == -ESHUTDOWN) {
            journal_done = true;
        } else if (r != -EAGAIN) {
            gw_log_limited(&journal_log_limit, GW_LOG_ERROR, "pipeline",
                           "influx: cannot read the journal: %s", strerror(-r));
            usleep(100 * 1000);
        }
        /* A record whose reading made no line still moves the position. */
        if (n_lines)
            feed(p, lines.data, lines.len, n_lines, pending_seq, 0);
        else if (pending_seq)
            mark(p, pending_seq, 0);
        gw_buf_reset(&lines);
        pending_seq = 0;
        n_lines = 0;
        feed_outbox(p, false);
        feed_side_lines(p, journal_done ? 100 : 0);
        commit_answered(p);
    }
    /* The case service has stopped (the side queue closes after it): its
     * last rows, as far as the writer takes them in time. */
    while (journal_done && !writer_full(p) && gw_monotonic_ns() < stop_by &&
           feed_outbox(p, true) > 0)
        ;
    /* Everything is with the writer: let it finish, then commit what it
     * answered. What it could not send stays in the journal and the outbox
     * for next time. */
    influx_writer_shutdown(p->influx, INFLUX_DRAIN_MS);
    commit_answered(p);
    gw_buf_free(&lines);
    return NULL;
}

/* Rows in the outbox now: what was there when the feeder started, plus
 * what the case service wrote since, minus what the feeder deleted. */
static uint64_t outbox_depth(struct gw_pipeline *p)
{
    int64_t base = __atomic_load_n(&p->outbox_base, __ATOMIC_RELAXED);
    uint64_t deleted = __atomic_load_n(&p->outbox_deleted_rows, __ATOMIC_RELAXED);
    int64_t depth;

    if (!p->influx)
        return 0;
    depth = base + (int64_t)gw_casesvc_outbox_rows(p->casesvc) - (int64_t)deleted;
    return depth > 0 ? (uint64_t)depth : 0;
}

/* ---- building, starting, stopping -------------------------------------- */

/* The slowest worker's lag: what a crash would make the rules handle again. */
static uint64_t rules_lag(struct gw_pipeline *p)
{
    uint64_t lag = 0;

    for (unsigned i = 0; p->workers && i < p->n_workers; i++) {
        uint64_t l = p->workers[i].cursor ? gw_journal_cursor_lag(p->workers[i].cursor) : 0;
        if (l > lag)
            lag = l;
    }
    return lag;
}

static int open_journal(struct gw_pipeline *p, char **ret_error)
{
    const struct gw_config *cfg = p->cfg;
    const char **consumers = calloc(p->n_workers + 1, sizeof(*consumers));
    struct gw_journal_options options = {
        .dir = cfg->journal.dir,
        .max_bytes = (uint64_t)cfg->journal.max_mb << 20,
        .segment_bytes = (uint64_t)cfg->journal.segment_mb << 20,
        .fsync_interval_ms = cfg->journal.fsync_interval_ms,
        .fsync_bytes = (uint64_t)cfg->journal.fsync_kb << 10,
        .full_policy = strcmp(cfg->journal.full_policy, "drop_oldest") == 0
                           ? GW_JOURNAL_DROP_OLDEST
                           : GW_JOURNAL_BLOCK,
        .consumers = consumers,
        .n_consumers = p->n_workers + (cfg->influx.enabled ? 1 : 0),
    };

    if (!consumers) {
        *ret_error = strdup("out of memory opening the journal");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < p->n_workers; i++)
        consumers[i] = p->workers[i].consumer;
    consumers[p->n_workers] = CONSUMER_INFLUX;
    /* The journal needs room for two segments: the one being written and
     * the one consumers are finishing. */
    if (options.segment_bytes > options.max_bytes / 2)
        options.segment_bytes = options.max_bytes / 2;
    p->journal = gw_journal_open(&options, ret_error);
    free(consumers);
    if (!p->journal)
        return -EIO;
    for (unsigned i = 0; i < p->n_workers; i++) {
        p->workers[i].cursor = gw_journal_cursor_open(p->journal, p->workers[i].consumer);
        if (!p->workers[i].cursor)
            goto fail;
    }
    if (cfg->influx.enabled) {
        p->influx_cursor = gw_journal_cursor_open(p->journal, CONSUMER_INFLUX);
        if (!p->influx_cursor)
            goto fail;
    }
    return 0;
fail:
    *ret_error = strdup("cannot open the journal's consumer positions");
    return -EIO;
}

/* The deadman must not forget a silent device across a restart: last-seen
 * times come back from the store before any reading can arrive. */
static int load_last_seen(struct gw_pipeline *p, char **ret_error)
{
    struct gw_cases_options options = { .db_path = p->cfg->store.path };
    int n;

    p->seen_store = gw_cases_open(&options, ret_error);
    if (!p->seen_store)
        return -EIO;
    n = gw_cases_load_last_seen(p->seen_store, p->reg);
    if (n < 0) {
        *ret_error = strdup("cannot read the devices' last-seen times from the case store");
        return n;
    }
    gw_info("pipeline", "last-seen times of %d device(s) restored", n);
    return 0;
}

static void save_last_seen(struct gw_pipeline *p)
{
    int n = gw_cases_save_last_seen(p->seen_store, p->reg);

    if (n < 0)
        gw_log_limited(&worker_log_limit, GW_LOG_ERROR, "pipeline",
                       "cannot save the devices' last-seen times: %s", strerror(-n));
}

/* The feeder's connection (it deletes what InfluxDB answered) and the
 * report's reader, once the case service has migrated the file. */
static int open_stores(struct gw_pipeline *p, char **ret_error)
{
    struct gw_cases_options writer = { .db_path = p->cfg->store.path };
    struct gw_cases_options reader = { .db_path = p->cfg->store.path, .read_only = true };

    if (p->cfg->influx.enabled) {
        p->outbox_store = gw_cases_open(&writer, ret_error);
        if (!p->outbox_store)
            return -EIO;
    }
    p->report_store = gw_cases_open(&reader, ret_error);
    return p->report_store ? 0 : -EIO;
}

/* Loads the rule directory into a new engine; NULL with *ret_error. */
static struct rule_engine *load_rules(const struct gw_pipeline *p, char **ret_error)
{
    struct rule_engine *engine = rule_engine_new(&p->rule_limits);

    if (!engine) {
        *ret_error = strdup("out of memory loading the rules");
        return NULL;
    }
    if (rule_engine_load_dir(engine, p->cfg->rules.dir, ret_error) < 0) {
        rule_engine_free(engine);
        return NULL;
    }
    return engine;
}

/* Each worker gets an engine and the devices of its shard; the devices'
 * last readings are kept in one store for all (gw_last). */
static int build_workers(struct gw_pipeline *p, char **ret_error)
{
    size_t n_devices = gw_registry_device_count(p->reg);

    p->workers = calloc(p->n_workers, sizeof(*p->workers));
    p->last = gw_last_new(p->reg);
    if (!p->workers || !p->last)
        goto nomem;
    /* Each shard's devices, counted first: the arrays are sized exactly. */
    for (size_t d = 0; d < n_devices; d++) {
        const struct gw_device *device = gw_registry_device_at(p->reg, d);
        p->workers[shard_of(device->id, strlen(device->id), p->n_workers)].n_devices++;
    }
    for (unsigned i = 0; i < p->n_workers; i++) {
        struct rule_worker *w = &p->workers[i];

        w->p = p;
        w->index = i;
        snprintf(w->consumer, sizeof(w->consumer), "rules-%u", i);
        w->devices = calloc(w->n_devices ? w->n_devices : 1, sizeof(*w->devices));
        if (!w->devices)
            goto nomem;
        w->n_devices = 0;
        w->engine = load_rules(p, ret_error);
        if (!w->engine)
            return -EINVAL;
    }
    for (size_t d = 0; d < n_devices; d++) {
        const struct gw_device *device = gw_registry_device_at(p->reg, d);
        struct rule_worker *w = &p->workers[shard_of(device->id, strlen(device->id), p->n_workers)];
        w->devices[w->n_devices++] = device;
    }
    gw_info("rules", "%zu rule(s) loaded from %s into %u worker(s)",
            rule_engine_rule_count(p->workers[0].engine), p->cfg->rules.dir, p->n_workers);
    return 0;
nomem:
    *ret_error = strdup("out of memory building the rule workers");
    return -ENOMEM;
}

/* The one writer of cases, configured from cases.* (limits, self-closing
 * and grouped categories, the timer, batches). */
static int build_casesvc(struct gw_pipeline *p, char **ret_error)
{
    const struct gw_config *cfg = p->cfg;
    struct gw_casesvc_options options = {
        .cases = {
            .db_path = cfg->store.path,
            .auto_dispatch = cfg->cases.auto_dispatch,
            .reg = p->reg,
            .self_closing = cfg->cases.self_closing,
            .group_categories = cfg->cases.group_categories,
            .group_window_ns = (int64_t)cfg->cases.group_window_s * 1000000000,
        },
        .n_workers = p->n_workers,
        .batch_max = cfg->cases.batch_max,
        .timer_interval_ms = cfg->cases.timer_interval_ms,
        .on_event = on_case_event,
        .format_event = cfg->influx.enabled ? format_case_event : NULL,
        .userdata = p,
    };
    char *why = NULL;
    int r = gw_case_limits_from_config(cfg, &options.cases.limits, &why);

    if (r < 0) {
        if (asprintf(ret_error, "%s: %s", cfg->path, why ? why : "cases.limits_*: invalid") < 0)
            *ret_error = NULL;
        free(why);
        return r;
    }
    p->casesvc = gw_casesvc_new(&options, ret_error);
    return p->casesvc ? 0 : -EIO;
}

struct gw_pipeline *gw_pipeline_new(const struct gw_config *cfg, struct gw_registry *reg,
                                    char **ret_error)
{
    struct gw_pipeline *p = calloc(1, sizeof(*p));
    char *error = NULL;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (!p)
        goto nomem;
    p->cfg = cfg;
    p->reg = reg;
    pthread_mutex_init(&p->reload_lock, NULL);
    pthread_mutex_init(&p->notify_lock, NULL);
    p->limits = (struct payload_limits){
        .max_bytes = (size_t)cfg->payload.max_bytes,
        .max_fields = (size_t)cfg->payload.max_fields,
        .max_string = (size_t)cfg->payload.max_string,
    };
    p->rule_limits = (struct rule_limits){
        .instruction_budget = cfg->rules.instruction_budget,
        .memory_bytes = (size_t)cfg->rules.memory_kb * 1024,
        .device_failures = (unsigned)cfg->rules.device_failures,
        .rule_devices = (unsigned)cfg->rules.rule_devices,
        .quarantine_s = (unsigned)cfg->rules.quarantine_s,
    };
    p->n_workers = cfg->rules.workers > 0 ? (unsigned)cfg->rules.workers
                                          : (unsigned)(cores > 0 ? cores : 1);
    p->heartbeats = gw_duration_table_parse(cfg->rules.heartbeats, &error);
    if (!p->heartbeats) {
        char *why = error;
        if (asprintf(&error, "%s: rules.heartbeats: %s", cfg->path, why ? why : "invalid") < 0)
            error = NULL;
        free(why);
        goto fail;
    }
    p->quarantine = strcmp(cfg->district.unknown_devices, "quarantine") == 0;
    if (p->quarantine && gw_registry_enable_quarantine(reg, QUARANTINE_MAX) < 0)
        goto nomem;
    p->side_lines = gw_queue_new(SIDE_QUEUE_LINES);
    if (!p->side_lines)
        goto nomem;
    if (build_workers(p, &error) < 0 || open_journal(p, &error) < 0 ||
        build_casesvc(p, &error) < 0)
        goto fail;
    if (load_last_seen(p, &error) < 0 || open_stores(p, &error) < 0)
        goto fail;
    note_store_cases(p);
    return p;

nomem:
    error = strdup("out of memory building the pipeline");
fail:
    gw_pipeline_free(p);
    *ret_error = error;
    return NULL;
}

int gw_pipeline_reload(struct gw_pipeline *p)
{
    struct rule_model *model = calloc(1, sizeof(*model));
    char *error = NULL;
    int r;

    if (!model)
        return -ENOMEM;
    pthread_mutex_lock(&p->reload_lock);
    r = rule_tools_check_dir(p->cfg->rules.dir, &p->rule_limits, &error);
    if (r == 0) {
        model->engine = load_rules(p, &error);
        if (!model->engine)
            r = -EINVAL;
    }
    if (r < 0) {
        gw_error("rules", "reload refused, the running rules stay:\n%s", error ? error : "");
        free(model);
        goto out;
    }
    collect_case_notes(p, &model->notes);
    model->refs = p->n_workers;
    gw_info("rules", "reload: %zu rule(s) from %s handed to %u worker(s)",
            rule_engine_rule_count(model->engine), p->cfg->rules.dir, p->n_workers);
    /* A reload that was not taken yet is replaced by this one. */
    for (unsigned i = 0; i < p->n_workers; i++)
        model_release(__atomic_exchange_n(&p->workers[i].pending, model, __ATOMIC_ACQ_REL));
out:
    pthread_mutex_unlock(&p->reload_lock);
    free(error);
    return r;
}

static int start_influx(struct gw_pipeline *p)
{
    const struct gw_config *cfg = p->cfg;
    struct influx_writer_options options = {
        .url = cfg->influx.url,
        .database = cfg->influx.database,
        .retention_policy = cfg->influx.retention_policy,
        .username = cfg->influx.username,
        .password = cfg->influx.password,
        .version = cfg->influx.version,
        .org = cfg->influx.org,
        .bucket = cfg->influx.bucket,
        .token = cfg->influx.token,
        .gzip = cfg->influx.gzip,
        .dead_letter_path = cfg->influx.dead_letter,
        .batch_size = cfg->influx.batch_size,
        .flush_interval_ms = cfg->influx.flush_interval_ms,
        .timeout_ms = cfg->influx.timeout_ms,
        .max_in_flight = cfg->influx.max_in_flight,
        .queue_bytes = (size_t)cfg->gateway.queue_size * 512,
    };
    char *error = NULL;
    int r;

    if (!cfg->influx.enabled)
        return 0;
    p->in_flight_max = (uint64_t)IN_FLIGHT_BATCHES *
                       (uint64_t)(cfg->influx.batch_size > 0 ? cfg->influx.batch_size
                                                             : INFLUX_WRITER_DEFAULT_BATCH_SIZE);
    if (p->in_flight_max < 2 * FEED_BATCH_LINES)
        p->in_flight_max = 2 * FEED_BATCH_LINES;
    /* Half the writer's bound, so a submit seldom blocks on it. */
    p->in_flight_bytes = (options.queue_bytes ? options.queue_bytes
                                              : INFLUX_WRITER_DEFAULT_QUEUE_BYTES) / 2;
    p->influx = influx_writer_start(&options, &error);
    if (!p->influx) {
        gw_error("influx", "cannot start the InfluxDB writer: %s", error ? error : "unknown");
        free(error);
        return -EIO;
    }
    r = pthread_create(&p->feed_thread, NULL, influx_feeder, p);
    if (r != 0) {
        gw_error("pipeline", "cannot start the InfluxDB feeder: %s", strerror(r));
        return -r;
    }
    p->feed_running = true;
    return 0;
}

/* The enabled adapters, initialised but receiving nothing yet. */
static int init_adapters(struct gw_pipeline *p)
{
    const struct gw_adapter_ops *kinds[MAX_ADAPTERS];
    size_t n = gw_adapter_kinds(kinds, MAX_ADAPTERS);

    for (size_t i = 0; i < n; i++) {
        struct gw_adapter *a = &p->adapters[p->n_adapters];
        int r;

        if (!kinds[i]->enabled(p->cfg))
            continue;
        memset(a, 0, sizeof(*a));
        a->ops = kinds[i];
        a->ingest = gw_pipeline_ingest;
        a->core = p;
        r = a->ops->init(a, p->cfg);
        if (r < 0) {
            gw_error("pipeline", "adapter %s: cannot initialise: %s", a->ops->name, strerror(-r));
            return r;
        }
        p->n_adapters++;
    }
    return 0;
}

static int start_adapters(struct gw_pipeline *p)
{
    for (size_t i = 0; i < p->n_adapters; i++) {
        struct gw_adapter *a = &p->adapters[i];
        int r = a->ops->start(a);

        if (r < 0) {
            gw_error("pipeline", "adapter %s: cannot start: %s", a->ops->name, strerror(-r));
            return r;
        }
        gw_info("pipeline", "adapter %s started", a->ops->name);
    }
    if (p->n_adapters == 0)
        gw_warn("pipeline", "no adapter is enabled: nothing will be received");
    return 0;
}

/* Case notices go out through the first adapter that publishes (which
 * queues them until it is connected). */
static void attach_notifier(struct gw_pipeline *p)
{
    const char *topic = p->cfg->cases.notify_topic;

    if (!topic || !*topic)
        return;
    pthread_mutex_lock(&p->notify_lock);
    for (size_t i = 0; i < p->n_adapters && !p->notifier; i++)
        if (p->adapters[i].ops->publish)
            p->notifier = &p->adapters[i];
    pthread_mutex_unlock(&p->notify_lock);
    if (p->notifier)
        gw_info("pipeline", "case notices on %s through adapter %s", topic,
                p->notifier->ops->name);
    else
        gw_warn("pipeline", "cases.notify_topic is set but no enabled adapter publishes: "
                            "no case notices");
}

static void detach_notifier(struct gw_pipeline *p)
{
    pthread_mutex_lock(&p->notify_lock);
    p->notifier = NULL;
    pthread_mutex_unlock(&p->notify_lock);
}

int gw_pipeline_start(struct gw_pipeline *p)
{
    struct gw_journal_stats js;
    int r = start_influx(p);

    if (r < 0)
        return r;
    /* The notifier before the case service: the events it fires at once
     * (escalations overdue since the last run, found by valgrind's slow
     * start in integration.notices) had no notice before the adapters
     * started. */
    r = init_adapters(p);
    if (r < 0)
        return r;
    attach_notifier(p);
    /* The case service before the workers that submit to it. */
    r = gw_casesvc_start(p->casesvc);
    if (r < 0) {
        gw_error("pipeline", "cannot start the case service: %s", strerror(-r));
        return r;
    }
    p->started_ns = gw_now_ns();
    for (unsigned i = 0; i < p->n_workers; i++) {
        struct rule_worker *w = &p->workers[i];

        r = pthread_create(&w->thread, NULL, rule_worker_main, w);
        if (r != 0) {
            gw_error("pipeline", "cannot start rule worker %u: %s", i, strerror(r));
            return -r;
        }
        w->running = true;
    }
    gw_journal_stats(p->journal, &js);
    gw_info("journal", "%s: %llu segment(s), %llu bytes, rules %llu and influx %llu records behind",
            p->cfg->journal.dir, (unsigned long long)js.segments, (unsigned long long)js.bytes,
            (unsigned long long)rules_lag(p),
            (unsigned long long)(p->influx_cursor ? gw_journal_cursor_lag(p->influx_cursor) : 0));
    return start_adapters(p);
}

/* After the workers and the case service stopped: each worker's reading
 * position is durable now (its actions committed or given up on). */
static void commit_final_positions(struct gw_pipeline *p)
{
    for (unsigned i = 0; p->workers && i < p->n_workers; i++) {
        struct rule_worker *w = &p->workers[i];

        if (w->cursor && w->read_seq > w->committed_seq) {
            commit(w->cursor, w->read_seq, w->consumer);
            w->committed_seq = w->read_seq;
        }
    }
}

void gw_pipeline_free(struct gw_pipeline *p)
{
    if (!p)
        return;
    p->rules_drain_until = gw_monotonic_ns() + (int64_t)RULES_DRAIN_MS * 1000000;
    __atomic_store_n(&p->stopping, 1, __ATOMIC_RELEASE);
    /* No notice may be in an adapter's publish while it stops. */
    detach_notifier(p);
    /* Inputs first: every message an adapter is handing in still reaches
     * the journal, and nothing arrives after. */
    for (size_t i = p->n_adapters; i-- > 0;) {
        struct gw_adapter *a = &p->adapters[i];
        a->ops->stop(a);
        a->ops->destroy(a);
    }
    /* Then the consumers read what is left and finish. */
    if (p->journal)
        gw_journal_shutdown(p->journal);
    for (unsigned i = 0; p->workers && i < p->n_workers; i++)
        if (p->workers[i].running)
            pthread_join(p->workers[i].thread, NULL);
    /* The case service carries out what the workers handed it (its
     * events still reach the feeder), then every position they read is
     * durable. */
    gw_casesvc_stop(p->casesvc);
    commit_final_positions(p);
    if (p->side_lines)
        gw_queue_close(p->side_lines);
    if (p->feed_running)
        pthread_join(p->feed_thread, NULL);
    influx_writer_stop(p->influx, INFLUX_DRAIN_MS);
    gw_cases_close(p->outbox_store);
    gw_cases_close(p->report_store);
    for (size_t i = 0; i < p->n_open_keys; i++)
        free(p->open_keys[i]);
    free(p->open_keys);
    for (unsigned i = 0; p->workers && i < p->n_workers; i++) {
        struct rule_worker *w = &p->workers[i];

        gw_journal_cursor_free(w->cursor);
        rule_engine_free(w->engine);
        model_release(w->pending);
        rule_actions_free(&w->actions);
        gw_buf_free(&w->lines);
        free(w->devices);
    }
    free(p->workers);
    gw_last_free(p->last);
    gw_casesvc_free(p->casesvc);
    gw_buf_free(&p->notice);
    gw_buf_free(&p->notice_topic);
    if (p->seen_store)
        save_last_seen(p);
    gw_cases_close(p->seen_store);
    gw_journal_cursor_free(p->influx_cursor);
    gw_journal_close(p->journal);
    gw_duration_table_free(p->heartbeats);
    pthread_mutex_destroy(&p->reload_lock);
    pthread_mutex_destroy(&p->notify_lock);
    gw_queue_free(p->side_lines, free);
    free(p->marks);
    free(p);
}

void gw_pipeline_stats(struct gw_pipeline *p, struct gw_pipeline_stats *ret)
{
    const struct gw_pipeline_stats *s = &p->stats;
    struct gw_journal_stats js;

    memset(ret, 0, sizeof(*ret));
    ret->received = load(&s->received);
    ret->accepted = load(&s->accepted);
    ret->bad_payload = load(&s->bad_payload);
    ret->unknown_device = load(&s->unknown_device);
    ret->too_large = load(&s->too_large);
    ret->unsupported = load(&s->unsupported);
    ret->rule_runs = load(&s->rule_runs);
    ret->rule_errors = load(&s->rule_errors);
    ret->case_events = load(&s->case_events);
    ret->cases_opened = load(&s->cases_opened);
    ret->cases_escalated = load(&s->cases_escalated);
    ret->notices = load(&s->notices);
    ret->notice_failures = load(&s->notice_failures);
    /* The adapter queues notices and knows what became of them: the
     * broker's acknowledgements, and what it refused, dropped or gave up. */
    pthread_mutex_lock(&p->notify_lock);
    if (p->notifier && p->notifier->ops->stats) {
        struct gw_adapter_stats as;
        p->notifier->ops->stats(p->notifier, &as);
        ret->notices = as.published;
        ret->notice_failures = as.publish_failed;
    }
    pthread_mutex_unlock(&p->notify_lock);
    ret->store_errors = load(&s->store_errors);
    ret->journal_errors = load(&s->journal_errors);
    ret->records_skipped = load(&s->records_skipped);
    ret->lines_lost = load(&s->lines_lost);
    ret->side_dropped = load(&s->side_dropped);
    ret->influx_skipped = load(&s->influx_skipped);
    ret->outbox_rows = outbox_depth(p);
    gw_journal_stats(p->journal, &js);
    ret->journal_bytes = js.bytes;
    ret->journal_dropped = js.dropped;
    ret->rules_lag = rules_lag(p);
    ret->shadow_actions = load(&s->shadow_actions);
    ret->influx_lag = p->influx_cursor ? gw_journal_cursor_lag(p->influx_cursor) : 0;
    ret->quarantined = gw_registry_quarantined_count(p->reg);
    if (p->influx) {
        struct influx_writer_stats w;
        influx_writer_stats(p->influx, &w);
        ret->points_written = w.points_written;
        ret->points_rejected = w.points_rejected;
        ret->points_dead_lettered = w.points_dead_lettered;
        ret->write_errors = w.write_errors;
        ret->write_latency_us = w.last_latency_us;
    }
}

struct gw_casesvc *gw_pipeline_casesvc(struct gw_pipeline *p)
{
    return p->casesvc;
}

struct gw_reading *gw_pipeline_last_reading(struct gw_pipeline *p, const struct gw_device *device)
{
    return gw_last_get(p->last, device);
}

/* ---- the periodic report: health and case figures ------------------------ */

/* case_open (issue 6 spec, "Case figures for Grafana"): one point per
 * (street, category) with open cases, and a zero for each pair of the last
 * report that has none now, so a count falling to zero shows. */
struct open_report {
    struct gw_pipeline *p;
    struct gw_buf *buf;
    int64_t ts;
    char **keys; /* this report's pairs, "street\ncategory" */
    size_t n_keys, cap_keys;
};

static void open_point(struct gw_buf *buf, const char *street, const char *category, int64_t open,
                       int64_t overdue, int64_t ts)
{
    struct influx_line line;

    influx_line_begin(&line, buf, "case_open");
    influx_line_tag(&line, "category", category);
    influx_line_tag(&line, "street", street);
    influx_line_field_int(&line, "open", open);
    influx_line_field_int(&line, "overdue", overdue);
    (void)influx_line_end(&line, ts); /* a bad pair is only left out */
}

static int open_row(const char *street_id, const char *category, int64_t open, int64_t overdue,
                    void *userdata)
{
    struct open_report *o = userdata;
    char *key;

    open_point(o->buf, street_id, category, open, overdue, o->ts);
    if (o->n_keys == o->cap_keys) {
        size_t cap = o->cap_keys ? o->cap_keys * 2 : 32;
        char **grown = realloc(o->keys, cap * sizeof(*grown));

        if (!grown)
            return -ENOMEM;
        o->keys = grown;
        o->cap_keys = cap;
    }
    if (asprintf(&key, "%s\n%s", street_id, category) < 0)
        return -ENOMEM;
    o->keys[o->n_keys++] = key;
    return 0;
}

static bool key_listed(char *const *keys, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return true;
    return false;
}

static void report_open_cases(struct gw_pipeline *p, struct gw_buf *buf, int64_t ts)
{
    struct open_report o = { .p = p, .buf = buf, .ts = ts };
    int r = gw_cases_open_counts(p->report_store, open_row, &o);

    if (r < 0) {
        /* Keep the last report's pairs: their zeros come next time. */
        for (size_t i = 0; i < o.n_keys; i++)
            free(o.keys[i]);
        free(o.keys);
        return;
    }
    for (size_t i = 0; i < p->n_open_keys; i++) {
        char *nl = strchr(p->open_keys[i], '\n');

        if (nl && !key_listed(o.keys, o.n_keys, p->open_keys[i])) {
            *nl = '\0';
            open_point(buf, p->open_keys[i], nl + 1, 0, 0, ts);
        }
        free(p->open_keys[i]);
    }
    free(p->open_keys);
    p->open_keys = o.keys;
    p->n_open_keys = o.n_keys;
}

static void rate_field(struct influx_line *line, const char *key, int64_t num, int64_t den)
{
    if (den > 0)
        influx_line_field_float(line, key, (double)num / (double)den);
}

/* case_rates: the figures of gw_cases_figures over the last 30 days, per
 * street and for the district (street="district"), the rates as docs/api.md
 * defines them, left out when their denominator is 0. */
static void report_rates(struct gw_pipeline *p, struct gw_buf *buf, int64_t ts)
{
    static const struct gw_actor district = {
        .name = "gridgate:report", .role = GW_ACTOR_COMMANDER, .scope = GW_SCOPE_DISTRICT
    };
    const enum gw_figures_group groups[] = { GW_GROUP_STREET, GW_GROUP_DISTRICT };

    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        struct gw_case_figures *f = NULL;
        int n = gw_cases_figures(p->report_store, &district, groups[g], ts - RATES_WINDOW_NS, ts,
                                 ts, &f);

        for (int i = 0; i < n; i++) {
            struct influx_line line;
            int64_t open_due = f[i].due - f[i].deferred;

            influx_line_begin(&line, buf, "case_rates");
            influx_line_tag(&line, "street", f[i].key);
            influx_line_field_int(&line, "opened", f[i].opened);
            influx_line_field_int(&line, "due", f[i].due);
            influx_line_field_int(&line, "closed", f[i].closed);
            rate_field(&line, "closure_rate", f[i].closed, open_due);
            rate_field(&line, "on_time_rate", f[i].closed_on_time, open_due);
            rate_field(&line, "rework_rate", f[i].reworked, f[i].dispatched);
            influx_line_field_int(&line, "overdue_now", f[i].overdue_now);
            (void)influx_line_end(&line, ts);
        }
        gw_cases_free_figures(f, n);
    }
}

/* The `gridgate` point: the gateway's health. */
static void health_line(struct gw_pipeline *p, struct gw_buf *buf, const struct gw_pipeline_stats *s,
                        const struct gw_casesvc_stats *cs, const struct influx_writer_stats *w,
                        int64_t ts)
{
    struct influx_line line;
    char key[40];

    influx_line_begin(&line, buf, "gridgate");
    influx_line_tag(&line, "instance", p->cfg->mqtt.client_id);
    influx_line_field_int(&line, "readings_in", (int64_t)s->received);
    influx_line_field_int(&line, "readings_decoded", (int64_t)s->accepted);
    influx_line_field_int(&line, "readings_accepted", (int64_t)s->accepted);
    influx_line_field_int(&line, "readings_rejected",
                          (int64_t)(s->bad_payload + s->unknown_device + s->too_large +
                                    s->unsupported));
    influx_line_field_int(&line, "bad_payload", (int64_t)s->bad_payload);
    influx_line_field_int(&line, "unknown_device", (int64_t)s->unknown_device);
    influx_line_field_int(&line, "too_large", (int64_t)s->too_large);
    influx_line_field_int(&line, "unsupported", (int64_t)s->unsupported);
    influx_line_field_int(&line, "quarantined", (int64_t)s->quarantined);
    influx_line_field_int(&line, "rule_errors", (int64_t)s->rule_errors);
    influx_line_field_int(&line, "shadow_actions", (int64_t)s->shadow_actions);
    influx_line_field_int(&line, "cases_opened", (int64_t)s->cases_opened);
    influx_line_field_int(&line, "case_events", (int64_t)s->case_events);
    influx_line_field_int(&line, "cases_escalated", (int64_t)s->cases_escalated);
    influx_line_field_int(&line, "case_commands_failed", (int64_t)cs->failed);
    influx_line_field_int(&line, "notices", (int64_t)s->notices);
    influx_line_field_int(&line, "notice_failures", (int64_t)s->notice_failures);
    influx_line_field_int(&line, "store_errors", (int64_t)s->store_errors);
    /* Queue depths. */
    influx_line_field_int(&line, "case_queue", (int64_t)cs->queued);
    influx_line_field_int(&line, "influx_queue", (int64_t)w->queue_lines);
    influx_line_field_int(&line, "side_queue", (int64_t)gw_queue_depth(p->side_lines));
    influx_line_field_int(&line, "outbox_rows", (int64_t)s->outbox_rows);
    /* The journal, and each consumer's lag. */
    influx_line_field_int(&line, "journal_bytes", (int64_t)s->journal_bytes);
    influx_line_field_int(&line, "journal_dropped", (int64_t)s->journal_dropped);
    influx_line_field_int(&line, "journal_errors", (int64_t)s->journal_errors);
    influx_line_field_int(&line, "rules_lag", (int64_t)s->rules_lag);
    influx_line_field_int(&line, "influx_lag", (int64_t)s->influx_lag);
    influx_line_field_int(&line, "influx_skipped", (int64_t)s->influx_skipped);
    for (unsigned i = 0; i < p->n_workers; i++) {
        snprintf(key, sizeof(key), "lag_%s", p->workers[i].consumer);
        influx_line_field_int(&line, key,
                              (int64_t)(p->workers[i].cursor
                                            ? gw_journal_cursor_lag(p->workers[i].cursor)
                                            : 0));
    }
    /* InfluxDB's side. */
    influx_line_field_int(&line, "points_written", (int64_t)w->points_written);
    influx_line_field_int(&line, "points_rejected", (int64_t)w->points_rejected);
    influx_line_field_int(&line, "points_dead_lettered", (int64_t)w->points_dead_lettered);
    influx_line_field_int(&line, "dead_letter_errors", (int64_t)w->dead_letter_errors);
    influx_line_field_int(&line, "points_dropped", (int64_t)w->points_dropped);
    influx_line_field_int(&line, "write_errors", (int64_t)w->write_errors);
    influx_line_field_int(&line, "write_latency_us", (int64_t)w->last_latency_us);
    influx_line_field_int(&line, "lines_lost", (int64_t)s->lines_lost);
    influx_line_field_int(&line, "side_dropped", (int64_t)s->side_dropped);
    (void)influx_line_end(&line, ts);
}

void gw_pipeline_report(struct gw_pipeline *p)
{
    struct gw_pipeline_stats s;
    struct influx_writer_stats w = { 0 };
    struct gw_casesvc_stats cs;
    struct gw_buf buf = GW_BUF_INIT;
    int64_t now = gw_now_ns();

    save_last_seen(p);
    gw_pipeline_stats(p, &s);
    gw_casesvc_stats(p->casesvc, &cs);
    if (p->influx)
        influx_writer_stats(p->influx, &w);
    gw_info("stats",
            "received %llu, accepted %llu, bad payload %llu, unknown device %llu, "
            "rule errors %llu, cases opened %llu, escalated %llu, case commands failed %llu "
            "(%llu queued), notices %llu (%llu failed), journal %llu bytes (rules %llu, "
            "influx %llu behind, %llu dropped, %llu never read by influx), outbox %llu rows, "
            "points written %llu, influx errors %llu",
            (unsigned long long)s.received, (unsigned long long)s.accepted,
            (unsigned long long)s.bad_payload, (unsigned long long)s.unknown_device,
            (unsigned long long)s.rule_errors, (unsigned long long)s.cases_opened,
            (unsigned long long)s.cases_escalated, (unsigned long long)cs.failed,
            (unsigned long long)cs.queued, (unsigned long long)s.notices,
            (unsigned long long)s.notice_failures, (unsigned long long)s.journal_bytes,
            (unsigned long long)s.rules_lag, (unsigned long long)s.influx_lag,
            (unsigned long long)s.journal_dropped, (unsigned long long)s.influx_skipped,
            (unsigned long long)s.outbox_rows, (unsigned long long)w.points_written,
            (unsigned long long)w.write_errors);
    if (!p->influx)
        return;
    health_line(p, &buf, &s, &cs, &w, now);
    report_open_cases(p, &buf, now);
    report_rates(p, &buf, now);
    send_side_lines(p, &buf);
    gw_buf_free(&buf);
}
