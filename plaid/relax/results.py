"""Relaxation results: per-structure status, reason, energy and relaxed structure (shared by engine and CLI)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

STATUSES = ("converged", "max_steps", "exploded", "timeout", "error")
FAILED_STATUSES = ("exploded", "timeout", "error")


class StructureExploded(Exception):
    """The structure left the physical regime of the model (isolated atoms, non-finite outputs, volume blow-up)."""


@dataclass
class RelaxResult:
    """Outcome of relaxing one structure. ``energy_per_atom`` (eV/atom) is NaN for failed structures."""

    id: str
    status: str
    reason: str | None = None
    energy_per_atom: float = math.nan
    structure: Any = None  # relaxed pymatgen Structure, None when failed
    n_steps: int = 0
    initial_energy_per_atom: float = math.nan
    wall_time_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "energy_per_atom": self.energy_per_atom,
            "initial_energy_per_atom": self.initial_energy_per_atom,
            "n_steps": self.n_steps,
            "wall_time_s": self.wall_time_s,
            "structure": None if self.structure is None else self.structure.as_dict(),
        }

    @classmethod
    def from_record(cls, record: dict) -> RelaxResult:
        from pymatgen.core import Structure

        def num(value):
            return math.nan if value is None else float(value)

        structure = record.get("structure")
        return cls(
            id=record["id"],
            status=record["status"],
            reason=record.get("reason"),
            energy_per_atom=num(record.get("energy_per_atom")),
            structure=None if structure is None else Structure.from_dict(structure),
            n_steps=int(record.get("n_steps") or 0),
            initial_energy_per_atom=num(record.get("initial_energy_per_atom")),
            wall_time_s=float(record.get("wall_time_s") or 0.0),
        )


# ----------------------------------------------------------------------------------------------- model adapters
