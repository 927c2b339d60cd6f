"""Labeller against judge: two `plaid evaluate` runs of one sample file with different relaxers (or relaxation
depths), at one metastable threshold. Prints each one's counts, their overlap and the per-sample correlation of
E_hull (`plaid.evaluation.agreement`); a DPO policy that learned its labeller's errors shows rising labeller counts,
flat judge counts and falling correlation.

    python benchmarks/compare_relaxers.py outputs/carbon_24/bench_gen_sft/eval_m3gnet_t05 \
        outputs/carbon_24/bench_gen_sft/eval_chgnet_t05
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plaid.evaluation.agreement import relaxer_agreement
from plaid.io import read_jsonl


def _load(directory: Path) -> tuple[list[dict], dict]:
    return read_jsonl(directory / "outcomes.jsonl"), json.loads((directory / "outcome_settings.json").read_text())


def _relaxer(settings: dict) -> str:
    r = settings["energies"].get("relaxer") or {}
    return f"{r.get('name', '?')} ({r.get('model_version', '?')}, {r.get('max_steps', '?')} steps, fmax {r.get('fmax', '?')})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="plaid evaluate output directory (e.g. the labeller's)")
    parser.add_argument("second", type=Path, help="plaid evaluate output directory of the same samples (the judge's)")
    args = parser.parse_args()
    (oa, sa), (ob, sb) = _load(args.first), _load(args.second)
    if sa.get("samples_sha256") != sb.get("samples_sha256"):
        raise SystemExit("the two directories evaluated different sample files")
    ta, tb = sa["settings"]["metastable_threshold"], sb["settings"]["metastable_threshold"]
    if ta != tb:
        raise SystemExit(f"metastable thresholds differ ({ta} vs {tb} eV/atom): evaluate both at one threshold")
    r = relaxer_agreement(oa, ob)
    n = r["n_samples"]

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    print(f"first: {args.first}: {_relaxer(sa)}\nsecond: {args.second}: {_relaxer(sb)}")
    print(f"{n} samples; metastable: E_hull < {ta} eV/atom; M.S.U.N. classes as plaid evaluate forms them\n")
    print("| count (of all samples) | first | second | both |")
    print("|---|---|---|---|")
    print(f"| metastable | {r['metastable'][0]} | {r['metastable'][1]} | {r['metastable_in_both']} |")
    print(f"| stable (E_hull <= stable threshold) | {r['stable'][0]} | {r['stable'][1]} | |")
    print(f"| M.S.U.N. | {r['msun'][0]} | {r['msun'][1]} | {r['msun_confirmed']} of the first's metastable in the second |")
    print(f"| median E_hull (eV/atom) | {fmt(r['median_e_hull'][0])} | {fmt(r['median_e_hull'][1])} | |")
    print(f"\nper-sample E_hull over the {r['n_both']} samples both relaxed: Pearson r {fmt(r['pearson'])}, "
          f"Spearman rho {fmt(r['spearman'])}")


if __name__ == "__main__":
    main()
