#!/usr/bin/env bash
# Validates the Prometheus rules and the Grafana dashboard in deploy/.
#   - promtool check rules / promtool test rules
#   - dashboard JSON parses, has the expected structure, and its queries parse as PromQL
#   - every metric name used in the rules, rule tests and dashboard is one Kiln exposes
# Needs promtool and python3 (PyYAML optional, for exact expression extraction).
set -euo pipefail

cd "$(dirname "$0")/.."
RULES=deploy/prometheus/kiln-rules.yml
TESTS=deploy/prometheus/kiln-rules.test.yml
DASH=deploy/grafana/kiln-dashboard.json

command -v promtool >/dev/null || { echo "promtool not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

echo "== promtool check rules"
promtool check rules "$RULES"

echo "== promtool test rules"
promtool test rules "$TESTS"

echo "== dashboard JSON"
if command -v jq >/dev/null; then
  jq empty "$DASH" && echo "jq: $DASH parses"
fi

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT

python3 - "$RULES" "$TESTS" "$DASH" "$tmpdir/dashboard-exprs.yml" <<'PY'
import json, re, sys

rules_path, tests_path, dash_path, exprs_out = sys.argv[1:5]

# Metric families exposed by `kiln serve` at /metrics: read from the server's source, so a
# renamed metric fails this check instead of silently emptying a panel.
src = open("crates/kiln-serve/src/metrics.rs").read()
KNOWN = set(re.findall(r'"(kiln_[a-z0-9_]+)"', src))
HISTOGRAMS = {"kiln_http_request_duration_seconds", "kiln_prediction_rows",
              "kiln_prediction_log_flush_duration_seconds"}
ALLOWED = set(KNOWN)
for h in HISTOGRAMS:
    ALLOWED |= {h + "_bucket", h + "_sum", h + "_count"}

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "atan2", "inf", "nan", "Inf", "NaN"}

def metric_names(expr):
    """Metric names referenced by a PromQL expression (ignores functions, labels, keywords)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"`[^`]*`", "``", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    out = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        tok = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # function or aggregation
        if tok in KEYWORDS:
            continue
        out.add(tok)
    return out

errors = []
used = {}  # metric name -> set of places

def note(names, where):
    for n in names:
        used.setdefault(n, set()).add(where)

# ---- rules and rule tests
try:
    import yaml
except ImportError:
    yaml = None

records = set()
if yaml:
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    for g in rules["groups"]:
        for r in g["rules"]:
            if "record" in r:
                records.add(r["record"])
                note(metric_names(r["expr"]), f"{rules_path}: record {r['record']}")
            else:
                name = r["alert"]
                note(metric_names(r["expr"]), f"{rules_path}: alert {name}")
                if "severity" not in r.get("labels", {}):
                    errors.append(f"alert {name}: no severity label")
                for a in ("summary", "description"):
                    if a not in r.get("annotations", {}):
                        errors.append(f"alert {name}: no {a} annotation")
    with open(tests_path) as f:
        tests = yaml.safe_load(f)
    for t in tests["tests"]:
        for s in t.get("input_series", []):
            note({s["series"].split("{", 1)[0].strip()}, f"{tests_path}: input_series")
        for e in t.get("promql_expr_test", []):
            note(metric_names(e["expr"]), f"{tests_path}: promql_expr_test")
else:
    print("warning: PyYAML not installed; scanning rule files as plain text", file=sys.stderr)
    for path in (rules_path, tests_path):
        text = open(path).read()
        records |= set(re.findall(r"^\s*-?\s*record:\s*(\S+)", text, re.M))
        for n in re.findall(r"(?<![A-Za-z0-9_:])kiln_[a-z0-9_]+(?![a-z0-9_:])", text):
            note({n}, path)

# ---- dashboard
with open(dash_path) as f:
    dash = json.load(f)
print(f"python: {dash_path} parses (schemaVersion {dash.get('schemaVersion')})")
for key in ("uid", "title", "panels", "schemaVersion"):
    if key not in dash:
        errors.append(f"dashboard: missing {key}")

def all_panels(ps):
    for p in ps:
        yield p
        yield from all_panels(p.get("panels", []))

dash_exprs = []
ids = set()
for p in all_panels(dash.get("panels", [])):
    title = p.get("title", "?")
    if p.get("id") in ids:
        errors.append(f"panel {title!r}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    gp = p.get("gridPos", {})
    if not all(k in gp for k in ("h", "w", "x", "y")):
        errors.append(f"panel {title!r}: incomplete gridPos")
    if p.get("type") == "row":
        continue
    if not p.get("targets"):
        errors.append(f"panel {title!r}: no targets")
    for t in p.get("targets", []):
        if not t.get("expr"):
            errors.append(f"panel {title!r}: target {t.get('refId')} without expr")
            continue
        if "legendFormat" not in t:
            errors.append(f"panel {title!r}: target {t.get('refId')} without legendFormat")
        dash_exprs.append((title, t["expr"]))
        note(metric_names(t["expr"]), f"{dash_path}: panel {title!r}")

for v in dash.get("templating", {}).get("list", []):
    if v.get("type") != "query":
        continue
    q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
    m = re.match(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", q)
    if not m:
        errors.append(f"variable {v['name']}: unexpected query {q!r}")
        continue
    note(metric_names(m.group(1)), f"{dash_path}: variable {v['name']}")

# Dashboard queries, with Grafana variables replaced, as recording rules for promtool to parse.
def concrete(expr):
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)

with open(exprs_out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, expr) in enumerate(dash_exprs):
        f.write(f"      - record: kiln_dashboard_check:expr_{i}\n")
        f.write(f"        expr: {json.dumps(concrete(expr))}\n")

# ---- metric names
for name in sorted(used):
    if name in ALLOWED:
        continue
    if ":" in name and name in records:
        continue
    errors.append(f"unknown metric {name!r} used in: " + "; ".join(sorted(used[name])))

if errors:
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    sys.exit(1)

kiln = sorted(n for n in used if n in ALLOWED)
print(f"metric names: {len(kiln)} Kiln metrics and {len([n for n in used if n in records])} "
      f"recording rules referenced, all known:")
print("  " + " ".join(kiln))
PY

echo "== dashboard queries parse as PromQL"
promtool check rules "$tmpdir/dashboard-exprs.yml" | sed "s#$tmpdir/##"

echo "OK"
