/* gw_adapter: the one interface every ingest adapter implements.
 *
 * An adapter (mqtt, coap, and later others) turns a protocol into
 * gw_message values and hands each to the core through its ingest
 * function; the core never learns which adapter a message came from.
 * Owns the table of known adapter kinds (names are unique). Does not own
 * the adapters' protocol state: each keeps that behind its `impl`.
 */
#ifndef GW_ADAPTER_H
#define GW_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_reading.h"
#include "payload.h"

struct gw_config;
struct gw_adapter;

/* Raw bytes from one device, valid only during the ingest call. */
struct gw_message {
    const char *device_id;
    enum gw_channel channel;
    enum payload_format format;
    const void *payload;
    size_t len;
};

/* What the core made of a message, for adapters that answer the device
 * (CoAP maps these to 2.04, 4.00, 4.04, 4.13, 4.15). */
enum gw_ingest_result {
    GW_INGEST_OK,
    GW_INGEST_BAD_PAYLOAD,
    GW_INGEST_UNKNOWN_DEVICE,
    GW_INGEST_TOO_LARGE,
    GW_INGEST_UNSUPPORTED,
    GW_INGEST_SHUTDOWN,
};

/* May block (back-pressure) until the core has taken the message; returns
 * only once the message is safe with the core or refused. reason gets a
 * short diagnostic when the result is not OK. */
typedef enum gw_ingest_result (*gw_ingest_fn)(void *core, const struct gw_message *msg,
                                              char *reason, size_t reason_len);

struct gw_adapter_stats {
    uint64_t received; /* messages handed to ingest */
    uint64_t accepted;
    uint64_t rejected;
    uint64_t connects; /* sessions (re)established with a broker or peer */
    uint64_t connection_losses;
    uint64_t published;      /* messages the peer acknowledged */
    uint64_t publish_failed; /* messages refused, dropped from a full queue or given up */
};

struct gw_adapter_ops {
    const char *name;
    /* Whether the configuration turns this adapter on. */
    bool (*enabled)(const struct gw_config *cfg);
    /* Builds a->impl from the configuration; nothing runs yet. */
    int (*init)(struct gw_adapter *a, const struct gw_config *cfg);
    /* Starts receiving; ingest may be called from the adapter's threads
     * from now on. */
    int (*start)(struct gw_adapter *a);
    /* Stops receiving; once it returns, ingest is never called again. */
    void (*stop)(struct gw_adapter *a);
    void (*stats)(struct gw_adapter *a, struct gw_adapter_stats *ret_stats); /* optional */
    /* Sends a message out (MQTT: the case notices on grids/{grid}/cases,
     * QoS 1, not retained); optional. Queues a copy and returns without
     * waiting for the peer, also while disconnected (the queue is bounded:
     * when full the oldest is dropped, counted); may be called from any
     * thread while the adapter runs. Returns 0 or a negative errno (out of
     * memory, too large, stopping). */
    int (*publish)(struct gw_adapter *a, const char *topic, const void *payload, size_t len);
    void (*destroy)(struct gw_adapter *a);
};

struct gw_adapter {
    const struct gw_adapter_ops *ops;
    void *impl;
    gw_ingest_fn ingest;
    void *core;
};

/* Adds a kind of adapter. Returns 0, -EEXIST for a duplicate name, or
 * -ENOSPC when the table is full. */
int gw_adapter_register(const struct gw_adapter_ops *ops);
const struct gw_adapter_ops *gw_adapter_lookup(const char *name);
size_t gw_adapter_kinds(const struct gw_adapter_ops **ret_ops, size_t max);
const char *gw_ingest_result_name(enum gw_ingest_result result);

#endif
