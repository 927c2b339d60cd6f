"""plaid's compact Wyckoff text (after PLaID's; ``wyckoff_plaid`` is PLaID's own format, on the same machinery):
formula, space group, lattice, then one line per Wyckoff orbit.

    Ba1 Ti1 O3
    221
    3.95 3.95 3.95
    90.00 90.00 90.00
    Ba 0.500 0.500 0.500 1b
    Ti 0.000 0.000 0.000 1a
    O 0.000 0.500 0.500 3c

Line 1 is the composition of the conventional cell the text describes; line 2 the space group number (ITA
standard setting, as in pyxtal); lines 3-4 the conventional lattice (Angstrom, degrees); then, per orbit, the
element, the representative site's fractional coordinates and the Wyckoff label (multiplicity + letter).

The encoder reads symmetry with spglib directly (falling back through looser-to-tighter ``symprecs``) and picks
as representative the orbit member lying on the position's first operation. In a polar space group the origin
floats along the polar axes (any translation along them describes the same crystal); with ``fixed_origin`` (the
default) the encoder moves it so that the first orbit line's site sits at 0 along those axes, so one crystal has
one text and the model need not learn an arbitrary offset. Where the origin floats along c alone (mm2, 4, 4mm, 3,
3m, 6, 6mm), the crystal turned end over end (a 2-fold rotation perpendicular to c that keeps the setting) is the
same crystal with every c coordinate negated; with ``fixed_polar_direction`` (the default, text version 3) the
encoder writes the description whose coordinates come first in text order, so the sense of the polar axis is
not a coin the model must learn to toss. The decoder checks the lattice
against the crystal system: in strict mode (the default) parameters that contradict the space group by more than
the text's rounding are a ``DecodeError`` naming the numbers; in lenient mode (``strict=False``) they are snapped
onto the crystal system and ``lattice_snap(text)`` says by how much. It then projects each representative onto its Wyckoff position, expands it with that position's
operations and checks the site counts against the formula.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import spglib
from pymatgen.core import Lattice, Structure

from .base import (
    MASK,
    DecodeError,
    EncodeError,
    Representation,
    check_element,
    check_lattice_parameters,
    fmt,
    parse_float,
    parse_formula,
    parse_int,
    wrap_frac,
)
from .quiet import quiet_spglib
from .spacegroups import (
    constrain_lattice,
    floating_axes,
    lattice_snap,
    lattice_violations,
    polar_axis_flip,
    space_group,
)

_LABEL = re.compile(r"(\d+)([a-zA-Z])")


def _cell(structure: Structure):
    return (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)


def _coordinate_key(lines) -> tuple:
    """Text order of the orbit lines' coordinates (as written): which of two descriptions is the canonical one."""
    return tuple(tuple(np.round(rep, 6)) for _, rep, _ in lines)


def _parameters(matrix: np.ndarray) -> tuple[float, ...]:
    """a, b, c, alpha, beta, gamma of a row-vector lattice matrix."""
    lengths = np.linalg.norm(matrix, axis=1)
    cosines = [matrix[1] @ matrix[2] / (lengths[1] * lengths[2]), matrix[0] @ matrix[2] / (lengths[0] * lengths[2]),
               matrix[0] @ matrix[1] / (lengths[0] * lengths[1])]
    angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
    return (*map(float, lengths), *map(float, angles))


class WyckoffRepresentation(Representation):
    name = "wyckoff"
    text_version = 3  # 2: fixed origin along polar axes; 3: and fixed sense of the polar axis c

    def __init__(
        self,
        length_decimals: int = 2,
        angle_decimals: int = 2,
        coord_decimals: int = 3,
        symprecs: tuple[float, ...] = (0.1, 0.01, 0.001),
        strict: bool = True,
        fixed_origin: bool = True,
        fixed_polar_direction: bool = True,
    ):
        self.strict = strict
        self.fixed_origin = fixed_origin
        self.fixed_polar_direction = fixed_polar_direction and fixed_origin
        self.length_decimals = length_decimals
        self.angle_decimals = angle_decimals
        self.coord_decimals = coord_decimals
        self.symprecs = tuple(symprecs)

    # ------------------------------------------------------------------------------------------------ encode
    def encode(self, structure: Structure) -> str:
        if not structure.is_ordered:
            raise EncodeError("partial occupancy: only ordered structures can be encoded")
        if len(structure) == 0:
            raise EncodeError("empty structure")
        cell = self._input_cell(structure)
        reasons = []
        for symprec in self.symprecs:
            try:
                return self._encode_at(cell, symprec)
            except EncodeError as exc:
                reasons.append(f"symprec={symprec}: {exc}")
        raise EncodeError("no consistent symmetry found (" + "; ".join(reasons) + ")")

    def _input_cell(self, structure: Structure):
        """The spglib cell the symmetry search starts from."""
        return _cell(structure)

    def _encode_at(self, cell, symprec: float) -> str:
        group, ds, orbits = standard_orbits(cell, symprec)
        matrix = np.asarray(ds.std_lattice)
        positions = np.asarray(ds.std_positions)
        lines, counts, order = self._fixed_origin_lines(ds, orbits, matrix, positions, group.number)
        flip = polar_axis_flip(group.number) if self.fixed_polar_direction else None
        if flip is not None:  # the crystal turned end over end along c is the same crystal: take the smaller text
            turned = self._fixed_origin_lines(ds, orbits, matrix, positions @ flip.T, group.number)
            if _coordinate_key(turned[0]) < _coordinate_key(lines):
                lines, counts, order = turned
        a, b, c, alpha, beta, gamma = constrain_lattice(group.lattice_type, *_parameters(matrix))
        out = [
            _formula(counts, order),
            str(group.number),
            " ".join(fmt(v, self.length_decimals) for v in (a, b, c)),
            " ".join(fmt(v, self.angle_decimals) for v in (alpha, beta, gamma)),
        ]
        for symbol, rep, wp in lines:
            coords = " ".join(fmt(v, self.coord_decimals) for v in rep)
            out.append(f"{symbol} {coords} {wp.label}")
        return "\n".join(out)

    def _fixed_origin_lines(self, ds, orbits, matrix: np.ndarray, positions: np.ndarray, number: int):
        """``_orbit_lines``, in a polar group after moving the origin so the first line's site sits at 0 along
        every floating axis (with ``fixed_origin``)."""
        lines, counts, order = self._orbit_lines(ds, orbits, matrix, positions)
        axes = floating_axes(number) if self.fixed_origin else ()
        if axes:
            shift = np.zeros(3)
            shift[list(axes)] = -lines[0][1][list(axes)]
            lines, counts, order = self._orbit_lines(ds, orbits, matrix, positions + shift)
        return lines, counts, order

    def _orbit_lines(self, ds, orbits, matrix: np.ndarray, positions: np.ndarray):
        """One ``(symbol, representative, WyckoffPosition)`` per orbit in text order, the element counts and the
        elements' order (electronegativity)."""
        lines = []
        counts: dict[str, int] = {}
        for wp, members in orbits:
            best = None
            for j in members:
                q, dist = wp.project(positions[j], matrix)
                if best is None or dist < best[1] - 1e-9:
                    best = (q, dist)
                if dist < 1e-6:  # spglib's idealised positions: this member lies on the first operation
                    break
            rep = wrap_frac(wp.representative(best[0]), self.coord_decimals)
            z = int(ds.std_types[members[0]])
            symbol = _symbol(z)
            counts[symbol] = counts.get(symbol, 0) + wp.multiplicity
            lines.append((symbol, rep, wp))

        order = {el: i for i, el in enumerate(sorted(counts, key=lambda e: (_electronegativity(e), e)))}
        lines.sort(key=lambda item: (order[item[0]], item[2].letter, tuple(item[1])))
        return lines, counts, order

    # ------------------------------------------------------------------------------------------------ decode
    def parse(self, text: str) -> dict:
        """Parse without building the cell: formula, space group, lattice parameters and orbit lines."""
        lines = [ln.strip() for ln in text.strip().splitlines()]
        if any(not ln for ln in lines):
            raise DecodeError("blank line inside the text")
        if len(lines) < 5:
            raise DecodeError(f"truncated: {len(lines)} lines, need formula, space group, 2 lattice lines, orbits")
        formula = parse_formula(lines[0])
        number = parse_int(lines[1], "space group")
        if not 1 <= number <= 230:
            raise DecodeError(f"unknown space group {number}: not in 1-230")
        params, rounding = parse_lattice(lines[2].split(), lines[3].split())
        return {
            "formula": formula,
            "space_group": number,
            "lattice": params,
            "rounding": rounding,
            "orbits": parse_orbits(lines[4:]),
        }

    def _decode(self, text: str) -> Structure:
        return self._build(self.parse(text))

    def _build(self, parsed: dict) -> Structure:
        """The structure of parsed text (see ``parse``): lattice checked against the crystal system (strict) or
        snapped onto it, each representative projected onto its Wyckoff position and expanded, counts checked."""
        group = space_group(parsed["space_group"])
        check_lattice_parameters(*parsed["lattice"])
        if self.strict:
            wrong = lattice_violations(group.lattice_type, parsed["lattice"], parsed["rounding"])
            if wrong:
                raise DecodeError(
                    f"lattice contradicts space group {group.number} ({group.lattice_type}): " + "; ".join(wrong)
                )
        params = constrain_lattice(group.lattice_type, *parsed["lattice"])
        check_lattice_parameters(*params)
        lattice = Lattice.from_parameters(*params)

        species, coords = [], []
        counts: dict[str, int] = {}
        for i, (symbol, xyz, multiplicity, letter) in enumerate(parsed["orbits"], start=1):
            wp = group.wyckoff.get(letter)
            if wp is None:
                raise DecodeError(
                    f"orbit line {i}: Wyckoff letter {letter!r} does not exist in space group {group.number} "
                    f"(letters {group.letters[0]}-{group.letters[-1]})"
                )
            if multiplicity != wp.multiplicity:
                raise DecodeError(
                    f"orbit line {i}: label {multiplicity}{letter} but position {letter} of space group "
                    f"{group.number} has multiplicity {wp.multiplicity}"
                )
            q, _ = wp.project(xyz, lattice.matrix)
            points = wp.orbit(q)
            distinct = np.unique(np.round(points, 5) % 1.0, axis=0)
            if len(distinct) != wp.multiplicity:
                raise DecodeError(
                    f"orbit line {i}: coordinates collapse {wp.label} onto {len(distinct)} distinct sites"
                )
            species.extend([symbol] * wp.multiplicity)
            coords.extend(points)
            counts[symbol] = counts.get(symbol, 0) + wp.multiplicity

        formula = parsed["formula"]
        if counts != formula:
            stated = " ".join(f"{k}{v}" for k, v in formula.items())
            found = " ".join(f"{k}{v}" for k, v in counts.items())
            raise DecodeError(f"site count mismatch: formula says {stated}, orbits give {found}")
        return Structure(lattice, species, np.array(coords))

    def lattice_snap(self, text: str) -> float | None:
        """How far the lenient decoder moves the stated lattice onto its crystal system (max over the six
        parameters, Angstrom or degrees; 0.0 when consistent), None when the text has no readable lattice."""
        try:
            parsed = self.parse(text)
        except DecodeError:
            return None
        return lattice_snap(space_group(parsed["space_group"]).lattice_type, parsed["lattice"])

    def space_group(self, text: str) -> int | None:
        lines = text.strip().splitlines()
        return int(lines[1]) if len(lines) > 1 and lines[1].strip().isdigit() else None

    # ------------------------------------------------------------------------------------------------ masking
    def elements(self, text: str) -> list[str]:
        lines = text.strip().splitlines()
        found = [m.group(1) for m in re.finditer(r"([A-Z][a-z]?)", lines[0])] if lines else []
        found += [ln.split()[0] for ln in lines[4:] if ln.split()]
        return list(dict.fromkeys(found))

    def mask_element(self, text: str, element: str, mask: str = MASK) -> str:
        lines = text.split("\n")
        if not lines:
            return text
        lines[0] = re.sub(rf"{element}(?![a-z])", mask, lines[0])
        for i in range(4, len(lines)):
            parts = lines[i].split(" ", 1)
            if parts[0] == element:
                lines[i] = mask + (" " + parts[1] if len(parts) > 1 else "")
        return "\n".join(lines)


def parse_lattice(lengths: list[str], angles: list[str]) -> tuple[list[float], list[float]]:
    """Three length and three angle tokens -> (a, b, c, alpha, beta, gamma) and each one's rounding (half a unit
    in its last written digit)."""
    if len(lengths) != 3 or len(angles) != 3:
        raise DecodeError("lattice lines must hold three lengths and three angles")
    params = [parse_float(t, "lattice length") for t in lengths] + [parse_float(t, "lattice angle") for t in angles]
    rounding = [0.5 * 10.0 ** -(len(t.split(".")[1]) if "." in t else 0) for t in lengths + angles]
    return params, rounding


def parse_orbits(lines: list[str]) -> list[tuple[str, np.ndarray, int, str]]:
    """Orbit lines ``El x y z <multiplicity><letter>`` -> (element, xyz, multiplicity, letter) each."""
    orbits = []
    for i, ln in enumerate(lines, start=1):
        parts = ln.split()
        if len(parts) != 5:
            raise DecodeError(f"orbit line {i} {ln!r}: expected element, x, y, z, Wyckoff label")
        symbol = check_element(parts[0])
        xyz = np.array([parse_float(t, f"orbit line {i} coordinate") for t in parts[1:4]])
        m = _LABEL.fullmatch(parts[4])
        if not m:
            raise DecodeError(f"orbit line {i}: bad Wyckoff label {parts[4]!r}")
        orbits.append((symbol, xyz, int(m.group(1)), m.group(2)))
    return orbits


def standard_orbits(cell, symprec: float, angle_tolerance: float = -1.0):
    """spglib's standard conventional cell in the tables' Hall setting (pyxtal's ITA settings) and its Wyckoff
    orbits: ``(group, dataset, [(WyckoffPosition, [std-cell atom indices]), ...])``, orbits in order of their first
    atom in the standard cell. Raises EncodeError when spglib finds no symmetry or orbits the tables disagree with.
    ``angle_tolerance``: spglib's (degrees; -1 is spglib's default)."""
    with quiet_spglib():
        ds = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
    if ds is None:
        raise EncodeError("spglib found no symmetry")
    group = space_group(ds.number)
    if ds.hall_number != group.hall_number:  # e.g. origin choice 1 -> 2: standardise in the tables' setting
        with quiet_spglib():
            ds = spglib.get_symmetry_dataset(
                cell, symprec=symprec, angle_tolerance=angle_tolerance, hall_number=group.hall_number
            )
        if ds is None or ds.number != group.number:
            raise EncodeError(f"spglib could not standardise to Hall setting {group.hall_number}")

    # std-cell atom -> orbit and Wyckoff letter, through the primitive-cell index both cells map to.
    prim_orbit = dict(zip(ds.mapping_to_primitive, ds.crystallographic_orbits))
    prim_letter = dict(zip(ds.mapping_to_primitive, ds.wyckoffs))
    members: dict[int, list[int]] = {}
    for j, p in enumerate(ds.std_mapping_to_primitive):
        members.setdefault(int(prim_orbit[p]), []).append(j)
    orbits = []
    for atoms in members.values():
        letter = prim_letter[ds.std_mapping_to_primitive[atoms[0]]]
        wp = group.wyckoff.get(letter)
        if wp is None:
            raise EncodeError(f"letter {letter} not in space group {group.number} tables")
        if len(atoms) != wp.multiplicity:
            raise EncodeError(f"orbit {wp.label} has {len(atoms)} sites in the standard cell")
        orbits.append((wp, atoms))
    return group, ds, orbits


@cache
def _symbol(z: int) -> str:
    from pymatgen.core import Element

    return Element.from_Z(z).symbol


@cache
def _electronegativity(symbol: str) -> float:
    from pymatgen.core import Element

    x = Element(symbol).X
    return x if x == x else 10.0  # noble gases without a Pauling value sort last


def _formula(counts: dict[str, int], order: dict[str, int]) -> str:
    return " ".join(f"{el}{counts[el]}" for el in sorted(counts, key=order.__getitem__))
