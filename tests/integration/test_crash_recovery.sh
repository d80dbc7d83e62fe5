#!/usr/bin/env bash
# Nothing acknowledged is lost when the gateway is killed: QoS 1 readings
# stream in from a Paho fleet, gridgate is killed with SIGKILL mid-stream
# and started again, and at the end every reading the broker acknowledged
# to the fleet is in InfluxDB, once (a replay overwrites the same point),
# and every case the rules should open is open, once: crash.alarm opens
# one case per detector on its alarms (every 7th reading, so all 240
# detectors alarm), and a replay after a kill only raises its count.
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
rules:    { dir: "rules" }
gateway:  { stats_interval_s: 1 }
YAML
mkdir -p "$work/var" "$work/rules"
# The shipped rules, and one whose cases this test can count exactly.
for f in "$src"/rules/*.lua; do
    case $f in *_test.lua) ;; *) cp "$f" "$work/rules/" ;; esac
done
cat >"$work/rules/crash_alarm.lua" <<'LUA'
rule{ name = "crash.alarm", match = { type = "smoke" },
      on_reading = function(r)
          if r.fields.alarm == true then
              open_case{ category = "crash.alarm", severity = "minor", title = "alarm " .. r.device }
          end
      end }
LUA
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
    --rate 800 --count "$total" --alarm-every 7 --quiet >"$work/gridsim.out" 2>&1 &
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
alarms=$(sed -n 's/^summary: .*, alarms \([0-9]*\),.*/\1/p' "$work/gridsim.out")
detectors=$(($(wc -l <"$work/smoke.csv") - 1))
gg_influx_query "$influx_port" gridgate "SELECT count(battery) FROM smoke GROUP BY device" >"$work/q.json"
in_influx_devices=$(grep -o '"tags":{"device":"[^"]*"}' "$work/q.json" | sort -u | wc -l)
assert_eq "$in_influx_devices" "$detectors" "detectors with readings in InfluxDB"
# Cases: the rule workers catch up (rules lag 0), then one crash.alarm
# case per detector; its counts cover every alarm, and exceed them only by
# alarms handled again after a kill (handled, not yet committed).
rules_caught_up() { grep "\[stats\]" "$work/gridgate.log" | tail -n 1 | grep -q "(rules 0,"; }
gg_wait_until 30 rules_caught_up || fail "the rule workers did not catch up" "$work/gridgate.log"
cases=$(sqlite3 "$work/var/cases.db" "SELECT count(*) FROM cases WHERE rule = 'crash.alarm'")
subjects=$(sqlite3 "$work/var/cases.db" "SELECT count(DISTINCT subject) FROM cases WHERE rule = 'crash.alarm'")
counted=$(sqlite3 "$work/var/cases.db" "SELECT coalesce(sum(count), 0) FROM cases WHERE rule = 'crash.alarm'")
assert_eq "$cases" "$detectors" "crash.alarm cases (one per detector, all alarmed)"
assert_eq "$subjects" "$cases" "crash.alarm cases per detector (a second case is a duplicate)"
[ "$counted" -ge "$alarms" ] || fail "crash.alarm counted $counted of $alarms alarms: some were lost"
echo "crash_recovery: sent $total, acked $acked, in InfluxDB $(smoke_points) ($detectors detectors), lost 0," \
    "duplicates 0 (a replayed point overwrites itself); cases expected $detectors, open $cases," \
    "counting $counted of $alarms alarms ($((counted - alarms)) handled again after the two kill -9)"

kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=
assert_eq "$status" 0 "gridgate's exit status after SIGTERM"
echo "PASS"
