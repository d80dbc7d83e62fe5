#include "influx_query.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_json.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_BYTES ((size_t)256 << 20)

struct sink {
    struct gw_buf *body;
    size_t start;
    size_t max_bytes;
    bool too_large;
};

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
    struct sink *s = userdata;
    size_t len = size * n;

    if (s->body->len - s->start + len > s->max_bytes) {
        s->too_large = true;
        return 0;
    }
    return gw_buf_append(s->body, data, len) < 0 ? 0 : len;
}

static int fail(char **ret_error, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char **ret_error, int err, const char *fmt, ...)
{
    va_list ap;

    if (ret_error) {
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
            *ret_error = NULL;
        va_end(ap);
    }
    return err;
}

/* InfluxDB answers 200 also when a statement failed ("results": [{"error":
 * ...}]), and a bad query as 400 with a top-level "error". */
static int check_errors(const char *body, size_t len, char **ret_error)
{
    cJSON *root = gw_json_parse(body, len, NULL, false), *results, *item;
    int r = 0;

    if (!root)
        return fail(ret_error, -EPROTO, "InfluxDB answered something that is not JSON");
    item = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(item))
        r = fail(ret_error, -EINVAL, "InfluxDB: %s", item->valuestring);
    results = cJSON_GetObjectItemCaseSensitive(root, "results");
    cJSON_ArrayForEach(item, results)
    {
        cJSON *error = cJSON_GetObjectItemCaseSensitive(item, "error");
        if (r == 0 && cJSON_IsString(error))
            r = fail(ret_error, -EINVAL, "InfluxDB: %s", error->valuestring);
    }
    cJSON_Delete(root);
    return r;
}

int influx_query(const struct influx_query_options *o, const char *query, struct gw_buf *ret_body,
                 char **ret_error)
{
    struct sink sink = {
        .body = ret_body,
        .start = ret_body->len,
        .max_bytes = o->max_bytes ? o->max_bytes : DEFAULT_MAX_BYTES,
    };
    char *db = NULL, *q = NULL, *target = NULL, errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;
    CURL *curl;
    int r;

    if (!o->url || !o->database || !query)
        return fail(ret_error, -EINVAL, "influx query: url, database and query are needed");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(curl = curl_easy_init()))
        return fail(ret_error, -ENOMEM, "influx query: cannot start curl");
    db = curl_easy_escape(curl, o->database, 0);
    q = curl_easy_escape(curl, query, 0);
    if (!db || !q || asprintf(&target, "%s/query?db=%s&epoch=u&q=%s", o->url, db, q) < 0) {
        target = NULL;
        r = fail(ret_error, -ENOMEM, "influx query: out of memory");
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_URL, target);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(o->timeout_ms ? o->timeout_ms
                                                                       : DEFAULT_TIMEOUT_MS));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (o->username) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, o->username);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, o->password ? o->password : "");
    }
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (sink.too_large) {
        r = fail(ret_error, -EFBIG, "%s: the answer is larger than %zu bytes; narrow the query",
                 o->url, sink.max_bytes);
    } else if (rc != CURLE_OK) {
        r = fail(ret_error, -EIO, "%s: %s", o->url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else if (status != 200 && status != 400) {
        r = fail(ret_error, -EIO, "%s: HTTP %ld", o->url, status);
    } else {
        r = check_errors(ret_body->data + sink.start, ret_body->len - sink.start, ret_error);
    }
    if (r < 0)
        gw_buf_truncate(ret_body, sink.start);
out:
    free(target);
    curl_free(db);
    curl_free(q);
    curl_easy_cleanup(curl);
    return r;
}
