/* mqtt_adapter: devices over MQTT (Eclipse Paho MQTT C, async client).
 *
 * Owns one Paho client and its session with the broker: subscribes to
 * devices/+/telemetry and devices/+/event, and hands every message to the
 * core through the gw_adapter interface from Paho's receive thread. The
 * message is acknowledged (PUBACK) only after the core has taken it,
 * because Paho acks a QoS 1 message when messageArrived returns 1; the
 * callback never returns 0 (DESIGN.md, "Facts to design around").
 * Does not decode payloads or know devices: that is the core's job.
 */
#ifndef MQTT_ADAPTER_H
#define MQTT_ADAPTER_H

struct gw_adapter_ops;

extern const struct gw_adapter_ops mqtt_adapter_ops;

/* Splits "devices/{id}/{telemetry|event|status}" into its parts. Returns 0
 * and writes the id (NUL-terminated) and channel, or -EINVAL. */
int mqtt_parse_topic(const char *topic, int topic_len, char *ret_device_id, int id_size,
                     int *ret_channel);

#endif
