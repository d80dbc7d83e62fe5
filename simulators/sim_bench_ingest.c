/* gridsim bench ingest: how fast gridgate's MQTT intake (adapter, decode,
 * registry, journal) takes a backlog from mosquitto, against what the same
 * broker delivers to a do-nothing Paho subscriber in the same run.
 *
 * Both sides drain a backlog of N QoS 1 messages that the broker queued
 * for their persistent session while they were away, so both measure the
 * broker's delivery plus the subscriber's own work, nothing else. */
#include <MQTTAsync.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_adapter.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_pipeline.h"
#include "gw_registry.h"
#include "mqtt_adapter.h"
#include "sim_bench.h"
#include "sim_bench_mqtt.h"
#include "sim_fleet.h"

#define WAIT_LIMIT_S 300

static int publish(const char *devices, const char *broker, uint64_t n, const char *prefix)
{
    /* gridsim run's own option parser takes writable strings. */
    char run[] = "run", o_devices[] = "--devices", o_broker[] = "--broker", o_rate[] = "--rate",
         zero[] = "0", o_count[] = "--count", o_quiet[] = "--quiet",
         o_prefix[] = "--topic-prefix", count[32];
    char *argv[] = { run,     o_devices, (char *)devices, o_broker, (char *)broker, o_rate, zero,
                     o_count, count,     o_quiet,         o_prefix, (char *)prefix, NULL };

    snprintf(count, sizeof(count), "%llu", (unsigned long long)n);
    return sim_fleet_main((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv);
}

/* The baseline: a subscriber that counts and acknowledges, nothing else,
 * on a persistent session so that the broker queues the backlog for it. */
static double run_baseline(const struct gw_config *cfg, const char *devices, uint64_t n)
{
    struct sim_sub b;
    char client_id[64], prefix[32], topic[64];
    int64_t t0, t1;
    double rate = -1;

    snprintf(prefix, sizeof(prefix), "bench%ld", (long)getpid());
    snprintf(topic, sizeof(topic), "%s/+/telemetry", prefix);
    snprintf(client_id, sizeof(client_id), "gridsim-bench-base-%ld", (long)getpid());
    if (sim_sub_init(&b, cfg->mqtt.uri, client_id, topic, 1, 600) < 0)
        return -1;
    if (sim_sub_connect(&b) < 0 || !sim_bench_wait_flag(&b.subscribed, 10)) {
        fprintf(stderr, "gridsim bench ingest: baseline cannot subscribe on %s\n", cfg->mqtt.uri);
        goto out;
    }
    sim_sub_disconnect(&b);
    if (publish(devices, cfg->mqtt.uri, n, prefix) != 0)
        goto out;
    sim_sub_reset(&b);
    t0 = gw_monotonic_ns();
    if (sim_sub_connect(&b) < 0)
        goto out;
    for (int i = 0; i < WAIT_LIMIT_S * 1000 && sim_sub_received(&b) < n; i++)
        usleep(1000);
    t1 = gw_monotonic_ns();
    if (sim_sub_received(&b) >= n)
        rate = (double)n / ((double)(t1 - t0) / 1e9);
    else
        fprintf(stderr, "gridsim bench ingest: baseline got %llu of %llu\n",
                (unsigned long long)sim_sub_received(&b), (unsigned long long)n);
    sim_sub_disconnect(&b);
out:
    sim_sub_destroy(&b);
    return rate;
}

static struct gw_pipeline *start_pipeline(const struct gw_config *cfg, struct gw_registry *reg)
{
    char *error = NULL;
    struct gw_pipeline *p = gw_pipeline_new(cfg, reg, &error);

    if (!p) {
        fprintf(stderr, "gridsim bench ingest: %s\n", error ? error : "cannot build the pipeline");
        free(error);
        return NULL;
    }
    if (gw_pipeline_start(p) < 0) {
        gw_pipeline_free(p);
        return NULL;
    }
    return p;
}

/* gridgate's own intake, in this process: the real pipeline with the real
 * MQTT adapter and journal, rules and InfluxDB feeder running beside. */
static double run_gateway(const struct gw_config *cfg, struct gw_registry *reg,
                          const char *devices, uint64_t n)
{
    struct gw_pipeline *p = start_pipeline(cfg, reg);
    struct gw_pipeline_stats s;
    int64_t t0, t1;

    if (!p)
        return -1;
    sleep(1); /* connect and subscribe, so the broker keeps the session */
    gw_pipeline_free(p);
    if (publish(devices, cfg->mqtt.uri, n, "devices") != 0)
        return -1;
    t0 = gw_monotonic_ns();
    p = start_pipeline(cfg, reg);
    if (!p)
        return -1;
    do {
        usleep(1000);
        gw_pipeline_stats(p, &s);
    } while (s.accepted < n && gw_monotonic_ns() - t0 < (int64_t)WAIT_LIMIT_S * 1000000000);
    t1 = gw_monotonic_ns();
    gw_pipeline_free(p);
    if (s.accepted < n) {
        fprintf(stderr, "gridsim bench ingest: gridgate took %llu of %llu\n",
                (unsigned long long)s.accepted, (unsigned long long)n);
        return -1;
    }
    return (double)n / ((double)(t1 - t0) / 1e9);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: gridsim bench ingest -c CONFIG [--messages N] [--devices FILE.csv]\n"
                 "Drains a backlog of N QoS 1 readings (default 50000) from the config's broker\n"
                 "with a do-nothing subscriber (baseline), with gridgate's pipeline (MQTT\n"
                 "adapter, decode, registry, journal; rules and InfluxDB feeder beside), and\n"
                 "with the baseline again, and prints the rates and gridgate's ratio to the\n"
                 "faster baseline. The journal and the case store go to a\n"
                 "temporary directory; the broker needs max_queued_messages >= N.\n");
}

int sim_bench_ingest(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "messages", required_argument, NULL, 'n' },
        { "devices", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL, *devices = NULL;
    char tmp[] = "/tmp/gridsim-bench-ingest.XXXXXX", journal[64], store[64], client_id[64];
    char *end;
    unsigned long long n = 50000;
    struct gw_config *cfg = NULL;
    struct gw_registry *reg = NULL;
    double base, base_after, gate;
    bool made_tmp = false;
    int c, status = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:n:d:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'n':
            errno = 0;
            n = strtoull(optarg, &end, 10);
            if (errno || *end || n == 0 || n > 10000000) {
                fprintf(stderr, "gridsim bench ingest: --messages: 1 to 10000000, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'd':
            devices = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path) {
        usage(stderr);
        return 2;
    }
    if (sim_bench_load_world(config_path, &cfg, &reg) < 0)
        return 1;
    if (!mkdtemp(tmp)) {
        perror("gridsim bench ingest: mkdtemp");
        goto out;
    }
    made_tmp = true;
    /* A session, a journal and a store of the benchmark's own. */
    snprintf(journal, sizeof(journal), "%s/journal", tmp);
    snprintf(store, sizeof(store), "%s/cases.db", tmp);
    snprintf(client_id, sizeof(client_id), "gridgate-bench-%ld", (long)getpid());
    if (sim_bench_set_string(&cfg->journal.dir, journal) < 0 ||
        sim_bench_set_string(&cfg->store.path, store) < 0 ||
        sim_bench_set_string(&cfg->mqtt.client_id, client_id) < 0)
        goto out;
    if (!devices)
        devices = cfg->district.devices;
    gw_log_set_level(GW_LOG_WARN);
    if (!gw_adapter_lookup("mqtt") && gw_adapter_register(&mqtt_adapter_ops) < 0)
        goto out;

    /* The baseline runs before and after gridgate, and the faster of the two
     * counts: the broker drains its first large backlog slower than later
     * ones (allocation), and the ratio must not flatter gridgate. */
    printf("draining a backlog of %llu QoS 1 readings from %s\n", n, cfg->mqtt.uri);
    base = run_baseline(cfg, devices, n);
    if (base < 0)
        goto out;
    printf("baseline, do-nothing Paho subscriber: %10.0f msg/s\n", base);
    gate = run_gateway(cfg, reg, devices, n);
    if (gate < 0)
        goto out;
    printf("gridgate intake (adapter + journal):  %10.0f msg/s\n", gate);
    base_after = run_baseline(cfg, devices, n);
    if (base_after < 0)
        goto out;
    printf("baseline again:                       %10.0f msg/s\n", base_after);
    if (base_after > base)
        base = base_after;
    printf("ratio gridgate / faster baseline:     %10.2f\n", gate / base);
    status = 0;
out:
    if (made_tmp && nftw(tmp, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "gridsim bench ingest: could not remove %s\n", tmp);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return status;
}
