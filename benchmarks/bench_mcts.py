"""MCTS decoding vs top-k random sampling at the same budget of model calls (CrystaLLM Table 4 style).

For each composition the MCTS search runs first (``--iterations``); its model calls (forward passes that produce a
next-token distribution: one per expanded node, one per rollout token) are the budget. Random sampling (top-k =
the tree width, temperature 1, CrystaLLM's baseline) then draws samples in batches until its generated tokens (one
forward per token per sample) reach the same number. Both are validated and scored by the same in-process scorer
(default: CrystaLLM's checks + CHGNet energy per atom of the structure as generated). Per composition and overall:
validity rate (valid / completions), mean and minimum energy per atom over the valid ones.

Compositions: ``--formulas`` (cell compositions, e.g. ``Ba1 Ti1 O3``), or the ``--hard N`` compositions with the
lowest validity in a probe of ``--probe`` random samples each over the first ``--candidates`` distinct cell
compositions of ``--data`` (a held-out CDVAE CSV).

    python benchmarks/bench_mcts.py --model outputs/perov_5/sft_scratch --data outputs/perov_5/sft_scratch \
        --hard 8 --candidates 40 --probe 8 --iterations 40 --out bench_mcts/
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path


def held_out_cifs(path: str) -> list[str]:
    """CIFs of a CDVAE CSV, or of the test split of a dataset ``plaid data build`` / the SFT recipe saved (a
    ``save_to_disk`` DatasetDict, or a run directory holding one in ``dataset/``)."""
    source = Path(path)
    if source.is_dir():
        from datasets import load_from_disk

        while not (source / "dataset_dict.json").is_file() and (source / "dataset").is_dir():
            source = source / "dataset"  # run dir -> build dir -> DatasetDict
        return list(load_from_disk(str(source))["test"]["cif"])
    import pandas as pd

    return list(pd.read_csv(source)["cif"])


def cell_compositions(path: str, limit: int) -> list[str]:
    from pymatgen.core import Structure

    from plaid.prompts import format_condition

    out: list[str] = []
    for cif in held_out_cifs(path):
        comp = format_condition("composition", Structure.from_str(cif, fmt="cif").composition.formula)
        if comp not in out:
            out.append(comp)
        if len(out) >= limit:
            break
    return out


def conditions_of(composition: str) -> dict:
    """The CSP prompt: the cell composition only (CrystaLLM's and DiffCSP's task)."""
    return {"composition": composition}


def random_sampling(backend, sample_config, cid: str, conditions: dict, budget: int | None, n: int | None,
                    batch: int, scorer) -> dict:
    """Top-k random samples until ``budget`` generated tokens (or ``n`` samples); validated and scored."""
    from plaid.sampling import Sampler, make_request

    sampler = Sampler(backend, sample_config)
    evaluations, tokens, samples, j = [], 0, 0, 0
    start = time.perf_counter()
    while (budget is not None and tokens < budget) or (n is not None and samples < n):
        req = make_request(f"{cid}-b{j}", conditions, batch)
        items = [sampler._item(req, k) for k in range(batch)]
        records, _ = sampler._generate(items)
        for rec in records:
            if budget is not None and tokens >= budget:
                break
            tokens += rec["num_tokens"]
            samples += 1
            evaluations.append(scorer.evaluate(rec["text"], conditions))
        j += 1
    return summarize(evaluations, tokens, time.perf_counter() - start)


def summarize(evaluations: list, calls: int, seconds: float) -> dict:
    scores = [e.extra["energy_per_atom"] for e in evaluations if e.valid]
    return {
        "completions": len(evaluations),
        "valid": len(scores),
        "validity_rate": len(scores) / len(evaluations) if evaluations else float("nan"),
        "mean_energy": statistics.mean(scores) if scores else float("nan"),
        "min_energy": min(scores) if scores else float("nan"),
        "model_calls": calls,
        "seconds": round(seconds, 1),
    }


def fmt(x, digits=3):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--representation", default="wyckoff")
    ap.add_argument("--formulas", nargs="*", help="cell compositions")
    ap.add_argument("--data", help="held-out CDVAE CSV, or a saved dataset / run directory (its test split), to "
                    "pick hard compositions from")
    ap.add_argument("--hard", type=int, default=8, help="how many lowest-validity compositions to benchmark")
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--probe", type=int, default=8, help="random samples per candidate composition")
    ap.add_argument("--iterations", type=int, default=40, help="MCTS iterations per composition")
    ap.add_argument("--width", type=int, default=5)
    ap.add_argument("--c-puct", type=float, default=1.0)
    ap.add_argument("--energy", default="chgnet", choices=("chgnet", "m3gnet"))
    ap.add_argument("--validity", default="crystallm", choices=("crystallm", "structural", "parsed"))
    ap.add_argument("--constrained", action="store_true", help="grammar mask for both decoders")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench_mcts")
    args = ap.parse_args()

    import torch

    from plaid.sampling import HFBackend, SampleConfig, SamplingParams, make_request
    from plaid.sampling.mcts import CompletionScorer, MCTSConfig, MCTSSampler, MLIPEnergy, TreeConfig

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = HFBackend.load(args.model, device="cpu")
    scorer = CompletionScorer(args.representation, MLIPEnergy(args.energy), validity=args.validity)
    params = SamplingParams(1.0, 1.0, args.width, args.max_new_tokens)
    sample_cfg = SampleConfig(representation=args.representation, batch_size=args.batch_size, seed=args.seed,
                              params=params, constrained=args.constrained)

    if args.formulas:
        from plaid.prompts import format_condition

        chosen = [format_condition("composition", c) for c in args.formulas]
        probe = {}
    else:
        probe = {}
        for i, comp in enumerate(cell_compositions(args.data, args.candidates)):
            probe[comp] = random_sampling(backend, sample_cfg, f"probe{i}", conditions_of(comp), None, args.probe,
                                          args.probe, scorer)
            print(f"probe {comp}: validity {probe[comp]['validity_rate']:.2f}", flush=True)
        chosen = sorted(probe, key=lambda c: (probe[c]["validity_rate"], probe[c]["mean_energy"]
                                              if not math.isnan(probe[c]["mean_energy"]) else 0))[: args.hard]

    rows = []
    for i, comp in enumerate(chosen):
        conditions = conditions_of(comp)
        mcts = MCTSSampler(backend, sample_cfg,
                           MCTSConfig(TreeConfig(iterations=args.iterations, width=args.width, c_puct=args.c_puct)),
                           scorer)
        start = time.perf_counter()
        result = mcts.search(make_request(f"c{i}", conditions))
        evals = [scorer.evaluate(r["text"], conditions) for r in result.records]  # cached: no energy recomputed
        tree = summarize(evals, result.stats["model_calls"], time.perf_counter() - start)
        base = random_sampling(backend, sample_cfg, f"r{i}", conditions, tree["model_calls"], None,
                               args.batch_size, scorer)
        rows.append({"composition": comp, "mcts": tree, "random": base, "probe": probe.get(comp),
                     "best_iteration": result.stats["best_iteration"]})
        print(json.dumps(rows[-1]), flush=True)
        (out / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))

    lines = ["| composition | validity random | validity MCTS | mean E random | mean E MCTS | min E random | "
             "min E MCTS | model calls random / MCTS |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["random"], r["mcts"]
        lines.append(f"| {r['composition']} | {fmt(a['validity_rate'], 2)} | {fmt(b['validity_rate'], 2)} | "
                     f"{fmt(a['mean_energy'])} | {fmt(b['mean_energy'])} | {fmt(a['min_energy'])} | "
                     f"{fmt(b['min_energy'])} | {a['model_calls']} / {b['model_calls']} |")

    def overall(key, field):
        vals = [r[key][field] for r in rows if not math.isnan(r[key][field])]
        return statistics.mean(vals) if vals else float("nan")

    lines.append(f"| **mean over compositions** | {fmt(overall('random', 'validity_rate'), 2)} | "
                 f"{fmt(overall('mcts', 'validity_rate'), 2)} | {fmt(overall('random', 'mean_energy'))} | "
                 f"{fmt(overall('mcts', 'mean_energy'))} | {fmt(overall('random', 'min_energy'))} | "
                 f"{fmt(overall('mcts', 'min_energy'))} | |")
    better_valid = sum(r["mcts"]["validity_rate"] > r["random"]["validity_rate"] for r in rows)
    both = [r for r in rows if not math.isnan(r["mcts"]["min_energy"]) and not math.isnan(r["random"]["min_energy"])]
    better_min = sum(r["mcts"]["min_energy"] < r["random"]["min_energy"] for r in both)
    lines.append("")
    lines.append(f"MCTS validity higher on {better_valid}/{len(rows)} compositions; minimum energy lower on "
                 f"{better_min}/{len(both)} (compositions where both found a valid structure). Energies: "
                 f"{args.energy} eV/atom of the structure as generated; validity: {args.validity}.")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
