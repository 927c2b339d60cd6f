"""Before/after table of two `plaid benchmark gen` runs (e.g. SFT vs DPO): every rate with its 95% Wilson interval
and the difference with Newcombe's hybrid score interval.

    python benchmarks/compare_gen.py outputs/carbon_24/bench_gen_sft outputs/carbon_24/bench_gen_dpo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plaid.benchmark.gen import compare_gen_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="benchmark gen output directory (results.json)")
    parser.add_argument("after", help="benchmark gen output directory (results.json)")
    args = parser.parse_args()
    before = json.loads((Path(args.before) / "results.json").read_text())
    after = json.loads((Path(args.after) / "results.json").read_text())

    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    print(f"before: {args.before} ({before['counts']['samples']} samples); "
          f"after: {args.after} ({after['counts']['samples']} samples)\n")
    print("| rate (% of all samples) | before [95% CI] | after [95% CI] | after - before [95% CI] |")
    print("|---|---|---|---|")
    for row in compare_gen_results(before, after):
        b, a, (lo, hi) = row["before_ci95"], row["after_ci95"], row["difference_ci95"]
        print(f"| {row['metric']} | {pct(row['before'])} [{pct(b[0])}, {pct(b[1])}] | {pct(row['after'])} "
              f"[{pct(a[0])}, {pct(a[1])}] | {100 * row['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    print(f"\nsettings: {after['settings'].get('summary', '')}")


if __name__ == "__main__":
    main()
