"""The Wyckoff grammar's shortcuts (``WyckoffGrammar._slide``: a digit that departs from the witness checked
directly, whole prefixes of a coordinate proved valid at once, the Wyckoff label tried only when the text departs
from the witness's) change its cost, not its language: at every prefix of real and random texts, the grammar with
them accepts exactly the characters the grammar without them accepts, with the same completion lengths."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pymatgen.core import Lattice

from plaid.representations import get
from plaid.sampling.grammar import WyckoffGrammar
from plaid.sampling.grammar.placement import Geometry, independent_parameter

CHARS = sorted(set("0123456789. \n") | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _pair(**kw):
    fast, full = WyckoffGrammar(**kw), WyckoffGrammar(**kw)
    full.shortcuts = False
    return fast, full


def _same_language_along(fast, full, text):
    """Walk ``text`` in both grammars; at each prefix compare what every character does. Returns the number of
    prefixes compared (the walk stops where both reject the text)."""
    a, b = fast.initial(), full.initial()
    n = 0
    for ch in text:
        assert fast.can_end(a) == full.can_end(b)
        for c in CHARS:
            x, y = fast.step(a, c), full.step(b, c)
            assert (x is None) == (y is None), (text[:n], repr(c))
            if x is not None:
                assert x.u == y.u, (text[:n], repr(c))
        a, b = fast.step(a, ch), full.step(b, ch)
        if a is None:
            assert b is None
            return n
        n += 1
    assert fast.can_end(a) == full.can_end(b)
    return n


@pytest.fixture(scope="module")
def texts(perov_structures, carbon_structures):
    rep = get("wyckoff")
    return [rep.encode(s) for s in perov_structures[:30] + carbon_structures[:10]]


def test_real_texts_same_language(texts):
    fast, full = _pair(max_atoms=24)
    slides = []
    inner = fast._slide

    def counted(*args):
        out = inner(*args)
        slides.append(None if out is None else out[2])
        return out

    fast._slide = counted
    assert sum(_same_language_along(fast, full, t) == len(t) for t in texts) == len(texts)
    assert slides.count(True) > 50 and slides.count(None) > 0  # whole prefixes proved, and full searches kept


def test_perturbed_real_texts_same_language(texts):
    """Coordinate digits changed at random: the departures the shortcuts handle, and rejections."""
    fast, full = _pair(max_atoms=24)
    rng = random.Random(7)
    rejected = 0
    for t in texts:
        chars = list(t)
        head = t.index("\n", t.index("\n", t.index("\n", t.index("\n") + 1) + 1) + 1)  # after the angles line
        for _ in range(4):
            k = rng.randrange(head, len(chars))
            if chars[k].isdigit() and chars[k - 1] != " " and chars[k - 1] != "\n":
                chars[k] = str(rng.randrange(10))
        text = "".join(chars)
        rejected += _same_language_along(fast, full, text) < len(text)
    assert rejected < len(texts)  # most perturbed texts stay valid (the shortcuts' path is exercised)


@pytest.mark.parametrize("sg", [25, 47, 99, 123, 139, 221, 191, 14])
def test_random_walks_same_language(sg):
    """Walks of the fast grammar, compared prefix by prefix, in orthorhombic, tetragonal, cubic (orthogonal:
    shortcuts apply), hexagonal and monoclinic groups (they do not, except at fixed positions)."""
    fast, full = _pair(space_groups=[sg], max_atoms=12)
    rng = random.Random(sg)
    for _ in range(6):
        text = fast.random_text(rng, 300)
        assert _same_language_along(fast, full, text) == len(text)


def test_orthogonal_distances_are_pymatgens():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lattice = Lattice.from_parameters(*rng.uniform(2, 12, 3), 90, 90, 90)
        geom = Geometry(lattice, 0.5)
        assert geom.orthogonal
        a, b = rng.random((4, 3)), rng.random((6, 3))
        np.testing.assert_allclose(geom.distances(a, b), lattice.get_all_distances(a, b), atol=1e-12)
    assert not Geometry(Lattice.hexagonal(3, 5), 0.5).orthogonal


def test_independent_parameters():
    # P4mm 1b (1/2, 1/2, z): z is one free parameter; x, y are fixed by the position
    assert independent_parameter(99, "b", 2) == 2
    assert independent_parameter(99, "b", 0) is None
    # P4mm 4d (x, x, z): x is used by two coordinates
    assert independent_parameter(99, "d", 0) is None
    assert independent_parameter(99, "d", 2) == 2


def test_separations_are_the_minima_of_pymatgens_distances():
    """One squared-distance matrix and one reduceat give, per group, the minimum of pymatgen's distances (own
    points: off the diagonal; inf for a lone point or an empty group), in orthogonal and oblique cells."""
    rng = np.random.default_rng(1)
    for t in range(200):
        angles = (90, 90, 90) if t % 2 else tuple(rng.uniform(65, 115, 3))
        lattice = Lattice.from_parameters(*rng.uniform(2, 10, 3), *angles)
        geom = Geometry(lattice, 0.5)
        pts = rng.random((int(rng.integers(0, 5)), 3))
        groups = [rng.random((int(rng.integers(0, 4)), 3)) for _ in range(int(rng.integers(0, 4)))]
        got = geom.separations(pts, *groups)
        if len(pts) > 1:
            own = lattice.get_all_distances(pts, pts)
            np.fill_diagonal(own, np.inf)
            assert got[0] == pytest.approx(own.min(), abs=1e-9)
        else:
            assert got[0] == np.inf
        for g, value in zip(groups, got[1:]):
            if len(g) and len(pts):
                assert value == pytest.approx(lattice.get_all_distances(pts, g).min(), abs=1e-9)
            else:
                assert value == np.inf


def test_ignored_coordinates_decode_to_the_same_atoms():
    """A coordinate the position's first operation fixes is never read by the decoder's projection: any value
    written there decodes to the same orbit (what ``_slide`` relies on to keep the witness's atoms)."""
    from plaid.representations.spacegroups import space_group
    from plaid.sampling.grammar.placement import decode_points, ignored_coordinate

    rng = np.random.default_rng(2)
    checked = 0
    for sg in (25, 47, 99, 123, 139, 194, 221):
        lattice = Lattice.from_parameters(3.9, 4.1, 4.3, 90, 90, 90) if sg < 168 else Lattice.hexagonal(3, 5)
        for letter, wp in space_group(sg).wyckoff.items():
            for k in range(3):
                if wp.dof == 0 or not ignored_coordinate(sg, letter, k):
                    continue
                base = np.round(rng.random(3), 3)
                want = decode_points(sg, letter, base, lattice.matrix)
                for v in np.round(rng.random(5), 3):
                    moved = base.copy()
                    moved[k] = v
                    np.testing.assert_array_equal(decode_points(sg, letter, moved, lattice.matrix), want)
                    checked += 1
    assert checked > 50
