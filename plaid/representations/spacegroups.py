"""Space-group and Wyckoff tables in the ITA standard settings used by pyxtal (origin choice 2, hexagonal axes),
converted once to numpy arrays so encoding and decoding never build pyxtal objects per structure."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cache

import numpy as np

_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)  # (27, 3)


@dataclass(frozen=True)
class WyckoffPosition:
    letter: str
    multiplicity: int
    ops: np.ndarray = field(repr=False)  # (multiplicity, 3, 4) affine maps from free (x, y, z) to coordinates
    dof: int = 0  # number of free coordinates
    pinv0: np.ndarray = field(repr=False, default=None)  # pseudo-inverse of the first op's linear part

    def __post_init__(self):
        if self.pinv0 is None:
            object.__setattr__(self, "pinv0", np.linalg.pinv(self.ops[0][:, :3]))

    @property
    def label(self) -> str:
        return f"{self.multiplicity}{self.letter}"

    def project(self, point: np.ndarray, metric: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Free parameters ``q`` whose first-op image is closest to ``point`` (mod lattice translations), and the
        distance (Angstrom if ``metric`` = lattice matrix is given, else fractional)."""
        op = self.ops[0]
        w, t = op[:, :3], op[:, 3]
        shifted = point[None, :] + _SHIFTS  # (27, 3)
        q = (shifted - t) @ self.pinv0.T
        images = q @ w.T + t
        diff = images - shifted
        if metric is not None:
            diff = diff @ metric
        dist = np.sqrt(np.add.reduce(diff * diff, axis=1))  # np.linalg.norm(diff, axis=1), bit for bit, faster
        best = int(np.argmin(dist))
        return q[best], float(dist[best])

    def orbit(self, q: np.ndarray) -> np.ndarray:
        """All ``multiplicity`` positions generated from free parameters ``q``, wrapped to [0, 1)."""
        pts = np.einsum("kij,j->ki", self.ops[:, :, :3], q) + self.ops[:, :, 3]
        return np.mod(np.round(np.mod(pts, 1.0), 8), 1.0)

    def representative(self, q: np.ndarray) -> np.ndarray:
        """The first operation's image of ``q`` (not wrapped)."""
        return self.ops[0][:, :3] @ q + self.ops[0][:, 3]


@dataclass(frozen=True)
class SpaceGroupInfo:
    number: int
    symbol: str
    hall_number: int  # spglib Hall number of the setting these tables use
    lattice_type: str  # triclinic, monoclinic, orthorhombic, tetragonal, trigonal, hexagonal, cubic
    wyckoff: dict[str, WyckoffPosition] = field(repr=False)

    @property
    def letters(self) -> list[str]:
        return sorted(self.wyckoff)


@cache
def space_group(number: int) -> SpaceGroupInfo:
    """Tables for space group ``number`` (1-230), cached."""
    from pyxtal.symmetry import Group

    if not 1 <= int(number) <= 230:
        raise ValueError(f"space group number {number} is not in 1-230")
    group = Group(int(number))
    positions = {}
    for wp in group.Wyckoff_positions:
        ops = np.array([op.affine_matrix[:3, :] for op in wp.ops], dtype=float)
        positions[wp.letter] = WyckoffPosition(
            letter=wp.letter, multiplicity=int(wp.multiplicity), ops=ops, dof=int(wp.get_dof())
        )
    return SpaceGroupInfo(
        number=int(number),
        symbol=str(group.symbol),
        hall_number=int(group.hall_number),
        lattice_type=str(group.lattice_type),
        wyckoff=positions,
    )


@cache
def floating_axes(number: int) -> tuple[int, ...]:
    """Axes (0, 1, 2 for a, b, c) along which the origin of space group ``number`` floats: every rotation of the
    group fixes the axis, so a translation along it maps the crystal onto an equivalent description (polar groups:
    c in mm2, 4, 4mm, 3, 3m, 6, 6mm; b in 2; a and c in m; all three in 1). Empty for groups with a fixed origin."""
    general = max(space_group(number).wyckoff.values(), key=lambda wp: wp.multiplicity)
    rotations = general.ops[:, :, :3]
    return tuple(i for i in range(3) if np.allclose(rotations[:, :, i], np.eye(3)[:, i]))


_HEX_FLIPS = (  # 2-fold rotations perpendicular to c in hexagonal axes: along a, along a + b, along a - b
    np.array([[1.0, -1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]),
    np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
    np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
)
_AXIS_FLIPS = {  # proper rotations that reverse the polar axis c, in the tables' axes, tried in this order
    "orthorhombic": (np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0])),
    "tetragonal": (np.diag([1.0, -1.0, -1.0]), np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])),
    "trigonal": _HEX_FLIPS,
    "hexagonal": _HEX_FLIPS,
}


def _maps_group_onto_itself(rotation: np.ndarray, group: SpaceGroupInfo) -> bool:
    """Whether ``rotation`` (no translation) conjugates the group's operations onto themselves (mod lattice
    translations) and maps every Wyckoff position onto itself, so a cell turned by it has the same letters."""
    general = max(group.wyckoff.values(), key=lambda wp: wp.multiplicity)

    def key(w, t):
        return (tuple(np.round(w, 6).ravel()), tuple(np.round(np.mod(np.round(t, 6), 1.0), 6)))

    ops = {key(op[:, :3], op[:, 3]) for op in general.ops}
    inverse = np.linalg.inv(rotation)
    if any(key(rotation @ op[:, :3] @ inverse, rotation @ op[:, 3]) not in ops for op in general.ops):
        return False
    rng = np.random.default_rng(0)
    for wp in group.wyckoff.values():
        point = rotation @ wp.representative(rng.random(3) * 0.3 + 0.1)
        if not any(_on_image(op, point) for op in wp.ops):
            return False
    return True


def _on_image(op: np.ndarray, point: np.ndarray) -> bool:
    w, t = op[:, :3], op[:, 3]
    shifted = point[None, :] + _SHIFTS
    q = (shifted - t) @ np.linalg.pinv(w).T
    return bool(np.min(np.abs(q @ w.T + t - shifted).max(axis=1)) < 1e-6)


@cache
def polar_axis_flip(number: int) -> np.ndarray | None:
    """A proper rotation that reverses the polar axis c of space group ``number`` and maps its standard setting
    (operations and Wyckoff letters) onto itself, or None: the crystal and its turned copy are one structure, so
    a polar crystal has two texts that differ in the sign of every c coordinate. Defined for the groups whose
    origin floats along c alone (mm2, 4, 4mm, 3, 3m, 6, 6mm) where the holohedry has such a rotation."""
    if floating_axes(number) != (2,):
        return None
    group = space_group(number)
    for rotation in _AXIS_FLIPS.get(group.lattice_type, ()):
        if _maps_group_onto_itself(rotation, group):
            return rotation
    return None


@cache
def symbol_to_number() -> dict[str, int]:
    """Hermann-Mauguin symbols (pyxtal short symbols, spaces removed, and spglib's for every setting) -> number."""
    import spglib

    table: dict[str, int] = {}
    for hall in range(1, 531):
        sg = spglib.get_spacegroup_type(hall)
        for sym in (sg.international_short, sg.international, sg.international_full):
            table.setdefault(sym.replace(" ", "").replace("_", ""), sg.number)
    return table


def parse_space_group(value: str | int) -> int:
    """Space group number from a number or a Hermann-Mauguin symbol (``'Pm-3m'``, ``'P 4_2/m n m'``)."""
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 230:
            raise ValueError(f"space group number {number} is not in 1-230")
        return number
    key = text.replace(" ", "").replace("_", "")
    try:
        return symbol_to_number()[key]
    except KeyError:
        raise ValueError(f"unknown space group {value!r}") from None


@cache
def default_hall_number(number: int) -> int:
    """spglib's default Hall number for a space group (the setting its standardization and pymatgen use)."""
    import spglib

    for hall in range(1, 531):
        if spglib.get_spacegroup_type(hall).number == number:
            return hall
    raise ValueError(f"space group number {number} is not in 1-230")


def constrain_lattice(lattice_type: str, a, b, c, alpha, beta, gamma) -> tuple[float, ...]:
    """Snap lattice parameters onto the crystal system's constraints (conventional cell, standard setting)."""
    if lattice_type == "cubic":
        m = (a + b + c) / 3
        return m, m, m, 90.0, 90.0, 90.0
    if lattice_type == "tetragonal":
        m = (a + b) / 2
        return m, m, c, 90.0, 90.0, 90.0
    if lattice_type in ("hexagonal", "trigonal"):
        m = (a + b) / 2
        return m, m, c, 90.0, 90.0, 120.0
    if lattice_type == "orthorhombic":
        return a, b, c, 90.0, 90.0, 90.0
    if lattice_type == "monoclinic":
        return a, b, c, 90.0, beta, 90.0
    return a, b, c, alpha, beta, gamma


def lattice_rules(lattice_type: str) -> tuple[tuple[int, object], ...]:
    """What the crystal system fixes, as (parameter index 0-5 for a, b, c, alpha, beta, gamma, target) with
    target an index (equal to that parameter) or a number (degrees). Conventional cell in the tables' setting:
    trigonal groups (rhombohedral ones included) use hexagonal axes, monoclinic ones unique axis b."""
    right = ((3, 90.0), (4, 90.0), (5, 90.0))
    if lattice_type == "cubic":
        return ((1, 0), (2, 0), *right)
    if lattice_type == "tetragonal":
        return ((1, 0), *right)
    if lattice_type in ("hexagonal", "trigonal"):
        return ((1, 0), (3, 90.0), (4, 90.0), (5, 120.0))
    if lattice_type == "orthorhombic":
        return right
    if lattice_type == "monoclinic":
        return ((3, 90.0), (5, 90.0))
    return ()


_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")


def lattice_violations(lattice_type: str, params, rounding) -> list[str]:
    """Where lattice parameters contradict the crystal system by more than the text's rounding (``rounding``:
    half a unit in the last written digit of each parameter), one message with the numbers per violation."""
    out = []
    for i, target in lattice_rules(lattice_type):
        if isinstance(target, int):
            want, tol, what = params[target], rounding[i] + rounding[target], f"{_NAMES[i]} = {_NAMES[target]}"
        else:
            want, tol, what = target, rounding[i], f"{_NAMES[i]} = {target:g}"
        if abs(params[i] - want) > tol + 1e-9:
            out.append(f"{_NAMES[i]} is {params[i]:g}, {lattice_type} needs {what} ({want:g})")
    return out


def lattice_snap(lattice_type: str, params) -> float:
    """Largest change ``constrain_lattice`` makes to any parameter (Angstrom or degrees)."""
    snapped = constrain_lattice(lattice_type, *params)
    return float(max(abs(x - y) for x, y in zip(params, snapped)))
