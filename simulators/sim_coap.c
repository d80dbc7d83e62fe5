/* sim_coap: confirmable POSTs to the gateway through libcoap's client API.
 *
 * libcoap 4.3.1 calls the response and NACK handlers from inside
 * coap_io_process() on the calling thread, so one request at a time needs
 * no lock: sim_coap_post() sends, then runs the I/O loop until its handler
 * has seen the answer, a NACK (libcoap gave up retransmitting) or our own
 * deadline.
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

struct sim_coap {
    coap_context_t *ctx;
    coap_session_t *session;
    int content_format;
    bool waiting;
    int code; /* 0 while waiting; -1 after a NACK */
};

static void on_coap_log(coap_log_t level, const char *message)
{
    /* libcoap 4.3.1 uses syslog levels: LOG_WARNING and more urgent are ours. */
    if (level <= LOG_WARNING)
        gw_warn("coap", "%.*s", (int)strcspn(message, "\n"), message);
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid)
{
    struct sim_coap *c = coap_session_get_app_data(session);
    coap_pdu_code_t code = coap_pdu_get_code(received);
    (void)sent;
    (void)mid;

    if (c && c->waiting) {
        c->code = (int)COAP_RESPONSE_CLASS(code) * 100 + (int)(code & 0x1f);
        c->waiting = false;
    }
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *session, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid)
{
    struct sim_coap *c = coap_session_get_app_data(session);
    (void)sent;
    (void)reason;
    (void)mid;

    if (c && c->waiting) {
        c->code = -1;
        c->waiting = false;
    }
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

struct sim_coap *sim_coap_new(const char *uri, int content_format)
{
    struct sim_coap *c = calloc(1, sizeof(*c));
    coap_address_t dst;

    if (!c)
        return NULL;
    c->content_format = content_format;
    coap_startup();
    coap_set_log_handler(on_coap_log);
    coap_set_log_level(LOG_WARNING);
    if (resolve(uri, &dst) < 0)
        goto fail;
    c->ctx = coap_new_context(NULL);
    if (!c->ctx)
        goto fail;
    coap_register_response_handler(c->ctx, on_response);
    coap_register_nack_handler(c->ctx, on_nack);
    c->session = coap_new_client_session(c->ctx, NULL, &dst, COAP_PROTO_UDP);
    if (!c->session) {
        gw_error(MODULE, "--coap %s: cannot open a UDP session", uri);
        goto fail;
    }
    coap_session_set_app_data(c->session, c);
    return c;
fail:
    sim_coap_free(c);
    return NULL;
}

void sim_coap_free(struct sim_coap *c)
{
    if (!c)
        return;
    if (c->session)
        coap_session_release(c->session);
    if (c->ctx)
        coap_free_context(c->ctx);
    coap_cleanup();
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
static coap_pdu_t *build_request(struct sim_coap *c, const char *device_id, const char *channel,
                                 const char *body)
{
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, c->session);
    uint8_t token[8], cf[4];
    size_t token_len = sizeof(token);
    const char *path[] = {"devices", device_id, channel};

    if (!pdu)
        return NULL;
    coap_session_new_token(c->session, &token_len, token);
    if (!coap_add_token(pdu, token_len, token))
        goto fail;
    for (size_t i = 0; i < sizeof(path) / sizeof(path[0]); i++)
        if (!coap_add_option(pdu, COAP_OPTION_URI_PATH, strlen(path[i]), (const uint8_t *)path[i]))
            goto fail;
    if (!coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                         coap_encode_var_safe(cf, sizeof(cf), (unsigned)c->content_format), cf))
        goto fail;
    if (!coap_add_data(pdu, strlen(body), (const uint8_t *)body))
        goto fail;
    return pdu;
fail:
    coap_delete_pdu(pdu);
    return NULL;
}

int sim_coap_post(struct sim_coap *c, const char *device_id, const char *channel,
                  const char *payload, int *ret_code)
{
    char *senml = c->content_format == SIM_COAP_SENML_JSON ? to_senml(payload) : NULL;
    coap_pdu_t *pdu = build_request(c, device_id, channel, senml ? senml : payload);
    int64_t deadline = gw_monotonic_ns() + (int64_t)ANSWER_WAIT_MS * 1000000;

    free(senml);
    if (!pdu)
        return -ENOMEM;
    c->waiting = true;
    c->code = 0;
    if (coap_send(c->session, pdu) == COAP_INVALID_MID) { /* coap_send frees the PDU */
        c->waiting = false;
        return -EIO;
    }
    while (c->waiting && gw_monotonic_ns() < deadline)
        coap_io_process(c->ctx, IO_SLICE_MS);
    if (c->waiting || c->code < 0) {
        c->waiting = false;
        return -ETIMEDOUT;
    }
    *ret_code = c->code;
    return 0;
}
