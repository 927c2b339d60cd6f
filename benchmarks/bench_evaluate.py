"""Evaluation speed: bucketed uniqueness/novelty vs brute-force all-pairs StructureMatcher, and the reference
fingerprint cache (hit vs cold). Prints medians and ratios measured in this run; asserts result equality.

    PLAID_DATA_DIR=../shared/data python benchmarks/bench_evaluate.py [--samples 200 --reference 400 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

warnings.filterwarnings("ignore")


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def _perturb(s: Structure, rng) -> Structure:
    lat = Lattice(s.lattice.matrix @ (np.eye(3) + rng.normal(0, 0.01, (3, 3))))
    frac = s.frac_coords + rng.normal(0, 0.02, s.frac_coords.shape) / np.array(s.lattice.abc)
    order = rng.permutation(len(s))
    return Structure(lat, [s.species[i] for i in order], frac[order])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--reference", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fp-reference", type=int, default=60)
    args = parser.parse_args()
    data = Path(os.environ.get("PLAID_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    os.environ.setdefault("PLAID_CACHE_DIR", tempfile.mkdtemp(prefix="plaid-bench-"))

    from plaid.evaluation import (
        brute_force_novel,
        brute_force_unique,
        reduce_reference,
        uniqueness_and_novelty,
    )
    from plaid.evaluation.fingerprints import reference_fingerprints

    df = pd.read_csv(data / "perov_5" / "val.csv", nrows=args.samples + args.reference)
    structs = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    rng = np.random.default_rng(0)
    distinct = structs[: args.samples * 3 // 4]
    samples = distinct + [
        _perturb(distinct[i], rng) for i in rng.choice(len(distinct), args.samples - len(distinct))
    ]
    reference = structs[args.samples // 2 : args.samples // 2 + args.reference]
    print(
        f"{len(samples)} samples ({len(distinct)} distinct), {len(reference)} reference structures (perov_5 val)"
    )

    t_brute, brute = _median_time(
        lambda: (brute_force_unique(samples), brute_force_novel(samples, reference)), args.repeats
    )

    def bucketed():
        ref = reduce_reference(reference)  # include reference reduction (no disk cache) in the timing
        out = uniqueness_and_novelty(samples, reference=ref)
        return [out[i]["is_unique"] for i in range(len(samples))], [
            out[i]["is_novel"] for i in range(len(samples))
        ]

    t_bucket, got = _median_time(bucketed, args.repeats)
    assert list(got[0]) == brute[0] and list(got[1]) == brute[1], "bucketed result differs from brute force"
    print(
        f"uniqueness+novelty  brute force: {t_brute:8.2f} s   bucketed: {t_bucket:8.2f} s   "
        f"speed-up x{t_brute / t_bucket:.1f}   (identical results: yes; unique {sum(got[0])}, novel {sum(got[1])})"
    )

    ref_file = Path(tempfile.mkdtemp()) / "ref.csv"
    df.iloc[: args.fp_reference].to_csv(ref_file, index=False)
    fp_structs = structs[: args.fp_reference]
    cold = []
    for k in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix=f"fp{k}-"))
        t = time.perf_counter()
        reference_fingerprints(ref_file, fp_structs, cache=cache)
        cold.append(time.perf_counter() - t)
    hits = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = reference_fingerprints(ref_file, lambda: fp_structs, cache=cache)
        hits.append(time.perf_counter() - t)
        assert res["cache_hit"]
    t_cold, t_hit = statistics.median(cold), statistics.median(hits)
    print(
        f"reference fingerprints ({args.fp_reference} structures)  cold: {t_cold:8.2f} s   cache hit: "
        f"{t_hit:8.4f} s   speed-up x{t_cold / t_hit:.0f}"
    )


if __name__ == "__main__":
    main()
