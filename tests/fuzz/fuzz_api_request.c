/* libFuzzer target for the HTTP API's request parsing (gw_api_parse.c):
 * the query parameters, JSON bodies, numbers, times, cursors and JSON
 * strings that the handlers read from what a client sends.
 *
 * An input is
 *   Content-Type value \n query string \n body
 * The query string is split at '&' and '=' and %-decoded, as libmicrohttpd
 * hands it to gridgate: this file stands in for the two libmicrohttpd
 * calls gw_api_parse.c makes (a definition in the executable wins over the
 * shared library's), and for gw_api__error, which records the answer
 * instead of queueing it. So gw_api_parse.c runs as it is, without a
 * server; what stays out is libmicrohttpd's own parsing and gw_api.c's
 * routing (static there), see docs/security.md.
 *
 * Asserted, for every call: it returns 0 and answers nothing, or -EINVAL
 * and answers exactly once, 400 or 415, with a code and a detail; what it
 * accepts is what its contract says (query values known, once, non-empty,
 * UTF-8; body members of their types, within their bounds; integers in
 * range); a cursor made for a before_id and filters decodes back to that
 * id with those filters and not with others; a string written by
 * gw_api__json_string reads back the same through cJSON.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "gw_api_int.h"
#include "gw_array.h"
#include "gw_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARAMS 16

/* ---- the request as libmicrohttpd would show it --------------------------- */

struct fake_request {
    char *content_type; /* NULL: no header */
    char *keys[MAX_PARAMS];
    char *values[MAX_PARAMS]; /* NULL for "key" without '=' */
    size_t n_params;
    /* what gw_api__error was asked to answer */
    int answers;
    int status;
    char code[64];
    char detail[512];
};

static struct fake_request fake;

const char *MHD_lookup_connection_value(struct MHD_Connection *connection, enum MHD_ValueKind kind,
                                        const char *key)
{
    (void)connection;
    if (kind == MHD_HEADER_KIND && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_TYPE) == 0)
        return fake.content_type;
    return NULL;
}

int MHD_get_connection_values(struct MHD_Connection *connection, enum MHD_ValueKind kind,
                              MHD_KeyValueIterator iterator, void *iterator_cls)
{
    int n = 0;

    (void)connection;
    if (kind != MHD_GET_ARGUMENT_KIND)
        return 0;
    for (size_t i = 0; i < fake.n_params; i++) {
        n++;
        if (iterator && iterator(iterator_cls, MHD_GET_ARGUMENT_KIND, fake.keys[i],
                                 fake.values[i]) != MHD_YES)
            break;
    }
    return n;
}

int gw_api__error(struct api_request *rq, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    (void)rq;
    fake.answers++;
    fake.status = status;
    snprintf(fake.code, sizeof(fake.code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(fake.detail, sizeof(fake.detail), fmt, ap);
    va_end(ap);
    return 0;
}

/* %XX and '+' as libmicrohttpd decodes them, in place; a decoded NUL ends
 * the C string the handler sees, as there. */
static void unescape(char *s)
{
    char *w = s;

    for (char *p = s; *p; p++) {
        if (*p == '+') {
            *w++ = ' ';
        } else if (p[0] == '%' && p[1] && p[2] && strchr("0123456789abcdefABCDEF", p[1]) &&
                   strchr("0123456789abcdefABCDEF", p[2])) {
            char hex[3] = { p[1], p[2], '\0' };

            *w++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
}

static void split_query(char *query)
{
    char *save = NULL;

    for (char *kv = strtok_r(query, "&", &save); kv && fake.n_params < MAX_PARAMS;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');

        if (eq)
            *eq = '\0';
        unescape(kv);
        fake.keys[fake.n_params] = kv;
        fake.values[fake.n_params] = NULL;
        if (eq) {
            unescape(eq + 1);
            fake.values[fake.n_params] = eq + 1;
        }
        fake.n_params++;
    }
}

/* ---- the contract of every parse call ---------------------------------- */

/* ret is a parse call's return; answers_before the count before it. */
static void check_answer(int ret, int answers_before)
{
    if (ret == 0) {
        if (fake.answers != answers_before)
            abort();
        return;
    }
    if (ret != -EINVAL || fake.answers != answers_before + 1 ||
        (fake.status != 400 && fake.status != 415) || !fake.code[0] || !fake.detail[0])
        abort();
}

/* Shaped like the handlers' tables (gw_api_cases.c): every type, bounds
 * that bite, required and optional bodies. */
static const struct api_field report_fields[] = {
    { "grid_id", API_STRING, 1, 64 },   { "lat", API_NUMBER, -90, 90 },
    { "lon", API_NUMBER, -180, 180 },   { "category", API_STRING, 1, 64 },
    { "title", API_STRING, 1, 200 },    { "detail", API_STRING, 0, 2000 },
    { "severity", API_STRING, 1, 16 },  { "reporter", API_STRING, 1, 200 },
};
static const struct api_field transition_fields[] = {
    { "version", API_INT, 1, 9007199254740991.0 }, { "note", API_STRING, 1, 2000 },
    { "role", API_STRING, 1, 32 },                 { "person", API_STRING, 1, 128 },
    { "pass", API_BOOL, 0, 0 },                    { "score", API_INT, 1, 5 },
};
static const char *const list_params[] = {
    "grid",     "community", "street",   "state", "category",
    "severity", "overdue",   "incident", "limit", "cursor",
    "from",     "to",
};

static void check_item(const struct api_field *f, const cJSON *item)
{
    switch (f->type) {
    case API_STRING: {
        size_t len;

        if (!cJSON_IsString(item))
            abort();
        len = strlen(item->valuestring);
        if (len < (size_t)f->min || len > (size_t)f->max ||
            !gw_api__utf8_valid(item->valuestring, len))
            abort();
        return;
    }
    case API_INT:
    case API_NUMBER:
        if (!cJSON_IsNumber(item) || !(item->valuedouble >= f->min && item->valuedouble <= f->max))
            abort();
        if (f->type == API_INT && item->valuedouble != (double)(int64_t)item->valuedouble)
            abort();
        return;
    case API_BOOL:
        if (!cJSON_IsBool(item))
            abort();
        return;
    }
    abort();
}

static void body(struct api_request *rq, const struct api_field *fields, size_t n, bool required)
{
    const cJSON *items[MAX_PARAMS];
    cJSON *root = (cJSON *)1;
    int before = fake.answers;
    int ret = gw_api__body(rq, fields, n, required, items, &root);

    check_answer(ret, before);
    if (ret < 0) {
        if (root)
            abort();
        return;
    }
    if (!root && (rq->body.len > 0 || required))
        abort();
    for (size_t i = 0; i < n; i++)
        if (items[i])
            check_item(&fields[i], items[i]);
    cJSON_Delete(root);
}

static void value_checks(struct api_request *rq, const char *v, const char *context)
{
    int64_t x, from, to;
    int before;
    int ret;
    char cursor[API_CURSOR_LEN];

    before = fake.answers;
    ret = gw_api__parse_int(rq, "limit", v, 1, 500, &x);
    check_answer(ret, before);
    if (ret == 0 && (x < 1 || x > 500))
        abort();

    before = fake.answers;
    ret = gw_api__parse_int(rq, "incident", v, 1, INT64_MAX, &x);
    check_answer(ret, before);
    if (ret == 0) {
        /* a cursor for that id, with these filters only */
        int64_t back = 0;

        gw_api__cursor_encode(x, context, cursor);
        if (strlen(cursor) != API_CURSOR_LEN - 1 ||
            gw_api__cursor_decode(cursor, context, &back) != 0 || back != x ||
            gw_api__cursor_decode(cursor, "other filters", &back) == 0)
            abort();
    }

    before = fake.answers;
    ret = gw_api__parse_time(rq, "from", v, &from);
    check_answer(ret, before);

    before = fake.answers;
    ret = gw_api__parse_period(rq, v, NULL, &from, &to);
    check_answer(ret, before);
    if (ret == 0 && !(from < to))
        abort();
    before = fake.answers;
    ret = gw_api__parse_period(rq, NULL, v, &from, &to);
    check_answer(ret, before);
    if (ret == 0 && !(from < to))
        abort();

    ret = gw_api__cursor_decode(v, context, &x);
    if (ret != 0 && ret != -EINVAL)
        abort();
    if (ret == 0 && x <= 0)
        abort();
}

/* The string out of gw_api__json_string reads back as s. */
static void json_string_round_trip(const char *s)
{
    struct gw_buf b = GW_BUF_INIT;
    const char *end = NULL;
    cJSON *back;

    if (!gw_api__utf8_valid(s, strlen(s)))
        return;
    if (gw_api__json_string(&b, s) < 0)
        return;
    back = gw_json_parse(b.data, b.len, &end, false);
    if (!back || !cJSON_IsString(back) || strcmp(back->valuestring, s) != 0 ||
        end != b.data + b.len)
        abort();
    cJSON_Delete(back);
    gw_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_request rq = { 0 };
    const char *values[ARRAY_SIZE(list_params)];
    char *copy = malloc(size + 1), *nl, *query = NULL;
    int before, ret;

    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    memset(&fake, 0, sizeof(fake));
    rq.conn = (struct MHD_Connection *)&fake; /* never used as one: see the stubs */
    rq.method = "POST";

    /* Content-Type \n query \n body (the body may hold NULs) */
    nl = memchr(copy, '\n', size);
    if (nl) {
        *nl = '\0';
        fake.content_type = copy[0] ? copy : NULL;
        query = nl + 1;
        nl = memchr(query, '\n', size - (size_t)(query - copy));
        if (nl) {
            *nl = '\0';
            gw_buf_append(&rq.body, nl + 1, size - (size_t)(nl + 1 - copy));
        }
    }
    if (query)
        split_query(query);

    before = fake.answers;
    ret = gw_api__query(&rq, list_params, ARRAY_SIZE(list_params), values);
    check_answer(ret, before);
    if (ret == 0) {
        for (size_t i = 0; i < ARRAY_SIZE(list_params); i++) {
            if (values[i] && (!values[i][0] || !gw_api__utf8_valid(values[i], strlen(values[i]))))
                abort();
            if (values[i])
                value_checks(&rq, values[i], list_params[i]);
        }
    }
    /* an endpoint that takes no parameters */
    before = fake.answers;
    ret = gw_api__query(&rq, NULL, 0, values);
    check_answer(ret, before);
    if (ret == 0 && fake.n_params > 0)
        abort();

    body(&rq, report_fields, ARRAY_SIZE(report_fields), true);
    body(&rq, transition_fields, ARRAY_SIZE(transition_fields), false);
    body(&rq, NULL, 0, false);
    if (rq.body.data)
        json_string_round_trip(rq.body.data);
    for (size_t i = 0; i < fake.n_params; i++)
        if (fake.values[i])
            json_string_round_trip(fake.values[i]);

    gw_buf_free(&rq.body);
    free(copy);
    return 0;
}
