/* The rules' helpers that keep time: window(), held() and duration().
 *
 * A window is a full userdata holding a ring of (time, value) points: the
 * first few in the window itself, more in a second userdata, its user
 * value, so that all of it is on the Lua heap (counted against the memory
 * cap, freed by the collector, no __gc) and can grow to
 * RULE_WINDOW_POINTS. Windows and held timers live per (rule, device,
 * name) in the rule's registry table (RULE_SLOT_WINDOWS, RULE_SLOT_HELD),
 * so window("smoke", 60) returns the same window at every call for that
 * device, and a reload can carry them over (rule_state.c). A point
 * expires once it is `seconds` old: a window holds (now - seconds, now].
 *
 * Time is the handler's time (the reading's, the event's, the silence
 * check's), never the wall clock, so replays and tests give the same
 * answers.
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gw_duration.h"
#include "rule_int.h"

#define RULE_WINDOW_POINTS 1024 /* most points a window keeps; the oldest go first */
#define WINDOW_INLINE 8         /* points kept in the window itself */

struct window_point {
    int64_t t_ns;
    double v;
};

struct window {
    int64_t span_ns;
    uint32_t head; /* oldest point */
    uint32_t n;
    uint32_t cap; /* a power of two */
    /* inline_pts, or the user value's memory once it grew; userdata
     * memory never moves */
    struct window_point *pts;
    struct window_point inline_pts[WINDOW_INLINE];
};

/* Registry key of the windows' metatable. */
static char window_mt_key;

static struct window_point *at(const struct window *w, uint32_t i)
{
    return &w->pts[(w->head + i) & (w->cap - 1)];
}

/* ---- arguments ---------------------------------------------------------- */

/* The most a number of seconds may say: gw_duration_parse's own bound. */
#define DURATION_MAX_S (100.0 * 365 * 86400)

int rule__duration_at(lua_State *L, int idx, double *ret_seconds)
{
    int64_t ns;
    double v;
    int r;

    if (lua_type(L, idx) == LUA_TSTRING) {
        r = gw_duration_parse(lua_tostring(L, idx), &ns);
        if (r < 0)
            return r;
        v = (double)ns / 1e9;
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
        v = lua_tonumber(L, idx);
        if (!(v >= 0 && v <= DURATION_MAX_S))
            return -ERANGE;
    } else {
        return -EINVAL;
    }
    *ret_seconds = v;
    return 0;
}

static double check_seconds(lua_State *L, int idx, const char *fn, bool zero_ok)
{
    double v;

    if (rule__duration_at(L, idx, &v) < 0 || (v == 0 && !zero_ok))
        luaL_error(L,
                   "%s: bad duration (a number of seconds%s, or a string such as \"90s\", "
                   "\"15m\", \"2h\", \"1d\")",
                   fn, zero_ok ? "" : " above 0");
    return v;
}

/* The engine, when a handler runs; a Lua error otherwise. */
static struct rule_engine *running(lua_State *L, const char *fn)
{
    struct rule_engine *e = rule__engine(L);

    if (!e->rule || !e->device_id)
        luaL_error(L, "%s can only be used inside on_reading, on_event or on_silence", fn);
    return e;
}

static void check_name(lua_State *L, int idx, const char *fn)
{
    size_t len;
    const char *name = luaL_checklstring(L, idx, &len);

    if (len == 0 || len > RULE_NAME_MAX || strlen(name) != len)
        luaL_error(L, "%s: name must be 1 to %d bytes", fn, RULE_NAME_MAX);
}

/* Pushes the table for (running rule, device) in the rule's map at slot,
 * creating it when create is set; pushes nil otherwise when absent. */
static void push_device_map(lua_State *L, struct rule_engine *e, int slot, bool create)
{
    int top = lua_gettop(L);

    lua_rawgeti(L, LUA_REGISTRYINDEX, e->rule->ref);
    lua_rawgeti(L, -1, slot);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &rule__device_key); /* e->device_id, interned */
    if (lua_rawget(L, -2) != LUA_TTABLE && create) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &rule__device_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, top + 2);
    }
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
}

/* ---- windows ------------------------------------------------------------ */

/* Grows the ring to new_cap points, oldest first at 0. May raise. */
static void window_grow(lua_State *L, int idx, struct window *w, uint32_t new_cap)
{
    struct window_point *pts = lua_newuserdatauv(L, new_cap * sizeof(*pts), 0);

    for (uint32_t i = 0; i < w->n; i++)
        pts[i] = *at(w, i);
    lua_setiuservalue(L, idx, 1);
    w->pts = pts;
    w->cap = new_cap;
    w->head = 0;
}

/* Pushes a new empty window with room for cap points. May raise. */
static struct window *window_new(lua_State *L, int64_t span_ns, uint32_t cap)
{
    struct window *w = lua_newuserdatauv(L, sizeof(*w), 1);

    memset(w, 0, sizeof(*w));
    w->span_ns = span_ns;
    w->pts = w->inline_pts;
    w->cap = WINDOW_INLINE;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &window_mt_key);
    lua_setmetatable(L, -2);
    if (cap > WINDOW_INLINE)
        window_grow(L, lua_gettop(L), w, cap);
    return w;
}

/* The window at argument 1 (checked against the metatable, upvalue 1). */
static struct window *check_window(lua_State *L, const char *method)
{
    if (lua_type(L, 1) != LUA_TUSERDATA || !lua_getmetatable(L, 1) ||
        !lua_rawequal(L, -1, lua_upvalueindex(1)))
        luaL_error(L, "window:%s: call it on a window, as w:%s(...)", method, method);
    lua_pop(L, 1);
    return lua_touserdata(L, 1);
}

/* Points older than the span, seen from the handler's time, expire. */
static void window_expire(const struct rule_engine *e, struct window *w)
{
    int64_t limit;

    if (!e->device_id || w->n == 0)
        return;
    limit = e->ts_ns - w->span_ns;
    while (w->n > 0 && at(w, 0)->t_ns <= limit) {
        w->head = (w->head + 1) & (w->cap - 1);
        w->n--;
    }
}

static int window_push(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);
    struct window *w = check_window(L, "push");
    double v = luaL_checknumber(L, 2);
    struct window_point p;
    uint32_t i;

    if (!isfinite(v))
        return luaL_error(L, "window:push: value must be a finite number");
    if (!e->device_id)
        return luaL_error(L,
                          "window:push can only be used inside on_reading, on_event or on_silence");
    window_expire(e, w);
    if (w->n == RULE_WINDOW_POINTS) {
        w->head = (w->head + 1) & (w->cap - 1);
        w->n--;
    } else if (w->n == w->cap) {
        window_grow(L, 1, w, w->cap * 2);
    }
    /* In time order: a reading that arrives late goes where it belongs. */
    p = (struct window_point){ .t_ns = e->ts_ns, .v = v };
    for (i = w->n; i > 0 && at(w, i - 1)->t_ns > p.t_ns; i--)
        *at(w, i) = *at(w, i - 1);
    *at(w, i) = p;
    w->n++;
    lua_settop(L, 1);
    return 1; /* w, so that pushes chain */
}

static int window_count(lua_State *L)
{
    struct window *w = check_window(L, "count");

    window_expire(rule__engine(L), w);
    lua_pushinteger(L, w->n);
    return 1;
}

static int window_avg(lua_State *L)
{
    struct window *w = check_window(L, "avg");
    double sum = 0;

    window_expire(rule__engine(L), w);
    if (w->n == 0)
        return 0;
    for (uint32_t i = 0; i < w->n; i++)
        sum += at(w, i)->v;
    lua_pushnumber(L, sum / w->n);
    return 1;
}

/* min (upvalue 2 false) or max (true). */
static int window_extreme(lua_State *L)
{
    bool max = lua_toboolean(L, lua_upvalueindex(2));
    struct window *w = check_window(L, max ? "max" : "min");
    double best;

    window_expire(rule__engine(L), w);
    if (w->n == 0)
        return 0;
    best = at(w, 0)->v;
    for (uint32_t i = 1; i < w->n; i++) {
        double v = at(w, i)->v;
        if (max ? v > best : v < best)
            best = v;
    }
    lua_pushnumber(L, best);
    return 1;
}

/* Per second, from the oldest point to the newest; nil with fewer than
 * two points or when they share one time. */
static int window_rate(lua_State *L)
{
    struct window *w = check_window(L, "rate");
    const struct window_point *first, *last;

    window_expire(rule__engine(L), w);
    if (w->n < 2)
        return 0;
    first = at(w, 0);
    last = at(w, w->n - 1);
    if (last->t_ns <= first->t_ns)
        return 0;
    lua_pushnumber(L, (last->v - first->v) / ((double)(last->t_ns - first->t_ns) / 1e9));
    return 1;
}

/* window(name, seconds) */
static int api_window(lua_State *L)
{
    struct rule_engine *e = running(L, "window");
    int64_t span_ns;
    struct window *w;

    check_name(L, 1, "window");
    span_ns = (int64_t)(check_seconds(L, 2, "window", false) * 1e9);
    lua_settop(L, 2);
    push_device_map(L, e, RULE_SLOT_WINDOWS, true); /* 3 */
    lua_pushvalue(L, 1);
    if (lua_rawget(L, 3) == LUA_TUSERDATA) {
        w = lua_touserdata(L, -1);
        w->span_ns = span_ns; /* the latest call's span counts */
        return 1;
    }
    lua_pop(L, 1);
    window_new(L, span_ns, WINDOW_INLINE);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 3);
    return 1;
}

bool rule__window_copy(lua_State *to, lua_State *from, int idx)
{
    const struct window *src;
    struct window *w;
    uint32_t cap = WINDOW_INLINE;
    bool is_window;

    if (lua_type(from, idx) != LUA_TUSERDATA || !lua_checkstack(from, 2))
        return false;
    idx = lua_absindex(from, idx);
    if (!lua_getmetatable(from, idx))
        return false;
    lua_rawgetp(from, LUA_REGISTRYINDEX, &window_mt_key);
    is_window = lua_rawequal(from, -1, -2);
    lua_pop(from, 2);
    if (!is_window)
        return false;
    src = lua_touserdata(from, idx);
    while (cap < src->n)
        cap *= 2;
    w = window_new(to, src->span_ns, cap);
    for (uint32_t i = 0; i < src->n; i++)
        w->pts[i] = *at(src, i);
    w->n = src->n;
    return true;
}

/* ---- held, duration ----------------------------------------------------- */

/* held(name, cond, seconds): true once cond has been true at every call
 * for at least `seconds` of the handler's time; a false resets it. */
static int api_held(lua_State *L)
{
    struct rule_engine *e = running(L, "held");
    bool cond = lua_toboolean(L, 2);
    double seconds;
    int64_t since;

    check_name(L, 1, "held");
    seconds = check_seconds(L, 3, "held", true);
    lua_settop(L, 3);
    push_device_map(L, e, RULE_SLOT_HELD, cond); /* 4 */
    if (!cond) {
        if (lua_istable(L, 4)) {
            lua_pushvalue(L, 1);
            lua_pushnil(L);
            lua_rawset(L, 4);
        }
        lua_pushboolean(L, false);
        return 1;
    }
    lua_pushvalue(L, 1);
    if (lua_rawget(L, 4) == LUA_TNUMBER) {
        since = lua_tointeger(L, -1);
    } else {
        since = e->ts_ns;
        lua_pushvalue(L, 1);
        lua_pushinteger(L, since);
        lua_rawset(L, 4);
    }
    lua_pushboolean(L, (double)(e->ts_ns - since) >= seconds * 1e9);
    return 1;
}

/* duration("15m") -> 900: seconds, a whole number when whole. The same
 * parser as the configuration's (gw_duration_parse). */
static int api_duration(lua_State *L)
{
    double v;

    if (rule__duration_at(L, 1, &v) < 0) {
        if (lua_type(L, 1) == LUA_TSTRING)
            return luaL_error(L,
                              "duration: bad duration '%s' (such as \"90s\", \"15m\", \"2h\", "
                              "\"1d\", \"500ms\")",
                              lua_tostring(L, 1));
        return luaL_error(L, "duration: needs a string such as \"15m\" or a number of seconds");
    }
    if (v == floor(v) && v <= 9e15)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
    return 1;
}

void rule__helpers_register(lua_State *L)
{
    static const struct {
        const char *name;
        lua_CFunction fn;
        int flag;
    } methods[] = {
        { "push", window_push, 0 },   { "count", window_count, 0 }, { "avg", window_avg, 0 },
        { "min", window_extreme, 0 }, { "max", window_extreme, 1 }, { "rate", window_rate, 0 },
    };
    int t = lua_gettop(L);

    /* The windows' metatable: methods only, hidden from getmetatable. */
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, (int)(sizeof(methods) / sizeof(methods[0])));
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        lua_pushvalue(L, t + 1);
        lua_pushboolean(L, methods[i].flag);
        lua_pushcclosure(L, methods[i].fn, 2);
        lua_setfield(L, -2, methods[i].name);
    }
    lua_setfield(L, t + 1, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, t + 1, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &window_mt_key);

    lua_pushcfunction(L, api_window);
    lua_setfield(L, t, "window");
    lua_pushcfunction(L, api_held);
    lua_setfield(L, t, "held");
    lua_pushcfunction(L, api_duration);
    lua_setfield(L, t, "duration");
}
