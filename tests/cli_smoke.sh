#!/usr/bin/env bash
# End-to-end: the tally program itself on a fresh data directory.
set -euo pipefail
tally=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tally" --help >/dev/null
printf '%s\n' '{"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"Acme","mode":"budget"}' \
  '{"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"}' \
  '{"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"}' \
  '{"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"}' \
  '{"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"nope"}' \
  'not json' > "$dir/in.jsonl"
"$tally" apply --data "$dir/data" "$dir/in.jsonl" > "$dir/out.jsonl"
cat "$dir/out.jsonl"
[ "$(wc -l < "$dir/out.jsonl")" -eq 6 ]
grep -q '"error":"forbidden"' "$dir/out.jsonl"
grep -q '"error":"invalid_json"' "$dir/out.jsonl"
[ "$(grep -c '"ok":true' "$dir/out.jsonl")" -eq 4 ]
"$tally" query --data "$dir/data" '{"query":"members","actor":"alice@acme.io","org":"acme"}' | grep -q '"user":"bob@acme.io","role":"member","status":"active","workspace":"design"'
"$tally" verify --data "$dir/data" | grep -q 'verify: ok'
"$tally" export --data "$dir/data" --out "$dir/export.jsonl"
"$tally" import --data "$dir/copy" "$dir/export.jsonl"
"$tally" replay --data "$dir/copy" | grep -q 'rebuilt every projection from 4 events'
"$tally" verify --data "$dir/copy" | grep -q 'verify: ok'
# The copy answers exactly as the original.
q='{"query":"members","actor":"platform","org":"acme"}'
[ "$("$tally" query --data "$dir/data" "$q")" = "$("$tally" query --data "$dir/copy" "$q")" ]
# Bad usage exits 2.
set +e
"$tally" apply >/dev/null 2>&1; [ $? -eq 2 ] || { echo "apply without --data should exit 2"; exit 1; }
set -e
"$tally" demo --orgs 2 --events 20000 | grep -q 'verify: ok'
echo "cli smoke: ok"
