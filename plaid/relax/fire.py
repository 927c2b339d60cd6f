"""Batched FIRE with ASE's FrechetCellFilter: one ase.optimize.FIRE step for many structures at once.

The state of each structure in flight is a :class:`Slot`; :func:`generalised_forces` turns a model's forces and
stress into the filter's generalised forces, :func:`fire_step` advances every slot by one step. The driver that
predicts, checks convergence and records failures is :class:`plaid.relax.engine.Relaxer`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .models import Prediction


@dataclass
class FireParams:
    """ase.optimize.FIRE defaults (ASE 3.23+)."""

    dt: float = 0.1
    maxstep: float = 0.2
    dtmax: float = 1.0
    Nmin: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99


@dataclass
class Slot:
    """One structure in flight: FrechetCellFilter coordinates plus its FIRE state."""

    index: int
    id: str
    species: list
    orig_cell: np.ndarray  # (3, 3) rows are lattice vectors
    x: np.ndarray  # (n + 3, 3): positions in the undeformed cell, then exp_cell_factor * log(deformation)
    n: int
    v0: float
    start: float
    vel: np.ndarray = None
    dt: float = 0.1
    a: float = 0.1
    n_pos: int = 0  # FIRE's Nsteps: steps since the last uphill reset
    steps: int = 0
    first: bool = True
    e0: float = math.nan
    pred: Prediction | None = None
    gen_force: np.ndarray | None = None
    graph: Any = None
    deform: np.ndarray = field(default_factory=lambda: np.eye(3))  # expm(x[n:] / exp_cell_factor)

    @property
    def ecf(self) -> float:
        return float(self.n)

    def structure(self):
        from pymatgen.core import Lattice, Structure

        f = self.deform
        cell = self.orig_cell @ f.T
        positions = self.x[: self.n] @ f.T
        return Structure(Lattice(cell), self.species, positions, coords_are_cartesian=True)


def _matrix_exp(logs: np.ndarray) -> np.ndarray:
    """Batched matrix exponential (float64)."""
    import torch

    return torch.linalg.matrix_exp(torch.from_numpy(np.ascontiguousarray(logs, dtype=np.float64))).numpy()


def _frechet_cell_forces(logs: np.ndarray, ucf_grads: np.ndarray) -> np.ndarray:
    """d/dL <expm(L), G> for a batch, i.e. ASE's sum(expm_frechet(L, E_mn) * G) for every (m, n)."""
    import torch

    L = torch.tensor(logs, dtype=torch.float64, requires_grad=True)
    G = torch.tensor(ucf_grads, dtype=torch.float64)
    (grad,) = torch.autograd.grad((torch.linalg.matrix_exp(L) * G).sum(), L)
    return grad.numpy()


def generalised_forces(slots: list[Slot], relax_cell: bool) -> None:
    """FrechetCellFilter.get_forces for every slot (vectorised over the batch for the cell part)."""
    if relax_cell:
        deforms = np.stack([s.deform for s in slots])
        cells = np.stack([s.orig_cell for s in slots]) @ deforms.transpose(0, 2, 1)
        volumes = np.abs(np.linalg.det(cells))
        virials = -volumes[:, None, None] * np.stack([s.pred.stress for s in slots])
        ucf_grads = virials @ np.linalg.inv(deforms.transpose(0, 2, 1))
        logs = np.stack([s.x[s.n :] / s.ecf for s in slots])
        cell_forces = _frechet_cell_forces(logs, ucf_grads)
    for i, s in enumerate(slots):
        g = np.zeros((s.n + 3, 3))
        if relax_cell:
            g[: s.n] = s.pred.forces @ s.deform
            g[s.n :] = cell_forces[i] / s.ecf
        else:
            g[: s.n] = s.pred.forces
        s.gen_force = g


def fire_step(slots: list[Slot], p: FireParams) -> None:
    """One ase.optimize.FIRE step for every slot, vectorised over all rows of all slots."""
    sizes = [len(s.x) for s in slots]
    owner = np.repeat(np.arange(len(slots)), sizes)
    x = np.concatenate([s.x for s in slots])
    f = np.concatenate([s.gen_force for s in slots])
    v = np.concatenate([s.vel if s.vel is not None else np.zeros_like(s.x) for s in slots])
    k = len(slots)
    first = np.array([s.first for s in slots])
    dt = np.array([s.dt for s in slots])
    a = np.array([s.a for s in slots])
    n_pos = np.array([s.n_pos for s in slots])

    vf = np.bincount(owner, (f * v).sum(1), minlength=k)
    f2 = np.bincount(owner, (f * f).sum(1), minlength=k)
    v2 = np.bincount(owner, (v * v).sum(1), minlength=k)
    downhill = (vf > 0.0) & ~first
    reset = (vf <= 0.0) & ~first
    # downhill: mix velocity toward the force direction, grow dt after Nmin good steps
    scale = np.where(downhill, np.sqrt(v2) / np.sqrt(np.where(f2 > 0, f2, 1.0)), 0.0)
    mix = np.where(downhill, a, 0.0)
    v = (1.0 - mix[owner, None]) * v + (mix * scale)[owner, None] * f
    grow = downhill & (n_pos > p.Nmin)
    dt = np.where(grow, np.minimum(dt * p.finc, p.dtmax), dt)
    a = np.where(grow, a * p.fa, a)
    n_pos = np.where(downhill, n_pos + 1, n_pos)
    # uphill: stop, restart with smaller dt
    v[reset[owner]] = 0.0
    a = np.where(reset, p.astart, a)
    dt = np.where(reset, dt * p.fdec, dt)
    n_pos = np.where(reset, 0, n_pos)

    v = v + dt[owner, None] * f
    dr = dt[owner, None] * v
    norm = np.sqrt(np.bincount(owner, (dr * dr).sum(1), minlength=k))
    cap = np.where(norm > p.maxstep, p.maxstep / np.where(norm > 0, norm, 1.0), 1.0)
    x = x + cap[owner, None] * dr

    offsets = np.cumsum([0] + sizes)
    deforms = _matrix_exp(np.stack([x[offsets[i + 1] - 3 : offsets[i + 1]] / s.ecf for i, s in enumerate(slots)]))
    for i, s in enumerate(slots):
        s.deform = deforms[i]
        s.x = x[offsets[i] : offsets[i + 1]]
        s.vel = v[offsets[i] : offsets[i + 1]]
        s.dt, s.a, s.n_pos, s.first = float(dt[i]), float(a[i]), int(n_pos[i]), False
        s.steps += 1
