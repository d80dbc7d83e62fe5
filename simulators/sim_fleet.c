/* sim_fleet: `gridsim run`, a fleet of devices publishing telemetry.
 *
 * Readings, per device type (all carry "ts", ms since the epoch, now):
 *   smoke        smoke (obscuration %/m, 0.000-0.050; 0.150-0.500 on an alarm
 *                reading), temp (°C, 18-28), battery (integer-valued %),
 *                alarm (true only on alarm readings)
 *   camera       people (count), density (people / capacity, 0-1), online
 *   gas          gas (% LEL, 0-5), battery
 *   door         open (bool), battery
 *   water        level_cm, battery
 *   temperature  temp (°C), humidity (%)
 *   other types  value (0-100)
 * A device's baselines (battery, usual temperature, capacity...) come from
 * a hash of its id; the noise around them from the seeded PRNG.
 *
 * --alarm-every N counts smoke readings across the whole fleet: every Nth
 * smoke reading published is an alarm reading, whichever detector it is,
 * so that the share of alarms is 1/N of the smoke readings whatever the
 * size of the fleet or the length of the run.
 *
 * Publishing: one MQTTAsync client (MQTT 5, clean start, no persistence).
 * The main thread paces with a token bucket and keeps at most `window`
 * publishes unacknowledged (20, or the broker's Receive Maximum if lower):
 * Paho refuses sends beyond maxBufferedMessages with -12 even when
 * connected, and retrying that in a loop collapses throughput (STACK-NOTES
 * gotcha 2), so the main thread sleeps on a condition variable until a
 * PUBACK (onSuccess5) or a failure (onFailure5) frees a slot. With QoS 0,
 * "acked" means Paho wrote the message to the socket.
 *
 * Threads: the main thread owns the options, devices, PRNG and pacing;
 * the counters shared with Paho's callbacks are under fleet.lock.
 */
#include "sim_fleet.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "gw_array.h"
#include "gw_log.h"
#include "sim_int.h"
#include "sim_scenario.h"

#define MODULE "gridsim"
#define NS_PER_S INT64_C(1000000000)
#define NS_PER_MS INT64_C(1000000)
#define MAX_WINDOW 20 /* mosquitto's default max_inflight_messages */
#define DRAIN_TIMEOUT_NS (5 * NS_PER_S)
#define CONNECT_TIMEOUT_S 5
#define MAX_WAIT_NS (100 * NS_PER_MS) /* longest sleep between checks of the stop flag */
#define MAX_FIELDS 64

/* ---------------------------------------------------------------- PRNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void sim_rng_seed(struct sim_rng *rng, uint64_t seed)
{
    for (size_t i = 0; i < ARRAY_SIZE(rng->s); i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sim_rng_next(struct sim_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sim_rng_uniform(struct sim_rng *rng, double lo, double hi)
{
    /* 53 random bits make a double in [0, 1). */
    double u = (double)(sim_rng_next(rng) >> 11) * 0x1.0p-53;
    return lo + (hi - lo) * u;
}

/* ------------------------------------------------------------- devices */

static const char *const kind_names[] = {
    [SIM_DEVICE_SMOKE] = "smoke", [SIM_DEVICE_CAMERA] = "camera",
    [SIM_DEVICE_GAS] = "gas",     [SIM_DEVICE_DOOR] = "door",
    [SIM_DEVICE_WATER] = "water", [SIM_DEVICE_TEMPERATURE] = "temperature",
};

enum sim_device_kind sim_device_kind_parse(const char *type)
{
    for (size_t i = 0; i < ARRAY_SIZE(kind_names); i++)
        if (kind_names[i] && strcasecmp(type, kind_names[i]) == 0)
            return (enum sim_device_kind)i;
    return SIM_DEVICE_OTHER;
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* Baselines that stay with a device from run to run. */
static void device_init_baselines(struct sim_device *dev)
{
    struct sim_rng rng;

    sim_rng_seed(&rng, fnv1a64(dev->id));
    /* About one device in twenty has a low battery. */
    if (sim_rng_uniform(&rng, 0, 1) < 0.05)
        dev->battery = 5 + (int)sim_rng_uniform(&rng, 0, 15);
    else
        dev->battery = 40 + (int)sim_rng_uniform(&rng, 0, 61);
    switch (dev->kind) {
    case SIM_DEVICE_SMOKE:
        dev->base = sim_rng_uniform(&rng, 19.0, 27.0); /* room temperature */
        break;
    case SIM_DEVICE_CAMERA:
        dev->base = sim_rng_uniform(&rng, 0.05, 0.6);        /* usual occupancy */
        dev->spread = floor(sim_rng_uniform(&rng, 20, 201)); /* capacity, people */
        break;
    case SIM_DEVICE_GAS:
        dev->base = sim_rng_uniform(&rng, 0.2, 2.5); /* usual % LEL ceiling */
        break;
    case SIM_DEVICE_DOOR:
        dev->base = sim_rng_uniform(&rng, 0.02, 0.2); /* chance to be open */
        break;
    case SIM_DEVICE_WATER:
        dev->base = sim_rng_uniform(&rng, 20, 150); /* cm */
        break;
    case SIM_DEVICE_TEMPERATURE:
        dev->base = sim_rng_uniform(&rng, 19.0, 27.0);
        dev->spread = sim_rng_uniform(&rng, 35, 65); /* relative humidity, % */
        break;
    case SIM_DEVICE_OTHER:
        break;
    }
}

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int sim_reading_format(const struct sim_device *dev, struct sim_rng *rng, bool alarm, int64_t ts_ms,
                       char *buf, size_t size)
{
    int n = -1;

    switch (dev->kind) {
    case SIM_DEVICE_SMOKE: {
        double smoke = alarm ? sim_rng_uniform(rng, 0.15, 0.5) : sim_rng_uniform(rng, 0, 0.05);
        double temp = clamp(dev->base + sim_rng_uniform(rng, -1, 1), 18, 28);
        n = snprintf(buf, size,
                     "{\"ts\":%" PRId64 ",\"smoke\":%.3f,\"temp\":%.1f,\"battery\":%d,"
                     "\"alarm\":%s}",
                     ts_ms, smoke, temp, dev->battery, alarm ? "true" : "false");
        break;
    }
    case SIM_DEVICE_CAMERA: {
        double load = clamp(dev->base + sim_rng_uniform(rng, -0.15, 0.15), 0, 1);
        long people = lround(load * dev->spread);
        n = snprintf(buf, size,
                     "{\"ts\":%" PRId64 ",\"people\":%ld,\"density\":%.2f,\"online\":true}", ts_ms,
                     people, (double)people / dev->spread);
        break;
    }
    case SIM_DEVICE_GAS:
        n = snprintf(buf, size, "{\"ts\":%" PRId64 ",\"gas\":%.2f,\"battery\":%d}", ts_ms,
                     sim_rng_uniform(rng, 0, dev->base), dev->battery);
        break;
    case SIM_DEVICE_DOOR:
        n = snprintf(buf, size, "{\"ts\":%" PRId64 ",\"open\":%s,\"battery\":%d}", ts_ms,
                     sim_rng_uniform(rng, 0, 1) < dev->base ? "true" : "false", dev->battery);
        break;
    case SIM_DEVICE_WATER:
        n = snprintf(buf, size, "{\"ts\":%" PRId64 ",\"level_cm\":%.1f,\"battery\":%d}", ts_ms,
                     clamp(dev->base + sim_rng_uniform(rng, -2, 2), 0, 1000), dev->battery);
        break;
    case SIM_DEVICE_TEMPERATURE:
        n = snprintf(buf, size, "{\"ts\":%" PRId64 ",\"temp\":%.1f,\"humidity\":%.1f}", ts_ms,
                     dev->base + sim_rng_uniform(rng, -1, 1),
                     clamp(dev->spread + sim_rng_uniform(rng, -3, 3), 0, 100));
        break;
    case SIM_DEVICE_OTHER:
        n = snprintf(buf, size, "{\"ts\":%" PRId64 ",\"value\":%.2f}", ts_ms,
                     sim_rng_uniform(rng, 0, 100));
        break;
    }
    if (n < 0 || (size_t)n >= size)
        return -ENOSPC;
    return n;
}

/* Splits one CSV line in place. Quoted fields may hold commas; "" inside
 * quotes is one quote. Returns the number of fields, or -EINVAL for an
 * unterminated quote or text after a closing quote, -E2BIG for too many. */
static int csv_split(char *line, char **fields, size_t max_fields)
{
    size_t n = 0;
    char *p = line;

    for (;;) {
        char *out = p;
        if (n == max_fields)
            return -E2BIG;
        fields[n++] = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    return -EINVAL;
                if (*p == '"') {
                    if (p[1] != '"')
                        break;
                    p++;
                }
                *out++ = *p++;
            }
            p++; /* closing quote */
            if (*p != ',' && *p != '\0')
                return -EINVAL;
        } else {
            while (*p != ',' && *p != '\0')
                *out++ = *p++;
        }
        if (*p == '\0') {
            *out = '\0';
            return (int)n;
        }
        *out = '\0';
        p++; /* the comma */
    }
}

#define MAX_DEVICE_ID 256

static const char *device_id_problem(const char *id)
{
    if (*id == '\0')
        return "empty device_id";
    if (strlen(id) > MAX_DEVICE_ID)
        return "device_id longer than 256 bytes";
    for (const char *p = id; *p; p++) {
        if (*p == '/' || *p == '+' || *p == '#')
            return "device_id must not contain '/', '+' or '#' (it is an MQTT topic level)";
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "device_id must not contain control characters";
    }
    return NULL;
}

void sim_devices_free(struct sim_device *devices, size_t count)
{
    if (!devices)
        return;
    for (size_t i = 0; i < count; i++) {
        free(devices[i].id);
        free(devices[i].grid_id);
    }
    free(devices);
}

static int compare_device_ids(const void *a, const void *b)
{
    const struct sim_device *const *x = a;
    const struct sim_device *const *y = b;
    return strcmp((*x)->id, (*y)->id);
}

/* Logs and returns -EINVAL when two devices share an id. */
static int check_duplicates(const char *path, struct sim_device *devices, size_t count)
{
    struct sim_device **sorted;
    int r = 0;

    if (count < 2)
        return 0;
    sorted = malloc(count * sizeof(*sorted));
    if (!sorted)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++)
        sorted[i] = &devices[i];
    qsort(sorted, count, sizeof(*sorted), compare_device_ids);
    for (size_t i = 1; i < count; i++) {
        if (strcmp(sorted[i - 1]->id, sorted[i]->id) == 0) {
            const struct sim_device *first = sorted[i - 1], *again = sorted[i];
            if (first->line > again->line) {
                first = sorted[i];
                again = sorted[i - 1];
            }
            gw_error(MODULE, "%s:%u: duplicate device_id '%s' (first on line %u)", path,
                     again->line, again->id, first->line);
            r = -EINVAL;
            break;
        }
    }
    free(sorted);
    return r;
}

int sim_devices_load(const char *path, struct sim_device **ret_devices, size_t *ret_count)
{
    FILE *f;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    unsigned lineno = 0;
    char *fields[MAX_FIELDS];
    int n_columns = 0, col_id = -1, col_type = -1, col_grid = -1;
    struct sim_device *devices = NULL;
    size_t count = 0, cap = 0;
    int r = 0;

    f = fopen(path, "r");
    if (!f) {
        r = -errno;
        gw_error(MODULE, "%s: cannot open devices file: %s", path, strerror(errno));
        return r;
    }
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        char *text = line;
        int n;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (lineno == 1 && strncmp(text, "\xef\xbb\xbf", 3) == 0)
            text += 3; /* UTF-8 byte order mark */
        if (*text == '\0')
            continue;
        n = csv_split(text, fields, ARRAY_SIZE(fields));
        if (n < 0) {
            gw_error(MODULE, "%s:%u: %s", path, lineno,
                     n == -E2BIG ? "too many fields" : "malformed quoted field");
            r = -EINVAL;
            goto out;
        }
        if (n_columns == 0) {
            n_columns = n;
            for (int i = 0; i < n; i++) {
                if (strcmp(fields[i], "device_id") == 0)
                    col_id = i;
                else if (strcmp(fields[i], "type") == 0)
                    col_type = i;
                else if (strcmp(fields[i], "grid_id") == 0)
                    col_grid = i;
            }
            if (col_id < 0 || col_type < 0) {
                gw_error(MODULE,
                         "%s:%u: the header must name the columns device_id and type "
                         "(device_id,type,grid_id,lat,lon,label)",
                         path, lineno);
                r = -EINVAL;
                goto out;
            }
            continue;
        }
        if (n != n_columns) {
            gw_error(MODULE, "%s:%u: %d fields where the header has %d", path, lineno, n,
                     n_columns);
            r = -EINVAL;
            goto out;
        }
        const char *problem = device_id_problem(fields[col_id]);
        if (problem) {
            gw_error(MODULE, "%s:%u: %s", path, lineno, problem);
            r = -EINVAL;
            goto out;
        }
        if (count == cap) {
            size_t new_cap = cap ? cap * 2 : 256;
            struct sim_device *grown;
            if (new_cap > SIZE_MAX / sizeof(*devices)) {
                r = -ENOMEM;
                goto out;
            }
            grown = realloc(devices, new_cap * sizeof(*devices));
            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            devices = grown;
            cap = new_cap;
        }
        struct sim_device *dev = &devices[count];
        memset(dev, 0, sizeof(*dev));
        dev->id = strdup(fields[col_id]);
        if (!dev->id) {
            r = -ENOMEM;
            goto out;
        }
        count++;
        if (col_grid >= 0 && fields[col_grid][0] != '\0') {
            dev->grid_id = strdup(fields[col_grid]);
            if (!dev->grid_id) {
                r = -ENOMEM;
                goto out;
            }
        }
        dev->kind = sim_device_kind_parse(fields[col_type]);
        dev->line = lineno;
        device_init_baselines(dev);
    }
    if (ferror(f)) {
        r = -EIO;
        gw_error(MODULE, "%s: read error", path);
        goto out;
    }
    if (n_columns == 0) {
        gw_error(MODULE, "%s: empty file, expected a header device_id,type,grid_id,lat,lon,label",
                 path);
        r = -EINVAL;
        goto out;
    }
    r = check_duplicates(path, devices, count);

out:
    if (r == -ENOMEM)
        gw_error(MODULE, "%s:%u: out of memory", path, lineno);
    free(line);
    fclose(f);
    if (r < 0) {
        sim_devices_free(devices, count);
        return r;
    }
    *ret_devices = devices;
    *ret_count = count;
    return 0;
}

/* ------------------------------------------------------------- options */

enum pick_mode { PICK_ROUND_ROBIN, PICK_RANDOM };
static const char *const pick_names[] = {"round-robin", "random", NULL};
enum transport { TRANSPORT_MQTT, TRANSPORT_COAP };
static const char *const transport_names[] = {"mqtt", "coap", NULL};

struct fleet_opts {
    const char *devices;
    const char *broker;
    double rate;
    uint64_t count;
    double duration;
    uint64_t qos;
    uint64_t alarm_every;
    uint64_t limit_devices;
    uint64_t seed;
    int pick;
    const char *client_id;
    const char *topic_prefix;
    const char *scenario;
    const char *grids;
    int transport;
    const char *coap;
    uint64_t content_format;
    double heartbeat_scale;
    bool quiet;
    bool help;
};

enum opt_type { OPT_STRING, OPT_UINT, OPT_DOUBLE, OPT_CHOICE, OPT_FLAG };

struct opt_desc {
    const char *name;
    enum opt_type type;
    size_t offset;
    const char *def;     /* default, parsed like a command-line value; NULL: none */
    const char *metavar; /* NULL for flags */
    double min, max;     /* numeric range, inclusive */
    const char *const *choices;
    const char *help;
};

#define OPT_OFF(field) offsetof(struct fleet_opts, field)

/* The one description of `gridsim run`'s options: parsing, defaults,
 * range checks, error messages and --help all come from it. */
static const struct opt_desc opt_table[] = {
    {"devices", OPT_STRING, OPT_OFF(devices), NULL, "FILE.csv", 0, 0, NULL,
     "devices CSV (device_id,type,grid_id,lat,lon,label); required"},
    {"broker", OPT_STRING, OPT_OFF(broker), "tcp://127.0.0.1:1883", "URI", 0, 0, NULL,
     "MQTT broker"},
    {"rate", OPT_DOUBLE, OPT_OFF(rate), "20", "MSGS_PER_S", 0, 1e7, NULL,
     "publish rate for the whole fleet; 0 = as fast as acks allow"},
    {"count", OPT_UINT, OPT_OFF(count), "0", "N", 0, 1e15, NULL,
     "stop after N messages (0 = no limit)"},
    {"duration", OPT_DOUBLE, OPT_OFF(duration), "0", "SECONDS", 0, 1e9, NULL,
     "stop after SECONDS (0 = no limit); with neither, run until SIGINT/SIGTERM"},
    {"qos", OPT_UINT, OPT_OFF(qos), "1", "0|1", 0, 1, NULL, "MQTT QoS of the publishes"},
    {"alarm-every", OPT_UINT, OPT_OFF(alarm_every), "0", "N", 0, 1e9, NULL,
     "every Nth smoke reading of the fleet is an alarm (0 = never)"},
    {"limit-devices", OPT_UINT, OPT_OFF(limit_devices), "0", "K", 0, 1e9, NULL,
     "use only the first K devices of the CSV (0 = all)"},
    {"pick", OPT_CHOICE, OPT_OFF(pick), "round-robin", "round-robin|random", 0, 0, pick_names,
     "order in which devices report"},
    {"seed", OPT_UINT, OPT_OFF(seed), NULL, "S", 0, (double)UINT64_MAX, NULL,
     "seed of the PRNG (values, random picks); default: from the clock, printed at start"},
    {"client-id", OPT_STRING, OPT_OFF(client_id), NULL, "ID", 0, 0, NULL,
     "MQTT client id (default gridsim-fleet-PID)"},
    {"topic-prefix", OPT_STRING, OPT_OFF(topic_prefix), "devices", "PREFIX", 0, 0, NULL,
     "publish to PREFIX/{device_id}/telemetry (benchmarks use another prefix for a baseline)"},
    {"scenario", OPT_STRING, OPT_OFF(scenario), NULL, "NAME", 0, 0, NULL,
     "fire, crowd, offline, storm or bad: a scripted incident; prints the cases it expects"},
    {"grids", OPT_STRING, OPT_OFF(grids), NULL, "FILE.geojson", 0, 0, NULL,
     "grids of the district, for --scenario (default: grids.geojson next to --devices)"},
    {"transport", OPT_CHOICE, OPT_OFF(transport), "mqtt", "mqtt|coap", 0, 0, transport_names,
     "coap: confirmable POSTs to --coap on the live schedule (see --heartbeat-scale; no Will)"},
    {"coap", OPT_STRING, OPT_OFF(coap), "coap://127.0.0.1:5683", "URI", 0, 0, NULL,
     "the gateway's CoAP server, with --transport coap"},
    {"content-format", OPT_UINT, OPT_OFF(content_format), "50", "50|110", 50, 110, NULL,
     "CoAP Content-Format: 50 JSON, 110 SenML JSON"},
    {"heartbeat-scale", OPT_DOUBLE, OPT_OFF(heartbeat_scale), "0", "S", 0, 1e9, NULL,
     "each device reports at its type's heartbeat (smoke 12 h, camera 5 min...) +-10 %, "
     "S simulated seconds per second, with a Last Will and battery drain; 0 = paced by --rate"},
    {"quiet", OPT_FLAG, OPT_OFF(quiet), NULL, NULL, 0, 0, NULL, "no line per second"},
    {"help", OPT_FLAG, OPT_OFF(help), NULL, NULL, 0, 0, NULL, "show this help"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: gridsim run --devices FILE.csv [OPTIONS]\n"
                 "Publish simulated readings to devices/{device_id}/telemetry.\n\n");
    for (size_t i = 0; i < ARRAY_SIZE(opt_table); i++) {
        const struct opt_desc *o = &opt_table[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-34s %s", left, o->help);
        if (o->def && o->type != OPT_FLAG)
            fprintf(out, " [%s]", o->def);
        fputc('\n', out);
    }
}

static int parse_uint(const char *text, uint64_t *ret_value)
{
    char *end;
    unsigned long long v;

    if (*text < '0' || *text > '9') /* strtoull takes "-1" and " 1" */
        return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -EINVAL;
    *ret_value = v;
    return 0;
}

static int parse_double(const char *text, double *ret_value)
{
    char *end;
    double v;

    if (*text == '\0' || *text == ' ')
        return -EINVAL;
    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v))
        return -EINVAL;
    *ret_value = v;
    return 0;
}

/* Stores text as the option's value; on error prints a message naming the
 * option and returns -EINVAL. */
static int opt_set(const struct opt_desc *o, const char *text, struct fleet_opts *opts)
{
    char *field = (char *)opts + o->offset;

    switch (o->type) {
    case OPT_STRING:
        if (*text == '\0')
            goto bad;
        *(const char **)(void *)field = text;
        return 0;
    case OPT_UINT: {
        uint64_t v;
        if (parse_uint(text, &v) < 0 || (double)v < o->min || (double)v > o->max)
            goto bad;
        *(uint64_t *)(void *)field = v;
        return 0;
    }
    case OPT_DOUBLE: {
        double v;
        if (parse_double(text, &v) < 0 || v < o->min || v > o->max)
            goto bad;
        *(double *)(void *)field = v;
        return 0;
    }
    case OPT_CHOICE:
        for (int i = 0; o->choices[i]; i++) {
            if (strcmp(text, o->choices[i]) == 0) {
                *(int *)(void *)field = i;
                return 0;
            }
        }
        goto bad;
    case OPT_FLAG:
        *(bool *)(void *)field = true;
        return 0;
    }
bad:
    switch (o->type) {
    case OPT_UINT:
        fprintf(stderr, "gridsim run: --%s: expected an integer from %.0f to %.0f, got '%s'\n",
                o->name, o->min, o->max, text);
        break;
    case OPT_DOUBLE:
        fprintf(stderr, "gridsim run: --%s: expected a number from %g to %g, got '%s'\n", o->name,
                o->min, o->max, text);
        break;
    case OPT_CHOICE:
        fprintf(stderr, "gridsim run: --%s: expected %s, got '%s'\n", o->name, o->metavar, text);
        break;
    default:
        fprintf(stderr, "gridsim run: --%s: expected %s, got '%s'\n", o->name, o->metavar, text);
        break;
    }
    return -EINVAL;
}

/* Parses `run [OPTIONS]`; argv[0] is the subcommand. Messages go to
 * stderr; returns 0 or -EINVAL. */
static int parse_args(int argc, char **argv, struct fleet_opts *opts)
{
    struct option long_opts[ARRAY_SIZE(opt_table) + 1];
    bool seen[ARRAY_SIZE(opt_table)] = {false};
    int c;

    memset(opts, 0, sizeof(*opts));
    for (size_t i = 0; i < ARRAY_SIZE(opt_table); i++) {
        const struct opt_desc *o = &opt_table[i];
        long_opts[i] = (struct option){
            o->name, o->type == OPT_FLAG ? no_argument : required_argument, NULL, 256 + (int)i};
        if (o->def && opt_set(o, o->def, opts) < 0)
            return -EINVAL; /* a broken table: caught by any test run */
    }
    long_opts[ARRAY_SIZE(opt_table)] = (struct option){NULL, 0, NULL, 0};

    optind = 0; /* GNU: full re-initialisation, gridsim may have used getopt */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            opts->help = true;
        } else if (c >= 256 && c < 256 + (int)ARRAY_SIZE(opt_table)) {
            size_t i = (size_t)(c - 256);
            if (opt_set(&opt_table[i], optarg ? optarg : "", opts) < 0)
                return -EINVAL;
            seen[i] = true;
        } else if (optopt >= 256 && optopt < 256 + (int)ARRAY_SIZE(opt_table)) {
            fprintf(stderr, "gridsim run: --%s needs a value (%s)\n", opt_table[optopt - 256].name,
                    opt_table[optopt - 256].metavar);
            return -EINVAL;
        } else {
            fprintf(stderr, "gridsim run: unknown option '%s'\n", argv[optind - 1]);
            return -EINVAL;
        }
    }
    if (opts->help)
        return 0;
    if (optind < argc) {
        fprintf(stderr, "gridsim run: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!opts->devices) {
        fprintf(stderr, "gridsim run: --devices FILE.csv is required\n");
        return -EINVAL;
    }
    if (opts->content_format != 50 && opts->content_format != 110) {
        fprintf(stderr, "gridsim run: --content-format: expected 50 (JSON) or 110 (SenML JSON), "
                        "got %" PRIu64 "\n", opts->content_format);
        return -EINVAL;
    }
    for (size_t i = 0; i < ARRAY_SIZE(opt_table); i++) {
        if (strcmp(opt_table[i].name, "seed") == 0 && !seen[i]) {
            uint64_t x = (uint64_t)gw_now_ns() ^ ((uint64_t)getpid() << 32);
            opts->seed = splitmix64(&x);
        }
    }
    return 0;
}

/* ----------------------------------------------------------- publishing */

struct fleet {
    struct fleet_opts opts;
    struct sim_device *devices;
    size_t n_devices;
    struct sim_rng rng;
    MQTTAsync client;
    char client_id[64];

    /* pacing and selection: main thread only */
    size_t next_device;
    uint64_t smoke_readings;
    uint64_t alarms;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;
    int connect_state; /* 0 pending, 1 connected, -1 failed */
    char connect_error[256];
    int window;
    int in_flight;
    uint64_t sent, acked, failed;
    bool connection_lost;
    bool disconnected;
    char lost_cause[128];
};

static volatile sig_atomic_t stop_signals;

static void on_stop_signal(int signo)
{
    (void)signo;
    stop_signals = stop_signals + 1;
}

static void on_paho_trace(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
    if (level >= MQTTASYNC_TRACE_ERROR)
        gw_warn("paho", "%s", message);
    else
        gw_debug("paho", "%s", message);
}

static void on_connect_ok(void *context, MQTTAsync_successData5 *response)
{
    struct fleet *f = context;
    int receive_max =
        MQTTProperties_getNumericValue(&response->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);

    pthread_mutex_lock(&f->lock);
    f->window = MAX_WINDOW;
    if (receive_max > 0 && receive_max < f->window)
        f->window = receive_max;
    f->connect_state = 1;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_connect_failed(void *context, MQTTAsync_failureData5 *response)
{
    struct fleet *f = context;

    pthread_mutex_lock(&f->lock);
    if (response && response->reasonCode != MQTTREASONCODE_SUCCESS)
        snprintf(f->connect_error, sizeof(f->connect_error), "%s (reason 0x%02x)",
                 MQTTReasonCode_toString(response->reasonCode), (unsigned)response->reasonCode);
    else if (response && response->message)
        snprintf(f->connect_error, sizeof(f->connect_error), "%s", response->message);
    else
        snprintf(f->connect_error, sizeof(f->connect_error), "%s",
                 MQTTAsync_strerror(response ? response->code : MQTTASYNC_FAILURE));
    f->connect_state = -1;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_connection_lost(void *context, char *cause)
{
    struct fleet *f = context;

    pthread_mutex_lock(&f->lock);
    f->connection_lost = true;
    snprintf(f->lost_cause, sizeof(f->lost_cause), "%s", cause ? cause : "connection closed");
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_publish_ok(void *context, MQTTAsync_successData5 *response)
{
    struct fleet *f = context;

    pthread_mutex_lock(&f->lock);
    f->in_flight--;
    /* A PUBACK with a reason code >= 0x80 refuses the message. */
    if (response && response->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
        f->failed++;
    else
        f->acked++;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_publish_failed(void *context, MQTTAsync_failureData5 *response)
{
    static struct gw_log_limit limit = GW_LOG_LIMIT_INIT(1, 5);
    struct fleet *f = context;

    pthread_mutex_lock(&f->lock);
    f->in_flight--;
    f->failed++;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    gw_log_limited(&limit, GW_LOG_WARN, MODULE, "publish failed: %s",
                   response && response->message ? response->message
                   : response                    ? MQTTAsync_strerror(response->code)
                                                 : "unknown error");
}

static void on_disconnected(void *context, MQTTAsync_successData5 *response)
{
    struct fleet *f = context;
    (void)response;

    pthread_mutex_lock(&f->lock);
    f->disconnected = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_disconnect_failed(void *context, MQTTAsync_failureData5 *response)
{
    (void)response;
    on_disconnected(context, NULL);
}

/* Waits on f->cond, with f->lock held, until the monotonic deadline. */
static void cond_wait_until(struct fleet *f, int64_t deadline_mono)
{
    struct timespec ts;
    int64_t wait = deadline_mono - gw_monotonic_ns();
    int64_t abs_ns;

    if (wait <= 0)
        return;
    /* The condition variable runs on CLOCK_REALTIME by default; a wait is
     * never longer than MAX_WAIT_NS, so a clock step does little harm. */
    abs_ns = gw_now_ns() + wait;
    ts.tv_sec = (time_t)(abs_ns / NS_PER_S);
    ts.tv_nsec = (long)(abs_ns % NS_PER_S);
    pthread_cond_timedwait(&f->cond, &f->lock, &ts);
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S)};
    if (ns > 0)
        nanosleep(&ts, NULL); /* EINTR is welcome: a stop signal */
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Creates the client and connects; logs and returns -ECONNREFUSED (or
 * -EINVAL for a URI Paho does not take, -EINTR when stopped meanwhile). */
static int fleet_connect(struct fleet *f)
{
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
    MQTTAsync_connectOptions conn = MQTTAsync_connectOptions_initializer5;
    sigset_t stop_set, old_set;
    int64_t deadline;
    int rc, state;

    rc = MQTTAsync_createWithOptions(&f->client, f->opts.broker, f->client_id,
                                     MQTTCLIENT_PERSISTENCE_NONE, NULL, &create);
    if (rc != MQTTASYNC_SUCCESS) {
        f->client = NULL;
        gw_error(MODULE, "--broker %s: %s", f->opts.broker, MQTTAsync_strerror(rc));
        return -EINVAL;
    }
    rc = MQTTAsync_setConnectionLostCallback(f->client, f, on_connection_lost);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(MODULE, "cannot set up the MQTT client: %s", MQTTAsync_strerror(rc));
        return -EINVAL;
    }

    conn.keepAliveInterval = 30;
    conn.cleanstart = 1;
    conn.connectTimeout = CONNECT_TIMEOUT_S;
    conn.automaticReconnect = 0;
    conn.onSuccess5 = on_connect_ok;
    conn.onFailure5 = on_connect_failed;
    conn.context = f;

    /* Paho starts its threads inside MQTTAsync_connect; they inherit a mask
     * blocking the stop signals, so the signals reach this thread and cut
     * its sleeps short. */
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);
    rc = MQTTAsync_connect(f->client, &conn);
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(MODULE, "cannot connect to %s: %s", f->opts.broker, MQTTAsync_strerror(rc));
        return -ECONNREFUSED;
    }

    deadline = gw_monotonic_ns() + (CONNECT_TIMEOUT_S + 2) * NS_PER_S;
    pthread_mutex_lock(&f->lock);
    while (f->connect_state == 0 && !stop_signals && gw_monotonic_ns() < deadline)
        cond_wait_until(f, min64(deadline, gw_monotonic_ns() + MAX_WAIT_NS));
    state = f->connect_state;
    pthread_mutex_unlock(&f->lock);

    if (state == 1)
        return 0;
    if (state == -1)
        gw_error(MODULE, "cannot connect to %s: %s", f->opts.broker, f->connect_error);
    else if (stop_signals)
        return -EINTR;
    else
        gw_error(MODULE, "cannot connect to %s: no answer within %d s", f->opts.broker,
                 CONNECT_TIMEOUT_S + 2);
    return -ECONNREFUSED;
}

static void fleet_report(struct fleet *f, uint64_t *last_sent, int64_t *last_ns)
{
    int64_t now = gw_monotonic_ns();
    uint64_t sent, acked;

    pthread_mutex_lock(&f->lock);
    sent = f->sent;
    acked = f->acked;
    pthread_mutex_unlock(&f->lock);
    printf("sent %" PRIu64 " (%.0f msg/s), acked %" PRIu64 ", alarms %" PRIu64 "\n", sent,
           (double)(sent - *last_sent) * 1e9 / (double)(now - *last_ns), acked, f->alarms);
    fflush(stdout);
    *last_sent = sent;
    *last_ns = now;
}

/* Publishes until --count, --duration, a stop signal or a lost
 * connection. Returns 0, or a negative errno after logging a fatal send
 * error. */
static int fleet_publish(struct fleet *f)
{
    const struct fleet_opts *o = &f->opts;
    int64_t start = gw_monotonic_ns();
    int64_t end = o->duration > 0 ? start + (int64_t)(o->duration * 1e9) : INT64_MAX;
    int64_t next_report = start + NS_PER_S, last_report = start, last_refill = start;
    uint64_t last_sent = 0;
    /* A burst of at most 50 ms worth of messages after a stall. */
    double burst = o->rate > 20 ? o->rate / 20 : 1;
    double tokens = 1;
    char topic[MAX_DEVICE_ID + 32], payload[256];

    for (;;) {
        int64_t now = gw_monotonic_ns();
        bool lost;
        uint64_t sent;

        if (now >= next_report) {
            if (!o->quiet)
                fleet_report(f, &last_sent, &last_report);
            next_report += NS_PER_S;
            if (next_report <= now)
                next_report = now + NS_PER_S;
        }
        pthread_mutex_lock(&f->lock);
        lost = f->connection_lost;
        sent = f->sent;
        pthread_mutex_unlock(&f->lock);
        if (stop_signals || lost || (o->count && sent >= o->count) || now >= end)
            return 0;

        if (o->rate > 0) {
            tokens += (double)(now - last_refill) * o->rate / 1e9;
            if (tokens > burst)
                tokens = burst;
            last_refill = now;
            if (tokens < 1) {
                int64_t wait = (int64_t)((1 - tokens) / o->rate * 1e9) + 1;
                sleep_ns(min64(min64(wait, MAX_WAIT_NS), min64(next_report, end) - now));
                continue;
            }
        }

        pthread_mutex_lock(&f->lock);
        if (f->in_flight >= f->window) {
            cond_wait_until(f, min64(min64(next_report, end), now + MAX_WAIT_NS));
            pthread_mutex_unlock(&f->lock);
            continue;
        }
        f->in_flight++;
        f->sent++;
        pthread_mutex_unlock(&f->lock);

        /* The reading: device, alarm or not, values. */
        size_t idx = o->pick == PICK_RANDOM ? (size_t)(sim_rng_next(&f->rng) % f->n_devices)
                                            : f->next_device;
        const struct sim_device *dev = &f->devices[idx];
        bool alarm = false;
        if (dev->kind == SIM_DEVICE_SMOKE && o->alarm_every)
            alarm = (f->smoke_readings + 1) % o->alarm_every == 0;
        int len = sim_reading_format(dev, &f->rng, alarm, gw_now_ns() / NS_PER_MS, payload,
                                     sizeof(payload));
        int tlen = snprintf(topic, sizeof(topic), "%s/%s/telemetry", f->opts.topic_prefix, dev->id);
        if (len < 0 || tlen < 0 || (size_t)tlen >= sizeof(topic)) {
            pthread_mutex_lock(&f->lock);
            f->in_flight--;
            f->sent--;
            pthread_mutex_unlock(&f->lock);
            gw_error(MODULE, "device '%s' (line %u): topic or payload too long", dev->id,
                     dev->line);
            return -ENAMETOOLONG;
        }

        MQTTAsync_message msg = MQTTAsync_message_initializer;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        msg.payload = payload;
        msg.payloadlen = len;
        msg.qos = (int)o->qos;
        ro.onSuccess5 = on_publish_ok;
        ro.onFailure5 = on_publish_failed;
        ro.context = f;
        int rc = MQTTAsync_sendMessage(f->client, topic, &msg, &ro);
        if (rc != MQTTASYNC_SUCCESS) {
            pthread_mutex_lock(&f->lock);
            f->in_flight--;
            f->sent--;
            if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES) {
                /* Paho's own buffer is full: wait for an ack, never spin. */
                cond_wait_until(f, gw_monotonic_ns() + MAX_WAIT_NS);
                pthread_mutex_unlock(&f->lock);
                continue;
            }
            lost = f->connection_lost;
            pthread_mutex_unlock(&f->lock);
            if (lost || rc == MQTTASYNC_DISCONNECTED)
                return 0; /* reported by the caller */
            gw_error(MODULE, "publish to %s failed: %s", f->opts.broker, MQTTAsync_strerror(rc));
            return -EIO;
        }
        if (o->pick == PICK_ROUND_ROBIN)
            f->next_device = (f->next_device + 1) % f->n_devices;
        if (dev->kind == SIM_DEVICE_SMOKE)
            f->smoke_readings++;
        if (alarm)
            f->alarms++;
        tokens -= 1;
    }
}

/* Waits up to DRAIN_TIMEOUT_NS for the unacknowledged publishes; a stop
 * signal arriving meanwhile (the second Ctrl-C) or a lost connection ends
 * the wait early. */
static void fleet_drain(struct fleet *f)
{
    int64_t deadline = gw_monotonic_ns() + DRAIN_TIMEOUT_NS;
    sig_atomic_t signals_before = stop_signals;

    pthread_mutex_lock(&f->lock);
    while (f->in_flight > 0 && !f->connection_lost && gw_monotonic_ns() < deadline &&
           stop_signals == signals_before)
        cond_wait_until(f, min64(deadline, gw_monotonic_ns() + MAX_WAIT_NS));
    pthread_mutex_unlock(&f->lock);
}

static void fleet_disconnect(struct fleet *f)
{
    MQTTAsync_disconnectOptions disc = MQTTAsync_disconnectOptions_initializer5;
    int64_t deadline;

    if (!f->client)
        return;
    if (MQTTAsync_isConnected(f->client)) {
        disc.timeout = 1000;
        disc.onSuccess5 = on_disconnected;
        disc.onFailure5 = on_disconnect_failed;
        disc.context = f;
        if (MQTTAsync_disconnect(f->client, &disc) == MQTTASYNC_SUCCESS) {
            deadline = gw_monotonic_ns() + 2 * NS_PER_S;
            pthread_mutex_lock(&f->lock);
            while (!f->disconnected && gw_monotonic_ns() < deadline)
                cond_wait_until(f, min64(deadline, gw_monotonic_ns() + MAX_WAIT_NS));
            pthread_mutex_unlock(&f->lock);
        }
    }
    MQTTAsync_destroy(&f->client);
}

static int fleet_run(struct fleet *f)
{
    int64_t start, elapsed;
    uint64_t sent, acked, failed, unacked;
    bool lost;
    char lost_cause[sizeof(f->lost_cause)];
    int r;

    r = fleet_connect(f);
    if (r == -EINTR) {
        fleet_disconnect(f);
        printf("summary: sent 0, acked 0, failed 0, alarms 0, elapsed 0.00 s, rate 0 msg/s\n");
        return 0;
    }
    if (r < 0) {
        fleet_disconnect(f);
        return r;
    }
    gw_info(MODULE, "connected to %s as %s: %zu devices, qos %" PRIu64 ", window %d, seed %" PRIu64,
            f->opts.broker, f->client_id, f->n_devices, f->opts.qos, f->window, f->opts.seed);

    start = gw_monotonic_ns();
    r = fleet_publish(f);
    fleet_drain(f);
    elapsed = gw_monotonic_ns() - start;

    pthread_mutex_lock(&f->lock);
    sent = f->sent;
    acked = f->acked;
    failed = f->failed;
    lost = f->connection_lost;
    memcpy(lost_cause, f->lost_cause, sizeof(lost_cause));
    pthread_mutex_unlock(&f->lock);
    unacked = sent - acked - failed;

    fleet_disconnect(f);

    printf("summary: sent %" PRIu64 ", acked %" PRIu64 ", failed %" PRIu64 ", alarms %" PRIu64
           ", elapsed %.2f s, rate %.0f msg/s\n",
           sent, acked, failed + unacked, f->alarms, (double)elapsed / 1e9,
           elapsed > 0 ? (double)acked * 1e9 / (double)elapsed : 0.0);
    fflush(stdout);

    if (lost) {
        gw_error(MODULE, "lost the connection to %s: %s", f->opts.broker, lost_cause);
        r = -ECONNRESET;
    }
    if (r == 0 && failed + unacked > 0) {
        gw_error(MODULE,
                 "%" PRIu64 " of %" PRIu64 " publishes to %s not acknowledged"
                 " (%" PRIu64 " failed, %" PRIu64 " still unacknowledged after %lld s)",
                 failed + unacked, sent, f->opts.broker, failed, unacked,
                 (long long)(DRAIN_TIMEOUT_NS / NS_PER_S));
        r = -EIO;
    }
    return r;
}

int sim_fleet_main(int argc, char **argv)
{
    struct fleet f;
    struct sigaction sa, old_int, old_term;
    int r;

    memset(&f, 0, sizeof(f));
    if (parse_args(argc, argv, &f.opts) < 0) {
        fprintf(stderr, "Try 'gridsim run --help'.\n");
        return 1;
    }
    if (f.opts.help) {
        print_usage(stdout);
        return 0;
    }

    if (sim_devices_load(f.opts.devices, &f.devices, &f.n_devices) < 0)
        return 1;
    if (f.n_devices == 0) {
        gw_error(MODULE, "%s: no devices", f.opts.devices);
        sim_devices_free(f.devices, f.n_devices);
        return 1;
    }
    if (f.opts.limit_devices && f.opts.limit_devices < f.n_devices) {
        for (size_t i = f.opts.limit_devices; i < f.n_devices; i++) {
            free(f.devices[i].id);
            free(f.devices[i].grid_id);
        }
        f.n_devices = f.opts.limit_devices;
    }
    if (f.opts.scenario) {
        struct sim_scenario_opts so = {
            .name = f.opts.scenario,
            .devices_path = f.opts.devices,
            .grids_path = f.opts.grids,
            .broker = f.opts.broker,
            .coap_uri = f.opts.transport == TRANSPORT_COAP ? f.opts.coap : NULL,
            .content_format = (int)f.opts.content_format,
            .seed = f.opts.seed,
        };
        r = sim_scenario_run(&so, f.devices, f.n_devices);
        sim_devices_free(f.devices, f.n_devices);
        return r < 0 ? 1 : 0;
    }
    sim_rng_seed(&f.rng, f.opts.seed);
    if (f.opts.client_id)
        snprintf(f.client_id, sizeof(f.client_id), "%s", f.opts.client_id);
    else
        snprintf(f.client_id, sizeof(f.client_id), "gridsim-fleet-%ld", (long)getpid());
    if (f.opts.client_id && strlen(f.opts.client_id) >= sizeof(f.client_id)) {
        fprintf(stderr, "gridsim run: --client-id: at most %zu characters\n",
                sizeof(f.client_id) - 1);
        sim_devices_free(f.devices, f.n_devices);
        return 1;
    }

    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    f.window = MAX_WINDOW;

    MQTTAsync_setTraceCallback(on_paho_trace);
    MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);

    stop_signals = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a signal cuts the current sleep short */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    if (f.opts.heartbeat_scale > 0 || f.opts.transport == TRANSPORT_COAP) {
        struct sim__live_opts lo = {
            .broker = f.opts.broker,
            .coap_uri = f.opts.transport == TRANSPORT_COAP ? f.opts.coap : NULL,
            .content_format = (int)f.opts.content_format,
            .scale = f.opts.heartbeat_scale > 0 ? f.opts.heartbeat_scale : 1,
            .duration = f.opts.duration,
            .count = f.opts.count,
            .seed = f.opts.seed,
            .quiet = f.opts.quiet,
        };
        r = sim__live_run(&lo, f.devices, f.n_devices, &stop_signals);
    } else {
        r = fleet_run(&f);
    }

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    MQTTAsync_setTraceCallback(NULL);
    pthread_cond_destroy(&f.cond);
    pthread_mutex_destroy(&f.lock);
    sim_devices_free(f.devices, f.n_devices);
    return r < 0 ? 1 : 0;
}
