#!/usr/bin/env bash
# tests/smoke/lost_db.sh - a short run of the lost-database test
# (tools/reliability/lost_db.sh, docs/RELIABILITY.md section 4): one
# fast stop of PostgreSQL for 2 s under login and registration load. It
# fails when an answer while down was anything but a quick `unavailable`,
# when logins and registrations do not succeed again after the restart,
# or when retaild did not live through it.
#
#   bash tests/smoke/lost_db.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LOST_DB_MODES=fast LOST_DB_BEFORE_S=1 LOST_DB_DOWN_S=2 LOST_DB_RECOVER_S=20 \
    exec bash "$here/../../tools/reliability/lost_db.sh" "${1:-build}"
