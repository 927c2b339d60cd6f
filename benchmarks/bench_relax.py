"""Relaxation throughput: batched FIRE (plaid.relax) vs sequential ASE FIRE + FrechetCellFilter, same run, CPU.

    python benchmarks/bench_relax.py --relaxer chgnet --dataset perov_5 --n 32 --repeats 3

Prints structures/s of both paths (median over repeats), their ratio, and the agreement of final energies
(fraction within 10 meV/atom). Both paths run with the same thread settings (--threads, default 1: on a shared
CPU, torch and OpenBLAS thread spin-up dominates these small problems).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relaxer", default="chgnet", choices=["chgnet", "m3gnet"])
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--dataset", default="perov_5", help="perov_5 or carbon_24 under PLAID_DATA_DIR")
    parser.add_argument("--n", type=int, default=32, help="number of structures (first N of val.csv)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fmax", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("PLAID_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))

    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    import torch
    from pymatgen.core import Structure

    from plaid.paths import data_dir
    from plaid.relax import get_relaxer

    torch.set_num_threads(args.threads)
    df = pd.read_csv(data_dir() / args.dataset / "val.csv").iloc[: args.n]
    structures = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    relaxer = get_relaxer(args.relaxer, model_path=args.model_path, fmax=args.fmax, max_steps=args.max_steps,
                          batch_size=args.batch_size)
    print(relaxer.describe())
    print(f"{len(structures)} {args.dataset} structures, {sum(map(len, structures))} atoms, threads={args.threads}")

    rates = {"batched": [], "sequential": []}
    results = {}
    for _ in range(args.repeats):
        for mode in ("batched", "sequential"):
            start = time.perf_counter()
            results[mode] = relaxer.relax(structures, progress=False, batched=mode == "batched")
            rates[mode].append(len(structures) / (time.perf_counter() - start))
    b, s = results["batched"], results["sequential"]
    diff = np.array([abs(x.energy_per_atom - y.energy_per_atom) for x, y in zip(b, s)])
    finite = np.isfinite(diff)
    for mode in rates:
        statuses = pd.Series([r.status for r in results[mode]]).value_counts().to_dict()
        steps = int(np.sum([r.n_steps for r in results[mode]]))
        print(f"{mode:>10}: median {statistics.median(rates[mode]):.3f} structures/s over {args.repeats} run(s), "
              f"{steps} FIRE steps, statuses {statuses}")
    ratio = statistics.median(rates["batched"]) / statistics.median(rates["sequential"])
    print(f"speed-up batched / sequential ASE: {ratio:.2f}x")
    print(f"final energy within 10 meV/atom of ASE: {np.mean(diff[finite] <= 0.010):.3f} of {finite.sum()} "
          f"(median |dE| {1000 * np.median(diff[finite]):.3f} meV/atom, max {1000 * diff[finite].max():.2f})")
    same_status = np.mean([x.status == y.status for x, y in zip(b, s)])
    print(f"same status as ASE: {same_status:.3f}")
    for x, y, d in zip(b, s, diff):
        if not d <= 0.010:
            print(f"  differs: id {x.id} ({structures[int(x.id)].composition.reduced_formula}) batched {x.status} "
                  f"{x.n_steps} steps {x.energy_per_atom:.4f} eV/atom, ASE {y.status} {y.n_steps} steps "
                  f"{y.energy_per_atom:.4f} eV/atom")
    return 0


if __name__ == "__main__":
    sys.exit(main())
