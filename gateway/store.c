#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_fs.h"
#include "gw_log.h"

#define DEFAULT_BUSY_TIMEOUT_MS 5000

/* Migration N (1-based) is migrations[N - 1]; each runs in the same
 * transaction as the PRAGMA user_version that records it. Never edit a
 * shipped migration: add the next one.
 *
 * Enumerated values (state, severity, roles) are stored as gw_domain's
 * names without CHECK constraints: SQLite cannot alter a CHECK without
 * rebuilding the table, and the case loop may yet add a state. The store
 * writes only names that gw_domain produced and refuses unknown ones when
 * it reads them back. */
static const char *const migrations[] = {
    /* 1: cases and their append-only history. */
    "CREATE TABLE cases (\n"
    "  id            INTEGER PRIMARY KEY AUTOINCREMENT,\n" /* published: never reused */
    "  rule          TEXT,\n"
    "  subject       TEXT,\n"
    "  category      TEXT NOT NULL,\n"
    "  severity      TEXT NOT NULL,\n"
    "  state         TEXT NOT NULL,\n"
    "  title         TEXT NOT NULL,\n"
    "  detail        TEXT,\n"
    "  grid_id       TEXT NOT NULL,\n"
    "  community_id  TEXT,\n"
    "  street_id     TEXT,\n"
    "  device_id     TEXT,\n"
    "  assignee_role TEXT,\n"
    "  assignee      TEXT,\n"
    "  escalation    INTEGER NOT NULL DEFAULT 0 CHECK (escalation >= 0),\n"
    "  count         INTEGER NOT NULL DEFAULT 1 CHECK (count >= 0),\n"
    "  rework_count  INTEGER NOT NULL DEFAULT 0 CHECK (rework_count >= 0),\n"
    "  first_seen_at INTEGER,\n"
    "  last_seen_at  INTEGER,\n"
    "  opened_at     INTEGER NOT NULL,\n"
    "  updated_at    INTEGER NOT NULL,\n"
    "  dispatched_at INTEGER,\n"
    "  deadline_at   INTEGER,\n"
    "  closed_at     INTEGER,\n"
    "  cleared_at    INTEGER,\n"
    "  CHECK (rule IS NULL OR subject IS NOT NULL)\n"
    ") STRICT;\n"
    /* One open case per (rule, subject). Cases without a rule (staff
     * reports) have NULL there and are not constrained. */
    "CREATE UNIQUE INDEX cases_one_open ON cases (rule, subject)\n"
    "  WHERE state NOT IN ('closed', 'cancelled');\n"
    "CREATE INDEX cases_grid ON cases (grid_id, state);\n"
    /* What the deadline timer scans. */
    "CREATE INDEX cases_due ON cases (deadline_at)\n"
    "  WHERE deadline_at IS NOT NULL AND state NOT IN ('closed', 'cancelled');\n"
    "CREATE TABLE case_history (\n"
    "  id         INTEGER PRIMARY KEY,\n"
    "  case_id    INTEGER NOT NULL REFERENCES cases (id),\n"
    "  at         INTEGER NOT NULL,\n"
    "  actor      TEXT NOT NULL,\n"
    "  from_state TEXT,\n" /* NULL on the row that creates the case */
    "  to_state   TEXT NOT NULL,\n"
    "  note       TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX case_history_case ON case_history (case_id, id);\n"
    "CREATE TRIGGER case_history_no_update BEFORE UPDATE ON case_history\n"
    "  BEGIN SELECT RAISE(ABORT, 'case_history is append-only'); END;\n"
    "CREATE TRIGGER case_history_no_delete BEFORE DELETE ON case_history\n"
    "  BEGIN SELECT RAISE(ABORT, 'case_history is append-only'); END;\n",
    /* 2: provenance of what rules did (the rule's file and content hash,
     * the reading that made it act), NULL on older rows; and the devices'
     * last-seen times, so the deadman survives a restart. Not "trigger":
     * that is an SQL keyword other tools would stumble on. */
    "ALTER TABLE cases ADD COLUMN rule_file TEXT;\n"
    "ALTER TABLE cases ADD COLUMN rule_hash TEXT;\n"
    "ALTER TABLE cases ADD COLUMN trigger_reading TEXT;\n"
    "ALTER TABLE case_history ADD COLUMN rule_hash TEXT;\n"
    "ALTER TABLE case_history ADD COLUMN trigger_reading TEXT;\n"
    "CREATE TABLE device_seen (\n"
    "  device_id    TEXT PRIMARY KEY,\n"
    "  last_seen_at INTEGER NOT NULL\n" /* gateway clock */
    ") STRICT, WITHOUT ROWID;\n",
    /* 3: the full loop: optimistic locking (version), time limits passed
     * (overdue, overdue_count), incidents, evaluation, returns, reports
     * by people, the start of the clock and of the current state. Older
     * rows start at version 1, in their state since their last update,
     * their clock started at their dispatch. The indexes answer the API's
     * pages, newest first, by each place, by state and by incident;
     * cases_grid (grid_id, state) gives way to (grid_id, id). */
    "ALTER TABLE cases ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1);\n"
    "ALTER TABLE cases ADD COLUMN overdue INTEGER NOT NULL DEFAULT 0 CHECK (overdue IN (0, 1));\n"
    "ALTER TABLE cases ADD COLUMN overdue_count INTEGER NOT NULL DEFAULT 0"
    " CHECK (overdue_count >= 0);\n"
    "ALTER TABLE cases ADD COLUMN incident_id INTEGER;\n"
    "ALTER TABLE cases ADD COLUMN score INTEGER CHECK (score BETWEEN 1 AND 5);\n"
    "ALTER TABLE cases ADD COLUMN return_count INTEGER NOT NULL DEFAULT 0"
    " CHECK (return_count >= 0);\n"
    "ALTER TABLE cases ADD COLUMN reporter TEXT;\n"
    "ALTER TABLE cases ADD COLUMN reported_by TEXT;\n"
    "ALTER TABLE cases ADD COLUMN lat REAL;\n"
    "ALTER TABLE cases ADD COLUMN lon REAL;\n"
    "ALTER TABLE cases ADD COLUMN first_dispatched_at INTEGER;\n"
    "ALTER TABLE cases ADD COLUMN state_since INTEGER;\n"
    "ALTER TABLE cases ADD COLUMN deferred_at INTEGER;\n"
    "UPDATE cases SET state_since = updated_at, first_dispatched_at = dispatched_at;\n"
    "DROP INDEX cases_grid;\n"
    "CREATE INDEX cases_by_grid ON cases (grid_id, id);\n"
    "CREATE INDEX cases_by_community ON cases (community_id, id);\n"
    "CREATE INDEX cases_by_street ON cases (street_id, id);\n"
    "CREATE INDEX cases_by_state ON cases (state, id);\n"
    "CREATE INDEX cases_by_incident ON cases (incident_id) WHERE incident_id IS NOT NULL;\n",
    /* 4: the transactional outbox towards InfluxDB: the case service
     * writes the line protocol of what a batch changed (case events, rule
     * emits) in the batch's own transaction; the InfluxDB feeder sends the
     * rows in id order and deletes them once InfluxDB has answered them.
     * AUTOINCREMENT: the feeder reads after the last id it sent, so an
     * id must never come back once the rows before it are deleted. */
    "CREATE TABLE influx_outbox (\n"
    "  id    INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  lines TEXT NOT NULL\n"
    ") STRICT;\n",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION,
               "one migration per schema version");

enum stmt_id {
    STMT_BEGIN,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_SAVEPOINT,
    STMT_RELEASE,
    STMT_ROLLBACK_TO,
    STMT_FIND_OPEN,
    STMT_GET,
    STMT_GET_WITH_TRIGGER,
    STMT_INSERT,
    STMT_UPDATE,
    STMT_HISTORY,
    STMT_HISTORY_LIST,
    STMT_LEAD,
    STMT_DUE,
    STMT_NEXT_DEADLINE,
    STMT_SEEN_PUT,
    STMT_SEEN_ALL,
    STMT_OUTBOX_PUT,
    STMT_OUTBOX_READ,
    STMT_OUTBOX_DELETE,
    STMT_OUTBOX_COUNT,
    STMT_OPEN_COUNTS,
    STMT_OPEN_RULE_CASES,
    STMT_COUNT,
};

/* The column order read_case() expects; trigger_reading is left out
 * (store.h) but for STMT_GET_WITH_TRIGGER, which adds it last. */
#define CASE_COLUMNS                                                                               \
    "id, rule, subject, category, severity, state, title, detail, grid_id, community_id, "         \
    "street_id, device_id, assignee_role, assignee, escalation, count, rework_count, "             \
    "first_seen_at, last_seen_at, opened_at, updated_at, dispatched_at, deadline_at, closed_at, "  \
    "cleared_at, rule_file, rule_hash, version, overdue, overdue_count, incident_id, score, "      \
    "return_count, reporter, reported_by, lat, lon, first_dispatched_at, state_since, deferred_at"
#define COL_TRIGGER 40

/* What a case's creation fixes, then what may change (bind_mutable()'s
 * order, shared by INSERT and UPDATE). */
#define MUTABLE_SET                                                                                \
    "category = ?, severity = ?, state = ?, title = ?, detail = ?, assignee_role = ?,"             \
    " assignee = ?, escalation = ?, count = ?, rework_count = ?, first_seen_at = ?,"               \
    " last_seen_at = ?, updated_at = ?, dispatched_at = ?, deadline_at = ?, closed_at = ?,"        \
    " cleared_at = ?, version = ?, overdue = ?, overdue_count = ?, incident_id = ?, score = ?,"    \
    " return_count = ?, first_dispatched_at = ?, state_since = ?, deferred_at = ?"
#define MUTABLE_COLUMNS                                                                            \
    "category, severity, state, title, detail, assignee_role, assignee, escalation, count,"        \
    " rework_count, first_seen_at, last_seen_at, updated_at, dispatched_at, deadline_at,"          \
    " closed_at, cleared_at, version, overdue, overdue_count, incident_id, score, return_count,"   \
    " first_dispatched_at, state_since, deferred_at"
#define FIXED_COLUMNS                                                                              \
    "rule, subject, grid_id, community_id, street_id, device_id, opened_at, rule_file,"            \
    " rule_hash, trigger_reading, reporter, reported_by, lat, lon"

/* The condition of the partial indexes cases_one_open and cases_due: a
 * query must repeat it word for word for the index to answer. */
#define OPEN_STATE "state NOT IN ('closed', 'cancelled')"

/* Parameters are plain '?' bound in order (struct binder). */
static const char *const stmt_sql[STMT_COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_SAVEPOINT] = "SAVEPOINT part",
    [STMT_RELEASE] = "RELEASE part",
    [STMT_ROLLBACK_TO] = "ROLLBACK TO part",
    /* Same condition as cases_one_open, so that index answers. */
    [STMT_FIND_OPEN] = "SELECT " CASE_COLUMNS " FROM cases"
                       " WHERE rule = ? AND subject = ? AND " OPEN_STATE,
    [STMT_GET] = "SELECT " CASE_COLUMNS " FROM cases WHERE id = ?",
    [STMT_GET_WITH_TRIGGER] = "SELECT " CASE_COLUMNS ", trigger_reading FROM cases WHERE id = ?",
    [STMT_INSERT] =
        "INSERT INTO cases (" FIXED_COLUMNS ", " MUTABLE_COLUMNS ") VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [STMT_UPDATE] = "UPDATE cases SET " MUTABLE_SET " WHERE id = ?",
    [STMT_HISTORY] = "INSERT INTO case_history (case_id, at, actor, from_state, to_state, note,"
                     " rule_hash, trigger_reading) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    [STMT_HISTORY_LIST] = "SELECT case_id, at, actor, from_state, to_state, note, rule_hash,"
                          " trigger_reading FROM case_history WHERE case_id = ? ORDER BY id",
    /* A grid holds few cases: its index, newest first, stops at the first. */
    [STMT_LEAD] = "SELECT id FROM cases WHERE grid_id = ? AND category = ? AND incident_id = id"
                  " AND opened_at >= ? AND " OPEN_STATE " ORDER BY id DESC LIMIT 1",
    [STMT_DUE] = "SELECT id FROM cases WHERE deadline_at IS NOT NULL AND " OPEN_STATE
                 " AND deadline_at <= ? ORDER BY deadline_at LIMIT ?",
    [STMT_NEXT_DEADLINE] = "SELECT min(deadline_at) FROM cases"
                           " WHERE deadline_at IS NOT NULL AND " OPEN_STATE,
    /* Never moves a time back: two savers, or a clock stepped back. */
    [STMT_SEEN_PUT] = "INSERT INTO device_seen (device_id, last_seen_at) VALUES (?, ?)"
                      " ON CONFLICT (device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at"
                      " WHERE excluded.last_seen_at > device_seen.last_seen_at",
    [STMT_SEEN_ALL] = "SELECT device_id, last_seen_at FROM device_seen",
    [STMT_OUTBOX_PUT] = "INSERT INTO influx_outbox (lines) VALUES (?)",
    [STMT_OUTBOX_READ] = "SELECT id, lines FROM influx_outbox WHERE id > ? ORDER BY id LIMIT ?",
    [STMT_OUTBOX_DELETE] = "DELETE FROM influx_outbox WHERE id <= ?",
    [STMT_OUTBOX_COUNT] = "SELECT count(*) FROM influx_outbox",
    /* Open as the case_open figure counts it (not closed or cancelled),
     * overdue as store_count_by_state counts it (a deferred case's clock
     * is stopped). The open cases are few next to the archived ones. */
    [STMT_OPEN_COUNTS] = "SELECT street_id, category, count(*),"
                         " sum(overdue AND state <> 'deferred') FROM cases"
                         " WHERE " OPEN_STATE " AND street_id IS NOT NULL"
                         " GROUP BY street_id, category ORDER BY street_id, category",
    /* Served by the partial index cases_one_open. */
    [STMT_OPEN_RULE_CASES] = "SELECT rule, subject FROM cases"
                             " WHERE rule IS NOT NULL AND " OPEN_STATE " AND cleared_at IS NULL",
};

struct store {
    sqlite3 *db;
    char *path;
    bool read_only;
    sqlite3_stmt *stmts[STMT_COUNT];
    struct gw_log_limit log_limit; /* a failing disk fails every reading */
};

static pthread_once_t sqlite_log_once = PTHREAD_ONCE_INIT;

/* SQLite's error log repeats every failure that the store already logs
 * with its context, so only its notices and warnings (WAL recovered,
 * automatic index) are worth a line of their own. */
static void sqlite_log(void *userdata, int code, const char *msg)
{
    (void)userdata;
    switch (code & 0xff) {
    case SQLITE_NOTICE:
        gw_info("sqlite", "%s", msg);
        break;
    case SQLITE_WARNING:
        gw_warn("sqlite", "%s", msg);
        break;
    default:
        gw_debug("sqlite", "%s (%d)", msg, code);
        break;
    }
}

static void route_sqlite_log(void)
{
    /* Refused when SQLite was initialised before us (another user in the
     * process); its log then stays where that user put it. */
    if (sqlite3_config(SQLITE_CONFIG_LOG, sqlite_log, NULL) != SQLITE_OK)
        gw_debug("store", "SQLite was initialised elsewhere; its log is not routed");
}

static int errno_of(sqlite3 *db, int rc)
{
    int sys;

    switch (rc & 0xff) {
    case SQLITE_OK:
        return 0;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_INTERRUPT:
        return -EINTR;
    case SQLITE_ABORT:
        return -ECANCELED;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_TOOBIG:
        return -EMSGSIZE;
    case SQLITE_NOLFS:
        return -EFBIG;
    case SQLITE_NOTFOUND:
        return -ENOENT;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
        return -EINVAL;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return -EEXIST;
        if (rc == SQLITE_CONSTRAINT_TRIGGER)
            return -EPERM;
        return -EINVAL;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
        /* The system's errno says more than SQLite's code here. */
        sys = db ? sqlite3_system_errno(db) : 0;
        if (sys > 0)
            return -sys;
        return (rc & 0xff) == SQLITE_CANTOPEN ? -ENOENT : -EIO;
    default:
        return -EIO;
    }
}

/* Logs SQLite's message for a failure at run time and translates it. */
static int fail(struct store *s, int rc, const char *what)
{
    int r = errno_of(s->db, rc);

    gw_log_limited(&s->log_limit, GW_LOG_ERROR, "store", "%s: %s: %s (sqlite %d)", s->path, what,
                   sqlite3_errmsg(s->db), rc);
    return r;
}

static void set_error(char **error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(char **error, const char *fmt, ...)
{
    va_list ap;

    free(*error);
    *error = NULL;
    va_start(ap, fmt);
    if (vasprintf(error, fmt, ap) < 0)
        *error = NULL;
    va_end(ap);
}

/* Binds '?' parameters in order; after the first failure it does nothing
 * and keeps that failure for the step. */
struct binder {
    sqlite3_stmt *stmt;
    int index;
    int rc;
};

static void bind_text(struct binder *b, const char *v)
{
    b->index++;
    if (b->rc != SQLITE_OK)
        return;
    /* SQLITE_STATIC: the statement is reset before the caller's strings go. */
    b->rc = v ? sqlite3_bind_text(b->stmt, b->index, v, -1, SQLITE_STATIC)
              : sqlite3_bind_null(b->stmt, b->index);
}

static void bind_int64(struct binder *b, int64_t v)
{
    b->index++;
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_int64(b->stmt, b->index, v);
}

/* 0 stands for NULL. */
static void bind_time(struct binder *b, int64_t v)
{
    b->index++;
    if (b->rc != SQLITE_OK)
        return;
    b->rc = v ? sqlite3_bind_int64(b->stmt, b->index, v) : sqlite3_bind_null(b->stmt, b->index);
}

static void release(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* Runs a bound statement that returns no row; resets it whatever happens. */
static int run(struct store *s, sqlite3_stmt *stmt, int bind_rc, const char *what)
{
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(stmt) : bind_rc;
    int r = rc == SQLITE_DONE ? 0 : fail(s, rc, what);

    release(stmt);
    return r;
}

/* Runs a bound UPDATE of one case; -ENOENT when it matched none. */
static int run_update(struct store *s, sqlite3_stmt *stmt, int bind_rc, const char *what)
{
    int r = run(s, stmt, bind_rc, what);

    if (r == 0 && sqlite3_changes(s->db) == 0)
        r = -ENOENT;
    return r;
}

static int column_dup(sqlite3_stmt *stmt, int col, char **ret)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    char *copy = NULL;

    if (text) {
        copy = strdup((const char *)text);
        if (!copy)
            return -ENOMEM;
    } else if (sqlite3_column_type(stmt, col) != SQLITE_NULL) {
        return -ENOMEM; /* sqlite3_column_text ran out of memory */
    }
    *ret = copy;
    return 0;
}

static int64_t column_time(sqlite3_stmt *stmt, int col)
{
    return sqlite3_column_type(stmt, col) == SQLITE_NULL ? 0 : sqlite3_column_int64(stmt, col);
}

/* Parses an enumerated column with one of gw_domain's *_parse. */
static int column_enum(struct store *s, sqlite3_stmt *stmt, int col, int (*parse)(const char *),
                       int *ret)
{
    const char *text = (const char *)sqlite3_column_text(stmt, col);
    int v = parse(text);

    if (v < 0) {
        gw_log_limited(&s->log_limit, GW_LOG_ERROR, "store", "%s: case %lld: unknown %s '%s'",
                       s->path, (long long)sqlite3_column_int64(stmt, 0),
                       sqlite3_column_name(stmt, col), text ? text : "(null)");
        return -EBADMSG;
    }
    *ret = v;
    return 0;
}

static double column_double(sqlite3_stmt *stmt, int col)
{
    return sqlite3_column_double(stmt, col);
}

/* The text columns of a case, by column index, in the order of
 * CASE_COLUMNS. */
static int read_case_strings(sqlite3_stmt *stmt, struct store_case *c, bool with_trigger)
{
    const struct {
        int col;
        char **field;
    } texts[] = {
        { 1, &c->rule },         { 2, &c->subject },      { 3, &c->category },
        { 6, &c->title },        { 7, &c->detail },       { 8, &c->grid_id },
        { 9, &c->community_id }, { 10, &c->street_id },   { 11, &c->device_id },
        { 13, &c->assignee },    { 25, &c->rule_file },   { 26, &c->rule_hash },
        { 33, &c->reporter },    { 34, &c->reported_by },
    };
    int r = 0;

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]) && r == 0; i++)
        r = column_dup(stmt, texts[i].col, texts[i].field);
    if (r == 0 && with_trigger)
        r = column_dup(stmt, COL_TRIGGER, &c->trigger);
    return r;
}

static int read_case(struct store *s, sqlite3_stmt *stmt, bool with_trigger,
                     struct store_case *ret_case)
{
    struct store_case c = { 0 };
    int severity = 0, state = 0, role = 0;
    int r;

    c.id = sqlite3_column_int64(stmt, 0);
    r = read_case_strings(stmt, &c, with_trigger);
    if (r >= 0)
        r = column_enum(s, stmt, 4, gw_severity_parse, &severity);
    if (r >= 0)
        r = column_enum(s, stmt, 5, gw_case_state_parse, &state);
    c.has_assignee_role = sqlite3_column_type(stmt, 12) != SQLITE_NULL;
    if (r >= 0 && c.has_assignee_role)
        r = column_enum(s, stmt, 12, gw_role_parse, &role);
    if (r < 0) {
        store_case_free_contents(&c);
        return r;
    }
    c.severity = (enum gw_severity)severity;
    c.state = (enum gw_case_state)state;
    c.assignee_role = (enum gw_role)role;
    c.escalation = sqlite3_column_int(stmt, 14);
    c.count = sqlite3_column_int64(stmt, 15);
    c.rework_count = sqlite3_column_int64(stmt, 16);
    c.first_seen_at = column_time(stmt, 17);
    c.last_seen_at = column_time(stmt, 18);
    c.opened_at = column_time(stmt, 19);
    c.updated_at = column_time(stmt, 20);
    c.dispatched_at = column_time(stmt, 21);
    c.deadline_at = column_time(stmt, 22);
    c.closed_at = column_time(stmt, 23);
    c.cleared_at = column_time(stmt, 24);
    c.version = sqlite3_column_int64(stmt, 27);
    c.overdue = sqlite3_column_int(stmt, 28) != 0;
    c.overdue_count = sqlite3_column_int64(stmt, 29);
    c.incident_id = column_time(stmt, 30);
    c.score = sqlite3_column_int(stmt, 31);
    c.return_count = sqlite3_column_int64(stmt, 32);
    c.has_location = sqlite3_column_type(stmt, 35) != SQLITE_NULL;
    c.lat = c.has_location ? column_double(stmt, 35) : 0;
    c.lon = c.has_location ? column_double(stmt, 36) : 0;
    c.first_dispatched_at = column_time(stmt, 37);
    c.state_since = column_time(stmt, 38);
    c.deferred_at = column_time(stmt, 39);
    *ret_case = c;
    return 0;
}

#define N_CASE_STRINGS 15

/* Every string field of a case, for copying and freeing alike. */
static void case_strings(struct store_case *c, char **ret[N_CASE_STRINGS])
{
    char **fields[N_CASE_STRINGS] = {
        &c->rule,      &c->subject,      &c->category,  &c->title,     &c->detail,
        &c->grid_id,   &c->community_id, &c->street_id, &c->device_id, &c->assignee,
        &c->rule_file, &c->rule_hash,    &c->trigger,   &c->reporter,  &c->reported_by,
    };

    memcpy(ret, fields, sizeof(fields));
}

void store_case_free_contents(struct store_case *c)
{
    char **fields[N_CASE_STRINGS];

    if (!c)
        return;
    case_strings(c, fields);
    for (int i = 0; i < N_CASE_STRINGS; i++)
        free(*fields[i]);
    *c = (struct store_case){ 0 };
}

int store_case_copy(struct store_case *dst, const struct store_case *src)
{
    struct store_case copy = *src, from = *src; /* from: src's pointers, to read */
    char **to_fields[N_CASE_STRINGS], **from_fields[N_CASE_STRINGS];

    case_strings(&copy, to_fields);
    case_strings(&from, from_fields);
    for (int i = 0; i < N_CASE_STRINGS; i++)
        *to_fields[i] = NULL;
    for (int i = 0; i < N_CASE_STRINGS; i++) {
        if (*from_fields[i] && !(*to_fields[i] = strdup(*from_fields[i]))) {
            store_case_free_contents(&copy);
            return -ENOMEM;
        }
    }
    *dst = copy;
    return 0;
}

/* ---- opening and migrating ---- */

/* sqlite3_errmsg plus the system's reason when there is one, for open. */
static void set_sqlite_error(char **error, struct store *s, const char *what)
{
    int sys = sqlite3_system_errno(s->db);

    if (sys > 0)
        set_error(error, "%s: %s: %s (%s)", s->path, what, sqlite3_errmsg(s->db), strerror(sys));
    else
        set_error(error, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static int exec(struct store *s, const char *sql, const char *what, char **error)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

    if (rc == SQLITE_OK)
        return 0;
    set_sqlite_error(error, s, what);
    return errno_of(s->db, rc);
}

/* Runs a PRAGMA that answers one row and copies its first column. */
static int pragma_text(struct store *s, const char *sql, char *buf, size_t size, char **error)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL);
    const unsigned char *text;

    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        set_sqlite_error(error, s, sql);
        rc = errno_of(s->db, rc);
        sqlite3_finalize(stmt);
        return rc < 0 ? rc : -EIO;
    }
    text = sqlite3_column_text(stmt, 0);
    snprintf(buf, size, "%s", text ? (const char *)text : "");
    sqlite3_finalize(stmt);
    return 0;
}

static int pragma_int(struct store *s, const char *sql, int *ret, char **error)
{
    char buf[32];
    char *end;
    long v;
    int r = pragma_text(s, sql, buf, sizeof(buf), error);

    if (r < 0)
        return r;
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\0' || v < 0 || v > 1000000) {
        set_error(error, "%s: %s answered '%s'", s->path, sql, buf);
        return -EBADMSG;
    }
    *ret = (int)v;
    return 0;
}

/* Durability: WAL with synchronous=NORMAL. A commit is a write() to the
 * WAL, so it survives a crash of the gateway (kill -9); the WAL is
 * fsync'd at each checkpoint, so a power loss or kernel crash can take
 * back the last transactions since then, never corrupt the file. That is
 * the journal's own bargain (write() per record, fsync grouped), and the
 * journal replays what the store lost, as long as a rule worker does not
 * commit its journal position more durably than the store holds it. */
static int configure(struct store *s, int busy_timeout_ms, char **error)
{
    char mode[16];
    int fk = 0;
    int r;

    sqlite3_busy_timeout(s->db, busy_timeout_ms > 0 ? busy_timeout_ms : DEFAULT_BUSY_TIMEOUT_MS);
    /* A reader takes the file as its writer made it. */
    if (s->read_only)
        return 0;
    r = pragma_text(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode), error);
    if (r < 0)
        return r;
    if (strcmp(mode, "wal") != 0) {
        set_error(error, "%s: cannot use write-ahead logging here (journal mode stays %s)", s->path,
                  mode);
        return -ENOTSUP;
    }
    r = exec(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", "configure", error);
    if (r < 0)
        return r;
    r = pragma_int(s, "PRAGMA foreign_keys", &fk, error);
    if (r < 0)
        return r;
    if (fk != 1) {
        set_error(error, "%s: this SQLite cannot enforce foreign keys", s->path);
        return -ENOTSUP;
    }
    return 0;
}

/* Brings the schema to STORE_SCHEMA_VERSION. BEGIN IMMEDIATE serialises
 * two gateways (or workers) opening a new file at once: the second one
 * reads the version only after the first has committed. */
/* A reader cannot migrate: it needs the file at this build's version. */
static int check_version(struct store *s, char **error)
{
    int version = 0;
    int r = pragma_int(s, "PRAGMA user_version", &version, error);

    if (r < 0)
        return r;
    if (version != STORE_SCHEMA_VERSION) {
        set_error(error,
                  "%s: schema version %d, this gridgate reads %d (a writer opening it first "
                  "migrates it)",
                  s->path, version, STORE_SCHEMA_VERSION);
        return -EPROTONOSUPPORT;
    }
    return 0;
}

static int migrate(struct store *s, char **error)
{
    char sql[64];
    int version = 0;
    int r;

    r = exec(s, "BEGIN IMMEDIATE", "migrate", error);
    if (r < 0)
        return r;
    r = pragma_int(s, "PRAGMA user_version", &version, error);
    if (r < 0)
        goto out;
    if (version > STORE_SCHEMA_VERSION) {
        set_error(error, "%s: schema version %d is newer than this gridgate knows (%d)", s->path,
                  version, STORE_SCHEMA_VERSION);
        r = -EPROTONOSUPPORT;
        goto out;
    }
    for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
        r = exec(s, migrations[v], "migrate", error);
        if (r < 0)
            goto out;
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
        r = exec(s, sql, "migrate", error);
        if (r < 0)
            goto out;
    }
    r = exec(s, "COMMIT", "migrate", error);
    if (r == 0 && version < STORE_SCHEMA_VERSION)
        gw_info("store", "%s: schema migrated from version %d to %d", s->path, version,
                STORE_SCHEMA_VERSION);
out:
    if (r < 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

static int prepare(struct store *s, char **error)
{
    for (int i = 0; i < STMT_COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[i],
                                    NULL);
        if (rc != SQLITE_OK) {
            set_sqlite_error(error, s, "prepare");
            return errno_of(s->db, rc);
        }
    }
    return 0;
}

/* Frees a store, also a half-built one; checkpoint only once it works. */
static void destroy(struct store *s, bool checkpoint)
{
    int rc;

    if (!s)
        return;
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    if (s->db) {
        if (checkpoint) {
            rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
            /* BUSY: another connection still uses the file; the last one
             * to close checkpoints it. */
            if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                gw_warn("store", "%s: checkpoint: %s", s->path, sqlite3_errmsg(s->db));
        }
        rc = sqlite3_close(s->db);
        if (rc != SQLITE_OK)
            gw_error("store", "%s: close: %s", s->path, sqlite3_errstr(rc));
    }
    free(s->path);
    free(s);
}

struct store *store_open(const struct store_options *options, char **ret_error)
{
    struct store *s = NULL;
    char *error = NULL;
    int rc;

    pthread_once(&sqlite_log_once, route_sqlite_log);
    if (!options || !options->path || !*options->path) {
        set_error(&error, "store: no database path given");
        goto fail;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(options->path))) {
        set_error(&error, "%s: out of memory", options->path);
        goto fail;
    }
    s->log_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(1.0, 10.0);
    s->read_only = options->read_only;
    /* SQLite would create an empty file that no writer has given a schema. */
    if (s->read_only && access(s->path, F_OK) != 0) {
        set_error(&error,
                  "%s: no case store there yet (a reader opens only what the gateway "
                  "created): %s",
                  s->path, strerror(errno));
        goto fail;
    }
    rc = s->read_only ? 0 : gw_mkdir_parent(s->path);
    if (rc < 0) {
        set_error(&error, "%s: cannot make its directory: %s", s->path, strerror(-rc));
        goto fail;
    }
    /* NOMUTEX: one thread at a time per store (see store.h). */
    rc = sqlite3_open_v2(
        s->path, &s->db,
        (s->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
            SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
        NULL);
    if (rc != SQLITE_OK) {
        if (s->db)
            set_sqlite_error(&error, s, "cannot open");
        else
            set_error(&error, "%s: cannot open: %s", s->path, sqlite3_errstr(rc));
        goto fail;
    }
    if (configure(s, options->busy_timeout_ms, &error) < 0 ||
        (s->read_only ? check_version(s, &error) : migrate(s, &error)) < 0 ||
        prepare(s, &error) < 0)
        goto fail;
    return s;

fail:
    destroy(s, false);
    if (ret_error)
        *ret_error = error;
    else
        free(error);
    return NULL;
}

void store_close(struct store *store) { destroy(store, store && !store->read_only); }

int store_schema_version(struct store *store)
{
    char *error = NULL;
    int version = 0;
    int r = pragma_int(store, "PRAGMA user_version", &version, &error);

    if (r < 0) {
        gw_error("store", "%s", error ? error : "schema version: out of memory");
        free(error);
        return r;
    }
    return version;
}

/* ---- transactions ---- */

int store_begin(struct store *store)
{
    return run(store, store->stmts[STMT_BEGIN], SQLITE_OK, "begin");
}

int store_commit(struct store *store)
{
    return run(store, store->stmts[STMT_COMMIT], SQLITE_OK, "commit");
}

void store_rollback(struct store *store)
{
    /* Some failures (full disk, I/O, out of memory) roll back by
     * themselves; a second ROLLBACK would only be an error. */
    if (!sqlite3_get_autocommit(store->db))
        (void)run(store, store->stmts[STMT_ROLLBACK], SQLITE_OK, "rollback");
}

bool store_in_transaction(struct store *store) { return !sqlite3_get_autocommit(store->db); }

int store_part_begin(struct store *store)
{
    return run(store, store->stmts[STMT_SAVEPOINT], SQLITE_OK, "savepoint");
}

int store_part_commit(struct store *store)
{
    return run(store, store->stmts[STMT_RELEASE], SQLITE_OK, "release savepoint");
}

void store_part_rollback(struct store *store)
{
    /* Rolling back to a savepoint keeps it open: release it too. When a
     * failure already ended the whole transaction there is none left, and
     * the caller learns it from store_in_transaction. */
    if (!sqlite3_get_autocommit(store->db) &&
        run(store, store->stmts[STMT_ROLLBACK_TO], SQLITE_OK, "rollback to savepoint") == 0)
        (void)run(store, store->stmts[STMT_RELEASE], SQLITE_OK, "release savepoint");
}

/* ---- cases ---- */

/* Steps a statement that answers at most one case. Returns 1 and fills
 * *ret_case, 0 when none, or a negative errno; resets the statement. */
static int step_case(struct store *s, sqlite3_stmt *stmt, int bind_rc, bool with_trigger,
                     struct store_case *ret_case, const char *what)
{
    struct store_case c;
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(stmt) : bind_rc;
    int r;

    if (rc == SQLITE_ROW) {
        r = read_case(s, stmt, with_trigger, &c);
        if (r == 0)
            r = 1;
    } else if (rc == SQLITE_DONE) {
        r = 0;
    } else {
        r = fail(s, rc, what);
    }
    release(stmt);
    if (r == 1)
        *ret_case = c;
    return r;
}

int store_case_find_open(struct store *store, const char *rule, const char *subject,
                         struct store_case *ret_case)
{
    struct binder b = { store->stmts[STMT_FIND_OPEN], 0, SQLITE_OK };

    bind_text(&b, rule);
    bind_text(&b, subject);
    return step_case(store, b.stmt, b.rc, false, ret_case, "find open case");
}

int store_case_get(struct store *store, int64_t id, bool with_trigger, struct store_case *ret_case)
{
    struct binder b = { store->stmts[with_trigger ? STMT_GET_WITH_TRIGGER : STMT_GET], 0,
                        SQLITE_OK };

    bind_int64(&b, id);
    return step_case(store, b.stmt, b.rc, with_trigger, ret_case, "get case");
}

static void bind_double_or_null(struct binder *b, bool has, double v)
{
    b->index++;
    if (b->rc == SQLITE_OK)
        b->rc =
            has ? sqlite3_bind_double(b->stmt, b->index, v) : sqlite3_bind_null(b->stmt, b->index);
}

/* In MUTABLE_COLUMNS' order. */
static void bind_mutable(struct binder *b, const struct store_case *c)
{
    bind_text(b, c->category);
    bind_text(b, gw_severity_name(c->severity));
    bind_text(b, gw_case_state_name(c->state));
    bind_text(b, c->title);
    bind_text(b, c->detail);
    bind_text(b, c->has_assignee_role ? gw_role_name(c->assignee_role) : NULL);
    bind_text(b, c->assignee);
    bind_int64(b, c->escalation);
    bind_int64(b, c->count);
    bind_int64(b, c->rework_count);
    bind_time(b, c->first_seen_at);
    bind_time(b, c->last_seen_at);
    bind_time(b, c->updated_at);
    bind_time(b, c->dispatched_at);
    bind_time(b, c->deadline_at);
    bind_time(b, c->closed_at);
    bind_time(b, c->cleared_at);
    bind_int64(b, c->version);
    bind_int64(b, c->overdue ? 1 : 0);
    bind_int64(b, c->overdue_count);
    bind_time(b, c->incident_id);
    bind_time(b, c->score);
    bind_int64(b, c->return_count);
    bind_time(b, c->first_dispatched_at);
    bind_time(b, c->state_since);
    bind_time(b, c->deferred_at);
}

int store_case_insert(struct store *store, const struct store_case *c, int64_t *ret_id)
{
    struct binder b = { store->stmts[STMT_INSERT], 0, SQLITE_OK };
    int r;

    /* FIXED_COLUMNS, then the rest. */
    bind_text(&b, c->rule);
    bind_text(&b, c->subject);
    bind_text(&b, c->grid_id);
    bind_text(&b, c->community_id);
    bind_text(&b, c->street_id);
    bind_text(&b, c->device_id);
    bind_time(&b, c->opened_at);
    bind_text(&b, c->rule_file);
    bind_text(&b, c->rule_hash);
    bind_text(&b, c->trigger);
    bind_text(&b, c->reporter);
    bind_text(&b, c->reported_by);
    bind_double_or_null(&b, c->has_location, c->lat);
    bind_double_or_null(&b, c->has_location, c->lon);
    bind_mutable(&b, c);
    r = run(store, b.stmt, b.rc, "insert case");
    if (r == 0)
        *ret_id = sqlite3_last_insert_rowid(store->db);
    return r;
}

int store_case_update(struct store *store, const struct store_case *c)
{
    struct binder b = { store->stmts[STMT_UPDATE], 0, SQLITE_OK };

    bind_mutable(&b, c);
    bind_int64(&b, c->id);
    return run_update(store, b.stmt, b.rc, "update case");
}

int store_history_append(struct store *store, const struct store_history *h)
{
    struct binder b = { store->stmts[STMT_HISTORY], 0, SQLITE_OK };

    bind_int64(&b, h->case_id);
    bind_time(&b, h->at);
    bind_text(&b, h->actor);
    bind_text(&b, h->has_from ? gw_case_state_name(h->from_state) : NULL);
    bind_text(&b, gw_case_state_name(h->to_state));
    bind_text(&b, h->note);
    bind_text(&b, h->rule_hash);
    bind_text(&b, h->trigger);
    return run(store, b.stmt, b.rc, "append history");
}

/* Steps a statement that answers one integer (NULL: 0). */
static int64_t step_int(struct store *s, sqlite3_stmt *stmt, int bind_rc, const char *what)
{
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(stmt) : bind_rc;
    int64_t v;

    if (rc == SQLITE_ROW)
        v = column_time(stmt, 0);
    else if (rc == SQLITE_DONE)
        v = 0;
    else
        v = fail(s, rc, what);
    release(stmt);
    return v;
}

int64_t store_incident_lead(struct store *store, const char *grid_id, const char *category,
                            int64_t since)
{
    struct binder b = { store->stmts[STMT_LEAD], 0, SQLITE_OK };

    bind_text(&b, grid_id);
    bind_text(&b, category);
    bind_int64(&b, since);
    return step_int(store, b.stmt, b.rc, "find incident lead");
}

int store_cases_due(struct store *store, int64_t now, int64_t *ret_ids, int max)
{
    struct binder b = { store->stmts[STMT_DUE], 0, SQLITE_OK };
    int rc, n = 0;

    bind_int64(&b, now);
    bind_int64(&b, max);
    rc = b.rc;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(b.stmt);
        if (rc == SQLITE_ROW && n < max)
            ret_ids[n++] = sqlite3_column_int64(b.stmt, 0);
    }
    if (rc != SQLITE_DONE)
        n = fail(store, rc, "find cases due");
    release(b.stmt);
    return n;
}

int64_t store_next_deadline(struct store *store)
{
    return step_int(store, store->stmts[STMT_NEXT_DEADLINE], SQLITE_OK, "next deadline");
}

/* ---- devices' last-seen times ---- */

int store_seen_put(struct store *store, const char *device_id, int64_t last_seen_at)
{
    struct binder b = { store->stmts[STMT_SEEN_PUT], 0, SQLITE_OK };

    bind_text(&b, device_id);
    bind_int64(&b, last_seen_at);
    return run(store, b.stmt, b.rc, "save last seen");
}

int store_seen_each(struct store *store, store_seen_fn fn, void *userdata)
{
    sqlite3_stmt *stmt = store->stmts[STMT_SEEN_ALL];
    int rc, r = 0;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);

        if (!id) {
            r = -ENOMEM; /* the column is NOT NULL: only memory fails here */
            break;
        }
        r = fn(id, sqlite3_column_int64(stmt, 1), userdata);
        if (r < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(store, rc, "load last seen");
    release(stmt);
    return r;
}

/* ---- reads built per call ---- */

#define MAX_PARAMS 16

/* An SQL text and its '?' parameters, text or integer, in order. */
struct sql {
    struct gw_buf text;
    int n;
    struct {
        const char *text; /* NULL: the integer */
        int64_t i;
    } params[MAX_PARAMS];
    int r; /* the first failure: -ENOMEM */
};

static void sql_add(struct sql *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sql_add(struct sql *q, const char *fmt, ...)
{
    va_list ap;

    if (q->r < 0)
        return;
    va_start(ap, fmt);
    if (gw_buf_vprintf(&q->text, fmt, ap) < 0)
        q->r = -ENOMEM;
    va_end(ap);
}

/* Appends " AND cond" whose one '?' takes text. */
static void sql_text(struct sql *q, const char *cond, const char *v)
{
    if (q->n == MAX_PARAMS) {
        q->r = -E2BIG; /* cannot happen: no query has that many */
        return;
    }
    sql_add(q, " AND %s", cond);
    q->params[q->n].text = v;
    q->params[q->n++].i = 0;
}

static void sql_int(struct sql *q, const char *cond, int64_t v)
{
    if (q->n == MAX_PARAMS) {
        q->r = -E2BIG;
        return;
    }
    sql_add(q, " AND %s", cond);
    q->params[q->n].text = NULL;
    q->params[q->n++].i = v;
}

/* Prepares q (not cached: reads are not the hot path) and binds it. */
static int sql_prepare(struct store *s, struct sql *q, sqlite3_stmt **ret_stmt)
{
    sqlite3_stmt *stmt = NULL;
    struct binder b;
    int rc;

    if (q->r < 0)
        return q->r;
    rc = sqlite3_prepare_v2(s->db, q->text.data, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "prepare a read");
    b = (struct binder){ stmt, 0, SQLITE_OK };
    for (int i = 0; i < q->n; i++) {
        if (q->params[i].text)
            bind_text(&b, q->params[i].text);
        else
            bind_int64(&b, q->params[i].i);
    }
    if (b.rc != SQLITE_OK) {
        rc = fail(s, b.rc, "bind a read");
        sqlite3_finalize(stmt);
        return rc;
    }
    *ret_stmt = stmt;
    return 0;
}

/* The scope's one condition, answered by that place's index. */
static void sql_scope(struct sql *q, const struct store_place *scope)
{
    if (scope->grid_id)
        sql_text(q, "grid_id = ?", scope->grid_id);
    else if (scope->community_id)
        sql_text(q, "community_id = ?", scope->community_id);
    else if (scope->street_id)
        sql_text(q, "street_id = ?", scope->street_id);
}

/* The place conditions of a list at one level (the scope's value, the
 * filter's). Only the narrowest level may use its index, and once: a
 * unary + keeps SQLite from picking a wider place's index (a street's
 * thousands of cases) over the grid's. */
static void sql_place(struct sql *q, const char *column, const char *scope_v, const char *filter_v,
                      const char *indexed)
{
    const char *values[2] = { scope_v, filter_v };
    bool use_index = strcmp(column, indexed) == 0;
    char cond[48];

    for (int i = 0; i < 2; i++) {
        if (!values[i])
            continue;
        snprintf(cond, sizeof(cond), "%s%s = ?", use_index ? "" : "+", column);
        use_index = false;
        sql_text(q, cond, values[i]);
    }
}

static const char *first_of(const char *a, const char *b) { return a ? a : b; }

/* Which index answers the list: the incident's, else the narrowest place
 * given, else the state's; "" for none (newest first by id). */
static const char *list_index(const struct store_query *q)
{
    if (q->incident_id > 0)
        return "incident_id";
    if (first_of(q->scope.grid_id, q->grid_id))
        return "grid_id";
    if (first_of(q->scope.community_id, q->community_id))
        return "community_id";
    if (first_of(q->scope.street_id, q->street_id))
        return "street_id";
    return q->has_state ? "state" : "";
}

static void build_list(struct sql *sql, const struct store_query *q)
{
    const char *indexed = list_index(q);

    sql_add(sql, "SELECT " CASE_COLUMNS " FROM cases WHERE 1");
    if (q->incident_id > 0)
        sql_int(sql, "incident_id = ?", q->incident_id);
    sql_place(sql, "grid_id", q->scope.grid_id, q->grid_id, indexed);
    sql_place(sql, "community_id", q->scope.community_id, q->community_id, indexed);
    sql_place(sql, "street_id", q->scope.street_id, q->street_id, indexed);
    if (q->has_state)
        sql_text(sql, strcmp(indexed, "state") == 0 ? "state = ?" : "+state = ?",
                 gw_case_state_name(q->state));
    if (q->open_only)
        sql_add(sql, " AND +" OPEN_STATE);
    if (q->has_severity)
        sql_text(sql, "+severity = ?", gw_severity_name(q->severity));
    if (q->category)
        sql_text(sql, "+category = ?", q->category);
    if (q->overdue >= 0)
        sql_int(sql, "+overdue = ?", q->overdue ? 1 : 0);
    if (q->before_id > 0)
        sql_int(sql, "id < ?", q->before_id);
    sql_add(sql, " ORDER BY id DESC LIMIT %d", q->limit > 0 ? q->limit : 1);
}

int store_case_list(struct store *store, const struct store_query *q, struct store_case **ret_cases)
{
    struct sql sql = { .text = GW_BUF_INIT };
    sqlite3_stmt *stmt = NULL;
    struct store_case *rows = NULL;
    int n = 0, rc, r;

    build_list(&sql, q);
    r = sql_prepare(store, &sql, &stmt);
    if (r < 0)
        goto out;
    /* LIMIT bounds the rows: one allocation. */
    rows = calloc(q->limit > 0 ? (size_t)q->limit : 1, sizeof(*rows));
    if (!rows) {
        r = -ENOMEM;
        goto out;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && n < q->limit) {
        r = read_case(store, stmt, false, &rows[n]);
        if (r < 0)
            goto out;
        n++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = fail(store, rc, "list cases");
out:
    sqlite3_finalize(stmt);
    gw_buf_free(&sql.text);
    if (r < 0) {
        for (int i = 0; i < n; i++)
            store_case_free_contents(&rows[i]);
        free(rows);
        return r;
    }
    *ret_cases = rows;
    return n;
}

static int read_history(struct store *s, sqlite3_stmt *stmt, struct store_history *h)
{
    char *texts[4] = { NULL, NULL, NULL, NULL }; /* actor, note, rule_hash, trigger */
    const int cols[4] = { 2, 5, 6, 7 };
    int from = 0, to = 0;
    int r = 0;

    for (int i = 0; i < 4 && r == 0; i++)
        r = column_dup(stmt, cols[i], &texts[i]);
    h->has_from = sqlite3_column_type(stmt, 3) != SQLITE_NULL;
    if (r == 0 && h->has_from)
        r = column_enum(s, stmt, 3, gw_case_state_parse, &from);
    if (r == 0)
        r = column_enum(s, stmt, 4, gw_case_state_parse, &to);
    if (r < 0) {
        for (int i = 0; i < 4; i++)
            free(texts[i]);
        return r;
    }
    h->case_id = sqlite3_column_int64(stmt, 0);
    h->at = column_time(stmt, 1);
    h->from_state = (enum gw_case_state)from;
    h->to_state = (enum gw_case_state)to;
    h->actor = texts[0];
    h->note = texts[1];
    h->rule_hash = texts[2];
    h->trigger = texts[3];
    return 0;
}

int store_history_list(struct store *store, int64_t case_id, struct store_history **ret_rows,
                       size_t *ret_n)
{
    struct binder b = { store->stmts[STMT_HISTORY_LIST], 0, SQLITE_OK };
    struct store_history *rows = NULL;
    size_t n = 0, cap = 0;
    int rc, r = 0;

    bind_int64(&b, case_id);
    rc = b.rc;
    while (r == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
        rc = sqlite3_step(b.stmt);
        if (rc != SQLITE_ROW)
            break;
        if (n == cap) {
            size_t new_cap = cap ? cap * 2 : 8;
            struct store_history *grown = realloc(rows, new_cap * sizeof(*rows));

            if (!grown) {
                r = -ENOMEM;
                break;
            }
            rows = grown;
            cap = new_cap;
        }
        r = read_history(store, b.stmt, &rows[n]);
        if (r == 0)
            n++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(store, rc, "read history");
    release(b.stmt);
    if (r < 0) {
        store_history_free(rows, n);
        return r;
    }
    *ret_rows = rows;
    *ret_n = n;
    return 0;
}

void store_history_free(struct store_history *rows, size_t n)
{
    if (!rows)
        return;
    /* The store made these strings: they are the rows' own. */
    for (size_t i = 0; i < n; i++) {
        free((char *)rows[i].actor);
        free((char *)rows[i].note);
        free((char *)rows[i].rule_hash);
        free((char *)rows[i].trigger);
    }
    free(rows);
}

int store_count_by_state(struct store *store, const struct store_place *scope,
                         int64_t ret_counts[GW_CASE_STATE_COUNT], int64_t *ret_overdue)
{
    struct sql sql = { .text = GW_BUF_INIT };
    int64_t counts[GW_CASE_STATE_COUNT] = { 0 };
    int64_t overdue = 0;
    sqlite3_stmt *stmt = NULL;
    int rc, r;

    sql_add(&sql, "SELECT state, count(*), sum(overdue AND state NOT IN"
                  " ('closed', 'cancelled', 'deferred')) FROM cases WHERE 1");
    sql_scope(&sql, scope);
    sql_add(&sql, " GROUP BY state");
    r = sql_prepare(store, &sql, &stmt);
    while (r == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int state;

        r = column_enum(store, stmt, 0, gw_case_state_parse, &state);
        if (r < 0)
            break;
        counts[state] = sqlite3_column_int64(stmt, 1);
        overdue += sqlite3_column_int64(stmt, 2);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(store, rc, "count cases");
    sqlite3_finalize(stmt);
    gw_buf_free(&sql.text);
    if (r < 0)
        return r;
    memcpy(ret_counts, counts, sizeof(counts));
    *ret_overdue = overdue;
    return 0;
}

/* ---- figures (docs/api.md, GET /stats) ---- */

/* Per case: whether its clock started in the period (fd) and what it
 * counts for. The period's bounds are parameters 1 and 2 of the query,
 * numbered so they can repeat. */
#define FIGURE_COLUMNS                                                                             \
    "sum(opened_at >= ?1 AND opened_at < ?2),"                                                     \
    " sum(fd), sum(fd AND state = 'deferred'),"                                                    \
    " sum(fd AND state = 'closed' AND closed_at < ?2),"                                            \
    " sum(fd AND state = 'closed' AND closed_at < ?2 AND overdue_count = 0),"                      \
    " sum(fd AND urgent), sum(fd AND urgent AND state = 'deferred'),"                              \
    " sum(fd AND urgent AND state = 'closed' AND closed_at < ?2),"                                 \
    " sum(fd AND urgent AND state = 'closed' AND closed_at < ?2 AND overdue_count = 0),"           \
    " sum(fd AND rework_count >= 1),"                                                              \
    " sum(overdue AND state NOT IN ('closed', 'cancelled', 'deferred')),"                          \
    " sum(" OPEN_STATE ")"

/* FIGURE_COLUMNS' order. */
static const size_t figure_fields[] = {
    offsetof(struct gw_case_figures, opened),
    offsetof(struct gw_case_figures, dispatched),
    offsetof(struct gw_case_figures, deferred),
    offsetof(struct gw_case_figures, closed),
    offsetof(struct gw_case_figures, closed_on_time),
    offsetof(struct gw_case_figures, urgent_due),
    offsetof(struct gw_case_figures, urgent_deferred),
    offsetof(struct gw_case_figures, urgent_closed),
    offsetof(struct gw_case_figures, urgent_closed_on_time),
    offsetof(struct gw_case_figures, reworked),
    offsetof(struct gw_case_figures, overdue_now),
    offsetof(struct gw_case_figures, open_now),
};

/* The period [from, to) as parameters ?1 and ?2, so a query may repeat
 * them; plain '?' after them number on from 3. */
static void sql_period(struct sql *q, int64_t from, int64_t to)
{
    q->params[0].text = NULL;
    q->params[0].i = from;
    q->params[1].text = NULL;
    q->params[1].i = to;
    q->n = 2;
}

/* A new row of figures, zero but for the steps (none ended: negative). */
static struct gw_case_figures *figures_add(struct gw_case_figures **rows, int *n, int *cap)
{
    struct gw_case_figures *f;

    if (*n == *cap) {
        int new_cap = *cap ? *cap * 2 : 8;
        struct gw_case_figures *grown = realloc(*rows, (size_t)new_cap * sizeof(**rows));

        if (!grown)
            return NULL;
        *rows = grown;
        *cap = new_cap;
    }
    f = &(*rows)[(*n)++];
    *f = (struct gw_case_figures){ 0 };
    for (int i = 0; i < GW_CASE_STATE_COUNT; i++)
        f->mean_step_s[i] = -1;
    return f;
}

static int figures_counts(struct store *s, const struct store_place *scope, const char *key,
                          int64_t from, int64_t to, struct gw_case_figures **ret, int *ret_n)
{
    struct sql sql = { .text = GW_BUF_INIT };
    struct gw_case_figures *rows = NULL;
    sqlite3_stmt *stmt = NULL;
    int n = 0, cap = 0, rc, r;

    sql_add(&sql,
            "SELECT %s AS k, " FIGURE_COLUMNS " FROM (SELECT *,"
            " coalesce(first_dispatched_at >= ?1 AND first_dispatched_at < ?2, 0) AS fd,"
            " severity = 'critical' AS urgent FROM cases WHERE 1",
            key);
    sql_period(&sql, from, to);
    sql_scope(&sql, scope);
    /* A case without that place (written before it was recorded) belongs
     * to no group of its kind. */
    sql_add(&sql, ") WHERE k IS NOT NULL GROUP BY k ORDER BY k");
    r = sql_prepare(s, &sql, &stmt);
    while (r == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct gw_case_figures *f = figures_add(&rows, &n, &cap);

        if (!f || column_dup(stmt, 0, &f->key) < 0 || !f->key) {
            r = -ENOMEM;
            if (f)
                n--; /* its key is not there to free */
            break;
        }
        /* sum() over no row is NULL: 0 here. */
        for (size_t i = 0; i < sizeof(figure_fields) / sizeof(figure_fields[0]); i++)
            *(int64_t *)((char *)f + figure_fields[i]) = sqlite3_column_int64(stmt, (int)i + 1);
        f->due = f->dispatched;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(s, rc, "figures");
    sqlite3_finalize(stmt);
    gw_buf_free(&sql.text);
    *ret = rows;
    *ret_n = n;
    return r;
}

static struct gw_case_figures *figures_find(struct gw_case_figures *rows, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

/* Mean stays: a stay in a state starts at a history row entering it (its
 * to_state differs from the row before) and ends at the next such row of
 * the case; rows that leave the state as it was (escalated, cleared, a
 * severity raised) neither start nor end one. */
static int figures_steps(struct store *s, const struct store_place *scope, const char *key,
                         int64_t from, int64_t to, struct gw_case_figures *rows, int n)
{
    struct sql sql = { .text = GW_BUF_INIT };
    sqlite3_stmt *stmt = NULL;
    int rc, r;

    sql_add(&sql,
            "WITH h AS (SELECT h.case_id, h.id, h.at, h.to_state, %s AS k,"
            " lag(h.to_state) OVER (PARTITION BY h.case_id ORDER BY h.id) AS prev"
            " FROM case_history h JOIN cases c ON c.id = h.case_id WHERE h.at < ?2",
            key);
    sql_period(&sql, from, to);
    sql_scope(&sql, scope);
    sql_add(&sql, "), starts AS (SELECT k, to_state, at,"
                  " lead(at) OVER (PARTITION BY case_id ORDER BY id) AS end_at"
                  " FROM h WHERE prev IS NULL OR prev <> to_state)"
                  " SELECT k, to_state, avg(end_at - at) FROM starts"
                  " WHERE end_at >= ?1 AND end_at < ?2 GROUP BY k, to_state");
    r = sql_prepare(s, &sql, &stmt);
    while (r == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(stmt, 0);
        struct gw_case_figures *f = k ? figures_find(rows, n, k) : NULL;
        int state;

        r = column_enum(s, stmt, 1, gw_case_state_parse, &state);
        if (r == 0 && f)
            f->mean_step_s[state] = sqlite3_column_double(stmt, 2) / 1e9;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(s, rc, "figures of steps");
    sqlite3_finalize(stmt);
    gw_buf_free(&sql.text);
    return r;
}

int store_figures(struct store *store, const struct store_place *scope, const char *group_column,
                  int64_t from, int64_t to, struct gw_case_figures **ret)
{
    /* The key is a column name from the caller's fixed list, never input. */
    const char *key = group_column ? group_column : "'district'";
    struct gw_case_figures *rows = NULL;
    int n = 0;
    int r = figures_counts(store, scope, key, from, to, &rows, &n);

    if (r == 0 && n == 0 && !group_column) {
        /* The district has figures even with no case: zeros. */
        int cap = 0;
        struct gw_case_figures *f = figures_add(&rows, &n, &cap);

        if (!f || !(f->key = strdup("district"))) {
            n = 0;
            r = -ENOMEM;
        }
    }
    if (r == 0)
        r = figures_steps(store, scope, key, from, to, rows, n);
    if (r < 0) {
        for (int i = 0; i < n; i++)
            free(rows[i].key);
        free(rows);
        return r;
    }
    *ret = rows;
    return n;
}

/* ---- the InfluxDB outbox ---- */

int store_outbox_put(struct store *store, const char *lines, size_t len)
{
    struct binder b = { store->stmts[STMT_OUTBOX_PUT], 0, SQLITE_OK };

    if (len == 0 || len > INT32_MAX)
        return -EINVAL;
    b.index++;
    b.rc = sqlite3_bind_text(b.stmt, b.index, lines, (int)len, SQLITE_STATIC);
    return run(store, b.stmt, b.rc, "put lines in the outbox");
}

int store_outbox_read(struct store *store, int64_t after_id, int max_rows, size_t max_bytes,
                      store_outbox_fn fn, void *userdata)
{
    struct binder b = { store->stmts[STMT_OUTBOX_READ], 0, SQLITE_OK };
    size_t bytes = 0;
    int rc, r = 0, n = 0;

    if (max_rows <= 0 || !fn)
        return -EINVAL;
    bind_int64(&b, after_id);
    bind_int64(&b, max_rows);
    rc = b.rc;
    /* At least one row, whatever its size: a row larger than max_bytes
     * must not stop the reader for good. */
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        const char *text;
        int len;

        if (n > 0 && bytes >= max_bytes)
            break;
        rc = sqlite3_step(b.stmt);
        if (rc != SQLITE_ROW)
            break;
        text = (const char *)sqlite3_column_text(b.stmt, 1);
        len = sqlite3_column_bytes(b.stmt, 1);
        if (!text) {
            r = -ENOMEM; /* the column is NOT NULL: only memory fails here */
            break;
        }
        r = fn(sqlite3_column_int64(b.stmt, 0), text, (size_t)len, userdata);
        if (r < 0)
            break;
        bytes += (size_t)len;
        n++;
    }
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = fail(store, rc, "read the outbox");
    release(b.stmt);
    return r < 0 ? r : n;
}

int64_t store_outbox_delete(struct store *store, int64_t up_to_id)
{
    struct binder b = { store->stmts[STMT_OUTBOX_DELETE], 0, SQLITE_OK };
    int r;

    bind_int64(&b, up_to_id);
    r = run(store, b.stmt, b.rc, "delete from the outbox");
    return r < 0 ? r : (int64_t)sqlite3_changes(store->db);
}

int64_t store_outbox_count(struct store *store)
{
    return step_int(store, store->stmts[STMT_OUTBOX_COUNT], SQLITE_OK, "count the outbox");
}

int store_open_rule_cases(struct store *store, store_rule_case_fn fn, void *userdata)
{
    sqlite3_stmt *stmt = store->stmts[STMT_OPEN_RULE_CASES];
    int rc, r = 0;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *rule = (const char *)sqlite3_column_text(stmt, 0);
        const char *subject = (const char *)sqlite3_column_text(stmt, 1);

        if (!rule || !subject) {
            r = -ENOMEM; /* neither is NULL here (the CHECK): only memory fails */
            break;
        }
        r = fn(rule, subject, userdata);
        if (r < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(store, rc, "list open rule cases");
    release(stmt);
    return r;
}

int store_open_counts(struct store *store, store_open_count_fn fn, void *userdata)
{
    sqlite3_stmt *stmt = store->stmts[STMT_OPEN_COUNTS];
    int rc, r = 0;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *street = (const char *)sqlite3_column_text(stmt, 0);
        const char *category = (const char *)sqlite3_column_text(stmt, 1);

        if (!street || !category) {
            r = -ENOMEM; /* both are NOT NULL here: only memory fails */
            break;
        }
        r = fn(street, category, sqlite3_column_int64(stmt, 2), sqlite3_column_int64(stmt, 3),
               userdata);
        if (r < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(store, rc, "count open cases");
    release(stmt);
    return r;
}
