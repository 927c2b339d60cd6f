"""Dataset cards for built datasets (Hugging Face ``DatasetCard`` with YAML metadata)."""

from __future__ import annotations

import json

from huggingface_hub import DatasetCard, DatasetCardData

from ..paths import scrub_paths


def dataset_card(report, default_mix: dict) -> DatasetCard:
    """The card of a built dataset; the source is named without this machine's paths (a file under
    ``PLAID_DATA_DIR`` relative to it, e.g. ``perov_5/val.csv``, else its folder and file name)."""
    r = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    r = {**r, "source": scrub_paths(r["source"]), "versions": scrub_paths(r.get("versions", {}))}
    total = sum(r["split_counts"].values())
    data = DatasetCardData(
        language="en",
        license="cc-by-4.0",
        task_categories=["text-generation"],
        tags=["materials", "crystal-structure", "plaid", r["representation"]],
        size_categories=["n<1K" if total < 1000 else "1K<n<10K" if total < 10000 else "10K<n<100K"],
    )
    failures = "\n".join(f"| {k} | {v} |" for k, v in sorted(r["failures"].items())) or "| none | 0 |"
    tasks = "\n".join(f"| {k} | {v} |" for k, v in r["task_counts"].items())
    content = f"""---
{data.to_yaml()}
---

# plaid crystal-text dataset ({r["representation"]})

Prompt/completion rows (TRL format) for training language models to generate crystal structures, built by
plaid (`plaid data build`).

## Source

```json
{json.dumps(r["source"], indent=2)}
```

Property columns used for conditional prompts (source column per property): `{json.dumps(r["source"].get("property_columns", {}))}`.

## Representation and tasks

- Representation: `{r["representation"]}` with options `{json.dumps(r["representation_options"])}`; prompt style
  `{r.get("prompt_style", "plaid")}` (`plaid.prompts`; sample a model trained on it with `--prompt-style {r.get("prompt_style", "plaid")}`).
- Task mix: `{json.dumps({k: round(v, 4) for k, v in r["task_mix"].items()})}` (default `{json.dumps({k: round(v, 4) for k, v in default_mix.items()})}`:
  PLaID's 2/3 generation, 1/3 infilling). Seed {r["seed"]}; splits are by structure.
- Columns: `prompt`, `completion`, `task`, `conditions` (JSON), `material_id`, `text` (the full crystal text),
  `cif` (the source CIF).

## Counts

{r["n_encoded"]} of {r["n_input"]} input structures encoded; rows per split: `{json.dumps(r["split_counts"])}`.

| split/task | rows |
|---|---|
{tasks}

## Structures not encoded (by reason)

| reason | count |
|---|---|
{failures}

Each one is listed with its message in `failures.jsonl`.

## Build

{r["seconds"]} s ({r["structures_per_second"]} structures/s); versions `{json.dumps(r["versions"])}`.
"""
    return DatasetCard(content)
