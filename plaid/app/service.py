"""What ``plaid serve`` does for one request, independent of the web layer (Gradio page and JSON API share it).

A request is ``{"formula": str, "z": int?, "spacegroup": int|str?, "num_samples": int?, "mode":
"sample"|"constrained"|"mcts"}``. ``parse_request`` checks everything before any model time is spent and raises
``BadRequest`` with a message (the API answers HTTP 400): not an object, unknown keys, unknown element, bad
numbers, too many samples or atoms, a Z / space group no crystal can have. Without Z the service scans
Z = 1, 2, 3, 4, 6, 8 as CrystaLLM's web app does (cell composition = formula x Z), stopping at the first Z that
gives a valid structure; Z values no crystal of the requested space group can have are skipped.

Generation holds one lock (the model is not shared between threads); at most ``max_queue`` requests wait for it,
more get ``Busy`` (HTTP 503). Each request has a time limit, checked between Z values and MCTS iterations; what
was found by then is returned with an error saying so.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MODES = ("sample", "constrained", "mcts")
KEYS = ("formula", "z", "spacegroup", "num_samples", "mode")
Z_SCAN = (1, 2, 3, 4, 6, 8)


class BadRequest(ValueError):
    """The request cannot be served as asked (HTTP 400)."""


class Busy(RuntimeError):
    """Too many requests are waiting (HTTP 503)."""


@dataclass
class ServeConfig:
    representation: str = "wyckoff"
    prompt_style: str = "plaid"  # plaid.prompts: the wording the model was trained on
    max_samples: int = 16
    max_atoms: int = 64
    max_new_tokens: int | None = None
    time_limit_s: float = 300.0
    max_queue: int = 8
    mcts_iterations: int = 50
    validity: str = "crystallm"
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0


@dataclass
class Request:
    formula: str
    z: int | None
    spacegroup: int | None
    num_samples: int
    mode: str
    zs: tuple[int, ...]


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {int(number)}")
    return int(number)


def parse_request(payload, config: ServeConfig) -> Request:
    """Validate one request (raises BadRequest with the reason)."""
    from pymatgen.core import Composition

    from plaid.prompts import format_condition

    if not isinstance(payload, dict):
        raise BadRequest("the request must be a JSON object")
    unknown = sorted(set(payload) - set(KEYS))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; known: {', '.join(KEYS)}")
    formula = payload.get("formula")
    if not isinstance(formula, str) or not formula.strip():
        raise BadRequest("formula is required, e.g. \"BaTiO3\"")
    try:
        formula = format_condition("formula", formula.strip())
    except Exception as exc:  # noqa: BLE001 - pymatgen raises several kinds for a bad formula
        raise BadRequest(f"bad formula {payload['formula']!r}: {exc}") from None
    atoms = int(sum(Composition(formula).values()))
    z = payload.get("z")
    z = None if z in (None, "") else _integer("z", z, 1, config.max_atoms)
    spacegroup = payload.get("spacegroup")
    if spacegroup in (None, ""):
        spacegroup = None
    else:
        try:
            spacegroup = int(format_condition("spacegroup", spacegroup))
        except Exception as exc:  # noqa: BLE001
            raise BadRequest(f"bad space group {spacegroup!r}: {exc}") from None
    num = _integer("num_samples", payload.get("num_samples", 1), 1, config.max_samples)
    mode = payload.get("mode", "constrained")
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "constrained" and config.representation not in ("wyckoff", "coords"):
        raise BadRequest(f"constrained decoding is not available for the {config.representation} representation")
    zs = (z,) if z is not None else Z_SCAN
    zs = tuple(k for k in zs if atoms * k <= config.max_atoms)
    if not zs:
        raise BadRequest(f"{formula} x Z has more than {config.max_atoms} atoms for every Z asked")
    if config.representation == "wyckoff":
        zs = tuple(k for k in zs if _feasible(formula, k, spacegroup, config.max_atoms))
        if not zs:
            what = f"Z={z}" if z is not None else f"any Z in {Z_SCAN}"
            sg = f" in space group {spacegroup}" if spacegroup is not None else ""
            raise BadRequest(f"no crystal of {formula} with {what}{sg}: its Wyckoff positions cannot hold the atoms")
    return Request(formula, z, spacegroup, num, mode, zs)


def _feasible(formula: str, z: int, spacegroup: int | None, max_atoms: int) -> bool:
    from plaid.sampling import make_grammar

    conditions = {"formula": formula, "z": str(z)}
    if spacegroup is not None:
        conditions["spacegroup"] = str(spacegroup)
    try:
        make_grammar("wyckoff", conditions, max_atoms=max_atoms)
    except ValueError:
        return False
    return True


class GenerationService:
    """Serves requests with one loaded model (``backend``) and, optionally, an energy model (``MLIPEnergy``)."""

    def __init__(self, backend, config: ServeConfig | None = None, energy=None):
        from plaid.sampling.mcts import CompletionScorer

        self.backend = backend
        self.config = config or ServeConfig()
        self.energy = energy
        self.scorer = CompletionScorer(self.config.representation, energy or _no_energy, self.config.validity)
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0
        self.served = 0

    @property
    def hull(self):
        return getattr(self.energy, "hull", None)

    def generate(self, payload) -> dict:
        """``{"structures": [...], "errors": [...], "texts": [...], ...}`` for one request payload."""
        request = parse_request(payload, self.config)
        if request.mode == "mcts" and self.energy is None:
            raise BadRequest("mode mcts needs an energy model: start the server with --relaxer chgnet or m3gnet")
        with self._count_lock:
            if self._waiting >= self.config.max_queue:
                raise Busy(f"{self._waiting} requests are already waiting; try again later")
            self._waiting += 1
        try:
            if not self._lock.acquire(timeout=self.config.time_limit_s):
                raise Busy(f"the server stayed busy for {self.config.time_limit_s:g} s; try again later")
        finally:
            with self._count_lock:
                self._waiting -= 1
        try:
            return self._run(request)
        finally:
            self.served += 1
            self._lock.release()

    # ------------------------------------------------------------------------------------------------ running
    def _run(self, req: Request) -> dict:
        start = time.monotonic()
        deadline = start + self.config.time_limit_s
        structures, errors, texts, tried = [], [], [], []
        for z in req.zs:
            if time.monotonic() > deadline:
                errors.append(f"time limit of {self.config.time_limit_s:g} s reached before Z={z}")
                break
            tried.append(z)
            # the prompt names the cell composition (and space group), as CrystaLLM's app and CSP prompts do
            conditions = {"composition": _cell(req.formula, z)}
            if req.spacegroup is not None:
                conditions["spacegroup"] = req.spacegroup
            try:
                found, failed, raw, note = self._generate_z(req, z, conditions, deadline)
            except Exception as exc:  # noqa: BLE001 - one Z failing is reported, the scan goes on
                logger.exception("generation failed for Z=%s", z)
                errors.append(f"Z={z}: generation failed: {type(exc).__name__}: {exc}")
                continue
            structures.extend(found)
            texts.extend(raw)
            if failed:
                errors.append(f"Z={z}: {failed} of {failed + len(found)} generations did not decode")
            if note:
                errors.append(f"Z={z}: {note}")
            if any(s["valid"] for s in found):
                break  # the first Z with a valid structure ends the scan (CrystaLLM's web app)
        if not any(s["valid"] for s in structures):
            errors.append("no valid structure was found" + (f" (tried Z = {', '.join(map(str, tried))})"
                                                            if tried else ""))
        return {"formula": req.formula, "mode": req.mode, "z_tried": tried, "structures": structures,
                "errors": errors, "texts": texts, "seconds": round(time.monotonic() - start, 3)}

    def _sample_config(self, req: Request, constrained: bool):
        from plaid.sampling import SampleConfig, SamplingParams

        cfg = self.config
        params = SamplingParams(cfg.temperature, 1.0, cfg.top_k, cfg.max_new_tokens)
        return SampleConfig(representation=cfg.representation, batch_size=req.num_samples, seed=cfg.seed,
                            params=params, constrained=constrained, grammar_options={"max_atoms": cfg.max_atoms},
                            prompt_style=cfg.prompt_style)

    def _generate_z(self, req: Request, z: int, conditions: dict, deadline: float):
        """(structures, number that did not decode, raw texts, note) for one Z."""
        from plaid.sampling import Sampler, make_request
        from plaid.sampling.mcts import MCTSConfig, MCTSSampler, TreeConfig

        rid = f"z{z}"
        request = make_request(rid, conditions, req.num_samples)
        if req.mode == "mcts":
            constrained = self.config.representation in ("wyckoff", "coords")
            mcts = MCTSSampler(self.backend, self._sample_config(req, constrained),
                               MCTSConfig(TreeConfig(iterations=self.config.mcts_iterations)), self.scorer)
            output = mcts.search(request, deadline=deadline)
            firsts: dict[str, dict] = {}
            for r in output.records:
                firsts.setdefault(r["text"], r)
            ranked = sorted((r for r in firsts.values() if r["rank"] is not None), key=lambda r: r["rank"])
            others = [r for r in firsts.values() if r["rank"] is None]
            records = (ranked + others)[: req.num_samples]  # the best distinct valid texts first
            note = output.stats.get("stopped")
        else:
            sampler = Sampler(self.backend, self._sample_config(req, req.mode == "constrained"))
            with tempfile.TemporaryDirectory() as tmp:
                sampler.run([request], Path(tmp) / "samples.jsonl", progress=False)
                from plaid.io import read_jsonl

                records = read_jsonl(Path(tmp) / "samples.jsonl")
            note = None
        parsed = [r for r in records if r.get("parsed")]
        evaluations = self.scorer.evaluate_many([r["text"] for r in parsed], conditions)
        found = [self._structure(r, ev, z) for r, ev in zip(parsed, evaluations)]
        found.sort(key=lambda s: (not s["valid"], s["energy_per_atom"] if s["energy_per_atom"] is not None
                                  else math.inf))
        return found, len(records) - len(parsed), [r["text"] for r in records], note

    def _structure(self, record: dict, ev, z: int) -> dict:
        from plaid.evaluation.checks import spglib_space_group

        structure = self.scorer.structure(record["text"])
        energy = ev.extra.get("energy_per_atom") if self.energy is not None else None
        return {
            "cif": record["cif"],
            "formula": record["formula"],
            "spacegroup": spglib_space_group(structure) if structure is not None else None,
            "valid": bool(ev.extra.get("structure_valid")),
            "reason": ev.reason,
            "energy_per_atom": _finite(energy),
            "e_hull": _finite(ev.extra.get("e_hull")),
            "z": z,
            "num_sites": record["num_sites"],
            "sample_id": record["sample_id"],
            "text": record["text"],
        }


def _finite(value):
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _cell(formula: str, z: int) -> str:
    from pymatgen.core import Composition

    return (Composition(formula) * z).formula


def _no_energy(structures):
    """Without an energy model every valid structure scores 0 (and no energy is shown)."""
    return [{"score": 0.0, "energy_per_atom": None} for _ in structures]
