#!/usr/bin/env bash
# Side-by-side benchmark: IPCS vs nginx's UDP proxy vs the direct path, on
# one netns topology with 3 servers, in one run. Writes the table into
# docs/BENCHMARKS.md and the latency plot to docs/bench-latency.svg.
# Needs root. Everything it starts and makes is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  cat <<'USAGE'
Usage: deploy/bench.sh [ipcs-bench options]
Installs nginx + its stream module if missing (Debian packages), builds the
static release binaries (as bootstrap does), then runs ipcs-bench, which measures
  A  IPCS (1 worker)   B  nginx (1 worker)   C  direct to one server
  D  IPCS (2 workers)  E  nginx (2 workers)   F  IPCS (1 worker), no coalescing
with loadgen --find-max and a fixed-rate run at 100,000 rps.
Options are passed to ipcs-bench (see ipcs-bench --help),
e.g. --rps 50000 --duration-s 5.
USAGE
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "deploy/bench.sh: run as root (namespaces, raw sockets)" >&2; exit 1; }

deploy/install-deps.sh
if [[ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]] || ! command -v nginx >/dev/null 2>&1; then
  echo "bench: installing nginx with the stream module (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light libnginx-mod-stream >/dev/null
fi
# Debian starts the packaged service where it can; the benchmark needs no
# system nginx, and one listening on :80 is left alone either way.

# shellcheck source=deploy/lib.sh
source deploy/lib.sh
IPCS_LOG_PREFIX=bench
build_binaries
export IPCS_BIN_DIR
exec "$IPCS_BIN_DIR/ipcs-bench" "$@"
