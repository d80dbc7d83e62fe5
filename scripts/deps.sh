#!/usr/bin/env bash
# Installs the Debian 12 packages gridgate builds, tests and runs with.
# Idempotent: silent when everything is already there. Servers installed
# here (mosquitto, influxdb) are kept from starting as system services;
# gridgate's scripts start their own copies on loopback.
set -euo pipefail

PACKAGES=(
    build-essential pkg-config cmake
    libpaho-mqtt-dev libssl-dev mosquitto mosquitto-clients
    libcoap3-dev libcoap3-bin
    libcurl4-openssl-dev curl zlib1g-dev
    liblua5.4-dev lua5.4
    libsqlite3-dev sqlite3
    libyaml-dev libcjson-dev libcbor-dev libmicrohttpd-dev
    influxdb influxdb-client
    libcmocka-dev
    clang libclang-rt-14-dev openssl
    valgrind # memcheck on the integration tests (scripts/test.sh)
    chromium fonts-wqy-microhei # the console's browser test (tests/browser), CJK glyphs
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
# node and npm for the browser test's playwright-core: the machine's own
# Node.js when it has one, else Debian's.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "gridgate: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# policy-rc.d answering 101 tells invoke-rc.d not to start services that
# the packages install; only added when the machine has none of its own.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
fi
cleanup() { if [ $added_policy -eq 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
