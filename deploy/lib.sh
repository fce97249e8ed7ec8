# shellcheck shell=bash disable=SC2034
# Shared by bootstrap.sh, deploy/build-images.sh and deploy/e2e.sh: the fixed
# names and addresses of an IPCS deployment and the small steps every script
# needs (finding the Compose tool, editing /etc/hosts, running the host LB).
# Sourced, never run: it defines variables and functions and does nothing else.

IPCS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- the address plan: .env, which compose reads too ------------------------
# Each KEY=VALUE line of .env becomes a shell variable unless the environment
# already sets it: compose gives the environment the same precedence, so both
# see the same plan. Defines IPCS_NET, IPCS_BRIDGE, IPCS_SUBNET, IPCS_GATEWAY,
# IPCS_IP_RANGE, IPCS_REGISTRY_IP, IPCS_REGISTRY_PORT, IPCS_REGISTRY_HOST,
# IPCS_LB_PORT, IPCS_LB_ADMIN and COMPOSE_PROJECT_NAME (the topology in
# docs/DEPLOY.md).
load_plan() {
    local key value
    [[ -r "$IPCS_REPO/.env" ]] || die "$IPCS_REPO/.env is missing: it holds the address plan"
    while IFS='=' read -r key value; do
        [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue # comments, blank lines
        [[ -v $key ]] || printf -v "$key" '%s' "$value"
    done <"$IPCS_REPO/.env"
}

# --- fixed names that only the scripts use ------------------------------------
IPCS_CALC_HOST=calc.batata          # the host (IPCS_GATEWAY), where the LB listens
IPCS_LABEL=org.ipcs.managed-by=bootstrap
IPCS_HOSTS_TAG="# ipcs-bootstrap"   # marks the /etc/hosts lines bootstrap owns
IPCS_TARGET=x86_64-unknown-linux-gnu
# Images are named under the registry "localhost", so nothing can ever pull
# them from a public registry (a pull would only ask this machine and fail).
# compose.yaml names the same images.
IPCS_IMAGE_REPO=localhost/ipcs
IPCS_IMAGES=(registry server lb lb-node)
# The keepalived binary the lb-node image takes (Debian's package keepalived).
KEEPALIVED=${KEEPALIVED:-/usr/sbin/keepalived}

IPCS_RUN_DIR=${IPCS_RUN_DIR:-/run/ipcs}
# The deployment key (docs/SECURITY.md): 32 random bytes as 64 hex digits,
# owner root, group IPCS_KEY_GID, mode 0640, made once by ensure_key
# (./bootstrap.sh up, build or key) and removed by ./bootstrap.sh down. The
# registry, the servers and the LB read it from this file (compose mounts it
# as the secret ipcs_key); it is never on a command line or in an image.
# The group: the registry's image runs as nobody (65534), and a compose
# secret is a bind mount keeping the host's owner and mode, so the registry
# container joins this otherwise unused group (compose.yaml group_add) to
# read it; the servers and the LB start as root. Exported: compose reads both.
IPCS_KEY_FILE=${IPCS_KEY_FILE:-$IPCS_RUN_DIR/key}
IPCS_KEY_GID=${IPCS_KEY_GID:-7070}
export IPCS_KEY_FILE IPCS_KEY_GID

# A test's own run directory (a fresh temporary one): pidfiles, logs and its
# own deployment key, so a test never shares them with, nor removes, those of
# a deployment the user runs.
use_own_run_dir() { # NAME
    IPCS_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ipcs-$1.$$.XXXXXX")
    IPCS_KEY_FILE=$IPCS_RUN_DIR/key
    export IPCS_RUN_DIR IPCS_KEY_FILE
}
IPCS_HOSTS_FILE=${IPCS_HOSTS_FILE:-/etc/hosts}
# Statically linked release binaries: the same files go into the scratch
# images and run on the host (LB, calc, loadgen) and in the namespaces.
IPCS_BIN_DIR=${IPCS_BIN_DIR:-$IPCS_REPO/target/static/$IPCS_TARGET/release}

# --- messages ----------------------------------------------------------------
say() { printf '%s\n' "${IPCS_LOG_PREFIX:-ipcs}: $*"; }
warn() { printf '%s\n' "${IPCS_LOG_PREFIX:-ipcs}: warning: $*" >&2; }
die() {
    printf '%s\n' "${IPCS_LOG_PREFIX:-ipcs}: error: $*" >&2
    exit 1
}

load_plan
IPCS_COMPOSE_PROJECT=$COMPOSE_PROJECT_NAME

# --- tools -------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }

docker_reachable() { have docker && docker info >/dev/null 2>&1; }

# Installs Debian package PACKAGE with apt-get when COMMAND is missing (one
# `apt-get update` per run; needs root). Fails if it is still missing.
IPCS_APT_UPDATED=0
install_pkg() { # COMMAND PACKAGE
    have "$1" && return 0
    have apt-get || return 1
    printf '%s\n' "${IPCS_LOG_PREFIX:-ipcs}: $1 missing, installing Debian package $2"
    if ((IPCS_APT_UPDATED == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        IPCS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null && have "$1"
}

# Sets the array COMPOSE to the Compose tool that is installed: the
# `docker compose` plugin if present, else `docker-compose` (v1). Returns 1
# if neither exists.
COMPOSE=()
find_compose() {
    if have docker && docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif have docker-compose; then
        COMPOSE=(docker-compose)
    else
        return 1
    fi
}

# Runs the Compose tool on the repository's compose.yaml as project `ipcs`,
# whatever the current directory is. With IPCS_FAULT_INJECTION=1 (set by
# deploy/chaos.sh for itself and the bootstrap.sh it runs, so scaling keeps
# it) the test-only fault-injection layer is added.
compose() {
    ((${#COMPOSE[@]})) || find_compose || die "no Compose tool (docker compose or docker-compose)"
    local files=(-f "$IPCS_REPO/compose.yaml")
    [[ ${IPCS_FAULT_INJECTION:-0} == 1 ]] && files+=(-f "$IPCS_REPO/deploy/docker/compose.faults.yaml")
    # An LB tier (bootstrap --lbs 2, recorded in $IPCS_RUN_DIR/lbs) is
    # compose.yaml's profile lb-tier: every command must see its services.
    local profiles=${COMPOSE_PROFILES:-}
    (($(tier_count) > 1)) && profiles=lb-tier
    COMPOSE_PROFILES=$profiles "${COMPOSE[@]}" --project-directory "$IPCS_REPO" "${files[@]}" \
        -p "$IPCS_COMPOSE_PROJECT" "$@"
}

# `compose up -d` with the services of the deployment: with an LB tier its
# nodes run and the single lb service does not.
compose_up() {
    if (($(tier_count) > 1)); then
        # Options first: service names (in "$@") end the command line.
        compose up -d --scale lb=0 "$@"
    else
        compose up -d "$@"
    fi
}

# Builds every binary of the workspace, statically linked (crt-static only for
# the target, so build scripts and proc-macros are unaffected), into its own
# target dir so it never invalidates the normal `cargo build`.
build_binaries() {
    have cargo || die "cargo is not installed (needed to build the binaries)"
    say "building release binaries (static) into ${IPCS_BIN_DIR#"$IPCS_REPO"/}"
    (cd "$IPCS_REPO" &&
        RUSTFLAGS="-C target-feature=+crt-static ${RUSTFLAGS:-}" \
            cargo build --release --bins --target "$IPCS_TARGET" \
            --target-dir "$IPCS_REPO/target/static")
}

# Makes the deployment key unless it exists: 32 bytes from /dev/urandom as
# 64 hex digits, readable by nobody else from the start (mktemp makes 0600),
# then group IPCS_KEY_GID and mode 0640, written whole or not at all
# (rename). An existing key is kept, so running processes keep theirs.
ensure_key() {
    [[ -s $IPCS_KEY_FILE ]] && return 0
    local dir tmp
    dir=$(dirname "$IPCS_KEY_FILE")
    mkdir -p "$dir" || return 1
    tmp=$(mktemp "$dir/.key.XXXXXX") || return 1
    if ! { od -An -tx1 -N32 /dev/urandom | tr -d ' \n' && echo; } >"$tmp" ||
        [[ $(wc -c <"$tmp") != 65 ]] ||
        ! chgrp "$IPCS_KEY_GID" "$tmp" || ! chmod 0640 "$tmp"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$IPCS_KEY_FILE"
    say "made the deployment key $IPCS_KEY_FILE (group $IPCS_KEY_GID, mode 0640)"
}

# Fails unless every named binary is in IPCS_BIN_DIR.
require_binaries() {
    local missing=() b
    for b in "$@"; do
        [[ -x "$IPCS_BIN_DIR/$b" ]] || missing+=("$b")
    done
    ((${#missing[@]} == 0)) ||
        die "missing binaries in $IPCS_BIN_DIR: ${missing[*]} (build them: ./bootstrap.sh without --no-build)"
}

# The images compose.yaml runs that are not in the local image store.
missing_images() { # [IMAGE...] (default: all)
    local image
    (($#)) || set -- "${IPCS_IMAGES[@]}"
    for image in "$@"; do
        docker image inspect "$IPCS_IMAGE_REPO/$image:latest" >/dev/null 2>&1 ||
            printf '%s\n' "$IPCS_IMAGE_REPO/$image:latest"
    done
}

# --- /etc/hosts ----------------------------------------------------------------
# The address calc.batata names: IPCS_CALC_ADDR if set (swarm mode: the
# node's address), the VIP while an LB tier runs (tier_count above 1), else
# the host's address on the bridge, where the one LB listens.
calc_ip() {
    if [[ -n ${IPCS_CALC_ADDR:-} ]]; then
        printf '%s\n' "$IPCS_CALC_ADDR"
    elif (($(tier_count) > 1)); then
        printf '%s\n' "$IPCS_VIP"
    else
        printf '%s\n' "$IPCS_GATEWAY"
    fi
}

# The lines bootstrap adds, each tagged so `down` removes exactly them.
# IPCS_HOSTS_REGISTRY=0 (swarm mode, where the registry is on the overlay)
# leaves registry.batata out.
hosts_lines() {
    printf '%s %s %s\n' "$(calc_ip)" "$IPCS_CALC_HOST" "$IPCS_HOSTS_TAG"
    if [[ ${IPCS_HOSTS_REGISTRY:-1} == 1 ]]; then
        printf '%s %s %s\n' "$IPCS_REGISTRY_IP" "$IPCS_REGISTRY_HOST" "$IPCS_HOSTS_TAG"
    fi
}

hosts_has_tagged() { grep -qF -- "$IPCS_HOSTS_TAG" "$IPCS_HOSTS_FILE" 2>/dev/null; }

# Rewrites the hosts file in place (it is often a bind mount that cannot be
# replaced by rename) with the tagged lines removed, then appends `extra`.
hosts_rewrite() {
    local extra=$1 tmp
    tmp=$(mktemp "${TMPDIR:-/tmp}/ipcs-hosts.XXXXXX")
    grep -vF -- "$IPCS_HOSTS_TAG" "$IPCS_HOSTS_FILE" >"$tmp" || true
    printf '%s' "$extra" >>"$tmp"
    cat "$tmp" >"$IPCS_HOSTS_FILE"
    rm -f "$tmp"
}

# Adds the tagged lines once: if they are already there exactly, nothing is
# written; otherwise any old tagged lines are replaced.
hosts_add() {
    local want
    want=$(hosts_lines)
    if [[ "$(grep -F -- "$IPCS_HOSTS_TAG" "$IPCS_HOSTS_FILE" 2>/dev/null)" == "$want" ]]; then
        say "$IPCS_HOSTS_FILE already has the entries for $(awk '{ printf "%s%s", sep, $2; sep = " and " }' <<<"$want")"
        return 0
    fi
    local name
    for name in "$IPCS_CALC_HOST" "$IPCS_REGISTRY_HOST"; do
        if grep -vF -- "$IPCS_HOSTS_TAG" "$IPCS_HOSTS_FILE" | grep -v '^[[:space:]]*#' |
            grep -qw -- "$name"; then
            warn "$IPCS_HOSTS_FILE has another entry for $name (not ours; left as is, it may win)"
        fi
    done
    hosts_rewrite "$want"$'\n'
    say "added to $IPCS_HOSTS_FILE: $(awk '{ printf "%s%s -> %s", sep, $2, $1; sep = ", " }' <<<"$want")"
}

hosts_remove() {
    if hosts_has_tagged; then
        hosts_rewrite ""
        say "removed the tagged entries from $IPCS_HOSTS_FILE"
    fi
}

# --- the load balancer on the host ------------------------------------------------
lb_pidfile() { printf '%s\n' "$IPCS_RUN_DIR/lb.pid"; }
lb_logfile() { printf '%s\n' "$IPCS_RUN_DIR/lb.log"; }

# Prints the pid of the running host LB, if the pidfile names a live ipcs-lb
# process (a stale pidfile, or a pid reused by something else, is not ours).
lb_pid() {
    local pid exe
    pid=$(cat "$(lb_pidfile)" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ "${exe##*/}" == ipcs-lb* ]] || return 1
    printf '%s\n' "$pid"
}

# What holds UDP port $IPCS_LB_PORT on the host, if anything (ss's users:
# field), so a clash is reported before the LB fails to bind.
udp_port_holder() {
    have ss || return 1
    ss -H -ulnp "sport = :$IPCS_LB_PORT" 2>/dev/null | grep -oE 'users:\(\(.*\)\)' | head -n 1
}

# The LB's log without backtrace frames (RUST_BACKTRACE makes errors long).
lb_log_tail() {
    grep -vE '^ +(at |[0-9]+: )' "$(lb_logfile)" 2>/dev/null | tail -n "${1:-20}"
}

# Starts the LB detached (own session, stdin closed, output to the log file).
lb_start() {
    mkdir -p "$IPCS_RUN_DIR"
    local log holder
    log=$(lb_logfile)
    if holder=$(udp_port_holder) && [[ -n $holder ]]; then
        die "UDP port $IPCS_LB_PORT is already in use ($holder): stop that first (another deployment with another IPCS_RUN_DIR, or the compose lb service?)"
    fi
    printf '\n--- %s starting ipcs-lb\n' "$(date -Is)" >>"$log"
    RUST_LOG=${RUST_LOG:-info} setsid "$IPCS_BIN_DIR/ipcs-lb" \
        --listen "0.0.0.0:$IPCS_LB_PORT" --iface "$IPCS_BRIDGE" \
        --registry "$IPCS_REGISTRY_HOST:$IPCS_REGISTRY_PORT" --admin "$IPCS_LB_ADMIN" \
        --key-file "$IPCS_KEY_FILE" </dev/null >>"$log" 2>&1 &
    local pid=$! i
    printf '%s\n' "$pid" >"$(lb_pidfile)"
    # Until the background shell has exec'd ipcs-lb, /proc/<pid>/exe is still
    # bash and lb_pid would call it "not running": wait for the exec.
    for ((i = 0; i < 100; i++)); do
        lb_pid >/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    if ! lb_pid >/dev/null; then
        lb_log_tail 20 >&2 || true
        die "ipcs-lb (pid $pid) did not start; its log is above"
    fi
    say "load balancer started (pid $pid, log $log)"
}

# Stops the host LB: SIGTERM (it answers what is in flight, within its
# --drain-timeout of 5 s), then SIGKILL after 7 s. Always removes the pidfile.
lb_stop() {
    local pid i
    if pid=$(lb_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 70; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "ipcs-lb (pid $pid) ignored SIGTERM for 7 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "load balancer stopped (pid $pid)"
    fi
    rm -f "$(lb_pidfile)"
}

# --- the LB tier (LB nodes sharing the VIP through keepalived) ---------------------
# Each node n runs a supervisor (ipcs-lb-node) with its ipcs-lb and keepalived
# in the node's network namespace, and has a directory with its
# keepalived.conf, down file, pid files and master.log. $IPCS_RUN_DIR/lbs
# holds the number of nodes. netns mode: namespace ipcs-lb<n>, directory
# $IPCS_RUN_DIR/lb<n> (also the logs), the supervisor's pid in
# supervisor.pid. Docker mode: compose service lb<n> (profile lb-tier), the
# directory /run/ipcs-lb-node in the container (seen from here through
# /proc/<pid>/root), the logs in `docker logs`.
tier_count() { cat "$IPCS_RUN_DIR/lbs" 2>/dev/null || echo 1; }
# Node n's address: the VIP's /24, host part 200 + n (lbnode/src/vrrp.rs,
# lb_node_ip, has the same plan) and its admin endpoint (the LB admin port of
# .env's IPCS_LB_ADMIN; lbnode/src/vrrp.rs LB_ADMIN_PORT).
tier_node_ip() { printf '%s.%s\n' "${IPCS_VIP%.*}" $((200 + $1)); }
tier_node_admin() { printf '%s:%s\n' "$(tier_node_ip "$1")" "${IPCS_LB_ADMIN##*:}"; }
# Whether the tier runs as compose services (Docker mode).
docker_tier() {
    (($(tier_count) > 1)) && [[ "$(cat "$IPCS_RUN_DIR/mode" 2>/dev/null)" == docker ]]
}
# The host pid of node n's container (its init), if it runs.
tier_container_pid() {
    local id pid
    id=$(compose_containers "lb$1" | head -n 1)
    [[ -n $id ]] || return 1
    pid=$(docker inspect -f '{{.State.Pid}}' "$id" 2>/dev/null) || return 1
    [[ $pid =~ ^[1-9][0-9]*$ ]] || return 1
    printf '%s\n' "$pid"
}
tier_dir() {
    local pid
    if docker_tier; then
        pid=$(tier_container_pid "$1") || pid=0
        printf '/proc/%s/root/run/ipcs-lb-node\n' "$pid"
    else
        printf '%s\n' "$IPCS_RUN_DIR/lb$1"
    fi
}
# Runs a command in node n's network namespace.
tier_netns_exec() { # N CMD...
    local n=$1 pid
    shift
    if docker_tier; then
        pid=$(tier_container_pid "$n") || return 1
        nsenter -t "$pid" -n "$@"
    else
        ip netns exec "ipcs-lb$n" "$@"
    fi
}
# The nodes holding the VIP now, one per line (more than one: split brain).
tier_vip_holders() {
    local n
    for ((n = 1; n <= $(tier_count); n++)); do
        if tier_netns_exec "$n" ip -4 -o addr show dev eth0 2>/dev/null | grep -qF " $IPCS_VIP/32 "; then
            printf '%s\n' "$n"
        fi
    done
}
# The node holding the VIP now (empty when none does).
tier_vip_holder() { tier_vip_holders | head -n 1; }

# Prints the pid in file $1 if it names a live process whose command line
# contains $2 (a stale file, or a reused pid, is not ours).
pid_of() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    printf '%s\n' "$pid"
}
# The host pid of a process named $2 in node $1's container (Docker mode).
tier_container_proc() {
    local pid
    pid=$(tier_container_pid "$1") || return 1
    pgrep --ns "$pid" --nslist pid -x "$2" | head -n 1 | grep .
}
tier_supervisor_pid() {
    if docker_tier; then
        tier_container_proc "$1" ipcs-lb-node
    else
        pid_of "$(tier_dir "$1")/supervisor.pid" ipcs-lb-node
    fi
}
# The first time (epoch seconds) after T that node N's keepalived took the
# VIP (its notify_master record in master.log); empty if it has not.
tier_master_since() { # N T
    awk -v k="$2" '$1 > k { print $1; exit }' "$(tier_dir "$1")/master.log" 2>/dev/null
}
# Whether node N runs an LB other than pid OLD and its supervisor has marked
# it up (it answered on the node's address): a killed LB came back.
tier_node_back() { # N OLD
    local pid
    pid=$(tier_lb_pid "$1") && [[ $pid != "$2" ]] && [[ "$(cat "$(tier_dir "$1")/down" 2>/dev/null)" == 0 ]]
}
tier_lb_pid() {
    if docker_tier; then
        tier_container_proc "$1" ipcs-lb
    else
        pid_of "$(tier_dir "$1")/lb.pid" ipcs-lb
    fi
}

# Whether any node's supervisor runs (wait_for_answer's liveness check).
tier_alive() {
    local n
    for ((n = 1; n <= $(tier_count); n++)); do
        tier_supervisor_pid "$n" >/dev/null && return 0
    done
    return 1
}

# The last lines of every node's logs.
tier_log_tail() {
    local n f id
    for ((n = 1; n <= $(tier_count); n++)); do
        if docker_tier; then
            id=$(compose_containers "lb$n" | head -n 1)
            [[ -n $id ]] || continue
            printf -- '--- lb%s (docker logs)\n' "$n"
            docker logs --tail 200 "$id" 2>&1 | grep -vE '^ +(at |[0-9]+: )' | tail -n "${1:-10}"
            continue
        fi
        for f in supervisor lb keepalived; do
            [[ -r "$(tier_dir "$n")/$f.log" ]] || continue
            printf -- '--- lb%s %s.log\n' "$n" "$f"
            grep -vE '^ +(at |[0-9]+: )' "$(tier_dir "$n")/$f.log" | tail -n "${1:-10}"
        done
    done
}

# Starts node n's supervisor, detached, unless one runs. Needs the node's
# namespace (ipcs-netns up --lbs) and writes its keepalived.conf first.
tier_start_node() {
    local n=$1 dir pid
    dir=$(tier_dir "$n")
    if pid=$(tier_supervisor_pid "$n"); then
        if [[ ! "$IPCS_BIN_DIR/ipcs-lb" -nt "$dir/supervisor.pid" &&
            ! "$IPCS_BIN_DIR/ipcs-lb-node" -nt "$dir/supervisor.pid" ]]; then
            say "LB node $n already supervised (pid $pid)"
            return 0
        fi
        # Rebuilt since: one node at a time (bootstrap waits for each to
        # answer again), so the VIP always has somewhere to go.
        say "ipcs-lb or ipcs-lb-node was rebuilt: restarting LB node $n"
        tier_stop_node "$n"
    fi
    mkdir -p "$dir"
    # The supervisor runs inside the node's namespace, so its children do.
    RUST_LOG=${RUST_LOG:-info} setsid ip netns exec "ipcs-lb$n" "$IPCS_BIN_DIR/ipcs-lb-node" \
        --node "$n" --nodes "$(tier_count)" --dir "$dir" --log-dir "$dir" --bin-dir "$IPCS_BIN_DIR" \
        --registry "$IPCS_REGISTRY_IP:$IPCS_REGISTRY_PORT" --key-file "$IPCS_KEY_FILE" \
        </dev/null >>"$dir/supervisor.log" 2>&1 &
    printf '%s\n' "$!" >"$dir/supervisor.pid"
    say "LB node $n: supervisor started (pid $!; ipcs-lb and keepalived in namespace ipcs-lb$n)"
}

# Stops node n's supervisor (SIGTERM: it stops its LB and keepalived, so
# the VIP moves first if the node held it), SIGKILL after 8 s (the
# supervisor gives its children 6).
tier_stop_node() {
    local pid i
    pid=$(tier_supervisor_pid "$1") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 80; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Waits up to 30 s until node n's supervisor has marked it up (its LB
# answered on the node's address).
tier_wait_node_up() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ "$(cat "$(tier_dir "$1")/down" 2>/dev/null)" == 0 ]] && return 0
        sleep 0.1
    done
    return 1
}

# Stops every node's supervisor (SIGTERM: it stops its LB and keepalived,
# which gives the address up), SIGKILL after 5 s, and removes the node
# directories. A keepalived left by a killed supervisor is stopped by its
# pid file.
tier_stop() {
    local n dir f kpid stopped=0
    [[ -e "$IPCS_RUN_DIR/lbs" ]] || return 0
    # Docker mode: compose stops the nodes with the rest (docker_down).
    docker_tier && return 0
    for ((n = 1; n <= $(tier_count); n++)); do
        dir=$(tier_dir "$n")
        if tier_supervisor_pid "$n" >/dev/null; then
            stopped=1
            tier_stop_node "$n"
        fi
        for f in "$dir/lb.pid:ipcs-lb" "$dir/keepalived-lb$n.pid:keepalived"; do
            if kpid=$(pid_of "${f%%:*}" "${f##*:}"); then
                kill -TERM "$kpid" 2>/dev/null || true
                sleep 0.5
                kill -KILL "$kpid" 2>/dev/null || true
            fi
        done
        rm -rf -- "$dir"
    done
    rm -f "$IPCS_RUN_DIR/lbs"
    ((stopped)) && say "LB tier stopped"
    return 0
}

# Whether this namespace holds the bridge with the host's address on it. Every
# packet to 172.16.238.x (calc.batata, the registry) is sent only then:
# without the bridge those addresses would route off the machine.
bridge_is_local() {
    ip -4 -o addr show dev "$IPCS_BRIDGE" 2>/dev/null | grep -qF " $IPCS_GATEWAY/"
}

# Asks the LB with `calc HOST:PORT 1+1` until it answers 2 or `timeout_s`
# passes. `alive` is a command that fails once the LB is gone (default: the
# host LB's pidfile names a live ipcs-lb), `log N` prints the last N lines of
# its log (default: the host LB's), `local` succeeds while calc.batata is an
# address of this machine (default: bridge_is_local). Returns 1 on timeout
# or a dead LB.
wait_for_answer() {
    local timeout_s=$1 alive=${2:-lb_pid} log=${3:-lb_log_tail} here=${4:-bridge_is_local} deadline out
    deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        if ! "$here"; then
            warn "$IPCS_CALC_HOST's address is not on this machine: not sending to it"
            return 1
        fi
        if out=$(timeout 3 "$IPCS_BIN_DIR/calc" "$IPCS_CALC_HOST:$IPCS_LB_PORT" 1+1 2>/dev/null) &&
            [[ "${out%% *}" == 2 ]]; then
            return 0
        fi
        if ! "$alive" >/dev/null; then
            warn "the load balancer is not running; the last lines of its log:"
            "$log" 20 >&2 || true
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# Prints the registry's current server list in its line format (`SERVERS
# ...`, `<id> <mac> <ip> <udp>` per server, `END`), asked with a proof made
# with the deployment key (ipcs-registry-query; bash cannot make the HMAC).
# Returns non-zero if the registry does not answer.
registry_list() {
    bridge_is_local || return 1
    [[ -x "$IPCS_BIN_DIR/ipcs-registry-query" && -r $IPCS_KEY_FILE ]] || return 1
    "$IPCS_BIN_DIR/ipcs-registry-query" list --timeout 3s --key-file "$IPCS_KEY_FILE" \
        --registry "$IPCS_REGISTRY_IP:$IPCS_REGISTRY_PORT"
}

# --- the servers of a deployment ---------------------------------------------------------
# Keeps what the compose deployment's containers logged (keepalived's state
# changes, LB restarts) in FILE before a benchmark takes it down.
save_compose_logs() { # FILE
    compose logs --no-color --timestamps >"$1" 2>&1 || true
}
# Container ids of the running containers of a compose service (Docker mode).
compose_containers() { # SERVICE
    docker ps -q --filter "label=com.docker.compose.project=$IPCS_COMPOSE_PROJECT" \
        --filter "label=com.docker.compose.service=$1"
}
# ... of the server replicas.
server_containers() { compose_containers server; }

# "id pid" for each running server process of a netns deployment, from the
# harness's machine-readable status (nothing when no topology answers).
netns_server_pids() {
    "$IPCS_BIN_DIR/ipcs-netns" --run-dir "$IPCS_RUN_DIR/netns" status --json 2>/dev/null |
        python3 -c '
import json, sys
try:
    processes = json.load(sys.stdin).get("processes", [])
except ValueError:
    processes = []
for p in processes:
    if p["role"] == "server" and p["running"]:
        print(p["id"], p["pid"])'
}

# Kills (KILL) or freezes (STOP, docker pause) one running server of a
# deployment in MODE (netns, or a Docker mode); prints what it hit. What it
# froze is added to the array `frozen`, which unfreeze_all thaws and empties.
frozen=()
disrupt_one() { # MODE kill|pause
    local mode=$1 how=$2 c pid
    if [[ $mode != netns ]]; then
        c=$(server_containers | head -n 1)
        [[ -n $c ]] || return 1
        if [[ $how == kill ]]; then
            docker kill "$c" >/dev/null
        else
            docker pause "$c" >/dev/null
            frozen+=("$c")
        fi
        printf 'container %s\n' "$(docker inspect -f '{{.Name}}' "$c")"
    else
        # (head closes the pipe early: the lister's broken pipe is no error.)
        read -r _ pid < <(netns_server_pids 2>/dev/null | head -n 1) || return 1
        [[ -n $pid ]] || return 1
        if [[ $how == kill ]]; then
            kill -KILL "$pid"
        else
            kill -STOP "$pid"
            frozen+=("$pid")
        fi
        printf 'server process %s\n' "$pid"
    fi
}

unfreeze_all() {
    local f
    for f in "${frozen[@]}"; do
        if [[ $f =~ ^[0-9]+$ ]]; then
            kill -CONT "$f" 2>/dev/null || true
        else
            docker unpause "$f" >/dev/null 2>&1 || true
        fi
    done
    frozen=()
}
