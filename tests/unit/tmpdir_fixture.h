/* tmpdir_fixture: a cmocka fixture owning a fresh directory under /tmp
 * and the path of one file in it, removed with everything in it after the
 * test. For the tests whose code under test reads or writes a file. */
#ifndef TMPDIR_FIXTURE_H
#define TMPDIR_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

struct tmpdir_fixture {
    char dir[64];
    char path[128]; /* dir/FILE */
};

/* *state becomes a struct tmpdir_fixture: /tmp/PREFIX.XXXXXX and FILE in it. */
static inline int tmpdir_setup(void **state, const char *prefix, const char *file)
{
    struct tmpdir_fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/%s.XXXXXX", prefix);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, file);
    *state = f;
    return 0;
}

static inline int tmpdir_teardown(void **state)
{
    struct tmpdir_fixture *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

#endif
