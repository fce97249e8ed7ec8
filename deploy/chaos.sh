#!/usr/bin/env bash
# The chaos soak against the Docker deployment: bootstrap.sh brings IPCS up
# with 4 server containers, loadgen offers steady load through calc.batata,
# and meanwhile a schedule of faults runs (a server killed and started
# again, one paused longer than the registry's TTL, a server added, the
# registry killed and started again, a server removed, one server's link
# cut for 2 s; from 30 s on also one server slowed by 30 ms, then all of
# them; every fault and its time taken from `ipcs-chaos --print-schedule`,
# the schedule the netns soak runs; with the LB tier, compose services lb1
# and lb2 as bootstrap runs by default, half-way the LB holding the VIP is
# SIGKILLed).
# Fails unless every request was answered correctly, or (with --lbs 2) lost
# inside the measured failover window, as the netns soak judges it. The netns version is ipcs-chaos
# (bench/); docs/RELIABILITY.md has both.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "$0")/lib.sh"
IPCS_LOG_PREFIX=chaos

usage() {
    cat <<EOF2
Usage: deploy/chaos.sh [--seconds S] [--rps R] [--lbs 1|2] [--no-build]
Runs the chaos soak on the Docker deployment (needs root and a Docker
engine; refuses to run while a deployment is up, and takes its own down
at the end, also on failure).
  --seconds S   length of the load (default 60)
  --rps R       offered load (default 20000)
  --lbs N       2 (default, as ./bootstrap.sh deploys): the LB tier (lb1,
                lb2 sharing the VIP), whose active LB is SIGKILLed half-way;
                requests may then be lost only from 100 ms before the kill
                to 100 ms after the other node became master. 1: the single
                LB (compose service lb), no LB fault
  --no-build    use the binaries already built (target/static/...)
EOF2
}

seconds=60
rps=20000
build=1
lbs=2
while (($#)); do
    case $1 in
    --seconds)
        [[ $# -ge 2 && $2 =~ ^[0-9]+$ && $2 -ge 10 ]] || die "--seconds needs a number >= 10"
        seconds=$2
        shift
        ;;
    --rps)
        [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "--rps needs a number"
        rps=$2
        shift
        ;;
    --no-build) build=0 ;;
    --lbs)
        [[ $# -ge 2 && $2 =~ ^[12]$ ]] || die "--lbs needs 1 or 2"
        lbs=$2
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

((EUID == 0)) || die "run as root"
docker_reachable || die "the Docker engine is not reachable"
have python3 || die "python3 is needed to read loadgen's JSON report"
have nsenter || die "nsenter (util-linux) is needed to find a container's link"
[[ -e "$IPCS_RUN_DIR/mode" ]] && die "a deployment is up ($IPCS_RUN_DIR/mode): ./bootstrap.sh down first"
# Then a run directory and deployment key of our own, which our `down`
# removes, leaving a key the user made (./bootstrap.sh key) alone.
use_own_run_dir chaos

BOOTSTRAP=$IPCS_REPO/bootstrap.sh
# Servers get the test-only fault-injection layer (deploy/docker/
# compose.faults.yaml); exported so every bootstrap.sh call below keeps it.
export IPCS_FAULT_INJECTION=1
work=$(mktemp -d "${TMPDIR:-/tmp}/ipcs-chaos.XXXXXX")
loadgen_pid=""
paused=""
cut=""
killed_at="" lb_holder="" lb_killed=""
cleanup() {
    local rc=$?
    [[ -n $loadgen_pid ]] && kill "$loadgen_pid" 2>/dev/null
    [[ -n $paused ]] && docker unpause "$paused" >/dev/null 2>&1
    [[ -n $cut ]] && ip link set "$cut" up 2>/dev/null
    "$BOOTSTRAP" down >/dev/null 2>&1 || warn "bootstrap.sh down failed during cleanup"
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

containers_of() { compose_containers "$1" | sort; } # SERVICE
name_of() { docker inspect -f '{{.Name}}' "$1" | tr -d /; }

# The host-side end of a container's eth0: its peer's interface index,
# read inside the container's network namespace, named in ours.
host_link_of() {
    local pid peer
    pid=$(docker inspect -f '{{.State.Pid}}' "$1")
    peer=$(nsenter -t "$pid" -n ip -o link show eth0 | sed -n 's/^[0-9]*: eth0@if\([0-9]*\):.*/\1/p')
    [[ -n $peer ]] || return 1
    ip -o link | awk -F': ' -v i="$peer" '$1 == i { sub(/@.*/, "", $2); print $2 }'
}

# Makes a running server container answer `delay` late: the file is written
# through the container's root into its /fault tmpfs (the image is read-only
# and has no shell), then SIGUSR1 makes the server read it.
set_delay() { # container delay
    local pid
    pid=$(docker inspect -f '{{.State.Pid}}' "$1")
    printf '%s\n' "$2" >"/proc/$pid/root/fault/delay"
    docker kill -s USR1 "$1" >/dev/null
}

# Sleeps until `at` seconds after the load started.
at() { sleep "$(python3 -c "import time,sys; print(max(0, $start + $1 - time.time()))")"; }
log_fault() { say "t=$(python3 -c "import time; print(f'{time.time() - $start:6.2f}')")s $*"; }

opts=(--docker --servers 4 --lbs "$lbs")
((build)) || opts+=(--no-build)
say "bringing IPCS up in Docker with 4 servers and $lbs LB(s)"
"$BOOTSTRAP" "${opts[@]}" >"$work/up.log" 2>&1 || die "bootstrap.sh failed: $(tail -n 5 "$work/up.log")"
bridge_is_local || die "$IPCS_BRIDGE with $IPCS_GATEWAY is missing: not sending load"

[[ -x $IPCS_BIN_DIR/ipcs-chaos ]] || die "$IPCS_BIN_DIR/ipcs-chaos is missing (build it, or drop --no-build)"
"$IPCS_BIN_DIR/ipcs-chaos" --print-schedule --lbs "$lbs" --duration-s "$seconds" >"$work/schedule" ||
    die "ipcs-chaos --print-schedule failed"
mapfile -t servers < <(containers_of server)
((${#servers[@]} >= 4)) || die "expected 4 server containers, found ${#servers[@]}"
registry=$(containers_of registry | head -n 1)
killed=${servers[0]} frozen=${servers[1]} cutoff=${servers[2]} slowed=${servers[3]}

say "load: $rps rps for ${seconds}s through $IPCS_CALC_HOST:$IPCS_LB_PORT"
start=$(python3 -c 'import time; print(time.time())')
"$IPCS_BIN_DIR/loadgen" --rps "$rps" --duration "${seconds}s" --json --quiet --require-clean \
    "$IPCS_CALC_HOST:$IPCS_LB_PORT" >"$work/load.json" 2>"$work/load.err" &
loadgen_pid=$!

# Every fault at the time the one schedule (ipcs-chaos --print-schedule:
# `SECONDS FAULT [SLOT] [DELAY]` a line, in time order) gives it, so no time
# is typed here. The slot is not used: compose, not this script, picks which
# container `scale` removes, so each kind of fault keeps its own container
# (killed, frozen, cutoff, slowed) as chosen above. A slowness step's delay is
# its last field.
while read -r -u 3 t fault rest; do
    delay=${rest##* }
    at "$t"
    case $fault in
    KillServer) docker kill "$killed" >/dev/null && log_fault "docker kill $(name_of "$killed")" ;;
    RestartServer) docker start "$killed" >/dev/null && log_fault "docker start $(name_of "$killed")" ;;
    FreezeServer)
        docker pause "$frozen" >/dev/null && paused=$frozen &&
            log_fault "docker pause $(name_of "$frozen") (longer than the registry's TTL, 1.5 s)"
        ;;
    ThawServer) docker unpause "$frozen" >/dev/null && paused="" && log_fault "docker unpause $(name_of "$frozen")" ;;
    AddServer) "$BOOTSTRAP" scale 5 >/dev/null && log_fault "scaled to 5 servers" ;;
    RemoveServer) "$BOOTSTRAP" scale 4 >/dev/null && log_fault "scaled to 4 servers" ;;
    SlowServer) set_delay "$slowed" "$delay" && log_fault "$(name_of "$slowed") slowed by $delay" ;;
    SpeedRestored) set_delay "$slowed" "$delay" && log_fault "$(name_of "$slowed") at full speed again" ;;
    KillRegistry) docker kill "$registry" >/dev/null && log_fault "docker kill $(name_of "$registry")" ;;
    RestartRegistry) docker start "$registry" >/dev/null && log_fault "docker start $(name_of "$registry")" ;;
    CutLink)
        if ! link=$(host_link_of "$cutoff") || [[ -z $link ]]; then
            die "could not find the host end of $(name_of "$cutoff")'s link"
        fi
        ip link set "$link" down && cut=$link && log_fault "link of $(name_of "$cutoff") ($link) down"
        ;;
    RestoreLink) ip link set "$cut" up && log_fault "link of $(name_of "$cutoff") ($cut) up" && cut="" ;;
    Brownout)
        mapfile -t browned < <(containers_of server)
        for c in "${browned[@]}"; do set_delay "$c" "$delay"; done
        log_fault "brownout: all ${#browned[@]} servers slowed by $delay"
        ;;
    BrownoutOver)
        for c in "${browned[@]}"; do set_delay "$c" "$delay"; done
        log_fault "brownout over"
        ;;
    KillActiveLb)
        lb_holder=$(tier_vip_holder)
        [[ -n $lb_holder ]] && lb_killed=$(tier_lb_pid "$lb_holder") || die "no LB node holds $IPCS_VIP"
        killed_at=$(date +%s.%N)
        kill -KILL "$lb_killed"
        log_fault "SIGKILL to ipcs-lb (pid $lb_killed) of LB node $lb_holder, which held $IPCS_VIP"
        ;;
    # The node's supervisor (ipcs-lb-node) restarts the LB by itself; the
    # schedule's entry only marks when, and is checked after the load.
    RestartLb) log_fault "LB node $lb_holder: its supervisor restarts ipcs-lb by itself" ;;
    *) die "ipcs-chaos's schedule has a fault this script does not know: $fault" ;;
    esac
done 3<"$work/schedule"

rc=0
wait "$loadgen_pid" || rc=$?
loadgen_pid=""
# The failover, if the schedule had one: when the other node's keepalived
# took the VIP (its notify_master record), and whether the killed node's
# supervisor brought an LB back, marked up, as a standby.
failover=""
if [[ -n $killed_at ]]; then
    other=$((lb_holder == 1 ? 2 : 1))
    took_at=$(tier_master_since "$other" "$killed_at")
    [[ -n $took_at ]] || die "LB node $other never became master after the kill"
    failover="$(python3 -c "print(f'{$killed_at - $start:.6f},{$took_at - $killed_at:.6f}')")"
    say "failover: node $other master $(python3 -c "print(round(($took_at - $killed_at) * 1000))") ms after the kill"
    tier_node_back "$lb_holder" "$lb_killed" ||
        die "LB node $lb_holder's LB did not come back (pid '$(tier_lb_pid "$lb_holder" || true)')"
    newpid=$(tier_lb_pid "$lb_holder")
    [[ "$(tier_vip_holders | tr '\n' ' ')" == "$other " ]] ||
        die "after the restart the VIP is on nodes [$(tier_vip_holders | tr '\n' ' ')] (want only $other)"
    say "LB node $lb_holder: ipcs-lb back (pid $newpid), standby"
fi
# loadgen --require-clean decides what clean means: 0 clean, 3 wrong
# replies, 4 lost, unsent or error replies; the last two still report.
((rc == 0 || rc == 3 || rc == 4)) || die "loadgen exited $rc: $(tail -n 3 "$work/load.err")"
# Clean as the netns soak judges it, by the soak's own rule (ipcs-chaos
# --judge-load, bench/src/chaos.rs load_is_clean): zero wrong, zero error
# replies, and every request answered or, with a failover, lost from 100 ms
# before the kill to 100 ms after the new master. Times are loadgen's
# measured phase, which starts with its launch (no warm-up). loadgen
# --require-clean exits 0 clean, 3 wrong replies, 4 lost, unsent or error
# replies; with a failover, 4 may still be clean by that rule.
python3 - "$work/load.json" <<'PY' >&2
import json, sys
l = json.load(open(sys.argv[1]))["latency_us"]
print(f"p50 {l['p50']:.0f} us, p99 {l['p99']:.0f} us, p99.9 {l['p999']:.0f} us, max {l['max']:.0f} us")
PY
judge=("$IPCS_BIN_DIR/ipcs-chaos" --judge-load "$work/load.json")
[[ -n $failover ]] && judge+=(--failover "$failover")
if verdict=$("${judge[@]}"); then
    say "$verdict"
    say "clean: zero wrong, zero error replies, nothing lost outside the failover window"
else
    say "$verdict"
    die "not clean (loadgen exited $rc)"
fi
