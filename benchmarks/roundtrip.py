"""Round-trip fidelity of every representation on real and hard structures, with each failure and its reason.

    python benchmarks/roundtrip.py [--representations wyckoff,coords,cif] [--datasets mp_20] [--hard 300,200]
                                   [--limit N] [--out roundtrip.json]

A structure passes when decode(encode(s)) matches s under StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5).
Datasets are the shared validation sets (default MP-20 val, 9,047 structures; also perov_5, carbon_24); ``--hard
P,W`` adds the hard set of ``hard_set.py`` (P perturbed MP-20 structures, W grammar walks; 0,0 to skip). For each
failure it also reports whether the matcher can match s to its own primitive cell: where it cannot, the failure is
the matcher's, not the representation's. Progress lines go to stdout as it runs (``--out`` is rewritten after
every set), so a long run can be followed with ``tail -f``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from plaid.representations import DecodeError, EncodeError, get

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")


def load_sets(datasets: list[str], hard: tuple[int, int], limit: int | None) -> dict[str, list]:
    """Set name -> list of (source, id, structure or CIF text); CIFs are parsed as the run reaches them."""
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    sets = {}
    if any(hard):
        from hard_set import hard_set

        sets["hard"] = hard_set(*hard)
    for name in datasets:
        df = pd.read_csv(f"{root}/{name}/val.csv", nrows=limit)
        sets[name] = [(name, str(m), c) for m, c in zip(df["material_id"], df["cif"])]
    return sets


def run(rep_name: str, items: list, matcher, progress=None) -> dict:
    rep = get(rep_name)
    failures, t0 = [], time.perf_counter()
    for k, (source, mid, s) in enumerate(items):
        if progress is not None and k and k % 500 == 0:
            progress(k, failures)
        if isinstance(s, str):
            s = Structure.from_str(s, fmt="cif")
        try:
            ok = matcher.fit(s, rep.decode(rep.encode(s)))
            reason = None if ok else "no match"
        except (EncodeError, DecodeError) as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            if reason == "no match" and not matcher.fit(s, s.get_primitive_structure()):
                reason = "no match (StructureMatcher also fails on the input vs its own primitive cell)"
            failures.append({"source": source, "id": mid, "reason": reason})
    n = len(items)
    return {"n": n, "n_failed": len(failures), "match_rate": 1 - len(failures) / n if n else None,
            "failures": failures, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--representations", default="wyckoff,coords,cif")
    parser.add_argument("--datasets", default="mp_20", help="comma-separated; empty for none")
    parser.add_argument("--hard", default="300,200", help="perturbed,walks counts of the hard set")
    parser.add_argument("--limit", type=int, default=None, help="first N structures of each dataset")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    hard = tuple(int(x) for x in args.hard.split(","))
    sets = load_sets([d for d in args.datasets.split(",") if d], hard, args.limit)
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
    results: dict = {}
    for set_name, items in sets.items():
        for rep_name in args.representations.split(","):
            def progress(k, failures, set_name=set_name, rep_name=rep_name):
                print(f"  ... {set_name} {rep_name}: {k - len(failures)}/{k} so far", flush=True)

            r = run(rep_name, items, matcher, progress)
            results.setdefault(set_name, {})[rep_name] = r
            print(f"{set_name:10s} {rep_name:8s} {r['n'] - r['n_failed']}/{r['n']} match "
                  f"({100 * r['match_rate']:.2f}%)  [{r['seconds']} s]", flush=True)
            for f in r["failures"]:
                print(f"    {f['id']}: {f['reason']}", flush=True)
            if args.out:
                with open(args.out, "w") as fh:
                    json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
