#!/usr/bin/env bash
# shellcheck disable=SC2016 # the dashboards' ${...} are literal
# The web console's server side (issue 9) against real servers: gridgate
# with mosquitto and InfluxDB serves a console directory of small test
# files at /console/, driven with curl.
#
#   test_console_http.sh GRIDGATE_BIN SOURCE_DIR
#
# (a) files: index.html at /console/ and by name, each kind with its
#     Content-Type, HEAD, 404 for a missing file and for directories,
#     the redirects of /console and /;
# (b) escapes: "..", %-escaped dots and slashes, empty and hidden
#     segments, symbolic links to a file and a directory outside, a FIFO:
#     all 404, and no answer carries what the target holds;
# (c) the security headers on every answer (console files and API, good
#     and refused), no-store on the API;
# (d) GET /api/v1/me for a street commander and a grid's firefighter, and
#     without a token; the Grafana link it gives names the grid dashboard
#     and variables config/grafana has, and the dashboards' case tables
#     link back to the console;
# (e) the tokens never reach the log, whatever path or query they came in;
# (f) `gridgate check` names api.console_dir and the path of a console
#     without index.html; with the console off, /console/ is 404 and / is
#     the API's; the repository's web/console is served when it exists.
# JSON is read with SQLite's json_extract (sqlite3 is a build dependency).
set -euo pipefail

gridgate=$1
src=$2
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work console_http gateway_pid

gg_start_servers
mkdir -p "$work/var"

G=110101001001001 # smoke-000001's grid
S=${G:0:9}
CSP="default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
GRAFANA_LINK='http://127.0.0.1:3000/d/gridgate-grid/gridgate-grid-detail?var-street={street}&var-community={community}&var-grid={grid}'

# ---- the console's files, and what lies next to them --------------------

con=$work/console
mkdir -p "$con/i18n" "$con/empty" "$work/outside"
printf '<!doctype html>\n<title>console test page</title>\n<script src="app.js"></script>\n' >"$con/index.html"
printf 'document.title = "console test script";\n' >"$con/app.js"
printf 'body { color: #123; }\n' >"$con/style.css"
printf '{"case": "案件"}\n' >"$con/i18n/zh-CN.json"
printf 'opaque bytes\n' >"$con/data.bin"
: >"$con/empty.css"
head -c $((2 * 1024 * 1024 + 1)) /dev/zero >"$con/huge.js"
secret="SECRET-OUTSIDE-$RANDOM$RANDOM"
printf '%s\n' "$secret" >"$work/outside/secret.txt"
ln -s "$work/outside/secret.txt" "$con/leak.txt"
ln -s ../outside/secret.txt "$con/i18n/leak.json"
ln -s "$work/outside" "$con/outdir"
mkfifo "$con/pipe.js"

write_config() { # write_config API_EXTRA: the gateway, with more api keys
    # A port picked afresh each time: one freed by a stop may be taken as
    # another program's ephemeral port before the restart binds it.
    api_port=$(gg_free_port)
    base="http://127.0.0.1:$api_port"
    cat >"$work/gridgate.yaml" <<YAML
# MARKER-CONFIG-$secret
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-console, qos: 1 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
api:      { enabled: true, port: $api_port, tokens: "tokens.yaml", threads: 2$1 }
gateway:  { stats_interval_s: 1 }
YAML
}

start_gateway() {
    "$gridgate" run -c "$work/gridgate.yaml" -v >>"$work/gridgate.log" 2>&1 &
    gateway_pid=$!
    gg_wait_until 20 curl -sf "$base/healthz" || fail "the API did not answer /healthz" "$work/gridgate.log"
}

# A clean stop: SIGTERM, exit status 0.
stop_gateway() { gg_stop_clean gateway_pid; }

# ---- requests ------------------------------------------------------------

# req METHOD PATH [TOKEN]: the raw path as given (no normalising); the
# status in $status, the body in $work/body, the headers in $work/headers.
req() {
    local args=(-s --path-as-is -o "$work/body" -D "$work/headers" -w '%{http_code}')
    if [ "$1" = HEAD ]; then args+=(-I); else args+=(-X "$1"); fi
    [ -z "${3:-}" ] || args+=(-H "Authorization: Bearer $3")
    status=$(curl "${args[@]}" "$base$2")
}
expect() {
    [ "$status" = "$1" ] || fail "$2: expected $1, got $status: $(head -c 300 "$work/body")" \
        "$work/gridgate.log"
}
# header NAME: the last answer's header value (without the CR).
header() { sed -n "s/^$1: //Ip" "$work/headers" | tr -d '\r' | head -n 1; }
j() { sqlite3 :memory: "SELECT json_extract(readfile('$work/body'), '$1')"; }
# secure WHAT [CACHE]: the last answer carries every security header.
secure() {
    assert_eq "$(header Content-Security-Policy)" "$CSP" "$1: Content-Security-Policy"
    assert_eq "$(header X-Content-Type-Options)" nosniff "$1: X-Content-Type-Options"
    assert_eq "$(header Referrer-Policy)" no-referrer "$1: Referrer-Policy"
    assert_eq "$(header X-Frame-Options)" DENY "$1: X-Frame-Options"
    assert_eq "$(header Cache-Control)" "${2:-no-store}" "$1: Cache-Control"
}
# served PATH FILE TYPE: GET PATH answers FILE's bytes as TYPE.
served() {
    req GET "$1"
    expect 200 "GET $1"
    cmp -s "$work/body" "$2" || fail "GET $1: the body is not $2's"
    assert_eq "$(header Content-Type)" "$3" "GET $1: Content-Type"
    secure "GET $1" no-cache
}
# refused PATH: 404, and nothing of what lies outside in the answer.
refused() {
    req GET "$1"
    expect 404 "GET $1"
    for leak in "$secret" 'root:' 'MARKER-CONFIG' 'sha256'; do
        grep -q "$leak" "$work/body" "$work/headers" && fail "GET $1 answered with '$leak'"
    done
    secure "GET $1 (refused)"
}

# ---- tokens ---------------------------------------------------------------

tokens=$work/tokens.yaml
new_token() { "$gridgate" token new --name "$1" --role "$2" --scope "$3" --file "$tokens" "${@:4}" 2>/dev/null; }
commander=$(new_token street-centre commander "street:$S")
firefighter=$(new_token ff-1 staff "grid:$G" --post firefighter)
assert_eq "${#commander}:${#firefighter}" 46:46 "the tokens' lengths"

# ---- (f) the check ----------------------------------------------------------

echo "(f) gridgate check: a console without index.html names the key and the path"
mkdir -p "$work/bare"
write_config ", console_dir: \"bare\""
if "$gridgate" check -c "$work/gridgate.yaml" >"$work/check.out" 2>&1; then
    fail "gridgate check took a console directory without index.html"
fi
assert_contains "$(cat "$work/check.out")" "api.console_dir: $work/bare/index.html" "check's message"
write_config ", console_dir: \"console\", grafana_url: \"javascript:alert(1)\""
if "$gridgate" check -c "$work/gridgate.yaml" >"$work/check.out" 2>&1; then
    fail "gridgate check took a grafana_url that is not http(s)"
fi
assert_contains "$(cat "$work/check.out")" "api.grafana_url" "check's message on grafana_url"
write_config ", console_dir: \"console\", grafana_url: \"http://127.0.0.1:3000\""
"$gridgate" check -c "$work/gridgate.yaml" >"$work/check.out" 2>&1 ||
    fail "gridgate check refused a good console" "$work/check.out"

start_gateway
grep -q "console on $base/console/ from $work/console" "$work/gridgate.log" ||
    fail "gridgate does not say where the console is" "$work/gridgate.log"

# ---- (a) files --------------------------------------------------------------

echo "(a) the console's files, each with its Content-Type"
served /console/ "$con/index.html" "text/html; charset=utf-8"
served /console/index.html "$con/index.html" "text/html; charset=utf-8"
served "/console/?lang=en" "$con/index.html" "text/html; charset=utf-8"
served /console/app.js "$con/app.js" "text/javascript; charset=utf-8"
served /console/style.css "$con/style.css" "text/css; charset=utf-8"
served /console/i18n/zh-CN.json "$con/i18n/zh-CN.json" "application/json; charset=utf-8"
served /console/data.bin "$con/data.bin" "application/octet-stream"
served /console/empty.css "$con/empty.css" "text/css; charset=utf-8"
refused /console/huge.js
grep -q 'console file huge.js not served: over 2 MiB' "$work/gridgate.log" ||
    fail "a file over 2 MiB was refused without a word in the log" "$work/gridgate.log"

req HEAD /console/app.js
expect 200 "HEAD /console/app.js"
assert_eq "$(header Content-Length)" "$(stat -c %s "$con/app.js")" "HEAD's Content-Length"
assert_eq "$(header Content-Type)" "text/javascript; charset=utf-8" "HEAD's Content-Type"
# curl -I does not tell a body apart: ask by hand, and look past the headers.
exec 3<>"/dev/tcp/127.0.0.1/$api_port"
printf 'HEAD /console/app.js HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
cat <&3 >"$work/head.raw"
exec 3<&-
grep -q '^HTTP/1.[01] 200' "$work/head.raw" || fail "HEAD by hand: $(head -n 1 "$work/head.raw")"
assert_eq "$(sed '1,/^\r$/d' "$work/head.raw" | wc -c)" 0 "bytes after HEAD's headers"
secure "HEAD /console/app.js" no-cache

for path in /console/missing.js /console/i18n /console/i18n/ /console/empty /console/empty/ \
            /console/INDEX.HTML; do
    refused "$path"
done

echo "(a) redirects: /console and / to /console/"
for path in /console / "/console?x=1"; do
    req GET "$path"
    expect 302 "GET $path"
    assert_eq "$(header Location)" /console/ "GET $path: Location"
    secure "GET $path" no-store
done
req POST /console/ ""
expect 405 "POST /console/"
assert_eq "$(header Allow)" "GET, HEAD" "405's Allow"

# ---- (b) escapes ------------------------------------------------------------

echo "(b) paths that leave the console directory: all 404, nothing leaks"
for path in /console/../gridgate.yaml /console/../outside/secret.txt \
            /console/%2e%2e/gridgate.yaml /console/%2e%2e/%2e%2e/etc/passwd \
            /console/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd /console/..%2fgridgate.yaml \
            /console/..%2Fx /console/.%2e/gridgate.yaml /console/i18n/../../gridgate.yaml \
            /console/i18n/..%2f..%2fgridgate.yaml /console//etc/passwd /console/./index.html \
            /console/%2fetc%2fpasswd "/console/..\\gridgate.yaml" /console/index.html%00.js \
            /console/leak.txt /console/i18n/leak.json /console/outdir/secret.txt /console/outdir \
            /console/pipe.js /console/.hidden /console/tokens.yaml /console/../tokens.yaml \
            /console/..; do
    refused "$path"
done
# The same files are there, so the 404s above are the checks' doing.
grep -q "$secret" "$work/outside/secret.txt" || fail "the outside file went missing"

echo "(a) files are read at each request: a new file, and a directory replaced whole"
printf 'later();\n' >"$con/later.js"
served /console/later.js "$con/later.js" "text/javascript; charset=utf-8"
mv "$con" "$work/console.old"
mkdir -p "$con"
printf '<!doctype html>\n<title>upgraded</title>\n' >"$con/index.html"
served /console/ "$con/index.html" "text/html; charset=utf-8"
refused /console/app.js

# ---- (c) headers on the API ------------------------------------------------

echo "(c) the API's answers carry the same headers, with no-store"
req GET /api/v1/healthz
expect 200 "/healthz"
secure "/healthz"
req GET /api/v1/grids "$commander"
expect 200 "/grids"
secure "/grids"
req GET /api/v1/cases/999999 "$commander"
expect 404 "an unknown case"
secure "a 404 of the API"
req GET /api/v1/nothing
expect 401 "an unknown API path without a token"
secure "a 401"

# ---- (d) /me ---------------------------------------------------------------

echo "(d) GET /api/v1/me"
req GET "/api/v1/grids/$G" "$commander"
expect 200 "grid $G"
street_name=$(j '$.grid.street')
grid_name=$(j '$.grid.name')
[ -n "$street_name" ] && [ -n "$grid_name" ] || fail "grid $G has no names: $(cat "$work/body")"

req GET /api/v1/me "$commander"
expect 200 "/me of the street commander"
secure "/me"
assert_eq "$(j '$.name')" "commander:street-centre" "commander's name"
assert_eq "$(j '$.role')" commander "commander's role"
assert_eq "$(j '$.scope.level')" street "commander's scope level"
assert_eq "$(j '$.scope.id')" "$S" "commander's scope id"
assert_eq "$(j '$.scope.name')" "$street_name" "commander's scope name"
assert_eq "$(sqlite3 :memory: "SELECT json_type(readfile('$work/body'), '\$.post')")" null "commander's post"
assert_eq "$(j '$.links.grafana_grid')" "$GRAFANA_LINK" "commander's Grafana link"

req GET /api/v1/me "$firefighter"
expect 200 "/me of the firefighter"
assert_eq "$(j '$.name')" "staff:ff-1" "staff's name"
assert_eq "$(j '$.role')" staff "staff's role"
assert_eq "$(j '$.scope.level')" grid "staff's scope level"
assert_eq "$(j '$.scope.id')" "$G" "staff's scope id"
assert_eq "$(j '$.scope.name')" "$grid_name" "staff's scope name"
assert_eq "$(j '$.post')" firefighter "staff's post"
assert_eq "$(j '$.links.grafana_grid')" "$GRAFANA_LINK" "staff's Grafana link"

req GET /api/v1/me
expect 401 "/me without a token"
assert_eq "$(header WWW-Authenticate)" Bearer "/me's 401"
req GET /api/v1/me "${commander}x"
expect 401 "/me with a wrong token"
req GET "/api/v1/me?token=$commander" ""
expect 401 "a token in the query instead of the header"
req GET "/api/v1/me?token=$commander" "$commander"
expect 400 "an unknown query parameter on /me"
req POST /api/v1/me "$commander"
expect 405 "POST /me"

echo "(d) the link's dashboard and variables are config/grafana's; the case tables link to the console"
dash() { sqlite3 :memory: "SELECT $2 FROM json_each(readfile('$src/config/grafana/dashboards/$1.json'), '$3')"; }
assert_eq "$(sqlite3 :memory: "SELECT json_extract(readfile('$src/config/grafana/dashboards/grid-detail.json'), '\$.uid')")" \
    gridgate-grid "grid-detail's uid"
assert_eq "$(dash grid-detail "group_concat(value ->> 'name', ' ')" '$.templating.list')" \
    "street community grid console_url" "grid-detail's variables"
for d in grid-detail district-overview; do
    assert_eq "$(dash "$d" "value ->> 'query'" '$.templating.list' | tail -n 1)" http://127.0.0.1:8080 \
        "$d: console_url's default"
    dash "$d" "value ->> 'fieldConfig'" '$.panels' >"$work/fieldconfig"
    grep -qF '"url":"${console_url}/console/#/cases/${__value.raw}"' "$work/fieldconfig" ||
        fail "$d: no case table links a case_id to the console"
done

# ---- (e) the log -------------------------------------------------------------

echo "(e) the tokens are in no line of the log"
req GET "/console/?token=$commander" ""
expect 200 "the console with a token in its query"
for t in "$commander" "$firefighter"; do
    grep -qF -- "${t:3}" "$work/gridgate.log" && fail "a token is in gridgate's log"
done
grep -q 'debug \[api\] GET /console/app.js -> 200' "$work/gridgate.log" ||
    fail "console requests are not logged at debug" "$work/gridgate.log"
stop_gateway

# ---- (f) the console off, and the repository's console -------------------

echo "(f) without api.console_dir: /console/ is 404, / is the API's"
write_config ""
start_gateway
req GET /console/
expect 404 "/console/ with the console off"
secure "/console/ off"
req GET /console/index.html
expect 404 "/console/index.html with the console off"
req GET /
expect 401 "/ with the console off, without a token"
req GET / "$commander"
expect 404 "/ with the console off"
stop_gateway

if [ -f "$src/web/console/index.html" ]; then
    echo "(f) the repository's web/console"
    write_config ", console_dir: \"$src/web/console\""
    start_gateway
    served /console/ "$src/web/console/index.html" "text/html; charset=utf-8"
    stop_gateway
else
    echo "note: no web/console/index.html in the repository yet; not served"
fi
echo "PASS"
