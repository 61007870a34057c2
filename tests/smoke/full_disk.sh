#!/usr/bin/env bash
# full_disk.sh - the smoke of docs/RELIABILITY.md section 3 (a full disk,
# and an LMDB map at its size limit), run by tests/run.sh with the build
# directory as $1.
#
# It is tools/reliability/full_disk.sh --smoke: the same checks with
# phases of a few seconds and four virtual users (about 30 s; longer under
# the sanitizers). That script needs root to mount its tmpfs and exits 2
# when it cannot; here that is a failure, not a silent skip.
set -euo pipefail
build=${1:?usage: tests/smoke/full_disk.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
status=0
bash "$here/../../tools/reliability/full_disk.sh" "$build" --smoke || status=$?
[ "$status" != 2 ] || echo "smoke full_disk: could not run (see above)" >&2
exit "$status"
