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
struct gw_device;

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
    char *rule;      /* name of the rule that asked */
    char *file;      /* where it is defined, "dir/smoke.lua:12" */
    char *file_hash; /* provenance: SHA-256 (hex) of the rule file's content when loaded */
    bool shadow;     /* from a rule in mode="shadow": to be logged and counted, not carried out */
    char *subject;   /* defaults to the reading's device id */
    int64_t ts_ns;   /* the reading's time */
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

/* "open_case", "clear_case" or "emit": for logs and tools. */
const char *rule_action_kind_name(enum rule_action_kind kind);

/* Frees one action's strings and arrays and zeroes it (the action itself
 * is the caller's); a zeroed action is fine. */
void rule_action_free_contents(struct rule_action *action);
/* Frees every action's contents and empties the list (keeps capacity). */
void rule_actions_clear(struct rule_actions *actions);
void rule_actions_free(struct rule_actions *actions);

struct rule_limits {
    long instruction_budget; /* Lua VM instructions per rule call */
    size_t memory_bytes;     /* cap on the Lua state's heap */
    /* Failure isolation (0: defaults 5, 20, 60 s). A (rule, device) pair
     * that fails device_failures times in a row is quarantined for that
     * device alone (the rule is skipped for it: not a failure); a rule
     * with rule_devices of its devices in quarantine at once is
     * quarantined as a whole (their quarantines fold into it). Quarantine
     * lasts quarantine_s, then the rule is tried again; failing again
     * before any success is a relapse: quarantined again at once, for
     * twice as long (at most 1 h). A success resets; a successful reload
     * ends every quarantine. */
    unsigned device_failures;
    unsigned rule_devices;
    unsigned quarantine_s;
};

struct rule_stats {
    uint64_t calls;
    uint64_t errors; /* runtime errors, budget and memory overruns included */
    uint64_t budget_exceeded;
    uint64_t memory_exceeded;
    uint64_t actions;
    uint64_t quarantines;      /* quarantines begun, of a (rule, device) pair or of a whole rule */
    uint64_t quarantine_skips; /* calls not made because the rule was in quarantine */
};

struct rule_engine;

struct rule_engine *rule_engine_new(const struct rule_limits *limits);
void rule_engine_free(struct rule_engine *engine);

/* The file names in DIR that are rules (*.lua but *_test.lua) or rule
 * tests (*_test.lua), hidden files left out, in byte order (as `ls` in the
 * C locale), so every machine loads them alike. Names are malloc'd; free
 * them with rule_files_free(). Returns 0 or a negative errno. */
enum rule_file_kind { RULE_FILES_RULES, RULE_FILES_TESTS };
int rule_files_list(const char *dir, enum rule_file_kind kind, char ***ret_names, size_t *ret_n);
void rule_files_free(char **names, size_t n);

/* Loads every *.lua in DIR except *_test.lua, in name order. On error
 * returns a negative errno and sets *ret_error to a malloc'd
 * "file:line: message"; rules loaded before the bad file stay loaded.
 * Each rule keeps the SHA-256 of its file's bytes as read (its actions'
 * file_hash). */
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
/* Bytes the engine holds now for rules: its Lua state (rules, per-device
 * state and garbage not yet collected) and the windows and held timers,
 * which rules.memory_kb caps together, plus the per-device records
 * (one per device at most, not capped). */
size_t rule_engine_memory(const struct rule_engine *engine);

/* Device events and status changes (channel EVENT or STATUS): runs the
 * on_event function of every matching rule. Same contract as on_reading. */
int rule_engine_on_event(struct rule_engine *engine, const struct gw_reading *event,
                         struct rule_actions *actions);

/* Deadman. A rule with on_silence fires when a device it matches has sent
 * nothing for its `silence` duration (fixed, or a factor of the device's
 * heartbeat). What the pipeline knows of the device's silence: */
struct rule_silence {
    int64_t now_ns;
    int64_t last_seen_ns; /* 0: never seen */
    int64_t silent_ns;    /* how long it has been silent */
    int64_t heartbeat_ns; /* the device's expected heartbeat */
};

/* The shortest silence after which some rule would fire for this device
 * (0: no on_silence rule matches it), so the pipeline only asks when it
 * matters. */
int64_t rule_engine_silence_threshold(struct rule_engine *engine, const struct gw_device *device,
                                      int64_t heartbeat_ns);
/* Runs on_silence of the matching rules whose threshold has passed and
 * that have not fired in this episode of silence (a reading, an event or
 * an "online" status from the device ends the episode, and so does a new
 * last_seen_ns). A call that fails is tried again at the next ask. match
 * = { field = ... } does not apply here: there is no reading. Returns the
 * number of rules that failed. */
int rule_engine_on_silence(struct rule_engine *engine, const struct gw_device *device,
                           const struct rule_silence *silence, struct rule_actions *actions);

/* clear_case{} about the device a rule runs for is passed on only while
 * the rule may have a case open about it: one its open_case opened, or
 * one noted here. The gateway notes the cases its store holds open when
 * it starts (a case opened before a restart is cleared as it would have
 * been). Notes carry over reloads with their rule's name. Returns 0,
 * -ENOENT when no loaded rule has that name, or -ENOMEM. */
int rule_engine_note_open_case(struct rule_engine *engine, const char *rule_name,
                               const char *device_id);

/* Reload: a fresh engine, loaded from the directory, takes over the old
 * one's per-device state (state tables, windows, held timers, case notes,
 * silence episodes) for the rules it still has (matched by name). Plain data only
 * is copied: numbers, strings, booleans and tables of them (shared tables
 * and cycles stay so; functions, userdata and tables nested deeper than 32
 * levels are dropped, counted in one log line). Quarantines and failure
 * counts are not carried over. The old engine is only read. Returns 0 or
 * a negative errno (the fresh engine is then unusable). */
int rule_engine_adopt_state(struct rule_engine *fresh, struct rule_engine *old);

/* Reload in place, the worker's way: loads into engine the very bytes of
 * the rule files model was loaded from (model only read: several workers
 * may reload from one model at once), next to the running rules. On
 * success the new rules replace the old ones, each new rule taking over
 * the per-device maps (state, windows, held timers) and silence episodes
 * of the old rule of its name by reference: nothing is copied, so the
 * pause does not grow with the number of devices. Quarantines and failure
 * counts end. On failure (*ret_error "file:line: message") the running
 * rules are untouched. Not during a run. Returns 0 or a negative errno. */
int rule_engine_reload_like(struct rule_engine *engine, const struct rule_engine *model,
                            char **ret_error);

/* One loaded rule, for logs, metrics and the API. Strings stay valid as
 * long as the engine. */
struct rule_info {
    const char *name;
    const char *file;      /* "dir/smoke.lua:12" */
    const char *file_hash; /* SHA-256 hex of the file's content */
    bool shadow;
    bool quarantined; /* as a whole */
    size_t quarantined_devices;
    uint64_t calls;
    uint64_t errors;
    uint64_t actions;
};
/* Fills at most max entries, in load order; returns the number of loaded
 * rules (which may be more than max). */
size_t rule_engine_rules(const struct rule_engine *engine, struct rule_info *ret, size_t max);

/* The clock quarantines are measured with: gw_monotonic_ns() unless set
 * (tests and the rule tools set a simulated one). clock(ud) returns ns;
 * NULL restores the default. */
typedef int64_t (*rule_clock_fn)(void *ud);
void rule_engine_set_clock(struct rule_engine *engine, rule_clock_fn clock, void *ud);

#endif
