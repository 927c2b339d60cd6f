"""Pair-construction labelling throughput: samples labelled per second with the batched relaxer vs one structure
at a time (ASE FIRE + FrechetCellFilter), same samples, same run.

    python benchmarks/bench_pairs.py [--n 32] [--relaxer m3gnet] [--max-steps 100] [--repeats 1]

Samples are real Perov-5 structures with their atoms rattled (0.05 A) and the cell strained 3%, written as
`plaid sample` records, so each needs a real relaxation. E_hull uses the offline Perov-5 + MP elemental hull.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from plaid.hull import load_hull
from plaid.preferences.labels import label_samples
from plaid.relax import get_relaxer


def make_records(n: int, seed: int = 0) -> list[dict]:
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    df = pd.read_csv(f"{root}/perov_5/val.csv", nrows=n)
    rng = np.random.default_rng(seed)
    records = []
    for i, cif in enumerate(df["cif"]):
        s = Structure.from_str(cif, fmt="cif")
        s.perturb(0.05)
        s.apply_strain(float(rng.uniform(-0.03, 0.03)))
        records.append({"sample_id": str(i), "prompt": "bench", "text": f"t{i}", "parsed": True, "error": None,
                        "cif": s.to(fmt="cif"), "conditions": {}})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--relaxer", default="m3gnet")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    records = make_records(args.n)
    hull = load_hull(None, reference_csv=f"{root}/perov_5/val.csv")
    relaxer = get_relaxer(args.relaxer, max_steps=args.max_steps, batch_size=args.n)
    rates = {"batched": [], "sequential": []}
    for _ in range(args.repeats):
        for mode in ("batched", "sequential"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                labels = label_samples(records, Path(tmp), relaxer=relaxer, hull=hull, progress=False,
                                       batched=mode == "batched")
                rates[mode].append(len(labels) / (time.perf_counter() - t0))
    b, s = statistics.median(rates["batched"]), statistics.median(rates["sequential"])
    print(f"{args.n} samples, {args.relaxer}, <= {args.max_steps} FIRE steps, repeats {args.repeats}")
    print(f"batched   : {b:.2f} samples labelled/s (median)")
    print(f"sequential: {s:.2f} samples labelled/s (median, ASE one at a time)")
    print(f"speed-up  : {b / s:.2f}x")


if __name__ == "__main__":
    main()
