#include "gw_access.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *prefix; /* with its colon */
    enum gw_scope_kind kind;
} scope_prefixes[] = {
    { "street:", GW_SCOPE_STREET },
    { "community:", GW_SCOPE_COMMUNITY },
    { "grid:", GW_SCOPE_GRID },
};

int gw_scope_parse(const char *scope, enum gw_scope_kind *ret_kind, const char **ret_id)
{
    if (!scope)
        return -EINVAL;
    if (strcmp(scope, "district") == 0) {
        *ret_kind = GW_SCOPE_DISTRICT;
        *ret_id = NULL;
        return 0;
    }
    for (size_t i = 0; i < sizeof(scope_prefixes) / sizeof(scope_prefixes[0]); i++) {
        size_t n = strlen(scope_prefixes[i].prefix);

        if (strncmp(scope, scope_prefixes[i].prefix, n) == 0 && scope[n] != '\0') {
            *ret_kind = scope_prefixes[i].kind;
            *ret_id = scope + n;
            return 0;
        }
    }
    return -EINVAL;
}

int gw_scope_format(enum gw_scope_kind kind, const char *id, char *buf, size_t size)
{
    for (size_t i = 0; i < sizeof(scope_prefixes) / sizeof(scope_prefixes[0]); i++)
        if (scope_prefixes[i].kind == kind)
            return snprintf(buf, size, "%s%s", scope_prefixes[i].prefix, id ? id : "");
    return snprintf(buf, size, "district");
}

static bool same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

bool gw_access_in_scope(const struct gw_actor *actor, const char *grid_id,
                        const char *community_id, const char *street_id)
{
    if (!actor)
        return false;
    switch (actor->scope) {
    case GW_SCOPE_DISTRICT:
        return true;
    case GW_SCOPE_STREET:
        return same(actor->scope_id, street_id);
    case GW_SCOPE_COMMUNITY:
        return same(actor->scope_id, community_id);
    case GW_SCOPE_GRID:
        return same(actor->scope_id, grid_id);
    }
    return false;
}

int gw_access_command_level(const struct gw_actor *actor)
{
    switch (actor->scope) {
    case GW_SCOPE_COMMUNITY:
        return 0;
    case GW_SCOPE_STREET:
        return 1;
    case GW_SCOPE_DISTRICT:
        return 2;
    case GW_SCOPE_GRID:
        break;
    }
    return -1;
}
