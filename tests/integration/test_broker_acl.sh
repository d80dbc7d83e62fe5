#!/usr/bin/env bash
# The shipped mosquitto ACL (config/mosquitto/acl) with a real broker: a
# device publishes under its own devices/{id}/ and reaches gridgate's
# user; the same device publishing as another device, or anyone without a
# password, reaches nobody; gridgate's user may publish case notices and a
# grid's terminal reads only its own grid's.
#
#   test_broker_acl.sh SOURCE_DIR
set -euo pipefail

src=$1
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work acl sub_pid grid_sub_pid
chmod 755 "$work" # mosquitto, started as root, reads as user mosquitto

passwd=$work/passwd
touch "$passwd"
for user in gridgate smoke-000001 smoke-000002 110101001001001; do
    mosquitto_passwd -b "$passwd" "$user" "pw-$user"
done
chmod 644 "$passwd"
cp "$src/config/mosquitto/acl" "$work/acl"
chmod 644 "$work/acl"
GG_MOSQUITTO_AUTH="allow_anonymous false
password_file $passwd
acl_file $work/acl" gg_start_mosquitto "$work/mosquitto"
port=$MOSQUITTO_PORT

pub() { # USER TOPIC MESSAGE
    mosquitto_pub -p "$port" -q 1 -u "$1" -P "pw-$1" -t "$2" -m "$3" 2>>"$work/pub.err" || true
}

mosquitto_sub -p "$port" -q 1 -u gridgate -P pw-gridgate -t 'devices/#' -v >"$work/gridgate.out" &
sub_pid=$!
mosquitto_sub -p "$port" -q 1 -u 110101001001001 -P pw-110101001001001 -t 'grids/#' -v \
    >"$work/grid.out" &
grid_sub_pid=$!
sleep 0.5

pub smoke-000001 devices/smoke-000001/telemetry '{"smoke": 0.01, "n": 1}'
pub smoke-000001 devices/smoke-000002/telemetry '{"smoke": 0.99, "n": "forged"}'
pub smoke-000001 devices/smoke-000001/status online
mosquitto_pub -p "$port" -q 1 -t devices/smoke-000002/telemetry -m '{"anonymous": 1}' \
    2>>"$work/pub.err" || true
pub smoke-000002 devices/smoke-000002/telemetry '{"smoke": 0.02, "n": 2}'
pub gridgate grids/110101001001001/cases '{"event": "opened"}'
pub gridgate grids/110101001001002/cases '{"event": "opened elsewhere"}'
pub smoke-000001 grids/110101001001001/cases '{"event": "forged notice"}'

gg_wait_until 5 grep -q '"n": 2' "$work/gridgate.out" ||
    fail "the second device's own reading did not arrive" "$work/mosquitto/mosquitto.log"
sleep 0.5
got=$(cat "$work/gridgate.out")
assert_contains "$got" 'devices/smoke-000001/telemetry {"smoke": 0.01, "n": 1}' "a device's own reading"
assert_contains "$got" 'devices/smoke-000001/status online' "a device's own status"
case $got in *forged* | *anonymous*) fail "a forged or anonymous reading reached gridgate: $got" ;; esac
[ "$(wc -l <"$work/gridgate.out")" = 3 ] || fail "expected exactly 3 messages, got: $got"
grid=$(cat "$work/grid.out")
assert_eq "$grid" 'grids/110101001001001/cases {"event": "opened"}' "the grid terminal's notices"
echo "PASS: 3 of 3 genuine messages delivered, 2 forged, 1 anonymous and 1 other-grid message blocked"
