/* sim_coap: gridsim's CoAP client (libcoap), for devices that post their
 * readings to the gateway instead of publishing them over MQTT.
 *
 * Owns one libcoap context and one UDP session to the gateway, and the
 * conversion of a flat JSON reading into SenML JSON (Content-Format 110).
 * Requests are confirmable and sent one at a time: a constrained device
 * waits for its answer too. Does not own what is sent (sim_fleet,
 * sim_scenario) nor DTLS.
 */
#ifndef SIM_COAP_H
#define SIM_COAP_H

struct sim_coap;

#define SIM_COAP_JSON 50
#define SIM_COAP_SENML_JSON 110

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

#endif
