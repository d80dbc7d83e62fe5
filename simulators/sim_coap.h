/* sim_coap: gridsim's CoAP client (libcoap), for devices that post their
 * readings to the gateway instead of publishing them over MQTT.
 *
 * Owns one libcoap context and its UDP sessions to the gateway (client
 * endpoints, each its own local port), and the conversion of a flat JSON
 * reading into SenML JSON (Content-Format 110). Requests are confirmable;
 * each endpoint has at most one outstanding (RFC 7252's NSTART of 1): the
 * fleet uses one endpoint and waits for each answer, as a constrained
 * device does; gridsim bench e2e uses many, so that the endpoints together
 * keep a window of requests in flight. Does not own what is sent
 * (sim_fleet, sim_scenario, sim_bench_e2e) nor DTLS.
 */
#ifndef SIM_COAP_H
#define SIM_COAP_H

struct sim_coap;

#include <stddef.h>
#include <stdint.h>

#define SIM_COAP_JSON 50
#define SIM_COAP_SENML_JSON 110
#define SIM_COAP_SENML_CBOR 112

/* Connects (UDP) to the gateway at uri ("coap://HOST[:PORT]"; the path,
 * if any, is ignored). content_format is SIM_COAP_JSON or
 * SIM_COAP_SENML_JSON. Returns NULL after logging the cause. Call once per
 * process at a time: it starts and stops libcoap. */
struct sim_coap *sim_coap_new(const char *uri, int content_format);
void sim_coap_free(struct sim_coap *c);

/* POSTs payload (a flat JSON object; converted to SenML JSON when the
 * content format asks for it, sent as is when it is no JSON object) to
 * /devices/{device_id}/{channel}, confirmable, and waits for the answer.
 * On an answer stores its code as class * 100 + detail (204 for 2.04) in
 * *ret_code and returns 0; returns -ETIMEDOUT when none came (libcoap's
 * retransmissions included), -ENOMEM or -EIO when the request could not
 * be built or sent. */
int sim_coap_post(struct sim_coap *c, const char *device_id, const char *channel,
                  const char *payload, int *ret_code);

/* The windowed client: like sim_coap_new(), with endpoints (1 to 256) UDP
 * sessions, so at most that many confirmable requests in flight. */
struct sim_coap *sim_coap_new_window(const char *uri, int endpoints);

/* POSTs body (len bytes, sent as is, with content_format) to
 * /devices/{device_id}/{channel}, confirmable, from the first endpoint
 * that has no request outstanding, waiting for one (running libcoap's I/O,
 * which takes the answers). Returns 0 once sent; -ETIMEDOUT when no
 * endpoint got free in 20 s; -ENOMEM or -EIO. Answers are only counted. */
int sim_coap_send(struct sim_coap *c, const char *device_id, const char *channel,
                  int content_format, const void *body, size_t len);

/* Runs libcoap's I/O until no request is outstanding, at most limit_ms.
 * Returns 0 or -ETIMEDOUT. */
int sim_coap_drain(struct sim_coap *c, int limit_ms);

/* What became of the requests sent so far (sim_coap_send and
 * sim_coap_post alike). */
struct sim_coap_counts {
    uint64_t sent;
    uint64_t changed;  /* answered 2.04 */
    uint64_t other;    /* answered anything else */
    uint64_t failed;   /* libcoap gave up retransmitting, or no answer in time */
    int64_t last_ns;   /* monotonic time of the last answer */
};
void sim_coap_counts(const struct sim_coap *c, struct sim_coap_counts *ret);

#endif
