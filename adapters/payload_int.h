/* payload_int: what the payload decoders (payload_*.c) share and nothing
 * outside adapters/payload*.c may use.
 *
 * Owns the checks every format applies the same way (field names, string
 * and number values, the field count), the meaning of a SenML pack once a
 * decoder has read its records, and the wording of their reasons, so that
 * a device gets the same answer whichever format it speaks. Does not parse
 * any syntax itself.
 */
#ifndef PAYLOAD_INT_H
#define PAYLOAD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct gw_reading;
struct gw_value;
struct payload_limits;

/* Each decoder: data is len bytes (1..limits->max_bytes), not
 * NUL-terminated; limits has no 0 member. Returns as payload_decode(). */
int payload__decode_json(const char *data, size_t len, const struct payload_limits *limits,
                         struct gw_reading *reading, char *reason, size_t reason_len);
int payload__decode_senml_json(const char *data, size_t len, const struct payload_limits *limits,
                               struct gw_reading *reading, char *reason, size_t reason_len);
int payload__decode_senml_cbor(const unsigned char *data, size_t len,
                               const struct payload_limits *limits, struct gw_reading *reading,
                               char *reason, size_t reason_len);
/* The JSON form of a status payload (payload_decode_status()). */
int payload__decode_status_json(const char *data, size_t len, struct gw_reading *reading,
                                char *reason, size_t reason_len);

/* Adds the field "status" for word[len], "online" or "offline" in any
 * case; else -EBADMSG with a reason. */
int payload__status_value(const char *word, size_t len, struct gw_reading *reading, char *reason,
                          size_t reason_len);

/* JSON parsing shared by the JSON decoders: parses all of data[len]
 * (white space may follow) under the lock cJSON 1.7 needs, and refuses
 * \u0000 in names and strings. Returns the tree (cJSON_Delete() it) or
 * NULL with a reason. */
struct cJSON *payload__json_parse(const char *data, size_t len, char *reason, size_t reason_len);
/* "an object", "a number", ... for reasons. */
const char *payload__json_type_name(const struct cJSON *item);

/* Writes a reason (formatted like printf) if reason is not NULL. */
void payload__reason(char *reason, size_t reason_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes name, quoted for a log line, into out[out_len]: at most about 40
 * bytes of it, control characters, quotes, backslashes and invalid UTF-8
 * escaped, "..." when cut. Returns out. */
const char *payload__quote(char *out, size_t out_len, const char *name);
#define PAYLOAD_QUOTE_LEN 64

/* true when the NUL-terminated s is well-formed UTF-8 (RFC 3629). */
bool payload__utf8_valid(const char *s);

/* 0 when name may be a field name (not empty, at most PAYLOAD_MAX_NAME
 * bytes, valid UTF-8, no control characters), else -EBADMSG or -EMSGSIZE
 * with a reason. */
int payload__check_name(const char *name, char *reason, size_t reason_len);

/* Adds one field to reading after the checks every format shares: the
 * name (payload__check_name()), a finite number, a string of valid UTF-8
 * and at most limits->max_string bytes, and at most limits->max_fields
 * distinct names added since the reading held n_before fields. value is
 * copied (its string too). Returns 0, -EBADMSG, -EMSGSIZE or -ENOMEM with
 * a reason. */
int payload__add_field(struct gw_reading *reading, size_t n_before,
                       const struct payload_limits *limits, const char *name,
                       const struct gw_value *value, char *reason, size_t reason_len);

/* SenML (RFC 8428). The decoders read the syntax and the label types; the
 * rest (base values, names, times, value rules, the fold into one
 * reading) is payload__senml_*(), the same for JSON and CBOR. */

/* The labels of RFC 8428 Table 4, in the order of their CBOR labels
 * -1..-6 and 0..8: CBOR label l is label -l - 1 when negative, 6 + l
 * otherwise. */
enum senml_label {
    SENML_BVER,
    SENML_BN,
    SENML_BT,
    SENML_BU,
    SENML_BV,
    SENML_BS,
    SENML_N,
    SENML_U,
    SENML_V,
    SENML_VS,
    SENML_VB,
    SENML_S,
    SENML_T,
    SENML_UT,
    SENML_VD,
    SENML_N_LABELS,
};

/* What a label's value must be. SENML_STRING for "vd" means its text
 * (JSON); CBOR carries it as a byte string. */
enum senml_type {
    SENML_NUMBER,
    SENML_STRING,
    SENML_BOOL,
};

/* The label's JSON name ("bver", ...). */
const char *payload__senml_label_name(enum senml_label label);
enum senml_type payload__senml_label_type(enum senml_label label);
/* The label named name[len] (not NUL-terminated), or -1. */
int payload__senml_label_find(const char *name, size_t len);

/* One record as a decoder read it, of the right types but nothing else
 * checked. Strings are NUL-terminated (a decoder refuses an embedded NUL)
 * and must stay valid until payload__senml_finish(). */
struct senml_record {
    uint32_t have; /* 1u << label for each label present */
    double num[SENML_N_LABELS];
    const char *str[SENML_N_LABELS];
    bool vb;
};

/* Slots kept on the stack; more (a larger max_fields) are allocated. */
#define SENML_INLINE_SLOTS 64

/* Where a field came from, to fold a time series and to refuse two names
 * that give one field. */
struct senml_slot {
    const char *bn, *n, *unit;
    int64_t ts_ns;
    bool sum;
};

/* One pack being decoded; on the decoder's stack. */
struct senml_pack {
    struct gw_reading *reading;
    const struct payload_limits *limits;
    size_t n_before;
    int64_t arrival_ns;
    size_t n_records, n_values;
    /* The base values in force. */
    const char *bn, *bu;
    double bt, bv, bs;
    /* The newest record time so far. */
    bool have_ts, ts_abs;
    int64_t ts_ns;
    /* Per field added (index - n_before). */
    struct senml_slot *slots;
    size_t cap_slots;
    struct senml_slot slot_buf[SENML_INLINE_SLOTS];
};

/* Starts pack for reading (arrival time: reading->ts_ns); end it with
 * payload__senml_finish() in every case. */
void payload__senml_begin(struct senml_pack *pack, struct gw_reading *reading,
                          const struct payload_limits *limits);
/* Applies record number index (from 0) of the pack: its base values, then
 * its fields. Returns 0, -EBADMSG, -EMSGSIZE or -ENOMEM with a reason. */
int payload__senml_record(struct senml_pack *pack, size_t index, const struct senml_record *rec,
                          char *reason, size_t reason_len);
/* Ends pack: when err is 0, checks it had a record and a value and sets
 * the reading's time. Frees what begin allocated. Returns err or the new error. */
int payload__senml_finish(struct senml_pack *pack, int err, char *reason, size_t reason_len);

#endif
