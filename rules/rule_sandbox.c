/* The sandbox: the Lua state rules run in, and the limits of one call.
 *
 * What a rule can reach: the base library minus the loaders and the
 * collector (no dofile, loadfile, load, collectgarbage, rawset, print),
 * string (without dump), table, math, utf8, and an os with time, date and
 * clock only; plus gridgate's own functions (rule_api.c, rule_helpers.c).
 * No coroutines: a coroutine runs on a Lua thread of its own, which the
 * limits below would have to follow. Globals and the
 * library tables are read-only proxies, so one rule cannot change what
 * another one sees, and an assignment to an undeclared global is an error.
 *
 * Limits of one call: an instruction budget and a wall-clock deadline
 * checked by a count hook; a cap on the whole heap in the allocator; and,
 * because the hook never fires inside one C function (STACK-NOTES gotcha
 * 7), caps on the C functions that can work long on little input:
 * string.rep, the pattern functions, table.sort, insert, remove and move,
 * and os.date. xpcall's handler never runs rule code once a call is
 * tripped (Lua runs it with hooks off when the hook raised the error). Whichever limit is hit
 * "trips" the call: from then on the hook raises at every instruction, so
 * a pcall inside the rule cannot swallow it.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "rule_int.h"

static void limits_hook(lua_State *L, lua_Debug *ar);

/* Ends the call in progress: from the next instruction on, the hook raises
 * at every instruction. lua_sethook is safe to call from anywhere, even
 * from inside the allocator (it only sets fields). */
static void trip_now(struct rule_engine *e, enum rule_trip trip)
{
    if (!e->in_call || e->trip != RULE_TRIP_NONE)
        return;
    e->trip = trip;
    e->hook_every = true;
    lua_sethook(e->L, limits_hook, LUA_MASKCOUNT, 1);
}

/* ---- allocator ---------------------------------------------------------- */

/* lauxlib's l_alloc with a cap. Only growth may fail: Lua assumes that
 * shrinking never does. A refusal during a call trips it: the heap is
 * shared by every rule and every device's state, so a rule that fills it
 * must not carry on behind a pcall. (Some refusals are retried by Lua
 * after an emergency collection, others, like luaL_Buffer's, are not;
 * tripping on the first keeps the outcome the same for both.) */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rule_engine *e = ud;
    size_t old = ptr ? osize : 0;
    void *p;

    if (nsize == 0) {
        free(ptr);
        e->mem_used -= old;
        return NULL;
    }
    if (nsize > old) {
        if (nsize - old > e->limits.memory_bytes - e->mem_used) {
            trip_now(e, RULE_TRIP_MEMORY);
            return NULL;
        }
        p = realloc(ptr, nsize);
        if (!p)
            return NULL;
        e->mem_used += nsize - old;
        return p;
    }
    p = realloc(ptr, nsize);
    e->mem_used -= old - nsize;
    return p ? p : ptr;
}

bool rule__mem_charge(struct rule_engine *e, size_t n)
{
    if (e->mem_used > e->limits.memory_bytes || n > e->limits.memory_bytes - e->mem_used) {
        trip_now(e, RULE_TRIP_MEMORY);
        return false;
    }
    e->mem_used += n;
    return true;
}

void rule__mem_release(struct rule_engine *e, size_t n)
{
    e->mem_used -= n;
}

static int panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";

    gw_error("rules", "Lua panic (unprotected error): %s", msg);
    return 0; /* Lua aborts */
}

/* ---- limits of one call ------------------------------------------------- */

const char *rule__trip_name(enum rule_trip trip)
{
    switch (trip) {
    case RULE_TRIP_NONE:
        return "none";
    case RULE_TRIP_BUDGET:
        return "instruction budget exceeded";
    case RULE_TRIP_TIME:
        return "time limit exceeded";
    case RULE_TRIP_PATTERN:
        return "pattern too complex for its subject";
    case RULE_TRIP_SORT:
        return "table operation too large (table.sort, insert, remove or move)";
    case RULE_TRIP_REP:
        return "string.rep result too large";
    case RULE_TRIP_MEMORY:
        return "memory limit exceeded";
    }
    return "limit exceeded";
}

/* `level` is the stack level whose line the message names: 0 in the hook
 * (the Lua function that was interrupted), 1 in a C function. */
static int raise_trip(lua_State *L, const struct rule_engine *e, int level)
{
    luaL_where(L, level);
    switch (e->trip) {
    case RULE_TRIP_BUDGET:
        lua_pushfstring(L, "instruction budget exceeded (%I instructions)",
                        (lua_Integer)e->limits.instruction_budget);
        break;
    case RULE_TRIP_TIME:
        lua_pushfstring(L, "time limit exceeded (%d ms)", (int)(RULE_CALL_DEADLINE_NS / 1000000));
        break;
    case RULE_TRIP_MEMORY:
        lua_pushfstring(L, "memory limit exceeded (%I bytes)", (lua_Integer)e->limits.memory_bytes);
        break;
    default:
        lua_pushstring(L, rule__trip_name(e->trip));
        break;
    }
    lua_concat(L, 2);
    return lua_error(L);
}

/* The hook only runs between instructions; the C functions that can work
 * long on little input check the deadline themselves, before they start. */
/* Whether the call is past its deadline. The clock is read first here,
 * not when the call begins: most calls end before the hook ever fires,
 * and so never pay for it. The call's time then counts from the first
 * check, at most one hook step (or one guarded C function) in. */
static bool past_deadline(struct rule_engine *e)
{
    int64_t now = gw_monotonic_ns();

    if (e->deadline_ns == 0) {
        e->deadline_ns = now + RULE_CALL_DEADLINE_NS;
        return false;
    }
    return now > e->deadline_ns;
}

static void check_deadline(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);

    if (!e->in_call)
        return;
    if (e->trip == RULE_TRIP_NONE && past_deadline(e))
        trip_now(e, RULE_TRIP_TIME);
    if (e->trip != RULE_TRIP_NONE)
        raise_trip(L, e, 1);
}

static void limits_hook(lua_State *L, lua_Debug *ar)
{
    struct rule_engine *e = rule__engine(L);

    (void)ar;
    if (!e->in_call)
        return;
    if (e->trip == RULE_TRIP_NONE) {
        e->ticks += e->hook_step;
        if (e->ticks >= e->limits.instruction_budget)
            e->trip = RULE_TRIP_BUDGET;
        else if (past_deadline(e))
            e->trip = RULE_TRIP_TIME;
        else
            return;
    }
    if (!e->hook_every) {
        e->hook_every = true;
        lua_sethook(L, limits_hook, LUA_MASKCOUNT, 1);
    }
    raise_trip(L, e, 0);
}

/* The hook stays set between calls (it returns at once outside them), so
 * that a call costs no lua_sethook: only a call that tripped (the hook
 * then fires at every instruction) sets it back. Its count is not
 * restarted either: the first step of a call may be short, so a call may
 * be charged up to one step (RULE_HOOK_STEP instructions) too many. */
void rule__limits_begin(struct rule_engine *e)
{
    long budget = e->limits.instruction_budget;
    int step = budget < RULE_HOOK_STEP ? (int)budget : RULE_HOOK_STEP;

    e->in_call = true;
    e->trip = RULE_TRIP_NONE;
    e->ticks = 0;
    e->deadline_ns = 0;
    if (e->hook_every || e->hook_step != step || !lua_gethook(e->L)) {
        e->hook_every = false;
        e->hook_step = step;
        lua_sethook(e->L, limits_hook, LUA_MASKCOUNT, step);
    }
}

void rule__limits_end(struct rule_engine *e)
{
    e->in_call = false;
}

/* For the C functions below: their own error says what went wrong; the
 * trip makes sure the call ends even if a pcall catches that error. */
static void set_trip(lua_State *L, enum rule_trip trip)
{
    trip_now(rule__engine(L), trip);
}

/* Calls the original function (upvalue 1) with this call's arguments. */
static int call_original(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int guarded_rep(lua_State *L)
{
    size_t len, sep_len;
    lua_Integer n;
    double total;

    check_deadline(L);
    luaL_checklstring(L, 1, &len);
    n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &sep_len);
    total = n > 0 ? (double)len * (double)n + (double)sep_len * (double)(n - 1) : 0;
    if (total > (double)RULE_REP_MAX) {
        set_trip(L, RULE_TRIP_REP);
        return luaL_error(L, "string.rep: result too large (at most %I bytes)",
                          (lua_Integer)RULE_REP_MAX);
    }
    return call_original(L);
}

static int guarded_sort(lua_State *L)
{
    lua_Integer n;

    check_deadline(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    n = luaL_len(L, 1);
    if (luaL_getmetafield(L, 1, "__len") != LUA_TNIL) {
        set_trip(L, RULE_TRIP_SORT);
        return luaL_error(L, "table.sort: tables with __len are not allowed");
    }
    if (n > RULE_SORT_MAX) {
        set_trip(L, RULE_TRIP_SORT);
        return luaL_error(L, "table.sort: table too large (%I elements, at most %d)", n,
                          RULE_SORT_MAX);
    }
    return call_original(L);
}

/* table.insert and table.remove shift #t elements in one C loop, and #t
 * may come from a __len that says anything; table.move copies as many as
 * it is told. Refuse __len there (luaL_len would call it twice, so a
 * check of its first answer proves nothing), and cap the moves. */
static int guarded_shift(lua_State *L)
{
    check_deadline(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (luaL_getmetafield(L, 1, "__len") != LUA_TNIL) {
        set_trip(L, RULE_TRIP_SORT);
        return luaL_error(L, "table.insert / table.remove: tables with __len are not allowed");
    }
    return call_original(L);
}

static int guarded_move(lua_State *L)
{
    lua_Integer f, e;

    check_deadline(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    f = luaL_checkinteger(L, 2);
    e = luaL_checkinteger(L, 3);
    if (e >= f && ((lua_Unsigned)e - (lua_Unsigned)f) >= RULE_TABLE_OP_MAX) {
        set_trip(L, RULE_TRIP_SORT);
        return luaL_error(L, "table.move: too many elements (at most %d)", RULE_TABLE_OP_MAX);
    }
    return call_original(L);
}

/* os.date: every conversion of the format is one strftime, all in one C
 * call: keep formats to a sensible length. */
static int guarded_date(lua_State *L)
{
    size_t len;

    check_deadline(L);
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_tolstring(L, 1, &len);
        if (len > RULE_DATE_FORMAT_MAX)
            return luaL_error(L, "os.date: format too long (at most %d bytes)",
                              RULE_DATE_FORMAT_MAX);
    }
    return call_original(L);
}

/* ---- pattern work ------------------------------------------------------- */

static bool has_specials(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != '\0' && strchr("^$*+?.([%-", p[i]))
            return true;
    return false;
}

/* End of the single-character class starting at p (lstrlib's classEnd,
 * but never past end: a malformed pattern is left to lstrlib to report). */
static const char *class_end(const char *p, const char *end)
{
    char c = *p++;

    if (c == '%')
        return p < end ? p + 1 : p;
    if (c == '[') {
        if (p < end && *p == '^')
            p++;
        do {
            if (p >= end)
                return end;
            c = *p++;
            if (c == '%' && p < end)
                p++;
        } while (p < end && *p != ']');
        return p < end ? p + 1 : end;
    }
    return p;
}

/* An upper bound, in matcher steps, of what lstrlib may do to match
 * pattern p against a subject of n bytes: every start position (one if
 * anchored), times the pattern's items, times (n + 1) for every item that
 * can expand and be backtracked into (x*, x+, x-), times 2 for every x?.
 * An expanding item that ends the pattern is not backtracked into (what
 * follows cannot fail), so it does not multiply. %b and back-references
 * match one way only but scan up to n bytes themselves, wherever they
 * are: they multiply by (n + 1) too (`('('):rep(2^20):find('%b()')` would
 * otherwise take minutes).
 * Measured here: 0.3-3 ns per step, so RULE_PATTERN_WORK_MAX is at most
 * tens of milliseconds, and `('a'):rep(800):find('.-.-b')` (1.2 s in
 * STACK-NOTES) is refused before it starts. */
static double pattern_work(const char *p, size_t len, size_t n, bool caret_anchors)
{
    const char *end = p + len;
    double span = (double)n + 1, work = 1, items = 0;
    bool anchored = false, pending = false;

    if (caret_anchors && p < end && *p == '^') {
        anchored = true;
        p++;
    }
    while (p < end) {
        const char *ep;
        bool expands = false, scans = false;

        if (*p == '(' || *p == ')') { /* captures match nothing themselves */
            p++;
            continue;
        }
        if (*p == '%' && p + 1 < end && p[1] == 'b') {
            ep = p + 4 < end ? p + 4 : end;
            scans = true;
        } else if (*p == '%' && p + 1 < end && p[1] == 'f') {
            ep = p + 2 < end ? class_end(p + 2, end) : end;
        } else if (*p == '%' && p + 1 < end && p[1] >= '0' && p[1] <= '9') {
            ep = p + 2;
            scans = true;
        } else {
            ep = class_end(p, end);
            if (ep < end && (*ep == '*' || *ep == '+' || *ep == '-')) {
                ep++;
                expands = true;
            } else if (ep < end && *ep == '?') {
                ep++;
                work *= 2;
            }
        }
        /* Something follows the previous expanding item: it can fail, so
         * that item may be backtracked into at every length. */
        if (pending)
            work *= span;
        if (scans)
            work *= span;
        pending = expands;
        items++;
        p = ep;
    }
    return (anchored ? 1 : span) * work * (items > 0 ? items : 1);
}

enum pattern_fn {
    PATTERN_MATCH,  /* match, gsub */
    PATTERN_FIND,   /* its plain search (4th argument, or no specials) is a memchr/memcmp scan */
    PATTERN_GMATCH, /* a leading '^' is no anchor there */
};

/* string.find, match, gmatch and gsub: refuse a pattern whose worst case
 * is too much work for its subject. Upvalue 2 is the enum pattern_fn. */
static int guarded_pattern(lua_State *L)
{
    size_t n, m;
    const char *p;
    double work;

    check_deadline(L);
    luaL_checklstring(L, 1, &n);
    p = luaL_checklstring(L, 2, &m);
    switch (lua_tointeger(L, lua_upvalueindex(2))) {
    case PATTERN_FIND:
        if (lua_toboolean(L, 4) || !has_specials(p, m)) {
            work = m > n ? 0 : (double)(n - m + 1) * (double)m / 100; /* ~0.014 ns a byte */
            break;
        }
        /* fall through */
    case PATTERN_MATCH:
        work = pattern_work(p, m, n, true);
        break;
    default:
        work = pattern_work(p, m, n, false);
        break;
    }
    if (work > RULE_PATTERN_WORK_MAX) {
        set_trip(L, RULE_TRIP_PATTERN);
        return luaL_error(L, "pattern too complex for a %I-byte string", (lua_Integer)n);
    }
    return call_original(L);
}

/* ---- read-only tables --------------------------------------------------- */

/* The table a proxy stands for: its metatable's __index. */
static void push_proxied(lua_State *L, int proxy)
{
    if (!lua_getmetatable(L, proxy))
        luaL_error(L, "not a read-only table");
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) != LUA_TTABLE)
        luaL_error(L, "not a read-only table");
    lua_remove(L, -2);
}

/* next() over a proxy. It takes the proxy, never the table behind it, so
 * that pairs() cannot hand a rule a writable reference to that table. */
static int ro_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    push_proxied(L, 1);
    lua_pushvalue(L, 2);
    if (lua_next(L, 3))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs of a proxy. */
static int ro_pairs(lua_State *L)
{
    lua_pushcfunction(L, ro_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

int rule__readonly_error(lua_State *L, const char *what)
{
    if (lua_type(L, 2) == LUA_TSTRING)
        return luaL_error(L, "%s is read-only (cannot set '%s')", what, lua_tostring(L, 2));
    return luaL_error(L, "%s is read-only", what);
}

/* __newindex of the proxies built once; upvalue 1 names the table. */
static int ro_newindex(lua_State *L)
{
    return rule__readonly_error(L, lua_tostring(L, lua_upvalueindex(1)));
}

/* [data, newindex] -> [proxy of data] */
static void make_proxy(lua_State *L)
{
    lua_createtable(L, 0, 4);
    lua_insert(L, -2);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_createtable(L, 0, 0);
    lua_insert(L, -2);
    lua_setmetatable(L, -2);
    lua_remove(L, -2);
}

void rule__push_proxy_mt(lua_State *L, int idx, lua_CFunction newindex)
{
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
}

void rule__make_readonly(lua_State *L, const char *what)
{
    lua_pushstring(L, what);
    lua_pushcclosure(L, ro_newindex, 1);
    make_proxy(L);
}

void rule__make_readonly_fast(lua_State *L, lua_CFunction newindex)
{
    lua_pushcfunction(L, newindex);
    make_proxy(L);
}

/* ---- globals ------------------------------------------------------------ */

static int global_read(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING)
        return luaL_error(L, "undeclared global '%s'", lua_tostring(L, 2));
    return luaL_error(L, "undeclared global");
}

/* __newindex of _G's proxy; upvalue 1 is the real globals table. */
static int global_write(lua_State *L)
{
    const char *name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";

    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return luaL_error(L, "global '%s' is read-only in rules", name);
    return luaL_error(L, "assignment to undeclared global '%s' (declare it with local)", name);
}

/* xpcall's message handler runs where the error was raised, before the
 * stack unwinds. When that error came from the count hook, Lua has hooks
 * switched off there (a hook that raises never gets to switch them back
 * on; the pcall's unwinding does), so a handler that loops would loop
 * for ever. The handler is wrapped: once the call is tripped, no rule
 * code runs in it, and the error goes on as it is. Upvalue 1 is the
 * rule's handler. */
static int xpcall_handler(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);

    if (!e->in_call || e->trip != RULE_TRIP_NONE)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int guarded_xpcall(lua_State *L)
{
    luaL_checkany(L, 2);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    return call_original(L);
}

/* setmetatable without __gc: a finalizer would run at a time no rule call
 * owns (between calls, in lua_close), outside every limit. */
static int guarded_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in rules");
    }
    lua_settop(L, 2);
    return call_original(L);
}

static void wrap(lua_State *L, int table, const char *name, lua_CFunction fn, int flag)
{
    lua_getfield(L, table, name);
    lua_pushinteger(L, flag);
    lua_pushcclosure(L, fn, 2);
    lua_setfield(L, table, name);
}

static int sandbox_setup(lua_State *L)
{
    static const luaL_Reg libs[] = {
        { LUA_GNAME, luaopen_base },       { LUA_STRLIBNAME, luaopen_string },
        { LUA_TABLIBNAME, luaopen_table }, { LUA_MATHLIBNAME, luaopen_math },
        { LUA_UTF8LIBNAME, luaopen_utf8 }, { NULL, NULL },
    };
    static const char *const removed[] = {
        "dofile", "loadfile", "load", "collectgarbage", "print", "rawset", "warn", NULL,
    };
    static const char *const os_kept[] = { "clock", "date", "time", NULL };
    static const char *const readonly[] = { "string", "table", "math", "utf8", "os", "log", NULL };
    int G;

    for (const luaL_Reg *lib = libs; lib->name; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    G = lua_gettop(L);

    /* os: only the clocks. The full table stays in the registry's
     * _LOADED, out of reach without require or debug. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 3);
    for (const char *const *name = os_kept; *name; name++) {
        lua_getfield(L, -2, *name);
        lua_setfield(L, -2, *name);
    }
    lua_setfield(L, G, "os");
    lua_pop(L, 1);

    for (const char *const *name = removed; *name; name++) {
        lua_pushnil(L);
        lua_setfield(L, G, *name);
    }
    lua_getfield(L, G, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    wrap(L, lua_gettop(L), "rep", guarded_rep, 0);
    wrap(L, lua_gettop(L), "find", guarded_pattern, PATTERN_FIND);
    wrap(L, lua_gettop(L), "match", guarded_pattern, PATTERN_MATCH);
    wrap(L, lua_gettop(L), "gmatch", guarded_pattern, PATTERN_GMATCH);
    wrap(L, lua_gettop(L), "gsub", guarded_pattern, PATTERN_MATCH);
    lua_pop(L, 1);
    lua_getfield(L, G, "table");
    wrap(L, lua_gettop(L), "sort", guarded_sort, 0);
    wrap(L, lua_gettop(L), "insert", guarded_shift, 0);
    wrap(L, lua_gettop(L), "remove", guarded_shift, 0);
    wrap(L, lua_gettop(L), "move", guarded_move, 0);
    lua_pop(L, 1);
    lua_getfield(L, G, "os");
    wrap(L, lua_gettop(L), "date", guarded_date, 0);
    lua_pop(L, 1);
    wrap(L, G, "setmetatable", guarded_setmetatable, 0);
    wrap(L, G, "xpcall", guarded_xpcall, 0);

    lua_pushcfunction(L, rule__define);
    lua_setfield(L, G, "rule");
    lua_pushvalue(L, G);
    rule__api_register(L);
    rule__helpers_register(L);
    rule__window_register(L);
    lua_pop(L, 1);

    /* Strings share one metatable, whose __index is the string table
     * itself: hide it from getmetatable. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    for (const char *const *name = readonly; *name; name++) {
        lua_getfield(L, G, *name);
        rule__make_readonly(L, *name);
        lua_setfield(L, G, *name);
    }

    /* Globals: chunks get a proxy as _ENV whose misses go to the real
     * table (reads of unknown names raise) and whose writes raise. */
    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, G);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, G);
    lua_pushcclosure(L, global_write, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, G, "_G");
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, global_read);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, G);
    return 0;
}

lua_State *rule__sandbox_new(struct rule_engine *e)
{
    lua_State *L = lua_newstate(limited_alloc, e);

    if (!L)
        return NULL;
    *(struct rule_engine **)lua_getextraspace(L) = e;
    lua_atpanic(L, panic);
    lua_pushcfunction(L, sandbox_setup);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_close(L);
        return NULL;
    }
    return L;
}
