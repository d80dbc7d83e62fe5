/* gw_cases: the case loop as far as rules drive it.
 *
 * Owns the case store (SQLite, see store.h) and the rules that turn a
 * rule's open_case/clear_case into cases: one open case per (rule,
 * subject), a repeat updates it (count, last seen, highest severity), a
 * new case is auto-dispatched to the role the rule names through the
 * grid's roster. Every change is appended to the case's history. Used by
 * one thread at a time (the rule worker). Does not publish anything: it
 * reports each change through a callback and the pipeline forwards it.
 */
#ifndef GW_CASES_H
#define GW_CASES_H

#include <stdbool.h>
#include <stdint.h>

#include "gw_domain.h"

struct gw_grid;
struct gw_reading;
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
 * made, in order. Returns 0 or a negative errno (the store failed). */
int gw_cases_apply(struct gw_cases *cases, const struct rule_action *action,
                   const struct gw_reading *reading, gw_case_event_fn on_event, void *userdata);

#endif
