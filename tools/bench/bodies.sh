#!/usr/bin/env bash
# bodies.sh - the worst 1 MiB request bodies over HTTP (the second half of
# make bench-bodies; the first is build/bodies-bench, in process): how long
# POST /v1/sys/echo takes to answer each, and how long a /healthz made
# meanwhile has to wait. The bridge runs on one thread, so a body that
# takes long to convert delays every other request by as much.
#
#   bash tools/bench/bodies.sh [BUILD_DIR]
#
# bodies-bench --write puts the bodies (all, or those named in BODIES,
# comma-separated: see bodies-bench --list) in a temporary directory. One
# retaild (every role; private ports in RETAIL_HTTP_PORT and
# RETAIL_BROKER_ENDPOINT, RETAIL_DATA_DIR in the temporary directory,
# access log off, the default 5 s deadline) serves them all, once /readyz
# says every service is up. For each body, BENCH_REPEATS (3) times: curl
# POSTs it (Content-Type from the file's name) in the background, and a
# loop of curl GET /healthz, one after the other, runs until the POST has
# its answer (at least one /healthz per POST). The stall is the slowest of
# those /healthz. The table (stdout) has medians over the repeats of the
# POST's time and of the stall, the POST's status and the /healthz count
# of the last repeat; progress goes to stderr.
set -euo pipefail

build=${1:-build}
repeats=${BENCH_REPEATS:-3}
for tool in curl awk; do
    command -v "$tool" >/dev/null || {
        echo "bodies.sh: $tool is needed (bash tools/install-deps.sh)" >&2
        exit 1
    }
done
for bin in retaild bodies-bench; do
    [ -x "$build/$bin" ] || {
        echo "bodies.sh: $build/$bin is missing (run make first)" >&2
        exit 1
    }
done

tmp=$(mktemp -d /tmp/retail-bench-bodies.XXXXXX)
pid=""
cleanup() {
    local status=$?
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$tmp/retaild.log" ]; then
        echo "bodies.sh: last lines of retaild's log:" >&2
        tail -n 20 "$tmp/retaild.log" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/ports.sh"

# The median of the numbers on stdin, one a line.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

mkdir -p "$tmp/bodies" "$tmp/data"
if [ -n "${BODIES:-}" ]; then
    "$build/bodies-bench" --write "$tmp/bodies" --only "$BODIES"
else
    "$build/bodies-bench" --write "$tmp/bodies"
fi

free_port http
free_port broker
env -u RETAIL_CONFIG -u RETAIL_TLS_CERT -u RETAIL_TLS_KEY -u RETAIL_PG_DSN \
    RETAIL_DATA_DIR="$tmp/data" RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker" \
    RETAIL_HTTP_PORT="$http" RETAIL_ACCESS_LOG=0 "$build/retaild" \
    >"$tmp/retaild.out" 2>"$tmp/retaild.log" &
pid=$!
base="http://127.0.0.1:$http"
ready=""
for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || {
        echo "bodies.sh: retaild exited during start-up" >&2
        exit 1
    }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" 2>/dev/null)" = 200 ]; then
        ready=1
        break
    fi
    sleep 0.1
done
[ -n "$ready" ] || {
    echo "bodies.sh: retaild at $base is not ready after 30 s" >&2
    exit 1
}

echo "| body | bytes | POST status | POST ms | slowest /healthz ms | /healthz during POST |"
echo "|---|---:|---|---:|---:|---:|"
for file in "$tmp"/bodies/*; do
    name=$(basename "$file")
    case "$name" in
    *.json) type=application/json ;;
    *) type=application/msgpack ;;
    esac
    bytes=$(wc -c <"$file")
    : >"$tmp/post_ms"
    : >"$tmp/stall_ms"
    for run in $(seq "$repeats"); do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 300 \
            -H "Content-Type: $type" --data-binary "@$file" "$base/v1/sys/echo" \
            >"$tmp/post" 2>/dev/null &
        post=$!
        slowest=0
        count=0
        while :; do
            done_before=1
            kill -0 "$post" 2>/dev/null && done_before=0
            if ! t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 300 "$base/healthz"); then
                echo "bodies.sh: $name: /healthz failed" >&2
                exit 1
            fi
            count=$((count + 1))
            slowest=$(awk -v a="$slowest" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
            [ "$done_before" -eq 1 ] && break
        done
        wait "$post" || true
        read -r status post_s <"$tmp/post" || {
            status=none
            post_s=0
        }
        awk -v s="$post_s" 'BEGIN { printf "%.1f\n", s * 1000 }' >>"$tmp/post_ms"
        awk -v s="$slowest" 'BEGIN { printf "%.1f\n", s * 1000 }' >>"$tmp/stall_ms"
        echo "bodies.sh: ${name%.*} run $run: $status in ${post_s}s, slowest /healthz ${slowest}s of $count" >&2
    done
    echo "| ${name%.*} | $bytes | $status | $(median <"$tmp/post_ms") | $(median <"$tmp/stall_ms") | $count |"
done
