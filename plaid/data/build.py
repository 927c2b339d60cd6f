"""Build a training ``DatasetDict`` from a structure source.

Steps: read the source; encode every structure with the representation (``datasets.map`` with ``num_proc``
workers, in chunks whose results are appended to ``<out>/encoded.jsonl`` so a killed build resumes where it
stopped); check each text decodes; turn each encoded structure into prompt/completion rows by the task mix; split
by structure (seeded); save with a dataset card. Every structure that cannot be used is counted by reason in
``build_report.json`` and listed in ``failures.jsonl``: nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import __version__
from ..io import JsonlWriter, read_jsonl
from ..representations import get as get_representation
from .sources import load_source
from .tasks import DEFAULT_TASK_MIX, check_style, choose_tasks, make_example, parse_task_mix

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
ENCODED_FILE = "encoded.jsonl"
DEFAULT_SPLIT = (0.9, 0.05, 0.05)
_REPRESENTATIONS: dict = {}


def _representation(name: str, options_json: str):
    key = (name, options_json)
    if key not in _REPRESENTATIONS:
        _REPRESENTATIONS[key] = get_representation(name, **json.loads(options_json))
    return _REPRESENTATIONS[key]


def failure_reason(message: str) -> str:
    """Group an error message into a short reason for counting (the full message is kept per structure)."""
    lowered = message.lower()
    for needle, reason in (
        ("partial occupancy", "partial occupancy"),
        ("unparseable cif", "unparseable CIF"),
        ("no consistent symmetry", "no consistent symmetry"),
        ("spglib", "symmetry search failed"),
        ("round trip", "round trip failed"),
        ("empty", "empty structure"),
    ):
        if needle in lowered:
            return reason
    return message.split(":", 1)[0][:60]


def encode_record(cif: str, representation: str, options_json: str = "{}") -> dict:
    """Encode one CIF: text, conditions derived from the written cell, or the failure and its reason."""
    import warnings

    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from ..representations import DecodeError, EncodeError

    rep = _representation(representation, options_json)
    empty = {"text": None, "formula": None, "composition": None, "spacegroup": None, "n_sites": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            structure = Structure.from_str(cif, fmt="cif")
        except Exception as exc:  # noqa: BLE001 - any parser failure is a counted reason
            return {**empty, "error": f"unparseable CIF: {type(exc).__name__}: {exc}"[:300]}
        try:
            text = rep.encode(structure)
        except EncodeError as exc:
            return {**empty, "error": str(exc)[:300]}
        except Exception as exc:  # noqa: BLE001
            return {**empty, "error": f"encoder error: {type(exc).__name__}: {exc}"[:300]}
        try:
            cell = rep.decode(text)
        except DecodeError as exc:
            return {**empty, "error": f"round trip failed: {exc}"[:300]}
        number = rep.space_group(text)
        if number is None:
            try:
                number = SpacegroupAnalyzer(cell, symprec=0.1).get_space_group_number()
            except Exception:  # noqa: BLE001
                number = None
    comp = cell.composition
    return {
        "text": text,
        "error": None,
        "formula": comp.reduced_formula,
        "composition": " ".join(f"{el.symbol}{int(n)}" for el, n in comp.items()),
        "spacegroup": number,
        "n_sites": len(cell),
    }


def _encode_batch(batch: dict, representation: str, options_json: str) -> dict:
    results = [encode_record(cif, representation, options_json) for cif in batch["cif"]]
    return {key: [r[key] for r in results] for key in results[0]}


def encode_frame(
    df: pd.DataFrame,
    representation: str,
    options: dict | None = None,
    num_proc: int = 1,
    cache_path: str | os.PathLike | None = None,
    chunk_size: int = 2000,
) -> pd.DataFrame:
    """Encode every row of a source frame; returns the frame with text/error/condition columns added.

    With ``cache_path``, results are appended per chunk and reused on the next call (resume after a kill)."""
    from datasets import Dataset, disable_progress_bars

    options_json = json.dumps(options or {}, sort_keys=True)
    writer = JsonlWriter(cache_path, key="uid") if cache_path else None
    done = {r["uid"]: r for r in (writer.records if writer else [])}
    pending = df[~df["uid"].isin(done)]
    disable_progress_bars()
    bar = tqdm(total=len(df), initial=len(df) - len(pending), desc=f"encode ({representation})", unit="struct")
    try:
        for start in range(0, len(pending), chunk_size):
            chunk = pending.iloc[start : start + chunk_size][["uid", "cif"]]
            ds = Dataset.from_pandas(chunk, preserve_index=False)
            procs = max(1, min(num_proc, len(chunk) // 50 or 1))
            encoded = ds.map(
                _encode_batch,
                batched=True,
                batch_size=64,
                num_proc=procs if procs > 1 else None,
                fn_kwargs={"representation": representation, "options_json": options_json},
                remove_columns=["cif"],
                load_from_cache_file=False,
            )
            for row in encoded:
                done[row["uid"]] = row
                if writer:
                    writer.write(row)
            bar.update(len(chunk))
    finally:
        bar.close()
        if writer:
            writer.close()
    enc = pd.DataFrame([done[u] for u in df["uid"]])
    out = df.drop(columns=[c for c in ("formula", "spacegroup") if c in df.columns]).reset_index(drop=True)
    for col in ("text", "error", "formula", "composition", "spacegroup", "n_sites"):
        out[col] = enc[col].values
    return out


def assign_splits(uids: list[str], fractions: tuple[float, float, float], seed: int) -> list[str]:
    """Seeded structure-level split into train/validation/test by a hash of (seed, uid)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    cuts = np.cumsum(fractions)
    out = []
    for uid in uids:
        u = zlib.crc32(f"{seed}:{uid}".encode()) / 2**32
        out.append(("train", "validation", "test")[int(np.searchsorted(cuts, u, side="right").clip(0, 2))])
    return out


@dataclass
class BuildReport:
    source: dict
    representation: str
    representation_options: dict
    task_mix: dict
    seed: int
    prompt_style: str = "plaid"
    n_input: int = 0
    n_encoded: int = 0
    failures: dict = field(default_factory=dict)
    split_counts: dict = field(default_factory=dict)
    task_counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    structures_per_second: float = 0.0
    versions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def build_dataset(
    source: str,
    representation: str = "wyckoff",
    *,
    out_dir: str | os.PathLike | None = None,
    task_mix: str | dict | None = None,
    examples_per_structure: int = 1,
    split_fractions: tuple[float, float, float] | None = None,
    seed: int = 0,
    num_proc: int = 1,
    max_structures: int | None = None,
    representation_options: dict | None = None,
    source_splits: tuple[str, ...] | None = None,
    data_root: str | os.PathLike | None = None,
    base_url: str | None = None,
    chunk_size: int = 2000,
    prompt_style: str = "plaid",
):
    """Build (and with ``out_dir``, save) a ``DatasetDict`` of prompt/completion rows; returns (dataset, report).

    Splits: with ``split_fractions`` given, a seeded split by structure (``(1, 0, 0)``: the whole source is the
    training split). Without, the source's own splits when it has several; a source that is one named split (e.g.
    ``hf:owner/name:train``) is used whole as that split; otherwise 90/5/5 by structure.

    ``build_report.json`` is written last: a directory that has one holds a finished build. ``chunk_size``
    structures are encoded between appends to ``encoded.jsonl`` (the points a killed build resumes from).
    ``prompt_style`` (``plaid.prompts.PROMPT_STYLES``) words the prompts; it is recorded in the report and card."""
    from datasets import Dataset, DatasetDict, Features, Value

    t0 = time.perf_counter()
    mix = parse_task_mix(task_mix)
    check_style(prompt_style, representation, mix)  # before anything is read or encoded
    rep = get_representation(representation, **(representation_options or {}))
    df, source_desc = load_source(source, splits=source_splits, root=data_root, base_url=base_url)
    if max_structures is not None:
        df = df.iloc[:max_structures].reset_index(drop=True)
    out_path = Path(out_dir) if out_dir else None
    if out_path:
        out_path.mkdir(parents=True, exist_ok=True)
        (out_path / "build_report.json").unlink(missing_ok=True)  # a previous build's report: not this build's
    cache = None
    if out_path:
        cache = out_path / ENCODED_FILE
        _invalidate_stale_cache(cache, {"source": source_desc, "representation": representation,
                                        "text_version": rep.text_version,
                                        "options": representation_options or {}, "max_structures": max_structures})
    enc = encode_frame(df, representation, representation_options, num_proc, cache, chunk_size=chunk_size)

    failed = enc[enc["text"].isna()]
    good = enc[enc["text"].notna()].reset_index(drop=True)
    natural = good["split"].dropna().unique().tolist() if "split" in good else []
    if split_fractions is None and natural and good["split"].notna().all():
        good["dataset_split"] = [SPLIT_NAMES.get(s, s) for s in good["split"]]
        if len(natural) == 1:
            log.info("source is one split (%s): used whole as %s", natural[0], SPLIT_NAMES.get(natural[0]))
    else:
        good["dataset_split"] = assign_splits(good["uid"].tolist(), split_fractions or DEFAULT_SPLIT, seed)

    rows: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    task_counts: Counter = Counter()
    prompt_failures: Counter = Counter()
    for record in tqdm(good.to_dict("records"), desc="tasks", unit="struct", disable=len(good) < 5000):
        for task, rng in choose_tasks(record["uid"], mix, seed, examples_per_structure):
            try:
                example = make_example(record, rep, task, rng, prompt_style)
            except ValueError as exc:  # a row this prompt style cannot write: counted, never a crash
                prompt_failures[f"{task} prompt: {str(exc)[:60]}"] += 1
                continue
            example.update(
                material_id=str(record["material_id"]),
                text=record["text"],
                cif=record["cif"],
            )
            rows[record["dataset_split"]].append(example)
            task_counts[(record["dataset_split"], task)] += 1

    columns = ["prompt", "completion", "task", "conditions", "material_id", "text", "cif"]
    features = Features({c: Value("string") for c in columns})
    dataset = DatasetDict(
        {
            split: Dataset.from_dict({c: [r[c] for r in items] for c in columns}, features=features)
            for split, items in rows.items()
            if items  # datasets cannot reload an empty split from disk; its count (0) stays in the report
        }
    )
    elapsed = time.perf_counter() - t0
    report = BuildReport(
        source=source_desc,
        representation=representation,
        representation_options=representation_options or {},
        task_mix=mix,
        seed=seed,
        prompt_style=prompt_style,
        n_input=len(enc),
        n_encoded=len(good),
        failures=dict(Counter(failure_reason(m) for m in failed["error"]) + prompt_failures),
        split_counts={k: len(v) for k, v in rows.items()},
        task_counts={f"{s}/{t}": n for (s, t), n in sorted(task_counts.items())},
        seconds=round(elapsed, 2),
        structures_per_second=round(len(enc) / elapsed, 2) if elapsed else 0.0,
        versions=_versions(),
    )
    if out_path:
        dataset.save_to_disk(str(out_path / "dataset"))
        with open(out_path / "failures.jsonl", "w", encoding="utf-8") as fh:
            for rec in failed[["uid", "material_id", "error"]].to_dict("records"):
                fh.write(json.dumps({**rec, "reason": failure_reason(rec["error"])}) + "\n")
        from .card import dataset_card

        dataset_card(report, DEFAULT_TASK_MIX).save(out_path / "README.md")
        if (out_path / "dataset").is_dir():
            (out_path / "dataset" / "README.md").write_text((out_path / "README.md").read_text())
        tmp = out_path / "build_report.json.tmp"
        tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str))
        os.replace(tmp, out_path / "build_report.json")
    log.info(
        "built %s: %d/%d structures encoded, %s", representation, report.n_encoded, report.n_input,
        report.split_counts,
    )
    return dataset, report


def _invalidate_stale_cache(cache: Path, signature: dict) -> None:
    """Encodings cached for another source, representation or options are set aside (``*.stale``), not reused."""
    sig_path = cache.with_suffix(".signature.json")
    wanted = json.dumps(signature, sort_keys=True, default=str)
    if cache.exists():
        previous = sig_path.read_text() if sig_path.exists() else None
        if previous != wanted:
            log.warning("%s was made with other inputs; moving it to %s.stale", cache, cache.name)
            cache.replace(cache.with_suffix(".jsonl.stale"))
    sig_path.write_text(wanted)


def load_built(path: str | os.PathLike):
    """Load a dataset written by ``build_dataset`` (the directory given as ``out_dir``, or its ``dataset``)."""
    from datasets import load_from_disk

    path = Path(path)
    return load_from_disk(str(path / "dataset" if (path / "dataset").is_dir() else path))


def read_failures(path: str | os.PathLike) -> list[dict]:
    return read_jsonl(Path(path) / "failures.jsonl")


def _versions() -> dict:
    import importlib.metadata as md

    out = {"plaid": __version__, "python": platform.python_version()}
    for pkg in ("pymatgen", "spglib", "pyxtal", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
