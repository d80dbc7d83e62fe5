/* sim_bench_influx: `gridsim bench influx`, line protocol and the InfluxDB
 * writer.
 *
 * Encode: one thread turns a smoke reading (4 tags, 4 fields) into line
 * protocol with influx_line_reading() in a loop, as the InfluxDB feeder
 * does, and prints points per second against the target of 1,000,000 per
 * core.
 *
 * Write (with --url, an InfluxDB 1.x on loopback that gridsim does not
 * start: `scripts/servers.sh start DIR` gives one): first a bulk-load
 * baseline, plain libcurl POSTing batches of --batch pre-encoded lines on
 * one kept-alive connection as fast as InfluxDB takes them, for --write-seconds;
 * then influx_writer (same batch size) fed the same pre-encoded batches for
 * the same time, gzip off and on. Each run writes fresh points into a
 * database of its own (dropped first and after), so no run overwrites
 * another's. Prints points/s and writer/bulk ratios (target >= 0.80), all
 * measured in the same run because the machines are shared. Bounded in
 * time; loopback URLs only. Owns nothing beyond one run.
 *
 * Also the InfluxDB helpers the other benchmarks share (sim_bench.h): the
 * plain bulk-load POST, CREATE/DROP DATABASE, and InfluxDB's own count of
 * stored points from /debug/vars.
 */
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "influx_line.h"
#include "influx_query.h"
#include "influx_writer.h"
#include "sim_bench.h"

#define TARGET_ENCODE_PER_S 1000000.0
#define TARGET_RATIO 0.80
#define CLOCK_EVERY 4096 /* points between looks at the clock */
#define TS_DIGITS 19     /* every timestamp here: 19 digits */

struct bench_options {
    double seconds;       /* encode */
    double write_seconds; /* each write run */
    uint64_t iterations;
    const char *url;
    const char *db;
    uint64_t batch;
    uint64_t rounds;
};

static void usage(FILE *f)
{
    fputs("usage: gridsim bench influx [--seconds S] [--iterations N]\n"
          "                            [--url URL [--db NAME] [--write-seconds S] [--batch N]]\n"
          "\n"
          "  --seconds S        encode: seconds at most (default 3, up to 60)\n"
          "  --iterations N     encode: points at most (default 100000000)\n"
          "  --url URL          also measure writing, to the InfluxDB 1.x at URL (loopback\n"
          "                     only; start one with `scripts/servers.sh start DIR`)\n"
          "  --db NAME          prefix of the databases the write runs create and drop\n"
          "                     (default gridsim_bench)\n"
          "  --write-seconds S  each write run: bulk load, writer, writer with gzip\n"
          "                     (default 5, up to 120)\n"
          "  --batch N          lines per request (default 5000)\n"
          "  --rounds N         repeat the three write runs, interleaved (default 3);\n"
          "                     the medians are the result\n"
          "\n"
          "Encode: one thread, a smoke reading with 4 tags and 4 fields. Write: a plain\n"
          "libcurl bulk load as the baseline, then influx_writer, gzip off and on.\n",
          f);
}

/* Loopback only: a benchmark must never load someone else's server. */
bool sim_bench_loopback_url(const char *url)
{
    static const char *const ok[] = { "http://127.0.0.1:", "http://127.0.0.1/",
                                      "http://localhost:", "http://localhost/", "http://[::1]:" };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strncmp(url, ok[i], strlen(ok[i])) == 0)
            return true;
    return false;
}

/* Returns 0, 1 after --help, or -EINVAL. */
static int parse_args(int argc, char **argv, struct bench_options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gridsim bench influx: unknown or incomplete option \"%s\"\n", a);
            usage(stderr);
            return -EINVAL;
        }
        const char *val = argv[++i];
        if (strcmp(a, "--seconds") == 0) {
            if (sim_bench_parse_number("influx", val, a, 0.01, 60, &o->seconds) < 0)
                return -EINVAL;
        } else if (strcmp(a, "--write-seconds") == 0) {
            if (sim_bench_parse_number("influx", val, a, 0.5, 120, &o->write_seconds) < 0)
                return -EINVAL;
        } else if (strcmp(a, "--iterations") == 0) {
            if (sim_bench_parse_count("influx", val, a, UINT64_C(10000000000), &o->iterations) < 0)
                return -EINVAL;
        } else if (strcmp(a, "--rounds") == 0) {
            if (sim_bench_parse_count("influx", val, a, 20, &o->rounds) < 0)
                return -EINVAL;
        } else if (strcmp(a, "--batch") == 0) {
            if (sim_bench_parse_count("influx", val, a, 100000, &o->batch) < 0)
                return -EINVAL;
        } else if (strcmp(a, "--url") == 0) {
            if (!sim_bench_loopback_url(val)) {
                fprintf(stderr, "gridsim bench influx: --url must be http://127.0.0.1:PORT, "
                                "http://localhost:PORT or http://[::1]:PORT (loopback only)\n");
                return -EINVAL;
            }
            o->url = val;
        } else if (strcmp(a, "--db") == 0) {
            if (!*val || strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_") != strlen(val)) {
                fprintf(stderr, "gridsim bench influx: --db takes letters, digits and _\n");
                return -EINVAL;
            }
            o->db = val;
        } else {
            fprintf(stderr, "gridsim bench influx: unknown option \"%s\"\n", a);
            usage(stderr);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- encode ---- */

static struct gw_grid bench_grid = {
    .id = (char *)"110101001001001",
    .name = (char *)"东华门 1",
    .community_id = (char *)"110101001001",
    .community = (char *)"多福巷社区",
    .street_id = (char *)"110101001",
    .street = (char *)"东华门街道",
};

/* A smoke reading: 4 tags (community, device, grid, street) and 4 fields. */
static struct gw_reading *smoke_reading(struct gw_device *device, const char *id, int64_t ts)
{
    struct gw_reading *r = gw_reading_new(id, GW_CHANNEL_TELEMETRY, ts);

    if (!r)
        return NULL;
    device->id = (char *)id;
    device->type = (char *)"smoke";
    device->grid = &bench_grid;
    r->device = device;
    if (gw_reading_add_number(r, "smoke", 0.12) < 0 || gw_reading_add_number(r, "temp", 24.5) < 0 ||
        gw_reading_add_number(r, "battery", 87) < 0 || gw_reading_add_bool(r, "alarm", false) < 0) {
        gw_reading_unref(r);
        return NULL;
    }
    return r;
}

static int bench_encode(const struct bench_options *o)
{
    static const char expected[] = "smoke,community=110101001001,device=smoke-000001,"
                                   "grid=110101001001001,street=110101001 "
                                   "smoke=0.12,temp=24.5,battery=87,alarm=false "
                                   "1700000000000000000\n";
    struct gw_device device = { 0 };
    struct gw_reading *r = smoke_reading(&device, "smoke-000001", INT64_C(1700000000000000000));
    struct gw_buf buf = GW_BUF_INIT;
    int64_t start, deadline, end;
    size_t bytes = 0;
    uint64_t n = 0;
    int err = -EIO;

    if (!r) {
        fprintf(stderr, "gridsim bench influx: out of memory\n");
        return -ENOMEM;
    }
    if (influx_line_reading(&buf, r) < 0 || strcmp(buf.data, expected) != 0) {
        fprintf(stderr, "gridsim bench influx: the encoder wrote \"%s\", not \"%s\"\n",
                buf.data ? buf.data : "", expected);
        goto out;
    }
    printf("encode: 1 thread, a smoke reading (4 tags, 4 fields, %zu bytes), up to %g s or "
           "%" PRIu64 " points\n",
           buf.len, o->seconds, o->iterations);
    fflush(stdout);

    start = gw_monotonic_ns();
    deadline = start + (int64_t)(o->seconds * 1e9);
    end = start;
    gw_buf_reset(&buf);
    while (n < o->iterations) {
        /* batches of 5000 lines, as the feeder builds them */
        if (buf.len > 5000 * 160) {
            bytes += buf.len;
            gw_buf_reset(&buf);
        }
        r->ts_ns++;
        if (influx_line_reading(&buf, r) < 0) {
            fprintf(stderr, "gridsim bench influx: encode failed after %" PRIu64 " points\n", n);
            goto out;
        }
        n++;
        if (n % CLOCK_EVERY == 0) {
            end = gw_monotonic_ns();
            if (end >= deadline)
                break;
        }
    }
    if (n % CLOCK_EVERY != 0)
        end = gw_monotonic_ns();
    bytes += buf.len;
    {
        double s = (double)(end - start) / 1e9;
        double rate = s > 0 ? (double)n / s : 0;

        printf("  %" PRIu64 " points in %.3f s = %.0f points/s (%.0f ns each, %.0f MB/s); "
               "target %.0f/s per core: %s\n",
               n, s, rate, n ? s * 1e9 / (double)n : 0, s > 0 ? (double)bytes / s / 1e6 : 0,
               TARGET_ENCODE_PER_S, rate >= TARGET_ENCODE_PER_S ? "met" : "MISSED");
    }
    err = 0;
out:
    gw_reading_unref(r);
    gw_buf_free(&buf);
    return err;
}

/* ---- write ---- */

/* One batch of pre-encoded lines for distinct devices, each ending in a
 * 19-digit timestamp that stamp() rewrites in place, so every request
 * carries new points (InfluxDB would overwrite equal ones, a cheaper
 * path). */
struct batch {
    struct gw_buf text;
    size_t *ts_at; /* offset of each line's timestamp */
    size_t n;
};

static int batch_build(struct batch *b, size_t n)
{
    struct gw_device device = { 0 };

    b->ts_at = calloc(n, sizeof(*b->ts_at));
    if (!b->ts_at)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char id[32];
        struct gw_reading *r;
        int err;

        snprintf(id, sizeof(id), "smoke-%06zu", i);
        r = smoke_reading(&device, id, INT64_C(1700000000000000000));
        if (!r)
            return -ENOMEM;
        err = influx_line_reading(&b->text, r);
        gw_reading_unref(r);
        if (err < 0)
            return err;
        b->ts_at[i] = b->text.len - 1 - TS_DIGITS;
    }
    b->n = n;
    return 0;
}

static void batch_stamp(struct batch *b, int64_t ts)
{
    char digits[TS_DIGITS + 1];

    snprintf(digits, sizeof(digits), "%019" PRId64, ts);
    for (size_t i = 0; i < b->n; i++)
        memcpy(b->text.data + b->ts_at[i], digits, TS_DIGITS);
}

static size_t discard(char *data, size_t size, size_t nmemb, void *userdata)
{
    (void)data;
    (void)userdata;
    return size * nmemb;
}

static size_t keep(char *data, size_t size, size_t nmemb, void *userdata)
{
    return gw_buf_append(userdata, data, size * nmemb) == 0 ? size * nmemb : 0;
}

/* A handle with what every request to server needs; NULL when out of
 * memory. */
static CURL *server_handle(const struct influx_query_options *server)
{
    CURL *c = curl_easy_init();

    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, server->timeout_ms > 0 ? (long)server->timeout_ms
                                                                   : 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (server->username) {
        curl_easy_setopt(c, CURLOPT_USERNAME, server->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, server->password ? server->password : "");
    }
    return c;
}

int sim_bench_influx_admin(const struct influx_query_options *server, const char *verb,
                           const char *db)
{
    char q[256], *eq, full[512];
    CURL *c = server_handle(server);
    long status = 0;
    CURLcode rc;

    if (!c)
        return -ENOMEM;
    snprintf(q, sizeof(q), "%s DATABASE \"%s\"", verb, db);
    eq = curl_easy_escape(c, q, 0);
    snprintf(full, sizeof(full), "%s/query?q=%s", server->url, eq ? eq : "");
    curl_free(eq);
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (status != 200) {
        fprintf(stderr, "gridsim bench: %s at %s: %s\n", q, server->url,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "not HTTP 200");
        return -EIO;
    }
    return 0;
}

int sim_bench_influx_points_ok(const struct influx_query_options *server, const char *db,
                               uint64_t *ret_points)
{
    char url[512];
    struct gw_buf body = GW_BUF_INIT;
    CURL *c = server_handle(server);
    cJSON *root = NULL, *stat;
    long status = 0;
    CURLcode rc;
    double sum = 0;
    int r = -EIO;

    if (!c)
        return -ENOMEM;
    snprintf(url, sizeof(url), "%s/debug/vars", server->url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (status != 200)
        goto out;
    root = cJSON_ParseWithLength(body.data, body.len);
    /* {"shard:PATH:ID": {"name": "shard", "tags": {"database": ...},
     *  "values": {"writePointsOk": N, ...}}, ...}: one entry per shard,
     * each counting the points it stored. */
    cJSON_ArrayForEach(stat, root)
    {
        cJSON *tags = cJSON_GetObjectItem(stat, "tags");
        cJSON *ok = cJSON_GetObjectItem(cJSON_GetObjectItem(stat, "values"), "writePointsOk");
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(stat, "name"));
        const char *sdb = cJSON_GetStringValue(cJSON_GetObjectItem(tags, "database"));

        if (name && strcmp(name, "shard") == 0 && sdb && strcmp(sdb, db) == 0 &&
            cJSON_IsNumber(ok))
            sum += ok->valuedouble;
    }
    if (root) {
        *ret_points = (uint64_t)sum;
        r = 0;
    }
out:
    cJSON_Delete(root);
    gw_buf_free(&body);
    return r;
}

struct sim_bench_influx_post {
    CURL *curl;
    struct curl_slist *headers;
};

struct sim_bench_influx_post *sim_bench_influx_post_open(const struct influx_query_options *server,
                                                         const char *db)
{
    struct sim_bench_influx_post *p = calloc(1, sizeof(*p));
    char url[512];

    if (!p)
        return NULL;
    p->curl = server_handle(server);
    p->headers = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
    if (p->headers) {
        struct curl_slist *more = curl_slist_append(p->headers, "Expect:");
        if (more)
            p->headers = more;
        else {
            curl_slist_free_all(p->headers);
            p->headers = NULL;
        }
    }
    if (!p->curl || !p->headers) {
        sim_bench_influx_post_close(p);
        return NULL;
    }
    snprintf(url, sizeof(url), "%s/write?db=%s&precision=ns", server->url, db);
    curl_easy_setopt(p->curl, CURLOPT_URL, url);
    curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, p->headers);
    return p;
}

int sim_bench_influx_post(struct sim_bench_influx_post *p, const char *lines, size_t len,
                          char *error, size_t error_len)
{
    long status = 0;
    CURLcode rc;

    curl_easy_setopt(p->curl, CURLOPT_POSTFIELDS, lines);
    curl_easy_setopt(p->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    rc = curl_easy_perform(p->curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status == 204)
        return 0;
    snprintf(error, error_len, "%s (HTTP %ld)", curl_easy_strerror(rc), status);
    return -EIO;
}

void sim_bench_influx_post_close(struct sim_bench_influx_post *p)
{
    if (!p)
        return;
    if (p->curl)
        curl_easy_cleanup(p->curl);
    curl_slist_free_all(p->headers);
    free(p);
}

struct write_result {
    uint64_t points;
    double seconds;
    uint64_t errors;
};

static double per_s(const struct write_result *r)
{
    return r->seconds > 0 ? (double)r->points / r->seconds : 0;
}

static int bulk_load(const struct bench_options *o, struct batch *b, const char *db, int64_t ts0,
                     struct write_result *ret)
{
    const struct influx_query_options server = { .url = o->url, .timeout_ms = 30000 };
    struct sim_bench_influx_post *p = sim_bench_influx_post_open(&server, db);
    char error[256];
    int64_t start, deadline;
    uint64_t seq = 0;
    int err = 0;

    if (!p)
        return -ENOMEM;
    start = gw_monotonic_ns();
    deadline = start + (int64_t)(o->write_seconds * 1e9);
    while (gw_monotonic_ns() < deadline) {
        batch_stamp(b, ts0 + (int64_t)seq++ * 1000);
        if (sim_bench_influx_post(p, b->text.data, b->text.len, error, sizeof(error)) == 0) {
            ret->points += b->n;
        } else {
            ret->errors++;
            if (ret->errors > 10) {
                fprintf(stderr, "gridsim bench influx: bulk load: %s\n", error);
                err = -EIO;
                break;
            }
        }
    }
    ret->seconds = (double)(gw_monotonic_ns() - start) / 1e9;
    sim_bench_influx_post_close(p);
    return err;
}

static int writer_load(const struct bench_options *o, struct batch *b, const char *db, bool gzip,
                       int64_t ts0, struct write_result *ret)
{
    struct influx_writer_options wo = {
        .url = o->url,
        .database = db,
        .gzip = gzip,
        .batch_size = (int)o->batch,
        .flush_interval_ms = 1000,
        .timeout_ms = 30000,
        /* a few batches queued: the writer never waits for the producer */
        .queue_bytes = 4 * b->text.len,
    };
    struct influx_writer_stats s;
    struct influx_writer *w;
    char *error = NULL;
    int64_t start, deadline, end;
    uint64_t seq = 0;
    int err = 0;

    w = influx_writer_start(&wo, &error);
    if (!w) {
        fprintf(stderr, "gridsim bench influx: %s\n", error ? error : "cannot start the writer");
        free(error);
        return -EIO;
    }
    start = gw_monotonic_ns();
    deadline = start + (int64_t)(o->write_seconds * 1e9);
    while (gw_monotonic_ns() < deadline) {
        batch_stamp(b, ts0 + (int64_t)seq++ * 1000);
        /* blocks while the queue is full: back-pressure paces this loop */
        err = influx_writer_submit(w, b->text.data, b->text.len, b->n);
        if (err < 0) {
            fprintf(stderr, "gridsim bench influx: submit: %s\n", strerror(-err));
            break;
        }
    }
    influx_writer_stats(w, &s);
    end = gw_monotonic_ns();
    ret->points = s.lines_done;
    ret->errors = s.write_errors + s.points_rejected;
    ret->seconds = (double)(end - start) / 1e9;
    /* What is still queued is written but not counted. */
    influx_writer_stop(w, 30000);
    return err;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int bench_write(const struct bench_options *o)
{
    static const char *const runs[] = { "bulk", "writer", "writer_gzip" };
    static const char *const what[] = { "bulk load (plain libcurl)", "influx_writer, gzip off",
                                        "influx_writer, gzip on" };
    const struct influx_query_options server = { .url = o->url, .timeout_ms = 30000 };
    double rate[3][20], ratio[3][20];
    struct batch b = { GW_BUF_INIT, NULL, 0 };
    int64_t ts0 = gw_now_ns() - INT64_C(3600) * 1000000000;
    size_t rounds = (size_t)o->rounds;
    int err;

    err = batch_build(&b, (size_t)o->batch);
    if (err < 0) {
        fprintf(stderr, "gridsim bench influx: cannot build a batch: %s\n", strerror(-err));
        goto out;
    }
    printf("write: to %s, batches of %zu lines (%zu bytes), %g s per run, %zu rounds, a fresh "
           "database each run\n",
           o->url, b.n, b.text.len, o->write_seconds, rounds);
    fflush(stdout);
    for (size_t k = 0; k < rounds && err == 0; k++) {
        for (int i = 0; i < 3 && err == 0; i++) {
            struct write_result res = { 0 };
            char db[128];

            snprintf(db, sizeof(db), "%s_%s", o->db, runs[i]);
            sim_bench_influx_admin(&server, "DROP", db);
            err = sim_bench_influx_admin(&server, "CREATE", db);
            if (err < 0)
                break;
            /* each run its own hour: no point overwrites another's */
            ts0 += INT64_C(3600) * 1000000000 / 10;
            if (i == 0)
                err = bulk_load(o, &b, db, ts0, &res);
            else
                err = writer_load(o, &b, db, i == 2, ts0, &res);
            sim_bench_influx_admin(&server, "DROP", db);
            if (err < 0)
                break;
            rate[i][k] = per_s(&res);
            ratio[i][k] = rate[0][k] > 0 ? rate[i][k] / rate[0][k] : 0;
            printf("  round %zu: %-26s %9" PRIu64 " points in %6.2f s = %8.0f points/s", k + 1,
                   what[i], res.points, res.seconds, rate[i][k]);
            if (i > 0)
                printf(" = %.2f of the bulk load", ratio[i][k]);
            if (res.errors)
                printf(" [%" PRIu64 " errors]", res.errors);
            printf("\n");
            fflush(stdout);
        }
    }
    if (err == 0) {
        printf("  medians over %zu rounds:\n", rounds);
        for (int i = 0; i < 3; i++) {
            printf("    %-26s %8.0f points/s", what[i], median(rate[i], rounds));
            if (i > 0) {
                double m = median(ratio[i], rounds);
                printf(" = %.2f of the bulk load (target >= %.2f: %s)", m, TARGET_RATIO,
                       m >= TARGET_RATIO ? "met" : "MISSED");
            }
            printf("\n");
        }
    }
out:
    gw_buf_free(&b.text);
    free(b.ts_at);
    return err;
}

int sim_bench_influx(int argc, char **argv)
{
    struct bench_options o = {
        .seconds = 3,
        .write_seconds = 5,
        .iterations = 100000000,
        .db = "gridsim_bench",
        .batch = 5000,
        .rounds = 3,
    };
    int r;

    r = parse_args(argc, argv, &o);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (bench_encode(&o) < 0)
        return 1;
    if (!o.url)
        return 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    gw_log_set_level(GW_LOG_WARN);
    return bench_write(&o) < 0 ? 1 : 0;
}
