"""The grammar of the coords representation (Gruver et al.): three lengths, three angles, then an element line
and a fractional-coordinate line per site."""

from __future__ import annotations

from collections.abc import Iterable

from .base import LETTERS, LOWER, NUMBER_CHARS, UPPER, CharGrammar, State, element_symbols
from .cell import CELL_FACTOR_MIN, angle_interval, cell_factor
from .numbers import number_complete, number_prefix_ok
from .wyckoff_lines import next_fraction_chars

C_LEN, C_ANG, C_EL, C_CO = range(20, 24)


class CoordsGrammar(CharGrammar):
    """Incremental validator of the coords representation: enforces lengths in ``length_range``, angles in
    ``angle_range`` that form a cell (as the decoder checks), known elements, coordinates in [0, 1] (crystal-text-llm
    writes 0.996 as ``1.00``) and at most
    ``max_atoms`` sites; the text may end after any complete coordinate line. (The decoder states no space
    group, so there is no crystal-system rule; Wyckoff-only options such as ``min_distance`` are ignored.)"""

    name = "coords"

    def __init__(
        self,
        elements: Iterable[str] | None = None,
        max_atoms: int = 256,
        length_range: tuple[float, float] = (1.0, 100.0),
        angle_range: tuple[float, float] = (10.0, 170.0),
        length_decimals: int = 1,
        angle_decimals: int = 0,
        coord_decimals: int = 2,
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

    def _coord_done(self, parts: tuple, buf: str) -> bool:
        return len(parts) == 2 and number_complete(buf, 0.0, 1.0, self.cd)

    def can_end(self, s: State) -> bool:
        if s.phase == C_EL:
            return s.buf == "" and s.aux > 0
        if s.phase == C_CO:
            return self._coord_done(s.parts, s.buf)
        return False

    def next_chars(self, s: State) -> frozenset[str]:
        if s.phase == C_EL:
            return (UPPER if s.buf == "" else LOWER | {"\n"}) if len(s.buf) < 2 else frozenset("\n")
        if s.phase == C_CO:
            if s.buf in ("", "1") or s.buf.startswith("1."):  # 1.00: a coordinate rounded up, as the encoder writes
                return frozenset("01") if not s.buf else frozenset(".") if s.buf == "1" else frozenset("0 \n")
            return next_fraction_chars(s.buf) | ({"\n"} if s.buf not in ("", "0", "0.") else set())
        return NUMBER_CHARS

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
            if ch in "0123456789.":
                buf = s.buf + ch
                return State(s.phase, buf, s.parts, 0, None, u) if number_prefix_ok(buf, lo, hi, 3, dec) else None
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
        hi = 1.0
        typed = sum(len(p) + 1 for p in s.parts) + len(s.buf)
        if ch in "0123456789.":
            buf = s.buf + ch
            if not number_prefix_ok(buf, 0.0, hi, 1, self.cd):
                return None
            return State(C_CO, buf, s.parts, sites, None, 0 if self._coord_done(s.parts, buf) else self.co_line - typed - 1)
        if not number_complete(s.buf, 0.0, hi, self.cd):
            return None
        if ch == " " and len(s.parts) < 2:
            return State(C_CO, "", s.parts + (s.buf,), sites, None, self.co_line - typed - 1)
        if ch == "\n" and len(s.parts) == 2:
            return State(C_EL, "", (), sites + 1, None, 0)
        return None
