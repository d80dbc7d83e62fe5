#!/usr/bin/env bash
# The web console (web/console) in a real browser: Debian's chromium,
# driven by playwright-core from npm (never a downloaded browser), against
# a gridgate with real mosquitto and InfluxDB, serving the console from
# the source tree's web/console.
#
#   test_console.sh GRIDGATE_BIN SOURCE_DIR BUILD_DIR
#
# The node modules are installed with `npm ci` into BUILD_DIR/browser (not
# the source tree) when missing; the screenshots go to
# BUILD_DIR/tests/browser/screenshots. console_test.mjs holds the scenario.
set -euo pipefail

gridgate=$1
src=$2
build=$3
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

chromium=${GG_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || fail "no $chromium: install Debian's chromium (scripts/deps.sh)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    fail "node and npm are needed (scripts/deps.sh)"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] ||
    fail "playwright-core needs Node.js 20 or newer, and $(command -v node) is $(node --version)"

# playwright-core, pinned by package-lock.json; it never fetches a browser.
modules=$build/browser
if ! cmp -s "$src/tests/browser/package-lock.json" "$modules/package-lock.json" ||
    [ ! -d "$modules/node_modules/playwright-core" ]; then
    mkdir -p "$modules"
    cp "$src/tests/browser/package.json" "$src/tests/browser/package-lock.json" "$modules/"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$modules" --no-audit --no-fund --ignore-scripts \
        --loglevel=error >"$modules/npm-ci.log" 2>&1 || fail "npm ci failed" "$modules/npm-ci.log"
fi

gg_work console gateway_pid
gg_start_servers
api_port=$(gg_free_port)
base="http://127.0.0.1:$api_port"
mkdir -p "$work/var"
shots=$build/tests/browser/screenshots
mkdir -p "$shots"

# Auto-dispatch off: a smoke case stays reported until a commander
# dispatches it from the console, as the scenario wants. Info cases have a
# 2 s limit, so that one runs late for the urgency order.
cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-console, qos: 1 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
api:      { enabled: true, port: $api_port, tokens: "tokens.yaml", threads: 4,
            console_dir: "$src/web/console", grafana_url: "http://127.0.0.1:3000" }
cases:    { auto_dispatch: false, limits_info: "dispatched=2s,handled=1d,verified=2d,evaluated=5d",
            timer_interval_ms: 200 }
YAML

# The places: G has smoke-000001 and the scenario's cases; OUT is another
# grid, of another street, whose staff must see none of them.
G=110101001001001
OUT=110101002001001
tokens=$work/tokens.yaml
new_token() {
    "$gridgate" token new --name "$1" --role "$2" --scope "$3" --file "$tokens" "${@:4}" 2>/dev/null
}
export GG_BASE=$base GG_MQTT_PORT=$mqtt_port GG_GRID=$G GG_DEVICE=smoke-000001
export GG_SHOTS=$shots GG_CHROMIUM=$chromium
GG_TOKEN_COMMANDER=$(new_token centre commander "community:${G:0:12}")
GG_TOKEN_STAFF=$(new_token ff-1 staff "grid:$G" --post firefighter)
GG_TOKEN_SUPERVISOR=$(new_token sup-1 supervisor "grid:$G")
GG_TOKEN_OTHER=$(new_token ff-out staff "grid:$OUT" --post firefighter)
export GG_TOKEN_COMMANDER GG_TOKEN_STAFF GG_TOKEN_SUPERVISOR GG_TOKEN_OTHER

"$gridgate" run -c "$work/gridgate.yaml" -v >>"$work/gridgate.log" 2>&1 &
# shellcheck disable=SC2034 # stopped by gg_work's cleanup
gateway_pid=$!
gg_wait_until 20 curl -sf "$base/healthz" || fail "the API did not answer /healthz" "$work/gridgate.log"
gg_wait_until 15 grep -q "subscribed to" "$work/gridgate.log" || fail "gridgate did not subscribe" "$work/gridgate.log"

echo "the console's files, with the security headers"
curl -s -D "$work/headers" -o "$work/index.html" "$base/console/" || fail "GET /console/"
grep -qi "^Content-Security-Policy: default-src 'none'; script-src 'self'" "$work/headers" ||
    fail "no Content-Security-Policy on /console/: $(cat "$work/headers")"
grep -q 'src="console.js"' "$work/index.html" || fail "/console/ is not the console's index.html"

started=$SECONDS
status=0
GG_NODE_MODULES=$modules/node_modules node "$src/tests/browser/console_test.mjs" || status=$?
echo "the browser scenario took $((SECONDS - started)) s"
[ "$status" = 0 ] || fail "the browser scenario failed (status $status)" "$work/gridgate.log"

echo "no token in the gateway's log"
for tok in "$GG_TOKEN_COMMANDER" "$GG_TOKEN_STAFF" "$GG_TOKEN_SUPERVISOR" "$GG_TOKEN_OTHER"; do
    if grep -qF -- "$tok" "$work/gridgate.log"; then fail "a token is in gridgate's log"; fi
done
