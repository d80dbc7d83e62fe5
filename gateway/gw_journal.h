/* gw_journal: the on-disk journal every accepted reading goes through
 * (DESIGN.md, "The journal").
 *
 * Owns the journal directory: segment files of checksummed records, one
 * committed position per named consumer, and the thread that groups
 * fsyncs. Records are opaque bytes to it; what they mean is the
 * pipeline's business. Producers (adapter threads) append concurrently;
 * each consumer reads through its own cursor from one thread.
 *
 * Guarantees: a record is in the page cache (it survives a crash of the
 * process) when gw_journal_append() returns, and on disk (it survives a
 * power loss) at most fsync_interval_ms later. A record torn by a crash
 * at the tail is detected by its checksum and cut on open, never handed
 * to a consumer. A consumer resumes after the last position it committed;
 * records it read but did not commit are read again (at least once).
 */
#ifndef GW_JOURNAL_H
#define GW_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

enum gw_journal_full_policy {
    GW_JOURNAL_BLOCK,       /* append waits until consumers free space */
    GW_JOURNAL_DROP_OLDEST, /* the oldest segment goes, unread records counted as dropped */
};

struct gw_journal_options {
    const char *dir;             /* created if missing */
    uint64_t max_bytes;          /* bound on all segments together */
    uint64_t segment_bytes;      /* size of one segment file */
    int fsync_interval_ms;       /* fsync at most this long after a write */
    uint64_t fsync_bytes;        /* ... or once this much was written */
    enum gw_journal_full_policy full_policy;
    const char *const *consumers; /* names of the consumers, e.g. "rules", "influx" */
    size_t n_consumers;
};

struct gw_journal_stats {
    uint64_t appended;        /* records since open */
    uint64_t appended_bytes;
    uint64_t dropped;         /* records lost to drop_oldest */
    uint64_t blocked_appends; /* appends that had to wait for space */
    uint64_t fsyncs;
    uint64_t torn_bytes_cut;  /* cut from the tail on open */
    uint64_t bytes;           /* on disk now */
    uint64_t segments;
    uint64_t next_seq;        /* sequence number the next record gets */
};

struct gw_journal;
struct gw_journal_cursor;

/* Opens or creates the journal, checks every segment's tail and cuts a
 * torn record. On failure returns NULL and sets *ret_error (malloc'd,
 * naming the directory or file). */
struct gw_journal *gw_journal_open(const struct gw_journal_options *options, char **ret_error);
/* Wakes every waiter (appends return -ESHUTDOWN, reads drain then end),
 * fsyncs, and frees. Cursors must be freed first. NULL is fine. */
void gw_journal_close(struct gw_journal *j);
/* Stops appends and wakes waiting readers so they can drain and finish,
 * without freeing anything (for an orderly shutdown). */
void gw_journal_shutdown(struct gw_journal *j);

/* Appends one record of len bytes (1 <= len <= a segment's payload room).
 * Returns 0 and writes its sequence number (if ret_seq), -EMSGSIZE,
 * -ESHUTDOWN after shutdown, or a negative errno of the file system (the
 * journal cannot take records: the caller must not acknowledge). Under
 * GW_JOURNAL_BLOCK it waits while the journal is full. */
int gw_journal_append(struct gw_journal *j, const void *data, size_t len, uint64_t *ret_seq);

/* A reader positioned after the consumer's committed position. The name
 * must be one of the options' consumers. NULL on error (logged). */
struct gw_journal_cursor *gw_journal_cursor_open(struct gw_journal *j, const char *consumer);
void gw_journal_cursor_free(struct gw_journal_cursor *c);

/* The next record: 0 with *ret_data, *ret_len (valid until the next call
 * on this cursor) and *ret_seq; -EAGAIN when none came within timeout_ms
 * (negative: wait forever); -ESHUTDOWN once the journal is shut down and
 * this cursor has read everything. Records dropped under drop_oldest are
 * skipped (and counted in stats). */
int gw_journal_read(struct gw_journal_cursor *c, int timeout_ms, const void **ret_data,
                    size_t *ret_len, uint64_t *ret_seq);

/* Everything up to and including seq is done with: persist it as the
 * consumer's position (write() now; fsynced with the group) and let the
 * journal delete segments every consumer has passed. */
int gw_journal_commit(struct gw_journal_cursor *c, uint64_t seq);

/* Records appended but not yet committed by this consumer. */
uint64_t gw_journal_cursor_lag(struct gw_journal_cursor *c);

void gw_journal_stats(struct gw_journal *j, struct gw_journal_stats *ret_stats);

#endif
