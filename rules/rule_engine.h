/* rule_engine: runs the liaisons' Lua rules against readings.
 *
 * Owns one sandboxed Lua 5.4 state, the rules loaded into it and the
 * actions they ask for during one call. One engine belongs to one thread
 * (a rule worker); nothing here is shared. Does not open cases or write to
 * InfluxDB: it returns actions, and the pipeline carries them out.
 */
#ifndef RULE_ENGINE_H
#define RULE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_domain.h"

struct gw_reading;
struct gw_field;

enum rule_action_kind {
    RULE_ACTION_OPEN_CASE,
    RULE_ACTION_CLEAR_CASE,
    RULE_ACTION_EMIT,
};

struct rule_tag {
    char *key;
    char *value;
};

/* All strings are owned by the action. */
struct rule_action {
    enum rule_action_kind kind;
    char *rule;    /* name of the rule that asked */
    char *file;    /* where it is defined, "dir/smoke.lua:12" */
    char *subject; /* defaults to the reading's device id */
    int64_t ts_ns; /* the reading's time */
    /* open_case */
    char *category;
    enum gw_severity severity;
    bool has_role;
    enum gw_role role;
    char *title;
    char *detail;
    /* emit */
    char *measurement;
    struct gw_field *fields;
    size_t n_fields;
    struct rule_tag *tags;
    size_t n_tags;
};

struct rule_actions {
    struct rule_action *items;
    size_t n;
    size_t cap;
};

/* Frees every action's contents and empties the list (keeps capacity). */
void rule_actions_clear(struct rule_actions *actions);
void rule_actions_free(struct rule_actions *actions);

struct rule_limits {
    long instruction_budget; /* Lua VM instructions per rule call */
    size_t memory_bytes;     /* cap on the Lua state's heap */
};

struct rule_stats {
    uint64_t calls;
    uint64_t errors;          /* runtime errors, budget and memory overruns included */
    uint64_t budget_exceeded;
    uint64_t memory_exceeded;
    uint64_t actions;
};

struct rule_engine;

struct rule_engine *rule_engine_new(const struct rule_limits *limits);
void rule_engine_free(struct rule_engine *engine);

/* Loads every *.lua in DIR except *_test.lua, in name order. On error
 * returns a negative errno and sets *ret_error to a malloc'd
 * "file:line: message"; rules loaded before the bad file stay loaded. */
int rule_engine_load_dir(struct rule_engine *engine, const char *dir, char **ret_error);
int rule_engine_load_file(struct rule_engine *engine, const char *path, char **ret_error);
size_t rule_engine_rule_count(const struct rule_engine *engine);

/* Runs every rule whose match accepts the reading (which must have its
 * device resolved); their actions are appended to *actions. A rule that
 * fails is logged with file:line and the device, counted, and skipped;
 * the others still run. Returns the number of rules that failed. */
int rule_engine_on_reading(struct rule_engine *engine, const struct gw_reading *reading,
                           struct rule_actions *actions);

void rule_engine_stats(const struct rule_engine *engine, struct rule_stats *ret_stats);

#endif
