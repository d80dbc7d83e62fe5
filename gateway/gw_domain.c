#include "gw_domain.h"

#include <errno.h>
#include <string.h>

#include "gw_array.h"

static const char *const grid_types[GW_GRID_TYPE_COUNT] = {
    "residential", "commercial", "institution", "crowded",
};

static const char *const grid_levels[GW_GRID_LEVEL_COUNT] = {
    "routine", "prevention", "attention", "governance",
};

static const char *const roles[GW_ROLE_COUNT] = {
    "manager", "assistant", "police", "supervisor", "judicial", "firefighter", "party_secretary",
};

static const char *const roles_zh[GW_ROLE_COUNT] = {
    "网格管理员", "网格助理员", "网格警员", "网格督导员", "网格司法员", "网格消防员", "网格党支部书记",
};

static const char *const severities[GW_SEVERITY_COUNT] = {
    "info", "minor", "major", "critical",
};

static const char *const case_states[GW_CASE_STATE_COUNT] = {
    "reported", "dispatched", "handled", "verified", "evaluated", "closed", "cancelled", "deferred",
};

static const char *const actor_roles[GW_ACTOR_ROLE_COUNT] = {
    "operator", "commander", "staff", "supervisor", "liaison", "readonly",
};

static const char *const case_ops[GW_OP_COUNT] = {
    [GW_OP_DISPATCH] = "dispatch", [GW_OP_FEEDBACK] = "feedback", [GW_OP_VERIFY] = "verify",
    [GW_OP_EVALUATE] = "evaluate", [GW_OP_CLOSE] = "close",       [GW_OP_CANCEL] = "cancel",
    [GW_OP_RETURN] = "return",     [GW_OP_DEFER] = "defer",       [GW_OP_RESUME] = "resume",
};

static int lookup(const char *const *names, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (name && strcmp(names[i], name) == 0)
            return (int)i;
    return -EINVAL;
}

static const char *name_of(const char *const *names, size_t count, int value)
{
    return value >= 0 && (size_t)value < count ? names[value] : "unknown";
}

const char *gw_grid_type_name(enum gw_grid_type t) { return name_of(grid_types, ARRAY_SIZE(grid_types), (int)t); }
const char *gw_grid_level_name(enum gw_grid_level l) { return name_of(grid_levels, ARRAY_SIZE(grid_levels), (int)l); }
const char *gw_role_name(enum gw_role r) { return name_of(roles, ARRAY_SIZE(roles), (int)r); }
const char *gw_role_label_zh(enum gw_role r) { return name_of(roles_zh, ARRAY_SIZE(roles_zh), (int)r); }
const char *gw_severity_name(enum gw_severity s) { return name_of(severities, ARRAY_SIZE(severities), (int)s); }
const char *gw_case_state_name(enum gw_case_state s) { return name_of(case_states, ARRAY_SIZE(case_states), (int)s); }

int gw_grid_type_parse(const char *name) { return lookup(grid_types, ARRAY_SIZE(grid_types), name); }
int gw_grid_level_parse(const char *name) { return lookup(grid_levels, ARRAY_SIZE(grid_levels), name); }
int gw_role_parse(const char *name) { return lookup(roles, ARRAY_SIZE(roles), name); }
int gw_severity_parse(const char *name) { return lookup(severities, ARRAY_SIZE(severities), name); }
int gw_case_state_parse(const char *name) { return lookup(case_states, ARRAY_SIZE(case_states), name); }
const char *gw_actor_role_name(enum gw_actor_role r) { return name_of(actor_roles, ARRAY_SIZE(actor_roles), (int)r); }
int gw_actor_role_parse(const char *name) { return lookup(actor_roles, ARRAY_SIZE(actor_roles), name); }
/* NULL, not "unknown", out of range: an op's name is spelled into paths. */
const char *gw_case_op_name(enum gw_case_op o) { return (int)o >= 0 && o < GW_OP_COUNT ? case_ops[o] : NULL; }
int gw_case_op_parse(const char *name) { return lookup(case_ops, ARRAY_SIZE(case_ops), name); }
