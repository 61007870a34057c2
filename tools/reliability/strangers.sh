#!/usr/bin/env bash
# strangers.sh - strangers on the broker, rogues speaking malformed MDP, and
# HTTP clients that stall half way (make strangers; docs/RELIABILITY.md
# section 5).
#
#   bash tools/reliability/strangers.sh [BUILD_DIR]
#
# Part 1, the broker: runs tests/integration/test_strangers (a retaild of
# its own, tests/fixture.h), in which unknown CURVE keys get no answer in
# 2 s while an allowed client is answered, and an allowed rogue's
# malformed frames and bogus worker commands leave another client's
# answers right and the real workers registered. Its figure lines
# ("strangers:", "malformed:") are printed here; the test's own output
# goes to BUILD_DIR/strangers-test.log.
#
# Part 2, the HTTP edge: retaild on free ports, then build/http-stall
# (tools/reliability/http_stall.c): the normal client alone for
# STRANGERS_BASELINE_S (3) s, then STRANGERS_STALLED (500) connections that
# each send half a request and stall, and the normal client again for
# STRANGERS_SECONDS (10) s, every request on a new connection and timed;
# then, unless STRANGERS_WAIT_CLOSE is 0, the stalled connections are
# watched for up to that many seconds (75; the bridge's timeout is 60 s)
# until the server has closed each.
#
# Exit status 1 when the test fails, a normal request fails or takes over
# STRANGERS_MAX_MS (1000) while the others stall, a stalled connection is
# not closed in time, or retaild does not exit 0 on SIGTERM (or a
# sanitizer reported in its log). Figures to stdout, progress to stderr.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stalled=${STRANGERS_STALLED:-500}
seconds=${STRANGERS_SECONDS:-10}
baseline=${STRANGERS_BASELINE_S:-3}
wait_close=${STRANGERS_WAIT_CLOSE:-75}
max_ms=${STRANGERS_MAX_MS:-1000}
build=$(cd "$build" && pwd)
for bin in retaild http-stall tests/integration/test_strangers; do
    [ -x "$build/$bin" ] || {
        echo "strangers.sh: $build/$bin is missing (make strangers builds it)" >&2
        exit 1
    }
done
command -v curl >/dev/null || {
    echo "strangers.sh: curl is needed (tools/install-deps.sh)" >&2
    exit 1
}
say() { echo "strangers.sh: $*" >&2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/retail-strangers.XXXXXX")
pid=""
cleanup() {
    local status=$?
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    [ "$status" -eq 0 ] || tail -n 20 "$tmp/retaild.log" >&2 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf '\n### Strangers and slow clients\n\n%s CPUs; load %s.\n\n' "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
failed=0
say "the broker: tests/integration/test_strangers"
log=$build/strangers-test.log
if (cd "$root" && RETAIL_BUILD_DIR=$build RETAIL_SOURCE_DIR=$root \
    "$build/tests/integration/test_strangers" >"$log" 2>&1); then
    grep -E '^(strangers|malformed): ' "$log" || true
else
    failed=1
    grep -E '^(strangers|malformed): |ERROR|FAILED' "$log" || true
    say "test_strangers failed (its output: $log)"
fi

# Stops retaild with SIGTERM and checks that it exited 0 and that no
# sanitizer (a `make check` build) reported anything in its log.
stop_retaild() {
    local status=0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || status=$?
    pid=""
    if [ "$status" -ne 0 ]; then
        say "retaild exited with status $status on SIGTERM"
        return 1
    fi
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$tmp/retaild.log"; then
        say "a sanitizer reported in retaild's log:"
        grep -E -A5 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$tmp/retaild.log" >&2
        return 1
    fi
}

. "$root/tools/bench/ports.sh"
free_port broker_port
free_port http_port
free_port events_port
free_port publish_port
say "the HTTP edge: retaild and $stalled stalled connections"
env -u RETAIL_CONFIG -u RETAIL_PG_DSN -u RETAIL_USERS_PG_DSN RETAIL_DATA_DIR="$tmp/data" \
    RETAIL_ACCESS_LOG=0 RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker_port" \
    RETAIL_HTTP_PORT="$http_port" RETAIL_EVENTS_ENDPOINT="tcp://127.0.0.1:$events_port" \
    RETAIL_EVENTS_PUBLISH_ENDPOINT="tcp://127.0.0.1:$publish_port" \
    "$build/retaild" >>"$tmp/retaild.log" 2>&1 &
pid=$!
ready=no
for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    if curl -sf -o /dev/null "http://127.0.0.1:$http_port/readyz"; then
        ready=yes
        break
    fi
    sleep 0.05
done
[ "$ready" = yes ] || {
    say "retaild did not become ready"
    exit 1
}
echo
"$build/http-stall" --port "$http_port" --stalled "$stalled" --seconds "$seconds" \
    --baseline "$baseline" --max-ms "$max_ms" --wait-close "$wait_close" || failed=1
kill -0 "$pid" 2>/dev/null || say "retaild died"
stop_retaild || failed=1
[ "$failed" -eq 0 ] || say "FAILED (see above)"
exit "$failed"
