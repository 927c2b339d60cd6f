"""Crystal structure prediction (CSP) evaluation: match rate and RMSE at n = 1 and n = 20 candidates.

For each test structure, its candidates are the samples generated for it, in sample order. A target is
matched at n when one of its first n candidates matches under StructureMatcher(stol=0.5, angle_tol=10,
ltol=0.3) (CDVAE/DiffCSP/CrystaLLM); its RMSE is the lowest normalized RMS displacement (``get_rms_dist``,
divided by (V/N)^(1/3)) among them. match_rate = matched targets / all targets; mean RMSE over matched targets.
Candidates that fail ``candidate_filter`` (default: structurally valid, as DiffCSP filters invalid predictions)
are kept in the candidate list as non-matches, so they use up their slot among the first n.

Assignment (``report["assignment"]``): when any sample carries a target id (the record's ``material_id``, which
``plaid sample`` copies from a prompt file's ``material_id`` column, or ``conditions["material_id"]``), samples are
assigned by it only, so each target's candidates are its own even when polymorphs share a formula; else, when the
samples' ``request_id``s are target ids, by those; else (with a warning) by the composition condition
(``conditions["composition"]`` or ``["formula"]``) to *every* target with that reduced formula. Unassigned samples
are counted in the report.

Library entry point: :func:`evaluate_csp` (records and targets in memory -> metrics); :func:`run_csp` reads the
files and writes ``csp_targets.csv``, ``csp_samples.csv`` and ``csp_report.json`` (``plaid evaluate-csp``).
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pymatgen.core import Composition

from plaid.io import JsonlWriter, dumps

from .matching import CSP_MATCHER, csp_metrics, csp_rms
from .report import package_versions
from .samples import Sample, _sample_from_record, load_reference, load_samples
from .stages import guard_stage, run_stage
from .validity import compositional_validity, structural_validity

CANDIDATE_FILTERS = ("struct_valid", "valid", "parsed")
ASSIGNMENTS = ("material_id", "request_id", "formula")
log = logging.getLogger(__name__)


def _reduced(formula) -> str | None:
    try:
        return Composition(str(formula)).reduced_formula
    except Exception:  # noqa: BLE001
        return None


def _material_id(s: Sample):
    mid = s.material_id or (s.conditions or {}).get("material_id")
    return None if mid is None or mid != mid else str(mid)


def choose_assignment(samples, target_ids: list[str]) -> str:
    """"material_id" when any sample carries one; "request_id" when the samples' request ids are target ids;
    else "formula"."""
    if any(_material_id(s) is not None for s in samples):
        return "material_id"
    ids = set(target_ids)
    requests = [s.request_id for s in samples if s.request_id is not None]
    if requests and all(r in ids for r in requests):
        return "request_id"
    return "formula"


def assign_samples(samples, target_ids: list[str], target_formulas: list[str | None],
                   assignment: str = "material_id") -> tuple[dict, list]:
    """``{target_index: [sample positions]}`` and the positions of samples assigned to no target."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}")
    by_id = {t: i for i, t in enumerate(target_ids)}
    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(target_formulas):
        if f:
            by_formula[f].append(i)
    assigned: dict[int, list[int]] = defaultdict(list)
    unassigned = []
    for pos, s in enumerate(samples):
        if assignment in ("material_id", "request_id"):
            key = _material_id(s) if assignment == "material_id" else s.request_id
            if key is not None and str(key) in by_id:
                assigned[by_id[str(key)]].append(pos)
            else:
                unassigned.append(pos)
            continue
        cond = (s.conditions or {}).get("composition") or (s.conditions or {}).get("formula")
        formula = _reduced(cond) if cond else None
        if formula and formula in by_formula:
            for t in by_formula[formula]:
                assigned[t].append(pos)
        else:
            unassigned.append(pos)
    return assigned, unassigned


def _csp_payload(payload) -> dict:
    target, candidates, matcher = payload
    if target is None:
        return {"rms": [None] * len(candidates), "error": "target structure unreadable"}
    return {"rms": csp_rms(target, candidates, matcher), "error": None}


def evaluate_csp(
    records: list,
    targets: list[tuple[str, object]],
    n_values: tuple[int, ...] = (1, 20),
    candidate_filter: str = "struct_valid",
    matcher: dict | None = None,
    n_jobs: int = 1,
    assignment: str | None = None,
    out_dir: str | Path | None = None,
) -> dict:
    """CSP metrics of sample ``records`` (dicts as ``plaid sample`` writes them, or ``Sample`` objects) against
    ``targets`` (``[(material_id, Structure or None)]``).

    Returns ``{"match_rate": {n: rate}, "rmse": {n: mean RMSE over matched targets}, "metrics": {n: csp_metrics},
    "assignment": "material_id" | "request_id" | "formula", "n_targets", "n_samples", "n_samples_unassigned",
    "n_candidates_ok", "per_target": [...], "per_sample": [...]}``. ``assignment=None`` chooses it
    (:func:`choose_assignment`); ``out_dir`` caches the per-target matching (``csp_matching.jsonl``)."""
    if candidate_filter not in CANDIDATE_FILTERS:
        raise ValueError(f"candidate_filter must be one of {CANDIDATE_FILTERS}")
    matcher = dict(matcher or CSP_MATCHER)
    samples = [r if isinstance(r, Sample) else _sample_from_record(r, i) for i, r in enumerate(records)]
    target_ids = [str(t) for t, _ in targets]
    structures = [s for _, s in targets]
    formulas = [None if t is None else t.composition.reduced_formula for t in structures]
    assignment = assignment or choose_assignment(samples, target_ids)
    if assignment == "formula":
        log.warning("no sample carries a target material_id: candidates are assigned by formula, so every "
                    "polymorph of a formula gets the same candidates (give the prompt file a material_id column)")
    assigned, unassigned = assign_samples(samples, target_ids, formulas, assignment)
    keep = []
    for s in samples:
        ok = s.structure is not None
        if ok and candidate_filter in ("struct_valid", "valid"):
            ok = structural_validity(s.structure)[0]
        if ok and candidate_filter == "valid":
            ok = compositional_validity(s.structure.composition)
        keep.append(ok)
    n_max = max(n_values)
    items = []
    for t, tid in enumerate(target_ids):
        positions = assigned.get(t, [])[:n_max]
        cands = [samples[p].structure if keep[p] else None for p in positions]
        items.append((tid, (structures[t], cands, matcher)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out_dir) if out_dir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        signature = [[str(s.sample_id) for s in samples], target_ids, matcher, candidate_filter, assignment, n_max,
                     [[str(samples[p].sample_id) for p in assigned.get(t, [])[:n_max]] for t in range(len(targets))]]
        guard_stage(root, "csp_matching.jsonl", signature)
        with JsonlWriter(root / "csp_matching.jsonl", key="material_id") as writer:
            results = run_stage(_csp_payload, items, writer, n_jobs, "csp matching")
    rms_lists = [results[tid]["rms"] for tid in target_ids]
    metrics = {n: csp_metrics(rms_lists, n) for n in n_values}
    sample_rms: dict[int, float | None] = {}
    sample_target: dict[int, list[str]] = defaultdict(list)
    for t, tid in enumerate(target_ids):
        for p, r in zip(assigned.get(t, [])[:n_max], results[tid]["rms"]):
            sample_target[p].append(tid)
            if r is not None:
                sample_rms[p] = r if sample_rms.get(p) is None else min(sample_rms[p], r)
    per_target = []
    for t, tid in enumerate(target_ids):
        row = {"material_id": tid, "formula": formulas[t], "n_candidates": len(assigned.get(t, []))}
        for n in n_values:
            found = [r for r in rms_lists[t][:n] if r is not None]
            row[f"matched_at_{n}"] = bool(found)
            row[f"rmse_at_{n}"] = min(found) if found else None
        per_target.append(row)
    per_sample = [{"sample_id": s.sample_id, "targets": sample_target.get(p, []), "parsed": s.structure is not None,
                   "error": s.error, "candidate_ok": keep[p], "rms": sample_rms.get(p)}
                  for p, s in enumerate(samples)]
    curve = [{k: v for k, v in csp_metrics(rms_lists, k).items() if k in ("n", "match_rate", "mean_rmse")}
             for k in range(1, n_max + 1)]
    return {
        "match_rate": {n: metrics[n]["match_rate"] for n in n_values},
        "rmse": {n: metrics[n]["mean_rmse"] for n in n_values},
        "metrics": metrics,
        "curve": curve,
        "assignment": assignment,
        "n_targets": len(target_ids),
        "n_samples": len(samples),
        "n_samples_parsed": sum(s.structure is not None for s in samples),
        "n_samples_unassigned": len(unassigned),
        "n_candidates_ok": sum(keep),
        "per_target": per_target,
        "per_sample": per_sample,
    }


def run_csp(
    samples_path: str | Path,
    targets_path: str | Path,
    out_dir: str | Path,
    n_values: tuple[int, ...] = (1, 20),
    candidate_filter: str = "struct_valid",
    matcher: dict | None = None,
    n_jobs: int = 1,
) -> dict:
    """``plaid evaluate-csp``: :func:`evaluate_csp` on files; writes ``csp_targets.csv`` (one row per target),
    ``csp_samples.csv`` (one row per sample, input order) and ``csp_report.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    samples = load_samples(samples_path)
    targets, target_ids, n_unreadable = load_reference(targets_path)
    matcher = dict(matcher or CSP_MATCHER)
    result = evaluate_csp(samples, list(zip(target_ids, targets)), n_values, candidate_filter, matcher, n_jobs,
                          out_dir=out_dir)
    with open(out_dir / "csp_samples.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "target", "parsed", "error", "candidate_ok", "matched", "rms"])
        for row in result["per_sample"]:
            r = row["rms"]
            w.writerow([row["sample_id"], ";".join(row["targets"]), row["parsed"], row["error"] or "",
                        row["candidate_ok"], r is not None, "" if r is None else f"{r:.6g}"])
    with open(out_dir / "csp_targets.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "formula", "n_candidates"]
                   + [c for n in n_values for c in (f"matched_at_{n}", f"rmse_at_{n}")])
        for row in result["per_target"]:
            cells = []
            for n in n_values:
                rmse = row[f"rmse_at_{n}"]
                cells += [row[f"matched_at_{n}"], "" if rmse is None else f"{rmse:.6g}"]
            w.writerow([row["material_id"], row["formula"] or "", row["n_candidates"], *cells])
    assignment_text = {
        "material_id": "by the samples' material_id (each target gets only its own candidates)",
        "request_id": "by the samples' request_id (= target material_id)",
        "formula": "by composition/formula condition: every target with that formula gets the sample (no "
        "material_id in the samples; polymorphs of one formula share candidates)",
    }[result["assignment"]]
    report = {
        "n_targets": result["n_targets"],
        "n_targets_unreadable": n_unreadable,
        "n_samples": result["n_samples"],
        "n_samples_parsed": result["n_samples_parsed"],
        "n_samples_unassigned": result["n_samples_unassigned"],
        "n_candidates_ok": result["n_candidates_ok"],
        "assignment": result["assignment"],
        **{f"match_rate_at_{n}": result["match_rate"][n] for n in n_values},
        **{f"mean_rmse_at_{n}": result["rmse"][n] for n in n_values},
        "metrics": {f"n={n}": m for n, m in result["metrics"].items()},
        "curve": result["curve"],  # match rate and mean RMSE with the first k candidates, k = 1..max(n)
        "denominators": {
            "match_rate": "all targets (a target without candidates is unmatched)",
            "mean_rmse": "matched targets",
        },
        "settings": {
            "matcher": {**matcher, "primitive_cell": True, "scale": True},
            "rmse": "StructureMatcher.get_rms_dist(candidate, target)[0], normalized by (V/N)^(1/3); "
            "best over the first n candidates",
            "candidate_filter": candidate_filter,
            "n_values": list(n_values),
            "assignment": assignment_text,
        },
        "targets": {"path": str(targets_path)},
        "package_versions": package_versions(),
        "elapsed_s": round(time.time() - started, 2),
    }
    if result["assignment"] == "formula":
        report["warnings"] = ["no sample carries a target material_id: candidates assigned by formula"]
    (out_dir / "csp_report.json").write_text(json.dumps(json.loads(dumps(report)), indent=2) + "\n")
    return report
