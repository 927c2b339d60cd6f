"""End-to-end `plaid evaluate` time per 1,000 samples on CPU without relaxation, stage by stage, next to the
FlowMM-style baseline for the matching stage (all-pairs StructureMatcher) measured in the same run.

    PLAID_DATA_DIR=../shared/data python benchmarks/bench_evaluate_e2e.py [--samples 300] [--reference 300]

Samples are real Perov-5 val structures (rows after the reference rows), so every stage does real work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

warnings.filterwarnings("ignore")


def main() -> None:
    from plaid.evaluation import EvaluationConfig, evaluate
    from plaid.evaluation.matching import brute_force_novel, brute_force_unique
    from plaid.evaluation.samples import load_reference

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--reference", type=int, default=300)
    args = parser.parse_args()
    root = os.environ.get("PLAID_DATA_DIR", "../shared/data")
    df = pd.read_csv(f"{root}/perov_5/val.csv")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp = Path(tmp)
        os.environ["PLAID_CACHE_DIR"] = str(tmp / "cache")  # cold caches: reference work is counted
        ref, samples = tmp / "ref.csv", tmp / "samples.csv"
        df.iloc[: args.reference].to_csv(ref, index=False)
        df.iloc[args.reference : args.reference + args.samples].to_csv(samples, index=False)
        t0 = time.perf_counter()
        report = evaluate(samples, ref, tmp / "eval", EvaluationConfig(dataset="perov_5", relax=False, plots=False))
        total = time.perf_counter() - t0
        gen, _, _ = load_reference(samples)
        refs, _, _ = load_reference(ref)
        t0 = time.perf_counter()
        brute_force_unique(gen)
        brute_force_novel(gen, refs)
        brute = time.perf_counter() - t0
    print(f"{args.samples} samples vs {args.reference} reference structures (Perov-5), no relaxation, cold caches")
    print(f"plaid evaluate end to end: {total:.1f} s = {1000 * total / args.samples:.0f} s per 1,000 samples")
    print(f"  valid_rate {report['valid_rate']:.3f}, unique_rate {report['unique_rate']:.3f}, "
          f"novel_rate {report['novel_rate']:.3f}, cov_recall {report['cov_recall']:.3f}")
    print(f"baseline all-pairs uniqueness + novelty alone: {brute:.1f} s "
          f"({1000 * brute / args.samples:.0f} s per 1,000 samples at this reference size)")


if __name__ == "__main__":
    main()
