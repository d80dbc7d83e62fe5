#!/usr/bin/env bash
# Case notices (grids/{grid}/cases, QoS 1) under load and across an outage,
# against a real mosquitto:
#
#   test_notices.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR
#
# (a) a storm: 2000 smoke alarms from 200 detectors, as fast as gridsim
#     gets them acknowledged, open 200 cases and many more case events in
#     a few seconds; every event's notice reaches a subscriber, in the
#     order the gateway logged the events, and the adapter reports every
#     one acknowledged by the broker and none given up;
# (b) a gateway started while the broker is down: the cases of (a)
#     escalate (20 s limits), their notices wait in the adapter's queue
#     and all arrive, in order, once the broker is up.
# Waits are bounded; servers are stopped by PID.
set -euo pipefail

gridgate=$1
gridsim=$2
src=$3
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work notices gateway_pid sub_pid broker_pid

# A broker that keeps sessions across its own restart (persistence on), so
# the subscriber of (b) misses nothing while it is down, and that queues
# enough for an offline subscriber.
start_broker() { # [PORT]
    mkdir -p "$work/broker"
    # Run as root, mosquitto writes its db as user mosquitto.
    chmod 711 "$work"
    chmod 777 "$work/broker"
    GG_MOSQUITTO_PERSIST=$work/broker gg_start_with_port mosquitto gg_run_mosquitto "$work/broker" \
        "${1:-0}" || fail "mosquitto did not start"
    broker_pid=$GG_PID
    mqtt_port=$GG_PORT
}
stop_broker() {
    gg_stop_pid "$broker_pid"
    broker_pid=
}

start_broker
mkdir -p "$work/var"
# 200 smoke detectors of the sample district, in several grids.
{
    head -n 1 "$src/config/district/devices.csv"
    # (not `| head`: under pipefail, awk killed by SIGPIPE fails the test)
    awk -F, -v n=200 '$2 == "smoke" && n-- > 0' "$src/config/district/devices.csv"
} >"$work/devices.csv"
[ "$(($(wc -l <"$work/devices.csv") - 1))" = 200 ] || fail "the sample district has fewer than 200 smoke detectors"

write_config() { # LIMITS
    cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-notices, qos: 1,
            reconnect_min_ms: 100, reconnect_max_ms: 500 }
influx:   { enabled: false }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
cases:    { limits_critical: "$1", limits_major: "$1", limits_minor: "$1", limits_info: "$1",
            timer_interval_ms: 100 }
gateway:  { stats_interval_s: 1 }
YAML
}

start_gateway() {
    "$gridgate" run -c "$work/gridgate.yaml" >"$work/gridgate.log" 2>&1 &
    gateway_pid=$!
}

# A clean stop: SIGTERM, exit status 0.
stop_gateway() { gg_stop_clean gateway_pid; }

# The subscriber of the grids' terminals: a persistent session (-c), so
# the broker keeps its notices while it is away or the broker restarts.
sub_args() { echo -h 127.0.0.1 -p "$mqtt_port" -i gridgate-notices-sub -c -q 1 -t 'grids/+/cases'; }
start_sub() { # OUT
    # shellcheck disable=SC2046
    mosquitto_sub $(sub_args) -v >>"$1" 2>"$work/sub.err" &
    sub_pid=$!
}
stop_sub() {
    gg_stop_pid "$sub_pid"
    sub_pid=
}

# "case ID KIND" of each case event the gateway logged, in order, and of
# each notice received, in order.
logged_events() { sed -n 's/.*\[cases\] case \([0-9]*\) \([a-z]*\) by .*/\1 \2/p' "$work/gridgate.log"; }
received_notices() {
    grep -v ' probe$' "$1" | sed -n 's/.*"event":"\([a-z]*\)".*"case":{"id":\([0-9]*\),.*/\2 \1/p'
}
n_lines() { "$@" | wc -l; }
# settled OUT: as many notices received as events logged, at least one,
# and the same counts as the previous poll (no event still on its way).
prev=
settled() {
    local now
    now="$(n_lines logged_events) $(n_lines received_notices "$1")"
    [ "$now" = "$prev" ] && [ "${now% *}" = "${now#* }" ] && [ "${now% *}" -gt 0 ] && return 0
    prev=$now
    return 1
}
wait_settled() { # OUT SECONDS
    local deadline=$((SECONDS + $(gg_slow "$2")))
    prev=
    until settled "$1"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 1
    done
}

# ---- (a) a storm of case events ------------------------------------------
echo "(a) 2000 smoke alarms from 200 detectors"
start_sub "$work/notices.a"
probe() { mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t grids/probe/cases -m probe; grep -q probe "$work/notices.a"; }
gg_wait_until 10 probe || fail "mosquitto_sub did not subscribe" "$work/sub.err"
# Time limits that escalate the storm's cases only once (b) runs.
write_config "dispatched=20s,handled=20s,verified=20s,evaluated=20s"
start_gateway
gg_wait_until 20 grep -q "subscribed to" "$work/gridgate.log" ||
    fail "gridgate did not subscribe" "$work/gridgate.log"
"$gridsim" run --devices "$work/devices.csv" --broker "tcp://127.0.0.1:$mqtt_port" --count 2000 \
    --rate 0 --alarm-every 1 --quiet >"$work/gridsim.out" 2>&1 ||
    fail "gridsim run failed" "$work/gridsim.out"
wait_settled "$work/notices.a" 60 ||
    fail "notices received: $(n_lines received_notices "$work/notices.a"), case events logged: $(n_lines logged_events)" "$work/gridgate.log"
events=$(n_lines logged_events)
opened=$(logged_events | grep -c ' opened$' || true)
[ "$opened" -ge 200 ] || fail "only $opened cases opened by 200 alarming detectors"
[ "$events" -ge 2000 ] || fail "only $events case events for 2000 alarms"
# One publisher thread and one connection: the broker delivers them in the
# order the case service published them.
logged_events >"$work/events.a"
received_notices "$work/notices.a" >"$work/received.a"
cmp -s "$work/events.a" "$work/received.a" ||
    fail "the notices differ from the case events (order or content): $(diff "$work/events.a" "$work/received.a" | head -n 5)"
# Each on its case's grid topic.
on_own_grid=$(sed -n 's|^grids/\([0-9]*\)/cases {.*"grid_id":"\([0-9]*\)".*|\1 \2|p' "$work/notices.a" |
    awk '$1 == $2' | wc -l)
assert_eq "$on_own_grid" "$events" "notices on their case's grid topic"
stop_gateway
stop_sub
grep -q "case notices: $events acknowledged by the broker, 0 given up" "$work/gridgate.log" ||
    fail "the adapter did not report $events notices acknowledged and none given up" "$work/gridgate.log"
if grep -E "notices [0-9]+ \([1-9][0-9]* failed\)|not delivered|cannot publish|dropped the oldest" "$work/gridgate.log"; then
    fail "notices failed" "$work/gridgate.log"
fi
grep -E "notices $events \(0 failed\)" "$work/gridgate.log" >/dev/null ||
    fail "no stats line with notices $events (0 failed)" "$work/gridgate.log"
echo "    $events case events, $events notices received in order"

# ---- (b) a gateway started while the broker is down ----------------------
echo "(b) the broker is down when the gateway starts; the notices wait for it"
stop_broker
cp "$work/gridgate.log" "$work/gridgate.a.log"
start_gateway
# Escalations of the storm's dispatched cases, with nowhere to go yet.
has_escalations() { [ "$(logged_events | grep -c ' escalated$')" -ge 200 ]; }
gg_wait_until 40 has_escalations || fail "the cases did not escalate" "$work/gridgate.log"
grep -q "connected to tcp://" "$work/gridgate.log" && fail "connected with the broker down" "$work/gridgate.log"
start_broker "$mqtt_port"
start_sub "$work/notices.b"
wait_settled "$work/notices.b" 60 ||
    fail "notices received: $(n_lines received_notices "$work/notices.b"), case events logged: $(n_lines logged_events)" "$work/gridgate.log"
events=$(n_lines logged_events)
logged_events >"$work/events.b"
received_notices "$work/notices.b" >"$work/received.b"
cmp -s "$work/events.b" "$work/received.b" ||
    fail "the notices after the outage differ from the case events: $(diff "$work/events.b" "$work/received.b" | head -n 5)"
stop_gateway
grep -q "case notices: $events acknowledged by the broker, 0 given up" "$work/gridgate.log" ||
    fail "the adapter did not report $events notices acknowledged and none given up" "$work/gridgate.log"
echo "    $events notices queued while the broker was down, all received in order"
echo "PASS"
