#!/usr/bin/env bash
# catalog_writes.sh - durable writes through the whole stack (make
# bench-catalog-writes): what rate of acknowledged catalog writes does
# retaild sustain, and how does it grow with the workers that can share a
# commit (group commit, storage/kv.c)?
#
#   bash tools/bench/catalog_writes.sh [BUILD_DIR]
#
# retail-seed loads PRODUCTS (10,000) products; then, for each worker
# count in BENCH_WORKERS ("1 4 8", RETAIL_WORKERS of retaild; the catalog
# pool has CATALOG_WRITE_WORKERS more, as its log line says), in turn and
# BENCH_REPEATS (3) times: a retaild on that data (access log off, the
# admin from RETAIL_ADMIN_EMAIL/PASSWORD), an admin token from
# POST /v1/auth/login, and wrk -t1 -cCONNECTIONS (64) for BENCH_SECONDS
# (10) of PUT /v1/products/{id}/stock with a random id of the seeded ones
# and a random stock per request. Every answer 200 is a write on disk. A
# table of medians (writes/s, p50, p99) goes to stdout, progress to stderr.
set -euo pipefail
build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
products=${PRODUCTS:-10000}
connections=${CONNECTIONS:-64}
workers_list=${BENCH_WORKERS:-1 4 8}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || {
        echo "catalog_writes.sh: $tool is needed (apt-get install wrk curl python3)" >&2
        exit 1
    }
done
for bin in retaild retail-seed; do
    [ -x "$build/$bin" ] || {
        echo "catalog_writes.sh: $build/$bin is missing (run make first)" >&2
        exit 1
    }
done

data=$(mktemp -d "${TMPDIR:-/tmp}/retail-bench-writes.XXXXXX")
pid=""
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
cleanup() {
    stop
    rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
email=bench-admin@example.com
password=bench-admin-password-1

echo "catalog_writes.sh: seeding $products products" >&2
env -u RETAIL_CONFIG "$build/retail-seed" --data-dir "$data" -n "$products" -q \
    --ids "$data/ids" >/dev/null

cat >"$data/put.lua" <<'LUA'
-- PUT /v1/products/{id}/stock for a random id of the file named by the
-- first argument, with the token of the second.
local ids, token = {}, ""

function init(args)
    for line in io.lines(args[1]) do
        ids[#ids + 1] = line
    end
    token = args[2]
    math.randomseed(7)
end

function request()
    local body = string.format('{"stock":%d}', math.random(1, 1000))
    return wrk.format("PUT", "/v1/products/" .. ids[math.random(#ids)] .. "/stock",
        {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
    io.stderr:write(string.format("non-2xx: %d\n", summary.errors.status))
end
LUA

# One measured run with $1 workers: "writes/s p50_us p99_us".
run() {
    local workers=$1 http broker base token out
    http=$(port)
    broker=$(port)
    env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" RETAIL_HTTP_PORT="$http" \
        RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker" RETAIL_ACCESS_LOG=0 \
        RETAIL_WORKERS="$workers" RETAIL_ADMIN_EMAIL="$email" RETAIL_ADMIN_PASSWORD="$password" \
        "$build/retaild" >>"$data/retaild.log" 2>&1 &
    pid=$!
    base=http://127.0.0.1:$http
    for _ in $(seq 200); do
        curl -sf "$base/readyz" >/dev/null && break
        sleep 0.1
    done
    token=$(curl -sf -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/v1/auth/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    wrk -t1 -c"$connections" -d1s -s "$data/put.lua" "$base" -- "$data/ids" "$token" \
        >/dev/null 2>&1 # warm-up
    out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$data/put.lua" "$base" \
        -- "$data/ids" "$token" 2>&1)
    stop
    if echo "$out" | grep -q "non-2xx: [1-9]"; then
        echo "catalog_writes.sh: some writes were refused:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
def us(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\b", text, re.M)
    v = float(m.group(1))
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50, p99 = us("50%"), us("99%")
print(f"{rate:.0f} {p50:.0f} {p99:.0f}")'
}

declare -A results pools
for r in $(seq "$repeats"); do
    for w in $workers_list; do
        line=$(run "$w")
        pools[$w]=$(grep -o 'catalog pool of [0-9]* workers' "$data/retaild.log" | tail -n 1 |
            grep -o '[0-9][0-9]*')
        echo "catalog_writes.sh: run $r/$repeats, $w workers: $line (writes/s p50 p99)" >&2
        results[$w]+="$line"$'\n'
    done
done

echo
echo "### Catalog writes through HTTP: PUT /v1/products/{id}/stock"
echo
echo "wrk -t1 -c$connections, $seconds s per run, median of $repeats runs taken in turn;" \
    "$products products; $(nproc) CPUs."
echo
echo "| RETAIL_WORKERS | catalog pool | writes/s | p50 µs | p99 µs |"
echo "|---:|---:|---:|---:|---:|"
for w in $workers_list; do
    printf '%s' "${results[$w]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f"| {sys.argv[1]} | {sys.argv[2]} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} |")' \
        "$w" "${pools[$w]}"
done
