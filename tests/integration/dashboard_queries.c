/* dashboard_queries: runs every InfluxQL query of the Grafana dashboards
 * against a real InfluxDB 1.x, the way Grafana would, and fails when one
 * errors or when a panel that should show data shows none.
 *
 *   dashboard_queries --url http://127.0.0.1:8086 --db gridgate
 *                     [--range 1h | --from MS --to MS] [--interval 10s]
 *                     [--datasource gridgate-influx] [--var NAME=VALUE]...
 *                     DASHBOARD.json...
 *
 * Per dashboard:
 * - the template variables first, in dependency order: each query
 *   variable's own query runs with the variables it uses filled in, and
 *   the variable takes the first value it offers (after the variable's
 *   "sort"), or the value pinned with --var, which must be among them;
 *   custom, constant, textbox and interval variables take their first
 *   value; a variable that offers nothing fails;
 * - every target of every panel (rows' collapsed panels included), which
 *   must be a raw InfluxQL query ("rawQuery": true) on the data source
 *   --datasource and use $timeFilter;
 * - every InfluxDB annotation (which must use $timeFilter too).
 * A query fails when InfluxDB answers with an error, when it returns no
 * series, or when one of its columns is null in every row (a field that
 * does not exist). A panel whose description contains "(may be empty)"
 * may return nothing; its queries must still run. Annotations must return
 * data.
 *
 * Filled in as Grafana's InfluxDB data source does: $var, ${var},
 * ${var:raw}, ${var:regex} (regex metacharacters escaped) and [[var]];
 * $timeFilter ("time > now() - 1h", or "time > FROMms and time < TOms"),
 * $__interval and $interval (--interval, or the panel's "interval" when
 * that is longer), $__interval_ms, $__from, $__to (epoch ms), $__range,
 * $__range_s and $__range_ms. Variables are single-valued here.
 *
 * Exit status: 0 all good, 1 a query failed, 2 bad usage or an unreadable
 * dashboard. */
#include <cJSON.h>
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAY_BE_EMPTY "(may be empty)"
#define MAX_VARS 64
#define MAX_PINS 16

struct var {
    char *name;
    char *value;   /* NULL until resolved */
    cJSON *def;    /* the variable's entry in templating.list */
};

struct pin {
    const char *name;
    const char *value;
};

struct checker {
    const char *url;
    const char *db;
    const char *ds_uid;
    const char *interval; /* default $__interval */
    int64_t from_ms, to_ms;
    char relative[32];    /* "1h" when the range is relative to now */
    struct pin pins[MAX_PINS];
    int n_pins;
    CURL *curl;
    /* the dashboard being checked */
    const char *name; /* its file name, without the directory */
    struct var vars[MAX_VARS];
    int n_vars;
    int queries, failures, empty_allowed;
};

struct buf {
    char *data;
    size_t len, cap;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int buf_str(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct buf b = { 0 };
    char chunk[8192];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_add(&b, chunk, n) < 0) {
            free(b.data);
            fclose(f);
            return NULL;
        }
    }
    fclose(f);
    return b.data ? b.data : strdup("");
}

/* "10s", "500ms", "1m", "1h", "1d", "1w" in milliseconds; -1 when bad. */
static int64_t duration_ms(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    if (strcmp(end, "ms") == 0)
        return v;
    if (strcmp(end, "s") == 0)
        return v * 1000;
    if (strcmp(end, "m") == 0)
        return v * 60000;
    if (strcmp(end, "h") == 0)
        return v * 3600000;
    if (strcmp(end, "d") == 0)
        return v * 86400000;
    if (strcmp(end, "w") == 0)
        return v * 7 * 86400000LL;
    return -1;
}

static const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static struct var *find_var(struct checker *c, const char *name, size_t len)
{
    for (int i = 0; i < c->n_vars; i++) {
        if (strlen(c->vars[i].name) == len && strncmp(c->vars[i].name, name, len) == 0)
            return &c->vars[i];
    }
    return NULL;
}

/* Grafana's built-in variables, NULL for any other name. */
static const char *builtin(struct checker *c, const char *name, size_t len, const char *interval,
                          char *tmp, size_t tmp_len)
{
#define IS(lit) (len == sizeof(lit) - 1 && strncmp(name, lit, len) == 0)
    int64_t range_ms = c->to_ms - c->from_ms;

    if (IS("timeFilter") || IS("__timeFilter")) {
        if (c->relative[0])
            snprintf(tmp, tmp_len, "time > now() - %s", c->relative);
        else
            snprintf(tmp, tmp_len, "time > %" PRId64 "ms and time < %" PRId64 "ms", c->from_ms,
                     c->to_ms);
        return tmp;
    }
    if (IS("__interval") || IS("interval"))
        return interval;
    if (IS("__interval_ms")) {
        snprintf(tmp, tmp_len, "%" PRId64, duration_ms(interval));
        return tmp;
    }
    if (IS("__from") || IS("__to")) {
        snprintf(tmp, tmp_len, "%" PRId64, IS("__from") ? c->from_ms : c->to_ms);
        return tmp;
    }
    if (IS("__range_ms") || IS("__range_s") || IS("__range")) {
        if (IS("__range_ms"))
            snprintf(tmp, tmp_len, "%" PRId64, range_ms);
        else if (IS("__range_s"))
            snprintf(tmp, tmp_len, "%" PRId64, range_ms / 1000);
        else
            snprintf(tmp, tmp_len, "%" PRId64 "s", range_ms / 1000);
        return tmp;
    }
    return NULL;
#undef IS
}

static int add_regex_escaped(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (strchr("\\^$.|?*+()[]{}/", *v) && buf_add(out, "\\", 1) < 0)
            return -ENOMEM;
        if (buf_add(out, v, 1) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* The query with every variable filled in, or NULL with ERR naming
 * what could not be (an unknown or unresolved variable). */
static char *interpolate(struct checker *c, const char *query, const char *interval,
                         char *err, size_t err_len)
{
    struct buf out = { 0 };
    const char *p = query;

    while (*p) {
        const char *name, *format = NULL, *next;
        size_t len, format_len = 0;

        if (p[0] == '$' && p[1] == '{') {
            name = p + 2;
            const char *close = strchr(name, '}');
            if (!close)
                goto literal;
            const char *colon = memchr(name, ':', (size_t)(close - name));
            len = (size_t)((colon ? colon : close) - name);
            if (colon) {
                format = colon + 1;
                format_len = (size_t)(close - format);
            }
            next = close + 1;
        } else if (p[0] == '[' && p[1] == '[') {
            name = p + 2;
            const char *close = strstr(name, "]]");
            if (!close)
                goto literal;
            len = (size_t)(close - name);
            next = close + 2;
        } else if (p[0] == '$' && (isalnum((unsigned char)p[1]) || p[1] == '_')) {
            name = p + 1;
            for (len = 0; isalnum((unsigned char)name[len]) || name[len] == '_'; len++)
                ;
            next = name + len;
        } else {
            goto literal;
        }

        char tmp[96];
        const char *value = builtin(c, name, len, interval, tmp, sizeof(tmp));
        if (!value) {
            struct var *v = find_var(c, name, len);
            if (!v || !v->value) {
                snprintf(err, err_len, "%s variable $%.*s", v ? "unresolved" : "unknown",
                         (int)len, name);
                free(out.data);
                return NULL;
            }
            value = v->value;
            if (format && format_len == 5 && strncmp(format, "regex", 5) == 0) {
                if (add_regex_escaped(&out, value) < 0)
                    goto oom;
                p = next;
                continue;
            }
        }
        if (buf_str(&out, value) < 0)
            goto oom;
        p = next;
        continue;
literal:
        if (buf_add(&out, p, 1) < 0)
            goto oom;
        p++;
    }
    return out.data ? out.data : strdup("");
oom:
    snprintf(err, err_len, "out of memory");
    free(out.data);
    return NULL;
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    return buf_add(arg, data, size * n) < 0 ? 0 : size * n;
}

/* Runs QUERY with GET /query; the "results" array of InfluxDB's answer
 * (in *ret_doc, to cJSON_Delete), or NULL with the reason in err. An
 * error of any statement is an error. */
static cJSON *run_query(struct checker *c, const char *query, cJSON **ret_doc, char *err,
                        size_t err_len)
{
    struct buf url = { 0 }, body = { 0 };
    char *q = curl_easy_escape(c->curl, query, 0);
    char *db = curl_easy_escape(c->curl, c->db, 0);
    cJSON *doc = NULL, *results = NULL;
    long status = 0;

    if (!q || !db || buf_str(&url, c->url) < 0 || buf_str(&url, "/query?epoch=ms&db=") < 0 ||
        buf_str(&url, db) < 0 || buf_str(&url, "&q=") < 0 || buf_str(&url, q) < 0) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    curl_easy_setopt(c->curl, CURLOPT_URL, url.data);
    curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "GET %s/query: %s", c->url, curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    doc = body.data ? cJSON_Parse(body.data) : NULL;
    const char *top_error = json_str(doc, "error");
    if (top_error) {
        snprintf(err, err_len, "InfluxDB: %s", top_error);
        goto out;
    }
    results = cJSON_GetObjectItemCaseSensitive(doc, "results");
    if (status != 200 || !cJSON_IsArray(results)) {
        snprintf(err, err_len, "HTTP %ld from InfluxDB: %.200s", status,
                 body.data ? body.data : "(no body)");
        results = NULL;
        goto out;
    }
    const cJSON *result;
    cJSON_ArrayForEach(result, results) {
        const char *e = json_str(result, "error");
        if (e) {
            snprintf(err, err_len, "InfluxDB: %s", e);
            results = NULL;
            goto out;
        }
    }
out:
    curl_free(q);
    curl_free(db);
    free(url.data);
    free(body.data);
    if (!results) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    *ret_doc = doc;
    return results;
}

/* What a query's answer holds: series, rows, and the first column that is
 * null in every row of every series (a field never written), if any. */
struct summary {
    int series, rows;
    char empty_column[128];
};

/* Has any series of RESULT a value in its column NAME? (Columns can differ
 * between series: SELECT ... FROM a, b.) */
static bool column_has_value(const cJSON *result, const char *name)
{
    const cJSON *series, *row;

    cJSON_ArrayForEach(series, cJSON_GetObjectItemCaseSensitive(result, "series")) {
        const cJSON *columns = cJSON_GetObjectItemCaseSensitive(series, "columns");
        int col = -1;
        for (int i = 0; i < cJSON_GetArraySize(columns) && col < 0; i++) {
            const char *c = cJSON_GetArrayItem(columns, i)->valuestring;
            if (c && strcmp(c, name) == 0)
                col = i;
        }
        if (col < 0)
            continue;
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(series, "values")) {
            if (!cJSON_IsNull(cJSON_GetArrayItem(row, col)))
                return true;
        }
    }
    return false;
}

static void summarise(const cJSON *results, struct summary *s)
{
    const cJSON *result, *series, *column;

    memset(s, 0, sizeof(*s));
    cJSON_ArrayForEach(result, results) {
        cJSON_ArrayForEach(series, cJSON_GetObjectItemCaseSensitive(result, "series")) {
            s->series++;
            s->rows += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(series, "values"));
            cJSON_ArrayForEach(column, cJSON_GetObjectItemCaseSensitive(series, "columns")) {
                const char *name = column->valuestring;
                if (!s->empty_column[0] && name && strcmp(name, "time") != 0 &&
                    !column_has_value(result, name))
                    snprintf(s->empty_column, sizeof(s->empty_column), "%s", name);
            }
        }
    }
}

/* A check that failed before any query ran. */
static void fail_check(struct checker *c, const char *where, const char *why)
{
    c->queries++;
    c->failures++;
    printf("  FAIL %s: %s: %s\n", c->name, where, why);
}

static void report_failure(struct checker *c, const char *where, const char *query,
                           const char *why)
{
    c->failures++;
    printf("  FAIL %s: %s: %s\n", c->name, where, why);
    printf("       query: %s\n", query);
}

/* Interpolates and runs one query; reports the outcome. */
static void check_query(struct checker *c, const char *where, const char *raw,
                        const char *interval, bool may_be_empty, bool needs_time_filter)
{
    char err[512];
    cJSON *doc;

    c->queries++;
    if (needs_time_filter && !strstr(raw, "$timeFilter") && !strstr(raw, "$__timeFilter")) {
        report_failure(c, where, raw,
                       "no $timeFilter: the query would read all of history on every refresh");
        return;
    }
    char *query = interpolate(c, raw, interval, err, sizeof(err));
    if (!query) {
        report_failure(c, where, raw, err);
        return;
    }
    cJSON *results = run_query(c, query, &doc, err, sizeof(err));
    if (!results) {
        report_failure(c, where, query, err);
        free(query);
        return;
    }
    struct summary s;
    summarise(results, &s);
    if (s.series == 0 && may_be_empty) {
        c->empty_allowed++;
        printf("  ok   %s: no series (allowed: " MAY_BE_EMPTY ")\n", where);
    } else if (s.series == 0) {
        report_failure(c, where, query,
                       "no series: this panel would show \"No data\" (if it may, put \"" MAY_BE_EMPTY
                       "\" in its description)");
    } else if (s.empty_column[0] && !may_be_empty) {
        char why[256];
        snprintf(why, sizeof(why), "column \"%s\" is null in every row (a field that is never written?)",
                 s.empty_column);
        report_failure(c, where, query, why);
    } else {
        printf("  ok   %s: %d series, %d rows\n", where, s.series, s.rows);
    }
    cJSON_Delete(doc);
    free(query);
}

static void wrong_datasource(struct checker *c, const char *where, const char *uid)
{
    char why[256];
    snprintf(why, sizeof(why), "data source \"%s\", expected uid \"%s\"", uid ? uid : "(none)",
             c->ds_uid);
    fail_check(c, where, why);
}

/* The data source a panel or target names, by uid (or the plain string
 * older dashboards use); NULL when it names none. */
static const char *datasource_uid(const cJSON *obj)
{
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(obj, "datasource");
    if (cJSON_IsString(ds))
        return ds->valuestring;
    return json_str(ds, "uid");
}

static void check_panel(struct checker *c, const cJSON *panel)
{
    const char *title = json_str(panel, "title");
    const char *description = json_str(panel, "description");
    const char *panel_interval = json_str(panel, "interval");
    const char *interval = c->interval;
    bool may_be_empty = description && strstr(description, MAY_BE_EMPTY);
    const cJSON *target;
    char where[300];

    if (!title || !title[0])
        title = "(untitled)";
    /* A panel's "interval" is Grafana's lower bound for $__interval. */
    if (panel_interval && duration_ms(panel_interval) > duration_ms(interval))
        interval = panel_interval;
    cJSON_ArrayForEach(target, cJSON_GetObjectItemCaseSensitive(panel, "targets")) {
        const char *ref = json_str(target, "refId");
        const char *uid = datasource_uid(target);
        const char *query = json_str(target, "query");

        snprintf(where, sizeof(where), "panel \"%s\" [%s]", title, ref ? ref : "?");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(target, "hide")))
            continue;
        if (!uid)
            uid = datasource_uid(panel);
        if (uid && strcmp(uid, "-- Dashboard --") == 0)
            continue; /* reuses another panel's query */
        if (!uid || strcmp(uid, c->ds_uid) != 0) {
            wrong_datasource(c, where, uid);
            continue;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(target, "rawQuery")) || !query) {
            fail_check(c, where, "not a raw InfluxQL query (\"rawQuery\": true and \"query\")");
            continue;
        }
        check_query(c, where, query, interval, may_be_empty, true);
    }
    /* A collapsed row carries its panels inside it. */
    const cJSON *inner;
    cJSON_ArrayForEach(inner, cJSON_GetObjectItemCaseSensitive(panel, "panels"))
        check_panel(c, inner);
}

static void check_annotations(struct checker *c, const cJSON *dash)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(dash, "annotations"), "list");
    const cJSON *a;
    char where[300];

    cJSON_ArrayForEach(a, list) {
        const char *uid = datasource_uid(a);
        const char *name = json_str(a, "name");
        const char *query = json_str(a, "query");

        if (cJSON_GetObjectItemCaseSensitive(a, "builtIn") || (uid && strcmp(uid, "-- Grafana --") == 0))
            continue; /* Grafana's own annotations and alerts */
        /* Grafana 10 keeps the query in "target" too; both must agree. */
        const char *in_target = json_str(cJSON_GetObjectItemCaseSensitive(a, "target"), "query");
        snprintf(where, sizeof(where), "annotation \"%s\"", name ? name : "(unnamed)");
        if (query && in_target && strcmp(query, in_target) != 0) {
            fail_check(c, where, "\"query\" and \"target\".\"query\" differ");
            continue;
        }
        if (!query)
            query = in_target;
        if (!uid || strcmp(uid, c->ds_uid) != 0) {
            wrong_datasource(c, where, uid);
            continue;
        }
        if (!query) {
            fail_check(c, where, "no InfluxQL query");
            continue;
        }
        check_query(c, where, query, c->interval, false, true);
    }
}

/* The values a variable query offers: the "value" column of SHOW TAG
 * VALUES, else each row's first non-time column, de-duplicated. */
static int offered_values(const cJSON *results, char ***ret, int *ret_n)
{
    const cJSON *result, *series, *row;
    char **values = NULL;
    int n = 0;

    cJSON_ArrayForEach(result, results) {
        cJSON_ArrayForEach(series, cJSON_GetObjectItemCaseSensitive(result, "series")) {
            const cJSON *columns = cJSON_GetObjectItemCaseSensitive(series, "columns");
            int col = -1;
            for (int i = 0; i < cJSON_GetArraySize(columns); i++) {
                const char *name = cJSON_GetArrayItem(columns, i)->valuestring;
                if (name && strcmp(name, "value") == 0) {
                    col = i;
                    break;
                }
                if (col < 0 && name && strcmp(name, "time") != 0)
                    col = i;
            }
            cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(series, "values")) {
                const cJSON *cell = cJSON_GetArrayItem(row, col);
                char num[64];
                const char *v = cJSON_IsString(cell) ? cell->valuestring : NULL;
                if (!v && cJSON_IsNumber(cell)) {
                    snprintf(num, sizeof(num), "%g", cell->valuedouble);
                    v = num;
                }
                bool dup = !v;
                for (int i = 0; !dup && i < n; i++)
                    dup = strcmp(values[i], v) == 0;
                if (dup)
                    continue;
                char **grown = realloc(values, (size_t)(n + 1) * sizeof(*values));
                if (!grown || !(grown[n] = strdup(v))) {
                    values = grown ? grown : values;
                    goto oom;
                }
                values = grown;
                n++;
            }
        }
    }
    *ret = values;
    *ret_n = n;
    return 0;
oom:
    for (int i = 0; i < n; i++)
        free(values[i]);
    free(values);
    return -ENOMEM;
}

static int compare_asc(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int compare_desc(const void *a, const void *b)
{
    return -compare_asc(a, b);
}

/* Does TEXT use the variable NAME ($name, ${name...}, [[name]])? */
static bool uses_var(const char *text, const char *name)
{
    size_t len = strlen(name);

    for (const char *p = text; *p; p++) {
        const char *s;
        if ((p[0] == '$' && p[1] == '{') || (p[0] == '[' && p[1] == '['))
            s = p + 2;
        else if (p[0] == '$')
            s = p + 1;
        else
            continue;
        if (strncmp(s, name, len) == 0 && !isalnum((unsigned char)s[len]) && s[len] != '_')
            return true;
    }
    return false;
}

static const char *pinned(struct checker *c, const char *name)
{
    for (int i = 0; i < c->n_pins; i++) {
        if (strcmp(c->pins[i].name, name) == 0)
            return c->pins[i].value;
    }
    return NULL;
}

/* Resolves one query variable whose dependencies are resolved: returns 0,
 * or -1 after reporting a failure. */
static int resolve_query_var(struct checker *c, struct var *v)
{
    const char *raw = json_str(v->def, "query");
    const cJSON *sort = cJSON_GetObjectItemCaseSensitive(v->def, "sort");
    const char *pin = pinned(c, v->name);
    char where[128], err[512];
    char **values = NULL;
    int n = 0, r = -1;
    cJSON *doc = NULL;

    if (!raw) /* newer Grafana may keep it as {"query": "..."} */
        raw = json_str(cJSON_GetObjectItemCaseSensitive(v->def, "query"), "query");
    snprintf(where, sizeof(where), "variable $%s", v->name);
    if (!raw) {
        fail_check(c, where, "no query");
        return -1;
    }
    const char *uid = datasource_uid(v->def);
    if (!uid || strcmp(uid, c->ds_uid) != 0) {
        wrong_datasource(c, where, uid);
        return -1;
    }
    c->queries++;
    char *query = interpolate(c, raw, c->interval, err, sizeof(err));
    if (!query) {
        report_failure(c, where, raw, err);
        return -1;
    }
    cJSON *results = run_query(c, query, &doc, err, sizeof(err));
    if (!results) {
        report_failure(c, where, query, err);
        goto out;
    }
    if (offered_values(results, &values, &n) < 0) {
        report_failure(c, where, query, "out of memory");
        goto out;
    }
    if (n == 0) {
        report_failure(c, where, query, "offers no value: every panel using it would be empty");
        goto out;
    }
    /* Grafana's sort: 1 alphabetical ascending, 2 descending, 0 as returned
     * (the numerical and case-insensitive sorts are treated as 1 and 2). */
    if (cJSON_IsNumber(sort) && sort->valueint > 0)
        qsort(values, (size_t)n, sizeof(*values), sort->valueint % 2 ? compare_asc : compare_desc);
    const char *chosen = values[0];
    if (pin) {
        chosen = NULL;
        for (int i = 0; i < n && !chosen; i++)
            chosen = strcmp(values[i], pin) == 0 ? values[i] : NULL;
        if (!chosen) {
            char why[256];
            snprintf(why, sizeof(why), "the value \"%s\" given with --var is not among the %d it offers",
                     pin, n);
            report_failure(c, where, query, why);
            goto out;
        }
    }
    v->value = strdup(chosen);
    if (!v->value) {
        report_failure(c, where, query, "out of memory");
        goto out;
    }
    printf("  ok   %s = \"%s\" (first of %d: %s)\n", where, v->value, n, query);
    r = 0;
out:
    for (int i = 0; i < n; i++)
        free(values[i]);
    free(values);
    cJSON_Delete(doc);
    free(query);
    return r;
}

/* Custom, constant, textbox and interval variables: their first value. */
static int resolve_plain_var(struct checker *c, struct var *v)
{
    const char *type = json_str(v->def, "type");
    const char *query = json_str(v->def, "query");
    const char *pin = pinned(c, v->name);
    const char *current = json_str(cJSON_GetObjectItemCaseSensitive(v->def, "current"), "value");
    size_t len;

    if (pin) {
        v->value = strdup(pin);
    } else if (strcmp(type, "textbox") == 0 || strcmp(type, "constant") == 0) {
        v->value = strdup(query ? query : current ? current : "");
    } else if (strcmp(type, "datasource") == 0) {
        v->value = strdup(c->ds_uid);
    } else if (query && query[0]) {
        len = strcspn(query, ",");
        v->value = strndup(query, len);
    } else if (current) {
        v->value = strdup(current);
    } else {
        c->failures++;
        printf("  FAIL %s: variable $%s (%s): no value\n", c->name, v->name, type);
        return -1;
    }
    if (!v->value) {
        c->failures++;
        printf("  FAIL %s: variable $%s: out of memory\n", c->name, v->name);
        return -1;
    }
    /* "a : b" is custom's text : value form */
    char *colon = strstr(v->value, " : ");
    if (colon)
        memmove(v->value, colon + 3, strlen(colon + 3) + 1);
    printf("  ok   variable $%s = \"%s\" (%s)\n", v->name, v->value, type);
    return 0;
}

/* Resolves the variables in dependency order; 0, or -1 when one could
 * not be (the failure is reported). */
static int resolve_variables(struct checker *c, const cJSON *dash)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(dash, "templating"), "list");
    const cJSON *def;

    cJSON_ArrayForEach(def, list) {
        const char *name = json_str(def, "name");
        if (!name || !json_str(def, "type"))
            continue;
        if (c->n_vars == MAX_VARS) {
            printf("  FAIL %s: more than %d variables\n", c->name, MAX_VARS);
            c->failures++;
            return -1;
        }
        c->vars[c->n_vars].name = strdup(name);
        c->vars[c->n_vars].value = NULL;
        c->vars[c->n_vars].def = (cJSON *)def;
        if (!c->vars[c->n_vars].name)
            return -1;
        c->n_vars++;
    }
    for (int done = 0; done < c->n_vars;) {
        int progress = 0;
        for (int i = 0; i < c->n_vars; i++) {
            struct var *v = &c->vars[i];
            const char *query = json_str(v->def, "query");
            bool ready = true;
            if (v->value)
                continue;
            for (int j = 0; j < c->n_vars && ready && query; j++) {
                if (j != i && !c->vars[j].value && uses_var(query, c->vars[j].name))
                    ready = false;
            }
            if (!ready)
                continue;
            int r = strcmp(json_str(v->def, "type"), "query") == 0 ? resolve_query_var(c, v)
                                                                   : resolve_plain_var(c, v);
            if (r < 0)
                return -1;
            progress++;
            done++;
        }
        if (!progress) {
            c->failures++;
            printf("  FAIL %s: the variables depend on each other in a cycle (or on themselves)\n",
                   c->name);
            return -1;
        }
    }
    return 0;
}

static void free_vars(struct checker *c)
{
    for (int i = 0; i < c->n_vars; i++) {
        free(c->vars[i].name);
        free(c->vars[i].value);
    }
    c->n_vars = 0;
}

/* Checks one dashboard file; -1 when it cannot be read at all. */
static int check_dashboard(struct checker *c, const char *path)
{
    char *text = read_file(path);
    cJSON *dash;
    const cJSON *panel;

    if (!text) {
        fprintf(stderr, "dashboard_queries: %s: %s\n", path, strerror(errno));
        return -1;
    }
    dash = cJSON_Parse(text);
    free(text);
    if (!dash) {
        const char *at = cJSON_GetErrorPtr();
        fprintf(stderr, "dashboard_queries: %s: not JSON (near \"%.30s\")\n", path, at ? at : "");
        return -1;
    }
    c->name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("%s: \"%s\" (uid %s)\n", path, json_str(dash, "title") ? json_str(dash, "title") : "?",
           json_str(dash, "uid") ? json_str(dash, "uid") : "?");
    if (!json_str(dash, "uid") || !json_str(dash, "title")) {
        c->failures++;
        printf("  FAIL %s: the dashboard needs a \"uid\" and a \"title\"\n", c->name);
    }
    if (resolve_variables(c, dash) == 0) {
        cJSON_ArrayForEach(panel, cJSON_GetObjectItemCaseSensitive(dash, "panels"))
            check_panel(c, panel);
        check_annotations(c, dash);
    } else {
        printf("  (panels not checked: the variables could not be resolved)\n");
    }
    free_vars(c);
    cJSON_Delete(dash);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dashboard_queries --url URL --db DATABASE [OPTIONS] DASHBOARD.json...\n"
            "Runs every InfluxQL query of the dashboards (panels, variables, annotations)\n"
            "against InfluxDB 1.x; fails when one errors or a panel that should show data\n"
            "shows none (\"" MAY_BE_EMPTY "\" in a panel's description allows that).\n\n"
            "  --url URL            InfluxDB, e.g. http://127.0.0.1:8086\n"
            "  --db DATABASE        the database the data source names\n"
            "  --range DURATION     time range: the last DURATION [1h]\n"
            "  --from MS --to MS    time range in epoch milliseconds instead\n"
            "  --interval DURATION  $__interval [10s]\n"
            "  --datasource UID     the uid every query must use [gridgate-influx]\n"
            "  --var NAME=VALUE     use VALUE for a variable (it must be among its values)\n");
}

int main(int argc, char **argv)
{
    struct checker c = { .ds_uid = "gridgate-influx", .interval = "10s" };
    const char *range = "1h";
    int64_t from = -1, to = -1;
    int first_file = argc, rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-' || a[1] != '-') {
            first_file = i;
            break;
        }
        if (!val) {
            fprintf(stderr, "dashboard_queries: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--url") == 0) {
            c.url = val;
        } else if (strcmp(a, "--db") == 0) {
            c.db = val;
        } else if (strcmp(a, "--range") == 0) {
            range = val;
        } else if (strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0) {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (errno || *end || v < 0) {
                fprintf(stderr, "dashboard_queries: %s %s: not epoch milliseconds\n", a, val);
                return 2;
            }
            *(strcmp(a, "--from") == 0 ? &from : &to) = v;
        } else if (strcmp(a, "--interval") == 0) {
            c.interval = val;
        } else if (strcmp(a, "--datasource") == 0) {
            c.ds_uid = val;
        } else if (strcmp(a, "--var") == 0) {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val || c.n_pins == MAX_PINS) {
                fprintf(stderr, "dashboard_queries: --var %s: expected NAME=VALUE\n", val);
                return 2;
            }
            c.pins[c.n_pins].name = strndup(val, (size_t)(eq - val));
            c.pins[c.n_pins].value = eq + 1;
            if (!c.pins[c.n_pins].name)
                return 2;
            c.n_pins++;
        } else {
            fprintf(stderr, "dashboard_queries: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!c.url || !c.db || first_file >= argc) {
        usage(stderr);
        return 2;
    }
    if (duration_ms(c.interval) <= 0) {
        fprintf(stderr, "dashboard_queries: --interval %s: expected a duration like 10s\n",
                c.interval);
        return 2;
    }
    if ((from < 0) != (to < 0) || (from >= 0 && from >= to)) {
        fprintf(stderr, "dashboard_queries: --from and --to go together, from before to\n");
        return 2;
    }
    if (from >= 0) {
        c.from_ms = from;
        c.to_ms = to;
    } else {
        int64_t span = duration_ms(range);
        struct timespec now;
        if (span <= 0) {
            fprintf(stderr, "dashboard_queries: --range %s: expected a duration like 1h\n", range);
            return 2;
        }
        clock_gettime(CLOCK_REALTIME, &now);
        c.to_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        c.from_ms = c.to_ms - span;
        snprintf(c.relative, sizeof(c.relative), "%s", range);
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.curl = curl_easy_init();
    if (!c.curl) {
        fprintf(stderr, "dashboard_queries: curl_easy_init failed\n");
        return 2;
    }
    for (int i = first_file; i < argc; i++) {
        if (check_dashboard(&c, argv[i]) < 0)
            rc = 2;
    }
    curl_easy_cleanup(c.curl);
    curl_global_cleanup();
    for (int i = 0; i < c.n_pins; i++)
        free((char *)c.pins[i].name);

    printf("dashboard_queries: %d queries, %d failed, %d empty where allowed\n",
           c.queries, c.failures, c.empty_allowed);
    if (rc)
        return rc;
    return c.failures ? 1 : 0;
}
