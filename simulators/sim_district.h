/* sim_district: the synthetic Dongcheng district (`gridsim district`).
 *
 * Owns the street table of DOMAIN-NOTES section 2 (17 real streets with
 * their codes and synthetic community and grid counts), the tiling of the
 * district's bounding box into axis-aligned grid rectangles, the synthetic
 * attributes (type, level, roster) and device fleet, and writing them as
 * grids.geojson and devices.csv in the formats of DESIGN.md ("District").
 * Does not own reading them back (gw_registry) nor the running fleet
 * (sim_fleet). Everything follows from the options: the same options give
 * the same bytes.
 */
#ifndef SIM_DISTRICT_H
#define SIM_DISTRICT_H

#include <stddef.h>
#include <stdint.h>

#define SIM_DISTRICT_STREETS 17
#define SIM_DISTRICT_DEFAULT_DEVICES 350000
#define SIM_DISTRICT_MAX_DEVICES 100000000

/* The box the district tiles, in WGS84 degrees (DOMAIN-NOTES, padded). */
#define SIM_DISTRICT_MIN_LON 116.37
#define SIM_DISTRICT_MIN_LAT 39.85
#define SIM_DISTRICT_MAX_LON 116.45
#define SIM_DISTRICT_MAX_LAT 39.98

struct sim_district_options {
    uint64_t seed;
    unsigned streets; /* keep the first streets, 1..SIM_DISTRICT_STREETS */
    size_t devices;   /* 0..SIM_DISTRICT_MAX_DEVICES */
};

#define SIM_DISTRICT_OPTIONS_INIT                                                                  \
    {                                                                                              \
        1, SIM_DISTRICT_STREETS, SIM_DISTRICT_DEFAULT_DEVICES                                      \
    }

struct sim_district_counts {
    size_t streets;
    size_t communities;
    size_t grids;
    size_t devices;
    size_t located; /* devices with lat/lon and no grid_id */
};

/* Writes dir/grids.geojson and dir/devices.csv, creating dir and its
 * parents as needed. Each file is written under a temporary name and
 * renamed, so a reader never sees half a file. On success returns 0 and,
 * when ret_counts is not NULL, fills it; otherwise returns -EINVAL for bad
 * options, -ENOMEM or the negative errno of the failed file operation. */
int sim_district_write(const struct sim_district_options *opts, const char *dir,
                       struct sim_district_counts *ret_counts);

/* `gridsim district [OPTIONS]`: argv[0] is the subcommand's name, the
 * options follow. Returns the exit status: 0, 1 when writing failed, 2 for
 * bad options. */
int sim_district_main(int argc, char **argv);

#endif
