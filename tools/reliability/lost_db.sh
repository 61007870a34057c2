#!/usr/bin/env bash
# lost_db.sh - PostgreSQL stopped and started again under login and
# registration load, with retaild left running (make lost-db;
# docs/RELIABILITY.md section 4).
#
#   bash tools/reliability/lost_db.sh [BUILD_DIR]
#
# What it shows: while the account database is down, logins and
# registrations are answered `unavailable` at once (not `timeout`, not
# `internal`, not never); once it is back they succeed again within
# moments, with no restart of retaild.
#
# How it works. A private PostgreSQL (tests/pg.sh: a unix socket in its own
# directory) and retaild on free ports with its users service on it
# (RETAIL_USERS_PG_DSN). build/accounts-load puts login and registration
# clients on the broker (LOST_DB_LOGINS, LOST_DB_REGISTERS: 2 and 2, one
# request each in flight, 20 ms apart; within the hashing gate's 4 so that
# its "busy" answers do not mix in) and writes every answer with its send
# and answer times (tools/reliability/accounts_load.c). Once both kinds
# succeed, the load runs LOST_DB_BEFORE_S (3) seconds; then, for each mode
# of LOST_DB_MODES ("fast immediate"), in turn:
#   - `tests/pg.sh down DIR MODE` (pg_ctl stop -m MODE): "down" from when
#     it returns (every session is gone) ...
#   - ... for LOST_DB_DOWN_S (5) seconds, until `tests/pg.sh up DIR` is
#     started; "up" is when the server began to accept connections, by its
#     own log line (to the ms), checked against pg_isready polled without
#     a pause (which sees it tens of ms later);
#   - then until a login and a registration answered after "up" have
#     succeeded (at most LOST_DB_RECOVER_S, 30), and one second more.
# LOST_DB_MODES may also name "freeze": every process of the server is
# stopped with SIGSTOP and continued with SIGCONT, which is what a frozen
# host or a cut network looks like from retaild (nothing refuses, nothing
# answers). That is the case the store does not bound (docs/RELIABILITY.md
# section 4), and the run fails on it.
# Then the load stops and the timeline is read (awk):
#   - answers to requests sent while down and answered before the start
#     began: how many, by code; any code but `unavailable` is a wrong
#     answer (`no_reply` is a request that got nothing for 8 s), and so is
#     an `unavailable` with retry_after (the hashing gate, which an outage
#     must not reach); median and max latency of the unavailable ones, per
#     operation;
#   - requests sent while down that were answered after the start began
#     (they may be answered either way), shown apart;
#   - the time from "up" to the first successful login and registration
#     (each includes its Argon2id hash, about 100 ms, and waits for the
#     hashing gate), and to the last `unavailable` (the outage's end as
#     clients see it);
#   - retaild's pid before and after, the users service's worker restarts
#     and lost workers from /metrics, and its live workers before and at
#     the end (lost ones come back by themselves; waited for, 10 s).
# Exit status 1 when a wrong answer came, a median over LOST_DB_MAX_MEDIAN_MS
# (50: an Argon2id hash is 85-100 ms, so this catches an outage found only
# after hashing), no recovery, retaild's pid changed or it died, fewer users
# workers at the end, or at the end it did not exit 0 on SIGTERM or a
# sanitizer reported in its log.
# Figures to stdout, progress to stderr.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
logins=${LOST_DB_LOGINS:-2}
registers=${LOST_DB_REGISTERS:-2}
before_s=${LOST_DB_BEFORE_S:-3}
down_s=${LOST_DB_DOWN_S:-5}
recover_s=${LOST_DB_RECOVER_S:-30}
modes=${LOST_DB_MODES:-fast immediate}
max_median_ms=${LOST_DB_MAX_MEDIAN_MS:-50}
for bin in retaild accounts-load; do
    [ -x "$build/$bin" ] || {
        echo "lost_db.sh: $build/$bin is missing (run make first)" >&2
        exit 1
    }
done
for tool in curl pg_isready; do
    command -v "$tool" >/dev/null || {
        echo "lost_db.sh: $tool is needed (tools/install-deps.sh)" >&2
        exit 1
    }
done

say() { echo "lost_db.sh: $*" >&2; }
now_us() { date +%s%6N; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/retail-lost-db.XXXXXX")
# The cluster's own directory under /tmp: as root, pg.sh runs the server as
# postgres, which must be able to reach it (a 0700 parent would stop it).
pg_dir=$(mktemp -d /tmp/retail-lost-db-pg.XXXXXX)
pid=""
load=""
frozen=""
cleanup() {
    local status=$?
    if [ -n "$load" ]; then
        kill -TERM "$load" 2>/dev/null || true
        wait "$load" 2>/dev/null || true
    fi
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    # a frozen server (the freeze mode) must run again to be stopped
    [ -z "$frozen" ] || kill -CONT $frozen 2>/dev/null || true
    bash "$root/tests/pg.sh" stop "$pg_dir" || say "could not stop PostgreSQL in $pg_dir"
    [ "$status" -eq 0 ] || tail -n 20 "$tmp/retaild.log" "$tmp/load.log" >&2 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# Polls "$@" (a command) every 50 ms until it succeeds, for up to $1 s;
# fails when the time is up or retaild died.
wait_for() {
    local seconds=$1
    shift
    local end=$(($(date +%s) + seconds))
    until "$@"; do
        kill -0 "$pid" 2>/dev/null || {
            say "retaild exited"
            return 1
        }
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.05
    done
}

say "starting PostgreSQL"
dsn=$(bash "$root/tests/pg.sh" start "$pg_dir")
pg_port=$(cat "$pg_dir/port")
pg_ready() { pg_isready -q -h "$pg_dir" -p "$pg_port" -d retail_test -U postgres; }

free_port broker_port
free_port http_port
free_port events_port
free_port publish_port
data=$tmp/data
mkdir -p "$data"
say "starting retaild (accounts in PostgreSQL)"
env -u RETAIL_CONFIG -u RETAIL_PG_DSN RETAIL_DATA_DIR="$data" RETAIL_ACCESS_LOG=0 \
    RETAIL_USERS_PG_DSN="$dsn" RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker_port" \
    RETAIL_HTTP_PORT="$http_port" RETAIL_EVENTS_ENDPOINT="tcp://127.0.0.1:$events_port" \
    RETAIL_EVENTS_PUBLISH_ENDPOINT="tcp://127.0.0.1:$publish_port" \
    "$build/retaild" >>"$tmp/retaild.log" 2>&1 &
pid=$!
base=http://127.0.0.1:$http_port
ready() { curl -sf -o /dev/null "$base/readyz"; }
wait_for 60 ready || {
    say "retaild did not become ready"
    exit 1
}
pid_before=$pid
# The users service's live workers, by the broker (/metrics).
users_workers() {
    curl -sf "$base/metrics" | awk '/^retail_broker_workers\{service="users"\}/ { print $2 }'
}
workers_before=$(users_workers || true)
start_time=$(awk '{ print $22 }' "/proc/$pid/stat")

say "starting the load: $logins login and $registers registration clients"
timeline=$tmp/timeline
env -u RETAIL_CONFIG "$build/accounts-load" --endpoint "tcp://127.0.0.1:$broker_port" \
    --data-dir "$data" --logins "$logins" --registers "$registers" --out "$timeline" \
    2>>"$tmp/load.log" &
load=$!
# True once the timeline has an ok of op $1 answered after time $2 (us).
ok_after() { [ -f "$timeline" ] && awk -v op="$1" -v t="$2" \
    '$2 == op && $5 == "ok" && $4 >= t { found = 1; exit } END { exit !found }' "$timeline"; }
wait_for 60 ok_after login 0 && wait_for 60 ok_after register 0 || {
    say "the load does not succeed before any outage"
    exit 1
}
sleep "$before_s" # the load runs this long before the first outage

marks=$tmp/marks
: >"$marks"
# The server's processes: the postmaster and its children.
pg_pids() {
    local main
    main=$(head -n 1 "$pg_dir/data/postmaster.pid")
    echo "$main" $(pgrep -P "$main" || true)
}
for mode in $modes; do
    say "stopping PostgreSQL ($mode)"
    t_stop=$(now_us)
    if [ "$mode" = freeze ]; then
        # Not a stop: every process of the server stopped where it is, as
        # a frozen host or a cut network looks from here.
        frozen=$(pg_pids)
        kill -STOP $frozen
    else
        bash "$root/tests/pg.sh" down "$pg_dir" "$mode"
    fi
    t_down=$(now_us)
    sleep "$down_s" # the outage lasts this long
    say "starting PostgreSQL again"
    t_start=$(now_us)
    if [ "$mode" = freeze ]; then
        kill -CONT $frozen
        frozen=""
        t_up=$(now_us)
        t_isready=$t_up
    else
        bash "$root/tests/pg.sh" up "$pg_dir" &
        up_job=$!
        # No pause: the first answer is the moment. pg.sh up gives up
        # after 60 s, which ends this loop too.
        while ! pg_ready; do
            kill -0 "$up_job" 2>/dev/null || break
        done
        t_isready=$(now_us)
        if ! wait "$up_job" || ! pg_ready; then
            say "PostgreSQL did not start again"
            exit 1
        fi
        # "up": the server's own log line says to the millisecond when it
        # began to accept connections (log_line_prefix %m); pg_isready, a
        # process started over and over, sees it some tens of ms later,
        # and is the fallback when the line cannot be read.
        t_up=$t_isready
        stamp=$(grep 'ready to accept connections' "$pg_dir/server.log" | tail -n 1 |
            awk '{ print $1, $2, $3 }')
        if accepted=$(date -d "$stamp" +%s%6N 2>/dev/null) && [ "$accepted" -ge "$t_start" ] &&
            [ "$accepted" -le "$t_isready" ]; then
            t_up=$accepted
        fi
    fi
    if ! wait_for "$recover_s" ok_after login "$t_up" ||
        ! wait_for "$recover_s" ok_after register "$t_up"; then
        say "no successful login and registration within ${recover_s} s of PostgreSQL's return"
        echo "$mode $t_stop $t_down $t_start $t_up $t_isready norecovery" >>"$marks"
        continue
    fi
    echo "$mode $t_stop $t_down $t_start $t_up $t_isready" >>"$marks"
    sleep 1 # a second of the recovered load before the next step
done
kill -TERM "$load"
wait "$load" || {
    say "accounts-load failed"
    exit 1
}
load=""

alive=no
if kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $22 }' "/proc/$pid/stat")" = "$start_time" ]; then
    alive=yes
fi
metrics=$(curl -sf "$base/metrics" || true)
restarts=$(echo "$metrics" | awk '/^retail_worker_restarts_total\{service="users"\}/ { print $2 }')
lost=$(echo "$metrics" | awk '/^retail_broker_workers_lost_total\{service="users"\}/ { print $2 }')
# Workers the broker lost come back by themselves; wait for them (a
# condition, polled), so a wedged one shows as missing.
all_back() { [ "$(users_workers || true)" = "$workers_before" ]; }
wait_for 10 all_back || true
workers_after=$(users_workers || true)

printf '\n### A lost database: PostgreSQL stopped for %s s under login and registration load\n\n' \
    "$down_s"
printf '%s login + %s registration clients (closed loop, 20 ms pauses) through the broker;\n' \
    "$logins" "$registers"
printf '%s CPUs; load %s; PostgreSQL on a unix socket.\n\n' "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
failed=0
mapfile -t outages <"$marks"
for i in "${!outages[@]}"; do
    read -r mode t_stop t_down t_start t_up t_isready rest <<<"${outages[$i]}"
    # the next outage's stop, or never: answers after it are its own
    t_next=9999999999999999
    [ $((i + 1)) -lt ${#outages[@]} ] && read -r _ t_next _ <<<"${outages[$((i + 1))]}"
    awk -v mode="$mode" -v t_stop="$t_stop" -v t_down="$t_down" -v t_start="$t_start" \
        -v t_up="$t_up" -v t_isready="$t_isready" -v t_next="$t_next" -v norecovery="${rest:-}" \
        -v max_median_ms="$max_median_ms" '
        function median(a, n,    i, j, t) {
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return n ? a[int((n + 1) / 2)] : 0
        }
        function ms(us) { return sprintf("%.2f", us / 1000) }
        $3 >= t_down && $3 < t_start && $4 < t_start {
            down[$2]++
            if ($5 == "unavailable" && $6 == 0) { n[$2]++; lat[$2, n[$2]] = $4 - $3; if ($4 - $3 > max[$2]) { max[$2] = $4 - $3; max_at[$2] = $3 - t_down } }
            else { wrong++; wrongs[$2 " " $5 ($6 ? "(retry_after)" : "")]++ }
            next
        }
        $3 >= t_down && $3 < t_start { straddle[$2 " " $5]++; next }
        $3 >= t_stop && $3 < t_down { during[$2 " " $5]++; next }
        $4 >= t_stop - 3000000 && $4 < t_stop && $5 == "ok" { nb[$2]++; before[$2, nb[$2]] = $4 - $3 }
        $4 >= t_up && $4 < t_next && $5 == "ok" && !(($2) in first) { first[$2] = $4 - t_up }
        $4 >= t_start && $4 < t_next && $5 == "unavailable" && (!(($2) in last) || $4 - t_up > last[$2]) { last[$2] = $4 - t_up }
        END {
            if (mode == "freeze") {
                printf "#### every server process stopped (SIGSTOP), then continued (SIGCONT)\n\n"
                printf "frozen %.1f s.\n\n", (t_start - t_down) / 1e6
            } else {
                printf "#### pg_ctl stop -m %s\n\n", mode
                printf "pg_ctl stop took %s ms; down %.1f s; accepting connections (its log) %s ms after pg_ctl start began, pg_isready saw it %s ms later.\n\n", ms(t_down - t_stop), (t_start - t_down) / 1e6, ms(t_up - t_start), ms(t_isready - t_up)
            }
            for (op in nb) { for (i = 1; i <= nb[op]; i++) l[i] = before[op, i]; bmed[op] = median(l, nb[op]) }
            printf "ok answers in the 3 s before the stop: login %d (median %s ms), registration %d (median %s ms)\n\n", nb["login"], ms(bmed["login"]), nb["register"], ms(bmed["register"])
            printf "| while down | answers | unavailable | median ms | max ms | the max sent, s after down | wrong answers |\n|---|---:|---:|---:|---:|---:|---:|\n"
            for (op in down) {
                for (i = 1; i <= n[op]; i++) l[i] = lat[op, i]
                med = median(l, n[op])
                printf "| %s | %d | %d | %s | %s | %.2f | %d |\n", op, down[op], n[op], ms(med), ms(max[op]), max_at[op] / 1e6, down[op] - n[op]
                if (med / 1000 > max_median_ms) { slow = 1 }
            }
            printf "\nwrong answers while down: %d", wrong + 0
            for (w in wrongs) printf " (%s: %d)", w, wrongs[w]
            printf "\n"
            if (length(during)) { printf "answers to requests sent while pg_ctl stop ran:"; for (k in during) printf " %s: %d;", k, during[k]; printf "\n" }
            if (length(straddle)) { printf "sent while down, answered after the start began:"; for (k in straddle) printf " %s: %d;", k, straddle[k]; printf "\n" }
            if (norecovery != "") printf "NO RECOVERY: no successful login and registration after the restart\n"
            else {
                printf "first success after it accepted connections: login %s ms, registration %s ms (each includes its Argon2id hash)\n", ms(first["login"]), ms(first["register"])
                printf "last unavailable, from when it accepted connections: login %s, registration %s (negative: before it)\n\n", ("login" in last) ? ms(last["login"]) " ms" : "none", ("register" in last) ? ms(last["register"]) " ms" : "none"
            }
            if (slow) printf "FAIL: a median latency of the unavailable answers is over %s ms\n", max_median_ms
            exit (wrong > 0 || norecovery != "" || slow || !length(down)) ? 1 : 0
        }' "$timeline" || failed=1
done
printf 'retaild pid %s before, %s after (alive: %s); users worker restarts %s, users workers lost %s;\n' \
    "$pid_before" "$pid" "$alive" "${restarts:-?}" "${lost:-?}"
printf 'users workers live: %s before, %s at the end\n' "${workers_before:-?}" "${workers_after:-?}"
[ -n "$workers_before" ] && [ "$workers_after" = "$workers_before" ] || failed=1
[ "$alive" = yes ] || failed=1
[ "$(wc -l <"$marks")" -gt 0 ] || failed=1
stop_retaild || failed=1
[ "$failed" -eq 0 ] || say "FAILED (see above)"
exit "$failed"
