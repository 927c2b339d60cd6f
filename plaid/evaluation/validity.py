"""Structural and compositional validity, as defined by CDVAE (Xie et al. 2022) and reused by DiffCSP/FlowMM.

- Structural: no two atoms closer than 0.5 A (periodic images included) and cell volume >= 0.1 A^3.
- Compositional: SMACT charge neutrality + Pauling electronegativity test. A unary composition is valid; an
  all-metal composition (alloy) is valid. The oxidation-state table is explicit: ``smact14`` (the SMACT 2014
  table, ``smact/data/oxidation_states.txt``, which CDVAE/DiffCSP/FlowMM numbers used, default), ``icsd24``
  (the ICSD 2024 table as smact 4's own ``smact_validity`` builds it by default: ``ICSD24OxStatesFilter``
  with consensus=3, no zero state, commonality "low") or ``icsd24_filtered``
  (``oxidation_states_icsd24_filtered.txt``, smact's ``Element.oxidation_states``: > 5 reports).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure

from .registry import register_metric

STRUCT_DIST_CUTOFF = 0.5  # Angstrom, CDVAE
STRUCT_MIN_VOLUME = 0.1  # Angstrom^3, CDVAE
OXIDATION_TABLES = {
    "smact14": "oxidation_states.txt",
    "icsd24": "oxidation_states_icsd24_counts.json (ICSD24OxStatesFilter: consensus=3, commonality=low, no 0)",
    "icsd24_filtered": "oxidation_states_icsd24_filtered.txt",
}
ICSD24_FILTER = {"consensus": 3, "include_zero": False, "commonality": "low"}
DEFAULT_OXIDATION_TABLE = "smact14"


@register_metric("struct_valid")
def structural_validity(
    structure: Structure, cutoff: float = STRUCT_DIST_CUTOFF, min_volume: float = STRUCT_MIN_VOLUME
) -> tuple[bool, str | None]:
    """(valid, reason): every interatomic distance, periodic images included, >= ``cutoff``; volume >= min."""
    if len(structure) == 0:
        return False, "no atoms"
    volume = structure.volume
    if not math.isfinite(volume) or volume < min_volume:
        return False, f"volume {volume:.4g} A^3 < {min_volume}"
    if not np.all(np.isfinite(structure.frac_coords)):
        return False, "non-finite coordinates"
    centers, _, _, distances = structure.get_neighbor_list(r=cutoff, exclude_self=True)
    if len(centers):
        return False, f"atoms {float(np.min(distances)):.3f} A apart (< {cutoff} A)"
    return True, None


@register_metric("min_distance")
def min_interatomic_distance(structure: Structure, search_radius: float = 5.0) -> float:
    """Shortest interatomic distance including periodic images (nan if none within ``search_radius``)."""
    if len(structure) == 0:
        return float("nan")
    _, _, _, distances = structure.get_neighbor_list(r=search_radius, exclude_self=True)
    return float(np.min(distances)) if len(distances) else float("nan")


@functools.lru_cache(maxsize=8)
def oxidation_table(name: str = DEFAULT_OXIDATION_TABLE) -> dict[str, tuple[int, ...]]:
    """Element -> allowed oxidation states: one of smact's shipped tables (see ``OXIDATION_TABLES``) or a
    file in smact's format (``El state state ...`` per line, ``#`` comments)."""
    if name == "icsd24":
        from smact.utils.oxidation import ICSD24OxStatesFilter

        df = ICSD24OxStatesFilter().filter(**ICSD24_FILTER)
        return {
            str(row["element"]): tuple(int(x) for x in str(row["oxidation_state"]).split())
            for _, row in df.iterrows()
        }
    path = oxidation_table_path(name)
    table: dict[str, tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        table[parts[0]] = tuple(int(p) for p in parts[1:])
    return table


def oxidation_table_path(name: str) -> Path:
    if name in OXIDATION_TABLES:
        import smact

        return Path(smact.data_directory) / OXIDATION_TABLES[name].split(" ")[0]
    path = Path(name)
    if not path.is_file():
        raise ValueError(
            f"unknown oxidation-state table {name!r}; choose from {', '.join(OXIDATION_TABLES)} or a file"
        )
    return path


def describe_oxidation_table(name: str = DEFAULT_OXIDATION_TABLE) -> dict:
    """What the report states about the table: name, source, a sha256 of its contents, the smact version."""
    from importlib.metadata import version

    table = oxidation_table(name)
    content = "\n".join(f"{el} {' '.join(map(str, ox))}" for el, ox in sorted(table.items()))
    return {
        "name": name,
        "source": OXIDATION_TABLES.get(name, str(name)),
        "table_sha256": hashlib.sha256(content.encode()).hexdigest(),
        "smact_version": version("smact"),
        "n_elements": len(table),
        "filter": ICSD24_FILTER if name == "icsd24" else None,
    }


@functools.lru_cache(maxsize=256)
def _pauling_eneg(symbol: str) -> float | None:
    import smact

    value = smact.Element(symbol).pauling_eneg
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _pauling_ok(ox_states: tuple[int, ...], enegs: list[float | None]) -> bool:
    """Cations less electronegative than anions. As in CDVAE (smact 2.x), a missing electronegativity met
    while comparing a cation with an anion makes the whole test pass."""
    for (ox1, en1), (ox2, en2) in itertools.combinations(zip(ox_states, enegs), 2):
        opposite = (ox1 > 0 and ox2 < 0) or (ox1 < 0 and ox2 > 0)
        if not opposite:
            continue
        if en1 is None or en2 is None:
            return True
        if (ox1 > 0 and en1 >= en2) or (ox1 < 0 and en1 <= en2):
            return False
    return True


@register_metric("comp_valid")
def compositional_validity(
    composition: Composition | Structure | str,
    oxidation_states: str = DEFAULT_OXIDATION_TABLE,
    use_pauling_test: bool = True,
    include_alloys: bool = True,
) -> bool:
    """CDVAE's ``smact_validity``: some assignment of oxidation states from the table is charge-neutral at the
    (gcd-reduced) stoichiometry and passes the Pauling test; unary -> valid; all metals -> valid."""
    import smact

    if isinstance(composition, Structure):
        composition = composition.composition
    composition = Composition(composition)
    symbols = [el.symbol for el in composition.elements]
    if len(symbols) == 0:
        return False
    if len(set(symbols)) == 1:
        return True
    if include_alloys and all(s in smact.metals for s in symbols):
        return True
    amounts = [composition[s] for s in symbols]
    if any(abs(a - round(a)) > 1e-6 for a in amounts):
        return False  # partial occupancy has no integer stoichiometry to balance
    counts = [int(round(a)) for a in amounts]
    gcd = math.gcd(*counts)
    counts = [c // gcd for c in counts]
    table = oxidation_table(oxidation_states)
    ox_lists = [table.get(s, ()) for s in symbols]
    if any(len(ox) == 0 for ox in ox_lists):
        return False
    enegs = [_pauling_eneg(s) for s in symbols]
    for ox_states in itertools.product(*ox_lists):
        if sum(o * c for o, c in zip(ox_states, counts)) != 0:
            continue
        if not use_pauling_test or _pauling_ok(ox_states, enegs):
            return True
    return False
