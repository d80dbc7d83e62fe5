/* rule_sha256: SHA-256, for the provenance of rule files (every action
 * carries the hash of the file its rule came from, as loaded).
 *
 * Owns no state. Written here rather than taken from OpenSSL so that the
 * rule library keeps its one dependency (Lua).
 */
#ifndef RULE_SHA256_H
#define RULE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define RULE_SHA256_LEN 32
#define RULE_SHA256_HEX_LEN 64

/* FIPS 180-4 SHA-256 of data[len]. */
void rule_sha256(const void *data, size_t len, uint8_t ret_digest[RULE_SHA256_LEN]);
/* The same as 64 lower-case hex digits and a NUL. */
void rule_sha256_hex(const void *data, size_t len, char ret_hex[RULE_SHA256_HEX_LEN + 1]);

#endif
