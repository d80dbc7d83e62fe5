/* gridsim: the simulator's command line. Dispatches each subcommand to the
 * module that owns it: `district` to sim_district, `run` to sim_fleet. */
#include <stdio.h>
#include <string.h>

#include "sim_bench.h"
#include "sim_district.h"
#include "sim_fleet.h"

static void usage(FILE *f)
{
    fputs("usage: gridsim COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  district   write a synthetic Dongcheng district: grids.geojson and devices.csv\n"
          "             gridsim district --seed N --out DIR [--streets K] [--devices N]\n"
          "  run        run a device fleet that publishes readings over MQTT or CoAP:\n"
          "             steady (--rate), live (--heartbeat-scale, Last Will, battery drain)\n"
          "             or a scenario (--scenario fire|crowd|offline|storm|bad --seed N)\n"
          "             gridsim run [OPTIONS]\n"
          "  bench      benchmarks: gridsim bench\n"
          "             journal|decode|ingest|rules|storm|cases|influx|e2e\n"
          "             [OPTIONS] (--help for each)\n"
          "\n"
          "`gridsim COMMAND --help` describes each command's options.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "district") == 0)
        return sim_district_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0)
        return sim_fleet_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3) {
        if (strcmp(argv[2], "journal") == 0)
            return sim_bench_journal(argc - 2, argv + 2);
        if (strcmp(argv[2], "decode") == 0)
            return sim_bench_decode(argc - 2, argv + 2);
        if (strcmp(argv[2], "ingest") == 0)
            return sim_bench_ingest(argc - 2, argv + 2);
        if (strcmp(argv[2], "rules") == 0)
            return sim_bench_rules(argc - 2, argv + 2);
        if (strcmp(argv[2], "storm") == 0)
            return sim_bench_storm(argc - 2, argv + 2);
        if (strcmp(argv[2], "cases") == 0)
            return sim_bench_cases(argc - 2, argv + 2);
        if (strcmp(argv[2], "influx") == 0)
            return sim_bench_influx(argc - 2, argv + 2);
        if (strcmp(argv[2], "e2e") == 0)
            return sim_bench_e2e(argc - 2, argv + 2);
    }
    fprintf(stderr, "gridsim: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
