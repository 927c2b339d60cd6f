"""A hard set of structures for round-trip and encoding benchmarks: the kind of input users bring that is not a
clean database entry.

- ``perturbed``: MP-20 validation structures (seeded sample) with every site displaced by Gaussian noise
  (sigma 0.02, 0.05 or 0.1 Angstrom per coordinate, in turn) and the lattice strained by up to 2%: low symmetry
  at tight tolerances, noisy coordinates, like LLaMA samples of crystal-text-llm;
- ``walks``: structures decoded from random walks through the Wyckoff grammar (no model) over space groups of
  every crystal system: any symmetry, unusual cells, atoms at least 0.5 A apart.

    from hard_set import hard_set
    structures = hard_set(n_perturbed=300, n_walks=200)   # list of (source, id, Structure)
"""

from __future__ import annotations

import os
import random

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

WALK_GROUPS = (1, 2, 4, 12, 14, 15, 33, 62, 63, 71, 88, 123, 136, 139, 141, 148, 160, 166, 167, 176, 186, 187,
               191, 194, 198, 205, 216, 221, 225, 227, 229)


def _data_root() -> str:
    return os.environ.get("PLAID_DATA_DIR", "../shared/data")


def perturbed(n: int, seed: int = 0) -> list[tuple[str, str, Structure]]:
    df = pd.read_csv(f"{_data_root()}/mp_20/val.csv").sample(n=n, random_state=seed)
    rng = np.random.default_rng(seed)
    out = []
    for k, (mid, cif) in enumerate(zip(df["material_id"], df["cif"])):
        s = Structure.from_str(cif, fmt="cif")
        sigma = (0.02, 0.05, 0.1)[k % 3]
        strain = np.eye(3) + rng.uniform(-0.02, 0.02, size=(3, 3))
        lattice = Lattice(s.lattice.matrix @ strain)
        cart = lattice.get_cartesian_coords(s.frac_coords) + rng.normal(0, sigma, size=(len(s), 3))
        out.append(("perturbed", f"{mid}~{sigma}", Structure(lattice, s.species, cart, coords_are_cartesian=True)))
    return out


def walks(n: int, seed: int = 0, max_atoms: int = 20) -> list[tuple[str, str, Structure]]:
    from plaid.representations import get
    from plaid.sampling.grammar import WyckoffGrammar

    rep = get("wyckoff")
    rng = random.Random(seed)
    grammars = {}
    out = []
    for k in range(n):
        sg = WALK_GROUPS[k % len(WALK_GROUPS)]
        if sg not in grammars:
            grammars[sg] = WyckoffGrammar(space_groups=[sg], max_atoms=max_atoms, length_range=(2.0, 30.0))
        text = grammars[sg].random_text(rng, 600)
        out.append(("walk", f"sg{sg}-{k}", rep.decode(text)))
    return out


def hard_set(n_perturbed: int = 300, n_walks: int = 200, seed: int = 0) -> list[tuple[str, str, Structure]]:
    return perturbed(n_perturbed, seed) + walks(n_walks, seed)
