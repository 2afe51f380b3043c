#!/usr/bin/env bash
# The caching strategies against a real PostgreSQL on this machine: SET throughput with
# write-behind versus write-through at 50 connections, the write-behind coalescing ratio
# under a Zipf workload, and read-through hit speed against a plain namespace's GET.
# Prints a Markdown report on stdout (progress on stderr); docs/benchmarks/strategies.md
# records a run.
#
# Run with: scripts/bench-strategies.sh [--duration 10s] [--warmup 2s]
#   --duration D     measured time per run [DURATION, default 10s]
#   --warmup W       unmeasured time before it [WARMUP, default 2s]
#   --connections N  connections [CONNECTIONS, default 50]
#   --keyspace K     keys [KEYSPACE, default 100000]
#   --depths "1 16"  pipeline depths of the SET comparison [DEPTHS, default "1 16"]
#   --rounds R       alternating rounds of each comparison; the report takes medians
#                    [ROUNDS, default 3]
#
# Starts a throwaway PostgreSQL with its default durability (every commit fsynced; the
# test server's no-fsync settings would flatter write-through) through
# scripts/pg-test-server.sh, installing Debian's postgresql when missing, unless
# BENCH_PG_URL names a server to use; and one ringcached (`ringctl local up`); creates the
# namespaces with `ringctl ns create`. Everything shares this machine's CPUs and disk, so
# the numbers compare strategies under the same conditions.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-50}
KEYSPACE=${KEYSPACE:-100000}
DEPTHS=${DEPTHS:-1 16}
ROUNDS=${ROUNDS:-3}
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --keyspace) KEYSPACE=$2; shift 2 ;;
        --depths) DEPTHS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-strategies: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

started=$(date -u +'%Y-%m-%d %H:%M UTC')
work=$(mktemp -d)
own_pg=
cleanup() {
    if [ -f "$work/local/node-1/pid" ]; then
        target/release/ringctl local down --dir "$work/local" --force >/dev/null 2>&1 || true
    fi
    if [ -n "$own_pg" ]; then
        RINGCACHE_PG_STATE="$work/pg.env" scripts/pg-test-server.sh stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${BENCH_PG_URL:-}" ]; then
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "== installing postgresql" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    echo "== starting PostgreSQL" >&2
    eval "$(RINGCACHE_PG_DURABLE=1 RINGCACHE_PG_PORT=56432 RINGCACHE_PG_STATE="$work/pg.env" scripts/pg-test-server.sh start)"
    own_pg=1
    BENCH_PG_URL=$RINGCACHE_TEST_PG_URL
fi
pg_url=$BENCH_PG_URL

echo "== building (release)" >&2
cargo build --release --bins --locked >&2
ringctl=target/release/ringctl
echo "== starting a ringcached node" >&2
"$ringctl" local up --detach --dir "$work/local" --memory 1GiB >&2
client=("$ringctl" -c "$work/local/client.toml")

run_id=$$
ns() { # name read write [extra --set ...]
    local name=$1 read=$2 write=$3
    shift 3
    "${client[@]}" ns create "$name" --memory 1GiB --read "$read" --write "$write" \
        --set store.kind=postgres --set "store.url=$pg_url" \
        --set "store.table=bench_${name}_${run_id}" --set store.pool_size=16 "$@" >/dev/null
}
ns wt cache-aside write-through
ns wb cache-aside write-behind --set write_behind.queue_capacity=20000000
ns wbwal cache-aside write-behind --set write_behind.queue_capacity=20000000 \
    --set write_behind.wal=true --set write_behind.fsync=always
ns wbzipf cache-aside write-behind --set write_behind.queue_capacity=20000000
ns rt read-through cache-only

common=(--connections "$CONNECTIONS" --keyspace "$KEYSPACE" --value-size 100
    --duration "$DURATION" --warmup "$WARMUP")
bench() { # out ns args...
    local out=$1 ns=$2
    shift 2
    echo "== $ns: $*" >&2
    "${client[@]}" --json --ns "$ns" bench "${common[@]}" "$@" >"$work/$out.json"
}
flush() { # ns -> json status after the queue is written
    echo "== flushing $1" >&2
    local t0 t1
    t0=$(date +%s.%N)
    "${client[@]}" --json writebehind flush "$1" --wait 30m >"$work/flush-$1.json"
    t1=$(date +%s.%N)
    echo "$t0 $t1" >"$work/flush-$1.time"
}

# The same namespaces and keys in every round; rounds alternate the systems so drift in
# the machine's load hits both sides alike.
for round in $(seq "$ROUNDS"); do
    for depth in $DEPTHS; do
        bench "set-wt-d$depth-r$round" wt --op set --depth "$depth"
        bench "set-wb-d$depth-r$round" wb --op set --depth "$depth"
        bench "set-wbwal-d$depth-r$round" wbwal --op set --depth "$depth"
    done
    fill=()
    if [ "$round" = 1 ]; then fill=(--fill); fi
    bench "get-default-r$round" default --op get "${fill[@]}"
    bench "get-rt-r$round" rt --op get "${fill[@]}"
done
flush wb
flush wbwal
bench set-wbzipf wbzipf --op set --dist zipf
flush wbzipf

ROUNDS=$ROUNDS DEPTHS=$DEPTHS python3 - "$work" "$started" <<'EOF'
import json, os, subprocess, sys

work, started = sys.argv[1], sys.argv[2]
def load(name):
    return json.load(open(os.path.join(work, name + ".json")))
def system(r):
    return r["systems"][0]
def status(ns):
    s = load("flush-" + ns)
    return (s.get("namespaces") or s.get("status") or s)[0] if isinstance(s, dict) else s[0]
def flush_secs(ns):
    t0, t1 = open(os.path.join(work, f"flush-{ns}.time")).read().split()
    return float(t1) - float(t0)
def pg_version():
    try:
        out = subprocess.run(["sh", "-c", "ls -d /usr/lib/postgresql/*/bin | sort -t/ -k5 -rn | head -1"], capture_output=True, text=True).stdout.strip()
        return subprocess.run([out + "/postgres", "--version"], capture_output=True, text=True).stdout.split()[-1]
    except Exception:
        return "(version unknown)"
def rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"

from statistics import median
rounds = int(os.environ.get("ROUNDS", "3"))
depths = os.environ.get("DEPTHS", "1 16").split()
def run(name):
    return system(load(name))
w = load("set-wt-d1-r1")["workload"] if "1" in depths else load(f"set-wt-d{depths[0]}-r1")["workload"]
print(f"Date: {started}; commit {rev()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end.")
print(f"Workload: {w['connections']} connections, {w['keyspace']:,} keys, {w['value_size']}-byte values, "
      f"{w['duration_s']:g} s measured after {w['warmup_s']:g} s warm-up per run, {rounds} alternating rounds "
      f"(medians below); PostgreSQL {pg_version()} on the same machine with its default durability "
      f"(pool of 16 per namespace).")
print()
print("| SET | depth | ops/s (median) | p50 | p99 | errors | ratio to write-through |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for depth in depths:
    base = None
    for ns, label in [("wt", "write-through"), ("wb", "write-behind"), ("wbwal", "write-behind + WAL (fsync always)")]:
        rs = [run(f"set-{ns}-d{depth}-r{r}") for r in range(1, rounds + 1)]
        ops = median(r["ops_per_s"] for r in rs)
        p50 = median(r["latency_us"]["p50"] for r in rs)
        p99 = median(r["latency_us"]["p99"] for r in rs)
        errors = sum(r["errors"] for r in rs)
        if base is None:
            base = ops
        print(f"| {label} | {depth} | {ops:,.0f} | {p50:,.0f} µs | {p99:,.0f} µs | {errors} | {ops / base:.1f}x |")
print()
ratios = [run(f"get-rt-r{r}")["ops_per_s"] / run(f"get-default-r{r}")["ops_per_s"] for r in range(1, rounds + 1)]
g = median(run(f"get-default-r{r}")["ops_per_s"] for r in range(1, rounds + 1))
rt = median(run(f"get-rt-r{r}")["ops_per_s"] for r in range(1, rounds + 1))
print(f"- Read-through hits / plain GETs (depth 1, every key cached): per-round ratios "
      f"{', '.join(f'{x:.2f}' for x in ratios)}; median **{median(ratios):.2f}x** ({rt:,.0f} against {g:,.0f} ops/s).")
for ns in ["wb", "wbwal", "wbzipf"]:
    s = status(ns)
    written = s["flushed"] - s["coalesced"]
    print(f"- {ns}: {s['enqueued']:,} writes queued, {s['flushed']:,} flushed, {s['coalesced']:,} coalesced, "
          f"{written:,} row writes; after the last run the queue drained in {flush_secs(ns):.1f} s "
          f"(depth {s['depth']}, dead letters {s['dead_letter_count']}).")
z = status("wbzipf")
zr = run("set-wbzipf")
print(f"- Coalescing under Zipf (alpha 0.99 over {w['keyspace']:,} keys, depth 1, {zr['ops_per_s']:,.0f} SET/s, "
      f"batch_delay 100ms): **{z['coalesced'] / max(z['enqueued'], 1):.1%}** of writes merged into a later write "
      f"to the same key before reaching the database ({z['enqueued'] / max(z['flushed'] - z['coalesced'], 1):.2f} "
      f"writes per row write).")
EOF
