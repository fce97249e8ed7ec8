#!/usr/bin/env bash
# Supervises one node of the LB tier in netns mode (bootstrap.sh --netns
# starts one per node, detached): runs keepalived and ipcs-lb in the node's
# namespace and starts either again when it exits. It is also the node's
# health reporter to keepalived: the node's down file holds 1 from the
# moment its LB exits until the restarted LB answers on the node's own
# address, 0 in between (keepalived watches the file with inotify, so a
# dead LB demotes the node at once; docs/DEPLOY.md, "The LB tier").
# SIGTERM stops both (keepalived then hands the address over) and exits.
set -uo pipefail

usage() {
    cat <<EOF
Usage: deploy/lb-node.sh --node N --netns NS --dir DIR --bin-dir DIR --registry HOST:PORT
                         --key-file PATH

  --node N             the LB node (from 1); its address is 172.16.238.(200+N)
  --netns NS           the node's network namespace (ipcs-netns up --lbs)
  --dir DIR            the node's directory: keepalived.conf (ipcs-netns
                       vrrp-config) must be there; the down file, pid files
                       (lb.pid, keepalived*.pid) and logs (lb.log,
                       keepalived.log) go there
  --bin-dir DIR        where ipcs-lb, calc and ipcs-netns are
  --registry HOST:PORT the registry the LB follows
  --key-file PATH      the deployment key the LB proves its questions with
EOF
}

node="" netns="" dir="" bin="" registry="" key=""
while (($#)); do
    case $1 in
    --node | --netns | --dir | --bin-dir | --registry | --key-file)
        (($# >= 2)) || {
            echo "lb-node: $1 needs a value" >&2
            exit 2
        }
        case $1 in
        --node) node=$2 ;;
        --netns) netns=$2 ;;
        --dir) dir=$2 ;;
        --bin-dir) bin=$2 ;;
        --registry) registry=$2 ;;
        --key-file) key=$2 ;;
        esac
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "lb-node: unknown argument: $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done
[[ $node =~ ^[0-9]+$ && -n $netns && -d $dir && -x $bin/ipcs-lb && -n $registry && -r $key ]] || {
    usage >&2
    exit 2
}
[[ -r $dir/keepalived.conf ]] || {
    echo "lb-node: $dir/keepalived.conf is missing (ipcs-netns vrrp-config writes it)" >&2
    exit 2
}
ip=172.16.238.$((200 + node))

log() { printf '%s lb-node %s: %s\n' "$(date -Is)" "$node" "$*"; }
mark() { printf '%s\n' "$1" >"$dir/down"; }

lb="" ka="" stopping=0
on_term() {
    stopping=1
    [[ -n $lb ]] && kill -TERM "$lb" 2>/dev/null
    [[ -n $ka ]] && kill -TERM "$ka" 2>/dev/null
}
trap on_term TERM INT

start_keepalived() {
    ip netns exec "$netns" keepalived -n -l -D -P -f "$dir/keepalived.conf" \
        -p "$dir/keepalived.pid" -r "$dir/keepalived-vrrp.pid" -c "$dir/keepalived-checkers.pid" \
        </dev/null >>"$dir/keepalived.log" 2>&1 &
    ka=$!
    log "keepalived started (pid $ka)"
}

start_lb() {
    mark 1
    # The admin endpoint on the node's address: reachable from the host.
    RUST_LOG=${RUST_LOG:-info} ip netns exec "$netns" "$bin/ipcs-lb" \
        --listen 0.0.0.0:8080 --admin "$ip:7071" --iface eth0 --registry "$registry" \
        --key-file "$key" </dev/null >>"$dir/lb.log" 2>&1 &
    lb=$!
    printf '%s\n' "$lb" >"$dir/lb.pid"
    log "ipcs-lb started (pid $lb)"
}

# Until the LB answers 1+1 on the node's own address (or dies): then the
# node may hold the VIP.
wait_answering() {
    local i
    for ((i = 0; i < 300 && !stopping; i++)); do
        kill -0 "$lb" 2>/dev/null || return 1
        if timeout 2 "$bin/calc" --timeout 200ms --attempts 1 "$ip:8080" 1+1 >/dev/null 2>&1; then
            mark 0
            log "ipcs-lb answers on $ip:8080: node up"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

mark 1
start_keepalived
start_lb
wait_answering
while ((!stopping)); do
    # Wakes when either child exits (or a trapped signal arrives).
    wait -n "$lb" "$ka" 2>/dev/null
    ((stopping)) && break
    if ! kill -0 "$lb" 2>/dev/null; then
        mark 1 # first: keepalived demotes the node now
        wait "$lb" 2>/dev/null
        log "ipcs-lb (pid $lb) exited (status $?): node down, restarting it"
        sleep 0.2
        start_lb
        wait_answering
    fi
    if ! kill -0 "$ka" 2>/dev/null; then
        wait "$ka" 2>/dev/null
        log "keepalived (pid $ka) exited (status $?): restarting it"
        sleep 0.2
        start_keepalived
    fi
done
mark 1
wait "$lb" "$ka" 2>/dev/null
rm -f "$dir/lb.pid"
log "stopped"
exit 0
