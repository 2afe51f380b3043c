#!/usr/bin/env bash
# A throwaway PostgreSQL server for the backing-store tests: a fresh cluster in a temp
# directory, trust auth, listening on 127.0.0.1 only, on the first free port from 55432.
#
#   eval "$(scripts/pg-test-server.sh start)"   # start; exports RINGCACHE_TEST_PG_URL
#   scripts/test.sh                              # the PostgreSQL suites now run
#   scripts/pg-test-server.sh stop               # stop it and delete its directory
#   scripts/pg-test-server.sh env                # print the exports again
#   RINGCACHE_PG_DURABLE=1 ... start             # keep fsync on (benchmarks)
#
# Needs the PostgreSQL server binaries (Debian: `apt-get install postgresql`; they live
# in /usr/lib/postgresql/<ver>/bin, or set PG_BIN). PostgreSQL refuses to run as root:
# as root the server runs as user `postgres` (created by Debian's package) or, failing
# that, a system user `ringcache-pg` made here. Status goes to stderr; stdout carries
# only the `export` lines, so `eval` is safe. State: target/pg-test-server.env.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${RINGCACHE_PG_STATE:-$PWD/target/pg-test-server.env}"
FIRST_PORT="${RINGCACHE_PG_PORT:-55432}"

log() { echo "pg-test-server: $*" >&2; }
die() { log "$*"; exit 1; }

find_bin() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    local d
    # Newest installed major version first.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -rn); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"; return
    fi
    die "PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)"
}

port_in_use() {
    # bash's /dev/tcp: connecting succeeds only if something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Runs a command as the server's user (root cannot run PostgreSQL).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

pick_user() {
    if [ "$(id -u)" -ne 0 ]; then PG_USER="$(id -un)"; return; fi
    if id postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        id ringcache-pg >/dev/null 2>&1 ||
            useradd --system --no-create-home --shell /usr/sbin/nologin ringcache-pg
        PG_USER=ringcache-pg
    fi
}

print_env() {
    # shellcheck disable=SC1090
    . "$STATE"
    echo "export RINGCACHE_TEST_PG_URL='$RINGCACHE_TEST_PG_URL'"
    echo "export RINGCACHE_TEST_PG_DIR='$RINGCACHE_TEST_PG_DIR'"
}

running() {
    [ -f "$STATE" ] || return 1
    # shellcheck disable=SC1090
    . "$STATE"
    [ -d "$RINGCACHE_TEST_PG_DIR/data" ] &&
        as_pg "$PG_BIN_DIR/pg_ctl" -D "$RINGCACHE_TEST_PG_DIR/data" status >/dev/null 2>&1
}

start() {
    PG_BIN_DIR="$(find_bin)"
    pick_user
    if running; then
        log "already running ($RINGCACHE_TEST_PG_URL)"
        print_env
        return
    fi
    local port=$FIRST_PORT
    while port_in_use "$port"; do
        port=$((port + 1))
        [ "$port" -lt $((FIRST_PORT + 100)) ] || die "no free port in $FIRST_PORT..$port"
    done
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/ringcache-pg.XXXXXX")"
    chmod 0755 "$dir"
    [ "$(id -u)" -ne 0 ] || chown "$PG_USER" "$dir"
    log "initdb in $dir ($PG_BIN_DIR, user $PG_USER)"
    if ! as_pg "$PG_BIN_DIR/initdb" -D "$dir/data" -U ringcache --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        die "initdb failed"
    fi
    # Throwaway data: no fsync, unless RINGCACHE_PG_DURABLE=1 (benchmarks: PostgreSQL's
    # default durability, every commit fsynced). Socket in the temp dir, TCP on loopback.
    durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if [ "${RINGCACHE_PG_DURABLE:-0}" = 1 ]; then durability=""; fi
    if ! as_pg "$PG_BIN_DIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $durability -c max_connections=200" \
        start >&2; then
        cat "$dir/server.log" >&2 || true
        as_pg "$PG_BIN_DIR/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
        die "server did not start"
    fi
    as_pg "$PG_BIN_DIR/createdb" -h 127.0.0.1 -p "$port" -U ringcache ringcache
    mkdir -p "$(dirname "$STATE")"
    cat >"$STATE" <<EOF
RINGCACHE_TEST_PG_URL=postgres://ringcache@127.0.0.1:$port/ringcache
RINGCACHE_TEST_PG_DIR=$dir
PG_BIN_DIR=$PG_BIN_DIR
EOF
    log "running on 127.0.0.1:$port (data $dir/data, log $dir/server.log)"
    print_env
}

stop() {
    if [ ! -f "$STATE" ]; then
        log "not running (no $STATE)"
        return
    fi
    # shellcheck disable=SC1090
    . "$STATE"
    pick_user
    if [ -d "$RINGCACHE_TEST_PG_DIR/data" ]; then
        as_pg "$PG_BIN_DIR/pg_ctl" -D "$RINGCACHE_TEST_PG_DIR/data" -m immediate -w stop >&2 ||
            log "pg_ctl stop failed (already stopped?)"
    fi
    case "$RINGCACHE_TEST_PG_DIR" in
        */ringcache-pg.*) rm -rf "$RINGCACHE_TEST_PG_DIR" ;;
        *) log "not deleting unexpected directory $RINGCACHE_TEST_PG_DIR" ;;
    esac
    rm -f "$STATE"
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env)
        [ -f "$STATE" ] || die "not running (no $STATE)"
        print_env
        ;;
    *)
        echo "usage: $0 start|stop|env" >&2
        exit 2
        ;;
esac
