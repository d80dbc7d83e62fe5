#!/usr/bin/env bash
# Rules in the running daemon: a SIGHUP reload takes new rules without a
# restart and keeps the old ones when a file is broken (naming file:line),
# a deadman rule fires for a device that has gone silent, and a case a rule
# left open is cleared by its clear_case{} after a reload that brings the
# rule back and after a restart (the engine is told of the store's open
# cases: clear_case with nothing open is otherwise not passed on).
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
          elseif r.fields.smoke and r.fields.smoke < 0.1 then
              clear_case{}
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
          elseif r.fields.smoke and r.fields.smoke < 0.1 then
              clear_case{}
          end
      end }
LUA
cp "$work/rules/b.lua" "$work/b.lua.keep"
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

reloads_taken() { [ "$(grep -c "reloaded rules in use" "$work/gridgate.log")" -ge "$1" ]; }
cleared() { db_is "SELECT count(*) FROM cases WHERE rule = '$1' AND subject = '$2' AND cleared_at IS NOT NULL" 1; }

echo "a rule a reload brings back clears the case it left open"
rm "$work/rules/b.lua" "$work/rules/c.lua"
kill -HUP "$gateway_pid"
gg_wait_until 10 reloads_taken 4 || fail "the reload without b.lua was not taken" "$work/gridgate.log"
cp "$work/b.lua.keep" "$work/rules/b.lua"
kill -HUP "$gateway_pid"
gg_wait_until 10 reloads_taken 6 || fail "the reload with b.lua back was not taken" "$work/gridgate.log"
publish smoke-000002 '{"smoke": 0.01}'
gg_wait_until 10 cleared test.b smoke-000002 ||
    fail "test.b's case about smoke-000002 was not cleared after the rule came back" "$work/gridgate.log"

echo "after a restart, a case opened before it is cleared by the rule's clear_case"
kill -TERM "$gateway_pid"
wait "$gateway_pid" || fail "gridgate did not stop cleanly" "$work/gridgate.log"
"$gridgate" run -c "$work/gridgate.yaml" >"$work/gridgate-2.log" 2>&1 &
gateway_pid=$!
gg_wait_until 15 grep -q "subscribed to" "$work/gridgate-2.log" ||
    fail "gridgate did not subscribe after the restart" "$work/gridgate-2.log"
grep -q "case(s) opened by rules before this start are open" "$work/gridgate-2.log" ||
    fail "the restart did not note the open cases of rules" "$work/gridgate-2.log"
publish smoke-000001 '{"smoke": 0.01}'
publish smoke-000003 '{"smoke": 0.01}'
gg_wait_until 10 cleared test.a smoke-000001 ||
    fail "test.a's case about smoke-000001 was not cleared after the restart" "$work/gridgate-2.log"
gg_wait_until 10 cleared test.b smoke-000003 ||
    fail "test.b's case about smoke-000003 was not cleared after the restart" "$work/gridgate-2.log"

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
