#!/usr/bin/env bash
# bench/load.sh: Tollgate's load benchmark against nginx and HAProxy doing the same work (issue 6).
#
# Installs what it needs from Debian (and oha with `cargo install` for the open-loop mode), builds
# Tollgate in release mode, starts an upstream, the partner emulators and every peer on 127.0.0.1,
# measures each with wrk at several connection counts (closed loop) and/or with oha at fixed
# request rates (open loop, coordinated omission corrected) over interleaved rounds, and writes
# bench/results/{latest.md,latest.png,latest-open.png,raw.json}.
# Idempotent: installs only what is missing, uses its own temporary directory, and stops every
# process it started when it exits, fails or is interrupted. Run `bench/load.sh --help`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/load.sh [--help]

Tollgate's load benchmark: the same proxying work (route /ottimate/v1/... to the upstream's
/v1/..., drop the caller's Authorization and X-API-Key, add the partner's X-API-Key and an
OAuth2 bearer token, add X-Request-Id, pooled keep-alive upstream connections) through nginx,
HAProxy and Tollgate, each pinned to core 1, with the load generator and the upstream (nginx
`return 200`) pinned to core 0. Rows: direct (straight to the upstream: the ceiling), nginx,
haproxy, tollgate (--workers 1, pinned), tollgate-default (default runtime, not pinned),
tollgate-shared (as tollgate, with its rate limit kept in Redis through [shared]: a limit high
enough never to reject, the same limit as the local rows; Redis on core 0, persistence off),
tollgate-callers (as tollgate, with one [clients] key: caller_auth "required", the load generator
sends Proxy-Authorization), and the every-core rows, neither pinned: tollgate-workers2 (Tollgate
--workers 2) and nginx-workers2 (as nginx, with worker_processes 2).

Two kinds of load (MODE):
  closed  wrk at each of CONNECTIONS, as fast as the peer answers (throughput, latency at
          saturation), for every row of PEERS.
  open    oha at each of RATES requests/s over OPEN_CONNECTIONS connections, for every row of
          OPEN_PEERS: a fixed rate whatever the answers, each request's latency counted from the
          time it was due (oha -q RATE --latency-correction), so a stall is charged to every
          request due during it. Reports p50/p99/p99.9, the rate achieved, "p99 added" (the
          peer's p99 minus direct's at the same rate) and, for Tollgate rows, the p99 of
          Tollgate's own tollgate_overhead_seconds histogram over each run (its admin /metrics
          scraped before and after the run).
  both    closed, then open.
oha is built once with `cargo install oha --locked --version <pinned>` into bench/.tools (about
10 minutes on 2 cores), unless OHA names a binary to use.

Writes bench/results/latest.md (medians over rounds, ratios to nginx, the open-loop and every-core
tables, machine facts), bench/results/latest.png (closed loop: throughput and p99),
bench/results/latest-open.png (open loop: p99 and p99 added per rate) and bench/results/raw.json
(every run). Needs root for apt-get when nginx, haproxy, wrk, redis-server or python3-matplotlib
are missing, and 2+ cores. Also writes bench/results/redis.md: Redis commands per request of
tollgate-shared.

Environment (defaults in brackets):
  MODE              closed, open or both (see above) [closed]
  DURATION          seconds per measured run, wrk or oha [10]
  ROUNDS            rounds; every peer is measured once per round and connection count or rate [3]
  WARMUP            seconds of unmeasured load (same connections or rate) before each run [1]
  CONNECTIONS       closed loop: wrk connection counts ["16 64 256"]
  PEERS             closed loop: rows to measure ["direct nginx haproxy tollgate tollgate-default
                    tollgate-shared tollgate-callers tollgate-workers2 nginx-workers2"]
  RATES             open loop: request rates, requests/s ["1000 5000 10000"]
  OPEN_CONNECTIONS  open loop: oha connections (-c) [64]
  OPEN_PEERS        open loop: rows to measure, names as in PEERS ["direct nginx tollgate"]
  OHA               open loop: the oha binary to use [bench/.tools/bin/oha, built if missing]
  WRK_THREADS       wrk threads (-t), and oha's runtime threads (TOKIO_WORKER_THREADS) [1]
  STARTUP_RUNS      Tollgate start-ups timed to /readyz 200, median reported [5]
  BASE_PORT         first of the loopback ports used, BASE_PORT..BASE_PORT+25 [18080]
  OUT               where the results go [bench/results]
  SKIP_INSTALL=1    do not apt-get or cargo install anything
  SKIP_BUILD=1      use the existing release binary of Tollgate
  BASELINE          another Tollgate binary (an earlier build) for an A/B in one run: rows
                    base-tollgate, base-tollgate-shared and base-tollgate-workers2 run it as
                    tollgate, tollgate-shared and tollgate-workers2 run this tree's (name them in
                    PEERS; base-tollgate-shared uses the same Redis under another key_prefix)
  KEEP_WORK=1       keep the temporary directory (configs, logs, wrk and oha output) after a success
  PROFILE=1         after the measurements, profile each Tollgate row of PEERS at each connection
                    count: one more wrk run under `perf record -g` (OUT/profile-PEER-cN.txt: where
                    the CPU time goes, by symbol) and one under `strace -c` (syscalls per request,
                    in the same file; strace slows the process, so its run is not a measurement)
Only the rows the chosen MODE measures are started: MODE=open starts OPEN_PEERS only.

A default run (MODE=closed) measures 9 peers x 3 connection counts x 3 rounds x (1 + 10 s): about
15 minutes, plus the release build (fat LTO: several minutes when anything changed). MODE=open
with its defaults: 3 peers x 3 rates x 3 rounds x (1 + 10 s), about 5 minutes, plus building oha
the first time.
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) echo "load.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------------- settings
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
MODE=${MODE:-closed}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-16 64 256}
PEERS=${PEERS:-direct nginx haproxy tollgate tollgate-default tollgate-shared tollgate-callers tollgate-workers2 nginx-workers2}
RATES=${RATES:-1000 5000 10000}
OPEN_CONNECTIONS=${OPEN_CONNECTIONS:-64}
OPEN_PEERS=${OPEN_PEERS:-direct nginx tollgate}
WRK_THREADS=${WRK_THREADS:-1}
STARTUP_RUNS=${STARTUP_RUNS:-5}
BASE_PORT=${BASE_PORT:-18080}
OUT=${OUT:-$BENCH/results}
SKIP_INSTALL=${SKIP_INSTALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
PROFILE=${PROFILE:-0}
LOAD_CPU=0   # wrk, oha and the upstream
PROXY_CPU=1  # the proxy under test
# oha, the open-loop load generator: this release, built with `cargo install` into bench/.tools
# unless OHA names a binary. 1.14.0 fixed a latency-correction bug (oha #857); 1.9.0 replaced -j
# with --output-format json (both handled: the flag is read from `oha --help`).
OHA_VERSION=1.15.0
TOOLS=$BENCH/.tools
OHA=${OHA:-$TOOLS/bin/oha}
# Debian's python3, where python3-matplotlib installs (a pyenv or venv python3 may lack it).
PY=/usr/bin/python3
# What wrk and oha send as the caller: credentials every proxy must remove.
CALLER_HEADERS=(-H 'Authorization: Bearer caller-token-must-not-pass' -H 'X-API-Key: caller-key-must-not-pass')
# The tollgate-callers row's client key (a bench fixture), sent on top of CALLER_HEADERS.
CLIENT_KEY=bench-client-key-0123456789abcdef
# headers PEER: the wrk/oha/curl header arguments for PEER (the same -H syntax for all three).
headers() {
    HDRS=("${CALLER_HEADERS[@]}")
    [[ $1 == tollgate-callers ]] && HDRS+=(-H "Proxy-Authorization: Bearer $CLIENT_KEY")
    return 0
}
# The path measured through each proxy, and the upstream's fixed answer to it.
REQ_PATH='/v1/invoices?limit=10'
UPSTREAM_BODY='{"ok":true,"data":[{"id":"inv_1001","vendor":"Acme","amount":"125.50"}]}'

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
die() { printf '[%s] load.sh: error: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

for v in DURATION ROUNDS WARMUP WRK_THREADS STARTUP_RUNS BASE_PORT OPEN_CONNECTIONS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && STARTUP_RUNS > 0 && WRK_THREADS > 0 && OPEN_CONNECTIONS > 0)) ||
    die "DURATION, ROUNDS, STARTUP_RUNS, WRK_THREADS and OPEN_CONNECTIONS must be at least 1"
case $MODE in
    closed) CLOSED=1 OPEN=0 ;;
    open) CLOSED=0 OPEN=1 ;;
    both) CLOSED=1 OPEN=1 ;;
    *) die "MODE must be closed, open or both, not '$MODE'" ;;
esac
for c in $CONNECTIONS; do
    [[ $c =~ ^[0-9]+$ ]] && ((c >= WRK_THREADS)) ||
        die "CONNECTIONS: '$c' must be a whole number >= WRK_THREADS"
done
for q in $RATES; do
    [[ $q =~ ^[0-9]+$ ]] && ((q > 0)) || die "RATES: '$q' must be a whole number of requests/s >= 1"
done
known_peer() {
    case $1 in
        direct | nginx | haproxy | tollgate | tollgate-default | tollgate-shared | tollgate-callers) ;;
        tollgate-workers2 | nginx-workers2) ;;
        base-tollgate | base-tollgate-shared | base-tollgate-workers2)
            [[ -n ${BASELINE:-} ]] || die "$1 needs BASELINE, the other Tollgate binary"
            [[ -x $BASELINE ]] || die "BASELINE: $BASELINE is not an executable" ;;
        *) return 1 ;;
    esac
}
PEER_LIST=() OPEN_LIST=()
read -ra p_all <<<"$PEERS"
for p in "${p_all[@]}"; do known_peer "$p" || die "PEERS: unknown peer '$p'"; done
((CLOSED)) && PEER_LIST=("${p_all[@]}")
read -ra p_all <<<"$OPEN_PEERS"
for p in "${p_all[@]}"; do known_peer "$p" || die "OPEN_PEERS: unknown peer '$p'"; done
((OPEN)) && OPEN_LIST=("${p_all[@]}")
((${#PEER_LIST[@]} + ${#OPEN_LIST[@]} > 0)) || die "no rows to measure (PEERS or OPEN_PEERS is empty)"
# STARTED: every row this MODE measures, closed-loop rows first, each once.
STARTED=" "
for p in ${PEER_LIST[@]+"${PEER_LIST[@]}"} ${OPEN_LIST[@]+"${OPEN_LIST[@]}"}; do
    [[ $STARTED == *" $p "* ]] || STARTED+="$p "
done
read -ra STARTED_LIST <<<"$STARTED"
wants() { [[ $STARTED == *" $1 "* ]]; }
(($(nproc) >= 2)) || die "needs at least 2 cores (wrk + upstream on core 0, the proxy on core 1)"

# Loopback ports, all chosen here.
P_UPSTREAM=$BASE_PORT
P_NGINX=$((BASE_PORT + 1))
P_HAPROXY=$((BASE_PORT + 2))
P_TG=$((BASE_PORT + 3)) P_TG_ADMIN=$((BASE_PORT + 4))
P_TGD=$((BASE_PORT + 5)) P_TGD_ADMIN=$((BASE_PORT + 6))
P_START=$((BASE_PORT + 7)) P_START_ADMIN=$((BASE_PORT + 8))
P_NGW=$((BASE_PORT + 9))
P_SANDBOX=$((BASE_PORT + 10)) # the emulators take P, P+1 (OAS) and P+2 (Osigu)
P_TGS=$((BASE_PORT + 13)) P_TGS_ADMIN=$((BASE_PORT + 14))
P_REDIS=$((BASE_PORT + 15))
P_TGC=$((BASE_PORT + 16)) P_TGC_ADMIN=$((BASE_PORT + 17))
P_TGW=$((BASE_PORT + 18)) P_TGW_ADMIN=$((BASE_PORT + 19))
P_BTG=$((BASE_PORT + 20)) P_BTG_ADMIN=$((BASE_PORT + 21))
P_BTGS=$((BASE_PORT + 22)) P_BTGS_ADMIN=$((BASE_PORT + 23))
P_BTGW=$((BASE_PORT + 24)) P_BTGW_ADMIN=$((BASE_PORT + 25))

# ------------------------------------------------------------------- processes and clean-up
PIDS=()  # every background process started here, stopped in reverse order on exit
WORK=""


cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids ${PIDS[@]+"${PIDS[@]}"}
    if [[ -n $WORK && -d $WORK ]]; then
        if ((rc == 0)) && [[ $KEEP_WORK != 1 ]]; then
            rm -rf "$WORK"
        else
            echo "load.sh: configs, logs, wrk and oha output kept in $WORK" >&2
        fi
    fi
    exit "$rc"
}
source "$(dirname "${BASH_SOURCE[0]}")/procs.sh"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM




wait_tcp() { # NAME PID PORT: wait up to 10 s until PORT accepts
    local i
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && return 0
        is_alive "$2" || died "$1" "$2"
        sleep 0.05
    done
    die "$1 does not listen on 127.0.0.1:$3 after 10 s (log: $WORK/$1.log)"
}


# render TEMPLATE OUT KEY=VALUE...: replace every @KEY@ in TEMPLATE, refuse leftovers.
render() {
    local text kv out=$2
    text=$(<"$1")
    shift 2
    for kv in "$@"; do text=${text//"@${kv%%=*}@"/"${kv#*=}"}; done
    [[ ! $text =~ @[A-Z_]+@ ]] || die "unrendered placeholder ${BASH_REMATCH[0]} in $out"
    printf '%s\n' "$text" >"$out"
}

# --------------------------------------------------------------------------- measurement
busy_ticks() { # CPU ticks all processes spent (user + nice + system, both cores) since boot
    local _ u n sy
    read -r _ u n sy _ </proc/stat
    echo $((u + n + sy))
}
child_ticks() { # CPU ticks used by this shell's finished children (wrk) so far: bash's `times`
    times >"$WORK/times" # in this shell, not in a $(...) subshell
    tail -n 1 "$WORK/times" | awk -v hz="$CLK_TCK" '{ t = 0
        for (i = 1; i <= NF; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        printf "%d\n", t * hz + 0.5 }'
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null; } # Linux >= 4.0: resets VmHWM to VmRSS
# A row's measured process may be several (nginx-workers2: both workers): PID[peer] is a
# space-separated list; these check every process, or add up their CPU time and peak RSS.
all_alive() { local p; for p in $1; do is_alive "$p" || return 1; done; }
sum_cpu_ticks() { local p t=0; for p in $1; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
sum_hwm_kib() { local p t=0; for p in $1; do t=$((t + $(hwm_kib "$p"))); done; echo "$t"; }
reset_hwms() { local p; for p in $1; do reset_hwm "$p" || return 1; done; }

# ------------------------------------------------------------------------------ 1. install
apt_get() { # apt-get ARGS...: waits (polling every 20 s, up to 30 min) while apt's lock is busy
    local out tries=0
    while :; do
        if out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=0 "$@" 2>&1); then
            return 0
        fi
        if grep -qiE 'could not get lock|unable to acquire|another process' <<<"$out" && ((++tries < 90)); then
            log "apt is busy (another install is running); retrying in 20 s"
            sleep 20
            continue
        fi
        printf '%s\n' "$out" >&2
        die "apt-get $* failed"
    done
}

install_deps() {
    local need=() pkgs=() p
    command -v nginx >/dev/null 2>&1 || need+=(nginx)
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
    [[ -x $PY ]] && "$PY" -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
    ((${#need[@]})) || return 0
    [[ $SKIP_INSTALL != 1 ]] || die "missing: ${need[*]} (SKIP_INSTALL=1 is set)"
    [[ $(id -u) == 0 ]] || die "missing: ${need[*]}; run as root to apt-get them, or install them"
    log "installing from Debian: ${need[*]}"
    apt_get update -q
    for p in "${need[@]}"; do
        if [[ $p == nginx ]]; then # nginx-light where the release still has it
            if apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=(nginx); fi
        else
            pkgs+=("$p")
        fi
    done
    apt_get install -y -q --no-install-recommends "${pkgs[@]}"
    # The packages start system services on :80 and friends; this benchmark runs its own.
    for p in nginx haproxy redis-server; do
        [[ " ${need[*]} " == *" $p "* ]] || continue
        service "$p" stop >/dev/null 2>&1 || true
        systemctl disable --now "$p" >/dev/null 2>&1 || true
        update-rc.d "$p" disable >/dev/null 2>&1 || true
    done
}
install_deps
for t in nginx haproxy wrk curl redis-server redis-cli taskset getconf timeout; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not on PATH"
done
CLK_TCK=$(getconf CLK_TCK)

# oha, for the open loop: OHA when set, else the pinned release, built with `cargo install` into
# bench/.tools (its own directory: nothing else on the machine changes) when missing or another
# version.
install_oha() {
    local need=() have=""
    if [[ $OHA != "$TOOLS/bin/oha" ]]; then
        [[ -x $OHA ]] || die "OHA=$OHA is not an executable file"
        return 0
    fi
    [[ -x $OHA ]] && have=$("$OHA" --version 2>/dev/null || true)
    [[ $have != "oha $OHA_VERSION" ]] || return 0
    [[ $SKIP_INSTALL != 1 ]] || die "no oha $OHA_VERSION at $OHA (SKIP_INSTALL=1 is set; or set OHA)"
    command -v cargo >/dev/null 2>&1 || die "no oha at $OHA and no cargo to build it (or set OHA)"
    # oha's README asks for make and cmake (its TLS and SQLite dependencies build C code).
    command -v make >/dev/null 2>&1 || need+=(make)
    command -v cmake >/dev/null 2>&1 || need+=(cmake)
    command -v cc >/dev/null 2>&1 || need+=(gcc)
    if ((${#need[@]})); then
        [[ $(id -u) == 0 ]] || die "building oha needs ${need[*]}; run as root to apt-get them, or install them"
        log "installing from Debian to build oha: ${need[*]}"
        apt_get update -q
        apt_get install -y -q --no-install-recommends "${need[@]}"
    fi
    log "building oha $OHA_VERSION with cargo install into $TOOLS${have:+ (found: $have)}: once, about 10 minutes on 2 cores"
    # Without CARGO_TARGET_DIR cargo builds in a temporary directory and removes it afterwards.
    env -u CARGO_TARGET_DIR cargo install oha --locked --version "$OHA_VERSION" --root "$TOOLS" ||
        die "cargo install oha $OHA_VERSION failed (see above)"
    [[ -x $OHA ]] || die "cargo install left no binary at $OHA"
    log "built $("$OHA" --version 2>/dev/null || echo oha) at $OHA"
}
# The flags this script relies on, read from oha's own --help: the JSON output is
# `--output-format json` from oha 1.9.0 on and `-j` before.
oha_flags() {
    local help f
    help=$("$OHA" --help 2>&1) || die "$OHA --help failed: $help"
    for f in --latency-correction --no-tui; do
        [[ $help == *"$f"* ]] || die "$OHA has no $f option (oha $OHA_VERSION has)"
    done
    if [[ $help == *--output-format* ]]; then
        OHA_JSON=(--output-format json)
    elif [[ $help == *--json* ]]; then
        OHA_JSON=(-j)
    else
        die "$OHA has neither --output-format nor --json: no JSON output to read"
    fi
}
OHA_JSON=()
if ((OPEN)); then
    install_oha
    oha_flags
fi

# -------------------------------------------------------------------------------- 2. build
cd "$REPO"
if [[ $SKIP_BUILD != 1 ]]; then
    log "building Tollgate (release, fat LTO: this takes a while)"
    cargo build --release -p tollgate
fi
TOLLGATE=${CARGO_TARGET_DIR:-$REPO/target}/release/tollgate
[[ -x $TOLLGATE ]] || die "no release binary at $TOLLGATE"

# ------------------------------------------------------------------------ 3. start everything
for port in "$P_UPSTREAM" "$P_NGINX" "$P_HAPROXY" "$P_TG" "$P_TG_ADMIN" "$P_TGD" "$P_TGD_ADMIN" \
    "$P_START" "$P_START_ADMIN" "$P_NGW" "$P_SANDBOX" $((P_SANDBOX + 1)) $((P_SANDBOX + 2)) \
    "$P_TGS" "$P_TGS_ADMIN" "$P_REDIS" "$P_TGC" "$P_TGC_ADMIN" "$P_TGW" "$P_TGW_ADMIN" \
    "$P_BTG" "$P_BTG_ADMIN" "$P_BTGS" "$P_BTGS_ADMIN" "$P_BTGW" "$P_BTGW_ADMIN"; do
    ! port_taken "$port" || die "port 127.0.0.1:$port is taken; set BASE_PORT to a free range"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
mkdir -p "$WORK/wrk" "$WORK/oha" "$OUT"
: >"$WORK/runs.jsonl"
"$PY" "$BENCH/summarise.py" meta --out "$WORK/meta.json" ${OHA_JSON[@]+--oha "$OHA"} \
    --param "MODE=$MODE" --param "DURATION=$DURATION" --param "ROUNDS=$ROUNDS" \
    --param "WARMUP=$WARMUP" --param "CONNECTIONS=$CONNECTIONS" --param "PEERS=${PEER_LIST[*]-}" \
    --param "RATES=$RATES" --param "OPEN_CONNECTIONS=$OPEN_CONNECTIONS" \
    --param "OPEN_PEERS=${OPEN_LIST[*]-}" --param "WRK_THREADS=$WRK_THREADS" \
    --param "STARTUP_RUNS=$STARTUP_RUNS"
log "work directory: $WORK"

fixture() { sed -n "s/^pub const $1: &str = \"\(.*\)\";/\1/p" "$REPO/crates/sandbox/src/fixtures.rs"; }
API_KEY=$(fixture OTTIMATE_SANDBOX_API_KEY)
CLIENT_ID=$(fixture OTTIMATE_SANDBOX_CLIENT_ID)
CLIENT_SECRET=$(fixture OTTIMATE_SANDBOX_CLIENT_SECRET)
[[ -n $API_KEY && -n $CLIENT_ID && -n $CLIENT_SECRET ]] ||
    die "cannot read the Ottimate sandbox credentials from crates/sandbox/src/fixtures.rs"

# start_nginx NAME WORKERS TEMPLATE KEY=VALUE...: its own prefix dir, WORKERS worker processes
# (@WORKERS@ in the template), started under PIN; sets LAST_PID (master), WORKER_PID (the first
# worker) and WORKER_PIDS (every worker, space-separated) once WORKERS workers run.
start_nginx() {
    local name=$1 workers=$2 tmpl=$3 dir=$WORK/$1 i
    shift 3
    mkdir -p "$dir"
    render "$tmpl" "$dir/nginx.conf" "DIR=$dir" "WORKERS=$workers" "$@"
    nginx -q -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$WORK/$name.log" 2>&1 ||
        die "$name: bad config: $(cat "$WORK/$name.log")"
    start_bg "$name" ${PIN[@]+"${PIN[@]}"} nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    WORKER_PIDS=""
    for i in $(seq 200); do
        WORKER_PIDS=$(pgrep -P "$LAST_PID" | sort -n | tr '\n' ' ' || true)
        WORKER_PIDS=${WORKER_PIDS% }
        WORKER_PID=${WORKER_PIDS%% *}
        [[ -n $WORKER_PIDS ]] && (($(wc -w <<<"$WORKER_PIDS") >= workers)) && return 0
        is_alive "$LAST_PID" || died "$name" "$LAST_PID"
        sleep 0.05
    done
    die "$name: $(wc -w <<<"$WORKER_PIDS") worker processes after 10 s, not $workers"
}

# The upstream ("the partner"): nginx answering 200 from memory, on the load core.
PIN=(taskset -c "$LOAD_CPU")
start_nginx upstream 1 "$BENCH/nginx-upstream.conf" "UPSTREAM_PORT=$P_UPSTREAM"
UPSTREAM_WORKER=$WORKER_PID
wait_tcp upstream "$LAST_PID" "$P_UPSTREAM"
log "upstream nginx on :$P_UPSTREAM (worker pid $UPSTREAM_WORKER)"

# The partner emulators, for real tokens; idle during the measurements.
start_bg sandbox taskset -c "$LOAD_CPU" "$TOLLGATE" --workers 1 --log-level warn sandbox --listen "127.0.0.1:$P_SANDBOX"
SANDBOX_PID=$LAST_PID
wait_tcp sandbox "$SANDBOX_PID" "$P_SANDBOX"
TOKEN_URL=http://127.0.0.1:$P_SANDBOX/oauth/token
TOKEN=$(curl -fsS --max-time 5 -H "X-API-Key: $API_KEY" --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret=$CLIENT_SECRET" "$TOKEN_URL" |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') ||
    die "could not fetch a token from the emulator at $TOKEN_URL"
[[ $TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "unexpected characters in the emulator's token"
log "emulators on :$P_SANDBOX-$((P_SANDBOX + 2)); token fetched for nginx and HAProxy"

tollgate_config() { # OUT PORT ADMIN_PORT
    render "$BENCH/tollgate.toml" "$1" "PORT=$2" "ADMIN_PORT=$3" "UPSTREAM_PORT=$P_UPSTREAM" \
        "API_KEY=$API_KEY" "SANDBOX_PORT=$P_SANDBOX" "CLIENT_ID=$CLIENT_ID" "CLIENT_SECRET=$CLIENT_SECRET"
    "$TOLLGATE" check --config "$1" >"$WORK/tollgate-check.log" 2>&1 ||
        die "tollgate check refused $1: $(cat "$WORK/tollgate-check.log")"
}

# Start-up to /readyz 200, pinned with one worker like the measured row, emulator up.
if wants tollgate || wants tollgate-default; then
    tollgate_config "$WORK/tollgate-startup.toml" "$P_START" "$P_START_ADMIN"
    log "timing Tollgate's start-up to /readyz 200 ($STARTUP_RUNS runs)"
    "$PY" "$BENCH/startup.py" --runs "$STARTUP_RUNS" --url "http://127.0.0.1:$P_START_ADMIN/readyz" \
        --out "$WORK/startup.json" --log "$WORK/tollgate-startup.log" -- \
        taskset -c "$PROXY_CPU" "$TOLLGATE" --workers 1 --log-level warn run --config "$WORK/tollgate-startup.toml" ||
        die "start-up timing failed (log: $WORK/tollgate-startup.log)"
fi

# The peers. URL[peer] is what wrk and oha load; PID[peer] the process(es) whose RSS and CPU are
# measured; ADMIN[peer] a Tollgate row's admin port (its /metrics).
declare -A URL PID PORT ADMIN
URL[direct]=http://127.0.0.1:$P_UPSTREAM$REQ_PATH PID[direct]="" PORT[direct]=$P_UPSTREAM
PIN=(taskset -c "$PROXY_CPU")
# nginx_row NAME PORT WORKERS: the nginx proxy config with WORKERS workers, started under PIN.
nginx_row() {
    start_nginx "$1" "$3" "$BENCH/nginx-proxy.conf" "PORT=$2" "UPSTREAM_PORT=$P_UPSTREAM" \
        "API_KEY=$API_KEY" "TOKEN=$TOKEN"
    wait_tcp "$1" "$LAST_PID" "$2"
    URL[$1]=http://127.0.0.1:$2/ottimate$REQ_PATH PID[$1]=$WORKER_PIDS PORT[$1]=$2
}
if wants nginx; then
    nginx_row nginx "$P_NGINX" 1
fi
if wants haproxy; then
    mkdir -p "$WORK/haproxy"
    render "$BENCH/haproxy.cfg" "$WORK/haproxy/haproxy.cfg" "DIR=$WORK/haproxy" "PORT=$P_HAPROXY" \
        "UPSTREAM_PORT=$P_UPSTREAM" "API_KEY=$API_KEY" "TOKEN=$TOKEN"
    haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 ||
        die "haproxy: bad config: $(cat "$WORK/haproxy.log")"
    start_bg haproxy "${PIN[@]}" haproxy -db -f "$WORK/haproxy/haproxy.cfg"
    wait_tcp haproxy "$LAST_PID" "$P_HAPROXY"
    URL[haproxy]=http://127.0.0.1:$P_HAPROXY/ottimate$REQ_PATH PID[haproxy]=$LAST_PID PORT[haproxy]=$P_HAPROXY
fi
# tollgate_variant NAME PORT ADMIN_PORT EXTRA [WORKERS]: a row whose config is the common one plus
# the TOML text EXTRA, checked, started and ready. Without WORKERS: --workers 1, pinned to the
# proxy core; with WORKERS: --workers WORKERS, not pinned (every core). BIN: the binary (an A/B's
# BASELINE), this tree's release build by default.
tollgate_variant() {
    local name=$1 port=$2 admin=$3 extra=$4 workers=${5:-1} pin=("${PIN[@]}") bin=${BIN:-$TOLLGATE}
    [[ -z ${5:-} ]] || pin=()
    tollgate_config "$WORK/$name.toml" "$port" "$admin"
    printf '\n%s' "$extra" >>"$WORK/$name.toml"
    "$bin" check --config "$WORK/$name.toml" >"$WORK/tollgate-check.log" 2>&1 ||
        die "tollgate check refused the $name config: $(cat "$WORK/tollgate-check.log")"
    start_bg "$name" ${pin[@]+"${pin[@]}"} "$bin" --workers "$workers" --log-level warn run --config "$WORK/$name.toml"
    wait_http_200 "$name" "$LAST_PID" "http://127.0.0.1:$admin/readyz"
    URL[$name]=http://127.0.0.1:$port/ottimate$REQ_PATH PID[$name]=$LAST_PID PORT[$name]=$port
    ADMIN[$name]=$admin
}
if wants tollgate; then
    tollgate_variant tollgate "$P_TG" "$P_TG_ADMIN" ""
fi
if wants tollgate-shared || wants base-tollgate-shared; then
    start_bg redis taskset -c "$LOAD_CPU" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$WORK"
    wait_tcp redis "$LAST_PID" "$P_REDIS"
fi
if wants tollgate-shared; then
    tollgate_variant tollgate-shared "$P_TGS" "$P_TGS_ADMIN" \
        "$(printf '[shared]\nredis_url = "redis://127.0.0.1:%s/0"\nreplicas = 1\n' "$P_REDIS")"
fi
if wants base-tollgate; then
    BIN=$BASELINE tollgate_variant base-tollgate "$P_BTG" "$P_BTG_ADMIN" ""
fi
if wants base-tollgate-shared; then
    BIN=$BASELINE tollgate_variant base-tollgate-shared "$P_BTGS" "$P_BTGS_ADMIN" \
        "$(printf '[shared]\nredis_url = "redis://127.0.0.1:%s/0"\nreplicas = 1\nkey_prefix = "base:"\n' "$P_REDIS")"
fi
if wants base-tollgate-workers2; then
    BIN=$BASELINE tollgate_variant base-tollgate-workers2 "$P_BTGW" "$P_BTGW_ADMIN" "" 2
fi
if wants tollgate-callers; then
    tollgate_variant tollgate-callers "$P_TGC" "$P_TGC_ADMIN" \
        "$(printf '[clients.bench]\nkey = "%s"\nupstreams = ["ottimate"]\n' "$CLIENT_KEY")"
    # Without the key the row must refuse: proof that caller_auth is really on.
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${CALLER_HEADERS[@]}" "${URL[tollgate-callers]}" || true)
    [[ $code == 401 ]] || die "tollgate-callers answered $code without a client key (401 expected)"
fi
if wants tollgate-default; then
    tollgate_config "$WORK/tollgate-default.toml" "$P_TGD" "$P_TGD_ADMIN"
    start_bg tollgate-default env -u TOLLGATE_WORKERS "$TOLLGATE" --log-level warn run --config "$WORK/tollgate-default.toml"
    wait_http_200 tollgate-default "$LAST_PID" "http://127.0.0.1:$P_TGD_ADMIN/readyz"
    URL[tollgate-default]=http://127.0.0.1:$P_TGD/ottimate$REQ_PATH PID[tollgate-default]=$LAST_PID
    PORT[tollgate-default]=$P_TGD ADMIN[tollgate-default]=$P_TGD_ADMIN
fi
# The every-core rows: two workers each, not pinned (the kernel spreads them over both cores,
# beside the load generator and the upstream). Tollgate's `--workers 2` is the same command line
# whether the two workers are one runtime's threads or independent current-thread runtimes, each
# with its own SO_REUSEPORT listener; the measured process is the whole Tollgate either way.
if wants tollgate-workers2; then
    tollgate_variant tollgate-workers2 "$P_TGW" "$P_TGW_ADMIN" "" 2
fi
if wants nginx-workers2; then
    PIN=()
    nginx_row nginx-workers2 "$P_NGW" 2
    PIN=(taskset -c "$PROXY_CPU")
fi
for p in "${STARTED_LIST[@]}"; do
    if [[ -n ${PID[$p]:-} ]]; then log "$p on :${PORT[$p]} (measured pid ${PID[$p]// /, })"; fi
done

# Pre-flight, which also warms every peer (Tollgate's token and pools): the measured path answers
# 200 with the upstream's body, and through each proxy the upstream saw the rewritten path, the
# partner key, a bearer token (not the caller's), and an X-Request-Id that also came back.
preflight() { # PEER
    local peer=$1 prefix=/ottimate code
    [[ $peer == direct ]] && prefix=""
    headers "$peer"
    code=$(curl -s -o "$WORK/preflight-$peer.body" -w '%{http_code}' --max-time 5 "${HDRS[@]}" "${URL[$peer]}" || true)
    [[ $code == 200 && $(<"$WORK/preflight-$peer.body") == "$UPSTREAM_BODY" ]] ||
        die "pre-flight $peer: ${URL[$peer]} answered $code: $(head -c 300 "$WORK/preflight-$peer.body")"
    [[ $peer == direct ]] && return 0
    curl -s -D "$WORK/preflight-$peer.headers" -o "$WORK/preflight-$peer.echo" --max-time 5 \
        "${HDRS[@]}" "http://127.0.0.1:${PORT[$peer]}$prefix/v1/_echo?probe=1" || true
    "$PY" - "$WORK/preflight-$peer.headers" "$WORK/preflight-$peer.echo" "$peer" "$API_KEY" "$TOKEN" <<'PYEOF' ||
import json, sys
headers_file, echo_file, peer, key, static_token = sys.argv[1:]
head = open(headers_file).read().splitlines()
status = head[0].split()[1] if head else "none"
got = json.load(open(echo_file)) if status == "200" else {}
names = {line.split(":", 1)[0].strip().lower() for line in head[1:] if ":" in line}
auth = got.get("authorization", "")
problems = []
if status != "200":
    problems.append(f"status {status}")
else:
    if got.get("uri") != "/v1/_echo?probe=1":
        problems.append(f"upstream saw path {got.get('uri')!r}")
    if got.get("x_api_key") != key:
        problems.append(f"upstream saw X-API-Key {got.get('x_api_key')!r}")
    if not auth.startswith("Bearer ") or "caller" in auth:
        problems.append(f"upstream saw Authorization {auth!r}")
    if peer in ("nginx", "nginx-workers2", "haproxy") and auth != "Bearer " + static_token:
        problems.append("not the static token")
    if not got.get("x_request_id"):
        problems.append("no X-Request-Id upstream")
    if "x-request-id" not in names:
        problems.append("no X-Request-Id in the response")
if problems:
    sys.exit("; ".join(problems))
PYEOF
        die "pre-flight $peer: the proxy does not do the agreed work (see above)"
}
for p in "${STARTED_LIST[@]}"; do preflight "$p"; done
log "pre-flight passed for: ${STARTED_LIST[*]}"

# --------------------------------------------------------------------------------- 4. measure
# probe_start PEER, then probe_end PEER TOOL around one measured run: CPU ticks of the row's
# process(es), of the upstream, of the load generator (this shell's finished children) and of the
# whole machine, and the row's peak RSS. probe_end sets PROBE_JSON (the fields every run record
# shares; TOOL names the load generator's field), P_HWM, P_OTHER and P_ALIVE.
probe_start() {
    local pid=${PID[$1]}
    P_CPU0=null P_RESET=false P_CPUS="" P_ALIVE=true
    if [[ -n $pid ]] && all_alive "$pid"; then
        reset_hwms "$pid" && P_RESET=true
        P_CPUS=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/${pid%% *}/status")
        P_CPU0=$(sum_cpu_ticks "$pid")
    fi
    P_UP0=$(cpu_ticks "$UPSTREAM_WORKER")
    child_ticks >"$WORK/c0"
    P_B0=$(busy_ticks)
}
probe_end() {
    local pid=${PID[$1]} tool=$2 b1 up1 cpu1=null cpu=null load_cpu first
    first=${pid%% *}
    b1=$(busy_ticks)
    child_ticks >"$WORK/c1"
    up1=$(cpu_ticks "$UPSTREAM_WORKER")
    P_HWM=null
    if [[ -n $pid ]]; then
        if all_alive "$pid"; then
            cpu1=$(sum_cpu_ticks "$pid")
            P_HWM=$(sum_hwm_kib "$pid")
        else
            P_ALIVE=false
        fi
    fi
    [[ $P_CPU0 != null && $cpu1 != null ]] && cpu=$((cpu1 - P_CPU0))
    # CPU that processes outside the measurement (parallel builds...) took during the run: all
    # busy ticks minus the proxy's, the upstream's and the load generator's. Near 0 on a quiet
    # machine.
    load_cpu=$(($(<"$WORK/c1") - $(<"$WORK/c0")))
    P_OTHER=$((b1 - P_B0 - (up1 - P_UP0) - load_cpu))
    [[ $cpu == null ]] || P_OTHER=$((P_OTHER - cpu))
    # pid: the (first) measured process; processes: how many were measured and added up.
    PROBE_JSON=$(printf '"pid":%s,"processes":%d,"cpus":"%s","alive":%s,"hwm_reset":%s,"rss_hwm_kib":%s,"cpu_ticks":%s,"upstream_cpu_ticks":%d,"%s_cpu_ticks":%d,"other_cpu_ticks":%d,"clk_tck":%d' \
        "${first:-null}" "$(wc -w <<<"$pid")" "$P_CPUS" "$P_ALIVE" "$P_RESET" "$P_HWM" "$cpu" \
        "$((up1 - P_UP0))" "$tool" "$load_cpu" "$P_OTHER" "$CLK_TCK")
}

# measure PEER CONNECTIONS ROUND: a warm-up, then one measured wrk run; appends a JSON line.
measure() {
    local peer=$1 conns=$2 round=$3 url=${URL[$1]}
    local out="$WORK/wrk/$peer-c$conns-r$round.txt" rc=0 json
    headers "$peer"
    if ((WARMUP > 0)); then
        taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"${WARMUP}s" "${HDRS[@]}" "$url" >/dev/null 2>&1 || true
    fi
    probe_start "$peer"
    taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" --timeout 5s \
        -s "$BENCH/report.lua" "${HDRS[@]}" "$url" >"$out" 2>&1 || rc=$?
    probe_end "$peer" wrk
    json=$(sed -n 's/^WRK_JSON //p' "$out" | tail -n 1)
    [[ -n $json ]] || json=null
    printf '{"round":%d,"peer":"%s","connections":%d,%s,"wrk_exit":%d,"wrk":%s}\n' \
        "$round" "$peer" "$conns" "$PROBE_JSON" "$rc" "$json" >>"$WORK/runs.jsonl"
    # One progress line: requests/s, p99 and any errors.
    local reqs=0 us=1 p99=0 errs=""
    [[ $json =~ \"requests\":([0-9]+) ]] && reqs=${BASH_REMATCH[1]}
    [[ $json =~ \"duration_us\":([0-9]+) ]] && us=${BASH_REMATCH[1]}
    [[ $json =~ \"p99\":([0-9]+) ]] && p99=${BASH_REMATCH[1]}
    [[ $json =~ \"errors\":\{([^}]*)\} ]] && errs=${BASH_REMATCH[1]}
    [[ $errs =~ :[1-9] ]] || errs=""
    printf '  round %d  %-17s c=%-4d %9d req/s  p99 %7.2f ms  rss %s KiB  other CPU %.2f cores%s\n' \
        "$round" "$peer" "$conns" "$((reqs * 1000000 / us))" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" \
        "$P_HWM" "$(awk -v t="$P_OTHER" -v hz="$CLK_TCK" -v us="$us" 'BEGIN { print t / hz / (us / 1e6) }')" \
        "${errs:+  ERRORS $errs}$([[ $json == null ]] && echo "  NO RESULT (wrk exit $rc)")$([[ $P_ALIVE == false ]] && echo "  PROCESS DIED")"
}

# oha_run RATE SECONDS URL: oha at RATE requests/s for SECONDS over OPEN_CONNECTIONS keep-alive
# connections on the load core, each request's latency counted from the time it was due; the
# JSON summary on stdout. Sends HDRS. Requests still in flight at the end are aborted and counted
# by oha as "aborted due to deadline" (not errors: see summarise.py).
oha_run() {
    taskset -c "$LOAD_CPU" env TOKIO_WORKER_THREADS="$WRK_THREADS" timeout -k 5 $(($2 + 30)) \
        "$OHA" -z "${2}s" -q "$1" --latency-correction -c "$OPEN_CONNECTIONS" --no-tui \
        "${OHA_JSON[@]}" "${HDRS[@]}" "$3"
}
# overhead_buckets ADMIN_PORT OUT: the tollgate_overhead_seconds buckets of a Tollgate row's
# /metrics (cumulative counts since it started; summarise.py takes the difference over a run).
overhead_buckets() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | grep '^tollgate_overhead_seconds_bucket' >"$2" || true
}
# measure_open PEER RATE ROUND: a warm-up at RATE, then one measured oha run at RATE (for a
# Tollgate row, its overhead histogram read just before and just after); appends a JSON line.
measure_open() {
    local peer=$1 rate=$2 round=$3 url=${URL[$1]} admin=${ADMIN[$1]:-}
    local base="$WORK/oha/$peer-q$rate-r$round" rc=0 metrics=null line
    headers "$peer"
    if ((WARMUP > 0)); then
        oha_run "$rate" "$WARMUP" "$url" >/dev/null 2>&1 || true
    fi
    [[ -z $admin ]] || overhead_buckets "$admin" "$base.metrics0"
    probe_start "$peer"
    oha_run "$rate" "$DURATION" "$url" >"$base.json" 2>"$base.err" || rc=$?
    probe_end "$peer" oha
    if [[ -n $admin ]]; then
        overhead_buckets "$admin" "$base.metrics1"
        metrics="[\"$base.metrics0\",\"$base.metrics1\"]"
    fi
    printf '{"kind":"open","round":%d,"peer":"%s","rate":%d,"connections":%d,%s,"oha_exit":%d,"oha_file":"%s","metrics_files":%s}\n' \
        "$round" "$peer" "$rate" "$OPEN_CONNECTIONS" "$PROBE_JSON" "$rc" "$base.json" "$metrics" >>"$WORK/runs.jsonl"
    # One progress line: the rate achieved, the percentiles, Tollgate's overhead p99, any errors.
    line=$("$PY" "$BENCH/summarise.py" oha-line --oha "$base.json" \
        ${admin:+--metrics "$base.metrics0" "$base.metrics1"} 2>&1) || line="NO RESULT (oha exit $rc: $(head -c 200 "$base.err"))"
    printf '  round %d  %-17s q=%-6d %s  rss %s KiB  other CPU %.2f cores%s\n' "$round" "$peer" "$rate" "$line" \
        "$P_HWM" "$(awk -v t="$P_OTHER" -v hz="$CLK_TCK" -v s="$DURATION" 'BEGIN { print t / hz / s }')" \
        "$([[ $P_ALIVE == false ]] && echo "  PROCESS DIED")"
}

# Other work on the machine skews every figure; say so up front (each run also records it).
busy_now=$(ps -e -o comm= | grep -cxE 'rustc|cargo|cc1|cc1plus|ld|clang' || true)
if ((busy_now > 0)); then
    log "warning: $busy_now compiler/build processes are running: expect noisy numbers (see 'other CPU')"
fi
read -ra CONN_LIST <<<"$CONNECTIONS"
read -ra RATE_LIST <<<"$RATES"
# interleave MEASURE ITEMS PEERS...: every peer once per round and item (a connection count or a
# rate), peers in an order rotated every round.
interleave() {
    local fn=$1 items=$2 r x i
    shift 2
    local peers=("$@") n=$#
    for ((r = 1; r <= ROUNDS; r++)); do
        for x in $items; do
            for ((i = 0; i < n; i++)); do
                "$fn" "${peers[(i + r - 1) % n]}" "$x" "$r"
            done
        done
    done
}
if ((CLOSED)); then
    n=${#PEER_LIST[@]}
    log "measuring (closed loop, wrk): $n peers x ${#CONN_LIST[@]} connection counts x $ROUNDS rounds," \
        "$((WARMUP + DURATION)) s each: about $((n * ${#CONN_LIST[@]} * ROUNDS * (WARMUP + DURATION + 1) / 60 + 1)) min"
    interleave measure "${CONN_LIST[*]}" "${PEER_LIST[@]}"
fi
if ((OPEN)); then
    n=${#OPEN_LIST[@]}
    log "measuring (open loop, $("$OHA" --version 2>/dev/null || echo oha), $OPEN_CONNECTIONS connections):" \
        "$n peers x ${#RATE_LIST[@]} rates x $ROUNDS rounds, $((WARMUP + DURATION)) s each:" \
        "about $((n * ${#RATE_LIST[@]} * ROUNDS * (WARMUP + DURATION + 1) / 60 + 1)) min"
    interleave measure_open "${RATE_LIST[*]}" "${OPEN_LIST[@]}"
fi

# ------------------------------------------------------------------------- 4b. profile (PROFILE=1)
# profile PEER CONNECTIONS: perf's view of where the proxy's CPU time goes under wrk, then
# strace's syscall counts per request (a run of its own: strace slows what it traces).
profile() {
    local peer=$1 conns=$2 pid=${PID[$1]} url=${URL[$1]} out="$OUT/profile-$1-c$2.txt"
    local data="$WORK/perf-$peer-c$conns.data" reqs
    headers "$peer"
    perf record -q -F 999 -g -p "$pid" -o "$data" -- sleep "$DURATION" 2>>"$WORK/perf.log" &
    local perf_pid=$!
    taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" "${HDRS[@]}" "$url" >/dev/null 2>&1 || true
    wait "$perf_pid" || true
    {
        echo "# $peer, $conns connections: perf record -F 999 -g over ${DURATION}s of wrk load"
        echo "## by object (self time)"
        perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -12
        echo "## by symbol (self time, >= 1%)"
        perf report -i "$data" --stdio --no-children --percent-limit 1 --sort dso,sym -g none 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -60
        echo "## syscalls (strace -c -f over ${DURATION}s of wrk load; requests counted by wrk)"
    } >"$out"
    timeout "$((DURATION + 5))" strace -c -f -p "$pid" -o "$WORK/strace-$peer-c$conns.txt" &
    local strace_pid=$!
    sleep 0.5
    reqs=$(taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" "${HDRS[@]}" "$url" 2>/dev/null |
        awk '/requests in/ { print $1 }')
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    { echo "requests: ${reqs:-?}"; cat "$WORK/strace-$peer-c$conns.txt"; } >>"$out"
    log "profile of $peer at $conns connections: $out"
}
if ((PROFILE)); then
    command -v perf >/dev/null && command -v strace >/dev/null ||
        die "PROFILE=1 needs perf and strace (apt-get install linux-perf strace)"
    for p in "${PEER_LIST[@]}"; do
        [[ $p == tollgate* && -n ${PID[$p]} ]] || continue
        for c in "${CONN_LIST[@]}"; do profile "$p" "$c"; done
    done
fi

# ---------------------------------------------------------------------------------- 5. report
# Redis round trips per request of the shared row, over one more run: EVALSHA calls (each one round
# trip; the commands the script runs inside Redis are not round trips) and every other command the
# clients sent, against the requests wrk completed.
if wants tollgate-shared; then
    redis_stat() { # FIELD of INFO (stats or commandstats): total_commands_processed, cmdstat_evalsha
        redis-cli -p "$P_REDIS" INFO all | tr -d '\r' | awk -F'[:=,]' -v f="$1" '$1 == f { print ($2 == "calls" ? $3 : $2) + 0 }'
    }
    ev0=$(redis_stat cmdstat_evalsha) all0=$(redis_stat total_commands_processed)
    shared_out=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" "${CALLER_HEADERS[@]}" "${URL[tollgate-shared]}")
    ev1=$(redis_stat cmdstat_evalsha) all1=$(redis_stat total_commands_processed)
    shared_reqs=$(awk '/requests in/ { print $1 }' <<<"$shared_out")
    {
        echo "# Redis round trips per request (tollgate-shared)"
        echo
        echo "One wrk run (64 connections, ${DURATION} s) through the shared row after the measurements:"
        echo "$shared_reqs requests, $((ev1 - ev0)) EVALSHA calls (one round trip each) ="\
            "$(awk -v c=$((ev1 - ev0)) -v r="$shared_reqs" 'BEGIN { printf "%.3f", c / r }') round trips per request;"\
            "$((all1 - all0)) commands in all, counting the ones the script runs inside Redis"\
            "($(awk -v c=$((all1 - all0)) -v r="$shared_reqs" 'BEGIN { printf "%.2f", c / r }') per request)."
    } >"$OUT/redis.md"
    log "$(tail -n 1 "$OUT/redis.md")"
fi

"$PY" "$BENCH/summarise.py" report --work "$WORK" --out "$OUT"
log "wrote $OUT/latest.md, $OUT/raw.json$( ((CLOSED)) && echo ", $OUT/latest.png")$( ((OPEN)) && echo ", $OUT/latest-open.png")"
