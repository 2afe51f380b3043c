#!/usr/bin/env bash
# The local gate before a commit: formatting, lints as errors, the tests, the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== tests";  scripts/test.sh
echo "== docs";   RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked
echo "check: all green"
