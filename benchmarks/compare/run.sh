#!/usr/bin/env bash
# The side-by-side comparison: Quiver's k-NN operators against numpy, FAISS and hnswlib on the
# same deterministic data, in one run, one thread each. Prints a table of figures and ratios.
#   benchmarks/compare/run.sh [rows]        (rows of the exact-search data, default 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh

VENV="${QUIVER_COMPARE_VENV:-$HOME/.cache/quiver-compare-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r benchmarks/compare/requirements.txt

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# One thread for every peer (numpy's BLAS, FAISS's OpenMP).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
cargo run --release -q -p quiver-benchmarks --bin quiver-compare -- \
  --work "$WORK" --python "$VENV/bin/python" --rows "${1:-1000000}"
