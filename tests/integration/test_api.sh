#!/usr/bin/env bash
# The HTTP API against real servers: mosquitto, InfluxDB and gridgate with
# the shipped rules and the sample district, driven with curl and tokens
# made by `gridgate token new`.
#
#   test_api.sh GRIDGATE_BIN GRIDSIM_BIN SOURCE_DIR
#
# (a) the whole loop of a rule-opened case (a smoke alarm) and of a
#     citizen's report, each with a failed verification (rework), checked
#     in the history, in the MQTT notices on grids/+/cases and in
#     InfluxDB's case_event points;
# (b) the permission matrix: every role x every operation, in and out of
#     scope, against a table of expected statuses;
# (c) dedup: 1000 alarms from one device make one case counting 1000;
# (d) the figures of a scripted set of cases with known answers;
# (e) bad requests (malformed JSON, wrong types, unknown fields, a huge
#     body, bad or missing tokens, path tricks, a bad cursor...), each
#     answered with its status while nothing changes; then 429 after
#     repeated failed logins;
# (f) escalation with short limits, community -> street -> district,
#     across a gridgate restart.
# JSON answers are read with SQLite's json_extract (sqlite3 is a build
# dependency already).
set -euo pipefail

gridgate=$1
gridsim=$2
src=$3
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work api gateway_pid sub_pid

gg_start_servers
api_port=$(gg_free_port)
base="http://127.0.0.1:$api_port"
mkdir -p "$work/var"

# The places of the sample district the sections use, each its own so
# that one section's cases do not change another's answers.
G=110101001001001          # the loops and the matrix; smoke-000001 is here
C=${G:0:12}
S=${G:0:9}
OUT_GRID=110101002001001   # out of every in-scope token's reach
F=110101003001001          # the figures
dedup_device=smoke-000119  # in 110101002001001
esc_device=smoke-000005    # in 110101001001002
esc_grid=110101001001002

# write_config LIMITS: the same gateway, with the given time limits.
write_config() {
    cat >"$work/gridgate.yaml" <<YAML
mqtt:     { uri: "tcp://127.0.0.1:$mqtt_port", client_id: gridgate-api, qos: 1 }
influx:   { url: "http://127.0.0.1:$influx_port", database: gridgate, flush_interval_ms: 100 }
store:    { path: "var/cases.db" }
journal:  { dir: "var/journal" }
district: { grids: "$src/config/district/grids.geojson", devices: "$src/config/district/devices.csv" }
rules:    { dir: "$src/rules" }
api:      { enabled: true, port: $api_port, tokens: "tokens.yaml", threads: 2, max_body_kb: 16,
            auth_failures: 10 }
cases:    { limits_critical: "$1", limits_major: "$1", limits_minor: "$1", limits_info: "$1",
            timer_interval_ms: 100 }
gateway:  { stats_interval_s: 1 }
YAML
}

start_gateway() {
    "$gridgate" run -c "$work/gridgate.yaml" -v >>"$work/gridgate.log" 2>&1 &
    gateway_pid=$!
    gg_wait_until 20 curl -sf "$base/api/v1/healthz" ||
        fail "the API did not answer /healthz" "$work/gridgate.log"
    gg_wait_until 15 grep -q "subscribed to" "$work/gridgate.log" ||
        fail "gridgate did not subscribe" "$work/gridgate.log"
}

# A clean stop: SIGTERM, exit status 0.
stop_gateway() { gg_stop_clean gateway_pid; }

# ---- requests ----------------------------------------------------------

# api METHOD PATH TOKEN [BODY]: the answer's status in $status, its body in
# $work/body, its headers in $work/headers. A BODY is sent as JSON.
api() {
    local method=$1 path=$2 token=$3
    local args=(-s --path-as-is -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method")
    [ -z "$token" ] || args+=(-H "Authorization: Bearer $token")
    [ $# -lt 4 ] || args+=(-H 'Content-Type: application/json' --data-binary "$4")
    status=$(curl "${args[@]}" "$base$path")
}
# j JSONPATH: a value of the last answer ('' for null).
j() { sqlite3 :memory: "SELECT json_extract(readfile('$work/body'), '$1')"; }
# expect CODE WHAT: the last answer had status CODE.
expect() {
    [ "$status" = "$1" ] || fail "$2: expected $1, got $status: $(head -c 400 "$work/body")" \
        "$work/gridgate.log"
}
# expect_error CODE ERROR DETAIL_PART WHAT
expect_error() {
    expect "$1" "$4"
    assert_eq "$(j '$.error')" "$2" "$4: error code"
    assert_contains "$(j '$.detail')" "$3" "$4: detail"
}
# call METHOD PATH TOKEN [BODY] CODE WHAT: api + expect.
call() {
    local code=${*: -2:1} what=${*: -1}
    api "${@:1:$#-2}"
    expect "$code" "$what"
}
cases_db() { sqlite3 "$work/var/cases.db" "$1"; }
history_states() { # the to-states of a case's history, as the API shows them
    call GET "/api/v1/cases/$1" "$boss" 200 "case $1"
    sqlite3 :memory: "SELECT group_concat(value ->> 'to', ' ') FROM json_each(readfile('$work/body'), '\$.history')"
}

# ---- tokens ------------------------------------------------------------

tokens=$work/tokens.yaml
# new_token NAME ROLE SCOPE [--post P]: prints the token.
new_token() {
    "$gridgate" token new --name "$1" --role "$2" --scope "$3" --file "$tokens" "${@:4}" 2>/dev/null
}
boss=$(new_token boss commander district)
declare -A tok_in tok_out
tok_in[operator]=$(new_token op-in operator "community:$C")
tok_in[commander]=$(new_token cmd-in commander "community:$C")
tok_in[staff]=$(new_token ff-in staff "grid:$G" --post firefighter)
tok_in[supervisor]=$(new_token sup-in supervisor "grid:$G")
tok_in[liaison]=$(new_token liaison-in liaison "community:$C")
tok_in[readonly]=$(new_token ro-in readonly "community:$C")
tok_out[operator]=$(new_token op-out operator "street:110101002")
tok_out[commander]=$(new_token cmd-out commander "street:110101002")
tok_out[staff]=$(new_token ff-out staff "grid:$OUT_GRID" --post firefighter)
tok_out[supervisor]=$(new_token sup-out supervisor "grid:$OUT_GRID")
tok_out[liaison]=$(new_token liaison-out liaison "street:110101002")
tok_out[readonly]=$(new_token ro-out readonly "street:110101002")
police=$(new_token police-in staff "grid:$G" --post police --person "苏鹏华")
grid_commander=$(new_token cmd-grid commander "grid:$G")
street_commander=$(new_token cmd-street commander "street:$S")
ff_f=$(new_token ff-f staff "grid:$F" --post firefighter)
roles=(operator commander staff supervisor liaison readonly)

echo "tokens: printed once, stored as hashes in a 0600 file"
assert_eq "${#boss}" 46 "a token's length"
assert_eq "$(stat -c %a "$tokens")" 600 "the tokens file's mode"
for t in "$boss" "${tok_in[@]}" "${tok_out[@]}"; do
    grep -q -- "${t:3}" "$tokens" && fail "the tokens file holds a token"
done

write_config "dispatched=1d,handled=1d,verified=2d,evaluated=5d"
echo "gridgate check loads the tokens file, and names FILE:LINE of a bad one"
"$gridgate" check -c "$work/gridgate.yaml" >"$work/check.out" 2>&1 ||
    fail "gridgate check refused a good config" "$work/check.out"
assert_contains "$(cat "$work/check.out")" "API tokens" "check's summary"
cp "$tokens" "$work/tokens.good"
sed -i '0,/role: commander/s//role: captain/' "$tokens"
if "$gridgate" check -c "$work/gridgate.yaml" >"$work/check.out" 2>&1; then
    fail "gridgate check took a bad tokens file"
fi
assert_contains "$(cat "$work/check.out")" "tokens.yaml:4: tokens[0].role: unknown role \"captain\"" \
    "check's message"
cp "$work/tokens.good" "$tokens"
if "$gridgate" token new --role readonly --scope street:110101999 -c "$work/gridgate.yaml" >/dev/null 2>"$work/check.out"; then
    fail "token new -c took a scope outside the district"
fi
assert_contains "$(cat "$work/check.out")" "not in the district" "token new -c's message"
"$gridgate" token new --role readonly --scope street:110101003 --name ro-3 -c "$work/gridgate.yaml" >/dev/null 2>&1 ||
    fail "token new -c refused a good scope"

# The notices every grid's terminals would get.
mosquitto_sub -p "$mqtt_port" -q 1 -v -t 'grids/+/cases' >"$work/notices" 2>&1 &
sub_pid=$!
start_gateway
probe_notice() { mosquitto_pub -p "$mqtt_port" -q 1 -t grids/probe/cases -m probe; grep -q probe "$work/notices"; }
gg_wait_until 10 probe_notice || fail "mosquitto_sub did not subscribe"

echo "headers and health"
call GET /healthz "" 200 "/healthz without a token"
assert_eq "$(j '$.status')" ok "/healthz"
call GET /api/v1/grids "$boss" 200 "grids"
grep -qi '^Cache-Control: no-store' "$work/headers" || fail "no Cache-Control: no-store"
grep -qi '^X-Content-Type-Options: nosniff' "$work/headers" || fail "no X-Content-Type-Options"
grep -qi '^Content-Type: application/json' "$work/headers" || fail "no JSON Content-Type"

# ---- (a) the loops -------------------------------------------------------

notices_of() { grep "\"id\":$1," "$work/notices" | sed 's/.*"event":"\([a-z]*\)".*/\1/' | tr '\n' ' '; }
influx_events_of() {
    gg_influx_query "$influx_port" gridgate "SELECT event FROM case_event WHERE case_id = $1" >"$work/influx.json"
    sqlite3 :memory: "SELECT group_concat(value ->> 1, ' ') FROM json_each(readfile('$work/influx.json'), '\$.results[0].series[0].values')"
}
has_events() { # has_events CASE_ID "EVENTS" SOURCE_FN: every event is in what SOURCE_FN says
    local got
    got=" $($3 "$1") "
    for e in $2; do case $got in *" $e "*) ;; *) return 1 ;; esac; done
}

echo "(a) a smoke alarm opens a case, dispatched to the firefighter"
mosquitto_pub -p "$mqtt_port" -q 1 -t devices/smoke-000001/telemetry -m '{"smoke": 0.42, "alarm": true}'
rule_case_listed() { api GET "/api/v1/cases?grid=$G&category=fire.smoke" "$boss"; [ "$(j '$.cases[0].state')" = dispatched ]; }
gg_wait_until 15 rule_case_listed || fail "no dispatched fire.smoke case in $G" "$work/gridgate.log"
rc=$(j '$.cases[0].id')
assert_eq "$(j '$.cases[0].assignee_role')" firefighter "the rule's role"
assert_eq "$(j '$.cases[0].rule')" fire.smoke "the case's rule"
call GET "/api/v1/cases/$rc" "${tok_in[staff]}" 200 "the firefighter reads the case"
assert_eq "$(j '$.actions')" '["feedback","return"]' "what the firefighter may do"
assert_eq "$(j '$.case.trigger.fields.smoke')" 0.42 "the trigger reading"
call GET /api/v1/devices/smoke-000001 "$boss" 200 "the device view"
assert_eq "$(j '$.device.last_reading.fields.smoke')" 0.42 "the device's last reading"
assert_eq "$(j '$.device.last_reading.fields.alarm')" 1 "the device's last reading (alarm)"
# A longer reading of another device, then a shorter one: each shown whole.
mosquitto_pub -p "$mqtt_port" -q 1 -t devices/smoke-000002/telemetry \
    -m '{"smoke": 0.01, "temp": 21.5, "battery": 80, "alarm": false}'
last_temp_is() { api GET /api/v1/devices/smoke-000002 "$boss"; [ "$(j '$.device.last_reading.fields.temp')" = "$1" ]; }
gg_wait_until 10 last_temp_is 21.5 || fail "smoke-000002's last reading: $(head -c 400 "$work/body")" "$work/gridgate.log"
mosquitto_pub -p "$mqtt_port" -q 1 -t devices/smoke-000002/telemetry -m '{"smoke": 0.02}'
gg_wait_until 10 last_temp_is "" || fail "smoke-000002's shorter last reading: $(head -c 400 "$work/body")" "$work/gridgate.log"
assert_eq "$(j '$.device.last_reading.fields.smoke')" 0.02 "the shorter reading, whole"

echo "(a) feedback, a failed verification (rework), feedback, verify, evaluate, close"
call POST "/api/v1/cases/$rc/feedback" "${tok_in[staff]}" '{"note": "put out, window open"}' 200 "feedback"
assert_eq "$(j '$.case.state')" handled "after feedback"
v=$(j '$.case.version')
call POST "/api/v1/cases/$rc/verify" "${tok_in[commander]}" "{\"pass\": false, \"note\": \"still smells of smoke\", \"version\": $v}" 200 "failed verification"
assert_eq "$(j '$.case.state')" dispatched "after a failed verification"
assert_eq "$(j '$.case.rework_count')" 1 "rework counted"
assert_eq "$(j '$.case.assignee_role')" firefighter "the same assignee"
call POST "/api/v1/cases/$rc/verify" "${tok_in[commander]}" "{\"pass\": true, \"version\": $v}" 409 "a stale version"
assert_eq "$(j '$.error')" stale "stale error code"
call POST "/api/v1/cases/$rc/feedback" "${tok_in[staff]}" '{"note": "source found: a burnt pot"}' 200 "second feedback"
call POST "/api/v1/cases/$rc/verify" "${tok_in[supervisor]}" '{"pass": true}' 200 "verification by the supervisor"
call POST "/api/v1/cases/$rc/evaluate" "${tok_in[commander]}" '{"score": 4}' 200 "evaluation"
assert_eq "$(j '$.case.score')" 4 "the score"
call POST "/api/v1/cases/$rc/close" "${tok_in[commander]}" 200 "close without a body"
assert_eq "$(j '$.case.state')" closed "after close"
assert_eq "$(history_states "$rc")" "reported dispatched handled dispatched handled verified evaluated closed" \
    "the rule case's history"
assert_eq "$(j '$.history[3].note')" "still smells of smoke" "the rework's note"
assert_eq "$(j '$.history[3].actor')" "commander:cmd-in" "who failed the verification"
assert_eq "$(j '$.history[5].actor')" "supervisor:sup-in" "who verified"
call POST "/api/v1/cases/$rc/close" "${tok_in[commander]}" 409 "closing a closed case"
assert_eq "$(j '$.error')" conflict "wrong state error code"

echo "(a) a citizen's report by location: dispatch, return, dispatch, rework, close"
call POST /api/v1/cases "$police" '{"lat": 39.9772397, "lon": 116.3711756, "category": "public.noise",
    "title": "深夜施工噪音", "detail": "25号楼旁工地 23:00 后仍在施工", "reporter": "市民 张先生 13800000000"}' 201 "a report"
pc=$(j '$.case.id')
grep -qi "^Location: /api/v1/cases/$pc" "$work/headers" || fail "no Location header for case $pc"
assert_eq "$(j '$.case.grid_id')" "$G" "the grid found from lat/lon"
assert_eq "$(j '$.case.state')" reported "a report's state"
assert_eq "$(j '$.case.severity')" minor "a report's default severity"
assert_eq "$(j '$.case.reported_by')" "staff:police-in" "who reported"
assert_eq "$(j '$.case.location.lat')" 39.9772397 "the location"
call POST "/api/v1/cases/$pc/dispatch" "${tok_in[commander]}" '{"role": "police", "note": "派网格警员"}' 200 "dispatch to police"
assert_eq "$(j '$.case.assignee')" "苏鹏华" "the roster's police officer"
call POST "/api/v1/cases/$pc/return" "$police" '{"note": "工地归城管"}' 200 "returned by the police"
assert_eq "$(j '$.case.state')" reported "after return"
assert_eq "$(j '$.case.return_count')" 1 "return counted"
assert_eq "$(j '$.case.assignee')" "" "assignee cleared"
call POST "/api/v1/cases/$pc/dispatch" "${tok_in[commander]}" '{"role": "firefighter"}' 200 "redispatch"
call POST "/api/v1/cases/$pc/feedback" "${tok_in[staff]}" '{"note": "已劝停"}' 200 "feedback"
call POST "/api/v1/cases/$pc/verify" "${tok_in[supervisor]}" '{"pass": false}' 400 "a failed verification without a note"
call POST "/api/v1/cases/$pc/verify" "${tok_in[supervisor]}" '{"pass": false, "note": "又开工了"}' 200 "failed verification"
call POST "/api/v1/cases/$pc/feedback" "${tok_in[staff]}" '{"note": "设备已查封"}' 200 "feedback again"
call POST "/api/v1/cases/$pc/verify" "${tok_in[commander]}" '{"pass": true}' 200 "verify"
call POST "/api/v1/cases/$pc/evaluate" "${tok_in[commander]}" '{"score": 6}' 400 "a score out of range"
call POST "/api/v1/cases/$pc/evaluate" "${tok_in[commander]}" '{"score": 5}' 200 "evaluate"
call POST "/api/v1/cases/$pc/close" "${tok_in[commander]}" '{}' 200 "close"
assert_eq "$(history_states "$pc")" \
    "reported dispatched reported dispatched handled dispatched handled verified evaluated closed" \
    "the report's history"
assert_eq "$(j '$.case.reporter')" "市民 张先生 13800000000" "the reporter"

echo "(a) both loops in the MQTT notices and in InfluxDB"
loop_events="opened dispatched handled rework verified evaluated closed"
gg_wait_until 10 has_events "$rc" "$loop_events" notices_of ||
    fail "notices of case $rc: $(notices_of "$rc")"
gg_wait_until 10 has_events "$pc" "opened dispatched returned rework closed" notices_of ||
    fail "notices of case $pc: $(notices_of "$pc")"
grep -q "^grids/$G/cases " "$work/notices" || fail "no notice on grids/$G/cases"
gg_wait_until 15 has_events "$rc" "$loop_events" influx_events_of ||
    fail "case_event points of case $rc: $(influx_events_of "$rc")"
gg_wait_until 15 has_events "$pc" "opened returned rework closed" influx_events_of ||
    fail "case_event points of case $pc: $(influx_events_of "$pc")"
tags=$(gg_influx_query "$influx_port" gridgate "SELECT * FROM case_event WHERE case_id = $pc AND event = 'closed'")
for want in "\"$G\"" '"report"' '"public.noise"' '"closed"' '"commander:cmd-in"'; do
    assert_contains "$tags" "$want" "the closed point of case $pc"
done

# ---- (b) the permission matrix -----------------------------------------

declare -A allowed=([dispatch]=commander [feedback]=staff [verify]="commander supervisor"
                    [evaluate]=commander [close]=commander [cancel]=commander [return]=staff
                    [defer]=commander [resume]=commander)
declare -A pre=([dispatch]=reported [feedback]=dispatched [verify]=handled [evaluate]=verified
                [close]=evaluated [cancel]=reported [return]=dispatched [defer]=dispatched
                [resume]=deferred)
declare -A body=([dispatch]='{"role":"firefighter"}' [feedback]='{"note":"done"}'
                 [verify]='{"pass":true}' [evaluate]='{"score":5}' [close]='{}'
                 [cancel]='{"note":"duplicate"}' [return]='{"note":"not ours"}'
                 [defer]='{"note":"waiting for parts"}' [resume]='{}')
ops=(dispatch feedback verify evaluate close cancel return defer resume)

# make_case STATE: a new case in G brought to STATE by the district.
make_case() {
    local id
    call POST /api/v1/cases "$boss" "{\"grid_id\":\"$G\",\"category\":\"test.matrix\",\"title\":\"m\"}" 201 "matrix case"
    id=$(j '$.case.id')
    case $1 in reported) echo "$id"; return ;; esac
    call POST "/api/v1/cases/$id/dispatch" "$boss" '{"role":"firefighter"}' 200 "to dispatched"
    case $1 in dispatched) echo "$id"; return ;; deferred)
        call POST "/api/v1/cases/$id/defer" "$boss" '{"note":"later"}' 200 "to deferred"
        echo "$id"; return ;;
    esac
    call POST "/api/v1/cases/$id/feedback" "${tok_in[staff]}" '{"note":"done"}' 200 "to handled"
    case $1 in handled) echo "$id"; return ;; esac
    call POST "/api/v1/cases/$id/verify" "$boss" '{"pass":true}' 200 "to verified"
    case $1 in verified) echo "$id"; return ;; esac
    call POST "/api/v1/cases/$id/evaluate" "$boss" '{"score":3}' 200 "to evaluated"
    echo "$id"
}

echo "(b) the permission matrix (role x op x scope: expected status)"
printf '%-9s' op; printf ' %-10s' "${roles[@]}"; echo
for op in "${ops[@]}"; do
    id=$(make_case "${pre[$op]}")
    row_in="" row_out=""
    for role in "${roles[@]}"; do
        # Out of scope first: invisible, whatever the role.
        call POST "/api/v1/cases/$id/$op" "${tok_out[$role]}" "${body[$op]}" 404 "$op by $role out of scope"
        want=403
        case " ${allowed[$op]} " in *" $role "*) want=200 ;; esac
        call POST "/api/v1/cases/$id/$op" "${tok_in[$role]}" "${body[$op]}" "$want" "$op by $role in scope"
        row_in+=$(printf ' %-10s' "$want")
        [ "$want" != 200 ] || id=$(make_case "${pre[$op]}")
    done
    printf '%-9s%s  (in scope; out of scope: 404 for all)\n' "$op" "$row_in"
done

echo "(b) command levels: a grid commander is no command centre; staff only at their post"
id=$(make_case reported)
call POST "/api/v1/cases/$id/dispatch" "$grid_commander" '{"role":"police"}' 403 "dispatch by a grid-scoped commander"
call POST "/api/v1/cases/$id/dispatch" "$street_commander" '{"role":"police"}' 200 "dispatch by the street"
call POST "/api/v1/cases/$id/feedback" "${tok_in[staff]}" '{"note":"x"}' 403 "feedback by a firefighter on a police case"
call POST "/api/v1/cases/$id/feedback" "$police" '{"note":"x"}' 200 "feedback by the police"

echo "(b) reports and reads"
for role in "${roles[@]}"; do
    want=403
    case $role in commander | staff | supervisor) want=201 ;; esac
    call POST /api/v1/cases "${tok_out[$role]}" "{\"grid_id\":\"$G\",\"category\":\"test.report\",\"title\":\"r\"}" 404 "report by $role out of scope"
    call POST /api/v1/cases "${tok_in[$role]}" "{\"grid_id\":\"$G\",\"category\":\"test.report\",\"title\":\"r\"}" "$want" "report by $role in scope"
    for scope in in out; do
        if [ $scope = in ]; then t=${tok_in[$role]} want=200; else t=${tok_out[$role]} want=404; fi
        call GET "/api/v1/cases/$rc" "$t" "$want" "read case by $role $scope scope"
        call GET "/api/v1/grids/$G" "$t" "$want" "read grid by $role $scope scope"
        call GET /api/v1/devices/smoke-000001 "$t" "$want" "read device by $role $scope scope"
        call GET "/api/v1/stats?scope=grid:$G" "$t" "$want" "figures by $role $scope scope"
        call GET "/api/v1/cases?grid=$G&limit=1" "$t" 200 "list by $role $scope scope"
        [ $scope = in ] && assert_eq "$(j '$.cases[0].grid_id')" "$G" "list by $role in scope"
        [ $scope = out ] && assert_eq "$(j '$.cases')" "[]" "list by $role out of scope"
        call GET /api/v1/metrics "$t" 200 "metrics by $role"
        want=403
        case $role in operator | liaison) want=200 ;; esac
        call POST /api/v1/rules/reload "$t" "$want" "rule reload by $role"
    done
done
call GET /api/v1/metrics "" 401 "metrics without a token"

# ---- (c) dedup ----------------------------------------------------------

echo "(c) 1000 alarms from one device: one case, count 1000"
head -1 "$src/config/district/devices.csv" >"$work/one.csv"
grep "^$dedup_device," "$src/config/district/devices.csv" >>"$work/one.csv"
"$gridsim" run --devices "$work/one.csv" --broker "tcp://127.0.0.1:$mqtt_port" --count 1000 \
    --alarm-every 1 --rate 0 --qos 1 --quiet >"$work/gridsim.log" 2>&1 ||
    fail "gridsim did not publish its 1000 alarms" "$work/gridsim.log"
dedup_done() { api GET "/api/v1/cases?grid=$OUT_GRID&category=fire.smoke" "$boss"; [ "$(j '$.cases[0].count')" = 1000 ]; }
gg_wait_until 60 dedup_done || fail "the alarm case did not count 1000: $(head -c 600 "$work/body")" "$work/gridgate.log"
assert_eq "$(sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$work/body'), '\$.cases')")" 1 "cases of the 1000 alarms"
assert_eq "$(j '$.cases[0].subject')" "$dedup_device" "the dedup case's subject"

# ---- (d) figures --------------------------------------------------------

echo "(d) figures of a scripted set in grid $F"
report_f() { # report_f SEVERITY: a report in F; prints its id
    call POST /api/v1/cases "$boss" "{\"grid_id\":\"$F\",\"category\":\"test.figures\",\"title\":\"f\",\"severity\":\"$1\"}" 201 "figures case"
    j '$.case.id'
}
op_f() { call POST "/api/v1/cases/$1/$2" "${4:-$boss}" "$3" 200 "$2 of figures case $1"; }
close_f() { # close_f ID [fail]: from dispatched to closed, with a rework if asked
    op_f "$1" feedback '{"note":"n"}' "$ff_f"
    if [ "${2:-}" = fail ]; then
        op_f "$1" verify '{"pass":false,"note":"again"}'
        op_f "$1" feedback '{"note":"n2"}' "$ff_f"
    fi
    op_f "$1" verify '{"pass":true}'
    op_f "$1" evaluate '{"score":4}'
    op_f "$1" close '{}'
}
from_ms=$(($(date +%s%3N) - 1000))
f1=$(report_f minor); op_f "$f1" dispatch '{"role":"firefighter"}'; close_f "$f1"            # closed on time
f2=$(report_f minor); op_f "$f2" dispatch '{"role":"firefighter"}'; close_f "$f2" fail       # reworked, closed
f3=$(report_f minor); op_f "$f3" dispatch '{"role":"firefighter"}'; op_f "$f3" defer '{"note":"d"}'  # deferred
f4=$(report_f minor)                                                                          # never dispatched
f5=$(report_f minor); op_f "$f5" cancel '{"note":"dup"}'                                      # cancelled
f6=$(report_f critical); op_f "$f6" dispatch '{"role":"firefighter"}'; close_f "$f6"         # urgent, closed
f7=$(report_f critical); op_f "$f7" dispatch '{"role":"firefighter"}'; op_f "$f7" feedback '{"note":"n"}' "$ff_f"  # urgent, open
: "$f4" "$f5"
# opened 7; dispatched = due 5 (f1 f2 f3 f6 f7); deferred 1; closed 3, all on time;
# closure = on time = 3 / (5 - 1); urgent: due 2, closed 1 -> 0.5; rework 1 / 5;
# open now 3 (7 - 3 closed - 1 cancelled: f3 deferred, f4, f7).
expect_figures() { # expect_figures WHAT: checks the figures object at $.f of the last answer
    local k v
    for kv in opened=7 dispatched=5 due=5 deferred=1 closed=3 closed_on_time=3 closure_rate=0.75 \
              on_time_rate=0.75 urgent.due=2 urgent.deferred=0 urgent.closed=1 \
              urgent.closed_on_time=1 urgent.closure_rate=0.5 urgent.on_time_rate=0.5 reworked=1 \
              rework_rate=0.2 overdue_now=0 open_now=3 mean_step_s.deferred=''; do
        k=${kv%%=*} v=${kv#*=}
        assert_eq "$(j "$1.$k")" "$v" "figures ($2): $k"
    done
    [ -n "$(j "$1.mean_step_s.dispatched")" ] || fail "figures ($2): no mean time in dispatched"
}
call GET "/api/v1/stats?scope=grid:$F&from=$from_ms" "$boss" 200 "figures of $F"
expect_figures '$.figures[0]' "/stats of grid $F"
call GET "/api/v1/cases?grid=$F&state=open" "$boss" 200 "the open cases of $F"
open_states=$(sqlite3 :memory: "SELECT group_concat(json_extract(value, '\$.state'), ' ')
    FROM json_each(readfile('$work/body'), '\$.cases')")
assert_eq "$open_states" "handled reported deferred" "the open cases of $F (state=open), newest first"
call GET "/api/v1/stats?scope=street:${F:0:9}&group=grid&from=$from_ms" "$boss" 200 "figures by grid"
assert_eq "$(j '$.group')" grid "the group"
assert_eq "$(j '$.figures[0].key')" "$F" "the only grid with cases in the street"
expect_figures '$.figures[0]' "/stats of the street by grid"
call GET "/api/v1/grids/$F?from=$from_ms" "$boss" 200 "grid $F"
expect_figures '$.figures' "/grids/$F"
assert_eq "$(j '$.open_cases')" 3 "open cases in $F (f3 deferred, f4 reported, f7 handled)"
call GET "/api/v1/stats?scope=grid:$F&from=2099-01-01T00:00:00Z&to=2099-02-01T00:00:00%2B08:00" "$boss" 200 "an empty period"
assert_eq "$(j '$.figures[0].opened')" 0 "opened in an empty period"
assert_eq "$(j '$.figures[0].closure_rate')" "" "a rate without cases is null"
call GET "/api/v1/stats?scope=grid:$F" "$ff_f" 200 "the firefighter's own grid"
call GET "/api/v1/stats?scope=street:${F:0:9}" "$ff_f" 404 "a street around the firefighter's grid"
call GET "/api/v1/stats?group=town" "$boss" 400 "an unknown group"
call GET "/api/v1/stats?from=yesterday" "$boss" 400 "a bad time"

# ---- (e) bad requests ----------------------------------------------------

echo "(e) bad requests change nothing"
# What a bad request must not change: every case as the API shows it, and
# the number of history rows.
snapshot() {
    curl -s -H "Authorization: Bearer $boss" "$base/api/v1/cases?limit=500" >"$work/snapshot.$1"
    cases_db "SELECT count(*) FROM case_history" >>"$work/snapshot.$1"
}
unchanged() {
    snapshot after
    cmp -s "$work/snapshot.before" "$work/snapshot.after" || fail "$1 changed something"
}
# bad METHOD PATH TOKEN [BODY] CODE WHAT: call, then nothing changed.
bad() {
    call "$@"
    unchanged "${*: -1}"
}
# bad_curl CODE ERROR DETAIL WHAT CURL_ARGS...: a request curl makes itself.
bad_curl() {
    status=$(curl -s -o "$work/body" -w '%{http_code}' "${@:5}")
    expect_error "$1" "$2" "$3" "$4"
    unchanged "$4"
}
id=$(make_case handled) # the case the requests aim at
snapshot before
t=${tok_in[commander]}
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true' 400 "malformed JSON"
bad POST "/api/v1/cases/$id/verify" "$t" '[true]' 400 "a JSON array"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": "yes"}' 400 "pass as a string"
assert_contains "$(j '$.detail')" "pass" "the wrong type's field"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true, "note": 5}' 400 "note as a number"
assert_contains "$(j '$.detail')" "note" "the wrong type's field"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true, "version": 1.5}' 400 "a fractional version"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true, "urgent": true}' 400 "an unknown field"
assert_contains "$(j '$.detail')" '"urgent"' "the unknown field"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true, "pass": false}' 400 "a field given twice"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true, "note": "cut\u0000short"}' 400 "an escaped NUL"
bad POST "/api/v1/cases/$id/verify" "$t" '{"pass": true, "score": 3}' 400 "a field of another op"
bad POST /api/v1/cases "$t" "{\"grid_id\": \"$G\", \"title\": \"no category\"}" 400 "a report without category"
assert_contains "$(j '$.detail')" category "the missing field"
bad POST /api/v1/cases "$t" "{\"grid_id\": \"$G\", \"category\": \"c\", \"title\": \"$(head -c 201 /dev/zero | tr '\0' x)\"}" 400 "a title over 200 bytes"
bad POST /api/v1/cases "$t" "{\"lat\": 39.9, \"category\": \"c\", \"title\": \"t\"}" 400 "lat without lon"
bad POST /api/v1/cases "$t" "{\"lat\": 95, \"lon\": 116, \"category\": \"c\", \"title\": \"t\"}" 400 "lat out of range"
bad POST /api/v1/cases "$t" "{\"lat\": 10, \"lon\": 10, \"category\": \"c\", \"title\": \"t\"}" 404 "a place in no grid"
verify_url=$base/api/v1/cases/$id/verify
printf '{"pass": true, "note": "\xc3\x28"}' >"$work/bad_utf8"
bad_curl 400 bad_request "UTF-8" "invalid UTF-8" -H "Authorization: Bearer $t" \
    -H 'Content-Type: application/json' --data-binary @"$work/bad_utf8" "$verify_url"
bad_curl 415 unsupported_media_type "application/json" "a text/plain body" \
    -H "Authorization: Bearer $t" -H 'Content-Type: text/plain' -d '{"pass": true}' "$verify_url"
# A valid JSON object padded with spaces past the 16 KiB limit.
{ printf '{"pass": true'; head -c 40000 /dev/zero | tr '\0' ' '; printf '}'; } >"$work/huge"
bad_curl 413 payload_too_large "16 KiB" "a huge body (Content-Length)" -H "Authorization: Bearer $t" \
    -H 'Content-Type: application/json' --data-binary @"$work/huge" "$verify_url"
bad_curl 413 payload_too_large "16 KiB" "a huge body (chunked)" -H "Authorization: Bearer $t" \
    -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/json' --data-binary @"$work/huge" \
    "$verify_url"
for path in "/api/v1/cases/$id/../$id/verify" "/api/v1/cases/$id/%76erify" "/api/v1//cases/$id/verify" \
            "/api/v1/cases/0$id/verify" "/api/v1/cases/$id/verify/" "/api/v1/cases/$id/approve" \
            "/api/v1/cases/99999999999999999999/verify" "/api/v1/cases/-$id/verify" "/api/v1/./cases/$id/verify" \
            "/api/v1/cases/%2e%2e/$id/verify" "/api/v2/cases/$id/verify"; do
    bad POST "$path" "$t" '{"pass": true}' 404 "path $path"
    assert_eq "$(j '$.error')" not_found "error code for $path"
done
bad GET /api/v1/devices/smoke-000001%00 "$t" 404 "a %-escaped device id"
bad POST /api/v1/cases/999999/verify "$t" '{"pass": true}' 404 "an unknown case"
bad DELETE "/api/v1/cases/$id" "$t" 405 "DELETE"
grep -qi '^Allow: GET' "$work/headers" || fail "no Allow header on 405"
bad GET "/api/v1/cases?sort=id" "$t" 400 "an unknown query parameter"
assert_contains "$(j '$.detail')" '"sort"' "the unknown parameter"
bad GET "/api/v1/cases?limit=0" "$t" 400 "limit 0"
bad GET "/api/v1/cases?limit=501" "$t" 400 "limit 501"
bad GET "/api/v1/cases?state=opened" "$t" 400 "an unknown state"
assert_contains "$(j '$.detail')" 'deferred, open' "the states named in the error"
bad GET "/api/v1/cases?overdue=yes" "$t" 400 "overdue=yes"
bad GET "/api/v1/cases?grid=$G&limit=2" "$t" 200 "a first page"
cursor=$(j '$.next_cursor')
[ ${#cursor} = 32 ] || fail "no cursor after a full page: $(head -c 300 "$work/body")"
first_page_last=$(j '$.cases[1].id')
bad GET "/api/v1/cases?grid=$G&limit=2&cursor=$cursor" "$t" 200 "the next page"
[ "$(j '$.cases[0].id')" -lt "$first_page_last" ] || fail "the next page does not follow the first"
tampered=$(printf '%s' "$cursor" | sed 's/^\(.\{20\}\)./\1x/' | tr x 0)
[ "$tampered" != "$cursor" ] || tampered=$(printf '%s' "$cursor" | sed 's/^\(.\{20\}\)./\11/')
bad GET "/api/v1/cases?grid=$G&limit=2&cursor=$tampered" "$t" 400 "a tampered cursor"
assert_contains "$(j '$.detail')" cursor "the bad cursor"
bad GET "/api/v1/cases?grid=$F&limit=2&cursor=$cursor" "$t" 400 "a cursor with other filters"
bad GET "/api/v1/cases?cursor=not-a-cursor" "$t" 400 "garbage as a cursor"
bad POST "/api/v1/cases/$id/verify" "" '{"pass": true}' 401 "no token"
grep -qi '^WWW-Authenticate: Bearer' "$work/headers" || fail "no WWW-Authenticate on 401"
bad POST "/api/v1/cases/$id/verify" "${t}x" '{"pass": true}' 401 "a wrong token"
bad POST "/api/v1/cases/$id/verify" "gg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" '{"pass": true}' 401 "a made-up token"
bad_curl 401 unauthorized "Bearer" "Basic instead of Bearer" -H "Authorization: Basic $t" \
    -H 'Content-Type: application/json' -d '{"pass": true}' "$verify_url"
call GET "/api/v1/cases/$id" "$t" 200 "the target case"
assert_eq "$(j '$.case.state')" handled "the target case's state after the bad requests"

echo "(e) repeated failed logins from one address: 429, while good tokens still work"
got429=0
for _ in $(seq 1 12); do
    api GET /api/v1/cases "gg_wrongwrongwrong"
    [ "$status" != 429 ] || { got429=1; break; }
    [ "$status" = 401 ] || fail "a bad token got $status"
done
assert_eq "$got429" 1 "429 after api.auth_failures (10) failures in a minute"
assert_eq "$(j '$.error')" too_many_requests "429's error code"
call GET /api/v1/cases "$boss" 200 "a good token from the same address"

echo "tokens never reach the log"
for t in "$boss" "${tok_in[@]}" "${tok_out[@]}" "$police"; do
    grep -qF -- "${t:3}" "$work/gridgate.log" && fail "a token is in gridgate's log"
done
grep -q 'debug \[api\] POST /api/v1/cases' "$work/gridgate.log" || fail "requests are not logged at debug"
call GET /metrics "$boss" 200 "/metrics"
for m in 'gridgate_readings_received_total ' 'gridgate_cases{state="closed"} ' '# TYPE gridgate_cases gauge' \
         'gridgate_api_auth_failures_total ' 'gridgate_case_commands_total ' \
         'gridgate_influx_points_written_total ' 'gridgate_influx_write_latency_microseconds ' \
         'gridgate_influx_outbox_rows ' 'gridgate_influx_points_dead_lettered_total '; do
    grep -qF "$m" "$work/body" || fail "/metrics lacks $m"
done
grep -qi '^Content-Type: text/plain; version=0.0.4' "$work/headers" || fail "/metrics' Content-Type"

# ---- (f) escalation across a restart --------------------------------------

echo "(f) escalation with 2 s limits: community -> street -> district across a restart"
stop_gateway
# GG_SLOW times longer under valgrind, else the street's 2 s pass before a
# poll sees them.
limit=$(gg_slow 2)s
write_config "dispatched=$limit,handled=$limit,verified=$limit,evaluated=$limit"
start_gateway
mosquitto_pub -p "$mqtt_port" -q 1 -t "devices/$esc_device/telemetry" -m '{"smoke": 0.3}'
esc_case() { api GET "/api/v1/cases?grid=$esc_grid&category=fire.smoke" "$boss"; [ "$(j '$.cases[0].escalation')" = "$1" ]; }
gg_wait_until 15 esc_case 0 || fail "no case for $esc_device" "$work/gridgate.log"
ec=$(j '$.cases[0].id')
cmd_c=$(new_token cmd-c2 commander "community:${esc_grid:0:12}")
gg_wait_until 10 esc_case 1 || fail "case $ec did not escalate to the street: $(head -c 400 "$work/body")" "$work/gridgate.log"
assert_eq "$(j '$.cases[0].escalation_level')" street "escalation level"
assert_eq "$(j '$.cases[0].overdue')" 1 "overdue after the limit"
stop_gateway
start_gateway
gg_wait_until 10 esc_case 2 || fail "case $ec did not escalate to the district after the restart" "$work/gridgate.log"
sleep_until=$((SECONDS + 3))
while [ $SECONDS -lt $sleep_until ]; do sleep 0.5; done # no more timers at the district
call GET "/api/v1/cases/$ec" "$boss" 200 "the escalated case"
assert_eq "$(j '$.case.escalation')" 2 "escalation stays at the district"
timer_rows=$(sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$work/body'), '\$.history') WHERE value ->> 'actor' = 'gridgate:timer'")
assert_eq "$timer_rows" 2 "timer rows in the history"
assert_contains "$(j '$.history[2].note')" "escalated to street" "the first timer row's note"
gg_wait_until 10 has_events "$ec" "escalated" notices_of || fail "no escalated notice for $ec"
call POST "/api/v1/cases/$ec/defer" "$cmd_c" '{"note":"x"}' 403 "the community may no longer act"
call POST "/api/v1/cases/$ec/defer" "$street_commander" '{"note":"x"}' 403 "the street may no longer act"
call POST "/api/v1/cases/$ec/defer" "$boss" '{"note":"parts"}' 200 "the district acts"
stop_gateway
echo "PASS"
