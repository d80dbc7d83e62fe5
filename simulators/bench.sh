#!/usr/bin/env bash
# The end-to-end benchmark (docs/benchmarks.md, "End to end"): starts
# mosquitto and influxd on 127.0.0.1 (scripts/servers.sh), runs gridgate on
# a config written here (the sample district, or with --full DIR a district
# made by `gridsim district --seed 1 --out DIR`), times its start-up to the
# "subscribed" log line, runs `gridsim bench e2e` against it, stops gridgate
# and the servers by PID, then runs the headroom without the broker
# (`gridsim bench e2e --no-broker`) with the machine to itself.
#
#   simulators/bench.sh BUILD_DIR [--full DIR] [--out DIR] [-- gridsim bench e2e options]
#
# Writes OUT/e2e.json, OUT/headroom.json and the logs (OUT defaults to a
# new /tmp/gridgate-bench.XXXXXX, kept).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    echo "usage: $0 BUILD_DIR [--full DISTRICT_DIR] [--out DIR] [-- gridsim bench e2e options]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
build=$(cd "$1" && pwd)
shift
district=$root/config/district
out=
while [ $# -gt 0 ]; do
    case $1 in
    --full) [ $# -ge 2 ] || usage; district=$(cd "$2" && pwd); shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
    esac
done
for bin in gridgate gridsim; do
    [ -x "$build/$bin" ] || { echo "$build/$bin: not built" >&2; exit 1; }
done
[ -s "$district/devices.csv" ] && [ -s "$district/grids.geojson" ] ||
    { echo "$district: no devices.csv and grids.geojson" >&2; exit 1; }
[ -n "$out" ] || out=$(mktemp -d /tmp/gridgate-bench.XXXXXX)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# shellcheck source=../scripts/servers.sh
. "$root/scripts/servers.sh"
gateway_pid=
cleanup() {
    trap - EXIT INT TERM
    gg_stop_pid "$gateway_pid"
    "$root/scripts/servers.sh" stop "$out/servers"
}
trap cleanup EXIT INT TERM

"$root/scripts/servers.sh" start "$out/servers"
# shellcheck disable=SC1091
. "$out/servers/servers.env"

# The shipped configuration's defaults, pointed at these servers and at
# this run's own store and journal; health every second (the benchmark
# reads gridgate's counters from it); no API, no CoAP.
config=$out/gridgate.yaml
cat >"$config" <<YAML
mqtt:
  uri: "tcp://127.0.0.1:$MQTT_PORT"
  client_id: gridgate-bench-$$
  qos: 1
coap:
  enabled: false
influx:
  url: "http://127.0.0.1:$INFLUX_PORT"
  database: gridgate
  dead_letter: "$out/influx-rejected.lp"
store:
  path: "$out/gridgate.db"
journal:
  dir: "$out/journal"
district:
  grids: "$district/grids.geojson"
  devices: "$district/devices.csv"
rules:
  dir: "$root/rules"
api:
  enabled: false
gateway:
  stats_interval_s: 1
YAML

echo "== gridgate run -c $config (log: $out/gridgate.log)"
t0=$(date +%s%N)
"$build/gridgate" run -c "$config" >"$out/gridgate.log" 2>&1 &
gateway_pid=$!
startup_ms=
for _ in $(seq 1 600); do # at most 60 s
    if grep -q "subscribed to" "$out/gridgate.log"; then
        startup_ms=$((($(date +%s%N) - t0) / 1000000))
        break
    fi
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.01
done
if [ -z "$startup_ms" ]; then
    echo "gridgate did not subscribe; its log:" >&2
    tail -n 20 "$out/gridgate.log" >&2
    exit 1
fi
echo "== gridgate (pid $gateway_pid) subscribed after $startup_ms ms"

status=0
"$build/gridsim" bench e2e -c "$config" --pid "$gateway_pid" --startup-ms "$startup_ms" \
    --out "$out/e2e.json" "$@" | tee "$out/e2e.txt" || status=1
grep -i "dropped" "$out/servers/mosquitto/mosquitto.log" | tail -n 3 || true

gg_stop_pid "$gateway_pid"
gateway_pid=
"$root/scripts/servers.sh" stop "$out/servers"

echo "== headroom without the broker"
"$build/gridsim" bench e2e -c "$config" --no-broker --messages 3000000 --seconds 10 \
    --out "$out/headroom.json" | tee "$out/headroom.txt" || status=1
echo "== figures in $out (e2e.json, headroom.json)"
exit $status
