#include "gw_adapter.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define MAX_ADAPTER_KINDS 16

static const struct gw_adapter_ops *kinds[MAX_ADAPTER_KINDS];
static size_t n_kinds;
static pthread_mutex_t kinds_lock = PTHREAD_MUTEX_INITIALIZER;

int gw_adapter_register(const struct gw_adapter_ops *ops)
{
    int r = 0;

    pthread_mutex_lock(&kinds_lock);
    for (size_t i = 0; i < n_kinds; i++) {
        if (strcmp(kinds[i]->name, ops->name) == 0) {
            r = -EEXIST;
            goto out;
        }
    }
    if (n_kinds == MAX_ADAPTER_KINDS) {
        r = -ENOSPC;
        goto out;
    }
    kinds[n_kinds++] = ops;
out:
    pthread_mutex_unlock(&kinds_lock);
    return r;
}

const struct gw_adapter_ops *gw_adapter_lookup(const char *name)
{
    const struct gw_adapter_ops *found = NULL;

    pthread_mutex_lock(&kinds_lock);
    for (size_t i = 0; i < n_kinds && !found; i++)
        if (strcmp(kinds[i]->name, name) == 0)
            found = kinds[i];
    pthread_mutex_unlock(&kinds_lock);
    return found;
}

size_t gw_adapter_kinds(const struct gw_adapter_ops **ret_ops, size_t max)
{
    size_t n;

    pthread_mutex_lock(&kinds_lock);
    n = n_kinds < max ? n_kinds : max;
    memcpy(ret_ops, kinds, n * sizeof(*ret_ops));
    pthread_mutex_unlock(&kinds_lock);
    return n;
}

const char *gw_ingest_result_name(enum gw_ingest_result result)
{
    switch (result) {
    case GW_INGEST_OK:
        return "ok";
    case GW_INGEST_BAD_PAYLOAD:
        return "bad payload";
    case GW_INGEST_UNKNOWN_DEVICE:
        return "unknown device";
    case GW_INGEST_TOO_LARGE:
        return "too large";
    case GW_INGEST_UNSUPPORTED:
        return "unsupported format";
    case GW_INGEST_SHUTDOWN:
        return "shutting down";
    }
    return "unknown";
}
