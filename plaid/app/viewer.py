"""Data for the browser-side crystal viewer (``static/viewer.js``, shipped with plaid, no CDN): atoms in the unit
cell plus their images on the cell faces, bonds, cell vectors, element colours (Jmol's scheme) and radii."""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path

import numpy as np

STATIC_DIR = Path(__file__).parent / "static"
VIEWER_JS = STATIC_DIR / "viewer.js"

# Jmol colours of common elements; others are grey.
COLORS = {
    "H": "#FFFFFF", "He": "#D9FFFF", "Li": "#CC80FF", "Be": "#C2FF00", "B": "#FFB5B5", "C": "#909090",
    "N": "#3050F8", "O": "#FF0D0D", "F": "#90E050", "Na": "#AB5CF2", "Mg": "#8AFF00", "Al": "#BFA6A6",
    "Si": "#F0C8A0", "P": "#FF8000", "S": "#FFFF30", "Cl": "#1FF01F", "K": "#8F40D4", "Ca": "#3DFF00",
    "Sc": "#E6E6E6", "Ti": "#BFC2C7", "V": "#A6A6AB", "Cr": "#8A99C7", "Mn": "#9C7AC7", "Fe": "#E06633",
    "Co": "#F090A0", "Ni": "#50D050", "Cu": "#C88033", "Zn": "#7D80B0", "Ga": "#C28F8F", "Ge": "#668F8F",
    "As": "#BD80E3", "Se": "#FFA100", "Br": "#A62929", "Rb": "#702EB0", "Sr": "#00FF00", "Y": "#94FFFF",
    "Zr": "#94E0E0", "Nb": "#73C2C9", "Mo": "#54B5B5", "Ag": "#C0C0C0", "Cd": "#FFD98F", "In": "#A67573",
    "Sn": "#668080", "Sb": "#9E63B5", "Te": "#D47A00", "I": "#940094", "Cs": "#57178F", "Ba": "#00C900",
    "La": "#70D4FF", "Hf": "#4DC2FF", "Ta": "#4DA6FF", "W": "#2194D6", "Pt": "#D0D0E0", "Au": "#FFD123",
    "Hg": "#B8B8D0", "Pb": "#575961", "Bi": "#9E4FB5",
}


def structure_view(structure, nn_factor: float = 1.1, covalent_factor: float = 1.3,
                   face_tol: float = 1e-3) -> dict:
    """Viewer data: ``atoms`` [{el, xyz, r, color}], ``bonds`` [[i, j]], ``cell`` (3 row vectors, A).

    Atoms: every site in the cell plus its images on the cell faces. Bonds: a pair is bonded when it is within
    ``nn_factor`` x the nearest-neighbour distance of one of its atoms (periodic images included) and within
    ``covalent_factor`` x the sum of covalent radii (so a far-off isolated atom gets no bond)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    frac = np.mod(np.asarray(structure.frac_coords, dtype=float), 1.0)
    species = [site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie) for site in structure]
    nearest = np.full(len(structure), np.inf)
    if len(structure):
        centers, _, _, dists = structure.get_neighbor_list(r=8.0, exclude_self=True)
        for c, d in zip(centers, dists):
            nearest[c] = min(nearest[c], d)
    points, labels, owner = [], [], []
    for k_site, (f, el) in enumerate(zip(frac, species)):
        near = [[0.0] + ([1.0] if f[k] < face_tol else []) for k in range(3)]
        for shift in itertools.product(*near):
            points.append(f + np.array(shift))
            labels.append(el)
            owner.append(k_site)
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    xyz = np.asarray(points) @ lattice
    cov = np.array([CovalentRadius.radius.get(el, 1.5) for el in labels])
    atoms = [{"el": el, "xyz": [round(float(c), 4) for c in p], "r": round(float(r), 3),
              "color": COLORS.get(el, "#B0B0B0")} for el, p, r in zip(labels, xyz, cov)]
    bonds = []
    if len(xyz) > 1:
        d = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
        nn = nearest[np.asarray(owner)] * nn_factor
        close = (d <= nn[:, None]) | (d <= nn[None, :])
        ok = close & (d < covalent_factor * (cov[:, None] + cov[None, :])) & (d > 0.4)
        i, j = np.nonzero(np.triu(ok, k=1))
        bonds = [[int(a), int(b)] for a, b in zip(i, j)]
    return {"atoms": atoms, "bonds": bonds, "cell": [[round(float(c), 4) for c in row] for row in lattice],
            "formula": structure.composition.reduced_formula}


def viewer_html(structure=None, height: int = 420) -> str:
    """The element the viewer script renders (a message when there is no structure)."""
    if structure is None:
        return f'<div class="plaid-viewer-empty" style="height:{height}px">No structure selected.</div>'
    data = html.escape(json.dumps(structure_view(structure)), quote=True)
    return (f'<div class="plaid-viewer" data-structure="{data}" style="width:100%;height:{height}px">'
            f'<canvas style="width:100%;height:100%"></canvas></div>')
