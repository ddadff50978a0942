#!/usr/bin/env bash
# The end-to-end benchmark: Quiver over Flight SQL (ADBC) against pgvector (pgserver),
# Milvus Lite, LanceDB and hnswlib, each through its own client, 1 and 4 concurrent clients.
#   benchmarks/compare/e2e.sh [e2e.py options]     e.g. --out /tmp/e2e --synthetic-rows 200000
# Makes a venv (${QUIVER_E2E_VENV:-~/.cache/quiver-e2e-venv}) with requirements-e2e.txt, builds
# the release binary unless QUIVER_BIN names one, then runs e2e.py (see its docstring).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${QUIVER_E2E_VENV:-$HOME/.cache/quiver-e2e-venv}"
REQS=benchmarks/compare/requirements-e2e.txt
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "${PIP[@]}" -r "$REQS"; then
  # One peer that does not install must not stop the others: install what can be, one at a
  # time; the harness reports a system whose client is missing as failed.
  echo "e2e.sh: installing requirements one by one" >&2
  grep -v '^\s*#' "$REQS" | grep -v '^\s*$' | while read -r req; do
    "${PIP[@]}" "$req" || echo "e2e.sh: WARNING: could not install $req" >&2
  done
fi

if [ -z "${QUIVER_BIN:-}" ]; then
  source scripts/env.sh
  cargo build --release --locked -p quiver-flight --bin quiver
  QUIVER_BIN="$CARGO_TARGET_DIR/release/quiver"
fi
export QUIVER_BIN

# Each client searches on one thread (numpy's BLAS, FAISS's OpenMP in Milvus Lite); concurrency
# comes from the client processes. The servers (Quiver, Postgres) use their own threads.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" \
  MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
exec "$VENV/bin/python" benchmarks/compare/e2e.py "$@"
