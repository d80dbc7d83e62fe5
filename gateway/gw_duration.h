/* gw_duration: durations as people write them in configs and rules:
 * "90s", "15m", "2h", "1d", "500ms", or a bare number of seconds.
 *
 * Owns nothing. One parser for the whole gateway, so a duration means the
 * same in gridgate.yaml, in a rule and in a rule test.
 */
#ifndef GW_DURATION_H
#define GW_DURATION_H

#include <stdint.h>

/* Parses text into nanoseconds. Returns 0, or -EINVAL (not a duration,
 * negative) / -ERANGE (over 100 years). Fractions are allowed ("1.5h"). */
int gw_duration_parse(const char *text, int64_t *ret_ns);

/* A per-device-type table of durations: "smoke=12h,camera=5m,default=1h". */
struct gw_duration_table;

/* Returns NULL on error with a malloc'd reason in *ret_error naming the
 * entry ("camera=5x: not a duration"). A "default" entry is required. */
struct gw_duration_table *gw_duration_table_parse(const char *text, char **ret_error);
void gw_duration_table_free(struct gw_duration_table *table);
/* The duration for key, or the default. */
int64_t gw_duration_table_get(const struct gw_duration_table *table, const char *key);

#endif
