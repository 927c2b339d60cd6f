"""``plaid push`` (adapter + model card to the Hub) and ``plaid merge`` (adapter folded into a bf16 base)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="push a trained adapter/model with a model card to the Hugging Face Hub",
        description="Writes RUN_DIR/README.md (model card: Hub metadata with base_model, datasets, license and "
        "model-index from plaid benchmark results; base model, representation, dataset and its card, training "
        "configuration, evaluation results, a usage section that samples a crystal) and uploads the adapter, "
        "tokenizer, card, plaid_run.json, report.json and benchmark results to REPO_ID. Uploaded files hold no "
        "local absolute path: adapter_config.json names the base by its Hub id or name.",
    )
    p.add_argument("run_dir", help="output_dir of a recipes/sft.py or recipes/dpo.py run")
    p.add_argument("repo_id", help="owner/name on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument(
        "--eval-report", default=None, help="report.json of plaid evaluate (default: RUN_DIR/report.json)"
    )
    p.add_argument("--dataset-repo", default=None, help="Hub dataset id to name in the card metadata")
    p.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="DIR",
        help="plaid benchmark output (its results.json) to report as model-index; repeatable (default: every "
        "RUN_DIR/*/results.json a benchmark wrote)",
    )
    p.add_argument(
        "--base-model",
        default=None,
        help="the base's Hub id, when the run trained on a local copy (default: read from the run; a Hugging Face "
        "cache path gives its id)",
    )
    p.add_argument("--license", default=None, help="licence id for the card (default: the base's licence)")
    p.add_argument(
        "--include-base", action="store_true", help="also upload RUN_DIR/base_model (local plaid-* bases)"
    )
    p.add_argument(
        "--card-only", action="store_true", help="write RUN_DIR/README.md and list the files; no upload"
    )
    p.add_argument(
        "--stage", default=None, metavar="DIR", help="with --card-only: also write exactly what would be uploaded to DIR"
    )
    p.set_defaults(func=_push)

    m = subparsers.add_parser(
        "merge",
        help="merge a LoRA adapter into its base model (bf16) for fast inference",
        description="Loads the adapter's base unquantized in DTYPE, merges the LoRA weights and saves model + "
        "tokenizer to OUT_DIR. Warns when the base is quantized or the adapter was trained on a 4-bit base.",
    )
    m.add_argument("adapter_dir")
    m.add_argument("out_dir")
    m.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    m.set_defaults(func=_merge)


def _check_run_dir(path, option: str):
    from pathlib import Path

    from ..cli_checks import require_dir, require_json_file, require_model_dir

    require_dir(path, "training run", option, "give the output_dir of a recipes/sft.py or recipes/dpo.py run")
    require_model_dir(path, option, allow_hub=False)
    run = Path(path) / "plaid_run.json"
    if not run.exists():
        from ..errors import InputError

        raise InputError(f"{option}: {path} has no plaid_run.json; give the output_dir of a plaid recipe run")
    record = require_json_file(run, "run record", option, "re-run the recipe or restore the file")
    missing = [k for k in ("plaid_args", "model_args", "training_args") if k not in record]
    if missing:
        from ..errors import InputError

        raise InputError(f"{option}: {run} lacks {', '.join(missing)}; it was not written by a plaid recipe run")


def _push(args) -> int:
    import re
    import tempfile
    from pathlib import Path

    from ..cli_checks import require_json_file, require_writable_dir
    from ..errors import UsageError
    from .publish import push, stage_upload

    _check_run_dir(args.run_dir, "RUN_DIR")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", args.repo_id):
        raise UsageError(f"REPO_ID {args.repo_id!r} is not a Hub id of the form owner/name")
    if args.base_model is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", args.base_model):
        raise UsageError(f"--base-model {args.base_model!r} is not a Hub id of the form owner/name")
    if args.eval_report is not None:
        require_json_file(args.eval_report, "evaluation report", "--eval-report", "give plaid evaluate's report.json")
    for item in args.benchmark:
        path = Path(item) / "results.json" if Path(item).is_dir() else Path(item)
        require_json_file(path, "benchmark results", "--benchmark", "give a plaid benchmark --out directory")
    if args.stage is not None and not args.card_only:
        raise UsageError("--stage goes with --card-only (a push stages into a temporary directory)")
    require_writable_dir(args.run_dir, "RUN_DIR")  # the card is written there
    options = dict(eval_report=args.eval_report, dataset_repo=args.dataset_repo, include_base=args.include_base,
                   benchmarks=args.benchmark, base_model=args.base_model, license=args.license)  # fmt: skip
    if args.card_only:
        if args.stage is not None:
            require_writable_dir(args.stage, "--stage")
            files = stage_upload(args.run_dir, args.stage, args.repo_id, **options)
            where = f"; staged in {args.stage}"
        else:
            with tempfile.TemporaryDirectory(prefix="plaid-push-") as staged:
                files = stage_upload(args.run_dir, staged, args.repo_id, **options)
            where = ""
        print(f"wrote {Path(args.run_dir) / 'README.md'}; a push would upload: {', '.join(files)}{where}")
        return 0
    files = push(args.run_dir, args.repo_id, private=args.private, **options)
    print(f"pushed {len(files)} files to https://huggingface.co/{args.repo_id}")
    return 0


def _merge(args) -> int:
    from pathlib import Path

    from ..cli_checks import require_model_dir, require_writable_dir
    from ..errors import UsageError
    from .publish import merge

    require_model_dir(args.adapter_dir, "ADAPTER_DIR", adapter_only=True)
    require_writable_dir(args.out_dir, "OUT_DIR")
    if Path(args.out_dir).resolve() == Path(args.adapter_dir).resolve():
        raise UsageError("OUT_DIR must differ from ADAPTER_DIR: the merged model would overwrite the adapter")

    out = merge(args.adapter_dir, args.out_dir, dtype=args.dtype)
    print(f"merged model written to {out}")
    return 0
