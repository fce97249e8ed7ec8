#!/usr/bin/env bash
# Side-by-side benchmark: IPCS vs nginx's UDP proxy vs the direct path, on
# one netns topology with 3 servers (A-F), on the Docker deployment as
# ./bootstrap.sh makes it, loaded from the host (G, H), on two simulated
# hosts (I) and on Docker Swarm (J), in one run. Writes the
# table and the latency plot under ipcs-bench's --out-dir (target/bench);
# --update-docs also writes them into docs/. Needs root. Everything it
# starts and makes is removed when it ends, the Docker deployment included.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
Usage: deploy/bench.sh [--no-build] [ipcs-bench options]
Installs nginx + its stream module if missing (Debian packages), builds the
static release binaries (as bootstrap does), then runs ipcs-bench, which measures
  A  IPCS (1 worker)   B  nginx (1 worker)   C  direct to one server
  D  IPCS (2 workers)  E  nginx (2 workers)   F  IPCS (1 worker), no coalescing
on a netns topology, with loadgen in its core namespace, and
  G  IPCS as ./bootstrap.sh deploys it in Docker, loadgen on the host
     against calc.batata's address: the LB tier's VIP (IPCS_VIP, .env),
     held by one of the LB nodes lb1, lb2
  H  nginx (1 worker) on the host in front of the same server containers
  I  IPCS (1 worker) on the two-host netns topology, every server on the
     far host behind the VXLAN tunnel (MTU 1450)
  J  IPCS as './bootstrap.sh --swarm' deploys it, loadgen on the host
     against the node's address (deploy/bench-swarm.sh brings it up after
     G and H, taking their compose deployment down first, and down again)
each with loadgen --find-max and a fixed-rate run at 100,000 rps.

For G and H, when a Docker engine is reachable and no deployment is up, it
runs './bootstrap.sh --docker --no-build' first and './bootstrap.sh down'
when it ends (also on failure or Ctrl-C). Without Docker, G and H are
reported as not run.

The table and plot go to target/bench/BENCHMARKS.md and
target/bench/bench-latency.svg; --update-docs also writes them into
docs/BENCHMARKS.md and docs/bench-latency.svg (whole runs only).

Options:
  --no-build   do not run cargo; use the binaries in $IPCS_BIN_DIR
               (default target/static/x86_64-unknown-linux-gnu/release)
  Everything else is passed to ipcs-bench (see ipcs-bench --help), e.g.
  --rps 50000 --duration-s 5, --only G,H, --find-max-ceiling 200000,
  --update-docs.
USAGE
}

build=1
only=""
servers=3
bench_args=()
while (($#)); do
  case $1 in
  -h | --help)
    usage
    exit 0
    ;;
  --no-build) build=0 ;;
  --only | --servers)
    (($# >= 2)) || { echo "deploy/bench.sh: $1 needs a value" >&2; exit 2; }
    if [[ $1 == --only ]]; then only=$2; else servers=$2; fi
    bench_args+=("$1" "$2")
    shift
    ;;
  --only=*) only=${1#--only=} && bench_args+=("$1") ;;
  --servers=*) servers=${1#--servers=} && bench_args+=("$1") ;;
  *) bench_args+=("$1") ;;
  esac
  shift
done
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
# shellcheck source=deploy/swarm.sh
source deploy/swarm.sh
IPCS_LOG_PREFIX=bench
((build)) && build_binaries
require_binaries ipcs-bench loadgen ipcs-lb ipcs-server ipcs-registry calc
export IPCS_BIN_DIR

# --- the Docker deployment for G and H ---------------------------------------
wants_docker() { [[ -z $only || ",$only," == *,G,* || ",$only," == *,H,* ]]; }
wants_swarm() { [[ -z $only || ",$only," == *,J,* ]]; }

# The plain-UDP endpoint of a server container: its address on the network
# and the port of its --udp argument (compose.yaml's command).
server_udp_endpoint() { # container
  local ip args i
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1")
  read -ra args <<<"$(docker inspect -f '{{range .Args}}{{.}} {{end}}' "$1")"
  for ((i = 0; i + 1 < ${#args[@]}; i++)); do
    if [[ ${args[i]} == --udp ]]; then
      [[ -n $ip ]] && printf '%s:%s\n' "$ip" "${args[i + 1]##*:}"
      return 0
    fi
  done
  return 1
}

docker_ours=0 # set once this script runs bootstrap: then it takes it down
swarm_ours=0  # set once the swarm hook is handed to ipcs-bench: the same
work=$(mktemp -d "${TMPDIR:-/tmp}/ipcs-bench.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # G and H's containers' logs, unless J's hook took them down (and kept them) first.
  ((docker_ours)) && [[ $(cat "$IPCS_RUN_DIR/mode" 2>/dev/null) == docker ]] &&
    { mkdir -p target/bench && save_compose_logs target/bench/docker-deployment.log; }
  if ((docker_ours || swarm_ours)); then
    say "taking the Docker deployment down (./bootstrap.sh down)"
    ./bootstrap.sh down >"$work/down.log" 2>&1 ||
      warn "./bootstrap.sh down failed: $(tail -n 3 "$work/down.log")"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

docker_unavailable=""
if wants_docker; then
  if ! docker_reachable; then
    docker_unavailable="no Docker engine"
  elif [[ -e "$IPCS_RUN_DIR/mode" ]]; then
    docker_unavailable="a $(cat "$IPCS_RUN_DIR/mode") deployment was already up (./bootstrap.sh down first; not ours to take down)"
  elif [[ -n $(docker ps -aq --filter "label=com.docker.compose.project=$IPCS_COMPOSE_PROJECT") ]]; then
    docker_unavailable="containers of compose project $IPCS_COMPOSE_PROJECT exist (docker compose down first; not ours to take down)"
  else
    say "bringing IPCS up in Docker with $servers servers (./bootstrap.sh --docker --no-build)"
    docker_ours=1
    if ./bootstrap.sh --docker --no-build --servers "$servers" >"$work/up.log" 2>&1; then
      upstreams=()
      for id in $(compose_containers server); do
        endpoint=$(server_udp_endpoint "$id") || { docker_unavailable="no --udp endpoint on server container $id"; break; }
        upstreams+=("$endpoint")
      done
      if [[ -z $docker_unavailable ]] && ((${#upstreams[@]} != servers)); then
        docker_unavailable="expected $servers server containers, found ${#upstreams[@]}"
      fi
      if [[ -z $docker_unavailable ]]; then
        upstream_list=$(IFS=,; printf '%s' "${upstreams[*]}")
        # Every LB: each node of the tier (admin endpoint on its node
        # address), or the single LB of a --lbs 1 deployment. ipcs-bench
        # adds their CPU time and counters up, so G's figures are the tier's
        # even if the VIP moves between now and G's run (the standby's are
        # near zero).
        lb_admins=() lb_pids=()
        if (($(tier_count) > 1)); then
          for ((n = 1; n <= $(tier_count); n++)); do
            lb_admins+=("$(tier_node_admin "$n")")
            lb_pids+=("$(tier_lb_pid "$n" || true)")
          done
        else
          lb_admins+=("$IPCS_LB_ADMIN")
          lb_pids+=("$(docker inspect -f '{{.State.Pid}}' "$(compose_containers lb | head -n 1)" 2>/dev/null || true)")
        fi
        lb_admin_list=$(IFS=,; printf '%s' "${lb_admins[*]}")
        bench_args+=(--docker-target "$(calc_ip):$IPCS_LB_PORT"
          --docker-upstreams "$upstream_list" --docker-admin "$lb_admin_list"
          --docker-nginx-addr "$IPCS_GATEWAY")
        # The CPU figure only when every LB's pid is known (a part of the
        # tier would understate it).
        lb_pid_list=$(IFS=,; printf '%s' "${lb_pids[*]}")
        if [[ $lb_pid_list =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
          bench_args+=(--docker-lb-pid "$lb_pid_list")
        fi
        holder=""
        (($(tier_count) > 1)) && holder=", VIP on node $(tier_vip_holder || true)"
        say "G: $(calc_ip):$IPCS_LB_PORT (LB pids $lb_pid_list, admin $lb_admin_list$holder); H: nginx in front of $upstream_list"
      fi
    else
      docker_unavailable="./bootstrap.sh --docker failed: $(tail -n 1 "$work/up.log")"
    fi
  fi
  if [[ -n $docker_unavailable ]]; then
    warn "G and H not run: $docker_unavailable"
    bench_args+=(--docker-unavailable "$docker_unavailable")
  fi
fi

# --- the swarm deployment for J (up and down by deploy/bench-swarm.sh) ----------
if wants_swarm; then
  swarm_unavailable=""
  if ! docker_reachable; then
    swarm_unavailable="no Docker engine"
  elif ((!docker_ours)) && [[ -e "$IPCS_RUN_DIR/mode" ]]; then
    swarm_unavailable="a $(cat "$IPCS_RUN_DIR/mode") deployment was already up (./bootstrap.sh down first; not ours to take down)"
  elif swarm_stack_exists; then
    swarm_unavailable="a stack $IPCS_STACK is deployed (./bootstrap.sh down first; not ours to take down)"
  fi
  if [[ -n $swarm_unavailable ]]; then
    warn "J not run: $swarm_unavailable"
    bench_args+=(--swarm-unavailable "$swarm_unavailable")
  else
    swarm_ours=1
    export IPCS_BENCH_DOCKER_OURS=$docker_ours IPCS_BENCH_SERVERS=$servers
    bench_args+=(--swarm-hook "$PWD/deploy/bench-swarm.sh")
  fi
fi

"$IPCS_BIN_DIR/ipcs-bench" "${bench_args[@]}"
