/* sim_bench_decode: `gridsim bench decode`, the payload decoders' rate.
 *
 * One thread decodes the same reading (four fields and a device time) in
 * each format in a loop, each time into a fresh reading freed after, as
 * the pipeline does, and prints decodes per second per format and the
 * SenML formats' cost relative to flat JSON, measured in the same run
 * since the machines are shared. Bounded by --seconds and --iterations
 * per format. Owns nothing beyond one run.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "gw_reading.h"
#include "payload.h"
#include "sim_bench.h"

/* The target for flat JSON on one core; SenML within 2x of it. */
#define TARGET_PER_S 500000.0
#define TARGET_RATIO 2.0
#define CLOCK_EVERY 1024 /* decodes between looks at the clock */

struct bench_options {
    double seconds;
    uint64_t iterations;
};

struct bench_case {
    const char *what;
    enum payload_format format;
    const void *data;
    size_t len;
};

struct run_result {
    uint64_t decodes;
    double seconds;
};

/* One reading: smoke 0.12, temp 24.5, battery 87, alarm false, at
 * 1700000000.123 s. */
static const char flat_json[] =
    "{\"ts\":1700000000123,\"smoke\":0.12,\"temp\":24.5,\"battery\":87,\"alarm\":false}";
static const char senml_json[] = "[{\"bt\":1700000000.123,\"n\":\"smoke\",\"v\":0.12},"
                                 "{\"n\":\"temp\",\"v\":24.5},{\"n\":\"battery\",\"v\":87},"
                                 "{\"n\":\"alarm\",\"vb\":false}]";
static const unsigned char senml_cbor[] = {
    0x84,                                                             /* 4 records */
    0xa3, 0x22, 0xfb, 0x41, 0xd9, 0x54, 0xfc, 0x40, 0x07, 0xdf, 0x3b, /* bt: 1700000000.123 */
    0x00, 0x65, 's',  'm',  'o',  'k',  'e',                          /* n: "smoke" */
    0x02, 0xfb, 0x3f, 0xbe, 0xb8, 0x51, 0xeb, 0x85, 0x1e, 0xb8,       /* v: 0.12 */
    0xa2, 0x00, 0x64, 't',  'e',  'm',  'p',  0x02, 0xf9, 0x4e, 0x20, /* temp: 24.5, a half */
    0xa2, 0x00, 0x67, 'b',  'a',  't',  't',  'e',  'r',  'y',  0x02, 0x18, 0x57, /* battery: 87 */
    0xa2, 0x00, 0x65, 'a',  'l',  'a',  'r',  'm',  0x04, 0xf4,                   /* alarm: false */
};

static void usage(FILE *f)
{
    fputs("usage: gridsim bench decode [--seconds S] [--iterations N]\n"
          "\n"
          "  --seconds S     seconds per format at most (default 3, up to 60)\n"
          "  --iterations N  decodes per format at most (default 100000000)\n"
          "\n"
          "One thread; each decode gets a fresh reading, as in the gateway.\n",
          f);
}

/* Returns 0, 1 after --help, or -EINVAL. */
static int parse_args(int argc, char **argv, struct bench_options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gridsim bench decode: unknown or incomplete option \"%s\"\n", a);
            usage(stderr);
            return -EINVAL;
        }
        const char *val = argv[++i];
        if (strcmp(a, "--seconds") == 0) {
            if (sim_bench_parse_number("decode", val, a, 0.01, 60, &v) < 0)
                return -EINVAL;
            o->seconds = v;
        } else if (strcmp(a, "--iterations") == 0) {
            if (sim_bench_parse_count("decode", val, a, UINT64_C(10000000000), &o->iterations) < 0)
                return -EINVAL;
        } else {
            fprintf(stderr, "gridsim bench decode: unknown option \"%s\"\n", a);
            usage(stderr);
            return -EINVAL;
        }
    }
    return 0;
}

/* Decodes once and checks the result is the reading above, so that the
 * loop measures a decoder that works. */
static int check_case(const struct bench_case *c)
{
    static const char *names[] = { "smoke", "temp", "battery", "alarm" };
    struct gw_reading *r = gw_reading_new("bench-1", GW_CHANNEL_TELEMETRY, 0);
    char reason[256];
    int err;

    if (!r) {
        fprintf(stderr, "gridsim bench decode: out of memory\n");
        return -ENOMEM;
    }
    err = payload_decode(c->format, c->data, c->len, NULL, r, reason, sizeof(reason));
    if (err < 0) {
        fprintf(stderr, "gridsim bench decode: %s: %s\n", c->what, reason);
        goto out;
    }
    err = -EINVAL;
    if (r->n_fields != 4 || r->ts_ns != INT64_C(1700000000123000000)) {
        fprintf(stderr, "gridsim bench decode: %s: %zu fields at %" PRId64 " ns\n", c->what,
                r->n_fields, r->ts_ns);
        goto out;
    }
    for (size_t i = 0; i < 4; i++) {
        if (!gw_reading_field(r, names[i])) {
            fprintf(stderr, "gridsim bench decode: %s: no field %s\n", c->what, names[i]);
            goto out;
        }
    }
    err = 0;
out:
    gw_reading_unref(r);
    return err;
}

static int run_case(const struct bench_case *c, const struct bench_options *o,
                    struct run_result *ret)
{
    int64_t start = gw_monotonic_ns(), deadline = start + (int64_t)(o->seconds * 1e9), end = start;
    char reason[256];
    uint64_t n = 0;

    while (n < o->iterations) {
        struct gw_reading *r = gw_reading_new("bench-1", GW_CHANNEL_TELEMETRY, 0);

        if (!r || payload_decode(c->format, c->data, c->len, NULL, r, reason, sizeof(reason))) {
            gw_reading_unref(r);
            fprintf(stderr, "gridsim bench decode: %s failed after %" PRIu64 " decodes\n", c->what,
                    n);
            return -EIO;
        }
        gw_reading_unref(r);
        n++;
        if (n % CLOCK_EVERY == 0) {
            end = gw_monotonic_ns();
            if (end >= deadline)
                break;
        }
    }
    if (n % CLOCK_EVERY != 0)
        end = gw_monotonic_ns();
    ret->decodes = n;
    ret->seconds = (double)(end - start) / 1e9;
    return 0;
}

static double rate(const struct run_result *res)
{
    return res->seconds > 0 ? (double)res->decodes / res->seconds : 0;
}

int sim_bench_decode(int argc, char **argv)
{
    const struct bench_case cases[] = {
        { "flat JSON", PAYLOAD_JSON, flat_json, sizeof(flat_json) - 1 },
        { "SenML JSON", PAYLOAD_SENML_JSON, senml_json, sizeof(senml_json) - 1 },
        { "SenML CBOR", PAYLOAD_SENML_CBOR, senml_cbor, sizeof(senml_cbor) },
    };
    enum { N_CASES = sizeof(cases) / sizeof(cases[0]) };
    struct bench_options o = { .seconds = 3, .iterations = 100000000 };
    struct run_result res[N_CASES];
    double flat;
    int r;

    r = parse_args(argc, argv, &o);
    if (r != 0)
        return r > 0 ? 0 : 2;
    for (int i = 0; i < N_CASES; i++)
        if (check_case(&cases[i]) < 0)
            return 1;
    printf("decode bench: 1 thread, up to %g s or %" PRIu64 " decodes per format, a fresh reading "
           "each\n",
           o.seconds, o.iterations);
    fflush(stdout);
    for (int i = 0; i < N_CASES; i++) {
        if (run_case(&cases[i], &o, &res[i]) < 0)
            return 1;
        printf("  %-10s %3zu bytes %10" PRIu64 " decodes in %6.3f s = %9.0f decodes/s "
               "(%5.0f ns each)\n",
               cases[i].what, cases[i].len, res[i].decodes, res[i].seconds, rate(&res[i]),
               res[i].decodes ? res[i].seconds * 1e9 / (double)res[i].decodes : 0);
        fflush(stdout);
    }
    flat = rate(&res[0]);
    printf("  flat JSON: %s the target of %.0f/s per core\n",
           flat >= TARGET_PER_S ? "meets" : "MISSES", TARGET_PER_S);
    for (int i = 1; i < N_CASES; i++) {
        double ratio = rate(&res[i]) > 0 ? flat / rate(&res[i]) : 0;

        printf("  %s/flat: %.2fx the time per decode (target: within %.0fx) %s\n", cases[i].what,
               ratio, TARGET_RATIO, ratio <= TARGET_RATIO ? "ok" : "MISSED");
    }
    return 0;
}
