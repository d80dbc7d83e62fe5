/* Unit tests of the rule engine: loading, matching, actions, the sandbox
 * and its limits, events, silences, windows and held timers, provenance,
 * failure isolation, reloads, and the shipped rule set. Rule files are
 * written to temporary directories under /tmp and removed afterwards. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_domain.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "rule_sha256.h"

#define TS_NS 1700000000123000000LL /* 2023-11-14T22:13:20.123Z */

/* ---- district fixture --------------------------------------------------- */

static struct gw_grid grid_home;    /* residential, routine */
static struct gw_grid grid_mall;    /* crowded, attention */
static struct gw_device dev_smoke;  /* smoke detector at home */
static struct gw_device dev_smoke2; /* smoke detector in the mall */
static struct gw_device dev_door;   /* door sensor at home */

static void grid_init(struct gw_grid *g, const char *id, const char *name, enum gw_grid_type type,
                      enum gw_grid_level level, const char *firefighter)
{
    memset(g, 0, sizeof(*g));
    g->id = strdup(id);
    g->name = strdup(name);
    g->community_id = strndup(id, 12);
    g->community = strdup("多福巷社区");
    g->street_id = strndup(id, 9);
    g->street = strdup("东华门街道");
    g->type = type;
    g->level = level;
    g->roster[GW_ROLE_MANAGER] = strdup("李管理");
    g->roster[GW_ROLE_FIREFIGHTER] = strdup(firefighter);
}

static void grid_clear(struct gw_grid *g)
{
    free(g->id);
    free(g->name);
    free(g->community_id);
    free(g->community);
    free(g->street_id);
    free(g->street);
    for (int i = 0; i < GW_ROLE_COUNT; i++)
        free(g->roster[i]);
}

static void device_init(struct gw_device *d, const char *id, const char *type,
                        const struct gw_grid *g)
{
    memset(d, 0, sizeof(*d));
    d->id = strdup(id);
    d->type = strdup(type);
    d->grid = g;
}

static void device_clear(struct gw_device *d)
{
    free(d->id);
    free(d->type);
    free(d->label);
}

static int group_setup(void **state)
{
    (void)state;
    grid_init(&grid_home, "110101001001001", "多福巷第1网格", GW_GRID_RESIDENTIAL, GW_LEVEL_ROUTINE,
              "王消防");
    grid_init(&grid_mall, "110101002003004", "王府井商场网格", GW_GRID_CROWDED, GW_LEVEL_ATTENTION,
              "赵消防");
    device_init(&dev_smoke, "smoke-000001", "smoke", &grid_home);
    device_init(&dev_smoke2, "smoke-000002", "smoke", &grid_mall);
    device_init(&dev_door, "door-000001", "door", &grid_home);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    device_clear(&dev_smoke);
    device_clear(&dev_smoke2);
    device_clear(&dev_door);
    grid_clear(&grid_home);
    grid_clear(&grid_mall);
    return 0;
}

static struct gw_reading *reading_new(const struct gw_device *d)
{
    struct gw_reading *r = gw_reading_new(d->id, GW_CHANNEL_TELEMETRY, TS_NS);

    assert_non_null(r);
    r->device = d;
    return r;
}

/* ---- rule files --------------------------------------------------------- */

struct tmp_dir {
    char path[64];
};

static void tmp_dir_make(struct tmp_dir *t)
{
    strcpy(t->path, "/tmp/gridgate-rules-XXXXXX");
    assert_non_null(mkdtemp(t->path));
}

static void tmp_dir_write(const struct tmp_dir *t, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", t->path, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void tmp_dir_remove(const struct tmp_dir *t)
{
    DIR *d = opendir(t->path);
    struct dirent *de;
    char path[512];

    assert_non_null(d);
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", t->path, de->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(t->path), 0);
}

static const struct rule_limits test_limits = {
    .instruction_budget = 200000,
    .memory_bytes = 16 << 20,
};

static struct rule_engine *engine_new(void)
{
    struct rule_engine *e = rule_engine_new(&test_limits);

    assert_non_null(e);
    return e;
}

/* An engine with `source` loaded as rules.lua; the load must succeed. */
static struct rule_engine *engine_with_limits(const char *source, const struct rule_limits *limits)
{
    struct rule_engine *e = rule_engine_new(limits);
    struct tmp_dir t;
    char *error = NULL;
    int r;

    tmp_dir_make(&t);
    tmp_dir_write(&t, "rules.lua", source);
    assert_non_null(e);
    r = rule_engine_load_dir(e, t.path, &error);
    if (r < 0)
        fail_msg("load failed: %s", error ? error : "?");
    tmp_dir_remove(&t);
    return e;
}

static struct rule_engine *engine_with(const char *source)
{
    return engine_with_limits(source, &test_limits);
}

/* Loads `source` as bad.lua and returns the error message, whose path
 * prefix is replaced by "bad.lua". */
static char *load_error(const char *source)
{
    struct rule_engine *e = engine_new();
    struct tmp_dir t;
    char *error = NULL, *out;
    size_t dir_len;

    tmp_dir_make(&t);
    tmp_dir_write(&t, "bad.lua", source);
    assert_true(rule_engine_load_dir(e, t.path, &error) < 0);
    assert_non_null(error);
    assert_int_equal(rule_engine_rule_count(e), 0);
    dir_len = strlen(t.path);
    assert_memory_equal(error, t.path, dir_len);
    out = strdup(error + dir_len + 1);
    free(error);
    tmp_dir_remove(&t);
    rule_engine_free(e);
    return out;
}

static struct rule_stats stats_of(const struct rule_engine *e)
{
    struct rule_stats st;

    rule_engine_stats(e, &st);
    return st;
}

/* Titles of the open_case actions, sorted and joined with ",". */
static char *titles(const struct rule_actions *actions)
{
    static char buf[512];
    const char *list[32];
    size_t n = 0;

    for (size_t i = 0; i < actions->n && n < 32; i++)
        if (actions->items[i].kind == RULE_ACTION_OPEN_CASE)
            list[n++] = actions->items[i].title;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(list[j - 1], list[j]) > 0; j--) {
            const char *tmp = list[j];
            list[j] = list[j - 1];
            list[j - 1] = tmp;
        }
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(buf, ",");
        strcat(buf, list[i]);
    }
    return buf;
}

/* Runs one reading and returns the titles of the cases it opened. */
static char *run_titles(struct rule_engine *e, struct gw_reading *r)
{
    struct rule_actions actions = { 0 };
    char *out;

    rule_engine_on_reading(e, r, &actions);
    out = titles(&actions);
    rule_actions_free(&actions);
    gw_reading_unref(r);
    return out;
}

/* ---- match -------------------------------------------------------------- */

#define CASE_NAMED_AS_RULE(name, match)                                                            \
    "rule{ name = '" name "', match = " match ", on_reading = function(r)\n"                       \
    "  open_case{ category = 'test', severity = 'info', title = '" name "' }\n"                    \
    "end }\n"

static void test_match_filtering(void **state)
{
    struct rule_engine *e = engine_with(
        /* clang-format off */
        CASE_NAMED_AS_RULE("any", "{}")
        CASE_NAMED_AS_RULE("smoke", "{ type = 'smoke' }")
        CASE_NAMED_AS_RULE("door_or_gas", "{ type = { 'door', 'gas' } }")
        CASE_NAMED_AS_RULE("crowded", "{ grid_type = 'crowded' }")
        CASE_NAMED_AS_RULE("attention", "{ grid_level = { 'attention', 'governance' } }")
        CASE_NAMED_AS_RULE("street1", "{ street = '110101001' }")
        CASE_NAMED_AS_RULE("community2", "{ community = { '110101002003' } }")
        CASE_NAMED_AS_RULE("home", "{ grid = '110101001001001' }")
        CASE_NAMED_AS_RULE("battery", "{ field = 'battery' }")
        CASE_NAMED_AS_RULE("smoke_and_battery", "{ type = 'smoke', field = { 'smoke', 'battery' } }"));
    /* clang-format on */
    struct gw_reading *r;

    (void)state;
    assert_int_equal(rule_engine_rule_count(e), 10);

    r = reading_new(&dev_smoke);
    gw_reading_add_number(r, "smoke", 0.01);
    assert_string_equal(run_titles(e, r), "any,home,smoke,street1");

    r = reading_new(&dev_smoke2);
    gw_reading_add_number(r, "smoke", 0.01);
    gw_reading_add_number(r, "battery", 90);
    assert_string_equal(run_titles(e, r),
                        "any,attention,battery,community2,crowded,smoke,smoke_and_battery");

    r = reading_new(&dev_door);
    gw_reading_add_bool(r, "open", true);
    assert_string_equal(run_titles(e, r), "any,door_or_gas,home,street1");

    /* Filtering is done in C: no Lua call for a rule that does not match. */
    assert_int_equal(stats_of(e).calls, 4 + 7 + 4);
    rule_engine_free(e);
}

static void test_events_do_not_run_on_reading(void **state)
{
    struct rule_engine *e = engine_with(CASE_NAMED_AS_RULE("any", "{}"));
    struct gw_reading *r = gw_reading_new(dev_smoke.id, GW_CHANNEL_EVENT, TS_NS);

    (void)state;
    r->device = &dev_smoke;
    assert_string_equal(run_titles(e, r), "");
    assert_int_equal(stats_of(e).calls, 0);
    rule_engine_free(e);
}

/* ---- actions ------------------------------------------------------------ */

static void test_open_case_fields(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'full', match = { type = 'smoke' }, on_reading = function(r)\n"
        "  open_case{ category = 'fire.smoke', severity = 'critical', role = 'firefighter',\n"
        "             title = '烟感报警 ' .. r.device, detail = 'smoke ' .. r.smoke,\n"
        "             subject = 'building-7' }\n"
        "end }\n"
        "rule{ name = 'minimal', match = { type = 'smoke' }, on_reading = function(r)\n"
        "  open_case{ category = 'c', severity = 'info', title = 't' }\n"
        "end }\n");
    struct gw_reading *r = reading_new(&dev_smoke);
    struct rule_actions actions = { 0 };
    const struct rule_action *a;

    (void)state;
    gw_reading_add_number(r, "smoke", 0.25);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    assert_int_equal(actions.n, 2);

    a = &actions.items[0];
    assert_int_equal(a->kind, RULE_ACTION_OPEN_CASE);
    assert_string_equal(a->rule, "full");
    assert_non_null(strstr(a->file, "/rules.lua:1"));
    assert_string_equal(a->category, "fire.smoke");
    assert_int_equal(a->severity, GW_SEVERITY_CRITICAL);
    assert_true(a->has_role);
    assert_int_equal(a->role, GW_ROLE_FIREFIGHTER);
    assert_string_equal(a->title, "烟感报警 smoke-000001");
    assert_string_equal(a->detail, "smoke 0.25");
    assert_string_equal(a->subject, "building-7");
    assert_true(a->ts_ns == TS_NS);

    a = &actions.items[1];
    assert_string_equal(a->rule, "minimal");
    assert_non_null(strstr(a->file, "/rules.lua:6"));
    assert_string_equal(a->subject, "smoke-000001"); /* defaults to the device */
    assert_false(a->has_role);
    assert_null(a->detail);
    assert_int_equal(a->severity, GW_SEVERITY_INFO);

    assert_int_equal(stats_of(e).actions, 2);
    rule_actions_free(&actions);
    gw_reading_unref(r);
    rule_engine_free(e);
}

static void test_action_argument_errors(void **state)
{
    struct rule_engine *e = engine_with(
        "local function rule_doing(name, f) rule{ name = name, on_reading = f } end\n"
        "rule_doing('bad_severity', function() open_case{ category = 'c', severity = 'huge', title "
        "= 't' } end)\n"
        "rule_doing('bad_role', function() open_case{ category = 'c', severity = 'info', role = "
        "'chef', title = 't' } end)\n"
        "rule_doing('no_title', function() open_case{ category = 'c', severity = 'info' } end)\n"
        "rule_doing('no_severity', function() open_case{ category = 'c', title = 't' } end)\n"
        "rule_doing('typo_key', function() open_case{ category = 'c', severity = 'info', title = "
        "'t', serverity = 'x' } end)\n"
        "rule_doing('table_title', function() open_case{ category = 'c', severity = 'info', title "
        "= {} } end)\n"
        "rule_doing('empty_category', function() open_case{ category = '', severity = 'info', "
        "title = 't' } end)\n"
        "rule_doing('clear_typo', function() clear_case{ subjcet = 'x' } end)\n"
        "rule_doing('emit_no_fields', function() emit('m', {}) end)\n"
        "rule_doing('emit_table_value', function() emit('m', { a = {} }) end)\n"
        "rule_doing('emit_nan', function() emit('m', { a = 0/0 }) end)\n"
        "rule_doing('emit_bool_tag', function() emit('m', { a = 1 }, { t = true }) end)\n"
        "rule_doing('good', function() open_case{ category = 'c', severity = 'minor', title = "
        "'good' } end)\n");
    struct gw_reading *r = reading_new(&dev_door);
    struct rule_actions actions = { 0 };
    struct rule_stats st;

    (void)state;
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 12);
    assert_string_equal(titles(&actions), "good");
    assert_int_equal(actions.n, 1);
    st = stats_of(e);
    assert_int_equal(st.calls, 13);
    assert_int_equal(st.errors, 12);
    assert_int_equal(st.budget_exceeded, 0);
    assert_int_equal(st.memory_exceeded, 0);
    assert_int_equal(st.actions, 1);
    rule_actions_free(&actions);
    gw_reading_unref(r);
    rule_engine_free(e);
}

static void test_actions_only_inside_on_reading(void **state)
{
    char *msg = load_error("open_case{ category = 'c', severity = 'info', title = 't' }\n");

    (void)state;
    assert_string_equal(msg, "bad.lua:1: open_case can only be used inside on_reading, on_event "
                             "or on_silence");
    free(msg);
}

/* The actions of one reading of d with v = value, as "kind:subject ..." */
static const char *case_actions(struct rule_engine *e, const struct gw_device *d, double value)
{
    static char buf[512];
    struct gw_reading *r = reading_new(d);
    struct rule_actions actions = { 0 };
    size_t len = 0;

    gw_reading_add_number(r, "v", value);
    rule_engine_on_reading(e, r, &actions);
    buf[0] = '\0';
    for (size_t i = 0; i < actions.n; i++) {
        const struct rule_action *a = &actions.items[i];
        assert_true(a->ts_ns == TS_NS);
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s:%s", i ? " " : "",
                                a->kind == RULE_ACTION_OPEN_CASE ? "open" : "clear", a->subject);
        assert_true(len < sizeof(buf));
    }
    rule_actions_free(&actions);
    gw_reading_unref(r);
    return buf;
}

static const char clear_source[] =
    "rule{ name = 'clear', on_reading = function(r)\n"
    "  local v = r.v\n"
    "  if v == 1 or v == 4 then\n"
    "    if v == 4 then clear_case{} end\n"
    "    open_case{ category = 'c', severity = 'info', title = 't' }\n"
    "  end\n"
    "  if v == 0 or v == 3 then\n"
    "    clear_case{}\n"
    "    clear_case{ subject = 'room-3' }\n"
    "    clear_case()\n"
    "  end\n"
    "  if v == 2 then clear_case{}; error('after the clear') end\n"
    "  if v == 3 then open_case{ category = 'c', severity = 'info', title = 't' }; clear_case{} end\n"
    "end }\n";

/* clear_case{} about the device is passed on only while the rule may have
 * a case open about it; other subjects always are. */
static void test_clear_case(void **state)
{
    struct rule_engine *e = engine_with(clear_source);

    (void)state;
    /* Nothing opened: only the other subject's clear. */
    assert_string_equal(case_actions(e, &dev_door, 0), "clear:room-3");
    assert_string_equal(case_actions(e, &dev_door, 1), "open:door-000001");
    /* A call that fails after its clear drops it, and the case stays marked. */
    assert_string_equal(case_actions(e, &dev_door, 2), "");
    assert_string_equal(case_actions(e, &dev_door, 0),
                        "clear:door-000001 clear:room-3 clear:door-000001");
    assert_string_equal(case_actions(e, &dev_door, 0), "clear:room-3");
    /* Marks are per device. */
    assert_string_equal(case_actions(e, &dev_smoke, 1), "open:smoke-000001");
    assert_string_equal(case_actions(e, &dev_door, 0), "clear:room-3");
    /* Within one call the last of open and clear counts. */
    assert_string_equal(case_actions(e, &dev_door, 3),
                        "clear:room-3 open:door-000001 clear:door-000001");
    assert_string_equal(case_actions(e, &dev_door, 0), "clear:room-3");
    assert_string_equal(case_actions(e, &dev_door, 4), "open:door-000001");
    assert_string_equal(case_actions(e, &dev_door, 0),
                        "clear:door-000001 clear:room-3 clear:door-000001");
    assert_string_equal(case_actions(e, &dev_smoke, 0),
                        "clear:smoke-000001 clear:room-3 clear:smoke-000001");

    /* A case the store holds open since before a start. */
    assert_int_equal(rule_engine_note_open_case(e, "clear", "door-000001"), 0);
    assert_int_equal(rule_engine_note_open_case(e, "clear", "door-000001"), 0);
    assert_int_equal(rule_engine_note_open_case(e, "gone", "door-000001"), -ENOENT);
    assert_string_equal(case_actions(e, &dev_door, 0),
                        "clear:door-000001 clear:room-3 clear:door-000001");
    assert_string_equal(case_actions(e, &dev_door, 0), "clear:room-3");
    rule_engine_free(e);
}

/* Case marks go on through both kinds of reload, with their rule's name. */
static void test_case_marks_reload(void **state)
{
    struct rule_engine *e = engine_with(clear_source);
    struct rule_engine *model, *fresh;
    char *error = NULL;

    (void)state;
    assert_string_equal(case_actions(e, &dev_door, 1), "open:door-000001");
    assert_string_equal(case_actions(e, &dev_smoke, 1), "open:smoke-000001");
    model = engine_with(clear_source);
    assert_int_equal(rule_engine_reload_like(e, model, &error), 0);
    rule_engine_free(model);
    assert_string_equal(case_actions(e, &dev_door, 0),
                        "clear:door-000001 clear:room-3 clear:door-000001");

    fresh = engine_with(clear_source);
    assert_int_equal(rule_engine_adopt_state(fresh, e), 0);
    rule_engine_free(e);
    assert_string_equal(case_actions(fresh, &dev_door, 0), "clear:room-3");
    assert_string_equal(case_actions(fresh, &dev_smoke, 0),
                        "clear:smoke-000001 clear:room-3 clear:smoke-000001");
    rule_engine_free(fresh);

    /* A reload without the rule forgets its marks. */
    e = engine_with(clear_source);
    assert_string_equal(case_actions(e, &dev_door, 1), "open:door-000001");
    model = engine_with("rule{ name = 'other', on_reading = function() end }\n");
    assert_int_equal(rule_engine_reload_like(e, model, &error), 0);
    rule_engine_free(model);
    model = engine_with(clear_source);
    assert_int_equal(rule_engine_reload_like(e, model, &error), 0);
    rule_engine_free(model);
    assert_string_equal(case_actions(e, &dev_door, 0), "clear:room-3");
    rule_engine_free(e);
}

static void test_emit_types(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'emit', on_reading = function(r)\n"
        "  emit('door_stats', { ratio = 0.5, count = 3, open = r.open, who = 'x', big = 2^53 },\n"
        "       { zone = 'east', floor = 3 })\n"
        "end }\n");
    struct gw_reading *r = reading_new(&dev_door);
    struct rule_actions actions = { 0 };
    const struct rule_action *a;

    (void)state;
    gw_reading_add_bool(r, "open", true);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    assert_int_equal(actions.n, 1);
    a = &actions.items[0];
    assert_int_equal(a->kind, RULE_ACTION_EMIT);
    assert_string_equal(a->measurement, "door_stats");
    assert_string_equal(a->subject, "door-000001");
    assert_int_equal(a->n_fields, 5);
    /* sorted by name */
    assert_string_equal(a->fields[0].name, "big");
    assert_int_equal(a->fields[0].value.type, GW_VALUE_NUMBER); /* 2^53 is a float in Lua */
    assert_string_equal(a->fields[1].name, "count");
    assert_int_equal(a->fields[1].value.type, GW_VALUE_INTEGER);
    assert_int_equal(a->fields[1].value.u.integer, 3);
    assert_string_equal(a->fields[2].name, "open");
    assert_int_equal(a->fields[2].value.type, GW_VALUE_BOOL);
    assert_true(a->fields[2].value.u.boolean);
    assert_string_equal(a->fields[3].name, "ratio");
    assert_int_equal(a->fields[3].value.type, GW_VALUE_NUMBER);
    assert_true(a->fields[3].value.u.number == 0.5);
    assert_string_equal(a->fields[4].name, "who");
    assert_int_equal(a->fields[4].value.type, GW_VALUE_STRING);
    assert_string_equal(a->fields[4].value.u.string, "x");
    assert_int_equal(a->n_tags, 2);
    assert_string_equal(a->tags[0].key, "floor");
    assert_string_equal(a->tags[0].value, "3");
    assert_string_equal(a->tags[1].key, "zone");
    assert_string_equal(a->tags[1].value, "east");
    rule_actions_free(&actions);
    gw_reading_unref(r);
    rule_engine_free(e);
}

/* ---- failures ----------------------------------------------------------- */

static void test_failing_rule_does_not_stop_others(void **state)
{
    struct rule_engine *e =
        engine_with("rule{ name = 'a_fails', on_reading = function(r)\n"
                    "  open_case{ category = 'c', severity = 'info', title = 'lost' }\n"
                    "  local t = nil\n"
                    "  return t.x\n"
                    "end }\n"
                    "rule{ name = 'b_works', on_reading = function(r)\n"
                    "  open_case{ category = 'c', severity = 'info', title = 'kept' }\n"
                    "end }\n");
    struct rule_actions actions = { 0 };
    struct gw_reading *r;
    struct rule_stats st;

    (void)state;
    for (int i = 0; i < 2; i++) {
        r = reading_new(&dev_door);
        assert_int_equal(rule_engine_on_reading(e, r, &actions), 1);
        gw_reading_unref(r);
    }
    /* The failing call's own open_case is dropped with it. */
    assert_string_equal(titles(&actions), "kept,kept");
    st = stats_of(e);
    assert_int_equal(st.calls, 4);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.actions, 2);
    rule_actions_free(&actions);
    rule_engine_free(e);
}

/* Runs the one reading through e and returns the elapsed ms. */
static int64_t timed_run(struct rule_engine *e, struct rule_actions *actions)
{
    struct gw_reading *r = reading_new(&dev_door);
    int64_t t0 = gw_monotonic_ns();

    rule_engine_on_reading(e, r, actions);
    gw_reading_unref(r);
    return (gw_monotonic_ns() - t0) / 1000000;
}

static void test_budget(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'loop', on_reading = function(r) while true do end end }\n"
        "rule{ name = 'swallow', on_reading = function(r)\n"
        "  for i = 1, 10 do pcall(function() while true do end end) end\n"
        "  open_case{ category = 'c', severity = 'info', title = 'swallowed' }\n"
        "end }\n"
        "rule{ name = 'xpcall', on_reading = function(r)\n"
        "  while true do xpcall(function() while true do end end, function(m) return m end) end\n"
        "end }\n"
        "rule{ name = 'after', on_reading = function(r)\n"
        "  open_case{ category = 'c', severity = 'info', title = 'after' }\n"
        "end }\n");
    struct rule_actions actions = { 0 };
    struct rule_stats st;

    (void)state;
    assert_true(timed_run(e, &actions) < 1000);
    assert_string_equal(titles(&actions), "after");
    st = stats_of(e);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.budget_exceeded, 3);
    rule_actions_free(&actions);
    rule_engine_free(e);
}

static void test_memory(void **state)
{
    struct rule_engine *e =
        engine_with("rule{ name = 'bomb', on_reading = function(r)\n"
                    "  local t, s = {}, ('x'):rep(65536)\n"
                    "  while true do t[#t + 1] = s .. #t end\n"
                    "end }\n"
                    "rule{ name = 'doubling', on_reading = function(r)\n"
                    "  local s = 'x'\n"
                    "  while true do s = s .. s end\n"
                    "end }\n"
                    "rule{ name = 'swallow', on_reading = function(r)\n"
                    "  pcall(function()\n"
                    "    local t, s = {}, ('x'):rep(65536)\n"
                    "    while true do t[#t + 1] = s .. #t end\n"
                    "  end)\n"
                    "  open_case{ category = 'c', severity = 'info', title = 'swallowed' }\n"
                    "end }\n"
                    "rule{ name = 'rep', on_reading = function(r) return ('x'):rep(2 ^ 21) end }\n"
                    "rule{ name = 'after', on_reading = function(r)\n"
                    "  open_case{ category = 'c', severity = 'info', title = 'after', detail = "
                    "('y'):rep(1000) }\n"
                    "end }\n");
    struct rule_actions actions = { 0 };
    struct rule_stats st;

    (void)state;
    assert_true(timed_run(e, &actions) < 2000);
    /* The heap is usable again for the next rule. */
    assert_string_equal(titles(&actions), "after");
    st = stats_of(e);
    assert_int_equal(st.errors, 4);
    assert_int_equal(st.memory_exceeded, 4);
    assert_int_equal(st.budget_exceeded, 0);
    rule_actions_free(&actions);
    rule_engine_free(e);
}

static void test_pathological_pattern(void **state)
{
    /* STACK-NOTES gotcha 7: one find() that takes seconds in one C call. */
    struct rule_engine *e =
        engine_with("rule{ name = 'one_find', on_reading = function(r)\n"
                    "  return ('a'):rep(800):find('.-.-b')\n"
                    "end }\n"
                    "rule{ name = 'many_finds', on_reading = function(r)\n"
                    "  local s = ('a'):rep(140)\n"
                    "  while true do pcall(string.find, s, '.-.-b') end\n"
                    "end }\n"
                    "rule{ name = 'gmatch_caret', on_reading = function(r)\n"
                    "  for x in ('^'):rep(300):gmatch('^.-.-b') do end\n"
                    "end }\n"
                    "rule{ name = 'plain', on_reading = function(r)\n"
                    "  local s = ('a'):rep(2 ^ 20)\n"
                    "  return s:find(('a'):rep(2 ^ 19) .. 'b', 1, true)\n"
                    "end }\n"
                    "rule{ name = 'fine', on_reading = function(r)\n"
                    "  local a, b = ('k=v; x=42'):match('^(%w+)=(%w+)')\n"
                    "  local n = select(2, ('a b c d'):gsub('%s+', ' '))\n"
                    "  open_case{ category = 'c', severity = 'info', title = a .. b .. n }\n"
                    "end }\n");
    struct rule_actions actions = { 0 };
    struct rule_stats st;
    int64_t ms;

    (void)state;
    ms = timed_run(e, &actions);
    assert_true(ms < 1000);
    assert_string_equal(titles(&actions), "kv3");
    st = stats_of(e);
    assert_int_equal(st.errors, 4);
    assert_int_equal(st.budget_exceeded, 4);
    rule_actions_free(&actions);
    rule_engine_free(e);
}

/* ---- sandbox ------------------------------------------------------------ */

static void test_sandbox(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'probe', on_reading = function(r)\n"
        "  local bad = {}\n"
        "  local function absent(what, f)\n"
        "    local ok, v = pcall(f)\n"
        "    if ok and v ~= nil then bad[#bad + 1] = what end\n"
        "  end\n"
        "  local function refused(what, f)\n"
        "    if pcall(f) then bad[#bad + 1] = what end\n"
        "  end\n"
        "  local function present(what, v)\n"
        "    if v == nil then bad[#bad + 1] = what end\n"
        "  end\n"
        "  absent('io', function() return io end)\n"
        "  absent('debug', function() return debug end)\n"
        "  absent('package', function() return package end)\n"
        "  absent('require', function() return require end)\n"
        "  absent('coroutine', function() return coroutine end)\n"
        "  absent('dofile', function() return dofile end)\n"
        "  absent('loadfile', function() return loadfile end)\n"
        "  absent('load', function() return load end)\n"
        "  absent('collectgarbage', function() return collectgarbage end)\n"
        "  absent('rawset', function() return rawset end)\n"
        "  absent('print', function() return print end)\n"
        "  absent('os.execute', function() return os.execute end)\n"
        "  absent('os.exit', function() return os.exit end)\n"
        "  absent('os.getenv', function() return os.getenv end)\n"
        "  absent('os.remove', function() return os.remove end)\n"
        "  absent('string.dump', function() return string.dump end)\n"
        "  absent('string metatable', function() return type(getmetatable('')) == 'table' or nil "
        "end)\n"
        "  refused('load binary', function() return load(string.dump(function() end), 'x', 'b') "
        "end)\n"
        "  refused('dofile call', function() dofile('/etc/passwd') end)\n"
        "  refused('_G write', function() _G.x = 1 end)\n"
        "  refused('global write', function() x = 1 end)\n"
        "  refused('global overwrite', function() string = nil end)\n"
        "  refused('library write', function() string.find = nil end)\n"
        "  refused('os write', function() os.execute = function() end end)\n"
        "  refused('_G metatable', function() setmetatable(_G, nil) end)\n"
        "  refused('__gc', function() setmetatable({}, { __gc = function() end }) end)\n"
        "  refused('r write', function() r.smoke = 1 end)\n"
        "  refused('r.fields write', function() r.fields.x = 1 end)\n"
        "  refused('r.grid write', function() r.grid.type = 'crowded' end)\n"
        "  refused('roster write', function() r.grid.roster.police = 'me' end)\n"
        "  for _, proxy in ipairs{ _G, string, os, r, r.fields, r.grid } do\n"
        "    local _, behind = pairs(proxy)\n"
        "    if behind ~= proxy then bad[#bad + 1] = 'pairs leak' end\n"
        "  end\n"
        "  present('os.time', os.time)\n"
        "  present('os.date', os.date)\n"
        "  present('os.clock', os.clock)\n"
        "  present('string.format', string.format)\n"
        "  present('string method', ('x').upper)\n"
        "  present('table.concat', table.concat)\n"
        "  present('math.floor', math.floor)\n"
        "  present('utf8.char', utf8.char)\n"
        "  present('pcall', pcall)\n"
        "  local n = 0\n"
        "  for k in pairs(string) do n = n + 1 end\n"
        "  if n < 10 then bad[#bad + 1] = 'pairs(string)' end\n"
        "  open_case{ category = 'probe', severity = 'info', title = 'probe',\n"
        "             detail = #bad == 0 and 'ok' or table.concat(bad, ',') }\n"
        "end }\n");
    struct gw_reading *r = reading_new(&dev_door);
    struct rule_actions actions = { 0 };

    (void)state;
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    assert_int_equal(actions.n, 1);
    assert_string_equal(actions.items[0].detail, "ok");
    rule_actions_free(&actions);
    gw_reading_unref(r);
    rule_engine_free(e);
}

static void test_binary_chunk_refused(void **state)
{
    char *msg = load_error("\x1bLuaT\x00\x19\x93\r\n\x1a\n");

    (void)state;
    assert_non_null(strstr(msg, "binary chunk"));
    free(msg);
}

static void test_undeclared_globals(void **state)
{
    char *msg;

    (void)state;
    msg = load_error("local ok = 1\nthreshold = 0.1\n");
    assert_string_equal(msg, "bad.lua:2: assignment to undeclared global 'threshold' "
                             "(declare it with local)");
    free(msg);
    msg = load_error("local x = thresold\n");
    assert_string_equal(msg, "bad.lua:1: undeclared global 'thresold'");
    free(msg);
    msg = load_error("function helper() end\n");
    assert_string_equal(msg, "bad.lua:1: assignment to undeclared global 'helper' "
                             "(declare it with local)");
    free(msg);
}

static void test_top_level_locals(void **state)
{
    struct rule_engine *e = engine_with("local LIMIT = 0.1\n"
                                        "local function high(v) return v >= LIMIT end\n"
                                        "rule{ name = 'uses_locals', on_reading = function(r)\n"
                                        "  if high(r.smoke) then open_case{ category = 'c', "
                                        "severity = 'info', title = 'high' } end\n"
                                        "end }\n");
    struct gw_reading *r = reading_new(&dev_smoke);

    (void)state;
    gw_reading_add_number(r, "smoke", 0.3);
    assert_string_equal(run_titles(e, r), "high");
    rule_engine_free(e);
}

/* ---- the r table -------------------------------------------------------- */

static void test_r_table(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'r', on_reading = function(r)\n"
        "  local keys = {}\n"
        "  for k, v in pairs(r.fields) do keys[#keys + 1] = k .. '=' .. tostring(v) end\n"
        "  table.sort(keys)\n"
        "  local g = r.grid\n"
        "  local parts = {\n"
        "    r.device, r.type, math.type(r.ts), tostring(r.ts), tostring(now()),\n"
        "    g.id, g.name, g.type, g.level, g.community, g.community_id, g.street, g.street_id,\n"
        "    g.roster.firefighter, tostring(g.roster.police),\n"
        "    math.type(r.count), math.type(r.temp), tostring(r.label), r.fields.type,\n"
        "    table.concat(keys, ' '),\n"
        "  }\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail = table.concat(parts, "
        "'|') }\n"
        "end }\n");
    struct gw_reading *r = reading_new(&dev_smoke2);
    struct rule_actions actions = { 0 };

    (void)state;
    gw_reading_add_number(r, "temp", 24.5);
    gw_reading_add_integer(r, "count", 7);
    gw_reading_add_string(r, "label", "3F kitchen");
    gw_reading_add_string(r, "type", "photoelectric"); /* shadowed: only in r.fields */
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    assert_int_equal(actions.n, 1);
    assert_string_equal(actions.items[0].detail,
                        "smoke-000002|smoke|integer|1700000000123|1700000000123|"
                        "110101002003004|王府井商场网格|crowded|attention|多福巷社区|110101002003|"
                        "东华门街道|110101002|赵消防|nil|integer|float|3F kitchen|photoelectric|"
                        "count=7 label=3F kitchen temp=24.5 type=photoelectric");
    rule_actions_free(&actions);
    gw_reading_unref(r);
    rule_engine_free(e);
}

static void test_state_per_device(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'count', on_reading = function(r, state)\n"
        "  state.n = (state.n or 0) + 1\n"
        "  open_case{ category = 'c', severity = 'info', title = r.device .. '#' .. state.n }\n"
        "end }\n"
        "rule{ name = 'other', on_reading = function(r, state)\n"
        "  open_case{ category = 'c', severity = 'info', title = 'other' .. tostring(state.n) }\n"
        "end }\n");
    struct gw_reading *r;

    (void)state;
    r = reading_new(&dev_smoke);
    assert_string_equal(run_titles(e, r), "othernil,smoke-000001#1");
    r = reading_new(&dev_smoke);
    assert_string_equal(run_titles(e, r), "othernil,smoke-000001#2");
    r = reading_new(&dev_door);
    assert_string_equal(run_titles(e, r), "door-000001#1,othernil");
    r = reading_new(&dev_smoke);
    assert_string_equal(run_titles(e, r), "othernil,smoke-000001#3");
    rule_engine_free(e);
}

/* ---- loading ------------------------------------------------------------ */

static void test_load_errors(void **state)
{
    static const struct {
        const char *source;
        const char *message;
    } cases[] = {
        { "rule{ name = }\n", "bad.lua:1: unexpected symbol near '}'" },
        { "\n\nrule{ name = 'x', match = { typ = 'smoke' }, on_reading = function() end }\n",
          "bad.lua:3: rule{}: unknown match key 'typ' (type, grid_type, grid_level, street, "
          "community, grid, field)" },
        { "rule{ name = 'x', on_readin = function() end }\n",
          "bad.lua:1: rule{}: unknown key 'on_readin' (name, match, mode, on_reading, on_event, "
          "on_silence, silence)" },
        { "rule{ match = {}, on_reading = function() end }\n",
          "bad.lua:1: rule{}: name is required" },
        { "rule{ name = 'x' }\n",
          "bad.lua:1: rule{}: rule 'x' needs on_reading = function(r, state) ... end, on_event = "
          "function(e, state) ... end or on_silence = function(d, state) ... end" },
        { "rule{ name = 'x', on_event = 'f' }\n",
          "bad.lua:1: rule{}: on_event must be a function, not a string" },
        { "rule{ name = 'x',\n mode = 'dry', on_reading = function() end }\n",
          "bad.lua:1: rule{}: mode must be \"live\" or \"shadow\", not 'dry'" },
        { "rule{ name = 'x', mode = true, on_reading = function() end }\n",
          "bad.lua:1: rule{}: mode must be \"live\" or \"shadow\", not boolean" },
        { "\nrule{ name = 'x', silence = '5m', on_reading = function() end }\n",
          "bad.lua:2: rule{}: silence is given but on_silence is not" },
        { "rule{ name = 'x', silence = '5 min', on_silence = function() end }\n",
          "bad.lua:1: rule{}: silence: bad duration '5 min' (a duration such as \"90s\", "
          "\"15m\", \"2h\", \"1d\", a number of seconds, or { factor = N })" },
        { "rule{ name = 'x', silence = -5, on_silence = function() end }\n",
          "bad.lua:1: rule{}: silence must be (a duration such as" },
        { "rule{ name = 'x', silence = { factor = 0 }, on_silence = function() end }\n",
          "bad.lua:1: rule{}: silence = { factor = N } needs a number N above 0 (at most 1000)" },
        { "rule{ name = 'x', silence = { fator = 2 }, on_silence = function() end }\n",
          "bad.lua:1: rule{}: silence table takes only factor" },
        { "rule{ name = 'x', silence = true, on_silence = function() end }\n",
          "bad.lua:1: rule{}: silence must be (a duration such as \"90s\", \"15m\", \"2h\", "
          "\"1d\", a number of seconds, or { factor = N }), not boolean" },
        { "rule{ name = 'x', match = { grid_type = 'mall' }, on_reading = function() end }\n",
          "bad.lua:1: rule{}: match.grid_type: unknown value 'mall' (one of residential, "
          "commercial, institution, crowded)" },
        { "rule{ name = 'x', match = { type = {} }, on_reading = function() end }\n",
          "bad.lua:1: rule{}: match.type must be a non-empty list of strings" },
        { "rule{ name = 'x', on_reading = function() end }\n"
          "rule{ name = 'x', on_reading = function() end }\n",
          "bad.lua:2: rule{}: duplicate rule name 'x' (first defined at " },
        { "while true do end\n", "bad.lua:1: instruction budget exceeded (200000 instructions)" },
        { "error('boom', 0)\n", "bad.lua:0: boom" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *msg = load_error(cases[i].source);
        if (strncmp(msg, cases[i].message, strlen(cases[i].message)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, msg, cases[i].message);
        free(msg);
    }
}

static void test_load_dir(void **state)
{
    struct rule_engine *e = engine_new();
    struct tmp_dir t;
    char *error = NULL, *at;

    (void)state;
    tmp_dir_make(&t);
    tmp_dir_write(&t, "a.lua", "rule{ name = 'one', on_reading = function() end }\n");
    tmp_dir_write(&t, "a_test.lua", "this is not even Lua\n");
    tmp_dir_write(&t, "notes.txt", "not a rule file\n");
    tmp_dir_write(&t, "b.lua",
                  "rule{ name = 'two', on_reading = function() end }\n"
                  "\n"
                  "rule{ name = 'one', on_reading = function() end }\n");
    tmp_dir_write(&t, "c.lua", "rule{ name = 'three', on_reading = function() end }\n");
    assert_int_equal(rule_engine_load_dir(e, t.path, &error), -EINVAL);
    /* b.lua, at its line 3, names a.lua's line 1; a.lua stays loaded,
     * b.lua's 'two' is dropped with its file, c.lua is not reached. */
    at = strstr(error, "/b.lua:3: rule{}: duplicate rule name 'one' (first defined at ");
    assert_non_null(at);
    assert_non_null(strstr(at, "/a.lua:1)"));
    assert_int_equal(rule_engine_rule_count(e), 1);
    free(error);
    tmp_dir_remove(&t);

    error = NULL;
    assert_true(rule_engine_load_dir(e, "/nonexistent/rules", &error) < 0);
    assert_string_equal(
        error, "/nonexistent/rules:0: cannot open rules directory: No such file or directory");
    free(error);
    rule_engine_free(e);
}

/* ---- helpers for the tests below ---------------------------------------- */

#define SEC 1000000000LL

static struct gw_reading *reading_at(const struct gw_device *d, int64_t ts_ns)
{
    struct gw_reading *r = gw_reading_new(d->id, GW_CHANNEL_TELEMETRY, ts_ns);

    assert_non_null(r);
    r->device = d;
    return r;
}

static struct gw_reading *event_at(const struct gw_device *d, enum gw_channel channel,
                                   int64_t ts_ns)
{
    struct gw_reading *r = gw_reading_new(d->id, channel, ts_ns);

    assert_non_null(r);
    r->device = d;
    return r;
}

/* Runs (and releases) one reading or event; returns the details of the
 * open_case actions, in order, joined with "|" ("" when none). */
static char *details(struct rule_engine *e, struct gw_reading *r)
{
    static char buf[2048];
    struct rule_actions actions = { 0 };

    if (r->channel == GW_CHANNEL_TELEMETRY)
        rule_engine_on_reading(e, r, &actions);
    else
        rule_engine_on_event(e, r, &actions);
    buf[0] = '\0';
    for (size_t i = 0; i < actions.n; i++) {
        const struct rule_action *a = &actions.items[i];
        if (a->kind != RULE_ACTION_OPEN_CASE)
            continue;
        if (buf[0])
            strcat(buf, "|");
        strncat(buf, a->detail ? a->detail : a->title, sizeof(buf) - strlen(buf) - 2);
    }
    rule_actions_free(&actions);
    gw_reading_unref(r);
    return buf;
}

/* The same for a silence check. */
static char *silence_details(struct rule_engine *e, const struct gw_device *d, int64_t now_ns,
                             int64_t last_seen_ns, int64_t heartbeat_ns)
{
    static char buf[1024];
    struct rule_actions actions = { 0 };
    struct rule_silence s = {
        .now_ns = now_ns,
        .last_seen_ns = last_seen_ns,
        .silent_ns = now_ns - (last_seen_ns ? last_seen_ns : TS_NS),
        .heartbeat_ns = heartbeat_ns,
    };

    rule_engine_on_silence(e, d, &s, &actions);
    buf[0] = '\0';
    for (size_t i = 0; i < actions.n; i++) {
        if (buf[0])
            strcat(buf, "|");
        strncat(buf, actions.items[i].detail ? actions.items[i].detail : actions.items[i].title,
                sizeof(buf) - strlen(buf) - 2);
    }
    rule_actions_free(&actions);
    return buf;
}

static const struct rule_info *info_of(const struct rule_engine *e, const char *name)
{
    static struct rule_info info[32];
    size_t n = rule_engine_rules(e, info, 32);

    for (size_t i = 0; i < n && i < 32; i++)
        if (strcmp(info[i].name, name) == 0)
            return &info[i];
    fail_msg("no rule %s", name);
    return NULL;
}

/* ---- SHA-256, durations ------------------------------------------------- */

static void test_sha256(void **state)
{
    static const struct {
        size_t len;
        char fill; /* 0: the text below */
        const char *text;
        const char *hex;
    } cases[] = {
        /* FIPS 180-2, appendix B */
        { 0, 0, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { 3, 0, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { 56, 0, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
        { 1000000, 'a', NULL, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
        /* around the padding's block boundaries */
        { 55, 'x', NULL, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072" },
        { 56, 'x', NULL, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e" },
        { 63, 'x', NULL, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2" },
        { 64, 'x', NULL, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c" },
        { 119, 'x', NULL, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c" },
        { 120, 'x', NULL, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98" },
    };
    char hex[RULE_SHA256_HEX_LEN + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *data = malloc(cases[i].len + 1);
        assert_non_null(data);
        if (cases[i].fill)
            memset(data, cases[i].fill, cases[i].len);
        else
            memcpy(data, cases[i].text, cases[i].len);
        rule_sha256_hex(data, cases[i].len, hex);
        if (strcmp(hex, cases[i].hex) != 0)
            fail_msg("case %zu: %s", i, hex);
        free(data);
    }
}

/* duration() is the gateway's one parser (gw_duration_parse) seen from Lua,
 * available at load time too. */
static void test_duration(void **state)
{
    struct rule_engine *e = engine_with(
        "local D = duration('2h')\n"
        "local function try(x)\n"
        "  local ok, v = pcall(duration, x)\n"
        "  return ok and tostring(v) or 'error'\n"
        "end\n"
        "rule{ name = 'd', on_reading = function(r)\n"
        "  local ok, err = pcall(duration, '2 hours')\n"
        "  local bad = err:find(\"duration: bad duration '2 hours'\", 1, true) ~= nil\n"
        "  local out = { D, math.type(D), tostring(bad) }\n"
        "  for _, x in ipairs{ '90s', '15m', '1.5h', '1d', '500ms', '90', '0s', 30, 0.25, 0,\n"
        "                      '1h30m', '15 m', '-5s', 'inf', '5x', '', -1, 1e300, true } do\n"
        "    out[#out + 1] = try(x)\n"
        "  end\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail =\n"
        "             table.concat(out, ' ') }\n"
        "end }\n");

    (void)state;
    assert_string_equal(details(e, reading_new(&dev_door)),
                        "7200 integer true 90 900 5400 86400 0.5 90 0 30 0.25 0 "
                        "error error error error error error error error error");
    assert_int_equal(stats_of(e).errors, 0);
    rule_engine_free(e);
}

/* ---- mode, provenance, rule_info ---------------------------------------- */

static void test_shadow_hash_and_info(void **state)
{
    static const char source[] =
        "rule{ name = 'live', on_reading = function(r)\n"
        "  open_case{ category = 'c', severity = 'info', title = 'live' }\n"
        "end }\n"
        "rule{ name = 'shadowed', mode = 'shadow', on_reading = function(r)\n"
        "  open_case{ category = 'c', severity = 'info', title = 'shadow' }\n"
        "  emit('m', { x = 1 })\n"
        "  clear_case{}\n"
        "end }\n"
        "rule{ name = 'explicit', mode = 'live', match = { type = 'door' },\n"
        "      on_reading = function(r) error('no') end }\n";
    struct rule_engine *e = engine_with(source);
    struct rule_actions actions = { 0 };
    struct gw_reading *r = reading_new(&dev_door);
    char hash[RULE_SHA256_HEX_LEN + 1];
    const struct rule_info *info;
    struct rule_info few[1];

    (void)state;
    rule_sha256_hex(source, strlen(source), hash);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 1);
    gw_reading_unref(r);
    assert_int_equal(actions.n, 4);
    for (size_t i = 0; i < actions.n; i++) {
        const struct rule_action *a = &actions.items[i];
        assert_string_equal(a->file_hash, hash);
        assert_int_equal(a->shadow, strcmp(a->rule, "shadowed") == 0);
    }
    rule_actions_free(&actions);

    assert_int_equal(rule_engine_rules(e, few, 1), 3); /* fills one, counts all */
    assert_string_equal(few[0].name, "live");
    info = info_of(e, "shadowed");
    assert_true(info->shadow);
    assert_string_equal(info->file_hash, hash);
    assert_non_null(strstr(info->file, "/rules.lua:4"));
    assert_true(info->calls == 1 && info->errors == 0 && info->actions == 3);
    info = info_of(e, "explicit");
    assert_false(info->shadow);
    assert_true(info->calls == 1 && info->errors == 1 && info->actions == 0);
    assert_false(info->quarantined);
    assert_int_equal(info->quarantined_devices, 0);
    rule_engine_free(e);
}

/* ---- events ------------------------------------------------------------- */

static void test_on_event(void **state)
{
    struct rule_engine *e = engine_with(
        "local function show(x)\n"
        "  local keys = {}\n"
        "  for k, v in pairs(x.fields) do keys[#keys + 1] = k .. '=' .. tostring(v) end\n"
        "  table.sort(keys)\n"
        "  return table.concat({ x.device, x.type, tostring(x.kind), tostring(x.status),\n"
        "    tostring(x.ts == now()), x.grid.id, tostring(x.event), table.concat(keys, ',') }, ' "
        "')\n"
        "end\n"
        "rule{ name = 'ev', on_event = function(e, state)\n"
        "  state.n = (state.n or 0) + 1\n"
        "  open_case{ category = 'c', severity = 'info', title = 'ev', detail = 'ev ' .. state.n\n"
        "             .. ' ' .. show(e) }\n"
        "end }\n"
        "rule{ name = 'both', on_reading = function(r, state)\n"
        "  state.n = (state.n or 0) + 1\n"
        "  open_case{ category = 'c', severity = 'info', title = 'r', detail = 'r ' .. state.n }\n"
        "end, on_event = function(e, state)\n"
        "  state.n = (state.n or 0) + 1\n"
        "  open_case{ category = 'c', severity = 'info', title = 'e', detail = 'e ' .. state.n }\n"
        "end }\n"
        "rule{ name = 'tamper_only', match = { field = 'tamper' }, on_event = function(e)\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail = 'tamper' }\n"
        "end }\n"
        "rule{ name = 'ro', match = { field = 'kind' }, on_event = function(e)\n"
        "  local ok, err = pcall(function() e.kind = 'x' end)\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail = tostring(ok) ..\n"
        "             ' ' .. tostring(err:find('e is read%-only') ~= nil) .. ' ' .. e.fields.kind "
        "}\n"
        "end }\n");
    struct gw_reading *r;

    (void)state;
    r = event_at(&dev_door, GW_CHANNEL_EVENT, TS_NS);
    gw_reading_add_string(r, "event", "VCA_INTRUSION");
    assert_string_equal(details(e, r), "ev 1 door-000001 door event nil true 110101001001001 "
                                       "VCA_INTRUSION event=VCA_INTRUSION|e 1");
    r = event_at(&dev_door, GW_CHANNEL_STATUS, TS_NS);
    gw_reading_add_string(r, "status", "offline");
    assert_string_equal(details(e, r), "ev 2 door-000001 door status offline true "
                                       "110101001001001 nil status=offline|e 2");
    /* A reading goes to on_reading only; the state is the same table. */
    assert_string_equal(details(e, reading_new(&dev_door)), "r 3");
    r = event_at(&dev_door, GW_CHANNEL_EVENT, TS_NS);
    gw_reading_add_bool(r, "tamper", true);
    assert_string_equal(details(e, r), "ev 3 door-000001 door event nil true 110101001001001 "
                                       "nil tamper=true|e 4|tamper");
    /* A device field named kind stays in e.fields; e.kind is the channel. */
    r = event_at(&dev_door, GW_CHANNEL_EVENT, TS_NS);
    gw_reading_add_string(r, "kind", "mine");
    assert_string_equal(details(e, r), "ev 4 door-000001 door event nil true 110101001001001 "
                                       "nil kind=mine|e 5|false true mine");
    /* on_event is not called for telemetry, nor on_reading for events. */
    assert_int_equal(info_of(e, "ev")->calls, 4);
    assert_int_equal(info_of(e, "both")->calls, 5);
    assert_int_equal(stats_of(e).errors, 0);
    rule_engine_free(e);
}

/* ---- silence ------------------------------------------------------------ */

static void test_silence_threshold(void **state)
{
    struct rule_engine *e = engine_with(
        "local function f(d) end\n"
        "rule{ name = 'default', match = { type = 'smoke' }, on_silence = f }\n"
        "rule{ name = 'factor3', silence = { factor = 3 }, on_silence = f }\n"
        "rule{ name = 'fixed', match = { type = 'door' }, silence = '90s', on_silence = f }\n"
        "rule{ name = 'seconds', match = { grid_type = 'crowded' }, silence = 45,\n"
        "      on_silence = f }\n"
        "rule{ name = 'field_only_for_readings', match = { field = 'x' }, silence = '10s',\n"
        "      on_silence = f }\n"
        "rule{ name = 'reading', on_reading = f }\n");
    const int64_t hb = 100 * SEC;

    (void)state;
    /* smoke at home: default { factor = 2 }, factor3, field-only 10 s */
    assert_true(rule_engine_silence_threshold(e, &dev_smoke, hb) == 10 * SEC);
    /* the mall: 45 s */
    assert_true(rule_engine_silence_threshold(e, &dev_smoke2, hb) == 10 * SEC);
    rule_engine_free(e);

    e = engine_with("local function f(d) end\n"
                    "rule{ name = 'default', match = { type = 'smoke' }, on_silence = f }\n"
                    "rule{ name = 'factor3', silence = { factor = 3 }, on_silence = f }\n"
                    "rule{ name = 'fixed', match = { type = 'door' }, silence = '90s',\n"
                    "      on_silence = f }\n"
                    "rule{ name = 'seconds', match = { grid_type = 'crowded' }, silence = 45,\n"
                    "      on_silence = f }\n");
    assert_true(rule_engine_silence_threshold(e, &dev_smoke, hb) == 200 * SEC);
    assert_true(rule_engine_silence_threshold(e, &dev_smoke, 10 * SEC) == 20 * SEC);
    assert_true(rule_engine_silence_threshold(e, &dev_smoke2, hb) == 45 * SEC);
    assert_true(rule_engine_silence_threshold(e, &dev_door, hb) == 90 * SEC);
    assert_true(rule_engine_silence_threshold(e, &dev_door, 10 * SEC) == 30 * SEC);
    /* No heartbeat known: only fixed silences apply. */
    assert_true(rule_engine_silence_threshold(e, &dev_smoke, 0) == 0);
    assert_true(rule_engine_silence_threshold(e, &dev_door, 0) == 90 * SEC);
    rule_engine_free(e);
}

static void test_silence_episodes(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'dead', silence = '10m', on_silence = function(d, state)\n"
        "  state.n = (state.n or 0) + 1\n"
        "  open_case{ category = 'c', severity = 'info', title = 'dead', detail = table.concat({\n"
        "    'dead', state.n, d.device, d.type, d.grid.id, d.ts, tostring(d.last_seen),\n"
        "    d.silent_for, tostring(d.heartbeat), tostring(d.ts == now()) }, ' ') }\n"
        "end }\n"
        "rule{ name = 'slow', silence = { factor = 2 }, on_silence = function(d)\n"
        "  open_case{ category = 'c', severity = 'info', title = 'slow', detail = 'slow ' ..\n"
        "             d.silent_for .. ' ' .. d.heartbeat }\n"
        "end }\n"
        "rule{ name = 'flaky', match = { type = 'smoke', grid = '110101001001001' },\n"
        "      silence = '1m',\n"
        "      on_silence = function(d, state)\n"
        "  state.tries = (state.tries or 0) + 1\n"
        "  if state.tries == 1 then error('first try fails') end\n"
        "  open_case{ category = 'c', severity = 'info', title = 'flaky', detail = 'flaky ' ..\n"
        "             state.tries }\n"
        "end }\n");
    const int64_t t0 = 1700000000000LL * 1000000, hb = 8 * 60 * SEC;
    int64_t last = t0;
    struct gw_reading *r;

    (void)state;
    /* Not silent long enough for anything. */
    assert_string_equal(silence_details(e, &dev_door, t0 + 9 * 60 * SEC, last, hb), "");
    /* 10 min: 'dead' fires, with everything in d. */
    assert_string_equal(silence_details(e, &dev_door, t0 + 10 * 60 * SEC, last, hb),
                        "dead 1 door-000001 door 110101001001001 1700000600000 1700000000000 "
                        "600 480 true");
    /* Once per episode. 16 min: 'slow' (2 x 8 min) too, with a float. */
    assert_string_equal(silence_details(e, &dev_door, t0 + 11 * 60 * SEC, last, hb), "");
    assert_string_equal(silence_details(e, &dev_door, t0 + 16 * 60 * SEC + SEC / 2, last, hb),
                        "slow 960.5 480");
    assert_string_equal(silence_details(e, &dev_door, t0 + 20 * 60 * SEC, last, hb), "");
    /* A reading ends the episode (even one no rule wants); the next
     * silence fires again. */
    assert_string_equal(details(e, reading_new(&dev_door)), "");
    assert_string_equal(silence_details(e, &dev_door, t0 + 30 * 60 * SEC, last, hb),
                        "dead 2 door-000001 door 110101001001001 1700001800000 1700000000000 "
                        "1800 480 true|slow 1800 480");
    /* An event ends it too, an "offline" status does not, "online" does. */
    r = event_at(&dev_door, GW_CHANNEL_STATUS, TS_NS);
    gw_reading_add_string(r, "status", "offline");
    details(e, r);
    assert_string_equal(silence_details(e, &dev_door, t0 + 31 * 60 * SEC, last, hb), "");
    r = event_at(&dev_door, GW_CHANNEL_STATUS, TS_NS);
    gw_reading_add_string(r, "status", "online");
    details(e, r);
    assert_non_null(strstr(silence_details(e, &dev_door, t0 + 32 * 60 * SEC, last, hb), "dead 3"));
    details(e, event_at(&dev_door, GW_CHANNEL_EVENT, TS_NS));
    assert_non_null(strstr(silence_details(e, &dev_door, t0 + 33 * 60 * SEC, last, hb), "dead 4"));
    /* A new last_seen from the pipeline is a new episode as well. */
    last = t0 + 40 * 60 * SEC;
    assert_string_equal(silence_details(e, &dev_door, last + 10 * 60 * SEC, last, hb),
                        "dead 5 door-000001 door 110101001001001 1700003000000 1700002400000 "
                        "600 480 true");
    /* Never seen: last_seen is nil; no heartbeat: nil, factor rules skip. */
    assert_string_equal(silence_details(e, &dev_smoke2, TS_NS + 3600 * SEC, 0, 0),
                        "dead 1 smoke-000002 smoke 110101002003004 1700003600123 nil 3600 nil "
                        "true");
    /* A failed on_silence is tried again at the next check. */
    assert_string_equal(silence_details(e, &dev_smoke, TS_NS + 90 * SEC, 0, 0), "");
    assert_int_equal(stats_of(e).errors, 1);
    assert_string_equal(silence_details(e, &dev_smoke, TS_NS + 91 * SEC, 0, 0), "flaky 2");
    assert_string_equal(silence_details(e, &dev_smoke, TS_NS + 92 * SEC, 0, 0), "");
    /* Devices are independent. */
    assert_int_equal(info_of(e, "dead")->calls, 6);
    rule_engine_free(e);
}

/* ---- window, held ------------------------------------------------------- */

static const char window_source[] =
    "local function g(x) return x == nil and 'nil' or string.format('%.4g', x) end\n"
    "local function show(w)\n"
    "  return table.concat({ w:count(), g(w:avg()), g(w:min()), g(w:max()), g(w:rate()) }, ' ')\n"
    "end\n"
    "rule{ name = 'w', match = { field = 'v' }, on_reading = function(r)\n"
    "  local w = window('v', 60)\n"
    "  if r.v == r.v then w:push(r.v) end\n" /* NaN: no push */
    "  open_case{ category = 'c', severity = 'info', title = 'w', detail = show(w) }\n"
    "end }\n"
    "rule{ name = 'many', match = { field = 'many' }, on_reading = function(r)\n"
    "  local w = window('m', '1h')\n"
    "  for i = 1, r.many do w:push(i) end\n"
    "  local same = window('m', 3600) == w\n"
    "  open_case{ category = 'c', severity = 'info', title = 'm', detail = show(w) ..\n"
    "             ' ' .. tostring(same) }\n"
    "end }\n"
    "rule{ name = 'misuse', match = { field = 'misuse' }, on_reading = function(r)\n"
    "  local w = window('x', 10)\n"
    "  local out = {}\n"
    "  for _, f in ipairs{\n"
    "    function() w:push('a') end, function() w:push(1/0) end, function() w.push(5) end,\n"
    "    function() window('', 10) end, function() window('x', 0) end,\n"
    "    function() window('x', '10 s') end, function() window('x', '31d') end,\n"
    "    function() getmetatable(w).__index = nil end,\n"
    "    function() w.x = 1 end } do\n"
    "    out[#out + 1] = tostring(pcall(f))\n"
    "  end\n"
    "  out[#out + 1] = tostring(getmetatable(w))\n"
    "  open_case{ category = 'c', severity = 'info', title = 'x', detail = table.concat(out, ' ') "
    "}\n"
    "end }\n";

static char *window_at(struct rule_engine *e, const struct gw_device *d, int64_t t_s, double v)
{
    struct gw_reading *r = reading_at(d, TS_NS + t_s * SEC);

    gw_reading_add_number(r, "v", v);
    return details(e, r);
}

static void test_window(void **state)
{
    struct rule_engine *e = engine_with(window_source);
    struct gw_reading *r;

    (void)state;
    assert_string_equal(window_at(e, &dev_smoke, 0, 10), "1 10 10 10 nil");
    assert_string_equal(window_at(e, &dev_smoke, 10, 20), "2 15 10 20 1");
    assert_string_equal(window_at(e, &dev_smoke, 30, 40), "3 23.33 10 40 1");
    /* Another device has its own window. */
    assert_string_equal(window_at(e, &dev_door, 30, 7), "1 7 7 7 nil");
    /* At 60 s the point of 0 s is out (the window is (now - 60 s, now]). */
    assert_string_equal(window_at(e, &dev_smoke, 60, 0), "3 20 0 40 -0.4");
    /* Queries expire too: nothing pushed at 200 s, nothing left. */
    assert_string_equal(window_at(e, &dev_smoke, 200, NAN), "0 nil nil nil nil");
    /* A late reading takes its place in time. */
    assert_string_equal(window_at(e, &dev_smoke, 300, 1), "1 1 1 1 nil");
    assert_string_equal(window_at(e, &dev_smoke, 310, 3), "2 2 1 3 0.2");
    assert_string_equal(window_at(e, &dev_smoke, 305, 100), "3 34.67 1 100 0.2");
    /* Points at one time: no rate. */
    assert_string_equal(window_at(e, &dev_door, 400, 1), "1 1 1 1 nil");
    assert_string_equal(window_at(e, &dev_door, 400, 2), "2 1.5 1 2 nil");

    /* At most 1024 points: the oldest go. */
    r = reading_new(&dev_smoke);
    gw_reading_add_integer(r, "many", 2000);
    assert_string_equal(details(e, r), "1024 1488 977 2000 nil true");
    r = reading_at(&dev_smoke, TS_NS + 1800 * SEC);
    gw_reading_add_integer(r, "many", 1);
    assert_string_equal(details(e, r), "1024 1488 1 2000 -0.5428 true");

    r = reading_new(&dev_smoke);
    gw_reading_add_bool(r, "misuse", true);
    assert_string_equal(details(e, r),
                        "false false false false false false false false false locked");
    assert_int_equal(stats_of(e).errors, 0);
    rule_engine_free(e);

    /* Only inside handlers. */
    {
        char *msg = load_error("local w = window('x', 10)\n");
        assert_string_equal(msg, "bad.lua:1: window can only be used inside on_reading, "
                                 "on_event or on_silence");
        free(msg);
    }
}

static void test_held(void **state)
{
    struct rule_engine *e = engine_with(
        "rule{ name = 'h', match = { field = 't' }, on_reading = function(r)\n"
        "  local hot = held('hot', r.t > 50, 30)\n"
        "  local now_ = held('now', r.t > 50, 0)\n"
        "  local str = held('str', r.t > 50, '30s')\n"
        "  open_case{ category = 'c', severity = 'info', title = 'h', detail =\n"
        "             tostring(hot) .. ' ' .. tostring(now_) .. ' ' .. tostring(str) }\n"
        "end }\n");
    static const struct {
        const struct gw_device *dev;
        int t_s;
        double temp;
        const char *want;
    } steps[] = {
        { &dev_smoke, 0, 60, "false true false" },   { &dev_smoke, 10, 70, "false true false" },
        { &dev_door, 20, 70, "false true false" },   { &dev_smoke, 30, 60, "true true true" },
        { &dev_smoke, 40, 40, "false false false" }, { &dev_smoke, 50, 60, "false true false" },
        { &dev_door, 50, 70, "true true true" },     { &dev_smoke, 79, 60, "false true false" },
        { &dev_smoke, 80, 60, "true true true" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct gw_reading *r = reading_at(steps[i].dev, TS_NS + steps[i].t_s * SEC);
        char *got;
        gw_reading_add_number(r, "t", steps[i].temp);
        got = details(e, r);
        if (strcmp(got, steps[i].want) != 0)
            fail_msg("step %zu: got \"%s\", want \"%s\"", i, got, steps[i].want);
    }
    assert_int_equal(stats_of(e).errors, 0);
    rule_engine_free(e);
}

/* ---- failure isolation -------------------------------------------------- */

/* stderr (the log) into a file while a test part runs, read back after. */
struct capture {
    int saved;
    char path[64];
};

static void capture_begin(struct capture *c)
{
    int fd;

    strcpy(c->path, "/tmp/gridgate-rules-log-XXXXXX");
    fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0 && dup2(fd, 2) >= 0);
    close(fd);
}

static char *capture_end(struct capture *c)
{
    static char text[65536];
    FILE *f;
    size_t n;

    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    f = fopen(c->path, "rb");
    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(c->path);
    return text;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;

    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int64_t test_clock_ns;

static int64_t test_clock(void *ud)
{
    assert_ptr_equal(ud, &test_clock_ns);
    return test_clock_ns;
}

static const struct rule_limits quarantine_limits = {
    .instruction_budget = 200000,
    .memory_bytes = 16 << 20,
    .device_failures = 3,
    .rule_devices = 3,
    .quarantine_s = 60,
};

static const char flaky_source[] =
    "rule{ name = 'flaky', on_reading = function(r)\n"
    "  if r.fail then error('failing as asked') end\n"
    "  open_case{ category = 'c', severity = 'info', title = 'flaky' }\n"
    "end, on_event = function(e)\n"
    "  open_case{ category = 'c', severity = 'info', title = 'flaky event' }\n"
    "end }\n"
    "rule{ name = 'steady', on_reading = function(r)\n"
    "  open_case{ category = 'c', severity = 'info', title = 'steady' }\n"
    "end }\n";

/* Runs a reading from d, failing or not; returns the titles. */
static char *try_device(struct rule_engine *e, const struct gw_device *d, bool fail)
{
    struct gw_reading *r = reading_new(d);

    gw_reading_add_bool(r, "fail", fail);
    return details(e, r);
}

static void test_quarantine_device(void **state)
{
    static const int64_t backoff[] = { 60, 120, 240, 480, 960, 1920, 3600, 3600 };
    struct rule_engine *e = engine_with_limits(flaky_source, &quarantine_limits);
    const struct rule_info *info;

    struct capture cap;
    char *log;

    (void)state;
    test_clock_ns = 1000 * SEC;
    rule_engine_set_clock(e, test_clock, &test_clock_ns);

    /* Three failures in a row for one device: quarantined for it, with
     * one line in the log when it starts and one when it ends. */
    gw_log_set_level(GW_LOG_INFO);
    capture_begin(&cap);
    for (int i = 0; i < 3; i++)
        try_device(e, &dev_smoke, true);
    for (int i = 0; i < 5; i++)
        try_device(e, &dev_smoke, true);
    test_clock_ns += 60 * SEC;
    try_device(e, &dev_smoke, false);
    log = capture_end(&cap);
    gw_log_set_level(GW_LOG_ERROR);
    assert_int_equal(count_of(log, "failed for device smoke-000001"), 3);
    assert_int_equal(count_of(log, "[rule flaky]"), 3 + 2);
    assert_int_equal(count_of(log, "/rules.lua:1: quarantined for device smoke-000001 for 60 s "
                                   "after 3 failures in a row"),
                     1);
    assert_int_equal(count_of(log, "/rules.lua:1: quarantine for device smoke-000001 ended after "
                                   "60 s; trying again"),
                     1);
    assert_int_equal(stats_of(e).quarantine_skips, 5);
    rule_engine_free(e);
    e = engine_with_limits(flaky_source, &quarantine_limits);
    rule_engine_set_clock(e, test_clock, &test_clock_ns);
    test_clock_ns = 1000 * SEC;

    for (int i = 0; i < 3; i++)
        assert_string_equal(try_device(e, &dev_smoke, true), "steady");
    assert_int_equal(stats_of(e).quarantines, 1);
    info = info_of(e, "flaky");
    assert_int_equal(info->quarantined_devices, 1);
    assert_false(info->quarantined);
    assert_true(info->calls == 3 && info->errors == 3);
    /* Skipped for it (not an error), on every handler; others run it. */
    assert_string_equal(try_device(e, &dev_smoke, false), "steady");
    assert_string_equal(details(e, event_at(&dev_smoke, GW_CHANNEL_EVENT, TS_NS)), "");
    assert_string_equal(try_device(e, &dev_door, false), "flaky|steady");
    assert_int_equal(stats_of(e).quarantine_skips, 2);
    assert_int_equal(stats_of(e).errors, 3);
    assert_int_equal(info_of(e, "flaky")->calls, 4);

    /* 60 s later it is tried again; failing again at once is a relapse:
     * quarantined again, for twice as long. */
    test_clock_ns += 59 * SEC;
    assert_string_equal(try_device(e, &dev_smoke, true), "steady");
    assert_int_equal(stats_of(e).errors, 3);
    test_clock_ns += 1 * SEC;
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 0);
    assert_string_equal(try_device(e, &dev_smoke, true), "steady");
    assert_int_equal(stats_of(e).errors, 4);
    assert_int_equal(stats_of(e).quarantines, 2);
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 1);
    test_clock_ns += 119 * SEC;
    assert_string_equal(try_device(e, &dev_smoke, false), "steady");
    test_clock_ns += 1 * SEC;
    /* A success ends the backoff: the count starts again from zero. */
    assert_string_equal(try_device(e, &dev_smoke, false), "flaky|steady");
    assert_string_equal(try_device(e, &dev_smoke, true), "steady");
    assert_string_equal(try_device(e, &dev_smoke, true), "steady");
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 0);
    assert_string_equal(try_device(e, &dev_smoke, true), "steady");
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 1);
    assert_int_equal(stats_of(e).quarantines, 3);
    test_clock_ns += 60 * SEC; /* back to 60 s, not 240 */
    assert_string_equal(try_device(e, &dev_smoke, false), "flaky|steady");
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 0);

    /* The backoff doubles up to one hour. */
    for (int i = 0; i < 3; i++)
        try_device(e, &dev_smoke, true);
    for (size_t i = 0; i < sizeof(backoff) / sizeof(backoff[0]); i++) {
        assert_int_equal(info_of(e, "flaky")->quarantined_devices, 1);
        test_clock_ns += backoff[i] * SEC - 1;
        assert_int_equal(info_of(e, "flaky")->quarantined_devices, 1);
        test_clock_ns += 1;
        try_device(e, &dev_smoke, true); /* a relapse */
    }
    test_clock_ns += 3600 * SEC - 1;
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 1);
    test_clock_ns += 1;
    assert_string_equal(try_device(e, &dev_smoke, false), "flaky|steady");
    rule_engine_free(e);
}

static void test_quarantine_rule(void **state)
{
    struct rule_engine *e = engine_with_limits(flaky_source, &quarantine_limits);
    struct gw_device devs[3];
    char id[32];
    uint64_t quarantines;

    (void)state;
    test_clock_ns = 5000 * SEC;
    rule_engine_set_clock(e, test_clock, &test_clock_ns);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "bad-%d", i);
        device_init(&devs[i], id, "smoke", &grid_home);
    }
    /* Two devices in quarantine: the rule still runs for others. */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            try_device(e, &devs[i], true);
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 2);
    assert_string_equal(try_device(e, &dev_door, false), "flaky|steady");
    /* The third: the whole rule, for every device. */
    for (int j = 0; j < 3; j++)
        try_device(e, &devs[2], true);
    assert_true(info_of(e, "flaky")->quarantined);
    assert_int_equal(info_of(e, "flaky")->quarantined_devices, 0); /* folded into the rule's */
    assert_int_equal(stats_of(e).quarantines, 4);
    assert_string_equal(try_device(e, &dev_door, false), "steady");
    assert_string_equal(try_device(e, &dev_smoke, false), "steady");
    assert_string_equal(details(e, event_at(&dev_door, GW_CHANNEL_EVENT, TS_NS)), "");
    assert_int_equal(info_of(e, "steady")->errors, 0);

    /* 60 s: tried again. The same three fail at once (each one on
     * probation): the rule again, for twice as long. */
    test_clock_ns += 60 * SEC;
    assert_false(info_of(e, "flaky")->quarantined);
    for (int i = 0; i < 3; i++)
        try_device(e, &devs[i], true);
    assert_true(info_of(e, "flaky")->quarantined);
    quarantines = stats_of(e).quarantines;
    assert_int_equal(quarantines, 4 + 3 + 1);
    test_clock_ns += 119 * SEC;
    assert_true(info_of(e, "flaky")->quarantined);
    assert_string_equal(try_device(e, &dev_door, false), "steady");
    test_clock_ns += 1 * SEC;
    assert_string_equal(try_device(e, &dev_door, false), "flaky|steady");

    /* A reload (a fresh engine taking over the state) ends quarantines. */
    for (int i = 0; i < 3; i++)
        try_device(e, &devs[i], true);
    assert_true(info_of(e, "flaky")->quarantined);
    {
        struct rule_engine *fresh = engine_with_limits(flaky_source, &quarantine_limits);
        rule_engine_set_clock(fresh, test_clock, &test_clock_ns);
        assert_int_equal(rule_engine_adopt_state(fresh, e), 0);
        assert_false(info_of(fresh, "flaky")->quarantined);
        assert_string_equal(try_device(fresh, &devs[0], false), "flaky|steady");
        rule_engine_free(fresh);
    }
    for (int i = 0; i < 3; i++)
        device_clear(&devs[i]);
    rule_engine_free(e);
}

/* ---- reload ------------------------------------------------------------- */

static const char adopt_source[] =
    "rule{ name = 'keep', silence = '1m', on_silence = function(d, state)\n"
    "  open_case{ category = 'c', severity = 'info', title = 'silent', detail = 'silent' }\n"
    "end, on_reading = function(r, state)\n"
    "  local had_fn = state.fn ~= nil\n"
    "  local cycle = state.cyc ~= nil and state.cyc.self == state.cyc\n"
    "  local shared = state.a ~= nil and state.a == state.b\n"
    "  state.n = (state.n or 0) + 1\n"
    "  state.nested = state.nested or { a = { b = { c = 'deep' } }, list = { 1, 2.5, 'x' },\n"
    "                                  flag = false, [7] = true, ['with\\0zero'] = 'ok' }\n"
    "  state.fn = function() end\n"
    "  state.cyc = state.cyc or {}\n"
    "  state.cyc.self = state.cyc\n"
    "  state.a = state.a or {}\n"
    "  state.b = state.a\n"
    "  local deep = state.deep\n"
    "  if not deep then\n"
    "    deep = {}\n"
    "    local t = deep\n"
    "    for i = 1, 40 do t.next = {}; t = t.next end\n"
    "    state.deep = deep\n"
    "  end\n"
    "  local depth, t = 0, state.deep\n"
    "  while t.next do depth = depth + 1; t = t.next end\n"
    "  local w = window('v', 600)\n"
    "  w:push(r.v)\n"
    "  local h = held('on', true, 60)\n"
    "  local nested = state.nested\n"
    "  open_case{ category = 'c', severity = 'info', title = 'keep', detail = table.concat({\n"
    "    state.n, nested.a.b.c, tostring(nested.flag), #nested.list, math.type(nested.list[1]),\n"
    "    tostring(nested[7]), nested['with\\0zero'], w:count(), w:avg(), tostring(h),\n"
    "    tostring(had_fn), tostring(cycle), tostring(shared), depth }, ' ') }\n"
    "end }\n";

static char *adopt_reading(struct rule_engine *e, const struct gw_device *d, int64_t t_s, double v)
{
    struct gw_reading *r = reading_at(d, TS_NS + t_s * SEC);

    gw_reading_add_number(r, "v", v);
    return details(e, r);
}

static void test_adopt_state(void **state)
{
    struct rule_engine *old = engine_with(adopt_source);
    struct rule_engine *fresh;
    char *source;

    (void)state;
    assert_string_equal(adopt_reading(old, &dev_smoke, 0, 10),
                        "1 deep false 3 integer true ok 1 10.0 false false false false 40");
    assert_string_equal(adopt_reading(old, &dev_smoke, 30, 20),
                        "2 deep false 3 integer true ok 2 15.0 false true true true 40");
    assert_string_equal(adopt_reading(old, &dev_door, 30, 5),
                        "1 deep false 3 integer true ok 1 5.0 false false false false 40");
    /* The silence episode of smoke-000001 fires in the old engine. */
    assert_string_equal(silence_details(old, &dev_smoke, TS_NS + 100 * SEC, TS_NS + 30 * SEC, 0),
                        "silent");

    /* The fresh engine has one more rule, and the old one's 'keep'. */
    assert_true(asprintf(&source, "%s%s", adopt_source,
                         "rule{ name = 'new', on_reading = function(r, state)\n"
                         "  state.x = (state.x or 0) + 1\n"
                         "end }\n") > 0);
    fresh = engine_with(source);
    free(source);
    assert_int_equal(rule_engine_adopt_state(fresh, old), 0);
    rule_engine_free(old);

    /* The silence episode went on: no second case for the same silence. */
    assert_string_equal(silence_details(fresh, &dev_smoke, TS_NS + 200 * SEC, TS_NS + 30 * SEC, 0),
                        "");
    /* State, windows and held timers went on; functions did not, tables
     * nested deeper than the bound were cut, cycles and sharing are kept. */
    assert_string_equal(adopt_reading(fresh, &dev_smoke, 60, 30),
                        "3 deep false 3 integer true ok 3 20.0 true false true true 30");
    assert_string_equal(adopt_reading(fresh, &dev_door, 60, 7),
                        "2 deep false 3 integer true ok 2 6.0 false false true true 30");
    /* Heard from again: the next silence is a new episode. */
    assert_string_equal(silence_details(fresh, &dev_smoke, TS_NS + 300 * SEC, TS_NS + 60 * SEC, 0),
                        "silent");
    /* The rule only the fresh engine has runs with fresh state. */
    assert_int_equal(info_of(fresh, "new")->calls, 2);
    assert_int_equal(stats_of(fresh).errors, 0);
    rule_engine_free(fresh);
}

/* A worker's reload: the same engine loads the model's files and the new
 * rules take the old ones' maps by reference, so even what a copy would
 * drop (functions, deep nesting) goes on. */
static void test_reload_in_place(void **state)
{
    struct rule_engine *e = engine_with(adopt_source);
    struct rule_engine *model, *tight;
    struct rule_limits tight_limits = test_limits;
    char *source, *error = NULL;

    (void)state;
    adopt_reading(e, &dev_smoke, 0, 10);
    adopt_reading(e, &dev_smoke, 30, 20);
    adopt_reading(e, &dev_door, 30, 5);
    assert_string_equal(silence_details(e, &dev_smoke, TS_NS + 100 * SEC, TS_NS + 30 * SEC, 0),
                        "silent");
    assert_true(asprintf(&source, "%s%s", adopt_source,
                         "rule{ name = 'new', on_reading = function(r, state)\n"
                         "  state.x = (state.x or 0) + 1\n"
                         "end }\n") > 0);
    model = engine_with(source);
    free(source);

    /* A file that cannot load here (a lower memory cap than the model's)
     * leaves the running rules as they were. */
    tight_limits.memory_bytes = 2 * 1024 * 1024;
    tight = engine_with_limits("rule{ name = 'keep', on_reading = function() end }\n", &tight_limits);
    {
        struct rule_engine *big = engine_with("local big = {}\n"
                                              "for i = 1, 4 do big[i] = string.rep('x', 1048576) .. i end\n"
                                              "rule{ name = 'keep', on_reading = function() end }\n");
        assert_int_equal(rule_engine_reload_like(tight, big, &error), -ENOMEM);
        assert_non_null(error);
        free(error);
        error = NULL;
        assert_int_equal(rule_engine_rule_count(tight), 1);
        rule_engine_free(big);
    }
    rule_engine_free(tight);
    assert_int_equal(rule_engine_reload_like(e, e, &error), -EINVAL);

    assert_int_equal(rule_engine_reload_like(e, model, &error), 0);
    rule_engine_free(model);
    assert_int_equal(rule_engine_rule_count(e), 2);
    /* The episode goes on; state, windows and held timers, functions and
     * deep tables included, go on. */
    assert_string_equal(silence_details(e, &dev_smoke, TS_NS + 200 * SEC, TS_NS + 30 * SEC, 0), "");
    assert_string_equal(adopt_reading(e, &dev_smoke, 60, 30),
                        "3 deep false 3 integer true ok 3 20.0 true true true true 40");
    assert_string_equal(adopt_reading(e, &dev_door, 60, 7),
                        "2 deep false 3 integer true ok 2 6.0 false true true true 40");
    assert_string_equal(silence_details(e, &dev_smoke, TS_NS + 300 * SEC, TS_NS + 60 * SEC, 0),
                        "silent");
    assert_int_equal(info_of(e, "new")->calls, 2);
    assert_int_equal(stats_of(e).errors, 0);
    rule_engine_free(e);
}

/* Windows and held timers are kept in C (rule_window.c): only for the
 * devices a rule keeps one for, counted against the memory cap like the
 * Lua heap, and a handle whose window is gone is refused. */
static void test_window_storage(void **state)
{
    struct rule_limits limits = test_limits;
    struct rule_engine *e, *model;
    struct gw_device devs[100];
    char id[32], *error = NULL;
    size_t m0, m1, m2;

    (void)state;
    /* Lazy: 100 devices whose readings never reach window() cost (next
     * to) nothing; a window for each costs at least its window. */
    e = engine_with("rule{ name = 'lazy', match = { field = 'v' }, on_reading = function(r)\n"
                    "  if r.v > 0 then window('w', 60):push(r.v) end\n"
                    "end }\n");
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "smoke-%06d", 100 + i);
        device_init(&devs[i], id, "smoke", &grid_home);
    }
    m0 = rule_engine_memory(e);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 100; i++) {
            struct gw_reading *r = reading_at(&devs[i], TS_NS + pass * SEC);
            gw_reading_add_number(r, "v", pass);
            details(e, r);
        }
        if (pass == 0)
            m1 = rule_engine_memory(e);
    }
    m2 = rule_engine_memory(e);
    assert_int_equal(stats_of(e).errors, 0);
    if (m1 > m0 + 100 * 64 || m2 < m1 + 100 * 64)
        fail_msg("memory: %zu, %zu after 100 devices without a window, %zu with one each", m0, m1,
                 m2);
    rule_engine_free(e);

    /* Capped: a rule that makes windows without end fails on the memory
     * cap, as one that fills tables does, and stays under it. */
    limits.instruction_budget = 100000000;
    limits.memory_bytes = 256 << 10;
    e = engine_with_limits("rule{ name = 'many', match = { field = 'many' }, on_reading = "
                           "function(r)\n"
                           "  for i = 1, 10000000 do window('p' .. i, 3600) end\n"
                           "end }\n",
                           &limits);
    {
        struct gw_reading *r = reading_at(&dev_smoke, TS_NS);
        gw_reading_add_number(r, "many", 1);
        details(e, r);
        assert_int_equal(stats_of(e).memory_exceeded, 1);
        assert_true(rule_engine_memory(e) <= limits.memory_bytes + 4096);
    }
    rule_engine_free(e);

    /* A device's windows and timers are counted in 16 bits: past that, a
     * clear error, not a wrapped count (reached over many calls: one call
     * runs out of time first). */
    limits.memory_bytes = 64 << 20;
    e = engine_with_limits("local n = 0\n"
                           "rule{ name = 'many', match = { field = 'many' }, on_reading = "
                           "function(r)\n"
                           "  for i = 1, 100 do n = n + 1; window(n, 3600) end\n"
                           "end }\n",
                           &limits);
    for (int call = 0; call < 700 && stats_of(e).errors == 0; call++) {
        struct gw_reading *r = reading_at(&dev_smoke, TS_NS);
        gw_reading_add_number(r, "many", 1);
        details(e, r);
    }
    assert_int_equal(stats_of(e).errors, 1);
    assert_int_equal(stats_of(e).calls, 656); /* 655 calls of 100, then the 65,536th */
    assert_int_equal(stats_of(e).memory_exceeded, 0);
    rule_engine_free(e);
    limits.memory_bytes = 512 << 10;
    e = engine_with_limits("rule{ name = 'deep', match = { field = 'v' }, on_reading = function(r)\n"
                           "  for d = 1, 1000 do\n"
                           "    local w = window('d' .. d, 3600)\n"
                           "    for i = 1, 2000 do w:push(i) end\n"
                           "  end\n"
                           "end }\n",
                           &limits);
    {
        struct gw_reading *r = reading_at(&dev_smoke, TS_NS);
        gw_reading_add_number(r, "v", 1);
        details(e, r);
        assert_int_equal(stats_of(e).memory_exceeded, 1);
        assert_true(rule_engine_memory(e) <= limits.memory_bytes + 4096);
    }
    rule_engine_free(e);

    /* A reload that drops a rule frees its windows; a handle to one kept
     * in another rule's state is refused afterwards, never followed. */
    static const char keep_src[] =
        "local shared = {}\n"
        "rule{ name = 'y', match = { field = 'v' }, on_reading = function(r)\n"
        "  shared.w = window('y', 60)\n"
        "  shared.w:push(r.v)\n"
        "end }\n"
        "rule{ name = 'x', match = { field = 'v' }, on_reading = function(r, state)\n"
        "  state.w = state.w or shared.w\n"
        "  local ok, err = pcall(function() return state.w:count() end)\n"
        "  local mine = window('x', 60):push(r.v):count()\n"
        "  open_case{ category = 'c', severity = 'info', title = 'x',\n"
        "             detail = tostring(ok) .. ' ' .. tostring(err) .. ' ' .. mine }\n"
        "end }\n";
    e = engine_with(keep_src);
    {
        struct gw_reading *r = reading_at(&dev_smoke, TS_NS);
        gw_reading_add_number(r, "v", 1);
        assert_string_equal(details(e, r), "true 1 1");
    }
    model = engine_with("rule{ name = 'x', match = { field = 'v' }, on_reading = function(r, state)\n"
                        "  local ok, err = pcall(function() return state.w:count() end)\n"
                        "  local mine = window('x', 60):push(r.v):count()\n"
                        "  open_case{ category = 'c', severity = 'info', title = 'x',\n"
                        "             detail = tostring(ok) .. ' ' .. tostring(err) .. ' ' .. mine }\n"
                        "end }\n");
    m1 = rule_engine_memory(e);
    assert_int_equal(rule_engine_reload_like(e, model, &error), 0);
    rule_engine_free(model);
    {
        struct gw_reading *r = reading_at(&dev_smoke, TS_NS + SEC);
        const char *got;
        gw_reading_add_number(r, "v", 2);
        got = details(e, r);
        /* x's own window went on (2 points); y's is gone. */
        if (!strstr(got, "false ") || !strstr(got, "no longer exists") ||
            strcmp(got + strlen(got) - 2, " 2") != 0)
            fail_msg("after the reload: %s", got);
    }
    assert_int_equal(stats_of(e).errors, 0);
    rule_engine_free(e);
    for (int i = 0; i < 100; i++)
        device_clear(&devs[i]);
}

/* The tables behind r are reused from reading to reading: nothing of one
 * reading shows in the next, and an r kept past its call is refused. */
static void test_r_reuse(void **state)
{
    struct rule_engine *e = engine_with(
        "local function show(x)\n"
        "  local keys = {}\n"
        "  for k, v in pairs(x) do\n"
        "    if k ~= 'grid' and k ~= 'fields' and k ~= 'ts' then\n"
        "      keys[#keys + 1] = k .. '=' .. tostring(v)\n"
        "    end\n"
        "  end\n"
        "  for k, v in pairs(x.fields) do keys[#keys + 1] = 'f.' .. k .. '=' .. tostring(v) end\n"
        "  table.sort(keys)\n"
        "  return table.concat(keys, ' ') .. ' grid=' .. tostring(x.grid and x.grid.id)\n"
        "end\n"
        "rule{ name = 'show', on_reading = function(r, state)\n"
        "  local kept = 'none'\n"
        "  if state.r then kept = tostring(pcall(function() return state.r.device end)) end\n"
        "  state.r = r\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail = show(r) ..\n"
        "             ' kept=' .. kept }\n"
        "end, on_event = function(e)\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail = show(e) }\n"
        "end }\n"
        "rule{ name = 'same', on_reading = function(r, state)\n"
        "  open_case{ category = 'c', severity = 'info', title = 't', detail = tostring(r.a) }\n"
        "end }\n");
    struct gw_device nogrid;
    struct gw_reading *r;

    (void)state;
    device_init(&nogrid, "nogrid-1", "smoke", NULL);
    r = reading_new(&dev_smoke);
    gw_reading_add_number(r, "a", 1);
    gw_reading_add_string(r, "b", "x");
    assert_string_equal(details(e, r), "a=1.0 b=x device=smoke-000001 f.a=1.0 f.b=x type=smoke "
                                       "grid=110101001001001 kept=none|1.0");
    r = reading_new(&dev_door);
    gw_reading_add_number(r, "c", 3);
    assert_string_equal(details(e, r),
                        "c=3.0 device=door-000001 f.c=3.0 type=door grid=110101001001001 "
                        "kept=none|nil");
    /* The same keys again: only the values change. */
    r = reading_new(&dev_door);
    gw_reading_add_number(r, "c", 4);
    assert_string_equal(details(e, r),
                        "c=4.0 device=door-000001 f.c=4.0 type=door grid=110101001001001 "
                        "kept=false|nil");
    r = event_at(&dev_door, GW_CHANNEL_STATUS, TS_NS);
    gw_reading_add_string(r, "status", "online");
    assert_string_equal(details(e, r), "device=door-000001 f.status=online kind=status "
                                       "status=online type=door grid=110101001001001");
    r = event_at(&dev_door, GW_CHANNEL_EVENT, TS_NS);
    gw_reading_add_string(r, "status", "whatever");
    assert_string_equal(details(e, r), "device=door-000001 f.status=whatever kind=event "
                                       "status=whatever type=door grid=110101001001001");
    r = reading_new(&nogrid);
    gw_reading_add_number(r, "c", 5);
    assert_string_equal(details(e, r), "c=5.0 device=nogrid-1 f.c=5.0 type=smoke grid=nil "
                                       "kept=none|nil");
    assert_int_equal(stats_of(e).errors, 0);
    device_clear(&nogrid);
    rule_engine_free(e);
}

/* ---- the shipped rules -------------------------------------------------- */

/* The first action of `kind` asked for by `rule`, or NULL. */
static const struct rule_action *find_action(const struct rule_actions *actions, const char *rule,
                                             enum rule_action_kind kind)
{
    for (size_t i = 0; i < actions->n; i++)
        if (actions->items[i].kind == kind && strcmp(actions->items[i].rule, rule) == 0)
            return &actions->items[i];
    return NULL;
}

static size_t count_kind(const struct rule_actions *actions, enum rule_action_kind kind)
{
    size_t n = 0;

    for (size_t i = 0; i < actions->n; i++)
        n += actions->items[i].kind == kind;
    return n;
}

static char *file_hash_of(const char *path)
{
    static char hex[RULE_SHA256_HEX_LEN + 1];
    char *data = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = (size_t)ftell(f);
    rewind(f);
    data = malloc(len + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, len, f), len);
    fclose(f);
    rule_sha256_hex(data, len, hex);
    free(data);
    return hex;
}

/* The rule set in rules/ as shipped (its own *_test.lua files test it in
 * depth with `gridgate rules test`); here: that it loads, runs on each
 * kind of input without errors, and carries provenance. */
static void test_shipped_rules(void **state)
{
    struct rule_engine *e = rule_engine_new(NULL);
    struct rule_actions actions = { 0 };
    struct rule_silence silence;
    struct gw_reading *r;
    char *error = NULL;
    const struct rule_action *a;
    const int64_t hour = 3600 * 1000000000LL;

    (void)state;
    assert_non_null(e);
    if (rule_engine_load_dir(e, GW_SOURCE_DIR "/rules", &error) < 0)
        fail_msg("shipped rules: %s", error);
    assert_true(rule_engine_rule_count(e) >= 1);

    /* High smoke in a residential grid: major, for the firefighter. */
    r = reading_new(&dev_smoke);
    gw_reading_add_number(r, "smoke", 0.18);
    gw_reading_add_bool(r, "alarm", false);
    gw_reading_add_number(r, "battery", 87);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    a = find_action(&actions, "fire.smoke", RULE_ACTION_OPEN_CASE);
    assert_non_null(a);
    assert_string_equal(a->category, "fire.smoke");
    assert_int_equal(a->severity, GW_SEVERITY_MAJOR);
    assert_true(a->has_role);
    assert_int_equal(a->role, GW_ROLE_FIREFIGHTER);
    assert_string_equal(a->title, "烟感报警 smoke-000001");
    assert_string_equal(a->subject, "smoke-000001");
    assert_non_null(strstr(a->detail, "0.180"));
    assert_non_null(strstr(a->file, "/rules/fire.lua:"));
    assert_false(a->shadow);
    assert_string_equal(a->file_hash, file_hash_of(GW_SOURCE_DIR "/rules/fire.lua"));
    assert_int_equal(count_kind(&actions, RULE_ACTION_OPEN_CASE), 1);
    rule_actions_clear(&actions);

    /* The same in a crowded grid at level attention: critical. */
    r = reading_new(&dev_smoke2);
    gw_reading_add_number(r, "smoke", 0.18);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    a = find_action(&actions, "fire.smoke", RULE_ACTION_OPEN_CASE);
    assert_non_null(a);
    assert_int_equal(a->severity, GW_SEVERITY_CRITICAL);
    rule_actions_clear(&actions);

    /* A normal reading: no case. */
    r = reading_new(&dev_smoke);
    gw_reading_add_number(r, "smoke", 0.03);
    gw_reading_add_bool(r, "alarm", false);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    assert_int_equal(count_kind(&actions, RULE_ACTION_OPEN_CASE), 0);
    rule_actions_clear(&actions);

    /* A low battery on any device: a minor case for the grid manager. */
    r = reading_new(&dev_door);
    gw_reading_add_number(r, "battery", 12);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    a = find_action(&actions, "device.battery", RULE_ACTION_OPEN_CASE);
    assert_non_null(a);
    assert_int_equal(a->severity, GW_SEVERITY_MINOR);
    assert_int_equal(a->role, GW_ROLE_MANAGER);
    rule_actions_clear(&actions);

    /* Status offline: a case for the manager. */
    r = gw_reading_new(dev_door.id, GW_CHANNEL_STATUS, TS_NS);
    r->device = &dev_door;
    gw_reading_add_string(r, "status", "offline");
    assert_int_equal(rule_engine_on_event(e, r, &actions), 0);
    gw_reading_unref(r);
    assert_non_null(find_action(&actions, "device.offline", RULE_ACTION_OPEN_CASE));
    rule_actions_clear(&actions);

    /* Silence: twice a 12 h heartbeat, once per silence. */
    assert_true(rule_engine_silence_threshold(e, &dev_door, 12 * hour) == 24 * hour);
    silence = (struct rule_silence){
        .now_ns = TS_NS + 25 * hour,
        .last_seen_ns = TS_NS,
        .silent_ns = 25 * hour,
        .heartbeat_ns = 12 * hour,
    };
    assert_int_equal(rule_engine_on_silence(e, &dev_door, &silence, &actions), 0);
    assert_non_null(find_action(&actions, "device.silent", RULE_ACTION_OPEN_CASE));
    rule_actions_clear(&actions);
    silence.now_ns += hour;
    silence.silent_ns += hour;
    assert_int_equal(rule_engine_on_silence(e, &dev_door, &silence, &actions), 0);
    assert_int_equal(actions.n, 0);

    assert_int_equal(stats_of(e).errors, 0);
    rule_actions_free(&actions);
    rule_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_filtering),
        cmocka_unit_test(test_events_do_not_run_on_reading),
        cmocka_unit_test(test_open_case_fields),
        cmocka_unit_test(test_action_argument_errors),
        cmocka_unit_test(test_actions_only_inside_on_reading),
        cmocka_unit_test(test_clear_case),
        cmocka_unit_test(test_case_marks_reload),
        cmocka_unit_test(test_emit_types),
        cmocka_unit_test(test_failing_rule_does_not_stop_others),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_pathological_pattern),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_binary_chunk_refused),
        cmocka_unit_test(test_undeclared_globals),
        cmocka_unit_test(test_top_level_locals),
        cmocka_unit_test(test_r_table),
        cmocka_unit_test(test_state_per_device),
        cmocka_unit_test(test_r_reuse),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_dir),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_shadow_hash_and_info),
        cmocka_unit_test(test_on_event),
        cmocka_unit_test(test_silence_threshold),
        cmocka_unit_test(test_silence_episodes),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_held),
        cmocka_unit_test(test_quarantine_device),
        cmocka_unit_test(test_quarantine_rule),
        cmocka_unit_test(test_adopt_state),
        cmocka_unit_test(test_reload_in_place),
        cmocka_unit_test(test_window_storage),
        cmocka_unit_test(test_shipped_rules),
    };

    /* Rule failures are expected here; keep the output to them. */
    gw_log_set_level(GW_LOG_ERROR);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
