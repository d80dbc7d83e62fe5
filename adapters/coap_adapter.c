#include "coap_adapter.h"

#include <coap3/coap.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_adapter.h"
#include "gw_config.h"
#include "gw_log.h"

#define DEVICE_ID_MAX 128
#define REASON_MAX 256
/* Bytes of a diagnostic payload at most: a CoAP error should fit one
 * datagram with room to spare. */
#define DIAG_MAX 128
/* How long the server thread waits for a datagram at most, so stop is
 * seen this soon. */
#define IO_WAIT_MS 100
/* Datagrams handled in one I/O round at most (the stop flag and the
 * block-wise expiry are checked between rounds), and epoll events taken
 * at once. */
#define ROUND_DATAGRAMS 32
#define MAX_EVENTS 16
/* Block-wise uploads being assembled at once, and how long one may sit
 * idle before its partial body is dropped. */
#define MAX_UPLOADS 64
#define UPLOAD_IDLE_NS (30 * INT64_C(1000000000))
/* Bytes all partial bodies may hold together, at least (or twice
 * payload.max_bytes when that is more). */
#define UPLOAD_BUDGET_MIN (8u * 1024 * 1024)
/* Answers remembered for duplicate detection, and for how long: RFC 7252
 * EXCHANGE_LIFETIME with the default transmission parameters. */
#define SEEN_SLOTS 4096
#define EXCHANGE_LIFETIME_NS (247 * INT64_C(1000000000))
/* libcoap keeps a session per peer address, also for peers that only sent
 * garbage; these bound how many it keeps (the least recently used idle one
 * goes first) and how many DTLS handshakes may be half done. */
#define MAX_IDLE_SESSIONS 4096
#define MAX_HANDSHAKES 64
/* Sent to DTLS clients as the PSK identity hint. */
#define PSK_HINT "gridgate"

/* Content-Format numbers (RFC 7252 section 12.3, RFC 8428). */
#define CF_JSON 50
#define CF_SENML_JSON 110
#define CF_SENML_CBOR 112

/* CoAP response codes the adapter gives (RFC 7252, RFC 7959). */
#define CODE_CHANGED 204
#define CODE_CONTINUE 231
#define CODE_BAD_REQUEST 400
#define CODE_UNAUTHORIZED 401
#define CODE_FORBIDDEN 403
#define CODE_NOT_FOUND 404
#define CODE_NOT_ALLOWED 405
#define CODE_INCOMPLETE 408
#define CODE_TOO_LARGE 413
#define CODE_UNSUPPORTED 415
#define CODE_UNAVAILABLE 503

struct psk_entry {
    char identity[COAP_DTLS_MAX_PSK_IDENTITY + 1];
    size_t identity_len;
    uint8_t key_bytes[COAP_DTLS_MAX_PSK];
    coap_bin_const_t key; /* points into key_bytes once the table is final */
    int line;
};

/* One Block1 upload being assembled. A slot is free when session is NULL.
 * Keyed by session and target: libcoap gives each peer address its own
 * session, and a device sends one body at a time to one resource. */
struct upload {
    const coap_session_t *session;
    enum gw_channel channel;
    char device_id[DEVICE_ID_MAX];
    unsigned content_format;
    uint8_t *body;
    size_t len;
    size_t cap;
    int64_t last_ns;
};

/* An answer, kept so that a duplicate gets the same one. */
struct reply {
    int code;
    bool has_block1;
    unsigned block1; /* Block1 value acknowledging the final block */
    char diag[DIAG_MAX + 1];
};

/* A recently answered message, for duplicate detection. */
struct seen {
    bool used;
    coap_proto_t proto; /* UDP and DTLS are separate endpoints */
    coap_address_t peer;
    coap_mid_t mid;
    int64_t at_ns;
    struct reply reply;
};

/* The device and channel a request names. */
struct target {
    char device_id[DEVICE_ID_MAX];
    enum gw_channel channel;
};

struct coapa_impl {
    struct gw_adapter *adapter;
    char *listen;
    int port;
    int dtls_port;
    size_t max_bytes;

    struct psk_entry *psks; /* sorted by identity; read-only once init returns */
    size_t n_psks;
    bool dtls;

    bool started; /* coap_startup() was called */
    coap_context_t *ctx;

    pthread_t thread;
    bool thread_running;
    int stopping; /* set by stop, read by the server thread */

    /* Owned by the server thread while it runs. */
    struct upload uploads[MAX_UPLOADS];
    size_t upload_bytes;
    size_t upload_budget;
    struct seen *seen; /* SEEN_SLOTS of them */

    struct gw_adapter_stats stats;
};

/* Lines a device can trigger at will go through these. */
static struct gw_log_limit request_log_limit = GW_LOG_LIMIT_INIT(1.0, 10.0);
static struct gw_log_limit library_log_limit = GW_LOG_LIMIT_INIT(1.0, 10.0);

/* Paths and attributes for /.well-known/core; libcoap keeps pointers. */
/* clang-format off */
#define STR_CONST(text) { sizeof(text) - 1, (const uint8_t *)(text) }
/* clang-format on */
static coap_str_const_t telemetry_path = STR_CONST("devices/{id}/telemetry");
static coap_str_const_t event_path = STR_CONST("devices/{id}/event");
static coap_str_const_t attr_rt = STR_CONST("rt");
static coap_str_const_t attr_ct = STR_CONST("ct");
static coap_str_const_t attr_title = STR_CONST("title");
static coap_str_const_t rt_telemetry = STR_CONST("\"gridgate.telemetry\"");
static coap_str_const_t rt_event = STR_CONST("\"gridgate.event\"");
static coap_str_const_t ct_formats = STR_CONST("\"50 110 112\"");
static coap_str_const_t title_template = STR_CONST("\"URI template: {id} is a device id\"");

static void count(uint64_t *counter)
{
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* libcoap's log lines, into gw_log. The peer-triggered ones (garbage
 * datagrams, failed handshakes) are rate limited unless debugging. */
static void log_from_libcoap(coap_log_t level, const char *message)
{
    enum gw_log_level gw_level;
    int len = (int)strlen(message);

    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == '\r'))
        len--;
    if (level <= LOG_ERR)
        gw_level = GW_LOG_ERROR;
    else if (level == LOG_WARNING)
        gw_level = GW_LOG_WARN;
    else if (level <= LOG_INFO)
        gw_level = GW_LOG_INFO;
    else
        gw_level = GW_LOG_DEBUG;
    if (gw_log_threshold >= GW_LOG_DEBUG)
        gw_log(gw_level, "libcoap", "%.*s", len, message);
    else
        gw_log_limited(&library_log_limit, gw_level, "libcoap", "%.*s", len, message);
}

/* Copies at most size - 1 bytes of s[len], with anything unprintable as
 * '?', for log lines that quote what a peer sent. */
static const char *printable(char *dst, size_t size, const uint8_t *s, size_t len)
{
    size_t n = len < size - 1 ? len : size - 1;

    for (size_t i = 0; i < n; i++)
        dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    dst[n] = '\0';
    return dst;
}

static const char *peer_name(const coap_session_t *session, char *buf, size_t size)
{
    const coap_address_t *remote = coap_session_get_addr_remote(session);

    if (!remote || coap_print_addr(remote, (unsigned char *)buf, size) == 0)
        snprintf(buf, size, "unknown peer");
    return buf;
}

/* ---- pre-shared keys ---- */

static int compare_psk(const void *a, const void *b)
{
    const struct psk_entry *x = a, *y = b;
    size_t n = x->identity_len < y->identity_len ? x->identity_len : y->identity_len;
    int r = memcmp(x->identity, y->identity, n);

    if (r != 0)
        return r;
    return x->identity_len < y->identity_len ? -1 : x->identity_len > y->identity_len;
}

static const struct psk_entry *psk_find(const struct coapa_impl *c, const uint8_t *identity,
                                        size_t len)
{
    struct psk_entry key;

    if (!c->psks || len > COAP_DTLS_MAX_PSK_IDENTITY)
        return NULL;
    memcpy(key.identity, identity, len);
    key.identity_len = len;
    return bsearch(&key, c->psks, c->n_psks, sizeof(*c->psks), compare_psk);
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    *end = '\0';
    return s;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A key is its text as written, or hex:0011... for binary keys. Writes a
 * reason into why on failure. */
static int parse_key(const char *text, struct psk_entry *e, const char **why)
{
    size_t len;

    if (strncmp(text, "hex:", 4) == 0) {
        text += 4;
        len = strlen(text);
        if (len == 0 || len % 2 != 0) {
            *why = "hex: key needs an even, non-zero number of hex digits";
            return -EINVAL;
        }
        if (len / 2 > COAP_DTLS_MAX_PSK) {
            *why = "key longer than 64 bytes (libcoap's limit)";
            return -EINVAL;
        }
        for (size_t i = 0; i < len / 2; i++) {
            int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                *why = "hex: key has a character that is not a hex digit";
                return -EINVAL;
            }
            e->key_bytes[i] = (uint8_t)(hi << 4 | lo);
        }
        e->key.length = len / 2;
        return 0;
    }
    len = strlen(text);
    if (len == 0) {
        *why = "empty key";
        return -EINVAL;
    }
    if (len > COAP_DTLS_MAX_PSK) {
        *why = "key longer than 64 bytes (libcoap's limit)";
        return -EINVAL;
    }
    memcpy(e->key_bytes, text, len);
    e->key.length = len;
    return 0;
}

/* Reads device_id,key lines ('#' comments, blank lines and a
 * "device_id,key" header are skipped). Logs file:line: what is wrong. */
static int load_psk_file(struct coapa_impl *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    ssize_t n;
    int lineno = 0, r = 0;
    bool seen_data = false;

    if (!f) {
        r = -errno;
        gw_error("coap", "%s: cannot open the PSK file (coap.psk_file): %s", path, strerror(-r));
        return r;
    }
    while ((n = getline(&line, &line_cap, f)) != -1) {
        char *text, *comma, *id, *key;
        const char *why = NULL;
        struct psk_entry *e;

        lineno++;
        if (memchr(line, '\0', (size_t)n)) {
            why = "NUL byte in line";
            goto bad;
        }
        text = trim(line);
        if (*text == '\0' || *text == '#')
            continue;
        comma = strchr(text, ',');
        if (!comma) {
            why = "expected device_id,key";
            goto bad;
        }
        *comma = '\0';
        id = trim(text);
        key = trim(comma + 1);
        if (!seen_data && strcmp(id, "device_id") == 0 && strcmp(key, "key") == 0) {
            seen_data = true;
            continue;
        }
        seen_data = true;
        if (*id == '\0') {
            why = "empty device id";
            goto bad;
        }
        if (strlen(id) > COAP_DTLS_MAX_PSK_IDENTITY) {
            why = "device id longer than 64 bytes (libcoap's PSK identity limit)";
            goto bad;
        }
        if (c->n_psks == cap) {
            size_t new_cap = cap ? cap * 2 : 64;
            struct psk_entry *grown = realloc(c->psks, new_cap * sizeof(*grown));
            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            c->psks = grown;
            cap = new_cap;
        }
        e = &c->psks[c->n_psks];
        memset(e, 0, sizeof(*e));
        e->identity_len = strlen(id);
        memcpy(e->identity, id, e->identity_len);
        e->line = lineno;
        if (parse_key(key, e, &why) < 0)
            goto bad;
        c->n_psks++;
        continue;
    bad:
        gw_error("coap", "%s:%d: %s", path, lineno, why);
        r = -EINVAL;
        goto out;
    }
    if (ferror(f)) {
        r = -EIO;
        gw_error("coap", "%s: cannot read the PSK file (coap.psk_file)", path);
        goto out;
    }
    qsort(c->psks, c->n_psks, sizeof(*c->psks), compare_psk);
    for (size_t i = 0; i < c->n_psks; i++) {
        c->psks[i].key.s = c->psks[i].key_bytes;
        if (i > 0 && compare_psk(&c->psks[i - 1], &c->psks[i]) == 0) {
            const struct psk_entry *a = &c->psks[i - 1], *b = &c->psks[i];
            gw_error("coap", "%s:%d: device %s: duplicate key, first given on line %d", path,
                     a->line > b->line ? a->line : b->line, a->identity,
                     a->line < b->line ? a->line : b->line);
            r = -EINVAL;
            goto out;
        }
    }
    if (c->n_psks == 0)
        gw_warn("coap", "%s: no keys in the PSK file: every DTLS handshake will be refused", path);
out:
    if (line)
        explicit_bzero(line, line_cap);
    free(line);
    fclose(f);
    return r;
}

/* libcoap asks for the key of the identity a DTLS client names; NULL
 * refuses the handshake. */
static const coap_bin_const_t *on_psk_identity(coap_bin_const_t *identity, coap_session_t *session,
                                               void *arg)
{
    struct coapa_impl *c = arg;
    const struct psk_entry *e = psk_find(c, identity->s, identity->length);
    char id[COAP_DTLS_MAX_PSK_IDENTITY + 1], peer[64];

    if (!e) {
        gw_log_limited(&request_log_limit, GW_LOG_WARN, "coap",
                       "DTLS handshake from %s refused: unknown PSK identity '%s'",
                       peer_name(session, peer, sizeof(peer)),
                       printable(id, sizeof(id), identity->s, identity->length));
        return NULL;
    }
    return &e->key;
}

/* ---- requests ---- */

/* Finds devices/{id}/{telemetry|event} in the Uri-Path options. */
static int parse_target(const coap_pdu_t *request, struct target *ret)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;
    const uint8_t *seg[3];
    size_t seg_len[3];
    int n = 0;

    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_PATH);
    coap_option_iterator_init(request, &it, &filter);
    while ((opt = coap_option_next(&it))) {
        if (n == 3)
            return -ENOENT;
        seg[n] = coap_opt_value(opt);
        seg_len[n] = coap_opt_length(opt);
        n++;
    }
    if (n != 3 || seg_len[0] != 7 || memcmp(seg[0], "devices", 7) != 0)
        return -ENOENT;
    if (seg_len[1] == 0 || seg_len[1] >= DEVICE_ID_MAX || memchr(seg[1], '\0', seg_len[1]))
        return -ENOENT;
    if (seg_len[2] == 9 && memcmp(seg[2], "telemetry", 9) == 0)
        ret->channel = GW_CHANNEL_TELEMETRY;
    else if (seg_len[2] == 5 && memcmp(seg[2], "event", 5) == 0)
        ret->channel = GW_CHANNEL_EVENT;
    else
        return -ENOENT;
    memcpy(ret->device_id, seg[1], seg_len[1]);
    ret->device_id[seg_len[1]] = '\0';
    return 0;
}

/* Sets code and diagnostic, the diagnostic cut to DIAG_MAX bytes without
 * splitting a UTF-8 sequence. */
static void set_reply(struct reply *r, int code, const char *diag)
{
    size_t len = diag ? strlen(diag) : 0;

    r->code = code;
    if (len > DIAG_MAX) {
        len = DIAG_MAX;
        while (len > 0 && ((unsigned char)diag[len] & 0xc0) == 0x80)
            len--;
    }
    if (len > 0)
        memcpy(r->diag, diag, len);
    r->diag[len] = '\0';
}

/* Writes a reply into libcoap's response. Options go in ascending order,
 * then the diagnostic payload (RFC 7252 5.5.2: no Content-Format, so
 * UTF-8 text). A 4.13 carries Size1 = the largest body accepted (RFC 7959
 * section 2.9.3). */
static void write_reply(const struct coapa_impl *c, coap_pdu_t *response, const struct reply *r)
{
    uint8_t buf[4];

    coap_pdu_set_code(response, (coap_pdu_code_t)COAP_RESPONSE_CODE(r->code));
    /* libcoap adds the Block1 option of a 2.31 itself. */
    if (r->code == CODE_CONTINUE)
        return;
    if (r->has_block1)
        coap_add_option(response, COAP_OPTION_BLOCK1,
                        coap_encode_var_safe(buf, sizeof(buf), r->block1), buf);
    if (r->code == CODE_TOO_LARGE)
        coap_add_option(response, COAP_OPTION_SIZE1,
                        coap_encode_var_safe(buf, sizeof(buf), (unsigned)c->max_bytes), buf);
    if (r->diag[0])
        coap_add_data(response, strlen(r->diag), (const uint8_t *)r->diag);
}

/* The duplicate-detection slot of a message (RFC 7252 section 4.5):
 * libcoap 4.3.1 hands a retransmitted request to the handler again, which
 * would ingest the reading twice. Direct-mapped: a newer message may take
 * an older one's slot, which only weakens the detection for the older. */
static struct seen *seen_slot(struct coapa_impl *c, const coap_address_t *peer, coap_mid_t mid)
{
    uint32_t h = 2166136261u;
    const uint8_t *bytes;
    size_t n;

    if (peer->addr.sa.sa_family == AF_INET6) {
        bytes = (const uint8_t *)&peer->addr.sin6.sin6_addr;
        n = sizeof(peer->addr.sin6.sin6_addr);
        h = (h ^ peer->addr.sin6.sin6_port) * 16777619u;
    } else {
        bytes = (const uint8_t *)&peer->addr.sin.sin_addr;
        n = sizeof(peer->addr.sin.sin_addr);
        h = (h ^ peer->addr.sin.sin_port) * 16777619u;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ bytes[i]) * 16777619u;
    h = (h ^ (uint32_t)mid) * 16777619u;
    return &c->seen[h % SEEN_SLOTS];
}

/* A device with a key must come over DTLS, and a DTLS session may only
 * post for the device its PSK identity names. Returns 0 or the code to
 * answer with, and a diagnostic in diag. */
static int check_peer(struct coapa_impl *c, coap_session_t *session, const struct target *t,
                      char *diag, size_t diag_len)
{
    size_t id_len = strlen(t->device_id);

    if (coap_session_get_proto(session) == COAP_PROTO_DTLS) {
        const coap_bin_const_t *identity = coap_session_get_psk_identity(session);
        char shown[COAP_DTLS_MAX_PSK_IDENTITY + 1];

        if (identity && identity->length == id_len &&
            memcmp(identity->s, t->device_id, id_len) == 0)
            return 0;
        if (identity)
            printable(shown, sizeof(shown), identity->s, identity->length);
        else
            shown[0] = '\0';
        snprintf(diag, diag_len, "PSK identity '%s' may not post for device '%s'", shown,
                 t->device_id);
        return CODE_FORBIDDEN;
    }
    if (psk_find(c, (const uint8_t *)t->device_id, id_len)) {
        snprintf(diag, diag_len, "device has a pre-shared key: use coaps:// on port %d",
                 c->dtls_port);
        return CODE_UNAUTHORIZED;
    }
    return 0;
}

/* Content-Format: 50 (or none) JSON, 110 SenML JSON, 112 SenML CBOR. */
static int parse_format(const coap_pdu_t *request, unsigned *ret_cf, enum payload_format *ret)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt = coap_check_option(request, COAP_OPTION_CONTENT_FORMAT, &it);
    unsigned cf = opt ? coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) : CF_JSON;

    *ret_cf = cf;
    switch (cf) {
    case CF_JSON:
        *ret = PAYLOAD_JSON;
        return 0;
    case CF_SENML_JSON:
        *ret = PAYLOAD_SENML_JSON;
        return 0;
    case CF_SENML_CBOR:
        *ret = PAYLOAD_SENML_CBOR;
        return 0;
    default:
        return -EPROTONOSUPPORT;
    }
}

static int result_code(enum gw_ingest_result result)
{
    switch (result) {
    case GW_INGEST_OK:
        return CODE_CHANGED;
    case GW_INGEST_BAD_PAYLOAD:
        return CODE_BAD_REQUEST;
    case GW_INGEST_UNKNOWN_DEVICE:
        return CODE_NOT_FOUND;
    case GW_INGEST_TOO_LARGE:
        return CODE_TOO_LARGE;
    case GW_INGEST_UNSUPPORTED:
        return CODE_UNSUPPORTED;
    case GW_INGEST_SHUTDOWN:
        return CODE_UNAVAILABLE;
    }
    return CODE_UNAVAILABLE;
}

/* Hands one whole body to the core; the reply is its verdict. */
static void ingest(struct coapa_impl *c, const struct target *t, enum payload_format format,
                   const void *data, size_t len, struct reply *reply)
{
    struct gw_adapter *a = c->adapter;
    char reason[REASON_MAX];
    struct gw_message msg = {
        .device_id = t->device_id,
        .channel = t->channel,
        .format = format,
        .payload = data,
        .len = len,
    };
    enum gw_ingest_result result;

    count(&c->stats.received);
    reason[0] = '\0';
    result = a->ingest(a->core, &msg, reason, sizeof(reason));
    if (result == GW_INGEST_OK) {
        count(&c->stats.accepted);
        set_reply(reply, CODE_CHANGED, NULL);
        return;
    }
    /* The core has counted and logged it. */
    count(&c->stats.rejected);
    set_reply(reply, result_code(result), reason[0] ? reason : gw_ingest_result_name(result));
}

/* A refusal before the core sees the message: counted, logged (limited). */
static void refuse(struct coapa_impl *c, coap_session_t *session, const struct target *t, int code,
                   const char *diag, struct reply *reply)
{
    char peer[64];

    count(&c->stats.received);
    count(&c->stats.rejected);
    gw_log_limited(&request_log_limit, GW_LOG_WARN, "coap", "device %s: %s from %s: %d.%02d %s",
                   t->device_id, gw_channel_name(t->channel),
                   peer_name(session, peer, sizeof(peer)), code / 100, code % 100, diag);
    set_reply(reply, code, diag);
}

static void upload_release(struct coapa_impl *c, struct upload *u)
{
    c->upload_bytes -= u->cap;
    free(u->body);
    memset(u, 0, sizeof(*u));
}

static struct upload *upload_find(struct coapa_impl *c, const coap_session_t *session,
                                  const struct target *t)
{
    for (size_t i = 0; i < MAX_UPLOADS; i++) {
        struct upload *u = &c->uploads[i];
        if (u->session == session && u->channel == t->channel &&
            strcmp(u->device_id, t->device_id) == 0)
            return u;
    }
    return NULL;
}

static void expire_uploads(struct coapa_impl *c, int64_t now)
{
    for (size_t i = 0; i < MAX_UPLOADS; i++) {
        struct upload *u = &c->uploads[i];
        if (u->session && now - u->last_ns > UPLOAD_IDLE_NS) {
            gw_log_limited(&request_log_limit, GW_LOG_WARN, "coap",
                           "device %s: block-wise upload abandoned after %zu bytes", u->device_id,
                           u->len);
            upload_release(c, u);
        }
    }
}

/* Makes room for need bytes, within payload.max_bytes and the budget. */
static int upload_reserve(struct coapa_impl *c, struct upload *u, size_t need)
{
    size_t new_cap;
    uint8_t *grown;

    if (need <= u->cap)
        return 0;
    new_cap = u->cap ? u->cap : 1024;
    while (new_cap < need)
        new_cap *= 2;
    if (new_cap > c->max_bytes)
        new_cap = c->max_bytes;
    if (c->upload_bytes - u->cap + new_cap > c->upload_budget)
        return -ENOSPC;
    grown = realloc(u->body, new_cap);
    if (!grown)
        return -ENOMEM;
    c->upload_bytes = c->upload_bytes - u->cap + new_cap;
    u->body = grown;
    u->cap = new_cap;
    return 0;
}

/* One Block1 block (RFC 7959 section 2.5). libcoap (COAP_BLOCK_USE_LIBCOAP
 * without SINGLE_BODY) puts the Block1 option into the response and turns
 * a 2.xx into 2.31 Continue while more blocks are to come; the body is
 * assembled here so that payload.max_bytes holds while it arrives:
 * libcoap's single-body mode would buffer whatever Size1 announces (its
 * coap_block_build_body allocates Size1 bytes) before the handler could
 * refuse. Blocks must come in order; a repeated block is acknowledged
 * again. */
static void on_block(struct coapa_impl *c, coap_session_t *session, const struct target *t,
                     const coap_pdu_t *request, const coap_block_b_t *block, unsigned cf,
                     enum payload_format format, const uint8_t *data, size_t len,
                     struct reply *reply)
{
    size_t offset = (size_t)block->num << (block->szx + 4);
    struct upload *u = upload_find(c, session, t);
    coap_opt_iterator_t it;
    coap_opt_t *size1 = coap_check_option(request, COAP_OPTION_SIZE1, &it);
    unsigned announced =
        size1 ? coap_decode_var_bytes(coap_opt_value(size1), coap_opt_length(size1)) : 0;
    char diag[REASON_MAX];
    int r;

    if (announced > c->max_bytes) {
        snprintf(diag, sizeof(diag), "announced size %u is over the limit of %zu bytes", announced,
                 c->max_bytes);
        goto too_large;
    }
    if (block->num == 0) {
        if (u) {
            upload_release(c, u); /* the device started over */
        } else {
            for (size_t i = 0; i < MAX_UPLOADS && !u; i++)
                if (!c->uploads[i].session)
                    u = &c->uploads[i];
            if (!u) {
                refuse(c, session, t, CODE_UNAVAILABLE,
                       "too many block-wise uploads in progress; try again later", reply);
                return;
            }
        }
        u->session = session;
        u->channel = t->channel;
        snprintf(u->device_id, sizeof(u->device_id), "%s", t->device_id);
        u->content_format = cf;
    } else if (!u || offset > u->len || cf != u->content_format) {
        /* A gap, a block without its predecessors, or a changed format. */
        if (u)
            upload_release(c, u);
        refuse(c, session, t, CODE_INCOMPLETE,
               "block out of order or Content-Format changed; start again from block 0", reply);
        return;
    }
    u->last_ns = gw_monotonic_ns();

    if (offset + len > c->max_bytes) {
        snprintf(diag, sizeof(diag), "body is over the limit of %zu bytes", c->max_bytes);
        goto too_large;
    }
    /* A repeated block (a retransmission whose answer was lost) writes
     * the same bytes again. */
    r = upload_reserve(c, u, offset + len);
    if (r < 0) {
        upload_release(c, u);
        refuse(c, session, t, CODE_UNAVAILABLE,
               r == -ENOSPC ? "too many block-wise uploads in progress; try again later"
                            : "out of memory",
               reply);
        return;
    }
    if (len > 0)
        memcpy(u->body + offset, data, len);
    if (offset + len > u->len || !block->m)
        u->len = offset + len;
    if (block->m) {
        set_reply(reply, CODE_CONTINUE, NULL);
        return;
    }
    ingest(c, t, format, u->body, u->len, reply);
    /* The final answer acknowledges the last block (RFC 7959 2.3). */
    reply->has_block1 = true;
    reply->block1 = block->num << 4 | block->szx;
    upload_release(c, u);
    return;

too_large:
    if (u)
        upload_release(c, u);
    refuse(c, session, t, CODE_TOO_LARGE, diag, reply);
}

/* Works out the answer to one POST or PUT on a device resource. */
static void handle(struct coapa_impl *c, coap_session_t *session, const struct target *t,
                   const coap_pdu_t *request, struct reply *reply)
{
    enum payload_format format;
    coap_block_b_t block;
    const uint8_t *data = NULL;
    size_t len = 0, offset = 0, total = 0;
    unsigned cf;
    char diag[REASON_MAX];
    int code;

    code = check_peer(c, session, t, diag, sizeof(diag));
    if (code != 0) {
        refuse(c, session, t, code, diag, reply);
        return;
    }
    if (parse_format(request, &cf, &format) < 0) {
        snprintf(diag, sizeof(diag),
                 "Content-Format %u is not supported (use 50 JSON, 110 SenML JSON or "
                 "112 SenML CBOR)",
                 cf);
        refuse(c, session, t, CODE_UNSUPPORTED, diag, reply);
        return;
    }
    if (!coap_get_data_large(request, &len, &data, &offset, &total)) {
        data = NULL;
        len = 0;
    }
    if (coap_get_block_b(session, request, COAP_OPTION_BLOCK1, &block) &&
        (block.num > 0 || block.m)) {
        on_block(c, session, t, request, &block, cf, format, data, len, reply);
        return;
    }
    if (len > c->max_bytes) {
        snprintf(diag, sizeof(diag), "payload of %zu bytes is over the limit of %zu bytes", len,
                 c->max_bytes);
        refuse(c, session, t, CODE_TOO_LARGE, diag, reply);
        return;
    }
    ingest(c, t, format, data, len, reply);
}

/* POST and PUT on devices/{id}/telemetry and devices/{id}/event. */
static void on_post(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                    const coap_string_t *query, coap_pdu_t *response)
{
    struct coapa_impl *c = coap_resource_get_userdata(resource);
    const coap_address_t *peer = coap_session_get_addr_remote(session);
    coap_mid_t mid = coap_pdu_get_mid(request);
    struct seen *seen = peer ? seen_slot(c, peer, mid) : NULL;
    struct reply reply = { 0 };
    struct target t;
    int64_t now = gw_monotonic_ns();

    (void)query;
    if (parse_target(request, &t) < 0) {
        set_reply(&reply, CODE_NOT_FOUND, "no such resource; see /.well-known/core");
        write_reply(c, response, &reply);
        return;
    }
    if (seen && seen->used && seen->mid == mid && seen->proto == coap_session_get_proto(session) &&
        now - seen->at_ns < EXCHANGE_LIFETIME_NS && coap_address_equals(&seen->peer, peer)) {
        gw_debug("coap", "device %s: duplicate of message 0x%04x answered again", t.device_id,
                 (unsigned)mid);
        write_reply(c, response, &seen->reply);
        return;
    }
    handle(c, session, &t, request, &reply);
    write_reply(c, response, &reply);
    if (seen) {
        seen->used = true;
        seen->proto = coap_session_get_proto(session);
        seen->peer = *peer;
        seen->mid = mid;
        seen->at_ns = now;
        seen->reply = reply;
    }
}

/* Any other method: 4.05 on a device resource, 4.04 elsewhere. */
static void on_other_method(coap_resource_t *resource, coap_session_t *session,
                            const coap_pdu_t *request, const coap_string_t *query,
                            coap_pdu_t *response)
{
    struct coapa_impl *c = coap_resource_get_userdata(resource);
    struct reply reply = { 0 };
    struct target t;

    (void)session;
    (void)query;
    if (parse_target(request, &t) < 0)
        set_reply(&reply, CODE_NOT_FOUND, "no such resource; see /.well-known/core");
    else
        set_reply(&reply, CODE_NOT_ALLOWED, "use POST or PUT");
    write_reply(c, response, &reply);
}

/* ---- set-up ---- */

static int resolve(const char *host, int port, coap_address_t *ret)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, NULL, &hints, &res);

    if (r != 0) {
        gw_error("coap", "coap.listen: cannot resolve '%s': %s", host, gai_strerror(r));
        return -EINVAL;
    }
    coap_address_init(ret);
    ret->size = res->ai_addrlen;
    memcpy(&ret->addr, res->ai_addr, res->ai_addrlen);
    if (res->ai_family == AF_INET6)
        ret->addr.sin6.sin6_port = htons((uint16_t)port);
    else
        ret->addr.sin.sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

static int add_endpoint(struct coapa_impl *c, int port, coap_proto_t proto)
{
    coap_address_t addr;
    int r = resolve(c->listen, port, &addr);

    if (r < 0)
        return r;
    errno = 0;
    if (!coap_new_endpoint(c->ctx, &addr, proto)) {
        /* Best effort: errno is what libcoap's failed bind() left. */
        r = errno ? -errno : -EADDRNOTAVAIL;
        gw_error("coap", "cannot listen on %s port %d/udp (%s): %s", c->listen, port,
                 proto == COAP_PROTO_DTLS ? "DTLS" : "plain UDP", strerror(-r));
        return r;
    }
    return 0;
}

static coap_resource_t *add_template(struct coapa_impl *c, coap_str_const_t *path,
                                     coap_str_const_t *rt)
{
    coap_resource_t *r = coap_resource_init(path, 0);

    if (!r)
        return NULL;
    coap_resource_set_userdata(r, c);
    coap_register_handler(r, COAP_REQUEST_POST, on_post);
    coap_register_handler(r, COAP_REQUEST_PUT, on_post);
    /* Added first, so that the context frees it whatever happens next. */
    coap_add_resource(c->ctx, r);
    if (!coap_add_attr(r, &attr_rt, rt, 0) || !coap_add_attr(r, &attr_ct, &ct_formats, 0) ||
        !coap_add_attr(r, &attr_title, &title_template, 0))
        return NULL;
    return r;
}

/* Device ids are many: one unknown-resource handler parses every path
 * instead of a resource per device. The two templates only describe the
 * resources in /.well-known/core (a request for the literal path names the
 * device "{id}", which no district has). */
static int add_resources(struct coapa_impl *c)
{
    static const coap_request_t others[] = {
        COAP_REQUEST_GET,   COAP_REQUEST_DELETE, COAP_REQUEST_FETCH,
        COAP_REQUEST_PATCH, COAP_REQUEST_IPATCH,
    };
    coap_resource_t *r = coap_resource_unknown_init2(on_post, 0);

    if (!r)
        return -ENOMEM;
    coap_resource_set_userdata(r, c);
    coap_register_handler(r, COAP_REQUEST_POST, on_post);
    /* libcoap answers 4.04 itself for a method the unknown resource has no
     * handler for; these make a known path say 4.05 instead. */
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        coap_register_handler(r, others[i], on_other_method);
    coap_add_resource(c->ctx, r);
    if (!add_template(c, &telemetry_path, &rt_telemetry) ||
        !add_template(c, &event_path, &rt_event))
        return -ENOMEM;
    return 0;
}

/* The (D)TLS library libcoap was built with, and its runtime version.
 * coap_string_tls_version() decodes OpenSSL 3 version numbers wrongly. */
static const char *tls_library(char *buf, size_t size)
{
    const coap_tls_version_t *v = coap_get_tls_library_version();
    unsigned long long n = (unsigned long long)v->version;

    switch (v->type) {
    case COAP_TLS_LIBRARY_OPENSSL: /* 0xMNN00PP0L */
        snprintf(buf, size, "OpenSSL %llu.%llu.%llu", n >> 28 & 0xf, n >> 20 & 0xff, n >> 4 & 0xff);
        break;
    case COAP_TLS_LIBRARY_GNUTLS: /* 0xMMNNPP */
        snprintf(buf, size, "GnuTLS %llu.%llu.%llu", n >> 16 & 0xff, n >> 8 & 0xff, n & 0xff);
        break;
    case COAP_TLS_LIBRARY_NOTLS:
        snprintf(buf, size, "no (D)TLS library");
        break;
    default:
        snprintf(buf, size, "(D)TLS library %d version 0x%llx", (int)v->type, n);
        break;
    }
    return buf;
}

static bool coapa_enabled(const struct gw_config *cfg)
{
    return cfg->coap.enabled;
}

static void coapa_stop(struct gw_adapter *a)
{
    struct coapa_impl *c = a->impl;

    if (!c || !c->thread_running)
        return;
    __atomic_store_n(&c->stopping, 1, __ATOMIC_RELEASE);
    /* The thread finishes its round (at most ROUND_DATAGRAMS requests,
     * each with its ingest call) and leaves within IO_WAIT_MS of that;
     * after the join no handler runs. */
    pthread_join(c->thread, NULL);
    c->thread_running = false;
}

static void coapa_destroy(struct gw_adapter *a)
{
    struct coapa_impl *c = a->impl;

    if (!c)
        return;
    coapa_stop(a);
    for (size_t i = 0; i < MAX_UPLOADS; i++)
        if (c->uploads[i].session)
            upload_release(c, &c->uploads[i]);
    if (c->ctx)
        coap_free_context(c->ctx);
    free(c->seen);
    if (c->started)
        coap_cleanup();
    if (c->psks) {
        explicit_bzero(c->psks, c->n_psks * sizeof(*c->psks));
        free(c->psks);
    }
    free(c->listen);
    free(c);
    a->impl = NULL;
}

static int coapa_init(struct gw_adapter *a, const struct gw_config *cfg)
{
    struct coapa_impl *c = calloc(1, sizeof(*c));
    char version[64], support[128];
    int r;

    if (!c)
        return -ENOMEM;
    a->impl = c;
    c->adapter = a;
    c->listen = strdup(cfg->coap.listen);
    c->seen = calloc(SEEN_SLOTS, sizeof(*c->seen));
    if (!c->listen || !c->seen) {
        r = -ENOMEM;
        goto fail;
    }
    c->port = cfg->coap.port;
    c->dtls_port = cfg->coap.dtls_port;
    c->max_bytes = (size_t)cfg->payload.max_bytes;
    c->upload_budget = 2 * c->max_bytes > UPLOAD_BUDGET_MIN ? 2 * c->max_bytes : UPLOAD_BUDGET_MIN;

    coap_startup();
    c->started = true;
    coap_set_log_handler(log_from_libcoap);
    coap_set_log_level(gw_log_threshold >= GW_LOG_DEBUG ? LOG_DEBUG : LOG_WARNING);
    coap_dtls_set_log_level(gw_log_threshold >= GW_LOG_DEBUG ? LOG_DEBUG : LOG_WARNING);
    gw_info("coap", "%s with %s %s", coap_package_version(), tls_library(version, sizeof(version)),
            coap_string_tls_support(support, sizeof(support)));

    if (cfg->coap.psk_file) {
        if (!coap_dtls_is_supported()) {
            gw_error("coap",
                     "coap.psk_file is set but this libcoap (%s, %s) has no DTLS support: "
                     "refusing to run CoAP without the keys",
                     coap_package_version(), tls_library(version, sizeof(version)));
            r = -ENOTSUP;
            goto fail;
        }
        if (c->dtls_port == c->port) {
            gw_error("coap", "coap.dtls_port (%d) must differ from coap.port", c->dtls_port);
            r = -EINVAL;
            goto fail;
        }
        r = load_psk_file(c, cfg->coap.psk_file);
        if (r < 0)
            goto fail;
        c->dtls = true;
    }

    c->ctx = coap_new_context(NULL);
    if (!c->ctx) {
        r = -ENOMEM;
        goto fail;
    }
    coap_context_set_block_mode(c->ctx, COAP_BLOCK_USE_LIBCOAP);
    coap_context_set_max_idle_sessions(c->ctx, MAX_IDLE_SESSIONS);
    coap_context_set_max_handshake_sessions(c->ctx, MAX_HANDSHAKES);
    if (c->dtls) {
        coap_dtls_spsk_t spsk = {
            .version = COAP_DTLS_SPSK_SETUP_VERSION,
            .validate_id_call_back = on_psk_identity,
            .id_call_back_arg = c,
            .psk_info.hint = { sizeof(PSK_HINT) - 1, (const uint8_t *)PSK_HINT },
        };
        if (!coap_context_set_psk2(c->ctx, &spsk)) {
            gw_error("coap", "libcoap refused the DTLS-PSK set-up");
            r = -EINVAL;
            goto fail;
        }
    }
    r = add_resources(c);
    if (r < 0)
        goto fail;
    r = add_endpoint(c, c->port, COAP_PROTO_UDP);
    if (r < 0)
        goto fail;
    if (c->dtls) {
        r = add_endpoint(c, c->dtls_port, COAP_PROTO_DTLS);
        if (r < 0)
            goto fail;
    }
    return 0;

fail:
    coapa_destroy(a);
    return r;
}

/* One pass of libcoap's I/O the way coap_io_process() does it, for a
 * libcoap without epoll (gridgate's Debian one has it). */
static void serve_plain(struct coapa_impl *c)
{
    if (coap_io_process(c->ctx, IO_WAIT_MS) < 0) {
        gw_log_limited(&library_log_limit, GW_LOG_ERROR, "coap",
                       "coap_io_process failed; retrying");
        usleep(IO_WAIT_MS * 1000);
    }
}

/* One I/O round on libcoap's epoll descriptor: its timers once, a wait of
 * at most IO_WAIT_MS, then every datagram already queued, up to
 * ROUND_DATAGRAMS. coap_io_process() reads one datagram per call and
 * re-arms its timers (two timerfd_settime calls and a walk over every
 * session) before each epoll_wait; here a busy socket is drained with a
 * zero-timeout epoll_wait between datagrams instead. coap_io_do_epoll()
 * still runs libcoap's timers after each event, so retransmissions and
 * session expiry keep their times. Each datagram is answered, its reading
 * journalled first, before the next is read, as with coap_io_process(). */
static void serve_round(struct coapa_impl *c, int epfd)
{
    struct epoll_event events[MAX_EVENTS];
    coap_tick_t now;
    unsigned wait_ms;
    int n;

    coap_ticks(&now);
    wait_ms = coap_io_prepare_epoll(c->ctx, now); /* 0: no timer pending */
    if (wait_ms == 0 || wait_ms > IO_WAIT_MS)
        wait_ms = IO_WAIT_MS;
    n = epoll_wait(epfd, events, MAX_EVENTS, (int)wait_ms);
    for (int i = 0; i < ROUND_DATAGRAMS && n > 0; i++) {
        coap_io_do_epoll(c->ctx, events, (size_t)n);
        n = epoll_wait(epfd, events, MAX_EVENTS, 0);
    }
    if (n < 0 && errno != EINTR) {
        gw_log_limited(&library_log_limit, GW_LOG_ERROR, "coap", "epoll_wait failed: %s; retrying",
                       strerror(errno));
        usleep(IO_WAIT_MS * 1000);
    }
}

static void *serve(void *arg)
{
    struct coapa_impl *c = arg;
    int epfd = coap_context_get_coap_fd(c->ctx); /* -1 without epoll */

    while (!__atomic_load_n(&c->stopping, __ATOMIC_ACQUIRE)) {
        if (epfd >= 0)
            serve_round(c, epfd);
        else
            serve_plain(c);
        expire_uploads(c, gw_monotonic_ns());
    }
    return NULL;
}

static int coapa_start(struct gw_adapter *a)
{
    struct coapa_impl *c = a->impl;
    const char *lb, *rb;
    int r = pthread_create(&c->thread, NULL, serve, c);

    if (r != 0) {
        gw_error("coap", "cannot start the CoAP server thread: %s", strerror(r));
        return -r;
    }
    c->thread_running = true;
    /* An IPv6 address goes in brackets in a URI. */
    lb = strchr(c->listen, ':') ? "[" : "";
    rb = *lb ? "]" : "";
    if (c->dtls)
        gw_info("coap", "listening on coap://%s%s%s:%d and coaps://%s%s%s:%d (DTLS-PSK, %zu keys)",
                lb, c->listen, rb, c->port, lb, c->listen, rb, c->dtls_port, c->n_psks);
    else
        gw_info("coap", "listening on coap://%s%s%s:%d (no DTLS: coap.psk_file is not set)", lb,
                c->listen, rb, c->port);
    return 0;
}

static void coapa_stats(struct gw_adapter *a, struct gw_adapter_stats *ret)
{
    struct coapa_impl *c = a->impl;

    memset(ret, 0, sizeof(*ret));
    ret->received = __atomic_load_n(&c->stats.received, __ATOMIC_RELAXED);
    ret->accepted = __atomic_load_n(&c->stats.accepted, __ATOMIC_RELAXED);
    ret->rejected = __atomic_load_n(&c->stats.rejected, __ATOMIC_RELAXED);
}

const struct gw_adapter_ops coapa_adapter_ops = {
    .name = "coap",
    .enabled = coapa_enabled,
    .init = coapa_init,
    .start = coapa_start,
    .stop = coapa_stop,
    .stats = coapa_stats,
    .destroy = coapa_destroy,
};
