#!/usr/bin/env bash
# broker.sh - the "backbone" benchmark: the real broker against a bare relay.
#
#   bash tools/bench/broker.sh [BUILD_DIR]        (what `make bench` runs)
#
# For each worker count in 1 2 4 it measures, in one run on one machine:
#   broker  build/retaild (broker + a sys pool of RETAIL_WORKERS workers)
#   relay   build/relay -w N (CURVE ROUTER -> N in-process echo workers,
#           no MDP logic: the floor any broker pays)
# with the same client, `loadgen -c 64 --service sys --op echo` over
# CurveZMQ. Each measurement is repeated (3 times by default), alternating
# broker and relay so that drift in a shared machine's speed hits both
# alike; the table shows medians and the ratio of the median throughputs.
#
# Knobs (environment): BENCH_SECONDS (measured seconds per run, default 10;
# the whole benchmark then takes about 3.5 minutes; 5 halves that), BENCH_REPEATS
# (3), BENCH_WORKERS ("1 2 4"), BENCH_CONCURRENCY (64).
#
# A server is ready when its TCP port accepts and a one-request probe
# through it gets an ok reply; the probe also creates and allow-lists the
# loadgen certificate before the measured run. Servers get SIGTERM after
# each run (SIGKILL if they hang) and the temporary data dir is removed.
# The table goes to stdout, progress to stderr.
set -euo pipefail

build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
workers_list=${BENCH_WORKERS:-"1 2 4"}
concurrency=${BENCH_CONCURRENCY:-64}

for bin in retaild relay loadgen; do
    if [ ! -x "$build/$bin" ]; then
        echo "broker.sh: $build/$bin is missing (run make first)" >&2
        exit 1
    fi
done

data=$(mktemp -d /tmp/retail-bench.XXXXXX)
server_pid=""

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "broker.sh: pid $server_pid ignored SIGTERM; killing it" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

cleanup() {
    local status=$?
    stop_server
    if [ "$status" -ne 0 ]; then
        for log in "$data"/*.log; do
            [ -f "$log" ] || continue
            echo "broker.sh: last lines of $(basename "$log"):" >&2
            tail -n 20 "$log" >&2
        done
    fi
    rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/ports.sh"

free_port broker_port
free_port relay_port
free_port http_port

# Waits until the server on $1 answers a request; $2... are extra loadgen
# options (the server certificate).
wait_ready() {
    local port=$1
    shift
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || {
            echo "broker.sh: the server exited during start-up" >&2
            return 1
        }
        port_open "$port" && break
        sleep 0.1
    done
    for _ in $(seq 5); do
        if "$build/loadgen" --endpoint "tcp://127.0.0.1:$port" --data-dir "$data" "$@" \
            -c 1 -d 0.2 --warmup 0 -q >/dev/null 2>&1; then
            return 0
        fi
    done
    echo "broker.sh: the server on port $port does not answer" >&2
    return 1
}

start_broker() {
    env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" \
        RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker_port" \
        RETAIL_HTTP_PORT="$http_port" RETAIL_WORKERS="$1" \
        "$build/retaild" >>"$data/retaild.log" 2>&1 &
    server_pid=$!
    wait_ready "$broker_port"
}

start_relay() {
    env -u RETAIL_CONFIG "$build/relay" --endpoint "tcp://127.0.0.1:$relay_port" \
        --data-dir "$data" -w "$1" >>"$data/relay.log" 2>&1 &
    server_pid=$!
    wait_ready "$relay_port" --server-cert relay
}

# One measured run; prints "rps p50 p99 errors" (zeros when it failed).
measure() {
    local port=$1
    shift
    local out
    if ! out=$("$build/loadgen" --endpoint "tcp://127.0.0.1:$port" --data-dir "$data" "$@" \
        -c "$concurrency" -d "$seconds" --service sys --op echo --json -q 2>/dev/null); then
        echo "broker.sh: loadgen failed against port $port" >&2
    fi
    local json
    json=$(printf '%s\n' "$out" | tail -n 1)
    # the first occurrence: the run's own figure, before the per-step ones
    field() { printf '%s' "$json" | grep -o "\"$1\":[-0-9.eE+]*" | head -n 1 | cut -d: -f2; }
    local rps p50 p99 errors lost
    rps=$(field rps)
    p50=$(field p50_us)
    p99=$(field p99_us)
    errors=$(field errors)
    lost=$(field lost)
    echo "${rps:-0} ${p50:-0} ${p99:-0} $((${errors:-0} + ${lost:-0}))"
}

median() {
    printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"
}

echo "broker.sh: ${seconds}s x $repeats per server and worker count; data in $data" >&2
rows=()
trouble=0
for w in $workers_list; do
    b_rps=() b_p50=() b_p99=() r_rps=() r_p50=() r_p99=()
    for rep in $(seq "$repeats"); do
        echo "broker.sh: workers=$w run $rep/$repeats: broker" >&2
        start_broker "$w"
        read -r rps p50 p99 bad < <(measure "$broker_port")
        stop_server
        b_rps+=("$rps") b_p50+=("$p50") b_p99+=("$p99")
        trouble=$((trouble + bad))
        echo "broker.sh:   broker $rps req/s, p50 $p50 us, p99 $p99 us" >&2

        echo "broker.sh: workers=$w run $rep/$repeats: relay" >&2
        start_relay "$w"
        read -r rps p50 p99 bad < <(measure "$relay_port" --server-cert relay)
        stop_server
        r_rps+=("$rps") r_p50+=("$p50") r_p99+=("$p99")
        trouble=$((trouble + bad))
        echo "broker.sh:   relay  $rps req/s, p50 $p50 us, p99 $p99 us" >&2
    done
    rows+=("$w $(median "${b_rps[@]}") $(median "${b_p50[@]}") $(median "${b_p99[@]}") \
$(median "${r_rps[@]}") $(median "${r_p50[@]}") $(median "${r_p99[@]}")")
done

echo
echo "### Backbone: broker vs bare relay"
echo
echo "sys.echo, ~64-byte msgpack requests, $concurrency in flight on one DEALER, CurveZMQ;" \
    "${seconds} s measured per run (after 1 s warmup), median of $repeats alternating runs." \
    "$(nproc) CPUs, $(uname -sr), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| workers | broker req/s | broker p50 µs | broker p99 µs | relay req/s | relay p50 µs | relay p99 µs | broker/relay |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    set -- $row
    awk -v w="$1" -v br="$2" -v bp50="$3" -v bp99="$4" -v rr="$5" -v rp50="$6" -v rp99="$7" \
        'BEGIN { ratio = rr > 0 ? sprintf("%.2f", br / rr) : "n/a";
                 printf "| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s |\n",
                        w, br, bp50, bp99, rr, rp50, rp99, ratio }'
done
if [ "$trouble" -ne 0 ]; then
    echo
    echo "Warning: $trouble requests got an error reply or no reply across all runs" \
        "(run $build/loadgen by hand against the server to see which)."
fi
