"""PLaID's released sample CSVs, read as plaid sample records (``plaid evaluate`` and ``plaid pairs`` read them
directly).

PLaID (Xu et al.) releases its samples as CSVs with the columns ``gen_str`` (the prompt and the generated text as one
string), ``cif`` (the decoded structure), ``relaxed_cif`` (after its MLIP relaxation), ``e_above_hull`` (eV/atom,
its labels) and ``actual_spacegroup``. One row becomes one record, in file order, with ``sample_id`` = the row's
position (or its ``sample_id`` column):

- ``structure_column="gen_str"`` (the default for such a CSV): the prompt is split off ``gen_str`` at the end of
  PLaID's generation instruction (or its infill instruction: then the generated text is an element, filled into
  the masked text), and the text is decoded with ``wyckoff-plaid``; conditions stated in the prompt (space group,
  formula) are kept, so space-group conditioned samples are scored against their requested group;
- ``structure_column="cif"`` or ``"relaxed_cif"``: that column's CIF is the structure; the split prompt and text are
  still kept (``plaid pairs`` pairs generated texts).

``given_e_hull`` reads a label column (``e_above_hull``) into ``{sample_id: value}``, with a reason in place of the
value where it is empty or not a finite number.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from plaid.prompts import INFILL_HEADER, INFILL_INSTRUCTION, SEED_INSTRUCTION
from plaid.representations.base import MASK

# The ends of PLaID's prompts, where the generated text starts: the `plaid-paper` prompt style's own strings
# (plaid.prompts is the one place prompts are written).
PLAID_GENERATION_PROMPT_END = SEED_INSTRUCTION
PLAID_INFILL_PROMPT_HEADER = INFILL_HEADER + "\n"
PLAID_INFILL_PROMPT_END = INFILL_INSTRUCTION + "\n"
PLAID_REPRESENTATION = "wyckoff-plaid"
PLAID_STRUCTURE_COLUMNS = ("gen_str", "cif", "relaxed_cif")
PLAID_E_HULL_COLUMN = "e_above_hull"

_CONDITIONS = {
    "spacegroup": re.compile(r"The spacegroup number is (\d+)\. "),
    "formula": re.compile(r"The chemical formula is ([A-Za-z0-9]+)\. "),
}


def is_plaid_csv(columns) -> bool:
    return "gen_str" in set(columns)


def split_gen_str(gen_str: str) -> dict:
    """``gen_str`` -> ``{"prompt", "text", "masked_text"}``: the prompt up to and including PLaID's instruction, the
    generated text after it, and for infill the masked crystal text (``text`` is then the generated element). No
    instruction found: prompt None and the whole string as text."""
    k = gen_str.rfind(PLAID_INFILL_PROMPT_END)
    if k >= 0:
        prompt = gen_str[: k + len(PLAID_INFILL_PROMPT_END)]
        start = prompt.find(PLAID_INFILL_PROMPT_HEADER)
        masked = prompt[start + len(PLAID_INFILL_PROMPT_HEADER) : k].strip("\n") if start >= 0 else None
        return {"prompt": prompt, "text": gen_str[len(prompt) :].strip(), "masked_text": masked}
    k = gen_str.rfind(PLAID_GENERATION_PROMPT_END)
    if k >= 0:
        cut = k + len(PLAID_GENERATION_PROMPT_END)
        return {"prompt": gen_str[:cut], "text": gen_str[cut:], "masked_text": None}
    return {"prompt": None, "text": gen_str, "masked_text": None}


def prompt_conditions(prompt: str | None) -> dict:
    """The conditions a PLaID generation prompt states that plaid scores (space group number, formula)."""
    out: dict = {}
    for key, pattern in _CONDITIONS.items():
        m = pattern.search(prompt or "")
        if m:
            out[key] = int(m.group(1)) if key == "spacegroup" else m.group(1)
    return out


def plaid_records(rows: list[dict], structure_column: str | None = None) -> list[dict]:
    """plaid sample records of the rows of a PLaID CSV (see module docstring); a row without the structure is a
    record with its ``error``."""
    column = structure_column or "gen_str"
    if column not in PLAID_STRUCTURE_COLUMNS:
        raise ValueError(f"structure column must be one of {', '.join(PLAID_STRUCTURE_COLUMNS)}, got {column!r}")
    out = []
    for pos, row in enumerate(rows):
        sid = row.get("sample_id", pos)
        record: dict = {"sample_id": pos if _missing(sid) else sid}
        gen = row.get("gen_str")
        if isinstance(gen, str) and gen.strip():
            parts = split_gen_str(gen)
            record.update(prompt=parts["prompt"], text=parts["text"], conditions=prompt_conditions(parts["prompt"]))
            if parts["masked_text"] is not None and MASK in parts["masked_text"]:
                record["masked_text"] = parts["masked_text"]
        if column == "gen_str":
            if "text" not in record:
                record["error"] = "empty gen_str"
            else:
                record["representation"] = PLAID_REPRESENTATION
        else:
            value = row.get(column)
            if isinstance(value, str) and value.strip():
                record["cif"] = value
            else:
                record["error"] = f"empty {column}"
        out.append(record)
    return out


def read_plaid_csv(path: str | Path, structure_column: str | None = None) -> tuple[list[dict], list[dict]]:
    """(sample records, raw rows) of a PLaID CSV."""
    import pandas as pd

    df = pd.read_csv(path)
    if structure_column and structure_column not in df.columns:
        raise ValueError(f"{path}: no {structure_column!r} column (columns: {', '.join(map(str, df.columns))})")
    rows = df.to_dict("records")
    return plaid_records(rows, structure_column), rows


def given_e_hull(rows: list[dict], records: list[dict], column: str) -> dict:
    """``{sample_id: E_hull}`` from ``column`` of ``rows`` (aligned with ``records``); where the value is empty
    or not a finite number, a reason string stands in its place."""
    out: dict = {}
    for row, record in zip(rows, records):
        value = row.get(column)
        if _missing(value):
            out[record["sample_id"]] = f"{column} empty"
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            out[record["sample_id"]] = f"{column} {value!r} is not a number"
            continue
        out[record["sample_id"]] = number if math.isfinite(number) else f"{column} {value!r} is not finite"
    return out


def given_e_hull_file(path: str | Path, column: str) -> tuple[dict, dict, dict]:
    """(``{sample_id: E_hull or reason}``, its description for the report, ``{sample_id: relaxed CIF}``) from
    ``column`` of a sample file: a CSV (ids: its ``sample_id`` column, else row positions) or plaid sample JSONL
    (each record's ``column`` field). The relaxed CIFs are a PLaID CSV's ``relaxed_cif`` column (the structures its
    labels were computed on; S.U.N. matches them), empty when there is none."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        import pandas as pd

        df = pd.read_csv(path)
        if column not in df.columns:
            raise ValueError(f"{path}: no {column!r} column (columns: {', '.join(map(str, df.columns))})")
        rows = df.to_dict("records")
    else:
        from plaid.io import read_jsonl

        rows = read_jsonl(path)
        if rows and not any(column in r for r in rows):
            raise ValueError(f"{path}: no record has a {column!r} field")
    ids = [{"sample_id": pos if _missing(r.get("sample_id")) else r["sample_id"]} for pos, r in enumerate(rows)]
    relaxed = {i["sample_id"]: r["relaxed_cif"] for i, r in zip(ids, rows)
               if isinstance(r.get("relaxed_cif"), str) and r["relaxed_cif"].strip()}
    return given_e_hull(rows, ids, column), describe_given(path, column, "relaxed_cif" if relaxed else None), relaxed


def describe_given(path: str | Path, column: str, relaxed_column: str | None = None) -> dict:
    """The ``hull`` entry of a report whose E_hull values were read from a file instead of computed."""
    relaxed = (f"relaxed structures from column {relaxed_column!r} where given, else the generated ones"
               if relaxed_column else "the generated structures stand in for relaxed ones")
    return {"kind": "given", "column": column, "file": Path(path).name, "relaxed_column": relaxed_column,
            "description": f"E_hull read from column {column!r} of {Path(path).name}; no relaxation, no hull; "
                           f"{relaxed}"}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


__all__ = [
    "PLAID_E_HULL_COLUMN",
    "PLAID_GENERATION_PROMPT_END",
    "PLAID_INFILL_PROMPT_END",
    "PLAID_INFILL_PROMPT_HEADER",
    "PLAID_STRUCTURE_COLUMNS",
    "describe_given",
    "given_e_hull",
    "given_e_hull_file",
    "is_plaid_csv",
    "plaid_records",
    "prompt_conditions",
    "read_plaid_csv",
    "split_gen_str",
]
