/* sim_int.h: what the files of gridsim's device fleet (sim_fleet,
 * sim_scenario, sim_live, sim_devmqtt) share and nobody else uses: one MQTT
 * connection per simulated device, made the simple way (MQTT 3.1.1, clean
 * session, QoS 1, a Last Will when asked). The fleet's steady,
 * high-rate publisher in sim_fleet.c has its own client and flow control.
 */
#ifndef SIM_INT_H
#define SIM_INT_H

#include <MQTTAsync.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sim_device;

#define SIM__CONNECT_WAIT_MS 5000 /* longest wait for a CONNACK */
#define SIM__ACK_WAIT_MS 5000     /* longest wait for one PUBACK */

/* Starts connecting a client as client_id (MQTT 3.1.1, clean session),
 * with a Last Will "offline" (QoS 1, not retained) on
 * devices/{will_device}/status when will_device is not NULL; does not
 * wait. Returns 0 and the client in *ret_client, or -ECONNREFUSED
 * (logged). Paho takes a second or two per connection, so many devices
 * start together and are awaited together. */
int sim__mqtt_start(MQTTAsync *ret_client, const char *broker, const char *client_id,
                    const char *will_device);
/* Waits up to SIM__CONNECT_WAIT_MS until clients[0..n) are all
 * connected. 0 or -ECONNREFUSED (logged). */
int sim__mqtt_await(MQTTAsync *clients, size_t n, const char *broker);
/* sim__mqtt_start and sim__mqtt_await for one client. Connects a client as client_id, with a Last
 * Will "offline" (QoS 1, not retained) on devices/{will_device}/status when will_device is not
 * NULL. Returns 0 and the client in *ret_client, or -ECONNREFUSED (logged). */
int sim__mqtt_open(MQTTAsync *ret_client, const char *broker, const char *client_id,
                   const char *will_device);
/* Sends one QoS 1 message (not retained); its token in *ret_token. 0 or
 * -EIO (logged). */
int sim__mqtt_send(MQTTAsync client, const char *topic, const char *payload,
                   MQTTAsync_token *ret_token);
/* Waits up to SIM__ACK_WAIT_MS for token's PUBACK. 0 or -EIO (logged). */
int sim__mqtt_wait(MQTTAsync client, MQTTAsync_token token);
/* Disconnects cleanly (no Last Will) and destroys *client; NULL is fine. */
void sim__mqtt_close(MQTTAsync *client);

/* `gridsim run` with --heartbeat-scale or --transport coap: every device on
 * its own schedule (sim_live.c). */
struct sim__live_opts {
    const char *broker;   /* MQTT, when coap_uri is NULL */
    const char *coap_uri; /* not NULL: POST readings over CoAP */
    int content_format;   /* with coap_uri: 50 or 110 */
    double scale;         /* simulated seconds per real second */
    double duration;      /* real seconds; 0: until count or a stop signal */
    uint64_t count;       /* readings; 0: no limit */
    uint64_t seed;
    bool quiet;
};

/* Runs devices[0..count) until opts says stop or *stop becomes non-zero;
 * changes their battery as it drains. Returns 0 or a negative errno
 * (logged). */
int sim__live_run(const struct sim__live_opts *opts, struct sim_device *devices, size_t count,
                  volatile sig_atomic_t *stop);

#endif
