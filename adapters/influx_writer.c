#include "influx_writer.h"

#include "gw_buf.h"
#include "gw_fs.h"
#include "gw_log.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MODULE "influx"

#define BLOCK_MIN ((size_t)64 << 10)
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define RESPONSE_MAX ((size_t)1 << 20) /* a 400 echoes bad lines: keep it bounded */
#define LOG_BODY_MAX 400
#define REASON_MAX 1000 /* InfluxDB's reason in a dead-letter comment, at most */
#define BATCH_SIZE_MAX 1000000
#define INTERVAL_MAX_MS 3600000
#define NS_PER_MS INT64_C(1000000)
#define SLOTS_MAX (2 * INFLUX_WRITER_MAX_IN_FLIGHT)

/* ------------------------------------------------------------------------
 * The input side: a FIFO of whole lines in blocks, read like a journal.
 *
 * queue_peek() copies the next batch from the end of the batches in flight
 * without removing it; queue_commit() removes the oldest batch once it and
 * every batch before it were answered for good. A batch in flight or
 * retried therefore stays queued and counted against the bound, which is
 * what a journal cursor will give for free. Blocks are freed only by a
 * commit, so a position inside an uncommitted batch stays valid.
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
    size_t pending_lines;        /* lines not in a batch in flight */
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

/* Copies up to max_lines lines from position from (the committed one, or
 * the end of a batch in flight) into body. Returns the number of lines
 * copied, or -ENOMEM. */
static long queue_peek(struct qpos from, struct gw_buf *body, size_t max_lines,
                       struct qpos *ret_end)
{
    struct qpos p = from;
    size_t taken = 0;

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

enum slot_state {
    SLOT_WAITING, /* to be sent at retry_at_ns (backoff; 0: at once) */
    SLOT_BUSY,    /* its request is on the multi handle */
    SLOT_DONE,    /* answered for good, waiting for the batches before it */
};

/* One batch in flight: a fixed range of the queue, sent in one POST (in
 * several after a 413 lowered line_cap), with the easy handle and buffers
 * of its request. Owned by the writer's thread; the fields that tie it to
 * the queue (end, pos, chunk_end) are read and set with the lock held. */
struct slot {
    CURL *curl;
    enum slot_state state;
    struct qpos end;     /* end of the batch: where its commit goes */
    size_t lines, bytes; /* the whole batch */
    size_t left;         /* its lines not answered yet, from pos */
    struct qpos pos;     /* start of the chunk in body */
    struct qpos chunk_end;
    long chunk;        /* lines in body; -1: to be copied again */
    bool resend;       /* the next POST repeats one: counted in retries */
    bool added;        /* on the multi handle */
    int delay_ms;      /* the next backoff, before jitter */
    unsigned failures; /* failed POSTs of this batch */
    int64_t first_failure_ns;
    int64_t retry_at_ns;
    int64_t start_ns;
    CURLcode rc;             /* of the transfer that ended */
    struct gw_buf body;      /* the chunk's text */
    struct gw_buf gz;        /* body compressed, when gzip */
    struct gw_buf response;
    char curl_error[CURL_ERROR_SIZE];
    char error[256]; /* what went wrong with the last POST */
};

struct influx_writer {
    /* Set by start, read-only afterwards. */
    char *base_url; /* for log lines */
    char *write_url;
    char *username;
    char *password;
    char *auth_header; /* 2.x: "Authorization: Token ..." */
    int version;
    char *target;           /* "database \"gridgate\"" or "bucket \"b\" (org \"o\")", for logs */
    char *dead_letter_path; /* NULL: none */
    bool gzip;
    size_t batch_size;
    int64_t flush_interval_ns;
    int timeout_ms;
    size_t queue_bytes;
    int max_in_flight; /* requests on the wire (or in backoff) at most */
    int n_slots;       /* batches not committed at most: twice that */

    /* lock guards q, stopping, idle, polling, line_cap, stats, the ring
     * (first, count) and the slots' queue positions. */
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* to the thread: lines queued, shutdown began */
    pthread_cond_t space; /* to submitters: the queue shrank, shutdown began */
    bool lock_ready, wake_ready, space_ready;
    struct queue q;
    bool stopping;
    bool idle;       /* nothing in flight: the thread waits on wake */
    bool polling;    /* the thread waits in curl_multi_poll */
    size_t line_cap; /* batch_size, halved after a 413 */
    int first, count; /* the batches not committed: slots[first], then on in a ring */
    int active;       /* of those, the ones not done (their requests in flight) */
    int64_t peek_retry_ns; /* out of memory for a batch: not before then */
    struct influx_writer_stats stats;
    /* Monotonic drain deadline, 0 before shutdown. Atomic because the
     * thread reads it without the lock during a request. */
    _Atomic int64_t deadline_ns;

    /* Owned by the thread (by start before it runs). */
    struct slot *slots; /* n_slots */
    CURLM *multi; /* runs the slots' requests, keeps connections; others may wake it */
    struct curl_slist *headers;
    z_stream zs;
    bool zs_ready;
    struct gw_buf scratch; /* dead-letter text, needles */
    char last_error[256];
    uint32_t rng;
    struct gw_log_limit retry_limit;
    struct gw_log_limit reject_limit;
    struct gw_log_limit refuse_limit; /* 401, 403, 404 */
    struct gw_log_limit dead_limit;

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

/* InfluxDB's message in an error answer: 1.x {"error":"..."}, 2.x
 * {"code":...,"message":"..."}, else the body as it is. malloc'd, or NULL. */
static char *answer_message(const struct gw_buf *response)
{
    cJSON *json = response->len ? cJSON_ParseWithLength(response->data, response->len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(json, "error");
    char *text;

    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(json, "message");
    text = strdup(cJSON_IsString(m) ? m->valuestring : body_text(response));
    cJSON_Delete(json);
    return text;
}

/* "# <RFC 3339 time, ms, UTC> <reason>\n", the reason on one line. */
static int put_comment(struct gw_buf *b, const char *stamp, const char *reason, size_t reason_len)
{
    size_t start;

    if (reason_len > 2 * REASON_MAX)
        reason_len = 2 * REASON_MAX;
    if (gw_buf_printf(b, "# %s ", stamp) < 0)
        return -ENOMEM;
    start = b->len;
    if (gw_buf_append(b, reason, reason_len) < 0 || gw_buf_putc(b, '\n') < 0)
        return -ENOMEM;
    for (size_t i = start; i < b->len - 1; i++) {
        if (b->data[i] == '\n' || b->data[i] == '\r')
            b->data[i] = ' ';
    }
    return 0;
}

static void rfc3339_now(char *out, size_t size)
{
    int64_t ns = gw_now_ns();
    time_t sec = (time_t)(ns / 1000000000);
    struct tm tm;

    size_t n;

    gmtime_r(&sec, &tm);
    n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03dZ", (int)(ns / 1000000 % 1000));
}

/* Where the reason for line (len bytes, no newline) is in msg, when msg
 * names it as unparsable ("unable to parse '<line>': <reason>", the
 * reasons joined by newlines): sets *ret_reason and *ret_len. */
static bool find_parse_reason(struct gw_buf *needle, const char *msg, const char *line, size_t len,
                              const char **ret_reason, size_t *ret_len)
{
    const char *p, *end;

    /* The parser drops leading blanks from what it quotes. */
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    gw_buf_reset(needle);
    if (gw_buf_puts(needle, "unable to parse '") < 0 || gw_buf_append(needle, line, len) < 0 ||
        gw_buf_puts(needle, "': ") < 0)
        return false;
    p = strstr(msg, needle->data);
    if (!p)
        return false;
    p += needle->len;
    end = strchr(p, '\n');
    if (!end) {
        /* the last one: a partial write ends with " dropped=N" */
        const char *d = strstr(p, " dropped=");
        end = d ? d : p + strlen(p);
    }
    *ret_reason = p;
    *ret_len = (size_t)(end - p);
    return true;
}

/* Appends text to the dead-letter file, creating it 0640, and syncs it:
 * the journal position moves on once this returns. Returns 0 or -errno. */
static int append_file(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    int r = 0;

    if (fd < 0)
        return -errno;
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        text += n;
        len -= (size_t)n;
    }
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

/* What a POST came to; filled by finish_post(), counted by account_post(). */
struct post_answer {
    long status;        /* 0: no HTTP answer */
    int64_t latency_us; /* -1: no HTTP answer */
    size_t rejected;    /* lines InfluxDB refused */
    size_t dead;        /* lines appended to the dead-letter file */
    size_t dead_failed; /* refused lines the file did not take */
    bool needs_person;  /* 401, 403, 404, no such retention policy: log loudly */
};

/* Reads one part of a line from *p up to an unescaped character of stops
 * (or end), into out (unescaped: a backslash before one of ",= \"" gives
 * that character, any other is kept), and leaves *p on the stop. Returns
 * the length, or -1 when it does not fit. */
static long scan_part(const char **p, const char *end, const char *stops, char *out, size_t size)
{
    const char *s = *p;
    size_t n = 0;

    while (s < end && !strchr(stops, *s)) {
        char c = *s++;

        if (c == '\\' && s < end && strchr(",= \"", *s))
            c = *s++;
        if (n + 1 >= size)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    *p = s;
    return (long)n;
}

/* The type InfluxDB gives a field value, spelt as in its messages. */
static const char *value_type(const char *v, size_t len)
{
    static const char *const booleans[] = { "t", "T", "true",  "True",  "TRUE",
                                            "f", "F", "false", "False", "FALSE" };

    if (len == 0)
        return "";
    if (v[0] == '"')
        return "string";
    for (size_t i = 0; i < sizeof(booleans) / sizeof(booleans[0]); i++)
        if (strlen(booleans[i]) == len && memcmp(v, booleans[i], len) == 0)
            return "boolean";
    if (v[len - 1] == 'i')
        return "integer";
    if (v[len - 1] == 'u')
        return "unsigned";
    return "float";
}

/* Whether the line is a point of measurement m with a field f of type t
 * (what a field type conflict names). */
static bool line_has_field(const char *line, size_t len, const char *m, const char *f,
                           const char *t)
{
    const char *p = line, *end = line + len;
    char part[512];

    if (scan_part(&p, end, ", ", part, sizeof(part)) < 0 || strcmp(part, m) != 0)
        return false;
    if (p < end && *p == ',') {
        /* the tags: up to the first unescaped space */
        while (p < end && *p != ' ')
            p += (*p == '\\' && p + 1 < end) ? 2 : 1;
    }
    while (p < end && *p == ' ')
        p++;
    while (p < end) {
        const char *v;
        bool match;

        if (scan_part(&p, end, "=", part, sizeof(part)) < 0 || p >= end)
            return false;
        match = strcmp(part, f) == 0;
        v = ++p;
        if (p < end && *p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            p++;
        } else {
            while (p < end && *p != ',' && *p != ' ')
                p++;
        }
        if (p > end)
            return false;
        if (match)
            return strcmp(value_type(v, (size_t)(p - v)), t) == 0;
        if (p >= end || *p != ',')
            return false;
        p++;
    }
    return false;
}

/* Parses 'input field "F" on measurement "M" is type T,' out of a field
 * type conflict. */
static bool parse_conflict(const char *msg, char *f, char *m, char *t, size_t size)
{
    const char *a = strstr(msg, "field type conflict: input field \"");
    const char *b, *c, *d;

    if (!a)
        return false;
    a += strlen("field type conflict: input field \"");
    b = strstr(a, "\" on measurement \"");
    if (!b)
        return false;
    c = b + strlen("\" on measurement \"");
    d = strstr(c, "\" is type ");
    if (!d || (size_t)(b - a) >= size || (size_t)(d - c) >= size)
        return false;
    memcpy(f, a, (size_t)(b - a));
    f[b - a] = '\0';
    memcpy(m, c, (size_t)(d - c));
    m[d - c] = '\0';
    d += strlen("\" is type ");
    snprintf(t, size, "%.*s", (int)strcspn(d, ", "), d);
    return true;
}

/* A type conflict names one field: when the lines with that field of that
 * type are as many as InfluxDB dropped, they are the refused ones. Appends
 * them to out, each after the comment, and returns how many, or 0. */
static size_t refuse_conflicting(const struct gw_buf *body, const char *msg, size_t dropped,
                                 const char *stamp, struct gw_buf *out)
{
    char f[256], m[256], t[32];
    const char *p = body->data, *end = p + body->len;
    size_t found = 0;

    if (dropped == 0 || !parse_conflict(msg, f, m, t, sizeof(f)))
        return 0;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0 counts, pass 1 writes */
        for (p = body->data; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = (size_t)(nl - p);

            if (line_has_field(p, len, m, f, t)) {
                if (pass == 0)
                    found++;
                else if (put_comment(out, stamp, msg, strlen(msg)) < 0 ||
                         gw_buf_append(out, p, len + 1) < 0)
                    return 0;
            }
            p = nl + 1;
        }
        if (found != dropped)
            return 0;
    }
    return found;
}

/* After a 400 (or a 413 for one line): works out which lines of the batch
 * InfluxDB refused, appends them to the dead-letter file and logs. Runs
 * without the lock. */
static void refuse_lines(struct influx_writer *w, const struct gw_buf *body, size_t n_lines,
                         const char *msg, bool truncated, struct post_answer *a)
{
    struct gw_buf *out = &w->scratch;
    struct gw_buf needle = GW_BUF_INIT;
    bool partial = strstr(msg, "partial write") != NULL;
    bool by_line = !truncated && strstr(msg, "unable to parse '") != NULL;
    char stamp[40];
    size_t matched = 0;
    int r = 0;

    rfc3339_now(stamp, sizeof(stamp));
    gw_buf_reset(out);
    if (by_line) {
        /* InfluxDB quoted each unparsable line: those, exactly. When
         * nothing was written ("partial write" absent), every line was
         * refused, the unquoted ones with the whole message. */
        const char *p = body->data;
        const char *end = p + body->len;

        while (p < end && r == 0) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = (size_t)(nl - p);
            const char *reason = msg;
            size_t reason_len = strlen(msg);

            if (find_parse_reason(&needle, msg, p, len, &reason, &reason_len)) {
                /* "unable to parse: <why>", the line itself follows */
                matched++;
                gw_buf_reset(&needle);
                if (gw_buf_puts(&needle, "unable to parse: ") < 0 ||
                    gw_buf_append(&needle, reason, reason_len) < 0)
                    r = -ENOMEM;
                reason = needle.data;
                reason_len = needle.len;
            } else if (partial) {
                reason = NULL; /* kept */
            }
            if (reason && r == 0) {
                if (put_comment(out, stamp, reason, reason_len) < 0 ||
                    gw_buf_append(out, p, len + 1) < 0)
                    r = -ENOMEM;
                a->dead++;
            }
            p = nl + 1;
        }
        if (matched == 0 && partial)
            by_line = false; /* quoted lines that are not ours: say so below */
        else
            a->rejected = a->dead;
    }
    if (!by_line || r < 0) {
        gw_buf_reset(out);
        a->rejected = count_rejected(msg, n_lines);
        a->dead = n_lines;
        r = 0;
        if (partial && a->rejected < n_lines) {
            size_t n = refuse_conflicting(body, msg, a->rejected, stamp, out);
            if (n > 0) {
                a->dead = n;
                goto write;
            }
            gw_buf_reset(out);
        }
        /* InfluxDB did not say which lines: the whole batch, after the
         * reason and how many of its lines InfluxDB kept. */
        if (a->rejected < n_lines) {
            gw_buf_reset(&needle);
            r = gw_buf_printf(&needle,
                              "InfluxDB refused %zu of the %zu lines below and kept the others, "
                              "without saying which: %.*s",
                              a->rejected, n_lines, REASON_MAX, msg);
            if (r == 0)
                r = put_comment(out, stamp, needle.data, needle.len);
        } else {
            r = put_comment(out, stamp, msg, strlen(msg));
        }
        if (r == 0)
            r = gw_buf_append(out, body->data, body->len);
    }
write:
    gw_buf_free(&needle);
    if (r < 0)
        a->dead = 0;

    if (!w->dead_letter_path) {
        gw_log_limited(&w->reject_limit, GW_LOG_WARN, MODULE,
                       "InfluxDB refused %zu of %zu lines, not retried (no dead-letter file): %.*s",
                       a->rejected, n_lines, LOG_BODY_MAX, msg);
        a->dead = 0;
        return;
    }
    if (r == 0)
        r = append_file(w->dead_letter_path, out->data, out->len);
    if (r < 0) {
        a->dead_failed = a->rejected;
        a->dead = 0;
        gw_log_limited(&w->dead_limit, GW_LOG_ERROR, MODULE,
                       "InfluxDB refused %zu of %zu lines and they could NOT be appended to the "
                       "dead-letter file %s: %s; they are lost. InfluxDB said: %.*s",
                       a->rejected, n_lines, w->dead_letter_path, strerror(-r), LOG_BODY_MAX, msg);
        return;
    }
    gw_log_limited(&w->reject_limit, GW_LOG_WARN, MODULE,
                   "InfluxDB refused %zu of %zu lines, not retried; %zu appended to %s: %.*s",
                   a->rejected, n_lines, a->dead, w->dead_letter_path, LOG_BODY_MAX, msg);
}

enum post_result {
    POST_OK,        /* 2xx: all written */
    POST_REJECTED,  /* 400: done, some or all lines refused */
    POST_TOO_LARGE, /* 413: split the batch */
    POST_RETRY,     /* no answer, timeout, or any other status */
};

/* Compresses s->body into s->gz (gzip wrapper) with the thread's one
 * z_stream. Returns 0 or -errno. */
static int gzip_body(struct influx_writer *w, struct slot *s)
{
    z_stream *z = &w->zs;
    uLong bound;

    if (s->body.len > UINT32_MAX / 2)
        return -EMSGSIZE;
    if (deflateReset(z) != Z_OK)
        return -EIO;
    /* deflateBound() leaves out the gzip header and trailer: 18 bytes. */
    bound = deflateBound(z, (uLong)s->body.len) + 64;
    gw_buf_reset(&s->gz);
    if (gw_buf_reserve(&s->gz, bound) < 0)
        return -ENOMEM;
    z->next_in = (Bytef *)s->body.data;
    z->avail_in = (uInt)s->body.len;
    z->next_out = (Bytef *)s->gz.data;
    z->avail_out = (uInt)bound;
    if (deflate(z, Z_FINISH) != Z_STREAM_END)
        return -EIO;
    s->gz.len = (size_t)z->total_out;
    return 0;
}

/* The cause of a 401, 403 or 404, in out, for an operator: these need a
 * person (credentials, rights, a database to create). */
static void describe_refusal(const struct influx_writer *w, long status, const char *msg, char *out,
                             size_t size)
{
    const char *what = "";

    switch (status) {
    case 0: /* 1.x: no such retention policy; the lines are fine */
        snprintf(out, size,
                 "the retention policy does not exist in %s (%.120s); create it or fix "
                 "influx.retention_policy",
                 w->target, msg);
        return;
    case 401:
        what = w->version == 2 ? "InfluxDB refuses the token (HTTP 401; check influx.token)"
                               : "InfluxDB refuses the credentials (HTTP 401; check "
                                 "influx.username and influx.password)";
        break;
    case 403:
        what = w->version == 2 ? "the token may not write to this bucket (HTTP 403)"
                               : "the user may not write to this database (HTTP 403)";
        break;
    case 404:
        if (strstr(msg, "not found") &&
            (strstr(msg, "database") || strstr(msg, "bucket") || strstr(msg, "organization"))) {
            snprintf(out, size, "%s does not exist (HTTP 404: %.120s)%s", w->target, msg,
                     w->version == 2 ? "" : "; create it with CREATE DATABASE");
            return;
        }
        what = "no write API at this URL (HTTP 404; check influx.url and influx.version)";
        break;
    }
    snprintf(out, size, "%s, writing to %s: %.120s", what, w->target, msg);
}

/* Puts the POST of s->body (compressed when gzip) on the multi handle.
 * Runs without the lock. Returns false, with s->error set, when the
 * request could not be started (it then counts as a failed one). */
static bool start_post(struct influx_writer *w, struct slot *s)
{
    const struct gw_buf *send = &s->body;
    CURLMcode mc;
    int r;

    s->error[0] = '\0';
    s->curl_error[0] = '\0';
    gw_buf_reset(&s->response);
    if (w->gzip) {
        r = gzip_body(w, s);
        if (r < 0) {
            snprintf(s->error, sizeof(s->error), "cannot compress a batch: %s", strerror(-r));
            return false;
        }
        send = &s->gz;
    }
    curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, send->data);
    curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)send->len);
    s->start_ns = gw_monotonic_ns();
    mc = curl_multi_add_handle(w->multi, s->curl);
    if (mc != CURLM_OK) {
        snprintf(s->error, sizeof(s->error), "%s", curl_multi_strerror(mc));
        return false;
    }
    s->added = true;
    return true;
}

/* What the finished POST of s came to (s->rc: its CURLcode). Runs
 * without the lock: a 400 appends to the dead-letter file. */
static enum post_result finish_post(struct influx_writer *w, struct slot *s, struct post_answer *a)
{
    size_t n_lines = (size_t)s->chunk;
    curl_off_t total_us = 0;
    long status = 0;
    bool rp_missing;
    char *msg;

    if (s->rc != CURLE_OK || s->error[0]) {
        if (!s->error[0])
            snprintf(s->error, sizeof(s->error), "%s",
                     s->curl_error[0] ? s->curl_error : curl_easy_strerror(s->rc));
        return POST_RETRY;
    }
    /* curl's own clock of this transfer: the poll that noticed its end
     * may have waited on another one. */
    if (curl_easy_getinfo(s->curl, CURLINFO_TOTAL_TIME_T, &total_us) != CURLE_OK || total_us <= 0)
        total_us = (curl_off_t)((gw_monotonic_ns() - s->start_ns) / 1000);
    a->latency_us = (int64_t)total_us;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    a->status = status;
    if (status >= 200 && status < 300)
        return POST_OK;

    snprintf(s->error, sizeof(s->error), "HTTP %ld: %.*s", status, body_log_len(&s->response),
             body_text(&s->response));
    /* 422: 2.x's answer for points refused after parsing (type conflicts,
     * retention), as 1.x's 400 partial write. */
    /* 1.6 answers 500 for a retention policy that does not exist. */
    rp_missing = (status == 400 || status == 500) &&
                 strstr(body_text(&s->response), "retention policy not found");
    if (status != 400 && status != 422 && status != 401 && status != 403 && status != 404 &&
        !(status == 413 && n_lines == 1) && !rp_missing)
        return status == 413 ? POST_TOO_LARGE : POST_RETRY;

    msg = answer_message(&s->response);
    if (!msg) {
        /* out of memory: resending is harmless (InfluxDB overwrites equal points) */
        return POST_RETRY;
    }
    if (rp_missing) {
        /* A setting to fix, not lines to refuse. */
        status = 0;
    } else if (status == 400 || status == 422 || status == 413) {
        /* One line too large for the server can never be written. */
        if (status == 413) {
            free(msg);
            msg = strdup("HTTP 413: the line is larger than InfluxDB takes in a request "
                         "([http] max-body-size)");
            if (!msg)
                return POST_RETRY;
        }
        refuse_lines(w, &s->body, n_lines, msg, s->response.len >= RESPONSE_MAX, a);
        free(msg);
        return POST_REJECTED;
    }
    describe_refusal(w, status, msg, s->error, sizeof(s->error));
    a->needs_person = true;
    free(msg);
    return POST_RETRY;
}

/* The slots form a ring in submit order: the oldest batch at first, the
 * next ones after it. */
static struct slot *slot_at(struct influx_writer *w, int i)
{
    return &w->slots[(w->first + i) % w->n_slots];
}

/* Where the next batch begins: after the newest one in flight, else at
 * the committed position. */
static struct qpos sent_position(struct influx_writer *w)
{
    if (w->count > 0)
        return slot_at(w, w->count - 1)->end;
    return (struct qpos){ w->q.head, w->q.head_off, w->q.head_lines };
}

/* Whether a new batch is due now (the caller has a free slot); if
 * not, lowers *wake_at to when one will be. Lock held. */
static bool batch_due(struct influx_writer *w, int64_t now, int64_t *wake_at)
{
    int64_t due;

    if (w->q.pending_lines == 0)
        return false;
    if (now < w->peek_retry_ns)
        due = w->peek_retry_ns;
    else if (w->stopping || w->q.pending_lines >= w->line_cap)
        return true;
    else
        due = w->q.pending_since_ns + w->flush_interval_ns;
    if (now >= due)
        return true;
    if (due < *wake_at)
        *wake_at = due;
    return false;
}

/* Takes the next batch, up to line_cap pending lines, into the next free
 * slot. Lock held. Returns false (and retries in 100 ms) when out of memory. */
static bool begin_batch(struct influx_writer *w, int64_t now)
{
    struct slot *s = slot_at(w, w->count);
    struct qpos from = sent_position(w);
    long n = queue_peek(from, &s->body, w->line_cap, &s->end);

    if (n <= 0) {
        snprintf(w->last_error, sizeof(w->last_error), "out of memory for a batch");
        w->peek_retry_ns = now + BACKOFF_FIRST_MS * NS_PER_MS;
        return false;
    }
    w->q.pending_lines -= (size_t)n;
    s->lines = s->left = (size_t)n;
    s->bytes = s->body.len;
    s->pos = from;
    s->chunk = n;
    s->chunk_end = s->end;
    s->state = SLOT_WAITING;
    s->retry_at_ns = 0;
    s->resend = false;
    s->delay_ms = BACKOFF_FIRST_MS;
    s->failures = 0;
    w->count++;
    w->active++;
    return true;
}

/* Copies the slot's next chunk after a 413 or a partly sent batch. Lock
 * held. Returns false when out of memory. */
static bool peek_chunk(struct influx_writer *w, struct slot *s)
{
    size_t max = s->left < w->line_cap ? s->left : w->line_cap;

    s->chunk = queue_peek(s->pos, &s->body, max, &s->chunk_end);
    if (s->chunk > 0)
        return true;
    s->chunk = -1;
    snprintf(w->last_error, sizeof(w->last_error), "out of memory for a batch");
    return false;
}

/* Counts what the POST of s came to and moves the slot on. Lock held. */
static void account_post(struct influx_writer *w, struct slot *s, enum post_result result,
                         const struct post_answer *a)
{
    int64_t now = gw_monotonic_ns();
    size_t n = (size_t)s->chunk;

    if (a->latency_us >= 0) {
        w->stats.last_latency_us = (uint64_t)a->latency_us;
        if ((uint64_t)a->latency_us > w->stats.max_latency_us)
            w->stats.max_latency_us = (uint64_t)a->latency_us;
    }
    if (a->status)
        w->stats.last_status = (uint64_t)a->status;
    if (s->error[0])
        memcpy(w->last_error, s->error, sizeof(w->last_error));

    switch (result) {
    case POST_OK:
    case POST_REJECTED:
        /* Answered for good: the refused lines are in the dead-letter
         * file (or logged as lost) and never sent again. */
        if (result == POST_OK) {
            w->stats.batches_written++;
        } else {
            w->stats.write_errors++;
            w->stats.points_rejected += a->rejected;
            w->stats.points_dead_lettered += a->dead;
            w->stats.dead_letter_errors += a->dead_failed;
        }
        w->stats.points_written += n - a->rejected;
        s->left -= n;
        s->pos = s->chunk_end;
        if (s->left > 0) {
            /* the rest of a batch a 413 split: next chunk at once */
            s->chunk = -1;
            s->state = SLOT_WAITING;
            s->retry_at_ns = 0;
            return;
        }
        if (s->failures > 0)
            gw_info(MODULE, "InfluxDB at %s takes writes again after %u failed attempts in %.1f s",
                    w->base_url, s->failures, (double)(now - s->first_failure_ns) / 1e9);
        s->state = SLOT_DONE;
        w->active--;
        return;
    case POST_TOO_LARGE:
        w->stats.write_errors++;
        if (n / 2 < w->line_cap)
            w->line_cap = n / 2;
        gw_warn(MODULE,
                "InfluxDB at %s refused %zu lines (%zu bytes) as too large; sending at most %zu "
                "lines per request from now on (raise [http] max-body-size or lower batch_size)",
                w->base_url, n, s->body.len, w->line_cap);
        s->chunk = -1;
        s->state = SLOT_WAITING;
        s->retry_at_ns = 0;
        s->resend = true;
        return;
    case POST_RETRY:
        break;
    }

    w->stats.write_errors++;
    if (s->failures++ == 0)
        s->first_failure_ns = now;
    s->state = SLOT_WAITING;
    s->resend = true;
    s->retry_at_ns = now;
    if (deadline_passed(w))
        return; /* the thread ends at the top of its loop */
    {
        /* jitter: between half and all of the current delay */
        int wait_ms = s->delay_ms / 2 + (int)(next_random(w) % (uint32_t)(s->delay_ms / 2 + 1));

        if (a->needs_person)
            gw_log_limited(&w->refuse_limit, GW_LOG_ERROR, MODULE,
                           "NOT WRITING to InfluxDB at %s: %s; retrying in %d ms, nothing is "
                           "thrown away (%zu lines queued)",
                           w->base_url, s->error, wait_ms, w->q.lines);
        else
            gw_log_limited(&w->retry_limit, GW_LOG_WARN, MODULE,
                           "cannot write to InfluxDB at %s: %s; retrying in %d ms (%zu lines "
                           "queued)",
                           w->base_url, s->error, wait_ms, w->q.lines);
        s->retry_at_ns = now + wait_ms * NS_PER_MS;
    }
    s->delay_ms = s->delay_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : s->delay_ms * 2;
}

/* Commits the batches answered for good, oldest first, stopping at the
 * first one still in flight: lines_done never passes a batch that is not
 * done, whatever order the answers came in. Lock held. */
static void commit_done(struct influx_writer *w)
{
    bool any = false;

    while (w->count > 0 && slot_at(w, 0)->state == SLOT_DONE) {
        struct slot *s = slot_at(w, 0);

        queue_commit(&w->q, &s->end, s->lines, s->bytes);
        w->stats.lines_done += s->lines;
        w->first = (w->first + 1) % w->n_slots;
        w->count--;
        any = true;
    }
    if (any)
        pthread_cond_broadcast(&w->space);
}

/* Takes the slot's request off the multi handle (whose cache keeps the
 * connection alive for the next). */
static void slot_detach(struct influx_writer *w, struct slot *s)
{
    curl_multi_remove_handle(w->multi, s->curl);
    s->added = false;
}

/* Takes the requests that ended off the multi handle, setting s->rc and
 * finished[i] for each slot i. Returns how many. */
static int collect_finished(struct influx_writer *w, bool *finished)
{
    CURLMsg *msg;
    int left, n = 0;

    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (int i = 0; i < w->n_slots; i++) {
            struct slot *s = &w->slots[i];

            if (s->added && s->curl == msg->easy_handle) {
                s->rc = msg->data.result;
                slot_detach(w, s);
                finished[i] = true;
                n++;
                break;
            }
        }
    }
    return n;
}

/* Runs the transfers, waiting at most wait_ms for one to end
 * (curl_multi_wakeup ends the wait early: shutdown, or a submit that made
 * a batch due), and sets s->rc and finished[i] for each slot i whose
 * request ended. Without the lock. */
static void run_transfers(struct influx_writer *w, int wait_ms, bool *finished)
{
    int running = 0;
    CURLMcode mc;

    mc = curl_multi_perform(w->multi, &running);
    /* On loopback a request can end within that call: no wait then. */
    if (mc == CURLM_OK && collect_finished(w, finished) == 0) {
        mc = curl_multi_poll(w->multi, NULL, 0, wait_ms, NULL);
        if (mc == CURLM_OK)
            mc = curl_multi_perform(w->multi, &running);
        collect_finished(w, finished);
    }
    if (mc != CURLM_OK) {
        /* Not expected; every request in flight counts as failed. */
        for (int i = 0; i < w->n_slots; i++) {
            struct slot *s = &w->slots[i];

            if (!s->added)
                continue;
            slot_detach(w, s);
            s->rc = CURLE_FAILED_INIT;
            snprintf(s->error, sizeof(s->error), "%s", curl_multi_strerror(mc));
            finished[i] = true;
        }
    }
}

/* At the drain deadline: the requests still running are cut (their
 * connections closed) and count as failed. Lock held. */
static void cut_requests(struct influx_writer *w)
{
    for (int i = 0; i < w->n_slots; i++) {
        struct slot *s = &w->slots[i];

        if (!s->added)
            continue;
        slot_detach(w, s);
        w->stats.write_errors++;
        snprintf(w->last_error, sizeof(w->last_error), "request cut at the drain deadline");
    }
}

/* The writer's thread: one event loop over up to n_slots requests.
 *
 * Why one multi handle and not a thread per request: the batches must be
 * committed in submit order whatever order InfluxDB answers them in, and
 * a single thread that owns every slot, the dead-letter file and the
 * commit needs no more locking than before; curl_multi_poll() waits on all
 * the transfers at once, and curl_multi_wakeup() lets shutdown and a
 * submit that made a batch due cut a wait short. Each slot has its own
 * easy handle (and so its own keep-alive connection from the multi
 * handle's cache), body and response. There are twice as many slots as
 * requests allowed at once: a batch answered before an earlier one waits
 * in its slot for its turn to commit while the next batches go out. */
static void *writer_main(void *arg)
{
    struct influx_writer *w = arg;
    bool finished[SLOTS_MAX];
    struct post_answer answers[SLOTS_MAX];
    enum post_result results[SLOTS_MAX];
    struct slot *to_start[SLOTS_MAX];
    size_t bytes, lines;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        int64_t now = gw_monotonic_ns();
        int64_t deadline = atomic_load(&w->deadline_ns);
        int64_t wake_at = now + 1000 * NS_PER_MS;
        int n_start = 0;

        if (w->stopping && w->q.lines == 0)
            break;
        if (w->stopping && now >= deadline) {
            cut_requests(w);
            break;
        }
        if (deadline != 0 && deadline < wake_at)
            wake_at = deadline;
        while (w->count < w->n_slots && w->active < w->max_in_flight &&
               batch_due(w, now, &wake_at)) {
            if (!begin_batch(w, now))
                break;
        }
        if (w->count == 0) {
            /* Nothing in flight: wait for lines, a full batch, the flush
             * interval or shutdown (submit signals when idle). */
            w->idle = true;
            if (w->q.pending_lines == 0 && !w->stopping)
                pthread_cond_wait(&w->wake, &w->lock);
            else
                wait_until(&w->wake, &w->lock, wake_at);
            w->idle = false;
            continue;
        }
        for (int i = 0; i < w->count; i++) {
            struct slot *s = slot_at(w, i);

            if (s->state != SLOT_WAITING)
                continue;
            if (s->retry_at_ns > now) {
                if (s->retry_at_ns < wake_at)
                    wake_at = s->retry_at_ns;
                continue;
            }
            if (s->chunk < 0 && !peek_chunk(w, s)) {
                s->retry_at_ns = now + BACKOFF_FIRST_MS * NS_PER_MS;
                continue;
            }
            if (s->resend) {
                w->stats.retries++;
                s->resend = false;
            }
            s->state = SLOT_BUSY;
            to_start[n_start++] = s;
        }
        w->polling = true;
        pthread_mutex_unlock(&w->lock);

        memset(finished, 0, sizeof(finished));
        for (int i = 0; i < n_start; i++) {
            if (!start_post(w, to_start[i]))
                finished[to_start[i] - w->slots] = true;
        }
        {
            int64_t left_ns = wake_at - gw_monotonic_ns();
            int wait_ms = left_ns <= 0 ? 0 : (int)((left_ns + NS_PER_MS - 1) / NS_PER_MS);

            for (int i = 0; i < n_start && wait_ms > 0; i++) {
                if (finished[to_start[i] - w->slots])
                    wait_ms = 0; /* a request that could not start: count it now */
            }
            run_transfers(w, wait_ms, finished);
        }
        for (int i = 0; i < w->n_slots; i++) {
            if (finished[i]) {
                answers[i] = (struct post_answer){ .latency_us = -1 };
                results[i] = finish_post(w, &w->slots[i], &answers[i]);
            }
        }

        pthread_mutex_lock(&w->lock);
        w->polling = false;
        /* In submit order, so that log lines and last_error follow it. */
        for (int i = 0; i < w->count; i++) {
            struct slot *s = slot_at(w, i);
            int k = (int)(s - w->slots);

            if (finished[k])
                account_post(w, s, results[k], &answers[k]);
        }
        commit_done(w);
    }
    bytes = w->q.bytes;
    lines = queue_drop_all(&w->q);
    w->count = w->active = 0;
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
    for (int i = 0; w->slots && i < w->n_slots; i++) {
        struct slot *s = &w->slots[i];

        /* The thread took every handle off the multi handle as it ended. */
        if (s->curl)
            curl_easy_cleanup(s->curl);
        gw_buf_free(&s->body);
        gw_buf_free(&s->gz);
        gw_buf_free(&s->response);
    }
    free(w->slots);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_slist_free_all(w->headers);
    gw_buf_free(&w->scratch);
    if (w->zs_ready)
        deflateEnd(&w->zs);
    if (w->space_ready)
        pthread_cond_destroy(&w->space);
    if (w->wake_ready)
        pthread_cond_destroy(&w->wake);
    if (w->lock_ready)
        pthread_mutex_destroy(&w->lock);
    free(w->base_url);
    free(w->write_url);
    free(w->username);
    free(w->target);
    free(w->dead_letter_path);
    if (w->auth_header) {
        memset(w->auth_header, 0, strlen(w->auth_header));
        free(w->auth_header);
    }
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
    if (o->version != 0 && o->version != 1 && o->version != 2) {
        snprintf(err, err_size, "influx: version %d is not 1 or 2", o->version);
        return -EINVAL;
    }
    if (o->version == 2) {
        if (!o->org || !*o->org) {
            snprintf(err, err_size, "influx: org is required with version 2");
            return -EINVAL;
        }
        if ((!o->bucket || !*o->bucket) && (!o->database || !*o->database)) {
            snprintf(err, err_size, "influx: bucket (or database) is required with version 2");
            return -EINVAL;
        }
    } else if (!o->database || !*o->database) {
        snprintf(err, err_size, "influx: database is required");
        return -EINVAL;
    }
    if (o->dead_letter_path && !*o->dead_letter_path) {
        snprintf(err, err_size, "influx: dead_letter is empty (leave it unset for none)");
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
    if (o->max_in_flight < 0 || o->max_in_flight > INFLUX_WRITER_MAX_IN_FLIGHT) {
        snprintf(err, err_size, "influx: max_in_flight %d is out of range 1..%d",
                 o->max_in_flight, INFLUX_WRITER_MAX_IN_FLIGHT);
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
    char *org = NULL;
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

    base_len = strlen(o->url);
    while (base_len > 0 && o->url[base_len - 1] == '/')
        base_len--;
    if (w->version == 2) {
        const char *bucket = o->bucket && *o->bucket ? o->bucket : o->database;

        db = curl_easy_escape(w->slots[0].curl, bucket, 0);
        org = curl_easy_escape(w->slots[0].curl, o->org, 0);
        if (!db || !org || gw_buf_append(&url, o->url, base_len) < 0 ||
            gw_buf_printf(&url, "/api/v2/write?org=%s&bucket=%s&precision=ns", org, db) < 0 ||
            gw_buf_printf(&w->scratch, "bucket \"%s\" (org \"%s\")", bucket, o->org) < 0) {
            snprintf(err, err_size, "influx: out of memory");
            r = -ENOMEM;
            goto out;
        }
    } else {
        db = curl_easy_escape(w->slots[0].curl, o->database, 0);
        rp = o->retention_policy
                 ? curl_easy_escape(w->slots[0].curl, o->retention_policy, 0)
                 : NULL;
        if (!db || (o->retention_policy && !rp) || gw_buf_append(&url, o->url, base_len) < 0 ||
            gw_buf_printf(&url, "/write?db=%s", db) < 0 ||
            (rp && gw_buf_printf(&url, "&rp=%s", rp) < 0) ||
            gw_buf_puts(&url, "&precision=ns") < 0 ||
            gw_buf_printf(&w->scratch, "database \"%s\"", o->database) < 0) {
            snprintf(err, err_size, "influx: out of memory");
            r = -ENOMEM;
            goto out;
        }
    }
    w->target = w->scratch.data;
    w->scratch = (struct gw_buf)GW_BUF_INIT;
    w->write_url = url.data;
    url.data = NULL;
    r = 0;
out:
    gw_buf_free(&url);
    curl_free(db);
    curl_free(rp);
    curl_free(org);
    curl_free(scheme);
    curl_free(query);
    curl_url_cleanup(u);
    return r;
}

/* The request headers, shared by every slot. */
static int setup_headers(struct influx_writer *w)
{
    w->headers = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
    if (!w->headers)
        return -ENOMEM;
    /* No "Expect: 100-continue" round trip before each body. */
    struct curl_slist *more = curl_slist_append(w->headers, "Expect:");
    if (!more)
        return -ENOMEM;
    w->headers = more;
    if (w->gzip) {
        more = curl_slist_append(w->headers, "Content-Encoding: gzip");
        if (!more)
            return -ENOMEM;
        w->headers = more;
    }
    if (w->auth_header) {
        more = curl_slist_append(w->headers, w->auth_header);
        if (!more)
            return -ENOMEM;
        w->headers = more;
    }
    return 0;
}

static int setup_curl(struct influx_writer *w, struct slot *s)
{
    CURL *c = s->curl;
    CURLcode rc = CURLE_OK;

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
    SET(CURLOPT_ERRORBUFFER, s->curl_error);
    SET(CURLOPT_WRITEFUNCTION, on_response);
    SET(CURLOPT_WRITEDATA, &s->response);
    SET(CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (w->username && w->version != 2) {
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
    w->max_in_flight = o->max_in_flight ? o->max_in_flight : INFLUX_WRITER_DEFAULT_MAX_IN_FLIGHT;
    /* A batch answered before an earlier one keeps its slot until that one
     * is done too; twice the slots let the next requests go out meanwhile. */
    w->n_slots = 2 * w->max_in_flight;
    w->rng = (uint32_t)gw_monotonic_ns() | 1u;
    w->retry_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(0.2, 3);
    w->reject_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(1, 5);
    w->refuse_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(0.1, 2);
    w->dead_limit = (struct gw_log_limit)GW_LOG_LIMIT_INIT(0.2, 3);
    w->version = o->version ? o->version : 1;
    w->gzip = o->gzip;
    atomic_init(&w->deadline_ns, 0);

    w->base_url = copy_string(o->url, &failed);
    w->username = copy_string(o->username, &failed);
    w->password = copy_string(o->password, &failed);
    w->dead_letter_path = copy_string(o->dead_letter_path, &failed);
    if (failed)
        goto fail;
    if (w->version == 2 && o->token) {
        struct gw_buf h = GW_BUF_INIT;
        if (gw_buf_printf(&h, "Authorization: Token %s", o->token) < 0)
            goto fail;
        w->auth_header = h.data;
    }
    if (w->dead_letter_path) {
        /* Found out now, not when the first line is refused. */
        r = gw_mkdir_parent(w->dead_letter_path);
        if (r == 0)
            r = append_file(w->dead_letter_path, "", 0);
        if (r < 0) {
            snprintf(err, sizeof(err), "influx: dead-letter file %s: %s", w->dead_letter_path,
                     strerror(-r));
            goto fail;
        }
    }
    if (w->gzip) {
        if (deflateInit2(&w->zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            goto fail;
        w->zs_ready = true;
    }

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
    w->multi = curl_multi_init();
    w->slots = calloc((size_t)w->n_slots, sizeof(*w->slots));
    if (!w->multi || !w->slots)
        goto fail;
    /* Keep a connection per request at once, even while fewer run. */
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->max_in_flight);
    for (int i = 0; i < w->n_slots; i++) {
        w->slots[i].curl = curl_easy_init();
        if (!w->slots[i].curl)
            goto fail;
    }
    if (build_write_url(w, o, err, sizeof(err)) < 0)
        goto fail;
    r = setup_headers(w);
    for (int i = 0; r == 0 && i < w->n_slots; i++)
        r = setup_curl(w, &w->slots[i]);
    if (r < 0) {
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
    gw_debug(MODULE,
             "writing to %s (batches of %zu lines, flush every %lld ms, %d requests at once%s)",
             w->write_url, w->batch_size, (long long)(w->flush_interval_ns / NS_PER_MS),
             w->max_in_flight,
             w->gzip ? ", gzip" : "");
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
    size_t before;
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
        before = w->q.pending_lines;
        r = queue_push(&w->q, lines, len, n_lines, gw_monotonic_ns());
        /* Wake the thread only when that changes what it waits for: the
         * flush timer starts, or a batch is full. While requests run it
         * waits in curl_multi_poll, and only a free slot makes it care. */
        if (r == 0 &&
            (before == 0 || (before < w->line_cap && w->q.pending_lines >= w->line_cap))) {
            if (w->idle)
                pthread_cond_signal(&w->wake);
            else if (w->polling && w->count < w->n_slots && w->active < w->max_in_flight)
                curl_multi_wakeup(w->multi);
        }
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
    /* Requests in flight see the deadline now, not at their next poll. */
    curl_multi_wakeup(w->multi);

    pthread_join(w->thread, NULL);
    w->running = false;

    influx_writer_stats(w, &s);
    gw_info(MODULE,
            "stopped: %llu points written in %llu batches, %llu rejected (%llu dead-lettered), "
            "%llu dropped, %llu failed requests",
            (unsigned long long)s.points_written, (unsigned long long)s.batches_written,
            (unsigned long long)s.points_rejected, (unsigned long long)s.points_dead_lettered,
            (unsigned long long)s.points_dropped, (unsigned long long)s.write_errors);
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
