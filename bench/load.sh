#!/usr/bin/env bash
# bench/load.sh: Tollgate's load benchmark against nginx and HAProxy doing the same work (issue 6).
#
# Installs what it needs from Debian, builds Tollgate in release mode, starts an upstream, the
# partner emulators and every peer on 127.0.0.1, measures each with wrk at several connection
# counts over interleaved rounds, and writes bench/results/{latest.md,latest.png,raw.json}.
# Idempotent: installs only what is missing, uses its own temporary directory, and stops every
# process it started when it exits, fails or is interrupted. Run `bench/load.sh --help`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/load.sh [--help]

Tollgate's load benchmark: the same proxying work (route /ottimate/v1/... to the upstream's
/v1/..., drop the caller's Authorization and X-API-Key, add the partner's X-API-Key and an
OAuth2 bearer token, add X-Request-Id, pooled keep-alive upstream connections) through nginx,
HAProxy and Tollgate, each pinned to core 1, with wrk and the upstream (nginx `return 200`)
pinned to core 0. Rows: direct (wrk straight to the upstream: the ceiling), nginx, haproxy,
tollgate (--workers 1, pinned), tollgate-default (default runtime, not pinned), tollgate-shared
(as tollgate, with its rate limit kept in Redis through [shared]: a limit high enough never to
reject, the same limit as the local rows; Redis on core 0, persistence off), tollgate-callers
(as tollgate, with one [clients] key: caller_auth "required", wrk sends Proxy-Authorization).

Writes bench/results/latest.md (medians over rounds, ratios to nginx, machine facts),
bench/results/latest.png (throughput and p99) and bench/results/raw.json (every run).
Needs root for apt-get when nginx, haproxy, wrk, redis-server or python3-matplotlib are missing,
and 2+ cores. Also writes bench/results/redis.md: Redis commands per request of tollgate-shared.

Environment (defaults in brackets):
  DURATION        seconds per measured wrk run [10]
  ROUNDS          rounds; every peer is measured once per round and connection count [3]
  WARMUP          seconds of unmeasured wrk load before each measured run [1]
  CONNECTIONS     wrk connection counts ["16 64 256"]
  PEERS           rows to measure ["direct nginx haproxy tollgate tollgate-default tollgate-shared tollgate-callers"]
  WRK_THREADS     wrk threads (-t) [1]
  STARTUP_RUNS    Tollgate start-ups timed to /readyz 200, median reported [5]
  BASE_PORT       first of the loopback ports used, BASE_PORT..BASE_PORT+17 [18080]
  OUT             where the results go [bench/results]
  SKIP_INSTALL=1  do not apt-get anything;  SKIP_BUILD=1  use the existing release binary
  KEEP_WORK=1     keep the temporary directory (configs, logs, wrk output) after a success
  PROFILE=1       after the measurements, profile each Tollgate row at each connection count: one
                  more wrk run under `perf record -g` (OUT/profile-PEER-cN.txt: where the CPU
                  time goes, by symbol) and one under `strace -c` (syscalls per request, in the
                  same file; strace slows the process, so its run is not a measurement)

A default run measures 7 peers x 3 connection counts x 3 rounds x (1 + 10 s): about 12 minutes,
plus the release build (fat LTO: several minutes when anything changed).
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
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-16 64 256}
PEERS=${PEERS:-direct nginx haproxy tollgate tollgate-default tollgate-shared tollgate-callers}
WRK_THREADS=${WRK_THREADS:-1}
STARTUP_RUNS=${STARTUP_RUNS:-5}
BASE_PORT=${BASE_PORT:-18080}
OUT=${OUT:-$BENCH/results}
SKIP_INSTALL=${SKIP_INSTALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
PROFILE=${PROFILE:-0}
LOAD_CPU=0   # wrk and the upstream
PROXY_CPU=1  # the proxy under test
# Debian's python3, where python3-matplotlib installs (a pyenv or venv python3 may lack it).
PY=/usr/bin/python3
# What wrk sends as the caller: credentials every proxy must remove.
CALLER_HEADERS=(-H 'Authorization: Bearer caller-token-must-not-pass' -H 'X-API-Key: caller-key-must-not-pass')
# The tollgate-callers row's client key (a bench fixture), sent on top of CALLER_HEADERS.
CLIENT_KEY=bench-client-key-0123456789abcdef
# headers PEER: the wrk/curl header arguments for PEER.
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

for v in DURATION ROUNDS WARMUP WRK_THREADS STARTUP_RUNS BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && STARTUP_RUNS > 0 && WRK_THREADS > 0)) ||
    die "DURATION, ROUNDS, STARTUP_RUNS and WRK_THREADS must be at least 1"
for c in $CONNECTIONS; do
    [[ $c =~ ^[0-9]+$ ]] && ((c >= WRK_THREADS)) ||
        die "CONNECTIONS: '$c' must be a whole number >= WRK_THREADS"
done
read -ra PEER_LIST <<<"$PEERS"
for p in "${PEER_LIST[@]}"; do
    case $p in direct | nginx | haproxy | tollgate | tollgate-default | tollgate-shared | tollgate-callers) ;;
        *) die "PEERS: unknown peer '$p'" ;; esac
done
wants() { [[ " $PEERS " == *" $1 "* ]]; }
(($(nproc) >= 2)) || die "needs at least 2 cores (wrk + upstream on core 0, the proxy on core 1)"

# Loopback ports, all chosen here.
P_UPSTREAM=$BASE_PORT
P_NGINX=$((BASE_PORT + 1))
P_HAPROXY=$((BASE_PORT + 2))
P_TG=$((BASE_PORT + 3)) P_TG_ADMIN=$((BASE_PORT + 4))
P_TGD=$((BASE_PORT + 5)) P_TGD_ADMIN=$((BASE_PORT + 6))
P_START=$((BASE_PORT + 7)) P_START_ADMIN=$((BASE_PORT + 8))
P_SANDBOX=$((BASE_PORT + 10)) # the emulators take P, P+1 (OAS) and P+2 (Osigu)
P_TGS=$((BASE_PORT + 13)) P_TGS_ADMIN=$((BASE_PORT + 14))
P_REDIS=$((BASE_PORT + 15))
P_TGC=$((BASE_PORT + 16)) P_TGC_ADMIN=$((BASE_PORT + 17))

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
            echo "load.sh: configs, logs and wrk output kept in $WORK" >&2
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
for t in nginx haproxy wrk curl redis-server redis-cli taskset getconf; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not on PATH"
done
CLK_TCK=$(getconf CLK_TCK)

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
    "$P_START" "$P_START_ADMIN" "$P_SANDBOX" $((P_SANDBOX + 1)) $((P_SANDBOX + 2)); do
    ! port_taken "$port" || die "port 127.0.0.1:$port is taken; set BASE_PORT to a free range"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
mkdir -p "$WORK/wrk" "$OUT"
: >"$WORK/runs.jsonl"
"$PY" "$BENCH/summarise.py" meta --out "$WORK/meta.json" \
    --param "DURATION=$DURATION" --param "ROUNDS=$ROUNDS" --param "WARMUP=$WARMUP" \
    --param "CONNECTIONS=$CONNECTIONS" --param "PEERS=$PEERS" --param "WRK_THREADS=$WRK_THREADS" \
    --param "STARTUP_RUNS=$STARTUP_RUNS"
log "work directory: $WORK"

fixture() { sed -n "s/^pub const $1: &str = \"\(.*\)\";/\1/p" "$REPO/crates/sandbox/src/fixtures.rs"; }
API_KEY=$(fixture OTTIMATE_SANDBOX_API_KEY)
CLIENT_ID=$(fixture OTTIMATE_SANDBOX_CLIENT_ID)
CLIENT_SECRET=$(fixture OTTIMATE_SANDBOX_CLIENT_SECRET)
[[ -n $API_KEY && -n $CLIENT_ID && -n $CLIENT_SECRET ]] ||
    die "cannot read the Ottimate sandbox credentials from crates/sandbox/src/fixtures.rs"

# start_nginx NAME TEMPLATE KEY=VALUE...: its own prefix dir; sets LAST_PID (master), WORKER_PID.
start_nginx() {
    local name=$1 tmpl=$2 dir=$WORK/$1 i
    shift 2
    mkdir -p "$dir"
    render "$tmpl" "$dir/nginx.conf" "DIR=$dir" "$@"
    nginx -q -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$WORK/$name.log" 2>&1 ||
        die "$name: bad config: $(cat "$WORK/$name.log")"
    start_bg "$name" "${PIN[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    WORKER_PID=""
    for i in $(seq 200); do
        WORKER_PID=$(pgrep -P "$LAST_PID" | head -n 1 || true)
        [[ -n $WORKER_PID ]] && return 0
        is_alive "$LAST_PID" || died "$name" "$LAST_PID"
        sleep 0.05
    done
    die "$name: no worker process"
}

# The upstream ("the partner"): nginx answering 200 from memory, on the load core.
PIN=(taskset -c "$LOAD_CPU")
start_nginx upstream "$BENCH/nginx-upstream.conf" "UPSTREAM_PORT=$P_UPSTREAM"
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

# The peers. URL[peer] is what wrk loads; PID[peer] the process whose RSS and CPU are measured.
declare -A URL PID PORT
URL[direct]=http://127.0.0.1:$P_UPSTREAM$REQ_PATH PID[direct]="" PORT[direct]=$P_UPSTREAM
PIN=(taskset -c "$PROXY_CPU")
if wants nginx; then
    start_nginx nginx "$BENCH/nginx-proxy.conf" "PORT=$P_NGINX" "UPSTREAM_PORT=$P_UPSTREAM" \
        "API_KEY=$API_KEY" "TOKEN=$TOKEN"
    wait_tcp nginx "$LAST_PID" "$P_NGINX"
    URL[nginx]=http://127.0.0.1:$P_NGINX/ottimate$REQ_PATH PID[nginx]=$WORKER_PID PORT[nginx]=$P_NGINX
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
# tollgate_variant NAME PORT ADMIN_PORT EXTRA: a pinned one-worker row whose config is the common
# one plus the TOML text EXTRA, checked, started and ready.
tollgate_variant() {
    local name=$1 port=$2 admin=$3 extra=$4
    tollgate_config "$WORK/$name.toml" "$port" "$admin"
    printf '\n%s' "$extra" >>"$WORK/$name.toml"
    "$TOLLGATE" check --config "$WORK/$name.toml" >"$WORK/tollgate-check.log" 2>&1 ||
        die "tollgate check refused the $name config: $(cat "$WORK/tollgate-check.log")"
    start_bg "$name" "${PIN[@]}" "$TOLLGATE" --workers 1 --log-level warn run --config "$WORK/$name.toml"
    wait_http_200 "$name" "$LAST_PID" "http://127.0.0.1:$admin/readyz"
    URL[$name]=http://127.0.0.1:$port/ottimate$REQ_PATH PID[$name]=$LAST_PID PORT[$name]=$port
}
if wants tollgate; then
    tollgate_variant tollgate "$P_TG" "$P_TG_ADMIN" ""
fi
if wants tollgate-shared; then
    start_bg redis taskset -c "$LOAD_CPU" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$WORK"
    wait_tcp redis "$LAST_PID" "$P_REDIS"
    tollgate_variant tollgate-shared "$P_TGS" "$P_TGS_ADMIN" \
        "$(printf '[shared]\nredis_url = "redis://127.0.0.1:%s/0"\nreplicas = 1\n' "$P_REDIS")"
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
    PORT[tollgate-default]=$P_TGD
fi
for p in "${PEER_LIST[@]}"; do
    if [[ -n ${PID[$p]:-} ]]; then log "$p on :${PORT[$p]} (measured pid ${PID[$p]})"; fi
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
    if peer in ("nginx", "haproxy") and auth != "Bearer " + static_token:
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
for p in "${PEER_LIST[@]}"; do preflight "$p"; done
log "pre-flight passed for: $PEERS"

# --------------------------------------------------------------------------------- 4. measure
# measure PEER CONNECTIONS ROUND: a warm-up, then one measured wrk run; appends a JSON line.
measure() {
    local peer=$1 conns=$2 round=$3 url=${URL[$1]} pid=${PID[$1]}
    local out="$WORK/wrk/$peer-c$conns-r$round.txt" rc=0 json
    local cpu0=null cpu1=null hwm=null reset=false alive=true up0 up1 b0 b1 cpus=""
    headers "$peer"
    if ((WARMUP > 0)); then
        taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"${WARMUP}s" "${HDRS[@]}" "$url" >/dev/null 2>&1 || true
    fi
    if [[ -n $pid ]] && is_alive "$pid"; then
        reset_hwm "$pid" && reset=true
        cpus=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$pid/status")
        cpu0=$(cpu_ticks "$pid")
    fi
    up0=$(cpu_ticks "$UPSTREAM_WORKER")
    child_ticks >"$WORK/c0"
    b0=$(busy_ticks)
    taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" --timeout 5s \
        -s "$BENCH/report.lua" "${HDRS[@]}" "$url" >"$out" 2>&1 || rc=$?
    b1=$(busy_ticks)
    child_ticks >"$WORK/c1"
    up1=$(cpu_ticks "$UPSTREAM_WORKER")
    if [[ -n $pid ]]; then
        if is_alive "$pid"; then
            cpu1=$(cpu_ticks "$pid")
            hwm=$(hwm_kib "$pid")
        else
            alive=false
        fi
    fi
    json=$(sed -n 's/^WRK_JSON //p' "$out" | tail -n 1)
    [[ -n $json ]] || json=null
    local cpu=null wrk_cpu other
    [[ $cpu0 != null && $cpu1 != null ]] && cpu=$((cpu1 - cpu0))
    # CPU that processes outside the measurement (parallel builds...) took during the run: all
    # busy ticks minus the proxy's, the upstream's and wrk's. Near 0 on a quiet machine.
    wrk_cpu=$(($(<"$WORK/c1") - $(<"$WORK/c0")))
    other=$((b1 - b0 - (up1 - up0) - wrk_cpu))
    [[ $cpu == null ]] || other=$((other - cpu))
    printf '{"round":%d,"peer":"%s","connections":%d,"pid":%s,"cpus":"%s","alive":%s,"hwm_reset":%s,"rss_hwm_kib":%s,"cpu_ticks":%s,"upstream_cpu_ticks":%d,"wrk_cpu_ticks":%d,"other_cpu_ticks":%d,"clk_tck":%d,"wrk_exit":%d,"wrk":%s}\n' \
        "$round" "$peer" "$conns" "${pid:-null}" "$cpus" "$alive" "$reset" "$hwm" "$cpu" "$((up1 - up0))" \
        "$wrk_cpu" "$other" "$CLK_TCK" "$rc" "$json" >>"$WORK/runs.jsonl"
    # One progress line: requests/s, p99 and any errors.
    local reqs=0 us=1 p99=0 errs=""
    [[ $json =~ \"requests\":([0-9]+) ]] && reqs=${BASH_REMATCH[1]}
    [[ $json =~ \"duration_us\":([0-9]+) ]] && us=${BASH_REMATCH[1]}
    [[ $json =~ \"p99\":([0-9]+) ]] && p99=${BASH_REMATCH[1]}
    [[ $json =~ \"errors\":\{([^}]*)\} ]] && errs=${BASH_REMATCH[1]}
    [[ $errs =~ :[1-9] ]] || errs=""
    printf '  round %d  %-16s c=%-4d %9d req/s  p99 %7.2f ms  rss %s KiB  other CPU %.2f cores%s\n' \
        "$round" "$peer" "$conns" "$((reqs * 1000000 / us))" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" \
        "$hwm" "$(awk -v t="$other" -v hz="$CLK_TCK" -v us="$us" 'BEGIN { print t / hz / (us / 1e6) }')" \
        "${errs:+  ERRORS $errs}$([[ $json == null ]] && echo "  NO RESULT (wrk exit $rc)")$([[ $alive == false ]] && echo "  PROCESS DIED")"
}

# Other work on the machine skews every figure; say so up front (each run also records it).
busy_now=$(pgrep -c -x 'rustc|cargo|cc1|cc1plus|ld|clang' || true)
if ((busy_now > 0)); then
    log "warning: $busy_now compiler/build processes are running: expect noisy numbers (see 'other CPU')"
fi
read -ra CONN_LIST <<<"$CONNECTIONS"
n=${#PEER_LIST[@]}
log "measuring: ${#PEER_LIST[@]} peers x ${#CONN_LIST[@]} connection counts x $ROUNDS rounds," \
    "$((WARMUP + DURATION)) s each: about $((n * ${#CONN_LIST[@]} * ROUNDS * (WARMUP + DURATION + 1) / 60 + 1)) min"
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "${CONN_LIST[@]}"; do
        for ((i = 0; i < n; i++)); do # peers interleaved, order rotated every round
            measure "${PEER_LIST[(i + r - 1) % n]}" "$c" "$r"
        done
    done
done

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
log "wrote $OUT/latest.md, $OUT/latest.png and $OUT/raw.json"
