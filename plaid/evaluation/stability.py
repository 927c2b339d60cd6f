"""Stability and S.U.N. (stable, unique, novel) rates, MatterGen/PLaID style: over ALL samples.

A sample is stable at threshold t when it is valid and its E_hull (eV/atom, from the MLIP-relaxed structure)
is <= t; 0.0 eV/atom is "stable", 0.08/0.1 are the usual metastability thresholds. Samples without an E_hull
(invalid, relaxation failed, no hull entry) count as not stable; the counts of each reason are reported."""

from __future__ import annotations

import math

from .registry import register_metric

STABILITY_THRESHOLDS = (0.0, 0.08, 0.1)


def _finite(x) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


@register_metric("stability")
def stability_rates(
    e_hull: list,
    valid: list[bool],
    is_unique: list,
    is_novel: list,
    thresholds: tuple[float, ...] = STABILITY_THRESHOLDS,
    gen_time_s: list | None = None,
) -> dict:
    """Per threshold: n_stable, stable_rate, n_sun, sun_rate (denominator: all samples), and, when every
    sample carries its generation time, ``time_per_sun_s`` = total generation time / n_sun."""
    n = len(e_hull)
    out: dict = {"n_samples": n, "n_with_e_hull": sum(_finite(e) for e in e_hull), "thresholds": {}}
    total_time = None
    if gen_time_s is not None and n and all(_finite(t) for t in gen_time_s):
        total_time = float(sum(gen_time_s))
    out["total_gen_time_s"] = total_time
    for t in thresholds:
        stable = [bool(v) and _finite(e) and e <= t for e, v in zip(e_hull, valid)]
        sun = [s and bool(u) and bool(nv) for s, u, nv in zip(stable, is_unique, is_novel)]
        n_stable, n_sun = sum(stable), sum(sun)
        out["thresholds"][f"{t:g}"] = {
            "threshold_ev_per_atom": t,
            "n_stable": n_stable,
            "stable_rate": n_stable / n if n else float("nan"),
            "n_sun": n_sun,
            "sun_rate": n_sun / n if n else float("nan"),
            "time_per_sun_s": (total_time / n_sun) if (total_time is not None and n_sun) else None,
        }
    return out


def is_stable(e_hull, valid: bool, threshold: float) -> bool:
    return bool(valid) and _finite(e_hull) and e_hull <= threshold
