"""Validation, energies and rewards of MCTS completions, in process.

- ``MLIPEnergy``: CHGNet or M3GNet energy per atom of a structure (single point, or after ``relax_steps`` FIRE steps of
  ``plaid.relax``'s batched relaxer), and E_hull against a reference hull when one is given (the score is then
  E_hull, else the energy per atom; lower is better either way).
- ``CompletionScorer``: decode -> the prompt's conditions -> validity (``crystallm``: CrystaLLM's checks as
  ``plaid.evaluation`` implements them, on top of CDVAE structural validity; ``structural``; ``parsed``) ->
  energy. Results are cached by text, so a completion found again costs nothing.
- ``CrystaLLMReward``: CrystaLLM's reward ``1 / (1 + exp(lambda * (s - mu) / sigma))`` with the running mean and
  standard deviation of every valid score seen so far in this search (0.5 while there is one score, or all are
  equal); ``lambda = 2.0``. An invalid completion gets the worst reward, ``invalid_reward = -1.0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .tree import Evaluation

VALIDITY_MODES = ("crystallm", "structural", "parsed")
ENERGY_MODELS = ("chgnet", "m3gnet")


class CrystaLLMReward:
    def __init__(self, lam: float = 2.0, invalid_reward: float = -1.0):
        self.lam = float(lam)
        self.invalid_reward = float(invalid_reward)
        self.scores: list[float] = []

    def __call__(self, ev: Evaluation) -> float:
        if not ev.valid or ev.score is None or not math.isfinite(ev.score):
            return self.invalid_reward
        self.scores.append(float(ev.score))
        n = len(self.scores)
        mu = sum(self.scores) / n
        sigma = math.sqrt(sum((s - mu) ** 2 for s in self.scores) / n)
        if n == 1 or sigma == 0:
            return 0.5
        x = self.lam * (ev.score - mu) / sigma
        return 1.0 / (1.0 + math.exp(min(x, 700.0)))


class MLIPEnergy:
    """Energy per atom (eV/atom) from an MLIP, optionally after a few batched FIRE steps, and E_hull on a hull."""

    def __init__(self, name: str = "chgnet", relax_steps: int = 0, fmax: float = 0.1, hull=None,
                 model_path=None, device: str = "cpu", batch_size: int = 8):
        from plaid.relax import get_relaxer

        if name not in ENERGY_MODELS:
            raise ValueError(f"unknown energy model {name!r}; choose {', '.join(ENERGY_MODELS)}")
        if relax_steps < 0:
            raise ValueError("relax_steps must be >= 0")
        self.name = name
        self.relax_steps = int(relax_steps)
        self.hull = hull
        self.relaxer = get_relaxer(name, model_path=model_path, fmax=fmax, max_steps=self.relax_steps,
                                   device=device, batch_size=batch_size)

    def describe(self) -> dict:
        return {
            "energy_model": self.name,
            "model_version": self.relaxer.describe().get("model_version"),
            "relax_steps": self.relax_steps,
            "score": "e_hull" if self.hull is not None else "energy_per_atom",
            "hull": self.hull.describe() if self.hull is not None else None,
        }

    def __call__(self, structures: Sequence) -> list[dict]:
        results = self.relaxer.relax(list(structures), progress=False)
        out = []
        for structure, r in zip(structures, results):
            e = r.energy_per_atom
            row = {"energy_per_atom": e, "relax_status": r.status, "relax_reason": r.reason, "e_hull": None}
            if self.hull is not None and math.isfinite(e):
                e_hull, reason = self.hull.e_above_hull(r.structure or structure, e, relaxer_name=self.name)
                row["e_hull"] = e_hull if math.isfinite(e_hull) else None
                row["hull_reason"] = reason
            row["score"] = row["e_hull"] if self.hull is not None else (e if math.isfinite(e) else None)
            out.append(row)
        return out


def check_conditions(structure, conditions: dict) -> str | None:
    """Why ``structure`` contradicts the prompt's formula / composition / Z (None when it does not)."""
    from pymatgen.core import Composition

    comp = structure.composition
    if "formula" in conditions and comp.reduced_formula != Composition(conditions["formula"]).reduced_formula:
        return f"formula {comp.reduced_formula} is not the requested {conditions['formula']}"
    if "composition" in conditions and not comp.almost_equals(Composition(conditions["composition"])):
        return f"cell composition {comp.formula} is not the requested {conditions['composition']}"
    if "formula" in conditions and "z" in conditions:
        want = Composition(conditions["formula"]) * int(conditions["z"])
        if not comp.almost_equals(want):
            return f"cell composition {comp.formula} is not {conditions['formula']} x Z={conditions['z']}"
    return None


def check_validity(structure, text: str, representation, mode: str = "crystallm") -> str | None:
    """Why ``structure`` is invalid under ``mode`` (None when valid)."""
    from plaid.evaluation.checks import (
        BOND_SCORE_CUTOFF,
        bond_length_score,
        site_multiplicity_consistent,
        spglib_space_group,
    )
    from plaid.evaluation.validity import structural_validity

    if mode == "parsed":
        return None
    ok, reason = structural_validity(structure)
    if not ok:
        return f"structurally invalid: {reason}"
    if mode == "structural":
        return None
    if site_multiplicity_consistent(text, representation.name) is False:
        return "site multiplicities disagree with the stated formula"
    stated = representation.space_group(text)
    if stated is not None:
        found = spglib_space_group(structure)
        if found != stated:
            return f"stated space group {stated} but spglib finds {found}"
    score, _, why = bond_length_score(structure)
    if not (math.isfinite(score) and score >= BOND_SCORE_CUTOFF):
        return f"bond lengths: {why}" if why else f"unreasonable bond lengths ({(1 - score) * 100:.0f}% of bonds)"
    return None


class CompletionScorer:
    """Decode, validate and score completions; everything but the (cheap) condition check is cached by text.

    ``energy(structures) -> [{"score": float | None, ...}]`` is an ``MLIPEnergy`` or, in tests, any callable."""

    def __init__(self, representation: str, energy: Callable, validity: str = "crystallm"):
        from plaid.representations import get

        if validity not in VALIDITY_MODES:
            raise ValueError(f"validity must be one of {', '.join(VALIDITY_MODES)}")
        self.representation = get(representation)
        self.energy = energy
        self.validity = validity
        self.cache: dict[str, dict] = {}
        self.hits = 0

    def describe(self) -> dict:
        info = self.energy.describe() if hasattr(self.energy, "describe") else {"energy_model": repr(self.energy)}
        return {**info, "validity": self.validity}

    def _analyse(self, texts: Sequence[str]) -> None:
        from plaid.representations import DecodeError

        todo = []
        for text in dict.fromkeys(texts):
            if text in self.cache:
                continue
            entry: dict = {"structure": None, "reason": None}
            try:
                entry["structure"] = self.representation.decode(text)
            except DecodeError as exc:
                entry["reason"] = f"does not decode: {exc}"
            else:
                try:
                    entry["reason"] = check_validity(entry["structure"], text, self.representation, self.validity)
                except Exception as exc:  # noqa: BLE001 - a check that breaks makes this completion invalid
                    entry["reason"] = f"validity check failed: {type(exc).__name__}: {exc}"
                if entry["reason"] is None:
                    todo.append(text)
            self.cache[text] = entry
        if todo:
            for text, row in zip(todo, self.energy([self.cache[t]["structure"] for t in todo])):
                self.cache[text].update(row)
                if row.get("score") is None:
                    why = row.get("hull_reason") or row.get("relax_reason") or row.get("relax_status")
                    self.cache[text]["energy_reason"] = f"no energy: {why}"

    def evaluate_many(self, texts: Sequence[str], conditions: dict | None = None) -> list[Evaluation]:
        fresh = [t for t in texts if t not in self.cache]
        self.hits += len(texts) - len(fresh)
        self._analyse(texts)
        out = []
        for text in texts:
            entry = self.cache[text]
            reason = entry["reason"]
            if reason is None and conditions:
                reason = check_conditions(entry["structure"], conditions)
            extra = {k: entry.get(k) for k in ("energy_per_atom", "e_hull", "relax_status")}
            extra["cached"] = text not in fresh
            extra["structure_valid"] = reason is None  # valid as a structure, whether or not it got an energy
            reason = reason or entry.get("energy_reason")  # no energy: the worst reward, like an invalid one
            out.append(Evaluation(reason is None, entry.get("score") if reason is None else None, reason, extra=extra))
        return out

    def evaluate(self, text: str, conditions: dict | None = None) -> Evaluation:
        return self.evaluate_many([text], conditions)[0]

    def structure(self, text: str):
        entry = self.cache.get(text)
        return entry["structure"] if entry else None
