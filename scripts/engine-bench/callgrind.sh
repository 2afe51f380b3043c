#!/usr/bin/env bash
# Instructions per get-or-insert on the speed bench's workload, under callgrind.
#
# Run with: scripts/engine-bench/callgrind.sh [cache ...]
#   default caches: adaptive-fused adaptive quick_cache
#   env: WARM (default 2000000) and MEASURED (default 1000000) requests; CACHE=1 adds
#   callgrind's cache simulation (L1 data misses per op, reads + writes; LL 2 MiB as on
#   the bench machine) and takes ~3x longer
#
# Instruction counts are deterministic (same binary, same counts), so they judge a
# change on a shared noisy machine where wall time cannot. Only the measured loop
# (crates/engine/examples/opcount.rs, function `measure`) is counted. Set CARGO_TARGET_DIR
# as for any cargo command. The per-function profile of each run stays in
# ${OUT:-/tmp}/callgrind.<cache>.out (callgrind_annotate it).
set -euo pipefail

cd "$(dirname "$0")/../.."
WARM=${WARM:-2000000}
MEASURED=${MEASURED:-1000000}
OUT=${OUT:-/tmp}
caches=("$@")
[[ ${#caches[@]} -eq 0 ]] && caches=(adaptive-fused adaptive quick_cache)

cargo build -q --release -p ringcache-engine --example opcount
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/examples/opcount"

sim=()
[[ ${CACHE:-0} == 1 ]] && sim=(--cache-sim=yes --LL=2097152,16,64)
printf '%-16s %14s %10s %10s %10s\n' cache instructions 'instr/op' 'D1miss/op' 'hit ratio'
for c in "${caches[@]}"; do
    out="$OUT/callgrind.$c.out"
    line=$(valgrind --tool=callgrind "${sim[@]}" --toggle-collect='*measure*' \
        --callgrind-out-file="$out" "$bin" "$c" "$WARM" "$MEASURED" 2>"$out.log")
    # Event order: Ir [Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw]
    read -r ir d1r d1w < <(grep -E '^(summary|totals):' "$out" | head -1 |
        awk '{print $2, ($6 == "" ? 0 : $6), ($7 == "" ? 0 : $7)}')
    ratio=$(echo "$line" | grep -oE '[0-9.]+ hit ratio' | awk '{print $1}')
    printf '%-16s %14s %10.1f %10.2f %10s\n' "$c" "$ir" "$(echo "$ir / $MEASURED" | bc -l)" \
        "$(echo "($d1r + $d1w) / $MEASURED" | bc -l)" "$ratio"
done
