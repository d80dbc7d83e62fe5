#!/usr/bin/env bash
# shellcheck disable=SC2016 # the grep patterns below hold a literal $
# The Grafana dashboards against real data: every InfluxQL query of every
# panel, variable and annotation in config/grafana/dashboards runs against
# an InfluxDB that gridgate filled from a simulated district, and every
# panel that should show data does.
#
#   test_dashboards.sh GRIDGATE_BIN GRIDSIM_BIN DASHBOARD_QUERIES_BIN SOURCE_DIR
#
# Grafana is not installable here; DASHBOARD_QUERIES_BIN (dashboard_queries.c)
# does what Grafana would: resolves the template variables with their own
# queries, fills in $timeFilter, $__interval and the variables, and runs the
# queries over HTTP.
#
# The data: the sample district (config/district) plus five test devices
# in its first grid (a gas detector, a camera, a door, a water and a
# temperature sensor; the sample has none there), so that Grid detail, which
# opens on the first street, community and grid, has every device type;
# `gridsim run` with alarms through mosquitto and gridgate (shipped rules,
# stats every second), and one status message. Before the real check, the
# checker must fail on a broken dashboard, naming each broken panel.
set -euo pipefail

gridgate=$1
gridsim=$2
checker=$3
src=$4
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work dashboards gateway_pid

dashboards=("$src"/config/grafana/dashboards/*.json)
[ -f "${dashboards[0]}" ] || fail "no dashboards in $src/config/grafana/dashboards"
echo "the dashboards use the data source the provisioning file defines"
ds_yaml=$src/config/grafana/provisioning/datasources/gridgate.yaml
grep -q '^ *uid: gridgate-influx$' "$ds_yaml" || fail "$ds_yaml does not define uid gridgate-influx"
grep -q '^ *path: ' "$src/config/grafana/provisioning/dashboards/gridgate.yaml" ||
    fail "the dashboard provider names no path"

gg_start_servers

grid=$(awk -F, 'NR == 2 { print $3 }' "$src/config/district/devices.csv")
[ -n "$grid" ] || fail "the sample district's first device has no grid_id"
{
    cat "$src/config/district/devices.csv"
    echo "gas-dash01,gas,$grid,39.97720,116.37110,dashboard test: gas detector"
    echo "camera-dash01,camera,$grid,39.97730,116.37120,dashboard test: camera"
    echo "door-dash01,door,$grid,39.97740,116.37130,dashboard test: door sensor"
    echo "water-dash01,water,$grid,39.97750,116.37140,dashboard test: water level"
    echo "temperature-dash01,temperature,$grid,39.97760,116.37150,dashboard test: temperature"
} >"$work/devices.csv"
n_devices=$(($(wc -l <"$work/devices.csv") - 1))
n_smoke=$(awk -F, 'NR > 1 && $2 == "smoke"' "$work/devices.csv" | wc -l)

cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-dashboards, qos: 1 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$work/devices.csv" }
rules:    { dir: "$src/rules" }
api:      { enabled: false }
gateway:  { stats_interval_s: 1 }
YAML
mkdir -p "$work/var"

"$gridgate" run -c "$work/gridgate.yaml" >"$work/gridgate.log" 2>&1 &
gateway_pid=$!
gg_wait_until 15 grep -q "subscribed to" "$work/gridgate.log" ||
    fail "gridgate did not subscribe" "$work/gridgate.log"

query() { gg_influx_query "$influx_port" gridgate "$1"; }
# influx_has QUERY PATTERN: the query's answer matches the grep -E pattern.
influx_has() { query "$1" | grep -Eq "$2"; }
# health_points: how many gridgate health points InfluxDB holds.
health_points() {
    query 'SELECT count("readings_in") FROM "gridgate"' |
        sed -n 's/.*"values":\[\["[^"]*",\([0-9]*\)\]\].*/\1/p'
}

rounds=3
echo "gridsim: $rounds rounds over $n_devices devices, every 10th smoke reading an alarm"
"$gridsim" run --devices "$work/devices.csv" --broker "tcp://127.0.0.1:$mqtt_port" \
    --count $((rounds * n_devices)) --rate 400 --alarm-every 10 --seed 7 --quiet \
    >"$work/gridsim.out" 2>&1 || fail "gridsim run failed" "$work/gridsim.out"
mosquitto_pub -p "$mqtt_port" -q 1 -t "devices/smoke-000001/status" -m online

echo "waiting for the readings, case events and health points in InfluxDB"
gg_wait_until 30 influx_has 'SELECT count("battery") FROM "smoke"' "\"values\":\[\[[^]]*,$((rounds * n_smoke))\]\]" ||
    fail "the smoke readings did not all reach InfluxDB" "$work/gridgate.log"
gg_wait_until 30 influx_has "SELECT count(\"case_id\") FROM \"case_event\" WHERE \"grid\" = '$grid'" '"values"' ||
    fail "no case event for grid $grid in InfluxDB" "$work/gridgate.log"
gg_wait_until 15 influx_has 'SELECT count("online") FROM "device_status"' '"values"' ||
    fail "the status message did not reach InfluxDB" "$work/gridgate.log"
# The case figures and the health come every second: wait for a few more
# reports after the last reading, so that every panel has its latest state
# and the rates have two intervals to differ over.
start_points=$(health_points)
have_more_points() { [ "$(health_points)" -ge $((${start_points:-0} + 4)) ]; }
gg_wait_until 20 have_more_points || fail "no health points arrive in InfluxDB" "$work/gridgate.log"
for m in case_open case_rates; do
    gg_wait_until 5 influx_has 'SHOW MEASUREMENTS' "\"$m\"" ||
        echo "note: InfluxDB has no measurement $m: the panels that read it will fail"
done

echo "the checker catches broken dashboards"
cat >"$work/broken.json" <<'JSON'
{
  "uid": "broken", "title": "broken",
  "annotations": {"list": [
    {"name": "Wrong source", "datasource": {"type": "influxdb", "uid": "other"},
     "query": "SELECT \"title\" FROM \"case_event\" WHERE $timeFilter"},
    {"name": "Two queries", "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "query": "SELECT \"title\" FROM \"case_event\" WHERE $timeFilter",
     "target": {"query": "SELECT \"event\" FROM \"case_event\" WHERE $timeFilter"}}]},
  "panels": [
    {"id": 1, "type": "timeseries", "title": "Bad syntax",
     "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "targets": [{"refId": "A", "rawQuery": true, "query": "SELECT mean(smoke FROM smoke WHERE $timeFilter"}]},
    {"id": 2, "type": "timeseries", "title": "No such measurement",
     "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "targets": [{"refId": "A", "rawQuery": true, "query": "SELECT mean(\"smoke\") FROM \"smok\" WHERE $timeFilter"}]},
    {"id": 3, "type": "timeseries", "title": "No such field",
     "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "targets": [{"refId": "A", "rawQuery": true, "query": "SELECT last(\"smoke\"), last(\"smoek\") FROM \"smoke\" WHERE $timeFilter"}]},
    {"id": 4, "type": "timeseries", "title": "Empty but allowed", "description": "Rare. (may be empty)",
     "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "targets": [{"refId": "A", "rawQuery": true, "query": "SELECT mean(\"smoke\") FROM \"smok\" WHERE $timeFilter"}]},
    {"id": 5, "type": "row", "title": "collapsed", "collapsed": true, "panels": [
      {"id": 6, "type": "table", "title": "Whole history",
       "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
       "targets": [{"refId": "A", "rawQuery": true, "query": "SELECT * FROM \"smoke\""}]},
      {"id": 7, "type": "stat", "title": "Unknown variable",
       "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
       "targets": [{"refId": "B", "rawQuery": true, "query": "SELECT last(\"smoke\") FROM \"smoke\" WHERE \"grid\" = '$gird' AND $timeFilter"}]}]},
    {"id": 8, "type": "stat", "title": "Other data source",
     "datasource": {"type": "influxdb", "uid": "someone-else"},
     "targets": [{"refId": "A", "rawQuery": true, "query": "SELECT last(\"smoke\") FROM \"smoke\" WHERE $timeFilter"}]}
  ]
}
JSON
status=0
"$checker" --url "http://127.0.0.1:$influx_port" --db gridgate --interval 2s "$work/broken.json" \
    >"$work/broken.out" 2>&1 || status=$?
assert_eq "$status" 1 "the checker's exit status on a broken dashboard"
for expect in 'FAIL broken.json: panel "Bad syntax" \[A\]: InfluxDB: error parsing query' \
    'FAIL broken.json: panel "No such measurement" \[A\]: no series' \
    'FAIL broken.json: panel "No such field" \[A\]: column "last_1" is null in every row' \
    'ok   panel "Empty but allowed" \[A\]: no series \(allowed' \
    'FAIL broken.json: panel "Whole history" \[A\]: no \$timeFilter' \
    'FAIL broken.json: panel "Unknown variable" \[B\]: unknown variable \$gird' \
    'FAIL broken.json: panel "Other data source" \[A\]: data source "someone-else"' \
    'FAIL broken.json: annotation "Wrong source": data source "other"' \
    'FAIL broken.json: annotation "Two queries": "query" and "target"."query" differ' \
    ' 8 failed'; do
    grep -Eq "$expect" "$work/broken.out" || fail "the checker's output lacks /$expect/" "$work/broken.out"
done

cat >"$work/broken-vars.json" <<'JSON'
{
  "uid": "broken-vars", "title": "broken variables",
  "templating": {"list": [
    {"name": "grid", "type": "query", "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "query": "SHOW TAG VALUES WITH KEY = \"grid\" WHERE \"street\" =~ /^$street$/"},
    {"name": "street", "type": "query", "datasource": {"type": "influxdb", "uid": "gridgate-influx"},
     "query": "SHOW TAG VALUES WITH KEY = \"no_such_tag\""}]},
  "panels": []
}
JSON
status=0
"$checker" --url "http://127.0.0.1:$influx_port" --db gridgate "$work/broken-vars.json" \
    >"$work/broken-vars.out" 2>&1 || status=$?
assert_eq "$status" 1 "the checker's exit status on a variable that offers nothing"
grep -q 'FAIL broken-vars.json: variable \$street: offers no value' "$work/broken-vars.out" ||
    fail "the checker did not name the empty variable" "$work/broken-vars.out"
grep -q 'ok   variable \$grid' "$work/broken-vars.out" &&
    fail "the checker resolved \$grid before \$street, which it depends on" "$work/broken-vars.out"

echo "every dashboard query against the data"
status=0
"$checker" --url "http://127.0.0.1:$influx_port" --db gridgate --range 1h --interval 2s \
    "${dashboards[@]}" >"$work/check.out" 2>&1 || status=$?
cat "$work/check.out"
[ "$status" = 0 ] || fail "dashboard queries failed (exit $status): see the FAIL lines above" "$work/gridgate.log"
grep -q "variable \$grid = \"$grid\"" "$work/check.out" ||
    fail "Grid detail did not open on grid $grid, the one with the test devices"
echo "PASS"
