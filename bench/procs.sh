# Process helpers shared by bench/load.sh and bench/webhook.sh (sourced, not run): starting
# background processes with their logs under $WORK, waiting for them, stopping them, and reading
# their CPU time. The sourcing script defines die, PIDS and WORK.

is_alive() { # PID: running and not a zombie
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# start_bg NAME CMD...: run CMD in the background, output to $WORK/NAME.log; sets LAST_PID.
start_bg() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

died() { # NAME PID: fail with the tail of the process's log
    die "$1 (pid $2) exited; last lines of $WORK/$1.log:"$'\n'"$(tail -n 20 "$WORK/$1.log" 2>/dev/null)"
}

port_taken() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

wait_http_200() { # NAME PID URL: wait up to 15 s for a 200
    local i code=none
    for i in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$3" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        is_alive "$2" || died "$1" "$2"
        sleep 0.05
    done
    die "$3 did not answer 200 after 15 s (last: $code; log: $WORK/$1.log)"
}

cpu_ticks() { # PID: utime + stime of the whole process (every thread), in clock ticks
    local s f
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    read -ra f <<<"$s"
    echo $((f[11] + f[12]))
}

stop_pids() { # PID...: TERM in reverse order, up to 5 s for graceful exits, then KILL, then reap
    local pids=("$@") pid i left
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
    for i in $(seq 50); do
        left=0
        for pid in "${pids[@]}"; do is_alive "$pid" && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do is_alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
