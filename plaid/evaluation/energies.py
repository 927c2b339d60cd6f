"""Stage 2 of an evaluation: relaxation of the selected samples with an energy model, then E_hull.

Relaxations are cached by the relaxer in ``relax.jsonl`` (a result made with other relaxer settings is recomputed,
never reused); E_hull is recomputed from them on every run against the hull passed now, so a changed hull always
applies. The energy model declares its energy scale (``Relaxer.energy_scale``), which decides the MP2020 correction.
"""

from __future__ import annotations

import math
from pathlib import Path

from .outcome import RELAX_OK


def _spacegroup(structure, symprec: float = 0.1) -> int | None:
    from .checks import spglib_space_group

    try:
        return spglib_space_group(structure, symprec)
    except Exception:  # noqa: BLE001 - a missing space group is a missing value, not a failure
        return None


def relax_and_hull(
    todo: list[tuple[str, object]],
    relaxer,
    hull,
    out_path: str | Path,
    progress: bool = True,
    batched: bool = True,
    symprec: float = 0.1,
    executor=None,
) -> tuple[dict[str, dict], dict[str, object]]:
    """Relax ``(sample_id, structure)`` pairs and compute E_hull.

    Returns ``({sample_id: {relax_status, relax_reason, energy_per_atom, relaxed_spacegroup, e_hull,
    e_hull_reason}}, {sample_id: relaxed Structure})``. ``executor``: see :meth:`plaid.relax.Relaxer.relax`."""
    extra = {"executor": executor} if executor is not None else {}  # relaxers without executors keep working
    results = relaxer.relax([s for _, s in todo], ids=[sid for sid, _ in todo], out_path=out_path,
                            progress=progress, batched=batched, **extra) if todo else []
    fields: dict[str, dict] = {}
    relaxed: dict[str, object] = {}
    for (sid, _), r in zip(todo, results):
        row = {
            "relax_status": r.status,
            "relax_reason": r.reason,
            "energy_per_atom": float(r.energy_per_atom) if math.isfinite(r.energy_per_atom) else None,
            "relaxed_spacegroup": None,
            "e_hull": None,
            "e_hull_reason": None,
        }
        fields[sid] = row
        if r.status not in RELAX_OK or r.structure is None or not math.isfinite(r.energy_per_atom):
            row["e_hull_reason"] = f"relaxation {r.status}: {r.reason}"
            continue
        relaxed[sid] = r.structure
        row["relaxed_spacegroup"] = _spacegroup(r.structure, symprec)
        try:
            value, reason = hull.e_above_hull(r.structure, r.energy_per_atom, energy_scale=relaxer.energy_scale)
        except Exception as exc:  # noqa: BLE001 - recorded per sample
            value, reason = float("nan"), f"{type(exc).__name__}: {exc}"
        ok = value is not None and math.isfinite(value)
        row["e_hull"] = float(value) if ok else None
        row["e_hull_reason"] = None if ok else (reason or "no hull value")
    return fields, relaxed
