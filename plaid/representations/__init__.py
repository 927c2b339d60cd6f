"""Crystal <-> text representations.

``get(name)`` returns a ``Representation`` with ``encode(Structure) -> str`` and ``decode(str) -> Structure``;
``decode`` raises ``DecodeError`` (a ``ValueError``) for any text that does not describe a crystal.

- ``wyckoff``: plaid's compact Wyckoff text (formula, space group, lattice, one line per Wyckoff orbit).
- ``wyckoff-plaid``: PLaID's released Wyckoff text, byte for byte (pyxtal formula, ``Spacegroup: F-43m``, ``abc:``,
  ``angles:``, ``Sites (N)``, orbit lines).
- ``coords``: Gruver et al.'s plain lattice + one element and one coordinate line per site.
- ``cif``: CrystaLLM-style standardized, symmetrized CIF.
"""

from __future__ import annotations

from .base import MASK, DecodeError, EncodeError, Representation
from .cif import CifRepresentation
from .coords import CoordsRepresentation
from .wyckoff import WyckoffRepresentation
from .wyckoff_plaid import PlaidWyckoffRepresentation

REGISTRY: dict[str, type[Representation]] = {
    "wyckoff": WyckoffRepresentation,
    "wyckoff-plaid": PlaidWyckoffRepresentation,
    "coords": CoordsRepresentation,
    "cif": CifRepresentation,
}


def available() -> list[str]:
    return list(REGISTRY)


def get(name: str, **options) -> Representation:
    """The representation registered as ``name``; ``options`` go to its constructor (precision, symprec...)."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown representation {name!r}; choose from {', '.join(REGISTRY)}") from None
    return cls(**options)


__all__ = [
    "MASK",
    "DecodeError",
    "EncodeError",
    "Representation",
    "WyckoffRepresentation",
    "PlaidWyckoffRepresentation",
    "CoordsRepresentation",
    "CifRepresentation",
    "available",
    "get",
]
