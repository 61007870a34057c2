#!/usr/bin/env bash
# harness.sh - the load harness's own ceiling, and the shop scenario's
# figures (make bench-harness).
#
#   bash tools/bench/harness.sh [BUILD_DIR]
#
# Part 1, the ceiling: `loadgen -c 64 --service sys --op echo` against the
# bare relay (build/relay -w 2: a CURVE ROUTER and in-process echo workers,
# no MDP logic, the cheapest server there is) and against retaild's sys
# pool, with 1, 4 and 16 DEALER sockets. Besides requests/s, loadgen
# reports its own CPU per reply: 1e6 / that is what one core of harness
# could drive if the server cost nothing, so it tells whether a figure is
# the server's or the harness's.
#
# Part 2, the shop: a fresh data directory seeded with 1000 products
# (retail-seed --ids), retaild on it, then tools/scenarios/shop.json with
# SHOP_USERS (32) virtual users in the closed loop, then in the open loop
# at half the closed loop's throughput (what the shop does when it is not
# saturated). Per-step figures come from the last closed-loop run.
#
# BENCH_SECONDS (10) per run, BENCH_REPEATS (3) runs taken in turn;
# medians. The tables go to stdout, progress to stderr.
set -euo pipefail
build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
users=${SHOP_USERS:-32}
for bin in retaild relay loadgen retail-seed; do
    [ -x "$build/$bin" ] || {
        echo "harness.sh: $build/$bin is missing (run make first)" >&2
        exit 1
    }
done
command -v python3 >/dev/null || {
    echo "harness.sh: python3 is needed" >&2
    exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/retail-bench-harness.XXXXXX")
pid=""
stop() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}
cleanup() {
    local status=$?
    stop
    [ "$status" -eq 0 ] || tail -n 20 "$tmp"/*.log >&2 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/ports.sh"

# Waits until the server on port $1 answers one request ($2...: loadgen
# options); the probe also makes and allow-lists loadgen's certificate.
wait_ready() {
    local port=$1 data=$2
    shift 2
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            echo "harness.sh: the server exited during start-up" >&2
            return 1
        }
        port_open "$port" && break
        sleep 0.1
    done
    for _ in $(seq 20); do
        "$build/loadgen" --endpoint "tcp://127.0.0.1:$port" --data-dir "$data" "$@" \
            -c 1 -d 0.2 --warmup 0 -q >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "harness.sh: the server on port $port does not answer" >&2
    return 1
}

start_relay() {
    free_port relay_port
    mkdir -p "$tmp/relay"
    env -u RETAIL_CONFIG "$build/relay" --endpoint "tcp://127.0.0.1:$relay_port" \
        --data-dir "$tmp/relay" -w 2 >>"$tmp/relay.log" 2>&1 &
    pid=$!
    wait_ready "$relay_port" "$tmp/relay" --server-cert relay
    endpoint=tcp://127.0.0.1:$relay_port
    data=$tmp/relay
    cert=(--server-cert relay)
}

start_retaild() {
    data=$1
    retaild_ports_env
    env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" RETAIL_ACCESS_LOG=0 "${retaild_env[@]}" \
        "$build/retaild" >>"$tmp/retaild.log" 2>&1 &
    pid=$!
    wait_ready "$broker_port" "$data"
    endpoint=tcp://127.0.0.1:$broker_port
    cert=()
}

# One loadgen run; its JSON result goes to the file $1.
measure() {
    local out=$1
    shift
    "$build/loadgen" --endpoint "$endpoint" --data-dir "$data" "${cert[@]}" -d "$seconds" \
        --json -q "$@" 2>>"$tmp/loadgen.log" | tail -n 1 >"$out" || true
}

# Prints "rps p50_us p99_us cpu_us errors" of a JSON result file.
figures() {
    python3 - "$1" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("0 0 0 0 0")
    sys.exit()
print("%.0f %.0f %.0f %.1f %d" % (r["rps"], r["p50_us"], r["p99_us"], r["cpu_us_per_reply"],
                                  r["errors"]))
PY
}

declare -A results
for r in $(seq "$repeats"); do
    for server in relay retaild; do
        if [ "$server" = relay ]; then start_relay; else
            mkdir -p "$tmp/echo"
            start_retaild "$tmp/echo"
        fi
        for sockets in 1 4 16; do
            measure "$tmp/out.json" -c 64 --sockets "$sockets" --service sys --op echo
            line=$(figures "$tmp/out.json")
            echo "harness.sh: run $r/$repeats, $server, $sockets sockets: $line" \
                "(req/s p50 p99 cpu_us/reply errors)" >&2
            results[$server-$sockets]+="$line"$'\n'
        done
        stop
    done
done

median() { # column $1 of the lines on stdin
    awk -v c="$1" '{print $c}' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

echo
echo "### The harness's ceiling: loadgen -c 64, sys.echo over CURVE"
echo
echo "$seconds s per run, median of $repeats runs taken in turn; $(nproc) CPUs. \"harness"
echo "µs/reply\" is loadgen's own CPU time per reply; 1e6 / it is what one core of"
echo "harness can drive when the server costs nothing."
echo
echo "| server | sockets | requests/s | p50 µs | p99 µs | harness µs/reply | harness ceiling/s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for server in relay retaild; do
    for sockets in 1 4 16; do
        lines=${results[$server-$sockets]}
        rps=$(printf '%s' "$lines" | median 1)
        p50=$(printf '%s' "$lines" | median 2)
        p99=$(printf '%s' "$lines" | median 3)
        cpu=$(printf '%s' "$lines" | median 4)
        ceiling=$(python3 -c "print('%.0f' % (1e6 / $cpu) if $cpu > 0 else '-')")
        echo "| $server | $sockets | $rps | $p50 | $p99 | $cpu | $ceiling |"
    done
done

# Part 2: the shop on a seeded catalog, fresh for every run (stock goes
# down and carts fill up as it runs).
shop_run() { # $1: extra loadgen options; the JSON result goes to $tmp/shop.json
    local d
    d=$(mktemp -d "$tmp/shop.XXXXXX")
    "$build/retail-seed" --data-dir "$d" -n 1000 --ids "$d/demo-product-ids.txt" -q >/dev/null
    start_retaild "$d"
    # setup (register, login: Argon2id at two at a time) is in the warmup
    measure "$tmp/shop.json" --scenario tools/scenarios/shop.json -c "$users" --warmup 10 $1
    stop
    rm -rf "$d"
}
closed=""
open=""
for r in $(seq "$repeats"); do
    shop_run ""
    line=$(figures "$tmp/shop.json")
    cp "$tmp/shop.json" "$tmp/shop-closed.json"
    closed+="$line"$'\n'
    rate=$(echo "$line" | awk '{printf "%d", $1 / 2}')
    shop_run "--rate $rate"
    oline=$(figures "$tmp/shop.json")
    open+="$rate $oline"$'\n'
    echo "harness.sh: run $r/$repeats, shop closed: $line; open at $rate/s: $oline" >&2
done
echo
echo "### The shop scenario: tools/scenarios/shop.json, $users virtual users"
echo
echo "1000 seeded products, fresh data per run; $seconds s after a 10 s warmup (the users'"
echo "register and login); median of $repeats runs. The open loop runs at half the closed"
echo "loop's median throughput, its latency counted from when each request was due."
echo
echo "| load model | requests/s | p50 µs | p99 µs | errors |"
echo "|---|---:|---:|---:|---:|"
echo "| closed, $users in flight | $(printf '%s' "$closed" | median 1) | $(printf '%s' "$closed" | median 2) | $(printf '%s' "$closed" | median 3) | $(printf '%s' "$closed" | median 5) |"
echo "| open at $(printf '%s' "$open" | median 1)/s | $(printf '%s' "$open" | median 2) | $(printf '%s' "$open" | median 3) | $(printf '%s' "$open" | median 4) | $(printf '%s' "$open" | median 6) |"
echo
echo "Per step, the last closed-loop run:"
echo
python3 - "$tmp/shop-closed.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| step | service.op | replies/s | p50 µs | p99 µs | errors | accepted |")
print("|---|---|---:|---:|---:|---:|---:|")
for s in r["steps"]:
    if not s["replies"]:
        continue
    print("| %s | %s.%s | %.0f | %.0f | %.0f | %d | %d |" % (
        s["name"], s["service"], s["op"], s["rps"], s["p50_us"], s["p99_us"], s["errors"],
        s["accepted"]))
PY
