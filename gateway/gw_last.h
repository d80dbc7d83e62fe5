/* gw_last: the newest telemetry reading of each device, for the API's
 * device view (GET /devices/{id}).
 *
 * A district has hundreds of thousands of devices and the view is asked
 * for one at a time, now and then: each is kept as the journal's record
 * of the reading less its device id (gw_reading_encode, about 90 bytes for
 * a smoke detector), not as a decoded reading (several allocations, about 500
 * bytes), and decoded when asked for. A device's buffer is reused while
 * its records fit. Thread-safe: any writers (the rule workers, each for
 * its own devices) and readers.
 */
#ifndef GW_LAST_H
#define GW_LAST_H

#include <stddef.h>

struct gw_device;
struct gw_reading;
struct gw_registry;
struct gw_last;

/* For the devices of reg (those of its devices file, and quarantined ones
 * it admits later); reg must outlive it. NULL when out of memory. */
struct gw_last *gw_last_new(const struct gw_registry *reg);
void gw_last_free(struct gw_last *last);

/* Keeps a copy of record (the journal's encoding of a reading, without
 * its device id) as the device's newest (a device of the registry, which
 * outlives last). Returns 0, -EINVAL for a malformed record, or -ENOMEM
 * (the device's previous reading is then kept). */
int gw_last_put(struct gw_last *last, const struct gw_device *device, const void *record,
                size_t len);

/* The device's newest reading, decoded (the caller unrefs it), or NULL
 * when there is none (or memory ran out decoding it). */
struct gw_reading *gw_last_get(struct gw_last *last, const struct gw_device *device);

#endif
