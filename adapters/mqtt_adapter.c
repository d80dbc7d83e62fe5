#include "mqtt_adapter.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw_adapter.h"
#include "gw_config.h"
#include "gw_log.h"

#define DEVICE_ID_MAX 128
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000

static const char *const subscriptions[] = { "devices/+/telemetry", "devices/+/event" };
#define N_SUBSCRIPTIONS ((int)(sizeof(subscriptions) / sizeof(subscriptions[0])))

struct mqtt_impl {
    struct gw_adapter *adapter;
    MQTTAsync client;
    char *uri;
    char *client_id;
    char *username;
    char *password;
    int qos;
    int protocol;
    int keepalive_s;
    int session_expiry_s;

    int stopping;        /* set once stop begins; read by Paho's threads */
    int retry_ms;        /* next wait before a failed first connect is retried */
    struct gw_adapter_stats stats;
};

static struct gw_log_limit conn_log_limit = GW_LOG_LIMIT_INIT(0.2, 3.0);

static void count(uint64_t *counter)
{
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

int mqtt_parse_topic(const char *topic, int topic_len, char *ret_device_id, int id_size,
                     int *ret_channel)
{
    static const char prefix[] = "devices/";
    const int prefix_len = (int)sizeof(prefix) - 1;
    const char *id, *slash, *end = topic + topic_len;
    int id_len;

    if (topic_len <= prefix_len || memcmp(topic, prefix, (size_t)prefix_len) != 0)
        return -EINVAL;
    id = topic + prefix_len;
    slash = memchr(id, '/', (size_t)(end - id));
    if (!slash)
        return -EINVAL;
    id_len = (int)(slash - id);
    if (id_len == 0 || id_len >= id_size || memchr(id, '\0', (size_t)id_len))
        return -EINVAL;
    slash++;
    if (end - slash == 9 && memcmp(slash, "telemetry", 9) == 0)
        *ret_channel = GW_CHANNEL_TELEMETRY;
    else if (end - slash == 5 && memcmp(slash, "event", 5) == 0)
        *ret_channel = GW_CHANNEL_EVENT;
    else if (end - slash == 6 && memcmp(slash, "status", 6) == 0)
        *ret_channel = GW_CHANNEL_STATUS;
    else
        return -EINVAL;
    memcpy(ret_device_id, id, (size_t)id_len);
    ret_device_id[id_len] = '\0';
    return 0;
}

/* Runs on Paho's receive thread. Returning 1 lets Paho send the PUBACK;
 * by then the core has the reading (or has refused it for good), so a
 * crash before this point makes the broker redeliver, never lose. */
static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *message)
{
    struct mqtt_impl *m = context;
    struct gw_adapter *a = m->adapter;
    char device_id[DEVICE_ID_MAX];
    char reason[256];
    int channel;
    enum gw_ingest_result result;

    if (topic_len == 0)
        topic_len = (int)strlen(topic);
    count(&m->stats.received);
    if (mqtt_parse_topic(topic, topic_len, device_id, sizeof(device_id), &channel) < 0) {
        count(&m->stats.rejected);
        gw_log_limited(&conn_log_limit, GW_LOG_WARN, "mqtt", "message on unexpected topic %.*s",
                       topic_len > 200 ? 200 : topic_len, topic);
        goto out;
    }
    struct gw_message msg = {
        .device_id = device_id,
        .channel = (enum gw_channel)channel,
        .format = PAYLOAD_JSON,
        .payload = message->payload,
        .len = message->payloadlen > 0 ? (size_t)message->payloadlen : 0,
    };
    result = a->ingest(a->core, &msg, reason, sizeof(reason));
    if (result == GW_INGEST_OK)
        count(&m->stats.accepted);
    else
        count(&m->stats.rejected);
out:
    MQTTAsync_freeMessage(&message);
    MQTTAsync_free(topic);
    return 1;
}

static void on_subscribed5(void *context, MQTTAsync_successData5 *response)
{
    struct mqtt_impl *m = context;
    int n = response->alt.sub.reasonCodeCount;

    /* A single subscription reports in reasonCode, several in the array. */
    for (int i = 0; i < (n > 0 ? n : 1); i++) {
        enum MQTTReasonCodes code = n > 0 ? response->alt.sub.reasonCodes[i] : response->reasonCode;
        if (code >= MQTTREASONCODE_UNSPECIFIED_ERROR)
            gw_error("mqtt", "broker refused subscription %s: %s", subscriptions[i],
                     MQTTReasonCode_toString(code));
    }
    gw_info("mqtt", "subscribed to devices/+/telemetry and devices/+/event at QoS %d on %s",
            m->qos, m->uri);
}

static void on_subscribed(void *context, MQTTAsync_successData *response)
{
    (void)response;
    on_subscribed5(context, &(MQTTAsync_successData5){ .reasonCode = MQTTREASONCODE_SUCCESS });
}

static void on_subscribe_failed5(void *context, MQTTAsync_failureData5 *response)
{
    struct mqtt_impl *m = context;
    gw_error("mqtt", "subscribing on %s failed: %s", m->uri,
             response->message ? response->message : MQTTAsync_strerror(response->code));
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
    struct mqtt_impl *m = context;
    gw_error("mqtt", "subscribing on %s failed: %s", m->uri,
             response->message ? response->message : MQTTAsync_strerror(response->code));
}

/* Called for the first connect and every automatic reconnect. The broker
 * keeps the subscriptions of a persistent session, but subscribing again
 * costs nothing and covers a session the broker has expired. */
static void on_connected(void *context, char *cause)
{
    struct mqtt_impl *m = context;
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    int qos[N_SUBSCRIPTIONS];
    int r;

    (void)cause;
    count(&m->stats.connects);
    m->retry_ms = RETRY_MIN_MS;
    gw_info("mqtt", "connected to %s as %s (MQTT %s)", m->uri, m->client_id,
            m->protocol == 5 ? "5" : "3.1.1");
    for (int i = 0; i < N_SUBSCRIPTIONS; i++)
        qos[i] = m->qos;
    opts.context = m;
    if (m->protocol == 5) {
        opts.onSuccess5 = on_subscribed5;
        opts.onFailure5 = on_subscribe_failed5;
    } else {
        opts.onSuccess = on_subscribed;
        opts.onFailure = on_subscribe_failed;
    }
    r = MQTTAsync_subscribeMany(m->client, N_SUBSCRIPTIONS, (char *const *)subscriptions, qos,
                                &opts);
    if (r != MQTTASYNC_SUCCESS)
        gw_error("mqtt", "cannot subscribe on %s: %s", m->uri, MQTTAsync_strerror(r));
}

static void on_connection_lost(void *context, char *cause)
{
    struct mqtt_impl *m = context;

    count(&m->stats.connection_losses);
    gw_warn("mqtt", "connection to %s lost (%s); reconnecting", m->uri,
            cause ? cause : "no reason given");
}

static int connect_client(struct mqtt_impl *m);

/* Paho retries by itself only after a first successful connect, so the
 * first connect is retried here, backing off, until it works or the
 * adapter stops. Sleeping on Paho's thread is harmless: there is no
 * session yet, so nothing waits behind us. */
static void retry_connect(struct mqtt_impl *m, const char *why)
{
    int waited = 0;

    gw_log_limited(&conn_log_limit, GW_LOG_WARN, "mqtt", "cannot connect to %s: %s; retrying",
                   m->uri, why);
    while (waited < m->retry_ms && !__atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE)) {
        usleep(100 * 1000);
        waited += 100;
    }
    m->retry_ms = m->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : m->retry_ms * 2;
    if (!__atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE))
        connect_client(m);
}

static void on_connect_failed5(void *context, MQTTAsync_failureData5 *response)
{
    struct mqtt_impl *m = context;
    const char *why = response->message ? response->message : MQTTAsync_strerror(response->code);

    if (response->reasonCode != MQTTREASONCODE_SUCCESS)
        why = MQTTReasonCode_toString(response->reasonCode);
    retry_connect(m, why);
}

static void on_connect_failed(void *context, MQTTAsync_failureData *response)
{
    struct mqtt_impl *m = context;
    retry_connect(m, response->message ? response->message : MQTTAsync_strerror(response->code));
}

static int connect_client(struct mqtt_impl *m)
{
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions opts5 = MQTTAsync_connectOptions_initializer5;
    MQTTProperties props = MQTTProperties_initializer;
    MQTTProperty expiry = {
        .identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL,
        .value.integer4 = (unsigned int)m->session_expiry_s,
    };
    MQTTAsync_connectOptions *o;
    int r;

    if (m->protocol == 5) {
        o = &opts5;
        /* A persistent session: the broker keeps our subscriptions and the
         * QoS 1 messages that arrive while we are away. */
        o->cleanstart = 0;
        MQTTProperties_add(&props, &expiry);
        o->connectProperties = &props;
        o->onFailure5 = on_connect_failed5;
    } else {
        o = &opts;
        o->MQTTVersion = MQTTVERSION_3_1_1;
        o->cleansession = 0;
        o->onFailure = on_connect_failed;
    }
    o->keepAliveInterval = m->keepalive_s;
    o->automaticReconnect = 1;
    o->minRetryInterval = 1;
    o->maxRetryInterval = RETRY_MAX_MS / 1000;
    o->username = m->username;
    o->password = m->password;
    o->context = m;
    r = MQTTAsync_connect(m->client, o);
    MQTTProperties_free(&props);
    if (r != MQTTASYNC_SUCCESS) {
        gw_error("mqtt", "cannot start connecting to %s: %s", m->uri, MQTTAsync_strerror(r));
        return -EIO;
    }
    return 0;
}

static void trace_to_log(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
    if (level >= MQTTASYNC_TRACE_ERROR)
        gw_warn("paho", "%s", message);
    else
        gw_debug("paho", "%s", message);
}

static bool mqtt_enabled(const struct gw_config *cfg)
{
    return cfg->mqtt.enabled;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static void mqtt_destroy(struct gw_adapter *a)
{
    struct mqtt_impl *m = a->impl;

    if (!m)
        return;
    if (m->client)
        MQTTAsync_destroy(&m->client);
    free(m->uri);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m);
    a->impl = NULL;
}

static int mqtt_init(struct gw_adapter *a, const struct gw_config *cfg)
{
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
    struct mqtt_impl *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return -ENOMEM;
    a->impl = m;
    m->adapter = a;
    m->uri = strdup(cfg->mqtt.uri);
    m->client_id = strdup(cfg->mqtt.client_id);
    m->username = dup_or_null(cfg->mqtt.username);
    m->password = dup_or_null(cfg->mqtt.password);
    if (!m->uri || !m->client_id || (cfg->mqtt.username && !m->username) ||
        (cfg->mqtt.password && !m->password)) {
        mqtt_destroy(a);
        return -ENOMEM;
    }
    m->qos = cfg->mqtt.qos;
    m->protocol = cfg->mqtt.protocol;
    m->keepalive_s = cfg->mqtt.keepalive_s;
    m->session_expiry_s = cfg->mqtt.session_expiry_s;
    m->retry_ms = RETRY_MIN_MS;

    MQTTAsync_setTraceCallback(trace_to_log);
    MQTTAsync_setTraceLevel(gw_log_threshold >= GW_LOG_DEBUG ? MQTTASYNC_TRACE_PROTOCOL
                                                            : MQTTASYNC_TRACE_ERROR);
    create.MQTTVersion = m->protocol == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    /* Paho's persistence is off on purpose: the gateway's journal is the
     * durable copy, and Paho's file store loses messages under MQTT 5. */
    r = MQTTAsync_createWithOptions(&m->client, m->uri, m->client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &create);
    if (r != MQTTASYNC_SUCCESS) {
        gw_error("mqtt", "cannot create a client for %s: %s", m->uri, MQTTAsync_strerror(r));
        m->client = NULL;
        mqtt_destroy(a);
        return -EINVAL;
    }
    MQTTAsync_setCallbacks(m->client, m, on_connection_lost, on_message, NULL);
    MQTTAsync_setConnected(m->client, m, on_connected);
    return 0;
}

static int mqtt_start(struct gw_adapter *a)
{
    return connect_client(a->impl);
}

static void mqtt_stop(struct gw_adapter *a)
{
    struct mqtt_impl *m = a->impl;
    MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions opts5 = MQTTAsync_disconnectOptions_initializer5;

    __atomic_store_n(&m->stopping, 1, __ATOMIC_RELEASE);
    if (MQTTAsync_isConnected(m->client)) {
        MQTTAsync_disconnect(m->client, m->protocol == 5 ? &opts5 : &opts);
        /* The disconnect is asynchronous; wait for it, bounded, so no
         * callback runs after stop returns. */
        for (int i = 0; i < 50 && MQTTAsync_isConnected(m->client); i++)
            usleep(20 * 1000);
    }
    /* MQTTAsync_destroy (in destroy) joins Paho's threads; any message
     * callback still running finishes before that returns. */
}

static void mqtt_stats(struct gw_adapter *a, struct gw_adapter_stats *ret)
{
    struct mqtt_impl *m = a->impl;

    ret->received = __atomic_load_n(&m->stats.received, __ATOMIC_RELAXED);
    ret->accepted = __atomic_load_n(&m->stats.accepted, __ATOMIC_RELAXED);
    ret->rejected = __atomic_load_n(&m->stats.rejected, __ATOMIC_RELAXED);
    ret->connects = __atomic_load_n(&m->stats.connects, __ATOMIC_RELAXED);
    ret->connection_losses = __atomic_load_n(&m->stats.connection_losses, __ATOMIC_RELAXED);
}

const struct gw_adapter_ops mqtt_adapter_ops = {
    .name = "mqtt",
    .enabled = mqtt_enabled,
    .init = mqtt_init,
    .start = mqtt_start,
    .stop = mqtt_stop,
    .stats = mqtt_stats,
    .destroy = mqtt_destroy,
};
