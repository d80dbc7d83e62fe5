/* store: the case store, SQLite behind a narrow interface.
 *
 * Owns the database connection, its schema and its migrations, and the
 * prepared statements of the hot path. Speaks in cases, history rows,
 * devices' last-seen times and the reads the API needs (pages of cases,
 * counts, figures), never in SQL: gw_cases (the only user) knows
 * no SQLite type, so a PostgreSQL store can later implement these same
 * calls (then behind an ops table) without touching the case logic. Does
 * not decide anything about the case loop (which transition is allowed,
 * who is dispatched): that is gw_cases.
 *
 * One store is one connection, used by one thread at a time. Several
 * stores (one per rule worker) may open the same file: writes are
 * serialised by the database (store_begin takes the write lock at once)
 * and wait up to busy_timeout_ms for each other.
 *
 * The store also holds the InfluxDB outbox (schema version 4): line
 * protocol written in the transaction of the case change it describes,
 * read and deleted by the InfluxDB feeder once InfluxDB answered it. The
 * store treats the lines as opaque text.
 *
 * Times are int64 nanoseconds since the Unix epoch (UTC), like every
 * timestamp in gridgate; 0 stands for SQL NULL.
 *
 * Errors: every call returns 0 (or the documented positive value) or a
 * negative errno. SQLite's own message cannot travel in an errno, so it is
 * logged here, once, rate limited; callers need not log the failure again.
 * store_open instead hands its message back to the caller.
 */
#ifndef STORE_H
#define STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_domain.h"

/* The schema version this build creates and understands (PRAGMA
 * user_version). A file with a newer version is refused. */
#define STORE_SCHEMA_VERSION 4

struct store_options {
    const char *path;
    int busy_timeout_ms; /* 0 = default (5000) */
    /* A reader: opens an existing file of this schema version read-only,
     * migrates nothing; every write fails with -EROFS. */
    bool read_only;
};

/* One row of the cases table. Strings passed to store_case_insert and
 * store_case_update are only read; a row filled by the store (find, get,
 * list) or by store_case_copy owns its strings, released by
 * store_case_free_contents.
 *
 * Provenance (rule_file, rule_hash, trigger) is what opened the case and
 * never changes; NULL for a case not opened by a rule and for cases
 * written before schema version 2. */
struct store_case {
    int64_t id;
    char *rule;    /* NULL for a case not raised by a rule (a staff report) */
    char *subject; /* what the rule watches, by default the device id */
    char *category;
    enum gw_severity severity;
    enum gw_case_state state;
    char *title;
    char *detail;
    char *grid_id;
    char *community_id;
    char *street_id;
    char *device_id;
    bool has_assignee_role;
    enum gw_role assignee_role;
    char *assignee; /* person from the roster, NULL if none */
    int escalation; /* 0 community, 1 street, 2 district */
    int64_t count;  /* readings that reported it */
    int64_t rework_count;
    int64_t first_seen_at; /* reading times (the device's clock) */
    int64_t last_seen_at;
    int64_t opened_at; /* the gateway's clock from here on */
    int64_t updated_at;
    int64_t dispatched_at;
    int64_t deadline_at;
    int64_t closed_at;
    int64_t cleared_at; /* the rule last said "cleared", reset by a repeat */
    char *rule_file;    /* where the rule is defined, "dir/fire.lua:12" */
    char *rule_hash;    /* SHA-256 (hex) of that file as loaded */
    /* The reading that opened it, as gw_reading_to_json wrote it. Not read
     * back by store_case_find_open (left NULL there): the hot path has no
     * use for it and it is the one column that may be kilobytes long. */
    char *trigger;
    /* Schema version 3: the full loop. */
    int64_t version;       /* 1 at creation, + 1 on every change (optimistic locking) */
    bool overdue;          /* the current step ran past its limit */
    int64_t overdue_count; /* steps that ran past their limit, ever: not closed on time */
    int64_t incident_id;   /* the lead case of its incident; 0: not grouped */
    int score;             /* evaluation, 1 to 5; 0: not evaluated */
    int64_t return_count;  /* returned by a unit not responsible */
    char *reporter;        /* a report's reporter (a name, a phone); NULL for rules */
    char *reported_by;     /* the actor that reported it; NULL for rules */
    bool has_location;     /* a report placed by lat/lon */
    double lat, lon;
    int64_t first_dispatched_at; /* its clock started: what the figures count by */
    int64_t state_since;         /* when the current state was entered */
    int64_t deferred_at;         /* 0 unless deferred now */
};

/* One case_history row; history is append-only. A row written by a rule
 * (creation, raised severity, cleared) carries the rule's file hash and
 * the reading that made the rule act; other rows leave both NULL. */
struct store_history {
    int64_t case_id;
    int64_t at;
    const char *actor; /* "rule:fire.smoke", "gridgate:auto-dispatch", a user */
    bool has_from;     /* false for the row that creates the case */
    enum gw_case_state from_state;
    enum gw_case_state to_state;
    const char *note;      /* may be NULL */
    const char *rule_hash; /* may be NULL */
    const char *trigger;   /* JSON of the reading, may be NULL */
};

struct store;
struct gw_case_figures; /* gw_cases.h: the figures are the case loop's shape */

/* Opens the database, creating the file and migrating its schema as
 * needed. On failure returns NULL and sets *ret_error to a malloc'd
 * message naming the file (NULL if even that could not be allocated). */
struct store *store_open(const struct store_options *options, char **ret_error);
/* Checkpoints the WAL into the database and closes; NULL is fine. */
void store_close(struct store *store);

int store_schema_version(struct store *store);

/* A write transaction; store_begin takes the write lock at once. After a
 * failure inside the transaction call store_rollback, which is harmless
 * when SQLite already rolled back on its own. */
int store_begin(struct store *store);
int store_commit(struct store *store);
void store_rollback(struct store *store);
/* Whether a transaction is open (a failure may have ended it early). */
bool store_in_transaction(struct store *store);
/* A part of the open transaction that can be undone on its own:
 * store_part_rollback undoes what happened since store_part_begin, and
 * either call ends the part. Parts do not nest. */
int store_part_begin(struct store *store);
int store_part_commit(struct store *store);
void store_part_rollback(struct store *store);

/* Finds the one case of (rule, subject) that is not closed or cancelled.
 * Returns 1 and fills *ret_case, 0 when there is none, or a negative
 * errno. */
int store_case_find_open(struct store *store, const char *rule, const char *subject,
                         struct store_case *ret_case);
/* The case by id, with its trigger when with_trigger. Returns 1 and fills
 * *ret_case, 0 when there is none, or a negative errno. */
int store_case_get(struct store *store, int64_t id, bool with_trigger, struct store_case *ret_case);
/* Inserts the case (its id is ignored) and sets *ret_id. -EEXIST when
 * (rule, subject) already has an open case. */
int store_case_insert(struct store *store, const struct store_case *c, int64_t *ret_id);
/* Writes every field of the case that can change after its creation
 * (state, assignee, counts, times, version...; not its rule, subject,
 * place, reporter or provenance). -ENOENT when there is no such case. */
int store_case_update(struct store *store, const struct store_case *c);
int store_history_append(struct store *store, const struct store_history *h);

/* A deep copy of src into *dst (which then owns its strings). */
int store_case_copy(struct store_case *dst, const struct store_case *src);
void store_case_free_contents(struct store_case *c);

/* The newest open case of category in grid_id that leads an incident
 * (incident_id = its id) and was opened at or after since. Returns its id,
 * 0 when there is none, or a negative errno. */
int64_t store_incident_lead(struct store *store, const char *grid_id, const char *category,
                            int64_t since);
/* Up to max ids of open cases whose deadline_at is at or before now,
 * earliest first, into ret_ids. Returns how many, or a negative errno. */
int store_cases_due(struct store *store, int64_t now, int64_t *ret_ids, int max);
/* The earliest deadline_at of an open case; 0 when none; or a negative
 * errno. */
int64_t store_next_deadline(struct store *store);

/* Where: at most one of the three ids of a place set (the others NULL);
 * all NULL is the whole district. */
struct store_place {
    const char *grid_id;
    const char *community_id;
    const char *street_id;
};

/* What store_case_list selects: every condition set must hold. */
struct store_query {
    struct store_place scope; /* the viewer's */
    const char *grid_id;      /* the filter's, besides the scope; each NULL: any */
    const char *community_id;
    const char *street_id;
    const char *category;
    bool has_state;
    enum gw_case_state state;
    bool open_only; /* not closed or cancelled */
    bool has_severity;
    enum gw_severity severity;
    int overdue;         /* -1 any, 0 not overdue, 1 overdue */
    int64_t incident_id; /* 0: any */
    int64_t before_id;   /* 0: from the newest */
    int limit;           /* > 0 */
};

/* Cases newest first (id descending), without their trigger. Returns the
 * number of rows in *ret_cases (malloc'd; release each row with
 * store_case_free_contents, then the array), or a negative errno. */
int store_case_list(struct store *store, const struct store_query *q,
                    struct store_case **ret_cases);

/* The case's history, oldest first. The rows own their strings (release
 * with store_history_free). Returns 0 or a negative errno. */
int store_history_list(struct store *store, int64_t case_id, struct store_history **ret_rows,
                       size_t *ret_n);
void store_history_free(struct store_history *rows, size_t n);

/* Cases by state inside scope, and the open ones overdue now. */
int store_count_by_state(struct store *store, const struct store_place *scope,
                         int64_t ret_counts[GW_CASE_STATE_COUNT], int64_t *ret_overdue);

/* The evaluation figures (gw_cases.h, struct gw_case_figures) of the cases
 * inside scope over [from, to), one row per value of group_column
 * ("street_id", "community_id", "grid_id"; NULL: one row keyed
 * "district", present even with no cases), sorted by key. Returns the
 * number of rows in *ret (malloc'd, each key malloc'd) or a negative
 * errno. */
int store_figures(struct store *store, const struct store_place *scope, const char *group_column,
                  int64_t from, int64_t to, struct gw_case_figures **ret);

/* Devices' last-seen times (gateway clock), kept across restarts for the
 * deadman. store_seen_put inserts or raises the device's time; an older
 * time than the one stored changes nothing. Call it inside store_begin /
 * store_commit to write many at once. */
int store_seen_put(struct store *store, const char *device_id, int64_t last_seen_at);

/* Called for each stored device; device_id lives until fn returns. A
 * negative return stops the walk and becomes store_seen_each's result.
 * fn must not call store_seen_each. */
typedef int (*store_seen_fn)(const char *device_id, int64_t last_seen_at, void *userdata);

/* Walks every stored device (in no particular order). Returns 0, fn's
 * negative result, or a negative errno. */
int store_seen_each(struct store *store, store_seen_fn fn, void *userdata);

/* ---- the InfluxDB outbox ---- */

/* Adds a row of len bytes of whole lines (len > 0) in the open
 * transaction (or on its own without one). Returns 0 or a negative errno. */
int store_outbox_put(struct store *store, const char *lines, size_t len);

/* Called for each row read, id ascending; lines (len bytes, followed by
 * a NUL) live until fn returns. A negative return stops the read and
 * becomes its result. */
typedef int (*store_outbox_fn)(int64_t id, const char *lines, size_t len, void *userdata);

/* Reads the rows after after_id in id order: at most max_rows, and no
 * more once max_bytes were read (but always one row when there is one).
 * Returns the number of rows given to fn, fn's negative result, or a
 * negative errno. */
int store_outbox_read(struct store *store, int64_t after_id, int max_rows, size_t max_bytes,
                      store_outbox_fn fn, void *userdata);
/* Deletes every row up to and including up_to_id. Returns the number of
 * rows deleted or a negative errno. */
int64_t store_outbox_delete(struct store *store, int64_t up_to_id);
/* Rows in the outbox, or a negative errno. */
int64_t store_outbox_count(struct store *store);

/* Open cases (not closed or cancelled) per (street, category), and of
 * those the ones overdue now (deferred ones are not); cases without a
 * street are left out. The strings live until fn returns; a negative
 * return stops the walk and becomes the result. */
typedef int (*store_rule_case_fn)(const char *rule, const char *subject, void *userdata);
/* Calls fn per case that a rule opened, still open and not cleared (what
 * a clear_case of that rule about that subject would change). Returns 0,
 * fn's negative result, or a negative errno. */
int store_open_rule_cases(struct store *store, store_rule_case_fn fn, void *userdata);

typedef int (*store_open_count_fn)(const char *street_id, const char *category, int64_t open,
                                   int64_t overdue, void *userdata);
/* Calls fn per (street, category) having open cases, sorted. Returns 0,
 * fn's negative result, or a negative errno. */
int store_open_counts(struct store *store, store_open_count_fn fn, void *userdata);

#endif
