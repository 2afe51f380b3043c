#!/usr/bin/env bash
# Runs the engine's criterion benches and prints Melem/s per bench.
#
# Run with: scripts/bench-engine.sh [criterion filter or args...]
#   e.g. scripts/bench-engine.sh 'ringcache-(lru|adaptive)'
#
# Criterion's estimates.json holds time per iteration (ns); each bench declares
# Throughput::Elements(n) (in benchmark.json), so Melem/s = n / ns * 1e3. The typical
# time is the slope estimate when criterion has one, else the mean (what criterion
# itself prints as "thrpt"). Only benches run by this invocation are listed.
set -euo pipefail

cd "$(dirname "$0")/.."
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

cargo bench -p ringcache-engine --bench engine -- "$@"

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

python3 - "$target_dir/criterion" "$marker" <<'EOF'
import json, os, sys

root, marker = sys.argv[1], sys.argv[2]
since = os.path.getmtime(marker)
rows = []
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
        continue
    est_path = os.path.join(dirpath, "estimates.json")
    if os.path.getmtime(est_path) < since:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    with open(est_path) as f:
        est = json.load(f)
    elements = (bench.get("throughput") or {}).get("Elements")
    if not elements:
        continue
    typical = est.get("slope") or est["mean"]
    ns = typical["point_estimate"]
    lo = typical["confidence_interval"]["lower_bound"]
    hi = typical["confidence_interval"]["upper_bound"]
    rows.append((bench["full_id"], elements / ns * 1e3, elements / hi * 1e3, elements / lo * 1e3))

if not rows:
    sys.exit("no bench results found under " + root)
width = max(len(r[0]) for r in rows)
print()
print(f"{'bench':<{width}}  {'Melem/s':>8}  {'95% CI':>17}")
for name, rate, lo, hi in sorted(rows):
    print(f"{name:<{width}}  {rate:8.2f}  [{lo:7.2f} {hi:7.2f}]")
EOF
