"""Reading what is evaluated: plaid sample JSONL, a CSV with a ``cif`` column (crystal-text-llm's released sample
CSVs are such files), a directory or ``.tar.gz`` of CIF files (CrystaLLM's generated CIFs, one sample per file), and
CDVAE-format reference CSVs.

Every input line/row becomes one ``Sample``, in input order; a line that cannot be read or a structure that
cannot be built becomes a sample with ``structure=None`` and its ``error`` (never dropped)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure


@dataclass
class Sample:
    sample_id: object
    structure: Structure | None
    error: str | None = None
    text: str | None = None
    representation: str | None = None
    gen_time_s: float | None = None
    conditions: dict = field(default_factory=dict)
    material_id: str | None = None
    prompt: str | None = None
    generated_text: str | None = None  # what the model wrote (infill: only the element); ``text`` is the crystal
    request_id: str | None = None
    meta: dict = field(default_factory=dict)  # generation metadata for the report (model, run_seed, sampling)


META_KEYS = ("model", "backend", "run_seed", "temperature", "top_p", "top_k", "constrained", "max_new_tokens")


def structure_from_cif(cif: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif")


def crystal_text(record: dict) -> str | None:
    """The full crystal text of a sample record: ``text``, except for infill, where ``text`` is only the generated
    element and the crystal is the masked text with it filled in, and for a prompt style whose prompt is the start
    of the text (``crystallm``), where it is prompt + ``text`` (what the sampler decoded)."""
    from plaid.representations.base import MASK

    text = record.get("text")
    conditions = record.get("conditions") or {}
    masked = record.get("masked_text") or (conditions.get("masked_text") if isinstance(conditions, dict) else None)
    if masked and text is not None and MASK in masked:
        return masked.replace(MASK, text.strip())
    if text is not None and record.get("prompt") and _prompt_in_text(record.get("prompt_style")):
        return record["prompt"] + text  # CrystaLLM's prompts are the start of the CIF
    return text


def _prompt_in_text(style) -> bool:
    from plaid.prompts import PROMPT_STYLES

    return style in PROMPT_STYLES and PROMPT_STYLES[style].prompt_in_text


def structure_from_record(record: dict) -> tuple[Structure | None, str | None]:
    """A sample record's structure and None, or None and the reason; never raises.

    The crystal text (:func:`crystal_text`) is decoded with its representation when the record names one (the
    exact structure the sampler parsed: a CIF round trip can merge overlapping sites); otherwise the CIF is read."""
    text, name, cif = crystal_text(record), record.get("representation"), record.get("cif")
    try:
        if text and name:
            from plaid.representations import get

            return get(name).decode(text), None
        if cif:
            return structure_from_cif(cif), None
        return None, "record has neither cif nor decodable text"
    except Exception as exc:  # noqa: BLE001 - recorded per sample
        return None, f"unreadable structure: {type(exc).__name__}: {exc}"


def _sample_from_record(record: dict, position: int) -> Sample:
    sid = record.get("sample_id", position)
    conditions = record.get("conditions") or {}
    if isinstance(conditions, str):
        try:
            conditions = json.loads(conditions)
        except json.JSONDecodeError:
            conditions = {}
    gen_time = record.get("gen_time_s")
    sample = Sample(
        sample_id=sid,
        structure=None,
        text=crystal_text(record),
        prompt=record.get("prompt"),
        generated_text=record.get("text"),
        request_id=record.get("request_id"),
        representation=record.get("representation"),
        gen_time_s=float(gen_time) if isinstance(gen_time, int | float) else None,
        conditions=conditions,
        material_id=record.get("material_id") or conditions.get("material_id"),
        meta={k: record[k] for k in META_KEYS if record.get(k) is not None},
    )
    if record.get("parsed") is False or (not record.get("cif") and record.get("error")):
        sample.error = record.get("error") or "not parsed"
        return sample
    sample.structure, sample.error = structure_from_record(record)
    return sample


CIF_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_cif_collection(path: str | Path) -> bool:
    """A directory or tar archive of CIF files (CrystaLLM's generated CIFs)."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(CIF_ARCHIVE_SUFFIXES)


def read_cif_files(path: str | Path) -> list[tuple[str, str | None, str | None]]:
    """(file name, text or None, error or None) for every ``*.cif`` file of a directory (recursively, sorted) or a
    tar archive (in archive order); the name is the path inside the directory/archive. A file that cannot be read
    as UTF-8 text keeps its name and the reason."""
    import tarfile

    path = Path(path)
    out: list[tuple[str, str | None, str | None]] = []

    def _text(name: str, data: bytes) -> None:
        try:
            out.append((name, data.decode("utf-8"), None))
        except UnicodeDecodeError as exc:
            out.append((name, None, f"unreadable file: not UTF-8 text ({exc.reason} at byte {exc.start})"))

    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".cif"):
            _text(file.relative_to(path).as_posix(), file.read_bytes())
        return out
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if not (member.isfile() and member.name.lower().endswith(".cif")):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                out.append((member.name, None, "unreadable file: no data in the archive"))
                continue
            _text(member.name, handle.read())
    return out


def load_cif_collection(path: str | Path) -> list[Sample]:
    """One sample per CIF file (``sample_id`` = the file name), decoded with the ``cif`` representation, which
    restores the operators of CrystaLLM's identity-only symmetry loop and skips its atom-properties loop; an
    unreadable or undecodable file is a sample with its reason."""
    out = []
    for pos, (name, text, error) in enumerate(read_cif_files(path)):
        if error is not None:
            out.append(Sample(sample_id=name, structure=None, error=error, representation="cif"))
            continue
        out.append(_sample_from_record({"sample_id": name, "text": text, "representation": "cif"}, pos))
    if not out:
        raise ValueError(f"{path}: no .cif files")
    return out


def samples_sha256(path: str | Path) -> str:
    """The content hash of a samples input: the file's, or for a CIF directory the hash of its files' names and
    contents (so a changed or added file re-runs the stages)."""
    import hashlib

    from .fingerprints import file_sha256

    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for name, text, error in read_cif_files(path):
        h.update(name.encode() + b"\0" + (text or error or "").encode() + b"\0")
    return h.hexdigest()


def load_samples(path: str | Path, structure_column: str | None = None) -> list[Sample]:
    """Samples from plaid's JSONL (``.jsonl``/``.json``), a CSV with a ``cif`` column, or a directory / tar archive
    of CIF files, in input order; a PLaID sample CSV (``gen_str`` column) is read by :mod:`.seed_files`, its
    structures from ``structure_column``."""
    path = Path(path)
    if is_cif_collection(path):
        return load_cif_collection(path)
    if path.suffix.lower() == ".csv":
        import pandas as pd

        from .seed_files import is_plaid_csv, plaid_records

        df = pd.read_csv(path)
        if is_plaid_csv(df.columns) or structure_column not in (None, "cif"):
            out = [_sample_from_record(r, i) for i, r in enumerate(plaid_records(df.to_dict("records"),
                                                                                  structure_column))]
            _check_unique_ids(out, path)
            return out
        if "cif" not in df.columns:
            raise ValueError(f"{path}: CSV needs a 'cif' column")
        out = []
        for pos, row in enumerate(df.to_dict("records")):
            cif = row.get("cif")
            record = {
                "sample_id": row.get("sample_id", pos) if "sample_id" in df.columns else pos,
                "cif": cif if isinstance(cif, str) else None,
                "material_id": row.get("material_id"),
                "gen_time_s": row.get("gen_time_s"),
            }
            if not isinstance(cif, str):
                record["error"] = "empty cif"
            if isinstance(record["material_id"], float):
                record["material_id"] = None
            out.append(_sample_from_record(record, pos))
        _check_unique_ids(out, path)
        return out
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for pos, line in enumerate(ln for ln in lines if ln.strip()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            out.append(Sample(sample_id=f"line{pos}", structure=None, error=f"corrupt JSON line: {exc}"))
            continue
        out.append(_sample_from_record(record, pos))
    _check_unique_ids(out, path)
    return out


def _check_unique_ids(samples: list[Sample], path) -> None:
    seen = set()
    for s in samples:
        if s.sample_id in seen:
            raise ValueError(f"{path}: duplicate sample_id {s.sample_id!r}; results are keyed by it")
        seen.add(s.sample_id)


def load_reference(path: str | Path, max_structures: int | None = None) -> tuple[list, list[str], int]:
    """(structures with None for unreadable rows, material ids, number unreadable) from a CDVAE-format CSV."""
    import pandas as pd

    df = pd.read_csv(path, nrows=max_structures)
    if "cif" not in df.columns:
        raise ValueError(f"{path}: reference CSV needs a 'cif' column")
    structures, failed = [], 0
    for cif in df["cif"]:
        try:
            structures.append(structure_from_cif(cif))
        except Exception:  # noqa: BLE001 - counted and reported
            structures.append(None)
            failed += 1
    ids = (
        [str(x) for x in df["material_id"]]
        if "material_id" in df.columns
        else [str(i) for i in range(len(df))]
    )
    return structures, ids, failed


def structure_summary(structure: Structure | None) -> dict:
    """Density (g/cm^3), number of distinct elements and number of sites."""
    if structure is None:
        return {"density": np.nan, "num_elems": np.nan, "num_sites": np.nan}
    return {
        "density": float(structure.density),
        "num_elems": len(structure.composition.elements),
        "num_sites": len(structure),
    }
