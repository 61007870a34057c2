#!/usr/bin/env bash
# heap_growth.sh - does retaild's live heap grow with time under the soak's
# load? (make heap-growth; docs/RELIABILITY.md section 6)
#
#   tools/reliability/heap_growth.sh BUILD [SHORT_S LONG_S]
#
# What it is for: the soak samples resident memory from outside, and
# anonymous RSS moves for reasons that are not leaks (Argon2id's 64 MiB
# per password check in flight, caches allocated whole at start whose
# pages are touched as they fill, freed memory the allocator keeps). What
# settles whether something grows is the heap itself: the bytes allocated
# and not yet freed, by call site.
#
# How it works. Two runs, each on a fresh data directory prepared as `make
# run` prepares one: retaild under heaptrack (installed on demand), the
# soak's load (tools/scenarios/soak.json, 32 users, HEAP_RATE requests/s,
# default 600) for SHORT_S (60) and then LONG_S (240) seconds, and then
# SIGKILL, so that what heaptrack reports as leaked is exactly what was
# live at that moment (a clean shutdown would free it all). The report is
# each run's live total and heaptrack's diff of the long run against the
# short one: the call sites whose live bytes differ, largest first. A
# call site whose live bytes grow with the load's duration is a leak or
# an unbounded structure; what stays the same is a fixed allocation.
# Output in BUILD/heap-growth (the two heaptrack files, the diff).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD [SHORT_S LONG_S]" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
short_s=${2:-60}
long_s=${3:-240}
rate=${HEAP_RATE:-600}
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$build/heap-growth
say() { echo "heap_growth: $*" >&2; }
if ! command -v heaptrack >/dev/null; then
    say "installing heaptrack"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        heaptrack >/dev/null
fi
mkdir -p "$out"
tmp=$(mktemp -d /tmp/retail-heap.XXXXXX)
tracker=""
cleanup() {
    local status=$?
    if [ -n "$tracker" ]; then
        pkill -KILL -P "$tracker" 2>/dev/null || true
        wait "$tracker" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$here/tools/bench/ports.sh"

# One run of $1 seconds; its heaptrack file is $out/$2.zst.
run_once() {
    local seconds=$1 name=$2 data=$tmp/$2 broker_port http_port events_port publish_port child
    rm -f "$out/$name.zst"
    env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" bash "$here/tools/run.sh" --prepare-only \
        "$build" </dev/null >"$tmp/$name-prepare.log" 2>&1 || {
        cat "$tmp/$name-prepare.log" >&2
        return 1
    }
    retaild_ports_env
    env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" RETAIL_ACCESS_LOG=0 "${retaild_env[@]}" \
        heaptrack -o "$out/$name" "$build/retaild" >"$out/$name-retaild.log" 2>&1 &
    tracker=$!
    local ready=0
    for _ in $(seq 600); do
        if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then
            ready=1
            break
        fi
        kill -0 "$tracker" 2>/dev/null || break
        sleep 0.1
    done
    [ "$ready" = 1 ] || {
        say "retaild under heaptrack did not become ready"
        tail -n 20 "$out/$name-retaild.log" >&2
        return 1
    }
    say "$name: ${seconds} s of soak.json at $rate requests/s"
    "$build/loadgen" --endpoint "tcp://127.0.0.1:$broker_port" --data-dir "$data" \
        --scenario "$here/tools/scenarios/soak.json" -c 32 --rate "$rate" -d "$seconds" \
        --warmup 0 --timeout 5000 --json -q >"$out/$name-loadgen.json" 2>"$tmp/$name-loadgen.log" || {
        say "loadgen failed"
        tail -n 20 "$tmp/$name-loadgen.log" >&2
        return 1
    }
    # heaptrack's script runs retaild as its child: kill that, and let the
    # script write out what it recorded.
    child=$(pgrep -P "$tracker" -f "$build/retaild" | head -n 1)
    [ -n "$child" ] || {
        say "cannot find retaild under heaptrack"
        return 1
    }
    kill -KILL "$child"
    wait "$tracker" 2>/dev/null || true
    tracker=""
    [ -s "$out/$name.zst" ] || {
        say "heaptrack wrote nothing"
        return 1
    }
}

run_once "$short_s" short
run_once "$long_s" long
print() { heaptrack_print "$@" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    2>/dev/null; }
for name in short long; do
    live=$(print "$out/$name.zst" --print-leaks 0 | sed -n 's/^total memory leaked: //p')
    seconds=$short_s
    [ "$name" = long ] && seconds=$long_s
    echo "live heap at SIGKILL after $seconds s: $live"
done
print "$out/long.zst" --diff "$out/short.zst" --print-leaks 1 >"$out/diff.txt"
echo "call sites whose live bytes differ, long run minus short (largest first; $out/diff.txt):"
# Each of the first three: its size and allocating function, then the
# frames of its largest caller, without the library and line noise.
awk '/^-?[0-9.]+[KMG]?B? leaked over .* calls from$/ {
         if (++entries > 3) exit
         print "  " $0; callers = 0; frames = 0; next
     }
     /^-?[0-9.]+[KMG]?B? leaked over .* calls from:$/ { callers++; if (callers == 1) print "    " $0; next }
     !entries || callers > 1 || /^ *(in \/|at )/ || !/[^ ]/ { next }
     frames < 7 { sub(/^ +/, ""); print "      " $0; frames++ }' "$out/diff.txt"
