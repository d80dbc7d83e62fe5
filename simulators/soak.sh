#!/usr/bin/env bash
# The soak run (issue 8; docs/benchmarks.md "Soak"): gridgate on the
# sample district with the shipped rules, mosquitto and influxd on
# 127.0.0.1 (scripts/servers.sh), the device simulator at a steady rate
# with alarms (so cases open, escalate and notices go out) and the HTTP
# API read every few seconds, for a given time. Every SAMPLE_S seconds it
# records gridgate's resident memory and open file descriptors; at the end
# it compares the last quarter of the run with the first (after a warm-up)
# and fails if memory grew by more than GROWTH_MB or descriptors by more
# than GROWTH_FDS, or if gridgate did not take every reading the broker
# acknowledged.
#
#   simulators/soak.sh BUILD_DIR [SECONDS [RATE]]     (defaults 600 s, 500/s)
#
# Writes soak.tsv (time, RSS kB, open fds) and the logs to
# OUT (SOAK_OUT, else a new /tmp/gridgate-soak.XXXXXX, kept).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [SECONDS [RATE]]" >&2; exit 2; }
build=$(cd "$1" && pwd)
seconds=${2:-600}
rate=${3:-500}
sample_s=${SAMPLE_S:-10}
growth_mb=${GROWTH_MB:-8}
growth_fds=${GROWTH_FDS:-2}
out=${SOAK_OUT:-$(mktemp -d /tmp/gridgate-soak.XXXXXX)}
mkdir -p "$out"

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

api_port=$(gg_free_port)
tokens=$out/tokens.yaml
config=$out/gridgate.yaml
cat >"$config" <<YAML
mqtt:
  uri: "tcp://127.0.0.1:$MQTT_PORT"
  client_id: gridgate-soak-$$
influx:
  url: "http://127.0.0.1:$INFLUX_PORT"
  database: gridgate
store:
  path: "$out/gridgate.db"
journal:
  dir: "$out/journal"
district:
  grids: "$root/config/district/grids.geojson"
  devices: "$root/config/district/devices.csv"
rules:
  dir: "$root/rules"
api:
  enabled: true
  listen: "127.0.0.1"
  port: $api_port
  tokens: "$tokens"
gateway:
  stats_interval_s: 10
YAML
token=$("$build/gridgate" token new --role commander --scope district --name soak -c "$config")

"$build/gridgate" run -c "$config" >"$out/gridgate.log" 2>&1 &
gateway_pid=$!
gg_wait_until 20 grep -q "subscribed to" "$out/gridgate.log" ||
    { tail -20 "$out/gridgate.log" >&2; exit 1; }
"$build/gridsim" run --devices "$root/config/district/devices.csv" \
    --broker "tcp://127.0.0.1:$MQTT_PORT" --rate "$rate" --alarm-every 200 --quiet \
    --duration "$seconds" --seed 1 >"$out/gridsim.log" 2>&1 &
sim_pid=$!

printf 'seconds\trss_kb\tfds\trss_anon_kb\trss_file_kb\n' >"$out/soak.tsv"
start=$SECONDS
while kill -0 "$sim_pid" 2>/dev/null; do
    # Resident memory in all, and its two parts: anonymous (the heap:
    # what a leak grows) and file pages (the journal's mapped segments).
    read -r rss anon file < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} /^RssFile:/ {f = $2}
        END {print r, a, f}' "/proc/$gateway_pid/status")
    fds=$(find "/proc/$gateway_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    printf '%d\t%s\t%s\t%s\t%s\n' $((SECONDS - start)) "$rss" "$fds" "$anon" "$file" >>"$out/soak.tsv"
    # An operator's screen: the open cases and the figures, as the API serves them.
    curl -sf -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$api_port/api/v1/cases?state=open&limit=50" >/dev/null || true
    curl -sf -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$api_port/api/v1/stats?group=street" >/dev/null || true
    sleep "$sample_s"
done
wait "$sim_pid" || { echo "gridsim failed: $(tail -3 "$out/gridsim.log")" >&2; exit 1; }
sim_pid=
acked=$(grep -o 'summary: sent [0-9]*, acked [0-9]*' "$out/gridsim.log" | grep -o '[0-9]*$' || echo "?")
# What gridgate took, from its own health points in InfluxDB (the last
# one, written after the stream ended).
sleep 12
accepted=$(curl -sf "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode db=gridgate \
    --data-urlencode 'q=SELECT last(readings_accepted) FROM gridgate' |
    grep -o '"values":\[\[[^]]*\]' | grep -o '[0-9]*\]$' | tr -d ']' || echo "?")

# First quarter after a minute's warm-up against the last quarter.
awk -v growth_mb="$growth_mb" -v growth_fds="$growth_fds" -v acked="$acked" -v accepted="$accepted" '
NR > 1 { t[NR] = $1; r[NR] = $2; f[NR] = $3; a[NR] = $4; n = NR }
END {
    warm = 0; for (i = 2; i <= n; i++) if (t[i] >= 60) { warm = i; break }
    if (!warm || n - warm < 8) { print "soak: too short to judge (run at least 3 minutes)"; exit 1 }
    q = int((n - warm + 1) / 4)
    for (i = warm; i < warm + q; i++) { r1 += r[i]; a1 += a[i]; f1 = (f[i] > f1 ? f[i] : f1) }
    for (i = n - q + 1; i <= n; i++) { r2 += r[i]; a2 += a[i]; f2 = (f[i] > f2 ? f[i] : f2) }
    r1 /= q; r2 /= q; a1 /= q; a2 /= q
    max = 0; for (i = 2; i <= n; i++) if (r[i] > max) max = r[i]
    printf "soak: %d s, acknowledged by the broker %s, accepted by gridgate %s; RSS %.1f MB (first quarter) -> %.1f MB (last quarter), peak %.1f MB; anonymous %.1f -> %.1f MB; fds %d -> %d\n",
        t[n], acked, accepted, r1 / 1024, r2 / 1024, max / 1024, a1 / 1024, a2 / 1024, f1, f2
    bad = 0
    if ((r2 - r1) / 1024 > growth_mb) { print "soak: FAIL: memory grew by more than " growth_mb " MB"; bad = 1 }
    if (f2 - f1 > growth_fds) { print "soak: FAIL: file descriptors grew"; bad = 1 }
    if (acked != accepted) { print "soak: FAIL: readings acknowledged and accepted differ"; bad = 1 }
    exit bad
}' "$out/soak.tsv"
echo "soak: figures in $out (soak.tsv, gridgate.log)"
