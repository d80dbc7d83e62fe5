/* gridgate: the daemon and its command-line tools.
 *
 *   gridgate run -c FILE [-v]     run the gateway (SIGHUP reloads the rules)
 *   gridgate check -c FILE        validate config, district and rules
 *   gridgate config keys          list every configuration key
 *   gridgate rules test DIR [-v]  run the rule tests (*_test.lua) of DIR
 *   gridgate rules replay -c FILE [--from-journal | --from-influx QUERY | READINGS.jsonl]
 *                                 print the actions the rules would take
 *   gridgate token new --role ROLE --scope SCOPE (--file FILE | -c CONFIG)
 *                      [--name NAME] [--post GRID_ROLE] [--person NAME]
 *                                 make an API token (printed once, only its hash kept)
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coap_adapter.h"
#include "gw_adapter.h"
#include "gw_api.h"
#include "gw_auth.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_pipeline.h"
#include "gw_registry.h"
#include "mqtt_adapter.h"
#include "rule_engine.h"
#include "rule_tools.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "usage: gridgate run -c FILE [-v]     run the gateway\n"
                 "       gridgate check -c FILE        check config, district and rules\n"
                 "       gridgate config keys          list every configuration key\n"
                 "       gridgate rules test DIR [-v]  run the rule tests (*_test.lua) of DIR\n"
                 "       gridgate rules replay -c FILE [--from-journal | --from-influx QUERY |\n"
                 "                                     READINGS.jsonl]\n"
                 "                                     print the actions the rules would take\n"
                 "       gridgate token new --role ROLE --scope SCOPE (--file FILE | -c CONFIG)\n"
                 "                          [--name NAME] [--post GRID_ROLE] [--person NAME]\n"
                 "                                     make an API token: printed once, its hash\n"
                 "                                     appended to FILE (created 0600); with -c,\n"
                 "                                     FILE is api.tokens and the scope must be\n"
                 "                                     a place of the district\n"
                 "       gridgate --version\n");
}

struct options {
    const char *config_path;
    int verbose;
};

static int parse_options(int argc, char **argv, struct options *ret)
{
    static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(ret, 0, sizeof(*ret));
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:vh", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            ret->config_path = optarg;
            break;
        case 'v':
            ret->verbose = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gridgate: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!ret->config_path) {
        fprintf(stderr, "gridgate: -c FILE is required\n");
        return -EINVAL;
    }
    return 0;
}

/* What the MQTT adapter would refuse at start (bad topic filters or
 * shared group), found by `check` already. */
static int check_mqtt(const struct gw_config *cfg)
{
    char **filters = NULL, *error = NULL;
    int n = 0;

    if (!cfg->mqtt.enabled)
        return 0;
    if (mqtt_build_filters(cfg->mqtt.topics, cfg->mqtt.shared_group, &filters, &n, &error) < 0) {
        fprintf(stderr, "%s: %s\n", cfg->path, error ? error : "out of memory");
        free(error);
        return -EINVAL;
    }
    mqtt_free_filters(filters, n);
    return 0;
}

/* Loads config and district, the parts every command needs. Errors are
 * printed as file:line: message. */
static int load_world(const char *path, struct gw_config **ret_cfg, struct gw_registry **ret_reg)
{
    struct gw_config *cfg;
    struct gw_registry *reg;
    char *error = NULL;

    cfg = gw_config_load(path, &error);
    if (!cfg) {
        fprintf(stderr, "%s\n", error ? error : "cannot load the configuration");
        free(error);
        return -EINVAL;
    }
    if (check_mqtt(cfg) < 0) {
        gw_config_free(cfg);
        return -EINVAL;
    }
    reg = gw_registry_load(cfg->district.grids, cfg->district.devices, &error);
    if (!reg) {
        fprintf(stderr, "%s\n", error ? error : "cannot load the district");
        free(error);
        gw_config_free(cfg);
        return -EINVAL;
    }
    *ret_cfg = cfg;
    *ret_reg = reg;
    return 0;
}

/* With the API enabled, its tokens file must load too: a typo there
 * would otherwise surface only when the daemon starts. */
static int check_tokens(const struct gw_config *cfg, const struct gw_registry *reg,
                        size_t *ret_count, char **ret_error)
{
    struct gw_auth *auth;

    if (!cfg->api.enabled)
        return 0;
    auth = gw_auth_load(cfg->api.tokens, reg, ret_error);
    if (!auth)
        return -EINVAL;
    *ret_count = gw_auth_count(auth);
    gw_auth_free(auth);
    return 0;
}

static int cmd_check(const struct options *opts)
{
    struct gw_config *cfg;
    struct gw_registry *reg;
    struct rule_engine *engine;
    char *error = NULL;
    size_t tokens = 0;
    int r;

    if (load_world(opts->config_path, &cfg, &reg) < 0)
        return 1;
    struct rule_limits limits = {
        .instruction_budget = cfg->rules.instruction_budget,
        .memory_bytes = (size_t)cfg->rules.memory_kb * 1024,
    };
    r = rule_tools_check_dir(cfg->rules.dir, &limits, &error);
    engine = r == 0 ? rule_engine_new(&limits) : NULL;
    if (r == 0)
        r = engine ? rule_engine_load_dir(engine, cfg->rules.dir, &error) : -ENOMEM;
    if (r == 0)
        r = check_tokens(cfg, reg, &tokens, &error);
    if (r == 0 && cfg->api.enabled) /* the console's files and Grafana link */
        r = gw_api_check_console(cfg, &error);
    if (r < 0) {
        fprintf(stderr, "%s\n", error ? error : strerror(-r));
    } else {
        printf("%s: ok: %zu grids, %zu devices, %zu rules", opts->config_path,
               gw_registry_grid_count(reg), gw_registry_device_count(reg),
               rule_engine_rule_count(engine));
        if (cfg->api.enabled)
            printf(", %zu API tokens", tokens);
        printf("\n");
    }
    free(error);
    rule_engine_free(engine);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return r < 0 ? 1 : 0;
}

/* Signals are blocked in every thread (Paho's and curl's inherit the mask)
 * and taken here, synchronously, so shutdown runs in one known place. */
static int wait_for_stop(struct gw_pipeline *pipeline, int stats_interval_s)
{
    sigset_t set;
    struct timespec tick = { .tv_sec = 1 };
    int64_t next_report = gw_monotonic_ns() + (int64_t)stats_interval_s * 1000000000;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM)
            return sig;
        if (sig == SIGHUP) {
            gw_info("gridgate", "SIGHUP received: reloading the rules");
            gw_pipeline_reload(pipeline);
        }
        if (gw_monotonic_ns() >= next_report) {
            gw_pipeline_report(pipeline);
            next_report += (int64_t)stats_interval_s * 1000000000;
        }
    }
}

static int cmd_run(const struct options *opts)
{
    struct gw_config *cfg;
    struct gw_registry *reg;
    struct gw_pipeline *pipeline;
    struct gw_api *api = NULL;
    enum gw_log_level level;
    char *error = NULL;
    sigset_t set;
    int sig, status = 0;

    /* A shell starts background jobs with SIGINT ignored, and an ignored
     * signal never reaches sigtimedwait: restore the defaults first. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    /* A file size limit (ulimit -f, systemd's LimitFSIZE=) must show as
     * EFBIG from the write, which the journal reports and the adapters
     * retry, not kill the daemon with SIGXFSZ's default action. */
    signal(SIGXFSZ, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (load_world(opts->config_path, &cfg, &reg) < 0)
        return 1;
    if (opts->verbose)
        gw_log_set_level(GW_LOG_DEBUG);
    else if (gw_log_parse_level(cfg->gateway.level, &level) == 0)
        gw_log_set_level(level);
    gw_info("gridgate", "district: %zu grids, %zu devices", gw_registry_grid_count(reg),
            gw_registry_device_count(reg));
    /* A bad tokens file stops the start before anything connects. */
    if (check_tokens(cfg, reg, &(size_t){0}, &error) < 0) {
        gw_error("gridgate", "%s", error ? error : "cannot load the API tokens");
        free(error);
        status = 1;
        goto out;
    }

    pipeline = gw_pipeline_new(cfg, reg, &error);
    if (!pipeline) {
        gw_error("gridgate", "%s", error ? error : "cannot build the pipeline");
        free(error);
        status = 1;
        goto out;
    }
    if (gw_pipeline_start(pipeline) < 0) {
        status = 1;
        goto stop;
    }
    /* The API comes up once the case service runs, and goes first: its
     * writes go to that service. */
    if (cfg->api.enabled) {
        api = gw_api_start(cfg, reg, pipeline, &error);
        if (!api) {
            gw_error("gridgate", "%s", error ? error : "cannot start the HTTP API");
            free(error);
            status = 1;
            goto stop;
        }
    }
    gw_info("gridgate", "running; stop with SIGINT or SIGTERM");
    sig = wait_for_stop(pipeline, cfg->gateway.stats_interval_s);
    gw_info("gridgate", "%s received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
stop:
    gw_api_stop(api);
    /* Free drains the queues into the store and InfluxDB first; the final
     * report after it would have nowhere to go, so it comes before. */
    gw_pipeline_report(pipeline);
    gw_pipeline_free(pipeline);
    gw_info("gridgate", "stopped");
out:
    gw_registry_free(reg);
    gw_config_free(cfg);
    return status;
}

/* gridgate rules test DIR [-v] */
static int cmd_rules_test(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct rule_tools_test_options o = { 0 };
    struct rule_tools_test_result res;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "vh", long_options, NULL)) != -1) {
        switch (c) {
        case 'v':
            o.verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "gridgate: rules test takes one DIR\n");
        return EXIT_USAGE;
    }
    o.dir = argv[optind];
    /* The rules' log.info lines only with -v; their failures always. */
    gw_log_set_level(o.verbose ? GW_LOG_INFO : GW_LOG_WARN);
    if (rule_tools_test(&o, &res) < 0)
        return 1;
    return res.failed == 0 && res.passed > 0 ? 0 : 1;
}

/* gridgate rules replay -c FILE [--from-journal | --from-influx QUERY | READINGS.jsonl] */
static int cmd_rules_replay(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "from-journal", no_argument, NULL, 'j' },
        { "from-influx", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct rule_tools_replay_options o = { 0 };
    struct rule_tools_replay_result res;
    const char *config_path = NULL;
    struct gw_config *cfg;
    struct gw_registry *reg;
    bool from_journal = false;
    int c, r;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'j':
            from_journal = true;
            break;
        case 'i':
            o.from_influx = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!config_path || (from_journal && o.from_influx) ||
        optind + (from_journal || o.from_influx ? 0 : 1) != argc) {
        fprintf(stderr, "gridgate: rules replay takes -c FILE and one of READINGS.jsonl (- for "
                        "stdin), --from-journal or --from-influx QUERY\n");
        return EXIT_USAGE;
    }
    if (load_world(config_path, &cfg, &reg) < 0)
        return 1;
    o.cfg = cfg;
    o.reg = reg;
    o.input = from_journal || o.from_influx ? NULL : argv[optind];
    r = rule_tools_replay(&o, &res);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return r < 0 || res.errors > 0 ? 1 : 0;
}

static int cmd_rules(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "test") == 0)
        return cmd_rules_test(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "replay") == 0)
        return cmd_rules_replay(argc - 1, argv + 1);
    fprintf(stderr, "gridgate: rules test or rules replay\n");
    usage(stderr);
    return EXIT_USAGE;
}

/* Makes the token of spec, appends it to file, prints it. */
static int token_new(const char *file, const struct gw_token_spec *spec)
{
    char *token = NULL, *error = NULL;

    if (gw_auth_token_new(file, spec, &token, &error) < 0) {
        fprintf(stderr, "gridgate: %s\n", error ? error : "cannot make the token");
        free(error);
        return 1;
    }
    /* Only the token on stdout, so that scripts can take it as it is. */
    printf("%s\n", token);
    fprintf(stderr, "gridgate: token added to %s; it is shown only this once\n", file);
    free(token);
    return 0;
}

/* gridgate token new --role ROLE --scope SCOPE (--file FILE | -c CONFIG)
 *                    [--name NAME] [--post GRID_ROLE] [--person NAME] */
static int cmd_token_new(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "role", required_argument, NULL, 'r' },
        { "scope", required_argument, NULL, 's' },
        { "file", required_argument, NULL, 'f' },
        { "name", required_argument, NULL, 'n' },
        { "post", required_argument, NULL, 'p' },
        { "person", required_argument, NULL, 'P' },
        { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct gw_token_spec spec = { 0 };
    const char *role = NULL, *file = NULL, *post = NULL, *config = NULL;
    struct gw_config *cfg = NULL;
    struct gw_registry *reg = NULL;
    int c, v;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'r':
            role = optarg;
            break;
        case 's':
            spec.scope = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'n':
            spec.name = optarg;
            break;
        case 'p':
            post = optarg;
            break;
        case 'P':
            spec.person = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc || !role || !spec.scope || !(file || config)) {
        fprintf(stderr, "gridgate: token new takes --role ROLE --scope SCOPE and --file FILE "
                        "or -c CONFIG\n");
        return EXIT_USAGE;
    }
    if ((v = gw_actor_role_parse(role)) < 0) {
        fprintf(stderr,
                "gridgate: --role \"%s\": expected operator, commander, staff, supervisor, "
                "liaison or readonly\n",
                role);
        return EXIT_USAGE;
    }
    spec.role = (enum gw_actor_role)v;
    if (post) {
        if ((v = gw_role_parse(post)) < 0) {
            fprintf(stderr,
                    "gridgate: --post \"%s\": expected manager, assistant, police, supervisor, "
                    "judicial, firefighter or party_secretary\n",
                    post);
            return EXIT_USAGE;
        }
        spec.has_post = true;
        spec.post = (enum gw_role)v;
    }
    /* With the configuration, the file is the daemon's and the scope must
     * be a place of its district. */
    if (config) {
        if (load_world(config, &cfg, &reg) < 0)
            return 1;
        spec.reg = reg;
        if (!file)
            file = cfg->api.tokens;
    }
    v = token_new(file, &spec);
    gw_registry_free(reg);
    gw_config_free(cfg);
    return v;
}

static int cmd_token(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "new") == 0)
        return cmd_token_new(argc - 1, argv + 1);
    fprintf(stderr, "gridgate: token new\n");
    usage(stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    struct options opts;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("gridgate %s\n", GRIDGATE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "config") == 0 && argc == 3 && strcmp(argv[2], "keys") == 0) {
        gw_config_describe(stdout);
        return 0;
    }
    if (gw_adapter_register(&mqtt_adapter_ops) < 0 || gw_adapter_register(&coapa_adapter_ops) < 0)
        return 1;
    if (strcmp(argv[1], "run") == 0 || strcmp(argv[1], "check") == 0) {
        if (parse_options(argc - 1, argv + 1, &opts) < 0)
            return EXIT_USAGE;
        return argv[1][0] == 'r' ? cmd_run(&opts) : cmd_check(&opts);
    }
    if (strcmp(argv[1], "rules") == 0)
        return cmd_rules(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    fprintf(stderr, "gridgate: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
