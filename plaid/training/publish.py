"""Publishing a trained adapter (``plaid push``) and merging one into its base (``plaid merge``).

The model card is built from what the run left next to the weights: ``plaid_run.json`` (base model,
representation, dataset source, every training argument), the dataset card of the SFT build
(``<run>/dataset/README.md``) or of the preference dataset, and an evaluation ``report.json`` when present.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .model import ADAPTER_CONFIG, BASE_MODEL_SUBDIR, adapter_base, is_adapter_dir
from .run import RUN_RECORD

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
EVAL_REPORT = "report.json"
# What a pushed repository holds (relative to the run directory); checkpoints, datasets, the DPO "ref" adapter
# and optimizer state stay local.
PUSH_PATTERNS = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    CARD_FILE,
    RUN_RECORD,
    EVAL_REPORT,
]
# Training-argument keys shown in the card (all of them are in plaid_run.json).
CARD_TRAINING_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "lr_scheduler_type",
    "warmup_steps",
    "bf16",
    "max_length",
    "packing",
    "completion_only_loss",
    "beta",
    "loss_type",
    "seed",
)
CARD_MODEL_KEYS = (
    "dtype",
    "load_in_4bit",
    "bnb_4bit_quant_type",
    "use_bnb_nested_quant",
    "use_peft",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
)


def read_run(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / RUN_RECORD
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: push/merge expects the output_dir of a plaid recipe run")
    return json.loads(path.read_text())


def find_eval_report(run_dir: str | os.PathLike, eval_report: str | os.PathLike | None = None) -> Path | None:
    """``eval_report`` if given, else ``<run>/report.json`` or ``<run>/eval/report.json`` when present."""
    if eval_report:
        path = Path(eval_report)
        if path.is_dir():
            path = path / EVAL_REPORT
        if not path.exists():
            raise FileNotFoundError(f"evaluation report {path} not found")
        return path
    for candidate in (Path(run_dir) / EVAL_REPORT, Path(run_dir) / "eval" / EVAL_REPORT):
        if candidate.exists():
            return candidate
    return None


def _dataset_card(run_dir: Path, run: dict) -> tuple[str, str | None]:
    """(description of the training data, body of its dataset card or None)."""
    plaid_args = run.get("plaid_args", {})
    if run.get("recipe") == "dpo":
        source = plaid_args.get("preference_dataset")
        text = f"Preference pairs (prompt/chosen/rejected) from `{source}` ({plaid_args.get('preference_pairs')})."
        candidates = [Path(str(source)) / CARD_FILE] if source else []
    else:
        source = plaid_args.get("dataset_source")
        text = (
            f"Built by `plaid.data.build_dataset` from `{source}` in the `{plaid_args.get('representation')}` "
            f"representation, task mix `{plaid_args.get('task_mix') or 'default'}`"
            + (
                f", at most {plaid_args['max_structures']} structures"
                if plaid_args.get("max_structures")
                else ""
            )
            + "."
        )
        candidates = [run_dir / "dataset" / CARD_FILE]
        if source:
            candidates += [Path(str(source)) / CARD_FILE, Path(str(source)) / "dataset" / CARD_FILE]
    for candidate in candidates:
        if candidate.is_file():
            body = candidate.read_text()
            if body.startswith("---"):
                body = body.split("---", 2)[-1]
            return text, body.strip()
    return text, None


def _flatten(value: Any, prefix: str = "", depth: int = 3) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and depth > 0:
        out = []
        for key, item in value.items():
            out += _flatten(item, f"{prefix}.{key}" if prefix else str(key), depth - 1)
        return out
    if isinstance(value, bool | int | float | str) or value is None:
        return [(prefix, value)]
    return []


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| `{k}` | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in rows]
    return "\n".join(lines)


def build_model_card(
    run_dir: str | os.PathLike,
    repo_id: str | None = None,
    eval_report: str | os.PathLike | None = None,
    dataset_repo: str | None = None,
):
    """The ``huggingface_hub.ModelCard`` of a recipe run: base model, representation, dataset (and its card),
    training configuration, evaluation results when a report.json is found."""
    from huggingface_hub import ModelCard, ModelCardData

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    plaid_args, model_args, training_args = run["plaid_args"], run["model_args"], run["training_args"]
    is_adapter = is_adapter_dir(run_dir)
    base = adapter_base(run_dir) if is_adapter else run.get("base_model")
    recorded_base = (
        json.loads((run_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] if is_adapter else base
    )
    local_base = bool(base) and Path(str(base)).exists()
    data_text, data_card = _dataset_card(run_dir, run)
    report_path = find_eval_report(run_dir, eval_report)

    card_data = ModelCardData(
        base_model=None if local_base else recorded_base,
        library_name="peft" if is_adapter else "transformers",
        datasets=[dataset_repo] if dataset_repo else None,
        pipeline_tag="text-generation",
        tags=["plaid", "materials", "crystal-generation", plaid_args["representation"], run["recipe"]]
        + (["lora"] if is_adapter else []),
    )
    name = repo_id or run_dir.name
    sections = [
        f"# {name}",
        f"A {'LoRA adapter' if is_adapter else 'model'} trained with plaid's `{run['recipe']}` recipe to generate "
        f"inorganic crystal structures as `{plaid_args['representation']}` text.",
        "## Base model",
        (
            f"`{recorded_base}` (a local model created by plaid; upload it with `plaid push --include-base`)"
            if local_base
            else f"[`{recorded_base}`](https://huggingface.co/{recorded_base})"
        ),
        "## Training data",
        data_text,
    ]
    if run["recipe"] == "dpo" and plaid_args.get("sft_adapter"):
        sections.append(
            f"DPO continued from the SFT adapter `{plaid_args['sft_adapter']}`; the reference model was a frozen copy "
            "of that adapter on the same base."
        )
    if data_card:
        sections.append(f"<details><summary>Dataset card</summary>\n\n{data_card}\n\n</details>")
    sections += [
        "## Training configuration",
        _table(
            [(k, model_args.get(k)) for k in CARD_MODEL_KEYS if k in model_args]
            + [(k, training_args.get(k)) for k in CARD_TRAINING_KEYS if k in training_args]
        ),
        f"All arguments are in `{RUN_RECORD}`. Final training metrics:",
        _table(sorted((k, v) for k, v in run.get("train_metrics", {}).items())),
    ]
    if report_path is not None:
        report = json.loads(Path(report_path).read_text())
        sections += [
            "## Evaluation",
            f"From `{EVAL_REPORT}` (plaid evaluate); definitions and thresholds are recorded in that file.",
            _table(_flatten(report)[:80]),
        ]
    else:
        sections += ["## Evaluation", "No evaluation report was found next to the weights."]
    sections += ["## Usage", _usage(name, is_adapter)]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"
    return ModelCard(content)


def _usage(name: str, is_adapter: bool) -> str:
    return (
        "```python\n"
        "from plaid.training import load_for_inference\n"
        f'model, tokenizer = load_for_inference("{name}")  # a downloaded snapshot directory\n'
        "```" + ("\nor `plaid merge` to fold the adapter into a bf16 base." if is_adapter else "")
    )


def files_to_push(run_dir: str | os.PathLike, include_base: bool = False) -> list[str]:
    """Relative paths a push uploads (after the card is written)."""
    import fnmatch

    run_dir = Path(run_dir)
    files = sorted(
        p.name
        for p in run_dir.iterdir()
        if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in PUSH_PATTERNS)
    )
    if include_base:
        base_dir = run_dir / BASE_MODEL_SUBDIR
        if not base_dir.is_dir():
            raise FileNotFoundError(f"--include-base: {base_dir} not found")
        files += sorted(str(p.relative_to(run_dir)) for p in base_dir.rglob("*") if p.is_file())
    return files


def push(
    run_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    eval_report: str | os.PathLike | None = None,
    dataset_repo: str | None = None,
    include_base: bool = False,
    token: str | None = None,
    api=None,
    commit_message: str | None = None,
) -> list[str]:
    """Write the model card into ``run_dir`` and upload the adapter (or model), tokenizer, card, run record and
    evaluation report to ``repo_id``. Returns the uploaded paths."""
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    card = build_model_card(run_dir, repo_id, eval_report, dataset_repo)
    card.save(run_dir / CARD_FILE)
    report = find_eval_report(run_dir, eval_report)
    if report is not None and report.resolve() != (run_dir / EVAL_REPORT).resolve():
        shutil.copyfile(report, run_dir / EVAL_REPORT)
    files = files_to_push(run_dir, include_base)
    if is_adapter_dir(run_dir) and not include_base and Path(adapter_base(run_dir)).exists():
        logger.warning(
            "the base model is a local directory: pass include_base=True (--include-base) to upload it"
        )
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(
        folder_path=str(run_dir),
        repo_id=repo_id,
        repo_type="model",
        allow_patterns=files,
        commit_message=commit_message or f"plaid push: {run_dir.name}",
    )
    logger.info("pushed %d files to %s", len(files), repo_id)
    return files


def merge(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "bfloat16") -> Path:
    """Fold a LoRA adapter into an unquantized copy of its base (``dtype``, bf16 by default) and save model +
    tokenizer to ``out_dir``. Warns when the base checkpoint is itself quantized, or when the adapter was trained
    on a 4-bit base (the merged bf16 model then differs slightly from the quantized model that was trained)."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    from .model import load_tokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not is_adapter_dir(adapter_dir):
        raise ValueError(f"{adapter_dir} holds no {ADAPTER_CONFIG}: nothing to merge")
    base = adapter_base(adapter_dir)
    config = AutoConfig.from_pretrained(base)
    if getattr(config, "quantization_config", None):
        logger.warning(
            "base %s is a quantized checkpoint (%s): merging into dequantized weights loses precision; merge into "
            "the original bf16 base instead",
            base,
            config.quantization_config.get("quant_method", "?")
            if isinstance(config.quantization_config, dict)
            else config.quantization_config,
        )
    run_path = adapter_dir / RUN_RECORD
    if run_path.exists() and json.loads(run_path.read_text()).get("model_args", {}).get("load_in_4bit"):
        logger.warning(
            "the adapter was trained on a 4-bit quantized base; it is merged into the %s base, so the merged "
            "model's outputs differ slightly from the quantized model that was trained",
            dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    load_tokenizer(
        str(adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base)
    ).save_pretrained(out_dir)
    if run_path.exists():
        shutil.copyfile(run_path, out_dir / RUN_RECORD)
    logger.info("merged %s into %s (%s) -> %s", adapter_dir, base, dtype, out_dir)
    return out_dir
