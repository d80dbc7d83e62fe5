#!/usr/bin/env bash
# The MQTT adapter against a real mosquitto and InfluxDB: session, reconnect,
# login and TLS.
#
#   test_mqtt_session.sh GRIDGATE_BIN SOURCE_DIR [CASES]
#
# CASES is any of "a b c d" (default: all of them); MQTT_PROTOCOL=311 runs
# them over MQTT 3.1.1 instead of 5:
# (a) persistent session: readings published (QoS 1) while gridgate is
#     stopped all reach InfluxDB once it is started again;
# (b) broker restart mid-stream: mosquitto (persistence on) is stopped and
#     started again on the same port while a publisher sends; every reading
#     the broker acknowledged reaches InfluxDB, gridgate reconnecting alone;
# (c) password login: the right password gets data through; a wrong one is
#     logged as refused and retried, and the gateway neither crashes nor
#     exits;
# (d) TLS: a CA made here signs the broker's certificate; gridgate with that
#     CA gets data through, with another CA it is refused and logs why; a
#     listener that requires client certificates takes cert_file/key_file.
#
# Each case runs its own broker(s) on free ports and its own InfluxDB
# database; one influxd serves them all. The brokers are started here, not
# by gg_start_mosquitto, because each case needs its own broker settings.
set -euo pipefail

gridgate=$1
src=$2
cases=${3:-a b c d}
protocol=${MQTT_PROTOCOL:-5}
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

work=$(mktemp -d /tmp/gridgate-mqtt.XXXXXX)
# Run as root, mosquitto drops to user "mosquitto", which must reach the
# config, certificates and password file below.
chmod 755 "$work"
gateway_pids=()
broker_pids=()
publisher_pid=
cleanup() {
    local pid
    [ -z "$publisher_pid" ] || kill "$publisher_pid" 2>/dev/null || true
    for pid in "${gateway_pids[@]}"; do gg_stop_pid "$pid"; done
    for pid in "${broker_pids[@]}"; do gg_stop_pid "$pid"; done
    gg_stop_pid "${INFLUXD_PID:-}"
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

gg_start_influxd "$work/influxdb"
influx_port=$INFLUXD_PORT

# start_broker DIR PORT [CONFIG_LINES]: mosquitto with DIR/mosquitto.conf
# (listener PORT on 127.0.0.1, anonymous access unless CONFIG_LINES say
# otherwise); sets BROKER_PID and remembers it for cleanup.
start_broker() {
    local dir=$1 port=$2 extra=${3:-}
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        echo "listener $port 127.0.0.1"
        echo "log_dest stderr"
        echo "log_type error"
        echo "log_type warning"
        echo "log_type notice"
        echo "max_queued_messages 100000"
        printf '%s\n' "$extra"
        case $extra in *allow_anonymous*) ;; *) echo "allow_anonymous true" ;; esac
    } >"$dir/mosquitto.conf"
    chmod 644 "$dir/mosquitto.conf"
    "$(gg_mosquitto_bin)" -c "$dir/mosquitto.conf" >>"$dir/mosquitto.log" 2>&1 &
    BROKER_PID=$!
    broker_pids+=("$BROKER_PID")
    if ! gg_wait_until 10 gg_port_in_use "$port" || ! kill -0 "$BROKER_PID" 2>/dev/null; then
        fail "mosquitto did not start on 127.0.0.1:$port" "$dir/mosquitto.log"
    fi
}

# gateway_config NAME DB MQTT_LINES: writes $work/NAME/gridgate.yaml; the
# mqtt section gets MQTT_LINES (YAML, two-space indented "key: value").
gateway_config() {
    local name=$1 db=$2 mqtt=$3
    mkdir -p "$work/$name"
    gg_influx_create_db "$influx_port" "$db"
    cat >"$work/$name/gridgate.yaml" <<YAML
mqtt:
  client_id: gridgate-$name
  qos: 1
  protocol: $protocol
  reconnect_min_ms: 100
  reconnect_max_ms: 1000
$mqtt
influx:   { url: "http://127.0.0.1:$influx_port", database: $db, flush_interval_ms: 100 }
store:    { path: "cases.db" }
journal:  { dir: "journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
YAML
}

# start_gateway NAME: runs gridgate on $work/NAME/gridgate.yaml, log in
# $work/NAME/gridgate.log (appended); sets GATEWAY_PID.
start_gateway() {
    "$gridgate" run -c "$work/$1/gridgate.yaml" >>"$work/$1/gridgate.log" 2>&1 &
    GATEWAY_PID=$!
    gateway_pids+=("$GATEWAY_PID")
}

# stop_gateway PID LOG: SIGTERM; the gateway must exit 0 within 20 s.
stop_gateway() {
    local pid=$1 log=$2 status=0
    kill -TERM "$pid"
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "gridgate (pid $pid) did not stop within 20 s of SIGTERM" "$log"
    wait "$pid" || status=$?
    assert_eq "$status" 0 "gridgate's exit status after SIGTERM"
}

log_has() { grep -q -- "$2" "$1"; }
log_count() { grep -c -- "$2" "$1" || true; }

# reading TS [SMOKE]: one smoke detector reading, below every rule's threshold.
reading() { echo "{\"ts\": $1, \"smoke\": ${2:-0.01}, \"temp\": 21.5, \"battery\": 90, \"alarm\": false}"; }
device() { printf 'smoke-%06d' $((($1 % 240) + 1)); }

# points DB: how many smoke points DB holds (0 when none).
points() {
    local n
    n=$(gg_influx_query "$influx_port" "$1" "SELECT count(smoke) FROM smoke" |
        grep -o '"values":\[\["[^"]*",[0-9]*\]\]' | grep -o ',[0-9]*\]' | tr -d ',]' || true)
    echo "${n:-0}"
}
points_are() { [ "$(points "$1")" = "$2" ]; }

# wait_points DB N SECONDS LOG: waits until DB holds exactly N smoke points.
wait_points() {
    gg_wait_until "$3" points_are "$1" "$2" ||
        fail "$1: expected $2 points in InfluxDB, found $(points "$1")" "$4"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

case_a() {
    echo "(a) persistent session: 50 readings published while gridgate is stopped"
    local port dir=$work/a log=$work/a/gridgate.log n=50 base
    port=$(gg_free_port)
    start_broker "$work/a/broker" "$port" "persistence false"
    gateway_config a mqtt_a "  uri: \"tcp://127.0.0.1:$port\""
    start_gateway a
    gg_wait_until 15 log_has "$log" "subscribed to" || fail "gridgate did not subscribe" "$log"
    log_has "$log" "session present: no" || fail "the first session should be new" "$log"
    stop_gateway "$GATEWAY_PID" "$log"

    base=$(($(now_ms) - 3600000))
    for i in $(seq 0 $((n - 1))); do
        mosquitto_pub -p "$port" -q 1 -t "devices/$(device "$i")/telemetry" -m "$(reading $((base + i)))" ||
            fail "mosquitto_pub failed while gridgate was stopped"
    done
    start_gateway a
    gg_wait_until 15 log_has "$log" "session present: yes" ||
        fail "the broker did not keep gridgate's session" "$log"
    wait_points mqtt_a "$n" 30 "$log"
    echo "(a) ok: $n of $n readings arrived after the restart"

    if [ "$protocol" = 5 ]; then
        echo "(a) MQTT 5 Content Type wins over the payload's first byte"
        # Flat JSON labelled SenML CBOR is decoded as CBOR, and refused.
        mosquitto_pub -V 5 -p "$port" -q 1 -t devices/smoke-000241/telemetry \
            -D publish content-type application/senml+cbor -m "$(reading $((base + n)))"
        gg_wait_until 10 log_has "$log" "device smoke-000241: telemetry bad payload" ||
            fail "a payload labelled application/senml+cbor was not decoded as CBOR" "$log"
        mosquitto_pub -V 5 -p "$port" -q 1 -t devices/smoke-000242/telemetry \
            -D publish content-type "application/json; charset=utf-8" -m "$(reading $((base + n + 1)))"
        # SenML JSON, labelled so; its time is in seconds, 10 s before base.
        mosquitto_pub -V 5 -p "$port" -q 1 -t devices/smoke-000243/telemetry \
            -D publish content-type application/senml+json \
            -m "[{\"n\": \"smoke\", \"v\": 0.02, \"t\": $((base / 1000 - 10))}]"
        wait_points mqtt_a $((n + 2)) 30 "$log"
    fi
    stop_gateway "$GATEWAY_PID" "$log"
}

# publish_until_accepted PORT TOPIC PAYLOAD: retries while the broker is
# down or drops the connection before its PUBACK; fails after ~30 s.
publish_until_accepted() {
    for _ in $(seq 1 150); do
        timeout 10 mosquitto_pub -p "$1" -q 1 -t "$2" -m "$3" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

accepted_at_least() { [ "$(wc -l <"$1")" -ge "$2" ]; }

case_b() {
    echo "(b) broker restart mid-stream: 300 readings, mosquitto stopped and started again"
    local port dir=$work/b log=$work/b/gridgate.log n=300 base accepted broker_conf
    port=$(gg_free_port)
    mkdir -p "$dir/broker/data"
    # The broker keeps gridgate's session and its queued messages across
    # its own restart only with persistence on.
    chmod 777 "$dir/broker/data"
    broker_conf="persistence true
persistence_location $dir/broker/data/
autosave_interval 1"
    start_broker "$dir/broker" "$port" "$broker_conf"
    gateway_config b mqtt_b "  uri: \"tcp://127.0.0.1:$port\""
    start_gateway b
    local gateway=$GATEWAY_PID
    gg_wait_until 15 log_has "$log" "subscribed to" || fail "gridgate did not subscribe" "$log"

    base=$(($(now_ms) - 7200000))
    : >"$dir/accepted"
    (
        for i in $(seq 0 $((n - 1))); do
            if publish_until_accepted "$port" "devices/$(device "$i")/telemetry" "$(reading $((base + i)))"; then
                echo "$i" >>"$dir/accepted"
            else
                echo "reading $i was never accepted" >>"$dir/publisher.log"
            fi
        done
    ) &
    publisher_pid=$!

    gg_wait_until 60 accepted_at_least "$dir/accepted" 80 ||
        fail "the publisher did not get going" "$log"
    echo "    stopping mosquitto after $(wc -l <"$dir/accepted") accepted readings"
    gg_stop_pid "$BROKER_PID"
    sleep 1
    start_broker "$dir/broker" "$port" "$broker_conf"
    echo "    mosquitto is back on port $port"

    gg_wait_until 90 bash -c "! kill -0 $publisher_pid" || fail "the publisher did not finish in time"
    wait "$publisher_pid" || true
    publisher_pid=
    accepted=$(wc -l <"$dir/accepted")
    [ ! -s "$dir/publisher.log" ] || fail "$(cat "$dir/publisher.log")"
    assert_eq "$accepted" "$n" "readings the broker accepted"
    wait_points mqtt_b "$accepted" 60 "$log"
    kill -0 "$gateway" 2>/dev/null || fail "gridgate exited during the broker restart" "$log"
    [ "$(log_count "$log" "connected to tcp://")" -ge 2 ] ||
        fail "gridgate did not log a reconnect" "$log"
    log_has "$log" "connection to tcp://127.0.0.1:$port lost" ||
        fail "gridgate did not log the lost connection" "$log"
    stop_gateway "$gateway" "$log"
    # The final [stats] line (written at the stop): what gridgate took,
    # redeliveries by the restarted broker included.
    local took
    took=$(grep "\[stats\]" "$log" | tail -n 1 | sed -n 's/.* accepted \([0-9]*\),.*/\1/p')
    [ "${took:-0}" -ge "$accepted" ] || fail "gridgate accepted ${took:-0} readings, fewer than the $accepted published"
    echo "(b) ok: sent $n, accepted by the broker $accepted, in InfluxDB $(points mqtt_b), lost 0," \
        "duplicates 0 (gridgate took $took: $((took - accepted)) redelivered, written once)"
}

case_c() {
    echo "(c) password login: the right password works, a wrong one is refused and retried"
    local port dir=$work/c good=$work/c-good/gridgate.log bad=$work/c-bad/gridgate.log base
    port=$(gg_free_port)
    mkdir -p "$dir"
    chmod 755 "$dir"
    mosquitto_passwd -b -c "$dir/passwd" gridgate 's3cret gw' >/dev/null
    mosquitto_passwd -b "$dir/passwd" device devpass >/dev/null
    chmod 644 "$dir/passwd"
    start_broker "$dir/broker" "$port" "allow_anonymous false
password_file $dir/passwd
persistence false"

    gateway_config c-good mqtt_c "  uri: \"tcp://127.0.0.1:$port\"
  username: gridgate
  password: \"s3cret gw\""
    start_gateway c-good
    local good_pid=$GATEWAY_PID
    gg_wait_until 15 log_has "$good" "subscribed to" ||
        fail "gridgate with the right password did not subscribe" "$good"
    base=$(($(now_ms) - 10800000))
    for i in 0 1 2 3 4; do
        mosquitto_pub -p "$port" -u device -P devpass -q 1 -t "devices/$(device "$i")/telemetry" \
            -m "$(reading $((base + i)))" || fail "mosquitto_pub with a password failed"
    done
    wait_points mqtt_c 5 30 "$good"

    gateway_config c-bad mqtt_c "  uri: \"tcp://127.0.0.1:$port\"
  username: gridgate
  password: wrong"
    start_gateway c-bad
    local bad_pid=$GATEWAY_PID
    gg_wait_until 20 log_has "$bad" "(attempt 3)" ||
        fail "gridgate with a wrong password did not keep retrying" "$bad"
    log_has "$bad" "cannot connect to tcp://127.0.0.1:$port (attempt 1): refused by the broker" ||
        fail "the refusal was not logged as such" "$bad"
    sleep 1
    kill -0 "$bad_pid" 2>/dev/null || fail "gridgate with a wrong password exited" "$bad"
    log_has "$bad" "connected to" && fail "gridgate with a wrong password connected" "$bad"
    stop_gateway "$bad_pid" "$bad"
    stop_gateway "$good_pid" "$good"
    echo "(c) ok: $(log_count "$bad" "cannot connect to") refusals logged, no crash"
}

# make_ca DIR NAME: a CA key and self-signed certificate DIR/NAME.{key,pem}.
make_ca() {
    cat >"$1/$2.cnf" <<CNF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = gridgate test $2
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1/$2.key" 2>/dev/null
    openssl req -x509 -new -config "$1/$2.cnf" -key "$1/$2.key" -days 2 -sha256 -out "$1/$2.pem"
}

# make_cert DIR NAME CA EXTENSIONS: a key and a certificate signed by CA.
make_cert() {
    printf '%s\n' "$4" >"$1/$2.ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1/$2.key" 2>/dev/null
    openssl req -new -key "$1/$2.key" -subj "/CN=$2" -out "$1/$2.csr"
    openssl x509 -req -in "$1/$2.csr" -CA "$1/$3.pem" -CAkey "$1/$3.key" -CAcreateserial \
        -days 2 -sha256 -extfile "$1/$2.ext" -out "$1/$2.pem" 2>/dev/null
}

case_d() {
    echo "(d) TLS: the right CA connects, another CA is refused, client certificates work"
    local tls_port client_port plain_port pki=$work/d/pki base
    local ok=$work/d-ok/gridgate.log wrong=$work/d-wrong/gridgate.log cert=$work/d-cert/gridgate.log
    tls_port=$(gg_free_port)
    client_port=$(gg_free_port)
    plain_port=$(gg_free_port)
    mkdir -p "$pki"
    chmod 755 "$work/d" "$pki"
    make_ca "$pki" ca
    make_ca "$pki" other-ca
    make_cert "$pki" server ca "subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth"
    make_cert "$pki" client ca "basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth"
    chmod 644 "$pki"/*
    # One broker: TLS, TLS with client certificates, and plain TCP for the
    # test's own publisher (mosquitto's settings are per listener).
    start_broker "$work/d/broker" "$plain_port" "persistence false
listener $tls_port 127.0.0.1
cafile $pki/ca.pem
certfile $pki/server.pem
keyfile $pki/server.key
listener $client_port 127.0.0.1
cafile $pki/ca.pem
certfile $pki/server.pem
keyfile $pki/server.key
require_certificate true"
    gg_wait_until 10 gg_port_in_use "$tls_port" || fail "no TLS listener" "$work/d/broker/mosquitto.log"

    gateway_config d-ok mqtt_d "  uri: \"ssl://127.0.0.1:$tls_port\"
  ca_file: \"$pki/ca.pem\""
    start_gateway d-ok
    local ok_pid=$GATEWAY_PID
    gg_wait_until 15 log_has "$ok" "subscribed to" || fail "gridgate did not connect over TLS" "$ok"
    base=$(($(now_ms) - 14400000))
    for i in 0 1 2; do
        mosquitto_pub -p "$plain_port" -q 1 -t "devices/$(device "$i")/telemetry" \
            -m "$(reading $((base + i)))" || fail "mosquitto_pub failed"
    done
    wait_points mqtt_d 3 30 "$ok"
    stop_gateway "$ok_pid" "$ok"

    gateway_config d-wrong mqtt_d "  uri: \"ssl://127.0.0.1:$tls_port\"
  ca_file: \"$pki/other-ca.pem\"
  tls_verify: true"
    start_gateway d-wrong
    local wrong_pid=$GATEWAY_PID
    gg_wait_until 20 log_has "$wrong" "(attempt 3)" ||
        fail "gridgate with the wrong CA did not keep retrying" "$wrong"
    log_has "$wrong" "certificate verify failed" ||
        fail "the TLS refusal was not logged with OpenSSL's reason" "$wrong"
    log_has "$wrong" "connected to" && fail "gridgate trusted a broker its CA did not sign" "$wrong"
    kill -0 "$wrong_pid" 2>/dev/null || fail "gridgate with the wrong CA exited" "$wrong"
    stop_gateway "$wrong_pid" "$wrong"

    gateway_config d-cert mqtt_d "  uri: \"ssl://127.0.0.1:$client_port\"
  ca_file: \"$pki/ca.pem\"
  cert_file: \"$pki/client.pem\"
  key_file: \"$pki/client.key\""
    start_gateway d-cert
    local cert_pid=$GATEWAY_PID
    gg_wait_until 15 log_has "$cert" "subscribed to" ||
        fail "gridgate did not connect with a client certificate" "$cert"
    for i in 3 4; do
        mosquitto_pub -p "$plain_port" -q 1 -t "devices/$(device "$i")/telemetry" \
            -m "$(reading $((base + i)))" || fail "mosquitto_pub failed"
    done
    wait_points mqtt_d 5 30 "$cert"
    stop_gateway "$cert_pid" "$cert"
    echo "(d) ok"
}

for c in $cases; do
    case $c in
    a | b | c | d) "case_$c" ;;
    *) fail "unknown case '$c' (a, b, c or d)" ;;
    esac
done
echo "PASS"
