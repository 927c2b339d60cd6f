"""Where plaid finds shared data and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path | None:
    """The directory named by ``PLAID_DATA_DIR`` (benchmark CSVs, MP reference files), or None."""
    value = os.environ.get("PLAID_DATA_DIR")
    return Path(value).expanduser().resolve() if value else None


def cache_dir() -> Path:
    """Download cache: ``PLAID_CACHE_DIR`` or ``~/.cache/plaid``."""
    value = os.environ.get("PLAID_CACHE_DIR")
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "plaid"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path | None:
    """Shared model weights next to the data directory (``$PLAID_DATA_DIR/../models``), if present."""
    root = data_dir()
    if root is None:
        return None
    path = root.parent / "models"
    return path if path.is_dir() else None
