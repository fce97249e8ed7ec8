#!/usr/bin/env bash
# Runs every IPCS test: formatting, lints, unit tests, and the integration
# tests over real namespaces, raw sockets, TCP and containers. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  echo "Usage: deploy/test.sh   (as root; installs missing tools, then runs every test)"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "deploy/test.sh: run as root (the tests create network namespaces and raw sockets)" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
deploy/install-deps.sh

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --bins --locked

step "unit and integration tests"
cargo test --workspace --locked
