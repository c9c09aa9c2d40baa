#!/usr/bin/env bash
# Regenerates every asset of docs/REPORT.md from real runs of `kiln quickstart`:
#
#   docs/quickstart-run.json         the summary of one run (`kiln quickstart --json`)
#   docs/img/dashboard.png           the live dashboard after the replay (headless Chromium)
#   docs/img/dashboard-top.png       its top part
#   docs/img/monitor-report.html     `kiln monitor report` of the first model over 2012 (7-day windows)
#   docs/img/monitor-report.png      a screenshot of that report
#   docs/img/*.svg                   the plots, drawn from the JSON by docs/make_assets.py
#   docs/demo.cast                   an asciinema v2 recording of `kiln quickstart --exit`
#
# Each quickstart replays 2012 in about two minutes and keeps both cores busy; the script runs
# them one after the other (about five minutes in all). Needs: a release build of kiln
# (KILN=path, default: target/release/kiln, else `kiln` on PATH), python3, chromium, curl,
# script (util-linux), and asciinema 2.4.0 (ASCIINEMA=path; `pip install asciinema==2.4.0`).
# OUT=DIR writes everything there instead of docs/ (to check the script without touching docs/).
# PORT (default 18080) is where the first quickstart serves its dashboard.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$ROOT/docs}"
PORT="${PORT:-18080}"
KILN="${KILN:-$ROOT/target/release/kiln}"
[ -x "$KILN" ] || KILN="$(command -v kiln)"
ASCIINEMA="${ASCIINEMA:-asciinema}"
CHROMIUM="${CHROMIUM:-chromium}"
mkdir -p "$OUT/img"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
echo "kiln: $KILN; output: $OUT; scratch: $WORK"

shot() { # URL FILE WIDTHxHEIGHT
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000 \
    --window-size="${3/x/,}" --screenshot="$2" "$1" 2>/dev/null
}

# 1. A quickstart that keeps serving after its summary (no --exit): the JSON summary, then
#    the dashboard and the monitoring report of the same run.
cd "$WORK"
"$KILN" quickstart --addr "127.0.0.1:$PORT" --json > run.json 2> run.stderr &
QS=$!
trap 'kill -INT $QS 2>/dev/null || true' EXIT
until python3 -c 'import json,sys; json.load(open(sys.argv[1]))' run.json 2>/dev/null; do
  kill -0 $QS 2>/dev/null || { echo "quickstart ended early:"; cat run.stderr; exit 1; }
  sleep 2
done
cp run.json "$OUT/quickstart-run.json"
HOME_DIR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["home"])' run.json)"
sleep 3   # two refreshes of the dashboard's 2-second poll
shot "http://127.0.0.1:$PORT/" "$OUT/img/dashboard.png" 1280x2400
shot "http://127.0.0.1:$PORT/" "$OUT/img/dashboard-top.png" 1280x900
# The first model (bikes@1, trained on 2011) over the weeks it served in 2012.
(cd "$(dirname "$HOME_DIR")" && "$KILN" monitor report --model bikes@1 --home "$HOME_DIR" \
  --from 2012-01-01 --to 2013-01-01 --window 7d --html "$OUT/img/monitor-report.html")
chmod 644 "$OUT/img/monitor-report.html"
shot "file://$OUT/img/monitor-report.html" "$OUT/img/monitor-report.png" 1280x2600
kill -INT $QS
wait $QS || true
trap - EXIT

# 2. The plots, from the JSON summary.
python3 "$ROOT/docs/make_assets.py" "$OUT/quickstart-run.json" "$OUT/img"

# 3. The recording: `kiln quickstart --exit` with its human output, in a fresh folder, on a
#    120x40 terminal (script(1) gives asciinema the terminal it needs).
mkdir -p "$WORK/bin" && ln -sf "$KILN" "$WORK/bin/kiln"
cat > "$WORK/demo.sh" <<EOF
#!/bin/bash
export PATH="$WORK/bin:\$PATH"
cd "\$(mktemp -d)"
printf '\$ kiln quickstart --exit\n'
kiln quickstart --exit
EOF
chmod +x "$WORK/demo.sh"
script -qfc "stty cols 120 rows 40; $ASCIINEMA rec --overwrite -q -c $WORK/demo.sh $OUT/demo.cast" /dev/null < /dev/null > "$WORK/cast.log" 2>&1
head -1 "$OUT/demo.cast"
"$ASCIINEMA" cat "$OUT/demo.cast" | tail -2

ls -la "$OUT/quickstart-run.json" "$OUT/demo.cast" "$OUT/img"
