#!/usr/bin/env bash
# bridge.sh - the "edge" benchmark: the HTTP bridge against nginx.
#
#   bash tools/bench/bridge.sh [BUILD_DIR]        (what `make bench-bridge` runs)
#
# In one run on one machine it measures, with the same client
# (wrk -t1 -c64 --latency, keep-alive):
#   bridge      build/retaild with every role (broker, bridge, sys pool) and
#               RETAIL_ACCESS_LOG=0: GET /v1/sys/ping, the full path
#               HTTP -> msgpack envelope -> broker -> sys worker -> back;
#   bridge+log  a second retaild, the same but RETAIL_ACCESS_LOG=1 (one JSON
#               line per request, written to a file in the temp directory);
#   nginx       Debian's nginx, one worker, access_log off, serving a static
#               file with exactly the bridge's ping body, {"pong":true}
#               (13 bytes, Content-Type application/json); keepalive_requests
#               is raised so that, like the bridge, it never closes a
#               keep-alive connection during a run.
# The three are measured in turn, BENCH_REPEATS times (3), so that drift in a
# shared machine's speed hits them alike; the table shows medians of
# requests/s, p50 and p99 and the ratio of median throughputs to nginx's,
# and each server's peak RSS (VmHWM from /proc/PID/status after all runs:
# the retaild process; nginx's one worker).
#
# Knobs (environment): BENCH_SECONDS (measured seconds per run, default 10;
# the whole benchmark then takes about 1 minute 45), BENCH_REPEATS (3),
# BENCH_CONNECTIONS (64).
#
# nginx and wrk are installed when missing (apt-get, with sudo when not
# root). The servers get private ports and a temporary directory; all are
# stopped (SIGTERM, SIGKILL if they hang) and the directory removed on exit.
# Before measuring, both endpoints are checked to answer 200 with the same
# body. The table goes to stdout, progress to stderr.
set -euo pipefail

build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
connections=${BENCH_CONNECTIONS:-64}
body='{"pong":true}'
PATH=$PATH:/usr/sbin:/sbin

if [ ! -x "$build/retaild" ]; then
    echo "bridge.sh: $build/retaild is missing (run make first)" >&2
    exit 1
fi
for tool in curl awk; do
    command -v "$tool" >/dev/null || {
        echo "bridge.sh: $tool is needed (bash tools/install-deps.sh)" >&2
        exit 1
    }
done

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "bridge.sh: installing nginx-light and wrk" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq nginx-light wrk >&2
fi

tmp=$(mktemp -d /tmp/retail-bench-bridge.XXXXXX)
names=(bridge bridge+log nginx)
pids=("" "" "")
ports=("" "" "")

stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "bridge.sh: pid $pid ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    for i in 0 1 2; do
        stop_pid "${pids[$i]}"
    done
    if [ "$status" -ne 0 ]; then
        # retaild's stdout has its log lines and the access log's JSON lines
        for log in "$tmp"/*.log "$tmp"/*.out "$tmp"/nginx/error.log; do
            [ -s "$log" ] || continue
            echo "bridge.sh: last lines of ${log#"$tmp"/}:" >&2
            grep -v '^{"time"' "$log" | tail -n 20 >&2 || true
        done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/ports.sh"

# Starts retaild number $1 (0 or 1) with RETAIL_ACCESS_LOG=$2.
start_retaild() {
    local i=$1 log=$2 http broker
    free_port http
    free_port broker
    mkdir -p "$tmp/data$i"
    env -u RETAIL_CONFIG -u RETAIL_TLS_CERT -u RETAIL_TLS_KEY RETAIL_DATA_DIR="$tmp/data$i" \
        RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker" RETAIL_HTTP_PORT="$http" \
        RETAIL_ACCESS_LOG="$log" "$build/retaild" >>"$tmp/retaild$i.out" 2>>"$tmp/retaild$i.log" &
    pids[i]=$!
    ports[i]=$http
}

start_nginx() {
    local port
    free_port port
    mkdir -p "$tmp/nginx/www"
    printf '%s' "$body" >"$tmp/nginx/www/ping.json"
    # nginx's worker runs as nobody when started by root: let it read the file
    chmod 711 "$tmp"
    chmod 755 "$tmp/nginx" "$tmp/nginx/www"
    chmod 644 "$tmp/nginx/www/ping.json"
    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    types {
    }
    default_type application/json;
    server {
        listen 127.0.0.1:$port;
        root $tmp/nginx/www;
    }
}
EOF
    nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" \
        2>>"$tmp/nginx.log" &
    pids[2]=$!
    ports[2]=$port
}

url_of() {
    if [ "$1" -eq 2 ]; then
        echo "http://127.0.0.1:${ports[2]}/ping.json"
    else
        echo "http://127.0.0.1:${ports[$1]}/v1/sys/ping"
    fi
}

# Waits until server $1 answers 200 with the ping body as application/json.
wait_ready() {
    local i=$1 url got
    url=$(url_of "$i")
    for _ in $(seq 100); do
        kill -0 "${pids[$i]}" 2>/dev/null || {
            echo "bridge.sh: ${names[$i]} exited during start-up" >&2
            return 1
        }
        if got=$(curl -sf --max-time 2 -w ' %{content_type}' "$url" 2>/dev/null) &&
            [ "$got" = "$body application/json" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "bridge.sh: ${names[$i]} at $url does not answer $body (last: '${got:-}')" >&2
    return 1
}

# Converts a wrk duration (850.00us, 1.23ms, 1.05s, 2.00m) to microseconds.
to_us() {
    awk -v t="$1" 'BEGIN {
        v = t + 0; u = t; sub(/^[0-9.]+/, "", u)
        f = u == "us" ? 1 : u == "ms" ? 1000 : u == "s" ? 1000000 : u == "m" ? 60000000 : 0
        printf "%.0f", v * f }'
}

# One measured run against server $1 for $2 seconds; prints
# "rps p50_us p99_us bad" (zeros when wrk failed; bad counts non-2xx
# responses and socket errors).
measure() {
    local i=$1 secs=$2 out
    if ! out=$(wrk -t1 -c"$connections" -d"${secs}s" --latency "$(url_of "$i")" 2>&1); then
        echo "bridge.sh: wrk failed against ${names[$i]}: $out" >&2
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

# VmHWM of a process, in KiB ("" if gone).
peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

echo "bridge.sh: ${seconds}s x $repeats per server, $connections connections; files in $tmp" >&2
start_retaild 0 0
start_retaild 1 1
start_nginx
for i in 0 1 2; do
    wait_ready "$i"
done

# A short warm-up each (connections, caches, the pool's first requests).
for i in 0 1 2; do
    measure "$i" 1 >/dev/null
done
: >"$tmp/retaild1.out"

rps=() p50=() p99=()
for i in 0 1 2; do
    rps[i]="" p50[i]="" p99[i]=""
done
trouble=0
for rep in $(seq "$repeats"); do
    for i in 0 1 2; do
        echo "bridge.sh: run $rep/$repeats: ${names[$i]}" >&2
        read -r r l50 l99 bad < <(measure "$i" "$seconds")
        rps[i]="${rps[$i]} $r" p50[i]="${p50[$i]} $l50" p99[i]="${p99[$i]} $l99"
        trouble=$((trouble + bad))
        echo "bridge.sh:   ${names[$i]}: $r req/s, p50 $l50 us, p99 $l99 us" >&2
        # keep the access log from filling the disk; its writes are what counts
        [ "$i" -ne 1 ] || : >"$tmp/retaild1.out"
    done
done

rss=("$(peak_rss_kib "${pids[0]}")" "$(peak_rss_kib "${pids[1]}")" "")
nginx_worker=$(awk '{ print $1 }' "/proc/${pids[2]}/task/${pids[2]}/children" 2>/dev/null || true)
[ -z "$nginx_worker" ] || rss[2]=$(peak_rss_kib "$nginx_worker")
for i in 0 1 2; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "bridge.sh: ${names[$i]} died during the runs" >&2
        exit 1
    fi
done

labels=("retaild bridge, access log off" "retaild bridge, access log on (to a file)"
    "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker, static file")
# shellcheck disable=SC2086
nginx_rps=$(median ${rps[2]})

echo
echo "### Edge: the HTTP bridge vs nginx"
echo
echo "GET /v1/sys/ping (bridge -> broker -> sys worker over inproc, all in one retaild) vs" \
    "nginx serving the same 13-byte body from a file; wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')" \
    "-t1 -c$connections, keep-alive; ${seconds} s per run, median of $repeats runs taken in turn" \
    "(after a 1 s warm-up). Peak RSS is VmHWM after all runs (nginx: its worker)." \
    "$(nproc) CPUs, $(uname -sr), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| server | req/s | p50 µs | p99 µs | req/s vs nginx | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|"
for i in 0 1 2; do
    # shellcheck disable=SC2086
    awk -v name="${labels[$i]}" -v r="$(median ${rps[$i]})" -v a="$(median ${p50[$i]})" \
        -v b="$(median ${p99[$i]})" -v n="$nginx_rps" -v m="${rss[$i]:-0}" \
        'BEGIN { ratio = n > 0 ? sprintf("%.2f", r / n) : "n/a";
                 printf "| %s | %.0f | %.0f | %.0f | %s | %.1f |\n",
                        name, r, a, b, ratio, m / 1024 }'
done
if [ "$trouble" -ne 0 ]; then
    echo
    echo "Warning: $trouble non-2xx responses or socket errors across all runs" \
        "(wrk counts them; run it by hand against the server to see which)."
fi
