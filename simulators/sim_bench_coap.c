/* The do-nothing CoAP server of gridsim bench e2e's CoAP ceiling
 * (sim_bench_coap.h). */
#include "sim_bench_coap.h"

#include <arpa/inet.h>
#include <coap3/coap.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_log.h"

#define MODULE "gridsim"

static void on_post(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                    const coap_string_t *query, coap_pdu_t *response)
{
    struct sim_coap_null *s = coap_resource_get_userdata(resource);
    (void)session;
    (void)request;
    (void)query;

    coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
    __atomic_add_fetch(&s->received, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->last_ns, gw_monotonic_ns(), __ATOMIC_RELAXED);
}

static void *serve(void *arg)
{
    struct sim_coap_null *s = arg;

    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
        coap_io_process(s->ctx, 100);
    return NULL;
}

/* A UDP port nothing is bound to now on 127.0.0.1 (libcoap 4.3.1 cannot
 * tell the port of an endpoint bound to port 0). */
static int free_udp_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_DGRAM, 0), port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int sim_coap_null_start(struct sim_coap_null *s)
{
    coap_address_t addr;
    coap_resource_t *r;
    coap_context_t *ctx;

    memset(s, 0, sizeof(*s));
    coap_startup();
    s->port = free_udp_port();
    ctx = coap_new_context(NULL);
    if (s->port <= 0 || !ctx) {
        gw_error(MODULE, "CoAP ceiling: no free UDP port or no libcoap context");
        goto fail;
    }
    s->ctx = ctx;
    coap_address_init(&addr);
    addr.size = sizeof(addr.addr.sin);
    addr.addr.sin.sin_family = AF_INET;
    addr.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.addr.sin.sin_port = htons((uint16_t)s->port);
    if (!coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP)) {
        gw_error(MODULE, "CoAP ceiling: cannot bind 127.0.0.1:%d", s->port);
        goto fail;
    }
    /* Every path: one unknown-resource handler, as gridgate's adapter. */
    r = coap_resource_unknown_init2(on_post, 0);
    if (!r)
        goto fail;
    coap_resource_set_userdata(r, s);
    coap_register_handler(r, COAP_REQUEST_POST, on_post);
    coap_add_resource(ctx, r);
    if (pthread_create(&s->thread, NULL, serve, s) != 0)
        goto fail;
    return 0;
fail:
    if (ctx)
        coap_free_context(ctx);
    s->ctx = NULL;
    return -EIO;
}

uint64_t sim_coap_null_received(struct sim_coap_null *s)
{
    return __atomic_load_n(&s->received, __ATOMIC_RELAXED);
}

void sim_coap_null_stop(struct sim_coap_null *s)
{
    if (!s->ctx)
        return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->thread, NULL);
    coap_free_context(s->ctx);
    s->ctx = NULL;
}
