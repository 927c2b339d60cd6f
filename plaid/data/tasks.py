"""Turn one encoded crystal into TRL prompt/completion rows: unconditional generation, generation conditioned on a
random subset of known properties, crystal structure prediction prompts (the cell composition, optionally with the
space group: CrystaLLM's and DiffCSP's CSP task), and infilling (one element masked). Prompts come from
``plaid.prompts``."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping

import numpy as np

from ..prompts import generation_prompt, infill_prompt, normalize_conditions
from ..representations import Representation

TASKS = ("unconditional", "conditional", "csp", "csp_spacegroup", "infill")
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
    for key in ("formula", "composition", "spacegroup", "formation_energy", "band_gap", "e_hull"):
        value = record.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        out[key] = value
    return out


def make_example(
    record: Mapping, representation: Representation, task: str, rng: np.random.Generator
) -> dict:
    """One prompt/completion row of ``task`` for an encoded record (needs ``text`` and the condition columns)."""
    text = record["text"]
    if task == "unconditional":
        conditions: dict = {}
        prompt, completion = generation_prompt(representation.name, None), text
    elif task == "conditional":
        offered = available_conditions(record)
        keys = list(offered)
        k = int(rng.integers(1, len(keys) + 1))
        chosen = sorted(rng.choice(len(keys), size=k, replace=False))
        conditions = normalize_conditions({keys[i]: offered[keys[i]] for i in chosen})
        prompt, completion = generation_prompt(representation.name, conditions), text
    elif task in CSP_CONDITIONS:
        conditions = normalize_conditions({k: record[k] for k in CSP_CONDITIONS[task]})
        prompt, completion = generation_prompt(representation.name, conditions), text
    elif task == "infill":
        elements = representation.elements(text)
        element = elements[int(rng.integers(len(elements)))]
        conditions = {"masked_element": element}
        prompt, completion = infill_prompt(representation.mask_element(text, element)), element
    else:
        raise ValueError(f"unknown task {task!r}")
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
