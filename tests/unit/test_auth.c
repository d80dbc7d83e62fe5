/* gw_auth: the tokens file (load, lookup, new tokens) and the failed-login
 * limiter, on temporary files. */
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

#include "gw_array.h"
#include "gw_auth.h"
#include "gw_buf.h"
#include "gw_registry.h"
#include "tmpdir_fixture.h"

#define HASH_A "0000000000000000000000000000000000000000000000000000000000000001"
#define HASH_B "00000000000000000000000000000000000000000000000000000000000000ff"

#define ENTRY(name, role, scope)                                                                   \
    "  - name: " name "\n    role: " role "\n    scope: " scope "\n    sha256: " HASH_A "\n"

static int setup(void **state)
{
    return tmpdir_setup(state, "gw-auth-test", "tokens.yaml");
}

static int teardown(void **state)
{
    return tmpdir_teardown(state);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static char *read_text(const char *path)
{
    struct gw_buf b = GW_BUF_INIT;

    assert_int_equal(gw_buf_read_file(&b, path, 1 << 20), 0);
    return b.data;
}

static char *new_token(const char *path, const struct gw_token_spec *spec)
{
    char *token = NULL, *error = NULL;
    int r = gw_auth_token_new(path, spec, &token, &error);

    if (r < 0)
        fail_msg("token new: %s", error ? error : "?");
    assert_null(error);
    return token;
}

static struct gw_auth *load_ok(const char *path)
{
    char *error = NULL;
    struct gw_auth *auth = gw_auth_load(path, NULL, &error);

    if (!auth)
        fail_msg("load: %s", error ? error : "?");
    return auth;
}

static void test_new_token_authenticates(void **state)
{
    struct tmpdir_fixture *f = *state;
    struct gw_token_spec spec = {
        .name = "dongcheng-centre", .role = GW_ACTOR_COMMANDER, .scope = "district"};
    char *token = new_token(f->path, &spec);
    struct gw_auth *auth;
    const struct gw_actor *a;
    struct stat st;

    assert_int_equal(strlen(token), GW_TOKEN_LEN);
    assert_memory_equal(token, "gg_", 3);
    assert_int_equal(strspn(token + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789-_"),
                     GW_TOKEN_LEN - 3);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    auth = load_ok(f->path);
    assert_int_equal(gw_auth_count(auth), 1);
    a = gw_auth_lookup(auth, token);
    assert_non_null(a);
    assert_string_equal(a->name, "commander:dongcheng-centre");
    assert_int_equal(a->role, GW_ACTOR_COMMANDER);
    assert_int_equal(a->scope, GW_SCOPE_DISTRICT);
    assert_null(a->scope_id);
    assert_false(a->has_grid_role);

    /* A wrong token, one changed character, a prefix, nothing. */
    char wrong[GW_TOKEN_LEN + 1];
    memcpy(wrong, token, sizeof(wrong));
    wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
    assert_null(gw_auth_lookup(auth, wrong));
    assert_null(gw_auth_lookup(auth, token + 1));
    memcpy(wrong, token, sizeof(wrong));
    wrong[GW_TOKEN_LEN - 1] = '\0';
    assert_null(gw_auth_lookup(auth, wrong));
    assert_null(gw_auth_lookup(auth, ""));
    assert_null(gw_auth_lookup(auth, NULL));
    assert_null(gw_auth_lookup(auth, "gg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    gw_auth_free(auth);
    free(token);
}

static void test_file_holds_no_token(void **state)
{
    struct tmpdir_fixture *f = *state;
    struct gw_token_spec spec = {.name = "ops", .role = GW_ACTOR_OPERATOR, .scope = "district"};
    char *token = new_token(f->path, &spec);
    char *text = read_text(f->path);

    assert_null(strstr(text, token));
    assert_null(strstr(text, token + 3)); /* not even the random part */
    assert_null(strstr(text, "gg_"));
    assert_non_null(strstr(text, "sha256: "));
    free(text);
    free(token);
}

/* Entries are appended: comments stay, each token finds its own actor. */
static void test_append_keeps_file_and_entries(void **state)
{
    struct tmpdir_fixture *f = *state;
    struct gw_token_spec commander = {
        .name = "street-1", .role = GW_ACTOR_COMMANDER, .scope = "street:110101001"};
    struct gw_token_spec staff = {.name = "ff-001",
                                  .role = GW_ACTOR_STAFF,
                                  .scope = "grid:110101001001001",
                                  .has_post = true,
                                  .post = GW_ROLE_FIREFIGHTER,
                                  .person = "张伟 \"Zhang\""};
    struct gw_token_spec unnamed = {.role = GW_ACTOR_READONLY, .scope = "community:110101001001"};
    char *t1, *t2, *t3, *text;
    struct gw_auth *auth;
    const struct gw_actor *a;

    write_file(f->path, "# tokens of the Dongcheng centre\ntokens:\n"
                        "- name: old\n  role: liaison\n  scope: district\n"
                        "  sha256: " HASH_A "\n");
    t1 = new_token(f->path, &commander);
    t2 = new_token(f->path, &staff);
    t3 = new_token(f->path, &unnamed);
    text = read_text(f->path);
    assert_non_null(strstr(text, "# tokens of the Dongcheng centre"));
    auth = load_ok(f->path);
    assert_int_equal(gw_auth_count(auth), 4);

    a = gw_auth_lookup(auth, t1);
    assert_non_null(a);
    assert_string_equal(a->name, "commander:street-1");
    assert_int_equal(a->scope, GW_SCOPE_STREET);
    assert_string_equal(a->scope_id, "110101001");

    a = gw_auth_lookup(auth, t2);
    assert_non_null(a);
    assert_string_equal(a->name, "staff:ff-001");
    assert_int_equal(a->scope, GW_SCOPE_GRID);
    assert_string_equal(a->scope_id, "110101001001001");
    assert_true(a->has_grid_role);
    assert_int_equal(a->grid_role, GW_ROLE_FIREFIGHTER);
    assert_string_equal(a->person, "张伟 \"Zhang\"");

    a = gw_auth_lookup(auth, t3);
    assert_non_null(a);
    assert_int_equal(a->role, GW_ACTOR_READONLY);
    /* The default name: the role and the start of the hash. */
    assert_int_equal(strncmp(a->name, "readonly:readonly-", 18), 0);
    assert_int_equal(strlen(a->name), strlen("readonly:readonly-") + 8);
    gw_auth_free(auth);
    free(text);
    free(t1);
    free(t2);
    free(t3);
}

/* A file whose list cannot take an appended entry is rewritten whole. */
static void test_append_to_flow_list(void **state)
{
    struct tmpdir_fixture *f = *state;
    struct gw_token_spec spec = {.name = "a", .role = GW_ACTOR_OPERATOR, .scope = "district"};
    struct gw_token_spec spec2 = {.name = "b", .role = GW_ACTOR_LIAISON, .scope = "district"};
    struct gw_auth *auth;
    char *t1, *t2;

    write_file(f->path, "tokens: []\n");
    t1 = new_token(f->path, &spec);
    t2 = new_token(f->path, &spec2);
    auth = load_ok(f->path);
    assert_int_equal(gw_auth_count(auth), 2);
    assert_non_null(gw_auth_lookup(auth, t1));
    assert_non_null(gw_auth_lookup(auth, t2));
    gw_auth_free(auth);
    free(t1);
    free(t2);

    write_file(f->path,
               "tokens: [{name: x, role: operator, scope: district, sha256: " HASH_B "}]\n");
    t1 = new_token(f->path, &spec);
    auth = load_ok(f->path);
    assert_int_equal(gw_auth_count(auth), 2);
    assert_non_null(gw_auth_lookup(auth, t1));
    gw_auth_free(auth);
    free(t1);
}

static void test_new_token_refusals(void **state)
{
    struct tmpdir_fixture *f = *state;
    static const struct {
        struct gw_token_spec spec;
        int r;
        const char *message;
    } cases[] = {
        {{.name = "s", .role = GW_ACTOR_STAFF, .scope = "grid:1"}, -EINVAL, "--post"},
        {{.name = "c", .role = GW_ACTOR_COMMANDER, .scope = "district", .has_post = true},
         -EINVAL,
         "--post"},
        {{.name = "c", .role = GW_ACTOR_COMMANDER, .scope = "district", .person = "x"},
         -EINVAL,
         "--person"},
        {{.name = "c", .role = GW_ACTOR_COMMANDER, .scope = "town:1"}, -EINVAL, "--scope"},
        {{.name = "c", .role = GW_ACTOR_COMMANDER, .scope = "grid:"}, -EINVAL, "--scope"},
        {{.name = "bad name", .role = GW_ACTOR_COMMANDER, .scope = "district"}, -EINVAL, "--name"},
        {{.name = "taken", .role = GW_ACTOR_COMMANDER, .scope = "district"},
         -EEXIST,
         "\"taken\" exists already"},
    };
    struct gw_token_spec first = {.name = "taken", .role = GW_ACTOR_OPERATOR, .scope = "district"};
    char *token = new_token(f->path, &first);
    char *before = read_text(f->path), *after;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *t = NULL, *error = NULL;

        assert_int_equal(gw_auth_token_new(f->path, &cases[i].spec, &t, &error), cases[i].r);
        assert_null(t);
        assert_non_null(error);
        if (!strstr(error, cases[i].message))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, error, cases[i].message);
        free(error);
    }
    after = read_text(f->path);
    assert_string_equal(before, after); /* nothing written */
    free(before);
    free(after);
    free(token);

    /* An existing file that does not load is left alone. */
    write_file(f->path, "tokens:\n" ENTRY("x", "king", "district"));
    char *t = NULL, *error = NULL;
    assert_int_equal(gw_auth_token_new(f->path, &first, &t, &error), -EINVAL);
    assert_non_null(strstr(error, "tokens.yaml:3: tokens[0].role"));
    free(error);
}

static void expect_load_error(const char *path, const struct gw_registry *reg, const char *text,
                              const char *message)
{
    char *error = NULL, *want = NULL;
    struct gw_auth *auth;

    write_file(path, text);
    auth = gw_auth_load(path, reg, &error);
    if (auth)
        fail_msg("loaded a bad file expecting \"%s\"", message);
    assert_non_null(error);
    assert_int_not_equal(asprintf(&want, "%s:%s", path, message), -1);
    if (strncmp(error, want, strlen(want)) != 0)
        fail_msg("got \"%s\", expected it to start with \"%s\"", error, want);
    free(want);
    free(error);
}

static void test_load_errors(void **state)
{
    struct tmpdir_fixture *f = *state;
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"tokens:\n" ENTRY("a", "operator", "district") ENTRY("b", "king", "district"),
         "7: tokens[1].role: unknown role \"king\""},
        {"tokens:\n  - name: a\n    role: operator\n    scope: district\n",
         "2: tokens[0].sha256: missing"},
        {"tokens:\n  - name: a\n    role: operator\n    scope: district\n    sha256: abc\n",
         "5: tokens[0].sha256: expected 64 hex digits"},
        {"tokens:\n" ENTRY("a", "operator", "district") "    colour: red\n",
         "6: tokens[0].colour: unknown key"},
        {"tokens:\n" ENTRY("a", "staff", "grid:1"), "2: tokens[0].post: missing"},
        {"tokens:\n" ENTRY("a", "staff", "grid:1") "    post: fireman\n",
         "6: tokens[0].post: unknown grid role \"fireman\""},
        {"tokens:\n" ENTRY("a", "commander", "district") "    post: police\n",
         "6: tokens[0].post: only staff tokens have one"},
        {"tokens:\n" ENTRY("a", "operator", "town:1"), "4: tokens[0].scope: \"town:1\" is not"},
        {"tokens:\n" ENTRY("a", "operator", "district") ENTRY("a", "liaison", "district"),
         "6: tokens[1].name: \"a\" is taken by tokens[0]"},
        {"tokens:\n  - name: a b\n    role: operator\n    scope: district\n    sha256: " HASH_A
         "\n",
         "2: tokens[0].name: \"a b\" is not"},
        {"tokens:\n  - just a string\n", "2: tokens[0]: expected a mapping"},
        {"tokens:\n  - name: a\n    name: b\n", "3: tokens[0].name: given twice"},
        {"users: []\n", "1: users: unknown key (expected tokens)"},
        {"tokens: {a: 1}\n", "1: tokens: expected a list"},
        {"- a\n- b\n", "1: expected a mapping with the key tokens"},
        {"tokens:\n  - name: [a\n", "3: YAML syntax error"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        expect_load_error(f->path, NULL, cases[i].text, cases[i].message);
}

/* With the district loaded, a scope must name a place in it. */
static void test_load_checks_scope_against_district(void **state)
{
    struct tmpdir_fixture *f = *state;
    char *error = NULL;
    struct gw_registry *reg =
        gw_registry_load(GW_SOURCE_DIR "/config/district/grids.geojson",
                         GW_SOURCE_DIR "/config/district/devices.csv", &error);
    struct gw_auth *auth;

    if (!reg)
        fail_msg("registry: %s", error ? error : "?");
    expect_load_error(f->path, reg, "tokens:\n" ENTRY("a", "operator", "street:999"),
                      "4: tokens[0].scope: \"street:999\" is not in the district");
    expect_load_error(f->path, reg, "tokens:\n" ENTRY("a", "operator", "grid:110101001001999"),
                      "4: tokens[0].scope: \"grid:110101001001999\" is not in the district");
    write_file(f->path,
               "tokens:\n" ENTRY("a", "operator",
                                 "community:110101001001") "  - name: b\n    role: staff\n    "
                                                           "scope: grid:110101001001001\n"
                                                           "    post: police\n    sha256: " HASH_B
                                                           "\n"
                                                           "  - name: c\n    role: readonly\n    "
                                                           "scope: street:110101001\n"
                                                           "    sha256: "
                                                           "000000000000000000000000000000000000000"
                                                           "00000000000000000000000aa\n");
    auth = gw_auth_load(f->path, reg, &error);
    if (!auth)
        fail_msg("load: %s", error ? error : "?");
    assert_int_equal(gw_auth_count(auth), 3);
    gw_auth_free(auth);

    /* token new checks the scope too when given the district. */
    struct gw_token_spec spec = {
        .name = "d", .role = GW_ACTOR_READONLY, .scope = "street:999", .reg = reg};
    char *token = NULL;
    assert_int_equal(gw_auth_token_new(f->path, &spec, &token, &error), -EINVAL);
    assert_non_null(strstr(error, "not in the district"));
    free(error);
    spec.scope = "street:110101002";
    token = new_token(f->path, &spec);
    free(token);
    gw_registry_free(reg);
}

static void test_load_missing_and_empty(void **state)
{
    struct tmpdir_fixture *f = *state;
    char *error = NULL;
    struct gw_auth *auth;

    assert_null(gw_auth_load(f->path, NULL, &error));
    assert_non_null(strstr(error, "cannot read the tokens file"));
    free(error);
    write_file(f->path, "tokens: []\n");
    auth = load_ok(f->path);
    assert_int_equal(gw_auth_count(auth), 0);
    assert_null(gw_auth_lookup(auth, "gg_x"));
    gw_auth_free(auth);
}

#define MINUTE_NS (60 * INT64_C(1000000000))

static void test_limiter(void **state)
{
    struct gw_auth_limiter *l = gw_auth_limiter_new(3, 64);
    int64_t t = 1000 * MINUTE_NS + 5;

    (void)state;
    assert_non_null(l);
    for (int i = 0; i < 3; i++)
        assert_false(gw_auth_limiter_hit(l, "127.0.0.1", t + i));
    assert_true(gw_auth_limiter_hit(l, "127.0.0.1", t + 10));
    assert_true(gw_auth_limiter_hit(l, "127.0.0.1", t + 20));
    /* Another address counts on its own. */
    assert_false(gw_auth_limiter_hit(l, "::1", t + 30));
    /* The next minute starts afresh. */
    assert_false(gw_auth_limiter_hit(l, "127.0.0.1", t + MINUTE_NS));
    gw_auth_limiter_free(l);
}

/* Many more addresses than slots: the table stays bounded, and an address
 * that keeps failing is still caught. */
static void test_limiter_bounded(void **state)
{
    struct gw_auth_limiter *l = gw_auth_limiter_new(5, 16);
    int64_t t = 7 * MINUTE_NS;
    bool caught = false;
    char address[32];

    (void)state;
    for (int i = 0; i < 10000; i++) {
        snprintf(address, sizeof(address), "client-%d", i);
        gw_auth_limiter_hit(l, address, t);
    }
    for (int i = 0; i < 10 && !caught; i++)
        caught = gw_auth_limiter_hit(l, "client-x", t);
    assert_true(caught);
    gw_auth_limiter_free(l);
    gw_auth_limiter_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_token_authenticates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_holds_no_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_keeps_file_and_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_to_flow_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_token_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_checks_scope_against_district, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing_and_empty, setup, teardown),
        cmocka_unit_test(test_limiter),
        cmocka_unit_test(test_limiter_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
