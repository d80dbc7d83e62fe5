/* sim_bench_mqtt: the MQTT pieces gridsim's broker benchmarks share (bench
 * ingest, bench e2e): a do-nothing Paho subscriber that counts and
 * acknowledges, and a Paho publisher that keeps a bounded window of
 * unacknowledged publishes (STACK-NOTES gotcha 2).
 *
 * Owns one MQTTAsync client per object. Both are Paho-callback driven:
 * the counters are written on Paho's thread and read with atomics. Does
 * not own pacing, payloads or topics beyond the subscriber's filter.
 */
#ifndef SIM_BENCH_MQTT_H
#define SIM_BENCH_MQTT_H

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct sim_sub {
    MQTTAsync client;
    char topic[128];
    int qos;
    int session_expiry_s;      /* 0: a clean session, gone at disconnect */
    uint64_t received;         /* atomic */
    int64_t first_ns, last_ns; /* monotonic times of the first and last message (atomic) */
    int connected;
    int subscribed;
};

/* Creates the client (MQTT 5, no persistence); connects nothing. Returns 0
 * or -EIO. */
int sim_sub_init(struct sim_sub *s, const char *uri, const char *client_id, const char *topic,
                 int qos, int session_expiry_s);
/* Connects (clean start only when session_expiry_s is 0) and subscribes on
 * connection; wait for s->subscribed with sim_bench_wait_flag. */
int sim_sub_connect(struct sim_sub *s);
uint64_t sim_sub_received(struct sim_sub *s);
void sim_sub_reset(struct sim_sub *s);
void sim_sub_disconnect(struct sim_sub *s);
/* Destroys the client; a zeroed struct is fine. */
void sim_sub_destroy(struct sim_sub *s);

/* Waits until *flag is set, polling every 10 ms; false after limit_s. */
bool sim_bench_wait_flag(int *flag, int limit_s);

struct sim_pub {
    MQTTAsync client;
    int qos;
    int window;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int in_flight;          /* under lock */
    uint64_t acked, failed; /* under lock */
    int connected;          /* atomic */
    int lost;               /* atomic: the connection went */
};

/* Creates and connects a publisher (MQTT 5, clean start), waiting up to
 * 10 s. window: unacknowledged publishes at most (QoS 1: at most the
 * broker's receive maximum, 20 for mosquitto). Returns 0 or -EIO. */
int sim_pub_open(struct sim_pub *p, const char *uri, const char *client_id, int qos, int window);
/* Publishes one message once a slot is free, never spinning on Paho's -12.
 * Returns 0, -EIO (refused, or the connection is gone) or -ETIMEDOUT (no
 * slot within 10 s). */
int sim_pub_send(struct sim_pub *p, const char *topic, const void *payload, int len);
/* Waits until nothing is in flight, at most limit_s. Returns 0 or -ETIMEDOUT. */
int sim_pub_drain(struct sim_pub *p, int limit_s);
/* Disconnects and destroys; a zeroed struct is fine. */
void sim_pub_close(struct sim_pub *p);

#endif
