/* libFuzzer target for the YAML config loader (gw_config_load).
 *
 * Each input is the whole config file. Whatever it holds, loading must not
 * crash or leak (ASan's leak check runs at exit and after -runs) and must
 * end one of two ways: a config and no error, or no config and an error
 * that names the file ("FILE:LINE: ..." or "FILE: ...") and says something
 * after it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "gw_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An error names the file, then a line or not, then a message. */
static void check_error(const char *error, const char *path)
{
    size_t n = strlen(path);
    const char *p;

    if (!error || strncmp(error, path, n) != 0 || error[n] != ':')
        abort();
    p = error + n + 1;
    p += strspn(p, "0123456789");
    if (p[0] == ':')
        p++;
    if (p[0] != ' ' || p[1] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_file file = { .fd = -1 };
    struct gw_config *cfg;
    char *error = (char *)"unset";

    if (file.fd < 0)
        fuzz_file_open(&file, "fuzz-config.yaml");
    fuzz_file_set(&file, data, size);

    cfg = gw_config_load(file.path, &error);
    if (!cfg) {
        check_error(error, file.path);
        free(error);
        return 0;
    }
    if (error || !cfg->path || strcmp(cfg->path, file.path) != 0)
        abort();
    gw_config_free(cfg);
    return 0;
}
