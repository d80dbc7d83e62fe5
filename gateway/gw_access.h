/* gw_access: who is acting, and over which part of the district.
 *
 * Owns the shape of the HTTP API's callers (DESIGN.md, "HTTP API"): an
 * actor has a role (enum gw_actor_role, in gw_domain) and a scope (the whole district, one street, one community or
 * one grid), and staff also a post in the grid (one of the seven grid
 * roles) and possibly a person's name from the roster. Answers only "is
 * this place inside the actor's scope" and "at which level of the command
 * chain does this actor sit"; what each role may do to a case is the case
 * loop's decision (gw_cases). Holds no state; an actor's strings are its
 * owner's (gw_auth keeps them for the tokens it loaded).
 */
#ifndef GW_ACCESS_H
#define GW_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "gw_domain.h"

enum gw_scope_kind {
    GW_SCOPE_DISTRICT,
    GW_SCOPE_STREET,
    GW_SCOPE_COMMUNITY,
    GW_SCOPE_GRID,
};

struct gw_actor {
    const char *name; /* for the history ("commander:dongcheng"), never a secret */
    enum gw_actor_role role;
    enum gw_scope_kind scope;
    const char *scope_id;   /* NULL for the district */
    bool has_grid_role;     /* staff: the post they hold in the grid */
    enum gw_role grid_role;
    const char *person;     /* staff: their name as the roster spells it; may be NULL */
};

/* Parses "district", "street:ID", "community:ID" or "grid:ID" (ID not
 * empty). Returns 0, *ret_id pointing into scope (after the colon, NULL
 * for the district), or -EINVAL. */
int gw_scope_parse(const char *scope, enum gw_scope_kind *ret_kind, const char **ret_id);
/* Writes the scope back in that form; returns what snprintf returns. */
int gw_scope_format(enum gw_scope_kind kind, const char *id, char *buf, size_t size);

/* Whether a place (a case's or a grid's ids; any may be NULL, then it is
 * outside every scope but the district's) is inside the actor's scope. */
bool gw_access_in_scope(const struct gw_actor *actor, const char *grid_id,
                        const char *community_id, const char *street_id);

/* The command level an actor's scope stands for, as a case's escalation
 * counts it: 0 community, 1 street, 2 district; -1 for a grid scope,
 * which is no command centre. */
int gw_access_command_level(const struct gw_actor *actor);

#endif
