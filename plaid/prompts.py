"""The one place prompts are written. The dataset builder and the sampler both call these functions, so the
text a model is trained on is exactly the text it is prompted with.

Prompt styles (``PROMPT_STYLES``; the dataset card and ``plaid_run.json`` record the style a model was trained
with, and ``plaid sample`` uses it):

- ``plaid`` (default): plaid's own wording. Generation prompts name any subset of ``CONDITION_KEYS`` in a fixed
  order and end with an instruction per representation; infill prompts show the crystal text with one element
  replaced by ``[MASK]``.
- ``plaid-paper``: PLaID's exact prompts (Xu et al.): ``Below is a description of a bulk material. `` + optional
  ``The chemical formula is X. ``, ``The spacegroup number is N. ``, ``The formation energy per atom is V. ``,
  ``The band gap is V. ``, ``The energy above the convex hull is V. `` (numbers as Python's ``round(v, 4)``
  prints them) + the lattice instruction; infill as crystal-text-llm.
- ``crystal-text-llm``: Gruver et al.'s templates (``llama_finetune.py`` / ``llama_sample.py``), the same
  sentences with the formula first and then formation energy, band gap, energy above hull and space group (their
  training draws the order at random; plaid fixes it). Infill: the masked text between the header and
  ``Generate an element that could replace [MASK] in the bulk material:``.
- ``crystallm``: CrystaLLM's prompts, which are the start of the CIF itself: ``data_<cell composition>\\n`` (the
  composition in pymatgen's electronegativity order, no spaces), with a space group also CrystaLLM's atom-properties
  loop and ``_symmetry_space_group_name_H-M <symbol>\\n``; ``data_`` alone when unconditional. CIF only, no infill.
  The sampler decodes prompt + completion (``PromptStyle.prompt_in_text``).
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
TASK_INSTRUCTIONS["wyckoff-plaid"] = TASK_INSTRUCTIONS["wyckoff"]  # the same content in PLaID's words
INFILL_INSTRUCTION = f"Generate an element that could replace {MASK} in the bulk material:"

# PLaID's and crystal-text-llm's sentences (their spelling: "spacegroup", no units)
SEED_CONDITION_TEMPLATES: dict[str, str] = {
    "formula": "The chemical formula is {}. ",
    "spacegroup": "The spacegroup number is {}. ",
    "formation_energy": "The formation energy per atom is {}. ",
    "band_gap": "The band gap is {}. ",
    "e_hull": "The energy above the convex hull is {}. ",
}
SEED_HEADER = "Below is a description of a bulk material. "
SEED_INSTRUCTION = (
    "Generate a description of the lengths and angles of the lattice vectors and then the element type and "
    "coordinates for each atom within the lattice:\n"
)
SEED_DECIMALS = 4


class PromptStyle:
    """How one project words its prompts. ``condition_keys``: the conditions it can state, in prompt order;
    ``anchor``: the condition every conditional training prompt names (crystal-text-llm always names the formula);
    ``prompt_keys``: those that conditional training prompts draw from; ``representations``: the representations it fits (None: any); ``prompt_in_text``: the prompt is the start of
    the crystal text (the completion is the rest of it)."""

    name = ""
    condition_keys: tuple[str, ...] = CONDITION_KEYS
    prompt_keys: tuple[str, ...] | None = None  # the conditions training prompts draw from (None: condition_keys)
    anchor: str | None = None
    representations: tuple[str, ...] | None = None
    has_infill = True
    prompt_in_text = False

    def format_condition(self, key: str, value) -> str:
        return format_condition(key, value)

    def generation(self, representation: str, conditions: Mapping[str, str]) -> str:
        raise NotImplementedError

    def infill(self, masked_text: str) -> str:
        return f"{INFILL_HEADER}\n{masked_text}\n{INFILL_INSTRUCTION}\n"

    def texts(self) -> list[str]:
        """Every fixed string of the style (the domain tokenizer learns their words)."""
        return [INFILL_HEADER, INFILL_INSTRUCTION]

    def check(self, representation: str | None = None, task: str = "generate", keys=()) -> None:
        """ValueError when this style cannot write the prompt asked for."""
        if representation is not None and self.representations and representation not in self.representations:
            raise ValueError(
                f"prompt style {self.name} is for the {', '.join(self.representations)} representation, "
                f"not {representation}"
            )
        if task == "infill" and not self.has_infill:
            raise ValueError(f"prompt style {self.name} has no infill prompt")
        unknown = [k for k in keys if k not in self.condition_keys]
        if unknown:
            raise ValueError(
                f"prompt style {self.name} cannot state {', '.join(unknown)}; it states "
                f"{', '.join(self.condition_keys) or 'no condition'}"
            )


class PlaidStyle(PromptStyle):
    name = "plaid"

    def generation(self, representation, conditions):
        sentences = [HEADER] + [CONDITION_TEMPLATES[k].format(v) for k, v in conditions.items()]
        return " ".join(sentences) + " " + TASK_INSTRUCTIONS[representation] + "\n"

    def texts(self):
        return [HEADER, *CONDITION_TEMPLATES.values(), *TASK_INSTRUCTIONS.values(), *super().texts()]


class SeedStyle(PromptStyle):
    """PLaID / crystal-text-llm: one header, condition sentences, one instruction for every representation."""

    def format_condition(self, key, value):
        if key in PROPERTY_KEYS:
            number = float(value)
            if number != number:
                raise ValueError(f"{key} is NaN")
            return str(round(number, SEED_DECIMALS))  # as both seeds write it: round(float(v), 4)
        return format_condition(key, value)

    def generation(self, representation, conditions):
        return SEED_HEADER + "".join(SEED_CONDITION_TEMPLATES[k].format(v) for k, v in conditions.items()) + (
            SEED_INSTRUCTION
        )

    def texts(self):
        return [SEED_HEADER, *SEED_CONDITION_TEMPLATES.values(), SEED_INSTRUCTION, *super().texts()]


class PlaidPaperStyle(SeedStyle):
    name = "plaid-paper"
    condition_keys = ("formula", "spacegroup", "formation_energy", "band_gap", "e_hull")


class CrystalTextLLMStyle(SeedStyle):
    name = "crystal-text-llm"
    condition_keys = ("formula", "formation_energy", "band_gap", "e_hull", "spacegroup")
    anchor = "formula"


class CrystaLLMStyle(PromptStyle):
    name = "crystallm"
    condition_keys = ("formula", "composition", "z", "spacegroup")  # formula and z only to make the composition
    prompt_keys = ("composition", "spacegroup")
    anchor = "composition"
    representations = ("cif",)
    has_infill = False
    prompt_in_text = True

    def generation(self, representation, conditions):
        self.check(representation)
        if not conditions:
            return "data_"
        if "composition" in conditions:
            comp = Composition(conditions["composition"])
        elif "formula" in conditions and "z" in conditions:
            comp = Composition(conditions["formula"]) * int(conditions["z"])
        else:
            raise ValueError(
                "prompt style crystallm names the cell composition: give composition (or formula and z)"
            )
        cell = comp.formula.replace(" ", "")
        if "spacegroup" not in conditions:
            return f"data_{cell}\n"
        import spglib

        from .representations.cif import SG_KEYWORD, atom_props_block
        from .representations.spacegroups import default_hall_number

        symbol = spglib.get_spacegroup_type(default_hall_number(int(conditions["spacegroup"]))).international_short
        return f"data_{cell}\n{atom_props_block(comp)}{SG_KEYWORD} {symbol}\n"

    def texts(self):
        return ["data_"]


PROMPT_STYLES: dict[str, PromptStyle] = {
    style.name: style for style in (PlaidStyle(), PlaidPaperStyle(), CrystalTextLLMStyle(), CrystaLLMStyle())
}
DEFAULT_PROMPT_STYLE = "plaid"


def get_style(name: str | None = None) -> PromptStyle:
    """The prompt style ``name`` (default ``plaid``); ValueError naming the styles for an unknown one."""
    key = DEFAULT_PROMPT_STYLE if name is None else name
    if isinstance(key, PromptStyle):
        return key
    try:
        return PROMPT_STYLES[key]
    except KeyError:
        raise ValueError(f"unknown prompt style {name!r}; choose from {', '.join(PROMPT_STYLES)}") from None


def template_texts() -> list[str]:
    """The fixed strings of every prompt style."""
    return [text for style in PROMPT_STYLES.values() for text in style.texts()]


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


def normalize_conditions(conditions: Mapping | None, style: str | PromptStyle | None = None) -> dict[str, str]:
    """Validate and canonicalise conditions for a prompt style (drops None values), in the style's prompt order;
    raises ValueError with a clear message (also for a condition the style cannot state)."""
    st = get_style(style)
    out: dict[str, str] = {}
    for key, value in (conditions or {}).items():
        if value is None:
            continue
        if key not in CONDITION_KEYS:
            raise ValueError(f"unknown condition {key!r}; known: {', '.join(CONDITION_KEYS)}")
        out[key] = st.format_condition(key, value)
    st.check(keys=list(out))
    if "formula" in out and "composition" in out:
        if Composition(out["formula"]).reduced_formula != Composition(out["composition"]).reduced_formula:
            raise ValueError(f"composition {out['composition']} does not reduce to formula {out['formula']}")
    return {k: out[k] for k in st.condition_keys if k in out}


def generation_prompt(
    representation: str, conditions: Mapping | None = None, style: str | PromptStyle | None = None
) -> str:
    """Prompt for generating a crystal in ``representation``, conditioned on ``conditions`` (any subset the style
    states), in prompt style ``style`` (default ``plaid``)."""
    if representation not in TASK_INSTRUCTIONS:
        raise ValueError(f"unknown representation {representation!r}")
    st = get_style(style)
    st.check(representation)
    return st.generation(representation, normalize_conditions(conditions, st))


def infill_prompt(masked_text: str, style: str | PromptStyle | None = None) -> str:
    """Prompt asking for the element hidden behind ``[MASK]`` in ``masked_text``."""
    st = get_style(style)
    st.check(task="infill")
    if MASK not in masked_text:
        raise ValueError("infill text holds no mask")
    return st.infill(masked_text)


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


def trained_prompt_style(model_dir) -> str | None:
    """The prompt style a plaid run was trained with (``plaid_run.json``: ``plaid_args.prompt_style``); None when
    the directory has no run record, and ``plaid`` for a run recorded before prompt styles existed."""
    import json
    from pathlib import Path

    record = Path(model_dir) / "plaid_run.json"
    if not record.is_file():
        return None
    try:
        args = json.loads(record.read_text()).get("plaid_args", {})
    except (ValueError, AttributeError, OSError):
        return None
    return args.get("prompt_style", DEFAULT_PROMPT_STYLE) if isinstance(args, dict) else None
