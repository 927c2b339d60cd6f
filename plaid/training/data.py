"""Datasets for the recipes: SFT prompt/completion rows from plaid.data.build_dataset, DPO preference pairs from
a DatasetDict saved with save_to_disk (``plaid pairs``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")
DATASET_SUBDIR = "dataset"  # build output inside the run's output_dir (data, build_report.json, card)


def expand_path(value: str) -> str:
    """``${PLAID_DATA_DIR}/perov_5/val.csv`` -> an absolute path; an unset variable is an error, not a literal."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    if "$" in expanded:
        raise ValueError(f"{value!r}: environment variable not set (e.g. export PLAID_DATA_DIR=...)")
    return expanded


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / DATASET_SUBDIR / "dataset_dict.json").exists()


def sft_dataset(plaid_args, output_dir: str | os.PathLike):
    """The SFT ``DatasetDict`` (columns prompt, completion; other builder columns kept out of the trainer).

    ``dataset_source`` is either a dataset already built (a save_to_disk directory, or a build directory holding
    ``dataset/``), or anything ``plaid.data.build_dataset`` reads; a fresh build is written (resumably) to
    ``<output_dir>/dataset`` with its build report and dataset card.
    """
    from ..data import build_dataset, load_built

    if not plaid_args.dataset_source:
        raise ValueError("set dataset_source (plaid argument) for SFT")
    source = expand_path(plaid_args.dataset_source)
    if Path(source).is_dir() and _is_saved_dataset(Path(source)):
        dataset = load_built(source)
        logger.info("loaded built dataset %s", source)
    else:
        built = build_dataset(
            source,
            representation=plaid_args.representation,
            out_dir=Path(output_dir) / DATASET_SUBDIR,
            task_mix=plaid_args.task_mix,
            seed=plaid_args.dataset_seed,
            num_proc=plaid_args.data_num_proc,
            max_structures=plaid_args.max_structures,
            examples_per_structure=plaid_args.examples_per_structure,
            prompt_style=plaid_args.prompt_style,
            **({"split_fractions": plaid_args.split_tuple()} if plaid_args.split_fractions else {}),
        )
        dataset = built[0] if isinstance(built, tuple) else built
    if plaid_args.max_structures is not None and Path(source).is_dir():
        logger.warning("max_structures is ignored for a dataset that is already built (%s)", source)
    return _select(dataset, SFT_COLUMNS, source)


def preference_dataset(plaid_args):
    """The DPO ``DatasetDict`` (columns prompt, chosen, rejected) saved at ``preference_dataset``; with
    ``preference_pairs: mismatch``, toy pairs made from the built SFT dataset there (see ``mismatch_pairs``)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    if not plaid_args.preference_dataset:
        raise ValueError("set preference_dataset (plaid argument) for DPO: the output of plaid pairs")
    path = expand_path(plaid_args.preference_dataset)
    if plaid_args.preference_pairs == "mismatch":
        from ..data import load_built

        return mismatch_pairs(load_built(path), seed=plaid_args.dataset_seed)
    dataset = load_from_disk(path)
    if isinstance(dataset, Dataset):
        dataset = DatasetDict({"train": dataset})
    return _select(dataset, DPO_COLUMNS, path)


def mismatch_pairs(dataset, seed: int = 0, tasks: tuple[str, ...] = ("conditional", "infill")):
    """Toy preference pairs from a built SFT ``DatasetDict`` (for smoke runs and tests, not for alignment).

    For each row whose task is in ``tasks``: prompt = its prompt, chosen = its own completion (the true crystal for
    those conditions / the true masked element), rejected = the completion of another row of the same task with a
    different completion (a crystal that does not satisfy the conditions / a wrong element). Rows with no such
    partner are left out and counted in the log.
    """
    import numpy as np
    from datasets import Dataset, DatasetDict

    out = {}
    for name, ds in dataset.items():
        rows = {"prompt": [], "chosen": [], "rejected": []}
        skipped = 0
        all_tasks, all_prompts, all_completions = list(ds["task"]), list(ds["prompt"]), list(ds["completion"])
        for task in tasks:
            idx = [i for i, t in enumerate(all_tasks) if t == task]
            prompts = [all_prompts[i] for i in idx]
            completions = [all_completions[i] for i in idx]
            order = np.random.default_rng(seed).permutation(len(idx))
            for k in range(len(idx)):
                partner = next(
                    (
                        order[(k + s) % len(idx)]
                        for s in range(1, len(idx))
                        if completions[order[(k + s) % len(idx)]] != completions[order[k]]
                    ),
                    None,
                )
                if partner is None:
                    skipped += 1
                    continue
                rows["prompt"].append(prompts[order[k]])
                rows["chosen"].append(completions[order[k]])
                rows["rejected"].append(completions[partner])
        if skipped:
            logger.info("mismatch pairs %s: %d rows without a differing partner left out", name, skipped)
        out[name] = Dataset.from_dict(rows)
    return DatasetDict(out)


def _select(dataset, columns: tuple[str, ...], origin: str):
    for split, ds in dataset.items():
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise ValueError(f"{origin} split {split!r} lacks column(s) {missing}; has {ds.column_names}")
    return dataset.select_columns(list(columns))


def split(dataset, name: str | None):
    """``dataset[name]``, None when the name is unset or the split is missing/empty (no evaluation then)."""
    if not name or name not in dataset or len(dataset[name]) == 0:
        return None
    return dataset[name]
