#!/usr/bin/env bash
# Runs every IPCS test: formatting, lints, unit tests, the integration tests
# over real namespaces, raw sockets and TCP (the 10 s chaos soak among them),
# and the end-to-end deployment test in Docker and netns modes. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  cat <<'USAGE'
Usage: deploy/test.sh   (as root)
Installs missing tools (deploy/install-deps.sh), then runs: cargo fmt --check,
cargo clippy -D warnings, the static release build the tests and the
deployment run, cargo test --workspace, and deploy/e2e.sh (Docker pass when a
Docker engine is reachable, then the netns pass), then deploy/prometheus-test.sh
(Debian's prometheus against the deployment, both modes). Ends with a summary line.
USAGE
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "deploy/test.sh: run as root (the tests create network namespaces and raw sockets)" >&2
  exit 1
fi

# shellcheck source=deploy/lib.sh
source deploy/lib.sh
IPCS_LOG_PREFIX="test"

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
deploy/install-deps.sh

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "release binaries (static): what the integration tests and the deployment run"
# A debug load balancer on two shared cores falls behind the chaos soak's
# 20,000 rps and retries itself into a storm; the tests measure IPCS, so the
# processes they start are the release build users run.
build_binaries
export IPCS_BIN_DIR

step "unit and integration tests"
cargo test --workspace --locked

step "end-to-end deployment (bootstrap.sh, Docker and netns)"
if docker_reachable; then
  deploy/e2e.sh --no-build
else
  echo "test: no Docker engine reachable: running the netns pass only"
  deploy/e2e.sh --no-build --netns-only
fi

step "a real Prometheus against the deployment (deploy/prometheus-test.sh)"
# It skips the Docker mode by itself when no engine is reachable.
deploy/prometheus-test.sh --no-build
