#!/usr/bin/env bash
# Create (or reuse) the Python venv holding the benchmark baselines pinned in
# bench/requirements.txt.
#
#   KILN_BENCH_VENV    venv location (default ~/.cache/kiln-bench/venv)
#   KILN_BENCH_PYTHON  interpreter to build it from (default python3, >= 3.11)
#
# The venv is reused when its marker file holds the same hash of
# requirements.txt + interpreter version; otherwise it is rebuilt from scratch.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

req=$BENCH_DIR/requirements.txt
python=${KILN_BENCH_PYTHON:-python3}
marker=$KILN_BENCH_VENV/.kiln-bench-requirements.sha256

command -v "$python" >/dev/null || die "no '$python' on PATH (set KILN_BENCH_PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$python is $("$python" -V 2>&1); the pinned numpy/scipy need Python >= 3.11 (set KILN_BENCH_PYTHON)"
"$python" -c 'import venv' 2>/dev/null ||
  die "$python has no venv module (Debian: apt-get install python3-venv)"

py_version=$("$python" -c 'import sys; print(sys.version.split()[0])')
hash=$({ cat "$req"; echo "python $py_version"; } | sha256sum | cut -d' ' -f1)

mkdir -p "$(dirname "$KILN_BENCH_VENV")"
# Serialise concurrent runs on the same venv.
if command -v flock >/dev/null; then
  exec 9>"$KILN_BENCH_VENV.lock"
  flock 9
fi

if [[ -x $KILN_BENCH_VENV/bin/python && -f $marker && "$(cat "$marker")" == "$hash" ]]; then
  log "venv up to date: $KILN_BENCH_VENV"
  exit 0
fi

start=$SECONDS
if [[ -e $KILN_BENCH_VENV ]]; then
  # Only ever delete something that is recognisably a venv (or empty).
  if [[ -f $KILN_BENCH_VENV/pyvenv.cfg ]] || [[ -d $KILN_BENCH_VENV && -z "$(ls -A "$KILN_BENCH_VENV")" ]]; then
    log "requirements changed or venv incomplete: rebuilding $KILN_BENCH_VENV"
    rm -rf "$KILN_BENCH_VENV"
  else
    die "$KILN_BENCH_VENV exists and is not a venv; refusing to delete it"
  fi
fi

log "creating venv at $KILN_BENCH_VENV with Python $py_version"
"$python" -m venv "$KILN_BENCH_VENV"
pip=("$KILN_BENCH_VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
log "installing $(grep -cv '^\s*\(#\|$\)' "$req") pinned baselines from requirements.txt"
"${pip[@]}" install --quiet -r "$req"
"${pip[@]}" check >&2 || log "warning: pip check reports conflicts (see above)"

# Written last: an interrupted install leaves no marker and is redone.
echo "$hash" >"$marker"
log "venv ready in $((SECONDS - start)) s: $KILN_BENCH_VENV"
