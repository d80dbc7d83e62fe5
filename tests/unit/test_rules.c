/* Unit tests of the rule engine: loading, matching, actions, the sandbox
 * and its limits, and the shipped rule set. Rule files are written to
 * temporary directories under /tmp and removed afterwards. */
#include <dirent.h>
#include <errno.h>
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
static struct rule_engine *engine_with(const char *source)
{
    struct rule_engine *e = engine_new();
    struct tmp_dir t;
    char *error = NULL;
    int r;

    tmp_dir_make(&t);
    tmp_dir_write(&t, "rules.lua", source);
    r = rule_engine_load_dir(e, t.path, &error);
    if (r < 0)
        fail_msg("load failed: %s", error ? error : "?");
    tmp_dir_remove(&t);
    return e;
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
    assert_string_equal(msg, "bad.lua:1: open_case can only be used inside on_reading");
    free(msg);
}

static void test_clear_case(void **state)
{
    struct rule_engine *e = engine_with("rule{ name = 'clear', on_reading = function(r)\n"
                                        "  clear_case{}\n"
                                        "  clear_case{ subject = 'room-3' }\n"
                                        "  clear_case()\n"
                                        "end }\n");
    struct gw_reading *r = reading_new(&dev_door);
    struct rule_actions actions = { 0 };

    (void)state;
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    assert_int_equal(actions.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(actions.items[i].kind, RULE_ACTION_CLEAR_CASE);
        assert_string_equal(actions.items[i].rule, "clear");
        assert_true(actions.items[i].ts_ns == TS_NS);
    }
    assert_string_equal(actions.items[0].subject, "door-000001");
    assert_string_equal(actions.items[1].subject, "room-3");
    assert_string_equal(actions.items[2].subject, "door-000001");
    rule_actions_free(&actions);
    gw_reading_unref(r);
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
          "bad.lua:1: rule{}: unknown key 'on_readin' (name, match, on_reading)" },
        { "rule{ match = {}, on_reading = function() end }\n",
          "bad.lua:1: rule{}: name is required" },
        { "rule{ name = 'x' }\n",
          "bad.lua:1: rule{}: rule 'x' needs on_reading = function(r, state) ... end" },
        { "rule{ name = 'x', on_event = function() end, on_reading = function() end }\n",
          "bad.lua:1: rule{}: on_event is not supported yet (only on_reading)" },
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

/* ---- the shipped rules -------------------------------------------------- */

static void test_shipped_rules(void **state)
{
    struct rule_engine *e = rule_engine_new(NULL);
    struct rule_actions actions = { 0 };
    struct gw_reading *r;
    char *error = NULL;
    const struct rule_action *a;

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
    assert_int_equal(actions.n, 2); /* the smoke case, and the battery rule's clear */
    a = actions.items[0].kind == RULE_ACTION_OPEN_CASE ? &actions.items[0] : &actions.items[1];
    assert_int_equal(a->kind, RULE_ACTION_OPEN_CASE);
    assert_string_equal(a->rule, "fire.smoke");
    assert_string_equal(a->category, "fire.smoke");
    assert_int_equal(a->severity, GW_SEVERITY_MAJOR);
    assert_true(a->has_role);
    assert_int_equal(a->role, GW_ROLE_FIREFIGHTER);
    assert_string_equal(a->title, "烟感报警 smoke-000001");
    assert_string_equal(a->subject, "smoke-000001");
    assert_non_null(strstr(a->detail, "0.180"));
    assert_non_null(strstr(a->file, "/rules/smoke.lua:"));
    rule_actions_clear(&actions);

    /* The same in a crowded grid: critical. */
    r = reading_new(&dev_smoke2);
    gw_reading_add_number(r, "smoke", 0.18);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    assert_int_equal(actions.n, 1);
    assert_int_equal(actions.items[0].severity, GW_SEVERITY_CRITICAL);
    assert_int_equal(actions.items[0].role, GW_ROLE_FIREFIGHTER);
    rule_actions_clear(&actions);

    /* The detector's own alarm alone also opens it. */
    r = reading_new(&dev_smoke);
    gw_reading_add_number(r, "smoke", 0.03);
    gw_reading_add_bool(r, "alarm", true);
    assert_string_equal(run_titles(e, r), "烟感报警 smoke-000001");

    /* A normal reading: nothing. */
    r = reading_new(&dev_smoke);
    gw_reading_add_number(r, "smoke", 0.03);
    gw_reading_add_bool(r, "alarm", false);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    assert_int_equal(actions.n, 0);

    /* A low battery on any device: a minor case for the grid manager. */
    r = reading_new(&dev_door);
    gw_reading_add_number(r, "battery", 12);
    assert_int_equal(rule_engine_on_reading(e, r, &actions), 0);
    gw_reading_unref(r);
    assert_int_equal(actions.n, 1);
    assert_string_equal(actions.items[0].category, "device.battery");
    assert_int_equal(actions.items[0].severity, GW_SEVERITY_MINOR);
    assert_int_equal(actions.items[0].role, GW_ROLE_MANAGER);
    rule_actions_clear(&actions);

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
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_dir),
        cmocka_unit_test(test_shipped_rules),
    };

    /* Rule failures are expected here; keep the output to them. */
    gw_log_set_level(GW_LOG_ERROR);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
