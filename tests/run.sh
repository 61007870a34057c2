#!/usr/bin/env bash
# Runs every test binary under $1/tests (unit first, then integration) and
# fails if any fails. cmocka prints its own summary per binary; the last
# line is the total in the "N passed, N failed" form.
set -u
build=${1:-build}
export RETAIL_BUILD_DIR=$(cd "$build" && pwd)
passed=0
failed=0
failed_names=()
for t in "$build"/tests/unit/test_* "$build"/tests/integration/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    echo "== $(basename "$t")"
    if "$t"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names+=("$(basename "$t")")
    fi
done
echo
[ $failed -eq 0 ] || echo "failing test programs: ${failed_names[*]}"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
