/* store: the case store, SQLite behind a narrow interface.
 *
 * Owns the database connection, its schema and its migrations, and the
 * prepared statements of the hot path. Speaks in cases, history rows and
 * devices' last-seen times, never in SQL: gw_cases (the only user) knows
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
#include <stdint.h>

#include "gw_domain.h"

/* The schema version this build creates and understands (PRAGMA
 * user_version). A file with a newer version is refused. */
#define STORE_SCHEMA_VERSION 2

struct store_options {
    const char *path;
    int busy_timeout_ms; /* 0 = default (5000) */
};

/* One row of the cases table. Strings passed to store_case_insert are
 * copied by the store; a row filled by store_case_find_open owns its
 * strings, released by store_case_free_contents.
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

/* Finds the one case of (rule, subject) that is not closed or cancelled.
 * Returns 1 and fills *ret_case, 0 when there is none, or a negative
 * errno. */
int store_case_find_open(struct store *store, const char *rule, const char *subject,
                         struct store_case *ret_case);
/* Inserts the case (its id is ignored) and sets *ret_id. -EEXIST when
 * (rule, subject) already has an open case. */
int store_case_insert(struct store *store, const struct store_case *c, int64_t *ret_id);
/* A rule reported the case again: count + 1, last_seen_at and severity as
 * given, cleared_at reset. -ENOENT when there is no such case. */
int store_case_record_repeat(struct store *store, int64_t id, int64_t last_seen_at,
                             enum gw_severity severity, int64_t at);
/* Moves the case to dispatched, to role and assignee (may be NULL);
 * deadline_at 0 = none. -ENOENT when there is no such case. */
int store_case_dispatch(struct store *store, int64_t id, enum gw_role role, const char *assignee,
                        int64_t deadline_at, int64_t at);
/* The rule said the condition is over; the state does not change. */
int store_case_mark_cleared(struct store *store, int64_t id, int64_t at);
int store_history_append(struct store *store, const struct store_history *h);

void store_case_free_contents(struct store_case *c);

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

#endif
