#!/usr/bin/env bash
# Set up and run every test: install what is missing, then build and run the whole
# suite twice, in release (g++) and under AddressSanitizer + UndefinedBehaviorSanitizer
# (clang, so that both compilers' warnings, which are errors, gate every change), then
# fuzz each decoder for TALLY_FUZZ_SECONDS (default 20; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
for flavour in release asan; do
  dir=build/test-$flavour
  if [ $flavour = asan ]; then
    options=(-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALLY_SANITIZE=ON)
  else
    options=(-DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release)
  fi
  echo "=== $flavour: build"
  cmake -S . -B "$dir" -G Ninja "${options[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "=== $flavour: test"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900
done
# The fuzz targets (clang + libFuzzer), each for a bounded time; 0 skips this step.
fuzz_seconds=${TALLY_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "=== fuzz: ${fuzz_seconds}s per target"
  JOBS=$jobs tests/fuzz/run.sh "$fuzz_seconds"
fi
echo "=== all tests passed in release and asan+ubsan"
