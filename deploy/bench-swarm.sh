#!/usr/bin/env bash
# ipcs-bench's swarm hook (scenario J; deploy/bench.sh passes it as
# --swarm-hook). `up`: IPCS as ./bootstrap.sh --swarm deploys it, then prints
# for ipcs-bench `target=IP:PORT` (the node's address and the LB's published
# port, as a user on the host reaches it) and `lb_pid=N` (the LB container's
# process). `down`: ./bootstrap.sh down. Everything else goes to stderr.
# One mode at a time: a compose deployment deploy/bench.sh made for G and H
# (IPCS_BENCH_DOCKER_OURS=1) is taken down first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
source deploy/lib.sh
# shellcheck source=deploy/swarm.sh
source deploy/swarm.sh
IPCS_LOG_PREFIX=bench-swarm

case ${1:-} in
up)
    if [[ ${IPCS_BENCH_DOCKER_OURS:-0} == 1 ]]; then
        mkdir -p target/bench && save_compose_logs target/bench/docker-deployment.log
        say "taking the compose deployment of G and H down first"
        ./bootstrap.sh down >&2
    fi
    ./bootstrap.sh --swarm --no-build --servers "${IPCS_BENCH_SERVERS:-3}" >&2
    printf 'target=%s:%s\n' "$(swarm_node_addr)" "$IPCS_LB_PORT"
    lb=$(docker ps -q --filter "label=com.docker.swarm.service.name=${IPCS_STACK}_lb" | head -n 1)
    pid=$(docker inspect -f '{{.State.Pid}}' "$lb" 2>/dev/null || true)
    if [[ $pid =~ ^[1-9][0-9]*$ ]]; then printf 'lb_pid=%s\n' "$pid"; fi
    ;;
down) ./bootstrap.sh down >&2 ;;
*) die "usage: deploy/bench-swarm.sh up|down" ;;
esac
