#!/usr/bin/env bash
# catalog.sh - the catalog benchmark (make bench-catalog): does a product
# read cost the same in a big catalog as in a small one, and what does a
# search cost?
#
#   bash tools/bench/catalog.sh [BUILD_DIR]
#
# In one run:
#   1. retail-seed loads SMALL (10,000) products into one temporary data
#      directory and BIG (1,000,000) into another, writing the ids it made
#      to a file (the big one takes some minutes; its progress shows);
#   2. a retaild per directory (private ports, access log off), both up for
#      the whole run;
#   3. against each: GET /v1/sys/ping, and GET /v1/products/{id} with an id
#      drawn at random per request from a uniform sample of BENCH_IDS
#      (10,000) of its ids (wrk -t1 -c64); then a search on each,
#      GET /v1/products?q=WORD&category=ID&limit=20 (wrk -t1 -c16), WORD a
#      word of the seeder's adjective list (SEARCH_WORD, default "compact")
#      and ID a root category with its subtree (SEARCH_CATEGORY, a slug,
#      default "electronics"); all of it in turn, BENCH_REPEATS (3) times,
#      so that drift in a shared machine's speed hits every case alike;
#   4. a table of medians (req/s, p50, p99), the ratios against their
#      targets (get-by-id p99 big/small <= 1.3; ping req/s / get req/s
#      <= 1.5; search p99 on the big set < 5 ms), and the LMDB size per
#      product of each set (data.mdb on disk, and LMDB's pages in use).
# Every wrk run goes through the same Lua script (a random path from a
# file per request), ping included, so the client's cost is the same in
# every case and the ratios compare the server only.
#
# Knobs (environment): BENCH_SECONDS (10), BENCH_REPEATS (3), SMALL (10000),
# BIG (1000000), BENCH_IDS (10000), SEARCH_WORD, SEARCH_CATEGORY, and
# TMPDIR (where the data directories go; the big one needs about 5 GB).
# With the defaults it takes the seeding time plus about 4 minutes.
#
# Needs wrk, curl and python3 (to read the category list). Servers are
# stopped (SIGTERM, then SIGKILL if they hang) and the temporary directory
# removed on exit. The tables go to stdout, progress to stderr.
set -euo pipefail

build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
small=${SMALL:-10000}
big=${BIG:-1000000}
sample=${BENCH_IDS:-10000}
word=${SEARCH_WORD:-compact}
category_slug=${SEARCH_CATEGORY:-electronics}

for bin in retaild retail-seed; do
    if [ ! -x "$build/$bin" ]; then
        echo "catalog.sh: $build/$bin is missing (run make first)" >&2
        exit 1
    fi
done
for tool in wrk curl python3 shuf awk; do
    command -v "$tool" >/dev/null || {
        echo "catalog.sh: $tool is needed (apt-get install wrk curl python3 coreutils gawk)" >&2
        exit 1
    }
done
for n in "$seconds" "$repeats" "$small" "$big" "$sample"; do
    case "$n" in
    '' | *[!0-9]* | 0)
        echo "catalog.sh: BENCH_SECONDS, BENCH_REPEATS, SMALL, BIG and BENCH_IDS must be" \
            "positive integers" >&2
        exit 1
        ;;
    esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/retail-bench-catalog.XXXXXX")
sets=(small big)
counts=("$small" "$big")
pids=("" "")
ports=("" "")

stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "catalog.sh: pid $pid ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    for i in 0 1; do
        stop_pid "${pids[$i]}"
    done
    if [ "$status" -ne 0 ]; then
        for log in "$tmp"/*.log; do
            [ -s "$log" ] || continue
            echo "catalog.sh: last lines of ${log#"$tmp"/}:" >&2
            tail -n 20 "$log" >&2 || true
        done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/ports.sh"

# ---- 1. seed --------------------------------------------------------------

for i in 0 1; do
    set_name=${sets[$i]}
    echo "catalog.sh: seeding ${counts[$i]} products into $tmp/$set_name" >&2
    env -u RETAIL_CONFIG "$build/retail-seed" --data-dir "$tmp/$set_name" -n "${counts[$i]}" \
        --ids "$tmp/$set_name.ids" >"$tmp/$set_name.seed"
    cat "$tmp/$set_name.seed" >&2
done

# ---- 2. servers -----------------------------------------------------------

start_retaild() {
    local i=$1 http broker
    free_port http
    free_port broker
    env -u RETAIL_CONFIG -u RETAIL_TLS_CERT -u RETAIL_TLS_KEY RETAIL_DATA_DIR="$tmp/${sets[$i]}" \
        RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker" RETAIL_HTTP_PORT="$http" \
        RETAIL_ACCESS_LOG=0 "$build/retaild" >>"$tmp/retaild-${sets[$i]}.log" 2>&1 &
    pids[i]=$!
    ports[i]=$http
}

base_of() { echo "http://127.0.0.1:${ports[$1]}"; }

# Waits until server $1 is ready and serves one of its products: 0; 2 if
# it exited (a port taken after all: the caller tries others), else 1.
wait_ready() {
    local i=$1 id
    id=$(head -n 1 "$tmp/${sets[$i]}.ids")
    for _ in $(seq 200); do
        kill -0 "${pids[$i]}" 2>/dev/null || {
            wait "${pids[$i]}" 2>/dev/null || true
            pids[i]=""
            echo "catalog.sh: retaild (${sets[$i]}) exited during start-up" >&2
            return 2
        }
        if curl -sf --max-time 2 "$(base_of "$i")/readyz" >/dev/null 2>&1 &&
            curl -sf --max-time 2 "$(base_of "$i")/v1/products/$id" 2>/dev/null |
            grep -q '"product"'; then
            return 0
        fi
        sleep 0.1
    done
    echo "catalog.sh: retaild (${sets[$i]}) does not serve GET /v1/products/$id" >&2
    return 1
}

# The id of the category with slug $2 on server $1 (GET /v1/categories
# pages: followed by next_cursor).
category_id() {
    python3 - "$(base_of "$1")" "$2" <<'PY'
import json, sys, urllib.parse, urllib.request
base, slug = sys.argv[1], sys.argv[2]
cursor = None
while True:
    url = base + "/v1/categories?limit=100"
    if cursor:
        url += "&cursor=" + urllib.parse.quote(cursor)
    with urllib.request.urlopen(url, timeout=5) as r:
        page = json.load(r)
    for c in page["items"]:
        if c.get("slug") == slug:
            print(c["id"])
            sys.exit(0)
    cursor = page.get("next_cursor")
    if not cursor:
        sys.exit("no category " + slug)
PY
}

# Items on the first page of search path $2 on server $1.
page_items() {
    curl -sf --max-time 5 "$(base_of "$1")$2" |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))'
}

# Every wrk run requests a random line of a paths file (wrk ... -- FILE).
cat >"$tmp/paths.lua" <<'LUA'
-- A random path from the file named by the first script argument.
local paths = {}

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    math.randomseed(1)
end

function request()
    return wrk.format(nil, paths[math.random(#paths)])
end
LUA

for i in 0 1; do
    start_retaild "$i"
done
for i in 0 1; do
    for attempt in 1 2 3; do
        rc=0
        wait_ready "$i" || rc=$?
        if [ "$rc" -ne 2 ] || [ "$attempt" -eq 3 ]; then
            break
        fi
        start_retaild "$i"
    done
    [ "$rc" -eq 0 ] || exit 1
done

cases=() # "set route connections"
for i in 0 1; do
    set_name=${sets[$i]}
    echo "/v1/sys/ping" >"$tmp/$set_name.ping"
    shuf -n "$sample" "$tmp/$set_name.ids" | sed 's|^|/v1/products/|' >"$tmp/$set_name.get"
    cat_id=$(category_id "$i" "$category_slug") || {
        echo "catalog.sh: no category with slug $category_slug in GET /v1/categories" >&2
        exit 1
    }
    echo "/v1/products?q=$word&category=$cat_id&limit=20" >"$tmp/$set_name.search"
    echo "catalog.sh: ${sets[$i]}: $(wc -l <"$tmp/$set_name.get") ids sampled;" \
        "search page has $(page_items "$i" "$(cat "$tmp/$set_name.search")") items" >&2
    cases+=("$i ping 64" "$i get 64")
done
cases+=("0 search 16" "1 search 16")

# Converts a wrk duration (850.00us, 1.23ms, 1.05s, 2.00m) to microseconds.
to_us() {
    awk -v t="$1" 'BEGIN {
        v = t + 0; u = t; sub(/^[0-9.]+/, "", u)
        f = u == "us" ? 1 : u == "ms" ? 1000 : u == "s" ? 1000000 : u == "m" ? 60000000 : 0
        printf "%.0f", v * f }'
}

# One run: server $1, paths file kind $2, $3 connections, $4 seconds;
# prints "rps p50_us p99_us bad" (bad: non-2xx answers and socket errors).
measure() {
    local i=$1 kind=$2 conns=$3 secs=$4 out
    if ! out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$tmp/paths.lua" "$(base_of "$i")" \
        -- "$tmp/${sets[$i]}.$kind" 2>&1); then
        echo "catalog.sh: wrk failed: $out" >&2
        echo "0 0 0 1"
        return 0
    fi
    local rps p50 p99 bad
    rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ { print $2 }')
    p50=$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')
    p99=$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')
    bad=$(printf '%s\n' "$out" | awk '
        /Non-2xx or 3xx responses:/ { n += $NF }
        /Socket errors:/ { for (k = 3; k <= NF; k++) { v = $k; gsub(/,/, "", v); if (v ~ /^[0-9]+$/) n += v } }
        END { print n + 0 }')
    echo "${rps:-0} $(to_us "${p50:-0us}") $(to_us "${p99:-0us}") $bad"
}

median() {
    printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"
}

# ---- 3. measure -----------------------------------------------------------

# A short warm-up of each case: connections, the page cache, the pools.
for c in "${cases[@]}"; do
    read -r i kind conns <<<"$c"
    measure "$i" "$kind" "$conns" 1 >/dev/null
done

declare -A rps p50 p99
trouble=0
for rep in $(seq "$repeats"); do
    for c in "${cases[@]}"; do
        read -r i kind conns <<<"$c"
        key="$i.$kind"
        echo "catalog.sh: run $rep/$repeats: ${sets[$i]} $kind" >&2
        read -r r l50 l99 bad < <(measure "$i" "$kind" "$conns" "$seconds")
        rps[$key]="${rps[$key]:-} $r" p50[$key]="${p50[$key]:-} $l50" p99[$key]="${p99[$key]:-} $l99"
        trouble=$((trouble + bad))
        echo "catalog.sh:   $r req/s, p50 $l50 us, p99 $l99 us" >&2
    done
done
for i in 0 1; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "catalog.sh: retaild (${sets[$i]}) died during the runs" >&2
        exit 1
    fi
done

# ---- 4. report ------------------------------------------------------------

med() { # med ARRAY KEY
    local -n arr=$1
    # shellcheck disable=SC2086 # the values are space-separated numbers
    median ${arr[$2]}
}
label() {
    case "$1" in
    ping) echo "GET /v1/sys/ping (c64)" ;;
    get) echo "GET /v1/products/{id} (c64)" ;;
    search) echo "GET /v1/products?q=$word&category=$category_slug&limit=20 (c16)" ;;
    esac
}

echo
echo "### Catalog: product reads in ${small} and ${big} products, and a search"
echo
echo "wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }') -t1, keep-alive, ${seconds} s per run," \
    "median of $repeats runs taken in turn (after a 1 s warm-up); ids drawn per request from a" \
    "uniform sample of up to $sample; one retaild per set, access log off; $(nproc) CPUs," \
    "$(uname -sr), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| products | route | req/s | p50 µs | p99 µs |"
echo "|---:|---|---:|---:|---:|"
for c in "${cases[@]}"; do
    read -r i kind _ <<<"$c"
    printf '| %s | %s | %.0f | %.0f | %.0f |\n' "${counts[$i]}" "$(label "$kind")" \
        "$(med rps "$i.$kind")" "$(med p50 "$i.$kind")" "$(med p99 "$i.$kind")"
done
echo
awk -v a="$(med p99 1.get)" -v b="$(med p99 0.get)" -v big="$big" -v small="$small" 'BEGIN {
    printf "- get-by-id p99, %s / %s products: %s (target <= 1.3)\n", big, small,
        (b > 0 ? sprintf("%.2f", a / b) : "n/a") }'
for i in 0 1; do
    awk -v p="$(med rps "$i.ping")" -v g="$(med rps "$i.get")" -v n="${counts[$i]}" 'BEGIN {
        printf "- req/s ping / get-by-id, %s products: %s (target <= 1.5)\n", n,
            (g > 0 ? sprintf("%.2f", p / g) : "n/a") }'
done
awk -v s="$(med p99 1.search)" -v big="$big" 'BEGIN {
    printf "- search p99, %s products: %.2f ms (target < 5 ms)\n", big, s / 1000 }'
echo
echo "| products | seeding s | seeded/s | data.mdb on disk, bytes/product | LMDB pages in use, bytes/product |"
echo "|---:|---:|---:|---:|---:|"
for i in 0 1; do
    f="$tmp/${sets[$i]}.seed"
    awk -v n="${counts[$i]}" '
        / products in / { secs = $5; rate = $7; sub(/^\(/, "", rate); sub(/\/s.*/, "", rate) }
        /bytes\/product/ {
            k = 0
            for (j = 2; j <= NF; j++) if ($j ~ /^bytes\/product/) per[++k] = $(j - 1)
        }
        END { printf "| %s | %s | %s | %s | %s |\n", n, secs, rate, per[1], per[2] }' "$f"
done
if [ "$trouble" -ne 0 ]; then
    echo
    echo "Warning: $trouble non-2xx responses or socket errors across all runs" \
        "(wrk counts them; run curl against the server to see which)."
fi
