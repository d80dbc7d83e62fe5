/* gw_api_parse: what callers send, read strictly. Every function here
 * answers the request itself (400, 415) when the input is bad, naming the
 * field or parameter, so handlers only see good values. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cJSON.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "gw_api_int.h"
#include "gw_json.h"
#include "gw_log.h"

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define DEFAULT_PERIOD_NS (30 * 86400 * NS_PER_S)

/* ---- text ------------------------------------------------------------ */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF, and no NUL, which would cut a C string short. */
bool gw_api__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        unsigned char c = *p;
        size_t n;
        unsigned long cp, min;

        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

int gw_api__json_string(struct gw_buf *b, const char *s)
{
    int r = gw_buf_putc(b, '"');

    for (; r == 0 && *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            r = gw_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            r = gw_buf_printf(b, "\\u%04x", c);
        else
            r = gw_buf_putc(b, (char)c);
    }
    return r ? r : gw_buf_putc(b, '"');
}

/* ---- JSON bodies ------------------------------------------------------ */

static bool json_content_type(struct api_request *rq)
{
    const char *type =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen("application/json");

    return type && strncasecmp(type, "application/json", n) == 0 &&
           (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

static const char *type_name(const struct api_field *f)
{
    switch (f->type) {
    case API_STRING:
        return "a string";
    case API_INT:
        return "an integer";
    case API_NUMBER:
        return "a number";
    case API_BOOL:
        return "true or false";
    }
    return "?";
}

/* Whether item has field's type and lies within its bounds. */
static int field_check(struct api_request *rq, const struct api_field *f, const cJSON *item)
{
    switch (f->type) {
    case API_STRING: {
        size_t len;

        if (!cJSON_IsString(item))
            break;
        len = strlen(item->valuestring);
        if (len < (size_t)f->min || len > (size_t)f->max) {
            gw_api__error(rq, 400, "bad_request", "%s: expected %.0f to %.0f bytes, got %zu",
                          f->name, f->min, f->max, len);
            return -EINVAL;
        }
        if (!gw_api__utf8_valid(item->valuestring, len)) {
            gw_api__error(rq, 400, "bad_request", "%s: not valid UTF-8", f->name);
            return -EINVAL;
        }
        return 0;
    }
    case API_INT:
    case API_NUMBER:
        if (!cJSON_IsNumber(item))
            break;
        /* The range first: it also keeps the cast below defined. */
        if (!(item->valuedouble >= f->min && item->valuedouble <= f->max)) {
            gw_api__error(rq, 400, "bad_request", "%s: expected %s from %g to %g", f->name,
                          type_name(f), f->min, f->max);
            return -EINVAL;
        }
        if (f->type == API_INT && item->valuedouble != (double)(int64_t)item->valuedouble)
            break;
        return 0;
    case API_BOOL:
        if (cJSON_IsBool(item))
            return 0;
        break;
    }
    gw_api__error(rq, 400, "bad_request", "%s: expected %s", f->name, type_name(f));
    return -EINVAL;
}

static int members_check(struct api_request *rq, const cJSON *root, const struct api_field *fields,
                         size_t n, const cJSON **items)
{
    for (const cJSON *m = root->child; m; m = m->next) {
        size_t i;

        for (i = 0; i < n; i++)
            if (strcmp(m->string, fields[i].name) == 0)
                break;
        if (i == n) {
            gw_api__error(rq, 400, "bad_request", "unknown field \"%.64s\"", m->string);
            return -EINVAL;
        }
        if (items[i]) {
            gw_api__error(rq, 400, "bad_request", "field \"%s\" given twice", fields[i].name);
            return -EINVAL;
        }
        if (field_check(rq, &fields[i], m) < 0)
            return -EINVAL;
        items[i] = m;
    }
    return 0;
}

/* Whether the JSON text escapes a NUL ("\u0000"), which cJSON would turn
 * into a string silently cut short there. Each backslash escapes the next
 * character, so "\\u0000" is no such escape. */
static bool escapes_nul(const char *data, size_t len)
{
    for (const char *p = data, *end = data + len; (p = memchr(p, '\\', (size_t)(end - p)));) {
        if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
            return true;
        p += 2;
        if (p >= end)
            break;
    }
    return false;
}

static cJSON *parse_json(const char *data, size_t len, const char **ret_end)
{
    cJSON *root;

    root = gw_json_parse(data, len, ret_end, false);
    return root;
}

int gw_api__body(struct api_request *rq, const struct api_field *fields, size_t n, bool required,
                 const cJSON **items, cJSON **ret_root)
{
    const char *data = rq->body.data, *end = NULL;
    size_t len = rq->body.len;
    cJSON *root;

    memset(items, 0, n * sizeof(*items));
    *ret_root = NULL;
    if (len == 0) {
        if (!required)
            return 0;
        gw_api__error(rq, 400, "bad_request", "a JSON object is required as the body");
        return -EINVAL;
    }
    if (!json_content_type(rq)) {
        gw_api__error(rq, 415, "unsupported_media_type", "the body must be application/json");
        return -EINVAL;
    }
    if (!gw_api__utf8_valid(data, len) || escapes_nul(data, len)) {
        gw_api__error(rq, 400, "bad_request", "the body is not valid UTF-8 (or escapes a NUL)");
        return -EINVAL;
    }
    root = parse_json(data, len, &end);
    if (root && end)
        end += strspn(end, " \t\r\n");
    if (!root || end != data + len) {
        gw_api__error(rq, 400, "bad_request", "the body is not valid JSON (at byte %td)",
                      end ? end - data : (ptrdiff_t)0);
        cJSON_Delete(root);
        return -EINVAL;
    }
    if (!cJSON_IsObject(root)) {
        gw_api__error(rq, 400, "bad_request", "the body must be a JSON object");
        cJSON_Delete(root);
        return -EINVAL;
    }
    if (members_check(rq, root, fields, n, items) < 0) {
        cJSON_Delete(root);
        return -EINVAL;
    }
    *ret_root = root;
    return 0;
}

/* ---- query parameters ------------------------------------------------- */

struct query_walk {
    struct api_request *rq;
    const char *const *names;
    size_t n;
    const char **values;
    bool bad;
};

static enum MHD_Result query_each(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct query_walk *w = cls;
    size_t i;

    (void)kind;
    if (!gw_api__utf8_valid(key, strlen(key))) {
        gw_api__error(w->rq, 400, "bad_request", "a query parameter's name is not valid UTF-8");
        w->bad = true;
        return MHD_NO;
    }
    for (i = 0; i < w->n; i++)
        if (strcmp(key, w->names[i]) == 0)
            break;
    if (i == w->n)
        gw_api__error(w->rq, 400, "bad_request", "unknown query parameter \"%.64s\"", key);
    else if (w->values[i])
        gw_api__error(w->rq, 400, "bad_request", "query parameter %s given twice", key);
    else if (!value || !value[0])
        gw_api__error(w->rq, 400, "bad_request", "query parameter %s has no value", key);
    else if (!gw_api__utf8_valid(value, strlen(value)))
        gw_api__error(w->rq, 400, "bad_request", "query parameter %s is not valid UTF-8", key);
    else {
        w->values[i] = value;
        return MHD_YES;
    }
    w->bad = true;
    return MHD_NO;
}

int gw_api__query(struct api_request *rq, const char *const *names, size_t n, const char **values)
{
    struct query_walk w = {.rq = rq, .names = names, .n = n, .values = values};

    memset(values, 0, n * sizeof(*values));
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_each, &w);
    return w.bad ? -EINVAL : 0;
}

/* ---- numbers and times ----------------------------------------------- */

int gw_api__parse_int(struct api_request *rq, const char *param, const char *text, int64_t min,
                      int64_t max, int64_t *ret)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == ' ' || text[0] == '+' || v < min ||
        v > max) {
        gw_api__error(rq, 400, "bad_request", "%s: expected a whole number from %lld to %lld",
                      param, (long long)min, (long long)max);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

/* n decimal digits at *p into *ret. */
static bool digits(const char **p, int n, int *ret)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *ret = v;
    return true;
}

static bool expect(const char **p, const char *chars)
{
    if (**p == '\0' || !strchr(chars, **p))
        return false;
    (*p)++;
    return true;
}

/* RFC 3339 date-time into ns since the epoch. */
static bool parse_rfc3339(const char *s, int64_t *ret_ns)
{
    struct tm tm = {0}, back;
    int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
    int64_t frac_ns = 0, scale = NS_PER_S;
    time_t t;

    if (!digits(&s, 4, &year) || !expect(&s, "-") || !digits(&s, 2, &mon) || !expect(&s, "-") ||
        !digits(&s, 2, &day) || !expect(&s, "Tt") || !digits(&s, 2, &hour) || !expect(&s, ":") ||
        !digits(&s, 2, &min) || !expect(&s, ":") || !digits(&s, 2, &sec))
        return false;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return false;
        for (; *s >= '0' && *s <= '9'; s++) {
            scale /= 10;
            frac_ns += (*s - '0') * scale; /* digits past ns add 0 */
        }
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '-' ? -1 : 1;
        if (!digits(&s, 2, &oh) || !expect(&s, ":") || !digits(&s, 2, &om) || oh > 23 || om > 59)
            return false;
    } else {
        return false;
    }
    if (*s != '\0' || year < 1970 || hour > 23 || min > 59 || sec > 60)
        return false;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second reads as its minute's last */
    t = timegm(&tm);
    /* timegm normalises 31 February into March: refuse what moved. */
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != day || back.tm_mon != mon - 1)
        return false;
    t -= (time_t)sign * (oh * 3600 + om * 60);
    /* Nanoseconds since the epoch end in 2262: a later year (found by
     * fuzz_api_request) overflowed the product below. */
    if (t > INT64_MAX / NS_PER_S - 1 || t < INT64_MIN / NS_PER_S + 1)
        return false;
    *ret_ns = (int64_t)t * NS_PER_S + frac_ns;
    return true;
}

int gw_api__parse_time(struct api_request *rq, const char *param, const char *text, int64_t *ret_ns)
{
    /* Up to 13 digits, but not past what int64 nanoseconds hold (the year
     * 2262): 9999999999999 ms overflowed (found by fuzz_api_request). */
    if (text[0] && strspn(text, "0123456789") == strlen(text) && strlen(text) <= 13 &&
        strtoll(text, NULL, 10) <= INT64_MAX / NS_PER_MS) {
        *ret_ns = strtoll(text, NULL, 10) * NS_PER_MS;
        return 0;
    }
    if (parse_rfc3339(text, ret_ns))
        return 0;
    gw_api__error(rq, 400, "bad_request",
                  "%s: expected an RFC 3339 time (2026-11-28T09:00:00Z) or milliseconds since "
                  "the epoch",
                  param);
    return -EINVAL;
}

int gw_api__parse_period(struct api_request *rq, const char *from, const char *to,
                         int64_t *ret_from, int64_t *ret_to)
{
    int64_t f, t = gw_now_ns();

    if (to && gw_api__parse_time(rq, "to", to, &t) < 0)
        return -EINVAL;
    f = t - DEFAULT_PERIOD_NS;
    if (from && gw_api__parse_time(rq, "from", from, &f) < 0)
        return -EINVAL;
    if (f >= t) {
        gw_api__error(rq, 400, "bad_request", "from: must be before to");
        return -EINVAL;
    }
    *ret_from = f;
    *ret_to = t;
    return 0;
}

/* ---- cursors ----------------------------------------------------------- */

/* A cursor is 32 hex digits: before_id masked with a hash of the filters,
 * then a check over both. Not a secret (any before_id shows only what
 * the token may see anyway), but it keeps clients from building cursors
 * and makes a changed or misplaced one an error rather than a silently
 * wrong page. */
static uint64_t cursor_hash(const char *what, int64_t before_id, const char *context)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    uint64_t h = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char id[24];

    snprintf(id, sizeof(id), "%lld", (long long)before_id);
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, what, strlen(what) + 1) == 1 &&
        EVP_DigestUpdate(ctx, id, strlen(id) + 1) == 1 &&
        EVP_DigestUpdate(ctx, context, strlen(context)) == 1 &&
        EVP_DigestFinal_ex(ctx, digest, &n) == 1 && n >= 8) {
        for (int i = 0; i < 8; i++)
            h = h << 8 | digest[i];
    }
    EVP_MD_CTX_free(ctx);
    return h;
}

void gw_api__cursor_encode(int64_t before_id, const char *context, char out[API_CURSOR_LEN])
{
    uint64_t mask = cursor_hash("gridgate-cursor-mask", 0, context);

    snprintf(out, API_CURSOR_LEN, "%016llx%016llx",
             (unsigned long long)((uint64_t)before_id ^ mask),
             (unsigned long long)cursor_hash("gridgate-cursor-check", before_id, context));
}

int gw_api__cursor_decode(const char *cursor, const char *context, int64_t *ret_before_id)
{
    unsigned long long masked, check;
    uint64_t id;
    char hex[17];

    if (strlen(cursor) != 32 || strspn(cursor, "0123456789abcdef") != 32)
        return -EINVAL;
    memcpy(hex, cursor, 16);
    hex[16] = '\0';
    masked = strtoull(hex, NULL, 16);
    check = strtoull(cursor + 16, NULL, 16);
    id = masked ^ cursor_hash("gridgate-cursor-mask", 0, context);
    if (id == 0 || id > INT64_MAX ||
        check != cursor_hash("gridgate-cursor-check", (int64_t)id, context))
        return -EINVAL;
    *ret_before_id = (int64_t)id;
    return 0;
}
