#!/usr/bin/env bash
# Kiln benchmarks: Kiln against the Python baselines, measured in the same run.
#
#   bench/run.sh [scenario...]        (default: ingest; known: ingest, train, scale, serve, drift)
#
# Runs setup.sh (venv with the pinned baselines) and, for ingest,
# fetch-data.sh (data from the npm registry), then each scenario. A scenario is a shell function
# `scenario_NAME` below; it measures the baseline and Kiln alternately,
# KILN_BENCH_REPEAT times each, takes medians, prints a Markdown table and
# writes it to bench/results/NAME.md (git-ignored; copy into BENCHMARKS.md by
# hand). `serve` measures each HTTP server once, for KILN_BENCH_SERVE_SECONDS,
# with wrk; without a kiln that has `serve`, it measures the others only.
#
#   KILN_BIN               kiln binary (default ${CARGO_TARGET_DIR:-REPO/target}/release/kiln)
#   KILN_TRAIN_BIN         train's Kiln side (default ${CARGO_TARGET_DIR:-REPO/target}/release/examples/bike_train)
#   KILN_BENCH_REPEAT      runs per measurement, median taken (default 3)
#   KILN_BENCH_PANDAS_ONLY 1 = measure only the Python baselines (no Kiln binary needed)
#   KILN_BENCH_SERVE_SECONDS  serve: wrk duration per server (default 15; warm-up
#                          KILN_BENCH_SERVE_WARMUP, default 3)
#   KILN_BENCH_CEILING_BIN serve: a prebuilt bench/ceiling binary (default: built here)
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

# kiln_path: sets KILN (KILN_BIN or the release build), absolute; no checks.
kiln_path() {
  KILN=${KILN_BIN:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/kiln}
  [[ $KILN == /* ]] || KILN=$PWD/$KILN
}

# resolve_kiln: kiln_path, and stop unless the binary is there (or PANDAS_ONLY).
resolve_kiln() {
  kiln_path
  [[ $PANDAS_ONLY == 1 ]] && return
  if [[ ! -f $KILN || ! -x $KILN ]]; then
    die "kiln binary not found (or not executable) at $KILN
  build it first:   (cd $REPO_DIR && cargo build --release)
  or point at one:  KILN_BIN=/path/to/kiln bench/run.sh ...
  or skip Kiln:     KILN_BENCH_PANDAS_ONLY=1 bench/run.sh ...   (baselines only)"
  fi
}

# The `train` scenario's Kiln side: the bike_train example of kiln-model.
resolve_train_bin() {
  TRAIN_BIN=${KILN_TRAIN_BIN:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/examples/bike_train}
  [[ $TRAIN_BIN == /* ]] || TRAIN_BIN=$PWD/$TRAIN_BIN
  [[ $PANDAS_ONLY == 1 ]] && return
  if [[ ! -f $TRAIN_BIN || ! -x $TRAIN_BIN ]]; then
    die "bike_train example not found (or not executable) at $TRAIN_BIN
  build it first:   (cd $REPO_DIR && cargo build --release -p kiln-model --example bike_train)
  or point at one:  KILN_TRAIN_BIN=/path/to/bike_train bench/run.sh train
  or skip Kiln:     KILN_BENCH_PANDAS_ONLY=1 bench/run.sh train   (baselines only)"
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

# json_fields WHAT JSON PATH...: the numbers at the dotted PATHs (e.g. hgb.rmse)
# of the JSON object on the last line of JSON, space-separated on one line.
# Fails, naming WHAT, if one is missing or not a number.
json_fields() {
  local what=$1 json=$2; shift 2
  "$BENCH_PY" - "$json" "$@" <<'PY' || die "$what did not print the JSON expected: $json"
import json, sys
lines = sys.argv[1].strip().splitlines()
try:
    d = json.loads(lines[-1] if lines else "")
except ValueError as e:
    sys.exit(f"not JSON ({e})")
values = []
for path in sys.argv[2:]:
    v = d
    for key in path.split("."):
        v = v.get(key) if isinstance(v, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        sys.exit(f"{path} is not a number: {v!r}")
    values.append(str(v))
print(" ".join(values))
PY
}

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

# py_versions MODULE...: the interpreter's version and MODULE's, from the venv
py_versions() {
  "$BENCH_PY" - "$@" <<'PY'
import importlib, sys
names = {"scikit-learn": "sklearn"}
def version(m):
    try:
        return importlib.import_module(names.get(m, m)).__version__
    except ImportError:
        return "not installed"
print(sys.version.split()[0], *(f"{m} {version(m)}" for m in sys.argv[1:]))
PY
}

# report NAME TABLE TEXT VERSIONS: print the table, TEXT (how it was measured,
# notes), the date, commit and machine, then VERSIONS (Markdown list lines),
# and write it all to results/NAME.md
report() {
  local name=$1 table=$2 text=$3 versions=$4
  {
    echo "## $name"
    echo
    echo "$table"
    echo
    printf '%s\n' "$text"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); repo: $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM"
    printf '%s\n' "$versions"
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
  local kiln_version="not measured (KILN_BENCH_PANDAS_ONLY=1)"
  [[ $PANDAS_ONLY == 1 ]] || kiln_version="$("$KILN" --version 2>/dev/null | head -n1 || true) ($KILN)"
  report ingest "$table" "Median of $REPEAT run(s) each, pandas and Kiln alternating; wall time and peak RSS of the whole process
(\`/usr/bin/time -f '%e %M'\`, wall time read to the millisecond).
speed-up = pandas s ÷ kiln s, memory ratio = pandas peak ÷ kiln peak (above 1: Kiln is faster / smaller).
${notes%$'\n'}" "- kiln: $kiln_version
- python: $(py_versions pandas pyarrow numpy)"
}

# train_row MODEL RMSE FIT BEST_RMSE LIGHTGBM_FIT: one line of the train table
train_row() {
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(fmt '%.2f' "$2")" "$(fmt '%.3f' "$3")" \
    "$(fmt '%.3f' "$2 / $4")" "$(fmt '%.2f' "$3 / ($5 > 0 ? $5 : 0.0001)")"
}

# train: Kiln's gradient-boosted trees (the bike_train example) against
# LightGBM and scikit-learn's HistGradientBoostingRegressor with their defaults
# (bench/python/train_bike.py) on the bike-rental data in the repo: same time
# split, same features. Each side fits 3 times per run and reports its fastest
# fit and its validation RMSE; the table shows the medians over the runs.
scenario_train() {
  local csv=$REPO_DIR/examples/bikeshare/data/bike-rental-dataset.csv.gz i fields table text versions
  local rows_train rows_valid k_rows_train k_rows_valid rmse fit hgb_rmse hgb_fit
  local -a l_rmse l_fit h_rmse h_fit p_s p_kib k_rmse k_fit k_s k_kib
  [[ -f $csv ]] || die "bike-rental data missing: $csv (it is part of the repo)"
  for ((i = 1; i <= REPEAT; i++)); do
    log "train: run $i/$REPEAT LightGBM + HistGradientBoosting"
    timed "train-python-$i" "$BENCH_PY" "$BENCH_DIR/python/train_bike.py" "$csv"
    p_s+=("$T_S") p_kib+=("$T_KIB")
    fields=$(json_fields train_bike.py "$T_OUT" lightgbm.rmse lightgbm.fit_seconds hgb.rmse hgb.fit_seconds rows_train rows_valid)
    read -r rmse fit hgb_rmse hgb_fit rows_train rows_valid <<<"$fields"
    l_rmse+=("$rmse") l_fit+=("$fit") h_rmse+=("$hgb_rmse") h_fit+=("$hgb_fit")
    [[ $((rows_train + rows_valid)) == 17379 ]] ||
      die "train_bike.py split $rows_train + $rows_valid rows, not the 17,379 of the file"
    if [[ $PANDAS_ONLY != 1 ]]; then
      log "train: run $i/$REPEAT kiln"
      timed "train-kiln-$i" "$TRAIN_BIN" "$csv"
      k_s+=("$T_S") k_kib+=("$T_KIB")
      fields=$(json_fields bike_train "$T_OUT" rmse fit_seconds rows_train rows_valid)
      read -r rmse fit k_rows_train k_rows_valid <<<"$fields"
      k_rmse+=("$rmse") k_fit+=("$fit")
      [[ $k_rows_train == "$rows_train" && $k_rows_valid == "$rows_valid" ]] ||
        die "not the same split: bike_train has $k_rows_train train / $k_rows_valid validation rows, train_bike.py $rows_train / $rows_valid"
    fi
  done
  log "train: LightGBM fits ${l_fit[*]} s, RMSE ${l_rmse[*]}; HGB fits ${h_fit[*]} s, RMSE ${h_rmse[*]}${k_fit:+; kiln fits ${k_fit[*]} s, RMSE ${k_rmse[*]}}"

  local lr lf hr hf kr kf best best_name rmse_ratio fit_ratio rmse_met fit_met
  lr=$(median "${l_rmse[@]}") lf=$(median "${l_fit[@]}")
  hr=$(median "${h_rmse[@]}") hf=$(median "${h_fit[@]}")
  if awk "BEGIN { exit !($lr <= $hr) }"; then best=$lr best_name=LightGBM; else best=$hr best_name=HistGradientBoosting; fi
  table='| model | validation RMSE | fit s | RMSE ÷ best baseline RMSE | fit ÷ LightGBM fit |
| --- | ---: | ---: | ---: | ---: |'
  if [[ $PANDAS_ONLY == 1 ]]; then
    table+=$'\n''| Kiln GBDT | — | — | — | — |'
    rmse_met="not measured (KILN_BENCH_PANDAS_ONLY=1)" fit_met=$rmse_met
  else
    kr=$(median "${k_rmse[@]}") kf=$(median "${k_fit[@]}")
    table+=$'\n'$(train_row "Kiln GBDT" "$kr" "$kf" "$best" "$lf")
    # Judged on the ratios as printed.
    rmse_ratio=$(fmt '%.3f' "$kr / $best") fit_ratio=$(fmt '%.2f' "$kf / ($lf > 0 ? $lf : 0.0001)")
    rmse_met="$(awk "BEGIN { print ($rmse_ratio <= 1.02 ? \"**met**\" : \"**not met**\") }") (ratio $rmse_ratio)"
    fit_met="$(awk "BEGIN { print ($fit_ratio <= 1.5 ? \"**met**\" : \"**not met**\") }") (ratio $fit_ratio)"
  fi
  table+=$'\n'$(train_row "LightGBM (defaults)" "$lr" "$lf" "$best" "$lf")
  table+=$'\n'$(train_row "HistGradientBoosting (defaults)" "$hr" "$hf" "$best" "$lf")

  text="Targets:
- validation RMSE ≤ 1.02 × the better baseline's ($best_name, $(fmt '%.2f' "$best")): $rmse_met
- fit time ≤ 1.5 × LightGBM's: $fit_met

Median of $REPEAT run(s) each, the Python baselines and Kiln alternating. Data:
\`examples/bikeshare/data/bike-rental-dataset.csv.gz\`, target \`cnt\` (\`casual\` and \`registered\` never used);
train: dteday < 2012-07-01 ($(thousands "$rows_train") rows), validation: dteday ≥ 2012-07-01 ($(thousands "$rows_valid") rows).
The same 14 features on both sides: season, hr, holiday, weekday, workingday, weathersit (categorical,
missing kept missing), temp, atemp, hum, windspeed, and from dteday day_of_week, month, day_of_year, is_weekend.
Each run fits every model 3 times: fit s is the fastest of the 3; the baselines' RMSE is the median of
the 3 (HistGradientBoosting's defaults hold out a random 10% for early stopping, so its RMSE varies).
fit s for the baselines: the \`fit\` call alone, on features prepared with pandas beforehand; for Kiln
(\`bike_train\`): fitting its feature pipeline, transforming the rows and fitting the trees.
- whole process (start, load, split, all fits and predictions; \`/usr/bin/time\`): Python with both libraries $(fmt '%.3f' "$(median "${p_s[@]}")") s, $(fmt '%.0f' "$(median "${p_kib[@]}") / 1024") MiB peak"
  [[ $PANDAS_ONLY == 1 ]] ||
    text+="; Kiln $(fmt '%.3f' "$(median "${k_s[@]}")") s, $(fmt '%.0f' "$(median "${k_kib[@]}") / 1024") MiB peak"

  versions="- kiln: not measured (KILN_BENCH_PANDAS_ONLY=1)"
  [[ $PANDAS_ONLY == 1 ]] ||
    versions="- kiln: bike_train example ($TRAIN_BIN, built $(date -u -r "$TRAIN_BIN" +%Y-%m-%dT%H:%MZ))"
  versions+=$'\n'"- python: $(py_versions pandas numpy lightgbm scikit-learn)"
  report train "$table" "$text" "$versions"
}

# scale: training and batch scoring at 3M rows (flights-3m.parquet): `kiln train`
# and `kiln predict` against LightGBM and HistGradientBoosting with their
# defaults (bench/python/train_flights.py). Same split (before / from
# 2001-06-01), same features (hour, day of week, month, day of year,
# is-weekend, distance, origin, destination). Kiln's fit = its pipeline fit and
# transform + the trees (timings recorded by the run); scoring = the pipeline
# and the trees (`score_seconds`), also reported end to end (read and validate
# the file, score, write Parquet).
scenario_scale() {
  local data=$KILN_BENCH_DATA/flights-3m.parquet i fields table text versions home
  local -a l_rmse l_fit l_te l_1m h_rmse h_fit k_rmse k_fit k_te k_1m k_te_all k_1m_all
  "$BENCH_PY" - "$data" "$SCRATCH" <<'PY' || die "could not write the scoring inputs"
import sys, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
cut = pa.scalar(pa.scalar("2001-06-01").cast(pa.timestamp("us")).value, type=t["date"].type)
pq.write_table(t.filter(pc.greater_equal(t["date"], cut)), f"{sys.argv[2]}/test.parquet")
pq.write_table(t.slice(0, 1_000_000), f"{sys.argv[2]}/first-1m.parquet")
PY
  for ((i = 1; i <= REPEAT; i++)); do
    log "scale: run $i/$REPEAT LightGBM + HistGradientBoosting"
    timed "scale-python-$i" "$BENCH_PY" "$BENCH_DIR/python/train_flights.py" "$data"
    fields=$(json_fields train_flights.py "$T_OUT" lightgbm.rmse lightgbm.fit_seconds \
      lightgbm.predict_test_rows_per_s lightgbm.predict_1m_rows_per_s hgb.rmse hgb.fit_seconds)
    read -r a b c d e f <<<"$fields"
    l_rmse+=("$a") l_fit+=("$b") l_te+=("$c") l_1m+=("$d") h_rmse+=("$e") h_fit+=("$f")
    if [[ $PANDAS_ONLY != 1 ]]; then
      log "scale: run $i/$REPEAT kiln"
      home=$SCRATCH/scale-home-$i
      "$KILN" --home "$home" data add "$data" --dataset flights --time-column date --target delay -q
      timed "scale-kiln-train-$i" "$KILN" --home "$home" train -d flights \
        --set split.cutoff=2001-06-01 --set register=flights --json
      fields=$(json_fields "kiln train" "$(tr -d '\n' <<<"$T_OUT")" evaluation.metrics.model.rmse timings.features timings.fit)
      read -r a b c <<<"$fields"
      k_rmse+=("$a") k_fit+=("$(fmt '%.3f' "$b + $c")")
      for what in test first-1m; do
        timed "scale-kiln-predict-$what-$i" "$KILN" --home "$home" predict -m flights \
          -i "$SCRATCH/$what.parquet" -o "$SCRATCH/scored-$what.parquet" --json
        fields=$(json_fields "kiln predict" "$(tr -d '\n' <<<"$T_OUT")" outcome.rows outcome.score_seconds outcome.total_seconds)
        read -r a b c <<<"$fields"
        if [[ $what == test ]]; then
          k_te+=("$(fmt '%.0f' "$a / $b")") k_te_all+=("$(fmt '%.0f' "$a / $c")")
        else
          k_1m+=("$(fmt '%.0f' "$a / $b")") k_1m_all+=("$(fmt '%.0f' "$a / $c")")
        fi
      done
      rm -rf "$home"
    fi
  done
  log "scale: LightGBM fit ${l_fit[*]} s, RMSE ${l_rmse[*]}${k_fit:+; kiln fit ${k_fit[*]} s, RMSE ${k_rmse[*]}}"
  local lr lf hr hf best best_name
  lr=$(median "${l_rmse[@]}") lf=$(median "${l_fit[@]}") hr=$(median "${h_rmse[@]}") hf=$(median "${h_fit[@]}")
  if awk "BEGIN { exit !($lr <= $hr) }"; then best=$lr best_name=LightGBM; else best=$hr best_name=HistGradientBoosting; fi
  table='| model | test RMSE | fit s | RMSE ÷ LightGBM | fit ÷ LightGBM | score 502,228 rows (rows/s) | score 1,000,000 rows (rows/s) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |'
  local targets="not measured (KILN_BENCH_PANDAS_ONLY=1)"
  if [[ $PANDAS_ONLY != 1 ]]; then
    local kr kf kte k1m rr fr
    kr=$(median "${k_rmse[@]}") kf=$(median "${k_fit[@]}") kte=$(median "${k_te[@]}") k1m=$(median "${k_1m[@]}")
    rr=$(fmt '%.3f' "$kr / $lr") fr=$(fmt '%.2f' "$kf / $lf")
    table+=$'\n'"| Kiln GBDT (\`kiln train\`, \`kiln predict\`) | $(fmt '%.2f' "$kr") | $(fmt '%.2f' "$kf") | $rr | $fr | $(thousands "$kte") | $(thousands "$k1m") |"
    targets="- RMSE ≤ 1.02 × LightGBM's: $(awk "BEGIN { print ($rr <= 1.02 ? \"**met**\" : \"**not met**\") }") (ratio $rr)
- fit ≤ 1.5 × LightGBM's: $(awk "BEGIN { print ($fr <= 1.5 ? \"**met**\" : \"**not met**\") }") (ratio $fr)
- scoring rows/s ≥ LightGBM predict's: $(awk "BEGIN { print ($kte >= $(median "${l_te[@]}") && $k1m >= $(median "${l_1m[@]}") ? \"**met**\" : \"**not met**\") }") (test $(fmt '%.2f' "$kte / $(median "${l_te[@]}")")×, 1M $(fmt '%.2f' "$k1m / $(median "${l_1m[@]}")")×)
- Kiln end to end (read + validate the Parquet file, score, write Parquet): $(thousands "$(median "${k_te_all[@]}")") rows/s on the test rows, $(thousands "$(median "${k_1m_all[@]}")") rows/s on 1M rows"
  fi
  table+=$'\n'"| LightGBM (defaults) | $(fmt '%.2f' "$lr") | $(fmt '%.2f' "$lf") | 1.000 | 1.00 | $(thousands "$(median "${l_te[@]}")") | $(thousands "$(median "${l_1m[@]}")") |"
  table+=$'\n'"| HistGradientBoosting (defaults) | $(fmt '%.2f' "$hr") | $(fmt '%.2f' "$hf") | $(fmt '%.3f' "$hr / $lr") | $(fmt '%.2f' "$hf / $lf") | — | — |"
  text="Targets:
$targets

Median of $REPEAT run(s), baselines and Kiln alternating. Data: \`flights-3m.parquet\`, target \`delay\`;
train: date < 2001-06-01 (2,497,772 rows), test: the rest (502,228 rows). Better baseline RMSE: $best_name.
Features on both sides: hour, day of week, month, day of year, is-weekend (from \`date\`), distance,
origin and destination (categorical). Baselines' fit: the \`fit\` call on features prepared by pandas;
their scoring: \`predict\` on prepared features (fastest of 3). Kiln: fit = feature pipeline + trees
(the run's recorded timings); scoring = pipeline + trees on the rows read from the file."
  versions="- kiln: $("$KILN" --version 2>/dev/null | head -n1 || echo 'not measured') ($KILN)"
  versions+=$'\n'"- python: $(py_versions pandas numpy lightgbm scikit-learn)"
  report scale "$table" "$text" "$versions"
}

# drift: `kiln data diff --drift` against Evidently's DataDriftTable + DatasetDriftMetric
# (bench/python/drift_evidently.py) on the bundled bike rows of 2011 and 2012, each resampled
# to KILN_BENCH_DRIFT_ROWS (default 1,000,000) rows. Both sides must give the same per-column
# verdicts; the run stops if they do not.
scenario_drift() {
  local n=${KILN_BENCH_DRIFT_ROWS:-1000000} csv=$REPO_DIR/examples/bikeshare/data/bike-rental-dataset.csv.gz
  local dir=$SCRATCH/drift home=$SCRATCH/drift-home i table=$TABLE_HEADER
  local -a e_s e_kib e_report k_s k_kib
  mkdir -p "$dir" "$home"
  log "drift: resampling $n rows of 2011 and of 2012"
  "$BENCH_PY" "$BENCH_DIR/python/make_drift_data.py" "$csv" "$n" "$dir" || die "could not write the drift data"
  log "drift: ingesting both into a Kiln home (not timed)"
  "$KILN" --home "$home" data add "$dir/reference.csv" --dataset bikes -q >"$LOG_DIR/drift-ingest.log" 2>&1 ||
    die "kiln data add failed (log: $LOG_DIR/drift-ingest.log)"
  "$KILN" --home "$home" data add "$dir/current.csv" --dataset bikes -q >>"$LOG_DIR/drift-ingest.log" 2>&1 ||
    die "kiln data add failed (log: $LOG_DIR/drift-ingest.log)"
  local e_json k_json
  for ((i = 1; i <= REPEAT; i++)); do
    log "drift: run $i/$REPEAT evidently"
    timed "drift-evidently-$i" "$BENCH_PY" "$BENCH_DIR/python/drift_evidently.py" "$dir/reference.csv" "$dir/current.csv"
    e_s+=("$T_S") e_kib+=("$T_KIB") e_json=$T_OUT
    e_report+=("$(json_fields "drift_evidently.py" "$T_OUT" seconds)")
    log "drift: run $i/$REPEAT kiln"
    timed "drift-kiln-$i" "$KILN" --home "$home" data diff bikes@1 bikes@2 --drift --json
    k_s+=("$T_S") k_kib+=("$T_KIB") k_json=$T_OUT
  done
  local verdicts
  verdicts=$("$BENCH_PY" - "$e_json" "$k_json" <<'PY'
import json, sys
e, k = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ours = {c["name"]: c["drift"] for c in k["drift"]["columns"] if c["drift"]}
theirs = e["columns"]
diff = [n for n in theirs if n not in ours or ours[n]["drifted"] != theirs[n]["drifted"]]
diff += [n for n in ours if n not in theirs]
if diff:
    sys.exit("drift verdicts differ on: " + ", ".join(sorted(diff)))
drifted = sorted(n for n in ours if ours[n]["drifted"])
worst = max(abs(ours[n]["score"] - theirs[n]["score"]) for n in ours)
print(f"{len(ours)} columns, the same verdicts (drifted: {', '.join(drifted) or 'none'}); "
      f"dataset drift: Evidently {e['dataset_drift']}, Kiln {k['drift']['dataset']['drifted']}; "
      f"largest score difference {worst:.1e}")
PY
) || die "Kiln and Evidently disagree: $verdicts"
  table+=$'\n'$(row drift "bike 2011 vs 2012, $(thousands "$n") rows each" "$((2 * n))" \
    "$(median "${e_s[@]}")" "$(median "${k_s[@]}")" "$(median "${e_kib[@]}")" "$(median "${k_kib[@]}")")
  report drift "$table" "Median of $REPEAT run(s) each, Evidently and Kiln alternating; wall time and peak RSS of the whole process.
Evidently (\`bench/python/drift_evidently.py\`): pandas reads the two CSV files, then DataDriftTable +
DatasetDriftMetric over every column but the date; the report alone took $(fmt '%.2f' "$(median "${e_report[@]}")") s
(speed-up against it: $(fmt '%.1f' "$(median "${e_report[@]}") / $(median "${k_s[@]}")")×).
Kiln: \`kiln data diff bikes@1 bikes@2 --drift --json\` on the two versions already ingested: reads both
Parquet snapshots, the profile diff, exact summaries and every column's test.
Verdicts: $verdicts." "- kiln: $("$KILN" --version 2>/dev/null | head -n1 || true) ($KILN)
- python: $(py_versions evidently pandas scipy numpy)"
}

# serve: online prediction over HTTP, one row per request, on loopback.
# Side by side: the Python service people build today (FastAPI + uvicorn, one
# worker, a LightGBM model of the bike data: bench/python/serve_fastapi.py),
# the ceiling (bench/ceiling: axum + tokio parsing the JSON body and answering
# a constant), and `kiln serve` on the quickstart project, with its prediction
# log on (the default) and off. Each server is started, polled until its first
# 200 on the predict endpoint (start-to-first-prediction), checked for
# readiness, warmed up with wrk, then measured with wrk (2 threads, 64
# connections, the same one-row body); peak and end RSS come from
# /proc/PID/status. Any non-2xx answer or socket error stops the run.

SERVE_SECONDS=${KILN_BENCH_SERVE_SECONDS:-15}
SERVE_WARMUP=${KILN_BENCH_SERVE_WARMUP:-3}
SERVE_START_TIMEOUT=${KILN_BENCH_SERVE_START_TIMEOUT:-120}
# The two on ÷ off ratios (prediction log, live monitoring) differ by a few percent, less than
# one run differs from the next on this machine: they are judged on the median of this many
# rounds of the three Kiln configurations, each round in a rotated order, each run of
# KILN_BENCH_SERVE_ROUND_SECONDS on a fresh copy of the project.
SERVE_ROUNDS=${KILN_BENCH_SERVE_ROUNDS:-5}
SERVE_ROUND_SECONDS=${KILN_BENCH_SERVE_ROUND_SECONDS:-8}
SERVE_PATH=/v1/models/bikes/predict
CHILD_PIDS=()

SERVE_PG_DIR=

# stop_children: stop the servers and wrk runs still running, and a PostgreSQL cluster the
# serve scenario started (the EXIT trap).
stop_children() {
  local pid
  for pid in "${CHILD_PIDS[@]}"; do stop_server "$pid"; done
  CHILD_PIDS=()
  if [[ -n $SERVE_PG_DIR ]]; then "$REPO_DIR/.ci/postgres.sh" stop "$SERVE_PG_DIR" || true; fi
}

# forget_child PID: take PID off CHILD_PIDS (it has ended).
forget_child() {
  local -a left=()
  local p
  for p in "${CHILD_PIDS[@]}"; do [[ $p == "$1" ]] || left+=("$p"); done
  CHILD_PIDS=("${left[@]}")
}

# run_child LOG CMD...: run CMD (output to LOG) in the background and wait for
# it: bash runs a trap only once its foreground command ends, but interrupts
# a `wait` at once, so an interrupted run stops without waiting for wrk.
run_child() {
  local log=$1 pid rc=0
  shift
  "$@" >"$log" 2>&1 &
  pid=$!
  CHILD_PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget_child "$pid"
  return "$rc"
}

# stop_server PID: SIGTERM, then SIGKILL after 5 s.
stop_server() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The ceiling binary: KILN_BENCH_CEILING_BIN, or bench/ceiling built here
# (release, --locked) into ${CARGO_TARGET_DIR:-bench/ceiling/target}.
resolve_ceiling() {
  local target
  if [[ -n ${KILN_BENCH_CEILING_BIN:-} ]]; then
    CEILING=$KILN_BENCH_CEILING_BIN
    [[ $CEILING == /* ]] || CEILING=$PWD/$CEILING
    [[ -x $CEILING ]] || die "KILN_BENCH_CEILING_BIN=$CEILING is not an executable file"
    return
  fi
  command -v cargo >/dev/null ||
    die "cargo is needed to build the serve ceiling (bench/ceiling), or set KILN_BENCH_CEILING_BIN"
  target=${CARGO_TARGET_DIR:-$BENCH_DIR/ceiling/target}
  [[ $target == /* ]] || target=$PWD/$target
  CEILING=$target/release/ceiling
}

build_ceiling() {
  [[ -z ${KILN_BENCH_CEILING_BIN:-} ]] || return 0
  log "serve: building the ceiling (bench/ceiling, cargo build --release --locked)"
  CARGO_TARGET_DIR=${CEILING%/release/ceiling} cargo build --release --locked \
    --manifest-path "$BENCH_DIR/ceiling/Cargo.toml" >"$LOG_DIR/serve-ceiling-build.log" 2>&1 || {
    tail -n 20 "$LOG_DIR/serve-ceiling-build.log" >&2
    die "could not build bench/ceiling (log: $LOG_DIR/serve-ceiling-build.log)"
  }
  [[ -x $CEILING ]] || die "built bench/ceiling but found no binary at $CEILING"
}

# kiln_serve_skip: why Kiln is not measured (empty when it is).
kiln_serve_skip() {
  if [[ $PANDAS_ONLY == 1 ]]; then
    echo "KILN_BENCH_PANDAS_ONLY=1"
  elif [[ ! -f $KILN || ! -x $KILN ]]; then
    echo "no kiln binary at $KILN"
  elif ! "$KILN" serve --help >/dev/null 2>&1; then
    echo "\`$KILN serve --help\` fails: this kiln has no serve command"
  fi
}

# serve_one NAME DIR CMD...: start CMD in DIR (its stdout and stderr to the
# log), measure it, stop it. Sets S_RPS S_P50_US S_P99_US S_HWM_KIB S_RSS_KIB S_ANON_KIB S_FILE_KIB
# S_FIRST_S S_VALUE, and S_CPU_US / S_SRV_CPU_US / S_IDLE (the machine's busy CPU and the
# server's CPU per request in µs, and the machine's idle share, over the measured wrk run).
# The caller's CMD gets the port from $PORT's value at
# call time, so pick it first: PORT=$(free_port); serve_one ... --port "$PORT".
serve_one() {
  local name=$1 dir=$2; shift 2
  local url=http://127.0.0.1:$PORT log=$LOG_DIR/serve-$name.log code t0 pid line f
  local wlog=$LOG_DIR/serve-$name-wrk.log
  log "serve: $name: starting ($*)"
  t0=$EPOCHREALTIME
  (cd "$dir" && exec "$@") >"$log" 2>&1 &
  pid=$!
  CHILD_PIDS+=("$pid")
  # Start to first prediction: POST the body every 5 ms until a 200.
  while :; do
    code=$(curl -s -o "$SCRATCH/serve-first.json" -w '%{http_code}' --max-time 10 \
      -H 'Content-Type: application/json' --data-binary "@$SERVE_BODY" "$url$SERVE_PATH") || true
    [[ $code == 200 ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "serve: $name exited before answering a prediction (log: $log)"
    fi
    if ((${EPOCHREALTIME%.*} - ${t0%.*} > SERVE_START_TIMEOUT)); then
      tail -n 20 "$log" >&2
      die "serve: $name gave no 200 on POST $SERVE_PATH within $SERVE_START_TIMEOUT s (last status: ${code:-none}; log: $log)"
    fi
    sleep 0.005
  done
  S_FIRST_S=$(fmt '%.3f' "$EPOCHREALTIME - $t0")
  S_VALUE=$("$BENCH_PY" - "$SCRATCH/serve-first.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    d = json.loads(text)
    p = d["predictions"]
    assert isinstance(p, list) and len(p) == 1, "predictions is not a list of one"
    v = p[0]["value"]
    assert isinstance(v, (int, float)) and not isinstance(v, bool), "value is not a number"
    assert d["model"] == "bikes", "model is not \"bikes\""
    assert isinstance(d["version"], int), "version is not an integer"
except (ValueError, KeyError, TypeError, AssertionError) as e:
    sys.exit(f"unexpected prediction response ({e!r}): {text[:300]}")
print(v)
PY
  ) || die "serve: $name: the first prediction's answer is not {\"predictions\": [{\"value\": X}], \"model\": \"bikes\", \"version\": N}"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/v2/health/ready") || true
  [[ $code == 200 ]] || die "serve: $name: GET /v2/health/ready answered ${code:-nothing}, not 200, after a successful prediction"
  log "serve: $name: first prediction after $S_FIRST_S s (value $S_VALUE); warm-up ${SERVE_WARMUP} s, then ${SERVE_SECONDS} s of wrk"

  local -a wrk_cmd=(wrk -t2 -c64 --timeout 30s -s "$BENCH_DIR/wrk/predict.lua")
  run_child "$LOG_DIR/serve-$name-warmup.log" env KILN_BENCH_BODY="$SERVE_BODY" \
    "${wrk_cmd[@]}" -d"${SERVE_WARMUP}s" "$url$SERVE_PATH" ||
    die "serve: $name: wrk warm-up failed (log: $LOG_DIR/serve-$name-warmup.log)"
  local busy0 idle0 srv0 busy1 idle1 srv1 requests
  busy0=$(cpu_busy_ticks) idle0=$(cpu_idle_ticks) srv0=$(proc_ticks "$pid")
  run_child "$wlog" env KILN_BENCH_BODY="$SERVE_BODY" \
    "${wrk_cmd[@]}" -d"${SERVE_SECONDS}s" --latency "$url$SERVE_PATH" ||
    die "serve: $name: wrk failed (log: $wlog)"
  kill -0 "$pid" 2>/dev/null || die "serve: $name died during the measurement (log: $log)"
  busy1=$(cpu_busy_ticks) idle1=$(cpu_idle_ticks) srv1=$(proc_ticks "$pid")
  S_HWM_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  S_RSS_KIB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  S_ANON_KIB=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
  S_FILE_KIB=$(awk '/^RssFile:/ { print $2 }' "/proc/$pid/status")
  line=$(grep '^kiln-bench: ' "$wlog" | tail -n 1) || die "serve: $name: no result line from wrk (log: $wlog)"
  local errors="" e
  for f in connect read write status timeout; do
    e=$(wrk_field "$f" "$line")
    [[ $e == 0 ]] || errors+=" $f=$e"
  done
  if [[ -n $errors ]]; then
    cat "$wlog" >&2
    die "serve: $name: wrk saw errors (status = answers >= 400):$errors (log: $wlog, server log: $log)"
  fi
  S_RPS=$(wrk_field rps "$line") S_P50_US=$(wrk_field p50_us "$line") S_P99_US=$(wrk_field p99_us "$line")
  requests=$(wrk_field requests "$line")
  S_CPU_US=$(fmt '%.1f' "($busy1 - $busy0) * 1000000 / $CLK_TCK / ($requests > 0 ? $requests : 1)")
  S_SRV_CPU_US=$(fmt '%.1f' "($srv1 - $srv0) * 1000000 / $CLK_TCK / ($requests > 0 ? $requests : 1)")
  S_IDLE=$(fmt '%.3f' "($idle1 - $idle0) / (($busy1 - $busy0) + ($idle1 - $idle0) > 0 ? ($busy1 - $busy0) + ($idle1 - $idle0) : 1)")
  log "serve: $name: $S_RPS req/s, p50 $S_P50_US us, p99 $S_P99_US us, RSS peak $S_HWM_KIB KiB, end $S_RSS_KIB KiB ($S_ANON_KIB anonymous, $S_FILE_KIB file); CPU per request $S_CPU_US us (server $S_SRV_CPU_US us), idle $S_IDLE"
  stop_server "$pid"
  forget_child "$pid"
}

# cpu_busy_ticks: the machine's busy CPU time so far (user, nice, system, irq, softirq; not
# idle, iowait or steal, the time a virtual machine's host gave to others), in clock ticks.
cpu_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# cpu_idle_ticks: the machine's idle and iowait time so far, in clock ticks.
cpu_idle_ticks() { awk '/^cpu / { print $5 + $6; exit }' /proc/stat; }
# proc_ticks PID: a process's user and system CPU time so far, in clock ticks.
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# wrk_field NAME LINE: the value of NAME=VALUE in predict.lua's result line
wrk_field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# serve_row LABEL: a table line from the S_* of the last serve_one
serve_row() {
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(thousands "$(fmt '%.0f' "$S_RPS")")" \
    "$(fmt '%.2f' "$S_P50_US / 1000")" "$(fmt '%.2f' "$S_P99_US / 1000")" \
    "$(fmt '%.1f' "$S_HWM_KIB / 1024")" \
    "$(fmt '%.1f' "$S_RSS_KIB / 1024") ($(fmt '%.1f' "$S_ANON_KIB / 1024") + $(fmt '%.1f' "$S_FILE_KIB / 1024"))" "$S_FIRST_S" \
    "$(fmt '%.0f' "$S_CPU_US") ($(fmt '%.0f' "$S_SRV_CPU_US"))"
}

# serve_target LABEL RATIO_EXPR FORMAT OP BOUND: one line of the targets, judged on
# the ratio as printed
serve_target() {
  local ratio
  ratio=$(fmt "$3" "$2")
  echo "- $1: $(awk "BEGIN { print ($ratio $4 $5 ? \"**met**\" : \"**not met**\") }") (ratio $ratio)"
}

scenario_serve() {
  [[ $SERVE_SECONDS =~ ^[1-9][0-9]*$ ]] || die "KILN_BENCH_SERVE_SECONDS must be a positive integer, not '$SERVE_SECONDS'"
  [[ $SERVE_WARMUP =~ ^[1-9][0-9]*$ ]] || die "KILN_BENCH_SERVE_WARMUP must be a positive integer, not '$SERVE_WARMUP'"
  [[ $SERVE_ROUNDS =~ ^[0-9]+$ ]] || die "KILN_BENCH_SERVE_ROUNDS must be a whole number, not '$SERVE_ROUNDS'"
  [[ $SERVE_ROUND_SECONDS =~ ^[1-9][0-9]*$ ]] || die "KILN_BENCH_SERVE_ROUND_SECONDS must be a positive integer, not '$SERVE_ROUND_SECONDS'"
  local csv=$REPO_DIR/examples/bikeshare/data/bike-rental-dataset.csv.gz skip project table text versions
  local loadavg uvicorn_impl
  # What uvicorn picks by itself (loop="auto", http="auto"): uvloop and httptools when installed.
  uvicorn_impl=$("$BENCH_PY" -c 'import importlib.util as u
print(("uvloop" if u.find_spec("uvloop") else "asyncio") + ", " + ("httptools" if u.find_spec("httptools") else "h11"))')
  [[ -f $csv ]] || die "bike-rental data missing: $csv (it is part of the repo)"
  build_ceiling
  loadavg=$(cut -d' ' -f1-3 /proc/loadavg)

  # One realistic row, the same body for every server: the first complete row
  # of 2012-07-01 (the first day after the training period) in file order,
  # the file's columns minus the target and its parts, numbers as numbers.
  SERVE_BODY=$SCRATCH/serve-body.json
  "$BENCH_PY" - "$csv" "$SERVE_BODY" <<'PY' || die "could not write the request body"
import csv, gzip, json, sys
with gzip.open(sys.argv[1], "rt", newline="") as f:
    row = next(r for r in csv.DictReader(f) if r["dteday"] == "2012-07-01" and all(r.values()))
out = {}
for k, v in row.items():
    if k in ("cnt", "casual", "registered", "instant"):
        continue
    try:
        out[k] = v if k == "dteday" else float(v)
    except ValueError:
        out[k] = v
with open(sys.argv[2], "w") as f:
    json.dump({"instances": [out]}, f)
PY
  log "serve: request body: $(cat "$SERVE_BODY")"

  local c_rps c_p99 f_rps f_p99 f_hwm f_value
  local k_rps k_p99 k_hwm k_value n_rps m_rps p_rps=
  local rounds_text="" log_ratio="" mon_ratio=""
  table='| server | requests/s | p50 ms | p99 ms | peak RSS MiB | end RSS MiB (anonymous + file) | start to first prediction s | CPU µs/request: machine (server) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'

  skip=$(kiln_serve_skip)
  if [[ -n $skip ]]; then
    log "serve: Kiln not measured: $skip"
    table+=$'\n'"| Kiln \`kiln serve\` (prediction log on) | — | — | — | — | — | — | — |"
    table+=$'\n'"| Kiln \`kiln serve --no-live-monitoring\` | — | — | — | — | — | — | — |"
    table+=$'\n'"| Kiln \`kiln serve --no-prediction-log\` | — | — | — | — | — | — | — |"
  else
    project=$SCRATCH/serve-project
    log "serve: preparing the Kiln project: $KILN quickstart --dir $project"
    "$KILN" quickstart --no-replay --dir "$project" >"$LOG_DIR/serve-kiln-quickstart.log" 2>&1 ||
      die "kiln quickstart failed (log: $LOG_DIR/serve-kiln-quickstart.log)"
    (cd "$project" && "$KILN" models alias set production bikes@1 --reason bench) \
      >>"$LOG_DIR/serve-kiln-quickstart.log" 2>&1 ||
      die "kiln models alias set failed (log: $LOG_DIR/serve-kiln-quickstart.log)"
    # Every Kiln run starts from this copy: an empty prediction log, whatever ran before.
    local pristine=$SCRATCH/serve-project-pristine
    cp -a "$project" "$pristine"
    # kiln_run NAME FLAGS...: serve_one on a fresh copy of the project.
    kiln_run() {
      local name=$1; shift
      rm -rf "$project" && cp -a "$pristine" "$project"
      PORT=$(free_port)
      serve_one "$name" "$project" "$KILN" serve --addr "127.0.0.1:$PORT" "$@"
    }
    kiln_run kiln
    table+=$'\n'$(serve_row "Kiln \`kiln serve\` (prediction log on)")
    k_rps=$S_RPS k_p99=$S_P99_US k_hwm=$S_HWM_KIB k_value=$S_VALUE
    kiln_run kiln-no-monitor --no-live-monitoring
    table+=$'\n'$(serve_row "Kiln \`kiln serve --no-live-monitoring\` (log on)")
    m_rps=$S_RPS
    kiln_run kiln-no-log --no-prediction-log
    table+=$'\n'$(serve_row "Kiln \`kiln serve --no-prediction-log\`")
    n_rps=$S_RPS
    # Rounds for the on ÷ off ratios: the three configurations in a rotated order each round.
    if ((SERVE_ROUNDS > 0)); then
      local r i c on off none logs=() mons=() keep_seconds=$SERVE_SECONDS
      local configs=(on no-monitor no-log)
      SERVE_SECONDS=$SERVE_ROUND_SECONDS
      rounds_text="| round | order | log on | monitoring off | log off | log on ÷ off | monitoring on ÷ off |
| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
      for ((r = 1; r <= SERVE_ROUNDS; r++)); do
        local order=()
        for ((i = 0; i < 3; i++)); do
          c=${configs[$(((r - 1 + i) % 3))]}
          order+=("$c")
          case $c in
            on) kiln_run "kiln-round$r"; on=$S_RPS ;;
            no-monitor) kiln_run "kiln-no-monitor-round$r" --no-live-monitoring; off=$S_RPS ;;
            no-log) kiln_run "kiln-no-log-round$r" --no-prediction-log; none=$S_RPS ;;
          esac
        done
        logs+=("$(fmt '%.4f' "$on / $none")") mons+=("$(fmt '%.4f' "$on / $off")")
        rounds_text+=$'\n'"| $r | ${order[*]} | $(thousands "$(fmt '%.0f' "$on")") | $(thousands "$(fmt '%.0f' "$off")") | $(thousands "$(fmt '%.0f' "$none")") | $(fmt '%.3f' "$on / $none") | $(fmt '%.3f' "$on / $off") |"
      done
      SERVE_SECONDS=$keep_seconds
      log_ratio=$(median "${logs[@]}") mon_ratio=$(median "${mons[@]}")
    fi
    # The same server with its metadata, and so its prediction log, on PostgreSQL: a throwaway
    # cluster (.ci/postgres.sh) with its production settings (fsync on).
    if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/initdb ]]; then
      local pg_url project_pg=$SCRATCH/serve-project-pg
      # Outside $SCRATCH: the server runs as the postgres user, who cannot enter a private folder.
      SERVE_PG_DIR=$(mktemp -u /tmp/kiln-bench-pg.XXXXXX)
      pg_url=$("$REPO_DIR/.ci/postgres.sh" start "$SERVE_PG_DIR" | sed -n 's/^export KILN_TEST_POSTGRES_URL=//p')
      [[ -n $pg_url ]] || die "serve: could not start PostgreSQL (.ci/postgres.sh)"
      log "serve: PostgreSQL at $pg_url; preparing the same project with its metadata there"
      KILN_DB=$pg_url "$KILN" quickstart --no-replay --dir "$project_pg" >"$LOG_DIR/serve-kiln-pg-quickstart.log" 2>&1 ||
        die "kiln quickstart on PostgreSQL failed (log: $LOG_DIR/serve-kiln-pg-quickstart.log)"
      (cd "$project_pg" && KILN_DB=$pg_url "$KILN" models alias set production bikes@1 --reason bench) \
        >>"$LOG_DIR/serve-kiln-pg-quickstart.log" 2>&1 ||
        die "kiln models alias set failed (log: $LOG_DIR/serve-kiln-pg-quickstart.log)"
      PORT=$(free_port)
      serve_one kiln-pg "$project_pg" env KILN_DB="$pg_url" "$KILN" serve --addr "127.0.0.1:$PORT"
      table+=$'\n'$(serve_row "Kiln \`kiln serve\` (prediction log on), metadata on PostgreSQL $("$(pg_config --bindir)/postgres" --version | awk '{print $3}')")
      p_rps=$S_RPS
      "$REPO_DIR/.ci/postgres.sh" stop "$SERVE_PG_DIR"
      SERVE_PG_DIR=
    else
      log "serve: PostgreSQL not measured: no server binaries (apt-get install postgresql-15)"
      table+=$'\n'"| Kiln \`kiln serve\` (prediction log on), metadata on PostgreSQL | — | — | — | — | — | — | — |"
    fi
  fi

  PORT=$(free_port)
  serve_one fastapi "$REPO_DIR" "$BENCH_PY" "$BENCH_DIR/python/serve_fastapi.py" --port "$PORT" --data "$csv"
  table+=$'\n'$(serve_row "FastAPI + uvicorn (1 worker), LightGBM")
  f_rps=$S_RPS f_p99=$S_P99_US f_hwm=$S_HWM_KIB f_value=$S_VALUE

  PORT=$(free_port)
  serve_one ceiling "$BENCH_DIR" "$CEILING" "127.0.0.1:$PORT"
  table+=$'\n'$(serve_row "ceiling: axum + tokio, JSON parsed, constant answer")
  c_rps=$S_RPS c_p99=$S_P99_US

  local targets
  if [[ -n $skip ]]; then
    targets="- Kiln not measured ($skip): no target judged"
  else
    targets=$(
      serve_target "Kiln (log on) ÷ ceiling throughput ≥ 0.5" "$k_rps / $c_rps" '%.2f' '>=' 0.5
      serve_target "Kiln p99 ÷ ceiling p99 ≤ 2" "$k_p99 / ($c_p99 > 0 ? $c_p99 : 1)" '%.2f' '<=' 2
      serve_target "Kiln ÷ FastAPI throughput ≥ 100" "$k_rps / $f_rps" '%.1f' '>=' 100
      serve_target "FastAPI p99 ÷ Kiln p99 ≥ 50" "$f_p99 / ($k_p99 > 0 ? $k_p99 : 1)" '%.1f' '>=' 50
      if [[ -n $log_ratio ]]; then
        serve_target "log on ÷ log off throughput ≥ 0.9 (median of $SERVE_ROUNDS rounds; the table's runs: $(fmt '%.2f' "$k_rps / $n_rps"))" "$log_ratio" '%.2f' '>=' 0.9
        serve_target "live monitoring on ÷ off (log on) throughput ≥ 0.95 (median of $SERVE_ROUNDS rounds; the table's runs: $(fmt '%.2f' "$k_rps / $m_rps"))" "$mon_ratio" '%.2f' '>=' 0.95
      else
        serve_target "log on ÷ log off throughput ≥ 0.9" "$k_rps / $n_rps" '%.2f' '>=' 0.9
        serve_target "live monitoring on ÷ off (log on) throughput ≥ 0.95" "$k_rps / $m_rps" '%.2f' '>=' 0.95
      fi
      [[ -z $p_rps ]] || serve_target "log on PostgreSQL ÷ log on SQLite throughput ≥ 0.8" "$p_rps / $k_rps" '%.2f' '>=' 0.8
      serve_target "FastAPI peak RSS ÷ Kiln peak RSS ≥ 5" "$f_hwm / $k_hwm" '%.1f' '>=' 5
    )
  fi

  text="Targets (Kiln = \`kiln serve\` with its prediction log and live monitoring on, the defaults; RSS = peak):
$targets
- for scale: FastAPI ÷ ceiling throughput $(fmt '%.4f' "$f_rps / $c_rps")
${rounds_text:+
Rounds for the on ÷ off ratios (${SERVE_ROUND_SECONDS} s of wrk per run after the same warm-up, each run on a fresh
copy of the project, the order rotated each round; requests/s):

$rounds_text
}
One measurement per server in the table (KILN_BENCH_REPEAT is not used), one after the other on
127.0.0.1, each Kiln run on a fresh copy of the same project (an empty prediction log):
wrk, 2 threads, 64 connections, ${SERVE_SECONDS} s (after a ${SERVE_WARMUP} s warm-up on the same process), each
request \`POST $SERVE_PATH\` with the same one-row body: \`$(cat "$SERVE_BODY")\`.
p50 / p99: wrk's latency percentiles (\`--latency\`, closed loop: 64 requests in flight). Any answer
≥ 400 or socket error (timeout 30 s) stops the run. RSS: VmHWM (peak) and VmRSS (end, after the
load) of the server process, from /proc/PID/status; the end RSS split into RssAnon (heap, stacks,
written data) and RssFile (pages of the executable and libraries, clean and shared). CPU µs/request: the machine's busy CPU time over the
measured run (user, system, irq; not idle, iowait or steal), and in brackets the server process's own
(utime + stime), divided by the requests answered. Start to first prediction: from just before the
process is spawned to the return of the first \`curl\` that got a 200 from the predict endpoint,
retried every 5 ms (each try also starts a curl process: about 10 ms resolution); it includes
loading (Kiln) or training (FastAPI, LightGBM on the 13,003 rows before 2012-07-01) the model.
wrk runs on the same cores as the server. Load average before the runs: $loadavg.
- FastAPI: \`bench/python/serve_fastapi.py\`: one uvicorn worker (uvicorn's default; event loop and HTTP
  parser: $uvicorn_impl; access log off), pydantic validation of the row, the features of \`train_bike.py\`, LightGBM
  (defaults) \`predict\` with num_threads=1; prediction for the row: $(fmt '%.2f' "$f_value")"
  [[ -n $skip ]] || text+="
- Kiln: \`kiln quickstart\` project, bikes@1 as production; prediction for the row: $(fmt '%.2f' "$k_value")"
  text+="
- ceiling: \`bench/ceiling\` (axum 0.8 + tokio, multi-threaded runtime): reads the body, parses it into a
  serde_json::Value, answers a constant of the same shape. No model: the most an HTTP JSON server can do."

  versions="- kiln: $([[ -n $skip ]] && echo "not measured ($skip)" || echo "$("$KILN" --version 2>/dev/null | head -n1) ($KILN)")"
  versions+=$'\n'"- python: $(py_versions fastapi uvicorn pydantic uvloop httptools pandas lightgbm)"
  versions+=$'\n'"- ceiling: $(awk '/^name = "(axum|tokio|serde_json)"$/ { n = $3; getline; printf "%s%s %s", sep, n, $3; sep = ", " }' "$BENCH_DIR/ceiling/Cargo.lock" | tr -d '"'); $(rustc --version 2>/dev/null || echo 'prebuilt')"
  versions+=$'\n'"- load generator: $({ wrk -v 2>&1 || true; } | head -n1 | cut -d' ' -f1-2)"
  report serve "$table" "$text" "$versions"
}

# Later: scenario_drift (Evidently), with its bench/python/ baseline.

# ---------------------------------------------------------------- main

scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(ingest)
for s in "${scenarios[@]}"; do
  declare -F "scenario_$s" >/dev/null ||
    die "unknown scenario '$s' (known: $(declare -F | sed -n 's/^declare -f scenario_//p' | paste -sd' '))"
done
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "KILN_BENCH_REPEAT must be a positive integer, not '$REPEAT'"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian: apt-get install time)"
# What each scenario needs, checked before the (slow) setup: its Kiln binary,
# and for ingest the flights data (train uses the data in the repo).
fetch=0
for s in "${scenarios[@]}"; do
  case $s in
    ingest | scale) resolve_kiln; fetch=1 ;;
    drift) resolve_kiln ;;
    train) resolve_train_bin ;;
    serve)
      # Kiln is optional here: skipped, with the reason, when it cannot serve.
      kiln_path
      resolve_ceiling
      for tool in wrk curl python3; do
        command -v "$tool" >/dev/null || die "serve needs $tool on PATH (Debian: apt-get install $tool)"
      done
      ;;
  esac
done

"$BENCH_DIR/setup.sh"
[[ $fetch == 0 ]] || "$BENCH_DIR/fetch-data.sh"

mkdir -p "$RESULTS_DIR" "$LOG_DIR"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'stop_children; rm -rf "$SCRATCH"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for s in "${scenarios[@]}"; do
  "scenario_$s"
done
