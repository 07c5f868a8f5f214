#!/usr/bin/env bash
# Run one molecule scenario the way every scenario is run: create, prepare, converge, idempotence
# (second converge: zero changed), a --check --diff converge that must also report zero changed,
# verify, destroy. Prints the scenario's wall time.
set -euo pipefail
scenario=$1
start=$(date +%s)
cleanup() { molecule destroy -s "$scenario" >/dev/null 2>&1 || true; }
trap cleanup EXIT
molecule destroy -s "$scenario"
molecule syntax -s "$scenario"
molecule create -s "$scenario"
molecule prepare -s "$scenario"
# The first converge at -vvv with --diff: no secret of the scenario's secrets.txt may show in its output.
vlog=$(mktemp)
if ! molecule converge -s "$scenario" -- -vvv --diff >"$vlog" 2>&1; then
  sed 's/\x1b\[[0-9;]*m//g' "$vlog" | grep -vE '^(<|ESTABLISH|EXEC|PUT|SSH|Using module|Pipelining|Loading)' | tail -150
  exit 1
fi
sed 's/\x1b\[[0-9;]*m//g' "$vlog" | grep -E '^(PLAY|TASK|RUNNING HANDLER)|: ok=[0-9]+' || true
if [ -f "molecule/$scenario/secrets.txt" ]; then
  while read -r secret; do
    if [ -n "$secret" ] && grep -qF -- "$secret" "$vlog"; then
      echo "molecule/$scenario: a secret of secrets.txt shows in the -vvv --diff converge output ($vlog)" >&2
      exit 1
    fi
  done <"molecule/$scenario/secrets.txt"
  echo "molecule/$scenario: no secret in $(wc -c <"$vlog") bytes of -vvv --diff output"
fi
rm -f "$vlog"
molecule idempotence -s "$scenario"
log=$(mktemp)
molecule converge -s "$scenario" -- --check --diff 2>&1 | tee "$log"
recap=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E ': ok=[0-9]+ +changed=[0-9]+' || true)
if [ -z "$recap" ] || grep -E 'changed=[1-9]' <<<"$recap"; then
  echo "molecule/$scenario: the --check --diff run after converging reported changes (or no recap)" >&2
  exit 1
fi
rm -f "$log"
molecule verify -s "$scenario"
molecule destroy -s "$scenario"
trap - EXIT
echo "molecule/$scenario: passed in $(($(date +%s) - start)) s"
