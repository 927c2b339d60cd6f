"""The Wyckoff grammar's parse phases, its context (what earlier lines fixed) and its per-phase step and
next-character functions, one per line of the text (``wyckoff.WyckoffGrammar`` dispatches to them)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .base import (
    BIG,
    DIGITS,
    LETTERS,
    LOWER,
    NUMBER_CHARS,
    UPPER,
    State,
)
from .cell import CELL_FACTOR_MIN, LatticePlan, cell_factor
from .numbers import number_complete, number_prefix_ok
from .placement import (
    EMPTY,
    Geometry,
    Orbit,
    decode_points,
    frozen,
    orbit_atoms,
)
from .sites import group_slots, take_fixed

if TYPE_CHECKING:
    from .wyckoff import WyckoffGrammar

# phases
F_SYM, F_CNT, SG, LEN, ANG, O_EL, O_CO, O_MU, O_END, END = range(10)
_FRACTION_CHARS = DIGITS | {"."}


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
    """(forced text or None, allowed intervals) of the lattice number being read (kept in ``aux`` once the
    number has a character)."""
    if s.aux is not None:
        return s.aux
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
        return State(s.phase, buf, s.parts, (forced, intervals), s.ctx, u)
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
        return State(O_CO, "", (), (i, w, rest, None), ctx, g._budget_line(len(s.buf), len(rest)))
    return None


def _agrees(w: Orbit, parts: tuple[str, ...], buf: str | None) -> bool:
    """Whether the witness orbit's coordinates extend the typed ones (complete values equal, prefix a prefix)."""
    for j, p in enumerate(parts):
        if float(p) != float(w.written[j]):
            return False
    return buf is None or w.written[len(parts)].startswith(buf)


def _step_o_co(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    """A coordinate character. ``aux`` = (element, witness orbit, rest of the witness, ``every``): ``every`` is
    a prefix of the coordinate being typed every completion of which keeps the witness's position valid with the
    same rest (``WyckoffGrammar._slide``; None if not known). Its digits then need no search, and the witness
    orbit is decoded again only once the coordinate is complete: the same states of the witness as a search per
    digit would give, without the searches."""
    ctx = s.ctx
    i, w, rest, every = s.aux
    typed = len(ctx.elements[i]) + 1 + len(s.parts) + sum(map(len, s.parts)) + len(s.buf)
    hi = g.fraction_max
    if ch in _FRACTION_CHARS:
        buf = s.buf + ch
        if not number_prefix_ok(buf, 0.0, hi, 1, g.cd):
            return None
        if every is None and not w.written[len(s.parts)].startswith(buf):  # (w agrees with s.parts already)
            slid = g._slide(ctx, i, w, rest, s.parts, buf)
            if slid is not None:
                w, rest, whole = slid
                every = buf if whole else None
            else:
                found = g._search(ctx, i, w, rest, s.parts, buf)
                if found is None:
                    return None
                w, rest = found
        return State(O_CO, buf, s.parts, (i, w, rest, every), ctx, g._budget_line(typed + 1, len(rest)))
    if ch == " " and number_complete(s.buf, 0.0, hi, g.cd):
        parts = s.parts + (s.buf,)
        if every is not None:  # the witness's position at the typed value, its rest unchanged
            written = parts + w.written[len(parts) :]
            if w.option.fixed or ctx.geom.speed(ctx.sg, w.option.letter, len(s.parts)) == 0.0:
                pts = w.points  # the decoder ignores this coordinate (``Geometry.speed``): the same atoms
            else:
                pts = decode_points(ctx.sg, w.option.letter, [float(v) for v in written], ctx.geom.matrix)
            w = Orbit(w.element, w.option, written, pts)
        elif not _agrees(w, parts, None):
            found = g._search(ctx, i, w, rest, parts, None if len(parts) == 3 else "")
            if found is None:
                return None
            w, rest = found
        if len(parts) < 3:
            return State(O_CO, "", parts, (i, w, rest, None), ctx, g._budget_line(typed + 1, len(rest)))
        first = (Orbit(w.element, w.option, tuple(parts), w.points), rest)
        return State(O_MU, "", parts, (i, (first,), False, first), ctx, g._budget_line(typed + 1, len(rest)))
    return None


def _viable_labels(g: WyckoffGrammar, ctx: Ctx, i: int, parts, w: Orbit, rest) -> tuple:
    """(orbit, rest witness) for every Wyckoff label the complete triple can take; the witness's (``w``) first."""
    out = [(Orbit(w.element, w.option, tuple(parts), w.points), rest)]
    for o in g.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail):
        if o.letter == w.option.letter:
            continue
        hit = g._try(ctx, i, o, parts, rest)
        if hit is not None:
            out.append(hit)
    return tuple(out)


def _labels(g: WyckoffGrammar, s: State) -> tuple:
    """Every (orbit, rest witness) the complete triple can take whose multiplicity starts with ``s.buf``."""
    i, viable, complete, (orbit, rest) = s.aux
    if not complete:
        viable = _viable_labels(g, s.ctx, i, s.parts, orbit, rest)
    return tuple(v for v in viable if str(v[0].option.mult).startswith(s.buf))


def _step_o_mu(g: WyckoffGrammar, s: State, ch: str) -> State | None:
    """A Wyckoff-label character. ``aux`` = (element, labels, complete, witness): ``labels`` are (orbit, rest
    witness) pairs of labels the triple can take with the multiplicity typed so far, all of them (``complete``,
    ``_labels``) or those found so far, the witness's own first; ``witness`` is the (orbit, rest) the coordinates
    ended with. Positions are tried only when the text departs from the labels found, one at a time, so a
    character is accepted exactly when some label that allows it can take the triple."""
    ctx = s.ctx
    i, viable, complete, base = s.aux
    typed = len(ctx.elements[i]) + 1 + sum(len(p) + 1 for p in s.parts) + len(s.buf)
    if ch in DIGITS:
        buf = s.buf + ch
        if buf[0] == "0":
            return None
        match = tuple(v for v in viable if str(v[0].option.mult).startswith(buf))
        if not match and not complete:  # departs from the labels known: the first position it allows that fits
            for o in g.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail):
                if str(o.mult).startswith(buf) and o.letter != base[0].option.letter:
                    hit = g._try(ctx, i, o, s.parts, base[1])
                    if hit is not None:
                        match = (hit,)
                        break
        if not match:
            return None
        u = g._budget_line(typed + 1, min(len(r) for _, r in match))
        return State(O_MU, buf, s.parts, (i, match, complete, base), ctx, u)
    if ch in LETTERS and s.buf:
        if not complete and not any(o.option.letter == ch and str(o.option.mult) == s.buf for o, _ in viable):
            # a label other than the witness's: try that position alone (what ``_viable_labels`` would find)
            viable = ()
            for o in g.counter.options(ctx.sg, ctx.rem, i, ctx.used, ctx.avail):
                if o.letter == ch and str(o.mult) == s.buf:
                    hit = g._try(ctx, i, o, s.parts, base[1])
                    viable = (hit,) if hit is not None else ()
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


STEP = {
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
    for orbit, _ in _labels(g, s):
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


NEXT = {
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
