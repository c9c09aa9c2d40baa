#!/usr/bin/env bash
# Fuzzing (fuzz/README.md): builds the cargo-fuzz targets with nightly, replays every input
# in fuzz/regressions/TARGET/ (inputs that once crashed), then fuzzes each target for a
# bounded time. Fails on any crash, hang or memory limit, printing the reproducer's path.
#
#   .ci/fuzz.sh                 60 s per target
#   .ci/fuzz.sh 300             300 s per target
#   .ci/fuzz.sh --long          30 min per target (release checks)
#   .ci/fuzz.sh 60 ingest       only the named targets
#
# Builds go to $HOME/.cache/kiln-fuzz-target (KILN_FUZZ_TARGET_DIR), outside the clone, so
# they are reused; the corpus grown by earlier runs is kept in $HOME/.cache/kiln-fuzz-corpus
# (KILN_FUZZ_CORPUS_DIR) and never written into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=60
TARGETS=()
for arg in "$@"; do
    case "$arg" in
        --long) SECONDS_PER_TARGET=1800 ;;
        ''|*[!0-9]*) TARGETS+=("$arg") ;;
        *) SECONDS_PER_TARGET="$arg" ;;
    esac
done
ALL_TARGETS=(ingest predict_body infer_body model_artifact config)
if [ "${#TARGETS[@]}" -eq 0 ]; then TARGETS=("${ALL_TARGETS[@]}"); fi

# The largest input each target is given (bytes): a few batches of CSV, a request body, a
# small model file, a kiln.toml (the commented template is 16 KiB).
max_len() {
    case "$1" in
        ingest) echo 16384 ;;
        predict_body | infer_body) echo 8192 ;;
        model_artifact) echo 65536 ;;
        config) echo 32768 ;;
        *) echo 4096 ;;
    esac
}

# Never the stable builds' folder (.ci/run exports CARGO_TARGET_DIR): these are nightly,
# sanitizer-instrumented builds.
export CARGO_TARGET_DIR="${KILN_FUZZ_TARGET_DIR:-$HOME/.cache/kiln-fuzz-target}"
CORPUS_ROOT="${KILN_FUZZ_CORPUS_DIR:-$HOME/.cache/kiln-fuzz-corpus}"
export CARGO_TERM_COLOR=never
# Panics abort with a backtrace libFuzzer records as a crash.
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

log() { printf '\n== fuzz: %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

# cargo-fuzz needs a nightly compiler (-Zsanitizer). Without a nightly toolchain (a machine
# whose only toolchain is stable, where none can be fetched), the stable compiler is told to
# accept nightly flags with RUSTC_BOOTSTRAP=1.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    TOOLCHAIN=(+nightly)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
    TOOLCHAIN=()
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

log "build (nightly flags, -O, debug assertions and overflow checks, AddressSanitizer)"
build_started=$(date +%s)
(cd fuzz && cargo "${TOOLCHAIN[@]}" fuzz build -O -a)
echo "fuzz: build took $(($(date +%s) - build_started)) s"

OUT="$(mktemp -d /tmp/kiln-fuzz.XXXXXX)"
failed=()
# Runs a target on the inputs or corpus folders given, with libFuzzer options $EXTRA; on
# failure prints what libFuzzer left behind and records it.
EXTRA=()
run() {
    local target="$1" what="$2"
    shift 2
    local artifacts="$OUT/artifacts/$target/"
    mkdir -p "$artifacts"
    if ! (cd fuzz && cargo "${TOOLCHAIN[@]}" fuzz run -O -a "$target" "$@" -- \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=60 \
        -max_len="$(max_len "$target")" -artifact_prefix="$artifacts" \
        -print_final_stats=1 "${EXTRA[@]}") >"$OUT/$target-$what.log" 2>&1; then
        tail -n 60 "$OUT/$target-$what.log"
        echo "fuzz: $target FAILED ($what); full log: $OUT/$target-$what.log"
        local f
        for f in "$artifacts"*; do
            [ -e "$f" ] || continue
            echo "fuzz: reproducer: $f"
            echo "fuzz:   replay:   (cd fuzz && cargo +nightly fuzz run -O -a $target $f)"
            echo "fuzz:   keep it:  cp $f fuzz/regressions/$target/"
        done
        failed+=("$target ($what)")
        return 1
    fi
}

for target in "${TARGETS[@]}"; do
    inputs=()
    for f in fuzz/regressions/"$target"/* fuzz/corpus/"$target"/*; do
        [ -f "$f" ] && inputs+=("$PWD/$f")
    done
    if [ "${#inputs[@]}" -gt 0 ]; then
        log "$target: replaying ${#inputs[@]} regression and seed inputs"
        run "$target" replay "${inputs[@]}" || continue
        grep -c '^Executed ' "$OUT/$target-replay.log" | sed 's/^/fuzz: inputs executed: /'
    fi
done

for target in "${TARGETS[@]}"; do
    case " ${failed[*]-} " in *" $target ("*) continue ;; esac
    log "$target: fuzzing for $SECONDS_PER_TARGET s"
    corpus="$CORPUS_ROOT/$target"
    mkdir -p "$corpus"
    # Seeds: the kept corpus and the repository's; regressions were replayed above (some,
    # like a decompression bomb, are too slow to be mutated by the thousand).
    dirs=("$corpus")
    if [ -d "fuzz/corpus/$target" ]; then dirs+=("$PWD/fuzz/corpus/$target"); fi
    EXTRA=(-max_total_time="$SECONDS_PER_TARGET")
    if run "$target" fuzz "${dirs[@]}"; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
            "$OUT/$target-fuzz.log" | sed 's/^/fuzz: /'
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
rm -rf "$OUT"
log "done: ${TARGETS[*]}, $SECONDS_PER_TARGET s each, no crash"
