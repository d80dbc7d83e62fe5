#include "gw_registry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_duration.h"
#include "gw_json.h"
#include "gw_map.h"

#define CSV_HEADER "device_id,type,grid_id,lat,lon,label"
#define CSV_FIELDS 6     /* DESIGN.md's columns */
#define CSV_FIELDS_MAX 7 /* and an optional heartbeat, overriding the type's */
#define UTF8_BOM "\xef\xbb\xbf"

/* Largest file we read whole: far above any district (the full Dongcheng
 * sample with 350,000 devices is about 30 MB). */
#define MAX_FILE_BYTES ((size_t)1 << 30)

/* Uniform bucket index over the grids' joint bounding box: each cell lists,
 * in file order, the grids whose bounding box touches it. A point looks at
 * one cell only. */
struct grid_index {
    double min_lon, min_lat, max_lon, max_lat;
    double cell_w, cell_h;
    size_t nx, ny;
    uint32_t *start; /* nx * ny + 1 offsets into items */
    uint32_t *items; /* grid indices */
};

/* The strings of the devices file, copied out of the CSV text so that the
 * text can go once loaded: one anonymous mapping sized for the worst case
 * (the whole text being strings), of which only the pages written become
 * resident, and whose unused tail is unmapped after loading. Strings never
 * move, so the id map can key on them; no per-string malloc overhead. */
struct strings {
    char *base;
    size_t used;
    size_t size; /* bytes mapped from base */
};

/* The devices of the file by id: open addressing over (hash, index + 1)
 * pairs, 8 bytes a slot against a gw_map's 24 (a district has hundreds of
 * thousands of devices), the key compared with the device's own id. Built
 * while loading, read-only after: lookups need no lock. */
struct id_table {
    uint64_t *slots; /* 0: empty */
    size_t mask;
};

struct gw_registry {
    struct gw_grid *grids;
    size_t n_grids;
    struct gw_device *devices;
    size_t n_devices;
    struct gw_map *grid_by_id;
    struct id_table device_by_id;
    /* Every device's id, type and label (types once each); see
     * struct strings. */
    struct strings device_strings;
    struct grid_index index;

    /* Quarantine: devices admitted at run time, under quarantine_lock. The
     * maps above are never written after load, so lookups there need no
     * lock; only a miss looks here. */
    pthread_mutex_t quarantine_lock;
    bool quarantine_on;
    size_t quarantine_max;
    struct gw_map *quarantined;
    struct gw_device **quarantine_list;
    size_t n_quarantined;
    struct gw_grid unassigned;
};

/* ---- errors and files --------------------------------------------------- */

static void set_error(char **ret_error, const char *path, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(char **ret_error, const char *path, size_t line, const char *fmt, ...)
{
    struct gw_buf b = GW_BUF_INIT;
    va_list ap;

    if (!ret_error)
        return;
    va_start(ap, fmt);
    if (gw_buf_printf(&b, "%s:%zu: ", path, line) < 0 || gw_buf_vprintf(&b, fmt, ap) < 0) {
        gw_buf_free(&b);
        b.data = NULL;
    }
    va_end(ap);
    /* Out of memory even for the message: the caller gets NULL, which its
     * free() accepts. */
    free(*ret_error);
    *ret_error = b.data;
}

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
static int read_file(const char *path, char **ret_data, size_t *ret_len)
{
    struct gw_buf file = GW_BUF_INIT;
    int r = gw_buf_read_file(&file, path, MAX_FILE_BYTES);

    if (r < 0)
        return r;
    *ret_data = file.data;
    *ret_len = file.len;
    return 0;
}

static size_t line_of(const char *text, const char *pos)
{
    size_t line = 1;

    for (const char *p = text; p < pos; p++)
        if (*p == '\n')
            line++;
    return line;
}

/* ---- geometry ------------------------------------------------------------ */

/* Even-odd crossing test over every ring of the polygon, so a point in a
 * hole is outside. A point on an edge shared by two grids lands in exactly
 * one of them: edges count half-open in lat, and a point on a vertical edge
 * belongs to the polygon on its east side. */
static bool polygon_contains(const struct gw_polygon *poly, double lon, double lat)
{
    bool inside = false;

    for (size_t r = 0; r < poly->n_rings; r++) {
        const double *v = poly->rings[r].lonlat;
        size_t n = poly->rings[r].n_points;

        for (size_t i = 0, j = n - 1; i < n; j = i++) {
            double xi = v[2 * i], yi = v[2 * i + 1];
            double xj = v[2 * j], yj = v[2 * j + 1];

            if ((yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi)
                inside = !inside;
        }
    }
    return inside;
}

static bool grid_contains(const struct gw_grid *g, double lon, double lat)
{
    if (lon < g->min_lon || lon > g->max_lon || lat < g->min_lat || lat > g->max_lat)
        return false;
    for (size_t i = 0; i < g->n_polygons; i++)
        if (polygon_contains(&g->polygons[i], lon, lat))
            return true;
    return false;
}

/* Cell column (or row) of a coordinate already known to lie within the
 * index's box. The same function places grids and points, so a point inside
 * a grid's box always falls in a cell that lists the grid. */
static size_t cell_of(double v, double min, double size, size_t n)
{
    double f = size > 0 ? (v - min) / size : 0;

    if (!(f > 0))
        return 0;
    if (f >= (double)n)
        return n - 1;
    return (size_t)f;
}

/* Cells along one side, 1 to 1024. Clamped as a double: a box far wider
 * than high (a grid a hair thin; tests/fuzz/corpus/district_geojson/
 * regress_thin_grid.geojson) gives a count no size_t holds, and
 * converting that is undefined. */
static size_t cells_along(double n)
{
    return !(n > 1) ? 1 : n > 1024 ? 1024 : (size_t)ceil(n);
}

static int index_build(struct grid_index *ix, const struct gw_grid *grids, size_t n_grids)
{
    double w, h, side;
    size_t cells, total = 0;

    ix->min_lon = ix->min_lat = INFINITY;
    ix->max_lon = ix->max_lat = -INFINITY;
    for (size_t i = 0; i < n_grids; i++) {
        ix->min_lon = fmin(ix->min_lon, grids[i].min_lon);
        ix->min_lat = fmin(ix->min_lat, grids[i].min_lat);
        ix->max_lon = fmax(ix->max_lon, grids[i].max_lon);
        ix->max_lat = fmax(ix->max_lat, grids[i].max_lat);
    }
    w = ix->max_lon - ix->min_lon;
    h = ix->max_lat - ix->min_lat;
    /* About four cells per grid, shaped like the box. */
    side = 2.0 * sqrt((double)n_grids);
    if (w > 0 && h > 0) {
        ix->nx = cells_along(side * sqrt(w / h));
        ix->ny = cells_along(side * sqrt(h / w));
    } else {
        ix->nx = w > 0 ? cells_along(side) : 1;
        ix->ny = h > 0 ? cells_along(side) : 1;
    }
    ix->cell_w = w / (double)ix->nx;
    ix->cell_h = h / (double)ix->ny;
    cells = ix->nx * ix->ny;

    ix->start = calloc(cells + 1, sizeof(*ix->start));
    if (!ix->start)
        return -ENOMEM;
    /* Count per cell, turn counts into offsets, then fill in file order. */
    for (size_t i = 0; i < n_grids; i++) {
        size_t x0 = cell_of(grids[i].min_lon, ix->min_lon, ix->cell_w, ix->nx);
        size_t x1 = cell_of(grids[i].max_lon, ix->min_lon, ix->cell_w, ix->nx);
        size_t y0 = cell_of(grids[i].min_lat, ix->min_lat, ix->cell_h, ix->ny);
        size_t y1 = cell_of(grids[i].max_lat, ix->min_lat, ix->cell_h, ix->ny);

        for (size_t y = y0; y <= y1; y++)
            for (size_t x = x0; x <= x1; x++)
                ix->start[y * ix->nx + x + 1]++;
        total += (x1 - x0 + 1) * (y1 - y0 + 1);
    }
    if (total > UINT32_MAX)
        return -E2BIG;
    for (size_t c = 0; c < cells; c++)
        ix->start[c + 1] += ix->start[c];
    ix->items = malloc((total ? total : 1) * sizeof(*ix->items));
    if (!ix->items)
        return -ENOMEM;
    {
        uint32_t *fill = malloc(cells * sizeof(*fill));

        if (!fill)
            return -ENOMEM;
        memcpy(fill, ix->start, cells * sizeof(*fill));
        for (size_t i = 0; i < n_grids; i++) {
            size_t x0 = cell_of(grids[i].min_lon, ix->min_lon, ix->cell_w, ix->nx);
            size_t x1 = cell_of(grids[i].max_lon, ix->min_lon, ix->cell_w, ix->nx);
            size_t y0 = cell_of(grids[i].min_lat, ix->min_lat, ix->cell_h, ix->ny);
            size_t y1 = cell_of(grids[i].max_lat, ix->min_lat, ix->cell_h, ix->ny);

            for (size_t y = y0; y <= y1; y++)
                for (size_t x = x0; x <= x1; x++)
                    ix->items[fill[y * ix->nx + x]++] = (uint32_t)i;
        }
        free(fill);
    }
    return 0;
}

static void index_free(struct grid_index *ix)
{
    free(ix->start);
    free(ix->items);
}

const struct gw_grid *gw_registry_locate(const struct gw_registry *reg, double lon, double lat)
{
    const struct grid_index *ix;
    size_t cell;

    if (!reg || !reg->index.start || !isfinite(lon) || !isfinite(lat))
        return NULL;
    ix = &reg->index;
    if (lon < ix->min_lon || lon > ix->max_lon || lat < ix->min_lat || lat > ix->max_lat)
        return NULL;
    cell = cell_of(lat, ix->min_lat, ix->cell_h, ix->ny) * ix->nx +
           cell_of(lon, ix->min_lon, ix->cell_w, ix->nx);
    /* Candidates are in file order, so overlapping grids resolve to the
     * first one in the GeoJSON. */
    for (uint32_t k = ix->start[cell]; k < ix->start[cell + 1]; k++) {
        const struct gw_grid *g = &reg->grids[ix->items[k]];

        if (grid_contains(g, lon, lat))
            return g;
    }
    return NULL;
}

/* ---- grids GeoJSON -------------------------------------------------------- */

/* cJSON keeps no positions, so after it has accepted the text a small
 * scanner finds where each element of the top-level "features" array
 * starts, for "file:line" messages. It relies on the text being valid JSON. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p < end ? p + 1 : end;
}

static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;

    if (p < end && *p == '"')
        return skip_string(p, end);
    if (p < end && *p != '{' && *p != '[') {
        while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
               *p != '\r' && *p != '\t')
            p++;
        return p;
    }
    while (p < end) {
        if (*p == '"') {
            p = skip_string(p, end);
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return end;
}

/* Fills lines[i] with the line where features[i] starts (0 if unknown). */
static void feature_lines(const char *text, size_t len, size_t *lines, size_t n)
{
    const char *p = text, *end = text + len, *counted = text;
    size_t line = 1, i = 0;

    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return;
    p++;
    while (p < end) {
        const char *key;
        bool features;

        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return;
        key = p;
        p = skip_string(p, end);
        features = (size_t)(p - key) == strlen("\"features\"") &&
                   memcmp(key, "\"features\"", strlen("\"features\"")) == 0;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return;
        p = skip_ws(p + 1, end);
        if (features && p < end && *p == '[') {
            p = skip_ws(p + 1, end);
            while (p < end && *p != ']' && i < n) {
                for (; counted < p; counted++)
                    if (*counted == '\n')
                        line++;
                lines[i++] = line;
                p = skip_ws(skip_value(p, end), end);
                if (p < end && *p == ',')
                    p = skip_ws(p + 1, end);
            }
            return;
        }
        p = skip_ws(skip_value(p, end), end);
        if (p >= end || *p != ',')
            return;
        p++;
    }
}

/* Where a feature's message is reported from. */
struct feature_ctx {
    const char *path;
    size_t line;
    size_t index;
    const char *grid_id; /* NULL until known */
    char **ret_error;
};

static void feature_error(const struct feature_ctx *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void feature_error(const struct feature_ctx *f, const char *fmt, ...)
{
    struct gw_buf b = GW_BUF_INIT;
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = gw_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (r < 0) {
        gw_buf_free(&b);
        set_error(f->ret_error, f->path, f->line, "out of memory");
        return;
    }
    if (f->grid_id)
        set_error(f->ret_error, f->path, f->line, "feature %zu (grid_id %s): %s", f->index,
                  f->grid_id, b.data);
    else
        set_error(f->ret_error, f->path, f->line, "feature %zu: %s", f->index, b.data);
    gw_buf_free(&b);
}

static int parse_ring(const struct feature_ctx *f, const cJSON *coords, struct gw_ring *ring,
                      struct gw_grid *g)
{
    size_t n = 0;
    const cJSON *pos;

    if (!cJSON_IsArray(coords)) {
        feature_error(f, "a ring must be an array of positions");
        return -EINVAL;
    }
    n = (size_t)cJSON_GetArraySize(coords);
    if (n < 3) {
        feature_error(f, "a ring needs at least 3 positions, has %zu", n);
        return -EINVAL;
    }
    ring->lonlat = malloc(2 * n * sizeof(*ring->lonlat));
    if (!ring->lonlat) {
        feature_error(f, "out of memory");
        return -ENOMEM;
    }
    n = 0;
    cJSON_ArrayForEach(pos, coords)
    {
        const cJSON *lon = cJSON_GetArrayItem(pos, 0), *lat = cJSON_GetArrayItem(pos, 1);
        double x, y;

        if (!cJSON_IsArray(pos) || !cJSON_IsNumber(lon) || !cJSON_IsNumber(lat)) {
            feature_error(f, "a position must be [lon, lat] numbers");
            return -EINVAL;
        }
        x = lon->valuedouble;
        y = lat->valuedouble;
        if (!(x >= -180 && x <= 180) || !(y >= -90 && y <= 90)) {
            feature_error(f, "position [%g, %g] is not a WGS84 lon, lat", x, y);
            return -EINVAL;
        }
        ring->lonlat[2 * n] = x;
        ring->lonlat[2 * n + 1] = y;
        ring->n_points = ++n;
        g->min_lon = fmin(g->min_lon, x);
        g->max_lon = fmax(g->max_lon, x);
        g->min_lat = fmin(g->min_lat, y);
        g->max_lat = fmax(g->max_lat, y);
    }
    return 0;
}

static int parse_polygon(const struct feature_ctx *f, const cJSON *coords, struct gw_polygon *poly,
                         struct gw_grid *g)
{
    size_t n;
    const cJSON *ring;
    int r;

    if (!cJSON_IsArray(coords) || cJSON_GetArraySize(coords) < 1) {
        feature_error(f, "a polygon must be a non-empty array of rings");
        return -EINVAL;
    }
    n = (size_t)cJSON_GetArraySize(coords);
    poly->rings = calloc(n, sizeof(*poly->rings));
    if (!poly->rings) {
        feature_error(f, "out of memory");
        return -ENOMEM;
    }
    cJSON_ArrayForEach(ring, coords)
    {
        /* Counted before parsing so that a failed ring is freed too. */
        r = parse_ring(f, ring, &poly->rings[poly->n_rings++], g);
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_geometry(const struct feature_ctx *f, const cJSON *geometry, struct gw_grid *g)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(geometry, "type");
    const cJSON *coords = cJSON_GetObjectItemCaseSensitive(geometry, "coordinates");
    const cJSON *item;
    bool multi;
    size_t n;
    int r;

    if (!cJSON_IsObject(geometry)) {
        feature_error(f, "missing geometry");
        return -EINVAL;
    }
    if (!cJSON_IsString(type)) {
        feature_error(f, "geometry has no type");
        return -EINVAL;
    }
    if (strcmp(type->valuestring, "Polygon") == 0)
        multi = false;
    else if (strcmp(type->valuestring, "MultiPolygon") == 0)
        multi = true;
    else {
        feature_error(f, "geometry type \"%s\" is not Polygon or MultiPolygon", type->valuestring);
        return -EINVAL;
    }
    if (!cJSON_IsArray(coords) || (multi && cJSON_GetArraySize(coords) < 1)) {
        feature_error(f, "geometry has no coordinates");
        return -EINVAL;
    }
    g->min_lon = g->min_lat = INFINITY;
    g->max_lon = g->max_lat = -INFINITY;
    n = multi ? (size_t)cJSON_GetArraySize(coords) : 1;
    g->polygons = calloc(n, sizeof(*g->polygons));
    if (!g->polygons) {
        feature_error(f, "out of memory");
        return -ENOMEM;
    }
    if (!multi) {
        g->n_polygons = 1;
        return parse_polygon(f, coords, &g->polygons[0], g);
    }
    cJSON_ArrayForEach(item, coords)
    {
        r = parse_polygon(f, item, &g->polygons[g->n_polygons++], g);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A required non-empty string property, copied into *ret. */
static int string_property(const struct feature_ctx *f, const cJSON *props, const char *name,
                           char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(props, name);

    if (!v || cJSON_IsNull(v)) {
        feature_error(f, "missing property \"%s\"", name);
        return -EINVAL;
    }
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        feature_error(f, "property \"%s\" must be a non-empty string", name);
        return -EINVAL;
    }
    *ret = strdup(v->valuestring);
    if (!*ret) {
        feature_error(f, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int enum_property(const struct feature_ctx *f, const cJSON *props, const char *name,
                         int (*parse)(const char *), int *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(props, name);
    int value;

    if (!v || cJSON_IsNull(v)) {
        feature_error(f, "missing property \"%s\"", name);
        return -EINVAL;
    }
    if (!cJSON_IsString(v)) {
        feature_error(f, "property \"%s\" must be a string", name);
        return -EINVAL;
    }
    value = parse(v->valuestring);
    if (value < 0) {
        feature_error(f, "unknown %s \"%s\"", name, v->valuestring);
        return -EINVAL;
    }
    *ret = value;
    return 0;
}

static int parse_roster(const struct feature_ctx *f, const cJSON *props, struct gw_grid *g)
{
    const cJSON *roster = cJSON_GetObjectItemCaseSensitive(props, "roster");
    const cJSON *entry;

    if (!roster || cJSON_IsNull(roster)) {
        feature_error(f, "missing property \"roster\"");
        return -EINVAL;
    }
    if (!cJSON_IsObject(roster)) {
        feature_error(f, "property \"roster\" must be an object of role: person");
        return -EINVAL;
    }
    cJSON_ArrayForEach(entry, roster)
    {
        int role = gw_role_parse(entry->string);

        if (role < 0) {
            feature_error(f, "unknown role \"%s\" in roster", entry->string);
            return -EINVAL;
        }
        if (!cJSON_IsString(entry) || entry->valuestring[0] == '\0') {
            feature_error(f, "roster role \"%s\" must name a person", entry->string);
            return -EINVAL;
        }
        if (g->roster[role]) {
            feature_error(f, "roster role \"%s\" given twice", entry->string);
            return -EINVAL;
        }
        g->roster[role] = strdup(entry->valuestring);
        if (!g->roster[role]) {
            feature_error(f, "out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

static int parse_feature(struct feature_ctx *f, const cJSON *feature, struct gw_grid *g)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(feature, "type");
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(feature, "properties");
    int value, r;

    if (!cJSON_IsObject(feature) || !cJSON_IsString(type) ||
        strcmp(type->valuestring, "Feature") != 0) {
        feature_error(f, "not a GeoJSON Feature");
        return -EINVAL;
    }
    if (!cJSON_IsObject(props)) {
        feature_error(f, "missing properties");
        return -EINVAL;
    }
    r = string_property(f, props, "grid_id", &g->id);
    if (r < 0)
        return r;
    f->grid_id = g->id;
    if ((r = string_property(f, props, "name", &g->name)) < 0 ||
        (r = string_property(f, props, "community_id", &g->community_id)) < 0 ||
        (r = string_property(f, props, "community", &g->community)) < 0 ||
        (r = string_property(f, props, "street_id", &g->street_id)) < 0 ||
        (r = string_property(f, props, "street", &g->street)) < 0)
        return r;
    r = enum_property(f, props, "type", gw_grid_type_parse, &value);
    if (r < 0)
        return r;
    g->type = (enum gw_grid_type)value;
    r = enum_property(f, props, "level", gw_grid_level_parse, &value);
    if (r < 0)
        return r;
    g->level = (enum gw_grid_level)value;
    r = parse_roster(f, props, g);
    if (r < 0)
        return r;
    return parse_geometry(f, cJSON_GetObjectItemCaseSensitive(feature, "geometry"), g);
}

/* A community belongs to one street and has one name, a street has one
 * name: the evaluation figures roll up by these ids. first_* map an id to
 * the first grid that named it. */
static int check_hierarchy(struct feature_ctx *f, struct gw_map *first_community,
                           struct gw_map *first_street, struct gw_grid *g, const size_t *lines,
                           const struct gw_grid *grids)
{
    const struct gw_grid *c = gw_map_get(first_community, g->community_id);
    const struct gw_grid *s = gw_map_get(first_street, g->street_id);

    if (c && strcmp(c->street_id, g->street_id) != 0) {
        feature_error(f, "community_id %s is in street_id %s at feature %zu (line %zu), here in %s",
                      g->community_id, c->street_id, (size_t)(c - grids), lines[c - grids],
                      g->street_id);
        return -EINVAL;
    }
    if (c && strcmp(c->community, g->community) != 0) {
        feature_error(f, "community_id %s is named \"%s\" at feature %zu (line %zu), here \"%s\"",
                      g->community_id, c->community, (size_t)(c - grids), lines[c - grids],
                      g->community);
        return -EINVAL;
    }
    if (s && strcmp(s->street, g->street) != 0) {
        feature_error(f, "street_id %s is named \"%s\" at feature %zu (line %zu), here \"%s\"",
                      g->street_id, s->street, (size_t)(s - grids), lines[s - grids], g->street);
        return -EINVAL;
    }
    if ((!c && gw_map_put(first_community, g->community_id, g) < 0) ||
        (!s && gw_map_put(first_street, g->street_id, g) < 0)) {
        feature_error(f, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int load_grids(struct gw_registry *reg, const char *path, char **ret_error)
{
    char *text = NULL;
    const char *json, *parse_end = NULL;
    size_t len, n, *lines = NULL;
    cJSON *root = NULL;
    const cJSON *type, *features, *feature;
    struct gw_map *first_community = NULL, *first_street = NULL;
    struct feature_ctx f = { .path = path, .ret_error = ret_error };
    int r;

    r = read_file(path, &text, &len);
    if (r < 0) {
        set_error(ret_error, path, 0, "cannot read: %s", strerror(-r));
        return r;
    }
    json = text;
    if (len >= 3 && memcmp(json, UTF8_BOM, 3) == 0) {
        json += 3;
        len -= 3;
    }
    /* len + 1 takes in the NUL read_file adds: cJSON's check for trailing
     * text wants to see it. */
    root = gw_json_parse(json, len + 1, &parse_end, true);
    if (!root) {
        if (!parse_end || parse_end < json || parse_end > json + len)
            set_error(ret_error, path, 0, "invalid JSON");
        else
            set_error(ret_error, path, line_of(text, parse_end), "invalid JSON near \"%.20s\"",
                      parse_end);
        r = -EINVAL;
        goto out;
    }
    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    features = cJSON_GetObjectItemCaseSensitive(root, "features");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "FeatureCollection") != 0 ||
        !cJSON_IsArray(features)) {
        set_error(ret_error, path, 0, "not a GeoJSON FeatureCollection with a \"features\" array");
        r = -EINVAL;
        goto out;
    }
    n = (size_t)cJSON_GetArraySize(features);
    if (n == 0) {
        set_error(ret_error, path, 0, "no grids: \"features\" is empty");
        r = -EINVAL;
        goto out;
    }
    if (n > UINT32_MAX) {
        set_error(ret_error, path, 0, "too many features");
        r = -E2BIG;
        goto out;
    }
    lines = calloc(n, sizeof(*lines));
    reg->grids = calloc(n, sizeof(*reg->grids));
    reg->grid_by_id = gw_map_new(n);
    first_community = gw_map_new(n);
    first_street = gw_map_new(n);
    if (!lines || !reg->grids || !reg->grid_by_id || !first_community || !first_street) {
        set_error(ret_error, path, 0, "out of memory");
        r = -ENOMEM;
        goto out;
    }
    feature_lines(json, len, lines, n);
    /* lines counted from json, which may start after a BOM: same lines. */
    cJSON_ArrayForEach(feature, features)
    {
        struct gw_grid *g = &reg->grids[reg->n_grids];
        const struct gw_grid *dup;

        f.index = reg->n_grids;
        f.line = lines[reg->n_grids];
        f.grid_id = NULL;
        reg->n_grids++; /* counted first so that a half-parsed grid is freed */
        r = parse_feature(&f, feature, g);
        if (r < 0)
            goto out;
        dup = gw_map_get(reg->grid_by_id, g->id);
        if (dup) {
            feature_error(&f, "duplicate grid_id, first at feature %zu (line %zu)",
                          (size_t)(dup - reg->grids), lines[dup - reg->grids]);
            r = -EEXIST;
            goto out;
        }
        r = check_hierarchy(&f, first_community, first_street, g, lines, reg->grids);
        if (r < 0)
            goto out;
        if (gw_map_put(reg->grid_by_id, g->id, g) < 0) {
            feature_error(&f, "out of memory");
            r = -ENOMEM;
            goto out;
        }
    }
    r = index_build(&reg->index, reg->grids, reg->n_grids);
    if (r < 0)
        set_error(ret_error, path, 0, "cannot index the grids: %s", strerror(-r));
out:
    gw_map_free(first_community);
    gw_map_free(first_street);
    free(lines);
    cJSON_Delete(root);
    free(text);
    return r;
}

/* ---- devices CSV --------------------------------------------------------- */

struct csv {
    char *p, *end;
    size_t line; /* line of *p */
};

/* Splits the next record in place (RFC 4180: fields may be double-quoted,
 * "" inside quotes is a quote, quoted fields may span lines; a quote inside
 * an unquoted field is kept as it is). Each field is NUL-terminated in the
 * buffer. Stores up to max fields, counts all of them in *ret_n. Returns 1
 * for a record, 0 at the end, -EINVAL for an unterminated quote or text
 * after a closing quote (with *ret_what saying which). */
static int csv_record(struct csv *c, char **fields, size_t max, size_t *ret_n,
                      const char **ret_what)
{
    size_t n = 0;

    if (c->p >= c->end)
        return 0;
    for (;;) {
        char *start = c->p, *w = c->p;
        char *p = c->p;

        if (p < c->end && *p == '"') {
            for (p++;; p++) {
                if (p >= c->end) {
                    *ret_what = "unterminated quoted field";
                    return -EINVAL;
                }
                if (*p == '"') {
                    if (p + 1 < c->end && p[1] == '"') {
                        *w++ = '"';
                        p++;
                        continue;
                    }
                    p++;
                    break;
                }
                if (*p == '\n')
                    c->line++;
                *w++ = *p;
            }
            if (p < c->end && *p == '\r' && (p + 1 == c->end || p[1] == '\n'))
                p++;
            if (p < c->end && *p != ',' && *p != '\n') {
                *ret_what = "text after a closing quote";
                return -EINVAL;
            }
        } else {
            while (p < c->end && *p != ',' && *p != '\n')
                p++;
            w = p;
            if (w > start && w[-1] == '\r' && (p >= c->end || *p == '\n'))
                w--;
        }
        if (n < max)
            fields[n] = start;
        n++;
        if (p >= c->end) {
            *w = '\0';
            c->p = c->end;
            break;
        }
        if (*p == ',') {
            *w = '\0';
            c->p = p + 1;
            continue;
        }
        /* '\n': end of record. */
        *w = '\0';
        c->p = p + 1;
        c->line++;
        break;
    }
    *ret_n = n;
    return 1;
}

/* A decimal number, nothing else: no spaces, hex, "nan" or "inf". */
static int parse_coordinate(const char *s, double min, double max, double *ret)
{
    char *end;
    double v;

    if (*s == '\0' || strspn(s, "0123456789+-.eE") != strlen(s))
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= min && v <= max))
        return -EINVAL;
    *ret = v;
    return 0;
}

/* Device ids become MQTT topic levels (as sim_fleet also insists). */
static const char *bad_id_char(const char *id)
{
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if (*p == '/')
            return "'/'";
        if (*p == '+')
            return "'+'";
        if (*p == '#')
            return "'#'";
        if (*p < 0x20 || *p == 0x7f)
            return "a control character";
    }
    return NULL;
}

static bool has_control_char(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

static int strings_map(struct strings *s, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return -ENOMEM;
    s->base = p;
    s->used = 0;
    s->size = size;
    return 0;
}

static int id_table_init(struct id_table *t, size_t n)
{
    size_t cap = 16;

    while (cap / 4 * 3 < n)
        cap *= 2;
    t->slots = calloc(cap, sizeof(*t->slots));
    t->mask = cap - 1;
    return t->slots ? 0 : -ENOMEM;
}

/* The slot holding id among devices, or the empty one where it goes. */
static uint64_t *id_table_find(const struct id_table *t, const struct gw_device *devices,
                               const char *id)
{
    uint32_t hash = (uint32_t)gw_map_hash(id);

    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        uint64_t *slot = &t->slots[i];
        if (!*slot || ((uint32_t)(*slot >> 32) == hash &&
                       strcmp(devices[(uint32_t)*slot - 1].id, id) == 0))
            return slot;
    }
}

static const struct gw_device *id_table_get(const struct id_table *t,
                                            const struct gw_device *devices, const char *id)
{
    const uint64_t *slot = t->slots && id ? id_table_find(t, devices, id) : NULL;

    return slot && *slot ? &devices[(uint32_t)*slot - 1] : NULL;
}

/* A copy of str in the arena, or NULL when it is full. */
static char *strings_add(struct strings *s, const char *str)
{
    size_t n = strlen(str) + 1;
    char *copy;

    if (!s->base || n > s->size - s->used)
        return NULL;
    copy = memcpy(s->base + s->used, str, n);
    s->used += n;
    return copy;
}

/* Gives back the pages past the last string. */
static void strings_trim(struct strings *s)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t keep = (s->used + page - 1) / page * page;

    if (!s->base || keep >= s->size)
        return;
    munmap(s->base + keep, s->size - keep);
    s->size = keep;
    if (keep == 0)
        s->base = NULL;
}

static void strings_free(struct strings *s)
{
    if (s->base)
        munmap(s->base, s->size);
    s->base = NULL;
    s->used = s->size = 0;
}

/* The arena's copy of type: a district has a handful of types, each kept
 * once. types maps a type to that copy. NULL when out of memory. */
static char *intern_type(struct strings *s, struct gw_map *types, const char *type)
{
    char *copy = gw_map_get(types, type);

    if (copy)
        return copy;
    copy = strings_add(s, type);
    if (!copy || gw_map_put(types, copy, copy) < 0)
        return NULL;
    return copy;
}

/* Hands the pages of the text before `done` back to the kernel, a MB at a
 * time: once a record's strings are in the arena its text is dead, and
 * without this the whole text and the arena would be resident together at
 * the end of loading (the process's peak). *released: the page boundary
 * handed back up to, starting at the first whole page of the text; only
 * whole pages of the text go (they would read back as zeros; nothing
 * reads them again). */
static void release_text(const char *done, uintptr_t *released)
{
    uintptr_t to = (uintptr_t)done & ~((uintptr_t)sysconf(_SC_PAGESIZE) - 1);

    if (to > *released && to - *released >= ((uintptr_t)1 << 20)) {
        madvise((void *)*released, to - *released, MADV_DONTNEED);
        *released = to;
    }
}

static int load_devices(struct gw_registry *reg, const char *path, char **ret_error)
{
    struct csv c;
    char *text = NULL, *fields[CSV_FIELDS_MAX];
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), released;
    size_t len, n, n_columns, rows = 1, *lines = NULL;
    struct gw_map *types = NULL;
    const char *what;
    int r;

    r = read_file(path, &text, &len);
    if (r < 0) {
        set_error(ret_error, path, 0, "cannot read: %s", strerror(-r));
        return r;
    }
    c.p = text;
    released = ((uintptr_t)text + page - 1) & ~(page - 1);
    c.end = c.p + len;
    c.line = 1;
    if (len >= 3 && memcmp(c.p, UTF8_BOM, 3) == 0)
        c.p += 3;
    /* Every record ends at a newline or the end: an upper bound for the
     * array, which therefore never moves and can be pointed into. */
    for (const char *q = c.p; (q = memchr(q, '\n', (size_t)(c.end - q))); q++)
        rows++;
    reg->devices = calloc(rows, sizeof(*reg->devices));
    lines = calloc(rows, sizeof(*lines));
    types = gw_map_new(16);
    /* A string and its NUL take no more room than its field and the
     * delimiter after it (the last field of the file has none: the + 1). */
    if (!reg->devices || !lines || rows >= UINT32_MAX || id_table_init(&reg->device_by_id, rows) < 0 ||
        !types ||
        strings_map(&reg->device_strings, len + 1) < 0) {
        set_error(ret_error, path, 0, "out of memory");
        r = -ENOMEM;
        goto out;
    }

    r = csv_record(&c, fields, CSV_FIELDS_MAX, &n, &what);
    if (r <= 0 || n < CSV_FIELDS || n > CSV_FIELDS_MAX || strcmp(fields[0], "device_id") != 0 ||
        strcmp(fields[1], "type") != 0 || strcmp(fields[2], "grid_id") != 0 ||
        strcmp(fields[3], "lat") != 0 || strcmp(fields[4], "lon") != 0 ||
        strcmp(fields[5], "label") != 0 || (n == CSV_FIELDS_MAX && strcmp(fields[6], "heartbeat") != 0)) {
        set_error(ret_error, path, 1,
                  "bad header: expected \"" CSV_HEADER "\" or \"" CSV_HEADER ",heartbeat\"");
        r = -EINVAL;
        goto out;
    }
    n_columns = n;

    for (;;) {
        size_t line = c.line;
        struct gw_device *d = &reg->devices[reg->n_devices];
        const char *grid_id, *lat, *lon, *bad;
        const struct gw_device *dup;
        uint64_t *slot;

        release_text(c.p, &released);
        r = csv_record(&c, fields, CSV_FIELDS_MAX, &n, &what);
        if (r == 0)
            break;
        if (r < 0) {
            set_error(ret_error, path, line, "%s", what);
            goto out;
        }
        if (n == 1 && fields[0][0] == '\0')
            continue; /* blank line */
        if (n != n_columns) {
            set_error(ret_error, path, line, "expected %zu fields, found %zu", n_columns, n);
            r = -EINVAL;
            goto out;
        }
        d->id = fields[0];
        d->type = fields[1];
        grid_id = fields[2];
        lat = fields[3];
        lon = fields[4];
        d->label = fields[5];
        if (d->id[0] == '\0') {
            set_error(ret_error, path, line, "empty device_id");
            r = -EINVAL;
            goto out;
        }
        bad = bad_id_char(d->id);
        if (bad) {
            set_error(ret_error, path, line, "device_id \"%s\" contains %s", d->id, bad);
            r = -EINVAL;
            goto out;
        }
        if (d->type[0] == '\0') {
            set_error(ret_error, path, line, "device %s: empty type", d->id);
            r = -EINVAL;
            goto out;
        }
        if (has_control_char(d->type)) {
            set_error(ret_error, path, line, "device %s: type contains a control character", d->id);
            r = -EINVAL;
            goto out;
        }
        d->heartbeat_ns = 0;
        if (n_columns == CSV_FIELDS_MAX && fields[6][0] != '\0' &&
            (gw_duration_parse(fields[6], &d->heartbeat_ns) < 0 || d->heartbeat_ns <= 0)) {
            set_error(ret_error, path, line,
                      "device %s: bad heartbeat \"%s\" (a duration such as 90s, 15m, 12h)", d->id,
                      fields[6]);
            r = -EINVAL;
            goto out;
        }
        d->lat = d->lon = NAN;
        if ((lat[0] == '\0') != (lon[0] == '\0')) {
            set_error(ret_error, path, line, "device %s: give both lat and lon or neither", d->id);
            r = -EINVAL;
            goto out;
        }
        if (lat[0] != '\0') {
            if (parse_coordinate(lat, -90, 90, &d->lat) < 0) {
                set_error(ret_error, path, line, "device %s: bad lat \"%s\"", d->id, lat);
                r = -EINVAL;
                goto out;
            }
            if (parse_coordinate(lon, -180, 180, &d->lon) < 0) {
                set_error(ret_error, path, line, "device %s: bad lon \"%s\"", d->id, lon);
                r = -EINVAL;
                goto out;
            }
        }
        if (grid_id[0] != '\0') {
            /* An explicit grid wins over lat/lon, which are not checked
             * against it: a device may sit just outside its grid. */
            d->grid = gw_map_get(reg->grid_by_id, grid_id);
            if (!d->grid) {
                set_error(ret_error, path, line, "device %s: unknown grid_id \"%s\"", d->id,
                          grid_id);
                r = -EINVAL;
                goto out;
            }
        } else if (lat[0] == '\0') {
            set_error(ret_error, path, line, "device %s: neither grid_id nor lat/lon", d->id);
            r = -EINVAL;
            goto out;
        } else {
            d->grid = gw_registry_locate(reg, d->lon, d->lat);
            if (!d->grid) {
                set_error(ret_error, path, line, "device %s: lat %s, lon %s lies in no grid", d->id,
                          lat, lon);
                r = -EINVAL;
                goto out;
            }
        }
        slot = id_table_find(&reg->device_by_id, reg->devices, d->id);
        if (*slot) {
            dup = &reg->devices[(uint32_t)*slot - 1];
            set_error(ret_error, path, line, "duplicate device_id \"%s\", first at line %zu", d->id,
                      lines[dup - reg->devices]);
            r = -EEXIST;
            goto out;
        }
        /* Out of the text, which goes at the end. */
        d->id = strings_add(&reg->device_strings, d->id);
        d->label = strings_add(&reg->device_strings, d->label);
        d->type = intern_type(&reg->device_strings, types, d->type);
        if (!d->id || !d->label || !d->type) {
            set_error(ret_error, path, line, "out of memory");
            r = -ENOMEM;
            goto out;
        }
        *slot = (uint64_t)(uint32_t)gw_map_hash(d->id) << 32 | (uint64_t)(reg->n_devices + 1);
        lines[reg->n_devices++] = line;
    }
    strings_trim(&reg->device_strings);
    r = 0;
out:
    gw_map_free(types);
    free(lines);
    free(text);
    return r;
}

/* ---- registry ------------------------------------------------------------ */

static void grid_clear(struct gw_grid *g)
{
    free(g->id);
    free(g->name);
    free(g->community_id);
    free(g->community);
    free(g->street_id);
    free(g->street);
    for (size_t i = 0; i < GW_ROLE_COUNT; i++)
        free(g->roster[i]);
    for (size_t p = 0; p < g->n_polygons; p++) {
        for (size_t r = 0; r < g->polygons[p].n_rings; r++)
            free(g->polygons[p].rings[r].lonlat);
        free(g->polygons[p].rings);
    }
    free(g->polygons);
}

static void quarantine_free(struct gw_registry *reg)
{
    for (size_t i = 0; i < reg->n_quarantined; i++) {
        free(reg->quarantine_list[i]->id);
        free(reg->quarantine_list[i]);
    }
    free(reg->quarantine_list);
    gw_map_free(reg->quarantined);
    if (reg->quarantine_on)
        grid_clear(&reg->unassigned);
    pthread_mutex_destroy(&reg->quarantine_lock);
}

void gw_registry_free(struct gw_registry *reg)
{
    if (!reg)
        return;
    quarantine_free(reg);
    for (size_t i = 0; i < reg->n_grids; i++)
        grid_clear(&reg->grids[i]);
    free(reg->grids);
    free(reg->devices);
    strings_free(&reg->device_strings);
    gw_map_free(reg->grid_by_id);
    free(reg->device_by_id.slots);
    index_free(&reg->index);
    free(reg);
}

struct gw_registry *gw_registry_load(const char *grids_path, const char *devices_path,
                                     char **ret_error)
{
    struct gw_registry *reg;
    char *error = NULL;

    reg = calloc(1, sizeof(*reg));
    if (!reg) {
        set_error(&error, grids_path, 0, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&reg->quarantine_lock, NULL);
    if (load_grids(reg, grids_path, &error) < 0 || load_devices(reg, devices_path, &error) < 0)
        goto fail;
    return reg;
fail:
    gw_registry_free(reg);
    if (ret_error)
        *ret_error = error;
    else
        free(error);
    return NULL;
}

const struct gw_device *gw_registry_device(const struct gw_registry *reg, const char *device_id)
{
    struct gw_registry *mut = (struct gw_registry *)reg;
    const struct gw_device *d;

    if (!reg)
        return NULL;
    d = id_table_get(&reg->device_by_id, reg->devices, device_id);
    if (d || !__atomic_load_n(&reg->quarantine_on, __ATOMIC_ACQUIRE))
        return d;
    pthread_mutex_lock(&mut->quarantine_lock);
    d = gw_map_get(reg->quarantined, device_id);
    pthread_mutex_unlock(&mut->quarantine_lock);
    return d;
}

int gw_registry_enable_quarantine(struct gw_registry *reg, size_t max_devices)
{
    struct gw_grid *g = &reg->unassigned;

    if (reg->quarantine_on)
        return 0;
    reg->quarantined = gw_map_new(64);
    g->id = strdup(GW_UNASSIGNED_GRID);
    g->name = strdup("未分配设备");
    g->community_id = strdup(GW_UNASSIGNED_GRID);
    g->community = strdup("未分配");
    g->street_id = strdup(GW_UNASSIGNED_GRID);
    g->street = strdup("未分配");
    if (!reg->quarantined || !g->id || !g->name || !g->community_id || !g->community ||
        !g->street_id || !g->street) {
        grid_clear(g);
        memset(g, 0, sizeof(*g));
        gw_map_free(reg->quarantined);
        reg->quarantined = NULL;
        return -ENOMEM;
    }
    /* No roster and no polygon: nobody is dispatched to it and no point
     * lies in it; the district command centre sees it. */
    g->type = GW_GRID_RESIDENTIAL;
    g->level = GW_LEVEL_ROUTINE;
    reg->quarantine_max = max_devices;
    __atomic_store_n(&reg->quarantine_on, true, __ATOMIC_RELEASE);
    return 0;
}

const struct gw_device *gw_registry_quarantine(struct gw_registry *reg, const char *device_id)
{
    struct gw_device *d = NULL, **list;

    if (!reg || !__atomic_load_n(&reg->quarantine_on, __ATOMIC_ACQUIRE))
        return NULL;
    pthread_mutex_lock(&reg->quarantine_lock);
    d = gw_map_get(reg->quarantined, device_id);
    if (d || reg->n_quarantined >= reg->quarantine_max)
        goto out;
    list = realloc(reg->quarantine_list, (reg->n_quarantined + 1) * sizeof(*list));
    if (!list)
        goto out;
    reg->quarantine_list = list;
    d = calloc(1, sizeof(*d));
    if (!d)
        goto out;
    d->id = strdup(device_id);
    d->type = (char *)"unknown";
    d->grid = &reg->unassigned;
    d->lat = d->lon = NAN;
    d->label = (char *)"";
    d->quarantined = true;
    if (!d->id || gw_map_put(reg->quarantined, d->id, d) < 0) {
        free(d->id);
        free(d);
        d = NULL;
        goto out;
    }
    list[reg->n_quarantined++] = d;
out:
    pthread_mutex_unlock(&reg->quarantine_lock);
    return d;
}

size_t gw_registry_quarantined_count(const struct gw_registry *reg)
{
    struct gw_registry *mut = (struct gw_registry *)reg;
    size_t n;

    if (!reg)
        return 0;
    pthread_mutex_lock(&mut->quarantine_lock);
    n = reg->n_quarantined;
    pthread_mutex_unlock(&mut->quarantine_lock);
    return n;
}

/* The live fields are written through a cast: the registry hands out
 * const pointers so that nobody changes what was loaded, but these few
 * words are state by design, and only ever touched atomically. */
void gw_device_touch(const struct gw_device *device, int64_t now_ns)
{
    struct gw_device *d = (struct gw_device *)device;

    __atomic_store_n(&d->last_seen_ns, now_ns, __ATOMIC_RELAXED);
}

void gw_device_set_online(const struct gw_device *device, bool online, int64_t now_ns)
{
    struct gw_device *d = (struct gw_device *)device;
    uint8_t state = online ? GW_ONLINE_YES : GW_ONLINE_NO;

    if (__atomic_exchange_n(&d->online, state, __ATOMIC_RELAXED) != state)
        __atomic_store_n(&d->online_changed_ns, now_ns, __ATOMIC_RELAXED);
}

void gw_device_count_rejected(const struct gw_device *device)
{
    struct gw_device *d = (struct gw_device *)device;
    uint32_t n = __atomic_load_n(&d->rejected, __ATOMIC_RELAXED);

    /* 32 bits keep struct gw_device small; a count that high stays there
     * rather than wrap to a misleading small one. */
    while (n != UINT32_MAX && !__atomic_compare_exchange_n(&d->rejected, &n, n + 1, true,
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void gw_device_state(const struct gw_device *device, struct gw_device_state *ret)
{
    ret->rejected = __atomic_load_n(&device->rejected, __ATOMIC_RELAXED);
    ret->last_seen_ns = __atomic_load_n(&device->last_seen_ns, __ATOMIC_RELAXED);
    ret->online = (enum gw_device_online)__atomic_load_n(&device->online, __ATOMIC_RELAXED);
    ret->online_changed_ns = __atomic_load_n(&device->online_changed_ns, __ATOMIC_RELAXED);
}

const struct gw_grid *gw_registry_grid(const struct gw_registry *reg, const char *grid_id)
{
    return reg ? gw_map_get(reg->grid_by_id, grid_id) : NULL;
}

size_t gw_registry_grid_count(const struct gw_registry *reg) { return reg ? reg->n_grids : 0; }

size_t gw_registry_device_count(const struct gw_registry *reg) { return reg ? reg->n_devices : 0; }

const struct gw_grid *gw_registry_grid_at(const struct gw_registry *reg, size_t index)
{
    return reg && index < reg->n_grids ? &reg->grids[index] : NULL;
}

const struct gw_device *gw_registry_device_at(const struct gw_registry *reg, size_t index)
{
    return reg && index < reg->n_devices ? &reg->devices[index] : NULL;
}

long gw_registry_device_index(const struct gw_registry *reg, const struct gw_device *device)
{
    uintptr_t base, at = (uintptr_t)device;

    /* Compared as integers: C leaves comparing pointers into different
     * objects (a quarantined device, another registry's) undefined. */
    if (!reg || !reg->devices || !device)
        return -1;
    base = (uintptr_t)reg->devices;
    if (at < base || at >= base + reg->n_devices * sizeof(*device) ||
        (at - base) % sizeof(*device) != 0)
        return -1;
    return (long)((at - base) / sizeof(*device));
}
