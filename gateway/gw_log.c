#include "gw_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum gw_log_level gw_log_threshold = GW_LOG_INFO;

static const char *const level_names[] = {
    [GW_LOG_ERROR] = "error",
    [GW_LOG_WARN] = "warn",
    [GW_LOG_INFO] = "info",
    [GW_LOG_DEBUG] = "debug",
};

void gw_log_set_level(enum gw_log_level level)
{
    gw_log_threshold = level;
}

int gw_log_parse_level(const char *name, enum gw_log_level *ret_level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *ret_level = (enum gw_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void gw_log_write(enum gw_log_level level, const char *module, const char *fmt, ...)
{
    char line[2048];
    struct timespec now;
    struct tm tm;
    size_t len;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, sizeof(line) - len, ".%03ldZ %-5s [%s] ",
                            now.tv_nsec / 1000000, level_names[level], module);
    if (len < sizeof(line)) {
        va_start(ap, fmt);
        int n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        if (n > 0)
            len += (size_t)n;
    }
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One fwrite per line keeps lines whole when threads log at once. */
    fwrite(line, 1, len, stderr);
}

bool gw_log_limit_take(struct gw_log_limit *limit, uint64_t *ret_suppressed)
{
    bool pass;
    int64_t now = gw_monotonic_ns();

    while (__atomic_exchange_n(&limit->lock, 1, __ATOMIC_ACQUIRE))
        ;
    if (limit->last_ns != 0) {
        limit->tokens += (double)(now - limit->last_ns) / 1e9 * limit->per_second;
        if (limit->tokens > limit->burst)
            limit->tokens = limit->burst;
    }
    limit->last_ns = now;
    pass = limit->tokens >= 1.0;
    if (pass) {
        limit->tokens -= 1.0;
        *ret_suppressed = limit->suppressed;
        limit->suppressed = 0;
    } else {
        limit->suppressed++;
    }
    __atomic_store_n(&limit->lock, 0, __ATOMIC_RELEASE);
    return pass;
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t gw_now_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

int64_t gw_monotonic_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}
