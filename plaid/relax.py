"""MLIP relaxation of crystal structures: CHGNet and M3GNet (matgl), batched FIRE with Frechet cell filter.

``get_relaxer("chgnet")`` returns a :class:`Relaxer`. ``Relaxer.relax(structures)`` runs a *batched* relaxation:
all structures in flight go through one model forward on a batched graph per step, and a vectorised FIRE
(the same update rule, defaults and convergence test as ``ase.optimize.FIRE``) moves positions and cell together
with the semantics of ``ase.filters.FrechetCellFilter``: the cell degrees of freedom are the matrix logarithm of
the deformation gradient times ``exp_cell_factor`` (= number of atoms), the cell "forces" come from the model's
stress through the Frechet derivative of the matrix exponential, and a structure is converged when the largest
row norm of the (N + 3, 3) generalised force array is below ``fmax`` (eV/A). Converged structures leave the batch
and waiting ones enter. ``Relaxer.relax(..., batched=False)`` / :func:`relax_sequential_ase` runs the reference:
ASE FIRE + FrechetCellFilter with the model's own ASE calculator, one structure at a time.

A structure never crashes the batch: non-finite energy/forces/stress, volume blow-up or collapse
(``max_volume_ratio``), atoms without any neighbour inside the model cutoff, a relaxed structure with two atoms
closer than ``min_distance`` (0.5 A, an MLIP energy hole) ("exploded"), the per-structure step
cap ("max_steps", energy kept), the per-structure wall-clock timeout ("timeout") and any other exception
("error") are recorded per structure with a reason. With ``out_path`` each result is appended to a JSONL file
(:class:`plaid.io.JsonlWriter`, key ``id``) as soon as it finishes; a re-run skips finished ids.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

STATUSES = ("converged", "max_steps", "exploded", "timeout", "error")
FAILED_STATUSES = ("exploded", "timeout", "error")
FILTERS = ("frechet", "none")
EV_A3_PER_GPA = 1.0 / 160.21766208  # ase.units.GPa

# Whether a relaxer's energies are already on the Materials Project 2020 correction scale (so no MP2020
# correction may be added on top): CHGNet is trained on MPtrj energies *with* MP2020 corrections;
# M3GNet-MP-2021.2.8 is trained on raw MP GGA/GGA+U energies.
MP2020_COMPATIBLE = {"chgnet": True, "m3gnet": False}
DEFAULT_M3GNET = "M3GNet-MP-2021.2.8-PES"


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


@dataclass
class Prediction:
    """One structure's model output: energy (eV/atom), forces (eV/A), stress (eV/A^3, ASE sign convention)."""

    energy_per_atom: float
    forces: np.ndarray
    stress: np.ndarray


class CHGNetModel:
    """CHGNet through ``CHGNet.forward`` on a list of CrystalGraphs (one batched graph per call)."""

    name = "chgnet"
    mp2020_compatible = MP2020_COMPATIBLE["chgnet"]

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu"):
        from chgnet.model import CHGNet

        if model_path is None:
            self.model = CHGNet.load(verbose=False, use_device=device)
            self.version = f"CHGNet {self.model.version}"
        else:
            self.model = CHGNet.from_file(str(model_path)).to(device)
            self.version = f"CHGNet {self.model.version or Path(model_path).name}"
        self.model.eval()
        self.model.graph_converter.set_isolated_atom_response("error")
        self.device = device
        self.cutoff = float(self.model.graph_converter.atom_graph_cutoff)

    def graph(self, structure):
        try:
            return self.model.graph_converter(structure).to(self.device)
        except ValueError as exc:
            if "isolated atom" in str(exc):
                raise StructureExploded(f"isolated atom(s): no neighbour within the {self.cutoff:g} A cutoff") from exc
            raise

    def predict(self, graphs: list) -> list[Prediction]:
        try:
            return self._predict_one_backward(graphs)
        except (AttributeError, TypeError, KeyError):  # chgnet internals changed: use the public forward
            return self._predict_forward(graphs)

    def _predict_one_backward(self, graphs: list) -> list[Prediction]:
        """Energy from CHGNet's own ``_compute``, forces and stress from ONE backward pass without
        ``create_graph`` (``CHGNet.forward`` runs two create_graph backwards, meant for training): same values,
        about half the time."""
        import torch
        from chgnet.model.model import BatchedGraph

        m = self.model
        with torch.enable_grad():
            bg = BatchedGraph.from_graphs(graphs, bond_basis_expansion=m.bond_basis_expansion,
                                          angle_basis_expansion=m.angle_basis_expansion, compute_stress=True)
            out = m._compute(bg, compute_force=False, compute_stress=False)
            counts = out["atoms_per_graph"]
            total = out["e"] * counts if m.is_intensive else out["e"]
            grads = torch.autograd.grad(total.sum(), [*bg.atom_positions, *bg.strains])
        comp = 0.0 if m.composition_model is None else m.composition_model(graphs).detach()
        energy = (out["e"].detach() + comp) if m.is_intensive else (out["e"].detach() + comp) / counts
        energies = energy.cpu().double().numpy()
        n = len(graphs)
        volumes = bg.volumes.detach().cpu().double().numpy()
        return [
            Prediction(float(energies[i]), -grads[i].detach().cpu().double().numpy(),
                       grads[n + i].detach().cpu().double().numpy() / volumes[i])
            for i in range(n)
        ]

    def _predict_forward(self, graphs: list) -> list[Prediction]:
        import torch

        with torch.enable_grad():
            out = self.model(graphs, task="efs")
        counts = out["atoms_per_graph"].tolist()
        energies = out["e"].detach().cpu().numpy()
        if not self.model.is_intensive:
            energies = energies / np.asarray(counts)
        return [
            Prediction(
                float(energies[i]),
                out["f"][i].detach().cpu().double().numpy(),
                out["s"][i].detach().cpu().double().numpy() * EV_A3_PER_GPA,
            )
            for i in range(len(graphs))
        ]

    def calculator(self):
        from chgnet.model.dynamics import CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(model=self.model, use_device=self.device, on_isolated_atoms="error")


class M3GNetModel:
    """M3GNet through matgl's ``Potential`` on a PyG ``Batch`` of graphs (one forward per call)."""

    name = "m3gnet"
    mp2020_compatible = MP2020_COMPATIBLE["m3gnet"]

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu"):
        import matgl
        from matgl.ext.pymatgen import Structure2Graph

        if model_path is None:
            from plaid.paths import models_dir

            shared = models_dir()
            model_path = shared / DEFAULT_M3GNET if shared and (shared / DEFAULT_M3GNET).is_dir() else DEFAULT_M3GNET
        self.potential = matgl.load_model(model_path)
        self.potential.eval()
        self.potential.to(device)
        self.device = device
        self.version = Path(str(model_path)).name
        model = self.potential.model
        self.cutoff = float(model.cutoff)
        self.converter = Structure2Graph(element_types=model.element_types, cutoff=model.cutoff)

    def graph(self, structure):
        import torch

        g, lat, state = self.converter.get_graph(structure)
        degree = torch.bincount(g.edge_index[0], minlength=len(structure))
        if bool((degree == 0).any()):
            raise StructureExploded(f"isolated atom(s): no neighbour within the {self.cutoff:g} A cutoff")
        return g, lat.reshape(1, 3, 3), torch.as_tensor(np.asarray(state))

    def predict(self, graphs: list) -> list[Prediction]:
        import torch
        from torch_geometric.data import Batch

        batch = Batch.from_data_list([g for g, _, _ in graphs]).to(self.device)
        lat = torch.cat([lat for _, lat, _ in graphs]).to(self.device)
        state = torch.stack([s for _, _, s in graphs]).to(self.device)
        energies, forces, stresses = self.potential(batch, lat, state)[:3]
        counts = torch.bincount(batch.batch, minlength=len(graphs)).tolist()
        energies = energies.detach().cpu().double().numpy().reshape(-1)
        forces = torch.split(forces.detach().cpu().double(), counts)
        stresses = stresses.detach().cpu().double().reshape(-1, 3, 3).numpy()
        return [
            Prediction(float(energies[i] / counts[i]), forces[i].numpy(), stresses[i] * EV_A3_PER_GPA)
            for i in range(len(graphs))
        ]

    def calculator(self):
        from matgl.ext.ase import PESCalculator

        return PESCalculator(self.potential, stress_unit="eV/A3")


_MODELS: dict[tuple, Any] = {}


def load_model(name: str, model_path: str | Path | None = None, device: str = "cpu"):
    """Load (once per process) the adapter for ``name`` ("chgnet" or "m3gnet")."""
    key = (name, str(model_path) if model_path else None, device)
    if key not in _MODELS:
        if name == "chgnet":
            _MODELS[key] = CHGNetModel(model_path, device)
        elif name == "m3gnet":
            _MODELS[key] = M3GNetModel(model_path, device)
        else:
            raise ValueError(f"unknown relaxer {name!r}; choose chgnet or m3gnet")
    return _MODELS[key]


# ------------------------------------------------------------------------------------------------------- FIRE


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
class _Slot:
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


def _generalised_forces(slots: list[_Slot], relax_cell: bool) -> None:
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


def _fire_step(slots: list[_Slot], p: FireParams) -> None:
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


# ---------------------------------------------------------------------------------------------------- relaxer


class Relaxer:
    """Batched MLIP relaxation with per-structure convergence, step cap, timeout and failure records."""

    optimizer = "FIRE"

    def __init__(
        self,
        model,
        fmax: float = 0.1,
        max_steps: int = 500,
        filter: str = "frechet",
        batch_size: int = 32,
        timeout_s: float | None = None,
        max_volume_ratio: float = 10.0,
        min_distance: float = 0.5,
        fire: FireParams | None = None,
    ):
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
        self.model = model
        self.fmax = float(fmax)
        self.max_steps = int(max_steps)
        self.filter = filter
        self.batch_size = int(batch_size)
        self.timeout_s = timeout_s
        self.max_volume_ratio = float(max_volume_ratio)
        self.min_distance = float(min_distance)
        self.fire = fire or FireParams()

    @property
    def name(self) -> str:
        return self.model.name

    def describe(self) -> dict:
        return {
            "name": self.model.name,
            "model_version": self.model.version,
            "fmax": self.fmax,
            "max_steps": self.max_steps,
            "filter": "FrechetCellFilter" if self.filter == "frechet" else "none (fixed cell)",
            "optimizer": self.optimizer,
            "fire": vars(self.fire),
            "batch_size": self.batch_size,
            "timeout_s": self.timeout_s,
            "max_volume_ratio": self.max_volume_ratio,
            "min_distance": self.min_distance,
            "energies_mp2020_compatible": self.model.mp2020_compatible,
        }

    # ---------------------------------------------------------------- public entry point

    def relax(
        self,
        structures: Sequence,
        ids: Sequence | None = None,
        out_path: str | Path | None = None,
        progress: bool = True,
        batched: bool = True,
    ) -> list[RelaxResult]:
        """Relax ``structures``; results in input order. With ``out_path``, resume from / append to a JSONL file."""
        from tqdm.auto import tqdm

        from plaid.io import JsonlWriter

        ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
        if len(ids) != len(structures):
            raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        results: dict[str, RelaxResult] = {}
        writer = JsonlWriter(out_path, key="id") if out_path is not None else None
        try:
            settings = self._settings()
            if writer is not None:
                wanted, mismatched = set(ids), 0
                for record in writer.records:
                    if record.get("id") in wanted:
                        results[record["id"]] = RelaxResult.from_record(record)
                        mismatched += record.get("settings", settings) != settings
                if mismatched:
                    logger.warning("%s: %d finished results were made with other relaxer settings than %s; they are "
                                   "reused as they are (use a new out_path to redo them)", out_path, mismatched,
                                   settings)
            todo = [(i, ids[i], structures[i]) for i in range(len(ids)) if ids[i] not in results]
            bar = tqdm(total=len(todo), desc=f"relax {self.name}", disable=not progress, unit="struct")
            runner = self._run_batched if batched else self._run_sequential
            for result in runner(todo):
                results[result.id] = result
                if writer is not None:
                    writer.write({**result.to_record(), "settings": settings})
                bar.update(1)
            bar.close()
        finally:
            if writer is not None:
                writer.close()
        return [results[i] for i in ids]

    def _settings(self) -> dict:
        """What makes two results comparable; stored with each JSONL record."""
        return {"name": self.model.name, "model_version": self.model.version, "fmax": self.fmax,
                "max_steps": self.max_steps, "filter": self.filter}

    # ---------------------------------------------------------------- batched engine

    def _start(self, index: int, sid: str, structure) -> _Slot:
        if not structure.is_ordered:
            raise ValueError("structure is disordered (partial occupancies)")
        if len(structure) == 0:
            raise ValueError("structure has no sites")
        n = len(structure)
        cell = np.array(structure.lattice.matrix, dtype=float)
        x = np.zeros((n + 3, 3))
        x[:n] = structure.cart_coords
        return _Slot(
            index=index,
            id=sid,
            species=[site.specie for site in structure],
            orig_cell=cell,
            x=x,
            n=n,
            v0=abs(float(np.linalg.det(cell))),
            start=time.perf_counter(),
            dt=self.fire.dt,
            a=self.fire.astart,
        )

    def _collapsed(self, structure) -> str | None:
        """Reason if two atoms of a finished relaxation are closer than ``min_distance`` (an MLIP energy hole)."""
        if len(structure) < 2 or self.min_distance <= 0:
            return None
        d = structure.distance_matrix
        closest = float(d[~np.eye(len(structure), dtype=bool)].min())
        if closest < self.min_distance:
            return f"atoms collapsed: closest pair {closest:.3g} A < min_distance {self.min_distance:g} A"
        return None

    def _finish(self, s: _Slot, status: str, reason: str | None = None, keep: bool = True) -> RelaxResult:
        ok = keep and status not in FAILED_STATUSES
        structure = s.structure() if ok else None
        collapsed = self._collapsed(structure) if structure is not None else None
        if collapsed:
            status, reason, ok, structure = "exploded", f"{collapsed} (step {s.steps})", False, None
        return RelaxResult(
            id=s.id,
            status=status,
            reason=reason,
            energy_per_atom=s.pred.energy_per_atom if ok and s.pred is not None else math.nan,
            structure=structure,
            n_steps=s.steps,
            initial_energy_per_atom=s.e0,
            wall_time_s=time.perf_counter() - s.start,
        )

    def _predict(self, slots: list[_Slot]) -> dict[int, Exception]:
        """One batched forward for all slots with a graph; on failure fall back to one forward per slot."""
        errors: dict[int, Exception] = {}
        try:
            preds = self.model.predict([s.graph for s in slots])
            for s, p in zip(slots, preds):
                s.pred = p
        except Exception:  # noqa: BLE001 - isolate the structure that breaks the batch
            for i, s in enumerate(slots):
                try:
                    s.pred = self.model.predict([s.graph])[0]
                except Exception as exc:  # noqa: BLE001
                    errors[i] = exc
        return errors

    def _run_batched(self, todo: list[tuple[int, str, Any]]) -> Iterator[RelaxResult]:
        relax_cell = self.filter == "frechet"
        queue = list(todo)
        active: list[_Slot] = []
        while queue or active:
            while queue and len(active) < self.batch_size:
                index, sid, structure = queue.pop(0)
                try:
                    active.append(self._start(index, sid, structure))
                except Exception as exc:  # noqa: BLE001
                    yield RelaxResult(id=sid, status="error", reason=f"{type(exc).__name__}: {exc}")
            if not active:
                continue
            # graphs at the current coordinates
            ready: list[_Slot] = []
            for s in active:
                try:
                    volume_ratio = abs(np.linalg.det(s.deform)) if relax_cell else 1.0
                    if not (1.0 / self.max_volume_ratio <= volume_ratio <= self.max_volume_ratio):
                        raise StructureExploded(f"volume changed by a factor {volume_ratio:.3g}")
                    s.graph = self.model.graph(s.structure())
                    ready.append(s)
                except StructureExploded as exc:
                    yield self._finish(s, "exploded", f"{exc} (step {s.steps})", keep=False)
                except Exception as exc:  # noqa: BLE001
                    yield self._finish(s, "error", f"{type(exc).__name__}: {exc} (step {s.steps})", keep=False)
            errors = self._predict(ready) if ready else {}
            still: list[_Slot] = []
            for i, s in enumerate(ready):
                s.graph = None
                if i in errors:
                    yield self._finish(s, "error", f"{type(errors[i]).__name__}: {errors[i]} (step {s.steps})", False)
                    continue
                p = s.pred
                if not (math.isfinite(p.energy_per_atom) and np.isfinite(p.forces).all() and np.isfinite(p.stress).all()):
                    yield self._finish(s, "exploded", f"non-finite energy/forces/stress (step {s.steps})", keep=False)
                    continue
                if s.steps == 0:
                    s.e0 = p.energy_per_atom
                still.append(s)
            if still:
                _generalised_forces(still, relax_cell)
            active = []
            stepping: list[_Slot] = []
            for s in still:
                fmax = float(np.linalg.norm(s.gen_force, axis=1).max())
                if fmax < self.fmax:
                    yield self._finish(s, "converged")
                elif s.steps >= self.max_steps:
                    yield self._finish(s, "max_steps", f"fmax {fmax:.3g} eV/A after {s.steps} steps")
                elif self.timeout_s is not None and time.perf_counter() - s.start > self.timeout_s:
                    yield self._finish(s, "timeout", f"exceeded {self.timeout_s:g} s at step {s.steps}", keep=False)
                else:
                    stepping.append(s)
            if stepping:
                _fire_step(stepping, self.fire)
            active = stepping

    # ---------------------------------------------------------------- sequential ASE reference

    def _run_sequential(self, todo: list[tuple[int, str, Any]]) -> Iterator[RelaxResult]:
        for _, sid, structure in todo:
            yield self._relax_one_ase(sid, structure)

    def _relax_one_ase(self, sid: str, structure) -> RelaxResult:
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE
        from pymatgen.io.ase import AseAtomsAdaptor

        start = time.perf_counter()
        steps, e0 = 0, math.nan

        def fail(status: str, reason: str) -> RelaxResult:
            return RelaxResult(sid, status, reason, n_steps=steps, initial_energy_per_atom=e0,
                               wall_time_s=time.perf_counter() - start)

        try:
            if not structure.is_ordered:
                raise ValueError("structure is disordered (partial occupancies)")
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = self.model.calculator()
            n = len(atoms)
            v0 = atoms.get_volume()
            target = FrechetCellFilter(atoms) if self.filter == "frechet" else atoms
            p = self.fire
            opt = FIRE(target, logfile=None, dt=p.dt, maxstep=p.maxstep, dtmax=p.dtmax, Nmin=p.Nmin,
                       finc=p.finc, fdec=p.fdec, astart=p.astart, fa=p.fa, a=p.astart)
            converged = False
            for converged in opt.irun(fmax=self.fmax, steps=self.max_steps):
                steps = opt.nsteps
                energy = float(atoms.get_potential_energy()) / n
                if steps == 0:
                    e0 = energy
                if not (math.isfinite(energy) and np.isfinite(atoms.get_forces()).all()):
                    return fail("exploded", f"non-finite energy/forces/stress (step {steps})")
                ratio = atoms.get_volume() / v0
                if not (1.0 / self.max_volume_ratio <= ratio <= self.max_volume_ratio):
                    return fail("exploded", f"volume changed by a factor {ratio:.3g} (step {steps})")
                if not converged and self.timeout_s is not None and time.perf_counter() - start > self.timeout_s:
                    return fail("timeout", f"exceeded {self.timeout_s:g} s at step {steps}")
            energy = float(atoms.get_potential_energy()) / n
            status = "converged" if converged else "max_steps"
            reason = None if converged else f"fmax not reached after {steps} steps"
            relaxed = AseAtomsAdaptor.get_structure(atoms)
            collapsed = self._collapsed(relaxed)
            if collapsed:
                return fail("exploded", f"{collapsed} (step {steps})")
            return RelaxResult(sid, status, reason, energy, relaxed, steps, e0, time.perf_counter() - start)
        except StructureExploded as exc:
            return fail("exploded", f"{exc} (step {steps})")
        except Exception as exc:  # noqa: BLE001
            if "isolated atom" in str(exc):
                return fail("exploded", f"isolated atom(s) (step {steps})")
            return fail("error", f"{type(exc).__name__}: {exc} (step {steps})")


def get_relaxer(
    name: str,
    model_path: str | Path | None = None,
    fmax: float = 0.1,
    max_steps: int = 500,
    filter: str = "frechet",
    batch_size: int = 32,
    timeout_s: float | None = None,
    device: str = "cpu",
    **kwargs,
) -> Relaxer:
    """A :class:`Relaxer` for "chgnet" (weights shipped with the chgnet package) or "m3gnet" (matgl; weights from
    ``model_path``, else ``$PLAID_DATA_DIR/../models/M3GNet-MP-2021.2.8-PES``, else matgl's cache)."""
    model = load_model(name.lower(), model_path, device)
    return Relaxer(model, fmax=fmax, max_steps=max_steps, filter=filter, batch_size=batch_size,
                   timeout_s=timeout_s, **kwargs)


def relax_sequential_ase(structures: Sequence, relaxer: Relaxer | str = "chgnet", ids=None, out_path=None,
                         progress: bool = True, **kwargs) -> list[RelaxResult]:
    """Reference relaxation: ASE FIRE + FrechetCellFilter with the model's ASE calculator, one structure at a time."""
    if isinstance(relaxer, str):
        relaxer = get_relaxer(relaxer, **kwargs)
    return relaxer.relax(structures, ids=ids, out_path=out_path, progress=progress, batched=False)


# -------------------------------------------------------------------------------------------------------- CLI


def _read_inputs(path: Path) -> tuple[list, list[str], list[tuple[str, str]]]:
    """Structures and ids from a CSV with a ``cif`` column, a JSONL with ``cif``, or a directory of .cif files.
    Unparseable rows come back separately as (id, reason)."""
    from pymatgen.core import Structure

    rows: list[tuple[str, str]] = []
    if path.is_dir():
        rows = [(p.stem, p.read_text()) for p in sorted(path.glob("*.cif"))]
    elif path.suffix == ".jsonl":
        from plaid.io import read_jsonl

        for i, rec in enumerate(read_jsonl(path)):
            rows.append((str(rec.get("sample_id", rec.get("id", rec.get("material_id", i)))), rec.get("cif") or ""))
    else:
        import pandas as pd

        df = pd.read_csv(path)
        id_col = next((c for c in ("sample_id", "id", "material_id") if c in df.columns), None)
        ids = df[id_col].astype(str) if id_col else df.index.astype(str)
        rows = list(zip(ids, df["cif"].fillna("")))
    structures, ids, bad = [], [], []
    for sid, cif in rows:
        try:
            structures.append(Structure.from_str(cif, fmt="cif"))
            ids.append(sid)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            bad.append((sid, f"unparseable CIF: {type(exc).__name__}: {exc}"))
    return structures, ids, bad


def _cli(args) -> int:
    import csv
    from collections import Counter

    structures, ids, bad = _read_inputs(Path(args.input))
    relaxer = get_relaxer(args.relaxer, model_path=args.model_path, fmax=args.fmax, max_steps=args.max_steps,
                          filter=args.filter, batch_size=args.batch_size, timeout_s=args.timeout, device=args.device)
    results = relaxer.relax(structures, ids=ids, out_path=args.out, progress=not args.no_progress)
    results += [RelaxResult(id=sid, status="error", reason=reason) for sid, reason in bad]
    print(json.dumps(relaxer.describe()))
    print("statuses:", dict(Counter(r.status for r in results)), f"({len(results)} inputs)")
    if args.hull or args.reference_csv:
        from plaid.hull import load_hull

        hull = load_hull(args.hull, reference_csv=args.reference_csv)
        out = Path(args.out).with_suffix(".ehull.csv")
        with open(out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "status", "energy_per_atom", "e_hull", "reason"])
            for r in results:
                e, reason = (math.nan, f"relaxation {r.status}: {r.reason}") if r.failed else \
                    hull.e_above_hull(r.structure, r.energy_per_atom, relaxer.name)
                writer.writerow([r.id, r.status, r.energy_per_atom, e, reason or ""])
        print(json.dumps(hull.describe()))
        print(f"E_hull per structure: {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "relax", help="relax structures with CHGNet/M3GNet (batched FIRE + cell filter), optional E_hull",
        description="Relax the structures of INPUT (CSV with a cif column, JSONL with cif, or a directory of "
                    ".cif files); results go to OUT (JSONL, resumable). With --hull/--reference-csv, also writes "
                    "OUT.ehull.csv with the energy above hull.")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="JSONL of per-structure results (re-run resumes)")
    p.add_argument("--relaxer", default="chgnet", choices=["chgnet", "m3gnet"])
    p.add_argument("--model-path", default=None)
    p.add_argument("--fmax", type=float, default=0.1, help="eV/A (default 0.1)")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--filter", default="frechet", choices=list(FILTERS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--timeout", type=float, default=None, help="seconds per structure")
    p.add_argument("--device", default="cpu")
    p.add_argument("--hull", default=None, help="2023-02-07-ppd-mp.pkl.gz or MP entries .json.gz")
    p.add_argument("--reference-csv", default=None, help="offline hull from formation energies (+ MP elemental refs)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cli)
