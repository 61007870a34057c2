#!/usr/bin/env bash
# A private PostgreSQL server for the tests.
#
#   tests/pg.sh start DIR   initdb into DIR/data, start it, create the
#                           database retail_test, print its DSN on stdout
#   tests/pg.sh stop DIR    stop it and remove DIR
#   tests/pg.sh down DIR [fast|immediate]
#                           stop the server only (fast by default: its
#                           sessions are ended), keeping DIR; an outage
#   tests/pg.sh up DIR      start it again on the same socket and port;
#                           returns once it accepts connections
#
# The server listens on a unix socket in DIR only (no TCP), so it cannot
# collide with or be reached from anything else; the port number only
# names the socket file. Authentication is "trust": only whoever can enter
# DIR (its owner and root) reaches the socket.
#
# initdb and postgres refuse to run as root, so as root the server runs as
# the postgres system user and DIR is given to it (its parent directories
# must let that user through, as /tmp does). Otherwise it runs as the
# caller. The binaries are those of the newest /usr/lib/postgresql/*/bin.
#
# stop removes DIR only if start made it (a marker file), so a wrong
# argument cannot delete anything else.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|up DIR, or $0 down DIR [fast|immediate]" >&2
    exit 2
}
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
cmd=$1
dir=$2
mode=${3:-fast}
marker=.retail-test-pg

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
    echo "pg.sh: no PostgreSQL server in /usr/lib/postgresql/*/bin (tools/install-deps.sh)" >&2
    exit 1
fi

# Runs a server binary as the user that owns the cluster.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Reports a failed start, with the log that says why, and stops a server
# that did start; DIR stays for the caller's `stop` (and for reading).
fail_start() {
    echo "pg.sh: $1" >&2
    [ -n "${2:-}" ] && [ -e "$2" ] && cat "$2" >&2
    if [ -e "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    exit 1
}

# Starts the server of DIR/data on port $1 and waits until it is ready.
server_start() {
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -p $1 -c listen_addresses=''" start >/dev/null
}

# The directory of a cluster that start made, or a refusal.
made_dir() {
    if [ ! -e "$dir/$marker" ] || [ ! -e "$dir/data" ]; then
        echo "pg.sh: $dir was not made by pg.sh start" >&2
        exit 1
    fi
    dir=$(cd "$dir" && pwd)
}

down() {
    made_dir
    case "$mode" in fast | immediate) ;; *) usage ;; esac
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
}

up() {
    made_dir
    server_start "$(cat "$dir/port")" || {
        echo "pg.sh: the server did not start again:" >&2
        tail -n 20 "$dir/server.log" >&2
        exit 1
    }
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -e "$dir/data" ]; then
        echo "pg.sh: $dir/data exists; stop it first" >&2
        exit 1
    fi
    touch "$dir/$marker"
    chmod 0700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
    fi

    # A socket path is at most 107 bytes: DIR/.s.PGSQL.NNNNN must fit.
    if [ $((${#dir} + 18)) -gt 107 ]; then
        echo "pg.sh: $dir is too long for a unix socket path" >&2
        exit 1
    fi
    local port=$((20000 + RANDOM % 40000))
    echo "$port" >"$dir/port" # for `up`

    # --no-sync: a throwaway cluster need not wait for the disk.
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1 || fail_start "initdb failed:" "$dir/initdb.log"
    server_start "$port" || fail_start "the server did not start:" "$dir/server.log"
    as_owner "$bindir/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -c "CREATE DATABASE retail_test" >&2 ||
        fail_start "cannot create the database retail_test"
    echo "host=$dir port=$port dbname=retail_test user=postgres"
}

stop() {
    [ -d "$dir" ] || exit 0
    if [ ! -e "$dir/$marker" ]; then
        echo "pg.sh: $dir was not made by pg.sh start; not touching it" >&2
        exit 1
    fi
    if [ -e "$dir/data/postmaster.pid" ]; then
        # fast: disconnect the clients and stop at once.
        if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null; then
            echo "pg.sh: pg_ctl stop -m fast failed; stopping immediately" >&2
            as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null ||
                echo "pg.sh: pg_ctl stop failed" >&2
        fi
    fi
    rm -rf "$dir"
}

case "$cmd" in
start) start ;;
stop) stop ;;
down) down ;;
up) up ;;
*) usage ;;
esac
