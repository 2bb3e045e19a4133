#!/bin/sh
# Ask a running `writ serve` what policy says about each example input, as an auditor.
#   sh examples/ask-decision.sh [--dry-run]      (WRIT_URL defaults to http://127.0.0.1:8420)
# The decision API answers only an auditor's or admin's bearer token, and only JSON. Each answer is
# logged as an `api_decision` entry naming the caller; with --dry-run nothing is logged.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
writ=${WRIT:-writ}
url=${WRIT_URL:-http://127.0.0.1:8420}
query=""
[ "${1:-}" = "--dry-run" ] && query="?dry_run=1"
token_file=${WRIT_TOKEN_FILE:-audit-bot.token}
if [ ! -s "$token_file" ]; then
  $writ principals list --json | grep -q '"name": "audit-bot"' || $writ principals add audit-bot --role auditor
  (umask 077 && $writ tokens new --principal audit-bot > "$token_file")
fi
for input in "$here"/planner-read.json "$here"/planner-write.json "$here"/executor-write-no-plan.json; do
  printf '%s: ' "$(basename "$input")"
  curl -s "$url/v1/decisions$query" -H "Authorization: Bearer $(cat "$token_file")" \
    -H 'Content-Type: application/json' --data-binary @"$input"
  echo
done
