#include "payload.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_reading.h"
#include "payload_int.h"

/* How much of a device-chosen name a reason quotes before cutting it. */
#define QUOTE_MAX 40

void payload__reason(char *reason, size_t reason_len, const char *fmt, ...)
{
    va_list ap;

    if (!reason || reason_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(reason, reason_len, fmt, ap);
    va_end(ap);
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. p is NUL-terminated;
 * a NUL is never a continuation byte, so this never reads past it. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0], lo, hi;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

bool payload__utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        size_t n = utf8_seq(p);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

static bool is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

const char *payload__quote(char *out, size_t out_len, const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t used = 0;

    if (out_len < PAYLOAD_QUOTE_LEN) {
        if (out_len > 0)
            out[0] = '\0';
        return out;
    }
    out[used++] = '"';
    while (*p) {
        char piece[8];
        size_t n = utf8_seq(p), piece_len;

        if (n == 1 && (*p == '"' || *p == '\\')) {
            piece[0] = '\\';
            piece[1] = (char)*p;
            piece_len = 2;
        } else if (n == 0 || (n == 1 && is_control(*p))) {
            snprintf(piece, sizeof(piece), "\\x%02x", *p);
            piece_len = 4;
            n = 1;
        } else {
            memcpy(piece, p, n);
            piece_len = n;
        }
        if (used - 1 + piece_len > QUOTE_MAX) {
            memcpy(out + used, "...", 3);
            used += 3;
            break;
        }
        memcpy(out + used, piece, piece_len);
        used += piece_len;
        p += n;
    }
    out[used++] = '"';
    out[used] = '\0';
    return out;
}

int payload__check_name(const char *name, char *reason, size_t reason_len)
{
    const unsigned char *p = (const unsigned char *)name;
    bool utf8_ok = true, control = false;
    char q[PAYLOAD_QUOTE_LEN];
    size_t len;

    /* One pass (this runs for every field of every reading). */
    while (*p) {
        size_t n = *p < 0x80 ? 1 : utf8_seq(p);

        if (n == 0) {
            utf8_ok = false;
            n = 1;
        } else if (n == 1 && is_control(*p)) {
            control = true;
        }
        p += n;
    }
    len = (size_t)(p - (const unsigned char *)name);
    if (len == 0) {
        payload__reason(reason, reason_len, "field name is empty");
        return -EBADMSG;
    }
    if (len > PAYLOAD_MAX_NAME) {
        payload__reason(reason, reason_len, "field %s: name is %zu bytes; the limit is %d",
                        payload__quote(q, sizeof(q), name), len, PAYLOAD_MAX_NAME);
        return -EMSGSIZE;
    }
    if (!utf8_ok) {
        payload__reason(reason, reason_len, "field %s: name is not valid UTF-8",
                        payload__quote(q, sizeof(q), name));
        return -EBADMSG;
    }
    /* A name becomes an InfluxDB field key, a Lua table key and part of log
     * lines; line protocol cannot carry a newline in a key at all. */
    if (control) {
        payload__reason(reason, reason_len, "field %s: name holds a control character",
                        payload__quote(q, sizeof(q), name));
        return -EBADMSG;
    }
    return 0;
}

int payload__add_field(struct gw_reading *reading, size_t n_before,
                       const struct payload_limits *limits, const char *name,
                       const struct gw_value *value, char *reason, size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN];
    size_t len;
    int err;

    err = payload__check_name(name, reason, reason_len);
    if (err < 0)
        return err;
    if (reading->n_fields - n_before >= limits->max_fields && !gw_reading_field(reading, name)) {
        payload__reason(reason, reason_len, "more than %zu fields", limits->max_fields);
        return -EMSGSIZE;
    }
    switch (value->type) {
    case GW_VALUE_NUMBER:
        if (!isfinite(value->u.number)) {
            payload__reason(reason, reason_len, "field %s: number is not finite",
                            payload__quote(q, sizeof(q), name));
            return -EBADMSG;
        }
        err = gw_reading_add_number(reading, name, value->u.number);
        break;
    case GW_VALUE_INTEGER:
        err = gw_reading_add_integer(reading, name, value->u.integer);
        break;
    case GW_VALUE_BOOL:
        err = gw_reading_add_bool(reading, name, value->u.boolean);
        break;
    case GW_VALUE_STRING:
        len = strlen(value->u.string);
        if (len > limits->max_string) {
            payload__reason(reason, reason_len, "field %s: string is %zu bytes; the limit is %zu",
                            payload__quote(q, sizeof(q), name), len, limits->max_string);
            return -EMSGSIZE;
        }
        if (!payload__utf8_valid(value->u.string)) {
            payload__reason(reason, reason_len, "field %s: string is not valid UTF-8",
                            payload__quote(q, sizeof(q), name));
            return -EBADMSG;
        }
        err = gw_reading_add_string(reading, name, value->u.string);
        break;
    default:
        payload__reason(reason, reason_len, "field %s: unknown value type",
                        payload__quote(q, sizeof(q), name));
        return -EBADMSG;
    }
    if (err < 0) {
        payload__reason(reason, reason_len, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* SenML (RFC 8428): what a pack means once a decoder has read it. */

#define NS_PER_S INT64_C(1000000000)
/* RFC 8428 §4.5.3: a time below 2^28 s is relative to now. */
#define SENML_RELATIVE_LIMIT 268435456.0
/* Absolute times, as for the flat JSON "ts": the years 2000..2100. */
#define SENML_TS_MIN_S 946684800.0
#define SENML_TS_END_S 4133980800.0
/* RFC 8428 §4.4: the version this gateway understands. */
#define SENML_VERSION 10

#define BIT(label) (UINT32_C(1) << (label))
#define SENML_BASE_LABELS                                                                          \
    (BIT(SENML_BVER) | BIT(SENML_BN) | BIT(SENML_BT) | BIT(SENML_BU) | BIT(SENML_BV) |             \
     BIT(SENML_BS))
#define SENML_VALUE_LABELS (BIT(SENML_V) | BIT(SENML_VS) | BIT(SENML_VB) | BIT(SENML_VD))

static const struct {
    const char *name;
    size_t len;
    enum senml_type type;
} senml_labels[SENML_N_LABELS] = {
    [SENML_BVER] = { "bver", 4, SENML_NUMBER }, [SENML_BN] = { "bn", 2, SENML_STRING },
    [SENML_BT] = { "bt", 2, SENML_NUMBER },     [SENML_BU] = { "bu", 2, SENML_STRING },
    [SENML_BV] = { "bv", 2, SENML_NUMBER },     [SENML_BS] = { "bs", 2, SENML_NUMBER },
    [SENML_N] = { "n", 1, SENML_STRING },       [SENML_U] = { "u", 1, SENML_STRING },
    [SENML_V] = { "v", 1, SENML_NUMBER },       [SENML_VS] = { "vs", 2, SENML_STRING },
    [SENML_VB] = { "vb", 2, SENML_BOOL },       [SENML_S] = { "s", 1, SENML_NUMBER },
    [SENML_T] = { "t", 1, SENML_NUMBER },       [SENML_UT] = { "ut", 2, SENML_NUMBER },
    [SENML_VD] = { "vd", 2, SENML_STRING },
};
#define SENML_NUMBER_LABELS                                                                        \
    (BIT(SENML_BVER) | BIT(SENML_BT) | BIT(SENML_BV) | BIT(SENML_BS) | BIT(SENML_V) |              \
     BIT(SENML_S) | BIT(SENML_T) | BIT(SENML_UT))

const char *payload__senml_label_name(enum senml_label label)
{
    return senml_labels[label].name;
}

enum senml_type payload__senml_label_type(enum senml_label label)
{
    return senml_labels[label].type;
}

int payload__senml_label_find(const char *name, size_t len)
{
    if (len == 0 || len > 4)
        return -1;
    for (int i = 0; i < SENML_N_LABELS; i++)
        if (senml_labels[i].len == len && memcmp(senml_labels[i].name, name, len) == 0)
            return i;
    return -1;
}

void payload__senml_begin(struct senml_pack *pack, struct gw_reading *reading,
                          const struct payload_limits *limits)
{
    /* Member by member: slot_buf needs no zeroing (2.5 KB a reading). */
    pack->reading = reading;
    pack->limits = limits;
    pack->n_before = reading->n_fields;
    pack->arrival_ns = reading->ts_ns;
    pack->n_records = pack->n_values = 0;
    pack->bn = pack->bu = NULL;
    pack->bt = pack->bv = pack->bs = 0;
    pack->have_ts = pack->ts_abs = false;
    pack->ts_ns = 0;
    pack->slots = pack->slot_buf;
    pack->cap_slots = SENML_INLINE_SLOTS;
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* RFC 8428 §4.5.1: bn + n of "A-Za-z0-9-:./_", starting with A-Za-z0-9;
 * or with '/', as LwM2M sends ("/3303/0/"). Also keeps names fit for
 * InfluxDB and log lines. */
static bool senml_name_ok(const char *bn, const char *n)
{
    const char *parts[2] = { bn, n };
    bool first = true;

    for (int i = 0; i < 2; i++) {
        for (const unsigned char *c = (const unsigned char *)parts[i]; *c; c++) {
            if (!is_alnum(*c) && (first ? *c != '/' : !strchr("-:./_", *c)))
                return false;
            first = false;
        }
    }
    return true;
}

/* Quotes bn + n for a reason. */
static const char *quote_name(char *out, size_t out_len, const char *bn, const char *n)
{
    char full[2 * PAYLOAD_QUOTE_LEN];
    size_t bn_len = strlen(bn);

    /* Only the start is shown (payload__quote() cuts at 40 bytes). */
    if (bn_len >= sizeof(full) - 1) {
        memcpy(full, bn, sizeof(full) - 1);
        full[sizeof(full) - 1] = '\0';
    } else {
        memcpy(full, bn, bn_len);
        strncpy(full + bn_len, n, sizeof(full) - 1 - bn_len);
        full[sizeof(full) - 1] = '\0';
    }
    return payload__quote(out, out_len, full);
}

/* Whether a1 + a2 and b1 + b2 are the same string. */
static bool concat_equal(const char *a1, const char *a2, const char *b1, const char *b2)
{
    for (;;) {
        if (!*a1 && a2) {
            a1 = a2;
            a2 = NULL;
            continue;
        }
        if (!*b1 && b2) {
            b1 = b2;
            b2 = NULL;
            continue;
        }
        if (*a1 != *b1)
            return false;
        if (!*a1)
            return true;
        a1++;
        b1++;
    }
}

/* The field name of a record: n; without one, the unit (RFC 8428 §5.1.3
 * tells humidity, longitude and latitude of one name apart by unit
 * alone); without either, what follows bn's last ':' or '/'. */
static const char *field_name(const char *bn, const char *n, const char *unit)
{
    const char *tail = bn;

    if (*n)
        return n;
    if (*unit)
        return unit;
    for (const char *c = bn; *c; c++)
        if (*c == ':' || *c == '/')
            tail = c + 1;
    return tail;
}

/* Seconds to ns, rounded to the microsecond: a double holds seconds since
 * the epoch to about 0.2 us, so finer digits would be noise. */
static int64_t seconds_to_ns(double s)
{
    double whole = floor(s);

    return (int64_t)whole * NS_PER_S + (int64_t)llround((s - whole) * 1e6) * 1000;
}

/* A record's time: bt + t, relative to arrival below 2^28 s. */
static int senml_time(const struct senml_pack *pack, size_t index, const struct senml_record *rec,
                      int64_t *ret_ns, bool *ret_abs, char *reason, size_t reason_len)
{
    double t = pack->bt + ((rec->have & BIT(SENML_T)) ? rec->num[SENML_T] : 0.0);
    int64_t ns;

    if (!isfinite(t)) {
        payload__reason(reason, reason_len, "record %zu: \"bt\" + \"t\" is not a finite number",
                        index);
        return -EBADMSG;
    }
    if (t >= SENML_RELATIVE_LIMIT) {
        if (t < SENML_TS_MIN_S || t >= SENML_TS_END_S) {
            payload__reason(reason, reason_len,
                            "record %zu: time %.17g is outside the years 2000..2100 (s since the "
                            "epoch)",
                            index, t);
            return -EBADMSG;
        }
        *ret_ns = seconds_to_ns(t);
        *ret_abs = true;
        return 0;
    }
    if (t < -SENML_RELATIVE_LIMIT ||
        __builtin_add_overflow(pack->arrival_ns, seconds_to_ns(t), &ns)) {
        payload__reason(reason, reason_len,
                        "record %zu: relative time %.17g is more than 2^28 s in the past", index,
                        t);
        return -EBADMSG;
    }
    *ret_ns = ns;
    *ret_abs = false;
    return 0;
}

/* RFC 8428 §5: "vd" is base64url (RFC 4648 §5); padding is tolerated. */
static bool base64url_ok(const char *s)
{
    size_t len = 0, pad = 0;

    for (const char *c = s; *c; c++, len++) {
        if (*c == '=') {
            pad++;
            continue;
        }
        if (pad || (!is_alnum((unsigned char)*c) && *c != '-' && *c != '_'))
            return false;
    }
    if (pad)
        return pad <= 2 && len % 4 == 0;
    return len % 4 != 1;
}

static int grow_slots(struct senml_pack *pack, size_t need)
{
    size_t cap = pack->cap_slots;
    struct senml_slot *slots;

    while (cap <= need)
        cap *= 2;
    if (pack->slots == pack->slot_buf) {
        slots = malloc(cap * sizeof(*slots));
        if (slots)
            memcpy(slots, pack->slot_buf, sizeof(pack->slot_buf));
    } else {
        slots = realloc(pack->slots, cap * sizeof(*slots));
    }
    if (!slots)
        return -ENOMEM;
    pack->slots = slots;
    pack->cap_slots = cap;
    return 0;
}

/* A record's name, unit and kind of value, quoted for a reason. */
static const char *describe(char *out, size_t out_len, const struct senml_slot *from)
{
    char q1[PAYLOAD_QUOTE_LEN], q2[PAYLOAD_QUOTE_LEN];

    quote_name(q1, sizeof(q1), from->bn, from->n);
    if (*from->unit)
        snprintf(out, out_len, "%s in %s%s", q1, payload__quote(q2, sizeof(q2), from->unit),
                 from->sum ? " (sum)" : "");
    else
        snprintf(out, out_len, "%s%s", q1, from->sum ? " (sum)" : "");
    return out;
}

/* Adds one value of a record unless the field holds a newer one from the
 * same name; refuses another name that makes the same field. */
static int senml_add(struct senml_pack *pack, size_t index, const char *name,
                     const struct senml_slot *from, const struct gw_value *value, char *reason,
                     size_t reason_len)
{
    struct gw_reading *r = pack->reading;
    const struct gw_field *f = gw_reading_field(r, name);
    size_t at = f ? (size_t)(f - r->fields) : r->n_fields;
    char field_reason[192];
    int err;

    if (f && at >= pack->n_before) {
        const struct senml_slot *old = &pack->slots[at - pack->n_before];

        if (old->sum != from->sum || strcmp(old->unit, from->unit) != 0 ||
            !concat_equal(old->bn, old->n, from->bn, from->n)) {
            char d1[2 * PAYLOAD_QUOTE_LEN + 16], d2[2 * PAYLOAD_QUOTE_LEN + 16];
            char q[PAYLOAD_QUOTE_LEN];

            payload__reason(reason, reason_len, "record %zu: %s and %s both make field %s", index,
                            describe(d1, sizeof(d1), old), describe(d2, sizeof(d2), from),
                            payload__quote(q, sizeof(q), name));
            return -EBADMSG;
        }
        /* A time series in one pack: the newest sample stays. */
        if (old->ts_ns > from->ts_ns)
            return 0;
    }
    err = payload__add_field(r, pack->n_before, pack->limits, name, value, field_reason,
                             sizeof(field_reason));
    if (err < 0) {
        payload__reason(reason, reason_len, "record %zu: %s", index, field_reason);
        return err;
    }
    if (at < pack->n_before)
        return 0;
    if (at - pack->n_before >= pack->cap_slots && grow_slots(pack, at - pack->n_before) < 0) {
        payload__reason(reason, reason_len, "out of memory");
        return -ENOMEM;
    }
    pack->slots[at - pack->n_before] = *from;
    return 0;
}

/* The first two value labels a record holds. */
static void two_values(uint32_t have, const char **first, const char **second)
{
    static const enum senml_label values[] = { SENML_V, SENML_VS, SENML_VB, SENML_VD };

    *first = *second = NULL;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        if (!(have & BIT(values[i])))
            continue;
        if (!*first)
            *first = senml_labels[values[i]].name;
        else if (!*second)
            *second = senml_labels[values[i]].name;
    }
}

int payload__senml_record(struct senml_pack *pack, size_t index, const struct senml_record *rec,
                          char *reason, size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN], sum_name[PAYLOAD_MAX_NAME + 8];
    uint32_t have = rec->have;
    const char *bn, *n, *unit, *name;
    struct senml_slot from;
    struct gw_value value;
    bool abs_time;
    int err;

    pack->n_records++;
    if (index >= pack->limits->max_fields) {
        payload__reason(reason, reason_len, "more than %zu records", pack->limits->max_fields);
        return -EMSGSIZE;
    }
    for (uint32_t nums = have & SENML_NUMBER_LABELS; nums; nums &= nums - 1) {
        int i = __builtin_ctz(nums);

        if (!isfinite(rec->num[i])) {
            payload__reason(reason, reason_len, "record %zu: \"%s\" is not a finite number", index,
                            senml_labels[i].name);
            return -EBADMSG;
        }
    }
    if (have & BIT(SENML_BVER)) {
        double v = rec->num[SENML_BVER];

        if (v < 1 || v != floor(v)) {
            payload__reason(reason, reason_len, "record %zu: \"bver\" must be a positive integer",
                            index);
            return -EBADMSG;
        }
        if (v > SENML_VERSION) {
            payload__reason(reason, reason_len,
                            "record %zu: \"bver\" %.17g is newer than SenML version %d", index, v,
                            SENML_VERSION);
            return -EBADMSG;
        }
    }
    /* Base values hold from this record on until another changes them. */
    if (have & BIT(SENML_BN))
        pack->bn = rec->str[SENML_BN];
    if (have & BIT(SENML_BT))
        pack->bt = rec->num[SENML_BT];
    if (have & BIT(SENML_BV))
        pack->bv = rec->num[SENML_BV];
    if (have & BIT(SENML_BS))
        pack->bs = rec->num[SENML_BS];
    if (have & BIT(SENML_BU))
        pack->bu = rec->str[SENML_BU];

    if (!(have & (SENML_VALUE_LABELS | BIT(SENML_S)))) {
        /* Senders (KPN Things among them) put the base values in a record
         * of their own: fine. Anything more without a value is not. */
        if ((have & SENML_BASE_LABELS) && !(have & ~SENML_BASE_LABELS))
            return 0;
        payload__reason(reason, reason_len,
                        "record %zu: no value (\"v\", \"vs\", \"vb\", \"vd\" or \"s\")", index);
        return -EBADMSG;
    }
    if (__builtin_popcount(have & SENML_VALUE_LABELS) > 1) {
        const char *first, *second;

        two_values(have, &first, &second);
        payload__reason(reason, reason_len,
                        "record %zu: \"%s\" and \"%s\" in one record; it may have one value", index,
                        first, second);
        return -EBADMSG;
    }

    bn = pack->bn ? pack->bn : "";
    n = (have & BIT(SENML_N)) ? rec->str[SENML_N] : "";
    if (!*bn && !*n) {
        payload__reason(reason, reason_len, "record %zu: no name (\"bn\" and \"n\" are empty)",
                        index);
        return -EBADMSG;
    }
    if (!senml_name_ok(bn, n)) {
        payload__reason(reason, reason_len,
                        "record %zu: name %s holds a character RFC 8428 does not allow", index,
                        quote_name(q, sizeof(q), bn, n));
        return -EBADMSG;
    }
    unit = (have & BIT(SENML_U)) ? rec->str[SENML_U] : pack->bu ? pack->bu : "";
    name = field_name(bn, n, unit);
    if (!*name) {
        payload__reason(reason, reason_len,
                        "record %zu: no field name: \"bn\" %s ends in ':' or '/' and there is no "
                        "\"n\" or unit",
                        index, payload__quote(q, sizeof(q), bn));
        return -EBADMSG;
    }
    from = (struct senml_slot){ .bn = bn, .n = n, .unit = unit };
    err = senml_time(pack, index, rec, &from.ts_ns, &abs_time, reason, reason_len);
    if (err < 0)
        return err;

    if (have & BIT(SENML_V)) {
        value =
            (struct gw_value){ .type = GW_VALUE_NUMBER, .u.number = pack->bv + rec->num[SENML_V] };
        if (!isfinite(value.u.number)) {
            payload__reason(reason, reason_len, "record %zu: \"bv\" + \"v\" is not a finite number",
                            index);
            return -EBADMSG;
        }
    } else if (have & BIT(SENML_VS)) {
        value =
            (struct gw_value){ .type = GW_VALUE_STRING, .u.string = (char *)rec->str[SENML_VS] };
    } else if (have & BIT(SENML_VB)) {
        value = (struct gw_value){ .type = GW_VALUE_BOOL, .u.boolean = rec->vb };
    } else if (have & BIT(SENML_VD)) {
        if (!base64url_ok(rec->str[SENML_VD])) {
            payload__reason(reason, reason_len, "record %zu: \"vd\" is not base64url (RFC 4648 §5)",
                            index);
            return -EBADMSG;
        }
        value =
            (struct gw_value){ .type = GW_VALUE_STRING, .u.string = (char *)rec->str[SENML_VD] };
    }
    if (have & SENML_VALUE_LABELS) {
        err = senml_add(pack, index, name, &from, &value, reason, reason_len);
        if (err < 0)
            return err;
    }
    if (have & BIT(SENML_S)) {
        value =
            (struct gw_value){ .type = GW_VALUE_NUMBER, .u.number = pack->bs + rec->num[SENML_S] };
        if (!isfinite(value.u.number)) {
            payload__reason(reason, reason_len, "record %zu: \"bs\" + \"s\" is not a finite number",
                            index);
            return -EBADMSG;
        }
        if (strlen(name) > PAYLOAD_MAX_NAME) {
            char name_reason[160];

            err = payload__check_name(name, name_reason, sizeof(name_reason));
            payload__reason(reason, reason_len, "record %zu: %s", index, name_reason);
            return err;
        }
        snprintf(sum_name, sizeof(sum_name), "%s_sum", name);
        from.sum = true;
        err = senml_add(pack, index, sum_name, &from, &value, reason, reason_len);
        if (err < 0)
            return err;
    }
    pack->n_values++;
    if (!pack->have_ts || from.ts_ns > pack->ts_ns) {
        pack->ts_ns = from.ts_ns;
        pack->have_ts = true;
        pack->ts_abs = abs_time;
    }
    return 0;
}

int payload__senml_finish(struct senml_pack *pack, int err, char *reason, size_t reason_len)
{
    if (err == 0 && pack->n_records == 0) {
        payload__reason(reason, reason_len, "no records");
        err = -EBADMSG;
    } else if (err == 0 && pack->n_values == 0) {
        payload__reason(reason, reason_len, "no fields");
        err = -EBADMSG;
    }
    if (err == 0 && pack->have_ts) {
        pack->reading->ts_ns = pack->ts_ns;
        pack->reading->ts_from_device = pack->ts_abs;
    }
    if (pack->slots != pack->slot_buf)
        free(pack->slots);
    pack->slots = NULL;
    return err;
}

/* Entry points. */

static struct payload_limits resolve_limits(const struct payload_limits *limits)
{
    struct payload_limits l = limits ? *limits : (struct payload_limits){ 0 };

    if (l.max_bytes == 0)
        l.max_bytes = PAYLOAD_MAX_BYTES;
    if (l.max_fields == 0)
        l.max_fields = PAYLOAD_MAX_FIELDS;
    if (l.max_string == 0)
        l.max_string = PAYLOAD_MAX_STRING;
    return l;
}

int payload_decode(enum payload_format format, const void *data, size_t len,
                   const struct payload_limits *limits, struct gw_reading *reading, char *reason,
                   size_t reason_len)
{
    struct payload_limits l = resolve_limits(limits);

    if (reason && reason_len > 0)
        reason[0] = '\0';
    if (len > l.max_bytes) {
        payload__reason(reason, reason_len, "payload is %zu bytes; the limit is %zu", len,
                        l.max_bytes);
        return -EMSGSIZE;
    }
    if (format != PAYLOAD_JSON && format != PAYLOAD_SENML_JSON && format != PAYLOAD_SENML_CBOR) {
        payload__reason(reason, reason_len, "unknown payload format %d", (int)format);
        return -EPROTONOSUPPORT;
    }
    if (!data || len == 0) {
        payload__reason(reason, reason_len, "empty payload");
        return -EBADMSG;
    }
    switch (format) {
    case PAYLOAD_JSON:
        return payload__decode_json(data, len, &l, reading, reason, reason_len);
    case PAYLOAD_SENML_JSON:
        return payload__decode_senml_json(data, len, &l, reading, reason, reason_len);
    case PAYLOAD_SENML_CBOR:
        break;
    }
    return payload__decode_senml_cbor(data, len, &l, reading, reason, reason_len);
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

enum payload_format payload_guess_format(const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;

    if (!data || len == 0)
        return PAYLOAD_JSON;
    /* An array head, or tag 55799 (self-described CBOR) before one. */
    if ((p[0] >= 0x80 && p[0] <= 0x9f) ||
        (len >= 3 && p[0] == 0xd9 && p[1] == 0xd9 && p[2] == 0xf7))
        return PAYLOAD_SENML_CBOR;
    /* cJSON skips a UTF-8 byte order mark: so does the guess. */
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end && is_space(*p))
        p++;
    if (p < end && *p == '[')
        return PAYLOAD_SENML_JSON;
    return PAYLOAD_JSON;
}

/* word[len] equals the lower-case ASCII text, in any case. */
static bool word_is(const char *word, size_t len, const char *text)
{
    if (strlen(text) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = word[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != text[i])
            return false;
    }
    return true;
}

int payload__status_value(const char *word, size_t len, struct gw_reading *reading, char *reason,
                          size_t reason_len)
{
    struct payload_limits limits = resolve_limits(NULL);
    const char *status = word_is(word, len, "online")    ? "online"
                         : word_is(word, len, "offline") ? "offline"
                                                         : NULL;
    struct gw_value value = { .type = GW_VALUE_STRING, .u.string = (char *)status };

    if (!status) {
        payload__reason(reason, reason_len, "status must be \"online\" or \"offline\"");
        return -EBADMSG;
    }
    return payload__add_field(reading, reading->n_fields, &limits, "status", &value, reason,
                              reason_len);
}

int payload_decode_status(const void *data, size_t len, struct gw_reading *reading, char *reason,
                          size_t reason_len)
{
    const char *p = data, *end;

    if (reason && reason_len > 0)
        reason[0] = '\0';
    if (len > PAYLOAD_MAX_BYTES) {
        payload__reason(reason, reason_len, "payload is %zu bytes; the limit is %d", len,
                        PAYLOAD_MAX_BYTES);
        return -EMSGSIZE;
    }
    if (!data || len == 0) {
        payload__reason(reason, reason_len, "empty payload");
        return -EBADMSG;
    }
    end = p + len;
    while (p < end && is_space((unsigned char)*p))
        p++;
    while (end > p && is_space((unsigned char)end[-1]))
        end--;
    if (p < end && *p == '{')
        return payload__decode_status_json(data, len, reading, reason, reason_len);
    return payload__status_value(p, (size_t)(end - p), reading, reason, reason_len);
}

const char *payload_format_name(enum payload_format format)
{
    switch (format) {
    case PAYLOAD_JSON:
        return "json";
    case PAYLOAD_SENML_JSON:
        return "senml+json";
    case PAYLOAD_SENML_CBOR:
        return "senml+cbor";
    }
    return "unknown";
}
