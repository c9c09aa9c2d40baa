#!/usr/bin/env bash
# Fetch the benchmark data at run time from the npm registry (never committed):
#
#   vega-datasets-3.2.1.tgz   `npm pack vega-datasets@3.2.1`, integrity checked
#   flights-3m.parquet        package/data/flights-3m.parquet from that tarball
#   flights-1g.csv            the same rows as CSV, repeated to ~1 GB (30M rows)
#
# all in KILN_BENCH_DATA (default ~/.cache/kiln-bench/data). Each step is
# skipped when its output is already there. Runs setup.sh first (the CSV is
# built with pyarrow from the bench venv).
#
#   KILN_BENCH_CSV_BYTES   size the CSV is grown to (default 1000000000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pkg=vega-datasets
version=3.2.1
# `npm view vega-datasets@3.2.1 dist.integrity`
integrity=sha512-lTSwZA6yq6qSU2YZm+6bqILiIvTPPxn4itir7jPGFmHIdPvUfQ9pCzzcrklYywMJgLUbaIeSkZQdiJd6wBxPug==
tgz=$KILN_BENCH_DATA/$pkg-$version.tgz
parquet=$KILN_BENCH_DATA/flights-3m.parquet
csv=$KILN_BENCH_DATA/flights-1g.csv

"$BENCH_DIR/setup.sh"
mkdir -p "$KILN_BENCH_DATA"

sri() {  # Subresource-Integrity string (what npm records) of a file
  "$BENCH_PY" - "$1" <<'PY'
import base64, hashlib, sys
h = hashlib.sha512()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print("sha512-" + base64.b64encode(h.digest()).decode())
PY
}

if [[ ! -f $tgz ]]; then
  command -v npm >/dev/null || die "npm is needed to fetch $pkg@$version (Debian: apt-get install npm)"
  log "fetching $pkg@$version from the npm registry"
  tmp=$(mktemp -d "$KILN_BENCH_DATA/.pack.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "$pkg@$version" --silent >/dev/null)
  got=$(sri "$tmp/$pkg-$version.tgz")
  [[ $got == "$integrity" ]] || die "$pkg-$version.tgz integrity mismatch: got $got, want $integrity"
  mv "$tmp/$pkg-$version.tgz" "$tgz"
  rm -rf "$tmp"
  trap - EXIT
else
  log "have $tgz"
fi

if [[ ! -f $parquet ]]; then
  log "extracting flights-3m.parquet"
  tar -xzOf "$tgz" package/data/flights-3m.parquet >"$parquet.tmp"
  mv "$parquet.tmp" "$parquet"
else
  log "have $parquet"
fi

"$BENCH_PY" "$BENCH_DIR/python/make_csv.py" "$parquet" "$csv" \
  --target-bytes "${KILN_BENCH_CSV_BYTES:-1000000000}"

log "data ready in $KILN_BENCH_DATA:"
ls -l "$tgz" "$parquet" "$csv" >&2
