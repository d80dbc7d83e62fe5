/* gridsim bench e2e: gridgate end to end against the broker's own ceiling.
 *
 * Runs against a gridgate that is already running (simulators/bench.sh
 * starts mosquitto, influxd and gridgate on loopback and passes the
 * config and gridgate's PID), in one run:
 *
 *  1. the ceilings: N readings sent as fast as a windowed client can to a
 *     do-nothing receiver in this process, counting them: MQTT QoS 0 and 1
 *     (a Paho publisher to topics gridgate does not subscribe to, a Paho
 *     subscriber), and CoAP when the config enables it (sim_coap's client
 *     with coap_window endpoints, a do-nothing libcoap server);
 *  2. gridgate: the same N readings from the district's smoke detectors,
 *     flat JSON, SenML JSON and SenML CBOR, over MQTT to
 *     devices/{id}/telemetry at QoS 0 and 1 and over CoAP as confirmable
 *     POSTs, timed from the first send until the last one is a point in
 *     InfluxDB; arrival sampled from InfluxDB's own counter of stored
 *     points (see "the sustained rate"), the count of points that arrived
 *     from one InfluxDB count query at the end, ingested and evaluated
 *     from gridgate's own health points (measurement `gridgate`);
 *     gridgate's CPU from /proc/PID/stat over that window; each run also
 *     against InfluxDB's ceiling: the same readings' points, encoded as
 *     gridgate encodes them, bulk-loaded in gridgate's batch size into a
 *     database of their own (with new series, then existing ones, then
 *     existing ones with two requests in flight);
 *  3. latency: readings paced at --rate (10,000/s) for --seconds, QoS 1
 *     JSON; one reading in R/100 is tracked and polled for in InfluxDB by
 *     device and time (publish -> point); smoke alarms from distinct
 *     detectors spread over the run, and the case store (read only) gives
 *     each case's opened_at, in the gateway's wall clock like the publish
 *     time (publish -> case, no polling error).
 *
 * With --peer instead: the same QoS 1 JSON stream, paced at given rates,
 * against another gateway (Node-RED) that writes to its own database; its
 * points, loss, CPU and RSS (--pid), and gridgate's rate over its own.
 *
 * With --no-broker instead: the headroom, in this process, without broker
 * or InfluxDB: readings go through gw_pipeline_ingest (decode, registry,
 * journal), the rule workers with the config's rules, and the InfluxDB
 * feeder's line protocol encoding and gzip, posted to a null HTTP sink in
 * this process that answers 204 (so encoded but not stored).
 *
 * Prints one table and writes the figures as JSON (--out). Every load loop
 * is bounded in count and time; everything is on loopback. */
/* _GNU_SOURCE (nftw, memmem) comes from the build. */
#include <arpa/inet.h>
#include <cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_access.h"
#include "gw_adapter.h"
#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_pipeline.h"
#include "gw_registry.h"
#include "influx_line.h"
#include "influx_query.h"
#include "payload.h"
#include "sim_bench.h"
#include "sim_bench_coap.h"
#include "sim_bench_mqtt.h"
#include "sim_coap.h"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define RUN_LIMIT_NS (120 * NS_PER_S)  /* one load run, publish and drain */
#define QUIET_LIMIT_NS (10 * NS_PER_S) /* no progress this long: the rest is lost */
#define MAX_ALARMS 200
/* The headroom's devices at most: each gets rule state (about 1.7 KB per
 * smoke detector), and a whole district's worth overflows the workers'
 * rules.memory_kb, after which the rules crawl (docs/benchmarks.md,
 * "Rules") and the pipeline's stop, which lets them finish, with them. */
#define HEADROOM_DEVICES 50000
#define WINDOW_QOS1 20   /* mosquitto's max_inflight_messages */
#define WINDOW_QOS0 1000 /* QoS 0: completions are socket writes */

static const struct gw_actor district_viewer = {
    .name = "bench",
    .role = GW_ACTOR_COMMANDER,
    .scope = GW_SCOPE_DISTRICT,
};

enum fmt { FMT_JSON, FMT_SENML, FMT_CBOR };
static const char *const fmt_names[] = {"JSON", "SenML JSON", "SenML CBOR"};
static const int fmt_content_format[] = {SIM_COAP_JSON, SIM_COAP_SENML_JSON, SIM_COAP_SENML_CBOR};

struct e2e {
    const struct gw_config *cfg;
    struct influx_query_options influx;
    const struct gw_device **smoke; /* load: smoke detectors never alarmed */
    size_t n_smoke;
    const struct gw_device **alarm; /* reserved for the latency run's alarms */
    size_t n_alarm;
    int64_t *last_ts_ms; /* per load device: readings' times stay distinct */
    int64_t floor_ms;    /* every reading of the next run is at or after this */
    long pid;            /* gridgate's, 0: unknown */
    uint64_t messages;
    double rate, seconds;
    int coap_window; /* CoAP client endpoints, each one request in flight */
};

/* ---- small helpers ------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct pct {
    int n;
    double p50, p99, max; /* ms */
};

static struct pct percentiles(double *ms, int n)
{
    struct pct p = {.n = n, .p50 = -1, .p99 = -1, .max = -1};

    if (n <= 0)
        return p;
    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
    p.p50 = ms[n / 2];
    p.p99 = ms[(int)((double)(n - 1) * 0.99)];
    p.max = ms[n - 1];
    return p;
}

/* utime + stime of pid in seconds, or -1. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    FILE *f;
    char *p;
    size_t n;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15, counted after the command's closing parenthesis. */
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A line of /proc/PID/status in kB ("VmHWM", "VmRSS"), or -1. */
static long proc_status_kb(long pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long kb = -1;
    FILE *f;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* The first row of a one-statement query: up to n values after the time
 * column (missing ones 0). Returns 1 with a row, 0 with none, or -EIO. */
static int influx_row(const struct e2e *e, const char *query, double *ret, int n)
{
    struct gw_buf body = {0};
    char *error = NULL;
    cJSON *root = NULL, *row;
    int r = -EIO;

    for (int i = 0; i < n; i++)
        ret[i] = 0;
    if (influx_query(&e->influx, query, &body, &error) < 0) {
        fprintf(stderr, "gridsim bench e2e: %s: %s\n", query, error ? error : "query failed");
        free(error);
        goto out;
    }
    root = cJSON_ParseWithLength(body.data, body.len);
    row = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "results"), 0);
    row = cJSON_GetArrayItem(cJSON_GetObjectItem(row, "series"), 0);
    row = cJSON_GetArrayItem(cJSON_GetObjectItem(row, "values"), 0);
    r = 0;
    if (!row)
        goto out;
    for (int i = 0; i < n; i++) {
        cJSON *v = cJSON_GetArrayItem(row, i + 1);
        if (cJSON_IsNumber(v))
            ret[i] = v->valuedouble;
    }
    r = 1;
out:
    cJSON_Delete(root);
    gw_buf_free(&body);
    return r;
}

/* Whether the reading of device at ts_ms is a point in InfluxDB. */
static bool point_landed(const struct e2e *e, const char *device, int64_t ts_ms)
{
    char q[512];
    double count;

    snprintf(q, sizeof(q), "SELECT count(smoke) FROM smoke WHERE device = '%s' AND time = %lld",
             device, (long long)(ts_ms * NS_PER_MS));
    return influx_row(e, q, &count, 1) == 1 && count > 0;
}

/* Points since from_ms, or -1 when the query failed (it times out on a
 * loaded machine with a full district's series: unknown, not none). */
static double points_since(const struct e2e *e, int64_t from_ms)
{
    char q[256];
    double count;
    int r;

    snprintf(q, sizeof(q), "SELECT count(smoke) FROM smoke WHERE time >= %lld",
             (long long)(from_ms * NS_PER_MS));
    r = influx_row(e, q, &count, 1);
    return r == 1 ? count : r == 0 ? 0 : -1;
}

/* gridgate's health point: readings accepted, the rule workers' lag. */
struct health {
    double accepted, rules_lag, points_written;
};

static struct health health_now(const struct e2e *e)
{
    double v[3];
    struct health h = {0};

    if (influx_row(e,
                   "SELECT last(readings_accepted), last(rules_lag), last(points_written) "
                   "FROM gridgate",
                   v, 3) == 1) {
        h.accepted = v[0];
        h.rules_lag = v[1];
        h.points_written = v[2];
    }
    return h;
}

/* ---- SenML CBOR (RFC 8428 section 6): just what a smoke reading needs --- */

struct cbor_out {
    unsigned char *p;
    size_t len, size;
};

static void cbor_put(struct cbor_out *o, const unsigned char *b, size_t n)
{
    if (o->len + n <= o->size)
        memcpy(o->p + o->len, b, n);
    o->len += n; /* past size: the caller sees it and fails */
}

/* A head: major type and argument, in the shortest form. */
static void cbor_head(struct cbor_out *o, unsigned major, uint64_t v)
{
    unsigned char b[9];
    int extra = v < 24 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffff ? 4 : 8;

    b[0] = (unsigned char)(major << 5 | (extra == 0   ? v
                                         : extra == 1 ? 24
                                         : extra == 2 ? 25
                                         : extra == 4 ? 26
                                                      : 27));
    for (int i = 0; i < extra; i++)
        b[1 + i] = (unsigned char)(v >> (8 * (extra - 1 - i)));
    cbor_put(o, b, (size_t)(1 + extra));
}

/* A double-precision float (major 7, 0xfb), big-endian. */
static void cbor_double(struct cbor_out *o, double d)
{
    unsigned char b[9] = {0xfb};
    uint64_t bits;

    memcpy(&bits, &d, sizeof(bits));
    for (int i = 0; i < 8; i++)
        b[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
    cbor_put(o, b, sizeof(b));
}

/* A record's name label (0) and its text. */
static void cbor_name(struct cbor_out *o, const char *name)
{
    size_t n = strlen(name);

    cbor_head(o, 0, 0);
    cbor_head(o, 3, n);
    cbor_put(o, (const unsigned char *)name, n);
}

#define SENML_BT 2 /* label -3: a negative integer's argument is -1 - label */
#define SENML_V 2
#define SENML_VB 4

static int senml_cbor(char *buf, size_t size, int64_t ts, bool alarm, uint64_t seq)
{
    struct cbor_out o = {.p = (unsigned char *)buf, .size = size};

    cbor_head(&o, 4, 5); /* five records */
    cbor_head(&o, 5, 3);
    cbor_head(&o, 1, SENML_BT);
    cbor_double(&o, (double)ts / 1000.0);
    cbor_name(&o, "smoke");
    cbor_head(&o, 0, SENML_V);
    cbor_double(&o, alarm ? 0.31 : 0.02);
    cbor_head(&o, 5, 2);
    cbor_name(&o, "temp");
    cbor_head(&o, 0, SENML_V);
    cbor_double(&o, 22.5);
    cbor_head(&o, 5, 2);
    cbor_name(&o, "battery");
    cbor_head(&o, 0, SENML_V);
    cbor_head(&o, 0, 87);
    cbor_head(&o, 5, 2);
    cbor_name(&o, "alarm");
    cbor_head(&o, 0, SENML_VB);
    cbor_head(&o, 7, alarm ? 21 : 20);
    cbor_head(&o, 5, 2);
    cbor_name(&o, "seq");
    cbor_head(&o, 0, SENML_V);
    cbor_head(&o, 0, seq);
    return o.len < size ? (int)o.len : -ENOSPC;
}

/* One smoke detector reading; its time stays distinct per device (a
 * repeated time would overwrite a point instead of adding one). */
static int format_reading(struct e2e *e, enum fmt fmt, size_t dev, bool alarm, uint64_t seq,
                          int64_t *ret_ts_ms, char *buf, size_t size)
{
    int64_t ts = gw_now_ns() / NS_PER_MS;
    int n;

    if (ts < e->floor_ms)
        ts = e->floor_ms;
    if (!alarm) {
        if (ts <= e->last_ts_ms[dev])
            ts = e->last_ts_ms[dev] + 1;
        e->last_ts_ms[dev] = ts;
    }
    if (fmt == FMT_CBOR)
        n = senml_cbor(buf, size, ts, alarm, seq);
    else if (fmt == FMT_JSON)
        n = snprintf(buf, size,
                     "{\"ts\":%lld,\"smoke\":%s,\"temp\":22.5,\"battery\":87,\"alarm\":%s,"
                     "\"seq\":%llu}",
                     (long long)ts, alarm ? "0.31" : "0.02", alarm ? "true" : "false",
                     (unsigned long long)seq);
    else
        n = snprintf(buf, size,
                     "[{\"bt\":%lld.%03d,\"n\":\"smoke\",\"v\":%s},{\"n\":\"temp\",\"v\":22.5},"
                     "{\"n\":\"battery\",\"v\":87},{\"n\":\"alarm\",\"vb\":%s},"
                     "{\"n\":\"seq\",\"v\":%llu}]",
                     (long long)(ts / 1000), (int)(ts % 1000), alarm ? "0.31" : "0.02",
                     alarm ? "true" : "false", (unsigned long long)seq);
    *ret_ts_ms = ts;
    return n > 0 && (size_t)n < size ? n : -ENOSPC;
}

/* The next run's readings start after every earlier one's. */
static void next_floor(struct e2e *e)
{
    int64_t max = gw_now_ns() / NS_PER_MS;

    for (size_t i = 0; i < e->n_smoke; i++)
        if (e->last_ts_ms[i] > max)
            max = e->last_ts_ms[i];
    e->floor_ms = max + 1;
}

/* ---- the sustained rate -------------------------------------------------- */

/* Counts sampled during a load run, in a thread of its own: readings the
 * do-nothing subscriber or server got, or the points InfluxDB stored into
 * a database since the run began. The sustained rate is the slope between
 * 10% and 90% of the final count, which leaves out the start (connections,
 * first batches) and the tail (InfluxDB's flush interval), the same way
 * for the ceilings and gridgate.
 *
 * InfluxDB's side is sampled from its own counter of stored points (the
 * database's shards' writePointsOk in /debug/vars), not by counting the
 * points with a query: `SELECT count(smoke) ... WHERE time >= T` reads
 * every series, and on a full district (290,000 smoke detectors, a series
 * each) one took from 0.2 s to over 20 s under load; asked back to back,
 * InfluxDB was answering one or two at any time and used about twice the
 * CPU, so the measurement competed with the writes it measured and lagged
 * them by as long as a query took. The counter costs InfluxDB a
 * statistics snapshot, is sampled every 100 ms, and is exact when it is
 * taken. It counts every point of the database, so gridgate's own (its
 * health and case figures each stats interval, a few dozen) are in it;
 * await_points scales them out, and the count of readings that arrived
 * stays one count(smoke) query at the end of each run. */
#define MAX_SAMPLES 4096

struct sampler {
    struct e2e *e;
    struct sim_sub *sub;         /* the MQTT ceiling's subscriber, or */
    struct sim_coap_null *null;  /* the CoAP ceiling's server, or */
    const uint64_t *acked;       /* the InfluxDB ceiling's stored points (atomic); none:
                                    InfluxDB's counter */
    const char *db;              /* whose points InfluxDB's counter gives */
    uint64_t base;               /* that counter when sampling began */
    int64_t interval_ns;
    int stop; /* atomic */
    int n;
    int64_t latest;      /* the newest count, for await_points (atomic; -1: none yet) */
    int64_t longest_ns;  /* the slowest sample's request */
    int64_t t[MAX_SAMPLES];
    double count[MAX_SAMPLES];
    pthread_t thread;
};

/* One sample into s (when it fits and the count is known). */
static void sampler_take(struct sampler *s)
{
    int64_t t = gw_monotonic_ns(), took;
    uint64_t ok = 0;
    double c = s->sub     ? (double)sim_sub_received(s->sub)
               : s->null  ? (double)sim_coap_null_received(s->null)
               : s->acked ? (double)__atomic_load_n(s->acked, __ATOMIC_ACQUIRE)
               : sim_bench_influx_points_ok(&s->e->influx, s->db, &ok) == 0
                   ? (double)(ok >= s->base ? ok - s->base : 0)
                   : -1;

    /* The count is taken at the request's middle, give or take half of it. */
    took = gw_monotonic_ns() - t;
    t += took / 2;
    if (took > s->longest_ns)
        s->longest_ns = took;
    if (c >= 0 && s->n < MAX_SAMPLES) {
        s->t[s->n] = t;
        s->count[s->n] = c;
        s->n++;
        __atomic_store_n(&s->latest, (int64_t)c, __ATOMIC_RELEASE);
    }
}

static void *sample_thread(void *arg)
{
    struct sampler *s = arg;

    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) && s->n < MAX_SAMPLES) {
        sampler_take(s);
        usleep((useconds_t)(s->interval_ns / 1000));
    }
    return NULL;
}

/* One of sub, null, acked counts; none: InfluxDB's counter of db's points. */
static int sampler_start(struct sampler *s, struct e2e *e, struct sim_sub *sub,
                         struct sim_coap_null *null, const uint64_t *acked, const char *db)
{
    bool in_process = sub || null || acked;

    memset(s, 0, sizeof(*s));
    s->e = e;
    s->sub = sub;
    s->null = null;
    s->acked = acked;
    s->db = db;
    s->interval_ns = in_process ? 20 * NS_PER_MS : 100 * NS_PER_MS;
    if (!in_process && sim_bench_influx_points_ok(&e->influx, db, &s->base) < 0) {
        fprintf(stderr, "gridsim bench e2e: InfluxDB at %s gives no statistics at /debug/vars\n",
                e->influx.url);
        return -EIO;
    }
    /* Nothing has arrived yet: the first sample, known without asking. */
    s->t[0] = gw_monotonic_ns();
    s->count[0] = 0;
    s->n = 1;
    s->latest = -1;
    return pthread_create(&s->thread, NULL, sample_thread, s) == 0 ? 0 : -EAGAIN;
}

/* The newest count, or -1 before the first one taken. */
static double sampler_latest(struct sampler *s)
{
    return (double)__atomic_load_n(&s->latest, __ATOMIC_ACQUIRE);
}

/* Stops sampling and takes a last sample. */
static void sampler_end(struct sampler *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->thread, NULL);
    sampler_take(s);
}

/* The count's last sample. */
static double sampler_last(const struct sampler *s)
{
    return s->count[s->n - 1];
}

/* The first time the count reached at least c (the last sample's when it
 * never did). */
static int64_t sampler_time_of(const struct sampler *s, double c)
{
    for (int i = 0; i < s->n; i++)
        if (s->count[i] >= c)
            return s->t[i];
    return s->t[s->n - 1];
}

/* The sustained rate of an ended sampler given the final count, or -1. */
static double sampler_slope(const struct sampler *s, double total)
{
    int a = -1, b = -1;

    for (int i = 0; i < s->n; i++) {
        if (a < 0 && s->count[i] >= 0.1 * total)
            a = i;
        if (b < 0 && s->count[i] >= 0.9 * total)
            b = i;
    }
    /* One sample past both marks (InfluxDB's batches are large): the slope
     * from the sample before it. */
    if (a >= 1 && b == a)
        a--;
    if (a < 0 || b <= a || s->t[b] == s->t[a])
        return -1;
    return (s->count[b] - s->count[a]) / ((double)(s->t[b] - s->t[a]) / 1e9);
}

/* Stops sampling; the sustained rate given the final count, or -1. */
static double sampler_stop(struct sampler *s, double total)
{
    sampler_end(s);
    return sampler_slope(s, total);
}

/* ---- 1. the ceiling ----------------------------------------------------- */

struct ceiling {
    int qos;
    uint64_t sent, received;
    double pub_rate;
    double rate;      /* delivered readings/s, first publish to last delivery */
    double sustained; /* the 10%-90% slope */
};

static int run_ceiling(struct e2e *e, int qos, struct ceiling *ret)
{
    struct sim_sub sub;
    struct sim_pub pub = {0};
    char topic[256], payload[256], client[64], filter[64];
    int64_t t0, t_pub = 0, last_change, ts;
    uint64_t seen = 0, i;
    struct sampler samples;
    bool sampling = false;
    int r = -EIO;

    memset(ret, 0, sizeof(*ret));
    ret->qos = qos;
    snprintf(filter, sizeof(filter), "e2e-ceiling-%ld/+/telemetry", (long)getpid());
    snprintf(client, sizeof(client), "gridsim-e2e-sub-%ld", (long)getpid());
    if (sim_sub_init(&sub, e->cfg->mqtt.uri, client, filter, 1, 0) < 0)
        return -EIO;
    if (sim_sub_connect(&sub) < 0 || !sim_bench_wait_flag(&sub.subscribed, 10)) {
        fprintf(stderr, "gridsim bench e2e: cannot subscribe on %s\n", e->cfg->mqtt.uri);
        goto out;
    }
    snprintf(client, sizeof(client), "gridsim-e2e-pub-%ld", (long)getpid());
    if (sim_pub_open(&pub, e->cfg->mqtt.uri, client, qos, qos ? WINDOW_QOS1 : WINDOW_QOS0) < 0) {
        fprintf(stderr, "gridsim bench e2e: cannot connect to %s\n", e->cfg->mqtt.uri);
        goto out;
    }
    if (sampler_start(&samples, e, &sub, NULL, NULL, NULL) < 0)
        goto out;
    sampling = true;
    t0 = gw_monotonic_ns();
    for (i = 0; i < e->messages && gw_monotonic_ns() - t0 < RUN_LIMIT_NS; i++) {
        size_t dev = i % e->n_smoke;
        int len = format_reading(e, FMT_JSON, dev, false, i, &ts, payload, sizeof(payload));

        snprintf(topic, sizeof(topic), "e2e-ceiling-%ld/%s/telemetry", (long)getpid(),
                 e->smoke[dev]->id);
        if (len < 0 || sim_pub_send(&pub, topic, payload, len) < 0)
            break;
    }
    ret->sent = i;
    sim_pub_drain(&pub, 30);
    t_pub = gw_monotonic_ns();
    ret->pub_rate = (double)ret->sent / ((double)(t_pub - t0) / 1e9);
    last_change = t_pub;
    /* Until every reading arrived or none came for a while. */
    while (sim_sub_received(&sub) < ret->sent && gw_monotonic_ns() - last_change < 3 * NS_PER_S) {
        uint64_t now_seen = sim_sub_received(&sub);
        if (now_seen != seen) {
            seen = now_seen;
            last_change = gw_monotonic_ns();
        }
        usleep(10000);
    }
    ret->received = sim_sub_received(&sub);
    ret->sustained = sampler_stop(&samples, (double)ret->received);
    sampling = false;
    if (ret->received > 0)
        ret->rate = (double)ret->received /
                    ((double)(__atomic_load_n(&sub.last_ns, __ATOMIC_RELAXED) - t0) / 1e9);
    r = 0;
out:
    if (sampling)
        sampler_stop(&samples, 0);
    sim_pub_close(&pub);
    sim_sub_disconnect(&sub);
    sim_sub_destroy(&sub);
    next_floor(e);
    return r;
}

/* ---- 2. gridgate end to end --------------------------------------------- */

struct e2e_run {
    const char *transport; /* "mqtt", "coap" */
    int qos;               /* MQTT */
    enum fmt fmt;
    uint64_t sent;
    uint64_t acked; /* CoAP: answered 2.04; -1 as unsigned: not counted */
    double target_rate; /* paced at this (0: as fast as the window allows) */
    double points, ingested, evaluated;
    double pub_rate;
    double rate;      /* points in InfluxDB per second, first publish to the last */
    double sustained; /* the 10%-90% slope of the points in InfluxDB */
    double cpu_pct;   /* the gateway's, of one core, first publish to the last point */
    double ratio;     /* sustained / the ceiling's sustained, same transport and QoS */
    double vs_influx; /* sustained / InfluxDB's ceiling's sustained, same points (NAN: not
                         measured against it; -1: too few samples) */
    long rss_kb, hwm_kb; /* the gateway's at the end of the run */
};

/* Paced publishing: sleeps until reading i is due at rate (0: never). */
static void pace(int64_t t0, uint64_t i, double rate)
{
    int64_t due, now;

    if (rate <= 0)
        return;
    due = t0 + (int64_t)((double)i * 1e9 / rate);
    now = gw_monotonic_ns();
    if (due - now > 200000)
        usleep((useconds_t)((due - now) / 1000));
}

/* After the load: waits until the last reading sent is a point in InfluxDB
 * (or InfluxDB stops storing points), then takes the counts, the sustained
 * rate and the gateway's CPU since t0 and cpu0; with health, gridgate's own
 * counters since h0. */
static void await_points(struct e2e *e, struct e2e_run *ret, struct sampler *samples, int64_t t0,
                         int64_t from_ms, size_t last_dev, int64_t ts, double cpu0,
                         const struct health *h0)
{
    /* Stored points that are not progress: gridgate's own lines over
     * QUIET_LIMIT_NS (its health and case figures, a few dozen a second). */
    const double quiet_points = 1000;
    int64_t t_end, last_change, now;
    double cpu1, seen = 0, stored;
    bool landed = false;

    /* The last reading published lands last (one writer, journal order).
     * Until InfluxDB's counter (the sampler's newest, no request of its
     * own) has stored as many points as were sent, nothing is asked; then
     * the last reading alone is polled for, by device and time (an index
     * lookup). If it never comes (QoS 0 may lose it), the counter stops
     * moving instead. */
    t_end = last_change = gw_monotonic_ns();
    while (ret->sent > 0 && (now = gw_monotonic_ns()) - t0 < RUN_LIMIT_NS) {
        double c = sampler_latest(samples);

        if (c >= (double)ret->sent && point_landed(e, e->smoke[last_dev]->id, ts)) {
            t_end = gw_monotonic_ns();
            landed = true;
            break;
        }
        if (c > seen + quiet_points) {
            seen = c;
            last_change = now;
        } else if (now - last_change >= QUIET_LIMIT_NS) {
            break;
        }
        usleep(20000);
    }
    cpu1 = proc_cpu_s(e->pid);
    sampler_end(samples);
    /* The one count query of the run: what arrived is InfluxDB's answer,
     * not a counter's. */
    ret->points = points_since(e, from_ms);
    for (int tries = 1; ret->points < 0 && tries < 3; tries++)
        ret->points = points_since(e, from_ms);
    if (ret->points < 0) {
        fprintf(stderr, "gridsim bench e2e: InfluxDB did not count the points: 0 below\n");
        ret->points = 0;
    }
    /* Without the last reading: when the counter reached what arrived. */
    if (!landed && ret->sent > 0)
        t_end = sampler_time_of(samples, ret->points);
    /* The slope of all stored points, less gridgate's own share of them. */
    stored = sampler_last(samples);
    ret->sustained = sampler_slope(samples, stored);
    if (ret->sustained > 0 && stored > ret->points)
        ret->sustained *= ret->points / stored;
    ret->rate = t_end > t0 ? ret->points / ((double)(t_end - t0) / 1e9) : 0;
    if (cpu0 >= 0 && cpu1 >= 0)
        ret->cpu_pct = 100.0 * (cpu1 - cpu0) / ((double)(t_end - t0) / 1e9);
    else
        ret->cpu_pct = -1;
    ret->rss_kb = proc_status_kb(e->pid, "VmRSS");
    ret->hwm_kb = proc_status_kb(e->pid, "VmHWM");
    printf("  %.0f of %llu readings in InfluxDB (%.0f points stored); arrival sampled %d "
           "times from InfluxDB's counter, the slowest in %.0f ms\n",
           ret->points, (unsigned long long)ret->sent, stored, samples->n,
           (double)samples->longest_ns / 1e6);
    if (h0) {
        /* gridgate's health comes every stats interval (bench.sh sets 1 s). */
        usleep(2200 * 1000);
        struct health h1 = health_now(e);
        ret->ingested = h1.accepted - h0->accepted;
        ret->evaluated = ret->ingested - h1.rules_lag;
    } else {
        ret->ingested = ret->evaluated = -1;
    }
    next_floor(e);
}

/* n readings over MQTT to devices/{id}/telemetry, as fast as the window
 * allows or paced at rate; with_health: the gateway is gridgate. */
static int run_gateway(struct e2e *e, int qos, enum fmt fmt, uint64_t n, double rate,
                       bool with_health, struct e2e_run *ret)
{
    struct sim_pub pub = {0};
    struct health h0 = {0};
    char topic[256], payload[320], client[64];
    int64_t t0, ts = 0, from_ms = e->floor_ms;
    double cpu0;
    size_t last_dev = 0;
    struct sampler samples;
    uint64_t i;

    memset(ret, 0, sizeof(*ret));
    ret->transport = "mqtt";
    ret->qos = qos;
    ret->fmt = fmt;
    ret->acked = UINT64_MAX;
    ret->target_rate = rate;
    ret->vs_influx = NAN;
    if (with_health)
        h0 = health_now(e);
    snprintf(client, sizeof(client), "gridsim-e2e-pub-%ld", (long)getpid());
    if (sim_pub_open(&pub, e->cfg->mqtt.uri, client, qos, qos ? WINDOW_QOS1 : WINDOW_QOS0) < 0) {
        fprintf(stderr, "gridsim bench e2e: cannot connect to %s\n", e->cfg->mqtt.uri);
        sim_pub_close(&pub);
        return -EIO;
    }
    if (sampler_start(&samples, e, NULL, NULL, NULL, e->influx.database) < 0) {
        sim_pub_close(&pub);
        return -EIO;
    }
    cpu0 = proc_cpu_s(e->pid);
    t0 = gw_monotonic_ns();
    for (i = 0; i < n && gw_monotonic_ns() - t0 < RUN_LIMIT_NS; i++) {
        size_t dev = i % e->n_smoke;
        int len;

        pace(t0, i, rate);
        len = format_reading(e, fmt, dev, false, i, &ts, payload, sizeof(payload));
        snprintf(topic, sizeof(topic), "devices/%s/telemetry", e->smoke[dev]->id);
        if (len < 0 || sim_pub_send(&pub, topic, payload, len) < 0)
            break;
        last_dev = dev;
    }
    ret->sent = i;
    sim_pub_drain(&pub, 30);
    ret->pub_rate = (double)ret->sent / ((double)(gw_monotonic_ns() - t0) / 1e9);
    sim_pub_close(&pub);
    await_points(e, ret, &samples, t0, from_ms, last_dev, ts, cpu0, with_health ? &h0 : NULL);
    return 0;
}

/* ---- 2b. CoAP ----------------------------------------------------------- */

/* n readings as confirmable POSTs to /devices/{id}/telemetry with
 * e->coap_window client endpoints (NSTART 1 each). null: the do-nothing
 * server of the ceiling (then ret's points are its answers), else
 * gridgate's CoAP listener and the points come from InfluxDB. */
static int run_coap(struct e2e *e, enum fmt fmt, struct sim_coap_null *null, struct e2e_run *ret)
{
    struct sim_coap *c;
    struct sim_coap_counts counts;
    struct health h0 = {0};
    char uri[300], payload[320];
    int64_t t0, ts = 0, from_ms = e->floor_ms;
    double cpu0;
    size_t last_dev = 0;
    struct sampler samples;
    uint64_t i;

    memset(ret, 0, sizeof(*ret));
    ret->transport = "coap";
    ret->fmt = fmt;
    ret->vs_influx = NAN;
    if (null)
        snprintf(uri, sizeof(uri), "coap://127.0.0.1:%d", null->port);
    else if (strchr(e->cfg->coap.listen, ':')) /* IPv6: "::" means every address */
        snprintf(uri, sizeof(uri), "coap://[%s]:%d",
                 strcmp(e->cfg->coap.listen, "::") == 0 ? "::1" : e->cfg->coap.listen,
                 e->cfg->coap.port);
    else
        snprintf(uri, sizeof(uri), "coap://%s:%d",
                 strcmp(e->cfg->coap.listen, "0.0.0.0") == 0 ? "127.0.0.1" : e->cfg->coap.listen,
                 e->cfg->coap.port);
    if (!null)
        h0 = health_now(e);
    c = sim_coap_new_window(uri, e->coap_window);
    if (!c)
        return -EIO;
    if (sampler_start(&samples, e, NULL, null, NULL, e->influx.database) < 0) {
        sim_coap_free(c);
        return -EIO;
    }
    cpu0 = null ? -1 : proc_cpu_s(e->pid);
    t0 = gw_monotonic_ns();
    for (i = 0; i < e->messages && gw_monotonic_ns() - t0 < RUN_LIMIT_NS; i++) {
        size_t dev = i % e->n_smoke;
        int len = format_reading(e, fmt, dev, false, i, &ts, payload, sizeof(payload));

        if (len < 0 || sim_coap_send(c, e->smoke[dev]->id, "telemetry", fmt_content_format[fmt],
                                     payload, (size_t)len) < 0)
            break;
        last_dev = dev;
    }
    sim_coap_drain(c, 30000);
    sim_coap_counts(c, &counts);
    ret->sent = counts.sent;
    ret->acked = counts.changed;
    ret->pub_rate = (double)ret->sent / ((double)(gw_monotonic_ns() - t0) / 1e9);
    if (counts.other || counts.failed)
        fprintf(stderr, "gridsim bench e2e: CoAP %s: %llu answers other than 2.04, %llu without "
                        "an answer\n",
                fmt_names[fmt], (unsigned long long)counts.other,
                (unsigned long long)counts.failed);
    if (null) {
        ret->points = (double)sim_coap_null_received(null);
        ret->sustained = sampler_stop(&samples, ret->points);
        ret->rate = counts.last_ns > t0 ? ret->points / ((double)(counts.last_ns - t0) / 1e9) : 0;
        ret->cpu_pct = -1;
        next_floor(e);
    } else {
        await_points(e, ret, &samples, t0, from_ms, last_dev, ts, cpu0, &h0);
    }
    sim_coap_free(c);
    return 0;
}

/* The CoAP ceiling: the same client and window against a do-nothing
 * libcoap server in this process. */
static int run_coap_ceiling(struct e2e *e, struct e2e_run *ret)
{
    struct sim_coap_null null;
    int r;

    if (sim_coap_null_start(&null) < 0)
        return -EIO;
    r = run_coap(e, FMT_JSON, &null, ret);
    sim_coap_null_stop(&null);
    return r;
}

/* ---- 2c. InfluxDB's own ceiling ------------------------------------------ */

/* The database of the InfluxDB ceiling, created and dropped by each run. */
#define INFLUX_CEILING_DB "gridsim_e2e_influx_ceiling"

/* The next n readings as gridgate writes them: the flat JSON payload of
 * the gridgate runs, decoded by gridgate's decoder for the same device,
 * encoded by its line protocol encoder (adapters/payload.c,
 * adapters/influx_line.c), each batch_size lines a batch; cuts[k] is where
 * batch k begins, cuts[n_batches] the end. Returns 0 or a negative errno. */
static int encode_points(struct e2e *e, uint64_t n, size_t batch_size, struct gw_buf *text,
                         size_t *cuts)
{
    char payload[320], reason[128];
    int64_t ts;

    gw_buf_reset(text);
    for (uint64_t i = 0; i < n; i++) {
        size_t dev = i % e->n_smoke;
        int len = format_reading(e, FMT_JSON, dev, false, i, &ts, payload, sizeof(payload));
        struct gw_reading *r =
            len < 0 ? NULL : gw_reading_new(e->smoke[dev]->id, GW_CHANNEL_TELEMETRY, gw_now_ns());
        int err;

        if (!r)
            return len < 0 ? len : -ENOMEM;
        r->device = e->smoke[dev];
        if (i % batch_size == 0)
            cuts[i / batch_size] = text->len;
        err = payload_decode(PAYLOAD_JSON, payload, (size_t)len, NULL, r, reason, sizeof(reason));
        if (err < 0)
            fprintf(stderr, "gridsim bench e2e: reading %llu: %s\n", (unsigned long long)i,
                    reason);
        else
            err = influx_line_reading(text, r);
        gw_reading_unref(r);
        if (err < 0)
            return err;
    }
    cuts[(n + batch_size - 1) / batch_size] = text->len;
    return 0;
}

/* The bulk load's passes: the first into the fresh database creates every
 * device's series (as gridgate's first run into its fresh database does),
 * the later ones, with later times, find them (as gridgate's later runs
 * do); the last with two requests in flight, which gridgate's writer (one
 * at a time) does not do: how much InfluxDB leaves to a writer that would. */
#define INFLUX_PASSES 3
static const struct {
    const char *series;
    int connections;
} influx_passes[INFLUX_PASSES] = {{"new", 1}, {"existing", 1}, {"existing", 2}};

/* One bulk load: pre-encoded batches, taken in order by its connections. */
struct bulk {
    const struct e2e *e;
    const struct gw_buf *text;
    const size_t *cuts;
    size_t n_batches, batch;
    size_t next;    /* the next batch to send (atomic) */
    uint64_t acked; /* points answered 204 (atomic) */
    int failed;     /* a request failed: every connection stops (atomic) */
};

struct bulk_conn {
    struct bulk *b;
    pthread_t thread;
    int64_t t_last; /* when its last batch was answered */
};

static void *bulk_thread(void *arg)
{
    struct bulk_conn *c = arg;
    struct bulk *b = c->b;
    struct sim_bench_influx_post *post = sim_bench_influx_post_open(&b->e->influx,
                                                                    INFLUX_CEILING_DB);
    char error[256];

    if (!post) {
        __atomic_store_n(&b->failed, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    while (!__atomic_load_n(&b->failed, __ATOMIC_ACQUIRE)) {
        size_t k = __atomic_fetch_add(&b->next, 1, __ATOMIC_ACQ_REL), lines;

        if (k >= b->n_batches)
            break;
        lines = k + 1 < b->n_batches ? b->batch : (size_t)(b->e->messages - k * b->batch);
        if (sim_bench_influx_post(post, b->text->data + b->cuts[k], b->cuts[k + 1] - b->cuts[k],
                                  error, sizeof(error)) < 0) {
            fprintf(stderr, "gridsim bench e2e: bulk load into %s: %s\n", INFLUX_CEILING_DB,
                    error);
            __atomic_store_n(&b->failed, 1, __ATOMIC_RELEASE);
            break;
        }
        c->t_last = gw_monotonic_ns();
        __atomic_add_fetch(&b->acked, lines, __ATOMIC_ACQ_REL);
    }
    sim_bench_influx_post_close(post);
    return NULL;
}

/* InfluxDB's ceiling: the same n readings' points bulk-loaded into
 * INFLUX_CEILING_DB, pre-encoded (encoding is not timed), in batches of
 * influx.batch_size as gridgate's writer sends them, each POSTed plain on
 * a kept-alive connection as soon as the last was answered: what this
 * InfluxDB stores of these points at most, with nothing else to do, in
 * each of influx_passes. ret[k]: pass k. */
static int run_influx_ceiling(struct e2e *e, struct e2e_run ret[INFLUX_PASSES])
{
    struct bulk b = {.e = e};
    struct gw_buf text = GW_BUF_INIT;
    size_t *cuts;
    int r = -EIO;

    b.batch = e->cfg->influx.batch_size > 0 ? (size_t)e->cfg->influx.batch_size : 5000;
    b.n_batches = (size_t)((e->messages + b.batch - 1) / b.batch);
    b.text = &text;
    b.cuts = cuts = calloc(b.n_batches + 1, sizeof(*cuts));
    if (!cuts)
        return -ENOMEM;
    sim_bench_influx_admin(&e->influx, "DROP", INFLUX_CEILING_DB);
    if (sim_bench_influx_admin(&e->influx, "CREATE", INFLUX_CEILING_DB) < 0)
        goto out;
    for (int pass = 0; pass < INFLUX_PASSES; pass++) {
        struct bulk_conn conns[2];
        int n_conns = influx_passes[pass].connections, started = 0;
        struct e2e_run *run = &ret[pass];
        struct sampler samples;
        int64_t t0, t_last = 0;
        int err = encode_points(e, e->messages, b.batch, &text, cuts);
        uint64_t stored0 = 0, stored1 = 0;

        memset(run, 0, sizeof(*run));
        run->transport = "influx";
        run->acked = UINT64_MAX;
        run->ingested = run->evaluated = run->cpu_pct = run->ratio = run->vs_influx = -1;
        if (err < 0) {
            fprintf(stderr, "gridsim bench e2e: cannot encode the points: %s\n", strerror(-err));
            goto out;
        }
        b.next = 0;
        b.acked = 0;
        /* InfluxDB stored a batch when it answers 204: sampled here, in
         * this process, every 20 ms as the other ceilings; its own counter
         * before and after checks that every point was stored. */
        if (sim_bench_influx_points_ok(&e->influx, INFLUX_CEILING_DB, &stored0) < 0 ||
            sampler_start(&samples, e, NULL, NULL, &b.acked, NULL) < 0)
            goto out;
        t0 = gw_monotonic_ns();
        for (; started < n_conns; started++) {
            conns[started] = (struct bulk_conn){.b = &b, .t_last = t0};
            if (pthread_create(&conns[started].thread, NULL, bulk_thread, &conns[started]) != 0) {
                __atomic_store_n(&b.failed, 1, __ATOMIC_RELEASE);
                break;
            }
        }
        for (int i = 0; i < started; i++) {
            pthread_join(conns[i].thread, NULL);
            if (conns[i].t_last > t_last)
                t_last = conns[i].t_last;
        }
        run->sent = b.acked;
        run->points = (double)b.acked;
        run->pub_rate = t_last > t0 ? run->points / ((double)(t_last - t0) / 1e9) : 0;
        run->rate = run->pub_rate;
        run->sustained = sampler_stop(&samples, run->points);
        if (b.failed || sim_bench_influx_points_ok(&e->influx, INFLUX_CEILING_DB, &stored1) < 0)
            goto out;
        printf("  %s series, %d connection(s): %llu points in batches of %zu; InfluxDB's "
               "counter: %llu stored\n",
               influx_passes[pass].series, n_conns, (unsigned long long)b.acked, b.batch,
               (unsigned long long)(stored1 - stored0));
        if (stored1 - stored0 != b.acked)
            fprintf(stderr, "gridsim bench e2e: InfluxDB stored %llu of the %llu points it "
                            "answered 204 for\n",
                    (unsigned long long)(stored1 - stored0), (unsigned long long)b.acked);
        next_floor(e);
    }
    r = 0;
out:
    /* Its series would otherwise stay in InfluxDB's memory. */
    sim_bench_influx_admin(&e->influx, "DROP", INFLUX_CEILING_DB);
    gw_buf_free(&text);
    free(cuts);
    return r;
}

/* ---- 3. latency --------------------------------------------------------- */

struct tracked {
    size_t dev;
    int64_t ts_ms;
    int64_t pub_ns; /* wall clock, as the gateway's */
    double ms;      /* publish -> point; < 0: not seen */
};

struct latency {
    struct e2e *e;
    struct tracked *t;
    size_t cap;
    size_t n; /* published so far (atomic) */
    int done; /* publishing finished (atomic) */
    int64_t stop_ns;
    /* alarms */
    int64_t alarm_ns[MAX_ALARMS];
    size_t n_alarms;
    /* results */
    uint64_t sent;
    double pub_rate, cpu_pct;
    struct pct point, kase;
    int cases_seen;
};

static void *poll_points(void *arg)
{
    struct latency *l = arg;
    size_t next = 0;

    for (;;) {
        size_t n = __atomic_load_n(&l->n, __ATOMIC_ACQUIRE);

        if (next >= n) {
            if (__atomic_load_n(&l->done, __ATOMIC_ACQUIRE) || gw_monotonic_ns() > l->stop_ns)
                break;
            usleep(2000);
            continue;
        }
        if (gw_monotonic_ns() > l->stop_ns)
            break;
        struct tracked *t = &l->t[next];
        if (point_landed(l->e, l->e->smoke[t->dev]->id, t->ts_ms)) {
            t->ms = (double)(gw_now_ns() - t->pub_ns) / 1e6;
            next++;
        } else {
            usleep(2000);
        }
    }
    return NULL;
}

static int run_latency(struct e2e *e, struct latency *l)
{
    struct sim_pub pub = {0};
    pthread_t poller;
    char topic[256], payload[320], client[64];
    uint64_t total = (uint64_t)(e->rate * e->seconds), track_every, alarm_every;
    int64_t t0, ts;
    double cpu0, *ms = NULL;
    uint64_t i;
    int n;

    memset(l, 0, sizeof(*l));
    l->e = e;
    track_every = e->rate >= 200 ? (uint64_t)(e->rate / 100) : 1;
    alarm_every = e->n_alarm ? total / e->n_alarm : 0;
    if (alarm_every == 0)
        alarm_every = 1;
    l->cap = total / track_every + 1;
    l->t = calloc(l->cap, sizeof(*l->t));
    if (!l->t)
        return -ENOMEM;
    snprintf(client, sizeof(client), "gridsim-e2e-pub-%ld", (long)getpid());
    if (sim_pub_open(&pub, e->cfg->mqtt.uri, client, 1, WINDOW_QOS1) < 0) {
        fprintf(stderr, "gridsim bench e2e: cannot connect to %s\n", e->cfg->mqtt.uri);
        sim_pub_close(&pub);
        return -EIO;
    }
    l->stop_ns = gw_monotonic_ns() + (int64_t)(e->seconds * 1e9) + 30 * NS_PER_S;
    if (pthread_create(&poller, NULL, poll_points, l) != 0) {
        sim_pub_close(&pub);
        return -EAGAIN;
    }
    cpu0 = proc_cpu_s(e->pid);
    t0 = gw_monotonic_ns();
    for (i = 0; i < total && gw_monotonic_ns() - t0 < RUN_LIMIT_NS; i++) {
        int64_t due = t0 + (int64_t)((double)i * 1e9 / e->rate), now = gw_monotonic_ns();
        bool alarm = i % alarm_every == alarm_every / 2 && l->n_alarms < e->n_alarm;
        const struct gw_device *d;
        size_t dev = i % e->n_smoke;
        int len;

        if (due - now > 200000)
            usleep((useconds_t)((due - now) / 1000));
        len = format_reading(e, FMT_JSON, dev, alarm, i, &ts, payload, sizeof(payload));
        d = alarm ? e->alarm[l->n_alarms] : e->smoke[dev];
        snprintf(topic, sizeof(topic), "devices/%s/telemetry", d->id);
        int64_t pub_ns = gw_now_ns();
        if (len < 0 || sim_pub_send(&pub, topic, payload, len) < 0)
            break;
        if (alarm) {
            l->alarm_ns[l->n_alarms++] = pub_ns;
        } else if (i % track_every == 0 && l->n < l->cap) {
            struct tracked *t = &l->t[l->n];
            t->dev = dev;
            t->ts_ms = ts;
            t->pub_ns = pub_ns;
            t->ms = -1;
            __atomic_store_n(&l->n, l->n + 1, __ATOMIC_RELEASE);
        }
    }
    l->sent = i;
    sim_pub_drain(&pub, 30);
    l->pub_rate = (double)l->sent / ((double)(gw_monotonic_ns() - t0) / 1e9);
    sim_pub_close(&pub);
    __atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
    pthread_join(poller, NULL);
    if (cpu0 >= 0)
        l->cpu_pct = 100.0 * (proc_cpu_s(e->pid) - cpu0) / ((double)(gw_monotonic_ns() - t0) / 1e9);
    else
        l->cpu_pct = -1;

    ms = calloc(l->n > l->n_alarms ? l->n : l->n_alarms + 1, sizeof(*ms));
    if (!ms)
        return -ENOMEM;
    n = 0;
    for (size_t k = 0; k < l->n; k++)
        if (l->t[k].ms >= 0)
            ms[n++] = l->t[k].ms;
    l->point = percentiles(ms, n);
    if (n < (int)l->n)
        fprintf(stderr, "gridsim bench e2e: %zu of %zu tracked readings never seen in InfluxDB\n",
                l->n - (size_t)n, l->n);

    /* Publish -> case: the store's opened_at, the gateway's wall clock. */
    struct gw_cases_options ro = {.db_path = e->cfg->store.path, .read_only = true};
    char *error = NULL;
    struct gw_cases *reader = NULL;
    int64_t give_up = gw_monotonic_ns() + 10 * NS_PER_S;
    do {
        struct gw_case_filter filter = {.overdue = -1, .limit = 500, .category = NULL};
        n = 0;
        if (!reader)
            reader = gw_cases_open(&ro, &error);
        if (!reader) {
            fprintf(stderr, "gridsim bench e2e: %s\n", error ? error : "no case store");
            free(error);
            break;
        }
        for (;;) {
            struct store_case *page = NULL;
            int got = gw_cases_list(reader, &district_viewer, &filter, &page);
            if (got < 0)
                break;
            for (int c = 0; c < got; c++) {
                filter.before_id = page[c].id;
                for (size_t a = 0; page[c].device_id && a < l->n_alarms; a++)
                    if (strcmp(page[c].device_id, e->alarm[a]->id) == 0 &&
                        strncmp(page[c].category, "fire.", 5) == 0) {
                        ms[n++] = (double)(page[c].opened_at - l->alarm_ns[a]) / 1e6;
                        break;
                    }
            }
            gw_cases_free_list(page, got);
            if (got < filter.limit)
                break;
        }
        if ((size_t)n >= l->n_alarms)
            break;
        usleep(200000);
    } while (gw_monotonic_ns() < give_up);
    gw_cases_close(reader);
    l->cases_seen = n;
    l->kase = percentiles(ms, n);
    free(ms);
    next_floor(e);
    return 0;
}

/* ---- --no-broker: the headroom ------------------------------------------ */

/* A null InfluxDB: answers every request with 204 and counts the bytes. */
struct sink {
    int fd;
    int stop;
    uint64_t requests;
    uint64_t bytes;
};

static void sink_serve(struct sink *s, int c)
{
    static char buf[1 << 16];
    size_t have = 0;

    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head = (size_t)(end - buf) + 4, len = 0;
            for (char *p = buf; p < end;) {
                char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
                if (strncasecmp(p, "Content-Length:", 15) == 0)
                    len = strtoul(p + 15, NULL, 10);
                if (strncasecmp(p, "Expect: 100-continue", 20) == 0 &&
                    write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
                    return;
                p = eol + 2;
            }
            /* Skip the body, then answer. */
            size_t body = have - head < len ? have - head : len, left = len - body;
            memmove(buf, buf + head + body, have - head - body);
            have -= head + body;
            while (left > 0) {
                ssize_t r = read(c, buf, left < sizeof(buf) ? left : sizeof(buf));
                if (r <= 0)
                    return;
                left -= (size_t)r;
            }
            __atomic_add_fetch(&s->bytes, len, __ATOMIC_RELAXED);
            __atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
            static const char ok[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
            if (write(c, ok, sizeof(ok) - 1) < 0)
                return;
            continue;
        }
        if (have == sizeof(buf))
            return;
        ssize_t r = read(c, buf + have, sizeof(buf) - have);
        if (r <= 0)
            return;
        have += (size_t)r;
    }
}

static void *sink_thread(void *arg)
{
    struct sink *s = arg;

    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        sink_serve(s, c);
        close(c);
    }
    return NULL;
}

static int sink_start(struct sink *s, pthread_t *thread, int *ret_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    memset(s, 0, sizeof(*s));
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->fd, 8) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &alen) < 0 ||
        pthread_create(thread, NULL, sink_thread, s) != 0) {
        if (s->fd >= 0)
            close(s->fd);
        return -errno;
    }
    *ret_port = ntohs(a.sin_port);
    return 0;
}

static void sink_stop(struct sink *s, pthread_t thread)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(thread, NULL);
    close(s->fd);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

struct headroom {
    uint64_t fed;
    size_t devices;
    double ingest_rate; /* readings/s taken by gw_pipeline_ingest */
    double rate;        /* readings/s through ingest, rules and encoding, to the last */
    double rules, written;
    uint64_t sink_bytes;
};

static int run_headroom(struct e2e *e, struct gw_config *cfg, struct gw_registry *reg,
                        struct headroom *ret)
{
    char dir[] = "/tmp/gridsim-e2e-XXXXXX", path[4200], url[64], json[256], reason[128];
    struct gw_pipeline *p = NULL;
    struct gw_pipeline_stats s0, s1;
    struct sink sink;
    pthread_t sink_th;
    char *error = NULL;
    int port = 0, r = -EIO;
    int64_t t0, t_fed, ts;
    size_t n_dev;
    uint64_t i;

    memset(ret, 0, sizeof(*ret));
    if (!mkdtemp(dir))
        return -errno;
    if (sink_start(&sink, &sink_th, &port) < 0)
        goto out_dir;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    cfg->mqtt.enabled = false;
    cfg->coap.enabled = false;
    cfg->api.enabled = false;
    cfg->influx.enabled = true;
    cfg->rules.silence_grace_s = 604800; /* no deadman in a benchmark */
    cfg->gateway.stats_interval_s = 3600;
    snprintf(path, sizeof(path), "%s/cases.db", dir);
    if (sim_bench_set_string(&cfg->store.path, path) < 0)
        goto out_sink;
    snprintf(path, sizeof(path), "%s/journal", dir);
    if (sim_bench_set_string(&cfg->journal.dir, path) < 0 ||
        sim_bench_set_string(&cfg->influx.url, url) < 0)
        goto out_sink;
    snprintf(path, sizeof(path), "%s/rejected.lp", dir);
    if (sim_bench_set_string(&cfg->influx.dead_letter, path) < 0)
        goto out_sink;
    p = gw_pipeline_new(cfg, reg, &error);
    if (!p || gw_pipeline_start(p) < 0) {
        fprintf(stderr, "gridsim bench e2e: %s\n", error ? error : "the pipeline did not start");
        free(error);
        goto out_sink;
    }
    gw_pipeline_stats(p, &s0);
    t0 = gw_monotonic_ns();
    /* As many readings as --messages, at most --seconds (at least 1 s). */
    n_dev = e->n_smoke < HEADROOM_DEVICES ? e->n_smoke : HEADROOM_DEVICES;
    for (i = 0; i < e->messages; i++) {
        size_t dev = i % n_dev;
        struct gw_message msg = {
            .device_id = e->smoke[dev]->id,
            .channel = GW_CHANNEL_TELEMETRY,
            .format = PAYLOAD_JSON,
            .payload = json,
        };
        int len = format_reading(e, FMT_JSON, dev, false, i, &ts, json, sizeof(json));

        if (i % 1024 == 0 && gw_monotonic_ns() - t0 > (int64_t)(e->seconds * 1e9))
            break;
        msg.len = (size_t)len;
        if (len < 0 || gw_pipeline_ingest(p, &msg, reason, sizeof(reason)) != GW_INGEST_OK) {
            fprintf(stderr, "gridsim bench e2e: reading %llu refused: %s\n", (unsigned long long)i,
                    reason);
            break;
        }
    }
    ret->fed = i;
    ret->devices = n_dev;
    t_fed = gw_monotonic_ns();
    ret->ingest_rate = (double)i / ((double)(t_fed - t0) / 1e9);
    /* Until the rules and the encoder have every reading (bounded). */
    do {
        usleep(1000);
        gw_pipeline_stats(p, &s1);
    } while ((s1.rule_runs - s0.rule_runs < i || s1.points_written - s0.points_written < i) &&
             gw_monotonic_ns() - t_fed < 60 * NS_PER_S);
    ret->rate = (double)i / ((double)(gw_monotonic_ns() - t0) / 1e9);
    ret->rules = (double)(s1.rule_runs - s0.rule_runs);
    ret->written = (double)(s1.points_written - s0.points_written);
    ret->sink_bytes = __atomic_load_n(&sink.bytes, __ATOMIC_RELAXED);
    r = 0;
out_sink:
    gw_pipeline_free(p);
    sink_stop(&sink, sink_th);
out_dir:
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "gridsim bench e2e: could not remove %s\n", dir);
    return r;
}

/* ---- the command -------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: gridsim bench e2e -c CONFIG [--pid PID] [--messages N] [--rate R]\n"
                 "                         [--seconds S] [--coap-window W] [--startup-ms MS]\n"
                 "                         [--out FILE.json]\n"
                 "       gridsim bench e2e -c CONFIG --no-broker [--messages N] [--seconds S]\n"
                 "                         [--out FILE.json]\n"
                 "       gridsim bench e2e -c CONFIG --peer NAME --pid PID --database DB\n"
                 "                         --peer-rates R[,R...] [--seconds S]\n"
                 "                         [--gridgate-rate R] [--out FILE.json]\n"
                 "Against a running gridgate (PID; simulators/bench.sh starts everything):\n"
                 "the ceilings (N readings, default 100000: MQTT QoS 0 and 1 to a do-nothing\n"
                 "subscriber; CoAP to a do-nothing libcoap server in this process, W client\n"
                 "endpoints, default 20, each with one confirmable request in flight),\n"
                 "gridgate end to end with the same N readings (MQTT QoS 0 and 1 and, when the\n"
                 "config enables CoAP, CoAP; JSON, SenML JSON, SenML CBOR; until the last is in\n"
                 "InfluxDB), each also against InfluxDB's ceiling (the same points bulk-loaded\n"
                 "in influx.batch_size batches into a database the run creates and drops, one\n"
                 "request in flight as gridgate's writer; also shown: two in flight),\n"
                 "then latency at R readings/s (default 10000) for S seconds\n"
                 "(default 10): publish -> point and publish -> case.\n"
                 "--no-broker: the same readings through the pipeline in this process (decode,\n"
                 "journal, rules, line protocol to a null sink), at most S seconds.\n"
                 "--peer: a gateway that is not gridgate (PID), subscribed to the same topics\n"
                 "and writing measurement smoke to database DB: QoS 1 JSON paced at each rate\n"
                 "for S seconds; its rates, loss, CPU and RSS, and gridgate's rate (from\n"
                 "--gridgate-rate) over the peer's, first publish to last point.\n");
}

/* One row of the table: a ceiling, gridgate or a peer. */
static void print_row(const char *what, const struct e2e_run *r)
{
    char acked[32] = "", ingested[32] = "", evaluated[32] = "", cpu[16] = "", ratio[16] = "",
         vs_influx[16] = "";

    if (r->acked != UINT64_MAX)
        snprintf(acked, sizeof(acked), "%llu", (unsigned long long)r->acked);
    if (r->ingested >= 0)
        snprintf(ingested, sizeof(ingested), "%.0f", r->ingested);
    if (r->evaluated >= 0)
        snprintf(evaluated, sizeof(evaluated), "%.0f", r->evaluated);
    if (r->cpu_pct >= 0)
        snprintf(cpu, sizeof(cpu), "%.0f%%", r->cpu_pct);
    /* InfluxDB's ceiling has no ratios; NAN: not measured against it. */
    if (strcmp(r->transport, "influx") != 0)
        snprintf(ratio, sizeof(ratio), "%.2f", r->ratio);
    if (strcmp(r->transport, "influx") != 0 && !isnan(r->vs_influx))
        snprintf(vs_influx, sizeof(vs_influx), "%.2f", r->vs_influx);
    printf("| %s | %llu | %.0f | %s | %.0f | %s | %s | %.0f | %.0f | %s | %s | %s |\n", what,
           (unsigned long long)r->sent, r->pub_rate, acked, r->points, ingested, evaluated,
           r->rate, r->sustained, ratio, vs_influx, cpu);
}

/* ratio_key: what the run's ratio is ("ratio_to_ceiling", or a peer's
 * "gridgate_over_this"). */
static void json_run(FILE *f, const char *sep, const struct e2e_run *r, const char *ratio_key)
{
    fprintf(f,
            "%s\n    {\"transport\": \"%s\", \"qos\": %d, \"format\": \"%s\", "
            "\"published\": %llu, \"acknowledged\": %lld, \"publish_rate\": %.0f, "
            "\"target_rate\": %.0f, \"points\": %.0f, \"ingested\": %.0f, "
            "\"evaluated\": %.0f, \"rate\": %.0f, \"sustained\": %.0f, "
            "\"%s\": %.3f, \"ratio_to_influx\": %.3f, \"cpu_pct\": %.1f, \"rss_kb\": %ld, "
            "\"peak_rss_kb\": %ld}",
            sep, r->transport, r->transport[0] == 'm' ? r->qos : -1, fmt_names[r->fmt],
            (unsigned long long)r->sent, r->acked == UINT64_MAX ? -1LL : (long long)r->acked,
            r->pub_rate, r->target_rate, r->points, r->ingested, r->evaluated, r->rate,
            r->sustained, ratio_key, r->ratio, isnan(r->vs_influx) ? -1 : r->vs_influx,
            r->cpu_pct, r->rss_kb, r->hwm_kb);
}

/* --peer: the same QoS 1 JSON stream, paced, against another gateway. */
static int run_peer(struct e2e *e, const char *peer, const double *rates, int n_rates,
                    double gridgate_rate, FILE *out)
{
    struct e2e_run runs[8];
    int n = 0;

    for (; n < n_rates; n++) {
        uint64_t count = (uint64_t)(rates[n] * e->seconds);

        printf("%s, QoS 1 JSON at %.0f readings/s for %.0f s ...\n", peer, rates[n], e->seconds);
        fflush(stdout);
        if (run_gateway(e, 1, FMT_JSON, count, rates[n], false, &runs[n]) < 0)
            return -EIO;
    }
    printf("\n| %s, QoS 1 JSON | sent | readings/s sent | points | lost | readings/s, first "
           "publish to last point | sustained (10-90%%) | CPU | RSS at the end | peak RSS | "
           "gridgate (%.0f/s) over this |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n",
           peer, gridgate_rate);
    for (int k = 0; k < n; k++) {
        /* Against what got through over the whole run: a peer that falls
         * behind writes a burst and then little, which the 10-90% slope of
         * what it wrote would flatter. */
        runs[k].ratio = runs[k].rate > 0 && gridgate_rate > 0 ? gridgate_rate / runs[k].rate : -1;
        printf("| paced at %.0f/s | %llu | %.0f | %.0f | %.1f%% | %.0f | %.0f | %.0f%% | %.0f MB "
               "| %.0f MB | %.1f |\n",
               runs[k].target_rate, (unsigned long long)runs[k].sent, runs[k].pub_rate,
               runs[k].points,
               runs[k].sent ? 100.0 * ((double)runs[k].sent - runs[k].points) /
                                  (double)runs[k].sent
                            : 0,
               runs[k].rate, runs[k].sustained, runs[k].cpu_pct, (double)runs[k].rss_kb / 1024,
               (double)runs[k].hwm_kb / 1024, runs[k].ratio);
    }
    if (out) {
        fprintf(out, "{\n  \"peer\": \"%s\",\n  \"gridgate_rate\": %.0f,\n  \"runs\": [", peer,
                gridgate_rate);
        for (int k = 0; k < n; k++)
            json_run(out, k ? "," : "", &runs[k], "gridgate_over_this");
        fprintf(out, "\n  ]\n}\n");
    }
    return 0;
}

static void json_pct(FILE *f, const char *name, const struct pct *p)
{
    fprintf(f, "\"%s\": {\"n\": %d, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f}", name,
            p->n, p->p50, p->p99, p->max);
}

static int pick_devices(struct e2e *e, const struct gw_registry *reg)
{
    size_t n = gw_registry_device_count(reg), n_smoke = 0, want_alarm, k = 0;

    for (size_t i = 0; i < n; i++)
        n_smoke += strcmp(gw_registry_device_at(reg, i)->type, "smoke") == 0;
    if (n_smoke < 8)
        return -ENOENT;
    want_alarm = n_smoke / 4 < MAX_ALARMS ? n_smoke / 4 : MAX_ALARMS;
    e->smoke = calloc(n_smoke, sizeof(*e->smoke));
    e->alarm = calloc(want_alarm, sizeof(*e->alarm));
    e->last_ts_ms = calloc(n_smoke, sizeof(*e->last_ts_ms));
    if (!e->smoke || !e->alarm || !e->last_ts_ms)
        return -ENOMEM;
    /* Alarms from detectors spread over the district: every (n/want)th. */
    for (size_t i = 0; i < n; i++) {
        const struct gw_device *d = gw_registry_device_at(reg, i);
        if (strcmp(d->type, "smoke") != 0)
            continue;
        if (e->n_alarm < want_alarm && k++ % (n_smoke / want_alarm) == 0)
            e->alarm[e->n_alarm++] = d;
        else
            e->smoke[e->n_smoke++] = d;
    }
    return 0;
}

/* Comma-separated rates into rates (at most max). Returns how many or -1. */
static int parse_rates(const char *arg, double *rates, int max)
{
    char buf[256], *save = NULL;
    int n = 0;

    snprintf(buf, sizeof(buf), "%s", arg);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max || sim_bench_parse_number("e2e", t, "--peer-rates", 10, 1000000, &rates[n]) < 0)
            return -1;
        n++;
    }
    return n > 0 ? n : -1;
}

int sim_bench_e2e(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},      {"pid", required_argument, NULL, 'p'},
        {"messages", required_argument, NULL, 'n'},    {"rate", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},     {"startup-ms", required_argument, NULL, 'S'},
        {"out", required_argument, NULL, 'o'},         {"no-broker", no_argument, NULL, 'B'},
        {"coap-window", required_argument, NULL, 'w'}, {"peer", required_argument, NULL, 'P'},
        {"database", required_argument, NULL, 'd'},    {"peer-rates", required_argument, NULL, 'R'},
        {"gridgate-rate", required_argument, NULL, 'g'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *out_path = NULL, *peer = NULL, *database = NULL;
    struct e2e e = {.messages = 100000, .rate = 10000, .seconds = 10, .coap_window = 20};
    struct gw_config *cfg = NULL;
    struct gw_registry *reg = NULL;
    struct e2e_run ceil[3], runs[9], influx_ceil[INFLUX_PASSES];
    bool with_influx_ceiling;
    struct latency lat;
    struct headroom head;
    double v, startup_ms = -1, peer_rates[8], gridgate_rate = -1;
    bool no_broker = false, with_coap;
    int c, status = 1, n_runs = 0, n_ceil = 0, n_peer_rates = 0;
    long hwm = -1;
    FILE *out = NULL;

    memset(&lat, 0, sizeof(lat));
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:n:r:s:S:o:Bw:P:d:R:g:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'p':
            if (sim_bench_parse_number("e2e", optarg, "--pid", 1, 4194304, &v) < 0)
                return 2;
            e.pid = (long)v;
            break;
        case 'n':
            if (sim_bench_parse_number("e2e", optarg, "--messages", 1000, 10000000, &v) < 0)
                return 2;
            e.messages = (uint64_t)v;
            break;
        case 'r':
            if (sim_bench_parse_number("e2e", optarg, "--rate", 100, 1000000, &e.rate) < 0)
                return 2;
            break;
        case 's':
            if (sim_bench_parse_number("e2e", optarg, "--seconds", 1, 120, &e.seconds) < 0)
                return 2;
            break;
        case 'S':
            if (sim_bench_parse_number("e2e", optarg, "--startup-ms", 0, 600000, &startup_ms) < 0)
                return 2;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'B':
            no_broker = true;
            break;
        case 'w':
            if (sim_bench_parse_number("e2e", optarg, "--coap-window", 1, 256, &v) < 0)
                return 2;
            e.coap_window = (int)v;
            break;
        case 'P':
            peer = optarg;
            break;
        case 'd':
            database = optarg;
            break;
        case 'R':
            n_peer_rates = parse_rates(optarg, peer_rates, 8);
            if (n_peer_rates < 0) {
                fprintf(stderr, "gridsim bench e2e: --peer-rates %s: expected 1 to 8 rates "
                                "(10 to 1000000) separated by commas\n",
                        optarg);
                return 2;
            }
            break;
        case 'g':
            if (sim_bench_parse_number("e2e", optarg, "--gridgate-rate", 0, 10000000,
                                       &gridgate_rate) < 0)
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path || optind != argc || (peer && (n_peer_rates == 0 || !database)) ||
        (peer && no_broker)) {
        usage(stderr);
        return 2;
    }
    gw_log_set_level(GW_LOG_ERROR);
    if (sim_bench_load_world(config_path, &cfg, &reg) < 0)
        return 1;
    e.cfg = cfg;
    e.influx.url = cfg->influx.url;
    e.influx.database = database ? database : cfg->influx.database;
    e.influx.username = cfg->influx.username;
    e.influx.password = cfg->influx.password;
    e.influx.timeout_ms = 20000; /* a full district's count(smoke) under load */
    e.floor_ms = gw_now_ns() / NS_PER_MS;
    if (pick_devices(&e, reg) < 0) {
        fprintf(stderr, "gridsim bench e2e: the district needs at least 8 smoke detectors\n");
        goto out;
    }
    if (out_path) {
        out = fopen(out_path, "w");
        if (!out) {
            fprintf(stderr, "gridsim bench e2e: %s: %s\n", out_path, strerror(errno));
            goto out;
        }
    }
    printf("district: %zu grids, %zu devices; load from %zu smoke detectors\n",
           gw_registry_grid_count(reg), gw_registry_device_count(reg), e.n_smoke);

    if (peer) {
        status = run_peer(&e, peer, peer_rates, n_peer_rates, gridgate_rate, out) < 0 ? 1 : 0;
        goto out;
    }
    if (no_broker) {
        if (run_headroom(&e, cfg, reg, &head) < 0)
            goto out;
        printf("\n| no broker: %llu readings from %zu smoke detectors | readings/s | target |\n"
               "|---|---|---|\n",
               (unsigned long long)head.fed, head.devices);
        printf("| taken by ingest (decode, registry, journal) | %.0f | |\n", head.ingest_rate);
        printf("| through rules and line protocol, to the last | %.0f | 300,000 (%s) |\n",
               head.rate, head.rate >= 300000 ? "met" : "NOT met");
        printf("(rules ran %.0f, lines encoded and taken by the null sink %.0f, %llu bytes "
               "gzipped)\n",
               head.rules, head.written, (unsigned long long)head.sink_bytes);
        if (out)
            fprintf(out,
                    "{\"mode\": \"no-broker\", \"readings\": %llu, \"devices\": %zu, "
                    "\"ingest_rate\": %.0f, "
                    "\"pipeline_rate\": %.0f, \"rules\": %.0f, \"encoded\": %.0f, "
                    "\"target\": 300000}\n",
                    (unsigned long long)head.fed, head.devices, head.ingest_rate, head.rate,
                    head.rules, head.written);
        status = head.written >= (double)head.fed && head.rules >= (double)head.fed ? 0 : 1;
        goto out;
    }

    with_coap = cfg->coap.enabled;
    for (int q = 0; q <= 1; q++) {
        struct ceiling m;

        printf("ceiling, MQTT QoS %d ...\n", q);
        fflush(stdout);
        if (run_ceiling(&e, q, &m) < 0)
            goto out;
        ceil[n_ceil] = (struct e2e_run){.transport = "mqtt", .qos = q, .fmt = FMT_JSON,
                                        .sent = m.sent, .acked = UINT64_MAX,
                                        .points = (double)m.received, .pub_rate = m.pub_rate,
                                        .rate = m.rate, .sustained = m.sustained,
                                        .ingested = -1, .evaluated = -1, .cpu_pct = -1,
                                        .ratio = 1, .vs_influx = NAN};
        n_ceil++;
    }
    if (with_coap) {
        printf("ceiling, CoAP (%d endpoints) ...\n", e.coap_window);
        fflush(stdout);
        if (run_coap_ceiling(&e, &ceil[n_ceil]) < 0)
            goto out;
        ceil[n_ceil].ingested = ceil[n_ceil].evaluated = -1;
        ceil[n_ceil].ratio = 1;
        ceil[n_ceil].vs_influx = NAN;
        n_ceil++;
    }
    /* Loopback only: it creates, fills and drops a database. */
    with_influx_ceiling = sim_bench_loopback_url(e.influx.url);
    if (with_influx_ceiling) {
        printf("ceiling, InfluxDB: bulk load of the same points into %s ...\n",
               INFLUX_CEILING_DB);
        fflush(stdout);
        if (run_influx_ceiling(&e, influx_ceil) < 0)
            goto out;
    } else {
        printf("no InfluxDB ceiling: %s is not on loopback\n", e.influx.url);
    }
    for (int q = 0; q <= 1; q++)
        for (int f = FMT_JSON; f <= FMT_CBOR; f++) {
            printf("gridgate, MQTT QoS %d %s ...\n", q, fmt_names[f]);
            fflush(stdout);
            if (run_gateway(&e, q, (enum fmt)f, e.messages, 0, true, &runs[n_runs]) < 0)
                goto out;
            n_runs++;
        }
    for (int f = FMT_JSON; with_coap && f <= FMT_CBOR; f++) {
        printf("gridgate, CoAP %s ...\n", fmt_names[f]);
        fflush(stdout);
        if (run_coap(&e, (enum fmt)f, NULL, &runs[n_runs]) < 0)
            goto out;
        n_runs++;
    }
    for (int k = 0; k < n_runs; k++) {
        const struct e2e_run *base = &ceil[runs[k].transport[0] == 'c' ? 2 : runs[k].qos];

        /* The first run stores every device's first point (new series),
         * the later ones find them: against the one-connection pass that
         * did the same, as gridgate's writer has one request in flight. */
        const struct e2e_run *influx = &influx_ceil[k == 0 ? 0 : 1];

        runs[k].ratio = base->sustained > 0 && runs[k].sustained > 0
                            ? runs[k].sustained / base->sustained
                            : -1;
        runs[k].vs_influx = !with_influx_ceiling ? NAN
                            : influx->sustained > 0 && runs[k].sustained > 0
                                ? runs[k].sustained / influx->sustained
                                : -1;
        if (runs[k].ratio < 0)
            fprintf(stderr, "gridsim bench e2e: too few samples for a sustained rate "
                            "(-1 below): give more --messages\n");
    }
    printf("latency at %.0f readings/s for %.0f s, QoS 1 JSON ...\n", e.rate, e.seconds);
    fflush(stdout);
    if (run_latency(&e, &lat) < 0)
        goto out;
    hwm = proc_status_kb(e.pid, "VmHWM");

    printf("\n| run | sent | readings/s sent | acknowledged (2.04) | arrived | ingested "
           "| evaluated | readings/s, first send to last arrival | sustained readings/s (10-90%%) "
           "| vs ceiling | vs InfluxDB | gridgate CPU |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < n_ceil; k++) {
        char what[96];

        if (ceil[k].transport[0] == 'm')
            snprintf(what, sizeof(what), "ceiling MQTT QoS %d, do-nothing subscriber",
                     ceil[k].qos);
        else
            snprintf(what, sizeof(what), "ceiling CoAP, do-nothing server, %d endpoints",
                     e.coap_window);
        print_row(what, &ceil[k]);
    }
    for (int k = 0; with_influx_ceiling && k < INFLUX_PASSES; k++) {
        char what[160];

        snprintf(what, sizeof(what),
                 "ceiling InfluxDB, bulk load, batches of %d, %s series, %d connection%s",
                 cfg->influx.batch_size, influx_passes[k].series, influx_passes[k].connections,
                 influx_passes[k].connections > 1 ? "s" : "");
        print_row(what, &influx_ceil[k]);
    }
    for (int k = 0; k < n_runs; k++) {
        char what[96];

        if (runs[k].transport[0] == 'm')
            snprintf(what, sizeof(what), "gridgate MQTT QoS %d %s", runs[k].qos,
                     fmt_names[runs[k].fmt]);
        else
            snprintf(what, sizeof(what), "gridgate CoAP %s", fmt_names[runs[k].fmt]);
        print_row(what, &runs[k]);
    }
    printf("\nlatency, %llu readings at %.0f/s (QoS 1 JSON), gridgate CPU %.0f%%:\n"
           "| | n | p50 | p99 | max |\n|---|---|---|---|---|\n",
           (unsigned long long)lat.sent, lat.pub_rate, lat.cpu_pct);
    printf("| publish -> point in InfluxDB | %d of %zu | %.1f ms | %.1f ms | %.1f ms |\n",
           lat.point.n, lat.n, lat.point.p50, lat.point.p99, lat.point.max);
    printf("| publish -> case in the store | %d of %zu | %.1f ms | %.1f ms | %.1f ms |\n",
           lat.kase.n, lat.n_alarms, lat.kase.p50, lat.kase.p99, lat.kase.max);
    printf("\ngridgate peak RSS (VmHWM): %.1f MB; start-up to subscribed: %.0f ms\n",
           hwm >= 0 ? (double)hwm / 1024 : -1, startup_ms);
    printf("targets: e2e >= 0.80 of the ceiling (MQTT QoS 0: %.2f/%.2f/%.2f, QoS 1: "
           "%.2f/%.2f/%.2f JSON/SenML JSON/SenML CBOR); p99 publish -> case < 50 ms (%.1f); "
           "peak RSS < 256 MB; start-up < 2000 ms\n",
           runs[0].ratio, runs[1].ratio, runs[2].ratio, runs[3].ratio, runs[4].ratio,
           runs[5].ratio, lat.kase.p99);

    if (out) {
        fprintf(out, "{\n  \"devices\": %zu,\n  \"coap_window\": %d,\n  \"ceiling\": [",
                gw_registry_device_count(reg), e.coap_window);
        for (int k = 0; k < n_ceil; k++)
            json_run(out, k ? "," : "", &ceil[k], "ratio_to_ceiling");
        fprintf(out, "\n  ],\n  \"influx_ceiling\": [");
        for (int k = 0; with_influx_ceiling && k < INFLUX_PASSES; k++)
            fprintf(out,
                    "%s\n    {\"series\": \"%s\", \"connections\": %d, \"batch_size\": %d, "
                    "\"points\": %.0f, \"rate\": %.0f, \"sustained\": %.0f}",
                    k ? "," : "", influx_passes[k].series, influx_passes[k].connections,
                    cfg->influx.batch_size, influx_ceil[k].points, influx_ceil[k].rate,
                    influx_ceil[k].sustained);
        fprintf(out, "\n  ],\n  \"gridgate\": [");
        for (int k = 0; k < n_runs; k++)
            json_run(out, k ? "," : "", &runs[k], "ratio_to_ceiling");
        fprintf(out,
                "\n  ],\n  \"latency\": {\"rate\": %.0f, \"published\": %llu, "
                "\"cpu_pct\": %.1f, ",
                lat.pub_rate, (unsigned long long)lat.sent, lat.cpu_pct);
        json_pct(out, "publish_to_point", &lat.point);
        fprintf(out, ", ");
        json_pct(out, "publish_to_case", &lat.kase);
        fprintf(out, "},\n  \"peak_rss_kb\": %ld,\n  \"startup_ms\": %.0f\n}\n", hwm, startup_ms);
    }
    status = 0;
out:
    if (out && fclose(out) != 0)
        status = 1;
    free(lat.t);
    free(e.smoke);
    free(e.alarm);
    free(e.last_ts_ms);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return status;
}
