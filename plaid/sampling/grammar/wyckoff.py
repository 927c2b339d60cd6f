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
a completion, never accept one without. ``u`` is the length bound of the witness's text. Where a check proves that
every completion of a coordinate's prefix is valid (``_slide``), the coordinate's later digits are accepted
without one: their witness is the typed value itself, decoded when the coordinate is complete.

This module holds the grammar's set-up (formula costs, space-group plans, witness search); the per-line step
functions and the parse context are in ``wyckoff_lines``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .base import (
    BIG,
    CharGrammar,
    State,
    element_prefixes,
    element_symbols,
)
from .cell import LatticePlan
from .numbers import closest_completion, prefix_interval
from .placement import (
    Orbit,
    decode_points,
    find_placement,
    ignored_coordinate,
    independent_parameter,
    orbit_atoms,
    representatives,
    spread_placement,
)
from .sites import SiteCounter, group_slots, take_fixed, wyckoff_position
from .wyckoff_lines import END, F_SYM, NEXT, O_END, STEP, Ctx

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

# plans (lattice rules and spread placements) by grammar settings, group and formula, shared by grammars: CSP and
# conditioned sampling build one grammar per prompt, and the spread placements are the costly part of a new one
_PLANS: OrderedDict = OrderedDict()
_PLANS_KEPT = 4096


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
        self.fraction_max = 1.0 - 10.0 ** (-self.cd)  # the largest fractional coordinate written
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
        self._best_memo: dict = {}
        self._formula_steps: dict = {}
        # the direct first try of a departing coordinate digit (``_slide``); False runs every search in full (the
        # definition, which tests compare with: the same characters accepted, the same completion lengths)
        self.shortcuts = True

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
        return NEXT[state.phase](self, state)

    def step(self, state: State, ch: str) -> State | None:
        if state.ctx is not None:
            return STEP[state.phase](self, state, ch)
        # the formula line: its states are values (no lattice, no atoms), so rows and calls share their steps
        key = (state, ch)
        try:
            return self._formula_steps[key]
        except KeyError:
            pass
        if len(self._formula_steps) >= 1 << 16:
            self._formula_steps.clear()
        out = self._formula_steps[key] = STEP[state.phase](self, state, ch)
        return out

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
        shared = (self.max_atoms, self.cd, self.min_distance, self.length_range, self.volume_per_atom, self.ld,
                  self.ad, sg, counts)
        if shared in _PLANS:  # another grammar with the same settings planned this group and formula already
            _PLANS.move_to_end(shared)
            self._plans[key] = _PLANS[shared]
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
        self._plans[key] = _PLANS[shared] = out
        if len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
        return out

    def _best_group(self, s: State, prefix: str) -> int | None:
        """The cheapest group starting with ``prefix`` that has a plan (None if none; memoised per formula)."""
        counts = tuple(n for _, n in s.ctx.formula)
        key = (counts, prefix)
        if key not in self._best_memo:
            self._best_memo[key] = None
            for g, _ in sorted(s.aux.items(), key=lambda kv: (kv[1], kv[0])):
                if str(g).startswith(prefix) and self.plan(g, counts) is not None:
                    self._best_memo[key] = g
                    break
        return self._best_memo[key]

    # -------------------------------------------------------------------------------------- witnesses
    def _budget_line(self, typed: int, rest: int) -> int:
        return self.orbit_line - typed - 1 + rest * self.orbit_line

    def _rest_after(
        self, ctx: Ctx, orbit: Orbit, rest: tuple[Orbit, ...], apart: Sequence[bool]
    ) -> tuple[Orbit, ...] | None:
        """A witness for what is left once ``orbit`` is placed, repaired from ``rest`` (the witness it replaces
        the first orbit of): its orbits clear of the new one are kept (while the counts allow), the others are
        placed again by a bounded search; if that fails, a search from scratch. None if neither finds one.
        ``apart``: whether each orbit of ``rest`` is clear of ``orbit`` (measured by the caller, ``_try``)."""
        o, i = orbit.option, orbit.element
        rem = ctx.rem[:i] + (ctx.rem[i] - o.mult,) + ctx.rem[i + 1 :]
        kept = [
            r
            for r, clear in zip(rest, apart)
            if clear and not (o.fixed and r.option.fixed and r.option.letter == o.letter)
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
        """The orbit ``written`` at ``option`` if its atoms are clear of each other and of the atoms placed, with
        a witness for the rest (``_rest_after``); None otherwise. One distance computation for all the checks."""
        pts = decode_points(ctx.sg, option.letter, [float(v) for v in written], ctx.geom.matrix)
        own, occupied, *to_rest = ctx.geom.separations(pts, ctx.occupied, *(r.points for r in rest))
        d = self.min_distance
        if own < d or occupied < d:
            return None
        orbit = Orbit(i, option, tuple(written), pts)
        new_rest = self._rest_after(ctx, orbit, rest, [x >= d for x in to_rest])
        return None if new_rest is None else (orbit, new_rest)

    def _written(self, parts: tuple[str, ...], buf: str | None, p) -> list[str]:
        """Coordinates ``parts``, then the completion of ``buf`` closest to ``p``'s, then ``p``'s own."""
        written = list(parts)
        if buf is not None:
            written.append(closest_completion(buf, p[len(parts)], self.cd))
        scale = 10.0**self.cd  # np.mod(np.round(np.mod(v, 1), cd), 1) bit for bit, without arrays for 3 numbers
        for v in p[len(written) :]:
            written.append(f"{(round((float(v) % 1.0) * scale) / scale) % 1.0:.{self.cd}f}")
        return written

    def _slide(self, ctx: Ctx, i: int, w: Orbit, rest, parts: tuple[str, ...], buf: str):
        """The search's first try, computed directly where it can be: the witness's own position with the
        coordinate being typed moved to the completion of ``buf`` closest to the witness's value, the rest of the
        witness kept. Applies in an orthogonal cell when that coordinate is an independent free parameter of the
        position or one the position fixes (``Geometry.speed``): the moved orbit is checked with one distance computation against itself,
        the atoms placed and the rest of the witness.

        At a fixed position the decoder ignores the coordinates written, so the witness's atoms do not move and
        every completion is valid.

        Returns (orbit, rest, every) where the try succeeds: exactly what ``_search`` returns then, and
        ``every`` says whether *every* completion of ``buf`` keeps the witness valid: measured at the middle m of
        the prefix's values, each atom of a completion x is at most ``speed * |x - m|`` away, so distances change
        by at most that (twice that within the orbit), and it holds when the margins exceed it; the witness
        returned is then the old orbit, decoded at the typed value once the coordinate is complete. Then the rest
        of the coordinate needs no search. None where it does not apply or the
        try fails (the caller then searches as before)."""
        geom, k = ctx.geom, len(parts)
        if not self.shortcuts or self.search_budget <= 0:
            return None
        fixed = w.option.fixed
        speed = None if fixed or not geom.orthogonal else geom.speed(ctx.sg, w.option.letter, k)
        if speed is None and not fixed:
            return None
        options = self.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail)
        o = next((x for x in options if x.letter == w.option.letter), None)  # the search's own position
        if o is None:
            return None
        d, margin = self.min_distance, 1e-6  # margin: far above rounding (the decoder rounds points to 1e-8)
        if speed:  # an independent coordinate: are all completions of buf valid? (checked at their middle)
            lo, hi = prefix_interval(buf, self.cd)
            j = independent_parameter(ctx.sg, o.letter, k)
            shift = (lo + hi) / 2 - float(w.written[k])
            middle = w.points + shift * wyckoff_position(ctx.sg, o.letter).ops[:, :, j]
            own, near = geom.separations(middle, np.concatenate([ctx.occupied, orbit_atoms(rest)]))
            move = speed * (hi - lo) / 2
            if near - move >= d + margin and own - 2 * move >= d + margin:
                return w, rest, True  # the witness orbit is decoded again once the coordinate is complete
        # ``_written(parts, buf, w.values())``: the witness's later coordinates are already written on the grid
        written = (*parts, closest_completion(buf, float(w.written[k]), self.cd), *w.written[k + 1 :])
        if fixed:  # the decoder ignores a fixed position's coordinates: the witness's atoms stay where they are
            return Orbit(i, o, written, w.points), rest, True
        if speed == 0.0 and ignored_coordinate(ctx.sg, o.letter, k):
            return Orbit(i, o, written, w.points), rest, True  # the decoder never reads it: the same atoms
        pts = decode_points(ctx.sg, o.letter, [float(v) for v in written], geom.matrix)
        if speed == 0.0:  # a coordinate the position fixes: the same atoms, checked, so the same valid witness
            step = pts - w.points
            if np.abs(step - np.round(step)).max(initial=0.0) <= 1e-9:
                return Orbit(i, o, written, pts), rest, True
            speed = None  # not the same atoms after all (cannot happen in an orthogonal cell): check them
        own, near = geom.separations(pts, np.concatenate([ctx.occupied, orbit_atoms(rest)]))
        if near < d or own < d:
            return None
        return Orbit(i, o, written, pts), rest, False

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

        def attempt(o, p):
            return self._try(ctx, i, o, self._written(parts, buf, p), rest)

        options = list(self.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail))
        own = next((o for o in options if o.letter == w.option.letter), None)
        if own is not None and self.search_budget > 0:
            # the ranking below always tries the witness's own position at its own values first: try it before
            # ranking (most departures are a digit the witness's neighbourhood accepts), and not again below
            hit = attempt(own, np.array(w.values()))
            if hit is not None:
                return hit
        group = space_group(ctx.sg)
        ranked = []
        for o in options:
            wp = group.wyckoff[o.letter]
            q, _ = wp.project(typed)
            near = wp.representative(q)
            miss = np.abs((near - typed + 0.5) % 1.0 - 0.5)[:n_typed].max(initial=0.0)
            targets = [near]
            if o is own:
                targets.insert(0, None)  # already tried
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
                hit = None if p is None else attempt(o, p)
                if hit is not None:
                    return hit
                if o.fixed:
                    break  # a fixed position's orbit does not depend on the coordinates written
        return None
