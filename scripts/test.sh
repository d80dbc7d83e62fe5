#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings
# as errors and runs, fastest failures first:
#  1. the unit tests under AddressSanitizer, UndefinedBehaviorSanitizer and
#     LeakSanitizer (gcc, Debug);
#  2. the fuzzers for a bounded time (clang, libFuzzer);
#  3. the rest of the suite in that sanitizer build: the integration tests,
#     which start their own mosquitto and influxd on loopback; a sanitizer
#     report from any gridgate or gridsim, background ones and leaks at a
#     SIGTERM stop included, fails its test (tests/integration/memcheck.sh);
#  4. the whole suite in the release build, what ships;
#  5. the integration tests labelled valgrind with gridgate and gridsim
#     under valgrind memcheck: any memory error or definite/indirect leak
#     fails. The others are too slow under it (their list and reasons:
#     tests/integration/CMakeLists.txt).
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

echo "== sanitizer build (ASan + UBSan): the rest of the suite (integration)"
ctest --test-dir build-asan -LE unit -j "$jobs" --output-on-failure

echo "== release build: the whole suite"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGRIDGATE_WERROR=ON >/dev/null
cmake --build build -j "$jobs" -- --no-print-directory -s
ctest --test-dir build --output-on-failure

echo "== valgrind build: the integration tests labelled valgrind, under memcheck"
cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGRIDGATE_WERROR=ON \
    -DGRIDGATE_VALGRIND=ON >/dev/null
cmake --build build-valgrind -j "$jobs" -- --no-print-directory -s
ctest --test-dir build-valgrind -L '^valgrind$' -j "$jobs" --output-on-failure
