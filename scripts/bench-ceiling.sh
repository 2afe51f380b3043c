#!/usr/bin/env bash
# What the transport allows, next to what the node does: for each workload, Redis, the
# node driven through the client library, the node driven on raw frames
# (`ringctl bench --driver lean`) and a QUIC echo server (`crates/ctl/examples/
# quic_echo.rs`: the client protocol over the node's TLS and transport settings,
# answering every GET with a fixed 100-byte value and nothing else to do), each as a
# ratio to Redis measured in the same pass. The echo row is the most a node could serve
# on this machine with QUIC from quinn and this load generator; the gap from it to the
# node is the node's own work.
#
# Run with: scripts/bench-ceiling.sh [--duration 5s] [--warmup 1s] [--passes 1]
#   --keyspace K (default 1000000), --connections N (default 50), --depths "1 16".
#   The build goes to $CARGO_TARGET_DIR when set (default target/).
# Installs redis-server with apt-get when it is missing (root, Debian). About
# 2 minutes per pass with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
PASSES=${PASSES:-1}
KEYSPACE=${KEYSPACE:-1000000}
CONNECTIONS=${CONNECTIONS:-50}
DEPTHS=${DEPTHS:-1 16}
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --passes) PASSES=$2; shift 2 ;;
        --keyspace) KEYSPACE=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --depths) DEPTHS=$2; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-ceiling: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=lib/redis.sh
. scripts/lib/redis.sh
need_redis_server

echo "== building (release)" >&2
cargo build --release --bins --locked >&2
cargo build --release --locked -p ringcache-ctl --example quic_echo >&2
bin=${CARGO_TARGET_DIR:-target}/release
ringctl=$bin/ringctl

work=$(mktemp -d)
pids=()
cleanup() {
    stop_redis
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -f "$work/local/node-1/pid" ]; then
        "$ringctl" local down --dir "$work/local" --force >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis "$work" bench-ceiling
rport=$redis_port

echo "== starting a ringcached node and the echo server" >&2
"$ringctl" local up --detach --dir "$work/local" --memory 1GiB >&2
eport=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/examples/quic_echo" "$work/local/certs" "127.0.0.1:$eport" 2>"$work/echo.log" &
pids+=($!)
sed "s/^endpoints = .*/endpoints = [\"127.0.0.1:$eport\"]/" "$work/local/client.toml" \
    >"$work/local/echo.toml"
for _ in $(seq 50); do grep -q listening "$work/echo.log" && break; sleep 0.1; done

node=("$ringctl" -c "$work/local/client.toml" --json bench)
echo_=("$ringctl" -c "$work/local/echo.toml" --json bench --driver lean)
keys=(--connections "$CONNECTIONS" --keyspace "$KEYSPACE")
common=("${keys[@]}" --duration "$DURATION" --warmup "$WARMUP")
echo "== filling both" >&2
"$ringctl" -c "$work/local/client.toml" bench --fill --redis "127.0.0.1:$rport" \
    "${keys[@]}" --duration 1s --warmup 0s >/dev/null
results=()
for pass in $(seq "$PASSES"); do
    for op in get set; do
        for depth in $DEPTHS; do
            tag="$pass-$op-$depth"
            echo "== pass $pass: $op, $CONNECTIONS connections x depth $depth" >&2
            "${echo_[@]}" "${common[@]}" --op "$op" --depth "$depth" >"$work/$tag-echo.json"
            "${node[@]}" --driver lean "${common[@]}" --op "$op" --depth "$depth" \
                >"$work/$tag-lean.json"
            "${node[@]}" --redis "127.0.0.1:$rport" "${common[@]}" --op "$op" \
                --depth "$depth" >"$work/$tag-client.json"
            results+=("$work/$tag")
        done
    done
done

python3 - "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "${results[@]}" <<'EOF'
import json, os, sys
rev, tags = sys.argv[1], sys.argv[2:]
print(f"Commit {rev}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the end.")
print()
print("| pass | workload | Redis ops/s | node, client library | node, lean driver | QUIC echo, lean driver |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
notes = []
for t in tags:
    runs = {k: json.load(open(f"{t}-{k}.json")) for k in ("client", "lean", "echo")}
    sys_ = lambda r, name: next(s for s in r["systems"] if s["system"] == name)
    redis = sys_(runs["client"], "redis")
    base = redis["ops_per_s"]
    cells = []
    for k in ("client", "lean", "echo"):
        s = sys_(runs[k], "ringcache")
        cells.append(f"{s['ops_per_s']:,.0f} ({s['ops_per_s'] / base:.2f}x)")
        if s["errors"]:
            notes.append(f"{os.path.basename(t)} {k}: {s['errors']} errors, first: {s['first_error']}")
    w = runs["client"]["workload"]
    pass_ = os.path.basename(t).split("-")[0]
    print(f"| {pass_} | {w['op'].upper()}, depth {w['depth']} | {base:,.0f} | " + " | ".join(cells) + " |")
for n in notes:
    print(f"- {n}")
EOF
