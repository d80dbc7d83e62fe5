/* What every benchmark of gridsim needs first: gridgate's configuration
 * and its district, and a way to point parts of it elsewhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_registry.h"
#include "sim_bench.h"

int sim_bench_load_world(const char *path, struct gw_config **ret_cfg,
                         struct gw_registry **ret_reg)
{
    char *error = NULL;

    *ret_reg = NULL;
    *ret_cfg = gw_config_load(path, &error);
    if (*ret_cfg)
        *ret_reg = gw_registry_load((*ret_cfg)->district.grids, (*ret_cfg)->district.devices,
                                    &error);
    if (!*ret_reg) {
        fprintf(stderr, "%s\n", error ? error : "cannot load the configuration");
        free(error);
        gw_config_free(*ret_cfg);
        *ret_cfg = NULL;
        return -EINVAL;
    }
    return 0;
}

int sim_bench_set_string(char **field, const char *value)
{
    char *copy = strdup(value);

    if (!copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}
