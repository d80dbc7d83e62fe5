/* gw_journal: segment files of checksummed records, consumer positions and
 * grouped fsync (the contract is in gw_journal.h).
 *
 * On disk, in the journal directory:
 *   %020llu.seg        a segment, named by the seq of its first record and
 *                      preallocated to segment_bytes with posix_fallocate
 *   consumer-NAME.pos  a consumer's committed seq in two checksummed slots
 *   journal.lock       flock()ed while a process has the journal open
 *
 * A record is a 16-byte header {le32 len, le32 crc, le64 seq} and the
 * payload, padded with zeros to 8 bytes. crc is CRC32C over the len field
 * and the payload; seq must be the segment's first seq plus the record's
 * index. A header of zeros (the preallocated space) ends a segment.
 *
 * Appends copy the record into a MAP_SHARED mapping of the active segment
 * under one mutex. Once the copy is done the record is in the page cache,
 * which survives a crash of the process exactly as a write() would, for
 * the price of a memcpy instead of a syscall. The space is fallocated when
 * the segment is created so that a full disk is an -ENOSPC from append
 * then, not a SIGBUS on a page fault later. A thread fdatasyncs dirty
 * segments, position files and the directory every fsync_interval_ms (or
 * sooner once fsync_bytes were appended) without holding the lock, so an
 * append never waits for the disk.
 *
 * Readers read records in place from the mapping. Each segment is
 * reference counted (the list, cursors, an fsync in flight), so a segment
 * dropped while a cursor is in it stays mapped until the cursor moves on.
 */
#include "gw_journal.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gw_fs.h"
#include "gw_log.h"

#define MODULE "journal"

#define HDR_SIZE 16u
#define SEG_SUFFIX ".seg"
#define SEG_NAME_DIGITS 20
#define POS_MAGIC "GWJPOS01"
#define POS_SLOT_BYTES 512u /* one slot per sector: a torn write spoils one slot only */
#define POS_REC_BYTES 32u
#define LOCK_NAME "journal.lock"
#define MIN_SEGMENT_BYTES 4096u
#define MAX_SEGMENT_BYTES (4ull << 30) /* len is 32 bits */
#define MAX_CONSUMER_NAME 64
#define MAX_SEGMENTS 32768 /* one mapping each; vm.max_map_count is 65530 */
#define SYNC_BATCH 16

/* ---- CRC32C (Castagnoli) ------------------------------------------------ */

typedef uint32_t crc_fn(uint32_t crc, const void *data, size_t len);

static uint32_t crc_table[8][256];
static crc_fn *crc32c_impl;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Slicing-by-8: eight table lookups per 8 bytes instead of one per byte. */
static uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    crc = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t w;

        memcpy(&w, p, 8);
        w = le64toh(w);
        uint32_t lo = (uint32_t)w ^ crc;
        uint32_t hi = (uint32_t)(w >> 32);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
              crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
/* The SSE4.2 crc32 instruction computes the same polynomial several times
 * faster; chosen at run time, so the binary still runs on CPUs without it. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *data,
                                                            size_t len)
{
    const uint8_t *p = data;
    uint64_t c = (uint32_t)~crc;

    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t w;

        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xff];
    crc32c_impl = crc32c_sw;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        /* Both must agree on every length and alignment, or the files
         * written here could not be read on another machine. */
        uint8_t probe[67];
        bool same = true;

        for (size_t i = 0; i < sizeof(probe); i++)
            probe[i] = (uint8_t)(i * 7 + 1);
        for (size_t off = 0; off < 8 && same; off++)
            for (size_t n = 0; off + n <= sizeof(probe) && same; n++)
                same = crc32c_sw(0, probe + off, n) == crc32c_hw(0, probe + off, n);
        if (same)
            crc32c_impl = crc32c_hw;
    }
#endif
}

static uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
    return crc32c_impl(crc, data, len);
}

/* The checksum covers the length too, so a flipped length fails it. */
static uint32_t record_crc(uint32_t len, const void *payload)
{
    uint32_t le_len = htole32(len);

    return crc32c(crc32c(0, &le_len, sizeof(le_len)), payload, len);
}

static uint64_t rec_size(uint64_t len)
{
    return HDR_SIZE + ((len + 7) & ~(uint64_t)7);
}

/* ---- state --------------------------------------------------------------- */

struct rec_hdr {
    uint32_t len; /* little-endian on disk, as are the others */
    uint32_t crc;
    uint64_t seq;
};

struct segment {
    struct segment *prev, *next; /* j->head..tail, oldest first; under the lock */
    uint64_t first_seq;          /* from the file name */
    uint64_t next_seq;           /* seq after its last record; under the lock */
    uint64_t end;                /* offset after its last record; under the lock */
    uint64_t size;               /* of the file (and the mapping) */
    uint8_t *map;                /* NULL for a file too small to hold a record */
    int fd;      /* only while opening: the mapping keeps the file, msync syncs it */
    int refs;    /* atomic: the list, each cursor in it, an fsync in flight */
    int removed; /* atomic: out of the list, file unlinked */
    bool sealed; /* no more appends; under the lock */
    bool dirty;  /* written since its last fdatasync; under the lock */
    char name[SEG_NAME_DIGITS + sizeof(SEG_SUFFIX)];
};

struct consumer {
    char *name;
    int fd;             /* its position file */
    uint64_t committed; /* everything <= committed is done; under the lock */
    unsigned slot;      /* the slot the next commit overwrites (the older one) */
    bool dirty;         /* position written since its last fdatasync */
    bool has_cursor;
};

struct gw_journal {
    /* One lock for the segment list, sequence numbers, positions, stats
     * and flags. Records themselves are immutable once published through
     * segment->end, so readers copy nothing and hold no lock while they
     * hand out records they saw published. */
    pthread_mutex_t lock;
    pthread_cond_t data_cond;  /* new records, dropped segments, shutdown */
    pthread_cond_t space_cond; /* segments deleted, shutdown */
    pthread_cond_t sync_cond;  /* the fsync thread: fsync_bytes reached, or stop */
    pthread_t sync_thread;
    bool sync_started;

    char *dir;
    int dir_fd;
    int lock_fd;
    uint64_t max_bytes;
    uint64_t segment_bytes;
    uint64_t fsync_bytes;
    int fsync_interval_ms;
    enum gw_journal_full_policy policy;
    struct consumer *consumers;
    size_t n_consumers;

    struct segment *head, *tail; /* tail is the active one unless sealed */
    uint64_t next_seq;
    uint64_t bytes;
    uint64_t n_segments;
    uint64_t unsynced; /* bytes appended since the last fsync pass began */
    int readers_waiting;
    int open_cursors;
    int io_error; /* sticky: a failed fsync means records may not be on disk */
    bool shutdown;
    bool stop_sync;
    bool sync_kick;
    bool dir_dirty;
    struct gw_journal_stats st; /* counters only; sizes are filled in on demand */
    struct gw_log_limit drop_limit;
    struct gw_log_limit bad_limit;
    struct gw_log_limit alloc_limit;
};

struct gw_journal_cursor {
    struct gw_journal *j;
    struct consumer *cons;
    struct segment *seg; /* referenced; NULL while no segment holds next_seq */
    uint64_t pos;        /* offset of the next record in seg */
    uint64_t avail;      /* seg->end as last seen under the lock */
    uint64_t next_seq;   /* seq of the next record to hand out */
    uint64_t released;   /* offset in seg below which this cursor gave its pages back */
};

static void set_error(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(char **ret_error, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;

    if (!ret_error)
        return;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    *ret_error = msg;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ---- segments ------------------------------------------------------------ */

static struct segment *seg_new(uint64_t first_seq)
{
    struct segment *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->first_seq = first_seq;
    s->next_seq = first_seq;
    s->fd = -1;
    s->refs = 1;
    snprintf(s->name, sizeof(s->name), "%020llu" SEG_SUFFIX, (unsigned long long)first_seq);
    return s;
}

static void seg_destroy(struct segment *s)
{
    if (s->map)
        munmap(s->map, s->size);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

/* Only under the lock, and only for segments still in the list: a removed
 * segment never gains a reference, so the last unref may free it anywhere. */
static void seg_ref(struct segment *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

static void seg_unref(struct segment *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        seg_destroy(s);
}

static void list_append(struct gw_journal *j, struct segment *s)
{
    s->prev = j->tail;
    s->next = NULL;
    if (j->tail)
        j->tail->next = s;
    else
        j->head = s;
    j->tail = s;
}

static void list_remove(struct gw_journal *j, struct segment *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        j->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        j->tail = s->prev;
    s->prev = s->next = NULL;
}

/* Under the lock. Unlinks now (the space is wanted now); a cursor still in
 * the segment keeps its mapping until it moves on. */
static void remove_segment(struct gw_journal *j, struct segment *s)
{
    if (unlinkat(j->dir_fd, s->name, 0) < 0 && errno != ENOENT)
        gw_warn(MODULE, "%s/%s: cannot delete: %s", j->dir, s->name, strerror(errno));
    list_remove(j, s);
    j->bytes -= s->size;
    j->n_segments--;
    j->dir_dirty = true;
    __atomic_store_n(&s->removed, 1, __ATOMIC_RELEASE);
    seg_unref(s);
}

/* Under the lock: deletes the oldest segments every consumer has committed
 * past. With no consumers that is every sealed segment. */
static void delete_passed(struct gw_journal *j)
{
    bool any = false;

    while (j->head && j->head->sealed) {
        struct segment *s = j->head;

        for (size_t i = 0; i < j->n_consumers; i++)
            if (j->consumers[i].committed + 1 < s->next_seq)
                goto out;
        remove_segment(j, s);
        any = true;
    }
out:
    if (any)
        pthread_cond_broadcast(&j->space_cond);
}

/* Under the lock: full under drop_oldest. Counts the records of the
 * segment that not every consumer had committed. */
static void drop_oldest(struct gw_journal *j)
{
    struct segment *s = j->head;
    uint64_t from = s->first_seq, lost = 0;

    if (j->n_consumers > 0) {
        uint64_t min_next = UINT64_MAX;

        for (size_t i = 0; i < j->n_consumers; i++)
            if (j->consumers[i].committed + 1 < min_next)
                min_next = j->consumers[i].committed + 1;
        if (min_next > from)
            from = min_next;
        if (s->next_seq > from)
            lost = s->next_seq - from;
    }
    j->st.dropped += lost;
    if (lost > 0)
        gw_log_limited(&j->drop_limit, GW_LOG_WARN, MODULE,
                       "%s is full (%llu bytes): dropped %s with %llu records not committed by "
                       "every consumer (seq %llu..%llu)",
                       j->dir, (unsigned long long)j->max_bytes, s->name, (unsigned long long)lost,
                       (unsigned long long)from, (unsigned long long)(s->next_seq - 1));
    remove_segment(j, s);
    pthread_cond_broadcast(&j->data_cond); /* cursors in it skip ahead */
}

/* Under the lock. Creates the active segment, named by the next seq. */
static int create_segment(struct gw_journal *j)
{
    struct segment *s = seg_new(j->next_seq);
    void *map;
    int r;

    if (!s)
        return -ENOMEM;
    s->fd = openat(j->dir_fd, s->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (s->fd < 0) {
        r = -errno;
        goto out_free;
    }
    /* Real blocks, not a sparse file: writes through the mapping can then
     * never meet a full disk. */
    r = posix_fallocate(s->fd, 0, (off_t)j->segment_bytes);
    if (r != 0) {
        r = -r;
        goto out_unlink;
    }
    map = mmap(NULL, j->segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    if (map == MAP_FAILED) {
        r = -errno;
        goto out_unlink;
    }
    s->map = map;
    s->size = j->segment_bytes;
    s->dirty = true;
    close(s->fd); /* one mapping per segment, not one descriptor too */
    s->fd = -1;
    list_append(j, s);
    j->bytes += s->size;
    j->n_segments++;
    j->dir_dirty = true;
    return 0;

out_unlink:
    unlinkat(j->dir_fd, s->name, 0);
out_free:
    /* A full disk (ENOSPC), a file size limit (EFBIG) or a read-only file
     * system: the caller holds its reading unacknowledged and retries, so
     * this is said here, naming the file, where the cause is known. */
    gw_log_limited(&j->alloc_limit, GW_LOG_ERROR, MODULE,
                   "%s/%s: cannot create a segment of %llu bytes: %s; appends wait until the "
                   "file system takes it",
                   j->dir, s->name, (unsigned long long)j->segment_bytes, strerror(-r));
    seg_destroy(s);
    return r;
}

/* Under the lock: the active segment cannot take the next record. Seals
 * it, makes room by policy and creates the next. Returns 0 when the caller
 * should look again (a new segment, or a wait for space ended). */
static int roll(struct gw_journal *j, bool *waited)
{
    struct segment *s = j->tail;

    if (s && !s->sealed) {
        s->sealed = true;
        if (s->end == 0) /* nothing in it, and its name may be the next one's */
            remove_segment(j, s);
        delete_passed(j);
    }
    while (j->head && j->bytes + j->segment_bytes > j->max_bytes) {
        if (j->policy == GW_JOURNAL_BLOCK) {
            if (!*waited) {
                j->st.blocked_appends++;
                *waited = true;
            }
            pthread_cond_wait(&j->space_cond, &j->lock);
            return 0;
        }
        drop_oldest(j);
    }
    return create_segment(j);
}

/* ---- appends ------------------------------------------------------------- */

int gw_journal_append(struct gw_journal *j, const void *data, size_t len, uint64_t *ret_seq)
{
    struct segment *s;
    struct rec_hdr h;
    bool waited = false;
    uint64_t need, seq;
    uint32_t crc;
    int r = 0;

    if (len == 0)
        return -EINVAL;
    if (len > j->segment_bytes - HDR_SIZE)
        return -EMSGSIZE;
    /* Outside the lock, so producers checksum in parallel. */
    crc = record_crc((uint32_t)len, data);
    need = rec_size(len);

    pthread_mutex_lock(&j->lock);
    for (;;) {
        if (j->shutdown) {
            r = -ESHUTDOWN;
            goto out;
        }
        if (j->io_error) {
            r = j->io_error;
            goto out;
        }
        s = j->tail;
        if (s && !s->sealed && s->next_seq == j->next_seq && need <= s->size - s->end)
            break;
        r = roll(j, &waited);
        if (r < 0)
            goto out;
    }
    seq = j->next_seq;
    /* The padding is already zero: fresh fallocated space, or cut on open. */
    memcpy(s->map + s->end + HDR_SIZE, data, len);
    h.len = htole32((uint32_t)len);
    h.crc = htole32(crc);
    h.seq = htole64(seq);
    memcpy(s->map + s->end, &h, HDR_SIZE);
    s->end += need;
    s->next_seq++;
    s->dirty = true;
    j->next_seq++;
    j->st.appended++;
    j->st.appended_bytes += len;
    j->unsynced += need;
    if (j->fsync_bytes > 0 && j->unsynced >= j->fsync_bytes && !j->sync_kick) {
        j->sync_kick = true;
        pthread_cond_signal(&j->sync_cond);
    }
    if (j->readers_waiting > 0)
        pthread_cond_broadcast(&j->data_cond);
    if (ret_seq)
        *ret_seq = seq;
out:
    pthread_mutex_unlock(&j->lock);
    return r;
}

/* ---- fsync --------------------------------------------------------------- */

/* Lock held on entry and on return; dropped around the syscalls. */
static void sync_pass(struct gw_journal *j)
{
    struct segment *segs[SYNC_BATCH];
    int pos_fds[8];
    bool more;

    do {
        size_t n_segs = 0, n_pos = 0;
        bool dir;
        int err = 0;

        more = false;
        for (struct segment *s = j->head; s; s = s->next) {
            if (!s->dirty)
                continue;
            if (n_segs == SYNC_BATCH) {
                more = true;
                break;
            }
            s->dirty = false;
            seg_ref(s);
            segs[n_segs++] = s;
        }
        for (size_t i = 0; i < j->n_consumers; i++) {
            if (!j->consumers[i].dirty)
                continue;
            if (n_pos == sizeof(pos_fds) / sizeof(pos_fds[0])) {
                more = true;
                break;
            }
            j->consumers[i].dirty = false;
            pos_fds[n_pos++] = j->consumers[i].fd;
        }
        dir = j->dir_dirty;
        j->dir_dirty = false;
        j->unsynced = 0;
        j->sync_kick = false;
        if (n_segs == 0 && n_pos == 0 && !dir)
            return;

        pthread_mutex_unlock(&j->lock);
        /* On Linux msync(MS_SYNC) is fdatasync of the mapped range: the
         * pages, and the metadata needed to read them back. */
        for (size_t i = 0; i < n_segs; i++)
            if (segs[i]->map && msync(segs[i]->map, segs[i]->size, MS_SYNC) < 0 && !err)
                err = -errno;
        for (size_t i = 0; i < n_pos; i++)
            if (fdatasync(pos_fds[i]) < 0 && !err)
                err = -errno;
        /* Segments created or deleted, position files created. */
        if (dir && fsync(j->dir_fd) < 0 && !err)
            err = -errno;
        pthread_mutex_lock(&j->lock);

        for (size_t i = 0; i < n_segs; i++)
            seg_unref(segs[i]);
        j->st.fsyncs++;
        if (err && !j->io_error) {
            /* After a failed fsync the kernel may have dropped the pages;
             * nothing later can promise durability, so appends stop and
             * the broker keeps what we can no longer vouch for. */
            j->io_error = err;
            gw_error(MODULE, "%s: fsync failed: %s; refusing further appends", j->dir,
                     strerror(-err));
        }
    } while (more);
}

static void *sync_main(void *arg)
{
    struct gw_journal *j = arg;
    struct timespec deadline;

    pthread_mutex_lock(&j->lock);
    while (!j->stop_sync) {
        deadline_after(&deadline, j->fsync_interval_ms);
        while (!j->stop_sync && !j->sync_kick)
            if (pthread_cond_timedwait(&j->sync_cond, &j->lock, &deadline) == ETIMEDOUT)
                break;
        if (j->stop_sync)
            break;
        sync_pass(j);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* ---- positions ----------------------------------------------------------- */

static void pos_encode(uint8_t rec[POS_REC_BYTES], uint64_t seq)
{
    uint64_t le_seq = htole64(seq);
    uint32_t crc;

    memset(rec, 0, POS_REC_BYTES);
    memcpy(rec, POS_MAGIC, 8);
    memcpy(rec + 8, &le_seq, 8);
    crc = htole32(crc32c(0, rec, 16));
    memcpy(rec + 16, &crc, 4);
}

static bool pos_decode(const uint8_t *rec, uint64_t *ret_seq)
{
    uint64_t le_seq;
    uint32_t crc;

    memcpy(&crc, rec + 16, 4);
    if (memcmp(rec, POS_MAGIC, 8) != 0 || le32toh(crc) != crc32c(0, rec, 16))
        return false;
    memcpy(&le_seq, rec + 8, 8);
    *ret_seq = le64toh(le_seq);
    return true;
}

/* Two slots, written in turn: a commit torn by a power loss spoils only the
 * newer slot, and the older one still holds the commit before it. */
static int pos_write_slot(int fd, unsigned slot, uint64_t seq)
{
    uint8_t rec[POS_REC_BYTES];
    ssize_t n;

    pos_encode(rec, seq);
    n = pwrite(fd, rec, sizeof(rec), (off_t)slot * POS_SLOT_BYTES);
    if (n < 0)
        return -errno;
    return n == (ssize_t)sizeof(rec) ? 0 : -EIO;
}

/* A fresh file image: slot 0 holds seq, slot 1 is empty. Written in full so
 * later commits overwrite allocated blocks and cannot meet a full disk. */
static int pos_write_fresh(int fd, uint64_t seq)
{
    uint8_t image[2 * POS_SLOT_BYTES];
    ssize_t n;

    memset(image, 0, sizeof(image));
    pos_encode(image, seq);
    n = pwrite(fd, image, sizeof(image), 0);
    if (n < 0)
        return -errno;
    return n == (ssize_t)sizeof(image) ? 0 : -EIO;
}

/* Opens the consumer's position file. Sets cons->committed and cons->slot.
 * A missing file is a new consumer, an unreadable one starts over: both at
 * the oldest record present (at least once; never skip). */
static int open_position(struct gw_journal *j, struct consumer *cons, uint64_t oldest,
                         char **ret_error)
{
    char file[MAX_CONSUMER_NAME + 32];
    uint8_t image[2 * POS_SLOT_BYTES];
    uint64_t seq[2];
    bool ok[2] = {false, false};
    ssize_t n;
    int r;

    snprintf(file, sizeof(file), "consumer-%s.pos", cons->name);
    cons->fd = openat(j->dir_fd, file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (cons->fd >= 0) {
        cons->committed = oldest - 1;
        gw_info(MODULE, "%s: new consumer \"%s\" starts at the oldest record, seq %llu", j->dir,
                cons->name, (unsigned long long)oldest);
        j->dir_dirty = true;
        goto write_fresh;
    }
    if (errno != EEXIST || (cons->fd = openat(j->dir_fd, file, O_RDWR | O_CLOEXEC)) < 0) {
        r = -errno;
        set_error(ret_error, "%s/%s: %s", j->dir, file, strerror(errno));
        return r;
    }
    n = pread(cons->fd, image, sizeof(image), 0);
    if (n < 0) {
        r = -errno;
        set_error(ret_error, "%s/%s: %s", j->dir, file, strerror(errno));
        return r;
    }
    if (n >= (ssize_t)POS_REC_BYTES)
        ok[0] = pos_decode(image, &seq[0]);
    if (n >= (ssize_t)(POS_SLOT_BYTES + POS_REC_BYTES))
        ok[1] = pos_decode(image + POS_SLOT_BYTES, &seq[1]);
    if (ok[0] || ok[1]) {
        unsigned newer = (!ok[1] || (ok[0] && seq[0] >= seq[1])) ? 0 : 1;

        cons->committed = seq[newer];
        cons->slot = newer ^ 1;
        return 0;
    }
    cons->committed = oldest - 1;
    gw_warn(MODULE,
            "%s/%s is unreadable (%zd bytes, no valid slot): consumer \"%s\" starts over at the "
            "oldest record, seq %llu, and may see records again",
            j->dir, file, n, cons->name, (unsigned long long)oldest);

write_fresh:
    r = pos_write_fresh(cons->fd, cons->committed);
    if (r < 0) {
        set_error(ret_error, "%s/%s: %s", j->dir, file, strerror(-r));
        return r;
    }
    cons->slot = 1;
    cons->dirty = true;
    return 0;
}

/* ---- opening: scan and cut ----------------------------------------------- */

static bool parse_seg_name(const char *name, uint64_t *ret_seq)
{
    unsigned long long v = 0;

    if (strlen(name) != SEG_NAME_DIGITS + strlen(SEG_SUFFIX) ||
        strcmp(name + SEG_NAME_DIGITS, SEG_SUFFIX) != 0)
        return false;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        if (v > (ULLONG_MAX - (unsigned)(name[i] - '0')) / 10)
            return false;
        v = v * 10 + (unsigned)(name[i] - '0');
    }
    if (v == 0)
        return false;
    *ret_seq = v;
    return true;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct segment *x = *(struct segment *const *)a;
    const struct segment *y = *(struct segment *const *)b;

    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* The end of the last non-zero byte at or after from. Skips holes and
 * unwritten extents where the file system reports them. */
static uint64_t data_end(const struct segment *s, uint64_t from)
{
    uint64_t last = from, off = from;

    while (off < s->size) {
        off_t data = lseek(s->fd, (off_t)off, SEEK_DATA);
        off_t hole;

        if (data < 0) {
            if (errno == ENXIO)
                break;
            data = (off_t)off; /* no SEEK_DATA here: look at everything */
            hole = (off_t)s->size;
        } else {
            hole = lseek(s->fd, data, SEEK_HOLE);
            if (hole < 0 || (uint64_t)hole > s->size)
                hole = (off_t)s->size;
        }
        for (uint64_t i = (uint64_t)hole; i > (uint64_t)data;) {
            uint64_t w = 0;

            /* Backwards, a word at a time once aligned: usually the last
             * bytes are zero and the garbage, if any, is near the start. */
            if (i % 8 == 0 && i - 8 >= (uint64_t)data) {
                memcpy(&w, s->map + i - 8, 8);
                if (w == 0) {
                    i -= 8;
                    continue;
                }
            }
            if (s->map[i - 1] != 0) {
                last = i;
                break;
            }
            i--;
        }
        off = (uint64_t)hole;
    }
    return last;
}

/* Walks the segment's records, stops at the first implausible one and
 * zeroes everything after it. Returns the bytes cut. */
static uint64_t scan_segment(struct gw_journal *j, struct segment *s)
{
    uint64_t pos = 0, seq = s->first_seq, end;

    while (s->map && pos + HDR_SIZE <= s->size) {
        struct rec_hdr h;
        uint32_t len;

        memcpy(&h, s->map + pos, HDR_SIZE);
        len = le32toh(h.len);
        if (len == 0 || rec_size(len) > s->size - pos || le64toh(h.seq) != seq ||
            record_crc(len, s->map + pos + HDR_SIZE) != le32toh(h.crc))
            break;
        pos += rec_size(len);
        seq++;
    }
    s->end = pos;
    s->next_seq = seq;
    if (!s->map)
        return 0;
    end = data_end(s, pos);
    if (end <= pos)
        return 0;
    /* Zero, not truncate: the space stays allocated for the next appends,
     * and zeros read as "end" on the next open. */
    memset(s->map + pos, 0, end - pos);
    s->dirty = true;
    gw_warn(MODULE,
            "%s/%s: cut %llu bytes after seq %llu (a record torn by a crash, or damaged); "
            "earlier records are intact",
            j->dir, s->name, (unsigned long long)(end - pos), (unsigned long long)(seq - 1));
    return end - pos;
}

static int load_segment(struct gw_journal *j, struct segment *s, char **ret_error)
{
    struct stat st;
    int r;

    s->fd = openat(j->dir_fd, s->name, O_RDWR | O_CLOEXEC);
    if (s->fd < 0 || fstat(s->fd, &st) < 0) {
        r = -errno;
        set_error(ret_error, "%s/%s: %s", j->dir, s->name, strerror(errno));
        return r;
    }
    if ((uint64_t)st.st_size > MAX_SEGMENT_BYTES) {
        set_error(ret_error, "%s/%s: %lld bytes is larger than any segment", j->dir, s->name,
                  (long long)st.st_size);
        return -EFBIG;
    }
    s->size = (uint64_t)st.st_size;
    if (s->size >= HDR_SIZE) {
        void *map = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);

        if (map == MAP_FAILED) {
            r = -errno;
            set_error(ret_error, "%s/%s: mmap: %s", j->dir, s->name, strerror(errno));
            return r;
        }
        s->map = map;
    }
    j->st.torn_bytes_cut += scan_segment(j, s);
    close(s->fd);
    s->fd = -1;
    return 0;
}

static int load_segments(struct gw_journal *j, char **ret_error)
{
    struct segment **segs = NULL, *s;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;
    int fd, r = 0;

    fd = dup(j->dir_fd);
    if (fd < 0 || !(d = fdopendir(fd))) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        set_error(ret_error, "%s: %s", j->dir, strerror(-r));
        return r;
    }
    while ((de = readdir(d))) {
        uint64_t first;

        if (!parse_seg_name(de->d_name, &first))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct segment **nsegs = realloc(segs, ncap * sizeof(*segs));

            if (!nsegs) {
                r = -ENOMEM;
                goto out;
            }
            segs = nsegs;
            cap = ncap;
        }
        if (!(segs[n] = seg_new(first))) {
            r = -ENOMEM;
            goto out;
        }
        n++;
    }
    if (n > 0)
        qsort(segs, n, sizeof(*segs), cmp_seg);
    for (size_t i = 0; i < n; i++) {
        s = segs[i];
        segs[i] = NULL;
        list_append(j, s);
        j->n_segments++;
        r = load_segment(j, s, ret_error);
        j->bytes += s->size;
        if (r < 0)
            goto out;
        if (s->prev && s->first_seq < s->prev->next_seq) {
            set_error(ret_error, "%s: segments %s and %s overlap (seq %llu); move one away", j->dir,
                      s->prev->name, s->name, (unsigned long long)s->first_seq);
            r = -EBADMSG;
            goto out;
        }
        if (s->prev && s->first_seq > s->prev->next_seq)
            gw_warn(MODULE, "%s: seq %llu..%llu missing between %s and %s (lost to a power loss)",
                    j->dir, (unsigned long long)s->prev->next_seq,
                    (unsigned long long)(s->first_seq - 1), s->prev->name, s->name);
        if (s->prev)
            s->prev->sealed = true;
    }
    /* Taken before empty segments go: the last one's name may be all that
     * remembers the next seq. */
    if (j->tail)
        j->next_seq = j->tail->next_seq;
    /* Segments without a record are of no use to anyone, except the last
     * one, which can take the next appends if it has room. */
    for (s = j->head; s;) {
        struct segment *next = s->next;

        if (s->end == 0 && (next || s->size < MIN_SEGMENT_BYTES)) {
            s->sealed = true;
            remove_segment(j, s);
        }
        s = next;
    }
out:
    for (size_t i = 0; i < n; i++)
        if (segs[i])
            seg_destroy(segs[i]);
    free(segs);
    closedir(d);
    return r;
}

/* ---- open and close ------------------------------------------------------ */

static bool valid_consumer_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > MAX_CONSUMER_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int check_options(const struct gw_journal_options *o, uint64_t *ret_segment_bytes,
                         char **ret_error)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t seg;

    if (!o->dir || !*o->dir) {
        set_error(ret_error, "journal: no directory given");
        return -EINVAL;
    }
    if (page <= 0)
        page = 4096;
    seg = o->segment_bytes < MIN_SEGMENT_BYTES ? MIN_SEGMENT_BYTES : o->segment_bytes;
    /* Whole pages: the mapping covers the file exactly. */
    seg = (seg + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    if (seg > MAX_SEGMENT_BYTES) {
        set_error(ret_error, "journal %s: segment_bytes %llu is above the limit of %llu", o->dir,
                  (unsigned long long)o->segment_bytes, (unsigned long long)MAX_SEGMENT_BYTES);
        return -EINVAL;
    }
    if (o->max_bytes / 2 < seg) {
        set_error(ret_error,
                  "journal %s: max_bytes %llu must hold at least two segments of %llu bytes",
                  o->dir, (unsigned long long)o->max_bytes, (unsigned long long)seg);
        return -EINVAL;
    }
    if (o->max_bytes / seg > MAX_SEGMENTS) {
        set_error(ret_error,
                  "journal %s: max_bytes %llu makes more than %d segments of %llu bytes; "
                  "raise segment_bytes",
                  o->dir, (unsigned long long)o->max_bytes, MAX_SEGMENTS, (unsigned long long)seg);
        return -EINVAL;
    }
    if (o->fsync_interval_ms <= 0) {
        set_error(ret_error, "journal %s: fsync_interval_ms must be positive", o->dir);
        return -EINVAL;
    }
    if (o->full_policy != GW_JOURNAL_BLOCK && o->full_policy != GW_JOURNAL_DROP_OLDEST) {
        set_error(ret_error, "journal %s: unknown full policy %d", o->dir, (int)o->full_policy);
        return -EINVAL;
    }
    if (o->n_consumers > 0 && !o->consumers) {
        set_error(ret_error, "journal %s: consumers missing", o->dir);
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_consumers; i++) {
        if (!valid_consumer_name(o->consumers[i])) {
            set_error(ret_error,
                      "journal %s: consumer name \"%s\" must be 1 to %d of A-Z a-z 0-9 _ - .",
                      o->dir, o->consumers[i] ? o->consumers[i] : "", MAX_CONSUMER_NAME);
            return -EINVAL;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(o->consumers[i], o->consumers[k]) == 0) {
                set_error(ret_error, "journal %s: consumer \"%s\" named twice", o->dir,
                          o->consumers[i]);
                return -EINVAL;
            }
    }
    *ret_segment_bytes = seg;
    return 0;
}

static void journal_free(struct gw_journal *j)
{
    while (j->head) {
        struct segment *s = j->head;

        list_remove(j, s);
        seg_unref(s);
    }
    for (size_t i = 0; i < j->n_consumers; i++) {
        if (j->consumers[i].fd >= 0)
            close(j->consumers[i].fd);
        free(j->consumers[i].name);
    }
    free(j->consumers);
    if (j->dir_fd >= 0)
        close(j->dir_fd);
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    pthread_cond_destroy(&j->sync_cond);
    pthread_cond_destroy(&j->space_cond);
    pthread_cond_destroy(&j->data_cond);
    pthread_mutex_destroy(&j->lock);
    free(j->dir);
    free(j);
}

struct gw_journal *gw_journal_open(const struct gw_journal_options *options, char **ret_error)
{
    struct gw_log_limit limit = GW_LOG_LIMIT_INIT(0.2, 3);
    pthread_condattr_t attr;
    struct gw_journal *j;
    uint64_t seg_bytes, oldest;
    int r;

    pthread_once(&crc_once, crc_init);
    if (check_options(options, &seg_bytes, ret_error) < 0)
        return NULL;
    j = calloc(1, sizeof(*j));
    if (!j) {
        set_error(ret_error, "journal %s: out of memory", options->dir);
        return NULL;
    }
    pthread_mutex_init(&j->lock, NULL);
    /* Timed waits on the monotonic clock: a wall-clock jump must not
     * stall a reader or the fsync thread. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&j->data_cond, &attr);
    pthread_cond_init(&j->sync_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&j->space_cond, NULL);
    j->dir_fd = -1;
    j->lock_fd = -1;
    j->max_bytes = options->max_bytes;
    j->segment_bytes = seg_bytes;
    j->fsync_bytes = options->fsync_bytes;
    j->fsync_interval_ms = options->fsync_interval_ms;
    j->policy = options->full_policy;
    j->next_seq = 1;
    j->drop_limit = limit;
    j->bad_limit = limit;
    j->alloc_limit = limit;
    j->dir = strdup(options->dir);
    j->consumers = calloc(options->n_consumers ? options->n_consumers : 1, sizeof(*j->consumers));
    if (!j->dir || !j->consumers) {
        set_error(ret_error, "journal %s: out of memory", options->dir);
        goto fail;
    }
    for (size_t i = 0; i < options->n_consumers; i++) {
        j->consumers[i].fd = -1;
        j->consumers[i].name = strdup(options->consumers[i]);
        j->n_consumers++;
        if (!j->consumers[i].name) {
            set_error(ret_error, "journal %s: out of memory", options->dir);
            goto fail;
        }
    }

    r = gw_mkdir_p(j->dir);
    if (r < 0) {
        set_error(ret_error, "%s: cannot create: %s", j->dir, strerror(-r));
        goto fail;
    }
    j->dir_fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dir_fd < 0) {
        set_error(ret_error, "%s: %s", j->dir, strerror(errno));
        goto fail;
    }
    /* Two processes appending to one journal would corrupt it. */
    j->lock_fd = openat(j->dir_fd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (j->lock_fd < 0) {
        set_error(ret_error, "%s/%s: %s", j->dir, LOCK_NAME, strerror(errno));
        goto fail;
    }
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        set_error(ret_error, "%s: %s", j->dir,
                  errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
        goto fail;
    }
    if (load_segments(j, ret_error) < 0)
        goto fail;

    oldest = j->head ? j->head->first_seq : j->next_seq;
    for (size_t i = 0; i < j->n_consumers; i++) {
        struct consumer *c = &j->consumers[i];

        if (open_position(j, c, oldest, ret_error) < 0)
            goto fail;
        /* Sequence numbers never go back, even when the segments that held
         * a committed record are gone. */
        if (c->committed >= j->next_seq)
            j->next_seq = c->committed + 1;
    }
    if (j->tail && j->tail->next_seq != j->next_seq)
        j->tail->sealed = true;
    delete_passed(j);
    /* The active segment's name keeps next_seq across a restart. */
    if ((!j->tail || j->tail->sealed) && j->bytes + j->segment_bytes <= j->max_bytes) {
        r = create_segment(j);
        if (r < 0) {
            set_error(ret_error, "%s/%020llu%s: %s", j->dir, (unsigned long long)j->next_seq,
                      SEG_SUFFIX, strerror(-r));
            goto fail;
        }
    }
    /* Make the cuts and the new files durable before anyone relies on them. */
    pthread_mutex_lock(&j->lock);
    sync_pass(j);
    pthread_mutex_unlock(&j->lock);
    if (j->io_error) {
        set_error(ret_error, "%s: fsync: %s", j->dir, strerror(-j->io_error));
        goto fail;
    }
    r = pthread_create(&j->sync_thread, NULL, sync_main, j);
    if (r != 0) {
        set_error(ret_error, "journal %s: cannot start the fsync thread: %s", j->dir, strerror(r));
        goto fail;
    }
    j->sync_started = true;
    gw_info(MODULE, "%s: %llu segments, %llu bytes, next seq %llu%s", j->dir,
            (unsigned long long)j->n_segments, (unsigned long long)j->bytes,
            (unsigned long long)j->next_seq, j->st.torn_bytes_cut ? " (torn tail cut)" : "");
    return j;

fail:
    journal_free(j);
    return NULL;
}

void gw_journal_shutdown(struct gw_journal *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->shutdown = true;
    pthread_cond_broadcast(&j->data_cond);
    pthread_cond_broadcast(&j->space_cond);
    pthread_mutex_unlock(&j->lock);
}

void gw_journal_close(struct gw_journal *j)
{
    if (!j)
        return;
    gw_journal_shutdown(j);
    if (j->sync_started) {
        pthread_mutex_lock(&j->lock);
        j->stop_sync = true;
        pthread_cond_signal(&j->sync_cond);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->sync_thread, NULL);
    }
    pthread_mutex_lock(&j->lock);
    if (j->open_cursors > 0)
        gw_error(MODULE, "%s: closed with %d cursors still open (they leak)", j->dir,
                 j->open_cursors);
    sync_pass(j);
    pthread_mutex_unlock(&j->lock);
    journal_free(j);
}

/* ---- cursors ------------------------------------------------------------- */

/* Under the lock: puts the cursor on the first segment that can hold
 * next_seq, skipping ahead over records that are gone (dropped, deleted
 * after every consumer committed them, or lost to a power loss). */
static void cursor_seek(struct gw_journal_cursor *c)
{
    struct segment *s;

    for (s = c->j->head; s; s = s->next)
        if (!s->sealed || s->next_seq > c->next_seq)
            break;
    if (s != c->seg) {
        seg_unref(c->seg);
        c->seg = s;
        c->pos = 0;
        c->released = 0;
        if (s) {
            seg_ref(s);
            if (s->first_seq >= c->next_seq) {
                c->next_seq = s->first_seq;
            } else {
                /* Resuming in the middle: records are known good here. */
                uint64_t seq = s->first_seq;

                while (c->pos < s->end && seq < c->next_seq) {
                    uint32_t len;

                    memcpy(&len, s->map + c->pos, sizeof(len));
                    c->pos += rec_size(le32toh(len));
                    seq++;
                }
                c->next_seq = seq;
            }
        }
    }
    c->avail = s ? s->end : 0;
}

struct gw_journal_cursor *gw_journal_cursor_open(struct gw_journal *j, const char *consumer)
{
    struct gw_journal_cursor *c;
    struct consumer *cons = NULL;

    for (size_t i = 0; i < j->n_consumers && consumer; i++)
        if (strcmp(j->consumers[i].name, consumer) == 0)
            cons = &j->consumers[i];
    if (!cons) {
        gw_error(MODULE, "%s: no consumer \"%s\" (configure it in the journal's consumers)", j->dir,
                 consumer ? consumer : "(null)");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        gw_error(MODULE, "%s: consumer \"%s\": out of memory", j->dir, consumer);
        return NULL;
    }
    pthread_mutex_lock(&j->lock);
    if (cons->has_cursor) {
        pthread_mutex_unlock(&j->lock);
        gw_error(MODULE, "%s: consumer \"%s\" already has a cursor", j->dir, consumer);
        free(c);
        return NULL;
    }
    cons->has_cursor = true;
    j->open_cursors++;
    c->j = j;
    c->cons = cons;
    c->next_seq = cons->committed + 1;
    cursor_seek(c);
    pthread_mutex_unlock(&j->lock);
    return c;
}

void gw_journal_cursor_free(struct gw_journal_cursor *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->j->lock);
    c->cons->has_cursor = false;
    c->j->open_cursors--;
    seg_unref(c->seg);
    pthread_mutex_unlock(&c->j->lock);
    free(c);
}

/* How long a reader that has caught up lets records gather before it
 * sleeps until an append wakes it. Without it each consumer (rule
 * workers, the InfluxDB feeder) wakes for every record at a few tens of
 * thousands a second and takes the CPU from the adapter thread that
 * appends them: measured with CoAP, 77,000 wakeups per 200,000 records
 * fell to 3,600 and the CoAP thread's rate rose by a third, for at most
 * this much more latency (docs/benchmarks.md, "End to end"). */
#define READER_LINGER_US 1000

/* The pages a cursor has read past, it gives back to the kernel in
 * chunks of this size: the mapping is shared with the file, so the pages
 * stay in the page cache (dirty ones are still written back and synced)
 * and a slower cursor that touches them again only takes a minor fault;
 * but they no longer count in gridgate's resident memory, where two
 * segments' worth of already-handled readings (128 MB by default) would
 * otherwise sit until the segment is deleted. */
#define RELEASE_CHUNK (1u << 20)

static void release_read_pages(struct gw_journal_cursor *c, uint64_t record_start)
{
    static uint64_t page;
    uint64_t upto;

    if (!page)
        page = (uint64_t)sysconf(_SC_PAGESIZE);
    upto = record_start & ~(page - 1); /* the record being handed out stays mapped */
    if (upto > c->released &&
        madvise(c->seg->map + c->released, upto - c->released, MADV_DONTNEED) == 0)
        c->released = upto;
}

/* Under the lock: waits until the cursor has a record to read. */
static int cursor_wait(struct gw_journal_cursor *c, int timeout_ms, struct timespec *deadline,
                       bool *have_deadline)
{
    struct gw_journal *j = c->j;
    bool expired = false, lingered = false;

    for (;;) {
        struct segment *s = c->seg;

        if (!s || __atomic_load_n(&s->removed, __ATOMIC_ACQUIRE) || (c->pos >= s->end && s->sealed))
            cursor_seek(c);
        else
            c->avail = s->end;
        if (c->seg && c->pos < c->avail)
            return 0;
        if (j->shutdown)
            return -ESHUTDOWN;
        if (timeout_ms == 0 || expired)
            return -EAGAIN;
        if (!lingered) { /* once per wait, then the checks above again */
            lingered = true;
            pthread_mutex_unlock(&j->lock);
            usleep(READER_LINGER_US);
            pthread_mutex_lock(&j->lock);
            continue;
        }
        j->readers_waiting++;
        if (timeout_ms < 0) {
            pthread_cond_wait(&j->data_cond, &j->lock);
        } else {
            if (!*have_deadline) {
                deadline_after(deadline, timeout_ms);
                *have_deadline = true;
            }
            if (pthread_cond_timedwait(&j->data_cond, &j->lock, deadline) == ETIMEDOUT)
                expired = true;
        }
        j->readers_waiting--;
    }
}

/* A record that fails its checks after open (a damaged page read back from
 * disk, or the file changed under us) is never handed out. */
static int skip_bad(struct gw_journal_cursor *c)
{
    struct gw_journal *j = c->j;
    struct segment *s = c->seg;
    int r = 0;

    pthread_mutex_lock(&j->lock);
    gw_log_limited(&j->bad_limit, GW_LOG_ERROR, MODULE,
                   "%s/%s: record seq %llu at offset %llu fails its checksum; %s", j->dir, s->name,
                   (unsigned long long)c->next_seq, (unsigned long long)c->pos,
                   s->sealed ? "skipping the rest of the segment" : "cannot read past it");
    if (s->sealed) {
        j->st.torn_bytes_cut += s->end - c->pos;
        c->pos = c->avail = s->end;
        c->next_seq = s->next_seq;
    } else {
        r = -EIO;
    }
    pthread_mutex_unlock(&j->lock);
    return r;
}

int gw_journal_read(struct gw_journal_cursor *c, int timeout_ms, const void **ret_data,
                    size_t *ret_len, uint64_t *ret_seq)
{
    struct gw_journal *j = c->j;
    struct timespec deadline;
    bool have_deadline = false;
    int r;

    for (;;) {
        struct segment *s = c->seg;

        /* Records below avail were published under the lock and never
         * change, so they are read without it. A dropped segment stops
         * handing out records at once. */
        if (s && c->pos < c->avail && !__atomic_load_n(&s->removed, __ATOMIC_ACQUIRE)) {
            const uint8_t *p = s->map + c->pos;
            struct rec_hdr h;
            uint32_t len;

            memcpy(&h, p, HDR_SIZE);
            len = le32toh(h.len);
            if (len == 0 || rec_size(len) > c->avail - c->pos || le64toh(h.seq) != c->next_seq ||
                record_crc(len, p + HDR_SIZE) != le32toh(h.crc)) {
                r = skip_bad(c);
                if (r < 0)
                    return r;
                continue;
            }
            if (c->pos - c->released >= RELEASE_CHUNK)
                release_read_pages(c, c->pos);
            c->pos += rec_size(len);
            *ret_data = p + HDR_SIZE;
            *ret_len = len;
            *ret_seq = c->next_seq++;
            return 0;
        }
        pthread_mutex_lock(&j->lock);
        r = cursor_wait(c, timeout_ms, &deadline, &have_deadline);
        pthread_mutex_unlock(&j->lock);
        if (r < 0)
            return r;
    }
}

int gw_journal_commit(struct gw_journal_cursor *c, uint64_t seq)
{
    struct gw_journal *j = c->j;
    struct consumer *cons = c->cons;
    unsigned slot;
    int r;

    pthread_mutex_lock(&j->lock);
    if (seq >= j->next_seq) {
        pthread_mutex_unlock(&j->lock);
        return -EINVAL;
    }
    if (seq <= cons->committed) {
        pthread_mutex_unlock(&j->lock);
        return 0;
    }
    slot = cons->slot;
    pthread_mutex_unlock(&j->lock);

    /* Only this cursor's thread writes this file; no lock for the syscall.
     * The position is on disk before any segment it frees is deleted. */
    r = pos_write_slot(cons->fd, slot, seq);

    pthread_mutex_lock(&j->lock);
    if (r == 0) {
        cons->slot = slot ^ 1;
        cons->committed = seq;
        cons->dirty = true;
        delete_passed(j);
    }
    pthread_mutex_unlock(&j->lock);
    return r;
}

uint64_t gw_journal_cursor_lag(struct gw_journal_cursor *c)
{
    struct gw_journal *j = c->j;
    uint64_t base, lag;

    pthread_mutex_lock(&j->lock);
    base = c->cons->committed;
    /* What was dropped is no longer lag. */
    if (j->head && j->head->first_seq > base + 1)
        base = j->head->first_seq - 1;
    lag = j->next_seq - 1 > base ? j->next_seq - 1 - base : 0;
    pthread_mutex_unlock(&j->lock);
    return lag;
}

void gw_journal_stats(struct gw_journal *j, struct gw_journal_stats *ret_stats)
{
    pthread_mutex_lock(&j->lock);
    *ret_stats = j->st;
    ret_stats->bytes = j->bytes;
    ret_stats->segments = j->n_segments;
    ret_stats->next_seq = j->next_seq;
    pthread_mutex_unlock(&j->lock);
}
