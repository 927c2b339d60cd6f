"""The infilling answer grammar: one element symbol, then the end of text."""

from __future__ import annotations

from collections.abc import Iterable

from .base import LETTERS, CharGrammar, State, element_symbols

PHASE = 30


class ElementGrammar(CharGrammar):
    """Infilling answers: one element symbol, then the end of text."""

    name = "element"

    def __init__(self, elements: Iterable[str] | None = None):
        self.elements = frozenset(elements) if elements is not None else frozenset(element_symbols())
        self.prefixes = {el[:k] for el in self.elements for k in range(1, len(el) + 1)}

    def initial(self) -> State:
        return State(PHASE, "", (), None, None, 2)

    def can_end(self, state: State) -> bool:
        return state.buf in self.elements

    def next_chars(self, state: State) -> frozenset[str]:
        return LETTERS

    def step(self, state: State, ch: str) -> State | None:
        buf = state.buf + ch
        if buf not in self.prefixes:
            return None
        return State(PHASE, buf, (), None, None, 2 - len(buf))

    def check_feasible(self) -> None:
        if not self.elements:
            raise ValueError("no elements allowed")
