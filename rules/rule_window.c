/* rule_window: window() and held(), the rules' per-(rule, device, name)
 * memory of time, kept in C; and the case marks kept beside them.
 *
 * A district has hundreds of thousands of devices, and a window or a held
 * timer as Lua objects (a userdata, a table per device and rule to find it
 * by name, an entry in a map per rule) cost about a kilobyte per device.
 * Here each device that has any keeps one record (rule_state.c's e->cdevs)
 * with an array of slots: (the rule's key, the interned name, a value),
 * 16 bytes each. A held timer's value is the time its condition became
 * true; a window's is its id in e->wins, a 32-byte entry of one array with
 * one point inline and a ring of more once it grows (by half, to
 * RULE_WINDOW_POINTS). Devices no rule keeps a window or timer for cost
 * nothing.
 *
 * Every byte of slots, windows, points and the window table counts
 * against the engine's memory cap (rule__mem_charge), as the Lua heap
 * does: a rule cannot grow memory through windows any more than through
 * tables. The per-device records themselves are one per device at most
 * (e->dev_bytes, reported by rule_engine_memory).
 *
 * What a rule holds is a handle: a light userdata whose value is the
 * window's id and a generation, with the methods in the light userdata
 * metatable. window("smoke", 60) returns an equal handle at every call for
 * that rule and device; a handle whose window is gone (its rule was
 * dropped by a reload) is refused, never followed. Names are interned in
 * two registry tables (name -> id, id -> name), on the Lua heap.
 *
 * A reload in place keeps every slot where it is: the new rule takes the
 * old rule's key (rule_state.c), and the slots of rules that are gone are
 * swept. Time is the handler's time (the reading's, the event's, the
 * silence check's), never the wall clock, so replays and tests give the
 * same answers. A point expires once it is `seconds` old: a window holds
 * (now - seconds, now].
 *
 * A case mark is a slot with no name (RULE_CSLOT_CASE): the rule may have
 * a case open about this device. Maintenance rules say clear_case{} on
 * every message of every device; with the mark that costs a lookup here,
 * instead of an action and a store query, and the rules need no Lua state
 * of their own to avoid it (a few hundred bytes per device and rule).
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rule_int.h"

#define RULE_WINDOW_POINTS 1024 /* most points a window keeps; the oldest go first */
#define RULE_WINDOW_SPAN_MAX_S (30 * 86400) /* spans are kept in 32-bit milliseconds */

_Static_assert(sizeof(uintptr_t) >= 8, "window handles hold an id and a generation");

/* Registry keys: name -> id, and id -> name (a sequence). */
static char name_ids_key, names_key;

/* ---- arguments ---------------------------------------------------------- */

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

static int raise_memory(lua_State *L, const char *fn)
{
    return luaL_error(L, "%s: memory limit exceeded (%I bytes)", fn,
                      (lua_Integer)rule__engine(L)->limits.memory_bytes);
}

/* The id of the name at idx (a string), 0 when it has none and create is
 * false. Creating may raise (memory). */
static uint32_t intern(lua_State *L, int idx, bool create)
{
    lua_Integer id;

    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &name_ids_key);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TNUMBER) {
        id = lua_tointeger(L, -1);
        lua_pop(L, 2);
        return (uint32_t)id;
    }
    lua_pop(L, 1);
    if (!create) {
        lua_pop(L, 1);
        return 0;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key);
    id = (lua_Integer)lua_rawlen(L, -1) + 1;
    if (id >= (lua_Integer)RULE_CSLOT_HELD)
        luaL_error(L, "too many names of windows and held timers");
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, id);
    lua_pushvalue(L, idx);
    lua_pushinteger(L, id);
    lua_rawset(L, -4);
    lua_pop(L, 2);
    return (uint32_t)id;
}

/* ---- slots -------------------------------------------------------------- */

static struct rule_cslot *slot_find(const struct rule_dev *d, uint32_t skey, uint32_t name)
{
    for (uint32_t i = 0; i < d->n_cslots; i++)
        if (d->cslots[i].skey == skey && d->cslots[i].name == name)
            return &d->cslots[i];
    return NULL;
}

/* Appends a slot; NULL when the memory cap or malloc refuses. */
static struct rule_cslot *slot_add(struct rule_engine *e, struct rule_dev *d, uint32_t skey,
                                   uint32_t name, int64_t value)
{
    if (d->n_cslots == d->cap_cslots) {
        /* One at a time up to 4 (most devices have a few), then doubling. */
        uint32_t cap = d->cap_cslots < 4 ? d->cap_cslots + 1u : d->cap_cslots * 2u;
        size_t more;
        struct rule_cslot *slots;

        if (cap > RULE_DEV_SLOTS_MAX)
            cap = RULE_DEV_SLOTS_MAX;
        more = (size_t)(cap - d->cap_cslots) * sizeof(*d->cslots);
        if (cap == d->cap_cslots || !rule__mem_charge(e, more))
            return NULL;
        slots = realloc(d->cslots, cap * sizeof(*slots));
        if (!slots) {
            rule__mem_release(e, more);
            return NULL;
        }
        d->cslots = slots;
        d->cap_cslots = (uint16_t)cap;
    }
    d->cslots[d->n_cslots] = (struct rule_cslot){ .skey = skey, .name = name, .value = value };
    return &d->cslots[d->n_cslots++];
}

/* Removes a held timer's or case mark's slot of the rule (the last slot
 * takes its place), and the device's record once it holds none. */
static void slot_remove(struct rule_engine *e, struct rule_dev *d, struct rule *rule,
                        struct rule_cslot *slot)
{
    *slot = d->cslots[--d->n_cslots];
    rule->n_cslots--;
    if (!d->n_cslots)
        rule__cdev_tidy(e, d->id);
}

/* A device's slots are counted in 16 bits. */
static void check_room(lua_State *L, const struct rule_dev *d, const char *fn)
{
    if (d && d->n_cslots == RULE_DEV_SLOTS_MAX)
        luaL_error(L, "%s: too many windows and held timers for one device (at most %d)", fn,
                   RULE_DEV_SLOTS_MAX);
}

/* ---- the window table --------------------------------------------------- */

static size_t points_bytes(uint32_t cap)
{
    return cap > 1 ? cap * sizeof(struct rule_win_point) : 0;
}

static void win_free(struct rule_engine *e, uint32_t id)
{
    struct rule_win *w = &e->wins[id];

    if (!w->gen)
        return;
    rule__mem_release(e, points_bytes(w->cap));
    if (w->cap > 1)
        free(w->u.pts);
    /* A free entry (gen 0) keeps the next free id + 1 in span_ms. */
    *w = (struct rule_win){ .span_ms = e->free_win };
    e->free_win = id + 1;
}

/* Windows live in one array (no allocation of their own: a district has
 * hundreds of thousands), charged as it grows; pointers into it last
 * until the next win_new. */
static bool wins_grow(struct rule_engine *e)
{
    uint32_t n = e->cap_wins ? e->cap_wins + e->cap_wins / 2 : 64;
    size_t more = (size_t)(n - e->cap_wins) * sizeof(*e->wins);
    struct rule_win *wins;

    if (e->cap_wins >= UINT32_MAX / 2 || !rule__mem_charge(e, more))
        return false;
    wins = realloc(e->wins, n * sizeof(*wins));
    if (!wins) {
        rule__mem_release(e, more);
        return false;
    }
    e->wins = wins;
    e->cap_wins = n;
    return true;
}

/* A new empty window spanning span_ms with room for cap points; its id in
 * *ret_id. NULL when the memory cap or malloc refuses. */
static struct rule_win *win_new(struct rule_engine *e, uint32_t span_ms, uint16_t cap,
                                uint32_t *ret_id)
{
    struct rule_win_point *pts = NULL;
    struct rule_win *w;
    uint32_t id;

    if (!e->free_win && e->n_wins == e->cap_wins && !wins_grow(e))
        return NULL;
    if (!rule__mem_charge(e, points_bytes(cap)))
        return NULL;
    if (cap > 1 && !(pts = malloc(points_bytes(cap)))) {
        rule__mem_release(e, points_bytes(cap));
        return NULL;
    }
    if (e->free_win) {
        id = e->free_win - 1;
        e->free_win = e->wins[id].span_ms;
    } else {
        id = e->n_wins++;
    }
    w = &e->wins[id];
    *w = (struct rule_win){ .span_ms = span_ms, .cap = cap };
    if (pts)
        w->u.pts = pts;
    if (++e->win_gen == 0) /* 0 marks a free entry */
        e->win_gen = 1;
    w->gen = e->win_gen;
    *ret_id = id;
    return w;
}

void rule__cstate_free_dev(struct rule_engine *e, struct rule_dev *d)
{
    for (uint32_t i = 0; i < d->n_cslots; i++)
        if (rule__cslot_is_window(&d->cslots[i]))
            win_free(e, (uint32_t)d->cslots[i].value);
    rule__mem_release(e, d->cap_cslots * sizeof(*d->cslots));
    free(d->cslots);
    d->cslots = NULL;
    d->n_cslots = d->cap_cslots = 0;
}

void rule__cstate_free(struct rule_engine *e)
{
    rule__mem_release(e, e->cap_wins * sizeof(*e->wins));
    free(e->wins);
    e->wins = NULL;
    e->n_wins = e->cap_wins = e->free_win = 0;
}

static bool skey_live(const struct rule_engine *e, uint32_t skey)
{
    for (size_t i = 0; i < e->n_rules; i++)
        if (e->rules[i]->skey == skey)
            return true;
    return false;
}

void rule__cstate_sweep(struct rule_engine *e)
{
    for (size_t i = 0; i < e->cdevs.n_slots; i++) {
        struct rule_dev *d = e->cdevs.slots[i], *next;
        for (; d; d = next) {
            uint32_t k = 0;
            next = d->next;
            for (uint32_t j = 0; j < d->n_cslots; j++) {
                const struct rule_cslot *s = &d->cslots[j];
                if (skey_live(e, s->skey))
                    d->cslots[k++] = *s;
                else if (rule__cslot_is_window(s))
                    win_free(e, (uint32_t)s->value);
            }
            d->n_cslots = k;
            if (!k)
                rule__cdev_tidy(e, d->id);
        }
    }
}

/* ---- windows ------------------------------------------------------------ */

/* The i-th point from the oldest (the ring is not a power of two: it
 * grows by half, so that it holds little more than the window needs). */
static struct rule_win_point *at(struct rule_win *w, uint32_t i)
{
    uint32_t k = w->head + i;

    if (w->cap == 1)
        return &w->u.one;
    return &w->u.pts[k >= w->cap ? k - w->cap : k];
}

static int64_t span_ns(const struct rule_win *w)
{
    return (int64_t)w->span_ms * 1000000;
}

static void push_handle(lua_State *L, uint32_t id, const struct rule_win *w)
{
    lua_pushlightuserdata(L, (void *)(uintptr_t)(((uint64_t)w->gen << 32) | ((uint64_t)id + 1)));
}

/* The window whose handle is argument 1. */
static struct rule_win *check_window(lua_State *L, const char *method)
{
    struct rule_engine *e = rule__engine(L);
    uint64_t h;
    uint32_t id;

    if (lua_type(L, 1) != LUA_TLIGHTUSERDATA)
        luaL_error(L, "window:%s: call it on a window, as w:%s(...)", method, method);
    h = (uint64_t)(uintptr_t)lua_touserdata(L, 1);
    id = (uint32_t)h - 1;
    if ((uint32_t)h == 0 || id >= e->n_wins || !e->wins[id].gen || e->wins[id].gen != h >> 32)
        luaL_error(L, "window:%s: this window no longer exists (its rule was reloaded away)",
                   method);
    return &e->wins[id];
}

/* Points older than the span, seen from the handler's time, expire. */
static void window_expire(const struct rule_engine *e, struct rule_win *w)
{
    int64_t limit;

    if (!e->device_id || w->n == 0)
        return;
    limit = e->ts_ns - span_ns(w);
    while (w->n > 0 && at(w, 0)->t_ns <= limit) {
        w->head = w->head + 1 == w->cap ? 0 : w->head + 1;
        w->n--;
    }
}

/* Grows the ring by half (at least one point, at most to
 * RULE_WINDOW_POINTS), oldest first at 0. */
static bool window_grow(struct rule_engine *e, struct rule_win *w)
{
    uint32_t cap = w->cap + (w->cap / 2 ? w->cap / 2 : 1);
    struct rule_win_point *pts;

    if (cap > RULE_WINDOW_POINTS)
        cap = RULE_WINDOW_POINTS;
    if (!rule__mem_charge(e, points_bytes(cap)))
        return false;
    pts = malloc(points_bytes(cap));
    if (!pts) {
        rule__mem_release(e, points_bytes(cap));
        return false;
    }
    for (uint32_t i = 0; i < w->n; i++)
        pts[i] = *at(w, i);
    if (w->cap > 1) {
        rule__mem_release(e, points_bytes(w->cap));
        free(w->u.pts);
    }
    w->u.pts = pts;
    w->cap = (uint16_t)cap;
    w->head = 0;
    return true;
}

static int window_push(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);
    struct rule_win *w = check_window(L, "push");
    double v = luaL_checknumber(L, 2);
    struct rule_win_point p;
    uint32_t i;

    if (!isfinite(v))
        return luaL_error(L, "window:push: value must be a finite number");
    if (!e->device_id)
        return luaL_error(L,
                          "window:push can only be used inside on_reading, on_event or on_silence");
    window_expire(e, w);
    if (w->n == RULE_WINDOW_POINTS) {
        w->head = w->head + 1 == w->cap ? 0 : w->head + 1;
        w->n--;
    } else if (w->n == w->cap && !window_grow(e, w)) {
        return raise_memory(L, "window:push");
    }
    /* In time order: a reading that arrives late goes where it belongs. */
    p = (struct rule_win_point){ .t_ns = e->ts_ns, .v = v };
    for (i = w->n; i > 0 && at(w, i - 1)->t_ns > p.t_ns; i--)
        *at(w, i) = *at(w, i - 1);
    *at(w, i) = p;
    w->n++;
    lua_settop(L, 1);
    return 1; /* w, so that pushes chain */
}

static int window_count(lua_State *L)
{
    struct rule_win *w = check_window(L, "count");

    window_expire(rule__engine(L), w);
    lua_pushinteger(L, w->n);
    return 1;
}

static int window_avg(lua_State *L)
{
    struct rule_win *w = check_window(L, "avg");
    double sum = 0;

    window_expire(rule__engine(L), w);
    if (w->n == 0)
        return 0;
    for (uint32_t i = 0; i < w->n; i++)
        sum += at(w, i)->v;
    lua_pushnumber(L, sum / w->n);
    return 1;
}

static int window_extreme(lua_State *L, bool max)
{
    struct rule_win *w = check_window(L, max ? "max" : "min");
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

static int window_min(lua_State *L)
{
    return window_extreme(L, false);
}

static int window_max(lua_State *L)
{
    return window_extreme(L, true);
}

/* Per second, from the oldest point to the newest; nil with fewer than
 * two points or when they share one time. */
static int window_rate(lua_State *L)
{
    struct rule_win *w = check_window(L, "rate");
    const struct rule_win_point *first, *last;

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
    struct rule_cslot *slot;
    struct rule_dev *d;
    struct rule_win *w;
    double seconds;
    uint32_t span_ms, name, id;

    check_name(L, 1, "window");
    seconds = check_seconds(L, 2, "window", false);
    if (seconds > RULE_WINDOW_SPAN_MAX_S)
        return luaL_error(L, "window: at most %d days (%d seconds)", RULE_WINDOW_SPAN_MAX_S / 86400,
                          RULE_WINDOW_SPAN_MAX_S);
    span_ms = (uint32_t)ceil(seconds * 1000);
    name = intern(L, 1, true);
    d = rule__cdev_get(e, e->device_id, true);
    if (!d)
        return raise_memory(L, "window");
    slot = slot_find(d, e->rule->skey, name);
    if (slot) {
        id = (uint32_t)slot->value;
        w = &e->wins[id];
        w->span_ms = span_ms; /* the latest call's span counts */
        push_handle(L, id, w);
        return 1;
    }
    check_room(L, d, "window");
    w = win_new(e, span_ms, 1, &id);
    if (w && !slot_add(e, d, e->rule->skey, name, id)) {
        win_free(e, id);
        w = NULL;
    }
    if (!w) {
        rule__cdev_tidy(e, e->device_id);
        return raise_memory(L, "window");
    }
    e->rule->n_cslots++;
    push_handle(L, id, w);
    return 1;
}

/* ---- held --------------------------------------------------------------- */

/* held(name, cond, seconds): true once cond has been true at every call
 * for at least `seconds` of the handler's time; a false resets it. */
static int api_held(lua_State *L)
{
    struct rule_engine *e = running(L, "held");
    bool cond = lua_toboolean(L, 2);
    struct rule_cslot *slot = NULL;
    struct rule_dev *d;
    double seconds;
    uint32_t name;

    check_name(L, 1, "held");
    seconds = check_seconds(L, 3, "held", true);
    name = intern(L, 1, cond);
    d = name ? rule__cdev_get(e, e->device_id, cond) : NULL;
    if (d)
        slot = slot_find(d, e->rule->skey, name | RULE_CSLOT_HELD);
    if (!cond) {
        if (slot)
            slot_remove(e, d, e->rule, slot);
        lua_pushboolean(L, false);
        return 1;
    }
    if (!slot) {
        check_room(L, d, "held");
        slot = d ? slot_add(e, d, e->rule->skey, name | RULE_CSLOT_HELD, e->ts_ns) : NULL;
        if (!slot) {
            rule__cdev_tidy(e, e->device_id);
            return raise_memory(L, "held");
        }
        e->rule->n_cslots++;
    }
    lua_pushboolean(L, (double)(e->ts_ns - slot->value) >= seconds * 1e9);
    return 1;
}

/* ---- case marks --------------------------------------------------------- */

bool rule__case_marked(struct rule_engine *e, const struct rule *rule, const char *device_id)
{
    struct rule_dev *d = rule__cdev_get(e, device_id, false);

    return d && slot_find(d, rule->skey, RULE_CSLOT_CASE);
}

int rule__case_mark(struct rule_engine *e, struct rule *rule, const char *device_id)
{
    struct rule_dev *d = rule__cdev_get(e, device_id, true);

    if (d && slot_find(d, rule->skey, RULE_CSLOT_CASE))
        return 0;
    if (!d || !slot_add(e, d, rule->skey, RULE_CSLOT_CASE, 0)) {
        rule__cdev_tidy(e, device_id);
        return -ENOMEM;
    }
    rule->n_cslots++;
    return 0;
}

static void case_unmark(struct rule_engine *e, struct rule *rule, const char *device_id)
{
    struct rule_dev *d = rule__cdev_get(e, device_id, false);
    struct rule_cslot *slot = d ? slot_find(d, rule->skey, RULE_CSLOT_CASE) : NULL;

    if (slot)
        slot_remove(e, d, rule, slot);
}

void rule__case_marks_commit(struct rule_engine *e, struct rule *rule, size_t first_action)
{
    const struct rule_action *last = NULL;

    for (size_t i = first_action; i < e->actions->n; i++) {
        const struct rule_action *a = &e->actions->items[i];
        if ((a->kind == RULE_ACTION_OPEN_CASE || a->kind == RULE_ACTION_CLEAR_CASE) &&
            strcmp(a->subject, e->device_id) == 0)
            last = a;
    }
    if (last && last->kind == RULE_ACTION_CLEAR_CASE)
        case_unmark(e, rule, e->device_id);
}

/* ---- a copy into another engine ----------------------------------------- */

struct adopt_ctx {
    struct rule_engine *fresh, *old;
};

static struct rule *rule_by_skey(const struct rule_engine *e, uint32_t skey)
{
    for (size_t i = 0; i < e->n_committed; i++)
        if (e->rules[i]->skey == skey)
            return e->rules[i];
    return NULL;
}

static struct rule *rule_by_name(const struct rule_engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_committed; i++)
        if (strcmp(e->rules[i]->name, name) == 0)
            return e->rules[i];
    return NULL;
}

/* Copies one slot of the old engine to the fresh one (L is fresh's). */
static void adopt_slot(lua_State *L, struct adopt_ctx *c, const struct rule_dev *d,
                       const struct rule_cslot *s)
{
    lua_State *from = c->old->L;
    const struct rule *orule = rule_by_skey(c->old, s->skey);
    struct rule *frule = orule ? rule_by_name(c->fresh, orule->name) : NULL;
    uint32_t held = s->name & RULE_CSLOT_HELD, name, id;
    struct rule_dev *fd;
    size_t len;
    const char *str;

    if (!frule)
        return;
    if (s->name == RULE_CSLOT_CASE) {
        if (rule__case_mark(c->fresh, frule, d->id) < 0)
            luaL_error(L, "out of memory");
        return;
    }
    if (!lua_checkstack(from, 2))
        luaL_error(L, "out of memory (stack of the old engine)");
    lua_rawgetp(from, LUA_REGISTRYINDEX, &names_key);
    if (lua_rawgeti(from, -1, s->name & ~RULE_CSLOT_HELD) != LUA_TSTRING) {
        lua_pop(from, 2);
        return;
    }
    str = lua_tolstring(from, -1, &len);
    lua_pushlstring(L, str, len);
    lua_pop(from, 2);
    name = intern(L, -1, true) | held;
    lua_pop(L, 1);
    fd = rule__cdev_get(c->fresh, d->id, true);
    if (!fd)
        luaL_error(L, "out of memory");
    if (held) {
        if (!slot_find(fd, frule->skey, name)) {
            if (!slot_add(c->fresh, fd, frule->skey, name, s->value))
                luaL_error(L, "out of memory");
            frule->n_cslots++;
        }
    } else if (!slot_find(fd, frule->skey, name)) {
        struct rule_win *src = &c->old->wins[s->value]; /* only read */
        struct rule_win *w = win_new(c->fresh, src->span_ms, src->n > 1 ? src->n : 1, &id);

        if (!w)
            luaL_error(L, "out of memory");
        w->n = src->n;
        for (uint32_t i = 0; i < src->n; i++)
            *at(w, i) = *at(src, i);
        if (!slot_add(c->fresh, fd, frule->skey, name, id)) {
            win_free(c->fresh, id);
            luaL_error(L, "out of memory");
        }
        frule->n_cslots++;
    }
}

static int adopt_protected(lua_State *L)
{
    struct adopt_ctx *c = lua_touserdata(L, 1);
    const struct rule_devtab *t = &c->old->cdevs;

    for (size_t i = 0; i < t->n_slots; i++)
        for (const struct rule_dev *d = t->slots[i]; d; d = d->next)
            for (uint32_t j = 0; j < d->n_cslots; j++)
                adopt_slot(L, c, d, &d->cslots[j]);
    return 0;
}

int rule__cstate_adopt(struct rule_engine *fresh, struct rule_engine *old)
{
    struct adopt_ctx c = { .fresh = fresh, .old = old };
    int top = lua_gettop(fresh->L), status;

    if (!old->cdevs.n)
        return 0;
    lua_pushcfunction(fresh->L, adopt_protected);
    lua_pushlightuserdata(fresh->L, &c);
    status = lua_pcall(fresh->L, 1, 0, 0);
    fresh->cdev_cache = NULL; /* it was keyed by old's ids */
    if (status != LUA_OK)
        gw_error("rules", "reload: windows, held timers and case marks not all carried over: %s",
                 lua_type(fresh->L, -1) == LUA_TSTRING ? lua_tostring(fresh->L, -1) : "error");
    lua_settop(fresh->L, top);
    return status == LUA_OK ? 0 : -ENOMEM;
}

/* ---- registration ------------------------------------------------------- */

void rule__window_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "push", window_push }, { "count", window_count }, { "avg", window_avg },
        { "min", window_min },   { "max", window_max },     { "rate", window_rate },
        { NULL, NULL },
    };
    int t = lua_gettop(L);

    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &name_ids_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &names_key);

    /* The handles' metatable (light userdata share one; rules see no
     * other light userdata): methods only, hidden from getmetatable. */
    lua_pushlightuserdata(L, NULL);
    lua_createtable(L, 0, 2);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);

    lua_pushcfunction(L, api_window);
    lua_setfield(L, t, "window");
    lua_pushcfunction(L, api_held);
    lua_setfield(L, t, "held");
}
