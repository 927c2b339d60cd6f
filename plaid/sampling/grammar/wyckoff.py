"""The grammar of PLaID Wyckoff text (``plaid.representations.wyckoff``): it accepts exactly texts the strict
decoder turns into a crystal whose atoms are ``min_distance`` apart, and enforces:

- the formula line: known elements, each once, positive counts, at most ``max_atoms`` atoms and ``max_elements``
  elements; with conditions, one of the allowed compositions;
- the space group: a number 1-230 (or a conditioned one) whose Wyckoff positions can fill the formula's counts
  exactly (``sites``) and that admits a spread placement of them (``placement.spread_placement``);
- the lattice (``cell``): the crystal system's equalities and angles forced (one character sequence), volume per
  atom in ``volume_per_atom``, a cell the decoder accepts, and a smallest singular value that keeps the spread
  placement ``min_distance`` apart;
- orbit lines: an element of the formula with atoms left, fractional coordinates in [0, 1), a Wyckoff label of
  the group that still leaves the remaining counts fillable, and atoms (expanded with the position's operations,
  as the decoder does) at least ``min_distance`` from each other, from every atom placed so far and from their
  periodic images; the end of text only when every count is filled exactly.

No dead ends. From the space-group line on, every state holds a *witness*: a concrete, valid completion (the
spread placement once the lattice is read, then whatever placement the last accepted character was checked with).
A character is accepted only if some completion exists, and the check is constructive: the witness is kept when the
character agrees with it, otherwise the character is accepted only when a new complete witness is found for it
(``placement.find_placement``, bounded). So the witness's next character is always acceptable, and every prefix the
grammar accepts can be finished; the search being bounded only makes the grammar reject some characters that had
a completion, never accept one without. ``u`` is the length bound of the witness's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from .base import (
    BIG,
    DIGITS,
    LETTERS,
    LOWER,
    NUMBER_CHARS,
    UPPER,
    CharGrammar,
    State,
    element_prefixes,
    element_symbols,
)
from .cell import CELL_FACTOR_MIN, LatticePlan, cell_factor
from .numbers import closest_completion, number_complete, number_prefix_ok
from .placement import (
    EMPTY,
    Geometry,
    Orbit,
    decode_points,
    find_placement,
    frozen,
    orbit_atoms,
    representatives,
    spread_placement,
)
from .sites import SiteCounter, group_slots, take_fixed

# reference cell shapes (a, b, c) whose spread placements give the boxes of minimum lengths
_SHAPES = {
    "cubic": ((1.0, 1.0, 1.0),),
    "tetragonal": ((1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (2.0, 2.0, 1.0)),
    "hexagonal": ((1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (2.0, 2.0, 1.0)),
    "trigonal": ((1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (2.0, 2.0, 1.0)),
    "orthorhombic": ((1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (1.0, 3.0, 1.0), (3.0, 1.0, 1.0)),
    # (a-c net singular value, b, same): b is normal to the a-c net
    "monoclinic": ((1.0, 1.0, 1.0), (3.0, 1.0, 3.0), (1.0, 3.0, 1.0)),
    "triclinic": ((1.0, 1.0, 1.0),),  # singular value of the whole lattice
}

# phases
F_SYM, F_CNT, SG, LEN, ANG, O_EL, O_CO, O_MU, O_END, END = range(10)


@dataclass(frozen=True, eq=False)
class Ctx:
    """Everything the lines written so far fix (immutable; updated with ``dataclasses.replace``)."""

    formula: tuple[tuple[str, int], ...]
    elements: tuple[str, ...]
    sg: int | None = None
    plan: LatticePlan | None = None
    spread: tuple[tuple[Orbit, ...], ...] = ()  # the placements the lattice rules keep valid, one per box
    lengths: tuple[float, ...] = ()
    lengths_text: tuple[str, ...] = ()
    geom: Geometry | None = None
    rem: tuple[int, ...] = ()
    used: frozenset = frozenset()
    avail: tuple[int, ...] = ()
    occupied: np.ndarray = field(default_factory=lambda: EMPTY)
    witness: tuple[Orbit, ...] = ()  # orbits completing the text from here


class WyckoffGrammar(CharGrammar):
    """Incremental validator of PLaID Wyckoff text (see module docstring).

    ``compositions``: allowed cell compositions (formula line), e.g. from a formula or composition condition;
    ``space_groups``: allowed space-group numbers. Decimals default to the representation's. ``min_distance``
    (Angstrom, CDVAE's 0.5) and ``volume_per_atom`` (A^3) bound the structures; ``search_budget`` caps the
    candidate orbits tried when a character departs from the current witness.
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
        min_distance: float = 0.5,
        volume_per_atom: tuple[float, float] = (1.0, 200.0),
        search_budget: int = 48,
    ):
        if max_atoms > 999:
            raise ValueError("max_atoms must be below 1000 (three count digits)")
        if not min_distance > 0:
            raise ValueError(f"min_distance must be positive, got {min_distance}")
        vlo, vhi = volume_per_atom
        if not (0 < vlo and vhi >= 2 * vlo):
            raise ValueError(f"volume_per_atom must be (lo, hi) with 0 < lo and hi >= 2 lo, got {volume_per_atom}")
        if length_range[0] < 0.5 or length_range[1] > 500:
            raise ValueError(f"length_range must lie in the decoder's 0.5-500 Angstrom, got {length_range}")
        self.max_atoms = max_atoms
        self.max_elements = max_elements
        self.length_range = tuple(length_range)
        self.min_distance = float(min_distance)
        self.volume_per_atom = (float(vlo), float(vhi))
        self.search_budget = search_budget
        self.per_option = 4  # spread candidates per Wyckoff position in a search
        self.ld, self.ad, self.cd = length_decimals, angle_decimals, coord_decimals
        self.elements = frozenset(elements) if elements is not None else frozenset(element_symbols())
        unknown = self.elements - set(element_symbols())
        if unknown:
            raise ValueError(f"unknown element(s) {sorted(unknown)}")
        self.prefixes = element_prefixes(self.elements)
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
        self._plans: dict = {}

    # ------------------------------------------------------------------------------------------ public API
    def initial(self) -> State:
        s = State(F_SYM, "", (), None, None, 0)
        u = self._u_formula(s)
        if u >= BIG:
            raise ValueError("no composition satisfies the constraints (max_atoms, space groups)")
        return s._replace(u=u)

    def check_feasible(self) -> None:
        """Raise ValueError if no text satisfies the conditions: no composition whose counts the groups' positions
        fill, or (few conditioned groups and compositions) none that can hold its atoms ``min_distance`` apart."""
        self.initial()
        if self.compositions is not None and len(self.groups) <= 16 and len(self.compositions) <= 64:
            for comp in self.compositions:
                counts = tuple(comp.values())
                if any(self.plan(g, counts) is not None for g in self._sg_orbits(counts)):
                    return
            raise ValueError("no allowed composition fits an allowed space group with atoms min_distance apart")

    def can_end(self, state: State) -> bool:
        return state.phase == END or (state.phase == O_END and not any(state.ctx.rem))

    def next_chars(self, state: State) -> frozenset[str]:
        return _NEXT[state.phase](self, state)

    def step(self, state: State, ch: str) -> State | None:
        return _STEP[state.phase](self, state, ch)

    def line(self, ctx: Ctx, orbit: Orbit) -> str:
        return f"{ctx.elements[orbit.element]} {' '.join(orbit.written)} {orbit.option.mult}{orbit.option.letter}"

    def witness_text(self, state: State) -> str | None:
        """The orbit lines of the state's witness (None before the lattice is read): a valid completion of the
        orbit part (for tests and callers that want one)."""
        if state.ctx is None or state.ctx.geom is None:
            return None
        return "\n".join(self.line(state.ctx, o) for o in state.ctx.witness)

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

    def plan(self, sg: int, counts: tuple[int, ...]) -> tuple[LatticePlan, tuple] | None:
        """The lattice rules of ``counts`` (formula order) in ``sg`` and the spread placements they keep valid
        (one per box of minimum lengths, see ``cell``); None if the group cannot hold the atoms
        ``min_distance`` apart within the length and volume bounds."""
        key = (sg, counts)
        if key in self._plans:
            return self._plans[key]
        lattice_type = group_slots(sg).lattice_type
        margin = self.min_distance * 1.01
        spreads, boxes = [], []
        for shape in _SHAPES[lattice_type]:
            found = spread_placement(self.counter, sg, counts, self.cd, shape)
            if found is not None:
                spreads.append(found[0])
                boxes.append(tuple(margin / found[1] * x for x in shape))
        out = None
        if spreads:
            plan = LatticePlan(
                lattice_type,
                sum(counts),
                self.length_range,
                self.volume_per_atom,
                self.ld,
                self.ad,
                boxes=tuple(boxes),
            )
            if plan.feasible():
                out = (plan, tuple(spreads))
        self._plans[key] = out
        return out

    def _best_group(self, s: State, prefix: str) -> int | None:
        """The cheapest group starting with ``prefix`` that has a plan (None if none)."""
        counts = tuple(n for _, n in s.ctx.formula)
        for g, _ in sorted(s.aux.items(), key=lambda kv: (kv[1], kv[0])):
            if str(g).startswith(prefix) and self.plan(g, counts) is not None:
                return g
        return None

    # -------------------------------------------------------------------------------------- witnesses
    def _budget_line(self, typed: int, rest: int) -> int:
        return self.orbit_line - typed - 1 + rest * self.orbit_line

    def _rest_after(self, ctx: Ctx, orbit: Orbit, rest: tuple[Orbit, ...]) -> tuple[Orbit, ...] | None:
        """A witness for what is left once ``orbit`` is placed, repaired from ``rest`` (the witness it replaces
        the first orbit of): its orbits clear of the new one are kept (while the counts allow), the others are
        placed again by a bounded search; if that fails, a search from scratch. None if neither finds one."""
        o, i = orbit.option, orbit.element
        rem = ctx.rem[:i] + (ctx.rem[i] - o.mult,) + ctx.rem[i + 1 :]
        kept = [
            r
            for r in rest
            if not (o.fixed and r.option.fixed and r.option.letter == o.letter)
            and ctx.geom.apart(orbit.points, r.points)
        ]
        for j in range(len(rem)):  # a different multiplicity can leave an element over-full: drop orbits of it
            while sum(r.option.mult for r in kept if r.element == j) > rem[j]:
                kept.remove(next(r for r in kept if r.element == j))
        if self._fills(kept, rem):
            return tuple(kept)
        slots = group_slots(ctx.sg)
        occupied = np.concatenate([ctx.occupied, orbit.points])
        for base in (kept, []):
            need = tuple(n - sum(r.option.mult for r in base if r.element == j) for j, n in enumerate(rem))
            used, avail = ctx.used, ctx.avail
            for r in (orbit, *base):
                if r.option.fixed:
                    used, avail = used | {r.option.letter}, take_fixed(slots, avail, r.option.mult)
            found = find_placement(
                self.counter,
                ctx.sg,
                need,
                used,
                avail,
                ctx.geom,
                np.concatenate([occupied, orbit_atoms(base)]),
                self.cd,
                budget=self.search_budget,
            )
            if found is not None:
                return (*base, *found)
        return None

    @staticmethod
    def _fills(orbits, rem) -> bool:
        return all(sum(r.option.mult for r in orbits if r.element == j) == n for j, n in enumerate(rem))

    def _try(self, ctx: Ctx, i: int, option, written, rest) -> tuple[Orbit, tuple] | None:
        pts = decode_points(ctx.sg, option.letter, [float(v) for v in written], ctx.geom.matrix)
        if not ctx.geom.clear(pts, ctx.occupied):
            return None
        orbit = Orbit(i, option, tuple(written), pts)
        new_rest = self._rest_after(ctx, orbit, rest)
        return None if new_rest is None else (orbit, new_rest)

    def _search(self, ctx: Ctx, i: int, w: Orbit, rest, parts: tuple[str, ...], buf: str | None):
        """A witness orbit of element ``i`` whose coordinates start with ``parts`` (complete) and ``buf`` (the
        current coordinate's prefix, None when the triple is complete), and a witness for the rest.

        Each position is tried first at the point of it nearest to what is typed (the witness's coordinates
        standing in for those not typed yet), positions passing closest to the typed coordinates first, then at
        a few spread candidates; at most ``search_budget`` orbits in all."""
        from ...representations.spacegroups import space_group

        k = len(parts)
        typed = np.array([float(p) for p in parts] + list(w.values())[k:])
        if buf is not None:
            typed[k] = float(closest_completion(buf, typed[k], self.cd))
        n_typed = k + (buf is not None and buf not in ("", "0", "0."))
        group = space_group(ctx.sg)
        ranked = []
        for o in self.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail):
            wp = group.wyckoff[o.letter]
            q, _ = wp.project(typed)
            near = wp.representative(q)
            miss = np.abs((near - typed + 0.5) % 1.0 - 0.5)[:n_typed].max(initial=0.0)
            targets = [near]
            if o.letter == w.option.letter:
                targets.insert(0, np.array(w.values()))
            if not o.fixed:
                targets.extend(representatives(ctx.sg, o)[: self.per_option])
            ranked.append((o.letter != w.option.letter, round(miss, 6), o.after, o, targets))
        ranked.sort(key=lambda r: r[:3])
        tried = 0
        for *_, o, targets in ranked:
            for p in targets:
                if tried >= self.search_budget:
                    return None
                tried += 1
                written = list(parts)
                if buf is not None:
                    written.append(closest_completion(buf, p[k], self.cd))
                tail = np.mod(np.round(np.mod(p[len(written) :], 1.0), self.cd), 1.0)
                written += [f"{v:.{self.cd}f}" for v in tail]
                hit = self._try(ctx, i, o, written, rest)
                if hit is not None:
                    return hit
                if o.fixed:
                    break  # a fixed position's orbit does not depend on the coordinates written
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
    u = g._u_formula(n)
    return n._replace(u=u) if u < BIG else None


def _step_f_cnt(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    if ch in DIGITS:
        buf = s.buf + ch
        if len(buf) > 3 or int(buf) + sum(c for _, c in s.parts) > g.max_atoms:
            return None
        n = State(F_CNT, buf, s.parts, s.aux, None, 0)
        u = g._u_formula(n)
        return n._replace(u=u) if u < BIG else None
    done = s.parts + ((s.aux, int(s.buf)),)
    if ch == " ":
        if len(done) >= g.max_elements:
            return None
        n = State(F_SYM, "", done, None, None, 0)
        u = g._u_formula(n)
        return n._replace(u=u) if u < BIG else None
    if ch == "\n":
        if g.compositions is not None and dict(done) not in g.compositions:
            return None
        orbits = g._sg_orbits(tuple(c for _, c in done))
        if not orbits:
            return None
        ctx = Ctx(formula=done, elements=tuple(el for el, _ in done))
        n = State(SG, "", (), orbits, ctx, 0)
        best = g._best_group(n, "")
        if best is None:
            return None
        return n._replace(u=g.sg_line + 2 * g.lat_line + orbits[best] * g.orbit_line)
    return None


def _step_sg(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    orbits = s.aux
    if ch in DIGITS:
        buf = s.buf + ch
        if buf[0] == "0" or len(buf) > 3:
            return None
        best = g._best_group(s, buf)
        if best is None:
            return None
        u = (4 - len(buf)) + 2 * g.lat_line + orbits[best] * g.orbit_line
        return State(SG, buf, (), orbits, s.ctx, u)
    if ch == "\n" and s.buf and int(s.buf) in orbits:
        sg = int(s.buf)
        planned = g.plan(sg, tuple(n for _, n in s.ctx.formula))
        if planned is None:
            return None
        plan, spread = planned
        ctx = replace(s.ctx, sg=sg, plan=plan, spread=spread)
        return State(LEN, "", (), None, ctx, 2 * g.lat_line + len(spread[0]) * g.orbit_line)
    return None


def _lattice_bounds(g: WyckoffGrammar, s: State) -> tuple[str | None, list[tuple[float, float]]]:
    """(forced text or None, allowed intervals) of the lattice number being read."""
    plan, k = s.ctx.plan, len(s.parts)
    if s.phase == LEN:
        forced = plan.forced_text(k, s.parts)
        if forced is not None:
            return forced, []
        return None, plan.length_intervals(tuple(float(p) for p in s.parts))
    forced = plan.forced_text(3 + k, s.ctx.lengths_text + s.parts)
    if forced is not None:
        return forced, []
    return None, [plan.angle_interval(s.ctx.lengths, tuple(float(p) for p in s.parts))]


def _step_lattice(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    is_len = s.phase == LEN
    dec = g.ld if is_len else g.ad
    forced, intervals = _lattice_bounds(g, s)
    typed = sum(len(p) + 1 for p in s.parts) + len(s.buf)
    later = g.lat_line if is_len else 0
    u = g.lat_line - typed - 1 + later + len(s.ctx.spread[0]) * g.orbit_line
    if ch in DIGITS or ch == ".":
        buf = s.buf + ch
        if forced is not None:
            if not forced.startswith(buf):
                return None
        elif not any(number_prefix_ok(buf, lo, hi, 3, dec) for lo, hi in intervals):
            return None
        return State(s.phase, buf, s.parts, None, s.ctx, u)
    if (s.buf != forced) if forced is not None else not any(number_complete(s.buf, lo, hi, dec) for lo, hi in intervals):
        return None
    parts = s.parts + (s.buf,)
    if ch == " " and len(parts) < 3:
        return State(s.phase, "", parts, None, s.ctx, u)
    if ch == "\n" and len(parts) == 3:
        values = tuple(float(p) for p in parts)
        if is_len:
            ctx = replace(s.ctx, lengths=values, lengths_text=parts)
            return State(ANG, "", (), None, ctx, g.lat_line + len(ctx.spread[0]) * g.orbit_line)
        return _start_orbits(g, s.ctx, values)
    return None


def _start_orbits(g: WyckoffGrammar, ctx: Ctx, angles: tuple[float, ...]) -> State | None:
    from pymatgen.core import Lattice

    from ...representations.base import DecodeError, check_lattice_parameters
    from ...representations.spacegroups import constrain_lattice

    if cell_factor(*angles) <= CELL_FACTOR_MIN:
        return None
    params = constrain_lattice(ctx.plan.lattice_type, *ctx.lengths, *angles)
    try:
        check_lattice_parameters(*params)
    except DecodeError:
        return None
    geom = Geometry(Lattice.from_parameters(*params), g.min_distance)
    # the first placement (box) whose lattice rules the lengths and angles met: the angles were read against the
    # union of the valid boxes' intervals, so the first box the lengths fit need not be one of them
    for box in ctx.plan.angle_boxes(ctx.lengths, angles):
        witness = []
        for o in ctx.spread[box]:  # re-decode in the real metric (identical points when written on the position)
            pts = decode_points(ctx.sg, o.option.letter, o.values(), geom.matrix)
            witness.append(Orbit(o.element, o.option, o.written, pts))
        atoms = orbit_atoms(witness)
        if geom.clear(atoms[:0] if len(atoms) < 2 else atoms):
            break
    else:
        return None  # cannot happen: the lattice rules keep a valid box's placement min_distance apart
    new = replace(
        ctx,
        geom=geom,
        rem=tuple(n for _, n in ctx.formula),
        used=frozenset(),
        avail=group_slots(ctx.sg).fixed_counts,
        occupied=EMPTY,
        witness=tuple(witness),
    )
    return State(O_EL, "", (), None, new, len(witness) * g.orbit_line)


def _step_o_el(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    ctx = s.ctx
    if ch in LETTERS:
        buf = s.buf + ch
        if len(buf) > 2 or (len(buf) == 1 and ch not in UPPER) or (len(buf) == 2 and ch not in LOWER):
            return None
        if not any(n > 0 and el.startswith(buf) for el, n in zip(ctx.elements, ctx.rem)):
            return None
        return State(O_EL, buf, (), None, ctx, g.orbit_line - len(buf) + (len(ctx.witness) - 1) * g.orbit_line)
    if ch == " " and s.buf in ctx.elements:
        i = ctx.elements.index(s.buf)
        if ctx.rem[i] == 0:
            return None
        k = next(j for j, o in enumerate(ctx.witness) if o.element == i)  # the witness fills every count
        w, rest = ctx.witness[k], ctx.witness[:k] + ctx.witness[k + 1 :]
        return State(O_CO, "", (), (i, w, rest), ctx, g._budget_line(len(s.buf), len(rest)))
    return None


def _agrees(w: Orbit, parts: tuple[str, ...], buf: str | None) -> bool:
    """Whether the witness orbit's coordinates extend the typed ones (complete values equal, prefix a prefix)."""
    for j, p in enumerate(parts):
        if float(p) != float(w.written[j]):
            return False
    return buf is None or w.written[len(parts)].startswith(buf)


def _step_o_co(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    ctx = s.ctx
    i, w, rest = s.aux
    el = ctx.elements[i]
    typed = len(el) + 1 + sum(len(p) + 1 for p in s.parts) + len(s.buf)
    hi = 1.0 - 10.0 ** (-g.cd)
    if ch in DIGITS or ch == ".":
        buf = s.buf + ch
        if not number_prefix_ok(buf, 0.0, hi, 1, g.cd):
            return None
        if not _agrees(w, s.parts, buf):
            found = g._search(ctx, i, w, rest, s.parts, buf)
            if found is None:
                return None
            w, rest = found
        return State(O_CO, buf, s.parts, (i, w, rest), ctx, g._budget_line(typed + 1, len(rest)))
    if ch == " " and number_complete(s.buf, 0.0, hi, g.cd):
        parts = s.parts + (s.buf,)
        if not _agrees(w, parts, None):
            found = g._search(ctx, i, w, rest, parts, None if len(parts) == 3 else "")
            if found is None:
                return None
            w, rest = found
        if len(parts) < 3:
            return State(O_CO, "", parts, (i, w, rest), ctx, g._budget_line(typed + 1, len(rest)))
        viable = _viable_labels(g, ctx, i, parts, w, rest)
        return State(O_MU, "", parts, (i, viable), ctx, g._budget_line(typed + 1, min(len(r) for _, r in viable)))
    return None


def _viable_labels(g: WyckoffGrammar, ctx: Ctx, i: int, parts, w: Orbit, rest) -> tuple:
    """(orbit, rest witness) for every Wyckoff label the complete triple can take; the witness's first."""
    out = [(Orbit(w.element, w.option, tuple(parts), w.points), rest)]
    for o in g.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail):
        if o.letter == w.option.letter:
            continue
        hit = g._try(ctx, i, o, parts, rest)
        if hit is not None:
            out.append(hit)
    return tuple(out)


def _step_o_mu(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    ctx = s.ctx
    i, viable = s.aux
    typed = len(ctx.elements[i]) + 1 + sum(len(p) + 1 for p in s.parts) + len(s.buf)
    if ch in DIGITS:
        buf = s.buf + ch
        if buf[0] == "0":
            return None
        match = tuple(v for v in viable if str(v[0].option.mult).startswith(buf))
        if not match:
            return None
        return State(O_MU, buf, s.parts, (i, match), ctx, g._budget_line(typed + 1, min(len(r) for _, r in match)))
    if ch in LETTERS and s.buf:
        for orbit, rest in viable:
            o = orbit.option
            if o.letter == ch and str(o.mult) == s.buf:
                rem = ctx.rem[:i] + (ctx.rem[i] - o.mult,) + ctx.rem[i + 1 :]
                used, avail = ctx.used, ctx.avail
                if o.fixed:
                    used, avail = used | {o.letter}, take_fixed(group_slots(ctx.sg), avail, o.mult)
                occupied = frozen(np.concatenate([ctx.occupied, orbit.points]))
                new = replace(ctx, rem=rem, used=used, avail=avail, occupied=occupied, witness=rest)
                return State(O_END, "", (), None, new, 1 + len(rest) * g.orbit_line)
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
_SPACE = frozenset(" ")
_DIGITS_SPACE = DIGITS | _SPACE


def next_fraction_chars(buf: str) -> frozenset[str]:
    """Characters that can follow a fractional-coordinate prefix (a superset; ``step`` decides)."""
    if buf == "":
        return frozenset("0")
    if buf == "0":
        return frozenset(".")
    return DIGITS if buf == "0." else _DIGITS_SPACE


def _next_lattice(g: WyckoffGrammar, s: State) -> frozenset[str]:
    forced, _ = _lattice_bounds(g, s)
    if forced is None:
        return NUMBER_CHARS
    if len(s.buf) < len(forced):
        return frozenset(forced[len(s.buf)])
    return frozenset(" " if len(s.parts) < 2 else "\n")


def _next_o_el(g: WyckoffGrammar, s: State) -> frozenset[str]:
    ctx, buf = s.ctx, s.buf
    left = [el for el, n in zip(ctx.elements, ctx.rem) if n > 0]
    if not buf:
        return frozenset(el[0] for el in left)
    out = {el[1] for el in left if len(el) == 2 and el[0] == buf}
    if buf in left:
        out.add(" ")
    return frozenset(out)


def _next_o_mu(g: WyckoffGrammar, s: State) -> frozenset[str]:
    buf, k = s.buf, len(s.buf)
    out = set()
    for orbit, _ in s.aux[1]:
        m = str(orbit.option.mult)
        if m.startswith(buf):
            if len(m) > k:
                out.add(m[k])
            elif buf:
                out.add(orbit.option.letter)
    return frozenset(out)


def _next_f_sym(g: WyckoffGrammar, s: State) -> frozenset[str]:
    if s.buf == "":
        return UPPER
    return LOWER | DIGITS


_NEXT = {
    F_SYM: _next_f_sym,
    F_CNT: lambda g, s: DIGITS | {" ", "\n"},
    SG: lambda g, s: DIGITS | {"\n"},
    LEN: _next_lattice,
    ANG: _next_lattice,
    O_EL: _next_o_el,
    O_CO: lambda g, s: next_fraction_chars(s.buf),
    O_MU: _next_o_mu,
    O_END: lambda g, s: frozenset("\n"),
    END: lambda g, s: frozenset(),
}
