"""The representation interface: a structure <-> text codec with one error type for bad text."""

from __future__ import annotations

import math
import re
import warnings
from abc import ABC, abstractmethod

import numpy as np
from pymatgen.core import Element, Lattice, Structure

MAX_SITES = 1024  # a decoded cell larger than this is rejected rather than built
MAX_LENGTH = 500.0  # Angstrom; longer lattice vectors are non-physical for these datasets
MASK = "[MASK]"
_ELEMENT_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


class DecodeError(ValueError):
    """Text that does not describe a crystal. The message says what is wrong."""


class EncodeError(ValueError):
    """A structure that cannot be written in a representation (partial occupancy, no symmetry found...)."""


class Representation(ABC):
    """Codec between pymatgen ``Structure`` and text. Subclasses implement ``encode``, ``_decode`` and
    ``mask_element``; ``decode`` guarantees that only ``DecodeError`` escapes."""

    name: str = ""
    text_version: int = 1  # bumped when the encoder writes a different text for the same structure

    @abstractmethod
    def encode(self, structure: Structure) -> str: ...

    @abstractmethod
    def _decode(self, text: str) -> Structure: ...

    @abstractmethod
    def mask_element(self, text: str, element: str, mask: str = MASK) -> str:
        """Replace every occurrence of ``element`` *as an element* in ``text`` by ``mask`` (for infilling)."""

    @abstractmethod
    def elements(self, text: str) -> list[str]:
        """Distinct element symbols the text names, in order of first appearance."""

    def decode(self, text: str) -> Structure:
        if not isinstance(text, str):
            raise DecodeError(f"expected a string, got {type(text).__name__}")
        if not text.strip():
            raise DecodeError("empty text")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = self._decode(text)
            check_structure(structure)
            return structure
        except DecodeError:
            raise
        except RecursionError:
            raise DecodeError("text too deeply nested to parse") from None
        except Exception as exc:  # noqa: BLE001 - the contract is: only DecodeError escapes
            raise DecodeError(f"{type(exc).__name__}: {exc}") from None

    def space_group(self, text: str) -> int | None:
        """The space group number the text states, if the representation states one."""
        return None

    def lattice_snap(self, text: str) -> float | None:
        """How far the lenient decoder moves the stated lattice onto the stated space group's crystal system
        (Angstrom or degrees); None for representations that state no space group or unreadable text."""
        return None

    def roundtrip(self, structure: Structure) -> Structure:
        return self.decode(self.encode(structure))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------- shared parsing


def parse_float(token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise DecodeError(f"{what}: {token!r} is not a number") from None
    if not math.isfinite(value):
        raise DecodeError(f"{what}: {token!r} is not finite")
    return value


def parse_int(token: str, what: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", token.strip()):
        raise DecodeError(f"{what}: {token!r} is not an integer")
    return int(token)


def check_element(symbol: str) -> str:
    if not Element.is_valid_symbol(symbol):
        raise DecodeError(f"unknown element {symbol!r}")
    return symbol


def parse_formula(text: str) -> dict[str, int]:
    """``'Ba1 Ti1 O3'`` or ``'BaTiO3'`` -> ``{'Ba': 1, 'Ti': 1, 'O': 3}``; strict about leftovers."""
    compact = text.replace(" ", "")
    if not compact:
        raise DecodeError("empty formula")
    counts: dict[str, int] = {}
    pos = 0
    for m in _ELEMENT_TOKEN.finditer(compact):
        if m.start() != pos:
            raise DecodeError(f"formula {text!r}: cannot read {compact[pos:m.start()]!r}")
        symbol = check_element(m.group(1))
        n = int(m.group(2)) if m.group(2) else 1
        if n <= 0:
            raise DecodeError(f"formula {text!r}: count of {symbol} must be positive")
        counts[symbol] = counts.get(symbol, 0) + n
        pos = m.end()
    if pos != len(compact):
        raise DecodeError(f"formula {text!r}: cannot read {compact[pos:]!r}")
    return counts


def check_lattice_parameters(a, b, c, alpha, beta, gamma) -> None:
    for name, v in zip("abc", (a, b, c)):
        if not 0.5 <= v <= MAX_LENGTH:
            raise DecodeError(f"non-physical lattice: {name} = {v} Angstrom")
    for name, v in zip(("alpha", "beta", "gamma"), (alpha, beta, gamma)):
        if not 0.0 < v < 180.0:
            raise DecodeError(f"non-physical lattice: {name} = {v} degrees")
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    if 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg <= 1e-6:
        raise DecodeError(f"non-physical lattice: angles {alpha}, {beta}, {gamma} do not form a cell")


def check_structure(structure: Structure) -> None:
    if not isinstance(structure, Structure):
        raise DecodeError("decoder produced no structure")
    if len(structure) == 0:
        raise DecodeError("no atoms")
    if len(structure) > MAX_SITES:
        raise DecodeError(f"{len(structure)} sites, more than the limit of {MAX_SITES}")
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(structure.frac_coords)):
        raise DecodeError("non-finite lattice or coordinates")
    if structure.volume <= 1e-3:
        raise DecodeError(f"non-physical lattice: volume {structure.volume:.3g} A^3")


def lattice_from_parameters(a, b, c, alpha, beta, gamma) -> Lattice:
    check_lattice_parameters(a, b, c, alpha, beta, gamma)
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma)


def fmt(value: float, decimals: int) -> str:
    """Fixed-point with no negative zero."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def wrap_frac(values, decimals: int) -> np.ndarray:
    """Fractional coordinates wrapped to [0, 1) *after* rounding, so 0.99996 is written as 0.0000."""
    rounded = np.round(np.mod(np.asarray(values, dtype=float), 1.0), decimals)
    return np.mod(rounded, 1.0)
