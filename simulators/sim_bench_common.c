/* What every benchmark of gridsim needs first: gridgate's configuration
 * and its district, and a way to point parts of it elsewhere. */
#include <errno.h>
#include <inttypes.h>
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

int sim_bench_parse_number(const char *bench, const char *arg, const char *name, double min,
                           double max, double *ret_value)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(arg, &end);
    if (errno || end == arg || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "gridsim bench %s: %s must be a number from %g to %g, not \"%s\"\n",
                bench, name, min, max, arg);
        return -EINVAL;
    }
    *ret_value = v;
    return 0;
}

int sim_bench_parse_count(const char *bench, const char *arg, const char *name, uint64_t max,
                          uint64_t *ret_value)
{
    unsigned long long v;
    char *end;

    errno = 0;
    v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > max) {
        fprintf(stderr,
                "gridsim bench %s: %s must be a whole number from 1 to %" PRIu64 ", not \"%s\"\n",
                bench, name, max, arg);
        return -EINVAL;
    }
    *ret_value = v;
    return 0;
}
