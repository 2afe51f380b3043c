#!/usr/bin/env bash
# Bounded fuzzing of the frame decoder on stable Rust (no sanitizer: `-s none`).
#
# Run with: scripts/fuzz.sh [seconds per target, default 60]
# Installs cargo-fuzz from crates.io if missing. Findings land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in frame_decode; do
    echo "== fuzz $target for ${secs}s"
    (cd fuzz && cargo fuzz run -s none "$target" -- -max_total_time="$secs" -rss_limit_mb=512)
done
