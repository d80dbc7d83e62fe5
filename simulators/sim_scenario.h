/* sim_scenario: the scenarios of `gridsim run --scenario NAME`.
 *
 * Owns the choice of devices and grids for a scenario (deterministic for a
 * seed and a district), the sequence of messages it publishes, the cases
 * it says the shipped rules should open ("expect ..." lines on stdout,
 * printed before anything is sent) and the publishing of that sequence
 * over MQTT. Does not own the devices CSV reader nor the steady fleet
 * (sim_fleet), nor the rules: the expectations follow the rules in rules/ as
 * shipped, and a test holds them to it.
 */
#ifndef SIM_SCENARIO_H
#define SIM_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

struct sim_device;

struct sim_scenario_opts {
    const char *name;         /* fire, crowd, offline, storm or bad */
    const char *devices_path; /* the devices CSV, to find grids.geojson next to it */
    const char *grids_path;   /* NULL: grids.geojson in the devices CSV's folder */
    const char *broker;       /* MQTT URI */
    const char *coap_uri;     /* not NULL: post over CoAP to this gateway instead */
    int content_format;       /* with coap_uri: 50 (JSON) or 110 (SenML JSON) */
    uint64_t seed;
};

/* Plans the scenario over devices[0..count), prints its expectations,
 * publishes it and prints a summary. Returns 0, -EINVAL for an unknown
 * scenario or a district too small for it, or -EIO / -ECONNREFUSED when
 * publishing failed (logged). */
int sim_scenario_run(const struct sim_scenario_opts *opts, const struct sim_device *devices,
                     size_t count);

#endif
