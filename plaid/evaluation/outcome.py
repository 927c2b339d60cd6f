"""One record per sample: what happened to it, computed once and read by every consumer.

``plaid evaluate`` (report and ``structures.csv``), both labelling paths of ``plaid pairs`` (its own MLIP labelling
and ``--labels EVAL_DIR``) and the per-iteration metrics of ``plaid align`` all read :class:`Outcome` records, so
"stable", "metastable", "unique", "novel" and "S.U.N." have one definition each:

- *valid*: structurally valid (no two atoms closer than 0.5 A, volume >= 0.1 A^3) and compositionally valid (SMACT),
  as in CDVAE; only samples passing ``OutcomeSettings.relax_filter`` are relaxed;
- *stable*: E_hull <= ``stable_threshold`` (0.0 eV/atom, MatterGen/PLaID++), :func:`is_stable`;
- *metastable*: E_hull < ``metastable_threshold`` (0.08 eV/atom, PLaID), :func:`is_metastable`;
- *unique* / *novel* (``is_unique``, ``is_novel``): CDVAE/FlowMM's rates on the *generated* structures of the valid
  samples; unique = no earlier valid sample matches, novel = no training structure matches;
- *S.U.N.* (FlowMM/FlowLLM, PLaID++, MatterGen; ``sun_protocol="relaxed"``, the default): among the *stable*
  samples, the *relaxed* structures are grouped into StructureMatcher classes (ltol 0.2, stol 0.3, angle 5; the
  first stable sample of a class is its representative, ``sun_class``); a class is novel when its representative
  matches no training structure (``sun_novel``); each stable novel class counts once (``is_sun`` is True on its
  representative). ``sun_protocol="unrelaxed"`` does the same on the generated structures.
- *M.S.U.N.* (PLaID++): the same over the *metastable* samples (``msun_class``, ``msun_novel``, ``is_msun``): each
  metastable novel class counts once, so a rate bought by repeating one motif does not rise.

A matcher error is never a "no match": the flag it would decide is None and the reason is kept
(``match_error``, ``sun_match_error``), so it is excluded from the rate it would inflate and counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .matching import GEN_MATCHER

STABLE_THRESHOLD = 0.0
METASTABLE_THRESHOLD = 0.08
SUN_PROTOCOLS = ("relaxed", "unrelaxed")
RELAX_FILTERS = ("valid", "struct_valid")
RELAX_OK = ("converged", "max_steps", "supplied")  # supplied: E_hull given by the caller


def finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def is_stable(e_hull, threshold: float = STABLE_THRESHOLD) -> bool:
    """E_hull <= threshold (eV/atom); a missing E_hull is not stable."""
    return finite(e_hull) and e_hull <= threshold


def is_metastable(e_hull, threshold: float = METASTABLE_THRESHOLD) -> bool:
    """E_hull < threshold (PLaID's 0.08 eV/atom); a missing E_hull is not metastable."""
    return finite(e_hull) and e_hull < threshold


@dataclass
class OutcomeSettings:
    """Every setting that changes an outcome (copied into report.json and pairs_report.json)."""

    stable_threshold: float = STABLE_THRESHOLD
    metastable_threshold: float = METASTABLE_THRESHOLD
    sun_protocol: str = "relaxed"
    matcher: dict = field(default_factory=lambda: dict(GEN_MATCHER))
    relax_filter: str = "valid"  # which samples are relaxed: "valid" (struct + SMACT, CDVAE) or "struct_valid"

    def __post_init__(self):
        if self.sun_protocol not in SUN_PROTOCOLS:
            raise ValueError(f"sun_protocol must be one of {SUN_PROTOCOLS}, got {self.sun_protocol!r}")
        if self.relax_filter not in RELAX_FILTERS:
            raise ValueError(f"relax_filter must be one of {RELAX_FILTERS}, got {self.relax_filter!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Outcome:
    sample_id: str
    prompt: str | None = None
    text: str | None = None  # the generated text (what a preference pair prefers or rejects)
    parsed: bool = False
    error: str | None = None  # why it did not parse
    struct_valid: bool | None = None
    struct_reason: str | None = None
    comp_valid: bool | None = None
    valid: bool = False
    spacegroup: int | None = None  # generated structure (spglib, symprec 0.1)
    requested_spacegroup: int | None = None
    relax_status: str | None = None  # None: not relaxed
    relax_reason: str | None = None
    energy_per_atom: float | None = None
    relaxed_spacegroup: int | None = None
    e_hull: float | None = None
    e_hull_reason: str | None = None
    energies_computed: bool = False  # False: no energies at all in this run (--no-relax, no hull)
    is_stable: bool | None = None
    is_metastable: bool | None = None
    is_unique: bool | None = None  # generated structures, among valid samples (CDVAE)
    duplicate_of: str | None = None
    is_novel: bool | None = None
    matches_reference: int | None = None
    match_error: str | None = None
    sun_class: str | None = None  # sample id of the representative of this stable sample's class
    sun_novel: bool | None = None  # that class matches no training structure
    is_sun: bool | None = None  # representative of a stable, novel class
    sun_match_error: str | None = None
    msun_class: str | None = None  # the same for metastable samples (M.S.U.N., PLaID++)
    msun_novel: bool | None = None
    is_msun: bool | None = None
    msun_match_error: str | None = None

    @property
    def status(self) -> str:
        """ok | unparsed | invalid | not_relaxed | relax_failed | unlabelled (relaxed, no E_hull)."""
        if not self.parsed:
            return "unparsed"
        if not self.valid and self.relax_status is None:
            return "invalid"
        if self.relax_status is None:
            return "not_relaxed"
        if self.relax_status not in RELAX_OK:
            return "relax_failed"
        return "ok" if finite(self.e_hull) else "unlabelled"

    @property
    def reason(self) -> str | None:
        status = self.status
        if status == "unparsed":
            return self.error or "not parsed"
        if status == "invalid":
            if self.struct_valid is False:
                return f"structurally invalid (CDVAE): {self.struct_reason}"
            if self.comp_valid is False:
                return "compositionally invalid (SMACT)"
            return self.struct_reason or "invalid"
        if status == "relax_failed":
            return f"{self.relax_status}: {self.relax_reason}"
        if status in ("unlabelled", "not_relaxed"):
            return self.e_hull_reason
        return self.relax_reason if self.relax_status == "max_steps" else None

    def to_record(self) -> dict:
        return {**asdict(self), "status": self.status}

    @classmethod
    def from_record(cls, record: dict) -> Outcome:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def apply_thresholds(outcomes: list[Outcome], settings: OutcomeSettings) -> None:
    """Fill is_stable / is_metastable (None when no energies were computed in this run)."""
    for o in outcomes:
        if not o.energies_computed:
            o.is_stable = o.is_metastable = None
            continue
        o.is_stable = is_stable(o.e_hull, settings.stable_threshold)
        o.is_metastable = is_metastable(o.e_hull, settings.metastable_threshold)


OUTCOMES_FILE = "outcomes.jsonl"
SETTINGS_FILE = "outcome_settings.json"


def write_outcomes(out_dir: str | Path, outcomes: list[Outcome], settings: OutcomeSettings, info: dict) -> None:
    """``outcomes.jsonl`` (one record per sample, input order) and ``outcome_settings.json`` in ``out_dir``."""
    from plaid.io import dumps

    out = Path(out_dir)
    tmp = out / (OUTCOMES_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for o in outcomes:
            fh.write(dumps(o.to_record()) + "\n")
    tmp.replace(out / OUTCOMES_FILE)
    (out / SETTINGS_FILE).write_text(dumps({"settings": settings.to_dict(), **info}) + "\n")


def read_outcomes(out_dir: str | Path) -> tuple[list[Outcome], dict]:
    """(outcomes, {"settings": ..., energy/hull info}) written by :func:`write_outcomes`."""
    from plaid.io import read_jsonl

    out = Path(out_dir)
    if not (out / OUTCOMES_FILE).exists():
        raise FileNotFoundError(f"{out}: no {OUTCOMES_FILE}; run `plaid evaluate ... --out {out}` first")
    meta = json.loads((out / SETTINGS_FILE).read_text()) if (out / SETTINGS_FILE).exists() else {}
    return [Outcome.from_record(r) for r in read_jsonl(out / OUTCOMES_FILE)], meta


__all__ = [
    "METASTABLE_THRESHOLD",
    "STABLE_THRESHOLD",
    "SUN_PROTOCOLS",
    "Outcome",
    "OutcomeSettings",
    "apply_thresholds",
    "is_metastable",
    "is_stable",
    "read_outcomes",
    "write_outcomes",
]
