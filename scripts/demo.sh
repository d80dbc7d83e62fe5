#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, starts
# mosquitto and influxd on loopback (the ports in config/gridgate.yaml),
# runs the gateway on the sample district and the device simulator against
# it, and shows readings and cases as they arrive. Ctrl-C stops everything
# it started.
#
#   DEMO_RATE=20       readings per second from the simulator
#   DEMO_SECONDS=0     stop by itself after this many seconds (0 = never)
#   DEMO_DISTRICT=sample  or full: the generated 350,000-device district
#                      (made in var/district-full the first time)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

district=${DEMO_DISTRICT:-sample}
case $district in
sample)
    config=config/gridgate.yaml
    devices=config/district/devices.csv
    db=var/gridgate.db # store.path in config/gridgate.yaml
    ;;
full)
    config=config/gridgate-full.yaml
    devices=var/district-full/devices.csv
    db=var/gridgate-full.db # store.path in config/gridgate-full.yaml
    ;;
*)
    echo "DEMO_DISTRICT must be sample or full, not $district" >&2
    exit 2
    ;;
esac
rate=${DEMO_RATE:-20}
seconds=${DEMO_SECONDS:-0}
state=var/demo
mqtt_port=1883
influx_port=8086
api_port=8080 # api.port in config/gridgate.yaml

scripts/deps.sh
echo "== building"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" -- --no-print-directory -s

if [ "$district" = full ] && [ ! -s "$devices" ]; then
    echo "== generating the full district (seed 1) in var/district-full"
    build/gridsim district --seed 1 --out var/district-full
fi

# shellcheck source=servers.sh
. scripts/servers.sh
scripts/servers.sh stop "$state" # a previous run's leftovers, if any
echo "== starting mosquitto and influxd on 127.0.0.1"
scripts/servers.sh start "$state" "$mqtt_port" "$influx_port"

gateway_pid=
sim_pid=
stop_all() {
    trap - EXIT INT TERM
    echo
    echo "== stopping"
    gg_stop_pid "$sim_pid"
    gg_stop_pid "$gateway_pid"
    scripts/servers.sh stop "$state"
    exit 0
}
trap stop_all EXIT INT TERM

# The API needs a token: the demo makes a district commander's once and
# keeps it next to the servers' data (a demo's shortcut: a real token is
# shown once and kept by its owner).
token_file=$state/demo-token
if [ ! -s "$token_file" ] || [ ! -s var/tokens.yaml ]; then
    echo "== making an API token for the demo (district commander) in var/tokens.yaml"
    (umask 077 && build/gridgate token new --role commander --scope district -c "$config" \
        --name demo >"$token_file")
fi
token=$(cat "$token_file")

echo "== starting gridgate run -c $config (log: $state/gridgate.log)"
build/gridgate run -c "$config" >"$state/gridgate.log" 2>&1 &
gateway_pid=$!
if ! gg_wait_until 15 grep -q "subscribed to" "$state/gridgate.log"; then
    echo "gridgate did not come up; its log:" >&2
    cat "$state/gridgate.log" >&2
    exit 1
fi

duration_opt=()
[ "$seconds" = 0 ] || duration_opt=(--duration "$seconds")
echo "== starting the simulator: $rate readings/s from $devices, an alarm every 25 smoke readings"
build/gridsim run --devices "$devices" --broker "tcp://127.0.0.1:$mqtt_port" --rate "$rate" \
    --alarm-every 25 --quiet "${duration_opt[@]}" &
sim_pid=$!

cat <<EOT

The web console: http://127.0.0.1:$api_port/console/ (sign in with the token in $state/demo-token)
The HTTP API on 127.0.0.1:$api_port:
  curl -s -H "Authorization: Bearer \$(cat $state/demo-token)" 'http://127.0.0.1:$api_port/api/v1/cases?limit=5'
  curl -s -H "Authorization: Bearer \$(cat $state/demo-token)" 'http://127.0.0.1:$api_port/api/v1/stats?group=street'
  mosquitto_sub -p $mqtt_port -t 'grids/+/cases' -v      # the case notices

Query while it runs (or after):
  influx -port $influx_port -database gridgate -execute 'SELECT * FROM smoke ORDER BY time DESC LIMIT 5'
  influx -port $influx_port -database gridgate -execute 'SELECT * FROM case_event ORDER BY time DESC LIMIT 5'
  sqlite3 $db 'SELECT id, state, grid_id, category, severity, assignee_role, assignee, title FROM cases'
  sqlite3 $db 'SELECT case_id, actor, from_state, to_state, note FROM case_history'
  tail -f $root/$state/gridgate.log
Ctrl-C stops the simulator, gridgate, mosquitto and influxd.

EOT

influx_count() {
    gg_influx_query "$influx_port" gridgate "SELECT count(battery) FROM smoke" |
        sed -n 's/.*"values":\[\["[^"]*",\([0-9]*\)\]\].*/\1/p'
}

# The newest case, as the HTTP API shows it to the district's commander.
latest_case() {
    curl -sf -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$api_port/api/v1/cases?limit=1" >"$state/latest.json" || return 1
    sqlite3 -separator ' ' :memory: "SELECT '#' || json_extract(j, '\$.cases[0].id'),
        json_extract(j, '\$.cases[0].state'), 'grid', json_extract(j, '\$.cases[0].grid_id'), '->',
        coalesce(json_extract(j, '\$.cases[0].assignee_role'), '-'),
        coalesce(json_extract(j, '\$.cases[0].assignee'), ''), '|', json_extract(j, '\$.cases[0].title')
        FROM (SELECT readfile('$state/latest.json') AS j) WHERE json_extract(j, '\$.cases[0].id') IS NOT NULL"
}

started=$SECONDS
while kill -0 "$gateway_pid" 2>/dev/null; do
    sleep 5
    points=$(influx_count || true)
    cases=$(sqlite3 "$db" "SELECT count(*) FROM cases" 2>/dev/null || echo "?")
    latest=$(latest_case || true)
    printf '[%4ds] smoke readings in InfluxDB: %s  cases: %s  latest: %s\n' \
        $((SECONDS - started)) "${points:-0}" "$cases" "${latest:-none yet}"
    if [ "$seconds" != 0 ] && ! kill -0 "$sim_pid" 2>/dev/null; then
        sleep 2 # let the last readings reach InfluxDB
        break
    fi
done
kill -0 "$gateway_pid" 2>/dev/null || { echo "gridgate exited; its log:"; tail -n 20 "$state/gridgate.log"; }
