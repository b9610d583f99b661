#!/usr/bin/env bash
# The SPEC §5 peer comparison, in one run: the usage-ingest workload (record_usage with a
# balance check and debit; 1,000 workspaces, 10,000 members; every event durable, fsync'd,
# before it is acknowledged) on
#   (a) PostgreSQL 15, one transaction per event, 16 clients (pgbench)
#   (b) PostgreSQL 15, a server-side PL/pgSQL batch of 1,000 events per transaction, 16 clients
#   (c) Redis 7, a Lua script (EVALSHA), appendfsync always, 16 clients pipelined (redis-benchmark)
#   (d) Tally in-process (build-bench/bench/tally_load --json)
#   (e) Tally over loopback: `tally serve`, loaded by `tally load` with 16 connections over
#       the binary protocol, alone (the SPEC's figure); then, on a fresh daemon, the
#       same with reserve -> settle round trips on a 17th connection meanwhile (their
#       latency under load), then
#   (f) the same as CloudEvents batches over HTTP (`tally load --http`)
# then prints events/s per system and the ratios Tally/peer.
#
# The peers are throwaway instances on 127.0.0.1 with their data in a temporary
# directory; they are stopped and removed on exit. Missing packages are installed with
# apt-get from the Debian mirror only. Every load is bounded in count and in time.
#
# Usage: bench/peers/run.sh            (as root, or as a user who can run the peers)
# Environment:
#   PEERS_SECONDS  seconds per load (default 20)
#   RESULTS_DIR    where the raw outputs go (default bench/peers/results/<UTC time>)
#   TALLY_LOAD     the tally_load binary (default build-bench/bench/tally_load)
#   TALLY          the tally program, for (e) and (f) (default build-bench/tally)
#   PEERS_FSYNC_PROBE=0  skip the 16 s pg_test_fsync probe of the disk
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${PEERS_SECONDS:-20}
clients=16
batch_per_txn=1000
workspaces=1000
members=10000
tally_load=${TALLY_LOAD:-$root/build-bench/bench/tally_load}
tally_bin=${TALLY:-$root/build-bench/tally}
results=${RESULTS_DIR:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}
pgbin=/usr/lib/postgresql/15/bin
mkdir -p "$results"
results=$(cd "$results" && pwd)

log() { echo "[peers $(date -u +%H:%M:%S)] $*" >&2; }
phase() {  # log a phase with the load average, which shows what else the machine was doing
  log "$*"
  echo "$(date -u +%H:%M:%S) loadavg $(cut -d" " -f1-3 /proc/loadavg) | $*" >>"$results/phases.txt"
}
die() { log "error: $*"; exit 1; }

[ -x "$tally_bin" ] || die "$tally_bin not found; build it with tally_load (target tally)"
[ -x "$tally_load" ] || die "$tally_load not found; build it: cmake -S $root -B $root/build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DTALLY_BENCH=ON -DTALLY_TESTS=OFF && cmake --build $root/build-bench --target tally_load"

# ---------------------------------------------------------------------------- install
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in postgresql-15 postgresql-client-15 redis-server redis-tools; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt-get, Debian mirror only)"
  # Only the apt sources whose every URI is on debian.org: no other network.
  apt_sources=$(mktemp -d)
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uris=$(grep -v '^[[:space:]]*#' "$f" | grep -Eo '[a-z+]+://[^[:space:]]+' || true)
    [ -n "$uris" ] || continue
    if ! grep -Evq '^[a-z+]+://([a-z0-9.-]+\.)?debian\.org(/|$)' <<<"$uris"; then cp "$f" "$apt_sources/"; fi
  done
  [ -n "$(ls -A "$apt_sources")" ] || die "no apt source on debian.org found"
  apt_opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_sources")
  # Installing must not start the system services: a policy-rc.d that refuses, if none is there.
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  $sudo apt-get "${apt_opts[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >"$results/apt-install.log"
  [ $policy_added -eq 0 ] || $sudo rm -f /usr/sbin/policy-rc.d
  rm -rf "$apt_sources"
fi
[ -x "$pgbin/initdb" ] && [ -x "$pgbin/pgbench" ] || die "PostgreSQL 15 binaries missing in $pgbin"
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || die "redis-server / redis-benchmark missing"
redis_version=$(redis-server --version | grep -Eo 'v=[0-9.]+' | cut -d= -f2)
[ "${redis_version%%.*}" = 7 ] || die "Redis 7 wanted, found $redis_version"
pg_version=$("$pgbin/postgres" --version)

# ---------------------------------------------------------------------------- machine
{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem_total: $(grep MemTotal /proc/meminfo | awk '{printf "%.1f GiB", $2/1048576}')"
  echo "disk: $(df -h "${TMPDIR:-/tmp}" | awk 'NR==2 {print $1, $2, "mounted on", $6}')"
  echo "kernel: $(uname -r)"
  echo "postgresql: $pg_version"
  echo "redis: $(redis-server --version)"
  echo "tally_load: $tally_load"
  echo "tally: $tally_bin"
  # The commit of the checkout that holds the binaries (TALLY_LOAD may name another
  # worktree's build), not of this script's checkout.
  echo "tally_commit: $(git -C "$(dirname "$tally_load")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "loadavg_at_start: $(cat /proc/loadavg)"
} | tee "$results/machine.txt" >&2

# ---------------------------------------------------------------------------- peers: start
work=$(mktemp -d -t tally-peers.XXXXXX)
chmod 755 "$work"
pg_started=0
redis_pid=""
serve_pid=""
cleanup() {
  set +e
  if [ -n "$serve_pid" ]; then kill -9 "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; fi
  if [ $pg_started -eq 1 ]; then as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1; fi
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$redis_pid" 2>/dev/null
  fi
  [ -f "$work/pg/postmaster.log" ] && cp "$work/pg/postmaster.log" "$results/postgresql.log" 2>/dev/null
  [ -f "$work/redis/redis.log" ] && cp "$work/redis/redis.log" "$results/redis.log" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run the servers as their own users when we are root.
pg_user=$(id -un)
as_pg() { "$@"; }
as_redis() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "no postgres user"
  pg_user=postgres
  as_pg() { runuser -u postgres -- "$@"; }
  if id redis >/dev/null 2>&1; then as_redis() { runuser -u redis -- "$@"; }; fi
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p=$1
  while port_in_use "$p"; do p=$((p + 1)); done
  echo "$p"
}
pg_port=$(free_port 55432)
redis_port=$(free_port 56379)

log "PostgreSQL: initdb in $work/pg, port $pg_port"
mkdir -p "$work/pg" "$work/pgsock" "$work/redis"
[ "$(id -u)" -ne 0 ] || chown postgres: "$work/pg" "$work/pgsock"
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --no-locale >"$results/initdb.log"
cat >>"$work/pg/postgresql.conf" <<EOF
# tally bench/peers/run.sh: durable, loopback only
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work/pgsock'
max_connections = 40
shared_buffers = 1GB
fsync = on
synchronous_commit = on
full_page_writes = on
max_wal_size = 8GB
checkpoint_timeout = 30min
logging_collector = off
EOF
cp "$work/pg/postgresql.conf" "$results/postgresql.conf"
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/postmaster.log" -w -t 60 start >/dev/null
pg_started=1
psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE tally_peers"
psql_ -d tally_peers -tA -c "SHOW fsync; SHOW synchronous_commit; SHOW wal_sync_method; SHOW full_page_writes" | paste -sd' ' \
  | sed 's/^/postgresql fsync synchronous_commit wal_sync_method full_page_writes: /' | tee -a "$results/machine.txt" >&2

psql_ -d tally_peers <<'SQL'
CREATE TABLE ws_balance(ws int PRIMARY KEY, available bigint NOT NULL, consumed bigint NOT NULL);
CREATE TABLE usage_events(id uuid PRIMARY KEY, ws int NOT NULL, member int NOT NULL, credits bigint NOT NULL, at timestamptz NOT NULL);
-- (b): one call records n events in one transaction. Workspaces are taken in ascending
-- order so that concurrent batches wait for each other instead of deadlocking.
CREATE FUNCTION record_usage_batch(n int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  e record;
  recorded int := 0;
BEGIN
  FOR e IN
    SELECT w, (w - 1) * 10 + 1 + floor(random() * 10)::int AS m, 1000 + floor(random() * 2999)::bigint AS c
    FROM (SELECT 1 + floor(random() * 1000)::int AS w FROM generate_series(1, n)) AS draw
    ORDER BY w
  LOOP
    UPDATE ws_balance SET available = available - e.c, consumed = consumed + e.c WHERE ws = e.w AND available >= e.c;
    IF FOUND THEN
      INSERT INTO usage_events(id, ws, member, credits, at) VALUES (gen_random_uuid(), e.w, e.m, e.c, now());
      recorded := recorded + 1;
    END IF;
  END LOOP;
  RETURN recorded;
END $$;
SQL

# (a): one event, one transaction: debit the workspace if it has enough and, only then,
# record the event (uuid primary key). One statement, so one round trip and one commit.
cat >"$results/pg_single.sql" <<'SQL'
\set ws random(1, 1000)
\set member (:ws - 1) * 10 + random(1, 10)
\set c random(1000, 3998)
WITH debit AS (
  UPDATE ws_balance SET available = available - :c, consumed = consumed + :c
  WHERE ws = :ws AND available >= :c RETURNING ws
)
INSERT INTO usage_events(id, ws, member, credits, at) SELECT gen_random_uuid(), ws, :member, :c, now() FROM debit;
SQL
echo "SELECT record_usage_batch($batch_per_txn);" >"$results/pg_batch.sql"

pg_reset() {
  psql_ -d tally_peers -c "TRUNCATE usage_events, ws_balance" \
    -c "INSERT INTO ws_balance SELECT g, 1000000000000000, 0 FROM generate_series(1, $workspaces) g" \
    -c "VACUUM ANALYZE ws_balance" -c "CHECKPOINT"
}
pg_check() {  # every recorded event debited its workspace, and nothing else did
  psql_ -d tally_peers -tA -F' ' -c "SELECT (SELECT count(*) FROM usage_events) AS events,
      (SELECT sum(credits) FROM usage_events) = (SELECT sum(consumed) FROM ws_balance) AS consistent,
      (SELECT min(available) >= 0 FROM ws_balance) AS non_negative"
}
pgbench_() { timeout -k 5 $((seconds * 2 + 60)) "$pgbin/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -n "$@" tally_peers; }
tps_of() { grep -Eo 'tps = [0-9.]+ \(without initial connection time\)' "$1" | grep -Eo '[0-9.]+' | head -1; }

phase "(a) PostgreSQL, one transaction per event, $clients clients, $seconds s"
pg_reset
pgbench_ -c $clients -j 2 -T "$seconds" -P 5 -f "$results/pg_single.sql" >"$results/pg_single.out" 2>&1
pg_check | tee "$results/pg_single.check" >&2
pg_single=$(tps_of "$results/pg_single.out")
[ -n "$pg_single" ] || die "(a) no tps in $results/pg_single.out"

phase "(b) PostgreSQL, $batch_per_txn events per transaction (PL/pgSQL), $clients clients, $seconds s"
pg_reset
pgbench_ -c $clients -j 2 -T "$seconds" -P 5 -f "$results/pg_batch.sql" >"$results/pg_batch.out" 2>&1
pg_check | tee "$results/pg_batch.check" >&2
pg_batch_calls=$(tps_of "$results/pg_batch.out")
[ -n "$pg_batch_calls" ] || die "(b) no tps in $results/pg_batch.out"
pg_batch=$(awk -v t="$pg_batch_calls" -v n=$batch_per_txn 'BEGIN {printf "%.0f", t * n}')

as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null
pg_started=0

# ---------------------------------------------------------------------------- Redis
log "Redis $redis_version: port $redis_port, appendfsync always"
[ "$(id -u)" -ne 0 ] || ! id redis >/dev/null 2>&1 || chown redis: "$work/redis"
cat >"$work/redis/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
protected-mode yes
daemonize no
dir $work/redis
logfile $work/redis/redis.log
save ""
appendonly yes
appendfsync always
appenddirname appendonly
EOF
cp "$work/redis/redis.conf" "$results/redis.conf"
as_redis redis-server "$work/redis/redis.conf" &
redis_pid=$!
rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
for _ in $(seq 100); do [ "$(rcli ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(rcli ping)" = PONG ] || die "redis-server did not start"
rcli config get appendfsync | paste -sd' ' | sed 's/^/redis /' | tee -a "$results/machine.txt" >&2

# KEYS[1] = ws:<n> (n from __rand_int__, 0..999), KEYS[2] = the event stream;
# ARGV[1] = 0..999 gives the credits (1000..3997), ARGV[2] = 0..999 picks one of the
# workspace's 10 members. The stream entry id (server-generated, unique) keys the event.
cat >"$results/usage.lua" <<'LUA'
local c = 1000 + 3 * tonumber(ARGV[1])
local available = tonumber(redis.call('HGET', KEYS[1], 'available'))
if available == nil or available < c then return 0 end
redis.call('HINCRBY', KEYS[1], 'available', -c)
redis.call('HINCRBY', KEYS[1], 'consumed', c)
local ws = tonumber(string.sub(KEYS[1], 4))
redis.call('XADD', KEYS[2], '*', 'ws', ws, 'member', ws * 10 + tonumber(ARGV[2]) % 10, 'credits', c)
return 1
LUA
sha=$(rcli script load "$(cat "$results/usage.lua")")
redis_reset() {
  rcli del usage >/dev/null
  rcli eval "for i = 0, tonumber(ARGV[1]) - 1 do redis.call('HSET', string.format('ws:%012d', i), 'available', ARGV[2], 'consumed', 0) end return 1" \
    0 $workspaces 1000000000000000 >/dev/null
}
redis_check() {
  local events consumed
  events=$(rcli xlen usage)
  consumed=$(rcli eval "local s = 0 for i = 0, tonumber(ARGV[1]) - 1 do s = s + tonumber(redis.call('HGET', string.format('ws:%012d', i), 'consumed')) end return tostring(s)" 0 $workspaces)
  echo "events $events consumed_sum $consumed"
}
redis_bench() {  # $1 = requests
  timeout -k 5 $((seconds * 3 + 60)) redis-benchmark -h 127.0.0.1 -p "$redis_port" -c $clients -P 64 -r $workspaces -n "$1" --csv \
    EVALSHA "$sha" 2 'ws:__rand_int__' usage __rand_int__ __rand_int__
}
rps_of() { tail -1 "$1" | cut -d, -f2 | tr -d '"'; }

phase "(c) Redis: calibration, 50,000 events"
redis_reset
redis_bench 50000 >"$results/redis_calibration.out" 2>&1
calibration=$(rps_of "$results/redis_calibration.out")
redis_n=$(awk -v r="$calibration" -v s="$seconds" 'BEGIN {n = int(r * s); if (n < 50000) n = 50000; if (n > 20000000) n = 20000000; print n}')
phase "(c) Redis, $clients clients pipelined (-P 64), $redis_n events (about $seconds s)"
redis_reset
redis_bench "$redis_n" >"$results/redis.out" 2>&1
redis_check | tee "$results/redis.check" >&2
redis_rps=$(rps_of "$results/redis.out")
[ -n "$redis_rps" ] || die "(c) no rate in $results/redis.out"
redis_events=$(awk '{print $2}' "$results/redis.check")
if [ "$redis_events" -lt "$redis_n" ]; then log "warning: redis recorded $redis_events of $redis_n events"; fi
rcli shutdown nosave >/dev/null 2>&1 || true
wait "$redis_pid" 2>/dev/null || true
redis_pid=""

# ---------------------------------------------------------------------------- Tally
json_field() { grep -Eo "\"$2\":[0-9.]+" "$1" | head -1 | cut -d: -f2; }
phase "(d) Tally in-process: calibration, 100,000 events"
(cd "$work" && TMPDIR="$work" timeout -k 5 $((seconds * 3 + 60)) "$tally_load" --events 100000 --json) >"$results/tally_calibration.json"
calibration=$(json_field "$results/tally_calibration.json" events_per_s)
tally_n=$(awk -v r="$calibration" -v s="$seconds" 'BEGIN {n = int(r * s); if (n < 100000) n = 100000; if (n > 10000000) n = 10000000; print n}')
phase "(d) Tally in-process, $tally_n events (about $seconds s)"
(cd "$work" && TMPDIR="$work" timeout -k 5 $((seconds * 3 + 60)) "$tally_load" --events "$tally_n" --json) >"$results/tally.json"
tally=$(json_field "$results/tally.json" events_per_s)
[ -n "$tally" ] || die "(d) no events_per_s in $results/tally.json"
# Over loopback: the daemon on free ports, loaded by `tally load` (its own organization
# per load, the same 1,000 workspaces and 10,000 members).
start_serve() {  # $1: its directory, $2: its log; sets serve_pid, binary_port, http_port, load_args
  serve_dir="$work/$1"
  mkdir -p "$serve_dir"
  echo "peers-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$serve_dir/admin"
  "$tally_bin" serve --data "$serve_dir/data" --port 0 --http-port 0 --bind 127.0.0.1 --admin-token-file "$serve_dir/admin" \
    >"$serve_dir/out" 2>"$results/$2" &
  serve_pid=$!
  for _ in $(seq 100); do grep -q listening "$serve_dir/out" 2>/dev/null && break; sleep 0.1; done
  binary_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\) (binary).*/\1/p' "$serve_dir/out")
  http_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\) (HTTP).*/\1/p' "$serve_dir/out")
  [ -n "$binary_port" ] && [ -n "$http_port" ] || die "tally serve did not start (see $results/$2)"
  load_args=(--server "127.0.0.1:$binary_port" --token-file "$serve_dir/admin" --connections "$clients" --events "$tally_n" --batch 1000
    --workspaces "$workspaces" --members "$members")
}
stop_serve() {
  kill -TERM "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
}
load_rate() { sed -n 's/^ingest: .* = \([0-9]*\) events\/s .*/\1/p' "$1"; }
start_serve serve_alone tally_serve_alone.log
phase "(e) Tally over loopback, binary protocol, $clients connections, $tally_n events"
timeout -k 5 $((seconds * 3 + 60)) "$tally_bin" load "${load_args[@]}" --window 4 >"$results/tally_binary_alone.out" 2>&1 || true
tally_binary_alone=$(load_rate "$results/tally_binary_alone.out")
stop_serve
start_serve serve tally_serve.log
phase "(e) the same on a fresh daemon, with reserve -> settle round trips on a 17th connection"
timeout -k 5 $((seconds * 3 + 60)) "$tally_bin" load "${load_args[@]}" --window 4 --round-trips 1000000 >"$results/tally_binary.out" 2>&1 || true
tally_binary=$(load_rate "$results/tally_binary.out")
phase "(f) Tally over loopback, HTTP CloudEvents batches, $clients connections, $tally_n events"
timeout -k 5 $((seconds * 3 + 60)) "$tally_bin" load "${load_args[@]}" --http "127.0.0.1:$http_port" >"$results/tally_http.out" 2>&1 || true
tally_http=$(load_rate "$results/tally_http.out")
stop_serve
[ -n "$tally_binary_alone" ] || log "warning: (e) no rate in $results/tally_binary_alone.out"
[ -n "$tally_binary" ] || log "warning: (e) no rate in $results/tally_binary.out"
[ -n "$tally_http" ] || log "warning: (f) no rate in $results/tally_http.out"

# ---------------------------------------------------------------------------- disk probe
if [ "${PEERS_FSYNC_PROBE:-1}" = 1 ]; then
  phase "disk: pg_test_fsync -s 1"
  timeout -k 5 60 "$pgbin/pg_test_fsync" -s 1 -f "$work/fsync.probe" >"$results/pg_test_fsync.out" 2>&1 || true
fi
phase "end"
echo "loadavg_at_end: $(cat /proc/loadavg)" | tee -a "$results/machine.txt" >&2

# ---------------------------------------------------------------------------- report
{
  printf '%-62s %14s %14s\n' "system (SPEC §5 usage ingest, durable)" "events/s" "Tally/peer"
  row() { awk -v name="$1" -v r="$2" -v t="$tally" 'BEGIN {printf "%-62s %14.0f %13.1fx\n", name, r, t / r}'; }
  row "PostgreSQL 15, 1 event per transaction, 16 clients" "$pg_single"
  row "PostgreSQL 15, 1,000 events per transaction (PL/pgSQL), 16 cl." "$pg_batch"
  row "Redis $redis_version, Lua EVALSHA, appendfsync always, 16 cl. -P 64" "$redis_rps"
  printf '%-62s %14.0f %14s\n' "Tally in-process ($(json_field "$results/tally.json" batch) commands per synced commit)" "$tally" "-"
  [ -z "$tally_binary_alone" ] || printf '%-62s %14.0f %14s\n' "Tally over loopback, binary protocol, $clients connections" "$tally_binary_alone" "-"
  [ -z "$tally_binary" ] || printf '%-62s %14.0f %14s\n' "  the same, reserve -> settle round trips on a 17th meanwhile" "$tally_binary" "-"
  [ -z "$tally_http" ] || printf '%-62s %14.0f %14s\n' "Tally over loopback, HTTP CloudEvents batches, $clients conn." "$tally_http" "-"
  grep -h '^reserve -> settle' "$results/tally_binary.out" || true
} | tee "$results/summary.txt"
cat >"$results/summary.json" <<EOF
{"pg_single_events_per_s":$pg_single,"pg_batch_calls_per_s":$pg_batch_calls,"pg_batch_events_per_s":$pg_batch,"redis_events_per_s":$redis_rps,"redis_events":$redis_n,"tally_events_per_s":$tally,"tally_events":$tally_n,"tally_binary_alone_events_per_s":${tally_binary_alone:-null},"tally_binary_events_per_s":${tally_binary:-null},"tally_http_events_per_s":${tally_http:-null},"seconds":$seconds,"clients":$clients}
EOF
log "raw outputs in $results"
