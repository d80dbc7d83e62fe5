/* gw_api: the server and one request's life. See gw_api.h, and
 * gw_api_int.h for how the work is split between the files. */
#include "gw_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "gw_api_int.h"
#include "gw_array.h"
#include "gw_auth.h"
#include "gw_cases.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_pipeline.h"

#define MODULE "api"

/* Failed-login counters kept at once; more addresses than this share. */
#define LIMITER_SLOTS 4096
/* A body past the limit is read and thrown away (libmicrohttpd cannot
 * answer in the middle of one); past this many times the limit, the
 * connection is simply closed. */
#define DISCARD_FACTOR 16
#define CONNECTION_TIMEOUT_S 30
#define CONNECTION_MEMORY (64 * 1024)
/* Connections at once: with the memory and body limits, this bounds what
 * the API can hold (512 x (64 KiB + api.max_body_kb)); more wait in the
 * backlog or are refused. */
#define MAX_CONNECTIONS 512

static struct gw_log_limit mhd_log_limit = GW_LOG_LIMIT_INIT(1.0, 10.0);

/* Every answer, API or console file, carries the same policy: the console
 * runs only its own scripts and styles, talks only to this server, cannot
 * be framed, and leaks no URL to anyone (docs/api.md, "Headers"). */
#define CONTENT_SECURITY_POLICY                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* ---- answers --------------------------------------------------------- */

static void add_common_headers(struct api_request *rq, struct MHD_Response *response,
                               const char *content_type)
{
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL,
                            rq->cache_control ? rq->cache_control : "no-store");
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(response, "Content-Security-Policy", CONTENT_SECURITY_POLICY);
    MHD_add_response_header(response, "X-Frame-Options", "DENY");
    MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
    if (rq->location[0])
        MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, rq->location);
    if (rq->allow)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, rq->allow);
    if (rq->status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
}

/* Queues a response made for rq (NULL: it could not be made). */
static int queue(struct api_request *rq, int status, const char *content_type,
                 struct MHD_Response *response)
{
    enum MHD_Result queued;

    rq->answered = true;
    rq->status = status;
    if (!response) {
        rq->status = 500;
        return -ENOMEM;
    }
    add_common_headers(rq, response, content_type);
    queued = MHD_queue_response(rq->conn, (unsigned int)status, response);
    MHD_destroy_response(response);
    return queued == MHD_YES ? 0 : -EIO;
}

int gw_api__respond(struct api_request *rq, int status, const char *content_type,
                    struct gw_buf *body)
{
    struct MHD_Response *response;

    if (rq->answered) { /* a handler's bug; the first answer stands */
        gw_buf_free(body);
        return 0;
    }
    if (body->data)
        response = MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_FREE);
    else
        response = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (response)
        *body = (struct gw_buf)GW_BUF_INIT; /* the response owns the bytes now */
    else
        gw_buf_free(body);
    return queue(rq, status, content_type, response);
}

int gw_api__respond_fd(struct api_request *rq, int status, const char *content_type, int fd,
                       uint64_t size)
{
    struct MHD_Response *response;

    if (rq->answered) {
        close(fd);
        return 0;
    }
    /* The response closes fd when it is destroyed, not when it fails. */
    response = MHD_create_response_from_fd64(size, fd);
    if (!response)
        close(fd);
    return queue(rq, status, content_type, response);
}

int gw_api__respond_json(struct api_request *rq, int status, struct gw_buf *body)
{
    return gw_api__respond(rq, status, "application/json; charset=utf-8", body);
}

int gw_api__error(struct api_request *rq, int status, const char *code, const char *fmt, ...)
{
    struct gw_buf body = GW_BUF_INIT;
    char detail[512];
    va_list ap;
    int r;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    r = gw_buf_puts(&body, "{\"error\":");
    r = r ? r : gw_api__json_string(&body, code);
    r = r ? r : gw_buf_puts(&body, ",\"detail\":");
    r = r ? r : gw_api__json_string(&body, detail);
    r = r ? r : gw_buf_puts(&body, "}\n");
    if (r < 0) {
        gw_buf_free(&body);
        return r;
    }
    return gw_api__respond_json(rq, status, &body);
}

/* How much of the raw URI a log line shows: the path, at most 200 bytes.
 * Never the query, which holds whatever a client typed. */
static int logged_path_len(const struct api_request *rq)
{
    size_t n = strcspn(rq->raw_uri, "?#");

    return n > 200 ? 200 : (int)n;
}

int gw_api__fail(struct api_request *rq, int err, const char *why)
{
    static const struct {
        int err;
        int status;
        const char *code;
        const char *fallback;
    } map[] = {
        {-ENOENT, 404, "not_found", "no such case here"},
        {-EACCES, 403, "forbidden", "this token's role may not do that"},
        {-ESTALE, 409, "stale", "the case has changed since that version"},
        {-EBUSY, 409, "conflict", "the case's state does not allow that"},
        {-EINVAL, 400, "bad_request", "a bad argument"},
        {-EROFS, 503, "unavailable", "the case store takes no writes now"},
        {-ESHUTDOWN, 503, "unavailable", "the gateway is stopping"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(map); i++)
        if (map[i].err == err)
            return gw_api__error(rq, map[i].status, map[i].code, "%s",
                                 why && why[0] ? why : map[i].fallback);
    /* The store's own message is in the log already (store.h). */
    gw_error(MODULE, "%s %.*s failed: %s", rq->method, logged_path_len(rq), rq->raw_uri,
             strerror(-err));
    return gw_api__error(rq, 500, "internal", "the gateway failed; see its log");
}

/* ---- readers --------------------------------------------------------- */

struct gw_cases *gw_api__reader_get(struct gw_api *api)
{
    struct gw_cases *reader = NULL;

    pthread_mutex_lock(&api->readers_lock);
    for (;;) {
        for (size_t i = 0; i < api->n_readers && !reader; i++) {
            if (!api->reader_busy[i]) {
                api->reader_busy[i] = true;
                reader = api->readers[i];
            }
        }
        if (reader)
            break;
        pthread_cond_wait(&api->readers_free, &api->readers_lock);
    }
    pthread_mutex_unlock(&api->readers_lock);
    return reader;
}

void gw_api__reader_put(struct gw_api *api, struct gw_cases *reader)
{
    pthread_mutex_lock(&api->readers_lock);
    for (size_t i = 0; i < api->n_readers; i++)
        if (api->readers[i] == reader)
            api->reader_busy[i] = false;
    pthread_cond_signal(&api->readers_free);
    pthread_mutex_unlock(&api->readers_lock);
}

static int readers_open(struct gw_api *api, size_t n, char **ret_error)
{
    struct gw_cases_options options = {.db_path = api->cfg->store.path, .read_only = true};

    api->readers = calloc(n, sizeof(*api->readers));
    api->reader_busy = calloc(n, sizeof(*api->reader_busy));
    if (!api->readers || !api->reader_busy)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        api->readers[i] = gw_cases_open(&options, ret_error);
        if (!api->readers[i])
            return -EIO;
        api->n_readers = i + 1;
    }
    return 0;
}

static void readers_close(struct gw_api *api)
{
    for (size_t i = 0; i < api->n_readers; i++)
        gw_cases_close(api->readers[i]);
    free(api->readers);
    free(api->reader_busy);
}

/* ---- authentication ------------------------------------------------- */

static const char *bearer_token(struct MHD_Connection *conn)
{
    return gw_api__bearer(
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
}

/* Sets rq->actor, or answers 401 (429 once the address has failed too
 * often this minute) and returns -EACCES. Neither the token nor the
 * header is ever logged. */
static int authenticate(struct api_request *rq)
{
    const char *token = bearer_token(rq->conn);

    rq->actor = token ? gw_auth_lookup(rq->api->auth, token) : NULL;
    if (rq->actor)
        return 0;
    atomic_fetch_add(&rq->api->auth_failures, 1);
    if (gw_auth_limiter_hit(rq->api->limiter, rq->address, gw_now_ns())) {
        gw_api__error(rq, 429, "too_many_requests",
                      "too many failed logins from this address; wait a minute");
        return -EACCES;
    }
    gw_api__error(rq, 401, "unauthorized",
                  token ? "the token is not valid"
                        : "an Authorization: Bearer TOKEN header is required");
    return -EACCES;
}

/* ---- one request ----------------------------------------------------- */

static void handle(struct api_request *rq)
{
    struct api_route_match m;
    char *path;

    if (gw_api__console(rq)) /* static files, no token */
        return;
    path = gw_api__route_path(rq->raw_uri);
    if (path)
        gw_api__route_find(path, rq->method, &m);
    if (!path || !m.route || !m.route->public) {
        if (authenticate(rq) < 0)
            goto out;
    }
    if (!path || !m.path_known) {
        gw_api__error(rq, 404, "not_found", "no such resource");
    } else if (!m.route) {
        rq->allow = m.allow;
        gw_api__error(rq, 405, "method_not_allowed", "this resource takes %s", m.allow);
    } else {
        m.route->handler(rq, &m.path);
        if (!rq->answered) /* a handler that could not even make its answer */
            gw_api__error(rq, 500, "internal", "out of memory");
    }
out:
    rq->allow = NULL; /* pointed into m */
    free(path);
}

static void client_address(struct MHD_Connection *conn, char *out, size_t size)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = info ? info->client_addr : NULL;

    snprintf(out, size, "?");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

/* First call: the headers are in. A body announced larger than the limit
 * is refused before it is sent. */
static void request_begin(struct api_request *rq, struct MHD_Connection *conn, const char *method)
{
    const char *length =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;

    rq->started = true;
    rq->conn = conn;
    rq->method = method;
    client_address(conn, rq->address, sizeof(rq->address));
    if (length) {
        errno = 0;
        unsigned long long n = strtoull(length, &end, 10);
        if (errno == 0 && end != length && n > rq->api->max_body)
            gw_api__error(rq, 413, "payload_too_large", "the body is over %zu KiB",
                          rq->api->max_body / 1024);
    }
}

/* A piece of the body. Returns false to close the connection. */
static bool request_body(struct api_request *rq, const char *data, size_t size)
{
    size_t limit = rq->api->max_body;

    rq->body_seen += size;
    if (rq->answered)
        return true; /* answered early: libmicrohttpd discards the rest */
    if (rq->body_seen <= limit)
        return gw_buf_append(&rq->body, data, size) == 0;
    /* Over the limit: libmicrohttpd answers only once the body is in, so
     * the rest is read and dropped, up to a point. */
    gw_buf_free(&rq->body);
    return rq->body_seen <= limit * DISCARD_FACTOR;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct api_request *rq = *con_cls;

    (void)cls;
    (void)url; /* already %-decoded by libmicrohttpd: the raw one is checked instead */
    (void)version;
    if (!rq)
        return MHD_NO; /* out of memory when the request began */
    if (!rq->started) {
        request_begin(rq, conn, method);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool keep = request_body(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return keep ? MHD_YES : MHD_NO;
    }
    if (rq->answered)
        return MHD_YES;
    if (rq->body_seen > rq->api->max_body) {
        gw_api__error(rq, 413, "payload_too_large", "the body is over %zu KiB",
                      rq->api->max_body / 1024);
        return MHD_YES;
    }
    handle(rq);
    return MHD_YES;
}

/* Called with the raw URI before anything else: the request's state
 * starts here, so the raw path can be checked later. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct api_request *rq = calloc(1, sizeof(*rq));

    (void)conn;
    if (!rq)
        return NULL;
    rq->api = cls;
    rq->raw_uri = strdup(uri ? uri : "");
    rq->started_ns = gw_monotonic_ns();
    if (!rq->raw_uri) {
        free(rq);
        return NULL;
    }
    return rq;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    struct gw_api *api = cls;
    struct api_request *rq = *con_cls;

    (void)conn;
    if (!rq)
        return;
    if (rq->answered && rq->status >= 100 && rq->status < 600)
        atomic_fetch_add(&api->answered[rq->status / 100], 1);
    gw_debug(MODULE, "%s %.*s -> %d%s (%.1f ms, %s, %s)", rq->method ? rq->method : "?",
             logged_path_len(rq), rq->raw_uri, rq->answered ? rq->status : 0,
             why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)",
             (double)(gw_monotonic_ns() - rq->started_ns) / 1e6, rq->address,
             rq->actor ? rq->actor->name : "-");
    gw_buf_free(&rq->body);
    free(rq->raw_uri);
    free(rq);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages; fmt is its printf format. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[256];

    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    gw_log_limited(&mhd_log_limit, GW_LOG_WARN, MODULE, "libmicrohttpd: %s", line);
}

/* ---- start and stop -------------------------------------------------- */

static int set_error(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int set_error(char **ret_error, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(ret_error, fmt, ap) < 0)
        *ret_error = NULL;
    va_end(ap);
    return -EINVAL;
}

/* Binds api.listen:api.port ourselves, so that a taken port or a bad
 * address is reported as such (libmicrohttpd only says it failed). */
static int listen_socket(const struct gw_config *cfg, int *ret_fd, char **ret_error)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    int fd, one = 1, r;

    snprintf(port, sizeof(port), "%d", cfg->api.port);
    r = getaddrinfo(cfg->api.listen, port, &hints, &ai);
    if (r != 0)
        return set_error(ret_error, "api.listen: \"%s\": %s", cfg->api.listen, gai_strerror(r));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        r = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return set_error(ret_error, "api: cannot listen on %s:%d: %s", cfg->api.listen,
                         cfg->api.port, strerror(r));
    }
    freeaddrinfo(ai);
    *ret_fd = fd;
    return 0;
}

static int daemon_start(struct gw_api *api, int fd, char **ret_error)
{
    unsigned int threads = (unsigned int)api->cfg->api.threads;

    api->daemon = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, api,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api, /* first, so that it sees every message */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MAX_CONNECTIONS, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, api, MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_END);
    if (!api->daemon) {
        close(fd);
        return set_error(ret_error, "api: libmicrohttpd did not start on %s:%d (see the log)",
                         api->cfg->api.listen, api->cfg->api.port);
    }
    return 0;
}

struct gw_api *gw_api_start(const struct gw_config *cfg, const struct gw_registry *reg,
                            struct gw_pipeline *pipeline, char **ret_error)
{
    struct gw_api *api = calloc(1, sizeof(*api));
    int fd = -1;

    *ret_error = NULL;
    if (!api)
        return NULL;
    api->cfg = cfg;
    api->reg = reg;
    api->pipeline = pipeline;
    api->svc = gw_pipeline_casesvc(pipeline);
    api->max_body = (size_t)cfg->api.max_body_kb * 1024;
    pthread_mutex_init(&api->readers_lock, NULL);
    pthread_cond_init(&api->readers_free, NULL);

    api->auth = gw_auth_load(cfg->api.tokens, reg, ret_error);
    if (!api->auth || gw_api_check_console(cfg, ret_error) < 0)
        goto fail;
    api->console_dir = cfg->api.console_dir;
    if (gw_auth_count(api->auth) == 0)
        gw_warn(MODULE, "%s has no tokens: nobody can call the API (gridgate token new)",
                cfg->api.tokens);
    api->limiter = gw_auth_limiter_new(cfg->api.auth_failures, LIMITER_SLOTS);
    if (!api->limiter || readers_open(api, (size_t)cfg->api.threads, ret_error) < 0 ||
        listen_socket(cfg, &fd, ret_error) < 0 || daemon_start(api, fd, ret_error) < 0)
        goto fail;
    gw_info(MODULE, "listening on http://%s:%d/api/v1 (%d threads, %zu tokens)", cfg->api.listen,
            cfg->api.port, cfg->api.threads, gw_auth_count(api->auth));
    if (api->console_dir)
        gw_info(MODULE, "console on http://%s:%d/console/ from %s", cfg->api.listen,
                cfg->api.port, cfg->api.console_dir);
    return api;
fail:
    if (!*ret_error && asprintf(ret_error, "api: out of memory") < 0)
        *ret_error = NULL;
    gw_api_stop(api);
    return NULL;
}

void gw_api_stop(struct gw_api *api)
{
    if (!api)
        return;
    if (api->daemon) {
        MHD_stop_daemon(api->daemon); /* waits for the requests in progress */
        gw_info(MODULE, "stopped");
    }
    readers_close(api);
    gw_auth_limiter_free(api->limiter);
    gw_auth_free(api->auth);
    pthread_cond_destroy(&api->readers_free);
    pthread_mutex_destroy(&api->readers_lock);
    free(api);
}
