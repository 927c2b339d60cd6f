"""plaid's vectorised order parameters against pymatgen's LocalStructOrderParams, type by type (ideal motifs,
where degenerate axes occur, and distorted ones), and the site fingerprint against matminer's featurize on real
structures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from plaid.evaluation.fingerprints import _site_featurizer, structure_fingerprint
from plaid.evaluation.order_params import FAST_TYPES, crystalnn_site_fingerprint, order_parameter

from .conftest import _read_structures

TOL = 1e-12  # floating-point summation order; measured differences are ~1e-15

_S = 1 / np.sqrt(2)
IDEAL = {  # motif -> unit neighbour vectors (octahedron, cube and cuboctahedron have antipodal pairs)
    "linear": [[0, 0, 1], [0, 0, -1]],
    "trigonal": [[1, 0, 0], [-0.5, np.sqrt(3) / 2, 0], [-0.5, -np.sqrt(3) / 2, 0]],
    "tetrahedron": [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
    "square": [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]],
    "square_pyramid": [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 1]],
    "octahedron": [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
    "pentagonal_bipyramid": [[np.cos(a), np.sin(a), 0] for a in np.arange(5) * 2 * np.pi / 5] + [[0, 0, 1], [0, 0, -1]],
    "cube": [[x, y, z] for x in (1, -1) for y in (1, -1) for z in (1, -1)],
    "cuboctahedron": [[a * _S, b * _S, 0] for a in (1, -1) for b in (1, -1)]
    + [[a * _S, 0, b * _S] for a in (1, -1) for b in (1, -1)] + [[0, a * _S, b * _S] for a in (1, -1) for b in (1, -1)],
}


def _pymatgen_value(op, vectors):
    from pymatgen.core import Lattice, Structure

    species = ["Si"] + ["O"] * len(vectors)
    coords = np.vstack([[10.0, 10.0, 10.0], np.asarray(vectors) + 10.0])
    s = Structure(Lattice.cubic(40.0), species, coords, coords_are_cartesian=True)
    return op.get_order_parameters(s, 0, indices_neighs=list(range(1, len(vectors) + 1)))[0]


def _preset_ops():
    """(cn, type, LocalStructOrderParams) for every vectorised type of matminer's "ops" preset, and sq_bipyr
    (vectorised too, with pymatgen's default parameters)."""
    from pymatgen.analysis.local_env import LocalStructOrderParams

    featurizer = _site_featurizer()
    ops = [(cn, op._types[0], op) for cn, ops in featurizer.ops.items() for op in ops
           if op != "wt" and op._types[0] in FAST_TYPES]
    return ops + [(6, "sq_bipyr", LocalStructOrderParams(["sq_bipyr"]))]


def _neighbour_sets(cn: int, rng) -> list[np.ndarray]:
    """Ideal motifs with ``cn`` neighbours (scaled), their distortions, and random sets."""
    sets = [np.asarray(v, float) * 2.1 / np.linalg.norm(v, axis=1, keepdims=True)
            for v in IDEAL.values() if len(v) == cn]
    sets += [s + rng.normal(scale=0.08, size=s.shape) for s in sets]
    sets += [rng.normal(size=(cn, 3)) * rng.uniform(0.8, 3.0) for _ in range(3)]
    return sets


def test_every_preset_type_equals_pymatgen():
    rng = np.random.default_rng(0)
    featurizer = _site_featurizer()
    preset = {op._types[0] for ops in featurizer.ops.values() for op in ops if op != "wt"}
    assert preset - FAST_TYPES == {"sgl_bd", "q2", "q4", "q6"}  # O(n) in pymatgen, left to it
    ops = _preset_ops()
    assert {t for _, t, _ in ops} == FAST_TYPES  # every vectorised type is checked
    checked = 0
    for cn, typ, op in ops:
        for vectors in _neighbour_sets(cn, rng):
            want = _pymatgen_value(op, vectors)
            got = order_parameter(typ, op._params[0], vectors)
            assert (want is None) == (got is None), (typ, cn)
            if want is not None:
                assert got == pytest.approx(want, abs=TOL), (typ, cn)
            checked += 1
    assert checked > 100


def test_ideal_motifs_score_one_where_pymatgen_does():
    """A sanity anchor beside the equality: the ideal octahedron is oct_max 1, the cuboctahedron cuboct_max 1."""
    featurizer = _site_featurizer()
    octahedron = np.asarray(IDEAL["octahedron"], float) * 2.0
    op = next(o for o in featurizer.ops[6] if o != "wt" and o._types[0] == "oct_max")
    assert order_parameter("oct_max", op._params[0], octahedron) == pytest.approx(1.0, abs=1e-9)
    cubo = np.asarray(IDEAL["cuboctahedron"], float) * 2.0
    op = next(o for o in featurizer.ops[12] if o != "wt" and o._types[0] == "cuboct_max")
    assert order_parameter("cuboct_max", op._params[0], cubo) == pytest.approx(
        _pymatgen_value(op, cubo), abs=TOL)


def test_site_fingerprint_equals_matminer_on_real_structures():
    structs, _ = _read_structures("mp_20/val.csv", 30)
    perov, _ = _read_structures("perov_5/val.csv", 5)
    featurizer = _site_featurizer()
    worst, n_sites = 0.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in [x for x in structs if len(x) <= 10][:12] + perov:
            for i in range(len(s)):
                nn = featurizer.cnn.get_nn_data(s, i)
                want = np.asarray(_matminer_featurize(featurizer, s, i, nn), float)
                got = np.asarray(crystalnn_site_fingerprint(featurizer, s, i, nn), float)
                assert got.shape == want.shape == (61,)
                worst = max(worst, float(np.abs(got - want).max()))
                n_sites += 1
    assert n_sites > 50
    assert worst <= TOL


def _matminer_featurize(featurizer, structure, idx, nn_data):
    """matminer's featurize with the CrystalNN neighbours given (the same call both sides, computed once)."""
    featurizer.cnn.get_nn_data = lambda *args, **kwargs: nn_data  # instance attribute shadows the method
    try:
        return featurizer.featurize(structure, idx)
    finally:
        del featurizer.cnn.get_nn_data


def test_structure_fingerprint_backends_agree():
    structs, _ = _read_structures("mp_20/val.csv", 8)
    for s in structs[:3]:
        a = structure_fingerprint(s, orbit_symprec=1e-5, backend="plaid")
        b = structure_fingerprint(s, orbit_symprec=1e-5, backend="matminer")
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="unknown fingerprint backend"):
        structure_fingerprint(structs[0], backend="fortran")


def test_fast_facet_geometry_gives_crystalnn_bit_identical_neighbours():
    from pymatgen.analysis.local_env import CrystalNN

    from plaid.evaluation.crystalnn import crystalnn_nn_data, fast_voronoi_geometry, shared_crystalnn

    def summary(nn):
        return (sorted(nn.cn_weights.items()),
                {cn: [(d["site"].coords.tolist(), d["site_index"], tuple(d["image"])) for d in v]
                 for cn, v in nn.cn_nninfo.items()},
                [(d["site"].coords.tolist(), d["weight"]) for d in nn.all_nninfo])

    structs, _ = _read_structures("mp_20/val.csv", 12)
    cnn = CrystalNN()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in [x for x in structs if len(x) <= 12][:6]:
            want = [summary(cnn.get_nn_data(s, i)) for i in range(len(s))]
            with fast_voronoi_geometry():
                assert [summary(cnn.get_nn_data(s, i)) for i in range(len(s))] == want
            with shared_crystalnn():
                first = crystalnn_nn_data(s, 0)
                assert crystalnn_nn_data(s, 0) is first  # computed once inside the block
                assert summary(first) == want[0]
            assert crystalnn_nn_data(s, 0) is not first  # and not kept after it
    # the fingerprint and the bond score may share neighbours only if matminer's CrystalNN is the default one
    assert vars(_site_featurizer().cnn) == vars(CrystalNN())
