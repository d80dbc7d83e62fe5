/* gw_cases: the case loop as far as rules drive it.
 *
 * Owns the case store (SQLite, see store.h) and the rules that turn a
 * rule's open_case/clear_case into cases: one open case per (rule,
 * subject), a repeat updates it (count, last seen, highest severity), a
 * new case is auto-dispatched to the role the rule names through the
 * grid's roster. Every change is appended to the case's history, and
 * what a rule did carries its provenance: the rule's file and content
 * hash and the reading that made it act. Also keeps the devices' last-seen
 * times in the store so that the deadman survives a restart. Used by one
 * thread at a time (the rule worker). Does not publish anything: it
 * reports each change through a callback and the pipeline forwards it.
 */
#ifndef GW_CASES_H
#define GW_CASES_H

#include <stdbool.h>
#include <stdint.h>

#include "gw_domain.h"

struct gw_grid;
struct gw_reading;
struct gw_registry;
struct rule_action;

struct gw_case_event {
    int64_t case_id;
    const char *kind; /* "opened", "updated", "dispatched", "cleared" */
    enum gw_case_state state;
    enum gw_severity severity;
    const char *rule;
    const char *category;
    const char *subject;
    const char *title;
    const char *assignee_role; /* NULL until dispatched */
    const char *assignee;      /* person from the roster, NULL if none */
    const struct gw_grid *grid;
    int escalation; /* 0 = community level */
    int64_t count;  /* readings that reported it */
    int64_t ts_ns;
};

typedef void (*gw_case_event_fn)(const struct gw_case_event *event, void *userdata);

struct gw_cases_options {
    const char *db_path;
    bool auto_dispatch;
};

struct gw_cases;

/* Opens (creating and migrating as needed) the store. On failure returns
 * NULL and sets *ret_error to a malloc'd message naming the file. */
struct gw_cases *gw_cases_open(const struct gw_cases_options *options, char **ret_error);
/* Closes the store cleanly (WAL checkpointed); NULL is fine. */
void gw_cases_close(struct gw_cases *cases);

/* Carries out an open_case or clear_case action raised by a rule for
 * reading (whose device is resolved). Calls on_event for every change it
 * made, in order. A new case records the rule's file (action->file), its
 * hash (action->file_hash) and the reading as JSON (gw_reading_to_json);
 * every history row the rule causes (creation, raised severity, cleared)
 * records the hash and the reading. A repeat that raises nothing writes
 * no history. Returns 0, -EINVAL for an action it cannot carry out (a shadow action
 * among them: those are only logged), or a negative errno (the store
 * failed). */
int gw_cases_apply(struct gw_cases *cases, const struct rule_action *action,
                   const struct gw_reading *reading, gw_case_event_fn on_event, void *userdata);

/* Saves the live last-seen time (gw_device_state) of each device of reg
 * (the devices file's, not quarantined ones) that changed since this
 * gw_cases last saved it, in one transaction, taken only when there is
 * something to write. The devices may be touched meanwhile by other
 * threads. The first call after opening, or with another registry,
 * writes every device seen so far. Returns the number of devices written,
 * or a negative errno: nothing was saved and the next call writes them
 * all again. With several gw_cases on one file (rule workers), call it
 * through one of them. */
int gw_cases_save_last_seen(struct gw_cases *cases, const struct gw_registry *reg);

/* Touches each device of reg with the time the store holds for it when
 * that is newer than its live state; a time ahead of the gateway's clock
 * (a clock stepped back) counts as now, so the deadman still fires some
 * day. Devices reg does not know are skipped. Meant for start-up, before
 * the intake runs: a reading arriving in between could have its newer
 * time overwritten. Returns the number of devices touched or a negative
 * errno. */
int gw_cases_load_last_seen(struct gw_cases *cases, struct gw_registry *reg);

#endif
