/* gw_config: gridgate's one YAML configuration file.
 *
 * Owns the parsed configuration and every string in it. Each option is
 * described once, in a table inside gw_config.c (section, key, type,
 * default, range, description), from which parsing, defaults, validation
 * and `gridgate config keys` come. Relative paths are resolved against the
 * config file's directory. Does not open anything the paths name.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

/* rules.heartbeats' default; also what `gridgate rules test` devices use. */
#define GW_DEFAULT_HEARTBEATS \
    "smoke=12h,gas=12h,door=12h,water=12h,temperature=1h,camera=5m,default=12h"

struct gw_config {
    char *path; /* the file as given */
    char *dir;  /* its directory, for relative paths */

    struct {
        bool enabled;
        char *uri;
        char *client_id;
        int qos;              /* 0 or 1: what the gateway subscribes with */
        int protocol;         /* 5 or 311 */
        int keepalive_s;
        int session_expiry_s; /* how long the broker keeps the session */
        char *username;
        char *password;
        char *topics;          /* comma-separated subscriptions */
        char *shared_group;    /* subscribe as $share/GROUP/...; NULL: not shared */
        char *ca_file;         /* TLS: CA certificates to verify the broker */
        char *cert_file;       /* TLS: client certificate, optional */
        char *key_file;        /* TLS: client key, optional */
        bool tls_verify;       /* verify the broker's certificate and name */
        int reconnect_min_ms;
        int reconnect_max_ms;
    } mqtt;

    struct {
        bool enabled;
        char *listen;
        int port;
        int dtls_port;   /* DTLS-PSK listener, when psk_file is set */
        char *psk_file;  /* device_id,key lines; NULL: no DTLS */
    } coap;

    struct {
        bool enabled;
        char *url;
        char *database;
        char *retention_policy;
        int version;           /* 1 or 2: the write API */
        char *username;
        char *password;
        char *org;             /* 2.x */
        char *bucket;          /* 2.x; NULL: database */
        char *token;           /* 2.x */
        bool gzip;             /* compress request bodies */
        char *dead_letter;     /* refused lines, with InfluxDB's reason */
        int batch_size;        /* points per request at most */
        int flush_interval_ms; /* a partial batch waits no longer */
        int timeout_ms;
        int max_in_flight;     /* write requests at once */
    } influx;

    struct {
        char *path;
    } store;

    struct {
        char *dir;
        int max_mb;
        int segment_mb;
        int fsync_interval_ms; /* group fsync: at most this long after a write */
        int fsync_kb;          /* ... or once this much was written */
        char *full_policy;     /* "block" (back-pressure) or "drop_oldest" */
    } journal;

    struct {
        int max_bytes;  /* one payload */
        int max_fields; /* fields of one reading */
        int max_string; /* bytes of one string value */
    } payload;

    struct {
        char *grids;
        char *devices;
        char *unknown_devices; /* "reject" or "quarantine" */
    } district;

    struct {
        char *dir;
        int instruction_budget; /* per call of a rule function */
        int memory_kb;          /* per Lua state */
        int workers;            /* rule workers; 0: one per core */
        int device_failures;    /* consecutive failures that quarantine (rule, device) */
        int rule_devices;       /* quarantined devices that quarantine the rule */
        int quarantine_s;       /* first quarantine, doubling on relapse */
        char *heartbeats;       /* "type=duration,...,default=duration" */
        int silence_grace_s;    /* after a start, no deadman fires before this */
    } rules;

    struct {
        bool enabled;
        char *listen;
        int port;
        char *tokens;
        int threads;
        int max_body_kb;
        int auth_failures; /* per minute and address, then 429 */
        char *console_dir; /* the web console's files; NULL: no console */
        char *grafana_url; /* Grafana's base URL for the console's links; NULL: none */
    } api;

    struct {
        bool auto_dispatch; /* send new cases to the role the rule names */
        char *limits_critical; /* "step=duration,...": time limits by severity */
        char *limits_major;
        char *limits_minor;
        char *limits_info;
        char *self_closing;     /* categories whose clear_case closes */
        char *group_categories; /* categories grouped into incidents */
        int group_window_s;
        int timer_interval_ms;
        int batch_max;
        char *notify_topic; /* "" or NULL: no MQTT notices */
    } cases;

    struct {
        char *level;          /* error, warn, info, debug */
        int stats_interval_s; /* gateway health to the log and InfluxDB */
        int queue_size;       /* readings in flight between stages */
    } gateway;
};

/* Parses FILE. On failure returns NULL and sets *ret_error to a malloc'd
 * message "FILE:LINE: KEY.PATH: what is wrong" that the caller frees. */
struct gw_config *gw_config_load(const char *path, char **ret_error);
void gw_config_free(struct gw_config *cfg);

/* Writes every key with its type, default and description (for docs and
 * `gridgate config keys`). */
void gw_config_describe(FILE *out);

#endif
