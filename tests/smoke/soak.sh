#!/usr/bin/env bash
# The soak's smoke (docs/RELIABILITY.md section 6): 20 s of the soak's
# load at a low rate, sampled every 2 s, no plot. It fails when the soak
# script fails (retaild died, a sample or loadgen failed), when fewer than
# five samples were taken, or when the broker answered any request
# unavailable or timeout: on an idle machine at this rate there is no
# reason for either.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d /tmp/retail-soak-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
SOAK_SECONDS=20 SOAK_INTERVAL=2 SOAK_RATE=150 SOAK_USERS=8 SOAK_PLOT=0 SOAK_OUT=$out \
    bash "$here/tools/reliability/soak.sh" "$build" 1
samples=$(($(wc -l <"$out/soak.tsv") - 1))
read -r rss fds unavailable timeout < <(tail -n 1 "$out/soak.tsv" | awk -F'\t' '{print $2, $3, $7, $8}')
echo "smoke soak: $samples samples, rss ${rss} KiB, $fds descriptors, $unavailable unavailable, $timeout timeout"
[ "$samples" -ge 5 ] || { echo "smoke soak: too few samples" >&2; exit 1; }
[ "$rss" -gt 0 ] || { echo "smoke soak: no RSS sampled" >&2; exit 1; }
[ "$unavailable" -eq 0 ] && [ "$timeout" -eq 0 ] || { echo "smoke soak: the broker refused requests" >&2; exit 1; }
