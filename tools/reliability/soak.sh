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
# retaild's resident memory and open descriptors (from /proc), the bytes
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
# not the steady state) and prints the slopes per minute; with gnuplot
# (installed on demand, SOAK_PLOT=0 skips it) it plots RSS and the request
# rate over time into soak.svg. Everything goes to SOAK_OUT (default
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

free_port broker_port
free_port http_port
free_port events_port
free_port publish_port
env -u RETAIL_CONFIG RETAIL_DATA_DIR="$data" RETAIL_ACCESS_LOG=0 \
    RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker_port" RETAIL_HTTP_PORT="$http_port" \
    RETAIL_EVENTS_ENDPOINT="tcp://127.0.0.1:$events_port" \
    RETAIL_EVENTS_PUBLISH_ENDPOINT="tcp://127.0.0.1:$publish_port" \
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
# data directory bytes, and the broker's ok / unavailable / timeout totals.
sample() {
    local t=$1 rss fds mdb dir counts
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") || return 1
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "$mdb" "$dir" "$counts"
}

seconds=${SOAK_SECONDS:-$((minutes * 60))}
say "load: soak.json, $users users, $rate requests/s, ${seconds}s; a sample every ${interval}s"
"$build/loadgen" --endpoint "tcp://127.0.0.1:$broker_port" --data-dir "$data" \
    --scenario "$here/tools/scenarios/soak.json" -c "$users" --rate "$rate" -d "$seconds" \
    --warmup 0 --timeout 5000 --json -q >"$tmp/loadgen.json" 2>"$tmp/loadgen.log" &
loadgen_pid=$!

tsv=$out/soak.tsv
printf 't_s\trss_kib\tfds\tlmdb_bytes\tdata_bytes\tok\tunavailable\ttimeout\n' >"$tsv"
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
cp "$tmp/loadgen.json" "$out/loadgen.json" 2>/dev/null || true
if [ "$loadgen_status" -ne 0 ]; then
    say "loadgen failed ($loadgen_status)"
    tail -n 20 "$tmp/loadgen.log" >&2
    exit 1
fi

# Slopes: least squares over the samples after the first minute (all of
# them when the run is shorter), per minute. The request rate and errors
# of an interval are the differences of the counters.
awk -F'\t' -v skip=60 '
    NR == 1 { next }
    {
        t[n] = $1; rss[n] = $2; fds[n] = $3; mdb[n] = $4; dir[n] = $5
        ok[n] = $6; bad[n] = $7 + $8; n++
    }
    function slope(y,    i, sx, sy, sxx, sxy, m, x) {
        sx = sy = sxx = sxy = m = 0
        for (i = first; i < n; i++) {
            x = t[i] / 60; sx += x; sy += y[i]; sxx += x * x; sxy += x * y[i]; m++
        }
        if (m < 2 || m * sxx - sx * sx == 0) return 0
        return (m * sxy - sx * sy) / (m * sxx - sx * sx)
    }
    END {
        first = 0
        while (first < n - 2 && t[first] < skip) first++
        for (i = 1; i < n; i++) {
            dt = t[i] - t[i - 1]
            r[i] = (dt > 0 ? (ok[i] - ok[i - 1] + bad[i] - bad[i - 1]) / dt : 0)
        }
        r[0] = r[1]
        span = t[n - 1] - t[first]
        printf "samples %d (fitted: %d, from t=%ds)\n", n, n - first, t[first]
        printf "rss         %8.0f KiB at the end, slope %+9.1f KiB/min\n", rss[n - 1], slope(rss)
        printf "descriptors %8d at the end, slope %+9.2f /min\n", fds[n - 1], slope(fds)
        printf "lmdb files  %8.1f MiB at the end, slope %+9.1f KiB/min\n", mdb[n - 1] / 1048576, slope(mdb) / 1024
        printf "data dir    %8.1f MiB at the end, slope %+9.1f KiB/min\n", dir[n - 1] / 1048576, slope(dir) / 1024
        printf "requests    %8d ok, %d unavailable or timeout; rate %.0f/s (fitted part), slope %+.1f /s per min\n",
            ok[n - 1], bad[n - 1], (span > 0 ? (ok[n - 1] + bad[n - 1] - ok[first] - bad[first]) / span : 0), slope(r)
        printf "errors      %8d in the fitted part\n", bad[n - 1] - bad[first]
    }' "$tsv" | tee "$out/slopes.txt"
if command -v jq >/dev/null; then
    tail -n 1 "$out/loadgen.json" | jq -r '"loadgen     \(.replies) replies, \(.errors) errors \(.errors_by_code), p50 \(.p50_us) us, p99 \(.p99_us) us"' 2>/dev/null || true
fi

if [ "${SOAK_PLOT:-1}" != 0 ]; then
    if ! command -v gnuplot >/dev/null; then
        say "installing gnuplot-nox for the plot"
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gnuplot-nox >/dev/null
    fi
    # the request rate per interval, as a column gnuplot can draw
    awk -F'\t' 'NR == 1 {next} {if (n++) printf "%s\t%s\t%.1f\n", $1, $2, ($6 + $7 + $8 - prev) / ($1 - pt); prev = $6 + $7 + $8; pt = $1}' \
        "$tsv" >"$tmp/rate.tsv"
    gnuplot <<EOF
set terminal svg size 900,420 dynamic font "sans,11"
set output "$out/soak.svg"
set title "retaild under soak.json at $rate requests/s for $((seconds / 60)) min"
set xlabel "minutes"
set ylabel "resident memory (MiB)"
set y2label "broker requests per second"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom right
set grid
plot "$tmp/rate.tsv" using (\$1/60):(\$2/1024) with lines lw 2 title "RSS" axes x1y1, \
     "$tmp/rate.tsv" using (\$1/60):3 with lines title "broker requests/s (calls between services included)" axes x1y2
EOF
    say "plot: $out/soak.svg"
fi
say "samples: $tsv"
