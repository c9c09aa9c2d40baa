#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/k8s/, offline:
#   - kustomization.yaml lists every manifest in the folder, and only those
#   - each manifest against the Kubernetes API's JSON schemas, strict (unknown fields are
#     errors), with kubernetes-validate, which bundles the schemas: nothing is downloaded.
#     A resource without a schema (a mistyped apiVersion or kind) is an error here too.
#   - the kiln.toml in configmap.yaml parses and uses only keys `kiln init` documents
#   - then it breaks copies of the manifests on purpose and requires each check to fail,
#     so a validator that passes everything cannot go unnoticed.
# Needs a Python with kubernetes-validate (crates/kiln-serve/tests/python/requirements.txt):
# $KILN_TEST_PYTHON, else ~/.cache/kiln-ci/venv/bin/python (the venv .ci/run builds).
set -euo pipefail

cd "$(dirname "$0")/../.."
K8S=deploy/k8s
PY="${KILN_TEST_PYTHON:-$HOME/.cache/kiln-ci/venv/bin/python}"
# Kubernetes versions validated against: the oldest supported and the newest the pinned
# kubernetes-validate bundles.
VERSIONS="${KILN_K8S_VERSIONS:-1.29 1.37}"

[ -x "$PY" ] || { echo "python not found at $PY (set KILN_TEST_PYTHON)" >&2; exit 1; }
"$PY" -c 'import kubernetes_validate, yaml, tomllib' 2>/dev/null || {
  echo "kubernetes-validate is not installed for $PY:" >&2
  echo "  $PY -m pip install -r crates/kiln-serve/tests/python/requirements.txt" >&2
  exit 1
}

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT

# check_structure DIR: kustomization.yaml against the folder; kiln.toml keys against the
# template in crates/kiln-core/src/config.rs.
check_structure() {
  "$PY" - "$1" <<'PY'
import os, re, sys, tomllib, yaml

d = sys.argv[1]
errors = []

# ---- kustomization.yaml lists exactly the manifests in the folder
with open(os.path.join(d, "kustomization.yaml")) as f:
    kust = yaml.safe_load(f)
listed = kust.get("resources", [])
present = sorted(n for n in os.listdir(d)
                 if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml")
for n in listed:
    if n not in present:
        errors.append(f"kustomization.yaml lists {n}, which does not exist")
for n in present:
    if n not in listed:
        errors.append(f"{n} is not listed in kustomization.yaml")
ns = kust.get("namespace")
for n in present:
    with open(os.path.join(d, n)) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") == "Namespace":
                continue
            got = doc.get("metadata", {}).get("namespace")
            if got != ns:
                errors.append(f"{n}: {doc.get('kind')} {doc['metadata'].get('name')} "
                              f"has namespace {got!r}, kustomization.yaml sets {ns!r}")

# ---- kiln.toml in the ConfigMap: every table and key is one the template documents
src = open("crates/kiln-core/src/config.rs").read()
template = src.split('pub const TEMPLATE: &str = r#"', 1)[1].split('"#;', 1)[0]

def norm(path):
    """datasets.NAME.columns.COLUMN -> datasets.*.columns.*; monitor.drift.columns.temp likewise."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        if parts[i - 1] in ("datasets", "columns"):
            parts[i] = "*"
    return ".".join(parts)

known = {"": set()}
section = ""
for line in template.splitlines():
    m = re.match(r"^#?\s*\[\[?([a-zA-Z_.]+)\]\]?(\s|$)", line)
    if m:
        section = norm(m.group(1))
        known.setdefault(section, set())
        # A table is also a key of its parent.
        parent, _, leaf = section.rpartition(".")
        known.setdefault(parent, set()).add(leaf)
        continue
    m = re.match(r"^#?\s*([a-z_][a-z0-9_]*)\s*=\s*\S", line)
    if m:
        known[section].add(m.group(1))

with open(os.path.join(d, "configmap.yaml")) as f:
    cms = [doc for doc in yaml.safe_load_all(f) if doc and doc.get("kind") == "ConfigMap"]
texts = [cm["data"]["kiln.toml"] for cm in cms if "kiln.toml" in cm.get("data", {})]
if not texts:
    errors.append("configmap.yaml: no ConfigMap with a kiln.toml key")
for text in texts:
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        errors.append(f"configmap.yaml: kiln.toml does not parse: {e}")
        continue

    def walk(table, path):
        allowed = known.get(norm(path))
        for key, value in table.items():
            sub = f"{path}.{key}" if path else key
            if allowed is None or key not in allowed and "*" not in allowed:
                errors.append(f"configmap.yaml: kiln.toml: unknown key `{sub}` "
                              f"(not in the template of crates/kiln-core/src/config.rs)")
                continue
            if isinstance(value, dict):
                walk(value, sub)
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for v in value:
                    walk(v, sub)

    # Dataset names and column names are the user's: their tables match any name.
    for s in list(known):
        for p in ("datasets", "datasets.*.columns", "monitor.drift.columns"):
            if s == p:
                known[s].add("*")
    walk(config, "")

if errors:
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    sys.exit(1)
print(f"kustomization.yaml lists all {len(present)} manifests; kiln.toml keys are all known")
PY
}

# check_schemas DIR: every listed manifest, every document, every version: "passed".
check_schemas() {
  local d=$1 out=$tmpdir/kv.out expected files=() k=()
  mapfile -t files < <("$PY" -c '
import sys, yaml
for n in yaml.safe_load(open(sys.argv[1] + "/kustomization.yaml"))["resources"]:
    print(sys.argv[1] + "/" + n)' "$d")
  for v in $VERSIONS; do k+=(-k "$v"); done
  expected=$("$PY" -c '
import sys, yaml
n = sum(1 for f in sys.argv[2:] for doc in yaml.safe_load_all(open(f)) if doc)
print(n * int(sys.argv[1]))' "$(wc -w <<<"$VERSIONS")" "${files[@]}")
  local rc=0
  "$PY" -m kubernetes_validate --strict "${k[@]}" "${files[@]}" >"$out" 2>&1 || rc=$?
  sed "s#$tmpdir/##" "$out"
  # kubernetes-validate only warns (exit 0) when it has no schema for a resource.
  if [ "$rc" -ne 0 ] || grep -qv '^INFO .* passed for resource ' "$out"; then
    echo "ERROR: kubernetes-validate reported problems (exit $rc)" >&2
    return 1
  fi
  local passed
  passed=$(grep -c '^INFO .* passed for resource ' "$out")
  if [ "$passed" -ne "$expected" ]; then
    echo "ERROR: $passed resources passed, expected $expected" >&2
    return 1
  fi
  echo "$passed resource validations passed (Kubernetes $VERSIONS, strict)"
}

echo "== kubernetes-validate $("$PY" -m kubernetes_validate --version), $("$PY" --version)"
echo "== structure: kustomization.yaml and kiln.toml"
check_structure "$K8S"
echo "== schemas"
(cd "$K8S" && check_schemas .)

# ---- the checks must fail on broken manifests ---------------------------------------------
# break_and_expect_failure NAME FILE SED-EXPR EXPECTED: copy deploy/k8s, apply SED-EXPR to FILE, require the
# copy to fail the checks with EXPECTED in the output.
break_and_expect_failure() {
  local name=$1 file=$2 expr=$3 expected=$4 bad=$tmpdir/$1 log=$tmpdir/$1.log
  cp -r "$K8S" "$bad"
  sed -i -e "$expr" "$bad/$file"
  if cmp -s "$K8S/$file" "$bad/$file"; then
    echo "ERROR: negative test $name: '$expr' changed nothing in $file" >&2
    exit 1
  fi
  if (check_structure "$bad" && cd "$bad" && check_schemas .) >"$log" 2>&1; then
    echo "ERROR: negative test $name: the broken manifests passed:" >&2
    cat "$log" >&2
    exit 1
  fi
  if ! grep -qF -- "$expected" "$log"; then
    echo "ERROR: negative test $name failed, but not with '$expected':" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "$name: fails as it should:"
  grep -F -- "$expected" "$log" | sed "s#$tmpdir/##; s/^/    /" | head -n 3
}

echo "== broken copies must fail"
break_and_expect_failure replicas-not-a-number deployment.yaml \
  's/^  replicas: 3$/  replicas: "three"/' \
  "'three' is not of type 'integer'"
break_and_expect_failure unknown-field deployment.yaml \
  's/^          readinessProbe:$/          readinessProb:/' \
  "'readinessProb' was unexpected"
break_and_expect_failure unknown-apiversion watch-cronjob.yaml \
  's#^apiVersion: batch/v1$#apiVersion: batch/v1beta9#' \
  "Couldn't find schema for kind CronJob"
break_and_expect_failure unlisted-manifest kustomization.yaml \
  '/^  - service.yaml$/d' \
  "service.yaml is not listed in kustomization.yaml"
# shellcheck disable=SC2016  # the backticks are part of the expected message
break_and_expect_failure unknown-kiln-key configmap.yaml \
  's/^    poll_interval_ms = 500 /    poll_interval = 500 /' \
  'unknown key `serve.poll_interval`'

echo "OK"
