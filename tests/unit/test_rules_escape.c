/* Escape and abuse attempts against the rule sandbox, each one proven
 * contained.
 *
 * Every attack is a rules file (attack.lua) loaded between two sentinel
 * files (aa.lua before it, zz.lua after it, in load order) whose rules
 * check, at every reading, that the sandbox is as it was: libraries,
 * locked globals, the string metatable, `r`, the heap, their own state.
 * Two readings go through the engine; for each attack the test proves:
 *  - the attack's rules fail (or its file is refused at load), with the
 *    expected message in the log (or the load error);
 *  - the failures are counted in rule_stats (errors, and the budget or
 *    memory counters where a limit was hit);
 *  - both sentinels run on both readings and find everything intact, and
 *    each reading ends within a bound of time;
 *  - nothing outside moved: files the attack tries to create do not
 *    exist, and freeing the engine (which runs any finalizer left) ends
 *    at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_domain.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"

#define TS_NS 1700000000000000000LL
#define TIME_BOUND_MS 3000 /* per reading, sanitizers included */

enum limit_hit {
    HIT_NONE,   /* no limit counter moves: plain errors */
    HIT_BUDGET, /* budget_exceeded counts every failure (instructions, time, C-call caps) */
    HIT_MEMORY, /* memory_exceeded counts every failure */
    HIT_ANY,    /* whichever comes first: not checked */
};

struct attack {
    const char *name;
    const char *source;   /* attack.lua */
    int fails[2];         /* attack rules failing on the first and the second reading */
    const char *message;  /* in the log of the failures, or in the load error */
    enum limit_hit limit; /* the limit the failures hit, if it is one */
    bool refused_at_load;
    const char *must_not_exist; /* a file the attack tries to create or reach */
    const char *rate_limited;   /* log lines the attack triggers at will: a few at most */
};

/* ---- the sentinel ------------------------------------------------------- */

#define SENTINEL(NAME)                                                                             \
    "rule{ name = '" NAME "', on_reading = function(r, state)\n"                                   \
    "  local bad = {}\n"                                                                           \
    "  local function check(what, ok) if not ok then bad[#bad + 1] = what end end\n"               \
    "  check('string methods', ('abc'):upper() == 'ABC' and ('a,b'):find(',', 1, true) == 2)\n"    \
    "  check('string table', string.rep('x', 3) == 'xxx' and string.format('%d', 7) == '7')\n"     \
    "  check('string.dump', ('').dump == nil and string.dump == nil)\n"                            \
    "  check('string metatable', getmetatable('') == 'locked')\n"                                  \
    "  check('globals locked', getmetatable(_G) == 'locked' and not pcall(function()\n"            \
    "    _G.injected = 1 end))\n"                                                                  \
    "  check('undeclared', not pcall(function() return no_such_global end))\n"                     \
    "  for _, name in ipairs{ 'io', 'debug', 'package', 'require', 'load', 'dofile',\n"            \
    "                         'loadfile', 'collectgarbage', 'rawset', 'coroutine', 'print',\n"     \
    "                         'injected', 'pwned' } do\n"                                          \
    "    check(name, not pcall(function() return _ENV[name] end))\n"                               \
    "  end\n"                                                                                      \
    "  check('os', os.execute == nil and os.getenv == nil and os.remove == nil and\n"              \
    "        type(os.time) == 'function')\n"                                                       \
    "  check('libraries', type(table.concat) == 'function' and math.floor(2.5) == 2 and\n"         \
    "        utf8.char(72) == 'H' and table.insert ~= nil and os.date('!%Y', 0) == '1970')\n"      \
    "  for _, lib in ipairs{ string, table, math, utf8, os, log } do\n"                            \
    "    check('library locked', getmetatable(lib) == 'read-only' and\n"                           \
    "          rawget(lib, 'pwned') == nil and lib.pwned == nil)\n"                                \
    "  end\n"                                                                                      \
    "  check('r', r.device == 'smoke-000001' and r.fields.v == r.v and r.v == 1.5 and\n"           \
    "        r.grid.id == '110101001001001' and r.grid.roster.firefighter == '王消防')\n"       \
    "  check('r read-only', not pcall(function() r.v = 2 end))\n"                                  \
    "  check('now', now() == r.ts)\n"                                                              \
    "  check('pairs', select(2, pairs(string)) == string)\n"                                       \
    "  check('heap', #('y'):rep(100000) == 100000)\n"                                              \
    "  check('helpers', duration('1m') == 60 and window('w', 60):push(1):count() >= 1)\n"          \
    "  check('state', state.evil == nil)\n"                                                        \
    "  state.n = (state.n or 0) + 1\n"                                                             \
    "  open_case{ category = 'sentinel', severity = 'info', title = '" NAME "',\n"                 \
    "             detail = (#bad == 0 and 'intact' or table.concat(bad, ',')) .. ' ' .. state.n "  \
    "}\n"                                                                                          \
    "end }\n"

/* ---- fixture ------------------------------------------------------------ */

static struct gw_grid grid_home;
static struct gw_device dev_smoke;

static int group_setup(void **state)
{
    (void)state;
    memset(&grid_home, 0, sizeof(grid_home));
    grid_home.id = strdup("110101001001001");
    grid_home.name = strdup("多福巷第1网格");
    grid_home.community_id = strdup("110101001001");
    grid_home.street_id = strdup("110101001");
    grid_home.roster[GW_ROLE_FIREFIGHTER] = strdup("王消防");
    memset(&dev_smoke, 0, sizeof(dev_smoke));
    dev_smoke.id = strdup("smoke-000001");
    dev_smoke.type = strdup("smoke");
    dev_smoke.grid = &grid_home;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(grid_home.id);
    free(grid_home.name);
    free(grid_home.community_id);
    free(grid_home.street_id);
    free(grid_home.roster[GW_ROLE_FIREFIGHTER]);
    free(dev_smoke.id);
    free(dev_smoke.type);
    return 0;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];

    assert_non_null(d);
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

/* The log (stderr) while an attack runs goes to a file, read back after. */
struct capture {
    int saved;
    char path[64];
};

static void capture_begin(struct capture *c)
{
    int fd;

    strcpy(c->path, "/tmp/gridgate-escape-log-XXXXXX");
    fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    close(fd);
}

static char *capture_end(struct capture *c)
{
    FILE *f;
    char *text;
    long len;

    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    f = fopen(c->path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    unlink(c->path);
    return text;
}

static const struct rule_limits limits = {
    .instruction_budget = 200000,
    .memory_bytes = 16 << 20,
};

/* The detail of the sentinel's case in actions, or NULL. */
static const char *sentinel_detail(const struct rule_actions *actions, const char *name)
{
    for (size_t i = 0; i < actions->n; i++)
        if (strcmp(actions->items[i].rule, name) == 0)
            return actions->items[i].detail;
    return NULL;
}

static size_t count_lines(const char *log, const char *needle)
{
    size_t n = 0;

    for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void run_attack(void **state)
{
    const struct attack *a = *state;
    struct rule_engine *e = rule_engine_new(&limits);
    struct rule_actions actions = { 0 };
    struct rule_stats st;
    struct capture cap;
    char dir[64], *error = NULL, *log;
    int failed[2], load;
    int64_t elapsed_ms[2], free_ms, t0;
    const char *details[2][2];
    char expected[32];

    assert_non_null(e);
    strcpy(dir, "/tmp/gridgate-escape-XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file(dir, "aa.lua", SENTINEL("aa_sentinel"));
    write_file(dir, "attack.lua", a->source);
    write_file(dir, "zz.lua", SENTINEL("zz_sentinel"));
    if (a->must_not_exist)
        unlink(a->must_not_exist);

    capture_begin(&cap);
    load = rule_engine_load_dir(e, dir, &error);
    for (int i = 0; i < 2; i++) {
        struct gw_reading *r =
            gw_reading_new(dev_smoke.id, GW_CHANNEL_TELEMETRY, TS_NS + i * 1000000000LL);
        assert_non_null(r);
        r->device = &dev_smoke;
        gw_reading_add_number(r, "v", 1.5);
        t0 = gw_monotonic_ns();
        failed[i] = rule_engine_on_reading(e, r, &actions);
        elapsed_ms[i] = (gw_monotonic_ns() - t0) / 1000000;
        gw_reading_unref(r);
        details[i][0] = sentinel_detail(&actions, "aa_sentinel");
        details[i][1] = sentinel_detail(&actions, "zz_sentinel");
        /* A failed call's actions are dropped: only the sentinels' stay,
         * and the attack's when it did not fail. */
        if (failed[i] && !a->refused_at_load)
            assert_int_equal(actions.n, 2 + (a->fails[i] == 0));
        details[i][0] = details[i][0] ? strdup(details[i][0]) : NULL;
        details[i][1] = details[i][1] ? strdup(details[i][1]) : NULL;
        rule_actions_clear(&actions);
    }
    rule_engine_stats(e, &st);
    t0 = gw_monotonic_ns();
    rule_engine_free(e);
    free_ms = (gw_monotonic_ns() - t0) / 1000000;
    log = capture_end(&cap);
    remove_dir(dir);

    if (a->refused_at_load) {
        /* aa.lua stays loaded; attack.lua is refused; zz.lua is not reached. */
        assert_true(load < 0);
        assert_non_null(error);
        if (!strstr(error, a->message))
            fail_msg("%s: load error \"%s\" lacks \"%s\"", a->name, error, a->message);
        assert_true(failed[0] == 0 && failed[1] == 0);
        assert_int_equal(st.errors, 0);
        assert_non_null(details[0][0]);
        assert_string_equal(details[0][0], "intact 1");
        assert_string_equal(details[1][0], "intact 2");
        assert_null(details[0][1]);
    } else {
        if (load < 0)
            fail_msg("%s: does not load: %s", a->name, error ? error : "?");
        for (int i = 0; i < 2; i++) {
            if (failed[i] != a->fails[i])
                fail_msg("%s: reading %d: %d rule(s) failed, want %d\n%s", a->name, i + 1,
                         failed[i], a->fails[i], log);
            snprintf(expected, sizeof(expected), "intact %d", i + 1);
            for (int s = 0; s < 2; s++)
                if (!details[i][s] || strcmp(details[i][s], expected) != 0)
                    fail_msg("%s: reading %d: sentinel %s: %s", a->name, i + 1, s ? "zz" : "aa",
                             details[i][s] ? details[i][s] : "did not run");
        }
        /* Counted: every call made (the sentinels' four and the attack's),
         * every failure, and the limit that ended them. */
        assert_int_equal(st.errors, (uint64_t)(a->fails[0] + a->fails[1]));
        assert_true(st.calls >= 4 + st.errors);
        if (a->limit == HIT_BUDGET)
            assert_int_equal(st.budget_exceeded, st.errors);
        if (a->limit == HIT_MEMORY)
            assert_int_equal(st.memory_exceeded, st.errors);
        if (a->limit == HIT_NONE)
            assert_true(st.budget_exceeded == 0 && st.memory_exceeded == 0);
        /* Logged with the reason. */
        if (a->message && !strstr(log, a->message))
            fail_msg("%s: the log lacks \"%s\":\n%s", a->name, a->message, log);
        assert_int_equal(count_lines(log, "failed for device smoke-000001"), st.errors);
    }
    for (int i = 0; i < 2; i++) {
        if (elapsed_ms[i] > TIME_BOUND_MS)
            fail_msg("%s: reading %d took %lld ms", a->name, i + 1, (long long)elapsed_ms[i]);
        free((char *)details[i][0]);
        free((char *)details[i][1]);
    }
    /* What rules say reaches the log on one line each: no forged lines. */
    if (strncmp(log, "1999-", 5) == 0 || strstr(log, "\n1999-"))
        fail_msg("%s: a forged line in the log:\n%s", a->name, log);
    if (a->rate_limited && count_lines(log, a->rate_limited) > 25)
        fail_msg("%s: %zu lines of \"%s\" in the log", a->name, count_lines(log, a->rate_limited),
                 a->rate_limited);
    assert_true(free_ms < 1000);
    if (a->must_not_exist) {
        struct stat sb;
        assert_int_equal(stat(a->must_not_exist, &sb), -1);
    }
    rule_actions_free(&actions);
    free(error);
    free(log);
}

/* ---- the attacks -------------------------------------------------------- */

#define ATTACK(body) "rule{ name = 'attack', on_reading = function(r, state)\n" body "\nend }\n"
#define ATTACK_N(n, body)                                                                          \
    "rule{ name = 'attack" #n "', on_reading = function(r, state)\n" body "\nend }\n"

/* One entry per attack: name, attack.lua, failing rules per reading, the
 * log message, the limit hit, refused at load, a file that must not
 * appear, a line the attack may only trigger a few times. */
/* clang-format off */
static const struct attack attacks[] = {
    /* ---- reaching the system -------------------------------------------- */
    { "os.execute and the rest of os",
      ATTACK_N(1, "os.execute('touch /tmp/gridgate-escape-pwned')")
      ATTACK_N(2, "os.remove('/etc/hostname')")
      ATTACK_N(3, "return os.getenv('HOME')")
      ATTACK_N(4, "os.exit(1)"),
      { 4, 4 }, "attempt to call a nil value (field 'execute')", HIT_NONE, false,
      "/tmp/gridgate-escape-pwned", NULL },
    { "io.open",
      ATTACK("local f = io.open('/tmp/gridgate-escape-io', 'w'); f:write('x'); f:close()"),
      { 1, 1 }, "undeclared global 'io'", HIT_NONE, false, "/tmp/gridgate-escape-io", NULL },
    { "require and package",
      ATTACK_N(1, "local io_ = require('io'); io_.open('/tmp/gridgate-escape-req', 'w')")
      ATTACK_N(2, "package.loaded.io.open('/tmp/gridgate-escape-req', 'w')")
      ATTACK_N(3, "return dofile('/etc/passwd')")
      ATTACK_N(4, "return loadfile('/etc/passwd')"),
      { 4, 4 }, "undeclared global 'require'", HIT_NONE, false, "/tmp/gridgate-escape-req", NULL },
    { "load of a string.dump'd chunk",
      ATTACK("local f = load(string.dump(function() return 1 end), 'x', 'b'); return f()"),
      { 1, 1 }, "undeclared global 'load'", HIT_NONE, false, NULL, NULL },
    { "a precompiled rules file",
      "\x1bLuaT\x00\x19\x93\r\n\x1a\n\x04\x08\x08\x78\x56\x00\x00\x00\x00\x00\x00", { 0, 0 },
      "attempt to load a binary chunk", HIT_NONE, true, NULL, NULL },
    { "string.dump itself",
      ATTACK_N(1, "return string.dump(function() end)")
      ATTACK_N(2, "return (''):dump()")
      ATTACK_N(3, "local s = getmetatable('').__index; return s.dump(function() end)"),
      { 3, 3 }, "attempt to call a nil value (field 'dump')", HIT_NONE, false, NULL, NULL },
    { "debug",
      ATTACK_N(1, "debug.sethook()")
      ATTACK_N(2, "return debug.getregistry()")
      ATTACK_N(3, "return debug.getmetatable('').__index"),
      { 3, 3 }, "undeclared global 'debug'", HIT_NONE, false, NULL, NULL },
    { "collectgarbage",
      ATTACK_N(1, "collectgarbage('stop')")
      ATTACK_N(2, "return collectgarbage('count')")
      ATTACK_N(3, "collectgarbage('incremental', 0, 0)"),
      { 3, 3 }, "undeclared global 'collectgarbage'", HIT_NONE, false, NULL, NULL },
    { "rule{} from inside a rule",
      ATTACK("rule{ name = 'evil', on_reading = function() end }"), { 1, 1 },
      "rule{} can only be called while a rules file loads", HIT_NONE, false, NULL, NULL },

    /* ---- time ------------------------------------------------------------ */
    { "infinite loop", ATTACK("while true do end"), { 1, 1 }, "instruction budget exceeded",
      HIT_BUDGET, false, NULL, NULL },
    { "pcall-wrapped infinite loop",
      ATTACK_N(1, "for i = 1, 100 do pcall(function() while true do end end) end\n"
                  "open_case{ category = 'c', severity = 'info', title = 'survived' }")
      ATTACK_N(2, "while true do pcall(error) end")
      ATTACK_N(3, "xpcall(function() error('x') end, function() while true do end end)\n"
                  "open_case{ category = 'c', severity = 'info', title = 'survived' }")
      ATTACK_N(4, "local ok = pcall(pcall, pcall, function() while true do end end)\n"
                  "if ok then open_case{ category = 'c', severity = 'info', title = 's' } end"),
      { 4, 4 }, "instruction budget exceeded", HIT_BUDGET, false, NULL, NULL },
    { "recursion bomb",
      ATTACK_N(1, "local function f(n) return f(n + 1) + 1 end; return f(1)")
      ATTACK_N(2, "local function f(n) pcall(f, n + 1); error('unwound') end; f(1)"),
      { 2, 2 }, NULL, HIT_ANY, false, NULL, NULL },
    { "C stack recursion through metamethods",
      ATTACK_N(1, "local mt = {}; mt.__index = function(t, k) return t[k] end\n"
                  "return setmetatable({}, mt).x")
      ATTACK_N(2, "local mt = { __tostring = function(s) return tostring(s) end }\n"
                  "return tostring(setmetatable({}, mt))")
      ATTACK_N(3, "local function f(s) return (s:gsub('.', f)) end; return f('ab')"),
      { 3, 3 }, "stack overflow", HIT_NONE, false, NULL, NULL },
    { "long-running patterns (STACK-NOTES gotcha 7)",
      ATTACK_N(1, "return ('a'):rep(800):find('.-.-b')")
      ATTACK_N(2, "return (('a'):rep(800):gsub('.-.-b', 'x'))")
      ATTACK_N(3, "for m in ('a'):rep(800):gmatch('a-a-a-b') do end")
      ATTACK_N(4, "return ('a'):rep(5000):match('(.*)%1b')")
      ATTACK_N(5, "return ('('):rep(2 ^ 20):find('%b()')")
      ATTACK_N(6, "return ('a'):rep(2 ^ 20):find(('a'):rep(2 ^ 19) .. 'b', 1, true)"),
      { 6, 6 }, "pattern too complex", HIT_BUDGET, false, NULL, NULL },
    { "many affordable patterns in a loop",
      ATTACK("local s = ('a'):rep(140)\nwhile true do pcall(string.find, s, '.-.-b') end"),
      { 1, 1 }, NULL, HIT_BUDGET, false, NULL, NULL },
    { "__close of a to-be-closed variable that loops",
      ATTACK("do local x <close> = setmetatable({}, { __close = function() while true do end "
             "end }) end"),
      { 1, 1 }, "instruction budget exceeded", HIT_BUDGET, false, NULL, NULL },
    /* Ended by the instruction budget, or on a slow machine (a sanitizer
     * build under load) by the wall-clock deadline first: either way a
     * limit of the call, counted as budget_exceeded. */
    { "log flood",
      ATTACK("for i = 1, 1e6 do log.warn('flood', i) end"), { 1, 1 },
      "exceeded", HIT_BUDGET, false, NULL, "flood" },

    /* ---- memory ---------------------------------------------------------- */
    { "string.rep memory bomb",
      ATTACK_N(1, "return ('x'):rep(2 ^ 30)")
      ATTACK_N(2, "return ('x'):rep(2 ^ 19, ('y'):rep(2 ^ 19))")
      ATTACK_N(3, "local s = ('x'):rep(2 ^ 20); local t = {}\n"
                  "for i = 1, 100 do t[i] = s .. i end"),
      { 3, 3 }, "string.rep: result too large", HIT_MEMORY, false, NULL, NULL },
    { "string doubling",
      ATTACK("local s = 'x'; while true do s = s .. s end"), { 1, 1 },
      "memory limit exceeded", HIT_MEMORY, false, NULL, NULL },
    { "table growth bombs",
      ATTACK_N(1, "local t = {}; for i = 1, 1e9 do t[i] = i end")
      ATTACK_N(2, "local t = {}; local s = ('x'):rep(100000)\n"
                  "for i = 1, 1e9 do t[i] = s .. i end")
      ATTACK_N(3, "local t = {}; for i = 1, 1e9 do t[#t + 1] = { i, i, i, i } end"),
      { 3, 3 }, NULL, HIT_ANY, false, NULL, NULL },
    { "memory in one C call",
      ATTACK_N(1, "return string.pack('c2000000000', '')")
      ATTACK_N(2, "return table.pack(table.unpack({}, 1, 999999)).n"),
      { 2, 2 }, NULL, HIT_ANY, false, NULL, NULL },
    { "windows and held timers by the thousand",
      ATTACK_N(1, "for i = 1, 1e9 do window('w' .. i, 60):push(i) end")
      ATTACK_N(2, "for i = 1, 1e9 do held('h' .. i, true, 60) end")
      ATTACK_N(3, "return window('x', 1e300)"),
      { 3, 3 }, NULL, HIT_ANY, false, NULL, NULL },
    { "actions flood",
      ATTACK("for i = 1, 1000 do open_case{ category = 'c', severity = 'info', title = 't' } end"),
      { 1, 1 }, "too many actions in one call", HIT_NONE, false, NULL, NULL },

    /* ---- coroutines ------------------------------------------------------ */
    { "coroutine tricks",
      ATTACK_N(1, "coroutine.wrap(function() while true do end end)()")
      ATTACK_N(2, "local co = coroutine.create(function() coroutine.yield() end)\n"
                  "while true do coroutine.resume(co) end")
      ATTACK_N(3, "local function f() return coroutine.wrap(f)() end; return f()"),
      { 3, 3 }, "undeclared global 'coroutine'", HIT_NONE, false, NULL, NULL },

    /* ---- tampering with what is shared ------------------------------------ */
    { "the string metatable",
      ATTACK_N(1, "getmetatable('').__index = { upper = function() return 'pwned' end }")
      ATTACK_N(2, "getmetatable('').__index.upper = nil")
      ATTACK_N(3, "string.upper = function() return 'pwned' end")
      ATTACK_N(4, "local s = ('').upper; setmetatable('', {})"),
      { 4, 4 }, "attempt to index a string value", HIT_NONE, false, NULL, NULL },
    { "setmetatable on _G and library tables",
      ATTACK_N(1, "setmetatable(_G, nil)")
      ATTACK_N(2, "setmetatable(string, { __index = function() return 'pwned' end })")
      ATTACK_N(3, "setmetatable(math, {})")
      ATTACK_N(4, "setmetatable(r, {})")
      ATTACK_N(5, "setmetatable(log, {})"),
      { 5, 5 }, "cannot change a protected metatable", HIT_NONE, false, NULL, NULL },
    { "rawset on _G and library tables",
      ATTACK_N(1, "rawset(_G, 'pwned', true)")
      ATTACK_N(2, "rawget(_G, 'string').upper = nil")
      ATTACK_N(3, "_G.pwned = true")
      ATTACK_N(4, "pwned = true")
      ATTACK_N(5, "string.pwned = true")
      ATTACK_N(6, "_ENV.string = nil"),
      { 6, 6 }, "undeclared global 'rawset'", HIT_NONE, false, NULL, NULL },
    { "next and pairs on locked tables",
      ATTACK_N(1, "local f, t = pairs(_G)\n"
                  "for k, v in f, t do if type(v) == 'table' then v.pwned = true end end")
      ATTACK_N(2, "local mt = getmetatable(string); mt.__index.upper = nil")
      ATTACK_N(3, "local k = next(r) or next(string) or next(_G) or next(r.grid)\n"
                  "if k == nil then error('nothing reachable') end")
      ATTACK_N(4, "local f = pairs(string); return f(setmetatable({}, { __index = 5 }))")
      ATTACK_N(5, "local f = pairs(r); for k, v in f, r do\n"
                  "  if type(v) == 'table' then rawequal(v, v); v.pwned = true end end"),
      { 5, 5 }, "nothing reachable", HIT_NONE, false, NULL, NULL },
    { "keeping r across calls and changing it",
      ATTACK_N(1, "if state.kept then state.kept.v = 99 end; state.kept = r")
      ATTACK_N(2, "if state.f then state.f.v = 99 end; state.f = r.fields")
      ATTACK_N(3, "if state.g then state.g.roster.police = 'me' end; state.g = r.grid")
      ATTACK_N(4, "if state.old then\n"
                  "  local ts = state.old.ts\n"
                  "  error('an old r still answers: ' .. tostring(ts))\n"
                  "end\n"
                  "state.old = r")
      ATTACK_N(5, "if state.p then for k in pairs(state.p) do end end; state.p = r")
      ATTACK_N(6, "if state.f then return state.f.v end; state.f = r.fields"),
      { 0, 6 }, "this r (or e) belongs to an earlier call", HIT_NONE, false, NULL, NULL },
    { "table functions told to work long",
      ATTACK_N(1, "local t = setmetatable({}, { __len = function() return 2 ^ 40 end })\n"
                  "table.insert(t, 1, 'x')")
      ATTACK_N(2, "table.move({}, 1, 2 ^ 40, 2)")
      ATTACK_N(3, "table.remove(setmetatable({}, { __len = function() return 1e9 end }), 1)")
      ATTACK_N(4, "return table.concat(setmetatable({}, { __len = function() return 1e9 end }))")
      ATTACK_N(5, "table.sort(setmetatable({}, { __len = function() return 1e9 end }))"),
      { 5, 5 }, "tables with __len are not allowed", HIT_ANY, false, NULL, NULL },

    /* ---- hostile values --------------------------------------------------- */
    { "error objects with a hostile __tostring",
      ATTACK_N(1, "error(setmetatable({}, { __tostring = function() while true do end end }))")
      ATTACK_N(2, "error(setmetatable({}, { __tostring = function() error('boom') end }))")
      ATTACK_N(3, "error(setmetatable({}, { __tostring = function()\n"
                  "  local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(2 ^ 20) .. i end end }))")
      ATTACK_N(4, "error(setmetatable({}, { __tostring = function() return {} end }), 0)"),
      { 4, 4 }, "error object is not a string", HIT_NONE, false, NULL, NULL },
    { "a hostile __tostring called inside the rule",
      ATTACK_N(1, "log.warn(setmetatable({}, { __tostring = function() while true do end end }))")
      ATTACK_N(2, "local ok, e = pcall(error, setmetatable({}, { __tostring = function()\n"
                  "  while true do end end }))\n"
                  "return tostring(e)"),
      { 2, 2 }, "instruction budget exceeded", HIT_BUDGET, false, NULL, NULL },
    { "a __gc finaliser",
      ATTACK_N(1, "setmetatable({}, { __gc = function() while true do end end })")
      ATTACK_N(2, "local mt = {}; state.t = setmetatable({}, mt)\n"
                  "mt.__gc = function() while true do end end\n" /* too late: never marked */
                  "collectgarbage()")
      ATTACK_N(3, "setmetatable({}, { __gc = false })"),
      { 3, 3 }, "__gc metamethods are not allowed in rules", HIT_NONE, false, NULL, NULL },
    { "string.format with huge width and precision",
      ATTACK_N(1, "return string.format('%0999999d', 1)")
      ATTACK_N(2, "return string.format('%.9999f', 1)")
      ATTACK_N(3, "return string.format('%' .. ('9'):rep(100) .. 'd', 1)")
      ATTACK_N(4, "return string.format(('%d'):rep(1e5), 1)"),
      { 4, 4 }, "invalid conversion", HIT_NONE, false, NULL, NULL },
    { "utf8 abuse",
      ATTACK_N(1, "return utf8.char(0x80000000)")
      ATTACK_N(2, "for _, c in utf8.codes(('\\xff'):rep(1000)) do end")
      ATTACK_N(3, "return utf8.offset('abc', 1, 10)")
      ATTACK_N(4, "return utf8.char(table.unpack({}, 1, 1e7))"),
      { 4, 4 }, "value out of range", HIT_NONE, false, NULL, NULL },
    { "os.date with hostile formats",
      ATTACK_N(1, "return os.date('%' .. ('E'):rep(100000))")
      ATTACK_N(2, "return os.date('%Ez')")
      ATTACK_N(3, "return os.date('%c', math.maxinteger)")
      ATTACK_N(4, "return os.date(('%c'):rep(200))")
      ATTACK_N(5, "return os.date('*t', 2 ^ 62)"),
      { 5, 5 }, "os.date: format too long", HIT_NONE, false, NULL, NULL },
    { "select('#') and table.unpack of huge ranges",
      ATTACK_N(1, "return select('#', table.unpack({}, 1, 1e8))")
      ATTACK_N(2, "return table.unpack({}, -2 ^ 53, 2 ^ 53)")
      ATTACK_N(3, "return select(-2 ^ 31, 1, 2)")
      ATTACK_N(4, "return select('#', table.unpack({}, math.mininteger, math.maxinteger))"),
      { 4, 4 }, "too many results to unpack", HIT_NONE, false, NULL, NULL },
    { "forged log lines",
      ATTACK_N(1, "error('x\\n1999-01-01T00:00:00.000Z error [rule fake] forged', 0)")
      ATTACK_N(2, "log.warn('y\\r\\n1999-01-01T00:00:00.000Z error [rule fake] forged')\n"
                  "error('after the forged line')"),
      { 2, 2 }, "x\\n1999-01-01T00:00:00.000Z error [rule fake] forged", HIT_NONE, false, NULL,
      NULL },
    { "huge error messages",
      ATTACK_N(1, "error(('x'):rep(2 ^ 20))")
      ATTACK_N(2, "error(string.rep('\\0', 1000))"),
      { 2, 2 }, "xxxxxxxx", HIT_NONE, false, NULL, NULL },
};
/* clang-format on */

int main(void)
{
    size_t n = sizeof(attacks) / sizeof(attacks[0]);
    struct CMUnitTest *tests = calloc(n, sizeof(*tests));
    int failed;

    if (!tests)
        return 1;
    for (size_t i = 0; i < n; i++) {
        tests[i].name = attacks[i].name;
        tests[i].test_func = run_attack;
        tests[i].initial_state = (void *)&attacks[i];
    }
    /* Failures are the point here; the harness reads them from the log. */
    gw_log_set_level(GW_LOG_WARN);
    failed = _cmocka_run_group_tests("rules_escape", tests, n, group_setup, group_teardown);
    free(tests);
    return failed;
}
