"""The model card of a recipe run (``plaid push``), following the Hub's model-card conventions.

Metadata (``huggingface_hub.ModelCardData``): ``base_model`` (the base's Hub id, so the Hub lists the adapter under
its base; omitted for a base plaid created locally), ``library_name`` (``peft`` for an adapter), ``datasets``,
``pipeline_tag: text-generation``, ``tags``, ``license`` (the base's licence, or ``--license``) and, when the run
has ``plaid benchmark`` results, ``model-index`` (``EvalResult`` rows). The body: base, training data (and its
dataset card), configuration, evaluation, and a usage section that samples and decodes one crystal. No local
absolute path is written: paths are made relative or replaced by names (``plaid.paths.public_path``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from ..paths import hub_id_from_cache_path, public_path, scrub_paths
from .model import ADAPTER_CONFIG, BASE_MODEL_SUBDIR, LOCAL_ARCHITECTURES, is_adapter_dir
from .run import RUN_RECORD

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
EVAL_REPORT = "report.json"
BENCHMARK_RESULTS = "results.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# (Hub id prefix of a base, licence id, licence name for "other"); the first match wins.
BASE_LICENSES = (
    ("meta-llama/Llama-2-", "llama2", None),
    ("meta-llama/Meta-Llama-3-", "llama3", None),
    ("meta-llama/Llama-3.1-", "llama3.1", None),
    ("meta-llama/Meta-Llama-3.1-", "llama3.1", None),
    ("meta-llama/Llama-3.2-", "llama3.2", None),
    ("Qwen/Qwen2.5-3B", "other", "qwen-research"),
    ("Qwen/Qwen2.5-72B", "other", "qwen"),
    ("Qwen/Qwen2.5-", "apache-2.0", None),
)
LOCAL_LICENSE = "apache-2.0"  # a model plaid created and trained from scratch: plaid's own licence by default
# Training-argument keys shown in the card (all of them are in plaid_run.json).
CARD_TRAINING_KEYS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "optim", "lr_scheduler_type", "warmup_steps", "bf16", "max_length", "packing", "completion_only_loss", "beta",
    "loss_type", "seed",
)  # fmt: skip
CARD_MODEL_KEYS = (
    "dtype", "load_in_4bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "use_peft", "lora_r", "lora_alpha",
    "lora_dropout", "lora_target_modules",
)  # fmt: skip
BENCHMARK_NAMES = {"perov_5": "Perov-5", "carbon_24": "Carbon-24", "mp_20": "MP-20", "mpts_52": "MPTS-52"}


# ------------------------------------------------------------------------------------------------- run facts


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


def find_benchmarks(run_dir: str | os.PathLike, given=()) -> list[Path]:
    """``plaid benchmark`` results.json files: each of ``given`` (a file or its directory), else every
    ``<run>/*/results.json`` that a benchmark wrote (its ``benchmark`` key is csp or gen)."""
    paths = []
    for item in given or ():
        path = Path(item)
        path = path / BENCHMARK_RESULTS if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"benchmark results {path} not found")
        paths.append(path)
    if given:
        return paths
    for path in sorted(Path(run_dir).glob(f"*/{BENCHMARK_RESULTS}")):
        try:
            if json.loads(path.read_text()).get("benchmark") in ("csp", "gen"):
                paths.append(path)
        except (OSError, ValueError, AttributeError):
            logger.warning("skipping %s: not a plaid benchmark results.json", path)
    return paths


def recorded_base(run_dir: Path, run: dict) -> str | None:
    """The base as this machine knows it: the adapter's base_model_name_or_path, else the run's base model."""
    if is_adapter_dir(run_dir):
        return json.loads((run_dir / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    return run.get("base_model") or run.get("model_args", {}).get("model_name_or_path")


def public_base(run_dir: str | os.PathLike, run: dict, base_model: str | None = None) -> tuple[str, bool]:
    """(the base's public name, whether it is a Hub id). ``base_model`` (``push --base-model``) wins; then a Hub
    id recorded as such or read off a Hugging Face cache path; then the config's ``model_name_or_path`` when it
    is a Hub id; a base plaid created (``plaid-*``) is named by its architecture; any other local directory by its
    folder name, with a warning (give ``--base-model``)."""
    if base_model:
        return str(base_model), bool(_HUB_ID.match(str(base_model)))
    run_dir = Path(run_dir)
    recorded = recorded_base(run_dir, run)
    configured = run.get("model_args", {}).get("model_name_or_path")
    candidates = [c for c in (recorded, configured) if c]
    for candidate in candidates:
        if _HUB_ID.match(str(candidate)) and not Path(str(candidate)).exists():
            return str(candidate), True
        hub_id = hub_id_from_cache_path(candidate)
        if hub_id:
            return hub_id, True
    for candidate in candidates:
        if str(candidate) in LOCAL_ARCHITECTURES:
            return str(candidate), False
        config = Path(str(candidate)) / "config.json"
        if config.is_file():
            architecture = json.loads(config.read_text()).get("plaid_architecture")
            if architecture:
                return architecture, False
    if not candidates:
        return "unknown", False
    name = Path(str(candidates[0])).name
    logger.warning("the base %s is a local directory that names no Hub id: published as %r; give its Hub id with "
                   "--base-model", candidates[0], name)  # fmt: skip
    return name, False


def base_license(base: str, is_hub: bool) -> tuple[str, str | None]:
    """(licence id, licence name when the id is "other") of a base model."""
    if not is_hub:
        return LOCAL_LICENSE, None
    for prefix, license_id, name in BASE_LICENSES:
        if base.startswith(prefix):
            return license_id, name
    logger.warning("unknown licence of the base %s: the card says 'other' (see the base); give --license", base)
    return "other", "base-model-license"


# ------------------------------------------------------------------------------------------- card sections


def _dataset_card(run_dir: Path, run: dict) -> tuple[str, str | None, str | None]:
    """(description of the training data, body of its dataset card or None, the source's public name)."""
    plaid_args = run.get("plaid_args", {})
    if run.get("recipe") == "dpo":
        source = plaid_args.get("preference_dataset")
        shown = public_path(source, run_dir) if source else None
        text = f"Preference pairs (prompt/chosen/rejected) from `{shown}` ({plaid_args.get('preference_pairs')})."
        candidates = [Path(str(source)) / CARD_FILE] if source else []
    else:
        source = plaid_args.get("dataset_source")
        shown = public_path(source, run_dir) if source else None
        text = (
            f"Built by `plaid.data.build_dataset` from `{shown}` in the `{plaid_args.get('representation')}` "
            f"representation, task mix `{plaid_args.get('task_mix') or 'default'}`"
            + (f", at most {plaid_args['max_structures']} structures" if plaid_args.get("max_structures") else "")
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
            return text, scrub_paths(body.strip(), run_dir), shown
    return text, None, shown


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


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and value != value) else float(value)


def eval_results(results: dict) -> list:
    """``huggingface_hub.EvalResult`` rows of one ``plaid benchmark`` results.json: CSP match rate (%) and RMSE
    at each n, or the generation metrics (rates in %, Wasserstein distances as they are). The dataset is the
    benchmark's (``perov_5``, ...; split ``test``)."""
    from huggingface_hub import EvalResult

    dataset = (results.get("data") or {}).get("dataset") or "unnamed"
    common = dict(
        task_type="text-generation",
        dataset_type=dataset,
        dataset_name=BENCHMARK_NAMES.get(dataset, dataset),
        dataset_split="test",
    )
    rows = []
    if results.get("benchmark") == "csp":
        spacegroup = (results.get("settings") or {}).get("spacegroup")
        task_name = "Crystal structure prediction" + (" (composition + space group)" if spacegroup else "")
        for n, rate in results.get("match_rate", {}).items():
            for kind, value, scale in (("match_rate", rate, 100), ("rmse", results.get("rmse", {}).get(n), 1)):
                if _number(value) is None:
                    continue
                rows.append(EvalResult(
                    task_name=task_name, metric_type=f"{kind}@{n}",
                    metric_name=f"match rate n={n} (%)" if kind == "match_rate" else f"RMSE n={n}",
                    metric_value=round(scale * _number(value), 4), **common,
                ))  # fmt: skip
    elif results.get("benchmark") == "gen":
        for key, value in (results.get("metrics") or {}).items():
            if _number(value) is None:
                continue
            percent = not key.startswith("wdist")
            rows.append(EvalResult(
                task_name="Unconditional crystal generation", metric_type=key,
                metric_name=f"{key} (%)" if percent else key,
                metric_value=round((100 if percent else 1) * _number(value), 4), **common,
            ))  # fmt: skip
    return rows


def _usage(repo_id: str, representation: str, is_adapter: bool, local_base: bool) -> str:
    """The few lines a visitor wants: sample one crystal with plaid's CLI, and with transformers/peft directly."""
    from ..prompts import generation_prompt

    prompt = generation_prompt(representation)
    if not is_adapter:
        load = "model = AutoModelForCausalLM.from_pretrained(repo)\ntokenizer = AutoTokenizer.from_pretrained(repo)"
        imports = "from transformers import AutoModelForCausalLM, AutoTokenizer"
    elif local_base:
        load = (f'base = AutoModelForCausalLM.from_pretrained(f"{{repo}}/{BASE_MODEL_SUBDIR}")  '
                "# the base plaid created, uploaded with the adapter\n"
                "model = PeftModel.from_pretrained(base, repo)\ntokenizer = AutoTokenizer.from_pretrained(repo)")
        imports = ("from huggingface_hub import snapshot_download\nfrom peft import PeftModel\n"
                   "from transformers import AutoModelForCausalLM, AutoTokenizer")
    else:
        load = ("model = AutoPeftModelForCausalLM.from_pretrained(repo)  # loads the base named in "
                "adapter_config.json\ntokenizer = AutoTokenizer.from_pretrained(repo)")
        imports = "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer"
    constrained = "" if representation == "cif" else " --constrained"  # grammars: wyckoff and coords
    repo_line = (f'repo = snapshot_download("{repo_id}")  # the repository as a local folder' if is_adapter and local_base
                 else f'repo = "{repo_id}"')
    return f"""With plaid (`pip install` it from its repository): download the repository and sample; every sample is
decoded, and parsed structures are written as CIFs.

```bash
hf download {repo_id} --local-dir plaid-model
plaid sample --model plaid-model --representation {representation} --num-samples 4{constrained} \\
    --out samples.jsonl --cif-dir cifs          # --composition "Sr1 Ti1 O3" to condition on a composition
```

With transformers{' and peft' if is_adapter else ''} only (plaid decodes the text into a pymatgen `Structure`):

```python
{imports}

{repo_line}
{load}
prompt = {json.dumps(prompt)}
inputs = tokenizer(prompt, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=512, do_sample=True, temperature=1.0)
text = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
print(text)

from plaid.representations import get
structure = get("{representation}").decode(text)  # raises DecodeError for an invalid crystal
print(structure.to(fmt="cif"))
```"""


# ---------------------------------------------------------------------------------------------------- card


def build_model_card(
    run_dir: str | os.PathLike,
    repo_id: str | None = None,
    eval_report: str | os.PathLike | None = None,
    dataset_repo: str | None = None,
    benchmarks=(),
    base_model: str | None = None,
    license: str | None = None,
):
    """The ``huggingface_hub.ModelCard`` of a recipe run: metadata (base_model, datasets, library_name,
    pipeline_tag, tags, license, model-index from ``plaid benchmark`` results), base model, training data (and
    its dataset card), training configuration, evaluation (report.json of plaid evaluate, benchmark tables) and
    usage. ``benchmarks``: results.json files or their directories (default: those found in the run)."""
    from huggingface_hub import ModelCard, ModelCardData

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    plaid_args, model_args, training_args = run["plaid_args"], run["model_args"], run["training_args"]
    representation = plaid_args["representation"]
    is_adapter = is_adapter_dir(run_dir)
    base, base_is_hub = public_base(run_dir, run, base_model)
    license_id, license_name = (license, None) if license else base_license(base, base_is_hub)
    data_text, data_card, _ = _dataset_card(run_dir, run)
    report_path = find_eval_report(run_dir, eval_report)
    bench_paths = find_benchmarks(run_dir, benchmarks)
    bench_results = [json.loads(p.read_text()) for p in bench_paths]
    name = repo_id or run_dir.name
    results = [r for b in bench_results for r in eval_results(b)]

    card_data = ModelCardData(
        model_name=name.split("/")[-1],
        base_model=base if base_is_hub else None,
        library_name="peft" if is_adapter else "transformers",
        datasets=[dataset_repo] if dataset_repo else None,
        pipeline_tag="text-generation",
        license=license_id,
        license_name=license_name,
        license_link=f"https://huggingface.co/{base}" if license_name == "base-model-license" else None,
        tags=["plaid", "materials", "crystal-generation", representation, run["recipe"]]
        + (["lora", "peft"] if is_adapter else []),
        eval_results=results or None,
    )
    local_base = is_adapter and not base_is_hub
    sections = [
        f"# {name}",
        f"A {'LoRA adapter' if is_adapter else 'model'} trained with plaid's `{run['recipe']}` recipe to generate "
        f"inorganic crystal structures as `{representation}` text.",
        "## Base model",
        (f"[`{base}`](https://huggingface.co/{base})" if base_is_hub else
         f"`{base}`: a model plaid created and trained here"
         + (f" (uploaded with the adapter under `{BASE_MODEL_SUBDIR}/` by `plaid push --include-base`)"
            if is_adapter else "")),
        "## Training data",
        data_text,
    ]  # fmt: skip
    if run["recipe"] == "dpo" and plaid_args.get("sft_adapter"):
        sections.append(
            f"DPO continued from the SFT adapter `{public_path(plaid_args['sft_adapter'], run_dir)}`; the reference "
            "model was a frozen copy of that adapter on the same base."
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
        "## Evaluation",
    ]
    if report_path is not None:
        report = json.loads(Path(report_path).read_text())
        sections += [
            f"From `{EVAL_REPORT}` (plaid evaluate); definitions and thresholds are recorded in that file.",
            _table(scrub_paths(_flatten(report), run_dir)[:80]),
        ]
    for path, result in zip(bench_paths, bench_results, strict=True):
        table = path.parent / "table.md"
        sections.append(
            f"`plaid benchmark {result.get('benchmark')}` ({BENCHMARK_NAMES.get(str(result.get('data', {}).get('dataset')), 'unnamed dataset')}, "
            f"`benchmarks/{path.parent.name}/`):\n\n"
            + (scrub_paths(table.read_text().strip(), run_dir) if table.is_file() else "")
        )
    if report_path is None and not bench_paths:
        sections.append("No evaluation report was found next to the weights.")
    sections += ["## Usage", _usage(name, representation, is_adapter, local_base)]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(scrub_paths(s, run_dir) for s in sections) + "\n"
    return ModelCard(content)
