#!/usr/bin/env bash
# The collection as a user gets it: `ansible-galaxy collection build`, then an offline install into a
# collections directory that holds only the dependencies galaxy.yml declares (copied from the ansible
# package's tree given as $1, no Galaxy), run from a venv that holds only ansible-core (the pin of
# requirements.txt). There, with no other collection and no ansible.cfg in reach: ansible-doc renders every
# plugin (a filter or test without its plugins/<type>/<name>.yml fails) and every role, and every shipped
# playbook passes --syntax-check. The archive must hold the RBAC manifest and nothing of the lab, and every
# collection the shipped files name must be declared.
#
# Usage: tests/packaging/check.sh SOURCE_COLLECTIONS  (SOURCE_COLLECTIONS: a directory of <ns>/<name>/)
# The venv is kept in $K8ROUTER_CACHE/package-venv-<ansible-core version>; $PYTHON_BASE makes it.
set -euo pipefail

src=${1:?usage: $0 SOURCE_COLLECTIONS (e.g. .venv/lib/python3.12/site-packages/ansible_collections)}
src=$(cd "$src" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${K8ROUTER_CACHE:-$HOME/.cache/k8router-lab}
start=$(date +%s)
fail() { echo "packaging: $*" >&2; exit 1; }

core=$(sed -n 's/^ansible-core==\([0-9][0-9.]*\)$/\1/p' "$repo/requirements.txt")
[ -n "$core" ] || fail "requirements.txt: no ansible-core==X.Y.Z pin"

# --- A venv with ansible-core and its own requirements only, built once per version.
venv=$cache/package-venv-$core
mkdir -p "$cache"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  "${PYTHON_BASE:-python3}" -m venv "$venv"
  links=()
  wheel=$(find "$cache/wheels" -name "ansible_core-$core-*.whl" -print -quit 2>/dev/null || true)
  [ -z "$wheel" ] || links=(--find-links "$(dirname "$wheel")")
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${links[@]}" "ansible-core==$core"
  touch "$venv/.complete"
fi
flock -u 9
bin=$venv/bin
if "$bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("ansible_collections") is None)'; then
  fail "$venv holds collections of its own (an ansible package?): remove it, it is rebuilt"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
: >"$tmp/ansible.cfg"
export ANSIBLE_CONFIG=$tmp/ansible.cfg ANSIBLE_HOME=$tmp/home ANSIBLE_COLLECTIONS_PATH=$tmp/collections
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$tmp/dist" "$tmp/collections/ansible_collections"

# --- Build, and what the archive holds.
"$bin/ansible-galaxy" collection build --output-path "$tmp/dist" "$repo" >/dev/null
archives=("$tmp"/dist/*.tar.gz)
[ "${#archives[@]}" -eq 1 ] || fail "expected one archive from the build, got: ${archives[*]}"
archive=${archives[0]}
tar -tzf "$archive" | sed 's|/$||' | sort >"$tmp/contents"
grep -qx 'rbac/k8router.yaml' "$tmp/contents" || fail "$(basename "$archive") lacks rbac/k8router.yaml"
tar -xzOf "$archive" rbac/k8router.yaml | cmp -s - "$repo/rbac/k8router.yaml" \
  || fail "rbac/k8router.yaml in $(basename "$archive") differs from the repository's"
not_shipped='^(lab|bench|molecule|tests|tools|playbooks/lab|playbooks/inventory)(/|$)|^\.|(^|/)(__pycache__|[^/]*\.pyc)$'
not_shipped+='|^(Makefile|ansible\.cfg|pyproject\.toml|requirements\.txt)$'
if grep -E "$not_shipped" "$tmp/contents" >"$tmp/leaked"; then
  fail "$(basename "$archive") ships lab or development files: $(tr '\n' ' ' <"$tmp/leaked")"
fi

# --- The declared dependencies (MANIFEST.json of the archive), copied from the source tree.
tar -xzOf "$archive" MANIFEST.json >"$tmp/MANIFEST.json"
mapfile -t deps < <("$bin/python" -c '
import json, sys
info = json.load(open(sys.argv[1]))["collection_info"]
print(info["namespace"] + "." + info["name"])
for name in sorted(info["dependencies"] or {}):
    print(name)
' "$tmp/MANIFEST.json")
self=${deps[0]}
deps=("${deps[@]:1}")
[ "${#deps[@]}" -gt 0 ] || fail "galaxy.yml declares no dependencies"
# An install into a directory without them must fail: galaxy checks what is declared even offline.
if "$bin/ansible-galaxy" collection install --offline -p "$tmp/empty" "$archive" >"$tmp/empty.log" 2>&1; then
  fail "ansible-galaxy --offline installed $self without its dependencies ($(tr '\n' ' ' <"$tmp/empty.log"))"
fi
for dep in "${deps[@]}"; do
  ns=${dep%%.*} name=${dep#*.}
  [ -f "$src/$ns/$name/MANIFEST.json" ] || fail "dependency $dep: not in $src"
  mkdir -p "$tmp/collections/ansible_collections/$ns"
  cp -a "$src/$ns/$name" "$tmp/collections/ansible_collections/$ns/$name"
done
"$bin/ansible-galaxy" collection install --offline -p "$tmp/collections" "$archive" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log" >&2; fail "offline install of $(basename "$archive") failed"; }
installed=$tmp/collections/ansible_collections/${self/./\/}

# --- Every collection the shipped files call (FQCNs of known collections, ansible_collections imports) is declared.
known() { [ -d "$src/$1/$2" ] || [ -d "$tmp/collections/ansible_collections/$1/$2" ]; }
used=$(
  cd "$installed"
  {
    grep -rhoE '\b[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\b' roles playbooks plugins | cut -d. -f1-2
    grep -rhoE '\bansible_collections\.[a-z0-9_]+\.[a-z0-9_]+' plugins roles | cut -d. -f2-3
  } | sort -u
)
for coll in $used; do
  case " ansible.builtin $self ${deps[*]} " in *" $coll "*) continue ;; esac
  if known "${coll%%.*}" "${coll#*.}"; then
    fail "the shipped files use $coll, which galaxy.yml does not declare: $(cd "$installed" && grep -rlF "$coll." roles playbooks plugins | tr '\n' ' ')"
  fi
done

# ansible-doc's output on stderr is an error, but for the notice ansible-core gives about its own internal collection.
doc() {
  if ! "$bin/ansible-doc" "$@" >"$tmp/doc.out" 2>"$tmp/doc.err"; then
    cat "$tmp/doc.err" >&2
    fail "ansible-doc $* failed"
  fi
  if grep -v "ansible/_internal/ansible_collections/ansible/_protomatter' does not have a MANIFEST.json" "$tmp/doc.err"; then
    fail "ansible-doc $* wrote the above on stderr"
  fi
}

# --- Every plugin of the installed tree: one file one plugin, but filter and test files hold several (listed).
rendered=()
undocumented=()
for dir in "$installed"/plugins/*/; do
  kind=$(basename "$dir")
  case $kind in
    module_utils | plugin_utils | doc_fragments) continue ;;
    modules) type=module ;;
    filter | test)
      doc -t "$kind" --list --json "$self"
      mapfile -t listed < <("$bin/python" -c '
import json, sys
for name, summary in sorted(json.load(open(sys.argv[1])).items()):
    print(("U " if summary == "UNDOCUMENTED" else "D ") + name)
' "$tmp/doc.out")
      [ "${#listed[@]}" -gt 0 ] || fail "plugins/$kind/ has files but ansible-doc lists no $kind plugin of $self"
      names=()
      for entry in "${listed[@]}"; do
        if [ "${entry%% *}" = D ]; then names+=("${entry#* }"); else undocumented+=("$kind ${entry#* }"); fi
      done
      if [ "${#names[@]}" -gt 0 ]; then doc -t "$kind" "${names[@]}" && rendered+=("${names[@]/#/$kind }"); fi
      # And no documentation of a plugin that no file exports (a filter renamed or removed): ansible-doc never reads it.
      for file in "$dir"*.yml "$dir"*.yaml; do
        [ -e "$file" ] || continue
        base=$(basename "$file")
        case " ${names[*]} " in *" $self.${base%.*} "*) ;; *) fail "plugins/$kind/$base documents no $kind of $self" ;; esac
      done
      continue
      ;;
    become | cache | callback | cliconf | connection | httpapi | inventory | lookup | netconf | shell | strategy | vars)
      type=$kind
      ;;
    *) fail "plugins/$kind: a plugin type this check does not know how to document" ;;
  esac
  names=()
  for file in "$dir"*.py; do
    [ -e "$file" ] || continue
    base=$(basename "$file" .py)
    [ "${base:0:1}" = _ ] || names+=("$self.$base")
  done
  [ "${#names[@]}" -gt 0 ] || continue
  doc -t "$type" "${names[@]}"
  grep -q . "$tmp/doc.out" || fail "ansible-doc -t $type ${names[*]} rendered nothing"
  rendered+=("${names[@]/#/$type }")
done
[ "${#rendered[@]}" -gt 0 ] || fail "no plugin of $self rendered"
# A filter or test file exports several plugins; ansible-doc finds each one's documentation in plugins/<type>/<name>.yml.
[ "${#undocumented[@]}" -eq 0 ] \
  || fail "loaded but undocumented (each needs its plugins/<type>/<name>.yml): $(printf '%s, ' "${undocumented[@]}" | sed 's/, $//')"

# --- Every role (its argument specs), every playbook.
roles=()
for dir in "$installed"/roles/*/; do roles+=("$self.$(basename "$dir")"); done
[ "${#roles[@]}" -gt 0 ] || fail "no role in $installed/roles"
doc -t role "${roles[@]}"
doc -t role --json "${roles[@]}"
# A role without meta/argument_specs.yml renders as nothing, and ansible-doc exits 0: each needs an entry point.
"$bin/python" -c '
import json, sys
docs = json.load(open(sys.argv[1]))
empty = [role for role in sys.argv[2:] if not docs.get(role, {}).get("entry_points")]
sys.exit("packaging: ansible-doc rendered no entry point for " + " ".join(empty) if empty else 0)
' "$tmp/doc.out" "${roles[@]}"
playbooks=()
for file in "$installed"/playbooks/*.yml "$installed"/playbooks/*.yaml; do
  [ -e "$file" ] || continue
  name=$(basename "$file")
  playbooks+=("$self.${name%.*}")
  "$bin/ansible-playbook" --syntax-check -i localhost, "$self.${name%.*}" >"$tmp/syntax.log" 2>&1 \
    || { cat "$tmp/syntax.log" >&2; fail "ansible-playbook --syntax-check $self.${name%.*} failed"; }
done
[ "${#playbooks[@]}" -gt 0 ] || fail "no playbook in $installed/playbooks"

echo "packaging: $(basename "$archive") ($(wc -l <"$tmp/contents") entries) installs offline with ${deps[*]}" \
  "into ansible-core $core alone"
echo "packaging: ansible-doc rendered ${#rendered[@]} plugins and ${#roles[@]} roles; --syntax-check passed for" \
  "${playbooks[*]}"
echo "packaging: passed in $(($(date +%s) - start)) s"
