#!/usr/bin/env bash
# Builds the optimised `quiver` binary (the release profile) and installs it as
# "${PREFIX:-$HOME/.local}/bin/quiver". A clean release build takes about 40 minutes on 2 cores
# (docs/building.md); later ones reuse the shared target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo install --locked --path flight-server --root "${PREFIX:-$HOME/.local}"
"${PREFIX:-$HOME/.local}/bin/quiver" --version
