"""Character-level incremental validators ("grammars") for constrained decoding.

A grammar walks generated text one character at a time. ``step(state, ch)`` returns the next state, or None when
``ch`` cannot be part of any text the representation's decoder accepts. Every state also carries ``u``: the length
in characters of one concrete completion from it (an upper bound on the shortest one). Each character of that
completion lowers ``u`` by at least one, so a decoder that only emits tokens whose state has ``u <=`` tokens left
never runs out of budget: every sample ends as a complete, decodable text within ``max_new_tokens``.

``WyckoffGrammar`` accepts exactly the texts of ``plaid.representations.wyckoff`` that decode (single spaces,
fixed decimals), and enforces:

- the formula line: known elements, each once, positive counts, at most ``max_atoms`` atoms and ``max_elements``
  elements; with conditions, one of the allowed compositions;
- the space group: a number 1-230 (or the conditioned one) whose Wyckoff positions can fill the formula's counts
  exactly (a fixed position, one without free parameters, holds at most one orbit; free positions any number);
- lattice lengths in ``length_range`` Angstrom; angles that form a cell (the decoder's volume factor > 1e-6, with a
  margin, before and after snapping to the crystal system);
- orbit lines: an element of the formula with atoms left, fractional coordinates in [0, 1), a Wyckoff letter that
  exists in the group with its multiplicity, that still leaves the remaining counts fillable, and whose orbit from
  these coordinates does not collapse onto fewer sites; the end of text only when every count is filled exactly.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

BIG = 10**9
DIGITS = frozenset(string.digits)
UPPER = frozenset(string.ascii_uppercase)
LOWER = frozenset(string.ascii_lowercase)
LETTERS = UPPER | LOWER
CELL_FACTOR_MIN = 2e-6  # decoder rejects 1 - sum cos^2 + 2 prod cos <= 1e-6; we keep a factor-2 margin
GENERIC_TAILS = {  # values standing in for coordinates not written yet, when checking that an orbit can be distinct
    1: ((0.137, 0.291), (0.613, 0.853), (0.379, 0.719)),
    2: ((0.291,), (0.853,), (0.719,)),
}

# phases
F_SYM, F_CNT, SG, LEN, ANG, O_EL, O_CO, O_MU, O_END, END = range(10)


class State:
    """An immutable parse state; ``u`` is the length of a completion (see module docstring)."""

    __slots__ = ("phase", "buf", "parts", "aux", "ctx", "u")

    def __init__(self, phase, buf, parts, aux, ctx, u):
        self.phase, self.buf, self.parts, self.aux, self.ctx, self.u = phase, buf, parts, aux, ctx, u

    def __repr__(self) -> str:
        return f"State(phase={self.phase}, buf={self.buf!r}, parts={self.parts!r}, u={self.u})"


@lru_cache(maxsize=1)
def element_symbols() -> tuple[str, ...]:
    from pymatgen.core import Element

    return tuple(e.symbol for e in Element if Element.is_valid_symbol(e.symbol))


# ----------------------------------------------------------------------------------------------- numbers


def _units(value: float, decimals: int, up: bool) -> int:
    x = value * 10**decimals
    return math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)


@lru_cache(maxsize=1 << 16)
def number_prefix_ok(buf: str, lo: float, hi: float, int_digits: int, decimals: int) -> bool:
    """Whether ``buf`` starts a fixed-point number (1..``decimals`` decimals, at most ``int_digits`` integer digits,
    no leading zeros) that can end inside [lo, hi]."""
    lo_u, hi_u = _units(lo, decimals, True), _units(hi, decimals, False)
    if lo_u > hi_u:
        return False
    scale = 10**decimals
    if "." in buf and decimals == 0:
        return False
    if "." in buf:
        ip, fp = buf.split(".", 1)
        if not ip or len(fp) > decimals or (fp and not fp.isdigit()) or not ip.isdigit():
            return False
        if len(ip) > int_digits or (len(ip) > 1 and ip[0] == "0"):
            return False
        base = int(ip) * scale + (int(fp) * 10 ** (decimals - len(fp)) if fp else 0)
        top = base + 10 ** (decimals - len(fp)) - 1
        return max(base, lo_u) <= min(top, hi_u)
    if buf and (not buf.isdigit() or len(buf) > int_digits or (len(buf) > 1 and buf[0] == "0")):
        return False
    ranges = []
    if not buf:
        for k in range(1, int_digits + 1):
            low = 0 if k == 1 else 10 ** (k - 1)
            ranges.append((low, 10**k - 1))
    else:
        v = int(buf)
        extra = 0 if buf == "0" else int_digits - len(buf)
        for k in range(extra + 1):
            ranges.append((v * 10**k, v * 10**k + 10**k - 1))
    return any(max(a * scale, lo_u) <= min(b * scale + scale - 1, hi_u) for a, b in ranges)


@lru_cache(maxsize=1 << 16)
def number_complete(buf: str, lo: float, hi: float, decimals: int) -> bool:
    if decimals == 0:
        if not buf.isdigit() or (len(buf) > 1 and buf[0] == "0"):
            return False
        return _units(lo, 0, True) <= int(buf) <= _units(hi, 0, False)
    if "." not in buf:
        return False
    ip, fp = buf.split(".", 1)
    if not ip.isdigit() or not fp.isdigit() or len(fp) > decimals:
        return False
    v = int(ip) * 10**decimals + int(fp) * 10 ** (decimals - len(fp))
    return _units(lo, decimals, True) <= v <= _units(hi, decimals, False)


def cell_factor(alpha: float, beta: float, gamma: float) -> float:
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    return 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg


def angle_interval(done: tuple[float, ...]) -> tuple[float, float]:
    """Range of the next angle that keeps a cell possible: sin^2(a) >= 4t, sin^2(a) sin^2(b) >= 4t, then gamma
    where the volume factor exceeds 2t (t = the decoder's 1e-6): each step leaves room on a 0.01 degree grid."""
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


# --------------------------------------------------------------------------------------- Wyckoff site counts


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
    from ..representations.spacegroups import space_group

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


def _free_min(free_mults: tuple[int, ...], n_max: int) -> np.ndarray:
    """Fewest orbits of free positions summing to each count 0..n_max (BIG when impossible)."""
    dp = np.full(n_max + 1, BIG, dtype=np.int64)
    dp[0] = 0
    for m in free_mults:
        for n in range(m, n_max + 1):
            if dp[n - m] + 1 < dp[n]:
                dp[n] = dp[n - m] + 1
    return dp


class SiteCounter:
    """Fewest Wyckoff orbits filling given element counts in a space group (BIG when impossible), memoised."""

    def __init__(self, max_atoms: int):
        self.max_atoms = max_atoms
        self._free: dict[int, np.ndarray] = {}
        self._memo: dict = {}
        self._table: np.ndarray | None = None

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


@cache
def _wyckoff(sg: int, letter: str):
    from ..representations.spacegroups import space_group

    return space_group(sg).wyckoff[letter]


# ----------------------------------------------------------------------------------------------- contexts


class _Ctx:
    """Everything fixed by the lines written so far (shared by the states of one line)."""

    __slots__ = (
        "formula",
        "elements",
        "sg",
        "slots",
        "orbits",
        "lengths",
        "angles",
        "matrix",
        "rem",
        "used",
        "avail",
        "cache",
    )

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))
        if self.cache is None:
            self.cache = {}

    def replace(self, **kw) -> _Ctx:
        values = {k: getattr(self, k) for k in self.__slots__ if k != "cache"}
        values.update(kw)
        return _Ctx(**values)


@dataclass(frozen=True)
class _Option:
    letter: str
    mult: int
    fixed: bool
    after: int  # fewest orbits still needed after this one


class _CharGrammar:
    """Character-level grammar: subclasses define ``initial()`` and ``step(state, ch)``."""

    def feed(self, text: str, state: State | None = None) -> State | None:
        state = state or self.initial()
        for ch in text:
            state = self.step(state, ch)
            if state is None:
                return None
        return state


class WyckoffGrammar(_CharGrammar):
    """Incremental validator of PLaID Wyckoff text (see module docstring).

    ``compositions``: allowed cell compositions (formula line), e.g. from a formula or composition condition;
    ``space_groups``: allowed space-group numbers. Decimals default to the representation's.
    """

    name = "wyckoff"

    def __init__(
        self,
        compositions: Iterable[Mapping[str, int]] | None = None,
        space_groups: Iterable[int] | None = None,
        elements: Iterable[str] | None = None,
        max_atoms: int = 256,
        max_elements: int = 8,
        length_range: tuple[float, float] = (1.0, 100.0),
        length_decimals: int = 2,
        angle_decimals: int = 2,
        coord_decimals: int = 3,
    ):
        if max_atoms > 999:
            raise ValueError("max_atoms must be below 1000 (three count digits)")
        self.max_atoms = max_atoms
        self.max_elements = max_elements
        self.length_range = length_range
        self.ld, self.ad, self.cd = length_decimals, angle_decimals, coord_decimals
        self.elements = frozenset(elements) if elements is not None else frozenset(element_symbols())
        unknown = self.elements - set(element_symbols())
        if unknown:
            raise ValueError(f"unknown element(s) {sorted(unknown)}")
        self.prefixes: dict[str, frozenset[str]] = {}
        for el in self.elements:
            for k in range(1, len(el) + 1):
                self.prefixes[el[:k]] = self.prefixes.get(el[:k], frozenset()) | {el}
        self.groups = tuple(sorted(set(space_groups))) if space_groups is not None else tuple(range(1, 231))
        if not self.groups or any(not 1 <= g <= 230 for g in self.groups):
            raise ValueError(f"space groups must be in 1-230, got {space_groups}")
        self.counter = SiteCounter(max_atoms)
        self.compositions = None
        if compositions is not None:
            self.compositions = [dict(c) for c in compositions]
            for comp in self.compositions:
                bad = set(comp) - self.elements
                if bad:
                    raise ValueError(f"composition uses element(s) outside the allowed set: {sorted(bad)}")
            self.compositions = [c for c in self.compositions if sum(c.values()) <= max_atoms]
            if not self.compositions:
                raise ValueError(f"no allowed composition has at most max_atoms={max_atoms} atoms")
        # line lengths (upper bounds, characters, newline included)
        num_len = 3 + 1 + max(self.ld, self.ad)
        self.lat_line = 3 * num_len + 3
        self.sg_line = 4
        self.orbit_line = 2 + 3 * (1 + 2 + self.cd) + 1 + 4 + 1
        self._sg_memo: dict = {}
        self._pending_memo: dict = {}
        self._options_memo: dict = {}
        self._fixed_ok: dict = {}

    # ------------------------------------------------------------------------------------------ public API
    def initial(self) -> State:
        s = State(F_SYM, "", (), None, None, 0)
        s.u = self._u_formula(s)
        if s.u >= BIG:
            raise ValueError("no composition satisfies the constraints (max_atoms, space groups)")
        return s

    def can_end(self, state: State) -> bool:
        return state.phase == END or (state.phase == O_END and not any(state.ctx.rem))

    def next_chars(self, state: State) -> frozenset[str]:
        return _NEXT[state.phase](state)

    def check_feasible(self) -> None:
        """Raise ValueError if no text satisfies the conditions (e.g. a composition no position set fills)."""
        self.initial()

    def step(self, state: State, ch: str) -> State | None:
        return _STEP[state.phase](self, state, ch)

    # -------------------------------------------------------------------------------------- formula bounds
    def _header_after_formula(self) -> int:
        return self.sg_line + 2 * self.lat_line

    def _bound(self, counts: tuple[int, ...]) -> int:
        """Orbits needed for ``counts`` in the best allowed group (exact for few groups, else an upper bound
        from free positions only)."""
        if len(self.groups) <= 16:
            return min(self.counter.min_orbits(g, counts) for g in self.groups)
        table = self.counter.free_table()
        return int(table[:, list(counts)].sum(axis=1).min()) if counts else 0

    def _count_costs(self, counts: tuple[int, ...]) -> np.ndarray:
        """cost[n] = characters of count n + orbit-line characters if one more element with n atoms joins
        ``counts`` (BIG where impossible), for n in 0..max_atoms."""
        counts = tuple(sorted(counts))
        hit = self._pending_memo.get(counts)
        if hit is not None:
            return hit
        cap = self.max_atoms - sum(counts)
        cost = np.full(self.max_atoms + 1, BIG, dtype=np.int64)
        if cap >= 1:
            digits = np.array([len(str(n)) for n in range(1, cap + 1)])
            if len(self.groups) <= 16:
                orbits = np.array([self._bound(counts + (n,)) for n in range(1, cap + 1)])
            else:
                table = self.counter.free_table()
                base = table[:, list(counts)].sum(axis=1) if counts else np.zeros(230, dtype=np.int64)
                orbits = (base[:, None] + table[:, 1 : cap + 1]).min(axis=0)
            cost[1 : cap + 1] = np.where(orbits < BIG, orbits * self.orbit_line + digits, BIG)
        self._pending_memo[counts] = cost
        return cost

    def _pending(self, done: tuple[tuple[str, int], ...]) -> int:
        """Characters + orbit lines for one more element with its cheapest count (count digits included)."""
        return int(self._count_costs(tuple(n for _, n in done)).min())

    def _count_completion(self, done: tuple[tuple[str, int], ...], buf: str) -> int:
        """Cheapest cost of a count that starts with the digits ``buf`` (minus the digits already typed)."""
        cost = self._count_costs(tuple(n for _, n in done))
        p, best, width = int(buf), BIG, 1
        while p * width < len(cost):
            best = min(best, int(cost[p * width : min(len(cost), (p + 1) * width)].min()))
            width *= 10
        return best - len(buf) if best < BIG else BIG

    def _u_formula(self, s: State) -> int:
        done = s.parts
        tail = 1 + self._header_after_formula()
        if self.compositions is not None:
            typed = sum(len(el) + len(str(n)) + 1 for el, n in done)
            typed += len(s.buf) if s.phase == F_SYM else len(s.aux) + len(s.buf)
            best = BIG
            for comp in self._consistent(s):
                line = sum(len(el) + len(str(n)) for el, n in comp.items()) + len(comp) - 1
                orbits = self._bound(tuple(comp.values()))
                if orbits < BIG:
                    best = min(best, line - typed + tail + orbits * self.orbit_line)
            return best
        if s.phase == F_SYM:
            pend = self._pending(done)
            return BIG if pend >= BIG else (2 - len(s.buf)) + pend + tail
        rest = self._count_completion(done, s.buf)
        return BIG if rest >= BIG else rest + tail

    def _consistent(self, s: State) -> list[dict]:
        out = []
        done = dict(s.parts)
        for comp in self.compositions:
            if any(comp.get(el) != n for el, n in done.items()):
                continue
            left = [el for el in comp if el not in done]
            if s.phase == F_SYM:
                if s.buf == "" and not left and done:
                    continue
                if s.buf and not any(el.startswith(s.buf) for el in left):
                    continue
            else:
                if s.aux not in left or not str(comp[s.aux]).startswith(s.buf):
                    continue
            out.append(comp)
        return out

    # -------------------------------------------------------------------------------------- space groups
    def _sg_orbits(self, counts: tuple[int, ...]) -> dict[int, int]:
        key = tuple(sorted(counts))
        hit = self._sg_memo.get(key)
        if hit is None:
            hit = {}
            for g in self.groups:
                n = self.counter.min_orbits(g, counts)
                if n < BIG:
                    hit[g] = n
            self._sg_memo[key] = hit
        return hit

    # -------------------------------------------------------------------------------------- orbit options
    def _options(self, ctx: _Ctx, el: str) -> list[_Option]:
        key = (ctx.sg, ctx.elements, ctx.rem, ctx.used, el)
        hit = self._options_memo.get(key)
        if hit is not None:
            return hit
        i = ctx.elements.index(el)
        n = ctx.rem[i]
        out = []
        slots = ctx.slots
        for letter, m, fixed in slots.letters:
            if m > n or (fixed and letter in ctx.used):
                continue
            rem = list(ctx.rem)
            rem[i] -= m
            avail = ctx.avail
            if fixed:
                k = slots.fixed_mults.index(m)
                avail = avail[:k] + (avail[k] - 1,) + avail[k + 1 :]
            after = self.counter.min_orbits(ctx.sg, rem, avail)
            if after < BIG:
                out.append(_Option(letter, m, fixed, after))
        out.sort(key=lambda o: o.after)
        self._options_memo[key] = out
        return out

    def _orbit_distinct(self, ctx: _Ctx, option: _Option, xyz: tuple[float, ...]) -> bool:
        """The decoder's test: the orbit generated from ``xyz`` has ``multiplicity`` distinct sites."""
        if option.fixed:
            key = (ctx.sg, option.letter)
            hit = self._fixed_ok.get(key)
            if hit is not None:
                return hit
        else:
            key = (option.letter, xyz)
            hit = ctx.cache.get(key)
            if hit is not None:
                return hit
        wp = _wyckoff(ctx.sg, option.letter)
        q, _ = wp.project(np.asarray(xyz, dtype=float), ctx.matrix)
        points = wp.orbit(q)
        # the decoder's np.unique(np.round(points, 5) % 1.0, axis=0), as a set of rows (same equality, faster)
        ok = len(set(map(tuple, (np.round(points, 5) % 1.0).tolist()))) == wp.multiplicity
        if option.fixed:
            self._fixed_ok[key] = ok
        else:
            ctx.cache[key] = ok
        return ok

    def _first_viable(self, ctx: _Ctx, options: list[_Option], coords: tuple[float, ...]) -> _Option | None:
        tails = GENERIC_TAILS.get(len(coords), ((),))
        for o in options:  # sorted by orbits still needed: the first viable one is the cheapest
            if any(self._orbit_distinct(ctx, o, coords + t) for t in tails):
                return o
        return None


# ------------------------------------------------------------------------------------------ step functions


def _step_f_sym(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    done_els = {el for el, _ in s.parts}
    if ch in LETTERS:
        buf = s.buf + ch
        if len(buf) > 2 or (len(buf) == 1 and ch not in UPPER) or (len(buf) == 2 and ch not in LOWER):
            return None
        if not (g.prefixes.get(buf, frozenset()) - done_els):
            return None
        n = State(F_SYM, buf, s.parts, None, None, 0)
    elif ch in DIGITS:
        if ch == "0" or s.buf not in g.elements or s.buf in done_els:
            return None
        if int(ch) + sum(c for _, c in s.parts) > g.max_atoms:
            return None
        n = State(F_CNT, ch, s.parts, s.buf, None, 0)
    else:
        return None
    n.u = g._u_formula(n)
    return n if n.u < BIG else None


def _step_f_cnt(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    if ch in DIGITS:
        buf = s.buf + ch
        if len(buf) > 3 or int(buf) + sum(c for _, c in s.parts) > g.max_atoms:
            return None
        n = State(F_CNT, buf, s.parts, s.aux, None, 0)
        n.u = g._u_formula(n)
        return n if n.u < BIG else None
    done = s.parts + ((s.aux, int(s.buf)),)
    if ch == " ":
        if len(done) >= g.max_elements:
            return None
        n = State(F_SYM, "", done, None, None, 0)
        n.u = g._u_formula(n)
        return n if n.u < BIG else None
    if ch == "\n":
        if g.compositions is not None and dict(done) not in g.compositions:
            return None
        orbits = g._sg_orbits(tuple(c for _, c in done))
        if not orbits:
            return None
        ctx = _Ctx(formula=done, elements=tuple(el for el, _ in done))
        n = State(SG, "", (), orbits, ctx, 0)
        n.u = g.sg_line + 2 * g.lat_line + min(orbits.values()) * g.orbit_line
        return n
    return None


def _step_sg(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    orbits = s.aux
    if ch in DIGITS:
        buf = s.buf + ch
        if buf[0] == "0" or len(buf) > 3:
            return None
        best = min((v for k, v in orbits.items() if str(k).startswith(buf)), default=BIG)
        if best >= BIG:
            return None
        return State(SG, buf, (), orbits, s.ctx, (4 - len(buf)) + 2 * g.lat_line + best * g.orbit_line)
    if ch == "\n" and s.buf and int(s.buf) in orbits:
        sg = int(s.buf)
        slots = group_slots(sg)
        ctx = s.ctx.replace(sg=sg, slots=slots, orbits=orbits[sg])
        return State(LEN, "", (), None, ctx, 2 * g.lat_line + orbits[sg] * g.orbit_line)
    return None


def _orbits_left(g: WyckoffGrammar, ctx: _Ctx) -> int:
    return ctx.orbits


def _step_lattice(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    is_len = s.phase == LEN
    dec = g.ld if is_len else g.ad
    if is_len:
        lo, hi = g.length_range
    else:
        lo, hi = angle_interval(tuple(float(p) for p in s.parts))
    typed = sum(len(p) + 1 for p in s.parts) + len(s.buf)
    later = g.lat_line if is_len else 0
    if ch in DIGITS or ch == ".":
        buf = s.buf + ch
        if not number_prefix_ok(buf, lo, hi, 3, dec):
            return None
        u = g.lat_line - typed - 1 + later + _orbits_left(g, s.ctx) * g.orbit_line
        return State(s.phase, buf, s.parts, None, s.ctx, u)
    if not number_complete(s.buf, lo, hi, dec):
        return None
    parts = s.parts + (s.buf,)
    if ch == " " and len(parts) < 3:
        u = g.lat_line - typed - 1 + later + _orbits_left(g, s.ctx) * g.orbit_line
        return State(s.phase, "", parts, None, s.ctx, u)
    if ch == "\n" and len(parts) == 3:
        values = tuple(float(p) for p in parts)
        if is_len:
            ctx = s.ctx.replace(lengths=values)
            return State(ANG, "", (), None, ctx, g.lat_line + _orbits_left(g, ctx) * g.orbit_line)
        return _start_orbits(g, s.ctx, values)
    return None


def _start_orbits(g: WyckoffGrammar, ctx: _Ctx, angles: tuple[float, ...]) -> State | None:
    from pymatgen.core import Lattice

    from ..representations.base import DecodeError, check_lattice_parameters
    from ..representations.spacegroups import constrain_lattice

    params = ctx.lengths + angles
    if cell_factor(*angles) <= CELL_FACTOR_MIN:
        return None
    snapped = constrain_lattice(ctx.slots.lattice_type, *params)
    try:
        check_lattice_parameters(*params)
        check_lattice_parameters(*snapped)
    except DecodeError:
        return None
    matrix = Lattice.from_parameters(*snapped).matrix
    rem = tuple(n for _, n in ctx.formula)
    new = ctx.replace(angles=angles, matrix=matrix, rem=rem, used=frozenset(), avail=ctx.slots.fixed_counts)
    new.cache = {}
    orbits = g.counter.min_orbits(new.sg, rem, new.avail)
    if orbits >= BIG:
        return None
    return State(O_EL, "", (), None, new, orbits * g.orbit_line)


def _elements_left(g: WyckoffGrammar, ctx: _Ctx, prefix: str) -> list[tuple[str, int]]:
    out = []
    for el, n in zip(ctx.elements, ctx.rem):
        if n > 0 and el.startswith(prefix):
            opts = g._options(ctx, el)
            if opts:
                out.append((el, opts[0].after))
    return out


def _step_o_el(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    ctx = s.ctx
    if ch in LETTERS:
        buf = s.buf + ch
        if len(buf) > 2 or (len(buf) == 1 and ch not in UPPER) or (len(buf) == 2 and ch not in LOWER):
            return None
        left = _elements_left(g, ctx, buf)
        if not left:
            return None
        best = min(a for _, a in left)
        return State(O_EL, buf, (), None, ctx, g.orbit_line - len(buf) + best * g.orbit_line)
    if ch == " " and s.buf in ctx.elements:
        opts = g._options(ctx, s.buf) if ctx.rem[ctx.elements.index(s.buf)] > 0 else []
        if not opts:
            return None
        return State(
            O_CO,
            "",
            (),
            (s.buf, opts[0].after),
            ctx,
            g.orbit_line - len(s.buf) - 1 + opts[0].after * g.orbit_line,
        )
    return None


def _step_o_co(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    ctx = s.ctx
    el, best = s.aux
    typed = len(el) + 1 + sum(len(p) + 1 for p in s.parts) + len(s.buf)
    hi = 1.0 - 10.0 ** (-g.cd)
    if ch in DIGITS or ch == ".":
        buf = s.buf + ch
        if not number_prefix_ok(buf, 0.0, hi, 1, g.cd):
            return None
        if "." in buf and len(buf.split(".")[1]) == g.cd:  # no more digits possible: check the orbit now
            coords = tuple(float(p) for p in s.parts) + (float(buf),)
            opt = g._first_viable(ctx, g._options(ctx, el), coords)
            if opt is None:
                return None
            best = opt.after
        return State(O_CO, buf, s.parts, (el, best), ctx, g.orbit_line - typed - 1 + best * g.orbit_line)
    if ch == " " and number_complete(s.buf, 0.0, hi, g.cd):
        parts = s.parts + (s.buf,)
        coords = tuple(float(p) for p in parts)
        options = g._options(ctx, el)
        if len(parts) < 3:
            opt = g._first_viable(ctx, options, coords)
            if opt is None:
                return None
            return State(
                O_CO, "", parts, (el, opt.after), ctx, g.orbit_line - typed - 1 + opt.after * g.orbit_line
            )
        opt = g._first_viable(ctx, options, coords)
        if opt is None:
            return None
        return State(
            O_MU, "", parts, (el, options, coords), ctx, g.orbit_line - typed - 1 + opt.after * g.orbit_line
        )
    return None


def _step_o_mu(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    ctx = s.ctx
    el, options, coords = s.aux
    typed = len(el) + 1 + sum(len(p) + 1 for p in s.parts) + len(s.buf)
    if ch in DIGITS:
        buf = s.buf + ch
        if buf[0] == "0":
            return None
        match = [o for o in options if str(o.mult).startswith(buf)]
        opt = g._first_viable(ctx, match, coords)  # options are sorted: the cheapest viable one
        if opt is None:
            return None
        return State(
            O_MU, buf, s.parts, (el, match, coords), ctx, g.orbit_line - typed - 1 + opt.after * g.orbit_line
        )
    if ch in LETTERS and s.buf:
        for o in options:
            if o.letter == ch and str(o.mult) == s.buf and g._orbit_distinct(ctx, o, coords):
                i = ctx.elements.index(el)
                rem = ctx.rem[:i] + (ctx.rem[i] - o.mult,) + ctx.rem[i + 1 :]
                used, avail = ctx.used, ctx.avail
                if o.fixed:
                    used = used | {o.letter}
                    k = ctx.slots.fixed_mults.index(o.mult)
                    avail = avail[:k] + (avail[k] - 1,) + avail[k + 1 :]
                new = ctx.replace(rem=rem, used=used, avail=avail)
                new.cache = ctx.cache  # same lattice: orbit checks stay valid
                return State(O_END, "", (), None, new, 1 + o.after * g.orbit_line)
    return None


def _step_o_end(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    if ch != "\n":
        return None
    if not any(s.ctx.rem):
        return State(END, "", (), None, s.ctx, 0)
    return State(O_EL, "", (), None, s.ctx, s.u - 1)


def _step_end(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    return None


_STEP = {
    F_SYM: _step_f_sym,
    F_CNT: _step_f_cnt,
    SG: _step_sg,
    LEN: _step_lattice,
    ANG: _step_lattice,
    O_EL: _step_o_el,
    O_CO: _step_o_co,
    O_MU: _step_o_mu,
    O_END: _step_o_end,
    END: _step_end,
}
_NUM = DIGITS | {".", " ", "\n"}
_SPACE = frozenset(" ")
_DIGITS_SPACE = DIGITS | _SPACE


def _next_o_el(s: State) -> frozenset[str]:
    ctx, buf = s.ctx, s.buf
    left = [el for el, n in zip(ctx.elements, ctx.rem) if n > 0]
    if not buf:
        return frozenset(el[0] for el in left)
    out = {el[1] for el in left if len(el) == 2 and el[0] == buf}
    if buf in left:
        out.add(" ")
    return frozenset(out)


def _next_o_co(s: State) -> frozenset[str]:
    if s.buf == "":
        return frozenset("0")
    if s.buf == "0":
        return frozenset(".")
    return DIGITS if s.buf == "0." else _DIGITS_SPACE


def _next_o_mu(s: State) -> frozenset[str]:
    buf, k = s.buf, len(s.buf)
    out = set()
    for o in s.aux[1]:
        m = str(o.mult)
        if m.startswith(buf):
            if len(m) > k:
                out.add(m[k])
            elif buf:
                out.add(o.letter)
    return frozenset(out)


def _next_f_sym(s: State) -> frozenset[str]:
    if s.buf == "":
        return UPPER
    return LOWER | DIGITS


_NEXT = {
    F_SYM: _next_f_sym,
    F_CNT: lambda s: DIGITS | {" ", "\n"},
    SG: lambda s: DIGITS | {"\n"},
    LEN: lambda s: _NUM,
    ANG: lambda s: _NUM,
    O_EL: _next_o_el,
    O_CO: _next_o_co,
    O_MU: _next_o_mu,
    O_END: lambda s: frozenset("\n"),
    END: lambda s: frozenset(),
}


# --------------------------------------------------------------------------------------------- infilling


class ElementGrammar(_CharGrammar):
    """Infilling answers: one element symbol, then the end of text."""

    name = "element"

    def __init__(self, elements: Iterable[str] | None = None):
        self.elements = frozenset(elements) if elements is not None else frozenset(element_symbols())
        self.prefixes = {el[:k] for el in self.elements for k in range(1, len(el) + 1)}

    def initial(self) -> State:
        return State(O_EL, "", (), None, None, 2)

    def can_end(self, state: State) -> bool:
        return state.buf in self.elements

    def next_chars(self, state: State) -> frozenset[str]:
        return LETTERS

    def step(self, state: State, ch: str) -> State | None:
        buf = state.buf + ch
        if buf not in self.prefixes:
            return None
        return State(O_EL, buf, (), None, None, 2 - len(buf))

    def check_feasible(self) -> None:
        if not self.elements:
            raise ValueError("no elements allowed")


# ------------------------------------------------------------------------------------------- coords text

C_LEN, C_ANG, C_EL, C_CO = range(20, 24)


class CoordsGrammar(_CharGrammar):
    """Incremental validator of the coords representation (Gruver et al.): three lengths, three angles, then an
    element line and a fractional-coordinate line per site. Enforces lengths in ``length_range``, angles in
    ``angle_range`` that form a cell (as the decoder checks), known elements, coordinates in [0, 1) and at most
    ``max_atoms`` sites; the text may end after any complete coordinate line."""

    name = "coords"

    def __init__(
        self,
        elements: Iterable[str] | None = None,
        max_atoms: int = 256,
        length_range: tuple[float, float] = (1.0, 100.0),
        angle_range: tuple[float, float] = (10.0, 170.0),
        length_decimals: int = 1,
        angle_decimals: int = 0,
        coord_decimals: int = 3,
        **_ignored,
    ):
        self.elements = frozenset(elements) if elements is not None else frozenset(element_symbols())
        self.prefixes = {el[:k] for el in self.elements for k in range(1, len(el) + 1)}
        self.max_atoms = max_atoms
        self.length_range, self.angle_range = length_range, angle_range
        self.ld, self.ad, self.cd = length_decimals, angle_decimals, coord_decimals
        self.len_line = 3 * (3 + 1 + self.ld) + 3
        self.ang_line = 3 * (3 + (1 + self.ad if self.ad else 0)) + 3
        self.el_line = 3
        self.co_line = 3 * (2 + self.cd) + 3

    def initial(self) -> State:
        return State(C_LEN, "", (), 0, None, self.len_line + self.ang_line + self.el_line + self.co_line)

    def check_feasible(self) -> None:
        self.initial()

    def can_end(self, s: State) -> bool:
        if s.phase == C_EL:
            return s.buf == "" and s.aux > 0
        if s.phase == C_CO:
            return len(s.parts) == 2 and number_complete(s.buf, 0.0, 1.0 - 10.0 ** (-self.cd), self.cd)
        return False

    def next_chars(self, s: State) -> frozenset[str]:
        if s.phase == C_EL:
            return (UPPER if s.buf == "" else LOWER | {"\n"}) if len(s.buf) < 2 else frozenset("\n")
        if s.phase == C_CO:
            return _next_o_co(s) | ({"\n"} if s.buf not in ("", "0", "0.") else set())
        return _NUM

    def _interval(self, s: State) -> tuple[float, float]:
        if s.phase == C_LEN:
            return self.length_range
        lo, hi = angle_interval(tuple(float(p) for p in s.parts))
        return max(lo, self.angle_range[0]), min(hi, self.angle_range[1])

    def step(self, s: State, ch: str) -> State | None:
        sites = s.aux
        if s.phase in (C_LEN, C_ANG):
            dec = self.ld if s.phase == C_LEN else self.ad
            lo, hi = self._interval(s)
            typed = sum(len(p) + 1 for p in s.parts) + len(s.buf)
            line = self.len_line if s.phase == C_LEN else self.ang_line
            later = (self.ang_line if s.phase == C_LEN else 0) + self.el_line + self.co_line
            u = line - typed - 1 + later
            if ch in DIGITS or ch == ".":
                buf = s.buf + ch
                return (
                    State(s.phase, buf, s.parts, 0, None, u)
                    if number_prefix_ok(buf, lo, hi, 3, dec)
                    else None
                )
            if not number_complete(s.buf, lo, hi, dec):
                return None
            parts = s.parts + (s.buf,)
            if ch == " " and len(parts) < 3:
                return State(s.phase, "", parts, 0, None, u)
            if ch == "\n" and len(parts) == 3:
                if s.phase == C_LEN:
                    return State(C_ANG, "", (), 0, None, self.ang_line + self.el_line + self.co_line)
                if cell_factor(*(float(p) for p in parts)) <= CELL_FACTOR_MIN:
                    return None
                return State(C_EL, "", (), 0, None, self.el_line + self.co_line)
            return None
        if s.phase == C_EL:
            if ch in LETTERS:
                buf = s.buf + ch
                if buf not in self.prefixes or sites >= self.max_atoms:
                    return None
                return State(C_EL, buf, (), sites, None, self.el_line - len(buf) + self.co_line)
            if ch == "\n" and s.buf in self.elements:
                return State(C_CO, "", (), sites, None, self.co_line)
            return None
        # C_CO
        hi = 1.0 - 10.0 ** (-self.cd)
        typed = sum(len(p) + 1 for p in s.parts) + len(s.buf)
        if ch in DIGITS or ch == ".":
            buf = s.buf + ch
            if not number_prefix_ok(buf, 0.0, hi, 1, self.cd):
                return None
            n = State(C_CO, buf, s.parts, sites, None, 0)
            n.u = 0 if self.can_end(n) else self.co_line - typed - 1
            return n
        if not number_complete(s.buf, 0.0, hi, self.cd):
            return None
        if ch == " " and len(s.parts) < 2:
            return State(C_CO, "", s.parts + (s.buf,), sites, None, self.co_line - typed - 1)
        if ch == "\n" and len(s.parts) == 2:
            return State(C_EL, "", (), sites + 1, None, 0)
        return None
