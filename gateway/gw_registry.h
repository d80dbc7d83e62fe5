/* gw_registry: the district as gridgate knows it.
 *
 * Owns the streets, communities and grids loaded from the grids GeoJSON and
 * the devices loaded from the devices CSV (DESIGN.md, "District"), and
 * answers device -> grid -> community -> street. Read-only once loaded, so
 * any thread may look up without a lock. Does not own readings.
 */
#ifndef GW_REGISTRY_H
#define GW_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

enum gw_device_online {
    GW_ONLINE_UNKNOWN, /* no status message seen since start */
    GW_ONLINE_YES,
    GW_ONLINE_NO,
};

/* Laid out without holes (80 bytes on LP64): a full district holds
 * hundreds of thousands of these. */
struct gw_device {
    char *id;
    char *type; /* device type, e.g. "smoke"; the InfluxDB measurement */
    const struct gw_grid *grid;
    char *label;
    double lat, lon; /* NAN when the CSV left them empty */
    int64_t heartbeat_ns; /* the devices file's heartbeat column; 0: the type's */
    bool quarantined; /* not in the devices file; in the "unassigned" grid */
    /* Live state, written only through gw_device_touch(),
     * gw_device_set_online() and gw_device_count_rejected() (atomics: any
     * thread may call them) and read through gw_device_state(). */
    uint8_t online; /* enum gw_device_online */
    uint32_t rejected; /* payloads refused from this device; stops at UINT32_MAX */
    int64_t last_seen_ns;
    int64_t online_changed_ns;
};

struct gw_device_state {
    int64_t last_seen_ns; /* gateway clock; 0 = never since start */
    enum gw_device_online online;
    int64_t online_changed_ns;
    uint64_t rejected;
};

/* The id of the pseudo-grid that quarantined devices belong to. */
#define GW_UNASSIGNED_GRID "unassigned"

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

/* Unknown devices (district.unknown_devices: quarantine): once enabled,
 * gw_registry_quarantine() admits an unknown id into the "unassigned"
 * pseudo-grid (at most max_devices of them, so a flood of invented ids
 * cannot exhaust memory), and gw_registry_device() finds them from then
 * on. Returns 0 or -ENOMEM. */
int gw_registry_enable_quarantine(struct gw_registry *reg, size_t max_devices);
/* The quarantined device for id, admitted now if new. NULL when quarantine
 * is off, the quarantine is full, or memory ran out. Thread-safe. */
const struct gw_device *gw_registry_quarantine(struct gw_registry *reg, const char *device_id);
size_t gw_registry_quarantined_count(const struct gw_registry *reg);

/* Live device state; thread-safe. */
void gw_device_touch(const struct gw_device *device, int64_t now_ns);
void gw_device_set_online(const struct gw_device *device, bool online, int64_t now_ns);
void gw_device_count_rejected(const struct gw_device *device);
void gw_device_state(const struct gw_device *device, struct gw_device_state *ret_state);

size_t gw_registry_grid_count(const struct gw_registry *reg);
size_t gw_registry_device_count(const struct gw_registry *reg);
const struct gw_grid *gw_registry_grid_at(const struct gw_registry *reg, size_t index);
/* The devices of the devices file, in file order (not quarantined ones). */
const struct gw_device *gw_registry_device_at(const struct gw_registry *reg, size_t index);
/* The position of device among the devices of the file: the index that
 * gw_registry_device_at() gives it back for, 0 .. gw_registry_device_count()
 * - 1, so that per-device data can live in plain arrays. -1 for a
 * quarantined device, NULL, or a device that is not of this registry. */
long gw_registry_device_index(const struct gw_registry *reg, const struct gw_device *device);

#endif
