"""``plaid pairs``: samples -> labels -> pairs -> a TRL preference ``DatasetDict`` with a dataset card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..io import read_jsonl
from .labels import Label, label_samples, labels_from_evaluation, write_labels
from .pairs import build_pairs, split_pairs

log = logging.getLogger(__name__)

COLUMNS = ("prompt", "chosen", "rejected", "chosen_e_hull", "rejected_e_hull", "chosen_id", "rejected_id",
           "rejected_status", "pair_type")


def load_labeller(relaxer: str = "m3gnet", model_path=None, fmax: float = 0.1, max_steps: int = 500,
                  batch_size: int = 32, timeout_s: float | None = None, device: str = "cpu",
                  energy_scale: str | None = None):
    from ..relax import get_relaxer

    return get_relaxer(relaxer, model_path=model_path, fmax=fmax, max_steps=max_steps, batch_size=batch_size,
                       timeout_s=timeout_s, device=device, energy_scale=energy_scale)


def load_reference_for_novelty(reference_csv: str | Path | None) -> dict | None:
    """The training set reduced for matching (cached under its sha256), with ``sha256`` added; None for None."""
    if reference_csv is None:
        return None
    from ..data.sources import sha256_of
    from ..evaluation.matching import reduce_reference
    from ..evaluation.samples import load_reference

    sha = sha256_of(reference_csv)
    reduced = reduce_reference(lambda: load_reference(reference_csv)[0], source_sha256=sha)
    return {**reduced, "sha256": sha}


def make_preference_dataset(
    samples: str | Path,
    out_dir: str | Path,
    *,
    labels_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    mode: str = "basic",
    ratio: int = 3,
    threshold: float = 0.08,
    stable_threshold: float = 0.0,
    relaxer=None,
    hull=None,
    reference_csv: str | Path | None = None,
    reference: dict | None = None,
    test_size: float = 0.1,
    seed: int = 0,
    push_to_hub: str | None = None,
    n_jobs=1,
    structure_column: str | None = None,
    e_hull_column: str | None = None,
):
    """Label (or read ``eval_dir`` labels), pair, split and save; returns (DatasetDict, stats).

    Novelty (tiered and msun modes) uses ``reference`` (an already reduced training set) or else reduces ``reference_csv``.

    Nothing is written to ``out_dir`` when no pair can be made (``PairingError``)."""
    from datasets import Dataset, DatasetDict, Features, Value

    from ..evaluation.outcome import OutcomeSettings

    records = read_sample_records(samples, structure_column)
    if not records:
        raise ValueError(f"{samples}: no sample records")
    labels_dir = Path(labels_dir or Path(out_dir).with_name(Path(out_dir).name + "_labels"))
    if eval_dir is not None:
        labels = labels_from_evaluation(records, eval_dir, stable_threshold=stable_threshold, source=str(samples))
        write_labels(labels_dir, labels)
        labeller = {"source": "plaid evaluate", "eval_dir": str(eval_dir), "labels_dir": str(labels_dir)}
    elif e_hull_column is not None:
        from ..evaluation.seed_files import given_e_hull_file

        e_hull, given, relaxed_given = given_e_hull_file(samples, e_hull_column)
        settings = OutcomeSettings(stable_threshold=stable_threshold, metastable_threshold=threshold)
        reference = reference if reference is not None else load_reference_for_novelty(reference_csv)
        labels = label_samples(records, labels_dir, relaxer=None, hull=None, reference=reference,
                               reference_sha256=(reference or {}).get("sha256"), settings=settings,
                               source=str(samples), e_hull=e_hull, e_hull_source=given,
                               relaxed_given=relaxed_given)
        labeller = {"source": "given", "column": e_hull_column, "labels_dir": str(labels_dir),
                    "outcome_settings": settings.to_dict()}
        hull = given
    else:
        if relaxer is None or hull is None:
            raise ValueError("labelling needs a relaxer and a hull (or eval_dir with plaid evaluate results)")
        reference = reference if reference is not None else load_reference_for_novelty(reference_csv)
        settings = OutcomeSettings(stable_threshold=stable_threshold, metastable_threshold=threshold)
        labels = label_samples(records, labels_dir, relaxer=relaxer, hull=hull, reference=reference,
                               reference_sha256=(reference or {}).get("sha256"), settings=settings,
                               source=str(samples), n_jobs=n_jobs)
        labeller = {"source": "plaid.relax", "relaxer": relaxer.describe(), "labels_dir": str(labels_dir),
                    "outcome_settings": settings.to_dict()}
    pairs, stats = build_pairs(labels, mode=mode, ratio=ratio, threshold=threshold,
                               stable_threshold=stable_threshold, seed=seed)
    train, test, split_by = split_pairs(pairs, test_size, seed)
    if len({p["prompt"] for p in pairs}) == 1:
        log.warning("all %d pairs share one prompt: the train/test split is by pair", len(pairs))
    features = Features({c: Value("float64") if c.endswith("_e_hull") else Value("string") for c in COLUMNS})
    parts = {"train": train, "test": test}
    dataset = DatasetDict({
        name: Dataset.from_dict({c: [p[c] for p in rows] for c in COLUMNS}, features=features)
        for name, rows in parts.items() if rows
    })
    described = hull.describe() if hasattr(hull, "describe") else hull if isinstance(hull, dict) else None
    stats.update(split_by=split_by, split_counts={k: len(v) for k, v in parts.items()}, samples=str(samples),
                 labeller=labeller, hull=described,
                 labels=_label_summary(labels, threshold, stable_threshold))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(out))
    (out / "pairs_report.json").write_text(json.dumps(stats, indent=2, default=str))
    card = preference_card(stats)
    (out / "README.md").write_text(card)
    if push_to_hub:
        from huggingface_hub import DatasetCard

        dataset.push_to_hub(push_to_hub)
        DatasetCard(card).push_to_hub(push_to_hub, repo_type="dataset")
    return dataset, stats


def read_sample_records(samples: str | Path, structure_column: str | None = None) -> list[dict]:
    """plaid sample JSONL records, or those of a PLaID sample CSV (:mod:`plaid.evaluation.seed_files`)."""
    if Path(samples).suffix.lower() == ".csv":
        from ..evaluation.seed_files import read_plaid_csv

        return read_plaid_csv(samples, structure_column)[0]
    return read_jsonl(samples)


def _label_summary(labels: list[Label], threshold: float, stable_threshold: float) -> dict:
    from ..evaluation.outcome import is_metastable, is_stable

    ok = [lab.e_hull_value for lab in labels if lab.status == "ok"]
    return {
        "n": len(labels),
        "n_ok": len(ok),
        "metastable_rate_of_all": sum(is_metastable(e, threshold) for e in ok) / len(labels) if labels else 0.0,
        "stable_rate_of_all": sum(is_stable(e, stable_threshold) for e in ok) / len(labels) if labels else 0.0,
    }


def preference_card(stats: dict) -> str:
    types = "\n".join(f"| {k} | {v} |" for k, v in sorted(stats["pair_types"].items()))
    statuses = "\n".join(f"| {k} | {v} |" for k, v in sorted(stats["status_counts"].items()))
    return f"""---
license: cc-by-4.0
task_categories:
- text-generation
tags:
- materials
- crystal-structure
- dpo
- plaid
---

# plaid preference pairs ({stats["mode"]})

Prompt/chosen/rejected rows (TRL preference format) built by `plaid pairs` from a model's own samples
(`{stats["samples"]}`): chosen and rejected are generated texts for the same prompt.

- Mode `{stats["mode"]}`, ratio 1:{stats["ratio"]}, metastability threshold E_hull < {stats["threshold"]} eV/atom,
  stability E_hull <= {stats["stable_threshold"]} eV/atom, seed {stats["seed"]}.
- Labeller: `{json.dumps(stats["labeller"], default=str)}`.
- Hull: `{json.dumps(stats.get("hull"), default=str)}`.
- Split by {stats["split_by"]}: `{json.dumps(stats["split_counts"])}`.

## Samples by label status

| status | samples |
|---|---|
{statuses}

{stats["n_accepted"]} accepted, {stats["n_rejected"]} rejected over {stats["n_prompts"]} prompt(s).

## Pairs by type

| type | pairs |
|---|---|
{types}
"""
