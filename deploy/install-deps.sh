#!/usr/bin/env bash
# Installs what IPCS's build and tests need and a fresh machine may lack.
# Idempotent: installs only what is missing. Needs root for apt-get.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/install-deps.sh [--help]
Checks for, and installs when missing (Debian packages via apt-get):
  ip (iproute2), kill/ps (procps), tmux, python3, keepalived (the LB tier's
  VRRP), prometheus/promtool (deploy/prometheus-test.sh runs the real one),
  Rust's rustfmt and clippy components.
Docker and a Compose tool cannot be installed from here (no image registry);
their absence is reported, and the Docker end-to-end test is then skipped.
USAGE
}
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { usage; exit 0; }

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IPCS_LOG_PREFIX=install-deps
need_pkg() { install_pkg "$@" || die "cannot install $2 (for $1)"; }

need_pkg ip iproute2
need_pkg ps procps
need_pkg tmux tmux
need_pkg python3 python3
# The LB tier's VRRP (bootstrap.sh --netns, testbed/tests/vrrp.rs, the chaos soak).
need_pkg keepalived keepalived
# deploy/prometheus-test.sh: Debian's Prometheus against the deployment.
need_pkg prometheus prometheus
need_pkg promtool prometheus

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
exit 0
