#!/usr/bin/env bash
# The district load (issue 7's memory target; docs/benchmarks.md "Memory
# and start-up"): gridgate on a district (by default the full one that
# `gridsim district --seed 1 --out var/district-full` makes) with the
# shipped rules, mosquitto and influxd on 127.0.0.1 (scripts/servers.sh),
# and every device of the district reporting in turn at RATE readings/s
# (QoS 1) until each has reported ROUNDS times, so that every device gets
# its rule state, windows and last reading, at a district's burst rate.
# Samples gridgate's resident memory every second; at the end waits until
# every reading is in InfluxDB and prints gridgate's peak RSS (VmHWM), its
# anonymous and file parts, and what the broker acknowledged, gridgate
# accepted and InfluxDB holds. Fails if a reading is missing or the peak
# is over LIMIT_MB (256).
#
#   simulators/load.sh BUILD_DIR [--district DIR] [--rate R] [--rounds N]
#                      (defaults var/district-full, 5000/s, 2)
#
# Writes load.tsv (seconds, RSS, anonymous, file kB) and the logs to OUT
# (LOAD_OUT, else a new /tmp/gridgate-load.XXXXXX, kept).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage() {
    echo "usage: $0 BUILD_DIR [--district DIR] [--rate R] [--rounds N]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
build=$(cd "$1" && pwd)
shift
district=$root/var/district-full
rate=5000
rounds=2
while [ $# -gt 0 ]; do
    case $1 in
    --district) [ $# -ge 2 ] || usage; district=$(cd "$2" && pwd); shift 2 ;;
    --rate) [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || usage; rounds=$2; shift 2 ;;
    *) usage ;;
    esac
done
limit_mb=${LIMIT_MB:-256}
[ -s "$district/devices.csv" ] && [ -s "$district/grids.geojson" ] ||
    { echo "$district: no devices.csv and grids.geojson (make one with gridsim district)" >&2; exit 1; }
out=${LOAD_OUT:-$(mktemp -d /tmp/gridgate-load.XXXXXX)}
mkdir -p "$out"
devices=$(($(wc -l <"$district/devices.csv") - 1))
count=$((devices * rounds))

# shellcheck source=../scripts/servers.sh
. "$root/scripts/servers.sh"
gateway_pid= sim_pid=
cleanup() {
    trap - EXIT INT TERM
    gg_stop_pid "$sim_pid"
    gg_stop_pid "$gateway_pid"
    "$root/scripts/servers.sh" stop "$out/servers"
}
trap cleanup EXIT INT TERM
"$root/scripts/servers.sh" start "$out/servers"
# shellcheck disable=SC1091
. "$out/servers/servers.env"

config=$out/gridgate.yaml
cat >"$config" <<YAML
mqtt:
  uri: "tcp://127.0.0.1:$MQTT_PORT"
  client_id: gridgate-load-$$
influx:
  url: "http://127.0.0.1:$INFLUX_PORT"
  database: gridgate
  dead_letter: "$out/influx-rejected.lp"
store:
  path: "$out/gridgate.db"
journal:
  dir: "$out/journal"
district:
  grids: "$district/grids.geojson"
  devices: "$district/devices.csv"
rules:
  dir: "$root/rules"
api:
  enabled: false
gateway:
  stats_interval_s: 1
YAML

"$build/gridgate" run -c "$config" >"$out/gridgate.log" 2>&1 &
gateway_pid=$!
gg_wait_until 60 grep -q "subscribed to" "$out/gridgate.log" ||
    { tail -20 "$out/gridgate.log" >&2; exit 1; }
idle_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$gateway_pid/status")
echo "load: $devices devices, $rounds round(s) at $rate/s ($count readings); gridgate idle: $((idle_kb / 1024)) MB"
"$build/gridsim" run --devices "$district/devices.csv" --broker "tcp://127.0.0.1:$MQTT_PORT" \
    --rate "$rate" --count "$count" --qos 1 --quiet --seed 1 >"$out/gridsim.log" 2>&1 &
sim_pid=$!

printf 'seconds\trss_kb\trss_anon_kb\trss_file_kb\n' >"$out/load.tsv"
sample() {
    awk -v t=$((SECONDS - start)) '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} /^RssFile:/ {f = $2}
        END {printf "%d\t%s\t%s\t%s\n", t, r, a, f}' "/proc/$gateway_pid/status" >>"$out/load.tsv"
}
start=$SECONDS
while kill -0 "$sim_pid" 2>/dev/null; do
    sample
    sleep 1
done
wait "$sim_pid" || { echo "gridsim failed: $(tail -3 "$out/gridsim.log")" >&2; exit 1; }
sim_pid=
acked=$(grep -o 'summary: sent [0-9]*, acked [0-9]*' "$out/gridsim.log" | grep -o '[0-9]*$' || echo 0)
# Until gridgate has accepted every reading and its InfluxDB feeder is
# not behind (its stats line each second), at most 120 s.
stats_field() { grep '\[stats\]' "$out/gridgate.log" | tail -n 1 | grep -o "$1" | grep -o '[0-9]*' | head -n 1; }
written() {
    sample
    [ "$(stats_field 'accepted [0-9]*')" = "$count" ] && [ "$(stats_field 'influx [0-9]* behind')" = 0 ]
}
gg_wait_until 120 written || echo "load: gridgate had not written every reading after 120 s" >&2
accepted=$(stats_field 'accepted [0-9]*')
# Points per device type: each type's readings have one field that is
# always there, so the largest count among its fields.
in_influx=$(for measurement in $(cut -d, -f2 "$district/devices.csv" | tail -n +2 | sort -u); do
    curl -sf "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode db=gridgate \
        --data-urlencode "q=SELECT count(*) FROM \"$measurement\"" |
        grep -o '"values":\[\[[^]]*\]' || true
done | awk -F, '{ m = 0; for (i = 2; i <= NF; i++) { v = $i; gsub(/[^0-9]/, "", v); if (v + 0 > m) m = v + 0 } s += m }
    END { print s + 0 }')
read -r hwm < <(awk '/^VmHWM:/ {print $2}' "/proc/$gateway_pid/status")
awk -v hwm="$hwm" -v idle="$idle_kb" -v acked="$acked" -v accepted="${accepted:-0}" \
    -v influx="$in_influx" -v count="$count" -v limit="$limit_mb" '
NR > 1 { if ($3 > a) a = $3; if ($4 > f) f = $4; n = NR }
END {
    printf "load: sent %d, acknowledged by the broker %s, accepted by gridgate %s, in InfluxDB %s\n",
        count, acked, accepted, influx
    printf "load: gridgate peak RSS (VmHWM) %.1f MB (idle after start %.1f MB); peaks: anonymous %.1f MB, file pages %.1f MB\n",
        hwm / 1024, idle / 1024, a / 1024, f / 1024
    bad = 0
    if (acked != count || accepted != count || influx != count) { print "load: FAIL: readings missing"; bad = 1 }
    if (hwm / 1024 > limit) { print "load: FAIL: peak RSS over " limit " MB"; bad = 1 }
    exit bad
}' "$out/load.tsv"
echo "load: figures in $out (load.tsv, gridgate.log)"
