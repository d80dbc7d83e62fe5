#include "gw_pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_config.h"
#include "gw_journal.h"
#include "gw_log.h"
#include "gw_queue.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "influx_line.h"
#include "influx_writer.h"
#include "payload.h"
#include "rule_engine.h"

#define MAX_ADAPTERS 8
/* How long a stop waits for InfluxDB to take what is queued. */
#define INFLUX_DRAIN_MS 10000
/* Records a consumer handles between two commits of its position. */
#define COMMIT_EVERY 256
/* Lines the InfluxDB feeder gathers before handing them to the writer. */
#define FEED_BATCH_LINES 1000
/* Quarantined devices at most (district.unknown_devices: quarantine). */
#define QUARANTINE_MAX 10000
/* Lines from the rule worker and the health report waiting for the feeder. */
#define SIDE_QUEUE_LINES 4096

static const char *const CONSUMER_RULES = "rules";
static const char *const CONSUMER_INFLUX = "influx";

/* A run of lines handed to the writer, and the last journal record among
 * them (0: none, lines from the side queue). */
struct feed_mark {
    uint64_t lines_end; /* the writer's line count once these are done */
    uint64_t seq;
};

struct gw_pipeline {
    const struct gw_config *cfg;
    struct gw_registry *reg;
    struct payload_limits limits;
    bool quarantine;

    struct gw_journal *journal;

    /* The rule worker: journal cursor "rules" -> Lua -> cases. */
    struct rule_engine *rules;
    struct gw_cases *cases;
    struct gw_journal_cursor *rule_cursor;
    pthread_t rule_thread;
    bool rule_running;
    struct rule_actions actions;
    struct gw_buf case_lines;

    /* The InfluxDB feeder: journal cursor "influx" and the side queue ->
     * line protocol -> writer; it commits what InfluxDB has answered. */
    struct influx_writer *influx;
    struct gw_journal_cursor *influx_cursor;
    struct gw_queue *side_lines; /* malloc'd char* of whole lines */
    pthread_t feed_thread;
    bool feed_running;
    struct feed_mark *marks; /* ring of what the writer has not answered yet */
    size_t marks_cap, marks_head, marks_count;
    uint64_t lines_submitted;

    struct gw_adapter adapters[MAX_ADAPTERS];
    size_t n_adapters;
    int stopping;

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

    gw_device_touch(device, now);
    if (msg->channel == GW_CHANNEL_STATUS) {
        const struct gw_field *status = gw_reading_field(reading, "status");
        gw_device_set_online(device, status && strcmp(status->value.u.string, "online") == 0, now);
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

/* Reads the next record as a reading with its device resolved. Records
 * that cannot be decoded (a journal written by a newer gateway) or whose
 * device is gone (the devices file changed between runs) are skipped and
 * counted: *ret_reading is then NULL with 0 returned. */
static int next_reading(struct gw_pipeline *p, struct gw_journal_cursor *cursor, int timeout_ms,
                        struct gw_reading **ret_reading, uint64_t *ret_seq)
{
    const void *data;
    size_t len;
    struct gw_reading *reading;
    int r = gw_journal_read(cursor, timeout_ms, &data, &len, ret_seq);

    *ret_reading = NULL;
    if (r < 0)
        return r;
    reading = gw_reading_decode(data, len);
    if (reading) {
        reading->device = resolve_device(p, reading->device_id);
        if (!reading->device) {
            gw_reading_unref(reading);
            reading = NULL;
        }
    }
    if (!reading) {
        count(&p->stats.records_skipped, 1);
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "journal record %llu skipped: undecodable, or its device is no longer known",
                       (unsigned long long)*ret_seq);
    }
    *ret_reading = reading;
    return 0;
}

/* ---- the rule worker ---------------------------------------------------- */

/* Lines for InfluxDB that are not journal records (case events, health)
 * go through the feeder too, so that it alone talks to the writer and can
 * tell which journal records InfluxDB has answered. */
static void send_side_lines(struct gw_pipeline *p, struct gw_buf *lines)
{
    char *copy;

    if (!p->influx || lines->len == 0)
        return;
    copy = strdup(lines->data);
    if (!copy || gw_queue_push(p->side_lines, copy) < 0) {
        free(copy);
        count(&p->stats.lines_lost, 1);
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "lines for InfluxDB lost: out of memory or stopping");
    }
    gw_buf_reset(lines);
}

/* DESIGN.md's case_event point: tags grid, community, street, rule,
 * category, severity, state; fields case_id, title, escalation, plus the
 * kind of change and the count so a dashboard can tell them apart. */
static void on_case_event(const struct gw_case_event *ev, void *userdata)
{
    struct gw_pipeline *p = userdata;
    struct influx_line line;

    count(&p->stats.case_events, 1);
    if (strcmp(ev->kind, "opened") == 0)
        count(&p->stats.cases_opened, 1);
    gw_info("cases", "case %lld %s: %s (%s, %s) grid %s, state %s%s%s", (long long)ev->case_id,
            ev->kind, ev->title, ev->category, gw_severity_name(ev->severity), ev->grid->id,
            gw_case_state_name(ev->state), ev->assignee_role ? ", to " : "",
            ev->assignee_role ? ev->assignee_role : "");

    influx_line_begin(&line, &p->case_lines, "case_event");
    influx_line_tag(&line, "category", ev->category);
    influx_line_tag(&line, "community", ev->grid->community_id);
    influx_line_tag(&line, "grid", ev->grid->id);
    influx_line_tag(&line, "rule", ev->rule);
    influx_line_tag(&line, "severity", gw_severity_name(ev->severity));
    influx_line_tag(&line, "state", gw_case_state_name(ev->state));
    influx_line_tag(&line, "street", ev->grid->street_id);
    influx_line_field_int(&line, "case_id", ev->case_id);
    influx_line_field_string(&line, "title", ev->title);
    influx_line_field_int(&line, "escalation", ev->escalation);
    influx_line_field_string(&line, "event", ev->kind);
    influx_line_field_int(&line, "count", ev->count);
    if (ev->assignee_role)
        influx_line_field_string(&line, "role", ev->assignee_role);
    if (influx_line_end(&line, ev->ts_ns) < 0)
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "case %lld: event could not be written as line protocol",
                       (long long)ev->case_id);
}

static void emit_line(struct gw_pipeline *p, const struct rule_action *a)
{
    struct influx_line line;

    influx_line_begin(&line, &p->case_lines, a->measurement);
    for (size_t i = 0; i < a->n_tags; i++)
        influx_line_tag(&line, a->tags[i].key, a->tags[i].value);
    for (size_t i = 0; i < a->n_fields; i++)
        influx_line_field(&line, a->fields[i].name, &a->fields[i].value);
    if (influx_line_end(&line, a->ts_ns) < 0)
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "rule %s (%s): emit(\"%s\") is not a valid InfluxDB point", a->rule,
                       a->file, a->measurement);
}

static void run_rules(struct gw_pipeline *p, struct gw_reading *reading)
{
    int failed = rule_engine_on_reading(p->rules, reading, &p->actions);

    if (failed > 0)
        count(&p->stats.rule_errors, (uint64_t)failed);
    for (size_t i = 0; i < p->actions.n; i++) {
        const struct rule_action *a = &p->actions.items[i];
        int r;

        if (a->kind == RULE_ACTION_EMIT) {
            emit_line(p, a);
            continue;
        }
        r = gw_cases_apply(p->cases, a, reading, on_case_event, p);
        if (r < 0) {
            count(&p->stats.store_errors, 1);
            gw_log_limited(&worker_log_limit, GW_LOG_ERROR, "pipeline",
                           "rule %s, device %s: case store refused the action: %s", a->rule,
                           reading->device_id, strerror(-r));
        }
    }
    rule_actions_clear(&p->actions);
    send_side_lines(p, &p->case_lines);
    count(&p->stats.rule_runs, 1);
}

static void commit(struct gw_journal_cursor *cursor, uint64_t seq, const char *consumer)
{
    int r = gw_journal_commit(cursor, seq);

    if (r < 0)
        gw_log_limited(&journal_log_limit, GW_LOG_ERROR, "pipeline",
                       "%s: cannot commit journal position %llu: %s", consumer,
                       (unsigned long long)seq, strerror(-r));
}

/* Reads the journal from its committed position until shutdown; a case
 * action is in the store (committed) before its record's position is. */
static void *rule_worker(void *arg)
{
    struct gw_pipeline *p = arg;
    uint64_t seq = 0, uncommitted = 0;

    for (;;) {
        struct gw_reading *reading;
        /* Block only when nothing is left to commit. */
        int r = next_reading(p, p->rule_cursor, uncommitted ? 0 : 200, &reading, &seq);

        if (r == 0) {
            if (reading)
                run_rules(p, reading);
            gw_reading_unref(reading);
            if (++uncommitted < COMMIT_EVERY)
                continue;
        } else if (r != -EAGAIN && r != -ESHUTDOWN) {
            gw_log_limited(&journal_log_limit, GW_LOG_ERROR, "pipeline",
                           "rules: cannot read the journal: %s", strerror(-r));
            usleep(100 * 1000);
        }
        if (uncommitted) {
            commit(p->rule_cursor, seq, CONSUMER_RULES);
            uncommitted = 0;
        }
        if (r == -ESHUTDOWN)
            break;
    }
    return NULL;
}

/* ---- the InfluxDB feeder ------------------------------------------------ */

static int push_mark(struct gw_pipeline *p, uint64_t lines_end, uint64_t seq)
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
        (struct feed_mark){ .lines_end = lines_end, .seq = seq };
    p->marks_count++;
    return 0;
}

/* Commits the journal position of everything InfluxDB has answered. */
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
        p->marks_head = (p->marks_head + 1) % p->marks_cap;
        p->marks_count--;
    }
    if (seq)
        commit(p->influx_cursor, seq, CONSUMER_INFLUX);
}

/* Hands n whole lines to the writer (blocking while its queue is full)
 * and remembers which journal record they end with. */
static void feed(struct gw_pipeline *p, struct gw_buf *lines, size_t n, uint64_t last_seq)
{
    int r;

    if (n == 0)
        return;
    r = influx_writer_submit(p->influx, lines->data, lines->len, n);
    if (r < 0) {
        count(&p->stats.lines_lost, n);
        gw_log_limited(&worker_log_limit, GW_LOG_ERROR, "pipeline",
                       "%zu line(s) not handed to the InfluxDB writer: %s", n, strerror(-r));
    } else {
        p->lines_submitted += n;
        if (push_mark(p, p->lines_submitted, last_seq) < 0)
            gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                           "out of memory: journal position for InfluxDB not advanced");
    }
    gw_buf_reset(lines);
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

static void *influx_feeder(void *arg)
{
    struct gw_pipeline *p = arg;
    struct gw_buf lines = GW_BUF_INIT;
    size_t n_lines = 0;
    uint64_t seq = 0, pending_seq = 0;
    bool journal_done = false;

    while (!journal_done || !gw_queue_closed(p->side_lines) || gw_queue_depth(p->side_lines)) {
        struct gw_reading *reading;
        char *side;
        int r = journal_done ? -ESHUTDOWN
                             : next_reading(p, p->influx_cursor, n_lines ? 0 : 100, &reading, &seq);

        if (r == 0) {
            if (reading) {
                int lr = reading->channel == GW_CHANNEL_STATUS ? status_line(&lines, reading)
                                                                : influx_line_reading(&lines, reading);
                if (lr == 0)
                    n_lines++;
                else
                    gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                                   "device %s: reading has no field InfluxDB can store",
                                   reading->device_id);
            }
            gw_reading_unref(reading);
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
            feed(p, &lines, n_lines, pending_seq);
        else if (pending_seq && push_mark(p, p->lines_submitted, pending_seq) < 0)
            gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                           "out of memory: journal position for InfluxDB not advanced");
        pending_seq = 0;
        n_lines = 0;
        while ((side = gw_queue_pop(p->side_lines, journal_done ? 100 : 0))) {
            struct gw_buf b = { side, strlen(side), strlen(side) + 1 };
            size_t n = 0;

            for (const char *c = side; (c = strchr(c, '\n')); c++)
                n++;
            feed(p, &b, n, 0);
            free(side);
        }
        commit_answered(p);
    }
    /* Everything is with the writer: let it finish, then commit what it
     * answered. What it could not send stays in the journal for next time. */
    influx_writer_shutdown(p->influx, INFLUX_DRAIN_MS);
    commit_answered(p);
    gw_buf_free(&lines);
    return NULL;
}

/* ---- building, starting, stopping -------------------------------------- */

static int open_journal(struct gw_pipeline *p, char **ret_error)
{
    const struct gw_config *cfg = p->cfg;
    const char *consumers[] = { CONSUMER_RULES, CONSUMER_INFLUX };
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
        .n_consumers = cfg->influx.enabled ? 2 : 1,
    };

    /* The journal needs room for two segments: the one being written and
     * the one consumers are finishing. */
    if (options.segment_bytes > options.max_bytes / 2)
        options.segment_bytes = options.max_bytes / 2;
    p->journal = gw_journal_open(&options, ret_error);
    if (!p->journal)
        return -EIO;
    p->rule_cursor = gw_journal_cursor_open(p->journal, CONSUMER_RULES);
    if (cfg->influx.enabled)
        p->influx_cursor = gw_journal_cursor_open(p->journal, CONSUMER_INFLUX);
    if (!p->rule_cursor || (cfg->influx.enabled && !p->influx_cursor)) {
        *ret_error = strdup("cannot open the journal's consumer positions");
        return -EIO;
    }
    return 0;
}

struct gw_pipeline *gw_pipeline_new(const struct gw_config *cfg, struct gw_registry *reg,
                                    char **ret_error)
{
    struct gw_pipeline *p = calloc(1, sizeof(*p));
    struct rule_limits limits = {
        .instruction_budget = cfg->rules.instruction_budget,
        .memory_bytes = (size_t)cfg->rules.memory_kb * 1024,
    };
    struct gw_cases_options case_options = {
        .db_path = cfg->store.path,
        .auto_dispatch = cfg->cases.auto_dispatch,
    };
    char *error = NULL;

    if (!p)
        goto nomem;
    p->cfg = cfg;
    p->reg = reg;
    p->limits = (struct payload_limits){
        .max_bytes = (size_t)cfg->payload.max_bytes,
        .max_fields = (size_t)cfg->payload.max_fields,
        .max_string = (size_t)cfg->payload.max_string,
    };
    p->quarantine = strcmp(cfg->district.unknown_devices, "quarantine") == 0;
    if (p->quarantine && gw_registry_enable_quarantine(reg, QUARANTINE_MAX) < 0)
        goto nomem;
    p->side_lines = gw_queue_new(SIDE_QUEUE_LINES);
    p->rules = rule_engine_new(&limits);
    if (!p->side_lines || !p->rules)
        goto nomem;
    if (rule_engine_load_dir(p->rules, cfg->rules.dir, &error) < 0)
        goto fail;
    gw_info("rules", "%zu rule(s) loaded from %s", rule_engine_rule_count(p->rules),
            cfg->rules.dir);
    p->cases = gw_cases_open(&case_options, &error);
    if (!p->cases)
        goto fail;
    if (open_journal(p, &error) < 0)
        goto fail;
    return p;

nomem:
    error = strdup("out of memory building the pipeline");
fail:
    gw_pipeline_free(p);
    *ret_error = error;
    return NULL;
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
        .batch_size = cfg->influx.batch_size,
        .flush_interval_ms = cfg->influx.flush_interval_ms,
        .timeout_ms = cfg->influx.timeout_ms,
        .queue_bytes = (size_t)cfg->gateway.queue_size * 512,
    };
    char *error = NULL;
    int r;

    if (!cfg->influx.enabled)
        return 0;
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

static int start_adapters(struct gw_pipeline *p)
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
        r = a->ops->start(a);
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

int gw_pipeline_start(struct gw_pipeline *p)
{
    struct gw_journal_stats js;
    int r = start_influx(p);

    if (r < 0)
        return r;
    r = pthread_create(&p->rule_thread, NULL, rule_worker, p);
    if (r != 0) {
        gw_error("pipeline", "cannot start the rule worker: %s", strerror(r));
        return -r;
    }
    p->rule_running = true;
    gw_journal_stats(p->journal, &js);
    gw_info("journal", "%s: %llu segment(s), %llu bytes, rules %llu and influx %llu records behind",
            p->cfg->journal.dir, (unsigned long long)js.segments, (unsigned long long)js.bytes,
            (unsigned long long)gw_journal_cursor_lag(p->rule_cursor),
            (unsigned long long)(p->influx_cursor ? gw_journal_cursor_lag(p->influx_cursor) : 0));
    return start_adapters(p);
}

void gw_pipeline_free(struct gw_pipeline *p)
{
    if (!p)
        return;
    __atomic_store_n(&p->stopping, 1, __ATOMIC_RELEASE);
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
    if (p->rule_running)
        pthread_join(p->rule_thread, NULL);
    if (p->side_lines)
        gw_queue_close(p->side_lines);
    if (p->feed_running)
        pthread_join(p->feed_thread, NULL);
    influx_writer_stop(p->influx, INFLUX_DRAIN_MS);
    gw_journal_cursor_free(p->rule_cursor);
    gw_journal_cursor_free(p->influx_cursor);
    gw_journal_close(p->journal);
    gw_cases_close(p->cases);
    rule_engine_free(p->rules);
    rule_actions_free(&p->actions);
    gw_buf_free(&p->case_lines);
    gw_queue_free(p->side_lines, free);
    free(p->marks);
    free(p);
}

void gw_pipeline_stats(struct gw_pipeline *p, struct gw_pipeline_stats *ret)
{
    const struct gw_pipeline_stats *s = &p->stats;
    struct gw_journal_stats js;

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
    ret->store_errors = load(&s->store_errors);
    ret->journal_errors = load(&s->journal_errors);
    ret->records_skipped = load(&s->records_skipped);
    ret->lines_lost = load(&s->lines_lost);
    gw_journal_stats(p->journal, &js);
    ret->journal_bytes = js.bytes;
    ret->journal_dropped = js.dropped;
    ret->rules_lag = gw_journal_cursor_lag(p->rule_cursor);
    ret->influx_lag = p->influx_cursor ? gw_journal_cursor_lag(p->influx_cursor) : 0;
    ret->quarantined = gw_registry_quarantined_count(p->reg);
}

void gw_pipeline_report(struct gw_pipeline *p)
{
    struct gw_pipeline_stats s;
    struct influx_writer_stats w = { 0 };
    struct gw_buf buf = GW_BUF_INIT;
    struct influx_line line;

    gw_pipeline_stats(p, &s);
    if (p->influx)
        influx_writer_stats(p->influx, &w);
    gw_info("stats",
            "received %llu, accepted %llu, bad payload %llu, unknown device %llu, "
            "rule errors %llu, cases opened %llu, journal %llu bytes (rules %llu, influx %llu "
            "behind), points written %llu, influx errors %llu",
            (unsigned long long)s.received, (unsigned long long)s.accepted,
            (unsigned long long)s.bad_payload, (unsigned long long)s.unknown_device,
            (unsigned long long)s.rule_errors, (unsigned long long)s.cases_opened,
            (unsigned long long)s.journal_bytes, (unsigned long long)s.rules_lag,
            (unsigned long long)s.influx_lag, (unsigned long long)w.points_written,
            (unsigned long long)w.write_errors);
    if (!p->influx)
        return;

    influx_line_begin(&line, &buf, "gridgate");
    influx_line_tag(&line, "instance", p->cfg->mqtt.client_id);
    influx_line_field_int(&line, "readings_in", (int64_t)s.received);
    influx_line_field_int(&line, "readings_accepted", (int64_t)s.accepted);
    influx_line_field_int(&line, "bad_payload", (int64_t)s.bad_payload);
    influx_line_field_int(&line, "unknown_device", (int64_t)s.unknown_device);
    influx_line_field_int(&line, "too_large", (int64_t)s.too_large);
    influx_line_field_int(&line, "unsupported", (int64_t)s.unsupported);
    influx_line_field_int(&line, "quarantined", (int64_t)s.quarantined);
    influx_line_field_int(&line, "rule_errors", (int64_t)s.rule_errors);
    influx_line_field_int(&line, "cases_opened", (int64_t)s.cases_opened);
    influx_line_field_int(&line, "case_events", (int64_t)s.case_events);
    influx_line_field_int(&line, "store_errors", (int64_t)s.store_errors);
    influx_line_field_int(&line, "journal_bytes", (int64_t)s.journal_bytes);
    influx_line_field_int(&line, "journal_dropped", (int64_t)s.journal_dropped);
    influx_line_field_int(&line, "journal_errors", (int64_t)s.journal_errors);
    influx_line_field_int(&line, "rules_lag", (int64_t)s.rules_lag);
    influx_line_field_int(&line, "influx_lag", (int64_t)s.influx_lag);
    influx_line_field_int(&line, "points_written", (int64_t)w.points_written);
    influx_line_field_int(&line, "points_rejected", (int64_t)w.points_rejected);
    influx_line_field_int(&line, "points_dropped", (int64_t)w.points_dropped);
    influx_line_field_int(&line, "write_errors", (int64_t)w.write_errors);
    influx_line_field_int(&line, "write_latency_us", (int64_t)w.last_latency_us);
    if (influx_line_end(&line, gw_now_ns()) == 0)
        send_side_lines(p, &buf);
    gw_buf_free(&buf);
}
