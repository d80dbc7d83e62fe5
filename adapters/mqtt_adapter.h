/* mqtt_adapter: devices over MQTT (Eclipse Paho MQTT C, async client).
 *
 * Owns one Paho client and its persistent session with the broker: the
 * subscriptions of mqtt.topics (optionally shared as $share/GROUP/...),
 * TLS and login settings, and its own reconnect thread (capped exponential
 * backoff with jitter; Paho's automatic reconnect is off). Hands every
 * message to the core through the gw_adapter interface from Paho's receive
 * thread. The message is acknowledged (PUBACK) only after the core has
 * taken it, because Paho acks a QoS 1 message when messageArrived returns
 * 1; the callback never returns 0 (DESIGN.md, "Facts to design around").
 * Also sends the case notices (the publish op): a bounded queue of copies
 * (10,000; the oldest dropped when full, counted) and a publisher thread,
 * the only one that calls Paho to publish, sending them in order with at
 * most 20 QoS 1 messages unacknowledged (or the broker's Receive Maximum),
 * holding them while the broker is away. Does not decode payloads or know
 * devices: that is the core's job; it only tells the core which format a
 * payload is in.
 */
#ifndef MQTT_ADAPTER_H
#define MQTT_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "payload.h"

struct gw_adapter_ops;

extern const struct gw_adapter_ops mqtt_adapter_ops;

/* Splits "devices/{id}/{telemetry|event|status}" into its parts. Returns 0
 * and writes the id (NUL-terminated) and channel, or -EINVAL. */
int mqtt_parse_topic(const char *topic, int topic_len, char *ret_device_id, int id_size,
                     int *ret_channel);

/* Checks one MQTT topic filter: not empty, at most 65535 bytes, '+' and '#'
 * only as whole levels, '#' only last. Returns 0, or -EINVAL and points
 * *ret_why at a static explanation. */
int mqtt_check_filter(const char *filter, const char **ret_why);

/* Builds the list of subscriptions from mqtt.topics (comma-separated,
 * spaces around each filter ignored) and mqtt.shared_group (NULL or ""
 * for none: each filter becomes "$share/GROUP/filter"). On success returns
 * 0 and a malloc'd array of *ret_n malloc'd strings that the caller frees
 * with mqtt_free_filters(). On failure returns -EINVAL (a bad filter or
 * group; *ret_error is a malloc'd message naming the key and the filter)
 * or -ENOMEM (*ret_error NULL). */
int mqtt_build_filters(const char *topics, const char *shared_group, char ***ret_filters,
                       int *ret_n, char **ret_error);
void mqtt_free_filters(char **filters, int n);

/* The payload format an MQTT 5 Content Type names: application/json,
 * application/senml+json or application/senml+cbor (case-insensitive,
 * parameters such as "; charset=utf-8" ignored). Returns 0 and writes
 * *ret_format, or -ENOENT for any other type. */
int mqtt_content_type_format(const char *content_type, size_t len, enum payload_format *ret_format);

/* The format a message on CHANNEL (enum gw_channel) is decoded with:
 * status messages are always PAYLOAD_JSON (the core reads "online" and
 * "offline" itself); otherwise a recognised Content Type wins (NULL: none
 * was sent), and the payload's first byte decides (payload_guess_format). */
enum payload_format mqtt_select_format(int channel, const char *content_type, size_t ct_len,
                                       const void *payload, size_t len);

/* The wait before reconnect attempt ATTEMPT (0 for the first retry):
 * cap = min(max_ms, min_ms * 2^attempt), then "equal jitter": a value in
 * [cap / 2, cap] chosen by RANDOM (any 32-bit value, uniform). Never
 * below 1 ms, never above max_ms. */
int mqtt_backoff_ms(int attempt, int min_ms, int max_ms, uint32_t random);

#endif
