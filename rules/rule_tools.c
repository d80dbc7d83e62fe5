/* rule_tools: `gridgate rules test` and `gridgate rules replay` (the
 * contract and the decisions are in rule_tools.h).
 *
 * The test harness is a plain Lua state per test file, apart from the
 * engine's sandbox: the rules under test run in a real engine, the tests
 * around them only drive it. Everything a test builds in C (devices,
 * cases, emits, the reading being assembled) hangs off its struct trun,
 * so a Lua error anywhere in a t.* function leaks nothing: the run is
 * freed when its test() returns, whatever happened.
 */
#include "rule_tools.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "gw_buf.h"
#include "gw_config.h"
#include "gw_domain.h"
#include "gw_duration.h"
#include "gw_journal.h"
#include "gw_json.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "influx_query.h"
#include "payload.h"
#include "rule_engine.h"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define MAX_TS_MS 4102444800000LL /* 2100-01-01: beyond it a "ms" figure is a mistake */

#define TEST_START_NS (1767225600LL * NS_PER_S) /* 2026-01-01T00:00:00Z */
#define TEST_GRID "110101001001001"
/* The config's rules.heartbeats default (gw_config.c); a test has no config. */
#define TEST_HEARTBEATS GW_DEFAULT_HEARTBEATS
#define TEST_SILENCE_POLL_NS NS_PER_S /* a silent device is looked at every second */
#define TEST_BUDGET 200000000L        /* harness instructions per test (rules not counted) */
#define TEST_HOOK_STEP 1000
#define TEST_MEMORY ((size_t)256 << 20) /* the harness state of one test file */
#define TEST_NO_QUARANTINE 1000000u     /* failures before the engine sets a rule aside */
#define LIST_MAX 5                      /* cases or emits shown in a failure */

#define REPLAY_CONSUMER "replay"
#define REPLAY_QUARANTINE_MAX 10000 /* as the pipeline */
#define REPLAY_LINE_SLACK 4096      /* bytes of a line beyond its payload */

/* ---- shared helpers ------------------------------------------------------ */

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static int grow(void *items, size_t *cap, size_t n, size_t size)
{
    void **p = items;
    size_t ncap;
    void *q;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 8;
    q = reallocarray(*p, ncap, size);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = ncap;
    return 0;
}

/* "2026-11-28T08:00:00.000Z" */
static void format_time(int64_t ts_ns, char *buf, size_t len)
{
    int64_t ms = ts_ns / NS_PER_MS - (ts_ns % NS_PER_MS < 0);
    int64_t secs = ms / 1000 - (ms % 1000 < 0);
    time_t s = (time_t)secs;
    struct tm tm;
    size_t n;

    if (!gmtime_r(&s, &tm)) {
        snprintf(buf, len, "%" PRId64 "ms", ms);
        return;
    }
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(ms - secs * 1000));
}

static bool take_digits(const char **p, int n, int *ret)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *ret = v;
    return true;
}

/* YYYY-MM-DDTHH:MM[:SS[.fff]] and Z, +HH:MM or -HH:MM (UTC without). */
static int parse_iso8601(const char *s, int64_t *ret_ns)
{
    struct tm tm = { 0 }, check;
    int y, mo, d, h, mi, sec = 0, ms = 0, offset_min = 0;
    const char *p = s;
    time_t t;

    if (!take_digits(&p, 4, &y) || *p != '-')
        return -EINVAL;
    p++;
    if (!take_digits(&p, 2, &mo) || *p != '-')
        return -EINVAL;
    p++;
    if (!take_digits(&p, 2, &d) || (*p != 'T' && *p != ' '))
        return -EINVAL;
    p++;
    if (!take_digits(&p, 2, &h) || *p != ':')
        return -EINVAL;
    p++;
    if (!take_digits(&p, 2, &mi))
        return -EINVAL;
    if (*p == ':') {
        p++;
        if (!take_digits(&p, 2, &sec))
            return -EINVAL;
        if (*p == '.') {
            int digits = 0;

            for (p++; isdigit((unsigned char)*p); p++, digits++)
                if (digits < 3)
                    ms = ms * 10 + (*p - '0');
            if (digits == 0)
                return -EINVAL;
            for (; digits < 3; digits++)
                ms *= 10;
        }
    }
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;

        p++;
        if (!take_digits(&p, 2, &oh) || *p != ':')
            return -EINVAL;
        p++;
        if (!take_digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    /* timegm() normalises 2026-02-30 into March: refuse it instead. */
    if (!gmtime_r(&t, &check) || check.tm_mday != d || check.tm_mon != mo - 1)
        return -EINVAL;
    *ret_ns = ((int64_t)t - (int64_t)offset_min * 60) * NS_PER_S + (int64_t)ms * NS_PER_MS;
    return 0;
}

static bool needs_quotes(const char *v)
{
    if (!*v)
        return true;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '"' || *p == '\\' || *p == '=' || *p == ',' ||
            *p == '{' || *p == '}' || *p == ';')
            return true;
    return false;
}

/* A value as it appears in output lines: bare, or in double quotes with C
 * escapes when it holds blanks, quotes or separators. */
static void buf_value(struct gw_buf *b, const char *v)
{
    if (!needs_quotes(v)) {
        gw_buf_puts(b, v);
        return;
    }
    gw_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        switch (*p) {
        case '"':
            gw_buf_puts(b, "\\\"");
            break;
        case '\\':
            gw_buf_puts(b, "\\\\");
            break;
        case '\n':
            gw_buf_puts(b, "\\n");
            break;
        case '\r':
            gw_buf_puts(b, "\\r");
            break;
        case '\t':
            gw_buf_puts(b, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                gw_buf_printf(b, "\\x%02x", *p);
            else
                gw_buf_putc(b, (char)*p);
        }
    }
    gw_buf_putc(b, '"');
}

/* ", key=value" (no comma first); nothing for a NULL value. */
static void buf_kv(struct gw_buf *b, bool *first, const char *key, const char *value)
{
    if (!value)
        return;
    if (!*first)
        gw_buf_puts(b, ", ");
    *first = false;
    gw_buf_printf(b, "%s=", key);
    buf_value(b, value);
}

static void buf_gw_value(struct gw_buf *b, const struct gw_value *v)
{
    switch (v->type) {
    case GW_VALUE_NUMBER:
        gw_buf_printf(b, "%.15g", v->u.number);
        break;
    case GW_VALUE_INTEGER:
        gw_buf_printf(b, "%" PRId64, v->u.integer);
        break;
    case GW_VALUE_BOOL:
        gw_buf_puts(b, v->u.boolean ? "true" : "false");
        break;
    case GW_VALUE_STRING:
        buf_value(b, v->u.string);
        break;
    }
}

/* Which rules failed during one engine call, from the per-rule counters:
 * the engine returns only how many did. */
struct fail_watch {
    struct rule_info *infos;
    uint64_t *before;
    size_t n;
    size_t n_infos; /* as of the last fail_watch_end() */
};

static int fail_watch_init(struct fail_watch *w, const struct rule_engine *engine)
{
    w->n = rule_engine_rule_count(engine);
    w->n_infos = 0;
    w->infos = calloc(w->n ? w->n : 1, sizeof(*w->infos));
    w->before = calloc(w->n ? w->n : 1, sizeof(*w->before));
    return w->infos && w->before ? 0 : -ENOMEM;
}

static void fail_watch_free(struct fail_watch *w)
{
    free(w->infos);
    free(w->before);
    w->infos = NULL;
    w->before = NULL;
}

/* rule_engine_rules() tells how many rules there are, which may be more
 * than it wrote. */
static size_t rules_info(const struct rule_engine *engine, struct rule_info *infos, size_t max)
{
    size_t n = rule_engine_rules(engine, infos, max);

    return n < max ? n : max;
}

static void fail_watch_begin(struct fail_watch *w, const struct rule_engine *engine)
{
    size_t n = rules_info(engine, w->infos, w->n);

    for (size_t i = 0; i < n; i++)
        w->before[i] = w->infos[i].errors;
    for (size_t i = n; i < w->n; i++)
        w->before[i] = 0;
}

static void fail_watch_end(struct fail_watch *w, const struct rule_engine *engine)
{
    w->n_infos = rules_info(engine, w->infos, w->n);
}

/* How often rule i failed between begin and end. */
static uint64_t fail_watch_count(const struct fail_watch *w, size_t i)
{
    return i < w->n_infos ? w->infos[i].errors - w->before[i] : 0;
}

/* ---- rule tests: the model ------------------------------------------------- */

struct harness {
    const char *dir;
    bool verbose;
    FILE *out;
    FILE *err;
    struct rule_limits limits;
    struct gw_duration_table *heartbeats;
    unsigned passed;
    unsigned failed;
};

struct trun;

/* One test file: its own Lua state. */
struct tfile {
    struct harness *h;
    const char *path;
    struct trun *run; /* the test in progress, NULL between tests */
    size_t mem_used;
    long ticks;
    bool tripped;
    char err_where[512]; /* "file:line:" of the last error, set by the message handler */
};

struct tdevice {
    struct gw_device dev;
    struct gw_grid grid;
    int64_t heartbeat_ns;
    bool seen;
    int64_t last_seen_ns; /* the simulated clock at its last reading or event */
    bool has_threshold;
    int64_t threshold_ns; /* the engine's shortest silence for it; 0: none */
};

struct tcase {
    bool shadow;
    char *rule;
    char *subject;
    char *device; /* of the input that opened it */
    char *category;
    char *title;
    char *detail;
    enum gw_severity severity;
    bool has_role;
    enum gw_role role;
    int64_t count;
    bool cleared;
};

struct temit {
    struct rule_action action; /* taken over from the engine's list */
    char *device;
};

/* One test(): its engine, devices, clock and what the rules did. */
struct trun {
    struct tfile *f;
    const char *name;
    struct rule_engine *engine;
    struct rule_actions actions;
    struct fail_watch watch;
    bool *failed_last; /* per rule: failed on the last input */
    struct tdevice **devices;
    size_t n_devices, cap_devices;
    struct tcase *cases;
    size_t n_cases, cap_cases;
    struct temit *emits;
    size_t n_emits, cap_emits;
    int64_t start_ns;
    int64_t now_ns;
    bool started; /* an input or an advance happened: t.at no longer moves the start */
    unsigned n_failures;
    struct gw_reading *pending; /* being built by t.reading / t.event */
};

static void tdevice_free(struct tdevice *d)
{
    if (!d)
        return;
    free(d->dev.id);
    free(d->dev.type);
    free(d->dev.label);
    free(d->grid.id);
    free(d->grid.name);
    free(d->grid.community_id);
    free(d->grid.community);
    free(d->grid.street_id);
    free(d->grid.street);
    for (int i = 0; i < GW_ROLE_COUNT; i++)
        free(d->grid.roster[i]);
    free(d);
}

static void tcase_clear(struct tcase *c)
{
    free(c->rule);
    free(c->subject);
    free(c->device);
    free(c->category);
    free(c->title);
    free(c->detail);
}

static void temit_clear(struct temit *e)
{
    struct rule_actions one = { .items = &e->action, .n = 1, .cap = 1 };

    rule_actions_clear(&one);
    free(e->device);
}

static void drop_pending(struct trun *run)
{
    gw_reading_unref(run->pending);
    run->pending = NULL;
}

static void trun_free(struct trun *run)
{
    if (!run)
        return;
    drop_pending(run);
    rule_actions_free(&run->actions);
    rule_engine_free(run->engine);
    fail_watch_free(&run->watch);
    free(run->failed_last);
    for (size_t i = 0; i < run->n_devices; i++)
        tdevice_free(run->devices[i]);
    free(run->devices);
    for (size_t i = 0; i < run->n_cases; i++)
        tcase_clear(&run->cases[i]);
    free(run->cases);
    for (size_t i = 0; i < run->n_emits; i++)
        temit_clear(&run->emits[i]);
    free(run->emits);
    free(run);
}

static int64_t trun_clock(void *ud)
{
    return ((const struct trun *)ud)->now_ns;
}

/* A fresh engine with the rules of the directory, on the test's clock.
 * NULL with a malloc'd reason in *ret_error. */
static struct trun *trun_new(struct tfile *f, const char *name, char **ret_error)
{
    struct trun *run = calloc(1, sizeof(*run));
    int r;

    *ret_error = NULL;
    if (!run)
        goto nomem;
    run->f = f;
    run->name = name;
    run->start_ns = run->now_ns = TEST_START_NS;
    run->engine = rule_engine_new(&f->h->limits);
    if (!run->engine)
        goto nomem;
    r = rule_engine_load_dir(run->engine, f->h->dir, ret_error);
    if (r < 0) {
        if (!*ret_error && asprintf(ret_error, "%s: %s", f->h->dir, strerror(-r)) < 0)
            *ret_error = NULL;
        trun_free(run);
        return NULL;
    }
    rule_engine_set_clock(run->engine, trun_clock, run);
    if (fail_watch_init(&run->watch, run->engine) < 0)
        goto nomem;
    run->failed_last = calloc(run->watch.n ? run->watch.n : 1, sizeof(*run->failed_last));
    if (!run->failed_last)
        goto nomem;
    return run;
nomem:
    trun_free(run);
    *ret_error = strdup("out of memory");
    return NULL;
}

static struct tdevice *find_device(const struct trun *run, const char *id)
{
    for (size_t i = 0; i < run->n_devices; i++)
        if (strcmp(run->devices[i]->dev.id, id) == 0)
            return run->devices[i];
    return NULL;
}

/* Length of the type prefix of an id ("smoke" of "smoke-1"); 0: none. */
static size_t type_prefix(const char *id)
{
    const char *dash = strchr(id, '-');

    return dash ? (size_t)(dash - id) : 0;
}

static bool replace(char **dst, const char *src, size_t len)
{
    char *copy = strndup(src, len);

    if (!copy)
        return false;
    free(*dst);
    *dst = copy;
    return true;
}

/* Grid id and the community and street ids derived from it (the
 * district's 15-digit codes: street 9, community 12). */
static bool set_grid_id(struct gw_grid *g, const char *id)
{
    size_t len = strlen(id);

    return replace(&g->id, id, len) && replace(&g->community_id, id, len < 12 ? len : 12) &&
           replace(&g->street_id, id, len < 9 ? len : 9);
}

/* A device with the documented defaults, owned by run from the start. */
static struct tdevice *device_new(struct trun *run, const char *id, const char *type,
                                  size_t type_len)
{
    struct tdevice *d;
    struct gw_grid *g;
    bool ok;

    if (grow(&run->devices, &run->cap_devices, run->n_devices, sizeof(*run->devices)) < 0)
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    run->devices[run->n_devices++] = d;
    g = &d->grid;
    ok = replace(&d->dev.id, id, strlen(id)) && replace(&d->dev.type, type, type_len) &&
         set_grid_id(g, TEST_GRID) && replace(&g->name, "test grid", 9) &&
         replace(&g->community, "test community", 14) && replace(&g->street, "test street", 11);
    for (int i = 0; ok && i < GW_ROLE_COUNT; i++)
        ok = asprintf(&g->roster[i], "%s-person", gw_role_name((enum gw_role)i)) >= 0;
    if (!ok)
        return NULL;
    g->type = GW_GRID_RESIDENTIAL;
    g->level = GW_LEVEL_ROUTINE;
    d->dev.grid = g;
    d->dev.lat = NAN;
    d->dev.lon = NAN;
    d->heartbeat_ns = gw_duration_table_get(run->f->h->heartbeats, d->dev.type);
    return d;
}

static struct tcase *find_case(struct trun *run, bool shadow, const char *rule, const char *subject)
{
    for (size_t i = 0; i < run->n_cases; i++) {
        struct tcase *c = &run->cases[i];

        if (c->shadow == shadow && strcmp(c->rule, rule) == 0 && strcmp(c->subject, subject) == 0)
            return c;
    }
    return NULL;
}

static bool dup_opt(char **dst, const char *src)
{
    if (!src)
        return true;
    *dst = strdup(src);
    return *dst != NULL;
}

/* open_case / clear_case into the model, as gw_cases does it to the store. */
static int model_apply(struct trun *run, const struct rule_action *a, const char *device_id)
{
    const char *subject = a->subject ? a->subject : device_id;
    struct tcase *c = find_case(run, a->shadow, a->rule, subject);

    if (a->kind == RULE_ACTION_CLEAR_CASE) {
        if (c)
            c->cleared = true;
        return 0;
    }
    if (c) {
        c->count++;
        if (a->severity > c->severity)
            c->severity = a->severity;
        c->cleared = false;
        return 0;
    }
    if (grow(&run->cases, &run->cap_cases, run->n_cases, sizeof(*run->cases)) < 0)
        return -ENOMEM;
    c = &run->cases[run->n_cases++];
    memset(c, 0, sizeof(*c));
    c->shadow = a->shadow;
    c->severity = a->severity;
    c->has_role = a->has_role;
    c->role = a->role;
    c->count = 1;
    if (!dup_opt(&c->rule, a->rule ? a->rule : "?") || !dup_opt(&c->subject, subject) ||
        !dup_opt(&c->device, device_id) || !dup_opt(&c->category, a->category) ||
        !dup_opt(&c->title, a->title) || !dup_opt(&c->detail, a->detail)) {
        tcase_clear(c);
        run->n_cases--;
        return -ENOMEM;
    }
    return 0;
}

static int take_emit(struct trun *run, struct rule_action *a, const char *device_id)
{
    struct temit *e;

    if (grow(&run->emits, &run->cap_emits, run->n_emits, sizeof(*run->emits)) < 0)
        return -ENOMEM;
    e = &run->emits[run->n_emits];
    e->device = strdup(device_id);
    if (!e->device)
        return -ENOMEM;
    e->action = *a;
    memset(a, 0, sizeof(*a));
    run->n_emits++;
    return 0;
}

/* Everything the engine asked for in its last call; the list is emptied. */
static int apply_actions(struct trun *run, const char *device_id)
{
    int r = 0;

    for (size_t i = 0; i < run->actions.n; i++) {
        struct rule_action *a = &run->actions.items[i];
        int k = a->kind == RULE_ACTION_EMIT ? take_emit(run, a, device_id)
                                            : model_apply(run, a, device_id);
        if (k < 0)
            r = k;
    }
    rule_actions_clear(&run->actions);
    return r;
}

static void input_begin(struct trun *run)
{
    fail_watch_begin(&run->watch, run->engine);
}

static void input_end(struct trun *run)
{
    fail_watch_end(&run->watch, run->engine);
    for (size_t i = 0; i < run->watch.n; i++)
        run->failed_last[i] = fail_watch_count(&run->watch, i) > 0;
}

static int64_t device_threshold(struct trun *run, struct tdevice *d)
{
    if (!d->has_threshold) {
        d->threshold_ns = rule_engine_silence_threshold(run->engine, &d->dev, d->heartbeat_ns);
        d->has_threshold = true;
    }
    return d->threshold_ns;
}

static int64_t silent_since(const struct trun *run, const struct tdevice *d)
{
    return d->seen ? d->last_seen_ns : run->start_ns;
}

/* What the pipeline's deadman scan does, at the simulated clock. */
static int silence_scan(struct trun *run)
{
    int r = 0;

    for (size_t i = 0; i < run->n_devices; i++) {
        struct tdevice *d = run->devices[i];
        int64_t threshold = device_threshold(run, d);
        struct rule_silence s;

        if (threshold <= 0 || run->now_ns - silent_since(run, d) < threshold)
            continue;
        s.now_ns = run->now_ns;
        s.last_seen_ns = d->seen ? d->last_seen_ns : 0;
        s.silent_ns = run->now_ns - silent_since(run, d);
        s.heartbeat_ns = d->heartbeat_ns;
        rule_engine_on_silence(run->engine, &d->dev, &s, &run->actions);
        if (apply_actions(run, d->dev.id) < 0)
            r = -ENOMEM;
    }
    return r;
}

/* Moves the clock to target: straight to the next silence threshold of a
 * device, then a second at a time while one stays silent past it. */
static int advance_to(struct trun *run, int64_t target)
{
    int r = 0;

    while (run->now_ns < target) {
        int64_t next = target;

        for (size_t i = 0; i < run->n_devices; i++) {
            struct tdevice *d = run->devices[i];
            int64_t threshold = device_threshold(run, d), due;

            if (threshold <= 0)
                continue;
            due = silent_since(run, d) + threshold;
            if (due <= run->now_ns)
                due = run->now_ns + TEST_SILENCE_POLL_NS;
            if (due < next)
                next = due;
        }
        run->now_ns = next;
        if (silence_scan(run) < 0)
            r = -ENOMEM;
    }
    return r;
}

/* ---- rule tests: Lua helpers ----------------------------------------------- */

static struct trun *check_run(lua_State *L)
{
    struct trun **slot = lua_touserdata(L, lua_upvalueindex(1));

    if (!slot || !*slot)
        luaL_error(L, "t belongs to a test that has ended");
    /* t:reading{...} does what t.reading{...} does. */
    if (lua_rawequal(L, 1, lua_upvalueindex(2)))
        lua_remove(L, 1);
    return *slot;
}

static int raise_nomem(lua_State *L)
{
    return luaL_error(L, "out of memory");
}

/* Raises for a key of the table at t that is not in allowed. */
static void check_keys(lua_State *L, int t, const char *what, const char *const *allowed)
{
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: keys must be names, not %s", what, luaL_typename(L, -1));
        if (!in_list(allowed, lua_tostring(L, -1))) {
            luaL_Buffer b;
            const char *key = lua_tostring(L, -1);

            luaL_buffinit(L, &b);
            for (const char *const *k = allowed; *k; k++) {
                if (k != allowed)
                    luaL_addstring(&b, ", ");
                luaL_addstring(&b, *k);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown key '%s' (%s)", what, key, lua_tostring(L, -1));
        }
    }
}

/* Pushes t[key] and returns it as a string (left on the stack so that it
 * stays valid), NULL when nil; raises for any other type. */
static const char *opt_string(lua_State *L, int t, const char *key, const char *what)
{
    int type = lua_getfield(L, t, key);

    if (type == LUA_TNIL)
        return NULL;
    if (type != LUA_TSTRING)
        luaL_error(L, "%s: %s must be a string, not %s", what, key, lua_typename(L, type));
    return lua_tostring(L, -1);
}

/* -1 when nil, else 0 or 1; raises for another type. */
static int opt_bool(lua_State *L, int t, const char *key, const char *what)
{
    int type = lua_getfield(L, t, key), v;

    if (type == LUA_TNIL)
        v = -1;
    else if (type == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else
        return luaL_error(L, "%s: %s must be true or false, not %s", what, key,
                          lua_typename(L, type));
    lua_pop(L, 1);
    return v;
}

static bool opt_count(lua_State *L, int t, const char *what, lua_Integer *ret)
{
    int isnum;

    if (lua_getfield(L, t, "count") == LUA_TNIL) {
        lua_pop(L, 1);
        return false;
    }
    *ret = lua_tointegerx(L, -1, &isnum);
    if (!isnum || lua_type(L, -1) != LUA_TNUMBER || *ret < 0)
        luaL_error(L, "%s: count must be a whole number >= 0", what);
    lua_pop(L, 1);
    return true;
}

static int64_t check_duration(lua_State *L, int idx, const char *what)
{
    int64_t ns;

    if (lua_type(L, idx) == LUA_TNUMBER) {
        double s = lua_tonumber(L, idx);

        if (!(s >= 0 && s <= 100.0 * 365 * 86400))
            luaL_error(L, "%s: %f is not a duration in seconds", what, s);
        return (int64_t)llround(s * (double)NS_PER_S);
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (gw_duration_parse(lua_tostring(L, idx), &ns) < 0)
            luaL_error(L, "%s: '%s' is not a duration (90s, 15m, 2h, 1d, 500ms or seconds)", what,
                       lua_tostring(L, idx));
        return ns;
    }
    luaL_error(L, "%s: expected a duration (\"15m\" or seconds), got %s", what,
               luaL_typename(L, idx));
    return 0;
}

/* ms since the epoch, as devices send it. */
static int64_t check_ms(lua_State *L, int idx, const char *what)
{
    double ms = lua_tonumber(L, idx);

    if (lua_type(L, idx) != LUA_TNUMBER || !(ms >= 0 && ms <= (double)MAX_TS_MS))
        luaL_error(L, "%s: expected milliseconds since 1970", what);
    return (int64_t)llround(ms * (double)NS_PER_MS);
}

/* "file:line: " of the Lua code at level, with the whole file name (the
 * short_src Lua puts in its own messages cuts long paths). */
static void where_at(lua_State *L, int level, char *buf, size_t len, bool short_src)
{
    lua_Debug ar;

    buf[0] = '\0';
    if (!lua_getstack(L, level, &ar) || !lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0)
        return;
    snprintf(buf, len, "%s:%d: ", !short_src && ar.source[0] == '@' ? ar.source + 1 : ar.short_src,
             ar.currentline);
}

static void add_field(lua_State *L, struct gw_reading *r, const char *what, int k, int v)
{
    const char *name = lua_tostring(L, k);
    double number;
    int rc;

    if (strlen(name) > PAYLOAD_MAX_NAME)
        luaL_error(L, "%s: field name '%s' is longer than %d bytes (the decoders refuse it)", what,
                   name, PAYLOAD_MAX_NAME);
    switch (lua_type(L, v)) {
    case LUA_TNUMBER:
        /* The JSON decoder makes every number a decimal: so does a test. */
        number = lua_tonumber(L, v);
        if (!isfinite(number))
            luaL_error(L, "%s: field %s is not a finite number", what, name);
        rc = gw_reading_add_number(r, name, number);
        break;
    case LUA_TBOOLEAN:
        rc = gw_reading_add_bool(r, name, lua_toboolean(L, v));
        break;
    case LUA_TSTRING:
        rc = gw_reading_add_string(r, name, lua_tostring(L, v));
        break;
    default:
        luaL_error(L, "%s: field %s is %s (numbers, booleans and strings only)", what, name,
                   luaL_typename(L, v));
        return;
    }
    if (rc < 0)
        raise_nomem(L);
}

/* The keys of table t that are not reserved become fields of r. */
static void add_fields(lua_State *L, struct gw_reading *r, int t, const char *what,
                       const char *const *reserved)
{
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: field names must be strings, not %s", what, luaL_typename(L, -2));
        if (!reserved || !in_list(reserved, lua_tostring(L, -2)))
            add_field(L, r, what, lua_gettop(L) - 1, lua_gettop(L));
        lua_pop(L, 1);
    }
}

/* The device an input names: the test's only device when device= is left
 * out; an unknown one is created with the defaults. */
static struct tdevice *input_device(lua_State *L, struct trun *run, const char *what)
{
    const char *id = opt_string(L, 1, "device", what);
    const char *type = opt_string(L, 1, "type", what);
    struct tdevice *d;

    if (!id) {
        if (run->n_devices != 1)
            luaL_error(L, "%s: device= is required (the test has %d devices)", what,
                       (int)run->n_devices);
        d = run->devices[0];
    } else {
        d = find_device(run, id);
    }
    if (d) {
        if (type && strcmp(type, d->dev.type) != 0)
            luaL_error(L, "%s: device %s is of type %s, not %s", what, d->dev.id, d->dev.type,
                       type);
        return d;
    }
    if (!*id)
        luaL_error(L, "%s: device must not be empty", what);
    if (!type && !type_prefix(id))
        luaL_error(L, "%s: unknown device %s: give type= or declare it with t.device", what, id);
    d = type ? device_new(run, id, type, strlen(type)) : device_new(run, id, id, type_prefix(id));
    if (!d)
        raise_nomem(L);
    return d;
}

/* Runs the rules on the reading run->pending holds and keeps what they did. */
static void feed(lua_State *L, struct trun *run, struct tdevice *d)
{
    struct gw_reading *reading = run->pending;

    run->started = true;
    input_begin(run);
    if (reading->channel == GW_CHANNEL_TELEMETRY)
        rule_engine_on_reading(run->engine, reading, &run->actions);
    else
        rule_engine_on_event(run->engine, reading, &run->actions);
    input_end(run);
    d->seen = true;
    d->last_seen_ns = run->now_ns;
    gw_device_touch(&d->dev, run->now_ns);
    if (reading->channel == GW_CHANNEL_STATUS) {
        const struct gw_field *st = gw_reading_field(reading, "status");

        gw_device_set_online(&d->dev, st && strcmp(st->value.u.string, "online") == 0, run->now_ns);
    }
    if (apply_actions(run, d->dev.id) < 0)
        raise_nomem(L);
    drop_pending(run);
}

/* ---- rule tests: t -------------------------------------------------------- */

static const char *const device_keys[] = { "id", "type", "heartbeat", "label", "grid", NULL };
static const char *const grid_keys[] = { "id",     "name",      "type",
                                         "level",  "community", "community_id",
                                         "street", "street_id", "roster",
                                         NULL };
/* Grid names a test may set, in the order of struct gw_grid's fields. */
static const char *const grid_texts[] = { "name",   "community", "community_id",
                                          "street", "street_id", NULL };

static char **grid_text_slot(struct gw_grid *g, int i)
{
    char **slots[] = { &g->name, &g->community, &g->community_id, &g->street, &g->street_id };

    return slots[i];
}

static int t_device(lua_State *L)
{
    struct trun *run = check_run(L);
    const char *id, *type, *label, *grid_id = NULL, *texts[5] = { NULL };
    const char *roster[GW_ROLE_COUNT] = { NULL };
    bool has_roster = false;
    int grid_type = -1, grid_level = -1;
    int64_t heartbeat = -1;
    struct tdevice *d;
    bool ok = true;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 40, NULL);
    check_keys(L, 1, "t.device", device_keys);
    id = opt_string(L, 1, "id", "t.device");
    if (!id || !*id)
        return luaL_error(L, "t.device: id is required");
    if (find_device(run, id))
        return luaL_error(L,
                          "t.device: device %s exists already (declare devices before their "
                          "first reading)",
                          id);
    type = opt_string(L, 1, "type", "t.device");
    if (type && !*type)
        return luaL_error(L, "t.device: type must not be empty");
    if (!type && !type_prefix(id))
        return luaL_error(L,
                          "t.device: no type= and no type prefix in the id '%s' (as in "
                          "smoke-1)",
                          id);
    label = opt_string(L, 1, "label", "t.device");
    if (lua_getfield(L, 1, "heartbeat") != LUA_TNIL) {
        heartbeat = check_duration(L, -1, "t.device: heartbeat");
        if (heartbeat <= 0)
            return luaL_error(L, "t.device: heartbeat must be longer than 0");
    }
    switch (lua_getfield(L, 1, "grid")) {
    case LUA_TNIL:
        break;
    case LUA_TSTRING:
        grid_id = lua_tostring(L, -1);
        break;
    case LUA_TTABLE: {
        int g = lua_gettop(L);
        const char *s;

        check_keys(L, g, "t.device: grid", grid_keys);
        grid_id = opt_string(L, g, "id", "t.device: grid");
        for (int i = 0; grid_texts[i]; i++)
            texts[i] = opt_string(L, g, grid_texts[i], "t.device: grid");
        s = opt_string(L, g, "type", "t.device: grid");
        if (s && (grid_type = gw_grid_type_parse(s)) < 0)
            return luaL_error(L,
                              "t.device: unknown grid type '%s' (residential, commercial, "
                              "institution, crowded)",
                              s);
        s = opt_string(L, g, "level", "t.device: grid");
        if (s && (grid_level = gw_grid_level_parse(s)) < 0)
            return luaL_error(L,
                              "t.device: unknown grid level '%s' (routine, prevention, "
                              "attention, governance)",
                              s);
        switch (lua_getfield(L, g, "roster")) {
        case LUA_TNIL:
            break;
        case LUA_TTABLE: {
            int t = lua_gettop(L);

            has_roster = true;
            lua_pushnil(L);
            while (lua_next(L, t)) {
                int role;

                if (lua_type(L, -2) != LUA_TSTRING ||
                    (role = gw_role_parse(lua_tostring(L, -2))) < 0)
                    return luaL_error(L,
                                      "t.device: roster: unknown role '%s' (manager, assistant, "
                                      "police, supervisor, judicial, firefighter, "
                                      "party_secretary)",
                                      luaL_tolstring(L, -2, NULL));
                if (lua_type(L, -1) != LUA_TSTRING)
                    return luaL_error(L, "t.device: roster: %s must be a name",
                                      lua_tostring(L, -2));
                /* The string stays valid: the roster table holds it. */
                roster[role] = lua_tostring(L, -1);
                lua_pop(L, 1);
            }
            break;
        }
        default:
            return luaL_error(L, "t.device: grid.roster must be a table of role = name");
        }
        break;
    }
    default:
        return luaL_error(L, "t.device: grid must be a grid id or a table");
    }

    d = type ? device_new(run, id, type, strlen(type)) : device_new(run, id, id, type_prefix(id));
    if (!d)
        return raise_nomem(L);
    if (heartbeat > 0)
        d->heartbeat_ns = heartbeat;
    if (label)
        ok = replace(&d->dev.label, label, strlen(label));
    if (grid_id)
        ok = ok && set_grid_id(&d->grid, grid_id);
    for (int i = 0; ok && i < 5; i++)
        if (texts[i])
            ok = replace(grid_text_slot(&d->grid, i), texts[i], strlen(texts[i]));
    if (grid_type >= 0)
        d->grid.type = (enum gw_grid_type)grid_type;
    if (grid_level >= 0)
        d->grid.level = (enum gw_grid_level)grid_level;
    for (int i = 0; ok && has_roster && i < GW_ROLE_COUNT; i++) {
        free(d->grid.roster[i]);
        d->grid.roster[i] = NULL;
        if (roster[i])
            ok = replace(&d->grid.roster[i], roster[i], strlen(roster[i]));
    }
    return ok ? 0 : raise_nomem(L);
}

static int64_t check_time(lua_State *L, int idx, const char *what)
{
    int64_t ns;

    if (lua_type(L, idx) == LUA_TNUMBER)
        return check_ms(L, idx, what);
    if (lua_type(L, idx) != LUA_TSTRING || parse_iso8601(lua_tostring(L, idx), &ns) < 0)
        return luaL_error(L, "%s: expected an ISO 8601 time (2026-11-28T08:00:00Z) or milliseconds",
                          what);
    return ns;
}

static void advance(lua_State *L, struct trun *run, int64_t target)
{
    int r;

    run->started = true;
    input_begin(run);
    r = advance_to(run, target);
    input_end(run);
    if (r < 0)
        raise_nomem(L);
}

static int t_at(lua_State *L)
{
    struct trun *run = check_run(L);
    int64_t ns = check_time(L, 1, "t.at");

    if (!run->started) {
        run->start_ns = run->now_ns = ns;
        return 0;
    }
    if (ns < run->now_ns) {
        char now[40];

        format_time(run->now_ns, now, sizeof(now));
        return luaL_error(L, "t.at: the clock only moves forward (it is %s)", now);
    }
    advance(L, run, ns);
    return 0;
}

static int t_advance(lua_State *L)
{
    struct trun *run = check_run(L);
    int64_t d = check_duration(L, 1, "t.advance");

    if (run->now_ns > INT64_MAX - d)
        return luaL_error(L, "t.advance: too far");
    advance(L, run, run->now_ns + d);
    return 0;
}

static const char *const reading_reserved[] = { "device", "type", "ts", "fields", NULL };

/* The optional ts= (ms) and fields= of an input. */
static void input_extras(lua_State *L, const char *what, bool *ret_has_ts, int64_t *ret_ts,
                         int *ret_fields)
{
    *ret_has_ts = lua_getfield(L, 1, "ts") != LUA_TNIL;
    if (*ret_has_ts)
        *ret_ts = check_ms(L, -1, what);
    *ret_fields = 0;
    switch (lua_getfield(L, 1, "fields")) {
    case LUA_TNIL:
        break;
    case LUA_TTABLE:
        *ret_fields = lua_gettop(L);
        break;
    default:
        luaL_error(L, "%s: fields must be a table", what);
    }
}

static struct gw_reading *pending_new(lua_State *L, struct trun *run, struct tdevice *d,
                                      enum gw_channel channel, bool has_ts, int64_t ts)
{
    drop_pending(run);
    run->pending = gw_reading_new(d->dev.id, channel, has_ts ? ts : run->now_ns);
    if (!run->pending)
        raise_nomem(L);
    run->pending->device = &d->dev;
    run->pending->ts_from_device = has_ts;
    return run->pending;
}

static int t_reading(lua_State *L)
{
    struct trun *run = check_run(L);
    struct gw_reading *r;
    struct tdevice *d;
    bool has_ts;
    int64_t ts = 0;
    int fields;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 20, NULL);
    d = input_device(L, run, "t.reading");
    input_extras(L, "t.reading", &has_ts, &ts, &fields);
    r = pending_new(L, run, d, GW_CHANNEL_TELEMETRY, has_ts, ts);
    add_fields(L, r, 1, "t.reading", reading_reserved);
    if (fields)
        add_fields(L, r, fields, "t.reading: fields", NULL);
    feed(L, run, d);
    return 0;
}

static const char *const left_open_keys[] = { "rule", "subject", "severity", NULL };

/* t.left_open{ rule =, subject =, severity = }: a case the store holds
 * open when the gateway starts, opened before a restart. The gateway tells
 * the engine of every such case; so does this. */
static int t_left_open(lua_State *L)
{
    struct trun *run = check_run(L);
    struct rule_action a = { .kind = RULE_ACTION_OPEN_CASE, .severity = GW_SEVERITY_MINOR };
    const char *rule, *subject, *severity;
    int r;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 10, NULL);
    check_keys(L, 1, "t.left_open", left_open_keys);
    rule = opt_string(L, 1, "rule", "t.left_open");
    subject = opt_string(L, 1, "subject", "t.left_open");
    severity = opt_string(L, 1, "severity", "t.left_open");
    if (!rule || !subject)
        return luaL_error(L, "t.left_open: rule and subject are required");
    if (severity) {
        int sev = gw_severity_parse(severity);
        if (sev < 0)
            return luaL_error(L, "t.left_open: severity must be info, minor, major or critical");
        a.severity = (enum gw_severity)sev;
    }
    r = rule_engine_note_open_case(run->engine, rule, subject);
    if (r == -ENOENT)
        return luaL_error(L, "t.left_open: no rule named '%s' is loaded", rule);
    a.rule = (char *)rule;
    a.subject = (char *)subject;
    a.category = (char *)rule;
    a.title = (char *)rule;
    if (r < 0 || model_apply(run, &a, subject) < 0)
        return raise_nomem(L);
    return 0;
}

static const char *const event_reserved[] = { "device", "type", "ts", "fields", "kind", NULL };
static const char *const status_keys[] = { "device", "type", "ts", "kind", "status", NULL };

static int t_event(lua_State *L)
{
    struct trun *run = check_run(L);
    const char *kind, *status = NULL;
    struct gw_reading *r;
    struct tdevice *d;
    bool has_ts, is_status;
    int64_t ts = 0;
    int fields;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 20, NULL);
    kind = opt_string(L, 1, "kind", "t.event");
    is_status = kind && strcmp(kind, "status") == 0;
    if (kind && !is_status && strcmp(kind, "event") != 0)
        return luaL_error(L, "t.event: kind must be \"event\" or \"status\", not '%s'", kind);
    if (is_status) {
        check_keys(L, 1, "t.event (status)", status_keys);
        status = opt_string(L, 1, "status", "t.event");
        if (!status || (strcmp(status, "online") != 0 && strcmp(status, "offline") != 0))
            return luaL_error(L, "t.event: a status event needs status = \"online\" or "
                                 "\"offline\"");
    }
    d = input_device(L, run, "t.event");
    input_extras(L, "t.event", &has_ts, &ts, &fields);
    r = pending_new(L, run, d, is_status ? GW_CHANNEL_STATUS : GW_CHANNEL_EVENT, has_ts, ts);
    if (is_status) {
        if (gw_reading_add_string(r, "status", status) < 0)
            return raise_nomem(L);
    } else {
        add_fields(L, r, 1, "t.event", event_reserved);
        if (fields)
            add_fields(L, r, fields, "t.event: fields", NULL);
    }
    feed(L, run, d);
    return 0;
}

/* ---- rule tests: expectations -------------------------------------------- */

struct texpect {
    const char *rule, *subject, *device, *category, *title, *detail;
    int severity; /* -1: any */
    int role;     /* -1: any */
    bool has_count;
    lua_Integer count;
    int cleared; /* -1: any */
    bool shadow;
};

static const char *const case_keys[] = { "rule",     "subject", "device", "category",
                                         "severity", "role",    "title",  "detail",
                                         "count",    "cleared", "shadow", NULL };

static void read_expect(lua_State *L, const char *what, struct texpect *e)
{
    const char *s;

    memset(e, 0, sizeof(*e));
    e->severity = e->role = e->cleared = -1;
    if (lua_isnoneornil(L, 1))
        return;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 20, NULL);
    check_keys(L, 1, what, case_keys);
    lua_settop(L, 1);
    e->rule = opt_string(L, 1, "rule", what);
    e->subject = opt_string(L, 1, "subject", what);
    e->device = opt_string(L, 1, "device", what);
    e->category = opt_string(L, 1, "category", what);
    e->title = opt_string(L, 1, "title", what);
    e->detail = opt_string(L, 1, "detail", what);
    s = opt_string(L, 1, "severity", what);
    if (s && (e->severity = gw_severity_parse(s)) < 0)
        luaL_error(L, "%s: unknown severity '%s' (info, minor, major, critical)", what, s);
    s = opt_string(L, 1, "role", what);
    if (s && (e->role = gw_role_parse(s)) < 0)
        luaL_error(L,
                   "%s: unknown role '%s' (manager, assistant, police, supervisor, judicial, "
                   "firefighter, party_secretary)",
                   what, s);
    e->has_count = opt_count(L, 1, what, &e->count);
    e->cleared = opt_bool(L, 1, "cleared", what);
    e->shadow = opt_bool(L, 1, "shadow", what) == 1;
}

static bool text_eq(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

static bool case_matches(const struct tcase *c, const struct texpect *e)
{
    return c->shadow == e->shadow && text_eq(e->rule, c->rule) && text_eq(e->subject, c->subject) &&
           text_eq(e->device, c->device) && text_eq(e->category, c->category) &&
           text_eq(e->title, c->title) && text_eq(e->detail, c->detail) &&
           (e->severity < 0 || (int)c->severity == e->severity) &&
           (e->role < 0 || (c->has_role && (int)c->role == e->role)) &&
           (!e->has_count || c->count == e->count) && (e->cleared < 0 || c->cleared == e->cleared);
}

static void describe_expect(struct gw_buf *b, const struct texpect *e)
{
    bool first = true;

    gw_buf_putc(b, '{');
    buf_kv(b, &first, "rule", e->rule);
    buf_kv(b, &first, "subject", e->subject);
    buf_kv(b, &first, "device", e->device);
    buf_kv(b, &first, "category", e->category);
    buf_kv(b, &first, "severity", e->severity >= 0 ? gw_severity_name(e->severity) : NULL);
    buf_kv(b, &first, "role", e->role >= 0 ? gw_role_name(e->role) : NULL);
    buf_kv(b, &first, "title", e->title);
    buf_kv(b, &first, "detail", e->detail);
    if (e->has_count) {
        char n[32];

        snprintf(n, sizeof(n), "%lld", (long long)e->count);
        buf_kv(b, &first, "count", n);
    }
    buf_kv(b, &first, "cleared", e->cleared < 0 ? NULL : e->cleared ? "true" : "false");
    gw_buf_putc(b, '}');
}

/* "case {rule=x}", "no shadow case {rule=x}", "any case", "no case"...
 * (shadow is said in words, not as a key). */
static void describe_wanted(struct gw_buf *b, bool no, const char *what, const struct texpect *e)
{
    struct gw_buf keys = GW_BUF_INIT;
    bool any;

    describe_expect(&keys, e);
    any = !keys.data || strcmp(keys.data, "{}") == 0;
    gw_buf_printf(b, "%s%s%s", no ? "no " : any ? "any " : "", e->shadow ? "shadow " : "", what);
    if (!any)
        gw_buf_printf(b, " %s", keys.data);
    gw_buf_free(&keys);
}

static void describe_case(struct gw_buf *b, const struct tcase *c, const struct texpect *e)
{
    bool first = true;
    char n[32];

    gw_buf_putc(b, '{');
    buf_kv(b, &first, "rule", c->rule);
    buf_kv(b, &first, "subject", c->subject);
    buf_kv(b, &first, "device", e->device ? c->device : NULL);
    buf_kv(b, &first, "category", c->category);
    buf_kv(b, &first, "severity", gw_severity_name(c->severity));
    buf_kv(b, &first, "role", c->has_role ? gw_role_name(c->role) : NULL);
    buf_kv(b, &first, "title", e->title ? (c->title ? c->title : "") : NULL);
    buf_kv(b, &first, "detail", e->detail ? (c->detail ? c->detail : "") : NULL);
    snprintf(n, sizeof(n), "%lld", (long long)c->count);
    buf_kv(b, &first, "count", n);
    buf_kv(b, &first, "cleared", c->cleared ? "true" : "false");
    buf_kv(b, &first, "shadow", c->shadow ? "true" : NULL);
    gw_buf_putc(b, '}');
}

/* The cases a failed expectation is compared with: those of its rule and
 * subject if any, else every case (of the same kind, live or shadow). */
static void describe_nearest(struct gw_buf *b, const struct trun *run, const struct texpect *e,
                             bool (*pick)(const struct tcase *, const struct texpect *))
{
    size_t shown = 0, total = 0;

    for (int pass = 0; pass < 2 && total == 0; pass++) {
        for (size_t i = 0; i < run->n_cases; i++) {
            const struct tcase *c = &run->cases[i];

            if (c->shadow != e->shadow)
                continue;
            if (pass == 0 &&
                (pick ? !pick(c, e)
                      : !text_eq(e->rule, c->rule) || !text_eq(e->subject, c->subject)))
                continue;
            total++;
            if (shown == LIST_MAX)
                continue;
            if (shown++)
                gw_buf_puts(b, "; ");
            describe_case(b, c, e);
        }
    }
    if (total == 0)
        gw_buf_puts(b, e->shadow ? "no shadow case" : "no case");
    else if (total > shown)
        gw_buf_printf(b, " and %zu more", total - shown);
}

/* Prints one failed expectation. where: "file:line: " of the t.expect_*. */
static void report(struct trun *run, const char *where, const struct gw_buf *expected,
                   const struct gw_buf *got)
{
    fprintf(run->f->h->out, "%stest %s: expected %s, got %s\n", where, run->name,
            expected->data ? expected->data : "?", got->data ? got->data : "?");
    run->n_failures++;
}

static int t_expect_case(lua_State *L)
{
    struct trun *run = check_run(L);
    struct gw_buf expected = GW_BUF_INIT, got = GW_BUF_INIT;
    struct texpect e;
    char where[600];

    read_expect(L, "t.expect_case", &e);
    for (size_t i = 0; i < run->n_cases; i++)
        if (case_matches(&run->cases[i], &e))
            return 0;
    where_at(L, 1, where, sizeof(where), false);
    describe_wanted(&expected, false, "case", &e);
    describe_nearest(&got, run, &e, NULL);
    report(run, where, &expected, &got);
    gw_buf_free(&expected);
    gw_buf_free(&got);
    return 0;
}

static int t_expect_no_case(lua_State *L)
{
    struct trun *run = check_run(L);
    struct gw_buf expected = GW_BUF_INIT, got = GW_BUF_INIT;
    struct texpect e;
    char where[600];

    read_expect(L, "t.expect_no_case", &e);
    for (size_t i = 0; i < run->n_cases; i++)
        if (case_matches(&run->cases[i], &e))
            goto fail;
    return 0;
fail:
    where_at(L, 1, where, sizeof(where), false);
    describe_wanted(&expected, true, "case", &e);
    describe_nearest(&got, run, &e, case_matches);
    report(run, where, &expected, &got);
    gw_buf_free(&expected);
    gw_buf_free(&got);
    return 0;
}

static int t_expect_cleared(lua_State *L)
{
    struct trun *run = check_run(L);
    struct gw_buf expected = GW_BUF_INIT, got = GW_BUF_INIT;
    struct texpect e;
    char where[600];

    read_expect(L, "t.expect_cleared", &e);
    if (e.cleared >= 0)
        return luaL_error(L, "t.expect_cleared: cleared= is implied");
    e.cleared = 1;
    for (size_t i = 0; i < run->n_cases; i++)
        if (case_matches(&run->cases[i], &e))
            return 0;
    where_at(L, 1, where, sizeof(where), false);
    e.cleared = -1;
    describe_wanted(&expected, false, "cleared case", &e);
    describe_nearest(&got, run, &e, case_matches);
    if (got.data && strncmp(got.data, "no ", 3) == 0) {
        gw_buf_reset(&got);
        describe_nearest(&got, run, &e, NULL);
    }
    report(run, where, &expected, &got);
    gw_buf_free(&expected);
    gw_buf_free(&got);
    return 0;
}

static const char *const emit_keys[] = { "measurement", "rule",  "device", "fields",
                                         "tags",        "count", "shadow", NULL };

struct temit_expect {
    const char *measurement, *rule, *device;
    int fields; /* stack index of the table, 0: none */
    int tags;
    bool has_count;
    lua_Integer count;
    bool shadow;
};

static bool lua_value_eq(lua_State *L, int idx, const struct gw_value *v)
{
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (v->type == GW_VALUE_NUMBER)
            return lua_tonumber(L, idx) == v->u.number;
        if (v->type == GW_VALUE_INTEGER)
            return lua_isinteger(L, idx) ? lua_tointeger(L, idx) == v->u.integer
                                         : lua_tonumber(L, idx) == (double)v->u.integer;
        return false;
    case LUA_TBOOLEAN:
        return v->type == GW_VALUE_BOOL && lua_toboolean(L, idx) == v->u.boolean;
    case LUA_TSTRING:
        return v->type == GW_VALUE_STRING && strcmp(lua_tostring(L, idx), v->u.string) == 0;
    default:
        return false;
    }
}

static bool emit_matches(lua_State *L, const struct temit *m, const struct temit_expect *e)
{
    const struct rule_action *a = &m->action;
    bool ok = true;

    if (a->shadow != e->shadow || !text_eq(e->measurement, a->measurement) ||
        !text_eq(e->rule, a->rule) || !text_eq(e->device, m->device))
        return false;
    if (e->fields) {
        lua_pushnil(L);
        while (ok && lua_next(L, e->fields)) {
            const char *name = lua_tostring(L, -2);
            bool found = false;

            for (size_t i = 0; i < a->n_fields && !found; i++)
                found = strcmp(a->fields[i].name, name) == 0 &&
                        lua_value_eq(L, -1, &a->fields[i].value);
            ok = found;
            lua_pop(L, 1);
        }
        if (!ok)
            lua_pop(L, 1); /* the key lua_next left */
    }
    if (ok && e->tags) {
        lua_pushnil(L);
        while (ok && lua_next(L, e->tags)) {
            const char *key = lua_tostring(L, -2), *value = lua_tostring(L, -1);
            bool found = false;

            for (size_t i = 0; i < a->n_tags && !found; i++)
                found = strcmp(a->tags[i].key, key) == 0 && strcmp(a->tags[i].value, value) == 0;
            ok = found;
            lua_pop(L, 1);
        }
        if (!ok)
            lua_pop(L, 1);
    }
    return ok;
}

/* A table of name = value given in an expectation; every key a string,
 * every value a number, boolean or string (strings only for tags). */
static int opt_table(lua_State *L, const char *key, const char *what, bool strings_only)
{
    int t;

    if (lua_getfield(L, 1, key) == LUA_TNIL)
        return 0;
    if (!lua_istable(L, -1))
        luaL_error(L, "%s: %s must be a table", what, key);
    t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int type = lua_type(L, -1);

        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: %s: keys must be names", what, key);
        if (strings_only ? type != LUA_TSTRING
                         : type != LUA_TSTRING && type != LUA_TNUMBER && type != LUA_TBOOLEAN)
            luaL_error(L, "%s: %s.%s cannot be %s", what, key, lua_tostring(L, -2),
                       lua_typename(L, type));
        lua_pop(L, 1);
    }
    return t;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* {a=1, b=true} of an expectation's table, keys sorted. */
static void describe_lua_table(lua_State *L, struct gw_buf *b, int t)
{
    const char *keys[64];
    size_t n = 0;

    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (n < sizeof(keys) / sizeof(keys[0]))
            keys[n++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(keys, n, sizeof(keys[0]), cmp_str);
    gw_buf_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            gw_buf_puts(b, ", ");
        gw_buf_printf(b, "%s=", keys[i]);
        lua_getfield(L, t, keys[i]);
        if (lua_type(L, -1) == LUA_TSTRING)
            buf_value(b, lua_tostring(L, -1));
        else if (lua_type(L, -1) == LUA_TBOOLEAN)
            gw_buf_puts(b, lua_toboolean(L, -1) ? "true" : "false");
        else if (lua_isinteger(L, -1))
            gw_buf_printf(b, "%lld", (long long)lua_tointeger(L, -1));
        else
            gw_buf_printf(b, "%.15g", lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    gw_buf_putc(b, '}');
}

static int cmp_field(const void *a, const void *b)
{
    return strcmp((*(const struct gw_field *const *)a)->name,
                  (*(const struct gw_field *const *)b)->name);
}

static int cmp_tag(const void *a, const void *b)
{
    return strcmp((*(const struct rule_tag *const *)a)->key,
                  (*(const struct rule_tag *const *)b)->key);
}

/* Fields and tags sorted by name: the rule's table gave them in Lua's
 * hash order, which changes from run to run. */
static void describe_emit(struct gw_buf *b, const struct temit *m)
{
    const struct rule_action *a = &m->action;
    const struct gw_field *fields[64];
    const struct rule_tag *tags[64];
    size_t n_fields = a->n_fields < 64 ? a->n_fields : 64;
    size_t n_tags = a->n_tags < 64 ? a->n_tags : 64;
    bool first = true;

    for (size_t i = 0; i < n_fields; i++)
        fields[i] = &a->fields[i];
    for (size_t i = 0; i < n_tags; i++)
        tags[i] = &a->tags[i];
    qsort(fields, n_fields, sizeof(fields[0]), cmp_field);
    qsort(tags, n_tags, sizeof(tags[0]), cmp_tag);
    gw_buf_putc(b, '{');
    buf_kv(b, &first, "measurement", a->measurement);
    buf_kv(b, &first, "rule", a->rule);
    buf_kv(b, &first, "device", m->device);
    gw_buf_puts(b, ", fields={");
    for (size_t i = 0; i < n_fields; i++) {
        gw_buf_printf(b, "%s%s=", i ? ", " : "", fields[i]->name);
        buf_gw_value(b, &fields[i]->value);
    }
    gw_buf_putc(b, '}');
    if (n_tags) {
        gw_buf_puts(b, ", tags={");
        for (size_t i = 0; i < n_tags; i++) {
            gw_buf_printf(b, "%s%s=", i ? ", " : "", tags[i]->key);
            buf_value(b, tags[i]->value);
        }
        gw_buf_putc(b, '}');
    }
    if (a->shadow)
        gw_buf_puts(b, ", shadow=true");
    gw_buf_putc(b, '}');
}

static int t_expect_emit(lua_State *L)
{
    struct trun *run = check_run(L);
    struct gw_buf expected = GW_BUF_INIT, got = GW_BUF_INIT;
    struct temit_expect e = { 0 };
    size_t matched = 0, shown = 0, total = 0;
    const char *what = "t.expect_emit";
    bool first = true;
    char where[600];

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 20, NULL);
    lua_settop(L, 1);
    check_keys(L, 1, what, emit_keys);
    e.measurement = opt_string(L, 1, "measurement", what);
    e.rule = opt_string(L, 1, "rule", what);
    e.device = opt_string(L, 1, "device", what);
    e.fields = opt_table(L, "fields", what, false);
    e.tags = opt_table(L, "tags", what, true);
    e.has_count = opt_count(L, 1, what, &e.count);
    e.shadow = opt_bool(L, 1, "shadow", what) == 1;
    for (size_t i = 0; i < run->n_emits; i++)
        if (emit_matches(L, &run->emits[i], &e))
            matched++;
    if (e.has_count ? (lua_Integer)matched == e.count : matched > 0)
        return 0;

    where_at(L, 1, where, sizeof(where), false);
    gw_buf_puts(&expected, "emit {");
    buf_kv(&expected, &first, "measurement", e.measurement);
    buf_kv(&expected, &first, "rule", e.rule);
    buf_kv(&expected, &first, "device", e.device);
    if (e.fields) {
        gw_buf_puts(&expected, first ? "fields=" : ", fields=");
        describe_lua_table(L, &expected, e.fields);
        first = false;
    }
    if (e.tags) {
        gw_buf_puts(&expected, first ? "tags=" : ", tags=");
        describe_lua_table(L, &expected, e.tags);
        first = false;
    }
    buf_kv(&expected, &first, "shadow", e.shadow ? "true" : NULL);
    gw_buf_putc(&expected, '}');
    if (e.has_count)
        gw_buf_printf(&expected, " %lld times", (long long)e.count);
    if (e.has_count && matched > 0) {
        gw_buf_printf(&got, "%zu times", matched);
    } else {
        for (size_t i = 0; i < run->n_emits; i++) {
            if (run->emits[i].action.shadow != e.shadow)
                continue;
            total++;
            if (shown == LIST_MAX)
                continue;
            if (shown++)
                gw_buf_puts(&got, "; ");
            describe_emit(&got, &run->emits[i]);
        }
        if (total == 0)
            gw_buf_puts(&got, "no emit");
        else if (total > shown)
            gw_buf_printf(&got, " and %zu more", total - shown);
    }
    report(run, where, &expected, &got);
    gw_buf_free(&expected);
    gw_buf_free(&got);
    return 0;
}

static const char *const error_keys[] = { "rule", NULL };

static int t_expect_error(lua_State *L)
{
    struct trun *run = check_run(L);
    struct gw_buf expected = GW_BUF_INIT, got = GW_BUF_INIT;
    const char *rule = NULL;
    size_t n, index = SIZE_MAX, n_failed = 0;
    char where[600];

    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        check_keys(L, 1, "t.expect_error", error_keys);
        rule = opt_string(L, 1, "rule", "t.expect_error");
    }
    n = rules_info(run->engine, run->watch.infos, run->watch.n);
    for (size_t i = 0; i < n; i++) {
        if (run->failed_last[i])
            n_failed++;
        if (rule && strcmp(run->watch.infos[i].name, rule) == 0)
            index = i;
    }
    if (rule && index == SIZE_MAX)
        return luaL_error(L, "t.expect_error: no rule named '%s' is loaded", rule);
    if (rule ? run->failed_last[index] : n_failed > 0)
        return 0;

    where_at(L, 1, where, sizeof(where), false);
    if (rule) {
        gw_buf_puts(&expected, "rule ");
        buf_value(&expected, rule);
        gw_buf_puts(&expected, " to fail on the last input");
    } else {
        gw_buf_puts(&expected, "a rule to fail on the last input");
    }
    if (n_failed == 0) {
        gw_buf_puts(&got, "no rule failed");
    } else {
        gw_buf_puts(&got, n_failed == 1 ? "rule " : "rules ");
        for (size_t i = 0, k = 0; i < n; i++) {
            if (!run->failed_last[i])
                continue;
            if (k++)
                gw_buf_puts(&got, ", ");
            buf_value(&got, run->watch.infos[i].name);
        }
        gw_buf_puts(&got, " failed");
    }
    report(run, where, &expected, &got);
    gw_buf_free(&expected);
    gw_buf_free(&got);
    return 0;
}

static const luaL_Reg t_functions[] = {
    { "device", t_device },
    { "at", t_at },
    { "reading", t_reading },
    { "event", t_event },
    { "advance", t_advance },
    { "left_open", t_left_open },
    { "expect_case", t_expect_case },
    { "expect_no_case", t_expect_no_case },
    { "expect_cleared", t_expect_cleared },
    { "expect_emit", t_expect_emit },
    { "expect_error", t_expect_error },
    { NULL, NULL },
};

/* ---- rule tests: files and test() ------------------------------------------ */

static struct tfile *tfile_of(lua_State *L)
{
    return *(struct tfile **)lua_getextraspace(L);
}

/* The allocator of a harness state: a cap, as in Lua's own l_alloc. */
static void *tfile_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct tfile *f = ud;
    void *p;

    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        f->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && f->mem_used + (nsize - osize) > TEST_MEMORY)
        return NULL;
    p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    f->mem_used = f->mem_used - osize + nsize;
    return p;
}

/* An endless loop in a test ends the test, not the run; once tripped the
 * hook fires at every instruction so a pcall in the test cannot hide it. */
static void tfile_hook(lua_State *L, lua_Debug *ar)
{
    struct tfile *f = tfile_of(L);

    (void)ar;
    if (!f->tripped) {
        f->ticks += TEST_HOOK_STEP;
        if (f->ticks <= TEST_BUDGET)
            return;
        f->tripped = true;
        lua_sethook(L, tfile_hook, LUA_MASKCOUNT, 1);
    }
    luaL_error(L, "the test ran over its budget of %I Lua instructions", (lua_Integer)TEST_BUDGET);
}

static void budget_reset(lua_State *L, struct tfile *f)
{
    f->ticks = 0;
    f->tripped = false;
    lua_sethook(L, tfile_hook, LUA_MASKCOUNT, TEST_HOOK_STEP);
}

/* Message handler: notes where the error happened (the innermost Lua code
 * of a file) and returns the message without its own copy of that place. */
static int test_msgh(lua_State *L)
{
    struct tfile *f = tfile_of(L);
    char short_where[600];
    const char *msg;
    size_t len;

    if (lua_type(L, 1) == LUA_TSTRING)
        msg = lua_tostring(L, 1);
    else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
        msg = lua_tostring(L, -1);
    else
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    f->err_where[0] = '\0';
    for (int level = 1; !f->err_where[0]; level++) {
        lua_Debug ar;

        if (!lua_getstack(L, level, &ar))
            break;
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source[0] != '@')
            continue;
        where_at(L, level, f->err_where, sizeof(f->err_where), false);
        where_at(L, level, short_where, sizeof(short_where), true);
        len = strlen(short_where);
        if (strncmp(msg, short_where, len) == 0)
            msg += len;
    }
    lua_pushstring(L, msg);
    return 1;
}

static void print_test_error(struct tfile *f, const char *test_where, const char *name, int status,
                             lua_State *L)
{
    const char *msg =
        status == LUA_ERRMEM ? "out of memory (the test harness has 256 MiB)" : lua_tostring(L, -1);

    if (status == LUA_ERRMEM)
        f->err_where[0] = '\0';
    fprintf(f->h->out, "%stest %s: error: %s\n", f->err_where[0] ? f->err_where : test_where, name,
            msg ? msg : "?");
}

/* test(name, fn): runs fn(t) at once, against a fresh engine. */
static int l_test(lua_State *L)
{
    struct tfile *f = tfile_of(L);
    struct harness *h = f->h;
    const char *name = luaL_checkstring(L, 1);
    char test_where[600], *error = NULL;
    struct trun **slot, *run;
    bool pass;
    int status;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (f->run)
        return luaL_error(L, "test() cannot run inside another test");
    lua_settop(L, 2);
    where_at(L, 1, test_where, sizeof(test_where), false);
    /* Everything Lua needs first: nothing may raise once run exists. */
    lua_pushcfunction(L, test_msgh); /* 3 */
    lua_pushvalue(L, 2);             /* 4: fn */
    lua_createtable(L, 0, 12);       /* 5: t */
    slot = lua_newuserdatauv(L, sizeof(*slot), 0);
    *slot = NULL;
    lua_pushvalue(L, 5);
    luaL_setfuncs(L, t_functions, 2);

    run = trun_new(f, name, &error);
    if (!run) {
        fprintf(h->out, "%stest %s: error: %s\n", test_where, name,
                error ? error : "out of memory");
        free(error);
        h->failed++;
        return 0;
    }
    *slot = run;
    f->run = run;
    budget_reset(L, f);
    status = lua_pcall(L, 1, 0, 3);
    *slot = NULL;
    f->run = NULL;
    budget_reset(L, f);
    if (status != LUA_OK)
        print_test_error(f, test_where, name, status, L);
    pass = status == LUA_OK && run->n_failures == 0;
    if (h->verbose)
        fprintf(h->out, "%stest %s: %s\n", test_where, name, pass ? "ok" : "FAIL");
    if (pass)
        h->passed++;
    else
        h->failed++;
    trun_free(run);
    fflush(h->out);
    return 0;
}

/* Protected: the libraries a test needs, and test(). */
static int tfile_setup(lua_State *L)
{
    static const luaL_Reg libs[] = {
        { LUA_GNAME, luaopen_base },
        { LUA_STRLIBNAME, luaopen_string },
        { LUA_TABLIBNAME, luaopen_table },
        { LUA_MATHLIBNAME, luaopen_math },
        { NULL, NULL },
    };
    static const char *const removed[] = { "dofile", "loadfile", "load", NULL };

    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    for (const char *const *name = removed; *name; name++) {
        lua_pushnil(L);
        lua_setglobal(L, *name);
    }
    lua_pushcfunction(L, l_test);
    lua_setglobal(L, "test");
    return 0;
}

static void run_file(struct harness *h, const char *path)
{
    struct tfile f = { .h = h, .path = path };
    lua_State *L = lua_newstate(tfile_alloc, &f);
    int status;

    if (!L) {
        fprintf(h->out, "%s: error: out of memory\n", path);
        h->failed++;
        return;
    }
    *(struct tfile **)lua_getextraspace(L) = &f;
    lua_pushcfunction(L, tfile_setup);
    status = lua_pcall(L, 0, 0, 0);
    if (status == LUA_OK) {
        budget_reset(L, &f);
        lua_pushcfunction(L, test_msgh);
        status = luaL_loadfilex(L, path, "t");
        if (status != LUA_OK) {
            /* Lua's own "file:line: message" of a syntax error. */
            fprintf(h->out, "%s\n", lua_tostring(L, -1));
            h->failed++;
        } else {
            status = lua_pcall(L, 0, 0, 1);
            if (status != LUA_OK) {
                const char *msg = status == LUA_ERRMEM ? "out of memory" : lua_tostring(L, -1);

                if (status == LUA_ERRMEM || !f.err_where[0])
                    fprintf(h->out, "%s: error: %s\n", path, msg ? msg : "?");
                else
                    fprintf(h->out, "%serror: %s\n", f.err_where, msg ? msg : "?");
                h->failed++;
            }
        }
    } else {
        fprintf(h->out, "%s: error: cannot set up the test state\n", path);
        h->failed++;
    }
    lua_close(L);
    fflush(h->out);
}

int rule_tools_test(const struct rule_tools_test_options *opts,
                    struct rule_tools_test_result *ret_result)
{
    struct harness h = {
        .dir = opts->dir,
        .verbose = opts->verbose,
        .out = opts->out ? opts->out : stdout,
        .err = opts->err ? opts->err : stderr,
        /* A test sees every failure: no rule is set aside for failing. */
        .limits = { .device_failures = TEST_NO_QUARANTINE, .rule_devices = TEST_NO_QUARANTINE },
    };
    struct rule_engine *engine = NULL;
    char *error = NULL, **names = NULL;
    size_t n_names = 0;
    int r;

    h.heartbeats = gw_duration_table_parse(TEST_HEARTBEATS, &error);
    if (!h.heartbeats) {
        fprintf(h.err, "heartbeats: %s\n", error ? error : "out of memory");
        free(error);
        return -ENOMEM;
    }
    /* The rules load once up front, so that a broken rule is one message,
     * not one per test. */
    engine = rule_engine_new(&h.limits);
    r = engine ? rule_engine_load_dir(engine, h.dir, &error) : -ENOMEM;
    rule_engine_free(engine);
    if (r < 0) {
        fprintf(h.err, "%s\n", error ? error : strerror(-r));
        free(error);
        r = r == -ENOMEM ? r : -EINVAL;
        goto out;
    }
    r = rule_files_list(h.dir, RULE_FILES_TESTS, &names, &n_names);
    if (r < 0) {
        fprintf(h.err, "%s: %s\n", h.dir, strerror(-r));
        goto out;
    }
    if (n_names == 0)
        fprintf(h.err, "%s: no *_test.lua files\n", h.dir);
    for (size_t i = 0; i < n_names; i++) {
        char *path;
        size_t dl = strlen(h.dir);

        if (asprintf(&path, "%s%s%s", h.dir, dl && h.dir[dl - 1] == '/' ? "" : "/", names[i]) < 0) {
            r = -ENOMEM;
            goto out;
        }
        run_file(&h, path);
        free(path);
    }
    fprintf(h.out, "%u passed, %u failed\n", h.passed, h.failed);
    fflush(h.out);
    ret_result->passed = h.passed;
    ret_result->failed = h.failed;
out:
    rule_files_free(names, n_names);
    gw_duration_table_free(h.heartbeats);
    return r;
}

/* ---- replay --------------------------------------------------------------- */

struct replay {
    const struct rule_tools_replay_options *o;
    FILE *out;
    FILE *err;
    struct rule_engine *engine;
    struct rule_actions actions;
    struct fail_watch watch;
    struct payload_limits limits;
    bool quarantine;
    int64_t start_ns;
    int64_t clock_ns; /* the engine's clock: the newest input time so far */
    struct gw_buf line;
    struct rule_tools_replay_result res;
};

static int64_t replay_clock(void *ud)
{
    return ((const struct replay *)ud)->clock_ns;
}

static void out_kv(struct gw_buf *b, const char *key, const char *value)
{
    gw_buf_printf(b, " %s=", key);
    buf_value(b, value ? value : "");
}

static void print_action(struct replay *rp, const struct rule_action *a,
                         const struct gw_reading *reading)
{
    struct gw_buf *b = &rp->line;
    char ts[48];

    gw_buf_reset(b);
    format_time(a->ts_ns ? a->ts_ns : reading->ts_ns, ts, sizeof(ts));
    gw_buf_printf(b, "%s ", ts);
    buf_value(b, reading->device_id);
    gw_buf_putc(b, ' ');
    buf_value(b, a->rule ? a->rule : "?");
    gw_buf_printf(b, " %s", rule_action_kind_name(a->kind));
    switch (a->kind) {
    case RULE_ACTION_OPEN_CASE:
        out_kv(b, "category", a->category);
        out_kv(b, "severity", gw_severity_name(a->severity));
        if (a->has_role)
            out_kv(b, "role", gw_role_name(a->role));
        out_kv(b, "title", a->title);
        out_kv(b, "subject", a->subject ? a->subject : reading->device_id);
        break;
    case RULE_ACTION_CLEAR_CASE:
        out_kv(b, "subject", a->subject ? a->subject : reading->device_id);
        break;
    case RULE_ACTION_EMIT:
        out_kv(b, "measurement", a->measurement);
        break;
    }
    if (a->shadow)
        gw_buf_puts(b, " shadow=true");
    gw_buf_putc(b, '\n');
    if (b->data)
        fputs(b->data, rp->out);
}

/* The rules on one input; where names it in messages ("file:line"). */
static void replay_one(struct replay *rp, const struct gw_reading *reading, const char *where)
{
    int failed;

    if (reading->ts_ns > rp->clock_ns)
        rp->clock_ns = reading->ts_ns;
    fail_watch_begin(&rp->watch, rp->engine);
    failed = reading->channel == GW_CHANNEL_TELEMETRY
                 ? rule_engine_on_reading(rp->engine, reading, &rp->actions)
                 : rule_engine_on_event(rp->engine, reading, &rp->actions);
    fail_watch_end(&rp->watch, rp->engine);
    if (failed > 0) {
        int named = 0;

        for (size_t i = 0; i < rp->watch.n_infos; i++) {
            if (!fail_watch_count(&rp->watch, i))
                continue;
            named++;
            fprintf(rp->err, "%s: rule %s (%s) failed for device %s\n", where,
                    rp->watch.infos[i].name, rp->watch.infos[i].file, reading->device_id);
        }
        if (named == 0)
            fprintf(rp->err, "%s: %d rule(s) failed for device %s\n", where, failed,
                    reading->device_id);
        rp->res.errors += (uint64_t)failed;
    }
    for (size_t i = 0; i < rp->actions.n; i++)
        print_action(rp, &rp->actions.items[i], reading);
    rp->res.actions += rp->actions.n;
    rp->res.readings++;
    rule_actions_clear(&rp->actions);
}

static const struct gw_device *replay_device(struct replay *rp, const char *id)
{
    const struct gw_device *d = gw_registry_device(rp->o->reg, id);

    if (!d && rp->quarantine)
        d = gw_registry_quarantine(rp->o->reg, id);
    return d;
}

static int parse_channel(const char *s, enum gw_channel *ret)
{
    for (int c = GW_CHANNEL_TELEMETRY; c <= GW_CHANNEL_STATUS; c++) {
        if (strcmp(s, gw_channel_name((enum gw_channel)c)) == 0) {
            *ret = (enum gw_channel)c;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- replay from InfluxDB ---------------------------------------------- */

/* The tags gridgate writes on every reading (DESIGN.md's schema): not
 * fields of the reading. */
static bool is_reading_tag(const char *column)
{
    static const char *const tags[] = { "device", "grid", "community", "street" };

    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (strcmp(column, tags[i]) == 0)
            return true;
    return false;
}

struct influx_row {
    int64_t ts_us;
    size_t order; /* as InfluxDB listed it: ties keep that order */
    const cJSON *series;
    const cJSON *values;
};

static int cmp_rows(const void *a, const void *b)
{
    const struct influx_row *x = a, *y = b;

    if (x->ts_us != y->ts_us)
        return x->ts_us < y->ts_us ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Every row of every series of every statement, in time order: a query
 * over several measurements comes back one series after another. */
static int collect_rows(const cJSON *root, struct influx_row **ret_rows, size_t *ret_n)
{
    const cJSON *result, *series, *row;
    struct influx_row *rows = NULL;
    size_t n = 0, cap = 0;

    cJSON_ArrayForEach(result, cJSON_GetObjectItemCaseSensitive(root, "results"))
    cJSON_ArrayForEach(series, cJSON_GetObjectItemCaseSensitive(result, "series"))
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(series, "values"))
    {
        const cJSON *time = cJSON_GetArrayItem(row, 0);

        if (!cJSON_IsNumber(time))
            continue; /* not a row of points */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            struct influx_row *grown = realloc(rows, ncap * sizeof(*grown));
            if (!grown) {
                free(rows);
                return -ENOMEM;
            }
            rows = grown;
            cap = ncap;
        }
        rows[n] = (struct influx_row){
            .ts_us = (int64_t)time->valuedouble, .order = n, .series = series, .values = row,
        };
        n++;
    }
    if (n > 1)
        qsort(rows, n, sizeof(*rows), cmp_rows);
    *ret_rows = rows;
    *ret_n = n;
    return 0;
}

/* One row as the reading it was: the device tag, the time, every other
 * non-tag column that has a value as a field of its JSON type. */
static struct gw_reading *row_reading(struct replay *rp, const struct influx_row *row,
                                      const char *where)
{
    const cJSON *columns = cJSON_GetObjectItemCaseSensitive(row->series, "columns");
    const cJSON *column, *device_id = NULL;
    struct gw_reading *reading;
    const struct gw_device *device;
    int i = 0;

    cJSON_ArrayForEach(column, columns)
    {
        if (cJSON_IsString(column) && strcmp(column->valuestring, "device") == 0)
            device_id = cJSON_GetArrayItem(row->values, i);
        i++;
    }
    if (!cJSON_IsString(device_id)) {
        fprintf(rp->err, "%s: no device tag in this row (select the readings' measurement with "
                         "its tags: SELECT * FROM smoke WHERE ...)\n",
                where);
        return NULL;
    }
    device = replay_device(rp, device_id->valuestring);
    if (!device) {
        fprintf(rp->err, "%s: unknown device %s\n", where, device_id->valuestring);
        return NULL;
    }
    reading = gw_reading_new(device_id->valuestring, GW_CHANNEL_TELEMETRY, row->ts_us * 1000);
    if (!reading)
        return NULL;
    reading->device = device;
    i = 0;
    cJSON_ArrayForEach(column, columns)
    {
        const cJSON *v = cJSON_GetArrayItem(row->values, i++);
        const char *name = cJSON_IsString(column) ? column->valuestring : NULL;

        if (!name || i == 1 || is_reading_tag(name))
            continue;
        if (cJSON_IsNumber(v))
            gw_reading_add_number(reading, name, v->valuedouble);
        else if (cJSON_IsBool(v))
            gw_reading_add_bool(reading, name, cJSON_IsTrue(v));
        else if (cJSON_IsString(v))
            gw_reading_add_string(reading, name, v->valuestring);
    }
    return reading;
}

static int replay_influx(struct replay *rp, const char *query)
{
    const struct gw_config *cfg = rp->o->cfg;
    struct influx_query_options q = {
        .url = cfg->influx.url,
        .database = cfg->influx.database,
        .username = cfg->influx.username,
        .password = cfg->influx.password,
        .timeout_ms = cfg->influx.timeout_ms,
    };
    struct gw_buf body = GW_BUF_INIT;
    struct influx_row *rows = NULL;
    char *error = NULL, where[128];
    cJSON *root = NULL;
    size_t n = 0;
    int r = influx_query(&q, query, &body, &error);

    if (r < 0) {
        fprintf(rp->err, "%s\n", error ? error : strerror(-r));
        free(error);
        goto out;
    }
    root = gw_json_parse(body.data, body.len, NULL, false);
    r = root ? collect_rows(root, &rows, &n) : -EPROTO;
    if (r < 0) {
        fprintf(rp->err, "%s: cannot read InfluxDB's answer: %s\n", cfg->influx.url,
                strerror(-r));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(rows[i].series, "name");
        struct gw_reading *reading;

        snprintf(where, sizeof(where), "influx:%s:%zu",
                 cJSON_IsString(name) ? name->valuestring : "?", rows[i].order + 1);
        reading = row_reading(rp, &rows[i], where);
        if (!reading) {
            rp->res.errors++;
            continue;
        }
        replay_one(rp, reading, where);
        gw_reading_unref(reading);
    }
out:
    free(rows);
    cJSON_Delete(root);
    gw_buf_free(&body);
    return r;
}

/* One JSON line, replayed. Returns 0, or -1 with a reason. */
static int replay_line(struct replay *rp, const char *text, size_t len, const char *where,
                       char *reason, size_t reason_len)
{
    cJSON *root, *item, *payload = NULL;
    const char *device_id = NULL, *data;
    const struct gw_device *device;
    enum gw_channel channel = GW_CHANNEL_TELEMETRY;
    int64_t ts_ns = rp->start_ns;
    struct gw_reading *reading = NULL, *decoded = NULL;
    struct gw_buf record = GW_BUF_INIT;
    char *printed = NULL, why[256];
    int r = -1;

    root = gw_json_parse(text, len, NULL, false);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();

        if (at && at >= text && at <= text + len)
            snprintf(reason, reason_len, "not valid JSON (at byte %td)", at - text + 1);
        else
            snprintf(reason, reason_len, "not valid JSON");
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(reason, reason_len,
                 "a line must be a JSON object {\"device\": ..., \"payload\": "
                 "{...}}");
        goto out;
    }
    cJSON_ArrayForEach(item, root)
    {
        const char *key = item->string ? item->string : "";

        if (strcmp(key, "device") == 0) {
            if (!cJSON_IsString(item) || !item->valuestring[0]) {
                snprintf(reason, reason_len, "device must be a non-empty string");
                goto out;
            }
            device_id = item->valuestring;
        } else if (strcmp(key, "channel") == 0) {
            if (!cJSON_IsString(item) || parse_channel(item->valuestring, &channel) < 0) {
                snprintf(reason, reason_len, "channel must be telemetry, event or status");
                goto out;
            }
        } else if (strcmp(key, "ts") == 0) {
            double v = cJSON_IsNumber(item) ? item->valuedouble : -1;

            if (!(v >= 0 && v <= (double)MAX_TS_MS) || v != floor(v)) {
                snprintf(reason, reason_len, "ts must be whole milliseconds since 1970");
                goto out;
            }
            ts_ns = (int64_t)v * NS_PER_MS;
        } else if (strcmp(key, "payload") == 0) {
            payload = item;
        } else {
            snprintf(reason, reason_len, "unknown key \"%s\" (device, channel, ts, payload)", key);
            goto out;
        }
    }
    if (!device_id || !payload) {
        snprintf(reason, reason_len, "%s missing", device_id ? "payload" : "device");
        goto out;
    }
    device = replay_device(rp, device_id);
    if (!device) {
        snprintf(reason, reason_len, "device %s is not in the district's devices file%s", device_id,
                 rp->quarantine ? " (and the quarantine is full)" : "");
        goto out;
    }
    reading = gw_reading_new(device_id, channel, ts_ns);
    if (!reading) {
        snprintf(reason, reason_len, "out of memory");
        goto out;
    }
    reading->device = device;
    if (cJSON_IsString(payload) && channel == GW_CHANNEL_STATUS) {
        data = payload->valuestring;
    } else if (cJSON_IsObject(payload) ||
               (cJSON_IsArray(payload) && channel != GW_CHANNEL_STATUS)) {
        printed = cJSON_PrintUnformatted(payload);
        if (!printed) {
            snprintf(reason, reason_len, "out of memory");
            goto out;
        }
        data = printed;
    } else {
        snprintf(reason, reason_len,
                 channel == GW_CHANNEL_STATUS ? "payload must be \"online\", \"offline\" or "
                                                "{\"status\": ...}"
                                              : "payload must be a JSON object (or a SenML array)");
        goto out;
    }
    why[0] = '\0';
    if (channel == GW_CHANNEL_STATUS)
        r = payload_decode_status(data, strlen(data), reading, why, sizeof(why));
    else
        r = payload_decode(cJSON_IsArray(payload) ? PAYLOAD_SENML_JSON : PAYLOAD_JSON, data,
                           strlen(data), &rp->limits, reading, why, sizeof(why));
    if (r < 0) {
        snprintf(reason, reason_len, "payload: %s", why[0] ? why : strerror(-r));
        r = -1;
        goto out;
    }
    /* Live, the rules get the reading back out of the journal: so here. */
    if (gw_reading_encode(reading, &record) < 0 ||
        !(decoded = gw_reading_decode(record.data, record.len))) {
        snprintf(reason, reason_len, "the reading cannot be recorded (out of memory)");
        r = -1;
        goto out;
    }
    decoded->device = device;
    replay_one(rp, decoded, where);
    r = 0;
out:
    gw_reading_unref(decoded);
    gw_reading_unref(reading);
    gw_buf_free(&record);
    cJSON_free(printed);
    cJSON_Delete(root);
    return r;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return false;
    return true;
}

static int replay_file(struct replay *rp, const char *path)
{
    bool use_stdin = strcmp(path, "-") == 0;
    const char *name = use_stdin ? "<stdin>" : path;
    FILE *in = use_stdin ? stdin : fopen(path, "r");
    size_t max_line = rp->limits.max_bytes + REPLAY_LINE_SLACK, cap = 0;
    unsigned long lineno = 0;
    char *line = NULL, reason[512], where[PATH_MAX + 32];
    ssize_t n;
    int r = 0;

    if (!in) {
        r = -errno;
        fprintf(rp->err, "%s: %s\n", path, strerror(errno));
        return r;
    }
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (blank(line))
            continue;
        snprintf(where, sizeof(where), "%s:%lu", name, lineno);
        if ((size_t)n > max_line) {
            fprintf(rp->err, "%s: line longer than %zu bytes\n", where, max_line);
            rp->res.errors++;
            continue;
        }
        if (replay_line(rp, line, (size_t)n, where, reason, sizeof(reason)) < 0) {
            fprintf(rp->err, "%s: %s\n", where, reason);
            rp->res.errors++;
        }
    }
    if (ferror(in)) {
        fprintf(rp->err, "%s: read error\n", name);
        r = -EIO;
    }
    free(line);
    if (!use_stdin)
        fclose(in);
    return r;
}

/* 0 when the journal is there and free, -EBUSY while a gateway holds it,
 * -ENOENT when dir was never a journal (every open leaves journal.lock).
 * flock() is per open file: testing the lock here and letting go keeps the
 * journal's own open from tripping over it. */
static int journal_state(const char *dir)
{
    char path[PATH_MAX];
    int fd, r = 0;

    snprintf(path, sizeof(path), "%s/journal.lock", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ENOENT;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
        r = -EBUSY;
    close(fd);
    return r;
}

static int replay_journal(struct replay *rp)
{
    const struct gw_config *cfg = rp->o->cfg;
    const char *dir = cfg->journal.dir;
    const char *consumers[] = { REPLAY_CONSUMER };
    struct gw_journal_options options = {
        .dir = dir,
        .max_bytes = (uint64_t)cfg->journal.max_mb << 20,
        .segment_bytes = (uint64_t)cfg->journal.segment_mb << 20,
        .fsync_interval_ms = cfg->journal.fsync_interval_ms,
        .fsync_bytes = (uint64_t)cfg->journal.fsync_kb << 10,
        .full_policy = strcmp(cfg->journal.full_policy, "drop_oldest") == 0 ? GW_JOURNAL_DROP_OLDEST
                                                                            : GW_JOURNAL_BLOCK,
        .consumers = consumers,
        .n_consumers = 1,
    };
    enum gw_log_level level = gw_log_threshold;
    struct gw_journal_cursor *cursor;
    struct gw_journal *j;
    char *error = NULL, where[PATH_MAX + 64];
    struct stat st;
    int r;

    r = stat(dir, &st) < 0 || !S_ISDIR(st.st_mode) ? -ENOENT : journal_state(dir);
    if (r == -ENOENT) {
        fprintf(rp->err, "%s: no journal there (journal.dir of %s)\n", dir, cfg->path);
        return r;
    }
    if (r == -EBUSY) {
        fprintf(rp->err,
                "%s: the journal is in use by a running gateway; --from-journal reads it "
                "only while gridgate is stopped\n",
                dir);
        return r;
    }
    if (options.segment_bytes > options.max_bytes / 2)
        options.segment_bytes = options.max_bytes / 2;
    /* The journal's "opened" lines are for the gateway's log, not here. */
    if (gw_log_threshold > GW_LOG_WARN)
        gw_log_set_level(GW_LOG_WARN);
    j = gw_journal_open(&options, &error);
    gw_log_set_level(level);
    if (!j) {
        fprintf(rp->err, "%s\n", error ? error : "cannot open the journal");
        free(error);
        return -EIO;
    }
    cursor = gw_journal_cursor_open(j, REPLAY_CONSUMER);
    if (!cursor) {
        gw_journal_close(j);
        return -EIO;
    }
    /* Nothing is appended here: read what is there, then end. */
    gw_journal_shutdown(j);
    for (;;) {
        struct gw_reading *reading;
        const struct gw_device *device;
        const void *data;
        uint64_t seq;
        size_t len;

        r = gw_journal_read(cursor, 0, &data, &len, &seq);
        if (r == -ESHUTDOWN || r == -EAGAIN) {
            r = 0;
            break;
        }
        if (r < 0) {
            fprintf(rp->err, "%s: %s\n", dir, strerror(-r));
            break;
        }
        snprintf(where, sizeof(where), "%s: record %llu", dir, (unsigned long long)seq);
        reading = gw_reading_decode(data, len);
        if (!reading) {
            fprintf(rp->err, "%s: undecodable\n", where);
            rp->res.errors++;
            continue;
        }
        device = replay_device(rp, reading->device_id);
        if (!device) {
            fprintf(rp->err, "%s: device %s is not in the district's devices file\n", where,
                    reading->device_id);
            rp->res.errors++;
        } else {
            reading->device = device;
            replay_one(rp, reading, where);
        }
        gw_reading_unref(reading);
    }
    gw_journal_cursor_free(cursor);
    gw_journal_close(j);
    /* The replay consumer never commits; its position file would only be
     * stale the next time. */
    snprintf(where, sizeof(where), "%s/consumer-%s.pos", dir, REPLAY_CONSUMER);
    unlink(where);
    return r;
}

int rule_tools_replay(const struct rule_tools_replay_options *opts,
                      struct rule_tools_replay_result *ret_result)
{
    const struct gw_config *cfg = opts->cfg;
    struct replay rp = {
        .o = opts,
        .out = opts->out ? opts->out : stdout,
        .err = opts->err ? opts->err : stderr,
        .limits = { .max_bytes = (size_t)cfg->payload.max_bytes,
                    .max_fields = (size_t)cfg->payload.max_fields,
                    .max_string = (size_t)cfg->payload.max_string },
        .start_ns = gw_now_ns(),
        .line = GW_BUF_INIT,
    };
    struct rule_limits limits = {
        .instruction_budget = cfg->rules.instruction_budget,
        .memory_bytes = (size_t)cfg->rules.memory_kb * 1024,
        .device_failures = (unsigned)cfg->rules.device_failures,
        .rule_devices = (unsigned)cfg->rules.rule_devices,
        .quarantine_s = (unsigned)cfg->rules.quarantine_s,
    };
    char *error = NULL;
    int r;

    rp.engine = rule_engine_new(&limits);
    r = rp.engine ? rule_engine_load_dir(rp.engine, cfg->rules.dir, &error) : -ENOMEM;
    if (r < 0) {
        fprintf(rp.err, "%s\n", error ? error : strerror(-r));
        free(error);
        goto out;
    }
    /* Quarantines last what they would have lived: input time, not ours. */
    rule_engine_set_clock(rp.engine, replay_clock, &rp);
    r = fail_watch_init(&rp.watch, rp.engine);
    if (r < 0) {
        fprintf(rp.err, "out of memory\n");
        goto out;
    }
    rp.quarantine = strcmp(cfg->district.unknown_devices, "quarantine") == 0;
    if (rp.quarantine && gw_registry_enable_quarantine(opts->reg, REPLAY_QUARANTINE_MAX) < 0) {
        fprintf(rp.err, "out of memory\n");
        r = -ENOMEM;
        goto out;
    }
    r = opts->from_influx ? replay_influx(&rp, opts->from_influx)
        : opts->input     ? replay_file(&rp, opts->input)
                          : replay_journal(&rp);
    if (r < 0)
        goto out;
    fprintf(rp.out, "%llu readings, %llu actions, %llu errors\n",
            (unsigned long long)rp.res.readings, (unsigned long long)rp.res.actions,
            (unsigned long long)rp.res.errors);
    fflush(rp.out);
    *ret_result = rp.res;
out:
    rule_actions_free(&rp.actions);
    fail_watch_free(&rp.watch);
    rule_engine_free(rp.engine);
    gw_buf_free(&rp.line);
    return r;
}

int rule_tools_check_dir(const char *dir, const struct rule_limits *limits, char **ret_errors)
{
    struct gw_buf errors = GW_BUF_INIT;
    struct rule_engine *all;
    char *error = NULL, **names = NULL;
    size_t n = 0;
    int r = rule_files_list(dir, RULE_FILES_RULES, &names, &n);

    if (r < 0) {
        gw_buf_printf(&errors, "%s: %s\n", dir, strerror(-r));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct rule_engine *one;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path))
            continue;
        one = rule_engine_new(limits);
        if (!one || rule_engine_load_file(one, path, &error) < 0)
            gw_buf_printf(&errors, "%s\n", error ? error : "out of memory");
        free(error);
        error = NULL;
        rule_engine_free(one);
    }
    rule_files_free(names, n);
    if (errors.len == 0) {
        all = rule_engine_new(limits);
        if (!all || rule_engine_load_dir(all, dir, &error) < 0)
            gw_buf_printf(&errors, "%s\n", error ? error : "out of memory");
        free(error);
        rule_engine_free(all);
    }
out:
    if (errors.len == 0)
        return 0;
    gw_buf_truncate(&errors, errors.len - 1); /* the last newline */
    *ret_errors = errors.data;
    return -EINVAL;
}
