/* The do-nothing subscriber and the windowed publisher of gridsim's broker
 * benchmarks (sim_bench_mqtt.h). */
#include "sim_bench_mqtt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw_log.h"

#define SLOT_WAIT_NS (10LL * 1000000000)

/* ---- subscriber --------------------------------------------------------- */

static int sub_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
    struct sim_sub *s = context;
    int64_t now = gw_monotonic_ns();

    (void)topic_len;
    if (__atomic_add_fetch(&s->received, 1, __ATOMIC_RELAXED) == 1)
        __atomic_store_n(&s->first_ns, now, __ATOMIC_RELAXED);
    __atomic_store_n(&s->last_ns, now, __ATOMIC_RELAXED);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1; /* Paho acknowledges a QoS 1 message once this returns 1 */
}

static void sub_subscribed(void *context, MQTTAsync_successData5 *response)
{
    struct sim_sub *s = context;

    (void)response;
    __atomic_store_n(&s->subscribed, 1, __ATOMIC_RELEASE);
}

static void sub_connected(void *context, MQTTAsync_successData5 *response)
{
    struct sim_sub *s = context;
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;

    (void)response;
    __atomic_store_n(&s->connected, 1, __ATOMIC_RELEASE);
    opts.context = s;
    opts.onSuccess5 = sub_subscribed;
    MQTTAsync_subscribe(s->client, s->topic, s->qos, &opts);
}

int sim_sub_init(struct sim_sub *s, const char *uri, const char *client_id, const char *topic,
                 int qos, int session_expiry_s)
{
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;

    memset(s, 0, sizeof(*s));
    snprintf(s->topic, sizeof(s->topic), "%s", topic);
    s->qos = qos;
    s->session_expiry_s = session_expiry_s;
    if (MQTTAsync_createWithOptions(&s->client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &create) != MQTTASYNC_SUCCESS) {
        s->client = NULL;
        return -EIO;
    }
    MQTTAsync_setCallbacks(s->client, s, NULL, sub_message, NULL);
    return 0;
}

int sim_sub_connect(struct sim_sub *s)
{
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
    MQTTProperties props = MQTTProperties_initializer;
    MQTTProperty expiry = {.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL,
                           .value.integer4 = (unsigned)s->session_expiry_s};
    int r;

    if (s->session_expiry_s > 0) {
        MQTTProperties_add(&props, &expiry);
        opts.connectProperties = &props;
    }
    opts.cleanstart = s->session_expiry_s == 0;
    opts.onSuccess5 = sub_connected;
    opts.context = s;
    s->connected = s->subscribed = 0;
    r = MQTTAsync_connect(s->client, &opts);
    MQTTProperties_free(&props);
    return r == MQTTASYNC_SUCCESS ? 0 : -EIO;
}

uint64_t sim_sub_received(struct sim_sub *s)
{
    return __atomic_load_n(&s->received, __ATOMIC_RELAXED);
}

void sim_sub_reset(struct sim_sub *s)
{
    __atomic_store_n(&s->received, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->first_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->last_ns, 0, __ATOMIC_RELAXED);
}

void sim_sub_disconnect(struct sim_sub *s)
{
    MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer5;

    if (!s->client)
        return;
    MQTTAsync_disconnect(s->client, &opts);
    for (int i = 0; i < 100 && MQTTAsync_isConnected(s->client); i++)
        usleep(20 * 1000);
}

void sim_sub_destroy(struct sim_sub *s)
{
    if (s->client)
        MQTTAsync_destroy(&s->client);
    s->client = NULL;
}

bool sim_bench_wait_flag(int *flag, int limit_s)
{
    for (int i = 0; i < limit_s * 100; i++) {
        if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
            return true;
        usleep(10 * 1000);
    }
    return false;
}

/* ---- publisher ---------------------------------------------------------- */

static void pub_done(struct sim_pub *p, bool ok)
{
    pthread_mutex_lock(&p->lock);
    p->in_flight--;
    if (ok)
        p->acked++;
    else
        p->failed++;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

static void pub_ok(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    pub_done(context, true);
}

static void pub_failed(void *context, MQTTAsync_failureData5 *response)
{
    (void)response;
    pub_done(context, false);
}

static void pub_connected(void *context, MQTTAsync_successData5 *response)
{
    struct sim_pub *p = context;

    (void)response;
    __atomic_store_n(&p->connected, 1, __ATOMIC_RELEASE);
}

static void pub_lost(void *context, char *cause)
{
    struct sim_pub *p = context;

    (void)cause;
    __atomic_store_n(&p->lost, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

int sim_pub_open(struct sim_pub *p, const char *uri, const char *client_id, int qos, int window)
{
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;

    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->qos = qos;
    p->window = window;
    /* Paho counts every message it holds against this, connected or not. */
    create.maxBufferedMessages = window + 100;
    if (MQTTAsync_createWithOptions(&p->client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &create) != MQTTASYNC_SUCCESS) {
        p->client = NULL;
        return -EIO;
    }
    MQTTAsync_setCallbacks(p->client, p, pub_lost, NULL, NULL);
    opts.cleanstart = 1;
    opts.onSuccess5 = pub_connected;
    opts.context = p;
    if (MQTTAsync_connect(p->client, &opts) != MQTTASYNC_SUCCESS ||
        !sim_bench_wait_flag(&p->connected, 10))
        return -EIO;
    return 0;
}

static void deadline_in(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ns / 1000000000);
    ts->tv_nsec += (long)(ns % 1000000000);
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int sim_pub_send(struct sim_pub *p, const char *topic, const void *payload, int len)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int64_t give_up = gw_monotonic_ns() + SLOT_WAIT_NS;

    msg.payload = (void *)payload;
    msg.payloadlen = len;
    msg.qos = p->qos;
    ro.onSuccess5 = pub_ok;
    ro.onFailure5 = pub_failed;
    ro.context = p;
    for (;;) {
        struct timespec ts;
        int rc;

        if (__atomic_load_n(&p->lost, __ATOMIC_ACQUIRE))
            return -EIO;
        pthread_mutex_lock(&p->lock);
        if (p->in_flight >= p->window) {
            if (gw_monotonic_ns() >= give_up) {
                pthread_mutex_unlock(&p->lock);
                return -ETIMEDOUT;
            }
            deadline_in(&ts, 100 * 1000000);
            pthread_cond_timedwait(&p->freed, &p->lock, &ts);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        p->in_flight++;
        pthread_mutex_unlock(&p->lock);
        rc = MQTTAsync_sendMessage(p->client, topic, &msg, &ro);
        if (rc == MQTTASYNC_SUCCESS)
            return 0;
        pthread_mutex_lock(&p->lock);
        p->in_flight--;
        if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES && gw_monotonic_ns() < give_up) {
            /* Paho's buffer is full: wait for a completion, never spin. */
            deadline_in(&ts, 10 * 1000000);
            pthread_cond_timedwait(&p->freed, &p->lock, &ts);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        return -EIO;
    }
}

int sim_pub_drain(struct sim_pub *p, int limit_s)
{
    int64_t give_up = gw_monotonic_ns() + (int64_t)limit_s * 1000000000;
    int r = 0;

    pthread_mutex_lock(&p->lock);
    while (p->in_flight > 0) {
        struct timespec ts;

        if (gw_monotonic_ns() >= give_up || __atomic_load_n(&p->lost, __ATOMIC_ACQUIRE)) {
            r = -ETIMEDOUT;
            break;
        }
        deadline_in(&ts, 100 * 1000000);
        pthread_cond_timedwait(&p->freed, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

void sim_pub_close(struct sim_pub *p)
{
    MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer5;

    if (!p->client)
        return;
    MQTTAsync_disconnect(p->client, &opts);
    for (int i = 0; i < 100 && MQTTAsync_isConnected(p->client); i++)
        usleep(20 * 1000);
    MQTTAsync_destroy(&p->client);
    p->client = NULL;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
}
