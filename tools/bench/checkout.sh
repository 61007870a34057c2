#!/usr/bin/env bash
# checkout.sh - checkouts per second through HTTP (make bench-checkout):
# POST /v1/orders, each with its own Idempotency-Key, through the bridge,
# the broker, orders (two durable writes: pending, paid), the catalog
# (reserve, commit: two) and payments (pending; authorized with captured:
# two), and the simulated gateway (authorize, capture: two). Every answer
# 201 is a paid order on disk.
#
#   bash tools/bench/checkout.sh [BUILD_DIR]
#
# A retaild per configuration on fresh data: PRODUCTS (100) products with
# stock enough for every run, a customer, then wrk -t1 -cCONNECTIONS (64)
# for BENCH_SECONDS (10) of orders of one random product, BENCH_REPEATS
# (3) times in turn. Configurations: group commit on and the gateway at
# once; group commit off (RETAIL_KV_GROUP_COMMIT=0: every store commits
# each write alone); group commit on and the gateway at 20 ms
# (RETAIL_PAYMENTS_GATEWAY_LATENCY_MS); the outbox off
# (RETAIL_EVENTS_OUTBOX=0: no events written, what the outbox costs);
# and "subscribed": the first again, with a subscriber on the event stream
# over CURVE TCP (events-bench) counting events per second and their
# latency from the write to delivery. CONFIGS picks some ("group nooutbox"):
# all by default. A table of medians (checkouts/s, p50, p99, and the
# subscriber's figures) goes to stdout, progress to stderr.
set -euo pipefail
build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
products=${PRODUCTS:-100}
connections=${CONNECTIONS:-64}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || {
        echo "checkout.sh: $tool is needed (apt-get install wrk curl python3)" >&2
        exit 1
    }
done
[ -x "$build/retaild" ] || {
    echo "checkout.sh: $build/retaild is missing (run make first)" >&2
    exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/retail-bench-checkout.XXXXXX")
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
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
email=bench-admin@example.com
password=bench-admin-password-1

cat >"$tmp/order.lua" <<'LUA'
-- POST /v1/orders of one random product of the file named by the first
-- argument, as the customer whose token is the second, each request with
-- a key of its own.
local ids, token, n = {}, "", 0
local body_fmt = '{"items":[{"product_id":"%s","qty":1}],' ..
    '"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2099,"cvc":"123"},' ..
    '"shipping_address":{"name":"Bench","line1":"1 Load St","city":"Paris",' ..
    '"postal_code":"75001","country":"FR"}}'

function init(args)
    for line in io.lines(args[1]) do
        ids[#ids + 1] = line
    end
    token = args[2]
    math.randomseed(os.time())
end

function request()
    n = n + 1
    local key = string.format("bench-%d-%d", math.random(1, 1000000000), n)
    return wrk.format("POST", "/v1/orders",
        {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json",
         ["Idempotency-Key"] = key},
        string.format(body_fmt, ids[math.random(#ids)]))
end

function done(summary, latency, requests)
    io.stderr:write(string.format("non-2xx: %d\n", summary.errors.status))
end
LUA

# One measured run: "checkouts/s p50_us p99_us"; $@ are more env entries.
run() {
    local data http broker events publish base admin token out sub=""
    if [ "$1" = subscribed ]; then
        sub=1
        shift
    fi
    data=$(mktemp -d "$tmp/data.XXXXXX")
    http=$(port)
    broker=$(port)
    events=$(port)
    publish=$(port)
    env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" RETAIL_HTTP_PORT="$http" \
        RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker" RETAIL_ACCESS_LOG=0 \
        RETAIL_EVENTS_ENDPOINT="tcp://127.0.0.1:$events" \
        RETAIL_EVENTS_PUBLISH_ENDPOINT="tcp://127.0.0.1:$publish" \
        RETAIL_ADMIN_EMAIL="$email" RETAIL_ADMIN_PASSWORD="$password" "$@" \
        "$build/retaild" >>"$tmp/retaild.log" 2>&1 &
    pid=$!
    base=http://127.0.0.1:$http
    for _ in $(seq 200); do
        curl -sf "$base/readyz" >/dev/null && break
        sleep 0.1
    done
    login() {
        curl -sf -H 'Content-Type: application/json' -d "{\"email\":\"$1\",\"password\":\"$2\"}" \
            "$base/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
    }
    admin=$(login "$email" "$password")
    curl -sf -H 'Content-Type: application/json' \
        -d '{"email":"bench-buyer@example.com","password":"bench-buyer-password-1","name":"Buyer"}' \
        "$base/v1/auth/register" >/dev/null
    token=$(login bench-buyer@example.com bench-buyer-password-1)
    local category
    category=$(curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d '{"name":"Bench"}' "$base/v1/categories" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["category"]["id"])')
    : >"$tmp/ids"
    for i in $(seq "$products"); do
        curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
            -d "{\"sku\":\"B-$i\",\"name\":\"Bench $i\",\"description\":\"x\",\"price_cents\":$((100 + i)),\"currency\":\"EUR\",\"category_id\":\"$category\",\"stock\":100000000}" \
            "$base/v1/products" | python3 -c 'import json,sys; print(json.load(sys.stdin)["product"]["id"])' >>"$tmp/ids"
    done
    wrk -t1 -c"$connections" -d1s -s "$tmp/order.lua" "$base" -- "$tmp/ids" "$token" \
        >/dev/null 2>&1 # warm-up
    local subpid=""
    if [ -n "$sub" ]; then
        RETAIL_DATA_DIR="$data" "$build/retailctl" keygen bench-sub >/dev/null
        "$build/events-bench" "tcp://127.0.0.1:$events" "$data/keys" bench-sub \
            "$((seconds - 1))" >"$tmp/sub.out" 2>>"$tmp/retaild.log" &
        subpid=$!
    fi
    out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$tmp/order.lua" "$base" \
        -- "$tmp/ids" "$token" 2>&1)
    local subline="- - - - -"
    if [ -n "$subpid" ]; then
        wait "$subpid" || true
        subline=$(cut -d' ' -f1,2,3,5,6 "$tmp/sub.out")
        [ -n "$subline" ] || subline="- - - - -"
    fi
    stop
    rm -rf "$data"
    if echo "$out" | grep -q "non-2xx: [1-9]"; then
        echo "checkout.sh: some checkouts were refused:" >&2
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
print(f"{rate:.0f} {p50:.0f} {p99:.0f}", end=" ")'
    echo "$subline"
}

read -r -a configs <<<"${CONFIGS:-group nogroup latency20 nooutbox subscribed}"
declare -A results
for r in $(seq "$repeats"); do
    for c in "${configs[@]}"; do
        case $c in
        group) line=$(run RETAIL_KV_GROUP_COMMIT=1) ;;
        nogroup) line=$(run RETAIL_KV_GROUP_COMMIT=0) ;;
        latency20) line=$(run RETAIL_PAYMENTS_GATEWAY_LATENCY_MS=20) ;;
        nooutbox) line=$(run RETAIL_EVENTS_OUTBOX=0) ;;
        subscribed) line=$(run subscribed RETAIL_KV_GROUP_COMMIT=1) ;;
        *)
            echo "checkout.sh: unknown configuration $c" >&2
            exit 2
            ;;
        esac
        echo "checkout.sh: run $r/$repeats, $c: $line (checkouts/s p50 p99; events/s p50_ms p99_ms gaps dups)" >&2
        results[$c]+="$line"$'\n'
    done
done

echo
echo "### Checkouts through HTTP: POST /v1/orders, paid, every answer durable"
echo
echo "wrk -t1 -c$connections, $seconds s per run, median of $repeats runs taken in turn;" \
    "$products products; $(nproc) CPUs."
echo
echo "| configuration | checkouts/s | p50 µs | p99 µs | events/s | event p50 ms | event p99 ms | gaps |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in "${configs[@]}"; do
    case $c in
    group) label="group commit, gateway at once" ;;
    nogroup) label="no group commit, gateway at once" ;;
    latency20) label="group commit, gateway at 20 ms" ;;
    nooutbox) label="group commit, no outbox (no events)" ;;
    subscribed) label="group commit, a subscriber on the stream" ;;
    esac
    printf '%s' "${results[$c]}" | python3 -c '
import statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
def med(i, fmt):
    vals = [float(r[i]) for r in rows if len(r) > i and r[i] != "-"]
    return format(statistics.median(vals), fmt) if vals else "-"
cells = [med(0, ".0f"), med(1, ".0f"), med(2, ".0f"), med(3, ".0f"), med(4, ".2f"),
         med(5, ".2f"), med(6, ".0f")]
print("| " + " | ".join([sys.argv[1]] + cells) + " |")' "$label"
done
