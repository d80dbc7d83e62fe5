/* Unit tests for the MQTT adapter: topic parsing (the device id and the
 * channel come from the topic, so a hostile topic must never be taken),
 * topic filter validation and shared-group prefixing, payload format
 * selection, the reconnect backoff, the init errors an operator sees,
 * that a gateway with no broker keeps retrying and still stops promptly,
 * and that case notices wait for a broker in a bounded queue. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_adapter.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_reading.h"
#include "mqtt_adapter.h"

static int parse(const char *topic, char *id, int id_size, int *channel)
{
    return mqtt_parse_topic(topic, (int)strlen(topic), id, id_size, channel);
}

static void topics_give_device_and_channel(void **state)
{
    char id[32];
    int channel = -1;

    (void)state;
    assert_int_equal(parse("devices/smoke-000001/telemetry", id, sizeof(id), &channel), 0);
    assert_string_equal(id, "smoke-000001");
    assert_int_equal(channel, GW_CHANNEL_TELEMETRY);
    assert_int_equal(parse("devices/cam-7/event", id, sizeof(id), &channel), 0);
    assert_int_equal(channel, GW_CHANNEL_EVENT);
    assert_int_equal(parse("devices/cam-7/status", id, sizeof(id), &channel), 0);
    assert_int_equal(channel, GW_CHANNEL_STATUS);
}

static void bad_topics_are_refused(void **state)
{
    static const char *const bad[] = {
        "devices//telemetry",
        "devices/x",
        "devices/x/",
        "devices/x/telemetryy",
        "devices/x/y/telemetry",
        "device/x/telemetry",
        "devices/x/Telemetry",
        "",
        "grids/110101001001001/cases",
    };
    char id[32];
    int channel;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], id, sizeof(id), &channel), -EINVAL);
    /* An id longer than the caller's buffer is refused, not cut. */
    assert_int_equal(parse("devices/0123456789abcdef/telemetry", id, 8, &channel), -EINVAL);
    /* The length given wins over a NUL inside the topic. */
    assert_int_equal(mqtt_parse_topic("devices/a\0b/event", 17, id, sizeof(id), &channel), -EINVAL);
}

static void topic_filters_are_checked(void **state)
{
    static const char *const good[] = {
        "devices/+/telemetry",        "devices/#", "#",  "+",  "+/+", "/", "a//b", "a/+/+/#",
        "devices/smoke-000001/event", "$SYS/#",    "/+", "+/",
    };
    static const char *const bad[] = {
        "",   "a+",   "+a", "a/b+/c", "devices/+x/telemetry", "#/a", "a/#/b",
        "a#", "a/b#", "##", "a/++",
    };
    const char *why = NULL;
    char *long_filter;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        why = NULL;
        if (mqtt_check_filter(good[i], &why) != 0)
            fail_msg("\"%s\" refused: %s", good[i], why);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (mqtt_check_filter(bad[i], &why) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_non_null(why);
    }
    long_filter = malloc(65537);
    assert_non_null(long_filter);
    memset(long_filter, 'a', 65536);
    long_filter[65536] = '\0';
    assert_int_equal(mqtt_check_filter(long_filter, &why), -EINVAL);
    long_filter[65535] = '\0';
    assert_int_equal(mqtt_check_filter(long_filter, &why), 0);
    free(long_filter);
}

static void filters_are_split_trimmed_and_shared(void **state)
{
    char **filters = NULL, *error = NULL;
    int n = 0;

    (void)state;
    assert_int_equal(mqtt_build_filters(" devices/+/telemetry ,devices/+/event,\tdevices/+/status ",
                                        NULL, &filters, &n, &error),
                     0);
    assert_null(error);
    assert_int_equal(n, 3);
    assert_string_equal(filters[0], "devices/+/telemetry");
    assert_string_equal(filters[1], "devices/+/event");
    assert_string_equal(filters[2], "devices/+/status");
    mqtt_free_filters(filters, n);

    /* An empty group is no group. */
    assert_int_equal(mqtt_build_filters("devices/#", "", &filters, &n, &error), 0);
    assert_int_equal(n, 1);
    assert_string_equal(filters[0], "devices/#");
    mqtt_free_filters(filters, n);

    assert_int_equal(mqtt_build_filters("devices/+/telemetry, devices/+/event", "gateways",
                                        &filters, &n, &error),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(filters[0], "$share/gateways/devices/+/telemetry");
    assert_string_equal(filters[1], "$share/gateways/devices/+/event");
    mqtt_free_filters(filters, n);
}

/* Each failure is -EINVAL with a message naming the key and the filter. */
static void expect_filter_error(const char *topics, const char *group, const char *key,
                                const char *needle)
{
    char **filters = NULL, *error = NULL;
    int n = 0;

    assert_int_equal(mqtt_build_filters(topics, group, &filters, &n, &error), -EINVAL);
    assert_non_null(error);
    if (!strstr(error, key) || !strstr(error, needle))
        fail_msg("error \"%s\" does not name %s and %s", error, key, needle);
    free(error);
}

static void bad_filters_name_key_and_filter(void **state)
{
    (void)state;
    expect_filter_error("devices/+/telemetry,,devices/+/event", NULL, "mqtt.topics", "\"\"");
    expect_filter_error("devices/+/telemetry,", NULL, "mqtt.topics", "empty");
    expect_filter_error("", NULL, "mqtt.topics", "empty");
    expect_filter_error("devices/+/telemetry, devices/x+/event", NULL, "mqtt.topics",
                        "\"devices/x+/event\"");
    expect_filter_error("devices/#/telemetry", NULL, "mqtt.topics", "devices/#/telemetry");
    expect_filter_error("$share/g/devices/#", NULL, "mqtt.topics", "mqtt.shared_group");
    expect_filter_error("devices/#", "a/b", "mqtt.shared_group", "\"a/b\"");
    expect_filter_error("devices/#", "g+", "mqtt.shared_group", "g+");
    expect_filter_error("devices/#", "g#", "mqtt.shared_group", "g#");
}

static void content_type_names_format(void **state)
{
    static const struct {
        const char *type;
        enum payload_format format;
    } good[] = {
        { "application/json", PAYLOAD_JSON },
        { "application/senml+json", PAYLOAD_SENML_JSON },
        { "application/senml+cbor", PAYLOAD_SENML_CBOR },
        { "Application/SenML+JSON", PAYLOAD_SENML_JSON },
        { "application/json; charset=utf-8", PAYLOAD_JSON },
        { " application/senml+cbor ", PAYLOAD_SENML_CBOR },
    };
    static const char *const bad[] = {
        "",
        "text/plain",
        "application/jsonx",
        "application/senml",
        "application/cbor",
        "application/senml-exi",
        "json",
    };
    enum payload_format format;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        format = good[i].format == PAYLOAD_JSON ? PAYLOAD_SENML_CBOR : PAYLOAD_JSON;
        assert_int_equal(mqtt_content_type_format(good[i].type, strlen(good[i].type), &format), 0);
        assert_int_equal(format, good[i].format);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mqtt_content_type_format(bad[i], strlen(bad[i]), &format), -ENOENT);
    /* The property is not NUL-terminated: only len bytes count. */
    assert_int_equal(mqtt_content_type_format("application/jsonXYZ", 16, &format), 0);
    assert_int_equal(format, PAYLOAD_JSON);
}

static enum payload_format pick_format(int channel, const char *ct, const char *payload, size_t len)
{
    return mqtt_select_format(channel, ct, ct ? strlen(ct) : 0, payload, len);
}

static void format_is_content_type_then_guess(void **state)
{
    static const char json[] = "{\"smoke\": 0.1}";
    static const char senml[] = "[{\"n\": \"smoke\", \"v\": 0.1}]";
    static const char cbor[] = "\x81\xa2\x00\x65smoke\x02\xf9\x00\x00";

    (void)state;
    /* No content type: the first byte decides. */
    assert_int_equal(pick_format(GW_CHANNEL_TELEMETRY, NULL, json, sizeof(json) - 1), PAYLOAD_JSON);
    assert_int_equal(pick_format(GW_CHANNEL_TELEMETRY, NULL, senml, sizeof(senml) - 1),
                     PAYLOAD_SENML_JSON);
    assert_int_equal(pick_format(GW_CHANNEL_EVENT, NULL, cbor, sizeof(cbor) - 1),
                     PAYLOAD_SENML_CBOR);
    /* A known content type wins over the bytes... */
    assert_int_equal(
        pick_format(GW_CHANNEL_TELEMETRY, "application/senml+cbor", json, sizeof(json) - 1),
        PAYLOAD_SENML_CBOR);
    assert_int_equal(pick_format(GW_CHANNEL_EVENT, "application/json", senml, sizeof(senml) - 1),
                     PAYLOAD_JSON);
    assert_int_equal(
        pick_format(GW_CHANNEL_TELEMETRY, "application/senml+json", cbor, sizeof(cbor) - 1),
        PAYLOAD_SENML_JSON);
    /* ...an unknown one does not. */
    assert_int_equal(pick_format(GW_CHANNEL_TELEMETRY, "text/plain", senml, sizeof(senml) - 1),
                     PAYLOAD_SENML_JSON);
    /* Status is always handed on as JSON, whatever it looks like. */
    assert_int_equal(pick_format(GW_CHANNEL_STATUS, NULL, "online", 6), PAYLOAD_JSON);
    assert_int_equal(
        pick_format(GW_CHANNEL_STATUS, "application/senml+cbor", cbor, sizeof(cbor) - 1),
        PAYLOAD_JSON);
    /* An empty payload is still given a format (and then fails to decode). */
    assert_int_equal(pick_format(GW_CHANNEL_TELEMETRY, NULL, "", 0), PAYLOAD_JSON);
}

static void backoff_doubles_with_jitter_within_bounds(void **state)
{
    static const uint32_t randoms[] = { 0, 1, 7, 12345, 0x7fffffffu, 0xfffffffeu, 0xffffffffu };
    const int min = 500, max = 30000;
    int64_t cap = min;

    (void)state;
    for (int attempt = 0; attempt < 40; attempt++) {
        int lo = INT32_MAX, hi = 0;

        for (size_t i = 0; i < sizeof(randoms) / sizeof(randoms[0]); i++) {
            int d = mqtt_backoff_ms(attempt, min, max, randoms[i]);
            if (d < cap / 2 || d > cap)
                fail_msg("attempt %d: %d ms outside [%lld, %lld]", attempt, d, (long long)(cap / 2),
                         (long long)cap);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Both ends of the window are reachable. */
        assert_int_equal(mqtt_backoff_ms(attempt, min, max, 0), cap / 2);
        assert_int_equal(mqtt_backoff_ms(attempt, min, max, (uint32_t)(cap - cap / 2)), cap);
        assert_true(lo < hi);
        cap = cap * 2 > max ? max : cap * 2;
    }
    /* 500, 1000, 2000, ..., 16000, then the cap. */
    assert_int_equal(mqtt_backoff_ms(5, min, max, 0xffffffffu) <= 16000, 1);
    assert_int_equal(mqtt_backoff_ms(6, min, max, 0), 15000);
    assert_int_equal(mqtt_backoff_ms(1000, min, max, 0), 15000);
    assert_true(mqtt_backoff_ms(INT32_MAX, min, max, 0xffffffffu) <= max);
    /* Degenerate settings stay sane. */
    assert_true(mqtt_backoff_ms(0, 1, 1, 0xffffffffu) >= 1);
    assert_true(mqtt_backoff_ms(3, 0, 0, 0) >= 1);
    assert_true(mqtt_backoff_ms(3, 100, 50, 0xffffffffu) <= 100);
    assert_true(mqtt_backoff_ms(-1, 100, 1000, 0) >= 50);
    /* Jitter spreads a herd: 1000 gateways at attempt 0 do not all wait the same. */
    {
        int seen_low = 0, seen_high = 0;
        uint32_t x = 2463534242u;
        for (int i = 0; i < 1000; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            int d = mqtt_backoff_ms(3, min, max, x);
            seen_low += d < 3000;
            seen_high += d >= 3000;
        }
        assert_true(seen_low > 300 && seen_high > 300);
    }
}

/* ---- init errors and a start with no broker ----------------------------- */

static struct gw_config base_config(void)
{
    struct gw_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mqtt.enabled = true;
    cfg.mqtt.uri = (char *)"tcp://127.0.0.1:1";
    cfg.mqtt.client_id = (char *)"test-mqtt";
    cfg.mqtt.qos = 1;
    cfg.mqtt.protocol = 5;
    cfg.mqtt.keepalive_s = 30;
    cfg.mqtt.session_expiry_s = 60;
    cfg.mqtt.topics = (char *)"devices/+/telemetry,devices/+/event,devices/+/status";
    cfg.mqtt.tls_verify = true;
    cfg.mqtt.reconnect_min_ms = 500;
    cfg.mqtt.reconnect_max_ms = 30000;
    return cfg;
}

static enum gw_ingest_result no_ingest(void *core, const struct gw_message *msg, char *reason,
                                       size_t reason_len)
{
    (void)core;
    (void)msg;
    (void)reason;
    (void)reason_len;
    fail_msg("nothing should be ingested without a broker");
    return GW_INGEST_OK;
}

struct captured {
    char path[64];
    int saved_fd;
};

static void capture_begin(struct captured *c)
{
    int fd;

    snprintf(c->path, sizeof(c->path), "/tmp/test_mqtt.XXXXXX");
    fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved_fd = dup(2);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fd, 2) >= 0);
    close(fd);
}

/* Returns what was logged; the caller frees it. */
static char *capture_end(struct captured *c)
{
    FILE *f;
    char *text;
    long len;

    fflush(stderr);
    dup2(c->saved_fd, 2);
    close(c->saved_fd);
    f = fopen(c->path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    if (len > 0)
        assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    unlink(c->path);
    return text;
}

/* init must fail with -EINVAL and log a line containing each needle. */
static void expect_init_error(const struct gw_config *cfg, const char *needle1, const char *needle2)
{
    struct gw_adapter a = { .ops = &mqtt_adapter_ops, .ingest = no_ingest };
    struct captured c;
    char *log;
    int r;

    capture_begin(&c);
    r = mqtt_adapter_ops.init(&a, cfg);
    log = capture_end(&c);
    if (r != -EINVAL || !strstr(log, needle1) || (needle2 && !strstr(log, needle2)))
        fail_msg("init returned %d, logged \"%s\"; expected -EINVAL naming %s %s", r, log, needle1,
                 needle2 ? needle2 : "");
    assert_null(a.impl);
    free(log);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void init_refuses_bad_settings(void **state)
{
    char dir[] = "/tmp/test_mqtt_tls.XXXXXX";
    char ca[128], cert[128], key[128], missing[128];
    struct gw_config cfg;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(cert, sizeof(cert), "%s/client.pem", dir);
    snprintf(key, sizeof(key), "%s/client.key", dir);
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
    write_file(ca, "not checked at init\n");
    write_file(cert, "not checked at init\n");
    write_file(key, "not checked at init\n");

    cfg = base_config();
    cfg.mqtt.uri = (char *)"ssl://127.0.0.1:8883";
    cfg.mqtt.cert_file = cert;
    expect_init_error(&cfg, "mqtt.cert_file", "mqtt.key_file");
    cfg.mqtt.cert_file = NULL;
    cfg.mqtt.key_file = key;
    expect_init_error(&cfg, "mqtt.key_file", "mqtt.cert_file");

    cfg = base_config();
    cfg.mqtt.ca_file = ca;
    expect_init_error(&cfg, "mqtt.ca_file is set but mqtt.uri is not ssl://", NULL);
    cfg = base_config();
    cfg.mqtt.uri = (char *)"mqtt://127.0.0.1:1883";
    cfg.mqtt.cert_file = cert;
    cfg.mqtt.key_file = key;
    expect_init_error(&cfg, "mqtt.cert_file is set but mqtt.uri is not ssl://", NULL);

    cfg = base_config();
    cfg.mqtt.uri = (char *)"ssl://127.0.0.1:8883";
    cfg.mqtt.ca_file = missing;
    expect_init_error(&cfg, "mqtt.ca_file", "missing.pem");

    cfg = base_config();
    cfg.mqtt.topics = (char *)"devices/+/telemetry, devices/#/event";
    expect_init_error(&cfg, "mqtt.topics", "devices/#/event");
    cfg = base_config();
    cfg.mqtt.shared_group = (char *)"a/b";
    expect_init_error(&cfg, "mqtt.shared_group", "a/b");

    cfg = base_config();
    cfg.mqtt.reconnect_min_ms = 5000;
    cfg.mqtt.reconnect_max_ms = 1000;
    expect_init_error(&cfg, "mqtt.reconnect_min_ms", "mqtt.reconnect_max_ms");

    cfg = base_config();
    cfg.mqtt.protocol = 311;
    cfg.mqtt.password = (char *)"secret";
    expect_init_error(&cfg, "mqtt.password", "mqtt.username");

    cfg = base_config();
    cfg.mqtt.uri = (char *)"http://127.0.0.1:1883";
    expect_init_error(&cfg, "mqtt.uri", "http://127.0.0.1:1883");

    /* The same files with an ssl:// uri are fine (their contents are
     * OpenSSL's business at connect time). */
    for (int i = 0; i < 3; i++) {
        static const char *const uris[] = { "ssl://127.0.0.1:8883", "mqtts://localhost:8883",
                                            "wss://localhost:8884" };
        struct gw_adapter a = { .ops = &mqtt_adapter_ops, .ingest = no_ingest };
        cfg = base_config();
        cfg.mqtt.uri = (char *)uris[i];
        cfg.mqtt.ca_file = ca;
        cfg.mqtt.cert_file = cert;
        cfg.mqtt.key_file = key;
        cfg.mqtt.shared_group = (char *)"g";
        assert_int_equal(mqtt_adapter_ops.init(&a, &cfg), 0);
        mqtt_adapter_ops.destroy(&a);
        assert_null(a.impl);
    }
    unlink(ca);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* No broker on the port: the adapter keeps retrying with short, bounded
 * waits on its own thread, and stop returns promptly in the middle. */
static void no_broker_retries_and_stops_promptly(void **state)
{
    struct gw_config cfg = base_config();
    struct gw_adapter a = { .ops = &mqtt_adapter_ops, .ingest = no_ingest };
    struct gw_adapter_stats stats = { 0 };
    struct captured c;
    int64_t t0, stop_ms;
    char *log;

    (void)state;
    cfg.mqtt.reconnect_min_ms = 20;
    cfg.mqtt.reconnect_max_ms = 80;
    capture_begin(&c);
    assert_int_equal(mqtt_adapter_ops.init(&a, &cfg), 0);
    assert_int_equal(mqtt_adapter_ops.start(&a), 0);
    usleep(600 * 1000);
    t0 = gw_monotonic_ns();
    mqtt_adapter_ops.stop(&a);
    stop_ms = (gw_monotonic_ns() - t0) / 1000000;
    mqtt_adapter_ops.stats(&a, &stats);
    mqtt_adapter_ops.destroy(&a);
    log = capture_end(&c);

    if (count_lines_with(log, "cannot connect to tcp://127.0.0.1:1") < 3)
        fail_msg("expected several logged attempts, got:\n%s", log);
    assert_non_null(strstr(log, "cannot connect to tcp://127.0.0.1:1 (attempt 1): "));
    assert_non_null(strstr(log, "cannot connect to tcp://127.0.0.1:1 (attempt 2): "));
    assert_non_null(strstr(log, "; retrying in "));
    assert_true(stop_ms < 2000);
    assert_int_equal(stats.connects, 0);
    assert_int_equal(stats.received, 0);
    free(log);
}

/* The adapter's queue bound (NOTICE_QUEUE_MAX in mqtt_adapter.c). */
#define QUEUED_NOTICES_MAX 10000

static int publish_notice(struct gw_adapter *a, int i)
{
    char payload[64];
    int len = snprintf(payload, sizeof(payload), "{\"case\": %d}", i);

    return mqtt_adapter_ops.publish(a, "grids/110101001001001/cases", payload, (size_t)len);
}

/* No broker: notices published before the first connect and during it
 * are queued, not refused; past the bound the oldest are dropped and
 * counted; stop does not wait for a connection that is not there, and
 * gives up (and counts) what is left; a publish after stop is refused. */
static void notices_wait_bounded_for_a_broker(void **state)
{
    struct gw_config cfg = base_config();
    struct gw_adapter a = { .ops = &mqtt_adapter_ops, .ingest = no_ingest };
    struct gw_adapter_stats stats = { 0 };
    const int total = QUEUED_NOTICES_MAX + 6;
    struct captured c;
    int64_t t0, stop_ms;
    char *log;

    (void)state;
    cfg.mqtt.reconnect_min_ms = 20;
    cfg.mqtt.reconnect_max_ms = 80;
    capture_begin(&c);
    assert_int_equal(mqtt_adapter_ops.init(&a, &cfg), 0);
    assert_int_equal(publish_notice(&a, 0), 0); /* before start */
    assert_int_equal(mqtt_adapter_ops.start(&a), 0);
    for (int i = 1; i < total; i++)
        assert_int_equal(publish_notice(&a, i), 0);
    mqtt_adapter_ops.stats(&a, &stats);
    assert_int_equal(stats.published, 0);
    assert_int_equal(stats.publish_failed, total - QUEUED_NOTICES_MAX);

    t0 = gw_monotonic_ns();
    mqtt_adapter_ops.stop(&a);
    stop_ms = (gw_monotonic_ns() - t0) / 1000000;
    mqtt_adapter_ops.stats(&a, &stats);
    assert_int_equal(stats.published, 0);
    assert_int_equal(stats.publish_failed, total);
    assert_int_equal(publish_notice(&a, total), -ESHUTDOWN);
    mqtt_adapter_ops.stats(&a, &stats);
    assert_int_equal(stats.publish_failed, total + 1);
    mqtt_adapter_ops.destroy(&a);
    log = capture_end(&c);

    assert_true(stop_ms < 1500);
    if (!strstr(log, "10000 case notices queued (the most kept): dropped the oldest, on "
                     "grids/110101001001001/cases") ||
        !strstr(log, "stopping: 10000 case notices not sent and 0 not acknowledged: given up") ||
        !strstr(log, "case notices: 0 acknowledged by the broker, 10006 given up"))
        fail_msg("expected the drops and the give-up at stop in the log, got:\n%.3000s", log);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(topics_give_device_and_channel),
        cmocka_unit_test(bad_topics_are_refused),
        cmocka_unit_test(topic_filters_are_checked),
        cmocka_unit_test(filters_are_split_trimmed_and_shared),
        cmocka_unit_test(bad_filters_name_key_and_filter),
        cmocka_unit_test(content_type_names_format),
        cmocka_unit_test(format_is_content_type_then_guess),
        cmocka_unit_test(backoff_doubles_with_jitter_within_bounds),
        cmocka_unit_test(init_refuses_bad_settings),
        cmocka_unit_test(no_broker_retries_and_stops_promptly),
        cmocka_unit_test(notices_wait_bounded_for_a_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
