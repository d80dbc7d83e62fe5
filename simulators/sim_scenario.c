/* sim_scenario: `gridsim run --scenario NAME`.
 *
 * A scenario is planned in full before anything is sent: the devices it
 * uses (picked from the district with the seeded PRNG), the messages
 * (topic, payload) in the order they go out, the devices it takes offline,
 * and the cases the shipped rules should open. The plan is printed as
 * "expect ..." lines, then played:
 *   1. devices to take offline connect, each with its own MQTT client and a
 *      Last Will "offline" on devices/{id}/status, say "online", and are
 *      killed (SIGKILL of the child process holding their connections), so
 *      the broker, not the device, announces them offline;
 *   2. the messages go out in order from one MQTT client at QoS 1.
 *
 * Time: rules that need a rise over a minute (fire.*_rise) or a state held
 * five minutes (police.crowd) read the reading's own "ts". A scenario
 * therefore sends readings whose ts lie 10 s apart, ending now, so minutes
 * of a fire or a crowd play in a fraction of a second.
 *
 * Devices: only devices with a grid_id in the CSV and a battery of at least
 * 30 % take part, so that the grid is known without point-in-polygon and
 * maintenance.lua's device.battery (20 % and under) stays out of the
 * expectations.
 */
#include "sim_scenario.h"

#include <MQTTAsync.h>
#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw_array.h"
#include "gw_log.h"
#include "sim_coap.h"
#include "sim_fleet.h"
#include "sim_int.h"

#define MODULE "gridsim"
#define STEP_MS 10000      /* readings of one device lie 10 s apart */
#define HEALTHY_BATTERY 30 /* maintenance.lua clears at 30 %, opens at 20 % */
#define PUB_WINDOW 20      /* unacknowledged QoS 1 publishes, as sim_fleet */

/* ------------------------------------------------------------- grids */

struct grid_info {
    char *id;
    char *type;
    char *level;
};

struct grids {
    struct grid_info *v;
    size_t n;
};

static void grids_free(struct grids *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->v[i].id);
        free(g->v[i].type);
        free(g->v[i].level);
    }
    free(g->v);
    g->v = NULL;
    g->n = 0;
}

static int compare_grids(const void *a, const void *b)
{
    return strcmp(((const struct grid_info *)a)->id, ((const struct grid_info *)b)->id);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)size + 1);
        if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        } else if (buf) {
            buf[size] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static char *prop_dup(const cJSON *props, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(props, name);
    return strdup(cJSON_IsString(v) ? v->valuestring : "");
}

/* Reads grid_id, type and level of every feature; sorted by id. Logs and
 * returns a negative errno on failure. */
static int grids_load(const char *path, struct grids *ret)
{
    char *text = read_file(path);
    cJSON *root, *features, *feat;
    struct grids g = {0};
    int r = 0;

    if (!text) {
        gw_error(MODULE, "%s: cannot read the grids: %s", path, strerror(errno));
        return -ENOENT;
    }
    root = cJSON_Parse(text);
    free(text);
    features = cJSON_GetObjectItemCaseSensitive(root, "features");
    if (!cJSON_IsArray(features)) {
        gw_error(MODULE, "%s: not a GeoJSON FeatureCollection", path);
        cJSON_Delete(root);
        return -EINVAL;
    }
    g.v = calloc((size_t)cJSON_GetArraySize(features) + 1, sizeof(*g.v));
    if (!g.v) {
        cJSON_Delete(root);
        return -ENOMEM;
    }
    cJSON_ArrayForEach(feat, features)
    {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(feat, "properties");
        struct grid_info *gi = &g.v[g.n];
        gi->id = prop_dup(props, "grid_id");
        gi->type = prop_dup(props, "type");
        gi->level = prop_dup(props, "level");
        g.n++;
        if (!gi->id || !gi->type || !gi->level) {
            r = -ENOMEM;
            break;
        }
    }
    cJSON_Delete(root);
    if (r < 0) {
        grids_free(&g);
        return r;
    }
    qsort(g.v, g.n, sizeof(*g.v), compare_grids);
    *ret = g;
    return 0;
}

static const struct grid_info *grid_find(const struct grids *g, const char *id)
{
    struct grid_info key = {.id = (char *)id};
    if (!id)
        return NULL;
    return bsearch(&key, g->v, g->n, sizeof(*g->v), compare_grids);
}

/* police.lua's crowd_watched(): where a crowd opens a case. */
static bool crowd_watched(const struct grid_info *gi)
{
    return gi && (strcmp(gi->type, "crowded") == 0 || strcmp(gi->level, "attention") == 0 ||
                  strcmp(gi->level, "governance") == 0);
}

/* -------------------------------------------------------------- plan */

struct plan_msg {
    const struct sim_device *dev;
    const char *channel; /* "telemetry" or "event" */
    char *topic;
    char *payload;
    bool bad; /* a malformed payload: CoAP answers 4.00 */
};

struct plan {
    const struct sim_scenario_opts *opts;
    const struct sim_device *devices;
    size_t n_devices;
    struct grids grids;
    struct sim_rng rng;
    int64_t now_ms;

    struct plan_msg *msgs;
    size_t n_msgs, cap_msgs;
    const struct sim_device **offline;
    size_t n_offline;
    unsigned bad_payloads, good_messages;
    bool failed; /* out of memory while planning */
};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n_msgs; i++) {
        free(p->msgs[i].topic);
        free(p->msgs[i].payload);
    }
    free(p->msgs);
    free(p->offline);
    grids_free(&p->grids);
}

/* Appends one message to the plan; on failure marks the plan failed. */
static void plan_add(struct plan *p, const struct sim_device *dev, const char *channel,
                     const char *payload)
{
    char topic[320];
    if (p->failed)
        return;
    if (p->n_msgs == p->cap_msgs) {
        size_t cap = p->cap_msgs ? p->cap_msgs * 2 : 64;
        struct plan_msg *grown = realloc(p->msgs, cap * sizeof(*grown));
        if (!grown) {
            p->failed = true;
            return;
        }
        p->msgs = grown;
        p->cap_msgs = cap;
    }
    snprintf(topic, sizeof(topic), "devices/%s/%s", dev->id, channel);
    p->msgs[p->n_msgs].dev = dev;
    p->msgs[p->n_msgs].channel = channel;
    p->msgs[p->n_msgs].bad = false;
    p->msgs[p->n_msgs].topic = strdup(topic);
    p->msgs[p->n_msgs].payload = strdup(payload);
    if (!p->msgs[p->n_msgs].topic || !p->msgs[p->n_msgs].payload) {
        free(p->msgs[p->n_msgs].topic);
        free(p->msgs[p->n_msgs].payload);
        p->failed = true;
        return;
    }
    p->n_msgs++;
}

static void plan_reading(struct plan *p, const struct sim_device *dev, const char *payload)
{
    plan_add(p, dev, "telemetry", payload);
    p->good_messages++;
}

static void expect_case(const char *rule, const struct sim_device *dev, const char *role)
{
    printf("expect case rule=%s grid=%s role=%s subject=%s\n", rule, dev->grid_id, role, dev->id);
}

static void expect_no_case(const char *rule, const struct sim_device *dev)
{
    printf("expect no case rule=%s grid=%s subject=%s\n", rule, dev->grid_id, dev->id);
}

static bool healthy(const struct sim_device *dev)
{
    return dev->grid_id && dev->battery >= HEALTHY_BATTERY;
}

/* Indices of the healthy devices of a kind (SIM_DEVICE_OTHER: any kind)
 * for which keep() is true, in a seeded random order. Returns the count;
 * *ret_idx is malloc'd (NULL when none). */
static size_t pick(struct plan *p, enum sim_device_kind kind,
                   bool (*keep)(const struct plan *, const struct sim_device *), size_t **ret_idx)
{
    size_t *idx = malloc((p->n_devices + 1) * sizeof(*idx));
    size_t n = 0;

    *ret_idx = idx;
    if (!idx) {
        p->failed = true;
        return 0;
    }
    for (size_t i = 0; i < p->n_devices; i++) {
        const struct sim_device *d = &p->devices[i];
        if (healthy(d) && (kind == SIM_DEVICE_OTHER || d->kind == kind) && (!keep || keep(p, d)))
            idx[n++] = i;
    }
    /* Fisher-Yates with the scenario's PRNG: same seed, same picks. */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(sim_rng_next(&p->rng) % i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
    return n;
}

static bool in_residential(const struct plan *p, const struct sim_device *d)
{
    const struct grid_info *gi = grid_find(&p->grids, d->grid_id);
    return gi && strcmp(gi->type, "residential") == 0;
}

static bool in_watched(const struct plan *p, const struct sim_device *d)
{
    return crowd_watched(grid_find(&p->grids, d->grid_id));
}

static bool not_watched(const struct plan *p, const struct sim_device *d)
{
    return !crowd_watched(grid_find(&p->grids, d->grid_id));
}

/* A smoke detector's reading with given smoke and temperature. */
static void smoke_reading(struct plan *p, const struct sim_device *dev, int64_t ts, double smoke,
                          double temp, bool alarm)
{
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"ts\":%" PRId64 ",\"smoke\":%.3f,\"temp\":%.1f,\"battery\":%d,\"alarm\":%s}", ts,
             smoke, temp, dev->battery, alarm ? "true" : "false");
    plan_reading(p, dev, buf);
}

/* An ordinary reading of any device, from sim_fleet's generator. */
static void normal_reading(struct plan *p, const struct sim_device *dev, int64_t ts)
{
    char buf[256];
    if (sim_reading_format(dev, &p->rng, false, ts, buf, sizeof(buf)) > 0)
        plan_reading(p, dev, buf);
}

/* ------------------------------------------------------------ scenarios */

#define FIRE_DETECTORS 3

/* How many of the picked devices idx[0..n) are in grid. */
static size_t same_grid(const struct plan *p, const size_t *idx, size_t n, const char *grid)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += strcmp(p->devices[idx[i]].grid_id, grid) == 0;
    return count;
}
#define FIRE_STEPS 12 /* two minutes of readings */

/* fire: three smoke detectors of one residential grid (one building: the
 * detectors a grid's building shares) see smoke and heat climb for two
 * minutes: smoke 0.02 -> 0.295 (+0.025 per 10 s, 0.15 per minute), temp
 * +2 °C per 10 s (12 °C per minute). Each detector passes fire.smoke's
 * 0.10, fire.smoke_heat_rise's 0.05/min and 3 °C/min, and fire.heat_rise's
 * 8 °C/min. A fourth detector of the same grid stays in clean air. */
static int plan_fire(struct plan *p)
{
    size_t *idx, n = pick(p, SIM_DEVICE_SMOKE, in_residential, &idx);
    const struct sim_device *fire[FIRE_DETECTORS], *calm = NULL;
    size_t n_fire = 0;

    /* The grid: the first picked detector's whose grid has a detector to
     * spare for the calm one, else the first picked detector's; the fire's
     * detectors are the next picked ones of that grid. */
    size_t first = 0;
    for (size_t i = 0; i < n; i++) {
        if (same_grid(p, idx, n, p->devices[idx[i]].grid_id) > FIRE_DETECTORS) {
            first = i;
            break;
        }
    }
    for (size_t k = 0; k < n; k++) {
        const struct sim_device *d = &p->devices[idx[(first + k) % n]];
        if (n_fire > 0 && strcmp(d->grid_id, fire[0]->grid_id) != 0)
            continue;
        if (n_fire < FIRE_DETECTORS)
            fire[n_fire++] = d;
        else if (!calm)
            calm = d;
    }
    free(idx);
    if (n_fire == 0) {
        gw_error(MODULE, "scenario fire: no healthy smoke detector with a grid_id in a "
                         "residential grid");
        return -EINVAL;
    }
    for (size_t i = 0; i < n_fire; i++) {
        expect_case("fire.smoke", fire[i], "firefighter");
        expect_case("fire.smoke_heat_rise", fire[i], "firefighter");
        expect_case("fire.heat_rise", fire[i], "firefighter");
    }
    if (calm) {
        expect_no_case("fire.smoke", calm);
        expect_no_case("fire.heat_rise", calm);
    }
    int64_t t0 = p->now_ms - (FIRE_STEPS - 1) * STEP_MS;
    for (int s = 0; s < FIRE_STEPS; s++) {
        int64_t ts = t0 + s * STEP_MS;
        for (size_t i = 0; i < n_fire; i++)
            smoke_reading(p, fire[i], ts, 0.02 + 0.025 * s, fire[i]->base + 2.0 * s, s >= 6);
        if (calm)
            smoke_reading(p, calm, ts, 0.01 + 0.001 * (s % 3), calm->base, false);
    }
    return 0;
}

#define CROWD_STEPS 40 /* 390 s: a climb, then over 300 s at or above 0.8 */

static void camera_reading(struct plan *p, const struct sim_device *cam, int64_t ts, double density)
{
    char buf[160];
    long people = lround(density * cam->spread);
    snprintf(buf, sizeof(buf),
             "{\"ts\":%" PRId64 ",\"people\":%ld,\"density\":%.2f,\"online\":true}", ts, people,
             (double)people / cam->spread);
    plan_reading(p, cam, buf);
}

/* The density of the crowd scenario at step s: 0.40 up by 0.1 per 10 s to
 * 0.80 (step 4), then 0.90-0.97, so that it is at or above 0.8 from 50 s
 * on at the latest (0.80 may round to 0.79 for some capacities): 340 s by
 * the last reading, past police.crowd's 300 s. */
static double crowd_density(struct plan *p, int s)
{
    if (s < 5)
        return 0.40 + 0.1 * s;
    return 0.90 + sim_rng_uniform(&p->rng, 0, 0.07);
}

/* crowd: a camera in a crowded (or attention/governance) grid sees its
 * density climb and stay high for over five minutes: police.crowd. A
 * camera of an ordinary grid sees the same crowd and opens nothing. */
static int plan_crowd(struct plan *p)
{
    size_t *idx, n = pick(p, SIM_DEVICE_CAMERA, in_watched, &idx);
    const struct sim_device *cam = n ? &p->devices[idx[0]] : NULL, *plain = NULL;

    free(idx);
    n = pick(p, SIM_DEVICE_CAMERA, not_watched, &idx);
    if (n)
        plain = &p->devices[idx[0]];
    free(idx);
    if (!cam) {
        gw_error(MODULE, "scenario crowd: no camera with a grid_id in a crowded grid");
        return -EINVAL;
    }
    expect_case("police.crowd", cam, "police");
    if (plain)
        expect_no_case("police.crowd", plain);
    int64_t t0 = p->now_ms - (CROWD_STEPS - 1) * STEP_MS;
    for (int s = 0; s < CROWD_STEPS; s++) {
        double d = crowd_density(p, s);
        camera_reading(p, cam, t0 + s * STEP_MS, d);
        if (plain)
            camera_reading(p, plain, t0 + s * STEP_MS, d);
    }
    return 0;
}

#define OFFLINE_DEVICES 3

static bool grid_taken(const struct sim_device **v, size_t n, const struct sim_device *d)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->grid_id, d->grid_id) == 0)
            return true;
    return false;
}

/* offline: three devices of three grids connect with a Last Will, say
 * "online", and their connections die: device.offline for each, to the
 * grid's manager. A fourth device keeps reporting and opens nothing. */
static int plan_offline(struct plan *p)
{
    size_t *idx, n = pick(p, SIM_DEVICE_OTHER, NULL, &idx);
    const struct sim_device *still = NULL;

    p->offline = calloc(OFFLINE_DEVICES, sizeof(*p->offline));
    if (!p->offline) {
        free(idx);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sim_device *d = &p->devices[idx[i]];
        if (p->n_offline < OFFLINE_DEVICES && !grid_taken(p->offline, p->n_offline, d))
            p->offline[p->n_offline++] = d;
        else if (!still && !grid_taken(p->offline, p->n_offline, d))
            still = d;
    }
    free(idx);
    if (p->n_offline == 0) {
        gw_error(MODULE, "scenario offline: no healthy device with a grid_id");
        return -EINVAL;
    }
    for (size_t i = 0; i < p->n_offline; i++)
        expect_case("device.offline", p->offline[i], "manager");
    if (still) {
        expect_no_case("device.offline", still);
        for (int s = 0; s < 3; s++)
            normal_reading(p, still, p->now_ms - (2 - s) * STEP_MS);
    }
    return 0;
}

#define STORM_SMOKE 20
#define STORM_GAS 3
#define STORM_BACKGROUND 40

/* storm: an alarm storm: one smoke detector in each of 20 grids alarms
 * (smoke 0.20-0.45, alarm true) and three gas detectors read 25-45 %LEL,
 * amid 40 ordinary readings of other devices: fire.smoke and fire.gas,
 * one case per alarming device, all to firefighters; nothing else. */
static int plan_storm(struct plan *p)
{
    size_t *idx, n = pick(p, SIM_DEVICE_SMOKE, NULL, &idx);
    const struct sim_device *alarming[STORM_SMOKE + STORM_GAS];
    size_t n_smoke = 0, n_gas = 0;
    int64_t ts = p->now_ms - STEP_MS;

    for (size_t i = 0; i < n && n_smoke < STORM_SMOKE; i++) {
        const struct sim_device *d = &p->devices[idx[i]];
        if (!grid_taken(alarming, n_smoke, d))
            alarming[n_smoke++] = d;
    }
    free(idx);
    n = pick(p, SIM_DEVICE_GAS, NULL, &idx);
    for (size_t i = 0; i < n && n_gas < STORM_GAS; i++)
        alarming[n_smoke + n_gas++] = &p->devices[idx[i]];
    free(idx);
    if (n_smoke == 0) {
        gw_error(MODULE, "scenario storm: no healthy smoke detector with a grid_id");
        return -EINVAL;
    }
    for (size_t i = 0; i < n_smoke; i++)
        expect_case("fire.smoke", alarming[i], "firefighter");
    for (size_t i = 0; i < n_gas; i++)
        expect_case("fire.gas", alarming[n_smoke + i], "firefighter");

    /* Background first, then the storm, interleaved with more background. */
    n = pick(p, SIM_DEVICE_SMOKE, NULL, &idx);
    size_t bg = 0;
    for (size_t i = 0; i < n && bg < STORM_BACKGROUND; i++) {
        const struct sim_device *d = &p->devices[idx[i]];
        bool is_alarming = false;
        for (size_t k = 0; k < n_smoke; k++)
            is_alarming |= d == alarming[k];
        if (is_alarming)
            continue;
        normal_reading(p, d, ts);
        bg++;
        if (bg % 2 == 0 && bg / 2 - 1 < n_smoke + n_gas) {
            const struct sim_device *a = alarming[bg / 2 - 1];
            char buf[160];
            if (a->kind == SIM_DEVICE_SMOKE) {
                smoke_reading(p, a, ts + 1000, sim_rng_uniform(&p->rng, 0.20, 0.45), a->base, true);
            } else {
                snprintf(buf, sizeof(buf), "{\"ts\":%" PRId64 ",\"gas\":%.1f,\"battery\":%d}",
                         ts + 1000, sim_rng_uniform(&p->rng, 25, 45), a->battery);
                plan_reading(p, a, buf);
            }
        }
    }
    free(idx);
    /* Alarms the background did not reach (a small district). */
    for (size_t k = bg / 2; k < n_smoke + n_gas; k++) {
        const struct sim_device *a = alarming[k];
        if (a->kind == SIM_DEVICE_SMOKE) {
            smoke_reading(p, a, ts + 1000, 0.30, a->base, true);
        } else {
            char buf[160];
            snprintf(buf, sizeof(buf), "{\"ts\":%" PRId64 ",\"gas\":30.0,\"battery\":%d}",
                     ts + 1000, a->battery);
            plan_reading(p, a, buf);
        }
    }
    return 0;
}

#define BAD_DEVICES 3
#define GOOD_DEVICES 5

/* Payloads no decoder takes: truncated JSON, text, a missing colon, an
 * unterminated array, a bare number after a key without a value. */
static const char *const bad_payloads[] = {
    "{\"smoke\":0.02,\"temp\":",     "smoke=0.02 temp=21.5", "{\"smoke\" 0.02}",
    "[{\"n\":\"smoke\",\"v\":0.02}", "{\"smoke\":}",         "\x01\x02garbage\xff",
};

/* bad: three smoke detectors send malformed payloads (two each) between
 * the readings of five good ones; one good detector alarms. The bad
 * payloads are counted by the gateway and open nothing; the good
 * detector's fire.smoke opens as ever. */
static int plan_bad(struct plan *p)
{
    size_t *idx, n = pick(p, SIM_DEVICE_SMOKE, NULL, &idx);
    const struct sim_device *bad[BAD_DEVICES], *good[GOOD_DEVICES];
    size_t n_bad = 0, n_good = 0;

    for (size_t i = 0; i < n; i++) {
        if (n_bad < BAD_DEVICES)
            bad[n_bad++] = &p->devices[idx[i]];
        else if (n_good < GOOD_DEVICES)
            good[n_good++] = &p->devices[idx[i]];
    }
    free(idx);
    if (n_good == 0) {
        gw_error(MODULE, "scenario bad: fewer than %d healthy smoke detectors with a grid_id",
                 BAD_DEVICES + 1);
        return -EINVAL;
    }
    expect_case("fire.smoke", good[0], "firefighter");
    for (size_t i = 0; i < n_bad; i++)
        expect_no_case("fire.smoke", bad[i]);
    int64_t t0 = p->now_ms - 2 * STEP_MS;
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < n_good; i++) {
            if (i == 0 && s == 2)
                smoke_reading(p, good[0], t0 + s * STEP_MS, 0.25, good[0]->base, true);
            else
                normal_reading(p, good[i], t0 + s * STEP_MS);
        }
        for (size_t i = 0; i < n_bad && s < 2; i++) {
            plan_add(p, bad[i], "telemetry",
                     bad_payloads[(i * 2 + (size_t)s) % ARRAY_SIZE(bad_payloads)]);
            if (!p->failed)
                p->msgs[p->n_msgs - 1].bad = true;
            p->bad_payloads++;
        }
    }
    printf("expect bad_payloads %u\n", p->bad_payloads);
    printf("expect accepted %u\n", p->good_messages);
    return 0;
}

/* The child of play_offline: connects every device, announces it online,
 * tells the parent on fd, then waits to be killed. Never returns. */
static void offline_child(const struct plan *p, int fd)
{
    MQTTAsync clients[OFFLINE_DEVICES] = {0};
    MQTTAsync_token tokens[OFFLINE_DEVICES];
    char client_id[320], topic[320];
    int r = 0;

    for (size_t i = 0; i < p->n_offline && r == 0; i++) {
        snprintf(client_id, sizeof(client_id), "gridsim-dev-%s", p->offline[i]->id);
        r = sim__mqtt_start(&clients[i], p->opts->broker, client_id, p->offline[i]->id);
    }
    if (r == 0)
        r = sim__mqtt_await(clients, p->n_offline, p->opts->broker);
    for (size_t i = 0; i < p->n_offline && r == 0; i++) {
        snprintf(topic, sizeof(topic), "devices/%s/status", p->offline[i]->id);
        r = sim__mqtt_send(clients[i], topic, "online", &tokens[i]);
    }
    for (size_t i = 0; i < p->n_offline && r == 0; i++)
        r = sim__mqtt_wait(clients[i], tokens[i]);
    char verdict = r == 0 ? 'k' : 'e';
    if (write(fd, &verdict, 1) != 1 || verdict != 'k')
        _exit(1);
    for (;;)
        pause();
}

/* Takes the plan's offline devices online, then kills their connections
 * the hard way: the process holding them dies by SIGKILL, its sockets
 * close without a DISCONNECT, and the broker publishes each Last Will.
 * Forked before this process starts any Paho thread. */
static int play_offline(const struct plan *p)
{
    int fds[2];
    pid_t child;
    char verdict = 0;
    struct pollfd pfd;

    if (p->n_offline == 0)
        return 0;
    if (pipe(fds) < 0)
        return -errno;
    fflush(stdout);
    child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return -errno;
    }
    if (child == 0) {
        /* Should gridsim die first (Ctrl-C), the connections die with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fds[0]);
        offline_child(p, fds[1]);
    }
    close(fds[1]);
    pfd = (struct pollfd){.fd = fds[0], .events = POLLIN};
    if (poll(&pfd, 1, SIM__CONNECT_WAIT_MS * 2) == 1 && read(fds[0], &verdict, 1) != 1)
        verdict = 0;
    close(fds[0]);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (verdict != 'k') {
        gw_error(MODULE, "scenario offline: the devices did not come online");
        return -ECONNREFUSED;
    }
    printf("killed the connections of %zu devices (Last Will: offline)\n", p->n_offline);
    return 0;
}

/* Publishes the plan's messages in order, at most PUB_WINDOW unacknowledged. */
static int play_messages(const struct plan *p)
{
    MQTTAsync client = NULL;
    MQTTAsync_token tokens[PUB_WINDOW];
    char client_id[64];
    int r;

    if (p->n_msgs == 0)
        return 0;
    snprintf(client_id, sizeof(client_id), "gridsim-scenario-%ld", (long)getpid());
    r = sim__mqtt_open(&client, p->opts->broker, client_id, NULL);
    if (r < 0)
        return r;
    for (size_t i = 0; i < p->n_msgs && r == 0; i++) {
        if (i >= PUB_WINDOW)
            r = sim__mqtt_wait(client, tokens[i % PUB_WINDOW]);
        if (r == 0)
            r = sim__mqtt_send(client, p->msgs[i].topic, p->msgs[i].payload,
                               &tokens[i % PUB_WINDOW]);
    }
    for (size_t i = p->n_msgs > PUB_WINDOW ? p->n_msgs - PUB_WINDOW : 0; i < p->n_msgs && r == 0;
         i++)
        r = sim__mqtt_wait(client, tokens[i % PUB_WINDOW]);
    sim__mqtt_close(&client);
    return r;
}

/* POSTs the plan's messages in order over CoAP, each confirmable and
 * answered before the next: 2.04 for a good one, 4.00 for a bad one; any
 * other answer, or none, fails the run. */
static int play_coap(const struct plan *p)
{
    struct sim_coap *c;
    unsigned changed = 0, bad_request = 0;
    int r = 0;

    if (p->n_msgs == 0)
        return 0;
    c = sim_coap_new(p->opts->coap_uri, p->opts->content_format);
    if (!c)
        return -ECONNREFUSED;
    for (size_t i = 0; i < p->n_msgs && r == 0; i++) {
        const struct plan_msg *m = &p->msgs[i];
        int code = 0, want = m->bad ? 400 : 204;
        r = sim_coap_post(c, m->dev->id, m->channel, m->payload, &code);
        if (r < 0) {
            gw_error(MODULE, "--coap %s: %s for %s", p->opts->coap_uri,
                     r == -ETIMEDOUT ? "no answer" : "cannot send", m->dev->id);
        } else if (code != want) {
            gw_error(MODULE, "--coap %s: %d.%02d for %s, expected %d.%02d", p->opts->coap_uri,
                     code / 100, code % 100, m->dev->id, want / 100, want % 100);
            r = -EIO;
        } else if (m->bad) {
            bad_request++;
        } else {
            changed++;
        }
    }
    sim_coap_free(c);
    printf("coap: %u answered 2.04, %u answered 4.00\n", changed, bad_request);
    return r;
}

/* ------------------------------------------------------------- driver */

struct scenario {
    const char *name;
    int (*plan)(struct plan *p);
};

static const struct scenario scenarios[] = {
    {"fire", plan_fire},   {"crowd", plan_crowd}, {"offline", plan_offline},
    {"storm", plan_storm}, {"bad", plan_bad},
};

/* grids.geojson in the folder of the devices CSV. */
static char *default_grids_path(const char *devices_path)
{
    const char *slash = strrchr(devices_path, '/');
    size_t dir = slash ? (size_t)(slash - devices_path + 1) : 0;
    char *path = malloc(dir + sizeof("grids.geojson"));
    if (path) {
        memcpy(path, devices_path, dir);
        memcpy(path + dir, "grids.geojson", sizeof("grids.geojson"));
    }
    return path;
}

int sim_scenario_run(const struct sim_scenario_opts *opts, const struct sim_device *devices,
                     size_t count)
{
    const struct scenario *sc = NULL;
    struct plan p = {.opts = opts, .devices = devices, .n_devices = count};
    char *grids_path = NULL;
    int r;

    for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++)
        if (strcmp(opts->name, scenarios[i].name) == 0)
            sc = &scenarios[i];
    if (!sc) {
        fprintf(stderr,
                "gridsim run: --scenario: expected fire, crowd, offline, storm or bad, "
                "got '%s'\n",
                opts->name);
        return -EINVAL;
    }
    if (!opts->grids_path && !(grids_path = default_grids_path(opts->devices_path)))
        return -ENOMEM;
    r = grids_load(opts->grids_path ? opts->grids_path : grids_path, &p.grids);
    free(grids_path);
    if (r < 0)
        return r;
    if (opts->coap_uri && strcmp(sc->name, "offline") == 0) {
        /* Going offline is announced by the MQTT broker (Last Will);
         * CoAP has nothing like it. */
        fprintf(stderr, "gridsim run: --scenario offline needs --transport mqtt\n");
        grids_free(&p.grids);
        return -EINVAL;
    }
    sim_rng_seed(&p.rng, opts->seed);
    p.now_ms = gw_now_ns() / 1000000;

    printf("scenario %s seed %" PRIu64 "\n", sc->name, opts->seed);
    r = sc->plan(&p);
    if (r == 0 && p.failed)
        r = -ENOMEM;
    /* What the gateway's "received" counter should reach: every message,
     * and an online and an offline status per device taken offline. */
    if (r == 0)
        printf("expect received %zu\n", p.n_msgs + 2 * p.n_offline);
    fflush(stdout);
    if (r == 0)
        r = play_offline(&p);
    if (r == 0)
        r = opts->coap_uri ? play_coap(&p) : play_messages(&p);
    if (r == 0)
        printf("summary: scenario %s, %zu messages (%u bad), %zu devices taken offline\n", sc->name,
               p.n_msgs, p.bad_payloads, p.n_offline);
    fflush(stdout);
    plan_free(&p);
    return r;
}
