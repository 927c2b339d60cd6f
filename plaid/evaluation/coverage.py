"""CDVAE's distribution metrics: coverage (COV-R/COV-P), AMSD/AMCD and Wasserstein distances.

COV-R: fraction of reference structures within ``struct_cutoff`` (CrystalNN fingerprint distance) AND
``comp_cutoff`` (standardized Magpie distance) of some generated structure. COV-P: number of generated
structures within both cutoffs of some reference structure, divided by ``n_generated`` (all samples, as in
CDVAE, so samples without a fingerprint count as misses). Magpie features are standardized with the
reference set's mean and std (std 0 -> 1) and NaN -> 0 after scaling (CDVAE's ``replace_nan_token=0``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from .registry import register_metric

COVERAGE_CUTOFFS = {  # CDVAE's COV_Cutoffs
    "mp_20": {"struct": 0.4, "comp": 10.0},
    "carbon_24": {"struct": 0.2, "comp": 4.0},
    "perov_5": {"struct": 0.2, "comp": 4.0},
}


def fit_comp_scaler(comp_fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) over rows, ignoring NaN; NaN mean -> 0, NaN or zero std -> 1."""
    comp_fps = np.asarray(comp_fps, dtype=float)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(comp_fps, axis=0)
            stds = np.nanstd(comp_fps, axis=0)
    means = np.where(np.isnan(means), 0.0, means)
    stds = np.where(np.isnan(stds) | (stds == 0), 1.0, stds)
    return means, stds


def scale_comp(comp_fps: np.ndarray, scaler: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    scaled = (np.asarray(comp_fps, dtype=float) - scaler[0]) / scaler[1]
    return np.where(np.isnan(scaled), 0.0, scaled)


@register_metric("coverage")
def coverage(
    gen_struct_fps: np.ndarray,
    gen_comp_fps: np.ndarray,
    ref_struct_fps: np.ndarray,
    ref_comp_fps: np.ndarray,
    struct_cutoff: float,
    comp_cutoff: float,
    n_generated: int | None = None,
    n_reference: int | None = None,
    comp_scaler: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """CDVAE ``compute_cov``. Rows are structures WITH fingerprints; ``n_generated``/``n_reference`` are the
    denominators including those without (default: the row counts)."""
    gen_s, gen_c = np.asarray(gen_struct_fps, float), np.asarray(gen_comp_fps, float)
    ref_s, ref_c = np.asarray(ref_struct_fps, float), np.asarray(ref_comp_fps, float)
    n_generated = len(gen_s) if n_generated is None else n_generated
    n_reference = len(ref_s) if n_reference is None else n_reference
    out = {
        "struct_cutoff": struct_cutoff,
        "comp_cutoff": comp_cutoff,
        "n_generated": n_generated,
        "n_reference": n_reference,
        "n_generated_with_fp": len(gen_s),
        "n_reference_with_fp": len(ref_s),
    }
    if len(gen_s) == 0 or len(ref_s) == 0:
        nan = float("nan")
        return {
            **out,
            "cov_recall": 0.0 if n_reference else nan,
            "cov_precision": 0.0 if n_generated else nan,
            "amsd_recall": nan,
            "amsd_precision": nan,
            "amcd_recall": nan,
            "amcd_precision": nan,
            "n_reference_covered": 0,
            "n_generated_precise": 0,
        }
    scaler = comp_scaler if comp_scaler is not None else fit_comp_scaler(ref_c)
    gen_c, ref_c = scale_comp(gen_c, scaler), scale_comp(ref_c, scaler)
    struct_d = cdist(gen_s, ref_s)
    comp_d = cdist(gen_c, ref_c)
    s_recall, s_precision = struct_d.min(axis=0), struct_d.min(axis=1)
    c_recall, c_precision = comp_d.min(axis=0), comp_d.min(axis=1)
    covered = int(np.sum((s_recall <= struct_cutoff) & (c_recall <= comp_cutoff)))
    precise = int(np.sum((s_precision <= struct_cutoff) & (c_precision <= comp_cutoff)))
    return {
        **out,
        "cov_recall": covered / n_reference,
        "cov_precision": precise / n_generated,
        "n_reference_covered": covered,
        "n_generated_precise": precise,
        "amsd_recall": float(np.mean(s_recall)),
        "amsd_precision": float(np.mean(s_precision)),
        "amcd_recall": float(np.mean(c_recall)),
        "amcd_precision": float(np.mean(c_precision)),
    }


@register_metric("wdist_density")
def wdist_density(gen_densities, ref_densities) -> float:
    """1-D Wasserstein distance between density (g/cm^3) distributions (CDVAE: valid samples vs reference)."""
    gen, ref = np.asarray(gen_densities, float), np.asarray(ref_densities, float)
    return float(wasserstein_distance(gen, ref)) if len(gen) and len(ref) else float("nan")


@register_metric("wdist_num_elems")
def wdist_num_elems(gen_num_elems, ref_num_elems) -> float:
    """1-D Wasserstein distance between numbers of distinct elements per structure."""
    gen, ref = np.asarray(gen_num_elems, float), np.asarray(ref_num_elems, float)
    return float(wasserstein_distance(gen, ref)) if len(gen) and len(ref) else float("nan")
