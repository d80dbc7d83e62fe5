/* gw_json: the one way gridgate parses JSON text (cJSON).
 *
 * cJSON 1.7 writes the position of the last error into a process-wide
 * variable on every parse, success or not, so two threads parsing at once
 * (the MQTT and CoAP intakes, the API's threads, a tool) race on it. Every
 * parse in gridgate goes through here, under one lock held for the parse
 * only; the error position comes back through ret_end, never from
 * cJSON_GetErrorPtr(), which another parse may have overwritten since.
 * Owns nothing but the lock.
 */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* cJSON_ParseWithLengthOpts under the lock. data need not be
 * NUL-terminated unless require_nul is set. ret_end may be NULL. */
cJSON *gw_json_parse(const char *data, size_t len, const char **ret_end, bool require_nul);

#endif
