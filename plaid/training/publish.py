"""Publishing a trained adapter (``plaid push``) and merging one into its base (``plaid merge``).

The model card is built by ``plaid.training.card`` from what the run left next to the weights. What a push uploads
is staged first (``stage_upload``): the card, the adapter or model, tokenizer, ``plaid_run.json``, the evaluation
report and benchmark results, every text file with local absolute paths rewritten (``adapter_config.json``'s
``base_model_name_or_path`` becomes the base's Hub id or name), and checked to hold none.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..paths import local_paths_in, scrub_paths
from .card import (
    BENCHMARK_RESULTS,
    CARD_FILE,
    EVAL_REPORT,
    build_model_card,
    find_benchmarks,
    find_eval_report,
    public_base,
    read_run,
)
from .model import ADAPTER_CONFIG, BASE_MODEL_SUBDIR, adapter_base, is_adapter_dir
from .run import RUN_RECORD

__all__ = ["build_model_card", "files_to_push", "merge", "push", "read_run", "stage_upload"]

logger = logging.getLogger(__name__)

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
TEXT_SUFFIXES = (".json", ".md", ".jinja", ".txt", ".yaml", ".csv")
# Vocabularies: copied as they are and not scanned (a token may look like a path, "/usr"); they hold no paths.
VERBATIM = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt")


def files_to_push(run_dir: str | os.PathLike, include_base: bool = False) -> list[str]:
    """Relative paths in the run directory a push uploads (the card, report and benchmark results are staged
    beside them, see ``stage_upload``)."""
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


def _publish_file(source: Path, target: Path, run_dir: Path, link: bool) -> None:
    """Copy ``source`` to ``target``, text files with local paths made public (JSON value by value). With
    ``link``, weights and vocabularies are hard-linked instead (a short-lived staging folder: a later rewrite of
    the run's file would show through a link)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.name in VERBATIM:
        pass
    elif source.suffix == ".json":
        data = json.loads(source.read_text())
        clean = scrub_paths(data, run_dir)
        if clean != data:
            target.write_text(json.dumps(clean, indent=2, ensure_ascii=False) + "\n")
            return
    elif source.suffix in TEXT_SUFFIXES:
        text = source.read_text()
        clean = scrub_paths(text, run_dir)
        if clean != text:
            target.write_text(clean)
            return
    if link and source.suffix not in TEXT_SUFFIXES:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def stage_upload(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    repo_id: str,
    eval_report: str | os.PathLike | None = None,
    dataset_repo: str | None = None,
    include_base: bool = False,
    benchmarks=(),
    base_model: str | None = None,
    license: str | None = None,
    link: bool = False,
) -> list[str]:
    """Write exactly what a push uploads into ``out_dir`` (and the card to ``run_dir/README.md``); returns the
    relative paths. The adapter_config.json copy names the base by its Hub id or name; the evaluation report and
    benchmark results (``benchmarks/<dir>/results.json`` + ``table.md``) are included; no text file may keep a
    local absolute path (ValueError naming them). ``link``: hard-link weights instead of copying them."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    card = build_model_card(run_dir, repo_id, eval_report, dataset_repo, benchmarks, base_model, license)
    card.save(run_dir / CARD_FILE)
    sources = {name: run_dir / name for name in files_to_push(run_dir, include_base)}
    report = find_eval_report(run_dir, eval_report)
    if report is not None:
        sources[EVAL_REPORT] = report
    for path in find_benchmarks(run_dir, benchmarks):
        sources[f"benchmarks/{path.parent.name}/{BENCHMARK_RESULTS}"] = path
        if (path.parent / "table.md").is_file():
            sources[f"benchmarks/{path.parent.name}/table.md"] = path.parent / "table.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        _publish_file(source, out_dir / name, run_dir, link)
    if is_adapter_dir(run_dir):
        config = json.loads((out_dir / ADAPTER_CONFIG).read_text())
        config["base_model_name_or_path"] = public_base(run_dir, read_run(run_dir), base_model)[0]
        (out_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    left = {
        name: found
        for name in sources
        if Path(name).suffix in TEXT_SUFFIXES and Path(name).name not in VERBATIM and (found := local_paths_in((out_dir / name).read_text()))
    }
    if left:
        raise ValueError(f"local paths left in the files to upload: {left}")
    return sorted(sources)


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
    benchmarks=(),
    base_model: str | None = None,
    license: str | None = None,
) -> list[str]:
    """Write the model card into ``run_dir`` and upload the staged adapter (or model), tokenizer, card, run record,
    evaluation report and benchmark results to ``repo_id``. Returns the uploaded paths."""
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    if is_adapter_dir(run_dir) and not include_base and Path(adapter_base(run_dir)).exists():
        if not public_base(run_dir, read_run(run_dir), base_model)[1]:
            logger.warning(
                "the base model is a local directory: pass include_base=True (--include-base) to upload it"
            )
    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="plaid-push-") as staged:
        files = stage_upload(run_dir, staged, repo_id, eval_report, dataset_repo, include_base, benchmarks,
                             base_model, license, link=True)  # fmt: skip
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=staged,
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
