/* rule_int: what the files of the rule engine share, and nobody else sees.
 *
 * Owns the layout of struct rule_engine and struct rule and the limits the
 * sandbox enforces. rule_engine.c loads rule files and runs rules,
 * rule_sandbox.c builds the Lua state and enforces the limits, rule_api.c
 * is what a rule can call (open_case, emit, log...) and the `r` it gets.
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
    RULE_TRIP_SORT,    /* table.sort of too large a table */
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
    char **fields; /* field names that must all be present */
    size_t n_fields;
};

struct rule {
    char *name;
    char *where;  /* "path:line" of the rule{} call */
    char *module; /* "rule NAME", the log prefix */
    struct rule_match match;
    int ref;                        /* registry: { on_reading, { device id -> state } } */
    struct gw_log_limit fail_limit; /* failures of this rule */
    struct gw_log_limit log_limit;  /* its log.info / log.warn */
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

    /* The call in progress (a rule's on_reading or a file's chunk). */
    bool in_call;
    bool hook_every; /* the hook fires at every instruction (tripped) */
    enum rule_trip trip;
    long ticks;
    int hook_step;
    int64_t deadline_ns;
    struct rule *rule;                /* the rule running, NULL at load time */
    const struct gw_reading *reading; /* the reading it runs for */
    struct rule_actions *actions;
    size_t call_first_action; /* actions->n when the call began */

    struct rule_stats stats;
    struct gw_log_limit log_limit; /* engine-level lines a device can trigger */
};

static inline struct rule_engine *rule__engine(lua_State *L)
{
    return *(struct rule_engine **)lua_getextraspace(L);
}

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

/* rule_api.c */
/* Adds open_case, clear_case, emit, now and log to the table on top. */
void rule__api_register(lua_State *L);
/* Pushes the `r` for reading (device resolved). May raise (memory). */
void rule__push_reading(lua_State *L, const struct gw_reading *reading);
void rule__action_clear(struct rule_action *action);

/* rule_engine.c */
/* rule{...}: defines a rule while a file loads. A lua_CFunction. */
int rule__define(lua_State *L);

#endif
