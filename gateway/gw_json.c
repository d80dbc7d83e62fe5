#include "gw_json.h"

#include <pthread.h>

static pthread_mutex_t parse_lock = PTHREAD_MUTEX_INITIALIZER;

cJSON *gw_json_parse(const char *data, size_t len, const char **ret_end, bool require_nul)
{
    const char *end = NULL;
    cJSON *root;

    pthread_mutex_lock(&parse_lock);
    root = cJSON_ParseWithLengthOpts(data, len, &end, require_nul);
    pthread_mutex_unlock(&parse_lock);
    if (ret_end)
        *ret_end = end;
    return root;
}
