#!/usr/bin/env bash
# Every check Quiver has: formatting, lints, Rust tests (unit, integration, SQL logic tests).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
