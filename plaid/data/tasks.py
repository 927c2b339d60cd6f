"""Turn one encoded crystal into TRL prompt/completion rows: unconditional generation, generation conditioned on a
random subset of known properties, crystal structure prediction prompts (the cell composition, optionally with the
space group: CrystaLLM's and DiffCSP's CSP task), and infilling (one element masked). Prompts come from
``plaid.prompts``, in the build's prompt style (``plaid`` by default). Conditional prompts of a style with an anchor
condition always name it (crystal-text-llm: the formula, then at least one other property; crystallm: the cell
composition). With a style whose prompt is the start of the text (crystallm), the completion is the rest."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping

import numpy as np

from ..prompts import generation_prompt, get_style, infill_prompt, normalize_conditions
from ..representations import Representation

TASKS = ("unconditional", "conditional", "csp", "csp_spacegroup", "infill")
OFFERED_KEYS = ("formula", "composition", "spacegroup", "formation_energy", "band_gap", "e_hull")
# the conditions of the fixed-condition tasks (the prompts `plaid benchmark csp` asks)
CSP_CONDITIONS: dict[str, tuple[str, ...]] = {
    "csp": ("composition",),
    "csp_spacegroup": ("composition", "spacegroup"),
}
# PLaID trained on 2/3 generation and 1/3 infilling; generation is split evenly between plain and conditional.
DEFAULT_TASK_MIX: dict[str, float] = {"unconditional": 1 / 3, "conditional": 1 / 3, "infill": 1 / 3}


def parse_task_mix(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """``"unconditional=1,conditional=1,infill=1"`` or a mapping -> normalised weights."""
    if spec is None:
        return dict(DEFAULT_TASK_MIX)
    if isinstance(spec, str):
        items = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"task mix entry {part!r} is not task=weight")
            items[key.strip()] = float(value)
        spec = items
    unknown = set(spec) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; tasks are {TASKS}")
    if any(w < 0 for w in spec.values()) or sum(spec.values()) <= 0:
        raise ValueError(f"task weights must be non-negative and not all zero: {dict(spec)}")
    total = sum(spec.values())
    return {k: spec[k] / total for k in TASKS if spec.get(k, 0) > 0}


def example_rng(seed: int, uid: str, index: int = 0) -> np.random.Generator:
    """A generator fixed by (seed, structure, example index), independent of process count and order."""
    return np.random.default_rng([seed, zlib.crc32(uid.encode()), index])


def available_conditions(record: Mapping) -> dict:
    """The condition values a record offers for conditional prompts (finite numbers only)."""
    out = {}
    for key in OFFERED_KEYS:
        value = record.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        out[key] = value
    return out


def check_style(style, representation: str, mix: Mapping[str, float]) -> None:
    """ValueError when prompt style ``style`` cannot write the prompts of ``mix`` for ``representation``."""
    st = get_style(style)
    st.check(representation)
    for task in mix:
        if task == "infill":
            st.check(task="infill")
        elif task in CSP_CONDITIONS:
            st.check(keys=CSP_CONDITIONS[task])
        elif task == "conditional" and not set(_offered_keys(st)) & set(OFFERED_KEYS):
            raise ValueError(f"prompt style {st.name} states no condition the builder offers")


def _offered_keys(style) -> tuple[str, ...]:
    return style.prompt_keys if style.prompt_keys is not None else style.condition_keys


def _conditional_keys(offered: dict, style, rng: np.random.Generator) -> list[str]:
    keys = list(offered)
    if style.anchor is None or style.anchor not in offered:  # plaid: any non-empty subset (the historic draw)
        k = int(rng.integers(1, len(keys) + 1))
        return [keys[i] for i in sorted(rng.choice(len(keys), size=k, replace=False))]
    others = [key for key in keys if key != style.anchor]
    if not others:
        return [style.anchor]
    k = int(rng.integers(1, len(others) + 1))
    return [style.anchor] + [others[i] for i in sorted(rng.choice(len(others), size=k, replace=False))]


def make_example(
    record: Mapping, representation: Representation, task: str, rng: np.random.Generator, style=None
) -> dict:
    """One prompt/completion row of ``task`` for an encoded record (needs ``text`` and the condition columns), in
    prompt style ``style`` (default ``plaid``)."""
    st = get_style(style)
    text = record["text"]
    if task == "unconditional":
        conditions: dict = {}
        prompt, completion = generation_prompt(representation.name, None, st), text
    elif task == "conditional":
        offered = {k: v for k, v in available_conditions(record).items() if k in _offered_keys(st)}
        if not offered:
            raise ValueError(f"record offers no condition prompt style {st.name} can state")
        chosen = _conditional_keys(offered, st, rng)
        conditions = normalize_conditions({key: offered[key] for key in chosen}, st)
        prompt, completion = generation_prompt(representation.name, conditions, st), text
    elif task in CSP_CONDITIONS:
        conditions = normalize_conditions({k: record[k] for k in CSP_CONDITIONS[task]}, st)
        prompt, completion = generation_prompt(representation.name, conditions, st), text
    elif task == "infill":
        elements = representation.elements(text)
        element = elements[int(rng.integers(len(elements)))]
        conditions = {"masked_element": element}
        prompt, completion = infill_prompt(representation.mask_element(text, element), st), element
    else:
        raise ValueError(f"unknown task {task!r}")
    if st.prompt_in_text and task != "infill":
        if not text.startswith(prompt):
            raise ValueError(f"prompt style {st.name}: the text does not start with its prompt {prompt!r}")
        completion = text[len(prompt):]
    return {
        "prompt": prompt,
        "completion": completion,
        "task": task,
        "conditions": json.dumps(conditions),
    }


def choose_tasks(uid: str, mix: Mapping[str, float], seed: int, n: int) -> list[tuple[str, np.random.Generator]]:
    names = list(mix)
    weights = np.array([mix[k] for k in names])
    out = []
    for i in range(n):
        rng = example_rng(seed, uid, i)
        out.append((names[int(rng.choice(len(names), p=weights))], rng))
    return out
