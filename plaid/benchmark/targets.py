"""What a benchmark reads: its test structures (a CDVAE CSV, or the held-out split of a dataset plaid built) and
what the model says about itself (``plaid_run.json``: representation, training data, training time)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..data.sources import NAMED_DATASETS

RUN_RECORD = "plaid_run.json"


def guess_dataset(*texts) -> str | None:
    """The named benchmark (perov_5, carbon_24, mp_20, mpts_52) a path or source description mentions."""
    for text in texts:
        for name in NAMED_DATASETS:
            if text and name in str(text):
                return name
    return None


def split_as_csv(path: str | Path, split: str, dest: str | Path) -> str:
    """A CSV path as given, or the ``split`` split of a built dataset directory written to ``dest`` as a CDVAE CSV
    (material_id, cif): how the benchmarks and ``plaid align`` take a recipe's own train/test split."""
    if not Path(path).is_dir():
        return str(path)
    frame, _ = load_targets(path, split=split)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(dest, index=False)
    return str(dest)


def load_targets(
    path: str | Path, split: str = "test", num_targets: int | None = None
) -> tuple[pd.DataFrame, dict]:
    """(frame with ``material_id`` and ``cif``, one row per structure, and a description of where it came from).

    ``path`` is a CSV with a ``cif`` column (CDVAE format; ``material_id`` optional), or a directory written by
    ``plaid data build`` / the SFT recipe (its ``split`` split: structures the model never trained on). The first
    ``num_targets`` structures are kept (file order, so the same K on every run)."""
    path = Path(path)
    if path.is_dir():
        from ..data import load_built

        built = load_built(path)
        if split not in built:
            raise ValueError(f"{path} has splits {list(built)}, not {split!r}")
        ds = built[split].select_columns(["material_id", "cif"]).to_pandas()
        frame = ds.drop_duplicates("material_id").reset_index(drop=True)
        report = path / "build_report.json"
        if not report.exists():
            report = path.parent / "build_report.json"
        built_from = json.loads(report.read_text())["source"] if report.exists() else {}
        source = {"kind": "built_dataset", "path": str(path), "split": split, "built_from": built_from}
        source["dataset"] = guess_dataset(json.dumps(built_from), str(path))
    elif path.is_file():
        frame = pd.read_csv(path)
        if "cif" not in frame.columns:
            raise ValueError(f"{path}: a targets CSV needs a 'cif' column (CDVAE format)")
        if "material_id" not in frame.columns:
            frame["material_id"] = [f"{path.stem}-{i}" for i in range(len(frame))]
        frame = frame[["material_id", "cif"]].astype({"material_id": str})
        source = {"kind": "csv", "path": str(path), "dataset": guess_dataset(str(path))}
    else:
        raise FileNotFoundError(f"targets {path}: no such CSV or built dataset directory")
    n_available = len(frame)
    if num_targets is not None:
        frame = frame.iloc[:num_targets].reset_index(drop=True)
    source.update(n_available=n_available, n_used=len(frame))
    if frame.empty:
        raise ValueError(f"targets {path}: no structures")
    return frame, source


def model_info(model: str | Path) -> dict:
    """Name, parameter count and, from ``plaid_run.json``, representation, training data and training time."""
    model = Path(model)
    info: dict = {"path": model.name}
    run = model / RUN_RECORD
    if run.exists():
        record = json.loads(run.read_text())
        plaid_args = record.get("plaid_args", {})
        metrics = record.get("train_metrics", {})
        info.update(
            representation=plaid_args.get("representation"),
            trained_on=plaid_args.get("dataset_source"),
            task_mix=plaid_args.get("task_mix"),
            train_runtime_s=metrics.get("train_runtime"),
            train_loss=metrics.get("train_loss"),
            recipe=record.get("recipe"),
        )
        if info["trained_on"]:  # a file name or dataset name, never this machine's path
            info["trained_on"] = Path(str(info["trained_on"])).name
            info["trained_on_dataset"] = guess_dataset(plaid_args.get("dataset_source"))
    config = model / "config.json"
    if config.exists():
        c = json.loads(config.read_text())
        info["architecture"] = {
            k: c.get(k) for k in ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads")
        }
    return info
