#!/usr/bin/env bash
# Stands up IPCS on this machine: the registry and N servers on the backend
# network ipcs0 (Docker containers, or network namespaces where no Docker
# engine is reachable), calc.batata / registry.batata in /etc/hosts, and the
# load balancer on the host bound to ipcs0. Idempotent; `down` undoes it all.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy/lib.sh"
IPCS_LOG_PREFIX="bootstrap"

usage() {
    cat <<EOF
Usage: ./bootstrap.sh [up] [--servers N] [--docker | --netns] [--no-build] [--timeout S]
       ./bootstrap.sh scale N
       ./bootstrap.sh status
       ./bootstrap.sh down [--images]

Commands:
  up (default)   build the binaries, create the backend network ($IPCS_BRIDGE,
                 $IPCS_SUBNET), start the registry ($IPCS_REGISTRY_IP:$IPCS_REGISTRY_PORT) and N servers,
                 add $IPCS_CALC_HOST and $IPCS_REGISTRY_HOST to $IPCS_HOSTS_FILE, start the
                 load balancer on the host and wait until it answers. Running it
                 again keeps what is already right and fixes the rest.
  scale N        run N servers, in place (Docker: compose --scale; netns:
                 ipcs-netns scale); the registry and the LB keep running
  status         show what runs: mode, LB, network, servers, registry list, hosts entries
  down           remove everything 'up' made: the LB, the containers or
                 namespaces, the network, the hosts entries, $IPCS_RUN_DIR

Options:
  --servers N    number of servers for 'up' (default 3)
  --docker       use Docker (default when the Docker engine is reachable)
  --netns        use network namespaces (default when it is not); uses the
                 testbed's ipcs-netns harness, no Docker needed
  --no-build     do not run cargo; use the binaries already in \$IPCS_BIN_DIR
  --timeout S    how long 'up' waits for the first answer (default 60)
  --images       with 'down': also remove the ipcs/* images
  -h, --help     this help

Environment:
  IPCS_RUN_DIR   pidfile, log and mode of the host LB (default /run/ipcs)
  IPCS_BIN_DIR   the static binaries (default target/static/$IPCS_TARGET/release)
  RUST_LOG       log level of every process (default info)

Needs: root or sudo (hosts file, raw socket, namespaces); cargo unless
--no-build; Docker mode: a reachable Docker engine and docker compose or
docker-compose; netns mode: iproute2 (ip).
EOF
}

# --- arguments -------------------------------------------------------------------
cmd=up
servers=3
mode=""
build=1
timeout_s=60
remove_images=0
scale_to=""
orig_args=("$@")

positive_int() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 60)); }

while (($#)); do
    case $1 in
    up | down | status) cmd=$1 ;;
    scale)
        cmd=scale
        (($# >= 2)) || die "scale needs a number of servers (see --help)"
        scale_to=$2
        positive_int "$scale_to" || die "scale: '$scale_to' is not a number of servers in 1..60"
        shift
        ;;
    --servers)
        (($# >= 2)) || die "--servers needs a value"
        servers=$2
        positive_int "$servers" || die "--servers: '$servers' is not a number in 1..60"
        shift
        ;;
    --docker) mode=docker ;;
    --netns) mode=netns ;;
    --no-build) build=0 ;;
    --timeout)
        (($# >= 2)) || die "--timeout needs a value"
        timeout_s=$2
        [[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout: '$timeout_s' is not a number of seconds"
        shift
        ;;
    --images) remove_images=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

bridge_new=0 # set when this run made the bridge (a running LB must rebind)

mode_file() { printf '%s\n' "$IPCS_RUN_DIR/mode"; }
recorded_mode() { cat "$(mode_file)" 2>/dev/null || true; }

# --- prerequisites ---------------------------------------------------------------------
# Collects everything that is missing and reports it all at once.
check_prereqs() {
    local want_mode=$1 missing=()
    if ((EUID != 0)) && ! have sudo; then
        missing+=("root or sudo (for $IPCS_HOSTS_FILE, the LB's raw socket on $IPCS_BRIDGE and the network)")
    fi
    ((build)) && ! have cargo && missing+=("cargo (to build the binaries; or pass --no-build)")
    have setsid || missing+=("setsid (util-linux)")
    have timeout || missing+=("timeout (coreutils)")
    if [[ $want_mode == docker ]]; then
        if ! have docker; then
            missing+=("the docker CLI")
        elif ! docker info >/dev/null 2>&1; then
            missing+=("a reachable Docker engine ('docker info' fails: is dockerd running, may this user use it?)")
        fi
        find_compose || missing+=("a Compose tool: the 'docker compose' plugin or 'docker-compose'")
    else
        have ip || missing+=("ip (iproute2), for the namespaces and veth pairs")
    fi
    if ((${#missing[@]})); then
        printf '%s\n' "bootstrap: cannot stand up IPCS ($want_mode mode); missing:" >&2
        printf '  - %s\n' "${missing[@]}" >&2
        exit 1
    fi
}

choose_mode() {
    if [[ -n $mode ]]; then
        say "mode: $mode (asked for)"
    elif docker_reachable; then
        mode=docker
        say "mode: docker (the Docker engine is reachable; --netns to use namespaces instead)"
    else
        mode=netns
        say "mode: netns (no Docker engine reachable; network namespaces joined to $IPCS_BRIDGE)"
    fi
    local other
    other=$(recorded_mode)
    if [[ -n $other && $other != "$mode" ]]; then
        die "a $other deployment is up; run ./bootstrap.sh down first"
    fi
}

# The network steps need root. As another user: build here (cargo as this
# user), then run the rest again under sudo without building.
become_root_if_needed() {
    ((EUID == 0)) && return 0
    ((build)) && build_binaries
    say "the network steps need root: continuing under sudo"
    exec sudo --preserve-env=IPCS_RUN_DIR,IPCS_BIN_DIR,IPCS_HOSTS_FILE,RUST_LOG \
        "$0" "${orig_args[@]}" --no-build
}

# --- Docker mode ---------------------------------------------------------------------
network_field() { docker network inspect -f "$1" "$IPCS_NET" 2>/dev/null; }

ensure_network() {
    if docker network inspect "$IPCS_NET" >/dev/null 2>&1; then
        local got want
        got="$(network_field '{{.Driver}} {{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{index .Options "com.docker.network.bridge.name"}}')"
        want="bridge true $IPCS_SUBNET $IPCS_GATEWAY $IPCS_BRIDGE"
        [[ $got == "$want" ]] ||
            die "Docker network '$IPCS_NET' exists with other settings ($got; want $want): remove it (docker network rm $IPCS_NET) and run again"
        say "network $IPCS_NET ($IPCS_BRIDGE, $IPCS_SUBNET) already exists"
        return 0
    fi
    if ip link show "$IPCS_BRIDGE" >/dev/null 2>&1; then
        die "interface $IPCS_BRIDGE exists but is not Docker's network '$IPCS_NET' (a netns deployment or test? './bootstrap.sh down' or 'ipcs-netns down')"
    fi
    bridge_new=1
    docker network create --driver bridge --internal \
        --subnet "$IPCS_SUBNET" --gateway "$IPCS_GATEWAY" --ip-range "$IPCS_IP_RANGE" \
        -o "com.docker.network.bridge.name=$IPCS_BRIDGE" --label "$IPCS_LABEL" \
        "$IPCS_NET" >/dev/null
    say "created network $IPCS_NET: bridge $IPCS_BRIDGE, $IPCS_SUBNET, internal, host at $IPCS_GATEWAY"
}

docker_up() {
    ensure_network
    "$IPCS_REPO/deploy/build-images.sh"
    hosts_add
    say "starting the registry and $servers servers (compose project $IPCS_COMPOSE_PROJECT)"
    compose up -d --scale "server=$servers" registry server
}

# Container ids of the lb service, when it runs from compose (profile lb).
compose_lb_running() { [[ -n "$(compose --profile lb ps -q lb 2>/dev/null)" ]]; }

docker_down() {
    if ! docker_reachable; then
        [[ $(recorded_mode) == netns ]] ||
            warn "the Docker engine is not reachable: containers and network (if any) left as they are"
        return 0
    fi
    if find_compose; then
        compose --profile lb down --timeout 5 2>&1 | grep -v 'is external, skipping' || true
    fi
    # Containers of the project that compose did not remove (no compose tool,
    # or a renamed service).
    local ids
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$IPCS_COMPOSE_PROJECT")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086 # one id per word
        docker rm -f $ids >/dev/null
    fi
    if docker network inspect "$IPCS_NET" >/dev/null 2>&1; then
        if [[ "$(network_field '{{index .Labels "org.ipcs.managed-by"}}')" == bootstrap ]]; then
            docker network rm "$IPCS_NET" >/dev/null
            say "removed network $IPCS_NET"
        else
            warn "network $IPCS_NET was not made by bootstrap.sh: left as it is"
        fi
    fi
    if ((remove_images)); then
        ids=$(docker images -q --filter "label=$IPCS_LABEL" | sort -u)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086 # one id per word
            docker rmi -f $ids >/dev/null
            say "removed the ipcs/* images"
        fi
    fi
}

# --- netns mode: the testbed's harness ------------------------------------------------
netns_tool() { printf '%s\n' "$IPCS_BIN_DIR/ipcs-netns"; }
# The harness keeps its state file and process logs under our run directory.
netns() { "$(netns_tool)" --run-dir "$IPCS_RUN_DIR/netns" "$@"; }

# Server processes of the netns topology that still run, from the harness's
# status (lines "  server<id> pid <pid> running").
netns_running_servers() {
    netns status 2>/dev/null | awk '$1 ~ /^server[0-9]+$/ && $2 == "pid" && $4 == "running"' | wc -l
}

# Docker sets the FORWARD policy to DROP and loads br_netfilter, so traffic
# bridged between two namespaces on a bridge in this namespace (server ->
# registry TCP) meets iptables and is dropped; Docker accepts only its own
# bridges. One tagged rule lets ipcs0 forward to itself; `down` removes it.
FORWARD_RULE=(FORWARD -i "$IPCS_BRIDGE" -o "$IPCS_BRIDGE" -m comment --comment ipcs-bootstrap -j ACCEPT)

netns_forward_allow() {
    if ! have iptables; then
        warn "no iptables: if a firewall drops bridged traffic, servers cannot reach the registry"
        return 0
    fi
    iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
}

netns_forward_remove() {
    have iptables || return 0
    while iptables -D "${FORWARD_RULE[@]}" 2>/dev/null; do :; done
}

netns_is_up() { [[ -e "$IPCS_RUN_DIR/netns/state" ]]; }

# Starts the topology, or keeps it when it already runs N servers.
netns_start() {
    local n=$1
    if netns_is_up; then
        if (($(netns_running_servers) == n)) && netns status | grep -qE '^ *registry +pid +[0-9]+ +running'; then
            say "the netns topology already runs the registry and $n servers"
            return 0
        fi
        say "the netns topology differs (wants $n servers running): recreating it"
        netns down
    fi
    bridge_new=1
    netns up --servers "$n" --bin-dir "$IPCS_BIN_DIR"
}

netns_up() {
    require_binaries ipcs-netns ipcs-registry ipcs-server
    if ! netns_is_up && ip link show "$IPCS_BRIDGE" >/dev/null 2>&1; then
        die "interface $IPCS_BRIDGE already exists (the Docker network '$IPCS_NET', or another harness run): ./bootstrap.sh down first"
    fi
    hosts_add
    netns_forward_allow
    say "starting the registry and $servers servers in network namespaces (ipcs-netns)"
    netns_start "$servers"
}

# Runs the harness's own `down` unless a Docker deployment is recorded (then
# there are no namespaces; with no record, a half-made run may have left some).
netns_down() {
    local recorded
    recorded=$(recorded_mode)
    [[ $recorded == docker ]] && return 0
    netns_forward_remove
    if [[ -x "$(netns_tool)" ]]; then
        netns_is_up || return 0
        timeout 60 "$(netns_tool)" --run-dir "$IPCS_RUN_DIR/netns" down >/dev/null ||
            warn "ipcs-netns down failed (exit $?)"
        say "removed the netns topology"
        rm -rf -- "${IPCS_RUN_DIR:?}/netns"
    elif [[ $recorded == netns ]]; then
        warn "$(netns_tool) is missing: cannot take the namespaces down"
    fi
}

# --- the host LB ---------------------------------------------------------------------
ensure_lb() {
    if [[ $mode == docker ]] && compose_lb_running; then
        say "the LB runs as the compose service 'lb' (profile lb): not starting one on the host"
        return 0
    fi
    local pid
    if pid=$(lb_pid); then
        if [[ "$IPCS_BIN_DIR/ipcs-lb" -nt "$(lb_pidfile)" ]]; then
            say "ipcs-lb was rebuilt: restarting it"
            lb_stop
        elif ((bridge_new)); then
            # Its raw socket is bound to the interface index of the old bridge.
            say "$IPCS_BRIDGE was made anew: restarting the load balancer"
            lb_stop
        else
            say "load balancer already running (pid $pid)"
            return 0
        fi
    fi
    lb_start
}

print_usage_hint() {
    local bin=$IPCS_BIN_DIR t=$IPCS_CALC_HOST:$IPCS_LB_PORT
    printf '\nIPCS is up (%s mode): registry %s (%s:%s), %s servers on %s,\nload balancer on %s (log %s).\n\n' \
        "$mode" "$IPCS_REGISTRY_HOST" "$IPCS_REGISTRY_IP" "$IPCS_REGISTRY_PORT" "$servers" \
        "$IPCS_BRIDGE" "$t" "$(lb_logfile)"
    hint() { printf '  %-44s # %s\n' "$1" "$2"; }
    printf "  export PATH=\"%s:\$PATH\"\n" "$bin"
    hint "calc $t" "the calculator's prompt"
    hint "calc $t '6*7'" "one answer, for scripts"
    hint "loadgen --rps 100000 $t" "load: throughput and latency"
    hint "./bootstrap.sh scale 5" "servers up or down"
    [[ $mode == docker ]] && hint "docker compose up -d --scale server=5" "the same by hand (or docker-compose)"
    hint "./bootstrap.sh status" "what runs"
    hint "./bootstrap.sh down" "stop and remove everything"
}

cmd_up() {
    choose_mode
    check_prereqs "$mode"
    become_root_if_needed
    ((build)) && build_binaries
    require_binaries ipcs-registry ipcs-server ipcs-lb calc
    mkdir -p "$IPCS_RUN_DIR"
    if [[ $mode == docker ]]; then
        docker_up
    else
        netns_up
    fi
    printf '%s\n' "$mode" >"$(mode_file)"
    ensure_lb
    say "waiting up to ${timeout_s}s for an answer through $IPCS_CALC_HOST:$IPCS_LB_PORT"
    wait_for_answer "$timeout_s" ||
        die "no answer to 1+1 through $IPCS_CALC_HOST:$IPCS_LB_PORT within ${timeout_s}s (see ./bootstrap.sh status and $(lb_logfile))"
    say "calc $IPCS_CALC_HOST:$IPCS_LB_PORT 1+1 = 2"
    print_usage_hint
}

cmd_scale() {
    mode=$(recorded_mode)
    [[ -n $mode ]] || die "nothing is up (no $(mode_file)): run ./bootstrap.sh first"
    if [[ $mode == docker ]]; then
        compose up -d --no-recreate --scale "server=$scale_to" registry server
    else
        require_binaries ipcs-netns ipcs-server
        # Adds or removes servers in place: the registry, the bridge and the
        # LB keep running, and the LB learns the change from the registry.
        netns scale "$scale_to" --bin-dir "$IPCS_BIN_DIR" >/dev/null
        wait_for_answer "$timeout_s" ||
            die "no answer through $IPCS_CALC_HOST:$IPCS_LB_PORT within ${timeout_s}s after scaling"
    fi
    say "$scale_to servers requested; the LB learns them from the registry within its poll interval"
}

cmd_down() {
    if ((EUID != 0)); then
        have sudo || die "down needs root or sudo"
        exec sudo --preserve-env=IPCS_RUN_DIR,IPCS_BIN_DIR,IPCS_HOSTS_FILE "$0" "${orig_args[@]}"
    fi
    lb_stop
    # Both modes are taken down whatever was recorded, so a half-made
    # deployment (mode file never written) is cleaned too.
    docker_down
    netns_down
    hosts_remove
    rm -f "$(mode_file)" "$(lb_logfile)"
    rmdir "$IPCS_RUN_DIR" 2>/dev/null || true
    say "down: nothing of IPCS left running"
}

cmd_status() {
    local m pid
    m=$(recorded_mode)
    echo "mode:          ${m:-none (not up)}"
    if pid=$(lb_pid); then
        echo "load balancer: running on the host, pid $pid, $IPCS_CALC_HOST:$IPCS_LB_PORT, log $(lb_logfile)"
    elif docker_reachable && find_compose && compose_lb_running; then
        echo "load balancer: running as compose service lb"
    else
        echo "load balancer: not running"
    fi
    if ip -br addr show "$IPCS_BRIDGE" >/dev/null 2>&1; then
        echo "bridge:        $(ip -br addr show "$IPCS_BRIDGE")"
    else
        echo "bridge:        $IPCS_BRIDGE absent"
    fi
    if [[ $m != netns ]] && docker_reachable; then
        if docker network inspect "$IPCS_NET" >/dev/null 2>&1; then
            echo "network:       Docker network $IPCS_NET present"
        else
            echo "network:       no Docker network $IPCS_NET"
        fi
        if find_compose; then
            echo "containers:"
            compose --profile lb ps 2>/dev/null | sed 's/^/  /'
        fi
    fi
    if [[ $m == netns && -x "$(netns_tool)" ]]; then
        echo "namespaces:"
        netns status 2>&1 | sed 's/^/  /' || true
    fi
    echo "registry list ($IPCS_REGISTRY_IP:$IPCS_REGISTRY_PORT):"
    registry_list 2>/dev/null | sed 's/^/  /' || echo "  (no answer)"
    echo "hosts entries ($IPCS_HOSTS_FILE):"
    grep -F -- "$IPCS_HOSTS_TAG" "$IPCS_HOSTS_FILE" 2>/dev/null | sed 's/^/  /' || echo "  (none)"
}

case $cmd in
up) cmd_up ;;
scale) cmd_scale ;;
down) cmd_down ;;
status) cmd_status ;;
esac
