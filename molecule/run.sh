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
# prepare.yml names the files that hold the secrets it makes (tokens, keys) here; the -vvv converge must show none.
K8ROUTER_SECRET_FILES=$(mktemp)
export K8ROUTER_SECRET_FILES
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
# Secrets: the lines of secrets.txt, and the tokens and private keys in the files that prepare.yml named in
# $K8ROUTER_SECRET_FILES (one path a line).
secrets=$(mktemp)
[ -f "molecule/$scenario/secrets.txt" ] && grep -v '^$' "molecule/$scenario/secrets.txt" >>"$secrets"
sort -u "$K8ROUTER_SECRET_FILES" | while read -r file; do
  [ -s "$file" ] || { echo "molecule/$scenario: secret file $file is missing" >&2; exit 1; }
  grep -oE 'eyJ[A-Za-z0-9_-]{20,}' "$file" | cut -c1-60 >>"$secrets" || true
  sed -n '/PRIVATE KEY-----/,/END/p' "$file" | grep -vE -- '-----' | cut -c1-40 >>"$secrets" || true
done
if [ -s "$secrets" ]; then
  while read -r secret; do
    if grep -qF -- "$secret" "$vlog"; then
      echo "molecule/$scenario: a secret shows in the -vvv --diff converge output ($vlog)" >&2
      exit 1
    fi
  done <"$secrets"
  echo "molecule/$scenario: none of $(wc -l <"$secrets") secrets in $(wc -c <"$vlog") bytes of -vvv --diff output"
fi
rm -f "$secrets" "$K8ROUTER_SECRET_FILES"
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
