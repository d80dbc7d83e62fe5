/* SenML JSON (RFC 8428 §5, Content-Format 110): the syntax and the label
 * types; payload__senml_record() does the rest. */
#include "payload.h"

#include <cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gw_reading.h"
#include "payload_int.h"

static const char *type_word(enum senml_type type)
{
    switch (type) {
    case SENML_NUMBER:
        return "a number";
    case SENML_STRING:
        return "a string";
    case SENML_BOOL:
        return "a boolean";
    }
    return "something else";
}

/* Reads one record (a JSON object) into rec. */
static int read_record(const cJSON *obj, size_t index, struct senml_record *rec, char *reason,
                       size_t reason_len)
{
    char q[PAYLOAD_QUOTE_LEN];
    const cJSON *item;

    rec->have = 0;
    if (!cJSON_IsObject(obj)) {
        payload__reason(reason, reason_len, "record %zu: expected an object, got %s", index,
                        payload__json_type_name(obj));
        return -EBADMSG;
    }
    cJSON_ArrayForEach(item, obj)
    {
        const char *key = item->string;
        size_t key_len = strlen(key);
        int label = payload__senml_label_find(key, key_len);
        enum senml_type type;
        bool ok;

        if (label < 0) {
            /* RFC 8428 §4.4: a label ending in '_' must be understood. */
            if (key_len > 0 && key[key_len - 1] == '_') {
                payload__reason(reason, reason_len,
                                "record %zu: label %s must be understood and is not", index,
                                payload__quote(q, sizeof(q), key));
                return -EBADMSG;
            }
            if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
                payload__reason(reason, reason_len,
                                "record %zu: label %s: %s not allowed (SenML records are flat)",
                                index, payload__quote(q, sizeof(q), key),
                                cJSON_IsObject(item) ? "nested object" : "array");
                return -EBADMSG;
            }
            continue;
        }
        if (rec->have & (UINT32_C(1) << label)) {
            payload__reason(reason, reason_len, "record %zu: \"%s\" appears twice", index,
                            payload__senml_label_name(label));
            return -EBADMSG;
        }
        type = payload__senml_label_type(label);
        switch (type) {
        case SENML_NUMBER:
            ok = cJSON_IsNumber(item);
            if (ok)
                rec->num[label] = item->valuedouble;
            break;
        case SENML_STRING:
            ok = cJSON_IsString(item);
            if (ok)
                rec->str[label] = item->valuestring;
            break;
        case SENML_BOOL:
        default:
            ok = cJSON_IsBool(item);
            if (ok)
                rec->vb = cJSON_IsTrue(item);
            break;
        }
        if (!ok) {
            payload__reason(reason, reason_len, "record %zu: \"%s\" is not %s", index,
                            payload__senml_label_name(label), type_word(type));
            return -EBADMSG;
        }
        rec->have |= UINT32_C(1) << label;
    }
    return 0;
}

int payload__decode_senml_json(const char *data, size_t len, const struct payload_limits *limits,
                               struct gw_reading *reading, char *reason, size_t reason_len)
{
    struct senml_pack pack;
    struct senml_record rec;
    const cJSON *item;
    size_t index = 0;
    cJSON *root;
    int err = 0;

    root = payload__json_parse(data, len, reason, reason_len);
    if (!root)
        return -EBADMSG;
    if (!cJSON_IsArray(root)) {
        payload__reason(reason, reason_len, "expected a SenML array, got %s",
                        payload__json_type_name(root));
        cJSON_Delete(root);
        return -EBADMSG;
    }
    if ((size_t)cJSON_GetArraySize(root) > limits->max_fields) {
        payload__reason(reason, reason_len, "more than %zu records", limits->max_fields);
        cJSON_Delete(root);
        return -EMSGSIZE;
    }
    payload__senml_begin(&pack, reading, limits);
    cJSON_ArrayForEach(item, root)
    {
        err = read_record(item, index, &rec, reason, reason_len);
        if (err < 0)
            break;
        /* The strings stay in the tree until after finish. */
        err = payload__senml_record(&pack, index, &rec, reason, reason_len);
        if (err < 0)
            break;
        index++;
    }
    err = payload__senml_finish(&pack, err, reason, reason_len);
    cJSON_Delete(root);
    return err;
}
