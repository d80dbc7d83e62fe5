/* gw_api_cases: /api/v1/cases — lists, one case with its history,
 * reports and the transitions of the case loop. Reads go through the
 * pool's read-only stores; writes through the case service, the one
 * writer, and are answered with the case as committed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "gw_api_int.h"
#include "gw_array.h"
#include "gw_case_json.h"
#include "gw_cases.h"
#include "gw_casesvc.h"

#define MAX_SAFE_INT 9007199254740991.0 /* 2^53 - 1: exact in a JSON number */

/* Names an enum's values in a 400 ("state: unknown value \"x\" (one of
 * reported, dispatched, ...)"). */
static void enum_error(struct api_request *rq, const char *what, const char *value,
                       const char *(*name)(int), int count)
{
    char names[256] = "";
    size_t used = 0;

    for (int i = 0; i < count && used < sizeof(names); i++)
        used +=
            (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "", name(i));
    gw_api__error(rq, 400, "bad_request", "%s: unknown value \"%.64s\" (one of %s)", what, value,
                  names);
}

/* The list's state filter: a state, or "open" (any but closed and
 * cancelled), named after the states. */
static const char *state_filter_name(int i)
{
    return i == GW_CASE_STATE_COUNT ? "open" : gw_case_state_name((enum gw_case_state)i);
}
static const char *severity_name(int i)
{
    return gw_severity_name((enum gw_severity)i);
}
static const char *role_name(int i)
{
    return gw_role_name((enum gw_role)i);
}

/* ---- GET /cases -------------------------------------------------------- */

enum {
    Q_GRID,
    Q_COMMUNITY,
    Q_STREET,
    Q_STATE,
    Q_CATEGORY,
    Q_SEVERITY,
    Q_OVERDUE,
    Q_INCIDENT,
    Q_LIMIT, /* the ones from here on do not change what the list holds */
    Q_CURSOR,
    Q_COUNT,
};

static const char *const list_params[Q_COUNT] = {
    "grid",     "community", "street",   "state", "category",
    "severity", "overdue",   "incident", "limit", "cursor",
};

/* What a cursor is tied to: the filters, each as length:value. */
static int filters_context(const char **v, struct gw_buf *out)
{
    int r = 0;

    for (int i = 0; i < Q_LIMIT && r == 0; i++)
        r = v[i] ? gw_buf_printf(out, "%zu:%s;", strlen(v[i]), v[i]) : gw_buf_puts(out, "-;");
    return r;
}

/* The one parser of the list's filters: query values into filter. */
static int filter_parse(struct api_request *rq, const char **v, const char *context,
                        struct gw_case_filter *f)
{
    int64_t n;
    int e;

    *f = (struct gw_case_filter){.grid_id = v[Q_GRID],
                                 .community_id = v[Q_COMMUNITY],
                                 .street_id = v[Q_STREET],
                                 .category = v[Q_CATEGORY],
                                 .overdue = -1,
                                 .limit = 50};
    if (v[Q_STATE] && strcmp(v[Q_STATE], "open") == 0) {
        f->open_only = true;
    } else if (v[Q_STATE]) {
        if ((e = gw_case_state_parse(v[Q_STATE])) < 0) {
            enum_error(rq, "state", v[Q_STATE], state_filter_name, GW_CASE_STATE_COUNT + 1);
            return -EINVAL;
        }
        f->has_state = true;
        f->state = (enum gw_case_state)e;
    }
    if (v[Q_SEVERITY]) {
        if ((e = gw_severity_parse(v[Q_SEVERITY])) < 0) {
            enum_error(rq, "severity", v[Q_SEVERITY], severity_name, GW_SEVERITY_COUNT);
            return -EINVAL;
        }
        f->has_severity = true;
        f->severity = (enum gw_severity)e;
    }
    if (v[Q_OVERDUE]) {
        if (strcmp(v[Q_OVERDUE], "true") != 0 && strcmp(v[Q_OVERDUE], "false") != 0) {
            gw_api__error(rq, 400, "bad_request", "overdue: expected true or false");
            return -EINVAL;
        }
        f->overdue = v[Q_OVERDUE][0] == 't';
    }
    if (v[Q_INCIDENT] &&
        gw_api__parse_int(rq, "incident", v[Q_INCIDENT], 1, INT64_MAX, &f->incident_id) < 0)
        return -EINVAL;
    if (v[Q_LIMIT]) {
        if (gw_api__parse_int(rq, "limit", v[Q_LIMIT], 1, 500, &n) < 0)
            return -EINVAL;
        f->limit = (int)n;
    }
    if (v[Q_CURSOR] && gw_api__cursor_decode(v[Q_CURSOR], context, &f->before_id) < 0) {
        gw_api__error(rq, 400, "bad_request",
                      "cursor: not a cursor this list gave out (use next_cursor as it came, with "
                      "the same filters)");
        return -EINVAL;
    }
    return 0;
}

static int list_json(struct gw_buf *out, const struct store_case *cases, int n, int limit,
                     const char *context)
{
    char cursor[API_CURSOR_LEN];
    int r = gw_buf_puts(out, "{\"cases\":[");

    for (int i = 0; i < n && r == 0; i++) {
        if (i > 0)
            r = gw_buf_putc(out, ',');
        r = r ? r : gw_case_json(out, &cases[i], 0);
    }
    /* A full page may have more behind it; a last page may then be empty. */
    if (n == limit && n > 0) {
        gw_api__cursor_encode(cases[n - 1].id, context, cursor);
        r = r ? r : gw_buf_printf(out, "],\"next_cursor\":\"%s\"}\n", cursor);
    } else {
        r = r ? r : gw_buf_puts(out, "],\"next_cursor\":null}\n");
    }
    return r;
}

void gw_api__list_cases(struct api_request *rq, const struct api_path *path)
{
    const char *v[Q_COUNT];
    struct gw_buf context = GW_BUF_INIT, out = GW_BUF_INIT;
    struct gw_case_filter filter;
    struct store_case *cases = NULL;
    struct gw_cases *reader;
    int n;

    (void)path;
    if (gw_api__query(rq, list_params, Q_COUNT, v) < 0)
        return;
    if (filters_context(v, &context) < 0 || filter_parse(rq, v, context.data, &filter) < 0)
        goto out;
    reader = gw_api__reader_get(rq->api);
    n = gw_cases_list(reader, rq->actor, &filter, &cases);
    gw_api__reader_put(rq->api, reader);
    if (n < 0) {
        gw_api__fail(rq, n, NULL);
        goto out;
    }
    if (list_json(&out, cases, n, filter.limit, context.data) == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_cases_free_list(cases, n);
out:
    gw_buf_free(&context);
    gw_buf_free(&out);
}

/* ---- GET /cases/{id} ---------------------------------------------------- */

static int actions_json(struct gw_buf *out, const struct gw_actor *actor,
                        const struct store_case *c)
{
    int r = gw_buf_putc(out, '[');
    bool first = true;

    for (int op = 0; op < GW_OP_COUNT && r == 0; op++) {
        if (!gw_cases_may(actor, (enum gw_case_op)op, c))
            continue;
        r = gw_buf_printf(out, "%s\"%s\"", first ? "" : ",", gw_case_op_name((enum gw_case_op)op));
        first = false;
    }
    return r ? r : gw_buf_putc(out, ']');
}

/* Reads case id as the actor sees it now and answers {"case": ...}, with
 * its history and the actions open to the actor when full. */
static void answer_case(struct api_request *rq, int status, int64_t id, bool full)
{
    struct store_case c;
    struct store_history *history = NULL;
    size_t n_history = 0;
    struct gw_buf out = GW_BUF_INIT;
    struct gw_cases *reader = gw_api__reader_get(rq->api);
    int r = gw_cases_get(reader, rq->actor, id, &c, &history, &n_history);

    gw_api__reader_put(rq->api, reader);
    if (r < 0) {
        gw_api__fail(rq, r, NULL);
        return;
    }
    r = gw_buf_puts(&out, "{\"case\":");
    r = r ? r : gw_case_json(&out, &c, full);
    if (full) {
        r = r ? r : gw_buf_puts(&out, ",\"history\":");
        r = r ? r : gw_case_history_json(&out, history, n_history);
        r = r ? r : gw_buf_puts(&out, ",\"actions\":");
        r = r ? r : actions_json(&out, rq->actor, &c);
    }
    r = r ? r : gw_buf_puts(&out, "}\n");
    if (r == 0)
        gw_api__respond_json(rq, status, &out);
    gw_buf_free(&out);
    store_case_free_contents(&c);
    gw_cases_free_history(history, n_history);
}

void gw_api__get_case(struct api_request *rq, const struct api_path *path)
{
    const char *none[1];

    if (gw_api__query(rq, NULL, 0, none) == 0)
        answer_case(rq, 200, path->id, true);
}

/* ---- POST /cases ------------------------------------------------------------ */

enum { R_GRID, R_LAT, R_LON, R_CATEGORY, R_TITLE, R_DETAIL, R_SEVERITY, R_REPORTER, R_COUNT };

static const struct api_field report_fields[R_COUNT] = {
    [R_GRID] = {"grid_id", API_STRING, 1, 64},      [R_LAT] = {"lat", API_NUMBER, -90, 90},
    [R_LON] = {"lon", API_NUMBER, -180, 180},       [R_CATEGORY] = {"category", API_STRING, 1, 64},
    [R_TITLE] = {"title", API_STRING, 1, 200},      [R_DETAIL] = {"detail", API_STRING, 0, 2000},
    [R_SEVERITY] = {"severity", API_STRING, 1, 16}, [R_REPORTER] = {"reporter", API_STRING, 1, 200},
};

static int report_from_body(struct api_request *rq, const cJSON **f, struct gw_case_report *rep)
{
    int e;

    *rep = (struct gw_case_report){.actor = rq->actor, .severity = GW_SEVERITY_MINOR};
    if (!f[R_CATEGORY] || !f[R_TITLE]) {
        gw_api__error(rq, 400, "bad_request", "%s: required", f[R_CATEGORY] ? "title" : "category");
        return -EINVAL;
    }
    if (!f[R_LAT] != !f[R_LON]) {
        gw_api__error(rq, 400, "bad_request", "%s: required with %s", f[R_LAT] ? "lon" : "lat",
                      f[R_LAT] ? "lat" : "lon");
        return -EINVAL;
    }
    if (!f[R_GRID] && !f[R_LAT]) {
        gw_api__error(rq, 400, "bad_request", "grid_id, or lat and lon: one is required");
        return -EINVAL;
    }
    if (f[R_SEVERITY]) {
        if ((e = gw_severity_parse(f[R_SEVERITY]->valuestring)) < 0) {
            enum_error(rq, "severity", f[R_SEVERITY]->valuestring, severity_name,
                       GW_SEVERITY_COUNT);
            return -EINVAL;
        }
        rep->severity = (enum gw_severity)e;
    }
    rep->grid_id = f[R_GRID] ? f[R_GRID]->valuestring : NULL;
    rep->has_location = f[R_LAT] != NULL;
    rep->lat = f[R_LAT] ? f[R_LAT]->valuedouble : 0;
    rep->lon = f[R_LON] ? f[R_LON]->valuedouble : 0;
    rep->category = f[R_CATEGORY]->valuestring;
    rep->title = f[R_TITLE]->valuestring;
    rep->detail = f[R_DETAIL] ? f[R_DETAIL]->valuestring : NULL;
    rep->reporter = f[R_REPORTER] ? f[R_REPORTER]->valuestring : NULL;
    return 0;
}

/* The case service, or a 503 when the gateway runs without one. */
static struct gw_casesvc *case_service(struct api_request *rq)
{
    if (!rq->api->svc)
        gw_api__error(rq, 503, "unavailable", "the case service is not running");
    return rq->api->svc;
}

void gw_api__report_case(struct api_request *rq, const struct api_path *path)
{
    const cJSON *f[R_COUNT];
    cJSON *root = NULL;
    struct gw_case_report report;
    struct gw_casesvc *svc;
    const char *none[1];
    char why[256] = "";
    int64_t id = 0;
    int r;

    (void)path;
    if (gw_api__query(rq, NULL, 0, none) < 0 ||
        gw_api__body(rq, report_fields, R_COUNT, true, f, &root) < 0)
        return;
    if (report_from_body(rq, f, &report) == 0 && (svc = case_service(rq))) {
        r = gw_casesvc_report(svc, &report, &id, why, sizeof(why));
        if (r < 0) {
            gw_api__fail(rq, r, why);
        } else {
            snprintf(rq->location, sizeof(rq->location), "/api/v1/cases/%lld", (long long)id);
            answer_case(rq, 201, id, false);
        }
    }
    cJSON_Delete(root);
}

/* ---- POST /cases/{id}/{op} ------------------------------------------------ */

enum { T_VERSION, T_NOTE, T_ROLE, T_PERSON, T_PASS, T_SCORE, T_COUNT };

static const struct api_field transition_fields[T_COUNT] = {
    [T_VERSION] = {"version", API_INT, 1, MAX_SAFE_INT},
    [T_NOTE] = {"note", API_STRING, 1, 2000},
    [T_ROLE] = {"role", API_STRING, 1, 32},
    [T_PERSON] = {"person", API_STRING, 1, 128},
    [T_PASS] = {"pass", API_BOOL, 0, 0},
    [T_SCORE] = {"score", API_INT, 1, 5},
};

/* The fields each op takes besides version and note. */
static const unsigned op_extra_fields[GW_OP_COUNT] = {
    [GW_OP_DISPATCH] = 1u << T_ROLE | 1u << T_PERSON,
    [GW_OP_VERIFY] = 1u << T_PASS,
    [GW_OP_EVALUATE] = 1u << T_SCORE,
};

static int request_from_body(struct api_request *rq, const struct api_path *path, const cJSON **f,
                             struct gw_case_request *req)
{
    unsigned allowed = 1u << T_VERSION | 1u << T_NOTE | op_extra_fields[path->op];
    const char *op = gw_case_op_name(path->op);
    int e;

    for (int i = 0; i < T_COUNT; i++) {
        if (f[i] && !(allowed & (1u << i))) {
            gw_api__error(rq, 400, "bad_request", "%s: not a field of %s",
                          transition_fields[i].name, op);
            return -EINVAL;
        }
    }
    if (path->op == GW_OP_VERIFY && !f[T_PASS]) {
        gw_api__error(rq, 400, "bad_request",
                      "pass: required for verify (true: verified; false: back for rework)");
        return -EINVAL;
    }
    *req = (struct gw_case_request){
        .op = path->op,
        .case_id = path->id,
        .version = f[T_VERSION] ? (int64_t)f[T_VERSION]->valuedouble : 0,
        .actor = rq->actor,
        .note = f[T_NOTE] ? f[T_NOTE]->valuestring : NULL,
        .person = f[T_PERSON] ? f[T_PERSON]->valuestring : NULL,
        .pass = f[T_PASS] && cJSON_IsTrue(f[T_PASS]),
        .score = f[T_SCORE] ? (int)f[T_SCORE]->valuedouble : 0,
    };
    if (f[T_ROLE]) {
        if ((e = gw_role_parse(f[T_ROLE]->valuestring)) < 0) {
            enum_error(rq, "role", f[T_ROLE]->valuestring, role_name, GW_ROLE_COUNT);
            return -EINVAL;
        }
        req->has_role = true;
        req->role = (enum gw_role)e;
    }
    return 0;
}

void gw_api__transition(struct api_request *rq, const struct api_path *path)
{
    const cJSON *f[T_COUNT];
    cJSON *root = NULL;
    struct gw_case_request req;
    struct gw_casesvc *svc;
    const char *none[1];
    char why[256] = "";
    int64_t version = 0;
    int r;

    if (gw_api__query(rq, NULL, 0, none) < 0 ||
        gw_api__body(rq, transition_fields, T_COUNT, false, f, &root) < 0)
        return;
    if (request_from_body(rq, path, f, &req) == 0 && (svc = case_service(rq))) {
        r = gw_casesvc_transition(svc, &req, &version, why, sizeof(why));
        if (r < 0)
            gw_api__fail(rq, r, why);
        else
            answer_case(rq, 200, path->id, false);
    }
    cJSON_Delete(root);
}
