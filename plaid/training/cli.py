"""``plaid push`` (adapter + model card to the Hub) and ``plaid merge`` (adapter folded into a bf16 base)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="push a trained adapter/model with a model card to the Hugging Face Hub",
        description="Writes RUN_DIR/README.md (model card: base model, representation, dataset and its card, "
        "training configuration, evaluation results from report.json when present) and uploads the adapter, "
        "tokenizer, card, plaid_run.json and report.json to REPO_ID.",
    )
    p.add_argument("run_dir", help="output_dir of a recipes/sft.py or recipes/dpo.py run")
    p.add_argument("repo_id", help="owner/name on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument(
        "--eval-report", default=None, help="report.json of plaid evaluate (default: RUN_DIR/report.json)"
    )
    p.add_argument("--dataset-repo", default=None, help="Hub dataset id to name in the card metadata")
    p.add_argument(
        "--include-base", action="store_true", help="also upload RUN_DIR/base_model (local plaid-* bases)"
    )
    p.add_argument(
        "--card-only", action="store_true", help="write RUN_DIR/README.md and list the files; no upload"
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

    from ..cli_checks import require_json_file, require_writable_dir
    from ..errors import UsageError
    from .publish import CARD_FILE, build_model_card, files_to_push, push

    _check_run_dir(args.run_dir, "RUN_DIR")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", args.repo_id):
        raise UsageError(f"REPO_ID {args.repo_id!r} is not a Hub id of the form owner/name")
    if args.eval_report is not None:
        require_json_file(args.eval_report, "evaluation report", "--eval-report", "give plaid evaluate's report.json")
    require_writable_dir(args.run_dir, "RUN_DIR")  # the card is written there

    if args.card_only:
        from pathlib import Path

        card = build_model_card(args.run_dir, args.repo_id, args.eval_report, args.dataset_repo)
        card.save(Path(args.run_dir) / CARD_FILE)
        files = files_to_push(args.run_dir, args.include_base)
        print(f"wrote {Path(args.run_dir) / CARD_FILE}; a push would upload: {', '.join(files)}")
        return 0
    files = push(
        args.run_dir,
        args.repo_id,
        private=args.private,
        eval_report=args.eval_report,
        dataset_repo=args.dataset_repo,
        include_base=args.include_base,
    )
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
