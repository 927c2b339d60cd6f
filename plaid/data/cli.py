"""``plaid data build`` and ``plaid data info``."""

from __future__ import annotations

import argparse
import json

from plaid.prompts import PROMPT_STYLES


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
    build.add_argument("--representation", default="wyckoff", choices=["wyckoff", "wyckoff-plaid", "coords", "cif"])
    build.add_argument(
        "--prompt-style",
        default="plaid",
        choices=tuple(PROMPT_STYLES),
        help="wording of the prompts (plaid.prompts): plaid's own, PLaID's paper, crystal-text-llm's or CrystaLLM's "
        "(cif only); recorded in the dataset card",
    )
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
    build.add_argument(
        "--chunk-size", type=int, default=2000, help="structures encoded between writes to encoded.jsonl (resume points)"
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also push the dataset and its card")
    build.set_defaults(func=_build)

    info = sub.add_parser("info", help="print the build report of a built dataset")
    info.add_argument("path")
    info.set_defaults(func=_info)
    data.set_defaults(func=lambda args: data.print_help() or 2)


def _check_build(args: argparse.Namespace) -> tuple[float, ...] | None:
    """Every argument error before anything is encoded or written; returns the split fractions."""
    from pathlib import Path

    from ..cli_checks import (
        as_usage_error,
        read_csv_checked,
        require_dir,
        require_positive,
        require_structure_source,
        require_writable_dir,
    )
    from ..errors import InputError
    from .build import assign_splits
    from .sources import NAMED_DATASETS
    from .tasks import check_style, parse_task_mix

    if args.source.startswith("hf:"):
        if "/" not in args.source[3:]:
            raise InputError(f"source {args.source}: give hf:owner/name[:split]")
    elif args.source in NAMED_DATASETS:
        if args.data_root is not None:
            require_dir(args.data_root, "data root", "--data-root")
        known = NAMED_DATASETS[args.source].splits
        unknown = [s for s in (args.source_splits or "").split(",") if s and s not in known]
        if unknown:
            raise InputError(f"--source-splits: {args.source} has splits {', '.join(known)}, not {', '.join(unknown)}")
    else:
        source = Path(args.source).expanduser()
        if source.is_dir():
            require_structure_source(source, "source")
        elif source.exists() or source.suffix:
            read_csv_checked(source, "source", hint="give a CDVAE-format CSV (material_id, cif, ...), a directory "
                                                    "of .cif files, hf:owner/name or a named dataset")
        else:
            raise InputError(f"source {args.source} is not a file, a directory, hf:owner/name, or one of "
                             f"{', '.join(NAMED_DATASETS)}")
    require_writable_dir(args.out, "--out")
    fractions = None  # the source's own splits, else the builder's default
    if args.splits:
        with as_usage_error("--splits"):
            fractions = tuple(float(x) for x in args.splits.split(","))
            assign_splits([], fractions, 0)
    with as_usage_error("--task-mix"):
        mix = parse_task_mix(args.task_mix)
    with as_usage_error("--prompt-style"):
        check_style(args.prompt_style, args.representation, mix)
    require_positive(args.examples_per_structure, "--examples-per-structure")
    require_positive(args.max_structures, "--max-structures")
    require_positive(args.num_proc, "--num-proc")
    require_positive(args.chunk_size, "--chunk-size")
    return fractions


def _build(args: argparse.Namespace) -> int:
    import urllib.error

    from ..errors import NothingProducedError

    fractions = _check_build(args)
    try:
        dataset, report = _run_build(args, fractions)
    except (FileNotFoundError, urllib.error.URLError) as exc:  # a named dataset not found locally nor downloadable
        from .sources import NAMED_DATASETS

        if args.source not in NAMED_DATASETS:
            raise
        from ..errors import InputError

        raise InputError(f"source {args.source}: {exc}; put {args.source}/<split>.csv under --data-root or "
                         "PLAID_DATA_DIR") from None
    print(json.dumps({k: report.to_dict()[k] for k in ("n_input", "n_encoded", "failures", "split_counts")}, indent=2))
    if report.n_encoded == 0:
        raise NothingProducedError(
            f"0 of {report.n_input} structures encoded (failures: {report.failures or 'none'}); the reasons are in "
            f"{args.out}/failures.jsonl and {args.out}/build_report.json"
        )
    if args.push_to_hub:
        from huggingface_hub import DatasetCard

        dataset.push_to_hub(args.push_to_hub)
        DatasetCard.load(f"{args.out}/README.md").push_to_hub(args.push_to_hub, repo_type="dataset")
    return 0


def _run_build(args: argparse.Namespace, fractions: tuple[float, ...] | None):
    from . import build_dataset

    return build_dataset(
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
        chunk_size=args.chunk_size,
        prompt_style=args.prompt_style,
    )


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..cli_checks import require_dir, require_json_file

    require_dir(args.path, "built dataset")
    report = Path(args.path) / "build_report.json"
    if not report.exists():
        from ..errors import InputError

        raise InputError(f"{report} not found: {args.path} is not a finished plaid data build (run plaid data build)")
    print(json.dumps(require_json_file(report, "build report"), indent=2))
    return 0
