/* gw_cases and store against real SQLite files in a temporary directory;
 * also gw_reading_to_json, which is how a case records its reading. */
#include <errno.h>
#include <float.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "store.h"

#define MAX_RECORDED 8

/* SHA-256 of two versions of a rule file, as the rule engine reports them. */
#define HASH_V1 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define HASH_V2 "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

/* A copy of one event: the event's own pointers die with the callback. */
struct recorded {
    int64_t case_id;
    char *kind;
    enum gw_case_state state;
    enum gw_severity severity;
    char *rule;
    char *category;
    char *subject;
    char *title;
    char *assignee_role;
    char *assignee;
    const struct gw_grid *grid;
    int escalation;
    int64_t count;
    int64_t ts_ns;
};

struct fixture {
    char dir[64];
    char db_path[128];
    struct gw_grid grid;
    struct gw_device device;
    struct gw_reading *reading;
    struct gw_cases *cases;
    struct recorded events[MAX_RECORDED];
    size_t n_events;
};

static char *dup_or_null(const char *s)
{
    char *copy;

    if (!s)
        return NULL;
    copy = strdup(s);
    assert_non_null(copy);
    return copy;
}

static void record(const struct gw_case_event *e, void *userdata)
{
    struct fixture *f = userdata;
    struct recorded *r;

    assert_true(f->n_events < MAX_RECORDED);
    r = &f->events[f->n_events++];
    *r = (struct recorded){
        .case_id = e->case_id,
        .kind = dup_or_null(e->kind),
        .state = e->state,
        .severity = e->severity,
        .rule = dup_or_null(e->rule),
        .category = dup_or_null(e->category),
        .subject = dup_or_null(e->subject),
        .title = dup_or_null(e->title),
        .assignee_role = dup_or_null(e->assignee_role),
        .assignee = dup_or_null(e->assignee),
        .grid = e->grid,
        .escalation = e->escalation,
        .count = e->count,
        .ts_ns = e->ts_ns,
    };
}

static void forget_events(struct fixture *f)
{
    for (size_t i = 0; i < f->n_events; i++) {
        struct recorded *r = &f->events[i];
        free(r->kind);
        free(r->rule);
        free(r->category);
        free(r->subject);
        free(r->title);
        free(r->assignee_role);
        free(r->assignee);
    }
    f->n_events = 0;
}

/* ---- rule actions built by hand ---- */

static struct rule_action open_action(const char *rule, const char *subject,
                                      enum gw_severity severity, int role, int64_t ts_ns)
{
    return (struct rule_action){
        .kind = RULE_ACTION_OPEN_CASE,
        .rule = dup_or_null(rule),
        .file = dup_or_null("rules/smoke.lua:3"),
        .file_hash = dup_or_null(HASH_V1),
        .subject = dup_or_null(subject),
        .ts_ns = ts_ns,
        .category = dup_or_null("fire"),
        .severity = severity,
        .has_role = role >= 0,
        .role = role >= 0 ? (enum gw_role)role : GW_ROLE_MANAGER,
        .title = dup_or_null("Smoke detected"),
        .detail = dup_or_null("smoke 0.31 above 0.2"),
    };
}

static struct rule_action clear_action(const char *rule, const char *subject, int64_t ts_ns)
{
    return (struct rule_action){
        .kind = RULE_ACTION_CLEAR_CASE,
        .rule = dup_or_null(rule),
        .file = dup_or_null("rules/smoke.lua:9"),
        .file_hash = dup_or_null(HASH_V1),
        .subject = dup_or_null(subject),
        .ts_ns = ts_ns,
    };
}

static void action_free(struct rule_action *a)
{
    free(a->rule);
    free(a->file);
    free(a->file_hash);
    free(a->subject);
    free(a->category);
    free(a->title);
    free(a->detail);
    free(a->measurement);
}

/* Applies one action and frees it. */
static int apply(struct fixture *f, struct rule_action action)
{
    int r = gw_cases_apply(f->cases, &action, f->reading, record, f);

    action_free(&action);
    return r;
}

#define T0 INT64_C(1700000000000000000)
#define SEC INT64_C(1000000000)

/* ---- looking into the file with SQLite itself ---- */

static sqlite3 *db_open(const struct fixture *f)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(const struct fixture *f, const char *sql)
{
    sqlite3 *db = db_open(f);
    sqlite3_stmt *stmt = NULL;
    int64_t v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    v = sqlite3_column_type(stmt, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

/* The first column as text, "(null)" for NULL; into buf. */
static const char *db_text(const struct fixture *f, const char *sql, char *buf, size_t size)
{
    sqlite3 *db = db_open(f);
    sqlite3_stmt *stmt = NULL;
    const unsigned char *text;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    text = sqlite3_column_text(stmt, 0);
    snprintf(buf, size, "%s", text ? (const char *)text : "(null)");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return buf;
}

/* The first column parsed as JSON; the caller deletes it. */
static cJSON *db_json(const struct fixture *f, const char *sql)
{
    char buf[1024];
    cJSON *json = cJSON_Parse(db_text(f, sql, buf, sizeof(buf)));

    if (!json)
        fail_msg("not JSON: %s", buf);
    return json;
}

/* Runs sql; returns SQLite's extended code and copies its message. */
static int db_exec(const struct fixture *f, const char *sql, char *msg, size_t size)
{
    sqlite3 *db = db_open(f);
    int rc;

    sqlite3_extended_result_codes(db, 1);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (msg)
        snprintf(msg, size, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc;
}

/* ---- fixture ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void open_cases(struct fixture *f, bool auto_dispatch)
{
    struct gw_cases_options options = { .db_path = f->db_path, .auto_dispatch = auto_dispatch };
    char *error = NULL;

    f->cases = gw_cases_open(&options, &error);
    if (!f->cases)
        fail_msg("gw_cases_open: %s", error ? error : "(no message)");
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/gw-test-cases-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db_path, sizeof(f->db_path), "%s/cases.db", f->dir);

    f->grid.id = dup_or_null("110101001001001");
    f->grid.name = dup_or_null("东华门 1");
    f->grid.community_id = dup_or_null("110101001001");
    f->grid.community = dup_or_null("多福巷社区");
    f->grid.street_id = dup_or_null("110101001");
    f->grid.street = dup_or_null("东华门街道");
    f->grid.type = GW_GRID_CROWDED;
    f->grid.level = GW_LEVEL_ATTENTION;
    f->grid.roster[GW_ROLE_MANAGER] = dup_or_null("李四");
    f->grid.roster[GW_ROLE_FIREFIGHTER] = dup_or_null("张三");
    /* no police on this roster */

    f->device.id = dup_or_null("smoke-0001");
    f->device.type = dup_or_null("smoke");
    f->device.grid = &f->grid;
    f->reading = gw_reading_new("smoke-0001", GW_CHANNEL_TELEMETRY, T0);
    assert_non_null(f->reading);
    f->reading->device = &f->device;
    assert_int_equal(gw_reading_add_number(f->reading, "smoke", 0.31), 0);
    assert_int_equal(gw_reading_add_integer(f->reading, "battery", 87), 0);
    assert_int_equal(gw_reading_add_bool(f->reading, "alarm", true), 0);
    *state = f;
    return 0;
}

static int setup_open(void **state)
{
    setup(state);
    open_cases(*state, true);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    gw_cases_close(f->cases);
    forget_events(f);
    gw_reading_unref(f->reading);
    free(f->device.id);
    free(f->device.type);
    free(f->grid.id);
    free(f->grid.name);
    free(f->grid.community_id);
    free(f->grid.community);
    free(f->grid.street_id);
    free(f->grid.street);
    for (int i = 0; i < GW_ROLE_COUNT; i++)
        free(f->grid.roster[i]);
    assert_int_equal(nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_open_creates_schema(void **state)
{
    struct fixture *f = *state;
    struct store_options options = { .path = f->db_path };
    struct store *store;
    char buf[64];
    char wal[160];

    open_cases(f, true);
    gw_cases_close(f->cases);
    f->cases = NULL;
    /* The last connection checkpointed and removed the WAL. */
    snprintf(wal, sizeof(wal), "%s-wal", f->db_path);
    assert_int_not_equal(access(wal, F_OK), 0);

    assert_int_equal(STORE_SCHEMA_VERSION, 2);
    assert_int_equal(db_int(f, "PRAGMA user_version"), 2);
    assert_string_equal(db_text(f, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
    assert_int_equal(db_int(f, "SELECT count(*) FROM sqlite_master WHERE name IN ("
                               "'cases', 'case_history', 'cases_one_open', "
                               "'case_history_no_update', 'case_history_no_delete', "
                               "'device_seen')"),
                     6);
    /* Version 2: provenance columns and the last-seen table. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM pragma_table_info('cases') WHERE "
                               "name IN ('rule_file', 'rule_hash', 'trigger_reading') AND type = 'TEXT'"),
                     3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM pragma_table_info('case_history') WHERE "
                               "name IN ('rule_hash', 'trigger_reading') AND type = 'TEXT'"),
                     2);
    assert_int_equal(db_int(f, "SELECT strict AND wr AND ncol = 2 FROM pragma_table_list "
                               "WHERE name = 'device_seen'"),
                     1);
    assert_string_equal(db_text(f,
                                "SELECT group_concat(name || ' ' || type || ' ' || \"notnull\" "
                                "|| ' ' || pk, ', ') FROM pragma_table_info('device_seen')",
                                buf, sizeof(buf)),
                        "device_id TEXT 1 1, last_seen_at INTEGER 1 0");

    store = store_open(&options, NULL);
    assert_non_null(store);
    assert_int_equal(store_schema_version(store), STORE_SCHEMA_VERSION);
    store_close(store);
}

static void test_reopen_keeps_data(void **state)
{
    struct fixture *f = *state;

    open_cases(f, true);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    gw_cases_close(f->cases);
    open_cases(f, true);
    gw_cases_close(f->cases);
    open_cases(f, true);

    assert_int_equal(db_int(f, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);

    /* The case survived as the open case of (rule, subject). */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0 + SEC)),
                     0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT count FROM cases"), 2);
    assert_string_equal(f->events[f->n_events - 1].kind, "updated");
}

static void test_open_case_dispatches(void **state)
{
    struct fixture *f = *state;
    char buf[128];
    int64_t before = gw_now_ns();
    int64_t after;

    assert_int_equal(
        apply(f, open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, GW_ROLE_FIREFIGHTER, T0)), 0);
    after = gw_now_ns();

    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[0].kind, "opened");
    assert_int_equal(f->events[0].state, GW_CASE_REPORTED);
    assert_null(f->events[0].assignee_role);
    assert_null(f->events[0].assignee);
    assert_string_equal(f->events[1].kind, "dispatched");
    assert_int_equal(f->events[1].state, GW_CASE_DISPATCHED);
    assert_string_equal(f->events[1].assignee_role, "firefighter");
    assert_string_equal(f->events[1].assignee, "张三");
    for (size_t i = 0; i < 2; i++) {
        struct recorded *e = &f->events[i];
        assert_int_equal(e->case_id, 1);
        assert_int_equal(e->severity, GW_SEVERITY_MAJOR);
        assert_string_equal(e->rule, "fire.smoke");
        assert_string_equal(e->category, "fire");
        assert_string_equal(e->subject, "smoke-0001"); /* defaulted to the device */
        assert_string_equal(e->title, "Smoke detected");
        assert_ptr_equal(e->grid, &f->grid);
        assert_int_equal(e->escalation, 0);
        assert_int_equal(e->count, 1);
        assert_in_range(e->ts_ns, before, after);
    }

    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_string_equal(db_text(f, "SELECT state FROM cases", buf, sizeof(buf)), "dispatched");
    assert_string_equal(
        db_text(f, "SELECT assignee_role || ' ' || assignee FROM cases", buf, sizeof(buf)),
        "firefighter 张三");
    assert_string_equal(db_text(f,
                                "SELECT grid_id || ' ' || community_id || ' ' || street_id "
                                "|| ' ' || device_id FROM cases",
                                buf, sizeof(buf)),
                        "110101001001001 110101001001 110101001 smoke-0001");
    assert_string_equal(db_text(f, "SELECT severity FROM cases", buf, sizeof(buf)), "major");
    assert_int_equal(db_int(f, "SELECT first_seen_at FROM cases"), T0);
    assert_int_equal(db_int(f, "SELECT last_seen_at FROM cases"), T0);
    assert_in_range(db_int(f, "SELECT opened_at FROM cases"), before, after);
    assert_int_equal(db_int(f, "SELECT dispatched_at = opened_at FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT deadline_at FROM cases"), -1); /* NULL */
    assert_int_equal(db_int(f, "SELECT closed_at FROM cases"), -1);

    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);
    assert_string_equal(db_text(f,
                                "SELECT actor || '|' || coalesce(from_state, 'NULL') || '|' || "
                                "to_state || '|' || note FROM case_history ORDER BY id LIMIT 1",
                                buf, sizeof(buf)),
                        "rule:fire.smoke|NULL|reported|smoke 0.31 above 0.2");
    assert_string_equal(db_text(f,
                                "SELECT actor || '|' || from_state || '|' || to_state || '|' || "
                                "note FROM case_history ORDER BY id LIMIT 1 OFFSET 1",
                                buf, sizeof(buf)),
                        "gridgate:auto-dispatch|reported|dispatched|to firefighter 张三");
}

static void test_repeat_updates_case(void **state)
{
    struct fixture *f = *state;
    char buf[64];

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    forget_events(f);

    /* major then critical -> critical */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_CRITICAL,
                                          GW_ROLE_FIREFIGHTER, T0 + 10 * SEC)),
                     0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "updated");
    assert_int_equal(f->events[0].case_id, 1);
    assert_int_equal(f->events[0].state, GW_CASE_DISPATCHED);
    assert_int_equal(f->events[0].severity, GW_SEVERITY_CRITICAL);
    assert_int_equal(f->events[0].count, 2);
    assert_string_equal(f->events[0].assignee, "张三");
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT count FROM cases"), 2);
    assert_string_equal(db_text(f, "SELECT severity FROM cases", buf, sizeof(buf)), "critical");
    assert_string_equal(db_text(f, "SELECT state FROM cases", buf, sizeof(buf)), "dispatched");
    assert_int_equal(db_int(f, "SELECT last_seen_at FROM cases"), T0 + 10 * SEC);
    /* The raise is in the history, the state is not touched. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 3);
    assert_string_equal(db_text(f,
                                "SELECT from_state || '|' || to_state || '|' || note "
                                "FROM case_history ORDER BY id DESC LIMIT 1",
                                buf, sizeof(buf)),
                        "dispatched|dispatched|severity major -> critical");
    forget_events(f);

    /* critical then minor stays critical; an older reading does not move
     * last_seen_at back. */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MINOR,
                                          GW_ROLE_FIREFIGHTER, T0 + 5 * SEC)),
                     0);
    assert_int_equal(f->n_events, 1);
    assert_int_equal(f->events[0].severity, GW_SEVERITY_CRITICAL);
    assert_int_equal(f->events[0].count, 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT count FROM cases"), 3);
    assert_string_equal(db_text(f, "SELECT severity FROM cases", buf, sizeof(buf)), "critical");
    assert_int_equal(db_int(f, "SELECT last_seen_at FROM cases"), T0 + 10 * SEC);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 3);
}

static void test_other_subject_opens_second_case(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0002", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    /* Same subject, another rule: its own case too. */
    assert_int_equal(apply(f, open_action("fire.heat", "smoke-0001", GW_SEVERITY_MINOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 6);
    assert_int_equal(f->events[2].case_id, 2);
    assert_string_equal(f->events[2].subject, "smoke-0002");
    assert_int_equal(f->events[4].case_id, 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases WHERE count = 1"), 3);
}

static void test_clear_case(void **state)
{
    struct fixture *f = *state;
    char buf[128];

    /* Nothing open: nothing to do. */
    assert_int_equal(apply(f, clear_action("fire.smoke", "smoke-0001", T0)), 0);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    forget_events(f);
    assert_int_equal(apply(f, clear_action("fire.smoke", "smoke-0001", T0 + SEC)), 0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "cleared");
    assert_int_equal(f->events[0].case_id, 1);
    assert_int_equal(f->events[0].state, GW_CASE_DISPATCHED);
    assert_string_equal(db_text(f, "SELECT state FROM cases", buf, sizeof(buf)), "dispatched");
    assert_int_equal(db_int(f, "SELECT closed_at FROM cases"), -1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 3);
    assert_string_equal(db_text(f,
                                "SELECT actor || '|' || from_state || '|' || to_state || '|' || "
                                "note FROM case_history ORDER BY id DESC LIMIT 1",
                                buf, sizeof(buf)),
                        "rule:fire.smoke|dispatched|dispatched|cleared by rule");
    forget_events(f);

    /* Saying it again changes nothing... */
    assert_int_equal(apply(f, clear_action("fire.smoke", "smoke-0001", T0 + 2 * SEC)), 0);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 3);

    /* ...until the condition is back. */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0 + 3 * SEC)),
                     0);
    assert_int_equal(db_int(f, "SELECT cleared_at FROM cases"), -1);
    assert_int_equal(apply(f, clear_action("fire.smoke", "smoke-0001", T0 + 4 * SEC)), 0);
    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[1].kind, "cleared");
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 4);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
}

static void test_history_is_append_only(void **state)
{
    struct fixture *f = *state;
    char msg[256];

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(db_exec(f, "UPDATE case_history SET note = 'rewritten'", msg, sizeof(msg)),
                     SQLITE_CONSTRAINT_TRIGGER);
    assert_non_null(strstr(msg, "append-only"));
    assert_int_equal(db_exec(f, "DELETE FROM case_history", msg, sizeof(msg)),
                     SQLITE_CONSTRAINT_TRIGGER);
    assert_non_null(strstr(msg, "append-only"));
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE note = 'rewritten'"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);
    /* Appending stays possible. */
    assert_int_equal(db_exec(f,
                             "INSERT INTO case_history (case_id, at, actor, to_state, note) "
                             "VALUES (1, 1, 'test', 'dispatched', 'appended')",
                             NULL, 0),
                     SQLITE_OK);
}

static void test_one_open_case_per_rule_subject(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    /* The index refuses a second open case, whoever writes it. */
    assert_int_equal(db_exec(f,
                             "INSERT INTO cases (rule, subject, category, severity, state, title,"
                             " grid_id, opened_at, updated_at) VALUES ('fire.smoke', "
                             "'smoke-0001', 'fire', 'minor', 'reported', 't', 'g', 1, 1)",
                             NULL, 0),
                     SQLITE_CONSTRAINT_UNIQUE);
    /* Once closed, the same (rule, subject) opens a new case. */
    assert_int_equal(db_exec(f, "UPDATE cases SET state = 'closed', closed_at = 2", NULL, 0),
                     SQLITE_OK);
    forget_events(f);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0 + SEC)),
                     0);
    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[0].kind, "opened");
    assert_int_equal(f->events[0].case_id, 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases WHERE state = 'closed'"), 1);
}

static void test_no_auto_dispatch(void **state)
{
    struct fixture *f = *state;
    char buf[64];

    open_cases(f, false);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "opened");
    assert_int_equal(f->events[0].state, GW_CASE_REPORTED);
    assert_string_equal(db_text(f, "SELECT state FROM cases", buf, sizeof(buf)), "reported");
    assert_int_equal(db_int(f, "SELECT assignee_role IS NULL AND dispatched_at IS NULL "
                               "FROM cases"),
                     1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 1);
}

static void test_no_role_no_dispatch(void **state)
{
    struct fixture *f = *state;
    char buf[64];

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_INFO, -1, T0)),
                     0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(db_text(f, "SELECT state FROM cases", buf, sizeof(buf)), "reported");
}

static void test_dispatch_to_empty_roster_slot(void **state)
{
    struct fixture *f = *state;
    char buf[128];

    assert_int_equal(
        apply(f, open_action("security.door", "door-7", GW_SEVERITY_MINOR, GW_ROLE_POLICE, T0)), 0);
    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[1].assignee_role, "police");
    assert_null(f->events[1].assignee);
    assert_int_equal(db_int(f, "SELECT assignee IS NULL FROM cases"), 1);
    assert_string_equal(
        db_text(f, "SELECT note FROM case_history ORDER BY id DESC LIMIT 1", buf, sizeof(buf)),
        "to police (no one on the roster)");
}

static void test_open_unwritable_path(void **state)
{
    struct fixture *f = *state;
    struct gw_cases_options options = { .auto_dispatch = true };
    char path[160];
    char *error = NULL;
    FILE *file;

    /* A regular file where a directory should be: refused even to root. */
    snprintf(path, sizeof(path), "%s/not-a-dir", f->dir);
    file = fopen(path, "w");
    assert_non_null(file);
    fclose(file);
    snprintf(path, sizeof(path), "%s/not-a-dir/cases.db", f->dir);
    options.db_path = path;

    assert_null(gw_cases_open(&options, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, path));
    free(error);
}

static void test_open_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    struct gw_cases_options options = { .db_path = f->db_path };
    char *error = NULL;

    open_cases(f, true);
    gw_cases_close(f->cases);
    f->cases = NULL;
    assert_int_equal(db_exec(f, "PRAGMA user_version = 99", NULL, 0), SQLITE_OK);

    assert_null(gw_cases_open(&options, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, f->db_path));
    assert_non_null(strstr(error, "newer"));
    free(error);
}

static void test_open_not_a_database(void **state)
{
    struct fixture *f = *state;
    struct gw_cases_options options = { .db_path = f->db_path };
    char *error = NULL;
    FILE *file = fopen(f->db_path, "w");

    assert_non_null(file);
    fputs("this is not an SQLite database, but it is long enough to look like one\n", file);
    for (int i = 0; i < 200; i++)
        fputs("0123456789abcdef", file);
    fclose(file);

    assert_null(gw_cases_open(&options, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, f->db_path));
    free(error);
}

static void test_bad_actions(void **state)
{
    struct fixture *f = *state;
    struct rule_action emit = { .kind = RULE_ACTION_EMIT, .rule = dup_or_null("fire.smoke") };
    struct rule_action bad_severity =
        open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, GW_ROLE_FIREFIGHTER, T0);
    struct rule_action good = open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, -1, T0);

    assert_int_equal(apply(f, emit), -EINVAL);
    bad_severity.severity = GW_SEVERITY_COUNT;
    assert_int_equal(apply(f, bad_severity), -EINVAL);

    /* A reading whose device was not resolved. */
    f->reading->device = NULL;
    assert_int_equal(gw_cases_apply(f->cases, &good, f->reading, record, f), -EINVAL);
    f->reading->device = &f->device;
    action_free(&good);

    assert_int_equal(gw_cases_apply(f->cases, NULL, f->reading, record, f), -EINVAL);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);
}

/* A store failure mid-way leaves nothing behind and raises no event. */
static void test_failure_rolls_back(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(db_exec(f,
                             "CREATE TRIGGER test_fail BEFORE INSERT ON case_history "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                             NULL, 0),
                     SQLITE_OK);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     -EPERM);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);

    assert_int_equal(db_exec(f, "DROP TRIGGER test_fail", NULL, 0), SQLITE_OK);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);
}

/* The hot query is answered by the partial unique index. */
static void test_find_uses_index(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db;
    sqlite3_stmt *stmt = NULL;
    const char *detail;

    open_cases(f, true);
    db = db_open(f);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT id FROM cases"
                                        " WHERE rule = ? AND subject = ?"
                                        " AND state NOT IN ('closed', 'cancelled')",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    detail = (const char *)sqlite3_column_text(stmt, 3); /* id, parent, notused, detail */
    assert_non_null(detail);
    assert_non_null(strstr(detail, "USING INDEX cases_one_open"));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* ---- gw_reading_to_json ---- */

static char *reading_json(const struct gw_reading *r)
{
    struct gw_buf b = GW_BUF_INIT;

    assert_int_equal(gw_reading_to_json(r, &b), 0);
    assert_non_null(b.data);
    return b.data; /* the caller frees */
}

static void test_reading_to_json(void **state)
{
    struct gw_reading *r = gw_reading_new("door \"7\"", GW_CHANNEL_EVENT, T0 + 123456789);
    struct gw_buf b = GW_BUF_INIT;
    cJSON *json, *fields;

    (void)state;
    assert_non_null(r);
    assert_int_equal(gw_reading_add_number(r, "smoke", 0.31), 0);
    assert_int_equal(gw_reading_add_number(r, "whole", 3.0), 0);
    assert_int_equal(gw_reading_add_number(r, "sum", 0.1 + 0.2), 0);
    assert_int_equal(gw_reading_add_number(r, "big", 1e300), 0);
    assert_int_equal(gw_reading_add_number(r, "minus_zero", -0.0), 0);
    assert_int_equal(gw_reading_add_number(r, "nan", NAN), 0);
    assert_int_equal(gw_reading_add_number(r, "inf", -INFINITY), 0);
    assert_int_equal(gw_reading_add_integer(r, "min", INT64_MIN), 0);
    assert_int_equal(gw_reading_add_integer(r, "max", INT64_MAX), 0);
    assert_int_equal(gw_reading_add_bool(r, "open", true), 0);
    assert_int_equal(gw_reading_add_bool(r, "locked", false), 0);
    assert_int_equal(gw_reading_add_string(r, "where", "东华门 \"A\"\\ 😀/\x7f"), 0);
    assert_int_equal(gw_reading_add_string(r, "ctl", "a\nb\tc\r\b\f\x01\x1f"), 0);
    /* Not UTF-8: a lone continuation, an overlong NUL, a surrogate, a
     * sequence cut short by the end. */
    assert_int_equal(gw_reading_add_string(r, "bad", "\x80|\xc0\x80|\xed\xa0\x80|\xe4\xb8"), 0);
    assert_int_equal(gw_reading_add_string(r, "", ""), 0);

    /* Appends to what the buffer holds. */
    assert_int_equal(gw_buf_puts(&b, "> "), 0);
    assert_int_equal(gw_reading_to_json(r, &b), 0);
    assert_string_equal(
        b.data, "> {\"device\":\"door \\\"7\\\"\",\"channel\":\"event\",\"ts\":1700000000123,"
                "\"fields\":{\"smoke\":0.31,\"whole\":3.0,\"sum\":0.30000000000000004,"
                "\"big\":1e+300,\"minus_zero\":-0.0,\"nan\":null,\"inf\":null,"
                "\"min\":-9223372036854775808,\"max\":9223372036854775807,"
                "\"open\":true,\"locked\":false,"
                "\"where\":\"东华门 \\\"A\\\"\\\\ 😀/\x7f\","
                "\"ctl\":\"a\\nb\\tc\\r\\b\\f\\u0001\\u001f\","
                "\"bad\":\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\","
                "\"\":\"\"}}");

    /* What a JSON reader makes of it. */
    json = cJSON_Parse(b.data + 2);
    assert_non_null(json);
    assert_string_equal(cJSON_GetObjectItem(json, "device")->valuestring, "door \"7\"");
    fields = cJSON_GetObjectItem(json, "fields");
    assert_int_equal(cJSON_GetArraySize(fields), (int)r->n_fields);
    assert_true(cJSON_GetObjectItem(fields, "smoke")->valuedouble == 0.31);
    assert_true(cJSON_GetObjectItem(fields, "sum")->valuedouble == 0.1 + 0.2);
    assert_true(cJSON_GetObjectItem(fields, "big")->valuedouble == 1e300);
    assert_true(signbit(cJSON_GetObjectItem(fields, "minus_zero")->valuedouble));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(fields, "nan")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(fields, "open")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(fields, "locked")));
    assert_string_equal(cJSON_GetObjectItem(fields, "where")->valuestring, "东华门 \"A\"\\ 😀/\x7f");
    assert_string_equal(cJSON_GetObjectItem(fields, "ctl")->valuestring, "a\nb\tc\r\b\f\x01\x1f");
    cJSON_Delete(json);
    gw_buf_free(&b);
    gw_reading_unref(r);
}

/* Every finite double reads back as itself. */
static void test_reading_to_json_numbers_round_trip(void **state)
{
    static const double values[] = {
        0.31,
        1.0 / 3,
        2.0 / 3,
        0.1 + 0.2,
        5e-324,
        DBL_MIN,
        DBL_MAX,
        -DBL_MAX,
        1e21,
        1e-7,
        123456789012345678.0,
        9007199254740993.0,
        -273.15,
        21.5,
        100.0,
    };

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct gw_reading *r = gw_reading_new("d", GW_CHANNEL_TELEMETRY, 0);
        char *text;
        cJSON *json;
        double back;

        assert_non_null(r);
        assert_int_equal(gw_reading_add_number(r, "v", values[i]), 0);
        text = reading_json(r);
        json = cJSON_Parse(text);
        assert_non_null(json);
        back = cJSON_GetObjectItem(cJSON_GetObjectItem(json, "fields"), "v")->valuedouble;
        if (back != values[i])
            fail_msg("%.17g came back as %.17g from %s", values[i], back, text);
        /* A number never reads as an integer. */
        assert_non_null(strpbrk(strstr(text, "\"v\":"), ".e"));
        cJSON_Delete(json);
        free(text);
        gw_reading_unref(r);
    }
}

static void test_reading_to_json_edges(void **state)
{
    struct gw_reading *r = gw_reading_new("d", GW_CHANNEL_STATUS, -1);
    char *text;

    (void)state;
    assert_non_null(r);
    /* No fields; a time before 1970 rounds down. */
    text = reading_json(r);
    assert_string_equal(text, "{\"device\":\"d\",\"channel\":\"status\",\"ts\":-1,\"fields\":{}}");
    free(text);
    r->ts_ns = 999999;
    text = reading_json(r);
    assert_non_null(strstr(text, "\"ts\":0,"));
    free(text);
    gw_reading_unref(r);
}

/* ---- provenance ---- */

static void test_provenance_on_open(void **state)
{
    struct fixture *f = *state;
    char buf[256];
    cJSON *trigger, *fields, *v;

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_string_equal(db_text(f, "SELECT rule_file FROM cases", buf, sizeof(buf)),
                        "rules/smoke.lua:3");
    assert_string_equal(db_text(f, "SELECT rule_hash FROM cases", buf, sizeof(buf)), HASH_V1);

    trigger = db_json(f, "SELECT trigger_reading FROM cases");
    assert_string_equal(cJSON_GetObjectItem(trigger, "device")->valuestring, "smoke-0001");
    assert_string_equal(cJSON_GetObjectItem(trigger, "channel")->valuestring, "telemetry");
    assert_true(cJSON_GetObjectItem(trigger, "ts")->valuedouble == (double)(T0 / 1000000));
    fields = cJSON_GetObjectItem(trigger, "fields");
    assert_int_equal(cJSON_GetArraySize(fields), 3);
    v = cJSON_GetObjectItem(fields, "smoke");
    assert_true(cJSON_IsNumber(v) && v->valuedouble == 0.31);
    v = cJSON_GetObjectItem(fields, "battery");
    assert_true(cJSON_IsNumber(v) && v->valuedouble == 87);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(fields, "alarm")));
    cJSON_Delete(trigger);
    /* Typed: the integer stays an integer. */
    assert_non_null(
        strstr(db_text(f, "SELECT trigger_reading FROM cases", buf, sizeof(buf)), "\"battery\":87,"));

    /* The creation row carries the same; auto-dispatch is not the rule's. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history h JOIN cases c "
                               "ON h.case_id = c.id WHERE h.from_state IS NULL "
                               "AND h.rule_hash = c.rule_hash AND h.trigger_reading = c.trigger_reading"),
                     1);
    assert_int_equal(db_int(f,
                            "SELECT count(*) FROM case_history WHERE actor = "
                            "'gridgate:auto-dispatch' AND rule_hash IS NULL AND trigger_reading IS NULL"),
                     1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);
}

static void test_provenance_in_history(void **state)
{
    struct fixture *f = *state;
    struct rule_action action;
    char buf[256];
    cJSON *trigger;

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);

    /* The rule file was edited and reloaded; a later reading raises the
     * severity. */
    f->reading->ts_ns = T0 + 10 * SEC;
    assert_int_equal(gw_reading_add_number(f->reading, "smoke", 0.55), 0);
    action = open_action("fire.smoke", "smoke-0001", GW_SEVERITY_CRITICAL, GW_ROLE_FIREFIGHTER, T0);
    free(action.file_hash);
    action.file_hash = dup_or_null(HASH_V2);
    assert_int_equal(apply(f, action), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 3);
    assert_string_equal(db_text(f,
                                "SELECT note || ' ' || rule_hash FROM case_history "
                                "ORDER BY id DESC LIMIT 1",
                                buf, sizeof(buf)),
                        "severity major -> critical " HASH_V2);
    trigger = db_json(f, "SELECT trigger_reading FROM case_history ORDER BY id DESC LIMIT 1");
    assert_true(cJSON_GetObjectItem(trigger, "ts")->valuedouble ==
                (double)((T0 + 10 * SEC) / 1000000));
    assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(trigger, "fields"), "smoke")->valuedouble ==
                0.55);
    cJSON_Delete(trigger);

    /* A repeat that raises nothing leaves no row. */
    f->reading->ts_ns = T0 + 15 * SEC;
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MINOR,
                                          GW_ROLE_FIREFIGHTER, T0 + 15 * SEC)),
                     0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 3);

    /* Cleared: the reading that said so. */
    f->reading->ts_ns = T0 + 20 * SEC;
    assert_int_equal(gw_reading_add_number(f->reading, "smoke", 0.02), 0);
    assert_int_equal(apply(f, clear_action("fire.smoke", "smoke-0001", T0 + 20 * SEC)), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 4);
    assert_string_equal(db_text(f,
                                "SELECT note || ' ' || rule_hash FROM case_history "
                                "ORDER BY id DESC LIMIT 1",
                                buf, sizeof(buf)),
                        "cleared by rule " HASH_V1);
    trigger = db_json(f, "SELECT trigger_reading FROM case_history ORDER BY id DESC LIMIT 1");
    assert_true(cJSON_GetObjectItem(trigger, "ts")->valuedouble ==
                (double)((T0 + 20 * SEC) / 1000000));
    assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(trigger, "fields"), "smoke")->valuedouble ==
                0.02);
    cJSON_Delete(trigger);

    /* The case keeps what opened it. */
    assert_string_equal(db_text(f, "SELECT rule_hash FROM cases", buf, sizeof(buf)), HASH_V1);
    trigger = db_json(f, "SELECT trigger_reading FROM cases");
    assert_true(cJSON_GetObjectItem(trigger, "ts")->valuedouble == (double)(T0 / 1000000));
    cJSON_Delete(trigger);
    /* Every row a rule wrote is traceable. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE actor LIKE 'rule:%' "
                               "AND (rule_hash IS NULL OR trigger_reading IS NULL)"),
                     0);
}

static void test_shadow_action_refused(void **state)
{
    struct fixture *f = *state;
    struct rule_action action =
        open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR, GW_ROLE_FIREFIGHTER, T0);

    action.shadow = true;
    assert_int_equal(apply(f, action), -EINVAL);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);
}

/* ---- migration ---- */

/* Schema version 1 as the first gridgate created it. Migration 1 is never
 * edited, so this copy stays true; the test does not rely on the store to
 * stop half-way. */
static const char v1_schema[] =
    "CREATE TABLE cases (\n"
    "  id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
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
    "CREATE UNIQUE INDEX cases_one_open ON cases (rule, subject)\n"
    "  WHERE state NOT IN ('closed', 'cancelled');\n"
    "CREATE INDEX cases_grid ON cases (grid_id, state);\n"
    "CREATE INDEX cases_due ON cases (deadline_at)\n"
    "  WHERE deadline_at IS NOT NULL AND state NOT IN ('closed', 'cancelled');\n"
    "CREATE TABLE case_history (\n"
    "  id         INTEGER PRIMARY KEY,\n"
    "  case_id    INTEGER NOT NULL REFERENCES cases (id),\n"
    "  at         INTEGER NOT NULL,\n"
    "  actor      TEXT NOT NULL,\n"
    "  from_state TEXT,\n"
    "  to_state   TEXT NOT NULL,\n"
    "  note       TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX case_history_case ON case_history (case_id, id);\n"
    "CREATE TRIGGER case_history_no_update BEFORE UPDATE ON case_history\n"
    "  BEGIN SELECT RAISE(ABORT, 'case_history is append-only'); END;\n"
    "CREATE TRIGGER case_history_no_delete BEFORE DELETE ON case_history\n"
    "  BEGIN SELECT RAISE(ABORT, 'case_history is append-only'); END;\n"
    "PRAGMA user_version = 1;\n";

static void test_migrate_from_version_1(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db = NULL;
    char buf[256];

    /* A version 1 file with an open, dispatched case and its history. */
    assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO cases (rule, subject, category, severity, state, title, detail,"
                     " grid_id, community_id, street_id, device_id, assignee_role, assignee,"
                     " first_seen_at, last_seen_at, opened_at, updated_at, dispatched_at) VALUES"
                     " ('fire.smoke', 'smoke-0001', 'fire', 'major', 'dispatched', 'Smoke',"
                     " 'old detail', '110101001001001', '110101001001', '110101001',"
                     " 'smoke-0001', 'firefighter', '张三', 1, 1, 5, 5, 5);"
                     "INSERT INTO case_history (case_id, at, actor, to_state, note) VALUES"
                     " (1, 5, 'rule:fire.smoke', 'reported', 'old detail');"
                     "INSERT INTO case_history (case_id, at, actor, from_state, to_state, note)"
                     " VALUES (1, 5, 'gridgate:auto-dispatch', 'reported', 'dispatched',"
                     " 'to firefighter 张三');",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_int_equal(db_int(f, "PRAGMA user_version"), 1);

    open_cases(f, true);
    assert_int_equal(db_int(f, "PRAGMA user_version"), 2);
    /* The old rows are all there, their provenance unknown. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_string_equal(db_text(f,
                                "SELECT state || '|' || assignee || '|' || detail || '|' || "
                                "coalesce(rule_file, rule_hash, trigger_reading, 'none') FROM cases",
                                buf, sizeof(buf)),
                        "dispatched|张三|old detail|none");
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE rule_hash IS NULL "
                               "AND trigger_reading IS NULL"),
                     2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM device_seen"), 0);
    /* The v1 constraints survived: still append-only, still one open case. */
    assert_int_equal(db_exec(f, "DELETE FROM case_history", NULL, 0), SQLITE_CONSTRAINT_TRIGGER);

    /* The old case goes on: a raise is recorded with its provenance. */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_CRITICAL,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "updated");
    assert_int_equal(f->events[0].case_id, 1);
    assert_int_equal(db_int(f, "SELECT count FROM cases"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE rule_hash = '" HASH_V1
                               "' AND trigger_reading LIKE '{\"device\":\"smoke-0001\",%'"),
                     1);
    /* A new case has it all. */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0002", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(db_int(f, "SELECT id FROM cases WHERE rule_file = 'rules/smoke.lua:3' AND "
                               "rule_hash = '" HASH_V1 "' AND trigger_reading IS NOT NULL"),
                     2);

    /* Reopening a version 2 file migrates nothing more. */
    gw_cases_close(f->cases);
    open_cases(f, true);
    assert_int_equal(db_int(f, "PRAGMA user_version"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 2);
}

/* ---- devices' last-seen times ---- */

static struct gw_registry *load_district(void)
{
    char *error = NULL;
    struct gw_registry *reg =
        gw_registry_load(GW_SOURCE_DIR "/config/district/grids.geojson",
                         GW_SOURCE_DIR "/config/district/devices.csv", &error);

    if (!reg)
        fail_msg("gw_registry_load: %s", error ? error : "(no message)");
    assert_true(gw_registry_device_count(reg) > 10);
    return reg;
}

static int64_t seen(const struct gw_registry *reg, size_t index)
{
    struct gw_device_state st;

    gw_device_state(gw_registry_device_at(reg, index), &st);
    return st.last_seen_ns;
}

static void touch(const struct gw_registry *reg, size_t index, int64_t at)
{
    gw_device_touch(gw_registry_device_at(reg, index), at);
}

/* device_seen's time for the device at index, -1 if none. */
static int64_t db_seen(const struct fixture *f, const struct gw_registry *reg, size_t index)
{
    char sql[160];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce((SELECT last_seen_at FROM device_seen WHERE device_id = '%s'), -1)",
             gw_registry_device_at(reg, index)->id);
    return db_int(f, sql);
}

static void test_last_seen_round_trip(void **state)
{
    struct fixture *f = *state;
    struct gw_registry *reg = load_district(), *fresh = load_district();
    size_t last = gw_registry_device_count(reg) - 1;
    char sql[256];
    int64_t before, after;

    /* Nothing seen yet: nothing to save, nothing to load. */
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 0);
    assert_int_equal(gw_cases_load_last_seen(f->cases, fresh), 0);

    touch(reg, 0, T0);
    touch(reg, 1, T0 + SEC);
    touch(reg, last, T0 + 2 * SEC);
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM device_seen"), 3);
    assert_int_equal(db_seen(f, reg, 0), T0);
    assert_int_equal(db_seen(f, reg, 1), T0 + SEC);
    assert_int_equal(db_seen(f, reg, last), T0 + 2 * SEC);

    /* Only what changed is written again. */
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 0);
    touch(reg, 1, T0 + 5 * SEC);
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 1);
    assert_int_equal(db_seen(f, reg, 1), T0 + 5 * SEC);
    /* A time going back (a clock stepped back) does not undo the stored one. */
    touch(reg, 0, T0 - SEC);
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 1);
    assert_int_equal(db_seen(f, reg, 0), T0);

    /* Rows the registry cannot use: an unknown device, a time that is not
     * one, a time in the future. */
    assert_int_equal(db_exec(f, "INSERT INTO device_seen VALUES ('no-such-device', 1)", NULL, 0),
                     SQLITE_OK);
    snprintf(sql, sizeof(sql), "INSERT INTO device_seen VALUES ('%s', -5)",
             gw_registry_device_at(reg, 3)->id);
    assert_int_equal(db_exec(f, sql, NULL, 0), SQLITE_OK);
    snprintf(sql, sizeof(sql), "INSERT INTO device_seen VALUES ('%s', %" PRId64 ")",
             gw_registry_device_at(reg, 2)->id, gw_now_ns() + 86400 * SEC);
    assert_int_equal(db_exec(f, sql, NULL, 0), SQLITE_OK);

    /* A restart: a fresh registry, one device already heard from since. */
    touch(fresh, last, T0 + 100 * SEC);
    before = gw_now_ns();
    assert_int_equal(gw_cases_load_last_seen(f->cases, fresh), 3);
    after = gw_now_ns();
    assert_int_equal(seen(fresh, 0), T0);
    assert_int_equal(seen(fresh, 1), T0 + 5 * SEC);
    assert_in_range(seen(fresh, 2), before, after); /* the future counts as now */
    assert_int_equal(seen(fresh, 3), 0);
    assert_int_equal(seen(fresh, 4), 0);
    assert_int_equal(seen(fresh, last), T0 + 100 * SEC); /* newer: kept */
    /* Loading again changes nothing but the one ahead of the clock, which
     * is now again. */
    assert_int_equal(gw_cases_load_last_seen(f->cases, fresh), 1);

    /* Another registry: every device seen is saved once. */
    assert_int_equal(gw_cases_save_last_seen(f->cases, fresh), 4);
    assert_int_equal(db_seen(f, fresh, last), T0 + 100 * SEC);
    assert_int_equal(gw_cases_save_last_seen(f->cases, fresh), 0);

    /* It all survives closing the store. */
    gw_cases_close(f->cases);
    open_cases(f, true);
    assert_int_equal(db_int(f, "SELECT count(*) FROM device_seen"), 6);
    assert_int_equal(db_seen(f, reg, 1), T0 + 5 * SEC);

    gw_registry_free(fresh);
    gw_registry_free(reg);
}

/* A failed save writes nothing and forgets what it thought was saved. */
static void test_last_seen_save_failure(void **state)
{
    struct fixture *f = *state;
    struct gw_registry *reg = load_district();

    touch(reg, 0, T0);
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 1);
    touch(reg, 1, T0 + SEC);
    touch(reg, 2, T0 + 2 * SEC);
    /* The second write of the transaction fails. */
    assert_int_equal(db_exec(f,
                             "CREATE TRIGGER test_fail BEFORE INSERT ON device_seen "
                             "WHEN (SELECT count(*) FROM device_seen) >= 2 "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                             NULL, 0),
                     SQLITE_OK);
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), -EPERM);
    assert_int_equal(db_int(f, "SELECT count(*) FROM device_seen"), 1);
    /* The store is usable again at once. */
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);

    assert_int_equal(db_exec(f, "DROP TRIGGER test_fail", NULL, 0), SQLITE_OK);
    assert_int_equal(gw_cases_save_last_seen(f->cases, reg), 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM device_seen"), 3);
    assert_int_equal(db_seen(f, reg, 2), T0 + 2 * SEC);

    assert_int_equal(gw_cases_save_last_seen(NULL, reg), -EINVAL);
    assert_int_equal(gw_cases_save_last_seen(f->cases, NULL), -EINVAL);
    assert_int_equal(gw_cases_load_last_seen(f->cases, NULL), -EINVAL);
    gw_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_case_dispatches, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_updates_case, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_other_subject_opens_second_case, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_clear_case, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_history_is_append_only, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_one_open_case_per_rule_subject, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_no_auto_dispatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_role_no_dispatch, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_to_empty_roster_slot, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_open_unwritable_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_actions, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_failure_rolls_back, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_find_uses_index, setup, teardown),
        cmocka_unit_test(test_reading_to_json),
        cmocka_unit_test(test_reading_to_json_numbers_round_trip),
        cmocka_unit_test(test_reading_to_json_edges),
        cmocka_unit_test_setup_teardown(test_provenance_on_open, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_provenance_in_history, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_shadow_action_refused, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_seen_round_trip, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_last_seen_save_failure, setup_open, teardown),
    };

    /* The failure tests make the store log on purpose. */
    gw_log_set_level(GW_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
