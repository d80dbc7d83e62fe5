#include "influxd_fixture.h"

#include "gw_buf.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 10000

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Binds 127.0.0.1:0 and leaves the socket open, so that a second call
 * cannot get the same port. */
static int bind_free_port(int *ret_fd)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return ntohs(addr.sin_port);
}

int influxd_fixture_free_port(void)
{
    int fd = -1;
    int port = bind_free_port(&fd);

    if (port > 0)
        close(fd);
    return port;
}

int influxd_fixture_init(struct influxd_fixture *f)
{
    return influxd_fixture_init_auth(f, 0);
}

int influxd_fixture_init_auth(struct influxd_fixture *f, int auth_enabled)
{
    const char *tmp = getenv("TMPDIR");
    char path[512];
    FILE *conf;
    int fd1 = -1, fd2 = -1;

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/gridgate-influxd-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        fprintf(stderr, "influxd_fixture: mkdtemp %s: %s\n", f->dir, strerror(errno));
        f->dir[0] = '\0';
        return -errno;
    }
    f->http_port = bind_free_port(&fd1);
    f->rpc_port = f->http_port > 0 ? bind_free_port(&fd2) : -1;
    if (fd1 >= 0)
        close(fd1);
    if (fd2 >= 0)
        close(fd2);
    if (f->http_port < 0 || f->rpc_port < 0) {
        fprintf(stderr, "influxd_fixture: no free loopback port\n");
        return -EADDRNOTAVAIL;
    }
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->http_port);

    snprintf(path, sizeof(path), "%s/influxdb.conf", f->dir);
    conf = fopen(path, "w");
    if (!conf) {
        fprintf(stderr, "influxd_fixture: %s: %s\n", path, strerror(errno));
        return -EIO;
    }
    /* Debian's influxd spells it reporting-enabled (upstream: reporting-disabled). */
    fprintf(conf,
            "reporting-enabled = false\n"
            "bind-address = \"127.0.0.1:%d\"\n"
            "[meta]\n  dir = \"%s/meta\"\n"
            "[data]\n  dir = \"%s/data\"\n  wal-dir = \"%s/wal\"\n  query-log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[http]\n  bind-address = \"127.0.0.1:%d\"\n  log-enabled = false\n"
            "  auth-enabled = %s\n",
            f->rpc_port, f->dir, f->dir, f->dir, f->http_port, auth_enabled ? "true" : "false");
    if (fclose(conf) != 0)
        return -EIO;
    return 0;
}

static int find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[1024];

    while (path && *path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);

        snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(buf, X_OK) == 0)
            return 0;
        path = colon ? colon + 1 : NULL;
    }
    return -ENOENT;
}

static void print_log(const struct influxd_fixture *f)
{
    char path[512], line[512];
    FILE *log;

    snprintf(path, sizeof(path), "%s/influxd.log", f->dir);
    log = fopen(path, "r");
    if (!log)
        return;
    fprintf(stderr, "influxd_fixture: --- %s ---\n", path);
    while (fgets(line, sizeof(line), log))
        fputs(line, stderr);
    fclose(log);
}

static size_t collect(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct gw_buf *b = userdata;

    if (b && gw_buf_append(b, data, size * nmemb) < 0)
        return 0;
    return size * nmemb;
}

/* GET when post is NULL. Returns the HTTP status or -EIO. */
static int http_auth(const char *url, const char *post, struct gw_buf *ret_body, long timeout_ms,
                     const char *user, const char *password)
{
    CURL *c = curl_easy_init();
    long status = 0;
    CURLcode rc;

    if (!c)
        return -EIO;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ret_body);
    if (post)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    if (user && *user) {
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, password);
    }
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? (int)status : -EIO;
}

static int http(const char *url, const char *post, struct gw_buf *ret_body, long timeout_ms)
{
    return http_auth(url, post, ret_body, timeout_ms, NULL, NULL);
}

int influxd_fixture_start(struct influxd_fixture *f)
{
    char conf[512], log[512], ping[128];
    long long give_up;
    int status;
    pid_t pid;

    if (find_in_path("influxd") < 0) {
        fprintf(stderr, "influxd_fixture: influxd is not on PATH; this test needs a real "
                        "InfluxDB 1.x (Debian: apt-get install influxdb)\n");
        return -ENOENT;
    }
    snprintf(conf, sizeof(conf), "%s/influxdb.conf", f->dir);
    snprintf(log, sizeof(log), "%s/influxd.log", f->dir);

    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);

        /* If the test dies, the server goes with it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (fd < 0 || null < 0)
            _exit(126);
        dup2(null, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execlp("influxd", "influxd", "-config", conf, (char *)NULL);
        _exit(127);
    }
    f->pid = pid;

    snprintf(ping, sizeof(ping), "%s/ping", f->url);
    give_up = now_ms() + READY_TIMEOUT_MS;
    while (now_ms() < give_up) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            f->pid = 0;
            fprintf(stderr, "influxd_fixture: influxd exited (status %d) before it was ready\n",
                    WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
            print_log(f);
            return -ECHILD;
        }
        if (http(ping, NULL, NULL, 500) == 204)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "influxd_fixture: influxd not ready on %s after %d ms\n", f->url,
            READY_TIMEOUT_MS);
    print_log(f);
    influxd_fixture_stop(f);
    return -ETIMEDOUT;
}

void influxd_fixture_stop(struct influxd_fixture *f)
{
    long long give_up = now_ms() + STOP_TIMEOUT_MS;

    if (f->pid <= 0)
        return;
    kill(f->pid, SIGTERM);
    while (waitpid(f->pid, NULL, WNOHANG) == 0) {
        if (now_ms() >= give_up) {
            fprintf(stderr, "influxd_fixture: influxd %d ignored SIGTERM, killing it\n",
                    (int)f->pid);
            kill(f->pid, SIGKILL);
            waitpid(f->pid, NULL, 0);
            break;
        }
        sleep_ms(20);
    }
    f->pid = 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void influxd_fixture_destroy(struct influxd_fixture *f)
{
    influxd_fixture_stop(f);
    if (f->dir[0])
        nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    f->dir[0] = '\0';
}

int influxd_fixture_query(const struct influxd_fixture *f, const char *db, const char *q,
                          struct gw_buf *ret_body)
{
    struct gw_buf url = GW_BUF_INIT;
    char *eq = curl_easy_escape(NULL, q, 0);
    char *edb = db ? curl_easy_escape(NULL, db, 0) : NULL;
    int r = -EIO;

    if (eq && (!db || edb) &&
        gw_buf_printf(&url, "%s/query?epoch=ns%s%s", f->url, db ? "&db=" : "", db ? edb : "") ==
            0) {
        struct gw_buf form = GW_BUF_INIT;
        if (gw_buf_printf(&form, "q=%s", eq) == 0)
            r = http_auth(url.data, form.data, ret_body, 10000, f->user, f->password);
        gw_buf_free(&form);
    }
    curl_free(eq);
    curl_free(edb);
    gw_buf_free(&url);
    return r;
}

int influxd_fixture_create_db(const struct influxd_fixture *f, const char *db)
{
    struct gw_buf q = GW_BUF_INIT;
    int r = -EIO;

    if (gw_buf_printf(&q, "CREATE DATABASE \"%s\"", db) == 0 &&
        influxd_fixture_query(f, NULL, q.data, NULL) == 200)
        r = 0;
    gw_buf_free(&q);
    return r;
}

long long influxd_fixture_count(const struct influxd_fixture *f, const char *db,
                                const char *measurement, const char *field)
{
    struct gw_buf q = GW_BUF_INIT;
    struct gw_buf body = GW_BUF_INIT;
    long long count = -EIO;
    const char *p;

    if (gw_buf_printf(&q, "SELECT count(\"%s\") FROM \"%s\"", field, measurement) < 0 ||
        influxd_fixture_query(f, db, q.data, &body) != 200 || !body.data)
        goto out;
    if (strstr(body.data, "\"error\"")) {
        fprintf(stderr, "influxd_fixture: %s: %s\n", q.data, body.data);
        goto out;
    }
    /* {"results":[{"statement_id":0,"series":[{...,"values":[[0,N]]}]}]} */
    p = strstr(body.data, "\"values\":[[");
    if (!p) {
        count = 0; /* no series: no points */
        goto out;
    }
    p = strchr(p, ',');
    if (p)
        count = strtoll(p + 1, NULL, 10);
out:
    gw_buf_free(&q);
    gw_buf_free(&body);
    return count;
}
