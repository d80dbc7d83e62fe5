/* gw_cases: the six-step case loop (DESIGN.md, "The domain").
 *
 * Owns one connection to the case store (SQLite, see store.h) and every
 * decision of the loop: a rule's open_case/clear_case (one open case per
 * (rule, subject); a repeat updates it, after handling reopens it as
 * rework), reports by staff or citizens, the transitions people make
 * through the API and who may make them, the time limit of each step and
 * the escalation of a step past it, the grouping of cases into incidents.
 * Every change is appended to the case's history and reported through a
 * callback; what a rule did carries its provenance (the rule's file and
 * content hash, the reading that made it act). Also answers the reads the
 * API needs (lists, one case with its history, the evaluation figures),
 * scoped to the actor asking, and keeps the devices' last-seen times so
 * that the deadman survives a restart.
 *
 * Used by one thread at a time. Several gw_cases may open one file (the
 * case service's writer, the API's readers); the case service is the one
 * writer of cases while the gateway runs. Does not publish anything.
 *
 * Transactions: every call that writes is atomic on its own. Between
 * gw_cases_begin and gw_cases_commit, calls become parts of one batch:
 * each part still all-or-nothing (a savepoint), the batch durable at
 * commit. Events are raised as each part succeeds; a caller that batches
 * holds them until its commit succeeded.
 */
#ifndef GW_CASES_H
#define GW_CASES_H

#include <stdbool.h>
#include <stdint.h>

#include "gw_access.h"
#include "gw_domain.h"
#include "store.h"

struct gw_grid;
struct gw_reading;
struct gw_registry;
struct rule_action;

/* Every change the case loop makes, as it is told to listeners (the case
 * service turns each into an InfluxDB case_event point, an MQTT notice on
 * grids/{grid_id}/cases and a log line). kind is one of: "opened",
 * "updated" (a repeat from a rule), "reopened" (a repeat after handling:
 * rework), "cleared" (the rule says the condition is over), "dispatched",
 * "handled", "verified", "rework" (verification failed), "evaluated",
 * "closed", "cancelled", "returned", "deferred", "resumed", "escalated"
 * (a step ran past its time limit), "grouped" (linked to an incident).
 * Everything pointed to lives only during the call. */
struct gw_case_event {
    const char *kind;
    const struct store_case *c; /* the case after the change */
    const char *actor;          /* "rule:fire.smoke", "gridgate:timer", a token's name */
    bool has_from;              /* false for "opened" */
    enum gw_case_state from;
    const char *note;           /* may be NULL */
    int64_t ts_ns;              /* the gateway's clock */
};

typedef void (*gw_case_event_fn)(const struct gw_case_event *event, void *userdata);

/* Time limits: the nanoseconds a case may stay in each state, by
 * severity; 0 means no limit. Only dispatched, handled, verified and
 * evaluated have limits (the clock starts at dispatch, DESIGN.md). */
struct gw_case_limits {
    int64_t ns[GW_SEVERITY_COUNT][GW_CASE_STATE_COUNT];
};

struct gw_cases_options {
    const char *db_path;
    bool read_only;    /* a reader: every write call fails with -EROFS */
    bool auto_dispatch; /* a rule's new case goes to the role it names */
    /* Needed by writers only (NULL or zero in readers and in tests that
     * do not exercise them): */
    const struct gw_registry *reg; /* grids by id (roster), reports by lat/lon */
    struct gw_case_limits limits;
    const char *self_closing;     /* comma-separated categories whose clear_case closes the case */
    const char *group_categories; /* comma-separated categories grouped into incidents, "*" all */
    int64_t group_window_ns;      /* 0: no grouping */
};

struct gw_config;

/* Reads the cases.limits_* options ("dispatched=30m,handled=2h,...",
 * steps as gw_domain names them, durations as gw_duration reads them;
 * a step left out has no limit) into limits. Returns 0, or -EINVAL with
 * *ret_error a malloc'd message naming the key and the entry
 * ("cases.limits_major: handled=2x: not a duration"). */
int gw_case_limits_from_config(const struct gw_config *cfg, struct gw_case_limits *limits,
                               char **ret_error);

struct gw_cases;

/* Opens (creating and migrating as needed) the store. On failure returns
 * NULL and sets *ret_error to a malloc'd message naming the file. */
struct gw_cases *gw_cases_open(const struct gw_cases_options *options, char **ret_error);
/* Closes the store cleanly (WAL checkpointed); NULL is fine. */
void gw_cases_close(struct gw_cases *cases);

/* Carries out an open_case or clear_case action raised by a rule for
 * reading (whose device is resolved), at the gateway's time now_ns.
 * Calls on_event for every change it made, in order. A repeat of an open
 * case updates it; a repeat after "handled" reopens it as rework (back to
 * dispatched, rework counted). clear_case notes the end of the condition
 * and closes the case only when its category is in self_closing. A new
 * case of a grouped category joins the incident of its grid opened within
 * the group window. A new case records the rule's file (action->file), its
 * hash (action->file_hash) and the reading as JSON (gw_reading_to_json);
 * every history row the rule causes (creation, raised severity, cleared)
 * records the hash and the reading. A repeat that raises nothing writes
 * no history. Returns 0, -EINVAL for an action it cannot carry out (a shadow action
 * among them: those are only logged), or a negative errno (the store
 * failed). */
int gw_cases_apply(struct gw_cases *cases, const struct rule_action *action,
                   const struct gw_reading *reading, int64_t now_ns, gw_case_event_fn on_event,
                   void *userdata);

/* Batches (see the header comment). gw_cases_begin takes the write lock
 * at once. Return 0 or a negative errno; after a failed commit the batch
 * is rolled back and none of its parts happened. */
int gw_cases_begin(struct gw_cases *cases);
int gw_cases_commit(struct gw_cases *cases);
void gw_cases_rollback(struct gw_cases *cases);

/* What people do to a case through the API. */
struct gw_case_request {
    enum gw_case_op op;
    int64_t case_id;
    int64_t version;  /* the version the caller saw; 0: no check */
    const struct gw_actor *actor;
    const char *note; /* may be NULL where the op needs none */
    bool has_role;    /* dispatch: to this grid role; else the rule's or the category's */
    enum gw_role role;
    const char *person; /* dispatch: this person; NULL: the grid's roster */
    bool pass;          /* verify */
    int score;          /* evaluate: 1 to 5 */
};

/* Whether actor may make op on c now, by role, scope and the case's state
 * (the permission matrix of docs/api.md). Pure; the console and the API
 * use it to offer only the actions that would succeed. */
bool gw_cases_may(const struct gw_actor *actor, enum gw_case_op op, const struct store_case *c);

/* Makes one transition. Returns 0 and sets *ret_version to the case's new
 * version, or:
 *   -ENOENT  no such case, or outside the actor's scope (the two are
 *            indistinguishable on purpose);
 *   -EACCES  the actor's role may not make this transition on this case;
 *   -ESTALE  request->version is set and the case has moved on;
 *   -EBUSY   the case's state does not allow op;
 *   -EINVAL  a bad argument (missing note, score out of range, unknown
 *            person...);
 *   -EROFS   a read-only gw_cases;
 *   other    the store failed.
 * On every error *ret_why points at a static sentence for the caller's
 * message. Dispatching an incident's lead case dispatches its reported
 * members the same way. */
int gw_cases_transition(struct gw_cases *cases, const struct gw_case_request *request,
                        int64_t now_ns, gw_case_event_fn on_event, void *userdata,
                        int64_t *ret_version, const char **ret_why);

/* A report by staff or a citizen (POST /api/v1/cases). The grid is
 * grid_id, or the one containing (lat, lon) when grid_id is NULL. */
struct gw_case_report {
    const struct gw_actor *actor;
    const char *grid_id;
    bool has_location;
    double lat, lon;
    const char *category;
    const char *title;
    const char *detail;       /* may be NULL */
    enum gw_severity severity;
    const char *reporter;     /* who reported it (a citizen's name or phone); may be NULL */
};

/* Opens a reported case. Returns 0 and *ret_id, or -EACCES (the role may
 * not report), -ENOENT (no such grid, or outside the actor's scope; no grid
 * at that location), -EINVAL, -EROFS or a store error, with *ret_why set. */
int gw_cases_report(struct gw_cases *cases, const struct gw_case_report *report, int64_t now_ns,
                    gw_case_event_fn on_event, void *userdata, int64_t *ret_id,
                    const char **ret_why);

/* The timer: every case whose current step's deadline is at or before
 * now is marked overdue and escalated one level (community -> street ->
 * district), recorded in its history (actor "gridgate:timer") and raised
 * as "escalated"; it gets the same step's limit again as its next
 * deadline, and at district level none (it stays overdue). Deadlines live
 * in the store, so a restart loses no timer. Returns the number of cases
 * escalated, or a negative errno. At most max cases per call. */
int gw_cases_escalate_due(struct gw_cases *cases, int64_t now_ns, int max,
                          gw_case_event_fn on_event, void *userdata);
/* The earliest deadline of any open case, or 0 when none: the timer's
 * next wake-up. */
int64_t gw_cases_next_deadline(struct gw_cases *cases);

/* Reads (any gw_cases, usually a reader). Every read is limited to the
 * actor's scope. */
struct gw_case_filter {
    const char *grid_id; /* each NULL: any */
    const char *community_id;
    const char *street_id;
    const char *category;
    bool has_state;
    enum gw_case_state state;
    bool open_only; /* every state but closed and cancelled (deferred is open) */
    bool has_severity;
    enum gw_severity severity;
    int overdue;        /* -1 any, 0 not overdue, 1 overdue now */
    int64_t incident_id; /* 0: any */
    int64_t before_id;   /* the cursor: only ids below it; 0: from the newest */
    int limit;           /* 1 to 500 */
};

/* Newest first. Returns the number of cases put in *ret_cases (malloc'd,
 * free with gw_cases_free_list), or a negative errno. */
int gw_cases_list(struct gw_cases *cases, const struct gw_actor *viewer,
                  const struct gw_case_filter *filter, struct store_case **ret_cases);
void gw_cases_free_list(struct store_case *list, int n);

/* One case and its history, oldest first. Returns 0, -ENOENT (no such
 * case or outside the scope) or a negative errno. The case (with its
 * trigger) and the history rows own their contents: release with
 * store_case_free_contents and gw_cases_free_history. */
int gw_cases_get(struct gw_cases *cases, const struct gw_actor *viewer, int64_t id,
                 struct store_case *ret_case, struct store_history **ret_history,
                 size_t *ret_n_history);
void gw_cases_free_history(struct store_history *history, size_t n);

/* The evaluation figures of DESIGN.md over [from_ns, to_ns) (gateway
 * clock), as docs/api.md defines them exactly. */
enum gw_figures_group {
    GW_GROUP_DISTRICT,
    GW_GROUP_STREET,
    GW_GROUP_COMMUNITY,
    GW_GROUP_GRID,
};

struct gw_case_figures {
    char *key;  /* the street, community or grid id; "district" */
    int64_t opened;           /* opened in the period */
    int64_t dispatched;       /* first dispatched in the period: their clock started */
    int64_t due;              /* = dispatched: each should be closed within its limits */
    int64_t deferred;         /* of those, deferred now */
    int64_t closed;           /* of those, closed by the period's end */
    int64_t closed_on_time;   /* of those closed, never past a step's limit */
    int64_t urgent_due;       /* the same four for critical cases alone */
    int64_t urgent_deferred;
    int64_t urgent_closed;
    int64_t urgent_closed_on_time;
    int64_t reworked;         /* of the dispatched, failed a verification at least once */
    int64_t overdue_now;      /* open cases past their step's limit now (any period) */
    int64_t open_now;         /* cases not closed or cancelled now (any period) */
    /* Mean seconds spent in each state by the stays that ended in the
     * period; negative when none ended. */
    double mean_step_s[GW_CASE_STATE_COUNT];
};

/* One row per group key inside the viewer's scope (one row for
 * GW_GROUP_DISTRICT), sorted by key; the rates are the callers' to
 * compute from these counts (closure = closed / (due - deferred),
 * on-time = closed_on_time / (due - deferred), rework = reworked /
 * dispatched). Returns the number of rows in *ret (malloc'd, free with
 * gw_cases_free_figures) or a negative errno. */
int gw_cases_figures(struct gw_cases *cases, const struct gw_actor *viewer,
                     enum gw_figures_group group, int64_t from_ns, int64_t to_ns,
                     int64_t now_ns, struct gw_case_figures **ret);
void gw_cases_free_figures(struct gw_case_figures *figures, int n);

/* Counts of cases by state within the viewer's scope (for /metrics and
 * the console's header); ret_counts has GW_CASE_STATE_COUNT entries,
 * *ret_overdue the open cases overdue now. Returns 0 or a negative errno. */
int gw_cases_count_by_state(struct gw_cases *cases, const struct gw_actor *viewer,
                            int64_t ret_counts[GW_CASE_STATE_COUNT], int64_t *ret_overdue);

/* ---- the InfluxDB outbox (store.h) ----
 *
 * gw_cases_outbox_put adds a row of whole lines of line protocol to the
 * open batch (between gw_cases_begin and gw_cases_commit), so the lines
 * exist iff the batch commits: -EINVAL outside a batch, -EROFS in a
 * reader. The reads and the delete are the InfluxDB feeder's, on its own
 * (writing) gw_cases; each delete is a transaction of its own. */
int gw_cases_outbox_put(struct gw_cases *cases, const char *lines, size_t len);
/* See store_outbox_read. */
int gw_cases_outbox_read(struct gw_cases *cases, int64_t after_id, int max_rows, size_t max_bytes,
                         store_outbox_fn fn, void *userdata);
/* Returns the rows deleted (ids up to up_to_id) or a negative errno. */
int64_t gw_cases_outbox_delete(struct gw_cases *cases, int64_t up_to_id);
/* Rows waiting, or a negative errno. */
int64_t gw_cases_outbox_count(struct gw_cases *cases);

/* The (rule, subject) of every case a rule opened that is open and not
 * cleared (see store_open_rule_cases). Any gw_cases. */
int gw_cases_open_rule_cases(struct gw_cases *cases, store_rule_case_fn fn, void *userdata);

/* Open cases per (street, category) with the overdue ones among them (see
 * store_open_counts), for the case_open figure. Any gw_cases; no scope:
 * the gateway's own figures. */
int gw_cases_open_counts(struct gw_cases *cases, store_open_count_fn fn, void *userdata);

/* Saves the live last-seen time (gw_device_state) of each device of reg
 * (the devices file's, not quarantined ones) that changed since this
 * gw_cases last saved it, in one transaction, taken only when there is
 * something to write. The devices may be touched meanwhile by other
 * threads. The first call after opening, or with another registry,
 * writes every device seen so far. Returns the number of devices written,
 * or a negative errno: nothing was saved and the next call writes them
 * all again. With several gw_cases on one file (rule workers), call it
 * through one of them. */
int gw_cases_save_last_seen(struct gw_cases *cases, const struct gw_registry *reg);

/* Touches each device of reg with the time the store holds for it when
 * that is newer than its live state; a time ahead of the gateway's clock
 * (a clock stepped back) counts as now, so the deadman still fires some
 * day. Devices reg does not know are skipped. Meant for start-up, before
 * the intake runs: a reading arriving in between could have its newer
 * time overwritten. Returns the number of devices touched or a negative
 * errno. */
int gw_cases_load_last_seen(struct gw_cases *cases, struct gw_registry *reg);

#endif
