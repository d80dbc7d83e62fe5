#include "gw_cases.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_config.h"
#include "gw_duration.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "store.h"

#define AUTO_DISPATCH_ACTOR "gridgate:auto-dispatch"
#define TIMER_ACTOR "gridgate:timer"
#define TOP_ESCALATION 2 /* the district */
#define MAX_LIST 500
#define MAX_ESCALATE 4096 /* per call, whatever max asks: bounded memory; the next call goes on */

struct gw_cases {
    struct store *store;
    bool read_only;
    bool auto_dispatch;
    bool in_batch;
    const struct gw_registry *reg;
    struct gw_case_limits limits;
    char *self_closing; /* the options' lists, copied */
    char *group_categories;
    int64_t group_window_ns;
    /* What gw_cases_save_last_seen last saved, by device index in
     * seen_reg (0: nothing). A copy per device rather than the time of the
     * previous save: a device touched with a time read just before a save
     * but stored just after it would slip under such a mark. */
    const struct gw_registry *seen_reg;
    int64_t *seen_saved;
    size_t n_seen;
};

/* An event waiting for its part to succeed, owning copies of all it
 * points to. */
struct pending {
    const char *kind; /* static */
    struct store_case c;
    char *actor;
    bool has_from;
    enum gw_case_state from;
    char *note;
};

/* One writing call: who acts, at what time, and the events it raised so
 * far. A rule's call also carries the rule's provenance for the history
 * rows it causes. */
struct op {
    struct gw_cases *cases;
    int64_t now;
    const char *actor;
    const struct rule_action *action; /* a rule's call; NULL otherwise */
    const struct gw_reading *reading;
    struct gw_buf trigger; /* the reading as JSON, once needed */
    struct pending *events;
    size_t n_events, cap_events;
};

/* What one change of a case tells its history and its listeners. */
struct change {
    const char *kind;  /* the event; NULL: none */
    const char *actor; /* NULL: the op's */
    const char *note;
    bool history; /* append a history row */
    bool by_rule; /* the row carries the rule's provenance */
};

/* ---- options ---- */

static void limits_clear_unlimited_steps(struct gw_case_limits *limits)
{
    /* Only the four steps of the clock have limits (gw_cases.h). */
    for (int sev = 0; sev < GW_SEVERITY_COUNT; sev++)
        for (int st = 0; st < GW_CASE_STATE_COUNT; st++)
            if (st != GW_CASE_DISPATCHED && st != GW_CASE_HANDLED && st != GW_CASE_VERIFIED &&
                st != GW_CASE_EVALUATED)
                limits->ns[sev][st] = 0;
}

static int dup_option(const char *from, char **ret)
{
    *ret = NULL;
    if (from && !(*ret = strdup(from)))
        return -ENOMEM;
    return 0;
}

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
    if (!cases || dup_option(options->self_closing, &cases->self_closing) < 0 ||
        dup_option(options->group_categories, &cases->group_categories) < 0) {
        if (ret_error && asprintf(ret_error, "%s: out of memory", options->db_path) < 0)
            *ret_error = NULL;
        gw_cases_close(cases);
        return NULL;
    }
    store_options.path = options->db_path;
    store_options.read_only = options->read_only;
    cases->store = store_open(&store_options, ret_error);
    if (!cases->store) {
        gw_cases_close(cases);
        return NULL;
    }
    cases->read_only = options->read_only;
    cases->auto_dispatch = options->auto_dispatch;
    cases->reg = options->reg;
    cases->limits = options->limits;
    limits_clear_unlimited_steps(&cases->limits);
    cases->group_window_ns = options->group_window_ns;
    return cases;
}

void gw_cases_close(struct gw_cases *cases)
{
    if (!cases)
        return;
    if (cases->in_batch && cases->store)
        store_rollback(cases->store);
    store_close(cases->store);
    free(cases->self_closing);
    free(cases->group_categories);
    free(cases->seen_saved);
    free(cases);
}

/* One entry of a category list: "*" (all), "fire.*" (a prefix, with its
 * dot) or a category's name. */
static bool category_matches(const char *entry, size_t len, const char *category)
{
    if (len == 1 && entry[0] == '*')
        return true;
    if (len >= 2 && entry[len - 1] == '*')
        return strncmp(category, entry, len - 1) == 0;
    return len > 0 && strlen(category) == len && strncmp(category, entry, len) == 0;
}

/* Whether a comma-separated list (cases.self_closing,
 * cases.group_categories) names the category. */
static bool category_listed(const char *list, const char *category)
{
    for (const char *p = list; list && category && *p;) {
        size_t len = strcspn(p, ",");
        const char *start = p, *end = p + len;

        while (start < end && *start == ' ')
            start++;
        while (end > start && end[-1] == ' ')
            end--;
        if (category_matches(start, (size_t)(end - start), category))
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* ---- parts and batches ---- */

/* Every writing call is one part: a transaction of its own, or a
 * savepoint inside the caller's batch. */
static int part_begin(struct gw_cases *cases)
{
    if (cases->read_only)
        return -EROFS;
    if (!cases->in_batch)
        return store_begin(cases->store);
    /* A failure (disk full, I/O) may have ended the batch's transaction;
     * a savepoint now would open a new one that commit then half-saves. */
    if (!store_in_transaction(cases->store))
        return -EIO;
    return store_part_begin(cases->store);
}

/* Ends the part: kept when r >= 0 (then the commit's failure is the
 * result), undone otherwise. */
static int part_end(struct gw_cases *cases, int r)
{
    if (r >= 0) {
        int c = cases->in_batch ? store_part_commit(cases->store) : store_commit(cases->store);

        if (c == 0)
            return r;
        r = c;
    }
    if (cases->in_batch)
        store_part_rollback(cases->store);
    else
        store_rollback(cases->store);
    return r;
}

int gw_cases_begin(struct gw_cases *cases)
{
    int r;

    if (!cases)
        return -EINVAL;
    if (cases->read_only)
        return -EROFS;
    if (cases->in_batch)
        return -EBUSY;
    r = store_begin(cases->store);
    if (r == 0)
        cases->in_batch = true;
    return r;
}

int gw_cases_commit(struct gw_cases *cases)
{
    int r;

    if (!cases || !cases->in_batch)
        return -EINVAL;
    cases->in_batch = false;
    if (!store_in_transaction(cases->store))
        return -EIO; /* a failure ended it: none of its parts happened */
    r = store_commit(cases->store);
    if (r < 0)
        store_rollback(cases->store);
    return r;
}

void gw_cases_rollback(struct gw_cases *cases)
{
    if (!cases || !cases->in_batch)
        return;
    cases->in_batch = false;
    store_rollback(cases->store);
}

/* ---- one call: events, history, changes ---- */

static void op_init(struct op *o, struct gw_cases *cases, int64_t now, const char *actor)
{
    *o = (struct op){ .cases = cases, .now = now, .actor = actor, .trigger = GW_BUF_INIT };
}

static void op_free(struct op *o)
{
    for (size_t i = 0; i < o->n_events; i++) {
        store_case_free_contents(&o->events[i].c);
        free(o->events[i].actor);
        free(o->events[i].note);
    }
    free(o->events);
    gw_buf_free(&o->trigger);
}

/* Raises the op's events once its part has succeeded. */
static void op_raise(struct op *o, gw_case_event_fn on_event, void *userdata)
{
    for (size_t i = 0; on_event && i < o->n_events; i++) {
        const struct pending *p = &o->events[i];
        struct gw_case_event e = {
            .kind = p->kind,
            .c = &p->c,
            .actor = p->actor,
            .has_from = p->has_from,
            .from = p->from,
            .note = p->note,
            .ts_ns = o->now,
        };

        on_event(&e, userdata);
    }
}

static int queue_event(struct op *o, const char *kind, const struct store_case *c,
                       const char *actor, bool has_from, enum gw_case_state from, const char *note)
{
    struct pending *p;

    if (o->n_events == o->cap_events) {
        size_t cap = o->cap_events ? o->cap_events * 2 : 4;
        struct pending *grown = realloc(o->events, cap * sizeof(*grown));

        if (!grown)
            return -ENOMEM;
        o->events = grown;
        o->cap_events = cap;
    }
    p = &o->events[o->n_events];
    *p = (struct pending){ .kind = kind, .has_from = has_from, .from = from };
    if (store_case_copy(&p->c, c) < 0 || dup_option(actor, &p->actor) < 0 ||
        dup_option(note, &p->note) < 0) {
        store_case_free_contents(&p->c);
        free(p->actor);
        return -ENOMEM;
    }
    o->n_events++;
    return 0;
}

/* The reading the rule acted on, as JSON in o->trigger. Built on first
 * use: most repeats write no history row and need none. */
static int build_trigger(struct op *o)
{
    return o->trigger.len > 0 ? 0 : gw_reading_to_json(o->reading, &o->trigger);
}

static int add_history(struct op *o, const struct store_case *c, bool has_from,
                       enum gw_case_state from, const struct change *ch)
{
    struct store_history h = {
        .case_id = c->id,
        .at = o->now,
        .actor = ch->actor ? ch->actor : o->actor,
        .has_from = has_from,
        .from_state = from,
        .to_state = c->state,
        .note = ch->note,
    };
    int r;

    if (ch->by_rule && o->action) {
        r = build_trigger(o);
        if (r < 0)
            return r;
        h.rule_hash = o->action->file_hash;
        h.trigger = o->trigger.data;
    }
    return store_history_append(o->cases->store, &h);
}

/* Writes a change of c (already made in memory) with a new version, its
 * history row and its event. from is the state before the change. */
static int save_change(struct op *o, struct store_case *c, enum gw_case_state from,
                       const struct change *ch)
{
    int r;

    c->version++;
    c->updated_at = o->now;
    r = store_case_update(o->cases->store, c);
    if (r == 0 && ch->history)
        r = add_history(o, c, true, from, ch);
    if (r == 0 && ch->kind)
        r = queue_event(o, ch->kind, c, ch->actor ? ch->actor : o->actor, true, from, ch->note);
    return r;
}

static bool is_open(enum gw_case_state state)
{
    return state != GW_CASE_CLOSED && state != GW_CASE_CANCELLED;
}

/* The one way into a state: its clock (deadline_at from the step's limit
 * for the case's severity, not overdue, state_since), the times that
 * state marks, a new version, history and event. */
static int enter_state(struct op *o, struct store_case *c, enum gw_case_state to,
                       const struct change *ch)
{
    enum gw_case_state from = c->state;
    int64_t limit = o->cases->limits.ns[c->severity][to];

    c->state = to;
    c->state_since = o->now;
    c->deadline_at = limit > 0 ? o->now + limit : 0;
    c->overdue = false;
    c->deferred_at = to == GW_CASE_DEFERRED ? o->now : 0;
    if (to == GW_CASE_DISPATCHED) {
        c->dispatched_at = o->now;
        if (c->first_dispatched_at == 0)
            c->first_dispatched_at = o->now;
    }
    if (!is_open(to))
        c->closed_at = o->now;
    return save_change(o, c, from, ch);
}

/* Inserts draft (whose strings are borrowed) as a new case at version 1
 * and reads it back into *ret_case (owned), with its creation row and
 * its "opened" event. A case that leads_incident is its own incident's
 * lead (its id known only once inserted). */
static int insert_case(struct op *o, struct store_case *draft, bool leads_incident,
                       const struct change *ch, struct store_case *ret_case)
{
    int64_t id = 0;
    int r;

    draft->version = 1;
    draft->opened_at = o->now;
    draft->updated_at = o->now;
    draft->state_since = o->now;
    r = store_case_insert(o->cases->store, draft, &id);
    if (r < 0)
        return r;
    r = store_case_get(o->cases->store, id, false, ret_case);
    if (r == 0)
        return -EIO; /* just inserted, in this transaction */
    if (r < 0)
        return r;
    if (leads_incident) {
        ret_case->incident_id = ret_case->id;
        r = store_case_update(o->cases->store, ret_case);
        if (r < 0)
            return r;
    }
    r = add_history(o, ret_case, false, ret_case->state, ch);
    if (r == 0)
        r = queue_event(o, "opened", ret_case, ch->actor ? ch->actor : o->actor, false,
                        ret_case->state, ch->note);
    return r;
}

/* Dispatches c to role and person (NULL: the grid's roster holder). */
static int dispatch_to(struct op *o, struct store_case *c, const struct gw_grid *grid,
                       enum gw_role role, const char *person, const struct change *how)
{
    struct change ch = *how;
    char *note = NULL, *assignee = NULL;
    int r;

    if (!person && grid)
        person = grid->roster[role];
    /* The note says where it went when the actor gave none. */
    if (!ch.note) {
        if (asprintf(&note, "to %s %s", gw_role_name(role),
                     person ? person : "(no one on the roster)") < 0)
            return -ENOMEM;
        ch.note = note;
    }
    /* Copied before the old one goes: person may be it. */
    if (person && !(assignee = strdup(person))) {
        free(note);
        return -ENOMEM;
    }
    free(c->assignee);
    c->assignee = assignee;
    c->has_assignee_role = true;
    c->assignee_role = role;
    r = enter_state(o, c, GW_CASE_DISPATCHED, &ch);
    free(note);
    return r;
}

/* ---- a rule's actions ---- */

static bool grouped_category(const struct gw_cases *cases, const char *category)
{
    return cases->group_window_ns > 0 && category_listed(cases->group_categories, category);
}

/* A new case: reported, in its grid's incident (or leading a new one)
 * when its category is grouped, then to the role the rule names when
 * auto-dispatch is on. */
static int open_new(struct op *o, const struct gw_grid *grid, struct store_case *ret_case)
{
    const struct rule_action *action = o->action;
    struct store_case draft = {
        .rule = action->rule,
        .subject = (char *)(action->subject ? action->subject : o->reading->device_id),
        .category = action->category,
        .severity = action->severity,
        .state = GW_CASE_REPORTED,
        .title = action->title ? action->title : action->category,
        .detail = action->detail,
        .grid_id = grid->id,
        .community_id = grid->community_id,
        .street_id = grid->street_id,
        .device_id = o->reading->device->id,
        /* The role the rule names: auto-dispatch's, or the dispatcher's
         * default (docs/api.md, dispatch). */
        .has_assignee_role = action->has_role,
        .assignee_role = action->role,
        .count = 1,
        .first_seen_at = action->ts_ns,
        .last_seen_at = action->ts_ns,
        .rule_file = action->file,
        .rule_hash = action->file_hash,
    };
    struct change created = { .note = action->detail, .history = true, .by_rule = true };
    bool grouped = grouped_category(o->cases, action->category);
    int64_t lead = 0;
    char note[64];
    int r;

    r = build_trigger(o);
    if (r < 0)
        return r;
    draft.trigger = o->trigger.data;
    if (grouped) {
        lead = store_incident_lead(o->cases->store, grid->id, action->category,
                                   o->now - o->cases->group_window_ns);
        if (lead < 0)
            return (int)lead;
        draft.incident_id = lead;
    }
    r = insert_case(o, &draft, grouped && lead == 0, &created, ret_case);
    if (r < 0)
        return r;
    if (lead > 0) {
        struct change joined = {
            .kind = "grouped", .note = note, .history = true, .by_rule = true
        };

        snprintf(note, sizeof(note), "grouped into incident %lld", (long long)lead);
        r = add_history(o, ret_case, true, ret_case->state, &joined);
        if (r == 0)
            r = queue_event(o, "grouped", ret_case, o->actor, true, ret_case->state, note);
    }
    if (r < 0 || !o->cases->auto_dispatch || !action->has_role)
        return r;
    return dispatch_to(
        o, ret_case, grid, action->role, NULL,
        &(struct change){ .kind = "dispatched", .actor = AUTO_DISPATCH_ACTOR, .history = true });
}

/* The rule reported an open case again: count it, keep the latest reading
 * time and the highest severity. While the unit's work awaits its check
 * (handled, verified, evaluated) the problem coming back means the work
 * did not hold: the case goes back to dispatched as rework.
 *
 * A replayed reading (the journal after a crash, an MQTT redelivery)
 * carries the same timestamp and is counted a second time. Acceptable:
 * the count is a figure for operators, not a decision; refusing readings
 * not newer than last_seen_at would also drop devices' readings that
 * merely arrive out of order. */
static int repeat(struct op *o, struct store_case *c)
{
    const struct rule_action *action = o->action;
    enum gw_severity old = c->severity;
    struct change ch = { .kind = "updated", .by_rule = true };
    char note[64] = "";
    int r = 0;

    if (action->severity > c->severity)
        c->severity = action->severity;
    if (action->ts_ns > c->last_seen_at)
        c->last_seen_at = action->ts_ns;
    c->count++;
    c->cleared_at = 0;
    /* A count going up is no event for the history; a severity going up
     * is one an operator will ask about. */
    if (c->severity != old) {
        snprintf(note, sizeof(note), "severity %s -> %s", gw_severity_name(old),
                 gw_severity_name(c->severity));
        ch.note = note;
        ch.history = true;
    }
    if (c->state != GW_CASE_HANDLED && c->state != GW_CASE_VERIFIED &&
        c->state != GW_CASE_EVALUATED)
        return save_change(o, c, c->state, &ch);

    if (ch.history) {
        /* The raise's row; the one event is "reopened". */
        r = add_history(o, c, true, c->state, &ch);
        if (r < 0)
            return r;
    }
    c->rework_count++;
    return enter_state(o, c, GW_CASE_DISPATCHED,
                       &(struct change){ .kind = "reopened",
                                         .note = "recurred after handling: rework",
                                         .history = true,
                                         .by_rule = true });
}

/* The rule says the condition is over: noted once (until the rule reports
 * the case again, which resets cleared_at); a self-closing category's
 * case is closed by it, the rest await a person's verification. */
static int clear_case(struct op *o, struct store_case *c)
{
    int r;

    if (c->cleared_at != 0)
        return 0;
    c->cleared_at = o->now;
    r = save_change(
        o, c, c->state,
        &(struct change){
            .kind = "cleared", .note = "rule: condition over", .history = true, .by_rule = true });
    if (r < 0 || !category_listed(o->cases->self_closing, c->category))
        return r;
    return enter_state(o, c, GW_CASE_CLOSED,
                       &(struct change){ .kind = "closed",
                                         .note = "closed by the rule: category closes itself",
                                         .history = true,
                                         .by_rule = true });
}

static int check_action(const struct rule_action *action, const struct gw_reading *reading)
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

static int apply_action(struct op *o, const char *subject, struct store_case *c)
{
    const struct rule_action *action = o->action;
    int r = store_case_find_open(o->cases->store, action->rule, subject, c);

    if (r < 0)
        return r;
    if (action->kind == RULE_ACTION_CLEAR_CASE)
        return r == 0 ? 0 : clear_case(o, c);
    return r == 0 ? open_new(o, o->reading->device->grid, c) : repeat(o, c);
}

int gw_cases_apply(struct gw_cases *cases, const struct rule_action *action,
                   const struct gw_reading *reading, int64_t now_ns, gw_case_event_fn on_event,
                   void *userdata)
{
    struct store_case c = { 0 };
    const char *subject;
    char *actor = NULL;
    struct op o;
    int r;

    if (!cases || !action || !reading)
        return -EINVAL;
    r = check_action(action, reading);
    if (r < 0)
        return r;
    if (cases->read_only)
        return -EROFS;
    subject = action->subject ? action->subject : reading->device_id;
    /* Most clear_case calls are a rule saying "all is well" on a normal
     * reading, with no case to clear: look before taking the write lock. */
    if (action->kind == RULE_ACTION_CLEAR_CASE && !cases->in_batch) {
        r = store_case_find_open(cases->store, action->rule, subject, &c);
        if (r <= 0 || c.cleared_at != 0) {
            store_case_free_contents(&c);
            return r < 0 ? r : 0;
        }
        store_case_free_contents(&c);
    }
    if (asprintf(&actor, "rule:%s", action->rule) < 0)
        return -ENOMEM;
    op_init(&o, cases, now_ns, actor);
    o.action = action;
    o.reading = reading;
    r = part_begin(cases);
    if (r == 0)
        r = part_end(cases, apply_action(&o, subject, &c));
    if (r == 0)
        op_raise(&o, on_event, userdata);
    store_case_free_contents(&c);
    op_free(&o);
    free(actor);
    return r;
}

/* ---- what people do ---- */

static bool in_scope(const struct gw_actor *actor, const struct store_case *c)
{
    return gw_access_in_scope(actor, c->grid_id, c->community_id, c->street_id);
}

/* A command centre in charge: its level reaches the case's escalation
 * (a grid scope is no command centre). */
static bool commander_acts(const struct gw_actor *actor, const struct store_case *c)
{
    return actor->role == GW_ACTOR_COMMANDER && gw_access_command_level(actor) >= 0 &&
           gw_access_command_level(actor) >= c->escalation;
}

/* Staff the case was sent to: by their post, or by name. */
static bool assignee_acts(const struct gw_actor *actor, const struct store_case *c)
{
    if (actor->role != GW_ACTOR_STAFF)
        return false;
    if (actor->has_grid_role && c->has_assignee_role && actor->grid_role == c->assignee_role)
        return true;
    return actor->person && c->assignee && strcmp(actor->person, c->assignee) == 0;
}

static bool role_allows(const struct gw_actor *actor, enum gw_case_op op,
                        const struct store_case *c)
{
    switch (op) {
    case GW_OP_FEEDBACK:
    case GW_OP_RETURN:
        return assignee_acts(actor, c);
    case GW_OP_VERIFY:
        return actor->role == GW_ACTOR_SUPERVISOR || commander_acts(actor, c);
    case GW_OP_DISPATCH:
    case GW_OP_EVALUATE:
    case GW_OP_CLOSE:
    case GW_OP_CANCEL:
    case GW_OP_DEFER:
    case GW_OP_RESUME:
        return commander_acts(actor, c);
    case GW_OP_COUNT:
        break;
    }
    return false;
}

static bool state_allows(enum gw_case_op op, enum gw_case_state state)
{
    static const enum gw_case_state from[GW_OP_COUNT] = {
        [GW_OP_DISPATCH] = GW_CASE_REPORTED, [GW_OP_FEEDBACK] = GW_CASE_DISPATCHED,
        [GW_OP_VERIFY] = GW_CASE_HANDLED,    [GW_OP_EVALUATE] = GW_CASE_VERIFIED,
        [GW_OP_CLOSE] = GW_CASE_EVALUATED,   [GW_OP_CANCEL] = GW_CASE_REPORTED,
        [GW_OP_RETURN] = GW_CASE_DISPATCHED, [GW_OP_DEFER] = GW_CASE_DISPATCHED,
        [GW_OP_RESUME] = GW_CASE_DEFERRED,
    };

    if (op == GW_OP_DEFER && state == GW_CASE_HANDLED)
        return true;
    return (int)op >= 0 && op < GW_OP_COUNT && from[op] == state;
}

bool gw_cases_may(const struct gw_actor *actor, enum gw_case_op op, const struct store_case *c)
{
    return actor && c && (int)op >= 0 && op < GW_OP_COUNT && in_scope(actor, c) &&
           role_allows(actor, op, c) && state_allows(op, c->state);
}

static bool given(const char *s) { return s && *s; }

static bool on_roster(const struct gw_grid *grid, const char *person)
{
    for (int i = 0; i < GW_ROLE_COUNT; i++)
        if (grid->roster[i] && strcmp(grid->roster[i], person) == 0)
            return true;
    return false;
}

/* The arguments each op needs (docs/api.md); the dispatch role chosen
 * into *ret_role. */
static int check_arguments(const struct gw_case_request *req, const struct store_case *c,
                           const struct gw_grid *grid, enum gw_role *ret_role, const char **why)
{
    switch (req->op) {
    case GW_OP_DISPATCH:
        if (req->has_role && ((int)req->role < 0 || req->role >= GW_ROLE_COUNT)) {
            *why = "role is not one of the grid's roles";
            return -EINVAL;
        }
        if (!req->has_role && !c->has_assignee_role) {
            *why = "role is required: the case names none";
            return -EINVAL;
        }
        if (req->person && (!*req->person || (grid && !on_roster(grid, req->person)))) {
            *why = "person is not on the grid's roster";
            return -EINVAL;
        }
        *ret_role = req->has_role ? req->role : c->assignee_role;
        return 0;
    case GW_OP_FEEDBACK:
    case GW_OP_CANCEL:
    case GW_OP_RETURN:
    case GW_OP_DEFER:
        if (!given(req->note)) {
            *why = "note is required for this action";
            return -EINVAL;
        }
        return 0;
    case GW_OP_VERIFY:
        if (!req->pass && !given(req->note)) {
            *why = "note is required when the verification fails";
            return -EINVAL;
        }
        return 0;
    case GW_OP_EVALUATE:
        if (req->score < 1 || req->score > 5) {
            *why = "score must be 1 to 5";
            return -EINVAL;
        }
        return 0;
    case GW_OP_CLOSE:
    case GW_OP_RESUME:
    case GW_OP_COUNT:
        break;
    }
    return 0;
}

/* In the order docs/api.md gives: 404, 403, 409 stale, 409, 400. */
static int check_request(const struct gw_case_request *req, const struct store_case *c,
                         const struct gw_grid *grid, enum gw_role *ret_role, const char **why)
{
    if (!in_scope(req->actor, c)) {
        *why = "no such case";
        return -ENOENT;
    }
    if (!role_allows(req->actor, req->op, c)) {
        *why = "this actor may not do that to this case";
        return -EACCES;
    }
    if (req->version != 0 && req->version != c->version) {
        *why = "the case has changed since that version";
        return -ESTALE;
    }
    if (!state_allows(req->op, c->state)) {
        *why = "the case's state does not allow that";
        return -EBUSY;
    }
    return check_arguments(req, c, grid, ret_role, why);
}

/* Dispatching an incident's lead sends its members still reported to the
 * same role and person. Each pass dispatches what it found, so the next
 * finds the rest. */
static int dispatch_members(struct op *o, const struct store_case *lead, const struct gw_grid *grid)
{
    struct store_query q = { .incident_id = lead->id,
                             .has_state = true,
                             .state = GW_CASE_REPORTED,
                             .overdue = -1,
                             .limit = 64 };
    char note[64];
    int n, r = 0;

    snprintf(note, sizeof(note), "with incident %lld", (long long)lead->id);
    do {
        struct store_case *members = NULL;

        n = store_case_list(o->cases->store, &q, &members);
        if (n < 0)
            return n;
        for (int i = 0; i < n && r == 0; i++)
            r = dispatch_to(
                o, &members[i], grid, lead->assignee_role, lead->assignee,
                &(struct change){ .kind = "dispatched", .note = note, .history = true });
        for (int i = 0; i < n; i++)
            store_case_free_contents(&members[i]);
        free(members);
    } while (r == 0 && n > 0);
    return r;
}

static int do_op(struct op *o, const struct gw_case_request *req, struct store_case *c,
                 const struct gw_grid *grid, enum gw_role role)
{
    struct change ch = { .note = req->note, .history = true };
    int r;

    switch (req->op) {
    case GW_OP_DISPATCH:
        ch.kind = "dispatched";
        r = dispatch_to(o, c, grid, role, req->person, &ch);
        if (r == 0 && c->incident_id == c->id)
            r = dispatch_members(o, c, grid);
        return r;
    case GW_OP_FEEDBACK:
        ch.kind = "handled";
        return enter_state(o, c, GW_CASE_HANDLED, &ch);
    case GW_OP_VERIFY:
        if (req->pass) {
            ch.kind = "verified";
            return enter_state(o, c, GW_CASE_VERIFIED, &ch);
        }
        ch.kind = "rework";
        c->rework_count++;
        return enter_state(o, c, GW_CASE_DISPATCHED, &ch);
    case GW_OP_EVALUATE:
        ch.kind = "evaluated";
        c->score = req->score;
        return enter_state(o, c, GW_CASE_EVALUATED, &ch);
    case GW_OP_CLOSE:
        ch.kind = "closed";
        return enter_state(o, c, GW_CASE_CLOSED, &ch);
    case GW_OP_CANCEL:
        ch.kind = "cancelled";
        return enter_state(o, c, GW_CASE_CANCELLED, &ch);
    case GW_OP_RETURN:
        /* Not this unit's: back to the command centre, to no one. */
        ch.kind = "returned";
        c->return_count++;
        c->has_assignee_role = false;
        free(c->assignee);
        c->assignee = NULL;
        return enter_state(o, c, GW_CASE_REPORTED, &ch);
    case GW_OP_DEFER:
        ch.kind = "deferred";
        return enter_state(o, c, GW_CASE_DEFERRED, &ch);
    case GW_OP_RESUME:
        ch.kind = "resumed";
        return enter_state(o, c, GW_CASE_DISPATCHED, &ch);
    case GW_OP_COUNT:
        break;
    }
    return -EINVAL;
}

static const struct gw_grid *grid_of(const struct gw_cases *cases, const char *grid_id)
{
    return cases->reg && grid_id ? gw_registry_grid(cases->reg, grid_id) : NULL;
}

static const char *actor_name(const struct gw_actor *actor)
{
    return actor->name ? actor->name : gw_actor_role_name(actor->role);
}

/* One transition inside its part: find the case, check, carry out. */
static int transition(struct op *o, const struct gw_case_request *req, struct store_case *c,
                      const char **why)
{
    const struct gw_grid *grid;
    enum gw_role role = GW_ROLE_MANAGER;
    int r = store_case_get(o->cases->store, req->case_id, false, c);

    if (r == 0) {
        *why = "no such case";
        return -ENOENT;
    }
    if (r < 0)
        return r;
    grid = grid_of(o->cases, c->grid_id);
    r = check_request(req, c, grid, &role, why);
    if (r < 0)
        return r;
    r = do_op(o, req, c, grid, role);
    if (r < 0)
        *why = "the case store failed";
    return r;
}

int gw_cases_transition(struct gw_cases *cases, const struct gw_case_request *request,
                        int64_t now_ns, gw_case_event_fn on_event, void *userdata,
                        int64_t *ret_version, const char **ret_why)
{
    const char *why = "the case store failed";
    struct store_case c = { 0 };
    struct op o;
    int r;

    if (!cases || !request || !request->actor || (int)request->op < 0 ||
        request->op >= GW_OP_COUNT) {
        why = "not a request";
        r = -EINVAL;
    } else if (cases->read_only) {
        why = "this case store is open read-only";
        r = -EROFS;
    } else {
        op_init(&o, cases, now_ns, actor_name(request->actor));
        r = part_begin(cases);
        if (r == 0)
            r = part_end(cases, transition(&o, request, &c, &why));
        if (r == 0) {
            op_raise(&o, on_event, userdata);
            if (ret_version)
                *ret_version = c.version;
        }
        store_case_free_contents(&c);
        op_free(&o);
    }
    if (r < 0 && ret_why)
        *ret_why = why;
    return r;
}

/* ---- reports by people ---- */

static bool may_report(const struct gw_actor *actor)
{
    return actor->role == GW_ACTOR_STAFF || actor->role == GW_ACTOR_SUPERVISOR ||
           actor->role == GW_ACTOR_COMMANDER;
}

/* 404, 403, 400 as for transitions; the grid into *ret_grid. */
static int check_report(const struct gw_cases *cases, const struct gw_case_report *report,
                        const struct gw_grid **ret_grid, const char **why)
{
    const struct gw_grid *grid = NULL;

    if (!report->grid_id && !report->has_location) {
        *why = "grid_id or lat and lon are required";
        return -EINVAL;
    }
    if (cases->reg)
        grid = report->grid_id ? gw_registry_grid(cases->reg, report->grid_id)
                               : gw_registry_locate(cases->reg, report->lon, report->lat);
    if (!grid ||
        !gw_access_in_scope(report->actor, grid->id, grid->community_id, grid->street_id)) {
        *why = report->grid_id ? "no such grid" : "no grid at that location";
        return -ENOENT;
    }
    if (!may_report(report->actor)) {
        *why = "this actor may not report cases";
        return -EACCES;
    }
    if (!given(report->category) || !given(report->title)) {
        *why = given(report->category) ? "title is required" : "category is required";
        return -EINVAL;
    }
    if ((int)report->severity < 0 || report->severity >= GW_SEVERITY_COUNT) {
        *why = "severity is not one of info, minor, major, critical";
        return -EINVAL;
    }
    *ret_grid = grid;
    return 0;
}

static int insert_report(struct op *o, const struct gw_case_report *report,
                         const struct gw_grid *grid, struct store_case *ret_case)
{
    struct store_case draft = {
        .category = (char *)report->category,
        .severity = report->severity,
        .state = GW_CASE_REPORTED,
        .title = (char *)report->title,
        .detail = (char *)report->detail,
        .grid_id = grid->id,
        .community_id = grid->community_id,
        .street_id = grid->street_id,
        .count = 1,
        .first_seen_at = o->now, /* when a person saw it */
        .last_seen_at = o->now,
        .reporter = (char *)report->reporter,
        .reported_by = (char *)o->actor,
        .has_location = report->has_location,
        .lat = report->lat,
        .lon = report->lon,
    };

    return insert_case(o, &draft, false,
                       &(struct change){ .note = report->detail, .history = true }, ret_case);
}

int gw_cases_report(struct gw_cases *cases, const struct gw_case_report *report, int64_t now_ns,
                    gw_case_event_fn on_event, void *userdata, int64_t *ret_id,
                    const char **ret_why)
{
    const char *why = "the case store failed";
    const struct gw_grid *grid = NULL;
    struct store_case c = { 0 };
    struct op o;
    int r;

    if (!cases || !report || !report->actor) {
        why = "not a report";
        r = -EINVAL;
    } else if (cases->read_only) {
        why = "this case store is open read-only";
        r = -EROFS;
    } else {
        r = check_report(cases, report, &grid, &why);
    }
    if (r < 0)
        goto out;
    op_init(&o, cases, now_ns, actor_name(report->actor));
    r = part_begin(cases);
    if (r == 0)
        r = part_end(cases, insert_report(&o, report, grid, &c));
    if (r == 0) {
        op_raise(&o, on_event, userdata);
        if (ret_id)
            *ret_id = c.id;
    }
    store_case_free_contents(&c);
    op_free(&o);
out:
    if (r < 0 && ret_why)
        *ret_why = why;
    return r;
}

/* ---- time limits and escalation ---- */

static const char *level_name(int escalation)
{
    static const char *const names[] = { "community", "street", "district" };

    return escalation >= 0 && escalation <= TOP_ESCALATION ? names[escalation] : "district";
}

/* A limit as a person writes it: the largest whole unit ("2h", "90m"). */
static void format_limit(int64_t ns, char *buf, size_t size)
{
    static const struct {
        int64_t ns;
        const char *unit;
    } units[] = {
        { INT64_C(86400000000000), "d" },
        { INT64_C(3600000000000), "h" },
        { INT64_C(60000000000), "m" },
        { INT64_C(1000000000), "s" },
    };

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (ns > 0 && ns % units[i].ns == 0) {
            snprintf(buf, size, "%lld%s", (long long)(ns / units[i].ns), units[i].unit);
            return;
        }
    snprintf(buf, size, "%.3fs", (double)ns / 1e9);
}

/* The step ran past its limit: overdue (counted once per step), one
 * level up, and the same limit again until the district has it. */
static int escalate(struct op *o, struct store_case *c)
{
    int64_t limit = o->cases->limits.ns[c->severity][c->state];
    char text[32], note[128];

    if (!c->overdue) {
        c->overdue = true;
        c->overdue_count++;
    }
    if (c->escalation < TOP_ESCALATION)
        c->escalation++;
    c->deadline_at = c->escalation < TOP_ESCALATION && limit > 0 ? o->now + limit : 0;
    if (limit > 0) {
        format_limit(limit, text, sizeof(text));
        snprintf(note, sizeof(note), "over the %s limit of %s: escalated to %s", text,
                 gw_case_state_name(c->state), level_name(c->escalation));
    } else {
        snprintf(note, sizeof(note), "over the limit of %s: escalated to %s",
                 gw_case_state_name(c->state), level_name(c->escalation));
    }
    return save_change(o, c, c->state,
                       &(struct change){ .kind = "escalated", .note = note, .history = true });
}

static int escalate_ids(struct op *o, const int64_t *ids, int n)
{
    int r = 0;

    for (int i = 0; i < n && r >= 0; i++) {
        struct store_case c;

        r = store_case_get(o->cases->store, ids[i], false, &c);
        if (r > 0) {
            r = escalate(o, &c);
            store_case_free_contents(&c);
        }
    }
    return r < 0 ? r : n;
}

int gw_cases_escalate_due(struct gw_cases *cases, int64_t now_ns, int max,
                          gw_case_event_fn on_event, void *userdata)
{
    int64_t *ids;
    struct op o;
    int r;

    if (!cases)
        return -EINVAL;
    if (cases->read_only)
        return -EROFS;
    if (max <= 0)
        return 0;
    if (max > MAX_ESCALATE)
        max = MAX_ESCALATE;
    ids = calloc((size_t)max, sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    op_init(&o, cases, now_ns, TIMER_ACTOR);
    r = part_begin(cases);
    if (r == 0) {
        int n = store_cases_due(cases->store, now_ns, ids, max);

        r = part_end(cases, n < 0 ? n : escalate_ids(&o, ids, n));
    }
    if (r >= 0)
        op_raise(&o, on_event, userdata);
    op_free(&o);
    free(ids);
    return r;
}

int64_t gw_cases_next_deadline(struct gw_cases *cases)
{
    return cases ? store_next_deadline(cases->store) : -EINVAL;
}

/* One cases.limits_* value: "step=duration,..." into ns (by state). */
static int parse_limits(const char *key, const char *text, int64_t ns[GW_CASE_STATE_COUNT],
                        char **ret_error)
{
    char *copy, *entry, *save = NULL;
    bool seen[GW_CASE_STATE_COUNT] = { false };
    int r = 0;

    if (!text)
        return 0;
    copy = strdup(text);
    if (!copy)
        return -ENOMEM;
    for (entry = strtok_r(copy, ",", &save); entry && r == 0; entry = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(entry, '=');
        const char *problem = NULL;
        int state;

        while (*entry == ' ')
            entry++;
        if (!eq) {
            problem = "not step=duration";
        } else {
            *eq = '\0';
            state = gw_case_state_parse(entry);
            if (state < 0)
                problem = "no such step";
            else if (state != GW_CASE_DISPATCHED && state != GW_CASE_HANDLED &&
                     state != GW_CASE_VERIFIED && state != GW_CASE_EVALUATED)
                problem = "only dispatched, handled, verified and evaluated have limits";
            else if (seen[state])
                problem = "the step is given twice";
            else if (gw_duration_parse(eq + 1, &ns[state]) < 0)
                problem = "not a duration";
            else
                seen[state] = true;
            *eq = '=';
        }
        if (problem) {
            if (ret_error && asprintf(ret_error, "%s: %s: %s", key, entry, problem) < 0)
                *ret_error = NULL;
            r = -EINVAL;
        }
    }
    free(copy);
    return r;
}

/* Every severity's cases.limits_* into *limits, or none of them. */
static int parse_all_limits(const struct gw_config *cfg, struct gw_case_limits *limits,
                            char **ret_error)
{
    const struct {
        const char *key;
        const char *text;
        enum gw_severity severity;
    } lists[] = {
        { "cases.limits_critical", cfg->cases.limits_critical, GW_SEVERITY_CRITICAL },
        { "cases.limits_major", cfg->cases.limits_major, GW_SEVERITY_MAJOR },
        { "cases.limits_minor", cfg->cases.limits_minor, GW_SEVERITY_MINOR },
        { "cases.limits_info", cfg->cases.limits_info, GW_SEVERITY_INFO },
    };
    struct gw_case_limits parsed = { 0 };

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        int r = parse_limits(lists[i].key, lists[i].text, parsed.ns[lists[i].severity], ret_error);

        if (r < 0)
            return r;
    }
    *limits = parsed;
    return 0;
}

int gw_case_limits_from_config(const struct gw_config *cfg, struct gw_case_limits *limits,
                               char **ret_error)
{
    return cfg && limits ? parse_all_limits(cfg, limits, ret_error) : -EINVAL;
}

/* ---- reads ---- */

static struct store_place place_of(const struct gw_actor *viewer)
{
    struct store_place p = { 0 };

    switch (viewer->scope) {
    case GW_SCOPE_GRID:
        p.grid_id = viewer->scope_id;
        break;
    case GW_SCOPE_COMMUNITY:
        p.community_id = viewer->scope_id;
        break;
    case GW_SCOPE_STREET:
        p.street_id = viewer->scope_id;
        break;
    case GW_SCOPE_DISTRICT:
        break;
    }
    return p;
}

/* A scope other than the district's names its place: without an id it
 * would be the whole district. */
static bool scope_valid(const struct gw_actor *viewer)
{
    return viewer->scope == GW_SCOPE_DISTRICT || viewer->scope_id;
}

int gw_cases_list(struct gw_cases *cases, const struct gw_actor *viewer,
                  const struct gw_case_filter *filter, struct store_case **ret_cases)
{
    struct store_query q;

    if (!cases || !viewer || !filter || !ret_cases || !scope_valid(viewer))
        return -EINVAL;
    q = (struct store_query){
        .scope = place_of(viewer),
        .grid_id = filter->grid_id,
        .community_id = filter->community_id,
        .street_id = filter->street_id,
        .category = filter->category,
        .has_state = filter->has_state,
        .state = filter->state,
        .open_only = filter->open_only,
        .has_severity = filter->has_severity,
        .severity = filter->severity,
        .overdue = filter->overdue,
        .incident_id = filter->incident_id,
        .before_id = filter->before_id,
        .limit = filter->limit < 1          ? 1
                 : filter->limit > MAX_LIST ? MAX_LIST
                                            : filter->limit,
    };
    return store_case_list(cases->store, &q, ret_cases);
}

void gw_cases_free_list(struct store_case *list, int n)
{
    if (!list)
        return;
    for (int i = 0; i < n; i++)
        store_case_free_contents(&list[i]);
    free(list);
}

int gw_cases_get(struct gw_cases *cases, const struct gw_actor *viewer, int64_t id,
                 struct store_case *ret_case, struct store_history **ret_history,
                 size_t *ret_n_history)
{
    struct store_case c;
    int r;

    if (!cases || !viewer || !ret_case)
        return -EINVAL;
    r = store_case_get(cases->store, id, true, &c);
    if (r <= 0)
        return r < 0 ? r : -ENOENT;
    if (!in_scope(viewer, &c)) {
        store_case_free_contents(&c);
        return -ENOENT;
    }
    if (ret_history) {
        r = store_history_list(cases->store, id, ret_history, ret_n_history);
        if (r < 0) {
            store_case_free_contents(&c);
            return r;
        }
    }
    *ret_case = c;
    return 0;
}

void gw_cases_free_history(struct store_history *history, size_t n)
{
    store_history_free(history, n);
}

int gw_cases_figures(struct gw_cases *cases, const struct gw_actor *viewer,
                     enum gw_figures_group group, int64_t from_ns, int64_t to_ns, int64_t now_ns,
                     struct gw_case_figures **ret)
{
    static const char *const columns[] = {
        [GW_GROUP_DISTRICT] = NULL,
        [GW_GROUP_STREET] = "street_id",
        [GW_GROUP_COMMUNITY] = "community_id",
        [GW_GROUP_GRID] = "grid_id",
    };
    struct store_place scope;

    /* overdue_now is the timer's flag (docs/api.md): the clock is the
     * timer's business, not the reader's. */
    (void)now_ns;
    if (!cases || !viewer || !ret || !scope_valid(viewer) || (int)group < 0 ||
        group > GW_GROUP_GRID)
        return -EINVAL;
    scope = place_of(viewer);
    return store_figures(cases->store, &scope, columns[group], from_ns, to_ns, ret);
}

void gw_cases_free_figures(struct gw_case_figures *figures, int n)
{
    if (!figures)
        return;
    for (int i = 0; i < n; i++)
        free(figures[i].key);
    free(figures);
}

int gw_cases_count_by_state(struct gw_cases *cases, const struct gw_actor *viewer,
                            int64_t ret_counts[GW_CASE_STATE_COUNT], int64_t *ret_overdue)
{
    struct store_place scope;

    if (!cases || !viewer || !ret_counts || !ret_overdue || !scope_valid(viewer))
        return -EINVAL;
    scope = place_of(viewer);
    return store_count_by_state(cases->store, &scope, ret_counts, ret_overdue);
}

/* ---- the InfluxDB outbox ---- */

int gw_cases_outbox_put(struct gw_cases *cases, const char *lines, size_t len)
{
    if (!cases || !lines)
        return -EINVAL;
    if (cases->read_only)
        return -EROFS;
    /* Outside a batch the row would be a transaction of its own, apart
     * from the change it describes: that is the hole the outbox closes. */
    if (!cases->in_batch)
        return -EINVAL;
    if (!store_in_transaction(cases->store))
        return -EIO; /* a failure ended the batch */
    return store_outbox_put(cases->store, lines, len);
}

int gw_cases_outbox_read(struct gw_cases *cases, int64_t after_id, int max_rows, size_t max_bytes,
                         store_outbox_fn fn, void *userdata)
{
    if (!cases)
        return -EINVAL;
    return store_outbox_read(cases->store, after_id, max_rows, max_bytes, fn, userdata);
}

int64_t gw_cases_outbox_delete(struct gw_cases *cases, int64_t up_to_id)
{
    if (!cases || cases->in_batch)
        return -EINVAL;
    if (cases->read_only)
        return -EROFS;
    return store_outbox_delete(cases->store, up_to_id);
}

int64_t gw_cases_outbox_count(struct gw_cases *cases)
{
    return cases ? store_outbox_count(cases->store) : -EINVAL;
}

int gw_cases_open_rule_cases(struct gw_cases *cases, store_rule_case_fn fn, void *userdata)
{
    if (!cases || !fn)
        return -EINVAL;
    return store_open_rule_cases(cases->store, fn, userdata);
}

int gw_cases_open_counts(struct gw_cases *cases, store_open_count_fn fn, void *userdata)
{
    if (!cases || !fn)
        return -EINVAL;
    return store_open_counts(cases->store, fn, userdata);
}

/* ---- devices' last-seen times ---- */

int gw_cases_save_last_seen(struct gw_cases *cases, const struct gw_registry *reg)
{
    size_t n;
    bool begun = false;
    int written = 0;
    int r = 0;

    if (!cases || !reg || (n = gw_registry_device_count(reg)) > INT_MAX)
        return -EINVAL;
    if (cases->read_only)
        return -EROFS;
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
            r = part_begin(cases);
            if (r < 0)
                goto out;
            begun = true;
        }
        r = store_seen_put(cases->store, device->id, st.last_seen_ns);
        if (r < 0)
            break;
        cases->seen_saved[i] = st.last_seen_ns;
        written++;
    }
    if (begun)
        r = part_end(cases, r);
out:
    if (r < 0) {
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
