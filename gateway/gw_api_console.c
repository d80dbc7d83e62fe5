/* gw_api_console: the web console's static files (issue 9), served by the
 * API's own server so that the console needs no web stack of its own.
 *
 * The files are read from api.console_dir at each request, the directory
 * itself opened anew each time (nothing is cached: an upgrade of the
 * files, even one that replaces the directory, shows at the next load;
 * the files are a few small ones). They hold no data, so they need no token; what
 * the console shows comes from the API, with the token the user signs in
 * with. A path is served only when every segment is plain
 * ([A-Za-z0-9._-], not empty, not starting with a dot) and, walking from
 * the directory, each segment is a real directory or, at
 * the end, a regular file: no %-escape, no "..", no symbolic link is ever
 * followed below console_dir, so nothing outside it can be reached.
 * Everything else is 404.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_api.h"
#include "gw_api_int.h"
#include "gw_array.h"
#include "gw_config.h"
#include "gw_log.h"

#define MODULE "api"

/* Longest relative path served; the console's are a few dozen bytes. */
#define CONSOLE_PATH_MAX 256
#define CONSOLE_PREFIX "/console"
#define CONSOLE_INDEX "index.html"

static struct gw_log_limit console_log_limit = GW_LOG_LIMIT_INIT(1.0, 10.0);

/* ---- pure parts ------------------------------------------------------ */

static bool plain_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int gw_api__console_path(const char *raw, size_t len, char *out, size_t size)
{
    bool segment_start = true;

    if (len == 0) {
        if (size < sizeof(CONSOLE_INDEX))
            return -ENOENT;
        memcpy(out, CONSOLE_INDEX, sizeof(CONSOLE_INDEX));
        return 0;
    }
    if (len >= size || len >= CONSOLE_PATH_MAX)
        return -ENOENT;
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];

        if (c == '/') {
            if (segment_start) /* an empty segment: "//" or a leading "/" */
                return -ENOENT;
            segment_start = true;
            continue;
        }
        /* A dot first refuses ".", ".." and hidden files in one rule. */
        if (!plain_char(c) || (segment_start && c == '.'))
            return -ENOENT;
        segment_start = false;
    }
    if (segment_start) /* ends with "/": a directory */
        return -ENOENT;
    memcpy(out, raw, len);
    out[len] = '\0';
    return 0;
}

const char *gw_api__console_type(const char *path)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json; charset=utf-8"},
        {"txt", "text/plain; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"ico", "image/x-icon"},
        {"woff2", "font/woff2"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');

    for (size_t i = 0; dot && i < ARRAY_SIZE(types); i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* ---- files ------------------------------------------------------------ */

/* Opens rel (checked by gw_api__console_path) below the directory root,
 * following no symbolic link: each directory on the way is opened with
 * O_NOFOLLOW (a link there is ELOOP), and so is the file. Returns the
 * file's fd with *ret_size, or -ENOENT (also for what is not a regular
 * file), -EFBIG (over API_CONSOLE_MAX_FILE) or another negative errno. */
static int open_beneath(int root, const char *rel, uint64_t *ret_size)
{
    char copy[CONSOLE_PATH_MAX];
    char *seg = copy, *slash;
    int dir = root, fd, r;
    struct stat st;

    snprintf(copy, sizeof(copy), "%s", rel);
    while ((slash = strchr(seg, '/'))) {
        *slash = '\0';
        fd = openat(dir, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = -errno;
        if (dir != root)
            close(dir);
        if (fd < 0)
            return r;
        dir = fd;
        seg = slash + 1;
    }
    /* O_NONBLOCK: a FIFO put there must not hang the thread in open(). */
    fd = openat(dir, seg, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    r = fd < 0 ? -errno : 0;
    if (dir != root)
        close(dir);
    if (fd < 0)
        return r;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        r = -ENOENT;
    else if ((uint64_t)st.st_size > API_CONSOLE_MAX_FILE)
        r = -EFBIG;
    else if (fcntl(fd, F_SETFL, 0) < 0) /* libmicrohttpd reads it blocking */
        r = -errno;
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_size = (uint64_t)st.st_size;
    return fd;
}

/* The directory itself may be a link (the configured path is the
 * operator's); nothing below it may. */
static int open_root(const char *dir)
{
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

    return fd < 0 ? -errno : fd;
}

static int check_dir(const char *config, const char *dir, char **ret_error)
{
    int fd = open_root(dir);

    if (fd < 0) {
        if (asprintf(ret_error, "%s: api.console_dir: %s: %s (expected the console's directory)",
                     config, dir, strerror(-fd)) < 0)
            *ret_error = NULL;
        return -EINVAL;
    }
    uint64_t size;
    int index = open_beneath(fd, CONSOLE_INDEX, &size);
    if (index < 0) {
        if (asprintf(ret_error,
                     "%s: api.console_dir: %s/%s: %s (expected the console's files there: "
                     "cmake --install puts them in PREFIX/share/gridgate/console)",
                     config, dir, CONSOLE_INDEX,
                     index == -ENOENT  ? "no such regular file"
                     : index == -ELOOP ? "a symbolic link, which the console does not follow"
                                       : strerror(-index)) < 0)
            *ret_error = NULL;
        close(fd);
        return -EINVAL;
    }
    close(index);
    close(fd);
    return 0;
}

int gw_api_check_console(const struct gw_config *cfg, char **ret_error)
{
    const char *url = cfg->api.grafana_url;

    *ret_error = NULL;
    /* The URL goes into links the console shows: only a plain http(s)
     * address, nothing a browser would read as script or markup. */
    if (url && ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
                strpbrk(url, " \"'<>\\`{}|^") || strlen(url) > 512)) {
        if (asprintf(ret_error,
                     "%s: api.grafana_url: \"%.80s\" (expected http://HOST:PORT or https://..., "
                     "without spaces, quotes or braces)",
                     cfg->path, url) < 0)
            *ret_error = NULL;
        return -EINVAL;
    }
    for (const char *p = url; p && *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            if (asprintf(ret_error, "%s: api.grafana_url: a control character (expected a URL)",
                         cfg->path) < 0)
                *ret_error = NULL;
            return -EINVAL;
        }
    }
    if (!cfg->api.console_dir)
        return 0;
    return check_dir(cfg->path, cfg->api.console_dir, ret_error);
}

/* ---- answers ------------------------------------------------------------- */

static void redirect(struct api_request *rq)
{
    struct gw_buf none = GW_BUF_INIT;

    snprintf(rq->location, sizeof(rq->location), "%s/", CONSOLE_PREFIX);
    gw_api__respond(rq, 302, "text/plain; charset=utf-8", &none);
}

static void serve(struct api_request *rq, const char *raw, size_t len)
{
    char rel[CONSOLE_PATH_MAX];
    uint64_t size = 0;
    int root, fd;

    if (gw_api__console_path(raw, len, rel, sizeof(rel)) < 0) {
        gw_api__error(rq, 404, "not_found", "no such file");
        return;
    }
    root = open_root(rq->api->console_dir);
    fd = root < 0 ? root : open_beneath(root, rel, &size);
    if (root >= 0)
        close(root);
    if (fd < 0) {
        /* Missing, a directory, a link or something else: the same 404,
         * which tells nothing of what is there. An unreadable or oversized
         * file, or a directory gone, is the operator's to know about. */
        if (root < 0)
            gw_log_limited(&console_log_limit, GW_LOG_WARN, MODULE, "api.console_dir %s: %s",
                           rq->api->console_dir, strerror(-root));
        else if (fd == -EFBIG || fd == -EACCES)
            gw_log_limited(&console_log_limit, GW_LOG_WARN, MODULE,
                           "console file %s not served: %s", rel,
                           fd == -EFBIG ? "over 2 MiB" : strerror(-fd));
        gw_api__error(rq, 404, "not_found", "no such file");
        return;
    }
    rq->cache_control = "no-cache"; /* the files may change with an upgrade */
    gw_api__respond_fd(rq, 200, gw_api__console_type(rel), fd, size);
}

bool gw_api__console(struct api_request *rq)
{
    const char *raw = rq->raw_uri;
    size_t len = strcspn(raw, "?#");
    size_t plen = strlen(CONSOLE_PREFIX);
    bool on = rq->api->console_dir != NULL;
    bool root = len == 1 && raw[0] == '/';

    if (root && !on)
        return false;
    if (!root && (len < plen || strncmp(raw, CONSOLE_PREFIX, plen) != 0 ||
                  (len > plen && raw[plen] != '/')))
        return false;
    if (!on) {
        gw_api__error(rq, 404, "not_found", "the console is off (api.console_dir is not set)");
        return true;
    }
    if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
        rq->allow = "GET, HEAD";
        gw_api__error(rq, 405, "method_not_allowed", "the console's files take GET and HEAD");
        return true;
    }
    if (root || len == plen)
        redirect(rq);
    else
        serve(rq, raw + plen + 1, len - plen - 1);
    return true;
}
