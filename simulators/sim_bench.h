/* sim_bench: gridsim's benchmarks (`gridsim bench WHAT ...`), each a
 * bounded load run that prints its figures, with a baseline measured in
 * the same run where there is one, since the machines are shared.
 *
 * Each entry point takes argc/argv from WHAT on (argv[0] = "journal", ...)
 * and returns the process exit status. Owns nothing beyond one run.
 */
#ifndef SIM_BENCH_H
#define SIM_BENCH_H

#include <stdint.h>

struct gw_config;
struct gw_registry;

/* Loads gridgate's configuration and its district; errors are printed.
 * Returns 0 or -EINVAL (both left NULL). */
int sim_bench_load_world(const char *path, struct gw_config **ret_cfg,
                         struct gw_registry **ret_reg);
/* Replaces a configuration string (the configuration owns its strings).
 * Returns 0 or -ENOMEM (the old value kept). */
int sim_bench_set_string(char **field, const char *value);
/* An option's value: a number in [min, max], or a whole number in
 * [1, max]. On a bad value prints "gridsim bench BENCH: NAME must be ..."
 * and returns -EINVAL. */
int sim_bench_parse_number(const char *bench, const char *arg, const char *name, double min,
                           double max, double *ret_value);
int sim_bench_parse_count(const char *bench, const char *arg, const char *name, uint64_t max,
                          uint64_t *ret_value);

/* Journal appends into the page cache and with grouped fsync. */
int sim_bench_journal(int argc, char **argv);
/* Payload decoders: flat JSON, SenML JSON, SenML CBOR. */
int sim_bench_decode(int argc, char **argv);
/* gridgate's MQTT intake against a do-nothing subscriber. */
int sim_bench_ingest(int argc, char **argv);
/* Readings per second through one rule worker, and a reload's pause. */
int sim_bench_rules(int argc, char **argv);
/* Telemetry through the whole pipeline with and without an alarm storm. */
int sim_bench_storm(int argc, char **argv);
/* Grid-scoped case pages on a large generated store, in-process and over HTTP. */
int sim_bench_cases(int argc, char **argv);
/* Line protocol encoding, and influx_writer against a plain bulk load. */
int sim_bench_influx(int argc, char **argv);
/* gridgate end to end (a running gridgate, with broker and InfluxDB)
 * against the broker's ceiling; --no-broker: the in-process headroom. */
int sim_bench_e2e(int argc, char **argv);

#endif
