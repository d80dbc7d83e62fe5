#include "gw_cases.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "store.h"

#define AUTO_DISPATCH_ACTOR "gridgate:auto-dispatch"
#define MAX_EVENTS 2 /* "opened" then "dispatched" */

struct gw_cases {
    struct store *store;
    bool auto_dispatch;
    /* What gw_cases_save_last_seen last saved, by device index in
     * seen_reg (0: nothing). A copy per device rather than the time of the
     * previous save: a device touched with a time read just before a save
     * but stored just after it would slip under such a mark. */
    const struct gw_registry *seen_reg;
    int64_t *seen_saved;
    size_t n_seen;
};

/* One gw_cases_apply call. Events wait here until their transaction has
 * committed, so a listener never hears of a change the store rolled back. */
struct apply {
    struct gw_cases *cases;
    const struct rule_action *action;
    const struct gw_reading *reading;
    const struct gw_grid *grid;
    char *subject;         /* the action's or the reading's */
    char *actor;           /* "rule:<name>" */
    int64_t now;           /* the gateway's clock: every change of this call */
    struct gw_buf trigger; /* the reading as JSON, once needed */
    struct gw_case_event events[MAX_EVENTS];
    size_t n_events;
};

struct gw_cases *gw_cases_open(const struct gw_cases_options *options, char **ret_error)
{
    struct store_options store_options = { 0 };
    struct gw_cases *cases;

    if (!options || !options->db_path) {
        if (ret_error)
            *ret_error = strdup("cases: no store path given");
        return NULL;
    }
    cases = calloc(1, sizeof(*cases));
    if (!cases) {
        if (ret_error && asprintf(ret_error, "%s: out of memory", options->db_path) < 0)
            *ret_error = NULL;
        return NULL;
    }
    store_options.path = options->db_path;
    cases->store = store_open(&store_options, ret_error);
    if (!cases->store) {
        free(cases);
        return NULL;
    }
    cases->auto_dispatch = options->auto_dispatch;
    return cases;
}

void gw_cases_close(struct gw_cases *cases)
{
    if (!cases)
        return;
    store_close(cases->store);
    free(cases->seen_saved);
    free(cases);
}

/* Records what the case looks like now as the next event. The strings
 * stay the caller's: they must live until the events are raised. */
static void add_event(struct apply *a, const char *kind, const struct store_case *c)
{
    if (a->n_events == MAX_EVENTS)
        return; /* cannot happen: no path raises more */
    a->events[a->n_events++] = (struct gw_case_event){
        .case_id = c->id,
        .kind = kind,
        .state = c->state,
        .severity = c->severity,
        .rule = c->rule,
        .category = c->category,
        .subject = c->subject,
        .title = c->title,
        .assignee_role = c->has_assignee_role ? gw_role_name(c->assignee_role) : NULL,
        .assignee = c->assignee,
        .grid = a->grid,
        .escalation = c->escalation,
        .count = c->count,
        .ts_ns = a->now,
    };
}

/* The reading the rule acted on, as JSON in a->trigger. Built on first
 * use: most repeats write no history row and need none. */
static int build_trigger(struct apply *a)
{
    return a->trigger.len > 0 ? 0 : gw_reading_to_json(a->reading, &a->trigger);
}

/* A row by_rule is the rule's doing: its actor, with its provenance. */
static int add_history(struct apply *a, const struct store_case *c, bool has_from,
                       enum gw_case_state from, bool by_rule, const char *note)
{
    struct store_history h = {
        .case_id = c->id,
        .at = a->now,
        .actor = by_rule ? a->actor : AUTO_DISPATCH_ACTOR,
        .has_from = has_from,
        .from_state = from,
        .to_state = c->state,
        .note = note,
    };
    int r;

    if (by_rule) {
        r = build_trigger(a);
        if (r < 0)
            return r;
        h.rule_hash = a->action->file_hash;
        h.trigger = a->trigger.data;
    }
    return store_history_append(a->cases->store, &h);
}

/* Auto-dispatch: the rule named a role, the grid's roster names who holds
 * it. The time limit of the dispatched step (deadline_at) comes with the
 * timers of the full case loop; until then the case has none. */
static int dispatch(struct apply *a, struct store_case *c)
{
    enum gw_role role = a->action->role;
    char *assignee = a->grid->roster[role];
    char *note = NULL;
    int r;

    if (asprintf(&note, "to %s %s", gw_role_name(role),
                 assignee ? assignee : "(no one on the roster)") < 0)
        return -ENOMEM;
    r = store_case_dispatch(a->cases->store, c->id, role, assignee, 0, a->now);
    if (r < 0)
        goto out;
    c->state = GW_CASE_DISPATCHED;
    c->has_assignee_role = true;
    c->assignee_role = role;
    c->assignee = assignee;
    c->dispatched_at = a->now;
    r = add_history(a, c, true, GW_CASE_REPORTED, false, note);
    if (r < 0)
        goto out;
    add_event(a, "dispatched", c);
out:
    free(note);
    return r;
}

static int open_new(struct apply *a)
{
    const struct rule_action *action = a->action;
    struct store_case c = {
        .rule = action->rule,
        .subject = a->subject,
        .category = action->category,
        .severity = action->severity,
        .state = GW_CASE_REPORTED,
        .title = action->title ? action->title : action->category,
        .detail = action->detail,
        .grid_id = a->grid->id,
        .community_id = a->grid->community_id,
        .street_id = a->grid->street_id,
        .device_id = a->reading->device->id,
        .count = 1,
        .first_seen_at = action->ts_ns,
        .last_seen_at = action->ts_ns,
        .opened_at = a->now,
        .updated_at = a->now,
        .rule_file = action->file,
        .rule_hash = action->file_hash,
    };
    int r;

    r = build_trigger(a);
    if (r < 0)
        return r;
    c.trigger = a->trigger.data;
    r = store_case_insert(a->cases->store, &c, &c.id);
    if (r < 0)
        return r;
    r = add_history(a, &c, false, GW_CASE_REPORTED, true, action->detail);
    if (r < 0)
        return r;
    add_event(a, "opened", &c);
    if (!a->cases->auto_dispatch || !action->has_role)
        return 0;
    return dispatch(a, &c);
}

/* The rule reported an open case again: count it, keep the latest reading
 * time and the highest severity; the state does not move.
 *
 * A replayed reading (the journal after a crash, an MQTT redelivery)
 * carries the same timestamp and is counted a second time. Acceptable for
 * now: the count is a figure for operators, not a decision; refusing
 * readings not newer than last_seen_at would also drop devices' readings
 * that merely arrive out of order.
 *
 * A repeat while the case is `handled` (the unit says it is solved, the
 * problem is back) ought to send it back to `dispatched` as rework; that
 * belongs to the full six-step loop with its verification, a later issue.
 * Until then a repeat never changes the state. */
static int repeat(struct apply *a, struct store_case *c)
{
    const struct rule_action *action = a->action;
    enum gw_severity old = c->severity;
    char note[64];
    int r;

    if (action->severity > c->severity)
        c->severity = action->severity;
    if (action->ts_ns > c->last_seen_at)
        c->last_seen_at = action->ts_ns;
    r = store_case_record_repeat(a->cases->store, c->id, c->last_seen_at, c->severity, a->now);
    if (r < 0)
        return r;
    c->count++;
    c->cleared_at = 0;
    c->updated_at = a->now;
    /* A count going up is no event for the history; a severity going up
     * is one an operator will ask about. */
    if (c->severity != old) {
        snprintf(note, sizeof(note), "severity %s -> %s", gw_severity_name(old),
                 gw_severity_name(c->severity));
        r = add_history(a, c, true, c->state, true, note);
        if (r < 0)
            return r;
    }
    add_event(a, "updated", c);
    return 0;
}

static int open_case(struct apply *a, struct store_case *found)
{
    int r = store_case_find_open(a->cases->store, a->action->rule, a->subject, found);

    if (r < 0)
        return r;
    return r == 0 ? open_new(a) : repeat(a, found);
}

/* The rule says the condition is over. Closing takes a verification on
 * site (the full loop, a later issue), so the state stays; the history
 * and the listeners learn it, once: until the rule reports the case again
 * (which resets cleared_at), more clear_case calls change nothing. */
static int clear_case(struct apply *a, struct store_case *found)
{
    int r = store_case_find_open(a->cases->store, a->action->rule, a->subject, found);

    if (r <= 0 || found->cleared_at != 0)
        return r < 0 ? r : 0;
    r = store_case_mark_cleared(a->cases->store, found->id, a->now);
    if (r < 0)
        return r;
    found->cleared_at = a->now;
    found->updated_at = a->now;
    r = add_history(a, found, true, found->state, true, "cleared by rule");
    if (r < 0)
        return r;
    add_event(a, "cleared", found);
    return 0;
}

static int check(const struct rule_action *action, const struct gw_reading *reading)
{
    /* A shadow rule's actions are the pipeline's to log; one that got
     * here anyway must not reach a person on duty. */
    if (!action->rule || action->shadow || !reading->device || !reading->device->grid)
        return -EINVAL;
    switch (action->kind) {
    case RULE_ACTION_OPEN_CASE:
        if (!action->category || (int)action->severity < 0 || action->severity >= GW_SEVERITY_COUNT)
            return -EINVAL;
        if (action->has_role && ((int)action->role < 0 || action->role >= GW_ROLE_COUNT))
            return -EINVAL;
        return 0;
    case RULE_ACTION_CLEAR_CASE:
        return 0;
    default:
        return -EINVAL;
    }
}

int gw_cases_apply(struct gw_cases *cases, const struct rule_action *action,
                   const struct gw_reading *reading, gw_case_event_fn on_event, void *userdata)
{
    struct apply a = { 0 };
    struct store_case found = { 0 };
    int r;

    if (!cases || !action || !reading)
        return -EINVAL;
    r = check(action, reading);
    if (r < 0)
        return r;
    a.cases = cases;
    a.action = action;
    a.reading = reading;
    a.grid = reading->device->grid;
    a.subject = action->subject ? action->subject : reading->device_id;
    a.now = gw_now_ns();
    if (asprintf(&a.actor, "rule:%s", action->rule) < 0)
        return -ENOMEM;

    /* Most clear_case calls are a rule saying "all is well" on a normal
     * reading, with no case to clear: look before taking the write lock. */
    if (action->kind == RULE_ACTION_CLEAR_CASE) {
        r = store_case_find_open(cases->store, action->rule, a.subject, &found);
        if (r <= 0 || found.cleared_at != 0)
            goto out;
        store_case_free_contents(&found);
    }

    r = store_begin(cases->store);
    if (r < 0)
        goto out;
    if (action->kind == RULE_ACTION_OPEN_CASE)
        r = open_case(&a, &found);
    else
        r = clear_case(&a, &found);
    if (r < 0)
        goto out;
    r = store_commit(cases->store);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < a.n_events; i++)
        if (on_event)
            on_event(&a.events[i], userdata);
out:
    if (r < 0)
        store_rollback(cases->store);
    store_case_free_contents(&found);
    gw_buf_free(&a.trigger);
    free(a.actor);
    return r < 0 ? r : 0;
}

/* ---- devices' last-seen times ---- */

int gw_cases_save_last_seen(struct gw_cases *cases, const struct gw_registry *reg)
{
    size_t n = gw_registry_device_count(reg);
    bool begun = false;
    int written = 0;
    int r = 0;

    if (!cases || !reg || n > INT_MAX)
        return -EINVAL;
    if (reg != cases->seen_reg || n != cases->n_seen) {
        int64_t *saved = calloc(n ? n : 1, sizeof(*saved));

        if (!saved)
            return -ENOMEM;
        free(cases->seen_saved);
        cases->seen_saved = saved;
        cases->n_seen = n;
        cases->seen_reg = reg;
    }
    for (size_t i = 0; i < n; i++) {
        const struct gw_device *device = gw_registry_device_at(reg, i);
        struct gw_device_state st;

        gw_device_state(device, &st);
        if (st.last_seen_ns <= 0 || st.last_seen_ns == cases->seen_saved[i])
            continue;
        /* The write lock only once there is something to write. */
        if (!begun) {
            r = store_begin(cases->store);
            if (r < 0)
                goto out;
            begun = true;
        }
        r = store_seen_put(cases->store, device->id, st.last_seen_ns);
        if (r < 0)
            goto out;
        cases->seen_saved[i] = st.last_seen_ns;
        written++;
    }
    if (begun)
        r = store_commit(cases->store);
out:
    if (r < 0) {
        if (begun)
            store_rollback(cases->store);
        /* Which times the rollback took back is not known: all of them. */
        memset(cases->seen_saved, 0, n * sizeof(*cases->seen_saved));
        return r;
    }
    return written;
}

struct load_seen {
    struct gw_registry *reg;
    int64_t now;
    int touched;
};

static int load_one(const char *device_id, int64_t last_seen_at, void *userdata)
{
    struct load_seen *l = userdata;
    const struct gw_device *device = gw_registry_device(l->reg, device_id);
    struct gw_device_state st;

    if (!device || last_seen_at <= 0)
        return 0;
    if (last_seen_at > l->now)
        last_seen_at = l->now;
    gw_device_state(device, &st);
    if (last_seen_at <= st.last_seen_ns)
        return 0;
    gw_device_touch(device, last_seen_at);
    if (l->touched < INT_MAX)
        l->touched++;
    return 0;
}

int gw_cases_load_last_seen(struct gw_cases *cases, struct gw_registry *reg)
{
    struct load_seen l = { reg, gw_now_ns(), 0 };
    int r;

    if (!cases || !reg)
        return -EINVAL;
    r = store_seen_each(cases->store, load_one, &l);
    return r < 0 ? r : l.touched;
}
