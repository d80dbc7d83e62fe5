#!/usr/bin/env bash
# The CoAP adapter against the real coap-client-openssl (libcoap 4.3.1),
# with real mosquitto and InfluxDB behind the gateway.
#
#   test_coap.sh GRIDGATE_BIN SOURCE_DIR
#
# Plain UDP: JSON, SenML JSON and SenML CBOR readings answer 2.04 and land
# in InfluxDB; bad JSON 4.00 with a diagnostic; unknown device 4.04;
# Content-Format 0 and 60 4.15; GET 4.05; unknown path 4.04;
# /.well-known/core lists the resources; a block-wise upload under
# payload.max_bytes 2.04, over it 4.13 with Size1; a device with a key 4.01.
# DTLS-PSK: the right identity and key 2.04 (text and hex: keys), a wrong
# key or an unknown identity no answer, device A's identity on device B's
# path 4.03. A storm of garbage datagrams on both ports leaves the server
# answering. SIGTERM stops the gateway with exit 0.
set -euo pipefail

gridgate=$1
src=$2
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work coap gateway_pid

command -v coap-client-openssl >/dev/null || fail "coap-client-openssl not found (package libcoap3-bin)"

gg_start_servers
coap_port=$(gg_free_udp_port)
dtls_port=$(gg_free_udp_port)
while [ "$dtls_port" = "$coap_port" ]; do dtls_port=$(gg_free_udp_port); done

# Two devices with keys: smoke-000010 (text key), smoke-000011 (hex: key,
# the bytes of "key-eleven").
cat >"$work/psk.csv" <<'CSV'
# device_id,key
device_id,key
smoke-000010,secret-ten
smoke-000011,hex:6b65792d656c6576656e
CSV
cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-coap, qos: 1 }
coap:     { enabled: true, listen: "127.0.0.1", port: $coap_port, dtls_port: $dtls_port, psk_file: "psk.csv" }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
payload:  { max_bytes: 4096 }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
gateway:  { stats_interval_s: 1 }
YAML
mkdir -p "$work/var"

"$gridgate" run -c "$work/gridgate.yaml" >"$work/gridgate.log" 2>&1 &
gateway_pid=$!
gg_wait_until 15 grep -q "\[coap\] listening on" "$work/gridgate.log" ||
    fail "gridgate did not start its CoAP server" "$work/gridgate.log"

U="coap://127.0.0.1:$coap_port"
S="coaps://127.0.0.1:$dtls_port"
# coap ARGS...: the last response coap-client-openssl logged (-v 7 prints
# every PDU; it exits 0 whatever the answer, and prints nothing for an
# empty 2.04), e.g. "v:1 t:ACK c:4.00 i:1234 {01} [ ] :: 'diagnostic'".
coap() {
    timeout 30 coap-client-openssl -v 7 -B "${COAP_WAIT:-5}" "$@" 2>&1 |
        grep -E '^v:1 t:[A-Z]+ c:[0-9]\.[0-9]{2}' | tail -n 1 || true
}
code_of() { sed -nE 's/^v:1 t:[A-Z]+ c:([0-9]\.[0-9]{2}).*/\1/p' <<<"$1"; }
# expect CODE WHAT ARGS...: the answer's code is CODE; sets $answer.
expect() {
    local want=$1 what=$2
    shift 2
    answer=$(coap "$@")
    [ "$(code_of "$answer")" = "$want" ] ||
        fail "$what: expected $want, got '${answer:-no answer}'" "$work/gridgate.log"
}
query() { gg_influx_query "$influx_port" gridgate "$1"; }
influx_has() { query "$1" | grep -q "$2"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
dev=devices/smoke-000001/telemetry

echo "JSON reading -> 2.04, in InfluxDB"
ts=$(now_ms)
expect 2.04 "JSON reading" -m post -t 50 -e "{\"ts\": $ts, \"smoke\": 0.01, \"temp\": 21.5}" "$U/$dev"
gg_wait_until 10 influx_has "SELECT temp FROM smoke WHERE device = 'smoke-000001' AND time = ${ts}ms" 21.5 ||
    fail "the CoAP JSON reading did not reach InfluxDB" "$work/gridgate.log"
echo "JSON without Content-Format, as PUT and NON -> 2.04"
expect 2.04 "JSON without Content-Format" -m put -e '{"smoke": 0.01}' "$U/$dev"
expect 2.04 "NON request" -N -m post -e '{"smoke": 0.01}' "$U/$dev"
expect 2.04 "event" -m post -t 50 -e '{"tamper": true}' "$U/devices/smoke-000001/event"

echo "SenML JSON (110) -> 2.04, in InfluxDB"
ts_s=$(($(date +%s) - 7))
expect 2.04 "SenML JSON reading" -m post -t 110 \
    -e "[{\"bt\": $ts_s, \"n\": \"temp\", \"v\": 23.5}, {\"n\": \"smoke\", \"v\": 0.02}]" \
    "$U/devices/smoke-000002/telemetry"
gg_wait_until 10 influx_has "SELECT temp FROM smoke WHERE device = 'smoke-000002' AND time = ${ts_s}s" 23.5 ||
    fail "the SenML JSON reading did not reach InfluxDB" "$work/gridgate.log"

echo "SenML CBOR (112) -> 2.04, in InfluxDB"
ts_s=$(($(date +%s) - 5))
# [{-3 (bt): ts_s, 0 (n): "temp", 2 (v): 24.5 as a half float}]
printf '%b' "$(printf '\\x81\\xa3\\x22\\x1a\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x64temp\\x02\\xf9\\x4e\\x20' \
    $((ts_s >> 24 & 255)) $((ts_s >> 16 & 255)) $((ts_s >> 8 & 255)) $((ts_s & 255)))" >"$work/senml.cbor"
[ "$(wc -c <"$work/senml.cbor")" = 18 ] || fail "the CBOR test payload is not 18 bytes"
expect 2.04 "SenML CBOR reading" -m post -t 112 -f "$work/senml.cbor" "$U/devices/smoke-000003/telemetry"
gg_wait_until 10 influx_has "SELECT temp FROM smoke WHERE device = 'smoke-000003' AND time = ${ts_s}s" 24.5 ||
    fail "the SenML CBOR reading did not reach InfluxDB" "$work/gridgate.log"

echo "bad JSON -> 4.00 with a diagnostic"
expect 4.00 "bad JSON" -m post -t 50 -e '{"smoke": 0.2, "temp": ' "$U/$dev"
assert_contains "$answer" ":: '" "4.00 carries a diagnostic payload"
assert_contains "$answer" "JSON" "the diagnostic names the problem"
grep -q "device smoke-000001: telemetry bad payload" "$work/gridgate.log" ||
    fail "the bad payload was not logged with its device" "$work/gridgate.log"

echo "unknown device -> 4.04"
expect 4.04 "unknown device" -m post -t 50 -e '{"smoke": 0.01}' "$U/devices/no-such-device/telemetry"

echo "Content-Format 0 and 60 -> 4.15"
expect 4.15 "Content-Format 0" -m post -t 0 -e 'smoke=0.01' "$U/$dev"
assert_contains "$answer" "Content-Format 0" "the 4.15 diagnostic names the format"
expect 4.15 "Content-Format 60" -m post -t 60 -e 'x' "$U/$dev"

echo "GET and DELETE on telemetry -> 4.05; unknown paths -> 4.04"
expect 4.05 "GET on telemetry" -m get "$U/$dev"
expect 4.05 "DELETE on telemetry" -m delete "$U/$dev"
expect 4.04 "POST on an unknown path" -m post -e '{}' "$U/devices/smoke-000001/nope"
expect 4.04 "GET on an unknown path" -m get "$U/no/such/path"
expect 4.04 "POST on a path one level too deep" -m post -e '{}' "$U/$dev/extra"

echo "/.well-known/core lists the resources"
core=$(timeout 30 coap-client-openssl -B 5 -m get "$U/.well-known/core" 2>&1)
assert_contains "$core" '</devices/{id}/telemetry>' "telemetry resource in /.well-known/core"
assert_contains "$core" '</devices/{id}/event>' "event resource in /.well-known/core"
assert_contains "$core" 'rt="gridgate.telemetry"' "telemetry resource type"
assert_contains "$core" 'ct="50 110 112"' "content formats"

echo "block-wise upload under the limit -> 2.04, in InfluxDB"
ts=$(now_ms)
{
    printf '{"ts": %s, "smoke": 0.03' "$ts"
    for i in $(seq -w 1 30); do printf ', "note%s": "%s"' "$i" "$(printf 'n%.0s' $(seq 1 80))"; done
    printf '}'
} >"$work/mid.json"
size=$(wc -c <"$work/mid.json")
if [ "$size" -le 2048 ] || [ "$size" -ge 4096 ]; then fail "mid.json is $size bytes (want 2049..4095)"; fi
out=$(timeout 30 coap-client-openssl -v 7 -B 5 -m post -t 50 -b 512 -f "$work/mid.json" "$U/$dev" 2>&1 || true)
[ "$(grep -c 'c:2.31' <<<"$out")" -ge 4 ] || fail "the upload was not block-wise: $(grep -E '^v:1' <<<"$out")"
answer=$(grep -E '^v:1 t:[A-Z]+ c:[0-9]\.[0-9]{2}' <<<"$out" | tail -n 1)
assert_eq "$(code_of "$answer")" 2.04 "block-wise upload of $size bytes"
gg_wait_until 10 influx_has "SELECT note30 FROM smoke WHERE device = 'smoke-000001' AND time = ${ts}ms" nnnn ||
    fail "the block-wise reading did not reach InfluxDB" "$work/gridgate.log"

echo "block-wise upload over the limit -> 4.13 with Size1"
{ printf '{"smoke": 0.03, "pad": "'; head -c 6000 /dev/zero | tr '\0' 'x'; printf '"}'; } >"$work/big.json"
expect 4.13 "6 kB block-wise upload" -m post -t 50 -b 512 -f "$work/big.json" "$U/$dev"
assert_contains "$answer" "Size1:4096" "4.13 carries Size1 = payload.max_bytes"

echo "a device with a key over plain UDP -> 4.01"
expect 4.01 "keyed device over UDP" -m post -t 50 -e '{"smoke": 0.01}' "$U/devices/smoke-000010/telemetry"

echo "DTLS-PSK: right identity and key -> 2.04, in InfluxDB"
ts=$(now_ms)
expect 2.04 "DTLS-PSK reading" -u smoke-000010 -k secret-ten -m post -t 50 \
    -e "{\"ts\": $ts, \"smoke\": 0.04}" "$S/devices/smoke-000010/telemetry"
gg_wait_until 10 influx_has "SELECT smoke FROM smoke WHERE device = 'smoke-000010' AND time = ${ts}ms" 0.04 ||
    fail "the DTLS reading did not reach InfluxDB" "$work/gridgate.log"
expect 2.04 "DTLS-PSK with a hex: key" -u smoke-000011 -k key-eleven -m post -t 50 \
    -e '{"smoke": 0.05}' "$S/devices/smoke-000011/telemetry"

echo "DTLS-PSK: wrong key, unknown identity -> no answer"
answer=$(COAP_WAIT=3 coap -u smoke-000010 -k wrong-key -m post -e '{"smoke": 0.9}' "$S/devices/smoke-000010/telemetry")
[ -z "$answer" ] || fail "a wrong key got an answer: $answer" "$work/gridgate.log"
answer=$(COAP_WAIT=3 coap -u intruder -k secret-ten -m post -e '{"smoke": 0.9}' "$S/devices/smoke-000010/telemetry")
[ -z "$answer" ] || fail "an unknown identity got an answer: $answer" "$work/gridgate.log"
grep -q "unknown PSK identity 'intruder'" "$work/gridgate.log" ||
    fail "the refused identity was not logged" "$work/gridgate.log"

echo "DTLS-PSK: device A's identity on device B's path -> 4.03"
expect 4.03 "identity of smoke-000010 posting for smoke-000011" -u smoke-000010 -k secret-ten \
    -m post -t 50 -e '{"smoke": 0.9}' "$S/devices/smoke-000011/telemetry"
expect 4.03 "identity of smoke-000010 posting for an unkeyed device" -u smoke-000010 -k secret-ten \
    -m post -t 50 -e '{"smoke": 0.9}' "$S/$dev"

echo "a storm of garbage datagrams, then a valid request -> 2.04"
read -r -a hex <<<"$(printf '\\x%02x ' {0..255})"
# storm PORT COUNT: datagrams of 4..43 random bytes, two in three with a
# CoAP version 1 first byte so that the option parser gets exercised.
storm() {
    local i j d
    for ((i = 0; i < $2; i++)); do
        d=${hex[0x40 + RANDOM % 16]}
        ((i % 3 != 0)) || d=${hex[RANDOM % 256]}
        for ((j = 0; j < 4 + RANDOM % 40; j++)); do d+=${hex[RANDOM % 256]}; done
        printf '%b' "$d" >"/dev/udp/127.0.0.1/$1"
    done
}
storm "$coap_port" 2000
storm "$dtls_port" 300
kill -0 "$gateway_pid" 2>/dev/null || fail "gridgate died in the datagram storm" "$work/gridgate.log"
expect 2.04 "valid request after the storm" -m post -t 50 -e '{"smoke": 0.01}' "$U/$dev"
expect 2.04 "DTLS request after the storm" -u smoke-000010 -k secret-ten -m post -t 50 \
    -e '{"smoke": 0.01}' "$S/devices/smoke-000010/telemetry"

echo "SIGTERM stops the gateway cleanly"
kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=
assert_eq "$status" 0 "gridgate's exit status after SIGTERM"
grep -q "stopped" "$work/gridgate.log" || fail "no 'stopped' line in the log" "$work/gridgate.log"
if grep -qE "ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:" "$work/gridgate.log"; then
    fail "a sanitizer reported a problem" "$work/gridgate.log"
fi
echo "PASS"
