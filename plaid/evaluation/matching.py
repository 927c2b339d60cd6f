"""Uniqueness, novelty and CSP matching with pymatgen's StructureMatcher, bucketed so the result is identical
to brute-force all-pairs comparison.

Why bucketing is exact: ``StructureMatcher.fit`` returns False when the comparator's composition hash (the
fractional composition) differs, and, without ``attempt_supercell``/``allow_subset``, when the primitive
Niggli-reduced cells hold different numbers of sites. So structures are grouped by (integer-reduced
composition) and only pairs with equal reduced site counts are fitted; each structure is reduced once (and a
reference set's reductions are cached on disk) and passed to ``fit(..., skip_structure_reduction=True)``.

Definitions (brute force, which ``brute_force_*`` implement literally and the tests compare against):
- sample i is *unique* iff it is valid and no earlier valid sample j < i has ``fit(s_j, s_i)``;
- sample i is *novel* iff it is valid and no reference structure r has ``fit(s_i, r)``.
"""

from __future__ import annotations

import math
import pickle
from collections import defaultdict
from pathlib import Path

from pymatgen.core import Composition, Structure
from pymatgen.core.structure_matcher import StructureMatcher
from tqdm.auto import tqdm

from plaid.executors import as_executor
from plaid.io import JsonlWriter
from plaid.paths import cache_dir

from .registry import register_metric

GEN_MATCHER = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}  # uniqueness / novelty (CDVAE, FlowMM, MatterGen)
CSP_MATCHER = {
    "ltol": 0.3,
    "stol": 0.5,
    "angle_tol": 10.0,
}  # CSP match rate / RMSE (CDVAE, DiffCSP, CrystaLLM)
REDUCTION_VERSION = "primitive-niggli-v2"


def make_matcher(ltol: float = 0.2, stol: float = 0.3, angle_tol: float = 5.0) -> StructureMatcher:
    return StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol)


def composition_key(composition: Composition) -> tuple:
    """Exact, hashable stand-in for the matcher's composition hash (its fractional composition)."""
    items = [(str(sp), amt) for sp, amt in composition.items()]
    if all(abs(a - round(a)) < 1e-8 for _, a in items):
        counts = [int(round(a)) for _, a in items]
        g = math.gcd(*counts) or 1
        return tuple(sorted((sp, c // g) for (sp, _), c in zip(items, counts)))
    total = sum(a for _, a in items)
    return tuple(sorted((sp, round(a / total, 8)) for sp, a in items))


def reduce_for_matching(structure: Structure) -> Structure:
    """The primitive, Niggli-reduced cell ``StructureMatcher.fit`` would compute (same code path)."""
    return StructureMatcher._get_reduced_structure(Structure.from_sites(structure), True, True)


def _fit(matcher: StructureMatcher, a: Structure, b: Structure, errors: list | None = None) -> bool:
    """``fit`` on reduced cells; a matcher exception is not a match, and its reason goes to ``errors``."""
    try:
        return bool(matcher.fit(a, b, skip_structure_reduction=True))
    except Exception as exc:  # noqa: BLE001 - recorded: the caller leaves the flag it would decide undecided
        if errors is not None:
            errors.append(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
        return False


def _reduce(structure: Structure) -> tuple[Structure, str | None]:
    try:
        return reduce_for_matching(structure), None
    except Exception as exc:  # noqa: BLE001 - fit() then reduces it itself; counted in the report
        return structure, f"reduction failed ({type(exc).__name__}: {exc}); compared unreduced"


# ----------------------------------------------------------------------------------------- brute force


def brute_force_unique(structures: list[Structure | None], matcher: StructureMatcher | None = None) -> list:
    """Reference implementation: is_unique per position (None where the structure is None/invalid)."""
    matcher = matcher or make_matcher(**GEN_MATCHER)
    out: list[bool | None] = []
    for i, s in enumerate(structures):
        if s is None:
            out.append(None)
            continue
        out.append(not any(t is not None and _safe_fit(matcher, t, s) for t in structures[:i]))
    return out


def brute_force_novel(
    structures: list[Structure | None], reference: list[Structure], matcher: StructureMatcher | None = None
) -> list:
    matcher = matcher or make_matcher(**GEN_MATCHER)
    return [None if s is None else not any(_safe_fit(matcher, s, r) for r in reference) for s in structures]


def _safe_fit(matcher, a, b) -> bool:
    try:
        return bool(matcher.fit(a, b))
    except Exception:  # noqa: BLE001
        return False


# ----------------------------------------------------------------------------------------- reference cache


def reduce_reference(structures, source_sha256: str | None = None, cache: Path | None = None) -> dict:
    """Reference structures reduced once and bucketed by composition key:
    ``{"buckets": {key: [(index, reduced)]}, "n_structures", "n_missing"}``. ``structures`` is a list (None for
    unreadable rows) or a callable returning one, called only when the cache misses. With ``source_sha256``
    (the reference file's hash) the result is cached on disk and reused."""
    path = None
    if source_sha256:
        root = (cache or cache_dir()) / "evaluation"
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"reduced-{REDUCTION_VERSION}-{source_sha256[:24]}.pkl"
        if path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
    if callable(structures):
        structures = structures()
    buckets: dict[tuple, list[tuple[int, Structure]]] = defaultdict(list)
    n_reduce_failed = 0
    for i, s in enumerate(tqdm(structures, desc="reduce reference", leave=False, mininterval=2.0)):
        if s is None:
            continue
        reduced, error = _reduce(s)
        n_reduce_failed += error is not None
        buckets[composition_key(s.composition)].append((i, reduced))
    out = {
        "buckets": dict(buckets),
        "n_structures": len(structures),
        "n_missing": sum(s is None for s in structures),
        "n_reduce_failed": n_reduce_failed,
    }
    if path is not None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    return out


# ----------------------------------------------------------------------------------------- bucketed


def _bucket_task(args) -> list[dict]:
    ids, structures, reference, matcher_kwargs, check_novelty = args
    matcher = make_matcher(**matcher_kwargs)
    pairs = [_reduce(s) for s in structures]
    reduced = [r for r, _ in pairs]
    out = []
    for i, (sid, r) in enumerate(zip(ids, reduced)):
        dup_of, errors = None, []
        for j in range(i):
            if len(reduced[j]) == len(r) and _fit(matcher, reduced[j], r, errors):
                dup_of = ids[j]
                break
        undecided = dup_of is None and bool(errors)
        record = {"sample_id": sid, "is_unique": None if undecided else dup_of is None, "duplicate_of": dup_of,
                  "reduce_error": pairs[i][1], "match_error": None}
        if undecided:
            record["match_error"] = f"uniqueness undecided: matcher error vs {len(errors)} sample(s): {errors[0]}"
        if check_novelty:
            ref_errors: list = []
            match = next(
                (ref_i for ref_i, ref in reference if len(ref) == len(r) and _fit(matcher, r, ref, ref_errors)),
                None,
            )
            novel_undecided = match is None and bool(ref_errors)
            record.update(is_novel=None if novel_undecided else match is None, matches_reference=match)
            if novel_undecided:
                message = f"novelty undecided: matcher error vs {len(ref_errors)} reference(s): {ref_errors[0]}"
                record["match_error"] = "; ".join(m for m in (record["match_error"], message) if m)
        out.append(record)
    return out


@register_metric("uniqueness_novelty")
def uniqueness_and_novelty(
    structures: list[Structure | None],
    ids: list | None = None,
    reference: dict | None = None,
    matcher_kwargs: dict | None = None,
    out_path: str | Path | None = None,
    n_jobs=1,
) -> dict:
    """Per id: ``{"is_unique", "duplicate_of", "is_novel", "matches_reference", "reduce_error", "match_error"}``
    (None entries -> None values). A flag that a matcher exception left undecided is None, with ``match_error``.

    ``reference`` is ``reduce_reference(...)``'s output (None: novelty not computed). ``out_path``: a JSONL that
    receives each bucket's records as it finishes, so a re-run resumes."""
    matcher_kwargs = dict(matcher_kwargs or GEN_MATCHER)
    ids = list(range(len(structures))) if ids is None else list(ids)
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for pos, s in enumerate(structures):
        if s is not None:
            buckets[composition_key(s.composition)].append(pos)
    writer = JsonlWriter(out_path, key="sample_id") if out_path else None
    done = writer.done if writer else set()
    tasks = []
    for key, positions in buckets.items():
        if all(ids[p] in done for p in positions):
            continue
        ref = reference["buckets"].get(key, []) if reference is not None else []
        tasks.append(
            (
                [ids[p] for p in positions],
                [structures[p] for p in positions],
                ref,
                matcher_kwargs,
                reference is not None,
            )
        )
    tasks.sort(key=lambda t: -len(t[0]) * (1 + len(t[2])))  # biggest first balances the pool
    results: dict = {r["sample_id"]: r for r in writer.records} if writer else {}
    bar = tqdm(total=sum(len(t[0]) for t in tasks), desc="matching", leave=False, mininterval=2.0)
    try:
        for records in as_executor(n_jobs).imap_unordered(_bucket_task, tasks):
            _store(records, results, writer, bar)
    finally:
        bar.close()
        if writer:
            writer.close()
    empty = {"is_unique": None, "duplicate_of": None, "is_novel": None, "matches_reference": None,
             "reduce_error": None, "match_error": None}
    return {
        sid: {**empty, **results.get(sid, {})} if s is not None else dict(empty)
        for sid, s in zip(ids, structures)
    }


def _store(records, results, writer, bar):
    for r in records:
        results[r["sample_id"]] = r
        if writer:
            writer.write(r)
    bar.update(len(records))


# ----------------------------------------------------------------------------------------- CSP


@register_metric("csp_rms")
def csp_rms(
    target: Structure, candidates: list[Structure | None], matcher_kwargs: dict | None = None
) -> list:
    """Per candidate: normalized RMS displacement to ``target`` (``get_rms_dist(...)[0]``, normalized by
    (V/N)^(1/3)), or None when it does not match or the candidate is None (invalid)."""
    matcher = make_matcher(**(matcher_kwargs or CSP_MATCHER))
    out = []
    for c in candidates:
        if c is None:
            out.append(None)
            continue
        try:
            rms = matcher.get_rms_dist(c, target)
        except Exception:  # noqa: BLE001 - as in CDVAE/DiffCSP: a failure is no match
            rms = None
        out.append(None if rms is None else float(rms[0]))
    return out


@register_metric("csp_match_rate")
def csp_metrics(rms_per_target: list[list], n: int) -> dict:
    """Match rate and mean RMSE using the first ``n`` candidates per target: a target is matched when any of
    them matches; its RMSE is the best (lowest) over them; mean RMSE is over matched targets."""
    best = []
    for rms in rms_per_target:
        found = [r for r in rms[:n] if r is not None]
        best.append(min(found) if found else None)
    matched = [b for b in best if b is not None]
    n_targets = len(rms_per_target)
    return {
        "n": n,
        "n_targets": n_targets,
        "n_matched": len(matched),
        "match_rate": len(matched) / n_targets if n_targets else float("nan"),
        "mean_rmse": sum(matched) / len(matched) if matched else float("nan"),
        "n_targets_with_fewer_candidates": sum(len(r) < n for r in rms_per_target),
    }
