"""Encode throughput: plaid's Wyckoff encoder vs pyxtal.from_seed (PLaID's encoder), same structures, one run.

    python benchmarks/bench_encode.py [--n 300] [--repeats 3]

Prints structures/s of each and the median speed-up ratio over repeats. The pyxtal baseline is what PLaID's
data preparation does per structure: ``pyxtal().from_seed(structure, tol=TOL)`` then reading its Wyckoff sites.
Both use the same symmetry tolerance (``--tol``, default 0.1 = plaid's first symprec), since spglib's cost grows
with the tolerance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import pandas as pd
from pymatgen.core import Structure

from plaid.representations import get

warnings.filterwarnings("ignore")


def load(n: int) -> list[Structure]:
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    out = []
    for rel in ("perov_5/val.csv", "carbon_24/val.csv"):
        df = pd.read_csv(f"{root}/{rel}", nrows=n // 2)
        out += [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    return out


def pyxtal_encode(structure: Structure, tol: float) -> list:
    from pyxtal import pyxtal

    xtal = pyxtal()
    xtal.from_seed(structure, tol=tol)
    return [(site.specie, site.wp.get_label(), site.position) for site in xtal.atom_sites]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=0.1)
    args = parser.parse_args()
    structures = load(args.n)
    rep = get("wyckoff", symprecs=(args.tol, 0.01, 0.001))
    for s in structures:  # warm-up pass for both: space-group tables and pyxtal's caches are loaded once
        rep.encode(s)
        try:
            pyxtal_encode(s, args.tol)
        except Exception:  # noqa: BLE001
            pass
    ratios, plaid_rates, pyxtal_rates = [], [], []
    pyxtal_failures = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for s in structures:
            rep.encode(s)
        t_plaid = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in structures:
            try:
                pyxtal_encode(s, args.tol)
            except Exception:  # noqa: BLE001
                pyxtal_failures += 1
        t_pyxtal = time.perf_counter() - t0
        plaid_rates.append(len(structures) / t_plaid)
        pyxtal_rates.append(len(structures) / t_pyxtal)
        ratios.append(t_pyxtal / t_plaid)
    print(f"structures: {len(structures)} (perov_5 + carbon_24 val), repeats: {args.repeats}, tol: {args.tol}")
    print(f"plaid wyckoff encode : {statistics.median(plaid_rates):8.1f} structures/s (median)")
    print(f"pyxtal.from_seed     : {statistics.median(pyxtal_rates):8.1f} structures/s (median)"
          f"  [{pyxtal_failures // args.repeats} failures per pass]")
    print(f"speed-up (median ratio): {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
