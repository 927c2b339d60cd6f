"""Run one per-item function over many items with a progress bar, writing each result as it is done.

Results go to a ``JsonlWriter`` keyed by the item's id, so a re-run skips finished items and a kill loses at
most the items in flight. ``n_jobs > 1`` fans out over worker processes (results still written by the parent).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

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


def _call(args):
    fn, key, payload = args
    return key, fn(payload)


def run_stage(
    fn: Callable[[Any], dict],
    items: Iterable[tuple[Any, Any]],
    writer: JsonlWriter,
    n_jobs: int = 1,
    desc: str = "",
) -> dict[Any, dict]:
    """Apply ``fn(payload)`` to every ``(key, payload)`` not yet in ``writer``; record ``{key_field: key, **result}``.

    Returns every record in the writer (old and new) by key. ``fn`` must catch its own per-item failures and
    return them as fields (a stage never stops on one bad item)."""
    todo = [(key, payload) for key, payload in items if key not in writer]
    if todo:
        bar = tqdm(total=len(todo), desc=desc, leave=False, mininterval=2.0)
        if n_jobs > 1 and len(todo) > 1:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(n_jobs) as pool:
                for key, result in pool.imap_unordered(_call, [(fn, k, p) for k, p in todo], chunksize=1):
                    writer.write({writer.key: key, **result})
                    bar.update()
        else:
            for key, payload in todo:
                writer.write({writer.key: key, **fn(payload)})
                bar.update()
        bar.close()
    return {r[writer.key]: r for r in writer.records}
