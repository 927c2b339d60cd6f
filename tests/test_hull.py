"""Reference hulls: hand-made known answers, every loader format, file:// download, offline hull, MP2020 policy."""

from __future__ import annotations

import gzip
import json
import math
import pickle

import pytest
from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from plaid.hull import download, load_hull, mp2020_corrected_energy_per_atom, sha256_of

# Li: -2 eV/atom, O: -5 eV/atom, Li2O: -6 eV/atom (on the hull), Li2O2: -5.5 eV/atom (above the Li2O-O line).
ENTRIES = [("Li", -2.0), ("O2", -5.0), ("Li2O", -6.0), ("Li2O2", -5.5)]


def _entries():
    return [ComputedEntry(Composition(f), e * Composition(f).num_atoms, entry_id=f"id-{f}") for f, e in ENTRIES]


@pytest.fixture
def entries_json(tmp_path):
    path = tmp_path / "entries.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump([e.as_dict() for e in _entries()], fh)
    return path


def test_reference_entry_has_zero_e_hull_and_line_gives_known_value(entries_json):
    hull = load_hull(entries_json)
    assert hull.elements == frozenset({"Li", "O"})
    e, reason = hull.e_above_hull(Composition("Li2O"), -6.0, energy_scale="mp2020")
    assert reason is None and e == pytest.approx(0.0, abs=1e-9)
    # Li2O2: x_O = 1/2 between Li2O (x_O = 1/3, -6) and O (x_O = 1, -5): hull = -6 + (1/6)/(2/3) = -5.75
    e, reason = hull.e_above_hull(Composition("Li2O2"), -5.5, energy_scale="mp2020")
    assert reason is None and e == pytest.approx(0.25, abs=1e-9)
    assert hull.hull_energy_per_atom("LiO") == pytest.approx(-5.75)
    # below the hull is negative, not clipped
    e, _ = hull.e_above_hull("Li2O", -6.1, energy_scale="mp2020")
    assert e == pytest.approx(-0.1)
    # elements are references: E_hull of the element at its own energy is 0
    assert hull.e_above_hull("O", -5.0, energy_scale="mp2020")[0] == pytest.approx(0.0, abs=1e-9)


def test_missing_element_and_failed_energy_give_nan_with_reason(entries_json):
    hull = load_hull(entries_json)
    e, reason = hull.e_above_hull(Composition("LiF"), -4.0, energy_scale="mp2020")
    assert math.isnan(e) and "F" in reason and "not in the reference hull" in reason
    e, reason = hull.e_above_hull(Composition("Li2O"), float("nan"))
    assert math.isnan(e) and "no finite energy" in reason
    # a Structure works as well as a Composition
    s = Structure(Lattice.cubic(4.6), ["Li", "Li", "O"], [[0.25] * 3, [0.75] * 3, [0, 0, 0]])
    assert hull.e_above_hull(s, -6.0, energy_scale="mp2020")[0] == pytest.approx(0.0, abs=1e-9)


def test_all_file_formats_give_the_same_hull(tmp_path):
    entries = _entries()
    paths = {}
    paths["list"] = tmp_path / "a.json"
    paths["list"].write_text(json.dumps([e.as_dict() for e in entries]))
    paths["by_id"] = tmp_path / "b.json.gz"
    with gzip.open(paths["by_id"], "wt") as fh:
        json.dump({e.entry_id: e.as_dict() for e in entries}, fh)
    paths["pandas"] = tmp_path / "c.json.gz"  # Matbench Discovery's DataFrame.to_json layout
    with gzip.open(paths["pandas"], "wt") as fh:
        json.dump({"entry": {e.entry_id: e.as_dict() for e in entries},
                   "formula": {e.entry_id: e.reduced_formula for e in entries}}, fh)
    paths["ppd"] = tmp_path / "2023-02-07-ppd-mp.pkl.gz"
    with gzip.open(paths["ppd"], "wb") as fh:
        pickle.dump(PatchedPhaseDiagram(entries), fh)
    paths["pd"] = tmp_path / "pd.pkl"
    paths["pd"].write_bytes(pickle.dumps(PhaseDiagram(entries)))
    for kind, path in paths.items():
        hull = load_hull(path)
        assert hull.describe()["sha256"] == sha256_of(path)
        assert hull.e_above_hull("Li2O2", -5.5, energy_scale="mp2020")[0] == pytest.approx(0.25, abs=1e-9), kind
        assert hull.e_above_hull("Li2O", -6.0, energy_scale="mp2020")[0] == pytest.approx(0.0, abs=1e-9), kind
    assert "PatchedPhaseDiagram" in load_hull(paths["ppd"]).describe()["hull"]
    with pytest.raises(ValueError, match="unknown hull file type"):
        load_hull(tmp_path / "x.csv")


def test_download_from_file_url_verifies_checksum(tmp_path, monkeypatch, entries_json):
    monkeypatch.setenv("PLAID_CACHE_DIR", str(tmp_path / "cache"))
    digest = sha256_of(entries_json)
    url = entries_json.resolve().as_uri()
    hull = load_hull(url=url, sha256=digest)
    cached = tmp_path / "cache" / "hulls" / entries_json.name
    assert cached.exists() and sha256_of(cached) == digest
    assert hull.describe()["url"] == url
    assert hull.e_above_hull("Li2O2", -5.5, energy_scale="mp2020")[0] == pytest.approx(0.25)
    # a wrong checksum raises and leaves nothing behind
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download(url, "0" * 64, dest_dir=tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_no_hull_available_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAID_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PLAID_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="no reference hull"):
        load_hull()


def test_offline_hull_from_formation_energies(tmp_path, elemental_refs_path):
    refs = {el: e.energy_per_atom for el, e in
            ((k, ComputedEntry.from_dict(v)) for k, v in json.load(gzip.open(elemental_refs_path)).items())}
    csv = tmp_path / "ref.csv"
    csv.write_text("material_id,formula,heat_ref\nm1,SrTiO3,-3.0\nm2,SrO,-2.5\nm3,TiO2,-3.2\nm4,Sr2TiO4,-2.0\n")
    hull = load_hull(reference_csv=csv, elemental_refs=elemental_refs_path)
    desc = hull.describe()
    assert desc["formation_energy_column"] == "heat_ref" and "offline" in desc["hull"]
    assert "Sr" in hull.elements and len(hull.elements) == 89

    def total(formula, e_form):
        c = Composition(formula)
        return e_form + sum(c.get_atomic_fraction(el) * refs[el.symbol] for el in c.elements)

    # SrTiO3 (-3.0) lies below the SrO-TiO2 tie line at its composition: it is a hull vertex
    assert hull.e_above_hull("SrTiO3", total("SrTiO3", -3.0), energy_scale="mp2020")[0] == pytest.approx(0.0, abs=1e-9)
    # Sr2TiO4 (-2.0 eV/atom formation) vs SrO + SrTiO3: 3/7 * -2.5 * 2 ... computed from formation energies only
    e_form_hull = (2 / 7) * -2.5 + (5 / 7) * -3.0  # SrO (2 atoms) + SrTiO3 (5 atoms) per 7 atoms
    e, reason = hull.e_above_hull("Sr2TiO4", total("Sr2TiO4", -2.0), energy_scale="mp2020")
    assert reason is None and e == pytest.approx(-2.0 - e_form_hull, abs=1e-9)
    # an elemental reference itself is on the hull
    assert hull.e_above_hull("Ti", refs["Ti"], energy_scale="mp2020")[0] == pytest.approx(0.0, abs=1e-9)


def test_offline_hull_from_real_perov5(perov_csv, elemental_refs_path):
    import pandas as pd

    hull = load_hull(reference_csv=perov_csv, elemental_refs=elemental_refs_path)
    assert hull.describe()["skipped"] == {}
    df = pd.read_csv(perov_csv).head(30)
    values = []
    for formula, e_form in zip(df.formula, df.heat_ref):
        c = Composition(formula)
        mu = sum(c.get_atomic_fraction(el) * hull.hull_energy_per_atom(el.symbol) for el in c.elements)
        e, reason = hull.e_above_hull(c, e_form + mu, energy_scale="mp2020")
        assert reason is None
        values.append(e)
    # every reference row is at or above the hull built from it (the hull is at or below the elemental line, so
    # E_hull >= e_form too), and the stable ones (e.g. LaReN3, e_form < 0) are on it
    assert min(values) >= -1e-8
    assert all(v >= f - 1e-8 for v, f in zip(values, df.heat_ref))
    assert any(abs(v) < 1e-8 for v in values)


def test_mp2020_applied_only_where_energies_are_not_compatible(entries_json):
    hull = load_hull(entries_json)
    raw = -6.0
    plain, _ = hull.e_above_hull("Li2O", raw, energy_scale="mp2020")
    assert plain == pytest.approx(0.0, abs=1e-9)  # CHGNet: already MP2020-compatible, not corrected twice
    corrected, reason = hull.e_above_hull("Li2O", raw, energy_scale="mp_raw")
    assert reason is None
    # MP2020 oxide correction: -0.687 eV per O atom -> -0.687 / 3 eV/atom for Li2O
    assert corrected == pytest.approx(-0.687 / 3, abs=1e-6)
    assert hull.e_above_hull("Li2O", raw, energy_scale="mp2020", apply_mp2020=True)[0] == pytest.approx(corrected)
    assert hull.e_above_hull("Li2O", raw, energy_scale="mp_raw", apply_mp2020=False)[0] == pytest.approx(plain)
    desc = hull.describe()["mp2020_correction"]
    assert desc["mp2020"].startswith("not applied") and desc["mp_raw"].startswith("applied")
    # a scale nobody declared is not guessed: no E_hull, and the reason says why
    value, reason = hull.e_above_hull("Li2O", raw)
    assert math.isnan(value) and "not declared" in reason
    value, reason = hull.e_above_hull("Li2O", raw, energy_scale="chgnet")
    assert math.isnan(value) and "not declared" in reason


def test_mp2020_gga_plus_u_for_transition_metal_oxides():
    # Fe2O3 in MP is GGA+U: Fe mixing correction -2.256 eV/Fe, oxide -0.687 eV/O
    e, reason = mp2020_corrected_energy_per_atom(Composition("Fe2O3"), -7.0)
    assert reason is None
    assert e == pytest.approx(-7.0 + (2 * -2.256 + 3 * -0.687) / 5, abs=1e-6)
    # a metal alloy gets no correction
    assert mp2020_corrected_energy_per_atom(Composition("FeNi"), -7.0) == (pytest.approx(-7.0), None)


def test_noble_gases_do_not_break_the_gga_plus_u_choice():
    """Ar has no Pauling electronegativity (NaN): sorting by X put it last, so Fe2O3Ar was treated as an argide
    (GGA, no Fe U correction). The anion is O whatever the element order."""
    from plaid.hull import most_electronegative

    assert most_electronegative(Composition("Fe2O3Ar")) == "O" == most_electronegative(Composition("ArFe2O3"))
    e, reason = mp2020_corrected_energy_per_atom(Composition("Fe2O3Ar"), -7.0)
    assert reason is None
    # same corrections as Fe2O3 (Fe GGA+U mixing -2.256 eV/Fe, oxide -0.687 eV/O), Ar uncorrected, over 6 atoms
    assert e == pytest.approx(-7.0 + (2 * -2.256 + 3 * -0.687) / 6, abs=1e-6)


def test_offline_mp20_hull_on_real_mp20_structures(elemental_refs_path):
    """A hull from MP-20 formation energies (train_partial) + MP elemental references, checked on real MP-20
    validation structures with their own DFT formation energies: it is incomplete (MP-20 has only metastable cells
    of <= 20 atoms), so it lies on or above the MP hull and E_hull against it is never above MP's e_above_hull;
    it is marked as offline with the upper-bound warning."""
    import pandas as pd

    from .conftest import data_path

    train = data_path("mp_20/train_partial.csv")
    hull = load_hull(None, reference_csv=train, elemental_refs=elemental_refs_path)
    desc = hull.describe()
    assert hull.kind == desc["kind"] == "offline_reference" and desc["rates_are_upper_bounds"] is True
    assert "upper bounds" in desc["warning"]
    from plaid.hull import read_elemental_refs

    mu = {el: e.energy_per_atom for el, e in read_elemental_refs(elemental_refs_path).items()}
    val = pd.read_csv(data_path("mp_20/val.csv"), nrows=400)
    val = val[val.formation_energy_per_atom.notna() & val.e_above_hull.notna()]
    checked = 0
    for row in val.itertuples():
        s = Structure.from_str(row.cif, fmt="cif")
        comp = s.composition
        energy = row.formation_energy_per_atom + sum(comp.get_atomic_fraction(el) * mu[el.symbol]
                                                     for el in comp.elements)
        e, reason = hull.e_above_hull(s, energy, energy_scale="mp2020")
        if reason is not None and "not in the reference hull" in reason:
            continue
        assert reason is None, reason
        assert e <= row.e_above_hull + 1e-6  # an incomplete hull can only understate E_hull
        checked += 1
    assert checked > 300
    # and training structures are never below the hull built from them
    tr = pd.read_csv(train, nrows=200)
    tr = tr[tr.formation_energy_per_atom.notna()]
    for row in tr.itertuples():
        comp = Composition(row.pretty_formula)
        energy = row.formation_energy_per_atom + sum(comp.get_atomic_fraction(el) * mu[el.symbol]
                                                     for el in comp.elements)
        assert hull.e_above_hull(comp, energy, energy_scale="mp2020")[0] >= -1e-8
