#!/usr/bin/env bash
# Every check Quiver has: formatting, lints, Rust tests (unit, integration, SQL logic tests), then
# the client tests: real Flight SQL clients (ADBC, pyarrow) against the `quiver serve` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

# The client tests run the binary itself; build every target (the one build profile the other
# commands share, so nothing is rebuilt) to be sure it is current.
cargo build --workspace --all-targets
export QUIVER_BIN="$CARGO_TARGET_DIR/debug/quiver"

# A virtual environment outside the clone with the pinned client libraries from PyPI.
VENV="${QUIVER_VENV:-$HOME/.cache/quiver-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    echo "installing python3-venv (needed for the client tests)..."
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get install -y -q python3-venv >/dev/null 2>&1 ||
      { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q python3-venv >/dev/null; }
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
"$VENV/bin/python" -m pytest -q tests/python
