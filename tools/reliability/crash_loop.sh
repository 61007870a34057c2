#!/usr/bin/env bash
# tools/reliability/crash_loop.sh - SIGKILL under mixed load, restart, check
# (make crash-test; docs/RELIABILITY.md, section 2).
#
#   bash tools/reliability/crash_loop.sh BUILD CYCLES
#
# What it is for: every acknowledged write must survive a crash at any
# moment, and nothing may happen twice (issue 15). So: a fresh data
# directory (mktemp) prepared as `make run` prepares one (tools/run.sh
# --prepare-only: 1000 seeded products, an admin whose credentials are in
# DIR/admin-credentials.json), retaild on free ports, the stock ledger of
# every product (`retailctl stock-ledger`), then CYCLES times:
#
#   1. loadgen runs tools/scenarios/mixed.json (customers' carts,
#      checkouts with an idempotency key asked twice, cancels; the admin's
#      product writes and refunds) for CRASH_SECONDS, open loop at
#      CRASH_RATE requests/s with CRASH_USERS virtual users, recording what
#      was acknowledged (--record cycle-N.ndjson) and giving a request up
#      after CRASH_TIMEOUT_MS;
#   2. at a random moment from 30% to 90% into that window, retaild (the
#      whole process, every role in it) gets SIGKILL; loadgen's requests
#      in flight then have no reply and are recorded as unknown outcomes;
#   3. once loadgen has finished, retaild starts again on the same
#      directory and ports; "ready" is GET /readyz answering 200 (the
#      broker answers and every service has a live worker). Two restart
#      times: from the kill to ready (which includes the rest of
#      loadgen's window and its last requests' timeout) and from the
#      start to ready (retaild's own: opening the stores, recovery's
#      start, the pools);
#   4. recovery is waited for: no order pending (orders ops.check), no
#      refund left pending and no order untold of its refund (payments
#      ops.check: refunds_pending, to_tell), within CRASH_SETTLE_S, else
#      that is a failure (stock or money held for ever);
#   5. the checks: `retailctl check-record --stock LEDGER` on every record
#      so far (a later cycle must not lose what an earlier one
#      acknowledged, and each product's units are what they were),
#      `retailctl check` (each service's books, and across them), and
#      `retailctl payments verify` (the payments log's chain).
#
# Any failure stops the loop and keeps the directory with the evidence
# (retaild.log, the records, each check's output): its path is printed.
# At the end, a SIGTERM must stop retaild with status 0, and the figures
# are printed: cycles, acknowledged writes by kind, unknown outcomes,
# checks passed, restart and recovery times (median and max). Every
# process this script started is stopped on every exit path (trap).
#
# Knobs (environment): CRASH_SECONDS (6), CRASH_USERS (8), CRASH_RATE
# (200), CRASH_TIMEOUT_MS (2000), CRASH_READY_S (60), CRASH_SETTLE_S (60),
# CRASH_KEEP=1 keeps the directory after a success too.
set -euo pipefail

usage() {
    echo "usage: tools/reliability/crash_loop.sh BUILD CYCLES" >&2
    exit 2
}
[ $# -eq 2 ] || usage
build=$(cd "$1" && pwd) || usage
cycles=$2
case "$cycles" in '' | *[!0-9]*) usage ;; esac
[ "$cycles" -ge 1 ] || usage
here=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${CRASH_SECONDS:-6}
users=${CRASH_USERS:-8}
rate=${CRASH_RATE:-200}
timeout_ms=${CRASH_TIMEOUT_MS:-2000}
ready_s=${CRASH_READY_S:-60}
settle_s=${CRASH_SETTLE_S:-60}
for tool in retaild retailctl retail-seed loadgen; do
    [ -x "$build/$tool" ] || {
        echo "crash_loop: $build/$tool is missing: build first (make)" >&2
        exit 1
    }
done
for cmd in curl jq awk; do
    command -v "$cmd" >/dev/null || {
        echo "crash_loop: $cmd is needed (tools/install-deps.sh installs it)" >&2
        exit 1
    }
done

say() { echo "crash_loop: $*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/retail-crash.XXXXXX")
data=$tmp/data
pid=""
lg=""
failed=""
finish() {
    local status=$?
    if [ -n "$lg" ] && kill -0 "$lg" 2>/dev/null; then
        kill -TERM "$lg" 2>/dev/null || true
        wait "$lg" 2>/dev/null || true
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] || [ -n "$failed" ] || [ "${CRASH_KEEP:-}" = 1 ]; then
        say "the evidence is kept in $tmp (retaild.log, cycle-N.ndjson, cycle-N.*.out)"
    else
        rm -rf "$tmp"
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    failed=1
    say "FAILED: $*"
    exit 1
}

. "$here/tools/bench/ports.sh"
free_port http_port
free_port broker_port
free_port events_port
free_port publish_port

# The environment retaild and the tools share: only what this script sets.
export RETAIL_DATA_DIR=$data
export RETAIL_BROKER_ENDPOINT=tcp://127.0.0.1:$broker_port
export RETAIL_HTTP_PORT=$http_port
export RETAIL_EVENTS_ENDPOINT=tcp://127.0.0.1:$events_port
export RETAIL_EVENTS_PUBLISH_ENDPOINT=tcp://127.0.0.1:$publish_port
export RETAIL_ACCESS_LOG=0
unset RETAIL_CONFIG RETAIL_PG_DSN RETAIL_USERS_PG_DSN RETAIL_TOKEN RETAIL_ADMIN_EMAIL \
    RETAIL_ADMIN_PASSWORD RETAIL_USERS_ADMIN_EMAIL RETAIL_USERS_ADMIN_PASSWORD

say "preparing $data (1000 products, an admin)"
bash "$here/tools/run.sh" --prepare-only "$build" >"$tmp/prepare.out" 2>&1 ||
    fail "tools/run.sh --prepare-only: $(tail -n 3 "$tmp/prepare.out")"

start() {
    "$build/retaild" >>"$tmp/retaild.log" 2>&1 &
    pid=$!
}

# Polls GET /readyz until 200, at most CRASH_READY_S; fails when retaild
# exits meanwhile.
wait_ready() {
    local deadline=$(($(now_ms) + ready_s * 1000))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || fail "retaild exited during start-up (retaild.log)"
        if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$http_port/readyz"; then
            return 0
        fi
        sleep 0.05
    done
    fail "retaild was not ready within ${ready_s} s"
}

# Polls until what the kill interrupted is finished: no order pending
# (the orders service's recovery ended every checkout) and no refund left
# pending or untold (the payments service's follow-up). Prints the ms it
# took; 1 after CRASH_SETTLE_S.
wait_settled() {
    local from deadline orders payments
    from=$(now_ms)
    deadline=$((from + settle_s * 1000))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        orders=$("$build/retailctl" call orders ops.check 2>/dev/null |
            jq -r '.data.counts.pending // "x"' 2>/dev/null || echo x)
        payments=$("$build/retailctl" call payments ops.check 2>/dev/null |
            jq -r '.data.counts | "\(.refunds_pending // "x") \(.to_tell // "x")"' 2>/dev/null ||
            echo x)
        if [ "$orders" = 0 ] && [ "$payments" = "0 0" ]; then
            echo $(($(now_ms) - from))
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start
wait_ready
"$build/retailctl" stock-ledger >"$tmp/ledger.json" 2>"$tmp/ledger.err" ||
    fail "retailctl stock-ledger: $(cat "$tmp/ledger.err")"
say "retaild on :$http_port (broker :$broker_port); ledger of $(jq '.products | length' "$tmp/ledger.json") products"

restarts=()
starts=()
settles=()
checks=0
records=()
window_ms=$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 1000 }')
for c in $(seq "$cycles"); do
    record=$tmp/cycle-$c.ndjson
    records+=("$record")
    "$build/loadgen" --scenario "$here/tools/scenarios/mixed.json" -c "$users" --rate "$rate" \
        -d "$seconds" --warmup 0 --timeout "$timeout_ms" --record "$record" --json -q \
        >"$tmp/cycle-$c.loadgen.out" 2>&1 &
    lg=$!
    # The random moment of the kill: what the loop is about, not a wait
    # for a condition.
    at=$((window_ms * 3 / 10 + (RANDOM * 32768 + RANDOM) % (window_ms * 6 / 10 + 1)))
    sleep "$(awk -v ms="$at" 'BEGIN { printf "%.3f", ms / 1000 }')"
    kill -0 "$lg" 2>/dev/null || fail "cycle $c: loadgen ended before the kill (cycle-$c.loadgen.out)"
    killed_at=$(now_ms)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    lg_status=0
    wait "$lg" || lg_status=$?
    lg=""
    # 1: no reply was ok (a kill early in the window may do that); 2 and
    # up: loadgen itself failed.
    [ "$lg_status" -le 1 ] || fail "cycle $c: loadgen exited $lg_status (cycle-$c.loadgen.out)"
    head -n 1 "$record" | jq -e '.record == "loadgen"' >/dev/null 2>&1 ||
        fail "cycle $c: the record has no header"
    started_at=$(now_ms)
    start
    wait_ready
    restarts+=($(($(now_ms) - killed_at)))
    starts+=($(($(now_ms) - started_at)))
    settled=$(wait_settled) ||
        fail "cycle $c: ${settle_s} s after the restart, orders or refunds are still pending: recovery did not end them"
    settles+=("$settled")

    "$build/retailctl" check-record --stock "$tmp/ledger.json" "${records[@]}" \
        >"$tmp/cycle-$c.check-record.out" 2>&1 ||
        fail "cycle $c: check-record: $(grep -v '^check-record:' "$tmp/cycle-$c.check-record.out" | head -n 20)"
    checks=$((checks + 1))
    "$build/retailctl" check >"$tmp/cycle-$c.check.out" 2>&1 ||
        fail "cycle $c: retailctl check: $(tail -n 20 "$tmp/cycle-$c.check.out")"
    checks=$((checks + 1))
    "$build/retailctl" payments verify >"$tmp/cycle-$c.verify.out" 2>&1 ||
        fail "cycle $c: payments verify: $(tail -n 20 "$tmp/cycle-$c.verify.out")"
    checks=$((checks + 1))
    acked=$(jq -s '[.[] | select(.ack == true)] | length' "$record")
    unknown=$(jq -s '[.[] | select(.ack == false)] | length' "$record")
    say "cycle $c/$cycles: killed at ${at} ms; ready ${restarts[-1]} ms after the kill (${starts[-1]} ms after the start); nothing pending ${settles[-1]} ms later; $acked acknowledged, $unknown unknown; checks ok"
done

# A last stop must be clean: SIGTERM, every request answered, status 0.
kill -TERM "$pid"
stop_status=0
wait "$pid" || stop_status=$?
pid=""
[ "$stop_status" -eq 0 ] || fail "retaild exited $stop_status on SIGTERM after the loop"
checks=$((checks + 1))

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
maximum() { printf '%s\n' "$@" | sort -n | tail -n 1; }

echo
echo "crash loop: $cycles cycles of mixed.json ($users users, $rate requests/s, ${seconds} s," \
    "SIGKILL at 30-90% of the window), build $build"
echo "acknowledged writes by kind:"
cat "${records[@]}" | jq -r 'select(.ack == true) | "\(.service) \(.op)"' | sort | uniq -c |
    awk '{ printf "  %-9s %-18s %7d\n", $2, $3, $1; n += $1 } END { printf "  %-28s %7d\n", "all", n }'
echo "unknown outcomes (no reply, or an error that does not say nothing changed):"
cat "${records[@]}" | jq -r 'select(.ack == false) | "\(.service) \(.op) \(.code)"' | sort |
    uniq -c | awk '{ printf "  %-9s %-18s %-9s %5d\n", $2, $3, $4, $1; n += $1 }
                   END { printf "  %-38s %5d\n", "all", n }'
echo "checks passed: $checks (check-record over every record so far, retailctl check and" \
    "payments verify after each restart; a clean SIGTERM at the end)"
echo "restart, kill to ready: median $(median "${restarts[@]}") ms, max $(maximum "${restarts[@]}") ms" \
    "(loadgen's window and its last requests' timeout included: retaild starts again once loadgen ended)"
echo "restart, start to ready: median $(median "${starts[@]}") ms, max $(maximum "${starts[@]}") ms"
echo "recovery, ready to nothing pending (orders, refunds): median $(median "${settles[@]}") ms, max $(maximum "${settles[@]}") ms"
echo "last check-record: $(tail -n 1 "$tmp/cycle-$cycles.check-record.out")"
