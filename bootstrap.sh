#!/usr/bin/env bash
# Stands up IPCS on this machine: the registry and N servers on the backend
# network ipcs0 and the load balancers on it, calc.batata / registry.batata in
# /etc/hosts. By default two LBs (the LB tier) share calc.batata's virtual
# address through keepalived. Docker mode runs compose.yaml (the tier: its
# profile lb-tier, services lb1 and lb2; --lbs 1: the service lb on the
# host's network); netns mode, where no Docker engine is reachable, runs the
# testbed's namespaces with the LB nodes in namespaces of their own (--lbs 1:
# the LB as a host process); swarm mode (--swarm) deploys deploy/stack.yaml on
# a Docker Swarm overlay (deploy/swarm.sh). Idempotent; `down` undoes it all.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy/lib.sh"
# shellcheck source=deploy/swarm.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy/swarm.sh"
IPCS_LOG_PREFIX="bootstrap"

usage() {
    cat <<EOF
Usage: ./bootstrap.sh [up] [--servers N] [--lbs N] [--docker | --netns | --swarm] [--no-build] [--timeout S]
       ./bootstrap.sh build [--no-build]
       ./bootstrap.sh key
       ./bootstrap.sh scale N
       ./bootstrap.sh status
       ./bootstrap.sh down [--images]

Commands:
  up (default)   build the binaries (and in Docker mode the images), start the
                 backend network ($IPCS_BRIDGE, $IPCS_SUBNET), the registry
                 ($IPCS_REGISTRY_IP:$IPCS_REGISTRY_PORT), N servers and the load balancer
                 (Docker: compose up; netns: ipcs-netns and the LB on the host), add
                 $IPCS_CALC_HOST and $IPCS_REGISTRY_HOST to $IPCS_HOSTS_FILE and wait until
                 the LB answers. Running it again keeps what is already right and
                 fixes the rest.
  build          build the binaries (unless --no-build) and the images, and make
                 the deployment key if there is none, nothing else: then
                 'docker compose up -d --scale server=N' (or docker-compose)
                 brings the whole system up by itself
  key            make the deployment key ($IPCS_KEY_FILE) if there is none:
                 32 random bytes (group $IPCS_KEY_GID, mode 0640) that the
                 registry, servers and LB prove registrations and lists with
                 (docs/SECURITY.md)
  scale N        run N servers, in place (Docker: compose --scale; netns:
                 ipcs-netns scale); the registry and the LB keep running
  status         show what runs: mode, LB, network, servers, registry list, hosts entries
  down           remove everything 'up' made: the LB, the containers or
                 namespaces, the network, the hosts entries, the key, $IPCS_RUN_DIR

Options:
  --servers N    number of servers for 'up' (default 3)
  --lbs N        load balancers (default 2; Docker mode: 1 or 2; swarm: 1).
                 With 2 or more, each LB node (ipcs-lb-node: ipcs-lb and
                 keepalived) runs in a network namespace of its own on
                 $IPCS_BRIDGE at 172.16.238.201, .202, ... (Docker: the compose
                 services lb1, lb2 of profile lb-tier; netns: namespaces
                 ipcs-lb<n>), and $IPCS_CALC_HOST names the virtual address
                 $IPCS_VIP that one of them holds at a time (VRRP); a killed LB
                 is restarted and rejoins as standby. 1: the single LB (Docker:
                 compose service lb on the host's network; netns: on the host
                 at $IPCS_GATEWAY).
  --docker       use Docker (default when the Docker engine is reachable)
  --netns        use network namespaces (default when it is not); uses the
                 testbed's ipcs-netns harness, no Docker needed
  --swarm        use Docker Swarm: deploy/stack.yaml as stack 'ipcs' on an
                 overlay network ($IPCS_SWARM_NET, $IPCS_SWARM_SUBNET), on this
                 node's swarm or, if it is in none, a single-node swarm made
                 here (and left again by 'down'); $IPCS_CALC_HOST names the
                 node's address; scale with 'docker service scale ipcs_server=N'
  --no-build     do not run cargo; use the binaries already in \$IPCS_BIN_DIR
  --timeout S    how long 'up' waits for the first answer (default 60)
  --images       with 'down': also remove the $IPCS_IMAGE_REPO/* images
  -h, --help     this help

Environment:
  IPCS_RUN_DIR   pidfile, log and mode of the host LB (default /run/ipcs)
  IPCS_KEY_FILE  the deployment key (default \$IPCS_RUN_DIR/key)
  IPCS_KEY_GID   its group, which the registry container joins (default 7070)
  IPCS_BIN_DIR   the static binaries (default target/static/$IPCS_TARGET/release)
  RUST_LOG       log level of every process (default info)
  IPCS_LB_NICE, IPCS_{LB,SERVER}_CPUSET, IPCS_{LB,SERVER,REGISTRY}_CGROUP_PARENT
                 CPU placement in Docker mode (compose.yaml; docs/DEPLOY.md)
  IPCS_SWARM_ADVERTISE_ADDR
                 --advertise-addr of a swarm bootstrap makes (default: Docker's
                 choice, which fails on a host with several addresses)
  The address plan (network, subnet, registry, ports) is in .env.

Needs: root or sudo (hosts file, raw socket, namespaces); cargo unless
--no-build; Docker mode: a reachable Docker engine and docker compose or
docker-compose; netns mode: iproute2 (ip); --lbs 2+: keepalived (netns mode
runs it, Docker mode copies it into the lb-node image).
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
lbs=""
orig_args=("$@")

positive_int() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 60)); }

while (($#)); do
    case $1 in
    up | down | status | build | key) cmd=$1 ;;
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
    --lbs)
        (($# >= 2)) || die "--lbs needs a value"
        lbs=$2
        [[ "$lbs" =~ ^[0-9]+$ ]] && ((lbs >= 1 && lbs <= 54)) || die "--lbs: '$lbs' is not a number of load balancers in 1..54"
        shift
        ;;
    --docker) mode=docker ;;
    --netns) mode=netns ;;
    --swarm) mode=swarm ;;
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

# What survives the step to sudo: the directories, the log level and the CPU
# placement compose.yaml reads.
PRESERVE_ENV=IPCS_RUN_DIR,IPCS_KEY_FILE,IPCS_KEY_GID,IPCS_BIN_DIR,IPCS_HOSTS_FILE,RUST_LOG,IPCS_LB_NICE
PRESERVE_ENV+=,IPCS_LB_CPUSET,IPCS_SERVER_CPUSET
PRESERVE_ENV+=,IPCS_LB_CGROUP_PARENT,IPCS_SERVER_CGROUP_PARENT,IPCS_REGISTRY_CGROUP_PARENT
PRESERVE_ENV+=,IPCS_SWARM_ADVERTISE_ADDR

mode_file() { printf '%s\n' "$IPCS_RUN_DIR/mode"; }
recorded_mode() { cat "$(mode_file)" 2>/dev/null || true; }

# --- prerequisites ---------------------------------------------------------------------
# Collects everything that is missing and reports it all at once.
# This host's keepalived (Debian's package): installed with apt-get when
# missing and this runs as root. Fails if it is still missing.
ensure_keepalived() {
    [[ -x $KEEPALIVED ]] && return 0
    ((EUID == 0)) && { install_pkg keepalived keepalived || warn "apt-get install keepalived failed"; }
    [[ -x $KEEPALIVED ]]
}

check_prereqs() {
    local want_mode=$1 missing=()
    if ((EUID != 0)) && ! have sudo; then
        missing+=("root or sudo (for $IPCS_HOSTS_FILE, the LB's raw socket on $IPCS_BRIDGE and the network)")
    fi
    ((build)) && ! have cargo && missing+=("cargo (to build the binaries; or pass --no-build)")
    have setsid || missing+=("setsid (util-linux)")
    have timeout || missing+=("timeout (coreutils)")
    if [[ $want_mode == docker || $want_mode == swarm ]]; then
        if ! have docker; then
            missing+=("the docker CLI")
        elif ! docker info >/dev/null 2>&1; then
            missing+=("a reachable Docker engine ('docker info' fails: is dockerd running, may this user use it?)")
        fi
        [[ $want_mode == swarm ]] ||
            find_compose || missing+=("a Compose tool: the 'docker compose' plugin or 'docker-compose'")
    else
        have ip || missing+=("ip (iproute2), for the namespaces and veth pairs")
        have python3 || missing+=("python3, to read ipcs-netns status --json")
    fi
    # The LB tier's VRRP: netns mode runs this host's keepalived, Docker mode
    # copies it into the lb-node image. Debian's package, installed here if
    # missing (as deploy/install-deps.sh does), so a fresh machine needs
    # nothing by hand.
    if ((lbs > 1)) && ! ensure_keepalived; then
        missing+=("keepalived, for the LB tier's VRRP (apt install keepalived, which ./bootstrap.sh does as root; or --lbs 1)")
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
    if [[ -z $lbs ]]; then
        # The LB tier wherever it runs (netns, Docker); swarm runs one LB.
        if [[ $mode == swarm ]]; then lbs=1; else lbs=2; fi
    fi
    if [[ $mode == swarm ]] && ((lbs > 1)); then
        die "--lbs $lbs: swarm mode runs one LB (the LB tier runs in netns and Docker modes)"
    fi
    if [[ $mode == docker ]] && ((lbs > 2)); then
        die "--lbs $lbs: compose.yaml defines two LB nodes (lb1, lb2); add a service per further node (docs/DEPLOY.md, \"The LB tier\")"
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
    exec sudo --preserve-env="$PRESERVE_ENV" "$0" "${orig_args[@]}" --no-build
}

# --- Docker mode ---------------------------------------------------------------------
# compose.yaml defines the whole system, network and LB included: bootstrap
# runs it (`compose up`) and adds only what compose cannot (the hosts entries,
# the checks below, waiting for an answer).
network_field() { docker network inspect -f "$1" "$IPCS_NET" 2>/dev/null; }

# What compose.yaml asks of the network, as `docker network inspect` shows it.
network_settings() {
    network_field '{{.Driver}} {{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.IPRange}} {{.Gateway}}{{end}} {{index .Options "com.docker.network.bridge.name"}}'
}

# Removes every container of the compose project, whatever made it.
remove_project_containers() {
    local ids
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$IPCS_COMPOSE_PROJECT")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086 # one id per word
        docker rm -f $ids >/dev/null
    fi
}

# Earlier versions of bootstrap made the network themselves (label
# org.ipcs.managed-by=bootstrap) and compose used it as external. Compose does
# not adopt a network it did not make, so such a deployment is taken apart
# (its containers hold the network) and compose makes the network anew.
retire_bootstrap_network() {
    docker network inspect "$IPCS_NET" >/dev/null 2>&1 || return 0
    [[ "$(network_field '{{index .Labels "org.ipcs.managed-by"}}')" == bootstrap ]] || return 0
    say "network $IPCS_NET was made by an earlier bootstrap.sh: replacing it (and its containers) with compose's"
    remove_project_containers
    docker network rm "$IPCS_NET" >/dev/null
}

# The network, if it exists, must be compose's with the plan's settings; if it
# does not, the bridge name must be free (a netns deployment holds it).
check_network() {
    if docker network inspect "$IPCS_NET" >/dev/null 2>&1; then
        local project got want
        project=$(network_field '{{index .Labels "com.docker.compose.project"}}')
        [[ $project == "$IPCS_COMPOSE_PROJECT" ]] ||
            die "Docker network '$IPCS_NET' exists but compose did not make it: remove it (docker network rm $IPCS_NET) and run again"
        got=$(network_settings)
        want="bridge true $IPCS_SUBNET $IPCS_IP_RANGE $IPCS_GATEWAY $IPCS_BRIDGE"
        [[ $got == "$want" ]] ||
            die "Docker network '$IPCS_NET' has other settings ($got; want $want, from .env): ./bootstrap.sh down and run again"
        return 0
    fi
    if ip link show "$IPCS_BRIDGE" >/dev/null 2>&1; then
        die "interface $IPCS_BRIDGE exists but is not Docker's network '$IPCS_NET' (a netns deployment or test? './bootstrap.sh down' or 'ipcs-netns down')"
    fi
    bridge_new=1
}

# The lb service's container, if compose made one.
lb_container() { compose ps -q lb 2>/dev/null | head -n 1; }

# Whether the compose LB runs (and is not between two crashes).
compose_lb_alive() {
    local id
    id=$(lb_container)
    [[ -n $id ]] &&
        [[ "$(docker inspect -f '{{.State.Running}} {{.State.Restarting}}' "$id" 2>/dev/null)" == "true false" ]]
}

# The compose LB's log without backtrace frames.
compose_lb_log() {
    local id
    id=$(lb_container)
    [[ -n $id ]] || return 1
    docker logs --tail 200 "$id" 2>&1 | grep -vE '^ +(at |[0-9]+: )' | tail -n "${1:-20}"
}

# UDP port 8080 must be free for the compose LB, or be held by it already.
check_lb_port() {
    local holder
    if holder=$(udp_port_holder) && [[ -n $holder ]] && ! compose_lb_alive; then
        die "UDP port $IPCS_LB_PORT is already in use ($holder): stop that first"
    fi
}

# On a cgroup v1 host with Docker's cgroupfs driver, the containers under
# /docker share one CPU weight, and each as a top-level cgroup measured far
# better at 100k (docs/DEPLOY.md, "Measured placements"). Not a default (the
# systemd driver refuses "/", and a hand-typed compose command would then
# recreate every container), so say it when nothing was chosen.
placement_hint() {
    [[ -z ${IPCS_LB_CGROUP_PARENT+x}${IPCS_SERVER_CGROUP_PARENT+x} ]] || return 0
    [[ "$(docker info --format '{{.CgroupDriver}} {{.CgroupVersion}}' 2>/dev/null)" == "cgroupfs 1" ]] || return 0
    say "hint: this host's Docker (cgroupfs driver, cgroup v1) puts every container under /docker, which shares one CPU weight; for the measured better placement export IPCS_LB_CGROUP_PARENT=/ IPCS_SERVER_CGROUP_PARENT=/ IPCS_REGISTRY_CGROUP_PARENT=/ for ./bootstrap.sh and any compose command (docs/DEPLOY.md, \"Measured placements\")"
}

docker_up() {
    "$IPCS_REPO/deploy/build-images.sh"
    if ((lbs > 1)) && [[ -n "$(missing_images lb-node)" ]]; then
        rm -f "$IPCS_RUN_DIR/lbs"
        die "image $IPCS_IMAGE_REPO/lb-node is missing: the LB tier needs keepalived on this host (apt install keepalived), then ./bootstrap.sh build; or --lbs 1"
    fi
    # A host LB of an earlier bootstrap.sh would hold the LB's port.
    lb_stop
    retire_bootstrap_network
    check_network
    check_lb_port
    hosts_add
    placement_hint
    local lb_before n ids
    lb_before=$(lb_container)
    if ((lbs > 1)); then
        say "starting the network, the registry, $servers servers and $lbs LB nodes sharing $IPCS_VIP (compose project $IPCS_COMPOSE_PROJECT, profile lb-tier)"
    else
        # Nodes of an earlier tier: compose no longer lists them (profile off).
        for ((n = 1; n <= 2; n++)); do
            ids=$(compose_containers "lb$n")
            # shellcheck disable=SC2086 # one id per word
            [[ -z $ids ]] || docker rm -f $ids >/dev/null
        done
        say "starting the network, the registry, $servers servers and the load balancer (compose project $IPCS_COMPOSE_PROJECT)"
    fi
    if ((lbs > 1 && !bridge_new)); then
        # A running tier whose image changed is recreated one node at a
        # time, each waited for until its LB answers, so the VIP always has
        # a live node to move to (compose alone would recreate both at once).
        for ((n = 1; n <= lbs; n++)); do
            [[ -n "$(compose_containers "lb$n")" ]] || continue
            compose_up --no-deps "lb$n" 2>&1 | grep -v 'is up-to-date' || true
            tier_wait_node_up "$n" || warn "LB node $n did not answer within 30 s after its update"
        done
    fi
    compose_up --remove-orphans --scale "server=$servers"
    if ((bridge_new)) && [[ -n $lb_before ]] && ((lbs == 1)); then
        # Its raw socket is bound to the interface index of the old bridge.
        say "$IPCS_BRIDGE was made anew: restarting the load balancer"
        compose restart lb
    fi
}

docker_down() {
    if ! docker_reachable; then
        [[ $(recorded_mode) == netns ]] ||
            warn "the Docker engine is not reachable: containers and network (if any) left as they are"
        return 0
    fi
    # A network of that name that neither compose nor an earlier bootstrap.sh
    # made is someone else's: `compose down` would remove it by name, so then
    # only the containers go.
    local ours=1
    if docker network inspect "$IPCS_NET" >/dev/null 2>&1 &&
        [[ "$(network_field '{{index .Labels "com.docker.compose.project"}}')" != "$IPCS_COMPOSE_PROJECT" &&
            "$(network_field '{{index .Labels "org.ipcs.managed-by"}}')" != bootstrap ]]; then
        ours=0
        warn "network $IPCS_NET was made neither by compose nor by bootstrap.sh: left as it is"
    fi
    if find_compose; then
        if ((ours)); then
            compose down --remove-orphans --timeout 5 || warn "compose down failed (exit $?)"
        else
            compose rm --stop --force || warn "compose rm failed (exit $?)"
        fi
    fi
    # Containers of the project that compose did not remove (no compose tool,
    # a renamed service, an old deployment's).
    remove_project_containers
    # Compose's network outlives `compose down` when a container it did not
    # know held it; an earlier bootstrap's network is not compose's at all.
    if ((ours)) && docker network inspect "$IPCS_NET" >/dev/null 2>&1; then
        docker network rm "$IPCS_NET" >/dev/null
        say "removed network $IPCS_NET"
    fi
    if ((remove_images)); then
        local ids
        ids=$(docker images -q --filter "label=$IPCS_LABEL" | sort -u)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086 # one id per word
            docker rmi -f $ids >/dev/null
            say "removed the IPCS images"
        fi
    fi
}

# --- netns mode: the testbed's harness ------------------------------------------------
netns_tool() { printf '%s\n' "$IPCS_BIN_DIR/ipcs-netns"; }
# The harness keeps its state file and process logs under our run directory.
netns() { "$(netns_tool)" --run-dir "$IPCS_RUN_DIR/netns" "$@"; }

# Whether the netns topology runs its registry and exactly $1 servers, from
# the harness's machine-readable status (no state or no answer: it does not).
netns_runs() {
    netns status --json 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
ok = s.get("registry_running") is True and s.get("servers_running") == int(sys.argv[1])
ok = ok and len(s.get("lb_nodes", [])) == int(sys.argv[2])
sys.exit(0 if ok else 1)' "$1" "$2"
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
    local n=$1 nodes=0
    ((lbs > 1)) && nodes=$lbs
    if netns_is_up; then
        if netns_runs "$n" "$nodes"; then
            say "the netns topology already runs the registry and $n servers ($nodes LB nodes)"
            return 0
        fi
        say "the netns topology differs (wants $n servers running, $nodes LB nodes): recreating it"
        tier_stop
        netns down
    fi
    bridge_new=1
    netns up --servers "$n" --lbs "$nodes" --bin-dir "$IPCS_BIN_DIR" --key-file "$IPCS_KEY_FILE"
}

netns_up() {
    require_binaries ipcs-netns ipcs-registry ipcs-server
    if ! netns_is_up && ip link show "$IPCS_BRIDGE" >/dev/null 2>&1; then
        die "interface $IPCS_BRIDGE already exists (the Docker network '$IPCS_NET', or another harness run): ./bootstrap.sh down first"
    fi
    netns_forward_allow
    say "starting the registry and $servers servers in network namespaces (ipcs-netns)"
    netns_start "$servers"
    # The node count first: calc.batata's address (hosts_add) follows it.
    if ((lbs > 1)); then
        lb_stop
        printf '%s\n' "$lbs" >"$IPCS_RUN_DIR/lbs"
    else
        tier_stop
    fi
    hosts_add
}

# The LB tier: a supervisor per node (ipcs-lb-node) runs its ipcs-lb
# and keepalived; one node takes the VIP once its LB answers.
tier_up() {
    require_binaries ipcs-lb ipcs-lb-node calc ipcs-netns
    local n
    if ((bridge_new)); then
        tier_stop # their namespaces were made anew
        printf '%s\n' "$lbs" >"$IPCS_RUN_DIR/lbs"
    fi
    for ((n = 1; n <= lbs; n++)); do
        tier_start_node "$n"
        tier_wait_node_up "$n" ||
            warn "LB node $n did not answer on its address within 30 s (see $(tier_dir "$n")/lb.log)"
    done
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

# --- the host LB (netns mode; in Docker mode compose runs it) -------------------------
ensure_lb() {
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

# The commands wait_for_answer uses to tell a dead LB, to show its log and
# to tell that calc.batata is on this machine.
lb_alive_cmd() {
    if (($(tier_count) > 1)); then
        echo tier_alive
    elif [[ $mode == docker ]]; then
        echo compose_lb_alive
    elif [[ $mode == swarm ]]; then
        echo swarm_lb_alive
    elif (($(tier_count) > 1)); then
        echo tier_alive
    else
        echo lb_pid
    fi
}
lb_log_cmd() {
    if (($(tier_count) > 1)); then
        echo tier_log_tail
    elif [[ $mode == docker ]]; then
        echo compose_lb_log
    elif [[ $mode == swarm ]]; then
        echo swarm_lb_log
    elif (($(tier_count) > 1)); then
        echo tier_log_tail
    else
        echo lb_log_tail
    fi
}
target_local_cmd() { if [[ $mode == swarm ]]; then echo swarm_target_local; else echo bridge_is_local; fi; }
lb_log_where() {
    if [[ $mode == docker ]] && (($(tier_count) > 1)); then
        printf '%s\n' "'${COMPOSE[*]} logs lb1 lb2'"
    elif [[ $mode == docker ]]; then
        printf '%s\n' "'${COMPOSE[*]} logs lb'"
    elif [[ $mode == swarm ]]; then
        printf '%s\n' "'docker service logs ${IPCS_STACK}_lb'"
    elif (($(tier_count) > 1)); then
        printf '%s\n' "$IPCS_RUN_DIR/lb<n>/{lb,keepalived,supervisor}.log"
    else
        lb_logfile
    fi
}

print_usage_hint() {
    local bin=$IPCS_BIN_DIR t=$IPCS_CALC_HOST:$IPCS_LB_PORT admin=$IPCS_LB_ADMIN what="load balancer"
    if [[ $mode == swarm ]]; then
        printf '\nIPCS is up (swarm mode): stack %s, registry, %s servers and the load balancer on overlay %s,\nclients on %s (log: %s).\n\n' \
            "$IPCS_STACK" "$servers" "$IPCS_SWARM_NET" "$t" "$(lb_log_where)"
    else
        if (($(tier_count) > 1)); then
            what="$(tier_count) load balancers sharing $IPCS_VIP (VRRP)"
            admin="172.16.238.20<n>:7071"
        fi
        printf '\nIPCS is up (%s mode): registry %s (%s:%s), %s servers on %s,\n%s on %s (log: %s, metrics: http://%s/metrics).\n\n' \
            "$mode" "$IPCS_REGISTRY_HOST" "$IPCS_REGISTRY_IP" "$IPCS_REGISTRY_PORT" "$servers" \
            "$IPCS_BRIDGE" "$what" "$t" "$(lb_log_where)" "$admin"
    fi
    hint() { printf '  %-44s # %s\n' "$1" "$2"; }
    printf "  export PATH=\"%s:\$PATH\"\n" "$bin"
    hint "calc $t" "the calculator's prompt"
    hint "calc $t '6*7'" "one answer, for scripts"
    hint "loadgen --rps 100000 $t" "load: throughput and latency"
    hint "./bootstrap.sh scale 5" "servers up or down"
    [[ $mode == docker ]] && hint "${COMPOSE[*]} up -d --scale server=5" "the same by hand"
    [[ $mode == swarm ]] && hint "docker service scale ${IPCS_STACK}_server=5" "the same by hand"
    hint "./bootstrap.sh status" "what runs"
    hint "./bootstrap.sh down" "stop and remove everything"
}

# Prometheus file-based discovery of the LBs' admin endpoints
# (deploy/prometheus/prometheus.yml reads it): one LB on the host's loopback,
# or each node of the netns LB tier on its own address. The registry knows
# the servers (its /sd/servers) but not the LBs; bootstrap does.
lb_targets_file() { printf '%s\n' "$IPCS_RUN_DIR/prometheus/lb-targets.json"; }
write_lb_targets() {
    local n targets=()
    if (($(tier_count) > 1)); then
        for ((n = 1; n <= $(tier_count); n++)); do
            targets+=("\"$(tier_node_admin "$n")\"")
        done
    else
        targets=("\"$IPCS_LB_ADMIN\"")
    fi
    mkdir -p "$IPCS_RUN_DIR/prometheus"
    local IFS=,
    # Written aside and renamed: Prometheus never reads half a file.
    printf '[{"targets":[%s],"labels":{"mode":"%s"}}]\n' "${targets[*]}" "$mode" >"$(lb_targets_file).tmp"
    mv "$(lb_targets_file).tmp" "$(lb_targets_file)"
}

cmd_up() {
    choose_mode
    check_prereqs "$mode"
    become_root_if_needed
    ((build)) && build_binaries
    require_binaries ipcs-registry ipcs-server ipcs-lb calc ipcs-registry-query
    mkdir -p "$IPCS_RUN_DIR"
    ensure_key || die "cannot make the deployment key $IPCS_KEY_FILE"
    case $mode in
    docker)
        # Before compose runs: compose() and hosts_add follow the node count.
        if ((lbs > 1)); then
            printf '%s\n' "$lbs" >"$IPCS_RUN_DIR/lbs"
        else
            rm -f "$IPCS_RUN_DIR/lbs"
        fi
        docker_up
        ;;
    swarm)
        rm -f "$IPCS_RUN_DIR/lbs"
        swarm_up
        ;;
    *) netns_up ;;
    esac
    printf '%s\n' "$mode" >"$(mode_file)"
    if [[ $mode == netns ]]; then
        if ((lbs > 1)); then tier_up; else ensure_lb; fi
    fi
    say "waiting up to ${timeout_s}s for an answer through $IPCS_CALC_HOST:$IPCS_LB_PORT"
    wait_for_answer "$timeout_s" "$(lb_alive_cmd)" "$(lb_log_cmd)" "$(target_local_cmd)" ||
        die "no answer to 1+1 through $IPCS_CALC_HOST:$IPCS_LB_PORT within ${timeout_s}s (see ./bootstrap.sh status and $(lb_log_where))"
    say "calc $IPCS_CALC_HOST:$IPCS_LB_PORT 1+1 = 2"
    write_lb_targets
    print_usage_hint
}

cmd_scale() {
    mode=$(recorded_mode)
    [[ -n $mode ]] || die "nothing is up (no $(mode_file)): run ./bootstrap.sh first"
    if [[ $mode == swarm ]]; then
        swarm_scale "$scale_to" || die "docker service scale ${IPCS_STACK}_server=$scale_to failed"
    elif [[ $mode == docker ]]; then
        find_compose || die "no Compose tool (docker compose or docker-compose)"
        local missing images=(registry server lb)
        (($(tier_count) > 1)) && images=(registry server lb-node)
        missing=$(missing_images "${images[@]}" | tr '\n' ' ')
        [[ -z $missing ]] || die "images missing: $missing(run ./bootstrap.sh build first)"
        # The whole system, so a stopped LB or registry comes back too.
        compose_up --no-recreate --scale "server=$scale_to"
    else
        require_binaries ipcs-netns ipcs-server
        # Adds or removes servers in place: the registry, the bridge and the
        # LB keep running, and the LB learns the change from the registry.
        netns scale "$scale_to" --bin-dir "$IPCS_BIN_DIR" >/dev/null
        wait_for_answer "$timeout_s" "$(lb_alive_cmd)" "$(lb_log_cmd)" ||
            die "no answer through $IPCS_CALC_HOST:$IPCS_LB_PORT within ${timeout_s}s after scaling"
    fi
    say "$scale_to servers requested; the LB learns them from the registry within its poll interval"
}

cmd_down() {
    if ((EUID != 0)); then
        have sudo || die "down needs root or sudo"
        exec sudo --preserve-env="$PRESERVE_ENV" "$0" "${orig_args[@]}"
    fi
    lb_stop
    tier_stop
    # Every mode is taken down whatever was recorded, so a half-made
    # deployment (mode file never written) is cleaned too.
    swarm_down
    docker_down
    netns_down
    hosts_remove
    rm -f "$(mode_file)" "$(lb_logfile)" "$IPCS_KEY_FILE" "$IPCS_RUN_DIR/lbs"
    rm -rf "$IPCS_RUN_DIR/prometheus"
    rmdir "$IPCS_RUN_DIR" 2>/dev/null || true
    say "down: nothing of IPCS left running"
}

cmd_status() {
    local m pid
    m=$(recorded_mode)
    echo "mode:          ${m:-none (not up)}"
    if (($(tier_count) > 1)); then
        local n holder
        holder=$(tier_vip_holder)
        echo "load balancers: $(tier_count) nodes sharing $IPCS_CALC_HOST ($IPCS_VIP:$IPCS_LB_PORT); held by node ${holder:-none}"
        for ((n = 1; n <= $(tier_count); n++)); do
            echo "  node $n: $(tier_node_ip "$n"), supervisor $(tier_supervisor_pid "$n" || echo gone), ipcs-lb $(tier_lb_pid "$n" || echo gone), down file $(cat "$(tier_dir "$n")/down" 2>/dev/null || echo -), $(if docker_tier; then echo "files $(tier_dir "$n"), log: ${COMPOSE[*]:-docker compose} logs lb$n"; else echo "logs $(tier_dir "$n")"; fi)"
        done
    elif pid=$(lb_pid); then
        echo "load balancer: running on the host, pid $pid, $IPCS_CALC_HOST:$IPCS_LB_PORT, log $(lb_logfile)"
    elif docker_reachable && find_compose && compose_lb_alive; then
        echo "load balancer: running as compose service lb (container $(lb_container | cut -c1-12), host network), $IPCS_CALC_HOST:$IPCS_LB_PORT"
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
            compose ps 2>/dev/null | sed 's/^/  /'
        fi
    fi
    if [[ $m == swarm ]] && docker_reachable; then
        swarm_status
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

# The images (and binaries) only: what compose.yaml needs to run by itself.
cmd_build() {
    ((build)) && build_binaries
    docker_reachable || die "the Docker engine is not reachable ('docker info' fails): the images need it"
    # The lb-node image (the default Docker deployment's LB tier) copies this
    # host's keepalived: install it as `up` would, so `build` makes every image.
    ensure_keepalived || true
    "$IPCS_REPO/deploy/build-images.sh"
    ensure_key || warn "cannot make the deployment key $IPCS_KEY_FILE: run ./bootstrap.sh key as root before compose up"
    find_compose || warn "no Compose tool (docker compose or docker-compose) to run them with"
    say "images built; from $IPCS_REPO: ${COMPOSE[*]:-docker compose} up -d --scale server=N (or ./bootstrap.sh)"
}

# The deployment key only (compose.yaml mounts it; compose up refuses without).
cmd_key() {
    if ((EUID != 0)) && ! [[ -w $(dirname "$IPCS_KEY_FILE") ]]; then
        have sudo || die "key needs root or sudo (to write $IPCS_KEY_FILE)"
        exec sudo --preserve-env="$PRESERVE_ENV" "$0" "${orig_args[@]}"
    fi
    ensure_key || die "cannot make the deployment key $IPCS_KEY_FILE"
    say "deployment key: $IPCS_KEY_FILE"
}

case $cmd in
build) cmd_build ;;
key) cmd_key ;;
up) cmd_up ;;
scale) cmd_scale ;;
down) cmd_down ;;
status) cmd_status ;;
esac
