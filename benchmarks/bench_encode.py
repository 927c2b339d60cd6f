"""Encode throughput: plaid's Wyckoff encoder vs pyxtal.from_seed (PLaID's encoder), same structures, one run.

    python benchmarks/bench_encode.py [--n 100] [--repeats 3] [--tol 0.1] [--slowest 5]

The set is mixed, as users' inputs are: ``n`` structures each from MP-20, Perov-5 and Carbon-24 validation sets
and ``n`` perturbed MP-20 structures (``hard_set.perturbed``: Gaussian noise 0.02-0.1 A, 2% strain). Prints
structures/s of each encoder per subset and overall, the median speed-up ratio over repeats, and the slowest
structures for plaid with their time (a profile of where the time goes). The pyxtal baseline is what PLaID's data
preparation does per structure: ``pyxtal().from_seed(structure, tol=TOL)`` then reading its Wyckoff sites. Both use
the same symmetry tolerance (``--tol``, default 0.1 = plaid's first symprec), since spglib's cost grows with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import pandas as pd
from pymatgen.core import Structure

from plaid.representations import get

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")


def load(n: int) -> list[tuple[str, Structure]]:
    from hard_set import perturbed

    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    out = []
    for name in ("mp_20", "perov_5", "carbon_24"):
        df = pd.read_csv(f"{root}/{name}/val.csv").sample(n=n, random_state=0)
        out += [(name, Structure.from_str(c, fmt="cif")) for c in df["cif"]]
    out += [("perturbed", s) for _, _, s in perturbed(n, seed=1)]
    return out


def pyxtal_encode(structure: Structure, tol: float) -> list:
    from pyxtal import pyxtal

    xtal = pyxtal()
    xtal.from_seed(structure, tol=tol)
    return [(site.specie, site.wp.get_label(), site.position) for site in xtal.atom_sites]


def _time(fn, s) -> tuple[float, bool]:
    t0 = time.perf_counter()
    try:
        fn(s)
        ok = True
    except Exception:  # noqa: BLE001 - a failure still costs its time; counted separately
        ok = False
    return time.perf_counter() - t0, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="structures per subset (4 subsets)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=0.1)
    parser.add_argument("--slowest", type=int, default=5)
    args = parser.parse_args()
    items = load(args.n)
    rep = get("wyckoff", symprecs=(args.tol, 0.01, 0.001))
    encoders = {"plaid": rep.encode, "pyxtal": lambda s: pyxtal_encode(s, args.tol)}
    for _, s in items:  # warm-up pass for both: space-group tables and pyxtal's caches are loaded once
        for fn in encoders.values():
            _time(fn, s)
    subsets = sorted({name for name, _ in items})
    per = {e: {k: [] for k in subsets} for e in encoders}  # seconds per repeat per subset
    fails = {e: 0 for e in encoders}
    ratios, last = [], {}
    for _ in range(args.repeats):
        totals = {}
        for e, fn in encoders.items():
            times = [_time(fn, s) for _, s in items]
            fails[e] = sum(not ok for _, ok in times)
            totals[e] = sum(t for t, _ in times)
            for k in subsets:
                per[e][k].append(sum(t for (name, _), (t, _) in zip(items, times) if name == k))
            last[e] = times
        ratios.append(totals["pyxtal"] / totals["plaid"])
    print(f"structures: {len(items)} ({args.n} each of {', '.join(subsets)}), repeats: {args.repeats}, "
          f"tol: {args.tol}")
    for k in subsets:
        rates = {e: args.n / statistics.median(per[e][k]) for e in encoders}
        print(f"  {k:10s} plaid {rates['plaid']:8.1f}/s  pyxtal {rates['pyxtal']:8.1f}/s  "
              f"ratio {rates['plaid'] / rates['pyxtal']:.1f}x")
    total = {e: len(items) / statistics.median([sum(per[e][k][r] for k in subsets) for r in range(args.repeats)])
             for e in encoders}
    print(f"plaid wyckoff encode : {total['plaid']:8.1f} structures/s (median)  [{fails['plaid']} failures]")
    print(f"pyxtal.from_seed     : {total['pyxtal']:8.1f} structures/s (median)  [{fails['pyxtal']} failures]")
    print(f"speed-up on the mixed set (median ratio): {statistics.median(ratios):.1f}x")
    slow = sorted(range(len(items)), key=lambda i: -last["plaid"][i][0])[: args.slowest]
    print("slowest for plaid (last repeat):")
    for i in slow:
        name, s = items[i]
        print(f"  {name:10s} {s.composition.reduced_formula:14s} {len(s):3d} sites  plaid "
              f"{1e3 * last['plaid'][i][0]:7.1f} ms  pyxtal {1e3 * last['pyxtal'][i][0]:7.1f} ms")


if __name__ == "__main__":
    main()
