/* coap_adapter: devices over CoAP (libcoap 4.3, RFC 7252), plain UDP and DTLS-PSK.
 *
 * Owns one libcoap context and everything in it: the UDP endpoint on
 * coap.listen:coap.port, the DTLS-PSK endpoint on coap.dtls_port when
 * coap.psk_file is set, the table of pre-shared keys read from that file,
 * the partial bodies of block-wise (Block1) uploads, and the one server
 * thread that runs coap_io_process. Every request handler, and so every
 * ingest call, runs on that thread. Answers POST/PUT on
 * devices/{id}/telemetry and devices/{id}/event with the core's verdict
 * (2.04, 4.00, 4.04, 4.13, 4.15, 5.03; docs/coap.md) and refuses what a
 * device may not do before the core sees it (4.01, 4.03, 4.05, 4.15, 4.13).
 * Does not decode payloads or know devices: that is the core's job.
 * Symbols are prefixed coapa_ because libcoap owns coap_.
 */
#ifndef COAPA_ADAPTER_H
#define COAPA_ADAPTER_H

struct gw_adapter_ops;

extern const struct gw_adapter_ops coapa_adapter_ops;

#endif
