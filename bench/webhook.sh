#!/usr/bin/env bash
# bench/webhook.sh: the webhook ingress load benchmark (open loop, acknowledgement latency).
#
# Builds Tollgate and the load generator (crates/tollgate/examples/webhook_load.rs) in release
# mode, starts one Tollgate per store row (SQLite on disk; Redis streams in a local redis-server
# with an fsynced AOF) with one [webhooks.osigu] block, and drives signed Standard Webhooks
# deliveries at fixed rates from the generator, which also plays the internal service Tollgate
# delivers to. For the Redis row it also counts the Redis commands per event (INFO commandstats).
# Writes bench/results/webhook.{md,json}.
# Idempotent: installs only what is missing, works in its own directory, and stops every process
# it started when it exits, fails or is interrupted. Run `bench/webhook.sh --help`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/webhook.sh [--help]

Tollgate's webhook ingress benchmark. A load generator (the `webhook_load` example) sends
Standard Webhooks deliveries (a fresh event id each, 512 bytes of JSON, HMAC-SHA256 signed) to
Tollgate's webhook listener at a fixed rate, open loop: event i is due at start + i/rate whatever
the earlier answers, and its latency runs from that due time to the end of the 2xx answer
(coordinated omission corrected). Tollgate verifies, dedupes and commits each event to its store
and delivers it to the generator's receiver; the generator waits for those deliveries after each
run. Store rows:
  sqlite  the embedded store: WAL, synchronous = FULL, group commit (the 202 waits for the fsync);
  redis   [shared]: Redis streams (one EVALSHA of accept.lua per event, bodies sealed with
          shared.encryption_key) in a redis-server this script starts with appendonly yes,
          appendfsync always, no RDB snapshots: Redis fsyncs the AOF before it sends the replies
          of the commands it just ran, so the 202 leaves after the fsync (webhook_durability
          "write"; "aof" needs Redis 7.2). Redis 7.0 from Debian 12 is enough.

Tollgate runs `--workers 1` pinned to core 1, and so does the redis-server (the server side,
gateway and store, shares core 1, as SQLite's writer thread does); the generator and its receiver
run on core 0. Rates are interleaved over rounds (rotated each round); each cell of the table is
the median over rounds. The stores (SQLite file, Redis AOF) are under DATA_ROOT, on disk: fsync
cost depends on that filesystem, and the report names it (tmpfs would make fsync free and the
figures meaningless, so it warns). Around each Redis run, INFO commandstats gives the commands
Redis ran (scripts' inner commands included) and the EVALSHA calls, per accepted event; before
the next run starts, every accepted event must have left the stream (XDEL count = XADD count).

Writes bench/results/webhook.md (table: store, rate, achieved events/s, ack p50/p99/p99.9/max,
errors, deliveries, Tollgate and Redis CPU per event, Redis commands and EVALSHA calls per event;
Redis commands per event by command; machine and filesystem facts) and
bench/results/webhook.json (every run). Needs 2+ cores; root only to apt-get what is missing
(taskset from util-linux, curl, python3; redis-server and redis-tools for the redis row).

Environment (defaults in brackets):
  RATES           target rates, events/s ["500 1000 2000"]
  DURATION        measured seconds per run [10]
  WARMUP          seconds at the same rate before each run, not measured [1]
  ROUNDS          rounds; every rate is measured once per round [3]
  STORES          store rows, from: sqlite redis ["sqlite redis"]
  CONNECTIONS     keep-alive connections the generator opens up front [32]
  MAX_CONNECTIONS more when none is free, up to [256]
  BODY_BYTES      event body size [512]
  DRAIN           seconds the generator waits for deliveries after a run [10]
  DELIVERY_CONCURRENCY  the webhook's delivery_concurrency [32]
  DATA_ROOT       where the work directory (configs, logs, the stores) is made [<repo>/target]
  BASE_PORT       first of the loopback ports used, BASE_PORT..BASE_PORT+19 [18180]
  OUT             where the results go [bench/results]
  SKIP_INSTALL=1  do not apt-get anything;  SKIP_BUILD=1  use the existing release binaries
  KEEP_WORK=1     keep the work directory after a success

A default run measures 2 stores x 3 rates x 3 rounds x (1 + 10 s + drain): about 5 minutes,
plus the release build (fat LTO: several minutes when anything changed).
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) echo "webhook.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------------- settings
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RATES=${RATES:-500 1000 2000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
STORES=${STORES:-sqlite redis}
CONNECTIONS=${CONNECTIONS:-32}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-256}
BODY_BYTES=${BODY_BYTES:-512}
DRAIN=${DRAIN:-10}
DELIVERY_CONCURRENCY=${DELIVERY_CONCURRENCY:-32}
DATA_ROOT=${DATA_ROOT:-$REPO/target}
BASE_PORT=${BASE_PORT:-18180}
OUT=${OUT:-$REPO/bench/results}
SKIP_INSTALL=${SKIP_INSTALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
LOAD_CPU=0  # the generator and its receiver
PROXY_CPU=1 # Tollgate, every thread of it (the store's writer thread included), and redis-server
HOOK=osigu  # the webhook's name and path

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
die() { printf '[%s] webhook.sh: error: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

for v in DURATION WARMUP ROUNDS CONNECTIONS MAX_CONNECTIONS BODY_BYTES DRAIN DELIVERY_CONCURRENCY BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && CONNECTIONS > 0 && BODY_BYTES > 0 && DELIVERY_CONCURRENCY > 0)) ||
    die "DURATION, ROUNDS, CONNECTIONS, BODY_BYTES and DELIVERY_CONCURRENCY must be at least 1"
read -ra RATE_LIST <<<"$RATES"
((${#RATE_LIST[@]})) || die "RATES is empty"
for r in "${RATE_LIST[@]}"; do
    [[ $r =~ ^[0-9]+$ ]] && ((r > 0)) || die "RATES: '$r' must be a whole number of events/s above 0"
done
read -ra STORE_LIST <<<"$STORES"
((${#STORE_LIST[@]})) || die "STORES is empty"
declare -A SEEN_STORE
for s in "${STORE_LIST[@]}"; do
    # Each store is one branch of store_config below.
    case $s in sqlite | redis) ;; *) die "STORES: unknown store '$s' (supported: sqlite redis)" ;; esac
    [[ -z ${SEEN_STORE[$s]:-} ]] || die "STORES: '$s' is listed twice"
    SEEN_STORE[$s]=1
done
wants_redis() { [[ -n ${SEEN_STORE[redis]:-} ]]; }
(($(nproc) >= 2)) || die "needs at least 2 cores (the generator on core 0, Tollgate on core 1)"

# Loopback ports: the receiver, then 3 per store row (data plane, admin, webhook listener), and
# the redis-server of the redis row last.
P_RECEIVER=$BASE_PORT
port_of() { # STORE_INDEX OFFSET(0 data, 1 admin, 2 webhook)
    echo $((BASE_PORT + 1 + 3 * $1 + $2))
}
P_REDIS=$((BASE_PORT + 19))
((${#STORE_LIST[@]} <= 6)) || die "at most 6 stores (the port range holds 20 ports)"

# ------------------------------------------------------------------- processes and clean-up
PIDS=()      # every long-running background process started here, stopped in reverse order
LOAD_PID=""  # the generator while it runs
WORK=""


cleanup() {
    local rc=$? all=(${PIDS[@]+"${PIDS[@]}"})
    trap - EXIT INT TERM
    [[ -z $LOAD_PID ]] || all+=("$LOAD_PID")
    stop_pids ${all[@]+"${all[@]}"}
    if [[ -n $WORK && -d $WORK ]]; then
        if ((rc == 0)) && [[ $KEEP_WORK != 1 ]]; then
            rm -rf "$WORK"
        else
            echo "webhook.sh: configs, logs and the store kept in $WORK" >&2
        fi
    fi
    exit "$rc"
}
source "$(dirname "${BASH_SOURCE[0]}")/procs.sh"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM






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
    local need=()
    command -v taskset >/dev/null 2>&1 || need+=(util-linux)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    if wants_redis; then
        command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
        command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
    fi
    ((${#need[@]})) || return 0
    [[ $SKIP_INSTALL != 1 ]] || die "missing: ${need[*]} (SKIP_INSTALL=1 is set)"
    [[ $(id -u) == 0 ]] || die "missing: ${need[*]}; run as root to apt-get them, or install them"
    log "installing from Debian: ${need[*]}"
    apt_get update -q
    apt_get install -y -q --no-install-recommends "${need[@]}"
    if [[ " ${need[*]} " == *" redis-server "* ]]; then
        # The package starts a system service on :6379; this benchmark runs its own server.
        service redis-server stop >/dev/null 2>&1 || true
        systemctl disable --now redis-server >/dev/null 2>&1 || true
        update-rc.d redis-server disable >/dev/null 2>&1 || true
    fi
}
install_deps
for t in taskset curl python3 getconf df; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not on PATH"
done
if wants_redis; then
    for t in redis-server redis-cli; do command -v "$t" >/dev/null 2>&1 || die "$t is not on PATH"; done
fi
PY=$(command -v python3)
CLK_TCK=$(getconf CLK_TCK)

# -------------------------------------------------------------------------------- 2. build
cd "$REPO"
if [[ $SKIP_BUILD != 1 ]]; then
    log "building Tollgate and the load generator (release, fat LTO: this takes a while)"
    cargo build --release -p tollgate
    cargo build --release -p tollgate --example webhook_load
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TOLLGATE=$TARGET_DIR/release/tollgate
LOADGEN=$TARGET_DIR/release/examples/webhook_load
[[ -x $TOLLGATE ]] || die "no release binary at $TOLLGATE"
[[ -x $LOADGEN ]] || die "no load generator at $LOADGEN"

# ------------------------------------------------------------------------ 3. start everything
PORTS=("$P_RECEIVER")
for k in "${!STORE_LIST[@]}"; do PORTS+=("$(port_of "$k" 0)" "$(port_of "$k" 1)" "$(port_of "$k" 2)"); done
! wants_redis || PORTS+=("$P_REDIS")
for port in "${PORTS[@]}"; do
    ! port_taken "$port" || die "port 127.0.0.1:$port is taken; set BASE_PORT to a free range"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$DATA_ROOT" "$OUT"
WORK=$(mktemp -d "$DATA_ROOT/tollgate-webhook-bench.XXXXXX")
mkdir -p "$WORK/load"
: >"$WORK/runs.jsonl"
log "work directory (configs, logs, stores): $WORK"

# The filesystem the stores live on: fsync's cost is this device's.
FS_TYPE=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
FS_SOURCE=$(df -PT "$WORK" | awk 'NR == 2 { print $1 }')
FS_OPTIONS=$(findmnt -n -o OPTIONS -T "$WORK" 2>/dev/null || echo unknown)
case $FS_TYPE in
    tmpfs | ramfs) log "warning: $WORK is on $FS_TYPE, where fsync costs nothing: set DATA_ROOT to a disk" ;;
esac
log "store filesystem: $FS_TYPE on $FS_SOURCE ($FS_OPTIONS)"

# A throwaway secret for this run, kept in a file the config reads (never on a command line).
SECRET=whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')
(umask 077 && printf '%s\n' "$SECRET" >"$WORK/whsec")

# The redis row's server: persistence as close to SQLite's promise (the answer after the fsync) as
# Redis 7.0 allows: every write appended to the AOF and fsynced before the replies go out
# (appendfsync always; Redis groups the writes of one event-loop turn into one fsync), no RDB
# snapshots. On core 1 with Tollgate: the server side of the benchmark shares one core, as the
# SQLite row's writer thread does. Loopback only.
rcli() { redis-cli -h 127.0.0.1 -p "$P_REDIS" "$@"; }
REDIS_PID="" REDIS_VERSION=""
if wants_redis; then
    mkdir -p "$WORK/redis-data"
    start_bg redis-server taskset -c "$PROXY_CPU" redis-server --port "$P_REDIS" --bind 127.0.0.1 \
        --protected-mode yes --dir "$WORK/redis-data" --appendonly yes --appendfsync always --save ''
    REDIS_PID=$LAST_PID
    for i in $(seq 200); do # up to 10 s until it answers (and has loaded its AOF)
        [[ $(rcli PING 2>/dev/null) == PONG ]] && break
        is_alive "$REDIS_PID" || died redis-server "$REDIS_PID"
        ((i < 200)) || die "redis-server does not answer PING on :$P_REDIS after 10 s (log: $WORK/redis-server.log)"
        sleep 0.05
    done
    [[ $(rcli CONFIG GET appendfsync | tail -n 1) == always &&
        $(rcli INFO persistence | tr -d '\r' | awk -F: '$1 == "aof_enabled" { print $2 }') == 1 ]] ||
        die "redis-server did not take appendonly yes / appendfsync always (log: $WORK/redis-server.log)"
    REDIS_VERSION=$(rcli INFO server | tr -d '\r' | awk -F: '$1 == "redis_version" { print $2 }')
    # Bodies are sealed in Redis as in production; the key, like the secret, is read from a file.
    (umask 077 && head -c 32 /dev/urandom | base64 >"$WORK/shared_key")
    log "redis-server $REDIS_VERSION on :$P_REDIS (pid $REDIS_PID, core $PROXY_CPU; AOF, appendfsync always)"
fi

store_config() { # STORE: the config lines that select the store (none: SQLite under data_dir)
    case $1 in
        sqlite) ;;
        redis)
            cat <<EOF

[shared]
redis_url = "redis://127.0.0.1:$P_REDIS/0"
replicas = 1
op_timeout = "1s"
encryption_key = "\${file:$WORK/shared_key}"
EOF
            ;;
    esac
}

declare -A TG_PID WEBHOOK_URL
for k in "${!STORE_LIST[@]}"; do
    store=${STORE_LIST[k]}
    conf=$WORK/tollgate-$store.toml
    cat >"$conf" <<EOF
# Written by bench/webhook.sh: one webhook, its store on disk, deliveries to the generator.
[server]
listen = "127.0.0.1:$(port_of "$k" 0)"
admin_listen = "127.0.0.1:$(port_of "$k" 1)"
webhook_listen = "127.0.0.1:$(port_of "$k" 2)"
data_dir = "$WORK/data-$store"

[webhooks.$HOOK]
path = "/$HOOK"
scheme = "standard"
secrets = ["\${file:$WORK/whsec}"]
deliver_to = "http://127.0.0.1:$P_RECEIVER/hooks/$HOOK"
delivery_concurrency = $DELIVERY_CONCURRENCY
EOF
    store_config "$store" >>"$conf"
    "$TOLLGATE" check --config "$conf" >"$WORK/check-$store.log" 2>&1 ||
        die "tollgate check refused $conf: $(cat "$WORK/check-$store.log")"
    start_bg "tollgate-$store" taskset -c "$PROXY_CPU" "$TOLLGATE" --workers 1 --log-level warn run --config "$conf"
    TG_PID[$store]=$LAST_PID
    wait_http_200 "tollgate-$store" "$LAST_PID" "http://127.0.0.1:$(port_of "$k" 1)/readyz"
    WEBHOOK_URL[$store]=http://127.0.0.1:$(port_of "$k" 2)/$HOOK
    log "tollgate ($store store) on :$(port_of "$k" 2) (pid $LAST_PID, core $PROXY_CPU)"
done

# --------------------------------------------------------------------------------- 4. measure
# field FILE PYTHON_EXPR: evaluates EXPR over the JSON object `r` in FILE (first line).
field() {
    "$PY" -c 'import json, sys; r = json.loads(open(sys.argv[1]).readline()); print(eval(sys.argv[2]))' "$1" "$2"
}

# Redis round trips, from INFO commandstats: calls per command since the server started, the
# commands scripts run inside Redis included (a subcommand is named like "xgroup|create").
redis_calls() { # prints them as one JSON object
    rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ {
        sub(/^cmdstat_/, "", $1); printf "%s\"%s\":%d", (n++ ? "," : "{"), $1, $3 }
        END { print (n ? "}" : "{}") }'
}
redis_delta() { # BEFORE AFTER (redis_calls output): the calls made in between, this script's INFO left out
    "$PY" -c 'import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({k: a[k] - b.get(k, 0) for k in sorted(a) if k != "info" and a[k] > b.get(k, 0)}, separators=(",", ":")))' "$1" "$2"
}
# Every event a run stored has left the stream again: done.lua's XDEL count caught up with
# accept.lua's XADD count (each accepted event is one XADD, each delivered one is one XDEL).
redis_drained() { # DELTA (redis_delta output)
    "$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(d.get("xdel", 0) < d.get("xadd", 0))' "$1"
}
aof_rewrites() { rcli INFO persistence | tr -d '\r' | awk -F: '$1 == "aof_rewrites" { print $2 + 0 }'; }

# load STORE RATE ROUND DURATION WARMUP: one generator run; appends a JSON line to runs.jsonl.
# For the redis row also: Redis commands and CPU from just before the generator starts until the
# run's events have all left the stream (so the next run starts on an empty queue); sets LAST_REDIS.
load() {
    local store=$1 rate=$2 round=$3 duration=$4 warmup=$5 pid=${TG_PID[$1]}
    local base="$WORK/load/$store-$rate-r$round" rc=0 cpu0 cpu1 result
    local calls0="" calls1 delta="{}" drained=false rcpu0=0 rcpu1=0 rew0=0 rew1=0 i
    LAST_REDIS=null
    if [[ $store == redis ]]; then
        rew0=$(aof_rewrites)
        rcpu0=$(cpu_ticks "$REDIS_PID")
        calls0=$(redis_calls)
    fi
    cpu0=$(cpu_ticks "$pid")
    WEBHOOK_SECRET=$SECRET taskset -c "$LOAD_CPU" "$LOADGEN" --target "${WEBHOOK_URL[$store]}" \
        --rate "$rate" --duration "$duration" --warmup "$warmup" --connections "$CONNECTIONS" \
        --max-connections "$MAX_CONNECTIONS" --body-bytes "$BODY_BYTES" --drain "$DRAIN" \
        --receiver "127.0.0.1:$P_RECEIVER" --json >"$base.json" 2>"$base.log" </dev/null &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=""
    cpu1=$(cpu_ticks "$pid" 2>/dev/null || echo "$cpu0")
    is_alive "$pid" || died "tollgate-$store" "$pid"
    if [[ $store == redis ]]; then
        is_alive "$REDIS_PID" || died redis-server "$REDIS_PID"
        # The generator stops once the receiver has every event; done.lua follows each answer.
        for ((i = 0; i < DRAIN * 10 + 10; i++)); do
            calls1=$(redis_calls)
            delta=$(redis_delta "$calls0" "$calls1")
            if redis_drained "$delta"; then drained=true; break; fi
            sleep 0.1
        done
        rcpu1=$(cpu_ticks "$REDIS_PID")
        rew1=$(aof_rewrites)
        [[ $drained == true ]] ||
            log "  warning: the redis stream still holds events of this run after $((DRAIN + 1)) s: $delta"
        LAST_REDIS=$(printf '{"calls":%s,"drained":%s,"cpu_ticks":%d,"aof_rewrites":%d}' \
            "$delta" "$drained" "$((rcpu1 - rcpu0))" "$((rew1 - rew0))")
    fi
    result=$(tail -n 1 "$base.json")
    [[ $rc == 0 && $result == \{* ]] || {
        log "  generator failed (exit $rc): $(tail -n 3 "$base.log")"
        result=null
    }
    printf '{"store":"%s","rate":%d,"round":%d,"exit":%d,"tollgate_cpu_ticks":%d,"clk_tck":%d,"result":%s,"redis":%s}\n' \
        "$store" "$rate" "$round" "$rc" "$((cpu1 - cpu0))" "$CLK_TCK" "$result" "$LAST_REDIS" >>"$WORK/runs.jsonl"
    LAST_RESULT=$base.json
    [[ $result == null ]] || log "  round $round  $store  $(tail -n 1 "$base.log")"
}

# Pre-flight per store, which also warms it: every event acknowledged 2xx and delivered.
for store in "${STORE_LIST[@]}"; do
    load "$store" 50 0 1 0
    [[ -s $LAST_RESULT ]] || die "pre-flight ($store): the generator gave no result (see $WORK/load)"
    verdict=$(field "$LAST_RESULT" \
        '"ok" if r["sent"] > 0 and r["ok"] == r["sent"] and r["delivered"] == r["acked_incl_warmup"] else "sent %s, 2xx %s, statuses %s, errors %s, delivered %s" % (r["sent"], r["ok"], r["statuses"], r["errors"], r["delivered"])')
    [[ $verdict == ok ]] || die "pre-flight ($store): $verdict (logs: $WORK/tollgate-$store.log, $WORK/load)"
    [[ $store != redis || $LAST_REDIS == *'"drained":true'* ]] ||
        die "pre-flight (redis): delivered events did not leave the stream: $LAST_REDIS"
done
log "pre-flight passed: every event acknowledged and delivered"

busy_now=$(ps -e -o comm= | grep -cxE 'rustc|cargo|cc1|cc1plus|ld|clang' || true)
if ((busy_now > 0)); then
    log "warning: $busy_now compiler/build processes are running: expect noisy numbers"
fi
n=${#RATE_LIST[@]}
log "measuring: ${#STORE_LIST[@]} store(s) x $n rates x $ROUNDS rounds, $((WARMUP + DURATION)) s each plus the drain"
for ((r = 1; r <= ROUNDS; r++)); do
    for store in "${STORE_LIST[@]}"; do
        for ((i = 0; i < n; i++)); do # rates interleaved, order rotated every round
            load "$store" "${RATE_LIST[(i + r - 1) % n]}" "$r" "$DURATION" "$WARMUP"
            sleep 1 # the store's checkpoint (SQLite) and the last deliveries settle between runs
        done
    done
done

# ---------------------------------------------------------------------------------- 5. report
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1) ]] || GIT_REV="$GIT_REV (dirty)"
# shellcheck disable=SC1091 # the machine's own file
OS_NAME=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}") || OS_NAME=unknown
M_DATE=$(date -u '+%Y-%m-%d %H:%M') M_GIT=$GIT_REV M_CORES=$(nproc) M_KERNEL=$(uname -r) M_OS=$OS_NAME \
    M_CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) \
    M_RUSTC=$(rustc --version 2>/dev/null || echo unknown) \
    M_FS_TYPE=$FS_TYPE M_FS_SOURCE=$FS_SOURCE M_FS_OPTIONS=$FS_OPTIONS M_REDIS_VERSION=$REDIS_VERSION \
    P_RATES=$RATES P_DURATION=$DURATION P_WARMUP=$WARMUP P_ROUNDS=$ROUNDS P_STORES=$STORES \
    P_CONNECTIONS=$CONNECTIONS P_MAX_CONNECTIONS=$MAX_CONNECTIONS P_BODY_BYTES=$BODY_BYTES P_DRAIN=$DRAIN \
    P_DELIVERY_CONCURRENCY=$DELIVERY_CONCURRENCY P_PROXY_CPU=$PROXY_CPU P_LOAD_CPU=$LOAD_CPU \
    "$PY" - "$WORK/runs.jsonl" "$OUT" <<'PYEOF'
import json, os, statistics, sys

runs_file, out = sys.argv[1:]
runs = [json.loads(line) for line in open(runs_file) if line.strip()]
env = os.environ
p = {k: env["P_" + k] for k in ("RATES", "DURATION", "WARMUP", "ROUNDS", "STORES", "CONNECTIONS", "MAX_CONNECTIONS",
                                 "BODY_BYTES", "DRAIN", "DELIVERY_CONCURRENCY", "PROXY_CPU", "LOAD_CPU")}
meta = {
    "date_utc": env["M_DATE"], "git": env["M_GIT"], "cores": int(env["M_CORES"]), "cpu": env["M_CPU"],
    "kernel": env["M_KERNEL"], "os": env["M_OS"], "rustc": env["M_RUSTC"],
    "store_filesystem": {"type": env["M_FS_TYPE"], "source": env["M_FS_SOURCE"], "options": env["M_FS_OPTIONS"]},
    "params": p,
}
if env["M_REDIS_VERSION"]:
    meta["redis"] = {"version": env["M_REDIS_VERSION"], "appendonly": "yes", "appendfsync": "always", "save": "",
                     "cpu": int(p["PROXY_CPU"]), "webhook_durability": "write", "encryption_key": True}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(v):
    return "—" if v is None else f"{v:.2f}"


def per_event(r):
    """Events a run accepted (2xx, warm-up included): the denominator of every per-event figure."""
    return r["result"]["acked_incl_warmup"] if r["result"] else 0


# Which script each EVALSHA ran, derived from the commands only that script runs in this workload
# (no retries, no dead letters): XADD only in accept.lua, XCLAIM only in take.lua, XDEL only in
# done.lua; what is left is head.lua (one per delivery worker loop).
SCRIPTS = (("accept.lua", "xadd"), ("take.lua", "xclaim"), ("done.lua", "xdel"))


def redis_figures(r):
    """Per accepted event: every command Redis ran, EVALSHA/EVAL calls, each command, each script."""
    n, rd = per_event(r), r.get("redis")
    if not rd or not n:
        return None
    calls = rd["calls"]
    evals = calls.get("evalsha", 0) + calls.get("eval", 0)
    scripts = {name: calls.get(cmd, 0) / n for name, cmd in SCRIPTS}
    scripts["head.lua"] = evals / n - sum(scripts.values())
    return {
        "events": n,
        "commands_per_event": sum(calls.values()) / n,
        "evalsha_per_event": evals / n,
        "by_command_per_event": {k: v / n for k, v in calls.items()},
        "evalsha_by_script_per_event": scripts,
        "cpu_us_per_event": rd["cpu_ticks"] / r["clk_tck"] * 1e6 / n,
    }


for r in runs:
    if r.get("redis"):
        r["redis"]["per_event"] = redis_figures(r)

measured = [r for r in runs if r["round"] > 0]  # round 0 is the pre-flight
rows, cells, targets, by_command = [], [], {}, {}
for store in dict.fromkeys(r["store"] for r in measured):
    for rate in sorted({r["rate"] for r in measured if r["store"] == store}):
        cell = [r for r in measured if r["store"] == store and r["rate"] == rate]
        ok = [r["result"] for r in cell if r["result"]]
        failed = len(cell) - len(ok)
        lat = {k: med([x["ack_ms"][k] for x in ok]) for k in ("p50", "p99", "p999", "max")}
        achieved = med([x["achieved_per_s"] for x in ok])
        errors = sum(x["errors"] + x["non_2xx"] for x in ok)
        acked = sum(x["acked_incl_warmup"] for x in ok)
        delivered = sum(x["delivered"] or 0 for x in ok)
        cpu = med([r["tollgate_cpu_ticks"] / r["clk_tck"] * 1e6 / per_event(r) for r in cell if per_event(r)])
        extra = max([x["connections_opened_later"] for x in ok], default=0)
        rf = [r["redis"]["per_event"] for r in cell if r.get("redis") and r["redis"]["per_event"]]
        redis_cpu = med([f["cpu_us_per_event"] for f in rf])
        commands = med([f["commands_per_event"] for f in rf])
        evalsha = med([f["evalsha_per_event"] for f in rf])
        undrained = sum(1 for r in cell if r.get("redis") and not r["redis"]["drained"])
        rewrites = sum(r["redis"]["aof_rewrites"] for r in cell if r.get("redis"))
        if rf:
            names = sorted({k for f in rf for k in f["by_command_per_event"]})
            by_command.setdefault(store, {})[rate] = {
                **{f"EVALSHA of {s}": med([f["evalsha_by_script_per_event"][s] for f in rf])
                   for s in ("accept.lua", "take.lua", "done.lua", "head.lua")},
                **{k: med([f["by_command_per_event"].get(k, 0) for f in rf]) for k in names},
            }
        cells.append({
            "store": store, "rate": rate, "runs": len(cell), "runs_without_result": failed,
            "achieved_per_s": achieved, "ack_ms": lat, "errors": errors, "acked": acked, "delivered": delivered,
            "tollgate_cpu_us_per_event": cpu, "extra_connections": extra,
            "redis_cpu_us_per_event": redis_cpu, "redis_commands_per_event": commands,
            "redis_evalsha_per_event": evalsha, "redis_runs_not_drained": undrained, "redis_aof_rewrites": rewrites,
        })
        rows.append("| " + " | ".join([
            store,
            f"{rate:,}",
            "—" if achieved is None else f"{achieved:,.0f}",
            ms(lat["p50"]), ms(lat["p99"]), ms(lat["p999"]), ms(lat["max"]),
            f"{errors:,}" + (f" ({failed} of {len(cell)} runs gave no result)" if failed else ""),
            f"{delivered:,} / {acked:,}",
            "—" if cpu is None else f"{cpu:.0f}",
            "—" if redis_cpu is None else f"{redis_cpu:.0f}",
            "—" if commands is None else f"{commands:.2f}",
            "—" if evalsha is None else f"{evalsha:.3f}",
            str(extra),
        ]) + " |")
        if rate == 1000:
            targets[store] = lat["p99"]

with open(os.path.join(out, "webhook.json"), "w") as f:
    json.dump({"meta": meta, "cells": cells, "runs": runs}, f, indent=1)
    f.write("\n")

fs = meta["store_filesystem"]
stores = []
if "sqlite" in p["STORES"].split():
    stores.append("sqlite: the embedded store, WAL, synchronous = FULL, group commit; the answer waits for the fsync")
if "redis" in meta:
    stores.append(
        f"redis: `[shared]`, Redis streams in a local redis-server {meta['redis']['version']} on core {p['PROXY_CPU']} "
        "with Tollgate (appendonly yes, appendfsync always, no RDB snapshots; AOF in the same filesystem), "
        "webhook_durability \"write\", bodies sealed with shared.encryption_key; with appendfsync always Redis "
        "writes and fsyncs the AOF before it sends the replies of the commands it ran (one fsync for all the "
        "clients served in one event-loop turn), so the answer also waits for the fsync")
lines = [
    "# Webhook ingress: open-loop load (`bench/webhook.sh`)",
    "",
    f"{meta['date_utc']} UTC, git {meta['git']}; {meta['cores']} cores ({meta['cpu']}), {meta['os']}, "
    f"kernel {meta['kernel']}, {meta['rustc']}. Stores on {fs['type']} ({fs['source']}, {fs['options']}).",
    "",
    f"Signed Standard Webhooks deliveries ({p['BODY_BYTES']}-byte JSON, a fresh event id each) at a fixed rate, "
    "open loop: latency from each event's scheduled send time to the end of its 2xx answer (coordinated "
    f"omission corrected). Stores: {'; '.join(stores)}. "
    f"Tollgate `--workers 1` on core {p['PROXY_CPU']}, the generator and its receiver on core {p['LOAD_CPU']}; "
    f"{p['CONNECTIONS']} keep-alive connections (more opened when none is free, up to {p['MAX_CONNECTIONS']}); "
    f"delivery_concurrency {p['DELIVERY_CONCURRENCY']}. {p['DURATION']} s per run after {p['WARMUP']} s of "
    f"warm-up, rates interleaved over {p['ROUNDS']} rounds; each figure is the median over rounds.",
    "",
    "| store | rate ev/s | achieved ev/s | ack p50 ms | ack p99 ms | ack p99.9 ms | ack max ms | errors "
    "| delivered / acked | Tollgate CPU µs/event | Redis CPU µs/event | Redis cmds/event | EVALSHA/event "
    "| extra conns |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    "errors: transport errors, timeouts and non-2xx answers, summed over rounds. delivered / acked: events "
    "the receiver got (each counted once) of those acknowledged, warm-up included, summed over rounds. "
    "Tollgate CPU: its user + system time over each run (ingest and delivery) per acknowledged event; Redis "
    "CPU likewise for the redis-server. extra conns: connections the generator opened during a run because "
    "none was free (most in a round).",
]
if by_command:
    lines += [
        "",
        "Redis cmds/event: every command Redis ran during the run (`INFO commandstats`, from just before the "
        "generator started until the run's events had all left the stream), the commands the scripts run "
        "inside Redis included, per acknowledged event (warm-up included). EVALSHA/event: the `EVALSHA` (and "
        "`EVAL`) calls among them, one round trip each. Accepting an event is exactly one `EVALSHA` of "
        "accept.lua (`SET NX PX` + `XADD` inside Redis); delivery adds its own scripts: head.lua once per "
        "delivery worker loop (a loop takes up to delivery_concurrency events), take.lua and done.lua once "
        "per event; besides scripts, one `HMGET` of retry states per non-empty head and, once a second, the "
        "backlog gauges (`XLEN` ×2 + `XRANGE`, one pipeline). The split by script below is derived from the "
        "commands only that script runs here (`XADD`: accept.lua, `XCLAIM`: take.lua, `XDEL`: done.lua; the "
        "rest of the `EVALSHA` calls: head.lua).",
    ]
    for store, per_rate in by_command.items():
        rates = sorted(per_rate)
        names = list(dict.fromkeys(k for rate in rates for k in per_rate[rate]))
        lines += [
            "",
            f"Redis calls per acknowledged event ({store} row, median over rounds):",
            "",
            "| call | " + " | ".join(f"{rate:,} ev/s" for rate in rates) + " |",
            "|---|" + "---|" * len(rates),
        ]
        for k in names:
            # A subcommand ("xgroup|create") with a space: a "|" would split the table cell.
            label = k if k.startswith("EVALSHA of ") else f"`{k.upper().replace('|', ' ')}`"
            lines.append(f"| {label} | " + " | ".join(
                "—" if per_rate[rate].get(k) is None else f"{per_rate[rate][k]:.3f}" for rate in rates) + " |")
    undrained = sum(c["redis_runs_not_drained"] for c in cells)
    rewrites = sum(c["redis_aof_rewrites"] for c in cells)
    if undrained or rewrites:
        lines += ["", f"Caveats: {undrained} Redis run(s) ended with events still in the stream (their counts "
                      f"spill into the next run); {rewrites} AOF rewrite(s) (a forked child on core "
                      f"{p['PROXY_CPU']}) during the measured runs."]
verdicts = [f"{store} {'met' if p99 <= 10 else 'not met'} ({p99:.2f} ms)" for store, p99 in targets.items()
            if p99 is not None]
if verdicts:
    lines += ["", f"Target, ack p99 ≤ 10 ms at 1,000 events/s with fsync on: {'; '.join(verdicts)}."]
with open(os.path.join(out, "webhook.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(rows))
PYEOF
log "wrote $OUT/webhook.md and $OUT/webhook.json"
