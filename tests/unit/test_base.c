/* Unit tests for the gateway's base: buffers, the bounded queue, readings,
 * the domain vocabulary and log rate limiting. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_buf.h"
#include "gw_domain.h"
#include "gw_duration.h"
#include "gw_fs.h"
#include "gw_log.h"
#include "gw_queue.h"
#include "gw_reading.h"

static void buf_grows_and_truncates(void **state)
{
    struct gw_buf b = GW_BUF_INIT;

    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(gw_buf_printf(&b, "%d,", i), 0);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    assert_int_equal(b.data[b.len], '\0');
    size_t mark = b.len;
    assert_int_equal(gw_buf_puts(&b, "tail"), 0);
    gw_buf_truncate(&b, mark);
    assert_int_equal(b.len, mark);
    assert_int_equal(b.data[mark], '\0');
    gw_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    gw_buf_free(&b);
    gw_buf_free(&b); /* twice is fine */
}

static void buf_reads_whole_files(void **state)
{
    char dir[] = "/tmp/gw-test-base.XXXXXX";
    char path[64];
    struct gw_buf b = GW_BUF_INIT;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/empty", dir);
    f = fopen(path, "w");
    fclose(f);
    assert_int_equal(gw_buf_read_file(&b, path, 100), 0);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");

    snprintf(path, sizeof(path), "%s/big", dir);
    f = fopen(path, "w");
    for (int i = 0; i < 10000; i++)
        fprintf(f, "%04d\n", i % 10000);
    fclose(f);
    assert_int_equal(gw_buf_read_file(&b, path, 50000), 0);
    assert_int_equal(b.len, 50000);
    assert_int_equal(strncmp(b.data + 49995, "9999\n", 5), 0);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(gw_buf_read_file(&b, path, 49999), -EFBIG);
    assert_null(b.data); /* left empty on failure */
    assert_int_equal(gw_buf_read_file(&b, dir, 100), -EISDIR);
    unlink(path);
    assert_int_equal(gw_buf_read_file(&b, path, 100), -ENOENT);
    snprintf(path, sizeof(path), "%s/empty", dir);
    unlink(path);
    rmdir(dir);
    gw_buf_free(&b);
}

static void queue_is_fifo_and_bounded(void **state)
{
    struct gw_queue *q = gw_queue_new(3);
    int items[3] = { 1, 2, 3 };

    (void)state;
    assert_null(gw_queue_new(0));
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_queue_push(q, &items[i]), 0);
    assert_int_equal(gw_queue_depth(q), 3);
    assert_ptr_equal(gw_queue_pop(q, 0), &items[0]);
    assert_ptr_equal(gw_queue_pop(q, 0), &items[1]);
    assert_ptr_equal(gw_queue_pop(q, 0), &items[2]);
    assert_null(gw_queue_pop(q, 10)); /* times out empty */
    gw_queue_free(q, NULL);
}

struct producer {
    struct gw_queue *q;
    int pushed;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    static int item;

    while (gw_queue_push(p->q, &item) == 0)
        p->pushed++;
    return NULL;
}

static void queue_blocks_producer_until_closed(void **state)
{
    struct producer p = { .q = gw_queue_new(4) };
    pthread_t thread;

    (void)state;
    pthread_create(&thread, NULL, produce, &p);
    /* The producer fills the queue and then must wait, not grow it. */
    while (gw_queue_depth(p.q) < 4)
        usleep(1000);
    usleep(20000);
    assert_int_equal(gw_queue_depth(p.q), 4);
    assert_int_equal(p.pushed, 4);
    gw_queue_close(p.q);
    pthread_join(thread, NULL);
    assert_int_equal(gw_queue_push(p.q, &p), -ESHUTDOWN);
    /* Closed queues still drain, then report empty. */
    for (int i = 0; i < 4; i++)
        assert_non_null(gw_queue_pop(p.q, -1));
    assert_null(gw_queue_pop(p.q, -1));
    gw_queue_free(p.q, NULL);
}

static int freed;
static void count_free(void *item)
{
    (void)item;
    freed++;
}

static void queue_free_releases_leftovers(void **state)
{
    struct gw_queue *q = gw_queue_new(8);
    int x;

    (void)state;
    freed = 0;
    gw_queue_push(q, &x);
    gw_queue_push(q, &x);
    gw_queue_free(q, count_free);
    assert_int_equal(freed, 2);
}

static void reading_keeps_types_and_last_value(void **state)
{
    struct gw_reading *r = gw_reading_new("smoke-1", GW_CHANNEL_TELEMETRY, 42);
    const struct gw_field *f;

    (void)state;
    assert_non_null(r);
    assert_int_equal(gw_reading_add_number(r, "smoke", 0.5), 0);
    assert_int_equal(gw_reading_add_bool(r, "alarm", true), 0);
    assert_int_equal(gw_reading_add_string(r, "state", "ok"), 0);
    assert_int_equal(gw_reading_add_integer(r, "seq", 7), 0);
    assert_int_equal(gw_reading_add_string(r, "state", "alarm"), 0); /* repeat replaces */
    assert_int_equal(r->n_fields, 4);
    f = gw_reading_field(r, "state");
    assert_non_null(f);
    assert_int_equal(f->value.type, GW_VALUE_STRING);
    assert_string_equal(f->value.u.string, "alarm");
    f = gw_reading_field(r, "smoke");
    assert_int_equal(f->value.type, GW_VALUE_NUMBER);
    assert_true(f->value.u.number == 0.5);
    assert_null(gw_reading_field(r, "missing"));
    assert_string_equal(gw_channel_name(r->channel), "telemetry");
    gw_reading_ref(r);
    gw_reading_unref(r);
    assert_string_equal(r->device_id, "smoke-1"); /* still alive: one ref left */
    gw_reading_unref(r);
    gw_reading_unref(NULL);
}

static void reading_record_round_trips(void **state)
{
    struct gw_reading *r = gw_reading_new("cam-0007", GW_CHANNEL_EVENT, 1764300000123456789LL);
    struct gw_reading *back;
    struct gw_buf rec = GW_BUF_INIT;
    const struct gw_field *f;

    (void)state;
    r->ts_from_device = true;
    gw_reading_add_number(r, "density", 0.1 + 0.2); /* not exactly representable in text */
    gw_reading_add_integer(r, "seq", -42);
    gw_reading_add_bool(r, "online", true);
    gw_reading_add_string(r, "kind", "VCA_HIGH_DENSITY 区域内人员聚集");
    assert_int_equal(gw_reading_encode(r, &rec), 0);

    const char *id;
    size_t id_len;
    assert_int_equal(gw_reading_record_device(rec.data, rec.len, &id, &id_len), 0);
    assert_int_equal(id_len, 8);
    assert_memory_equal(id, "cam-0007", 8);
    assert_int_equal(gw_reading_record_device(rec.data, 12, &id, &id_len), -EINVAL);

    back = gw_reading_decode(rec.data, rec.len);
    assert_non_null(back);
    assert_string_equal(back->device_id, "cam-0007");
    assert_int_equal(back->channel, GW_CHANNEL_EVENT);
    assert_true(back->ts_ns == 1764300000123456789LL);
    assert_true(back->ts_from_device);
    assert_null(back->device);
    assert_int_equal(back->n_fields, 4);
    f = gw_reading_field(back, "density");
    assert_true(f->value.type == GW_VALUE_NUMBER && f->value.u.number == 0.1 + 0.2);
    f = gw_reading_field(back, "seq");
    assert_true(f->value.type == GW_VALUE_INTEGER && f->value.u.integer == -42);
    f = gw_reading_field(back, "online");
    assert_true(f->value.type == GW_VALUE_BOOL && f->value.u.boolean);
    f = gw_reading_field(back, "kind");
    assert_string_equal(f->value.u.string, "VCA_HIGH_DENSITY 区域内人员聚集");
    gw_reading_unref(back);

    /* Kept without its device id, read back as another's. */
    {
        char out[256];
        ssize_t n = gw_reading_record_without_device(rec.data, rec.len, out);

        assert_int_equal(n, (ssize_t)rec.len - 8);
        assert_int_equal(gw_reading_record_device(out, (size_t)n, &id, &id_len), 0);
        assert_int_equal(id_len, 0);
        back = gw_reading_decode_as(out, (size_t)n, "cam-0008");
        assert_non_null(back);
        assert_string_equal(back->device_id, "cam-0008");
        assert_true(back->ts_ns == 1764300000123456789LL && back->ts_from_device);
        assert_int_equal(back->n_fields, 4);
        assert_string_equal(gw_reading_field(back, "kind")->value.u.string,
                            "VCA_HIGH_DENSITY 区域内人员聚集");
        gw_reading_unref(back);
        assert_int_equal(gw_reading_record_without_device(rec.data, 12, out), -EINVAL);
    }

    /* Every truncation and a trailing byte are refused, never misread. */
    for (size_t n = 0; n < rec.len; n++)
        assert_null(gw_reading_decode(rec.data, n));
    gw_buf_putc(&rec, 0);
    assert_null(gw_reading_decode(rec.data, rec.len));
    rec.data[0] = 99; /* unknown version */
    assert_null(gw_reading_decode(rec.data, rec.len - 1));
    gw_buf_free(&rec);
    gw_reading_unref(r);
}

static void durations_parse_as_people_write_them(void **state)
{
    struct gw_duration_table *t;
    char *error = NULL;
    int64_t ns;

    (void)state;
    assert_int_equal(gw_duration_parse("90s", &ns), 0);
    assert_true(ns == 90000000000LL);
    assert_int_equal(gw_duration_parse("15m", &ns), 0);
    assert_true(ns == 900000000000LL);
    assert_int_equal(gw_duration_parse("1.5h", &ns), 0);
    assert_true(ns == 5400000000000LL);
    assert_int_equal(gw_duration_parse("2d", &ns), 0);
    assert_true(ns == 172800000000000LL);
    assert_int_equal(gw_duration_parse("250ms", &ns), 0);
    assert_true(ns == 250000000LL);
    assert_int_equal(gw_duration_parse("30", &ns), 0);
    assert_true(ns == 30000000000LL);
    static const char *const bad[] = { "", "m", "5x", "-5s", "+5s", " 5s", "5 s", "nan", "inf",
                                       "5sm", "1e400" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(gw_duration_parse(bad[i], &ns), 0);
    assert_int_equal(gw_duration_parse("200000d", &ns), -ERANGE);

    t = gw_duration_table_parse("smoke=12h, camera = 5m,default=1h", &error);
    assert_non_null(t);
    assert_true(gw_duration_table_get(t, "smoke") == 12 * 3600000000000LL);
    assert_true(gw_duration_table_get(t, "camera") == 300000000000LL);
    assert_true(gw_duration_table_get(t, "door") == 3600000000000LL);
    gw_duration_table_free(t);
    assert_null(gw_duration_table_parse("smoke=12h", &error));
    assert_non_null(strstr(error, "no default"));
    free(error);
    assert_null(gw_duration_table_parse("smoke=12x,default=1h", &error));
    assert_string_equal(error, "\"smoke=12x\": not a positive duration (like 90s, 15m, 12h, 1d)");
    free(error);
    assert_null(gw_duration_table_parse("smoke=1h,smoke=2h,default=1h", &error));
    assert_non_null(strstr(error, "given twice"));
    free(error);
    assert_null(gw_duration_table_parse("=1h,default=1h", &error));
    free(error);
}

static void domain_names_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < GW_ROLE_COUNT; i++)
        assert_int_equal(gw_role_parse(gw_role_name((enum gw_role)i)), i);
    for (int i = 0; i < GW_GRID_TYPE_COUNT; i++)
        assert_int_equal(gw_grid_type_parse(gw_grid_type_name((enum gw_grid_type)i)), i);
    for (int i = 0; i < GW_GRID_LEVEL_COUNT; i++)
        assert_int_equal(gw_grid_level_parse(gw_grid_level_name((enum gw_grid_level)i)), i);
    for (int i = 0; i < GW_SEVERITY_COUNT; i++)
        assert_int_equal(gw_severity_parse(gw_severity_name((enum gw_severity)i)), i);
    for (int i = 0; i < GW_CASE_STATE_COUNT; i++)
        assert_int_equal(gw_case_state_parse(gw_case_state_name((enum gw_case_state)i)), i);
    assert_string_equal(gw_role_name(GW_ROLE_PARTY_SECRETARY), "party_secretary");
    assert_string_equal(gw_role_label_zh(GW_ROLE_FIREFIGHTER), "网格消防员");
    assert_int_equal(gw_role_parse("chief"), -EINVAL);
    assert_int_equal(gw_severity_parse(NULL), -EINVAL);
    assert_string_equal(gw_severity_name((enum gw_severity)99), "unknown");
}

static void log_limit_refuses_bursts_and_counts(void **state)
{
    struct gw_log_limit limit = GW_LOG_LIMIT_INIT(0.001, 3.0);
    uint64_t suppressed = 99;
    int passed = 0;

    (void)state;
    for (int i = 0; i < 10; i++)
        passed += gw_log_limit_take(&limit, &suppressed);
    assert_int_equal(passed, 3);
    assert_int_equal(limit.suppressed, 7);
    assert_int_equal(gw_log_parse_level("debug", &(enum gw_log_level){ 0 }), 0);
    assert_int_equal(gw_log_parse_level("loud", &(enum gw_log_level){ 0 }), -EINVAL);
}

/* A fresh installation's var/: every missing directory is made, an
 * existing one is fine, a file in the way is an error. */
static void mkdir_makes_missing_directories(void **state)
{
    char root[] = "/tmp/gw_test_fs.XXXXXX", path[256];
    struct stat st;

    (void)state;
    assert_non_null(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/a/b/c", root);
    assert_int_equal(gw_mkdir_p(path), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(gw_mkdir_p(path), 0);
    snprintf(path, sizeof(path), "%s/d/e/file.db", root);
    assert_int_equal(gw_mkdir_parent(path), 0);
    snprintf(path, sizeof(path), "%s/d/e", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(gw_mkdir_parent("file-here.db"), 0);
    snprintf(path, sizeof(path), "%s/d/e/plain", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/d/e/plain/x.db", root);
    assert_int_equal(gw_mkdir_parent(path), -ENOTDIR);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_grows_and_truncates),
        cmocka_unit_test(buf_reads_whole_files),
        cmocka_unit_test(queue_is_fifo_and_bounded),
        cmocka_unit_test(queue_blocks_producer_until_closed),
        cmocka_unit_test(queue_free_releases_leftovers),
        cmocka_unit_test(reading_keeps_types_and_last_value),
        cmocka_unit_test(reading_record_round_trips),
        cmocka_unit_test(durations_parse_as_people_write_them),
        cmocka_unit_test(domain_names_round_trip),
        cmocka_unit_test(log_limit_refuses_bursts_and_counts),
        cmocka_unit_test(mkdir_makes_missing_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
