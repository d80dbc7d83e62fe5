/* libFuzzer target for one payload decoder, chosen at build time
 * (tests/fuzz/CMakeLists.txt builds this file once per decoder with
 * FUZZ_FORMAT set; the flat JSON build also feeds every input to the
 * status decoder, since devices/{id}/status payloads come from the same
 * devices).
 *
 * Each input is decoded as the pipeline does, into a fresh reading, once
 * with the default limits and once with tiny ones. A crash, a sanitizer
 * report or a broken promise of payload.h (abort()) is a finding.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_reading.h"
#include "payload.h"

#define ARRIVAL_NS INT64_C(1700000000000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What payload.h promises of every call. */
static void check(int ret, const struct gw_reading *r, const char *reason, size_t max_fields)
{
    if (ret != 0 && ret != -EBADMSG && ret != -EMSGSIZE && ret != -ENOMEM)
        abort();
    if (ret < 0 && reason[0] == '\0')
        abort();
    if (ret == 0 && (reason[0] != '\0' || r->n_fields == 0 || r->n_fields > max_fields))
        abort();
    for (size_t i = 0; i < r->n_fields; i++)
        if (!r->fields[i].name[0] ||
            (r->fields[i].value.type == GW_VALUE_STRING && !r->fields[i].value.u.string))
            abort();
    if (ret < 0 && (r->ts_ns != ARRIVAL_NS || r->ts_from_device))
        abort();
}

static void decode(const uint8_t *data, size_t size, const struct payload_limits *limits,
                   size_t max_fields)
{
    char reason[256];
    struct gw_reading *r = gw_reading_new("fuzz", GW_CHANNEL_TELEMETRY, ARRIVAL_NS);

    if (!r)
        return;
    check(payload_decode(FUZZ_FORMAT, data, size, limits, r, reason, sizeof(reason)), r, reason,
          max_fields);
    gw_reading_unref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct payload_limits tiny = { .max_bytes = 512, .max_fields = 3, .max_string = 8 };
    char reason[256];
    struct gw_reading *r;

    decode(data, size, NULL, PAYLOAD_MAX_FIELDS);
    decode(data, size, &tiny, 3);
    if (FUZZ_FORMAT != PAYLOAD_JSON)
        return 0;
    r = gw_reading_new("fuzz", GW_CHANNEL_STATUS, ARRIVAL_NS);
    if (!r)
        return 0;
    check(payload_decode_status(data, size, r, reason, sizeof(reason)), r, reason, 1);
    gw_reading_unref(r);
    return 0;
}
