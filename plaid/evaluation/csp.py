"""Crystal structure prediction (CSP) evaluation: match rate and RMSE at n = 1 and n = 20 candidates.

For each test structure, its candidates are the samples generated for it, in sample order. A target is
matched at n when one of its first n candidates matches under StructureMatcher(stol=0.5, angle_tol=10,
ltol=0.3) (CDVAE/DiffCSP/CrystaLLM); its RMSE is the lowest normalized RMS displacement (``get_rms_dist``,
divided by (V/N)^(1/3)) among them. match_rate = matched targets / all targets; mean RMSE over matched targets.
Candidates that fail ``candidate_filter`` (default: structurally valid, as DiffCSP filters invalid predictions)
are kept in the candidate list as non-matches, so they use up their slot among the first n.

Samples are assigned to targets by ``material_id`` (record field or ``conditions["material_id"]``), else by
the composition condition (``conditions["composition"]`` or ``["formula"]``) to every target with that reduced
formula. Unassigned samples are counted in the report.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from pathlib import Path

from pymatgen.core import Composition

from plaid.io import JsonlWriter, dumps

from .matching import CSP_MATCHER, csp_metrics, csp_rms
from .pipeline import package_versions
from .samples import load_reference, load_samples
from .stages import run_stage
from .validity import compositional_validity, structural_validity

CANDIDATE_FILTERS = ("struct_valid", "valid", "parsed")


def _reduced(formula) -> str | None:
    try:
        return Composition(str(formula)).reduced_formula
    except Exception:  # noqa: BLE001
        return None


def assign_samples(samples, target_ids: list[str], target_formulas: list[str | None]) -> tuple[dict, list]:
    """``{target_index: [sample positions]}`` and the positions of samples assigned to no target."""
    by_id = {t: i for i, t in enumerate(target_ids)}
    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(target_formulas):
        if f:
            by_formula[f].append(i)
    assigned: dict[int, list[int]] = defaultdict(list)
    unassigned = []
    for pos, s in enumerate(samples):
        mid = s.material_id or (s.conditions or {}).get("material_id")
        if mid is not None and str(mid) in by_id:
            assigned[by_id[str(mid)]].append(pos)
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
    samples_path: str | Path,
    targets_path: str | Path,
    out_dir: str | Path,
    n_values: tuple[int, ...] = (1, 20),
    candidate_filter: str = "struct_valid",
    matcher: dict | None = None,
    n_jobs: int = 1,
) -> dict:
    """Write ``csp_targets.csv`` (one row per target), ``csp_samples.csv`` (one row per sample, input order)
    and ``csp_report.json`` into ``out_dir``; per-target matching is resumable (``csp_matching.jsonl``)."""
    if candidate_filter not in CANDIDATE_FILTERS:
        raise ValueError(f"candidate_filter must be one of {CANDIDATE_FILTERS}")
    matcher = dict(matcher or CSP_MATCHER)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    samples = load_samples(samples_path)
    targets, target_ids, n_unreadable = load_reference(targets_path)
    formulas = [None if t is None else t.composition.reduced_formula for t in targets]
    assigned, unassigned = assign_samples(samples, target_ids, formulas)

    keep = []
    for s in samples:
        ok = s.structure is not None
        if ok and candidate_filter in ("struct_valid", "valid"):
            ok = structural_validity(s.structure)[0]
        if ok and candidate_filter == "valid":
            ok = compositional_validity(s.structure.composition)
        keep.append(ok)
    items = []
    for t, tid in enumerate(target_ids):
        positions = assigned.get(t, [])[: max(n_values)]
        cands = [samples[p].structure if keep[p] else None for p in positions]
        items.append((tid, (targets[t], cands, matcher)))
    with JsonlWriter(out_dir / "csp_matching.jsonl", key="material_id") as writer:
        results = run_stage(_csp_payload, items, writer, n_jobs, "csp matching")
    rms_lists = [results[tid]["rms"] for tid in target_ids]

    metrics = {f"n={n}": csp_metrics(rms_lists, n) for n in n_values}
    sample_rms: dict[int, float | None] = {}
    sample_target: dict[int, list[str]] = defaultdict(list)
    for t, tid in enumerate(target_ids):
        for p, r in zip(assigned.get(t, [])[: max(n_values)], results[tid]["rms"]):
            sample_target[p].append(tid)
            if r is not None:
                sample_rms[p] = r if sample_rms.get(p) is None else min(sample_rms[p], r)
    with open(out_dir / "csp_samples.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "target", "parsed", "error", "candidate_ok", "matched", "rms"])
        for p, s in enumerate(samples):
            r = sample_rms.get(p)
            w.writerow(
                [
                    s.sample_id,
                    ";".join(sample_target.get(p, [])),
                    s.structure is not None,
                    s.error or "",
                    keep[p],
                    r is not None,
                    "" if r is None else f"{r:.6g}",
                ]
            )
    with open(out_dir / "csp_targets.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["material_id", "formula", "n_candidates"]
            + [c for n in n_values for c in (f"matched_at_{n}", f"rmse_at_{n}")]
        )
        for t, tid in enumerate(target_ids):
            rms = rms_lists[t]
            cells = []
            for n in n_values:
                found = [r for r in rms[:n] if r is not None]
                cells += [bool(found), f"{min(found):.6g}" if found else ""]
            w.writerow([tid, formulas[t] or "", len(assigned.get(t, [])), *cells])
    report = {
        "n_targets": len(target_ids),
        "n_targets_unreadable": n_unreadable,
        "n_samples": len(samples),
        "n_samples_parsed": sum(s.structure is not None for s in samples),
        "n_samples_unassigned": len(unassigned),
        "n_candidates_ok": sum(keep),
        **{f"match_rate_at_{n}": metrics[f"n={n}"]["match_rate"] for n in n_values},
        **{f"mean_rmse_at_{n}": metrics[f"n={n}"]["mean_rmse"] for n in n_values},
        "metrics": metrics,
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
            "assignment": "material_id, else composition/formula condition",
        },
        "targets": {"path": str(targets_path)},
        "package_versions": package_versions(),
        "elapsed_s": round(time.time() - started, 2),
    }
    (out_dir / "csp_report.json").write_text(json.dumps(json.loads(dumps(report)), indent=2) + "\n")
    return report
