#!/usr/bin/env bash
# Set up and run the main job: install what is missing, build the release binary, and
# run `tally demo` on a fresh embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTALLY_TESTS=OFF >/dev/null
cmake --build build/release --target tally
build/release/tally demo "$@"
