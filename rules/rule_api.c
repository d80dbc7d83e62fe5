/* What a rule sees and calls: the `r` table (and `e`, `d`), open_case,
 * clear_case, emit, now and log.
 *
 * Actions are checked completely before anything is allocated in C, so a
 * bad argument raises a Lua error without leaking, and an action is added
 * to the list only whole. The engine drops the actions of a call that
 * fails (rule_engine.c).
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_domain.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_int.h"

/* ---- actions list ------------------------------------------------------- */

const char *rule_action_kind_name(enum rule_action_kind kind)
{
    switch (kind) {
    case RULE_ACTION_OPEN_CASE:
        return "open_case";
    case RULE_ACTION_CLEAR_CASE:
        return "clear_case";
    case RULE_ACTION_EMIT:
        return "emit";
    }
    return "?";
}

/* Kept for the engine's own callers; the public name is what other
 * modules (the case service owns actions moved out of a list) use. */
void rule__action_clear(struct rule_action *a)
{
    rule_action_free_contents(a);
}

void rule_action_free_contents(struct rule_action *a)
{
    free(a->rule);
    free(a->file);
    free(a->file_hash);
    free(a->subject);
    free(a->category);
    free(a->title);
    free(a->detail);
    free(a->measurement);
    for (size_t i = 0; i < a->n_fields; i++)
        gw_field_clear(&a->fields[i]);
    free(a->fields);
    for (size_t i = 0; i < a->n_tags; i++) {
        free(a->tags[i].key);
        free(a->tags[i].value);
    }
    free(a->tags);
    memset(a, 0, sizeof(*a));
}

void rule_actions_clear(struct rule_actions *actions)
{
    for (size_t i = 0; i < actions->n; i++)
        rule_action_free_contents(&actions->items[i]);
    actions->n = 0;
}

void rule_actions_free(struct rule_actions *actions)
{
    if (!actions)
        return;
    rule_actions_clear(actions);
    free(actions->items);
    actions->items = NULL;
    actions->cap = 0;
}

/* Takes ownership of *a on success. */
static int actions_append(struct rule_actions *actions, struct rule_action *a)
{
    if (actions->n == actions->cap) {
        size_t cap = actions->cap ? actions->cap * 2 : 8;
        struct rule_action *items = realloc(actions->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        actions->items = items;
        actions->cap = cap;
    }
    actions->items[actions->n++] = *a;
    return 0;
}

/* ---- argument checks (may raise; allocate nothing in C) ----------------- */

/* The engine, when a rule's handler is running; a Lua error otherwise. */
static struct rule_engine *running(lua_State *L, const char *fn)
{
    struct rule_engine *e = rule__engine(L);

    if (!e->rule || !e->device_id || !e->actions)
        luaL_error(L, "%s can only be used inside on_reading, on_event or on_silence", fn);
    if (e->actions->n - e->call_first_action >= RULE_MAX_ACTIONS_PER_CALL)
        luaL_error(L, "%s: too many actions in one call (at most %d)", fn,
                   RULE_MAX_ACTIONS_PER_CALL);
    return e;
}

static void check_keys(lua_State *L, int idx, const char *fn, const char *const *names)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *key;
        const char *const *name;

        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: keys must be names, not a %s", fn, luaL_typename(L, -1));
        key = lua_tostring(L, -1);
        for (name = names; *name && strcmp(*name, key) != 0; name++)
            ;
        if (!*name)
            luaL_error(L, "%s: unknown key '%s'", fn, key);
    }
}

enum {
    TEXT_REQUIRED = 1,
    TEXT_EMPTY_OK = 2,
};

/* The string (or number, as text) at key of the table at idx, or NULL when
 * absent and optional. The value is left on the stack so that the string
 * stays alive while the caller uses it. */
static const char *get_text(lua_State *L, int idx, const char *fn, const char *key, size_t max,
                            int flags)
{
    size_t len;
    const char *s;
    int type;

    luaL_checkstack(L, 2, NULL);
    lua_pushstring(L, key);
    type = lua_rawget(L, idx);
    if (type == LUA_TNIL) {
        if (flags & TEXT_REQUIRED)
            luaL_error(L, "%s: %s is required", fn, key);
        return NULL;
    }
    if (type != LUA_TSTRING && type != LUA_TNUMBER)
        luaL_error(L, "%s: %s must be a string, not a %s", fn, key, lua_typename(L, type));
    s = lua_tolstring(L, -1, &len);
    if (len == 0 && !(flags & TEXT_EMPTY_OK))
        luaL_error(L, "%s: %s must not be empty", fn, key);
    if (len > max)
        luaL_error(L, "%s: %s is too long (%I bytes, at most %I)", fn, key, (lua_Integer)len,
                   (lua_Integer)max);
    if (strlen(s) != len)
        luaL_error(L, "%s: %s must not contain a zero byte", fn, key);
    return s;
}

/* Fills the parts every action has and appends it; `ok` says whether the
 * caller's own allocations succeeded. Raises (after freeing) on failure. */
static int push_action(lua_State *L, struct rule_engine *e, struct rule_action *a,
                       const char *subject, bool ok)
{
    a->rule = strdup(e->rule->name);
    a->file = strdup(e->rule->where);
    a->file_hash = strdup(e->rule->file_hash);
    a->shadow = e->rule->shadow;
    a->subject = strdup(subject ? subject : e->device_id);
    a->ts_ns = e->ts_ns;
    if (!ok || !a->rule || !a->file || !a->file_hash || !a->subject ||
        actions_append(e->actions, a) < 0) {
        rule__action_clear(a);
        return luaL_error(L, "out of memory");
    }
    return 0;
}

/* ---- open_case, clear_case ---------------------------------------------- */

/* Whether a case action's subject is the device the rule runs for (the
 * default): only those have case marks. */
static bool about_device(const struct rule_engine *e, const char *subject)
{
    return !subject || strcmp(subject, e->device_id) == 0;
}

static int api_open_case(lua_State *L)
{
    static const char *const keys[] = {
        "category", "severity", "role", "title", "detail", "subject", NULL,
    };
    static const char *const fn = "open_case";
    struct rule_engine *e = running(L, fn);
    const char *category, *severity, *role, *title, *detail, *subject;
    struct rule_action a = { .kind = RULE_ACTION_OPEN_CASE };
    int sev, role_id = -1;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_keys(L, 1, fn, keys);
    category = get_text(L, 1, fn, "category", RULE_CATEGORY_MAX, TEXT_REQUIRED);
    severity = get_text(L, 1, fn, "severity", 16, TEXT_REQUIRED);
    sev = gw_severity_parse(severity);
    if (sev < 0)
        return luaL_error(L, "open_case: severity must be info, minor, major or critical, not '%s'",
                          severity);
    role = get_text(L, 1, fn, "role", 32, 0);
    if (role) {
        role_id = gw_role_parse(role);
        if (role_id < 0)
            return luaL_error(L,
                              "open_case: role must be one of manager, assistant, police, "
                              "supervisor, judicial, firefighter, party_secretary, not '%s'",
                              role);
    }
    title = get_text(L, 1, fn, "title", RULE_TITLE_MAX, TEXT_REQUIRED);
    detail = get_text(L, 1, fn, "detail", RULE_DETAIL_MAX, TEXT_EMPTY_OK);
    subject = get_text(L, 1, fn, "subject", RULE_SUBJECT_MAX, 0);

    a.severity = (enum gw_severity)sev;
    a.has_role = role_id >= 0;
    a.role = a.has_role ? (enum gw_role)role_id : GW_ROLE_MANAGER;
    a.category = strdup(category);
    a.title = strdup(title);
    a.detail = detail ? strdup(detail) : NULL;
    push_action(L, e, &a, subject, a.category && a.title && (!detail || a.detail));
    if (about_device(e, subject) && rule__case_mark(e, e->rule, e->device_id) < 0)
        return luaL_error(L, "open_case: out of memory");
    return 0;
}

static int api_clear_case(lua_State *L)
{
    static const char *const keys[] = { "subject", NULL };
    struct rule_engine *e = running(L, "clear_case");
    struct rule_action a = { .kind = RULE_ACTION_CLEAR_CASE };
    const char *subject = NULL;

    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        check_keys(L, 1, "clear_case", keys);
        subject = get_text(L, 1, "clear_case", "subject", RULE_SUBJECT_MAX, 0);
    }
    /* Nothing of this rule's is open about this device: nothing to say.
     * Other subjects (a building) may have cases opened by rules running
     * for other devices, on other workers: always passed on. */
    if (about_device(e, subject) && !rule__case_marked(e, e->rule, e->device_id))
        return 0;
    return push_action(L, e, &a, subject, true);
}

/* ---- emit --------------------------------------------------------------- */

/* Checks emit's fields (tags = false) or tags table at idx; returns the
 * number of entries. */
static size_t check_emit_table(lua_State *L, int idx, bool tags)
{
    const char *what = tags ? "tag" : "field";
    size_t n = 0, len;

    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *name;
        int type = lua_type(L, -1);

        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "emit: %s names must be strings, not a %s", what, luaL_typename(L, -2));
        name = lua_tolstring(L, -2, &len);
        if (len == 0 || len > RULE_NAME_MAX || strlen(name) != len)
            luaL_error(L, "emit: bad %s name '%s' (1 to %d bytes)", what, name, RULE_NAME_MAX);
        if (type == LUA_TSTRING) {
            lua_tolstring(L, -1, &len);
            if (len > RULE_DETAIL_MAX)
                luaL_error(L, "emit: %s '%s' is too long (at most %d bytes)", what, name,
                           RULE_DETAIL_MAX);
        } else if (type == LUA_TNUMBER) {
            if (!tags && !lua_isinteger(L, -1) && !isfinite(lua_tonumber(L, -1)))
                luaL_error(L, "emit: field '%s' is not a finite number", name);
        } else if (type != LUA_TBOOLEAN || tags) {
            luaL_error(L, "emit: %s '%s' cannot be a %s", what, name, lua_typename(L, type));
        }
        lua_pop(L, 1);
        n++;
    }
    if (n > (tags ? RULE_EMIT_TAGS_MAX : RULE_EMIT_FIELDS_MAX))
        luaL_error(L, "emit: too many %ss (%I, at most %d)", what, (lua_Integer)n,
                   tags ? RULE_EMIT_TAGS_MAX : RULE_EMIT_FIELDS_MAX);
    return n;
}

/* Tag values may be numbers: format them as Lua would, without Lua (no
 * allocation that could raise). */
static char *number_text(lua_State *L, int idx)
{
    char buf[64];

    if (lua_isinteger(L, idx))
        snprintf(buf, sizeof(buf), LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
    else
        snprintf(buf, sizeof(buf), LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, idx));
    return strdup(buf);
}

/* Copies a checked table into a; raises nothing. Returns false when out
 * of memory (what was copied is owned by a). */
static bool copy_emit_table(lua_State *L, int idx, struct rule_action *a, bool tags)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *name = lua_tostring(L, -2);
        int type = lua_type(L, -1);

        if (tags) {
            struct rule_tag *t = &a->tags[a->n_tags];
            t->key = strdup(name);
            t->value = type == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : number_text(L, -1);
            if (!t->key || !t->value) {
                free(t->key);
                free(t->value);
                lua_pop(L, 2);
                return false;
            }
            a->n_tags++;
        } else {
            struct gw_field *f = &a->fields[a->n_fields];
            f->name = strdup(name);
            if (type == LUA_TSTRING) {
                f->value.type = GW_VALUE_STRING;
                f->value.u.string = strdup(lua_tostring(L, -1));
            } else if (type == LUA_TBOOLEAN) {
                f->value.type = GW_VALUE_BOOL;
                f->value.u.boolean = lua_toboolean(L, -1);
            } else if (lua_isinteger(L, -1)) {
                f->value.type = GW_VALUE_INTEGER;
                f->value.u.integer = lua_tointeger(L, -1);
            } else {
                f->value.type = GW_VALUE_NUMBER;
                f->value.u.number = lua_tonumber(L, -1);
            }
            if (!f->name || (f->value.type == GW_VALUE_STRING && !f->value.u.string)) {
                gw_field_clear(f);
                lua_pop(L, 2);
                return false;
            }
            a->n_fields++;
        }
        lua_pop(L, 1);
    }
    return true;
}

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const struct gw_field *)a)->name, ((const struct gw_field *)b)->name);
}

static int cmp_tag(const void *a, const void *b)
{
    return strcmp(((const struct rule_tag *)a)->key, ((const struct rule_tag *)b)->key);
}

static int api_emit(lua_State *L)
{
    struct rule_engine *e = running(L, "emit");
    struct rule_action a = { .kind = RULE_ACTION_EMIT };
    const char *measurement;
    size_t len, n_fields, n_tags = 0;
    bool ok;

    measurement = luaL_checklstring(L, 1, &len);
    if (len == 0 || len > RULE_MEASUREMENT_MAX || strlen(measurement) != len)
        return luaL_error(L, "emit: measurement must be 1 to %d bytes", RULE_MEASUREMENT_MAX);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    luaL_checkstack(L, 4, NULL);
    n_fields = check_emit_table(L, 2, false);
    if (n_fields == 0)
        return luaL_error(L, "emit: needs at least one field");
    if (!lua_isnil(L, 3))
        n_tags = check_emit_table(L, 3, true);

    /* Nothing below raises until push_action. */
    a.measurement = strdup(measurement);
    a.fields = calloc(n_fields, sizeof(*a.fields));
    a.tags = n_tags ? calloc(n_tags, sizeof(*a.tags)) : NULL;
    ok = a.measurement && a.fields && (n_tags == 0 || a.tags);
    ok = ok && copy_emit_table(L, 2, &a, false);
    ok = ok && (n_tags == 0 || copy_emit_table(L, 3, &a, true));
    if (ok) {
        /* Stable order for readers and tests; InfluxDB also prefers
         * tags sorted by key. */
        qsort(a.fields, a.n_fields, sizeof(*a.fields), cmp_field);
        if (a.n_tags)
            qsort(a.tags, a.n_tags, sizeof(*a.tags), cmp_tag);
    }
    return push_action(L, e, &a, NULL, ok);
}

/* ---- now, log ----------------------------------------------------------- */

/* The reading's (event's, silence check's) time in ms, so that rules (and
 * their tests) see the time the data is about, not when it happens to be
 * processed. While a file loads: the wall clock. */
static int api_now(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);

    lua_pushinteger(L, rule__floor_ms(e->device_id ? e->ts_ns : gw_now_ns()));
    return 1;
}

/* log.info(...) / log.warn(...): arguments joined like print's. Upvalue 1
 * is the level. Rate-limited per rule. */
static int api_log(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);
    enum gw_log_level level = (enum gw_log_level)lua_tointeger(L, lua_upvalueindex(1));
    int n = lua_gettop(L);
    char text[RULE_LOG_TEXT_MAX];
    luaL_Buffer b;
    const char *msg;
    size_t len;

    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    msg = lua_tolstring(L, -1, &len);
    rule__log_text(text, sizeof(text), msg, len);
    if (e->rule && e->device_id) {
        gw_log_limited(&e->rule->log_limit, level, e->rule->module, "%s: %s", e->device_id, text);
    } else {
        luaL_where(L, 1);
        gw_log_limited(&e->log_limit, level, "rules", "%s%s", lua_tostring(L, -1), text);
    }
    return 0;
}

void rule__log_text(char *buf, size_t size, const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n + 5 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f) {
            buf[n++] = (char)c;
        } else if (c == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        }
        if (n + 5 >= size && i + 1 < len) {
            memcpy(buf + n, "...", 3);
            n += 3;
        }
    }
    buf[n] = '\0';
}

void rule__api_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "open_case", api_open_case },
        { "clear_case", api_clear_case },
        { "emit", api_emit },
        { "now", api_now },
        { NULL, NULL },
    };

    luaL_setfuncs(L, fns, 0);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, GW_LOG_INFO);
    lua_pushcclosure(L, api_log, 1);
    lua_setfield(L, -2, "info");
    lua_pushinteger(L, GW_LOG_WARN);
    lua_pushcclosure(L, api_log, 1);
    lua_setfield(L, -2, "warn");
    lua_setfield(L, -2, "log");
}

/* ---- the `r` table ------------------------------------------------------ */

static void push_value(lua_State *L, const struct gw_value *v)
{
    switch (v->type) {
    case GW_VALUE_NUMBER:
        lua_pushnumber(L, v->u.number);
        break;
    case GW_VALUE_INTEGER:
        lua_pushinteger(L, v->u.integer);
        break;
    case GW_VALUE_BOOL:
        lua_pushboolean(L, v->u.boolean);
        break;
    case GW_VALUE_STRING:
        lua_pushstring(L, v->u.string);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

/* Names r.NAME cannot give a field: the reading's own keys, and for
 * events e.kind (and e.status, the status itself, for status changes). */
static bool reserved_name(const char *name, enum gw_channel channel)
{
    /* By first letter: this runs for every field of every reading. */
    switch (name[0]) {
    case 'd':
        return strcmp(name, "device") == 0;
    case 't':
        return strcmp(name, "type") == 0 || strcmp(name, "ts") == 0;
    case 'g':
        return strcmp(name, "grid") == 0;
    case 'f':
        return strcmp(name, "fields") == 0;
    case 'k':
        return channel != GW_CHANNEL_TELEMETRY && strcmp(name, "kind") == 0;
    case 's':
        return channel == GW_CHANNEL_STATUS && strcmp(name, "status") == 0;
    default:
        return false;
    }
}

/* A grid's table is built once and cached by the grid's address. Its
 * contents are kept as a snapshot (a Lua string) and compared on every
 * use, so a registry that was freed and reloaded at the same address
 * can never hand out stale names. */
static char grid_cache_key;

static void snapshot_add(luaL_Buffer *b, const char *s)
{
    luaL_addchar(b, s ? '\1' : '\0');
    if (s)
        luaL_addlstring(b, s, strlen(s) + 1);
}

static bool snapshot_eat(const char **p, const char *end, const char *s)
{
    size_t len;

    if (*p >= end || **p != (s ? '\1' : '\0'))
        return false;
    (*p)++;
    if (!s)
        return true;
    len = strlen(s) + 1;
    if ((size_t)(end - *p) < len || memcmp(*p, s, len) != 0)
        return false;
    *p += len;
    return true;
}

static const char *grid_texts(const struct gw_grid *g, int i)
{
    switch (i) {
    case 0:
        return g->id;
    case 1:
        return g->name;
    case 2:
        return g->community_id;
    case 3:
        return g->community;
    case 4:
        return g->street_id;
    case 5:
        return g->street;
    default:
        return g->roster[i - 6];
    }
}

#define GRID_TEXTS (6 + GW_ROLE_COUNT)

static void push_snapshot(lua_State *L, const struct gw_grid *g)
{
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    luaL_addchar(&b, (char)g->type);
    luaL_addchar(&b, (char)g->level);
    for (int i = 0; i < GRID_TEXTS; i++)
        snapshot_add(&b, grid_texts(g, i));
    luaL_pushresult(&b);
}

static bool snapshot_matches(const char *p, size_t len, const struct gw_grid *g)
{
    const char *end = p + len;

    if (len < 2 || p[0] != (char)g->type || p[1] != (char)g->level)
        return false;
    p += 2;
    for (int i = 0; i < GRID_TEXTS; i++)
        if (!snapshot_eat(&p, end, grid_texts(g, i)))
            return false;
    return p == end;
}

static void set_text(lua_State *L, int table, const char *key, const char *value)
{
    if (!value)
        return;
    lua_pushstring(L, value);
    lua_setfield(L, table, key);
}

static void push_grid_table(lua_State *L, const struct gw_grid *g)
{
    int t;

    lua_createtable(L, 0, 9);
    t = lua_gettop(L);
    set_text(L, t, "id", g->id);
    set_text(L, t, "name", g->name);
    set_text(L, t, "type", gw_grid_type_name(g->type));
    set_text(L, t, "level", gw_grid_level_name(g->level));
    set_text(L, t, "community", g->community);
    set_text(L, t, "community_id", g->community_id);
    set_text(L, t, "street", g->street);
    set_text(L, t, "street_id", g->street_id);
    lua_createtable(L, 0, GW_ROLE_COUNT);
    for (int role = 0; role < GW_ROLE_COUNT; role++)
        set_text(L, t + 1, gw_role_name((enum gw_role)role), g->roster[role]);
    rule__make_readonly(L, "r.grid.roster");
    lua_setfield(L, t, "roster");
    rule__make_readonly(L, "r.grid");
}

static void push_grid(lua_State *L, const struct gw_grid *g)
{
    int cache, entry;
    size_t len;
    const char *snap;

    luaL_checkstack(L, 8, NULL);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &grid_cache_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &grid_cache_key);
    }
    cache = lua_gettop(L);
    if (lua_rawgetp(L, cache, g) == LUA_TTABLE) {
        entry = lua_gettop(L);
        lua_rawgeti(L, entry, 1);
        snap = lua_tolstring(L, -1, &len);
        if (snap && snapshot_matches(snap, len, g)) {
            lua_rawgeti(L, entry, 2);
            lua_replace(L, cache);
            lua_settop(L, cache);
            return;
        }
    }
    lua_settop(L, cache);
    lua_createtable(L, 2, 0);
    entry = lua_gettop(L);
    push_snapshot(L, g);
    lua_rawseti(L, entry, 1);
    push_grid_table(L, g);
    lua_pushvalue(L, -1);
    lua_rawseti(L, entry, 2);
    lua_pushvalue(L, entry);
    lua_rawsetp(L, cache, g);
    lua_replace(L, cache);
    lua_settop(L, cache);
}

static int r_newindex(lua_State *L)
{
    return rule__readonly_error(L, "r");
}

static int e_newindex(lua_State *L)
{
    return rule__readonly_error(L, "e");
}

static int d_newindex(lua_State *L)
{
    return rule__readonly_error(L, "d");
}

static int fields_newindex(lua_State *L)
{
    return rule__readonly_error(L, "r.fields");
}

/* Any use of an r, e or r.fields of an earlier reading. */
static int stale(lua_State *L)
{
    return luaL_error(L, "this r (or e) belongs to an earlier call: keep the values you need in "
                         "state, not r itself");
}

/* The tables behind every r and e, in the registry: built once, refilled
 * for each reading; and the keys they always have, interned once. */
enum {
    MSG_DATA = 1, /* r.NAME, device, type, ts, grid, fields */
    MSG_FIELDS,   /* r.fields */
    MSG_R_MT,     /* metatables of the proxies handed to rules */
    MSG_E_MT,
    MSG_FIELDS_MT,
    MSG_STALE_MT, /* what a proxy gets once its reading is over */
    MSG_R,        /* the current proxies */
    MSG_FIELDS_PROXY,
    MSG_K_DEVICE,
    MSG_K_TYPE,
    MSG_K_TS,
    MSG_K_GRID,
    MSG_K_FIELDS,
    MSG_K_KIND,
    MSG_K_STATUS,
    MSG_V_EVENT,
    MSG_COUNT = MSG_V_EVENT,
};

static char msg_key;

static void push_message_tables(lua_State *L)
{
    static const char *const keys[] = { "device", "type", "ts",     "grid",
                                        "fields", "kind", "status", "event" };
    int t;

    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &msg_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, MSG_COUNT, 0);
    t = lua_gettop(L);
    lua_createtable(L, 0, 16);
    lua_rawseti(L, t, MSG_DATA);
    lua_createtable(L, 0, 16);
    lua_rawseti(L, t, MSG_FIELDS);
    lua_rawgeti(L, t, MSG_DATA);
    rule__push_proxy_mt(L, -1, r_newindex);
    lua_rawseti(L, t, MSG_R_MT);
    rule__push_proxy_mt(L, -1, e_newindex);
    lua_rawseti(L, t, MSG_E_MT);
    lua_pop(L, 1);
    lua_rawgeti(L, t, MSG_FIELDS);
    rule__push_proxy_mt(L, -1, fields_newindex);
    lua_rawseti(L, t, MSG_FIELDS_MT);
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, stale);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, stale);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, stale);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_rawseti(L, t, MSG_STALE_MT);
    for (int i = 0; i < (int)(sizeof(keys) / sizeof(keys[0])); i++) {
        lua_pushstring(L, keys[i]);
        lua_rawseti(L, t, MSG_K_DEVICE + i);
    }
    lua_pushvalue(L, t);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &msg_key);
}

/* Empties the table at idx, keeping its size. */
static void clear_table(lua_State *L, int idx)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, idx);
    }
}

/* The proxy at slot of t, if any, goes stale. */
static void retire(lua_State *L, int t, int slot)
{
    if (lua_rawgeti(L, t, slot) == LUA_TTABLE) {
        lua_rawgeti(L, t, MSG_STALE_MT);
        lua_setmetatable(L, -2);
    }
    lua_pop(L, 1);
}

/* A new empty proxy with the metatable at slot of t, on top. */
static void new_proxy(lua_State *L, int t, int slot)
{
    lua_createtable(L, 0, 0);
    lua_rawgeti(L, t, slot);
    lua_setmetatable(L, -2);
}

/* table[key at slot of t] = value on top (popped). */
static void set_key(lua_State *L, int t, int table, int slot)
{
    lua_rawgeti(L, t, slot);
    lua_insert(L, -2);
    lua_rawset(L, table);
}

/* Whether the reading has the same keys as the one the tables hold: then
 * every key is overwritten, and nothing needs clearing. The engine keeps
 * the keys of the last reading as "channel flags name\0name\0...". */
static bool same_keys(struct rule_engine *e, const struct gw_reading *reading, unsigned flags)
{
    const char *p = e->msg_keys, *end = e->msg_keys + e->msg_keys_len;
    size_t need = 2, len;
    char *keys;

    if (p && e->msg_keys_len >= 2 && p[0] == (char)reading->channel && p[1] == (char)flags) {
        p += 2;
        for (size_t i = 0; i < reading->n_fields && p; i++) {
            len = strlen(reading->fields[i].name) + 1;
            p = (size_t)(end - p) >= len && memcmp(p, reading->fields[i].name, len) == 0 ? p + len
                                                                                         : NULL;
        }
        if (p == end)
            return true;
    }
    /* Remember these keys for the next reading. */
    for (size_t i = 0; i < reading->n_fields; i++)
        need += strlen(reading->fields[i].name) + 1;
    if (need > e->msg_keys_cap) {
        keys = realloc(e->msg_keys, need);
        if (!keys) {
            e->msg_keys_len = 0; /* never "the same": always cleared */
            return false;
        }
        e->msg_keys = keys;
        e->msg_keys_cap = need;
    }
    keys = e->msg_keys;
    keys[0] = (char)reading->channel;
    keys[1] = (char)flags;
    e->msg_keys_len = 2;
    for (size_t i = 0; i < reading->n_fields; i++) {
        len = strlen(reading->fields[i].name) + 1;
        memcpy(keys + e->msg_keys_len, reading->fields[i].name, len);
        e->msg_keys_len += len;
    }
    return false;
}

/* `r` is shared by the rules that run on one reading and read-only, so
 * that one rule cannot change what the next one sees. Its contents live
 * in two tables refilled for every reading (no garbage per reading but
 * the two small proxies; nothing to clear when the reading has the same
 * fields as the one before, the usual case); the proxies of the reading
 * before go stale, so an r kept in state can never show another reading's
 * data. Grid tables are shared and cached. Events and status changes get
 * the same shape, plus e.kind and e.status. */
void rule__push_reading(lua_State *L, const struct gw_reading *reading, int device_idx)
{
    struct rule_engine *e = rule__engine(L);
    const struct gw_device *dev = reading->device;
    enum gw_channel channel = reading->channel;
    const struct gw_field *status =
        channel == GW_CHANNEL_STATUS ? gw_reading_field(reading, "status") : NULL;
    unsigned flags;
    int t, fields, data;

    if (status && status->value.type != GW_VALUE_STRING)
        status = NULL;
    flags = (dev && dev->type ? 1u : 0) | (dev && dev->grid ? 2u : 0) | (status ? 4u : 0);
    luaL_checkstack(L, 10, NULL);
    push_message_tables(L);
    t = lua_gettop(L);
    retire(L, t, MSG_R);
    retire(L, t, MSG_FIELDS_PROXY);
    lua_rawgeti(L, t, MSG_FIELDS);
    fields = t + 1;
    lua_rawgeti(L, t, MSG_DATA);
    data = t + 2;
    if (!same_keys(e, reading, flags)) {
        clear_table(L, fields);
        clear_table(L, data);
    }
    for (size_t i = 0; i < reading->n_fields; i++) {
        const struct gw_field *f = &reading->fields[i];

        lua_pushstring(L, f->name);
        push_value(L, &f->value);
        if (!reserved_name(f->name, channel)) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, data);
        }
        lua_rawset(L, fields);
    }
    if (device_idx)
        lua_pushvalue(L, device_idx);
    else
        lua_pushstring(L, reading->device_id);
    set_key(L, t, data, MSG_K_DEVICE);
    if (flags & 1) {
        lua_pushstring(L, dev->type);
        set_key(L, t, data, MSG_K_TYPE);
    }
    lua_pushinteger(L, rule__floor_ms(reading->ts_ns));
    set_key(L, t, data, MSG_K_TS);
    if (flags & 2) {
        push_grid(L, dev->grid);
        set_key(L, t, data, MSG_K_GRID);
    }
    if (channel != GW_CHANNEL_TELEMETRY) {
        lua_rawgeti(L, t, channel == GW_CHANNEL_STATUS ? MSG_K_STATUS : MSG_V_EVENT);
        set_key(L, t, data, MSG_K_KIND);
        if (status) {
            lua_pushstring(L, status->value.u.string);
            set_key(L, t, data, MSG_K_STATUS);
        }
    }
    new_proxy(L, t, MSG_FIELDS_MT);
    lua_pushvalue(L, -1);
    lua_rawseti(L, t, MSG_FIELDS_PROXY);
    set_key(L, t, data, MSG_K_FIELDS);
    new_proxy(L, t, channel == GW_CHANNEL_TELEMETRY ? MSG_R_MT : MSG_E_MT);
    lua_pushvalue(L, -1);
    lua_rawseti(L, t, MSG_R);
    lua_replace(L, t);
    lua_settop(L, t);
}

/* Seconds from ns: a whole number when whole (tostring(d.heartbeat) reads
 * "43200", not "43200.0"). */
static void push_seconds(lua_State *L, int64_t ns)
{
    if (ns % 1000000000 == 0)
        lua_pushinteger(L, ns / 1000000000);
    else
        lua_pushnumber(L, (double)ns / 1e9);
}

void rule__push_silence(lua_State *L, const struct gw_device *device,
                        const struct rule_silence *silence)
{
    int d;

    luaL_checkstack(L, 4, NULL);
    lua_createtable(L, 0, 8);
    d = lua_gettop(L);
    set_text(L, d, "device", device->id);
    set_text(L, d, "type", device->type);
    if (device->grid) {
        push_grid(L, device->grid);
        lua_setfield(L, d, "grid");
    }
    lua_pushinteger(L, rule__floor_ms(silence->now_ns));
    lua_setfield(L, d, "ts");
    if (silence->last_seen_ns != 0) {
        lua_pushinteger(L, rule__floor_ms(silence->last_seen_ns));
        lua_setfield(L, d, "last_seen");
    }
    push_seconds(L, silence->silent_ns);
    lua_setfield(L, d, "silent_for");
    if (silence->heartbeat_ns > 0) {
        push_seconds(L, silence->heartbeat_ns);
        lua_setfield(L, d, "heartbeat");
    }
    rule__make_readonly_fast(L, d_newindex);
}
