/* libFuzzer target for the district loaders (gw_registry_load): the grids
 * GeoJSON when built with FUZZ_GEOJSON=1, the devices CSV with 0. The two
 * files are loaded together, so the other one is a fixed valid file from
 * tests/fuzz/district/ (the devices there name the grids there).
 *
 * Whatever the input, loading must not crash or leak, and must end with a
 * registry and no error, or no registry and an error "FILE:LINE: message"
 * naming one of the two files. A registry that loaded must keep its
 * promises: every grid and device found again by its id, every device in
 * a grid of the registry, positions within WGS84, bounding boxes that
 * hold their polygons, and quarantine admitting a new id.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "gw_registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIXED_GRIDS GW_FUZZ_DIR "/district/grids.geojson"
#define FIXED_DEVICES GW_FUZZ_DIR "/district/devices.csv"

static bool names(const char *error, const char *path)
{
    size_t n = strlen(path);
    const char *p;

    if (strncmp(error, path, n) != 0 || error[n] != ':')
        return false;
    p = error + n + 1;
    if (strspn(p, "0123456789") == 0)
        return false;
    p += strspn(p, "0123456789");
    return p[0] == ':' && p[1] == ' ' && p[2] != '\0';
}

static bool in_wgs84(double lon, double lat)
{
    return lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90;
}

static void check_grid(const struct gw_registry *reg, const struct gw_grid *g)
{
    if (!g->id || !g->id[0] || gw_registry_grid(reg, g->id) != g || !g->community_id ||
        !g->street_id || g->n_polygons == 0 || !(g->min_lon <= g->max_lon) ||
        !(g->min_lat <= g->max_lat))
        abort();
    for (size_t p = 0; p < g->n_polygons; p++) {
        const struct gw_polygon *poly = &g->polygons[p];

        if (poly->n_rings == 0)
            abort();
        for (size_t r = 0; r < poly->n_rings; r++) {
            const struct gw_ring *ring = &poly->rings[r];

            if (ring->n_points < 3)
                abort();
            for (size_t i = 0; i < ring->n_points; i++) {
                double lon = ring->lonlat[2 * i], lat = ring->lonlat[2 * i + 1];

                if (!in_wgs84(lon, lat) || lon < g->min_lon || lon > g->max_lon ||
                    lat < g->min_lat || lat > g->max_lat)
                    abort();
            }
        }
    }
}

static void check_device(const struct gw_registry *reg, const struct gw_device *d)
{
    const struct gw_grid *at;

    if (!d->id || !d->id[0] || gw_registry_device(reg, d->id) != d || !d->type || !d->type[0] ||
        !d->grid || gw_registry_grid(reg, d->grid->id) != d->grid || d->quarantined ||
        d->heartbeat_ns < 0)
        abort();
    if (isnan(d->lat) != isnan(d->lon))
        abort();
    if (isnan(d->lat))
        return;
    if (!in_wgs84(d->lon, d->lat))
        abort();
    at = gw_registry_locate(reg, d->lon, d->lat);
    if (at && (d->lon < at->min_lon || d->lon > at->max_lon || d->lat < at->min_lat ||
               d->lat > at->max_lat))
        abort();
}

static void check_registry(struct gw_registry *reg)
{
    const struct gw_device *q;
    size_t n_grids = gw_registry_grid_count(reg);

    if (n_grids == 0)
        abort();
    for (size_t i = 0; i < n_grids; i++)
        check_grid(reg, gw_registry_grid_at(reg, i));
    for (size_t i = 0; i < gw_registry_device_count(reg); i++)
        check_device(reg, gw_registry_device_at(reg, i));
    /* An id no devices file can hold (control character): always new. */
    if (gw_registry_enable_quarantine(reg, 1) < 0)
        return;
    q = gw_registry_quarantine(reg, "fuzz\x01new");
    if (q && (!q->quarantined || gw_registry_device(reg, "fuzz\x01new") != q ||
              strcmp(q->grid->id, GW_UNASSIGNED_GRID) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_file file = { .fd = -1 };
    const char *grids, *devices;
    struct gw_registry *reg;
    char *error = NULL;

    if (file.fd < 0)
        fuzz_file_open(&file, FUZZ_GEOJSON ? "fuzz-grids.geojson" : "fuzz-devices.csv");
    fuzz_file_set(&file, data, size);
    grids = FUZZ_GEOJSON ? file.path : FIXED_GRIDS;
    devices = FUZZ_GEOJSON ? FIXED_DEVICES : file.path;

    reg = gw_registry_load(grids, devices, &error);
    if (!reg) {
        /* The fixed file is valid: a devices error with fuzzed grids is
         * about the grids missing there, still named at its line. */
        if (!error || !(names(error, file.path) || (FUZZ_GEOJSON && names(error, devices))))
            abort();
        free(error);
        return 0;
    }
    if (error)
        abort();
    check_registry(reg);
    gw_registry_free(reg);
    return 0;
}
