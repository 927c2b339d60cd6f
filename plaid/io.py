"""Append-only, resumable result files and structure I/O shared by every long job.

Long jobs (building, sampling, relaxing, evaluating, labelling) write one JSON record per item as soon as it is
done, flushed to disk, keyed by a stable id. A re-run reads the file back, skips the ids already there, and
appends the rest, so a kill loses at most the item in flight and never duplicates one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _default(obj: Any):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean_floats(obj: Any):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_floats(v) for v in obj]
    return obj


def dumps(record: dict) -> str:
    return json.dumps(_clean_floats(record), default=_default, ensure_ascii=False)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file. A torn last line (the process was killed mid-write) is ignored, any other bad line raises."""
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: corrupt JSONL line") from None
    return records


class JsonlWriter:
    """Append records to a JSONL file, one flushed line each, skipping keys already written.

    ``key`` names the field that identifies a record (e.g. ``"sample_id"``). On open, the existing file is read;
    a torn trailing line from a killed run is truncated away so the file stays valid.
    """

    def __init__(self, path: str | os.PathLike, key: str, fsync: bool = False):
        self.path = Path(path)
        self.key = key
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records = read_jsonl(self.path)
        self.done = {r[key] for r in self.records if key in r}
        self._repair_tail()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        if text and (not text.endswith("\n") or not _all_lines_valid(text)):
            self.path.write_text("".join(dumps(r) + "\n" for r in self.records), encoding="utf-8")

    def __contains__(self, key: Any) -> bool:
        return key in self.done

    def write(self, record: dict) -> bool:
        """Append ``record`` unless its key was already written; return whether it was written."""
        k = record[self.key]
        if k in self.done:
            return False
        self._fh.write(dumps(record) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.done.add(k)
        self.records.append(record)
        return True

    def write_many(self, records: Iterable[dict]) -> int:
        return sum(self.write(r) for r in records)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _all_lines_valid(text: str) -> bool:
    for line in text.splitlines():
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return False
    return True


def iter_batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """Fetch ``url`` (http(s) or file://) to ``dest`` and verify its sha256.

    Without a known checksum the digest of the first download is recorded in ``dest.sha256`` and checked on later
    use. The bytes go to a temporary file renamed into place only after the check, so an interrupted or corrupt
    download never poisons the cache."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    record = dest.with_name(dest.name + ".sha256")
    expected = (sha256 or (record.read_text().strip() if record.exists() else "")).lower() or None
    if dest.exists():
        if expected is None or sha256_of(dest) == expected:
            return dest
        log.warning("checksum mismatch for cached %s; downloading again", dest)
    if expected is None:
        log.warning("downloading %s without a known sha256: recording the first download's digest", url)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            shutil.copyfileobj(response, out)
        got = sha256_of(tmp)
        if expected is not None and got != expected:
            raise ValueError(f"sha256 mismatch for {url}: expected {expected}, got {got}")
        os.replace(tmp, dest)
        record.write_text(got + "\n")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
