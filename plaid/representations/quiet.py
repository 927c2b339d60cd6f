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

KNOWN_WARNINGS = re.compile(
    r"^\s*(Warning|SPGLIB WARNING|spglib)?:?\s*"
    r"(ssm_get_exact_positions failed|get_exact_positions failed|Too many or too few|"
    r"Fail to find symmetry|Symmetry operations are not consistent|Space group could not be found|"
    r"refine_cell failed|Attempt \d+ tolerance|.*\(line \d+, .*spglib.*\))",
    re.IGNORECASE,
)
_lock = threading.Lock()
_depth = 0


def _is_known(line: str) -> bool:
    return bool(KNOWN_WARNINGS.match(line)) or "(attempt=" in line


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
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            with _lock:
                _depth -= 1
            tmp.seek(0)
            captured = tmp.read().decode("utf-8", errors="replace")
            keep = [ln for ln in captured.splitlines(keepends=True) if ln.strip() and not _is_known(ln)]
            if keep:
                os.write(2, "".join(keep).encode())
