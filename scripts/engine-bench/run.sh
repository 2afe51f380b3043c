#!/usr/bin/env bash
# Engine benchmark pipeline: traces -> libCacheSim reference -> ringcache-sim -> report.
#
#   scripts/engine-bench/run.sh [--quick] [--force] [--regen] [--policy NAME] [--skip-ours]
#
#   --quick      ~10x smaller traces (traces/quick, out/quick) for a smoke run
#   --force      re-run libCacheSim even if its JSON exists
#   --regen      regenerate traces even if they exist
#   --policy N   candidate for report.py's default-quality check (default: adaptive)
#   --skip-ours  do not build/run ringcache-sim (report on libCacheSim alone)
#
# Outputs (gitignored): out/libcachesim.json (+ .meta.json), out/ringcache.json,
# out/ringcache-sim.log, out/report.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"

QUICK=0 FORCE=0 REGEN=0 SKIP_OURS=0 POLICY=adaptive
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --force) FORCE=1 ;;
    --regen) REGEN=1 ;;
    --skip-ours) SKIP_OURS=1 ;;
    --policy) POLICY="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ $QUICK == 1 ]]; then
  TRACES="$HERE/traces/quick" OUT="$HERE/out/quick" GEN_FLAGS=(--quick) LCS_FLAGS=(--quick)
else
  TRACES="$HERE/traces" OUT="$HERE/out" GEN_FLAGS=() LCS_FLAGS=()
fi
mkdir -p "$OUT"

# Trace names and their mode must match gen_traces.WORKLOADS / run_libcachesim.mode_for.
WORKLOADS=(zipf0.7 zipf0.8 zipf1.0 zipf1.2 scan loop moving varsize)
mode_for() { [[ "$1" == varsize* ]] && echo bytes || echo objects; }

OUR_POLICIES="lru,fifo,lfu,random,ttl,s3fifo,wtinylfu,adaptive,quick_cache,moka"
FRACTIONS="0.001,0.01,0.1"

step_start=0
step() { step_start=$SECONDS; printf "\n== %s\n" "$*" >&2; }
step_done() { echo "   ($(( SECONDS - step_start ))s)" >&2; }

if ! "$PY" -c 'import numpy, libcachesim' 2>/dev/null; then
  step "installing Python deps"
  "$PY" -m pip install -q -r "$HERE/requirements.txt"
  step_done
fi

step "traces -> $TRACES"
[[ $REGEN == 1 ]] && GEN_FLAGS+=(--force)
"$PY" "$HERE/gen_traces.py" "${GEN_FLAGS[@]}" >&2
step_done

LCS_JSON="$OUT/libcachesim.json"
if [[ $FORCE == 1 || $REGEN == 1 || ! -s "$LCS_JSON" ]]; then
  step "libCacheSim -> $LCS_JSON"
  "$PY" "$HERE/run_libcachesim.py" "${LCS_FLAGS[@]}"
  step_done
else
  echo "== libCacheSim: using cached $LCS_JSON (--force to re-run)" >&2
fi

OURS_JSON="$OUT/ringcache.json"
REPORT_INPUTS=("$LCS_JSON")
if [[ $SKIP_OURS == 0 ]]; then
  rm -f "$OURS_JSON"  # never report stale results of an older engine
  SIM=(cargo run -q --release -p ringcache-engine --features compare --bin ringcache-sim --)
  step "building ringcache-sim"
  if (cd "$ROOT" && cargo build -q --release -p ringcache-engine --features compare --bin ringcache-sim); then
    step_done
    step "ringcache-sim -> $OURS_JSON"
    LOG="$OUT/ringcache-sim.log"
    RAW="$(mktemp)"
    : > "$LOG"
    failed=0
    for w in "${WORKLOADS[@]}"; do
      t="$TRACES/$w.oracleGeneral"
      t0=$SECONDS
      # One JSON array per invocation on stdout; diagnostics go to the log.
      if (cd "$ROOT" && "${SIM[@]}" --trace "$t" --format oracle-general --policy "$OUR_POLICIES" \
            --mode "$(mode_for "$w")" --capacity "$FRACTIONS" --json) >> "$RAW" 2>> "$LOG"; then
        echo "   $w: $(( SECONDS - t0 ))s" >&2
      else
        echo "   $w: FAILED (see $LOG)" >&2
        failed=1
      fi
      echo >> "$RAW"
    done
    # Merge the per-trace arrays into one (report.py reads concatenated arrays
    # too, but a single array is friendlier to other tools).
    "$PY" - "$RAW" "$OURS_JSON" <<'PYEOF'
import json, sys
text, dec, pos, rows = open(sys.argv[1]).read(), json.JSONDecoder(), 0, []
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    try:
        obj, pos = dec.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        print(f"   warning: unparsable simulator output ({e}); keeping {len(rows)} rows", file=sys.stderr)
        break
    rows.extend(obj if isinstance(obj, list) else [obj])
json.dump(rows, open(sys.argv[2], "w"), indent=1)
print(f"   merged {len(rows)} rows", file=sys.stderr)
PYEOF
    rm -f "$RAW"
    [[ $failed == 1 ]] && echo "   some simulator runs failed; the report will show n/a for them" >&2
    step_done
  else
    echo "   ringcache-sim does not build yet; reporting libCacheSim only" >&2
  fi
  [[ -s "$OURS_JSON" ]] && REPORT_INPUTS+=("$OURS_JSON")
fi

step "report -> $OUT/report.md"
"$PY" "$HERE/report.py" --policy "$POLICY" "${REPORT_INPUTS[@]}" > "$OUT/report.md"
grep -m1 '^\*\*Checks' "$OUT/report.md" >&2 || true
step_done
