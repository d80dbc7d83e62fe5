/* sim_bench_coap: the CoAP ceiling of gridsim bench e2e, a do-nothing
 * libcoap server in gridsim's own process: it answers every POST to any
 * path with 2.04 and counts it, nothing else, so that the same client at
 * the same window measures what libcoap and loopback UDP deliver on this
 * machine (the CoAP counterpart of the do-nothing MQTT subscriber).
 *
 * Owns one libcoap context and the thread that runs its I/O. Calls
 * coap_startup() (which does nothing the second time) but leaves
 * coap_cleanup() to the process's last sim_coap client, as plain UDP needs
 * nothing of what it tears down (DTLS).
 */
#ifndef SIM_BENCH_COAP_H
#define SIM_BENCH_COAP_H

#include <pthread.h>
#include <stdint.h>

struct sim_coap_null {
    void *ctx; /* coap_context_t */
    pthread_t thread;
    int stop;          /* atomic */
    uint64_t received; /* atomic: requests answered */
    int64_t last_ns;   /* atomic: monotonic time of the last one */
    int port;          /* UDP, on 127.0.0.1 */
};

/* Binds 127.0.0.1 on a free UDP port and starts answering. Returns 0 or a
 * negative errno (logged). */
int sim_coap_null_start(struct sim_coap_null *s);
uint64_t sim_coap_null_received(struct sim_coap_null *s);
/* Stops the thread and frees the context; a zeroed struct is fine. */
void sim_coap_null_stop(struct sim_coap_null *s);

#endif
