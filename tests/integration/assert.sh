# Assertions for the integration tests; each failure names what was
# expected and what came, and can print a log for context.

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
