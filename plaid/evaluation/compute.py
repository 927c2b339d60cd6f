"""Samples -> one :class:`~plaid.evaluation.outcome.Outcome` each: the per-sample stages and the set-level ones
that decide a per-sample flag (uniqueness, novelty, S.U.N.). ``plaid evaluate`` and ``plaid pairs`` both call
:func:`compute_outcomes`; each stage is resumable through a JSONL in ``out_dir`` and recomputed when the inputs or
settings it was made with change (``stages.json``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from plaid.executors import Executor
from plaid.io import dumps

from .energies import relax_and_hull
from .matching import uniqueness_and_novelty
from .outcome import Outcome, OutcomeSettings, apply_thresholds
from .sample_checks import run_checks
from .stages import guard_stage


def records_sha256(records: list[dict]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(dumps(r).encode())
    return h.hexdigest()


def _requested_spacegroup(conditions) -> int | None:
    value = (conditions or {}).get("spacegroup") if isinstance(conditions, dict) else None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def compute_outcomes(
    samples: list,
    out_dir: str | Path,
    settings: OutcomeSettings,
    *,
    check_cfg: dict,
    inputs_sha256: str,
    reference: dict | None = None,
    reference_sha256: str | None = None,
    relaxer=None,
    hull=None,
    no_energy_reason: str = "not relaxed",
    e_hull: dict | None = None,
    e_hull_source: dict | None = None,
    relaxed_given: dict | None = None,
    n_jobs=1,
    progress: bool = True,
    batched: bool = True,
    dedupe: bool = True,
    fingerprints: dict | None = None,
) -> tuple[list[Outcome], dict, dict]:
    """(outcomes in input order, ``{sample_id: check record}``, info for the report).

    ``samples``: :class:`plaid.evaluation.samples.Sample` list; ``reference``: a reduced training set
    (``reduce_reference``) for novelty, None for none; ``relaxer``/``hull``: energies (None: none, every E_hull is
    missing with ``no_energy_reason``); ``e_hull``: ``{sample_id: E_hull}`` supplied instead of relaxation (the
    generated structures then stand in for relaxed ones; a string value is the reason that sample has none), and
    ``e_hull_source`` where they come from (the report's ``hull``, e.g. ``seed_files.describe_given``), and
    ``relaxed_given`` ``{sample_id: relaxed CIF}`` the structures those labels belong to (they replace the generated
    ones in S.U.N. matching; an unreadable one falls back to the generated structure); ``batched=False``: the
    sequential ASE relaxation; ``dedupe``: bit-identical samples are checked once. ``n_jobs``: local worker
    processes (int) for checks and matching, or a :class:`plaid.executors.Executor` (Ray), which also distributes
    the relaxation (local processes do not: the relaxer batches in one process). ``fingerprints``: fingerprint
    records computed with the checks (:func:`plaid.evaluation.sample_checks.run_checks`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard_stage(out, "checks.jsonl", [inputs_sha256, check_cfg])
    checks = run_checks(samples, check_cfg, out / "checks.jsonl", n_jobs, dedupe=dedupe, fingerprints=fingerprints)
    outcomes: list[Outcome] = []
    for s in samples:
        c = checks[s.sample_id]
        valid = bool(c.get("struct_valid")) and bool(c.get("comp_valid"))
        outcomes.append(Outcome(
            sample_id=str(s.sample_id), prompt=s.prompt, text=s.generated_text, parsed=bool(c.get("parsed")),
            error=c.get("error") or c.get("check_error"), struct_valid=c.get("struct_valid"),
            struct_reason=c.get("struct_reason"), comp_valid=c.get("comp_valid"), valid=valid,
            spacegroup=c.get("spacegroup"), requested_spacegroup=_requested_spacegroup(s.conditions),
        ))
    structures = {str(s.sample_id): s.structure for s in samples}

    # uniqueness and novelty of the generated structures, among valid samples (CDVAE/FlowMM)
    ids = [o.sample_id for o in outcomes]
    guard_stage(out, "matching.jsonl", [inputs_sha256, check_cfg, reference_sha256, settings.matcher])
    match = uniqueness_and_novelty([structures[o.sample_id] if o.valid else None for o in outcomes], ids,
                                   reference=reference, matcher_kwargs=settings.matcher,
                                   out_path=out / "matching.jsonl", n_jobs=n_jobs)
    for o in outcomes:
        m = match[o.sample_id]
        o.is_unique, o.duplicate_of = m["is_unique"], _sid(m["duplicate_of"])
        o.is_novel, o.matches_reference, o.match_error = m["is_novel"], m["matches_reference"], m["match_error"]
        if reference is None:
            o.is_novel = None

    # energies
    relaxed: dict[str, object] = {}
    info: dict = {"n_reduce_failed": sum(bool(m.get("reduce_error")) for m in match.values())}
    relax_pass = (lambda o: o.valid) if settings.relax_filter == "valid" else (lambda o: bool(o.struct_valid))
    if e_hull is not None:
        for o in outcomes:
            value = e_hull.get(o.sample_id, e_hull.get(_int(o.sample_id)))
            o.energies_computed = True
            if relax_pass(o):
                o.relax_status = "supplied"
                given = isinstance(value, int | float) and value == value
                o.e_hull = float(value) if given else None
                o.e_hull_reason = None if given else value if isinstance(value, str) else "no value supplied"
                relaxed[o.sample_id] = _given_relaxed(relaxed_given, o.sample_id) or structures[o.sample_id]
            else:
                o.e_hull_reason = "invalid sample: no E_hull"
        where = (e_hull_source.get("description") if e_hull_source
                 else "supplied by the caller (generated structures stand in for relaxed ones)")
        info["energies"] = {"computed": True, "source": where, "relaxer": None, "hull": e_hull_source}
    elif relaxer is not None and hull is not None:
        guard_stage(out, "relax.jsonl", [inputs_sha256, relaxer.settings()])
        todo = [(o.sample_id, structures[o.sample_id]) for o in outcomes if relax_pass(o)]
        fields, relaxed = relax_and_hull(todo, relaxer, hull, out / "relax.jsonl", progress=progress,
                                         batched=batched, executor=n_jobs if isinstance(n_jobs, Executor) else None)
        for o in outcomes:
            o.energies_computed = True
            if o.sample_id in fields:
                for k, v in fields[o.sample_id].items():
                    setattr(o, k, v)
            else:
                o.e_hull_reason = "unparsed: not relaxed" if not o.parsed else "invalid sample: not relaxed"
        info["energies"] = {"computed": True, "source": "relaxation + reference hull",
                            "relaxer": relaxer.describe(), "hull": hull.describe()}
    else:
        for o in outcomes:
            o.e_hull_reason = no_energy_reason
        info["energies"] = {"computed": False, "source": no_energy_reason, "relaxer": None,
                            "hull": hull.describe() if hull is not None else None}
    apply_thresholds(outcomes, settings)

    # S.U.N. (stable) and M.S.U.N. (metastable): classes of the selected samples' (relaxed) structures, novelty of
    # each class's representative
    use = relaxed if settings.sun_protocol == "relaxed" else structures
    stage_key = [inputs_sha256, reference_sha256, settings.to_dict(),
                 relaxer.settings() if relaxer is not None and e_hull is None else None]
    for prefix, selected in (("sun", lambda o: o.is_stable), ("msun", lambda o: o.is_metastable)):
        info[prefix] = _novel_classes(outcomes, prefix, selected, use, reference, settings, out, stage_key, n_jobs)
    return outcomes, checks, info


def _novel_classes(outcomes, prefix: str, selected, use: dict, reference, settings, out: Path, stage_key: list,
                   n_jobs) -> dict:
    """Group the ``selected`` samples into StructureMatcher classes and set ``<prefix>_class``, ``<prefix>_novel``,
    ``is_<prefix>`` and ``<prefix>_match_error`` on every outcome; returns the counts for ``info``."""
    chosen = [o for o in outcomes if selected(o)]
    ids = [o.sample_id for o in chosen]
    name = f"{prefix}_matching.jsonl"
    guard_stage(out, name, [*stage_key[:3], hashlib.sha256(json.dumps(ids).encode()).hexdigest(), stage_key[3]])
    classes = uniqueness_and_novelty([use.get(sid) for sid in ids], ids, reference=reference,
                                     matcher_kwargs=settings.matcher, out_path=out / name, n_jobs=n_jobs)
    by_id = {o.sample_id: o for o in outcomes}
    for o in outcomes:
        if not o.energies_computed:
            continue
        if not selected(o):
            setattr(o, f"is_{prefix}", False if reference is not None else None)
            continue
        m = classes[o.sample_id]
        setattr(o, f"{prefix}_match_error", m["match_error"])
        rep = o.sample_id
        seen = set()
        while rep is not None and classes[rep]["is_unique"] is False and rep not in seen:
            seen.add(rep)
            rep = _sid(classes[rep]["duplicate_of"])
        rep = rep if rep is not None and classes[rep]["is_unique"] is True else None
        setattr(o, f"{prefix}_class", rep)
        rep_novel = classes[rep]["is_novel"] if rep is not None else None
        setattr(o, f"{prefix}_novel", rep_novel if reference is not None else None)
        if reference is None:
            flag = None
        elif m["is_unique"] is False:
            flag = False  # its class is counted once, on the representative
        elif m["is_unique"] is None or m["is_novel"] is None:
            flag = None  # a matcher error left it undecided: counted, excluded from the rate
        else:
            flag = bool(m["is_novel"])
        setattr(o, f"is_{prefix}", flag)
    return {"protocol": settings.sun_protocol, "n_selected": len(chosen),
            "n_classes": sum(classes[i]["is_unique"] is True for i in ids),
            "n_undecided": sum(getattr(by_id[i], f"is_{prefix}") is None for i in ids)}


def _given_relaxed(relaxed: dict | None, sid: str):
    """The given relaxed structure of sample ``sid`` (a Structure or CIF text), or None."""
    value = (relaxed or {}).get(sid, (relaxed or {}).get(_int(sid)))
    if isinstance(value, str):
        from .samples import structure_from_cif

        try:
            return structure_from_cif(value)
        except Exception:  # noqa: BLE001 - unreadable: the generated structure stands in
            return None
    return value


def _sid(value):
    return None if value is None else str(value)


def _int(text: str):
    try:
        return int(text)
    except ValueError:
        return text
