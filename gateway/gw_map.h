/* gw_map: an open-addressing hash map from C strings to pointers.
 *
 * Owns its slot table only. Keys and values are borrowed: the caller keeps
 * every key string alive and unchanged for the map's lifetime (the registry
 * points the keys into the objects the values point to). No removal: the
 * registry builds its maps once and then only reads them, so concurrent
 * readers need no lock once building is over. Not for writers on several
 * threads.
 */
#ifndef GW_MAP_H
#define GW_MAP_H

#include <stddef.h>
#include <stdint.h>

struct gw_map;

/* A map sized for `expected` keys without growing (0 is fine). NULL when
 * out of memory. */
struct gw_map *gw_map_new(size_t expected);
void gw_map_free(struct gw_map *map);

/* Adds key -> value. value must not be NULL. Returns 0, -EEXIST when the
 * key is already there (the map is unchanged; gw_map_get gives the value
 * held), -EINVAL for a NULL key or value, or -ENOMEM. */
int gw_map_put(struct gw_map *map, const char *key, void *value);

/* Adds key -> value, or replaces the value key has; *ret_old (when not
 * NULL) gets the value replaced, or NULL. Returns 0, -EINVAL or -ENOMEM
 * (the map unchanged). */
int gw_map_set(struct gw_map *map, const char *key, void *value, void **ret_old);

/* The value for key, or NULL when absent. */
void *gw_map_get(const struct gw_map *map, const char *key);

/* Calls fn for every key and value, in no particular order. */
void gw_map_each(const struct gw_map *map, void (*fn)(const char *key, void *value, void *ud),
                 void *ud);

size_t gw_map_count(const struct gw_map *map);

/* The hash the map uses (FNV-1a with a final mix: every bit depends on
 * every byte), for tables of their own that key on strings. */
uint64_t gw_map_hash(const char *s);

#endif
