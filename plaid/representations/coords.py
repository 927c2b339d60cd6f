"""Gruver et al.'s plain text (crystal-text-llm), byte for byte: lattice lengths, angles, then an element line and a
fractional-coordinate line per site, in the structure's site order.

    3.9 3.9 3.9
    90 90 90
    Ba
    0.50 0.50 0.50
    ...

As crystal-text-llm's ``get_crystal_string`` writes it: lengths with 1 decimal, angles as ``str(int(angle))`` (the
integer part: pymatgen's 59.99999999999999 is written ``59``), fractional coordinates taken into [0, 1) and written
with 2 decimals (so 0.996 is ``1.00``). (crystal-text-llm also shifts every structure by a random translation when it
trains; that is augmentation, not format, and plaid does not do it.) Options for plaid's earlier, more precise
variant: ``coord_decimals=3`` (with 2, about 0.5% of Carbon-24 no longer matches its input under StructureMatcher)
and ``angle_rounding="round"``. The decoder reads either.
"""

from __future__ import annotations

import re

import numpy as np
from pymatgen.core import Structure

from .base import (
    MASK,
    DecodeError,
    EncodeError,
    Representation,
    check_element,
    fmt,
    lattice_from_parameters,
    parse_float,
)


class CoordsRepresentation(Representation):
    name = "coords"

    def __init__(
        self,
        length_decimals: int = 1,
        angle_decimals: int = 0,
        coord_decimals: int = 2,
        angle_rounding: str = "truncate",
    ):
        if angle_rounding not in ("truncate", "round"):
            raise ValueError(f"angle_rounding must be 'truncate' (crystal-text-llm) or 'round', not {angle_rounding!r}")
        if angle_rounding == "truncate" and angle_decimals != 0:
            raise ValueError("angle_rounding='truncate' writes integer angles; use angle_decimals=0")
        self.length_decimals = length_decimals
        self.angle_decimals = angle_decimals
        self.coord_decimals = coord_decimals
        self.angle_rounding = angle_rounding

    def _angle(self, value: float) -> str:
        if self.angle_rounding == "truncate":
            return str(int(value))  # crystal-text-llm: str(int(x))
        return fmt(value, self.angle_decimals)

    def encode(self, structure: Structure) -> str:
        if not structure.is_ordered:
            raise EncodeError("partial occupancy: only ordered structures can be encoded")
        if len(structure) == 0:
            raise EncodeError("empty structure")
        lat = structure.lattice
        out = [
            " ".join(fmt(v, self.length_decimals) for v in lat.abc),
            " ".join(self._angle(v) for v in lat.angles),
        ]
        for site in structure:
            out.append(site.specie.symbol)
            out.append(" ".join(f"{v:.{self.coord_decimals}f}" for v in np.mod(site.frac_coords, 1.0)))
        return "\n".join(out)

    def _decode(self, text: str) -> Structure:
        lines = [ln.strip() for ln in text.strip().splitlines()]
        if any(not ln for ln in lines):
            raise DecodeError("blank line inside the text")
        if len(lines) < 4:
            raise DecodeError(f"truncated: {len(lines)} lines, need 2 lattice lines and at least one site")
        if len(lines) % 2:
            raise DecodeError("truncated: the last site has an element line but no coordinate line")
        lengths, angles = lines[0].split(), lines[1].split()
        if len(lengths) != 3 or len(angles) != 3:
            raise DecodeError("lattice lines must hold three lengths and three angles")
        params = [parse_float(t, "lattice length") for t in lengths] + [parse_float(t, "lattice angle") for t in angles]
        lattice = lattice_from_parameters(*params)
        species, coords = [], []
        for i in range(2, len(lines), 2):
            species.append(check_element(lines[i]))
            xyz = lines[i + 1].split()
            if len(xyz) != 3:
                raise DecodeError(f"site {i // 2}: expected three coordinates, got {lines[i + 1]!r}")
            coords.append([parse_float(t, f"site {i // 2} coordinate") for t in xyz])
        return Structure(lattice, species, np.array(coords))

    def elements(self, text: str) -> list[str]:
        lines = [ln.strip() for ln in text.strip().splitlines()]
        return list(dict.fromkeys(lines[i] for i in range(2, len(lines), 2)))

    def mask_element(self, text: str, element: str, mask: str = MASK) -> str:
        lines = text.split("\n")
        for i in range(2, len(lines), 2):
            if lines[i].strip() == element:
                lines[i] = re.sub(re.escape(element), mask, lines[i])
        return "\n".join(lines)
