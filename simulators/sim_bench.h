/* sim_bench: gridsim's benchmarks (`gridsim bench WHAT ...`), each a
 * bounded load run that prints its figures, with a baseline measured in
 * the same run where there is one, since the machines are shared.
 *
 * Each entry point takes argc/argv from WHAT on (argv[0] = "journal", ...)
 * and returns the process exit status. Owns nothing beyond one run.
 */
#ifndef SIM_BENCH_H
#define SIM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_config;
struct gw_registry;
struct influx_query_options;

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

/* InfluxDB 1.x for the benchmarks (sim_bench_influx.c). server gives the
 * url, username and password (NULL: none) and timeout_ms (0: 30 s); its
 * database is not used. Errors are printed or returned. */

/* Whether url is on loopback ("http://127.0.0.1:...", localhost, [::1]):
 * a benchmark must never load someone else's server. */
bool sim_bench_loopback_url(const char *url);
/* CREATE or DROP (verb) DATABASE db. Returns 0 or -EIO (printed). */
int sim_bench_influx_admin(const struct influx_query_options *server, const char *verb,
                           const char *db);
/* The points database db's shards have stored since InfluxDB started:
 * their writePointsOk in /debug/vars, InfluxDB's own count of accepted
 * points, which costs it no query over the data. Returns 0 or -EIO. */
int sim_bench_influx_points_ok(const struct influx_query_options *server, const char *db,
                               uint64_t *ret_points);
/* Plain line protocol POSTs to /write?db=DB&precision=ns on one kept-alive
 * connection, as a bulk load does. open returns NULL when out of memory;
 * post returns 0 when InfluxDB answered 204, else -EIO with the reason in
 * error. */
struct sim_bench_influx_post;
struct sim_bench_influx_post *sim_bench_influx_post_open(const struct influx_query_options *server,
                                                         const char *db);
int sim_bench_influx_post(struct sim_bench_influx_post *p, const char *lines, size_t len,
                          char *error, size_t error_len);
void sim_bench_influx_post_close(struct sim_bench_influx_post *p);

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
