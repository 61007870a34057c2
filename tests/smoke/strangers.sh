#!/usr/bin/env bash
# tests/smoke/strangers.sh - a short run of tools/reliability/strangers.sh
# (docs/RELIABILITY.md section 5): the broker's strangers and rogues
# (test_strangers), then 100 HTTP connections that stall half way for 3 s
# while a normal client must be answered every time within a second. The
# 60 s timeout of a stalled connection is left to `make strangers`.
#
#   bash tests/smoke/strangers.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STRANGERS_STALLED=100 STRANGERS_SECONDS=3 STRANGERS_BASELINE_S=1 STRANGERS_WAIT_CLOSE=0 \
    exec bash "$here/../../tools/reliability/strangers.sh" "${1:-build}"
