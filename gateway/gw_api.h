/* gw_api: the HTTP API (/api/v1, docs/api.md) for grid staff, command
 * centres, operators and liaisons.
 *
 * Owns the HTTP server (libmicrohttpd, its own threads), the tokens it
 * checks callers against (gw_auth), and a small pool of read-only case
 * stores that answer the reads. Writes (reports, transitions) go to the
 * pipeline's case service, the one writer of cases, and are answered once
 * committed. Does not own the configuration, the registry or the
 * pipeline: all three must outlive it (stop the API before the pipeline).
 */
#ifndef GW_API_H
#define GW_API_H

struct gw_config;
struct gw_pipeline;
struct gw_registry;

struct gw_api;

/* Loads api.tokens, opens the readers on store.path and starts serving
 * api.listen:api.port with api.threads threads. On failure returns NULL
 * and sets *ret_error (malloc'd: the tokens file's FILE:LINE message, or
 * why the address could not be bound). */
struct gw_api *gw_api_start(const struct gw_config *cfg, const struct gw_registry *reg,
                            struct gw_pipeline *pipeline, char **ret_error);
/* Stops serving (requests in progress are finished first) and frees
 * everything; NULL is fine. */
void gw_api_stop(struct gw_api *api);

/* What gw_api_start would refuse in the console's keys, for `gridgate
 * check`: api.console_dir set but without a readable index.html, or an
 * api.grafana_url that is not http(s)://. Returns 0, or -EINVAL with
 * *ret_error set (malloc'd, naming the key and the path or value). */
int gw_api_check_console(const struct gw_config *cfg, char **ret_error);

#endif
