"""``plaid benchmark csp`` and ``plaid benchmark gen``."""

from __future__ import annotations

import argparse
import json

from plaid.prompts import PROMPT_STYLES


def _sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory (full model or LoRA adapter)")
    p.add_argument("--out", required=True, help="output directory (re-running with it resumes)")
    p.add_argument("--representation", default=None, help="default: the model's, from its plaid_run.json")
    p.add_argument(
        "--prompt-style",
        default=None,
        choices=tuple(PROMPT_STYLES),
        help="wording of the prompts (plaid.prompts); default: the style the model was trained with, else plaid",
    )
    p.add_argument(
        "--no-constrained",
        dest="constrained",
        action="store_false",
        help="sample without the grammar (default: grammar-constrained decoding)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument(
        "--dataset",
        default=None,
        choices=["perov_5", "carbon_24", "mp_20", "mpts_52"],
        help="which published rows to show (default: guessed from the data paths)",
    )
    p.add_argument("-j", "--jobs", type=int, default=1, help="worker processes for matching / fingerprints")


def register(subparsers) -> None:
    bench = subparsers.add_parser(
        "benchmark", help="CSP and unconditional-generation benchmarks beside the published tables"
    )
    sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    csp = sub.add_parser(
        "csp",
        help="crystal structure prediction: match rate and RMSE at n candidates per test structure",
        description="Prompt the model with each target's cell composition (optionally its space group), sample "
        "max(n) candidates per target, match them with StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10). "
        "Writes DIR/results.json, DIR/table.md, DIR/samples.jsonl and DIR/csp/.",
    )
    csp.add_argument(
        "--targets",
        required=True,
        help="test structures: a CDVAE CSV, or a built dataset directory (its --split split)",
    )
    csp.add_argument("--split", default="test", help="split of a built dataset (default test)")
    csp.add_argument("--n", type=int, nargs="+", default=[1, 20], help="numbers of candidates (default 1 20)")
    csp.add_argument("--num-targets", type=int, default=None, help="first K targets only")
    csp.add_argument("--spacegroup", action="store_true", help="also give the target's space group")
    csp.add_argument(
        "--candidate-filter", default="struct_valid", choices=["struct_valid", "valid", "parsed"]
    )
    csp.add_argument(
        "--first-greedy",
        action="store_true",
        help="candidate 1 of each target by greedy decoding (the model's most likely text), candidates "
        "2..max(n) sampled at --temperature: n=1 scores the mode, n=20 the mode plus 19 draws",
    )
    csp.add_argument(
        "--distinct",
        action="store_true",
        help="a target's candidates are pairwise different structures (StructureMatcher ltol 0.2, stol 0.3, "
        "angle 5): a draw that duplicates an earlier candidate is set aside and redrawn",
    )
    csp.add_argument(
        "--max-draws-per-candidate",
        type=int,
        default=5,
        help="with --distinct: at most this many draws per candidate slot and target (default 5)",
    )
    _sampling_options(csp)
    csp.set_defaults(func=_run_csp)

    gen = sub.add_parser(
        "gen",
        help="unconditional generation: validity, coverage, property distances, novelty, stability, S.U.N.",
        description="Sample N unconditional structures and evaluate them with plaid evaluate. Writes "
        "DIR/results.json, DIR/table.md, DIR/samples.jsonl and DIR/eval/.",
    )
    gen.add_argument(
        "--reference",
        required=True,
        help="training set (novelty): a CDVAE CSV, or a built dataset directory (its train split)",
    )
    gen.add_argument(
        "--test",
        default=None,
        help="test set for coverage (CDVAE): a CSV, or a built dataset "
        "directory (its test split); default: the reference",
    )
    gen.add_argument("--num-samples", type=int, default=1000)
    gen.add_argument("--max-atoms", type=int, default=None, help="grammar bound on atoms per cell")
    gen.add_argument(
        "--relaxer",
        default=None,
        choices=["chgnet", "m3gnet"],
        help="relax samples for stability and S.U.N. (default: no relaxation)",
    )
    gen.add_argument("--relaxer-model", default=None, help="model path of the relaxer (m3gnet weights directory)")
    gen.add_argument("--relax-steps", type=int, default=500, help="FIRE steps per structure (default 500)")
    gen.add_argument("--hull", default=None, help="hull file for E_hull (with --relaxer)")
    _sampling_options(gen)
    gen.set_defaults(func=_run_gen)
    bench.set_defaults(func=lambda args: bench.print_help() or 2)


def _check(args, structure_options: dict[str, str]) -> None:
    """Every input error before the model loads: structures, output, options, then the model directory."""
    from ..cli_checks import require_model_dir, require_positive, require_structures, require_writable_dir

    for option, split in structure_options.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None:
            require_structures(value, option, split)
    require_writable_dir(args.out, "--out")
    require_positive(args.batch_size, "--batch-size")
    require_positive(args.jobs, "--jobs")
    for option in ("--n", "--num-targets", "--num-samples", "--relax-steps", "--max-draws-per-candidate"):
        values = getattr(args, option.lstrip("-").replace("-", "_"), None)
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                require_positive(value, option)
    require_model_dir(args.model, "--model")


def _common(args) -> dict:
    return dict(
        representation=args.representation,
        constrained=args.constrained,
        batch_size=args.batch_size,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        device=args.device,
        dataset=args.dataset,
        n_jobs=args.jobs,
        prompt_style=args.prompt_style,
    )


def _run_csp(args) -> int:
    from .csp import CSPBenchmarkConfig, run_csp_benchmark

    _check(args, {"--targets": args.split})
    cfg = CSPBenchmarkConfig(
        n_values=tuple(sorted(set(args.n))),
        num_targets=args.num_targets,
        spacegroup=args.spacegroup,
        split=args.split,
        candidate_filter=args.candidate_filter,
        first_greedy=args.first_greedy,
        distinct=args.distinct,
        max_draws_per_candidate=args.max_draws_per_candidate,
        **_common(args),
    )
    results = run_csp_benchmark(args.model, args.targets, args.out, cfg)
    print(json.dumps({k: results[k] for k in ("match_rate", "rmse", "counts")}, indent=2))
    print(f"wrote {args.out}/results.json and {args.out}/table.md")
    return 0


def _run_gen(args) -> int:
    from .gen import GenBenchmarkConfig, run_gen_benchmark

    _check(args, {"--reference": "train", "--test": "test"})
    cfg = GenBenchmarkConfig(
        num_samples=args.num_samples,
        max_atoms=args.max_atoms,
        relaxer=args.relaxer,
        relaxer_model_path=args.relaxer_model,
        relax_steps=args.relax_steps,
        hull=args.hull,
        **_common(args),
    )
    results = run_gen_benchmark(args.model, args.reference, args.out, test=args.test, config=cfg)
    print(json.dumps(results["metrics"], indent=2))
    print(f"wrote {args.out}/results.json and {args.out}/table.md")
    return 0
