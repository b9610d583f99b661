#!/usr/bin/env bash
# Builds the benchmarks and runs them all: the micro benchmarks, the in-process load
# generator (with the rebuild-from-log figure), the memory after 10 million events
# (bench/memory.sh, about 2 minutes) and the SPEC §5 peer comparison
# (bench/peers/run.sh: PostgreSQL 15, Redis 7 and Tally, in-process and over loopback, on
# the same workload).
# Results: bench/RESULTS.md explains the figures; raw outputs go to bench/peers/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=build-bench
echo "=== build ($build, Release, TALLY_BENCH=ON)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTALLY_BENCH=ON -DTALLY_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target tally_micro_bench tally_load tally
echo "=== micro benchmarks"
"$build/bench/tally_micro_bench" --benchmark_min_time=0.2
echo "=== tally_load, in-process, with rebuild"
"$build/bench/tally_load" --events 1000000 --rebuild
echo "=== memory after 10 million events into tally serve"
TALLY="$PWD/$build/tally" bench/memory.sh 10000000
echo "=== peers"
TALLY_LOAD="$PWD/$build/bench/tally_load" TALLY="$PWD/$build/tally" bench/peers/run.sh
