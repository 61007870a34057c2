#!/usr/bin/env bash
# Runs every test binary under $1/tests (unit first, then integration),
# then every smoke script of tests/smoke/, and fails if any fails. cmocka prints its own summary per binary; the last
# line is the total in the "N passed, N failed" form.
#
# The PostgreSQL user store is tested against a real server: unless the
# caller gives one in RETAIL_TEST_PG_DSN (or sets RETAIL_TEST_PG_SKIP=1),
# a private one is started with tests/pg.sh for the whole run and stopped
# (its directory removed) on every exit path. If it cannot start, the
# tests still run and the PostgreSQL ones fail: never a silent skip.
set -u
build=${1:-build}
export RETAIL_BUILD_DIR=$(cd "$build" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# Tests run from the source root, where they find tools/scenarios/ and the
# like by relative paths, wherever the caller stood; RETAIL_SOURCE_DIR
# names it too (test_run runs tools/run.sh).
export RETAIL_SOURCE_DIR=$(cd "$here/.." && pwd)
cd "$RETAIL_SOURCE_DIR"

pg_dir=""
stop_pg() {
    if [ -n "$pg_dir" ]; then
        bash "$here/pg.sh" stop "$pg_dir" || echo "run.sh: could not stop PostgreSQL in $pg_dir" >&2
        pg_dir=""
    fi
}
trap stop_pg EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "${RETAIL_TEST_PG_DSN:-}" ] && [ "${RETAIL_TEST_PG_SKIP:-}" != 1 ]; then
    pg_dir=$(mktemp -d /tmp/retail-test-pg.XXXXXX)
    if dsn=$(bash "$here/pg.sh" start "$pg_dir"); then
        export RETAIL_TEST_PG_DSN=$dsn
        echo "== PostgreSQL for the tests: $dsn"
    else
        echo "run.sh: could not start PostgreSQL; its tests will fail" >&2
    fi
fi
passed=0
failed=0
failed_names=()
for t in "$RETAIL_BUILD_DIR"/tests/unit/test_* "$RETAIL_BUILD_DIR"/tests/integration/test_*; do
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
# The reliability suite's smokes (docs/RELIABILITY.md): each script of
# tests/smoke/ runs a short version of one part against this build and
# exits non-zero when what it checks does not hold.
for t in "$here"/smoke/*.sh; do
    [ -f "$t" ] || continue
    echo "== smoke $(basename "$t" .sh)"
    if bash "$t" "$RETAIL_BUILD_DIR"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names+=("smoke/$(basename "$t")")
    fi
done
echo
[ $failed -eq 0 ] || echo "failing test programs: ${failed_names[*]}"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
