"""Silence spglib's C-level warnings without hiding anything else written to stderr.

spglib's C library prints diagnostics such as ``Warning: ssm_get_exact_positions failed (attempt=0).`` straight to
file descriptor 2 during symmetry search, thousands of lines in a dataset build. ``quiet_spglib()`` redirects fd 2 to
a temporary file around the call and, on exit, writes back every line that is not one of these known warnings, so
real errors still reach the terminal (in order, after the call)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

# spglib's C diagnostics: "spglib: <function> failed.", "Warning: ssm_get_exact_positions failed (attempt=N)."
KNOWN_WARNINGS = re.compile(
    r"^\s*(spglib:\s|(Warning|SPGLIB WARNING):?\s+\w*(exact_positions|exact_structure|symmetry|lattice)\w*\s+failed)",
    re.IGNORECASE,
)
_lock = threading.Lock()
_depth = 0
_capture = None  # one temporary file reused by every call (opening one per call costs more than spglib's search)


def _is_known(line: str) -> bool:
    return bool(KNOWN_WARNINGS.match(line))


@contextlib.contextmanager
def quiet_spglib():
    """Context manager: spglib's known C warnings are dropped, any other stderr output is re-emitted."""
    global _depth
    with _lock:
        _depth += 1
        outer = _depth == 1
    if not outer:  # nested use: the outer context already captures fd 2
        try:
            yield
        finally:
            with _lock:
                _depth -= 1
        return
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed or odd sys.stderr must not break encoding
        pass
    global _capture
    if _capture is None:
        _capture = tempfile.TemporaryFile(mode="w+b")
    tmp = _capture
    saved = os.dup(2)
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        size = os.lseek(tmp.fileno(), 0, os.SEEK_END)
        captured = b""
        if size:
            os.lseek(tmp.fileno(), 0, os.SEEK_SET)
            captured = os.read(tmp.fileno(), size)
            os.ftruncate(tmp.fileno(), 0)
            os.lseek(tmp.fileno(), 0, os.SEEK_SET)
        with _lock:
            _depth -= 1
        text = captured.decode("utf-8", errors="replace")
        keep = [ln for ln in text.splitlines(keepends=True) if ln.strip() and not _is_known(ln)]
        if keep:
            os.write(2, "".join(keep).encode())
