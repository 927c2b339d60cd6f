"""Stage 3 of an evaluation: CDVAE fingerprints of the samples and of the coverage reference, then COV-R/COV-P,
AMSD/AMCD and the Wasserstein distances of density and element count.

The composition fingerprints are standardised with CDVAE's fixed MP-20 constants by default
(``comp_scaler="cdvae"``, :mod:`plaid.evaluation.cdvae_scaler`); ``"fit"`` fits mean/std on the coverage reference,
and a path names an ``.npz`` with ``means`` and ``stds``."""

from __future__ import annotations

import math
from pathlib import Path

from .coverage import coverage, wdist_density, wdist_num_elems
from .fingerprints import compute_fingerprints, reference_fingerprints, stack_fingerprints

SCALER_CHOICES = ("cdvae", "fit")


def load_scaler(spec: str | None):
    """(means, stds) for ``spec``, or None for "fit" (fitted on the coverage reference by ``coverage``)."""
    if spec in (None, "fit"):
        return None
    if spec == "cdvae":
        from .cdvae_scaler import cdvae_comp_scaler

        return cdvae_comp_scaler()
    import numpy as np

    data = np.load(spec)
    return np.asarray(data["means"], dtype=float), np.asarray(data["stds"], dtype=float)


def describe_scaler(spec: str | None) -> str:
    if spec == "cdvae":
        return "CDVAE's fixed MP-20 constants (CompScalerMeans/CompScalerStds, cdvae/common/constants.py)"
    if spec in (None, "fit"):
        return "mean/std fitted on the coverage reference"
    return f"means/stds from {spec}"


def coverage_stage(samples, checks: dict, cfg, out_dir: Path, cov_reference, struct_cut: float, comp_cut: float,
                   n_jobs=None):
    """(coverage dict, {sample_id: fingerprint status record}, reference fingerprint info, distributions).
    ``n_jobs``: an int or :class:`plaid.executors.Executor` (default ``cfg.n_jobs``)."""
    n_jobs = cfg.n_jobs if n_jobs is None else n_jobs
    if cfg.coverage_over not in ("parsed", "valid"):
        raise ValueError("coverage_over must be 'parsed' or 'valid'")
    ids = [s.sample_id for s in samples]

    def is_valid(sid):
        c = checks[sid]
        return bool(c.get("struct_valid")) and bool(c.get("comp_valid"))

    fp_structs = [s.structure if (cfg.coverage_over == "parsed" or is_valid(s.sample_id)) else None for s in samples]
    fps = compute_fingerprints(fp_structs, ids, out_dir / "fingerprints.jsonl", timeout_s=cfg.fingerprint_timeout_s,
                               n_jobs=n_jobs, orbit_symprec=cfg.orbit_symprec, dedupe=cfg.dedupe,
                               backend=cfg.fingerprint_backend)
    ref_fp = reference_fingerprints(cov_reference.path, lambda: cov_reference.structures,
                                    timeout_s=cfg.fingerprint_timeout_s, n_jobs=n_jobs,
                                    orbit_symprec=cfg.orbit_symprec, backend=cfg.fingerprint_backend)
    gen_s, gen_c, gen_ok = stack_fingerprints([fps[sid] for sid in ids])
    cov = coverage(gen_s[gen_ok], gen_c[gen_ok], ref_fp["struct_fps"][ref_fp["ok"]], ref_fp["comp_fps"][ref_fp["ok"]],
                   struct_cut, comp_cut, n_generated=len(samples), n_reference=len(ref_fp["ok"]),
                   comp_scaler=load_scaler(cfg.comp_scaler))
    ref_summary = cov_reference.summary(cfg.symprec)
    ref_density = [d for d in ref_summary["density"] if d is not None and math.isfinite(d)]
    ref_nelems = [d for d in ref_summary["num_elems"] if d is not None and math.isfinite(d)]
    gen_density = [checks[sid]["density"] for sid in ids if is_valid(sid)]
    gen_nelems = [checks[sid]["num_elems"] for sid in ids if is_valid(sid)]
    distributions = {
        "wdist_density": wdist_density(gen_density, ref_density),
        "wdist_num_elems": wdist_num_elems(gen_nelems, ref_nelems),
        "ref_summary": ref_summary,
    }
    return cov, fps, ref_fp, distributions
