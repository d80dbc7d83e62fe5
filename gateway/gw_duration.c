#include "gw_duration.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000.0
#define MAX_NS (100.0 * 365 * 86400 * NS_PER_S)

int gw_duration_parse(const char *text, int64_t *ret_ns)
{
    static const struct {
        const char *suffix;
        double ns;
    } units[] = {
        { "ms", 1e6 }, { "s", NS_PER_S }, { "m", 60 * NS_PER_S },
        { "h", 3600 * NS_PER_S }, { "d", 86400 * NS_PER_S }, { "", NS_PER_S },
    };
    char *end;
    double v;

    if (!text || !*text || *text == ' ' || *text == '+' || *text == '-')
        return -EINVAL;
    errno = 0;
    v = strtod(text, &end);
    if (errno || end == text || !isfinite(v) || v < 0)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            double ns = v * units[i].ns;
            if (ns > MAX_NS)
                return -ERANGE;
            *ret_ns = (int64_t)llround(ns);
            return 0;
        }
    }
    return -EINVAL;
}

struct entry {
    char *key;
    int64_t ns;
};

struct gw_duration_table {
    struct entry *entries;
    size_t n;
    int64_t fallback;
};

void gw_duration_table_free(struct gw_duration_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->entries[i].key);
    free(t->entries);
    free(t);
}

static struct gw_duration_table *fail(struct gw_duration_table *t, char **ret_error,
                                      const char *entry, const char *why)
{
    if (ret_error && asprintf(ret_error, "\"%s\": %s", entry, why) < 0)
        *ret_error = NULL;
    gw_duration_table_free(t);
    return NULL;
}

struct gw_duration_table *gw_duration_table_parse(const char *text, char **ret_error)
{
    struct gw_duration_table *t = calloc(1, sizeof(*t));
    char *copy = text ? strdup(text) : NULL, *save = NULL, *item;
    bool have_default = false;

    if (!t || !copy) {
        free(copy);
        return fail(t, ret_error, text ? text : "", "out of memory or empty");
    }
    for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        struct entry *grown;
        char *value;
        int64_t ns;

        while (*item == ' ')
            item++;
        if (!eq || eq == item) {
            t = fail(t, ret_error, item, "expected type=duration");
            goto out;
        }
        *eq = '\0';
        for (char *k = eq - 1; k > item && *k == ' '; k--)
            *k = '\0';
        value = eq + 1;
        while (*value == ' ')
            value++;
        for (char *v = value + strlen(value); v > value && v[-1] == ' ';)
            *--v = '\0';
        if (gw_duration_parse(value, &ns) < 0 || ns == 0) {
            *eq = '=';
            t = fail(t, ret_error, item, "not a positive duration (like 90s, 15m, 12h, 1d)");
            goto out;
        }
        if (strcmp(item, "default") == 0) {
            t->fallback = ns;
            have_default = true;
            continue;
        }
        for (size_t i = 0; i < t->n; i++) {
            if (strcmp(t->entries[i].key, item) == 0) {
                t = fail(t, ret_error, item, "given twice");
                goto out;
            }
        }
        grown = realloc(t->entries, (t->n + 1) * sizeof(*grown));
        if (!grown || !(item = strdup(item))) {
            if (grown)
                t->entries = grown;
            t = fail(t, ret_error, value, "out of memory");
            goto out;
        }
        t->entries = grown;
        t->entries[t->n++] = (struct entry){ item, ns };
    }
    if (!have_default)
        t = fail(t, ret_error, text, "no default=... entry");
out:
    free(copy);
    return t;
}

int64_t gw_duration_table_get(const struct gw_duration_table *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->entries[i].key, key) == 0)
            return t->entries[i].ns;
    return t->fallback;
}
