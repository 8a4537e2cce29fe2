#!/usr/bin/env bash
# CSV columns are filled from variables of the same names (csv_row), which
# static checkers cannot follow.
# shellcheck disable=SC2034
# Run every bench scenario against Switchboard and each peer server, one
# server at a time, and write bench/results/ (results.md, results.csv,
# throughput.png, memory.png). `make bench` runs bench/setup.sh first.
#
#   bench/run.sh
#
# Environment:
#   BENCH_SECONDS     measured seconds per scenario (default 5)
#   BENCH_REPEAT      runs of each throughput scenario; the best is kept (default 2)
#   BENCH_SERVERS     servers to run (default: switchboard switchboard-mem node-ws gorilla lws)
#   BENCH_IDLE_CONNS  connections opened by the idle (memory) scenario (default 5000)
#   BENCH_FIXED_RATE  messages/s published in the fixed-rate fan-out (default 20)
#   BENCH_PORT        first port to try; each run takes the next free one (default 19300)
#   BENCH_RESULTS     where results go (default bench/results)
#   BUILD             the build directory (default build)
#
# The server runs on CPU 0 and the load generator on CPU 1 (taskset). Every
# server starts fresh for every scenario, listens on 127.0.0.1 only, and every
# step is bounded in time.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
SECS=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-2}
SERVERS=${BENCH_SERVERS:-"switchboard switchboard-mem node-ws gorilla lws"}
IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
PORT=${BENCH_PORT:-19300}
FIXED_RATE=${BENCH_FIXED_RATE:-20}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
LG="$BUILD/bench/loadgen"
PEERS_BIN="$BUILD/bench/peers"

say() { echo "bench: $*" >&2; }

# The commit is read before anything here writes to the tree.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then commit="$commit-dirty"; fi

say "building the release server (make build)"
if ! make -s build BUILD="${BUILD#"$ROOT"/}" >"${TMPDIR:-/tmp}/bench-build.log" 2>&1; then
    tail -20 "${TMPDIR:-/tmp}/bench-build.log" >&2
    say "make build failed"
    exit 1
fi
[[ -x $LG ]] || { say "no load generator at $LG"; exit 1; }

if (($(nproc) >= 2)); then
    SERVER_CPU=0 LOADGEN_CPU=1
else
    SERVER_CPU=0 LOADGEN_CPU=0
    say "one CPU only: server and load generator share it"
fi
# 5,000 subscribers need more descriptors than the usual 1,024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-bench.XXXXXX")
SPID=""
cleanup() {
    [[ -n $SPID ]] && kill -KILL "$SPID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ servers
server_available() {
    case $1 in
    switchboard | switchboard-mem) [[ -x $BUILD/switchboard ]] ;;
    node-ws) command -v node >/dev/null && [[ -d $ROOT/bench/peers/node-ws/node_modules/ws ]] ;;
    gorilla) [[ -x $PEERS_BIN/gorilla-hub ]] ;;
    lws) [[ -x $PEERS_BIN/lws-hub ]] ;;
    *) return 1 ;;
    esac
}

server_cmd() { # NAME PORT -> the command line, one word per line
    case $1 in
    switchboard) printf '%s\n' "$BUILD/switchboard" --port "$2" --log-level warn --data-dir "$WORK/data-$2" ;;
    switchboard-mem) printf '%s\n' "$BUILD/switchboard" --port "$2" --log-level warn --data-dir "" ;;
    node-ws) printf '%s\n' node "$ROOT/bench/peers/node-ws/hub.mjs" "$2" ;;
    gorilla) printf '%s\n' "$PEERS_BIN/gorilla-hub" "$2" ;;
    lws) printf '%s\n' "$PEERS_BIN/lws-hub" "$2" ;;
    esac
}

listening() { # PORT [PID]: is something (process PID) listening there?
    if command -v ss >/dev/null; then
        local l
        l=$(ss -Hltnp "sport = :$1" 2>/dev/null)
        [[ -n $l ]] || return 1
        # ss names the owner when it may (as root): then it must be PID.
        [[ -z ${2:-} || $l != *pid=* || $l == *"pid=$2,"* ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

start_server() { # NAME PORT: sets SPID; fails if it is not listening within 10 s
    local cmd=()
    mapfile -t cmd < <(server_cmd "$1" "$2")
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$WORK/server-$2.log" 2>&1 &
    SPID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        listening "$2" "$SPID" && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    say "$1 did not start listening on port $2:"
    tail -5 "$WORK/server-$2.log" >&2
    stop_server
    return 1
}

stop_server() {
    [[ -n $SPID ]] || return 0
    kill -TERM "$SPID" 2>/dev/null
    local i
    for ((i = 0; i < 60; i++)); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=""
}

# The next port, from PORT on, that nothing listens on (other work may share
# this machine and its loopback).
next_port() { # sets NEXT_PORT
    while listening "$PORT"; do PORT=$((PORT + 1)); done
    NEXT_PORT=$PORT
    PORT=$((PORT + 1))
}

proc_ticks() { # PID -> user + system CPU ticks of the process (all its threads)
    local stat f
    stat=$(<"/proc/$1/stat") 2>/dev/null || { echo 0; return; }
    read -ra f <<<"${stat##*) }"
    echo $((f[11] + f[12]))
}

# Nanoseconds the process's threads spent runnable but waiting for a CPU:
# time another task (other work on the machine) had the server's CPU.
sched_wait_ns() { # PID
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{w += $2} END {printf "%.0f", w}'
}

rss_kb() { # PID -> VmRSS in KiB
    local k v _
    while read -r k v _; do
        [[ $k == VmRSS: ]] && { echo "$v"; return; }
    done <"/proc/$1/status" 2>/dev/null
    echo 0
}

# Samples the server's VmRSS every 0.1 s while the load generator runs:
# "seconds KiB" lines. Ends with the load generator.
sample_rss() { # SERVER-PID LOADGEN-PID
    while kill -0 "$2" 2>/dev/null; do
        echo "${EPOCHREALTIME/,/.} $(rss_kb "$1")"
        sleep 0.1
    done
}

# ------------------------------------------------------------ scenarios
# What this load generator can do (another engineer keeps adding scenarios).
lg_usage=$("$LG" --help 2>&1 | head -60)
lg_has() { grep -Eq "^  $1 " <<<"$lg_usage" || grep -Eq "loadgen [a-z|]*\b$1\b" <<<"$lg_usage"; }
lg_has_opt() { grep -q -- "$1" <<<"$lg_usage"; }

# id|kind|loadgen arguments (@PORT, @SECS and @PID are filled in)
SCENARIOS=(
    "echo-100x16|rate|echo --port @PORT --conns 100 --inflight 16 --size 64 --seconds @SECS"
    "fanout-1000|rate|fanout --port @PORT --conns 1000 --inflight 32 --size 64 --seconds @SECS"
    "fanout-5000|rate|fanout --port @PORT --conns 5000 --inflight 32 --size 64 --seconds @SECS"
)
if lg_has_opt --rate; then
    SCENARIOS+=("fanout-1000-fixed|rate|fanout --port @PORT --conns 1000 --rate $FIXED_RATE --size 64 --seconds @SECS")
fi
if lg_has idle && lg_has_opt --server-pid; then
    SCENARIOS+=("idle-$IDLE_CONNS|memory|idle --port @PORT --conns $IDLE_CONNS --hold @SECS --server-pid @PID")
else
    # An older load generator without idle: a fan-out with nothing in flight
    # opens and joins the connections and then holds them; run.sh samples
    # the server's RSS itself.
    SCENARIOS+=("idle-$IDLE_CONNS|memory|fanout --port @PORT --conns $IDLE_CONNS --inflight 0 --size 64 --seconds @SECS")
fi
if lg_has churn; then
    SCENARIOS+=("churn-100|rate|churn --port @PORT --conns 100 --seconds @SECS")
fi
for s in $(grep -Eo '^  [a-z]+ ' <<<"$lg_usage" | head -20); do
    case $s in echo | fanout | idle | churn) ;; *) say "loadgen has a scenario '$s' this script does not know yet; not run" ;; esac
done

# Runs one scenario against one server (started fresh); sets LAST_ROW to its
# CSV row. Returns 1 when the run produced no figures (worth one retry).
run_one() { # SCENARIO-LINE SERVER
    local id kind args
    IFS='|' read -r id kind args <<<"$1"
    local server=$2 port
    next_port
    port=$NEXT_PORT
    if ! start_server "$server" "$port"; then
        local scenario=$id status="server did not start"
        LAST_ROW=$(csv_row)
        return 1
    fi
    sleep 0.5
    local base
    base=$(rss_kb "$SPID")
    args=${args//@PORT/$port}
    args=${args//@SECS/$SECS}
    args=${args//@PID/$SPID}
    # shellcheck disable=SC2206 # the arguments are meant to split
    local lgargs=($args)
    # Bounded: setup (60 s at most in loadgen) + the run + its drain + margin.
    # In a subshell whose `times` then gives the load generator's CPU time.
    (
        timeout $((SECS + 100)) taskset -c "$LOADGEN_CPU" "$LG" "${lgargs[@]}" \
            >"$WORK/lg.out" 2>"$WORK/lg.err"
        rc=$?
        times >"$WORK/lg.times"
        exit $rc
    ) &
    local lgpid=$!
    local t0=$EPOCHREALTIME cpu_srv0 wait0
    cpu_srv0=$(proc_ticks "$SPID") wait0=$(sched_wait_ns "$SPID")
    sample_rss "$SPID" "$lgpid" >"$WORK/rss.txt" &
    local sampler=$!
    wait "$lgpid"
    local rc=$?
    wait "$sampler"
    # While the load generator ran: the server's CPU time, the time it waited
    # for its CPU while something else had it, and the load generator's CPU
    # time, each as a share of the wall time (setup included). A server far
    # below 100% with the load generator near it was held back by the load
    # generator, not by itself.
    local wall server_cpu_pct server_wait_pct loadgen_cpu_pct cpu_srv1 wait1 hz
    hz=$(getconf CLK_TCK)
    cpu_srv1=$(proc_ticks "$SPID") wait1=$(sched_wait_ns "$SPID")
    wall=$(awk -v a="${t0/,/.}" -v b="${EPOCHREALTIME/,/.}" 'BEGIN {print b - a}')
    server_cpu_pct=$(awk -v d=$((cpu_srv1 - cpu_srv0)) -v w="$wall" -v hz="$hz" 'BEGIN {printf "%.0f", 100 * d / hz / w}')
    server_wait_pct=$(awk -v d=$((wait1 - wait0)) -v w="$wall" 'BEGIN {printf "%.0f", 100 * d / 1e9 / w}')
    loadgen_cpu_pct=$(awk -v w="$wall" 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%.0f", 100 * (u[1] * 60 + u[2] + s[1] * 60 + s[2]) / w }' "$WORK/lg.times" 2>/dev/null)
    sleep 0.5
    local after
    after=$(rss_kb "$SPID")
    stop_server
    # The RSS under load: the most in the last second before the load
    # generator finished (its connections still open).
    local loaded
    loaded=$(awk '{t[NR]=$1; r[NR]=$2} END {m=0; for (i=1;i<=NR;i++) if (t[i] >= t[NR]-1 && r[i] > m) m=r[i]; print m}' "$WORK/rss.txt")
    local line
    line=$(grep -E '^[a-z]+ .*=' "$WORK/lg.out" | tail -1)
    get() { grep -Eo "(^| )$1=[^ ]+" <<<"$line" | head -1 | cut -d= -f2 | sed -E 's/(us|\/s)$//'; }
    local rate p50 p99 secs failed setup lost status=ok per_conn="" joined_kb=""
    rate=$(get rate) p50=$(get p50) p99=$(get p99) secs=$(get seconds) failed=$(get failed)
    setup=$(get setup_seconds) lost=$(get lost)
    if ((rc != 0)) || [[ -z $line ]]; then
        status="loadgen exit $rc: $(tr '\n,' ' ;' <"$WORK/lg.err" | cut -c1-160)"
    elif [[ $kind == rate ]] && awk -v s="$secs" 'BEGIN {exit !(s == "" || s > 1000)}'; then
        status="the run never started (not every client joined in time)"
    elif [[ $kind == rate && ${rate:-0} == 0 ]]; then
        status="nothing came back"
    fi
    if [[ $kind == memory && $status == ok ]]; then
        local before_b after_b joined
        before_b=$(get rss_before) after_b=$(get rss_after) joined=$(get joined)
        if [[ -n $after_b && -n $joined && $joined -gt 0 ]]; then
            # loadgen idle measured it: bytes, before and after the joins.
            base=$((before_b / 1024)) joined_kb=$((after_b / 1024))
            per_conn=$(awk -v a="$after_b" -v b="$before_b" -v n="$joined" 'BEGIN {printf "%.2f", (a - b) / n / 1024}')
        else
            joined_kb=$loaded
            per_conn=$(awk -v a="$loaded" -v b="$base" -v n="$IDLE_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}')
        fi
        [[ -n $joined && $joined != "$IDLE_CONNS" ]] && status="only $joined of $IDLE_CONNS joined"
        rate="" p50="" p99=""
    fi
    local scenario=$id rate_per_s=$rate p50_us=$p50 p99_us=$p99 rss_start_kb=$base \
        rss_joined_kb=$joined_kb rss_loaded_kb=$loaded rss_after_kb=$after rss_per_conn_kb=$per_conn \
        seconds=$secs setup_seconds=$setup runs=1 other_rates="" \
        command="loadgen ${args//--port $port /}" loadgen_output=$line
    LAST_ROW=$(csv_row)
    [[ $status == ok ]]
}

mkdir -p "$RESULTS"
CSV="$WORK/results.csv"
CSV_HEADER="scenario,server,rate_per_s,p50_us,p99_us,rss_start_kb,rss_joined_kb,rss_loaded_kb,rss_after_kb,rss_per_conn_kb,seconds,setup_seconds,failed,lost,server_cpu_pct,server_wait_pct,loadgen_cpu_pct,runs,other_rates,status,command,loadgen_output"

# A CSV row from the variables of the same names (empty when unset).
csv_row() {
    local f out="" v
    IFS=, read -ra f <<<"$CSV_HEADER"
    for v in "${f[@]}"; do
        out+="${!v:-},"
    done
    echo "${out%,}"
}

# Runs one scenario REPEAT times (rate scenarios) and keeps the best run, the
# usual way to filter out what other work on the machine takes; sets LAST_ROW.
run_best() { # SCENARIO-LINE SERVER
    local kind n=1 i best="" best_rate=-1 rates=() r
    kind=$(cut -d'|' -f2 <<<"$1")
    [[ $kind == rate && $1 != *--rate* ]] && n=$REPEAT
    for ((i = 0; i < n; i++)); do
        if ! run_one "$1" "$2"; then
            say "  $2 ${1%%|*}: $(field status "$LAST_ROW"); retrying once"
            run_one "$1" "$2" || { [[ -z $best ]] && best=$LAST_ROW; continue; }
        fi
        r=$(field rate_per_s "$LAST_ROW")
        rates+=("${r:-0}")
        say "  $(field loadgen_output "$LAST_ROW") [cpu: server $(field server_cpu_pct "$LAST_ROW")%, server waiting $(field server_wait_pct "$LAST_ROW")%, loadgen $(field loadgen_cpu_pct "$LAST_ROW")%]"
        if awk -v a="${r:-0}" -v b="$best_rate" 'BEGIN {exit !(a > b)}'; then
            best=$LAST_ROW best_rate=${r:-0}
        fi
    done
    LAST_ROW=$best
    if ((${#rates[@]} > 1)); then
        # Record how many runs there were and what the others gave.
        local others=() seen=0
        for r in "${rates[@]}"; do
            if [[ $r == "$best_rate" && $seen == 0 ]]; then seen=1; else others+=("$r"); fi
        done
        LAST_ROW=$(set_field runs "${#rates[@]}" "$LAST_ROW")
        LAST_ROW=$(set_field other_rates "$(IFS=' '; echo "${others[*]}")" "$LAST_ROW")
    fi
}

col() { # NAME -> its column number in CSV_HEADER
    local f i
    IFS=, read -ra f <<<"$CSV_HEADER"
    for i in "${!f[@]}"; do [[ ${f[$i]} == "$1" ]] && { echo $((i + 1)); return; }; done
}
field() { cut -d, -f"$(col "$1")" <<<"$2"; }
set_field() { # NAME VALUE ROW
    awk -v c="$(col "$1")" -v v="$2" 'BEGIN {FS = OFS = ","} {$c = v; print}' <<<"$3"
}
echo "$CSV_HEADER" >"$CSV"

started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for server in $SERVERS; do
    if ! server_available "$server"; then
        say "$server: not available (run bench/setup.sh)"
        for sc in "${SCENARIOS[@]}"; do
            scenario=${sc%%|*} status="not available" csv_row >>"$CSV"
        done
        continue
    fi
    # Same work for everyone: the server must speak the bench subset.
    if command -v node >/dev/null && [[ -d $ROOT/bench/peers/node-ws/node_modules/ws ]]; then
        next_port
        if start_server "$server" "$NEXT_PORT"; then
            check=$(timeout 15 node "$ROOT/bench/peers/check.mjs" "$NEXT_PORT" 2>&1)
            check_rc=$?
            stop_server
        else
            check="did not start" check_rc=1
        fi
        if ((check_rc != 0)); then
            say "$server: failed the protocol check: $check"
            for sc in "${SCENARIOS[@]}"; do
                scenario=${sc%%|*} status="failed the protocol check: ${check//,/;}" csv_row >>"$CSV"
            done
            continue
        fi
        say "$server: protocol check ok"
    fi
    for sc in "${SCENARIOS[@]}"; do
        say "$server: ${sc%%|*}"
        run_best "$sc" "$server"
        echo "$LAST_ROW" >>"$CSV"
    done
done
say "all runs took $(($(date +%s) - started)) s"

cp "$CSV" "$RESULTS/results.csv"

# ------------------------------------------------------------ report
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
ver() { "$@" 2>/dev/null | head -1; }
BENCH_MACHINE="$(nproc) CPUs, ${cpu:-unknown CPU}, Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
BENCH_COMMIT="$commit" \
BENCH_LOAD="load average $load_before before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after" \
BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" \
BENCH_SECONDS="$SECS" \
BENCH_REPEAT="$REPEAT" \
BENCH_PINNING="server on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU (taskset)" \
BENCH_VERSIONS="switchboard $(ver "$BUILD/switchboard" --version | awk '{print $NF}'); \
node $(ver node --version) with ws $(ver node -p "require('$ROOT/bench/peers/node-ws/node_modules/ws/package.json').version"); \
$(ver go version | awk '{print $3}') with gorilla/websocket $(dpkg-query -W -f='${Version}' golang-github-gorilla-websocket-dev 2>/dev/null); \
libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null | tr -d -); \
$(cc --version 2>/dev/null | head -1)" \
    python3 "$ROOT/bench/report.py" "$RESULTS" || { say "report failed"; exit 1; }

if command -v gnuplot >/dev/null; then
    for gp in "$RESULTS"/*.gp; do
        (cd "$RESULTS" && gnuplot "$(basename "$gp")") || say "gnuplot failed on $gp"
    done
    rm -f "$RESULTS"/*.gp "$RESULTS"/*.dat
else
    say "no gnuplot: no plots (run bench/setup.sh)"
fi
say "wrote ${RESULTS#"$ROOT"/}/results.md, results.csv, throughput.png, memory.png"
