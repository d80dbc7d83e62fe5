#include "sim_district.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_array.h"
#include "gw_buf.h"
#include "gw_domain.h"

/* Coordinates are integers in units of 1e-7 degree (about 1 cm) and are
 * printed exactly, so two grids that share an edge print the same digits,
 * the tiling has no gaps once read back, and a device placed strictly
 * inside a grid stays strictly inside. */
#define UNITS_PER_DEGREE 10000000LL

struct street {
    const char *name; /* without 街道 */
    unsigned communities;
    unsigned grids;
};

/* DOMAIN-NOTES section 2: codes 110101001..110101017 in this order. */
static const struct street streets[SIM_DISTRICT_STREETS] = {
    { "东华门", 19, 54 },   { "景山", 10, 29 },   { "交道口", 10, 29 },   { "安定门", 10, 29 },
    { "北新桥", 12, 34 },   { "东四", 10, 29 },   { "朝阳门", 9, 26 },    { "建国门", 13, 37 },
    { "东直门", 11, 32 },   { "和平里", 18, 52 }, { "前门", 9, 26 },      { "崇文门外", 9, 26 },
    { "东花市", 11, 31 },   { "龙潭", 14, 40 },   { "体育馆路", 10, 29 }, { "天坛", 16, 46 },
    { "永定门外", 14, 40 },
};

#define DISTRICT_CODE "110101"

struct rect {
    int64_t x0, y0, x1, y1; /* lon, lat in units; x0 < x1, y0 < y1 */
};

struct grid {
    struct rect r;
    unsigned street;    /* index into streets */
    unsigned community; /* 1-based within the street */
    unsigned seq;       /* 1-based within the community */
    enum gw_grid_type type;
    enum gw_grid_level level;
    char roster[GW_ROLE_COUNT][16];
};

/* ---- randomness ---------------------------------------------------------- */

/* splitmix64: small, fast, and good enough for synthetic data. Every street
 * and the device fleet draw from their own stream, so the first K streets
 * come out the same whatever K is. */
struct prng {
    uint64_t s;
};

static uint64_t next(struct prng *p)
{
    uint64_t z = (p->s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static struct prng stream(uint64_t seed, uint64_t purpose, uint64_t index)
{
    struct prng p = { seed ^ (purpose * 0xd1b54a32d192ed03ULL) ^ (index * 0x8cb92ba72f3d8dd7ULL) };

    next(&p);
    return p;
}

/* Uniform in [0, n), n > 0. */
static uint64_t below(struct prng *p, uint64_t n) { return next(p) % n; }

/* An index drawn by integer weights (per mille tables below). */
static unsigned pick(struct prng *p, const unsigned *weights, unsigned n)
{
    unsigned total = 0, r;

    for (unsigned i = 0; i < n; i++)
        total += weights[i];
    r = (unsigned)below(p, total);
    for (unsigned i = 0; i < n; i++) {
        if (r < weights[i])
            return i;
        r -= weights[i];
    }
    return n - 1;
}

/* ---- the district ---------------------------------------------------------- */

/* Grid types, in enum gw_grid_type order: mostly residential. */
static const unsigned type_weights[GW_GRID_TYPE_COUNT] = { 650, 150, 100, 100 };
/* Levels per grid type, in enum gw_grid_level order. */
static const unsigned level_weights[GW_GRID_TYPE_COUNT][GW_GRID_LEVEL_COUNT] = {
    [GW_GRID_RESIDENTIAL] = { 500, 350, 120, 30 },
    [GW_GRID_COMMERCIAL] = { 450, 400, 120, 30 },
    [GW_GRID_INSTITUTION] = { 550, 350, 80, 20 },
    [GW_GRID_CROWDED] = { 200, 400, 300, 100 },
};

static const char *const surnames[] = {
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱",
    "高", "林", "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于",
    "董", "程", "曹", "袁", "邓", "许", "傅", "沈", "曾", "彭", "吕", "苏",
};
static const char *const given[] = {
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "霞", "平", "刚", "英", "华", "玉", "兰", "红", "建", "国", "志",
    "海", "文", "晨", "阳", "雪", "梅", "琳", "鹏", "宇", "浩", "博", "思", "佳", "欣",
};


static void person(struct prng *p, char *out, size_t size)
{
    const char *s = surnames[below(p, ARRAY_SIZE(surnames))];
    const char *g1 = given[below(p, ARRAY_SIZE(given))];
    const char *g2 = below(p, 3) == 0 ? "" : given[below(p, ARRAY_SIZE(given))];

    snprintf(out, size, "%s%s%s", s, g1, g2);
}

/* Tiles area with n rectangles whose areas follow weights: near-square
 * rows from north to south, items west to east, row heights and widths
 * proportional to weight. Each boundary is computed once and shared by the
 * rectangles on both sides of it, and the last one is the area's own edge,
 * so the tiles cover area exactly. */
static void tile(struct rect area, const unsigned *weights, size_t n, struct rect *out)
{
    /* A degree of longitude is about 0.767 of a degree of latitude at 39.9N. */
    double w = (double)(area.x1 - area.x0) * 0.767, h = (double)(area.y1 - area.y0);
    size_t rows = (size_t)lround(sqrt((double)n * h / w));
    uint64_t total = 0, done = 0;
    int64_t top = area.y1;

    rows = rows < 1 ? 1 : rows > n ? n : rows;
    for (size_t i = 0; i < n; i++)
        total += weights[i];
    for (size_t row = 0; row < rows; row++) {
        size_t first = row * n / rows, last = (row + 1) * n / rows;
        uint64_t row_total = 0, row_done = 0;
        int64_t bottom, left = area.x0;

        for (size_t i = first; i < last; i++)
            row_total += weights[i];
        done += row_total;
        bottom = row + 1 == rows
                     ? area.y0
                     : area.y1 - (int64_t)((uint64_t)(area.y1 - area.y0) * done / total);
        for (size_t i = first; i < last; i++) {
            int64_t right;

            row_done += weights[i];
            right = i + 1 == last
                        ? area.x1
                        : area.x0 + (int64_t)((uint64_t)(area.x1 - area.x0) * row_done / row_total);
            out[i] = (struct rect){ left, bottom, right, top };
            left = right;
        }
        top = bottom;
    }
}

struct district {
    struct grid *grids;
    size_t n_grids;
    size_t n_communities;
};

static int district_build(struct district *d, uint64_t seed, unsigned n_streets)
{
    const struct rect box = {
        (int64_t)llround(SIM_DISTRICT_MIN_LON * UNITS_PER_DEGREE),
        (int64_t)llround(SIM_DISTRICT_MIN_LAT * UNITS_PER_DEGREE),
        (int64_t)llround(SIM_DISTRICT_MAX_LON * UNITS_PER_DEGREE),
        (int64_t)llround(SIM_DISTRICT_MAX_LAT * UNITS_PER_DEGREE),
    };
    unsigned street_weights[SIM_DISTRICT_STREETS];
    struct rect street_rects[SIM_DISTRICT_STREETS];
    unsigned community_grids[32], order[32], ones[64];
    struct rect community_rects[32], grid_rects[64];
    size_t total = 0;

    /* Always tile with all 17 streets, then keep the first ones: a sample
     * is a corner of the full district, not a different district. */
    for (unsigned s = 0; s < SIM_DISTRICT_STREETS; s++) {
        street_weights[s] = streets[s].grids;
        if (s < n_streets)
            total += streets[s].grids;
    }
    tile(box, street_weights, SIM_DISTRICT_STREETS, street_rects);
    d->grids = calloc(total, sizeof(*d->grids));
    if (!d->grids)
        return -ENOMEM;
    for (size_t i = 0; i < ARRAY_SIZE(ones); i++)
        ones[i] = 1;

    for (unsigned s = 0; s < n_streets; s++) {
        const struct street *st = &streets[s];
        struct prng p = stream(seed, 1, s);

        /* The fixed arrays fit the street table; keep it that way. */
        if (st->communities > ARRAY_SIZE(community_grids) ||
            st->grids / st->communities + 1 > ARRAY_SIZE(grid_rects))
            return -EINVAL;
        /* Grids per community: as even as can be, the spare ones spread at
         * random. */
        for (unsigned c = 0; c < st->communities; c++) {
            community_grids[c] = st->grids / st->communities;
            order[c] = c;
        }
        for (unsigned c = st->communities - 1; c > 0; c--) {
            unsigned j = (unsigned)below(&p, c + 1), t = order[c];

            order[c] = order[j];
            order[j] = t;
        }
        for (unsigned k = 0; k < st->grids % st->communities; k++)
            community_grids[order[k]]++;
        tile(street_rects[s], community_grids, st->communities, community_rects);

        for (unsigned c = 0; c < st->communities; c++) {
            tile(community_rects[c], ones, community_grids[c], grid_rects);
            for (unsigned k = 0; k < community_grids[c]; k++) {
                struct grid *g = &d->grids[d->n_grids++];

                g->r = grid_rects[k];
                g->street = s;
                g->community = c + 1;
                g->seq = k + 1;
                g->type = (enum gw_grid_type)pick(&p, type_weights, GW_GRID_TYPE_COUNT);
                g->level =
                    (enum gw_grid_level)pick(&p, level_weights[g->type], GW_GRID_LEVEL_COUNT);
                for (unsigned role = 0; role < GW_ROLE_COUNT; role++)
                    person(&p, g->roster[role], sizeof(g->roster[role]));
            }
            d->n_communities++;
        }
    }
    /* The first grid is a plain residential one, so the first smoke
     * detector (smoke-000001, which tests and demos use) always lives in a
     * residential grid. */
    d->grids[0].type = GW_GRID_RESIDENTIAL;
    d->grids[0].level = GW_LEVEL_ROUTINE;
    return 0;
}

/* ---- output ------------------------------------------------------------- */

static void put_coord(FILE *f, int64_t v)
{
    uint64_t a = v < 0 ? (uint64_t)(-v) : (uint64_t)v;

    fprintf(f, "%s%" PRIu64 ".%07" PRIu64, v < 0 ? "-" : "", a / (uint64_t)UNITS_PER_DEGREE,
            a % (uint64_t)UNITS_PER_DEGREE);
}

/* Our strings are plain UTF-8 text; escape what JSON requires anyway. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void put_csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void grid_id(const struct grid *g, char *out, size_t size)
{
    snprintf(out, size, DISTRICT_CODE "%03u%03u%03u", g->street + 1, g->community, g->seq);
}

static void community_name(const struct grid *g, char *out, size_t size)
{
    snprintf(out, size, "%s第%u社区", streets[g->street].name, g->community);
}

static void write_grids(FILE *f, const struct district *d)
{
    fputs("{\"type\": \"FeatureCollection\", \"features\": [\n", f);
    for (size_t i = 0; i < d->n_grids; i++) {
        const struct grid *g = &d->grids[i];
        const struct rect *r = &g->r;
        const int64_t ring[5][2] = {
            { r->x0, r->y0 }, { r->x1, r->y0 }, { r->x1, r->y1 },
            { r->x0, r->y1 }, { r->x0, r->y0 },
        };
        char id[32], community[64], name[128], street[32];

        grid_id(g, id, sizeof(id));
        community_name(g, community, sizeof(community));
        snprintf(street, sizeof(street), "%s街道", streets[g->street].name);
        snprintf(name, sizeof(name), "%s %s 第%u网格", street, community, g->seq);

        fputs("{\"type\": \"Feature\", \"properties\": {\"grid_id\": ", f);
        put_json_string(f, id);
        fputs(", \"name\": ", f);
        put_json_string(f, name);
        fprintf(f, ", \"community_id\": \"%.12s\", \"community\": ", id);
        put_json_string(f, community);
        fprintf(f, ", \"street_id\": \"%.9s\", \"street\": ", id);
        put_json_string(f, street);
        fprintf(f, ", \"type\": \"%s\", \"level\": \"%s\", \"roster\": {",
                gw_grid_type_name(g->type), gw_grid_level_name(g->level));
        for (unsigned role = 0; role < GW_ROLE_COUNT; role++) {
            fprintf(f, "%s\"%s\": ", role ? ", " : "", gw_role_name((enum gw_role)role));
            put_json_string(f, g->roster[role]);
        }
        fputs("}}, \"geometry\": {\"type\": \"Polygon\", \"coordinates\": [[", f);
        /* Counter-clockwise outer ring, as RFC 7946 asks. */
        for (size_t k = 0; k < 5; k++) {
            fputs(k ? ", [" : "[", f);
            put_coord(f, ring[k][0]);
            fputs(", ", f);
            put_coord(f, ring[k][1]);
            fputc(']', f);
        }
        fprintf(f, "]]}}%s\n", i + 1 < d->n_grids ? "," : "");
    }
    fputs("]}\n", f);
}

enum dev_type { DEV_SMOKE, DEV_CAMERA, DEV_GAS, DEV_DOOR, DEV_WATER, DEV_TEMPERATURE, DEV_COUNT };

struct dev_kind {
    const char *name;
    unsigned per_mille;                  /* share of all devices; smoke takes the rest */
    unsigned weight[GW_GRID_TYPE_COUNT]; /* how a grid of each type attracts it */
    const char *label;
};

/* DOMAIN-NOTES section 6: about 350k smoke detectors, 10k cameras and 50k
 * other sensors for the district. Weights in enum gw_grid_type order
 * (residential, commercial, institution, crowded). */
static const struct dev_kind kinds[DEV_COUNT] = {
    [DEV_SMOKE] = { "smoke", 0, { 10, 3, 3, 3 }, "烟感探测器" },
    [DEV_CAMERA] = { "camera", 30, { 1, 5, 3, 8 }, "摄像机" },
    [DEV_GAS] = { "gas", 50, { 6, 4, 2, 3 }, "燃气报警器" },
    [DEV_DOOR] = { "door", 40, { 3, 4, 5, 3 }, "门磁" },
    [DEV_WATER] = { "water", 30, { 2, 3, 4, 3 }, "水浸传感器" },
    [DEV_TEMPERATURE] = { "temperature", 20, { 2, 4, 4, 3 }, "温度传感器" },
};

static const char *const camera_spots[] = {
    "北门", "南门", "东口", "西口", "主路口", "广场", "停车场", "胡同口",
};
static const char *const directions[] = { "朝东", "朝南", "朝西", "朝北" };

/* How many devices of each kind each grid holds: every kind's total is
 * shared out by the grids' weights (times a random factor) with
 * cumulative rounding, which hits the total exactly. counts has
 * n_grids * DEV_COUNT entries. */
static int share_devices(const struct district *d, size_t n_devices, struct prng *p, size_t *counts)
{
    size_t totals[DEV_COUNT], rest = n_devices;
    uint64_t *weights = malloc(d->n_grids * sizeof(*weights));

    if (!weights)
        return -ENOMEM;
    for (unsigned k = 1; k < DEV_COUNT; k++) {
        totals[k] = n_devices * kinds[k].per_mille / 1000;
        rest -= totals[k];
    }
    totals[DEV_SMOKE] = rest;
    for (unsigned k = 0; k < DEV_COUNT; k++) {
        uint64_t sum = 0, cum = 0;
        size_t given_out = 0, total = totals[k];

        /* smoke-000001 goes to the first grid, which is residential. */
        if (k == DEV_SMOKE && total > 0) {
            counts[DEV_SMOKE] = 1;
            total--;
        }
        for (size_t g = 0; g < d->n_grids; g++) {
            weights[g] = kinds[k].weight[d->grids[g].type] * (50 + below(p, 100));
            sum += weights[g];
        }
        for (size_t g = 0; g < d->n_grids; g++) {
            size_t upto;

            cum += weights[g];
            upto = (size_t)((total * cum + sum / 2) / sum);
            counts[g * DEV_COUNT + k] += upto - given_out;
            given_out = upto;
        }
    }
    free(weights);
    return 0;
}

static int write_devices(FILE *f, const struct district *d, const size_t *counts, struct prng *p,
                         struct sim_district_counts *stats)
{
    size_t serial[DEV_COUNT] = { 0 };
    struct gw_buf label = GW_BUF_INIT;
    int r = 0;

    fputs("device_id,type,grid_id,lat,lon,label\n", f);
    for (size_t gi = 0; gi < d->n_grids; gi++) {
        const struct grid *g = &d->grids[gi];
        char id[32], community[64];

        grid_id(g, id, sizeof(id));
        community_name(g, community, sizeof(community));
        for (unsigned k = 0; k < DEV_COUNT; k++) {
            for (size_t n = 0; n < counts[gi * DEV_COUNT + k]; n++) {
                const struct dev_kind *kind = &kinds[k];
                unsigned place = (unsigned)below(p, 100);
                bool first = serial[k] == 0;
                /* About 30% carry only lat/lon, 35% grid_id and lat/lon,
                 * 35% only grid_id; the first of each kind has a grid_id. */
                bool with_grid = first || place >= 30;
                bool with_coords = !with_grid || place < 65;
                unsigned building = 1 + (unsigned)below(p, 40);
                /* Drawn one by one: the order in which function arguments
                 * are evaluated is unspecified, the bytes must not be. */
                unsigned unit = 1 + (unsigned)below(p, 6), storey = 1 + (unsigned)below(p, 6);
                unsigned room = 1 + (unsigned)below(p, 4);
                const char *spot = camera_spots[below(p, ARRAY_SIZE(camera_spots))];
                const char *facing = directions[below(p, ARRAY_SIZE(directions))];

                serial[k]++;
                gw_buf_reset(&label);
                if (k == DEV_CAMERA)
                    r = gw_buf_printf(&label, "%s 第%u网格 %s \"%s\", %s", community, g->seq,
                                      kind->label, spot, facing);
                else if (k == DEV_SMOKE && g->type == GW_GRID_RESIDENTIAL)
                    r = gw_buf_printf(&label, "%s %u号楼%u单元%u%02u %s", community, building, unit,
                                      storey, room, kind->label);
                else
                    r = gw_buf_printf(&label, "%s %u号楼 %s", community, building, kind->label);
                if (r < 0)
                    goto out;

                fprintf(f, "%s-%06zu,%s,%s,", kind->name, serial[k], kind->name,
                        with_grid ? id : "");
                if (with_coords) {
                    /* Strictly inside: never on an edge another grid shares. */
                    int64_t x = g->r.x0 + 1 + (int64_t)below(p, (uint64_t)(g->r.x1 - g->r.x0 - 1));
                    int64_t y = g->r.y0 + 1 + (int64_t)below(p, (uint64_t)(g->r.y1 - g->r.y0 - 1));

                    put_coord(f, y);
                    fputc(',', f);
                    put_coord(f, x);
                }
                if (!with_coords)
                    fputc(',', f);
                fputc(',', f);
                put_csv_field(f, label.data);
                fputc('\n', f);
                stats->devices++;
                if (!with_grid)
                    stats->located++;
            }
        }
    }
out:
    gw_buf_free(&label);
    return r;
}

/* mkdir -p */
static int make_dirs(const char *dir)
{
    char *path = strdup(dir);
    int r = 0;

    if (!path)
        return -ENOMEM;
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;

            *p = '\0';
            if (mkdir(path, 0777) < 0 && errno != EEXIST) {
                r = -errno;
                break;
            }
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    if (r == 0) {
        struct stat st;

        if (stat(dir, &st) < 0)
            r = -errno;
        else if (!S_ISDIR(st.st_mode))
            r = -ENOTDIR;
    }
    free(path);
    return r;
}

typedef int (*writer_fn)(FILE *f, void *ctx);

struct devices_ctx {
    const struct district *d;
    const size_t *counts;
    struct prng *p;
    struct sim_district_counts *stats;
};

static int grids_writer(FILE *f, void *ctx)
{
    write_grids(f, ctx);
    return 0;
}

static int devices_writer(FILE *f, void *ctx)
{
    struct devices_ctx *c = ctx;

    return write_devices(f, c->d, c->counts, c->p, c->stats);
}

/* Writes dir/name through dir/.name.tmp and a rename. */
static int write_file(const char *dir, const char *name, writer_fn fn, void *ctx)
{
    struct gw_buf tmp = GW_BUF_INIT, final = GW_BUF_INIT;
    FILE *f = NULL;
    int r = 0;

    if (gw_buf_printf(&tmp, "%s/.%s.tmp", dir, name) < 0 ||
        gw_buf_printf(&final, "%s/%s", dir, name) < 0) {
        r = -ENOMEM;
        goto out;
    }
    f = fopen(tmp.data, "we");
    if (!f) {
        r = -errno;
        goto out;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    r = fn(f, ctx);
    if (r < 0 || ferror(f)) {
        r = r < 0 ? r : -EIO;
        fclose(f);
    } else if (fclose(f) != 0) {
        r = -errno;
    }
    f = NULL;
    if (r == 0 && rename(tmp.data, final.data) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp.data);
out:
    gw_buf_free(&tmp);
    gw_buf_free(&final);
    return r;
}

int sim_district_write(const struct sim_district_options *opts, const char *dir,
                       struct sim_district_counts *ret_counts)
{
    struct district d = { 0 };
    struct sim_district_counts stats = { 0 };
    struct prng devices_rng = stream(opts->seed, 2, 0);
    size_t *counts = NULL;
    struct devices_ctx ctx;
    int r;

    if (!dir || !*dir || opts->streets < 1 || opts->streets > SIM_DISTRICT_STREETS ||
        opts->devices > SIM_DISTRICT_MAX_DEVICES)
        return -EINVAL;
    r = make_dirs(dir);
    if (r < 0)
        return r;
    r = district_build(&d, opts->seed, opts->streets);
    if (r < 0)
        goto out;
    counts = calloc(d.n_grids * DEV_COUNT, sizeof(*counts));
    if (!counts) {
        r = -ENOMEM;
        goto out;
    }
    r = share_devices(&d, opts->devices, &devices_rng, counts);
    if (r < 0)
        goto out;
    r = write_file(dir, "grids.geojson", grids_writer, &d);
    if (r < 0)
        goto out;
    ctx = (struct devices_ctx){ &d, counts, &devices_rng, &stats };
    r = write_file(dir, "devices.csv", devices_writer, &ctx);
    if (r < 0)
        goto out;
    stats.streets = opts->streets;
    stats.communities = d.n_communities;
    stats.grids = d.n_grids;
    if (ret_counts)
        *ret_counts = stats;
out:
    free(counts);
    free(d.grids);
    return r;
}

/* ---- command line ------------------------------------------------------- */

/* What the command line sets; defaults from SIM_DISTRICT_OPTIONS_INIT. */
struct cli {
    const char *out;
    uint64_t seed;
    uint64_t streets;
    uint64_t devices;
};

/* Each option once: parsing, range checks, messages and --help come from
 * this table. */
static const struct cli_option {
    const char *name;
    const char *value; /* placeholder shown in help */
    size_t offset;     /* in struct cli */
    bool number;       /* a uint64_t in [min, max], else a non-empty string */
    uint64_t min, max;
    const char *help;
} cli_options[] = {
    { "--out", "DIR", offsetof(struct cli, out), false, 0, 0,
      "directory to write, created if missing (required)" },
    { "--seed", "N", offsetof(struct cli, seed), true, 0, UINT64_MAX, "random seed" },
    { "--streets", "K", offsetof(struct cli, streets), true, 1, SIM_DISTRICT_STREETS,
      "keep only the first K streets" },
    { "--devices", "N", offsetof(struct cli, devices), true, 0, SIM_DISTRICT_MAX_DEVICES,
      "number of devices" },
};

#define USAGE "usage: gridsim district --out DIR [--seed N] [--streets K] [--devices N]\n"

static void usage(FILE *f, const struct cli *defaults)
{
    fprintf(f,
            USAGE "\n"
                  "Writes DIR/grids.geojson and DIR/devices.csv: a synthetic Dongcheng district\n"
                  "(17 streets, 205 communities, 589 grids tiling [%.2f, %.2f, %.2f, %.2f])\n"
                  "and its devices. The same options always give the same bytes.\n\n",
            SIM_DISTRICT_MIN_LON, SIM_DISTRICT_MIN_LAT, SIM_DISTRICT_MAX_LON, SIM_DISTRICT_MAX_LAT);
    for (size_t i = 0; i < ARRAY_SIZE(cli_options); i++) {
        const struct cli_option *o = &cli_options[i];
        char left[32];

        snprintf(left, sizeof(left), "%s %s", o->name, o->value);
        fprintf(f, "  %-14s %s", left, o->help);
        if (o->number)
            fprintf(f, ", %" PRIu64 "-%" PRIu64 " (default %" PRIu64 ")", o->min, o->max,
                    *(const uint64_t *)(const void *)((const char *)defaults + o->offset));
        fputc('\n', f);
    }
    fputs("  -h, --help     show this help\n", f);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

int sim_district_main(int argc, char **argv)
{
    const struct sim_district_options init = SIM_DISTRICT_OPTIONS_INIT;
    const struct cli defaults = { NULL, init.seed, init.streets, init.devices };
    struct cli cli = defaults;
    struct sim_district_options opts;
    struct sim_district_counts counts;
    int r;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value;
        size_t len = strcspn(arg, "=");
        const struct cli_option *o = NULL;
        char *field;

        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout, &defaults);
            return 0;
        }
        for (size_t k = 0; k < ARRAY_SIZE(cli_options); k++)
            if (strlen(cli_options[k].name) == len && memcmp(arg, cli_options[k].name, len) == 0)
                o = &cli_options[k];
        if (!o) {
            fprintf(stderr, "gridsim district: unknown argument \"%s\"\n" USAGE, arg);
            return 2;
        }
        /* --name VALUE or --name=VALUE */
        value = arg[len] == '=' ? arg + len + 1 : i + 1 < argc ? argv[++i] : NULL;
        field = (char *)&cli + o->offset;
        if (o->number ? parse_u64(value, o->min, o->max, (uint64_t *)(void *)field) < 0
                      : !value || !*value) {
            fprintf(stderr, "gridsim district: %s wants %s", o->name, o->value);
            if (o->number)
                fprintf(stderr, " in %" PRIu64 "-%" PRIu64, o->min, o->max);
            fprintf(stderr, ", not \"%s\"\n" USAGE, value ? value : "");
            return 2;
        }
        if (!o->number)
            memcpy(field, &value, sizeof(value));
    }
    if (!cli.out) {
        fprintf(stderr, "gridsim district: --out DIR is required\n" USAGE);
        return 2;
    }
    opts = (struct sim_district_options){ cli.seed, (unsigned)cli.streets, (size_t)cli.devices };
    r = sim_district_write(&opts, cli.out, &counts);
    if (r < 0) {
        fprintf(stderr, "gridsim district: cannot write %s: %s\n", cli.out, strerror(-r));
        return 1;
    }
    printf("wrote %s/grids.geojson (%zu streets, %zu communities, %zu grids) and "
           "%s/devices.csv (%zu devices, %zu located by lat/lon only)\n",
           cli.out, counts.streets, counts.communities, counts.grids, cli.out, counts.devices,
           counts.located);
    return 0;
}
