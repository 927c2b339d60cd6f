"""Run one per-item function over many items with a progress bar, writing each result as it is done.

Results go to a ``JsonlWriter`` keyed by the item's id, so a re-run skips finished items and a kill loses at
most the items in flight. ``n_jobs``: an int (``> 1`` fans out over local worker processes) or a
:class:`plaid.executors.Executor` (a Ray cluster); results are always written by the parent. With a
``dedupe_key``, items whose payloads have the same key are computed once and the result is recorded under each of
their ids (for deterministic per-item functions of the keyed content only).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from plaid.executors import as_executor
from plaid.io import JsonlWriter


class StageTimeout(Exception):
    """Raised inside a computation that ran past its per-item time limit."""


@contextmanager
def time_limit(seconds: float | None):
    """Raise ``StageTimeout`` in the block after ``seconds`` (SIGALRM; a no-op off the main thread or if None)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise StageTimeout(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _keyed(args):
    fn, key, payload = args
    return key, fn(payload)


def run_stage(
    fn: Callable[[Any], dict],
    items: Iterable[tuple[Any, Any]],
    writer: JsonlWriter,
    n_jobs=1,
    desc: str = "",
    dedupe_key: Callable[[Any], Any] | None = None,
) -> dict[Any, dict]:
    """Apply ``fn(payload)`` to every ``(key, payload)`` not yet in ``writer``; record ``{key_field: key, **result}``.

    Returns every record in the writer (old and new) by key. ``fn`` must catch its own per-item failures and
    return them as fields (a stage never stops on one bad item). ``dedupe_key(payload)``: payloads with the same
    non-None key are computed once, the first of them standing for the others (each still gets its own record)."""
    todo = [(key, payload) for key, payload in items if key not in writer]
    todo, followers = _dedupe(todo, dedupe_key)
    if todo:
        bar = tqdm(total=len(todo) + sum(map(len, followers.values())), desc=desc, leave=False, mininterval=2.0)
        executor = as_executor(n_jobs)
        for key, result in executor.imap_unordered(_keyed, [(fn, k, p) for k, p in todo]):
            for k in (key, *followers.get(key, ())):
                writer.write({writer.key: k, **result})
                bar.update()
        bar.close()
    return {r[writer.key]: r for r in writer.records}


def _dedupe(todo: list, dedupe_key) -> tuple[list, dict]:
    """(items to compute, {computed key: [keys of the items with the same dedupe key]})."""
    if dedupe_key is None:
        return todo, {}
    first: dict = {}
    followers: dict = {}
    unique = []
    for key, payload in todo:
        d = dedupe_key(payload)
        if d is not None and d in first:
            followers[first[d]].append(key)
            continue
        if d is not None:
            first[d] = key
            followers[key] = []
        unique.append((key, payload))
    return unique, followers


def guard_stage(out_dir, filename: str, settings) -> None:
    """Keep ``out_dir/filename`` only if it was computed with the same ``settings`` (JSON-able): otherwise (or when
    no settings were recorded for it) it is renamed to ``*.stale`` and the stage recomputes it. The settings of
    every stage are kept in ``out_dir/stages.json``."""
    import json
    import logging
    from pathlib import Path

    log = logging.getLogger(__name__)
    out_dir = Path(out_dir)
    path = out_dir / "stages.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    value = json.loads(json.dumps(settings, default=str))
    stage_file = out_dir / filename
    if stage_file.exists() and recorded.get(filename) != value:
        why = "has no recorded settings" if filename not in recorded else "was made from other inputs or settings"
        log.warning("%s %s; recomputing it (old results kept as %s)", stage_file, why,
                    stage_file.with_suffix(".stale").name)
        stage_file.replace(stage_file.with_suffix(".stale"))
    recorded[filename] = value
    path.write_text(json.dumps(recorded, indent=1) + "\n")
