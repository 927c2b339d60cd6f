"""Round-trip fidelity of every representation on the full shared datasets, with each failure and its reason.

    python benchmarks/roundtrip.py [--representations wyckoff,coords,cif] [--out roundtrip.json]

A structure passes when decode(encode(s)) matches s under StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5).
For each failure it also reports whether the matcher can match s to its own primitive cell: where it cannot,
the failure is the matcher's, not the representation's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from plaid.representations import DecodeError, EncodeError, get

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--representations", default="wyckoff,coords,cif")
    parser.add_argument("--datasets", default="perov_5,carbon_24")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
    data = {}
    for name in args.datasets.split(","):
        df = pd.read_csv(f"{root}/{name}/val.csv")
        data[name] = (df["material_id"].astype(str).tolist(), [Structure.from_str(c, fmt="cif") for c in df["cif"]])
    results = {}
    for rep_name in args.representations.split(","):
        rep = get(rep_name)
        total, failures, t0 = 0, [], time.perf_counter()
        for name, (ids, structures) in data.items():
            for mid, s in zip(ids, structures):
                total += 1
                try:
                    ok = matcher.fit(s, rep.decode(rep.encode(s)))
                    reason = None if ok else "no match"
                except (EncodeError, DecodeError) as exc:
                    ok, reason = False, f"{type(exc).__name__}: {exc}"
                if not ok:
                    if reason == "no match" and not matcher.fit(s, s.get_primitive_structure()):
                        reason = "no match (StructureMatcher also fails on the input vs its own primitive cell)"
                    failures.append({"dataset": name, "material_id": mid, "reason": reason})
        rate = 1 - len(failures) / total
        results[rep_name] = {"n": total, "n_failed": len(failures), "match_rate": rate, "failures": failures,
                             "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{rep_name:8s} {total - len(failures)}/{total} match ({100 * rate:.2f}%)")
        for f in failures:
            print(f"    {f['dataset']} {f['material_id']}: {f['reason']}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
