/* gw_registry against handwritten districts in a temporary directory, the
 * shipped sample district, and districts made by the generator
 * (sim_district). */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_buf.h"
#include "gw_domain.h"
#include "gw_registry.h"
#include "sim_district.h"

static char tmpdir[] = "/tmp/test_registry.XXXXXX";

static char *path_in(const char *name)
{
    struct gw_buf b = GW_BUF_INIT;

    assert_int_equal(gw_buf_printf(&b, "%s/%s", tmpdir, name), 0);
    return b.data;
}

static void write_text(const char *name, const char *text)
{
    char *path = path_in(name);
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    free(path);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct gw_buf b = GW_BUF_INIT;
    char chunk[65536];
    size_t n;

    assert_non_null(f);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(gw_buf_append(&b, chunk, n), 0);
    fclose(f);
    if (!b.data)
        assert_int_equal(gw_buf_puts(&b, ""), 0);
    return b.data;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Loads grids.geojson and devices.csv from tmpdir; *ret_error as the
 * registry gives it. */
static struct gw_registry *load_tmp(char **ret_error)
{
    char *grids = path_in("grids.geojson"), *devices = path_in("devices.csv");
    struct gw_registry *reg;

    *ret_error = NULL;
    reg = gw_registry_load(grids, devices, ret_error);
    free(grids);
    free(devices);
    return reg;
}

/* ---- a tiny handwritten district ------------------------------------------ */

#define FEATURE(id, community_id, street_id, type, level, roster, geometry)                        \
    "{\"type\": \"Feature\", \"properties\": {\"grid_id\": \"" id "\", \"name\": \"Grid " id       \
    "\", \"community_id\": \"" community_id "\", \"community\": \"Community " community_id         \
    "\", \"street_id\": \"" street_id "\", \"street\": \"Street " street_id                        \
    "\", \"type\": \"" type "\", \"level\": \"" level "\", \"roster\": " roster                    \
    "}, \"geometry\": " geometry "}"

#define SQUARE(x0, y0, x1, y1)                                                                     \
    "[[" #x0 ", " #y0 "], [" #x1 ", " #y0 "], [" #x1 ", " #y1 "], [" #x0 ", " #y1 "], [" #x0       \
    ", " #y0 "]]"

/* A: 0..10 square with a 4..6 hole. B: a MultiPolygon, one square inside
 * A's hole and one at 20..30. C: 10..20, sharing A's east edge. One feature
 * per line: feature i is on line i + 2; a fourth feature goes on line 5. */
#define POLYGON(rings) "{\"type\": \"Polygon\", \"coordinates\": [" rings "]}"
#define MULTIPOLYGON(polygons) "{\"type\": \"MultiPolygon\", \"coordinates\": [" polygons "]}"

#define GRID_A                                                                                     \
    FEATURE("G-A", "C1", "S1", "residential", "routine",                                           \
            "{\"manager\": \"Wang Fang\", \"police\": \"Li Qiang\"}",                              \
            POLYGON(SQUARE(0, 0, 10, 10) ", " SQUARE(4, 4, 6, 6)))
#define GRID_B                                                                                     \
    FEATURE("G-B", "C1", "S1", "crowded", "attention", "{}",                                       \
            MULTIPOLYGON("[" SQUARE(4.5, 4.5, 5.5, 5.5) "], [" SQUARE(20, 0, 30, 10) "]"))
#define GRID_C                                                                                     \
    FEATURE("G-C", "C2", "S1", "commercial", "prevention", "{\"party_secretary\": \"Zhao Min\"}",  \
            POLYGON(SQUARE(10, 0, 20, 10)))

#define GRIDS_HEAD "{\"type\": \"FeatureCollection\", \"features\": [\n"
#define GRIDS_BASE GRIDS_HEAD GRID_A ",\n" GRID_B ",\n" GRID_C
#define GRIDS_TAIL "\n]}\n"
#define GRIDS GRIDS_BASE GRIDS_TAIL

#define DEVICES_HEAD "device_id,type,grid_id,lat,lon,label\n"
#define DEVICES                                                                                    \
    DEVICES_HEAD                                                                                   \
    "smoke-1,smoke,G-A,,,plain label\n"                                                            \
    "cam-1,camera,,5,5,\"Gate \"\"North\"\", east\"\n"                                             \
    "door-1,door,,2,2,\"two\n"                                                                     \
    "lines\"\n"                                                                                    \
    "\n"                                                                                           \
    "gas-1,gas,G-C,1.5,12.5,\n"                                                                    \
    "water-1,water,,5,25,far square\n"                                                             \
    "temp-1,temperature,,5,10,on the A|C edge\n"

static void loads_and_looks_up(void **state)
{
    struct gw_registry *reg;
    const struct gw_device *d;
    const struct gw_grid *a, *b, *c;
    char *error;

    (void)state;
    write_text("grids.geojson", GRIDS);
    write_text("devices.csv", DEVICES);
    reg = load_tmp(&error);
    assert_null(error);
    assert_non_null(reg);

    assert_int_equal(gw_registry_grid_count(reg), 3);
    assert_int_equal(gw_registry_device_count(reg), 6);
    a = gw_registry_grid(reg, "G-A");
    b = gw_registry_grid(reg, "G-B");
    c = gw_registry_grid(reg, "G-C");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_equal(gw_registry_grid_at(reg, 0), a);
    assert_ptr_equal(gw_registry_grid_at(reg, 2), c);
    assert_null(gw_registry_grid_at(reg, 3));
    assert_null(gw_registry_grid(reg, "G-Z"));
    assert_null(gw_registry_grid(reg, NULL));

    assert_string_equal(a->name, "Grid G-A");
    assert_string_equal(a->community_id, "C1");
    assert_string_equal(a->community, "Community C1");
    assert_string_equal(a->street_id, "S1");
    assert_string_equal(a->street, "Street S1");
    assert_int_equal(a->type, GW_GRID_RESIDENTIAL);
    assert_int_equal(a->level, GW_LEVEL_ROUTINE);
    assert_string_equal(a->roster[GW_ROLE_MANAGER], "Wang Fang");
    assert_string_equal(a->roster[GW_ROLE_POLICE], "Li Qiang");
    assert_null(a->roster[GW_ROLE_FIREFIGHTER]);
    assert_int_equal(a->n_polygons, 1);
    assert_int_equal(a->polygons[0].n_rings, 2);
    assert_int_equal(a->polygons[0].rings[1].n_points, 5);
    assert_true(a->min_lon == 0 && a->max_lon == 10 && a->min_lat == 0 && a->max_lat == 10);
    assert_int_equal(b->type, GW_GRID_CROWDED);
    assert_int_equal(b->level, GW_LEVEL_ATTENTION);
    assert_int_equal(b->n_polygons, 2);
    assert_true(b->min_lon == 4.5 && b->max_lon == 30);
    assert_int_equal(c->type, GW_GRID_COMMERCIAL);
    assert_string_equal(c->roster[GW_ROLE_PARTY_SECRETARY], "Zhao Min");

    d = gw_registry_device(reg, "smoke-1");
    assert_non_null(d);
    assert_string_equal(d->id, "smoke-1");
    assert_string_equal(d->type, "smoke");
    assert_ptr_equal(d->grid, a);
    assert_true(isnan(d->lat) && isnan(d->lon));
    assert_string_equal(d->label, "plain label");

    /* CSV quoting, and lat/lon in A's hole -> B's first polygon. */
    d = gw_registry_device(reg, "cam-1");
    assert_non_null(d);
    assert_string_equal(d->label, "Gate \"North\", east");
    assert_ptr_equal(d->grid, b);
    assert_true(d->lat == 5 && d->lon == 5);

    d = gw_registry_device(reg, "door-1");
    assert_non_null(d);
    assert_string_equal(d->label, "two\nlines");
    assert_ptr_equal(d->grid, a);

    /* grid_id wins over lat/lon, which are kept. */
    d = gw_registry_device(reg, "gas-1");
    assert_ptr_equal(d->grid, c);
    assert_true(d->lat == 1.5 && d->lon == 12.5);
    assert_string_equal(d->label, "");

    assert_ptr_equal(gw_registry_device(reg, "water-1")->grid, b);
    assert_ptr_equal(gw_registry_device(reg, "temp-1")->grid, c);
    assert_null(gw_registry_device(reg, "nope"));
    assert_null(gw_registry_device(reg, NULL));

    gw_registry_free(reg);
}

static void locates_points(void **state)
{
    struct gw_registry *reg;
    const struct gw_grid *a, *b, *c;
    char *error;

    (void)state;
    write_text("grids.geojson", GRIDS);
    write_text("devices.csv", DEVICES_HEAD);
    reg = load_tmp(&error);
    assert_null(error);
    assert_non_null(reg);
    assert_int_equal(gw_registry_device_count(reg), 0);
    a = gw_registry_grid(reg, "G-A");
    b = gw_registry_grid(reg, "G-B");
    c = gw_registry_grid(reg, "G-C");

    assert_ptr_equal(gw_registry_locate(reg, 2, 2), a);
    assert_ptr_equal(gw_registry_locate(reg, 9.999, 9.999), a);
    /* In A's hole but not in B's square inside it: nowhere. */
    assert_null(gw_registry_locate(reg, 4.2, 4.2));
    assert_null(gw_registry_locate(reg, 5.8, 5.0));
    /* In B's square inside the hole, and in B's far square. */
    assert_ptr_equal(gw_registry_locate(reg, 5, 5), b);
    assert_ptr_equal(gw_registry_locate(reg, 25, 5), b);
    assert_ptr_equal(gw_registry_locate(reg, 15, 5), c);
    /* A shared edge belongs to exactly one grid: the one east of it. */
    assert_ptr_equal(gw_registry_locate(reg, 10, 5), c);
    assert_ptr_equal(gw_registry_locate(reg, 0, 5), a);
    assert_ptr_equal(gw_registry_locate(reg, 20, 5), b);
    /* Outside everything, in the gap between C and B's far square's box. */
    assert_null(gw_registry_locate(reg, -1, -1));
    assert_null(gw_registry_locate(reg, 15, 11));
    assert_null(gw_registry_locate(reg, 100, 80));
    assert_null(gw_registry_locate(reg, NAN, 5));
    assert_null(gw_registry_locate(reg, 5, INFINITY));
    assert_null(gw_registry_locate(NULL, 5, 5));

    gw_registry_free(reg);
    gw_registry_free(NULL);
    assert_int_equal(gw_registry_grid_count(NULL), 0);
    assert_int_equal(gw_registry_device_count(NULL), 0);
}

static void accepts_bom_crlf_and_blank_lines(void **state)
{
    struct gw_registry *reg;
    const struct gw_device *d;
    char *error;

    (void)state;
    write_text("grids.geojson", "\xef\xbb\xbf" GRIDS);
    write_text("devices.csv", "\xef\xbb\xbf"
                              "device_id,type,grid_id,lat,lon,label\r\n"
                              "\r\n"
                              "smoke-1,smoke,G-A,,,label\r\n"
                              "smoke-2,smoke,,1e0,+2.5,\"quoted\"\r\n"
                              "smoke-3,smoke,G-C,,,5\" display\n"
                              "smoke-4,smoke,G-C,,,no newline at the end\n"
                              "smoke-5,smoke,G-C,,,\"quoted, CR at the end\"\r");
    reg = load_tmp(&error);
    assert_null(error);
    assert_non_null(reg);
    assert_int_equal(gw_registry_device_count(reg), 5);
    assert_string_equal(gw_registry_device(reg, "smoke-1")->label, "label");
    d = gw_registry_device(reg, "smoke-2");
    assert_string_equal(d->label, "quoted");
    assert_ptr_equal(d->grid, gw_registry_grid(reg, "G-A"));
    assert_true(d->lat == 1 && d->lon == 2.5);
    assert_string_equal(gw_registry_device(reg, "smoke-3")->label, "5\" display");
    assert_string_equal(gw_registry_device(reg, "smoke-4")->label, "no newline at the end");
    assert_string_equal(gw_registry_device(reg, "smoke-5")->label, "quoted, CR at the end");
    /* One copy of each type, shared by its devices. */
    assert_ptr_equal(gw_registry_device(reg, "smoke-5")->type, d->type);
    assert_string_equal(d->type, "smoke");
    gw_registry_free(reg);
}

/* A FIFO has no size to trust: read the way a pipe is. */
static void reads_devices_from_a_fifo(void **state)
{
    char *fifo = path_in("devices.fifo"), *grids = path_in("grids.geojson"), *error = NULL;
    struct gw_registry *reg;
    pid_t pid;
    int status;

    (void)state;
    write_text("grids.geojson", GRIDS);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = fopen(fifo, "w");

        _exit(f && fputs(DEVICES, f) >= 0 && fclose(f) == 0 ? 0 : 1);
    }
    reg = gw_registry_load(grids, fifo, &error);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!reg)
        fail_msg("%s", error ? error : "out of memory");
    assert_int_equal(gw_registry_device_count(reg), 6);
    assert_string_equal(gw_registry_device(reg, "cam-1")->label, "Gate \"North\", east");
    gw_registry_free(reg);
    free(fifo);
    free(grids);
}

/* ---- device indices ----------------------------------------------------- */

static void indexes_devices_in_file_order(void **state)
{
    static const char *const ids[] = { "smoke-1", "cam-1", "door-1", "gas-1", "water-1", "temp-1" };
    struct gw_registry *reg, *other;
    struct gw_device outsider = { .id = (char *)"smoke-1", .type = (char *)"smoke" };
    const struct gw_device *d;
    char *error;

    (void)state;
    write_text("grids.geojson", GRIDS);
    write_text("devices.csv", DEVICES);
    reg = load_tmp(&error);
    assert_non_null(reg);
    other = load_tmp(&error);
    assert_non_null(other);

    assert_int_equal(gw_registry_device_count(reg), 6);
    for (size_t i = 0; i < 6; i++) {
        d = gw_registry_device(reg, ids[i]);
        assert_non_null(d);
        assert_ptr_equal(gw_registry_device_at(reg, i), d);
        assert_int_equal(gw_registry_device_index(reg, d), (long)i);
        /* The same id in another registry is another device. */
        assert_int_equal(gw_registry_device_index(other, d), -1);
        assert_int_equal(gw_registry_device_index(reg, gw_registry_device(other, ids[i])), -1);
    }
    assert_null(gw_registry_device_at(reg, 6));
    assert_int_equal(gw_registry_device_index(reg, &outsider), -1);
    assert_int_equal(gw_registry_device_index(reg, NULL), -1);
    assert_int_equal(gw_registry_device_index(NULL, gw_registry_device_at(reg, 0)), -1);

    /* Quarantined devices have no index. */
    assert_int_equal(gw_registry_enable_quarantine(reg, 4), 0);
    d = gw_registry_quarantine(reg, "rogue-1");
    assert_non_null(d);
    assert_int_equal(gw_registry_device_index(reg, d), -1);
    assert_int_equal(gw_registry_device_index(reg, gw_registry_device_at(reg, 5)), 5);
    gw_registry_free(reg);
    gw_registry_free(other);

    /* No devices at all. */
    write_text("devices.csv", DEVICES_HEAD);
    reg = load_tmp(&error);
    assert_non_null(reg);
    assert_int_equal(gw_registry_device_index(reg, &outsider), -1);
    gw_registry_free(reg);
}

/* ---- every error, with file and line ---------------------------------------- */

struct bad_case {
    const char *grids;   /* NULL: GRIDS */
    const char *devices; /* NULL: DEVICES */
    const char *expect;  /* after "<tmpdir>/" */
};

#define DEV_OK DEVICES_HEAD "smoke-1,smoke,G-A,,,ok\n"
#define EXTRA(feature) GRIDS_BASE ",\n" feature GRIDS_TAIL
#define PLAIN_SQUARE POLYGON(SQUARE(40, 0, 50, 10))

static const struct bad_case bad_cases[] = {
    /* grids */
    { EXTRA(FEATURE("G-X", "C3", "S1", "foo", "routine", "{}", PLAIN_SQUARE)), DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): unknown type \"foo\"" },
    { EXTRA(FEATURE("G-X", "C3", "S1", "residential", "high", "{}", PLAIN_SQUARE)), DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): unknown level \"high\"" },
    { EXTRA(FEATURE("G-X", "C3", "S1", "residential", "routine", "{\"chef\": \"Ma Li\"}",
                    PLAIN_SQUARE)),
      DEV_OK, "grids.geojson:5: feature 3 (grid_id G-X): unknown role \"chef\" in roster" },
    { EXTRA(FEATURE("G-X", "C3", "S1", "residential", "routine", "{\"police\": 7}", PLAIN_SQUARE)),
      DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): roster role \"police\" must name a person" },
    { EXTRA(FEATURE("G-A", "C3", "S1", "residential", "routine", "{}", PLAIN_SQUARE)), DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-A): duplicate grid_id, first at feature 0 (line 2)" },
    { EXTRA("{\"type\": \"Feature\", \"properties\": {\"grid_id\": \"G-X\", \"name\": \"x\", "
            "\"community_id\": \"C3\", \"community\": \"c\", \"street_id\": \"S1\", \"street\": "
            "\"Street S1\", \"type\": \"residential\", \"roster\": {}}, \"geometry\": " PLAIN_SQUARE
            "}"),
      DEV_OK, "grids.geojson:5: feature 3 (grid_id G-X): missing property \"level\"" },
    { EXTRA("{\"type\": \"Feature\", \"properties\": {\"name\": \"x\"}, \"geometry\": " PLAIN_SQUARE
            "}"),
      DEV_OK, "grids.geojson:5: feature 3: missing property \"grid_id\"" },
    { EXTRA("{\"type\": \"Feature\", \"properties\": {\"grid_id\": \"G-X\", \"name\": \"x\", "
            "\"community_id\": \"C3\", \"community\": \"c\", \"street_id\": \"S1\", \"street\": "
            "\"Street S1\", \"type\": \"residential\", \"level\": \"routine\"}, "
            "\"geometry\": " PLAIN_SQUARE "}"),
      DEV_OK, "grids.geojson:5: feature 3 (grid_id G-X): missing property \"roster\"" },
    { EXTRA(FEATURE("G-X", "C3", "S1", "residential", "routine", "{}",
                    "{\"type\": \"Point\", \"coordinates\": [1, 2]}")),
      DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): geometry type \"Point\" is not Polygon or "
      "MultiPolygon" },
    { EXTRA(FEATURE("G-X", "C3", "S1", "residential", "routine", "{}",
                    POLYGON(SQUARE(170, 0, 200, 10)))),
      DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): position [200, 0] is not a WGS84 lon, lat" },
    { EXTRA(FEATURE("G-X", "C3", "S1", "residential", "routine", "{}",
                    "{\"type\": \"Polygon\", \"coordinates\": [[[0, 0], [1, 1]]]}")),
      DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): a ring needs at least 3 positions, has 2" },
    { EXTRA(FEATURE("G-X", "C1", "S2", "residential", "routine", "{}", PLAIN_SQUARE)), DEV_OK,
      "grids.geojson:5: feature 3 (grid_id G-X): community_id C1 is in street_id S1 at feature 0 "
      "(line 2), here in S2" },
    { GRIDS_HEAD "  {\"type\": \"Feature\",\n   \"properties\": {,}}\n]}\n", DEV_OK,
      "grids.geojson:3: invalid JSON near" },
    { GRIDS "trailing", DEV_OK, "grids.geojson:6: invalid JSON near \"trailing\"" },
    { "{\"type\": \"Feature\"}", DEV_OK,
      "grids.geojson:0: not a GeoJSON FeatureCollection with a \"features\" array" },
    { GRIDS_HEAD "]}", DEV_OK, "grids.geojson:0: no grids: \"features\" is empty" },
    { "", DEV_OK, "grids.geojson:1: invalid JSON" },
    /* devices */
    { GRIDS, "", "devices.csv:1: bad header: expected \"device_id,type,grid_id,lat,lon,label\"" },
    { GRIDS, "device_id,type,grid,lat,lon,label\nsmoke-1,smoke,G-A,,,ok\n",
      "devices.csv:1: bad header" },
    { GRIDS, "device_id,type,grid_id,lat,lon\n", "devices.csv:1: bad header" },
    { GRIDS, DEV_OK "x-1,smoke,G-A,,\n", "devices.csv:3: expected 6 fields, found 5" },
    { GRIDS, DEV_OK "x-1,smoke,G-A,,,a,b\n", "devices.csv:3: expected 6 fields, found 7" },
    { GRIDS, DEV_OK "x-1,smoke,,abc,2,\n", "devices.csv:3: device x-1: bad lat \"abc\"" },
    { GRIDS, DEV_OK "x-1,smoke,,2,181,\n", "devices.csv:3: device x-1: bad lon \"181\"" },
    { GRIDS, DEV_OK "x-1,smoke,,2,nan,\n", "devices.csv:3: device x-1: bad lon \"nan\"" },
    { GRIDS, DEV_OK "x-1,smoke,,2, 3,\n", "devices.csv:3: device x-1: bad lon \" 3\"" },
    { GRIDS, DEV_OK "x-1,smoke,,2,,\n",
      "devices.csv:3: device x-1: give both lat and lon or neither" },
    { GRIDS, DEV_OK "x-1,smoke,,,,\n", "devices.csv:3: device x-1: neither grid_id nor lat/lon" },
    { GRIDS, DEV_OK "x-1,smoke,G-Z,,,\n", "devices.csv:3: device x-1: unknown grid_id \"G-Z\"" },
    { GRIDS, DEV_OK "x-1,smoke,,50,50,\n",
      "devices.csv:3: device x-1: lat 50, lon 50 lies in no grid" },
    { GRIDS, DEV_OK "x-1,smoke,,4.2,4.2,in the hole\n",
      "devices.csv:3: device x-1: lat 4.2, lon 4.2 lies in no grid" },
    { GRIDS, DEV_OK "smoke-1,smoke,G-B,,,again\n",
      "devices.csv:3: duplicate device_id \"smoke-1\", first at line 2" },
    { GRIDS, DEV_OK "x-1,smoke,G-A,,,\"two\nlines\"\nx-1,smoke,G-A,,,again\n",
      "devices.csv:5: duplicate device_id \"x-1\", first at line 3" },
    { GRIDS, DEV_OK "x-1,smoke,G-A,,,\"oops\n", "devices.csv:3: unterminated quoted field" },
    { GRIDS, DEV_OK "x-1,smoke,G-A,,,\"a\"b\n", "devices.csv:3: text after a closing quote" },
    { GRIDS, DEV_OK ",smoke,G-A,,,\n", "devices.csv:3: empty device_id" },
    { GRIDS, DEV_OK "a/b,smoke,G-A,,,\n", "devices.csv:3: device_id \"a/b\" contains '/'" },
    { GRIDS, DEV_OK "a#b,smoke,G-A,,,\n", "devices.csv:3: device_id \"a#b\" contains '#'" },
    { GRIDS, DEV_OK "x-1,,G-A,,,\n", "devices.csv:3: device x-1: empty type" },
    /* the optional heartbeat column */
    { GRIDS, "device_id,type,grid_id,lat,lon,label,beat\n", "devices.csv:1: bad header" },
    { GRIDS, "device_id,type,grid_id,lat,lon,label,heartbeat,x\n", "devices.csv:1: bad header" },
    { GRIDS, "device_id,type,grid_id,lat,lon,label,heartbeat\nx-1,smoke,G-A,,,\n",
      "devices.csv:2: expected 7 fields, found 6" },
    { GRIDS, "device_id,type,grid_id,lat,lon,label,heartbeat\nx-1,smoke,G-A,,,,5x\n",
      "devices.csv:2: device x-1: bad heartbeat \"5x\"" },
    { GRIDS, "device_id,type,grid_id,lat,lon,label,heartbeat\nx-1,smoke,G-A,,,,0s\n",
      "devices.csv:2: device x-1: bad heartbeat \"0s\"" },
};

/* A heartbeat in the devices file overrides the type's; empty keeps it. */
static void reads_heartbeat_column(void **state)
{
    struct gw_registry *reg;
    char *error = NULL;

    (void)state;
    write_text("grids.geojson", GRIDS);
    write_text("devices.csv", "device_id,type,grid_id,lat,lon,label,heartbeat\n"
                              "smoke-1,smoke,G-A,,,kitchen,30m\n"
                              "smoke-2,smoke,G-A,,,hall,\n");
    reg = load_tmp(&error);
    if (!reg)
        fail_msg("%s", error);
    assert_int_equal(gw_registry_device(reg, "smoke-1")->heartbeat_ns, 1800LL * 1000000000);
    assert_int_equal(gw_registry_device(reg, "smoke-2")->heartbeat_ns, 0);
    assert_string_equal(gw_registry_device(reg, "smoke-1")->label, "kitchen");
    gw_registry_free(reg);
}

static void reports_every_error(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        struct gw_registry *reg;
        char *error, *expect;

        write_text("grids.geojson", bc->grids ? bc->grids : GRIDS);
        write_text("devices.csv", bc->devices ? bc->devices : DEVICES);
        reg = load_tmp(&error);
        expect = path_in(bc->expect);
        if (reg || !error || strncmp(error, expect, strlen(expect)) != 0)
            fail_msg("case %zu: expected \"%s...\", got \"%s\"", i, expect,
                     error ? error : "(no error)");
        assert_null(reg);
        free(expect);
        free(error);
    }
}

static void reports_missing_files(void **state)
{
    struct gw_registry *reg;
    char *error, *grids;

    (void)state;
    reg = gw_registry_load("/nonexistent/grids.geojson", "/nonexistent/devices.csv", &error);
    assert_null(reg);
    assert_string_equal(error,
                        "/nonexistent/grids.geojson:0: cannot read: No such file or directory");
    free(error);

    write_text("grids.geojson", GRIDS);
    grids = path_in("grids.geojson");
    reg = gw_registry_load(grids, "/nonexistent/devices.csv", &error);
    assert_null(reg);
    assert_string_equal(error,
                        "/nonexistent/devices.csv:0: cannot read: No such file or directory");
    free(error);

    reg = gw_registry_load(tmpdir, grids, &error);
    assert_null(reg);
    assert_int_equal(strncmp(error, tmpdir, strlen(tmpdir)), 0);
    assert_non_null(strstr(error, ":0: cannot read: Is a directory"));
    free(error);

    /* Errors are optional to receive. */
    assert_null(gw_registry_load("/nonexistent/grids.geojson", "/nonexistent/devices.csv", NULL));
    free(grids);
}

/* ---- the shipped sample -------------------------------------------------- */

static void loads_the_sample_district(void **state)
{
    struct gw_registry *reg;
    const struct gw_device *d;
    char *error = NULL;
    size_t cameras = 0;

    (void)state;
    reg = gw_registry_load(GW_SOURCE_DIR "/config/district/grids.geojson",
                           GW_SOURCE_DIR "/config/district/devices.csv", &error);
    if (!reg)
        fail_msg("%s", error ? error : "out of memory");
    /* gridsim district --seed 1 --streets 3 --devices 300: 东华门, 景山, 交道口 */
    assert_int_equal(gw_registry_grid_count(reg), 54 + 29 + 29);
    assert_int_equal(gw_registry_device_count(reg), 300);

    d = gw_registry_device(reg, "smoke-000001");
    assert_non_null(d);
    assert_string_equal(d->type, "smoke");
    assert_string_equal(d->grid->id, "110101001001001");
    assert_int_equal(d->grid->type, GW_GRID_RESIDENTIAL);
    assert_string_equal(d->grid->street, "东华门街道");
    assert_string_equal(d->grid->community_id, "110101001001");
    for (size_t r = 0; r < GW_ROLE_COUNT; r++)
        assert_non_null(d->grid->roster[r]);

    for (size_t i = 0; i < gw_registry_grid_count(reg); i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);

        assert_int_equal(strlen(g->id), 15);
        assert_int_equal(strncmp(g->id, g->community_id, 12), 0);
        assert_int_equal(strncmp(g->id, g->street_id, 9), 0);
        assert_true(strcmp(g->street_id, "110101001") >= 0 &&
                    strcmp(g->street_id, "110101003") <= 0);
    }
    for (int i = 1; i <= 300; i++) {
        char id[32];

        snprintf(id, sizeof(id), "camera-%06d", i);
        if (gw_registry_device(reg, id))
            cameras++;
    }
    assert_true(cameras >= 3);
    /* Devices placed by lat/lon alone went where their coordinates say. */
    for (size_t i = 0; i < gw_registry_grid_count(reg); i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);

        assert_ptr_equal(
            gw_registry_locate(reg, (g->min_lon + g->max_lon) / 2, (g->min_lat + g->max_lat) / 2),
            g);
    }
    gw_registry_free(reg);
}

/* ---- the generator -------------------------------------------------------- */

static char *generate(const char *name, uint64_t seed, unsigned streets, size_t devices)
{
    struct sim_district_options opts = { seed, streets, devices };
    struct sim_district_counts counts;
    char *dir = path_in(name);

    assert_int_equal(sim_district_write(&opts, dir, &counts), 0);
    assert_int_equal(counts.devices, devices);
    assert_int_equal(counts.streets, streets);
    return dir;
}

static char *file_in(const char *dir, const char *name)
{
    struct gw_buf b = GW_BUF_INIT;

    assert_int_equal(gw_buf_printf(&b, "%s/%s", dir, name), 0);
    return b.data;
}

static struct gw_registry *load_dir(const char *dir)
{
    char *grids = file_in(dir, "grids.geojson"), *devices = file_in(dir, "devices.csv");
    char *error = NULL;
    struct gw_registry *reg = gw_registry_load(grids, devices, &error);

    if (!reg)
        fail_msg("%s", error ? error : "out of memory");
    free(grids);
    free(devices);
    return reg;
}

static struct gw_registry *load_sample(void)
{
    char *error = NULL;
    struct gw_registry *reg = gw_registry_load(GW_SOURCE_DIR "/config/district/grids.geojson",
                                               GW_SOURCE_DIR "/config/district/devices.csv", &error);
    if (!reg)
        fail_msg("%s", error ? error : "out of memory");
    return reg;
}

static void quarantines_unknown_devices_up_to_a_bound(void **state)
{
    struct gw_registry *reg = load_sample();
    const struct gw_device *d, *again;

    (void)state;
    /* Off by default: an unknown id stays unknown. */
    assert_null(gw_registry_quarantine(reg, "rogue-1"));
    assert_null(gw_registry_device(reg, "rogue-1"));

    assert_int_equal(gw_registry_enable_quarantine(reg, 2), 0);
    d = gw_registry_quarantine(reg, "rogue-1");
    assert_non_null(d);
    assert_true(d->quarantined);
    assert_string_equal(d->grid->id, GW_UNASSIGNED_GRID);
    assert_string_equal(d->type, "unknown");
    assert_null(d->grid->roster[GW_ROLE_FIREFIGHTER]);
    again = gw_registry_quarantine(reg, "rogue-1");
    assert_ptr_equal(again, d);
    assert_ptr_equal(gw_registry_device(reg, "rogue-1"), d);
    assert_non_null(gw_registry_quarantine(reg, "rogue-2"));
    /* The bound holds: a flood of invented ids cannot grow memory. */
    assert_null(gw_registry_quarantine(reg, "rogue-3"));
    assert_int_equal(gw_registry_quarantined_count(reg), 2);
    /* Known devices are never quarantined. */
    d = gw_registry_device(reg, "smoke-000001");
    assert_false(d->quarantined);
    gw_registry_free(reg);
}

static void keeps_device_state(void **state)
{
    struct gw_registry *reg = load_sample();
    const struct gw_device *d = gw_registry_device(reg, "smoke-000001");
    struct gw_device_state st;

    (void)state;
    gw_device_state(d, &st);
    assert_int_equal(st.online, GW_ONLINE_UNKNOWN);
    assert_true(st.last_seen_ns == 0);
    gw_device_touch(d, 1000);
    gw_device_set_online(d, true, 1001);
    gw_device_set_online(d, true, 2000); /* no change: the time stays */
    gw_device_state(d, &st);
    assert_true(st.last_seen_ns == 1000);
    assert_int_equal(st.online, GW_ONLINE_YES);
    assert_true(st.online_changed_ns == 1001);
    gw_device_set_online(d, false, 3000);
    gw_device_count_rejected(d);
    gw_device_count_rejected(d);
    gw_device_state(d, &st);
    assert_true(st.rejected == 2);
    assert_int_equal(st.online, GW_ONLINE_NO);
    assert_true(st.online_changed_ns == 3000);
    /* The 32-bit count stops at its top rather than wrap. */
    ((struct gw_device *)d)->rejected = UINT32_MAX - 1;
    gw_device_count_rejected(d);
    gw_device_count_rejected(d);
    gw_device_state(d, &st);
    assert_true(st.rejected == UINT32_MAX);
    gw_registry_free(reg);
}

static void assert_same_file(const char *dir1, const char *dir2, const char *name, bool same)
{
    char *p1 = file_in(dir1, name), *p2 = file_in(dir2, name);
    char *t1 = read_text(p1), *t2 = read_text(p2);

    assert_int_equal(strcmp(t1, t2) == 0, same);
    free(p1);
    free(p2);
    free(t1);
    free(t2);
}

static void generator_places_every_device_in_its_grid(void **state)
{
    char *dir = generate("gen-a", 7, 2, 5000), *again = generate("gen-b", 7, 2, 5000);
    char *other = generate("gen-c", 8, 2, 5000);
    struct gw_registry *reg;
    size_t with_coords = 0, without_coords = 0, cameras = 0;

    (void)state;
    assert_same_file(dir, again, "grids.geojson", true);
    assert_same_file(dir, again, "devices.csv", true);
    assert_same_file(dir, other, "grids.geojson", false);
    assert_same_file(dir, other, "devices.csv", false);

    reg = load_dir(dir);
    assert_int_equal(gw_registry_grid_count(reg), 54 + 29);
    assert_int_equal(gw_registry_device_count(reg), 5000);
    assert_int_equal(gw_registry_grid(reg, "110101001001001")->type, GW_GRID_RESIDENTIAL);
    assert_ptr_equal(gw_registry_device(reg, "smoke-000001")->grid,
                     gw_registry_grid(reg, "110101001001001"));

    /* Walk the CSV's ids through the registry: every device with lat/lon
     * lies strictly inside exactly one grid, its own. */
    {
        char *csv_path = file_in(dir, "devices.csv"), *csv = read_text(csv_path);
        char *save = NULL;

        strtok_r(csv, "\n", &save); /* header */
        for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            const struct gw_device *d;
            size_t inside = 0;

            line[strcspn(line, ",")] = '\0';
            d = gw_registry_device(reg, line);
            assert_non_null(d);
            assert_non_null(d->grid);
            if (strcmp(d->type, "camera") == 0)
                cameras++;
            if (isnan(d->lat)) {
                without_coords++;
                continue;
            }
            with_coords++;
            assert_ptr_equal(gw_registry_locate(reg, d->lon, d->lat), d->grid);
            for (size_t i = 0; i < gw_registry_grid_count(reg); i++) {
                const struct gw_grid *g = gw_registry_grid_at(reg, i);

                if (d->lon > g->min_lon && d->lon < g->max_lon && d->lat > g->min_lat &&
                    d->lat < g->max_lat)
                    inside++;
            }
            assert_int_equal(inside, 1);
        }
        free(csv);
        free(csv_path);
    }
    /* About 30% by lat/lon alone, 35% both, 35% grid_id alone. */
    assert_true(with_coords > 5000 * 55 / 100 && with_coords < 5000 * 75 / 100);
    assert_true(without_coords > 5000 * 25 / 100 && without_coords < 5000 * 45 / 100);
    assert_int_equal(cameras, 5000 * 30 / 1000);

    gw_registry_free(reg);
    free(dir);
    free(again);
    free(other);
}

/* A devices file of several MB: loading hands its text back page by page
 * as it goes, so check every device's strings against the file. */
static void keeps_every_string_of_a_large_file(void **state)
{
    char *dir = generate("gen-large", 11, 2, 40000);
    char *csv_path = file_in(dir, "devices.csv"), *csv = read_text(csv_path);
    struct gw_registry *reg = load_dir(dir);
    const char *types[16] = { 0 };
    char *save = NULL;
    size_t i = 0, n_types = 0;

    (void)state;
    assert_true(strlen(csv) > (size_t)3 << 20);
    /* The generator quotes only labels, which are last and on one line. */
    strtok_r(csv, "\n", &save); /* header */
    for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
        const struct gw_device *d = gw_registry_device_at(reg, i);
        char *field[6], *p = line;
        size_t t;

        for (size_t f = 0; f < 5; f++) {
            field[f] = p;
            p += strcspn(p, ",");
            assert_int_equal(*p, ',');
            *p++ = '\0';
        }
        field[5] = p;
        if (*p == '"') {
            char *w = p;

            for (p++; *p; p++) {
                if (*p == '"' && *++p != '"')
                    break;
                *w++ = *p;
            }
            assert_int_equal(*p, '\0');
            *w = '\0';
        }
        assert_non_null(d);
        assert_string_equal(d->id, field[0]);
        assert_string_equal(d->type, field[1]);
        assert_string_equal(d->label, field[5]);
        assert_ptr_equal(gw_registry_device(reg, field[0]), d);
        assert_int_equal(gw_registry_device_index(reg, d), (long)i);
        for (t = 0; t < n_types && types[t] != d->type; t++)
            ;
        if (t == n_types) {
            /* A type not seen yet is a new string, not a second copy. */
            for (size_t u = 0; u < n_types; u++)
                assert_string_not_equal(types[u], d->type);
            assert_true(n_types < 16);
            types[n_types++] = d->type;
        }
    }
    assert_int_equal(i, 40000);
    assert_int_equal(gw_registry_device_count(reg), 40000);
    gw_registry_free(reg);
    free(csv);
    free(csv_path);
    free(dir);
}

static void generator_tiles_the_whole_box(void **state)
{
    char *full = generate("gen-full", 3, SIM_DISTRICT_STREETS, 100);
    char *part = generate("gen-part", 3, 2, 100);
    struct gw_registry *reg = load_dir(full), *sample = load_dir(part);
    size_t n, communities = 1, streets = 1, types[GW_GRID_TYPE_COUNT] = { 0 };
    double area = 0;

    (void)state;
    n = gw_registry_grid_count(reg);
    assert_int_equal(n, 589);
    for (size_t i = 0; i < n; i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);

        area += (g->max_lon - g->min_lon) * (g->max_lat - g->min_lat);
        types[g->type]++;
        if (i > 0 && strcmp(g->community_id, gw_registry_grid_at(reg, i - 1)->community_id))
            communities++;
        if (i > 0 && strcmp(g->street_id, gw_registry_grid_at(reg, i - 1)->street_id))
            streets++;
        /* No two grids overlap. */
        for (size_t j = i + 1; j < n; j++) {
            const struct gw_grid *h = gw_registry_grid_at(reg, j);

            assert_false(g->min_lon < h->max_lon && h->min_lon < g->max_lon &&
                         g->min_lat < h->max_lat && h->min_lat < g->max_lat);
        }
    }
    assert_int_equal(communities, 205);
    assert_int_equal(streets, 17);
    assert_true(fabs(area - (SIM_DISTRICT_MAX_LON - SIM_DISTRICT_MIN_LON) *
                                (SIM_DISTRICT_MAX_LAT - SIM_DISTRICT_MIN_LAT)) < 1e-9);
    assert_true(types[GW_GRID_RESIDENTIAL] > n / 2);
    for (size_t t = 0; t < GW_GRID_TYPE_COUNT; t++)
        assert_true(types[t] > 0);

    /* No gaps: a lattice of points, many on grid edges, all land somewhere. */
    for (int i = 0; i < 400; i++) {
        for (int j = 0; j < 400; j++) {
            double lon =
                SIM_DISTRICT_MIN_LON + (SIM_DISTRICT_MAX_LON - SIM_DISTRICT_MIN_LON) * i / 400;
            double lat =
                SIM_DISTRICT_MIN_LAT + (SIM_DISTRICT_MAX_LAT - SIM_DISTRICT_MIN_LAT) * j / 400;

            assert_non_null(gw_registry_locate(reg, lon, lat));
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);

        assert_non_null(gw_registry_locate(reg, g->min_lon, g->min_lat));
        assert_non_null(gw_registry_locate(reg, g->max_lon - 1e-7, g->max_lat - 1e-7));
    }

    /* --streets 2 is the same corner of the same district. */
    assert_int_equal(gw_registry_grid_count(sample), 54 + 29);
    for (size_t i = 0; i < gw_registry_grid_count(sample); i++) {
        const struct gw_grid *s = gw_registry_grid_at(sample, i), *g = gw_registry_grid_at(reg, i);

        assert_string_equal(s->id, g->id);
        assert_string_equal(s->name, g->name);
        assert_int_equal(s->type, g->type);
        assert_int_equal(s->level, g->level);
        assert_string_equal(s->roster[GW_ROLE_MANAGER], g->roster[GW_ROLE_MANAGER]);
        assert_true(s->min_lon == g->min_lon && s->max_lon == g->max_lon &&
                    s->min_lat == g->min_lat && s->max_lat == g->max_lat);
    }
    gw_registry_free(reg);
    gw_registry_free(sample);
    free(full);
    free(part);
}

static void generator_refuses_bad_options(void **state)
{
    struct sim_district_options opts = SIM_DISTRICT_OPTIONS_INIT;
    char *dir = path_in("gen-bad"), *file = path_in("gen-file");

    (void)state;
    opts.streets = 0;
    assert_int_equal(sim_district_write(&opts, dir, NULL), -EINVAL);
    opts.streets = SIM_DISTRICT_STREETS + 1;
    assert_int_equal(sim_district_write(&opts, dir, NULL), -EINVAL);
    opts.streets = 1;
    opts.devices = SIM_DISTRICT_MAX_DEVICES + 1;
    assert_int_equal(sim_district_write(&opts, dir, NULL), -EINVAL);
    assert_int_equal(access(dir, F_OK), -1);
    opts.devices = 0;
    write_text("gen-file", "not a directory");
    assert_int_equal(sim_district_write(&opts, file, NULL), -ENOTDIR);
    free(dir);
    free(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_and_looks_up),
        cmocka_unit_test(locates_points),
        cmocka_unit_test(accepts_bom_crlf_and_blank_lines),
        cmocka_unit_test(reads_devices_from_a_fifo),
        cmocka_unit_test(indexes_devices_in_file_order),
        cmocka_unit_test(reports_every_error),
        cmocka_unit_test(reads_heartbeat_column),
        cmocka_unit_test(reports_missing_files),
        cmocka_unit_test(loads_the_sample_district),
        cmocka_unit_test(quarantines_unknown_devices_up_to_a_bound),
        cmocka_unit_test(keeps_device_state),
        cmocka_unit_test(generator_places_every_device_in_its_grid),
        cmocka_unit_test(keeps_every_string_of_a_large_file),
        cmocka_unit_test(generator_tiles_the_whole_box),
        cmocka_unit_test(generator_refuses_bad_options),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
