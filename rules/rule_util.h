/* rule_util: small pure helpers of the rule engine, usable without Lua.
 *
 * Owns SHA-256 (the provenance of rule files: every action carries the
 * hash of the file its rule came from) and the one parser of durations
 * ("90s", "15m", "2h", "1d") that rule{silence=}, the rules' duration()
 * and the rule tools share. Owns no state.
 */
#ifndef RULE_UTIL_H
#define RULE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define RULE_SHA256_LEN 32
#define RULE_SHA256_HEX_LEN 64

/* FIPS 180-4 SHA-256 of data[len]. */
void rule_sha256(const void *data, size_t len, uint8_t ret_digest[RULE_SHA256_LEN]);
/* The same as 64 lower-case hex digits and a NUL. */
void rule_sha256_hex(const void *data, size_t len, char ret_hex[RULE_SHA256_HEX_LEN + 1]);

/* The longest duration accepted anywhere: 400 days. */
#define RULE_DURATION_MAX_S (400.0 * 86400.0)

/* Parses a duration: one or more groups of a decimal number and a unit,
 * s, m, h or d ("90s", "15m", "1.5h", "1h30m"); no sign, no blanks, a unit
 * on every group. Writes seconds to *ret_seconds and returns 0, or returns
 * -EINVAL (malformed) or -ERANGE (zero, or above RULE_DURATION_MAX_S). */
int rule_duration_parse(const char *text, double *ret_seconds);

#endif
