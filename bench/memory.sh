#!/usr/bin/env bash
# Memory and restart cost after a long ingest (SPEC §5 "memory"): starts `tally serve`
# on a fresh data directory, loads N usage events into it over the binary protocol
# (16 connections, 1,000 workspaces, 10,000 members), then prints
#   - the daemon's peak and current RSS (VmHWM, VmRSS) after the load,
#   - how long SIGTERM takes to exit,
#   - how long opening that store takes (`tally query --data`: every projection read
#     back into memory) and that process's peak RSS,
#   - the data directory's size.
#
# Usage: bench/memory.sh [EVENTS]   (default 10,000,000; about 100 s of load per 10M on
# the development machine). TALLY=path/to/tally picks the binary (default
# build-bench/tally, built by scripts/bench.sh). The data directory is removed at the end.
set -euo pipefail

events=${1:-10000000}
[[ "$events" =~ ^[0-9]+$ ]] && [ "$events" -ge 1 ] && [ "$events" -le 50000000 ] || {
  echo "memory.sh: EVENTS must be a whole number from 1 to 50,000,000" >&2
  exit 2
}
root=$(cd "$(dirname "$0")/.." && pwd)
tally=${TALLY:-$root/build-bench/tally}
[ -x "$tally" ] || {
  echo "memory.sh: no $tally (build it: scripts/bench.sh, or set TALLY)" >&2
  exit 2
}

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-memory.XXXXXX")
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill -9 "$serve_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "memory-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$work/admin"
"$tally" serve --data "$work/data" --port 0 --http-port 0 --bind 127.0.0.1 --admin-token-file "$work/admin" >"$work/out" 2>"$work/serve.log" &
serve_pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\) (binary).*/\1/p' "$work/out")
[ -n "$port" ] || {
  echo "memory.sh: tally serve did not start:" >&2
  cat "$work/serve.log" >&2
  exit 1
}

status_kib() { awk -v field="$2:" '$1 == field {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }

echo "loading $events events into tally serve (pid $serve_pid) ..."
timeout -k 5 3600 "$tally" load --server "127.0.0.1:$port" --token-file "$work/admin" --connections 16 --events "$events" --batch 1000 \
  --workspaces 1000 --members 10000 | grep -E '^ingest|^latency|refused' || true
hwm=$(status_kib "$serve_pid" VmHWM)
rss=$(status_kib "$serve_pid" VmRSS)
echo "daemon after the load: peak RSS (VmHWM) $(mib "$hwm") MiB, RSS now $(mib "$rss") MiB"

start=$(date +%s.%N)
kill -TERM "$serve_pid"
wait "$serve_pid" || true
serve_pid=""
echo "SIGTERM to exit: $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"

start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/open.kib" "$tally" query --data "$work/data" '{"query":"balance","actor":"platform","org":"load"}' >/dev/null 2>"$work/open.err" || true
echo "opening the store (tally query --data): $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s," \
  "peak RSS $(mib "$(tail -1 "$work/open.kib")") MiB"
echo "data directory: $(du -sh "$work/data" | cut -f1)"
