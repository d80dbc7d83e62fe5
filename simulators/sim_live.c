/* sim_live: a fleet whose every device keeps its own time, as in the field.
 *
 * Each device reports at its type's heartbeat, the intervals gridgate's
 * deadman rules expect by default (rules.heartbeats: smoke, gas, door and
 * water 12 h, temperature 1 h, camera 5 min, others 12 h), each interval
 * drawn within ±10 % so that a fleet started together drifts apart as real
 * devices do; first reports are spread over one interval. --heartbeat-scale
 * S runs S simulated seconds per real second (3600: an hour a second).
 *
 * Batteries drain with simulated time over a type's life: smoke detectors
 * 3 years (DOMAIN-NOTES 4.1: 3.6 V lithium, about 3 years), door, water
 * and gas sensors 2 years [an estimate]; cameras and temperature sensors
 * are mains powered and report no battery.
 *
 * Over MQTT every device has its own connection with a Last Will
 * "offline" on devices/{id}/status and says "online" there once
 * connected (QoS 1, not retained), so killing gridsim makes the broker
 * announce every device offline. A clean stop (SIGINT, SIGTERM, --duration,
 * --count) disconnects without the Will: the devices fall silent, which
 * the gateway's device.silent rule notices after two heartbeats. One
 * connection per device bounds this mode to MAX_MQTT_DEVICES devices.
 *
 * Over CoAP readings are confirmable POSTs, one at a time, from one UDP
 * session; CoAP has no Will, so there is no status.
 *
 * The next device due is found by a linear scan: fine for the thousands
 * of devices this mode is for, and simpler than a heap.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_log.h"
#include "sim_coap.h"
#include "sim_fleet.h"
#include "sim_int.h"

#define MODULE "gridsim"
#define NS_PER_S INT64_C(1000000000)
#define MAX_SLEEP_NS (100 * INT64_C(1000000)) /* how often a stop is noticed */
#define MAX_MQTT_DEVICES 1000                 /* file descriptors: one socket each */
#define JITTER 0.10
#define YEAR_S (365.25 * 86400)

struct live_dev {
    MQTTAsync client;
    MQTTAsync_token last_token;
    bool sent_any;
    int64_t next_ns;    /* monotonic time of the next report */
    int64_t drained_ns; /* monotonic time the battery was last drained to */
    double charge;      /* percent, as a real number; dev->battery is it rounded up */
};

struct live {
    const struct sim__live_opts *opts;
    struct sim_device *devices;
    size_t n;
    struct live_dev *ld;
    struct sim_rng rng;
    struct sim_coap *coap;
    uint64_t sent, failed, coap_refused;
    char topic[320];
};

/* The heartbeat of a kind, in simulated seconds (gridgate's defaults). */
static double heartbeat_s(enum sim_device_kind kind)
{
    switch (kind) {
    case SIM_DEVICE_TEMPERATURE:
        return 3600;
    case SIM_DEVICE_CAMERA:
        return 300;
    default:
        return 12 * 3600;
    }
}

/* Battery life of a kind in simulated seconds; 0: mains powered. */
static double battery_life_s(enum sim_device_kind kind)
{
    switch (kind) {
    case SIM_DEVICE_SMOKE:
        return 3 * YEAR_S;
    case SIM_DEVICE_GAS:
    case SIM_DEVICE_DOOR:
    case SIM_DEVICE_WATER:
        return 2 * YEAR_S;
    default:
        return 0;
    }
}

/* Real nanoseconds until a device's next report: its heartbeat ±10 %,
 * divided by the time scale. */
static int64_t next_interval_ns(struct live *l, const struct sim_device *dev)
{
    double s = heartbeat_s(dev->kind) * sim_rng_uniform(&l->rng, 1 - JITTER, 1 + JITTER);
    return (int64_t)(s / l->opts->scale * 1e9);
}

static void drain(struct live *l, size_t i, int64_t now)
{
    struct live_dev *ld = &l->ld[i];
    struct sim_device *dev = &l->devices[i];
    double life = battery_life_s(dev->kind);
    double sim_s = (double)(now - ld->drained_ns) / 1e9 * l->opts->scale;

    ld->drained_ns = now;
    if (life <= 0)
        return;
    ld->charge -= sim_s / life * 100;
    if (ld->charge < 0)
        ld->charge = 0;
    dev->battery = (int)ceil(ld->charge);
}

static void on_sent(void *context, MQTTAsync_successData *response)
{
    (void)context;
    (void)response;
}

static void on_send_failed(void *context, MQTTAsync_failureData *response)
{
    struct live *l = context;
    (void)response;
    __atomic_add_fetch(&l->failed, 1, __ATOMIC_RELAXED);
}

/* Publishes (without waiting) or posts (waiting: CoAP is one request at a
 * time) one message of device i. */
static int send_one(struct live *l, size_t i, const char *channel, const char *payload)
{
    const struct sim_device *dev = &l->devices[i];
    struct live_dev *ld = &l->ld[i];

    if (l->coap) {
        int code = 0, r = sim_coap_post(l->coap, dev->id, channel, payload, &code);
        if (r < 0)
            return r;
        if (code != 204)
            l->coap_refused++;
        return 0;
    }
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    snprintf(l->topic, sizeof(l->topic), "devices/%s/%s", dev->id, channel);
    msg.payload = (void *)payload;
    msg.payloadlen = (int)strlen(payload);
    msg.qos = 1;
    ro.onSuccess = on_sent;
    ro.onFailure = on_send_failed;
    ro.context = l;
    if (MQTTAsync_sendMessage(ld->client, l->topic, &msg, &ro) != MQTTASYNC_SUCCESS)
        return -EIO;
    ld->last_token = ro.token;
    ld->sent_any = true;
    return 0;
}

/* Connects every device with its Will and announces it online: all
 * connections start together, then are awaited, then every "online" goes
 * out and is acknowledged. */
static int connect_all(struct live *l)
{
    char client_id[320], topic[320];
    MQTTAsync *clients = calloc(l->n, sizeof(*clients));
    int r = clients ? 0 : -ENOMEM;

    for (size_t i = 0; i < l->n && r == 0; i++) {
        snprintf(client_id, sizeof(client_id), "gridsim-dev-%s", l->devices[i].id);
        r = sim__mqtt_start(&l->ld[i].client, l->opts->broker, client_id, l->devices[i].id);
        clients[i] = l->ld[i].client;
    }
    if (r == 0)
        r = sim__mqtt_await(clients, l->n, l->opts->broker);
    free(clients);
    for (size_t i = 0; i < l->n && r == 0; i++) {
        snprintf(topic, sizeof(topic), "devices/%s/status", l->devices[i].id);
        r = sim__mqtt_send(l->ld[i].client, topic, "online", &l->ld[i].last_token);
    }
    for (size_t i = 0; i < l->n && r == 0; i++)
        r = sim__mqtt_wait(l->ld[i].client, l->ld[i].last_token);
    return r;
}

static void close_all(struct live *l)
{
    for (size_t i = 0; l->ld && i < l->n; i++) {
        if (l->ld[i].client && l->ld[i].sent_any)
            MQTTAsync_waitForCompletion(l->ld[i].client, l->ld[i].last_token, SIM__ACK_WAIT_MS);
        sim__mqtt_close(&l->ld[i].client);
    }
}

/* Index of the device due first. */
static size_t next_due(const struct live *l)
{
    size_t best = 0;
    for (size_t i = 1; i < l->n; i++)
        if (l->ld[i].next_ns < l->ld[best].next_ns)
            best = i;
    return best;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S)};
    if (ns > 0)
        nanosleep(&ts, NULL); /* EINTR is welcome: a stop signal */
}

/* Reports of every device, each when due, until a stop. */
static int live_loop(struct live *l, volatile sig_atomic_t *stop)
{
    const struct sim__live_opts *o = l->opts;
    int64_t start = gw_monotonic_ns(), next_line = start + NS_PER_S;
    int64_t end = o->duration > 0 ? start + (int64_t)(o->duration * 1e9) : INT64_MAX;
    char payload[256];

    for (size_t i = 0; i < l->n; i++) {
        l->ld[i].next_ns = start + (int64_t)(sim_rng_uniform(&l->rng, 0, 1) *
                                             (double)next_interval_ns(l, &l->devices[i]));
        l->ld[i].drained_ns = start;
    }
    while (!*stop && (!o->count || l->sent < o->count)) {
        int64_t now = gw_monotonic_ns();
        size_t i = next_due(l);
        if (now >= end)
            break;
        if (now >= next_line && !o->quiet) {
            printf("sent %" PRIu64 "\n", l->sent);
            fflush(stdout);
            next_line += NS_PER_S;
        }
        if (l->ld[i].next_ns > now) {
            int64_t wait = l->ld[i].next_ns - now;
            sleep_ns(wait < MAX_SLEEP_NS ? wait : MAX_SLEEP_NS);
            continue;
        }
        drain(l, i, now);
        int len = sim_reading_format(&l->devices[i], &l->rng, false, gw_now_ns() / 1000000, payload,
                                     sizeof(payload));
        int r = len < 0 ? len : send_one(l, i, "telemetry", payload);
        if (r < 0) {
            gw_error(MODULE, "device %s: cannot send its reading: %s", l->devices[i].id,
                     strerror(-r));
            return r;
        }
        l->sent++;
        l->ld[i].next_ns += next_interval_ns(l, &l->devices[i]);
    }
    return 0;
}

int sim__live_run(const struct sim__live_opts *opts, struct sim_device *devices, size_t count,
                  volatile sig_atomic_t *stop)
{
    struct live l = {.opts = opts, .devices = devices, .n = count};
    int64_t start = gw_monotonic_ns();
    int r;

    if (!opts->coap_uri && count > MAX_MQTT_DEVICES) {
        gw_error(MODULE,
                 "one MQTT connection per device: at most %d devices "
                 "(--limit-devices), or --transport coap",
                 MAX_MQTT_DEVICES);
        return -EINVAL;
    }
    l.ld = calloc(count, sizeof(*l.ld));
    if (!l.ld)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++)
        l.ld[i].charge = devices[i].battery;
    sim_rng_seed(&l.rng, opts->seed);
    if (opts->coap_uri) {
        l.coap = sim_coap_new(opts->coap_uri, opts->content_format);
        r = l.coap ? 0 : -ECONNREFUSED;
    } else {
        r = connect_all(&l);
    }
    if (r == 0) {
        gw_info(MODULE, "%zu devices %s, heartbeat scale %g, seed %" PRIu64, count,
                opts->coap_uri ? "posting over CoAP" : "connected with their Last Will",
                opts->scale, opts->seed);
        r = live_loop(&l, stop);
    }
    close_all(&l);
    sim_coap_free(l.coap);
    printf("summary: devices %zu, sent %" PRIu64 ", failed %" PRIu64 ", refused %" PRIu64
           ", elapsed %.2f s\n",
           count, l.sent, __atomic_load_n(&l.failed, __ATOMIC_RELAXED), l.coap_refused,
           (double)(gw_monotonic_ns() - start) / 1e9);
    fflush(stdout);
    free(l.ld);
    if (r == 0 && (l.failed || l.coap_refused))
        r = -EIO;
    return r;
}
