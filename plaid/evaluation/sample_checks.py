"""Stage 1 of an evaluation: per-sample checks of the generated structure (``checks.jsonl``, resumable).

Parse status, structural and compositional validity with reasons, density/elements/sites, the space group of
the generated structure (spglib), the space group its text states, and CrystaLLM's consistency and bond-length
checks. A failure inside a check is recorded in ``check_error`` with its message, never fatal."""

from __future__ import annotations

import math
import warnings

from plaid.io import JsonlWriter

from . import checks as crystallm
from .fingerprints import ORBIT_SYMPREC, structure_key
from .samples import Sample, structure_summary
from .stages import run_stage
from .validity import compositional_validity, min_interatomic_distance, structural_validity

CHECK_KEYS = ("dist_cutoff", "min_volume", "oxidation_states", "symprec", "crystallm_checks", "bond_tolerance",
              "orbit_symprec")


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no message): {exc!r}"


def check_sample(sample: Sample, cfg: dict, fingerprint: dict | None = None) -> dict:
    """The check record of one sample. ``fingerprint``: the evaluation's fingerprint settings (``timeout_s``,
    ``orbit_symprec``, ``backend``, ``over``: "parsed" or "valid"); when given, the sample's fingerprint record is
    computed here too, under ``"fingerprint"``, sharing CrystalNN's neighbours with the bond-length score."""
    from .crystalnn import shared_crystalnn

    with shared_crystalnn():
        out = _check(sample, cfg)
        if fingerprint is not None and out.get("parsed") and "check_error" not in out and (
                fingerprint["over"] == "parsed" or (out.get("struct_valid") and out.get("comp_valid"))):
            from .fingerprints import fingerprint_record

            out["fingerprint"] = fingerprint_record(sample.structure, fingerprint["timeout_s"],
                                                    fingerprint["orbit_symprec"], fingerprint["backend"])
    return out


def _check(sample: Sample, cfg: dict) -> dict:
    s = sample.structure
    out: dict = {"parsed": s is not None, "error": sample.error}
    if s is None:
        return out
    try:
        out.update(structure_summary(s))
        out["formula"] = s.composition.reduced_formula
        ok, reason = structural_validity(s, cfg["dist_cutoff"], cfg["min_volume"])
        out.update(struct_valid=ok, struct_reason=reason, min_distance=min_interatomic_distance(s))
        out["comp_valid"] = compositional_validity(s.composition, cfg["oxidation_states"])
        out["spacegroup"] = crystallm.spglib_space_group(s, cfg["symprec"])
        if out["spacegroup"] is None:
            out["spacegroup_reason"] = f"spglib found no space group at symprec {cfg['symprec']:g}"
        stated, stated_reason = stated_space_group(sample)
        out["sg_stated"] = stated
        out["sg_stated_reason"] = stated_reason
        out["sg_consistent"] = (
            None if stated is None or out["spacegroup"] is None else stated == out["spacegroup"]
        )
        if cfg["crystallm_checks"]:
            out["multiplicity_consistent"] = (
                crystallm.site_multiplicity_consistent(sample.text, sample.representation)
                if sample.text and sample.representation
                else None
            )
            if ok:
                score, n_bonds, reason = crystallm.bond_length_score(
                    s, cfg["bond_tolerance"], orbit_symprec=cfg.get("orbit_symprec"))
            else:
                score, n_bonds, reason = float("nan"), 0, "structurally invalid"
            out.update(bond_length_score=score, n_bonds=n_bonds, bond_reason=reason)
    except Exception as exc:  # noqa: BLE001 - recorded per sample, never fatal
        out["check_error"] = _message(exc)
    return out


def stated_space_group(sample: Sample) -> tuple[int | None, str | None]:
    """(space group the crystal text states, None) or (None, why there is none)."""
    if not sample.text or not sample.representation:
        return None, "no text with a named representation (CIF input)"
    try:
        from plaid.representations import get

        rep = get(sample.representation)
        if not hasattr(rep, "space_group"):
            return None, f"the {sample.representation} representation states no space group"
        value = rep.space_group(sample.text)
        return value, None if value is not None else "the text states no space group"
    except Exception as exc:  # noqa: BLE001
        return None, f"stated space group unreadable: {_message(exc)}"


def _payload(payload) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check_sample(*payload)


def _sample_key(payload):
    """Samples whose structure (bit for bit), text, representation and error agree get the same checks."""
    sample = payload[0]
    if sample.structure is None:
        return None
    return (structure_key(sample.structure), sample.text, sample.representation, sample.error)


def run_checks(samples: list[Sample], cfg: dict, path, n_jobs=1, dedupe: bool = True,
               fingerprints: dict | None = None) -> dict:
    """``{sample_id: check record}`` for every sample, resuming from ``path``; identical samples
    (:func:`_sample_key`) are checked once when ``dedupe``. ``fingerprints``: ``{"path": fingerprints.jsonl,
    **settings}`` (:func:`check_sample`): the fingerprint records computed with the checks are appended there,
    and the fingerprint stage then computes only those that are missing (exactly the same records)."""
    dedupe_key = _sample_key if dedupe else None
    with JsonlWriter(path, key="sample_id") as writer:
        if fingerprints is None:
            return run_stage(_payload, [(s.sample_id, (s, cfg, None)) for s in samples], writer, n_jobs, "checks",
                             dedupe_key=dedupe_key)
        settings = {k: v for k, v in fingerprints.items() if k != "path"}
        with JsonlWriter(fingerprints["path"], key="sample_id") as fp_writer:
            items = [(s.sample_id, (s, cfg, None if s.sample_id in fp_writer else settings)) for s in samples]
            return run_stage(_payload, items, _SplitWriter(writer, fp_writer), n_jobs, "checks",
                             dedupe_key=dedupe_key)


class _SplitWriter:
    """A check-record writer that sends each record's ``"fingerprint"`` to the fingerprint stage's writer."""

    def __init__(self, checks: JsonlWriter, fingerprints: JsonlWriter):
        self.checks, self.fingerprints, self.key = checks, fingerprints, checks.key

    def __contains__(self, key) -> bool:
        return key in self.checks

    @property
    def records(self):
        return self.checks.records

    def write(self, record: dict) -> bool:
        record = dict(record)
        fp = record.pop("fingerprint", None)
        if fp is not None and record[self.key] not in self.fingerprints:
            self.fingerprints.write({self.key: record[self.key], **fp})
        return self.checks.write(record)


def crystallm_valid(row: dict) -> bool:
    """CrystaLLM's is_valid: parsed, and every applicable check passes (bond score >= 1.0)."""
    if not row.get("parsed"):
        return False
    for key in ("sg_consistent", "multiplicity_consistent"):
        if row.get(key) is False:
            return False
    score = row.get("bond_length_score")
    return score is not None and math.isfinite(score) and score >= crystallm.BOND_SCORE_CUTOFF


def default_check_cfg(crystallm_checks: bool = False) -> dict:
    """The check settings of ``EvaluationConfig``'s defaults (what ``plaid pairs`` labels with)."""
    from .validity import DEFAULT_OXIDATION_TABLE, STRUCT_DIST_CUTOFF, STRUCT_MIN_VOLUME

    return {"dist_cutoff": STRUCT_DIST_CUTOFF, "min_volume": STRUCT_MIN_VOLUME,
            "oxidation_states": DEFAULT_OXIDATION_TABLE, "symprec": crystallm.SYMPREC,
            "crystallm_checks": crystallm_checks, "bond_tolerance": crystallm.BOND_TOLERANCE,
            "orbit_symprec": ORBIT_SYMPREC}
