/* rule_engine: loading rule files and running their rules on readings,
 * events and silences.
 *
 * A rule file is a Lua chunk that calls rule{...}; rule__define() checks
 * the definition completely (unknown keys are errors, with file:line) and
 * keeps the handlers and the per-device state map in the Lua registry
 * (windows and held timers are in C: rule_window.c). A file's rules are
 * committed only when the whole file ran; each rule remembers the SHA-256
 * of its file's content.
 *
 * On a reading or event, the match={} filters run in C; only when a rule
 * matches is `r` (or `e`, `d`) built (once per input) and the rule called,
 * each call under its own limits (rule_sandbox.c) and in its own pcall, so
 * a failing rule costs only its own actions. Failures feed the quarantines
 * of rule_state.c.
 */
#include "rule_engine.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gw_buf.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_int.h"
#include "rule_sha256.h"

/* ---- lifecycle ---------------------------------------------------------- */

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void rule_free(struct rule *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->where);
    free(r->module);
    free_names(r->match.types, r->match.n_types);
    free_names(r->match.streets, r->match.n_streets);
    free_names(r->match.communities, r->match.n_communities);
    free_names(r->match.grids, r->match.n_grids);
    free_names(r->match.fields, r->match.n_fields);
    free(r);
}

struct rule_engine *rule_engine_new(const struct rule_limits *limits)
{
    struct rule_engine *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    e->limits.instruction_budget =
        limits && limits->instruction_budget > 0 ? limits->instruction_budget : RULE_DEFAULT_BUDGET;
    e->limits.memory_bytes =
        limits && limits->memory_bytes > 0 ? limits->memory_bytes : RULE_DEFAULT_MEMORY;
    e->limits.device_failures = limits && limits->device_failures > 0
                                    ? limits->device_failures
                                    : RULE_DEFAULT_DEVICE_FAILURES;
    e->limits.rule_devices =
        limits && limits->rule_devices > 0 ? limits->rule_devices : RULE_DEFAULT_RULE_DEVICES;
    e->limits.quarantine_s =
        limits && limits->quarantine_s > 0 ? limits->quarantine_s : RULE_DEFAULT_QUARANTINE_S;
    e->log_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(1.0, 10);
    e->L = rule__sandbox_new(e);
    if (!e->L) {
        free(e);
        return NULL;
    }
    return e;
}

void rule_engine_free(struct rule_engine *engine)
{
    if (!engine)
        return;
    /* The allocator still counts into engine while the state closes. */
    lua_close(engine->L);
    rule__state_free(engine);
    free(engine->msg_keys);
    rule__sources_free(engine->sources, engine->n_sources);
    for (size_t i = 0; i < engine->n_rules; i++)
        rule_free(engine->rules[i]);
    free(engine->rules);
    free(engine);
}

size_t rule_engine_memory(const struct rule_engine *engine)
{
    return engine->mem_used + engine->dev_bytes;
}

size_t rule_engine_rule_count(const struct rule_engine *engine)
{
    return engine->n_committed;
}

int rule_engine_note_open_case(struct rule_engine *engine, const char *rule_name,
                               const char *device_id)
{
    for (size_t i = 0; i < engine->n_committed; i++)
        if (strcmp(engine->rules[i]->name, rule_name) == 0)
            return rule__case_mark(engine, engine->rules[i], device_id);
    return -ENOENT;
}

void rule_engine_stats(const struct rule_engine *engine, struct rule_stats *ret_stats)
{
    *ret_stats = engine->stats;
}

/* ---- rule{} ------------------------------------------------------------- */

enum match_key {
    MATCH_TYPE,
    MATCH_GRID_TYPE,
    MATCH_GRID_LEVEL,
    MATCH_STREET,
    MATCH_COMMUNITY,
    MATCH_GRID,
    MATCH_FIELD,
    MATCH_KEY_COUNT,
};

static const char *const match_keys[MATCH_KEY_COUNT] = {
    "type", "grid_type", "grid_level", "street", "community", "grid", "field",
};

/* Checks a match value: a non-empty string or a non-empty list of them.
 * Returns how many. */
static size_t check_names(lua_State *L, int idx, const char *key)
{
    size_t n;

    if (lua_type(L, idx) == LUA_TSTRING) {
        if (lua_rawlen(L, idx) == 0)
            luaL_error(L, "rule{}: match.%s must not be empty", key);
        return 1;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "rule{}: match.%s must be a string or a list of strings, not a %s", key,
                   luaL_typename(L, idx));
    n = lua_rawlen(L, idx);
    if (n == 0)
        luaL_error(L, "rule{}: match.%s must be a non-empty list of strings", key);
    for (size_t i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            luaL_error(L, "rule{}: match.%s[%d] must be a non-empty string", key, (int)i);
        lua_pop(L, 1);
    }
    return n;
}

/* Copies a checked match value; raises nothing. NULL when out of memory. */
static char **copy_names(lua_State *L, int idx, size_t n)
{
    char **names = calloc(n, sizeof(*names));

    if (!names)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (lua_type(L, idx) == LUA_TSTRING) {
            names[i] = strdup(lua_tostring(L, idx));
        } else {
            lua_rawgeti(L, idx, (lua_Integer)(i + 1));
            names[i] = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        if (!names[i]) {
            free_names(names, i);
            return NULL;
        }
    }
    return names;
}

/* A mask of enum values named at idx (checked by check_names). */
static unsigned check_enum_mask(lua_State *L, int idx, const char *key, size_t n,
                                int (*parse)(const char *), const char *choices)
{
    unsigned mask = 0;

    for (size_t i = 0; i < n; i++) {
        const char *name;
        int v;

        if (lua_type(L, idx) == LUA_TSTRING)
            lua_pushvalue(L, idx);
        else
            lua_rawgeti(L, idx, (lua_Integer)(i + 1));
        name = lua_tostring(L, -1);
        v = parse(name);
        if (v < 0)
            luaL_error(L, "rule{}: match.%s: unknown value '%s' (one of %s)", key, name, choices);
        mask |= 1u << v;
        lua_pop(L, 1);
    }
    return mask;
}

#define RULE_KEYS "name, match, mode, on_reading, on_event, on_silence, silence"

static void check_rule_keys(lua_State *L)
{
    static const char *const keys[] = {
        "name", "match", "mode", "on_reading", "on_event", "on_silence", "silence", NULL,
    };

    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *key;
        const char *const *k;

        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "rule{}: keys must be names, not a %s", luaL_typename(L, -1));
        key = lua_tostring(L, -1);
        for (k = keys; *k && strcmp(*k, key) != 0; k++)
            ;
        if (!*k)
            luaL_error(L, "rule{}: unknown key '%s' (" RULE_KEYS ")", key);
    }
}

static void check_match_keys(lua_State *L, int idx)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *key;
        int k;

        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "rule{}: match keys must be names, not a %s", luaL_typename(L, -1));
        key = lua_tostring(L, -1);
        for (k = 0; k < MATCH_KEY_COUNT && strcmp(key, match_keys[k]) != 0; k++)
            ;
        if (k == MATCH_KEY_COUNT)
            luaL_error(L,
                       "rule{}: unknown match key '%s' (type, grid_type, grid_level, street, "
                       "community, grid, field)",
                       key);
    }
}

static int rawget_field(lua_State *L, int idx, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, idx);
}

static bool check_rule_name(const char *name, size_t len)
{
    if (len == 0 || len > RULE_NAME_MAX || strlen(name) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

/* "path:line" of the function that called rule{}. */
static char *caller_where(lua_State *L)
{
    lua_Debug ar;
    char *where;

    if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "Sl", &ar))
        return strdup("?");
    if (asprintf(&where, "%s:%d", ar.source[0] == '@' ? ar.source + 1 : ar.short_src,
                 ar.currentline) < 0)
        return NULL;
    return where;
}

/* rule{ silence = ... }: a duration, or { factor = N }. Raises on a bad
 * one. */
static void check_silence(lua_State *L, int idx, double *ret_seconds, double *ret_factor)
{
    static const char *const usage =
        "(a duration such as \"90s\", \"15m\", \"2h\", \"1d\", a number of seconds, "
        "or { factor = N })";
    double v;

    *ret_seconds = 0;
    *ret_factor = 0;
    if (lua_isnil(L, idx)) {
        *ret_factor = 2;
        return;
    }
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "factor") != 0)
                luaL_error(L, "rule{}: silence table takes only factor %s", usage);
        }
        lua_pushliteral(L, "factor");
        lua_rawget(L, idx);
        v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        lua_pop(L, 1);
        /* 1000 heartbeats is months for the slowest devices. */
        if (!(v > 0 && v <= 1000))
            luaL_error(L,
                       "rule{}: silence = { factor = N } needs a number N above 0 (at most 1000)");
        *ret_factor = v;
        return;
    }
    if (rule__duration_at(L, idx, &v) < 0 || v == 0) {
        if (lua_type(L, idx) == LUA_TSTRING)
            luaL_error(L, "rule{}: silence: bad duration '%s' %s", lua_tostring(L, idx), usage);
        luaL_error(L, "rule{}: silence must be %s, not %s", usage,
                   lua_type(L, idx) == LUA_TNUMBER ? "this number" : luaL_typename(L, idx));
    }
    *ret_seconds = v;
}

int rule__define(lua_State *L)
{
    struct rule_engine *e = rule__engine(L);
    enum {
        NAME_IDX = 2,
        MATCH_IDX,
        ON_READING_IDX,
        ON_EVENT_IDX,
        ON_SILENCE_IDX,
        MODE_IDX,
        SILENCE_IDX,
        VALUES_IDX,
    };
    static const char *const fields[] = {
        "name", "match", "on_reading", "on_event", "on_silence", "mode", "silence",
    };
    const int match_idx = MATCH_IDX, values = VALUES_IDX;
    size_t counts[MATCH_KEY_COUNT] = { 0 };
    unsigned grid_types = 0, grid_levels = 0;
    double silence_s = 0, silence_factor = 0;
    bool shadow = false;
    const char *name;
    size_t name_len;
    struct rule *r, **rules;
    bool ok;
    int ref;

    if (!e->loading_path || e->rule)
        return luaL_error(L, "rule{} can only be called while a rules file loads");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, MATCH_KEY_COUNT + 16, NULL);
    check_rule_keys(L);

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        rawget_field(L, 1, fields[i]);
    if (lua_isnil(L, NAME_IDX))
        return luaL_error(L, "rule{}: name is required");
    if (lua_type(L, NAME_IDX) != LUA_TSTRING)
        return luaL_error(L, "rule{}: name must be a string, not a %s", luaL_typename(L, NAME_IDX));
    name = lua_tolstring(L, NAME_IDX, &name_len);
    if (!check_rule_name(name, name_len))
        return luaL_error(L, "rule{}: name must be 1 to %d bytes without control characters",
                          RULE_NAME_MAX);
    /* During an in-place reload the running rules keep their names until
     * the new ones replace them. */
    for (size_t i = e->reload_base; i < e->n_rules; i++)
        if (strcmp(e->rules[i]->name, name) == 0)
            return luaL_error(L, "rule{}: duplicate rule name '%s' (first defined at %s)", name,
                              e->rules[i]->where);
    for (int idx = ON_READING_IDX; idx <= ON_SILENCE_IDX; idx++)
        if (!lua_isnil(L, idx) && lua_type(L, idx) != LUA_TFUNCTION)
            return luaL_error(L, "rule{}: %s must be a function, not a %s", fields[idx - 2],
                              luaL_typename(L, idx));
    if (lua_isnil(L, ON_READING_IDX) && lua_isnil(L, ON_EVENT_IDX) && lua_isnil(L, ON_SILENCE_IDX))
        return luaL_error(L,
                          "rule{}: rule '%s' needs on_reading = function(r, state) ... end, "
                          "on_event = function(e, state) ... end or "
                          "on_silence = function(d, state) ... end",
                          name);
    if (!lua_isnil(L, MODE_IDX)) {
        const char *mode = lua_type(L, MODE_IDX) == LUA_TSTRING ? lua_tostring(L, MODE_IDX) : "";
        if (strcmp(mode, "shadow") == 0)
            shadow = true;
        else if (strcmp(mode, "live") != 0)
            return luaL_error(L, "rule{}: mode must be \"live\" or \"shadow\", not %s%s%s",
                              *mode ? "'" : "", *mode ? mode : luaL_typename(L, MODE_IDX),
                              *mode ? "'" : "");
    }
    if (lua_isnil(L, ON_SILENCE_IDX)) {
        if (!lua_isnil(L, SILENCE_IDX))
            return luaL_error(L, "rule{}: silence is given but on_silence is not");
    } else {
        check_silence(L, SILENCE_IDX, &silence_s, &silence_factor);
    }

    if (!lua_isnil(L, match_idx)) {
        if (lua_type(L, match_idx) != LUA_TTABLE)
            return luaL_error(L, "rule{}: match must be a table, not a %s",
                              luaL_typename(L, match_idx));
        check_match_keys(L, match_idx);
    }
    for (int k = 0; k < MATCH_KEY_COUNT; k++) {
        if (lua_isnil(L, match_idx))
            lua_pushnil(L);
        else
            rawget_field(L, match_idx, match_keys[k]);
        if (!lua_isnil(L, values + k))
            counts[k] = check_names(L, values + k, match_keys[k]);
    }
    grid_types =
        check_enum_mask(L, values + MATCH_GRID_TYPE, "grid_type", counts[MATCH_GRID_TYPE],
                        gw_grid_type_parse, "residential, commercial, institution, crowded");
    grid_levels =
        check_enum_mask(L, values + MATCH_GRID_LEVEL, "grid_level", counts[MATCH_GRID_LEVEL],
                        gw_grid_level_parse, "routine, prevention, attention, governance");

    /* Lua side first: it may raise, and nothing is allocated in C yet. */
    lua_createtable(L, RULE_SLOT_COUNT, 0);
    lua_pushvalue(L, ON_READING_IDX);
    lua_rawseti(L, -2, RULE_SLOT_ON_READING);
    lua_newtable(L);
    lua_rawseti(L, -2, RULE_SLOT_STATES);
    lua_pushvalue(L, ON_EVENT_IDX);
    lua_rawseti(L, -2, RULE_SLOT_ON_EVENT);
    lua_pushvalue(L, ON_SILENCE_IDX);
    lua_rawseti(L, -2, RULE_SLOT_ON_SILENCE);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* C side: nothing below raises until the final error. */
    r = calloc(1, sizeof(*r));
    rules = e->n_rules == e->cap_rules
                ? realloc(e->rules, (e->cap_rules ? e->cap_rules * 2 : 16) * sizeof(*rules))
                : e->rules;
    if (rules && rules != e->rules) {
        e->rules = rules;
        e->cap_rules = e->cap_rules ? e->cap_rules * 2 : 16;
    }
    ok = r && rules;
    if (ok) {
        struct rule_match *m = &r->match;
        r->ref = ref;
        r->idx = e->n_rules;
        if (++e->next_skey == 0) /* 0 is "none" (rule_state.c's hand-over) */
            e->next_skey = 1;
        r->skey = e->next_skey;
        r->shadow = shadow;
        r->on_reading = !lua_isnil(L, ON_READING_IDX);
        r->on_event = !lua_isnil(L, ON_EVENT_IDX);
        r->on_silence = !lua_isnil(L, ON_SILENCE_IDX);
        r->silence_s = silence_s;
        r->silence_factor = silence_factor;
        snprintf(r->file_hash, sizeof(r->file_hash), "%s", e->loading_hash ? e->loading_hash : "");
        r->name = strdup(name);
        r->where = caller_where(L);
        ok = r->name && r->where && asprintf(&r->module, "rule %s", name) >= 0;
        if (!ok)
            r->module = NULL;
        m->grid_types = grid_types;
        m->grid_levels = grid_levels;
#define COPY(list, n, key)                                                                         \
    if (ok && counts[key]) {                                                                       \
        list = copy_names(L, values + key, counts[key]);                                           \
        n = list ? counts[key] : 0;                                                                \
        ok = list != NULL;                                                                         \
    }
        COPY(m->types, m->n_types, MATCH_TYPE)
        COPY(m->streets, m->n_streets, MATCH_STREET)
        COPY(m->communities, m->n_communities, MATCH_COMMUNITY)
        COPY(m->grids, m->n_grids, MATCH_GRID)
        COPY(m->fields, m->n_fields, MATCH_FIELD)
#undef COPY
        r->fail_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(1.0, 5);
        r->log_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(5.0, 20);
        r->quarantine_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(1.0, 50);
    }
    if (!ok) {
        rule_free(r);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "out of memory");
    }
    e->rules[e->n_rules++] = r;
    return 0;
}

/* ---- loading ------------------------------------------------------------ */

struct load_ctx {
    struct rule_engine *e;
    const char *path;
    const char *buf;
    size_t len;
};

static int load_chunk(lua_State *L)
{
    struct load_ctx *ctx = lua_touserdata(L, 1);
    const char *buf = ctx->buf;
    size_t len = ctx->len;

    /* Editors on some desktops start UTF-8 files with a byte-order mark. */
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        buf += 3;
        len -= 3;
    }
    lua_pushfstring(L, "@%s", ctx->path);
    /* Text only: a precompiled chunk can crash the VM. */
    if (luaL_loadbufferx(L, buf, len, lua_tostring(L, -1), "t") != LUA_OK)
        return lua_error(L);
    rule__limits_begin(ctx->e);
    lua_call(L, 0, 0);
    return 0;
}

/* "path:line: message" from a Lua error message, whose location may be
 * Lua's shortened copy of the path ("...tail:12: msg") or missing. */
static char *load_message(const char *path, const char *msg)
{
    size_t path_len = strlen(path);
    char *out;
    int rc;

    if (strncmp(msg, path, path_len) == 0 && msg[path_len] == ':') {
        rc = asprintf(&out, "%s", msg);
    } else if (strncmp(msg, "...", 3) == 0 && strchr(msg, ':')) {
        const char *colon = strchr(msg, ':');
        size_t tail = (size_t)(colon - msg) - 3;
        if (tail <= path_len && strncmp(path + path_len - tail, msg + 3, tail) == 0)
            rc = asprintf(&out, "%s%s", path, colon);
        else
            rc = asprintf(&out, "%s:0: %s", path, msg);
    } else {
        rc = asprintf(&out, "%s:0: %s", path, msg);
    }
    return rc < 0 ? NULL : out;
}

/* "path:0: what: strerror" (or without the strerror when show_errno is
 * false); returns err. */
static int set_error(char **ret_error, const char *path, int err, const char *what, bool show_errno)
{
    int rc = 0;

    if (ret_error) {
        if (show_errno)
            rc = asprintf(ret_error, "%s:0: %s: %s", path, what, strerror(-err));
        else
            rc = asprintf(ret_error, "%s:0: %s", path, what);
        if (rc < 0)
            *ret_error = NULL;
    }
    return err;
}

static int read_file(const char *path, char **ret_buf, size_t *ret_len, char **ret_error)
{
    struct gw_buf file = GW_BUF_INIT;
    struct stat st;
    int r;

    /* A FIFO or device named *.lua would block or never end. */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return set_error(ret_error, path, -EINVAL, "not a regular file", false);
    r = gw_buf_read_file(&file, path, RULE_FILE_MAX);
    if (r == -EFBIG)
        return set_error(ret_error, path, r, "larger than 4 MiB, not a rule file", false);
    if (r < 0)
        return set_error(ret_error, path, r, "cannot read", true);
    *ret_buf = file.data;
    *ret_len = file.len;
    return 0;
}

void rule__rule_drop(struct rule_engine *e, struct rule *r)
{
    luaL_unref(e->L, LUA_REGISTRYINDEX, r->ref);
    rule_free(r);
}

static void discard_uncommitted(struct rule_engine *e)
{
    while (e->n_rules > e->n_committed)
        rule__rule_drop(e, e->rules[--e->n_rules]);
}

static int keep_source(struct rule_engine *e, const char *path, char *buf, size_t len)
{
    struct rule_source *src;

    if (e->n_sources == e->cap_sources) {
        size_t cap = e->cap_sources ? e->cap_sources * 2 : 8;
        struct rule_source *grown = realloc(e->sources, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        e->sources = grown;
        e->cap_sources = cap;
    }
    src = &e->sources[e->n_sources];
    src->path = strdup(path);
    if (!src->path)
        return -ENOMEM;
    src->buf = buf;
    src->len = len;
    e->n_sources++;
    return 0;
}

void rule__sources_free(struct rule_source *sources, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(sources[i].path);
        free(sources[i].buf);
    }
    free(sources);
}

/* Runs one rule file's bytes. On success the file's rules are committed
 * and, when keep is set, the bytes are kept in engine->sources (owned
 * from then on) so another engine can load exactly these. */
static int load_buffer(struct rule_engine *engine, const char *path, char *buf, size_t len,
                       bool keep, char **ret_error)
{
    struct load_ctx ctx = { .e = engine, .path = path, .buf = buf, .len = len };
    char hash[RULE_SHA256_HEX_LEN + 1];
    int status;
    enum rule_trip trip;

    /* Of the bytes as read (a byte-order mark included): the hash names
     * the file exactly as it was on disk. */
    rule_sha256_hex(buf, len, hash);
    engine->loading_path = path;
    engine->loading_hash = hash;
    lua_pushcfunction(engine->L, load_chunk);
    lua_pushlightuserdata(engine->L, &ctx);
    status = lua_pcall(engine->L, 1, 0, 0);
    trip = engine->in_call ? engine->trip : RULE_TRIP_NONE;
    rule__limits_end(engine);
    engine->loading_path = NULL;
    engine->loading_hash = NULL;

    if (status == LUA_OK && trip == RULE_TRIP_NONE) {
        if (keep && keep_source(engine, path, buf, len) < 0) {
            discard_uncommitted(engine);
            return set_error(ret_error, path, -ENOMEM, "cannot load", true);
        }
        engine->n_committed = engine->n_rules;
        return 0;
    }
    discard_uncommitted(engine);
    if (ret_error) {
        const char *msg = status != LUA_OK && lua_type(engine->L, -1) == LUA_TSTRING
                              ? lua_tostring(engine->L, -1)
                          : status != LUA_OK ? "error object is not a string"
                                             : rule__trip_name(trip);
        *ret_error = load_message(path, msg);
    }
    if (status != LUA_OK)
        lua_pop(engine->L, 1);
    return status == LUA_ERRMEM || trip == RULE_TRIP_MEMORY ? -ENOMEM : -EINVAL;
}

int rule_engine_load_file(struct rule_engine *engine, const char *path, char **ret_error)
{
    char *buf = NULL;
    size_t len = 0;
    int r = read_file(path, &buf, &len, ret_error);

    if (r < 0)
        return r;
    r = load_buffer(engine, path, buf, len, true, ret_error);
    if (r < 0)
        free(buf);
    return r;
}

int rule_engine_reload_like(struct rule_engine *engine, const struct rule_engine *model,
                            char **ret_error)
{
    size_t old_n = engine->n_committed;
    struct rule_source *old_sources = engine->sources;
    size_t old_n_sources = engine->n_sources, old_cap = engine->cap_sources;
    int r = 0;

    if (engine == model || engine->in_call || engine->n_rules != engine->n_committed)
        return -EINVAL;
    engine->sources = NULL;
    engine->n_sources = engine->cap_sources = 0;
    engine->reload_base = old_n;
    for (size_t i = 0; i < model->n_sources && r == 0; i++) {
        const struct rule_source *src = &model->sources[i];
        char *copy = malloc(src->len ? src->len : 1);

        if (!copy) {
            r = set_error(ret_error, src->path, -ENOMEM, "cannot load", true);
            break;
        }
        memcpy(copy, src->buf, src->len);
        r = load_buffer(engine, src->path, copy, src->len, true, ret_error);
        if (r < 0)
            free(copy);
    }
    engine->reload_base = 0;
    if (r == 0)
        r = rule__hand_over(engine, old_n);
    if (r < 0) {
        engine->n_committed = old_n;
        discard_uncommitted(engine);
        rule__sources_free(engine->sources, engine->n_sources);
        engine->sources = old_sources;
        engine->n_sources = old_n_sources;
        engine->cap_sources = old_cap;
        return r;
    }
    rule__sources_free(old_sources, old_n_sources);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_test_name(const char *name, size_t len)
{
    return len >= 9 && strcmp(name + len - 9, "_test.lua") == 0;
}

static bool wanted(const char *name, enum rule_file_kind kind)
{
    size_t len = strlen(name);

    if (name[0] == '.' || len <= 4 || strcmp(name + len - 4, ".lua") != 0)
        return false;
    return kind == RULE_FILES_TESTS ? is_test_name(name, len) && len > 9
                                    : !is_test_name(name, len);
}

void rule_files_free(char **names, size_t n)
{
    free_names(names, n);
}

int rule_files_list(const char *dir, enum rule_file_kind kind, char ***ret_names, size_t *ret_n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        if (!wanted(de->d_name, kind))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof(*nn));
            if (!nn)
                goto nomem;
            names = nn;
            cap = ncap;
        }
        names[n] = strdup(de->d_name);
        if (!names[n])
            goto nomem;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_names);
    *ret_names = names;
    *ret_n = n;
    return 0;
nomem:
    closedir(d);
    free_names(names, n);
    return -ENOMEM;
}

int rule_engine_load_dir(struct rule_engine *engine, const char *dir, char **ret_error)
{
    char **names = NULL;
    size_t n = 0;
    int r = rule_files_list(dir, RULE_FILES_RULES, &names, &n);

    if (r < 0)
        return set_error(ret_error, dir, r, "cannot open rules directory", true);
    for (size_t i = 0; i < n && r == 0; i++) {
        char *path;
        if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
            r = set_error(ret_error, dir, -ENOMEM, "cannot load", true);
            break;
        }
        r = rule_engine_load_file(engine, path, ret_error);
        free(path);
    }
    free_names(names, n);
    return r;
}

/* ---- running ------------------------------------------------------------ */

static bool in_list(char *const *list, size_t n, const char *s)
{
    if (!s)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* match={} without field: what can be known of the device alone. */
static bool device_matches(const struct rule *r, const struct gw_device *d)
{
    const struct rule_match *m = &r->match;
    const struct gw_grid *g = d->grid;

    if (m->n_types && !in_list(m->types, m->n_types, d->type))
        return false;
    if (m->grid_types || m->grid_levels || m->n_streets || m->n_communities || m->n_grids) {
        if (!g)
            return false;
        if (m->grid_types &&
            ((unsigned)g->type >= GW_GRID_TYPE_COUNT || !(m->grid_types & (1u << g->type))))
            return false;
        if (m->grid_levels &&
            ((unsigned)g->level >= GW_GRID_LEVEL_COUNT || !(m->grid_levels & (1u << g->level))))
            return false;
        if (m->n_streets && !in_list(m->streets, m->n_streets, g->street_id))
            return false;
        if (m->n_communities && !in_list(m->communities, m->n_communities, g->community_id))
            return false;
        if (m->n_grids && !in_list(m->grids, m->n_grids, g->id))
            return false;
    }
    return true;
}

static bool rule_matches(const struct rule *r, const struct gw_reading *reading)
{
    if (!device_matches(r, reading->device))
        return false;
    for (size_t i = 0; i < r->match.n_fields; i++)
        if (!gw_reading_field(reading, r->match.fields[i]))
            return false;
    return true;
}

/* The silence after which the rule fires for a device with this
 * heartbeat; 0: never (a factor of an unknown heartbeat). */
static int64_t silence_threshold(const struct rule *r, int64_t heartbeat_ns)
{
    double ns;

    if (r->silence_s > 0)
        ns = r->silence_s * 1e9;
    else if (heartbeat_ns > 0)
        ns = r->silence_factor * (double)heartbeat_ns;
    else
        return 0;
    if (ns >= 9e18)
        return INT64_C(9000000000000000000);
    return ns < 1 ? 1 : (int64_t)ns;
}

enum run_kind {
    RUN_READING,
    RUN_EVENT,
    RUN_SILENCE,
};

struct run_ctx {
    struct rule_engine *e;
    enum run_kind kind;
    const struct gw_reading *reading; /* reading or event */
    const struct gw_device *device;
    const char *device_id;
    const struct rule_silence *silence;
    size_t pos; /* next rule to consider */
    int failed;
};

/* Whether the rule has something to do with this input (quarantine
 * aside). */
static bool wants(const struct run_ctx *c, const struct rule *r)
{
    int64_t threshold;

    switch (c->kind) {
    case RUN_READING:
        return r->on_reading && rule_matches(r, c->reading);
    case RUN_EVENT:
        return r->on_event && rule_matches(r, c->reading);
    case RUN_SILENCE:
        if (!r->on_silence || !device_matches(r, c->device))
            return false;
        threshold = silence_threshold(r, c->silence->heartbeat_ns);
        return threshold > 0 && c->silence->silent_ns >= threshold &&
               !rule__silence_fired(c->e, r, c->device_id, c->silence->last_seen_ns);
    }
    return false;
}

/* Runs one rule; the function and its two arguments are on the stack.
 * Returns true when the call succeeded. */
static bool call_rule(struct rule_engine *e, struct rule *rule)
{
    lua_State *L = e->L;
    size_t first = e->actions->n;
    enum rule_trip trip;
    const char *msg;
    size_t msg_len;
    char buf[96], text[RULE_LOG_TEXT_MAX];
    int status;

    e->rule = rule;
    e->call_first_action = first;
    rule__limits_begin(e);
    status = lua_pcall(L, 2, 0, 0);
    trip = e->trip;
    rule__limits_end(e);
    e->rule = NULL;
    e->stats.calls++;
    rule->calls++;
    /* A trip that a pcall in the rule caught just before returning still
     * ends the call as failed. */
    if (status == LUA_OK && trip == RULE_TRIP_NONE) {
        rule__case_marks_commit(e, rule, first);
        e->stats.actions += e->actions->n - first;
        rule->actions += e->actions->n - first;
        return true;
    }

    while (e->actions->n > first)
        rule__action_clear(&e->actions->items[--e->actions->n]);
    e->stats.errors++;
    rule->errors++;
    if (trip == RULE_TRIP_MEMORY || (trip == RULE_TRIP_NONE && status == LUA_ERRMEM)) {
        e->stats.memory_exceeded++;
        /* Leave the next rule a heap without this one's garbage. */
        lua_gc(L, LUA_GCCOLLECT);
    } else if (trip == RULE_TRIP_REP) {
        e->stats.memory_exceeded++;
    } else if (trip != RULE_TRIP_NONE) {
        e->stats.budget_exceeded++;
    }

    if (status == LUA_ERRMEM) {
        /* Lua's own message for this has no location and no figure. */
        snprintf(buf, sizeof(buf), "memory limit exceeded (%zu bytes)", e->limits.memory_bytes);
        msg = buf;
        msg_len = strlen(msg);
    } else if (status != LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
        msg = lua_tolstring(L, -1, &msg_len); /* may hold zero bytes */
    } else {
        /* An error object that is not a string is never converted: its
         * __tostring would run outside every limit. */
        msg = status != LUA_OK ? "error object is not a string" : rule__trip_name(trip);
        msg_len = strlen(msg);
    }
    rule__log_text(text, sizeof(text), msg, msg_len);
    gw_log_limited(&rule->fail_limit, GW_LOG_ERROR, rule->module, "%s: failed for device %s: %s",
                   rule->where, e->device_id, text);
    if (status != LUA_OK)
        lua_pop(L, 1);
    return false;
}

char rule__device_key;

static bool is_empty(lua_State *L, int idx)
{
    lua_pushnil(L);
    if (!lua_next(L, idx))
        return true;
    lua_pop(L, 2);
    return false;
}

/* Protected: builds the argument (r, e or d) once, then calls every rule
 * that wants this input with its state for this device. Anything that
 * raises here (out of memory while building the argument or a state
 * table) leaves ctx->pos at the rule not run. */
static int run_rules(lua_State *L)
{
    struct run_ctx *ctx = lua_touserdata(L, 1);
    struct rule_engine *e = ctx->e;
    const int arg_idx = 2, dev_idx = 3, rt_idx = 4, states_idx = 5, state_idx = 6;
    const int slot = ctx->kind == RUN_READING ? RULE_SLOT_ON_READING
                     : ctx->kind == RUN_EVENT ? RULE_SLOT_ON_EVENT
                                              : RULE_SLOT_ON_SILENCE;

    lua_pushstring(L, ctx->device_id);
    if (ctx->kind == RUN_SILENCE)
        rule__push_silence(L, ctx->device, ctx->silence);
    else
        rule__push_reading(L, ctx->reading, 2);
    lua_insert(L, 2);
    lua_pushvalue(L, dev_idx);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &rule__device_key);
    for (; ctx->pos < e->n_committed; ctx->pos++) {
        struct rule *rule = e->rules[ctx->pos];
        bool created, ok;

        if (!wants(ctx, rule) || !rule__admitted(e, rule, ctx->device_id))
            continue;
        lua_rawgeti(L, LUA_REGISTRYINDEX, rule->ref);
        lua_rawgeti(L, rt_idx, RULE_SLOT_STATES);
        lua_pushvalue(L, dev_idx);
        created = lua_rawget(L, states_idx) != LUA_TTABLE;
        if (created) {
            /* The rule's spare empty table, or a new one if the rule
             * kept the last one and filled it since. */
            lua_pop(L, 1);
            if (lua_rawgeti(L, rt_idx, RULE_SLOT_SCRATCH) != LUA_TTABLE ||
                !is_empty(L, state_idx)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_rawseti(L, rt_idx, RULE_SLOT_SCRATCH);
            }
        }
        lua_rawgeti(L, rt_idx, slot);
        lua_pushvalue(L, arg_idx);
        lua_pushvalue(L, state_idx);
        ok = call_rule(e, rule);
        rule__record(e, rule, ctx->device_id, ok);
        if (!ok)
            ctx->failed++;
        else if (ctx->kind == RUN_SILENCE)
            rule__set_fired(e, rule, ctx->device_id, ctx->silence->last_seen_ns);
        /* Keep a new state table only once the rule put something in it:
         * most rules never use state, and devices are many. Until then
         * the same empty table serves the rule's next new device. */
        if (created && !is_empty(L, state_idx)) {
            lua_pushvalue(L, dev_idx);
            lua_pushvalue(L, state_idx);
            lua_rawset(L, states_idx);
            lua_pushnil(L);
            lua_rawseti(L, rt_idx, RULE_SLOT_SCRATCH);
        }
        lua_settop(L, dev_idx);
    }
    return 0;
}

static int run(struct rule_engine *e, struct run_ctx *ctx, int64_t ts_ns,
               struct rule_actions *actions)
{
    lua_State *L = e->L;
    int status;

    rule__isolation_tick(e);
    /* Rules in quarantine are skipped here too (and counted once). */
    while (ctx->pos < e->n_committed && (!wants(ctx, e->rules[ctx->pos]) ||
                                         !rule__admitted(e, e->rules[ctx->pos], ctx->device_id)))
        ctx->pos++;
    if (ctx->pos == e->n_committed)
        return 0; /* no Lua at all for inputs no rule wants */

    e->reading = ctx->reading;
    e->device_id = ctx->device_id;
    e->cdev_cache = NULL;
    e->ts_ns = ts_ns;
    e->actions = actions;
    lua_pushcfunction(L, run_rules);
    lua_pushlightuserdata(L, ctx);
    status = lua_pcall(L, 1, 0, 0);
    if (status != LUA_OK) {
        size_t skipped = 0;

        /* The rest would have run (those in quarantine are skipped,
         * and counted so, anyway). */
        for (size_t i = ctx->pos; i < e->n_committed; i++)
            if (wants(ctx, e->rules[i]) && rule__admitted(e, e->rules[i], ctx->device_id))
                skipped++;
        e->stats.errors += skipped;
        if (status == LUA_ERRMEM)
            e->stats.memory_exceeded += skipped;
        ctx->failed += (int)skipped;
        gw_log_limited(&e->log_limit, GW_LOG_ERROR, "rules", "device %s: %zu rule(s) not run: %s",
                       ctx->device_id, skipped,
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
    }
    e->reading = NULL;
    e->device_id = NULL;
    e->cdev_cache = NULL; /* keyed by the run's device_id pointer */
    e->actions = NULL;
    return ctx->failed;
}

int rule_engine_on_reading(struct rule_engine *engine, const struct gw_reading *reading,
                           struct rule_actions *actions)
{
    struct run_ctx ctx = { .e = engine, .kind = RUN_READING, .reading = reading };

    /* Telemetry only: events and status changes go to on_event. */
    if (!reading->device || reading->channel != GW_CHANNEL_TELEMETRY)
        return 0;
    ctx.device = reading->device;
    ctx.device_id = reading->device_id;
    rule__episode_end(engine, reading->device_id);
    return run(engine, &ctx, reading->ts_ns, actions);
}

int rule_engine_on_event(struct rule_engine *engine, const struct gw_reading *event,
                         struct rule_actions *actions)
{
    struct run_ctx ctx = { .e = engine, .kind = RUN_EVENT, .reading = event };
    const struct gw_field *status;

    if (!event->device ||
        (event->channel != GW_CHANNEL_EVENT && event->channel != GW_CHANNEL_STATUS))
        return 0;
    ctx.device = event->device;
    ctx.device_id = event->device_id;
    /* "offline" is the broker speaking for a device that is gone (its
     * MQTT will), not the device: it does not end a silence. */
    status = event->channel == GW_CHANNEL_STATUS ? gw_reading_field(event, "status") : NULL;
    if (!(status && status->value.type == GW_VALUE_STRING &&
          strcmp(status->value.u.string, "offline") == 0))
        rule__episode_end(engine, event->device_id);
    return run(engine, &ctx, event->ts_ns, actions);
}

int64_t rule_engine_silence_threshold(struct rule_engine *engine, const struct gw_device *device,
                                      int64_t heartbeat_ns)
{
    int64_t best = 0;

    for (size_t i = 0; i < engine->n_committed; i++) {
        const struct rule *r = engine->rules[i];
        int64_t t;

        if (!r->on_silence || !device_matches(r, device))
            continue;
        t = silence_threshold(r, heartbeat_ns);
        if (t > 0 && (best == 0 || t < best))
            best = t;
    }
    return best;
}

int rule_engine_on_silence(struct rule_engine *engine, const struct gw_device *device,
                           const struct rule_silence *silence, struct rule_actions *actions)
{
    struct run_ctx ctx = {
        .e = engine,
        .kind = RUN_SILENCE,
        .device = device,
        .silence = silence,
    };

    if (!device || !device->id || !silence)
        return 0;
    ctx.device_id = device->id;
    return run(engine, &ctx, silence->now_ns, actions);
}
