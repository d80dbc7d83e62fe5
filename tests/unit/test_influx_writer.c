/* influx_writer against a real influxd on loopback (influxd_fixture). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gw_buf.h"
#include "gw_log.h"
#include "influx_writer.h"
#include "influxd_fixture.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* One server for every test but the one that starts its own late. */
static struct influxd_fixture server;

static int64_t now_ms(void)
{
    return gw_monotonic_ns() / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (influxd_fixture_init(&server) < 0)
        return -1;
    if (influxd_fixture_start(&server) < 0) {
        print_error("cannot start influxd for test_influx_writer (see above)\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    influxd_fixture_destroy(&server);
    return 0;
}

static struct influx_writer *start_writer(const char *url, const char *db, int batch,
                                          int interval_ms, size_t queue_bytes)
{
    struct influx_writer_options o = {
        .url = url,
        .database = db,
        .batch_size = batch,
        .flush_interval_ms = interval_ms,
        .timeout_ms = 3000,
        .queue_bytes = queue_bytes,
    };
    char *error = NULL;
    struct influx_writer *w = influx_writer_start(&o, &error);

    if (!w)
        fail_msg("influx_writer_start: %s", error ? error : "(no message)");
    return w;
}

/* n lines of measurement m with an integer, a float, a string and a bool. */
static void make_lines(struct gw_buf *b, const char *m, int first, int n)
{
    for (int i = first; i < first + n; i++)
        assert_int_equal(gw_buf_printf(b, "%s,dev=d%d i=%di,f=%d.5,s=\"s %d\",b=%s %lld\n", m,
                                       i % 7, i, i, i, i % 2 ? "true" : "false",
                                       1700000000000000000LL + i),
                         0);
}

static struct influx_writer_stats stats_of(struct influx_writer *w)
{
    struct influx_writer_stats s;
    influx_writer_stats(w, &s);
    return s;
}

/* Polls a counter of the stats until it reaches target or timeout_ms passes. */
static bool wait_stat(struct influx_writer *w, size_t field, uint64_t target, int timeout_ms)
{
    int64_t give_up = now_ms() + timeout_ms;

    for (;;) {
        struct influx_writer_stats s = stats_of(w);
        uint64_t v = *(const uint64_t *)((const char *)&s + field);
        if (v >= target)
            return true;
        if (now_ms() >= give_up)
            return false;
        sleep_ms(10);
    }
}

#define STAT(name) offsetof(struct influx_writer_stats, name)

/* ---- stderr capture: the loud log lines are part of the contract ---- */

struct captured {
    int saved;
    char path[300];
};

static void capture_begin(struct captured *c)
{
    int fd;

    snprintf(c->path, sizeof(c->path), "%s/stderr-XXXXXX", server.dir);
    fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Restores stderr, echoes what was captured and returns it (caller frees). */
static char *capture_end(struct captured *c)
{
    struct gw_buf b = GW_BUF_INIT;

    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    assert_int_equal(gw_buf_read_file(&b, c->path, 1 << 20), 0);
    fputs(b.data ? b.data : "", stderr);
    unlink(c->path);
    return b.data ? b.data : strdup("");
}

static char *read_text(const char *path)
{
    struct gw_buf b = GW_BUF_INIT;

    if (gw_buf_read_file(&b, path, 1 << 20) < 0)
        return NULL;
    return b.data ? b.data : strdup("");
}

static void test_lines_are_queryable_with_types(void **state)
{
    struct gw_buf lines = GW_BUF_INIT;
    struct gw_buf answer = GW_BUF_INIT;
    struct influx_writer_stats s;
    struct influx_writer *w;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "types"), 0);
    w = start_writer(server.url, "types", 50, 20, 0);
    for (int i = 0; i < 12; i++) {
        gw_buf_reset(&lines);
        make_lines(&lines, "reading", i * 10, 10);
        assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 10), 0);
    }
    assert_true(wait_stat(w, STAT(points_written), 120, 10000));

    s = stats_of(w);
    assert_int_equal(s.points_written, 120);
    assert_int_equal(s.points_rejected, 0);
    assert_int_equal(s.write_errors, 0);
    assert_int_equal(s.points_dropped, 0);
    assert_int_equal(s.queue_bytes, 0);
    assert_int_equal(s.queue_lines, 0);
    assert_true(s.batches_written >= 3); /* 120 lines, 50 per batch */
    assert_true(s.last_latency_us > 0);
    assert_true(s.max_latency_us >= s.last_latency_us);
    influx_writer_stop(w, 5000);

    assert_int_equal(influxd_fixture_count(&server, "types", "reading", "i"), 120);
    assert_int_equal(influxd_fixture_count(&server, "types", "reading", "s"), 120);
    assert_int_equal(
        influxd_fixture_query(&server, "types", "SHOW FIELD KEYS FROM reading", &answer), 200);
    assert_non_null(strstr(answer.data, "[\"b\",\"boolean\"]"));
    assert_non_null(strstr(answer.data, "[\"f\",\"float\"]"));
    assert_non_null(strstr(answer.data, "[\"i\",\"integer\"]"));
    assert_non_null(strstr(answer.data, "[\"s\",\"string\"]"));

    gw_buf_reset(&answer);
    assert_int_equal(influxd_fixture_query(&server, "types",
                                           "SELECT s FROM reading WHERE time = 1700000000000000042",
                                           &answer),
                     200);
    assert_non_null(strstr(answer.data, "\"s 42\""));
    gw_buf_free(&answer);
    gw_buf_free(&lines);
}

/* Count-triggered batches: the flush interval is far away, yet full batches
 * go at once; what is left goes on shutdown. */
static void test_batches_by_count_and_drain_on_stop(void **state)
{
    struct gw_buf lines = GW_BUF_INIT;
    struct influx_writer_stats s;
    struct influx_writer *w;
    int64_t t0;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "batches"), 0);
    w = start_writer(server.url, "batches", 1000, 60000, 0);
    make_lines(&lines, "reading", 0, 4500);
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 4500), 0);
    assert_true(wait_stat(w, STAT(points_written), 4000, 10000));
    sleep_ms(200);
    s = stats_of(w);
    assert_int_equal(s.points_written, 4000);
    assert_int_equal(s.batches_written, 4);
    assert_int_equal(s.queue_lines, 500);

    t0 = now_ms();
    influx_writer_shutdown(w, 5000);
    assert_true(now_ms() - t0 < 2000);
    s = stats_of(w);
    assert_int_equal(s.points_written, 4500);
    assert_int_equal(s.batches_written, 5); /* ceil(4500 / 1000) */
    assert_int_equal(s.points_dropped, 0);
    assert_int_equal(s.queue_bytes, 0);
    assert_int_equal(influx_writer_submit(w, "x v=1i\n", 7, 1), -ESHUTDOWN);
    influx_writer_stop(w, 0);

    assert_int_equal(influxd_fixture_count(&server, "batches", "reading", "i"), 4500);
    gw_buf_free(&lines);
}

/* Time-triggered batch: a few lines wait for the flush interval, no more. */
static void test_batches_by_time(void **state)
{
    struct gw_buf lines = GW_BUF_INIT;
    struct gw_buf url = GW_BUF_INIT;
    struct influx_writer *w;
    int64_t t0, waited;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "timed"), 0);
    assert_int_equal(gw_buf_printf(&url, "%s/", server.url), 0); /* trailing slash is fine */
    w = start_writer(url.data, "timed", 1000, 300, 0);
    make_lines(&lines, "reading", 0, 30);
    t0 = now_ms();
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 30), 0);
    assert_true(wait_stat(w, STAT(points_written), 30, 5000));
    waited = now_ms() - t0;
    assert_true(waited >= 250);
    assert_true(waited < 2000);
    assert_int_equal(stats_of(w).batches_written, 1);
    influx_writer_stop(w, 1000);
    assert_int_equal(influxd_fixture_count(&server, "timed", "reading", "i"), 30);
    gw_buf_free(&lines);
    gw_buf_free(&url);
}

/* A 400 partial write: InfluxDB 1.x keeps the good lines; the writer counts
 * the bad ones and does not retry. */
static void test_partial_write_keeps_good_lines(void **state)
{
    static const char first[] = "m v=1i 1\n";
    static const char conflict[] = "m v=2i 2\nm v=2.5 3\nm v=4i 4\n";
    static const char unparsable[] = "m v=5i 5\nnot line protocol\nm v=6i 6\n";
    struct influx_writer_stats s;
    struct influx_writer *w;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "partial"), 0);
    w = start_writer(server.url, "partial", 100, 20, 0);

    assert_int_equal(influx_writer_submit(w, first, sizeof(first) - 1, 1), 0);
    assert_true(wait_stat(w, STAT(points_written), 1, 5000));
    /* v is an integer now: the float line is a field type conflict */
    assert_int_equal(influx_writer_submit(w, conflict, sizeof(conflict) - 1, 3), 0);
    assert_true(wait_stat(w, STAT(points_rejected), 1, 5000));
    assert_int_equal(influx_writer_submit(w, unparsable, sizeof(unparsable) - 1, 3), 0);
    assert_true(wait_stat(w, STAT(points_rejected), 2, 5000));
    assert_true(wait_stat(w, STAT(points_written), 5, 5000));

    s = stats_of(w);
    assert_int_equal(s.points_written, 5);
    assert_int_equal(s.points_rejected, 2);
    assert_int_equal(s.batches_written, 1);
    assert_int_equal(s.write_errors, 2);
    assert_int_equal(s.retries, 0);
    assert_int_equal(s.queue_lines, 0);
    influx_writer_stop(w, 1000);
    assert_int_equal(influxd_fixture_count(&server, "partial", "m", "v"), 5);
}

/* InfluxDB down when the writer starts: it retries, lines keep queueing,
 * and once a server appears on that port everything lands. */
static void test_retries_until_influxd_is_up(void **state)
{
    struct influxd_fixture late;
    struct gw_buf lines = GW_BUF_INIT;
    struct influx_writer_stats s;
    struct influx_writer *w;
    struct captured cap;
    uint64_t errors;
    char *log;

    (void)state;
    assert_int_equal(influxd_fixture_init(&late), 0);
    w = start_writer(late.url, "late", 100, 20, 0);
    make_lines(&lines, "reading", 0, 250);
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 250), 0);
    /* 250 lines in batches of 100: the default two in flight fail at once,
     * so four failures mean at least two retries. */
    assert_true(wait_stat(w, STAT(write_errors), 4, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 0);
    assert_true(s.retries >= 2);
    assert_int_equal(s.queue_lines, 250);

    gw_buf_reset(&lines);
    make_lines(&lines, "reading", 250, 100);
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 100), 0);
    assert_int_equal(stats_of(w).queue_lines, 350);

    /* The server is up but the database is not: 404, retried like the rest. */
    errors = stats_of(w).write_errors;
    assert_int_equal(influxd_fixture_start(&late), 0);
    capture_begin(&cap);
    assert_true(wait_stat(w, STAT(last_status), 404, 10000));
    log = capture_end(&cap);
    assert_true(stats_of(w).write_errors > errors);
    assert_int_equal(stats_of(w).points_written, 0);
    assert_non_null(strstr(log, " error [influx] NOT WRITING"));
    assert_non_null(strstr(log, "database \"late\" does not exist (HTTP 404"));
    free(log);
    assert_int_equal(influxd_fixture_create_db(&late, "late"), 0);
    assert_true(wait_stat(w, STAT(points_written), 350, 15000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 350);
    assert_int_equal(s.points_dropped, 0);
    assert_int_equal(s.points_rejected, 0);
    influx_writer_stop(w, 2000);
    assert_int_equal(influxd_fixture_count(&late, "late", "reading", "i"), 350);
    influxd_fixture_destroy(&late);
    gw_buf_free(&lines);
}

struct blocked_submit {
    struct influx_writer *w;
    const char *text;
    size_t len;
    size_t n_lines;
    int result;
    atomic_bool done;
};

static void *submit_thread(void *arg)
{
    struct blocked_submit *b = arg;

    b->result = influx_writer_submit(b->w, b->text, b->len, b->n_lines);
    atomic_store(&b->done, true);
    return NULL;
}

/* No server at all: the queue fills to its bound, a submitter blocks, and
 * shutdown wakes it with -ESHUTDOWN and counts what it had to drop. */
static void test_back_pressure_and_shutdown(void **state)
{
    static const char line[] = "m,dev=d1 v=1i 1700000000000000000\n"; /* 35 bytes */
    struct blocked_submit b = { 0 };
    struct gw_buf url = GW_BUF_INIT;
    struct influx_writer_stats s;
    struct influx_writer *w;
    pthread_t thread;
    size_t queued = 0;
    int64_t t0;

    (void)state;
    assert_int_equal(gw_buf_printf(&url, "http://127.0.0.1:%d", influxd_fixture_free_port()), 0);
    w = start_writer(url.data, "nowhere", 10, 10, 1000);

    assert_int_equal(influx_writer_submit(w, line, sizeof(line) - 2, 1), -EINVAL); /* no \n */
    assert_int_equal(influx_writer_submit(w, line, sizeof(line) - 1, 2), -EINVAL); /* count */
    assert_int_equal(influx_writer_submit(w, "", 0, 0), 0);

    while (queued + sizeof(line) - 1 <= 1000) {
        assert_int_equal(influx_writer_submit(w, line, sizeof(line) - 1, 1), 0);
        queued += sizeof(line) - 1;
    }
    s = stats_of(w);
    assert_int_equal(s.queue_bytes, queued);

    b.w = w;
    b.text = line;
    b.len = sizeof(line) - 1;
    b.n_lines = 1;
    atomic_init(&b.done, false);
    assert_int_equal(pthread_create(&thread, NULL, submit_thread, &b), 0);
    sleep_ms(300);
    assert_false(atomic_load(&b.done)); /* blocked: the queue is full */
    s = stats_of(w);
    assert_true(s.queue_bytes <= 1000);
    assert_int_equal(s.points_written, 0);
    assert_true(s.write_errors >= 1);

    t0 = now_ms();
    influx_writer_shutdown(w, 300);
    assert_true(now_ms() - t0 < 1500);
    pthread_join(thread, NULL);
    assert_int_equal(b.result, -ESHUTDOWN);
    assert_int_equal(influx_writer_submit(w, line, sizeof(line) - 1, 1), -ESHUTDOWN);

    s = stats_of(w);
    assert_int_equal(s.points_dropped, queued / (sizeof(line) - 1));
    assert_int_equal(s.points_written, 0);
    assert_int_equal(s.queue_bytes, 0);
    assert_int_equal(s.queue_lines, 0);
    influx_writer_shutdown(w, 300); /* a second call does nothing */
    influx_writer_stop(w, 0);
    influx_writer_stop(NULL, 0);
    gw_buf_free(&url);
}

/* Database and retention policy names are URL-escaped. */
static void test_escaped_database_and_retention_policy(void **state)
{
    static const char text[] = "m v=1i 1\nm v=2i 2\n";
    struct influx_writer_options o = {
        .url = server.url,
        .database = "grid gate&x=1",
        .retention_policy = "autogen",
        .flush_interval_ms = 10,
    };
    struct influx_writer *w;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "grid gate&x=1"), 0);
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, text, sizeof(text) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(points_written), 2, 5000));
    influx_writer_stop(w, 1000);
    assert_int_equal(influxd_fixture_count(&server, "grid gate&x=1", "m", "v"), 2);
}

/* A server that accepts connections and never answers: shutdown still
 * keeps to its drain deadline instead of the request timeout. */
static void test_shutdown_bounded_when_server_hangs(void **state)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    socklen_t len = sizeof(addr);
    struct influx_writer_options o = { .database = "x", .timeout_ms = 20000 };
    struct gw_buf url = GW_BUF_INIT;
    struct influx_writer *w;
    int64_t t0;
    int fd;

    (void)state;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 8), 0); /* the kernel completes handshakes; nobody reads */
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    assert_int_equal(gw_buf_printf(&url, "http://127.0.0.1:%d", ntohs(addr.sin_port)), 0);
    o.url = url.data;
    o.flush_interval_ms = 1;

    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, "m v=1i\n", 7, 1), 0);
    sleep_ms(200); /* the POST is in flight */
    t0 = now_ms();
    influx_writer_shutdown(w, 300);
    assert_true(now_ms() - t0 < 1000);
    assert_int_equal(stats_of(w).points_dropped, 1);
    influx_writer_stop(w, 0);
    close(fd);
    gw_buf_free(&url);
}

static void test_bad_options(void **state)
{
    struct influx_writer_options o = { .url = "ftp://127.0.0.1:1", .database = "x" };
    char *error = NULL;

    (void)state;
    assert_null(influx_writer_start(&o, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, "http"));
    free(error);

    o.url = "http://127.0.0.1:1";
    o.database = NULL;
    error = NULL;
    assert_null(influx_writer_start(&o, &error));
    assert_non_null(strstr(error, "database"));
    free(error);

    o.database = "x";
    o.batch_size = -1;
    error = NULL;
    assert_null(influx_writer_start(&o, &error));
    assert_non_null(strstr(error, "batch_size"));
    free(error);

    o.batch_size = 0;
    for (int i = 0; i < 2; i++) {
        o.max_in_flight = i == 0 ? -1 : INFLUX_WRITER_MAX_IN_FLIGHT + 1;
        error = NULL;
        assert_null(influx_writer_start(&o, &error));
        assert_non_null(strstr(error, "max_in_flight"));
        free(error);
    }
    o.max_in_flight = 0;

    o.url = "http://127.0.0.1:1/?db=x";
    assert_null(influx_writer_start(&o, NULL));

    /* a single submit larger than the whole bound can never fit */
    o.url = "http://127.0.0.1:1";
    o.queue_bytes = 4;
    struct influx_writer *w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, "m v=1i\n", 7, 1), -EMSGSIZE);
    influx_writer_stop(w, 0);
}

/* gzip on and off: the real influxd takes both. */
static void test_gzip_on_and_off(void **state)
{
    struct gw_buf lines = GW_BUF_INIT;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "gz"), 0);
    make_lines(&lines, "reading", 0, 3000);
    for (int gzip = 0; gzip <= 1; gzip++) {
        struct influx_writer_options o = {
            .url = server.url,
            .database = "gz",
            .gzip = gzip,
            .batch_size = 1000,
            .flush_interval_ms = 20,
        };
        struct influx_writer *w = influx_writer_start(&o, NULL);
        struct influx_writer_stats s;

        assert_non_null(w);
        /* the same points twice: InfluxDB overwrites, the count stays */
        assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 3000), 0);
        assert_true(wait_stat(w, STAT(lines_done), 3000, 10000));
        s = stats_of(w);
        assert_int_equal(s.points_written, 3000);
        assert_int_equal(s.write_errors, 0);
        assert_int_equal(s.last_status, 204);
        influx_writer_stop(w, 1000);
        assert_int_equal(influxd_fixture_count(&server, "gz", "reading", "i"), 3000);
    }
    gw_buf_free(&lines);
}

/* 400s: the refused lines go to the dead-letter file after a comment with
 * InfluxDB's reason, are counted, and never sent again; lines_done moves
 * on. An unparsable line is named by InfluxDB: only it is dead-lettered.
 * A type conflict names one field: the lines with that field of that type,
 * when they are as many as InfluxDB dropped; else the whole batch, with how
 * many were refused. */
static void test_dead_letter(void **state)
{
    static const char first[] = "m v=1i,w=1i 1\n";
    static const char unparsable[] = "m v=5i 5\nnot line protocol\nm v=6i 6\nm,t=a\\ b v= 7\n";
    static const char conflict[] = "m v=2i 2\nm v=2.5 3\nm v=4i 4\n";
    static const char odd_first[] = "m\\,x,t=1 a\\ b=1i 10\n";
    static const char odd[] = "m\\,x,t=2 c=\"x \\\" y\",a\\ b=1.5 11\nm\\,x a\\ b=2i 12\n";
    static const char two[] = "m v=7.5 14\nm w=1i 15\nm w=true 16\n";
    char path[300];
    struct influx_writer_options o = {
        .url = server.url,
        .database = "dead",
        .gzip = true,
        .dead_letter_path = path,
        .batch_size = 100,
        .flush_interval_ms = 10,
    };
    struct influx_writer_stats s;
    struct influx_writer *w;
    struct stat st;
    char *text, *p;

    (void)state;
    snprintf(path, sizeof(path), "%s/rejected.lp", server.dir);
    assert_int_equal(influxd_fixture_create_db(&server, "dead"), 0);
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    /* created at start, 0640 (at most: the umask may take more away) */
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0137, 0);
    assert_int_equal(st.st_size, 0);

    assert_int_equal(influx_writer_submit(w, first, sizeof(first) - 1, 1), 0);
    assert_true(wait_stat(w, STAT(lines_done), 1, 5000));
    assert_int_equal(influx_writer_submit(w, unparsable, sizeof(unparsable) - 1, 4), 0);
    assert_true(wait_stat(w, STAT(lines_done), 5, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 3);
    assert_int_equal(s.points_rejected, 2);
    assert_int_equal(s.points_dead_lettered, 2);
    assert_int_equal(s.dead_letter_errors, 0);
    assert_int_equal(s.last_status, 400);

    assert_int_equal(influx_writer_submit(w, conflict, sizeof(conflict) - 1, 3), 0);
    assert_true(wait_stat(w, STAT(lines_done), 8, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 5);
    assert_int_equal(s.points_rejected, 3);
    assert_int_equal(s.points_dead_lettered, 3); /* the float line */

    /* escaped names: InfluxDB's message has them unescaped */
    assert_int_equal(influx_writer_submit(w, odd_first, sizeof(odd_first) - 1, 1), 0);
    assert_true(wait_stat(w, STAT(lines_done), 9, 5000));
    assert_int_equal(influx_writer_submit(w, odd, sizeof(odd) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(lines_done), 11, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_rejected, 4);
    assert_int_equal(s.points_dead_lettered, 4);

    /* two conflicts, one named: not enough to tell, the whole batch */
    assert_int_equal(influx_writer_submit(w, two, sizeof(two) - 1, 3), 0);
    assert_true(wait_stat(w, STAT(lines_done), 14, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 8);
    assert_int_equal(s.points_rejected, 6);
    assert_int_equal(s.points_dead_lettered, 7);
    assert_int_equal(s.retries, 0);
    assert_int_equal(s.queue_lines, 0);
    influx_writer_stop(w, 1000);
    assert_int_equal(influxd_fixture_count(&server, "dead", "m", "v"), 5);

    text = read_text(path);
    assert_non_null(text);
    fprintf(stderr, "--- %s ---\n%s---\n", path, text);
    /* "# 2026-11-28T09:50:00.123Z unable to parse: invalid field format\n<line>\n" */
    p = text;
    assert_true(strncmp(p, "# ", 2) == 0 && p[6] == '-' && p[12] == 'T' && p[25] == 'Z');
    p = strchr(p, '\n') + 1;
    assert_true(strncmp(p, "not line protocol\n", 18) == 0);
    assert_non_null(strstr(text, "Z unable to parse: invalid field format\nnot line protocol\n"));
    assert_non_null(strstr(text, "Z unable to parse: "));
    assert_non_null(strstr(text, "\nm,t=a\\ b v= 7\n#"));
    assert_non_null(strstr(text, "Z partial write: field type conflict: input field \"v\" on "
                                 "measurement \"m\" is type float, already exists as type "
                                 "integer dropped=1\nm v=2.5 3\n#"));
    assert_null(strstr(text, "m v=2i 2"));
    assert_non_null(strstr(text, "Z partial write: field type conflict: input field \"a b\" on "
                                 "measurement \"m,x\" is type float, already exists as type "
                                 "integer dropped=1\nm\\,x,t=2 c=\"x \\\" y\",a\\ b=1.5 11\n#"));
    assert_null(strstr(text, "b=2i 12"));
    assert_non_null(strstr(text, "Z InfluxDB refused 2 of the 3 lines below and kept the others, "
                                 "without saying which: partial write: field type conflict: "
                                 "input field \"v\""));
    assert_non_null(strstr(text, "dropped=2\nm v=7.5 14\nm w=1i 15\nm w=true 16\n"));
    /* 2 comment lines for the unparsable lines, 1 per named conflict, 1
     * for the whole batch */
    {
        int comments = 0;
        for (p = text; (p = strstr(p, "\n# ")) != NULL; p++)
            comments++;
        assert_int_equal(comments + 1, 5);
    }
    free(text);
}

/* The dead-letter file cannot be opened: start fails and says why; it
 * becomes unwritable later: the refused lines are counted as lost, the
 * writer goes on. */
static void test_dead_letter_unwritable(void **state)
{
    static const char bad[] = "m v=1i 1\nnonsense\n";
    char path[300];
    struct influx_writer_options o = {
        .url = server.url,
        .database = "deadfail",
        .dead_letter_path = path,
        .flush_interval_ms = 10,
    };
    struct influx_writer_stats s;
    struct influx_writer *w;
    char *error = NULL;

    (void)state;
    assert_int_equal(influxd_fixture_create_db(&server, "deadfail"), 0);
    /* A missing directory is made; a file where the directory should be
     * cannot be. */
    snprintf(path, sizeof(path), "%s/in-the-way", server.dir);
    FILE *in_the_way = fopen(path, "w");
    assert_non_null(in_the_way);
    fclose(in_the_way);
    snprintf(path, sizeof(path), "%s/in-the-way/rejected.lp", server.dir);
    assert_null(influx_writer_start(&o, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, "dead-letter file"));
    assert_non_null(strstr(error, "Not a directory"));
    free(error);
    o.dead_letter_path = "";
    assert_null(influx_writer_start(&o, NULL));

    snprintf(path, sizeof(path), "%s/later.lp", server.dir);
    o.dead_letter_path = path;
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    /* a directory where the file was: even root cannot write it */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(influx_writer_submit(w, bad, sizeof(bad) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(lines_done), 2, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 1);
    assert_int_equal(s.points_rejected, 1);
    assert_int_equal(s.points_dead_lettered, 0);
    assert_int_equal(s.dead_letter_errors, 1);
    influx_writer_stop(w, 1000);
    rmdir(path);
}

/* InfluxDB with authentication: wrong password, 401, logged loudly and
 * retried with nothing thrown away; the operator fixes the password on the
 * server and the writer catches up. */
static void test_401_then_fixed(void **state)
{
    struct influxd_fixture secure;
    struct gw_buf lines = GW_BUF_INIT;
    struct influx_writer_options o = {
        .database = "sec",
        .username = "gw",
        .password = "right",
        .batch_size = 100,
        .flush_interval_ms = 10,
        .gzip = true,
    };
    struct captured cap;
    struct influx_writer_stats s;
    struct influx_writer *w;
    char *log;

    (void)state;
    assert_int_equal(influxd_fixture_init_auth(&secure, 1), 0);
    assert_int_equal(influxd_fixture_start(&secure), 0);
    assert_int_equal(influxd_fixture_query(&secure, NULL,
                                           "CREATE USER admin WITH PASSWORD 'adm' WITH ALL "
                                           "PRIVILEGES",
                                           NULL),
                     200);
    snprintf(secure.user, sizeof(secure.user), "admin");
    snprintf(secure.password, sizeof(secure.password), "adm");
    assert_int_equal(influxd_fixture_create_db(&secure, "sec"), 0);
    assert_int_equal(
        influxd_fixture_query(&secure, NULL, "CREATE USER gw WITH PASSWORD 'wrong'", NULL), 200);
    assert_int_equal(influxd_fixture_query(&secure, NULL, "GRANT WRITE ON sec TO gw", NULL), 200);

    o.url = secure.url;
    capture_begin(&cap);
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    make_lines(&lines, "reading", 0, 250);
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 250), 0);
    /* two batches in flight fail at once: four failures, two retries */
    assert_true(wait_stat(w, STAT(write_errors), 4, 5000));
    s = stats_of(w);
    log = capture_end(&cap);
    assert_int_equal(s.last_status, 401);
    assert_int_equal(s.points_written, 0);
    assert_int_equal(s.lines_done, 0);
    assert_int_equal(s.queue_lines, 250);
    assert_true(s.retries >= 2);
    assert_non_null(strstr(log, " error [influx] NOT WRITING"));
    assert_non_null(strstr(log, "InfluxDB refuses the credentials (HTTP 401"));
    free(log);

    assert_int_equal(influxd_fixture_query(&secure, NULL, "SET PASSWORD FOR gw = 'right'", NULL),
                     200);
    assert_true(wait_stat(w, STAT(lines_done), 250, 15000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 250);
    assert_int_equal(s.points_rejected, 0);
    influx_writer_stop(w, 1000);
    assert_int_equal(influxd_fixture_count(&secure, "sec", "reading", "i"), 250);
    influxd_fixture_destroy(&secure);
    gw_buf_free(&lines);
}

/* 1.6 answers 500 "retention policy not found" for a setting to fix, not
 * for bad lines: retried and logged loudly, nothing dead-lettered; once
 * the policy exists the writer catches up. */
static void test_missing_retention_policy(void **state)
{
    static const char text[] = "m v=1i 1\nm v=2i 2\n";
    char path[300];
    struct influx_writer_options o = {
        .url = server.url,
        .database = "rpdb",
        .retention_policy = "week",
        .dead_letter_path = path,
        .flush_interval_ms = 10,
    };
    struct influx_writer_stats s;
    struct influx_writer *w;
    struct captured cap;
    char *log;

    (void)state;
    snprintf(path, sizeof(path), "%s/rp-rejected.lp", server.dir);
    assert_int_equal(influxd_fixture_create_db(&server, "rpdb"), 0);
    capture_begin(&cap);
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, text, sizeof(text) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(write_errors), 2, 5000));
    log = capture_end(&cap);
    s = stats_of(w);
    assert_int_equal(s.last_status, 500);
    assert_int_equal(s.lines_done, 0);
    assert_int_equal(s.points_rejected, 0);
    assert_int_equal(s.points_dead_lettered, 0);
    assert_non_null(strstr(log, " error [influx] NOT WRITING"));
    assert_non_null(strstr(log, "the retention policy does not exist in database \"rpdb\""));
    free(log);
    assert_int_equal(influxd_fixture_query(&server, NULL,
                                           "CREATE RETENTION POLICY week ON rpdb DURATION INF "
                                           "REPLICATION 1",
                                           NULL),
                     200);
    assert_true(wait_stat(w, STAT(lines_done), 2, 15000));
    assert_int_equal(stats_of(w).points_written, 2);
    influx_writer_stop(w, 1000);
    {
        char *dead = read_text(path);
        assert_non_null(dead);
        assert_string_equal(dead, "");
        free(dead);
    }
}

/* ---- a fake InfluxDB 2.x (libmicrohttpd) that records the requests ---- */

#define FAKE_MAX 16

struct fake_request {
    char method[8];
    char path[64];
    char org[32], bucket[32], precision[8], db[32], rp[32];
    char authorization[64];
    char encoding[16];
    struct gw_buf body; /* gunzipped when Content-Encoding: gzip */
};

struct fake_server {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t lock;
    int n; /* requests seen */
    struct fake_request req[FAKE_MAX];
    int statuses[FAKE_MAX]; /* answer to request i; 0: 204 */
    const char *bodies[FAKE_MAX];
    /* Set before fake_start(), for the tests of requests in flight at
     * once: a thread per connection, so that one request can be held
     * while others are answered. */
    bool threaded;
    const char *hold_if;   /* a request whose body has this waits for release */
    const char *refuse_if; /* a request whose body has this gets a 400 */
    pthread_cond_t changed;
    bool released;
    int active, max_active; /* requests being handled at once, now and at most */
};

struct upload {
    struct gw_buf data;
};

static int gunzip(const struct gw_buf *in, struct gw_buf *out)
{
    z_stream z = { 0 };
    char chunk[16384];
    int r;

    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    z.next_in = (Bytef *)in->data;
    z.avail_in = (uInt)in->len;
    do {
        z.next_out = (Bytef *)chunk;
        z.avail_out = sizeof(chunk);
        r = inflate(&z, Z_NO_FLUSH);
        if (r != Z_OK && r != Z_STREAM_END)
            break;
        gw_buf_append(out, chunk, sizeof(chunk) - z.avail_out);
    } while (r != Z_STREAM_END);
    inflateEnd(&z);
    return r == Z_STREAM_END ? 0 : -1;
}

static void copy_value(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *key,
                       char *out, size_t size)
{
    const char *v = MHD_lookup_connection_value(c, kind, key);
    snprintf(out, size, "%s", v ? v : "");
}

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct fake_server *f = cls;
    struct upload *up = *con_cls;
    struct MHD_Response *resp;
    const char *answer = "";
    int status = 204;
    enum MHD_Result ret;

    (void)version;
    if (!up) {
        up = calloc(1, sizeof(*up));
        *con_cls = up;
        return up ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        gw_buf_append(&up->data, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&f->lock);
    if (f->n < FAKE_MAX) {
        struct fake_request *r = &f->req[f->n];

        snprintf(r->method, sizeof(r->method), "%s", method);
        snprintf(r->path, sizeof(r->path), "%s", url);
        copy_value(c, MHD_GET_ARGUMENT_KIND, "org", r->org, sizeof(r->org));
        copy_value(c, MHD_GET_ARGUMENT_KIND, "bucket", r->bucket, sizeof(r->bucket));
        copy_value(c, MHD_GET_ARGUMENT_KIND, "precision", r->precision, sizeof(r->precision));
        copy_value(c, MHD_GET_ARGUMENT_KIND, "db", r->db, sizeof(r->db));
        copy_value(c, MHD_GET_ARGUMENT_KIND, "rp", r->rp, sizeof(r->rp));
        copy_value(c, MHD_HEADER_KIND, "Authorization", r->authorization, sizeof(r->authorization));
        copy_value(c, MHD_HEADER_KIND, "Content-Encoding", r->encoding, sizeof(r->encoding));
        if (strcmp(r->encoding, "gzip") == 0) {
            if (gunzip(&up->data, &r->body) < 0)
                gw_buf_puts(&r->body, "<bad gzip>");
        } else {
            gw_buf_append(&r->body, up->data.data, up->data.len);
        }
        if (f->statuses[f->n]) {
            status = f->statuses[f->n];
            answer = f->bodies[f->n] ? f->bodies[f->n] : "";
        }
        f->n++;
        if (f->refuse_if && r->body.data && strstr(r->body.data, f->refuse_if)) {
            status = 400;
            answer = "{\"error\":\"refused by the fake\"}";
        }
        f->active++;
        if (f->active > f->max_active)
            f->max_active = f->active;
        pthread_cond_broadcast(&f->changed);
        if (f->hold_if && r->body.data && strstr(r->body.data, f->hold_if)) {
            /* bounded: a test that fails to release does not hang */
            struct timespec until;

            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 10;
            while (!f->released &&
                   pthread_cond_timedwait(&f->changed, &f->lock, &until) == 0)
                ;
        }
        f->active--;
    }
    pthread_mutex_unlock(&f->lock);
    resp = MHD_create_response_from_buffer(strlen(answer), (void *)answer, MHD_RESPMEM_MUST_COPY);
    if (*answer)
        MHD_add_response_header(resp, "Content-Type", "application/json");
    ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void fake_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct upload *up = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (up) {
        gw_buf_free(&up->data);
        free(up);
        *con_cls = NULL;
    }
}

static void fake_start(struct fake_server *f)
{
    const union MHD_DaemonInfo *info;

    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->changed, NULL);
    f->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                                     (f->threaded ? MHD_USE_THREAD_PER_CONNECTION : 0),
                                 0, NULL, NULL, fake_handler, f, MHD_OPTION_NOTIFY_COMPLETED,
                                 fake_completed, f, MHD_OPTION_END);
    assert_non_null(f->daemon);
    info = MHD_get_daemon_info(f->daemon, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    f->port = info->port;
}

static int fake_count(struct fake_server *f)
{
    int n;

    pthread_mutex_lock(&f->lock);
    n = f->n;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static void fake_release(struct fake_server *f)
{
    pthread_mutex_lock(&f->lock);
    f->released = true;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

/* Waits until at least n requests are being handled at once, at most
 * timeout_ms; returns the most there were. */
static int fake_wait_active(struct fake_server *f, int n, int timeout_ms)
{
    struct timespec until;
    int most;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->lock);
    while (f->active < n && pthread_cond_timedwait(&f->changed, &f->lock, &until) == 0)
        ;
    most = f->max_active;
    pthread_mutex_unlock(&f->lock);
    return most;
}

static void fake_stop(struct fake_server *f)
{
    fake_release(f);
    MHD_stop_daemon(f->daemon);
    for (int i = 0; i < FAKE_MAX; i++)
        gw_buf_free(&f->req[i].body);
    pthread_cond_destroy(&f->changed);
    pthread_mutex_destroy(&f->lock);
}

/* InfluxDB 2.x cannot run here (Debian 12 ships 1.6): the request's shape
 * is checked against a fake. POST /api/v2/write?org&bucket&precision=ns,
 * "Authorization: Token ...", gzip body; a 401 is retried, a 404 names the
 * bucket, a 400 partial write dead-letters the named line. */
static void test_v2_request_shape(void **state)
{
    static const char text[] = "m v=1i 1\nm v=2i 2\n";
    static const char bad[] = "m v=3i 3\nm v=oops 4\n";
    static const char conflict[] = "m v=5i 5\nm v=5.5 6\n";
    struct fake_server *f = calloc(1, sizeof(*f));
    char url[64], path[300];
    struct influx_writer_options o = {
        .version = 2,
        .org = "dongcheng district",
        .bucket = "grid&gate",
        .token = "s3cr3t==",
        .database = "ignored",
        .gzip = true,
        .dead_letter_path = path,
        .flush_interval_ms = 10,
        .username = "not-used",
    };
    struct influx_writer_stats s;
    struct influx_writer *w;
    struct captured cap;
    char *log, *dead;

    (void)state;
    assert_non_null(f);
    f->statuses[0] = 401;
    f->bodies[0] = "{\"code\":\"unauthorized\",\"message\":\"unauthorized access\"}";
    f->statuses[1] = 404;
    f->bodies[1] = "{\"code\":\"not found\",\"message\":\"bucket \\\"grid&gate\\\" not found\"}";
    f->statuses[3] = 400;
    f->bodies[3] = "{\"code\":\"invalid\",\"message\":\"partial write error (1 written): unable "
                   "to parse 'm v=oops 4': invalid boolean\"}";
    f->statuses[4] = 422;
    f->bodies[4] = "{\"code\":\"unprocessable entity\",\"message\":\"failure writing points to "
                   "database: partial write: field type conflict: input field \\\"v\\\" on "
                   "measurement \\\"m\\\" is type float, already exists as type integer "
                   "dropped=1\"}";
    fake_start(f);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", f->port);
    snprintf(path, sizeof(path), "%s/v2-rejected.lp", server.dir);
    o.url = url;

    capture_begin(&cap);
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, text, sizeof(text) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(lines_done), 2, 10000));
    log = capture_end(&cap);
    s = stats_of(w);
    assert_int_equal(fake_count(f), 3); /* 401, 404, then 204 */
    assert_int_equal(s.points_written, 2);
    assert_int_equal(s.write_errors, 2);
    assert_int_equal(s.retries, 2);
    assert_non_null(strstr(log, "InfluxDB refuses the token (HTTP 401"));
    assert_non_null(strstr(log, "bucket \"grid&gate\" (org \"dongcheng district\") does not exist "
                                "(HTTP 404"));
    free(log);

    assert_int_equal(influx_writer_submit(w, bad, sizeof(bad) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(lines_done), 4, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 3);
    assert_int_equal(s.points_rejected, 1);
    assert_int_equal(s.points_dead_lettered, 1);
    /* 422: refused after parsing, the conflicting line found by its field */
    assert_int_equal(influx_writer_submit(w, conflict, sizeof(conflict) - 1, 2), 0);
    assert_true(wait_stat(w, STAT(lines_done), 6, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 4);
    assert_int_equal(s.points_rejected, 2);
    assert_int_equal(s.points_dead_lettered, 2);
    assert_int_equal(s.last_status, 422);
    influx_writer_stop(w, 1000);
    assert_int_equal(fake_count(f), 5);

    for (int i = 0; i < 5; i++) {
        struct fake_request *r = &f->req[i];

        assert_string_equal(r->method, "POST");
        assert_string_equal(r->path, "/api/v2/write");
        assert_string_equal(r->org, "dongcheng district");
        assert_string_equal(r->bucket, "grid&gate");
        assert_string_equal(r->precision, "ns");
        assert_string_equal(r->authorization, "Token s3cr3t==");
        assert_string_equal(r->encoding, "gzip");
        assert_string_equal(r->body.data, i < 3 ? text : i == 3 ? bad : conflict);
        assert_string_equal(r->db, "");
    }
    dead = read_text(path);
    assert_non_null(dead);
    assert_non_null(strstr(dead, "Z unable to parse: invalid boolean\nm v=oops 4\n"));
    assert_null(strstr(dead, "v=3i"));
    assert_non_null(strstr(dead, "Z failure writing points to database: partial write: field "
                                 "type conflict: input field \"v\" on measurement \"m\" is "
                                 "type float, already exists as type integer dropped=1\n"
                                 "m v=5.5 6\n"));
    assert_null(strstr(dead, "v=5i"));
    free(dead);
    fake_stop(f);
    free(f);
}

/* 1.x against the fake: the path, basic auth, no gzip header when off. */
static void test_v1_request_shape(void **state)
{
    static const char text[] = "m v=1i 1\n";
    struct fake_server *f = calloc(1, sizeof(*f));
    char url[64];
    struct influx_writer_options o = {
        .database = "grid gate",
        .retention_policy = "week",
        .username = "gw",
        .password = "pw",
        .flush_interval_ms = 10,
    };
    struct influx_writer *w;

    (void)state;
    assert_non_null(f);
    fake_start(f);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->port);
    o.url = url;
    w = influx_writer_start(&o, NULL);
    assert_non_null(w);
    assert_int_equal(influx_writer_submit(w, text, sizeof(text) - 1, 1), 0);
    assert_true(wait_stat(w, STAT(lines_done), 1, 5000));
    influx_writer_stop(w, 1000);
    assert_int_equal(fake_count(f), 1);
    assert_string_equal(f->req[0].path, "/write");
    assert_string_equal(f->req[0].db, "grid gate");
    assert_string_equal(f->req[0].rp, "week");
    assert_string_equal(f->req[0].precision, "ns");
    assert_string_equal(f->req[0].authorization, "Basic Z3c6cHc="); /* gw:pw */
    assert_string_equal(f->req[0].encoding, "");
    assert_string_equal(f->req[0].body.data, text);
    fake_stop(f);
    free(f);
}

/* ---- several requests in flight (influx.max_in_flight) ---- */

/* Three batches of two lines. */
static const char six_lines[] = "m v=1i 1\nm v=2i 2\nm v=3i 3\nm v=4i 4\nm v=5i 5\nm v=6i 6\n";
static const char *const six_batches[] = { "m v=1i 1\nm v=2i 2\n", "m v=3i 3\nm v=4i 4\n",
                                           "m v=5i 5\nm v=6i 6\n" };

static struct influx_writer *start_fake_writer(struct fake_server *f, int max_in_flight,
                                               const char *dead_letter)
{
    char url[64];
    struct influx_writer_options o = {
        .url = url,
        .database = "db",
        .batch_size = 2,
        .flush_interval_ms = 10,
        .timeout_ms = 20000, /* longer than any hold */
        .max_in_flight = max_in_flight,
        .dead_letter_path = dead_letter,
    };
    char *error = NULL;
    struct influx_writer *w;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->port);
    w = influx_writer_start(&o, &error);
    if (!w)
        fail_msg("influx_writer_start: %s", error ? error : "(no message)");
    return w;
}

/* Every request is held until the test releases it: with max_in_flight
 * requests on the wire, the fake sees that many at once, and no more;
 * with 1, the next batch waits for the answer to the one before (as the
 * writer always did). */
static void check_in_flight(int max_in_flight)
{
    struct fake_server *f = calloc(1, sizeof(*f));
    struct influx_writer_stats s;
    struct influx_writer *w;
    bool seen[3] = { false, false, false };

    assert_non_null(f);
    f->threaded = true;
    f->hold_if = "m v=";
    fake_start(f);
    w = start_fake_writer(f, max_in_flight, NULL);
    assert_int_equal(influx_writer_submit(w, six_lines, sizeof(six_lines) - 1, 6), 0);
    if (max_in_flight > 1) {
        assert_int_equal(fake_wait_active(f, 2, 5000), 2);
    } else {
        assert_int_equal(fake_wait_active(f, 1, 5000), 1);
        sleep_ms(300); /* time enough for a second request, were it sent */
        assert_int_equal(fake_wait_active(f, 2, 0), 1);
        assert_int_equal(fake_count(f), 1);
    }
    s = stats_of(w);
    assert_int_equal(s.lines_done, 0);
    assert_int_equal(s.queue_lines, 6);
    fake_release(f);
    assert_true(wait_stat(w, STAT(lines_done), 6, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 6);
    assert_int_equal(s.batches_written, 3);
    assert_int_equal(s.write_errors, 0);
    assert_int_equal(s.retries, 0);
    assert_int_equal(s.queue_lines, 0);
    assert_int_equal(s.queue_bytes, 0);
    influx_writer_stop(w, 1000);
    assert_int_equal(fake_count(f), 3);
    /* never more at once than allowed */
    assert_int_equal(fake_wait_active(f, 0, 0), max_in_flight > 1 ? 2 : 1);
    for (int i = 0; i < 3; i++) {
        if (max_in_flight == 1) {
            assert_string_equal(f->req[i].body.data, six_batches[i]); /* in order */
            continue;
        }
        /* in flight together, they may reach the server in either order */
        for (int k = 0; k < 3; k++) {
            if (strcmp(f->req[i].body.data, six_batches[k]) == 0) {
                assert_false(seen[k]);
                seen[k] = true;
            }
        }
    }
    for (int k = 0; k < 3 && max_in_flight > 1; k++)
        assert_true(seen[k]);
    fake_stop(f);
    free(f);
}

static void test_two_requests_in_flight(void **state)
{
    (void)state;
    check_in_flight(2);
}

static void test_one_request_in_flight(void **state)
{
    (void)state;
    check_in_flight(1);
}

/* The second batch is answered while the first is held: lines_done (what
 * the feeder commits the journal by) stays before the first until it is
 * answered, then passes both. */
static void test_later_batch_done_first(void **state)
{
    struct fake_server *f = calloc(1, sizeof(*f));
    struct influx_writer_stats s;
    struct influx_writer *w;

    (void)state;
    assert_non_null(f);
    f->threaded = true;
    f->hold_if = "v=1i";
    fake_start(f);
    w = start_fake_writer(f, 2, NULL);
    assert_int_equal(influx_writer_submit(w, six_lines, 4 * 9, 4), 0);
    assert_true(wait_stat(w, STAT(batches_written), 1, 5000));
    /* the first may reach the server after the second was answered */
    assert_true(fake_wait_active(f, 1, 5000) >= 1);
    sleep_ms(300); /* the held request's latency, below */
    s = stats_of(w);
    assert_int_equal(s.batches_written, 1);
    assert_int_equal(s.points_written, 2);
    assert_int_equal(s.lines_done, 0);
    assert_int_equal(s.queue_lines, 4);

    /* a third batch goes out in the slot the second freed */
    assert_int_equal(influx_writer_submit(w, six_lines + 4 * 9, 2 * 9, 2), 0);
    assert_true(wait_stat(w, STAT(batches_written), 2, 5000));
    assert_int_equal(stats_of(w).lines_done, 0);

    fake_release(f);
    assert_true(wait_stat(w, STAT(lines_done), 6, 5000));
    s = stats_of(w);
    assert_int_equal(s.lines_done, 6);
    assert_int_equal(s.batches_written, 3);
    assert_int_equal(s.queue_lines, 0);
    assert_true(s.max_latency_us >= 250000); /* the held one's, not the poll's */
    influx_writer_stop(w, 1000);
    assert_int_equal(fake_count(f), 3);
    fake_stop(f);
    free(f);
}

/* Among three batches in flight, the second is refused (400): it goes to
 * the dead-letter file at once, but counts as done only after the first,
 * which is held. */
static void test_refused_batch_in_flight(void **state)
{
    struct fake_server *f = calloc(1, sizeof(*f));
    struct influx_writer_stats s;
    struct influx_writer *w;
    char path[300];
    char *dead;

    (void)state;
    assert_non_null(f);
    snprintf(path, sizeof(path), "%s/in-flight-rejected.lp", server.dir);
    f->threaded = true;
    f->hold_if = "v=1i";
    f->refuse_if = "v=3i";
    fake_start(f);
    w = start_fake_writer(f, 3, path);
    assert_int_equal(influx_writer_submit(w, six_lines, sizeof(six_lines) - 1, 6), 0);
    assert_true(wait_stat(w, STAT(points_dead_lettered), 2, 5000));
    assert_true(wait_stat(w, STAT(batches_written), 1, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_rejected, 2);
    assert_int_equal(s.points_written, 2);
    assert_int_equal(s.lines_done, 0);
    assert_int_equal(s.queue_lines, 6);
    assert_true(fake_wait_active(f, 1, 5000) >= 1); /* the first is held */
    assert_int_equal(stats_of(w).lines_done, 0);
    dead = read_text(path);
    assert_non_null(dead);
    assert_non_null(strstr(dead, "Z refused by the fake\nm v=3i 3\nm v=4i 4\n"));
    assert_null(strstr(dead, "v=1i"));
    assert_null(strstr(dead, "v=5i"));
    free(dead);

    fake_release(f);
    assert_true(wait_stat(w, STAT(lines_done), 6, 5000));
    s = stats_of(w);
    assert_int_equal(s.points_written, 4);
    assert_int_equal(s.points_dead_lettered, 2);
    assert_int_equal(s.retries, 0); /* a refusal is not retried */
    assert_int_equal(s.queue_lines, 0);
    influx_writer_stop(w, 1000);
    assert_int_equal(fake_count(f), 3);
    fake_stop(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_lines_are_queryable_with_types),
        cmocka_unit_test(test_batches_by_count_and_drain_on_stop),
        cmocka_unit_test(test_batches_by_time),
        cmocka_unit_test(test_partial_write_keeps_good_lines),
        cmocka_unit_test(test_retries_until_influxd_is_up),
        cmocka_unit_test(test_back_pressure_and_shutdown),
        cmocka_unit_test(test_escaped_database_and_retention_policy),
        cmocka_unit_test(test_shutdown_bounded_when_server_hangs),
        cmocka_unit_test(test_gzip_on_and_off),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_dead_letter_unwritable),
        cmocka_unit_test(test_401_then_fixed),
        cmocka_unit_test(test_missing_retention_policy),
        cmocka_unit_test(test_v2_request_shape),
        cmocka_unit_test(test_v1_request_shape),
        cmocka_unit_test(test_two_requests_in_flight),
        cmocka_unit_test(test_one_request_in_flight),
        cmocka_unit_test(test_later_batch_done_first),
        cmocka_unit_test(test_refused_batch_in_flight),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
