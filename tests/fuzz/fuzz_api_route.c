/* libFuzzer target for the HTTP API's routing (gw_api_route.c): the raw
 * request line's method and URI, and the Authorization header, as an
 * attacker sends them, to the handler and the arguments it would get.
 *
 * An input is
 *   METHOD \n URI \n AUTHORIZATION
 * (the last part absent: no header).
 *
 * Asserted: a path the routes see is the URI's path after "/api/v1/" (or
 * /healthz, /metrics), non-empty, valid UTF-8, without '%' or '\'; a
 * matched route takes the request's method, and its pattern filled with
 * the arguments found (the id in decimal, the op's name, the name) spells
 * the path again exactly, so no second spelling reaches a handler; a path
 * some route takes under another method names those methods; a token is
 * the header's tail after "Bearer " and spaces, never empty. The handlers
 * themselves are stand-ins here: reaching one is the outcome.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_api_int.h"
#include "gw_domain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- stand-ins: what the route table points at ------------------------ */

#define HANDLER(name)                                                                              \
    void name(struct api_request *rq, const struct api_path *path)                                 \
    {                                                                                              \
        (void)rq;                                                                                  \
        (void)path;                                                                                \
    }
HANDLER(gw_api__list_cases)
HANDLER(gw_api__get_case)
HANDLER(gw_api__report_case)
HANDLER(gw_api__transition)
HANDLER(gw_api__list_grids)
HANDLER(gw_api__get_grid)
HANDLER(gw_api__get_device)
HANDLER(gw_api__stats)
HANDLER(gw_api__reload_rules)
HANDLER(gw_api__metrics)
HANDLER(gw_api__healthz)
HANDLER(gw_api__me)

/* gw_api_parse.c (gw_api__utf8_valid's file) answers errors through this;
 * routing never does. */
int gw_api__error(struct api_request *rq, int status, const char *code, const char *fmt, ...)
{
    (void)rq, (void)status, (void)code, (void)fmt;
    abort();
}

/* ---- checks -------------------------------------------------------------- */

/* The path a route's pattern spells with the arguments m found. */
static void spell(const struct api_route_match *m, char *out, size_t size)
{
    char pattern[64], *save = NULL, *p;
    size_t used = 0;

    snprintf(pattern, sizeof(pattern), "%s", m->route->pattern);
    out[0] = '\0';
    for (p = strtok_r(pattern, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        const char *sep = used ? "/" : "";
        int n;

        if (strcmp(p, "{id}") == 0)
            n = snprintf(out + used, size - used, "%s%lld", sep, (long long)m->path.id);
        else if (strcmp(p, "{op}") == 0)
            n = snprintf(out + used, size - used, "%s%s", sep, gw_case_op_name(m->path.op));
        else if (strcmp(p, "{name}") == 0)
            n = snprintf(out + used, size - used, "%s%s", sep, m->path.name);
        else
            n = snprintf(out + used, size - used, "%s%s", sep, p);
        if (n < 0 || (size_t)n >= size - used)
            abort(); /* the path is shorter than 4096 bytes: so is its spelling */
        used += (size_t)n;
    }
}

static void check_route(const char *method, const char *uri)
{
    size_t len = strcspn(uri, "?#");
    char *path = gw_api__route_path(uri), *copy;
    struct api_route_match m;
    char spelled[4200];

    if (!path)
        return;
    if (!path[0] || strchr(path, '%') || strchr(path, '\\') ||
        !gw_api__utf8_valid(path, strlen(path)))
        abort();
    if (strcmp(path, "healthz") != 0 && strcmp(path, "metrics") != 0 &&
        (len < 8 || strncmp(uri, "/api/v1/", 8) != 0 || strlen(path) != len - 8 ||
         memcmp(path, uri + 8, len - 8) != 0))
        abort();
    copy = strdup(path);
    if (!copy)
        abort();
    gw_api__route_find(path, method, &m);
    if (m.route) {
        if (!m.path_known || strcmp(m.route->method, method) != 0)
            abort();
        if (strstr(m.route->pattern, "{id}") && m.path.id <= 0)
            abort();
        spell(&m, spelled, sizeof(spelled));
        if (strcmp(spelled, copy) != 0)
            abort(); /* a second spelling of a resource reached its handler */
    } else if (m.path_known && !m.allow[0]) {
        abort(); /* a known path under a wrong method must say which it takes */
    }
    free(copy);
    free(path);
}

static void check_bearer(const char *header)
{
    const char *token = gw_api__bearer(header);

    if (!token)
        return;
    if (strncasecmp(header, "Bearer ", 7) != 0 || !token[0] || token[0] == ' ' ||
        token < header + 7 || token > header + strlen(header))
        abort();
    for (const char *p = header + 7; p < token; p++)
        if (*p != ' ')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *input = malloc(size + 1), *method, *uri, *header;

    if (!input)
        return 0;
    memcpy(input, data, size);
    input[size] = '\0'; /* a NUL inside ends the part early: as C strings see them */
    method = input;
    uri = strchr(method, '\n');
    if (uri) {
        *uri++ = '\0';
        header = strchr(uri, '\n');
        if (header)
            *header++ = '\0';
        check_route(method, uri);
        check_bearer(header);
    }
    free(input);
    return 0;
}
