#!/usr/bin/env bash
# `gridgate rules test` and `gridgate rules replay`, as a liaison runs them.
#
#   test_rules_tools.sh GRIDGATE_BIN SOURCE_DIR
#
# rules test: a rules directory with a small rule and a *_test.lua holding
# passing and failing tests: the failure lines (file:line, expected, got),
# the per-test lines of -v, "N passed, N failed" and the exit status; all
# passing exits 0; no tests exits 1; a rule with a syntax error is
# reported as file:line and exits non-zero; the shipped rules pass their
# own tests.
# rules replay: JSON lines against the shipped rules and the sample
# district print the open_case line of an alarm reading and nothing for a
# normal one, and a bad line as file:line on stderr; --from-journal refuses
# a directory that is no journal and a journal a gateway holds.
set -euo pipefail

gridgate=$1
src=$2
. "$src/tests/integration/assert.sh"

work=$(mktemp -d /tmp/gridgate-rules-tools.XXXXXX)
cleanup() {
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# run OUT ERR CMD...: runs CMD, stdout to OUT, stderr to ERR; sets $status.
run() {
    local out=$1 err=$2
    shift 2
    status=0
    "$@" >"$out" 2>"$err" || status=$?
}

# ---- rules test --------------------------------------------------------------

rules=$work/rules
mkdir -p "$rules"
cat >"$rules/smoke.lua" <<'EOF'
rule{
    name = "fire.smoke",
    match = { type = "smoke" },
    on_reading = function(r)
        if type(r.smoke) ~= "number" then return end
        if r.smoke >= 0.10 then
            local severity = "major"
            if r.grid.type == "crowded" then severity = "critical" end
            open_case{ category = "fire.smoke", severity = severity, role = "firefighter",
                       title = "烟感报警 " .. r.device }
        end
    end,
}
EOF
# Line numbers matter: the assertions below name them.
cat >"$rules/smoke_test.lua" <<'EOF'
test("smoke over the threshold opens a major case", function(t)
    t.device{ id = "smoke-1", type = "smoke" }
    t.reading{ device = "smoke-1", smoke = 0.31, alarm = true }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-1", severity = "major", role = "firefighter" }
end)

test("clean air opens nothing", function(t)
    t.reading{ device = "smoke-2", smoke = 0.02 }
    t.expect_no_case{}
end)

test("crowded grids: expected wrongly", function(t)
    t.device{ id = "smoke-3", grid = { type = "crowded" } }
    t.reading{ device = "smoke-3", smoke = 0.5 }
    t.expect_case{ rule = "fire.smoke", severity = "major" }
end)

test("a missing case", function(t)
    t.reading{ device = "smoke-4", smoke = 0.01 }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-4" }
end)

test("a Lua error", function(t)
    t.reading{ device = "smoke-5", smoke = nil + 1 }
end)
EOF

run "$work/out" "$work/err" "$gridgate" rules test "$rules"
assert_eq "$status" 1 "rules test with failing tests: exit status"
out=$(cat "$work/out")
assert_contains "$out" "$rules/smoke_test.lua:15: test crowded grids: expected wrongly: expected case {rule=fire.smoke, severity=major}, got {rule=fire.smoke, subject=smoke-3, category=fire.smoke, severity=critical, role=firefighter, count=1, cleared=false}" \
    "failure line of a wrong severity"
assert_contains "$out" "$rules/smoke_test.lua:20: test a missing case: expected case {rule=fire.smoke, subject=smoke-4}, got no case" \
    "failure line of a missing case"
assert_contains "$out" "$rules/smoke_test.lua:24: test a Lua error: error: attempt to perform arithmetic on a nil value" \
    "failure line of a Lua error"
case $out in
*": ok"*) fail "rules test without -v printed per-test lines: $out" ;;
esac
assert_eq "$(tail -n 1 "$work/out")" "2 passed, 3 failed" "summary line"

run "$work/out" "$work/err" "$gridgate" rules test -v "$rules"
assert_eq "$status" 1 "rules test -v: exit status"
out=$(cat "$work/out")
assert_contains "$out" "$rules/smoke_test.lua:1: test smoke over the threshold opens a major case: ok" "-v: ok line"
assert_contains "$out" "$rules/smoke_test.lua:7: test clean air opens nothing: ok" "-v: ok line"
assert_contains "$out" "$rules/smoke_test.lua:12: test crowded grids: expected wrongly: FAIL" "-v: FAIL line"
assert_eq "$(tail -n 1 "$work/out")" "2 passed, 3 failed" "-v: summary line"

# Only the passing tests: exit 0.
sed -n '1,10p' "$rules/smoke_test.lua" >"$work/passing_test.lua"
mv "$work/passing_test.lua" "$rules/smoke_test.lua"
run "$work/out" "$work/err" "$gridgate" rules test "$rules"
assert_eq "$status" 0 "rules test, all passing: exit status"
assert_eq "$(cat "$work/out")" "2 passed, 0 failed" "all passing: output"

# No test at all is no success.
mkdir -p "$work/untested"
cp "$rules/smoke.lua" "$work/untested/"
run "$work/out" "$work/err" "$gridgate" rules test "$work/untested"
assert_eq "$status" 1 "rules test without tests: exit status"
assert_eq "$(cat "$work/out")" "0 passed, 0 failed" "without tests: output"
assert_contains "$(cat "$work/err")" "no *_test.lua files" "without tests: the reason"

# A rule that does not load: file:line, non-zero, no test runs.
cat >"$rules/broken.lua" <<'EOF'
rule{
    name = "broken",
    on_reading = function(r)
        if r.x then
    end,
}
EOF
run "$work/out" "$work/err" "$gridgate" rules test "$rules"
[ "$status" -ne 0 ] || fail "rules test with a broken rule exited 0"
assert_contains "$(cat "$work/err")" "$rules/broken.lua:5:" "broken rule: file:line"
[ ! -s "$work/out" ] || fail "tests ran although a rule does not load: $(cat "$work/out")"
rm "$rules/broken.lua"

# Usage errors.
run "$work/out" "$work/err" "$gridgate" rules test
assert_eq "$status" 2 "rules test without DIR: exit status"
run "$work/out" "$work/err" "$gridgate" rules nonsense
assert_eq "$status" 2 "rules with an unknown subcommand: exit status"

# The shipped rules pass their own tests.
run "$work/out" "$work/err" "$gridgate" rules test "$src/rules"
assert_eq "$status" 0 "shipped rules' tests: exit status ($(tail -n 5 "$work/out"))"
case $(tail -n 1 "$work/out") in
*" passed, 0 failed") ;;
*) fail "shipped rules' tests: $(tail -n 1 "$work/out")" ;;
esac

# ---- rules replay --------------------------------------------------------------

# The sample config, with the journal somewhere of our own.
cat >"$work/gridgate.yaml" <<EOF
journal:
  dir: "$work/journal"
district:
  grids: "$src/config/district/grids.geojson"
  devices: "$src/config/district/devices.csv"
rules:
  dir: "$src/rules"
EOF
# smoke-000001 and smoke-000002 are in grid 110101001001001 (residential).
cat >"$work/readings.jsonl" <<'EOF'
{"device": "smoke-000001", "channel": "telemetry", "ts": 1795852800000, "payload": {"smoke": 0.31, "temp": 24.0, "battery": 87, "alarm": true}}
{"device": "smoke-000002", "ts": 1795852801000, "payload": {"smoke": 0.02, "temp": 22.5, "battery": 90, "alarm": false}}
{"device": "smoke-000002", "payload": {"smoke": 0.02
EOF

run "$work/out" "$work/err" "$gridgate" rules replay -c "$work/gridgate.yaml" "$work/readings.jsonl"
assert_eq "$status" 1 "replay with a bad line: exit status"
out=$(cat "$work/out")
assert_contains "$out" '2026-11-28T08:00:00.000Z smoke-000001 fire.smoke open_case category=fire.smoke severity=major role=firefighter title="烟感报警 smoke-000001" subject=smoke-000001' \
    "replay: the alarm's open_case line"
if grep -q "^[^ ]* smoke-000002 [^ ]* open_case" "$work/out"; then
    fail "replay: a normal reading opened a case: $(grep smoke-000002 "$work/out")"
fi
assert_contains "$(cat "$work/err")" "$work/readings.jsonl:3: not valid JSON" "replay: bad line as file:line"
summary=$(tail -n 1 "$work/out")
[[ $summary =~ ^2\ readings,\ [0-9]+\ actions,\ 1\ errors$ ]] || fail "replay summary: '$summary'"
[ ! -e "$work/journal" ] || fail "replay from a file touched the journal"

# Good lines only, from stdin: exit 0.
head -n 2 "$work/readings.jsonl" >"$work/good.jsonl"
status=0
"$gridgate" rules replay -c "$work/gridgate.yaml" - <"$work/good.jsonl" >"$work/out" 2>"$work/err" || status=$?
assert_eq "$status" 0 "replay of good lines from stdin: exit status"
assert_contains "$(cat "$work/out")" "smoke-000001 fire.smoke open_case" "replay from stdin"

# --from-journal: no journal there, then one a gateway holds.
run "$work/out" "$work/err" "$gridgate" rules replay -c "$work/gridgate.yaml" --from-journal
assert_eq "$status" 1 "replay --from-journal without a journal: exit status"
assert_contains "$(cat "$work/err")" "$work/journal: no journal there" "no journal: message"
[ ! -e "$work/journal" ] || fail "replay --from-journal created a journal"

# This shell holds the lock the way a running gateway does (flock on
# journal.lock); no process is left to stop afterwards.
mkdir -p "$work/journal"
exec 9>"$work/journal/journal.lock"
flock -x 9
run "$work/out" "$work/err" "$gridgate" rules replay -c "$work/gridgate.yaml" --from-journal
assert_eq "$status" 1 "replay --from-journal while held: exit status"
assert_contains "$(cat "$work/err")" "in use by a running gateway; --from-journal reads it only while gridgate is stopped" \
    "journal held: message"
flock -u 9
exec 9>&-

# Free now: an empty journal replays to nothing and keeps no replay position.
run "$work/out" "$work/err" "$gridgate" rules replay -c "$work/gridgate.yaml" --from-journal
assert_eq "$status" 0 "replay of an empty journal: exit status ($(cat "$work/err"))"
assert_eq "$(cat "$work/out")" "0 readings, 0 actions, 0 errors" "empty journal: summary"
[ ! -e "$work/journal/consumer-replay.pos" ] || fail "replay left its position file behind"

# Usage: a file and --from-journal together.
run "$work/out" "$work/err" "$gridgate" rules replay -c "$work/gridgate.yaml" --from-journal "$work/good.jsonl"
assert_eq "$status" 2 "replay with a file and --from-journal: exit status"

echo "rules tools: ok"
