#!/usr/bin/env python3
"""Markdown report from simulator result rows (libCacheSim's and ours).

Reads any number of JSON files, each holding one or more JSON arrays of rows
(`ringcache-sim --json` prints one array per invocation, so concatenated
arrays are accepted as-is).  Row schema:

    {"trace", "policy", "mode", "capacity", "capacity_fraction", "requests",
     "hits", "misses", "miss_ratio", "byte_miss_ratio", "requests_per_sec"}

Rows are joined on (trace, mode, capacity_fraction) -- or on the absolute
capacity when the fraction is null -- and the report prints miss-ratio tables
plus the acceptance checks:

  classic modes    |lru - lcs-lru| and |fifo - lcs-fifo| relative difference
                   <= 0.5% on zipf* traces (exact LRU/FIFO must agree)
  LFU aging        lfu <= 1.10 x lru on `moving` at every size
  default quality  candidate (default `adaptive`, see --policy) <= 1.10 x best
                   reference + 0.002 at every point, mean(candidate/best) <=
                   1.03, and candidate <= 0.90 x our lru on `scan`

Missing rows show as "n/a" and are neither PASS nor FAIL.  With --strict the
exit status is 1 when any check FAILs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict

# Reference policies for "default quality": the best of these (whichever are
# present) is the bar a default policy has to clear.
REFERENCES = ("lcs-s3fifo", "lcs-lirs", "lcs-arc", "lcs-wtinylfu", "lcs-sieve", "quick_cache", "moka")

# Column order in tables; policies not listed follow in order of appearance.
OUR_ORDER = ("adaptive", "s3fifo", "lru", "fifo", "lfu", "random", "ttl")
THIRD_PARTY_ORDER = ("quick_cache", "moka")
LCS_ORDER = ("lcs-lru", "lcs-fifo", "lcs-s3fifo", "lcs-lirs", "lcs-arc", "lcs-wtinylfu", "lcs-sieve")
TRACE_ORDER = ("zipf0.7", "zipf0.8", "zipf1.0", "zipf1.2", "scan", "loop", "moving", "varsize")

CLASSIC_TOL = 0.005
LFU_FACTOR = 1.10
QUALITY_FACTOR, QUALITY_SLACK, QUALITY_MEAN = 1.10, 0.002, 1.03
SCAN_FACTOR = 0.90

NA = "n/a"


def load_rows(paths: list[str]) -> list[dict]:
    rows = []
    dec = json.JSONDecoder()
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            print(f"warning: cannot read {path}: {e}", file=sys.stderr)
            continue
        pos = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                print(f"warning: {path}: stopped at invalid JSON ({e})", file=sys.stderr)
                break
            for r in obj if isinstance(obj, list) else [obj]:
                if isinstance(r, dict) and {"trace", "policy", "miss_ratio"} <= r.keys():
                    rows.append(r)
    return rows


def size_key(r: dict):
    """Join key for a cache size.  Fractions are rounded so 0.1 parsed from
    different printers compares equal."""
    f = r.get("capacity_fraction")
    if f is None:
        return ("abs", int(r.get("capacity", 0)))
    return ("frac", round(float(f), 9))


def size_label(key) -> str:
    kind, v = key
    if kind == "abs":
        return f"{v}"
    return f"{v * 100:g}%"


def sort_size(key):
    return (0 if key[0] == "frac" else 1, key[1])


def ordered(items, preferred):
    items = list(dict.fromkeys(items))
    head = [p for p in preferred if p in items]
    return head + [p for p in items if p not in head]


def fmt(x, digits=4) -> str:
    return NA if x is None else f"{x:.{digits}f}"


class Results:
    def __init__(self, rows: list[dict]):
        # (trace, mode) -> size_key -> policy -> row
        self.data: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
        self.dupes = 0
        for r in rows:
            cell = self.data[(r["trace"], r.get("mode", "objects"))][size_key(r)]
            if r["policy"] in cell:
                self.dupes += 1  # last one wins (e.g. a re-run appended)
            cell[r["policy"]] = r
        self.policies = ordered((r["policy"] for r in rows), ())

    def groups(self):
        def k(tm):
            t, m = tm
            return (TRACE_ORDER.index(t) if t in TRACE_ORDER else len(TRACE_ORDER), t, m)
        return sorted(self.data, key=k)

    def sizes(self, group):
        return sorted(self.data[group], key=sort_size)

    def get(self, group, size, policy, field="miss_ratio"):
        r = self.data.get(group, {}).get(size, {}).get(policy)
        if r is None or r.get(field) is None:
            return None
        return float(r[field])

    def capacity(self, group, size):
        caps = {r.get("capacity") for r in self.data[group][size].values()}
        caps.discard(None)
        # Our simulator and libCacheSim compute capacities identically; if they
        # ever disagree the comparison is meaningless, so say so.
        return "/".join(str(c) for c in sorted(caps)) if caps else NA

    def column_order(self, group):
        present = {p for s in self.data[group].values() for p in s}
        ours = [p for p in self.policies if p in present and not p.startswith("lcs-")
                and p not in THIRD_PARTY_ORDER]
        third = [p for p in THIRD_PARTY_ORDER if p in present]
        lcs = [p for p in self.policies if p in present and p.startswith("lcs-")]
        return ordered(ours, OUR_ORDER) + third + ordered(lcs, LCS_ORDER)


def is_numeric_cell(c: str) -> bool:
    c = c.strip("*%")
    if c == NA:
        return True
    try:
        float(c)
        return True
    except ValueError:
        return False


def table(header: list[str], rows: list[list[str]]) -> str:
    # Right-align numeric columns so digits line up in rendered Markdown.
    numeric = [all(is_numeric_cell(r[i]) for r in rows) if rows else False for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def miss_ratio_tables(res: Results) -> list[str]:
    out = ["## Miss ratios", "",
           "Lower is better; the best value in each row is **bold**. "
           "`lcs-*` = libCacheSim, `quick_cache`/`moka` = reference crates, the rest are ours.", ""]
    for group in res.groups():
        trace, mode = group
        cols = res.column_order(group)
        fields = [("miss_ratio", "miss ratio")]
        if mode == "bytes":
            fields.append(("byte_miss_ratio", "byte miss ratio"))
        for field, title in fields:
            out.append(f"### {trace} ({mode} mode) — {title}")
            out.append("")
            rows = []
            for size in res.sizes(group):
                vals = [res.get(group, size, p, field) for p in cols]
                present = [v for v in vals if v is not None]
                best = min(present) if present else None
                cells = [f"**{fmt(v)}**" if v is not None and v == best else fmt(v) for v in vals]
                rows.append([size_label(size), res.capacity(group, size)] + cells)
            out.append(table(["size", "capacity"] + cols, rows))
            out.append("")
    return out


def throughput_table(res: Results) -> list[str]:
    """Median simulated requests/s per policy."""
    per_policy = defaultdict(list)
    for group in res.groups():
        for size in res.sizes(group):
            for p, r in res.data[group][size].items():
                if r.get("requests_per_sec"):
                    per_policy[p].append(float(r["requests_per_sec"]))
    if not per_policy:
        return []
    ours = [p for p in per_policy if not p.startswith("lcs-") and p not in THIRD_PARTY_ORDER]
    lcs = [p for p in per_policy if p.startswith("lcs-")]
    order = ordered(ours, OUR_ORDER) + [p for p in THIRD_PARTY_ORDER if p in per_policy] + ordered(lcs, LCS_ORDER)
    rows = []
    for p in order:
        v = sorted(per_policy[p])
        rows.append([p, f"{v[len(v) // 2] / 1e6:.2f}", f"{v[0] / 1e6:.2f}", f"{v[-1] / 1e6:.2f}", str(len(v))])
    return ["## Simulation throughput", "",
            "Million requests/s over all (trace, size) points: median, min, max.  "
            "Single-threaded simulator speed, not a concurrency benchmark; libCacheSim "
            "runs two simulations at a time, so compare within a tool rather than across.", "",
            table(["policy", "median", "min", "max", "points"], rows), ""]


class Tally:
    def __init__(self):
        self.counts = defaultdict(int)

    def verdict(self, ok):
        v = NA if ok is None else ("PASS" if ok else "FAIL")
        self.counts[v] += 1
        return v

    def summary(self) -> str:
        return ", ".join(f"{self.counts[k]} {k}" for k in ("PASS", "FAIL", NA) if self.counts[k])


def check_classic(res: Results, tally: Tally) -> list[str]:
    out = ["### Classic modes: ours vs libCacheSim (exact LRU / FIFO)", "",
           f"Relative difference |ours − lcs| / lcs must be ≤ {CLASSIC_TOL:.1%} on zipf traces.", ""]
    rows = []
    for group in res.groups():
        if not group[0].startswith("zipf"):
            continue
        for size in res.sizes(group):
            for ours, ref in (("lru", "lcs-lru"), ("fifo", "lcs-fifo")):
                a, b = res.get(group, size, ours), res.get(group, size, ref)
                if a is None or b is None:
                    rel, ok = None, None
                else:
                    rel = abs(a - b) / b if b > 0 else (0.0 if a == 0 else math.inf)
                    ok = rel <= CLASSIC_TOL
                rows.append([group[0], size_label(size), ours, fmt(a), fmt(b),
                             NA if rel is None else f"{rel:.3%}", tally.verdict(ok)])
    if not rows:
        return out + ["No zipf traces in the input: " + NA, ""]
    return out + [table(["trace", "size", "policy", "ours", "libCacheSim", "rel. diff", "verdict"], rows), ""]


def check_lfu_aging(res: Results, tally: Tally) -> list[str]:
    out = ["### LFU aging on `moving`", "",
           f"Our `lfu` must stay within {LFU_FACTOR:.2f} × our `lru` at every size "
           "(an LFU without aging clings to formerly hot keys).", ""]
    rows = []
    for group in res.groups():
        if group[0] != "moving":
            continue
        for size in res.sizes(group):
            lfu, lru = res.get(group, size, "lfu"), res.get(group, size, "lru")
            ok = None if lfu is None or lru is None else lfu <= LFU_FACTOR * lru
            ratio = None if ok is None or lru == 0 else lfu / lru
            rows.append([size_label(size), fmt(lfu), fmt(lru), fmt(ratio, 3), tally.verdict(ok)])
    if not rows:
        return out + ["No `moving` trace in the input: " + NA, ""]
    return out + [table(["size", "lfu", "lru", "lfu / lru", "verdict"], rows), ""]


def check_quality(res: Results, tally: Tally, cand: str) -> list[str]:
    refs = [p for p in REFERENCES if p != cand]
    out = [f"### Default quality: `{cand}` vs the best reference", "",
           f"At each point `{cand}` ≤ {QUALITY_FACTOR:.2f} × best + {QUALITY_SLACK} where best = min over "
           f"{', '.join('`' + r + '`' for r in refs)} (those present).", ""]
    rows, ratios = [], []
    for group in res.groups():
        for size in res.sizes(group):
            c = res.get(group, size, cand)
            present = [(res.get(group, size, r), r) for r in refs if res.get(group, size, r) is not None]
            if c is None and not present:
                continue
            best, best_name = min(present) if present else (None, None)
            if c is None or best is None:
                ok, ratio = None, None
            else:
                ok = c <= QUALITY_FACTOR * best + QUALITY_SLACK
                ratio = c / best if best > 0 else (1.0 if c == 0 else math.inf)
                ratios.append(ratio)
            rows.append([group[0], group[1], size_label(size), fmt(c), fmt(best), best_name or NA,
                         fmt(ratio, 3), tally.verdict(ok)])
    if not rows:
        out += [f"No rows for `{cand}` or the references: " + NA, ""]
    else:
        out += [table(["trace", "mode", "size", cand, "best ref", "best is", "ratio", "verdict"], rows), ""]

    if ratios:
        mean = sum(ratios) / len(ratios)
        verdict = tally.verdict(mean <= QUALITY_MEAN)
        out += [f"Mean `{cand}` / best over {len(ratios)} points: **{mean:.4f}** "
                f"(must be ≤ {QUALITY_MEAN}) — **{verdict}**", ""]
    else:
        out += [f"Mean `{cand}` / best: {tally.verdict(None)}", ""]

    out += [f"#### Scan resistance: `{cand}` ≤ {SCAN_FACTOR:.2f} × our `lru` on `scan`", ""]
    srows = []
    for group in res.groups():
        if group[0] != "scan":
            continue
        for size in res.sizes(group):
            c, lru = res.get(group, size, cand), res.get(group, size, "lru")
            ok = None if c is None or lru is None else c <= SCAN_FACTOR * lru
            ratio = None if ok is None or lru == 0 else c / lru
            srows.append([size_label(size), fmt(c), fmt(lru), fmt(ratio, 3), tally.verdict(ok)])
    if srows:
        out += [table(["size", cand, "lru", "ratio", "verdict"], srows), ""]
    else:
        out += ["No `scan` trace in the input: " + NA, ""]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="JSON row files (e.g. out/libcachesim.json out/ringcache.json)")
    ap.add_argument("--policy", default="adaptive", help="candidate for the default-quality check (default: adaptive)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any check FAILs")
    ap.add_argument("--no-throughput", action="store_true", help="omit the throughput table")
    args = ap.parse_args()

    rows = load_rows(args.files)
    res = Results(rows)
    out = ["# Ringcache eviction-engine benchmark", "",
           f"Inputs: {', '.join('`' + f + '`' for f in args.files)} — {len(rows)} rows, "
           f"{len(res.policies)} policies, {len(res.data)} trace/mode groups."]
    if res.dupes:
        out.append(f"({res.dupes} duplicate rows: the last one read was used.)")
    out.append("")
    if not rows:
        out.append("No rows found.")
        print("\n".join(out))
        return 1 if args.strict else 0

    tally = Tally()
    checks = ["## Checks", ""]
    checks += check_classic(res, tally)
    checks += check_lfu_aging(res, tally)
    checks += check_quality(res, tally, args.policy)

    out += [f"**Checks: {tally.summary()}** (candidate policy: `{args.policy}`)", ""]
    out += checks
    out += miss_ratio_tables(res)
    if not args.no_throughput:
        out += throughput_table(res)
    print("\n".join(out))
    return 1 if args.strict and tally.counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
