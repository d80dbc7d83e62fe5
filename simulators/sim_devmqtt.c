/* sim_devmqtt: one MQTT connection per simulated device (see sim_int.h).
 *
 * The connect is waited for by polling MQTTAsync_isConnected(): a device
 * connects once, so a CONNACK callback and its lock would buy nothing. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gw_log.h"
#include "sim_int.h"

#define MODULE "gridsim"
#define CONNECT_WAIT_MS SIM__CONNECT_WAIT_MS
#define WAIT_MS SIM__ACK_WAIT_MS

int sim__mqtt_start(MQTTAsync *ret_client, const char *broker, const char *client_id,
                    const char *will_device)
{
    MQTTAsync client;
    MQTTAsync_connectOptions conn = MQTTAsync_connectOptions_initializer;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    char will_topic[320];
    int rc;

    rc = MQTTAsync_create(&client, broker, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(MODULE, "--broker %s: %s", broker, MQTTAsync_strerror(rc));
        return -ECONNREFUSED;
    }
    conn.keepAliveInterval = 30;
    conn.cleansession = 1;
    conn.connectTimeout = CONNECT_WAIT_MS / 1000;
    if (will_device) {
        /* MQTTAsync_connect copies the Will: will_topic may go. */
        snprintf(will_topic, sizeof(will_topic), "devices/%s/status", will_device);
        will.topicName = will_topic;
        will.message = "offline";
        will.qos = 1;
        will.retained = 0;
        conn.will = &will;
    }
    rc = MQTTAsync_connect(client, &conn);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(MODULE, "cannot connect to %s as %s: %s", broker, client_id,
                 MQTTAsync_strerror(rc));
        MQTTAsync_destroy(&client);
        return -ECONNREFUSED;
    }
    *ret_client = client;
    return 0;
}

int sim__mqtt_await(MQTTAsync *clients, size_t n, const char *broker)
{
    size_t connected = 0;

    for (int waited = 0; waited <= CONNECT_WAIT_MS; waited += 10) {
        while (connected < n && MQTTAsync_isConnected(clients[connected]))
            connected++;
        if (connected == n)
            return 0;
        usleep(10000);
    }
    gw_error(MODULE, "cannot connect to %s: %zu of %zu connections up after %d ms", broker,
             connected, n, CONNECT_WAIT_MS);
    return -ECONNREFUSED;
}

int sim__mqtt_open(MQTTAsync *ret_client, const char *broker, const char *client_id,
                   const char *will_device)
{
    MQTTAsync client;
    int r = sim__mqtt_start(&client, broker, client_id, will_device);

    if (r == 0 && (r = sim__mqtt_await(&client, 1, broker)) < 0)
        MQTTAsync_destroy(&client);
    if (r == 0)
        *ret_client = client;
    return r;
}

/* Sends one QoS 1 message; stores its token. Returns 0 or -EIO. */
int sim__mqtt_send(MQTTAsync client, const char *topic, const char *payload,
                   MQTTAsync_token *ret_token)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc;

    msg.payload = (void *)payload;
    msg.payloadlen = (int)strlen(payload);
    msg.qos = 1;
    rc = MQTTAsync_sendMessage(client, topic, &msg, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(MODULE, "publish to %s failed: %s", topic, MQTTAsync_strerror(rc));
        return -EIO;
    }
    *ret_token = ro.token;
    return 0;
}

int sim__mqtt_wait(MQTTAsync client, MQTTAsync_token token)
{
    int rc = MQTTAsync_waitForCompletion(client, token, WAIT_MS);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(MODULE, "publish not acknowledged within %d ms: %s", WAIT_MS,
                 MQTTAsync_strerror(rc));
        return -EIO;
    }
    return 0;
}

void sim__mqtt_close(MQTTAsync *client)
{
    MQTTAsync_disconnectOptions disc = MQTTAsync_disconnectOptions_initializer;

    if (!*client)
        return;
    disc.timeout = 1000;
    if (MQTTAsync_isConnected(*client) && MQTTAsync_disconnect(*client, &disc) == MQTTASYNC_SUCCESS)
        usleep(100000); /* the DISCONNECT goes out on Paho's thread */
    MQTTAsync_destroy(client);
}
