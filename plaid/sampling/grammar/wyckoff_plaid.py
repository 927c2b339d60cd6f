"""The grammar of PLaID's released Wyckoff text (``plaid.representations.wyckoff_plaid``), built on the grammar of
plaid's ``wyckoff`` text (one implementation of the Wyckoff rules): the two texts say the same things in different
words, so this grammar reads PLaID's characters and steps an inner ``WyckoffGrammar`` with their ``wyckoff`` form.

    PLaID text                            fed to the inner grammar
    Zr4Ni4Pd4                             Zr4 Ni4 Pd4          (a space before each element after the first)
    Spacegroup: F-43m                     216                  (pyxtal symbol -> number, at the newline)
    abc: 6.15 6.15 6.15                   6.15 6.15 6.15
    angles: 90.00 90.00 90.00             90.00 90.00 90.00
    Sites (12)                            -                    (forced: the formula's atom count)
    Zr 0.000 0.000 0.000 4a ...           the same orbit lines

Literal words are forced one character at a time. A symbol prefix is accepted only if some pyxtal symbol with that
prefix names a group the inner grammar accepts at that point and that has a lattice plan, so the inner grammar's
no-dead-end guarantee carries over. ``u`` is the inner completion's length plus the words it does not count.
"""

from __future__ import annotations

from .base import UPPER, CharGrammar, State
from .wyckoff import WyckoffGrammar
from .wyckoff_lines import F_CNT, SG

P_FORMULA, P_LITERAL, P_SYMBOL, P_LENGTHS, P_ANGLES, P_ORBITS = range(6)
SPACEGROUP, ABC, ANGLES = "Spacegroup: ", "abc: ", "angles: "


def _sites_line(counts) -> str:
    return f"Sites ({sum(counts)})\n"


class PlaidWyckoffGrammar(CharGrammar):
    """Incremental validator of PLaID's Wyckoff text over an inner ``WyckoffGrammar`` (its conditions, bounds and
    distances). State: ``phase``; ``buf`` the literal or symbol read so far; ``aux`` (literal, next phase) in a
    literal; ``ctx`` the inner grammar's state."""

    name = "wyckoff-plaid"

    def __init__(self, inner: WyckoffGrammar | None = None, **options):
        from plaid.representations.wyckoff_plaid import pyxtal_symbols

        self.inner = inner if inner is not None else WyckoffGrammar(**options)
        self.symbols = {sym: i + 1 for i, sym in enumerate(pyxtal_symbols())}
        self.max_symbol = max(map(len, self.symbols))
        self.sites_max = len(_sites_line([self.inner.max_atoms]))
        # words the inner bound does not count, beyond its 4-character space-group line
        self._after_formula = len(SPACEGROUP) + self.max_symbol + 1 - self.inner.sg_line + len(ABC) + len(ANGLES)

    # ------------------------------------------------------------------------------------------ interface
    def initial(self) -> State:
        inner = self.inner.initial()
        return State(P_FORMULA, "", (), None, inner, inner.u + self._after_formula + self.sites_max)

    def check_feasible(self) -> None:
        self.inner.check_feasible()

    def can_end(self, state: State) -> bool:
        return state.phase == P_ORBITS and self.inner.can_end(state.ctx)

    def next_chars(self, state: State) -> frozenset[str]:
        phase, inner = state.phase, state.ctx
        if phase == P_FORMULA:
            chars = self.inner.next_chars(inner) - {" "}
            return chars | UPPER if inner.phase == F_CNT else chars
        if phase == P_LITERAL:
            return frozenset(state.aux[0][len(state.buf)])
        if phase == P_SYMBOL:
            k = len(state.buf)
            out = {sym[k] for sym in self._candidates(state, state.buf) if len(sym) > k}
            if state.buf in self.symbols:
                out.add("\n")
            return frozenset(out)
        return self.inner.next_chars(inner)

    def step(self, state: State, ch: str) -> State | None:
        phase, inner = state.phase, state.ctx
        if phase == P_FORMULA:
            if ch == " ":
                return None
            if ch in UPPER and inner.phase == F_CNT:
                inner = self.inner.step(inner, " ")
                if inner is None:
                    return None
            inner = self.inner.step(inner, ch)
            if inner is None:
                return None
            if inner.phase == SG:
                return self._literal(SPACEGROUP, P_SYMBOL, inner, self._rest_after_symbol(inner))
            return State(P_FORMULA, "", (), None, inner, inner.u + self._after_formula + self.sites_max)
        if phase == P_LITERAL:
            literal, after = state.aux
            buf = state.buf + ch
            if not literal.startswith(buf):
                return None
            if len(buf) < len(literal):
                return State(P_LITERAL, buf, (), state.aux, inner, state.u - 1)
            if after == P_SYMBOL:
                return self._symbol_state(inner, "")
            return State(after, "", (), None, inner, state.u - 1)
        if phase == P_SYMBOL:
            return self._step_symbol(state, ch)
        nxt = self.inner.step(inner, ch)
        if nxt is None:
            return None
        if phase == P_LENGTHS and nxt.phase != inner.phase:  # the lengths line ended
            return self._literal(ANGLES, P_ANGLES, nxt, self._sites(nxt))
        if phase == P_ANGLES and nxt.phase != inner.phase:  # the angles line ended: orbit lines come next
            return self._literal(self._sites_text(nxt), P_ORBITS, nxt, 0)
        extra = len(ANGLES) + self._sites(nxt) if phase == P_LENGTHS else self._sites(nxt) if phase == P_ANGLES else 0
        return State(phase, "", (), None, nxt, nxt.u + extra)

    # ------------------------------------------------------------------------------------------ helpers
    def _literal(self, text: str, after: int, inner: State, rest: int) -> State:
        return State(P_LITERAL, "", (), (text, after), inner, len(text) + rest)

    def _sites_text(self, inner: State) -> str:
        return _sites_line(n for _, n in inner.ctx.formula)

    def _sites(self, inner: State) -> int:
        return len(self._sites_text(inner))

    def _rest_after_symbol(self, inner: State) -> int:
        """A bound on everything after ``Spacegroup: `` (the inner bound counts a 4-character number line)."""
        return inner.u - self.inner.sg_line + self.max_symbol + 1 + len(ABC) + len(ANGLES) + self._sites(inner)

    def _candidates(self, state: State, prefix: str) -> list[str]:
        groups = state.ctx.aux  # the inner space-group state's {group: fewest orbits}
        return [sym for sym, n in self.symbols.items() if sym.startswith(prefix) and n in groups]

    def _after_number(self, inner: State, number: int) -> State | None:
        return self.inner.feed(f"{number}\n", inner)

    def _symbol_state(self, inner: State, buf: str) -> State | None:
        """The state after reading symbol prefix ``buf``: None unless some symbol completing it names a group the
        inner grammar can finish; ``u`` from the cheapest such group."""
        best = None
        ranked = sorted(self._candidates(State(P_SYMBOL, buf, (), None, inner, 0), buf),
                        key=lambda sym: (inner.aux[self.symbols[sym]], len(sym)))
        for sym in ranked:
            after = self._after_number(inner, self.symbols[sym])
            if after is not None:
                best = len(sym) - len(buf) + 1 + len(ABC) + after.u + len(ANGLES) + self._sites(inner)
                break
        if best is None:
            return None
        return State(P_SYMBOL, buf, (), None, inner, best)

    def _step_symbol(self, state: State, ch: str) -> State | None:
        inner = state.ctx
        if ch == "\n":
            number = self.symbols.get(state.buf)
            if number is None or number not in inner.aux:
                return None
            after = self._after_number(inner, number)
            if after is None:
                return None
            return self._literal(ABC, P_LENGTHS, after, after.u + len(ANGLES) + self._sites(inner))
        return self._symbol_state(inner, state.buf + ch)
