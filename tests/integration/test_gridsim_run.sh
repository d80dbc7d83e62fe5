#!/usr/bin/env bash
# integration.gridsim_run: `gridsim run` against a real mosquitto on loopback.
#
#   test_gridsim_run.sh GRIDSIM_BIN SOURCE_DIR
#
# Checks that 200 readings arrive on devices/{id}/telemetry for the devices
# of a small CSV, round-robin, each a flat JSON object with "ts" and its
# type's fields in range; that --alarm-every 10 makes every 10th smoke
# reading an alarm; that SIGTERM stops a run cleanly; that a closed broker
# port and a bad option exit 1 naming the URI / the option.
# Needs bash, awk, mosquitto and mosquitto-clients; no python, no jq.
set -euo pipefail

GRIDSIM=${1:?usage: test_gridsim_run.sh GRIDSIM_BIN SOURCE_DIR}
SOURCE_DIR=${2:?usage: test_gridsim_run.sh GRIDSIM_BIN SOURCE_DIR}
# shellcheck source=../../scripts/servers.sh
. "$SOURCE_DIR/scripts/servers.sh"

COUNT=200
WORK=$(mktemp -d)
MOSQUITTO_PID=
SUB_PID=
RUN_PID=

cleanup() {
    gg_stop_pid "$RUN_PID"
    gg_stop_pid "$SUB_PID"
    gg_stop_pid "$MOSQUITTO_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in gridsim.out gridsim.err sub.out sub.err mosquitto.log; do
        if [[ -s $WORK/$f ]]; then
            echo "--- $f (last 20 lines)" >&2
            tail -n 20 "$WORK/$f" >&2
        fi
    done
    exit 1
}

# Eight devices: every known type twice for smoke, and one unknown type.
# Quoted labels with a comma and an escaped quote exercise the CSV reader.
cat >"$WORK/devices.csv" <<'EOF'
device_id,type,grid_id,lat,lon,label
smk-001,smoke,110101001001001,39.9101,116.4101,"Lobby, 1F"
smk-002,smoke,110101001001001,39.9102,116.4102,"Stair ""B"""
cam-001,camera,110101001001002,39.9201,116.4201,Gate camera
gas-001,gas,,39.9202,116.4202,Kitchen
door-001,door,,39.9203,116.4203,Fire door
wtr-001,water,,39.9204,116.4204,Basement
tmp-001,temperature,,39.9205,116.4205,Roof
aq-001,air_quality,,39.9206,116.4206,Street
EOF
N_DEVICES=8

gg_start_mosquitto "$WORK" || fail "mosquitto did not start"
PORT=$MOSQUITTO_PORT
BROKER="tcp://127.0.0.1:$PORT"

# A persistent subscription registered first (-c, -E) makes the collector
# below miss nothing, however late it connects: the broker queues for it.
SUB_ID="gridsim-test-$$"
mosquitto_sub -h 127.0.0.1 -p "$PORT" -i "$SUB_ID" -c -q 1 -t 'devices/+/telemetry' -E \
    || fail "could not register the subscription"
mosquitto_sub -h 127.0.0.1 -p "$PORT" -i "$SUB_ID" -c -q 1 -t 'devices/+/telemetry' -v \
    -C "$COUNT" -W 20 >"$WORK/sub.out" 2>"$WORK/sub.err" &
SUB_PID=$!

# ---- 1. a bounded run
START_MS=$(($(date +%s%N) / 1000000))
"$GRIDSIM" run --devices "$WORK/devices.csv" --broker "$BROKER" --count "$COUNT" \
    --rate 500 --alarm-every 10 --quiet >"$WORK/gridsim.out" 2>"$WORK/gridsim.err" \
    || fail "gridsim run exited $?"
sub_rc=0
wait "$SUB_PID" || sub_rc=$?
SUB_PID=
END_MS=$(($(date +%s%N) / 1000000))
[[ $sub_rc -eq 0 ]] || fail "mosquitto_sub exited $sub_rc (fewer than $COUNT messages in 20 s?)"

grep -q "^summary: sent $COUNT, acked $COUNT, failed 0, " "$WORK/gridsim.out" \
    || fail "unexpected summary: $(cat "$WORK/gridsim.out")"
if grep -q '^sent ' "$WORK/gridsim.out"; then
    fail "--quiet still printed per-second lines"
fi
got=$(wc -l <"$WORK/sub.out")
[[ $got -eq $COUNT ]] || fail "received $got messages, expected $COUNT"

# Every line is "devices/ID/telemetry {json}". The awk program reads the
# CSV first (device -> type), then checks each message: known device, a
# flat JSON object whose keys are exactly the type's, values of the right
# JSON type and range, ts between the start and the end of the run.
# Output: "smoke ALARMS" then "ID COUNT" per device.
check_awk='
function bad(msg) { printf "line %d: %s: %s\n", FNR, msg, $0 > "/dev/stderr"; failed = 1; exit 1 }
function num(k)   { if (!(k in f) || f[k] !~ /^-?[0-9]+(\.[0-9]+)?$/) bad("\"" k "\" is not a number"); return f[k] + 0 }
function flag(k)  { if (!(k in f) || f[k] !~ /^(true|false)$/) bad("\"" k "\" is not a boolean"); return f[k] == "true" }
function range(k, lo, hi,   v) { v = num(k); if (v < lo || v > hi) bad("\"" k "\" out of range"); return v }
BEGIN {
    want["smoke"] = "ts,smoke,temp,battery,alarm"
    want["camera"] = "ts,people,density,online"
    want["gas"] = "ts,gas,battery"
    want["door"] = "ts,open,battery"
    want["water"] = "ts,level_cm,battery"
    want["temperature"] = "ts,temp,humidity"
    want["other"] = "ts,value"
}
NR == FNR { if (FNR > 1) { split($0, c, ","); type[c[1]] = c[2] } next }
{
    if (NF != 2) bad("expected \"topic payload\"")
    n = split($1, t, "/")
    if (n != 3 || t[1] != "devices" || t[3] != "telemetry") bad("bad topic")
    id = t[2]
    if (!(id in type)) bad("unknown device " id)
    p = $2
    if (p !~ /^\{"[a-z_]+":[^,{}"]+(,"[a-z_]+":[^,{}"]+)*\}$/) bad("not a flat JSON object of numbers and booleans")
    split("", f); keys = ""
    m = split(substr(p, 2, length(p) - 2), kv, ",")
    for (i = 1; i <= m; i++) {
        split(kv[i], pair, ":"); k = pair[1]; gsub(/"/, "", k)
        f[k] = pair[2]; keys = keys (i > 1 ? "," : "") k
    }
    ty = (type[id] in want) ? type[id] : "other"
    if (keys != want[ty]) bad("keys " keys ", expected " want[ty])
    range("ts", start_ms - 1000, end_ms + 1000)
    if ("battery" in f) { b = range("battery", 0, 100); if (b != int(b)) bad("battery not integer-valued") }
    if (ty == "smoke") {
        range("temp", 18, 28)
        if (flag("alarm")) { range("smoke", 0.15, 0.5); alarms++ } else range("smoke", 0, 0.05)
        smoke++
    } else if (ty == "camera") {
        range("people", 0, 100000); range("density", 0, 1)
        if (f["online"] != "true") bad("camera not online")
    } else if (ty == "gas") range("gas", 0, 5)
    else if (ty == "door") flag("open")
    else if (ty == "water") range("level_cm", 0, 1000)
    else if (ty == "temperature") { range("temp", -40, 60); range("humidity", 0, 100) }
    else num("value")
    seen[id]++
}
END {
    if (failed) exit 1
    printf "smoke %d %d\n", smoke, alarms
    for (id in seen) printf "%s %d\n", id, seen[id]
}'
awk -v start_ms="$START_MS" -v end_ms="$END_MS" "$check_awk" \
    "$WORK/devices.csv" "$WORK/sub.out" >"$WORK/check.out" || fail "bad message (see above)"

# Round-robin: every device reported COUNT / N_DEVICES times.
read -r _ smoke alarms <"$WORK/check.out" # the first line
devices_seen=$(grep -vc '^smoke ' "$WORK/check.out" || true)
[[ $devices_seen -eq $N_DEVICES ]] || fail "$devices_seen devices reported, expected $N_DEVICES"
if grep -v '^smoke ' "$WORK/check.out" | grep -vq " $((COUNT / N_DEVICES))\$"; then
    fail "uneven round-robin: $(tr '\n' ' ' <"$WORK/check.out")"
fi
# --alarm-every 10 counts smoke readings fleet-wide: exactly every 10th.
[[ $smoke -eq $((COUNT * 2 / N_DEVICES)) ]] || fail "$smoke smoke readings"
[[ $alarms -eq $((smoke / 10)) ]] || fail "$alarms alarms in $smoke smoke readings, expected $((smoke / 10))"
grep -q "^summary: .*, alarms $alarms, " "$WORK/gridsim.out" || fail "summary does not count $alarms alarms"

# ---- 2. SIGTERM stops an unbounded run cleanly: summary, all acked, exit 0
"$GRIDSIM" run --devices "$WORK/devices.csv" --broker "$BROKER" --rate 200 \
    >"$WORK/gridsim.out" 2>"$WORK/gridsim.err" &
RUN_PID=$!
gg_wait_until 10 grep -q '^sent [1-9]' "$WORK/gridsim.out" || fail "no per-second line within 10 s"
kill -TERM "$RUN_PID"
run_rc=0
wait "$RUN_PID" || run_rc=$?
RUN_PID=
[[ $run_rc -eq 0 ]] || fail "gridsim exited $run_rc after SIGTERM"
grep -Eq '^summary: sent ([0-9]+), acked \1, failed 0, ' "$WORK/gridsim.out" \
    || fail "unclean stop: $(tail -n 1 "$WORK/gridsim.out")"

# ---- 3. a closed port: exit 1, the message names the URI
CLOSED=$(gg_free_port)
run_rc=0
"$GRIDSIM" run --devices "$WORK/devices.csv" --broker "tcp://127.0.0.1:$CLOSED" --count 1 \
    --quiet >"$WORK/gridsim.out" 2>"$WORK/gridsim.err" || run_rc=$?
[[ $run_rc -eq 1 ]] || fail "closed port: exit $run_rc, expected 1"
grep -qF "tcp://127.0.0.1:$CLOSED" "$WORK/gridsim.err" || fail "closed port: URI not named"

# ---- 4. a bad option: exit 1, the message names the option
run_rc=0
"$GRIDSIM" run --devices "$WORK/devices.csv" --broker "$BROKER" --qos 2 \
    >"$WORK/gridsim.out" 2>"$WORK/gridsim.err" || run_rc=$?
[[ $run_rc -eq 1 ]] || fail "--qos 2: exit $run_rc, expected 1"
grep -q -- '--qos' "$WORK/gridsim.err" || fail "--qos 2: option not named"

echo "ok: $COUNT readings from $N_DEVICES devices, $alarms alarms in $smoke smoke readings"
