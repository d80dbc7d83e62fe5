#include "gw_last.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_map.h"
#include "gw_reading.h"
#include "gw_registry.h"

/* Devices of the devices file are found by their index in a plain array
 * (8 bytes a device: a map would take three times that); the few
 * quarantined ones (admitted at run time) in a map. Locks are striped by
 * device, so that workers writing different devices seldom meet. */
#define LOCK_STRIPES 64

struct record {
    uint32_t len, cap;
    unsigned char data[];
};

struct gw_last {
    const struct gw_registry *reg;
    struct record **by_index; /* gw_registry_device_count() of them */
    size_t n;
    struct gw_map *quarantined; /* device id -> struct record, under locks[0] */
    pthread_mutex_t locks[LOCK_STRIPES];
};

struct gw_last *gw_last_new(const struct gw_registry *reg)
{
    struct gw_last *last = calloc(1, sizeof(*last));
    size_t i;

    if (!last)
        return NULL;
    last->reg = reg;
    last->n = gw_registry_device_count(reg);
    last->by_index = calloc(last->n ? last->n : 1, sizeof(*last->by_index));
    last->quarantined = gw_map_new(0);
    for (i = 0; i < LOCK_STRIPES; i++)
        if (pthread_mutex_init(&last->locks[i], NULL) != 0)
            break;
    if (!last->by_index || !last->quarantined || i < LOCK_STRIPES) {
        while (i > 0)
            pthread_mutex_destroy(&last->locks[--i]);
        gw_map_free(last->quarantined);
        free(last->by_index);
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
    for (size_t i = 0; i < last->n; i++)
        free(last->by_index[i]);
    gw_map_each(last->quarantined, free_record, NULL);
    gw_map_free(last->quarantined);
    for (size_t i = 0; i < LOCK_STRIPES; i++)
        pthread_mutex_destroy(&last->locks[i]);
    free(last->by_index);
    free(last);
}

/* The device's index, -1 for a quarantined one; its lock taken. */
static long lock_device(struct gw_last *last, const struct gw_device *device)
{
    long index = gw_registry_device_index(last->reg, device);

    pthread_mutex_lock(&last->locks[index >= 0 ? (size_t)index % LOCK_STRIPES : 0]);
    return index;
}

static void unlock_device(struct gw_last *last, long index)
{
    pthread_mutex_unlock(&last->locks[index >= 0 ? (size_t)index % LOCK_STRIPES : 0]);
}

int gw_last_put(struct gw_last *last, const struct gw_device *device, const void *record,
                size_t len)
{
    long index;
    struct record *rec, *old = NULL;
    const char *id;
    size_t id_len;
    int r = 0;

    /* Kept without the device id: the key is the device. */
    if (len > UINT32_MAX || gw_reading_record_device(record, len, &id, &id_len) < 0)
        return -EINVAL;
    len -= id_len;
    index = lock_device(last, device);
    rec = index >= 0 ? last->by_index[index] : gw_map_get(last->quarantined, device->id);
    if (rec && rec->cap >= len) {
        rec->len = (uint32_t)gw_reading_record_without_device(record, len + id_len, rec->data);
        goto out;
    }
    /* A new buffer, never a realloc of the old one: if it cannot be
     * stored, the old reading stays whole. */
    rec = malloc(sizeof(*rec) + len);
    if (!rec) {
        r = -ENOMEM;
        goto out;
    }
    rec->cap = (uint32_t)len;
    rec->len = (uint32_t)gw_reading_record_without_device(record, len + id_len, rec->data);
    if (index >= 0) {
        old = last->by_index[index];
        last->by_index[index] = rec;
    } else {
        r = gw_map_set(last->quarantined, device->id, rec, (void **)&old);
        if (r < 0)
            free(rec);
    }
    free(old);
out:
    unlock_device(last, index);
    return r;
}

struct gw_reading *gw_last_get(struct gw_last *last, const struct gw_device *device)
{
    struct gw_reading *reading = NULL;
    struct record *rec;
    long index = lock_device(last, device);

    rec = index >= 0 ? last->by_index[index] : gw_map_get(last->quarantined, device->id);
    if (rec)
        reading = gw_reading_decode_as(rec->data, rec->len, device->id);
    unlock_device(last, index);
    if (reading)
        reading->device = device;
    return reading;
}
