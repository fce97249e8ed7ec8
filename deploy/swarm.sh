# shellcheck shell=bash
# Swarm mode of bootstrap.sh (./bootstrap.sh --swarm): deploy/stack.yaml as
# the stack "ipcs" on this node's swarm, initialising a single-node swarm
# only when the node is in none, and taking down exactly what it made.
# Sourced by bootstrap.sh after deploy/lib.sh; defines functions only.
#
# What bootstrap made is recorded in $IPCS_RUN_DIR/swarm, one word each:
#   swarm=made|kept        made: `docker swarm init` was ours, `down` leaves it
#   gwbridge=made|kept     made: docker_gwbridge (which Swarm creates for
#                          published ports and outlives `swarm leave`) was not
#                          there before, so `down` removes it

IPCS_STACK=$IPCS_COMPOSE_PROJECT

swarm_state_file() { printf '%s\n' "$IPCS_RUN_DIR/swarm"; }
swarm_recorded() { grep -qw -- "$1" "$(swarm_state_file)" 2>/dev/null; }
swarm_node_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }
swarm_is_manager() { [[ "$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" == true ]]; }
swarm_stack_exists() {
    swarm_is_manager && docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx -- "$IPCS_STACK"
}

# Joins nothing: uses the swarm this node manages, or makes a single-node
# one (IPCS_SWARM_ADVERTISE_ADDR picks its address where Docker cannot).
swarm_ensure() {
    local state gwbridge=kept
    state=$(swarm_node_state)
    case $state in
    active)
        swarm_is_manager || die "this node is a swarm worker: run ./bootstrap.sh --swarm on a manager"
        [[ -e "$(swarm_state_file)" ]] || say "using the swarm this node manages (bootstrap did not make it; down leaves it)"
        ;;
    inactive)
        docker network inspect docker_gwbridge >/dev/null 2>&1 || gwbridge=made
        local args=(swarm init)
        [[ -n ${IPCS_SWARM_ADVERTISE_ADDR:-} ]] && args+=(--advertise-addr "$IPCS_SWARM_ADVERTISE_ADDR")
        docker "${args[@]}" >/dev/null ||
            die "docker ${args[*]} failed (several addresses? set IPCS_SWARM_ADVERTISE_ADDR)"
        printf 'swarm=made gwbridge=%s\n' "$gwbridge" >"$(swarm_state_file)"
        say "initialised a single-node swarm (./bootstrap.sh down leaves it again)"
        ;;
    *) die "this node's swarm state is '$state' (docker info): settle it first" ;;
    esac
    [[ -e "$(swarm_state_file)" ]] || printf 'swarm=kept gwbridge=kept\n' >"$(swarm_state_file)"
}

# `docker stack deploy` reads no .env: the plan goes through the environment.
swarm_export_plan() {
    export IPCS_REGISTRY_PORT IPCS_LB_PORT IPCS_SWARM_NET IPCS_SWARM_SUBNET
    export IPCS_SWARM_SERVERS=$servers RUST_LOG=${RUST_LOG:-info}
}

# The node's own address: where the LB's host-mode published port is
# reached through the kernel (127.0.0.1 goes through docker-proxy).
swarm_node_addr() { docker info --format '{{.Swarm.NodeAddr}}' 2>/dev/null; }

swarm_up() {
    "$IPCS_REPO/deploy/build-images.sh"
    swarm_ensure
    local holder
    if holder=$(udp_port_holder) && [[ -n $holder ]] && ! swarm_stack_exists; then
        die "UDP port $IPCS_LB_PORT is already in use ($holder): stop that first"
    fi
    IPCS_CALC_ADDR=$(swarm_node_addr)
    [[ -n $IPCS_CALC_ADDR ]] || die "the swarm reports no node address (docker info)"
    IPCS_HOSTS_REGISTRY=0 # the registry is on the overlay, out of the host's reach
    hosts_add
    swarm_export_plan
    say "deploying stack $IPCS_STACK: overlay $IPCS_SWARM_NET ($IPCS_SWARM_SUBNET), the registry, $servers servers, the load balancer"
    # --resolve-image never: the images are local (localhost/ipcs/*), no
    # registry is asked for their digests.
    docker stack deploy --resolve-image never -c "$IPCS_REPO/deploy/stack.yaml" "$IPCS_STACK" >/dev/null
}

# What wait_for_answer needs: the LB service exists, its log.
swarm_lb_alive() { docker service inspect "${IPCS_STACK}_lb" >/dev/null 2>&1; }
swarm_lb_log() { docker service logs --tail "${1:-20}" "${IPCS_STACK}_lb" 2>&1 | grep -vE '^ +(at |[0-9]+: )'; }
# calc.batata is the node's address in swarm mode: always local.
swarm_target_local() { [[ -n "$(swarm_node_addr)" ]]; }

# Runs n servers. Detached: the attached command also waits out Swarm's 5 s
# convergence check; the LB learns new servers from the registry anyway.
swarm_scale() {
    docker service scale --detach "${IPCS_STACK}_server=$1" >/dev/null
}

swarm_status() {
    echo "stack $IPCS_STACK (swarm node address $(swarm_node_addr)):"
    docker stack services "$IPCS_STACK" 2>&1 | sed 's/^/  /'
}

# Removes the stack and its network, then the swarm and docker_gwbridge if
# bootstrap made them. `docker stack rm` returns before the tasks stop and
# the network goes: wait (30 s at most) for both.
swarm_down() {
    docker_reachable || return 0
    if swarm_stack_exists; then
        docker stack rm "$IPCS_STACK" >/dev/null || warn "docker stack rm $IPCS_STACK failed (exit $?)"
        local i
        for ((i = 0; i < 150; i++)); do
            [[ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$IPCS_STACK")" ]] &&
                ! docker network inspect "$IPCS_SWARM_NET" >/dev/null 2>&1 && break
            sleep 0.2
        done
        say "removed stack $IPCS_STACK"
    fi
    if docker network inspect "$IPCS_SWARM_NET" >/dev/null 2>&1 &&
        [[ "$(docker network inspect -f '{{index .Labels "com.docker.stack.namespace"}}' "$IPCS_SWARM_NET")" == "$IPCS_STACK" ]]; then
        docker network rm "$IPCS_SWARM_NET" >/dev/null || warn "could not remove network $IPCS_SWARM_NET"
    fi
    if swarm_recorded swarm=made && [[ "$(swarm_node_state)" == active ]]; then
        docker swarm leave --force >/dev/null && say "left the swarm bootstrap made"
    fi
    if swarm_recorded gwbridge=made && docker network inspect docker_gwbridge >/dev/null 2>&1; then
        docker network rm docker_gwbridge >/dev/null && say "removed docker_gwbridge (made with the swarm)"
    fi
    rm -f "$(swarm_state_file)"
}
