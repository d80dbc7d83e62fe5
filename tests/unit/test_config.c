/* Unit tests of gw_config: defaults, every option type, path resolution,
 * one test per kind of error with its exact FILE:LINE: key message, the
 * shipped sample config and gw_config_describe(). Files are written under a
 * mkdtemp directory in /tmp that the group teardown removes. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_config.h"

static char tmp_root[PATH_MAX]; /* as mkdtemp made it */
static char tmp_real[PATH_MAX]; /* realpath of it: what cfg->dir holds */
static char cfg_file[PATH_MAX]; /* the file most tests write and load */

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        const char *h_ = (haystack);                                                               \
        const char *n_ = (needle);                                                                 \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                    \
    } while (0)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void join(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);

    assert_true(n > 0 && (size_t)n < size);
}

/* Writes TEXT as the config file and loads it, expecting success. */
static struct gw_config *load_text(const char *text)
{
    struct gw_config *cfg;
    char *error = (char *)"untouched";

    write_file(cfg_file, text);
    cfg = gw_config_load(cfg_file, &error);
    if (!cfg)
        fail_msg("load failed: %s", error ? error : "(no message)");
    assert_null(error);
    return cfg;
}

/* Loads PATH expecting failure: the message must start with "PATH:LINE: "
 * ("PATH: " for LINE 0) and contain every string after LINE. */
static void expect_error_at(const char *path, int line, ...)
{
    char prefix[PATH_MAX + 32];
    struct gw_config *cfg;
    char *error = NULL;
    const char *part;
    va_list ap;

    cfg = gw_config_load(path, &error);
    if (cfg) {
        gw_config_free(cfg);
        fail_msg("%s loaded but should have failed", path);
    }
    assert_non_null(error);
    if (line > 0)
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    else
        snprintf(prefix, sizeof(prefix), "%s: ", path);
    if (strncmp(error, prefix, strlen(prefix)) != 0) {
        char copy[1024];

        snprintf(copy, sizeof(copy), "%s", error);
        free(error);
        fail_msg("\"%s\" does not start with \"%s\"", copy, prefix);
    }
    va_start(ap, line);
    while ((part = va_arg(ap, const char *))) {
        if (!strstr(error, part)) {
            char copy[1024];

            snprintf(copy, sizeof(copy), "%s", error);
            free(error);
            va_end(ap);
            fail_msg("\"%s\" does not contain \"%s\"", copy, part);
        }
    }
    va_end(ap);
    free(error);
}

/* Writes TEXT and expects the error at LINE with the given parts. */
#define expect_error(text, line, ...)                                                              \
    do {                                                                                           \
        write_file(cfg_file, (text));                                                              \
        expect_error_at(cfg_file, (line), __VA_ARGS__, (const char *)NULL);                        \
    } while (0)

static void assert_path_in(const char *dir, const char *rel, const char *actual)
{
    char want[PATH_MAX];

    join(want, sizeof(want), dir, rel);
    assert_string_equal(actual, want);
}

static void assert_defaults_except_mqtt_client_id(const struct gw_config *cfg)
{
    assert_true(cfg->mqtt.enabled);
    assert_string_equal(cfg->mqtt.uri, "tcp://127.0.0.1:1883");
    assert_int_equal(cfg->mqtt.qos, 1);
    assert_int_equal(cfg->mqtt.protocol, 5);
    assert_int_equal(cfg->mqtt.keepalive_s, 30);
    assert_int_equal(cfg->mqtt.session_expiry_s, 3600);
    assert_null(cfg->mqtt.username);
    assert_null(cfg->mqtt.password);

    assert_false(cfg->coap.enabled);
    assert_string_equal(cfg->coap.listen, "127.0.0.1");
    assert_int_equal(cfg->coap.port, 5683);

    assert_true(cfg->influx.enabled);
    assert_string_equal(cfg->influx.url, "http://127.0.0.1:8086");
    assert_string_equal(cfg->influx.database, "gridgate");
    assert_null(cfg->influx.retention_policy);
    assert_null(cfg->influx.username);
    assert_null(cfg->influx.password);
    assert_int_equal(cfg->influx.batch_size, 5000);
    assert_int_equal(cfg->influx.flush_interval_ms, 1000);
    assert_int_equal(cfg->influx.timeout_ms, 30000);
    assert_int_equal(cfg->influx.max_in_flight, 2);

    /* Default paths are relative too, so they hang off the config's dir. */
    assert_path_in(cfg->dir, "var/gridgate.db", cfg->store.path);
    assert_path_in(cfg->dir, "var/journal", cfg->journal.dir);
    assert_int_equal(cfg->journal.max_mb, 1024);
    assert_path_in(cfg->dir, "district/grids.geojson", cfg->district.grids);
    assert_path_in(cfg->dir, "district/devices.csv", cfg->district.devices);
    assert_path_in(cfg->dir, "../rules", cfg->rules.dir);
    assert_int_equal(cfg->rules.instruction_budget, 1000000);
    assert_int_equal(cfg->rules.memory_kb, 262144);

    assert_false(cfg->api.enabled);
    assert_string_equal(cfg->api.listen, "127.0.0.1");
    assert_int_equal(cfg->api.port, 8080);
    assert_path_in(cfg->dir, "tokens.yaml", cfg->api.tokens);

    assert_true(cfg->cases.auto_dispatch);

    assert_string_equal(cfg->gateway.level, "info");
    assert_int_equal(cfg->gateway.stats_interval_s, 10);
    assert_int_equal(cfg->gateway.queue_size, 10000);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/gw_test_config.XXXXXX");
    if (!mkdtemp(tmp_root))
        return -1;
    if (!realpath(tmp_root, tmp_real))
        return -1;
    join(cfg_file, sizeof(cfg_file), tmp_root, "gridgate.yaml");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (tmp_root[0] && nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return -1;
    return 0;
}

/* --- defaults ----------------------------------------------------------- */

static void test_defaults_when_keys_missing(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_text("mqtt:\n  client_id: other\n");
    assert_string_equal(cfg->path, cfg_file);
    assert_string_equal(cfg->dir, tmp_real);
    assert_string_equal(cfg->mqtt.client_id, "other");
    assert_defaults_except_mqtt_client_id(cfg);
    gw_config_free(cfg);

    cfg = load_text("{}\n");
    assert_string_equal(cfg->mqtt.client_id, "gridgate");
    assert_defaults_except_mqtt_client_id(cfg);
    gw_config_free(cfg);
}

static void test_null_section_keeps_defaults(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_text("coap:\n  # port: 5684\napi:\ncases: ~\n");
    assert_int_equal(cfg->coap.port, 5683);
    assert_int_equal(cfg->api.port, 8080);
    assert_true(cfg->cases.auto_dispatch);
    gw_config_free(cfg);
}

/* --- every type --------------------------------------------------------- */

static void test_every_type_parsed(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_text("mqtt:\n"
                    "  enabled: false\n"
                    "  uri: \"ssl://broker.example:8883\"\n"
                    "  client_id: gw-7\n"
                    "  qos: 0\n"
                    "  protocol: 311\n"
                    "  keepalive_s: 0\n"
                    "  session_expiry_s: 2147483647\n"
                    "  username: 'user'\n"
                    "  password: \"p: w # d\"\n"
                    "coap: {enabled: true, listen: \"0.0.0.0\", port: 65535}\n"
                    "influx:\n"
                    "  enabled: no\n"
                    "  url: http://influx:8086\n"
                    "  database: city\n"
                    "  retention_policy: autogen\n"
                    "  username: iu\n"
                    "  password: ip\n"
                    "  batch_size: 1\n"
                    "  flush_interval_ms: \"250\"\n" /* quoted numbers are numbers too */
                    "  timeout_ms: 100\n"
                    "store: {path: /srv/gw/cases.db}\n"
                    "journal: {dir: j, max_mb: 010}\n" /* decimal, not octal */
                    "district: {grids: d/g.geojson, devices: /etc/gw/devices.csv}\n"
                    "rules: {dir: lua, instruction_budget: 1000, memory_kb: +256}\n"
                    "api: {enabled: on, listen: \"::1\", port: 1, tokens: t.yaml}\n"
                    "cases: {auto_dispatch: off}\n"
                    "gateway: {level: debug, stats_interval_s: 86400, queue_size: 1}\n");

    assert_false(cfg->mqtt.enabled);
    assert_string_equal(cfg->mqtt.uri, "ssl://broker.example:8883");
    assert_string_equal(cfg->mqtt.client_id, "gw-7");
    assert_int_equal(cfg->mqtt.qos, 0);
    assert_int_equal(cfg->mqtt.protocol, 311);
    assert_int_equal(cfg->mqtt.keepalive_s, 0);
    assert_int_equal(cfg->mqtt.session_expiry_s, INT_MAX);
    assert_string_equal(cfg->mqtt.username, "user");
    assert_string_equal(cfg->mqtt.password, "p: w # d");

    assert_true(cfg->coap.enabled);
    assert_string_equal(cfg->coap.listen, "0.0.0.0");
    assert_int_equal(cfg->coap.port, 65535);

    assert_false(cfg->influx.enabled);
    assert_string_equal(cfg->influx.url, "http://influx:8086");
    assert_string_equal(cfg->influx.database, "city");
    assert_string_equal(cfg->influx.retention_policy, "autogen");
    assert_string_equal(cfg->influx.username, "iu");
    assert_string_equal(cfg->influx.password, "ip");
    assert_int_equal(cfg->influx.batch_size, 1);
    assert_int_equal(cfg->influx.flush_interval_ms, 250);
    assert_int_equal(cfg->influx.timeout_ms, 100);

    assert_string_equal(cfg->store.path, "/srv/gw/cases.db");
    assert_path_in(tmp_real, "j", cfg->journal.dir);
    assert_int_equal(cfg->journal.max_mb, 10);
    assert_path_in(tmp_real, "d/g.geojson", cfg->district.grids);
    assert_string_equal(cfg->district.devices, "/etc/gw/devices.csv");
    assert_path_in(tmp_real, "lua", cfg->rules.dir);
    assert_int_equal(cfg->rules.instruction_budget, 1000);
    assert_int_equal(cfg->rules.memory_kb, 256);

    assert_true(cfg->api.enabled);
    assert_string_equal(cfg->api.listen, "::1");
    assert_int_equal(cfg->api.port, 1);
    assert_path_in(tmp_real, "t.yaml", cfg->api.tokens);

    assert_false(cfg->cases.auto_dispatch);

    assert_string_equal(cfg->gateway.level, "debug");
    assert_int_equal(cfg->gateway.stats_interval_s, 86400);
    assert_int_equal(cfg->gateway.queue_size, 1);
    gw_config_free(cfg);
}

static void test_bool_spellings(void **state)
{
    static const char *const yes[] = {"true", "yes", "on", "True", "YES", "On"};
    static const char *const no[] = {"false", "no", "off", "False", "NO", "Off"};
    struct gw_config *cfg;
    char text[64];

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(text, sizeof(text), "api:\n  enabled: %s\n", yes[i]);
        cfg = load_text(text);
        assert_true(cfg->api.enabled);
        gw_config_free(cfg);

        snprintf(text, sizeof(text), "influx:\n  enabled: %s\n", no[i]);
        cfg = load_text(text);
        assert_false(cfg->influx.enabled);
        gw_config_free(cfg);
    }
}

static void test_every_log_level(void **state)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    struct gw_config *cfg;
    char text[64];

    (void)state;
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        snprintf(text, sizeof(text), "gateway: {level: %s}\n", levels[i]);
        cfg = load_text(text);
        assert_string_equal(cfg->gateway.level, levels[i]);
        gw_config_free(cfg);
    }
}

static void test_optional_strings_may_be_unset(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_text("mqtt:\n  username:\n  password: ~\n"
                    "influx:\n  retention_policy: \"\"\n  username: null\n");
    assert_null(cfg->mqtt.username);
    assert_null(cfg->mqtt.password);
    assert_null(cfg->influx.retention_policy);
    assert_null(cfg->influx.username);
    gw_config_free(cfg);

    /* Quoted, "null" is a password like any other. */
    cfg = load_text("mqtt:\n  password: \"null\"\n");
    assert_string_equal(cfg->mqtt.password, "null");
    gw_config_free(cfg);
}

static void test_anchors_and_aliases(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_text("coap: &local {listen: \"10.0.0.1\"}\napi: *local\n");
    assert_string_equal(cfg->coap.listen, "10.0.0.1");
    assert_string_equal(cfg->api.listen, "10.0.0.1");
    gw_config_free(cfg);
}

/* --- paths -------------------------------------------------------------- */

static void test_paths_relative_to_config_dir(void **state)
{
    char sub[PATH_MAX], file[PATH_MAX], real_sub[PATH_MAX], cwd[PATH_MAX];
    struct gw_config *cfg;
    char *error = NULL;

    (void)state;
    join(sub, sizeof(sub), tmp_root, "etc");
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_non_null(realpath(sub, real_sub));
    join(file, sizeof(file), sub, "gw.yaml");
    write_file(file, "store: {path: \"../var/gw.db\"}\n"
                     "journal: {dir: /var/lib/gridgate/journal}\n"
                     "district: {grids: district/grids.geojson}\n");

    cfg = gw_config_load(file, &error);
    assert_non_null(cfg);
    assert_string_equal(cfg->dir, real_sub);
    assert_path_in(real_sub, "../var/gw.db", cfg->store.path);
    assert_string_equal(cfg->journal.dir, "/var/lib/gridgate/journal");
    assert_path_in(real_sub, "district/grids.geojson", cfg->district.grids);
    gw_config_free(cfg);

    /* Given relatively, the file's dir still comes out absolute, so the
     * paths survive a later chdir. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmp_root), 0);
    cfg = gw_config_load("etc/gw.yaml", &error);
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, "etc/gw.yaml");
    assert_string_equal(cfg->dir, real_sub);
    assert_path_in(real_sub, "district/grids.geojson", cfg->district.grids);
    gw_config_free(cfg);
}

/* --- errors ------------------------------------------------------------- */

static void test_error_unknown_section(void **state)
{
    (void)state;
    expect_error("mqtt:\n  qos: 0\nmqttt:\n  qos: 1\n", 3,
                 "mqttt: unknown section (expected one of mqtt, coap, influx, store, journal, "
                 "payload, district, rules, api, cases, gateway)");
}

static void test_error_unknown_key(void **state)
{
    (void)state;
    expect_error("mqtt:\n  uri: \"tcp://h:1883\"\n  port: 1883\n", 3,
                 "mqtt.port: unknown key (expected one of enabled, uri, client_id, qos, "
                 "protocol, keepalive_s, session_expiry_s, username, password, topics, "
                 "shared_group, ca_file, cert_file, key_file, tls_verify, reconnect_min_ms, "
                 "reconnect_max_ms)");
    expect_error("cases: {auto_dispatch: true, escalate_after: 10}\n", 1,
                 "cases.escalate_after: unknown key (expected one of auto_dispatch, limits_critical");
}

static void test_error_wrong_type(void **state)
{
    (void)state;
    expect_error("influx:\n  url: http://x\nmqtt:\n  uri:\n    host: x\n", 4,
                 "mqtt.uri: found a mapping (expected a non-empty string)");
    expect_error("coap:\n  port: [5683, 5684]\n", 2,
                 "coap.port: found a sequence (expected an integer in 1..65535)");
    expect_error("store: var/gridgate.db\n", 1,
                 "store: found a scalar (expected a mapping of store options)");
    expect_error("journal:\n  - dir: x\n", 1,
                 "journal: found a sequence (expected a mapping of journal options)");
    expect_error("api:\n  ? [a, b]\n  : 1\n", 2,
                 "api: found a sequence as a key (expected a key name)");
    expect_error("? {a: 1}\n: 1\n", 1,
                 "found a mapping as a section name (expected a section name)");
}

static void test_error_missing_value(void **state)
{
    (void)state;
    expect_error("coap:\n  port:\n", 2, "coap.port: no value (expected an integer in 1..65535)");
    expect_error("mqtt:\n  enabled: ~\n", 2,
                 "mqtt.enabled: no value (expected true or false (or yes/no, on/off))");
    expect_error("mqtt:\n  uri: \"\"\n", 2, "mqtt.uri: no value (expected a non-empty string)");
    expect_error("rules:\n  dir:\n", 2, "rules.dir: no value (expected a non-empty path)");
}

static void test_error_out_of_range(void **state)
{
    (void)state;
    expect_error("api:\n  listen: 127.0.0.1\n  port: 70000\n", 3,
                 "api.port: 70000 is out of range (expected an integer in 1..65535)");
    expect_error("coap:\n  port: 0\n", 2,
                 "coap.port: 0 is out of range (expected an integer in 1..65535)");
    expect_error("mqtt: {qos: 2}\n", 1,
                 "mqtt.qos: 2 is out of range (expected an integer in 0..1)");
    expect_error("mqtt:\n  keepalive_s: -1\n", 2,
                 "mqtt.keepalive_s: -1 is out of range (expected an integer in 0..65535)");
    /* Beyond long: strtol's ERANGE, not a wrapped value. */
    expect_error("journal:\n  max_mb: 99999999999999999999999\n", 2,
                 "journal.max_mb: 99999999999999999999999 is out of range");
    /* Beyond int but within long: must not be truncated into range. */
    expect_error("mqtt:\n  session_expiry_s: 4294967296\n", 2,
                 "mqtt.session_expiry_s: 4294967296 is out of range (expected an integer in "
                 "0..2147483647)");
}

static void test_error_not_an_integer(void **state)
{
    (void)state;
    expect_error("coap:\n  port: 80x\n", 2,
                 "coap.port: \"80x\" is not an integer (expected an integer in 1..65535)");
    expect_error("influx:\n  batch_size: 1.5\n", 2, "influx.batch_size: \"1.5\" is not an integer");
    expect_error("influx:\n  timeout_ms: 0x100\n", 2,
                 "influx.timeout_ms: \"0x100\" is not an integer");
    expect_error("influx:\n  timeout_ms: \" 500\"\n", 2,
                 "influx.timeout_ms: \" 500\" is not an integer");
    expect_error("gateway:\n  queue_size: true\n", 2,
                 "gateway.queue_size: \"true\" is not an integer");
}

static void test_error_bad_enum(void **state)
{
    (void)state;
    expect_error("gateway:\n  stats_interval_s: 5\n  level: verbose\n", 3,
                 "gateway.level: \"verbose\" is not allowed (expected one of error, warn, info, "
                 "debug)");
    expect_error("gateway:\n  level: INFO\n", 2, "gateway.level: \"INFO\" is not allowed");
    expect_error("mqtt:\n  protocol: 4\n", 2,
                 "mqtt.protocol: 4 is not allowed (expected one of 5, 311)");
    expect_error("mqtt:\n  protocol: 3.1.1\n", 2,
                 "mqtt.protocol: \"3.1.1\" is not an integer (expected one of 5, 311)");
    expect_error("api:\n  enabled: maybe\n", 2,
                 "api.enabled: \"maybe\" is not a boolean (expected true or false (or yes/no, "
                 "on/off))");
    expect_error("api:\n  enabled: 1\n", 2, "api.enabled: \"1\" is not a boolean");
}

static void test_error_duplicate(void **state)
{
    (void)state;
    expect_error("mqtt:\n  qos: 0\n  uri: tcp://a:1\n  qos: 1\n", 4,
                 "mqtt.qos: duplicate key, first given on line 2 (expected each key once)");
    expect_error("mqtt:\n  qos: 0\ncoap:\n  port: 1\nmqtt:\n  uri: tcp://a:1\n", 5,
                 "mqtt: duplicate section, first given on line 1 (expected each section once)");
}

static void test_error_yaml_syntax(void **state)
{
    static const char bad_utf8[] = "mqtt:\n  client_id: ok\n  uri: \"\xff\xfe\"\n";

    (void)state;
    /* A key indented less than its siblings. */
    expect_error("mqtt:\n  uri: tcp://a:1\n qos: 1\n", 3,
                 "YAML syntax error: ", "(expected valid YAML)");
    expect_error("coap:\n  listen: [127.0.0.1\n  port: 5683\n", 3,
                 "YAML syntax error: ", "did not find expected ',' or ']'");
    expect_error("api:\n  listen: \"127.0.0.1\n", 3,
                 "YAML syntax error: ", "unexpected end of stream");
    expect_error("mqtt:\n\tqos: 1\n", 2,
                 "YAML syntax error: ", "found character that cannot start any token");
    expect_error("gateway: {level: *nowhere}\n", 1, "YAML syntax error: ", "found undefined alias");
    expect_error(bad_utf8, 3, "YAML syntax error: ", "invalid");
}

static void test_error_empty_or_not_a_mapping(void **state)
{
    (void)state;
    expect_error("", 1, "empty configuration (expected a mapping of sections)");
    expect_error("# nothing but\n# comments\n\n", 1,
                 "empty configuration (expected a mapping of sections)");
    expect_error("\n\n- mqtt\n- coap\n", 3,
                 "found a sequence at the top level (expected a mapping of sections)");
    expect_error("gridgate\n", 1,
                 "found a scalar at the top level (expected a mapping of sections)");
    expect_error("mqtt: {qos: 0}\n---\ncoap: {port: 1}\n", 3,
                 "a second YAML document (expected one document in the file)");
}

static void test_error_unreadable(void **state)
{
    char missing[PATH_MAX];
    char *error = NULL;

    (void)state;
    join(missing, sizeof(missing), tmp_root, "no-such.yaml");
    expect_error_at(missing, 0,
                    "cannot read: No such file or directory (expected a readable YAML file)",
                    (const char *)NULL);
    expect_error_at(tmp_root, 0, "cannot read: Is a directory", (const char *)NULL);

    /* Root reads anything, so mode 000 only tells for other users. */
    if (geteuid() != 0) {
        write_file(cfg_file, "mqtt: {qos: 0}\n");
        assert_int_equal(chmod(cfg_file, 0), 0);
        expect_error_at(cfg_file, 0, "cannot read: Permission denied", (const char *)NULL);
        assert_int_equal(chmod(cfg_file, 0600), 0);
    }

    assert_null(gw_config_load(NULL, &error));
    assert_non_null(error);
    assert_contains(error, "no config file given");
    free(error);
}

/* Reading grows its buffer from 4 KiB and refuses what cannot be a config. */
static void test_file_sizes(void **state)
{
    size_t big = 5 * 1024 * 1024, comment = 20000;
    struct gw_config *cfg;
    char *text;

    (void)state;
    text = malloc(big + 1);
    assert_non_null(text);

    /* Past several buffer doublings, with the key at the very end. */
    memset(text, ' ', comment);
    text[0] = '#';
    text[comment - 1] = '\n';
    strcpy(text + comment, "mqtt: {qos: 0}\n");
    cfg = load_text(text);
    assert_int_equal(cfg->mqtt.qos, 0);
    gw_config_free(cfg);

    memset(text, '#', big);
    text[big] = '\0';
    write_file(cfg_file, text);
    free(text);
    expect_error_at(cfg_file, 0, "cannot read: File too large", (const char *)NULL);
}

static void test_error_without_ret_error(void **state)
{
    (void)state;
    /* The message is freed inside; ASan tells if it leaks. */
    write_file(cfg_file, "mqtt: {uri: tcp://a:1, client_id: x, qos: 7}\n");
    assert_null(gw_config_load(cfg_file, NULL));
}

static void test_error_after_strings_were_set(void **state)
{
    (void)state;
    /* Fails with most strings and paths already allocated: nothing may
     * leak (ASan) and the first error wins over the later ones. */
    expect_error("mqtt: {uri: \"tcp://a:1\", client_id: c, username: u, password: p}\n"
                 "influx: {url: \"http://i\", database: d, retention_policy: r}\n"
                 "store: {path: s.db}\n"
                 "district: {grids: g, devices: d}\n"
                 "gateway: {level: loud}\n"
                 "api: {port: 0}\n",
                 5, "gateway.level: \"loud\" is not allowed");
}

/* --- the shipped sample ------------------------------------------------- */

static void test_shipped_config_loads(void **state)
{
    struct gw_config *cfg, *defaults;
    char config_dir[PATH_MAX];
    char *error = NULL;

    (void)state;
    cfg = gw_config_load(GW_SOURCE_DIR "/config/gridgate.yaml", &error);
    if (!cfg)
        fail_msg("config/gridgate.yaml: %s", error ? error : "(no message)");
    assert_non_null(realpath(GW_SOURCE_DIR "/config", config_dir));
    assert_string_equal(cfg->dir, config_dir);

    assert_path_in(config_dir, "district/grids.geojson", cfg->district.grids);
    assert_path_in(config_dir, "district/devices.csv", cfg->district.devices);
    assert_path_in(config_dir, "../rules", cfg->rules.dir);
    assert_path_in(config_dir, "../var/gridgate.db", cfg->store.path);
    assert_path_in(config_dir, "../var/journal", cfg->journal.dir);
    assert_path_in(config_dir, "../var/tokens.yaml", cfg->api.tokens);
    assert_path_in(config_dir, "../var/influx-rejected.lp", cfg->influx.dead_letter);
    assert_int_equal(cfg->influx.version, 1);
    assert_true(cfg->influx.gzip);

    /* Everything but the paths it moves and the API it turns on is the
     * built-in default. */
    defaults = load_text("{}\n");
    assert_int_equal(cfg->mqtt.enabled, defaults->mqtt.enabled);
    assert_string_equal(cfg->mqtt.uri, defaults->mqtt.uri);
    assert_string_equal(cfg->mqtt.client_id, defaults->mqtt.client_id);
    assert_int_equal(cfg->mqtt.qos, defaults->mqtt.qos);
    assert_int_equal(cfg->mqtt.protocol, defaults->mqtt.protocol);
    assert_int_equal(cfg->mqtt.keepalive_s, defaults->mqtt.keepalive_s);
    assert_int_equal(cfg->mqtt.session_expiry_s, defaults->mqtt.session_expiry_s);
    assert_null(cfg->mqtt.username);
    assert_null(cfg->mqtt.password);
    assert_int_equal(cfg->coap.enabled, defaults->coap.enabled);
    assert_string_equal(cfg->coap.listen, defaults->coap.listen);
    assert_int_equal(cfg->coap.port, defaults->coap.port);
    assert_int_equal(cfg->influx.enabled, defaults->influx.enabled);
    assert_string_equal(cfg->influx.url, defaults->influx.url);
    assert_string_equal(cfg->influx.database, defaults->influx.database);
    assert_null(cfg->influx.retention_policy);
    assert_null(cfg->influx.username);
    assert_null(cfg->influx.password);
    assert_int_equal(cfg->influx.batch_size, defaults->influx.batch_size);
    assert_int_equal(cfg->influx.flush_interval_ms, defaults->influx.flush_interval_ms);
    assert_int_equal(cfg->influx.timeout_ms, defaults->influx.timeout_ms);
    assert_int_equal(cfg->journal.max_mb, defaults->journal.max_mb);
    assert_int_equal(cfg->rules.instruction_budget, defaults->rules.instruction_budget);
    assert_int_equal(cfg->rules.memory_kb, defaults->rules.memory_kb);
    assert_true(cfg->api.enabled);
    assert_string_equal(cfg->api.listen, defaults->api.listen);
    assert_int_equal(cfg->api.port, defaults->api.port);
    assert_int_equal(cfg->api.threads, defaults->api.threads);
    assert_int_equal(cfg->api.max_body_kb, defaults->api.max_body_kb);
    assert_int_equal(cfg->api.auth_failures, defaults->api.auth_failures);
    assert_int_equal(cfg->cases.auto_dispatch, defaults->cases.auto_dispatch);
    assert_string_equal(cfg->cases.limits_critical, defaults->cases.limits_critical);
    assert_string_equal(cfg->cases.limits_major, defaults->cases.limits_major);
    assert_string_equal(cfg->cases.limits_minor, defaults->cases.limits_minor);
    assert_string_equal(cfg->cases.limits_info, defaults->cases.limits_info);
    assert_null(cfg->cases.self_closing);
    assert_string_equal(cfg->cases.group_categories, defaults->cases.group_categories);
    assert_int_equal(cfg->cases.group_window_s, defaults->cases.group_window_s);
    assert_int_equal(cfg->cases.timer_interval_ms, defaults->cases.timer_interval_ms);
    assert_int_equal(cfg->cases.batch_max, defaults->cases.batch_max);
    assert_string_equal(cfg->cases.notify_topic, defaults->cases.notify_topic);
    assert_string_equal(cfg->gateway.level, defaults->gateway.level);
    assert_int_equal(cfg->gateway.stats_interval_s, defaults->gateway.stats_interval_s);
    assert_int_equal(cfg->gateway.queue_size, defaults->gateway.queue_size);
    gw_config_free(defaults);
    gw_config_free(cfg);
}

/* The full district's config: only what differs from the defaults, and
 * its district where scripts/demo.sh generates it. */
static void test_full_config_loads(void **state)
{
    char config_dir[PATH_MAX];
    char *error = NULL;
    struct gw_config *cfg = gw_config_load(GW_SOURCE_DIR "/config/gridgate-full.yaml", &error);

    (void)state;
    if (!cfg)
        fail_msg("config/gridgate-full.yaml: %s", error ? error : "(no message)");
    assert_non_null(realpath(GW_SOURCE_DIR "/config", config_dir));
    assert_path_in(config_dir, "../var/district-full/grids.geojson", cfg->district.grids);
    assert_path_in(config_dir, "../var/district-full/devices.csv", cfg->district.devices);
    assert_path_in(config_dir, "../var/gridgate-full.db", cfg->store.path);
    assert_path_in(config_dir, "../var/journal-full", cfg->journal.dir);
    assert_int_equal(cfg->rules.memory_kb, 262144); /* the default holds the full district */
    assert_true(cfg->api.enabled);
    gw_config_free(cfg);
}

/* --- describe and free -------------------------------------------------- */

static const char *const every_key[] = {
    "mqtt.enabled",
    "mqtt.uri",
    "mqtt.client_id",
    "mqtt.qos",
    "mqtt.protocol",
    "mqtt.keepalive_s",
    "mqtt.session_expiry_s",
    "mqtt.username",
    "mqtt.password",
    "mqtt.topics",
    "mqtt.shared_group",
    "mqtt.ca_file",
    "mqtt.cert_file",
    "mqtt.key_file",
    "mqtt.tls_verify",
    "mqtt.reconnect_min_ms",
    "mqtt.reconnect_max_ms",
    "coap.enabled",
    "coap.listen",
    "coap.port",
    "coap.dtls_port",
    "coap.psk_file",
    "influx.enabled",
    "influx.url",
    "influx.database",
    "influx.retention_policy",
    "influx.username",
    "influx.password",
    "influx.version",
    "influx.org",
    "influx.bucket",
    "influx.token",
    "influx.gzip",
    "influx.dead_letter",
    "influx.batch_size",
    "influx.flush_interval_ms",
    "influx.timeout_ms",
    "influx.max_in_flight",
    "store.path",
    "journal.dir",
    "journal.max_mb",
    "journal.segment_mb",
    "journal.fsync_interval_ms",
    "journal.fsync_kb",
    "journal.full_policy",
    "payload.max_bytes",
    "payload.max_fields",
    "payload.max_string",
    "district.grids",
    "district.devices",
    "district.unknown_devices",
    "rules.dir",
    "rules.instruction_budget",
    "rules.memory_kb",
    "rules.workers",
    "rules.device_failures",
    "rules.rule_devices",
    "rules.quarantine_s",
    "rules.heartbeats",
    "rules.silence_grace_s",
    "api.enabled",
    "api.listen",
    "api.port",
    "api.tokens",
    "api.threads",
    "api.max_body_kb",
    "api.auth_failures",
    "api.console_dir",
    "api.grafana_url",
    "cases.auto_dispatch",
    "cases.limits_critical",
    "cases.limits_major",
    "cases.limits_minor",
    "cases.limits_info",
    "cases.self_closing",
    "cases.group_categories",
    "cases.group_window_s",
    "cases.timer_interval_ms",
    "cases.batch_max",
    "cases.notify_topic",
    "gateway.level",
    "gateway.stats_interval_s",
    "gateway.queue_size",
};

/* The line of `key` in TEXT, copied into LINE. */
static void find_line(const char *text, const char *key, char *line, size_t size)
{
    size_t key_len = strlen(key);

    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (strncmp(p, key, key_len) == 0 && p[key_len] == ' ') {
            snprintf(line, size, "%.*s", (int)len, p);
            return;
        }
        p += len + (end ? 1 : 0);
    }
    fail_msg("no line for %s in:\n%s", key, text);
}

static void test_describe_lists_every_key(void **state)
{
    char *text = NULL;
    size_t size = 0, lines = 0;
    char line[512];
    FILE *out;

    (void)state;
    out = open_memstream(&text, &size);
    assert_non_null(out);
    gw_config_describe(out);
    assert_int_equal(fclose(out), 0);

    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    /* Every key once, nothing else: the list above is complete. */
    assert_int_equal(lines, sizeof(every_key) / sizeof(every_key[0]));
    for (size_t i = 0; i < sizeof(every_key) / sizeof(every_key[0]); i++) {
        find_line(text, every_key[i], line, sizeof(line));
        /* name, type, default and a description: at least four words */
        assert_non_null(strstr(line, "  "));
    }

    find_line(text, "mqtt.uri", line, sizeof(line));
    assert_contains(line, " string ");
    assert_contains(line, " tcp://127.0.0.1:1883 ");
    find_line(text, "mqtt.protocol", line, sizeof(line));
    assert_contains(line, " int[5|311] ");
    find_line(text, "api.port", line, sizeof(line));
    assert_contains(line, " int[1..65535] ");
    assert_contains(line, " 8080 ");
    find_line(text, "rules.dir", line, sizeof(line));
    assert_contains(line, " path ");
    assert_contains(line, " ../rules ");
    find_line(text, "cases.auto_dispatch", line, sizeof(line));
    assert_contains(line, " bool ");
    assert_contains(line, " true ");
    find_line(text, "gateway.level", line, sizeof(line));
    assert_contains(line, " enum[error|warn|info|debug] ");
    find_line(text, "mqtt.password", line, sizeof(line));
    assert_contains(line, " - "); /* no default */
    free(text);
}

static void test_free_null_and_half_built(void **state)
{
    struct gw_config *cfg;

    (void)state;
    gw_config_free(NULL);

    cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->path = strdup("x.yaml");
    cfg->mqtt.uri = strdup("tcp://a:1");
    cfg->api.tokens = strdup("/t");
    gw_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_when_keys_missing),
        cmocka_unit_test(test_null_section_keeps_defaults),
        cmocka_unit_test(test_every_type_parsed),
        cmocka_unit_test(test_bool_spellings),
        cmocka_unit_test(test_every_log_level),
        cmocka_unit_test(test_optional_strings_may_be_unset),
        cmocka_unit_test(test_anchors_and_aliases),
        cmocka_unit_test(test_paths_relative_to_config_dir),
        cmocka_unit_test(test_error_unknown_section),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_wrong_type),
        cmocka_unit_test(test_error_missing_value),
        cmocka_unit_test(test_error_out_of_range),
        cmocka_unit_test(test_error_not_an_integer),
        cmocka_unit_test(test_error_bad_enum),
        cmocka_unit_test(test_error_duplicate),
        cmocka_unit_test(test_error_yaml_syntax),
        cmocka_unit_test(test_error_empty_or_not_a_mapping),
        cmocka_unit_test(test_error_unreadable),
        cmocka_unit_test(test_file_sizes),
        cmocka_unit_test(test_error_without_ret_error),
        cmocka_unit_test(test_error_after_strings_were_set),
        cmocka_unit_test(test_shipped_config_loads),
        cmocka_unit_test(test_full_config_loads),
        cmocka_unit_test(test_describe_lists_every_key),
        cmocka_unit_test(test_free_null_and_half_built),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
