# Assertions for the integration tests; each failure names what was
# expected and what came, and can print a log for context.
#
# Under the memory checkers (sanitizer or valgrind builds) ctest sets
# GG_MEMCHECK_DIR and GG_SLOW for every integration test: gg_work's
# cleanup fails the test on any report there (memcheck.sh), and
# gg_wait_until's and gg_stop_pid's bounds (scripts/servers.sh) are
# GG_SLOW times longer, as the checked binaries are that much slower.

# shellcheck source-path=SCRIPTDIR source=memcheck.sh
. "$(dirname "${BASH_SOURCE[0]}")/memcheck.sh"

# fail MESSAGE [LOG]: prints MESSAGE and the tail of LOG, exits 1.
fail() {
    echo "FAIL: $1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "--- last lines of $2:" >&2
        tail -n 40 "$2" >&2
    fi
    exit 1
}

# assert_eq ACTUAL EXPECTED WHAT
assert_eq() {
    [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"
}

# assert_contains HAYSTACK NEEDLE WHAT
assert_contains() {
    case $1 in
    *"$2"*) ;;
    *) fail "$3: '$2' not found in '$1'" ;;
    esac
}

# gg_slow SECONDS: SECONDS times GG_SLOW, for a test's own deadlines (those
# of gg_wait_until and gg_stop_pid are scaled already).
gg_slow() {
    echo $(($1 * ${GG_SLOW:-1}))
}

# gg_rss_checked: whether a bound on resident memory means anything: not
# under the memory checkers (GG_MEMCHECK_DIR set), whose shadow memory and
# quarantine of freed blocks (ASan's is 256 MB) add hundreds of MB; the
# release build's run of the same test checks the bound.
gg_rss_checked() { [ -z "${GG_MEMCHECK_DIR:-}" ]; }

# gg_work NAME [VAR...]: a fresh work directory in $work and, at exit, a
# cleanup that stops the processes whose PIDs the named variables hold by
# then, and the servers gg_start_mosquitto / gg_start_influxd started,
# then removes the directory (KEEP_WORK=1 keeps it). Naming variables
# rather than PIDs lets a test restart a process and still have it stopped.
gg_work() {
    work=$(mktemp -d "/tmp/gridgate-$1.XXXXXX")
    shift
    GG_STOP_VARS=("$@")
    local var
    for var in "$@"; do
        printf -v "$var" '%s' "${!var:-}" # declared (empty), for set -u
    done
    # ASan writes nothing when its log directory is missing.
    [ -z "${GG_MEMCHECK_DIR:-}" ] || mkdir -p "$GG_MEMCHECK_DIR"
    trap gg_work_cleanup EXIT
}

# Processes stopped here get SIGTERM first, so a leak in gridgate's or
# gridsim's shutdown is reported before the check below.
gg_work_cleanup() {
    local status=$? var
    for var in "${GG_STOP_VARS[@]}"; do
        gg_stop_pid "${!var:-}"
    done
    gg_stop_pid "${MOSQUITTO_PID:-}"
    gg_stop_pid "${INFLUXD_PID:-}"
    gg_memcheck_reports "${GG_MEMCHECK_DIR:-}" || status=1
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
    exit $status
}

# gg_start_servers: mosquitto and influxd under $work, each on a free
# loopback port (mqtt_port, influx_port), with the database gridgate.
gg_start_servers() {
    gg_start_mosquitto "$work/mosquitto"
    mqtt_port=$MOSQUITTO_PORT
    gg_start_influxd "$work/influxdb"
    influx_port=$INFLUXD_PORT
    gg_influx_create_db "$influx_port" gridgate
}

# gg_stop_clean VAR [LOG]: a clean stop of the process whose PID the
# variable VAR holds: SIGTERM, then it must exit within 20 s (times
# GG_SLOW) with status 0 (a sanitizer's leak report at exit makes it
# non-zero). Empties VAR, so gg_work's cleanup does not stop it again.
gg_stop_clean() {
    local var=$1 log=${2:-} pid=${!1} status=0
    kill -TERM "$pid"
    for _ in $(seq 1 $((200 * ${GG_SLOW:-1}))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "pid $pid ($var) did not stop within 20 s of SIGTERM" "$log"
    wait "$pid" || status=$?
    printf -v "$var" '%s' ""
    assert_eq "$status" 0 "exit status of pid $pid ($var) after SIGTERM"
}
