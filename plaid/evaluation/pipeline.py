"""``evaluate``: every generation metric for a sample file against a reference set, written to a directory.

Stages, each resumable (a JSONL in ``out_dir`` keyed by sample id; a re-run skips finished samples):
``checks.jsonl`` (validity, space group, CrystaLLM checks), ``fingerprints.jsonl``, ``matching.jsonl``,
``relax.jsonl`` (via ``plaid.relax``). Then ``structures.csv`` (one row per input sample, input order),
``report.json`` and PNG plots are (re)written from those files.

Denominators (documented in the report under ``denominators``):
- validity rates, stable_rate, sun_rate, crystallm_valid_rate: all samples (unparsed samples are invalid);
- unique_rate, novel_rate, unique_novel_rate: valid samples (CDVAE/FlowMM); ``*_over_all`` variants too;
- cov_precision: all samples (CDVAE: fingerprints of every parsed sample, misses for the rest);
  cov_recall: reference structures;
- wdist_density / wdist_num_elems: valid samples vs all readable reference structures (CDVAE, no subsampling).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from plaid.io import JsonlWriter, dumps
from plaid.paths import cache_dir

from . import checks as crystallm
from .coverage import COVERAGE_CUTOFFS, coverage, wdist_density, wdist_num_elems
from .fingerprints import (
    DEFAULT_TIMEOUT_S,
    compute_fingerprints,
    file_sha256,
    reference_fingerprints,
    stack_fingerprints,
)
from .matching import GEN_MATCHER, reduce_reference, uniqueness_and_novelty
from .samples import Sample, load_reference, load_samples, structure_summary
from .stability import STABILITY_THRESHOLDS, stability_rates
from .stages import run_stage
from .validity import (
    DEFAULT_OXIDATION_TABLE,
    STRUCT_DIST_CUTOFF,
    STRUCT_MIN_VOLUME,
    compositional_validity,
    describe_oxidation_table,
    min_interatomic_distance,
    structural_validity,
)

log = logging.getLogger(__name__)
REPORT_VERSION = 1


@dataclass
class EvaluationConfig:
    """Every setting that changes a number; all of it is copied into report.json."""

    dataset: str | None = None  # mp_20 | perov_5 | carbon_24 (coverage cutoffs); None: inferred from the path
    struct_cutoff: float | None = None  # overrides the dataset's coverage cutoffs
    comp_cutoff: float | None = None
    comp_scaler: str | None = (
        None  # .npz with "means", "stds" (132 each); None: fitted on the coverage reference
    )
    oxidation_states: str = DEFAULT_OXIDATION_TABLE
    dist_cutoff: float = STRUCT_DIST_CUTOFF
    min_volume: float = STRUCT_MIN_VOLUME
    symprec: float = crystallm.SYMPREC
    crystallm_checks: bool = True
    bond_tolerance: float = crystallm.BOND_TOLERANCE
    coverage_over: str = "parsed"  # "parsed" (CDVAE: every parsed sample is a candidate) or "valid"
    fingerprint_timeout_s: float | None = DEFAULT_TIMEOUT_S
    matcher: dict = field(default_factory=lambda: dict(GEN_MATCHER))
    relax: bool = True
    relaxer: str = "chgnet"
    relaxer_model_path: str | None = None
    fmax: float = 0.1
    max_steps: int = 500
    relax_timeout_s: float | None = None
    hull: str | None = None
    stable_threshold: float = 0.0
    stability_thresholds: tuple = STABILITY_THRESHOLDS
    coverage_reference: str | None = (
        None  # CDVAE measures coverage against the test set; default: the reference
    )
    n_jobs: int = 1
    model_version: str | None = None
    plots: bool = True


class ReferenceSet:
    """A CDVAE-format CSV; its structures are parsed only when a cached artefact is missing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.sha256 = file_sha256(self.path)

    @cached_property
    def loaded(self):
        return load_reference(self.path)

    @property
    def structures(self):
        return self.loaded[0]

    def summary(self, symprec: float) -> dict:
        """Per-structure density, element count and space group, cached under the file hash."""
        root = cache_dir() / "evaluation"
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"summary-{self.sha256[:24]}-{symprec:g}.json"
        if path.exists():
            return json.loads(path.read_text())
        rows = [structure_summary(s) for s in self.structures]
        out = {
            "n": len(rows),
            "n_unreadable": self.loaded[2],
            "density": [r["density"] for r in rows],
            "num_elems": [r["num_elems"] for r in rows],
            "spacegroup": [
                None if s is None else crystallm.spglib_space_group(s, symprec) for s in self.structures
            ],
        }
        path.write_text(dumps(out))
        return json.loads(path.read_text())

    def describe(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256}


def infer_dataset(*paths) -> tuple[str, str]:
    """(dataset name, how it was chosen) from the reference paths; mp_20 when nothing matches."""
    for p in paths:
        text = str(p).lower()
        for name, keys in {
            "perov_5": ("perov",),
            "carbon_24": ("carbon",),
            "mp_20": ("mp_20", "mp20"),
        }.items():
            if any(k in text for k in keys):
                return name, f"inferred from path {p}"
    return "mp_20", "no --dataset and none recognised in the reference path: assumed mp_20"


# ------------------------------------------------------------------------------------------- per-sample checks


def _check_payload(payload) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _checks(*payload)


def _checks(sample: Sample, cfg: dict) -> dict:
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
        stated = _stated_space_group(sample)
        out["sg_stated"] = stated
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
                score, n_bonds, reason = crystallm.bond_length_score(s, cfg["bond_tolerance"])
            else:
                score, n_bonds, reason = float("nan"), 0, "structurally invalid"
            out.update(bond_length_score=score, n_bonds=n_bonds, bond_reason=reason)
    except Exception as exc:  # noqa: BLE001 - recorded per sample, never fatal
        out["check_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _stated_space_group(sample: Sample) -> int | None:
    if not sample.text or not sample.representation:
        return None
    try:
        from plaid.representations import get

        rep = get(sample.representation)
        return rep.space_group(sample.text) if hasattr(rep, "space_group") else None
    except Exception:  # noqa: BLE001
        return None


# ------------------------------------------------------------------------------------------- pipeline


def evaluate(
    samples_path: str | Path,
    reference_path: str | Path,
    out_dir: str | Path,
    config: EvaluationConfig | None = None,
    e_hull: dict | None = None,
) -> dict:
    """Evaluate ``samples_path`` against ``reference_path`` into ``out_dir``; returns the report dict.

    ``e_hull``: optional ``{sample_id: E_hull}`` supplied by the caller (skips relaxation and hull)."""
    cfg = config or EvaluationConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    samples = load_samples(samples_path)
    ids = [s.sample_id for s in samples]
    n = len(samples)
    reference = ReferenceSet(reference_path)
    cov_reference = ReferenceSet(cfg.coverage_reference) if cfg.coverage_reference else reference
    dataset, dataset_source = (
        (cfg.dataset, "given") if cfg.dataset else infer_dataset(cov_reference.path, reference.path)
    )
    if dataset not in COVERAGE_CUTOFFS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(COVERAGE_CUTOFFS)}")
    struct_cut = cfg.struct_cutoff if cfg.struct_cutoff is not None else COVERAGE_CUTOFFS[dataset]["struct"]
    comp_cut = cfg.comp_cutoff if cfg.comp_cutoff is not None else COVERAGE_CUTOFFS[dataset]["comp"]

    _guard_stale_stages(out_dir, samples_path, reference, cov_reference, cfg)

    # 1. per-sample checks
    check_cfg = {
        k: getattr(cfg, k)
        for k in (
            "dist_cutoff",
            "min_volume",
            "oxidation_states",
            "symprec",
            "crystallm_checks",
            "bond_tolerance",
        )
    }
    with JsonlWriter(out_dir / "checks.jsonl", key="sample_id") as writer:
        checks = run_stage(
            _check_payload, [(s.sample_id, (s, check_cfg)) for s in samples], writer, cfg.n_jobs, "checks"
        )
    rows = {sid: {"sample_id": sid, **checks[sid]} for sid in ids}
    for s in samples:
        row = rows[s.sample_id]
        row["valid"] = bool(row.get("struct_valid")) and bool(row.get("comp_valid"))
        row["gen_time_s"] = s.gen_time_s
    valid = [rows[sid]["valid"] for sid in ids]

    # 2. fingerprints and coverage
    if cfg.coverage_over not in ("parsed", "valid"):
        raise ValueError("coverage_over must be 'parsed' or 'valid'")
    fp_structs = [
        s.structure if (cfg.coverage_over == "parsed" or rows[s.sample_id]["valid"]) else None
        for s in samples
    ]
    fps = compute_fingerprints(
        fp_structs,
        ids,
        out_dir / "fingerprints.jsonl",
        timeout_s=cfg.fingerprint_timeout_s,
        n_jobs=cfg.n_jobs,
    )
    for sid in ids:
        rows[sid].update(fp_status=fps[sid]["fp_status"], fp_reason=fps[sid]["fp_reason"])
    ref_fp = reference_fingerprints(
        cov_reference.path,
        lambda: cov_reference.structures,
        timeout_s=cfg.fingerprint_timeout_s,
        n_jobs=cfg.n_jobs,
    )
    gen_s, gen_c, gen_ok = stack_fingerprints([fps[sid] for sid in ids])
    cov = coverage(
        gen_s[gen_ok],
        gen_c[gen_ok],
        ref_fp["struct_fps"][ref_fp["ok"]],
        ref_fp["comp_fps"][ref_fp["ok"]],
        struct_cut,
        comp_cut,
        n_generated=n,
        n_reference=len(ref_fp["ok"]),
        comp_scaler=_load_scaler(cfg.comp_scaler),
    )

    # 3. distributions
    ref_summary = cov_reference.summary(cfg.symprec)
    ref_density = [d for d in ref_summary["density"] if d is not None and math.isfinite(d)]
    ref_nelems = [d for d in ref_summary["num_elems"] if d is not None and math.isfinite(d)]
    gen_density = [rows[sid]["density"] for sid, v in zip(ids, valid) if v]
    gen_nelems = [rows[sid]["num_elems"] for sid, v in zip(ids, valid) if v]

    # 4. uniqueness and novelty (valid samples; novelty against the training reference)
    novelty_ref = reduce_reference(lambda: reference.structures, source_sha256=reference.sha256)
    match = uniqueness_and_novelty(
        [s.structure if v else None for s, v in zip(samples, valid)],
        ids,
        reference=novelty_ref,
        matcher_kwargs=cfg.matcher,
        out_path=out_dir / "matching.jsonl",
        n_jobs=cfg.n_jobs,
    )
    for sid in ids:
        rows[sid].update(
            {k: match[sid][k] for k in ("is_unique", "duplicate_of", "is_novel", "matches_reference")}
        )

    # 5. relaxation and energy above hull
    energy_info = _energies(samples, rows, valid, cfg, out_dir, reference, e_hull)
    thresholds = tuple(sorted(set(cfg.stability_thresholds) | {cfg.stable_threshold}))
    ehull_list = [rows[sid].get("e_hull") for sid in ids]
    gen_times = [s.gen_time_s for s in samples]
    stab = stability_rates(
        ehull_list,
        valid,
        [rows[sid]["is_unique"] for sid in ids],
        [rows[sid]["is_novel"] for sid in ids],
        thresholds,
        gen_times if all(t is not None for t in gen_times) else None,
    )
    for sid in ids:
        e = rows[sid].get("e_hull")
        stable = rows[sid]["valid"] and e is not None and math.isfinite(e) and e <= cfg.stable_threshold
        rows[sid]["is_stable"] = stable if energy_info["computed"] else None
        rows[sid]["is_sun"] = (
            stable and bool(rows[sid]["is_unique"]) and bool(rows[sid]["is_novel"])
            if energy_info["computed"]
            else None
        )
    for sid in ids:
        rows[sid]["crystallm_valid"] = _crystallm_valid(rows[sid]) if cfg.crystallm_checks else None

    report = _report(
        cfg,
        samples,
        rows,
        ids,
        cov,
        reference,
        novelty_ref,
        cov_reference,
        dataset,
        dataset_source,
        struct_cut,
        comp_cut,
        ref_fp,
        gen_density,
        ref_density,
        gen_nelems,
        ref_nelems,
        stab,
        energy_info,
        thresholds,
        started,
    )
    _write_structures_csv(out_dir / "structures.csv", [rows[sid] for sid in ids])
    (out_dir / "report.json").write_text(json.dumps(json.loads(dumps(report)), indent=2) + "\n")
    if cfg.plots:
        from .plots import write_plots

        report["plots"] = write_plots(out_dir, [rows[sid] for sid in ids], ref_summary, cfg.stable_threshold)
        (out_dir / "report.json").write_text(json.dumps(json.loads(dumps(report)), indent=2) + "\n")
    return report


def _load_scaler(path: str | None):
    if path is None:
        return None
    import numpy as np

    data = np.load(path)
    return np.asarray(data["means"], dtype=float), np.asarray(data["stds"], dtype=float)


STAGE_FILES = {
    "checks": "checks.jsonl",
    "fingerprints": "fingerprints.jsonl",
    "matching": "matching.jsonl",
    "relax": "relax.jsonl",
}


def _guard_stale_stages(
    out_dir: Path, samples_path, reference: ReferenceSet, cov_reference: ReferenceSet, cfg: EvaluationConfig
) -> None:
    """Resume only what was computed from the same inputs and settings: a stage whose inputs or settings
    changed since its results were written has its JSONL renamed to ``*.stale`` and is recomputed."""
    samples_sha = file_sha256(samples_path)
    settings = {
        "checks": [
            samples_sha,
            cfg.dist_cutoff,
            cfg.min_volume,
            cfg.oxidation_states,
            cfg.symprec,
            cfg.crystallm_checks,
            cfg.bond_tolerance,
        ],
        "fingerprints": [
            samples_sha,
            cfg.coverage_over,
            cfg.fingerprint_timeout_s,
            cfg.dist_cutoff,
            cfg.min_volume,
            cfg.oxidation_states,
        ],
        "matching": [
            samples_sha,
            reference.sha256,
            cfg.matcher,
            cfg.dist_cutoff,
            cfg.min_volume,
            cfg.oxidation_states,
        ],
        "relax": [
            samples_sha,
            cfg.relaxer,
            cfg.relaxer_model_path,
            cfg.fmax,
            cfg.max_steps,
            cfg.relax_timeout_s,
        ],
    }
    path = out_dir / "stages.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    for stage, value in settings.items():
        value = json.loads(json.dumps(value))
        stage_file = out_dir / STAGE_FILES[stage]
        if stage in previous and previous[stage] != value and stage_file.exists():
            log.warning("%s: inputs or settings changed since it was written; recomputing", stage_file.name)
            stage_file.replace(stage_file.with_suffix(".stale"))
        elif stage not in previous and stage_file.exists():
            log.warning("%s has no recorded settings; recomputing", stage_file.name)
            stage_file.replace(stage_file.with_suffix(".stale"))
    path.write_text(json.dumps(json.loads(json.dumps(settings)), indent=1) + "\n")


def _crystallm_valid(row: dict) -> bool:
    """CrystaLLM's is_valid: parsed, and every applicable check passes (bond score >= 1.0)."""
    if not row.get("parsed"):
        return False
    for key in ("sg_consistent", "multiplicity_consistent"):
        if row.get(key) is False:
            return False
    score = row.get("bond_length_score")
    return score is not None and math.isfinite(score) and score >= crystallm.BOND_SCORE_CUTOFF


def _energies(
    samples, rows, valid, cfg: EvaluationConfig, out_dir: Path, reference: ReferenceSet, e_hull: dict | None
) -> dict:
    """Fill ``relax_status``, ``energy_per_atom``, ``e_hull``, ``e_hull_reason``; return what the report says."""
    for s in samples:
        rows[s.sample_id].update(
            relax_status=None, relax_reason=None, energy_per_atom=None, e_hull=None, e_hull_reason=None
        )
    if e_hull is not None:
        for s, v in zip(samples, valid):
            value = e_hull.get(s.sample_id)
            ok = v and value is not None and math.isfinite(value)
            rows[s.sample_id]["e_hull"] = float(value) if ok else None
            rows[s.sample_id]["e_hull_reason"] = None if ok else ("invalid" if not v else "no value supplied")
        return {"computed": True, "source": "supplied by the caller", "relaxer": None, "hull": None}
    if not cfg.relax:
        for s in samples:
            rows[s.sample_id]["e_hull_reason"] = "relaxation disabled (--no-relax)"
        return {"computed": False, "source": "not computed (--no-relax)", "relaxer": None, "hull": None}

    from plaid.hull import load_hull
    from plaid.relax import get_relaxer

    try:
        if cfg.hull is None:
            hull = load_hull(
                None, reference_csv=reference.path
            )  # offline: reference formation energies + MP refs
        else:
            hull = load_hull(cfg.hull)
    except Exception as exc:  # noqa: BLE001 - no hull: energies cannot become E_hull; say so, do not relax
        reason = f"no reference hull: {type(exc).__name__}: {exc}"
        log.warning("%s; skipping relaxation (pass --hull)", reason)
        for s in samples:
            rows[s.sample_id]["e_hull_reason"] = reason
        return {
            "computed": False,
            "source": reason,
            "relaxer": None,
            "hull": None,
            "hull_default": cfg.hull is None,
        }
    relaxer = get_relaxer(
        cfg.relaxer,
        model_path=cfg.relaxer_model_path,
        fmax=cfg.fmax,
        max_steps=cfg.max_steps,
        timeout_s=cfg.relax_timeout_s,
    )
    todo = [s for s, v in zip(samples, valid) if v]
    results = relaxer.relax(
        [s.structure for s in todo], [str(s.sample_id) for s in todo], out_path=out_dir / "relax.jsonl"
    )
    for s, v in zip(samples, valid):
        if not v:
            rows[s.sample_id]["e_hull_reason"] = "invalid sample: not relaxed"
    for s, r in zip(todo, results):
        row = rows[s.sample_id]
        row.update(
            relax_status=r.status,
            relax_reason=r.reason,
            energy_per_atom=r.energy_per_atom if math.isfinite(r.energy_per_atom) else None,
        )
        if r.failed or r.structure is None or not math.isfinite(r.energy_per_atom):
            row["e_hull_reason"] = f"relaxation {r.status}: {r.reason}"
            continue
        try:
            value, reason = hull.e_above_hull(r.structure, r.energy_per_atom, cfg.relaxer)
        except Exception as exc:  # noqa: BLE001 - recorded per sample
            value, reason = float("nan"), f"{type(exc).__name__}: {exc}"
        ok = value is not None and math.isfinite(value)
        row["e_hull"] = float(value) if ok else None
        row["e_hull_reason"] = None if ok else (reason or "no hull value")
    return {
        "computed": True,
        "source": "MLIP relaxation + reference hull",
        "relaxer": relaxer.describe(),
        "hull": hull.describe(),
        "hull_default": cfg.hull is None,
    }


# ------------------------------------------------------------------------------------------- outputs


def _rate(k: int, d: int) -> float:
    return k / d if d else float("nan")


def _count(rows, ids, key, value=True) -> int:
    return sum(rows[sid].get(key) is value for sid in ids)


def _report(
    cfg,
    samples,
    rows,
    ids,
    cov,
    reference,
    novelty_ref,
    cov_reference,
    dataset,
    dataset_source,
    struct_cut,
    comp_cut,
    ref_fp,
    gen_density,
    ref_density,
    gen_nelems,
    ref_nelems,
    stab,
    energy_info,
    thresholds,
    started,
) -> dict:
    n = len(ids)
    n_parsed = _count(rows, ids, "parsed")
    n_struct = _count(rows, ids, "struct_valid")
    n_comp = _count(rows, ids, "comp_valid")
    n_valid = _count(rows, ids, "valid")
    n_unique = _count(rows, ids, "is_unique")
    n_novel = _count(rows, ids, "is_novel")
    n_un = sum(rows[s].get("is_unique") is True and rows[s].get("is_novel") is True for s in ids)
    primary = stab["thresholds"][f"{cfg.stable_threshold:g}"]
    computed = energy_info["computed"]
    nan = float("nan")
    report: dict = {
        "report_version": REPORT_VERSION,
        "n_samples": n,
        "n_parsed": n_parsed,
        "parse_rate": _rate(n_parsed, n),
        "struct_valid_rate": _rate(n_struct, n),
        "comp_valid_rate": _rate(n_comp, n),
        "valid_rate": _rate(n_valid, n),
        "unique_rate": _rate(n_unique, n_valid),
        "novel_rate": _rate(n_novel, n_valid),
        "unique_novel_rate": _rate(n_un, n_valid),
        "unique_rate_over_all": _rate(n_unique, n),
        "novel_rate_over_all": _rate(n_novel, n),
        "cov_recall": cov["cov_recall"],
        "cov_precision": cov["cov_precision"],
        "amsd_recall": cov["amsd_recall"],
        "amsd_precision": cov["amsd_precision"],
        "amcd_recall": cov["amcd_recall"],
        "amcd_precision": cov["amcd_precision"],
        "wdist_density": wdist_density(gen_density, ref_density),
        "wdist_num_elems": wdist_num_elems(gen_nelems, ref_nelems),
        "stable_rate": primary["stable_rate"] if computed else nan,
        "sun_rate": primary["sun_rate"] if computed else nan,
        "time_per_sun_s": primary["time_per_sun_s"] if computed else None,
        "sg_consistent_rate": _rate(_count(rows, ids, "sg_consistent"), n),
        "crystallm_valid_rate": _rate(_count(rows, ids, "crystallm_valid"), n)
        if cfg.crystallm_checks
        else nan,
        "counts": {
            "samples": n,
            "parsed": n_parsed,
            "unparsed": n - n_parsed,
            "struct_valid": n_struct,
            "comp_valid": n_comp,
            "valid": n_valid,
            "unique": n_unique,
            "novel": n_novel,
            "unique_and_novel": n_un,
            "sg_consistent": _count(rows, ids, "sg_consistent"),
            "sg_inconsistent": _count(rows, ids, "sg_consistent", False),
            "sg_not_stated": sum(
                rows[s].get("parsed") is True and rows[s].get("sg_consistent") is None for s in ids
            ),
            "multiplicity_consistent": _count(rows, ids, "multiplicity_consistent"),
            "multiplicity_inconsistent": _count(rows, ids, "multiplicity_consistent", False),
            "bond_length_ok": sum(
                (rows[s].get("bond_length_score") or 0) >= crystallm.BOND_SCORE_CUTOFF for s in ids
            ),
            "crystallm_valid": _count(rows, ids, "crystallm_valid"),
            "fingerprint_ok": sum(rows[s].get("fp_status") == "ok" for s in ids),
            "fingerprint_timeout": sum(rows[s].get("fp_status") == "timeout" for s in ids),
            "fingerprint_error": sum(rows[s].get("fp_status") == "error" for s in ids),
            "check_errors": sum(bool(rows[s].get("check_error")) for s in ids),
            "coverage_reference_covered": cov["n_reference_covered"],
            "coverage_generated_precise": cov["n_generated_precise"],
            "with_e_hull": stab["n_with_e_hull"],
            "stable": primary["n_stable"] if computed else None,
            "sun": primary["n_sun"] if computed else None,
            "relax_status": _tally(rows[s].get("relax_status") for s in ids),
        },
        "denominators": {
            "parse_rate": "all samples",
            "struct_valid_rate": "all samples (unparsed = invalid)",
            "comp_valid_rate": "all samples (unparsed = invalid)",
            "valid_rate": "all samples; valid = struct_valid and comp_valid (CDVAE)",
            "unique_rate": "valid samples (CDVAE/FlowMM); unique_rate_over_all: all samples",
            "novel_rate": "valid samples; novel_rate_over_all: all samples",
            "unique_novel_rate": "valid samples",
            "cov_recall": "reference structures (coverage reference set)",
            "cov_precision": "all samples (CDVAE num_gen_crystals); candidates: "
            + ("every parsed sample (CDVAE)" if cfg.coverage_over == "parsed" else "valid samples"),
            "amsd/amcd": "recall: mean over reference structures with fingerprints; precision: over samples with "
            "fingerprints",
            "wdist_density / wdist_num_elems": "valid samples vs all readable coverage-reference structures",
            "stable_rate / sun_rate": "all samples (MatterGen/PLaID); stable = valid and E_hull <= threshold",
            "time_per_sun_s": "total generation time of all samples / number of S.U.N. samples",
            "sg_consistent_rate / crystallm_valid_rate": "all samples",
        },
        "stability": {
            **(stab if computed else _blank_stability(stab)),
            "primary_threshold_ev_per_atom": cfg.stable_threshold,
            "computed": computed,
            "source": energy_info["source"],
        },
        "coverage": cov,
        "settings": {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "dataset": dataset,
            "dataset_source": dataset_source,
            "coverage_cutoffs": {
                "struct": struct_cut,
                "comp": comp_cut,
                "source": "CDVAE COV_Cutoffs"
                if cfg.struct_cutoff is None and cfg.comp_cutoff is None
                else "given",
            },
            "structural_validity": {
                "min_distance_A": cfg.dist_cutoff,
                "min_volume_A3": cfg.min_volume,
                "periodic_images": True,
            },
            "compositional_validity": {
                "method": "SMACT charge neutrality + Pauling test; unary and all-metal "
                "compositions valid (CDVAE smact_validity)",
                "oxidation_table": describe_oxidation_table(cfg.oxidation_states),
            },
            "spacegroup": {"tool": "spglib via pymatgen SpacegroupAnalyzer", "symprec": cfg.symprec},
            "crystallm_checks": {
                "bond_ratio_band": [1 - cfg.bond_tolerance, 1 + cfg.bond_tolerance],
                "h_factor": crystallm.BOND_H_FACTOR,
                "bond_score_cutoff": crystallm.BOND_SCORE_CUTOFF,
                "neighbours": "pymatgen CrystalNN",
            },
            "fingerprints": {
                "structure": "matminer CrystalNNFingerprint.from_preset('ops'), mean over sites",
                "composition": "matminer ElementProperty.from_preset('magpie'), standardized with "
                + (
                    f"means/stds from {cfg.comp_scaler}"
                    if cfg.comp_scaler
                    else "the coverage reference's mean/std"
                )
                + ", NaN -> 0",
                "timeout_s": cfg.fingerprint_timeout_s,
                "reference_cache": {"file": ref_fp["cache_file"], "hit": ref_fp["cache_hit"]},
            },
            "matching": {
                "uniqueness_novelty": {
                    **cfg.matcher,
                    "primitive_cell": True,
                    "scale": True,
                    "comparator": "SpeciesComparator",
                    "structures": "generated (unrelaxed) structures",
                },
                "definition": "unique: no earlier valid sample matches; novel: no reference matches",
            },
            "stability_thresholds_ev_per_atom": list(thresholds),
        },
        "relaxer": energy_info["relaxer"],
        "hull": energy_info["hull"],
        "hull_default": energy_info.get("hull_default"),
        "reference": {
            **reference.describe(),
            "n_structures": novelty_ref["n_structures"],
            "n_unreadable": novelty_ref["n_missing"],
            "used_for": "novelty",
        },
        "coverage_reference": {
            **cov_reference.describe(),
            "used_for": "coverage, wdist, space-group plot",
            "n_structures": int(len(ref_fp["ok"])),
            "n_fingerprint_failed": int((~ref_fp["ok"]).sum()),
        },
        "model_version": cfg.model_version or _model_version(samples),
        "seeds": {
            "evaluation": None,
            "note": "the evaluation is deterministic: no sampling or subsampling",
            "generation_run_seeds": generation_metadata(samples).get("run_seed", []),
        },
        "generation": generation_metadata(samples),
        "package_versions": package_versions(),
        "failures": {
            "parse_errors": _tally(_short(s.error) for s in samples if s.structure is None),
            "struct_invalid": _tally(
                _short(rows[s].get("struct_reason"), 40) for s in ids if rows[s].get("struct_valid") is False
            ),
            "e_hull_missing": _tally(
                _short(rows[s].get("e_hull_reason"), 60) for s in ids if rows[s].get("e_hull") is None
            ),
        },
        "elapsed_s": round(time.time() - started, 2),
    }
    return report


def _blank_stability(stab: dict) -> dict:
    """Without energies no sample is known to be stable or not: every rate is null, not 0."""
    blank = {k: None for k in ("n_stable", "stable_rate", "n_sun", "sun_rate", "time_per_sun_s")}
    return {**stab, "thresholds": {k: {**v, **blank} for k, v in stab["thresholds"].items()}}


def _short(text, n: int = 80):
    if text is None:
        return None
    return str(text).split("\n")[0][:n]


def _tally(values) -> dict:
    out: dict = {}
    for v in values:
        if v is None:
            continue
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _model_version(samples: list[Sample]) -> str | list[str]:
    models = sorted({str(s.meta["model"]) for s in samples if s.meta.get("model")})
    if not models:
        return "unknown (not recorded in the sample file; pass --model-version)"
    return models[0] if len(models) == 1 else models


def generation_metadata(samples: list[Sample]) -> dict:
    """Distinct values of each generation setting recorded in the samples (model, run_seed, temperature...)."""
    out: dict = {}
    for s in samples:
        for k, v in s.meta.items():
            out.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return {k: [json.loads(v) for v in sorted(vs)] for k, vs in out.items()}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "plaid",
        "pymatgen",
        "spglib",
        "smact",
        "matminer",
        "numpy",
        "scipy",
        "chgnet",
        "matgl",
        "torch",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


STRUCTURE_COLUMNS = [
    "sample_id",
    "parsed",
    "error",
    "formula",
    "num_sites",
    "num_elems",
    "density",
    "spacegroup",
    "sg_stated",
    "sg_consistent",
    "struct_valid",
    "struct_reason",
    "min_distance",
    "comp_valid",
    "valid",
    "multiplicity_consistent",
    "bond_length_score",
    "n_bonds",
    "bond_reason",
    "crystallm_valid",
    "fp_status",
    "fp_reason",
    "is_unique",
    "duplicate_of",
    "is_novel",
    "matches_reference",
    "relax_status",
    "relax_reason",
    "energy_per_atom",
    "e_hull",
    "e_hull_reason",
    "is_stable",
    "is_sun",
    "gen_time_s",
    "check_error",
]


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _write_structures_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(STRUCTURE_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in STRUCTURE_COLUMNS])
    tmp.replace(path)


def read_structures_csv(path: str | Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


__all__ = ["EvaluationConfig", "evaluate", "read_structures_csv", "package_versions"]
