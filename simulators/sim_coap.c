/* sim_coap: confirmable POSTs to the gateway through libcoap's client API.
 *
 * libcoap 4.3.1 calls the response and NACK handlers from inside
 * coap_io_process() on the calling thread, so no lock is needed: a send
 * takes an endpoint with nothing outstanding, and the I/O loop, run while
 * waiting for one (or for the answer, in sim_coap_post), frees endpoints
 * as their answers, NACKs (libcoap gave up retransmitting) or our own
 * deadline come.
 */
#include "sim_coap.h"

#include <cJSON.h>
#include <coap3/coap.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"

#define MODULE "gridsim"
#define ANSWER_WAIT_MS 20000 /* past libcoap's ~45 s worst case is pointless here */
#define IO_SLICE_MS 100
#define MAX_ENDPOINTS 256

/* One client endpoint: a UDP session with at most one request outstanding. */
struct sim_coap_ep {
    struct sim_coap *c;
    coap_session_t *session;
    bool waiting;
    int code;        /* 0 while waiting; -1 after a NACK */
    int64_t sent_ns; /* monotonic, when its request went out */
};

struct sim_coap {
    coap_context_t *ctx;
    int content_format; /* sim_coap_post's */
    struct sim_coap_ep *ep;
    int n_ep;
    int busy; /* endpoints waiting */
    struct sim_coap_counts counts;
};

static void on_coap_log(coap_log_t level, const char *message)
{
    /* libcoap 4.3.1 uses syslog levels: LOG_WARNING and more urgent are ours. */
    if (level <= LOG_WARNING)
        gw_warn("coap", "%.*s", (int)strcspn(message, "\n"), message);
}

/* The endpoint's request is over: answered (code > 0) or given up (-1). */
static void ep_done(struct sim_coap_ep *ep, int code)
{
    struct sim_coap *c = ep->c;

    ep->code = code;
    ep->waiting = false;
    c->busy--;
    if (code == 204)
        c->counts.changed++;
    else if (code > 0)
        c->counts.other++;
    else
        c->counts.failed++;
    if (code > 0)
        c->counts.last_ns = gw_monotonic_ns();
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid)
{
    struct sim_coap_ep *ep = coap_session_get_app_data(session);
    coap_pdu_code_t code = coap_pdu_get_code(received);
    (void)sent;
    (void)mid;

    if (ep && ep->waiting)
        ep_done(ep, (int)COAP_RESPONSE_CLASS(code) * 100 + (int)(code & 0x1f));
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *session, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid)
{
    struct sim_coap_ep *ep = coap_session_get_app_data(session);
    (void)sent;
    (void)reason;
    (void)mid;

    if (ep && ep->waiting)
        ep_done(ep, -1);
}

/* Resolves uri's host and port into dst. Logs and returns -EINVAL. */
static int resolve(const char *uri, coap_address_t *dst)
{
    coap_uri_t u;
    char host[256], port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
    int rc;

    if (coap_split_uri((const uint8_t *)uri, strlen(uri), &u) < 0 ||
        u.scheme != COAP_URI_SCHEME_COAP || u.host.length == 0 || u.host.length >= sizeof(host)) {
        gw_error(MODULE, "--coap %s: expected coap://HOST[:PORT]", uri);
        return -EINVAL;
    }
    memcpy(host, u.host.s, u.host.length);
    host[u.host.length] = '\0';
    snprintf(port, sizeof(port), "%u", (unsigned)u.port);
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        gw_error(MODULE, "--coap %s: %s", uri, gai_strerror(rc));
        return -EINVAL;
    }
    coap_address_init(dst);
    dst->size = (socklen_t)ai->ai_addrlen;
    memcpy(&dst->addr.sa, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

struct sim_coap *sim_coap_new_window(const char *uri, int endpoints)
{
    struct sim_coap *c = calloc(1, sizeof(*c));
    coap_address_t dst;

    if (!c)
        return NULL;
    c->content_format = SIM_COAP_JSON;
    coap_startup();
    coap_set_log_handler(on_coap_log);
    coap_set_log_level(LOG_WARNING);
    if (endpoints < 1 || endpoints > MAX_ENDPOINTS) {
        gw_error(MODULE, "CoAP client: %d endpoints, expected 1 to %d", endpoints, MAX_ENDPOINTS);
        goto fail;
    }
    if (resolve(uri, &dst) < 0)
        goto fail;
    c->ctx = coap_new_context(NULL);
    c->ep = calloc((size_t)endpoints, sizeof(*c->ep));
    if (!c->ctx || !c->ep)
        goto fail;
    coap_register_response_handler(c->ctx, on_response);
    coap_register_nack_handler(c->ctx, on_nack);
    for (; c->n_ep < endpoints; c->n_ep++) {
        struct sim_coap_ep *ep = &c->ep[c->n_ep];

        ep->c = c;
        ep->session = coap_new_client_session(c->ctx, NULL, &dst, COAP_PROTO_UDP);
        if (!ep->session) {
            gw_error(MODULE, "--coap %s: cannot open a UDP session", uri);
            goto fail;
        }
        coap_session_set_app_data(ep->session, ep);
    }
    return c;
fail:
    sim_coap_free(c);
    return NULL;
}

struct sim_coap *sim_coap_new(const char *uri, int content_format)
{
    struct sim_coap *c = sim_coap_new_window(uri, 1);

    if (c)
        c->content_format = content_format;
    return c;
}

void sim_coap_free(struct sim_coap *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_ep; i++)
        coap_session_release(c->ep[i].session);
    if (c->ctx)
        coap_free_context(c->ctx);
    coap_cleanup();
    free(c->ep);
    free(c);
}

/* Adds one SenML record for item to records; the first carries bt. */
static bool senml_add(cJSON *records, const cJSON *item, double bt, bool first)
{
    cJSON *rec = cJSON_CreateObject();
    bool ok = rec != NULL;

    if (ok && first && bt >= 0)
        ok = cJSON_AddNumberToObject(rec, "bt", bt) != NULL;
    if (ok)
        ok = cJSON_AddStringToObject(rec, "n", item->string) != NULL;
    if (ok && cJSON_IsNumber(item))
        ok = cJSON_AddNumberToObject(rec, "v", item->valuedouble) != NULL;
    else if (ok && cJSON_IsBool(item))
        ok = cJSON_AddBoolToObject(rec, "vb", cJSON_IsTrue(item)) != NULL;
    else if (ok && cJSON_IsString(item))
        ok = cJSON_AddStringToObject(rec, "vs", item->valuestring) != NULL;
    if (!ok || !cJSON_AddItemToArray(records, rec)) {
        cJSON_Delete(rec);
        return false;
    }
    return true;
}

/* The SenML JSON form of a flat JSON reading: "ts" (ms) becomes the base
 * time in seconds, every other member a record named after it. NULL when
 * payload is no JSON object (a bad payload goes out as it is). */
static char *to_senml(const char *payload)
{
    cJSON *obj = cJSON_Parse(payload), *records = NULL, *item;
    const cJSON *ts;
    double bt = -1;
    bool first = true;
    char *out = NULL;

    if (!cJSON_IsObject(obj))
        goto out;
    records = cJSON_CreateArray();
    if (!records)
        goto out;
    ts = cJSON_GetObjectItemCaseSensitive(obj, "ts");
    if (cJSON_IsNumber(ts))
        bt = ts->valuedouble / 1000.0;
    cJSON_ArrayForEach(item, obj)
    {
        if (item == ts)
            continue;
        if (!senml_add(records, item, bt, first))
            goto out;
        first = false;
    }
    out = cJSON_PrintUnformatted(records);
out:
    cJSON_Delete(records);
    cJSON_Delete(obj);
    return out;
}

/* Builds the request PDU; NULL when libcoap could not. */
static coap_pdu_t *build_request(coap_session_t *session, const char *device_id,
                                 const char *channel, int content_format, const void *body,
                                 size_t len)
{
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, session);
    uint8_t token[8], cf[4];
    size_t token_len = sizeof(token);
    const char *path[] = {"devices", device_id, channel};

    if (!pdu)
        return NULL;
    coap_session_new_token(session, &token_len, token);
    if (!coap_add_token(pdu, token_len, token))
        goto fail;
    for (size_t i = 0; i < sizeof(path) / sizeof(path[0]); i++)
        if (!coap_add_option(pdu, COAP_OPTION_URI_PATH, strlen(path[i]), (const uint8_t *)path[i]))
            goto fail;
    if (!coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                         coap_encode_var_safe(cf, sizeof(cf), (unsigned)content_format), cf))
        goto fail;
    if (!coap_add_data(pdu, len, body))
        goto fail;
    return pdu;
fail:
    coap_delete_pdu(pdu);
    return NULL;
}

/* Sends on ep, which has nothing outstanding. */
static int ep_send(struct sim_coap_ep *ep, const char *device_id, const char *channel,
                   int content_format, const void *body, size_t len)
{
    coap_pdu_t *pdu = build_request(ep->session, device_id, channel, content_format, body, len);

    if (!pdu)
        return -ENOMEM;
    ep->waiting = true;
    ep->code = 0;
    ep->sent_ns = gw_monotonic_ns();
    ep->c->busy++;
    if (coap_send(ep->session, pdu) == COAP_INVALID_MID) { /* coap_send frees the PDU */
        ep->waiting = false;
        ep->c->busy--;
        return -EIO;
    }
    ep->c->counts.sent++;
    return 0;
}

/* Gives up on requests outstanding past our own deadline (counted failed;
 * a late answer to one is then ignored). */
static void expire(struct sim_coap *c)
{
    int64_t limit = gw_monotonic_ns() - (int64_t)ANSWER_WAIT_MS * 1000000;

    for (int i = 0; i < c->n_ep; i++)
        if (c->ep[i].waiting && c->ep[i].sent_ns < limit)
            ep_done(&c->ep[i], -1);
}

int sim_coap_post(struct sim_coap *c, const char *device_id, const char *channel,
                  const char *payload, int *ret_code)
{
    char *senml = c->content_format == SIM_COAP_SENML_JSON ? to_senml(payload) : NULL;
    const char *body = senml ? senml : payload;
    struct sim_coap_ep *ep = &c->ep[0];
    int r;

    r = ep_send(ep, device_id, channel, c->content_format, body, strlen(body));
    free(senml);
    if (r < 0)
        return r;
    while (ep->waiting) {
        coap_io_process(c->ctx, IO_SLICE_MS);
        expire(c);
    }
    if (ep->code < 0)
        return -ETIMEDOUT;
    *ret_code = ep->code;
    return 0;
}

int sim_coap_send(struct sim_coap *c, const char *device_id, const char *channel,
                  int content_format, const void *body, size_t len)
{
    int64_t deadline = gw_monotonic_ns() + (int64_t)ANSWER_WAIT_MS * 1000000;

    /* Take the answers that are in without waiting, then wait only while
     * every endpoint has a request outstanding. */
    if (c->busy > 0)
        coap_io_process(c->ctx, COAP_IO_NO_WAIT);
    while (c->busy == c->n_ep) {
        if (gw_monotonic_ns() >= deadline)
            return -ETIMEDOUT;
        coap_io_process(c->ctx, IO_SLICE_MS);
        expire(c);
    }
    for (int i = 0; i < c->n_ep; i++)
        if (!c->ep[i].waiting)
            return ep_send(&c->ep[i], device_id, channel, content_format, body, len);
    return -EIO; /* not reached: busy < n_ep */
}

int sim_coap_drain(struct sim_coap *c, int limit_ms)
{
    int64_t deadline = gw_monotonic_ns() + (int64_t)limit_ms * 1000000;

    while (c->busy > 0) {
        if (gw_monotonic_ns() >= deadline)
            return -ETIMEDOUT;
        coap_io_process(c->ctx, IO_SLICE_MS);
        expire(c);
    }
    return 0;
}

void sim_coap_counts(const struct sim_coap *c, struct sim_coap_counts *ret)
{
    *ret = c->counts;
}
