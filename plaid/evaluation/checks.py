"""CrystaLLM's sanity checks (Antunes et al. 2024) on generated text and the structure it decodes to.

- space-group consistency: the space group the text states equals spglib's at ``symprec=0.1``;
- site multiplicity: per element, the multiplicities of the listed sites add up to the stated formula;
- bond-length reasonableness: for every CrystalNN bond, length / expected length lies in
  (1 - 0.32, 1 + 0.32) = (0.68, 1.32); expected = sum of atomic radii, or cation + anion radius when the
  Pauling electronegativity difference is >= 1.7; bonds involving H pass when the ratio is < 2.5. A structure
  passes when the fraction of reasonable bonds is >= 1.0 (CrystaLLM's default cutoff).
"""

from __future__ import annotations

import re
from collections import defaultdict

from pymatgen.core import Structure

from .registry import register_metric

SYMPREC = 0.1
BOND_TOLERANCE = 0.32
BOND_H_FACTOR = 2.5
BOND_SCORE_CUTOFF = 1.0
IONIC_ENEG_DIFF = 1.7


def spglib_space_group(structure: Structure, symprec: float = SYMPREC) -> int | None:
    """International number from spglib at ``symprec`` (None when spglib finds none)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # noqa: BLE001 - spglib failures are a missing value, recorded by the caller
        return None


@register_metric("space_group_consistent")
def space_group_consistent(stated: int | None, structure: Structure, symprec: float = SYMPREC) -> bool | None:
    """Stated space-group number == spglib's; None when the text states none (e.g. the coords format)."""
    if stated is None:
        return None
    return spglib_space_group(structure, symprec) == int(stated)


def _cif_field(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(name)}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return m.group(1).strip().strip("'\"") if m else None


def _formula_counts(formula: str) -> dict[str, float]:
    counts: dict[str, float] = defaultdict(float)
    for el, n in re.findall(r"([A-Z][a-z]?)(\d*\.?\d*)", formula):
        counts[el] += float(n) if n else 1.0
    return dict(counts)


def stated_sites(text: str, representation: str) -> tuple[dict[str, float], dict[str, float]] | None:
    """(stated formula counts, per-element sum of listed site multiplicities) from wyckoff(-plaid) or CIF text;
    None for representations that state no multiplicities or when the text is too broken to read them."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines()]
    if representation in ("wyckoff", "wyckoff-plaid"):
        first = 4 if representation == "wyckoff" else 5  # wyckoff-plaid: a Sites (N) line before the orbits
        if len(lines) < first + 1:
            return None
        formula = _formula_counts(lines[0])
        sums: dict[str, float] = defaultdict(float)
        for ln in lines[first:]:
            parts = ln.split()
            m = re.fullmatch(r"(\d+)[a-zA-Z]", parts[-1]) if len(parts) == 5 else None
            if m is None:
                return None
            sums[parts[0]] += int(m.group(1))
        return formula, dict(sums)
    if representation == "cif":
        formula_sum = _cif_field(text, "_chemical_formula_sum")
        if formula_sum is None:
            return None
        header: list[str] = []
        sums = defaultdict(float)
        in_loop = False
        for ln in lines:
            if ln.startswith("loop_"):
                header, in_loop = [], True
                continue
            if in_loop and ln.startswith("_"):
                header.append(ln.split()[0])
                continue
            if in_loop and header and "_atom_site_symmetry_multiplicity" in header and ln:
                parts = ln.split()
                if len(parts) != len(header):
                    in_loop = False
                    continue
                row = dict(zip(header, parts))
                try:
                    sums[row["_atom_site_type_symbol"]] += float(row["_atom_site_symmetry_multiplicity"])
                except (KeyError, ValueError):
                    return None
            elif in_loop and header:
                in_loop = False
        if not sums:
            return None
        return _formula_counts(formula_sum), dict(sums)
    return None


@register_metric("site_multiplicity_consistent")
def site_multiplicity_consistent(text: str, representation: str) -> bool | None:
    """Per element, stated formula count == sum of listed site multiplicities (None when not stated)."""
    found = stated_sites(text, representation)
    if found is None:
        return None
    formula, sums = found
    keys = set(formula) | set(sums)
    return all(abs(formula.get(k, 0.0) - sums.get(k, 0.0)) < 1e-6 for k in keys)


def _radius(value) -> float:
    return float("nan") if value is None else float(value)


def _expected_bond_length(el1, el2) -> float:
    """CrystaLLM's expected bond length; NaN where pymatgen has no radius (e.g. Xe, Kr atomic radii)."""
    x1, x2 = el1.X, el2.X
    if abs(x1 - x2) >= IONIC_ENEG_DIFF:
        cation, anion = (el1, el2) if x1 < x2 else (el2, el1)
        return _radius(cation.average_cationic_radius) + _radius(anion.average_anionic_radius)
    return _radius(el1.atomic_radius) + _radius(el2.atomic_radius)


@register_metric("bond_length_score")
def bond_length_score(
    structure: Structure, tolerance: float = BOND_TOLERANCE, h_factor: float = BOND_H_FACTOR,
    orbit_symprec: float | None = None,
) -> tuple[float, int, str | None]:
    """(fraction of reasonable CrystalNN bonds, number of bonds, reason when no score could be computed).

    Bonds of a site to its own periodic image are skipped, as in CrystaLLM. With ``orbit_symprec`` the bonds of
    one site per orbit of equivalent sites are counted once per member
    (:func:`plaid.evaluation.fingerprints.site_orbits`); a missing radius falls back to every site, so the
    partial bond count in that reason is the per-site one."""
    from .crystalnn import crystalnn_neighbours
    from .fingerprints import site_orbits

    good = total = 0
    lo, hi = 1.0 - tolerance, 1.0 + tolerance
    orbits = site_orbits(structure, orbit_symprec) if orbit_symprec is not None else None
    for i, multiplicity in orbits or [(i, 1) for i in range(len(structure))]:
        site = structure[i]
        for info in crystalnn_neighbours(structure, i):  # CrystalNN().get_nn_info, shared with the fingerprint
            j = info["site_index"]
            if j == i:
                continue
            other = info["site"]
            el1, el2 = site.specie.element if hasattr(site.specie, "element") else site.specie, other.specie
            el2 = el2.element if hasattr(el2, "element") else el2
            expected = _expected_bond_length(el1, el2)
            if not expected > 0:
                if orbits is not None:
                    return bond_length_score(structure, tolerance, h_factor, orbit_symprec=None)
                return float("nan"), total, f"no radius data for {el1.symbol}-{el2.symbol}"
            ratio = site.distance(other) / expected
            if ("H" in (el1.symbol, el2.symbol) and ratio < h_factor) or lo < ratio < hi:
                good += multiplicity
            total += multiplicity
    if total == 0:
        return float("nan"), 0, "CrystalNN found no bonds"
    return good / total, total, None
