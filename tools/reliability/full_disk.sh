#!/usr/bin/env bash
# full_disk.sh - a full disk, and an LMDB map at its size limit, under load
# (make full-disk; docs/RELIABILITY.md section 3).
#
#   bash tools/reliability/full_disk.sh [BUILD_DIR] [--smoke]
#
# Part 1, the disk. A tmpfs of FULL_DISK_MB MiB (16) is mounted as a fresh
# data directory (root only: without root, or when the mount fails, the
# script says so and exits 2). retail-seed puts 200 products there, then
# retaild starts on free ports with an admin, and loadgen runs the shop
# scenario (tools/scenarios/shop.json, LOAD_USERS virtual users, its
# record kept outside the tmpfs) through three phases:
#   normal  NORMAL_S s of load on a disk with room;
#   full    a ballast file (dd until ENOSPC) fills the filesystem, then
#           FULL_S s of load and of probes, and up to 30 s more of probes
#           until one write is refused (LMDB's files hold free pages, so
#           the first writes on a full disk may fit);
#   freed   the ballast is removed, AFTER_S s more.
# Probes, sequential curl requests beside the load, cycle through writes
# (a registration, a cart line, a product's stock by the admin), reads (a
# product, the probe user's own account and cart) and a login of an
# existing user, each line kept with its phase, time, status and error
# code. The run passes when: some writes of the full phase were answered
# 503 "storage is full" and none 500; every read of every phase was
# answered 200; once the ballast is gone the first write succeeds within
# 10 s and no probe write is refused after it; retaild is the same process
# throughout (no restart, no crash); and everything acknowledged is still
# there: `retailctl check-record` on loadgen's record and `retailctl
# check` (both asked again for up to CHECK_WAIT_S s while recovery
# finishes orders a refused write left pending), then `retailctl payments
# verify`. Login
# writes (a session, or a failure count), so it is reported, not held to
# 200.
#
# Part 2, the map. A second retaild, on a fresh directory with the
# catalog's map limited to MAP_MB MiB (RETAIL_CATALOG_MAP_MB), gets
# products created by 4 concurrent admin loops until creates are answered
# 503 "storage is full", while a reader keeps getting a product; then the
# admin deletes products one by one until a create succeeds again, with
# no restart.
#
# Figures (stdout): per phase and kind, the probes' answers; loadgen's
# record: writes acknowledged, refused with 503, other outcomes; the read
# success rate while full; the time from removing the ballast to the first
# successful write; for the map, products made before it filled and the
# deletes it took to make room. Progress and failures go to stderr.
#
# --smoke (tests/smoke/full_disk.sh): shorter phases and fewer users, the
# same checks. Exit status: 0 all held, 1 a check failed, 2 cannot run.
set -euo pipefail

build=${1:-build}
smoke=0
[ "${2:-}" = --smoke ] && smoke=1
if [ "$smoke" = 1 ]; then
    normal_s=${NORMAL_S:-3} full_s=${FULL_S:-5} after_s=${AFTER_S:-3} users=${LOAD_USERS:-4}
    rate=${LOAD_RATE:-200}
    products=60 check_wait_s=${CHECK_WAIT_S:-40}
else
    normal_s=${NORMAL_S:-10} full_s=${FULL_S:-20} after_s=${AFTER_S:-10} users=${LOAD_USERS:-16}
    rate=${LOAD_RATE:-400}
    products=200 check_wait_s=${CHECK_WAIT_S:-60}
fi
disk_mb=${FULL_DISK_MB:-16}
map_mb=${MAP_MB:-2}
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)

say() { echo "full_disk: $*" >&2; }
build=$(cd "$build" 2>/dev/null && pwd) || {
    say "no build directory ${1:-build} (run make first)"
    exit 2
}
for bin in retaild retailctl loadgen retail-seed; do
    [ -x "$build/$bin" ] || {
        say "$build/$bin is missing (run make first)"
        exit 2
    }
done
for tool in curl python3 dd mount umount; do
    command -v "$tool" >/dev/null || {
        say "$tool is needed"
        exit 2
    }
done
if [ "$(id -u)" != 0 ]; then
    say "needs root to mount a size-limited tmpfs; not run"
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/retail-full-disk.XXXXXX")
mnt=$work/mnt
mounted=0
pid=""
load_pid=""
creators=()
stop_retaild() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}
cleanup() {
    local status=$?
    for p in "${creators[@]}" $load_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    stop_retaild
    if [ "$mounted" = 1 ]; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt" || say "cannot unmount $mnt"
    fi
    if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
        say "last lines of retaild's log:"
        tail -n 15 "$work"/retaild*.log >&2 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$mnt"
if ! mount -t tmpfs -o "size=${disk_mb}m,mode=0700" tmpfs "$mnt"; then
    say "cannot mount a tmpfs on $mnt; not run"
    exit 2
fi
mounted=1

. "$source_dir/tools/bench/ports.sh"
cd "$source_dir"
admin_email=admin@full-disk.test
admin_password=full-disk-admin-password
user_password=full-disk-user-password
failures=0
fail() {
    say "FAILED: $*"
    failures=$((failures + 1))
}
now_ms() { date +%s%3N; }
# A sanitizer build (make check) reports into retaild's log: a report there
# fails the run, whatever else held.
sanitizers() {
    if grep -q -E "AddressSanitizer|LeakSanitizer|runtime error:" "$1"; then
        fail "a sanitizer report in retaild's log: $(grep -m 1 -E "Sanitizer|runtime error:" "$1")"
    fi
}

# Starts retaild on data directory $1 with extra variables $2...; sets
# pid, base (the HTTP base URL), broker; waits until it answers.
start_retaild() {
    local data=$1 log=$2
    shift 2
    retaild_ports_env
    env -u RETAIL_CONFIG -u RETAIL_PG_DSN -u RETAIL_USERS_PG_DSN RETAIL_DATA_DIR="$data" \
        RETAIL_ACCESS_LOG=0 "${retaild_env[@]}" \
        RETAIL_ADMIN_EMAIL="$admin_email" RETAIL_ADMIN_PASSWORD="$admin_password" "$@" \
        "$build/retaild" >>"$log" 2>&1 &
    pid=$!
    base=http://127.0.0.1:$http_port
    broker=tcp://127.0.0.1:$broker_port
    local deadline=$(($(now_ms) + 30000))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; do
        kill -0 "$pid" 2>/dev/null || {
            say "retaild exited during start-up"
            exit 1
        }
        [ "$(now_ms)" -lt "$deadline" ] || {
            say "retaild is not ready after 30 s"
            exit 1
        }
        sleep 0.1
    done
}

# One request: METHOD PATH [BODY] [TOKEN]; sets status, code (the error's,
# or "-"), message; the body is in $work/body.
call() {
    local args=(-s -o "$work/body" -w '%{http_code}' --max-time 10 -X "$1"
        -H 'Content-Type: application/json')
    [ -n "${3:-}" ] && args+=(--data "$3")
    [ -n "${4:-}" ] && args+=(-H "Authorization: Bearer $4")
    status=$(curl "${args[@]}" "$base$2") || status=000
    code=$(sed -n 's/^{"error":{"code":"\([^"]*\)".*/\1/p' "$work/body")
    message=$(sed -n 's/^{"error":{"code":"[^"]*","message":"\([^"]*\)".*/\1/p' "$work/body")
    code=${code:--}
}

login() { # email password -> the access token on stdout
    call POST /v1/auth/login "{\"email\":\"$1\",\"password\":\"$2\"}"
    [ "$status" = 200 ] || return 1
    sed -n 's/^{"access_token":"\([^"]*\)".*/\1/p' "$work/body"
}

# ---- part 1: the disk ----

data=$mnt/data
mkdir -p "$data"
"$build/retail-seed" --data-dir "$data" -n "$products" --ids "$data/demo-product-ids.txt" -q \
    >/dev/null
start_retaild "$data" "$work/retaild.log"
retaild_pid=$pid
say "retaild $pid on a ${disk_mb} MiB tmpfs ($products products); load: $users users, $rate requests/s"
admin=$(login "$admin_email" "$admin_password") || {
    say "the admin cannot log in"
    exit 1
}
call POST /v1/auth/register "{\"email\":\"probe@full-disk.test\",\"password\":\"$user_password\",\"name\":\"Probe\"}"
[ "$status" = 201 ] || {
    say "cannot register the probe user ($status)"
    exit 1
}
probe_token=$(login probe@full-disk.test "$user_password")
product=$(head -n 1 "$data/demo-product-ids.txt")
# retailctl's certificate, made now: a client made while the disk is full
# could not write it.
"$build/retailctl" --broker "$broker" --data-dir "$data" services >/dev/null

load_s=$((normal_s + full_s + after_s + 1))
"$build/loadgen" --endpoint "$broker" --data-dir "$data" --scenario tools/scenarios/shop.json \
    -c "$users" --rate "$rate" --warmup 5 -d "$load_s" --json -q --record "$work/record.ndjson" \
    >"$work/loadgen.json" 2>"$work/loadgen.log" &
load_pid=$!

# Probes until the time $2 (ms); phase name $1. Each line of
# $work/probes: phase ms op kind status code message.
probe_seq=0
# A registration or login answered 503 "too many password checks" met
# the gate on concurrent Argon2id hashes, which the load's own logins fill
# (more often under the sanitizers): a busy answer with retry_after, not
# the disk's state, so the probe does what a client should and asks again
# (up to 50 times), counting the retries in $work/busy.
probe_one() {
    local tries=0 op kind
    probe_seq=$((probe_seq + 1))
    while :; do
        probe_once "$1"
        [ "$status" = 503 ] && [ "${message#too many password checks}" != "$message" ] || break
        tries=$((tries + 1))
        echo "$1" >>"$work/busy"
        [ "$tries" -lt 50 ] || break
        sleep 0.1
    done
    echo "$1 $(now_ms) $op $kind $status $code $message" >>"$work/probes"
}
probe_once() { # sets op and kind, probe_one's
    local phase=$1
    case $((probe_seq % 7)) in
    0)
        op=register kind=write
        call POST /v1/auth/register \
            "{\"email\":\"p$probe_seq-$phase@full-disk.test\",\"password\":\"$user_password\",\"name\":\"P\"}"
        ;;
    1)
        op=product kind=read
        call GET "/v1/products/$product"
        ;;
    2)
        op=cart_item kind=write
        call PUT "/v1/cart/items/$product" "{\"qty\":$((probe_seq % 5 + 1))}" "$probe_token"
        ;;
    3)
        op=me kind=read
        call GET /v1/users/me "" "$probe_token"
        ;;
    4)
        op=stock kind=write
        call PUT "/v1/products/$product/stock" "{\"stock\":$((1000 + probe_seq))}" "$admin"
        ;;
    5)
        op=cart kind=read
        call GET /v1/cart "" "$probe_token"
        ;;
    6)
        op=login kind=login
        call POST /v1/auth/login "{\"email\":\"probe@full-disk.test\",\"password\":\"$user_password\"}"
        ;;
    esac
}
probe_until() {
    while [ "$(now_ms)" -lt "$2" ]; do
        probe_one "$1"
    done
}

t=$(now_ms)
probe_until normal $((t + (5 + normal_s) * 1000))
kill -0 "$load_pid" 2>/dev/null || fail "loadgen ended before the disk was filled"

say "filling the disk"
dd if=/dev/zero of="$mnt/ballast" bs=1M status=none 2>/dev/null || true
df -k "$mnt" | tail -n 1 | awk '{print "full_disk: filled: " $4 " KiB left"}' >&2
t_full=$(now_ms)
probe_until full $((t_full + full_s * 1000))
# LMDB reuses the pages its files already hold, so a write that fits in
# them commits on a full disk: how soon one needs a new page depends on
# how much the load wrote, which a slow machine makes less. The phase
# goes on, up to 30 s more, until a probe write has been refused.
full_refused() { grep -q '^full [0-9]* [a-z_]* write 503 .* storage is full' "$work/probes"; }
while ! full_refused && [ "$(now_ms)" -lt $((t_full + (full_s + 30) * 1000)) ]; do
    probe_one full
done

say "freeing the disk"
rm -f "$mnt/ballast"
t_free=$(now_ms)
first_ok=""
while [ "$(now_ms)" -lt $((t_free + 10000)) ]; do
    probe_seq=$((probe_seq - probe_seq % 7 + 6)) # the next probe is a registration
    probe_one freed
    if [ "$(tail -n 1 "$work/probes" | awk '{print $5}')" = 201 ]; then
        first_ok=$(tail -n 1 "$work/probes" | awk '{print $2}')
        break
    fi
done
probe_until after $(($(now_ms) + after_s * 1000))

wait "$load_pid" || fail "loadgen failed (see its log)"
load_pid=""
# The script never restarts it: alive means the same process throughout.
kill -0 "$retaild_pid" 2>/dev/null || fail "retaild is gone (crashed?)"
if grep -q -i "restart" "$work/retaild.log"; then
    fail "a pool restarted a worker: $(grep -i -m 1 restart "$work/retaild.log")"
fi

ctl=("$build/retailctl" --broker "$broker" --data-dir "$data")
# A write the full disk refused can leave an order pending with its
# payment captured at the gateway and not yet in the payments log; the
# recovery sweeps settle it within seconds, so both checks are asked
# again until they hold together or CHECK_WAIT_S s have gone.
checks_ok=0
deadline=$(($(now_ms) + check_wait_s * 1000))
while :; do
    record_ok=0 check_ok=0
    "${ctl[@]}" check-record "$work/record.ndjson" >"$work/check-record.out" 2>&1 && record_ok=1
    "${ctl[@]}" check >"$work/check.out" 2>&1 && check_ok=1
    if [ "$record_ok" = 1 ] && [ "$check_ok" = 1 ]; then
        checks_ok=1
        break
    fi
    [ "$(now_ms)" -lt "$deadline" ] || break
    [ "$record_ok" = 1 ] || say "check-record: not yet: $(grep -m 1 -v '^check-record:' "$work/check-record.out")"
    [ "$check_ok" = 1 ] || say "check: not yet: $(grep -v ' ok ' "$work/check.out" | head -n 2 | tr '\n' ' ')"
    sleep 1
done
if [ "$checks_ok" = 0 ]; then
    [ "$record_ok" = 1 ] || fail "check-record: $(tail -n 3 "$work/check-record.out")"
    [ "$check_ok" = 1 ] || fail "retailctl check: $(head -n 5 "$work/check.out")"
fi
"${ctl[@]}" payments verify >"$work/verify.out" 2>&1 || fail "payments verify: $(cat "$work/verify.out")"

# ---- the figures of part 1 ----
python3 - "$work" "$t_full" "$t_free" "${first_ok:-0}" "$smoke" >"$work/summary" <<'PY' ||
import collections, json, sys
work, t_full, t_free, first_ok, smoke = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
probes = []
for line in open(work + "/probes"):
    f = line.rstrip("\n").split(" ", 6)
    f += [""] * (7 - len(f))
    probes.append({"phase": f[0], "ms": int(f[1]), "op": f[2], "kind": f[3], "status": f[4],
                   "code": f[5], "message": f[6]})
problems = []
by = collections.defaultdict(collections.Counter)
def answer(p):
    if p["code"] == "-":
        return p["status"]
    if p["message"].startswith("storage is full"):
        return p["status"] + " storage is full"
    return "%s %s (%s)" % (p["status"], p["code"], p["message"])
for p in probes:
    by[(p["phase"], p["kind"])][answer(p)] += 1
print("probes, answers per phase (status code: count):")
for phase in ("normal", "full", "freed", "after"):
    for kind in ("write", "read", "login"):
        c = by.get((phase, kind))
        if c:
            print("  %-6s %-5s %s" % (phase, kind, ", ".join("%s: %d" % kv for kv in sorted(c.items()))))
full = [p for p in probes if p["phase"] == "full"]
full_writes = collections.Counter(
    "acknowledged" if p["status"].startswith("2") else
    "refused 503 storage is full" if p["message"].startswith("storage is full") else
    "other " + p["status"] for p in full if p["kind"] == "write")
print("probe writes while full: %s" % ", ".join("%s: %d" % kv for kv in sorted(full_writes.items())))
refused = [p for p in full if p["kind"] == "write" and p["status"] == "503"]
if not refused:
    problems.append("no write was refused while the disk was full")
bad_msg = [p for p in refused if not p["message"].startswith("storage is full")]
if bad_msg:
    problems.append("503 without 'storage is full': %s" % bad_msg[0]["message"])
if any(p["status"] == "500" for p in probes):
    problems.append("a probe was answered 500")
reads = [p for p in probes if p["kind"] == "read"]
bad_reads = [p for p in reads if p["status"] != "200"]
if bad_reads:
    problems.append("%d reads not 200 (first: %s %s %s)" % (len(bad_reads), bad_reads[0]["op"],
                    bad_reads[0]["status"], bad_reads[0]["message"]))
full_reads = [p for p in full if p["kind"] == "read"]
ok_full_reads = sum(p["status"] == "200" for p in full_reads)
print("reads while full: %d of %d answered 200 (%.1f%%)" % (
    ok_full_reads, len(full_reads), 100.0 * ok_full_reads / max(1, len(full_reads))))
if refused:
    print("first write refused %d ms after the disk was filled; message: \"%s\"" % (
        refused[0]["ms"] - t_full, refused[0]["message"]))
logins = collections.Counter(answer(p) for p in full if p["kind"] == "login")
print("login while full: %s" % ", ".join("%s: %d" % kv for kv in sorted(logins.items())))
try:
    busy = collections.Counter(line.strip() for line in open(work + "/busy"))
except FileNotFoundError:
    busy = collections.Counter()
print("probes asked again after 503 too many password checks: %s" % (
    ", ".join("%s %d" % kv for kv in sorted(busy.items())) or "none"))
freed = [p for p in probes if p["phase"] == "freed"]
if first_ok:
    print("first successful write %d ms after the ballast was removed, at attempt %d (a registration:"
          " its Argon2id hash is most of that)" % (first_ok - t_free, len(freed)))
else:
    problems.append("no write succeeded within 10 s of freeing the disk")
after_refused = [p for p in probes
                 if p["phase"] == "after" and p["kind"] != "read" and not p["status"].startswith("2")]
if after_refused:
    problems.append("%d probe writes failed after the disk was freed (first: %s %s %s)" % (
        len(after_refused), after_refused[0]["op"], after_refused[0]["status"], after_refused[0]["message"]))
# loadgen's record: what the load got acknowledged, refused, or left unknown
acked = refused_load = 0
other = collections.Counter()
for line in open(work + "/record.ndjson"):
    r = json.loads(line)
    if "record" in r:
        continue
    if r.get("ack"):
        acked += 1
    elif r.get("code") == "unavailable":
        refused_load += 1
    else:
        other[r.get("code")] += 1
print("load (loadgen record, whole run): %d writes acknowledged, %d refused 503, %d other outcomes %s" % (
    acked, refused_load, sum(other.values()), dict(other) if other else ""))
if other.get("internal"):
    problems.append("the load got %d internal errors" % other["internal"])
try:
    lg = json.loads(open(work + "/loadgen.json").read().strip().splitlines()[-1])
    print("load (loadgen, measured %.0f s): %d requests, %d errors %s" % (
        lg["seconds"], lg["requests"], lg["errors"], lg["errors_by_code"]))
except Exception as e:
    problems.append("no loadgen result: %s" % e)
for p in problems:
    print("PROBLEM: " + p)
sys.exit(1 if problems else 0)
PY
    fail "the probes or the record do not hold (above)"
cat "$work/summary"
say "check-record: $(tail -n 1 "$work/check-record.out")"
say "check: $(tail -n 1 "$work/check.out")"
say "payments verify: $(tr -d " \n" <"$work/verify.out" | cut -c1-160)"
stop_retaild
sanitizers "$work/retaild.log"
umount "$mnt" && mounted=0

# ---- part 2: the map ----

mapdata=$work/map
mkdir -p "$mapdata"
"$build/retail-seed" --data-dir "$mapdata" -n 20 --ids "$mapdata/demo-product-ids.txt" -q \
    >/dev/null
start_retaild "$mapdata" "$work/retaild-map.log" RETAIL_CATALOG_MAP_MB="$map_mb"
map_pid=$pid
admin=$(login "$admin_email" "$admin_password")
call GET "/v1/categories?limit=1"
category=$(sed -n 's/^{"items":\[{"id":"\([^"]*\)".*/\1/p' "$work/body")
product=$(head -n 1 "$mapdata/demo-product-ids.txt")
words=$(for i in $(seq 100); do printf 'word%d ' "$i"; done)
# A creator: products until one is answered 503; each line of
# $work/created.N: status code id.
creator() {
    local n=$1 i=0 st body code id
    while :; do
        i=$((i + 1))
        body=$(curl -s --max-time 10 -w ' %{http_code}' -H 'Content-Type: application/json' \
            -H "Authorization: Bearer $admin" -X POST "$base/v1/products" \
            --data "{\"sku\":\"MAP-$n-$i\",\"name\":\"Map filler $n $i\",\"description\":\"$words $n $i\",\"price_cents\":100,\"currency\":\"EUR\",\"category_id\":\"$category\",\"stock\":1}") ||
            body="curl 000"
        st=${body##* }
        code=$(echo "$body" | sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
        id=$(echo "$body" | sed -n 's/^{"product":{"id":"\([^"]*\)".*/\1/p')
        echo "$st ${code:--} ${id:--}" >>"$work/created.$n"
        [ "$st" = 201 ] || break
        [ "$i" -lt 5000 ] || break
    done
}
for n in 1 2 3 4; do
    creator "$n" &
    creators+=($!)
done
reads_ok=0 reads=0
while :; do
    running=0
    for p in "${creators[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    call GET "/v1/products/$product"
    reads=$((reads + 1))
    [ "$status" = 200 ] && reads_ok=$((reads_ok + 1))
    [ "$running" = 1 ] || break
done
for p in "${creators[@]}"; do wait "$p" || true; done
creators=()
made=$(cat "$work"/created.* | awk '$1 == 201' | wc -l)
refused_map=$(cat "$work"/created.* | awk '$1 == 503 && $2 == "unavailable"' | wc -l)
other_map=$(cat "$work"/created.* | awk '$1 != 201 && $1 != 503' | wc -l)
call POST /v1/products "{\"sku\":\"MAP-again\",\"name\":\"Again\",\"description\":\"$words\",\"price_cents\":100,\"currency\":\"EUR\",\"category_id\":\"$category\",\"stock\":1}" "$admin"
[ "$status" = 503 ] && [ "${message#storage is full}" != "$message" ] ||
    fail "the map: a create at the limit answered $status $code \"$message\""
call GET "/v1/products/$product"
[ "$status" = 200 ] || fail "the map: a read at the limit answered $status"
deletes=0 again=""
for id in $(cat "$work"/created.* | awk '$1 == 201 {print $3}'); do
    call DELETE "/v1/products/$id" "" "$admin"
    [ "$status" = 204 ] || {
        fail "the map: a delete answered $status $code \"$message\""
        break
    }
    deletes=$((deletes + 1))
    call POST /v1/products "{\"sku\":\"MAP-again\",\"name\":\"Again\",\"description\":\"$words\",\"price_cents\":100,\"currency\":\"EUR\",\"category_id\":\"$category\",\"stock\":1}" "$admin"
    if [ "$status" = 201 ]; then
        again=1
        break
    fi
done
[ -n "$again" ] || fail "the map: no create succeeded after $deletes deletes"
kill -0 "$map_pid" 2>/dev/null || fail "the map: retaild is gone"
[ "$other_map" = 0 ] || fail "the map: $other_map creates answered neither 201 nor 503"
[ "$reads_ok" = "$reads" ] || fail "the map: $((reads - reads_ok)) of $reads reads not 200"
echo "map of $map_mb MiB (catalog): $made products created by 4 concurrent admins before the limit," \
    "then $refused_map creates answered 503 \"storage is full\"; reads meanwhile: $reads_ok of $reads 200;" \
    "$deletes deletes made room for a create again (no restart)"
stop_retaild
sanitizers "$work/retaild-map.log"

[ "$failures" = 0 ] || exit 1
say "all held"
