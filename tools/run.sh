#!/usr/bin/env bash
# tools/run.sh - what `make run` runs: a first run that shows a shop.
#
#   tools/run.sh [--prepare-only] [BUILD]      (BUILD: the build directory, default build)
#
# What it is for: retaild on a new machine starts with nothing in it, no
# products and no admin, so nothing of the README's walk-through would work.
# This script prepares a data directory for a demo before it starts
# retaild (which itself never seeds anything), then execs retaild in the
# foreground as `make run` always did. --prepare-only stops after the
# preparation (the integration test runs that).
#
# How it works. The data directory is the one retaild would use:
# $RETAIL_DATA_DIR, else retail/data_dir of the $RETAIL_CONFIG file, else
# ./var; the script passes it to every tool with --data-dir so all agree.
# Two steps, each done only when its own condition holds, so a second run
# does neither again and an interrupted run finishes the step it was in:
#
#   1. The demo catalog, when DIR/catalog (the catalog's LMDB environment)
#      does not exist yet, i.e. neither retaild nor this script ever made
#      it: retail-seed writes the category tree (36 categories) and 1000
#      products into DIR/.demo-seed, and their ids to a file there; both
#      are then renamed into place (DIR/catalog, DIR/demo-product-ids.txt,
#      which the load scenarios of tools/scenarios/ read). A seed that was
#      cut short leaves no DIR/catalog, so the next run seeds again from
#      scratch instead of keeping half a catalog.
#   2. An admin, when none is configured (none of RETAIL_ADMIN_EMAIL,
#      RETAIL_ADMIN_PASSWORD, RETAIL_USERS_ADMIN_EMAIL,
#      RETAIL_USERS_ADMIN_PASSWORD is set, nor admin_email in the
#      configuration file), none was made by this script before
#      (DIR/admin-credentials.json does not exist), and the account store
#      is new (DIR/users does not exist; with a PostgreSQL account store
#      that cannot be told, and an admin of that email already there is
#      reported and left alone). The email is admin@shop.example, the
#      password 24 characters of base64url from 18 bytes of /dev/urandom.
#      The credentials are written first, to DIR/admin-credentials.json.new
#      (created under umask 077, so mode 0600 from the start), as the JSON body
#      of a login; then `retailctl user create --admin` makes the account,
#      reading the password from a pipe (never a command line or the
#      environment); then the file is renamed into place. A run cut short
#      in between finds the .new file and finishes with its password.
#      The password is printed once, to the terminal (/dev/tty), never to
#      stdout or stderr, which may be a log; without a terminal only the
#      file's path is said. Later runs say where the file is.
#
# A lock (flock on DIR/.run.lock) keeps two of these from preparing the
# same directory at once; it is released before retaild starts.
#
# Messages go to stderr, prefixed "run:"; retaild's stdout stays its
# access log. Exit status: retaild's, or 1 when a step failed, 2 usage.
set -euo pipefail

ADMIN_EMAIL=admin@shop.example
DEMO_PRODUCTS=1000

say() { echo "run: $*" >&2; }
die() {
    say "$*"
    exit 1
}

prepare_only=0
build=build
while [ $# -gt 0 ]; do
    case "$1" in
    --prepare-only) prepare_only=1 ;;
    -h | --help)
        echo "usage: tools/run.sh [--prepare-only] [BUILD]"
        exit 0
        ;;
    -*)
        echo "usage: tools/run.sh [--prepare-only] [BUILD]" >&2
        exit 2
        ;;
    *) build=$1 ;;
    esac
    shift
done
for tool in retaild retailctl retail-seed; do
    [ -x "$build/$tool" ] || die "$build/$tool is missing: build first (make)"
done

# The value of KEY (a path: retail/users/admin_email) in the ZPL file FILE,
# or nothing. ZPL as czmq writes it: 4 spaces of indent a level, "name" or
# "name = value", the value bare or quoted, '#' comments. Only what this
# script needs to agree with retaild on; retaild reads the file itself.
zpl_get() {
    awk -v want="$2" '
        { sub(/\r$/, "") }
        /^[ \t]*(#|$)/ { next }
        {
            match($0, /^ */)
            depth = int(RLENGTH / 4)
            line = substr($0, RLENGTH + 1)
            match(line, /^[^ \t=#]+/)
            path[depth] = substr(line, 1, RLENGTH)
            rest = substr(line, RLENGTH + 1)
            p = path[0]
            for (i = 1; i <= depth; i++)
                p = p "/" path[i]
            if (p != want || !match(rest, /^[ \t]*=[ \t]*/))
                next
            v = substr(rest, RLENGTH + 1)
            if (v ~ /^"/) {
                v = substr(v, 2)
                sub(/".*/, "", v)
            } else if (v ~ /^\047/) {
                v = substr(v, 2)
                sub(/\047.*/, "", v)
            } else
                sub(/[ \t]*(#.*)?$/, "", v)
            print v
            exit
        }' "$1"
}

config=${RETAIL_CONFIG:-}
if [ -n "$config" ] && [ ! -r "$config" ]; then
    die "RETAIL_CONFIG names $config, which cannot be read"
fi
conf() { if [ -n "$config" ]; then zpl_get "$config" "$1"; fi; }

dir=${RETAIL_DATA_DIR:-}
[ -n "$dir" ] || dir=$(conf retail/data_dir)
[ -n "$dir" ] || dir=./var

admin_configured=0
for v in RETAIL_ADMIN_EMAIL RETAIL_ADMIN_PASSWORD RETAIL_USERS_ADMIN_EMAIL \
    RETAIL_USERS_ADMIN_PASSWORD; do
    [ -z "${!v:-}" ] || admin_configured=1
done
[ -z "$(conf retail/users/admin_email)$(conf retail/admin_email)" ] || admin_configured=1
pg=${RETAIL_USERS_PG_DSN:-${RETAIL_PG_DSN:-}}
[ -n "$pg" ] || pg=$(conf retail/users/pg_dsn)$(conf retail/pg_dsn)

# Owner only, whatever the preparation makes: the directory holds keys
# and the admin's password. retaild gets the caller's umask back.
old_umask=$(umask)
umask 077
mkdir -p "$dir" || die "cannot make the data directory $dir"
exec 9>>"$dir/.run.lock" || die "cannot open $dir/.run.lock"
flock -n 9 || die "another tools/run.sh is preparing $dir; try again when it has started"

# ---- 1. the demo catalog ----
ids=$dir/demo-product-ids.txt
if [ ! -e "$dir/catalog" ]; then
    seed=$dir/.demo-seed
    rm -rf "$seed"
    mkdir "$seed" || die "cannot make $seed"
    say "no catalog in $dir yet: seeding a demo catalog of $DEMO_PRODUCTS products"
    # Its summary names the temporary directory: shown only if it failed.
    if ! summary=$("$build/retail-seed" --data-dir "$seed" -n "$DEMO_PRODUCTS" \
        --ids "$seed/ids.txt" -q); then
        printf '%s\n' "$summary" >&2
        die "retail-seed failed; nothing was kept (the next run seeds again)"
    fi
    mv "$seed/ids.txt" "$ids"
    mv "$seed/catalog" "$dir/catalog"
    rm -rf "$seed"
    say "seeded $(wc -l <"$ids") products and their categories; the ids are in $ids"
fi

# ---- 2. an admin ----
creds=$dir/admin-credentials.json
pending=$creds.new
if [ "$admin_configured" = 1 ]; then
    : # retaild creates the configured admin itself
elif [ -e "$creds" ]; then
    say "the admin's email and password are in $creds"
elif [ -e "$pending" ] || [ ! -e "$dir/users" ] || [ -n "$pg" ]; then
    if [ -e "$pending" ]; then
        # An earlier run wrote it and may have made the account with it.
        password=$(sed -n 's/.*"password": *"\([^"]*\)".*/\1/p' "$pending")
        resumed=1
    else
        password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        resumed=0
    fi
    [ ${#password} -eq 24 ] || die "$pending holds no password; remove it and run again"
    if [ "$resumed" = 0 ]; then
        # Created 0600 by the shell under umask 077: never readable by others.
        printf '{"email": "%s", "password": "%s"}\n' "$ADMIN_EMAIL" "$password" >"$pending" ||
            die "cannot write $pending"
    fi
    # Without the admin variables, retailctl reads the password from stdin;
    # printf is a builtin, so the password is on no command line.
    if ! made=$(printf '%s\n' "$password" |
        env -u RETAIL_ADMIN_PASSWORD -u RETAIL_USERS_ADMIN_PASSWORD \
            "$build/retailctl" --data-dir "$dir" user create --admin "$ADMIN_EMAIL" \
            --name "Shop admin"); then
        die "could not create the admin (kept $pending for the next run)"
    fi
    case "$made" in
    *"exists already"*)
        if [ "$resumed" = 0 ]; then
            # Someone else's account: this password is not its password.
            rm -f "$pending"
            say "$ADMIN_EMAIL exists already in the account store; its password is not known here"
            password=""
        fi
        ;;
    esac
    if [ -n "$password" ]; then
        mv "$pending" "$creds"
        if { printf '' >/dev/tty; } 2>/dev/null; then
            printf '\nrun: an admin was made; its password is shown this once:\n' >/dev/tty
            printf '       email     %s\n       password  %s\n' "$ADMIN_EMAIL" "$password" \
                >/dev/tty
            printf '     (and kept in %s, readable by you only)\n\n' "$creds" >/dev/tty
        else
            say "an admin was made: $ADMIN_EMAIL, its password in $creds (no terminal to show it on)"
        fi
    fi
fi

exec 9>&- # the lock: retaild is not a preparer
umask "$old_umask"
if [ "$prepare_only" = 1 ]; then
    exit 0
fi
exec "$build/retaild" --data-dir "$dir"
