/* gw_registry: the district as gridgate knows it.
 *
 * Owns the streets, communities and grids loaded from the grids GeoJSON and
 * the devices loaded from the devices CSV (DESIGN.md, "District"), and
 * answers device -> grid -> community -> street. Read-only once loaded, so
 * any thread may look up without a lock. Does not own readings.
 */
#ifndef GW_REGISTRY_H
#define GW_REGISTRY_H

#include <stddef.h>

#include "gw_domain.h"

struct gw_ring {
    double *lonlat; /* lon0, lat0, lon1, lat1, ... */
    size_t n_points;
};

struct gw_polygon {
    struct gw_ring *rings; /* rings[0] is the outer ring, the rest holes */
    size_t n_rings;
};

struct gw_grid {
    char *id;
    char *name;
    char *community_id;
    char *community;
    char *street_id;
    char *street;
    enum gw_grid_type type;
    enum gw_grid_level level;
    char *roster[GW_ROLE_COUNT]; /* person holding each role, NULL if none */
    struct gw_polygon *polygons;
    size_t n_polygons;
    double min_lon, min_lat, max_lon, max_lat; /* bounding box */
};

struct gw_device {
    char *id;
    char *type; /* device type, e.g. "smoke"; the InfluxDB measurement */
    const struct gw_grid *grid;
    double lat, lon; /* NAN when the CSV left them empty */
    char *label;
};

struct gw_registry;

/* Loads grids then devices. On failure returns NULL and sets *ret_error to
 * a malloc'd "file:line: message" (line 0 when the file as a whole is bad)
 * that the caller frees. A device whose grid_id is unknown, or whose
 * lat/lon lies in no grid, is an error naming its CSV line. */
struct gw_registry *gw_registry_load(const char *grids_path, const char *devices_path,
                                     char **ret_error);
void gw_registry_free(struct gw_registry *reg);

const struct gw_device *gw_registry_device(const struct gw_registry *reg, const char *device_id);
const struct gw_grid *gw_registry_grid(const struct gw_registry *reg, const char *grid_id);
/* The grid containing the point, or NULL. */
const struct gw_grid *gw_registry_locate(const struct gw_registry *reg, double lon, double lat);

size_t gw_registry_grid_count(const struct gw_registry *reg);
size_t gw_registry_device_count(const struct gw_registry *reg);
const struct gw_grid *gw_registry_grid_at(const struct gw_registry *reg, size_t index);

#endif
