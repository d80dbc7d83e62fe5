/* gw_casesvc: the case service, the one writer of cases.
 *
 * Owns a thread and a writing gw_cases. Rule workers hand it their
 * open_case/clear_case actions, the HTTP API its transitions and reports;
 * the thread carries them out in batches (one transaction per batch, each
 * command all-or-nothing inside it), so an alarm storm costs one commit
 * per batch instead of one per alarm, and two alarms a millisecond apart
 * meet one writer and make one case. It also runs the timer that
 * escalates cases past their step's limit. After each commit it tells
 * on_event about every change, in order, on its own thread (the pipeline
 * turns them into MQTT notices and log lines); nothing is told before it
 * is durable. The case in an event carries no trigger
 * reading (kilobytes, times a whole batch); the API reads it from the
 * store.
 *
 * Its queue is separate from the readings' and bounded: a full queue
 * blocks the rule worker that submits (back-pressure), never drops. A rule
 * worker learns through gw_casesvc_durable which of its submissions are
 * committed, and commits its journal position no further, so a case
 * action is durable before the reading that caused it counts as done.
 *
 * The InfluxDB outbox (store.h): when format_event is set, the line
 * protocol of every event is written to the outbox table in the very
 * transaction of the change (format_event is called as the event is
 * raised, inside the batch), so a case_event point exists iff its change
 * committed; a rule worker's emit() lines come as commands of their own
 * (gw_casesvc_submit_lines) and land in the outbox the same way, durable
 * before their reading counts as done. The service knows nothing of line
 * protocol: the formatter does. The InfluxDB feeder empties the outbox.
 */
#ifndef GW_CASESVC_H
#define GW_CASESVC_H

#include <stddef.h>
#include <stdint.h>

#include "gw_cases.h"

struct gw_buf;
struct gw_reading;
struct rule_action;

/* Appends the event's whole lines (each ending in '\n') to lines, inside
 * the batch's transaction, on the service's thread; the event lives only
 * during the call. Returns 0; -ENOMEM undoes the change the event belongs
 * to, like a store failure (tried again alone); any other negative errno
 * means the event has no line (the formatter logs why) and the change
 * stands. On failure lines must be left as they were. */
typedef int (*gw_case_format_fn)(const struct gw_case_event *event, struct gw_buf *lines,
                                 void *userdata);

struct gw_casesvc_options {
    struct gw_cases_options cases; /* the writer's gw_cases */
    unsigned n_workers;            /* rule workers that will submit */
    size_t queue_size;             /* commands waiting at most (0: 4096) */
    int batch_max;                 /* commands per transaction at most (0: 512) */
    int timer_interval_ms;         /* escalation scans at least this often (0: 1000) */
    gw_case_event_fn on_event;     /* after commit, on the service's thread; may be NULL */
    gw_case_format_fn format_event; /* inside the batch, into the outbox; NULL: no outbox lines */
    void *userdata;                /* both callbacks' */
};

struct gw_casesvc_stats {
    uint64_t commands;  /* carried out (rule actions, transitions, reports) */
    uint64_t failed;    /* refused by the loop or the store */
    uint64_t batches;   /* transactions committed */
    uint64_t escalated; /* by the timer */
    uint64_t events;
    uint64_t queued;    /* waiting now */
    uint64_t outbox_rows;  /* rows written to the outbox (one per transaction that had lines) */
    uint64_t outbox_lines; /* lines in them */
};

struct gw_casesvc;

/* Opens the writer's store. On failure returns NULL and sets *ret_error. */
struct gw_casesvc *gw_casesvc_new(const struct gw_casesvc_options *options, char **ret_error);
int gw_casesvc_start(struct gw_casesvc *svc);
/* Carries out everything queued, commits, stops the thread. */
void gw_casesvc_stop(struct gw_casesvc *svc);
void gw_casesvc_free(struct gw_casesvc *svc);

/* Rule worker `worker` hands over an open_case or clear_case action of the
 * reading at journal position seq (positions of one worker increase).
 * Takes the action's contents (the item is left zeroed, so clearing the
 * list later frees nothing twice) and a reference on the reading. Blocks
 * while the queue is full. Returns 0, or -ESHUTDOWN once stopping. */
int gw_casesvc_submit(struct gw_casesvc *svc, unsigned worker, uint64_t seq,
                      struct rule_action *action, struct gw_reading *reading);
/* Rule worker `worker` hands over whole lines of line protocol (len
 * bytes, each ending in '\n': its emit()s) of the reading at journal
 * position seq, to be written to the outbox; they count for
 * gw_casesvc_durable like an action. Copies the text. Blocks while the
 * queue is full. Returns 0, -EINVAL (no lines, not whole lines), -ENOMEM,
 * or -ESHUTDOWN once stopping. */
int gw_casesvc_submit_lines(struct gw_casesvc *svc, unsigned worker, uint64_t seq,
                            const char *lines, size_t len);
/* Rows written to the outbox so far: a cheap way for the feeder to learn
 * that there is something new to read. Thread-safe, lock-free. */
uint64_t gw_casesvc_outbox_rows(struct gw_casesvc *svc);

/* The position up to which worker's actions are all committed (or given
 * up on, counted as failed): just before its oldest action still pending,
 * or its last submitted position when none is. A worker commits its
 * journal position no further. */
uint64_t gw_casesvc_durable(struct gw_casesvc *svc, unsigned worker);

/* The API's writes: queued like the rest, answered once committed. Return
 * what gw_cases_transition / gw_cases_report return, with why written
 * (a sentence for the error's detail) on failure; -ESHUTDOWN once
 * stopping. */
int gw_casesvc_transition(struct gw_casesvc *svc, const struct gw_case_request *request,
                          int64_t *ret_version, char *why, size_t why_len);
int gw_casesvc_report(struct gw_casesvc *svc, const struct gw_case_report *report,
                      int64_t *ret_id, char *why, size_t why_len);

void gw_casesvc_stats(struct gw_casesvc *svc, struct gw_casesvc_stats *ret_stats);

#endif
