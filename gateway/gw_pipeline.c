#include "gw_pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_config.h"
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

struct gw_pipeline {
    const struct gw_config *cfg;
    const struct gw_registry *reg;

    struct gw_queue *rule_queue; /* gw_reading*, ingest threads -> rule worker */
    struct rule_engine *rules;   /* rule worker's own */
    struct gw_cases *cases;      /* rule worker's own */
    struct influx_writer *influx; /* NULL when influx.enabled is false */

    pthread_t worker;
    bool worker_running;

    struct gw_adapter adapters[MAX_ADAPTERS];
    size_t n_adapters;

    /* Rule worker's scratch, reused for every reading. */
    struct rule_actions actions;
    struct gw_buf worker_lines;

    struct gw_pipeline_stats stats; /* updated with __atomic builtins */
};

static struct gw_log_limit ingest_log_limit = GW_LOG_LIMIT_INIT(5.0, 20.0);
static struct gw_log_limit worker_log_limit = GW_LOG_LIMIT_INIT(5.0, 20.0);

static void count(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Hands lines to the InfluxDB writer. The writer blocks while its own
 * queue is full, which holds the producer back instead of growing memory. */
static void forward_lines(struct gw_pipeline *p, struct gw_buf *lines, size_t n_lines)
{
    int r;

    if (!p->influx || lines->len == 0)
        return;
    r = influx_writer_submit(p->influx, lines->data, lines->len, n_lines);
    if (r < 0)
        gw_log_limited(&worker_log_limit, GW_LOG_WARN, "pipeline",
                       "%zu line(s) not forwarded to InfluxDB: %s", n_lines, strerror(-r));
}

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

enum gw_ingest_result gw_pipeline_ingest(void *pipeline, const struct gw_message *msg,
                                         char *reason, size_t reason_len)
{
    struct gw_pipeline *p = pipeline;
    const struct gw_device *device;
    struct gw_reading *reading = NULL;
    struct gw_buf line = GW_BUF_INIT;
    enum gw_ingest_result result = GW_INGEST_OK;
    int r;

    count(&p->stats.received, 1);
    reason[0] = '\0';
    device = gw_registry_device(p->reg, msg->device_id);
    if (!device) {
        snprintf(reason, reason_len, "device is not in the district's devices file");
        result = GW_INGEST_UNKNOWN_DEVICE;
        goto out;
    }
    reading = gw_reading_new(msg->device_id, msg->channel, gw_now_ns());
    if (!reading) {
        /* Refusing would make the broker redeliver into the same shortage;
         * the reading is reported as bad and counted instead. */
        snprintf(reason, reason_len, "out of memory");
        result = GW_INGEST_BAD_PAYLOAD;
        goto out;
    }
    reading->device = device;
    r = payload_decode(msg->format, msg->payload, msg->len, reading, reason, reason_len);
    if (r < 0) {
        result = decode_failure(r);
        goto out;
    }

    if (p->influx) {
        if (influx_line_reading(&line, reading) == 0)
            forward_lines(p, &line, 1);
        else
            gw_log_limited(&ingest_log_limit, GW_LOG_WARN, "pipeline",
                           "device %s: reading has no field InfluxDB can store", msg->device_id);
    }
    if (gw_queue_push(p->rule_queue, reading) < 0) {
        snprintf(reason, reason_len, "gateway is stopping");
        result = GW_INGEST_SHUTDOWN;
        goto out;
    }
    reading = NULL; /* the rule worker owns it now */
    count(&p->stats.accepted, 1);

out:
    if (result != GW_INGEST_OK && result != GW_INGEST_SHUTDOWN) {
        count_rejection(p, result);
        gw_log_limited(&ingest_log_limit, GW_LOG_WARN, "pipeline", "device %s: %s %s: %s",
                       msg->device_id, gw_channel_name(msg->channel),
                       gw_ingest_result_name(result), reason);
    }
    gw_buf_free(&line);
    gw_reading_unref(reading);
    return result;
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

    influx_line_begin(&line, &p->worker_lines, "case_event");
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

static size_t count_lines(const struct gw_buf *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static void emit_line(struct gw_pipeline *p, const struct rule_action *a)
{
    struct influx_line line;

    influx_line_begin(&line, &p->worker_lines, a->measurement);
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
    forward_lines(p, &p->worker_lines, count_lines(&p->worker_lines));
    gw_buf_reset(&p->worker_lines);
    count(&p->stats.rule_runs, 1);
}

static void *rule_worker(void *arg)
{
    struct gw_pipeline *p = arg;
    struct gw_reading *reading;

    /* Pops until the queue is closed and empty, so a stop drains it. */
    for (;;) {
        reading = gw_queue_pop(p->rule_queue, -1);
        if (!reading)
            break;
        run_rules(p, reading);
        gw_reading_unref(reading);
    }
    return NULL;
}

static void reading_unref(void *item)
{
    gw_reading_unref(item);
}

struct gw_pipeline *gw_pipeline_new(const struct gw_config *cfg, const struct gw_registry *reg,
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
    p->rule_queue = gw_queue_new((size_t)cfg->gateway.queue_size);
    if (!p->rule_queue)
        goto nomem;
    p->rules = rule_engine_new(&limits);
    if (!p->rules)
        goto nomem;
    if (rule_engine_load_dir(p->rules, cfg->rules.dir, &error) < 0)
        goto fail;
    gw_info("rules", "%zu rule(s) loaded from %s", rule_engine_rule_count(p->rules),
            cfg->rules.dir);
    p->cases = gw_cases_open(&case_options, &error);
    if (!p->cases)
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

    if (!cfg->influx.enabled)
        return 0;
    p->influx = influx_writer_start(&options, &error);
    if (!p->influx) {
        gw_error("influx", "cannot start the InfluxDB writer: %s", error ? error : "unknown");
        free(error);
        return -EIO;
    }
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
    int r = start_influx(p);

    if (r < 0)
        return r;
    r = pthread_create(&p->worker, NULL, rule_worker, p);
    if (r != 0) {
        gw_error("pipeline", "cannot start the rule worker: %s", strerror(r));
        return -r;
    }
    p->worker_running = true;
    return start_adapters(p);
}

void gw_pipeline_free(struct gw_pipeline *p)
{
    if (!p)
        return;
    /* Inputs first, so everything already taken can be carried through. */
    for (size_t i = p->n_adapters; i-- > 0;) {
        struct gw_adapter *a = &p->adapters[i];
        a->ops->stop(a);
        a->ops->destroy(a);
    }
    if (p->rule_queue)
        gw_queue_close(p->rule_queue);
    if (p->worker_running)
        pthread_join(p->worker, NULL);
    if (p->influx)
        influx_writer_stop(p->influx, INFLUX_DRAIN_MS);
    gw_cases_close(p->cases);
    rule_engine_free(p->rules);
    rule_actions_free(&p->actions);
    gw_buf_free(&p->worker_lines);
    gw_queue_free(p->rule_queue, reading_unref);
    free(p);
}

void gw_pipeline_stats(struct gw_pipeline *p, struct gw_pipeline_stats *ret)
{
    const struct gw_pipeline_stats *s = &p->stats;

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
    ret->queue_depth = gw_queue_depth(p->rule_queue);
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
            "rule errors %llu, cases opened %llu, queue %llu, points written %llu, "
            "influx errors %llu",
            (unsigned long long)s.received, (unsigned long long)s.accepted,
            (unsigned long long)s.bad_payload, (unsigned long long)s.unknown_device,
            (unsigned long long)s.rule_errors, (unsigned long long)s.cases_opened,
            (unsigned long long)s.queue_depth, (unsigned long long)w.points_written,
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
    influx_line_field_int(&line, "rule_errors", (int64_t)s.rule_errors);
    influx_line_field_int(&line, "cases_opened", (int64_t)s.cases_opened);
    influx_line_field_int(&line, "case_events", (int64_t)s.case_events);
    influx_line_field_int(&line, "store_errors", (int64_t)s.store_errors);
    influx_line_field_int(&line, "queue_depth", (int64_t)s.queue_depth);
    influx_line_field_int(&line, "points_written", (int64_t)w.points_written);
    influx_line_field_int(&line, "points_rejected", (int64_t)w.points_rejected);
    influx_line_field_int(&line, "points_dropped", (int64_t)w.points_dropped);
    influx_line_field_int(&line, "write_errors", (int64_t)w.write_errors);
    influx_line_field_int(&line, "write_latency_us", (int64_t)w.last_latency_us);
    if (influx_line_end(&line, gw_now_ns()) == 0)
        forward_lines(p, &buf, 1);
    gw_buf_free(&buf);
}
