/* influx_writer: sends line protocol to InfluxDB over HTTP (the 1.x /write
 * API, or 2.x's /api/v2/write), from a thread of its own.
 *
 * Owns a bounded in-memory queue of whole lines, one CURL easy handle per request in flight
 * (run on a multi handle that keeps the connections alive) and the thread that batches lines by
 * count and by age, POSTs them (gzip-compressed when asked), up to max_in_flight batches at
 * once, and retries each with capped backoff while
 * InfluxDB is unreachable or refusing, and appends the lines InfluxDB refuses to the dead-letter
 * file. Does not own the text of a line (influx_line builds it), the journal, or any decision
 * about what to send.
 *
 * Walking-skeleton note: the queue is the writer's input side. It is read
 * the way a journal cursor will be: a batch is copied from the committed
 * position, and committed only once InfluxDB has answered it for good. A
 * later issue replaces the queue with a journal consumer; the batching,
 * HTTP and retry code stay as they are.
 *
 * Answers: 2xx, written. 400 (2.x: also 422), InfluxDB refused some lines
 * (bad line protocol, field type conflict) and kept the others: the
 * refused lines are counted in points_rejected, appended to the dead-letter
 * file (each after a "# <RFC 3339 time> <InfluxDB's reason>" comment line;
 * when the answer does not say which lines it refused, the whole batch
 * after one comment that says so), counted in points_dead_lettered and
 * never retried. 413, the batch is split in halves and the smaller size
 * kept (a single line too large is refused like a 400).
 * 401, 403, 404 and 1.x's "retention policy not found" (a 500 in 1.6; bad
 * credentials, no right to write, no such database, bucket or retention
 * policy): logged at error level, rate-limited, naming the cause, and
 * retried like 5xx, a connection error or a timeout: the same batch again
 * after 100 ms doubling to 5 s, each wait drawn between half and all of
 * that, while new lines keep queueing up to the bound. Nothing is thrown
 * away while InfluxDB misbehaves.
 *
 * Concurrency: InfluxDB takes more points per second with two or more
 * writes in flight (it parses one while it indexes another), so the
 * thread keeps up to max_in_flight batches on the wire, each on its own
 * connection, each retried and backed off on its own. Answers may come in
 * any order; lines_done only moves over a batch once it and every batch
 * before it were answered for good, so it still counts lines in submit
 * order. A 400 refusing lines of one batch dead-letters them while the
 * others are in flight, and that batch counts as done in its turn.
 *
 * Delivery: at least once while the process lives. A batch is retried
 * until InfluxDB answers 2xx or refuses lines (400, 422); lines still
 * queued when the drain deadline of influx_writer_shutdown() passes are
 * counted as dropped and logged. A
 * batch that timed out may have been written anyway and is sent again;
 * InfluxDB overwrites a point with the same series and timestamp, so the
 * repeat is harmless.
 */
#ifndef INFLUX_WRITER_H
#define INFLUX_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct influx_writer;

/* A value of 0 picks the default given on its right. The strings are
 * copied by influx_writer_start(). */
struct influx_writer_options {
    const char *url;              /* "http://127.0.0.1:8086", optional path prefix, no query */
    int version;                  /* write API: 1 (/write, the default) or 2 (/api/v2/write) */
    const char *database;         /* 1.x: required; 2.x: the bucket when bucket is NULL */
    const char *retention_policy; /* 1.x; NULL: the database's default */
    const char *username;         /* 1.x; NULL: no authentication; sent as HTTP basic auth */
    const char *password;         /* 1.x; NULL: empty */
    const char *org;              /* 2.x: required (the organisation's name) */
    const char *bucket;           /* 2.x; NULL: database */
    const char *token;            /* 2.x; "Authorization: Token ..."; NULL: none sent */
    bool gzip;                    /* Content-Encoding: gzip request bodies; false: plain */
    /* Lines InfluxDB refuses (400) are appended here, the file created 0640
     * if missing (not its directory); start fails when it cannot be opened
     * for appending. NULL: refused lines are only counted and logged. */
    const char *dead_letter_path;
    int batch_size;        /* lines per POST, 5000 */
    int flush_interval_ms; /* longest a line waits for its batch to fill, 1000 */
    /* Whole request, connect included, 30000: a batch that creates
     * thousands of new series takes InfluxDB seconds to index, and one
     * that times out is sent again, adding to the load that slowed it. */
    int timeout_ms;
    size_t queue_bytes; /* bound on queued text, 64 MiB; submit blocks above it */
    int max_in_flight;  /* write requests at once, 1..INFLUX_WRITER_MAX_IN_FLIGHT, 2 */
};

#define INFLUX_WRITER_DEFAULT_BATCH_SIZE 5000
#define INFLUX_WRITER_DEFAULT_FLUSH_INTERVAL_MS 1000
#define INFLUX_WRITER_DEFAULT_TIMEOUT_MS 30000
#define INFLUX_WRITER_DEFAULT_QUEUE_BYTES ((size_t)64 << 20)
#define INFLUX_WRITER_DEFAULT_MAX_IN_FLIGHT 2
#define INFLUX_WRITER_MAX_IN_FLIGHT 8

struct influx_writer_stats {
    uint64_t points_written;  /* lines InfluxDB kept (2xx, and the good lines of a 400) */
    uint64_t batches_written; /* POSTs answered 2xx */
    uint64_t write_errors;    /* POSTs that failed: no answer, timeout, or a status not 2xx */
    uint64_t retries;         /* POSTs that repeated a batch after a failure */
    uint64_t points_rejected; /* lines InfluxDB refused with 400 (bad line, type conflict) */
    /* Lines appended to the dead-letter file: the refused ones, or whole
     * batches when InfluxDB did not say which lines it refused. */
    uint64_t points_dead_lettered;
    /* Refused lines the dead-letter file could not take (disk full, the
     * file replaced by a directory...): logged at error level, and gone. */
    uint64_t dead_letter_errors;
    uint64_t last_status;    /* HTTP status of the last answer, 0 before any */
    uint64_t points_dropped; /* lines given up on when the drain deadline passed */
    uint64_t queue_bytes;    /* text queued now, the batches in flight included */
    uint64_t queue_lines;
    uint64_t lines_done;      /* lines answered for good (kept or refused), in submit order */
    /* Duration of the last POST that got an HTTP answer (curl's total
     * time of that transfer: others in flight do not stretch it). */
    uint64_t last_latency_us;
    uint64_t max_latency_us;
};

/* Checks and copies the options, creates the CURL handle (curl_global_init
 * is done once per process, here) and starts the thread. InfluxDB need not
 * be up. Returns NULL on failure with a malloc'd message in *ret_error
 * (the caller frees it) when ret_error is not NULL. */
struct influx_writer *influx_writer_start(const struct influx_writer_options *o, char **ret_error);

/* Queues n_lines whole lines of line protocol (len bytes, each line ending
 * in '\n'), copying them; an empty submit (0, 0) does nothing. Blocks while the queue is over its
 * bound (back-pressure). Thread-safe. Returns 0; -EINVAL when the text is not n_lines whole lines;
 * -EMSGSIZE when len alone exceeds queue_bytes; -ENOMEM; -ESHUTDOWN once influx_writer_shutdown()
 * has begun, also for a call that was blocked. */
int influx_writer_submit(struct influx_writer *w, const char *lines, size_t len, size_t n_lines);

/* Stops the writer: from now on submit returns -ESHUTDOWN (blocked callers
 * wake with it); what is queued is sent at once, retried while the deadline
 * allows; the lines still unsent after drain_timeout_ms (negative counts as
 * 0) are counted in points_dropped and logged as an error; the thread is
 * joined. The stats stay readable until influx_writer_stop(). A second call
 * does nothing. Call it from one thread, never from a submitter. */
void influx_writer_shutdown(struct influx_writer *w, int drain_timeout_ms);

/* influx_writer_shutdown(), then frees the writer. NULL is fine. No other
 * call on w may run or follow. */
void influx_writer_stop(struct influx_writer *w, int drain_timeout_ms);

/* A consistent snapshot. Thread-safe. Lines are answered in the order
 * they were submitted, so a producer that counts the lines it submitted
 * knows from lines_done which of them InfluxDB has answered: that is how
 * a journal consumer knows what it may commit. */
void influx_writer_stats(struct influx_writer *w, struct influx_writer_stats *ret);

#endif
