"""How much of a Perov-5 CSP miss is the choice of which cation takes which site? For a `plaid benchmark csp` run,
each target unmatched at n=1 is tested again with the two cations of its first candidate exchanged; for the data
file, each formula that occurs twice is tested for being the same structure or the two cation orderings.
Matching and RMSE are the benchmark's own (``plaid.evaluation.matching.csp_rms``).

    PLAID_DATA_DIR=../shared/data python benchmarks/perov5_cation_order.py --bench outputs/perov_5/bench_csp_first_greedy_v3
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

import pandas as pd

ANIONS = {"O", "N", "F", "S"}


def exchanged(structure):
    """``structure`` with its two cations swapped, or None when it has not exactly two."""
    cations = [el for el in structure.composition.elements if el.symbol not in ANIONS]
    if len(cations) != 2:
        return None
    out = structure.copy()
    out.replace_species({cations[0]: cations[1], cations[1]: cations[0]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", required=True, help="a plaid benchmark csp output directory (Perov-5)")
    p.add_argument("--data", default=os.path.join(os.environ.get("PLAID_DATA_DIR", "../shared/data"),
                                                  "perov_5/val.csv"))
    args = p.parse_args()

    from pymatgen.core import Structure

    from plaid.evaluation.matching import csp_rms
    from plaid.evaluation.samples import structure_from_record

    bench = Path(args.bench)
    targets = pd.read_csv(bench / "targets.csv", dtype={"material_id": str})
    scored = pd.read_csv(bench / "csp" / "csp_targets.csv", dtype={"material_id": str})
    first: dict[str, dict] = {}
    for line in open(bench / "samples.jsonl", encoding="utf-8"):
        record = json.loads(line)
        first.setdefault(str(record["material_id"]), record)  # candidate order: the first is n=1's
    missed = fixed = 0
    for (_, row), cif in zip(scored.iterrows(), targets["cif"]):
        if row["matched_at_1"]:
            continue
        missed += 1
        candidate, _ = structure_from_record(first[row["material_id"]])
        swapped = exchanged(candidate) if candidate is not None else None
        fixed += swapped is not None and csp_rms(Structure.from_str(cif, fmt="cif"), [swapped])[0] is not None
    print(f"{bench}: {len(scored)} targets, {missed} unmatched at n=1; {fixed} of them match once the first "
          "candidate's two cations are exchanged")

    structures = [Structure.from_str(c, fmt="cif") for c in pd.read_csv(args.data)["cif"]]
    by_formula = collections.defaultdict(list)
    for s in structures:
        by_formula[s.composition.reduced_formula].append(s)
    pairs = [v for v in by_formula.values() if len(v) == 2]
    matched = [csp_rms(a, [b])[0] is not None for a, b in pairs]
    same = sum(matched)
    swapped = sum(not m and (x := exchanged(b)) is not None and csp_rms(a, [x])[0] is not None
                  for m, (a, b) in zip(matched, pairs))
    print(f"{args.data}: {len(structures)} structures, {len(by_formula)} formulas, {len(pairs)} formulas with two "
          f"structures: {same} the same structure, {swapped} the two cation orderings, "
          f"{len(pairs) - same - swapped} neither")


if __name__ == "__main__":
    main()
