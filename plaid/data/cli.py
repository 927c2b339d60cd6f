"""``plaid data build`` and ``plaid data info``."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build and inspect training datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")

    build = sub.add_parser(
        "build",
        help="encode structures into a prompt/completion DatasetDict",
        description=(
            "Encode crystal structures as text and write a DatasetDict (train/validation/test) of TRL "
            "prompt/completion rows with a dataset card. SOURCE is a CDVAE-format CSV, a directory of CIF files, "
            "hf:owner/name[:split], or one of mp_20, perov_5, carbon_24, mpts_52 (found under --data-root or "
            "PLAID_DATA_DIR, else downloaded and checksummed into the cache). Re-running with the same --out "
            "resumes the encoding where a killed run stopped."
        ),
    )
    build.add_argument("source")
    build.add_argument("--out", required=True, help="output directory (dataset/, README.md, build_report.json)")
    build.add_argument("--representation", default="wyckoff", choices=["wyckoff", "coords", "cif"])
    build.add_argument(
        "--task-mix", default=None, help="e.g. unconditional=1,conditional=1,infill=1 (default: PLaID's 2/3 gen, 1/3 infill)"
    )
    build.add_argument("--examples-per-structure", type=int, default=1)
    build.add_argument(
        "--splits",
        default=None,
        help="train,validation,test fractions of a seeded split by structure (1,0,0: all for training); default: "
        "the source's own splits, else 0.9,0.05,0.05",
    )
    build.add_argument("--source-splits", default=None, help="for named datasets: comma-separated splits to read")
    build.add_argument("--data-root", default=None, help="directory holding <name>/<split>.csv")
    build.add_argument("--max-structures", type=int, default=None)
    build.add_argument("--num-proc", type=int, default=1)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also push the dataset and its card")
    build.set_defaults(func=_build)

    info = sub.add_parser("info", help="print the build report of a built dataset")
    info.add_argument("path")
    info.set_defaults(func=_info)
    data.set_defaults(func=lambda args: data.print_help() or 2)


def _build(args: argparse.Namespace) -> int:
    from . import build_dataset

    fractions = tuple(float(x) for x in args.splits.split(",")) if args.splits else None
    dataset, report = build_dataset(
        args.source,
        args.representation,
        out_dir=args.out,
        task_mix=args.task_mix,
        examples_per_structure=args.examples_per_structure,
        split_fractions=fractions,
        seed=args.seed,
        num_proc=args.num_proc,
        max_structures=args.max_structures,
        source_splits=tuple(args.source_splits.split(",")) if args.source_splits else None,
        data_root=args.data_root,
    )
    print(json.dumps({k: report.to_dict()[k] for k in ("n_input", "n_encoded", "failures", "split_counts")}, indent=2))
    if args.push_to_hub:
        from huggingface_hub import DatasetCard

        dataset.push_to_hub(args.push_to_hub)
        DatasetCard.load(f"{args.out}/README.md").push_to_hub(args.push_to_hub, repo_type="dataset")
    return 0


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    report = Path(args.path) / "build_report.json"
    if not report.exists():
        raise SystemExit(f"{report} not found: not a plaid-built dataset directory")
    print(report.read_text())
    return 0
