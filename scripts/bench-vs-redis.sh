#!/usr/bin/env bash
# Ringcache against Redis on this machine: one ringcached (`ringctl local up`) and one
# redis-server (no persistence) on 127.0.0.1, the same closed-loop workload from
# `ringctl bench --redis` against both, a Markdown table on stdout (progress on stderr).
#
# Run with: scripts/bench-vs-redis.sh [--duration 10s] [--warmup 2s]
#   options (or the environment variables in brackets):
#     --duration D     measured time per system and workload [DURATION, default 10s]
#     --warmup W       unmeasured time before it [WARMUP, default 2s]
#     --keyspace K     keys filled and asked for [KEYSPACE, default 1000000]
#     --value-size B   bytes per value [VALUE_SIZE, default 100]
#     --connections N  connections per system [CONNECTIONS, default 50]
#     --depths "1 16"  pipeline depths to run [DEPTHS, default "1 16"]
#   The build goes to $CARGO_TARGET_DIR when set (default target/).
#
# Fills both systems with every key once, then runs GET and SET at each depth, Ringcache
# twice: through the client library (`ringctl bench`, what an application pays; the
# "ratio" column) and on raw frames (`--driver lean`, driven as cheaply as the Redis
# side; the "raw frames" column, the node's own throughput against Redis'). With the
# defaults 4 workloads x 3 runs x 12 s, about 3 minutes after the build. Redis, the
# node and the load generator share this machine's CPUs: the numbers compare the two
# systems under the same conditions, they are not either system's capacity.
# Installs redis-server with apt-get when it is missing (root, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
KEYSPACE=${KEYSPACE:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
CONNECTIONS=${CONNECTIONS:-50}
DEPTHS=${DEPTHS:-1 16}
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --keyspace) KEYSPACE=$2; shift 2 ;;
        --value-size) VALUE_SIZE=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --depths) DEPTHS=$2; shift 2 ;;
        -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-vs-redis: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=lib/redis.sh
. scripts/lib/redis.sh
need_redis_server

started=$(date -u +'%Y-%m-%d %H:%M UTC')
echo "== building (release)" >&2
cargo build --release --bins --locked >&2
ringctl=${CARGO_TARGET_DIR:-target}/release/ringctl

work=$(mktemp -d)
cleanup() {
    stop_redis
    if [ -f "$work/local/node-1/pid" ]; then
        "$ringctl" local down --dir "$work/local" --force >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis "$work" bench-vs-redis
port=$redis_port

echo "== starting a ringcached node" >&2
"$ringctl" local up --detach --dir "$work/local" --memory 1GiB >&2
client=("$ringctl" -c "$work/local/client.toml")

load=(--connections "$CONNECTIONS" --keyspace "$KEYSPACE" --value-size "$VALUE_SIZE"
    --duration "$DURATION" --warmup "$WARMUP")
common=(--redis "127.0.0.1:$port" "${load[@]}")
fill=(--fill)
runs=()
for op in get set; do
    for depth in $DEPTHS; do
        echo "== $op, $CONNECTIONS connections x depth $depth" >&2
        out="$work/$op-$depth.json"
        "${client[@]}" --json bench "${common[@]}" "${fill[@]}" --op "$op" --depth "$depth" >"$out"
        fill=()
        "${client[@]}" --json bench "${load[@]}" --driver lean --op "$op" --depth "$depth" \
            | python3 -c 'import json, sys; print(json.load(sys.stdin)["systems"][0]["ops_per_s"])' \
            >"$out.lean"
        runs+=("$out")
    done
done

redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
python3 - "$started" "$redis_version" "${runs[@]}" <<'EOF'
import json, os, platform, subprocess, sys

started, redis_version, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
reports = [json.load(open(p)) for p in paths]

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

def us(v):
    if v < 1000:
        return f"{v} µs"
    return f"{v / 1000:.2f} ms"

def rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"

w = reports[0]["workload"]
print(f"Date: {started}; commit {rev()}; Redis {redis_version}")
print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, "
      f"load average {os.getloadavg()[0]:.2f} at the end.")
print(f"Note: Redis, ringcached and the load generator (ringctl bench) compete for the same "
      f"{os.cpu_count()} CPUs; the systems run one after the other.")
print(f"Workload: {w['keyspace']:,} keys (all filled), {w['value_size']}-byte values, "
      f"uniform keys, {w['connections']} connections, {w['duration_s']:g} s measured after "
      f"{w['warmup_s']:g} s warm-up per system, load generator on {w['threads']} threads.")
for f in reports[0]["fill"]:
    print(f"Fill {f['system']}: {f['keys']:,} keys in {f['seconds']:.1f} s "
          f"({f['keys_per_s']:,.0f} keys/s, {f['errors']} errors)")
print()
print("| workload | Ringcache ops/s | Redis ops/s | ratio | Ringcache p50 / p99 | Redis p50 / p99 | raw frames: ops/s (ratio) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
notes = []
for path, r in zip(paths, reports):
    lean = float(open(path + ".lean").read())
    w = r["workload"]
    s = {x["system"]: x for x in r["systems"]}
    rc, rd = s["ringcache"], s["redis"]
    ratio = r["ratio_to_redis"]
    name = f"{w['op'].upper()}, depth {w['depth']}"
    print(f"| {name} | {rc['ops_per_s']:,.0f} | {rd['ops_per_s']:,.0f} | "
          f"{ratio:.2f}x | {us(rc['latency_us']['p50'])} / {us(rc['latency_us']['p99'])} | "
          f"{us(rd['latency_us']['p50'])} / {us(rd['latency_us']['p99'])} | "
          f"{lean:,.0f} ({lean / rd['ops_per_s']:.2f}x) |")
    for x in (rc, rd):
        if x["errors"]:
            notes.append(f"{name}, {x['system']}: {x['errors']} errors, first: {x['first_error']}")
        if w["op"] == "get" and x["hit_ratio"] is not None and x["hit_ratio"] < 1.0:
            notes.append(f"{name}, {x['system']}: GET hit ratio {x['hit_ratio']:.3f}")
if notes:
    print()
    for n in notes:
        print(f"- {n}")
EOF
