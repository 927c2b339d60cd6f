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
    p.add_argument("samples", help="plaid sample JSONL, or a PLaID sample CSV (gen_str, e_above_hull, ...)")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", default=None, metavar="EVAL_DIR", help="use plaid evaluate results instead of relaxing")
    p.add_argument("--labels-dir", default=None, help="where labelling caches go (default: OUT_labels)")
    p.add_argument("--e-hull-column", default=None, metavar="COLUMN",
                   help="take E_hull (eV/atom) from this column/field of SAMPLES (PLaID CSVs: e_above_hull) instead "
                        "of relaxing")
    p.add_argument("--structure-column", default=None, choices=["gen_str", "cif", "relaxed_cif"],
                   help="PLaID sample CSV: where the structures come from (default gen_str, decoded as wyckoff-plaid)")
    p.add_argument("--mode", default="basic", choices=["basic", "tiered", "msun", "spacegroup"],
                   help="basic (PLaID), tiered (PLaID++), msun (novel metastable classes over the rest) or spacegroup")
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
                   help="training CSV: novelty for --mode tiered/msun, and the offline hull when --hull is not given")
    p.add_argument("--test-size", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    from ..executors import add_executor_arguments

    add_executor_arguments(p)
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


def _check_pairs(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..cli_checks import (
        read_csv_checked,
        read_jsonl_checked,
        require_dir,
        require_fraction,
        require_hull,
        require_positive,
        require_writable_dir,
        same_settings,
    )
    from ..errors import InputError, UsageError
    from ..executors import require_executor

    if Path(args.samples).suffix.lower() == ".csv":
        from ..evaluation.seed_files import read_plaid_csv

        read_csv_checked(args.samples, "samples", columns=("gen_str",),
                         hint="give plaid sample JSONL or a PLaID sample CSV (gen_str column)")
        if args.structure_column is not None:
            read_csv_checked(args.samples, "samples", columns=(args.structure_column,),
                             hint="give a PLaID sample CSV (gen_str, cif, relaxed_cif, e_above_hull)")
        records = read_plaid_csv(args.samples, args.structure_column)[0]
    elif args.structure_column is not None:
        raise UsageError("--structure-column reads a column of a PLaID sample CSV; SAMPLES is not a CSV")
    else:
        records = read_jsonl_checked(args.samples, "samples")
    # records without sample_id get the ids plaid evaluate gives (their position); a prompt is needed for a pair
    missing = [str(r.get("sample_id", i)) for i, r in enumerate(records) if "prompt" not in r]
    if missing:
        raise InputError(f"samples: {len(missing)} record(s) of {args.samples} lack 'prompt' (first: "
                         f"{missing[0]}); give the JSONL written by plaid sample (or PLaID CSV rows whose "
                         "gen_str holds PLaID's prompt)")
    if args.e_hull_column is not None:
        if args.labels is not None or args.hull is not None or args.model_path is not None:
            raise UsageError("--e-hull-column takes E_hull from the samples file: drop --labels/--hull/--model-path")
        if not any(args.e_hull_column in r for r in _raw_rows(args.samples)):
            raise InputError(f"samples: {args.samples} has no {args.e_hull_column!r} column or field; name the one "
                             "that holds E_hull (PLaID: e_above_hull)")
    require_writable_dir(args.out, "--out")
    labels_dir = Path(args.labels_dir or Path(args.out).with_name(Path(args.out).name + "_labels"))
    require_writable_dir(labels_dir, "--labels-dir")
    require_positive(args.ratio, "--ratio")
    require_fraction(args.test_size, "--test-size")
    if args.reference is not None:
        read_csv_checked(args.reference, "training set", "--reference")
    if args.labels is not None:
        if args.hull is not None or args.model_path is not None:
            raise UsageError("--labels reads plaid evaluate's E_hull: drop --hull/--model-path, or drop --labels to "
                             "relax here")
        require_dir(args.labels, "plaid evaluate output", "--labels")
        read_csv_checked(Path(args.labels) / "structures.csv", "plaid evaluate results", "--labels",
                         columns=("e_hull",), hint="give the --out directory of a finished plaid evaluate run")
        return
    if args.e_hull_column is not None:
        same_settings(labels_dir / "labeller.json",
                      {"samples": str(Path(args.samples).resolve()), "e_hull_column": args.e_hull_column,
                       "structure_column": args.structure_column},
                      f"the labels in {labels_dir}",
                      "re-run with the same labelling options to resume, or give another --labels-dir to start clean")
        return
    if args.hull is None and args.reference is None:
        raise UsageError("give --hull (MP hull) or --reference (training CSV for an offline hull), or --labels "
                         "EVAL_DIR")
    require_hull(args.hull, args.reference)
    if args.model_path is not None and not Path(args.model_path).expanduser().exists():
        raise InputError(f"--model-path: {args.model_path} does not exist; give the MLIP weights directory")
    require_positive(args.max_steps, "--max-steps")
    require_positive(args.batch_size, "--batch-size")
    require_positive(args.jobs, "--jobs")
    require_executor(args)
    # labels.jsonl is reused on a re-run: it must come from the same labeller and hull
    same_settings(labels_dir / "labeller.json",
                  {"samples": str(Path(args.samples).resolve()), "relaxer": args.relaxer, "model_path": args.model_path,
                   "fmax": args.fmax, "max_steps": args.max_steps, "hull": args.hull,
                   "reference": args.reference if args.hull is None or args.mode in ("tiered", "msun") else None},
                  f"the labels in {labels_dir}",
                  "re-run with the same labelling options to resume, or give another --labels-dir to start clean")


def _raw_rows(path) -> list[dict]:
    from pathlib import Path

    if Path(path).suffix.lower() == ".csv":
        import pandas as pd

        return [dict.fromkeys(pd.read_csv(path, nrows=0).columns)]
    from ..io import read_jsonl

    return read_jsonl(path)


def _pairs(args: argparse.Namespace) -> int:
    from ..errors import InputError, NothingProducedError
    from ..executors import make_executor
    from .dataset import load_labeller, make_preference_dataset
    from .pairs import PairingError

    _check_pairs(args)
    jobs = make_executor(args.executor, args.jobs, args.ray_address) if args.executor == "ray" else args.jobs
    relaxer = hull = None
    if args.labels is None and args.e_hull_column is None:
        from ..hull import load_hull

        hull = load_hull(args.hull, reference_csv=args.reference if args.hull is None else None)
        relaxer = load_labeller(args.relaxer, args.model_path, args.fmax, args.max_steps, args.batch_size,
                                device=args.device, energy_scale=args.energy_scale)
    try:
        _, stats = make_preference_dataset(
            args.samples, args.out, labels_dir=args.labels_dir, eval_dir=args.labels, mode=args.mode,
            ratio=args.ratio, threshold=args.threshold, stable_threshold=args.stable_threshold, relaxer=relaxer,
            hull=hull, reference_csv=args.reference, test_size=args.test_size, seed=args.seed,
            push_to_hub=args.push_to_hub, n_jobs=jobs, structure_column=args.structure_column,
            e_hull_column=args.e_hull_column,
        )
    except PairingError as exc:
        where = args.labels or args.labels_dir or f"{args.out}_labels"
        raise NothingProducedError(f"0 pairs: {exc}; per-sample labels are in {where}") from None
    except (ValueError, FileNotFoundError) as exc:  # bad input: one line, never a traceback
        raise InputError(str(exc)) from None
    print(json.dumps({k: stats[k] for k in ("n_samples", "status_counts", "n_accepted", "n_rejected", "n_pairs",
                                             "pair_types", "split_counts")}, indent=2))
    return 0


def _check_align(args: argparse.Namespace):
    """The config parsed and every file it names checked; a resume must use the settings it started with."""
    import dataclasses
    from pathlib import Path

    import yaml

    from ..cli_checks import (
        as_usage_error,
        compare_settings,
        require_file,
        require_hull,
        require_model_dir,
        require_structures,
        require_writable_dir,
    )
    from ..errors import InputError
    from .align import AlignConfig

    require_file(args.config, "alignment config", "--config", "give a YAML like recipes/configs/tiny/align.yaml")
    try:
        with as_usage_error("--config"):
            config = AlignConfig.from_yaml(args.config)
    except yaml.YAMLError as exc:
        raise InputError(f"--config: {args.config} is not valid YAML ({str(exc).splitlines()[0]})") from None
    require_model_dir(config.sft_adapter, "sft_adapter")  # a LoRA adapter or a full model
    require_file(config.dpo_config, "DPO recipe config", "dpo_config", "give a recipes/configs/.../dpo*.yaml")
    require_hull(config.hull, config.reference, option="hull", reference_option="reference")
    if config.reference is not None:
        require_structures(config.reference, "reference", "train")  # a CDVAE CSV or a built dataset dir
    if config.relaxer_model_path is not None and not Path(config.relaxer_model_path).expanduser().exists():
        raise InputError(f"relaxer_model_path: {config.relaxer_model_path} does not exist")
    require_writable_dir(config.output_dir, "output_dir")
    previous = Path(config.output_dir) / "align_config.json"
    if previous.exists():  # written by every run: the settings a resume must keep (more iterations may be added)
        try:
            before = json.loads(previous.read_text())
        except json.JSONDecodeError:
            before = None
        if isinstance(before, dict):
            before.pop("iterations", None)
            settings = json.loads(json.dumps(dataclasses.asdict(config), default=str))
            settings.pop("iterations")
            compare_settings(before, settings, f"the alignment in {config.output_dir}",
                             "re-run with the same config to resume (only iterations may change), or set another "
                             "output_dir to start clean")
    return config


def _align(args: argparse.Namespace) -> int:
    from ..errors import NothingProducedError
    from .align import run_alignment

    summary = run_alignment(_check_align(args))
    print(summary["table"])
    stopped = [r for r in summary["rows"] if r.get("stopped")]
    if stopped and stopped[0]["iteration"] == 1:
        raise NothingProducedError(f"iteration 1 stopped: {stopped[0]['stopped']}; see the summary above")
    return 0
