/* gw_case_json (cases as JSON, checked by parsing them back with cJSON)
 * and gw_casesvc (the one writer of cases) against a real SQLite file in
 * a temporary directory and the sample district. Every wait is bounded:
 * a broken service fails a test, it never hangs it. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "gw_case_json.h"
#include "gw_cases.h"
#include "gw_casesvc.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "store.h"

#define HASH "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/* 2026-11-28T09:00:00.123Z */
#define T0 ((int64_t)1795856400123000000)
#define WAIT_MS 10000
#define MAX_EVENTS 2048
#define MS ((int64_t)1000000)

/* ---- JSON ------------------------------------------------------------------ */

static cJSON *parse(const struct gw_buf *b)
{
    cJSON *json = cJSON_ParseWithLength(b->data, b->len);

    if (!json)
        fail_msg("not JSON: %s", b->data);
    return json;
}

static const char *str(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!cJSON_IsString(item))
        fail_msg("\"%s\" is not a string", key);
    return item->valuestring;
}

static double num(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!cJSON_IsNumber(item))
        fail_msg("\"%s\" is not a number", key);
    return item->valuedouble;
}

static bool is_null(const cJSON *obj, const char *key)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static bool has(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key) != NULL;
}

/* A case with every field set, text chosen to need escaping. */
/* store_case's strings are not const (a row from the store owns them);
 * the JSON writer only reads them, so literals are fine here. */
#define TEXT(s) ((char *)(s))

static struct store_case sample_case(void)
{
    return (struct store_case){
        .id = 42,
        .rule = TEXT("fire.smoke"),
        .subject = TEXT("smoke-000001"),
        .category = TEXT("fire.smoke"),
        .severity = GW_SEVERITY_CRITICAL,
        .state = GW_CASE_DISPATCHED,
        .title = TEXT("Smoke \"heavy\" in 3\\601\n\ttab \x01 东华门"),
        .detail = NULL,
        .grid_id = TEXT("110101001001001"),
        .community_id = TEXT("110101001001"),
        .street_id = TEXT("110101001"),
        .device_id = TEXT("smoke-000001"),
        .has_assignee_role = true,
        .assignee_role = GW_ROLE_FIREFIGHTER,
        .assignee = TEXT("许鹏丽"),
        .escalation = 1,
        .count = 7,
        .rework_count = 2,
        .first_seen_at = T0,
        .last_seen_at = T0 + 1000 * MS,
        .opened_at = T0,
        .updated_at = T0 + 2000 * MS,
        .dispatched_at = T0 + 5 * MS,
        .deadline_at = T0 + 1800000 * MS,
        .closed_at = 0,
        .cleared_at = 0,
        .rule_file = TEXT("rules/fire.lua:12"),
        .rule_hash = TEXT(HASH),
        .trigger = TEXT("{\"device\":\"smoke-000001\",\"channel\":\"telemetry\","
                        "\"ts\":1795856400123,\"fields\":{\"smoke\":0.31}}"),
        .version = 5,
        .overdue = true,
        .overdue_count = 1,
        .incident_id = 0,
        .score = 0,
        .return_count = 1,
        .reporter = NULL,
        .reported_by = NULL,
        .has_location = false,
        .first_dispatched_at = T0 + 5 * MS,
        .state_since = T0 + 5 * MS,
    };
}

static void test_case_json_fields(void **state)
{
    struct store_case c = sample_case();
    struct gw_buf b = GW_BUF_INIT;
    cJSON *json;

    (void)state;
    assert_int_equal(gw_case_json(&b, &c, 0), 0);
    json = parse(&b);
    assert_int_equal(num(json, "id"), 42);
    assert_int_equal(num(json, "version"), 5);
    assert_true(is_null(json, "incident_id"));
    assert_string_equal(str(json, "rule"), "fire.smoke");
    assert_string_equal(str(json, "subject"), "smoke-000001");
    assert_string_equal(str(json, "severity"), "critical");
    assert_string_equal(str(json, "state"), "dispatched");
    /* Quotes, backslashes, control characters and UTF-8 survive the trip. */
    assert_string_equal(str(json, "title"), c.title);
    assert_true(is_null(json, "detail"));
    assert_string_equal(str(json, "grid_id"), "110101001001001");
    assert_string_equal(str(json, "community_id"), "110101001001");
    assert_string_equal(str(json, "street_id"), "110101001");
    assert_string_equal(str(json, "device_id"), "smoke-000001");
    assert_string_equal(str(json, "assignee_role"), "firefighter");
    assert_string_equal(str(json, "assignee"), "许鹏丽");
    assert_int_equal(num(json, "escalation"), 1);
    assert_string_equal(str(json, "escalation_level"), "street");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(json, "overdue")));
    assert_int_equal(num(json, "count"), 7);
    assert_int_equal(num(json, "rework_count"), 2);
    assert_int_equal(num(json, "return_count"), 1);
    assert_true(is_null(json, "score"));
    assert_true(is_null(json, "reporter"));
    assert_true(is_null(json, "reported_by"));
    assert_true(is_null(json, "location"));
    assert_string_equal(str(json, "first_seen_at"), "2026-11-28T09:00:00.123Z");
    assert_string_equal(str(json, "last_seen_at"), "2026-11-28T09:00:01.123Z");
    assert_string_equal(str(json, "opened_at"), "2026-11-28T09:00:00.123Z");
    assert_string_equal(str(json, "updated_at"), "2026-11-28T09:00:02.123Z");
    assert_string_equal(str(json, "dispatched_at"), "2026-11-28T09:00:00.128Z");
    assert_string_equal(str(json, "first_dispatched_at"), "2026-11-28T09:00:00.128Z");
    assert_string_equal(str(json, "state_since"), "2026-11-28T09:00:00.128Z");
    assert_string_equal(str(json, "deadline_at"), "2026-11-28T09:30:00.123Z");
    assert_true(is_null(json, "closed_at"));
    assert_true(is_null(json, "cleared_at"));
    assert_string_equal(str(json, "rule_file"), "rules/fire.lua:12");
    assert_string_equal(str(json, "rule_hash"), HASH);
    /* Only asked for, the trigger. */
    assert_false(has(json, "trigger"));
    assert_int_equal(cJSON_GetArraySize(json), 38);
    cJSON_Delete(json);
    gw_buf_free(&b);
}

static void test_case_json_report_and_trigger(void **state)
{
    struct store_case c = sample_case();
    struct gw_buf b = GW_BUF_INIT;
    const cJSON *trigger, *location;
    cJSON *json;

    (void)state;
    c.rule = NULL;
    c.rule_file = NULL;
    c.rule_hash = NULL;
    c.has_assignee_role = false;
    c.assignee = NULL;
    c.escalation = 2;
    c.incident_id = 40;
    c.score = 4;
    c.reporter = TEXT("王 \"小\" 明 13800000000");
    c.reported_by = TEXT("ff-001");
    c.has_location = true;
    c.lat = 39.9772397;
    c.lon = 116.3711756;
    c.overdue = false;
    assert_int_equal(gw_buf_puts(&b, "prefix "), 0);
    assert_int_equal(gw_case_json(&b, &c, 1), 0);
    assert_memory_equal(b.data, "prefix ", 7);
    json = cJSON_Parse(b.data + 7);
    assert_non_null(json);
    assert_true(is_null(json, "rule"));
    assert_true(is_null(json, "assignee_role"));
    assert_true(is_null(json, "assignee"));
    assert_string_equal(str(json, "escalation_level"), "district");
    assert_int_equal(num(json, "incident_id"), 40);
    assert_int_equal(num(json, "score"), 4);
    assert_string_equal(str(json, "reporter"), c.reporter);
    assert_string_equal(str(json, "reported_by"), "ff-001");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(json, "overdue")));
    location = cJSON_GetObjectItem(json, "location");
    assert_true(cJSON_IsObject(location));
    assert_true(num(location, "lat") == 39.9772397);
    assert_true(num(location, "lon") == 116.3711756);
    trigger = cJSON_GetObjectItem(json, "trigger");
    assert_true(cJSON_IsObject(trigger));
    assert_string_equal(str(trigger, "device"), "smoke-000001");
    cJSON_Delete(json);

    /* Asked for but absent: null. */
    c.trigger = NULL;
    gw_buf_reset(&b);
    assert_int_equal(gw_case_json(&b, &c, 1), 0);
    json = parse(&b);
    assert_true(is_null(json, "trigger"));
    cJSON_Delete(json);
    gw_buf_free(&b);
}

static void test_case_json_time(void **state)
{
    struct gw_buf b = GW_BUF_INIT;

    (void)state;
    assert_int_equal(gw_case_json_time(&b, 0), 0);
    assert_string_equal(b.data, "null");
    gw_buf_reset(&b);
    assert_int_equal(gw_case_json_time(&b, T0 + 999999), 0);
    assert_string_equal(b.data, "\"2026-11-28T09:00:00.123Z\"");
    gw_buf_reset(&b);
    /* Before 1970 the milliseconds still round down. */
    assert_int_equal(gw_case_json_time(&b, -1), 0);
    assert_string_equal(b.data, "\"1969-12-31T23:59:59.999Z\"");
    gw_buf_free(&b);
}

static void test_history_json(void **state)
{
    const struct store_history rows[] = {
        {
            .case_id = 42,
            .at = T0,
            .actor = "rule:fire.smoke",
            .has_from = false,
            .to_state = GW_CASE_REPORTED,
            .note = NULL,
            .rule_hash = HASH,
            .trigger = "{\"device\":\"smoke-000001\",\"fields\":{}}",
        },
        {
            .case_id = 42,
            .at = T0 + MS,
            .actor = "commander:东城",
            .has_from = true,
            .from_state = GW_CASE_REPORTED,
            .to_state = GW_CASE_DISPATCHED,
            .note = "line one\nline \"two\"",
        },
    };
    struct gw_buf b = GW_BUF_INIT;
    const cJSON *first, *second;
    cJSON *json;

    (void)state;
    assert_int_equal(gw_case_history_json(&b, rows, 2), 0);
    json = parse(&b);
    assert_true(cJSON_IsArray(json));
    assert_int_equal(cJSON_GetArraySize(json), 2);
    first = cJSON_GetArrayItem(json, 0);
    second = cJSON_GetArrayItem(json, 1);
    assert_string_equal(str(first, "at"), "2026-11-28T09:00:00.123Z");
    assert_string_equal(str(first, "actor"), "rule:fire.smoke");
    assert_true(is_null(first, "from"));
    assert_string_equal(str(first, "to"), "reported");
    assert_true(is_null(first, "note"));
    assert_string_equal(str(first, "rule_hash"), HASH);
    assert_string_equal(str(cJSON_GetObjectItem(first, "trigger"), "device"), "smoke-000001");
    assert_string_equal(str(second, "actor"), "commander:东城");
    assert_string_equal(str(second, "from"), "reported");
    assert_string_equal(str(second, "to"), "dispatched");
    assert_string_equal(str(second, "note"), "line one\nline \"two\"");
    assert_true(is_null(second, "rule_hash"));
    assert_true(is_null(second, "trigger"));
    cJSON_Delete(json);

    gw_buf_reset(&b);
    assert_int_equal(gw_case_history_json(&b, NULL, 0), 0);
    assert_string_equal(b.data, "[]");
    gw_buf_free(&b);
}

static void test_event_json(void **state)
{
    struct store_case c = sample_case();
    struct gw_case_event event = {
        .kind = "escalated",
        .c = &c,
        .actor = "gridgate:timer",
        .has_from = true,
        .from = GW_CASE_DISPATCHED,
        .note = "over the 30m limit of dispatched: escalated to street",
        .ts_ns = T0 + 1800000 * MS,
    };
    struct gw_buf b = GW_BUF_INIT;
    const cJSON *kase;
    cJSON *json;

    (void)state;
    assert_int_equal(gw_case_event_json(&b, &event), 0);
    json = parse(&b);
    assert_string_equal(str(json, "event"), "escalated");
    assert_string_equal(str(json, "at"), "2026-11-28T09:30:00.123Z");
    assert_string_equal(str(json, "actor"), "gridgate:timer");
    assert_string_equal(str(json, "from"), "dispatched");
    assert_string_equal(str(json, "note"), event.note);
    kase = cJSON_GetObjectItem(json, "case");
    assert_true(cJSON_IsObject(kase));
    assert_int_equal(num(kase, "id"), 42);
    assert_string_equal(str(kase, "title"), c.title);
    /* Notices stay small: no trigger reading. */
    assert_false(has(kase, "trigger"));
    cJSON_Delete(json);

    event.kind = "opened";
    event.has_from = false;
    event.note = NULL;
    gw_buf_reset(&b);
    assert_int_equal(gw_case_event_json(&b, &event), 0);
    json = parse(&b);
    assert_true(is_null(json, "from"));
    assert_true(is_null(json, "note"));
    cJSON_Delete(json);
    gw_buf_free(&b);
}

static void test_json_string_escapes(void **state)
{
    static const struct {
        const char *in;
        const char *json; /* as written */
        const char *back; /* as a JSON reader gets it */
    } cases[] = {
        { "plain", "\"plain\"", "plain" },
        { "q\"b\\s/", "\"q\\\"b\\\\s/\"", "q\"b\\s/" },
        { "\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t" },
        { "\x01\x1f", "\"\\u0001\\u001f\"", "\x01\x1f" },
        { "东城区 €𝄞", "\"东城区 €𝄞\"", "东城区 €𝄞" },
        /* Not UTF-8: a lone continuation byte, an overlong form, a
         * surrogate: each becomes U+FFFD. */
        { "a\x80z", "\"a\\ufffdz\"", "a\xef\xbf\xbdz" },
        { "\xc0\xaf", "\"\\ufffd\\ufffd\"", "\xef\xbf\xbd\xef\xbf\xbd" },
        { "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"",
          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "", "\"\"", "" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_buf b = GW_BUF_INIT;
        cJSON *json;

        assert_int_equal(gw_buf_json_string(&b, cases[i].in), 0);
        assert_string_equal(b.data, cases[i].json);
        json = cJSON_Parse(b.data);
        assert_non_null(json);
        assert_string_equal(json->valuestring, cases[i].back);
        cJSON_Delete(json);
        gw_buf_free(&b);
    }
}

/* ---- the case service: fixture ----------------------------------------------- */

/* What on_event was told, copied: the event's pointers die with the call. */
struct seen_event {
    char kind[16];
    char actor[48];
    int64_t id;
    int64_t version;
    int64_t count;
    int escalation;
    bool overdue;
    enum gw_case_state state;
};

struct fixture {
    char dir[64];
    char db_path[128];
    struct gw_registry *reg;
    const struct gw_device *device;
    enum gw_role role; /* one the device's grid has on its roster */
    struct gw_casesvc *svc;

    pthread_mutex_t lock; /* the service's thread writes, the test reads */
    pthread_cond_t changed;
    struct seen_event events[MAX_EVENTS];
    size_t n_events;
    /* While hold is set, on_event waits (bounded) until it is cleared, so
     * a test can look at the world between a commit and its completion. */
    bool hold;
    bool held;
    uint64_t durable_in_event; /* gw_casesvc_durable(svc, 0) seen from on_event */
    int64_t rows_in_event;     /* cases visible to another connection then */
};

static int64_t db_int(const struct fixture *f, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *stmt;
    int64_t v = -1;

    assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

/* The rows of cases another connection sees, -1 on any error; no
 * assertions: it runs on the service's thread. */
static int64_t rows_seen_elsewhere(const struct fixture *f)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v = -1;

    if (sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM cases", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static void on_event(const struct gw_case_event *e, void *userdata)
{
    struct fixture *f = userdata;
    struct timespec until;

    pthread_mutex_lock(&f->lock);
    if (f->n_events < MAX_EVENTS) {
        struct seen_event *s = &f->events[f->n_events];

        snprintf(s->kind, sizeof(s->kind), "%s", e->kind);
        snprintf(s->actor, sizeof(s->actor), "%s", e->actor ? e->actor : "");
        s->id = e->c->id;
        s->version = e->c->version;
        s->count = e->c->count;
        s->escalation = e->c->escalation;
        s->overdue = e->c->overdue;
        s->state = e->c->state;
    }
    f->n_events++;
    if (f->hold && !f->held) {
        f->held = true;
        pthread_mutex_unlock(&f->lock);
        /* Outside the fixture's lock: these take their own. */
        uint64_t durable = gw_casesvc_durable(f->svc, 0);
        int64_t rows = rows_seen_elsewhere(f);
        pthread_mutex_lock(&f->lock);
        f->durable_in_event = durable;
        f->rows_in_event = rows;
        pthread_cond_broadcast(&f->changed);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += WAIT_MS / 1000;
        while (f->hold && pthread_cond_timedwait(&f->changed, &f->lock, &until) == 0)
            ;
    }
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *error = NULL;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/gw-test-casesvc-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db_path, sizeof(f->db_path), "%s/cases.db", f->dir);
    f->reg = gw_registry_load(GW_SOURCE_DIR "/config/district/grids.geojson",
                              GW_SOURCE_DIR "/config/district/devices.csv", &error);
    if (!f->reg)
        fail_msg("gw_registry_load: %s", error ? error : "(no message)");
    f->device = gw_registry_device_at(f->reg, 0);
    f->role = GW_ROLE_COUNT;
    for (int r = 0; r < GW_ROLE_COUNT && f->role == GW_ROLE_COUNT; r++)
        if (f->device->grid->roster[r])
            f->role = (enum gw_role)r;
    assert_true(f->role != GW_ROLE_COUNT);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->changed, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    gw_casesvc_free(f->svc);
    gw_registry_free(f->reg);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->changed);
    assert_int_equal(nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

/* A service on the fixture's file; limit_ms gives every severity that
 * time limit for each step (0: none); the timer scans every interval_ms. */
static void new_service_timer(struct fixture *f, unsigned n_workers, int64_t limit_ms,
                              int interval_ms)
{
    struct gw_casesvc_options options = {
        .cases = {
            .db_path = f->db_path,
            .auto_dispatch = true,
            .reg = f->reg,
        },
        .n_workers = n_workers,
        .batch_max = 64,
        .timer_interval_ms = interval_ms,
        .on_event = on_event,
        .userdata = f,
    };
    char *error = NULL;

    for (int sev = 0; sev < GW_SEVERITY_COUNT; sev++) {
        options.cases.limits.ns[sev][GW_CASE_DISPATCHED] = limit_ms * MS;
        options.cases.limits.ns[sev][GW_CASE_HANDLED] = limit_ms * MS;
    }
    f->svc = gw_casesvc_new(&options, &error);
    if (!f->svc)
        fail_msg("gw_casesvc_new: %s", error ? error : "(no message)");
}

static void new_service(struct fixture *f, unsigned n_workers, int64_t limit_ms)
{
    new_service_timer(f, n_workers, limit_ms, 20);
}

static char *xdup(const char *s)
{
    char *copy = s ? strdup(s) : NULL;

    if (s)
        assert_non_null(copy);
    return copy;
}

/* An open_case of rule for subject; the service will own its strings. */
static struct rule_action open_action(const char *rule, const char *subject, bool with_role,
                                      enum gw_role role)
{
    return (struct rule_action){
        .kind = RULE_ACTION_OPEN_CASE,
        .rule = xdup(rule),
        .file = xdup("rules/test.lua:1"),
        .file_hash = xdup(HASH),
        .subject = xdup(subject),
        .ts_ns = gw_now_ns(),
        .category = xdup("test.alarm"),
        .severity = GW_SEVERITY_MINOR,
        .has_role = with_role,
        .role = role,
        .title = xdup("test alarm"),
    };
}

static struct gw_reading *new_reading(const struct fixture *f)
{
    struct gw_reading *r = gw_reading_new(f->device->id, GW_CHANNEL_TELEMETRY, gw_now_ns());

    assert_non_null(r);
    r->device = f->device;
    assert_int_equal(gw_reading_add_number(r, "smoke", 0.3), 0);
    return r;
}

static void submit(struct fixture *f, unsigned worker, uint64_t seq, struct rule_action action)
{
    struct gw_reading *reading = new_reading(f);

    assert_int_equal(gw_casesvc_submit(f->svc, worker, seq, &action, reading), 0);
    /* Moved out: the caller's copy is empty. */
    assert_null(action.rule);
    assert_null(action.subject);
    gw_reading_unref(reading);
}

static bool durable_reaches(struct fixture *f, unsigned worker, uint64_t seq)
{
    for (int i = 0; i < WAIT_MS / 5; i++) {
        if (gw_casesvc_durable(f->svc, worker) >= seq)
            return true;
        usleep(5000);
    }
    return false;
}

static size_t n_events(struct fixture *f)
{
    size_t n;

    pthread_mutex_lock(&f->lock);
    n = f->n_events;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static size_t count_kind(struct fixture *f, const char *kind)
{
    size_t n = 0;

    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n_events && i < MAX_EVENTS; i++)
        n += strcmp(f->events[i].kind, kind) == 0;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* The index of the first event of kind at or after from, or -1 once
 * WAIT_MS has passed without one. */
static int wait_event(struct fixture *f, const char *kind, size_t from)
{
    struct timespec until;
    int found = -1;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        for (size_t i = from; i < f->n_events && i < MAX_EVENTS && found < 0; i++)
            if (strcmp(f->events[i].kind, kind) == 0)
                found = (int)i;
        if (found >= 0 || pthread_cond_timedwait(&f->changed, &f->lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&f->lock);
    return found;
}

/* CPU time the whole process used so far. */
static int64_t cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the case service: tests ------------------------------------------------------ */

#define STORM_SUBJECTS 5
#define STORM_PER_WORKER 200

struct storm {
    struct fixture *f;
    unsigned worker;
};

static void *storm_main(void *arg)
{
    struct storm *s = arg;
    char subject[32];

    for (uint64_t seq = 1; seq <= STORM_PER_WORKER; seq++) {
        snprintf(subject, sizeof(subject), "subject-%d", (int)(seq % STORM_SUBJECTS));
        submit(s->f, s->worker, seq, open_action("test.storm", subject, false, GW_ROLE_MANAGER));
    }
    return NULL;
}

/* Two workers submitting at once for the same five subjects make five
 * cases, each counted once per action: one writer, no lost update. */
static void test_storm_from_two_workers(void **state)
{
    struct fixture *f = *state;
    struct storm storms[2] = { { f, 0 }, { f, 1 } };
    pthread_t threads[2];
    struct gw_casesvc_stats st;

    new_service(f, 2, 0);
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, storm_main, &storms[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    assert_true(durable_reaches(f, 0, STORM_PER_WORKER));
    assert_true(durable_reaches(f, 1, STORM_PER_WORKER));

    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.commands, 2 * STORM_PER_WORKER);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.queued, 0);
    assert_true(st.batches >= 1 && st.batches <= 2 * STORM_PER_WORKER);
    assert_int_equal(count_kind(f, "opened"), STORM_SUBJECTS);
    assert_int_equal(count_kind(f, "updated"), 2 * STORM_PER_WORKER - STORM_SUBJECTS);
    assert_int_equal(st.events, n_events(f));
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), STORM_SUBJECTS);
    assert_int_equal(db_int(f, "SELECT count(DISTINCT count) FROM cases"), 1);
    assert_int_equal(db_int(f, "SELECT min(count) FROM cases"),
                     2 * STORM_PER_WORKER / STORM_SUBJECTS);
}

/* A worker's position becomes durable only once its batch is committed:
 * nothing while queued, nothing while the committed batch's events are
 * being told, everything after. */
static void test_durable_after_commit(void **state)
{
    struct fixture *f = *state;

    new_service(f, 1, 0);
    submit(f, 0, 5, open_action("test.durable", "a", false, GW_ROLE_MANAGER));
    submit(f, 0, 7, open_action("test.durable", "b", false, GW_ROLE_MANAGER));
    submit(f, 0, 7, open_action("test.durable", "c", false, GW_ROLE_MANAGER));
    /* Queued, not started: nothing is written, and no position from 5 on
     * is durable (those before had no action pending). */
    assert_int_equal(gw_casesvc_durable(f->svc, 0), 4);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);

    pthread_mutex_lock(&f->lock);
    f->hold = true;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    assert_true(wait_event(f, "opened", 0) >= 0);
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < WAIT_MS / 5 && f->rows_in_event == 0; i++) {
        pthread_mutex_unlock(&f->lock);
        usleep(5000);
        pthread_mutex_lock(&f->lock);
    }
    /* Told after the commit (another connection sees the rows), the
     * position not yet advanced. */
    assert_int_equal(f->rows_in_event, 3);
    assert_int_equal(f->durable_in_event, 4);
    f->hold = false;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);

    assert_true(durable_reaches(f, 0, 7));
    assert_int_equal(gw_casesvc_durable(f->svc, 0), 7);
    /* Bad worker ids are nobody's. */
    assert_int_equal(gw_casesvc_durable(f->svc, 1), 0);
}

/* An action the loop refuses (a shadow rule's) is given up on: counted
 * failed, and its position durable all the same, so the worker moves on. */
static void test_refused_action_is_durable(void **state)
{
    struct fixture *f = *state;
    struct rule_action action = open_action("test.shadow", "x", false, GW_ROLE_MANAGER);
    struct gw_casesvc_stats st;

    action.shadow = true;
    new_service(f, 1, 0);
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    submit(f, 0, 3, action);
    assert_true(durable_reaches(f, 0, 3));
    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.commands, 0);
    assert_int_equal(n_events(f), 0);
}

/* The API's transition goes through the queue, is answered once
 * committed with the new version, and its events come after the ones
 * before it, in order. */
static void test_transition_through_service(void **state)
{
    struct fixture *f = *state;
    struct gw_actor commander = {
        .name = "commander:test",
        .role = GW_ACTOR_COMMANDER,
        .scope = GW_SCOPE_DISTRICT,
    };
    struct gw_case_request request = {
        .op = GW_OP_DISPATCH,
        .actor = &commander,
        .has_role = true,
    };
    char why[128] = "";
    int64_t version = 0, id, opened_version;
    int opened, dispatched;
    size_t before;

    new_service(f, 1, 0);
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    /* No role named: the case waits, reported, for a commander. */
    submit(f, 0, 1, open_action("test.api", "door-1", false, GW_ROLE_MANAGER));
    assert_true(durable_reaches(f, 0, 1));
    opened = wait_event(f, "opened", 0);
    assert_true(opened >= 0);
    pthread_mutex_lock(&f->lock);
    id = f->events[opened].id;
    opened_version = f->events[opened].version;
    assert_int_equal(f->events[opened].state, GW_CASE_REPORTED);
    before = f->n_events;
    pthread_mutex_unlock(&f->lock);

    request.case_id = id;
    request.role = f->role;
    request.version = opened_version;
    assert_int_equal(gw_casesvc_transition(f->svc, &request, &version, why, sizeof(why)), 0);
    assert_true(version > opened_version);
    /* Answered after its events were told. */
    dispatched = wait_event(f, "dispatched", before);
    assert_true(dispatched >= 0);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->events[dispatched].id, id);
    assert_int_equal(f->events[dispatched].version, version);
    assert_int_equal(f->events[dispatched].state, GW_CASE_DISPATCHED);
    assert_string_equal(f->events[dispatched].actor, "commander:test");
    pthread_mutex_unlock(&f->lock);

    /* The version moved on: stale, with a sentence for the API. */
    assert_int_equal(gw_casesvc_transition(f->svc, &request, &version, why, sizeof(why)),
                     -ESTALE);
    assert_true(why[0] != '\0');
    /* No version check, wrong state. */
    request.version = 0;
    why[0] = '\0';
    assert_int_equal(gw_casesvc_transition(f->svc, &request, NULL, why, sizeof(why)), -EBUSY);
    assert_true(why[0] != '\0');
    /* No such case. */
    request.case_id = id + 1000;
    assert_int_equal(gw_casesvc_transition(f->svc, &request, NULL, why, sizeof(why)), -ENOENT);
}

/* A step past its (tiny) limit is escalated by the timer, once per level,
 * up to the district, and then left overdue. The timer wakes at the
 * deadline, not only at its (here long) periodic scan. */
static void test_timer_escalates(void **state)
{
    struct fixture *f = *state;
    struct gw_casesvc_stats st;
    int64_t t0, took, cpu0;
    int first, second;

    new_service_timer(f, 1, 100, 60000);
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    t0 = gw_monotonic_ns();
    submit(f, 0, 1, open_action("test.timer", "gas-1", true, f->role));
    assert_true(wait_event(f, "dispatched", 0) >= 0);
    first = wait_event(f, "escalated", 0);
    assert_true(first >= 0);
    second = wait_event(f, "escalated", (size_t)first + 1);
    assert_true(second >= 0);
    took = gw_monotonic_ns() - t0;
    /* Two limits of 100 ms, each woken for at its deadline. */
    assert_true(took >= 200 * MS);
    assert_true(took < 2000 * MS);
    pthread_mutex_lock(&f->lock);
    assert_string_equal(f->events[first].actor, "gridgate:timer");
    assert_int_equal(f->events[first].escalation, 1);
    assert_true(f->events[first].overdue);
    assert_int_equal(f->events[first].state, GW_CASE_DISPATCHED);
    assert_int_equal(f->events[second].escalation, 2);
    pthread_mutex_unlock(&f->lock);
    /* At the district there is no one higher: no more timers, and the
     * service idles (no busy loop around a passed deadline). */
    cpu0 = cpu_ns();
    usleep(300 * 1000);
    assert_true(cpu_ns() - cpu0 < 100 * MS);
    assert_int_equal(count_kind(f, "escalated"), 2);
    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.escalated, 2);
}

/* Stopping carries out everything queued first; afterwards nothing is
 * taken, and what was refused is still the caller's. */
static void test_stop_drains(void **state)
{
    struct fixture *f = *state;
    struct gw_casesvc_stats st;
    struct rule_action late = open_action("test.drain", "late", false, GW_ROLE_MANAGER);
    struct gw_reading *reading = new_reading(f);
    struct gw_case_request request = { .op = GW_OP_CLOSE, .case_id = 1 };
    char why[128] = "";
    char subject[32];

    new_service(f, 1, 0);
    for (uint64_t seq = 1; seq <= 300; seq++) {
        snprintf(subject, sizeof(subject), "s-%d", (int)(seq % 7));
        submit(f, 0, seq, open_action("test.drain", subject, false, GW_ROLE_MANAGER));
    }
    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.queued, 300);
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    gw_casesvc_stop(f->svc);

    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.commands, 300);
    assert_int_equal(gw_casesvc_durable(f->svc, 0), 300);
    assert_int_equal(db_int(f, "SELECT sum(count) FROM cases"), 300);
    assert_int_equal(count_kind(f, "opened"), 7);

    assert_int_equal(gw_casesvc_submit(f->svc, 0, 301, &late, reading), -ESHUTDOWN);
    assert_string_equal(late.subject, "late");
    rule_action_free_contents(&late);
    gw_reading_unref(reading);
    assert_int_equal(gw_casesvc_transition(f->svc, &request, NULL, why, sizeof(why)),
                     -ESHUTDOWN);
    assert_string_equal(why, "the gateway is stopping");
}

/* A service never started answers its queue as refused when freed: no
 * call waits forever, no action leaks. */
static void test_free_unstarted(void **state)
{
    struct fixture *f = *state;

    new_service(f, 1, 0);
    submit(f, 0, 1, open_action("test.unstarted", "u", false, GW_ROLE_MANAGER));
    gw_casesvc_free(f->svc);
    f->svc = NULL;
    assert_int_equal(n_events(f), 0);
}

/* ---- the outbox ------------------------------------------------------------------ */

/* A formatter that writes one line per event, "ev,kind=K id=Ni N\n" (no
 * line protocol needed here), and fails as told. */
struct formatter {
    int fail_first; /* calls that answer fail_with before the rest succeed */
    int fail_with;
    int calls;
};

static struct formatter formatter;

static int format_event(const struct gw_case_event *e, struct gw_buf *lines, void *userdata)
{
    (void)userdata;
    if (formatter.calls++ < formatter.fail_first)
        return formatter.fail_with;
    return gw_buf_printf(lines, "ev,kind=%s id=%lldi %lld\n", e->kind, (long long)e->c->id,
                         (long long)e->ts_ns);
}

static void new_outbox_service(struct fixture *f, unsigned n_workers)
{
    struct gw_casesvc_options options = {
        .cases = { .db_path = f->db_path, .auto_dispatch = true, .reg = f->reg },
        .n_workers = n_workers,
        .batch_max = 64,
        .timer_interval_ms = 20,
        .on_event = on_event,
        .format_event = format_event,
        .userdata = f,
    };
    char *error = NULL;

    f->svc = gw_casesvc_new(&options, &error);
    if (!f->svc)
        fail_msg("gw_casesvc_new: %s", error ? error : "(no message)");
}

#define OUTBOX_LINES                                                                               \
    "SELECT coalesce(sum(length(lines) - length(replace(lines, char(10), ''))), 0)"             \
    " FROM influx_outbox"

/* Every event's line is in the outbox once its change is durable, in the
 * same transaction; emit lines too, and they hold the worker's position
 * back until then. */
static void test_outbox_events_and_emits(void **state)
{
    struct fixture *f = *state;
    struct gw_casesvc_stats st;
    static const char emits[] = "custom,device=d v=1i 1\ncustom,device=d v=2i 2\n";

    formatter = (struct formatter){ 0 };
    new_outbox_service(f, 1);
    submit(f, 0, 3, open_action("test.outbox", "a", false, GW_ROLE_MANAGER));
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 0, 4, emits, strlen(emits)), 0);
    submit(f, 0, 5, open_action("test.outbox", "a", false, GW_ROLE_MANAGER));
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 0, 6, emits, strlen(emits)), 0);
    /* Queued: nothing is durable from 3 on, nothing is written. */
    assert_int_equal(gw_casesvc_durable(f->svc, 0), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM influx_outbox"), 0);

    assert_int_equal(gw_casesvc_start(f->svc), 0);
    assert_true(durable_reaches(f, 0, 6));
    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.commands, 4);
    /* opened + updated, and the four emit lines. */
    assert_int_equal(n_events(f), 2);
    assert_int_equal(db_int(f, OUTBOX_LINES), 2 + 4);
    assert_int_equal(st.outbox_lines, 2 + 4);
    assert_int_equal(db_int(f, "SELECT count(*) FROM influx_outbox"), (int64_t)st.outbox_rows);
    assert_int_equal(gw_casesvc_outbox_rows(f->svc), st.outbox_rows);
    assert_int_equal(db_int(f, "SELECT count(*) FROM influx_outbox WHERE lines LIKE"
                               " '%ev,kind=opened id=1i %'"),
                     1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM influx_outbox WHERE lines LIKE"
                               " '%ev,kind=updated id=1i %'"),
                     1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM influx_outbox WHERE lines LIKE"
                               " '%custom,device=d v=2i 2%'"),
                     st.outbox_rows == 1 ? 1 : 2);
    gw_casesvc_stop(f->svc);
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 0, 7, emits, strlen(emits)), -ESHUTDOWN);
}

static void test_outbox_submit_lines_checks(void **state)
{
    struct fixture *f = *state;

    new_outbox_service(f, 1);
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 0, 1, "", 0), -EINVAL);
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 0, 1, "m v=1i 1", 8), -EINVAL);
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 1, 1, "m v=1i 1\n", 9), -EINVAL);
    assert_int_equal(gw_casesvc_submit_lines(f->svc, 0, 1, "m v=1i\0 1\n", 10), -EINVAL);
    /* Nothing pending: the position is free to move. */
    assert_int_equal(gw_casesvc_durable(f->svc, 0), 0);
}

/* A line that cannot be made for lack of memory undoes the batch: the
 * commands run again one by one, and in the end every event has its one
 * line and no change is without it. */
static void test_outbox_nomem_rolls_back(void **state)
{
    struct fixture *f = *state;
    struct gw_casesvc_stats st;

    formatter = (struct formatter){ .fail_first = 1, .fail_with = -ENOMEM };
    new_outbox_service(f, 1);
    submit(f, 0, 1, open_action("test.nomem", "a", false, GW_ROLE_MANAGER));
    submit(f, 0, 2, open_action("test.nomem", "b", false, GW_ROLE_MANAGER));
    submit(f, 0, 3, open_action("test.nomem", "c", false, GW_ROLE_MANAGER));
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    assert_true(durable_reaches(f, 0, 3));
    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.failed, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 3);
    assert_int_equal(n_events(f), 3);
    assert_int_equal(db_int(f, OUTBOX_LINES), 3);
    assert_int_equal(db_int(f, "SELECT count(DISTINCT lines) FROM influx_outbox"),
                     db_int(f, "SELECT count(*) FROM influx_outbox"));
    /* One transaction per command after the failed batch. */
    assert_int_equal(st.outbox_rows, 3);
}

/* An event the formatter cannot express has no line; its change stands. */
static void test_outbox_unformattable_event(void **state)
{
    struct fixture *f = *state;

    formatter = (struct formatter){ .fail_first = 1, .fail_with = -EINVAL };
    new_outbox_service(f, 1);
    submit(f, 0, 1, open_action("test.bad", "a", false, GW_ROLE_MANAGER));
    submit(f, 0, 2, open_action("test.bad", "a", false, GW_ROLE_MANAGER));
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    assert_true(durable_reaches(f, 0, 2));
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(n_events(f), 2);
    assert_int_equal(db_int(f, OUTBOX_LINES), 1);
}

/* A store that refuses the outbox row (a trigger here) refuses the change
 * with it: no case without its line. */
static void test_outbox_put_failure_refuses_change(void **state)
{
    struct fixture *f = *state;
    struct gw_casesvc_stats st;
    sqlite3 *db;

    formatter = (struct formatter){ 0 };
    new_outbox_service(f, 1);
    assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER outbox_fails BEFORE INSERT ON influx_outbox "
                                  "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    submit(f, 0, 1, open_action("test.refused", "a", false, GW_ROLE_MANAGER));
    assert_int_equal(gw_casesvc_start(f->svc), 0);
    assert_true(durable_reaches(f, 0, 1));
    gw_casesvc_stats(f->svc, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM cases"), 0);
    assert_int_equal(n_events(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_json_fields),
        cmocka_unit_test(test_case_json_report_and_trigger),
        cmocka_unit_test(test_case_json_time),
        cmocka_unit_test(test_history_json),
        cmocka_unit_test(test_event_json),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test_setup_teardown(test_storm_from_two_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_action_is_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transition_through_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_escalates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_unstarted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_events_and_emits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_submit_lines_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_nomem_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_unformattable_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_put_failure_refuses_change, setup, teardown),
    };

    gw_log_set_level(GW_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
