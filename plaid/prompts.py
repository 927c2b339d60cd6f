"""The one place prompts are written. The dataset builder and the sampler both call these functions, so the
text a model is trained on is exactly the text it is prompted with.

Generation prompts (PLaID / crystal-text-llm style) name any subset of the conditions below in a fixed order;
infill prompts show the crystal text with one element replaced by ``[MASK]``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymatgen.core import Composition, Element

from .representations.base import MASK
from .representations.spacegroups import parse_space_group

HEADER = "Below is a description of a bulk material."
INFILL_HEADER = f'Below is a partial description of a bulk material where one element has been replaced with the string "{MASK}":'

# condition key -> sentence; the order here is the order in every prompt.
CONDITION_TEMPLATES: dict[str, str] = {
    "formula": "The chemical formula is {}.",
    "composition": "The cell composition is {}.",
    "z": "The number of formula units in the cell is {}.",
    "spacegroup": "The space group number is {}.",
    "formation_energy": "The formation energy per atom is {} eV.",
    "band_gap": "The band gap is {} eV.",
    "e_hull": "The energy above the convex hull is {} eV/atom.",
}
CONDITION_KEYS = tuple(CONDITION_TEMPLATES)
PROPERTY_KEYS = ("formation_energy", "band_gap", "e_hull")  # numeric, rounded to PROPERTY_DECIMALS
PROPERTY_DECIMALS = 2

TASK_INSTRUCTIONS: dict[str, str] = {
    "wyckoff": "Generate the formula, space group, lattice parameters and Wyckoff positions of the crystal:",
    "coords": (
        "Generate a description of the lengths and angles of the lattice vectors and then the element type "
        "and coordinates for each atom within the lattice:"
    ),
    "cif": "Generate the CIF file of the crystal:",
}
INFILL_INSTRUCTION = f"Generate an element that could replace {MASK} in the bulk material:"


def format_condition(key: str, value) -> str:
    """The canonical text of one condition value (validated; raises ValueError on a bad value)."""
    if key == "formula":
        comp = Composition(str(value))
        _check_elements(comp, value)
        return comp.reduced_formula
    if key == "composition":
        comp = Composition(str(value))
        _check_elements(comp, value)
        return " ".join(f"{el.symbol}{int(n)}" for el, n in _ordered(comp))
    if key == "z":
        z = int(value)
        if z < 1:
            raise ValueError(f"Z must be a positive integer, got {value!r}")
        return str(z)
    if key == "spacegroup":
        if isinstance(value, float) and value.is_integer():  # pandas turns int columns with gaps into floats
            value = int(value)
        return str(parse_space_group(value))
    if key in PROPERTY_KEYS:
        number = float(value)
        if number != number:
            raise ValueError(f"{key} is NaN")
        text = f"{number:.{PROPERTY_DECIMALS}f}"
        return "0.00" if float(text) == 0 else text
    raise ValueError(f"unknown condition {key!r}; known: {', '.join(CONDITION_KEYS)}")


def normalize_conditions(conditions: Mapping | None) -> dict[str, str]:
    """Validate and canonicalise conditions (drops None values); raises ValueError with a clear message."""
    out: dict[str, str] = {}
    for key, value in (conditions or {}).items():
        if value is None:
            continue
        out[key] = format_condition(key, value)
    if "formula" in out and "composition" in out:
        if Composition(out["formula"]).reduced_formula != Composition(out["composition"]).reduced_formula:
            raise ValueError(f"composition {out['composition']} does not reduce to formula {out['formula']}")
    return {k: out[k] for k in CONDITION_KEYS if k in out}


def generation_prompt(representation: str, conditions: Mapping | None = None) -> str:
    """Prompt for generating a crystal in ``representation``, conditioned on ``conditions`` (any subset)."""
    if representation not in TASK_INSTRUCTIONS:
        raise ValueError(f"unknown representation {representation!r}")
    conds = normalize_conditions(conditions)
    sentences = [HEADER] + [CONDITION_TEMPLATES[k].format(v) for k, v in conds.items()]
    return " ".join(sentences) + " " + TASK_INSTRUCTIONS[representation] + "\n"


def infill_prompt(masked_text: str) -> str:
    """Prompt asking for the element hidden behind ``[MASK]`` in ``masked_text``."""
    if MASK not in masked_text:
        raise ValueError("infill text holds no mask")
    return f"{INFILL_HEADER}\n{masked_text}\n{INFILL_INSTRUCTION}\n"


def _ordered(comp: Composition):
    return sorted(comp.items(), key=lambda kv: (kv[0].X, kv[0].symbol))


def _check_elements(comp: Composition, raw) -> None:
    if len(comp) == 0:
        raise ValueError(f"empty formula {raw!r}")
    for el in comp.elements:
        if not isinstance(el, Element):
            raise ValueError(f"unknown element {el} in {raw!r}")
    for _, n in comp.items():
        if n <= 0:
            raise ValueError(f"non-positive amount in {raw!r}")
