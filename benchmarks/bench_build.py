"""Dataset build throughput on Perov-5 val: structures/s end to end (read, encode, tasks, save), 1 vs N processes.

    python benchmarks/bench_build.py [--representation wyckoff] [--num-proc 2] [--max-structures 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from plaid.data import build_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--representation", default="wyckoff")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--max-structures", type=int, default=0, help="0 = all 3,787")
    args = parser.parse_args()
    source = os.path.join(os.environ.get("PLAID_DATA_DIR", "../shared/data"), "perov_5", "val.csv")
    rates = {}
    for procs in sorted({1, args.num_proc}):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            _, report = build_dataset(
                source, args.representation, out_dir=out, num_proc=procs, max_structures=args.max_structures or None
            )
            elapsed = time.perf_counter() - t0
        rates[procs] = report.n_input / elapsed
        print(f"num_proc={procs}: {report.n_input} structures in {elapsed:.1f} s = {rates[procs]:.0f} structures/s "
              f"({report.n_encoded} encoded, failures {report.failures})")
    if len(rates) > 1:
        print(f"speed-up num_proc={args.num_proc} vs 1: {rates[args.num_proc] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
