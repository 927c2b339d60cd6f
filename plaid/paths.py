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


# ------------------------------------------------------------------------------------ paths in published files

import re  # noqa: E402

_CACHE_REPO = re.compile(r"(?:^|/)(models|datasets)--([^/]+?)--([^/]+)(?:/|$)")
# an absolute (or ~) path token in free text: not preceded by a word character, '/', ':' or '.' (so no URL, no
# "eV/atom", no "1/3"), ending at whitespace, quotes, backticks, brackets or a table/list separator
_PATH_TOKEN = re.compile(r"(?<![\w/:.~-])~?/[^\s\"'`|,;()\[\]{}<>*]+")


def hub_id_from_cache_path(path: str | os.PathLike) -> str | None:
    """``owner/name`` for a path inside the Hugging Face cache (``.../models--owner--name/snapshots/<commit>``),
    else None."""
    found = _CACHE_REPO.search(Path(path).as_posix())
    return f"{found.group(2)}/{found.group(3)}" if found else None


def _is_local_path(token: str) -> bool:
    """An absolute path whose top directory exists on this machine (``/tmp/...``, ``/home/...``), or ``~/...``."""
    if token.startswith("~"):
        return True
    top = token.strip("/").split("/", 1)[0]
    return bool(top) and (Path("/") / top).exists()


def public_path(value: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """A local path as it may be published: relative to ``root`` (a run directory) when inside it, the Hub id of a
    Hugging Face cache snapshot, relative to ``PLAID_DATA_DIR`` when inside it (``perov_5/val.csv``), else its
    last two components (a folder and a file name: no machine-specific prefix)."""
    text = str(value)
    if not _is_local_path(text):
        return text
    path = Path(text).expanduser()
    hub_id = hub_id_from_cache_path(path)
    if hub_id:
        return hub_id
    for base in (root, data_dir()):
        if base is None:
            continue
        for candidate, anchor in ((path, Path(base)), (path.resolve(), Path(base).resolve())):
            try:
                rel = candidate.relative_to(anchor)
            except ValueError:
                continue
            return rel.as_posix() or "."
    return "/".join(path.parts[-2:]) if len(path.parts) > 2 else path.name


def scrub_paths(value, root: str | os.PathLike | None = None):
    """``value`` (str, or JSON-like dicts/lists of them) with every local absolute path replaced by its
    ``public_path``: whole strings and paths inside longer text."""
    if isinstance(value, dict):
        return {k: scrub_paths(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_paths(v, root) for v in value]
    if not isinstance(value, str):
        return value
    return _PATH_TOKEN.sub(lambda m: public_path(m.group(0), root) if _is_local_path(m.group(0)) else m.group(0),
                           value)


def local_paths_in(text: str) -> list[str]:
    """The local absolute paths (see ``scrub_paths``) that ``text`` still holds."""
    return [m.group(0) for m in _PATH_TOKEN.finditer(text) if _is_local_path(m.group(0))]
