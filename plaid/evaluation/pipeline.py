"""``evaluate``: every generation metric of a sample file against a reference set, written to a directory.

The driver over the stage modules, each resumable through a JSONL in ``out_dir`` and recomputed when its inputs or
settings change (``stages.json``):

1. per-sample checks (:mod:`.sample_checks`: ``checks.jsonl``);
2. uniqueness/novelty of the generated structures, relaxation and E_hull, S.U.N. classes (:mod:`.compute`:
   ``matching.jsonl``, ``relax.jsonl``, ``sun_matching.jsonl``), giving one :class:`~.outcome.Outcome` per sample
   (``outcomes.jsonl``, read by ``plaid pairs --labels``);
3. fingerprints and coverage (:mod:`.coverage_stage`: ``fingerprints.jsonl``);
4. ``structures.csv`` (one row per input sample, input order), ``report.json`` (:mod:`.report`, built from the
   outcomes) and PNG plots.

Definitions and denominators are in :mod:`.outcome` and in the report (``definitions``, ``denominators``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from plaid.executors import make_executor
from plaid.io import dumps
from plaid.paths import cache_dir

from . import checks as crystallm
from .compute import compute_outcomes
from .coverage import COVERAGE_CUTOFFS
from .coverage_stage import coverage_stage, describe_scaler
from .fingerprints import DEFAULT_TIMEOUT_S, ORBIT_SYMPREC, file_sha256
from .matching import GEN_MATCHER, reduce_reference
from .outcome import METASTABLE_THRESHOLD, STABLE_THRESHOLD, OutcomeSettings, write_outcomes
from .report import build_report, generation_metadata, package_versions
from .sample_checks import CHECK_KEYS, crystallm_valid
from .samples import load_reference, load_samples, samples_sha256, structure_summary
from .stability import STABILITY_THRESHOLDS
from .stages import guard_stage
from .validity import DEFAULT_OXIDATION_TABLE, STRUCT_DIST_CUTOFF, STRUCT_MIN_VOLUME

log = logging.getLogger(__name__)


@dataclass
class EvaluationConfig:
    """Every setting that changes a number; all of it is copied into report.json."""

    dataset: str | None = None  # mp_20 | perov_5 | carbon_24 (coverage cutoffs); None: inferred from the path
    struct_cutoff: float | None = None  # overrides the dataset's coverage cutoffs
    comp_cutoff: float | None = None
    comp_scaler: str | None = "cdvae"  # "cdvae" (CDVAE's MP-20 constants), "fit" (coverage reference), or a .npz
    oxidation_states: str = DEFAULT_OXIDATION_TABLE
    dist_cutoff: float = STRUCT_DIST_CUTOFF
    min_volume: float = STRUCT_MIN_VOLUME
    symprec: float = crystallm.SYMPREC
    crystallm_checks: bool = True
    bond_tolerance: float = crystallm.BOND_TOLERANCE
    coverage_over: str = "parsed"  # "parsed" (CDVAE: every parsed sample is a candidate) or "valid"
    fingerprint_timeout_s: float | None = DEFAULT_TIMEOUT_S
    # per-site CrystalNN work (fingerprint, bond-length score) once per orbit of sites equivalent at this spglib
    # tolerance (A), weighted by orbit size; None: every site (fingerprints.py says what the difference is)
    orbit_symprec: float | None = ORBIT_SYMPREC
    # who computes the fingerprint's order parameters: "plaid" (vectorised) or "matminer" (equal to ~1e-15)
    fingerprint_backend: str = "plaid"
    dedupe: bool = True  # bit-identical samples are checked and fingerprinted once (exact)
    matcher: dict = field(default_factory=lambda: dict(GEN_MATCHER))
    relax: bool = True
    relaxer: str = "chgnet"
    relaxer_model_path: str | None = None
    relaxer_energy_scale: str | None = None  # scale of relaxer_model_path's energies (mp2020 | mp_raw)
    device: str = "cpu"
    fmax: float = 0.1
    max_steps: int = 500
    relax_batch_size: int = 32
    relax_timeout_s: float | None = None
    relax_filter: str = "valid"
    hull: str | None = None
    stable_threshold: float = STABLE_THRESHOLD
    metastable_threshold: float = METASTABLE_THRESHOLD
    sun_protocol: str = "relaxed"  # "relaxed" (FlowMM/PLaID++/MatterGen) or "unrelaxed"
    stability_thresholds: tuple = STABILITY_THRESHOLDS
    coverage_reference: str | None = None  # CDVAE measures coverage against the test set; default: the reference
    n_jobs: int = 1
    executor: str = "local"  # "local" (n_jobs processes) or "ray" (plaid.executors.RayExecutor)
    ray_address: str | None = None  # with executor "ray": a running cluster; None: Ray on this machine
    model_version: str | None = None
    plots: bool = True
    structure_column: str | None = None  # PLaID sample CSVs: gen_str (default) | cif | relaxed_cif
    e_hull_column: str | None = None  # E_hull read from this column of the samples file instead of relaxing

    def outcome_settings(self) -> OutcomeSettings:
        return OutcomeSettings(stable_threshold=self.stable_threshold, metastable_threshold=self.metastable_threshold,
                               sun_protocol=self.sun_protocol, matcher=dict(self.matcher),
                               relax_filter=self.relax_filter)


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
            "spacegroup": [None if s is None else crystallm.spglib_space_group(s, symprec) for s in self.structures],
        }
        path.write_text(dumps(out))
        return json.loads(path.read_text())

    def describe(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256}


def infer_dataset(*paths) -> tuple[str, str]:
    """(dataset name, how it was chosen) from the reference paths; mp_20 when nothing matches."""
    for p in paths:
        text = str(p).lower()
        for name, keys in {"perov_5": ("perov",), "carbon_24": ("carbon",), "mp_20": ("mp_20", "mp20")}.items():
            if any(k in text for k in keys):
                return name, f"inferred from path {p}"
    return "mp_20", "no --dataset and none recognised in the reference path: assumed mp_20"


def load_energy_models(cfg: EvaluationConfig, reference: ReferenceSet):
    """(relaxer, hull, reason when there are no energies). A missing hull is a reason, not a crash; the offline
    hull (no --hull) is built with a warning, and its kind is in the report."""
    if not cfg.relax:
        return None, None, "relaxation disabled (--no-relax)"
    from plaid.hull import load_hull
    from plaid.relax import get_relaxer

    try:
        hull = load_hull(cfg.hull) if cfg.hull else load_hull(None, reference_csv=reference.path)
    except Exception as exc:  # noqa: BLE001 - no hull: energies cannot become E_hull; say so, do not relax
        reason = f"no reference hull: {type(exc).__name__}: {exc}"
        log.warning("%s; skipping relaxation (pass --hull)", reason)
        return None, None, reason
    relaxer = get_relaxer(cfg.relaxer, model_path=cfg.relaxer_model_path, fmax=cfg.fmax, max_steps=cfg.max_steps,
                          batch_size=cfg.relax_batch_size, timeout_s=cfg.relax_timeout_s, device=cfg.device,
                          energy_scale=cfg.relaxer_energy_scale)
    return relaxer, hull, None


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
    settings = cfg.outcome_settings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    samples = load_samples(samples_path, cfg.structure_column)
    e_hull_source = relaxed_given = None
    if e_hull is None and cfg.e_hull_column is not None:
        from .seed_files import given_e_hull_file

        e_hull, e_hull_source, relaxed_given = given_e_hull_file(samples_path, cfg.e_hull_column)
    reference = ReferenceSet(reference_path)
    cov_reference = ReferenceSet(cfg.coverage_reference) if cfg.coverage_reference else reference
    dataset, dataset_source = (
        (cfg.dataset, "given") if cfg.dataset else infer_dataset(cov_reference.path, reference.path)
    )
    if dataset not in COVERAGE_CUTOFFS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(COVERAGE_CUTOFFS)}")
    struct_cut = cfg.struct_cutoff if cfg.struct_cutoff is not None else COVERAGE_CUTOFFS[dataset]["struct"]
    comp_cut = cfg.comp_cutoff if cfg.comp_cutoff is not None else COVERAGE_CUTOFFS[dataset]["comp"]
    samples_sha = samples_sha256(samples_path)
    if cfg.structure_column is not None:  # another column of the same file: other structures
        samples_sha = f"{samples_sha}:{cfg.structure_column}"
    check_cfg = {k: getattr(cfg, k) for k in CHECK_KEYS}

    jobs = cfg.n_jobs if cfg.executor == "local" else make_executor(cfg.executor, cfg.n_jobs, cfg.ray_address)
    novelty_ref = reduce_reference(lambda: reference.structures, source_sha256=reference.sha256)
    relaxer, hull, no_energy = (None, None, "supplied") if e_hull is not None else load_energy_models(cfg, reference)
    guard_stage(out_dir, "fingerprints.jsonl", [samples_sha, check_cfg, cfg.coverage_over, cfg.fingerprint_timeout_s,
                                                cfg.orbit_symprec] + ([] if cfg.fingerprint_backend == "plaid"
                                                                      else [cfg.fingerprint_backend]))
    # the fingerprints are computed with the checks (one CrystalNN pass per sample); the coverage stage fills gaps
    fingerprints = dict(path=out_dir / "fingerprints.jsonl", timeout_s=cfg.fingerprint_timeout_s,
                        orbit_symprec=cfg.orbit_symprec, backend=cfg.fingerprint_backend, over=cfg.coverage_over)
    outcomes, checks, info = compute_outcomes(
        samples, out_dir, settings, check_cfg=check_cfg, inputs_sha256=samples_sha, reference=novelty_ref,
        reference_sha256=reference.sha256, relaxer=relaxer, hull=hull, no_energy_reason=no_energy or "",
        e_hull=e_hull, e_hull_source=e_hull_source, relaxed_given=relaxed_given, n_jobs=jobs, dedupe=cfg.dedupe,
        fingerprints=fingerprints,
    )
    cov, fps, ref_fp, distributions = coverage_stage(samples, checks, cfg, out_dir, cov_reference, struct_cut,
                                                     comp_cut, n_jobs=jobs)
    rows = []
    for s, o in zip(samples, outcomes):
        row = {**checks[s.sample_id], **o.to_record(), "sample_id": s.sample_id, "gen_time_s": s.gen_time_s,
               "fp_status": fps[s.sample_id]["fp_status"], "fp_reason": fps[s.sample_id]["fp_reason"]}
        row["crystallm_valid"] = crystallm_valid(row) if cfg.crystallm_checks else None
        rows.append(row)
    ctx = dict(dataset=dataset, dataset_source=dataset_source, struct_cut=struct_cut, comp_cut=comp_cut, cov=cov,
               ref_fp=ref_fp, distributions=distributions, reference=reference, novelty_ref=novelty_ref,
               cov_reference=cov_reference, info=info, started=started, scaler=describe_scaler(cfg.comp_scaler))
    report = build_report(cfg, settings, outcomes, rows, samples, ctx)
    write_outcomes(out_dir, outcomes, settings, {"energies": info["energies"], "samples_sha256": samples_sha,
                                                 "reference_sha256": reference.sha256})
    _write_structures_csv(out_dir / "structures.csv", rows)
    _write_report(out_dir, report)
    if cfg.plots:
        from .plots import write_plots

        report["plots"] = write_plots(out_dir, rows, distributions["ref_summary"], settings.stable_threshold)
        _write_report(out_dir, report)
    return report


def _write_report(out_dir: Path, report: dict) -> None:
    (out_dir / "report.json").write_text(json.dumps(json.loads(dumps(report)), indent=2) + "\n")


STRUCTURE_COLUMNS = [
    "sample_id", "parsed", "error", "formula", "num_sites", "num_elems", "density", "spacegroup", "sg_stated",
    "sg_consistent", "struct_valid", "struct_reason", "min_distance", "comp_valid", "valid",
    "multiplicity_consistent", "bond_length_score", "n_bonds", "bond_reason", "crystallm_valid", "fp_status",
    "fp_reason", "is_unique", "duplicate_of", "is_novel", "matches_reference", "match_error", "relax_status",
    "relax_reason", "energy_per_atom", "relaxed_spacegroup", "e_hull", "e_hull_reason", "is_stable",
    "is_metastable", "sun_class", "sun_novel", "is_sun", "msun_class", "msun_novel", "is_msun", "status", "gen_time_s", "check_error",
]  # fmt: skip


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


__all__ = ["EvaluationConfig", "evaluate", "generation_metadata", "package_versions", "read_structures_csv"]
