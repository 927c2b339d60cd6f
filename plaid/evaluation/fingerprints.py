"""CDVAE's fingerprints: CrystalNN "ops" site fingerprints averaged over sites (structure) and Magpie element
property statistics (composition), with a per-structure time limit and an on-disk cache for reference sets.

The structure fingerprint is a mean over sites, and symmetry-equivalent sites have the same CrystalNN fingerprint,
so with ``orbit_symprec`` set it is computed on one site per orbit (spglib's ``equivalent_atoms`` at that
tolerance) weighted by the orbit's size (:func:`site_orbits`). For an exactly symmetric structure this is the
per-site mean up to rounding; for a nearly symmetric one the sites of an orbit differ by at most the distortion
spglib tolerated, which is why the tolerance is tight (``ORBIT_SYMPREC``, 1e-5 A) and not the evaluation's 0.1.
``orbit_symprec=None`` computes every site.

``backend="plaid"`` (the default) computes the Peters-style order parameters of the site fingerprint with
:mod:`plaid.evaluation.order_params` (vectorised, equal to matminer's to ~1e-15) and CrystalNN's Voronoi facets
with :mod:`plaid.evaluation.crystalnn` (bit-identical); ``backend="matminer"`` calls matminer's ``featurize``
per site, CDVAE's way. Both find the same CrystalNN neighbours."""

from __future__ import annotations

import functools
import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure

from plaid.io import JsonlWriter
from plaid.paths import cache_dir

from .registry import register_metric
from .stages import StageTimeout, run_stage, time_limit

log = logging.getLogger(__name__)
FINGERPRINT_VERSION = "crystalnn-ops-mean+magpie-v1"
DEFAULT_TIMEOUT_S = 60.0
ORBIT_SYMPREC = 1e-5  # Angstrom (spglib); tests/test_fingerprint_orbits.py bounds the difference it makes
FINGERPRINT_BACKENDS = ("plaid", "matminer")


def site_orbits(structure: Structure, symprec: float | None = ORBIT_SYMPREC) -> list[tuple[int, int]]:
    """``[(representative site index, orbit size)]`` covering every site once: spglib's equivalent atoms at
    ``symprec``; one orbit per site when ``symprec`` is None or spglib finds no symmetry."""
    n = len(structure)
    if symprec is None or n < 2:
        return [(i, 1) for i in range(n)]
    from .crystalnn import memoised

    return memoised("orbits", structure, symprec, lambda: _site_orbits(structure, symprec))


def _site_orbits(structure: Structure, symprec: float) -> list[tuple[int, int]]:
    n = len(structure)
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        equivalent = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset().equivalent_atoms
    except Exception:  # noqa: BLE001 - no symmetry found: every site is its own orbit (exact, just slower)
        return [(i, 1) for i in range(n)]
    reps, counts = np.unique(np.asarray(equivalent, dtype=int), return_counts=True)
    if len(equivalent) != n or counts.sum() != n:
        return [(i, 1) for i in range(n)]
    return [(int(r), int(c)) for r, c in zip(reps, counts)]


@functools.lru_cache(maxsize=1)
def _site_featurizer():
    from matminer.featurizers.site import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@functools.lru_cache(maxsize=1)
def _composition_featurizer():
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie")


def _site_fingerprints(structure: Structure, indices, backend: str) -> np.ndarray:
    featurizer = _site_featurizer()
    if backend == "matminer":
        return np.asarray([featurizer.featurize(structure, i) for i in indices], dtype=float)
    if backend != "plaid":
        raise ValueError(f"unknown fingerprint backend {backend!r}; choose from {', '.join(FINGERPRINT_BACKENDS)}")
    from .crystalnn import crystalnn_nn_data
    from .order_params import crystalnn_site_fingerprint

    return np.asarray([crystalnn_site_fingerprint(featurizer, structure, i, crystalnn_nn_data(structure, i))
                       for i in indices], dtype=float)


@register_metric("structure_fingerprint")
def structure_fingerprint(structure: Structure, orbit_symprec: float | None = None, backend: str = "plaid") -> np.ndarray:
    """Mean over sites of matminer's CrystalNNFingerprint("ops") (61 values); with ``orbit_symprec``, one site
    per orbit of equivalent sites weighted by its size; ``backend``: who computes the order parameters (module
    docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if orbit_symprec is None:
            return _site_fingerprints(structure, range(len(structure)), backend).mean(axis=0)
        orbits = site_orbits(structure, orbit_symprec)
        rows = _site_fingerprints(structure, [i for i, _ in orbits], backend)
    weights = np.asarray([m for _, m in orbits], dtype=float)
    return weights @ rows / weights.sum()


@register_metric("composition_fingerprint")
def composition_fingerprint(composition: Composition) -> np.ndarray:
    """matminer's ElementProperty("magpie") features (132 values; NaN where Magpie has no data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(_composition_featurizer().featurize(Composition(composition)), dtype=float)


def fingerprint_record(structure: Structure | None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                       orbit_symprec: float | None = None, backend: str = "plaid") -> dict:
    """``{"fp_status": ok|timeout|error|skipped, "fp_reason", "struct_fp", "comp_fp"}`` for one structure."""
    if structure is None:
        return {"fp_status": "skipped", "fp_reason": "no structure", "struct_fp": None, "comp_fp": None}
    try:
        with time_limit(timeout_s):
            comp_fp = composition_fingerprint(structure.composition)
            struct_fp = structure_fingerprint(structure, orbit_symprec=orbit_symprec, backend=backend)
    except StageTimeout as exc:
        return {"fp_status": "timeout", "fp_reason": str(exc), "struct_fp": None, "comp_fp": None}
    except Exception as exc:  # noqa: BLE001 - recorded per structure, never fatal
        return {
            "fp_status": "error",
            "fp_reason": f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no message): "
            f"{exc!r} in {type(exc).__module__}",
            "struct_fp": None,
            "comp_fp": None,
        }
    return {
        "fp_status": "ok",
        "fp_reason": None,
        "struct_fp": struct_fp.tolist(),
        "comp_fp": comp_fp.tolist(),
    }


def _fingerprint_payload(payload) -> dict:
    structure, timeout_s, orbit_symprec, backend = payload
    return fingerprint_record(structure, timeout_s, orbit_symprec, backend)


def structure_key(structure: Structure | None) -> str | None:
    """A digest that is equal only for structures with identical lattice, species and coordinates (bit for bit),
    so computing one of them stands for all; None for no structure."""
    if structure is None:
        return None
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=float).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=float).tobytes())
    h.update("|".join(str(site.species) for site in structure).encode())
    return h.hexdigest()


def _fingerprint_key(payload):
    return structure_key(payload[0])


def compute_fingerprints(
    structures: list[Structure | None],
    ids: list,
    out_path: str | Path,
    key: str = "sample_id",
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    n_jobs=1,
    desc: str = "fingerprints",
    orbit_symprec: float | None = None,
    dedupe: bool = True,
    backend: str = "plaid",
) -> dict:
    """Fingerprint every structure, appending records to ``out_path`` (resumable); returns records by id.

    ``dedupe``: bit-identical structures (:func:`structure_key`) are fingerprinted once and the record is written
    for each of their ids."""
    items = [(i, (s, timeout_s, orbit_symprec, backend)) for i, s in zip(ids, structures)]
    with JsonlWriter(out_path, key=key) as writer:
        return run_stage(_fingerprint_payload, items, writer, n_jobs, desc,
                         dedupe_key=_fingerprint_key if dedupe else None)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reference_fingerprints(
    path: str | Path,
    structures,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    n_jobs=1,
    cache: Path | None = None,
    orbit_symprec: float | None = None,
    backend: str = "plaid",
) -> dict:
    """Fingerprints of a reference file's structures (a list, or a callable returning one, called only when
    the cache misses), cached in ``cache_dir()/evaluation`` under the file's sha256 and the settings that change
    them (orbit tolerance, time limit, backend): ``{"struct_fps": (n, 61), "comp_fps": (n, 132), "ok": (n,) bool, "cache_hit": bool, "file": ...}``.
    Partial progress is kept in a JSONL next to the cache so an interrupted run resumes."""
    sha = file_sha256(path)
    root = (cache or cache_dir()) / "evaluation"
    root.mkdir(parents=True, exist_ok=True)
    stem = f"fp-{FINGERPRINT_VERSION}-{sha[:24]}-orbits{orbit_symprec}-timeout{timeout_s}-{backend}"
    final = root / f"{stem}.npz"
    if final.exists():
        data = np.load(final)
        return {
            "struct_fps": data["struct_fps"],
            "comp_fps": data["comp_fps"],
            "ok": data["ok"],
            "cache_hit": True,
            "cache_file": str(final),
            "sha256": sha,
        }
    if callable(structures):
        structures = structures()
    records = compute_fingerprints(
        structures,
        list(range(len(structures))),
        root / f"{stem}.partial.jsonl",
        key="index",
        timeout_s=timeout_s,
        n_jobs=n_jobs,
        desc="reference fingerprints",
        orbit_symprec=orbit_symprec,
        backend=backend,
    )
    struct_fps, comp_fps, ok = _stack([records[i] for i in range(len(structures))])
    tmp = root / f"{stem}.tmp.npz"
    np.savez(tmp, struct_fps=struct_fps, comp_fps=comp_fps, ok=ok)
    tmp.replace(final)
    (root / f"{stem}.partial.jsonl").unlink(missing_ok=True)
    return {
        "struct_fps": struct_fps,
        "comp_fps": comp_fps,
        "ok": ok,
        "cache_hit": False,
        "cache_file": str(final),
        "sha256": sha,
    }


def _stack(records: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = np.array([r["fp_status"] == "ok" for r in records], dtype=bool)
    s_dim = next((len(r["struct_fp"]) for r in records if r["struct_fp"] is not None), 61)
    c_dim = next((len(r["comp_fp"]) for r in records if r["comp_fp"] is not None), 132)
    struct_fps = np.full((len(records), s_dim), np.nan)
    comp_fps = np.full((len(records), c_dim), np.nan)
    for i, r in enumerate(records):
        if r["fp_status"] == "ok":
            struct_fps[i] = np.asarray(r["struct_fp"], dtype=float)
            comp_fps[i] = np.asarray([np.nan if v is None else v for v in r["comp_fp"]], dtype=float)
    return struct_fps, comp_fps, ok


stack_fingerprints = _stack
