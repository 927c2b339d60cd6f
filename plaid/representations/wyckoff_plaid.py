"""PLaID's own Wyckoff text, byte for byte the format of its code and released samples:

    Zr4Ni4Pd4
    Spacegroup: F-43m
    abc: 6.15 6.15 6.15
    angles: 90.00 90.00 90.00
    Sites (12)
    Zr 0.000 0.000 0.000 4a
    Ni 0.500 0.500 0.500 4b
    Pd 0.750 0.750 0.750 4d

PLaID (Xu et al., ``utils.get_crystal_string_wyckoff_pyx``) refines the structure with pymatgen at symprec 0.01,
loads it into pyxtal (``from_seed``, tol 0.01, falling back to 1e-4) and writes ``pyx.formula`` (pyxtal's cell
formula: elements in order of first appearance in the standard cell, every count written), the Hermann-Mauguin
symbol of pyxtal's tables (``pyx.group.symbol``: ``P63/mmc``, no underscores), the lattice to 2 decimals, the
number of atoms in the cell, and one line per Wyckoff orbit in pyxtal's order (``pyx.atom_sites``: order of first
appearance in the standard cell), its coordinates to 3 decimals and its label (multiplicity + letter).

This module computes the same with the symmetry machinery of ``plaid.representations.wyckoff`` (spglib directly, in
the ITA settings of pyxtal's tables, angle tolerance 5 degrees as pymatgen and pyxtal): spglib's refined cell at
0.01 with its sites sorted as pymatgen sorts a refined structure (electronegativity, then symbol), spglib's
standard cell of that in pyxtal's Hall setting, orbits in standard-cell order, and as representative what pyxtal
writes: the orbit's first standard-cell atom mapped by the first general-position operation that puts it on the
position's first operation (``search_generator``), wrapped to [0, 1), then put through that first operation
(``atom_site.update``, not wrapped: PLaID's texts hold coordinates such as ``-0.303`` and ``-0.000``).

Decoding is ``wyckoff``'s (one implementation): strict or lenient lattice handling, projection onto each Wyckoff
position, site counts checked against the formula; in addition ``Sites (N)`` must equal the atoms of the cell and
the symbol must be one of pyxtal's (spaces and underscores ignored: ``P6_3/mmc`` reads as ``P63/mmc``).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import spglib
from pymatgen.core import Structure

from .base import MASK, DecodeError, EncodeError, parse_formula
from .quiet import quiet_spglib
from .spacegroups import constrain_lattice
from .wyckoff import (
    WyckoffRepresentation,
    _cell,
    _electronegativity,
    _parameters,
    _symbol,
    parse_lattice,
    parse_orbits,
    standard_orbits,
)

SPACEGROUP_PREFIX = "Spacegroup: "
ABC_PREFIX = "abc: "
ANGLES_PREFIX = "angles: "
_SITES = re.compile(r"Sites \((\d+)\)")
HEADER_LINES = 5  # formula, space group, abc, angles, Sites (N): orbit lines follow


@cache
def pyxtal_symbols() -> tuple[str, ...]:
    """pyxtal's Hermann-Mauguin symbol of space groups 1-230 (index 0 = group 1)."""
    from pyxtal.symmetry import get_symbol_and_number

    return tuple(get_symbol_and_number(n, 3)[0] for n in range(1, 231))


@cache
def symbol_numbers() -> dict[str, int]:
    """pyxtal symbol (which has no spaces or underscores) -> space group number."""
    return {sym: i + 1 for i, sym in enumerate(pyxtal_symbols())}


def symbol_number(symbol: str) -> int:
    number = symbol_numbers().get(symbol.replace(" ", "").replace("_", ""))
    if number is None:
        raise DecodeError(
            f"unknown space group symbol {symbol!r}: not one of pyxtal's Hermann-Mauguin symbols (e.g. F-43m, P63/mmc)"
        )
    return number


def _prefixed(line: str, prefix: str, what: str) -> str:
    if not line.startswith(prefix.rstrip()):
        raise DecodeError(f"{what} line {line!r} must start with {prefix.strip()!r}")
    return line[len(prefix.rstrip()) :].strip()


class PlaidWyckoffRepresentation(WyckoffRepresentation):
    """PLaID's released Wyckoff text (see module docstring). ``symprecs``: PLaID's tolerances, 0.01 then 1e-4."""

    name = "wyckoff-plaid"
    text_version = 1  # PLaID's text, byte for byte

    def __init__(
        self,
        symprecs: tuple[float, ...] = (0.01, 0.0001),
        strict: bool = True,
        refine_symprec: float = 0.01,
        angle_tolerance: float = 5.0,
        **options,
    ):
        super().__init__(symprecs=symprecs, strict=strict, **options)
        self.refine_symprec = refine_symprec
        self.angle_tolerance = angle_tolerance

    # ------------------------------------------------------------------------------------------------ encode
    def _input_cell(self, structure: Structure):
        """PLaID's ``SpacegroupAnalyzer(s, 0.01).get_refined_structure()``: spglib's refined cell, its sites sorted
        by electronegativity, then symbol (pymatgen's ``get_sorted_structure``, a stable sort); ``symprecs`` are then
        pyxtal's ``from_seed`` tolerances (0.01, then 1e-4)."""
        with quiet_spglib():
            refined = spglib.refine_cell(_cell(structure), self.refine_symprec, self.angle_tolerance)
        if refined is None:
            raise EncodeError(f"spglib could not refine the cell at symprec {self.refine_symprec}")
        lattice, positions, numbers = (np.asarray(x) for x in refined)
        symbols = [_symbol(int(z)) for z in numbers]
        order = sorted(range(len(numbers)), key=lambda i: (_electronegativity(symbols[i]), symbols[i]))
        return lattice, positions[order], numbers[order]

    def _encode_at(self, cell, symprec: float) -> str:
        group, ds, orbits = standard_orbits(cell, symprec, self.angle_tolerance)
        matrix = np.asarray(ds.std_lattice)
        positions = np.asarray(ds.std_positions)
        general = max(group.wyckoff.values(), key=lambda w: w.multiplicity)
        counts: dict[str, int] = {}
        lines = []
        for wp, members in orbits:
            symbol = _symbol(int(ds.std_types[members[0]]))
            counts[symbol] = counts.get(symbol, 0) + wp.multiplicity
            rep = _generator(positions[members[0]], wp, general.ops, symprec)
            if rep is None:  # pyxtal merges here; the projection gives the same orbit
                q, _ = wp.project(positions[members[0]], matrix)
                rep = wp.representative(q)
            coords = " ".join(f"{v:.{self.coord_decimals}f}" for v in rep)  # as pyxtal: -0.303, even -0.000
            lines.append(f"{symbol} {coords} {wp.label}")
        params = constrain_lattice(group.lattice_type, *_parameters(matrix))
        out = [
            "".join(f"{el}{n}" for el, n in counts.items()),
            f"{SPACEGROUP_PREFIX}{pyxtal_symbols()[group.number - 1]}",
            ABC_PREFIX + " ".join(f"{v:.{self.length_decimals}f}" for v in params[:3]),
            ANGLES_PREFIX + " ".join(f"{v:.{self.angle_decimals}f}" for v in params[3:]),
            f"Sites ({len(ds.std_types)})",
        ]
        return "\n".join(out + lines)

    # ------------------------------------------------------------------------------------------------ decode
    def parse(self, text: str) -> dict:
        lines = [ln.strip() for ln in text.strip().splitlines()]
        if any(not ln for ln in lines):
            raise DecodeError("blank line inside the text")
        if len(lines) < HEADER_LINES + 1:
            raise DecodeError(
                f"truncated: {len(lines)} lines, need formula, Spacegroup, abc, angles, Sites (N), orbit lines"
            )
        formula = parse_formula(lines[0])
        number = symbol_number(_prefixed(lines[1], SPACEGROUP_PREFIX, "space group"))
        params, rounding = parse_lattice(
            _prefixed(lines[2], ABC_PREFIX, "lengths").split(), _prefixed(lines[3], ANGLES_PREFIX, "angles").split()
        )
        m = _SITES.fullmatch(lines[4])
        if not m:
            raise DecodeError(f"line 5 {lines[4]!r} must be 'Sites (N)'")
        return {
            "formula": formula,
            "space_group": number,
            "lattice": params,
            "rounding": rounding,
            "orbits": parse_orbits(lines[HEADER_LINES:]),
            "sites": int(m.group(1)),
        }

    def _build(self, parsed: dict) -> Structure:
        structure = super()._build(parsed)
        if len(structure) != parsed["sites"]:
            raise DecodeError(f"Sites ({parsed['sites']}) but the orbits give {len(structure)} atoms")
        return structure

    def space_group(self, text: str) -> int | None:
        lines = text.strip().splitlines()
        if len(lines) < 2 or not lines[1].startswith(SPACEGROUP_PREFIX.strip()):
            return None
        try:
            return symbol_number(_prefixed(lines[1].strip(), SPACEGROUP_PREFIX, "space group"))
        except DecodeError:
            return None

    # ------------------------------------------------------------------------------------------------ masking
    def elements(self, text: str) -> list[str]:
        lines = text.strip().splitlines()
        found = re.findall(r"[A-Z][a-z]?", lines[0]) if lines else []
        found += [ln.split()[0] for ln in lines[HEADER_LINES:] if ln.split()]
        return list(dict.fromkeys(found))

    def mask_element(self, text: str, element: str, mask: str = MASK) -> str:
        """``element`` -> ``mask`` in the formula and orbit lines only (PLaID's own ``str.replace`` also hits
        ``Spacegroup``/``Sites`` for S, or a symbol's letters; as an element only, the text stays readable)."""
        lines = text.split("\n")
        lines[0] = re.sub(rf"{element}(?![a-z])", mask, lines[0])
        for i in range(HEADER_LINES, len(lines)):
            parts = lines[i].split(" ", 1)
            if parts[0] == element:
                lines[i] = mask + (" " + parts[1] if len(parts) > 1 else "")
        return "\n".join(lines)


def _generator(pos: np.ndarray, wp, general_ops: np.ndarray, tol: float) -> np.ndarray | None:
    """What pyxtal writes for an orbit from its first standard-cell atom ``pos``: ``search_generator`` (the image
    under the first general-position operation that lands on ``wp``'s first operation, L1 distance mod 1 below
    ``tol``, wrapped to [0, 1)), then ``atom_site.update`` (the first operation applied to it, not wrapped)."""
    images = np.einsum("kij,j->ki", general_ops[:, :, :3], pos) + general_ops[:, :, 3]
    first = wp.ops[0]
    on = images @ first[:, :3].T + first[:, 3]
    diff = images - on
    diff = np.abs(diff - np.rint(diff)).sum(axis=1)
    hits = np.flatnonzero(diff < tol)
    if not len(hits):
        return None
    image = images[hits[0]]
    return wp.representative(image - np.floor(image))


__all__ = ["PlaidWyckoffRepresentation", "pyxtal_symbols", "symbol_number"]
