#include "gw_map.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Linear probing over a power-of-two table kept at most 3/4 full. The full
 * 64-bit hash is stored with each slot so that probing compares strings only
 * when the hashes agree. */
struct slot {
    const char *key; /* NULL: empty */
    uint64_t hash;
    void *value;
};

struct gw_map {
    struct slot *slots;
    size_t mask; /* capacity - 1 */
    size_t count;
};

#define MIN_CAPACITY 16

uint64_t gw_map_hash(const char *s)
{
    /* FNV-1a, then a final avalanche so that the low bits used as the
     * index depend on every byte. */
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static size_t capacity_for(size_t count)
{
    size_t cap = MIN_CAPACITY;

    while (cap / 4 * 3 < count) {
        if (cap > SIZE_MAX / 2 / sizeof(struct slot))
            return 0;
        cap *= 2;
    }
    return cap;
}

struct gw_map *gw_map_new(size_t expected)
{
    struct gw_map *map;
    size_t cap = capacity_for(expected);

    if (cap == 0)
        return NULL;
    map = calloc(1, sizeof(*map));
    if (!map)
        return NULL;
    map->slots = calloc(cap, sizeof(*map->slots));
    if (!map->slots) {
        free(map);
        return NULL;
    }
    map->mask = cap - 1;
    return map;
}

void gw_map_free(struct gw_map *map)
{
    if (!map)
        return;
    free(map->slots);
    free(map);
}

/* The slot holding key, or the empty slot where it would go. */
static struct slot *find(struct slot *slots, size_t mask, const char *key, uint64_t hash)
{
    size_t i = (size_t)hash & mask;

    for (;;) {
        struct slot *s = &slots[i];

        if (!s->key || (s->hash == hash && strcmp(s->key, key) == 0))
            return s;
        i = (i + 1) & mask;
    }
}

static int grow(struct gw_map *map)
{
    size_t cap = (map->mask + 1) * 2;
    struct slot *slots;

    if (cap > SIZE_MAX / sizeof(struct slot))
        return -ENOMEM;
    slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i <= map->mask; i++) {
        struct slot *old = &map->slots[i];

        if (old->key)
            *find(slots, cap - 1, old->key, old->hash) = *old;
    }
    free(map->slots);
    map->slots = slots;
    map->mask = cap - 1;
    return 0;
}

/* Adds key -> value where find() said key is not (s). */
static int add(struct gw_map *map, struct slot *s, const char *key, uint64_t hash, void *value)
{
    if ((map->count + 1) > (map->mask + 1) / 4 * 3) {
        if (grow(map) < 0)
            return -ENOMEM;
        s = find(map->slots, map->mask, key, hash);
    }
    s->key = key;
    s->hash = hash;
    s->value = value;
    map->count++;
    return 0;
}

int gw_map_put(struct gw_map *map, const char *key, void *value)
{
    uint64_t hash;
    struct slot *s;

    if (!key || !value)
        return -EINVAL;
    hash = gw_map_hash(key);
    s = find(map->slots, map->mask, key, hash);
    return s->key ? -EEXIST : add(map, s, key, hash, value);
}

int gw_map_set(struct gw_map *map, const char *key, void *value, void **ret_old)
{
    uint64_t hash;
    struct slot *s;

    if (ret_old)
        *ret_old = NULL;
    if (!key || !value)
        return -EINVAL;
    hash = gw_map_hash(key);
    s = find(map->slots, map->mask, key, hash);
    if (!s->key)
        return add(map, s, key, hash, value);
    if (ret_old)
        *ret_old = s->value;
    s->value = value;
    return 0;
}

void gw_map_each(const struct gw_map *map, void (*fn)(const char *key, void *value, void *ud),
                 void *ud)
{
    for (size_t i = 0; map && i <= map->mask; i++)
        if (map->slots[i].key)
            fn(map->slots[i].key, map->slots[i].value, ud);
}

void *gw_map_get(const struct gw_map *map, const char *key)
{
    const struct slot *s;

    if (!map || !key)
        return NULL;
    s = find(map->slots, map->mask, key, gw_map_hash(key));
    return s->key ? s->value : NULL;
}

size_t gw_map_count(const struct gw_map *map) { return map ? map->count : 0; }
