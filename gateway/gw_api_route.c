/* gw_api_route: which handler answers a request line. Pure functions of
 * the request's bytes (no server, no token check), so that the whole
 * path from the raw URI to a handler and its arguments can be fuzzed
 * (tests/fuzz/fuzz_api_route.c). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "gw_api_int.h"
#include "gw_array.h"


const struct api_route gw_api__routes[] = {
    {"GET", "cases", gw_api__list_cases, false},
    {"POST", "cases", gw_api__report_case, false},
    {"GET", "cases/{id}", gw_api__get_case, false},
    {"POST", "cases/{id}/{op}", gw_api__transition, false},
    {"GET", "grids", gw_api__list_grids, false},
    {"GET", "grids/{name}", gw_api__get_grid, false},
    {"GET", "devices/{name}", gw_api__get_device, false},
    {"GET", "stats", gw_api__stats, false},
    {"POST", "rules/reload", gw_api__reload_rules, false},
    {"GET", "metrics", gw_api__metrics, false},
    {"GET", "healthz", gw_api__healthz, true},
    {"GET", "me", gw_api__me, false},
};
const size_t gw_api__n_routes = ARRAY_SIZE(gw_api__routes);

/* A case id: decimal digits, no sign, no leading zero, > 0, in int64. */
static bool parse_id(const char *s, int64_t *ret)
{
    int64_t v = 0;

    if (s[0] < '1' || s[0] > '9')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    *ret = v;
    return true;
}

/* Whether one route's pattern matches the segments, filling path. */
static bool route_matches(const struct api_route *route, char **segs, size_t n,
                          struct api_path *path)
{
    char pattern[64];
    char *save = NULL, *p;
    size_t i = 0;

    snprintf(pattern, sizeof(pattern), "%s", route->pattern);
    for (p = strtok_r(pattern, "/", &save); p; p = strtok_r(NULL, "/", &save), i++) {
        if (i >= n)
            return false;
        if (strcmp(p, "{id}") == 0) {
            if (!parse_id(segs[i], &path->id))
                return false;
        } else if (strcmp(p, "{op}") == 0) {
            int op = gw_case_op_parse(segs[i]);
            if (op < 0)
                return false;
            path->op = (enum gw_case_op)op;
        } else if (strcmp(p, "{name}") == 0) {
            path->name = segs[i];
        } else if (strcmp(p, segs[i]) != 0) {
            return false;
        }
    }
    return i == n;
}

/* %-escapes, empty and dot segments are refused: ids never need them, and
 * refusing them leaves no second spelling of any resource to get past a
 * check. */
char *gw_api__route_path(const char *raw_uri)
{
    size_t len = strcspn(raw_uri, "?#");
    char *path;

    if (len >= 4096 || !gw_api__utf8_valid(raw_uri, len))
        return NULL;
    if (len >= 8 && strncmp(raw_uri, "/api/v1/", 8) == 0)
        path = strndup(raw_uri + 8, len - 8);
    else if ((len == 8 && strncmp(raw_uri, "/healthz", 8) == 0) ||
             (len == 8 && strncmp(raw_uri, "/metrics", 8) == 0))
        path = strndup(raw_uri + 1, len - 1); /* the usual places of probes and scrapers */
    else
        return NULL;
    if (path && (strchr(path, '%') || strchr(path, '\\') || !path[0])) {
        free(path);
        return NULL;
    }
    return path;
}

static size_t split_path(char *path, char **segs)
{
    size_t n = 0;
    char *p = path;

    for (;;) {
        char *slash = strchr(p, '/');

        if (n == API_MAX_SEGMENTS)
            return 0;
        segs[n++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!segs[i][0] || strcmp(segs[i], ".") == 0 || strcmp(segs[i], "..") == 0)
            return 0;
    return n;
}

void gw_api__route_find(char *path, const char *method, struct api_route_match *m)
{
    char *segs[API_MAX_SEGMENTS];
    size_t n = split_path(path, segs);

    memset(m, 0, sizeof(*m));
    for (size_t i = 0; n > 0 && i < gw_api__n_routes; i++) {
        const struct api_route *route = &gw_api__routes[i];
        struct api_path p = {0};

        if (!route_matches(route, segs, n, &p))
            continue;
        m->path_known = true;
        if (strcmp(route->method, method) == 0) {
            m->route = route;
            m->path = p;
            return;
        }
        size_t used = strlen(m->allow);
        snprintf(m->allow + used, sizeof(m->allow) - used, "%s%s", used ? ", " : "",
                 route->method);
    }
}

const char *gw_api__bearer(const char *authorization)
{
    const char *value = authorization;

    if (!value || strncasecmp(value, "Bearer ", 7) != 0)
        return NULL;
    value += 7;
    while (*value == ' ')
        value++;
    return *value ? value : NULL;
}
