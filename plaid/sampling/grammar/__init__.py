"""Character-level incremental validators ("grammars") for constrained decoding, one module per concept:

- ``base``: the immutable ``State``, character classes, ``CharGrammar.feed``;
- ``numbers``: fixed-point numbers as an automaton against an interval;
- ``sites``: Wyckoff site counting (``SiteCounter``: fewest orbits filling element counts);
- ``cell``: lattice rules (crystal system, cell, volume per atom, smallest singular value) as intervals;
- ``placement``: decoded orbits, interatomic distances, witness placements;
- ``wyckoff``, ``coords``, ``element``: the grammars of the Wyckoff text, the coords text and infill answers;
- ``wyckoff_plaid``: PLaID's released Wyckoff text, as a translation onto ``wyckoff``'s grammar.

A grammar's interface, used per row by ``constrained.GrammarLogitsProcessor`` (and by any other decoder, e.g.
tree search): ``initial() -> State``; ``step(state, ch) -> State | None``; ``next_chars(state)`` (a superset of the
characters ``step`` accepts); ``can_end(state)``; ``feed(text, state)``; ``state.u`` (a completion's length bound).
States are immutable tuples: any number of rows or search branches can share and extend one.
"""

from .base import BIG, CharGrammar, State, element_symbols
from .cell import CELL_FACTOR_MIN, LatticePlan, angle_interval, cell_factor
from .coords import CoordsGrammar
from .element import ElementGrammar
from .numbers import number_complete, number_prefix_ok
from .sites import GroupSlots, Option, SiteCounter, group_slots
from .wyckoff import WyckoffGrammar
from .wyckoff_plaid import PlaidWyckoffGrammar

__all__ = [
    "BIG",
    "CELL_FACTOR_MIN",
    "CharGrammar",
    "CoordsGrammar",
    "ElementGrammar",
    "GroupSlots",
    "LatticePlan",
    "Option",
    "PlaidWyckoffGrammar",
    "SiteCounter",
    "State",
    "WyckoffGrammar",
    "angle_interval",
    "cell_factor",
    "element_symbols",
    "group_slots",
    "number_complete",
    "number_prefix_ok",
]
