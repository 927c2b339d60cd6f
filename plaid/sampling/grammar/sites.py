"""Wyckoff site counting: can a space group's positions hold given element counts, and with how few orbits?

A fixed position (no free parameter) holds at most one orbit; a free position any number. ``SiteCounter`` finds
the fewest orbits that fill every element's count exactly (memoised), which bounds the text still to be written."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from .base import BIG


@dataclass(frozen=True)
class GroupSlots:
    """A space group's Wyckoff positions as (letter, multiplicity, fixed) with fixed = no free parameter."""

    number: int
    letters: tuple[tuple[str, int, bool], ...]
    fixed_mults: tuple[int, ...]  # distinct multiplicities of fixed positions
    fixed_counts: tuple[int, ...]  # how many fixed positions have each
    free_mults: tuple[int, ...]
    lattice_type: str


@cache
def group_slots(number: int) -> GroupSlots:
    from ...representations.spacegroups import space_group

    g = space_group(number)
    letters = tuple(
        sorted(((wp.letter, wp.multiplicity, wp.dof == 0) for wp in g.wyckoff.values()), key=lambda x: x[1])
    )
    fixed: dict[int, int] = {}
    for _, m, is_fixed in letters:
        if is_fixed:
            fixed[m] = fixed.get(m, 0) + 1
    mults = tuple(sorted(fixed))
    free = tuple(sorted({m for _, m, f in letters if not f}))
    return GroupSlots(number, letters, mults, tuple(fixed[m] for m in mults), free, g.lattice_type)


@cache
def wyckoff_position(sg: int, letter: str):
    from ...representations.spacegroups import space_group

    return space_group(sg).wyckoff[letter]


@dataclass(frozen=True)
class Option:
    """One Wyckoff position an orbit of some element can take: ``after`` = fewest orbits still needed after it."""

    letter: str
    mult: int
    fixed: bool
    after: int


def _free_min(free_mults: tuple[int, ...], n_max: int) -> np.ndarray:
    """Fewest orbits of free positions summing to each count 0..n_max (BIG when impossible)."""
    dp = np.full(n_max + 1, BIG, dtype=np.int64)
    dp[0] = 0
    for m in free_mults:
        for n in range(m, n_max + 1):
            if dp[n - m] + 1 < dp[n]:
                dp[n] = dp[n - m] + 1
    return dp


def take_fixed(slots: GroupSlots, avail: tuple[int, ...], mult: int) -> tuple[int, ...]:
    """``avail`` after one more fixed position of multiplicity ``mult`` is used."""
    k = slots.fixed_mults.index(mult)
    return avail[:k] + (avail[k] - 1,) + avail[k + 1 :]


class SiteCounter:
    """Fewest Wyckoff orbits filling given element counts in a space group (BIG when impossible), memoised."""

    def __init__(self, max_atoms: int):
        self.max_atoms = max_atoms
        self._free: dict[int, np.ndarray] = {}
        self._memo: dict = {}
        self._table: np.ndarray | None = None
        self._options: dict = {}

    def free_min(self, sg: int) -> np.ndarray:
        arr = self._free.get(sg)
        if arr is None:
            arr = self._free[sg] = _free_min(group_slots(sg).free_mults, self.max_atoms)
        return arr

    def free_table(self) -> np.ndarray:
        """(230, max_atoms + 1): free-positions-only orbit counts, an upper bound of ``min_orbits``."""
        if self._table is None:
            self._table = np.stack([self.free_min(g) for g in range(1, 231)])
        return self._table

    def full_avail(self, sg: int) -> tuple[int, ...]:
        return group_slots(sg).fixed_counts

    def min_orbits(self, sg: int, counts: Iterable[int], avail: tuple[int, ...] | None = None) -> int:
        counts = tuple(sorted((c for c in counts if c > 0), reverse=True))
        if avail is None:
            avail = self.full_avail(sg)
        return self._solve(sg, counts, avail)

    def _solve(self, sg: int, counts: tuple[int, ...], avail: tuple[int, ...]) -> int:
        if not counts:
            return 0
        key = (sg, counts, avail)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if counts[0] > self.max_atoms:
            self._memo[key] = BIG
            return BIG
        slots = group_slots(sg)
        free = self.free_min(sg)
        n, rest = counts[0], counts[1:]
        best = BIG
        ranges = [range(min(a, n // m) + 1) for m, a in zip(slots.fixed_mults, avail)]
        for use in itertools.product(*ranges):
            atoms = sum(u * m for u, m in zip(use, slots.fixed_mults))
            if atoms > n or free[n - atoms] >= BIG:
                continue
            cost = int(free[n - atoms]) + sum(use)
            if cost >= best:
                continue
            sub = self._solve(sg, rest, tuple(a - u for a, u in zip(avail, use)))
            if cost + sub < best:
                best = cost + sub
        self._memo[key] = best
        return best

    def options(
        self, sg: int, rem: tuple[int, ...], i: int, used: frozenset, avail: tuple[int, ...]
    ) -> tuple[Option, ...]:
        """Positions the next orbit of element ``i`` can take with ``rem`` atoms left per element, cheapest first
        (``used``: fixed letters taken, ``avail``: fixed positions left per fixed multiplicity)."""
        key = (sg, rem, i, used, avail)
        hit = self._options.get(key)
        if hit is not None:
            return hit
        slots = group_slots(sg)
        out = []
        for letter, m, fixed in slots.letters:
            if m > rem[i] or (fixed and letter in used):
                continue
            after_rem = rem[:i] + (rem[i] - m,) + rem[i + 1 :]
            after = self.min_orbits(sg, after_rem, take_fixed(slots, avail, m) if fixed else avail)
            if after < BIG:
                out.append(Option(letter, m, fixed, after))
        out.sort(key=lambda o: (o.after, -o.mult))
        hit = self._options[key] = tuple(out)
        return hit
