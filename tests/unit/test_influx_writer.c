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
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
    uint64_t errors;

    (void)state;
    assert_int_equal(influxd_fixture_init(&late), 0);
    w = start_writer(late.url, "late", 100, 20, 0);
    make_lines(&lines, "reading", 0, 250);
    assert_int_equal(influx_writer_submit(w, lines.data, lines.len, 250), 0);
    assert_true(wait_stat(w, STAT(write_errors), 3, 5000));
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
    assert_true(wait_stat(w, STAT(write_errors), errors + 1, 10000));
    assert_int_equal(stats_of(w).points_written, 0);
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
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
