"""Bucketed uniqueness/novelty equals brute-force all-pairs StructureMatcher; CSP matching."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from plaid.evaluation import (
    brute_force_novel,
    brute_force_unique,
    csp_metrics,
    csp_rms,
    reduce_reference,
    uniqueness_and_novelty,
)
from plaid.evaluation.matching import composition_key, reduce_for_matching


def _perturbed(s: Structure, rng, sigma=0.02, strain=0.01, supercell=False, shuffle=True) -> Structure:
    """Same crystal in another cell/order: displaced sites, strained lattice, optional supercell."""
    t = s.copy()
    if supercell:
        t.make_supercell([2, 1, 1])
    lat = Lattice(t.lattice.matrix @ (np.eye(3) + rng.normal(0, strain, (3, 3))))
    frac = t.frac_coords + rng.normal(0, sigma, t.frac_coords.shape) / np.array(t.lattice.abc)
    order = rng.permutation(len(t)) if shuffle else np.arange(len(t))
    return Structure(lat, [t.species[i] for i in order], frac[order])


@pytest.fixture(scope="module")
def mixed_set(perov_structures, carbon_structures):
    """~170 samples: distinct perovskites and carbons, perturbed / supercell / reordered duplicates of them,
    strongly distorted near-duplicates, and None (invalid) entries; a reference overlapping part of them."""
    rng = np.random.default_rng(0)
    base = list(perov_structures[:90]) + list(carbon_structures[:20])
    samples: list = list(base)
    for i in rng.choice(len(base), 40, replace=False):
        samples.append(_perturbed(base[i], rng, supercell=bool(i % 3 == 0)))
    for i in rng.choice(90, 12, replace=False):
        samples.append(_perturbed(base[i], rng, sigma=0.6, strain=0.0))  # heavily displaced
    samples += [None] * 5
    order = rng.permutation(len(samples))
    samples = [samples[i] for i in order]
    reference = list(perov_structures[80:200]) + list(carbon_structures[15:35])
    reference += [_perturbed(s, rng) for s in perov_structures[60:70]]
    return samples, reference


def test_bucketed_equals_brute_force(mixed_set, tmp_path):
    samples, reference = mixed_set
    expected_unique = brute_force_unique(samples)
    expected_novel = brute_force_novel(samples, reference)
    ref = reduce_reference(reference, source_sha256="test-ref", cache=tmp_path)
    got = uniqueness_and_novelty(samples, reference=ref, out_path=tmp_path / "m.jsonl")
    assert [got[i]["is_unique"] for i in range(len(samples))] == expected_unique
    assert [got[i]["is_novel"] for i in range(len(samples))] == expected_novel
    # the fixture really exercises both outcomes
    assert 20 < sum(u is False for u in expected_unique) and 20 < sum(n is False for n in expected_novel)
    assert sum(u is True for u in expected_unique) > 80 and sum(n is True for n in expected_novel) > 30
    # duplicate_of points to an earlier sample that the matcher accepts
    for i, r in got.items():
        if r["is_unique"] is False:
            assert r["duplicate_of"] < i

    # parallel workers and a resumed run (file already complete) give the same answer
    parallel = uniqueness_and_novelty(samples, reference=ref, n_jobs=2)
    assert parallel == got
    resumed = uniqueness_and_novelty(samples, reference=ref, out_path=tmp_path / "m.jsonl")
    assert resumed == got


def test_reference_reduction_cache(perov_structures, tmp_path, monkeypatch):
    ref = reduce_reference(perov_structures[:20], source_sha256="abc", cache=tmp_path)
    assert ref["n_structures"] == 20 and sum(len(v) for v in ref["buckets"].values()) == 20

    def boom():
        raise AssertionError("reference structures re-read despite the cache")

    again = reduce_reference(boom, source_sha256="abc", cache=tmp_path)
    assert again["buckets"].keys() == ref["buckets"].keys()


def test_reduction_and_keys_are_invariants(perov_structures):
    rng = np.random.default_rng(1)
    s = perov_structures[3]
    t = _perturbed(s, rng, sigma=0.0, strain=0.0, supercell=True)
    assert composition_key(s.composition) == composition_key(t.composition)
    assert len(reduce_for_matching(t)) == len(s)


def test_csp_rms_and_rates(perov_structures):
    rng = np.random.default_rng(2)
    target = perov_structures[0]
    close = _perturbed(target, rng, sigma=0.05, strain=0.0, shuffle=False)
    other = perov_structures[1]
    rms = csp_rms(target, [other, None, close, target])
    assert rms[0] is None and rms[1] is None
    assert 0 < rms[2] < 0.1 and rms[3] == pytest.approx(0.0, abs=1e-6)

    lists = [[None, 0.2, 0.1], [0.3], [], [None, None]]
    at1 = csp_metrics(lists, 1)
    assert at1["match_rate"] == pytest.approx(1 / 4) and at1["mean_rmse"] == pytest.approx(0.3)
    at20 = csp_metrics(lists, 20)
    assert at20["n_matched"] == 2 and at20["mean_rmse"] == pytest.approx((0.1 + 0.3) / 2)
    assert at20["n_targets_with_fewer_candidates"] == 4
