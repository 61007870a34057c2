#!/usr/bin/env bash
# soak.sh - mixed load for a long time, sampled, with slopes and a plot.
#
#   tools/reliability/soak.sh BUILD MINUTES       (make soak SOAK_MINUTES=N)
#
# What it is for: a leak, a descriptor left open per request, a file that
# only grows or an error rate that creeps up shows only over time. This
# runs the shop's customers (tools/scenarios/soak.json: browse, carts,
# checkouts, cancels, and a login now and then so tokens never expire) at
# a constant rate against one retaild for MINUTES, and every 10 s samples
# retaild's resident memory (in all, and split into anonymous memory, where
# a leak shows, and file-backed pages, mostly LMDB's maps) and open
# descriptors (from /proc), the bytes
# of every LMDB file and of the whole data directory, and the broker's
# request counters by outcome (the bridge's /metrics), from which the
# request rate and the error count of each interval follow.
#
# How it works. A fresh data directory is prepared as `make run` does (a
# 1000-product catalog, an admin), retaild starts on free ports, loadgen
# runs in the open loop at SOAK_RATE requests/s (default 800: well under
# what this machine serves, so the rate is the load's and not the
# machine's), and the sampler writes one line per 10 s to soak.tsv. At the
# end it fits a least-squares line to each series over the samples after
# the first minute (start-up and the first registrations and logins are
# not the steady state) and prints the slopes per minute, then each LMDB
# file's size at the start and at the end; with gnuplot
# (installed on demand, SOAK_PLOT=0 skips it) it plots RSS and the request
# rate over time into soak.svg (tools/reliability/soak_plot.sh). Everything goes to SOAK_OUT (default
# BUILD/soak). Exit status 1 when a sample could not be taken, retaild
# died, or loadgen failed; the figures are judged by whoever reads them
# (docs/RELIABILITY.md says what is flat and what grows, and why).
#
#   SOAK_RATE=R     requests per second (default 800)
#   SOAK_USERS=K    virtual users (default 32)
#   SOAK_INTERVAL=S seconds between samples (default 10)
#   SOAK_OUT=DIR    where soak.tsv, soak.svg and the logs go
#   SOAK_PLOT=0     no plot
#   SOAK_SECONDS=S  run S seconds instead of MINUTES (the smoke's short run)
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 BUILD MINUTES" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
minutes=$2
rate=${SOAK_RATE:-800}
users=${SOAK_USERS:-32}
interval=${SOAK_INTERVAL:-10}
out=${SOAK_OUT:-$build/soak}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d /tmp/retail-soak.XXXXXX)
pid=""
loadgen_pid=""
cleanup() {
    local status=$?
    [ -n "$loadgen_pid" ] && kill "$loadgen_pid" 2>/dev/null || true
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    cp "$tmp"/*.log "$out"/ 2>/dev/null || true
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "soak: $*" >&2; }
. "$here/tools/bench/ports.sh"

data=$tmp/data
say "preparing $data (1000 products, an admin)"
env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" bash "$here/tools/run.sh" --prepare-only "$build" \
    </dev/null >"$tmp/prepare.log" 2>&1 || {
    cat "$tmp/prepare.log" >&2
    exit 1
}

retaild_ports_env
env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" RETAIL_ACCESS_LOG=0 "${retaild_env[@]}" \
    "$build/retaild" >>"$tmp/retaild.log" 2>&1 &
pid=$!
metrics_url=http://127.0.0.1:$http_port/metrics
ready=0
for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || {
        say "retaild exited during start-up"
        tail -n 20 "$tmp/retaild.log" >&2
        exit 1
    }
    if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
[ $ready -eq 1 ] || {
    say "retaild did not become ready"
    exit 1
}

# One sample: seconds since the start, RSS KiB, descriptors, LMDB bytes,
# data directory bytes, the broker's ok / unavailable / timeout totals, and
# RSS again in its two parts: anonymous (heap and stacks: where a leak
# shows) and file-backed (mostly LMDB's maps: the pages of the stores that
# requests touched, which grows with the stores and is the kernel's to
# drop).
sample() {
    local t=$1 rss fds mdb dir counts parts
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") || return 1
    parts=$(awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} /^RssShmem:/ {f += $2}
                 END {printf "%d\t%d", a, f}' "/proc/$pid/status") || return 1
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    mdb=$(find "$data" -name '*.mdb' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    dir=$(du -sb "$data" | awk '{print $1}')
    counts=$(curl -fsS --max-time 5 "$metrics_url" | awk '
        /^retail_broker_requests_total\{/ {
            if ($0 ~ /outcome="ok"/) ok += $NF
            else if ($0 ~ /outcome="unavailable"/) un += $NF
            else if ($0 ~ /outcome="timeout"/) to += $NF
        }
        END {printf "%d\t%d\t%d", ok, un, to}') || return 1
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "$mdb" "$dir" "$counts" "$parts"
}
# Each LMDB file's bytes, one "path bytes" line each, for the table of
# what grew.
lmdb_files() { (cd "$data" && find . -name '*.mdb' -printf '%P %s\n' | sort); }

seconds=${SOAK_SECONDS:-$((minutes * 60))}
say "load: soak.json, $users users, $rate requests/s, ${seconds}s; a sample every ${interval}s"
"$build/loadgen" --endpoint "tcp://127.0.0.1:$broker_port" --data-dir "$data" \
    --scenario "$here/tools/scenarios/soak.json" -c "$users" --rate "$rate" -d "$seconds" \
    --warmup 0 --timeout 5000 --json -q >"$tmp/loadgen.json" 2>"$tmp/loadgen.log" &
loadgen_pid=$!

tsv=$out/soak.tsv
printf 't_s\trss_kib\tfds\tlmdb_bytes\tdata_bytes\tok\tunavailable\ttimeout\trss_anon_kib\trss_file_kib\n' >"$tsv"
lmdb_files >"$tmp/lmdb-start.txt"
start=$(date +%s)
next=$start
while kill -0 "$loadgen_pid" 2>/dev/null; do
    now=$(date +%s)
    if [ "$now" -ge "$next" ]; then
        kill -0 "$pid" 2>/dev/null || {
            say "retaild died during the soak"
            exit 1
        }
        sample $((now - start)) >>"$tsv" || {
            say "a sample failed"
            exit 1
        }
        next=$((next + interval))
    fi
    sleep 0.5
done
loadgen_status=0
wait "$loadgen_pid" || loadgen_status=$?
loadgen_pid=""
sample $(($(date +%s) - start)) >>"$tsv"
lmdb_files >"$tmp/lmdb-end.txt"
cp "$tmp/loadgen.json" "$out/loadgen.json" 2>/dev/null || true
if [ "$loadgen_status" -ne 0 ]; then
    say "loadgen failed ($loadgen_status)"
    tail -n 20 "$tmp/loadgen.log" >&2
    exit 1
fi

# Slopes and figures (soak_report.awk says how each is fitted).
awk -F'\t' -v skip=60 -f "$here/tools/reliability/soak_report.awk" "$tsv" | tee "$out/slopes.txt"
# What grew: each LMDB file at the start and at the end.
awk 'NR == FNR {start[$1] = $2; next}
     {printf "  %-28s %8.1f MiB -> %8.1f MiB\n", $1, start[$1] / 1048576, $2 / 1048576}' \
    "$tmp/lmdb-start.txt" "$tmp/lmdb-end.txt" | tee -a "$out/slopes.txt"
if command -v jq >/dev/null; then
    tail -n 1 "$out/loadgen.json" | jq -r '"loadgen     \(.replies) replies, \(.errors) errors \(.errors_by_code), p50 \(.p50_us) us, p99 \(.p99_us) us"' 2>/dev/null || true
fi

if [ "${SOAK_PLOT:-1}" != 0 ]; then
    bash "$here/tools/reliability/soak_plot.sh" "$tsv" "$out/soak.svg" \
        "retaild under soak.json at $rate requests/s for $((seconds / 60)) min"
    say "plot: $out/soak.svg"
fi
say "samples: $tsv"
