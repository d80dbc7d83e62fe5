/* Unit tests for the on-disk journal: round trips across segments,
 * consumer positions, deletion, torn tails, full policies, shutdown,
 * concurrency, damaged position files, a full file system and a real
 * kill -9 of an appending process. Every test works in its own temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_journal.h"
#include "gw_log.h"

#define SEG 4096u
#define ROOM (SEG - 16u) /* payload room of a 4 KiB segment */

/* ---- helpers ------------------------------------------------------------- */

static char *make_dir(void)
{
    char tmpl[] = "/tmp/gw-journal-test.XXXXXX";

    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Each test gets a fresh temp dir as its state; the teardown removes it
 * even when the test failed half-way. */
static int dir_setup(void **state)
{
    *state = make_dir();
    return 0;
}

static int dir_teardown(void **state)
{
    nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

static const char *const one_consumer[] = {"a"};
static const char *const two_consumers[] = {"a", "b"};

static struct gw_journal_options options(const char *dir, uint64_t seg, uint64_t max,
                                         enum gw_journal_full_policy policy,
                                         const char *const *consumers, size_t n)
{
    struct gw_journal_options o = {
        .dir = dir,
        .max_bytes = max,
        .segment_bytes = seg,
        .fsync_interval_ms = 10,
        .fsync_bytes = 1 << 20,
        .full_policy = policy,
        .consumers = consumers,
        .n_consumers = n,
    };
    return o;
}

static struct gw_journal *open_ok(const struct gw_journal_options *o)
{
    char *error = NULL;
    struct gw_journal *j = gw_journal_open(o, &error);

    if (!j)
        fail_msg("gw_journal_open: %s", error ? error : "(no message)");
    return j;
}

/* Payloads say who they are: the first 8 bytes hold the key, the length
 * follows from it, the rest is a pattern of it. Anything else is garbage. */
static size_t len_for(uint64_t key)
{
    if (key % 97 == 0)
        return ROOM;
    return 8 + (size_t)((key * 7919) % 1500);
}

static void fill(uint8_t *buf, size_t len, uint64_t key)
{
    memcpy(buf, &key, len < 8 ? len : 8);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(key * 131 + i * 7 + (key >> 8));
}

static bool valid(const void *data, size_t len, uint64_t *ret_key)
{
    const uint8_t *p = data;
    uint64_t key;

    if (len < 8)
        return false;
    memcpy(&key, p, 8);
    if (len != len_for(key))
        return false;
    for (size_t i = 8; i < len; i++)
        if (p[i] != (uint8_t)(key * 131 + i * 7 + (key >> 8)))
            return false;
    *ret_key = key;
    return true;
}

static uint64_t append_key(struct gw_journal *j, uint64_t key)
{
    uint8_t buf[ROOM];
    size_t len = len_for(key);
    uint64_t seq = 0;

    fill(buf, len, key);
    assert_int_equal(gw_journal_append(j, buf, len, &seq), 0);
    return seq;
}

/* Reads one record without waiting and returns its key; checks its seq. */
static uint64_t read_key(struct gw_journal_cursor *c, uint64_t want_seq)
{
    const void *data;
    size_t len;
    uint64_t seq, key = 0;

    assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
    assert_int_equal(seq, want_seq);
    assert_true(valid(data, len, &key));
    return key;
}

static void read_none(struct gw_journal_cursor *c)
{
    const void *data;
    size_t len;
    uint64_t seq;

    assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), -EAGAIN);
}

static uint32_t ref_crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t rec_bytes(size_t len)
{
    return 16 + ((len + 7) & ~(size_t)7);
}

static void seg_path(char *out, size_t size, const char *dir, uint64_t first_seq)
{
    snprintf(out, size, "%s/%020llu.seg", dir, (unsigned long long)first_seq);
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);

        if (len > 4 && strcmp(de->d_name + len - 4, ".seg") == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void patch(const char *path, off_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Waits up to ten seconds for a thread: a hang fails instead of blocking. */
static void join_bounded(pthread_t t)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    assert_int_equal(pthread_timedjoin_np(t, NULL, &deadline), 0);
}

/* Runs open with stderr captured, returns what was logged (malloc'd). */
static char *open_capturing(const struct gw_journal_options *o, struct gw_journal **ret_j)
{
    char path[] = "/tmp/gw-journal-log.XXXXXX";
    int fd = mkstemp(path), saved;
    char *text = calloc(1, 65536);
    ssize_t n;

    assert_true(fd >= 0);
    assert_non_null(text);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    *ret_j = open_ok(o);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, text, 65535, 0);
    assert_true(n >= 0);
    close(fd);
    unlink(path);
    return text;
}

/* ---- tests --------------------------------------------------------------- */

static void crc_and_format_are_as_documented(void **state)
{
    char *dir = *state, path[256];
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal *j;
    uint8_t rec[64], payload[20];
    uint32_t len, crc;
    uint64_t seq;
    int fd;

    assert_int_equal(ref_crc32c(0, "123456789", 9), 0xE3069283u);
    j = open_ok(&o);
    fill(payload, sizeof(payload), 5);
    assert_int_equal(gw_journal_append(j, payload, sizeof(payload), &seq), 0);
    assert_int_equal(seq, 1);
    gw_journal_close(j);

    seg_path(path, sizeof(path), dir, 1);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, rec, sizeof(rec), 0), (ssize_t)sizeof(rec));
    close(fd);
    memcpy(&len, rec, 4);
    memcpy(&crc, rec + 4, 4);
    memcpy(&seq, rec + 8, 8);
    assert_int_equal(len, sizeof(payload));
    assert_int_equal(seq, 1);
    assert_memory_equal(rec + 16, payload, sizeof(payload));
    /* CRC32C over the length field and the payload. */
    assert_int_equal(crc, ref_crc32c(ref_crc32c(0, &len, 4), payload, sizeof(payload)));
    for (size_t i = 16 + sizeof(payload); i < sizeof(rec); i++)
        assert_int_equal(rec[i], 0); /* padding and the free space are zeros */
}

static void round_trip_across_segments(void **state)
{
    char *dir = *state;
    struct gw_journal_options o = options(dir, SEG, 64 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    const unsigned n = 1500;
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    const void *data;
    size_t len;
    uint64_t seq;

    j = open_ok(&o);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(append_key(j, i), i + 1);
    gw_journal_stats(j, &st);
    assert_int_equal(st.appended, n);
    assert_int_equal(st.next_seq, n + 1);
    assert_true(st.segments > 100);
    assert_int_equal(st.segments, count_segments(dir));
    assert_int_equal(st.bytes, st.segments * SEG);

    c = gw_journal_cursor_open(j, "a");
    assert_non_null(c);
    assert_int_equal(gw_journal_cursor_lag(c), n);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(read_key(c, i + 1), i);
    read_none(c);
    assert_int_equal(gw_journal_read(c, 30, &data, &len, &seq), -EAGAIN);
    gw_journal_cursor_free(c);
    gw_journal_close(j);

    /* Preallocated zeros after the last record read as the end, not as a
     * torn record; nothing was committed, so everything comes again. */
    j = open_ok(&o);
    gw_journal_stats(j, &st);
    assert_int_equal(st.torn_bytes_cut, 0);
    assert_int_equal(st.next_seq, n + 1);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(read_key(c, i + 1), i);
    read_none(c);
    assert_int_equal(append_key(j, 7777), n + 1);
    assert_int_equal(read_key(c, n + 1), 7777);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

static void sizes_are_checked(void **state)
{
    char *dir = *state;
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    static uint8_t big[1 << 20];
    struct gw_journal *j;
    uint64_t seq = 99;

    j = open_ok(&o);
    assert_int_equal(gw_journal_append(j, big, ROOM + 1, &seq), -EMSGSIZE);
    assert_int_equal(gw_journal_append(j, big, sizeof(big), &seq), -EMSGSIZE);
    assert_int_equal(gw_journal_append(j, big, 0, &seq), -EINVAL);
    assert_int_equal(seq, 99); /* untouched on failure */
    assert_int_equal(gw_journal_append(j, big, ROOM, &seq), 0);
    assert_int_equal(gw_journal_append(j, big, 1, &seq), 0);
    assert_int_equal(seq, 2);
    gw_journal_close(j);
}

static void bad_setups_are_refused(void **state)
{
    char *dir = *state, file[256];
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, two_consumers, 2);
    const char *const dup_names[] = {"a", "a"};
    const char *const bad_name[] = {"a/b"};
    struct gw_journal *j, *other;
    char *error = NULL;
    FILE *f;

    /* The directory is a file: the message names it. */
    snprintf(file, sizeof(file), "%s/plain", dir);
    f = fopen(file, "w");
    fclose(f);
    o.dir = file;
    assert_null(gw_journal_open(&o, &error));
    assert_non_null(error);
    assert_non_null(strstr(error, file));
    free(error);
    error = NULL;

    o.dir = dir;
    o.max_bytes = SEG;
    assert_null(gw_journal_open(&o, &error));
    assert_non_null(strstr(error, "two segments"));
    free(error);
    error = NULL;
    o.max_bytes = 1 << 20;

    o.consumers = dup_names;
    assert_null(gw_journal_open(&o, &error));
    free(error);
    error = NULL;
    o.consumers = bad_name;
    o.n_consumers = 1;
    assert_null(gw_journal_open(&o, &error));
    free(error);
    error = NULL;
    o.consumers = two_consumers;
    o.n_consumers = 2;

    j = open_ok(&o);
    /* One process at a time. */
    assert_null(other = gw_journal_open(&o, &error));
    assert_non_null(strstr(error, "in use"));
    free(error);
    /* Cursors: only configured names, one per consumer. */
    assert_null(gw_journal_cursor_open(j, "nobody"));
    struct gw_journal_cursor *c = gw_journal_cursor_open(j, "a");
    assert_non_null(c);
    assert_null(gw_journal_cursor_open(j, "a"));
    gw_journal_cursor_free(c);
    c = gw_journal_cursor_open(j, "a");
    assert_non_null(c);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
    gw_journal_close(NULL);
}

static void consumers_keep_their_own_positions(void **state)
{
    char *dir = *state;
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, two_consumers, 2);
    struct gw_journal_cursor *a, *b;
    struct gw_journal *j;

    j = open_ok(&o);
    for (unsigned i = 0; i < 100; i++)
        append_key(j, i);
    a = gw_journal_cursor_open(j, "a");
    b = gw_journal_cursor_open(j, "b");
    for (unsigned i = 0; i < 60; i++)
        read_key(a, i + 1);
    for (unsigned i = 0; i < 30; i++)
        read_key(b, i + 1);
    assert_int_equal(gw_journal_commit(a, 60), 0);
    assert_int_equal(gw_journal_commit(b, 10), 0);
    assert_int_equal(gw_journal_commit(b, 5), 0); /* going back is a no-op */
    assert_int_equal(gw_journal_commit(b, 101), -EINVAL);
    assert_int_equal(gw_journal_cursor_lag(a), 40);
    assert_int_equal(gw_journal_cursor_lag(b), 90);
    /* Each goes on from where it is, not where the other is. */
    assert_int_equal(read_key(a, 61), 60);
    assert_int_equal(read_key(b, 31), 30);
    gw_journal_cursor_free(a);
    gw_journal_cursor_free(b);
    gw_journal_close(j);

    /* After a restart each resumes after its own committed seq: what was
     * read but not committed comes again (at least once). */
    j = open_ok(&o);
    a = gw_journal_cursor_open(j, "a");
    b = gw_journal_cursor_open(j, "b");
    assert_int_equal(read_key(a, 61), 60);
    assert_int_equal(read_key(b, 11), 10);
    assert_int_equal(gw_journal_cursor_lag(b), 90);
    /* Appends go on with the next seq. */
    assert_int_equal(append_key(j, 1000), 101);
    gw_journal_cursor_free(a);
    gw_journal_cursor_free(b);
    gw_journal_close(j);
}

static void segments_go_once_every_consumer_passed(void **state)
{
    char *dir = *state, path[256];
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, two_consumers, 2);
    struct gw_journal_stats st;
    struct gw_journal_cursor *a, *b;
    struct gw_journal *j;
    uint8_t buf[500] = {0};
    uint64_t segments;

    j = open_ok(&o);
    for (unsigned i = 0; i < 200; i++)
        assert_int_equal(gw_journal_append(j, buf, sizeof(buf), NULL), 0);
    gw_journal_stats(j, &st);
    segments = st.segments;
    assert_int_equal(segments, (200 + 6) / 7); /* 7 records of 520 bytes fit in 4 KiB */
    a = gw_journal_cursor_open(j, "a");
    b = gw_journal_cursor_open(j, "b");

    assert_int_equal(gw_journal_commit(a, 200), 0);
    gw_journal_stats(j, &st);
    assert_int_equal(st.segments, segments); /* b still needs them */

    assert_int_equal(gw_journal_commit(b, 100), 0);
    gw_journal_stats(j, &st);
    /* Segments up to record 98 (14 of 7) are gone; the one holding 99..105 stays. */
    assert_int_equal(st.segments, segments - 14);
    seg_path(path, sizeof(path), dir, 99);
    assert_int_equal(access(path, F_OK), 0);
    seg_path(path, sizeof(path), dir, 92);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_segments(dir), (int)st.segments);
    /* b's cursor was before them; it skips to what is left of its range. */
    const void *data;
    size_t len;
    uint64_t seq;
    assert_int_equal(gw_journal_read(b, 0, &data, &len, &seq), 0);
    assert_int_equal(seq, 99);

    assert_int_equal(gw_journal_commit(b, 200), 0);
    gw_journal_stats(j, &st);
    assert_int_equal(st.segments, 1); /* the active one stays */
    assert_int_equal(count_segments(dir), 1);
    gw_journal_cursor_free(a);
    gw_journal_cursor_free(b);
    gw_journal_close(j);

    j = open_ok(&o);
    a = gw_journal_cursor_open(j, "a");
    read_none(a);
    assert_int_equal(gw_journal_append(j, buf, sizeof(buf), &seq), 0);
    assert_int_equal(seq, 201);
    gw_journal_cursor_free(a);
    gw_journal_close(j);
}

/* Writes n records of keys 0..n-1 into a fresh journal with 64 KiB
 * segments (all in the first one) and returns the offset of record n. */
static uint64_t write_records(const struct gw_journal_options *o, unsigned n)
{
    struct gw_journal *j = open_ok(o);
    uint64_t off = 0;

    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(append_key(j, 100 + i), i + 1);
        if (i + 1 < n)
            off += rec_bytes(len_for(100 + i));
    }
    gw_journal_close(j);
    return off;
}

static void torn_tail_is_cut(void **state)
{
    char *dir = *state, path[256];
    struct gw_journal_options o = options(dir, 1 << 20, 4 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    uint8_t garbage[300];
    uint64_t last;

    last = write_records(&o, 20);
    seg_path(path, sizeof(path), dir, 1);
    /* The last record loses its end, and garbage follows it. */
    memset(garbage, 0xA5, sizeof(garbage));
    patch(path, (off_t)(last + rec_bytes(len_for(119)) - 16), garbage, 10);
    patch(path, (off_t)(last + rec_bytes(len_for(119))), garbage, sizeof(garbage));

    j = open_ok(&o);
    gw_journal_stats(j, &st);
    assert_true(st.torn_bytes_cut >= sizeof(garbage));
    assert_int_equal(st.next_seq, 20);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < 19; i++)
        assert_int_equal(read_key(c, i + 1), 100 + i);
    read_none(c);
    /* New appends take the seq of the cut record. */
    assert_int_equal(append_key(j, 555), 20);
    assert_int_equal(read_key(c, 20), 555);
    gw_journal_cursor_free(c);
    gw_journal_close(j);

    /* The cut was made for good. */
    j = open_ok(&o);
    gw_journal_stats(j, &st);
    assert_int_equal(st.torn_bytes_cut, 0);
    assert_int_equal(st.next_seq, 21);
    gw_journal_close(j);
}

static void truncated_file_is_cut(void **state)
{
    char *dir = *state, path[256];
    struct gw_journal_options o = options(dir, 1 << 20, 4 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    uint64_t last;

    last = write_records(&o, 10);
    seg_path(path, sizeof(path), dir, 1);
    /* The file ends in the middle of the last record. */
    assert_int_equal(truncate(path, (off_t)(last + 30)), 0);

    j = open_ok(&o);
    gw_journal_stats(j, &st);
    /* Up to its last non-zero byte: the header's seq is mostly zeros. */
    assert_true(st.torn_bytes_cut > 0 && st.torn_bytes_cut <= 30);
    assert_int_equal(st.next_seq, 10);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < 9; i++)
        assert_int_equal(read_key(c, i + 1), 100 + i);
    read_none(c);
    /* No room left in the short file: the next record opens a segment. */
    assert_int_equal(append_key(j, 42), 10);
    assert_int_equal(append_key(j, 43), 11);
    assert_int_equal(read_key(c, 10), 42);
    assert_int_equal(read_key(c, 11), 43);
    gw_journal_cursor_free(c);
    gw_journal_close(j);

    j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < 9; i++)
        assert_int_equal(read_key(c, i + 1), 100 + i);
    assert_int_equal(read_key(c, 10), 42);
    assert_int_equal(read_key(c, 11), 43);
    read_none(c);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

static void bad_checksum_mid_segment_cuts_from_there(void **state)
{
    char *dir = *state, path[256];
    struct gw_journal_options o = options(dir, 1 << 20, 4 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    uint8_t flip = 0xFF;
    uint64_t off = 0;

    write_records(&o, 30);
    for (unsigned i = 0; i < 9; i++)
        off += rec_bytes(len_for(100 + i));
    seg_path(path, sizeof(path), dir, 1);
    patch(path, (off_t)(off + 16 + 3), &flip, 1); /* a payload byte of record 10 */

    j = open_ok(&o);
    gw_journal_stats(j, &st);
    assert_true(st.torn_bytes_cut > 0);
    assert_int_equal(st.next_seq, 10);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < 9; i++)
        assert_int_equal(read_key(c, i + 1), 100 + i);
    read_none(c);
    assert_int_equal(append_key(j, 9), 10);
    assert_int_equal(read_key(c, 10), 9);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

static void damage_in_an_older_segment_leaves_a_gap(void **state)
{
    char *dir = *state, path[256];
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    uint8_t buf[1000], flip = 0x01;

    memset(buf, 0x11, sizeof(buf));
    j = open_ok(&o);
    for (unsigned i = 0; i < 12; i++) /* 4 records of 1016 bytes per segment */
        assert_int_equal(gw_journal_append(j, buf, sizeof(buf), NULL), 0);
    gw_journal_close(j);
    /* The header of record 2 of the first segment goes bad. */
    seg_path(path, sizeof(path), dir, 1);
    patch(path, 1016 + 9, &flip, 1);

    j = open_ok(&o);
    gw_journal_stats(j, &st);
    assert_true(st.torn_bytes_cut >= 3 * 1016);
    assert_int_equal(st.next_seq, 13);
    c = gw_journal_cursor_open(j, "a");
    const void *data;
    size_t len;
    uint64_t seq;
    assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
    assert_int_equal(seq, 1);
    /* 2..4 are lost; the later segments are not. */
    for (uint64_t want = 5; want <= 12; want++) {
        assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
        assert_int_equal(seq, want);
    }
    read_none(c);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

struct producer {
    struct gw_journal *j;
    unsigned id;
    unsigned count;
    size_t len;
    int done; /* atomic */
    int result;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    uint8_t buf[1024];

    p->result = 0;
    for (unsigned i = 0; i < p->count; i++) {
        memset(buf, 0, sizeof(buf));
        memcpy(buf, &p->id, sizeof(p->id));
        memcpy(buf + 4, &i, sizeof(i));
        int r = gw_journal_append(p->j, buf, p->len, NULL);
        if (r < 0) {
            p->result = r;
            break;
        }
        __atomic_add_fetch(&p->done, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static uint64_t wait_blocked(struct gw_journal *j)
{
    struct gw_journal_stats st;

    for (int i = 0; i < 2000; i++) {
        gw_journal_stats(j, &st);
        if (st.blocked_appends > 0)
            return st.blocked_appends;
        sleep_ms(5);
    }
    fail_msg("no append blocked within 10 s");
    return 0;
}

static void block_policy_waits_for_a_commit(void **state)
{
    char *dir = *state;
    /* Two segments of four 1000-byte records each. */
    struct gw_journal_options o = options(dir, SEG, 2 * SEG, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct producer p = {.count = 20, .len = 1000};
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    pthread_t t;
    const void *data;
    size_t len;
    uint64_t seq;

    j = p.j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    wait_blocked(j);
    assert_true(__atomic_load_n(&p.done, __ATOMIC_ACQUIRE) <= 8);
    /* Reading alone frees nothing; committing does. */
    for (unsigned i = 0; i < p.count; i++) {
        assert_int_equal(gw_journal_read(c, 10000, &data, &len, &seq), 0);
        assert_int_equal(seq, i + 1);
        assert_int_equal(len, 1000);
        unsigned k;
        memcpy(&k, (const uint8_t *)data + 4, sizeof(k));
        assert_int_equal(k, i);
        assert_int_equal(gw_journal_commit(c, seq), 0);
    }
    join_bounded(t);
    assert_int_equal(p.result, 0);
    assert_int_equal(p.done, p.count);
    struct gw_journal_stats st;
    gw_journal_stats(j, &st);
    assert_true(st.blocked_appends >= 1);
    assert_int_equal(st.dropped, 0);
    assert_true(st.bytes <= 2 * SEG);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

static void drop_oldest_never_blocks_and_counts(void **state)
{
    char *dir = *state;
    struct gw_journal_options o =
        options(dir, SEG, 4 * SEG, GW_JOURNAL_DROP_OLDEST, one_consumer, 1);
    const unsigned n = 500;
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    uint8_t buf[200] = {0};
    const void *data;
    size_t len;
    uint64_t seq, first = 0, read_after = 0, lag;

    j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < 10; i++)
        assert_int_equal(gw_journal_append(j, buf, sizeof(buf), NULL), 0);
    /* The cursor read 10 and committed 5: it lags inside the first segment. */
    for (unsigned i = 0; i < 10; i++)
        assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
    assert_int_equal(gw_journal_commit(c, 5), 0);
    for (unsigned i = 10; i < n; i++) {
        memcpy(buf, &i, sizeof(i));
        assert_int_equal(gw_journal_append(j, buf, sizeof(buf), &seq), 0);
        assert_int_equal(seq, i + 1);
    }
    gw_journal_stats(j, &st);
    assert_int_equal(st.blocked_appends, 0);
    assert_true(st.dropped > 0);
    assert_true(st.bytes <= 4 * SEG);
    lag = gw_journal_cursor_lag(c);

    /* The cursor skips ahead to the oldest record left, then reads all. */
    while (gw_journal_read(c, 0, &data, &len, &seq) == 0) {
        unsigned k;

        if (!first)
            first = seq;
        else
            assert_int_equal(seq, first + read_after);
        memcpy(&k, data, sizeof(k));
        assert_int_equal(k, seq - 1);
        read_after++;
    }
    assert_true(first > 11);
    assert_int_equal(lag, read_after);
    /* Exactly: committed + dropped + read afterwards = appended. */
    assert_int_equal(5 + st.dropped + read_after, n);
    assert_int_equal(st.dropped, first - 6);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

struct reader {
    struct gw_journal_cursor *c;
    int result;
};

static void *read_forever(void *arg)
{
    struct reader *r = arg;
    const void *data;
    size_t len;
    uint64_t seq;

    r->result = gw_journal_read(r->c, -1, &data, &len, &seq);
    return NULL;
}

static void shutdown_wakes_readers_and_appenders(void **state)
{
    char *dir = *state, sub[256];
    struct gw_journal_options o = options(dir, SEG, 2 * SEG, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct producer p = {.count = 100, .len = 1000};
    struct reader r = {.result = 1};
    struct gw_journal *j;
    pthread_t t;
    const void *data;
    size_t len;
    uint64_t seq;

    /* A reader waiting forever on an empty journal. */
    j = open_ok(&o);
    r.c = gw_journal_cursor_open(j, "a");
    assert_int_equal(pthread_create(&t, NULL, read_forever, &r), 0);
    sleep_ms(50);
    gw_journal_shutdown(j);
    join_bounded(t);
    assert_int_equal(r.result, -ESHUTDOWN);
    assert_int_equal(gw_journal_append(j, "x", 1, NULL), -ESHUTDOWN);
    gw_journal_cursor_free(r.c);
    gw_journal_close(j);

    /* An appender waiting for space, in a journal of its own. */
    snprintf(sub, sizeof(sub), "%s/second", dir);
    o.dir = sub;
    j = p.j = open_ok(&o);
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    wait_blocked(j);
    gw_journal_shutdown(j);
    join_bounded(t);
    assert_int_equal(p.result, -ESHUTDOWN);
    /* Readers still get what is there, then the end. */
    r.c = gw_journal_cursor_open(j, "a");
    for (int i = 0; i < p.done; i++) {
        assert_int_equal(gw_journal_read(r.c, -1, &data, &len, &seq), 0);
        assert_int_equal(seq, (uint64_t)i + 1);
    }
    assert_int_equal(gw_journal_read(r.c, -1, &data, &len, &seq), -ESHUTDOWN);
    assert_int_equal(gw_journal_read(r.c, 0, &data, &len, &seq), -ESHUTDOWN);
    gw_journal_cursor_free(r.c);
    gw_journal_close(j);
}

static void concurrent_producers_each_record_once_in_order(void **state)
{
    char *dir = *state;
    struct gw_journal_options o =
        options(dir, 64 << 10, 64 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    enum { THREADS = 4, PER = 20000 };
    struct producer p[THREADS];
    pthread_t t[THREADS];
    unsigned next[THREADS] = {0};
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    const void *data;
    size_t len;
    uint64_t seq;

    j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < THREADS; i++) {
        p[i] = (struct producer){.j = j, .id = i, .count = PER, .len = 24 + i * 30};
        assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    /* Read while they write. */
    for (unsigned n = 0; n < THREADS * PER; n++) {
        unsigned id, k;

        assert_int_equal(gw_journal_read(c, 10000, &data, &len, &seq), 0);
        assert_int_equal(seq, n + 1);
        memcpy(&id, data, sizeof(id));
        memcpy(&k, (const uint8_t *)data + 4, sizeof(k));
        assert_true(id < THREADS);
        assert_int_equal(len, 24 + id * 30);
        assert_int_equal(k, next[id]); /* once each, in each producer's order */
        next[id]++;
        if (n % 1000 == 999)
            assert_int_equal(gw_journal_commit(c, seq), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        join_bounded(t[i]);
        assert_int_equal(p[i].result, 0);
        assert_int_equal(next[i], PER);
    }
    read_none(c);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

static uint64_t first_seq_read(const struct gw_journal_options *o, char **ret_log)
{
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    const void *data;
    size_t len;
    uint64_t seq;
    char *log = open_capturing(o, &j);

    c = gw_journal_cursor_open(j, "a");
    assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
    if (ret_log)
        *ret_log = log;
    else
        free(log);
    return seq;
}

static void damaged_position_file_starts_over(void **state)
{
    char *dir = *state, path[256], *log;
    /* One segment holds everything, so nothing is deleted by the commits. */
    struct gw_journal_options o = options(dir, 1 << 20, 4 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    uint8_t garbage[1024];
    uint64_t seq;

    j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 0; i < 20; i++)
        append_key(j, i);
    for (unsigned i = 0; i < 10; i++)
        read_key(c, i + 1);
    assert_int_equal(gw_journal_commit(c, 5), 0);
    assert_int_equal(gw_journal_commit(c, 10), 0);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
    assert_int_equal(first_seq_read(&o, NULL), 11);

    snprintf(path, sizeof(path), "%s/consumer-a.pos", dir);
    /* One slot torn: the consumer may go back, never forward. */
    memset(garbage, 0x5A, sizeof(garbage));
    patch(path, 512, garbage, 32);
    seq = first_seq_read(&o, NULL);
    assert_true(seq >= 1 && seq <= 11);

    /* Both slots gone: from the oldest record, and the log says so. */
    patch(path, 0, garbage, sizeof(garbage));
    assert_int_equal(first_seq_read(&o, &log), 1);
    assert_non_null(strstr(log, "consumer-a.pos"));
    assert_non_null(strstr(log, "starts over"));
    free(log);

    /* An empty file (a crash right after creating it) is the same. */
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(first_seq_read(&o, &log), 1);
    assert_non_null(strstr(log, "consumer-a.pos"));
    free(log);
}

static void fsync_is_grouped(void **state)
{
    char *dir = *state;
    struct gw_journal_options o = options(dir, SEG, 1 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_stats st;
    struct gw_journal *j;
    uint64_t before;

    o.fsync_interval_ms = 3600 * 1000; /* time alone would never fire here */
    o.fsync_bytes = SEG;
    j = open_ok(&o);
    gw_journal_stats(j, &st);
    before = st.fsyncs;
    for (unsigned i = 0; i < 20; i++)
        append_key(j, i);
    for (int i = 0; i < 2000; i++) {
        gw_journal_stats(j, &st);
        if (st.fsyncs > before)
            break;
        sleep_ms(5);
    }
    assert_true(st.fsyncs > before); /* by size */
    gw_journal_close(j);

    o.fsync_interval_ms = 10;
    o.fsync_bytes = 0;
    j = open_ok(&o);
    gw_journal_stats(j, &st);
    before = st.fsyncs;
    append_key(j, 1);
    for (int i = 0; i < 2000; i++) {
        gw_journal_stats(j, &st);
        if (st.fsyncs > before)
            break;
        sleep_ms(5);
    }
    assert_true(st.fsyncs > before); /* by time */
    gw_journal_close(j);
}

static void full_file_system_fails_the_append_cleanly(void **state)
{
    char *dir = *state;
    struct gw_journal_options o =
        options(dir, 64 << 10, 1 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal_stats st;
    struct gw_journal_cursor *c;
    struct gw_journal *j;
    struct rlimit old, lim;
    unsigned ok = 0;
    int r = 0;

    j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    /* A file size limit makes the next segment's preallocation fail, as a
     * full disk would. */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 32 << 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (unsigned i = 0; i < 5000; i++) { /* 1365 records of 48 bytes fill a segment */
        r = gw_journal_append(j, "0123456789abcdef0123456789abcdef", 32, NULL);
        if (r < 0)
            break;
        ok++;
    }
    /* The pipeline retries a refused append every few seconds: each retry
     * fails the same way and leaves no half-made segment behind. */
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(gw_journal_append(j, "retry", 5, NULL), -EFBIG);
    assert_int_equal(count_segments(dir), 1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(r, -EFBIG);
    assert_true(ok > 100);
    gw_journal_stats(j, &st);
    assert_int_equal(st.next_seq, ok + 1);
    /* Readers see exactly the records that were taken. */
    for (unsigned i = 0; i < ok; i++) {
        const void *data;
        size_t len;
        uint64_t seq;

        assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
        assert_int_equal(len, 32);
    }
    read_none(c);
    /* With room again, the journal goes on. */
    uint64_t seq;
    assert_int_equal(gw_journal_append(j, "again", 5, &seq), 0);
    assert_int_equal(seq, ok + 1);
    gw_journal_cursor_free(c);
    gw_journal_close(j);

    /* Reopened, the journal holds every record taken, once, in order:
     * the refusals damaged nothing on disk. */
    j = open_ok(&o);
    c = gw_journal_cursor_open(j, "a");
    for (unsigned i = 1; i <= ok + 1; i++) {
        const void *data;
        size_t len;

        assert_int_equal(gw_journal_read(c, 0, &data, &len, &seq), 0);
        assert_int_equal(seq, i);
        assert_int_equal(len, i <= ok ? 32 : 5);
    }
    read_none(c);
    gw_journal_cursor_free(c);
    gw_journal_close(j);
}

/* ---- kill -9 ------------------------------------------------------------- */

struct report {
    uint64_t seq;
    uint64_t key;
};

static void child_appends(const char *dir, int fd, uint64_t round)
{
    struct gw_journal_options o =
        options(dir, 64 << 10, 256 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    struct gw_journal *j = gw_journal_open(&o, NULL);
    uint8_t buf[ROOM];

    if (!j)
        _exit(3);
    for (uint64_t i = 0; i < 2000000; i++) {
        struct report rep = {.key = round << 32 | i};
        size_t len = len_for(rep.key);

        fill(buf, len, rep.key);
        if (gw_journal_append(j, buf, len, &rep.seq) < 0)
            _exit(4);
        /* Only now may the "device" be told the record is safe. */
        if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
            _exit(5);
    }
    _exit(0);
}

static void kill_9_loses_nothing_reported(void **state)
{
    char *dir = *state;
    struct gw_journal_options o =
        options(dir, 64 << 10, 256 << 20, GW_JOURNAL_BLOCK, one_consumer, 1);
    const unsigned kill_after[] = {300, 5000, 20000};
    uint64_t *keys = NULL; /* keys[seq] as reported, or UINT64_MAX */
    size_t cap = 0;

    for (uint64_t round = 0; round < 3; round++) {
        struct report rep;
        unsigned got = 0;
        int fds[2], status;
        pid_t pid;

        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
            close(fds[0]);
            child_appends(dir, fds[1], round);
        }
        close(fds[1]);
        while (read(fds[0], &rep, sizeof(rep)) == (ssize_t)sizeof(rep)) {
            if (rep.seq >= cap) {
                size_t ncap = (rep.seq + 1) * 2;

                keys = realloc(keys, ncap * sizeof(*keys));
                assert_non_null(keys);
                for (size_t i = cap; i < ncap; i++)
                    keys[i] = UINT64_MAX;
                cap = ncap;
            }
            keys[rep.seq] = rep.key;
            if (++got == kill_after[round])
                kill(pid, SIGKILL); /* mid-stream: it goes on until the signal lands */
        }
        close(fds[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_true(got >= kill_after[round]);

        /* Everything reported is there with its content, and nothing read is
         * garbage. Nothing was ever committed, so reading starts at seq 1. */
        struct gw_journal *j = open_ok(&o);
        struct gw_journal_cursor *c = gw_journal_cursor_open(j, "a");
        const void *data;
        size_t len;
        uint64_t seq, key, n = 0;

        while (gw_journal_read(c, 0, &data, &len, &seq) == 0) {
            n++;
            assert_int_equal(seq, n);
            assert_true(valid(data, len, &key));
            if (seq < cap && keys[seq] != UINT64_MAX)
                assert_int_equal(key, keys[seq]);
        }
        for (size_t s = 1; s < cap; s++)
            if (keys[s] != UINT64_MAX)
                assert_true(s <= n);
        gw_journal_cursor_free(c);
        gw_journal_close(j);
    }
    free(keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(crc_and_format_are_as_documented, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(round_trip_across_segments, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(sizes_are_checked, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(bad_setups_are_refused, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(consumers_keep_their_own_positions, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(segments_go_once_every_consumer_passed, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(torn_tail_is_cut, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(truncated_file_is_cut, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(bad_checksum_mid_segment_cuts_from_there, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(damage_in_an_older_segment_leaves_a_gap, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(block_policy_waits_for_a_commit, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(drop_oldest_never_blocks_and_counts, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(shutdown_wakes_readers_and_appenders, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(concurrent_producers_each_record_once_in_order, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(damaged_position_file_starts_over, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(fsync_is_grouped, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(full_file_system_fails_the_append_cleanly, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(kill_9_loses_nothing_reported, dir_setup, dir_teardown),
    };

    gw_log_set_level(GW_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
