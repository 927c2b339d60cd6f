"""CrystaLLM's standardized CIF, byte for byte the text a CrystaLLM model reads and writes.

CrystaLLM (Antunes et al.) prepares every structure the same way, and ``encode`` follows it step by step:

1. pymatgen's ``CifWriter(structure, symprec=0.1)`` (symmetrized, spglib's standard setting);
2. the ``data_`` line names the cell composition (``_chemical_formula_sum`` without spaces or quotes);
3. the symmetry-operator loop is reduced to the identity, ``1 'x, y, z'``;
4. an atom-properties loop (``_atom_type_symbol``, ``_atom_type_electronegativity``, ``_atom_type_radius``,
   ``_atom_type_ionic_radius``: pymatgen's Pauling electronegativity, atomic radius and average ionic radius, with 4
   decimals, elements in pymatgen's order) is inserted before ``_symmetry_space_group_name_H-M``;
5. every number with more than 4 decimals is rounded to 4 (shorter ones are kept as written);
6. as CrystaLLM's tokenizer sees it: comment lines and lines naming pymatgen dropped, every line stripped, blank
   lines dropped, runs of blanks collapsed to one space.

CrystaLLM's own files end with a blank line (its models, which have no end token, separate CIFs with it); plaid's
text ends with one newline (the end token follows). The decoder reads this text and every variant of it a CrystaLLM
user has: the raw output of a CrystaLLM model (identity operator, properties loop), its post-processed CIFs (full
operator loop, no properties loop), pymatgen's own CifWriter output and plaid's earlier variant (CifWriter spacing,
no properties loop). It restores the operators from the space-group number (spglib's default setting, the one
CifWriter writes) before parsing, stops at a second ``data_`` block (a model without an end token runs on into
the next CIF), and checks the rebuilt cell against ``_chemical_formula_sum``.

Symmetrizing at symprec 0.1 (CrystaLLM's setting) distorts about 1% of Carbon-24 beyond StructureMatcher's
tolerances; with ``verify=True`` (default) the encoder decodes its own output, and if it no longer matches the input
under ``StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)`` it retries at the tighter ``fallback_symprecs``."""

from __future__ import annotations

import io
import math
import re

from pymatgen.core import Composition, Structure
from pymatgen.core.operations import SymmOp
from pymatgen.io.cif import CifParser, CifWriter

from .base import MASK, DecodeError, EncodeError, Representation, parse_formula
from .quiet import quiet_spglib
from .spacegroups import default_hall_number

SITE_TOLERANCE = 1e-3  # fractional; CifParser merges symmetry images closer than this (4-decimal rounding
# leaves images of a special position up to ~2e-4 apart, the parser default 1e-4 would keep them as extra sites)
SG_KEYWORD = "_symmetry_space_group_name_H-M"
# CrystaLLM's number pattern and rule: a number with more decimals than asked is rounded, others are left as written
_NUMBER = re.compile(r"[-+]?\d*\.\d+([eE][-+]?\d+)?")
_OPS_LOOP = re.compile(
    r"loop_\s*\n\s*_symmetry_equiv_pos_site_id\s*\n\s*_symmetry_equiv_pos_as_xyz\s*\n(?:\s*\d+\s+'[^'\n]*'\s*\n)+"
)
_IDENTITY_LOOP = "loop_\n_symmetry_equiv_pos_site_id\n_symmetry_equiv_pos_as_xyz\n1 'x, y, z'\n"
PROPS_KEYWORDS = (
    "_atom_type_symbol",
    "_atom_type_electronegativity",
    "_atom_type_radius",
    "_atom_type_ionic_radius",
)
# CrystaLLM's stand-ins where pymatgen has no value: van der Waals radii of the noble gases, Allen electronegativities
_NOBLE_RADII = {"He": 1.40, "Ne": 1.54, "Ar": 1.88, "Kr": 2.02, "Xe": 2.16, "Rn": 2.20}
_ALLEN_X = {"He": 4.16, "Ne": 4.79, "Ar": 3.24}


def round_numbers(text: str, decimals: int = 4) -> str:
    """CrystaLLM's rounding: numbers with more than ``decimals`` decimals rounded to exactly ``decimals``."""

    def _round(m: re.Match) -> str:
        number = m.group()
        if len(number.split(".")[-1]) <= decimals:
            return number
        return format(round(float(number), decimals), f".{decimals}f")

    return _NUMBER.sub(_round, text)


def normalize_blanks(text: str) -> str:
    """The text as CrystaLLM's tokenizer sees it: no comments, no pymatgen line, lines stripped, no blank lines,
    runs of blanks collapsed to one space; one newline at the end."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"[ \t]+", " ", line.strip())
        if line and not line.startswith("#") and "pymatgen" not in line:
            lines.append(line)
    return "\n".join(lines) + "\n"


def atom_props_block(composition) -> str:
    """CrystaLLM's atom-properties loop for a composition (its ``get_atomic_props_block``), blanks normalized.
    Raises EncodeError for an element pymatgen has no atomic radius for (CrystaLLM drops such structures)."""
    comp = composition if isinstance(composition, Composition) else Composition(str(composition))
    rows = []
    for el in sorted(comp.elements):
        symbol = str(el)
        x = el.X
        if isinstance(x, float) and math.isnan(x) and symbol in _ALLEN_X:
            x_text = str(_ALLEN_X[symbol])
        else:
            x_text = f"{float(x):.4f}"
        if el.atomic_radius is None:
            if symbol not in _NOBLE_RADII:
                raise EncodeError(f"no atomic radius for {symbol} (CrystaLLM's atom-properties block needs one)")
            r_text = str(_NOBLE_RADII[symbol])
        else:
            r_text = f"{float(el.atomic_radius):.4f}"
        rows.append(f"{symbol} {x_text} {r_text} {float(el.average_ionic_radius):.4f}")
    return "loop_\n" + "\n".join(PROPS_KEYWORDS) + "\n" + "\n".join(rows) + "\n"


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
        formula_sum = _field(text, "_chemical_formula_sum")
        if formula_sum is None:
            raise EncodeError("CifWriter wrote no _chemical_formula_sum")
        text = normalize_blanks(text)
        text = re.sub(r"^data_.*$", "data_" + formula_sum.replace(" ", ""), text, count=1, flags=re.MULTILINE)
        text = _OPS_LOOP.sub(_IDENTITY_LOOP, text, count=1)
        at = text.find(SG_KEYWORD)
        if at < 0:
            raise EncodeError(f"CifWriter wrote no {SG_KEYWORD}")
        text = text[:at] + atom_props_block(formula_sum) + text[at:]
        return round_numbers(text, self.decimals)

    def _decode(self, text: str) -> Structure:
        text = "\n".join(ln for ln in text.lstrip().splitlines() if not ln.lstrip().startswith("#")) + "\n"
        if not text.startswith("data_"):
            raise DecodeError("CIF must start with a data_ line")
        second = re.search(r"^\s*data_", text[5:], flags=re.MULTILINE)
        if second:  # a model without an end token runs on into the next CIF: keep the first
            text = text[: 5 + second.start()]
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
        """``element`` replaced in the data_ line, the formulas and the first two columns of the atom-properties
        and atom-site loops; space-group symbols, keywords and numbers are left alone."""
        pattern = re.compile(rf"{re.escape(element)}(?![a-z])")
        out = []
        in_rows = False
        for line in text.split("\n"):
            stripped = line.strip()
            if stripped.startswith("data_"):
                line = "data_" + pattern.sub(mask, stripped[5:])
            elif stripped.startswith("_chemical_formula"):
                name, _, rest = stripped.partition(" ")
                line = f"{name} {pattern.sub(mask, rest.strip())}"
            elif stripped.startswith(("_atom_site_", "_atom_type_")):
                in_rows = True
            elif stripped.startswith(("_", "loop_")):
                in_rows = False
            elif in_rows and stripped:
                parts = stripped.split()
                if parts[0] == element:
                    parts[0] = mask
                    if len(parts) > 1 and not re.fullmatch(r"[-+.\d]+|nan", parts[1]):
                        parts[1] = pattern.sub(mask, parts[1])  # the site label (Na0), not a property value
                    line = " ".join(parts)
            out.append(line)
        return "\n".join(out)
