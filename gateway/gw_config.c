#include "gw_config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "gw_array.h"
#include "gw_buf.h"


/* A config file is a few kilobytes; anything past this is a wrong path
 * (a database, a log) given by mistake. */
#define CONFIG_MAX_BYTES (4 * 1024 * 1024)

enum opt_type {
    OPT_STRING,
    OPT_PATH, /* a string resolved against the config file's directory */
    OPT_INT,
    OPT_BOOL,
    OPT_ENUM, /* a string that must be one of `choices` */
};

struct option {
    const char *section;
    const char *key;
    enum opt_type type;
    /* Written as it would be in the file, and converted by the same code
     * as the file's values. NULL: the option stays unset (NULL) unless
     * given, and may be given as null or "". */
    const char *def;
    long min, max;              /* OPT_INT without choices */
    const char *const *choices; /* OPT_ENUM, or the only values an OPT_INT takes */
    size_t offset;
    const char *desc;
};

/* offsetof plus a compile-time check that the field has the C type the
 * option's type stores: a mismatch has no _Generic association and fails
 * to build instead of scribbling over a neighbour at run time. */
#define FIELD(sec, name, ctype)                                                                    \
    (offsetof(struct gw_config, sec.name) + _Generic(((struct gw_config *)0)->sec.name, ctype : 0))

/* clang-format off */
#define STRING_OPT(sec, name, def, desc) \
    { #sec, #name, OPT_STRING, def, 0, 0, NULL, FIELD(sec, name, char *), desc }
#define PATH_OPT(sec, name, def, desc) \
    { #sec, #name, OPT_PATH, def, 0, 0, NULL, FIELD(sec, name, char *), desc }
#define INT_OPT(sec, name, def, lo, hi, desc) \
    { #sec, #name, OPT_INT, def, lo, hi, NULL, FIELD(sec, name, int), desc }
#define INT_OF_OPT(sec, name, def, choices, desc) \
    { #sec, #name, OPT_INT, def, 0, 0, choices, FIELD(sec, name, int), desc }
#define BOOL_OPT(sec, name, def, desc) \
    { #sec, #name, OPT_BOOL, def, 0, 0, NULL, FIELD(sec, name, _Bool), desc }
#define ENUM_OPT(sec, name, def, choices, desc) \
    { #sec, #name, OPT_ENUM, def, 0, 0, choices, FIELD(sec, name, char *), desc }
/* clang-format on */

static const char *const mqtt_protocols[] = {"5", "311", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const full_policies[] = {"block", "drop_oldest", NULL};
static const char *const unknown_device_policies[] = {"reject", "quarantine", NULL};
static const char *const influx_versions[] = {"1", "2", NULL};

/* Every option, once. Options of one section stay together: a section is
 * known by the index of its first option. */
static const struct option options[] = {
    BOOL_OPT(mqtt, enabled, "true", "take device readings from the MQTT broker"),
    STRING_OPT(mqtt, uri, "tcp://127.0.0.1:1883", "broker URI (tcp://, ssl://, ws://)"),
    STRING_OPT(mqtt, client_id, "gridgate", "MQTT client id; one gateway per id"),
    INT_OPT(mqtt, qos, "1", 0, 1, "QoS the gateway subscribes with"),
    INT_OF_OPT(mqtt, protocol, "5", mqtt_protocols, "MQTT protocol version: 5 or 311 (3.1.1)"),
    INT_OPT(mqtt, keepalive_s, "30", 0, 65535, "keepalive in seconds; 0 turns it off"),
    INT_OPT(mqtt, session_expiry_s, "3600", 0, INT_MAX,
            "seconds the broker keeps the session while the gateway is away"),
    STRING_OPT(mqtt, username, NULL, "broker user name; unset: none"),
    STRING_OPT(mqtt, password, NULL, "broker password; unset: none"),
    STRING_OPT(mqtt, topics, "devices/+/telemetry,devices/+/event,devices/+/status",
               "comma-separated topic filters to subscribe to"),
    STRING_OPT(mqtt, shared_group, NULL,
               "subscribe as $share/GROUP/... so several gateways share the load; unset: not shared"),
    PATH_OPT(mqtt, ca_file, NULL, "TLS: CA certificates that verify the broker; unset: system CAs"),
    PATH_OPT(mqtt, cert_file, NULL, "TLS: client certificate (PEM); unset: none"),
    PATH_OPT(mqtt, key_file, NULL, "TLS: client private key (PEM); unset: none"),
    BOOL_OPT(mqtt, tls_verify, "true", "TLS: verify the broker's certificate and host name"),
    INT_OPT(mqtt, reconnect_min_ms, "500", 10, 600000,
            "first wait before reconnecting; doubles (with jitter) up to reconnect_max_ms"),
    INT_OPT(mqtt, reconnect_max_ms, "30000", 10, 3600000, "longest wait between reconnects"),

    BOOL_OPT(coap, enabled, "false", "take device readings over CoAP"),
    STRING_OPT(coap, listen, "127.0.0.1", "address the CoAP server binds"),
    INT_OPT(coap, port, "5683", 1, 65535, "UDP port of the CoAP server"),
    INT_OPT(coap, dtls_port, "5684", 1, 65535, "UDP port of the DTLS-PSK CoAP server"),
    PATH_OPT(coap, psk_file, NULL,
             "CSV of device_id,key pre-shared keys; set: DTLS-PSK on dtls_port; unset: no DTLS"),

    BOOL_OPT(influx, enabled, "true", "write readings, case events and health to InfluxDB"),
    STRING_OPT(influx, url, "http://127.0.0.1:8086", "InfluxDB base URL"),
    STRING_OPT(influx, database, "gridgate", "database the points go to"),
    STRING_OPT(influx, retention_policy, NULL, "retention policy; unset: the database default"),
    INT_OF_OPT(influx, version, "1", influx_versions,
               "InfluxDB API: 1 (/write, database, user/password) or 2 (/api/v2/write, org, bucket, token)"),
    STRING_OPT(influx, username, NULL, "InfluxDB user name; unset: none"),
    STRING_OPT(influx, password, NULL, "InfluxDB password; unset: none"),
    STRING_OPT(influx, org, NULL, "InfluxDB 2.x organization (version 2)"),
    STRING_OPT(influx, bucket, NULL, "InfluxDB 2.x bucket (version 2); unset: the database's name"),
    STRING_OPT(influx, token, NULL, "InfluxDB 2.x API token (version 2)"),
    BOOL_OPT(influx, gzip, "true", "gzip the request bodies"),
    PATH_OPT(influx, dead_letter, "var/influx-rejected.lp",
             "file the lines InfluxDB refuses (400) are appended to, each with its reason"),
    INT_OPT(influx, batch_size, "5000", 1, 1000000, "points per write request at most"),
    INT_OPT(influx, flush_interval_ms, "1000", 1, 3600000,
            "milliseconds a partial batch waits at most"),
    INT_OPT(influx, timeout_ms, "30000", 100, 600000,
            "milliseconds a write request may take; a batch creating thousands of new series "
            "takes InfluxDB seconds, and one that times out is sent again"),
    INT_OPT(influx, max_in_flight, "2", 1, 8,
            "write requests in flight at once; InfluxDB takes more points/s with 2 than 1"),

    PATH_OPT(store, path, "var/gridgate.db", "SQLite database of cases and their history"),

    PATH_OPT(journal, dir, "var/journal", "directory of the on-disk reading journal"),
    INT_OPT(journal, max_mb, "1024", 1, 1048576, "megabytes the journal may hold"),
    INT_OPT(journal, segment_mb, "64", 1, 4096, "megabytes per journal segment file"),
    INT_OPT(journal, fsync_interval_ms, "100", 1, 60000,
            "fsync the journal at most this long after a write (what a power loss may take)"),
    INT_OPT(journal, fsync_kb, "4096", 4, 1048576,
            "fsync the journal sooner once this many kilobytes were written"),
    ENUM_OPT(journal, full_policy, "block", full_policies,
             "when the journal is full: block (the broker keeps the rest) or drop_oldest (counted)"),

    INT_OPT(payload, max_bytes, "65536", 64, 16777216, "bytes one payload may have"),
    INT_OPT(payload, max_fields, "64", 1, 4096, "fields one reading may have"),
    INT_OPT(payload, max_string, "1024", 1, 1048576, "bytes one string value may have"),

    PATH_OPT(district, grids, "district/grids.geojson", "grids as a GeoJSON FeatureCollection"),
    PATH_OPT(district, devices, "district/devices.csv", "devices as CSV"),
    ENUM_OPT(district, unknown_devices, "reject", unknown_device_policies,
             "a device not in the devices file: reject (counted) or quarantine (grid \"unassigned\")"),

    PATH_OPT(rules, dir, "../rules", "directory of the *.lua rule files"),
    INT_OPT(rules, instruction_budget, "1000000", 1000, 1000000000,
            "Lua instructions one call of a rule function may run"),
    INT_OPT(rules, memory_kb, "262144", 256, 4194304,
            "kilobytes of memory one worker's Lua state may use (per-device state included)"),
    INT_OPT(rules, workers, "0", 0, 256,
            "rule workers, each with its own Lua state; a device's readings always go to the same "
            "one; 0: one per core"),
    INT_OPT(rules, device_failures, "5", 1, 1000000,
            "consecutive failures of a rule on one device that quarantine the rule for that device"),
    INT_OPT(rules, rule_devices, "20", 1, 1000000,
            "devices a rule is quarantined for that quarantine the whole rule"),
    INT_OPT(rules, quarantine_s, "60", 1, 86400,
            "seconds a first quarantine lasts; doubles on each relapse, up to an hour"),
    STRING_OPT(rules, heartbeats,
               GW_DEFAULT_HEARTBEATS,
               "expected heartbeat per device type (deadman rules count in these)"),
    INT_OPT(rules, silence_grace_s, "600", 0, 604800,
            "seconds after a start before any deadman rule fires, so a restart does not flood cases"),

    BOOL_OPT(api, enabled, "false", "serve the HTTP API"),
    STRING_OPT(api, listen, "127.0.0.1", "address the HTTP API binds"),
    INT_OPT(api, port, "8080", 1, 65535, "TCP port of the HTTP API"),
    PATH_OPT(api, tokens, "tokens.yaml", "file of API token hashes, roles and scopes"),
    INT_OPT(api, threads, "4", 1, 64, "threads answering HTTP requests"),
    INT_OPT(api, max_body_kb, "64", 1, 16384, "kilobytes a request body may have (larger: 413)"),
    INT_OPT(api, auth_failures, "20", 1, 1000000,
            "failed authentications per minute from one address before it gets 429"),
    PATH_OPT(api, console_dir, NULL,
             "directory of the web console's files, served at /console/ (index.html must be "
             "there); unset: no console"),
    STRING_OPT(api, grafana_url, NULL,
               "Grafana's base URL (http://host:3000), for the console's links to the grid "
               "dashboard; unset: no links"),

    BOOL_OPT(cases, auto_dispatch, "true", "send a new case to the role its rule names"),
    STRING_OPT(cases, limits_critical, "dispatched=30m,handled=30m,verified=2h,evaluated=1d",
               "time limit of each step for critical cases (step=duration,...)"),
    STRING_OPT(cases, limits_major, "dispatched=2h,handled=2h,verified=8h,evaluated=3d",
               "time limit of each step for major cases"),
    STRING_OPT(cases, limits_minor, "dispatched=1d,handled=1d,verified=2d,evaluated=5d",
               "time limit of each step for minor cases"),
    STRING_OPT(cases, limits_info, "dispatched=3d,handled=2d,verified=3d,evaluated=7d",
               "time limit of each step for info cases"),
    STRING_OPT(cases, self_closing, NULL,
               "categories (comma-separated, \"fire.*\" for a prefix) whose clear_case closes the "
               "case without verification; unset: none"),
    STRING_OPT(cases, group_categories, "fire.*",
               "categories whose cases in one grid are grouped into one incident; \"*\": all; unset: none"),
    INT_OPT(cases, group_window_s, "600", 0, 86400,
            "seconds after an incident's first case in which cases join it; 0: no grouping"),
    INT_OPT(cases, timer_interval_ms, "1000", 10, 3600000,
            "how often the case timer looks for steps past their time limit"),
    INT_OPT(cases, batch_max, "512", 1, 100000, "case commands per store transaction at most"),
    STRING_OPT(cases, notify_topic, "grids/{grid_id}/cases",
               "MQTT topic of the case notices ({grid_id} is replaced); empty: no notices"),

    ENUM_OPT(gateway, level, "info", log_levels, "log level"),
    INT_OPT(gateway, stats_interval_s, "10", 1, 86400,
            "seconds between gateway health reports to the log and InfluxDB"),
    INT_OPT(gateway, queue_size, "10000", 1, 10000000,
            "points the InfluxDB writer holds in memory (about 512 bytes each); the journal keeps the rest"),
};

#define N_OPTIONS ARRAY_SIZE(options)

struct loader {
    const char *file;
    struct gw_config *cfg;
    yaml_document_t *doc;
    int option_line[N_OPTIONS];  /* 1-based line an option was set on; 0: not set */
    int section_line[N_OPTIONS]; /* same, at the index of a section's first option */
    char *error;
};

static void *field(struct gw_config *cfg, const struct option *opt)
{
    return (char *)cfg + opt->offset;
}

static bool is_string_type(enum opt_type type)
{
    return type == OPT_STRING || type == OPT_PATH || type == OPT_ENUM;
}

static int fail(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps only the first error: later ones are usually its consequences. */
static int fail(struct loader *ld, int line, const char *fmt, ...)
{
    va_list ap;

    if (ld->error)
        return -EINVAL;
    va_start(ap, fmt);
    ld->error = gw_vformat_at(ld->file, line, fmt, ap);
    va_end(ap);
    return ld->error ? -EINVAL : -ENOMEM;
}

static const char *node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static int node_line(const yaml_node_t *node)
{
    return (int)node->start_mark.line + 1;
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* YAML spells null as an empty plain scalar, `~` or `null`; quoted, they
 * are strings. */
static bool is_null(const yaml_node_t *node)
{
    static const char *const spellings[] = {"", "~", "null", "Null", "NULL"};

    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(spellings); i++) {
        if (strcmp(scalar_text(node), spellings[i]) == 0)
            return true;
    }
    return false;
}

/* "\0" escapes would make C see a shorter string than the file has. */
static bool has_nul(const yaml_node_t *node)
{
    return strlen(scalar_text(node)) != node->data.scalar.length;
}

static void write_choices(FILE *out, const char *const *choices, const char *sep)
{
    for (size_t i = 0; choices[i]; i++)
        fprintf(out, "%s%s", i > 0 ? sep : "", choices[i]);
}

/* What a value of OPT must look like, for messages. */
static void write_expected(FILE *out, const struct option *opt)
{
    switch (opt->type) {
    case OPT_STRING:
        fputs(opt->def ? "a non-empty string" : "a string", out);
        break;
    case OPT_PATH:
        fputs(opt->def ? "a non-empty path" : "a path", out);
        break;
    case OPT_INT:
        if (opt->choices) {
            fputs("one of ", out);
            write_choices(out, opt->choices, ", ");
        } else {
            fprintf(out, "an integer in %ld..%ld", opt->min, opt->max);
        }
        break;
    case OPT_BOOL:
        fputs("true or false (or yes/no, on/off)", out);
        break;
    case OPT_ENUM:
        fputs("one of ", out);
        write_choices(out, opt->choices, ", ");
        break;
    }
}

/* The type column of gw_config_describe(). */
static void write_type(FILE *out, const struct option *opt)
{
    switch (opt->type) {
    case OPT_STRING:
        fputs("string", out);
        break;
    case OPT_PATH:
        fputs("path", out);
        break;
    case OPT_INT:
        if (opt->choices) {
            fputs("int[", out);
            write_choices(out, opt->choices, "|");
            fputs("]", out);
        } else {
            fprintf(out, "int[%ld..%ld]", opt->min, opt->max);
        }
        break;
    case OPT_BOOL:
        fputs("bool", out);
        break;
    case OPT_ENUM:
        fputs("enum[", out);
        write_choices(out, opt->choices, "|");
        fputs("]", out);
        break;
    }
}

/* Runs WRITE into a malloc'd string; NULL when out of memory. */
static char *format_with(void (*write)(FILE *, const struct option *), const struct option *opt)
{
    char *text = NULL;
    size_t size;
    FILE *out = open_memstream(&text, &size);

    if (!out)
        return NULL;
    write(out, opt);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static bool parse_bool(const char *text, bool *ret_value)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *ret_value = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *ret_value = false;
            return true;
        }
    }
    return false;
}

/* Decimal only: a leading 0 means nothing, so "010" is ten, not eight. */
static int parse_long(const char *text, long *ret_value)
{
    const char *p = text;
    char *end;
    long value;

    if (*p == '+' || *p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return -EINVAL; /* strtol would skip spaces and take an empty string as 0 */
    errno = 0;
    value = strtol(text, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *ret_value = value;
    return 0;
}

static int resolve_path(const char *dir, const char *path, char **ret_path)
{
    char *resolved;
    int n;

    if (path[0] == '/') {
        resolved = strdup(path);
        if (!resolved)
            return -ENOMEM;
    } else {
        n = asprintf(&resolved, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", path);
        if (n < 0)
            return -ENOMEM;
    }
    *ret_path = resolved;
    return 0;
}

/* Converts TEXT (NULL: no value) for OPT and stores it in CFG. A bad value
 * gives -EINVAL or -ERANGE with what is wrong in WHY; the caller adds
 * where and what was expected. */
static int store_value(struct gw_config *cfg, const struct option *opt, const char *text, char *why,
                       size_t why_size)
{
    void *dst = field(cfg, opt);
    char *copy = NULL;
    long number;
    bool flag;
    int r;

    if (!text || text[0] == '\0') {
        if (is_string_type(opt->type) && !opt->def) {
            free(*(char **)dst);
            *(char **)dst = NULL;
            return 0;
        }
        snprintf(why, why_size, "no value");
        return -EINVAL;
    }

    switch (opt->type) {
    case OPT_STRING:
        copy = strdup(text);
        if (!copy)
            return -ENOMEM;
        break;
    case OPT_PATH:
        r = resolve_path(cfg->dir, text, &copy);
        if (r < 0)
            return r;
        break;
    case OPT_ENUM:
        for (size_t i = 0; opt->choices[i]; i++) {
            if (strcmp(text, opt->choices[i]) == 0) {
                copy = strdup(text);
                if (!copy)
                    return -ENOMEM;
                break;
            }
        }
        if (!copy) {
            snprintf(why, why_size, "\"%.64s\" is not allowed", text);
            return -EINVAL;
        }
        break;
    case OPT_INT:
        r = parse_long(text, &number);
        if (r == -EINVAL) {
            snprintf(why, why_size, "\"%.64s\" is not an integer", text);
            return r;
        }
        if (opt->choices) {
            bool allowed = false;
            long choice;

            for (size_t i = 0; r == 0 && opt->choices[i] && !allowed; i++)
                allowed = parse_long(opt->choices[i], &choice) == 0 && choice == number;
            if (!allowed) {
                snprintf(why, why_size, "%.64s is not allowed", text);
                return -EINVAL;
            }
        } else if (r == -ERANGE || number < opt->min || number > opt->max) {
            snprintf(why, why_size, "%.64s is out of range", text);
            return -ERANGE;
        }
        *(int *)dst = (int)number;
        return 0;
    case OPT_BOOL:
        if (!parse_bool(text, &flag)) {
            snprintf(why, why_size, "\"%.64s\" is not a boolean", text);
            return -EINVAL;
        }
        *(bool *)dst = flag;
        return 0;
    }

    free(*(char **)dst);
    *(char **)dst = copy;
    return 0;
}

static int find_section(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strcmp(options[i].section, name) == 0)
            return (int)i;
    }
    return -1;
}

static int find_option(int section, const char *key)
{
    for (size_t i = (size_t)section; i < N_OPTIONS; i++) {
        if (strcmp(options[i].section, options[section].section) != 0)
            break;
        if (strcmp(options[i].key, key) == 0)
            return (int)i;
    }
    return -1;
}

/* "a, b, c": the sections, or the keys of SECTION when it is >= 0. */
static char *list_names(int section)
{
    char *text = NULL;
    size_t size;
    const char *last = NULL;
    bool first = true;
    FILE *out = open_memstream(&text, &size);

    if (!out)
        return NULL;
    for (size_t i = section < 0 ? 0 : (size_t)section; i < N_OPTIONS; i++) {
        if (section >= 0) {
            if (strcmp(options[i].section, options[section].section) != 0)
                break;
            fprintf(out, "%s%s", first ? "" : ", ", options[i].key);
            first = false;
        } else if (!last || strcmp(last, options[i].section) != 0) {
            fprintf(out, "%s%s", first ? "" : ", ", options[i].section);
            last = options[i].section;
            first = false;
        }
    }
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int load_option(struct loader *ld, int section, yaml_node_t *key, yaml_node_t *value)
{
    const char *sec = options[section].section;
    const char *name;
    const struct option *opt;
    char why[128];
    char *expected = NULL;
    char *names;
    int line = node_line(key);
    int index;
    int r;

    if (key->type != YAML_SCALAR_NODE || has_nul(key))
        return fail(ld, line, "%s: found %s as a key (expected a key name)", sec,
                    key->type == YAML_SCALAR_NODE ? "a NUL byte" : node_kind(key));
    name = scalar_text(key);

    index = find_option(section, name);
    if (index < 0) {
        names = list_names(section);
        if (!names)
            return -ENOMEM;
        r = fail(ld, line, "%s.%.64s: unknown key (expected one of %s)", sec, name, names);
        free(names);
        return r;
    }
    opt = &options[index];
    if (ld->option_line[index] > 0)
        return fail(ld, line,
                    "%s.%s: duplicate key, first given on line %d (expected each key once)", sec,
                    opt->key, ld->option_line[index]);
    ld->option_line[index] = line;

    if (value->type != YAML_SCALAR_NODE) {
        snprintf(why, sizeof(why), "found %s", node_kind(value));
        r = -EINVAL;
    } else if (has_nul(value)) {
        snprintf(why, sizeof(why), "found a NUL byte");
        r = -EINVAL;
    } else {
        r = store_value(ld->cfg, opt, is_null(value) ? NULL : scalar_text(value), why, sizeof(why));
    }
    if (r == -EINVAL || r == -ERANGE) {
        expected = format_with(write_expected, opt);
        if (!expected)
            return -ENOMEM;
        r = fail(ld, line, "%s.%s: %s (expected %s)", sec, opt->key, why, expected);
    }
    free(expected);
    return r;
}

static int load_section(struct loader *ld, yaml_node_t *key, yaml_node_t *value)
{
    const char *name;
    char *names;
    int line = node_line(key);
    int section;
    int r;

    if (key->type != YAML_SCALAR_NODE || has_nul(key))
        return fail(ld, line, "found %s as a section name (expected a section name)",
                    key->type == YAML_SCALAR_NODE ? "a NUL byte" : node_kind(key));
    name = scalar_text(key);

    section = find_section(name);
    if (section < 0) {
        names = list_names(-1);
        if (!names)
            return -ENOMEM;
        r = fail(ld, line, "%.64s: unknown section (expected one of %s)", name, names);
        free(names);
        return r;
    }
    if (ld->section_line[section] > 0)
        return fail(ld, line,
                    "%s: duplicate section, first given on line %d (expected each section once)",
                    name, ld->section_line[section]);
    ld->section_line[section] = line;

    /* `coap:` with every key commented out keeps the defaults. */
    if (is_null(value))
        return 0;
    if (value->type != YAML_MAPPING_NODE)
        return fail(ld, line, "%s: found %s (expected a mapping of %s options)", name,
                    node_kind(value), name);

    for (yaml_node_pair_t *pair = value->data.mapping.pairs.start;
         pair < value->data.mapping.pairs.top; pair++) {
        r = load_option(ld, section, yaml_document_get_node(ld->doc, pair->key),
                        yaml_document_get_node(ld->doc, pair->value));
        if (r < 0)
            return r;
    }
    return 0;
}

static int load_root(struct loader *ld, yaml_node_t *root)
{
    int r;

    if (!root)
        return fail(ld, 1, "empty configuration (expected a mapping of sections)");
    if (root->type != YAML_MAPPING_NODE)
        return fail(ld, node_line(root),
                    "found %s at the top level (expected a mapping of sections)", node_kind(root));

    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        r = load_section(ld, yaml_document_get_node(ld->doc, pair->key),
                         yaml_document_get_node(ld->doc, pair->value));
        if (r < 0)
            return r;
    }
    return 0;
}

static int apply_defaults(struct loader *ld)
{
    char why[128];
    int r;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (ld->option_line[i] > 0)
            continue;
        r = store_value(ld->cfg, &options[i], options[i].def, why, sizeof(why));
        if (r == -EINVAL || r == -ERANGE) /* a bad table entry: the unit tests catch it */
            return fail(ld, 0, "%s.%s: bad built-in default: %s", options[i].section,
                        options[i].key, why);
        if (r < 0)
            return r;
    }
    return 0;
}

static int syntax_error(struct loader *ld, const yaml_parser_t *parser, const char *text,
                        size_t len)
{
    int line = (int)parser->problem_mark.line + 1;

    if (parser->error == YAML_MEMORY_ERROR)
        return -ENOMEM;
    /* The reader (bad encoding) knows only a byte offset. */
    if (parser->error == YAML_READER_ERROR) {
        line = 1;
        for (size_t i = 0; i < parser->problem_offset && i < len; i++)
            line += text[i] == '\n';
    }
    return fail(ld, line, "YAML syntax error: %s%s%s (expected valid YAML)",
                parser->context ? parser->context : "", parser->context ? ", " : "",
                parser->problem ? parser->problem : "unknown problem");
}

/* The directory relative paths hang off, made absolute so that they stay
 * right if the gateway changes its working directory later. */
static int config_dir(const char *path, char **ret_dir)
{
    char *copy = strdup(path);
    char *dir;

    if (!copy)
        return -ENOMEM;
    dir = realpath(dirname(copy), NULL);
    free(copy);
    if (!dir)
        return -errno;
    *ret_dir = dir;
    return 0;
}

static int parse(struct loader *ld, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    yaml_node_t *root;
    bool doc_loaded = false;
    int r;

    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    if (!yaml_parser_load(&parser, &doc)) { /* frees the document itself */
        r = syntax_error(ld, &parser, text, len);
        goto out;
    }
    doc_loaded = true;
    ld->doc = &doc;
    r = load_root(ld, yaml_document_get_root_node(&doc));
    ld->doc = NULL;
    if (r < 0)
        goto out;

    /* A second document would be silently ignored otherwise. */
    if (!yaml_parser_load(&parser, &extra)) {
        r = syntax_error(ld, &parser, text, len);
        goto out;
    }
    root = yaml_document_get_root_node(&extra);
    if (root)
        r = fail(ld, node_line(root), "a second YAML document (expected one document in the file)");
    yaml_document_delete(&extra);
out:
    if (doc_loaded)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return r;
}

struct gw_config *gw_config_load(const char *path, char **ret_error)
{
    struct loader ld = {.file = path ? path : "(null)"};
    struct gw_config *cfg = NULL;
    struct gw_buf file = GW_BUF_INIT;
    int r;

    if (!path || !path[0]) {
        r = fail(&ld, 0, "no config file given (expected a path)");
        goto out;
    }
    r = gw_buf_read_file(&file, path, CONFIG_MAX_BYTES);
    if (r < 0) {
        r = fail(&ld, 0, "cannot read: %s (expected a readable YAML file)", strerror(-r));
        goto out;
    }

    cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        r = -ENOMEM;
        goto out;
    }
    cfg->path = strdup(path);
    if (!cfg->path) {
        r = -ENOMEM;
        goto out;
    }
    r = config_dir(path, &cfg->dir);
    if (r < 0) {
        r = fail(&ld, 0, "cannot resolve its directory: %s", strerror(-r));
        goto out;
    }
    ld.cfg = cfg;

    r = parse(&ld, file.data, file.len);
    if (r < 0)
        goto out;
    r = apply_defaults(&ld);
out:
    gw_buf_free(&file);
    if (r < 0) {
        gw_config_free(cfg);
        cfg = NULL;
        /* Out of memory has no line to point at; say so if we still can. */
        if (!ld.error && asprintf(&ld.error, "%s: %s", ld.file, strerror(-r)) < 0)
            ld.error = NULL;
        if (ret_error)
            *ret_error = ld.error;
        else
            free(ld.error);
        return NULL;
    }
    if (ret_error)
        *ret_error = NULL;
    return cfg;
}

void gw_config_free(struct gw_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (is_string_type(options[i].type))
            free(*(char **)field(cfg, &options[i]));
    }
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

void gw_config_describe(FILE *out)
{
    char name[64];
    char *types[N_OPTIONS];
    int name_width = 0, type_width = 0, def_width = 0;
    int n;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *opt = &options[i];

        n = snprintf(name, sizeof(name), "%s.%s", opt->section, opt->key);
        if (n > name_width)
            name_width = n;
        types[i] = format_with(write_type, opt);
        n = types[i] ? (int)strlen(types[i]) : 1;
        if (n > type_width)
            type_width = n;
        n = opt->def ? (int)strlen(opt->def) : 1;
        if (n > def_width)
            def_width = n;
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *opt = &options[i];

        snprintf(name, sizeof(name), "%s.%s", opt->section, opt->key);
        /* "-": no default, the option is unset unless given. */
        fprintf(out, "%-*s  %-*s  %-*s  %s\n", name_width, name, type_width,
                types[i] ? types[i] : "?", def_width, opt->def ? opt->def : "-", opt->desc);
        free(types[i]);
    }
}
