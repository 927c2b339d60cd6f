"""Energy-model adapters for the batched relaxation engine: CHGNet and M3GNet (matgl).

An adapter gives ``graph(structure)``, ``predict(graphs) -> [Prediction]`` (one batched forward), an ASE
``calculator()`` for the sequential reference, its ``name``, ``version`` and the **energy scale** its energies are on
(``energy_scale``): ``"mp2020"`` when they already include the Materials Project 2020 corrections (CHGNet: trained
on MPtrj energies with MP2020 corrections), ``"mp_raw"`` when they are raw MP GGA/GGA+U energies (M3GNet-MP-2021.2.8).
The hull uses the declared scale to decide whether MP2020 corrections are added (``plaid.hull``). A fine-tuned or
new potential passes ``energy_scale=`` to :func:`load_model`; a model whose scale is not declared gets no E_hull.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .results import StructureExploded

EV_A3_PER_GPA = 1.0 / 160.21766208  # ase.units.GPa
DEFAULT_M3GNET = "M3GNet-MP-2021.2.8-PES"
# The scale of the stock weights of each adapter (see the module docstring).
DEFAULT_ENERGY_SCALES = {"chgnet": "mp2020", "m3gnet": "mp_raw"}



@dataclass
class Prediction:
    """One structure's model output: energy (eV/atom), forces (eV/A), stress (eV/A^3, ASE sign convention)."""

    energy_per_atom: float
    forces: np.ndarray
    stress: np.ndarray


class CHGNetModel:
    """CHGNet through ``CHGNet.forward`` on a list of CrystalGraphs (one batched graph per call)."""

    name = "chgnet"
    energy_scale = DEFAULT_ENERGY_SCALES["chgnet"]

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
    energy_scale = DEFAULT_ENERGY_SCALES["m3gnet"]

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


def load_model(name: str, model_path: str | Path | None = None, device: str = "cpu", energy_scale: str | None = None):
    """Load (once per process) the adapter for ``name`` ("chgnet" or "m3gnet").

    ``energy_scale``: the scale of ``model_path``'s energies ("mp2020" or "mp_raw"). Stock weights have a known
    scale; other weights (a fine-tuned model) must declare it, else their energies get no E_hull."""
    from plaid.hull import ENERGY_SCALES

    if energy_scale is not None and energy_scale not in ENERGY_SCALES:
        raise ValueError(f"energy_scale must be one of {ENERGY_SCALES}, got {energy_scale!r}")
    key = (name, str(model_path) if model_path else None, device)
    if key not in _MODELS:
        if name == "chgnet":
            _MODELS[key] = CHGNetModel(model_path, device)
        elif name == "m3gnet":
            _MODELS[key] = M3GNetModel(model_path, device)
        else:
            raise ValueError(f"unknown relaxer {name!r}; choose chgnet or m3gnet")
    model = _MODELS[key]
    if energy_scale is not None:
        model.energy_scale = energy_scale
    elif model_path is not None and not _is_stock(name, model_path):
        model.energy_scale = None  # custom weights: the scale must be declared
    return model


def _is_stock(name: str, model_path) -> bool:
    """Whether ``model_path`` holds the stock weights whose energy scale is known (M3GNet-MP-2021.2.8-PES)."""
    return name == "m3gnet" and Path(str(model_path)).name == DEFAULT_M3GNET
