/* sim_bench_journal: `gridsim bench journal`, the journal's append rate.
 *
 * Runs, in one process and one temp dir: a plain write() loop of the same
 * records into a file (the baseline, so the figures read as ratios on a
 * shared machine), the journal into the page cache only, the journal with
 * fsync grouped every --fsync-ms, and the page-cache run again with one
 * consumer reading and committing alongside. Bounded by --records and by
 * a time cap per run. Owns nothing beyond one run; removes its files.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_journal.h"
#include "gw_log.h"
#include "sim_bench.h"

#define RUN_CAP_NS (15 * 1000000000LL) /* per run; four runs stay under a minute */
#define SEGMENT_BYTES (64ull << 20)
#define MAX_BYTES (1ull << 30)

struct bench_options {
    const char *dir;
    uint64_t records;
    size_t size;
    int threads;
    int fsync_ms;
};

struct run_result {
    uint64_t records;
    double seconds;
    uint64_t fsyncs;
    uint64_t read;
    bool capped;
};

struct worker {
    struct gw_journal *j;
    uint64_t count;
    size_t size;
    int64_t deadline_ns;
    uint64_t done;
    int result;
};

struct reader {
    struct gw_journal *j;
    uint64_t read;
    int result;
};

static void usage(FILE *f)
{
    fputs("usage: gridsim bench journal [--dir DIR] [--records N] [--size BYTES] [--threads T]\n"
          "                             [--fsync-ms MS]\n"
          "\n"
          "  --dir DIR      where to make the temp dir (default /tmp); it is removed after\n"
          "  --records N    records per run (default 2000000)\n"
          "  --size BYTES   payload bytes per record (default 100)\n"
          "  --threads T    producer threads (default 1)\n"
          "  --fsync-ms MS  the grouped-fsync run's interval (default 10)\n"
          "\n"
          "Each run stops after 15 s at most and says so.\n",
          f);
}

static int parse_u64(const char *arg, const char *name, uint64_t min, uint64_t max,
                     uint64_t *ret_value)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max) {
        fprintf(stderr,
                "gridsim bench journal: %s must be a number from %llu to %llu, not \"%s\"\n", name,
                (unsigned long long)min, (unsigned long long)max, arg);
        return -EINVAL;
    }
    *ret_value = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct bench_options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t v;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gridsim bench journal: unknown or incomplete option \"%s\"\n", a);
            usage(stderr);
            return -EINVAL;
        }
        const char *val = argv[++i];
        if (strcmp(a, "--dir") == 0) {
            o->dir = val;
        } else if (strcmp(a, "--records") == 0) {
            if (parse_u64(val, a, 1, 1000000000, &v) < 0)
                return -EINVAL;
            o->records = v;
        } else if (strcmp(a, "--size") == 0) {
            if (parse_u64(val, a, 1, 65536, &v) < 0)
                return -EINVAL;
            o->size = (size_t)v;
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_u64(val, a, 1, 64, &v) < 0)
                return -EINVAL;
            o->threads = (int)v;
        } else if (strcmp(a, "--fsync-ms") == 0) {
            if (parse_u64(val, a, 1, 60000, &v) < 0)
                return -EINVAL;
            o->fsync_ms = (int)v;
        } else {
            fprintf(stderr, "gridsim bench journal: unknown option \"%s\"\n", a);
            usage(stderr);
            return -EINVAL;
        }
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The baseline: one write() per record of the journal's framing (16-byte
 * header, payload padded to 8), which is what a write()-based journal
 * would have to do per record to be crash-safe at return. */
static int run_write_loop(const char *dir, const struct bench_options *o, struct run_result *res)
{
    char path[4096];
    size_t rec = 16 + ((o->size + 7) & ~(size_t)7);
    uint8_t *buf = calloc(1, rec);
    int64_t start, deadline;
    uint64_t i;
    int fd, r = 0;

    if (!buf)
        return -ENOMEM;
    if (snprintf(path, sizeof(path), "%s/write-loop.bin", dir) >= (int)sizeof(path)) {
        r = -ENAMETOOLONG;
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        fprintf(stderr, "gridsim bench journal: %s: %s\n", path, strerror(errno));
        goto out;
    }
    memset(buf + 16, 'r', o->size);
    start = gw_monotonic_ns();
    deadline = start + RUN_CAP_NS;
    for (i = 0; i < o->records; i++) {
        if ((i & 4095) == 0 && gw_monotonic_ns() > deadline) {
            res->capped = true;
            break;
        }
        memcpy(buf + 8, &i, sizeof(i));
        if (write(fd, buf, rec) != (ssize_t)rec) {
            r = -errno;
            fprintf(stderr, "gridsim bench journal: write %s: %s\n", path, strerror(errno));
            break;
        }
    }
    res->seconds = (double)(gw_monotonic_ns() - start) / 1e9;
    res->records = i;
    close(fd);
    unlink(path);
out:
    free(buf);
    return r;
}

static void *append_worker(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = calloc(1, w->size);

    w->result = buf ? 0 : -ENOMEM;
    if (buf)
        memset(buf, 'r', w->size);
    for (uint64_t i = 0; buf && i < w->count; i++) {
        if ((i & 4095) == 0 && gw_monotonic_ns() > w->deadline_ns)
            break;
        memcpy(buf, &i, w->size < sizeof(i) ? w->size : sizeof(i));
        w->result = gw_journal_append(w->j, buf, w->size, NULL);
        if (w->result < 0)
            break;
        w->done++;
    }
    free(buf);
    return NULL;
}

static void *read_worker(void *arg)
{
    struct reader *r = arg;
    struct gw_journal_cursor *c = gw_journal_cursor_open(r->j, "bench");
    const void *data;
    size_t len;
    uint64_t seq;

    r->result = c ? 0 : -ENOMEM;
    while (c) {
        int rc = gw_journal_read(c, 1000, &data, &len, &seq);

        if (rc == -EAGAIN)
            continue;
        if (rc < 0)
            break;
        r->read++;
        /* Commit in batches, as the rule worker and InfluxDB writer do. */
        if ((r->read & 1023) == 0 && (rc = gw_journal_commit(c, seq)) < 0) {
            r->result = rc;
            break;
        }
    }
    gw_journal_cursor_free(c);
    return NULL;
}

static int run_journal(const char *dir, const struct bench_options *o, int fsync_ms,
                       bool with_reader, struct run_result *res)
{
    const char *const consumers[] = {"bench"};
    struct gw_journal_options jo = {
        .dir = dir,
        .max_bytes = MAX_BYTES,
        .segment_bytes = SEGMENT_BYTES,
        .fsync_interval_ms = fsync_ms,
        .fsync_bytes = 0, /* grouped by time only, to measure exactly that */
        .full_policy = GW_JOURNAL_BLOCK,
        /* Without consumers sealed segments go at once, as when consumers
         * keep up; with the reader it is the one consumer. */
        .consumers = with_reader ? consumers : NULL,
        .n_consumers = with_reader ? 1 : 0,
    };
    struct worker *w = calloc((size_t)o->threads, sizeof(*w));
    struct reader rd = {0};
    pthread_t *t = calloc((size_t)o->threads, sizeof(*t));
    pthread_t rt;
    struct gw_journal_stats st;
    struct gw_journal *j = NULL;
    char *error = NULL;
    int64_t start;
    int r = 0, started = 0;

    if (!w || !t) {
        r = -ENOMEM;
        goto out;
    }
    j = gw_journal_open(&jo, &error);
    if (!j) {
        fprintf(stderr, "gridsim bench journal: %s\n", error ? error : "cannot open the journal");
        free(error);
        r = -EIO;
        goto out;
    }
    rd.j = j;
    if (with_reader && pthread_create(&rt, NULL, read_worker, &rd) != 0) {
        r = -EAGAIN;
        goto out;
    }
    start = gw_monotonic_ns();
    for (int i = 0; i < o->threads; i++) {
        w[i] = (struct worker){
            .j = j,
            .count = o->records / (uint64_t)o->threads +
                     ((uint64_t)i < o->records % (uint64_t)o->threads ? 1 : 0),
            .size = o->size,
            .deadline_ns = start + RUN_CAP_NS,
        };
        if (pthread_create(&t[i], NULL, append_worker, &w[i]) != 0) {
            r = -EAGAIN;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        res->records += w[i].done;
        if (w[i].result < 0 && r == 0)
            r = w[i].result;
        if (w[i].done < w[i].count)
            res->capped = true;
    }
    res->seconds = (double)(gw_monotonic_ns() - start) / 1e9;
    gw_journal_stats(j, &st);
    res->fsyncs = st.fsyncs;
    if (with_reader) {
        gw_journal_shutdown(j); /* the reader drains, then ends */
        pthread_join(rt, NULL);
        res->read = rd.read;
        if (rd.result < 0 && r == 0)
            r = rd.result;
    }
    if (r < 0)
        fprintf(stderr, "gridsim bench journal: append: %s\n", strerror(-r));
out:
    gw_journal_close(j);
    free(w);
    free(t);
    return r;
}

static void print_run(const char *what, const struct run_result *res, double baseline)
{
    double rate = res->seconds > 0 ? (double)res->records / res->seconds : 0;

    printf("  %-38s %10" PRIu64 " records in %6.3f s = %10.0f records/s", what, res->records,
           res->seconds, rate);
    if (baseline > 0)
        printf("  (%.2fx write())", rate / baseline);
    if (res->fsyncs)
        printf(", %" PRIu64 " fsyncs", res->fsyncs);
    if (res->read)
        printf(", %" PRIu64 " read", res->read);
    if (res->capped)
        printf("  [stopped at the time cap]");
    printf("\n");
}

int sim_bench_journal(int argc, char **argv)
{
    struct bench_options o = {
        .dir = "/tmp",
        .records = 2000000,
        .size = 100,
        .threads = 1,
        .fsync_ms = 10,
    };
    struct run_result base = {0}, cache = {0}, synced = {0}, reading = {0};
    char dir[4096], sub[4200];
    double base_rate;
    int r;

    r = parse_args(argc, argv, &o);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (gw_log_threshold > GW_LOG_WARN)
        gw_log_set_level(GW_LOG_WARN); /* the journal's open/close lines are noise here */
    snprintf(dir, sizeof(dir), "%s/gridsim-bench-journal.XXXXXX", o.dir);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "gridsim bench journal: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    printf("journal bench: %" PRIu64
           " records of %zu bytes, %d producer thread%s, %ld cpus, in %s\n",
           o.records, o.size, o.threads, o.threads == 1 ? "" : "s", sysconf(_SC_NPROCESSORS_ONLN),
           dir);
    fflush(stdout);

    r = run_write_loop(dir, &o, &base);
    base_rate = base.seconds > 0 ? (double)base.records / base.seconds : 0;
    if (r == 0) {
        print_run("write() per record, 1 thread (baseline)", &base, 0);
        snprintf(sub, sizeof(sub), "%s/cache", dir);
        r = run_journal(sub, &o, 3600 * 1000, false, &cache);
    }
    if (r == 0) {
        print_run("(a) journal, page cache only", &cache, base_rate);
        snprintf(sub, sizeof(sub), "%s/fsync", dir);
        r = run_journal(sub, &o, o.fsync_ms, false, &synced);
    }
    if (r == 0) {
        char what[64];

        snprintf(what, sizeof(what), "(b) journal, fsync every %d ms", o.fsync_ms);
        print_run(what, &synced, base_rate);
        snprintf(sub, sizeof(sub), "%s/reader", dir);
        r = run_journal(sub, &o, 3600 * 1000, true, &reading);
    }
    if (r == 0)
        print_run("(c) as (a), one consumer reading along", &reading, base_rate);
    rm_tree(dir);
    return r == 0 ? 0 : 1;
}
