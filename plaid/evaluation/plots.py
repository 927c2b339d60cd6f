"""PNG plots of an evaluation (matplotlib, Agg backend): space groups, E_hull, density, element counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _finite(values) -> np.ndarray:
    out = [float(v) for v in values if v is not None and isinstance(v, int | float) and math.isfinite(v)]
    return np.asarray(out, dtype=float)


def write_plots(out_dir: Path, rows: list[dict], reference: dict, stable_threshold: float = 0.0) -> list[str]:
    """Write the four plots into ``out_dir``; return their file names. Generated = valid samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = [r for r in rows if r.get("valid")]
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append(name)

    # space-group histogram, generated vs reference (fractions, so sizes compare)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    bins = np.arange(0.5, 231.5, 1.0)
    gen_sg = _finite(r.get("spacegroup") for r in valid)
    ref_sg = _finite(reference.get("spacegroup", []))
    for data, label, alpha in (
        (ref_sg, f"reference (n={len(ref_sg)})", 0.5),
        (gen_sg, f"generated valid (n={len(gen_sg)})", 0.6),
    ):
        if len(data):
            ax.hist(data, bins=bins, weights=np.full(len(data), 1 / len(data)), alpha=alpha, label=label)
    ax.set(xlabel="space group number (spglib)", ylabel="fraction", xlim=(0, 231))
    ax.legend()
    save(fig, "spacegroups.png")

    # E_hull histogram
    fig, ax = plt.subplots(figsize=(5, 3.5))
    e_hull = _finite(r.get("e_hull") for r in rows)
    if len(e_hull):
        ax.hist(np.clip(e_hull, None, 1.0), bins=40, color="tab:green")
        ax.axvline(
            stable_threshold, color="k", ls="--", lw=1, label=f"stable <= {stable_threshold:g} eV/atom"
        )
        ax.legend()
    else:
        ax.text(0.5, 0.5, "E_hull not computed", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="E_hull (eV/atom, clipped at 1)", ylabel="samples", title=f"n={len(e_hull)}")
    save(fig, "e_hull.png")

    # density distribution
    fig, ax = plt.subplots(figsize=(5, 3.5))
    gen_d, ref_d = _finite(r.get("density") for r in valid), _finite(reference.get("density", []))
    both = np.concatenate([gen_d, ref_d]) if len(gen_d) + len(ref_d) else np.array([0.0, 1.0])
    edges = np.linspace(both.min(), both.max() + 1e-9, 40)
    for data, label in ((ref_d, "reference"), (gen_d, "generated valid")):
        if len(data):
            ax.hist(data, bins=edges, density=True, alpha=0.5, label=f"{label} (n={len(data)})")
    ax.set(xlabel="density (g/cm$^3$)", ylabel="probability density")
    ax.legend()
    save(fig, "density.png")

    # number of elements
    fig, ax = plt.subplots(figsize=(5, 3.5))
    gen_n, ref_n = _finite(r.get("num_elems") for r in valid), _finite(reference.get("num_elems", []))
    top = int(max([*gen_n, *ref_n, 1]))
    ks = np.arange(1, top + 1)
    width = 0.4
    for offset, data, label in ((-width / 2, ref_n, "reference"), (width / 2, gen_n, "generated valid")):
        if len(data):
            ax.bar(
                ks + offset, [np.mean(data == k) for k in ks], width=width, label=f"{label} (n={len(data)})"
            )
    ax.set(xlabel="number of elements", ylabel="fraction", xticks=ks)
    ax.legend()
    save(fig, "num_elements.png")
    return written


def write_csp_curve(path: Path, curve: list[dict], title: str = "") -> str:
    """Match rate (%) and mean RMSE against the number of candidates k (a CSP report's ``curve``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [row["n"] for row in curve]
    fig, left = plt.subplots(figsize=(5.5, 3.5))
    left.plot(k, [100 * row["match_rate"] for row in curve], "o-", color="tab:blue")
    left.set_xlabel("candidates per target (n)")
    left.set_ylabel("match rate (%)", color="tab:blue")
    right = left.twinx()
    right.plot(k, [row["mean_rmse"] for row in curve], "s--", color="tab:red", markersize=3)
    right.set_ylabel("mean RMSE of matched targets", color="tab:red")
    if title:
        left.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path).name
