#!/usr/bin/env bash
# The test command (README, .ci/run): builds every target (benches included, so they
# keep compiling), runs every test with nextest, then the doc tests (nextest skips
# those). Slow stress tests are #[ignore]d and run by scripts/stress.sh, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets --all-features --locked
cargo nextest run --workspace --all-features --locked --no-fail-fast
cargo test --workspace --all-features --locked --doc
