/* gw_api_views: everything but the cases themselves — grids and their
 * figures, devices, the evaluation figures (/stats), Prometheus metrics,
 * rule reloads, the health check and who the caller is (/me). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "gw_api_int.h"
#include "gw_array.h"
#include "gw_case_json.h"
#include "gw_cases.h"
#include "gw_casesvc.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_pipeline.h"
#include "gw_reading.h"
#include "gw_registry.h"


/* ---- places ---------------------------------------------------------- */

/* The ids a scope's place has (NULL where it has none), from the
 * registry; -ENOENT when the district has no such street, community or
 * grid. A community's street is the one of any of its grids. */
static int scope_place(const struct gw_registry *reg, enum gw_scope_kind kind, const char *id,
                       const char **ret_grid, const char **ret_community, const char **ret_street)
{
    *ret_grid = *ret_community = *ret_street = NULL;
    if (kind == GW_SCOPE_DISTRICT)
        return 0;
    for (size_t i = 0; i < gw_registry_grid_count(reg); i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);

        if ((kind == GW_SCOPE_GRID && strcmp(g->id, id) == 0) ||
            (kind == GW_SCOPE_COMMUNITY && strcmp(g->community_id, id) == 0) ||
            (kind == GW_SCOPE_STREET && strcmp(g->street_id, id) == 0)) {
            *ret_grid = kind == GW_SCOPE_GRID ? g->id : NULL;
            *ret_community = kind != GW_SCOPE_STREET ? g->community_id : NULL;
            *ret_street = g->street_id;
            return 0;
        }
    }
    return -ENOENT;
}

static bool grid_visible(const struct gw_actor *actor, const struct gw_grid *g)
{
    return g && gw_access_in_scope(actor, g->id, g->community_id, g->street_id);
}

/* An actor like `actor` but whose scope is one place: reads through it
 * see that place only. */
static struct gw_actor narrowed(const struct gw_actor *actor, enum gw_scope_kind kind,
                                const char *id)
{
    struct gw_actor a = *actor;

    a.scope = kind;
    a.scope_id = id;
    return a;
}

static int put_key_string(struct gw_buf *out, const char *key, const char *value, bool comma)
{
    int r = gw_buf_printf(out, "%s\"%s\":", comma ? "," : "", key);

    if (r == 0)
        r = value ? gw_api__json_string(out, value) : gw_buf_puts(out, "null");
    return r;
}

static int grid_json(struct gw_buf *out, const struct gw_grid *g)
{
    int r = gw_buf_putc(out, '{');
    bool first = true;

    r = r ? r : put_key_string(out, "id", g->id, false);
    r = r ? r : put_key_string(out, "name", g->name, true);
    r = r ? r : put_key_string(out, "community_id", g->community_id, true);
    r = r ? r : put_key_string(out, "community", g->community, true);
    r = r ? r : put_key_string(out, "street_id", g->street_id, true);
    r = r ? r : put_key_string(out, "street", g->street, true);
    r = r ? r : put_key_string(out, "type", gw_grid_type_name(g->type), true);
    r = r ? r : put_key_string(out, "level", gw_grid_level_name(g->level), true);
    r = r ? r : gw_buf_puts(out, ",\"roster\":{");
    for (int i = 0; i < GW_ROLE_COUNT && r == 0; i++) {
        if (!g->roster[i])
            continue;
        r = put_key_string(out, gw_role_name((enum gw_role)i), g->roster[i], !first);
        first = false;
    }
    return r ? r : gw_buf_puts(out, "}}");
}

/* ---- figures ---------------------------------------------------------- */

static int put_rate(struct gw_buf *out, const char *key, int64_t num, int64_t den)
{
    if (den <= 0)
        return gw_buf_printf(out, ",\"%s\":null", key);
    return gw_buf_printf(out, ",\"%s\":%.6g", key, (double)num / (double)den);
}

/* The states a stay can end in (a terminal state's never does). */
static const enum gw_case_state step_states[] = {
    GW_CASE_REPORTED, GW_CASE_DISPATCHED, GW_CASE_HANDLED,
    GW_CASE_VERIFIED, GW_CASE_EVALUATED,  GW_CASE_DEFERRED,
};

static int figures_json(struct gw_buf *out, const struct gw_case_figures *f)
{
    int64_t open_due = f->due - f->deferred, urgent_open = f->urgent_due - f->urgent_deferred;
    int r = gw_buf_puts(out, "{\"key\":");

    r = r ? r : gw_api__json_string(out, f->key);
    r = r ? r
          : gw_buf_printf(out,
                          ",\"opened\":%lld,\"dispatched\":%lld,\"due\":%lld,\"deferred\":%lld,"
                          "\"closed\":%lld,\"closed_on_time\":%lld",
                          (long long)f->opened, (long long)f->dispatched, (long long)f->due,
                          (long long)f->deferred, (long long)f->closed,
                          (long long)f->closed_on_time);
    r = r ? r : put_rate(out, "closure_rate", f->closed, open_due);
    r = r ? r : put_rate(out, "on_time_rate", f->closed_on_time, open_due);
    r = r ? r
          : gw_buf_printf(out,
                          ",\"urgent\":{\"due\":%lld,\"deferred\":%lld,\"closed\":%lld,"
                          "\"closed_on_time\":%lld",
                          (long long)f->urgent_due, (long long)f->urgent_deferred,
                          (long long)f->urgent_closed, (long long)f->urgent_closed_on_time);
    r = r ? r : put_rate(out, "closure_rate", f->urgent_closed, urgent_open);
    r = r ? r : put_rate(out, "on_time_rate", f->urgent_closed_on_time, urgent_open);
    r = r ? r : gw_buf_printf(out, "},\"reworked\":%lld", (long long)f->reworked);
    r = r ? r : put_rate(out, "rework_rate", f->reworked, f->dispatched);
    r = r ? r
          : gw_buf_printf(out, ",\"overdue_now\":%lld,\"open_now\":%lld,\"mean_step_s\":{",
                          (long long)f->overdue_now, (long long)f->open_now);
    for (size_t i = 0; i < ARRAY_SIZE(step_states) && r == 0; i++) {
        double s = f->mean_step_s[step_states[i]];

        r = gw_buf_printf(out, "%s\"%s\":", i ? "," : "", gw_case_state_name(step_states[i]));
        r = r ? r
              : (s < 0 || !isfinite(s) ? gw_buf_puts(out, "null") : gw_buf_printf(out, "%.3f", s));
    }
    return r ? r : gw_buf_puts(out, "}}");
}

/* Figures with nothing in them, for a place without cases. */
static void figures_zero(struct gw_case_figures *f, const char *key)
{
    memset(f, 0, sizeof(*f));
    f->key = (char *)key;
    for (int i = 0; i < GW_CASE_STATE_COUNT; i++)
        f->mean_step_s[i] = -1;
}

/* ---- GET /grids, /grids/{id} ----------------------------------------------- */

void gw_api__list_grids(struct api_request *rq, const struct api_path *path)
{
    static const char *const params[] = {"street", "community"};
    const char *v[2];
    struct gw_buf out = GW_BUF_INIT;
    int r;
    bool first = true;

    (void)path;
    if (gw_api__query(rq, params, 2, v) < 0)
        return;
    r = gw_buf_puts(&out, "{\"grids\":[");
    for (size_t i = 0; i < gw_registry_grid_count(rq->api->reg) && r == 0; i++) {
        const struct gw_grid *g = gw_registry_grid_at(rq->api->reg, i);

        if (!grid_visible(rq->actor, g) || (v[0] && strcmp(v[0], g->street_id) != 0) ||
            (v[1] && strcmp(v[1], g->community_id) != 0))
            continue;
        r = first ? 0 : gw_buf_putc(&out, ',');
        r = r ? r : grid_json(&out, g);
        first = false;
    }
    r = r ? r : gw_buf_puts(&out, "]}\n");
    if (r == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_buf_free(&out);
}

static bool is_open(enum gw_case_state s)
{
    return s != GW_CASE_CLOSED && s != GW_CASE_CANCELLED;
}

void gw_api__get_grid(struct api_request *rq, const struct api_path *path)
{
    static const char *const params[] = {"from", "to"};
    const char *v[2];
    const struct gw_grid *g = gw_registry_grid(rq->api->reg, path->name);
    struct gw_actor viewer;
    struct gw_case_figures *rows = NULL, zero;
    int64_t from, to, counts[GW_CASE_STATE_COUNT], overdue = 0, open = 0;
    struct gw_buf out = GW_BUF_INIT;
    struct gw_cases *reader;
    int n, r;

    if (gw_api__query(rq, params, 2, v) < 0 || gw_api__parse_period(rq, v[0], v[1], &from, &to) < 0)
        return;
    if (!grid_visible(rq->actor, g)) {
        gw_api__error(rq, 404, "not_found", "no such grid here");
        return;
    }
    viewer = narrowed(rq->actor, GW_SCOPE_GRID, g->id);
    reader = gw_api__reader_get(rq->api);
    n = gw_cases_figures(reader, &viewer, GW_GROUP_GRID, from, to, gw_now_ns(), &rows);
    r = n < 0 ? n : gw_cases_count_by_state(reader, &viewer, counts, &overdue);
    gw_api__reader_put(rq->api, reader);
    if (r < 0) {
        gw_api__fail(rq, r, NULL);
        goto out;
    }
    for (int s = 0; s < GW_CASE_STATE_COUNT; s++)
        open += is_open((enum gw_case_state)s) ? counts[s] : 0;
    figures_zero(&zero, g->id);
    r = gw_buf_puts(&out, "{\"grid\":");
    r = r ? r : grid_json(&out, g);
    r = r ? r : gw_buf_puts(&out, ",\"figures\":");
    r = r ? r : figures_json(&out, n > 0 ? &rows[0] : &zero);
    r = r ? r : gw_buf_printf(&out, ",\"open_cases\":%lld}\n", (long long)open);
    if (r == 0)
        gw_api__respond_json(rq, 200, &out);
out:
    if (n > 0)
        gw_cases_free_figures(rows, n);
    gw_buf_free(&out);
}

/* ---- GET /devices/{id} ------------------------------------------------------ */

static int device_json(struct gw_buf *out, struct gw_pipeline *pipeline, const struct gw_device *d)
{
    static const char *const online[] = {"null", "true", "false"};
    struct gw_device_state st;
    struct gw_reading *last;
    int r;

    gw_device_state(d, &st);
    r = gw_buf_puts(out, "{\"device\":{");
    r = r ? r : put_key_string(out, "id", d->id, false);
    r = r ? r : put_key_string(out, "type", d->type, true);
    r = r ? r : put_key_string(out, "label", d->label, true);
    r = r ? r : put_key_string(out, "grid_id", d->grid ? d->grid->id : NULL, true);
    if (isnan(d->lat) || isnan(d->lon))
        r = r ? r : gw_buf_puts(out, ",\"lat\":null,\"lon\":null");
    else
        r = r ? r : gw_buf_printf(out, ",\"lat\":%.7f,\"lon\":%.7f", d->lat, d->lon);
    r = r ? r : gw_buf_printf(out, ",\"online\":%s,\"last_seen\":", online[st.online]);
    r = r ? r : gw_case_json_time(out, st.last_seen_ns);
    r = r ? r
          : gw_buf_printf(out, ",\"rejected\":%llu,\"quarantined\":%s,\"last_reading\":",
                          (unsigned long long)st.rejected, d->quarantined ? "true" : "false");
    last = gw_pipeline_last_reading(pipeline, d);
    if (last) {
        r = r ? r : gw_reading_to_json(last, out);
        gw_reading_unref(last);
    } else {
        r = r ? r : gw_buf_puts(out, "null");
    }
    return r ? r : gw_buf_puts(out, "}}\n");
}

void gw_api__get_device(struct api_request *rq, const struct api_path *path)
{
    const struct gw_device *d = gw_registry_device(rq->api->reg, path->name);
    struct gw_buf out = GW_BUF_INIT;
    const char *none[1];

    if (gw_api__query(rq, NULL, 0, none) < 0)
        return;
    if (!d || !grid_visible(rq->actor, d->grid)) {
        gw_api__error(rq, 404, "not_found", "no such device here");
        return;
    }
    if (device_json(&out, rq->api->pipeline, d) == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_buf_free(&out);
}

/* ---- GET /stats ------------------------------------------------------------- */

static const char *const group_names[] = {
    [GW_GROUP_DISTRICT] = "district",
    [GW_GROUP_STREET] = "street",
    [GW_GROUP_COMMUNITY] = "community",
    [GW_GROUP_GRID] = "grid",
};

/* The place the figures are for: the token's scope by default, else one
 * inside it. Anything else is as invisible as an unknown place. */
static int stats_scope(struct api_request *rq, const char *text, struct gw_actor *ret_viewer)
{
    const char *grid, *community, *street, *id;
    enum gw_scope_kind kind;

    if (!text) {
        *ret_viewer = *rq->actor;
        return 0;
    }
    if (gw_scope_parse(text, &kind, &id) < 0) {
        gw_api__error(rq, 400, "bad_request",
                      "scope: expected district, street:ID, community:ID or grid:ID");
        return -EINVAL;
    }
    if (scope_place(rq->api->reg, kind, id, &grid, &community, &street) < 0 ||
        !gw_access_in_scope(rq->actor, grid, community, street)) {
        gw_api__error(rq, 404, "not_found", "no such scope here");
        return -ENOENT;
    }
    *ret_viewer = narrowed(rq->actor, kind, id);
    return 0;
}

static int stats_group(struct api_request *rq, const char *text, enum gw_figures_group *ret)
{
    *ret = GW_GROUP_DISTRICT;
    for (size_t i = 0; text && i < ARRAY_SIZE(group_names); i++) {
        if (strcmp(text, group_names[i]) == 0) {
            *ret = (enum gw_figures_group)i;
            return 0;
        }
    }
    if (!text)
        return 0;
    gw_api__error(rq, 400, "bad_request",
                  "group: unknown value \"%.32s\" (one of district, street, community, grid)",
                  text);
    return -EINVAL;
}

static int stats_json(struct gw_buf *out, int64_t from, int64_t to, enum gw_figures_group group,
                      const struct gw_case_figures *rows, int n)
{
    int r = gw_buf_puts(out, "{\"from\":");

    r = r ? r : gw_case_json_time(out, from);
    r = r ? r : gw_buf_puts(out, ",\"to\":");
    r = r ? r : gw_case_json_time(out, to);
    r = r ? r : gw_buf_printf(out, ",\"group\":\"%s\",\"figures\":[", group_names[group]);
    for (int i = 0; i < n && r == 0; i++) {
        r = i ? gw_buf_putc(out, ',') : 0;
        r = r ? r : figures_json(out, &rows[i]);
    }
    return r ? r : gw_buf_puts(out, "]}\n");
}

void gw_api__stats(struct api_request *rq, const struct api_path *path)
{
    enum { S_SCOPE, S_GROUP, S_FROM, S_TO, S_COUNT };
    static const char *const params[S_COUNT] = {"scope", "group", "from", "to"};
    const char *v[S_COUNT];
    struct gw_actor viewer;
    enum gw_figures_group group;
    struct gw_case_figures *rows = NULL;
    struct gw_buf out = GW_BUF_INIT;
    struct gw_cases *reader;
    int64_t from, to;
    int n;

    (void)path;
    if (gw_api__query(rq, params, S_COUNT, v) < 0 || stats_scope(rq, v[S_SCOPE], &viewer) < 0 ||
        stats_group(rq, v[S_GROUP], &group) < 0 ||
        gw_api__parse_period(rq, v[S_FROM], v[S_TO], &from, &to) < 0)
        return;
    reader = gw_api__reader_get(rq->api);
    n = gw_cases_figures(reader, &viewer, group, from, to, gw_now_ns(), &rows);
    gw_api__reader_put(rq->api, reader);
    if (n < 0) {
        gw_api__fail(rq, n, NULL);
        return;
    }
    if (stats_json(&out, from, to, group, rows, n) == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_cases_free_figures(rows, n);
    gw_buf_free(&out);
}

/* ---- POST /rules/reload ----------------------------------------------------- */

void gw_api__reload_rules(struct api_request *rq, const struct api_path *path)
{
    const struct cJSON *none_items[1];
    const char *none[1];
    cJSON *root = NULL;
    struct gw_buf out = GW_BUF_INIT;

    (void)path;
    if (gw_api__query(rq, NULL, 0, none) < 0 ||
        gw_api__body(rq, NULL, 0, false, none_items, &root) < 0)
        return;
    cJSON_Delete(root);
    if (rq->actor->role != GW_ACTOR_OPERATOR && rq->actor->role != GW_ACTOR_LIAISON) {
        gw_api__error(rq, 403, "forbidden", "only operators and liaisons reload the rules");
        return;
    }
    gw_info("api", "rules reload asked by %s", rq->actor->name);
    if (gw_pipeline_reload(rq->api->pipeline) < 0) {
        gw_api__error(rq, 422, "bad_request", "rules not reloaded: see the log for file:line");
        return;
    }
    if (gw_buf_puts(&out, "{\"reloaded\":true}\n") == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_buf_free(&out);
}

/* ---- GET /me ---------------------------------------------------------------- */

/* The Grafana dashboard of one grid (config/grafana/dashboards/grid-detail.json):
 * its uid, a slug (Grafana goes by the uid and mends the slug) and its
 * variables, which the console fills with a grid's ids. All three are
 * given: Grafana may drop a grid that is not among the options its
 * street and community offer. */
#define GRAFANA_GRID_PATH                                                                          \
    "/d/gridgate-grid/gridgate-grid-detail"                                                        \
    "?var-street={street}&var-community={community}&var-grid={grid}"

static const char *const scope_levels[] = {
    [GW_SCOPE_DISTRICT] = "district",
    [GW_SCOPE_STREET] = "street",
    [GW_SCOPE_COMMUNITY] = "community",
    [GW_SCOPE_GRID] = "grid",
};

/* The name of a scope's place in the registry; NULL for the district,
 * which the registry does not name. */
static const char *scope_name(const struct gw_registry *reg, enum gw_scope_kind kind,
                              const char *id)
{
    for (size_t i = 0; kind != GW_SCOPE_DISTRICT && i < gw_registry_grid_count(reg); i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);

        if (kind == GW_SCOPE_GRID && strcmp(g->id, id) == 0)
            return g->name;
        if (kind == GW_SCOPE_COMMUNITY && strcmp(g->community_id, id) == 0)
            return g->community;
        if (kind == GW_SCOPE_STREET && strcmp(g->street_id, id) == 0)
            return g->street;
    }
    return NULL;
}

static int grafana_grid_link(struct gw_buf *out, const char *base)
{
    struct gw_buf url = GW_BUF_INIT;
    size_t len;
    int r;

    if (!base)
        return gw_buf_puts(out, "null");
    len = strlen(base);
    while (len > 0 && base[len - 1] == '/') /* "http://host:3000/" is fine too */
        len--;
    r = gw_buf_append(&url, base, len);
    r = r ? r : gw_buf_puts(&url, GRAFANA_GRID_PATH);
    r = r ? r : gw_api__json_string(out, url.data);
    gw_buf_free(&url);
    return r;
}

void gw_api__me(struct api_request *rq, const struct api_path *path)
{
    const struct gw_actor *a = rq->actor;
    struct gw_buf out = GW_BUF_INIT;
    const char *none[1];
    int r;

    (void)path;
    if (gw_api__query(rq, NULL, 0, none) < 0)
        return;
    r = gw_buf_putc(&out, '{');
    r = r ? r : put_key_string(&out, "name", a->name, false);
    r = r ? r : put_key_string(&out, "role", gw_actor_role_name(a->role), true);
    r = r ? r : gw_buf_puts(&out, ",\"scope\":{");
    r = r ? r : put_key_string(&out, "level", scope_levels[a->scope], false);
    r = r ? r : put_key_string(&out, "id", a->scope_id, true);
    r = r ? r : put_key_string(&out, "name", scope_name(rq->api->reg, a->scope, a->scope_id), true);
    r = r ? r : gw_buf_putc(&out, '}');
    r = r ? r : put_key_string(&out, "post", a->has_grid_role ? gw_role_name(a->grid_role) : NULL,
                               true);
    r = r ? r : put_key_string(&out, "person", a->person, true);
    r = r ? r : gw_buf_puts(&out, ",\"links\":{\"grafana_grid\":");
    r = r ? r : grafana_grid_link(&out, rq->api->cfg->api.grafana_url);
    r = r ? r : gw_buf_puts(&out, "}}\n");
    if (r == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_buf_free(&out);
}

/* ---- GET /healthz ----------------------------------------------------------- */

void gw_api__healthz(struct api_request *rq, const struct api_path *path)
{
    struct gw_buf out = GW_BUF_INIT;

    (void)path;
    if (gw_buf_puts(&out, "{\"status\":\"ok\"}\n") == 0)
        gw_api__respond_json(rq, 200, &out);
    gw_buf_free(&out);
}

/* ---- GET /metrics (Prometheus text format 0.0.4) ---------------------------- */

struct metric {
    const char *name;
    const char *labels; /* NULL or `key="value"` */
    const char *type;
    const char *help; /* for the first series of a name */
    size_t offset;    /* of a uint64_t in the stats struct */
};

/* clang-format off */
#define P(field) offsetof(struct gw_pipeline_stats, field)
#define S(field) offsetof(struct gw_casesvc_stats, field)

static const struct metric pipeline_metrics[] = {
    {"gridgate_readings_received_total", NULL, "counter",
     "Messages the adapters handed in.", P(received)},
    {"gridgate_readings_accepted_total", NULL, "counter",
     "Readings decoded, resolved and journalled.", P(accepted)},
    {"gridgate_readings_rejected_total", "reason=\"bad_payload\"", "counter",
     "Messages refused, by reason.", P(bad_payload)},
    {"gridgate_readings_rejected_total", "reason=\"unknown_device\"", NULL,
     NULL, P(unknown_device)},
    {"gridgate_readings_rejected_total", "reason=\"too_large\"", NULL, NULL, P(too_large)},
    {"gridgate_readings_rejected_total", "reason=\"unsupported\"", NULL, NULL, P(unsupported)},
    {"gridgate_rule_runs_total", NULL, "counter",
     "Readings the rule workers finished.", P(rule_runs)},
    {"gridgate_rule_errors_total", NULL, "counter", "Rule calls that failed.", P(rule_errors)},
    {"gridgate_rule_shadow_actions_total", NULL, "counter",
     "Actions of shadow rules, logged only.", P(shadow_actions)},
    {"gridgate_case_events_total", NULL, "counter", "Case events committed.", P(case_events)},
    {"gridgate_cases_opened_total", NULL, "counter", "Cases opened.", P(cases_opened)},
    {"gridgate_store_errors_total", NULL, "counter", "Case store failures.", P(store_errors)},
    {"gridgate_journal_errors_total", NULL, "counter",
     "Journal appends the file system refused.", P(journal_errors)},
    {"gridgate_journal_records_skipped_total", NULL, "counter",
     "Journal records no consumer could use.", P(records_skipped)},
    {"gridgate_journal_dropped_total", NULL, "counter",
     "Records lost to journal.full_policy drop_oldest.", P(journal_dropped)},
    {"gridgate_journal_bytes", NULL, "gauge", "Bytes in the journal.", P(journal_bytes)},
    {"gridgate_rules_lag_records", NULL, "gauge",
     "Journal records the slowest rule worker has not committed.", P(rules_lag)},
    {"gridgate_influx_lag_records", NULL, "gauge",
     "Journal records InfluxDB has not answered.", P(influx_lag)},
    {"gridgate_influx_lines_lost_total", NULL, "counter",
     "Lines for InfluxDB given up on.", P(lines_lost)},
    {"gridgate_influx_points_written_total", NULL, "counter",
     "Points InfluxDB kept.", P(points_written)},
    {"gridgate_influx_points_rejected_total", NULL, "counter",
     "Points InfluxDB refused (bad line, field type conflict).", P(points_rejected)},
    {"gridgate_influx_write_errors_total", NULL, "counter",
     "Writes to InfluxDB that failed and were retried.", P(write_errors)},
    {"gridgate_influx_write_latency_microseconds", NULL, "gauge",
     "Duration of the last write to InfluxDB.", P(write_latency_us)},
    {"gridgate_influx_points_dead_lettered_total", NULL, "counter",
     "Points InfluxDB refused that went to the dead-letter file.", P(points_dead_lettered)},
    {"gridgate_influx_outbox_rows", NULL, "gauge",
     "Rows of case events and rule emits waiting in the store for InfluxDB.", P(outbox_rows)},
    {"gridgate_influx_skipped_total", NULL, "counter",
     "Readings the journal dropped (drop_oldest) before InfluxDB got them.", P(influx_skipped)},
    {"gridgate_side_lines_dropped_total", NULL, "counter",
     "Best-effort lines (health, case figures) dropped while InfluxDB was behind.", P(side_dropped)},
    {"gridgate_devices_quarantined", NULL, "gauge",
     "Unknown devices admitted to the unassigned grid.", P(quarantined)},
};

static const struct metric casesvc_metrics[] = {
    {"gridgate_case_commands_total", NULL, "counter",
     "Case commands carried out (rule actions, transitions, reports).", S(commands)},
    {"gridgate_case_commands_failed_total", NULL, "counter",
     "Case commands refused by the loop or the store.", S(failed)},
    {"gridgate_case_batches_total", NULL, "counter",
     "Case store transactions committed.", S(batches)},
    {"gridgate_cases_escalated_total", NULL, "counter", "Escalations by the timer.", S(escalated)},
    {"gridgate_case_queue", NULL, "gauge", "Case commands waiting.", S(queued)},
};

#undef P
#undef S
/* clang-format on */

static int put_metrics(struct gw_buf *out, const struct metric *table, size_t n, const void *stats)
{
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        const struct metric *m = &table[i];
        uint64_t value;

        memcpy(&value, (const char *)stats + m->offset, sizeof(value));
        if (m->help)
            r = gw_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                              m->type);
        r = r ? r
              : gw_buf_printf(out, "%s%s%s%s %llu\n", m->name, m->labels ? "{" : "",
                              m->labels ? m->labels : "", m->labels ? "}" : "",
                              (unsigned long long)value);
    }
    return r;
}

/* Cases by state across the district: the gateway's, whoever asks. */
static int put_case_counts(struct api_request *rq, struct gw_buf *out)
{
    struct gw_actor district = narrowed(rq->actor, GW_SCOPE_DISTRICT, NULL);
    int64_t counts[GW_CASE_STATE_COUNT], overdue = 0;
    struct gw_cases *reader = gw_api__reader_get(rq->api);
    int r = gw_cases_count_by_state(reader, &district, counts, &overdue);

    gw_api__reader_put(rq->api, reader);
    if (r < 0)
        return r;
    r = gw_buf_puts(out,
                    "# HELP gridgate_cases Cases by state now.\n# TYPE gridgate_cases gauge\n");
    for (int s = 0; s < GW_CASE_STATE_COUNT && r == 0; s++)
        r = gw_buf_printf(out, "gridgate_cases{state=\"%s\"} %lld\n",
                          gw_case_state_name((enum gw_case_state)s), (long long)counts[s]);
    return r ? r
             : gw_buf_printf(out,
                             "# HELP gridgate_cases_overdue Open cases past their step's "
                             "limit now.\n# TYPE gridgate_cases_overdue gauge\n"
                             "gridgate_cases_overdue %lld\n",
                             (long long)overdue);
}

static int put_devices(const struct gw_registry *reg, struct gw_buf *out)
{
    uint64_t by_online[3] = {0};
    static const char *const names[] = {"unknown", "yes", "no"};
    int r;

    for (size_t i = 0; i < gw_registry_device_count(reg); i++) {
        struct gw_device_state st;

        gw_device_state(gw_registry_device_at(reg, i), &st);
        by_online[st.online]++;
    }
    r = gw_buf_puts(out, "# HELP gridgate_devices Devices of the devices file, by their last "
                         "status.\n# TYPE gridgate_devices gauge\n");
    for (int i = 0; i < 3 && r == 0; i++)
        r = gw_buf_printf(out, "gridgate_devices{online=\"%s\"} %llu\n", names[i],
                          (unsigned long long)by_online[i]);
    return r;
}

static int put_api(const struct gw_api *api, struct gw_buf *out)
{
    int r = gw_buf_puts(out, "# HELP gridgate_api_responses_total HTTP API answers by status "
                             "class.\n# TYPE gridgate_api_responses_total counter\n");

    for (int c = 2; c <= 5 && r == 0; c++)
        r = gw_buf_printf(out, "gridgate_api_responses_total{class=\"%dxx\"} %llu\n", c,
                          (unsigned long long)atomic_load(&api->answered[c]));
    return r ? r
             : gw_buf_printf(out,
                             "# HELP gridgate_api_auth_failures_total Requests with a "
                             "missing or bad token.\n"
                             "# TYPE gridgate_api_auth_failures_total counter\n"
                             "gridgate_api_auth_failures_total %llu\n",
                             (unsigned long long)atomic_load(&api->auth_failures));
}

void gw_api__metrics(struct api_request *rq, const struct api_path *path)
{
    struct gw_pipeline_stats ps;
    struct gw_casesvc_stats cs = {0};
    struct gw_buf out = GW_BUF_INIT;
    const char *none[1];
    int r;

    (void)path;
    if (gw_api__query(rq, NULL, 0, none) < 0)
        return;
    gw_pipeline_stats(rq->api->pipeline, &ps);
    if (rq->api->svc)
        gw_casesvc_stats(rq->api->svc, &cs);
    r = put_metrics(&out, pipeline_metrics, ARRAY_SIZE(pipeline_metrics), &ps);
    r = r ? r : put_metrics(&out, casesvc_metrics, ARRAY_SIZE(casesvc_metrics), &cs);
    r = r ? r : put_case_counts(rq, &out);
    r = r ? r : put_devices(rq->api->reg, &out);
    r = r ? r : put_api(rq->api, &out);
    if (r == 0)
        gw_api__respond(rq, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
    else if (r != -ENOMEM) /* out of memory: handle() answers 500 */
        gw_api__fail(rq, r, NULL);
    gw_buf_free(&out);
}
