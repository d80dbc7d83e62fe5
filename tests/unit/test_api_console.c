/* gw_api_console: which paths below /console/ name a file, the Content-Type
 * of each kind of file, and the start-up check of api.console_dir and
 * api.grafana_url (on temporary directories). Serving over HTTP is
 * integration.console_http's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_api.h"
#include "gw_api_int.h"
#include "gw_array.h"
#include "gw_config.h"
#include "tmpdir_fixture.h"


/* ---- paths ----------------------------------------------------------- */

static int path_of(const char *raw, char *out, size_t size)
{
    return gw_api__console_path(raw, strlen(raw), out, size);
}

static void test_paths_served(void **state)
{
    static const struct {
        const char *raw, *want;
    } ok[] = {
        {"", "index.html"},
        {"index.html", "index.html"},
        {"console.js", "console.js"},
        {"i18n/zh-CN.json", "i18n/zh-CN.json"},
        {"a/b/c_d-e.f.svg", "a/b/c_d-e.f.svg"},
        {"x..y", "x..y"}, /* dots inside a name are fine */
    };
    char out[256];

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        memset(out, 'z', sizeof(out));
        assert_int_equal(path_of(ok[i].raw, out, sizeof(out)), 0);
        assert_string_equal(out, ok[i].want);
    }
    /* Only len bytes count: the query after them is not the path's. */
    assert_int_equal(gw_api__console_path("app.js?v=2", 6, out, sizeof(out)), 0);
    assert_string_equal(out, "app.js");
}

static void test_paths_refused(void **state)
{
    static const char *const bad[] = {
        "..", "../gridgate.yaml", "a/../b", "a/..", ".", "./index.html",
        ".git/config", "a/.hidden", "%2e%2e/%2e%2e/etc/passwd", "..%2fx",
        "index.html%00", "a//b", "/etc/passwd", "sub/", "a\\..\\b", "a b",
        "a\tb", "index.html\n", "\xe4\xb8\xad.html", "a:b", "~root", "a*",
    };
    char out[256], long_name[300];

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (path_of(bad[i], out, sizeof(out)) != -ENOENT)
            fail_msg("\"%s\" was taken as a console path", bad[i]);
    }
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(path_of(long_name, out, sizeof(out)), -ENOENT);
    /* Too small an output is refused rather than cut. */
    assert_int_equal(path_of("console.js", out, 5), -ENOENT);
    assert_int_equal(path_of("", out, 5), -ENOENT);
}

static void test_content_types(void **state)
{
    static const struct {
        const char *path, *type;
    } types[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"console.css", "text/css; charset=utf-8"},
        {"console.js", "text/javascript; charset=utf-8"},
        {"APP.JS", "text/javascript; charset=utf-8"},
        {"i18n/zh-CN.json", "application/json; charset=utf-8"},
        {"logo.svg", "image/svg+xml"},
        {"shot.png", "image/png"},
        {"favicon.ico", "image/x-icon"},
        {"fonts/a.woff2", "font/woff2"},
        {"notes.txt", "text/plain; charset=utf-8"},
        {"archive.tar.gz", "application/octet-stream"},
        {"Makefile", "application/octet-stream"},
        {"v1.2/README", "application/octet-stream"}, /* a dot in a directory is no extension */
        {"index.html.bak", "application/octet-stream"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(types); i++)
        assert_string_equal(gw_api__console_type(types[i].path), types[i].type);
}

/* ---- the start-up check ---------------------------------------------- */

static int setup(void **state)
{
    return tmpdir_setup(state, "gw-console-test", "gridgate.yaml");
}

static int teardown(void **state)
{
    return tmpdir_teardown(state);
}

static void write_at(const struct tmpdir_fixture *f, const char *name, const char *text)
{
    char path[192];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* Loads a config of api keys; returns gw_api_check_console's result and
 * its message in *ret_error (free it). */
static int check_with(const struct tmpdir_fixture *f, const char *api_keys, char **ret_error)
{
    char text[512];
    struct gw_config *cfg;
    char *error = NULL;
    int r;

    snprintf(text, sizeof(text), "api:\n  enabled: true\n%s", api_keys);
    write_at(f, "gridgate.yaml", text);
    cfg = gw_config_load(f->path, &error);
    if (!cfg)
        fail_msg("config: %s", error ? error : "?");
    r = gw_api_check_console(cfg, ret_error);
    gw_config_free(cfg);
    return r;
}

static void expect_refused(const struct tmpdir_fixture *f, const char *api_keys, const char *part1,
                           const char *part2)
{
    char *error = NULL;

    assert_int_equal(check_with(f, api_keys, &error), -EINVAL);
    assert_non_null(error);
    if (!strstr(error, part1) || (part2 && !strstr(error, part2)))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", error, part1, part2 ? part2 : "");
    free(error);
}

static void test_check(void **state)
{
    struct tmpdir_fixture *f = *state;
    char path[192], target[192];
    char *error = (char *)"unset";

    /* No console, no Grafana: nothing to check. */
    assert_int_equal(check_with(f, "", &error), 0);
    assert_null(error);

    /* A missing directory, then one without index.html: the key and the path. */
    expect_refused(f, "  console_dir: cons\n", "api.console_dir", "/cons: No such file");
    snprintf(path, sizeof(path), "%s/cons", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_refused(f, "  console_dir: cons\n", "api.console_dir", "cons/index.html");

    /* index.html as a link to a file outside does not count. */
    write_at(f, "outside.html", "<p>outside</p>\n");
    snprintf(path, sizeof(path), "%s/cons/index.html", f->dir);
    snprintf(target, sizeof(target), "%s/outside.html", f->dir);
    assert_int_equal(symlink(target, path), 0);
    expect_refused(f, "  console_dir: cons\n", "api.console_dir", "cons/index.html");
    assert_int_equal(unlink(path), 0);

    write_at(f, "cons/index.html", "<p>console</p>\n");
    assert_int_equal(check_with(f, "  console_dir: cons\n", &error), 0);
    assert_null(error);
    assert_int_equal(
        check_with(f, "  console_dir: cons\n  grafana_url: \"https://grafana.example:3000/\"\n",
                   &error),
        0);

    /* Grafana's URL goes into links: http(s) only, nothing to break out of one. */
    expect_refused(f, "  grafana_url: \"javascript:alert(1)\"\n", "api.grafana_url",
                   "javascript:alert(1)");
    expect_refused(f, "  grafana_url: \"grafana:3000\"\n", "api.grafana_url", NULL);
    expect_refused(f, "  grafana_url: \"http://x/\\\"><script>\"\n", "api.grafana_url", NULL);
    expect_refused(f, "  grafana_url: \"http://x/{grid}\"\n", "api.grafana_url", NULL);
    expect_refused(f, "  grafana_url: \"http://x/\\ta\"\n", "api.grafana_url", "control");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_served),
        cmocka_unit_test(test_paths_refused),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
