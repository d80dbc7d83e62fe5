/* gw_pipeline: the path of a reading through the gateway (DESIGN.md,
 * "Data flow"): adapters -> decode -> registry lookup -> journal, and from
 * the journal its consumers: the rule workers (Lua rules -> the case
 * service) and the InfluxDB feeder (line protocol -> writer).
 *
 * Owns the adapters it starts, the journal and its consumer threads, the
 * rule engines, the case service (the one writer of cases, whose events
 * it turns into case_event points, written to the store's InfluxDB outbox
 * in the change's own transaction, and MQTT notices) and the InfluxDB
 * writer, fed from the journal (readings), the outbox (case events, rules'
 * emits) and, best effort, the periodic report (health, case figures). An adapter's ingest call returns once the reading is in the
 * journal, so what an adapter acknowledges survives a crash. Does not own
 * the configuration or the registry, which must outlive it (the registry
 * is written only to admit quarantined devices and to keep devices' live
 * state).
 */
#ifndef GW_PIPELINE_H
#define GW_PIPELINE_H

#include <stdint.h>

#include "gw_adapter.h"

struct gw_casesvc;
struct gw_config;
struct gw_device;
struct gw_pipeline;
struct gw_reading;
struct gw_registry;

struct gw_pipeline_stats {
    uint64_t received;       /* messages the adapters handed in */
    uint64_t accepted;       /* decoded, resolved and queued */
    uint64_t bad_payload;
    uint64_t unknown_device;
    uint64_t too_large;
    uint64_t unsupported;
    uint64_t rule_runs;      /* readings the rule worker finished */
    uint64_t rule_errors;    /* rule calls that failed */
    uint64_t shadow_actions; /* actions of shadow rules, logged instead of carried out */
    uint64_t case_events;     /* changes the case service made durable */
    uint64_t cases_opened;
    uint64_t cases_escalated; /* steps past their time limit, escalated by the timer */
    uint64_t notices;         /* case notices the broker acknowledged */
    uint64_t notice_failures; /* case notices refused, dropped (queue full) or given up */
    uint64_t store_errors;
    uint64_t journal_errors;  /* appends the file system refused (then retried) */
    uint64_t records_skipped; /* journal records no consumer could use */
    uint64_t lines_lost;      /* lines for InfluxDB given up on (out of memory, stopping) */
    uint64_t side_dropped;    /* best-effort lines (health, figures) dropped: side queue full */
    /* Journal records the InfluxDB feeder never read: dropped under
     * drop_oldest before it got there. Exactly the readings InfluxDB
     * misses; journal_dropped also counts records the feeder had read and
     * still delivers (the journal counts what some consumer had not
     * committed). */
    uint64_t influx_skipped;
    uint64_t outbox_rows;     /* rows waiting in the InfluxDB outbox (case events, emits) */
    uint64_t journal_bytes;
    uint64_t journal_dropped; /* records lost to journal.full_policy: drop_oldest */
    uint64_t rules_lag;       /* records the slowest rule worker has not committed */
    uint64_t influx_lag;      /* records InfluxDB has not answered */
    uint64_t quarantined;     /* unknown devices admitted to the "unassigned" grid */
    /* The InfluxDB writer's (0 when InfluxDB is off). */
    uint64_t points_written;   /* lines InfluxDB kept */
    uint64_t points_rejected;  /* lines it refused (400) */
    uint64_t points_dead_lettered; /* of those, appended to the dead-letter file */
    uint64_t write_errors;     /* requests that failed and were retried */
    uint64_t write_latency_us; /* the last request's */
};

/* Builds everything but starts nothing. On failure returns NULL and sets
 * *ret_error (malloc'd, the caller frees). */
struct gw_pipeline *gw_pipeline_new(const struct gw_config *cfg, struct gw_registry *reg,
                                    char **ret_error);
/* Starts the rule worker, the InfluxDB writer and every adapter the
 * configuration enables. Returns 0 or a negative errno (logged). */
int gw_pipeline_start(struct gw_pipeline *p);
/* Stops the adapters, lets the consumers finish what the journal holds
 * (the rule workers and InfluxDB get up to 10 s each; what they do not
 * take stays in the journal for the next start), then closes the journal
 * and the store. NULL is fine. */
void gw_pipeline_free(struct gw_pipeline *p);

/* The ingest function adapters call (a gw_ingest_fn). */
enum gw_ingest_result gw_pipeline_ingest(void *pipeline, const struct gw_message *msg,
                                         char *reason, size_t reason_len);

/* Loads the rule directory afresh (every file checked first, every error
 * logged as file:line); on success each worker switches to the new rules
 * between two readings, keeping per-device state; on any error the running
 * rules stay. Returns 0 or a negative errno. Thread-safe. */
int gw_pipeline_reload(struct gw_pipeline *p);

void gw_pipeline_stats(struct gw_pipeline *p, struct gw_pipeline_stats *ret_stats);

/* The case service (the one writer of cases) the API hands its writes
 * to; valid from gw_pipeline_new to gw_pipeline_free. */
struct gw_casesvc *gw_pipeline_casesvc(struct gw_pipeline *p);

/* The last reading (telemetry) the rule workers handled from device, with
 * a reference the caller drops with gw_reading_unref; NULL when none since
 * the start. Thread-safe. */
struct gw_reading *gw_pipeline_last_reading(struct gw_pipeline *p, const struct gw_device *device);
/* Logs the gateway's health and writes it to InfluxDB, best effort, as
 * measurement `gridgate`, with the case figures for Grafana: `case_open`
 * (open and overdue cases per street and category, and a zero for a pair
 * that had some at the last report) and `case_rates` (gw_cases_figures
 * over the last 30 days per street and for street="district"). Called by
 * the daemon, from one thread, every stats interval and at stop. */
void gw_pipeline_report(struct gw_pipeline *p);

#endif
