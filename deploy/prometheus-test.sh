#!/usr/bin/env bash
# A real Prometheus (Debian's package) against bootstrap's deployment, in
# Docker mode and then in netns mode: the shipped deploy/prometheus/ files
# pass promtool, every target is up, the LB, the registry and each server
# have series, every query of the Grafana dashboard returns data, and
# freezing a server under load fires the IPCSServerEjected alert. Cleans up
# on any exit.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IPCS_LOG_PREFIX="prometheus-test"

usage() {
    cat <<EOF
Usage: deploy/prometheus-test.sh [--docker-only | --netns-only] [--no-build]

For each mode (Docker, then netns; Docker is skipped without an engine):
  1. ./bootstrap.sh up --<mode> --servers 3;
  2. prometheus (Debian's, from PATH) with deploy/prometheus/prometheus.yml
     and rules.yml, intervals cut to 1 s, on a free loopback port with a
     temporary storage directory;
  3. waits (at most 30 s) until /api/v1/targets shows every LB (found
     through the file bootstrap.sh writes: the LB tier's nodes, 2 in both
     modes), the registry and 3 servers (found through the
     registry's /sd/servers), all up;
  4. checks series from each (ipcs_build_info per job, ipcs_lb_requests_total
     per LB, ipcs_registry_servers, ipcs_server_frames_answered_total per server)
     and that every query of deploy/grafana/ipcs-dashboard.json returns data;
  5. freezes a server (docker pause / SIGSTOP) under loadgen load and waits
     (at most 30 s) for IPCSServerEjected to fire in /api/v1/alerts;
  6. ./bootstrap.sh down.
Before either: promtool check config and check rules on the shipped files.
Needs root, prometheus and promtool (deploy/install-deps.sh), python3.
It uses the deployment's fixed names: run it under flock /tmp/ipcs-docker.lock
where others share the machine. Ends with 'N passed, M failed'.

Options:
  --docker-only   only the Docker mode
  --netns-only    only the netns mode
  --no-build      use the binaries already built
  -h, --help      this help
EOF
}

modes=(docker netns)
build=1
while (($#)); do
    case $1 in
    --docker-only) modes=(docker) ;;
    --netns-only) modes=(netns) ;;
    --no-build) build=0 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

((EUID == 0)) || die "run as root (bootstrap.sh: hosts file, raw sockets, namespaces)"
have prometheus && have promtool || die "prometheus/promtool missing: run deploy/install-deps.sh"
have python3 || die "python3 is needed to read the Prometheus API"
if ip link show "$IPCS_BRIDGE" >/dev/null 2>&1; then
    die "interface $IPCS_BRIDGE exists: a deployment (or a test) is up; take it down first"
fi

# A run directory and deployment key of our own: the deployment's `down`
# removes its key, which must never be the user's /run/ipcs/key.
use_own_run_dir prom
work=$IPCS_RUN_DIR.work
mkdir -p "$work"
BOOTSTRAP=$IPCS_REPO/bootstrap.sh
PROM_DIR=$IPCS_REPO/deploy/prometheus
DASHBOARD=$IPCS_REPO/deploy/grafana/ipcs-dashboard.json
# shellcheck source=deploy/tally.sh
source "$IPCS_REPO/deploy/tally.sh"

deployed=0
prom_pid=""
load_pid=""
cleanup() {
    local rc=$?
    [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null
    if [[ -n $prom_pid ]]; then
        kill "$prom_pid" 2>/dev/null
        wait "$prom_pid" 2>/dev/null || true
    fi
    unfreeze_all
    if ((deployed)); then
        "$BOOTSTRAP" down >/dev/null 2>&1 || warn "bootstrap.sh down failed during cleanup"
    fi
    rm -rf "$work" "$IPCS_RUN_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on loopback (bound, released, handed over).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a check of the Prometheus HTTP API at $prom (python below) until it
# prints "ok" or $1 seconds pass; the last answer goes to stdout.
api_wait() {
    local seconds=$1 check=$2 out=""
    shift 2
    local deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        out=$(python3 - "$prom" "$check" "$@" <<'PY' 2>&1 || true
import json, sys, urllib.parse, urllib.request

prom, check, args = sys.argv[1], sys.argv[2], sys.argv[3:]

def api(path, **params):
    url = f"http://{prom}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=2) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"{path}: {body}")
    return body["data"]

def query(expr):
    return api("query", query=expr)["result"]

if check == "targets":
    # args: how many targets of each job must be up.
    want = dict(a.split("=") for a in args)
    active = api("targets", state="active")["activeTargets"]
    up = {}
    for t in active:
        if t["health"] == "up":
            up[t["labels"]["job"]] = up.get(t["labels"]["job"], 0) + 1
    got = {job: up.get(job, 0) for job in want}
    print("ok" if all(got[j] == int(n) for j, n in want.items()) else
          f"up by job {got}, want {want}; " +
          "; ".join(f'{t["scrapeUrl"]} {t["health"]} {t["lastError"]}' for t in active))
elif check == "series":
    # args: the number of LBs.
    lbs = int(args[0])
    problems = []
    builds = {r["metric"]["job"]: int(r["value"][1])
              for r in query("count by (job) (ipcs_build_info)")}
    if builds != {"ipcs-lb": lbs, "ipcs-registry": 1, "ipcs-server": 3}:
        problems.append(f"ipcs_build_info by job: {builds}")
    for expr, want in [("count(ipcs_lb_requests_total)", lbs),
                       ("ipcs_registry_servers", 3),
                       ("count(ipcs_server_frames_answered_total)", 3),
                       ("count(count by (id) (ipcs_lb_server_requests_total))", 3)]:
        got = query(expr)
        value = int(float(got[0]["value"][1])) if got else None
        if value != want:
            problems.append(f"{expr} = {value}, want {want}")
    print("ok" if not problems else "; ".join(problems))
elif check == "dashboard":
    dashboard = json.load(open(args[0]))
    empty = [t["expr"] for p in dashboard["panels"] for t in p["targets"]
             if not query(t["expr"])]
    print("ok" if not empty else f"no data for: {empty}")
elif check == "alert":
    alerts = api("alerts")["alerts"]
    firing = [a for a in alerts if a["labels"]["alertname"] == args[0] and a["state"] == "firing"]
    print("ok" if firing else
          "not firing; alerts: " + json.dumps([(a["labels"]["alertname"], a["state"]) for a in alerts]))
PY
        )
        [[ $out == ok ]] && {
            echo ok
            return 0
        }
        sleep 1
    done
    printf '%s\n' "$out"
    return 1
}

# The shipped files, with the intervals cut to 1 s (scrape timeout under it)
# and the LB targets file in this run's directory instead of /run/ipcs.
test_config() {
    cp "$PROM_DIR/prometheus.yml" "$PROM_DIR/rules.yml" "$work/"
    sed -E -i \
        -e 's/^( *(scrape|evaluation|refresh)_interval:).*/\1 1s/' \
        -e 's/^( *scrape_timeout:).*/\1 900ms/' \
        -e "s|/run/ipcs/|$IPCS_RUN_DIR/|" "$work/prometheus.yml"
}

# How many LB targets bootstrap.sh wrote for Prometheus.
lb_target_count() {
    python3 -c 'import json, sys; print(sum(len(g["targets"]) for g in json.load(open(sys.argv[1]))))' \
        "$IPCS_RUN_DIR/prometheus/lb-targets.json"
}

run_mode() {
    local mode=$1 out
    say "=== $mode ==="
    local args=(up "--$mode" --servers 3 --timeout 60)
    ((build)) || args+=(--no-build)
    deployed=1
    if ! "$BOOTSTRAP" "${args[@]}" >"$work/up.log" 2>&1; then
        fail "$mode: bootstrap.sh ${args[*]}: $(tail -n 5 "$work/up.log" | tr '\n' ' ')"
        return
    fi
    build=0
    local lbs
    if ! lbs=$(lb_target_count); then
        fail "$mode: bootstrap.sh wrote no LB targets for Prometheus"
        lbs=1
    fi
    prom="127.0.0.1:$(free_port)"
    rm -rf "$work/data"
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
        --web.listen-address="$prom" >"$work/prometheus.log" 2>&1 &
    prom_pid=$!
    if out=$(api_wait 30 targets ipcs-lb="$lbs" ipcs-registry=1 ipcs-server=3); then
        pass "$mode: every target up ($lbs LB, registry, 3 servers from /sd/servers)"
    else
        fail "$mode: targets: $out"
        tail -n 20 "$work/prometheus.log" | sed 's/^/  /'
    fi
    # Load, so the LB has traffic to record and a frozen server to notice.
    # Longer than every wait below; stopped when the mode is done.
    # calc.batata: the host, or the LB tier's VIP (bootstrap's hosts entry).
    "$IPCS_BIN_DIR/loadgen" --rps 1000 --duration 120s --json \
        "$IPCS_CALC_HOST:$IPCS_LB_PORT" >"$work/load.json" 2>"$work/load.err" &
    load_pid=$!
    if out=$(api_wait 20 series "$lbs"); then
        pass "$mode: series from the LB, the registry and each server"
    else
        fail "$mode: series: $out"
    fi
    # rate()s over [1m] need two samples of the recorded inputs.
    if out=$(api_wait 20 dashboard "$DASHBOARD"); then
        pass "$mode: every query of the Grafana dashboard returns data"
    else
        fail "$mode: dashboard: $out"
    fi
    if disrupt_one "$mode" pause >/dev/null; then
        if out=$(api_wait 30 alert IPCSServerEjected); then
            pass "$mode: IPCSServerEjected fired after a server was frozen under load"
        else
            fail "$mode: IPCSServerEjected: $out"
        fi
    else
        fail "$mode: no server to freeze"
    fi
    unfreeze_all
    kill "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
    load_pid=""
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
    prom_pid=""
    "$BOOTSTRAP" down >"$work/down.log" 2>&1 || fail "$mode: bootstrap.sh down: $(tail -n 3 "$work/down.log")"
    deployed=0
}

if promtool check config "$PROM_DIR/prometheus.yml" >"$work/promtool.log" 2>&1 &&
    promtool check rules "$PROM_DIR/rules.yml" >>"$work/promtool.log" 2>&1; then
    pass "promtool check config and rules"
else
    fail "promtool: $(cat "$work/promtool.log")"
fi
test_config
for mode in "${modes[@]}"; do
    if [[ $mode == docker ]] && ! docker_reachable; then
        say "no Docker engine reachable: skipping the Docker mode"
        continue
    fi
    run_mode "$mode"
done
tally_summary
