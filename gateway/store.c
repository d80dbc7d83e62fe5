#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

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
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION,
               "one migration per schema version");

enum stmt_id {
    STMT_BEGIN,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_FIND_OPEN,
    STMT_INSERT,
    STMT_REPEAT,
    STMT_DISPATCH,
    STMT_CLEARED,
    STMT_HISTORY,
    STMT_SEEN_PUT,
    STMT_SEEN_ALL,
    STMT_COUNT,
};

/* The column order read_case() expects; trigger_reading is left out (store.h). */
#define CASE_COLUMNS                                                                               \
    "id, rule, subject, category, severity, state, title, detail, grid_id, community_id, "         \
    "street_id, device_id, assignee_role, assignee, escalation, count, rework_count, "             \
    "first_seen_at, last_seen_at, opened_at, updated_at, dispatched_at, deadline_at, closed_at, "  \
    "cleared_at, rule_file, rule_hash"

/* Parameters are plain '?' bound in order (struct binder). */
static const char *const stmt_sql[STMT_COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    /* Same condition as cases_one_open, so that index answers. */
    [STMT_FIND_OPEN] = "SELECT " CASE_COLUMNS " FROM cases"
                       " WHERE rule = ? AND subject = ? AND state NOT IN ('closed', 'cancelled')",
    [STMT_INSERT] =
        "INSERT INTO cases (rule, subject, category, severity, state, title, detail,"
        " grid_id, community_id, street_id, device_id, assignee_role, assignee,"
        " escalation, count, rework_count, first_seen_at, last_seen_at, opened_at,"
        " updated_at, dispatched_at, deadline_at, closed_at, cleared_at, rule_file, rule_hash,"
        " trigger_reading)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [STMT_REPEAT] = "UPDATE cases SET count = count + 1, last_seen_at = ?, severity = ?,"
                    " cleared_at = NULL, updated_at = ? WHERE id = ?",
    [STMT_DISPATCH] = "UPDATE cases SET state = 'dispatched', assignee_role = ?, assignee = ?,"
                      " dispatched_at = ?, deadline_at = ?, updated_at = ? WHERE id = ?",
    [STMT_CLEARED] = "UPDATE cases SET cleared_at = ?, updated_at = ? WHERE id = ?",
    [STMT_HISTORY] = "INSERT INTO case_history (case_id, at, actor, from_state, to_state, note,"
                     " rule_hash, trigger_reading) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    /* Never moves a time back: two savers, or a clock stepped back. */
    [STMT_SEEN_PUT] = "INSERT INTO device_seen (device_id, last_seen_at) VALUES (?, ?)"
                      " ON CONFLICT (device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at"
                      " WHERE excluded.last_seen_at > device_seen.last_seen_at",
    [STMT_SEEN_ALL] = "SELECT device_id, last_seen_at FROM device_seen",
};

struct store {
    sqlite3 *db;
    char *path;
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

static int read_case(struct store *s, sqlite3_stmt *stmt, struct store_case *ret_case)
{
    struct store_case c = { 0 };
    int severity = 0, state = 0, role = 0;
    int r;

    c.id = sqlite3_column_int64(stmt, 0);
    r = column_dup(stmt, 1, &c.rule);
    if (r >= 0)
        r = column_dup(stmt, 2, &c.subject);
    if (r >= 0)
        r = column_dup(stmt, 3, &c.category);
    if (r >= 0)
        r = column_enum(s, stmt, 4, gw_severity_parse, &severity);
    if (r >= 0)
        r = column_enum(s, stmt, 5, gw_case_state_parse, &state);
    if (r >= 0)
        r = column_dup(stmt, 6, &c.title);
    if (r >= 0)
        r = column_dup(stmt, 7, &c.detail);
    if (r >= 0)
        r = column_dup(stmt, 8, &c.grid_id);
    if (r >= 0)
        r = column_dup(stmt, 9, &c.community_id);
    if (r >= 0)
        r = column_dup(stmt, 10, &c.street_id);
    if (r >= 0)
        r = column_dup(stmt, 11, &c.device_id);
    c.has_assignee_role = sqlite3_column_type(stmt, 12) != SQLITE_NULL;
    if (r >= 0 && c.has_assignee_role)
        r = column_enum(s, stmt, 12, gw_role_parse, &role);
    if (r >= 0)
        r = column_dup(stmt, 13, &c.assignee);
    if (r >= 0)
        r = column_dup(stmt, 25, &c.rule_file);
    if (r >= 0)
        r = column_dup(stmt, 26, &c.rule_hash);
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
    *ret_case = c;
    return 0;
}

void store_case_free_contents(struct store_case *c)
{
    if (!c)
        return;
    free(c->rule);
    free(c->subject);
    free(c->category);
    free(c->title);
    free(c->detail);
    free(c->grid_id);
    free(c->community_id);
    free(c->street_id);
    free(c->device_id);
    free(c->assignee);
    free(c->rule_file);
    free(c->rule_hash);
    free(c->trigger);
    *c = (struct store_case){ 0 };
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
    /* NOMUTEX: one thread at a time per store (see store.h). */
    rc = sqlite3_open_v2(s->path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_EXRESCODE,
                         NULL);
    if (rc != SQLITE_OK) {
        if (s->db)
            set_sqlite_error(&error, s, "cannot open");
        else
            set_error(&error, "%s: cannot open: %s", s->path, sqlite3_errstr(rc));
        goto fail;
    }
    if (configure(s, options->busy_timeout_ms, &error) < 0 || migrate(s, &error) < 0 ||
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

void store_close(struct store *store) { destroy(store, true); }

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

/* ---- the hot path ---- */

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

int store_case_find_open(struct store *store, const char *rule, const char *subject,
                         struct store_case *ret_case)
{
    sqlite3_stmt *stmt = store->stmts[STMT_FIND_OPEN];
    struct binder b = { stmt, 0, SQLITE_OK };
    struct store_case c;
    int rc, r;

    bind_text(&b, rule);
    bind_text(&b, subject);
    rc = b.rc == SQLITE_OK ? sqlite3_step(stmt) : b.rc;
    if (rc == SQLITE_ROW) {
        r = read_case(store, stmt, &c);
        if (r == 0)
            r = 1;
    } else if (rc == SQLITE_DONE) {
        r = 0;
    } else {
        r = fail(store, rc, "find open case");
    }
    release(stmt);
    if (r == 1)
        *ret_case = c;
    return r;
}

int store_case_insert(struct store *store, const struct store_case *c, int64_t *ret_id)
{
    sqlite3_stmt *stmt = store->stmts[STMT_INSERT];
    struct binder b = { stmt, 0, SQLITE_OK };
    int r;

    bind_text(&b, c->rule);
    bind_text(&b, c->subject);
    bind_text(&b, c->category);
    bind_text(&b, gw_severity_name(c->severity));
    bind_text(&b, gw_case_state_name(c->state));
    bind_text(&b, c->title);
    bind_text(&b, c->detail);
    bind_text(&b, c->grid_id);
    bind_text(&b, c->community_id);
    bind_text(&b, c->street_id);
    bind_text(&b, c->device_id);
    bind_text(&b, c->has_assignee_role ? gw_role_name(c->assignee_role) : NULL);
    bind_text(&b, c->assignee);
    bind_int64(&b, c->escalation);
    bind_int64(&b, c->count);
    bind_int64(&b, c->rework_count);
    bind_time(&b, c->first_seen_at);
    bind_time(&b, c->last_seen_at);
    bind_time(&b, c->opened_at);
    bind_time(&b, c->updated_at);
    bind_time(&b, c->dispatched_at);
    bind_time(&b, c->deadline_at);
    bind_time(&b, c->closed_at);
    bind_time(&b, c->cleared_at);
    bind_text(&b, c->rule_file);
    bind_text(&b, c->rule_hash);
    bind_text(&b, c->trigger);
    r = run(store, stmt, b.rc, "insert case");
    if (r == 0)
        *ret_id = sqlite3_last_insert_rowid(store->db);
    return r;
}

int store_case_record_repeat(struct store *store, int64_t id, int64_t last_seen_at,
                             enum gw_severity severity, int64_t at)
{
    struct binder b = { store->stmts[STMT_REPEAT], 0, SQLITE_OK };

    bind_time(&b, last_seen_at);
    bind_text(&b, gw_severity_name(severity));
    bind_time(&b, at);
    bind_int64(&b, id);
    return run_update(store, b.stmt, b.rc, "update case");
}

int store_case_dispatch(struct store *store, int64_t id, enum gw_role role, const char *assignee,
                        int64_t deadline_at, int64_t at)
{
    struct binder b = { store->stmts[STMT_DISPATCH], 0, SQLITE_OK };

    bind_text(&b, gw_role_name(role));
    bind_text(&b, assignee);
    bind_time(&b, at);
    bind_time(&b, deadline_at);
    bind_time(&b, at);
    bind_int64(&b, id);
    return run_update(store, b.stmt, b.rc, "dispatch case");
}

int store_case_mark_cleared(struct store *store, int64_t id, int64_t at)
{
    struct binder b = { store->stmts[STMT_CLEARED], 0, SQLITE_OK };

    bind_time(&b, at);
    bind_time(&b, at);
    bind_int64(&b, id);
    return run_update(store, b.stmt, b.rc, "mark case cleared");
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
