"""Byte agreement of plaid's ``wyckoff-plaid`` encoder with PLaID's own pipeline (pymatgen refinement + pyxtal).

    python benchmarks/plaid_text_agreement.py [--limit 100] [--dataset mp_20] [--out agreement.json]

PLaID's text of a structure, as its code builds it: ``SpacegroupAnalyzer(s, 0.01).get_refined_structure()``,
``pyxtal.from_seed(refined, tol=0.01)`` (1e-4 if that fails), then the formula, ``Spacegroup: <pyxtal symbol>``,
``abc:``/``angles:`` to 2 decimals, ``Sites (<atoms of the refined cell>)`` and one line per ``pyx.atom_sites`` entry
(coordinates to 3 decimals, Wyckoff label). Prints the share of structures whose texts are identical, and for the
others whether plaid's decoder reads PLaID's text into the same structure (StructureMatcher defaults) and the first
differing line. pyxtal is slow: about a second per structure on a quiet core.
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
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from plaid.representations import get

warnings.filterwarnings("ignore")


def pyxtal_text(structure: Structure) -> str:
    from pyxtal import pyxtal

    refined = SpacegroupAnalyzer(structure, 0.01).get_refined_structure()
    pyx = pyxtal()
    try:
        pyx.from_seed(refined, tol=0.01)
    except Exception:  # noqa: BLE001 - PLaID's fallback
        pyx = pyxtal()
        pyx.from_seed(refined, tol=0.0001)
    para = pyx.lattice.get_para(degree=True)
    lines = [
        pyx.formula,
        f"Spacegroup: {pyx.group.symbol}",
        "abc: " + " ".join(f"{v:.2f}" for v in para[:3]),
        "angles: " + " ".join(f"{v:.2f}" for v in para[3:]),
        f"Sites ({len(refined)})",
    ]
    lines += [f"{s.specie} " + " ".join(f"{v:.3f}" for v in s.position) + f" {s.wp.get_label()}" for s in pyx.atom_sites]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mp_20")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    df = pd.read_csv(f"{root}/{args.dataset}/val.csv", nrows=args.limit)
    rep, matcher = get("wyckoff-plaid"), StructureMatcher()
    same, decodes, rows = 0, 0, []
    t_ours = t_theirs = 0.0
    for mid, cif in zip(df["material_id"], df["cif"]):
        s = Structure.from_str(cif, fmt="cif")
        t0 = time.perf_counter()
        ours = rep.encode(s)
        t1 = time.perf_counter()
        theirs = pyxtal_text(s)
        t2 = time.perf_counter()
        t_ours, t_theirs = t_ours + t1 - t0, t_theirs + t2 - t1
        if ours == theirs:
            same += 1
            continue
        try:
            ok = matcher.fit(s, rep.decode(theirs))
        except ValueError as exc:
            ok = f"DecodeError: {exc}"
        decodes += ok is True
        diff = next((f"{a!r} vs pyxtal {b!r}" for a, b in zip(ours.split("\n"), theirs.split("\n")) if a != b), "")
        rows.append({"material_id": str(mid), "plaid_decodes_pyxtal_text": ok if isinstance(ok, str) else bool(ok), "first_difference": diff})
    n = len(df)
    summary = {
        "structures": n,
        "identical_text": same,
        "identical_pct": round(100 * same / n, 2),
        "different_but_decodes_to_same_structure": decodes,
        "seconds_plaid": round(t_ours, 2),
        "seconds_pyxtal": round(t_theirs, 2),
        "differences": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "differences"}))
    for r in rows[:20]:
        print(r)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
