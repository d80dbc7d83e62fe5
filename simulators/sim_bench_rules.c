/* gridsim bench rules: how many readings one rule worker evaluates per
 * second with the shipped rules loaded (match in C, Lua, actions handed
 * on), and how long a reload pauses it.
 *
 * The readings are the sample district's devices reporting normal values
 * once a minute each and, one in `alarm_every`, an alarm, so some actions
 * are produced; the baseline in the same run is the same loop through an
 * engine with no rule loaded (the cost of the call itself). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "gw_registry.h"
#include "rule_engine.h"
#include "sim_bench.h"

#define MAX_SECONDS 60

/* Readings built once and replayed, so the loop measures the rules. */
static struct gw_reading **make_readings(const struct gw_registry *reg, size_t n, int alarm_every)
{
    struct gw_reading **readings = calloc(n, sizeof(*readings));
    size_t n_devices = gw_registry_device_count(reg);

    if (!readings || n_devices == 0) {
        free(readings);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct gw_device *d = gw_registry_device_at(reg, i % n_devices);
        /* Each device once a minute, the fleet spread over the minute. */
        int64_t ts = 1764300000000000000LL + (int64_t)(i / n_devices) * 60000000000LL +
                     (int64_t)(i % n_devices) * (60000000000LL / (int64_t)n_devices);
        struct gw_reading *r = gw_reading_new(d->id, GW_CHANNEL_TELEMETRY, ts);
        bool alarm = alarm_every > 0 && i % (size_t)alarm_every == 0;

        if (!r)
            goto fail;
        r->device = d;
        readings[i] = r;
        if (strcmp(d->type, "smoke") == 0) {
            gw_reading_add_number(r, "smoke", alarm ? 0.3 : 0.02);
            gw_reading_add_number(r, "temp", 22.5);
            gw_reading_add_number(r, "battery", 87);
            gw_reading_add_bool(r, "alarm", alarm);
        } else if (strcmp(d->type, "gas") == 0) {
            gw_reading_add_number(r, "gas", alarm ? 30 : 1.5);
            gw_reading_add_number(r, "battery", 80);
        } else {
            gw_reading_add_number(r, "battery", 75);
        }
    }
    return readings;
fail:
    for (size_t i = 0; i < n; i++)
        gw_reading_unref(readings[i]);
    free(readings);
    return NULL;
}

/* Readings per second through engine, for `seconds`. Timestamps move on
 * each pass, so windows and held timers see time pass as they would live. */
static double run(struct rule_engine *engine, struct gw_reading **readings, size_t n,
                  double seconds, uint64_t *ret_actions)
{
    /* The next pass starts a minute after this one ends. */
    int64_t pass_ns = readings[n - 1]->ts_ns - readings[0]->ts_ns + 60000000000LL;
    struct rule_actions actions = { 0 };
    int64_t t0 = gw_monotonic_ns(), deadline = t0 + (int64_t)(seconds * 1e9), t1;
    uint64_t done = 0, n_actions = 0;

    do {
        for (size_t i = 0; i < n; i++) {
            rule_engine_on_reading(engine, readings[i], &actions);
            n_actions += actions.n;
            rule_actions_clear(&actions);
        }
        for (size_t i = 0; i < n; i++)
            readings[i]->ts_ns += pass_ns;
        done += n;
        t1 = gw_monotonic_ns();
    } while (t1 < deadline);
    rule_actions_free(&actions);
    *ret_actions = n_actions;
    return (double)done / ((double)(t1 - t0) / 1e9);
}

static struct rule_engine *load(const struct gw_config *cfg, bool with_rules)
{
    struct rule_limits limits = {
        .instruction_budget = cfg->rules.instruction_budget,
        .memory_bytes = (size_t)cfg->rules.memory_kb * 1024,
    };
    struct rule_engine *engine = rule_engine_new(&limits);
    char *error = NULL;

    if (engine && with_rules && rule_engine_load_dir(engine, cfg->rules.dir, &error) < 0) {
        fprintf(stderr, "%s\n", error ? error : "cannot load the rules");
        free(error);
        rule_engine_free(engine);
        return NULL;
    }
    return engine;
}

int sim_bench_rules(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "seconds", required_argument, NULL, 's' },
        { "alarm-every", required_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL;
    double seconds = 3;
    int alarm_every = 1000, c, status = 1;
    struct gw_config *cfg = NULL;
    struct gw_registry *reg = NULL;
    struct rule_engine *engine = NULL, *fresh = NULL, *empty = NULL;
    struct gw_reading **readings = NULL;
    size_t n = 0;
    char *error = NULL, *end;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:a:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            seconds = strtod(optarg, &end);
            if (*end || !(seconds > 0 && seconds <= MAX_SECONDS)) {
                fprintf(stderr, "gridsim bench rules: --seconds: 0 to %d\n", MAX_SECONDS);
                return 2;
            }
            break;
        case 'a':
            alarm_every = (int)strtol(optarg, &end, 10);
            if (*end || alarm_every < 0) {
                fprintf(stderr, "gridsim bench rules: --alarm-every: a whole number >= 0\n");
                return 2;
            }
            break;
        case 'h':
            printf("usage: gridsim bench rules -c CONFIG [--seconds S] [--alarm-every N]\n"
                   "Readings per second through one rule engine with the config's rules, against\n"
                   "the same loop with no rule; then how long a reload's state handover takes.\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!config_path) {
        fprintf(stderr, "usage: gridsim bench rules -c CONFIG [--seconds S]\n");
        return 2;
    }
    gw_log_set_level(GW_LOG_ERROR);
    if (sim_bench_load_world(config_path, &cfg, &reg) < 0)
        return 1;
    n = gw_registry_device_count(reg) * 10;
    readings = make_readings(reg, n, alarm_every);
    engine = load(cfg, true);
    empty = load(cfg, false);
    if (!readings || !engine || !empty)
        goto out;

    uint64_t actions = 0, none;
    double base = run(empty, readings, n, seconds / 3, &none);
    double rate = run(engine, readings, n, seconds, &actions);
    printf("%zu rule(s) from %s, %zu distinct readings replayed\n",
           rule_engine_rule_count(engine), cfg->rules.dir, n);
    printf("  no rule loaded (baseline)    %12.0f readings/s\n", base);
    printf("  one worker with the rules    %12.0f readings/s (%llu actions)\n", rate,
           (unsigned long long)actions);
    printf("  target 300000/s per worker: %s\n", rate >= 300000 ? "met" : "NOT met");
    printf("  rule state: %.1f MB in the worker's Lua state, %.0f bytes per device "
           "(without rules: %.1f MB)\n",
           (double)rule_engine_memory(engine) / 1e6,
           (double)(rule_engine_memory(engine) - rule_engine_memory(empty)) /
               (double)gw_registry_device_count(reg),
           (double)rule_engine_memory(empty) / 1e6);

    /* A reload as the workers make it: the running engine loads the
     * checked files next to its rules and hands their state over by
     * reference. For comparison, the old way: a fresh engine copying the
     * state across. */
    fresh = load(cfg, true);
    if (!fresh)
        goto out;
    int64_t t0 = gw_monotonic_ns();
    int r = rule_engine_reload_like(engine, fresh, &error);
    double pause_ms = (double)(gw_monotonic_ns() - t0) / 1e6;
    if (r < 0) {
        fprintf(stderr, "gridsim bench rules: reload: %s\n", error ? error : strerror(-r));
        goto out;
    }
    t0 = gw_monotonic_ns();
    r = rule_engine_adopt_state(fresh, engine);
    double copy_ms = (double)(gw_monotonic_ns() - t0) / 1e6;
    if (r < 0) {
        fprintf(stderr, "gridsim bench rules: adopt_state: %s\n", strerror(-r));
        goto out;
    }
    double after = run(engine, readings, n, seconds / 3, &none);
    printf("  reload in place paused the worker %.2f ms (target < 50 ms); copying the state "
           "to a fresh engine instead: %.1f ms\n",
           pause_ms, copy_ms);
    printf("  after the reload                 %12.0f readings/s\n", after);
    status = 0;
out:
    free(error);
    for (size_t i = 0; readings && i < n; i++)
        gw_reading_unref(readings[i]);
    free(readings);
    rule_engine_free(fresh);
    rule_engine_free(empty);
    rule_engine_free(engine);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return status;
}
