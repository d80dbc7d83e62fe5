#!/usr/bin/env bash
# `cmake --install` into a temporary prefix: the binaries, the system
# configuration with the sample district and the shipped rules, the Grafana
# provisioning, the web console, the systemd unit with its sandboxing and
# its sysusers file, and the docs are where an operator expects them; the
# installed gridgate checks the installed configuration (whose
# api.console_dir finds the installed console); the unit passes
# systemd-analyze verify where systemd is installed.
#
#   test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build=$1
src=$2
# shellcheck source=../../scripts/servers.sh
. "$src/scripts/servers.sh"
. "$src/tests/integration/assert.sh"

gg_work install
prefix=$work/usr
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
    fail "cmake --install failed" "$work/install.log"

for f in bin/gridgate bin/gridsim etc/gridgate/gridgate.yaml etc/gridgate/district/grids.geojson \
         etc/gridgate/district/devices.csv etc/gridgate/rules/fire.lua etc/gridgate/rules/police.lua \
         etc/gridgate/rules/maintenance.lua lib/systemd/system/gridgate.service \
         lib/sysusers.d/gridgate.conf share/gridgate/grafana/provisioning/datasources/gridgate.yaml \
         share/gridgate/grafana/dashboards/district-overview.json share/gridgate/mosquitto/acl \
         share/gridgate/console/index.html \
         share/doc/gridgate/operators.md share/doc/gridgate/security.md \
         share/doc/gridgate/README.md; do
    [ -s "$prefix/$f" ] || fail "not installed: $f"
done
[ ! -e "$prefix/etc/gridgate/rules/fire_test.lua" ] || fail "rule tests were installed as rules"
# The console as in the source tree, file for file.
(cd "$src/web/console" && find . -type f | sort) >"$work/console.src"
(cd "$prefix/share/gridgate/console" && find . -type f | sort) >"$work/console.installed"
cmp -s "$work/console.src" "$work/console.installed" ||
    fail "the installed console differs from web/console: $(diff "$work/console.src" "$work/console.installed" | head -5)"

echo "the installed gridgate checks the installed configuration"
conf=$prefix/etc/gridgate/gridgate.yaml
"$prefix/bin/gridgate" token new --role operator --scope district -c "$conf" --name install-test \
    >/dev/null 2>"$work/token.err" || fail "token new failed: $(cat "$work/token.err")"
"$prefix/bin/gridgate" check -c "$conf" >"$work/check.out" 2>&1 ||
    fail "gridgate check refused the installed configuration" "$work/check.out"
grep -q ': ok: 112 grids, 300 devices, 10 rules' "$work/check.out" ||
    fail "unexpected check output: $(cat "$work/check.out")"
echo "gridgate check names api.console_dir and the path when index.html is missing"
mv "$prefix/share/gridgate/console/index.html" "$work/index.html"
if "$prefix/bin/gridgate" check -c "$conf" >"$work/check.out" 2>&1; then
    fail "gridgate check took a console without index.html"
fi
grep -q "api.console_dir: .*share/gridgate/console/index.html" "$work/check.out" ||
    fail "check's message does not name the key and the path: $(cat "$work/check.out")"
mv "$work/index.html" "$prefix/share/gridgate/console/index.html"

echo "the unit runs unprivileged and sandboxed"
unit=$prefix/lib/systemd/system/gridgate.service
for line in 'User=gridgate' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'PrivateTmp=yes' \
            'ReadWritePaths=/var/lib/gridgate' 'StateDirectory=gridgate' 'CapabilityBoundingSet=' \
            'ExecReload=/bin/kill -HUP $MAINPID'; do
    grep -qxF "$line" "$unit" || fail "the unit lacks '$line'"
done
grep -q '^ExecStart=/.*/gridgate run -c /.*/gridgate/gridgate.yaml$' "$unit" ||
    fail "the unit's ExecStart: $(grep ExecStart= "$unit")"
grep -q '^u gridgate ' "$prefix/lib/sysusers.d/gridgate.conf" || fail "no sysusers entry for gridgate"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$unit" >"$work/verify.out" 2>&1 || true
    # The unit names the configured prefix's binary, not $prefix's copy.
    if grep -v 'is not executable' "$work/verify.out" | grep -q .; then
        fail "systemd-analyze verify found problems in the unit" "$work/verify.out"
    fi
fi
echo "PASS"
