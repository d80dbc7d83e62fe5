/* influxd_fixture: a throwaway InfluxDB 1.x server on loopback for tests.
 *
 * Owns one influxd process, its temporary directory (config, data, log) and
 * the two ports it listens on (HTTP and the backup RPC), picked free. Does
 * not own the databases a test creates in it. The few HTTP calls it makes
 * (ping, query) go through libcurl; the caller does curl_global_init().
 * Errors are printed to stderr with the reason, for the test's output.
 */
#ifndef INFLUXD_FIXTURE_H
#define INFLUXD_FIXTURE_H

#include <sys/types.h>

struct gw_buf;

struct influxd_fixture {
    char dir[256];
    char url[64]; /* "http://127.0.0.1:PORT", no trailing slash */
    int http_port;
    int rpc_port;
    pid_t pid; /* 0 while not running */
    /* Basic auth for the fixture's own queries, when user[0]. */
    char user[32];
    char password[32];
};

/* A loopback TCP port that was free a moment ago, or -errno. */
int influxd_fixture_free_port(void);

/* Makes the temp dir, picks the ports and writes influxdb.conf; does not
 * start the server, so a test can point a client at the port first.
 * Returns 0 or -errno. */
int influxd_fixture_init(struct influxd_fixture *f);
/* The same, with [http] auth-enabled = true when auth_enabled: the first
 * CREATE USER ... WITH ALL PRIVILEGES needs no credentials, the rest do
 * (set f->user and f->password after creating it). */
int influxd_fixture_init_auth(struct influxd_fixture *f, int auth_enabled);

/* Starts influxd and waits, at most about 15 s, until GET /ping answers
 * 204. Returns 0; -ENOENT when influxd is not on PATH; -ECHILD when it
 * exited (its log is printed); -ETIMEDOUT. */
int influxd_fixture_start(struct influxd_fixture *f);

/* SIGTERM, then waits for the process (SIGKILL after 10 s). Idempotent. */
void influxd_fixture_stop(struct influxd_fixture *f);

/* Stops the server if running and removes the temp dir. */
void influxd_fixture_destroy(struct influxd_fixture *f);

/* POST /query with q (and db when not NULL), epoch=ns. Appends the answer
 * to ret_body when not NULL. Returns the HTTP status or -EIO. */
int influxd_fixture_query(const struct influxd_fixture *f, const char *db, const char *q,
                          struct gw_buf *ret_body);

/* CREATE DATABASE; returns 0 or -EIO. */
int influxd_fixture_create_db(const struct influxd_fixture *f, const char *db);

/* SELECT count(field) FROM measurement: the count (0 when there is no
 * data), or -EIO. */
long long influxd_fixture_count(const struct influxd_fixture *f, const char *db,
                                const char *measurement, const char *field);

#endif
