#!/usr/bin/env bash
# Nothing acknowledged is lost when the gateway is killed: QoS 1 readings
# stream in from a Paho fleet, gridgate is killed with SIGKILL mid-stream
# and started again, and at the end every reading the broker acknowledged
# to the fleet is in InfluxDB, once (a replay overwrites the same point).
#
#   test_crash_recovery.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR
set -euo pipefail

gridgate=$1
gridsim=$2
src=$3
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work crash sim_pid gateway_pid

gg_start_servers

cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-crash, qos: 1 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
gateway:  { stats_interval_s: 1 }
YAML
mkdir -p "$work/var"
# Smoke detectors only, so one count tells every reading.
awk -F, 'NR == 1 || $2 == "smoke"' "$src/config/district/devices.csv" >"$work/smoke.csv"

start_gateway() {
    "$gridgate" run -c "$work/gridgate.yaml" >>"$work/gridgate.log" 2>&1 &
    gateway_pid=$!
    gg_wait_until 15 grep -q "subscribed to" "$work/gridgate.log" ||
        fail "gridgate did not subscribe" "$work/gridgate.log"
}
smoke_points() {
    gg_influx_query "$influx_port" gridgate "SELECT count(battery) FROM smoke" |
        sed -n 's/.*"values":\[\["[^"]*",\([0-9]*\)\]\].*/\1/p'
}

total=4000
start_gateway
"$gridsim" run --devices "$work/smoke.csv" --broker "tcp://127.0.0.1:$mqtt_port" \
    --rate 800 --count "$total" --quiet >"$work/gridsim.out" 2>&1 &
sim_pid=$!

for round in 1 2; do
    sleep 1.5
    echo "round $round: kill -9 gridgate mid-stream"
    kill -KILL "$gateway_pid"
    wait "$gateway_pid" 2>/dev/null || true
    sleep 0.5
    start_gateway
done

wait "$sim_pid" || fail "gridsim failed" "$work/gridsim.out"
sim_pid=
acked=$(sed -n 's/^summary: sent [0-9]*, acked \([0-9]*\),.*/\1/p' "$work/gridsim.out")
assert_eq "$acked" "$total" "readings the broker acknowledged to the fleet"
points_are_all() { [ "$(smoke_points)" = "$total" ]; }
if ! gg_wait_until 60 points_are_all; then
    fail "InfluxDB holds $(smoke_points) of $total readings after two kill -9" "$work/gridgate.log"
fi
echo "all $total readings are in InfluxDB after two kill -9 and restarts"

kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=
assert_eq "$status" 0 "gridgate's exit status after SIGTERM"
echo "PASS"
