#!/usr/bin/env bash
# Rules in the running daemon: a SIGHUP reload takes new rules without a
# restart and keeps the old ones when a file is broken (naming file:line),
# and a deadman rule fires for a device that has gone silent.
#
#   test_reload_deadman.sh GRIDGATE_BIN SOURCE_DIR
set -euo pipefail

gridgate=$1
src=$2
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work reload gateway_pid

gg_start_mosquitto "$work/mosquitto"
mqtt_port=$MOSQUITTO_PORT
mkdir -p "$work/rules" "$work/var"

# One device type is made to look silent fast: door sensors' heartbeat is
# one second, and the rule fires after two.
cat >"$work/rules/a.lua" <<'LUA'
rule{ name = "test.a", match = { type = "smoke" },
      on_reading = function(r)
          if r.fields.smoke and r.fields.smoke > 0.5 then
              open_case{ category = "test.a", severity = "minor", title = "A " .. r.device }
          end
      end }
rule{ name = "test.silent", match = { type = "door" }, silence = { factor = 2 },
      on_silence = function(d)
          open_case{ category = "device.silent", severity = "minor", role = "manager",
                     title = "silent " .. d.device }
      end }
LUA
cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-reload }
influx:   { enabled: false }
store:    { path: "var/cases.db" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "rules", workers: 2, heartbeats: "door=1s,default=12h", silence_grace_s: 0 }
gateway:  { stats_interval_s: 1 }
YAML

"$gridgate" run -c "$work/gridgate.yaml" >"$work/gridgate.log" 2>&1 &
gateway_pid=$!
gg_wait_until 15 grep -q "subscribed to" "$work/gridgate.log" ||
    fail "gridgate did not subscribe" "$work/gridgate.log"

publish() { mosquitto_pub -p "$mqtt_port" -q 1 -t "devices/$1/telemetry" -m "$2"; }
cases_db() { sqlite3 "$work/var/cases.db" "$1"; }
db_is() { [ "$(cases_db "$1")" = "$2" ]; }

echo "deadman: door sensors silent for 2 s open device.silent cases"
doors=$(awk -F, '$2 == "door"' "$src/config/district/devices.csv" | wc -l)
gg_wait_until 20 db_is "SELECT count(*) FROM cases WHERE rule = 'test.silent'" "$doors" ||
    fail "expected $doors silent-door cases, got $(cases_db "SELECT count(*) FROM cases WHERE rule = 'test.silent'")" "$work/gridgate.log"
assert_eq "$(cases_db "SELECT count(*) FROM cases WHERE rule = 'test.silent' AND subject NOT LIKE 'door-%'")" 0 \
    "only door sensors fall silent this fast"

echo "the first rules run"
publish smoke-000001 '{"smoke": 0.9}'
gg_wait_until 10 db_is "SELECT count(*) FROM cases WHERE rule = 'test.a'" 1 ||
    fail "rule test.a did not open its case" "$work/gridgate.log"

echo "SIGHUP with a new rule: taken without a restart"
cat >"$work/rules/b.lua" <<'LUA'
rule{ name = "test.b", match = { type = "smoke" },
      on_reading = function(r)
          if r.fields.smoke and r.fields.smoke > 0.5 then
              open_case{ category = "test.b", severity = "major", title = "B " .. r.device }
          end
      end }
LUA
kill -HUP "$gateway_pid"
gg_wait_until 10 grep -q "reloaded rules in use" "$work/gridgate.log" ||
    fail "the reload was not taken" "$work/gridgate.log"
publish smoke-000002 '{"smoke": 0.9}'
gg_wait_until 10 db_is "SELECT count(*) FROM cases WHERE rule = 'test.b'" 1 ||
    fail "the reloaded rule test.b did not run" "$work/gridgate.log"

echo "SIGHUP with a broken file: refused with file:line, the running rules stay"
printf 'rule{ name = "test.c", on_reading = function(r) end\n' >"$work/rules/c.lua"
kill -HUP "$gateway_pid"
gg_wait_until 10 grep -q "reload refused" "$work/gridgate.log" ||
    fail "the broken reload was not refused" "$work/gridgate.log"
grep -q "rules/c.lua:2:" "$work/gridgate.log" || fail "the refusal does not name c.lua:2" "$work/gridgate.log"
publish smoke-000003 '{"smoke": 0.9}'
gg_wait_until 10 db_is "SELECT count(*) FROM cases WHERE rule = 'test.b' AND subject = 'smoke-000003'" 1 ||
    fail "the running rules stopped after a refused reload" "$work/gridgate.log"

echo "reload_deadman: silent-door cases expected $doors, open" \
    "$(cases_db "SELECT count(*) FROM cases WHERE rule = 'test.silent'");" \
    "reloads $(grep -c "\[rules\] reload: " "$work/gridgate.log") taken," \
    "$(grep -c "reload refused" "$work/gridgate.log") refused; rule cases test.a 1, test.b" \
    "$(cases_db "SELECT count(*) FROM cases WHERE rule = 'test.b'") (the load case: integration.fault_reload_under_load)"
kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=
assert_eq "$status" 0 "gridgate's exit status after SIGTERM"
echo "PASS"
