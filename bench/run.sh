#!/usr/bin/env bash
# Kiln benchmarks: Kiln against the Python baselines, measured in the same run.
#
#   bench/run.sh [scenario...]        (default: ingest)
#
# Runs setup.sh (venv with the pinned baselines) and fetch-data.sh (data from
# the npm registry), then each scenario. A scenario is a shell function
# `scenario_NAME` below; it measures the baseline and Kiln alternately,
# KILN_BENCH_REPEAT times each, takes medians, prints a Markdown table and
# writes it to bench/results/NAME.md (git-ignored; copy into BENCHMARKS.md by
# hand).
#
#   KILN_BIN               kiln binary (default ${CARGO_TARGET_DIR:-REPO/target}/release/kiln)
#   KILN_BENCH_REPEAT      runs per measurement, median taken (default 3)
#   KILN_BENCH_PANDAS_ONLY 1 = measure only the Python baselines (no kiln needed)
#   KILN_BENCH_VENV, KILN_BENCH_DATA, KILN_BENCH_PYTHON, KILN_BENCH_CSV_BYTES:
#                          see setup.sh and fetch-data.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export LC_ALL=C # '.' decimal point for EPOCHREALTIME, awk and sort

REPEAT=${KILN_BENCH_REPEAT:-3}
PANDAS_ONLY=${KILN_BENCH_PANDAS_ONLY:-0}
RESULTS_DIR=$BENCH_DIR/results
LOG_DIR=$RESULTS_DIR/logs

# ---------------------------------------------------------------- helpers

resolve_kiln() {
  local target
  if [[ -n ${KILN_BIN:-} ]]; then
    KILN=$KILN_BIN
  else
    target=${CARGO_TARGET_DIR:-$REPO_DIR/target}
    KILN=$target/release/kiln
  fi
  [[ $KILN == /* ]] || KILN=$PWD/$KILN
  [[ $PANDAS_ONLY == 1 ]] && return
  if [[ ! -f $KILN || ! -x $KILN ]]; then
    die "kiln binary not found (or not executable) at $KILN
  build it first:   (cd $REPO_DIR && cargo build --release)
  or point at one:  KILN_BIN=/path/to/kiln bench/run.sh ...
  or skip Kiln:     KILN_BENCH_PANDAS_ONLY=1 bench/run.sh ...   (baselines only)"
  fi
}

# timed LOGNAME CMD...: run CMD once under /usr/bin/time -f '%e %M'. Sets
# T_S (wall seconds), T_KIB (max RSS, KiB) and T_OUT (stdout); stderr goes to
# the log. T_S comes from bash's EPOCHREALTIME around the call (1 ms
# resolution; %e has only 10 ms, too coarse for sub-second Kiln runs), and
# falls back to %e where bash is older than 5.0.
timed() {
  local logname=$1; shift
  local tf=$SCRATCH/time.txt log=$LOG_DIR/$logname.log t0=${EPOCHREALTIME:-} t1 e
  if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$SCRATCH/stdout.txt" 2>"$log"; then
    tail -n 20 "$log" >&2
    die "failed: $* ($(head -n1 "$tf"); full log: $log)"
  fi
  t1=${EPOCHREALTIME:-}
  read -r e T_KIB <"$tf"
  if [[ -n $t0 ]]; then T_S=$(fmt '%.3f' "$t1 - $t0"); else T_S=$e; fi
  T_OUT=$(cat "$SCRATCH/stdout.txt")
}

median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fmt FORMAT EXPR: evaluate an awk expression and format it.
fmt() { awk "BEGIN { printf \"$1\", $2 }"; }

thousands() { printf '%s' "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }

# row SCENARIO INPUT ROWS PANDAS_S KILN_S PANDAS_KIB KILN_KIB: one table line
row() {
  local p_mib k_mib speedup memratio pandas_s kiln_s
  pandas_s=$(fmt '%.3f' "$4")
  kiln_s=$(fmt '%.3f' "$5")
  p_mib=$(fmt '%.0f' "$6 / 1024")
  if [[ $PANDAS_ONLY == 1 ]]; then
    kiln_s="—"; k_mib="—"; speedup="—"; memratio="—"
  else
    k_mib=$(fmt '%.0f' "$7 / 1024")
    speedup=$(fmt '%.2f' "$4 / ($5 > 0 ? $5 : 0.01)")
    memratio=$(fmt '%.2f' "$6 / $7")
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$1" "$2" "$(thousands "$3")" "$pandas_s" "$kiln_s" "$speedup" "$p_mib" "$k_mib" "$memratio"
}

TABLE_HEADER='| scenario | input | rows | pandas s | kiln s | speed-up (×) | pandas peak MiB | kiln peak MiB | memory ratio |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'

# report NAME TABLE NOTES: print the table and write results/NAME.md
report() {
  local name=$1 table=$2 notes=$3 kiln_version="not measured (KILN_BENCH_PANDAS_ONLY=1)"
  [[ $PANDAS_ONLY == 1 ]] || kiln_version="$("$KILN" --version 2>/dev/null | head -n1 || true) ($KILN)"
  {
    echo "## $name"
    echo
    echo "$table"
    echo
    echo "Median of $REPEAT run(s) each, pandas and Kiln alternating; wall time and peak RSS of the whole process"
    echo "(\`/usr/bin/time -f '%e %M'\`, wall time read to the millisecond)."
    echo "speed-up = pandas s ÷ kiln s, memory ratio = pandas peak ÷ kiln peak (above 1: Kiln is faster / smaller)."
    [[ -z $notes ]] || printf '%s\n' "$notes"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); repo: $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM"
    echo "- kiln: $kiln_version"
    echo "- python: $("$BENCH_PY" -c 'import sys, pandas, pyarrow, numpy; print(sys.version.split()[0], "pandas", pandas.__version__, "pyarrow", pyarrow.__version__, "numpy", numpy.__version__)')"
  } >"$RESULTS_DIR/$name.md"
  echo
  cat "$RESULTS_DIR/$name.md"
  log "written to $RESULTS_DIR/$name.md (per-run logs in $LOG_DIR)"
}

# ---------------------------------------------------------------- scenarios

# ingest: `kiln data add` against bench/python/ingest_pandas.py (read, checks,
# profile, Parquet snapshot) on the flights Parquet file and the 1 GB CSV.
scenario_ingest() {
  local table=$TABLE_HEADER notes="" f input i rows
  local -a p_s p_kib p_pipe k_s k_kib
  for f in "$KILN_BENCH_DATA/flights-3m.parquet" "$KILN_BENCH_DATA/flights-1g.csv"; do
    input=$(basename "$f")
    p_s=() p_kib=() p_pipe=() k_s=() k_kib=()
    cat "$f" >/dev/null # same warm page cache for every run
    for ((i = 1; i <= REPEAT; i++)); do
      log "ingest $input: run $i/$REPEAT pandas"
      timed "ingest-$input-pandas-$i" "$BENCH_PY" "$BENCH_DIR/python/ingest_pandas.py" "$f" "$SCRATCH/out-$i"
      rm -rf "$SCRATCH/out-$i"
      p_s+=("$T_S") p_kib+=("$T_KIB")
      rows=$(sed -n 's/.*"rows": *\([0-9]*\).*/\1/p' <<<"$T_OUT")
      p_pipe+=("$(sed -n 's/.*"seconds": *\([0-9.]*\).*/\1/p' <<<"$T_OUT")")
      [[ -n $rows ]] || die "ingest_pandas.py printed no rows count: $T_OUT"
      if [[ $PANDAS_ONLY != 1 ]]; then
        log "ingest $input: run $i/$REPEAT kiln"
        mkdir "$SCRATCH/home-$i"
        timed "ingest-$input-kiln-$i" "$KILN" --home "$SCRATCH/home-$i" data add "$f" --dataset flights -q
        rm -rf "$SCRATCH/home-$i"
        k_s+=("$T_S") k_kib+=("$T_KIB")
      fi
    done
    log "ingest $input: pandas runs ${p_s[*]} s, ${p_kib[*]} KiB${k_s:+; kiln runs ${k_s[*]} s, ${k_kib[*]} KiB}"
    table+=$'\n'$(row ingest "$input" "$rows" "$(median "${p_s[@]}")" "$(median "${k_s[@]:-0}")" \
      "$(median "${p_kib[@]}")" "$(median "${k_kib[@]:-0}")")
    notes+="- $input: pandas pipeline alone (read to snapshot, without interpreter start and imports) $(fmt '%.3f' "$(median "${p_pipe[@]}")") s"$'\n'
  done
  report ingest "$table" "${notes%$'\n'}"
}

# Later: scenario_train (LightGBM / scikit-learn), scenario_serve (FastAPI +
# uvicorn), scenario_drift (Evidently), each with its bench/python/ baseline.

# ---------------------------------------------------------------- main

scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(ingest)
for s in "${scenarios[@]}"; do
  declare -F "scenario_$s" >/dev/null ||
    die "unknown scenario '$s' (known: $(declare -F | sed -n 's/^declare -f scenario_//p' | paste -sd' '))"
done
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "KILN_BENCH_REPEAT must be a positive integer, not '$REPEAT'"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian: apt-get install time)"
resolve_kiln

"$BENCH_DIR/setup.sh"
"$BENCH_DIR/fetch-data.sh"

mkdir -p "$RESULTS_DIR" "$LOG_DIR"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
for s in "${scenarios[@]}"; do
  "scenario_$s"
done
