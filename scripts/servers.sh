#!/usr/bin/env bash
# Starts and stops the real servers gridgate talks to — mosquitto and
# InfluxDB 1.x — on 127.0.0.1, each with its own port and data directory,
# never as a system service, always stopped by PID.
#
#   scripts/servers.sh start DIR [MQTT_PORT INFLUX_PORT]   (0 or none = a free port)
#   scripts/servers.sh stop DIR
#
# `start` writes DIR/servers.env (MQTT_PORT, INFLUX_PORT, MOSQUITTO_PID,
# INFLUXD_PID) and creates the InfluxDB database "gridgate". Tests source
# this file for the gg_* functions instead.

gg_mosquitto_bin() { command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto; }
gg_influxd_bin() { command -v influxd 2>/dev/null || echo /usr/bin/influxd; }

# gg_wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds;
# SECONDS is GG_SLOW times longer under the memory checkers (assert.sh).
gg_wait_until() {
    local deadline=$((SECONDS + $1 * ${GG_SLOW:-1})); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

gg_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# gg_free_port: a port nobody listens on now (servers still check at bind),
# below the kernel's ephemeral range: a client connection's port there,
# or its TIME_WAIT (thousands on a busy test machine), makes bind() fail
# although nothing listens.
gg_free_port() {
    local port low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "${low:-0}" -gt 20000 ] || low=32768
    for _ in $(seq 1 50); do
        port=$((10000 + RANDOM % (low - 10000)))
        gg_port_in_use "$port" || { echo "$port"; return 0; }
    done
    echo "gg_free_port: no free port found" >&2
    return 1
}

# gg_udp_port_in_use PORT: some socket is bound to UDP PORT (IPv4 or IPv6).
gg_udp_port_in_use() {
    awk -v p="$(printf ':%04X' "$1")" \
        'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}

# gg_free_udp_port: prints a UDP port nothing is bound to (CoAP).
gg_free_udp_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 40000))
        gg_udp_port_in_use "$port" || { echo "$port"; return 0; }
    done
    echo "gg_free_udp_port: no free UDP port found" >&2
    return 1
}

# gg_stop_pid PID: SIGTERM, then SIGKILL after 10 s (times GG_SLOW);
# waits for the exit.
gg_stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 $((100 * ${GG_SLOW:-1}))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

# gg_started PID PORT LOG: waits (bounded) until PID listens on PORT;
# returns 0 when it does, 2 when the port was taken (try another), 1 else.
gg_started() {
    local pid=$1 port=$2 log=$3 deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            grep -qi "address already in use" "$log" && return 2
            return 1
        fi
        gg_port_in_use "$port" && return 0
        sleep 0.1
    done
    return 1
}

# gg_start_with_port NAME START DIR [PORT]: runs "START DIR PORT" (a
# function that starts the server in the background and sets GG_PID), on
# PORT, or on a free port, retried with another when a concurrent start
# took it first. Sets GG_PORT.
gg_start_with_port() {
    local name=$1 start=$2 dir=$3 port=${4:-0} tries=5 rc
    for _ in $(seq 1 $tries); do
        local p=$port
        [ "$p" != 0 ] || p=$(gg_free_port) || return 1
        "$start" "$dir" "$p"
        gg_started "$GG_PID" "$p" "$dir/$name.log"
        rc=$?
        if [ $rc = 0 ]; then
            GG_PORT=$p
            return 0
        fi
        gg_stop_pid "$GG_PID"
        [ $rc = 2 ] && [ "$port" = 0 ] && continue
        echo "$name did not start on 127.0.0.1:$p; its log ($dir/$name.log):" >&2
        tail -n 20 "$dir/$name.log" >&2
        return 1
    done
    echo "$name: no free port after $tries tries" >&2
    return 1
}

# gg_run_mosquitto DIR PORT: starts mosquitto on 127.0.0.1:PORT with its
# config and log (appended to, across restarts) in DIR; sets GG_PID.
# GG_MOSQUITTO_AUTH: other authentication lines (a test of ACLs).
# GG_MOSQUITTO_PERSIST=DATA_DIR: persistence on, saved every second, so a
# clean stop keeps sessions and their queued messages (a directory the
# user mosquitto may write).
gg_run_mosquitto() {
    local dir=$1 port=$2 persistence="persistence false"
    [ -z "${GG_MOSQUITTO_PERSIST:-}" ] ||
        persistence="persistence true
persistence_location $GG_MOSQUITTO_PERSIST/
autosave_interval 1"
    cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
${GG_MOSQUITTO_AUTH:-allow_anonymous true}
$persistence
log_dest stderr
log_type error
log_type warning
log_type notice
max_queued_messages 100000
CONF
    chmod 644 "$dir/mosquitto.conf"
    "$(gg_mosquitto_bin)" -c "$dir/mosquitto.conf" >>"$dir/mosquitto.log" 2>&1 &
    GG_PID=$!
}

# gg_start_mosquitto DIR [PORT]: sets MOSQUITTO_PID and MOSQUITTO_PORT (a
# free port when none is given); log in DIR/mosquitto.log.
gg_start_mosquitto() {
    local dir=$1
    mkdir -p "$dir"
    # Run as root, mosquitto drops to user "mosquitto", which must read this.
    chmod 755 "$dir"
    gg_start_with_port mosquitto gg_run_mosquitto "$dir" "${2:-0}" || return 1
    MOSQUITTO_PID=$GG_PID
    MOSQUITTO_PORT=$GG_PORT
}

gg_run_influxd() {
    local dir=$1 port=$2 rpc_port
    rpc_port=$(gg_free_port) || return 1
    cat >"$dir/influxdb.conf" <<CONF
reporting-enabled = false
bind-address = "127.0.0.1:$rpc_port"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  # One series per device: a district has far more than the default limit
  # of 100,000 values per tag (the device tag), and points past it are refused.
  max-values-per-tag = 0
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
CONF
    "$(gg_influxd_bin)" -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
    GG_PID=$!
}

# gg_start_influxd DIR [PORT]: sets INFLUXD_PID and INFLUXD_PORT (a free
# port when none is given); ready when /ping answers; log in DIR/influxd.log.
gg_start_influxd() {
    local dir=$1
    mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
    gg_start_with_port influxd gg_run_influxd "$dir" "${2:-0}" || return 1
    INFLUXD_PID=$GG_PID
    INFLUXD_PORT=$GG_PORT
    if ! gg_wait_until 30 curl -sf "http://127.0.0.1:$INFLUXD_PORT/ping"; then
        echo "influxd on 127.0.0.1:$INFLUXD_PORT does not answer /ping" >&2
        return 1
    fi
}

# gg_influx_query PORT DB QUERY: prints InfluxDB's JSON answer.
gg_influx_query() {
    curl -sf -G "http://127.0.0.1:$1/query" --data-urlencode "db=$2" --data-urlencode "q=$3"
}

gg_influx_create_db() {
    curl -sf -XPOST "http://127.0.0.1:$1/query" --data-urlencode "q=CREATE DATABASE $2" >/dev/null
}

gg_servers_main() {
    local cmd=${1:-} dir=${2:-}
    if [ -z "$cmd" ] || [ -z "$dir" ]; then
        echo "usage: $0 start DIR [MQTT_PORT INFLUX_PORT] | stop DIR" >&2
        return 2
    fi
    case $cmd in
    start)
        local mqtt_port=${3:-0} influx_port=${4:-0}
        mkdir -p "$dir"
        dir=$(cd "$dir" && pwd)
        for port in "$mqtt_port" "$influx_port"; do
            if [ "$port" != 0 ] && gg_port_in_use "$port"; then
                echo "port $port on 127.0.0.1 is already in use (a system mosquitto or influxdb?)" >&2
                return 1
            fi
        done
        gg_start_mosquitto "$dir/mosquitto" "$mqtt_port" || return 1
        if ! gg_start_influxd "$dir/influxdb" "$influx_port"; then
            gg_stop_pid "$MOSQUITTO_PID"
            return 1
        fi
        mqtt_port=$MOSQUITTO_PORT
        influx_port=$INFLUXD_PORT
        gg_influx_create_db "$influx_port" gridgate
        cat >"$dir/servers.env" <<ENV
MQTT_PORT=$mqtt_port
INFLUX_PORT=$influx_port
MOSQUITTO_PID=$MOSQUITTO_PID
INFLUXD_PID=$INFLUXD_PID
ENV
        echo "mosquitto on 127.0.0.1:$mqtt_port (pid $MOSQUITTO_PID), influxd on 127.0.0.1:$influx_port (pid $INFLUXD_PID)"
        ;;
    stop)
        [ -f "$dir/servers.env" ] || return 0
        # shellcheck disable=SC1091
        . "$dir/servers.env"
        gg_stop_pid "$MOSQUITTO_PID"
        gg_stop_pid "$INFLUXD_PID"
        rm -f "$dir/servers.env"
        ;;
    *)
        echo "unknown command $cmd" >&2
        return 2
        ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    gg_servers_main "$@"
fi
