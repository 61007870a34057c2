#!/usr/bin/env bash
# users.sh - the users-service benchmark (make bench-users).
#
#   bash tools/bench/users.sh [BUILD_DIR]
#
# In one run of retaild (access log off, accounts in LMDB):
#   1. GET /v1/sys/ping without a token against GET /v1/users/me with a
#      valid access token (warm: the token is verified once, then cached),
#      wrk -t1 -c64, alternating, BENCH_REPEATS times each; medians and the
#      ratio of throughputs (target: users/me costs at most 1.3x a ping);
#   2. POST /v1/auth/login with the right password, wrk -t1 -c4: logins
#      per second, which Argon2id bounds (about 100 ms and 64 MiB of one
#      core per hash); and the time of one hash on this machine.
# Knobs: BENCH_SECONDS (10), BENCH_REPEATS (3).
set -euo pipefail
build=${1:-build}
seconds=${BENCH_SECONDS:-10}
repeats=${BENCH_REPEATS:-3}
command -v wrk >/dev/null || { echo "users.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }

data=$(mktemp -d /tmp/retail-bench-users.XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(port)
broker_port=$(port)
RETAIL_DATA_DIR=$data RETAIL_HTTP_PORT=$http_port RETAIL_BROKER_ENDPOINT=tcp://127.0.0.1:$broker_port \
    RETAIL_ACCESS_LOG=0 "$build/retaild" >"$data/retaild.log" 2>&1 &
pid=$!
base=http://127.0.0.1:$http_port
for _ in $(seq 100); do
    curl -sf "$base/readyz" >/dev/null && break
    sleep 0.1
done
J='Content-Type: application/json'
curl -sf -H "$J" -d '{"email":"bench@shop.test","password":"bench-password","name":"Bench"}' \
    "$base/v1/auth/register" >/dev/null
token=$(curl -sf -H "$J" -d '{"email":"bench@shop.test","password":"bench-password"}' \
    "$base/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# wrk's summary -> "req/s p50_us p99_us"
measure() {
    wrk -t1 -c64 -d"${seconds}s" --latency "$@" | awk '
        function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1000000; return v }
        /^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) } /^Requests\/sec/ { rps = $2 }
        END { printf "%d %d %d\n", rps, p50, p99 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

: >"$data/ping"
: >"$data/me"
for r in $(seq "$repeats"); do
    echo "users.sh: run $r/$repeats: ping" >&2
    measure "$base/v1/sys/ping" >>"$data/ping"
    echo "users.sh: run $r/$repeats: users/me" >&2
    measure -H "Authorization: Bearer $token" "$base/v1/users/me" >>"$data/me"
done
cat >"$data/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@shop.test","password":"bench-password"}'
wrk.headers["Content-Type"] = "application/json"
LUA
echo "users.sh: logins" >&2
login=$(wrk -t1 -c4 -d"${seconds}s" -s "$data/login.lua" "$base/v1/auth/login")
login_rps=$(echo "$login" | awk '/^Requests\/sec/ { print int($2) }')
login_non2xx=$(echo "$login" | awk '/Non-2xx/ { print $5 }')
hash_ms=$("$build/auth-bench" -n 200 2>/dev/null | awk '/Argon2id/ { printf "%.0f ms (median of 11)", $(NF-4) / 1000 }' || true)

col() { awk -v c="$1" '{ print $c }' "$2" | median; }
ping_rps=$(col 1 "$data/ping"); me_rps=$(col 1 "$data/me")
printf '\n### users: /v1/users/me against /v1/sys/ping, and logins\n\n'
printf 'wrk -t1 -c64 -d%ss, median of %s alternating runs; %s CPUs; load %s.\n\n' \
    "$seconds" "$repeats" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| route | req/s | p50 µs | p99 µs |\n|---|---:|---:|---:|\n'
printf '| GET /v1/sys/ping | %s | %s | %s |\n' "$ping_rps" "$(col 2 "$data/ping")" "$(col 3 "$data/ping")"
printf '| GET /v1/users/me (Bearer) | %s | %s | %s |\n' "$me_rps" "$(col 2 "$data/me")" "$(col 3 "$data/me")"
awk -v p="$ping_rps" -v m="$me_rps" 'BEGIN { printf "\nusers/me costs %.2fx a ping (ping req/s / users/me req/s)\n", p / m }'
printf "\nlogins (wrk -t1 -c4, right password): %s/s" "$login_rps"
[ -n "$login_non2xx" ] && printf ' (%s answers were not 2xx: the hashing gate answers 503 beyond its queue)' "$login_non2xx"
printf '\n'
[ -n "$hash_ms" ] && printf 'one Argon2id hash (interactive limits): %s\n' "$hash_ms"
exit 0
