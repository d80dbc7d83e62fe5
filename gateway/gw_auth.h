/* gw_auth: who may call the HTTP API (docs/api.md, "Tokens").
 *
 * Owns the tokens file (api.tokens, YAML): loading and checking it, the
 * actors its entries stand for (struct gw_actor, gw_access.h), finding the
 * actor of a token a caller presents, and making new tokens for `gridgate
 * token new`. The file holds only the SHA-256 of each token, never the
 * token: a token is 32 random bytes, so a fast hash is enough (nothing to
 * guess), and a stolen file lets nobody in. Also owns the limiter that
 * answers 429 to an address that keeps presenting bad tokens.
 *
 * Knows nothing of cases or HTTP: what an actor may do is gw_cases'
 * decision, how a token travels is gw_api's.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_access.h"
#include "gw_domain.h"

struct gw_registry;

/* "gg_" + 43 characters of base64url: 32 random bytes, no padding. */
#define GW_TOKEN_PREFIX "gg_"
#define GW_TOKEN_LEN 46

/* Longest token name; names are [A-Za-z0-9._-] so that they read well in
 * a case's history ("commander:dongcheng-centre"). */
#define GW_TOKEN_NAME_MAX 64

struct gw_auth;

/* Loads and checks the tokens file. Every entry needs name (unique),
 * role, scope and sha256; staff need post (a grid role) and may have a
 * person; no other role may have either. With reg, a scope must name a
 * street, community or grid reg knows. On failure returns NULL and sets
 * *ret_error to a malloc'd "FILE:LINE: tokens[I].KEY: what is wrong"
 * (I counted from 0). A missing file is an error too: an API that
 * nobody can call is a mistake. */
struct gw_auth *gw_auth_load(const char *path, const struct gw_registry *reg, char **ret_error);
void gw_auth_free(struct gw_auth *auth);

size_t gw_auth_count(const struct gw_auth *auth);

/* The actor a presented token stands for, or NULL. Compares the token's
 * hash with every entry in constant time and without stopping at a
 * match, so timing tells nothing about which entry matched or how much.
 * The actor belongs to auth and lives as long as it. Thread-safe. */
const struct gw_actor *gw_auth_lookup(const struct gw_auth *auth, const char *token);

/* A new token's entry. */
struct gw_token_spec {
    const char *name; /* NULL: "ROLE-" + 8 hex digits of its hash */
    enum gw_actor_role role;
    const char *scope; /* "district", "street:ID", "community:ID", "grid:ID" */
    bool has_post;     /* staff only, and required for staff */
    enum gw_role post;
    const char *person;            /* staff only; may be NULL */
    const struct gw_registry *reg; /* NULL, or the district the scope must name a place of */
};

/* Makes a token, appends its entry (hash only) to the tokens file at path
 * (created with mode 0600 if missing; an existing file must load, and
 * keeps its comments when its list is the last thing in it) and sets
 * *ret_token to the token (malloc'd, to be shown once). The file is
 * replaced atomically, so a crash leaves the old or the new one. Returns
 * 0, or -EINVAL (a bad spec or a bad existing file), -EEXIST (the name is
 * taken) or another negative errno, with *ret_error set (malloc'd). */
int gw_auth_token_new(const char *path, const struct gw_token_spec *spec, char **ret_token,
                      char **ret_error);

/* Failed logins per client address, in fixed one-minute windows. The
 * table has a fixed number of slots; when addresses outnumber them, the
 * least active one of the ones probed is forgotten, so a flood of
 * addresses costs memory never, and at worst lets one of them start
 * counting afresh. Thread-safe. */
struct gw_auth_limiter;

struct gw_auth_limiter *gw_auth_limiter_new(int per_minute, size_t slots);
void gw_auth_limiter_free(struct gw_auth_limiter *limiter);
/* Counts a failed login from address at now_ns; returns true when the
 * address has gone over per_minute failures in the current window (the
 * caller answers 429 instead of 401). */
bool gw_auth_limiter_hit(struct gw_auth_limiter *limiter, const char *address, int64_t now_ns);

#endif
