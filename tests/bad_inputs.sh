#!/usr/bin/env bash
# Bad input (SPEC §6): every malformed, mistyped or out-of-range line gets its stable
# error code and changes nothing. Feeds each case below to the real program (`tally
# apply`, `tally query`) on a store with some history, checks each answer's code, and
# checks that the log did not move.
#
#   tests/bad_inputs.sh TALLY           check (the CTest test bad_inputs)
#   tests/bad_inputs.sh TALLY --table   also print the cases as the markdown table of
#                                       docs/reliability.md
set -euo pipefail
tally=$1
table=${2:-}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# History to refuse things against: an organization with a funded member and a hold.
printf '%s\n' \
  '{"cmd":"create_org","actor":"alice@acme.io","org":"acme","mode":"budget"}' \
  '{"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"}' \
  '{"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"}' \
  '{"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"}' \
  '{"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"100"}' \
  '{"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"50"}' \
  '{"cmd":"reserve","actor":"bob@acme.io","org":"acme","workspace":"design","hold":"h1","credits":"10","timeout_s":3600}' \
  > "$dir/setup.jsonl"
"$tally" apply --data "$dir/data" "$dir/setup.jsonl" | grep -vq '"ok":false' || { echo "setup refused"; exit 1; }
events_before=$("$tally" verify --data "$dir/data" | sed -n 's/^events: //p')

long_name=$(printf 'x%.0s' $(seq 1 65))
huge_line='{"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"'$(head -c 70000 /dev/zero | tr '\0' 'a')'"}'
bad_utf8=$'\xff\xfe'
deep=$(printf '[%.0s' $(seq 1 2000))$(printf ']%.0s' $(seq 1 2000))
usage='"cmd":"record_usage","actor":"bob@acme.io","id":"u-1","org":"acme","workspace":"design","tool":"chat","model":"m","unit":"token"'
grant='"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g9","kind":"promo"'

# description | input line | expected code
cases=(
  "malformed JSON (cut short)|{\"cmd\":\"create_org\",\"actor\":|invalid_json"
  "not JSON at all|hello|invalid_json"
  "JSON, but not an object|[\"create_org\"]|invalid_json"
  "two objects on one line|{\"cmd\":\"tick\",\"actor\":\"platform\"} {}|invalid_json"
  "invalid UTF-8 in a string|{\"cmd\":\"create_org\",\"actor\":\"alice@acme.io\",\"org\":\"acme\",\"name\":\"$bad_utf8\"}|invalid_json"
  "2,000 levels of nesting|$deep|invalid_json"
  "empty object|{}|missing_field"
  "unknown command|{\"cmd\":\"drop_table\",\"actor\":\"platform\"}|unknown_command"
  "cmd not a string|{\"cmd\":7,\"actor\":\"platform\"}|invalid_argument"
  "unknown field|{$grant,\"credits\":\"5\",\"color\":\"red\"}|unknown_field"
  "field of another command|{$grant,\"credits\":\"5\",\"hold\":\"h1\"}|unknown_field"
  "missing required field|{$grant}|missing_field"
  "missing actor|{\"cmd\":\"delete_org\",\"org\":\"acme\"}|missing_field"
  "duplicate field|{$grant,\"credits\":\"5\",\"credits\":\"6\"}|invalid_argument"
  "duplicate cmd|{\"cmd\":\"tick\",\"cmd\":\"tick\",\"actor\":\"platform\"}|invalid_argument"
  "credits as a JSON number|{$grant,\"credits\":5}|invalid_argument"
  "quantity as a string|{$usage,\"quantity\":\"2\",\"occurred_at\":\"$now\"}|invalid_argument"
  "null value|{$grant,\"credits\":null}|invalid_argument"
  "object value|{$grant,\"credits\":{\"value\":\"5\"}}|invalid_argument"
  "boolean where a string goes|{$grant,\"credits\":true}|invalid_argument"
  "negative amount|{$grant,\"credits\":\"-5\"}|invalid_amount"
  "amount with a plus sign|{$grant,\"credits\":\"+5\"}|invalid_amount"
  "zero amount|{$grant,\"credits\":\"0\"}|invalid_amount"
  "amount over 1,000,000,000 credits|{$grant,\"credits\":\"1000000000.000001\"}|invalid_amount"
  "amount of 20 digits|{$grant,\"credits\":\"99999999999999999999\"}|invalid_amount"
  "seven decimals|{$grant,\"credits\":\"1.0000001\"}|invalid_amount"
  "exponent|{$grant,\"credits\":\"1e3\"}|invalid_amount"
  "empty fraction|{$grant,\"credits\":\"5.\"}|invalid_amount"
  "comma decimal|{$grant,\"credits\":\"5,5\"}|invalid_amount"
  "negative quantity|{$usage,\"quantity\":-1,\"occurred_at\":\"$now\"}|invalid_argument"
  "quantity over 10^12|{$usage,\"quantity\":1000000000001,\"occurred_at\":\"$now\"}|invalid_argument"
  "quantity beyond 64 bits (simdjson refuses the number)|{$usage,\"quantity\":100000000000000000000,\"occurred_at\":\"$now\"}|invalid_json"
  "fractional quantity|{$usage,\"quantity\":2.5,\"occurred_at\":\"$now\"}|invalid_argument"
  "hold timeout 0 s|{\"cmd\":\"reserve\",\"actor\":\"bob@acme.io\",\"org\":\"acme\",\"workspace\":\"design\",\"hold\":\"h2\",\"credits\":\"1\",\"timeout_s\":0}|invalid_argument"
  "hold timeout over 7 days|{\"cmd\":\"reserve\",\"actor\":\"bob@acme.io\",\"org\":\"acme\",\"workspace\":\"design\",\"hold\":\"h2\",\"credits\":\"1\",\"timeout_s\":604801}|invalid_argument"
  "line over 65,536 bytes|$huge_line|too_large"
  "id with a space|{\"cmd\":\"create_org\",\"actor\":\"alice@acme.io\",\"org\":\"a b\"}|invalid_argument"
  "id starting with a dash|{\"cmd\":\"create_org\",\"actor\":\"alice@acme.io\",\"org\":\"-acme\"}|invalid_argument"
  "id of 65 bytes|{\"cmd\":\"create_org\",\"actor\":\"alice@acme.io\",\"org\":\"$long_name\"}|invalid_argument"
  "empty id|{\"cmd\":\"create_org\",\"actor\":\"alice@acme.io\",\"org\":\"\"}|invalid_argument"
  "user without @|{\"cmd\":\"invite_member\",\"actor\":\"alice@acme.io\",\"org\":\"acme\",\"user\":\"bob\",\"role\":\"member\",\"workspace\":\"design\"}|invalid_argument"
  "actor that is no one|{\"cmd\":\"tick\",\"actor\":\"root\"}|invalid_argument"
  "role owner|{\"cmd\":\"change_role\",\"actor\":\"alice@acme.io\",\"org\":\"acme\",\"user\":\"bob@acme.io\",\"role\":\"owner\"}|invalid_argument"
  "name with a control character|{\"cmd\":\"create_org\",\"actor\":\"alice@acme.io\",\"org\":\"x1\",\"name\":\"a\\u0001b\"}|invalid_argument"
  "30 February|{$grant,\"credits\":\"5\",\"expires_at\":\"2027-02-30T00:00:00Z\"}|invalid_argument"
  "time without zone|{$grant,\"credits\":\"5\",\"expires_at\":\"2027-01-01T00:00:00\"}|invalid_argument"
  "time not in UTC|{$grant,\"credits\":\"5\",\"expires_at\":\"2027-01-01T00:00:00+01:00\"}|invalid_argument"
  "leap second|{$grant,\"credits\":\"5\",\"expires_at\":\"2027-12-31T23:59:60Z\"}|invalid_argument"
  "year before 1970|{$grant,\"credits\":\"5\",\"expires_at\":\"1969-12-31T23:59:59Z\"}|invalid_argument"
  "seven fractional digits of a second|{$grant,\"credits\":\"5\",\"expires_at\":\"2027-01-01T00:00:00.1234567Z\"}|invalid_argument"
  "Unix seconds instead of a time|{$grant,\"credits\":\"5\",\"expires_at\":1798761600}|invalid_argument"
  "expiry in the past|{$grant,\"credits\":\"5\",\"expires_at\":\"2020-01-01T00:00:00Z\"}|invalid_argument"
  "usage 100 days old|{$usage,\"quantity\":1,\"credits\":\"1\",\"occurred_at\":\"2020-01-01T00:00:00Z\"}|invalid_argument"
  "settle more than held|{\"cmd\":\"settle\",\"actor\":\"bob@acme.io\",\"org\":\"acme\",\"hold\":\"h1\",\"credits\":\"11\"}|invalid_amount"
  "spend more than available|{$usage,\"quantity\":1,\"credits\":\"41\",\"occurred_at\":\"$now\"}|insufficient_credits"
  "transfer more than available|{\"cmd\":\"transfer_credits\",\"actor\":\"alice@acme.io\",\"org\":\"acme\",\"from\":\"primary\",\"to\":\"design\",\"credits\":\"51\"}|insufficient_credits"
  "unknown organization|{\"cmd\":\"delete_org\",\"actor\":\"alice@acme.io\",\"org\":\"nope\"}|unknown_org"
  "member acting as admin|{\"cmd\":\"create_workspace\",\"actor\":\"bob@acme.io\",\"org\":\"acme\",\"workspace\":\"x\"}|forbidden"
)

: > "$dir/bad.jsonl"
for entry in "${cases[@]}"; do
  line=${entry#*|}
  line=${line%|*}
  printf '%s\n' "$line" >> "$dir/bad.jsonl"
done
"$tally" apply --data "$dir/data" "$dir/bad.jsonl" > "$dir/answers.jsonl"

failures=0
[ -n "$table" ] && { echo "| input | example | error |"; echo "|---|---|---|"; }
i=0
while IFS= read -r answer; do
  entry=${cases[$i]}
  what=${entry%%|*}
  expected=${entry##*|}
  line=${entry#*|}
  line=${line%|*}
  got=$(printf '%s' "$answer" | sed -n 's/.*"error":"\([a-z_]*\)".*/\1/p')
  [ -n "$got" ] || got=ok
  if [ "$got" != "$expected" ]; then
    echo "FAIL: $what: expected $expected, got $answer"
    failures=$((failures + 1))
  fi
  if [ -n "$table" ]; then
    # The common part of a command is elided, to show what is wrong with it.
    shown=${line//"$grant"/"\"cmd\":\"grant_credits\",…"}
    shown=${shown//"$usage"/"\"cmd\":\"record_usage\",…"}
    shown=${shown//"$now"/"<now>"}
    shown=${shown//"$bad_utf8"/"\\xff\\xfe"}
    [ ${#shown} -gt 100 ] && shown="${shown:0:40}… (${#line} bytes)"
    shown=${shown//|/\\|}
    echo "| $what | \`$shown\` | \`$got\` |"
  fi
  i=$((i + 1))
done < "$dir/answers.jsonl"
[ "$i" -eq "${#cases[@]}" ] || { echo "FAIL: ${#cases[@]} lines, $i answers"; failures=$((failures + 1)); }

# Queries, one per run of `tally query`.
queries=(
  "query: malformed JSON|{\"query\":|invalid_json"
  "query: unknown query|{\"query\":\"secrets\",\"actor\":\"platform\",\"org\":\"acme\"}|unknown_command"
  "query: unknown field|{\"query\":\"org\",\"actor\":\"platform\",\"org\":\"acme\",\"color\":\"red\"}|unknown_field"
  "query: missing org|{\"query\":\"org\",\"actor\":\"platform\"}|missing_field"
  "query: duplicate field|{\"query\":\"org\",\"query\":\"org\",\"actor\":\"platform\",\"org\":\"acme\"}|invalid_argument"
  "query: negative as_of_seq|{\"query\":\"org\",\"actor\":\"platform\",\"org\":\"acme\",\"as_of_seq\":-1}|invalid_argument"
  "query: page size 0|{\"query\":\"statement\",\"actor\":\"platform\",\"org\":\"acme\",\"workspace\":\"design\",\"limit\":0}|invalid_argument"
  "query: group by twice|{\"query\":\"usage\",\"actor\":\"platform\",\"org\":\"acme\",\"group_by\":[\"tool\",\"tool\"]}|invalid_argument"
  "query: two time buckets|{\"query\":\"usage\",\"actor\":\"platform\",\"org\":\"acme\",\"group_by\":[\"hour\",\"day\"]}|invalid_argument"
  "query: another member's workspace|{\"query\":\"balance\",\"actor\":\"bob@acme.io\",\"org\":\"acme\",\"workspace\":\"primary\"}|forbidden"
)
for entry in "${queries[@]}"; do
  what=${entry%%|*}
  expected=${entry##*|}
  line=${entry#*|}
  line=${line%|*}
  answer=$("$tally" query --data "$dir/data" "$line")
  got=$(printf '%s' "$answer" | sed -n 's/.*"error":"\([a-z_]*\)".*/\1/p')
  [ -n "$got" ] || got=ok
  if [ "$got" != "$expected" ]; then
    echo "FAIL: $what: expected $expected, got $answer"
    failures=$((failures + 1))
  fi
  [ -n "$table" ] && echo "| $what | \`${line//|/\\|}\` | \`$got\` |"
done

# Nothing changed: the log holds what it held, and it still verifies.
events_after=$("$tally" verify --data "$dir/data" | sed -n 's/^events: //p')
if [ "$events_after" != "$events_before" ]; then
  echo "FAIL: bad input changed the log: $events_before events before, $events_after after"
  failures=$((failures + 1))
fi
"$tally" verify --data "$dir/data" | grep -q 'verify: ok' || { echo "FAIL: verify"; failures=$((failures + 1)); }
[ "$failures" -eq 0 ] || exit 1
echo "bad inputs: $((${#cases[@]} + ${#queries[@]})) cases, each with its error code; the log did not change"
