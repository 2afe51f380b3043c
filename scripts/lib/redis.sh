# Sourced by the benchmark scripts: a throwaway redis-server on loopback.
#
#   need_redis_server            install redis-server with apt-get if missing (root, Debian)
#   start_redis DIR NAME         start one on a free port, no persistence, files in DIR;
#                                sets redis_port and redis_pid, waits until it answers
#                                PING, exits naming NAME (the calling script) if it died
#   stop_redis                   stop it (for the caller's cleanup; safe to call twice)

need_redis_server() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "== installing redis-server" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
}

redis_pid=
redis_port=

start_redis() {
    local dir=$1 name=$2
    # A free TCP port on loopback (a race with another process is possible but
    # harmless: redis-server would fail to start and the wait below would say so).
    redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile "$dir/redis.log" &
    redis_pid=$!
    for _ in $(seq 100); do
        if redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
            return 0
        fi
        if ! kill -0 "$redis_pid" 2>/dev/null; then
            echo "$name: redis-server exited: $(tail -n 3 "$dir/redis.log")" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name: redis-server did not answer PING within 10 s" >&2
    exit 1
}

stop_redis() {
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
}
