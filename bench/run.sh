#!/usr/bin/env bash
# Kiln benchmarks: Kiln against the Python baselines, measured in the same run.
#
#   bench/run.sh [scenario...]        (default: ingest; known: ingest, train, scale)
#
# Runs setup.sh (venv with the pinned baselines) and, for ingest,
# fetch-data.sh (data from the npm registry), then each scenario. A scenario is a shell function
# `scenario_NAME` below; it measures the baseline and Kiln alternately,
# KILN_BENCH_REPEAT times each, takes medians, prints a Markdown table and
# writes it to bench/results/NAME.md (git-ignored; copy into BENCHMARKS.md by
# hand).
#
#   KILN_BIN               kiln binary (default ${CARGO_TARGET_DIR:-REPO/target}/release/kiln)
#   KILN_TRAIN_BIN         train's Kiln side (default ${CARGO_TARGET_DIR:-REPO/target}/release/examples/bike_train)
#   KILN_BENCH_REPEAT      runs per measurement, median taken (default 3)
#   KILN_BENCH_PANDAS_ONLY 1 = measure only the Python baselines (no Kiln binary needed)
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
print(sys.version.split()[0], *(f"{m} {importlib.import_module(names.get(m, m)).__version__}" for m in sys.argv[1:]))
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

# Later: scenario_serve (FastAPI + uvicorn), scenario_drift (Evidently), each
# with its bench/python/ baseline.

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
    train) resolve_train_bin ;;
  esac
done

"$BENCH_DIR/setup.sh"
[[ $fetch == 0 ]] || "$BENCH_DIR/fetch-data.sh"

mkdir -p "$RESULTS_DIR" "$LOG_DIR"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
for s in "${scenarios[@]}"; do
  "scenario_$s"
done
