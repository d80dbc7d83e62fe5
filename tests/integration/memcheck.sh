#!/usr/bin/env bash
# The memory checkers' reports from the integration tests. In a sanitizer
# build (GRIDGATE_SANITIZE) ASan, UBSan and LSan write each report to a file
# (ASAN_OPTIONS/UBSAN_OPTIONS log_path), and under GRIDGATE_VALGRIND every
# gridgate and gridsim writes a valgrind log; both land in the test's own
# directory, $GG_MEMCHECK_DIR (set per test by tests/integration/
# CMakeLists.txt). A background gridgate's report would otherwise only be
# in a log the test deletes: these files are what makes it fail the test.
#
#   memcheck.sh setup ROOT NAME...   empties ROOT, creates ROOT/NAME for each test
#   memcheck.sh check ROOT           prints every report under ROOT; 1 if any
#
# Tests source this file (through assert.sh) for gg_memcheck_reports.

# gg_memcheck_reports DIR: prints the reports under DIR and returns 1 when
# there is one: any sanitizer log (they are only written for a finding),
# and any valgrind log that counts errors (definite and indirect leaks are
# errors there, see --errors-for-leak-kinds) or, for a process killed
# before its summary (kill -9), shows an error's first line.
gg_memcheck_reports() {
    local dir=$1 found=0 f
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    while IFS= read -r -d '' f; do
        case ${f##*/} in
        vg.*.log)
            if grep -q 'ERROR SUMMARY:' "$f"; then
                grep -Eq 'ERROR SUMMARY: [1-9]' "$f" || continue
            else
                grep -Eq '^==[0-9]+== (Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Argument .* fishy|Jump to the invalid|Process terminating)' \
                    "$f" || continue
            fi ;;
        esac
        found=1
        echo "FAIL: memory checker report $f:" >&2
        head -n 200 "$f" >&2
    done < <(find "$dir" -type f -print0 | sort -z)
    return $found
}

gg_memcheck_main() {
    local cmd=${1:-} root=${2:-}
    if [ -z "$cmd" ] || [ -z "$root" ]; then
        echo "usage: $0 setup ROOT NAME... | check ROOT" >&2
        return 2
    fi
    shift 2
    case $cmd in
    setup)
        rm -rf "$root"
        local name
        for name in "$@"; do mkdir -p "$root/$name"; done
        ;;
    check)
        if gg_memcheck_reports "$root"; then
            echo "no memory checker report under $root"
        else
            return 1
        fi
        ;;
    *)
        echo "unknown command $cmd" >&2
        return 2
        ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    gg_memcheck_main "$@"
fi
