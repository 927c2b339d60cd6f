"""``plaid pairs`` and ``plaid align``."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pairs",
        help="build DPO preference pairs from a model's own samples",
        description=(
            "Label samples from `plaid sample` (relaxation with an MLIP, energy above hull; or read the labels of "
            "`plaid evaluate --out EVAL_DIR` with --labels) and pair, within each prompt, accepted with rejected "
            "generations. Writes a DatasetDict (train/test; prompt, chosen, rejected, chosen_e_hull, "
            "rejected_e_hull, ...) loadable with datasets.load_from_disk(OUT), with a dataset card. Labelling is "
            "cached in OUT_labels/ and resumes after a kill."
        ),
    )
    p.add_argument("samples", help="plaid sample JSONL")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", default=None, metavar="EVAL_DIR", help="use plaid evaluate results instead of relaxing")
    p.add_argument("--labels-dir", default=None, help="where labelling caches go (default: OUT_labels)")
    p.add_argument("--mode", default="basic", choices=["basic", "tiered", "spacegroup"])
    p.add_argument("--ratio", type=int, default=3, help="rejected per accepted (PLaID: 3)")
    p.add_argument("--threshold", type=float, default=0.08, help="accepted: E_hull below this (eV/atom)")
    p.add_argument("--stable-threshold", type=float, default=0.0, help="tiered: stable at or below this")
    p.add_argument("--relaxer", default="m3gnet", choices=["m3gnet", "chgnet"], help="labelling MLIP (PLaID: M3GNet)")
    p.add_argument("--model-path", default=None, help="MLIP weights directory")
    p.add_argument("--max-steps", "--relax-steps", dest="max_steps", type=int, default=500,
                   help="FIRE steps per structure (PLaID: 500)")
    p.add_argument("--energy-scale", default=None, choices=["mp2020", "mp_raw"],
                   help="scale of --model-path's energies (needed for weights other than the stock ones)")
    p.add_argument("--fmax", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="torch device of the labelling MLIP (cpu, cuda, cuda:1...)")
    p.add_argument("--hull", default=None, help="MP hull: Matbench Discovery ppd .pkl.gz or MP entries .json.gz")
    p.add_argument("--reference", default=None,
                   help="training CSV: novelty for --mode tiered, and the offline hull when --hull is not given")
    p.add_argument("--test-size", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    p.set_defaults(func=_pairs)

    a = subparsers.add_parser(
        "align",
        help="iterate sample -> label -> pairs -> DPO (PLaID/PLaID++ alignment loop)",
        description=(
            "Run N alignment iterations from an SFT adapter; each starts from the previous adapter and keeps it as "
            "the frozen reference. CONFIG is a flat YAML (see recipes/configs/tiny/align.yaml); unknown keys are "
            "errors. Each iteration has its own folder; a re-run resumes at the stage where it stopped."
        ),
    )
    a.add_argument("--config", required=True)
    a.set_defaults(func=_align)


def _pairs(args: argparse.Namespace) -> int:
    from .dataset import load_labeller, make_preference_dataset
    from .pairs import PairingError

    relaxer = hull = None
    if args.labels is None:
        from ..hull import load_hull

        if args.hull is None and args.reference is None:
            raise SystemExit("plaid pairs: give --hull (MP hull) or --reference (training CSV for an offline hull), "
                             "or --labels EVAL_DIR")
        hull = load_hull(args.hull, reference_csv=args.reference if args.hull is None else None)
        relaxer = load_labeller(args.relaxer, args.model_path, args.fmax, args.max_steps, args.batch_size,
                                device=args.device, energy_scale=args.energy_scale)
    try:
        _, stats = make_preference_dataset(
            args.samples, args.out, labels_dir=args.labels_dir, eval_dir=args.labels, mode=args.mode,
            ratio=args.ratio, threshold=args.threshold, stable_threshold=args.stable_threshold, relaxer=relaxer,
            hull=hull, reference_csv=args.reference, test_size=args.test_size, seed=args.seed,
            push_to_hub=args.push_to_hub,
        )
    except (PairingError, ValueError, FileNotFoundError) as exc:  # bad input: one line, never a traceback
        raise SystemExit(f"plaid pairs: {exc}") from None
    print(json.dumps({k: stats[k] for k in ("n_samples", "status_counts", "n_accepted", "n_rejected", "n_pairs",
                                             "pair_types", "split_counts")}, indent=2))
    return 0


def _align(args: argparse.Namespace) -> int:
    from .align import AlignConfig, run_alignment

    summary = run_alignment(AlignConfig.from_yaml(args.config))
    print(summary["table"])
    return 0
