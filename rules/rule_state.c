/* rule_state: what the engine remembers per (rule, device) outside Lua,
 * and carrying per-device state over to a reloaded engine.
 *
 * Failure isolation (rules-spec.md): a pair that fails device_failures
 * times in a row is quarantined for quarantine_s; once that ends it is on
 * probation, and its next failure (before any success) quarantines it
 * again for twice as long, up to RULE_QUARANTINE_MAX_S. When rule_devices
 * of a rule's devices are in quarantine at once, the rule is quarantined
 * as a whole (the device quarantines fold into it), with the same
 * doubling. A success resets the pair's count and backoff, and the rule's.
 * Times come from the engine's clock (gw_monotonic_ns unless a test sets
 * another). Expired quarantines are ended by rule__isolation_tick() at the
 * start of every run, so the flags read during a run are current.
 *
 * Silence episodes: on_silence fires once per (rule, device) and episode;
 * a reading or event of the device ends the episode, and so does a new
 * last_seen in the pipeline's rule_silence.
 *
 * The records live in a chained hash table by device id, one record per
 * device with anything to remember (these, or the windows and held timers
 * of rule_window.c), dropped as soon as it has nothing.
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "rule_int.h"

#define RULE_ADOPT_DEPTH 32 /* deepest table nesting a reload carries over */
#define LEVEL_MAX 30

int64_t rule__clock(const struct rule_engine *e)
{
    return e->clock ? e->clock(e->clock_ud) : gw_monotonic_ns();
}

void rule_engine_set_clock(struct rule_engine *engine, rule_clock_fn clock, void *ud)
{
    engine->clock = clock;
    engine->clock_ud = clock ? ud : NULL;
}

/* ---- the device table --------------------------------------------------- */

static uint32_t hash_id(const char *s)
{
    uint32_t h = 0x811c9dc5u; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x01000193u;
    return h;
}

static struct rule_dev *dev_find(const struct rule_devtab *t, const char *id)
{
    uint32_t h;

    if (!t->n)
        return NULL;
    h = hash_id(id);
    for (struct rule_dev *d = t->slots[h & (t->n_slots - 1)]; d; d = d->next)
        if (d->hash == h && strcmp(d->id, id) == 0)
            return d;
    return NULL;
}

static int grow_slots(struct rule_engine *e, struct rule_devtab *t)
{
    size_t n = t->n_slots ? t->n_slots * 2 : 64;
    struct rule_dev **slots = calloc(n, sizeof(*slots));

    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < t->n_slots; i++) {
        struct rule_dev *d = t->slots[i], *next;
        for (; d; d = next) {
            next = d->next;
            d->next = slots[d->hash & (n - 1)];
            slots[d->hash & (n - 1)] = d;
        }
    }
    free(t->slots);
    e->dev_bytes += (n - t->n_slots) * sizeof(*slots);
    t->slots = slots;
    t->n_slots = n;
    return 0;
}

static struct rule_dev *dev_get(struct rule_engine *e, struct rule_devtab *t, const char *id,
                                bool create)
{
    struct rule_dev *d = dev_find(t, id);
    size_t len;

    if (d || !create)
        return d;
    len = strlen(id);
    if (t->n >= t->n_slots && grow_slots(e, t) < 0)
        return NULL;
    d = calloc(1, sizeof(*d) + len + 1);
    if (!d)
        return NULL;
    memcpy(d->id, id, len + 1);
    d->hash = hash_id(id);
    d->next = t->slots[d->hash & (t->n_slots - 1)];
    t->slots[d->hash & (t->n_slots - 1)] = d;
    t->n++;
    e->dev_bytes += sizeof(*d) + len + 1;
    return d;
}

/* The rules of one run call window() and held() for one device over
 * and over: the record found last is kept for that run's device_id
 * pointer (valid for the run; dev_free forgets it). */
struct rule_dev *rule__cdev_get(struct rule_engine *e, const char *device_id, bool create)
{
    struct rule_dev *d;

    if (e->cdev_cache && e->cdev_cache_id == device_id)
        return e->cdev_cache;
    d = dev_get(e, &e->cdevs, device_id, create);
    if (d) {
        e->cdev_cache = d;
        e->cdev_cache_id = device_id;
    }
    return d;
}

static void dev_free(struct rule_engine *e, struct rule_dev *d)
{
    if (d == e->cdev_cache)
        e->cdev_cache = NULL;
    rule__cstate_free_dev(e, d);
    free(d->pairs);
    e->dev_bytes -= sizeof(*d) + strlen(d->id) + 1 + d->n_pairs * sizeof(*d->pairs);
    free(d);
}

/* The record of (rule, device), created if need be; NULL when out of
 * memory (the caller then cannot remember: logged, not fatal). */
static struct rule_pair *pair_get(struct rule_engine *e, const struct rule *rule, const char *id)
{
    struct rule_dev *d = dev_get(e, &e->pdevs, id, true);

    if (!d)
        return NULL;
    if (rule->idx >= d->n_pairs) {
        size_t n = e->n_rules > rule->idx ? e->n_rules : rule->idx + 1;
        struct rule_pair *pairs = realloc(d->pairs, n * sizeof(*pairs));
        if (!pairs)
            return NULL;
        memset(pairs + d->n_pairs, 0, (n - d->n_pairs) * sizeof(*pairs));
        e->dev_bytes += (n - d->n_pairs) * sizeof(*pairs);
        d->pairs = pairs;
        d->n_pairs = (uint32_t)n;
    }
    return &d->pairs[rule->idx];
}

static struct rule_pair *pair_find(const struct rule_engine *e, const struct rule *rule,
                                   const char *id)
{
    struct rule_dev *d = dev_find(&e->pdevs, id);

    return d && rule->idx < d->n_pairs ? &d->pairs[rule->idx] : NULL;
}

static bool pair_failing(const struct rule_pair *p)
{
    return p->failures || p->level || p->quarantined;
}

static bool dev_empty(const struct rule_dev *d)
{
    if (d->n_cslots)
        return false;
    for (size_t i = 0; i < d->n_pairs; i++)
        if (pair_failing(&d->pairs[i]) || d->pairs[i].fired)
            return false;
    return true;
}

/* Drops the device's record from t when nothing of it is set. */
static void dev_tidy(struct rule_engine *e, struct rule_devtab *t, const char *id)
{
    struct rule_dev **link, *d;
    uint32_t h;

    if (!t->n)
        return;
    h = hash_id(id);
    for (link = &t->slots[h & (t->n_slots - 1)]; (d = *link); link = &d->next)
        if (d->hash == h && strcmp(d->id, id) == 0)
            break;
    if (!d || !dev_empty(d))
        return;
    *link = d->next;
    dev_free(e, d);
    t->n--;
}

void rule__cdev_tidy(struct rule_engine *e, const char *device_id)
{
    dev_tidy(e, &e->cdevs, device_id);
}

static void table_free(struct rule_engine *e, struct rule_devtab *t)
{
    for (size_t i = 0; i < t->n_slots; i++) {
        struct rule_dev *d = t->slots[i], *next;
        for (; d; d = next) {
            next = d->next;
            dev_free(e, d);
        }
    }
    free(t->slots);
    *t = (struct rule_devtab){ 0 };
}

void rule__state_free(struct rule_engine *e)
{
    table_free(e, &e->pdevs);
    table_free(e, &e->cdevs);
    rule__cstate_free(e);
    e->dev_bytes = 0;
}

/* ---- quarantine --------------------------------------------------------- */

static int64_t backoff_ns(const struct rule_engine *e, unsigned level)
{
    double s = e->limits.quarantine_s;
    double cap = s > RULE_QUARANTINE_MAX_S ? s : RULE_QUARANTINE_MAX_S;

    for (unsigned i = 0; i < level && s < cap; i++)
        s *= 2;
    if (s > cap)
        s = cap;
    return (int64_t)(s * 1e9);
}

static long long secs(int64_t ns)
{
    return (long long)((ns + 500000000) / 1000000000);
}

static void expiry_candidate(struct rule_engine *e, int64_t until_ns)
{
    if (e->n_quarantines == 1 || until_ns < e->next_expiry_ns)
        e->next_expiry_ns = until_ns;
}

/* The rule as a whole: its device quarantines fold into this one. */
static void quarantine_rule(struct rule_engine *e, struct rule *rule, int64_t now)
{
    unsigned devices = rule->n_quarantined;
    int64_t length = backoff_ns(e, rule->level);

    rule->n_failing = 0;
    for (size_t i = 0; i < e->pdevs.n_slots; i++)
        for (struct rule_dev *d = e->pdevs.slots[i]; d; d = d->next) {
            struct rule_pair *p;
            if (rule->idx >= d->n_pairs)
                continue;
            p = &d->pairs[rule->idx];
            if (p->quarantined) {
                p->quarantined = false;
                p->failures = 0;
            }
            if (pair_failing(p))
                rule->n_failing++;
        }
    e->n_quarantines -= rule->n_quarantined;
    rule->n_quarantined = 0;

    rule->quarantined = true;
    rule->since_ns = now;
    rule->until_ns = now + length;
    if (rule->level < LEVEL_MAX)
        rule->level++;
    e->n_quarantines++;
    expiry_candidate(e, rule->until_ns);
    e->stats.quarantines++;
    gw_warn(rule->module,
            "%s: quarantined as a whole for %lld s: in quarantine for %u devices at once",
            rule->where, secs(length), devices);
}

static void quarantine_pair(struct rule_engine *e, struct rule *rule, struct rule_pair *p,
                            const char *id)
{
    int64_t now = rule__clock(e), length = backoff_ns(e, p->level);
    bool relapse = p->level > 0;

    p->quarantined = true;
    p->since_ns = now;
    p->until_ns = now + length;
    if (p->level < LEVEL_MAX)
        p->level++;
    rule->n_quarantined++;
    e->n_quarantines++;
    expiry_candidate(e, p->until_ns);
    e->stats.quarantines++;
    if (relapse)
        gw_log_limited(&rule->quarantine_limit, GW_LOG_WARN, rule->module,
                       "%s: quarantined for device %s for %lld s: failed again after its last "
                       "quarantine",
                       rule->where, id, secs(length));
    else
        gw_log_limited(&rule->quarantine_limit, GW_LOG_WARN, rule->module,
                       "%s: quarantined for device %s for %lld s after %u failures in a row",
                       rule->where, id, secs(length), p->failures);
    if (rule->n_quarantined >= e->limits.rule_devices)
        quarantine_rule(e, rule, now);
}

void rule__isolation_tick(struct rule_engine *e)
{
    int64_t now, next = INT64_MAX;

    if (!e->n_quarantines)
        return;
    now = rule__clock(e);
    if (now < e->next_expiry_ns)
        return;
    for (size_t i = 0; i < e->n_committed; i++) {
        struct rule *r = e->rules[i];
        if (!r->quarantined)
            continue;
        if (now < r->until_ns) {
            next = r->until_ns < next ? r->until_ns : next;
            continue;
        }
        r->quarantined = false;
        e->n_quarantines--;
        gw_info(r->module, "%s: quarantine as a whole ended after %lld s; trying again", r->where,
                secs(now - r->since_ns));
    }
    for (size_t i = 0; i < e->pdevs.n_slots; i++)
        for (struct rule_dev *d = e->pdevs.slots[i]; d; d = d->next)
            for (size_t j = 0; j < d->n_pairs && j < e->n_committed; j++) {
                struct rule_pair *p = &d->pairs[j];
                struct rule *r = e->rules[j];
                if (!p->quarantined)
                    continue;
                if (now < p->until_ns) {
                    next = p->until_ns < next ? p->until_ns : next;
                    continue;
                }
                /* On probation: failures start again from 0, but the
                 * next one, before any success, is a relapse. */
                p->quarantined = false;
                p->failures = 0;
                r->n_quarantined--;
                e->n_quarantines--;
                gw_log_limited(&r->quarantine_limit, GW_LOG_INFO, r->module,
                               "%s: quarantine for device %s ended after %lld s; trying again",
                               r->where, d->id, secs(now - p->since_ns));
            }
    e->next_expiry_ns = next;
}

bool rule__admitted(struct rule_engine *e, struct rule *rule, const char *device_id)
{
    const struct rule_pair *p;

    if (rule->quarantined) {
        e->stats.quarantine_skips++;
        return false;
    }
    if (!rule->n_quarantined)
        return true;
    p = pair_find(e, rule, device_id);
    if (p && p->quarantined) {
        e->stats.quarantine_skips++;
        return false;
    }
    return true;
}

void rule__record(struct rule_engine *e, struct rule *rule, const char *device_id, bool ok)
{
    struct rule_pair *p;

    if (ok) {
        rule->level = 0;
        if (!rule->n_failing)
            return;
        p = pair_find(e, rule, device_id);
        if (p && pair_failing(p)) {
            p->failures = 0;
            p->level = 0;
            rule->n_failing--;
            dev_tidy(e, &e->pdevs, device_id);
        }
        return;
    }
    p = pair_get(e, rule, device_id);
    if (!p) {
        gw_log_limited(&e->log_limit, GW_LOG_ERROR, rule->module,
                       "device %s: out of memory: failure not counted for quarantine", device_id);
        return;
    }
    if (!pair_failing(p))
        rule->n_failing++;
    if (p->failures < UINT32_MAX)
        p->failures++;
    if (!p->quarantined && (p->level > 0 || p->failures >= e->limits.device_failures))
        quarantine_pair(e, rule, p, device_id);
}

/* ---- silence episodes --------------------------------------------------- */

void rule__episode_end(struct rule_engine *e, const char *device_id)
{
    struct rule_dev *d;
    bool any = false;

    if (!e->n_fired || !(d = dev_find(&e->pdevs, device_id)))
        return;
    for (size_t i = 0; i < d->n_pairs; i++)
        if (d->pairs[i].fired) {
            d->pairs[i].fired = false;
            e->n_fired--;
            any = true;
        }
    if (any)
        dev_tidy(e, &e->pdevs, device_id);
}

bool rule__silence_fired(struct rule_engine *e, const struct rule *rule, const char *device_id,
                         int64_t last_seen_ns)
{
    const struct rule_pair *p;

    if (!e->n_fired)
        return false;
    p = pair_find(e, rule, device_id);
    return p && p->fired && p->fired_last_seen == last_seen_ns;
}

void rule__set_fired(struct rule_engine *e, const struct rule *rule, const char *device_id,
                     int64_t last_seen_ns)
{
    struct rule_pair *p = pair_get(e, rule, device_id);

    if (!p) {
        gw_log_limited(&e->log_limit, GW_LOG_ERROR, rule->module,
                       "device %s: out of memory: on_silence may fire again in this silence",
                       device_id);
        return;
    }
    if (!p->fired)
        e->n_fired++;
    p->fired = true;
    p->fired_last_seen = last_seen_ns;
}

/* ---- rule_info ---------------------------------------------------------- */

size_t rule_engine_rules(const struct rule_engine *engine, struct rule_info *ret, size_t max)
{
    size_t n = engine->n_committed < max ? engine->n_committed : max;
    int64_t now = engine->n_quarantines ? rule__clock(engine) : 0;

    for (size_t i = 0; i < n; i++) {
        const struct rule *r = engine->rules[i];
        ret[i] = (struct rule_info){
            .name = r->name,
            .file = r->where,
            .file_hash = r->file_hash,
            .shadow = r->shadow,
            .quarantined = r->quarantined && now < r->until_ns,
            .calls = r->calls,
            .errors = r->errors,
            .actions = r->actions,
        };
    }
    if (engine->n_quarantines)
        for (size_t i = 0; i < engine->pdevs.n_slots; i++)
            for (const struct rule_dev *d = engine->pdevs.slots[i]; d; d = d->next)
                for (size_t j = 0; j < d->n_pairs && j < n; j++)
                    if (d->pairs[j].quarantined && now < d->pairs[j].until_ns)
                        ret[j].quarantined_devices++;
    return engine->n_committed;
}

/* ---- adopt_state -------------------------------------------------------- */

struct copy_ctx {
    struct rule_engine *fresh, *old;
    lua_State *to, *from;
    int seen; /* in `to`: old table address -> its copy */
    size_t dropped;
};

static bool copy_value(struct copy_ctx *c, int depth);

/* Copies the key at -2 of `from` onto `to`: strings, numbers, booleans. */
static bool copy_key(struct copy_ctx *c)
{
    lua_State *from = c->from, *to = c->to;
    size_t len;
    const char *s;

    switch (lua_type(from, -2)) {
    case LUA_TSTRING:
        s = lua_tolstring(from, -2, &len); /* a string already: no conversion */
        lua_pushlstring(to, s, len);
        return true;
    case LUA_TNUMBER:
        if (lua_isinteger(from, -2))
            lua_pushinteger(to, lua_tointeger(from, -2));
        else
            lua_pushnumber(to, lua_tonumber(from, -2));
        return true;
    case LUA_TBOOLEAN:
        lua_pushboolean(to, lua_toboolean(from, -2));
        return true;
    default:
        return false;
    }
}

/* The table at the top of `from`, copied onto `to`; a table met before
 * (shared, or a cycle) is the same copy again. */
static void copy_table(struct copy_ctx *c, int depth)
{
    lua_State *from = c->from, *to = c->to;
    const void *addr = lua_topointer(from, -1);

    luaL_checkstack(to, 6, NULL);
    if (lua_rawgetp(to, c->seen, addr) == LUA_TTABLE)
        return;
    lua_pop(to, 1);
    lua_newtable(to);
    lua_pushvalue(to, -1);
    lua_rawsetp(to, c->seen, addr);
    if (!lua_checkstack(from, 4))
        luaL_error(to, "out of memory (stack of the old engine)");
    lua_pushnil(from);
    while (lua_next(from, -2)) {
        if (copy_key(c)) {
            if (copy_value(c, depth + 1))
                lua_rawset(to, -3);
            else
                lua_pop(to, 1);
        } else {
            c->dropped++;
        }
        lua_pop(from, 1);
    }
}

/* Pushes onto `to` a copy of the value at the top of `from` and returns
 * true, or returns false (pushing nothing) for what is not plain data. */
static bool copy_value(struct copy_ctx *c, int depth)
{
    lua_State *from = c->from, *to = c->to;
    size_t len;
    const char *s;

    luaL_checkstack(to, 2, NULL);
    switch (lua_type(from, -1)) {
    case LUA_TNUMBER:
        if (lua_isinteger(from, -1))
            lua_pushinteger(to, lua_tointeger(from, -1));
        else
            lua_pushnumber(to, lua_tonumber(from, -1));
        return true;
    case LUA_TSTRING:
        s = lua_tolstring(from, -1, &len);
        lua_pushlstring(to, s, len);
        return true;
    case LUA_TBOOLEAN:
        lua_pushboolean(to, lua_toboolean(from, -1));
        return true;
    case LUA_TTABLE:
        if (depth >= RULE_ADOPT_DEPTH) {
            c->dropped++;
            return false;
        }
        copy_table(c, depth);
        return true;
    default: /* functions, threads, userdata (a window's handle too) */
        c->dropped++;
        return false;
    }
}

static const struct rule *old_rule(const struct rule_engine *old, const char *name)
{
    for (size_t i = 0; i < old->n_committed; i++)
        if (strcmp(old->rules[i]->name, name) == 0)
            return old->rules[i];
    return NULL;
}

/* Protected, in the fresh state: for every rule in both engines, copies
 * the device maps of the slots below. Each map's keys are device ids. */
static int adopt_lua(lua_State *L)
{
    static const int slots[] = { RULE_SLOT_STATES };
    struct copy_ctx *c = lua_touserdata(L, 1);
    lua_State *from = c->from;

    lua_newtable(L);
    c->seen = lua_gettop(L);
    for (size_t i = 0; i < c->fresh->n_committed; i++) {
        const struct rule *fr = c->fresh->rules[i];
        const struct rule *orule = old_rule(c->old, fr->name);

        if (!orule)
            continue;
        for (size_t k = 0; k < sizeof(slots) / sizeof(slots[0]); k++) {
            int top = lua_gettop(L), from_top = lua_gettop(from);

            if (!lua_checkstack(from, 6))
                return luaL_error(L, "out of memory (stack of the old engine)");
            lua_rawgeti(from, LUA_REGISTRYINDEX, orule->ref);
            lua_rawgeti(from, -1, slots[k]);
            lua_rawgeti(L, LUA_REGISTRYINDEX, fr->ref);
            lua_rawgeti(L, -1, slots[k]);
            lua_pushnil(from);
            while (lua_next(from, -2)) {
                /* device id -> table */
                if (lua_type(from, -2) == LUA_TSTRING && lua_type(from, -1) == LUA_TTABLE) {
                    size_t len;
                    const char *id = lua_tolstring(from, -2, &len);
                    lua_pushlstring(L, id, len);
                    copy_table(c, 0);
                    lua_rawset(L, -3);
                }
                lua_pop(from, 1);
            }
            lua_settop(from, from_top);
            lua_settop(L, top);
        }
    }
    return 0;
}

/* Silence episodes, C side: by rule name. */
static int adopt_episodes(struct rule_engine *fresh, const struct rule_engine *old)
{
    for (size_t i = 0; i < old->pdevs.n_slots; i++)
        for (const struct rule_dev *d = old->pdevs.slots[i]; d; d = d->next)
            for (size_t j = 0; j < d->n_pairs && j < old->n_committed; j++) {
                const struct rule *fr = NULL;
                if (!d->pairs[j].fired)
                    continue;
                for (size_t k = 0; k < fresh->n_committed && !fr; k++)
                    if (strcmp(fresh->rules[k]->name, old->rules[j]->name) == 0)
                        fr = fresh->rules[k];
                if (!fr)
                    continue;
                if (!pair_get(fresh, fr, d->id))
                    return -ENOMEM;
                rule__set_fired(fresh, fr, d->id, d->pairs[j].fired_last_seen);
            }
    return 0;
}

/* One line per rule (of the first n_old) whose quarantine the reload
 * ends. */
static void log_reload_ends(const struct rule_engine *old, size_t n_old)
{
    struct rule_info *info;
    size_t n;

    if (!old->n_quarantines || !n_old)
        return;
    info = calloc(old->n_committed, sizeof(*info));
    if (!info)
        return;
    n = rule_engine_rules(old, info, old->n_committed);
    for (size_t i = 0; i < n && i < n_old; i++) {
        if (info[i].quarantined)
            gw_info(old->rules[i]->module, "the reload ends its quarantine as a whole");
        else if (info[i].quarantined_devices)
            gw_info(old->rules[i]->module, "the reload ends its quarantine for %zu device(s)",
                    info[i].quarantined_devices);
    }
    free(info);
}

int rule_engine_adopt_state(struct rule_engine *fresh, struct rule_engine *old)
{
    struct copy_ctx c = { .fresh = fresh, .old = old, .to = fresh->L, .from = old->L };
    int status, top = lua_gettop(fresh->L);

    if (fresh == old || old->in_call || fresh->in_call)
        return -EINVAL;
    lua_pushcfunction(fresh->L, adopt_lua);
    lua_pushlightuserdata(fresh->L, &c);
    status = lua_pcall(fresh->L, 1, 0, 0);
    if (status != LUA_OK) {
        gw_error("rules", "reload: per-device state not carried over: %s",
                 lua_type(fresh->L, -1) == LUA_TSTRING ? lua_tostring(fresh->L, -1) : "error");
        lua_settop(fresh->L, top);
        return status == LUA_ERRMEM ? -ENOMEM : -EINVAL;
    }
    lua_settop(fresh->L, top);
    /* The copies' bookkeeping table is garbage now; so may be much of what
     * the state held before. */
    lua_gc(fresh->L, LUA_GCCOLLECT);
    if (adopt_episodes(fresh, old) < 0 || rule__cstate_adopt(fresh, old) < 0)
        return -ENOMEM;
    if (c.dropped)
        gw_info("rules",
                "reload: %zu value(s) of rule state not carried over (functions, userdata, "
                "windows, or tables nested deeper than %d)",
                c.dropped, RULE_ADOPT_DEPTH);
    log_reload_ends(old, old->n_committed);
    return 0;
}

/* ---- in-place reload ------------------------------------------------------ */

struct hand_over {
    struct rule_engine *e;
    size_t old_n;
    long *from; /* for each new rule (index - old_n): the old rule's index, or -1 */
};

/* Protected: each new rule's device maps become the old rule's tables,
 * by reference. The old rules still hold them too, so an error half-way
 * leaves the running rules as they were. */
static int link_maps(lua_State *L)
{
    static const int slots[] = { RULE_SLOT_STATES };
    struct hand_over *h = lua_touserdata(L, 1);

    for (size_t j = h->old_n; j < h->e->n_rules; j++) {
        long from = h->from[j - h->old_n];
        if (from < 0)
            continue;
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->e->rules[j]->ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->e->rules[from]->ref);
        for (size_t k = 0; k < sizeof(slots) / sizeof(slots[0]); k++) {
            lua_rawgeti(L, -1, slots[k]);
            lua_rawseti(L, -3, slots[k]);
        }
        lua_pop(L, 2);
    }
    return 0;
}

/* The silence episodes of the old rules, as pairs of the new ones: every
 * array allocated first, so a failure changes nothing. Devices without
 * pairs (only windows or held timers) keep none. */
static int remap_pairs(struct rule_engine *e, const struct hand_over *h, struct rule_pair ***ret)
{
    size_t n_new = e->n_rules - h->old_n, k = 0;
    struct rule_pair **arrays = calloc(e->pdevs.n ? e->pdevs.n : 1, sizeof(*arrays));

    if (!arrays)
        return -ENOMEM;
    for (size_t i = 0; i < e->pdevs.n_slots; i++)
        for (const struct rule_dev *d = e->pdevs.slots[i]; d; d = d->next, k++) {
            if (!d->pairs)
                continue;
            arrays[k] = calloc(n_new ? n_new : 1, sizeof(**arrays));
            if (!arrays[k]) {
                while (k > 0)
                    free(arrays[--k]);
                free(arrays);
                return -ENOMEM;
            }
            for (size_t j = 0; j < n_new; j++) {
                long from = h->from[j];
                if (from >= 0 && (size_t)from < d->n_pairs && d->pairs[from].fired) {
                    arrays[k][j].fired = true;
                    arrays[k][j].fired_last_seen = d->pairs[from].fired_last_seen;
                }
            }
        }
    *ret = arrays;
    return 0;
}

/* Drops the old rules and renumbers the new ones from 0. */
static void drop_old_rules(struct rule_engine *e, size_t old_n)
{
    for (size_t i = 0; i < old_n; i++)
        rule__rule_drop(e, e->rules[i]);
    memmove(e->rules, e->rules + old_n, (e->n_rules - old_n) * sizeof(*e->rules));
    e->n_rules -= old_n;
    e->n_committed = e->n_rules;
    for (size_t i = 0; i < e->n_rules; i++)
        e->rules[i]->idx = i;
}

int rule__hand_over(struct rule_engine *e, size_t old_n)
{
    struct hand_over h = { .e = e, .old_n = old_n };
    struct rule_pair **arrays = NULL;
    size_t n_new = e->n_rules - old_n, k = 0;
    bool sweep = false;
    int status, r;

    h.from = calloc(n_new ? n_new : 1, sizeof(*h.from));
    if (!h.from)
        return -ENOMEM;
    for (size_t j = old_n; j < e->n_rules; j++) {
        h.from[j - old_n] = -1;
        for (size_t i = 0; i < old_n; i++)
            if (strcmp(e->rules[i]->name, e->rules[j]->name) == 0)
                h.from[j - old_n] = (long)i;
    }
    lua_pushcfunction(e->L, link_maps);
    lua_pushlightuserdata(e->L, &h);
    status = lua_pcall(e->L, 1, 0, 0);
    if (status != LUA_OK) {
        lua_pop(e->L, 1);
        free(h.from);
        return status == LUA_ERRMEM ? -ENOMEM : -EINVAL;
    }
    r = remap_pairs(e, &h, &arrays);
    free(h.from);
    if (r < 0)
        return r;

    /* From here nothing can fail. Quarantines and failure counts end with
     * the reload; episodes move to the new rules. */
    log_reload_ends(e, old_n);
    e->n_fired = 0;
    for (size_t i = 0; i < e->pdevs.n_slots; i++)
        for (struct rule_dev *d = e->pdevs.slots[i]; d; d = d->next, k++) {
            if (!d->pairs && !arrays[k])
                continue;
            free(d->pairs);
            e->dev_bytes -= d->n_pairs * sizeof(*d->pairs);
            d->pairs = arrays[k];
            d->n_pairs = d->pairs ? (uint32_t)n_new : 0;
            e->dev_bytes += d->n_pairs * sizeof(*d->pairs);
            for (size_t j = 0; j < d->n_pairs; j++)
                e->n_fired += d->pairs[j].fired;
        }
    free(arrays);
    e->n_quarantines = 0;
    e->next_expiry_ns = 0;
    /* Windows and held timers go with the rule's key: nothing moves. Those
     * of rules that are gone are freed. */
    for (size_t j = old_n; j < e->n_rules; j++) {
        struct rule *nr = e->rules[j];
        for (size_t i = 0; i < old_n; i++) {
            struct rule *was = e->rules[i];
            if (was->skey && strcmp(was->name, nr->name) == 0) {
                nr->skey = was->skey;
                nr->n_cslots = was->n_cslots;
                was->skey = 0;
                was->n_cslots = 0;
                break;
            }
        }
    }
    for (size_t i = 0; i < old_n; i++)
        if (e->rules[i]->n_cslots)
            sweep = true;
    drop_old_rules(e, old_n);
    if (sweep)
        rule__cstate_sweep(e);
    for (size_t i = 0; i < e->pdevs.n_slots; i++) {
        struct rule_dev *d = e->pdevs.slots[i], *next;
        for (; d; d = next) {
            next = d->next;
            dev_tidy(e, &e->pdevs, d->id);
        }
    }
    return 0;
}
