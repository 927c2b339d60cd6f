"""Where crystal structures come from: CDVAE-format CSVs, CIF directories, Hugging Face datasets, and the named
benchmark datasets (MP-20, Perov-5, Carbon-24, MPTS-52).

Every source becomes a ``pandas.DataFrame`` with one row per input structure: ``uid`` (unique within the build),
``material_id``, ``split`` (when the source has its own splits), ``cif`` and the normalised property columns
(``formation_energy``, ``band_gap``, ``e_hull``) that the source provides.
Nothing is parsed here; unreadable CIFs are caught and counted by the builder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io import download, sha256_of
from ..paths import cache_dir, data_dir

log = logging.getLogger(__name__)

# Source column -> plaid property, per dataset (first match wins). Documented in the dataset card.
PROPERTY_COLUMNS: dict[str, tuple[str, ...]] = {
    "formation_energy": ("formation_energy_per_atom", "heat_ref", "formation_energy"),
    "band_gap": ("band_gap", "ind_gap"),
    "e_hull": ("e_above_hull", "energy_above_hull", "e_hull"),
}
# Formula, cell composition and space group are not taken from the source: the builder derives them from the cell
# the representation writes, so a prompt never disagrees with its completion.


@dataclass(frozen=True)
class NamedDataset:
    name: str
    splits: tuple[str, ...]
    url: str  # format string with {split}
    sha256: dict[str, str] = field(default_factory=dict)  # known checksums; others are recorded on first download
    description: str = ""


_CDVAE = "https://raw.githubusercontent.com/txie-93/cdvae/main/data/{name}/{split}.csv"
NAMED_DATASETS: dict[str, NamedDataset] = {
    "mp_20": NamedDataset(
        "mp_20", ("train", "val", "test"), _CDVAE.replace("{name}", "mp_20"),
        description="MP-20: 45,231 Materials Project structures with <= 20 atoms (CDVAE split)",
    ),
    "perov_5": NamedDataset(
        "perov_5", ("train", "val", "test"), _CDVAE.replace("{name}", "perov_5"),
        sha256={"val": "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2"},
        description="Perov-5: 18,928 ABX3 perovskites, 5 atoms per cell (CDVAE split, Castelli et al. 2012)",
    ),
    "carbon_24": NamedDataset(
        "carbon_24", ("train", "val", "test"), _CDVAE.replace("{name}", "carbon_24"),
        sha256={"val": "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e"},
        description="Carbon-24: 10,153 carbon allotropes with 6-24 atoms (CDVAE split, AIRSS)",
    ),
    "mpts_52": NamedDataset(
        "mpts_52", ("train", "val", "test"),
        "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data/mpts_52/{split}.csv",
        description="MPTS-52: 40,476 MP structures with <= 52 atoms, split by time (DiffCSP)",
    ),
}


def resolve_named(name: str, split: str, root: str | os.PathLike | None = None, base_url: str | None = None) -> Path:
    """Path of ``<name>/<split>.csv``: under ``root``, else ``PLAID_DATA_DIR``, else the download cache."""
    info = NAMED_DATASETS[name]
    if split not in info.splits:
        raise ValueError(f"{name} has splits {info.splits}, not {split!r}")
    for base in (root, data_dir()):
        if base is not None and (Path(base) / name / f"{split}.csv").exists():
            path = Path(base) / name / f"{split}.csv"
            known = info.sha256.get(split)
            if known and sha256_of(path) != known:
                log.warning("%s does not match the published checksum of %s/%s", path, name, split)
            return path
    url = (base_url.rstrip("/") + f"/{name}/{split}.csv") if base_url else info.url.format(split=split)
    return download(url, cache_dir() / "datasets" / name / f"{split}.csv", info.sha256.get(split))


def _normalise(df: pd.DataFrame, split: str | None, origin: str) -> pd.DataFrame:
    if "cif" not in df.columns:
        raise ValueError(f"{origin}: no 'cif' column (columns: {', '.join(map(str, df.columns))})")
    out = pd.DataFrame({"cif": df["cif"].astype(object)})
    if "material_id" in df.columns:
        out["material_id"] = df["material_id"].astype(str).values
    else:
        out["material_id"] = [f"{Path(origin).stem}-{i}" for i in range(len(df))]
    out["split"] = split
    for prop, candidates in PROPERTY_COLUMNS.items():
        for col in candidates:
            if col in df.columns:
                out[prop] = df[col].values
                out.attrs.setdefault("property_columns", {})[prop] = col
                break
    prefix = f"{split}/" if split else ""
    out.insert(0, "uid", [f"{prefix}{i}" for i in range(len(out))])
    return out.reset_index(drop=True)


def read_csv_source(path: str | os.PathLike, split: str | None = None) -> pd.DataFrame:
    return _normalise(pd.read_csv(path), split, str(path))


def read_cif_dir(path: str | os.PathLike) -> pd.DataFrame:
    files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() == ".cif")
    if not files:
        raise ValueError(f"{path}: no .cif files")
    df = pd.DataFrame({"material_id": [p.stem for p in files], "cif": [p.read_text(errors="replace") for p in files]})
    return _normalise(df, None, str(path))


def read_hf_source(spec: str) -> pd.DataFrame:
    """``hf:owner/name`` or ``hf:owner/name:split``; every split of the dataset when none is named."""
    from datasets import load_dataset

    name, _, split = spec[3:].partition(":")
    loaded = load_dataset(name, split=split or None)
    parts = {split: loaded} if split else dict(loaded)
    frames = [_normalise(ds.to_pandas(), s, name) for s, ds in parts.items()]
    return pd.concat(frames, ignore_index=True)


def load_source(
    source: str,
    splits: tuple[str, ...] | None = None,
    root: str | os.PathLike | None = None,
    base_url: str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Read ``source`` into the normalised frame; also return a description for the dataset card."""
    if source.startswith("hf:"):
        df = read_hf_source(source)
        desc = {"kind": "huggingface", "name": source[3:]}
    elif source in NAMED_DATASETS:
        info = NAMED_DATASETS[source]
        wanted = splits or info.splits
        frames, files = [], {}
        for split in wanted:
            try:
                path = resolve_named(source, split, root, base_url)
            except OSError as exc:
                if splits:  # explicitly asked for
                    raise
                log.warning("%s/%s unavailable (%s); skipping that split", source, split, exc)
                continue
            frames.append(read_csv_source(path, split))
            files[split] = {"path": str(path), "sha256": sha256_of(path)}
        if not frames:
            raise FileNotFoundError(f"no split of {source} found under {root or data_dir()} or downloadable")
        df = pd.concat(frames, ignore_index=True)
        df.attrs["property_columns"] = frames[0].attrs.get("property_columns", {})
        desc = {"kind": "named", "name": source, "description": info.description, "files": files}
    else:
        path = Path(source)
        if path.is_dir():
            df = read_cif_dir(path)
            desc = {"kind": "cif_dir", "path": str(path)}
        elif path.is_file():
            df = read_csv_source(path)
            desc = {"kind": "csv", "path": str(path), "sha256": sha256_of(path)}
        else:
            raise FileNotFoundError(
                f"source {source!r} is not a file, a directory, hf:owner/name, or one of {', '.join(NAMED_DATASETS)}"
            )
    desc["property_columns"] = df.attrs.get("property_columns", {})
    return df, desc
