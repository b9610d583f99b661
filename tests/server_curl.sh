#!/usr/bin/env bash
# End-to-end: `tally serve` on free loopback ports, driven by curl (a real HTTP client)
# and by `tally apply/query --server`, then stopped with SIGTERM, which must end it
# cleanly with everything acknowledged in the store.
set -euo pipefail
tally=$1
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "server_curl: $*" >&2; [ -f "$dir/err" ] && tail -20 "$dir/err" >&2; exit 1; }

echo "admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" > "$dir/admin"
admin=$(cat "$dir/admin")
# Port 0: the kernel picks free ports; the daemon prints them.
"$tally" serve --data "$dir/data" --port 0 --http-port 0 --bind 127.0.0.1 --admin-token-file "$dir/admin" > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 100); do
  grep -q 'listening' "$dir/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "tally serve exited early"
  sleep 0.1
done
line=$(grep 'listening' "$dir/out") || fail "tally serve did not start"
binary_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\) (binary).*/\1/p' <<< "$line")
http_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\) (HTTP).*/\1/p' <<< "$line")
base="http://127.0.0.1:$http_port"
c() { curl -sS --max-time 10 "$@"; }

# Health and metrics need no token; the API does.
[ "$(c -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] || fail "healthz"
[ "$(c -o /dev/null -w '%{http_code}' -X POST "$base/v1/commands" -d '{}')" = 401 ] || fail "no token must be 401"
[ "$(c -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' -X POST "$base/v1/commands" -d '{}')" = 401 ] || fail "bad token must be 401"

auth=(-H "Authorization: Bearer $admin")
when=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
c "${auth[@]}" -X POST "$base/v1/commands" --data-binary @- > "$dir/setup.jsonl" <<JSON
{"cmd":"create_org","org":"acme","owner":"alice@acme.io","mode":"budget"}
{"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"}
{"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"}
{"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"}
{"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"100"}
{"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"40"}
{"cmd":"set_price","tool":"image","model":"flux","unit":"image","credits_per_unit":"2","effective_at":"2020-01-01T00:00:00Z"}
{"cmd":"create_service_key","org":"acme","key":"backend"}
{"cmd":"create_user_token","user":"bob@acme.io","token":"bob-laptop"}
not json
JSON
[ "$(wc -l < "$dir/setup.jsonl")" -eq 10 ] || fail "one answer per line expected: $(cat "$dir/setup.jsonl")"
[ "$(grep -c '"ok":true' "$dir/setup.jsonl")" -eq 9 ] || fail "setup: $(cat "$dir/setup.jsonl")"
tail -1 "$dir/setup.jsonl" | grep -q '"error":"invalid_json"' || fail "the bad line must answer invalid_json"
key=$(sed -n 's/.*"secret":"\(tsk_[0-9a-f]*\)".*/\1/p' "$dir/setup.jsonl")
bob=$(sed -n 's/.*"secret":"\(tut_[0-9a-f]*\)".*/\1/p' "$dir/setup.jsonl")
[ -n "$key" ] && [ -n "$bob" ] || fail "secrets missing"

# CloudEvents, batch mode with a duplicate id: both answered, debited once.
event() {
  printf '{"specversion":"1.0","id":"%s","source":"/render","type":"com.tally.usage.recorded","time":"%s","subject":"acme/design/bob@acme.io","data":{"tool":"image","model":"flux","quantity":%s,"unit":"image"}}' "$1" "$when" "$2"
}
batch="[$(event ev-1 3),$(event ev-1 3),$(event ev-2 1)]"
answer=$(c -H "Authorization: Bearer $key" -H 'Content-Type: application/cloudevents-batch+json' -X POST "$base/v1/events" --data-binary "$batch")
[ "$(grep -o '"ok":true' <<< "$answer" | wc -l)" -eq 3 ] || fail "batch: $answer"
grep -q '"duplicate":true' <<< "$answer" || fail "the repeated id must be a duplicate: $answer"
# Structured mode.
answer=$(c -H "Authorization: Bearer $key" -H 'Content-Type: application/cloudevents+json' -X POST "$base/v1/events" --data-binary "$(event ev-3 1)")
grep -q '"ok":true' <<< "$answer" || fail "structured: $answer"

# Bob sees his workspace through his user token: 40 - 2*(3+1+1) = 30.
answer=$(c -H "Authorization: Bearer $bob" -X POST "$base/v1/query" -d '{"query":"balance","org":"acme","workspace":"design"}')
grep -q '"available":"30"' <<< "$answer" || fail "balance: $answer"
# Bob may not act as alice, nor manage the organization.
[ "$(c -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $bob" -X POST "$base/v1/commands" -d '{"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"x"}')" = 403 ] || fail "impersonation must be 403"
c -H "Authorization: Bearer $bob" -X POST "$base/v1/commands" -d '{"cmd":"create_workspace","org":"acme","workspace":"x"}' | grep -q '"error":"forbidden"' || fail "a member must not create workspaces"
# An oversized body is refused.
[ "$(head -c 17000000 /dev/zero | tr '\0' 'x' | c -o /dev/null -w '%{http_code}' "${auth[@]}" -X POST "$base/v1/commands" --data-binary @-)" = 413 ] || fail "oversized body must be 413"

# The binary protocol, through the tally program.
echo "$key" > "$dir/key"
printf '{"cmd":"record_usage","id":"cli-1","org":"acme","workspace":"design","user":"bob@acme.io","tool":"image","model":"flux","quantity":1,"unit":"image","occurred_at":"%s"}\n' "$when" |
  "$tally" apply --server "127.0.0.1:$binary_port" --token-file "$dir/key" > "$dir/apply.jsonl"
grep -q '"ok":true' "$dir/apply.jsonl" || fail "apply --server: $(cat "$dir/apply.jsonl")"
"$tally" query --server "127.0.0.1:$binary_port" --token-file "$dir/key" '{"query":"balance","org":"acme","workspace":"design"}' | grep -q '"available":"28"' || fail "query --server"

# Metrics count what happened.
metrics=$(c "$base/metrics")
grep -q '^tally_commands_total{type="record_usage"} [1-9]' <<< "$metrics" || fail "metrics: record_usage not counted"
grep -q '^tally_cloudevents_total 4' <<< "$metrics" || fail "metrics: cloudevents not counted"
grep -q '^tally_commit_duration_seconds_count [1-9]' <<< "$metrics" || fail "metrics: no commit latency"

# The load generator, both ways: binary-protocol pipelining with reserve -> settle round
# trips, and CloudEvents batches over HTTP. Each sets up an organization of its own.
load=(--server "127.0.0.1:$binary_port" --token-file "$dir/admin" --events 3000 --batch 250 --connections 2 --workspaces 5 --members 20)
"$tally" load "${load[@]}" --round-trips 20 > "$dir/load-binary.out" 2>&1 || fail "tally load: $(cat "$dir/load-binary.out")"
grep -q '^ingest: 3000 events acknowledged (0 refused) .* binary-protocol connections' "$dir/load-binary.out" || fail "tally load: $(cat "$dir/load-binary.out")"
grep -q '^reserve -> settle round trips under load: [1-9]' "$dir/load-binary.out" || fail "tally load --round-trips: $(cat "$dir/load-binary.out")"
# Paced: the last request (events 2750..2999 at 6,000 events/s) is not due before 0.458 s.
"$tally" load "${load[@]}" --rate 6000 > "$dir/load-paced.out" 2>&1 || fail "tally load --rate: $(cat "$dir/load-paced.out")"
grep -q '^ingest: 3000 events acknowledged (0 refused) in .* paced at 6000 events/s$' "$dir/load-paced.out" || fail "tally load --rate: $(cat "$dir/load-paced.out")"
paced_seconds=$(sed -n 's/^ingest: .* in \([0-9.]*\) s = .*/\1/p' "$dir/load-paced.out")
awk -v s="$paced_seconds" 'BEGIN {exit !(s >= 0.45)}' || fail "tally load --rate 6000: done in $paced_seconds s, before its last request was due"
if "$tally" load --server "127.0.0.1:$binary_port" --token-file "$dir/admin" --events 100000 --rate 10 > "$dir/load-slow.out" 2>&1; then fail "tally load took a rate that needs hours"; fi
grep -q 'would take more than 3600 s' "$dir/load-slow.out" || fail "tally load --rate 10: $(cat "$dir/load-slow.out")"
"$tally" load "${load[@]}" --http "127.0.0.1:$http_port" > "$dir/load-http.out" 2>&1 || fail "tally load --http: $(cat "$dir/load-http.out")"
grep -q '^ingest: 3000 events acknowledged (0 refused) .* HTTP (CloudEvents batches) connections' "$dir/load-http.out" || fail "tally load --http: $(cat "$dir/load-http.out")"
grep -q '^tally_cloudevents_total 3004' <<< "$(c "$base/metrics")" || fail "metrics: the HTTP load's events not counted as CloudEvents"

# SIGTERM: a clean exit, and the store holds everything acknowledged.
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "tally serve did not stop within 10 s of SIGTERM"; fi
wait "$pid" || fail "tally serve exited with status $?"
pid=
grep -q 'stopped; the store is closed' "$dir/err" || fail "no clean shutdown in the log"
if grep -q -e "$admin" -e "$key" -e "$bob" "$dir/err" "$dir/out"; then fail "a secret appeared in the log"; fi
"$tally" query --data "$dir/data" '{"query":"balance","actor":"platform","org":"acme","workspace":"design"}' | grep -q '"available":"28"' || fail "state after restart"
"$tally" verify --data "$dir/data" | grep -q 'verify: ok' || fail "verify after the daemon"
echo "server curl: ok"
