#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz/fuzz_*.cc).
#
#   tests/fuzz/run.sh [SECONDS]     build with clang into build/fuzz, then fuzz each
#                                   target for SECONDS (default 20) from its seed corpus
#   tests/fuzz/run.sh --smoke DIR   run each target built in DIR once over its seed
#                                   corpus, no fuzzing (the CTest test fuzz_smoke)
#
# New inputs go to build/fuzz/corpus/<target>, crashes to build/fuzz/artifacts/<target>;
# a crash fails the script. Replay one with: build/fuzz/fuzz_<target> <crash file>.
# Every crash found becomes a regression test (tests/fuzz_regression_test.cc) and its
# input joins tests/fuzz/corpus/<target>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
targets=(command query record frame cloudevents)

if [ "${1:-}" = "--smoke" ]; then
  build=${2:?usage: run.sh --smoke BUILD_DIR}
  for target in "${targets[@]}"; do
    echo "=== fuzz smoke: $target"
    "$build/fuzz_$target" -runs=0 "$here/corpus/$target"
  done
  exit 0
fi

seconds=${1:-20}
build=$root/build/fuzz
CXX=${CXX:-clang++}
case "$("$CXX" --version)" in *clang*) ;; *) CXX=clang++ ;; esac
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTALLY_FUZZ=ON -DTALLY_TESTS=OFF >/dev/null
cmake --build "$build" -j "${JOBS:-2}" --target fuzz_command fuzz_query fuzz_record fuzz_frame fuzz_cloudevents
for target in "${targets[@]}"; do
  echo "=== fuzz: $target for ${seconds}s"
  mkdir -p "$build/corpus/$target" "$build/artifacts/$target"
  # -rss_limit_mb: a decoder that allocates gigabytes for a small input is a bug too.
  dict=()
  [ "$target" = record ] || dict=(-dict="$here/json.dict")
  "$build/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$build/artifacts/$target/" "$build/corpus/$target" "$here/corpus/$target"
done
echo "=== fuzz: no crash in ${seconds}s per target"
