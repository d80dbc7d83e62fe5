/* Unit tests for the MQTT adapter's topic parsing: the device id and the
 * channel come from the topic, so a hostile topic must never be taken. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

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
        "devices//telemetry", "devices/x", "devices/x/", "devices/x/telemetryy",
        "devices/x/y/telemetry", "device/x/telemetry", "devices/x/Telemetry", "",
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(topics_give_device_and_channel),
        cmocka_unit_test(bad_topics_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
