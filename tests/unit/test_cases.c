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
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "store.h"

#define MAX_RECORDED 64

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
    char *grid_id;
    int escalation;
    int64_t count;
    int64_t ts_ns;
    char *actor;
    bool has_from;
    enum gw_case_state from;
    char *note;
    int64_t version;
    int64_t incident_id;
    int64_t deadline_at;
    bool overdue;
    int64_t rework_count;
};

struct fixture {
    char dir[64];
    char db_path[128];
    struct gw_grid grid;
    struct gw_device device;
    struct gw_reading *reading;
    struct gw_cases *cases;
    struct gw_registry *reg; /* the sample district, for the tests that need one */
    int64_t now;             /* the gateway's clock as the tests set it */
    struct recorded events[MAX_RECORDED];
    size_t n_events;
    size_t n_counted; /* events seen by count_event */
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
        .case_id = e->c->id,
        .kind = dup_or_null(e->kind),
        .state = e->c->state,
        .severity = e->c->severity,
        .rule = dup_or_null(e->c->rule),
        .category = dup_or_null(e->c->category),
        .subject = dup_or_null(e->c->subject),
        .title = dup_or_null(e->c->title),
        .assignee_role =
            dup_or_null(e->c->has_assignee_role ? gw_role_name(e->c->assignee_role) : NULL),
        .assignee = dup_or_null(e->c->assignee),
        .grid_id = dup_or_null(e->c->grid_id),
        .escalation = e->c->escalation,
        .count = e->c->count,
        .ts_ns = e->ts_ns,
        .actor = dup_or_null(e->actor),
        .has_from = e->has_from,
        .from = e->from,
        .note = dup_or_null(e->note),
        .version = e->c->version,
        .incident_id = e->c->incident_id,
        .deadline_at = e->c->deadline_at,
        .overdue = e->c->overdue,
        .rework_count = e->c->rework_count,
    };
}

/* For calls that raise more events than the record keeps. */
static void count_event(const struct gw_case_event *e, void *userdata)
{
    struct fixture *f = userdata;

    assert_non_null(e->c);
    f->n_counted++;
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
        free(r->grid_id);
        free(r->actor);
        free(r->note);
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
    int r = gw_cases_apply(f->cases, &action, f->reading, f->now, record, f);

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
    f->now = T0 + 100 * SEC;

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
    gw_registry_free(f->reg);
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

    assert_int_equal(STORE_SCHEMA_VERSION, 4);
    assert_int_equal(db_int(f, "PRAGMA user_version"), 4);
    /* Version 4: the InfluxDB outbox. */
    assert_int_equal(db_int(f, "SELECT strict AND ncol = 2 FROM pragma_table_list "
                               "WHERE name = 'influx_outbox'"),
                     1);
    assert_string_equal(db_text(f, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
    assert_int_equal(db_int(f, "SELECT count(*) FROM sqlite_master WHERE name IN ("
                               "'cases', 'case_history', 'cases_one_open', "
                               "'case_history_no_update', 'case_history_no_delete', "
                               "'device_seen')"),
                     6);
    /* Version 2: provenance columns and the last-seen table. */
    assert_int_equal(
        db_int(f, "SELECT count(*) FROM pragma_table_info('cases') WHERE "
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

    assert_int_equal(
        apply(f, open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, GW_ROLE_FIREFIGHTER, T0)), 0);

    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[0].kind, "opened");
    assert_int_equal(f->events[0].state, GW_CASE_REPORTED);
    assert_string_equal(f->events[0].assignee_role, "firefighter"); /* the rule's, not yet sent */
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
        assert_string_equal(e->grid_id, f->grid.id);
        assert_int_equal(e->escalation, 0);
        assert_int_equal(e->count, 1);
        assert_int_equal(e->ts_ns, f->now);
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
    assert_int_equal(db_int(f, "SELECT opened_at FROM cases"), f->now);
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
                        "rule:fire.smoke|dispatched|dispatched|rule: condition over");
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
    /* The role the rule named waits for the dispatcher; no one has it yet. */
    assert_int_equal(db_int(f, "SELECT assignee_role = 'firefighter' AND assignee IS NULL AND "
                               "dispatched_at IS NULL AND deadline_at IS NULL FROM cases"),
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
    assert_int_equal(gw_cases_apply(f->cases, &good, f->reading, f->now, record, f), -EINVAL);
    f->reading->device = &f->device;
    action_free(&good);

    assert_int_equal(gw_cases_apply(f->cases, NULL, f->reading, f->now, record, f), -EINVAL);
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
    assert_non_null(strstr(db_text(f, "SELECT trigger_reading FROM cases", buf, sizeof(buf)),
                           "\"battery\":87,"));

    /* The creation row carries the same; auto-dispatch is not the rule's. */
    assert_int_equal(
        db_int(f, "SELECT count(*) FROM case_history h JOIN cases c "
                  "ON h.case_id = c.id WHERE h.from_state IS NULL "
                  "AND h.rule_hash = c.rule_hash AND h.trigger_reading = c.trigger_reading"),
        1);
    assert_int_equal(
        db_int(f, "SELECT count(*) FROM case_history WHERE actor = "
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
                        "rule: condition over " HASH_V1);
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
    assert_int_equal(db_int(f, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    /* The old rows are all there, their provenance unknown. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_string_equal(
        db_text(f,
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

    /* Reopening a migrated file migrates nothing more. */
    gw_cases_close(f->cases);
    open_cases(f, true);
    assert_int_equal(db_int(f, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
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

/* ---- the full loop: people, time limits, incidents ---- */

#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define G1 "110101001001001" /* street 110101001, community 110101001001 */
#define G2 "110101001001002" /* the same community */
#define G3 "110101003010002" /* street 110101003 */
#define C1 "110101001001"
#define S1 "110101001"
#define S3 "110101003"
#define G1_FIREFIGHTER "许鹏丽" /* G1's roster in config/district */
#define G1_POLICE "苏鹏华"

static const struct gw_actor district_commander = { .name = "centre",
                                                    .role = GW_ACTOR_COMMANDER,
                                                    .scope = GW_SCOPE_DISTRICT };
static const struct gw_actor street_commander = {
    .name = "street-001", .role = GW_ACTOR_COMMANDER, .scope = GW_SCOPE_STREET, .scope_id = S1
};
static const struct gw_actor community_commander = { .name = "community-001001",
                                                     .role = GW_ACTOR_COMMANDER,
                                                     .scope = GW_SCOPE_COMMUNITY,
                                                     .scope_id = C1 };
static const struct gw_actor grid_commander = {
    .name = "grid-cmd", .role = GW_ACTOR_COMMANDER, .scope = GW_SCOPE_GRID, .scope_id = G1
};
static const struct gw_actor other_street_commander = {
    .name = "street-003", .role = GW_ACTOR_COMMANDER, .scope = GW_SCOPE_STREET, .scope_id = S3
};
static const struct gw_actor firefighter = { .name = "ff-001",
                                             .role = GW_ACTOR_STAFF,
                                             .scope = GW_SCOPE_GRID,
                                             .scope_id = G1,
                                             .has_grid_role = true,
                                             .grid_role = GW_ROLE_FIREFIGHTER,
                                             .person = G1_FIREFIGHTER };
static const struct gw_actor police = { .name = "police-001",
                                        .role = GW_ACTOR_STAFF,
                                        .scope = GW_SCOPE_GRID,
                                        .scope_id = G1,
                                        .has_grid_role = true,
                                        .grid_role = GW_ROLE_POLICE,
                                        .person = G1_POLICE };
static const struct gw_actor supervisor = { .name = "sup-001",
                                            .role = GW_ACTOR_SUPERVISOR,
                                            .scope = GW_SCOPE_GRID,
                                            .scope_id = G1,
                                            .has_grid_role = true,
                                            .grid_role = GW_ROLE_SUPERVISOR };
static const struct gw_actor operator_actor = { .name = "ops",
                                                .role = GW_ACTOR_OPERATOR,
                                                .scope = GW_SCOPE_DISTRICT };
static const struct gw_actor liaison = { .name = "fire-liaison",
                                         .role = GW_ACTOR_LIAISON,
                                         .scope = GW_SCOPE_DISTRICT };
static const struct gw_actor reader = { .name = "viewer",
                                        .role = GW_ACTOR_READONLY,
                                        .scope = GW_SCOPE_DISTRICT };

/* Every severity: dispatched 1h, handled 2h, verified 3h, evaluated 4h;
 * critical cases must be dispatched... handled within 30 min. */
static struct gw_case_limits test_limits(void)
{
    struct gw_case_limits l = { 0 };

    for (int sev = 0; sev < GW_SEVERITY_COUNT; sev++) {
        l.ns[sev][GW_CASE_DISPATCHED] = HOUR;
        l.ns[sev][GW_CASE_HANDLED] = 2 * HOUR;
        l.ns[sev][GW_CASE_VERIFIED] = 3 * HOUR;
        l.ns[sev][GW_CASE_EVALUATED] = 4 * HOUR;
    }
    l.ns[GW_SEVERITY_CRITICAL][GW_CASE_DISPATCHED] = 30 * MIN;
    l.ns[GW_SEVERITY_INFO][GW_CASE_REPORTED] = HOUR; /* ignored: the clock starts at dispatch */
    return l;
}

struct district_options {
    bool auto_dispatch;
    const char *self_closing;
    const char *group_categories;
    int64_t group_window_ns;
    bool read_only;
};

static void open_district(struct fixture *f, const struct district_options *o)
{
    struct gw_cases_options options = {
        .db_path = f->db_path,
        .read_only = o->read_only,
        .auto_dispatch = o->auto_dispatch,
        .reg = f->reg,
        .limits = test_limits(),
        .self_closing = o->self_closing,
        .group_categories = o->group_categories,
        .group_window_ns = o->group_window_ns,
    };
    char *error = NULL;

    gw_cases_close(f->cases);
    f->cases = gw_cases_open(&options, &error);
    if (!f->cases)
        fail_msg("gw_cases_open: %s", error ? error : "(no message)");
}

/* The sample district's registry; the test device sits in G1. No store
 * opened yet. */
static int setup_district_unopened(void **state)
{
    struct fixture *f;

    setup(state);
    f = *state;
    f->reg = load_district();
    f->device.grid = gw_registry_grid(f->reg, G1);
    assert_non_null(f->device.grid);
    f->now = T0;
    return 0;
}

static int setup_district(void **state)
{
    setup_district_unopened(state);
    open_district(*state, &(struct district_options){ .auto_dispatch = true });
    return 0;
}

static int64_t report_in(struct fixture *f, const struct gw_actor *actor, const char *grid_id,
                         const char *category, enum gw_severity severity)
{
    struct gw_case_report report = {
        .actor = actor,
        .grid_id = grid_id,
        .category = category,
        .title = "Fire exit blocked",
        .detail = "bicycles in the stairwell",
        .severity = severity,
        .reporter = "13800000000",
    };
    const char *why = NULL;
    int64_t id = 0;

    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), 0);
    assert_true(id > 0);
    return id;
}

/* Makes a transition; checks that a refusal says why. */
static int act(struct fixture *f, struct gw_case_request req)
{
    const char *why = NULL;
    int64_t version = -1;
    int r = gw_cases_transition(f->cases, &req, f->now, record, f, &version, &why);

    if (r < 0) {
        assert_non_null(why);
        assert_int_equal(version, -1); /* untouched */
    } else {
        assert_true(version > 1);
    }
    return r;
}

static struct gw_case_request request(enum gw_case_op op, int64_t id, const struct gw_actor *actor,
                                      const char *note)
{
    return (struct gw_case_request){
        .op = op, .case_id = id, .actor = actor, .note = note, .pass = true, .score = 4
    };
}

static struct gw_case_request dispatch_request(int64_t id, const struct gw_actor *actor,
                                               enum gw_role role)
{
    struct gw_case_request req = request(GW_OP_DISPATCH, id, actor, NULL);

    req.has_role = true;
    req.role = role;
    return req;
}

/* The case as the district sees it; the caller frees its contents. */
static struct store_case get_case(struct fixture *f, int64_t id)
{
    struct store_case c;

    assert_int_equal(gw_cases_get(f->cases, &district_commander, id, &c, NULL, NULL), 0);
    return c;
}

static const char *last_kind(const struct fixture *f)
{
    assert_true(f->n_events > 0);
    return f->events[f->n_events - 1].kind;
}

static void test_op_names(void **state)
{
    (void)state;
    for (int op = 0; op < GW_OP_COUNT; op++)
        assert_int_equal(gw_case_op_parse(gw_case_op_name((enum gw_case_op)op)), op);
    assert_string_equal(gw_case_op_name(GW_OP_RETURN), "return");
    assert_string_equal(gw_case_op_name(GW_OP_FEEDBACK), "feedback");
    assert_null(gw_case_op_name(GW_OP_COUNT));
    assert_int_equal(gw_case_op_parse("archive"), -EINVAL);
    assert_int_equal(gw_case_op_parse(NULL), -EINVAL);
    assert_int_equal(gw_case_op_parse("Dispatch"), -EINVAL);
}

/* A report runs the six steps; each step has its clock and its row. */
static void test_full_loop(void **state)
{
    struct fixture *f = *state;
    struct gw_case_request req;
    struct store_case c;
    struct store_history *history = NULL;
    size_t n_history = 0;
    int64_t id;
    char buf[256];

    id = report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MINOR);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "opened");
    assert_false(f->events[0].has_from);
    assert_string_equal(f->events[0].actor, "ff-001");
    assert_int_equal(f->events[0].version, 1);
    assert_string_equal(f->events[0].grid_id, G1);
    c = get_case(f, id);
    assert_int_equal(c.state, GW_CASE_REPORTED);
    assert_string_equal(c.reported_by, "ff-001");
    assert_string_equal(c.reporter, "13800000000");
    assert_string_equal(c.community_id, C1);
    assert_string_equal(c.street_id, S1);
    assert_null(c.rule);
    assert_int_equal(c.state_since, T0);
    assert_int_equal(c.deadline_at, 0);
    assert_int_equal(c.first_dispatched_at, 0);
    assert_false(c.has_location);
    store_case_free_contents(&c);

    /* Dispatched by the community's centre to the grid's firefighter. */
    f->now = T0 + 10 * SEC;
    req = dispatch_request(id, &community_commander, GW_ROLE_FIREFIGHTER);
    req.version = 1;
    assert_int_equal(act(f, req), 0);
    assert_string_equal(last_kind(f), "dispatched");
    assert_true(f->events[1].has_from);
    assert_int_equal(f->events[1].from, GW_CASE_REPORTED);
    assert_string_equal(f->events[1].actor, "community-001001");
    c = get_case(f, id);
    assert_int_equal(c.state, GW_CASE_DISPATCHED);
    assert_int_equal(c.version, 2);
    assert_string_equal(c.assignee, G1_FIREFIGHTER);
    assert_int_equal(c.assignee_role, GW_ROLE_FIREFIGHTER);
    assert_int_equal(c.deadline_at, f->now + HOUR);
    assert_int_equal(c.first_dispatched_at, f->now);
    assert_int_equal(c.dispatched_at, f->now);
    assert_int_equal(c.state_since, f->now);
    store_case_free_contents(&c);

    /* Handled by the firefighter: the next clock. */
    f->now = T0 + 20 * MIN;
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, id, &firefighter, "bicycles removed")), 0);
    assert_string_equal(last_kind(f), "handled");
    assert_string_equal(f->events[2].note, "bicycles removed");
    c = get_case(f, id);
    assert_int_equal(c.state, GW_CASE_HANDLED);
    assert_int_equal(c.deadline_at, f->now + 2 * HOUR);
    assert_int_equal(c.first_dispatched_at, T0 + 10 * SEC); /* the clock started once */
    store_case_free_contents(&c);

    f->now = T0 + HOUR;
    assert_int_equal(act(f, request(GW_OP_VERIFY, id, &supervisor, NULL)), 0);
    assert_string_equal(last_kind(f), "verified");
    f->now = T0 + 2 * HOUR;
    assert_int_equal(act(f, request(GW_OP_EVALUATE, id, &street_commander, NULL)), 0);
    assert_string_equal(last_kind(f), "evaluated");
    c = get_case(f, id);
    assert_int_equal(c.score, 4);
    assert_int_equal(c.deadline_at, f->now + 4 * HOUR);
    store_case_free_contents(&c);
    f->now = T0 + 3 * HOUR;
    req = request(GW_OP_CLOSE, id, &district_commander, NULL);
    req.version = 5; /* reported 1, then one per step */
    assert_int_equal(act(f, req), 0);
    assert_string_equal(last_kind(f), "closed");
    assert_int_equal(f->n_events, 6);

    assert_int_equal(gw_cases_get(f->cases, &firefighter, id, &c, &history, &n_history), 0);
    assert_int_equal(c.state, GW_CASE_CLOSED);
    assert_int_equal(c.version, 6);
    assert_int_equal(c.closed_at, f->now);
    assert_int_equal(c.deadline_at, 0);
    assert_false(c.overdue);
    assert_int_equal(c.overdue_count, 0);
    assert_null(c.trigger); /* a report has no reading */
    assert_int_equal(n_history, 6);
    for (size_t i = 0; i < n_history; i++) {
        assert_int_equal(history[i].case_id, id);
        assert_int_equal(history[i].has_from, i > 0);
        if (i > 0)
            assert_int_equal(history[i].from_state, history[i - 1].to_state);
        assert_null(history[i].rule_hash);
    }
    assert_string_equal(history[0].actor, "ff-001");
    assert_string_equal(history[0].note, "bicycles in the stairwell");
    assert_string_equal(history[1].actor, "community-001001");
    assert_string_equal(history[1].note, "to firefighter " G1_FIREFIGHTER);
    assert_string_equal(history[2].actor, "ff-001");
    assert_string_equal(history[3].actor, "sup-001");
    assert_string_equal(history[4].actor, "street-001");
    assert_string_equal(history[5].actor, "centre");
    assert_int_equal(history[5].to_state, GW_CASE_CLOSED);
    assert_int_equal(history[5].at, f->now);
    gw_cases_free_history(history, n_history);
    store_case_free_contents(&c);
    assert_string_equal(db_text(f,
                                "SELECT group_concat(to_state, ',') FROM "
                                "(SELECT to_state FROM case_history ORDER BY id)",
                                buf, sizeof(buf)),
                        "reported,dispatched,handled,verified,evaluated,closed");
}

/* The states each op starts from (docs/api.md). */
static bool op_starts_from(enum gw_case_op op, enum gw_case_state state)
{
    switch (op) {
    case GW_OP_DISPATCH:
    case GW_OP_CANCEL:
        return state == GW_CASE_REPORTED;
    case GW_OP_FEEDBACK:
    case GW_OP_RETURN:
        return state == GW_CASE_DISPATCHED;
    case GW_OP_VERIFY:
        return state == GW_CASE_HANDLED;
    case GW_OP_EVALUATE:
        return state == GW_CASE_VERIFIED;
    case GW_OP_CLOSE:
        return state == GW_CASE_EVALUATED;
    case GW_OP_DEFER:
        return state == GW_CASE_DISPATCHED || state == GW_CASE_HANDLED;
    case GW_OP_RESUME:
        return state == GW_CASE_DEFERRED;
    case GW_OP_COUNT:
        break;
    }
    return false;
}

/* Who may make op, by role alone (the case in scope, at escalation 0). */
static const struct gw_actor *allowed_actor(enum gw_case_op op)
{
    switch (op) {
    case GW_OP_FEEDBACK:
    case GW_OP_RETURN:
        return &firefighter;
    case GW_OP_VERIFY:
        return &supervisor;
    default:
        return &district_commander;
    }
}

/* Puts case 1 in a state with the grid's firefighter assigned, escalation
 * as given, behind the store's back. */
static void force_state(struct fixture *f, enum gw_case_state state, int escalation)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "UPDATE cases SET state = '%s', assignee_role = 'firefighter', assignee = '%s',"
             " escalation = %d, incident_id = NULL WHERE id = 1",
             gw_case_state_name(state), G1_FIREFIGHTER, escalation);
    assert_int_equal(db_exec(f, sql, NULL, 0), SQLITE_OK);
}

/* Every op from every state: allowed exactly where the matrix says, the
 * rest refused as a conflict; gw_cases_may agrees each time. */
static void test_transition_matrix_states(void **state)
{
    struct fixture *f = *state;

    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MAJOR);
    for (int op = 0; op < GW_OP_COUNT; op++) {
        for (int st = 0; st < GW_CASE_STATE_COUNT; st++) {
            struct gw_case_request req =
                request((enum gw_case_op)op, 1, allowed_actor((enum gw_case_op)op), "a note");
            bool allowed = op_starts_from((enum gw_case_op)op, (enum gw_case_state)st);
            struct store_case c;
            int r;

            force_state(f, (enum gw_case_state)st, 0);
            c = get_case(f, 1);
            assert_int_equal(gw_cases_may(req.actor, (enum gw_case_op)op, &c), allowed);
            store_case_free_contents(&c);
            r = act(f, req);
            if (r != (allowed ? 0 : -EBUSY))
                fail_msg("%s from %s: %d", gw_case_op_name((enum gw_case_op)op),
                         gw_case_state_name((enum gw_case_state)st), r);
        }
    }
}

/* Every op by every kind of actor, from a state it starts from. */
static void test_transition_matrix_roles(void **state)
{
    struct fixture *f = *state;
    static const struct gw_actor *const actors[] = {
        &district_commander,
        &street_commander,
        &community_commander,
        &grid_commander,
        &firefighter,
        &police,
        &supervisor,
        &operator_actor,
        &liaison,
        &reader,
    };

    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MAJOR);
    for (int op = 0; op < GW_OP_COUNT; op++) {
        enum gw_case_state from = GW_CASE_REPORTED;

        while (!op_starts_from((enum gw_case_op)op, from))
            from++;
        for (size_t i = 0; i < sizeof(actors) / sizeof(actors[0]); i++) {
            const struct gw_actor *a = actors[i];
            bool commander = a->role == GW_ACTOR_COMMANDER && a != &grid_commander;
            bool allowed;
            struct store_case c;
            int r;

            switch (op) {
            case GW_OP_FEEDBACK:
            case GW_OP_RETURN:
                allowed = a == &firefighter;
                break;
            case GW_OP_VERIFY:
                allowed = a == &supervisor || commander;
                break;
            default:
                allowed = commander;
                break;
            }
            force_state(f, from, 0);
            c = get_case(f, 1);
            assert_int_equal(gw_cases_may(a, (enum gw_case_op)op, &c), allowed);
            store_case_free_contents(&c);
            r = act(f, request((enum gw_case_op)op, 1, a, "a note"));
            if (r != (allowed ? 0 : -EACCES))
                fail_msg("%s by %s: %d", gw_case_op_name((enum gw_case_op)op), a->name, r);
        }
        /* Outside the scope the case does not exist. */
        force_state(f, from, 0);
        assert_int_equal(act(f, request((enum gw_case_op)op, 1, &other_street_commander, "n")),
                         -ENOENT);
        assert_int_equal(act(f, request((enum gw_case_op)op, 99, &district_commander, "n")),
                         -ENOENT);
    }
}

/* Escalation moves the case up: a centre below it may no longer act. */
static void test_transition_escalation_level(void **state)
{
    struct fixture *f = *state;
    struct store_case c;

    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MAJOR);
    force_state(f, GW_CASE_REPORTED, 1);
    c = get_case(f, 1);
    assert_false(gw_cases_may(&community_commander, GW_OP_CANCEL, &c));
    assert_true(gw_cases_may(&street_commander, GW_OP_CANCEL, &c));
    store_case_free_contents(&c);
    assert_int_equal(act(f, request(GW_OP_CANCEL, 1, &community_commander, "dup")), -EACCES);
    force_state(f, GW_CASE_REPORTED, 2);
    assert_int_equal(act(f, request(GW_OP_CANCEL, 1, &street_commander, "dup")), -EACCES);
    assert_int_equal(act(f, request(GW_OP_CANCEL, 1, &district_commander, "dup")), 0);
    /* The supervisor verifies whatever the level. */
    force_state(f, GW_CASE_HANDLED, 2);
    assert_int_equal(act(f, request(GW_OP_VERIFY, 1, &supervisor, NULL)), 0);
    /* Staff by name when their post is another. */
    force_state(f, GW_CASE_DISPATCHED, 2);
    assert_int_equal(
        db_exec(f, "UPDATE cases SET assignee_role = 'police', assignee = '" G1_FIREFIGHTER "'",
                NULL, 0),
        SQLITE_OK);
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, 1, &firefighter, "done")), 0);
}

/* 404, then 403, then 409 stale, then 409, then 400. */
static void test_transition_check_order(void **state)
{
    struct fixture *f = *state;
    struct gw_case_request req;
    const char *why = NULL;

    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MAJOR);
    /* Out of scope, wrong role, stale, wrong state, no note: 404. */
    req = request(GW_OP_FEEDBACK, 1, &other_street_commander, NULL);
    req.version = 7;
    assert_int_equal(act(f, req), -ENOENT);
    /* Wrong role, stale, wrong state, no note: 403. */
    req.actor = &district_commander;
    assert_int_equal(act(f, req), -EACCES);
    /* Stale, wrong state, no note: 409 stale. */
    req = request(GW_OP_FEEDBACK, 1, &firefighter, NULL);
    force_state(f, GW_CASE_REPORTED, 0);
    req.version = 7;
    assert_int_equal(act(f, req), -ESTALE);
    /* Wrong state, no note: 409. */
    req.version = 1;
    assert_int_equal(act(f, req), -EBUSY);
    /* No note: 400. */
    force_state(f, GW_CASE_DISPATCHED, 0);
    assert_int_equal(act(f, req), -EINVAL);
    req.note = "";
    assert_int_equal(act(f, req), -EINVAL);
    req.note = "done";
    assert_int_equal(act(f, req), 0);
    /* That moved the version on: the same request is stale now. */
    assert_int_equal(act(f, req), -ESTALE);
    assert_int_equal(f->n_events, 2);

    /* The arguments of each op. */
    force_state(f, GW_CASE_VERIFIED, 0);
    req = request(GW_OP_EVALUATE, 1, &district_commander, NULL);
    for (int score = -1; score <= 6; score++) {
        req.score = score;
        if (score == 0 || score == 6 || score == -1)
            assert_int_equal(act(f, req), -EINVAL);
    }
    force_state(f, GW_CASE_HANDLED, 0);
    req = request(GW_OP_VERIFY, 1, &supervisor, NULL);
    req.pass = false;
    assert_int_equal(act(f, req), -EINVAL);
    force_state(f, GW_CASE_DISPATCHED, 0);
    assert_int_equal(act(f, request(GW_OP_RETURN, 1, &firefighter, NULL)), -EINVAL);
    assert_int_equal(act(f, request(GW_OP_DEFER, 1, &district_commander, NULL)), -EINVAL);
    force_state(f, GW_CASE_REPORTED, 0);
    assert_int_equal(act(f, request(GW_OP_CANCEL, 1, &district_commander, NULL)), -EINVAL);
    /* A report names no role: the dispatcher must. */
    assert_int_equal(db_exec(f, "UPDATE cases SET assignee_role = NULL, assignee = NULL", NULL, 0),
                     SQLITE_OK);
    assert_int_equal(act(f, request(GW_OP_DISPATCH, 1, &district_commander, NULL)), -EINVAL);
    req = dispatch_request(1, &district_commander, GW_ROLE_POLICE);
    req.person = "nobody we know";
    assert_int_equal(act(f, req), -EINVAL);
    req.role = GW_ROLE_COUNT;
    req.person = NULL;
    assert_int_equal(act(f, req), -EINVAL);
    /* Someone else on the grid's roster is fine. */
    req = dispatch_request(1, &district_commander, GW_ROLE_POLICE);
    req.person = G1_FIREFIGHTER;
    assert_int_equal(act(f, req), 0);
    assert_string_equal(f->events[f->n_events - 1].assignee, G1_FIREFIGHTER);
    assert_string_equal(f->events[f->n_events - 1].assignee_role, "police");

    /* Nonsense requests. */
    req.op = GW_OP_COUNT;
    assert_int_equal(gw_cases_transition(f->cases, &req, f->now, record, f, NULL, &why), -EINVAL);
    assert_non_null(why);
    assert_int_equal(gw_cases_transition(f->cases, NULL, f->now, record, f, NULL, &why), -EINVAL);
    assert_false(gw_cases_may(NULL, GW_OP_CLOSE, NULL));
}

/* A failed verification sends the case back to the same unit. */
static void test_rework_by_verification(void **state)
{
    struct fixture *f = *state;
    struct gw_case_request req;
    struct store_case c;

    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MAJOR);
    assert_int_equal(act(f, dispatch_request(1, &district_commander, GW_ROLE_FIREFIGHTER)), 0);
    f->now += 10 * MIN;
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, 1, &firefighter, "cleared")), 0);
    f->now += 10 * MIN;
    req = request(GW_OP_VERIFY, 1, &supervisor, "still blocked");
    req.pass = false;
    assert_int_equal(act(f, req), 0);
    assert_string_equal(last_kind(f), "rework");
    assert_int_equal(f->events[f->n_events - 1].from, GW_CASE_HANDLED);
    c = get_case(f, 1);
    assert_int_equal(c.state, GW_CASE_DISPATCHED);
    assert_int_equal(c.rework_count, 1);
    assert_string_equal(c.assignee, G1_FIREFIGHTER);
    assert_int_equal(c.deadline_at, f->now + HOUR);
    assert_int_equal(c.dispatched_at, f->now);
    assert_int_equal(c.first_dispatched_at, T0);
    assert_int_equal(c.version, 4);
    store_case_free_contents(&c);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE from_state = 'handled' "
                               "AND to_state = 'dispatched' AND note = 'still blocked' "
                               "AND actor = 'sup-001'"),
                     1);
}

/* The problem came back after the unit said it was solved: rework. */
static void test_reopen_after_handled(void **state)
{
    struct fixture *f = *state;
    struct store_case c;
    char buf[128];

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[1].actor, "gridgate:auto-dispatch");
    assert_int_equal(f->events[1].deadline_at, T0 + HOUR);
    f->now += 20 * MIN;
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, 1, &firefighter, "smoke was steam")), 0);
    forget_events(f);

    f->now += 5 * MIN;
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_CRITICAL,
                                          GW_ROLE_FIREFIGHTER, T0 + 25 * MIN)),
                     0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "reopened");
    assert_int_equal(f->events[0].from, GW_CASE_HANDLED);
    assert_int_equal(f->events[0].state, GW_CASE_DISPATCHED);
    assert_string_equal(f->events[0].actor, "rule:fire.smoke");
    assert_string_equal(f->events[0].note, "recurred after handling: rework");
    c = get_case(f, 1);
    assert_int_equal(c.rework_count, 1);
    assert_int_equal(c.count, 2);
    assert_int_equal(c.severity, GW_SEVERITY_CRITICAL);
    assert_int_equal(c.deadline_at, f->now + 30 * MIN); /* critical now */
    assert_string_equal(c.assignee, G1_FIREFIGHTER);
    assert_int_equal(c.version, 4);
    store_case_free_contents(&c);
    /* The raise and the reopening, both the rule's with its reading. */
    assert_string_equal(db_text(f,
                                "SELECT group_concat(from_state || '>' || to_state || ':' || note,"
                                " '|') FROM (SELECT * FROM case_history WHERE id > 3 ORDER BY id)",
                                buf, sizeof(buf)),
                        "handled>handled:severity major -> critical|"
                        "handled>dispatched:recurred after handling: rework");
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE id > 3 AND "
                               "rule_hash IS NOT NULL AND trigger_reading IS NOT NULL"),
                     2);

    /* While dispatched a repeat only updates. */
    forget_events(f);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MINOR,
                                          GW_ROLE_FIREFIGHTER, T0 + 26 * MIN)),
                     0);
    assert_string_equal(f->events[0].kind, "updated");
    assert_int_equal(f->events[0].version, 5);
    assert_int_equal(f->events[0].rework_count, 1);
}

static void test_return_defer_resume_cancel(void **state)
{
    struct fixture *f = *state;
    struct store_case c;

    report_in(f, &police, G1, "order.noise", GW_SEVERITY_MINOR);
    assert_int_equal(act(f, dispatch_request(1, &community_commander, GW_ROLE_FIREFIGHTER)), 0);
    /* Not the firefighters' business. */
    f->now += MIN;
    assert_int_equal(act(f, request(GW_OP_RETURN, 1, &firefighter, "noise is for the police")), 0);
    assert_string_equal(last_kind(f), "returned");
    c = get_case(f, 1);
    assert_int_equal(c.state, GW_CASE_REPORTED);
    assert_int_equal(c.return_count, 1);
    assert_false(c.has_assignee_role);
    assert_null(c.assignee);
    assert_int_equal(c.deadline_at, 0);
    assert_int_equal(c.first_dispatched_at, T0); /* its clock still started then */
    store_case_free_contents(&c);

    /* Redispatched; deferred from dispatched, resumed with a new clock. */
    f->now += MIN;
    assert_int_equal(act(f, dispatch_request(1, &community_commander, GW_ROLE_POLICE)), 0);
    f->now += MIN;
    assert_int_equal(act(f, request(GW_OP_DEFER, 1, &community_commander, "needs a permit")), 0);
    assert_string_equal(last_kind(f), "deferred");
    c = get_case(f, 1);
    assert_int_equal(c.state, GW_CASE_DEFERRED);
    assert_int_equal(c.deferred_at, f->now);
    assert_int_equal(c.deadline_at, 0);
    store_case_free_contents(&c);
    assert_int_equal(gw_cases_next_deadline(f->cases), 0);
    f->now += 24 * HOUR;
    assert_int_equal(act(f, request(GW_OP_RESUME, 1, &community_commander, NULL)), 0);
    assert_string_equal(last_kind(f), "resumed");
    c = get_case(f, 1);
    assert_int_equal(c.state, GW_CASE_DISPATCHED);
    assert_int_equal(c.deferred_at, 0);
    assert_int_equal(c.deadline_at, f->now + HOUR);
    assert_string_equal(c.assignee, G1_POLICE);
    store_case_free_contents(&c);

    /* Deferred from handled too. */
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, 1, &police, "talked to them")), 0);
    assert_int_equal(act(f, request(GW_OP_DEFER, 1, &street_commander, "until the hearing")), 0);
    assert_int_equal(act(f, request(GW_OP_RESUME, 1, &street_commander, NULL)), 0);

    /* Cancelled before dispatch: terminal, closed_at set. */
    report_in(f, &police, G1, "order.noise", GW_SEVERITY_MINOR);
    assert_int_equal(act(f, request(GW_OP_CANCEL, 2, &community_commander, "duplicate of 1")), 0);
    assert_string_equal(last_kind(f), "cancelled");
    c = get_case(f, 2);
    assert_int_equal(c.state, GW_CASE_CANCELLED);
    assert_int_equal(c.closed_at, f->now);
    store_case_free_contents(&c);
    assert_int_equal(act(f, dispatch_request(2, &community_commander, GW_ROLE_POLICE)), -EBUSY);
}

/* A self-closing category's clear_case closes the case. */
static void test_self_closing_clear(void **state)
{
    struct fixture *f = *state;
    struct rule_action water;
    char buf[256];

    open_district(
        f, &(struct district_options){ .auto_dispatch = true, .self_closing = "water.*, fire" });
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    water = open_action("water.leak", "smoke-0001", GW_SEVERITY_MINOR, -1, T0);
    free(water.category);
    water.category = dup_or_null("waterfall"); /* not "water.*" */
    assert_int_equal(apply(f, water), 0);
    forget_events(f);

    f->now += MIN;
    assert_int_equal(apply(f, clear_action("fire.smoke", "smoke-0001", T0 + MIN)), 0);
    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[0].kind, "cleared");
    assert_string_equal(f->events[1].kind, "closed");
    assert_int_equal(f->events[1].from, GW_CASE_DISPATCHED);
    assert_string_equal(f->events[1].note, "closed by the rule: category closes itself");
    assert_string_equal(f->events[1].actor, "rule:fire.smoke");
    assert_string_equal(db_text(f,
                                "SELECT state || ' ' || closed_at || ' ' || cleared_at || ' ' ||"
                                " version || ' ' || coalesce(deadline_at, 'none') FROM cases"
                                " WHERE id = 1",
                                buf, sizeof(buf)),
                        "closed 1700000060000000000 1700000060000000000 4 none");
    assert_string_equal(db_text(f,
                                "SELECT group_concat(actor || '|' || from_state || '>' || to_state"
                                " || '|' || note, ' / ') FROM (SELECT * FROM case_history"
                                " WHERE case_id = 1 AND id > 2 ORDER BY id)",
                                buf, sizeof(buf)),
                        "rule:fire.smoke|dispatched>dispatched|rule: condition over / "
                        "rule:fire.smoke|dispatched>closed|closed by the rule: category closes "
                        "itself");
    /* Another category only notes it. */
    forget_events(f);
    assert_int_equal(apply(f, clear_action("water.leak", "smoke-0001", T0 + MIN)), 0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "cleared");
    assert_int_equal(f->events[0].state, GW_CASE_REPORTED);
    /* "water.*" names the categories under water. */
    water = open_action("water.pipe", "pipe-1", GW_SEVERITY_MINOR, -1, T0);
    free(water.category);
    water.category = dup_or_null("water.leak");
    assert_int_equal(apply(f, water), 0);
    forget_events(f);
    assert_int_equal(apply(f, clear_action("water.pipe", "pipe-1", T0 + MIN)), 0);
    assert_int_equal(f->n_events, 2);
    assert_string_equal(f->events[1].kind, "closed");
    assert_int_equal(f->events[1].from, GW_CASE_REPORTED);
    /* The closed case's rule opens a new case next time. */
    forget_events(f);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0 + 2 * MIN)),
                     0);
    assert_string_equal(f->events[0].kind, "opened");
    assert_int_equal(f->events[0].case_id, 4);
}

static void set_device_grid(struct fixture *f, const char *grid_id)
{
    f->device.grid = gw_registry_grid(f->reg, grid_id);
    assert_non_null(f->device.grid);
}

/* Cases of a grouped category in one grid within the window form one
 * incident; dispatching its lead dispatches the members. */
static void test_grouping_and_lead_dispatch(void **state)
{
    struct fixture *f = *state;
    struct store_case *list = NULL;
    struct gw_case_filter filter = { .overdue = -1, .incident_id = 1, .limit = 50 };
    char buf[128];
    int n;

    open_district(f, &(struct district_options){ .group_categories = "water, fire",
                                                 .group_window_ns = 10 * MIN });
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 1); /* a lead: no "grouped" */
    assert_int_equal(f->events[0].incident_id, 1);
    f->now += 5 * MIN;
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0002", GW_SEVERITY_CRITICAL,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(f->n_events, 3);
    assert_string_equal(f->events[1].kind, "opened");
    assert_int_equal(f->events[1].incident_id, 1);
    assert_string_equal(f->events[2].kind, "grouped");
    assert_string_equal(f->events[2].note, "grouped into incident 1");
    assert_int_equal(f->events[2].version, 1);
    /* Another rule of the same category joins too; another grid leads its own. */
    assert_int_equal(apply(f, open_action("fire.heat", "smoke-0001", GW_SEVERITY_MINOR, -1, T0)),
                     0);
    set_device_grid(f, G2);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0003", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    set_device_grid(f, G1);
    /* After the window: a new incident. */
    f->now = T0 + 11 * MIN;
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0004", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_string_equal(db_text(f, "SELECT group_concat(id || ':' || incident_id, ' ') FROM cases",
                                buf, sizeof(buf)),
                        "1:1 2:1 3:1 4:4 5:5");
    /* "*" groups every category; "fire.*" those under fire only. */
    open_district(
        f, &(struct district_options){ .group_categories = "*", .group_window_ns = 10 * MIN });
    report_in(f, &firefighter, G1, "anything", GW_SEVERITY_MINOR); /* reports are not grouped */
    assert_int_equal(db_int(f, "SELECT incident_id FROM cases WHERE id = 6"), -1);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0005", GW_SEVERITY_MAJOR, -1, T0)),
                     0);
    assert_int_equal(db_int(f, "SELECT incident_id FROM cases WHERE id = 7"), 5);
    open_district(
        f, &(struct district_options){ .group_categories = "fire.*", .group_window_ns = 10 * MIN });
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0006", GW_SEVERITY_MAJOR, -1, T0)),
                     0);
    assert_int_equal(db_int(f, "SELECT incident_id FROM cases WHERE id = 8"), -1); /* "fire" */
    open_district(f, &(struct district_options){ .group_categories = "water, fire",
                                                 .group_window_ns = 10 * MIN });
    /* Not a grouped category: no incident. */
    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MINOR);
    assert_int_equal(db_int(f, "SELECT incident_id FROM cases WHERE id = 9"), -1);

    /* Dispatching the lead sends the members still reported along. */
    assert_int_equal(act(f, dispatch_request(2, &district_commander, GW_ROLE_POLICE)), 0);
    forget_events(f);
    f->now += MIN;
    assert_int_equal(act(f, dispatch_request(1, &community_commander, GW_ROLE_FIREFIGHTER)), 0);
    assert_int_equal(f->n_events, 2);
    assert_int_equal(f->events[0].case_id, 1);
    assert_int_equal(f->events[1].case_id, 3);
    assert_string_equal(f->events[1].kind, "dispatched");
    assert_string_equal(f->events[1].note, "with incident 1");
    assert_string_equal(f->events[1].assignee, G1_FIREFIGHTER);
    assert_string_equal(f->events[1].actor, "community-001001");
    n = gw_cases_list(f->cases, &district_commander, &filter, &list);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, 3);
    assert_int_equal(list[0].state, GW_CASE_DISPATCHED);
    assert_int_equal(list[1].assignee_role, GW_ROLE_POLICE); /* dispatched before: left alone */
    assert_int_equal(list[2].id, 1);
    gw_cases_free_list(list, n);
    /* A lead without members sends only itself; a member only itself. */
    forget_events(f);
    assert_int_equal(act(f, dispatch_request(4, &community_commander, GW_ROLE_FIREFIGHTER)), 0);
    assert_int_equal(f->n_events, 1);
    assert_int_equal(act(f, dispatch_request(7, &community_commander, GW_ROLE_FIREFIGHTER)), 0);
    assert_int_equal(f->n_events, 2);
    assert_int_equal(act(f, dispatch_request(5, &community_commander, GW_ROLE_FIREFIGHTER)), 0);
    assert_int_equal(f->n_events, 3);
}

/* A step past its limit escalates community -> street -> district; the
 * deadlines live in the file and survive a restart. */
static void test_escalation(void **state)
{
    struct fixture *f = *state;
    struct store_case c;
    char buf[128];

    report_in(f, &firefighter, G1, "safety.exit", GW_SEVERITY_MAJOR);
    report_in(f, &district_commander, G3, "safety.exit", GW_SEVERITY_CRITICAL);
    assert_int_equal(gw_cases_next_deadline(f->cases), 0); /* reported: no clock */
    assert_int_equal(act(f, dispatch_request(1, &community_commander, GW_ROLE_FIREFIGHTER)), 0);
    assert_int_equal(act(f, dispatch_request(2, &district_commander, GW_ROLE_POLICE)), 0);
    assert_int_equal(gw_cases_next_deadline(f->cases), T0 + 30 * MIN);
    forget_events(f);

    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + 30 * MIN - 1, 10, record, f), 0);
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + 30 * MIN, 10, record, f), 1);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].kind, "escalated");
    assert_int_equal(f->events[0].case_id, 2);
    assert_string_equal(f->events[0].actor, "gridgate:timer");
    assert_string_equal(f->events[0].note, "over the 30m limit of dispatched: escalated to street");
    assert_int_equal(f->events[0].escalation, 1);
    assert_true(f->events[0].overdue);
    assert_int_equal(f->events[0].deadline_at, T0 + HOUR);
    assert_int_equal(f->events[0].ts_ns, T0 + 30 * MIN);

    /* A restart: the timers are in the file. */
    gw_cases_close(f->cases);
    f->cases = NULL;
    open_district(f, &(struct district_options){ .auto_dispatch = true });
    assert_int_equal(gw_cases_next_deadline(f->cases), T0 + HOUR);
    forget_events(f);
    /* max bounds one call; both are due at T0 + 1h. */
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + HOUR, 1, record, f), 1);
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + HOUR, 10, record, f), 1);
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + HOUR, 10, record, f), 0);
    assert_int_equal(f->n_events, 2);
    c = get_case(f, 2);
    assert_int_equal(c.escalation, 2);
    assert_int_equal(c.deadline_at, 0); /* the district has it: no more timers */
    assert_true(c.overdue);
    assert_int_equal(c.overdue_count, 1); /* once per step */
    assert_int_equal(c.version, 4);
    store_case_free_contents(&c);
    c = get_case(f, 1);
    assert_int_equal(c.escalation, 1);
    assert_int_equal(c.overdue_count, 1);
    assert_int_equal(c.deadline_at, T0 + 2 * HOUR);
    store_case_free_contents(&c);
    assert_string_equal(db_text(f,
                                "SELECT note FROM case_history WHERE case_id = 2 "
                                "ORDER BY id DESC LIMIT 1",
                                buf, sizeof(buf)),
                        "over the 30m limit of dispatched: escalated to district");
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history WHERE actor = 'gridgate:timer'"
                               " AND from_state = 'dispatched' AND to_state = 'dispatched'"),
                     3);

    /* The community centre no longer acts on case 1; the street does. */
    f->now = T0 + HOUR + MIN;
    assert_int_equal(act(f, request(GW_OP_DEFER, 1, &community_commander, "wait")), -EACCES);
    /* A new step: a new clock, no longer overdue, the level stays. */
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, 1, &firefighter, "done")), 0);
    c = get_case(f, 1);
    assert_false(c.overdue);
    assert_int_equal(c.escalation, 1);
    assert_int_equal(c.deadline_at, f->now + 2 * HOUR);
    store_case_free_contents(&c);
    assert_int_equal(gw_cases_escalate_due(f->cases, f->now + 2 * HOUR, 10, record, f), 1);
    assert_int_equal(gw_cases_escalate_due(f->cases, f->now + 9 * HOUR, 10, record, f), 0);
    c = get_case(f, 1);
    assert_int_equal(c.overdue_count, 2);
    assert_int_equal(c.escalation, 2);
    store_case_free_contents(&c);
    assert_int_equal(gw_cases_next_deadline(f->cases), 0);
    assert_int_equal(gw_cases_escalate_due(f->cases, f->now, 0, record, f), 0);
}

/* A burst of readings from one device in one batch is one case. */
static void test_batch_of_repeats(void **state)
{
    struct fixture *f = *state;
    struct rule_action action =
        open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR, GW_ROLE_FIREFIGHTER, T0);

    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(gw_cases_begin(f->cases), -EBUSY);
    for (int i = 0; i < 1000; i++) {
        action.ts_ns = T0 + i * SEC;
        assert_int_equal(gw_cases_apply(f->cases, &action, f->reading, f->now, count_event, f), 0);
    }
    assert_int_equal(gw_cases_commit(f->cases), 0);
    assert_int_equal(gw_cases_commit(f->cases), -EINVAL);
    action_free(&action);
    assert_int_equal(f->n_counted, 1001); /* opened, dispatched, 999 updated */
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT count FROM cases"), 1000);
    assert_int_equal(db_int(f, "SELECT version FROM cases"), 1001);
    assert_int_equal(db_int(f, "SELECT last_seen_at FROM cases"), T0 + 999 * SEC);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 2);
}

/* In a batch each call is all-or-nothing; the batch is durable at commit
 * or not at all. */
static void test_batch_parts(void **state)
{
    struct fixture *f = *state;
    struct gw_case_report report = { .actor = &firefighter,
                                     .grid_id = G1,
                                     .category = "x",
                                     .title = "t",
                                     .detail = "boom",
                                     .severity = GW_SEVERITY_MINOR };
    const char *why = NULL;
    int64_t id = 0;

    assert_int_equal(db_exec(f,
                             "CREATE TRIGGER test_fail BEFORE INSERT ON case_history "
                             "WHEN NEW.note = 'boom' "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                             NULL, 0),
                     SQLITE_OK);
    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    /* This part fails half-way: its case row goes with it, no event. */
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EPERM);
    assert_non_null(why);
    assert_int_equal(f->n_events, 2);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0002", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    assert_int_equal(gw_cases_commit(f->cases), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases WHERE rule IS NULL"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM case_history"), 4);

    /* A batch rolled back leaves nothing. */
    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0003", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    gw_cases_rollback(f->cases);
    gw_cases_rollback(f->cases); /* harmless twice */
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 2);
    /* Outside a batch the failing part is alone in its transaction. */
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EPERM);
    report.detail = NULL;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 3);
    assert_int_equal(db_int(f, "SELECT max(id) FROM cases WHERE rule IS NULL"), id);
}

/* ---- reads ---- */

static int list_ids(struct fixture *f, const struct gw_actor *viewer,
                    const struct gw_case_filter *filter, int64_t *ids, int max)
{
    struct store_case *list = NULL;
    int n = gw_cases_list(f->cases, viewer, filter, &list);

    assert_true(n >= 0);
    assert_true(n <= max);
    for (int i = 0; i < n; i++)
        ids[i] = list[i].id;
    gw_cases_free_list(list, n);
    return n;
}

#define ANY_FILTER                                                                                 \
    {                                                                                              \
        .overdue = -1, .limit = 500                                                                \
    }

static void test_list_filters_cursor_scope(void **state)
{
    struct fixture *f = *state;
    static const char *const grids[] = { G1, G2, G3 };
    struct gw_case_filter filter = ANY_FILTER;
    int64_t ids[500], all[30];
    int n, got;

    /* 30 reports: ids 1..30 in G1, G2, G3 in turn; every third critical;
     * ids 1..5 of category "fire", the rest "safety". */
    for (int i = 0; i < 30; i++)
        report_in(f, &district_commander, grids[i % 3], i < 5 ? "fire" : "safety",
                  i % 3 == 0 ? GW_SEVERITY_CRITICAL : GW_SEVERITY_MINOR);
    /* Case 1 (G1) dispatched and overdue. */
    assert_int_equal(act(f, dispatch_request(1, &district_commander, GW_ROLE_FIREFIGHTER)), 0);
    assert_int_equal(gw_cases_escalate_due(f->cases, f->now + HOUR, 10, record, f), 1);

    assert_int_equal(list_ids(f, &district_commander, &filter, all, 30), 30);
    for (int i = 0; i < 30; i++)
        assert_int_equal(all[i], 30 - i); /* newest first */
    assert_int_equal(list_ids(f, &firefighter, &filter, ids, 30), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ids[i], 28 - 3 * i); /* 28, 25, ... 1: G1's */
    assert_int_equal(list_ids(f, &street_commander, &filter, ids, 30), 20);
    assert_int_equal(list_ids(f, &community_commander, &filter, ids, 30), 20);
    assert_int_equal(list_ids(f, &other_street_commander, &filter, ids, 30), 10);
    assert_int_equal(ids[0], 30);

    /* Filters, also against the scope. */
    filter.grid_id = G2;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 10);
    assert_int_equal(ids[0], 29);
    assert_int_equal(list_ids(f, &street_commander, &filter, ids, 30), 10);
    assert_int_equal(list_ids(f, &firefighter, &filter, ids, 30), 0); /* outside G1 */
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.street_id = S3;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 10);
    assert_int_equal(list_ids(f, &community_commander, &filter, ids, 30), 0);
    filter.street_id = NULL;
    filter.community_id = C1;
    assert_int_equal(list_ids(f, &street_commander, &filter, ids, 30), 20);
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.has_severity = true;
    filter.severity = GW_SEVERITY_CRITICAL;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 10);
    filter.grid_id = G1;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 10);
    filter.grid_id = G2;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 0);
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.category = "fire";
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 5);
    assert_int_equal(ids[0], 5);
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.has_state = true;
    filter.state = GW_CASE_DISPATCHED;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 1);
    assert_int_equal(ids[0], 1);
    filter.state = GW_CASE_REPORTED;
    assert_int_equal(list_ids(f, &firefighter, &filter, ids, 30), 9);
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.overdue = 1;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 1);
    assert_int_equal(ids[0], 1);
    filter.overdue = 0;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 30), 29);

    /* Pages of 7 by the cursor: the whole list, in order, once. */
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.limit = 7;
    got = 0;
    do {
        n = list_ids(f, &district_commander, &filter, ids, 7);
        for (int i = 0; i < n; i++)
            assert_int_equal(ids[i], all[got + i]);
        got += n;
        if (n > 0)
            filter.before_id = ids[n - 1];
    } while (n == 7);
    assert_int_equal(got, 30);
    /* The limit is clamped to 1..500. */
    filter = (struct gw_case_filter)ANY_FILTER;
    filter.limit = 0;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 500), 1);
    filter.limit = 100000;
    assert_int_equal(list_ids(f, &district_commander, &filter, ids, 500), 30);
    assert_int_equal(gw_cases_list(f->cases, NULL, &filter, NULL), -EINVAL);
}

static int64_t elapsed_us(const struct timespec *a)
{
    struct timespec b;

    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000000 + (b.tv_nsec - a->tv_nsec) / 1000;
}

/* The plan SQLite makes of a query, its details joined by "; ". */
static void query_plan(const struct fixture *f, const char *sql, char *buf, size_t size)
{
    sqlite3 *db = db_open(f);
    sqlite3_stmt *stmt = NULL;
    char *explain;

    assert_true(asprintf(&explain, "EXPLAIN QUERY PLAN %s", sql) > 0);
    assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &stmt, NULL), SQLITE_OK);
    buf[0] = '\0';
    while (sqlite3_step(stmt) == SQLITE_ROW)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s; ", sqlite3_column_text(stmt, 3));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    free(explain);
}

/* A page of a grid, a street or a state among a million cases reads a
 * page's worth of rows through an index, not the table. */
static void test_list_uses_indexes(void **state)
{
    struct fixture *f = *state;
    struct gw_case_filter filter = { .overdue = -1, .limit = 50 };
    const struct gw_actor grid_viewer = {
        .name = "g", .role = GW_ACTOR_READONLY, .scope = GW_SCOPE_GRID, .scope_id = G3
    };
    struct store_case *list = NULL;
    struct timespec t;
    char plan[512];
    int64_t us;
    int n;

    /* 1,000,000 cases over 1,000 grids of 100 communities of 10 streets;
     * G3 holds one case in a thousand. */
    assert_int_equal(
        db_exec(f,
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)"
                " INSERT INTO cases (category, severity, state, title, grid_id, community_id,"
                " street_id, opened_at, updated_at, state_since)"
                " SELECT 'fire', 'minor', CASE WHEN i % 7 = 0 THEN 'closed' ELSE 'reported' END,"
                " 't', CASE WHEN i % 1000 = 0 THEN '" G3 "' ELSE 'g' || (i % 1000) END,"
                " CASE WHEN i % 1000 = 0 THEN '110101003010' ELSE 'c' || (i % 100) END,"
                " CASE WHEN i % 1000 = 0 THEN '" S3 "' ELSE 's' || (i % 10) END, i, i, i FROM n",
                NULL, 0),
        SQLITE_OK);

    clock_gettime(CLOCK_MONOTONIC, &t);
    n = gw_cases_list(f->cases, &grid_viewer, &filter, &list);
    us = elapsed_us(&t);
    assert_int_equal(n, 50);
    assert_int_equal(list[0].id, 1000000);
    assert_int_equal(list[49].id, 951000);
    gw_cases_free_list(list, n);
    if (us > 20000)
        fail_msg("a grid's page took %lld us", (long long)us);

    /* The next page, filtered by state and severity on top, in a street. */
    filter.before_id = 951000;
    filter.has_state = true;
    filter.state = GW_CASE_REPORTED;
    filter.street_id = S3;
    clock_gettime(CLOCK_MONOTONIC, &t);
    n = gw_cases_list(f->cases, &district_commander, &filter, &list);
    us = elapsed_us(&t);
    assert_int_equal(n, 50);
    assert_true(list[0].id < 951000);
    gw_cases_free_list(list, n);
    if (us > 20000)
        fail_msg("a street's page took %lld us", (long long)us);

    /* The plans of the queries store_case_list builds. */
    query_plan(f,
               "SELECT * FROM cases WHERE 1 AND grid_id = 'x' AND +street_id = 'y' AND "
               "+state = 'reported' AND id < 5 ORDER BY id DESC LIMIT 50",
               plan, sizeof(plan));
    if (!strstr(plan, "USING INDEX cases_by_grid (grid_id=? AND id<?)"))
        fail_msg("plan: %s", plan);
    assert_null(strstr(plan, "TEMP B-TREE"));
    query_plan(f, "SELECT * FROM cases WHERE 1 AND state = 'reported' ORDER BY id DESC LIMIT 50",
               plan, sizeof(plan));
    if (!strstr(plan, "USING INDEX cases_by_state (state=?)"))
        fail_msg("plan: %s", plan);
    assert_null(strstr(plan, "TEMP B-TREE"));
    query_plan(f,
               "SELECT * FROM cases WHERE 1 AND incident_id = 3 AND +grid_id = 'x'"
               " ORDER BY id DESC LIMIT 50",
               plan, sizeof(plan));
    assert_non_null(strstr(plan, "USING INDEX cases_by_incident (incident_id=?)"));
    query_plan(f,
               "SELECT id FROM cases WHERE deadline_at IS NOT NULL AND state NOT IN ("
               "'closed', 'cancelled') AND deadline_at <= 5 ORDER BY deadline_at LIMIT 5",
               plan, sizeof(plan));
    assert_non_null(strstr(plan, "USING INDEX cases_due"));
}

static void test_get_and_count(void **state)
{
    struct fixture *f = *state;
    struct store_case c;
    struct store_history *history = NULL;
    size_t n_history = 0;
    int64_t counts[GW_CASE_STATE_COUNT], overdue = -1;
    cJSON *trigger;

    assert_int_equal(apply(f, open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR,
                                          GW_ROLE_FIREFIGHTER, T0)),
                     0);
    report_in(f, &district_commander, G3, "safety", GW_SEVERITY_MINOR);
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + HOUR, 10, record, f), 1);

    assert_int_equal(gw_cases_get(f->cases, &firefighter, 1, &c, &history, &n_history), 0);
    assert_string_equal(c.rule, "fire.smoke");
    assert_string_equal(c.rule_file, "rules/smoke.lua:3");
    trigger = cJSON_Parse(c.trigger);
    assert_non_null(trigger);
    assert_string_equal(cJSON_GetObjectItem(trigger, "device")->valuestring, "smoke-0001");
    cJSON_Delete(trigger);
    assert_int_equal(n_history, 3);
    assert_string_equal(history[0].actor, "rule:fire.smoke");
    assert_false(history[0].has_from);
    assert_string_equal(history[0].rule_hash, HASH_V1);
    assert_non_null(history[0].trigger);
    assert_string_equal(history[1].actor, "gridgate:auto-dispatch");
    assert_null(history[1].trigger);
    assert_string_equal(history[2].actor, "gridgate:timer");
    assert_int_equal(history[2].at, T0 + HOUR);
    gw_cases_free_history(history, n_history);
    store_case_free_contents(&c);
    /* Without the history; outside the scope; no such case. */
    assert_int_equal(gw_cases_get(f->cases, &street_commander, 1, &c, NULL, NULL), 0);
    store_case_free_contents(&c);
    assert_int_equal(gw_cases_get(f->cases, &firefighter, 2, &c, &history, &n_history), -ENOENT);
    assert_int_equal(gw_cases_get(f->cases, &other_street_commander, 1, &c, NULL, NULL), -ENOENT);
    assert_int_equal(gw_cases_get(f->cases, &district_commander, 3, &c, NULL, NULL), -ENOENT);

    assert_int_equal(gw_cases_count_by_state(f->cases, &district_commander, counts, &overdue), 0);
    assert_int_equal(counts[GW_CASE_DISPATCHED], 1);
    assert_int_equal(counts[GW_CASE_REPORTED], 1);
    assert_int_equal(counts[GW_CASE_CLOSED], 0);
    assert_int_equal(overdue, 1);
    assert_int_equal(gw_cases_count_by_state(f->cases, &other_street_commander, counts, &overdue),
                     0);
    assert_int_equal(counts[GW_CASE_DISPATCHED], 0);
    assert_int_equal(counts[GW_CASE_REPORTED], 1);
    assert_int_equal(overdue, 0);
}

/* ---- figures ---- */

static void at(struct fixture *f, int64_t t) { f->now = T0 + t; }

static void transition_ok(struct fixture *f, enum gw_case_op op, int64_t id,
                          const struct gw_actor *actor)
{
    struct gw_case_request req = request(op, id, actor, "note");

    if (op == GW_OP_DISPATCH) {
        req.has_role = true;
        req.role = GW_ROLE_FIREFIGHTER;
    }
    if (act(f, req) != 0)
        fail_msg("%s of %lld failed", gw_case_op_name(op), (long long)id);
}

/* Eight cases whose every step is scripted (see the comments), figures
 * over [T0, T0 + 10h) counted by hand. */
static void script_figures(struct fixture *f, int64_t *ids)
{
    const struct gw_actor *boss = &district_commander;
    struct gw_case_request fail_verify;

    enum { A, B, C, D, E, F, G, H };
    at(f, -2 * HOUR);
    ids[D] = report_in(f, boss, G3, "safety", GW_SEVERITY_MINOR); /* opened before */
    at(f, -HOUR);
    transition_ok(f, GW_OP_DISPATCH, ids[D], boss); /* dispatched before: not due */
    at(f, 0);
    ids[A] = report_in(f, boss, G1, "safety", GW_SEVERITY_MAJOR);
    ids[B] = report_in(f, boss, G1, "fire", GW_SEVERITY_CRITICAL);
    ids[C] = report_in(f, boss, G2, "fire", GW_SEVERITY_CRITICAL);
    transition_ok(f, GW_OP_DISPATCH, ids[B], boss);
    at(f, MIN);
    transition_ok(f, GW_OP_DISPATCH, ids[C], boss);
    at(f, 2 * MIN);
    transition_ok(f, GW_OP_DEFER, ids[C], boss);
    /* D (due at 0) and B (due at 0:30) run over. */
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + 30 * MIN, 10, record, f), 2);
    at(f, 45 * MIN);
    transition_ok(f, GW_OP_FEEDBACK, ids[B], &firefighter);
    at(f, HOUR);
    transition_ok(f, GW_OP_DISPATCH, ids[A], boss);
    ids[E] = report_in(f, boss, G1, "safety", GW_SEVERITY_MINOR);
    transition_ok(f, GW_OP_DISPATCH, ids[E], boss);
    at(f, HOUR + 15 * MIN);
    transition_ok(f, GW_OP_VERIFY, ids[B], &supervisor);
    at(f, HOUR + 30 * MIN);
    transition_ok(f, GW_OP_FEEDBACK, ids[A], &firefighter);
    at(f, HOUR + 45 * MIN);
    transition_ok(f, GW_OP_EVALUATE, ids[B], boss);
    at(f, 2 * HOUR);
    transition_ok(f, GW_OP_VERIFY, ids[A], &supervisor);
    transition_ok(f, GW_OP_FEEDBACK, ids[E], &firefighter);
    ids[F] = report_in(f, boss, G1, "safety", GW_SEVERITY_MINOR);
    transition_ok(f, GW_OP_CLOSE, ids[B], boss);
    at(f, 2 * HOUR + MIN);
    transition_ok(f, GW_OP_CANCEL, ids[F], boss);
    at(f, 3 * HOUR);
    fail_verify = request(GW_OP_VERIFY, ids[E], &supervisor, "not done");
    fail_verify.pass = false;
    assert_int_equal(act(f, fail_verify), 0);
    transition_ok(f, GW_OP_EVALUATE, ids[A], boss);
    at(f, 4 * HOUR);
    transition_ok(f, GW_OP_CLOSE, ids[A], boss);
    /* D (due at 1:30) and E (reworked at 3:00, due at 4:00) run over. */
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + 5 * HOUR, 10, record, f), 2);
    at(f, 5 * HOUR);
    ids[H] = report_in(f, boss, G1, "fire", GW_SEVERITY_MAJOR);
    transition_ok(f, GW_OP_DISPATCH, ids[H], boss);
    at(f, 5 * HOUR + 30 * MIN);
    transition_ok(f, GW_OP_FEEDBACK, ids[H], &firefighter);
    at(f, 5 * HOUR + 40 * MIN);
    transition_ok(f, GW_OP_VERIFY, ids[H], &supervisor);
    at(f, 5 * HOUR + 50 * MIN);
    transition_ok(f, GW_OP_EVALUATE, ids[H], boss);
    at(f, 11 * HOUR); /* after the period */
    transition_ok(f, GW_OP_CLOSE, ids[H], boss);
    ids[G] = report_in(f, boss, G2, "safety", GW_SEVERITY_MINOR);
    transition_ok(f, GW_OP_DISPATCH, ids[G], boss);
}

struct expected {
    const char *key;
    int64_t opened, dispatched, deferred, closed, closed_on_time;
    int64_t urgent_due, urgent_deferred, urgent_closed, urgent_closed_on_time;
    int64_t reworked, overdue_now;
};

static void check_figures(const struct gw_case_figures *got, const struct expected *want)
{
    assert_string_equal(got->key, want->key);
    assert_int_equal(got->opened, want->opened);
    assert_int_equal(got->dispatched, want->dispatched);
    assert_int_equal(got->due, want->dispatched);
    assert_int_equal(got->deferred, want->deferred);
    assert_int_equal(got->closed, want->closed);
    assert_int_equal(got->closed_on_time, want->closed_on_time);
    assert_int_equal(got->urgent_due, want->urgent_due);
    assert_int_equal(got->urgent_deferred, want->urgent_deferred);
    assert_int_equal(got->urgent_closed, want->urgent_closed);
    assert_int_equal(got->urgent_closed_on_time, want->urgent_closed_on_time);
    assert_int_equal(got->reworked, want->reworked);
    assert_int_equal(got->overdue_now, want->overdue_now);
}

static void assert_mean(double got, double want_s)
{
    if (fabs(got - want_s) > 1e-6)
        fail_msg("mean %.9f s, expected %.9f s", got, want_s);
}

static void test_figures(void **state)
{
    struct fixture *f = *state;
    struct gw_case_figures *rows = NULL;
    int64_t ids[8];
    int n;

    script_figures(f, ids);

    n = gw_cases_figures(f->cases, &district_commander, GW_GROUP_DISTRICT, T0, T0 + 10 * HOUR,
                         T0 + 12 * HOUR, &rows);
    assert_int_equal(n, 1);
    /* opened A B C E F H; due A B C E H; C deferred; A B closed, A on
     * time; critical B C; E reworked; D E overdue now. */
    check_figures(&rows[0], &(struct expected){ "district", 6, 5, 1, 2, 1, 2, 1, 1, 0, 1, 2 });
    /* Stays that ended in the period (minutes): reported A 60, B 0, C 1,
     * E 0, F 1, H 0; dispatched A 30, B 45 (its escalation no end), C 1,
     * E 60, H 30; handled A 30, B 30, E 60, H 10; verified A 60, B 30,
     * H 10; evaluated A 60, B 15 (H's ended after the period). */
    assert_mean(rows[0].mean_step_s[GW_CASE_REPORTED], 62.0 / 6 * 60);
    assert_mean(rows[0].mean_step_s[GW_CASE_DISPATCHED], 166.0 / 5 * 60);
    assert_mean(rows[0].mean_step_s[GW_CASE_HANDLED], 130.0 / 4 * 60);
    assert_mean(rows[0].mean_step_s[GW_CASE_VERIFIED], 100.0 / 3 * 60);
    assert_mean(rows[0].mean_step_s[GW_CASE_EVALUATED], 75.0 / 2 * 60);
    assert_true(rows[0].mean_step_s[GW_CASE_CLOSED] < 0);
    assert_true(rows[0].mean_step_s[GW_CASE_DEFERRED] < 0);
    assert_true(rows[0].mean_step_s[GW_CASE_CANCELLED] < 0);
    gw_cases_free_figures(rows, n);

    n = gw_cases_figures(f->cases, &district_commander, GW_GROUP_STREET, T0, T0 + 10 * HOUR,
                         T0 + 12 * HOUR, &rows);
    assert_int_equal(n, 2);
    check_figures(&rows[0], &(struct expected){ S1, 6, 5, 1, 2, 1, 2, 1, 1, 0, 1, 1 });
    check_figures(&rows[1], &(struct expected){ S3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 });
    assert_true(rows[1].mean_step_s[GW_CASE_REPORTED] < 0); /* D's ended before */
    gw_cases_free_figures(rows, n);

    n = gw_cases_figures(f->cases, &district_commander, GW_GROUP_GRID, T0, T0 + 10 * HOUR,
                         T0 + 12 * HOUR, &rows);
    assert_int_equal(n, 3);
    check_figures(&rows[0], &(struct expected){ G1, 5, 4, 0, 2, 1, 1, 0, 1, 0, 1, 1 });
    check_figures(&rows[1], &(struct expected){ G2, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0 });
    check_figures(&rows[2], &(struct expected){ G3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 });
    assert_mean(rows[1].mean_step_s[GW_CASE_DISPATCHED], 60);
    gw_cases_free_figures(rows, n);

    /* Within a street's scope, by community: only its own. */
    n = gw_cases_figures(f->cases, &street_commander, GW_GROUP_COMMUNITY, T0, T0 + 10 * HOUR,
                         T0 + 12 * HOUR, &rows);
    assert_int_equal(n, 1);
    check_figures(&rows[0], &(struct expected){ C1, 6, 5, 1, 2, 1, 2, 1, 1, 0, 1, 1 });
    gw_cases_free_figures(rows, n);

    /* A later period: H closed then, on time; G's clock started. */
    n = gw_cases_figures(f->cases, &firefighter, GW_GROUP_DISTRICT, T0 + 10 * HOUR, T0 + 20 * HOUR,
                         T0 + 20 * HOUR, &rows);
    assert_int_equal(n, 1);
    check_figures(&rows[0], &(struct expected){ "district", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 });
    assert_mean(rows[0].mean_step_s[GW_CASE_EVALUATED], (11 * 60 - 350) * 60.0);
    gw_cases_free_figures(rows, n);

    /* Nothing in scope: still the district's row, all zero. */
    n = gw_cases_figures(f->cases, &grid_commander, GW_GROUP_DISTRICT, 0, 1, 1, &rows);
    assert_int_equal(n, 1);
    check_figures(&rows[0], &(struct expected){ "district", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 });
    gw_cases_free_figures(rows, n);
    n = gw_cases_figures(f->cases, &grid_commander, GW_GROUP_GRID, 0, 1, 1, &rows);
    assert_int_equal(n, 1); /* G1's overdue E */
    gw_cases_free_figures(rows, n);
    assert_int_equal(gw_cases_figures(f->cases, NULL, GW_GROUP_GRID, 0, 1, 1, &rows), -EINVAL);
}

/* ---- readers, reports, limits, failures ---- */

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    struct gw_cases_options options = { .db_path = f->db_path, .read_only = true };
    struct rule_action action =
        open_action("fire.smoke", "smoke-0001", GW_SEVERITY_MAJOR, GW_ROLE_FIREFIGHTER, T0);
    struct gw_case_report report = { .actor = &firefighter,
                                     .grid_id = G1,
                                     .category = "x",
                                     .title = "t",
                                     .severity = GW_SEVERITY_MINOR };
    struct gw_case_filter filter = ANY_FILTER;
    struct gw_case_request req = request(GW_OP_CANCEL, 1, &district_commander, "n");
    struct gw_case_figures *figures = NULL;
    int64_t counts[GW_CASE_STATE_COUNT], overdue, id = 0;
    struct store_case *list = NULL;
    struct gw_cases *ro;
    const char *why = NULL;
    char *error = NULL;
    char path[160];
    int n;

    /* No file yet: a reader does not create one. */
    snprintf(path, sizeof(path), "%s/none.db", f->dir);
    options.db_path = path;
    assert_null(gw_cases_open(&options, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, path));
    assert_non_null(strstr(error, "no case store"));
    free(error);
    error = NULL;
    assert_int_not_equal(access(path, F_OK), 0);

    options.db_path = f->db_path;
    report_in(f, &district_commander, G1, "safety", GW_SEVERITY_MINOR);
    ro = gw_cases_open(&options, &error);
    if (!ro)
        fail_msg("read-only open: %s", error);
    n = gw_cases_list(ro, &district_commander, &filter, &list);
    assert_int_equal(n, 1);
    gw_cases_free_list(list, n);
    /* It sees what the writer commits later. */
    report_in(f, &district_commander, G1, "safety", GW_SEVERITY_MINOR);
    n = gw_cases_list(ro, &district_commander, &filter, &list);
    assert_int_equal(n, 2);
    gw_cases_free_list(list, n);
    assert_int_equal(gw_cases_count_by_state(ro, &district_commander, counts, &overdue), 0);
    assert_int_equal(counts[GW_CASE_REPORTED], 2);
    n = gw_cases_figures(ro, &district_commander, GW_GROUP_GRID, 0, INT64_MAX, 0, &figures);
    assert_int_equal(n, 1);
    gw_cases_free_figures(figures, n);
    assert_int_equal(gw_cases_next_deadline(ro), 0);

    /* Every write is refused, and nothing is written. */
    forget_events(f);
    assert_int_equal(gw_cases_apply(ro, &action, f->reading, f->now, record, f), -EROFS);
    assert_int_equal(gw_cases_transition(ro, &req, f->now, record, f, NULL, &why), -EROFS);
    assert_non_null(why);
    why = NULL;
    assert_int_equal(gw_cases_report(ro, &report, f->now, record, f, &id, &why), -EROFS);
    assert_non_null(why);
    assert_int_equal(gw_cases_escalate_due(ro, f->now + HOUR, 10, record, f), -EROFS);
    assert_int_equal(gw_cases_begin(ro), -EROFS);
    assert_int_equal(gw_cases_save_last_seen(ro, f->reg), -EROFS);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 2);
    assert_int_equal(db_int(f, "SELECT max(version) FROM cases"), 1);
    gw_cases_close(ro);
    action_free(&action);

    /* With no writer left (its WAL and -shm gone), a reader still reads. */
    gw_cases_close(f->cases);
    f->cases = NULL;
    ro = gw_cases_open(&options, &error);
    if (!ro)
        fail_msg("read-only open without a writer: %s", error);
    n = gw_cases_list(ro, &district_commander, &filter, &list);
    assert_int_equal(n, 2);
    gw_cases_free_list(list, n);
    gw_cases_close(ro);
    open_district(f, &(struct district_options){ .auto_dispatch = true });

    /* A reader cannot migrate an old file. */
    assert_int_equal(db_exec(f, "PRAGMA user_version = 2", NULL, 0), SQLITE_OK);
    assert_null(gw_cases_open(&options, &error));
    assert_non_null(strstr(error, "schema version 2"));
    free(error);
}

static void test_report(void **state)
{
    struct fixture *f = *state;
    const struct gw_grid *g1 = gw_registry_grid(f->reg, G1);
    struct gw_case_report report = { .actor = &firefighter,
                                     .has_location = true,
                                     .lat = (g1->min_lat + g1->max_lat) / 2,
                                     .lon = (g1->min_lon + g1->max_lon) / 2,
                                     .category = "safety.exit",
                                     .title = "Blocked exit",
                                     .severity = GW_SEVERITY_MAJOR };
    const char *why = NULL;
    struct store_case c;
    int64_t id = 0;

    /* Placed by its location. */
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), 0);
    c = get_case(f, id);
    assert_string_equal(c.grid_id, G1);
    assert_true(c.has_location);
    assert_true(c.lat == report.lat && c.lon == report.lon);
    assert_int_equal(c.severity, GW_SEVERITY_MAJOR);
    assert_null(c.reporter);
    assert_string_equal(c.reported_by, "ff-001");
    store_case_free_contents(&c);

    /* Nowhere in the district; another grid than the reporter's. */
    report.lat = 0;
    report.lon = 0;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -ENOENT);
    assert_string_equal(why, "no grid at that location");
    report.has_location = false;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EINVAL);
    report.grid_id = G2;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -ENOENT);
    report.grid_id = "no-such-grid";
    report.actor = &district_commander;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -ENOENT);
    assert_string_equal(why, "no such grid");
    /* Roles that do not report. */
    report.grid_id = G2;
    for (size_t i = 0; i < 3; i++) {
        report.actor = (const struct gw_actor *const[]){ &operator_actor, &liaison, &reader }[i];
        assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EACCES);
    }
    /* What a report needs. */
    report.actor = &supervisor;
    report.grid_id = G1;
    report.title = "";
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EINVAL);
    assert_string_equal(why, "title is required");
    report.title = "t";
    report.category = NULL;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EINVAL);
    report.category = "c";
    report.severity = GW_SEVERITY_COUNT;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), -EINVAL);
    report.severity = GW_SEVERITY_INFO;
    assert_int_equal(gw_cases_report(f->cases, &report, f->now, record, f, &id, &why), 0);
    assert_int_equal(id, 2);
    assert_int_equal(f->n_events, 2);
    assert_int_equal(gw_cases_report(f->cases, NULL, f->now, record, f, &id, &why), -EINVAL);
}

static void test_limits_from_config(void **state)
{
    struct gw_config cfg;
    struct gw_case_limits limits;
    char *error = NULL;
    static const struct {
        const char *text;
        const char *error;
    } bad[] = {
        { "handled=2x", "cases.limits_major: handled=2x: not a duration" },
        { "dispatched=1h,reported=1h", "cases.limits_major: reported=1h: only dispatched, handled,"
                                       " verified and evaluated have limits" },
        { "archived=1h", "cases.limits_major: archived=1h: no such step" },
        { "dispatched", "cases.limits_major: dispatched: not step=duration" },
        { "handled=1h,handled=2h", "cases.limits_major: handled=2h: the step is given twice" },
        { "handled=-1h", "cases.limits_major: handled=-1h: not a duration" },
    };

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(gw_case_limits_from_config(NULL, &limits, &error), -EINVAL);
    cfg.cases.limits_critical = (char *)"dispatched=30m,handled=30m,verified=2h,evaluated=1d";
    cfg.cases.limits_major = (char *)"dispatched=2h, handled=1.5h";
    cfg.cases.limits_minor = (char *)"";
    cfg.cases.limits_info = NULL;
    assert_int_equal(gw_case_limits_from_config(&cfg, &limits, &error), 0);
    assert_null(error);
    assert_int_equal(limits.ns[GW_SEVERITY_CRITICAL][GW_CASE_DISPATCHED], 30 * MIN);
    assert_int_equal(limits.ns[GW_SEVERITY_CRITICAL][GW_CASE_EVALUATED], 24 * HOUR);
    assert_int_equal(limits.ns[GW_SEVERITY_MAJOR][GW_CASE_HANDLED], 90 * MIN);
    assert_int_equal(limits.ns[GW_SEVERITY_MAJOR][GW_CASE_VERIFIED], 0); /* left out: none */
    assert_int_equal(limits.ns[GW_SEVERITY_MINOR][GW_CASE_DISPATCHED], 0);
    assert_int_equal(limits.ns[GW_SEVERITY_INFO][GW_CASE_DISPATCHED], 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.cases.limits_major = (char *)bad[i].text;
        limits.ns[GW_SEVERITY_CRITICAL][GW_CASE_DISPATCHED] = 7;
        assert_int_equal(gw_case_limits_from_config(&cfg, &limits, &error), -EINVAL);
        assert_non_null(error);
        assert_string_equal(error, bad[i].error);
        assert_int_equal(limits.ns[GW_SEVERITY_CRITICAL][GW_CASE_DISPATCHED], 7); /* untouched */
        free(error);
        error = NULL;
    }
}

/* Schema version 2 as gridgate wrote it: version 1, then migration 2. */
static const char v2_upgrade[] =
    "ALTER TABLE cases ADD COLUMN rule_file TEXT;\n"
    "ALTER TABLE cases ADD COLUMN rule_hash TEXT;\n"
    "ALTER TABLE cases ADD COLUMN trigger_reading TEXT;\n"
    "ALTER TABLE case_history ADD COLUMN rule_hash TEXT;\n"
    "ALTER TABLE case_history ADD COLUMN trigger_reading TEXT;\n"
    "CREATE TABLE device_seen (device_id TEXT PRIMARY KEY, last_seen_at INTEGER NOT NULL)"
    " STRICT, WITHOUT ROWID;\n"
    "PRAGMA user_version = 2;\n";

static void test_migrate_from_version_2(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db = NULL;
    struct store_case c;
    char buf[256];

    assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v2_upgrade, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO cases (rule, subject, category, severity, state, title,"
                     " grid_id, community_id, street_id, device_id, assignee_role, assignee,"
                     " opened_at, updated_at, dispatched_at, deadline_at, rule_hash) VALUES"
                     " ('fire.smoke', 'smoke-0001', 'fire', 'major', 'dispatched', 'Smoke',"
                     " '" G1 "', '" C1 "', '" S1 "', 'smoke-0001', 'firefighter', '" G1_FIREFIGHTER
                     "', 5, 7, 6, 100, '" HASH_V1 "');"
                     "INSERT INTO cases (category, severity, state, title, grid_id, opened_at,"
                     " updated_at) VALUES ('x', 'minor', 'reported', 't', '" G2 "', 8, 9);"
                     "INSERT INTO device_seen VALUES ('smoke-0001', 42);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    open_district(f, &(struct district_options){ .auto_dispatch = true });
    assert_int_equal(db_int(f, "PRAGMA user_version"), 4);
    assert_string_equal(
        db_text(f,
                "SELECT group_concat(id || ':' || version || ',' || overdue || ',' ||"
                " overdue_count || ',' || return_count || ',' || state_since || ',' ||"
                " coalesce(first_dispatched_at, '-') || ',' || coalesce(incident_id, '-') ||"
                " ',' || coalesce(score, '-') || ',' || coalesce(lat, '-'), ' ') FROM cases",
                buf, sizeof(buf)),
        "1:1,0,0,0,7,6,-,-,- 2:1,0,0,0,9,-,-,-,-");
    assert_int_equal(db_int(f, "SELECT last_seen_at FROM device_seen"), 42);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name"
                               " IN ('cases_by_grid', 'cases_by_community', 'cases_by_street',"
                               " 'cases_by_state', 'cases_by_incident', 'cases_due',"
                               " 'cases_one_open')"),
                     7);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sqlite_master WHERE name = 'cases_grid'"), 0);
    /* The new checks hold. */
    assert_int_equal(db_exec(f, "UPDATE cases SET score = 6 WHERE id = 1", NULL, 0),
                     SQLITE_CONSTRAINT_CHECK);
    /* The old cases go on in the full loop. */
    c = get_case(f, 1);
    assert_int_equal(c.version, 1);
    assert_string_equal(c.rule_hash, HASH_V1);
    assert_int_equal(c.deadline_at, 100);
    store_case_free_contents(&c);
    assert_int_equal(act(f, request(GW_OP_FEEDBACK, 1, &firefighter, "done")), 0);
    assert_int_equal(f->events[0].version, 2);
    assert_int_equal(gw_cases_escalate_due(f->cases, f->now + 10 * HOUR, 10, record, f), 1);
    /* Case 2 has no street: inside the district only. */
    assert_int_equal(act(f, dispatch_request(2, &street_commander, GW_ROLE_POLICE)), -ENOENT);
    assert_int_equal(act(f, dispatch_request(2, &district_commander, GW_ROLE_POLICE)), 0);
}

/* A store failure inside a transition changes nothing and tells no one. */
static void test_transition_store_failure(void **state)
{
    struct fixture *f = *state;
    int64_t escalated;

    report_in(f, &firefighter, G1, "safety", GW_SEVERITY_MAJOR);
    forget_events(f);
    assert_int_equal(db_exec(f,
                             "CREATE TRIGGER test_fail BEFORE INSERT ON case_history "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                             NULL, 0),
                     SQLITE_OK);
    assert_int_equal(act(f, dispatch_request(1, &district_commander, GW_ROLE_FIREFIGHTER)), -EPERM);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT version FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT state = 'reported' FROM cases"), 1);
    assert_int_equal(db_exec(f, "DROP TRIGGER test_fail", NULL, 0), SQLITE_OK);
    assert_int_equal(act(f, dispatch_request(1, &district_commander, GW_ROLE_FIREFIGHTER)), 0);

    /* The timer's failure too: nothing escalated, the next call does it. */
    assert_int_equal(db_exec(f,
                             "CREATE TRIGGER test_fail BEFORE UPDATE OF escalation ON cases "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                             NULL, 0),
                     SQLITE_OK);
    forget_events(f);
    escalated = gw_cases_escalate_due(f->cases, T0 + HOUR, 10, record, f);
    assert_int_equal(escalated, -EPERM);
    assert_int_equal(f->n_events, 0);
    assert_int_equal(db_int(f, "SELECT overdue FROM cases"), 0);
    assert_int_equal(db_exec(f, "DROP TRIGGER test_fail", NULL, 0), SQLITE_OK);
    assert_int_equal(gw_cases_escalate_due(f->cases, T0 + HOUR, 10, record, f), 1);
}

/* ---- the InfluxDB outbox (schema version 4) ---- */

struct outbox_rows {
    int64_t ids[16];
    char text[16][64];
    int n;
    int stop_at; /* fn answers -ECANCELED at this row; 0: never */
};

static int outbox_row(int64_t id, const char *lines, size_t len, void *userdata)
{
    struct outbox_rows *rows = userdata;

    assert_true(rows->n < 16);
    if (rows->stop_at && rows->n + 1 == rows->stop_at)
        return -ECANCELED;
    assert_true(len < sizeof(rows->text[0]));
    assert_int_equal(strlen(lines), len);
    rows->ids[rows->n] = id;
    memcpy(rows->text[rows->n], lines, len);
    rows->text[rows->n][len] = '\0';
    rows->n++;
    return 0;
}

static void put_row(struct fixture *f, const char *lines)
{
    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(gw_cases_outbox_put(f->cases, lines, strlen(lines)), 0);
    assert_int_equal(gw_cases_commit(f->cases), 0);
}

static void test_outbox_put_read_delete(void **state)
{
    struct fixture *f = *state;
    struct outbox_rows rows = { .n = 0 };

    assert_int_equal(gw_cases_outbox_count(f->cases), 0);
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 10, 1 << 20, outbox_row, &rows), 0);
    put_row(f, "m a=1i 1\n");
    put_row(f, "m a=2i 2\nm a=3i 3\n");
    put_row(f, "m a=4i 4\n");
    assert_int_equal(gw_cases_outbox_count(f->cases), 3);

    /* All of them, in id order. */
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 10, 1 << 20, outbox_row, &rows), 3);
    assert_string_equal(rows.text[0], "m a=1i 1\n");
    assert_string_equal(rows.text[1], "m a=2i 2\nm a=3i 3\n");
    assert_string_equal(rows.text[2], "m a=4i 4\n");
    assert_true(rows.ids[0] < rows.ids[1] && rows.ids[1] < rows.ids[2]);

    /* After an id; bounded by rows; by bytes (but one row at least). */
    rows.n = 0;
    assert_int_equal(gw_cases_outbox_read(f->cases, rows.ids[0], 10, 1 << 20, outbox_row, &rows),
                     2);
    assert_string_equal(rows.text[0], "m a=2i 2\nm a=3i 3\n");
    rows.n = 0;
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 2, 1 << 20, outbox_row, &rows), 2);
    rows.n = 0;
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 10, 1, outbox_row, &rows), 1);
    rows.n = 0;
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 10, 10, outbox_row, &rows), 2);
    /* The callback's error stops the read and is its result. */
    rows = (struct outbox_rows){ .stop_at = 2 };
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 10, 1 << 20, outbox_row, &rows),
                     -ECANCELED);
    assert_int_equal(rows.n, 1);

    /* Deleting up to an id. */
    rows = (struct outbox_rows){ .n = 0 };
    assert_int_equal(gw_cases_outbox_read(f->cases, 0, 10, 1 << 20, outbox_row, &rows), 3);
    assert_int_equal(gw_cases_outbox_delete(f->cases, rows.ids[1]), 2);
    assert_int_equal(gw_cases_outbox_count(f->cases), 1);
    assert_int_equal(gw_cases_outbox_delete(f->cases, rows.ids[1]), 0);
    assert_int_equal(gw_cases_outbox_delete(f->cases, rows.ids[2]), 1);
    assert_int_equal(gw_cases_outbox_count(f->cases), 0);
    /* An emptied outbox never gives an id back: the feeder reads after the
     * last id it sent. */
    put_row(f, "m a=5i 5\n");
    rows.n = 0;
    assert_int_equal(gw_cases_outbox_read(f->cases, rows.ids[2], 10, 1 << 20, outbox_row, &rows),
                     1);
    assert_string_equal(rows.text[0], "m a=5i 5\n");
}

static void test_outbox_put_only_in_a_batch(void **state)
{
    struct fixture *f = *state;
    struct gw_cases_options options = { .db_path = f->db_path, .read_only = true };
    struct outbox_rows rows = { .n = 0 };
    struct gw_cases *ro;
    char *error = NULL;

    /* Alone it would be a transaction apart from the change it describes. */
    assert_int_equal(gw_cases_outbox_put(f->cases, "m a=1i 1\n", 9), -EINVAL);
    /* An empty row is refused. */
    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(gw_cases_outbox_put(f->cases, "", 0), -EINVAL);
    /* A rolled-back batch leaves no row, and no case. */
    assert_int_equal(gw_cases_outbox_put(f->cases, "m a=1i 1\n", 9), 0);
    assert_int_equal(apply(f, open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, -1, T0)), 0);
    assert_int_equal(gw_cases_outbox_count(f->cases), 1); /* seen inside it */
    gw_cases_rollback(f->cases);
    assert_int_equal(gw_cases_outbox_count(f->cases), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);
    /* Not while a batch is open: deletes are the feeder's own. */
    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(gw_cases_outbox_delete(f->cases, 100), -EINVAL);
    gw_cases_rollback(f->cases);

    put_row(f, "m a=1i 1\n");
    ro = gw_cases_open(&options, &error);
    assert_non_null(ro);
    assert_int_equal(gw_cases_outbox_count(ro), 1);
    assert_int_equal(gw_cases_outbox_read(ro, 0, 10, 1 << 20, outbox_row, &rows), 1);
    assert_int_equal(gw_cases_begin(ro), -EROFS);
    assert_int_equal(gw_cases_outbox_put(ro, "m a=1i 1\n", 9), -EROFS);
    assert_int_equal(gw_cases_outbox_delete(ro, 100), -EROFS);
    gw_cases_close(ro);
}

/* A failure inside the batch (the put refused by a trigger) rolls the
 * whole batch back: no case without its outbox row. */
static void test_outbox_failure_rolls_back(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(db_exec(f,
                             "CREATE TRIGGER outbox_fails BEFORE INSERT ON influx_outbox "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                             NULL, 0),
                     SQLITE_OK);
    assert_int_equal(gw_cases_begin(f->cases), 0);
    assert_int_equal(apply(f, open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, -1, T0)), 0);
    assert_true(gw_cases_outbox_put(f->cases, "m a=1i 1\n", 9) < 0);
    gw_cases_rollback(f->cases);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM influx_outbox"), 0);
}

struct open_counts {
    char text[512];
};

static int open_count_row(const char *street_id, const char *category, int64_t open,
                          int64_t overdue, void *userdata)
{
    struct open_counts *oc = userdata;
    size_t len = strlen(oc->text);

    snprintf(oc->text + len, sizeof(oc->text) - len, "%s/%s:%lld,%lld ", street_id, category,
             (long long)open, (long long)overdue);
    return 0;
}

static void test_open_counts(void **state)
{
    struct fixture *f = *state;
    struct open_counts oc = { "" };
    struct rule_action other = open_action("gas.leak", NULL, GW_SEVERITY_MINOR, -1, T0);

    assert_int_equal(gw_cases_open_counts(f->cases, open_count_row, &oc), 0);
    assert_string_equal(oc.text, "");
    assert_int_equal(apply(f, open_action("fire.smoke", NULL, GW_SEVERITY_MAJOR, -1, T0)), 0);
    assert_int_equal(apply(f, open_action("fire.smoke", "other", GW_SEVERITY_MAJOR, -1, T0)), 0);
    free(other.category);
    other.category = dup_or_null("gas");
    assert_int_equal(apply(f, other), 0);
    assert_int_equal(db_exec(f, "UPDATE cases SET overdue = 1 WHERE subject = 'other'", NULL, 0),
                     SQLITE_OK);
    /* A closed case and a case without a street count nowhere. */
    assert_int_equal(apply(f, open_action("fire.heat", NULL, GW_SEVERITY_MAJOR, -1, T0)), 0);
    assert_int_equal(
        db_exec(f, "UPDATE cases SET state = 'closed' WHERE rule = 'fire.heat'", NULL, 0),
        SQLITE_OK);
    assert_int_equal(db_exec(f,
                             "INSERT INTO cases (category, severity, state, title, grid_id,"
                             " opened_at, updated_at) VALUES ('x', 'minor', 'reported', 't',"
                             " 'g', 1, 1)",
                             NULL, 0),
                     SQLITE_OK);
    assert_int_equal(gw_cases_open_counts(f->cases, open_count_row, &oc), 0);
    assert_string_equal(oc.text, "110101001/fire:2,1 110101001/gas:1,0 ");
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
        cmocka_unit_test(test_op_names),
        cmocka_unit_test_setup_teardown(test_full_loop, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_transition_matrix_states, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_transition_matrix_roles, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_transition_escalation_level, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_transition_check_order, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_rework_by_verification, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_handled, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_return_defer_resume_cancel, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_self_closing_clear, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_grouping_and_lead_dispatch, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_escalation, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_batch_of_repeats, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_batch_parts, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_list_filters_cursor_scope, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_list_uses_indexes, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_get_and_count, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_figures, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup_district, teardown),
        cmocka_unit_test(test_limits_from_config),
        cmocka_unit_test_setup_teardown(test_migrate_from_version_2, setup_district_unopened,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transition_store_failure, setup_district, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_put_read_delete, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_put_only_in_a_batch, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_failure_rolls_back, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_open_counts, setup_open, teardown),
    };

    /* The failure tests make the store log on purpose. */
    gw_log_set_level(GW_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
