"""Atoms in the cell: decoding one orbit line as the decoder does, interatomic distances, and concrete placements
of the atoms still to come (the witnesses that make the distance rule free of dead ends).

- ``spread_placement``: before the lattice is known, one placement of the whole formula in the group with the
  fewest orbits, its free parameters chosen to keep points far apart in fractional coordinates; its separation
  ``delta`` (nearest-image distance in a reference cell) gives the lattice rule (``cell``: minimum lengths), so that
  it stays valid in every lattice the grammar then allows (``cell``).
- ``find_placement``: given a lattice and the atoms placed so far, a first-fit search (bounded) for orbits that
  fill the remaining counts with every new atom at least ``min_distance`` from all others (periodic images
  included, as pymatgen's ``Lattice.get_all_distances`` measures them, like CDVAE's validity check).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from ...representations.base import wrap_frac
from .base import BIG
from .sites import Option, SiteCounter, group_slots, take_fixed, wyckoff_position

EMPTY = np.zeros((0, 3))
EMPTY.flags.writeable = False


def _halton(n: int, dim: int) -> np.ndarray:
    primes = (2, 3, 5)
    out = np.zeros((n, dim))
    for d in range(dim):
        b = primes[d]
        for i in range(n):
            f, r, k = 1.0, 0.0, i + 1
            while k:
                f /= b
                r += f * (k % b)
                k //= b
            out[i, d] = r
    return out


CANDIDATES = np.round(0.07 + 0.86 * _halton(512, 3), 3)  # free parameters tried, away from 0 and 1
CANDIDATES.flags.writeable = False


@dataclass(frozen=True, eq=False)
class Orbit:
    """One orbit line: element index (in the formula), Wyckoff position, written coordinates, decoded points."""

    element: int
    option: Option
    written: tuple[str, str, str]
    points: np.ndarray  # (mult, 3) fractional, read-only

    def values(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.written)


def frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=float)
    a.flags.writeable = False
    return a


def write(values, decimals: int) -> tuple[str, str, str]:
    return tuple(f"{v:.{decimals}f}" for v in wrap_frac(values, decimals))


def decode_points(sg: int, letter: str, xyz, matrix: np.ndarray) -> np.ndarray:
    """The decoder's orbit for a written representative: project onto the position, expand with its operations."""
    wp = wyckoff_position(sg, letter)
    if wp.dof == 0:  # a fixed position: the decoder's projection ignores the coordinates
        return _fixed_points(sg, letter)
    q, _ = wp.project(np.asarray(xyz, dtype=float), matrix)
    return frozen(wp.orbit(q))


@cache
def _fixed_points(sg: int, letter: str) -> np.ndarray:
    wp = wyckoff_position(sg, letter)
    q, _ = wp.project(np.zeros(3))
    return frozen(wp.orbit(q))


@cache
def _reference_points(sg: int, letter: str, written: tuple[str, str, str]) -> np.ndarray:
    lattice_type = group_slots(sg).lattice_type
    return decode_points(sg, letter, [float(v) for v in written], reference_matrix(lattice_type))


@cache
def reference_matrix(lattice_type: str) -> np.ndarray:
    """A unit cell of the crystal system, for decoding before the lattice is known (the decoded fractional points
    of an exactly written representative do not depend on the lattice's size)."""
    from pymatgen.core import Lattice

    angles = {"hexagonal": (90, 90, 120), "trigonal": (90, 90, 120)}.get(lattice_type, (90, 90, 90))
    return Lattice.from_parameters(1, 1, 1, *angles).matrix


def frac_separation(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Smallest nearest-image distance in fractional coordinates between rows of a and b (within a if b is
    None, the diagonal excluded)."""
    other = a if b is None else b
    if len(a) == 0 or len(other) == 0:
        return np.inf
    d = a[:, None, :] - other[None, :, :]
    d -= np.round(d)
    n = np.sqrt((d * d).sum(-1))
    if b is None:
        np.fill_diagonal(n, np.inf)
    return float(n.min())


def representatives(sg: int, option: Option) -> np.ndarray:
    """Candidate representatives of a position: the fixed point, or the first operation's images of
    ``CANDIDATES``."""
    wp = wyckoff_position(sg, option.letter)
    op = wp.ops[0]
    if option.fixed:
        return op[None, :, 3]
    return CANDIDATES[:32] @ op[:, :3].T + op[:, 3]


_IMAGES = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)


class Geometry:
    """Distances in one lattice (the decoder's, after its crystal-system snapping), measured as pymatgen's
    ``Lattice.get_all_distances`` does (nearest of 27 images in the LLL-reduced basis), with the reduction done
    once per lattice; in an orthogonal cell, where that nearest image is the wrapped difference itself, directly
    (the same distances to ~1e-15 A, ``tests/test_grammar_shortcuts.py``)."""

    def __init__(self, lattice, min_distance: float):
        self.lattice = lattice
        self.matrix = lattice.matrix
        self.d = min_distance
        self._to_lll = lattice.lll_inverse
        self._images = _IMAGES @ lattice.lll_matrix  # (27, 3) Cartesian image shifts
        # with orthogonal axes the nearest of the 27 images is the nearest periodic image, so these distances move
        # by at most |v| when a point moves by v: the bound ``WyckoffGrammar._slide`` relies on
        gram = self.matrix @ self.matrix.T
        self.orthogonal = bool(np.abs(gram - np.diag(np.diag(gram))).max() <= 1e-9 * np.diag(gram).max())
        self._speed: dict = {}

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(self.squared_distances(a, b))

    def squared_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Squares of ``distances``: the square root is monotone and correctly rounded, so the square root of a
        minimum taken here is the minimum of ``distances``, bit for bit."""
        if self.orthogonal:  # the nearest image is the wrapped difference itself (the same numbers, fewer steps)
            d = a[:, None, :] - b[None, :, :]
            d -= np.round(d)
            cart = d @ self.matrix
            return (cart * cart).sum(-1)
        fa, fb = a @ self._to_lll, b @ self._to_lll
        d = fa[:, None, :] - fb[None, :, :]
        d -= np.round(d)
        cart = d @ self.lattice.lll_matrix  # (m, n, 3)
        v = cart[:, :, None, :] + self._images[None, None]
        return (v * v).sum(-1).min(-1)

    def speed(self, sg: int, letter: str, k: int) -> float | None:
        """How far (Angstrom) an atom of the orbit of position ``letter`` moves at most per unit change of its
        written coordinate ``k``, where that is known: when the coordinate is one free parameter that no other
        coordinate uses (the decoder reads it exactly), and 0 when the position fixes it (the decoder's projection
        discards it; in an orthogonal cell the choice of periodic image does not depend on it). None otherwise."""
        key = (sg, letter, k)
        if key not in self._speed:
            self._speed[key] = None
            ops = wyckoff_position(sg, letter).ops
            j = independent_parameter(sg, letter, k)
            if j is not None:
                self._speed[key] = float(np.linalg.norm(ops[:, :, j] @ self.matrix, axis=1).max())
            elif self.orthogonal and not np.abs(ops[0][k, :3]).any():
                self._speed[key] = 0.0
        return self._speed[key]

    def separations(self, points: np.ndarray, *groups: np.ndarray) -> tuple[float, ...]:
        """(smallest distance between two different points of ``points``, then the smallest distance from
        ``points`` to each group; inf where there is nothing), with one distance computation."""
        m = len(points)
        sizes = [len(g) for g in groups]
        if m == 0:
            return (np.inf,) * (1 + len(groups))
        sq = self.squared_distances(points, np.concatenate([points, *groups]) if groups else points)
        if m > 1:
            np.fill_diagonal(sq[:, :m], np.inf)
        col = sq.min(axis=0)
        starts, at = [0], m  # one minimum per non-empty segment (own points first), then the square roots
        for n in sizes:
            if n:
                starts.append(at)
            at += n
        mins = iter(np.sqrt(np.minimum.reduceat(col, starts)).tolist())
        own = next(mins)
        return (own if m > 1 else np.inf, *(next(mins) if n else np.inf for n in sizes))

    def clear(self, points: np.ndarray, *others: np.ndarray) -> bool:
        """Points at least ``d`` from each other and from every point of ``others`` (periodic images included)."""
        return min(self.separations(points, *others)) >= self.d


@cache
def independent_parameter(sg: int, letter: str, k: int) -> int | None:
    """The free parameter j with coordinate k = q_j + t_k of the position's first operation when no other
    coordinate depends on q_j and coordinate k on nothing else (None otherwise): the decoder's projection then
    returns q_j = x_k exactly, whatever the other written coordinates are."""
    wp = wyckoff_position(sg, letter)
    w = wp.ops[0][:, :3]
    row = w[k]
    nonzero = np.flatnonzero(np.abs(row) > 1e-12)
    if wp.dof == 0 or len(nonzero) != 1:
        return None
    j = int(nonzero[0])
    if abs(row[j] - 1.0) > 1e-12 or np.abs(np.delete(w[:, j], k)).max(initial=0.0) > 1e-12:
        return None
    return j


@cache
def ignored_coordinate(sg: int, letter: str, k: int) -> bool:
    """Whether the decoder's projection onto the position never reads written coordinate ``k``: the first
    operation fixes it (row k of its linear part is zero) and the pseudo-inverse that gives the free parameters
    has an exactly zero column k. Writing another value there then decodes to the same atoms."""
    wp = wyckoff_position(sg, letter)
    return not np.any(wp.ops[0][k, :3]) and not np.any(wp.pinv0[:, k])


def orbit_atoms(orbits) -> np.ndarray:
    return np.concatenate([o.points for o in orbits]) if orbits else EMPTY


def _ref_distance(d: np.ndarray, shape, hexagonal: bool) -> np.ndarray:
    """Nearest-image distances of fractional differences ``d`` (..., 3) in a reference cell of lengths ``shape``
    (orthogonal axes, or hexagonal axes with gamma = 120)."""
    scale = np.asarray(shape, dtype=float)
    d = d - np.round(d)
    if not hexagonal:
        return np.sqrt(((d * scale) ** 2).sum(-1))
    best = None
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            x, y, z = d[..., 0] + i, d[..., 1] + j, d[..., 2]
            r2 = scale[0] ** 2 * (x * x + y * y - x * y) + (scale[2] * z) ** 2
            best = r2 if best is None else np.minimum(best, r2)
    return np.sqrt(best)


def _own_separation(cands: np.ndarray, shape, hexagonal: bool) -> np.ndarray:
    """Per candidate orbit (K, m, 3): the smallest distance between its own points."""
    k, m, _ = cands.shape
    if m == 1:
        return np.full(k, np.inf)
    dm = _ref_distance(cands[:, :, None, :] - cands[:, None, :, :], shape, hexagonal)
    dm[:, np.arange(m), np.arange(m)] = np.inf
    return dm.min(axis=(1, 2))


def _cross_separation(cands: np.ndarray, other: np.ndarray, shape, hexagonal: bool) -> np.ndarray:
    """Per candidate orbit: the smallest distance to the points ``other`` (n, 3)."""
    if len(other) == 0:
        return np.full(len(cands), np.inf)
    return _ref_distance(cands[:, :, None, :] - other[None, None, :, :], shape, hexagonal).min(axis=(1, 2))


def spread_placement(
    counter: SiteCounter, sg: int, counts: tuple[int, ...], decimals: int, shape=(1.0, 1.0, 1.0)
) -> tuple[tuple[Orbit, ...], float] | None:
    """A placement of ``counts`` in ``sg`` with the fewest orbits, spread out (see module docstring), and its
    separation: the smallest distance between its atoms in a reference cell of lengths ``shape`` (the crystal
    system's angles; for monoclinic and triclinic groups a unit cube, i.e. fractional coordinates). None if no
    candidate keeps the orbits apart.

    Candidates are written exactly on their positions (3-decimal free parameters), so the decoder's projection
    returns them unchanged and their orbits are computed directly."""
    slots = group_slots(sg)
    hexagonal = slots.lattice_type in ("hexagonal", "trigonal")
    rem, avail, used = tuple(counts), slots.fixed_counts, frozenset()
    total = counter.min_orbits(sg, rem, avail)
    if total >= BIG:
        return None
    orbits: list[Orbit] = []
    placed = EMPTY
    delta = np.inf
    cache: dict = {}  # letter -> (candidate orbits, their own separation, separation to the atoms placed so far)
    while any(rem):
        i = max(range(len(rem)), key=lambda k: rem[k])
        best = None
        for o in counter.options(sg, rem, i, used, avail):
            if o.after != total - 1:
                continue
            wp = wyckoff_position(sg, o.letter)
            if o.letter not in cache:
                q = np.zeros((1, 3)) if o.fixed else CANDIDATES[: 512 if o.mult <= 2 else 64 if o.mult <= 12 else 8]
                pts = np.einsum("kij,qj->qki", wp.ops[:, :, :3], q) + wp.ops[None, :, :, 3]
                pts = np.mod(np.round(np.mod(pts, 1.0), 8), 1.0)
                own = _own_separation(pts, shape, hexagonal)
                cache[o.letter] = [q, pts, own, _cross_separation(pts, placed, shape, hexagonal)]
            q, pts, own, cross = cache[o.letter]
            seps = np.minimum(own, cross)
            j = int(np.argmax(seps))
            if best is None or seps[j] > best[0]:
                written = write(wp.ops[0][:, :3] @ q[j] + wp.ops[0][:, 3], decimals)
                best = (float(seps[j]), Orbit(i, o, written, frozen(pts[j])))
        if best is None or best[0] < 1e-3 * min(shape):
            return None
        sep, orbit = best
        o = orbit.option
        delta = min(delta, sep)
        orbits.append(orbit)
        placed = frozen(np.concatenate([placed, orbit.points]))
        for entry in cache.values():  # only the new orbit changes the separations to what is placed
            entry[3] = np.minimum(entry[3], _cross_separation(entry[1], orbit.points, shape, hexagonal))
        rem = rem[:i] + (rem[i] - o.mult,) + rem[i + 1 :]
        if o.fixed:
            used, avail = used | {o.letter}, take_fixed(slots, avail, o.mult)
        total -= 1
    return tuple(orbits), float(delta)


def find_placement(
    counter: SiteCounter,
    sg: int,
    rem: tuple[int, ...],
    used: frozenset,
    avail: tuple[int, ...],
    geom: Geometry,
    occupied: np.ndarray,
    decimals: int,
    budget: int = 96,
) -> tuple[Orbit, ...] | None:
    """Orbits filling ``rem`` exactly, every atom ``geom.d`` from the others and from ``occupied``; first fit,
    depth first, at most ``budget`` candidate orbits tried (None when none found within it)."""
    slots = group_slots(sg)
    left = [budget]

    def rec(rem, used, avail, occ):
        if not any(rem):
            return ()
        i = max(range(len(rem)), key=lambda k: rem[k])
        for o in counter.options(sg, rem, i, used, avail):
            for rep in representatives(sg, o):
                if left[0] <= 0:
                    return None
                left[0] -= 1
                written = write(rep, decimals)
                pts = decode_points(sg, o.letter, [float(v) for v in written], geom.matrix)
                if not geom.clear(pts, occ):
                    continue
                nrem = rem[:i] + (rem[i] - o.mult,) + rem[i + 1 :]
                nused, navail = (used | {o.letter}, take_fixed(slots, avail, o.mult)) if o.fixed else (used, avail)
                rest = rec(nrem, nused, navail, np.concatenate([occ, pts]))
                if rest is not None:
                    return (Orbit(i, o, written, pts), *rest)
        return None

    return rec(tuple(rem), used, avail, occupied)
