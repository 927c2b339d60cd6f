"""Relaxation driver: batched MLIP relaxation (:mod:`plaid.relax.fire`) and the sequential ASE reference.

See :mod:`plaid.relax` for the algorithm and the per-structure failure records."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..executors import as_executor
from .fire import FireParams, Slot, fire_step, generalised_forces
from .models import load_model
from .results import FAILED_STATUSES, RelaxResult, StructureExploded

logger = logging.getLogger(__name__)
FILTERS = ("frechet", "none")


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
        min_volume_per_atom: float = 2.5,
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
        # Denser than any known solid (diamond 5.7 A^3/atom): the MLIP's neighbour and angle graphs grow with the
        # density squared and such a cell (a sampled 172-atom carbon cell at 1.0 A^3/atom) exhausts memory.
        self.min_volume_per_atom = float(min_volume_per_atom)
        self.fire = fire or FireParams()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def energy_scale(self) -> str | None:
        """The scale the energy model declares ("mp2020" or "mp_raw"; None: undeclared, no E_hull)."""
        return getattr(self.model, "energy_scale", None)

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
            "min_volume_per_atom": self.min_volume_per_atom,
            "energy_scale": self.energy_scale,
        }

    # ---------------------------------------------------------------- public entry point

    def relax(
        self,
        structures: Sequence,
        ids: Sequence | None = None,
        out_path: str | Path | None = None,
        progress: bool = True,
        batched: bool = True,
        executor=None,
    ) -> list[RelaxResult]:
        """Relax ``structures``; results in input order. With ``out_path``, resume from / append to a JSONL file.

        ``executor`` (an int of local processes or a :class:`plaid.executors.Executor`, e.g. Ray): with more than
        one worker, the structures still to do are split into chunks of at most ``batch_size``, each relaxed by
        this same engine in a worker (the relaxer is shipped to it once per task); results are written here as
        each chunk returns, so a killed run redoes only the chunks not written."""
        from tqdm.auto import tqdm

        from plaid.io import JsonlWriter

        ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
        if len(ids) != len(structures):
            raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        results: dict[str, RelaxResult] = {}
        settings = self.settings()
        if out_path is not None:
            _drop_other_settings(Path(out_path), settings)
        writer = JsonlWriter(out_path, key="id") if out_path is not None else None
        try:
            if writer is not None:
                wanted = set(ids)
                for record in writer.records:
                    if record.get("id") in wanted:
                        results[record["id"]] = RelaxResult.from_record(record)
            todo = [(i, ids[i], structures[i]) for i in range(len(ids)) if ids[i] not in results]
            bar = tqdm(total=len(todo), desc=f"relax {self.name}", disable=not progress, unit="struct")
            runner = self._run_batched if batched else self._run_sequential
            if executor is not None and as_executor(executor).workers > 1 and len(todo) > 1:
                runner = partial(self._run_distributed, executor=as_executor(executor), batched=batched)
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

    def settings(self) -> dict:
        """What makes two results comparable; stored with each JSONL record."""
        return {"name": self.model.name, "model_version": self.model.version, "fmax": self.fmax,
                "max_steps": self.max_steps, "filter": self.filter}

    def _run_distributed(self, todo: list[tuple[int, str, Any]], executor, batched: bool) -> Iterator[RelaxResult]:
        size = max(1, min(self.batch_size, math.ceil(len(todo) / executor.workers)))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        on_gpu = str(getattr(self.model, "device", "cpu")).startswith("cuda")  # a task per GPU, model on its cuda:0
        for results in executor.imap_unordered(partial(_relax_chunk, self, batched), chunks, gpus=1 if on_gpu else 0):
            yield from results

    # ---------------------------------------------------------------- batched engine

    def _start(self, index: int, sid: str, structure) -> Slot:
        if not structure.is_ordered:
            raise ValueError("structure is disordered (partial occupancies)")
        if len(structure) == 0:
            raise ValueError("structure has no sites")
        n = len(structure)
        cell = np.array(structure.lattice.matrix, dtype=float)
        x = np.zeros((n + 3, 3))
        x[:n] = structure.cart_coords
        return Slot(
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

    def _finish(self, s: Slot, status: str, reason: str | None = None, keep: bool = True) -> RelaxResult:
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

    def _check_density(self, volume: float, n_atoms: int) -> None:
        if n_atoms and volume / n_atoms < self.min_volume_per_atom:
            raise StructureExploded(
                f"volume per atom {volume / n_atoms:.3g} A^3 < min_volume_per_atom {self.min_volume_per_atom:g} A^3"
            )

    def _predict(self, slots: list[Slot]) -> dict[int, Exception]:
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
        active: list[Slot] = []
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
            ready: list[Slot] = []
            for s in active:
                try:
                    volume_ratio = abs(np.linalg.det(s.deform)) if relax_cell else 1.0
                    if not (1.0 / self.max_volume_ratio <= volume_ratio <= self.max_volume_ratio):
                        raise StructureExploded(f"volume changed by a factor {volume_ratio:.3g}")
                    current = s.structure()
                    self._check_density(current.volume, len(current))
                    s.graph = self.model.graph(current)
                    ready.append(s)
                except StructureExploded as exc:
                    yield self._finish(s, "exploded", f"{exc} (step {s.steps})", keep=False)
                except Exception as exc:  # noqa: BLE001
                    yield self._finish(s, "error", f"{type(exc).__name__}: {exc} (step {s.steps})", keep=False)
            errors = self._predict(ready) if ready else {}
            still: list[Slot] = []
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
                generalised_forces(still, relax_cell)
            active = []
            stepping: list[Slot] = []
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
                fire_step(stepping, self.fire)
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
            self._check_density(v0, n)
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
                volume = atoms.get_volume()
                ratio = volume / v0
                if not (1.0 / self.max_volume_ratio <= ratio <= self.max_volume_ratio):
                    return fail("exploded", f"volume changed by a factor {ratio:.3g} (step {steps})")
                self._check_density(volume, n)
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


def _relax_chunk(relaxer: Relaxer, batched: bool, chunk: list[tuple[int, str, Any]]) -> list[RelaxResult]:
    """A worker's share of :meth:`Relaxer.relax`: the same engine on one chunk (no file, no progress bar)."""
    runner = relaxer._run_batched if batched else relaxer._run_sequential
    return list(runner(chunk))


def _drop_other_settings(path: Path, settings: dict) -> None:
    """Remove from ``path`` the results made with other relaxer settings (or none recorded): they are redone."""
    from plaid.io import dumps, read_jsonl

    if not path.exists():
        return
    records = read_jsonl(path)
    keep = [r for r in records if r.get("settings") == settings]
    if len(keep) == len(records):
        return
    logger.warning("%s: %d results were made with other relaxer settings than %s; they are relaxed again",
                   path, len(records) - len(keep), settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(dumps(r) + "\n" for r in keep), encoding="utf-8")
    tmp.replace(path)


def get_relaxer(
    name: str,
    model_path: str | Path | None = None,
    fmax: float = 0.1,
    max_steps: int = 500,
    filter: str = "frechet",
    batch_size: int = 32,
    timeout_s: float | None = None,
    device: str = "cpu",
    energy_scale: str | None = None,
    **kwargs,
) -> Relaxer:
    """A :class:`Relaxer` for "chgnet" (weights shipped with the chgnet package) or "m3gnet" (matgl; weights from
    ``model_path``, else ``$PLAID_DATA_DIR/../models/M3GNet-MP-2021.2.8-PES``, else matgl's cache)."""
    model = load_model(name.lower(), model_path, device, energy_scale=energy_scale)
    return Relaxer(model, fmax=fmax, max_steps=max_steps, filter=filter, batch_size=batch_size,
                   timeout_s=timeout_s, **kwargs)


def relax_sequential_ase(structures: Sequence, relaxer: Relaxer | str = "chgnet", ids=None, out_path=None,
                         progress: bool = True, **kwargs) -> list[RelaxResult]:
    """Reference relaxation: ASE FIRE + FrechetCellFilter with the model's ASE calculator, one structure at a time."""
    if isinstance(relaxer, str):
        relaxer = get_relaxer(relaxer, **kwargs)
    return relaxer.relax(structures, ids=ids, out_path=out_path, progress=progress, batched=False)


# -------------------------------------------------------------------------------------------------------- CLI
