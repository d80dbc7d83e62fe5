/* rule_int: what the files of the rule engine share, and nobody else sees.
 *
 * Owns the layout of struct rule_engine and struct rule and the limits the
 * sandbox enforces. rule_engine.c loads rule files and runs rules,
 * rule_sandbox.c builds the Lua state and enforces the limits, rule_api.c
 * is what a rule can call (open_case, emit, log...) and the `r` it gets,
 * rule_window.c keeps windows and held timers, rule_state.c the
 * per-device records and what a reload carries over.
 * Nothing here is part of the engine's contract: see rule_engine.h.
 */
#ifndef RULE_INT_H
#define RULE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "gw_log.h"
#include "rule_engine.h"
#include "rule_sha256.h"

/* Limits. The first two are the defaults of struct rule_limits; the rest
 * are fixed for now. Each one, when hit, ends the rule call (DESIGN.md,
 * "Lua rules": a rule that overruns is counted and logged). */
#define RULE_DEFAULT_BUDGET 1000000L            /* VM instructions per call */
#define RULE_DEFAULT_MEMORY ((size_t)64 << 20)  /* whole Lua heap, all rules and state */
#define RULE_CALL_DEADLINE_NS (100 * 1000000LL) /* wall clock per call (STACK-NOTES 7) */
#define RULE_HOOK_STEP 1000                     /* instructions between two hook checks */
#define RULE_REP_MAX ((size_t)1 << 20)          /* largest string.rep result */
#define RULE_PATTERN_WORK_MAX 1e7               /* estimated steps of one find/match/gsub */
#define RULE_SORT_MAX 100000                    /* largest table table.sort accepts */
#define RULE_TABLE_OP_MAX 1000000               /* most elements one table.move copies */
#define RULE_DATE_FORMAT_MAX 256                /* longest os.date format */
#define RULE_FILE_MAX ((size_t)4 << 20)         /* largest rule file */
#define RULE_MAX_ACTIONS_PER_CALL 100

/* Sizes of what rules hand to the case store and to InfluxDB. */
#define RULE_NAME_MAX 64
#define RULE_CATEGORY_MAX 64
#define RULE_TITLE_MAX 256
#define RULE_DETAIL_MAX 4096
#define RULE_SUBJECT_MAX 128
#define RULE_MEASUREMENT_MAX 64
#define RULE_EMIT_FIELDS_MAX 64
#define RULE_EMIT_TAGS_MAX 32

/* Why the call in progress must end. Once set, the count hook raises an
 * error at every instruction until the call returns, so a pcall inside
 * the rule cannot swallow it. */
enum rule_trip {
    RULE_TRIP_NONE,
    RULE_TRIP_BUDGET,  /* instruction budget */
    RULE_TRIP_TIME,    /* wall-clock deadline */
    RULE_TRIP_PATTERN, /* string.find & co. asked for too much work */
    RULE_TRIP_SORT,    /* table.sort, insert, remove or move asked for too much */
    RULE_TRIP_REP,     /* string.rep result too large */
    RULE_TRIP_MEMORY,  /* heap cap, after Lua's emergency collection */
};

/* What a rule's match={} accepts; the C side filters before any Lua runs.
 * An empty list or a zero mask means "any". */
struct rule_match {
    char **types; /* device types */
    size_t n_types;
    unsigned grid_types;  /* bit (1 << enum gw_grid_type) */
    unsigned grid_levels; /* bit (1 << enum gw_grid_level) */
    char **streets;       /* street ids */
    size_t n_streets;
    char **communities; /* community ids */
    size_t n_communities;
    char **grids; /* grid ids */
    size_t n_grids;
    char **fields; /* field names that must all be present (readings and events) */
    size_t n_fields;
};

/* Slots of a rule's table in the Lua registry (struct rule.ref). The
 * per-device map is keyed by device id. Windows and held timers are not
 * in Lua: see struct rule_cslot. */
enum rule_slot {
    RULE_SLOT_ON_READING = 1, /* function or nil */
    RULE_SLOT_STATES,         /* device -> state table */
    RULE_SLOT_ON_EVENT,
    RULE_SLOT_ON_SILENCE,
    RULE_SLOT_SCRATCH, /* an empty table, the next new device's state */
    RULE_SLOT_COUNT = RULE_SLOT_SCRATCH,
};

/* Failure isolation defaults (struct rule_limits) and the backoff cap. */
#define RULE_DEFAULT_DEVICE_FAILURES 5
#define RULE_DEFAULT_RULE_DEVICES 20
#define RULE_DEFAULT_QUARANTINE_S 60
#define RULE_QUARANTINE_MAX_S 3600

struct rule {
    char *name;
    char *where;  /* "path:line" of the rule{} call */
    char *module; /* "rule NAME", the log prefix */
    char file_hash[RULE_SHA256_HEX_LEN + 1];
    struct rule_match match;
    int ref;    /* registry: its table, slots enum rule_slot */
    size_t idx; /* position in engine->rules, and in each device's pairs */
    /* Names its windows and held timers in struct rule_cslot: unique in
     * the engine, passed on to the rule of the same name by a reload. */
    uint32_t skey;
    size_t n_cslots; /* its windows, held timers and case marks, all devices */
    bool shadow;
    bool on_reading, on_event, on_silence; /* which handlers it has */
    double silence_s;                      /* fixed silence in seconds, or 0 */
    double silence_factor;                 /* or times the device's heartbeat */

    /* Failure isolation (rule_state.c). */
    unsigned n_failing;     /* its pairs with failures or a backoff level */
    unsigned n_quarantined; /* its devices in quarantine now */
    bool quarantined;       /* as a whole */
    unsigned level;         /* whole-rule quarantines since its last success */
    int64_t until_ns;       /* end of the whole-rule quarantine (engine clock) */
    int64_t since_ns;

    uint64_t calls, errors, actions;
    struct gw_log_limit fail_limit;       /* failures of this rule */
    struct gw_log_limit log_limit;        /* its log.info / log.warn */
    struct gw_log_limit quarantine_limit; /* its quarantine lines */
};

/* One (rule, device) pair's memory beyond Lua: failures, quarantine and
 * the silence episode. Kept only while something is set (rule_state.c). */
struct rule_pair {
    unsigned failures; /* in a row */
    unsigned level;    /* quarantines since its last success (backoff) */
    bool quarantined;
    bool fired;              /* on_silence ran in this episode of silence */
    int64_t until_ns;        /* end of quarantine (engine clock) */
    int64_t since_ns;        /* start of quarantine */
    int64_t fired_last_seen; /* the episode: last_seen_ns it fired for */
};

/* One window, held timer or case mark of a (rule, device): rule_window.c. */
#define RULE_CSLOT_HELD 0x80000000u /* in name: a held timer, not a window */
#define RULE_CSLOT_CASE 0u          /* the name of a case mark (interned ids start at 1) */
struct rule_cslot {
    uint32_t skey; /* the rule's (struct rule.skey) */
    uint32_t name; /* interned name id (rule_window.c), | RULE_CSLOT_HELD; or RULE_CSLOT_CASE */
    int64_t value; /* held: handler time since the condition is true; window: its id */
};

static inline bool rule__cslot_is_window(const struct rule_cslot *s)
{
    return s->name != RULE_CSLOT_CASE && !(s->name & RULE_CSLOT_HELD);
}

/* A device's record: kept while any of it is set (rule_state.c). */
/* 36 bytes and the id: with a district's ids (about 12 characters) one
 * 64-byte malloc chunk, for hundreds of thousands of devices. */
#define RULE_DEV_SLOTS_MAX UINT16_MAX
struct rule_dev {
    struct rule_dev *next; /* hash chain */
    struct rule_pair *pairs; /* by rule idx, or NULL */
    struct rule_cslot *cslots; /* its windows, held timers and case marks, or NULL */
    uint32_t hash;
    uint32_t n_pairs;
    uint16_t n_cslots, cap_cslots; /* at most RULE_DEV_SLOTS_MAX */
    char id[];
};

/* A chained hash table of device records by id (rule_state.c). */
struct rule_devtab {
    struct rule_dev **slots;
    size_t n_slots; /* a power of two, or 0 */
    size_t n;
};

/* A window (rule_window.c): a ring of (time, value) points. 32 bytes, in
 * one array per engine (a district has a few windows per device). */
struct rule_win_point {
    int64_t t_ns;
    double v;
};
struct rule_win {
    uint32_t span_ms; /* whole milliseconds, rounded up */
    uint32_t gen;     /* with its id, what the rule's handle holds; 0: a free entry */
    uint16_t head;    /* oldest point */
    uint16_t n;
    uint16_t cap; /* 1: the point is inline */
    uint16_t unused;
    union {
        struct rule_win_point one; /* cap 1: most windows hold one point */
        struct rule_win_point *pts; /* cap > 1: malloc'd */
    } u;
};

/* A rule file's bytes as loaded, kept so that other engines (the other
 * workers, reloading in place) run exactly what was checked. */
struct rule_source {
    char *path;
    char *buf;
    size_t len;
};

struct rule_engine {
    lua_State *L;
    struct rule_limits limits;
    size_t mem_used;

    struct rule **rules;
    size_t n_rules;
    size_t cap_rules;
    size_t n_committed;       /* rules of files that loaded completely */
    const char *loading_path; /* set while a rule file's chunk runs */
    const char *loading_hash; /* and that file's SHA-256 */
    size_t reload_base;       /* rules below this index are the ones a reload replaces */
    struct rule_source *sources; /* the files the committed rules came from */
    size_t n_sources, cap_sources;

    /* The call in progress (a rule's handler or a file's chunk). */
    bool in_call;
    bool hook_every; /* the hook fires at every instruction (tripped) */
    enum rule_trip trip;
    long ticks;
    int hook_step;
    int64_t deadline_ns;
    struct rule *rule;                /* the rule running, NULL at load time */
    const struct gw_reading *reading; /* the reading or event it runs for, NULL for silence */
    const char *device_id;            /* the device it runs for, NULL outside handlers */
    int64_t ts_ns;                    /* the handler's time: now() */
    struct rule_actions *actions;
    size_t call_first_action; /* actions->n when the call began */

    /* Per-device records: failures, quarantines and silence episodes
     * (few devices, walked at a reload); windows and held timers (every
     * device a rule keeps one for; a reload does not walk them). */
    struct rule_devtab pdevs, cdevs;
    struct rule_dev *cdev_cache; /* the cdevs record of cdev_cache_id, NULL or current */
    const char *cdev_cache_id;   /* a run's device_id (its pointer) */
    size_t dev_bytes; /* the records and the hash table (not capped: one per device) */
    /* Windows by id (rule_window.c); freed entries are chained from
     * free_win (an id + 1, 0: none) through their span_ms. */
    struct rule_win *wins;
    uint32_t n_wins, cap_wins;
    uint32_t free_win;
    uint32_t win_gen;
    uint32_t next_skey;
    size_t n_fired;         /* pairs with fired set */
    size_t n_quarantines;   /* device and whole-rule quarantines in force */
    int64_t next_expiry_ns; /* the earliest of their ends */
    rule_clock_fn clock;
    void *clock_ud;

    /* The keys the reused r tables hold (rule_api.c). */
    char *msg_keys;
    size_t msg_keys_len, msg_keys_cap;

    struct rule_stats stats;
    struct gw_log_limit log_limit; /* engine-level lines a device can trigger */
};

static inline struct rule_engine *rule__engine(lua_State *L)
{
    return *(struct rule_engine **)lua_getextraspace(L);
}

void rule__sources_free(struct rule_source *sources, size_t n);
/* Releases a rule's registry table and the rule. */
void rule__rule_drop(struct rule_engine *e, struct rule *r);

/* rule_state.c: an in-place reload's handover. The rules [0, old_n) are
 * replaced by [old_n, n_rules): each new rule takes the per-device maps of
 * the old rule of its name, and the silence episodes move with them. */
int rule__hand_over(struct rule_engine *e, size_t old_n);

/* rule_sandbox.c */
/* Creates the sandboxed state for e (e->limits set). NULL on failure. */
lua_State *rule__sandbox_new(struct rule_engine *e);
/* Arms the limits for one call: budget, deadline, trip cleared. */
void rule__limits_begin(struct rule_engine *e);
void rule__limits_end(struct rule_engine *e);
const char *rule__trip_name(enum rule_trip trip);
/* Replaces the table on top of the stack by a read-only proxy of it;
 * `what` names it in error messages ("r.grid is read-only"). */
void rule__make_readonly(lua_State *L, const char *what);
/* The same for the tables built for every reading, without the closure
 * that holds `what`: newindex raises with rule__readonly_error(). */
void rule__make_readonly_fast(lua_State *L, lua_CFunction newindex);
int rule__readonly_error(lua_State *L, const char *what);
/* Pushes the metatable that makes an empty table a read-only proxy of the
 * table at idx (shared by many proxies of it). */
void rule__push_proxy_mt(lua_State *L, int idx, lua_CFunction newindex);

/* rule_api.c */
/* Adds open_case, clear_case, emit, now and log to the table on top. */
void rule__api_register(lua_State *L);
/* Pushes the `r` of a reading, or the `e` of an event or status change
 * (device resolved). The r (or e) of the reading before goes stale: any
 * use of it raises. device_idx: where the device id string already is on
 * the stack, or 0. May raise (memory). */
void rule__push_reading(lua_State *L, const struct gw_reading *reading, int device_idx);
/* Pushes the `d` of on_silence. May raise (memory). */
void rule__push_silence(lua_State *L, const struct gw_device *device,
                        const struct rule_silence *silence);
void rule__action_clear(struct rule_action *action);
/* What a rule says, as it may go into the log: control characters
 * escaped (no forged lines), cut to size - 1 bytes with "...". */
#define RULE_LOG_TEXT_MAX 1024
void rule__log_text(char *buf, size_t size, const char *s, size_t len);
static inline int64_t rule__floor_ms(int64_t ns)
{
    return ns >= 0 ? ns / 1000000 : -((-(ns + 1)) / 1000000) - 1;
}

/* rule_sandbox.c: C memory held for rules (windows, held timers) counts
 * against the same cap as the Lua heap. charge: false (and the call in
 * progress trips) when n more bytes would pass the cap. */
bool rule__mem_charge(struct rule_engine *e, size_t n);
void rule__mem_release(struct rule_engine *e, size_t n);

/* rule_helpers.c */
/* Adds duration to the table on top. */
void rule__helpers_register(lua_State *L);

/* rule_window.c: window() and held(), kept in C per (rule, device, name)
 * in the device's record, and the case marks next to them. */
/* Adds window and held to the table on top (and the windows' metatable). */
void rule__window_register(lua_State *L);
/* Frees every window and held timer whose rule is gone (a reload that
 * dropped or renamed rules). */
void rule__cstate_sweep(struct rule_engine *e);
/* The device's windows and held timers, freed (record kept). */
void rule__cstate_free_dev(struct rule_engine *e, struct rule_dev *d);
/* Frees the window table (after every device's cstate). */
void rule__cstate_free(struct rule_engine *e);
/* rule_engine_adopt_state's part: copies the windows and held timers of
 * old's rules to fresh's rules of the same names. 0 or -ENOMEM. */
int rule__cstate_adopt(struct rule_engine *fresh, struct rule_engine *old);
/* Case marks: whether the rule may have a case open about the device
 * (the subject being the device), so that clear_case{} with nothing to
 * clear costs nothing. open_case sets the mark at once (a failure of the
 * call after that leaves a mark too many: one clear_case that does
 * nothing); a clear_case removes it only once its call has succeeded
 * (rule__case_marks_commit), so that a dropped clear never hides a case
 * still open. */
bool rule__case_marked(struct rule_engine *e, const struct rule *rule, const char *device_id);
/* Sets the mark: 0, or -ENOMEM when the memory cap or malloc refuses
 * (inside a call, that trips it). */
int rule__case_mark(struct rule_engine *e, struct rule *rule, const char *device_id);
/* After a successful call of the rule: the marks its case actions about
 * the device leave (the last one about the device wins). */
void rule__case_marks_commit(struct rule_engine *e, struct rule *rule, size_t first_action);
/* Reads a duration at idx: a string for gw_duration_parse ("90s", "15m",
 * "2h", "1d", "500ms") or a number of seconds; 0 is one. Returns 0 and
 * sets *ret_seconds, or a negative errno. */
int rule__duration_at(lua_State *L, int idx, double *ret_seconds);

/* rule_engine.c */
/* rule{...}: defines a rule while a file loads. A lua_CFunction. */
int rule__define(lua_State *L);
/* Registry key of the device id string of the run in progress, so that
 * helpers need not intern it again. */
extern char rule__device_key;

/* rule_state.c: failure isolation and silence episodes, per (rule,
 * device). None of these raises or calls Lua. */
void rule__state_free(struct rule_engine *e);
int64_t rule__clock(const struct rule_engine *e);
/* Ends the quarantines whose time is up (one log line each). Call at the
 * start of every run. */
void rule__isolation_tick(struct rule_engine *e);
/* False when the rule is in quarantine, as a whole or for this device. */
bool rule__admitted(struct rule_engine *e, struct rule *rule, const char *device_id);
/* The outcome of one call: resets on success, counts failures and
 * quarantines on failure. */
void rule__record(struct rule_engine *e, struct rule *rule, const char *device_id, bool ok);
/* A reading or event of the device: its silence episodes end. */
void rule__episode_end(struct rule_engine *e, const char *device_id);
bool rule__silence_fired(struct rule_engine *e, const struct rule *rule, const char *device_id,
                         int64_t last_seen_ns);
void rule__set_fired(struct rule_engine *e, const struct rule *rule, const char *device_id,
                     int64_t last_seen_ns);
/* The device's record of windows and held timers (e->cdevs); created
 * when create is set (NULL when out of memory), else NULL when it has
 * none. */
struct rule_dev *rule__cdev_get(struct rule_engine *e, const char *device_id, bool create);
/* Drops that record when it has no window or held timer any more. */
void rule__cdev_tidy(struct rule_engine *e, const char *device_id);

#endif
