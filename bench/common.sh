# Sourced by the bench/*.sh scripts: shared paths and small helpers.
# shellcheck shell=bash disable=SC2034

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

KILN_BENCH_CACHE=${KILN_BENCH_CACHE:-$HOME/.cache/kiln-bench}
KILN_BENCH_VENV=${KILN_BENCH_VENV:-$KILN_BENCH_CACHE/venv}
KILN_BENCH_DATA=${KILN_BENCH_DATA:-$KILN_BENCH_CACHE/data}
BENCH_PY=$KILN_BENCH_VENV/bin/python

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
