#!/usr/bin/env bash
# The end-to-end benchmark (docs/benchmarks.md, "End to end"): starts
# mosquitto and influxd on 127.0.0.1 (scripts/servers.sh), runs gridgate on
# a config written here (the sample district, or with --full DIR a district
# made by `gridsim district --seed 1 --out DIR`), times its start-up to the
# "subscribed" log line, runs `gridsim bench e2e` against it (MQTT and
# CoAP), stops gridgate; with --nodered, runs the same QoS 1 JSON stream
# through Node-RED (simulators/nodered/: MQTT in -> function -> InfluxDB
# out) at its lossless rate (--nodered-rate R[,R...], default 1000/s) and
# at gridgate's QoS 1 JSON sustained rate; stops the servers by PID, then runs
# the headroom without the broker (`gridsim bench e2e --no-broker`) with
# the machine to itself.
#
#   simulators/bench.sh BUILD_DIR [--full DIR] [--out DIR] [--nodered]
#                       [--nodered-rate R[,R...]] [-- gridsim bench e2e options]
#
# Writes OUT/e2e.json, OUT/headroom.json (OUT/nodered.json) and the logs
# (OUT defaults to a new /tmp/gridgate-bench.XXXXXX, kept). --nodered needs
# node and npm: it installs Node-RED with `npm ci` from
# simulators/nodered/package-lock.json into $GRIDGATE_NODERED_DIR (default
# var/nodered in the source tree, ignored by git) when that is missing or
# out of date. Optional: nothing else needs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    echo "usage: $0 BUILD_DIR [--full DISTRICT_DIR] [--out DIR] [--nodered] [--nodered-rate R[,R...]]" \
        "[-- gridsim bench e2e options]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
build=$(cd "$1" && pwd)
shift
district=$root/config/district
out=
nodered=
nodered_rate=1000
while [ $# -gt 0 ]; do
    case $1 in
    --full) [ $# -ge 2 ] || usage; district=$(cd "$2" && pwd); shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --nodered) nodered=1; shift ;;
    --nodered-rate) [ $# -ge 2 ] || usage; nodered_rate=$2; shift 2 ;;
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
nodered_pid=
cleanup() {
    trap - EXIT INT TERM
    gg_stop_pid "$gateway_pid"
    gg_stop_pid "$nodered_pid"
    "$root/scripts/servers.sh" stop "$out/servers"
}
trap cleanup EXIT INT TERM

"$root/scripts/servers.sh" start "$out/servers"
# shellcheck disable=SC1091
. "$out/servers/servers.env"

# The shipped configuration's defaults, pointed at these servers and at
# this run's own store and journal; health every second (the benchmark
# reads gridgate's counters from it); CoAP on a free loopback port; no API.
config=$out/gridgate.yaml
coap_port=$(gg_free_udp_port)
cat >"$config" <<YAML
mqtt:
  uri: "tcp://127.0.0.1:$MQTT_PORT"
  client_id: gridgate-bench-$$
  qos: 1
  # Gone a second after gridgate stops: the broker would otherwise go on
  # queuing the --nodered run's readings for it.
  session_expiry_s: 1
coap:
  enabled: true
  listen: "127.0.0.1"
  port: $coap_port
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

# --nodered: the peer. Installs Node-RED (npm ci, pinned by the lock file)
# outside the source's tracked files, starts it on loopback with the flow
# pointed at this run's mosquitto and influxd (database nodered), runs
# `gridsim bench e2e --peer` at Node-RED's lossless rate and at gridgate's
# QoS 1 JSON sustained rate, and stops it by PID.
run_nodered() {
    local cache=${GRIDGATE_NODERED_DIR:-$root/var/nodered} src=$root/simulators/nodered
    local port gg_rate
    command -v node >/dev/null && command -v npm >/dev/null ||
        { echo "--nodered: node and npm are needed" >&2; return 1; }
    mkdir -p "$cache"
    if ! cmp -s "$src/package-lock.json" "$cache/package-lock.json" ||
        [ ! -f "$cache/node_modules/node-red/red.js" ]; then
        echo "== npm ci in $cache"
        cp "$src/package.json" "$src/package-lock.json" "$cache/"
        (cd "$cache" && npm ci --omit=dev --no-audit --no-fund >"$out/npm-ci.log" 2>&1) ||
            { echo "--nodered: npm ci failed, see $out/npm-ci.log" >&2; return 1; }
    fi
    curl -sf -XPOST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode "q=CREATE DATABASE nodered" \
        >/dev/null || { echo "--nodered: cannot create database nodered" >&2; return 1; }
    mkdir -p "$out/nodered"
    cp "$src/flows.json" "$out/nodered/flows.json"
    port=$(gg_free_port) || return 1
    echo "== Node-RED on 127.0.0.1:$port (log: $out/nodered.log)"
    NODERED_PORT=$port NODERED_USERDIR=$out/nodered NODERED_FLOWS=$out/nodered/flows.json \
        NODERED_DEVICES=$district/devices.csv MQTT_PORT=$MQTT_PORT INFLUX_PORT=$INFLUX_PORT \
        NODERED_DB=nodered \
        node "$cache/node_modules/node-red/red.js" --settings "$src/settings.js" \
        >"$out/nodered.log" 2>&1 &
    nodered_pid=$!
    gg_wait_until 60 grep -q "Connected to broker" "$out/nodered.log" ||
        { echo "--nodered: Node-RED did not connect; its log:" >&2; tail -n 20 "$out/nodered.log" >&2; return 1; }
    # gridgate's QoS 1 JSON sustained rate, from this run's e2e.json.
    gg_rate=$(sed -n '/"gridgate": \[/,/\]/p' "$out/e2e.json" |
        grep '"transport": "mqtt", "qos": 1, "format": "JSON"' |
        sed 's/.*"sustained": \([0-9]*\).*/\1/')
    [ -n "$gg_rate" ] && [ "$gg_rate" -gt 0 ] || { echo "--nodered: no gridgate rate in e2e.json" >&2; return 1; }
    "$build/gridsim" bench e2e -c "$config" --peer Node-RED --pid "$nodered_pid" --database nodered \
        --peer-rates "$nodered_rate,$gg_rate" --gridgate-rate "$gg_rate" --out "$out/nodered.json" |
        tee "$out/nodered.txt" || return 1
    gg_stop_pid "$nodered_pid"
    nodered_pid=
}

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

if [ -n "$nodered" ]; then
    run_nodered || status=1
fi
"$root/scripts/servers.sh" stop "$out/servers"

echo "== headroom without the broker"
"$build/gridsim" bench e2e -c "$config" --no-broker --messages 3000000 --seconds 10 \
    --out "$out/headroom.json" | tee "$out/headroom.txt" || status=1
echo "== figures in $out (e2e.json, headroom.json)"
exit $status
