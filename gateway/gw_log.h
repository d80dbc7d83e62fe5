/* gw_log: the one logging path of gridgate.
 *
 * Owns the log level and the stderr sink; every module logs through
 * gw_log() with its own module name. Does not own rate limiting decisions
 * of callers beyond the gw_log_limited() helper for device-triggered lines.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum gw_log_level {
    GW_LOG_ERROR = 0,
    GW_LOG_WARN = 1,
    GW_LOG_INFO = 2,
    GW_LOG_DEBUG = 3,
};

extern enum gw_log_level gw_log_threshold;

void gw_log_set_level(enum gw_log_level level);
/* Parses "error", "warn", "info" or "debug"; returns 0 or -EINVAL. */
int gw_log_parse_level(const char *name, enum gw_log_level *ret_level);

void gw_log_write(enum gw_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Level is checked before any argument is formatted. */
#define gw_log(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) <= gw_log_threshold)                                                           \
            gw_log_write((level), (module), __VA_ARGS__);                                          \
    } while (0)

#define gw_error(module, ...) gw_log(GW_LOG_ERROR, module, __VA_ARGS__)
#define gw_warn(module, ...) gw_log(GW_LOG_WARN, module, __VA_ARGS__)
#define gw_info(module, ...) gw_log(GW_LOG_INFO, module, __VA_ARGS__)
#define gw_debug(module, ...) gw_log(GW_LOG_DEBUG, module, __VA_ARGS__)

/* A token bucket for log lines that a device or a rule can trigger at
 * will: at most `burst` lines, refilled at `per_second`. Lines refused are
 * counted and reported with the next line that passes. Thread-safe. */
struct gw_log_limit {
    double per_second;
    double burst;
    double tokens;
    int64_t last_ns;
    uint64_t suppressed;
    int lock; /* spin flag, 0 = free */
};

#define GW_LOG_LIMIT_INIT(per_second, burst) { (per_second), (burst), (burst), 0, 0, 0 }

/* Returns true when a line may be written; *ret_suppressed tells how many
 * were refused since the last line that passed. */
bool gw_log_limit_take(struct gw_log_limit *limit, uint64_t *ret_suppressed);

#define gw_log_limited(limit, level, module, ...)                                                  \
    do {                                                                                           \
        uint64_t gw_log_suppressed_;                                                               \
        if ((level) <= gw_log_threshold && gw_log_limit_take((limit), &gw_log_suppressed_)) {      \
            gw_log_write((level), (module), __VA_ARGS__);                                          \
            if (gw_log_suppressed_ > 0)                                                            \
                gw_log_write((level), (module), "(%llu similar lines suppressed)",                 \
                             (unsigned long long)gw_log_suppressed_);                              \
        }                                                                                          \
    } while (0)

/* Monotonic and wall clocks in nanoseconds, shared by every module. */
int64_t gw_now_ns(void);
int64_t gw_monotonic_ns(void);

#endif
