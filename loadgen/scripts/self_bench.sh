#!/usr/bin/env bash
# Measures loadgen alone: the echo responder and loadgen on loopback in a
# private network namespace (no host iptables/conntrack on the path).
#   loadgen/scripts/self_bench.sh [RPS] [DURATION] [extra loadgen flags...]
# Needs root (for the namespace) and a release build:
#   cargo build --release -p ipcs-loadgen --bins --examples
set -euo pipefail
rps=${1:-200000}
duration=${2:-10s}
shift $(( $# > 2 ? 2 : $# ))
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
ns=loadgen-bench-$$
port=19$(( $$ % 900 + 100 ))

ip netns add "$ns"
cleanup() {
    [[ -n ${responder:-} ]] && kill "$responder" 2>/dev/null && wait "$responder" 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns exec "$ns" ip link set lo up
RUST_LOG=warn ip netns exec "$ns" "$bin/examples/echo_responder" --bind "127.0.0.1:$port" --servers 3 &
responder=$!
sleep 0.3
ip netns exec "$ns" "$bin/loadgen" --rps "$rps" --duration "$duration" "$@" "127.0.0.1:$port"
