#!/usr/bin/env bash
# Set up and run the main job: install what is missing, build the release binary, and
# run `tally demo` on a fresh embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# A fresh build directory skips the tests (only `tally` is built); an existing one
# keeps its settings, so a developer's test binaries there are not left stale.
tests=()
[ -f build/release/CMakeCache.txt ] || tests=(-DTALLY_TESTS=OFF)
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release "${tests[@]}" >/dev/null
cmake --build build/release --target tally
build/release/tally demo "$@"
