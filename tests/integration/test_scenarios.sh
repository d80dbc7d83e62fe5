#!/usr/bin/env bash
# integration.scenarios: every `gridsim run --scenario` against a fresh
# gridgate (sample district, shipped rules, real mosquitto, InfluxDB off).
#
#   test_scenarios.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR
#
# gridsim prints, before it publishes, the cases its scenario should
# cause ("expect case rule=R grid=G role=ROLE subject=S") and how many
# messages the gateway should receive ("expect received N"). Once the
# gateway's stats line shows them received, the store's open cases must
# be exactly the expected ones: none missing, none extra. For bad, the
# stats line must count exactly the bad payloads and accept every good
# one.
set -euo pipefail

gridgate=${1:?usage: test_scenarios.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR}
gridsim=${2:?usage: test_scenarios.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR}
src=${3:?usage: test_scenarios.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR}
src=$(cd "$src" && pwd) # the gateway's config names paths relative to itself
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

SEED=${SEED:-7}
SCENARIOS=${SCENARIOS:-fire crowd offline storm bad}

gg_work scenarios gateway_pid sub_pid live_pid
command -v sqlite3 >/dev/null || fail "sqlite3 not found (package sqlite3)"
gg_start_mosquitto "$work/mosquitto"
mqtt_port=$MOSQUITTO_PORT

# subscribed LOG: gridgate is subscribed; exits the test if it died.
subscribed() {
    kill -0 "$gateway_pid" 2>/dev/null || fail "gridgate exited" "$1"
    grep -q "subscribed to" "$1"
}

# start_gateway DIR NAME [COAP_PORT]: a fresh gridgate with its own
# store, journal and MQTT session (client id), so no scenario sees
# another's cases; with COAP_PORT, its CoAP server on that UDP port.
start_gateway() {
    local dir=$1 name=$2 coap="{ enabled: false }"
    [ -z "${3:-}" ] || coap="{ enabled: true, listen: \"127.0.0.1\", port: $3, dtls_port: $(gg_free_udp_port) }"
    mkdir -p "$dir/var"
    cat >"$dir/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-$name-$$, qos: 1 }
coap:     $coap
influx:   { enabled: false }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
gateway:  { stats_interval_s: 1 }
YAML
    "$gridgate" run -c "$dir/gridgate.yaml" >"$dir/gridgate.log" 2>&1 &
    gateway_pid=$!
    gg_wait_until 15 subscribed "$dir/gridgate.log" ||
        fail "$name: gridgate did not subscribe" "$dir/gridgate.log"
    if [ -n "${3:-}" ]; then
        gg_wait_until 10 grep -q "\[coap\] listening on" "$dir/gridgate.log" ||
            fail "$name: gridgate did not start its CoAP server" "$dir/gridgate.log"
    fi
}

stop_gateway() {
    gg_stop_pid "$gateway_pid"
    gateway_pid=
}

# stat NAME LOG: the last value of "NAME N" in the gateway's stats lines.
stat() {
    grep -o "$1 [0-9]*" "$2" | tail -n 1 | awk '{ print $NF }'
}
received_at_least() { [ "$(stat received "$1")" -ge "$2" ] 2>/dev/null; }

# open_cases DB: the open cases as gridsim's expect lines, sorted.
open_cases() {
    sqlite3 "$1" "SELECT 'rule=' || rule || ' grid=' || grid_id || ' role=' ||
                  coalesce(assignee_role, '-') || ' subject=' || coalesce(subject, '-')
                  FROM cases WHERE state NOT IN ('closed', 'cancelled');" | sort
}
count_at_least() { [ "$(open_cases "$1" | wc -l)" -ge "$2" ]; }

# run_scenario LABEL SCENARIO [GRIDSIM_ARGS...]: a fresh gateway (with
# CoAP when the arguments say --transport coap), the scenario, then the
# store's open cases compared with gridsim's expectations.
run_scenario() {
    local label=$1 sc=$2 coap_port=
    shift 2
    local dir="$work/$label"
    case " $* " in *" coap "*) coap_port=$(gg_free_udp_port) ;; esac
    start_gateway "$dir" "$label" "$coap_port"
    "$gridsim" run --scenario "$sc" --seed "$SEED" --devices "$src/config/district/devices.csv" \
        --broker "tcp://127.0.0.1:$mqtt_port" ${coap_port:+--coap "coap://127.0.0.1:$coap_port"} \
        "$@" >"$dir/gridsim.out" 2>"$dir/gridsim.err" ||
        fail "$label: gridsim exited $?" "$dir/gridsim.err"

    sed -n 's/^expect case //p' "$dir/gridsim.out" | sort >"$dir/expected"
    n_expected=$(wc -l <"$dir/expected")
    received=$(sed -n 's/^expect received //p' "$dir/gridsim.out")
    [ "$n_expected" -gt 0 ] || fail "$label: gridsim expects no case" "$dir/gridsim.out"
    [ -n "$received" ] || fail "$label: gridsim did not say what the gateway should receive" \
        "$dir/gridsim.out"

    # Everything received (a stats line after the last message), the
    # expected number of cases there, then one more stats interval for
    # any extra case to show up.
    gg_wait_until 20 received_at_least "$dir/gridgate.log" "$received" ||
        fail "$label: gateway received $(stat received "$dir/gridgate.log"), expected $received" \
            "$dir/gridgate.log"
    gg_wait_until 15 count_at_least "$dir/var/cases.db" "$n_expected" || true
    sleep 1
    open_cases "$dir/var/cases.db" >"$dir/actual"
    if ! diff -u "$dir/expected" "$dir/actual" >"$dir/diff"; then
        cat "$dir/diff" >&2
        fail "$label: open cases differ from gridsim's expectations (- expected, + opened)" \
            "$dir/gridgate.log"
    fi
    # "expect no case" lines are covered by the exact comparison; check
    # them by name anyway, so a wrong expectation cannot hide one.
    while read -r _ _ _ rule grid subject; do
        if grep -q "^$rule $grid role=[a-z_]* $subject\$" "$dir/actual"; then
            fail "$label: unexpected case $rule $grid $subject"
        fi
    done < <(grep '^expect no case ' "$dir/gridsim.out" || true)

    if [ "$sc" = bad ]; then
        bad=$(sed -n 's/^expect bad_payloads //p' "$dir/gridsim.out")
        accepted=$(sed -n 's/^expect accepted //p' "$dir/gridsim.out")
        assert_eq "$(stat 'bad payload' "$dir/gridgate.log")" "$bad" "$label: bad payloads counted"
        assert_eq "$(stat accepted "$dir/gridgate.log")" "$accepted" "$label: good readings accepted"
    fi
    stop_gateway
    summary="$summary $label:$n_expected"
    echo "ok $label: $n_expected cases as expected ($received messages received)"
}

summary=
for sc in $SCENARIOS; do
    run_scenario "$sc" "$sc"
done

# The same over CoAP: SenML JSON for fire, JSON for bad (4.00 for each
# bad payload, checked by gridsim itself).
run_scenario fire-coap fire --transport coap --content-format 110
run_scenario bad-coap bad --transport coap --content-format 50
grep -q '^coap: 15 answered 2.04, 6 answered 4.00$' "$work/bad-coap/gridsim.out" ||
    fail "bad over CoAP: $(grep '^coap:' "$work/bad-coap/gridsim.out")"

# ---- The live fleet: heartbeats, Last Will, battery drain.
# Two cameras (5 min heartbeat) and two smoke detectors (12 h) of the
# sample district at 3600x: a camera reports every 83 ms +-10 %, a
# detector at most once in the run. Each device says "online" first; a
# kill -9 of gridsim makes the broker publish every Will, and the
# gateway opens device.offline for each device, for its grid's manager.
dir="$work/live"
mkdir -p "$dir"
{ head -n 1 "$src/config/district/devices.csv"
  grep -E '^(camera-000004|camera-000006|smoke-000210|smoke-000211),' \
      "$src/config/district/devices.csv"; } >"$dir/devices.csv"
start_gateway "$dir" live
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -t 'devices/+/status' -t 'devices/+/telemetry' -v \
    >"$dir/sub.out" 2>&1 &
sub_pid=$!
sleep 0.3 # mosquitto_sub has no readiness signal; the statuses below come later anyway
"$gridsim" run --devices "$dir/devices.csv" --broker "tcp://127.0.0.1:$mqtt_port" \
    --heartbeat-scale 3600 --seed "$SEED" >"$dir/gridsim.out" 2>"$dir/gridsim.err" &
live_pid=$!
gg_wait_until 10 grep -q '^sent [1-9]' "$dir/gridsim.out" || fail "live fleet: no reading" \
    "$dir/gridsim.err"
sleep 2
kill -KILL "$live_pid"
wait "$live_pid" 2>/dev/null || true
offline_cases() { open_cases "$dir/var/cases.db" | grep '^rule=device.offline ' || true; }
four_offline() { [ "$(offline_cases | wc -l)" -eq 4 ]; }
gg_wait_until 10 four_offline || true
kill "$sub_pid" 2>/dev/null || true
wait "$sub_pid" 2>/dev/null || true
expected=$(tail -n +2 "$dir/devices.csv" | awk -F, '{ printf "rule=device.offline grid=%s role=manager subject=%s\n", $3, $1 }' | sort)
assert_eq "$(offline_cases)" "$expected" "live fleet: device.offline after kill -9"
for d in camera-000004 camera-000006 smoke-000210 smoke-000211; do
    assert_eq "$(grep -c "^devices/$d/status " "$dir/sub.out")" 2 "$d: statuses"
    assert_eq "$(grep "^devices/$d/status " "$dir/sub.out" | awk '{ print $2 }' | tr '\n' ' ')" \
        "online offline " "$d: online, then the Will"
done
for d in camera-000004 camera-000006; do
    n=$(grep -c "^devices/$d/telemetry " "$dir/sub.out")
    [ "$n" -ge 15 ] && [ "$n" -le 60 ] || fail "$d: $n readings in ~2.5 s at 3600x (every ~83 ms)"
done
for d in smoke-000210 smoke-000211; do
    n=$(grep -c "^devices/$d/telemetry " "$dir/sub.out" || true)
    [ "$n" -le 1 ] || fail "$d: $n readings in ~2.5 s at 3600x (every ~12 s)"
done
stop_gateway
echo "ok live: online and Will for 4 devices, heartbeats per type, device.offline x4"

# Battery drain: at 10^7x (1.5 s is about half a year) the two smoke
# detectors (3 years of battery) lose over 10 points, never gaining any.
grep '^smoke' "$dir/devices.csv" | { head -n 1 "$dir/devices.csv"; cat; } >"$dir/smoke.csv"
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -t 'devices/+/telemetry' -v >"$dir/drain.out" 2>&1 &
sub_pid=$!
sleep 0.3
"$gridsim" run --devices "$dir/smoke.csv" --broker "tcp://127.0.0.1:$mqtt_port" \
    --heartbeat-scale 1e7 --duration 1.5 --seed "$SEED" --quiet >"$dir/drain.run" 2>&1 ||
    fail "battery drain run exited $?" "$dir/drain.run"
sleep 0.3
kill "$sub_pid" 2>/dev/null || true
wait "$sub_pid" 2>/dev/null || true
for d in smoke-000210 smoke-000211; do
    grep "^devices/$d/telemetry " "$dir/drain.out" | sed -E 's/.*"battery":([0-9]+).*/\1/' |
        awk -v d="$d" 'NR == 1 { first = $1 } NR > 1 && $1 > prev { print d ": battery rose"; exit 1 }
                       { prev = $1 } END { if (NR < 100 || first - prev < 10) { print d ": " NR " readings, " first " -> " prev; exit 1 } }' ||
        fail "battery drain"
done
echo "ok battery drain"
echo "ok: scenarios$summary, live fleet, battery drain"
