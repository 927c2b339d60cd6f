"""CrystaLLM-style CIF: symmetrized with spglib (symprec 0.1), cell composition on the ``data_`` line, comments
dropped, numbers rounded to 4 decimals, and the symmetry-operator loop reduced to the identity. The decoder
restores the operators from the space-group number (spglib's default setting, the one pymatgen's CifWriter
writes) before parsing, and checks the rebuilt cell against ``_chemical_formula_sum``.

Symmetrizing at symprec 0.1 (CrystaLLM's setting) distorts about 1% of Carbon-24 beyond StructureMatcher's
tolerances; with ``verify=True`` (default) the encoder decodes its own output, and if it no longer matches the input
under ``StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)`` it retries at the tighter ``fallback_symprecs``."""

from __future__ import annotations

import io
import re

from pymatgen.core import Composition, Structure
from pymatgen.core.operations import SymmOp
from pymatgen.io.cif import CifParser, CifWriter

from .base import MASK, DecodeError, EncodeError, Representation, parse_formula
from .quiet import quiet_spglib
from .spacegroups import default_hall_number

SITE_TOLERANCE = 1e-3  # fractional; CifParser merges symmetry images closer than this (4-decimal rounding
# leaves images of a special position up to ~2e-4 apart, the parser default 1e-4 would keep them as extra sites)
_NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+")
_OPS_LOOP = re.compile(
    r"loop_\s*\n\s*_symmetry_equiv_pos_site_id\s*\n\s*_symmetry_equiv_pos_as_xyz\s*\n(?:\s*\d+\s+'[^'\n]*'\s*\n)+"
)
_IDENTITY_LOOP = "loop_\n _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n  1  'x, y, z'\n"


def _round_numbers(text: str, decimals: int) -> str:
    return _NUMBER.sub(lambda m: f"{float(m.group()):.{decimals}f}", text)


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(name)}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return m.group(1).strip().strip("'\"") if m else None


class CifRepresentation(Representation):
    name = "cif"

    def __init__(
        self,
        symprec: float = 0.1,
        decimals: int = 4,
        verify: bool = True,
        fallback_symprecs: tuple[float, ...] = (0.01, 0.001),
    ):
        self.symprec = symprec
        self.decimals = decimals
        self.verify = verify
        self.fallback_symprecs = tuple(fallback_symprecs)

    def encode(self, structure: Structure) -> str:
        """The CIF at the first symprec whose text decodes back to the same cell composition (and, with
        ``verify``, matches the input); a text whose formula disagrees with its own sites is never returned."""
        if not structure.is_ordered:
            raise EncodeError("partial occupancy: only ordered structures can be encoded")
        matcher = None
        if self.verify:
            from pymatgen.analysis.structure_matcher import StructureMatcher

            matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
        decodable, reasons = None, []
        for symprec in (self.symprec, *self.fallback_symprecs):
            try:
                text = self._encode_at(structure, symprec)
                decoded = self.decode(text)
            except (EncodeError, DecodeError) as exc:
                reasons.append(f"symprec={symprec}: {exc}")
                continue
            if matcher is None or matcher.fit(structure, decoded):
                return text
            decodable = decodable or text
        if decodable is not None:  # decodes, but no symprec matched the input: keep the first, as before
            return decodable
        raise EncodeError("no CIF that decodes back to its own formula (" + "; ".join(reasons) + ")")

    def _encode_at(self, structure: Structure, symprec: float) -> str:
        try:
            with quiet_spglib():
                text = str(CifWriter(structure, symprec=symprec))
        except Exception as exc:  # noqa: BLE001 - spglib/pymatgen failures become a reason, not a crash
            raise EncodeError(f"symmetrization failed: {exc}") from None
        lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
        text = "\n".join(lines) + "\n"
        formula_sum = _field(text, "_chemical_formula_sum")
        if formula_sum is None:
            raise EncodeError("CifWriter wrote no _chemical_formula_sum")
        text = re.sub(r"^data_.*$", "data_" + formula_sum.replace(" ", ""), text, count=1, flags=re.MULTILINE)
        text = _OPS_LOOP.sub(_IDENTITY_LOOP, text, count=1)
        return _round_numbers(text, self.decimals).strip() + "\n"

    def _decode(self, text: str) -> Structure:
        if not text.lstrip().startswith("data_"):
            raise DecodeError("CIF must start with a data_ line")
        number_text = _field(text, "_symmetry_Int_Tables_number")
        if number_text is None:
            raise DecodeError("truncated: no _symmetry_Int_Tables_number")
        if not number_text.isdigit() or not 1 <= int(number_text) <= 230:
            raise DecodeError(f"unknown space group {number_text!r}")
        number = int(number_text)
        symbol = _field(text, "_symmetry_space_group_name_H-M")
        if symbol is not None:
            from .spacegroups import parse_space_group

            try:
                stated = parse_space_group(symbol)
            except ValueError:
                raise DecodeError(f"unknown space group symbol {symbol!r}") from None
            if stated != number:
                raise DecodeError(f"space group symbol {symbol} is number {stated}, not {number}")
        formula_sum = _field(text, "_chemical_formula_sum")
        if formula_sum is None:
            raise DecodeError("truncated: no _chemical_formula_sum")
        declared = parse_formula(formula_sum)
        if "_atom_site_fract_z" not in text:
            raise DecodeError("truncated: no atom site loop")

        import spglib

        ops = spglib.get_symmetry_from_database(default_hall_number(number))
        xyz = [
            SymmOp.from_rotation_and_translation(r, t).as_xyz_str()
            for r, t in zip(ops["rotations"], ops["translations"])
        ]
        loop = "loop_\n _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n" + "".join(
            f"  {i}  '{op}'\n" for i, op in enumerate(xyz, start=1)
        )
        if _OPS_LOOP.search(text):
            full = _OPS_LOOP.sub(lambda _: loop, text, count=1)
        else:
            full = text.rstrip() + "\n"
            full = full.replace("loop_\n _atom_site", loop + "loop_\n _atom_site", 1)
        structures = CifParser(io.StringIO(full), occupancy_tolerance=1.0, site_tolerance=SITE_TOLERANCE).parse_structures(
            primitive=False, on_error="raise"
        )
        if not structures:
            raise DecodeError("CIF holds no structure")
        structure = structures[0]
        if not structure.is_ordered:
            raise DecodeError("partial occupancy in decoded CIF")
        got = {el.symbol: int(round(n)) for el, n in structure.composition.items()}
        if Composition(got) != Composition(declared):
            raise DecodeError(
                f"site count mismatch: _chemical_formula_sum says {formula_sum}, sites give "
                f"{structure.composition.formula}"
            )
        return structure

    def space_group(self, text: str) -> int | None:
        number = _field(text, "_symmetry_Int_Tables_number")
        return int(number) if number and number.isdigit() else None

    def elements(self, text: str) -> list[str]:
        formula_sum = _field(text, "_chemical_formula_sum") or ""
        return list(dict.fromkeys(re.findall(r"[A-Z][a-z]?", formula_sum)))

    def mask_element(self, text: str, element: str, mask: str = MASK) -> str:
        pattern = re.compile(rf"{re.escape(element)}(?![a-z])")
        out = []
        in_sites = False
        for line in text.split("\n"):
            stripped = line.strip()
            if stripped.startswith("data_"):
                line = "data_" + pattern.sub(mask, stripped[5:])
            elif stripped.startswith("_chemical_formula"):
                name, _, rest = stripped.partition(" ")
                line = f"{name}   {pattern.sub(mask, rest.strip())}"
            elif stripped.startswith("_atom_site_"):
                in_sites = True
            elif in_sites and stripped and not stripped.startswith(("_", "loop_")):
                parts = line.split()
                if parts and parts[0] == element:
                    parts[0] = mask
                    parts[1] = pattern.sub(mask, parts[1]) if len(parts) > 1 else parts[1]
                    line = "  " + "  ".join(parts)
            elif stripped.startswith("loop_"):
                in_sites = False
            out.append(line)
        return "\n".join(out)
