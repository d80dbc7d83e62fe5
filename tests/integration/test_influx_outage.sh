#!/usr/bin/env bash
# InfluxDB outages lose nothing the gateway acknowledged (issue 6): QoS 1
# readings stream in from a Paho fleet (300/s, some alarms, so cases open
# and rules emit), InfluxDB is stopped for 60 s and started again on the
# same port and data directory, and at the end InfluxDB holds every
# reading, case event and emit. Four gateways take the same stream at
# once, each into its own database, so one outage serves every case:
#
#   (a) "a":     the outage alone: every reading of every device, every
#                case event of the store's history (case_event points but
#                the "updated" ones, which write no history row, equal the
#                history rows; every case has its "opened" point) and
#                every emit are in InfluxDB;
#   (b) "b":     kill -9 while the writer lags (InfluxDB down), restarted
#                still in the outage: it catches up once InfluxDB is back,
#                the same checks;
#   (c) "drop":  journal.max_mb 1 with full_policy drop_oldest: the
#                readings missing from InfluxDB are exactly the records the
#                feeder never read (influx_skipped; journal_dropped counts
#                those plus the ones it had read and still delivered, so it
#                is at least that);
#       "block": journal.max_mb 1 with full_policy block: nothing is lost,
#                the broker keeps the rest while the journal is full.
#
#   test_influx_outage.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR
#
# Waits are bounded; every process is stopped by PID.
set -euo pipefail

gridgate=$1
gridsim=$2
src=$3
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work influx-outage sim_pid pid_a pid_b pid_drop pid_block

gg_start_servers
NAMES="a b drop block"
DEVICES=100
RATE=300
TOTAL=21000   # 70 s at 300/s: 210 readings per detector
OUTAGE_S=60

# 100 smoke detectors, so one count tells every reading.
{
    head -n 1 "$src/config/district/devices.csv"
    awk -F, -v n="$DEVICES" '$2 == "smoke" && n-- > 0' "$src/config/district/devices.csv"
} >"$work/smoke.csv"
[ "$(($(wc -l <"$work/smoke.csv") - 1))" = "$DEVICES" ] || fail "fewer than $DEVICES smoke detectors"

# The shipped rules, and one that emits a point per alarm reading.
mkdir -p "$work/rules"
for f in "$src"/rules/*.lua; do
    case $f in *_test.lua) ;; *) cp "$f" "$work/rules/" ;; esac
done
cat >"$work/rules/outage_emit.lua" <<'LUA'
rule{
    name = "outage.emit",
    match = { type = "smoke" },
    on_reading = function(r)
        if r.fields.alarm == true then
            emit("smoke_alarm", { smoke = r.fields.smoke }, { device = r.device })
        end
    end,
}
LUA

write_config() { # NAME JOURNAL_YAML
    local name=$1
    mkdir -p "$work/$name"
    gg_influx_create_db "$influx_port" "gw_$name"
    cat >"$work/$name/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-$name, qos: 1,
            reconnect_min_ms: 100, reconnect_max_ms: 500 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gw_$name, flush_interval_ms: 100,
            batch_size: 500, timeout_ms: 2000 }
store:    { path: "cases.db" }
journal:  $2
district: { grids: "$src/config/district/grids.geojson", devices: "$work/smoke.csv" }
rules:    { dir: "$work/rules" }
gateway:  { stats_interval_s: 1 }
YAML
}
write_config a '{ dir: "journal" }'
write_config b '{ dir: "journal" }'
write_config drop '{ dir: "journal", max_mb: 1, full_policy: drop_oldest }'
write_config block '{ dir: "journal", max_mb: 1, full_policy: block }'

start_gateway() { # NAME
    local name=$1 log=$work/$1/gridgate.log since
    since=$(grep -c "subscribed to" "$log" 2>/dev/null || true)
    "$gridgate" run -c "$work/$name/gridgate.yaml" >>"$log" 2>&1 &
    printf -v "pid_$name" '%s' $!
    subscribed() { [ "$(grep -c "subscribed to" "$log")" -gt "${since:-0}" ]; }
    gg_wait_until 15 subscribed || fail "gridgate $name did not subscribe" "$log"
}
query() { # NAME QUERY: the first value of the first series, empty if none
    gg_influx_query "$influx_port" "gw_$1" "$2" >"$work/q.json" || return 1
    sqlite3 :memory: "SELECT json_extract(readfile('$work/q.json'), '\$.results[0].series[0].values[0][1]')"
}
readings() { query "$1" "SELECT count(battery) FROM smoke"; }
stopped_influxd() { ! kill -0 "$INFLUXD_PID" 2>/dev/null; }

for name in $NAMES; do start_gateway "$name"; done
# Memory bounded through the outage: gateway a's resident memory may grow
# by 16 MB: what its configuration bounds (the writer's queue of 10,000
# points of about 512 bytes: 5 MB, the journal pages it touches: about
# 100 bytes a reading, 2 MB for the stream) plus allocator slack; readings
# waiting for InfluxDB wait in the journal on disk, not in memory.
# Measured: about 6 MB.
RSS_GROWTH_MAX_KB=$((16 * 1024))
rss_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
rss_before_a=$(rss_kb "$pid_a" VmRSS)
"$gridsim" run --devices "$work/smoke.csv" --broker "tcp://127.0.0.1:$mqtt_port" \
    --rate "$RATE" --count "$TOTAL" --alarm-every 97 --quiet >"$work/gridsim.out" 2>&1 &
sim_pid=$!
t0=$SECONDS

# The outage: InfluxDB stopped a few seconds into the stream.
sleep 3
influx_dir=$work/influxdb
echo "InfluxDB stopped for ${OUTAGE_S} s (pid $INFLUXD_PID)"
gg_stop_pid "$INFLUXD_PID"
gg_wait_until 15 stopped_influxd || fail "influxd did not stop"
outage_start=$SECONDS

# (b): kill -9 in the middle of the outage, with the writer behind, and a
# restart while InfluxDB is still down.
sleep 15
echo "(b) kill -9 gridgate b during the outage"
kill -KILL "$pid_b"
wait "$pid_b" 2>/dev/null || true
pid_b=
sleep 1
start_gateway b

left=$((OUTAGE_S - (SECONDS - outage_start)))
[ "$left" -le 0 ] || sleep "$left"
gg_start_influxd "$influx_dir" "$influx_port" || fail "influxd did not start again on $influx_port"
echo "InfluxDB back on port $influx_port after $((SECONDS - outage_start)) s"

wait "$sim_pid" || fail "gridsim failed" "$work/gridsim.out"
sim_pid=
echo "gridsim: $(grep '^summary' "$work/gridsim.out") (after $((SECONDS - t0)) s)"
acked=$(sed -n 's/^summary: sent [0-9]*, acked \([0-9]*\),.*/\1/p' "$work/gridsim.out")
alarms=$(sed -n 's/^summary: .*, alarms \([0-9]*\),.*/\1/p' "$work/gridsim.out")
assert_eq "$acked" "$TOTAL" "readings the broker acknowledged to the fleet"
[ "$alarms" -gt 0 ] || fail "gridsim sent no alarm"
per_device=$((TOTAL / DEVICES))

# The last stats line's figures of a gateway: "influx N behind", ...
stat() { # NAME WHAT (behind|dropped|never|outbox)
    local line
    line=$(grep "points written" "$work/$1/gridgate.log" | tail -n 1)
    case $2 in
    behind) sed -n 's/.*influx \([0-9]*\) behind.*/\1/p' <<<"$line" ;;
    dropped) sed -n 's/.*behind, \([0-9]*\) dropped.*/\1/p' <<<"$line" ;;
    never) sed -n 's/.*dropped, \([0-9]*\) never read by influx.*/\1/p' <<<"$line" ;;
    outbox) sed -n 's/.*outbox \([0-9]*\) rows.*/\1/p' <<<"$line" ;;
    esac
}
all_readings() { [ "$(readings "$1")" = "$TOTAL" ]; }
caught_up() { [ "$(stat "$1" behind)" = 0 ] && [ "$(stat "$1" outbox)" = 0 ]; }

# Every reading, per device.
check_readings() { # NAME
    local name=$1 devices
    gg_wait_until 90 all_readings "$name" ||
        fail "($name) InfluxDB holds $(readings "$name") of $TOTAL readings" "$work/$name/gridgate.log"
    gg_influx_query "$influx_port" "gw_$name" "SELECT count(battery) FROM smoke GROUP BY device" \
        >"$work/q.json"
    devices=$(sqlite3 :memory: "SELECT count(*) FROM json_each(json_extract(readfile('$work/q.json'),
        '\$.results[0].series')) WHERE json_extract(value, '\$.values[0][1]') = $per_device")
    assert_eq "$devices" "$DEVICES" "($name) devices with all their $per_device readings"
    echo "($name) sent $TOTAL, acked $acked, in InfluxDB $(readings "$name") ($per_device for each of" \
        "$DEVICES detectors), lost 0, duplicates 0"
}

# Every case event of the store's history, every case, every emit.
check_cases() { # NAME
    local name=$1 db=$work/$1/cases.db rows cases points opened emits located
    gg_wait_until 60 caught_up "$name" || fail "($name) did not catch up" "$work/$name/gridgate.log"
    rows=$(sqlite3 "$db" "SELECT count(*) FROM case_history")
    cases=$(sqlite3 "$db" "SELECT count(*) FROM cases")
    [ "$cases" -gt 0 ] || fail "($name) no case was opened"
    points=$(query "$name" "SELECT count(case_id) FROM case_event WHERE \"event\" <> 'updated'")
    opened=$(query "$name" "SELECT count(DISTINCT case_id) FROM case_event WHERE \"event\" = 'opened'")
    emits=$(query "$name" "SELECT count(smoke) FROM smoke_alarm")
    assert_eq "$points" "$rows" "($name) case_event points (not 'updated') vs history rows"
    assert_eq "$opened" "$cases" "($name) cases with their 'opened' point"
    assert_eq "$emits" "$alarms" "($name) emitted smoke_alarm points vs alarm readings"
    assert_eq "$(sqlite3 "$db" "SELECT count(*) FROM influx_outbox")" 0 "($name) outbox rows left"
    located=$(query "$name" "SELECT count(lat) FROM case_event")
    [ "${located:-0}" -gt 0 ] || fail "($name) case_event points carry no lat/lon"
    echo "($name) $TOTAL readings ($per_device for each of $DEVICES detectors), $cases cases," \
        "$rows history rows = $points case_event points (+ 'updated'), $emits emits: all in InfluxDB"
}

check_readings a
check_cases a
rss_peak_a=$(rss_kb "$pid_a" VmHWM)
! gg_rss_checked || [ "$rss_peak_a" -le $((rss_before_a + RSS_GROWTH_MAX_KB)) ] || # not under ASan/valgrind
    fail "(a) resident memory peaked at $rss_peak_a kB, from $rss_before_a kB before the outage (bound: +$RSS_GROWTH_MAX_KB kB)"
echo "(a) RSS $(((rss_before_a + 512) / 1024)) MB before the outage, peak $(((rss_peak_a + 512) / 1024)) MB" \
    "(bound $(((rss_before_a + RSS_GROWTH_MAX_KB + 512) / 1024)) MB)"
# The case figures (best effort, every stats interval) and the health.
[ "$(query a "SELECT count(open) FROM case_open")" -gt 0 ] 2>/dev/null || fail "(a) no case_open points"
[ "$(query a "SELECT last(opened) FROM case_rates WHERE street = 'district'")" -gt 0 ] 2>/dev/null ||
    fail "(a) no case_rates point for the district"
health_outbox_empty() { [ "$(query a "SELECT last(outbox_rows) FROM gridgate")" = 0 ]; }
gg_wait_until 10 health_outbox_empty || fail "(a) health: the outbox is not empty" "$work/a/gridgate.log"
check_readings b
check_cases b

# (c) drop_oldest: the missing readings are exactly the ones never read.
gg_wait_until 90 caught_up drop || fail "(drop) did not catch up" "$work/drop/gridgate.log"
sleep 2 # one more stats line after the last answer
have=$(readings drop)
missing=$((TOTAL - ${have:-0}))
never=$(stat drop never)
dropped=$(stat drop dropped)
echo "(c) drop_oldest: $have of $TOTAL readings in InfluxDB, $missing missing;" \
    "journal_dropped $dropped, influx_skipped $never"
[ "$missing" -gt 0 ] || fail "(drop) a 1 MB journal lost nothing in a ${OUTAGE_S} s outage: the case tests nothing"
assert_eq "$never" "$missing" "(drop) records the feeder never read vs readings missing from InfluxDB"
[ "$dropped" -ge "$missing" ] || fail "(drop) journal_dropped $dropped < missing $missing"

# (c) block: nothing lost, the broker kept the rest.
check_readings block
echo "(c) block: all $TOTAL readings in InfluxDB"

for name in $NAMES; do
    pid_var=pid_$name
    kill -TERM "${!pid_var}"
    status=0
    wait "${!pid_var}" || status=$?
    printf -v "$pid_var" '%s' ""
    assert_eq "$status" 0 "gridgate $name's exit status after SIGTERM"
done
echo "PASS"
