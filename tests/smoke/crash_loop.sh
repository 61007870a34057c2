#!/usr/bin/env bash
# The crash loop's smoke (docs/RELIABILITY.md section 2): two cycles of
# tools/reliability/crash_loop.sh with 3 s windows and a light load, so it
# stays well under a minute in a sanitizer build too. It fails when the
# loop fails (a check found a lost or doubled write, recovery left an
# order pending, retaild did not come back or did not stop cleanly), and
# when the loop had nothing to check: no acknowledged checkout at all.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp /tmp/retail-crash-smoke.XXXXXX)
trap 'rm -f "$out"' EXIT
CRASH_SECONDS=3 CRASH_USERS=4 CRASH_RATE=100 CRASH_TIMEOUT_MS=1500 \
    bash "$here/tools/reliability/crash_loop.sh" "$build" 2 | tee "$out"
checkouts=$(awk '/^acknowledged writes/ { f = 1; next } /^unknown outcomes/ { f = 0 }
                 f && $1 == "orders" && $2 == "cart.checkout" { print $3 }' "$out")
echo "smoke crash_loop: ${checkouts:-0} acknowledged checkouts checked"
[ "${checkouts:-0}" -gt 0 ] || {
    echo "smoke crash_loop: no checkout was acknowledged: nothing was checked" >&2
    exit 1
}
