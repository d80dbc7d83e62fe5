/* gw_domain: the vocabulary of grid management shared by every module.
 *
 * Owns the enumerations of DESIGN.md's domain (grid types and levels, the
 * seven roles, severities, case states) and their canonical names. Holds
 * no state.
 */
#ifndef GW_DOMAIN_H
#define GW_DOMAIN_H

enum gw_grid_type {
    GW_GRID_RESIDENTIAL,
    GW_GRID_COMMERCIAL,
    GW_GRID_INSTITUTION,
    GW_GRID_CROWDED,
    GW_GRID_TYPE_COUNT,
};

enum gw_grid_level {
    GW_LEVEL_ROUTINE,
    GW_LEVEL_PREVENTION,
    GW_LEVEL_ATTENTION,
    GW_LEVEL_GOVERNANCE,
    GW_GRID_LEVEL_COUNT,
};

enum gw_role {
    GW_ROLE_MANAGER,
    GW_ROLE_ASSISTANT,
    GW_ROLE_POLICE,
    GW_ROLE_SUPERVISOR,
    GW_ROLE_JUDICIAL,
    GW_ROLE_FIREFIGHTER,
    GW_ROLE_PARTY_SECRETARY,
    GW_ROLE_COUNT,
};

enum gw_severity {
    GW_SEVERITY_INFO,
    GW_SEVERITY_MINOR,
    GW_SEVERITY_MAJOR,
    GW_SEVERITY_CRITICAL,
    GW_SEVERITY_COUNT,
};

enum gw_case_state {
    GW_CASE_REPORTED,
    GW_CASE_DISPATCHED,
    GW_CASE_HANDLED,
    GW_CASE_VERIFIED,
    GW_CASE_EVALUATED,
    GW_CASE_CLOSED,
    GW_CASE_CANCELLED,
    GW_CASE_DEFERRED,
    GW_CASE_STATE_COUNT,
};

/* What people do to a case (gw_cases decides who may, and when). */
enum gw_case_op {
    GW_OP_DISPATCH, /* reported -> dispatched: to a role (and person) of the grid */
    GW_OP_FEEDBACK, /* dispatched -> handled, with a note */
    GW_OP_VERIFY,   /* handled -> verified (pass) or -> dispatched (fail: rework) */
    GW_OP_EVALUATE, /* verified -> evaluated, with a score */
    GW_OP_CLOSE,    /* evaluated -> closed (archived) */
    GW_OP_CANCEL,   /* reported -> cancelled: invalid or duplicate, with a note */
    GW_OP_RETURN,   /* dispatched -> reported: not ours, for redispatch, with a note */
    GW_OP_DEFER,    /* dispatched or handled -> deferred (缓办), with a note */
    GW_OP_RESUME,   /* deferred -> dispatched, its clock restarted */
    GW_OP_COUNT,
};


/* Who calls the HTTP API (a token's role). What each may do to a case is
 * the case loop's decision (gw_cases). */
enum gw_actor_role {
    GW_ACTOR_OPERATOR,   /* runs the gateway: health, metrics, rule reloads, reads cases */
    GW_ACTOR_COMMANDER,  /* a command centre: dispatch, verify, evaluate, close, cancel, defer */
    GW_ACTOR_STAFF,      /* grid staff: report, feedback, return */
    GW_ACTOR_SUPERVISOR, /* the grid's supervisor: report, verify */
    GW_ACTOR_LIAISON,    /* fire or police liaison: rule reloads, reads cases */
    GW_ACTOR_READONLY,
    GW_ACTOR_ROLE_COUNT,
};

/* Canonical English names as DESIGN.md spells them ("residential",
 * "firefighter", "critical", "dispatched"...), and their Chinese labels. */
const char *gw_grid_type_name(enum gw_grid_type type);
const char *gw_grid_level_name(enum gw_grid_level level);
const char *gw_role_name(enum gw_role role);
const char *gw_role_label_zh(enum gw_role role);
const char *gw_severity_name(enum gw_severity severity);
const char *gw_case_state_name(enum gw_case_state state);
const char *gw_actor_role_name(enum gw_actor_role role);
/* "dispatch", "feedback", ... as the API's paths spell them. */
const char *gw_case_op_name(enum gw_case_op op);

/* Each returns the enum value (>= 0) or -EINVAL for an unknown name. */
int gw_grid_type_parse(const char *name);
int gw_grid_level_parse(const char *name);
int gw_role_parse(const char *name);
int gw_severity_parse(const char *name);
int gw_case_state_parse(const char *name);
int gw_actor_role_parse(const char *name);
int gw_case_op_parse(const char *name);

#endif
