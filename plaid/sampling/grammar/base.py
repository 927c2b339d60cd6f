"""What every grammar shares: the immutable parse state, character classes and the ``feed`` loop.

A grammar walks generated text one character at a time. ``step(state, ch)`` returns the next state, or None when
``ch`` cannot be part of any text the representation's decoder accepts. Every state also carries ``u``: the length
in characters of one concrete completion from it (an upper bound on the shortest one). Each character of that
completion lowers ``u`` by at least one, so a decoder that only emits tokens whose state has ``u <=`` tokens left
never runs out of budget: every sample ends as a complete, decodable text within ``max_new_tokens``.
"""

from __future__ import annotations

import string
from functools import lru_cache
from typing import Any, NamedTuple

BIG = 10**9
DIGITS = frozenset(string.digits)
UPPER = frozenset(string.ascii_uppercase)
LOWER = frozenset(string.ascii_lowercase)
LETTERS = UPPER | LOWER
NUMBER_CHARS = DIGITS | {".", " ", "\n"}


class State(NamedTuple):
    """An immutable parse state (a tuple: no field can be reassigned); ``u`` is the length of a completion.

    ``phase`` says which part of the text is being read, ``buf`` the characters of the current token, ``parts``
    the finished tokens of the current line, ``aux`` phase-specific data and ``ctx`` what earlier lines fixed."""

    phase: int
    buf: str
    parts: tuple
    aux: Any
    ctx: Any
    u: int


@lru_cache(maxsize=1)
def element_symbols() -> tuple[str, ...]:
    from pymatgen.core import Element

    return tuple(e.symbol for e in Element if Element.is_valid_symbol(e.symbol))


def element_prefixes(elements) -> dict[str, frozenset[str]]:
    """Every prefix of every symbol -> the symbols it starts."""
    out: dict[str, frozenset[str]] = {}
    for el in elements:
        for k in range(1, len(el) + 1):
            out[el[:k]] = out.get(el[:k], frozenset()) | {el}
    return out


class CharGrammar:
    """Character-level grammar: subclasses define ``initial()``, ``step(state, ch)``, ``next_chars(state)``
    (a superset of the characters ``step`` accepts) and ``can_end(state)``."""

    name = ""

    def initial(self) -> State:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, state: State, ch: str) -> State | None:  # pragma: no cover - interface
        raise NotImplementedError

    def feed(self, text: str, state: State | None = None) -> State | None:
        state = state or self.initial()
        for ch in text:
            state = self.step(state, ch)
            if state is None:
                return None
        return state

    def random_text(self, rng, budget: int, end_probability: float = 0.3, state: State | None = None) -> str:
        """A uniformly-stepped random walk through the grammar (no model) from ``state`` (default: the initial
        state; the text returned is what follows it): at each step, end with ``end_probability`` where the text may
        end, else a random acceptable character whose completion fits the remaining ``budget``. Raises RuntimeError
        at a dead end (a state with no acceptable character that cannot end), which the grammar's construction
        rules out."""
        state, text = state or self.initial(), []
        while True:
            budget -= 1
            if self.can_end(state) and rng.random() < end_probability:
                return "".join(text)
            chars = sorted(self.next_chars(state))
            rng.shuffle(chars)
            for ch in chars:
                nxt = self.step(state, ch)
                if nxt is not None and nxt.u <= budget:
                    break
            else:
                if self.can_end(state):
                    return "".join(text)
                raise RuntimeError(f"dead end after {''.join(text)!r}")
            state = nxt
            text.append(ch)

    def check_feasible(self) -> None:
        """Raise ValueError if no text satisfies the grammar's conditions."""
        self.initial()
