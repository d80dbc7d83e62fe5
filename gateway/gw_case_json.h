/* gw_case_json: cases as the outside world reads them, in JSON.
 *
 * One rendering of a case, its history and its events, shared by the HTTP
 * API (docs/api.md) and the MQTT notices on grids/{grid_id}/cases, so a
 * handheld terminal and an API client see the same fields. Times are
 * RFC 3339 UTC strings with milliseconds ("2026-11-28T09:00:00.123Z"),
 * absent values are null, text is escaped as RFC 8259 asks (a title may
 * come from a device or a citizen). Holds no state.
 */
#ifndef GW_CASE_JSON_H
#define GW_CASE_JSON_H

#include <stddef.h>
#include <stdint.h>

struct gw_buf;
struct gw_case_event;
struct store_case;
struct store_history;

/* Appends the case as one JSON object (without its trigger reading unless
 * with_trigger, which then appears as the parsed object "trigger").
 * Returns 0 or -ENOMEM (out left as it was). */
int gw_case_json(struct gw_buf *out, const struct store_case *c, int with_trigger);
/* Appends a JSON array of history rows, oldest first. */
int gw_case_history_json(struct gw_buf *out, const struct store_history *rows, size_t n);
/* Appends an MQTT notice: {"event": kind, "at": ..., "actor": ...,
 * "from": state|null, "note": ...|null, "case": {...}}. */
int gw_case_event_json(struct gw_buf *out, const struct gw_case_event *event);
/* Appends an RFC 3339 UTC time with milliseconds as a JSON string, or
 * null for 0. */
int gw_case_json_time(struct gw_buf *out, int64_t ns);

#endif
