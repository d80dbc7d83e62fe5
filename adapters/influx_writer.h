/* influx_writer: sends line protocol to InfluxDB 1.x over HTTP, from a
 * thread of its own.
 *
 * Owns a bounded in-memory queue of whole lines, one CURL easy handle
 * (run on a multi handle that keeps the connection alive) and the thread that batches lines by
 * count and by age, POSTs them to /write and retries with capped backoff while InfluxDB is
 * unreachable or refusing. Does not own the text of a line (influx_line builds it), the journal, or
 * any decision about what to send.
 *
 * Walking-skeleton note: the queue is the writer's input side. It is read
 * the way a journal cursor will be: a batch is copied from the committed
 * position, and committed only once InfluxDB has answered it for good. A
 * later issue replaces the queue with a journal consumer; the batching,
 * HTTP and retry code stay as they are.
 *
 * Answers: 2xx, written. 400, InfluxDB refused some lines (bad line
 * protocol, field type conflict) and, being 1.x, kept the others: the
 * refused ones are counted in points_rejected and logged, the batch is not
 * retried. 413, the batch is split in halves and the smaller size kept (a
 * single line too large is rejected).
 * Anything else (401, 403, 404 database not found, 5xx), a connection error
 * or a timeout: logged, rate-limited, and the same batch retried after
 * 100 ms doubling to 5 s, with jitter, while new lines keep queueing up to
 * the bound.
 *
 * Delivery: at least once while the process lives. A batch is retried until
 * InfluxDB answers 2xx or 400; lines still queued when the drain deadline of
 * influx_writer_shutdown() passes are counted as dropped and logged. A
 * batch that timed out may have been written anyway and is sent again;
 * InfluxDB overwrites a point with the same series and timestamp, so the
 * repeat is harmless.
 */
#ifndef INFLUX_WRITER_H
#define INFLUX_WRITER_H

#include <stddef.h>
#include <stdint.h>

struct influx_writer;

/* A value of 0 picks the default given on its right. The strings are
 * copied by influx_writer_start(). */
struct influx_writer_options {
    const char *url;              /* "http://127.0.0.1:8086", optional path prefix, no query */
    const char *database;         /* required */
    const char *retention_policy; /* NULL: the database's default */
    const char *username;         /* NULL: no authentication; sent as HTTP basic auth */
    const char *password;         /* NULL: empty */
    int batch_size;               /* lines per POST, 5000 */
    int flush_interval_ms;        /* longest a line waits for its batch to fill, 1000 */
    int timeout_ms;               /* whole request, connect included, 10000 */
    size_t queue_bytes;           /* bound on queued text, 64 MiB; submit blocks above it */
};

#define INFLUX_WRITER_DEFAULT_BATCH_SIZE 5000
#define INFLUX_WRITER_DEFAULT_FLUSH_INTERVAL_MS 1000
#define INFLUX_WRITER_DEFAULT_TIMEOUT_MS 10000
#define INFLUX_WRITER_DEFAULT_QUEUE_BYTES ((size_t)64 << 20)

struct influx_writer_stats {
    uint64_t points_written;  /* lines InfluxDB kept (2xx, and the good lines of a 400) */
    uint64_t batches_written; /* POSTs answered 2xx */
    uint64_t write_errors;    /* POSTs that failed: no answer, timeout, or a status not 2xx */
    uint64_t retries;         /* POSTs that repeated a batch after a failure */
    uint64_t points_rejected; /* lines InfluxDB refused with 400 (bad line, type conflict) */
    uint64_t points_dropped;  /* lines given up on when the drain deadline passed */
    uint64_t queue_bytes;     /* text queued now, the batch in flight included */
    uint64_t queue_lines;
    uint64_t lines_done;      /* lines answered for good (kept or refused), in submit order */
    uint64_t last_latency_us; /* duration of the last POST that got an HTTP answer */
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
