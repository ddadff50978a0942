# Sourced by the other scripts: the shared build directory and the system packages the build needs.
# shellcheck shell=bash

# One target directory outside the clone, shared by every checkout, session and CI run on this
# machine: the dependency build (about 15 minutes on 2 cores) is paid once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Lance's build needs protoc (Debian package protobuf-compiler).
if ! command -v protoc >/dev/null 2>&1; then
  echo "installing protobuf-compiler (needed by Lance's build)..."
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -q protobuf-compiler >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q protobuf-compiler >/dev/null; }
fi
