#include "influx_writer.h"

#include "gw_buf.h"
#include "gw_log.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULE "influx"

#define BLOCK_MIN ((size_t)64 << 10)
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define RESPONSE_MAX ((size_t)1 << 20) /* a 400 echoes bad lines: keep it bounded */
#define LOG_BODY_MAX 400
#define BATCH_SIZE_MAX 1000000
#define INTERVAL_MAX_MS 3600000
#define NS_PER_MS INT64_C(1000000)

/* ------------------------------------------------------------------------
 * The input side: a FIFO of whole lines in blocks, read like a journal.
 *
 * queue_peek() copies the next batch from the committed position without
 * removing it; queue_commit() removes it once InfluxDB has answered it for
 * good. A retried batch therefore stays queued and counted against the
 * bound, which is what a journal cursor will give for free.
 * ---------------------------------------------------------------------- */

struct block {
    struct block *next;
    size_t len; /* bytes used */
    size_t cap;
    size_t n_lines; /* lines in data[0, len) */
    char data[];
};

/* A line boundary: offset in a block and the lines of that block before it. */
struct qpos {
    struct block *block;
    size_t off;
    size_t lines;
};

struct queue {
    struct block *head, *tail;
    size_t head_off, head_lines; /* committed position inside head */
    size_t bytes, lines;         /* from the committed position on */
    size_t pending_lines;        /* lines not in the batch in flight */
    int64_t pending_since_ns;    /* when the oldest pending line came; 0: due now */
};

static int queue_push(struct queue *q, const char *text, size_t len, size_t n_lines, int64_t now)
{
    struct block *b = q->tail;

    if (!b || b->cap - b->len < len) {
        size_t cap = len > BLOCK_MIN ? len : BLOCK_MIN;

        b = malloc(sizeof(*b) + cap);
        if (!b)
            return -ENOMEM;
        b->next = NULL;
        b->len = 0;
        b->cap = cap;
        b->n_lines = 0;
        if (q->tail) {
            q->tail->next = b;
        } else {
            q->head = b;
            q->head_off = q->head_lines = 0;
        }
        q->tail = b;
    }
    memcpy(b->data + b->len, text, len);
    b->len += len;
    b->n_lines += n_lines;
    q->bytes += len;
    q->lines += n_lines;
    if (q->pending_lines == 0)
        q->pending_since_ns = now;
    q->pending_lines += n_lines;
    return 0;
}

/* Copies up to max_lines lines from the committed position into body.
 * Returns the number of lines copied (the batch), or -ENOMEM. */
static long queue_peek(struct queue *q, struct gw_buf *body, size_t max_lines, struct qpos *ret_end)
{
    struct qpos p = { q->head, q->head_off, q->head_lines };
    size_t taken = 0;
    size_t before = q->pending_lines;

    gw_buf_reset(body);
    while (p.block && taken < max_lines) {
        struct block *b = p.block;
        size_t avail = b->n_lines - p.lines;
        size_t n = max_lines - taken;
        size_t end = b->len;

        if (avail <= n) {
            n = avail;
        } else {
            end = p.off;
            for (size_t i = 0; i < n; i++) {
                /* submit counted the newlines: there is one */
                const char *nl = memchr(b->data + end, '\n', b->len - end);
                end = (size_t)(nl - b->data) + 1;
            }
        }
        if (gw_buf_append(body, b->data + p.off, end - p.off) < 0)
            return -ENOMEM;
        taken += n;
        p.off = end;
        p.lines += n;
        if (p.off < b->len || !b->next)
            break;
        p.block = b->next;
        p.off = p.lines = 0;
    }
    q->pending_lines = q->lines - taken;
    /* Lines handed back by a smaller re-peek were already due. */
    if (q->pending_lines > before)
        q->pending_since_ns = 0;
    *ret_end = p;
    return (long)taken;
}

static void queue_commit(struct queue *q, const struct qpos *end, size_t n_lines, size_t n_bytes)
{
    struct block *b;

    while (q->head != end->block) {
        b = q->head;
        q->head = b->next;
        free(b);
    }
    q->head_off = end->off;
    q->head_lines = end->lines;
    q->lines -= n_lines;
    q->bytes -= n_bytes;

    b = q->head;
    if (b && q->head_off == b->len) {
        q->head_off = q->head_lines = 0;
        if (b->next) {
            q->head = b->next;
            free(b);
        } else if (b->cap == BLOCK_MIN) {
            b->len = b->n_lines = 0; /* reuse the last block */
        } else {
            free(b);
            q->head = q->tail = NULL;
        }
    }
}

/* Frees everything queued; returns how many lines that was. */
static size_t queue_drop_all(struct queue *q)
{
    size_t lines = q->lines;

    while (q->head) {
        struct block *b = q->head;
        q->head = b->next;
        free(b);
    }
    memset(q, 0, sizeof(*q));
    return lines;
}

/* ------------------------------------------------------------------------
 * The writer.
 * ---------------------------------------------------------------------- */

struct influx_writer {
    /* Set by start, read-only afterwards. */
    char *base_url; /* for log lines */
    char *write_url;
    char *username;
    char *password;
    size_t batch_size;
    int64_t flush_interval_ns;
    int timeout_ms;
    size_t queue_bytes;

    /* lock guards q, stopping, idle, line_cap and stats. */
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* to the thread: lines queued, shutdown began */
    pthread_cond_t space; /* to submitters: the queue shrank, shutdown began */
    bool lock_ready, wake_ready, space_ready;
    struct queue q;
    bool stopping;
    bool idle;       /* the thread waits for a batch to become due */
    size_t line_cap; /* batch_size, halved after a 413 */
    struct influx_writer_stats stats;
    /* Monotonic drain deadline, 0 before shutdown. Atomic because the
     * thread reads it without the lock during a request. */
    _Atomic int64_t deadline_ns;

    /* Owned by the thread (by start before it runs). */
    CURL *curl;
    CURLM *multi; /* runs curl, keeps its connection; shutdown may wake it */
    struct curl_slist *headers;
    struct gw_buf body;
    struct gw_buf response;
    char curl_error[CURL_ERROR_SIZE];
    char last_error[256];
    uint32_t rng;
    struct gw_log_limit retry_limit;
    struct gw_log_limit reject_limit;

    /* Owned by the thread calling start and shutdown. */
    pthread_t thread;
    bool running; /* the thread exists and is not joined */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
    /* Never paired with curl_global_cleanup(): other modules may use curl,
     * and process exit frees it all. */
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t until_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(until_ns / 1000000000),
        .tv_nsec = (long)(until_ns % 1000000000),
    };
    pthread_cond_timedwait(cond, lock, &ts);
}

static bool deadline_passed(struct influx_writer *w)
{
    int64_t deadline = atomic_load(&w->deadline_ns);

    return deadline != 0 && gw_monotonic_ns() >= deadline;
}

static size_t on_response(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct gw_buf *b = userdata;
    size_t n = size * nmemb;
    size_t room = RESPONSE_MAX > b->len ? RESPONSE_MAX - b->len : 0;

    /* The body only feeds log lines and the 400 count: a failed append
     * loses detail, not data. */
    (void)gw_buf_append(b, data, n < room ? n : room);
    return n;
}

static uint32_t next_random(struct influx_writer *w)
{
    /* xorshift32: jitter only, no need for more */
    uint32_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w->rng = x;
    return x;
}

/* The response body without its trailing newline, for a log line. */
static int body_log_len(const struct gw_buf *b)
{
    size_t n = b->len;

    while (n > 0 && (b->data[n - 1] == '\n' || b->data[n - 1] == '\r'))
        n--;
    return (int)(n < LOG_BODY_MAX ? n : LOG_BODY_MAX);
}

static const char *body_text(const struct gw_buf *b)
{
    return b->data ? b->data : "";
}

/* How many lines a 400 refused. InfluxDB 1.x answers a partial write with
 * "partial write: <reason> dropped=N", where N counts points refused after
 * parsing (type conflicts, retention) and each unparsable line appears as
 * "unable to parse '...'" with dropped=0. Without "partial write" nothing
 * of the batch was written. */
static size_t count_rejected(const char *body, size_t n_lines)
{
    const char *p;
    const char *last = NULL;
    size_t rejected = 0;

    if (!strstr(body, "partial write"))
        return n_lines;
    for (p = body; (p = strstr(p, "dropped=")) != NULL; p++)
        last = p;
    if (last)
        rejected = (size_t)strtoull(last + strlen("dropped="), NULL, 10);
    for (p = body; (p = strstr(p, "unable to parse")) != NULL; p++)
        rejected++;
    return rejected < n_lines ? rejected : n_lines;
}

enum post_result {
    POST_OK,        /* 2xx: all written */
    POST_REJECTED,  /* 400: done, some or all lines refused */
    POST_TOO_LARGE, /* 413: split the batch */
    POST_RETRY,     /* no answer, timeout, or any other status */
};

/* Runs the transfer on the writer's multi handle, so that shutdown can
 * interrupt a request that hangs (curl_multi_wakeup) and the drain deadline
 * is kept to the millisecond. Returns the transfer's CURLcode, or
 * CURLE_ABORTED_BY_CALLBACK when the deadline passed first. */
static CURLcode perform(struct influx_writer *w)
{
    CURLcode rc = CURLE_ABORTED_BY_CALLBACK;
    int running = 1;
    CURLMcode mc;
    CURLMsg *msg;
    int left;

    mc = curl_multi_add_handle(w->multi, w->curl);
    while (mc == CURLM_OK) {
        int64_t deadline = atomic_load(&w->deadline_ns);
        int wait_ms = 1000;

        mc = curl_multi_perform(w->multi, &running);
        if (mc != CURLM_OK || !running)
            break;
        if (deadline != 0) {
            int64_t left_ns = deadline - gw_monotonic_ns();
            if (left_ns <= 0)
                break;
            if (left_ns < wait_ms * NS_PER_MS)
                wait_ms = (int)((left_ns + NS_PER_MS - 1) / NS_PER_MS);
        }
        mc = curl_multi_poll(w->multi, NULL, 0, wait_ms, NULL);
    }
    if (mc != CURLM_OK) {
        snprintf(w->curl_error, sizeof(w->curl_error), "%s", curl_multi_strerror(mc));
        rc = CURLE_FAILED_INIT;
    }
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == w->curl)
            rc = msg->data.result;
    }
    /* Mid-transfer, this closes the connection; otherwise the multi
     * handle's cache keeps it alive for the next request. */
    curl_multi_remove_handle(w->multi, w->curl);
    return rc;
}

/* One POST of w->body. Runs without the lock. */
static enum post_result post_batch(struct influx_writer *w, size_t n_lines, size_t *ret_rejected,
                                   int64_t *ret_latency_us)
{
    long status = 0;
    int64_t start;
    CURLcode rc;

    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, w->body.data);
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body.len);
    gw_buf_reset(&w->response);
    w->curl_error[0] = '\0';

    start = gw_monotonic_ns();
    rc = perform(w);
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(w->last_error, sizeof(w->last_error), "request cut at the drain deadline");
        return POST_RETRY;
    }
    if (rc != CURLE_OK) {
        snprintf(w->last_error, sizeof(w->last_error), "%s",
                 w->curl_error[0] ? w->curl_error : curl_easy_strerror(rc));
        return POST_RETRY;
    }
    *ret_latency_us = (gw_monotonic_ns() - start) / 1000;
    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300)
        return POST_OK;

    snprintf(w->last_error, sizeof(w->last_error), "HTTP %ld: %.*s", status,
             body_log_len(&w->response), body_text(&w->response));
    if (status == 400) {
        *ret_rejected = count_rejected(body_text(&w->response), n_lines);
        return POST_REJECTED;
    }
    if (status == 413)
        return POST_TOO_LARGE;
    return POST_RETRY;
}

/* Sleeps delay_ms with the lock released. Returns false when the drain
 * deadline passed instead. */
static bool backoff_wait(struct influx_writer *w, int delay_ms)
{
    int64_t until = gw_monotonic_ns() + delay_ms * NS_PER_MS;

    for (;;) {
        int64_t now = gw_monotonic_ns();
        int64_t deadline = atomic_load(&w->deadline_ns);
        int64_t wake_at = until;

        if (deadline != 0 && now >= deadline)
            return false;
        if (now >= until)
            return true;
        if (deadline != 0 && deadline < wake_at)
            wake_at = deadline;
        wait_until(&w->wake, &w->lock, wake_at);
    }
}

/* Sends the next batch until InfluxDB has answered it for good, with the
 * lock held on entry and exit. Returns 0, or -ETIMEDOUT when the drain
 * deadline passed first (the batch stays queued). */
static int send_batch(struct influx_writer *w)
{
    int delay_ms = BACKOFF_FIRST_MS;
    unsigned failures = 0;
    int64_t first_failure_ns = 0;
    struct qpos end;
    long n;

    n = queue_peek(&w->q, &w->body, w->line_cap, &end);
    for (;;) {
        enum post_result result = POST_RETRY;
        size_t rejected = 0;
        int64_t latency_us = -1;

        if (n < 0) {
            snprintf(w->last_error, sizeof(w->last_error), "out of memory for a batch");
        } else {
            pthread_mutex_unlock(&w->lock);
            result = post_batch(w, (size_t)n, &rejected, &latency_us);
            pthread_mutex_lock(&w->lock);
        }
        if (latency_us >= 0) {
            w->stats.last_latency_us = (uint64_t)latency_us;
            if ((uint64_t)latency_us > w->stats.max_latency_us)
                w->stats.max_latency_us = (uint64_t)latency_us;
        }

        if (result == POST_TOO_LARGE && n == 1) {
            /* one line too large for the server: it can never be written */
            result = POST_REJECTED;
            rejected = 1;
        }
        switch (result) {
        case POST_OK:
        case POST_REJECTED:
            if (result == POST_OK) {
                w->stats.batches_written++;
            } else {
                w->stats.write_errors++;
                w->stats.points_rejected += rejected;
                gw_log_limited(&w->reject_limit, GW_LOG_WARN, MODULE,
                               "InfluxDB refused %zu of %ld lines, not retried: %s", rejected, n,
                               w->last_error);
            }
            w->stats.points_written += (size_t)n - rejected;
            if (failures > 0)
                gw_info(
                    MODULE, "InfluxDB at %s takes writes again after %u failed attempts in %.1f s",
                    w->base_url, failures, (double)(gw_monotonic_ns() - first_failure_ns) / 1e9);
            queue_commit(&w->q, &end, (size_t)n, w->body.len);
            w->stats.lines_done += (size_t)n;
            pthread_cond_broadcast(&w->space);
            return 0;
        case POST_TOO_LARGE:
            w->stats.write_errors++;
            w->line_cap = (size_t)n / 2;
            gw_warn(
                MODULE,
                "InfluxDB at %s refused %ld lines (%zu bytes) as too large; sending at most %zu "
                "lines per request from now on (raise [http] max-body-size or lower batch_size)",
                w->base_url, n, w->body.len, w->line_cap);
            break;
        case POST_RETRY:
            w->stats.write_errors++;
            if (failures++ == 0)
                first_failure_ns = gw_monotonic_ns();
            if (deadline_passed(w))
                return -ETIMEDOUT;
            {
                /* jitter: between half and all of the current delay */
                int wait_ms = delay_ms / 2 + (int)(next_random(w) % (uint32_t)(delay_ms / 2 + 1));

                gw_log_limited(&w->retry_limit, GW_LOG_WARN, MODULE,
                               "cannot write to InfluxDB at %s: %s; retrying in %d ms "
                               "(%zu lines queued)",
                               w->base_url, w->last_error, wait_ms, w->q.lines);
                if (!backoff_wait(w, wait_ms))
                    return -ETIMEDOUT;
            }
            delay_ms = delay_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : delay_ms * 2;
            break;
        }
        w->stats.retries++;
        /* Peek again: the first time after a failed peek or a 413. */
        if (n < 0 || result == POST_TOO_LARGE)
            n = queue_peek(&w->q, &w->body, w->line_cap, &end);
    }
}

/* Waits, lock held, until a batch is due. Returns false when the thread
 * should end: shut down and nothing left, or the drain deadline passed. */
static bool wait_for_batch(struct influx_writer *w)
{
    for (;;) {
        int64_t now = gw_monotonic_ns();
        int64_t due;

        if (w->stopping)
            return w->q.lines > 0 && now < atomic_load(&w->deadline_ns);
        if (w->q.lines >= w->line_cap)
            return true;
        w->idle = true;
        if (w->q.lines == 0) {
            pthread_cond_wait(&w->wake, &w->lock);
        } else {
            due = w->q.pending_since_ns + w->flush_interval_ns;
            if (now >= due) {
                w->idle = false;
                return true;
            }
            wait_until(&w->wake, &w->lock, due);
        }
        w->idle = false;
    }
}

static void *writer_main(void *arg)
{
    struct influx_writer *w = arg;
    size_t bytes, lines;

    pthread_mutex_lock(&w->lock);
    while (wait_for_batch(w)) {
        if (send_batch(w) < 0)
            break;
    }
    bytes = w->q.bytes;
    lines = queue_drop_all(&w->q);
    if (lines > 0) {
        w->stats.points_dropped += lines;
        gw_error(MODULE,
                 "DROPPED %zu lines (%zu bytes) not written to InfluxDB at %s before the drain "
                 "deadline; last error: %s",
                 lines, bytes, w->base_url, w->last_error[0] ? w->last_error : "none");
    }
    pthread_cond_broadcast(&w->space);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void writer_free(struct influx_writer *w)
{
    if (!w)
        return;
    queue_drop_all(&w->q);
    if (w->curl)
        curl_easy_cleanup(w->curl);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_slist_free_all(w->headers);
    gw_buf_free(&w->body);
    gw_buf_free(&w->response);
    if (w->space_ready)
        pthread_cond_destroy(&w->space);
    if (w->wake_ready)
        pthread_cond_destroy(&w->wake);
    if (w->lock_ready)
        pthread_mutex_destroy(&w->lock);
    free(w->base_url);
    free(w->write_url);
    free(w->username);
    if (w->password) {
        memset(w->password, 0, strlen(w->password));
        free(w->password);
    }
    free(w);
}

/* Checks the options; on failure writes a message to err. */
static int check_options(const struct influx_writer_options *o, char *err, size_t err_size)
{
    if (!o->url || !*o->url) {
        snprintf(err, err_size, "influx: url is required");
        return -EINVAL;
    }
    if (!o->database || !*o->database) {
        snprintf(err, err_size, "influx: database is required");
        return -EINVAL;
    }
    if (o->retention_policy && !*o->retention_policy) {
        snprintf(err, err_size,
                 "influx: retention_policy is empty (leave it unset for the default)");
        return -EINVAL;
    }
    if (o->batch_size < 0 || o->batch_size > BATCH_SIZE_MAX) {
        snprintf(err, err_size, "influx: batch_size %d is out of range 1..%d", o->batch_size,
                 BATCH_SIZE_MAX);
        return -EINVAL;
    }
    if (o->flush_interval_ms < 0 || o->flush_interval_ms > INTERVAL_MAX_MS) {
        snprintf(err, err_size, "influx: flush_interval_ms %d is out of range 1..%d",
                 o->flush_interval_ms, INTERVAL_MAX_MS);
        return -EINVAL;
    }
    if (o->timeout_ms < 0 || o->timeout_ms > INTERVAL_MAX_MS) {
        snprintf(err, err_size, "influx: timeout_ms %d is out of range 1..%d", o->timeout_ms,
                 INTERVAL_MAX_MS);
        return -EINVAL;
    }
    return 0;
}

/* Validates the base URL with curl's parser and builds the /write URL. */
static int build_write_url(struct influx_writer *w, const struct influx_writer_options *o,
                           char *err, size_t err_size)
{
    struct gw_buf url = GW_BUF_INIT;
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *query = NULL;
    char *db = NULL;
    char *rp = NULL;
    size_t base_len;
    CURLUcode uc;
    int r = -EINVAL;

    if (!u) {
        snprintf(err, err_size, "influx: out of memory");
        r = -ENOMEM;
        goto out;
    }
    uc = curl_url_set(u, CURLUPART_URL, o->url, 0);
    if (uc != CURLUE_OK) {
        snprintf(err, err_size, "influx: url \"%s\": %s", o->url, curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(err, err_size, "influx: url \"%s\": the scheme must be http or https", o->url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
        snprintf(err, err_size, "influx: url \"%s\": give the server's base URL, without a query",
                 o->url);
        goto out;
    }

    db = curl_easy_escape(w->curl, o->database, 0);
    rp = o->retention_policy ? curl_easy_escape(w->curl, o->retention_policy, 0) : NULL;
    if (!db || (o->retention_policy && !rp)) {
        snprintf(err, err_size, "influx: out of memory");
        r = -ENOMEM;
        goto out;
    }
    base_len = strlen(o->url);
    while (base_len > 0 && o->url[base_len - 1] == '/')
        base_len--;
    if (gw_buf_append(&url, o->url, base_len) < 0 || gw_buf_printf(&url, "/write?db=%s", db) < 0 ||
        (rp && gw_buf_printf(&url, "&rp=%s", rp) < 0) || gw_buf_puts(&url, "&precision=ns") < 0) {
        snprintf(err, err_size, "influx: out of memory");
        r = -ENOMEM;
        goto out;
    }
    w->write_url = url.data;
    url.data = NULL;
    r = 0;
out:
    gw_buf_free(&url);
    curl_free(db);
    curl_free(rp);
    curl_free(scheme);
    curl_free(query);
    curl_url_cleanup(u);
    return r;
}

static int setup_curl(struct influx_writer *w)
{
    CURL *c = w->curl;
    CURLcode rc = CURLE_OK;

    w->headers = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
    if (!w->headers)
        return -ENOMEM;
    /* No "Expect: 100-continue" round trip before each body. */
    struct curl_slist *more = curl_slist_append(w->headers, "Expect:");
    if (!more)
        return -ENOMEM;
    w->headers = more;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, w->write_url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_VERBOSE, 0L);
    SET(CURLOPT_HTTPHEADER, w->headers);
    SET(CURLOPT_USERAGENT, "gridgate/0.1");
    SET(CURLOPT_ERRORBUFFER, w->curl_error);
    SET(CURLOPT_WRITEFUNCTION, on_response);
    SET(CURLOPT_WRITEDATA, &w->response);
    SET(CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (w->username) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, w->username);
        SET(CURLOPT_PASSWORD, w->password ? w->password : "");
    }
#undef SET
    return rc == CURLE_OK ? 0 : -EINVAL;
}

static char *copy_string(const char *s, bool *failed)
{
    char *copy;

    if (!s)
        return NULL;
    copy = strdup(s);
    if (!copy)
        *failed = true;
    return copy;
}

struct influx_writer *influx_writer_start(const struct influx_writer_options *o, char **ret_error)
{
    struct influx_writer *w = NULL;
    char err[512] = "influx: out of memory";
    pthread_condattr_t attr;
    sigset_t all, old;
    bool failed = false;
    int r;

    if (check_options(o, err, sizeof(err)) < 0)
        goto fail;

    w = calloc(1, sizeof(*w));
    if (!w)
        goto fail;
    w->batch_size = o->batch_size ? (size_t)o->batch_size : INFLUX_WRITER_DEFAULT_BATCH_SIZE;
    w->line_cap = w->batch_size;
    w->flush_interval_ns =
        (o->flush_interval_ms ? o->flush_interval_ms : INFLUX_WRITER_DEFAULT_FLUSH_INTERVAL_MS) *
        NS_PER_MS;
    w->timeout_ms = o->timeout_ms ? o->timeout_ms : INFLUX_WRITER_DEFAULT_TIMEOUT_MS;
    w->queue_bytes = o->queue_bytes ? o->queue_bytes : INFLUX_WRITER_DEFAULT_QUEUE_BYTES;
    w->rng = (uint32_t)gw_monotonic_ns() | 1u;
    w->retry_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(0.2, 3);
    w->reject_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(1, 5);
    atomic_init(&w->deadline_ns, 0);

    w->base_url = copy_string(o->url, &failed);
    w->username = copy_string(o->username, &failed);
    w->password = copy_string(o->password, &failed);
    if (failed)
        goto fail;

    if (pthread_mutex_init(&w->lock, NULL) != 0)
        goto fail;
    w->lock_ready = true;
    if (pthread_condattr_init(&attr) != 0)
        goto fail;
    /* Deadlines are monotonic: a clock step must not stretch a wait. */
    r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (r == 0 && pthread_cond_init(&w->wake, &attr) == 0)
        w->wake_ready = true;
    if (r == 0 && pthread_cond_init(&w->space, &attr) == 0)
        w->space_ready = true;
    pthread_condattr_destroy(&attr);
    if (!w->wake_ready || !w->space_ready)
        goto fail;

    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK) {
        snprintf(err, sizeof(err), "influx: curl_global_init: %s",
                 curl_easy_strerror(curl_init_result));
        goto fail;
    }
    w->curl = curl_easy_init();
    w->multi = curl_multi_init();
    if (!w->curl || !w->multi)
        goto fail;
    if (build_write_url(w, o, err, sizeof(err)) < 0)
        goto fail;
    if (setup_curl(w) < 0) {
        snprintf(err, sizeof(err), "influx: cannot set up the HTTP client");
        goto fail;
    }

    /* The writer's thread takes no signals: they belong to the daemon. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        snprintf(err, sizeof(err), "influx: cannot start the writer thread: %s", strerror(r));
        goto fail;
    }
    w->running = true;
    pthread_setname_np(w->thread, "gw-influx");
    gw_debug(MODULE, "writing to %s (batches of %zu lines, flush every %lld ms)", w->write_url,
             w->batch_size, (long long)(w->flush_interval_ns / NS_PER_MS));
    return w;

fail:
    writer_free(w);
    if (ret_error)
        *ret_error = strdup(err);
    return NULL;
}

static size_t count_newlines(const char *s, size_t len)
{
    const char *end = s + len;
    size_t n = 0;

    while (s < end && (s = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        n++;
        s++;
    }
    return n;
}

int influx_writer_submit(struct influx_writer *w, const char *lines, size_t len, size_t n_lines)
{
    bool was_empty;
    int r;

    if (len == 0 && n_lines == 0)
        return 0;
    if (!lines || len == 0 || lines[len - 1] != '\n' || count_newlines(lines, len) != n_lines)
        return -EINVAL;
    if (len > w->queue_bytes)
        return -EMSGSIZE;

    pthread_mutex_lock(&w->lock);
    while (!w->stopping && w->q.bytes + len > w->queue_bytes)
        pthread_cond_wait(&w->space, &w->lock);
    if (w->stopping) {
        r = -ESHUTDOWN;
    } else {
        was_empty = w->q.pending_lines == 0;
        r = queue_push(&w->q, lines, len, n_lines, gw_monotonic_ns());
        /* Wake the thread only when that changes what it waits for. */
        if (r == 0 && w->idle && (was_empty || w->q.lines >= w->line_cap))
            pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->lock);
    return r;
}

void influx_writer_shutdown(struct influx_writer *w, int drain_timeout_ms)
{
    struct influx_writer_stats s;

    if (!w || !w->running)
        return;
    if (drain_timeout_ms < 0)
        drain_timeout_ms = 0;

    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    atomic_store(&w->deadline_ns, gw_monotonic_ns() + drain_timeout_ms * NS_PER_MS);
    pthread_cond_broadcast(&w->wake);
    pthread_cond_broadcast(&w->space);
    pthread_mutex_unlock(&w->lock);
    /* A request in flight sees the deadline now, not at its next poll. */
    curl_multi_wakeup(w->multi);

    pthread_join(w->thread, NULL);
    w->running = false;

    influx_writer_stats(w, &s);
    gw_info(MODULE,
            "stopped: %llu points written in %llu batches, %llu rejected, %llu dropped, "
            "%llu failed requests",
            (unsigned long long)s.points_written, (unsigned long long)s.batches_written,
            (unsigned long long)s.points_rejected, (unsigned long long)s.points_dropped,
            (unsigned long long)s.write_errors);
}

void influx_writer_stop(struct influx_writer *w, int drain_timeout_ms)
{
    if (!w)
        return;
    influx_writer_shutdown(w, drain_timeout_ms);
    writer_free(w);
}

void influx_writer_stats(struct influx_writer *w, struct influx_writer_stats *ret)
{
    pthread_mutex_lock(&w->lock);
    *ret = w->stats;
    ret->queue_bytes = w->q.bytes;
    ret->queue_lines = w->q.lines;
    pthread_mutex_unlock(&w->lock);
}
