"""CrystalNN neighbours for the evaluation: pymatgen's Voronoi facet geometry without numpy's per-call overhead (bit
for bit), and neighbours shared between the checks and the fingerprint of one sample.

CrystalNN's neighbours come from ``VoronoiNN``, which computes a solid angle and a volume for every facet with
``np.cross`` and ``np.dot`` on 3-vectors; at ~90 us per ``np.cross`` call these are a quarter of an evaluation's
time. The functions here do the same IEEE operations in the same order on Python floats (numpy's cross is
``a1*b2 - a2*b1, ...``; ``np.linalg.norm`` is ``sqrt`` of ``np.dot``; ``np.arctan`` is kept), so the results are
identical, not merely close (``tests/test_order_params.py`` compares whole CrystalNN neighbour data with and
without them). How ``np.dot`` sums two 3-vectors depends on numpy's build and the CPU: left to right, or as a chain
of fused multiply-adds (numpy 2.4 with FMA kernels). :func:`dot_form` finds out once, on probe vectors, and the
dot products here follow it; if numpy's sum is neither, :func:`fast_voronoi_geometry` leaves pymatgen's own
functions in place. It swaps them into ``pymatgen.core.local_env`` for the duration of a block.

Inside :func:`shared_crystalnn`, :func:`crystalnn_nn_data` and :func:`memoised` compute each (structure, site) and
each orbit split once, so the bond-length score and the fingerprint of a sample, computed in the same task, do
CrystalNN's work (about two thirds of an evaluation) once instead of twice."""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot_left_to_right(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _libm_fma():
    try:
        from math import fma  # Python >= 3.13

        return fma
    except ImportError:
        import ctypes
        import ctypes.util

        fma = ctypes.CDLL(ctypes.util.find_library("m")).fma  # C99 fma: correctly rounded
        fma.restype, fma.argtypes = ctypes.c_double, [ctypes.c_double] * 3
        return fma


def _dot_fused(a, b) -> float:
    fma = _FMA
    return fma(a[2], b[2], fma(a[1], b[1], a[0] * b[0]))


_FMA = None


@functools.lru_cache(maxsize=1)
def dot_form() -> str | None:
    """How this numpy sums ``np.dot`` of two 3-vectors: ``"left_to_right"``, ``"fused"`` (fma(a2, b2, fma(a1, b1,
    a0 * b0))) or None (neither: the fast geometry is not used), checked on 2,000 probe pairs and their norms."""
    global _FMA
    rng = np.random.default_rng(12345)
    pairs = [(rng.standard_normal(3) * 10.0 ** rng.integers(-3, 3), rng.standard_normal(3)) for _ in range(2000)]
    forms = {"left_to_right": _dot_left_to_right}
    try:
        _FMA = _libm_fma()
        forms["fused"] = _dot_fused
    except (OSError, AttributeError):
        pass
    for name, dot in forms.items():
        if all(
            float(np.dot(a, b)) == dot(a.tolist(), b.tolist())
            and float(np.linalg.norm(a)) == math.sqrt(dot(a.tolist(), a.tolist()))
            for a, b in pairs
        ):
            return name
    return None


_DOT = _dot_left_to_right  # numpy's form (``dot_form``), set by ``fast_voronoi_geometry``


def solid_angle(center, coords):
    """pymatgen.core.local_env.solid_angle, the same operations on Python floats."""
    cx, cy, cz = np.asarray(center, dtype=float).tolist()
    disp = [(x - cx, y - cy, z - cz) for x, y, z in (np.asarray(c, dtype=float).tolist() for c in coords)]
    r_norm = [math.sqrt(_DOT(d, d)) for d in disp]
    angle = 0
    d0, r0 = disp[0], r_norm[0]
    for ii in range(1, len(disp) - 1):
        jj = ii + 1
        tp = abs(_DOT(d0, _cross(disp[ii], disp[jj])))
        de = (r0 * r_norm[ii] * r_norm[jj] + r_norm[jj] * _DOT(d0, disp[ii]) + r_norm[ii] * _DOT(d0, disp[jj])
              + r0 * _DOT(disp[ii], disp[jj]))
        _angle = (0.5 * math.pi if tp > 0 else -0.5 * math.pi) if de == 0 else np.arctan(np.float64(tp) / de)
        angle += (_angle if _angle > 0 else _angle + math.pi) * 2
    return angle


def vol_tetra(vt1, vt2, vt3, vt4):
    """pymatgen.core.local_env.vol_tetra, the same operations on Python floats."""
    a, b, c, d = (np.asarray(v, dtype=float).tolist() for v in (vt1, vt2, vt3, vt4))
    u = (a[0] - d[0], a[1] - d[1], a[2] - d[2])
    v = (b[0] - d[0], b[1] - d[1], b[2] - d[2])
    w = (c[0] - d[0], c[1] - d[1], c[2] - d[2])
    return np.float64(abs(_DOT(u, _cross(v, w)))) / 6


@contextlib.contextmanager
def fast_voronoi_geometry():
    """Within the block, pymatgen's VoronoiNN (and so CrystalNN) uses :func:`solid_angle` and :func:`vol_tetra`."""
    from pymatgen.core import local_env

    global _DOT
    form = dot_form()
    if form is None:  # numpy sums dot products in some other order: pymatgen's own functions, unchanged
        yield
        return
    _DOT = _dot_fused if form == "fused" else _dot_left_to_right
    saved = local_env.solid_angle, local_env.vol_tetra
    local_env.solid_angle, local_env.vol_tetra = solid_angle, vol_tetra
    try:
        yield
    finally:
        local_env.solid_angle, local_env.vol_tetra = saved


_MEMO: dict | None = None


@functools.lru_cache(maxsize=1)
def _default_crystalnn():
    from pymatgen.analysis.local_env import CrystalNN

    return CrystalNN()


@contextlib.contextmanager
def shared_crystalnn():
    """Within the block, :func:`crystalnn_nn_data` computes each (structure, site) once: the bond-length score and
    the fingerprint of one sample then share CrystalNN's neighbours (the same default ``CrystalNN()``, so exact)."""
    global _MEMO
    outer, _MEMO = _MEMO, {} if _MEMO is None else _MEMO
    try:
        yield
    finally:
        _MEMO = outer


def memoised(kind: str, structure, arg, compute):
    """``compute()``, computed once per (kind, structure, arg) inside :func:`shared_crystalnn`."""
    if _MEMO is None:
        return compute()
    key = (kind, id(structure), arg)
    if key in _MEMO and _MEMO[key][0] is structure:
        return _MEMO[key][1]
    value = compute()
    _MEMO[key] = (structure, value)  # the structure is kept alive so that its id is not reused in the block
    return value


def crystalnn_nn_data(structure, idx: int):
    """``CrystalNN().get_nn_data(structure, idx)`` with the fast facet geometry; memoised inside
    :func:`shared_crystalnn`. Callers must not modify the result."""

    def compute():
        with fast_voronoi_geometry():
            return _default_crystalnn().get_nn_data(structure, idx)

    return memoised("crystalnn", structure, idx, compute)


def crystalnn_neighbours(structure, idx: int) -> list[dict]:
    """``CrystalNN().get_nn_info(structure, idx)`` (unweighted: the neighbours of the most probable coordination
    number), from :func:`crystalnn_nn_data`; the entries' ``weight`` is left as CrystalNN set it, not overwritten."""
    nn_data = crystalnn_nn_data(structure, idx)
    best = max(nn_data.cn_weights, key=lambda k: nn_data.cn_weights[k])
    return nn_data.cn_nninfo[best]
