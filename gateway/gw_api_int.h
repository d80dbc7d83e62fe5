/* gw_api_int: what the HTTP API's files share and nobody else sees.
 *
 * gw_api.c owns the server, one request's life (body, authentication,
 * the answer and its headers) and the pool of readers; gw_api_route.c
 * finds the handler of a request line;
 * gw_api_parse.c reads what callers send (JSON bodies, query parameters,
 * times, cursors); gw_api_cases.c answers /cases, gw_api_views.c the
 * rest (grids, devices, figures, metrics, rule reloads, health, /me);
 * gw_api_console.c serves the web console's static files.
 */
#ifndef GW_API_INT_H
#define GW_API_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_cases.h"

struct MHD_Connection;
struct MHD_Daemon;
struct cJSON;
struct gw_auth;
struct gw_auth_limiter;
struct gw_casesvc;
struct gw_config;
struct gw_pipeline;
struct gw_registry;

struct gw_api {
    const struct gw_config *cfg;
    const struct gw_registry *reg;
    struct gw_pipeline *pipeline;
    struct gw_casesvc *svc;
    struct gw_auth *auth;
    struct gw_auth_limiter *limiter;
    struct MHD_Daemon *daemon;
    size_t max_body;
    const char *console_dir; /* api.console_dir, checked at start; NULL: no console */

    /* Readers: one read-only gw_cases per server thread; a request takes
     * a free one under the lock and gives it back when done. */
    pthread_mutex_t readers_lock;
    pthread_cond_t readers_free;
    struct gw_cases **readers;
    bool *reader_busy;
    size_t n_readers;

    /* For /metrics. */
    atomic_uint_fast64_t answered[6]; /* by status class: [2] 2xx ... [5] 5xx */
    atomic_uint_fast64_t auth_failures;
};

/* One HTTP request, from its first line to its answer. */
struct api_request {
    struct gw_api *api;
    struct MHD_Connection *conn;
    char *raw_uri; /* as the client sent it, before any %-decoding */
    const char *method;
    char address[64];
    int64_t started_ns;
    struct gw_buf body;
    size_t body_seen; /* bytes of body received, kept or not */
    bool started;
    bool answered;
    int status;
    const struct gw_actor *actor; /* NULL until authenticated */
    char location[64];            /* a 201's Location header; "" for none */
    const char *allow;            /* a 405's Allow header */
    const char *cache_control;    /* NULL: "no-store" (every API answer) */
};

/* The path's variable parts, as the route matched them. */
struct api_path {
    int64_t id;         /* {id}: a case id */
    enum gw_case_op op; /* {op} */
    const char *name;   /* {name}: a grid or device id (points into a copy of the path) */
};

typedef void (*api_handler_fn)(struct api_request *rq, const struct api_path *path);

/* ---- routing (gw_api_route.c) --------------------------------------- */

struct api_route {
    const char *method;
    const char *pattern; /* segments after /api/v1/; {id}, {op}, {name} are variables */
    api_handler_fn handler;
    bool public; /* answered without a token */
};

extern const struct api_route gw_api__routes[];
extern const size_t gw_api__n_routes;

#define API_MAX_SEGMENTS 4

struct api_route_match {
    const struct api_route *route; /* NULL: none for this method */
    struct api_path path;
    char allow[32]; /* the methods the path takes, when the method is wrong */
    bool path_known;
};

/* The part of the raw URI (path and query) the routes see, a malloc'd
 * copy without the leading "/api/v1/" (or "/" for /healthz and
 * /metrics); NULL for a path the API does not serve. */
char *gw_api__route_path(const char *raw_uri);

/* The route of path (from gw_api__route_path, cut into segments in place:
 * m->path.name points into it) for method. */
void gw_api__route_find(char *path, const char *method, struct api_route_match *m);

/* The token in an Authorization header's value "Bearer TOKEN" (NULL:
 * no header), or NULL. */
const char *gw_api__bearer(const char *authorization);

/* ---- answers (gw_api.c); each returns 0, or -ENOMEM when even the
 * answer could not be made (the connection is then closed). ---------- */

/* Answers with body (taken, whatever happens) as content_type. */
int gw_api__respond(struct api_request *rq, int status, const char *content_type,
                    struct gw_buf *body);
/* Answers JSON. */
int gw_api__respond_json(struct api_request *rq, int status, struct gw_buf *body);
/* The one error body: {"error": code, "detail": detail}. */
int gw_api__error(struct api_request *rq, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The one errno-to-answer mapping, for what gw_cases and gw_casesvc
 * return: -ENOENT 404, -EACCES 403, -ESTALE 409 stale, -EBUSY 409
 * conflict, -EINVAL 400, -EROFS and -ESHUTDOWN 503, else 500. */
int gw_api__fail(struct api_request *rq, int err, const char *why);

/* Answers with the open regular file fd of size bytes (the fd is taken,
 * whatever happens; libmicrohttpd sends it, and only its headers to a
 * HEAD). */
int gw_api__respond_fd(struct api_request *rq, int status, const char *content_type, int fd,
                       uint64_t size);

/* A reader for this request; gw_api__reader_put gives it back. */
struct gw_cases *gw_api__reader_get(struct gw_api *api);
void gw_api__reader_put(struct gw_api *api, struct gw_cases *reader);

/* ---- what callers send (gw_api_parse.c); each parse function answers
 * 400 (or 415) itself and returns -EINVAL when the input is bad. ----- */

bool gw_api__utf8_valid(const char *s, size_t len);

enum api_type {
    API_STRING, /* min, max: bytes */
    API_INT,    /* min, max: the range */
    API_NUMBER, /* min, max: the range */
    API_BOOL,
};

struct api_field {
    const char *name;
    enum api_type type;
    double min, max;
};

/* Parses the body as a JSON object whose members are among fields, each
 * of its type and within its bounds; items[i] is fields[i]'s member or
 * NULL. An empty body is {} when !required. *ret_root (free with
 * cJSON_Delete) owns the items. */
int gw_api__body(struct api_request *rq, const struct api_field *fields, size_t n, bool required,
                 const struct cJSON **items, struct cJSON **ret_root);

/* Reads the query parameters, each one of names at most once and valid
 * UTF-8; values[i] is names[i]'s value or NULL (valid until the answer). */
int gw_api__query(struct api_request *rq, const char *const *names, size_t n, const char **values);

/* A time parameter: RFC 3339 ("2026-11-28T09:00:00Z", with a fraction and
 * an offset allowed) or milliseconds since the epoch. */
int gw_api__parse_time(struct api_request *rq, const char *param, const char *text,
                       int64_t *ret_ns);
/* from/to of a period; the default is the 30 days up to now. */
int gw_api__parse_period(struct api_request *rq, const char *from, const char *to,
                         int64_t *ret_from, int64_t *ret_to);
/* A decimal int64 in [min, max]. */
int gw_api__parse_int(struct api_request *rq, const char *param, const char *text, int64_t min,
                      int64_t max, int64_t *ret);

/* Cursors: before_id, tied to the filters it was made for (context), as
 * an opaque string; a cursor altered or used with other filters does not
 * decode. */
#define API_CURSOR_LEN 33
void gw_api__cursor_encode(int64_t before_id, const char *context, char out[API_CURSOR_LEN]);
int gw_api__cursor_decode(const char *cursor, const char *context, int64_t *ret_before_id);

/* Appends s as a JSON string. */
int gw_api__json_string(struct gw_buf *b, const char *s);

/* ---- the web console's static files (gw_api_console.c) ------------- */

/* Files larger than this are not served (the console's are kilobytes). */
#define API_CONSOLE_MAX_FILE (2 * 1024 * 1024)

/* Answers the request if its path is the console's ("/console",
 * "/console/...", and "/" while the console is on) and returns true;
 * false: the API's routes decide. Needs no token. */
bool gw_api__console(struct api_request *rq);
/* The file a path below /console/ names, as the raw (undecoded) text
 * after "/console/" up to any query: "" is index.html. Writes the
 * relative path to out; -ENOENT when it is not one the console serves
 * (%-escapes, backslashes, empty, dot or hidden segments, characters
 * other than [A-Za-z0-9._-], too long). A pure function, for the tests. */
int gw_api__console_path(const char *raw, size_t len, char *out, size_t size);
/* The Content-Type of a file by its extension. */
const char *gw_api__console_type(const char *path);

/* ---- the handlers -------------------------------------------------- */

void gw_api__list_cases(struct api_request *rq, const struct api_path *path);
void gw_api__get_case(struct api_request *rq, const struct api_path *path);
void gw_api__report_case(struct api_request *rq, const struct api_path *path);
void gw_api__transition(struct api_request *rq, const struct api_path *path);
void gw_api__list_grids(struct api_request *rq, const struct api_path *path);
void gw_api__get_grid(struct api_request *rq, const struct api_path *path);
void gw_api__get_device(struct api_request *rq, const struct api_path *path);
void gw_api__stats(struct api_request *rq, const struct api_path *path);
void gw_api__reload_rules(struct api_request *rq, const struct api_path *path);
void gw_api__metrics(struct api_request *rq, const struct api_path *path);
void gw_api__healthz(struct api_request *rq, const struct api_path *path);
void gw_api__me(struct api_request *rq, const struct api_path *path);

#endif
