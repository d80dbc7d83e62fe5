/* sim_fleet: the device fleet of gridsim (`gridsim run`).
 *
 * Owns the devices read from a devices CSV, the typed readings it makes up
 * for them, and one Paho MQTTAsync client that publishes those readings to
 * devices/{device_id}/telemetry at a paced rate with a bounded number of
 * unacknowledged publishes. Does not own the command line dispatch
 * (gridsim.c), the district generator (sim_district) nor the gateway's
 * registry: the CSV is read here on its own, only for device_id and type.
 */
#ifndef SIM_FLEET_H
#define SIM_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* `gridsim run [OPTIONS]`: argv[0] is the subcommand's name ("run"), the
 * options follow. Returns the process exit status: 0 on success, 1 on bad
 * options, a bad devices file, a connection failure or publishes that were
 * not acknowledged. Installs SIGINT/SIGTERM handlers for its duration. */
int sim_fleet_main(int argc, char **argv);

/* A small seeded PRNG (xoshiro256**), so that runs are reproducible with
 * --seed and no global rand() state is shared. */
struct sim_rng {
    uint64_t s[4];
};

void sim_rng_seed(struct sim_rng *rng, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *rng);
/* Uniform in [lo, hi). */
double sim_rng_uniform(struct sim_rng *rng, double lo, double hi);

enum sim_device_kind {
    SIM_DEVICE_SMOKE,
    SIM_DEVICE_CAMERA,
    SIM_DEVICE_GAS,
    SIM_DEVICE_DOOR,
    SIM_DEVICE_WATER,
    SIM_DEVICE_TEMPERATURE,
    SIM_DEVICE_OTHER, /* any other type: readings carry one "value" */
};

/* The kind for a CSV type ("smoke", "camera", "gas", "door", "water",
 * "temperature"); SIM_DEVICE_OTHER for anything else. */
enum sim_device_kind sim_device_kind_parse(const char *type);

/* One simulated device. Its baselines come from a hash of its id, so a
 * device reads alike from run to run whatever the seed. */
struct sim_device {
    char *id;
    enum sim_device_kind kind;
    unsigned line; /* line in the devices CSV, for messages */
    int battery;   /* percent, 0-100 */
    double base;   /* kind-specific baseline: temperature, water level... */
    double spread; /* kind-specific: humidity baseline, camera capacity... */
    char *grid_id; /* from the CSV's grid_id column; NULL when empty or absent */
};

/* Reads a devices CSV (header naming at least device_id and type, and
 * optionally grid_id; fields
 * may be double-quoted, "" inside quotes is a quote; blank lines are
 * skipped). A device id must be non-empty, unique, at most 256 bytes, and
 * free of '/', '+', '#' and control characters: it becomes a topic level.
 * On success stores a malloc'd array in *ret_devices (free it with
 * sim_devices_free) and its length in *ret_count, and returns 0. On
 * failure logs "FILE:LINE: message" and returns -EINVAL, -ENOENT (or
 * another negative errno from open/read) or -ENOMEM. */
int sim_devices_load(const char *path, struct sim_device **ret_devices, size_t *ret_count);
void sim_devices_free(struct sim_device *devices, size_t count);

/* Formats one reading of dev as a flat JSON object with "ts" (ms since the
 * epoch) and the kind's fields (see docs in sim_fleet.c). alarm only
 * matters for smoke detectors. Returns the length written (without the
 * NUL) or -ENOSPC when size is too small. */
int sim_reading_format(const struct sim_device *dev, struct sim_rng *rng, bool alarm, int64_t ts_ms,
                       char *buf, size_t size);

#endif
