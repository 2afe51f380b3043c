#!/usr/bin/env python3
"""Deterministic synthetic traces for the eviction-engine benchmarks.

Every trace is written in libCacheSim's *oracleGeneral* binary format so that
the very same bytes feed both libCacheSim (the reference) and our
`ringcache-sim`.  A record is 24 packed little-endian bytes:

    u32 clock_time | u64 obj_id | u32 obj_size | i64 next_access_vtime

`next_access_vtime` follows libCacheSim's traceConv (traceConvOracleGeneral.cpp):
it is the *1-based* position of the next request to the same object, i.e.
`j + 1` when the next request for the object is at 0-based index `j`, and -1 when
the object is never requested again.  (libCacheSim's reader maps -1 to
"infinitely far".)  Verified against `libcachesim.Util.convert_to_oracleGeneral`.

All randomness comes from fixed seeds, so re-running produces byte-identical
files.  `--quick` scales every workload down ~10x for smoke runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

RECORD = np.dtype(
    [
        ("clock_time", "<u4"),
        ("obj_id", "<u8"),
        ("obj_size", "<u4"),
        ("next_access_vtime", "<i8"),
    ]
)
assert RECORD.itemsize == 24

# Synthetic wall clock: timestamps advance one second per this many requests.
# Only TTL-style policies look at time; a steady rate keeps them meaningful.
REQS_PER_SEC = 1000

FIXED_OBJ_SIZE = 100

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "traces")


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


def zipf_cdf(n: int, alpha: float) -> np.ndarray:
    """CDF of a bounded Zipf over ranks 0..n-1 (numpy's zipf needs alpha > 1
    and is unbounded; we need alpha < 1 and a fixed universe)."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return cdf


def zipf_ranks(rng: np.random.Generator, n: int, alpha: float, count: int) -> np.ndarray:
    """`count` samples of 0-based popularity ranks (0 = hottest)."""
    ranks = np.searchsorted(zipf_cdf(n, alpha), rng.random(count), side="right")
    # Guard against the last cdf value being 1 - eps after normalisation.
    return np.minimum(ranks, n - 1).astype(np.int64)


def scramble_ids(rng: np.random.Generator, dense_ids: np.ndarray) -> np.ndarray:
    """Map dense ids 0..K-1 onto a random permutation of 1..K.

    Popularity rank and sequential position must not leak into the key value:
    a cache that shards or hashes weakly would otherwise get an unrealistically
    easy (or hard) input.  Id 0 is avoided because some code uses it as a
    sentinel."""
    k = int(dense_ids.max()) + 1
    perm = rng.permutation(k).astype(np.uint64) + np.uint64(1)
    return perm[dense_ids]


def next_access_vtime(ids: np.ndarray) -> np.ndarray:
    """libCacheSim's next_access_vtime: 1-based index of the next request for
    the same id, -1 if none.  A stable sort groups each id's requests in time
    order, so consecutive equal ids in sorted order are (request, next request)."""
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    same = sorted_ids[1:] == sorted_ids[:-1]
    nxt = np.full(n, -1, dtype=np.int64)
    nxt[order[:-1][same]] = order[1:][same] + 1
    return nxt


@dataclass
class Trace:
    name: str
    ids: np.ndarray  # uint64 object ids, one per request
    sizes: np.ndarray  # uint32 object size per request (fixed per id)
    params: dict


def write_oracle_general(trace: Trace, path: str) -> None:
    n = len(trace.ids)
    rec = np.empty(n, dtype=RECORD)
    rec["clock_time"] = np.arange(n, dtype=np.int64) // REQS_PER_SEC
    rec["obj_id"] = trace.ids
    rec["obj_size"] = trace.sizes
    rec["next_access_vtime"] = next_access_vtime(trace.ids)
    tmp = path + ".tmp"
    rec.tofile(tmp)
    os.replace(tmp, path)  # never leave a half-written trace behind


def write_csv(trace: Trace, path: str) -> None:
    """`key,size` per line, no header."""
    tmp = path + ".tmp"
    np.savetxt(tmp, np.stack([trace.ids, trace.sizes.astype(np.uint64)], axis=1), fmt="%d", delimiter=",")
    os.replace(tmp, path)


def footprint_stats(trace: Trace) -> dict:
    """Footprint as both simulators define it: distinct ids, and the sum of the
    first-seen size of each distinct id."""
    uniq, first, counts = np.unique(trace.ids, return_index=True, return_counts=True)
    n_req = len(trace.ids)
    one_hit = int(np.sum(counts == 1))
    return {
        "requests": n_req,
        "objects": int(len(uniq)),
        "bytes": int(trace.sizes[first].astype(np.int64).sum()),
        "one_hit_wonders": one_hit,
        "compulsory_miss_ratio": len(uniq) / n_req,
    }


# --------------------------------------------------------------------------
# Workloads.  `s` is the scale factor (1.0 full, 0.1 for --quick).
# --------------------------------------------------------------------------


def gen_zipf(alpha: float, seed: int, universe_full: int = 1_000_000) -> Callable[[float], Trace]:
    def make(s: float) -> Trace:
        rng = np.random.default_rng(seed)
        universe = int(universe_full * s)
        n_req = int(3_000_000 * s)
        ranks = zipf_ranks(rng, universe, alpha, n_req)
        ids = scramble_ids(rng, ranks)
        sizes = np.full(n_req, FIXED_OBJ_SIZE, dtype=np.uint32)
        return Trace(f"zipf{alpha:.1f}", ids, sizes,
                     {"alpha": alpha, "universe": universe, "requests": n_req, "seed": seed})

    return make


def gen_scan(s: float) -> Trace:
    """Zipf 1.0 interrupted by periodic bursts of one-hit wonders (think a
    backup or analytics job walking the keyspace): after every `period` zipf
    requests comes a burst of `scan_len` fresh, never-repeated ids (~9% of all
    requests).  A burst is longer than the 0.1% cache (a full flush for LRU)
    and, at larger sizes, the bursts keep a sizeable share of an LRU/FIFO cache
    full of dead entries, while a scan-resistant policy confines them to a
    small probation area.  Tuned so the libCacheSim scan-resistant policies
    beat LRU by ~15-20% at every size (longer bursts mostly add compulsory
    misses, which every policy pays, and dilute the difference)."""
    rng = np.random.default_rng(1005)
    universe = int(100_000 * s)
    n_zipf = int(3_000_000 * s)
    period = int(20_000 * s)
    scan_len = int(2_000 * s)
    ranks = zipf_ranks(rng, universe, 1.0, n_zipf)
    n_scans = n_zipf // period
    parts = []
    next_fresh = universe  # scan ids never collide with zipf ids nor repeat
    for i in range(n_scans):
        parts.append(ranks[i * period:(i + 1) * period])
        parts.append(np.arange(next_fresh, next_fresh + scan_len, dtype=np.int64))
        next_fresh += scan_len
    parts.append(ranks[n_scans * period:])
    dense = np.concatenate(parts)
    ids = scramble_ids(rng, dense)
    sizes = np.full(len(ids), FIXED_OBJ_SIZE, dtype=np.uint32)
    return Trace("scan", ids, sizes, {
        "alpha": 1.0, "universe": universe, "zipf_requests": n_zipf,
        "period": period, "scan_len": scan_len, "scans": n_scans, "seed": 1005})


def gen_loop(s: float) -> Trace:
    """Cyclic sequential scan over a key range larger than every benchmarked
    cache: LRU and FIFO miss on every request, MRU-like / frequency-aware
    policies keep part of the loop.  1% of positions are replaced with
    uniformly random keys from the loop so it is not perfectly periodic."""
    rng = np.random.default_rng(1006)
    loop_len = int(250_000 * s)
    passes = 10
    dense = np.tile(np.arange(loop_len, dtype=np.int64), passes)
    noise = rng.random(len(dense)) < 0.01
    dense[noise] = rng.integers(0, loop_len, int(noise.sum()))
    ids = scramble_ids(rng, dense)
    sizes = np.full(len(ids), FIXED_OBJ_SIZE, dtype=np.uint32)
    return Trace("loop", ids, sizes, {"loop_len": loop_len, "passes": passes,
                                       "noise_fraction": 0.01, "seed": 1006})


def gen_moving(s: float) -> Trace:
    """Zipf 1.0 popularity over a sliding window of ids.  New ids enter the
    window at the hot end and cool down as the window slides past them, so
    each id has its burst of popularity and then goes cold for good (news
    feeds, sessions).  An LFU without aging keeps the has-beens with large
    counts and starves the newcomers: libCacheSim's (in-cache) LFU misses
    ~1.45x / 2x / 2.9x as often as LRU at the 0.1% / 1% / 10% sizes.  Faster
    drift widens that gap a lot at big caches (250k drift over a 50k window:
    1.5x / 2.4x / 5.7x); a slow drift keeps the benchmark about aging rather
    than about an LFU that never hits at all."""
    rng = np.random.default_rng(1007)
    window = int(200_000 * s)
    n_req = int(3_000_000 * s)
    drift_total = int(50_000 * s)  # ids that enter the window over the trace
    ranks = zipf_ranks(rng, window, 1.0, n_req)
    base = (np.arange(n_req, dtype=np.int64) * drift_total) // n_req
    # Rank 0 is the newest id in the window (base + window - 1).
    dense = base + (window - 1 - ranks)
    ids = scramble_ids(rng, dense)
    sizes = np.full(len(ids), FIXED_OBJ_SIZE, dtype=np.uint32)
    return Trace("moving", ids, sizes, {"alpha": 1.0, "window": window, "requests": n_req,
                                         "drift_total": drift_total, "seed": 1007})


def gen_varsize(s: float) -> Trace:
    """Zipf 0.9 with a lognormal size per object (64 B .. 1 MiB, median ~4 KiB),
    for bytes mode.  Size is drawn independently of popularity and is fixed
    per id, so no request ever changes an object's size."""
    rng = np.random.default_rng(1008)
    universe = int(500_000 * s)
    n_req = int(3_000_000 * s)
    obj_sizes = np.clip(np.rint(rng.lognormal(mean=np.log(4096), sigma=1.5, size=universe)),
                        64, 1 << 20).astype(np.uint32)
    ranks = zipf_ranks(rng, universe, 0.9, n_req)
    ids = scramble_ids(rng, ranks)
    sizes = obj_sizes[ranks]
    return Trace("varsize", ids, sizes, {"alpha": 0.9, "universe": universe, "requests": n_req,
                                          "size_dist": "lognormal(ln 4096, 1.5) clipped to [64, 1MiB]",
                                          "seed": 1008})


def gen_csv_small(s: float) -> Trace:
    """A small trace written both as csv and oracleGeneral, so a csv reader can
    be checked against the binary one on identical requests."""
    rng = np.random.default_rng(1009)
    universe = int(20_000 * s) or 1
    n_req = int(200_000 * s)
    ranks = zipf_ranks(rng, universe, 1.0, n_req)
    ids = scramble_ids(rng, ranks)
    sizes = np.full(n_req, FIXED_OBJ_SIZE, dtype=np.uint32)
    return Trace("small-zipf1.0", ids, sizes, {"alpha": 1.0, "universe": universe,
                                                "requests": n_req, "seed": 1009})


# Main benchmark traces (run by run_libcachesim.py / run.sh).
WORKLOADS: dict[str, Callable[[float], Trace]] = {
    "zipf0.7": gen_zipf(0.7, 1001),
    "zipf0.8": gen_zipf(0.8, 1002),
    "zipf1.0": gen_zipf(1.0, 1003),
    # A steep Zipf leaves most of a small universe untouched; the larger
    # universe keeps its footprint above 200k distinct ids like the others.
    "zipf1.2": gen_zipf(1.2, 1004, universe_full=5_000_000),
    "scan": gen_scan,
    "loop": gen_loop,
    "moving": gen_moving,
    "varsize": gen_varsize,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help=f"output directory (default {DEFAULT_OUT}, or traces/quick with --quick)")
    ap.add_argument("--quick", action="store_true", help="~10x smaller traces for smoke runs")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(WORKLOADS))
    ap.add_argument("--no-csv", action="store_true", help="skip the small csv/oracleGeneral twin trace")
    ap.add_argument("--force", action="store_true", help="regenerate traces that already exist")
    args = ap.parse_args()

    scale = 0.1 if args.quick else 1.0
    out = args.out or (os.path.join(DEFAULT_OUT, "quick") if args.quick else DEFAULT_OUT)
    os.makedirs(out, exist_ok=True)
    wanted = [w for w in args.only.split(",") if w] or list(WORKLOADS)
    for w in wanted:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}")

    manifest_path = os.path.join(out, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)

    jobs = [(w, WORKLOADS[w], False) for w in wanted]
    if not args.no_csv and not args.only:
        jobs.append(("small-zipf1.0", gen_csv_small, True))

    print(f"{'trace':<16} {'requests':>10} {'objects':>9} {'bytes':>15} {'1-hit':>9} {'cold mr':>8} {'secs':>6}")
    for name, make, with_csv in jobs:
        path = os.path.join(out, f"{name}.oracleGeneral")
        csv_path = os.path.join(out, f"{name}.csv")
        if not args.force and os.path.exists(path) and name in manifest and (not with_csv or os.path.exists(csv_path)):
            st = manifest[name]["stats"]
            secs = "cached"
        else:
            t0 = time.time()
            tr = make(scale)
            assert tr.name == name, (tr.name, name)
            write_oracle_general(tr, path)
            if with_csv:
                write_csv(tr, csv_path)
            st = footprint_stats(tr)
            manifest[name] = {"file": os.path.basename(path), "params": tr.params, "stats": st,
                              "csv": os.path.basename(csv_path) if with_csv else None}
            secs = f"{time.time() - t0:.1f}"
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=2, sort_keys=True)
        print(f"{name:<16} {st['requests']:>10} {st['objects']:>9} {st['bytes']:>15} "
              f"{st['one_hit_wonders']:>9} {st['compulsory_miss_ratio']:>8.4f} {secs:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
