#!/usr/bin/env python3
"""Reference miss ratios from libCacheSim (PyPI package `libcachesim`).

For every trace x policy x cache size this runs libCacheSim's C simulator
(`CacheBase.process_trace`, which loops in C over a C trace reader) and writes
rows in the schema shared with `ringcache-sim --json`:

    {"trace", "policy", "mode", "capacity", "capacity_fraction", "requests",
     "hits", "misses", "miss_ratio", "byte_miss_ratio", "requests_per_sec"}

Policy names are prefixed `lcs-` so they never collide with ours.

Modes:
  objects  every object weighs 1 (reader `ignore_obj_size=True`, which makes
           libCacheSim see obj_size=1); footprint = distinct ids.
  bytes    weight = object size; footprint = sum of first-seen sizes of the
           distinct ids.  Per-object metadata overhead is 0
           (`consider_obj_metadata=False`).
capacity = max(1, floor(fraction * footprint)), computed exactly like
ringcache-sim (f64 multiply, then floor).

`varsize*` traces run in bytes mode, everything else in objects mode.

The libCacheSim parameters actually used (and the cache names libCacheSim
reports, which encode them) go to a sidecar `<out>.meta.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_traces import RECORD, WORKLOADS  # noqa: E402  (same directory)

DEFAULT_FRACTIONS = (0.001, 0.01, 0.1)

# name -> (libcachesim class name, explicit parameters).  The parameters are the
# libcachesim defaults, spelled out so the meta file records what ran and a
# future package upgrade cannot silently change them.
POLICIES: dict[str, tuple[str, dict]] = {
    "lru": ("LRU", {}),
    "fifo": ("FIFO", {}),
    # libCacheSim's S3FIFO.c defaults: small FIFO = 10% of capacity, ghost =
    # 90% (counted in the same unit as capacity), promote small -> main when
    # the object was hit >= 2 times while in small; main is a 2-bit CLOCK.
    "s3fifo": ("S3FIFO", {"small_size_ratio": 0.1, "ghost_size_ratio": 0.9, "move_to_main_threshold": 2}),
    "lirs": ("LIRS", {}),
    "arc": ("ARC", {}),
    # libCacheSim's WTinyLFU.c defaults: 1% window LRU, SLRU main (segments
    # 1:4), count-min admission sketch sized to the main cache, no doorkeeper.
    "wtinylfu": ("WTinyLFU", {"main_cache": "SLRU", "window_size": 0.01}),
    "sieve": ("Sieve", {}),
}
DEFAULT_POLICIES = tuple(POLICIES)

# Not part of the default set; handy for exploring a workload
# (e.g. `--policies lru,lfu` on `moving`, or `belady` as a lower bound).
EXTRA_POLICIES: dict[str, tuple[str, dict]] = {
    "lfu": ("LFU", {}),
    "lfuda": ("LFUDA", {}),
    "clock": ("Clock", {"init_freq": 0, "n_bit_counter": 1}),
    "random": ("Random", {}),
    "twoq": ("TwoQ", {"a_in_size_ratio": 0.25, "a_out_size_ratio": 0.5}),
    "slru": ("SLRU", {}),
    "belady": ("Belady", {}),  # optimal; uses the trace's next_access_vtime
}
ALL_POLICIES = {**POLICIES, **EXTRA_POLICIES}

# Smallest objects-mode capacity at which libCacheSim's implementation is
# meaningful.  S3FIFO aborts the whole process when its small FIFO
# (floor(10% of capacity)) is 0, and never admits into a small FIFO of size 1;
# WTinyLFU refuses every object larger than its window (floor(1% of capacity)),
# so below 100 objects it reports a bogus 100% miss ratio.  Such points are
# skipped (the report then shows n/a); they only occur with tiny --quick traces.
MIN_OBJECTS_CAPACITY = {"s3fifo": 20, "wtinylfu": 100}


def mode_for(trace_name: str) -> str:
    return "bytes" if trace_name.startswith("varsize") else "objects"


def trace_name(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".oracleGeneral", ".csv"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def load_ids_sizes(path: str) -> tuple[np.ndarray, np.ndarray]:
    if path.endswith(".csv"):
        a = np.loadtxt(path, delimiter=",", dtype=np.uint64, ndmin=2)
        return a[:, 0], a[:, 1]
    rec = np.fromfile(path, dtype=RECORD)
    return rec["obj_id"], rec["obj_size"]


@dataclass
class Footprint:
    requests: int
    objects: int
    bytes: int


def footprint(path: str) -> Footprint:
    ids, sizes = load_ids_sizes(path)
    _, first = np.unique(ids, return_index=True)
    return Footprint(len(ids), len(first), int(sizes[first].astype(np.int64).sum()))


def capacity_for(fraction: float, fp: Footprint, mode: str) -> int:
    total = fp.bytes if mode == "bytes" else fp.objects
    return max(1, math.floor(fraction * total))


def open_reader(path: str, mode: str):
    import libcachesim as lcs

    params = lcs.ReaderInitParam(ignore_obj_size=(mode == "objects"))
    if path.endswith(".csv"):
        # `key,size` without header; fields are 1-based in libCacheSim.
        params.obj_id_field = 1
        params.obj_size_field = 2
        params.has_header = False
        params.has_header_set = True
        params.delimiter = ","
        return lcs.TraceReader(path, lcs.TraceType.CSV_TRACE, params)
    return lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE, params)


def quiet_worker(log_path: str) -> None:
    """libCacheSim's C code logs INFO/WARN lines (e.g. "object size too large")
    straight to fd 2; send them to a log file instead of the console.  Worker
    exceptions still reach the parent through the pool."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def run_one(job: dict) -> dict:
    """Runs in a worker process: one trace x policy x capacity."""
    import libcachesim as lcs

    cls_name, kwargs = ALL_POLICIES[job["policy"]]
    reader = open_reader(job["path"], job["mode"])
    cache = getattr(lcs, cls_name)(job["capacity"], consider_obj_metadata=False, **kwargs)
    t0 = time.perf_counter()
    miss_ratio, byte_miss_ratio = cache.process_trace(reader)
    elapsed = time.perf_counter() - t0
    n = job["requests"]
    # process_trace only returns ratios (n_miss / n_req as a double); n is far
    # below 2^53, so rounding recovers the exact integer count.
    misses = int(round(miss_ratio * n))
    return {
        "trace": job["trace"],
        "policy": "lcs-" + job["policy"],
        "mode": job["mode"],
        "capacity": job["capacity"],
        "capacity_fraction": job["capacity_fraction"],
        "requests": n,
        "hits": n - misses,
        "misses": misses,
        "miss_ratio": misses / n if n else 0.0,
        "byte_miss_ratio": float(byte_miss_ratio),
        "requests_per_sec": n / elapsed if elapsed > 0 else 0.0,
        "_cache_name": cache.cache_name,
        "_secs": elapsed,
    }


def sanity_check(rows: list[dict]) -> list[str]:
    """Problems that indicate a broken setup rather than an interesting result."""
    problems = []
    by_curve: dict[tuple, list[dict]] = {}
    for r in rows:
        by_curve.setdefault((r["trace"], r["policy"], r["mode"]), []).append(r)
    for (tr, pol, mode), curve in sorted(by_curve.items()):
        curve.sort(key=lambda r: r["capacity"])
        mrs = [r["miss_ratio"] for r in curve]
        # LRU is a stack algorithm: its miss ratio can never rise with size.
        # Others (FIFO: Belady's anomaly; adaptive ones) may wiggle slightly.
        tol = 0.0 if pol in ("lcs-lru", "lcs-belady") else 0.01
        for a, b in zip(mrs, mrs[1:]):
            if b > a + tol:
                problems.append(f"{tr}/{pol}/{mode}: miss ratio rises with cache size {mrs}")
                break
        for r in curve:
            if r["hits"] + r["misses"] != r["requests"] or not 0.0 <= r["miss_ratio"] <= 1.0:
                problems.append(f"{tr}/{pol}: inconsistent counts {r}")
    # Optimal must beat everyone at each point (validates next_access_vtime).
    opt = {(r["trace"], r["mode"], r["capacity"]): r["miss_ratio"] for r in rows if r["policy"] == "lcs-belady"}
    for r in rows:
        k = (r["trace"], r["mode"], r["capacity"])
        if k in opt and r["miss_ratio"] < opt[k] - 1e-9:
            problems.append(f"{r['trace']}/{r['policy']}@{r['capacity']}: beats Belady ({r['miss_ratio']} < {opt[k]})")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="*", help="trace files (.oracleGeneral or key,size .csv); "
                    "default: every benchmark workload in --traces-dir")
    ap.add_argument("--quick", action="store_true", help="use traces/quick and out/quick")
    ap.add_argument("--traces-dir", default=None)
    ap.add_argument("--out", default=None, help="JSON output (default out/libcachesim.json)")
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                    help="comma list from: " + ",".join(ALL_POLICIES))
    ap.add_argument("--capacity", default=",".join(map(str, DEFAULT_FRACTIONS)),
                    help="comma list of footprint fractions")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    traces_dir = args.traces_dir or os.path.join(HERE, "traces", "quick" if args.quick else "")
    out = args.out or os.path.join(HERE, "out", "quick" if args.quick else "", "libcachesim.json")
    policies = [p for p in args.policies.split(",") if p]
    for p in policies:
        if p not in ALL_POLICIES:
            ap.error(f"unknown policy {p!r}")
    fractions = [float(x) for x in args.capacity.split(",") if x]

    paths = args.traces or [os.path.join(traces_dir, f"{w}.oracleGeneral") for w in WORKLOADS]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        print("missing traces (run gen_traces.py first): " + ", ".join(missing), file=sys.stderr)
        return 2

    import libcachesim as lcs

    t_start = time.time()
    jobs, footprints, skipped = [], {}, []
    for path in paths:
        name, mode = trace_name(path), mode_for(trace_name(path))
        fp = footprint(path)
        footprints[name] = {"mode": mode, **fp.__dict__}
        for frac in fractions:
            cap = capacity_for(frac, fp, mode)
            for pol in policies:
                if mode == "objects" and cap < MIN_OBJECTS_CAPACITY.get(pol, 1):
                    skipped.append(f"{name}/{pol}@{cap}")
                    continue
                jobs.append({"path": path, "trace": name, "mode": mode, "policy": pol,
                             "capacity": cap, "capacity_fraction": frac, "requests": fp.requests})

    if skipped:
        print(f"skipped (capacity below libCacheSim's minimum for the policy): {', '.join(skipped)}",
              file=sys.stderr)
    # Largest caches first: they are the slowest jobs, and starting them early
    # keeps the pool from ending on a lone straggler.
    jobs.sort(key=lambda j: -j["capacity_fraction"])
    rows = []
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    log_path = os.path.splitext(out)[0] + ".log"
    open(log_path, "w").close()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=quiet_worker,
                             initargs=(log_path,)) as pool:
        for i, row in enumerate(pool.map(run_one, jobs), 1):
            rows.append(row)
            print(f"[{i:>3}/{len(jobs)}] {row['trace']:<14} {row['policy']:<13} {row['mode']:<7} "
                  f"cap={row['capacity']:<11} mr={row['miss_ratio']:.4f} bmr={row['byte_miss_ratio']:.4f} "
                  f"{row['requests_per_sec'] / 1e6:5.2f} Mreq/s", file=sys.stderr)

    order = {n: i for i, n in enumerate(trace_name(p) for p in paths)}
    pol_order = {("lcs-" + p): i for i, p in enumerate(policies)}
    rows.sort(key=lambda r: (order[r["trace"]], r["capacity_fraction"], pol_order[r["policy"]]))

    cache_names = {}
    for r in rows:
        cache_names[r["policy"]] = r.pop("_cache_name")
    secs = sum(r.pop("_secs") for r in rows)

    with open(out + ".tmp", "w") as f:
        json.dump(rows, f, indent=1)
    os.replace(out + ".tmp", out)
    meta = {
        "libcachesim_version": lcs.__version__,
        "policies": {("lcs-" + p): {"class": ALL_POLICIES[p][0], "params": ALL_POLICIES[p][1],
                                     "libcachesim_cache_name": cache_names.get("lcs-" + p)} for p in policies},
        "common_params": {"consider_obj_metadata": False, "hashpower": 24,
                          "objects_mode_reader": "ignore_obj_size=True"},
        "footprints": footprints,
        "skipped": skipped,
        "wall_secs": time.time() - t_start,
        "simulation_secs_sum": secs,
        "jobs": args.jobs,
    }
    with open(os.path.splitext(out)[0] + ".meta.json", "w") as f:
        json.dump(meta, f, indent=2)

    problems = sanity_check(rows)
    for p in problems:
        print("SANITY: " + p, file=sys.stderr)
    print(f"wrote {len(rows)} rows to {out} in {time.time() - t_start:.1f}s "
          f"({secs:.1f}s of simulation over {args.jobs} workers); libCacheSim's own log: {log_path}",
          file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
