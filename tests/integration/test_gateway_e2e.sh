#!/usr/bin/env bash
# One reading's whole path through real servers: mosquitto_pub -> mosquitto
# -> gridgate (decode, district, Lua rules, SQLite cases) -> InfluxDB.
#
#   test_gateway_e2e.sh GRIDGATE_BIN SOURCE_DIR
#
# (a) a smoke reading over the shipped rule's threshold lands in InfluxDB
#     with the right measurement, tags and field types, and opens one case
#     in the device's grid, dispatched to the firefighter;
# (b) a normal reading lands and opens nothing;
# (c) a malformed payload is counted and logged with the device, and a
#     good reading right after it still lands;
# and SIGTERM stops the gateway cleanly (exit 0, store closed).
set -euo pipefail

gridgate=$1
src=$2
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work e2e gateway_pid

gg_start_servers

cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-e2e, qos: 1 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
gateway:  { stats_interval_s: 1 }
YAML
mkdir -p "$work/var"

echo "gridgate check: the config is good; a bad topic filter is named before any start"
"$gridgate" check -c "$work/gridgate.yaml" >"$work/check.out" 2>&1 ||
    fail "gridgate check refused a good config" "$work/check.out"
sed 's|qos: 1 }|qos: 1, topics: "devices/#/telemetry" }|' "$work/gridgate.yaml" >"$work/bad.yaml"
if "$gridgate" check -c "$work/bad.yaml" >"$work/check.out" 2>&1; then
    fail "gridgate check took a bad topic filter" "$work/check.out"
fi
grep -q 'mqtt.topics: "devices/#/telemetry"' "$work/check.out" ||
    fail "gridgate check did not name the bad filter" "$work/check.out"

"$gridgate" run -c "$work/gridgate.yaml" >"$work/gridgate.log" 2>&1 &
gateway_pid=$!
gg_wait_until 15 grep -q "subscribed to" "$work/gridgate.log" ||
    fail "gridgate did not subscribe" "$work/gridgate.log"

publish() { mosquitto_pub -p "$mqtt_port" -q 1 -t "devices/$1/telemetry" -m "$2"; }
query() { gg_influx_query "$influx_port" gridgate "$1"; }
cases_db() { sqlite3 "$work/var/cases.db" "$1"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# influx_has QUERY PATTERN: the query's answer matches the grep pattern.
influx_has() { query "$1" | grep -q "$2"; }
db_is() { [ "$(cases_db "$1")" = "$2" ]; }

# The device's grid, from the sample district's devices file.
grid=$(awk -F, '$1 == "smoke-000001" { print $3 }' "$src/config/district/devices.csv")
[ -n "$grid" ] || fail "smoke-000001 has no grid_id in the sample district"
community=${grid:0:12}
street=${grid:0:9}

echo "(a) alarm reading from smoke-000001 in grid $grid"
ts=$(now_ms)
publish smoke-000001 "{\"ts\": $ts, \"smoke\": 0.31, \"temp\": 41.5, \"battery\": 87, \"alarm\": true}"
gg_wait_until 10 influx_has "SELECT smoke FROM smoke WHERE device = 'smoke-000001'" 0.31 ||
    fail "the alarm reading did not reach InfluxDB" "$work/gridgate.log"
point=$(query "SELECT * FROM smoke WHERE device = 'smoke-000001' AND time = ${ts}ms")
assert_contains "$point" "\"grid\",\"smoke\",\"street\",\"temp\"" "columns of the smoke point"
assert_contains "$point" "\"$community\",\"smoke-000001\",\"$grid\",0.31,\"$street\",41.5" "tags and values"
fields=$(query "SHOW FIELD KEYS FROM smoke")
assert_contains "$fields" '["alarm","boolean"]' "alarm is a boolean field"
assert_contains "$fields" '["battery","float"]' "battery is a float field"
assert_contains "$fields" '["smoke","float"]' "smoke is a float field"
gg_wait_until 10 db_is "SELECT count(*) FROM cases WHERE subject = 'smoke-000001'" 1 ||
    fail "no case opened for smoke-000001" "$work/gridgate.log"
row=$(cases_db "SELECT grid_id, state, category, assignee_role FROM cases WHERE subject = 'smoke-000001'")
assert_eq "$row" "$grid|dispatched|fire.smoke|firefighter" "the case's grid, state, category and role"
history=$(cases_db "SELECT coalesce(from_state, '-') || '>' || to_state FROM case_history ORDER BY id" | tr '\n' ' ')
assert_eq "$history" "->reported reported>dispatched " "the case's history"
gg_wait_until 10 influx_has "SELECT count(case_id) FROM case_event WHERE grid = '$grid'" '"values":\[\["[^"]*",2\]\]' ||
    fail "the case's two events did not reach InfluxDB" "$work/gridgate.log"

echo "(b) normal reading from smoke-000002"
ts=$(now_ms)
publish smoke-000002 "{\"ts\": $ts, \"smoke\": 0.01, \"temp\": 22.0, \"battery\": 90, \"alarm\": false}"
gg_wait_until 10 influx_has "SELECT smoke FROM smoke WHERE device = 'smoke-000002' AND time = ${ts}ms" 0.01 ||
    fail "the normal reading did not reach InfluxDB" "$work/gridgate.log"
assert_eq "$(cases_db "SELECT count(*) FROM cases")" 1 "a normal reading opens no case"

echo "(c) malformed payload from smoke-000003, then a good one"
publish smoke-000003 '{"smoke": 0.2, "temp": '
ts=$(now_ms)
publish smoke-000003 "{\"ts\": $ts, \"smoke\": 0.02, \"temp\": 23.0, \"battery\": 70, \"alarm\": false}"
gg_wait_until 10 influx_has "SELECT smoke FROM smoke WHERE device = 'smoke-000003' AND time = ${ts}ms" 0.02 ||
    fail "the good reading after a malformed one did not reach InfluxDB" "$work/gridgate.log"
grep -q "device smoke-000003: telemetry bad payload" "$work/gridgate.log" ||
    fail "the malformed payload was not logged with its device" "$work/gridgate.log"
gg_wait_until 10 influx_has 'SELECT last(bad_payload) FROM gridgate' '"values":\[\["[^"]*",1\]\]' ||
    fail "the malformed payload was not counted in the gridgate measurement" "$work/gridgate.log"

echo "SIGTERM stops the gateway cleanly"
kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=
assert_eq "$status" 0 "gridgate's exit status after SIGTERM"
grep -q "stopped" "$work/gridgate.log" || fail "no 'stopped' line in the log" "$work/gridgate.log"
[ ! -s "$work/var/cases.db-wal" ] || fail "the case store was not closed cleanly (WAL left behind)"
assert_eq "$(sqlite3 "$work/var/cases.db" 'PRAGMA integrity_check')" ok "case store integrity"
echo "(d) a liaison's backtest: replaying what InfluxDB holds through the rules"
replay=$("$gridgate" rules replay -c "$work/gridgate.yaml" \
    --from-influx "SELECT * FROM smoke WHERE time > now() - 1h" 2>"$work/replay.err") ||
    fail "rules replay --from-influx failed: $(cat "$work/replay.err")"
assert_contains "$replay" "smoke-000001 fire.smoke open_case category=fire.smoke" \
    "the alarm, replayed from InfluxDB, opens the case again"
assert_contains "$replay" "3 readings, " "every smoke reading in InfluxDB was replayed"
assert_contains "$replay" " 0 errors" "nothing in InfluxDB failed to replay"
"$gridgate" rules replay -c "$work/gridgate.yaml" --from-influx "SELECT * FROM nosuch WHERE" \
    >"$work/replay.out" 2>"$work/replay.err" && fail "a bad InfluxQL query was accepted"
grep -q "InfluxDB: error parsing query" "$work/replay.err" ||
    fail "a bad query's error does not say what InfluxDB said: $(cat "$work/replay.err")"
echo "PASS"
