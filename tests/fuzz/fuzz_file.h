/* fuzz_file: hands a fuzz input to a loader that only reads from a path.
 *
 * The input goes into a memory file (memfd) opened once per process and
 * rewritten for each input; its path /proc/self/fd/N is what the loader
 * opens. Nothing touches the disk, nothing is left behind, and the loaders
 * under test (gw_config.c, gw_registry.c) stay as they are. Owns the fd
 * for the life of the process.
 */
#ifndef FUZZ_FILE_H
#define FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct fuzz_file {
    int fd;
    char path[32];
};

/* Opens f (name shows in /proc only). Aborts when the system cannot. */
static inline void fuzz_file_open(struct fuzz_file *f, const char *name)
{
    f->fd = memfd_create(name, MFD_CLOEXEC);
    if (f->fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

/* Makes data (size bytes) the whole content of f. */
static inline void fuzz_file_set(struct fuzz_file *f, const uint8_t *data, size_t size)
{
    if (ftruncate(f->fd, 0) < 0 || (size > 0 && pwrite(f->fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz_file_set");
        abort();
    }
}

#endif
