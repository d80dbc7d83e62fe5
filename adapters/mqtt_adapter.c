#include "mqtt_adapter.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "gw_adapter.h"
#include "gw_config.h"
#include "gw_log.h"

#define DEVICE_ID_MAX 128
#define FILTER_MAX 65535     /* an MQTT string's length field is 16 bits */
#define CONNECT_TIMEOUT_S 10 /* Paho fails a connect that gets no CONNACK by then */
/* A connect with no answer from Paho at all after this long is taken as
 * failed, so a lost callback can never leave the adapter waiting forever. */
#define CONNECT_WATCHDOG_NS ((int64_t)(CONNECT_TIMEOUT_S + 5) * 1000000000)
/* While connected, the reconnect thread checks this often that Paho still
 * is, in case a loss ever came without a callback. */
#define LIVENESS_CHECK_NS ((int64_t)1000000000)
#define DISCONNECT_WAIT_MS 5000
#define SYSTEM_CA_PATH "/etc/ssl/certs"
#define MAX_ATTEMPT 1000 /* the backoff is capped long before; keeps the counter bounded */
#define NOTICE_CONTENT_TYPE "application/json"
/* Case notices: a burst of case events must not outrun Paho, which refuses
 * sends past maxBufferedMessages (-12) even while connected. They wait in
 * our own queue, bounded so an outage cannot eat memory (when it is full
 * the oldest is dropped: a terminal wants the latest state), and go out
 * with at most
 * NOTICE_WINDOW QoS 1 messages unacknowledged: mosquitto's default
 * max_inflight_messages, which kept QoS 1 at ~14k msg/s (STACK-NOTES,
 * gotcha 2). */
#define NOTICE_QUEUE_MAX 10000
#define NOTICE_WINDOW 20
/* stop lets queued notices go out for this long while still connected. */
#define NOTICE_DRAIN_NS ((int64_t)2000000000)
/* After Paho refused a send, the publisher sleeps until a send completes or
 * the connection changes, and at most this long, so it never polls. */
#define NOTICE_RETRY_NS ((int64_t)100000000)

enum conn_state {
    CONN_IDLE,       /* not started, or stopped */
    CONN_WAITING,    /* a (re)connect is due at due_ns */
    CONN_CONNECTING, /* MQTTAsync_connect issued, no answer yet */
    CONN_CONNECTED,
};

/* One case notice, copied at publish: the caller's buffers are its own. */
struct notice {
    struct notice *next;
    char *topic; /* points into data, after the payload */
    size_t len;
    char data[];
};

struct mqtt_impl {
    struct gw_adapter *adapter;
    MQTTAsync client;
    char *uri;
    char *client_id;
    char *username;
    char *password;
    char **filters; /* what is subscribed, $share/ prefix included */
    int *filter_qos;
    int n_filters;
    char *filters_text; /* "a, b, c" for the log */
    int qos;
    int protocol;
    int keepalive_s;
    int session_expiry_s;
    int reconnect_min_ms;
    int reconnect_max_ms;

    bool tls;
    char *ca_file;
    char *cert_file;
    char *key_file;
    bool tls_verify;

    /* Owned by the thread that calls init, start, stop and destroy. */
    bool sync_ready; /* lock, wake and pub_wake are initialised */
    pthread_t reconnector;
    bool reconnector_running;
    pthread_t publisher;
    bool publisher_running;

    /* Connection state, shared by Paho's threads, the reconnect thread, the
     * publisher thread, publish and stop: the fields from `stopping` to
     * `pub_closed` are under `lock`. `wake` (CLOCK_MONOTONIC) is broadcast
     * on every change of state, for the reconnect thread; `pub_wake` on
     * every change of state too and whenever a notice is queued or
     * completes, for the publisher and a stop that drains. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t pub_wake;
    bool stopping;
    enum conn_state state;
    int attempt;         /* the backoff's exponent: reconnects since the last success */
    int failures;        /* failed connects since the last success, for the log */
    int64_t due_ns;      /* CONN_WAITING: when to try */
    int64_t deadline_ns; /* CONN_CONNECTING: when to give up on Paho */
    uint32_t random;     /* xorshift32 state for the jitter */
    /* Notices not yet handed to Paho, oldest first. */
    struct notice *q_head, *q_tail;
    size_t q_len;
    int inflight;         /* handed to Paho, no PUBACK or failure yet */
    int window;           /* at most this many in flight */
    uint64_t completions; /* PUBACKs and failures so far: what a refused send waits for */
    bool pub_closed;      /* stop has counted what was left: late answers are not counted */

    struct gw_log_limit conn_log_limit; /* connect attempts and losses */
    struct gw_adapter_stats stats;      /* __atomic builtins */
};

/* Device-triggered lines (topics nobody should publish to) and Paho's and
 * OpenSSL's own error lines, which repeat on every failed attempt. */
static struct gw_log_limit topic_log_limit = GW_LOG_LIMIT_INIT(0.2, 5.0);
static struct gw_log_limit paho_log_limit = GW_LOG_LIMIT_INIT(0.5, 10.0);
/* Notices refused or lost: one line per failure would flood in an outage. */
static struct gw_log_limit publish_log_limit = GW_LOG_LIMIT_INIT(0.2, 5.0);

static void count(uint64_t *counter)
{
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* ---- pure helpers (unit-tested) ---------------------------------------- */

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

int mqtt_check_filter(const char *filter, const char **ret_why)
{
    size_t len = strlen(filter);

    if (len == 0) {
        *ret_why = "empty topic filter";
        return -EINVAL;
    }
    if (len > FILTER_MAX) {
        *ret_why = "longer than 65535 bytes";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        bool level_start = i == 0 || filter[i - 1] == '/';
        bool level_end = i + 1 == len || filter[i + 1] == '/';

        if (filter[i] == '+' && !(level_start && level_end)) {
            *ret_why = "'+' must be a whole level";
            return -EINVAL;
        }
        if (filter[i] == '#' && !(level_start && i + 1 == len)) {
            *ret_why = "'#' must be a whole level and the last one";
            return -EINVAL;
        }
    }
    return 0;
}

static char *trimmed_copy(const char *start, const char *end)
{
    char *s;

    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    s = malloc((size_t)(end - start) + 1);
    if (!s)
        return NULL;
    memcpy(s, start, (size_t)(end - start));
    s[end - start] = '\0';
    return s;
}

static char *format_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format_error(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

void mqtt_free_filters(char **filters, int n)
{
    if (!filters)
        return;
    for (int i = 0; i < n; i++)
        free(filters[i]);
    free(filters);
}

static int check_group(const char *group, const char **ret_why)
{
    if (strpbrk(group, "/+#")) {
        *ret_why = "a share name must not contain '/', '+' or '#'";
        return -EINVAL;
    }
    return 0;
}

int mqtt_build_filters(const char *topics, const char *shared_group, char ***ret_filters,
                       int *ret_n, char **ret_error)
{
    char **filters = NULL;
    int n = 0, cap = 0, r = -ENOMEM;
    const char *why, *p = topics ? topics : "";
    bool shared = shared_group && *shared_group;

    *ret_error = NULL;
    if (shared && check_group(shared_group, &why) < 0) {
        *ret_error = format_error("mqtt.shared_group: \"%s\": %s", shared_group, why);
        r = -EINVAL;
        goto fail;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        char *f = trimmed_copy(p, end);

        if (!f)
            goto fail;
        r = mqtt_check_filter(f, &why);
        if (r == 0 && strncmp(f, "$share/", 7) == 0) {
            why = "set mqtt.shared_group instead of writing $share/ into the filter";
            r = -EINVAL;
        }
        if (r < 0) {
            *ret_error = format_error("mqtt.topics: \"%s\": %s", f, why);
            free(f);
            goto fail;
        }
        r = -ENOMEM;
        if (shared) {
            char *s = format_error("$share/%s/%s", shared_group, f);
            free(f);
            if (!s)
                goto fail;
            f = s;
        }
        if (n == cap) {
            int new_cap = cap ? cap * 2 : 4;
            char **grown = realloc(filters, (size_t)new_cap * sizeof(*filters));
            if (!grown) {
                free(f);
                goto fail;
            }
            filters = grown;
            cap = new_cap;
        }
        filters[n++] = f;
        if (!comma)
            break;
        p = comma + 1;
    }
    *ret_filters = filters;
    *ret_n = n;
    return 0;

fail:
    mqtt_free_filters(filters, n);
    return r;
}

int mqtt_content_type_format(const char *content_type, size_t len, enum payload_format *ret_format)
{
    static const struct {
        const char *type;
        enum payload_format format;
    } known[] = {
        { "application/json", PAYLOAD_JSON },
        { "application/senml+json", PAYLOAD_SENML_JSON },
        { "application/senml+cbor", PAYLOAD_SENML_CBOR },
    };
    const char *semi = memchr(content_type, ';', len);
    size_t start = 0, end = semi ? (size_t)(semi - content_type) : len;

    while (start < end && (content_type[start] == ' ' || content_type[start] == '\t'))
        start++;
    while (end > start && (content_type[end - 1] == ' ' || content_type[end - 1] == '\t'))
        end--;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i].type) == end - start &&
            strncasecmp(content_type + start, known[i].type, end - start) == 0) {
            *ret_format = known[i].format;
            return 0;
        }
    }
    return -ENOENT;
}

enum payload_format mqtt_select_format(int channel, const char *content_type, size_t ct_len,
                                       const void *payload, size_t len)
{
    enum payload_format format;

    if (channel == GW_CHANNEL_STATUS)
        return PAYLOAD_JSON;
    if (content_type && mqtt_content_type_format(content_type, ct_len, &format) == 0)
        return format;
    return payload_guess_format(payload, len);
}

int mqtt_backoff_ms(int attempt, int min_ms, int max_ms, uint32_t random)
{
    int64_t cap, half, delay;

    if (min_ms < 1)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    cap = min_ms;
    for (int i = 0; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    half = cap / 2;
    delay = half + (int64_t)(random % (uint32_t)(cap - half + 1));
    return delay < 1 ? 1 : (int)delay;
}

/* ---- messages ---------------------------------------------------------- */

/* Runs on Paho's receive thread. Returning 1 lets Paho send the PUBACK;
 * by then the core has the reading (or has refused it for good), so a
 * crash before this point makes the broker redeliver, never lose.
 * Never return 0: Paho would then ack first and keep the message in an
 * unbounded in-memory queue that a kill -9 loses (DESIGN.md, "Facts to
 * design around"). Back-pressure is ingest blocking here instead: while
 * this runs nothing more is read, so the broker keeps the rest. */
static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *message)
{
    struct mqtt_impl *m = context;
    struct gw_adapter *a = m->adapter;
    char device_id[DEVICE_ID_MAX];
    char reason[256];
    const char *content_type = NULL;
    size_t ct_len = 0, len = message->payloadlen > 0 ? (size_t)message->payloadlen : 0;
    int channel;
    enum gw_ingest_result result;

    if (topic_len == 0)
        topic_len = (int)strlen(topic);
    count(&m->stats.received);
    if (mqtt_parse_topic(topic, topic_len, device_id, sizeof(device_id), &channel) < 0) {
        count(&m->stats.rejected);
        gw_log_limited(&topic_log_limit, GW_LOG_WARN, "mqtt",
                       "message on unexpected topic %.*s (not devices/{id}/telemetry|event|"
                       "status): dropped",
                       topic_len > 200 ? 200 : topic_len, topic);
        goto out;
    }
    if (m->protocol == 5) {
        MQTTProperty *ct =
            MQTTProperties_getProperty(&message->properties, MQTTPROPERTY_CODE_CONTENT_TYPE);
        if (ct && ct->value.data.data) {
            content_type = ct->value.data.data;
            ct_len = ct->value.data.len > 0 ? (size_t)ct->value.data.len : 0;
        }
    }
    struct gw_message msg = {
        .device_id = device_id,
        .channel = (enum gw_channel)channel,
        .format = mqtt_select_format(channel, content_type, ct_len, message->payload, len),
        .payload = message->payload,
        .len = len,
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

/* ---- subscriptions ----------------------------------------------------- */

static void log_subscribed(struct mqtt_impl *m, int n_refused)
{
    if (n_refused == 0)
        gw_info("mqtt", "subscribed to %s at QoS %d on %s", m->filters_text, m->qos, m->uri);
    else
        gw_error("mqtt", "subscribed on %s with %d of %d filter(s) refused", m->uri, n_refused,
                 m->n_filters);
}

static void on_subscribed5(void *context, MQTTAsync_successData5 *response)
{
    struct mqtt_impl *m = context;
    int n = response->alt.sub.reasonCodeCount, refused = 0;

    /* A single subscription reports in reasonCode, several in the array. */
    for (int i = 0; i < (n > 1 ? n : 1) && i < m->n_filters; i++) {
        enum MQTTReasonCodes code = n > 1 ? response->alt.sub.reasonCodes[i] : response->reasonCode;
        if (code >= MQTTREASONCODE_UNSPECIFIED_ERROR) {
            refused++;
            gw_error("mqtt", "broker refused subscription %s: %s", m->filters[i],
                     MQTTReasonCode_toString(code));
        }
    }
    log_subscribed(m, refused);
}

static void on_subscribed(void *context, MQTTAsync_successData *response)
{
    struct mqtt_impl *m = context;
    int refused = 0;

    /* MQTT 3.1.1 SUBACK: granted QoS per filter, 0x80 for a refusal. */
    for (int i = 0; i < m->n_filters; i++) {
        int granted;

        if (m->n_filters > 1 && !response->alt.qosList)
            break; /* Paho could not allocate the list */
        granted = m->n_filters > 1 ? response->alt.qosList[i] : response->alt.qos;
        if (granted == 0x80) {
            refused++;
            gw_error("mqtt", "broker refused subscription %s", m->filters[i]);
        }
    }
    log_subscribed(m, refused);
}

static void on_subscribe_failed5(void *context, MQTTAsync_failureData5 *response)
{
    struct mqtt_impl *m = context;
    const char *why = response->message ? response->message : MQTTAsync_strerror(response->code);

    if (response->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
        why = MQTTReasonCode_toString(response->reasonCode);
    gw_error("mqtt", "subscribing to %s on %s failed: %s", m->filters_text, m->uri, why);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
    struct mqtt_impl *m = context;
    gw_error("mqtt", "subscribing to %s on %s failed: %s", m->filters_text, m->uri,
             response->message ? response->message : MQTTAsync_strerror(response->code));
}

/* A persistent session keeps the subscriptions, but subscribing again on
 * every connect costs nothing and covers a session the broker expired or
 * lost (persistence off) while we were away. */
static void subscribe_all(struct mqtt_impl *m)
{
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    int r;

    opts.context = m;
    if (m->protocol == 5) {
        opts.onSuccess5 = on_subscribed5;
        opts.onFailure5 = on_subscribe_failed5;
    } else {
        opts.onSuccess = on_subscribed;
        opts.onFailure = on_subscribe_failed;
    }
    r = MQTTAsync_subscribeMany(m->client, m->n_filters, m->filters, m->filter_qos, &opts);
    if (r != MQTTASYNC_SUCCESS)
        gw_error("mqtt", "cannot subscribe on %s: %s", m->uri, MQTTAsync_strerror(r));
}

/* ---- connection state and reconnects ----------------------------------- */

static uint32_t next_random(struct mqtt_impl *m)
{
    uint32_t x = m->random;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    m->random = x;
    return x;
}

static struct timespec monotonic_timespec(int64_t ns)
{
    return (struct timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

/* Under m->lock, after the state (or `stopping`) changed: both the
 * reconnect thread and the publisher act on it. */
static void state_changed(struct mqtt_impl *m)
{
    pthread_cond_broadcast(&m->wake);
    pthread_cond_broadcast(&m->pub_wake);
}

/* The one way out of FROM after a failed connect or a lost connection:
 * arms the reconnect thread with the next backoff delay. Does nothing when
 * the state is no longer FROM (another callback already handled this
 * loss), so Paho reporting one loss twice schedules one attempt. While
 * stopping it only settles the state, so stop is not kept waiting. */
static void schedule_reconnect(struct mqtt_impl *m, enum conn_state from, const char *why)
{
    int delay, attempt, failures;

    pthread_mutex_lock(&m->lock);
    if (m->state != from) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    if (m->stopping) {
        m->state = CONN_IDLE;
        state_changed(m);
        pthread_mutex_unlock(&m->lock);
        return;
    }
    attempt = m->attempt;
    if (m->attempt < MAX_ATTEMPT)
        m->attempt++;
    if (from == CONN_CONNECTING && m->failures < INT_MAX)
        m->failures++;
    failures = m->failures;
    delay = mqtt_backoff_ms(attempt, m->reconnect_min_ms, m->reconnect_max_ms, next_random(m));
    m->due_ns = gw_monotonic_ns() + (int64_t)delay * 1000000;
    m->state = CONN_WAITING;
    state_changed(m);
    pthread_mutex_unlock(&m->lock);

    if (from == CONN_CONNECTED) {
        count(&m->stats.connection_losses);
        gw_log_limited(&m->conn_log_limit, GW_LOG_WARN, "mqtt",
                       "connection to %s lost: %s; reconnecting in %d ms", m->uri, why, delay);
    } else {
        gw_log_limited(&m->conn_log_limit, GW_LOG_WARN, "mqtt",
                       "cannot connect to %s (attempt %d): %s; retrying in %d ms", m->uri, failures,
                       why, delay);
    }
}

/* RECEIVE_MAX: the broker's Receive Maximum (MQTT 5), 0 when it sent none;
 * the notice window never exceeds it. */
static void on_connect_success(struct mqtt_impl *m, int session_present, int receive_max)
{
    bool stopping;

    pthread_mutex_lock(&m->lock);
    m->state = CONN_CONNECTED;
    m->attempt = 0;
    m->failures = 0;
    m->window = receive_max > 0 && receive_max < NOTICE_WINDOW ? receive_max : NOTICE_WINDOW;
    stopping = m->stopping;
    state_changed(m);
    pthread_mutex_unlock(&m->lock);

    count(&m->stats.connects);
    gw_info("mqtt", "connected to %s as %s (MQTT %s, session present: %s)", m->uri, m->client_id,
            m->protocol == 5 ? "5" : "3.1.1", session_present ? "yes" : "no");
    /* stop is waiting for this answer and disconnects next. */
    if (!stopping)
        subscribe_all(m);
}

static void on_connected5(void *context, MQTTAsync_successData5 *response)
{
    int receive_max =
        MQTTProperties_getNumericValue(&response->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);

    on_connect_success(context, response->alt.connect.sessionPresent,
                       receive_max > 0 ? receive_max : 0);
}

static void on_connected(void *context, MQTTAsync_successData *response)
{
    on_connect_success(context, response->alt.connect.sessionPresent, 0);
}

/* MQTT 3.1.1 CONNACK return codes, which Paho passes as the failure code. */
static const char *connack_reason(int code)
{
    switch (code) {
    case 1:
        return "refused by the broker: unacceptable protocol version";
    case 2:
        return "refused by the broker: client identifier rejected";
    case 3:
        return "refused by the broker: server unavailable";
    case 4:
        return "refused by the broker: bad user name or password";
    case 5:
        return "refused by the broker: not authorized";
    default:
        return NULL;
    }
}

static void on_connect_failed5(void *context, MQTTAsync_failureData5 *response)
{
    struct mqtt_impl *m = context;
    char why[256];

    /* Paho 1.3.12 passes a refusing CONNACK's reason code as `code`. */
    if (response->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
        snprintf(why, sizeof(why), "refused by the broker: %s (reason code %d)",
                 MQTTReasonCode_toString(response->reasonCode), (int)response->reasonCode);
    else if (response->code >= MQTTREASONCODE_UNSPECIFIED_ERROR && response->code <= 0xff)
        snprintf(why, sizeof(why), "refused by the broker: %s (reason code %d)",
                 MQTTReasonCode_toString((enum MQTTReasonCodes)response->code), response->code);
    else if (connack_reason(response->code))
        snprintf(why, sizeof(why), "%s", connack_reason(response->code));
    else
        snprintf(why, sizeof(why), "%s",
                 response->message ? response->message : MQTTAsync_strerror(response->code));
    schedule_reconnect(m, CONN_CONNECTING, why);
}

static void on_connect_failed(void *context, MQTTAsync_failureData *response)
{
    struct mqtt_impl *m = context;
    const char *why = connack_reason(response->code);

    if (!why)
        why = response->message ? response->message : MQTTAsync_strerror(response->code);
    schedule_reconnect(m, CONN_CONNECTING, why);
}

static void on_connection_lost(void *context, char *cause)
{
    schedule_reconnect(context, CONN_CONNECTED,
                       cause && *cause ? cause : "the broker or the network closed it");
}

/* MQTT 5: the broker said why it is closing (for example 0x8B "server
 * shutting down", 0x8E "session taken over": another gateway runs with the
 * same client_id). Paho 1.3.12 calls no connectionLost after this. */
static void on_disconnected(void *context, MQTTProperties *props, enum MQTTReasonCodes code)
{
    char why[128];

    (void)props;
    snprintf(why, sizeof(why), "the broker sent DISCONNECT: %s (reason code %d)",
             MQTTReasonCode_toString(code), (int)code);
    schedule_reconnect(context, CONN_CONNECTED, why);
}

/* OpenSSL's error queue, printed by Paho on a failed handshake. */
static int on_ssl_error(const char *str, size_t len, void *u)
{
    struct mqtt_impl *m = u;

    while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
        len--;
    gw_log_limited(&paho_log_limit, GW_LOG_WARN, "mqtt", "TLS with %s: %.*s", m->uri,
                   len > 500 ? 500 : (int)len, str);
    return 1;
}

/* Issues one connect; the answer comes to on_connected* or
 * on_connect_failed*. Returns 0, or -EIO when Paho refuses at once and
 * points *ret_why at Paho's reason. */
static int start_connect(struct mqtt_impl *m, const char **ret_why)
{
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions opts5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
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
        o->onSuccess5 = on_connected5;
        o->onFailure5 = on_connect_failed5;
    } else {
        o = &opts;
        o->MQTTVersion = MQTTVERSION_3_1_1;
        o->cleansession = 0;
        o->onSuccess = on_connected;
        o->onFailure = on_connect_failed;
    }
    o->keepAliveInterval = m->keepalive_s;
    o->connectTimeout = CONNECT_TIMEOUT_S;
    /* Our reconnect thread backs off with jitter; Paho's does not. */
    o->automaticReconnect = 0;
    o->username = m->username;
    o->password = m->password;
    o->context = m;
    if (m->tls) {
        ssl.trustStore = m->ca_file;
        /* No CA file: the system's CAs. Paho would fall back to OpenSSL's
         * default paths anyway; naming the directory makes it explicit. */
        ssl.CApath = m->ca_file ? NULL : SYSTEM_CA_PATH;
        ssl.keyStore = m->cert_file;
        ssl.privateKey = m->key_file;
        ssl.enableServerCertAuth = m->tls_verify;
        ssl.verify = m->tls_verify; /* the certificate must name the host in the uri */
        ssl.sslVersion = MQTT_SSL_VERSION_DEFAULT;
        ssl.ssl_error_cb = on_ssl_error;
        ssl.ssl_error_context = m;
        o->ssl = &ssl; /* Paho copies it */
    }
    r = MQTTAsync_connect(m->client, o);
    MQTTProperties_free(&props);
    if (r != MQTTASYNC_SUCCESS) {
        *ret_why = MQTTAsync_strerror(r);
        return -EIO;
    }
    return 0;
}

/* The reconnect thread: sleeps on `wake` until a scheduled attempt is due,
 * then connects. Paho's callbacks only schedule, so none of Paho's threads
 * ever waits out a backoff, and stop wakes this thread at once. */
static void *reconnect_main(void *arg)
{
    struct mqtt_impl *m = arg;
    int dead_checks = 0;

    pthread_mutex_lock(&m->lock);
    while (!m->stopping) {
        int64_t now = gw_monotonic_ns();
        struct timespec until;
        const char *why;

        switch (m->state) {
        case CONN_WAITING:
            if (now < m->due_ns) {
                until = monotonic_timespec(m->due_ns);
                pthread_cond_timedwait(&m->wake, &m->lock, &until);
                continue;
            }
            m->state = CONN_CONNECTING;
            m->deadline_ns = now + CONNECT_WATCHDOG_NS;
            pthread_mutex_unlock(&m->lock);
            if (start_connect(m, &why) < 0)
                schedule_reconnect(m, CONN_CONNECTING, why);
            pthread_mutex_lock(&m->lock);
            break;
        case CONN_CONNECTING:
            if (now < m->deadline_ns) {
                until = monotonic_timespec(m->deadline_ns);
                pthread_cond_timedwait(&m->wake, &m->lock, &until);
                continue;
            }
            pthread_mutex_unlock(&m->lock);
            schedule_reconnect(m, CONN_CONNECTING, "no answer from the client library");
            pthread_mutex_lock(&m->lock);
            break;
        case CONN_CONNECTED:
            until = monotonic_timespec(now + LIVENESS_CHECK_NS);
            pthread_cond_timedwait(&m->wake, &m->lock, &until);
            if (m->state != CONN_CONNECTED || m->stopping) {
                dead_checks = 0;
                continue;
            }
            pthread_mutex_unlock(&m->lock);
            /* Two checks in a row, so a connect that has just begun to be
             * reported is not mistaken for a loss. */
            dead_checks = MQTTAsync_isConnected(m->client) ? 0 : dead_checks + 1;
            if (dead_checks >= 2) {
                dead_checks = 0;
                schedule_reconnect(m, CONN_CONNECTED, "the client library lost it silently");
            }
            pthread_mutex_lock(&m->lock);
            break;
        case CONN_IDLE:
            pthread_cond_wait(&m->wake, &m->lock);
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ---- publishing (case notices) ------------------------------------------ */

/* Paho answers each notice here: onSuccess once the PUBACK came, onFailure
 * when the broker refused it or Paho gave it up (a session cleaned at
 * reconnect, the client destroyed). Either frees a slot of the window.
 * After stop has counted what was left (pub_closed), only the window is
 * settled, so no notice is counted twice. */
static void notice_done(struct mqtt_impl *m, bool acked, const char *why)
{
    bool counted_failure = false;

    pthread_mutex_lock(&m->lock);
    if (m->inflight > 0)
        m->inflight--;
    m->completions++;
    if (!m->pub_closed) {
        if (acked)
            count(&m->stats.published);
        else
            counted_failure = true;
    }
    pthread_cond_broadcast(&m->pub_wake);
    pthread_mutex_unlock(&m->lock);
    if (counted_failure) {
        count(&m->stats.publish_failed);
        gw_log_limited(&publish_log_limit, GW_LOG_WARN, "mqtt", "a notice was not delivered: %s",
                       why);
    }
}

static void on_notice_acked5(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    notice_done(context, true, NULL);
}

static void on_notice_acked(void *context, MQTTAsync_successData *response)
{
    (void)response;
    notice_done(context, true, NULL);
}

static void on_notice_failed5(void *context, MQTTAsync_failureData5 *response)
{
    const char *why = response->message ? response->message : MQTTAsync_strerror(response->code);

    if (response->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
        why = MQTTReasonCode_toString(response->reasonCode);
    notice_done(context, false, why);
}

static void on_notice_failed(void *context, MQTTAsync_failureData *response)
{
    notice_done(context, false,
                response->message ? response->message : MQTTAsync_strerror(response->code));
}

/* Takes a copy of topic and payload in one allocation; NULL without memory. */
static struct notice *notice_new(const char *topic, const void *payload, size_t len)
{
    size_t topic_size = strlen(topic) + 1;
    struct notice *n = malloc(sizeof(*n) + len + topic_size);

    if (!n)
        return NULL;
    n->next = NULL;
    n->len = len;
    if (len > 0)
        memcpy(n->data, payload, len);
    n->topic = n->data + len;
    memcpy(n->topic, topic, topic_size);
    return n;
}

/* Under m->lock. */
static struct notice *queue_pop(struct mqtt_impl *m)
{
    struct notice *n = m->q_head;

    if (!n)
        return NULL;
    m->q_head = n->next;
    if (!m->q_head)
        m->q_tail = NULL;
    m->q_len--;
    n->next = NULL;
    return n;
}

/* Under m->lock. Appends N; when the queue is full, takes the oldest off
 * and returns it for the caller to count and free (NULL otherwise). */
static struct notice *queue_append(struct mqtt_impl *m, struct notice *n)
{
    struct notice *dropped = m->q_len >= NOTICE_QUEUE_MAX ? queue_pop(m) : NULL;

    if (m->q_tail)
        m->q_tail->next = n;
    else
        m->q_head = n;
    m->q_tail = n;
    m->q_len++;
    pthread_cond_broadcast(&m->pub_wake);
    return dropped;
}

/* Under m->lock. Puts back a notice Paho refused, first in line to keep
 * the order; when the queue filled meanwhile it is the oldest, and is
 * returned to be dropped instead (NULL otherwise). */
static struct notice *queue_push_front(struct mqtt_impl *m, struct notice *n)
{
    if (m->q_len >= NOTICE_QUEUE_MAX)
        return n;
    n->next = m->q_head;
    m->q_head = n;
    if (!m->q_tail)
        m->q_tail = n;
    m->q_len++;
    return NULL;
}

static void drop_notice(struct mqtt_impl *m, struct notice *n)
{
    count(&m->stats.publish_failed);
    gw_log_limited(&publish_log_limit, GW_LOG_WARN, "mqtt",
                   "%d case notices queued (the most kept): dropped the oldest, on %s",
                   NOTICE_QUEUE_MAX, n->topic);
    free(n);
}

/* Under m->lock. Waits until a notice may go out (one is queued, the
 * connection is up, the window has room), takes it and its slot of the
 * window. NULL once stop has begun. */
static struct notice *take_next(struct mqtt_impl *m)
{
    while (!m->stopping) {
        if (m->q_head && m->state == CONN_CONNECTED && m->inflight < m->window) {
            m->inflight++;
            return queue_pop(m);
        }
        pthread_cond_wait(&m->pub_wake, &m->lock);
    }
    return NULL;
}

/* Under m->lock. After Paho refused a send for want of room (-12) or of
 * a connection: sleeps until a send completes or the state changes, at
 * most NOTICE_RETRY_NS, so a full buffer is never polled in a loop
 * (busy-retrying -12 collapses throughput: STACK-NOTES, gotcha 2). */
static void wait_for_room(struct mqtt_impl *m)
{
    uint64_t seen = m->completions;
    enum conn_state state = m->state;
    struct timespec until = monotonic_timespec(gw_monotonic_ns() + NOTICE_RETRY_NS);

    while (m->completions == seen && m->state == state && !m->stopping &&
           pthread_cond_timedwait(&m->pub_wake, &m->lock, &until) != ETIMEDOUT)
        ;
}

/* QoS 1, not retained, with a completion callback for the window. Paho
 * copies topic, payload and properties. Returns Paho's code. */
static int send_notice(struct mqtt_impl *m, const struct notice *n)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    MQTTProperties props = MQTTProperties_initializer;
    MQTTProperty content_type = {
        .identifier = MQTTPROPERTY_CODE_CONTENT_TYPE,
        .value.data = { .len = (int)sizeof(NOTICE_CONTENT_TYPE) - 1,
                        .data = (char *)NOTICE_CONTENT_TYPE },
    };
    int r;

    msg.payload = (void *)n->data;
    msg.payloadlen = (int)n->len;
    msg.qos = 1;
    msg.retained = 0;
    opts.context = m;
    if (m->protocol == 5) {
        /* Terminals read the notice like a device's JSON: say what it is. */
        if (MQTTProperties_add(&props, &content_type) == 0)
            msg.properties = props;
        opts.onSuccess5 = on_notice_acked5;
        opts.onFailure5 = on_notice_failed5;
    } else {
        opts.onSuccess = on_notice_acked;
        opts.onFailure = on_notice_failed;
    }
    r = MQTTAsync_sendMessage(m->client, n->topic, &msg, &opts);
    MQTTProperties_free(&props);
    return r;
}

static bool retry_later(int rc)
{
    return rc == MQTTASYNC_MAX_BUFFERED_MESSAGES || rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
           rc == MQTTASYNC_NO_MORE_MSGIDS || rc == MQTTASYNC_DISCONNECTED;
}

/* Paho refused N for good (a topic it cannot send, say). */
static void give_up(struct mqtt_impl *m, struct notice *n, int rc)
{
    count(&m->stats.publish_failed);
    gw_log_limited(&publish_log_limit, GW_LOG_WARN, "mqtt", "cannot publish on %s: %s", n->topic,
                   MQTTAsync_strerror(rc));
    free(n);
}

/* Under m->lock. Paho refused N for want of room or of a connection: it
 * goes back first in line, to keep the order, and the publisher sleeps
 * until that may have changed. */
static void send_later(struct mqtt_impl *m, struct notice *n)
{
    struct notice *dropped = queue_push_front(m, n);

    if (dropped) {
        pthread_mutex_unlock(&m->lock);
        drop_notice(m, dropped);
        pthread_mutex_lock(&m->lock);
    }
    wait_for_room(m);
}

/* The publisher thread: the only one that hands notices to Paho, oldest
 * first, so they go out in the order the case service published them. */
static void *publisher_main(void *arg)
{
    struct mqtt_impl *m = arg;
    struct notice *n;

    pthread_mutex_lock(&m->lock);
    while ((n = take_next(m))) {
        int rc;

        pthread_mutex_unlock(&m->lock);
        rc = send_notice(m, n);
        if (rc == MQTTASYNC_SUCCESS)
            free(n); /* Paho has its copy; the answer comes to notice_done */
        else if (!retry_later(rc))
            give_up(m, n, rc);
        pthread_mutex_lock(&m->lock);
        if (rc == MQTTASYNC_SUCCESS)
            continue;
        m->inflight--; /* no answer comes for a refused send */
        pthread_cond_broadcast(&m->pub_wake);
        if (retry_later(rc))
            send_later(m, n);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* Queues a copy and returns at once: the publisher thread sends it once
 * connected (before the first connect and during an outage it waits in
 * the queue). Refused only without memory, for a payload MQTT cannot
 * carry, or once stop has begun. */
static int mqtt_publish(struct gw_adapter *a, const char *topic, const void *payload, size_t len)
{
    struct mqtt_impl *m = a->impl;
    struct notice *n, *dropped;

    if (!m || !m->sync_ready)
        return -ENOTCONN;
    if (len > INT_MAX) {
        count(&m->stats.publish_failed);
        return -EMSGSIZE;
    }
    n = notice_new(topic, payload, len);
    if (!n) {
        count(&m->stats.publish_failed);
        return -ENOMEM;
    }
    pthread_mutex_lock(&m->lock);
    if (m->stopping || m->pub_closed) {
        pthread_mutex_unlock(&m->lock);
        free(n);
        count(&m->stats.publish_failed);
        return -ESHUTDOWN;
    }
    dropped = queue_append(m, n);
    pthread_mutex_unlock(&m->lock);
    if (dropped)
        drop_notice(m, dropped);
    return 0;
}

/* stop, while the connection is still up: lets the publisher send what is
 * queued and the broker acknowledge it, for at most NOTICE_DRAIN_NS. */
static void drain_notices(struct mqtt_impl *m)
{
    struct timespec until = monotonic_timespec(gw_monotonic_ns() + NOTICE_DRAIN_NS);

    pthread_mutex_lock(&m->lock);
    while ((m->q_len > 0 || m->inflight > 0) && m->state == CONN_CONNECTED &&
           m->publisher_running &&
           pthread_cond_timedwait(&m->pub_wake, &m->lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&m->lock);
}

/* stop, once the publisher has ended: frees what is still queued and
 * counts it, with what Paho never answered, as given up. */
static void close_notices(struct mqtt_impl *m)
{
    size_t queued;
    int unanswered;
    uint64_t acked, failed;
    struct notice *n;

    pthread_mutex_lock(&m->lock);
    if (m->pub_closed) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    m->pub_closed = true;
    queued = m->q_len;
    unanswered = m->inflight;
    while ((n = queue_pop(m)))
        free(n);
    pthread_mutex_unlock(&m->lock);

    __atomic_add_fetch(&m->stats.publish_failed, queued + (size_t)unanswered, __ATOMIC_RELAXED);
    if (queued > 0 || unanswered > 0)
        gw_warn("mqtt", "stopping: %zu case notices not sent and %d not acknowledged: given up",
                queued, unanswered);
    acked = __atomic_load_n(&m->stats.published, __ATOMIC_RELAXED);
    failed = __atomic_load_n(&m->stats.publish_failed, __ATOMIC_RELAXED);
    if (acked > 0 || failed > 0)
        gw_info("mqtt", "case notices: %llu acknowledged by the broker, %llu given up",
                (unsigned long long)acked, (unsigned long long)failed);
}

/* ---- adapter interface ------------------------------------------------- */

static void trace_to_log(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
    if (level >= MQTTASYNC_TRACE_ERROR)
        gw_log_limited(&paho_log_limit, GW_LOG_WARN, "paho", "%s", message);
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
    if (m->sync_ready) {
        pthread_cond_destroy(&m->pub_wake);
        pthread_cond_destroy(&m->wake);
        pthread_mutex_destroy(&m->lock);
    }
    /* Notices left when stop never ran (a start that failed early). */
    while (m->q_head) {
        struct notice *n = m->q_head;
        m->q_head = n->next;
        free(n);
    }
    mqtt_free_filters(m->filters, m->n_filters);
    free(m->filter_qos);
    free(m->filters_text);
    free(m->uri);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->ca_file);
    free(m->cert_file);
    free(m->key_file);
    free(m);
    a->impl = NULL;
}

static bool uri_is_tls(const char *uri)
{
    return strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0 ||
           strncmp(uri, "wss://", 6) == 0;
}

/* The TLS keys must fit the uri and each other. Returns NULL or a malloc'd
 * message naming the keys. */
static char *check_tls(const struct gw_config *cfg)
{
    static const char *const scheme_hint = "ssl:// (or mqtts://, wss://)";
    const char *ca = cfg->mqtt.ca_file, *cert = cfg->mqtt.cert_file, *key = cfg->mqtt.key_file;
    const struct {
        const char *key;
        const char *path;
    } files[] = { { "mqtt.ca_file", ca }, { "mqtt.cert_file", cert }, { "mqtt.key_file", key } };

    if (cert && !key)
        return format_error("mqtt.cert_file is set without mqtt.key_file: set both or neither");
    if (key && !cert)
        return format_error("mqtt.key_file is set without mqtt.cert_file: set both or neither");
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (!files[i].path)
            continue;
        if (!uri_is_tls(cfg->mqtt.uri))
            return format_error("%s is set but mqtt.uri is not %s: \"%s\"", files[i].key,
                                scheme_hint, cfg->mqtt.uri);
        if (access(files[i].path, R_OK) < 0)
            return format_error("%s: cannot read %s: %s", files[i].key, files[i].path,
                                strerror(errno));
    }
    return NULL;
}

static char *join_filters(char **filters, int n)
{
    size_t len = 1;
    char *s;

    for (int i = 0; i < n; i++)
        len += strlen(filters[i]) + 2;
    s = malloc(len);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i > 0)
            strcat(s, ", ");
        strcat(s, filters[i]);
    }
    return s;
}

static int mqtt_init(struct gw_adapter *a, const struct gw_config *cfg)
{
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
    pthread_condattr_t cattr;
    struct mqtt_impl *m;
    char *error = NULL;
    int r;

    if (cfg->mqtt.reconnect_min_ms > cfg->mqtt.reconnect_max_ms) {
        gw_error("mqtt", "mqtt.reconnect_min_ms (%d) is above mqtt.reconnect_max_ms (%d)",
                 cfg->mqtt.reconnect_min_ms, cfg->mqtt.reconnect_max_ms);
        return -EINVAL;
    }
    if (cfg->mqtt.protocol != 5 && cfg->mqtt.password && *cfg->mqtt.password &&
        !(cfg->mqtt.username && *cfg->mqtt.username)) {
        gw_error("mqtt", "mqtt.password is set without mqtt.username, which MQTT 3.1.1 does not "
                         "allow");
        return -EINVAL;
    }
    error = check_tls(cfg);
    if (error) {
        gw_error("mqtt", "%s", error);
        free(error);
        return -EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    a->impl = m;
    m->adapter = a;
    r = mqtt_build_filters(cfg->mqtt.topics, cfg->mqtt.shared_group, &m->filters, &m->n_filters,
                           &error);
    if (r < 0) {
        if (error)
            gw_error("mqtt", "%s", error);
        free(error);
        mqtt_destroy(a);
        return r;
    }
    m->filter_qos = calloc((size_t)m->n_filters, sizeof(*m->filter_qos));
    m->filters_text = join_filters(m->filters, m->n_filters);
    m->uri = strdup(cfg->mqtt.uri);
    m->client_id = strdup(cfg->mqtt.client_id);
    m->username = dup_or_null(cfg->mqtt.username);
    m->password = dup_or_null(cfg->mqtt.password);
    m->ca_file = dup_or_null(cfg->mqtt.ca_file);
    m->cert_file = dup_or_null(cfg->mqtt.cert_file);
    m->key_file = dup_or_null(cfg->mqtt.key_file);
    if (!m->filter_qos || !m->filters_text || !m->uri || !m->client_id ||
        (cfg->mqtt.username && *cfg->mqtt.username && !m->username) ||
        (cfg->mqtt.password && *cfg->mqtt.password && !m->password) ||
        (cfg->mqtt.ca_file && !m->ca_file) || (cfg->mqtt.cert_file && !m->cert_file) ||
        (cfg->mqtt.key_file && !m->key_file)) {
        mqtt_destroy(a);
        return -ENOMEM;
    }
    m->qos = cfg->mqtt.qos;
    for (int i = 0; i < m->n_filters; i++)
        m->filter_qos[i] = m->qos;
    m->protocol = cfg->mqtt.protocol;
    m->keepalive_s = cfg->mqtt.keepalive_s;
    m->session_expiry_s = cfg->mqtt.session_expiry_s;
    m->reconnect_min_ms = cfg->mqtt.reconnect_min_ms;
    m->reconnect_max_ms = cfg->mqtt.reconnect_max_ms;
    m->tls = uri_is_tls(m->uri);
    m->tls_verify = cfg->mqtt.tls_verify;
    m->state = CONN_IDLE;
    m->random = (uint32_t)gw_monotonic_ns() ^ (uint32_t)getpid() * 2654435761u;
    if (m->random == 0)
        m->random = 1;
    m->conn_log_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(0.2, 5.0);

    if (pthread_condattr_init(&cattr) != 0) {
        mqtt_destroy(a);
        return -ENOMEM;
    }
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    r = pthread_cond_init(&m->wake, &cattr);
    if (r == 0) {
        r = pthread_cond_init(&m->pub_wake, &cattr);
        if (r != 0)
            pthread_cond_destroy(&m->wake);
    }
    pthread_condattr_destroy(&cattr);
    if (r != 0) {
        mqtt_destroy(a);
        return -r;
    }
    r = pthread_mutex_init(&m->lock, NULL);
    if (r != 0) {
        pthread_cond_destroy(&m->pub_wake);
        pthread_cond_destroy(&m->wake);
        mqtt_destroy(a);
        return -r;
    }
    m->sync_ready = true;
    m->window = NOTICE_WINDOW;

    if (m->protocol == 5 && m->session_expiry_s == 0)
        gw_warn("mqtt", "mqtt.session_expiry_s is 0: the broker ends the session whenever the "
                        "connection drops, and readings sent meanwhile are lost");
    if (m->tls && !m->tls_verify)
        gw_warn("mqtt", "mqtt.tls_verify is false: the broker's certificate and host name are "
                        "not checked, so anyone in the path can pose as the broker");

    MQTTAsync_setTraceCallback(trace_to_log);
    MQTTAsync_setTraceLevel(gw_log_threshold >= GW_LOG_DEBUG ? MQTTASYNC_TRACE_PROTOCOL
                                                             : MQTTASYNC_TRACE_ERROR);
    create.MQTTVersion = m->protocol == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    /* Paho's persistence is off on purpose: the gateway's journal is the
     * durable copy, and Paho's file store loses messages under MQTT 5. */
    r = MQTTAsync_createWithOptions(&m->client, m->uri, m->client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &create);
    if (r != MQTTASYNC_SUCCESS) {
        gw_error("mqtt", "mqtt.uri \"%s\": %s", m->uri,
                 r == MQTTASYNC_BAD_PROTOCOL
                     ? "unknown scheme: use tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://"
                     : MQTTAsync_strerror(r));
        m->client = NULL;
        mqtt_destroy(a);
        return -EINVAL;
    }
    MQTTAsync_setCallbacks(m->client, m, on_connection_lost, on_message, NULL);
    if (m->protocol == 5)
        MQTTAsync_setDisconnected(m->client, m, on_disconnected);
    return 0;
}

/* Connects once here, so a setting Paho refuses outright stops the
 * gateway; every later attempt belongs to the reconnect thread. A broker
 * that is down is not an error: the thread retries until it is up. */
static int mqtt_start(struct gw_adapter *a)
{
    struct mqtt_impl *m = a->impl;
    const char *why;
    int r;

    r = pthread_create(&m->publisher, NULL, publisher_main, m);
    if (r != 0) {
        gw_error("mqtt", "cannot start the publisher thread: %s", strerror(r));
        return -r;
    }
    m->publisher_running = true;
    r = pthread_create(&m->reconnector, NULL, reconnect_main, m);
    if (r != 0) {
        gw_error("mqtt", "cannot start the reconnect thread: %s", strerror(r));
        return -r;
    }
    m->reconnector_running = true;
    pthread_mutex_lock(&m->lock);
    m->state = CONN_CONNECTING;
    m->deadline_ns = gw_monotonic_ns() + CONNECT_WATCHDOG_NS;
    state_changed(m);
    pthread_mutex_unlock(&m->lock);
    gw_info("mqtt", "connecting to %s as %s%s", m->uri, m->client_id,
            m->tls ? (m->ca_file ? " (TLS, CA file)" : " (TLS, system CAs)") : "");
    if (start_connect(m, &why) < 0) {
        pthread_mutex_lock(&m->lock);
        m->state = CONN_IDLE;
        pthread_mutex_unlock(&m->lock);
        gw_error("mqtt", "cannot connect to %s: %s", m->uri, why);
        return -EIO;
    }
    return 0;
}

static void mqtt_stop(struct gw_adapter *a)
{
    struct mqtt_impl *m = a->impl;
    MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions opts5 = MQTTAsync_disconnectOptions_initializer5;
    struct timespec until;
    int r;

    if (!m || !m->sync_ready)
        return;
    drain_notices(m);
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    if (m->state == CONN_WAITING)
        m->state = CONN_IDLE;
    state_changed(m);
    pthread_mutex_unlock(&m->lock);
    if (m->reconnector_running) {
        pthread_join(m->reconnector, NULL);
        m->reconnector_running = false;
    }
    if (m->publisher_running) {
        pthread_join(m->publisher, NULL);
        m->publisher_running = false;
    }

    /* A connect in flight could still succeed and bring messages after
     * stop returned; wait for its answer (Paho gives one within
     * CONNECT_TIMEOUT_S), then disconnect. */
    pthread_mutex_lock(&m->lock);
    until = monotonic_timespec(gw_monotonic_ns() + CONNECT_WATCHDOG_NS);
    while (m->state == CONN_CONNECTING &&
           pthread_cond_timedwait(&m->wake, &m->lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&m->lock);

    if (MQTTAsync_isConnected(m->client)) {
        /* A normal DISCONNECT keeps the session (and the messages the
         * broker queues for it) for mqtt.session_expiry_s. */
        r = MQTTAsync_disconnect(m->client, m->protocol == 5 ? &opts5 : &opts);
        if (r != MQTTASYNC_SUCCESS)
            gw_warn("mqtt", "cannot disconnect from %s: %s", m->uri, MQTTAsync_strerror(r));
        /* The disconnect is asynchronous; wait for it, bounded, so no
         * callback runs after stop returns. */
        for (int i = 0; i < DISCONNECT_WAIT_MS / 20 && MQTTAsync_isConnected(m->client); i++)
            usleep(20 * 1000);
    }
    pthread_mutex_lock(&m->lock);
    m->state = CONN_IDLE;
    pthread_mutex_unlock(&m->lock);
    close_notices(m);
    /* MQTTAsync_destroy (in destroy) stops Paho's threads; a message
     * callback still running finishes before that returns. Paho answers
     * the notices it still holds there (onFailure), uncounted. */
}

static void mqtt_stats(struct gw_adapter *a, struct gw_adapter_stats *ret)
{
    struct mqtt_impl *m = a->impl;

    ret->received = __atomic_load_n(&m->stats.received, __ATOMIC_RELAXED);
    ret->accepted = __atomic_load_n(&m->stats.accepted, __ATOMIC_RELAXED);
    ret->rejected = __atomic_load_n(&m->stats.rejected, __ATOMIC_RELAXED);
    ret->connects = __atomic_load_n(&m->stats.connects, __ATOMIC_RELAXED);
    ret->connection_losses = __atomic_load_n(&m->stats.connection_losses, __ATOMIC_RELAXED);
    ret->published = __atomic_load_n(&m->stats.published, __ATOMIC_RELAXED);
    ret->publish_failed = __atomic_load_n(&m->stats.publish_failed, __ATOMIC_RELAXED);
}

const struct gw_adapter_ops mqtt_adapter_ops = {
    .name = "mqtt",
    .enabled = mqtt_enabled,
    .init = mqtt_init,
    .start = mqtt_start,
    .stop = mqtt_stop,
    .stats = mqtt_stats,
    .publish = mqtt_publish,
    .destroy = mqtt_destroy,
};
