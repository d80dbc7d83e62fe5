/* gw_last (the newest reading per device, kept as journal records) and
 * the two gw_map calls it stands on: set and each. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw_buf.h"
#include "gw_last.h"
#include "gw_map.h"
#include "gw_reading.h"
#include "gw_registry.h"

static void count_entry(const char *key, void *value, void *ud)
{
    size_t *sum = ud;

    assert_non_null(key);
    *sum += (size_t)(uintptr_t)value;
}

static void map_set_adds_and_replaces(void **state)
{
    char keys[100][8];
    struct gw_map *map = gw_map_new(0);
    size_t sum = 0;
    void *old;

    (void)state;
    assert_non_null(map);
    for (uintptr_t i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%u", (unsigned)i);
        assert_int_equal(gw_map_set(map, keys[i], (void *)(i + 1), &old), 0);
        assert_null(old);
    }
    assert_int_equal(gw_map_set(map, keys[7], (void *)1000, &old), 0);
    assert_ptr_equal(old, (void *)8);
    assert_ptr_equal(gw_map_get(map, "k7"), (void *)1000);
    assert_int_equal(gw_map_count(map), 100);
    assert_int_equal(gw_map_put(map, keys[7], (void *)1), -EEXIST);
    assert_int_equal(gw_map_set(map, NULL, (void *)1, &old), -EINVAL);
    assert_int_equal(gw_map_set(map, keys[1], NULL, NULL), -EINVAL);
    gw_map_each(map, count_entry, &sum);
    assert_int_equal(sum, 100 * 101 / 2 - 8 + 1000);
    gw_map_free(map);
}

/* The sample district, with room for a few quarantined devices. */
static struct gw_registry *sample_registry(void)
{
    char *error = NULL;
    struct gw_registry *reg = gw_registry_load(GW_SOURCE_DIR "/config/district/grids.geojson",
                                               GW_SOURCE_DIR "/config/district/devices.csv",
                                               &error);

    if (!reg)
        fail_msg("sample district: %s", error ? error : "?");
    assert_int_equal(gw_registry_enable_quarantine(reg, 8), 0);
    return reg;
}

/* The journal record of a reading of device d with `fields` numbers. */
static void record_of(struct gw_buf *b, const struct gw_device *d, int64_t ts, int fields)
{
    struct gw_reading *r = gw_reading_new(d->id, GW_CHANNEL_TELEMETRY, ts);
    char name[16];

    assert_non_null(r);
    for (int i = 0; i < fields; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        assert_int_equal(gw_reading_add_number(r, name, i + 0.5), 0);
    }
    gw_buf_reset(b);
    assert_int_equal(gw_reading_encode(r, b), 0);
    gw_reading_unref(r);
}

static void last_keeps_the_newest_reading(void **state)
{
    struct gw_registry *reg = sample_registry();
    const struct gw_device *a = gw_registry_device_at(reg, 0);
    const struct gw_device *b = gw_registry_device_at(reg, gw_registry_device_count(reg) - 1);
    const struct gw_device *stranger = gw_registry_quarantine(reg, "stranger-1");
    struct gw_last *last = gw_last_new(reg);
    struct gw_buf rec = GW_BUF_INIT;
    struct gw_reading *r;
    const int sizes[] = { 2, 5, 1, 5, 9, 0 };

    (void)state;
    assert_non_null(last);
    assert_non_null(stranger);
    assert_null(gw_last_get(last, a));
    /* Longer records get a new buffer, shorter ones reuse it: the reading
     * read back is always the last one put, whole; for a device of the
     * file and a quarantined one alike. */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        const struct gw_device *devices[] = { a, stranger };
        for (size_t k = 0; k < 2; k++) {
            const struct gw_device *d = devices[k];
            record_of(&rec, d, 1000 + (int64_t)i, sizes[i]);
            assert_int_equal(gw_last_put(last, d, rec.data, rec.len), 0);
            r = gw_last_get(last, d);
            assert_non_null(r);
            assert_ptr_equal(r->device, d);
            assert_string_equal(r->device_id, d->id);
            assert_true(r->ts_ns == 1000 + (int64_t)i);
            assert_int_equal(r->n_fields, sizes[i]);
            if (sizes[i])
                assert_true(gw_reading_field(r, "f0")->value.u.number == 0.5);
            gw_reading_unref(r);
        }
    }
    assert_null(gw_last_get(last, b));
    record_of(&rec, b, 7, 3);
    assert_int_equal(gw_last_put(last, b, rec.data, rec.len), 0);
    r = gw_last_get(last, b);
    assert_int_equal(r->n_fields, 3);
    gw_reading_unref(r);
    /* A malformed record is refused; the reading before stays. */
    assert_int_equal(gw_last_put(last, b, "\x7f", 1), -EINVAL);
    r = gw_last_get(last, b);
    assert_int_equal(r->n_fields, 3);
    assert_string_equal(r->device_id, b->id);
    gw_reading_unref(r);
    gw_buf_free(&rec);
    gw_last_free(last);
    gw_registry_free(reg);
}

struct race {
    struct gw_last *last;
    const struct gw_device **devices;
    int n_devices;
    int rounds;
    int failures; /* the writer's: cmocka's asserts belong to the main thread */
    int done;
};

static void *writer(void *arg)
{
    struct race *race = arg;
    struct gw_buf rec = GW_BUF_INIT;

    for (int round = 0; round < race->rounds; round++)
        for (int i = 0; i < race->n_devices; i++) {
            struct gw_reading *r = gw_reading_new(race->devices[i]->id, GW_CHANNEL_TELEMETRY, round);
            for (int f = 0; r && f < 1 + (round + i) % 6; f++)
                gw_reading_add_integer(r, (const char *[]){ "a", "b", "c", "d", "e", "f" }[f], f);
            gw_buf_reset(&rec);
            if (!r || gw_reading_encode(r, &rec) < 0 ||
                gw_last_put(race->last, race->devices[i], rec.data, rec.len) < 0)
                race->failures++;
            gw_reading_unref(r);
        }
    gw_buf_free(&rec);
    __atomic_store_n(&race->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* A writer (a rule worker) and a reader (the API) at once: every read is
 * a whole reading. */
static void last_reads_while_written(void **state)
{
    struct gw_registry *reg = sample_registry();
    const struct gw_device *devices[64];
    struct race race = { gw_last_new(reg), devices, 64, 300, 0, 0 };
    pthread_t thread;
    size_t seen = 0;
    bool done = false;

    (void)state;
    for (int i = 0; i < 64; i++) {
        devices[i] = gw_registry_device_at(reg, (size_t)i * 4);
        assert_non_null(devices[i]);
    }
    assert_int_equal(pthread_create(&thread, NULL, writer, &race), 0);
    /* Until the writer is done, and one whole pass after. */
    for (int k = 0; !done || k % 64; k++) {
        struct gw_reading *r;

        if (k % 64 == 0)
            done = __atomic_load_n(&race.done, __ATOMIC_ACQUIRE);
        r = gw_last_get(race.last, devices[k % 64]);
        if (!r)
            continue;
        assert_string_equal(r->device_id, devices[k % 64]->id);
        assert_int_equal(r->n_fields, 1 + (r->ts_ns + k % 64) % 6);
        gw_reading_unref(r);
        seen++;
    }
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(race.failures, 0);
    assert_true(seen >= 64);
    gw_last_free(race.last);
    gw_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(map_set_adds_and_replaces),
        cmocka_unit_test(last_keeps_the_newest_reading),
        cmocka_unit_test(last_reads_while_written),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
