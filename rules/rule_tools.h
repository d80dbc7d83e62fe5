/* rule_tools: the liaisons' two tools around the rule engine.
 *
 *   gridgate rules test DIR [-v]
 *   gridgate rules replay -c FILE [--from-journal | --from-influx QUERY] [READINGS.jsonl]
 *
 * Owns the rule-test harness: one Lua state per *_test.lua file (not the
 * engine's sandbox: base, string, table and math only, plus test()), the
 * simulated devices, clock and in-memory case model of each test, and a
 * fresh engine per test. Owns the replay loop over JSON lines or the
 * journal. Does not own the engine's sandbox and never touches the case
 * store or InfluxDB: replay only prints what the rules ask for.
 *
 * Rule tests (the t object is in notes/rules-spec.md; decisions made here):
 *  - Each test() runs at once, against a fresh engine loaded from DIR, on
 *    the test's clock, with no quarantine of failing rules (every failure
 *    is reported).
 *  - Clock: starts at 2026-01-01T00:00:00Z. t.at(ISO 8601 or ms) before any
 *    input or advance moves the start; later it moves the clock forward as
 *    t.advance does (silence checks included); backwards is an error.
 *    ISO 8601: YYYY-MM-DDTHH:MM[:SS[.fff]] then Z or +HH:MM / -HH:MM (UTC
 *    when no zone is given).
 *  - t.device{ id, type, heartbeat, label, grid = { id, name, type, level,
 *    community, community_id, street, street_id, roster } | "GRID_ID" }.
 *    Defaults: type from the id's prefix before '-' ("smoke-1" -> smoke),
 *    heartbeat per type as the config's rules.heartbeats default, grid
 *    "110101001001001" residential routine, named "test grid", community
 *    and street ids the grid id's first 12 and 9 characters, every one of
 *    the seven roles held by "<role>-person". A roster given replaces the
 *    default one (roles it does not name are held by nobody).
 *  - t.reading{ device, type, ts, fields, NAME = value... }: telemetry at
 *    the clock. device may be left out when the test has exactly one
 *    device; an unknown device is created with the defaults (type from
 *    type= or the id's prefix). ts (ms) is the device's own time when it
 *    differs from arrival. Every other key is a field: numbers are numbers
 *    (decimals, as the JSON decoder makes them, even when whole),
 *    booleans and strings keep their type; fields = {...} adds fields
 *    whose names are reserved here (type, ts, device...).
 *  - t.event{ device, kind = "event" | "status", status, ... }: kind
 *    "status" takes status = "online" | "offline" and nothing else.
 *  - t.advance(duration) moves the clock, jumping to each device's next
 *    silence threshold and then looking every second while it stays
 *    silent. A device never heard from is silent since the test started.
 *  - Case model by (rule, subject), as the store keeps it: open_case opens
 *    or counts (highest severity; category, role and title of the first),
 *    clear_case marks cleared, the case stays open and a later open_case
 *    un-clears it. t.expect_case / expect_no_case / expect_cleared match
 *    on any of rule, subject, device, category, severity, role, title,
 *    detail, count, cleared, shadow. Shadow rules' actions go to a model
 *    of their own, matched only with shadow = true.
 *  - t.expect_emit{ measurement, rule, device, fields = {...}, tags =
 *    {...}, count, shadow }: some emit of the test matches (fields and
 *    tags: the ones given); with count, exactly that many do.
 *  - t.expect_error{ rule }: that rule (any rule without rule=) failed on
 *    the last t.reading, t.event or t.advance.
 *  - A failed expectation prints "FILE:LINE: test NAME: expected X, got Y"
 *    (the line of the t.expect_* call), a Lua error in a test "FILE:LINE:
 *    test NAME: error: MESSAGE"; a test file that does not load, or fails
 *    outside test(), prints its error and counts as one failed test.
 *
 * Replay input: one JSON object per line, blank lines skipped:
 *   {"device": "smoke-000001", "channel": "telemetry", "ts": 1764316800000,
 *    "payload": {"smoke": 0.31, "alarm": true}}
 * channel: telemetry (default), event or status; ts: arrival time in ms
 * (default: the payload's own "ts", else the time the replay started);
 * payload: a flat JSON object, a SenML JSON array, or for status also
 * "online" / "offline". It is decoded by the gateway's own decoders under
 * the config's payload limits, then round-tripped through the journal's
 * record format, so the rules see exactly what they would live. Unknown
 * devices follow district.unknown_devices. on_silence is not replayed.
 * Quarantines of failing rules are timed by the inputs' times.
 *
 * From InfluxDB (--from-influx QUERY, against the config's influx.url and
 * database): every row of the answer is a reading of the device in its
 * "device" tag at the row's time (microseconds), its fields every column
 * but the time and the tags device, grid, community and street that has a
 * value (numbers as numbers, booleans, strings), so `SELECT * FROM smoke
 * WHERE time > now() - 7d` replays a week of smoke detectors. Rows of all
 * series are replayed in time order. A row without a device tag or of an
 * unknown device is an error, counted, and skipped.
 */
#ifndef RULE_TOOLS_H
#define RULE_TOOLS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct gw_config;
struct gw_registry;

struct rule_tools_test_options {
    const char *dir; /* the rules and their *_test.lua files */
    bool verbose;    /* one line per test, ok or FAIL, and the rules' log.info */
    FILE *out;       /* failures, per-test lines and the summary; NULL: stdout */
    FILE *err;       /* rule load errors and notes; NULL: stderr */
};

struct rule_tools_test_result {
    unsigned passed; /* tests */
    unsigned failed; /* tests, and test files that did not run */
};

/* Loads the rules of dir, then runs every *_test.lua in it, in name order,
 * and prints "N passed, N failed". Returns 0 (the tests ran; the run is a
 * success when failed == 0 and passed > 0), -EINVAL when the rules do not
 * load (printed as "file:line: message" on err), or another negative
 * errno (dir unreadable, out of memory). */
int rule_tools_test(const struct rule_tools_test_options *opts,
                    struct rule_tools_test_result *ret_result);

struct rule_tools_replay_options {
    const struct gw_config *cfg; /* rules, payload limits, journal, district policy */
    struct gw_registry *reg;     /* the district of cfg; quarantine is enabled here if configured */
    const char *input;           /* a JSON lines file, "-" for stdin; NULL: the journal */
    const char *from_influx;     /* an InfluxQL query: replay its rows (input then unused) */
    FILE *out;                   /* one line per action, then the summary; NULL: stdout */
    FILE *err;                   /* "FILE:LINE: reason" per bad input; NULL: stderr */
};

struct rule_tools_replay_result {
    uint64_t readings; /* inputs that went through the rules */
    uint64_t actions;
    uint64_t errors; /* bad lines or records, and rule failures */
};

/* Runs the rules over every input, printing each action as
 *   TS DEVICE RULE open_case category=C severity=S [role=R] title=T subject=S
 *   TS DEVICE RULE clear_case subject=S
 *   TS DEVICE RULE emit measurement=M
 * (TS ISO 8601 UTC with milliseconds; values with blanks or quotes in
 * double quotes with C escapes; " shadow=true" after a shadow rule's
 * action), then "N readings, N actions, N errors". With the journal
 * (input NULL) it reads every record from the oldest on, as consumer
 * "replay", never committing; the gateway must be stopped. Returns 0, or a
 * negative errno when it cannot start (rules, input or journal; printed
 * on err). */
int rule_tools_replay(const struct rule_tools_replay_options *opts,
                      struct rule_tools_replay_result *ret_result);

struct rule_limits;

/* `gridgate check` and a reload: every rule file in dir compiled on its
 * own, so all broken files are reported, not just the first; then all
 * together, for names defined twice across files. Returns 0, or -EINVAL
 * with *ret_errors (malloc'd) holding one "file:line: message" per line. */
int rule_tools_check_dir(const char *dir, const struct rule_limits *limits, char **ret_errors);

#endif
