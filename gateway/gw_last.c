#include "gw_last.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_map.h"
#include "gw_reading.h"
#include "gw_registry.h"

struct record {
    uint32_t len, cap;
    unsigned char data[];
};

struct gw_last {
    pthread_mutex_t lock;
    struct gw_map *by_device; /* device id -> struct record */
};

struct gw_last *gw_last_new(size_t expected)
{
    struct gw_last *last = calloc(1, sizeof(*last));

    if (!last)
        return NULL;
    last->by_device = gw_map_new(expected);
    if (!last->by_device || pthread_mutex_init(&last->lock, NULL) != 0) {
        gw_map_free(last->by_device);
        free(last);
        return NULL;
    }
    return last;
}

static void free_record(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
}

void gw_last_free(struct gw_last *last)
{
    if (!last)
        return;
    gw_map_each(last->by_device, free_record, NULL);
    gw_map_free(last->by_device);
    pthread_mutex_destroy(&last->lock);
    free(last);
}

int gw_last_put(struct gw_last *last, const struct gw_device *device, const void *record,
                size_t len)
{
    struct record *rec, *old = NULL;
    int r = 0;

    if (len > UINT32_MAX)
        return -EINVAL;
    pthread_mutex_lock(&last->lock);
    rec = gw_map_get(last->by_device, device->id);
    if (rec && rec->cap >= len) {
        memcpy(rec->data, record, len);
        rec->len = (uint32_t)len;
        goto out;
    }
    /* A new buffer, never a realloc of the old one: if the map cannot take
     * it, the old reading stays whole. */
    rec = malloc(sizeof(*rec) + len);
    if (!rec) {
        r = -ENOMEM;
        goto out;
    }
    rec->len = rec->cap = (uint32_t)len;
    memcpy(rec->data, record, len);
    r = gw_map_set(last->by_device, device->id, rec, (void **)&old);
    if (r < 0) {
        free(rec);
        goto out;
    }
    free(old);
out:
    pthread_mutex_unlock(&last->lock);
    return r;
}

struct gw_reading *gw_last_get(struct gw_last *last, const struct gw_device *device)
{
    struct gw_reading *reading = NULL;
    struct record *rec;

    pthread_mutex_lock(&last->lock);
    rec = gw_map_get(last->by_device, device->id);
    if (rec)
        reading = gw_reading_decode(rec->data, rec->len);
    pthread_mutex_unlock(&last->lock);
    if (reading)
        reading->device = device;
    return reading;
}
