/* Unit tests of rule_tools: the rule-test harness (t.*, expectations,
 * output lines, failures of tests and files) and replay from JSON lines
 * and from a journal. Rules, tests, configs and journals are written to
 * temporary directories under /tmp and removed afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_buf.h"
#include "gw_config.h"
#include "gw_journal.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_tools.h"

#define DISTRICT GW_SOURCE_DIR "/config/district"

struct tmp {
    char dir[64];
};

static void tmp_make(struct tmp *t)
{
    strcpy(t->dir, "/tmp/gridgate-tools-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
}

static void tmp_remove(struct tmp *t)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* Output captured from one call. */
struct captured {
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
    FILE *out_f;
    FILE *err_f;
};

static void capture_begin(struct captured *c)
{
    memset(c, 0, sizeof(*c));
    c->out_f = open_memstream(&c->out, &c->out_len);
    c->err_f = open_memstream(&c->err, &c->err_len);
    assert_non_null(c->out_f);
    assert_non_null(c->err_f);
}

static void capture_end(struct captured *c)
{
    fclose(c->out_f);
    fclose(c->err_f);
}

static void capture_free(struct captured *c)
{
    free(c->out);
    free(c->err);
}

static void assert_has(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("'%s' not found in:\n%s", needle, text);
}

static void assert_lacks(const char *text, const char *needle)
{
    if (strstr(text, needle))
        fail_msg("'%s' found in:\n%s", needle, text);
}

static int run_rule_tests(const char *dir, bool verbose, struct captured *c,
                          struct rule_tools_test_result *res)
{
    struct rule_tools_test_options o = { .dir = dir, .verbose = verbose };
    int r;

    capture_begin(c);
    o.out = c->out_f;
    o.err = c->err_f;
    memset(res, 0, sizeof(*res));
    r = rule_tools_test(&o, res);
    capture_end(c);
    return r;
}

static const char SMOKE_RULE[] =
    "rule{\n"
    "    name = \"fire.smoke\",\n"
    "    match = { type = \"smoke\" },\n"
    "    on_reading = function(r)\n"
    "        if r.boom then error(\"boom\") end\n"
    "        if type(r.smoke) ~= \"number\" then return end\n"
    "        if r.smoke >= 0.10 then\n"
    "            local sev = r.grid.type == \"crowded\" and \"critical\" or \"major\"\n"
    "            open_case{ category = \"fire.smoke\", severity = sev, role = \"firefighter\",\n"
    "                       title = \"烟感报警 \" .. r.device, detail = r.grid.roster.firefighter "
    "}\n"
    "            emit(\"smoke_alarm\", { smoke = r.smoke, n = 1 }, { grid = r.grid.id })\n"
    "        elseif r.smoke < 0.05 then\n"
    "            clear_case{}\n"
    "        end\n"
    "    end,\n"
    "}\n"
    "rule{\n"
    "    name = \"device.silent\",\n"
    "    match = { type = \"camera\" },\n"
    "    silence = \"10m\",\n"
    "    on_silence = function(d)\n"
    "        open_case{ category = \"device.silent\", severity = \"minor\", role = \"manager\",\n"
    "                   title = \"离线 \" .. d.device,\n"
    "                   detail = string.format(\"%d %s\", d.silent_for, tostring(d.last_seen)) }\n"
    "    end,\n"
    "}\n"
    "rule{\n"
    "    name = \"cam.status\",\n"
    "    match = { type = \"camera\" },\n"
    "    on_event = function(e)\n"
    "        if e.kind == \"status\" and e.status == \"offline\" then\n"
    "            open_case{ category = \"cam.offline\", severity = \"info\", title = \"offline\" "
    "}\n"
    "        elseif e.kind == \"event\" and e.people then\n"
    "            emit(\"people\", { n = e.people })\n"
    "        end\n"
    "    end,\n"
    "}\n"
    "rule{\n"
    "    name = \"shadow.smoke\",\n"
    "    mode = \"shadow\",\n"
    "    match = { type = \"smoke\" },\n"
    "    on_reading = function(r)\n"
    "        open_case{ category = \"trial\", severity = \"info\", title = \"trial\" }\n"
    "    end,\n"
    "}\n";

/* Every line number below is referred to by the assertions. */
static const char SMOKE_TEST[] =
    "test(\"alarm opens a major case\", function(t)\n"                    /* 1 */
    "    t.device{ id = \"smoke-1\" }\n"                                  /* 2 */
    "    t.reading{ device = \"smoke-1\", smoke = 0.31, alarm = true }\n" /* 3 */
    "    t.expect_case{ rule = \"fire.smoke\", subject = \"smoke-1\", severity = \"major\",\n" /* 4
                                                                                                */
    "                   role = \"firefighter\", title = \"烟感报警 smoke-1\", count = 1,\n" /* 5 */
    "                   detail = \"firefighter-person\", category = \"fire.smoke\" }\n"     /* 6 */
    "    t.expect_emit{ measurement = \"smoke_alarm\", fields = { smoke = 0.31, n = 1 },\n" /* 7 */
    "                   tags = { grid = \"110101001001001\" }, count = 1 }\n"               /* 8 */
    "    t.expect_no_case{ rule = \"device.silent\" }\n"                                    /* 9 */
    "end)\n"                                                                                /* 10 */
    "test(\"crowded is critical, expected wrongly\", function(t)\n"                         /* 11 */
    "    t.device{ id = \"smoke-1\", grid = { type = \"crowded\" } }\n"                     /* 12 */
    "    t.reading{ smoke = 0.2 }\n"                                                        /* 13 */
    "    t.expect_case{ rule = \"fire.smoke\", severity = \"major\" }\n"                    /* 14 */
    "    t.expect_no_case()\n"                                                              /* 15 */
    "end)\n"                                                                                /* 16 */
    "test(\"a Lua error fails the test\", function(t)\n"                                    /* 17 */
    "    local x\n"                                                                         /* 18 */
    "    t.reading{ device = \"smoke-2\", smoke = x.y }\n"                                  /* 19 */
    "end)\n"                                                                                /* 20 */
    "test(\"repeats count, clear marks cleared\", function(t)\n"                            /* 21 */
    "    t.reading{ device = \"smoke-3\", smoke = 0.12 }\n"                                 /* 22 */
    "    t.advance(\"30s\")\n"                                                              /* 23 */
    "    t.reading{ device = \"smoke-3\", smoke = 0.4 }\n"                                  /* 24 */
    "    t.expect_case{ rule = \"fire.smoke\", count = 2, cleared = false }\n"              /* 25 */
    "    t.reading{ device = \"smoke-3\", smoke = 0.01 }\n"                                 /* 26 */
    "    t.expect_cleared{ rule = \"fire.smoke\", subject = \"smoke-3\" }\n"                /* 27 */
    "    t.expect_case{ rule = \"fire.smoke\", subject = \"smoke-3\" }\n"                   /* 28 */
    "end)\n"                                                                                /* 29 */
    "test(\"rule failures\", function(t)\n"                                                 /* 30 */
    "    t.reading{ device = \"smoke-4\", boom = true }\n"                                  /* 31 */
    "    t.expect_error{ rule = \"fire.smoke\" }\n"                                         /* 32 */
    "    t.reading{ device = \"smoke-4\", smoke = 0.0, boom = 1 }\n"                        /* 33 */
    "    t.expect_error{}\n"                                                                /* 34 */
    "end)\n"                                                                                /* 35 */
    "test(\"shadow rules have their own cases\", function(t)\n"                             /* 36 */
    "    t.reading{ device = \"smoke-5\", smoke = 0.0 }\n"                                  /* 37 */
    "    t.expect_no_case{}\n"                                                              /* 38 */
    "    t.expect_case{ rule = \"shadow.smoke\", shadow = true, category = \"trial\" }\n"   /* 39 */
    "    t.expect_no_case{ rule = \"shadow.smoke\" }\n"                                     /* 40 */
    "end)\n";                                                                               /* 41 */

static void test_pass_and_fail(void **state)
{
    struct rule_tools_test_result res;
    struct captured c;
    struct tmp t;
    char line[512];

    (void)state;
    tmp_make(&t);
    write_file(t.dir, "smoke.lua", SMOKE_RULE);
    write_file(t.dir, "smoke_test.lua", SMOKE_TEST);
    assert_int_equal(run_rule_tests(t.dir, true, &c, &res), 0);
    assert_int_equal(res.passed, 4);
    assert_int_equal(res.failed, 2);

    snprintf(line, sizeof(line), "%s/smoke_test.lua:1: test alarm opens a major case: ok\n", t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line),
             "%s/smoke_test.lua:14: test crowded is critical, expected wrongly: expected case "
             "{rule=fire.smoke, severity=major}, got {rule=fire.smoke, subject=smoke-1, "
             "category=fire.smoke, severity=critical, role=firefighter, count=1, cleared=false}\n",
             t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line),
             "%s/smoke_test.lua:15: test crowded is critical, expected wrongly: expected no case, "
             "got {rule=fire.smoke, subject=smoke-1,",
             t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line),
             "%s/smoke_test.lua:11: test crowded is critical, expected wrongly: FAIL\n", t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line),
             "%s/smoke_test.lua:19: test a Lua error fails the test: error: attempt to index a "
             "nil value (local 'x')\n",
             t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line),
             "%s/smoke_test.lua:21: test repeats count, clear marks cleared: ok", t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line), "%s/smoke_test.lua:30: test rule failures: ok", t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line), "%s/smoke_test.lua:36: test shadow rules have their own cases: ok",
             t.dir);
    assert_has(c.out, line);
    assert_has(c.out, "4 passed, 2 failed\n");

    /* Without -v: only failures and the summary. */
    capture_free(&c);
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), 0);
    assert_lacks(c.out, ": ok\n");
    assert_lacks(c.out, ": FAIL\n");
    assert_has(c.out, "4 passed, 2 failed\n");
    capture_free(&c);
    tmp_remove(&t);
}

static void test_expectation_messages(void **state)
{
    struct rule_tools_test_result res;
    struct captured c;
    struct tmp t;

    (void)state;
    tmp_make(&t);
    write_file(t.dir, "smoke.lua", SMOKE_RULE);
    write_file(t.dir, "msg_test.lua",
               "test(\"m\", function(t)\n"
               "    t.reading{ device = \"smoke-1\", smoke = 0.5 }\n"
               "    t.expect_cleared{ rule = \"fire.smoke\" }\n"                 /* 3 */
               "    t.expect_emit{ measurement = \"nope\" }\n"                   /* 4 */
               "    t.expect_emit{ measurement = \"smoke_alarm\", count = 2 }\n" /* 5 */
               "    t.expect_error{ rule = \"fire.smoke\" }\n"                   /* 6 */
               "    t.expect_case{ shadow = true, rule = \"fire.smoke\" }\n"     /* 7 */
               "    t.expect_case{ rule = \"fire.smoke\", title = \"x y\" }\n"   /* 8 */
               "end)\n");
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), 0);
    assert_int_equal(res.failed, 1);
    assert_has(c.out, ":3: test m: expected cleared case {rule=fire.smoke}, got {rule=fire.smoke, "
                      "subject=smoke-1, category=fire.smoke, severity=major, role=firefighter, "
                      "count=1, cleared=false}\n");
    assert_has(c.out, ":4: test m: expected emit {measurement=nope}, got {measurement=smoke_alarm, "
                      "rule=fire.smoke, device=smoke-1, fields={n=1, smoke=0.5}, "
                      "tags={grid=110101001001001}}\n");
    assert_has(c.out, ":5: test m: expected emit {measurement=smoke_alarm} 2 times, got 1 times\n");
    assert_has(c.out, ":6: test m: expected rule fire.smoke to fail on the last input, got no rule "
                      "failed\n");
    assert_has(c.out, ":7: test m: expected shadow case {rule=fire.smoke}, got {rule=shadow.smoke, "
                      "subject=smoke-1, category=trial, severity=info, count=1, cleared=false, "
                      "shadow=true}\n");
    assert_has(c.out, ":8: test m: expected case {rule=fire.smoke, title=\"x y\"}, got "
                      "{rule=fire.smoke, subject=smoke-1, category=fire.smoke, severity=major, "
                      "role=firefighter, title=\"烟感报警 smoke-1\", count=1, cleared=false}\n");
    capture_free(&c);
    tmp_remove(&t);
}

static void test_devices_and_events(void **state)
{
    struct rule_tools_test_result res;
    struct captured c;
    struct tmp t;

    (void)state;
    tmp_make(&t);
    write_file(t.dir, "smoke.lua", SMOKE_RULE);
    write_file(
        t.dir, "dev_test.lua",
        "test(\"roster and grid\", function(t)\n"
        "    t.device{ id = \"x1\", type = \"smoke\", heartbeat = \"1h\", label = \"L\",\n"
        "              grid = { id = \"110101002003004\", type = \"commercial\",\n"
        "                       level = \"attention\", roster = { manager = \"M\" } } }\n"
        "    t.reading{ device = \"x1\", smoke = 0.5 }\n"
        "    t.expect_case{ rule = \"fire.smoke\", subject = \"x1\", detail = nil }\n"
        "    t.expect_emit{ tags = { grid = \"110101002003004\" } }\n"
        "end)\n"
        "test(\"events\", function(t)\n"
        "    t.event{ device = \"camera-1\", people = 12 }\n"
        "    t.expect_emit{ measurement = \"people\", fields = { n = 12 }, device = "
        "\"camera-1\" }\n"
        "    t.event{ device = \"camera-1\", kind = \"status\", status = \"offline\" }\n"
        "    t.expect_case{ rule = \"cam.status\", category = \"cam.offline\" }\n"
        "end)\n"
        "test(\"colon calls work too\", function(t)\n"
        "    t:reading{ device = \"smoke-9\", smoke = 0.5 }\n"
        "    t:expect_case{ rule = \"fire.smoke\" }\n"
        "end)\n"
        "test(\"type inference needs a prefix\", function(t)\n"
        "    t.reading{ device = \"nodash\", smoke = 0.5 }\n"
        "end)\n"
        "test(\"a device of another type\", function(t)\n"
        "    t.device{ id = \"smoke-1\" }\n"
        "    t.reading{ device = \"smoke-1\", type = \"gas\" }\n"
        "end)\n"
        "test(\"status needs online or offline\", function(t)\n"
        "    t.event{ device = \"camera-1\", kind = \"status\", status = \"gone\" }\n"
        "end)\n"
        "local saved\n"
        "test(\"keeps t\", function(t) saved = t end)\n"
        "test(\"t of another test\", function(t) saved.reading{ device = \"smoke-1\" } end)\n"
        "test(\"nested\", function(t) test(\"inner\", function() end) end)\n"
        "test(\"fields of a table\", function(t)\n"
        "    t.reading{ device = \"smoke-1\", bad = {} }\n"
        "end)\n");
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), 0);
    assert_int_equal(res.passed, 4);
    assert_int_equal(res.failed, 6);
    assert_has(c.out, "test type inference needs a prefix: error: t.reading: unknown device "
                      "nodash: give type= or declare it with t.device\n");
    assert_has(c.out, "test a device of another type: error: t.reading: device smoke-1 is of type "
                      "smoke, not gas\n");
    assert_has(c.out, "test status needs online or offline: error: t.event: a status event needs "
                      "status = \"online\" or \"offline\"\n");
    assert_has(c.out, "test t of another test: error: t belongs to a test that has ended\n");
    assert_has(c.out, "test nested: error: test() cannot run inside another test\n");
    assert_has(c.out, "test fields of a table: error: t.reading: field bad is table (numbers, "
                      "booleans and strings only)\n");
    capture_free(&c);
    tmp_remove(&t);
}

static void test_clock_and_silence(void **state)
{
    struct rule_tools_test_result res;
    struct captured c;
    struct tmp t;

    (void)state;
    tmp_make(&t);
    write_file(t.dir, "smoke.lua", SMOKE_RULE);
    /* 1795852800000 ms is 2026-11-28T08:00:00Z. */
    write_file(t.dir, "silence_test.lua",
               "test(\"never seen: silent since the start\", function(t)\n"
               "    t.device{ id = \"camera-1\" }\n"
               "    t.at(\"2026-11-28T08:00:00Z\")\n"
               "    t.advance(\"599s\")\n"
               "    t.expect_no_case{}\n"
               "    t.advance(1)\n"
               "    t.expect_case{ rule = \"device.silent\", detail = \"600 nil\", count = 1 }\n"
               "    t.advance(\"1d\")\n"
               "    t.expect_case{ rule = \"device.silent\", count = 1 }\n"
               "end)\n"
               "test(\"a reading ends the silence\", function(t)\n"
               "    t.at(1795852800000)\n"
               "    t.reading{ device = \"camera-1\", people = 1 }\n"
               "    t.advance(\"10m\")\n"
               "    t.expect_case{ rule = \"device.silent\", detail = \"600 1795852800000\" }\n"
               "    t.at(\"2026-11-28T09:15:00+01:00\")\n"
               "    t.reading{ device = \"camera-1\", people = 1 }\n"
               "    t.at(\"2026-11-28T08:24:59.999Z\")\n"
               "    t.expect_case{ rule = \"device.silent\", count = 1 }\n"
               "    t.advance(\"1ms\")\n"
               "    t.expect_case{ rule = \"device.silent\", count = 2 }\n"
               "end)\n"
               "test(\"the clock goes forward only\", function(t)\n"
               "    t.advance(\"1s\")\n"
               "    t.at(\"2026-01-01T00:00:00Z\")\n"
               "end)\n"
               "test(\"bad times and durations\", function(t)\n"
               "    t.advance(\"9m59s\")\n"
               "end)\n"
               "test(\"February 30\", function(t)\n"
               "    t.at(\"2026-02-30T00:00:00Z\")\n"
               "end)\n"
               "test(\"every failure shows: no quarantine in tests\", function(t)\n"
               "    for i = 1, 30 do\n"
               "        t.reading{ device = \"smoke-1\", boom = true }\n"
               "        t.expect_error{ rule = \"fire.smoke\" }\n"
               "    end\n"
               "end)\n");
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), 0);
    assert_int_equal(res.passed, 3);
    assert_int_equal(res.failed, 3);
    assert_has(c.out, "silence_test.lua:25: test the clock goes forward only: error: t.at: the "
                      "clock only moves forward (it is 2026-01-01T00:00:01.000Z)\n");
    assert_has(c.out, "silence_test.lua:28: test bad times and durations: error: t.advance: "
                      "'9m59s' is not a duration");
    assert_has(c.out, "silence_test.lua:31: test February 30: error: t.at: expected an ISO 8601 "
                      "time");
    capture_free(&c);
    tmp_remove(&t);
}

static void test_broken_files(void **state)
{
    struct rule_tools_test_result res;
    struct captured c;
    struct tmp t;
    char line[256];

    (void)state;
    tmp_make(&t);
    write_file(t.dir, "smoke.lua", SMOKE_RULE);
    write_file(t.dir, "a_test.lua", "test(\"fine\", function(t) end)\nlocal x = = 1\n");
    write_file(t.dir, "b_test.lua", "test(\"fine\", function(t) end)\nerror(\"top\")\n");
    write_file(t.dir, "c_test.lua",
               "test(\"loops\", function(t) while true do end end)\n"
               "test(\"after the loop\", function(t) end)\n");
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), 0);
    /* a: does not load (1 failed); b: one test, then an error (1 + 1);
     * c: the loop fails, the next test runs. */
    assert_int_equal(res.passed, 2);
    assert_int_equal(res.failed, 3);
    snprintf(line, sizeof(line), "%s/a_test.lua:2: unexpected symbol near '='\n", t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line), "%s/b_test.lua:2: error: top\n", t.dir);
    assert_has(c.out, line);
    snprintf(line, sizeof(line),
             "%s/c_test.lua:1: test loops: error: the test ran over its budget of", t.dir);
    assert_has(c.out, line);
    capture_free(&c);

    /* A rule that does not load stops everything, with file:line. */
    write_file(t.dir, "zz_bad.lua",
               "rule{\n  name = \"x\",\n  on_reading = function(r) end end\n}\n");
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), -EINVAL);
    snprintf(line, sizeof(line), "%s/zz_bad.lua:3:", t.dir);
    assert_has(c.err, line);
    assert_lacks(c.out, "passed");
    capture_free(&c);
    tmp_remove(&t);
}

static void test_no_tests(void **state)
{
    struct rule_tools_test_result res;
    struct captured c;
    struct tmp t;

    (void)state;
    tmp_make(&t);
    write_file(t.dir, "smoke.lua", SMOKE_RULE);
    assert_int_equal(run_rule_tests(t.dir, false, &c, &res), 0);
    assert_int_equal(res.passed, 0);
    assert_int_equal(res.failed, 0);
    assert_has(c.out, "0 passed, 0 failed\n");
    assert_has(c.err, "no *_test.lua files");
    capture_free(&c);
    tmp_remove(&t);
}

/* ---- replay ---------------------------------------------------------------- */

struct world {
    struct tmp t;
    struct gw_config *cfg;
    struct gw_registry *reg;
};

static void world_load(struct world *w, const char *unknown_devices)
{
    char path[128], text[1024], *error = NULL;

    tmp_make(&w->t);
    snprintf(path, sizeof(path), "%s/rules", w->t.dir);
    assert_int_equal(mkdir(path, 0755), 0);
    write_file(path, "smoke.lua", SMOKE_RULE);
    snprintf(text, sizeof(text),
             "journal:\n  dir: journal\n  segment_mb: 1\n  max_mb: 8\n"
             "district:\n  grids: %s/grids.geojson\n  devices: %s/devices.csv\n"
             "  unknown_devices: %s\n"
             "rules:\n  dir: rules\n",
             DISTRICT, DISTRICT, unknown_devices);
    write_file(w->t.dir, "gridgate.yaml", text);
    snprintf(path, sizeof(path), "%s/gridgate.yaml", w->t.dir);
    w->cfg = gw_config_load(path, &error);
    if (!w->cfg)
        fail_msg("%s", error);
    w->reg = gw_registry_load(w->cfg->district.grids, w->cfg->district.devices, &error);
    if (!w->reg)
        fail_msg("%s", error);
}

static void world_free(struct world *w)
{
    gw_registry_free(w->reg);
    gw_config_free(w->cfg);
    tmp_remove(&w->t);
}

static int replay(struct world *w, const char *input, struct captured *c,
                  struct rule_tools_replay_result *res)
{
    struct rule_tools_replay_options o = { .cfg = w->cfg, .reg = w->reg, .input = input };
    int r;

    capture_begin(c);
    o.out = c->out_f;
    o.err = c->err_f;
    memset(res, 0, sizeof(*res));
    r = rule_tools_replay(&o, res);
    capture_end(c);
    return r;
}

static void test_replay_lines(void **state)
{
    struct rule_tools_replay_result res;
    struct captured c;
    struct world w;
    char path[128], line[256];

    (void)state;
    world_load(&w, "reject");
    write_file(
        w.t.dir, "in.jsonl",
        "{\"device\": \"smoke-000001\", \"ts\": 1795852800000, \"payload\": "
        "{\"smoke\": 0.31, \"alarm\": true}}\n"
        "{\"device\": \"smoke-000002\", \"ts\": 1795852801000, \"payload\": {\"smoke\": 0.02}}\n"
        "\n"
        "{\"device\": \"smoke-000001\", \"payload\": {\"ts\": 1795852802000, \"smoke\": 0.01}}\n"
        "not json\n"
        "{\"device\": \"nobody-1\", \"payload\": {}}\n"
        "{\"device\": \"smoke-000001\", \"payload\": {\"smoke\": [1]}}\n"
        "{\"device\": \"smoke-000001\", \"chanel\": \"event\", \"payload\": {}}\n"
        "{\"device\": \"smoke-000001\", \"ts\": 1.5, \"payload\": {}}\n"
        "[1]\n"
        "{\"device\": \"camera-000001\", \"channel\": \"status\", \"ts\": 1795852803000, "
        "\"payload\": \"offline\"}\n"
        "{\"device\": \"camera-000001\", \"channel\": \"event\", \"ts\": 1795852804000, "
        "\"payload\": [{\"n\": \"people\", \"v\": 7}]}\n"
        "{\"device\": \"smoke-000001\", \"payload\": {\"boom\": true}}\n");
    snprintf(path, sizeof(path), "%s/in.jsonl", w.t.dir);
    assert_int_equal(replay(&w, path, &c, &res), 0);
    assert_has(c.out, "2026-11-28T08:00:00.000Z smoke-000001 fire.smoke open_case "
                      "category=fire.smoke severity=major role=firefighter "
                      "title=\"烟感报警 smoke-000001\" subject=smoke-000001\n");
    assert_has(c.out,
               "2026-11-28T08:00:00.000Z smoke-000001 fire.smoke emit measurement=smoke_alarm\n");
    assert_has(c.out,
               "2026-11-28T08:00:00.000Z smoke-000001 shadow.smoke open_case "
               "category=trial severity=info title=trial subject=smoke-000001 shadow=true\n");
    /* Nothing of fire.smoke's open about smoke-000002: nothing to clear. */
    assert_lacks(c.out, "smoke-000002 fire.smoke");
    assert_has(c.out, "2026-11-28T08:00:02.000Z smoke-000001 fire.smoke clear_case "
                      "subject=smoke-000001\n");
    assert_has(c.out, "2026-11-28T08:00:03.000Z camera-000001 cam.status open_case "
                      "category=cam.offline severity=info title=offline subject=camera-000001\n");
    assert_has(c.out,
               "2026-11-28T08:00:04.000Z camera-000001 cam.status emit measurement=people\n");
    snprintf(line, sizeof(line), "%s:5: not valid JSON (at byte 1)\n", path);
    assert_has(c.err, line);
    snprintf(line, sizeof(line), "%s:6: device nobody-1 is not in the district's devices file\n",
             path);
    assert_has(c.err, line);
    snprintf(line, sizeof(line), "%s:7: payload: ", path);
    assert_has(c.err, line);
    snprintf(line, sizeof(line), "%s:8: unknown key \"chanel\"", path);
    assert_has(c.err, line);
    snprintf(line, sizeof(line), "%s:9: ts must be whole milliseconds since 1970\n", path);
    assert_has(c.err, line);
    snprintf(line, sizeof(line), "%s:10: a line must be a JSON object", path);
    assert_has(c.err, line);
    snprintf(line, sizeof(line), "%s:13: rule fire.smoke (", path);
    assert_has(c.err, line);
    /* 6 lines replayed (one of them a rule failure), 6 bad ones. */
    assert_int_equal(res.readings, 6);
    assert_int_equal(res.actions, 9);
    assert_int_equal(res.errors, 7);
    assert_has(c.out, "6 readings, 9 actions, 7 errors\n");
    capture_free(&c);

    /* A missing file is an error of its own. */
    assert_int_equal(replay(&w, "/nonexistent/in.jsonl", &c, &res), -ENOENT);
    assert_has(c.err, "/nonexistent/in.jsonl: ");
    capture_free(&c);
    world_free(&w);
}

static void test_replay_quarantine(void **state)
{
    struct rule_tools_replay_result res;
    struct captured c;
    struct world w;
    char path[128];

    (void)state;
    world_load(&w, "quarantine");
    write_file(w.t.dir, "in.jsonl",
               "{\"device\": \"newcomer-1\", \"ts\": 1795852800000, \"payload\": {\"x\": 1}}\n");
    snprintf(path, sizeof(path), "%s/in.jsonl", w.t.dir);
    assert_int_equal(replay(&w, path, &c, &res), 0);
    assert_int_equal(res.readings, 1);
    assert_int_equal(res.errors, 0);
    capture_free(&c);
    world_free(&w);
}

static void append_reading(struct gw_journal *j, const char *device, enum gw_channel channel,
                           int64_t ts_ms, const char *field, double v)
{
    struct gw_reading *r = gw_reading_new(device, channel, ts_ms * 1000000);
    struct gw_buf b = GW_BUF_INIT;

    assert_non_null(r);
    if (field)
        assert_int_equal(gw_reading_add_number(r, field, v), 0);
    assert_int_equal(gw_reading_encode(r, &b), 0);
    assert_int_equal(gw_journal_append(j, b.data, b.len, NULL), 0);
    gw_buf_free(&b);
    gw_reading_unref(r);
}

static struct gw_journal *journal_open(struct world *w)
{
    const char *consumers[] = { "rules", "influx" };
    struct gw_journal_options o = {
        .dir = w->cfg->journal.dir,
        .max_bytes = 8 << 20,
        .segment_bytes = 1 << 20,
        .fsync_interval_ms = 100,
        .consumers = consumers,
        .n_consumers = 2,
    };
    char *error = NULL;
    struct gw_journal *j = gw_journal_open(&o, &error);

    if (!j)
        fail_msg("%s", error);
    return j;
}

static void test_replay_journal(void **state)
{
    struct rule_tools_replay_result res;
    struct captured c;
    struct gw_journal *j;
    struct world w;
    char path[256];
    struct stat st;

    (void)state;
    world_load(&w, "reject");
    /* No journal yet: said so, nothing created. */
    assert_int_equal(replay(&w, NULL, &c, &res), -ENOENT);
    assert_has(c.err, "no journal there");
    assert_int_not_equal(stat(w.cfg->journal.dir, &st), 0);
    capture_free(&c);

    j = journal_open(&w);
    append_reading(j, "smoke-000001", GW_CHANNEL_TELEMETRY, 1795852800000LL, "smoke", 0.5);
    append_reading(j, "smoke-000002", GW_CHANNEL_TELEMETRY, 1795852801000LL, "smoke", 0.01);
    append_reading(j, "gone-000001", GW_CHANNEL_TELEMETRY, 1795852802000LL, "smoke", 0.5);
    append_reading(j, "camera-000001", GW_CHANNEL_EVENT, 1795852803000LL, "people", 4);
    assert_int_equal(gw_journal_append(j, "\x7f garbage", 9, NULL), 0);

    /* While the gateway holds the journal, replay refuses. */
    assert_int_equal(replay(&w, NULL, &c, &res), -EBUSY);
    assert_has(c.err, "the journal is in use by a running gateway; --from-journal reads it only "
                      "while gridgate is stopped");
    capture_free(&c);
    gw_journal_close(j);

    assert_int_equal(replay(&w, NULL, &c, &res), 0);
    assert_has(c.out, "2026-11-28T08:00:00.000Z smoke-000001 fire.smoke open_case "
                      "category=fire.smoke severity=major");
    assert_lacks(c.out, "smoke-000002 fire.smoke");
    assert_has(c.out,
               "2026-11-28T08:00:03.000Z camera-000001 cam.status emit measurement=people\n");
    assert_has(c.err, ": record 3: device gone-000001 is not in the district's devices file\n");
    assert_has(c.err, ": record 5: undecodable\n");
    assert_has(c.out, "3 readings, 5 actions, 2 errors\n");
    capture_free(&c);

    /* Nothing committed, no trace left: a second replay sees it all again,
     * and the gateway's consumers still start from the beginning. */
    snprintf(path, sizeof(path), "%s/consumer-replay.pos", w.cfg->journal.dir);
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(replay(&w, NULL, &c, &res), 0);
    assert_int_equal(res.readings, 3);
    capture_free(&c);
    world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass_and_fail),      cmocka_unit_test(test_expectation_messages),
        cmocka_unit_test(test_devices_and_events), cmocka_unit_test(test_clock_and_silence),
        cmocka_unit_test(test_broken_files),       cmocka_unit_test(test_no_tests),
        cmocka_unit_test(test_replay_lines),       cmocka_unit_test(test_replay_quarantine),
        cmocka_unit_test(test_replay_journal),
    };

    /* The engine's own lines (rule failures) are not what is tested here. */
    gw_log_set_level(getenv("GW_TEST_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
