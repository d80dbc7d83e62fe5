/* SenML CBOR (RFC 8428 §6, Content-Format 112): the syntax and the label
 * types; payload__senml_record() does the rest.
 *
 * libcbor's streaming decoder reads one data item head at a time (a whole
 * definite string with it) and allocates nothing; this file walks the
 * pack's fixed shape, an array of maps of scalars, with a loop and no
 * recursion, so nesting costs nothing: anything deeper than a record's
 * value is refused as soon as its head is seen. cbor_load() is not used:
 * it builds a tree (an allocation per item) and recurses once per level.
 */
#include "payload.h"

#include <cbor.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_reading.h"
#include "payload_int.h"

/* RFC 8949 §3.4.6: a tag that only says "this is CBOR". */
#define TAG_SELF_DESCRIBED 55799
/* RFC 8949 §3.4.4, allowed for numbers by RFC 8428 §6. */
#define TAG_DECIMAL_FRACTION 4
/* Strings are copied here NUL-terminated; a payload this small uses the
 * stack. */
#define STACK_ARENA 1024

enum tok_kind {
    TOK_UINT,
    TOK_NEGINT, /* the value is -1 - u */
    TOK_BYTES,
    TOK_TEXT,
    TOK_BYTES_START, /* an indefinite-length byte string's chunks follow */
    TOK_TEXT_START,
    TOK_ARRAY,
    TOK_ARRAY_INDEF,
    TOK_MAP,
    TOK_MAP_INDEF,
    TOK_TAG,
    TOK_FLOAT,
    TOK_BOOL,
    TOK_NULL,
    TOK_UNDEF,
    TOK_BREAK,
};

struct tok {
    enum tok_kind kind;
    uint64_t u; /* TOK_UINT, TOK_NEGINT, TOK_TAG, and the count of TOK_ARRAY, TOK_MAP */
    double f;
    bool b;
    const unsigned char *data; /* TOK_BYTES, TOK_TEXT */
    size_t len;
};

static void on_int(void *ctx, enum tok_kind kind, uint64_t u)
{
    struct tok *t = ctx;

    t->kind = kind;
    t->u = u;
}

static void on_uint8(void *ctx, uint8_t v)
{
    on_int(ctx, TOK_UINT, v);
}

static void on_uint16(void *ctx, uint16_t v)
{
    on_int(ctx, TOK_UINT, v);
}

static void on_uint32(void *ctx, uint32_t v)
{
    on_int(ctx, TOK_UINT, v);
}

static void on_uint64(void *ctx, uint64_t v)
{
    on_int(ctx, TOK_UINT, v);
}

static void on_negint8(void *ctx, uint8_t v)
{
    on_int(ctx, TOK_NEGINT, v);
}

static void on_negint16(void *ctx, uint16_t v)
{
    on_int(ctx, TOK_NEGINT, v);
}

static void on_negint32(void *ctx, uint32_t v)
{
    on_int(ctx, TOK_NEGINT, v);
}

static void on_negint64(void *ctx, uint64_t v)
{
    on_int(ctx, TOK_NEGINT, v);
}

static void on_tag(void *ctx, uint64_t v)
{
    on_int(ctx, TOK_TAG, v);
}

static void on_array(void *ctx, size_t n)
{
    on_int(ctx, TOK_ARRAY, n);
}

static void on_map(void *ctx, size_t n)
{
    on_int(ctx, TOK_MAP, n);
}

static void on_string(void *ctx, enum tok_kind kind, cbor_data data, size_t len)
{
    struct tok *t = ctx;

    t->kind = kind;
    t->data = data;
    t->len = len;
}

static void on_bytes(void *ctx, cbor_data data, size_t len)
{
    on_string(ctx, TOK_BYTES, data, len);
}

static void on_text(void *ctx, cbor_data data, size_t len)
{
    on_string(ctx, TOK_TEXT, data, len);
}

static void on_simple(void *ctx, enum tok_kind kind)
{
    ((struct tok *)ctx)->kind = kind;
}

static void on_bytes_start(void *ctx)
{
    on_simple(ctx, TOK_BYTES_START);
}

static void on_text_start(void *ctx)
{
    on_simple(ctx, TOK_TEXT_START);
}

static void on_array_indef(void *ctx)
{
    on_simple(ctx, TOK_ARRAY_INDEF);
}

static void on_map_indef(void *ctx)
{
    on_simple(ctx, TOK_MAP_INDEF);
}

static void on_null(void *ctx)
{
    on_simple(ctx, TOK_NULL);
}

static void on_undef(void *ctx)
{
    on_simple(ctx, TOK_UNDEF);
}

static void on_break(void *ctx)
{
    on_simple(ctx, TOK_BREAK);
}

static void on_float(void *ctx, float f)
{
    struct tok *t = ctx;

    t->kind = TOK_FLOAT;
    t->f = f;
}

static void on_double(void *ctx, double f)
{
    struct tok *t = ctx;

    t->kind = TOK_FLOAT;
    t->f = f;
}

static void on_bool(void *ctx, bool b)
{
    struct tok *t = ctx;

    t->kind = TOK_BOOL;
    t->b = b;
}

/* Read-only and without state: shared by every thread. */
static const struct cbor_callbacks callbacks = {
    .uint8 = on_uint8,
    .uint16 = on_uint16,
    .uint32 = on_uint32,
    .uint64 = on_uint64,
    .negint8 = on_negint8,
    .negint16 = on_negint16,
    .negint32 = on_negint32,
    .negint64 = on_negint64,
    .byte_string = on_bytes,
    .byte_string_start = on_bytes_start,
    .string = on_text,
    .string_start = on_text_start,
    .array_start = on_array,
    .indef_array_start = on_array_indef,
    .map_start = on_map,
    .indef_map_start = on_map_indef,
    .tag = on_tag,
    .float2 = on_float,
    .float4 = on_float,
    .float8 = on_double,
    .undefined = on_undef,
    .null = on_null,
    .boolean = on_bool,
    .indef_break = on_break,
};

struct reader {
    const unsigned char *data;
    size_t len, pos;
    size_t at; /* where tok starts */
    struct tok tok;
    char *arena;
    size_t arena_len, arena_used;
};

static const char *tok_name(enum tok_kind kind)
{
    switch (kind) {
    case TOK_UINT:
    case TOK_NEGINT:
        return "an integer";
    case TOK_BYTES:
    case TOK_BYTES_START:
        return "a byte string";
    case TOK_TEXT:
    case TOK_TEXT_START:
        return "a text string";
    case TOK_ARRAY:
    case TOK_ARRAY_INDEF:
        return "an array";
    case TOK_MAP:
    case TOK_MAP_INDEF:
        return "a map";
    case TOK_TAG:
        return "a tag";
    case TOK_FLOAT:
        return "a float";
    case TOK_BOOL:
        return "a boolean";
    case TOK_NULL:
        return "null";
    case TOK_UNDEF:
        return "undefined";
    case TOK_BREAK:
        return "a break";
    }
    return "something else";
}

/* Reads the next item head into rd->tok; a break is refused unless
 * break_ok. */
static int next(struct reader *rd, bool break_ok, char *reason, size_t reason_len)
{
    struct cbor_decoder_result res;

    rd->at = rd->pos;
    if (rd->pos >= rd->len) {
        payload__reason(reason, reason_len, "CBOR ends early (at byte %zu)", rd->pos);
        return -EBADMSG;
    }
    res = cbor_stream_decode(rd->data + rd->pos, rd->len - rd->pos, &callbacks, &rd->tok);
    if (res.status == CBOR_DECODER_NEDATA) {
        payload__reason(reason, reason_len, "CBOR ends early (in the item at byte %zu)", rd->at);
        return -EBADMSG;
    }
    if (res.status != CBOR_DECODER_FINISHED || res.read == 0 || res.read > rd->len - rd->pos) {
        payload__reason(reason, reason_len, "not valid CBOR (at byte %zu)", rd->at);
        return -EBADMSG;
    }
    rd->pos += res.read;
    if (rd->tok.kind == TOK_BREAK && !break_ok) {
        payload__reason(reason, reason_len, "not valid CBOR (unexpected break at byte %zu)",
                        rd->at);
        return -EBADMSG;
    }
    return 0;
}

static int arena_put(struct reader *rd, const void *data, size_t len, char *reason,
                     size_t reason_len)
{
    /* Never: the arena is sized from the payload (see decode). */
    if (len > rd->arena_len - rd->arena_used) {
        payload__reason(reason, reason_len, "out of scratch space");
        return -ENOMEM;
    }
    if (len)
        memcpy(rd->arena + rd->arena_used, data, len);
    rd->arena_used += len;
    return 0;
}

/* Copies the string whose head is rd->tok, definite or in chunks, into
 * the arena with a NUL after it. */
static int read_string(struct reader *rd, const char **ret, size_t *ret_len, char *reason,
                       size_t reason_len)
{
    bool text = rd->tok.kind == TOK_TEXT || rd->tok.kind == TOK_TEXT_START;
    size_t start = rd->arena_used;
    int err;

    if (rd->tok.kind == TOK_TEXT || rd->tok.kind == TOK_BYTES) {
        err = arena_put(rd, rd->tok.data, rd->tok.len, reason, reason_len);
        if (err < 0)
            return err;
    } else {
        for (;;) {
            err = next(rd, true, reason, reason_len);
            if (err < 0)
                return err;
            if (rd->tok.kind == TOK_BREAK)
                break;
            /* RFC 8949 §3.2.3: chunks are definite strings of the same type. */
            if (rd->tok.kind != (text ? TOK_TEXT : TOK_BYTES)) {
                payload__reason(reason, reason_len,
                                "not valid CBOR (%s in an indefinite-length string at byte %zu)",
                                tok_name(rd->tok.kind), rd->at);
                return -EBADMSG;
            }
            err = arena_put(rd, rd->tok.data, rd->tok.len, reason, reason_len);
            if (err < 0)
                return err;
        }
    }
    err = arena_put(rd, "", 1, reason, reason_len);
    if (err < 0)
        return err;
    *ret = rd->arena + start;
    *ret_len = rd->arena_used - start - 1;
    return 0;
}

/* RFC 8428 §6: "vd" is a byte string in CBOR, base64url text in JSON, and
 * the gateway keeps the text: unpadded base64url (RFC 4648 §5). */
static int base64url(struct reader *rd, const char *bytes, size_t len, const char **ret,
                     char *reason, size_t reason_len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = (const unsigned char *)bytes;
    size_t need = (len + 2) / 3 * 4 + 1;
    char *out;

    if (need > rd->arena_len - rd->arena_used) {
        payload__reason(reason, reason_len, "out of scratch space");
        return -ENOMEM;
    }
    out = rd->arena + rd->arena_used;
    *ret = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *out++ = alphabet[(v >> 18) & 63];
        *out++ = alphabet[(v >> 12) & 63];
        if (i + 1 < len)
            *out++ = alphabet[(v >> 6) & 63];
        if (i + 2 < len)
            *out++ = alphabet[v & 63];
    }
    *out++ = '\0';
    rd->arena_used = (size_t)(out - rd->arena);
    return 0;
}

/* A value as read, before its label's type is checked. */
enum val_kind {
    VAL_NUMBER,
    VAL_TEXT,
    VAL_BYTES,
    VAL_BOOL,
    VAL_NULL,
    VAL_NESTED, /* an array or a map: its content is not read */
    VAL_TAG,    /* a tag other than 4: its content is not read */
};

struct val {
    enum val_kind kind;
    double num;
    const char *str;
    size_t len;
    bool b;
    uint64_t tag;
};

/* An integer item as text: "-18446744073709551616" at most. */
static void int_text(char *out, size_t out_len, enum tok_kind kind, uint64_t u)
{
    if (kind == TOK_UINT)
        snprintf(out, out_len, "%" PRIu64, u);
    else if (u == UINT64_MAX)
        snprintf(out, out_len, "-18446744073709551616");
    else
        snprintf(out, out_len, "-%" PRIu64, u + 1);
}

static double int_value(enum tok_kind kind, uint64_t u)
{
    return kind == TOK_UINT ? (double)u : -1.0 - (double)u;
}

/* A map key as read: a known label, or what to call an unknown one. */
struct label_ref {
    int label; /* enum senml_label, or -1 */
    enum tok_kind kind;
    uint64_t u;       /* TOK_UINT, TOK_NEGINT */
    const char *text; /* TOK_TEXT (NUL-terminated in the arena) */
};

/* How a reason names the label; formatted only when there is an error. */
static const char *label_what(char *out, size_t out_len, const struct label_ref *ref)
{
    char q[PAYLOAD_QUOTE_LEN];

    if (ref->label >= 0)
        snprintf(out, out_len, "\"%s\"", payload__senml_label_name(ref->label));
    else if (ref->kind == TOK_TEXT)
        snprintf(out, out_len, "label %s", payload__quote(q, sizeof(q), ref->text));
    else {
        int_text(q, sizeof(q), ref->kind, ref->u);
        snprintf(out, out_len, "label %s", q);
    }
    return out;
}
#define LABEL_WHAT_LEN (PAYLOAD_QUOTE_LEN + 8)

/* Tag 4's content, [exponent, mantissa] as integers (no bignums), as the
 * double nearest to mantissa * 10^exponent. */
static int decimal_fraction(struct reader *rd, size_t index, const struct label_ref *ref,
                            double *ret, char *reason, size_t reason_len)
{
    char exponent[24], mantissa[24], text[64], what[LABEL_WHAT_LEN];
    int err;

    err = next(rd, false, reason, reason_len);
    if (err < 0)
        return err;
    if (rd->tok.kind != TOK_ARRAY || rd->tok.u != 2)
        goto bad;
    err = next(rd, false, reason, reason_len);
    if (err < 0)
        return err;
    if (rd->tok.kind != TOK_UINT && rd->tok.kind != TOK_NEGINT)
        goto bad;
    int_text(exponent, sizeof(exponent), rd->tok.kind, rd->tok.u);
    err = next(rd, false, reason, reason_len);
    if (err < 0)
        return err;
    if (rd->tok.kind != TOK_UINT && rd->tok.kind != TOK_NEGINT)
        goto bad;
    int_text(mantissa, sizeof(mantissa), rd->tok.kind, rd->tok.u);
    /* strtod rounds correctly; an exponent out of range gives inf (then
     * refused as not finite) or 0. No decimal point: the locale is moot. */
    snprintf(text, sizeof(text), "%se%s", mantissa, exponent);
    *ret = strtod(text, NULL);
    return 0;
bad:
    payload__reason(reason, reason_len,
                    "record %zu: %s: a decimal fraction (tag 4) must be [exponent, mantissa] of "
                    "integers",
                    index, label_what(what, sizeof(what), ref));
    return -EBADMSG;
}

static int read_value(struct reader *rd, size_t index, const struct label_ref *ref, struct val *v,
                      char *reason, size_t reason_len)
{
    int err = next(rd, false, reason, reason_len);

    if (err < 0)
        return err;
    *v = (struct val){ .kind = VAL_NULL };
    switch (rd->tok.kind) {
    case TOK_UINT:
    case TOK_NEGINT:
        v->kind = VAL_NUMBER;
        v->num = int_value(rd->tok.kind, rd->tok.u);
        return 0;
    case TOK_FLOAT:
        v->kind = VAL_NUMBER;
        v->num = rd->tok.f;
        return 0;
    case TOK_TEXT:
    case TOK_TEXT_START:
        v->kind = VAL_TEXT;
        return read_string(rd, &v->str, &v->len, reason, reason_len);
    case TOK_BYTES:
    case TOK_BYTES_START:
        v->kind = VAL_BYTES;
        return read_string(rd, &v->str, &v->len, reason, reason_len);
    case TOK_BOOL:
        v->kind = VAL_BOOL;
        v->b = rd->tok.b;
        return 0;
    case TOK_NULL:
    case TOK_UNDEF:
    case TOK_BREAK:
        return 0;
    case TOK_ARRAY:
    case TOK_ARRAY_INDEF:
    case TOK_MAP:
    case TOK_MAP_INDEF:
        v->kind = VAL_NESTED;
        return 0;
    case TOK_TAG:
        if (rd->tok.u == TAG_DECIMAL_FRACTION) {
            v->kind = VAL_NUMBER;
            return decimal_fraction(rd, index, ref, &v->num, reason, reason_len);
        }
        v->kind = VAL_TAG;
        v->tag = rd->tok.u;
        return 0;
    }
    return 0;
}

/* Reads one record (a map) into rec; rd->tok is its head. */
static int read_record(struct reader *rd, size_t index, struct senml_record *rec, char *reason,
                       size_t reason_len)
{
    bool indef = rd->tok.kind == TOK_MAP_INDEF;
    uint64_t count = rd->tok.u;
    int err;

    rec->have = 0;
    if (rd->tok.kind != TOK_MAP && !indef) {
        payload__reason(reason, reason_len, "record %zu: expected a map, got %s", index,
                        tok_name(rd->tok.kind));
        return -EBADMSG;
    }
    /* Each entry takes two bytes at least, so a huge count soon ends. */
    for (uint64_t i = 0; indef || i < count; i++) {
        struct label_ref ref = { .label = -1 };
        char what[LABEL_WHAT_LEN];
        int label;
        struct val v;

        err = next(rd, indef, reason, reason_len);
        if (err < 0)
            return err;
        if (rd->tok.kind == TOK_BREAK)
            break;
        ref.kind = rd->tok.kind;
        ref.u = rd->tok.u;
        switch (rd->tok.kind) {
        case TOK_UINT:
            if (rd->tok.u <= SENML_VD - SENML_N)
                ref.label = SENML_N + (int)rd->tok.u;
            break;
        case TOK_NEGINT:
            if (rd->tok.u <= SENML_BS)
                ref.label = (int)rd->tok.u;
            break;
        case TOK_TEXT:
        case TOK_TEXT_START: {
            size_t len;

            ref.kind = TOK_TEXT;
            err = read_string(rd, &ref.text, &len, reason, reason_len);
            if (err < 0)
                return err;
            ref.label = payload__senml_label_find(ref.text, len);
            /* RFC 8428 §4.4: a label ending in '_' must be understood. */
            if (ref.label < 0 && len > 0 && ref.text[len - 1] == '_') {
                payload__reason(reason, reason_len, "record %zu: %s must be understood and is not",
                                index, label_what(what, sizeof(what), &ref));
                return -EBADMSG;
            }
            break;
        }
        default:
            payload__reason(reason, reason_len,
                            "record %zu: a label must be an integer or a text string, not %s",
                            index, tok_name(rd->tok.kind));
            return -EBADMSG;
        }
        label = ref.label;
        if (label >= 0 && (rec->have & (UINT32_C(1) << label))) {
            payload__reason(reason, reason_len, "record %zu: %s appears twice", index,
                            label_what(what, sizeof(what), &ref));
            return -EBADMSG;
        }
        err = read_value(rd, index, &ref, &v, reason, reason_len);
        if (err < 0)
            return err;
        if (v.kind == VAL_TAG) {
            payload__reason(reason, reason_len, "record %zu: %s: CBOR tag %" PRIu64 " not allowed",
                            index, label_what(what, sizeof(what), &ref), v.tag);
            return -EBADMSG;
        }
        if (label < 0) {
            if (v.kind == VAL_NESTED) {
                payload__reason(reason, reason_len,
                                "record %zu: %s: nested array or map not allowed (SenML records "
                                "are flat)",
                                index, label_what(what, sizeof(what), &ref));
                return -EBADMSG;
            }
            continue;
        }
        switch (payload__senml_label_type(label)) {
        case SENML_NUMBER:
            if (v.kind != VAL_NUMBER) {
                payload__reason(reason, reason_len, "record %zu: %s is not a number", index,
                                label_what(what, sizeof(what), &ref));
                return -EBADMSG;
            }
            rec->num[label] = v.num;
            break;
        case SENML_STRING:
            if (label == SENML_VD) {
                if (v.kind != VAL_BYTES) {
                    payload__reason(reason, reason_len, "record %zu: %s is not a byte string",
                                    index, label_what(what, sizeof(what), &ref));
                    return -EBADMSG;
                }
                err = base64url(rd, v.str, v.len, &rec->str[label], reason, reason_len);
                if (err < 0)
                    return err;
                break;
            }
            if (v.kind != VAL_TEXT) {
                payload__reason(reason, reason_len, "record %zu: %s is not a text string", index,
                                label_what(what, sizeof(what), &ref));
                return -EBADMSG;
            }
            /* A C string would end there, silently. */
            if (memchr(v.str, '\0', v.len)) {
                payload__reason(reason, reason_len, "record %zu: %s holds a NUL", index,
                                label_what(what, sizeof(what), &ref));
                return -EBADMSG;
            }
            rec->str[label] = v.str;
            break;
        case SENML_BOOL:
            if (v.kind != VAL_BOOL) {
                payload__reason(reason, reason_len, "record %zu: %s is not a boolean", index,
                                label_what(what, sizeof(what), &ref));
                return -EBADMSG;
            }
            rec->vb = v.b;
            break;
        }
        rec->have |= UINT32_C(1) << label;
    }
    return 0;
}

static int read_pack(struct reader *rd, struct senml_pack *pack,
                     const struct payload_limits *limits, char *reason, size_t reason_len)
{
    struct senml_record rec;
    uint64_t count;
    bool indef;
    int err;

    err = next(rd, false, reason, reason_len);
    if (err < 0)
        return err;
    if (rd->tok.kind == TOK_TAG && rd->tok.u == TAG_SELF_DESCRIBED) {
        err = next(rd, false, reason, reason_len);
        if (err < 0)
            return err;
    }
    if (rd->tok.kind == TOK_TAG) {
        payload__reason(reason, reason_len, "CBOR tag %" PRIu64 " not allowed", rd->tok.u);
        return -EBADMSG;
    }
    if (rd->tok.kind != TOK_ARRAY && rd->tok.kind != TOK_ARRAY_INDEF) {
        payload__reason(reason, reason_len, "expected a SenML array, got %s",
                        tok_name(rd->tok.kind));
        return -EBADMSG;
    }
    indef = rd->tok.kind == TOK_ARRAY_INDEF;
    count = rd->tok.u;
    if (!indef && count > limits->max_fields) {
        payload__reason(reason, reason_len, "more than %zu records", limits->max_fields);
        return -EMSGSIZE;
    }
    for (size_t index = 0; indef || index < count; index++) {
        err = next(rd, indef, reason, reason_len);
        if (err < 0)
            return err;
        if (rd->tok.kind == TOK_BREAK)
            break;
        if (index >= limits->max_fields) {
            payload__reason(reason, reason_len, "more than %zu records", limits->max_fields);
            return -EMSGSIZE;
        }
        err = read_record(rd, index, &rec, reason, reason_len);
        if (err < 0)
            return err;
        err = payload__senml_record(pack, index, &rec, reason, reason_len);
        if (err < 0)
            return err;
    }
    if (rd->pos != rd->len) {
        payload__reason(reason, reason_len, "not valid CBOR (unexpected data at byte %zu)",
                        rd->pos);
        return -EBADMSG;
    }
    return 0;
}

int payload__decode_senml_cbor(const unsigned char *data, size_t len,
                               const struct payload_limits *limits, struct gw_reading *reading,
                               char *reason, size_t reason_len)
{
    char stack_arena[STACK_ARENA];
    struct senml_pack pack;
    struct reader rd = {
        .data = data,
        .len = len,
        /* Every string copied costs its bytes and one NUL, paid for by its
         * head; "vd" becomes 4/3 as much text again: 3 * len is enough. */
        .arena_len = 3 * len + 16,
    };
    int err;

    rd.arena = rd.arena_len <= sizeof(stack_arena) ? stack_arena : malloc(rd.arena_len);
    if (!rd.arena) {
        payload__reason(reason, reason_len, "out of memory");
        return -ENOMEM;
    }
    payload__senml_begin(&pack, reading, limits);
    err = read_pack(&rd, &pack, limits, reason, reason_len);
    err = payload__senml_finish(&pack, err, reason, reason_len);
    if (rd.arena != stack_arena)
        free(rd.arena);
    return err;
}
