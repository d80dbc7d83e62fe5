#include "gw_casesvc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_buf.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "rule_engine.h"
#include "store.h"

#define DEFAULT_QUEUE_SIZE 4096
#define DEFAULT_BATCH_MAX 512
#define DEFAULT_TIMER_INTERVAL_MS 1000
/* A deadline wakes the timer this much after it, so the wall clock has
 * surely passed it when gw_cases_escalate_due compares. */
#define DEADLINE_SLACK_NS ((int64_t)1000000)

static struct gw_log_limit store_log_limit = GW_LOG_LIMIT_INIT(0.5, 5.0);

enum command_kind {
    CMD_ACTION,     /* a rule worker's open_case / clear_case */
    CMD_TRANSITION, /* the API's POST /cases/{id}/{op} */
    CMD_REPORT,     /* the API's POST /cases */
    CMD_LINES,      /* a rule worker's emit() lines, for the outbox */
};

/* An API call waiting for its answer; lives on the caller's stack, under
 * the service's lock. */
struct call {
    pthread_cond_t answered;
    bool done;
    int rc;
    int64_t value; /* the new version, or the new case's id */
    const char *why;
};

/* A deep copy of one gw_case_event, held until its batch committed. The
 * case's trigger is not copied: listeners (notices, InfluxDB) render the
 * case without it, and it is the one column that may be kilobytes long,
 * times every event of a batch. */
struct event_copy {
    struct event_copy *next;
    char *kind;
    char *actor;
    char *note;
    bool has_from;
    enum gw_case_state from;
    int64_t ts_ns;
    struct store_case c;
};

struct command {
    struct gw_casesvc *svc;
    struct command *next;           /* in the queue, then in its batch */
    struct command *next_of_worker; /* CMD_ACTION: the worker's not yet durable ones */
    enum command_kind kind;
    /* CMD_ACTION: owned */
    unsigned worker;
    uint64_t seq;
    struct rule_action action;
    struct gw_reading *reading;
    /* CMD_LINES: owned */
    char *lines;
    size_t len;
    /* CMD_TRANSITION, CMD_REPORT: the caller's, alive while it waits */
    const struct gw_case_request *request;
    const struct gw_case_report *report;
    struct call *call;
    /* The outcome of its last run. */
    int rc;
    int64_t value;
    const char *why;
    bool retry; /* failed inside a committed batch for a reason worth one more try */
    struct event_copy *events, **events_tail;
};

/* What one rule worker handed over and is not durable yet, oldest first;
 * the service carries commands out in queue order, so a worker's oldest
 * pending command is always the next of its own to finish. */
struct worker_pos {
    struct command *head, *tail;
    uint64_t last_submitted;
};

struct gw_casesvc {
    struct gw_casesvc_options o;
    struct gw_cases *cases; /* the service thread's alone once started */
    pthread_t thread;
    bool started;

    /* The queue, the workers' positions and `stopping` are under lock.
     * wake (CLOCK_MONOTONIC) tells the thread of work or of a stop; room
     * tells submitters of space. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t room;
    bool sync_ready;
    struct command *head, *tail;
    size_t depth;
    bool stopping;
    struct worker_pos *workers;

    /* The timer, the service thread's own. */
    int64_t next_scan_mono;
    int64_t next_deadline; /* gateway clock, 0: none */
    int64_t last_scan_wall;

    /* The outbox lines of the open transaction (the service thread's):
     * written as one row just before its commit, forgotten with it when
     * it rolls back. outbox_error: a line could not be made (memory), so
     * the transaction must not commit. */
    struct gw_buf outbox;
    size_t outbox_n;
    int outbox_error;

    struct gw_casesvc_stats stats; /* __atomic builtins; queued is depth */
};

static void count(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* ---- copies of cases and events ------------------------------------------ */

/* The strings of struct store_case, so a copy and its release cannot
 * disagree about which fields are owned. trigger is left out on purpose
 * (see struct event_copy). */
static const size_t case_strings[] = {
    offsetof(struct store_case, rule),         offsetof(struct store_case, subject),
    offsetof(struct store_case, category),     offsetof(struct store_case, title),
    offsetof(struct store_case, detail),       offsetof(struct store_case, grid_id),
    offsetof(struct store_case, community_id), offsetof(struct store_case, street_id),
    offsetof(struct store_case, device_id),    offsetof(struct store_case, assignee),
    offsetof(struct store_case, rule_file),    offsetof(struct store_case, rule_hash),
    offsetof(struct store_case, reporter),     offsetof(struct store_case, reported_by),
};
#define N_CASE_STRINGS (sizeof(case_strings) / sizeof(case_strings[0]))

static char **case_string(struct store_case *c, size_t i)
{
    return (char **)((char *)c + case_strings[i]);
}

static void case_copy_free(struct store_case *c)
{
    for (size_t i = 0; i < N_CASE_STRINGS; i++)
        free(*case_string(c, i));
}

static bool dup_into(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return !src || *dst;
}

/* Returns 0 or -ENOMEM (dst then holds nothing to free). */
static int case_copy(struct store_case *dst, const struct store_case *src)
{
    *dst = *src;
    dst->trigger = NULL;
    for (size_t i = 0; i < N_CASE_STRINGS; i++)
        *case_string(dst, i) = NULL;
    for (size_t i = 0; i < N_CASE_STRINGS; i++) {
        if (!dup_into(case_string(dst, i), *case_string((struct store_case *)src, i))) {
            case_copy_free(dst);
            return -ENOMEM;
        }
    }
    return 0;
}

static void event_copy_free(struct event_copy *e)
{
    free(e->kind);
    free(e->actor);
    free(e->note);
    case_copy_free(&e->c);
    free(e);
}

static struct event_copy *event_copy_new(const struct gw_case_event *event)
{
    struct event_copy *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    if (case_copy(&e->c, event->c) < 0) {
        free(e);
        return NULL;
    }
    if (!dup_into(&e->kind, event->kind) || !dup_into(&e->actor, event->actor) ||
        !dup_into(&e->note, event->note)) {
        event_copy_free(e);
        return NULL;
    }
    e->has_from = event->has_from;
    e->from = event->from;
    e->ts_ns = event->ts_ns;
    return e;
}

static void drop_events(struct command *cmd)
{
    while (cmd->events) {
        struct event_copy *e = cmd->events;
        cmd->events = e->next;
        event_copy_free(e);
    }
    cmd->events_tail = &cmd->events;
}

static size_t count_lines(const char *text, size_t len)
{
    size_t n = 0;

    for (const char *c = text; (c = memchr(c, '\n', len - (size_t)(c - text))); c++)
        n++;
    return n;
}

/* The event's lines join the transaction's outbox row. */
static void format_event(struct gw_casesvc *svc, const struct gw_case_event *event)
{
    size_t before = svc->outbox.len;
    int r;

    if (!svc->o.format_event)
        return;
    r = svc->o.format_event(event, &svc->outbox, svc->o.userdata);
    if (r == -ENOMEM) {
        svc->outbox_error = r;
    } else if (r == 0) {
        svc->outbox_n += count_lines(svc->outbox.data + before, svc->outbox.len - before);
        return;
    }
    gw_buf_truncate(&svc->outbox, before);
}

/* gw_cases' callback, inside the transaction: the event's outbox lines
 * are written with it; the event is kept until its batch is durable. */
static void collect(const struct gw_case_event *event, void *userdata)
{
    struct command *cmd = userdata;
    struct event_copy *e;

    format_event(cmd->svc, event);
    e = event_copy_new(event);

    if (!e) {
        gw_log_limited(&store_log_limit, GW_LOG_ERROR, "casesvc",
                       "case %lld: out of memory: its \"%s\" event will not be told",
                       (long long)event->c->id, event->kind);
        return;
    }
    *cmd->events_tail = e;
    cmd->events_tail = &e->next;
}

/* Tells on_event, in order, what a durable command changed. */
static void deliver(struct gw_casesvc *svc, struct command *cmd)
{
    for (struct event_copy *e = cmd->events; e; e = e->next) {
        struct gw_case_event event = {
            .kind = e->kind,
            .c = &e->c,
            .actor = e->actor,
            .has_from = e->has_from,
            .from = e->from,
            .note = e->note,
            .ts_ns = e->ts_ns,
        };

        if (svc->o.on_event)
            svc->o.on_event(&event, svc->o.userdata);
        count(&svc->stats.events, 1);
    }
    drop_events(cmd);
}

/* ---- commands ------------------------------------------------------------- */

static struct command *command_new(struct gw_casesvc *svc, enum command_kind kind)
{
    struct command *cmd = calloc(1, sizeof(*cmd));

    if (!cmd)
        return NULL;
    cmd->svc = svc;
    cmd->kind = kind;
    cmd->events_tail = &cmd->events;
    return cmd;
}

static void command_free(struct command *cmd)
{
    drop_events(cmd);
    rule_action_free_contents(&cmd->action);
    gw_reading_unref(cmd->reading);
    free(cmd->lines);
    free(cmd);
}

/* Errors that say no to this command for good; any other (the store
 * busy, full or failing) is worth one more try on its own. */
static bool is_refusal(int rc)
{
    return rc == -EINVAL || rc == -ENOENT || rc == -EACCES || rc == -ESTALE || rc == -EROFS;
}

static bool of_worker(const struct command *cmd)
{
    return cmd->kind == CMD_ACTION || cmd->kind == CMD_LINES;
}

/* ---- transactions and the outbox ------------------------------------------ */

static int tx_begin(struct gw_casesvc *svc)
{
    gw_buf_reset(&svc->outbox);
    svc->outbox_n = 0;
    svc->outbox_error = 0;
    return gw_cases_begin(svc->cases);
}

/* Writes the transaction's outbox row, then commits; on any failure
 * nothing of the transaction happened. */
static int tx_commit(struct gw_casesvc *svc)
{
    size_t n = svc->outbox_n;
    int r = svc->outbox_error;

    if (r == 0 && svc->outbox.len > 0)
        r = gw_cases_outbox_put(svc->cases, svc->outbox.data, svc->outbox.len);
    gw_buf_reset(&svc->outbox);
    svc->outbox_n = 0;
    svc->outbox_error = 0;
    if (r < 0) {
        gw_cases_rollback(svc->cases);
        return r;
    }
    r = gw_cases_commit(svc->cases);
    if (r == 0 && n > 0) {
        count(&svc->stats.outbox_rows, 1);
        count(&svc->stats.outbox_lines, n);
    }
    return r;
}

static void tx_rollback(struct gw_casesvc *svc)
{
    gw_buf_reset(&svc->outbox);
    svc->outbox_n = 0;
    svc->outbox_error = 0;
    gw_cases_rollback(svc->cases);
}

/* A worker's emit lines join the transaction's outbox row. */
static int add_lines(struct gw_casesvc *svc, const struct command *cmd)
{
    int r = gw_buf_append(&svc->outbox, cmd->lines, cmd->len);

    if (r == 0)
        svc->outbox_n += count_lines(cmd->lines, cmd->len);
    return r;
}

/* Carries the command out inside the open transaction. A refused command
 * changed nothing, so whatever it told is forgotten. */
static void execute(struct gw_casesvc *svc, struct command *cmd)
{
    int64_t now = gw_now_ns();

    drop_events(cmd);
    cmd->why = NULL;
    cmd->value = 0;
    switch (cmd->kind) {
    case CMD_ACTION:
        cmd->rc = gw_cases_apply(svc->cases, &cmd->action, cmd->reading, now, collect, cmd);
        break;
    case CMD_TRANSITION:
        cmd->rc = gw_cases_transition(svc->cases, cmd->request, now, collect, cmd, &cmd->value,
                                      &cmd->why);
        break;
    case CMD_REPORT:
        cmd->rc = gw_cases_report(svc->cases, cmd->report, now, collect, cmd, &cmd->value,
                                  &cmd->why);
        break;
    case CMD_LINES:
        cmd->rc = add_lines(svc, cmd);
        break;
    }
    if (cmd->rc < 0)
        drop_events(cmd);
}

/* A rule's action that came to nothing is logged here: nobody waits for
 * it. An API call's error goes back to its caller, who answers (and logs)
 * it. */
static void log_failure(const struct command *cmd)
{
    if (cmd->kind == CMD_ACTION)
        gw_log_limited(&store_log_limit, GW_LOG_ERROR, "casesvc",
                       "rule %s, device %s: %s not carried out: %s", cmd->action.rule,
                       cmd->reading->device_id, rule_action_kind_name(cmd->action.kind),
                       strerror(-cmd->rc));
    else if (cmd->kind == CMD_LINES)
        gw_log_limited(&store_log_limit, GW_LOG_ERROR, "casesvc",
                       "%zu line(s) of rules' emit() not saved for InfluxDB: %s",
                       count_lines(cmd->lines, cmd->len), strerror(-cmd->rc));
}

/* One command in a transaction of its own: after a failed batch, or a
 * second try. Its events are told as soon as it is durable. */
static void run_alone(struct gw_casesvc *svc, struct command *cmd)
{
    int r = tx_begin(svc);

    if (r < 0) {
        cmd->rc = r;
        cmd->why = "the case store cannot be written now";
        return;
    }
    execute(svc, cmd);
    if (cmd->rc < 0) {
        tx_rollback(svc);
        return;
    }
    r = tx_commit(svc);
    if (r < 0) {
        drop_events(cmd);
        cmd->rc = r;
        cmd->why = "the case store could not save the change";
        return;
    }
    deliver(svc, cmd);
}

/* The batch in one transaction; if that cannot begin or commit, each
 * command alone. Commands refused for a passing reason get one try alone
 * after the batch. Events are told in the order they became durable. */
static void run_batch(struct gw_casesvc *svc, struct command *batch)
{
    int r = tx_begin(svc);

    if (r == 0) {
        for (struct command *cmd = batch; cmd; cmd = cmd->next) {
            execute(svc, cmd);
            cmd->retry = cmd->rc < 0 && !is_refusal(cmd->rc);
        }
        r = tx_commit(svc);
    }
    if (r < 0) {
        gw_log_limited(&store_log_limit, GW_LOG_ERROR, "casesvc",
                       "a batch of case commands failed (%s): carrying them out one by one",
                       strerror(-r));
        for (struct command *cmd = batch; cmd; cmd = cmd->next)
            run_alone(svc, cmd);
        return;
    }
    count(&svc->stats.batches, 1);
    for (struct command *cmd = batch; cmd; cmd = cmd->next)
        deliver(svc, cmd);
    for (struct command *cmd = batch; cmd; cmd = cmd->next)
        if (cmd->retry)
            run_alone(svc, cmd);
}

/* A worker's command is done (durable or given up on): it leaves the
 * worker's pending list. Under lock. */
static void unlink_from_worker(struct gw_casesvc *svc, struct command *cmd)
{
    struct worker_pos *wp = &svc->workers[cmd->worker];
    struct command **link = &wp->head, *prev = NULL;

    /* Always the head in practice (commands finish in queue order); the
     * walk only keeps the list right should that ever change. */
    while (*link && *link != cmd) {
        prev = *link;
        link = &(*link)->next_of_worker;
    }
    if (!*link)
        return;
    *link = cmd->next_of_worker;
    if (wp->tail == cmd)
        wp->tail = prev;
}

/* Answers API calls, advances workers' durable positions and frees the
 * batch. */
static void complete(struct gw_casesvc *svc, struct command *batch)
{
    pthread_mutex_lock(&svc->lock);
    while (batch) {
        struct command *cmd = batch;

        batch = cmd->next;
        count(cmd->rc < 0 ? &svc->stats.failed : &svc->stats.commands, 1);
        if (cmd->rc < 0)
            log_failure(cmd);
        if (of_worker(cmd)) {
            unlink_from_worker(svc, cmd);
        } else {
            struct call *call = cmd->call;

            call->rc = cmd->rc;
            call->value = cmd->value;
            call->why = cmd->why;
            call->done = true;
            pthread_cond_signal(&call->answered);
        }
        command_free(cmd);
    }
    pthread_mutex_unlock(&svc->lock);
}

/* ---- the queue -------------------------------------------------------------- */

/* Appends under lock, waiting for room. Returns 0 or -ESHUTDOWN. */
static int enqueue_locked(struct gw_casesvc *svc, struct command *cmd)
{
    while (svc->depth >= svc->o.queue_size && !svc->stopping)
        pthread_cond_wait(&svc->room, &svc->lock);
    if (svc->stopping)
        return -ESHUTDOWN;
    if (svc->tail)
        svc->tail->next = cmd;
    else
        svc->head = cmd;
    svc->tail = cmd;
    svc->depth++;
    pthread_cond_signal(&svc->wake);
    return 0;
}

static struct timespec monotonic_timespec(int64_t ns)
{
    return (struct timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

/* Waits until there is work, the timer is due (wake_mono) or a stop, and
 * takes up to batch_max commands. NULL with *ret_exit when stopping and
 * the queue is drained. */
static struct command *take_batch(struct gw_casesvc *svc, int64_t wake_mono, bool *ret_exit)
{
    struct command *batch, *last;
    struct timespec until = monotonic_timespec(wake_mono);
    int n = 0;

    pthread_mutex_lock(&svc->lock);
    while (svc->depth == 0 && !svc->stopping && gw_monotonic_ns() < wake_mono)
        pthread_cond_timedwait(&svc->wake, &svc->lock, &until);
    *ret_exit = svc->depth == 0 && svc->stopping;
    batch = svc->head;
    for (last = NULL; svc->head && n < svc->o.batch_max; n++) {
        last = svc->head;
        svc->head = last->next;
    }
    if (last)
        last->next = NULL;
    else
        batch = NULL;
    if (!svc->head)
        svc->tail = NULL;
    svc->depth -= (size_t)n;
    if (n > 0)
        pthread_cond_broadcast(&svc->room);
    pthread_mutex_unlock(&svc->lock);
    return batch;
}

/* ---- the timer ---------------------------------------------------------------- */

/* The earlier of the next periodic scan and the next deadline. A deadline
 * not after the last scan was that scan's to handle: if it is still there
 * (the store failed), the periodic scan retries, not a busy loop. */
static int64_t timer_wake(const struct gw_casesvc *svc)
{
    int64_t wake = svc->next_scan_mono;

    if (svc->next_deadline > svc->last_scan_wall) {
        int64_t in = svc->next_deadline - gw_now_ns() + DEADLINE_SLACK_NS;
        int64_t at = gw_monotonic_ns() + (in > 0 ? in : 0);

        if (at < wake)
            wake = at;
    }
    return wake;
}

/* Whether the timer should run now: its periodic scan is due, or the
 * earliest deadline has passed since the last scan. Asked separately from
 * timer_wake, whose wake-up time may be a hair ahead of the clocks read
 * here. */
static bool timer_due(const struct gw_casesvc *svc)
{
    if (gw_monotonic_ns() >= svc->next_scan_mono)
        return true;
    return svc->next_deadline > svc->last_scan_wall && gw_now_ns() >= svc->next_deadline;
}

static void refresh_deadline(struct gw_casesvc *svc)
{
    svc->next_deadline = gw_cases_next_deadline(svc->cases);
}

/* Escalates what is past its limit, in a transaction of its own so its
 * events are told only once durable. */
static void run_timer(struct gw_casesvc *svc)
{
    struct command tick = { .svc = svc, .events_tail = &tick.events };
    int64_t now = gw_now_ns();
    int n, r;

    svc->last_scan_wall = now;
    svc->next_scan_mono = gw_monotonic_ns() + (int64_t)svc->o.timer_interval_ms * 1000000;
    r = tx_begin(svc);
    if (r < 0)
        goto fail;
    n = gw_cases_escalate_due(svc->cases, now, svc->o.batch_max, collect, &tick);
    if (n < 0) {
        r = n;
        tx_rollback(svc);
        goto fail;
    }
    r = tx_commit(svc);
    if (r < 0)
        goto fail;
    count(&svc->stats.escalated, (uint64_t)n);
    deliver(svc, &tick);
    /* More were due than one call takes: go on at once. */
    if (n >= svc->o.batch_max)
        svc->next_scan_mono = gw_monotonic_ns();
    refresh_deadline(svc);
    return;
fail:
    drop_events(&tick);
    gw_log_limited(&store_log_limit, GW_LOG_ERROR, "casesvc",
                   "escalating cases past their time limit failed: %s; trying again in %d ms",
                   strerror(-r), svc->o.timer_interval_ms);
}

/* ---- the thread ------------------------------------------------------------------ */

static void *svc_main(void *arg)
{
    struct gw_casesvc *svc = arg;
    bool exit = false;

    refresh_deadline(svc);
    svc->next_scan_mono = gw_monotonic_ns(); /* a restart catches up at once */
    while (!exit) {
        int64_t wake = timer_wake(svc);
        struct command *batch = take_batch(svc, wake, &exit);

        if (batch) {
            run_batch(svc, batch);
            complete(svc, batch);
            refresh_deadline(svc);
        }
        if (timer_due(svc))
            run_timer(svc);
    }
    return NULL;
}

/* ---- the interface ---------------------------------------------------------------- */

struct gw_casesvc *gw_casesvc_new(const struct gw_casesvc_options *options, char **ret_error)
{
    struct gw_casesvc *svc = calloc(1, sizeof(*svc));
    pthread_condattr_t attr;

    *ret_error = NULL;
    if (!svc)
        goto nomem;
    svc->o = *options;
    if (svc->o.queue_size == 0)
        svc->o.queue_size = DEFAULT_QUEUE_SIZE;
    if (svc->o.batch_max <= 0)
        svc->o.batch_max = DEFAULT_BATCH_MAX;
    if (svc->o.timer_interval_ms <= 0)
        svc->o.timer_interval_ms = DEFAULT_TIMER_INTERVAL_MS;
    svc->workers = calloc(svc->o.n_workers ? svc->o.n_workers : 1, sizeof(*svc->workers));
    if (!svc->workers)
        goto nomem;
    if (pthread_condattr_init(&attr) != 0)
        goto nomem;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&svc->wake, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        goto nomem;
    }
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&svc->room, NULL);
    pthread_mutex_init(&svc->lock, NULL);
    svc->sync_ready = true;
    svc->cases = gw_cases_open(&svc->o.cases, ret_error);
    if (!svc->cases) {
        gw_casesvc_free(svc);
        return NULL;
    }
    return svc;
nomem:
    gw_casesvc_free(svc);
    *ret_error = strdup("out of memory building the case service");
    return NULL;
}

int gw_casesvc_start(struct gw_casesvc *svc)
{
    int r = pthread_create(&svc->thread, NULL, svc_main, svc);

    if (r != 0)
        return -r;
    svc->started = true;
    return 0;
}

/* Without a thread nothing queued can be carried out: each command is
 * answered as refused and released. */
static void refuse_queued(struct gw_casesvc *svc)
{
    struct command *batch;

    pthread_mutex_lock(&svc->lock);
    batch = svc->head;
    svc->head = svc->tail = NULL;
    svc->depth = 0;
    pthread_mutex_unlock(&svc->lock);
    for (struct command *cmd = batch; cmd; cmd = cmd->next) {
        cmd->rc = -ESHUTDOWN;
        cmd->why = "the gateway is stopping";
    }
    complete(svc, batch);
}

void gw_casesvc_stop(struct gw_casesvc *svc)
{
    if (!svc || !svc->sync_ready)
        return;
    pthread_mutex_lock(&svc->lock);
    svc->stopping = true;
    pthread_cond_broadcast(&svc->wake);
    pthread_cond_broadcast(&svc->room);
    pthread_mutex_unlock(&svc->lock);
    if (svc->started) {
        pthread_join(svc->thread, NULL);
        svc->started = false;
    }
    refuse_queued(svc);
}

void gw_casesvc_free(struct gw_casesvc *svc)
{
    if (!svc)
        return;
    gw_casesvc_stop(svc);
    gw_cases_close(svc->cases);
    if (svc->sync_ready) {
        pthread_cond_destroy(&svc->wake);
        pthread_cond_destroy(&svc->room);
        pthread_mutex_destroy(&svc->lock);
    }
    free(svc->workers);
    gw_buf_free(&svc->outbox);
    free(svc);
}

/* A worker's queued command joins its pending list. Under lock, before
 * the unlock that lets the thread take it. */
static void track_locked(struct gw_casesvc *svc, struct command *cmd)
{
    struct worker_pos *wp = &svc->workers[cmd->worker];

    if (wp->tail)
        wp->tail->next_of_worker = cmd;
    else
        wp->head = cmd;
    wp->tail = cmd;
    wp->last_submitted = cmd->seq;
}

int gw_casesvc_submit(struct gw_casesvc *svc, unsigned worker, uint64_t seq,
                      struct rule_action *action, struct gw_reading *reading)
{
    struct command *cmd;
    int r;

    if (worker >= svc->o.n_workers || !reading)
        return -EINVAL;
    cmd = command_new(svc, CMD_ACTION);
    if (!cmd)
        return -ENOMEM;
    cmd->worker = worker;
    cmd->seq = seq;
    pthread_mutex_lock(&svc->lock);
    r = enqueue_locked(svc, cmd);
    if (r < 0) {
        pthread_mutex_unlock(&svc->lock);
        free(cmd);
        return r;
    }
    /* Queued: from here the command owns the action and a reference. Its
     * contents are moved under the lock, but the thread cannot take it
     * before the unlock below. */
    cmd->action = *action;
    memset(action, 0, sizeof(*action));
    gw_reading_ref(reading);
    cmd->reading = reading;
    track_locked(svc, cmd);
    pthread_mutex_unlock(&svc->lock);
    return 0;
}

int gw_casesvc_submit_lines(struct gw_casesvc *svc, unsigned worker, uint64_t seq,
                            const char *lines, size_t len)
{
    struct command *cmd;
    int r;

    if (worker >= svc->o.n_workers || !lines || len == 0 || lines[len - 1] != '\n' ||
        memchr(lines, '\0', len))
        return -EINVAL;
    cmd = command_new(svc, CMD_LINES);
    if (!cmd)
        return -ENOMEM;
    cmd->lines = malloc(len);
    if (!cmd->lines) {
        free(cmd);
        return -ENOMEM;
    }
    memcpy(cmd->lines, lines, len);
    cmd->len = len;
    cmd->worker = worker;
    cmd->seq = seq;
    pthread_mutex_lock(&svc->lock);
    r = enqueue_locked(svc, cmd);
    if (r == 0)
        track_locked(svc, cmd);
    pthread_mutex_unlock(&svc->lock);
    if (r < 0)
        command_free(cmd);
    return r;
}

uint64_t gw_casesvc_outbox_rows(struct gw_casesvc *svc)
{
    return load(&svc->stats.outbox_rows);
}

uint64_t gw_casesvc_durable(struct gw_casesvc *svc, unsigned worker)
{
    const struct worker_pos *wp;
    uint64_t durable;

    if (worker >= svc->o.n_workers)
        return 0;
    pthread_mutex_lock(&svc->lock);
    wp = &svc->workers[worker];
    /* Everything before the oldest pending command's record is done. */
    if (wp->head)
        durable = wp->head->seq > 0 ? wp->head->seq - 1 : 0;
    else
        durable = wp->last_submitted;
    pthread_mutex_unlock(&svc->lock);
    return durable;
}

/* Queues an API command and waits for its answer (the service answers
 * every queued command, also when stopping). */
static int call_service(struct gw_casesvc *svc, struct command *cmd, int64_t *ret_value,
                        char *why, size_t why_len)
{
    struct call call = { .done = false };
    int r;

    pthread_cond_init(&call.answered, NULL);
    cmd->call = &call;
    pthread_mutex_lock(&svc->lock);
    r = enqueue_locked(svc, cmd);
    if (r == 0) {
        while (!call.done)
            pthread_cond_wait(&call.answered, &svc->lock);
        r = call.rc;
    }
    pthread_mutex_unlock(&svc->lock);
    pthread_cond_destroy(&call.answered);
    if (!call.done) {
        free(cmd); /* never queued: still ours */
        call.why = "the gateway is stopping";
    }
    if (r == 0 && ret_value)
        *ret_value = call.value;
    if (r < 0 && why && why_len)
        snprintf(why, why_len, "%s", call.why ? call.why : strerror(-r));
    return r;
}

int gw_casesvc_transition(struct gw_casesvc *svc, const struct gw_case_request *request,
                          int64_t *ret_version, char *why, size_t why_len)
{
    struct command *cmd = command_new(svc, CMD_TRANSITION);

    if (!cmd) {
        if (why && why_len)
            snprintf(why, why_len, "out of memory");
        return -ENOMEM;
    }
    cmd->request = request;
    return call_service(svc, cmd, ret_version, why, why_len);
}

int gw_casesvc_report(struct gw_casesvc *svc, const struct gw_case_report *report,
                      int64_t *ret_id, char *why, size_t why_len)
{
    struct command *cmd = command_new(svc, CMD_REPORT);

    if (!cmd) {
        if (why && why_len)
            snprintf(why, why_len, "out of memory");
        return -ENOMEM;
    }
    cmd->report = report;
    return call_service(svc, cmd, ret_id, why, why_len);
}

void gw_casesvc_stats(struct gw_casesvc *svc, struct gw_casesvc_stats *ret)
{
    ret->commands = load(&svc->stats.commands);
    ret->failed = load(&svc->stats.failed);
    ret->batches = load(&svc->stats.batches);
    ret->escalated = load(&svc->stats.escalated);
    ret->events = load(&svc->stats.events);
    ret->outbox_rows = load(&svc->stats.outbox_rows);
    ret->outbox_lines = load(&svc->stats.outbox_lines);
    pthread_mutex_lock(&svc->lock);
    ret->queued = svc->depth;
    pthread_mutex_unlock(&svc->lock);
}
