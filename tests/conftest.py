"""Shared fixtures: the real structures in PLAID_DATA_DIR, and an offline Hugging Face environment."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PLAID_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
warnings.filterwarnings("ignore", module="pymatgen")
warnings.filterwarnings("ignore", module="spglib")


def data_path(relative: str) -> Path:
    """A file under PLAID_DATA_DIR; missing -> skip locally, fail under PLAID_REQUIRE_DATA=1 (CI)."""
    path = Path(os.environ["PLAID_DATA_DIR"]) / relative
    if not path.exists():
        message = f"shared data file missing: {path} (set PLAID_DATA_DIR)"
        if os.environ.get("PLAID_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def model_path(name: str) -> Path:
    path = Path(os.environ["PLAID_DATA_DIR"]).parent / "models" / name
    if not path.exists():
        message = f"shared model missing: {path}"
        if os.environ.get("PLAID_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _read_structures(relative: str, n: int | None, offset: int = 0):
    import pandas as pd
    from pymatgen.core import Structure

    df = pd.read_csv(data_path(relative))
    rows = df.iloc[offset : offset + n] if n else df.iloc[offset:]
    return [Structure.from_str(c, fmt="cif") for c in rows["cif"]], rows.reset_index(drop=True)


@pytest.fixture(scope="session")
def perov_csv() -> Path:
    return data_path("perov_5/val.csv")


@pytest.fixture(scope="session")
def carbon_csv() -> Path:
    return data_path("carbon_24/val.csv")


@pytest.fixture(scope="session")
def perov_structures():
    """The first 200 Perov-5 validation structures (pymatgen Structure)."""
    return _read_structures("perov_5/val.csv", 200)[0]


@pytest.fixture(scope="session")
def carbon_structures():
    """The first 200 Carbon-24 validation structures."""
    return _read_structures("carbon_24/val.csv", 200)[0]


@pytest.fixture(scope="session")
def elemental_refs_path() -> Path:
    return data_path("mp/2023-02-07-mp-elemental-reference-entries.json.gz")


@pytest.fixture(scope="session")
def m3gnet_path() -> Path:
    return model_path("M3GNet-MP-2021.2.8-PES")
