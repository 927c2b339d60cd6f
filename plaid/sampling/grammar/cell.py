"""Lattice and cell geometry: which lattice parameters the grammar lets through, one number at a time.

Every parameter is read against an interval computed from the parameters before it, so the digit automaton
(``numbers``) can tell exactly which digits keep a completion possible. The intervals are chosen so that the
rest of the lattice always has a completion on the text's grid (no dead ends):

- the crystal system of the space group (``representations.spacegroups.lattice_rules``) fixes some parameters
  to an earlier one (b = a) or a number (90, 120): those are forced, one character sequence;
- the cell volume per atom stays in ``volume_per_atom`` (default 1-200 A^3): the product of the free lengths is
  bounded (each length's interval leaves the later lengths a non-empty range, with a relative margin so rounding
  never closes it), and for monoclinic/triclinic cells the angles keep the volume factor high enough;
- the decoder's cell test (volume factor > 1e-6, with a factor-2 margin);
- a precomputed placement of the formula stays ``min_distance`` apart. With forced angles (orthogonal or
  hexagonal axes) every distance grows with each length, so a placement whose atoms are ``sep`` apart in a
  reference cell of shape ``s`` is valid in every cell with lengths >= (min_distance / sep) s: each of a few
  placements (reference shapes) gives such a box of minimum lengths, and a length is allowed when it fits a box
  the lengths before it fit (a union of intervals). Where angles are free the box's first entry is instead a
  bound on the smallest singular value ``sv`` of the lattice (triclinic: the whole matrix; monoclinic: the a-c
  net, b being normal to it), enforced through the angles; points ``delta`` apart in fractional coordinates are
  then ``sv * delta`` apart.

Free angles are read with the witness "all later free angles are 90": each angle's interval is convex and contains
90 degrees, a grid point, so the last angle always has a value. For an orthogonal-axes system (cubic, tetragonal,
orthorhombic) and hexagonal axes the angles are forced, and the lengths carry all the conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

from ...representations.spacegroups import lattice_rules
from .numbers import grid_down, grid_up

CELL_FACTOR_MIN = 2e-6  # decoder rejects 1 - sum cos^2 + 2 prod cos <= 1e-6; we keep a factor-2 margin
MARGIN = 1e-6  # relative slack per later free length, so floating-point rounding never empties an interval


def cell_factor(alpha: float, beta: float, gamma: float) -> float:
    """1 - cos^2 a - cos^2 b - cos^2 g + 2 cos a cos b cos g: (volume / abc)^2."""
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    return 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg


def angle_interval(done: tuple[float, ...]) -> tuple[float, float]:
    """Range of the next angle that keeps a cell possible: sin^2(a) >= 4t, sin^2(a) sin^2(b) >= 4t, then gamma
    where the volume factor exceeds 2t (t = the decoder's 1e-6): each step leaves room on a 0.01 degree grid.
    (Used by the coords grammar, whose angles are not tied to a space group.)"""
    t = CELL_FACTOR_MIN / 2
    if len(done) == 0:
        s = math.degrees(math.asin(2 * math.sqrt(t)))
        return s, 180.0 - s
    sa2 = math.sin(math.radians(done[0])) ** 2
    if len(done) == 1:
        need = 4 * t / sa2
        if need >= 1:
            return 90.0, 90.0
        s = math.degrees(math.asin(math.sqrt(need)))
        return s, 180.0 - s
    ca, cb = (math.cos(math.radians(x)) for x in done)
    d = sa2 * math.sin(math.radians(done[1])) ** 2 - CELL_FACTOR_MIN
    if d <= 0:
        return 1.0, 0.0
    r = math.sqrt(d)
    hi_c, lo_c = min(1.0, ca * cb + r), max(-1.0, ca * cb - r)
    return math.degrees(math.acos(hi_c)), math.degrees(math.acos(lo_c))


_PAIRS = ((1, 2), (0, 2), (0, 1))  # lengths spanning alpha, beta, gamma


def _cos_interval(rhos: tuple[float, ...], tau: float) -> tuple[float, float]:
    """Interval of the next correlation rho (of 3) keeping 1 - sum rho^2 + 2 prod rho >= tau with every later rho
    = 0 (the 90-degree witness); rhos are the earlier ones."""
    if len(rhos) == 0:
        r = math.sqrt(max(0.0, 1 - tau))
        return -r, r
    if len(rhos) == 1:
        r = math.sqrt(max(0.0, 1 - rhos[0] ** 2 - tau))
        return -r, r
    r = math.sqrt(max(0.0, (1 - rhos[0] ** 2) * (1 - rhos[1] ** 2) - tau))
    c = rhos[0] * rhos[1]
    return c - r, c + r


@dataclass(frozen=True)
class LatticePlan:
    """The lattice rules of one crystal system for a cell of ``n_atoms`` (see module docstring)."""

    lattice_type: str
    n_atoms: int
    length_range: tuple[float, float]
    volume_per_atom: tuple[float, float]
    length_decimals: int
    angle_decimals: int
    boxes: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),)  # minimum lengths, one per placement

    # ---------------------------------------------------------------------------------------- structure
    @cached_property
    def forced(self) -> dict[int, object]:
        return dict(lattice_rules(self.lattice_type))

    @cached_property
    def free_lengths(self) -> tuple[int, ...]:
        f = self.forced
        return tuple(i for i in range(3) if i not in f)

    def exponent(self, i: int) -> int:
        return 1 + sum(1 for j, t in self.forced.items() if j < 3 and t == i)

    @cached_property
    def angles_forced(self) -> bool:
        f = self.forced
        return all(i in f for i in range(3, 6))

    def forced_text(self, i: int, parts: tuple[str, ...]) -> str | None:
        """The only text parameter ``i`` may take (None when free); ``parts`` = parameter texts so far."""
        t = self.forced.get(i)
        if t is None:
            return None
        if isinstance(t, int) and not isinstance(t, bool):
            return parts[t]
        return f"{float(t):.{self.angle_decimals}f}"

    def _min_length(self, i: int, box: tuple[float, float, float]) -> float:
        need = max([box[i]] + [box[j] for j, t in self.forced.items() if j < 3 and t == i])
        return grid_up(max(self.length_range[0], need * (1 + MARGIN)), self.length_decimals)

    def alive(self, done: tuple[float, ...]) -> tuple[int, ...]:
        """Boxes (placements) the lengths read so far fit."""
        return tuple(
            v for v, box in enumerate(self.boxes) if all(done[j] >= self._min_length(j, box) - 1e-9 for j in
                                                         range(len(done)) if j in self.free_lengths)
        )

    def _max_length(self) -> float:
        return grid_down(self.length_range[1], self.length_decimals)

    def _product_bounds(self) -> tuple[float, float]:
        """Bounds on a*b*c: the volume with forced angles, or (monoclinic, triclinic) with 90-degree witnesses."""
        vlo, vhi = (v * self.n_atoms for v in self.volume_per_atom)
        if self.angles_forced:
            angles = [float(self.forced[i]) for i in range(3, 6)]
            s = math.sqrt(cell_factor(*angles))
            return vlo / s, vhi / s
        return vlo, vhi

    # ---------------------------------------------------------------------------------------- intervals
    def length_intervals(self, done: tuple[float, ...]) -> list[tuple[float, float]]:
        """Intervals of free length number ``len(done)`` (done = the values of a, b, ... so far), one per box
        the earlier lengths fit (memoised: rows of one formula and group share a plan)."""
        return _memo_length_intervals(self, tuple(done))

    def _length_intervals(self, done: tuple[float, ...]) -> list[tuple[float, float]]:
        out = []
        for v in self.alive(done):
            lo, hi = self._length_interval(done, self.boxes[v])
            if lo <= hi:
                out.append((lo, hi))
        return out

    def _length_interval(self, done: tuple[float, ...], box) -> tuple[float, float]:
        i = len(done)
        free = self.free_lengths
        later = [j for j in free if j > i]
        plo, phi = self._product_bounds()
        plo *= (1 + MARGIN) ** (len(later) + 1)
        phi *= (1 - MARGIN) ** (len(later) + 1)
        q = 1.0
        for j, v in enumerate(done):
            if j in free:
                q *= v ** self.exponent(j)
        umax = self._max_length()
        rmax = math.prod(umax ** self.exponent(j) for j in later)
        rmin = math.prod(self._min_length(j, box) ** self.exponent(j) for j in later)
        e = self.exponent(i)
        lo = max(self._min_length(i, box), (plo / (q * rmax)) ** (1 / e))
        hi = min(umax, (phi / (q * rmin)) ** (1 / e))
        return lo, hi

    def feasible(self) -> bool:
        from .numbers import units

        return any(
            units(lo, self.length_decimals, True) <= units(hi, self.length_decimals, False)
            for lo, hi in self.length_intervals(())
        )

    def angle_boxes(self, lengths: tuple[float, ...], done: tuple[float, ...]) -> tuple[int, ...]:
        """Boxes the lengths fit whose angle intervals hold every angle read so far (``done``): the placements
        still valid. An angle allowed by the union of the boxes' intervals keeps at least one of them."""
        free = [k for k in range(len(done)) if 3 + k not in self.forced]  # forced angles hold in every box
        return tuple(
            v for v in self.alive(lengths)
            if all(lo - 1e-9 <= done[k] <= hi + 1e-9
                   for k in free
                   for lo, hi in [self._angle_interval(lengths, done[:k], self.boxes[v][0])])
        )

    def angle_interval(self, lengths: tuple[float, ...], done: tuple[float, ...]) -> tuple[float, float]:
        """Interval of angle number ``len(done)`` (alpha, beta, gamma) given the lengths and earlier angles: the
        union over the boxes still valid (``angle_boxes``; each interval contains 90 degrees, so the union is an
        interval; memoised)."""
        return _memo_angle_interval(self, tuple(lengths), tuple(done))

    def _angle_union(self, lengths: tuple[float, ...], done: tuple[float, ...]) -> tuple[float, float]:
        los, his = [], []
        for v in self.angle_boxes(lengths, done):
            lo, hi = self._angle_interval(lengths, done, self.boxes[v][0])
            if lo <= hi:
                los.append(lo)
                his.append(hi)
        return (min(los), max(his)) if los else (1.0, 0.0)

    def _angle_interval(self, lengths, done, sv: float) -> tuple[float, float]:
        k = len(done)
        plo = self.volume_per_atom[0] * self.n_atoms * (1 + MARGIN)
        tau = max(CELL_FACTOR_MIN, (plo / math.prod(lengths)) ** 2)
        cos_done = [math.cos(math.radians(x)) for x in done]
        lo_c, hi_c = _cos_interval(tuple(cos_done), tau)
        if sv > 0:
            sv2 = sv**2

            def g(i):
                j, m = _PAIRS[i]
                return lengths[j] * lengths[m] / math.sqrt((lengths[j] ** 2 - sv2) * (lengths[m] ** 2 - sv2))

            rhos = tuple(0.0 if abs(c) < 1e-12 else c * g(i) for i, c in enumerate(cos_done))  # 90: no term
            rlo, rhi = _cos_interval(rhos, 0.0)
            lo_c, hi_c = max(lo_c, rlo / g(k)), min(hi_c, rhi / g(k))
        lo_c, hi_c = max(-1.0, lo_c), min(1.0, hi_c)
        return math.degrees(math.acos(hi_c)), math.degrees(math.acos(lo_c))


@lru_cache(maxsize=65536)
def _memo_length_intervals(plan: LatticePlan, done: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    return tuple(plan._length_intervals(done))


@lru_cache(maxsize=65536)
def _memo_angle_interval(plan: LatticePlan, lengths: tuple[float, ...], done: tuple[float, ...]) -> tuple[float, float]:
    return plan._angle_union(lengths, done)
