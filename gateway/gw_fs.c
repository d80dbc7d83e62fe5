#include "gw_fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int gw_mkdir_p(const char *path)
{
    char *copy = strdup(path);
    int r = 0;

    if (!copy)
        return -ENOMEM;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;

        *p = '\0';
        if (mkdir(copy, 0750) < 0) {
            struct stat st;

            r = errno != EEXIST ? -errno
                : stat(copy, &st) < 0 ? -errno
                : !S_ISDIR(st.st_mode) ? -ENOTDIR /* a file in the way */
                                        : 0;
            if (r < 0)
                break;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    free(copy);
    return r;
}

int gw_mkdir_parent(const char *file_path)
{
    const char *slash = strrchr(file_path, '/');
    char *dir;
    int r;

    if (!slash || slash == file_path)
        return 0; /* the working directory, or the root */
    dir = strndup(file_path, (size_t)(slash - file_path));
    if (!dir)
        return -ENOMEM;
    r = gw_mkdir_p(dir);
    free(dir);
    return r;
}
