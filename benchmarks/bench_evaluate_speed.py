"""`plaid evaluate --no-relax` throughput: plaid's fast path (one site per orbit, duplicates once, vectorised order
parameters, -j workers) vs the sequential one-structure-at-a-time, every-site baseline with matminer's featurize
(CDVAE's way), both measured in this run, medians over repeats. Prints the time per 1,000 samples of each, the ratio, and whether the results agree.

    PLAID_DATA_DIR=../shared/data python benchmarks/bench_evaluate_speed.py --samples 40 --reference 60 --repeats 3
    # full size, on a quiet machine (first run also fills the reference caches, reported separately; the
    # baseline's own caches of all 9,047 references take about an hour, so time the fast path alone):
    PLAID_DATA_DIR=../shared/data python benchmarks/bench_evaluate_speed.py --samples 10000 --reference 0 \\
        --repeats 1 --jobs 2 --no-baseline

Samples are real MP-20 structures (rows of ``mp_20/train_partial.csv``) written as a CSV with a ``cif`` column, as
crystal-text-llm's samples are; ``--duplicates F`` repeats a fraction F of them verbatim (LLM samples repeat).
The reference (novelty and coverage) is MP-20 val: its first ``--reference`` rows, 0 = all 9,047. Reference
caches (reductions, fingerprints) are filled before timing, once per mode, and that cold time is printed apart.
Times are wall clock and CPU (this process + workers); on a shared machine trust the CPU figures.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

warnings.filterwarnings("ignore")


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), _cpu()
    out = fn(*args)
    return time.perf_counter() - wall, _cpu() - cpu, out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


FP_COLUMNS = ("fp_status", "fp_reason")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--reference", type=int, default=60, help="first rows of mp_20/val.csv; 0 = all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--duplicates", type=float, default=0.0, help="fraction of samples repeated verbatim")
    parser.add_argument("--fingerprint-timeout", type=float, default=600.0,
                        help="per-structure limit (wall clock: on a loaded machine the default 60 s can fire, "
                        "and a timeout in one run only would make the two runs' results differ)")
    parser.add_argument("--skip-baseline-above", type=int, default=None,
                        help="time the baseline on the first N samples only and scale it (for full-size runs)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="time plaid's fast path only (full-size runs; the ratio comes from a smaller run)")
    args = parser.parse_args()
    data = Path(os.environ.get("PLAID_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    tmp = Path(tempfile.mkdtemp(prefix="plaid-bench-eval-"))
    os.environ.setdefault("PLAID_CACHE_DIR", str(tmp / "cache"))

    from plaid.evaluation import EvaluationConfig, evaluate
    from plaid.evaluation.fingerprints import ORBIT_SYMPREC

    n_unique = max(1, round(args.samples * (1 - args.duplicates)))
    train = pd.read_csv(data / "mp_20" / "train_partial.csv", nrows=n_unique)
    picks = list(range(len(train))) + [i % len(train) for i in range(args.samples - len(train))]
    samples = tmp / "samples.csv"
    train.iloc[picks][["material_id", "cif"]].to_csv(samples, index=False)
    val = pd.read_csv(data / "mp_20" / "val.csv")
    if args.reference:
        val = val.iloc[: args.reference]
    reference = tmp / "reference.csv"
    val.to_csv(reference, index=False)
    n_base = min(args.samples, args.skip_baseline_above or args.samples)
    base_samples = samples
    if n_base < args.samples:
        base_samples = tmp / "samples_baseline.csv"
        train.iloc[picks[:n_base]][["material_id", "cif"]].to_csv(base_samples, index=False)

    common = dict(dataset="mp_20", relax=False, plots=False, fingerprint_timeout_s=args.fingerprint_timeout)
    fast_cfg = dict(common, n_jobs=args.jobs, orbit_symprec=ORBIT_SYMPREC)
    base_cfg = dict(common, n_jobs=1, orbit_symprec=None, dedupe=False, fingerprint_backend="matminer")
    print(f"{args.samples} samples ({len(train)} distinct MP-20 train_partial structures), reference: "
          f"{len(val)} MP-20 val structures; fast: orbits at {ORBIT_SYMPREC:g} A, dedupe, plaid's order "
          f"parameters, -j {args.jobs}; baseline: every site, no dedupe, matminer's featurize, -j 1{f', first {n_base} samples' if n_base < args.samples else ''}")

    def run(cfg, path, tag, k):
        return evaluate(path, reference, tmp / f"{tag}{k}", EvaluationConfig(**cfg))

    modes = (("fast", fast_cfg, samples),) if args.no_baseline else (("fast", fast_cfg, samples),
                                                                     ("base", base_cfg, base_samples))
    for tag, cfg, _ in modes:
        one = tmp / "one.csv"
        train.iloc[:1][["material_id", "cif"]].to_csv(one, index=False)
        wall, cpu, _ = _timed(run, cfg, one, f"warm-{tag}", 0)  # fills this mode's reference caches
        print(f"reference caches, {tag} mode (cold, once): {wall:.1f} s wall, {cpu:.1f} s CPU")

    times = {tag: [] for tag, _, _ in modes}
    reports = {}
    for k in range(args.repeats):
        for tag, cfg, path in modes:
            wall, cpu, reports[tag] = _timed(run, cfg, path, tag, k)
            times[tag].append((wall, cpu))
    med = {t: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for t, v in times.items()}
    per_k = {"fast": 1000 / args.samples, "base": 1000 / n_base}
    for tag, name in (("base", "baseline (sequential, every site)"), ("fast", "plaid fast path")):
        if tag not in med:
            continue
        wall, cpu = med[tag]
        print(f"{name:36s} {wall * per_k[tag]:8.1f} s wall / 1,000 samples   {cpu * per_k[tag]:8.1f} s CPU / 1,000")
    if args.no_baseline:
        print(f"{args.samples} samples: {med['fast'][0] / 60:.1f} min wall, {med['fast'][1] / 60:.1f} min CPU "
              f"(medians of {args.repeats}); fingerprint timeouts: "
              f"{sum(r['fp_status'] == 'timeout' for r in _rows(tmp / f'fast{args.repeats - 1}' / 'structures.csv'))}")
        return
    ratio_wall = med["base"][0] * per_k["base"] / (med["fast"][0] * per_k["fast"])
    ratio_cpu = med["base"][1] * per_k["base"] / (med["fast"][1] * per_k["fast"])
    print(f"speed-up: x{ratio_wall:.2f} wall, x{ratio_cpu:.2f} CPU (medians of {args.repeats})")
    print(f"projected 10,000 samples: {med['fast'][0] * 10000 / args.samples / 60:.1f} min wall here, "
          f"{med['fast'][1] * 10000 / args.samples / 60 / args.jobs:.1f} min on {args.jobs} idle cores")

    fast_rows = _rows(tmp / f"fast{args.repeats - 1}" / "structures.csv")[:n_base]
    base_rows = _rows(tmp / f"base{args.repeats - 1}" / "structures.csv")
    same_rows = fast_rows == base_rows
    timeouts = {t: sum(r["fp_status"] == "timeout" for r in rows) for t, rows in (("fast", fast_rows),
                                                                                 ("baseline", base_rows))}
    print(f"fingerprint timeouts: {timeouts}")
    print(f"structures.csv identical (every column, first {n_base} samples): {'yes' if same_rows else 'NO'}")
    if n_base == args.samples:
        keys = ("valid_rate", "unique_rate", "novel_rate", "cov_recall", "cov_precision", "amsd_recall",
                "amsd_precision", "crystallm_valid_rate")
        diffs = {k: abs(reports["fast"].get(k, 0) - reports["base"].get(k, 0)) for k in keys}
        print("report metrics |fast - baseline|: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))


if __name__ == "__main__":
    main()
