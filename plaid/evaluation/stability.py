"""Stability rates over ALL samples (MatterGen/PLaID): the fraction of samples with E_hull <= t for several t.

Stable and metastable have one definition each, in :mod:`plaid.evaluation.outcome` (:func:`is_stable`: E_hull <= t;
:func:`is_metastable`: E_hull < t); S.U.N. is a set-level count (stable classes of relaxed structures), computed in
:mod:`plaid.evaluation.compute`, never per sample from per-sample uniqueness. Samples without an E_hull (invalid,
relaxation failed, no hull entry) count as not stable."""

from __future__ import annotations

from .outcome import finite, is_stable
from .registry import register_metric

STABILITY_THRESHOLDS = (0.0, 0.08, 0.1)


@register_metric("stability")
def stability_rates(e_hull: list, valid: list[bool], thresholds: tuple[float, ...] = STABILITY_THRESHOLDS) -> dict:
    """Per threshold t: n_stable (valid and E_hull <= t) and stable_rate over all samples."""
    n = len(e_hull)
    out: dict = {"n_samples": n, "n_with_e_hull": sum(finite(e) for e in e_hull), "thresholds": {}}
    for t in thresholds:
        k = sum(bool(v) and is_stable(e, t) for e, v in zip(e_hull, valid))
        out["thresholds"][f"{t:g}"] = {"threshold_ev_per_atom": t, "n_stable": k,
                                       "stable_rate": k / n if n else float("nan")}
    return out
