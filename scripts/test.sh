#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings
# as errors, runs the unit tests under AddressSanitizer and
# UndefinedBehaviorSanitizer, the payload decoders' fuzzers for a bounded
# time (clang, libFuzzer), then the whole suite (unit and integration,
# which start their own mosquitto and influxd on loopback) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
jobs=$(nproc)

echo "== sanitizer build (ASan + UBSan): unit tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGRIDGATE_WERROR=ON -DGRIDGATE_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs" -- --no-print-directory -s
ctest --test-dir build-asan -L unit -j "$jobs" --output-on-failure

echo "== fuzz build (clang, libFuzzer + ASan + UBSan): 10 s per target, two at a time"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DGRIDGATE_WERROR=ON -DGRIDGATE_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$jobs" -- --no-print-directory -s
ctest --test-dir build-fuzz -L fuzz -j2 --output-on-failure

echo "== release build: the whole suite"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGRIDGATE_WERROR=ON >/dev/null
cmake --build build -j "$jobs" -- --no-print-directory -s
ctest --test-dir build --output-on-failure
