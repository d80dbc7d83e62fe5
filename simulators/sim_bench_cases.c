/* gridsim bench storm / gridsim bench cases: the case loop's figures.
 *
 * storm: the whole pipeline in this process (journal, rule workers with
 * the config's rules, the case service on a fresh SQLite file; no broker,
 * no InfluxDB), fed through the adapters' own ingest call. A baseline run
 * pushes normal telemetry as fast as the pipeline takes it; the storm run
 * does the same while a second thread sends a burst of smoke alarms from
 * many detectors across the grids within one second. It reports how long
 * the alarms took to land in the store, deduplicated (one case per
 * detector, its count the alarms it sent), and the telemetry rate during
 * the storm against the baseline.
 *
 * cases: fills a store with generated reports (once; an existing file with
 * enough cases is reused), then times grid-scoped pages of 50, newest
 * first and the page after, in-process through gw_cases_list and, with
 * --url and --token, through a running gridgate's GET /api/v1/cases. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "gw_access.h"
#include "gw_adapter.h"
#include "gw_buf.h"
#include "gw_cases.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_pipeline.h"
#include "gw_registry.h"
#include "sim_bench.h"

#define MAX_SECONDS 60
#define LAND_TIMEOUT_NS (30 * 1000000000LL)
#define GENERATE_BATCH 10000
#define PAGE 50

static const struct gw_actor district_viewer = {
    .name = "bench",
    .role = GW_ACTOR_COMMANDER,
    .scope = GW_SCOPE_DISTRICT,
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

/* ---- storm ------------------------------------------------------------ */

struct storm {
    struct gw_pipeline *pipeline;
    const struct gw_registry *reg;
    const struct gw_device **quiet;  /* devices sending normal telemetry */
    size_t n_quiet;
    const struct gw_device **alarms; /* smoke detectors that will alarm */
    size_t n_alarms;
    int n_storm;                     /* alarm messages in the burst */
    double rate;                     /* telemetry readings per second */
    int64_t ts_ns;                   /* readings' time, moving on */
    volatile int stop;
    uint64_t sent;                   /* telemetry messages taken */
};

static enum gw_ingest_result send_json(struct gw_pipeline *p, const char *device_id,
                                       const char *json)
{
    struct gw_message msg = {
        .device_id = device_id,
        .channel = GW_CHANNEL_TELEMETRY,
        .format = PAYLOAD_JSON,
        .payload = json,
        .len = strlen(json),
    };
    char reason[128];

    return gw_pipeline_ingest(p, &msg, reason, sizeof(reason));
}

static void *telemetry_thread(void *arg)
{
    struct storm *s = arg;
    char json[160];
    uint64_t i = 0;

    int64_t t0 = gw_monotonic_ns();

    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        const struct gw_device *d = s->quiet[i % s->n_quiet];

        /* Paced like a broker would deliver, checked every 100 readings. */
        if (i % 100 == 0) {
            int64_t due = t0 + (int64_t)((double)i * 1e9 / s->rate);
            while (gw_monotonic_ns() < due && !__atomic_load_n(&s->stop, __ATOMIC_RELAXED))
                usleep(200);
        }

        /* Distinct times: a replayed point would overwrite, not add. */
        snprintf(json, sizeof(json),
                 "{\"ts\":%lld,\"smoke\":0.02,\"temp\":22.5,\"battery\":87,\"alarm\":false}",
                 (long long)(s->ts_ns / 1000000 + (int64_t)(i / s->n_quiet)));
        if (send_json(s->pipeline, d->id, json) != GW_INGEST_OK)
            break;
        i++;
    }
    __atomic_store_n(&s->sent, i, __ATOMIC_RELAXED);
    return NULL;
}

/* The burst: n_storm alarms spread evenly over one second. */
static void *alarm_thread(void *arg)
{
    struct storm *s = arg;
    int64_t t0 = gw_monotonic_ns();
    char json[160];

    for (int i = 0; i < s->n_storm; i++) {
        const struct gw_device *d = s->alarms[(size_t)i % s->n_alarms];
        int64_t due = t0 + (int64_t)i * 1000000000LL / s->n_storm;

        while (gw_monotonic_ns() < due)
            ;
        snprintf(json, sizeof(json),
                 "{\"ts\":%lld,\"smoke\":0.31,\"temp\":23.0,\"battery\":87,\"alarm\":true}",
                 (long long)(s->ts_ns / 1000000 + i));
        if (send_json(s->pipeline, d->id, json) != GW_INGEST_OK) {
            fprintf(stderr, "gridsim bench storm: alarm %d refused\n", i);
            break;
        }
    }
    return NULL;
}

/* Open cases and the alarms they counted, across the district. */
static int count_landed(struct gw_cases *reader, int64_t *ret_cases, int64_t *ret_alarms)
{
    struct gw_case_filter filter = { .overdue = -1, .limit = 500 };
    int64_t cases = 0, alarms = 0;

    for (;;) {
        struct store_case *page = NULL;
        int n = gw_cases_list(reader, &district_viewer, &filter, &page);

        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            cases++;
            alarms += page[i].count;
            filter.before_id = page[i].id;
        }
        gw_cases_free_list(page, n);
        if (n < filter.limit)
            break;
    }
    *ret_cases = cases;
    *ret_alarms = alarms;
    return 0;
}

/* Builds the devices lists: the first n_alarms smoke detectors taken one
 * grid after another (so the burst spreads over every grid that has one),
 * everything else quiet. */
static int pick_devices(struct storm *s, size_t n_alarms)
{
    size_t n = gw_registry_device_count(s->reg), n_grids = gw_registry_grid_count(s->reg);
    bool *taken = calloc(n, sizeof(*taken));
    size_t pass = 0;

    s->quiet = calloc(n, sizeof(*s->quiet));
    s->alarms = calloc(n_alarms, sizeof(*s->alarms));
    if (!taken || !s->quiet || !s->alarms) {
        free(taken);
        return -ENOMEM;
    }
    /* Round robin over grids: the k-th smoke detector of each grid. */
    while (s->n_alarms < n_alarms && pass < n) {
        size_t before = s->n_alarms;
        for (size_t g = 0; g < n_grids && s->n_alarms < n_alarms; g++) {
            const struct gw_grid *grid = gw_registry_grid_at(s->reg, g);
            size_t seen = 0;
            for (size_t i = 0; i < n; i++) {
                const struct gw_device *d = gw_registry_device_at(s->reg, i);
                if (taken[i] || d->grid != grid || strcmp(d->type, "smoke") != 0)
                    continue;
                if (seen++ == 0) {
                    taken[i] = true;
                    s->alarms[s->n_alarms++] = d;
                    break;
                }
            }
        }
        if (s->n_alarms == before)
            break;
        pass++;
    }
    for (size_t i = 0; i < n; i++)
        if (!taken[i])
            s->quiet[s->n_quiet++] = gw_registry_device_at(s->reg, i);
    free(taken);
    return s->n_alarms > 0 && s->n_quiet > 0 ? 0 : -ENOENT;
}

/* Points the configuration at a fresh store and journal under dir, with
 * every outside service off. */
static int isolate(struct gw_config *cfg, const char *dir, const char *run)
{
    char path[4096];

    cfg->mqtt.enabled = false;
    cfg->coap.enabled = false;
    cfg->influx.enabled = false;
    cfg->api.enabled = false;
    cfg->rules.silence_grace_s = 604800; /* no deadman in a benchmark */
    snprintf(path, sizeof(path), "%s/%s.db", dir, run);
    if (sim_bench_set_string(&cfg->store.path, path) < 0)
        return -ENOMEM;
    snprintf(path, sizeof(path), "%s/%s-journal", dir, run);
    return sim_bench_set_string(&cfg->journal.dir, path);
}

struct storm_result {
    double intake_rate;    /* telemetry readings/s taken by ingest */
    double rules_rate;     /* telemetry readings/s through the rules from the storm's start on */
    double land_s;         /* storm start to all alarms in the store; < 0: never */
    int64_t cases, alarms;
};

static int run_storm(struct gw_config *cfg, struct storm *s, const char *dir, const char *run,
                     double seconds, bool with_storm, struct storm_result *ret)
{
    pthread_t telemetry, alarms;
    struct gw_pipeline_stats before, after;
    struct gw_cases_options reader_options = { .read_only = true };
    struct gw_cases *reader = NULL;
    char *error = NULL;
    int r = isolate(cfg, dir, run);

    memset(ret, 0, sizeof(*ret));
    ret->land_s = -1;
    if (r < 0)
        return r;
    s->pipeline = gw_pipeline_new(cfg, (struct gw_registry *)s->reg, &error);
    if (!s->pipeline || gw_pipeline_start(s->pipeline) < 0) {
        fprintf(stderr, "gridsim bench storm: %s\n", error ? error : "pipeline did not start");
        free(error);
        gw_pipeline_free(s->pipeline);
        return -EIO;
    }
    s->stop = 0;
    int64_t t0 = gw_monotonic_ns();
    pthread_create(&telemetry, NULL, telemetry_thread, s);
    /* Let the telemetry settle for a second before the burst. */
    usleep(1000000);
    gw_pipeline_stats(s->pipeline, &before);
    int64_t storm_t0 = gw_monotonic_ns(), end = t0 + (int64_t)(seconds * 1e9), storm_t1 = 0;
    if (with_storm) {
        /* The store exists once the pipeline started; watched from now. */
        reader_options.db_path = cfg->store.path;
        reader = gw_cases_open(&reader_options, &error);
        if (!reader)
            fprintf(stderr, "gridsim bench storm: %s\n", error ? error : "no reader");
        free(error);
        pthread_create(&alarms, NULL, alarm_thread, s);
    }
    /* Until the window ends, and then until the alarms landed or the
     * timeout passed; the telemetry runs throughout. */
    for (;;) {
        int64_t now = gw_monotonic_ns();
        bool landed = !reader || ret->land_s >= 0;

        if (now >= end && storm_t1 == 0) {
            gw_pipeline_stats(s->pipeline, &after);
            storm_t1 = now;
        }
        if (now >= end && (landed || now >= storm_t0 + LAND_TIMEOUT_NS))
            break;
        if (!landed && count_landed(reader, &ret->cases, &ret->alarms) == 0 &&
            ret->alarms >= s->n_storm)
            ret->land_s = (double)(gw_monotonic_ns() - storm_t0) / 1e9;
        usleep(20000);
    }
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
    pthread_join(telemetry, NULL);
    if (with_storm)
        pthread_join(alarms, NULL);
    ret->intake_rate = (double)s->sent / ((double)(gw_monotonic_ns() - t0) / 1e9);
    {
        uint64_t runs = after.rule_runs - before.rule_runs;
        if (with_storm)
            runs = runs > (uint64_t)s->n_storm ? runs - (uint64_t)s->n_storm : 0;
        ret->rules_rate = (double)runs / ((double)(storm_t1 - storm_t0) / 1e9);
    }
    gw_cases_close(reader);
    gw_pipeline_free(s->pipeline);
    s->pipeline = NULL;
    s->ts_ns += 86400000000000LL; /* the next run's readings are new points */
    return 0;
}

int sim_bench_storm(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "seconds", required_argument, NULL, 's' },
        { "alarms", required_argument, NULL, 'a' },
        { "detectors", required_argument, NULL, 'd' },
        { "rate", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL;
    double seconds = 4, rate = 50000;
    int n_alarms = 10000, n_detectors = 2000, c, status = 1;
    struct gw_config *cfg = NULL;
    struct gw_registry *reg = NULL;
    struct storm s = { .ts_ns = gw_now_ns() - 30 * 86400000000000LL };
    struct storm_result base, storm;
    char dir[] = "/tmp/gridsim-storm-XXXXXX";

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:a:d:r:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'a':
            n_alarms = atoi(optarg);
            break;
        case 'd':
            n_detectors = atoi(optarg);
            break;
        case 'h':
            printf("usage: gridsim bench storm -c CONFIG [--seconds S] [--alarms N] [--detectors D]\n"
                   "                           [--rate R]\n"
                   "Telemetry at R readings/s (default 50000, about what one broker delivers to\n"
                   "one client) through the whole pipeline (journal, rule workers, case service)\n"
                   "with and without a burst of N smoke alarms from D detectors across the grids\n"
                   "within one second; how long the alarms take to land as D cases.\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!config_path || seconds < 3 || seconds > MAX_SECONDS || n_alarms < 1 || n_detectors < 1 ||
        rate < 1) {
        fprintf(stderr, "usage: gridsim bench storm -c CONFIG [--seconds 3..%d] [--alarms N] "
                        "[--detectors D] [--rate R]\n", MAX_SECONDS);
        return 2;
    }
    gw_log_set_level(GW_LOG_ERROR);
    if (sim_bench_load_world(config_path, &cfg, &reg) < 0)
        return 1;
    s.reg = reg;
    s.n_storm = n_alarms;
    s.rate = rate;
    if (pick_devices(&s, (size_t)n_detectors) < 0 || !mkdtemp(dir)) {
        fprintf(stderr, "gridsim bench storm: no smoke detector in the district, or no temp dir\n");
        goto out;
    }
    if (run_storm(cfg, &s, dir, "baseline", seconds, false, &base) < 0 ||
        run_storm(cfg, &s, dir, "storm", seconds, true, &storm) < 0)
        goto out;
    printf("%zu grids, %zu devices; %d alarms from %zu smoke detectors in one second\n",
           gw_registry_grid_count(reg), gw_registry_device_count(reg), n_alarms, s.n_alarms);
    printf("  telemetry offered                %10.0f readings/s\n", rate);
    printf("  without the storm: taken %10.0f/s, through the rules %10.0f/s\n", base.intake_rate,
           base.rules_rate);
    printf("  during the storm:  taken %10.0f/s, through the rules %10.0f/s (ratio %.2f, "
           "target >= 0.80)\n",
           storm.intake_rate, storm.rules_rate, storm.rules_rate / base.rules_rate);
    if (storm.land_s < 0)
        printf("  alarms landed: NOT within %lld s (%lld cases counting %lld alarms)\n",
               LAND_TIMEOUT_NS / 1000000000LL, (long long)storm.cases, (long long)storm.alarms);
    else
        printf("  alarms landed in %.2f s as %lld cases counting %lld alarms (target: 2 s, "
               "%zu cases)\n",
               storm.land_s, (long long)storm.cases, (long long)storm.alarms, s.n_alarms);
    status = storm.land_s >= 0 && storm.cases == (int64_t)s.n_alarms ? 0 : 1;
out:
    /* mkdtemp replaced the X's when it made the directory. */
    if (dir[sizeof(dir) - 2] != 'X' && nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "gridsim bench storm: could not remove %s: %s\n", dir, strerror(errno));
    free(s.quiet);
    free(s.alarms);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return status;
}

/* ---- cases ------------------------------------------------------------ */

/* Reports spread over the grids, GENERATE_BATCH per transaction. */
static int generate(struct gw_cases *writer, const struct gw_registry *reg, int64_t from,
                    int64_t n)
{
    size_t n_grids = gw_registry_grid_count(reg);
    char title[64];
    const char *why = NULL;

    for (int64_t i = from; i < n;) {
        int r = gw_cases_begin(writer);
        if (r < 0)
            return r;
        for (int64_t end = i + GENERATE_BATCH; i < n && i < end; i++) {
            const struct gw_grid *g = gw_registry_grid_at(reg, (size_t)i % n_grids);
            struct gw_case_report report = {
                .actor = &district_viewer,
                .grid_id = g->id,
                .category = i % 3 ? "city.litter" : "fire.hazard",
                .title = title,
                .severity = (enum gw_severity)(i % GW_SEVERITY_COUNT),
            };
            int64_t id;

            snprintf(title, sizeof(title), "generated report %lld", (long long)i);
            r = gw_cases_report(writer, &report, gw_now_ns(), NULL, NULL, &id, &why);
            if (r < 0) {
                fprintf(stderr, "gridsim bench cases: report %lld: %s\n", (long long)i,
                        why ? why : strerror(-r));
                gw_cases_rollback(writer);
                return r;
            }
        }
        r = gw_cases_commit(writer);
        if (r < 0)
            return r;
        if (i % 100000 == 0)
            fprintf(stderr, "  %lld cases\n", (long long)i);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_latency(const char *what, double *ms, int n)
{
    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
    printf("  %-34s p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms (%d pages)\n", what,
           ms[n / 2], ms[(int)((double)n * 0.99)], ms[n - 1], n);
}

/* One grid-scoped page, then (every other query) the page after it. */
static int time_in_process(struct gw_cases *reader, const struct gw_registry *reg, int queries,
                           double *ms)
{
    size_t n_grids = gw_registry_grid_count(reg);
    int64_t cursor = 0;

    for (int q = 0; q < queries; q++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, (size_t)rand() % n_grids);
        struct gw_actor viewer = {
            .name = "bench", .role = GW_ACTOR_READONLY, .scope = GW_SCOPE_GRID, .scope_id = g->id,
        };
        struct gw_case_filter filter = { .overdue = -1, .limit = PAGE };
        struct store_case *page = NULL;

        if (q % 2 == 1)
            filter.before_id = cursor;
        int64_t t0 = gw_monotonic_ns();
        int n = gw_cases_list(reader, &viewer, &filter, &page);
        ms[q] = (double)(gw_monotonic_ns() - t0) / 1e6;
        if (n < 0)
            return n;
        cursor = n > 0 ? page[n - 1].id : 0;
        gw_cases_free_list(page, n);
    }
    return 0;
}

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
    return gw_buf_append(userdata, data, size * n) < 0 ? 0 : size * n;
}

/* The same pages through the HTTP API, on one kept-alive connection. */
static int time_http(const char *url, const char *token, const struct gw_registry *reg,
                     int queries, double *ms)
{
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = NULL;
    struct gw_buf body = { 0 };
    char auth[512], target[1024];
    size_t n_grids = gw_registry_grid_count(reg);
    int status = 0;

    if (!curl)
        return -ENOMEM;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    headers = curl_slist_append(headers, auth);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    for (int q = 0; q < queries && status == 0; q++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, (size_t)rand() % n_grids);
        long code = 0;

        snprintf(target, sizeof(target), "%s/api/v1/cases?grid=%s&limit=%d", url, g->id, PAGE);
        gw_buf_reset(&body);
        curl_easy_setopt(curl, CURLOPT_URL, target);
        int64_t t0 = gw_monotonic_ns();
        CURLcode rc = curl_easy_perform(curl);
        ms[q] = (double)(gw_monotonic_ns() - t0) / 1e6;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        if (rc != CURLE_OK || code != 200) {
            fprintf(stderr, "gridsim bench cases: GET %s: %s, HTTP %ld\n", target,
                    curl_easy_strerror(rc), code);
            status = -EIO;
        }
    }
    gw_buf_free(&body);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
}

int sim_bench_cases(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "store", required_argument, NULL, 'S' },
        { "cases", required_argument, NULL, 'n' },
        { "queries", required_argument, NULL, 'q' },
        { "url", required_argument, NULL, 'u' },
        { "token", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL, *store_path = NULL, *url = NULL, *token = NULL;
    int64_t n_cases = 1000000, have = 0;
    int queries = 2000, c, status = 1;
    struct gw_config *cfg = NULL;
    struct gw_registry *reg = NULL;
    struct gw_cases *cases = NULL;
    double *ms = NULL;
    char *error = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:S:n:q:u:t:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'S':
            store_path = optarg;
            break;
        case 'n':
            n_cases = atoll(optarg);
            break;
        case 'q':
            queries = atoi(optarg);
            break;
        case 'u':
            url = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'h':
            printf("usage: gridsim bench cases -c CONFIG --store FILE [--cases N] [--queries Q]\n"
                   "                           [--url http://HOST:PORT --token TOKEN]\n"
                   "Fills FILE with N generated reports (kept for the next run), then times\n"
                   "grid-scoped pages of %d in-process and, with --url, through the HTTP API.\n",
                   PAGE);
            return 0;
        default:
            return 2;
        }
    }
    if (!config_path || !store_path || n_cases < 1 || queries < 100 || queries > 1000000 ||
        (url && !token)) {
        fprintf(stderr, "usage: gridsim bench cases -c CONFIG --store FILE [--cases N] "
                        "[--queries 100..] [--url URL --token TOKEN]\n");
        return 2;
    }
    gw_log_set_level(GW_LOG_ERROR);
    if (sim_bench_load_world(config_path, &cfg, &reg) < 0)
        return 1;
    struct gw_cases_options options = { .db_path = store_path, .reg = reg };
    cases = gw_cases_open(&options, &error);
    ms = calloc((size_t)queries, sizeof(*ms));
    if (!cases || !ms) {
        fprintf(stderr, "gridsim bench cases: %s\n", error ? error : "out of memory");
        goto out;
    }
    int64_t counts[GW_CASE_STATE_COUNT], overdue;
    if (gw_cases_count_by_state(cases, &district_viewer, counts, &overdue) < 0)
        goto out;
    for (int i = 0; i < GW_CASE_STATE_COUNT; i++)
        have += counts[i];
    if (have < n_cases) {
        int64_t t0 = gw_monotonic_ns();
        fprintf(stderr, "generating %lld cases into %s\n", (long long)(n_cases - have), store_path);
        if (generate(cases, reg, have, n_cases) < 0)
            goto out;
        printf("  generated %lld cases in %.1f s\n", (long long)(n_cases - have),
               (double)(gw_monotonic_ns() - t0) / 1e9);
        have = n_cases;
    }
    printf("%lld cases in %s over %zu grids\n", (long long)have, store_path,
           gw_registry_grid_count(reg));
    srand(1);
    if (time_in_process(cases, reg, queries, ms) < 0)
        goto out;
    print_latency("gw_cases_list, grid page of 50", ms, queries);
    if (url) {
        if (time_http(url, token, reg, queries, ms) < 0)
            goto out;
        print_latency("GET /api/v1/cases?grid=..", ms, queries);
        printf("  target: p99 under 20 ms: %s\n", ms[(int)((double)queries * 0.99)] < 20 ? "met"
                                                                                         : "NOT met");
    }
    status = 0;
out:
    free(error);
    free(ms);
    gw_cases_close(cases);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return status;
}
