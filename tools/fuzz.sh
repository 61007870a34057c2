#!/usr/bin/env bash
# fuzz.sh - runs the libFuzzer targets of tests/fuzz/ and reports on them.
#
#   tools/fuzz.sh FUZZ_BUILD SECONDS TARGET...     (make fuzz FUZZ_SECONDS=N)
#
# For each target, $FUZZ_BUILD/fuzz_TARGET first replays every file of its
# committed corpus, tests/fuzz/corpus/TARGET/ (the seeds, and each input
# that once crashed it, kept as regress-* files): any of them failing is a
# regression. Then it fuzzes for SECONDS, starting from that corpus and
# from what earlier runs found ($FUZZ_BUILD/corpus/TARGET/, where new
# inputs go, so the committed corpus changes only by hand). A crash leaves
# its input in $FUZZ_BUILD/artifacts/TARGET/; to keep one as a regression,
# copy it into the corpus as regress-NAME and fix the cause.
#
# Prints one line per target (executions, executions per second, crashes,
# corpus size) and a total; exits 1 when any target crashed or a replay
# failed, 2 on a usage error.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 FUZZ_BUILD SECONDS TARGET..." >&2
    exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
logs=$build/logs
mkdir -p "$logs"

total_execs=0
total_crashes=0
failed=()
printf '%-14s %12s %10s %8s %8s\n' target executions exec/s crashes corpus
for t in "$@"; do
    bin=$build/fuzz_$t
    seeds=$here/tests/fuzz/corpus/$t
    work=$build/corpus/$t
    artifacts=$build/artifacts/$t
    mkdir -p "$work" "$artifacts" "$seeds"
    # The replay: -runs=0 runs each input of the directories once, no
    # mutation; a failing input stops it with a report.
    if ! "$bin" -runs=0 "$seeds" >"$logs/$t.replay.log" 2>&1; then
        echo "fuzz.sh: $t fails on its committed corpus: see $logs/$t.replay.log" >&2
        failed+=("$t(replay)")
        total_crashes=$((total_crashes + 1))
        continue
    fi
    before=$(find "$artifacts" -type f | wc -l)
    status=0
    "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" "$work" "$seeds" >"$logs/$t.log" 2>&1 || status=$?
    after=$(find "$artifacts" -type f | wc -l)
    crashes=$((after - before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # a failure that left no input (out of memory in the fuzzer itself, say)
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    corpus=$(find "$work" "$seeds" -type f | wc -l)
    printf '%-14s %12s %10s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$corpus"
    total_execs=$((total_execs + ${execs:-0}))
    total_crashes=$((total_crashes + crashes))
    if [ "$crashes" -gt 0 ]; then
        failed+=("$t")
        echo "fuzz.sh: $t crashed: inputs in $artifacts, log $logs/$t.log" >&2
    fi
done
printf "%-14s %12s %10s %8s\n" total "$total_execs" "" "$total_crashes"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failing: ${failed[*]}" >&2
    exit 1
fi
