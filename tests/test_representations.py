"""Representations: round trips on real structures, known answers, masking, and the DecodeError contract."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from plaid.representations import MASK, DecodeError, EncodeError, available, get
from plaid.representations.spacegroups import parse_space_group, space_group

MATCHER = dict(ltol=0.2, stol=0.3, angle_tol=5)


def roundtrip_failures(name, structures):
    rep = get(name)
    sm = StructureMatcher(**MATCHER)
    failures = []
    for i, s in enumerate(structures):
        try:
            decoded = rep.decode(rep.encode(s))
        except (DecodeError, EncodeError) as exc:
            failures.append((i, f"{type(exc).__name__}: {exc}"))
            continue
        if not sm.fit(s, decoded):
            failures.append((i, "decoded structure does not match under StructureMatcher(0.2, 0.3, 5)"))
    return failures


def sample_real_structures(n_per_dataset: int, seed: int = 0) -> list:
    """A seeded random sample from each shared dataset (Perov-5 and Carbon-24 validation sets)."""
    import pandas as pd

    from .conftest import data_path

    out = []
    for rel in ("perov_5/val.csv", "carbon_24/val.csv"):
        df = pd.read_csv(data_path(rel))
        rows = df.sample(n=min(n_per_dataset, len(df)), random_state=seed)
        out += [Structure.from_str(c, fmt="cif") for c in rows["cif"]]
    return out


@pytest.mark.parametrize("name,n", [("wyckoff", 400), ("coords", 200), ("cif", 200)])
def test_roundtrip_matches_real_structures(name, n):
    """Encode then decode matches the input for >= 99.5% of real structures (the full-set figures and the
    reasons of each failure are printed by benchmarks/roundtrip.py)."""
    structures = sample_real_structures(n)
    failures = roundtrip_failures(name, structures)
    rate = 1 - len(failures) / len(structures)
    print(f"{name}: {len(structures) - len(failures)}/{len(structures)} match; failures: {failures}")
    assert rate >= 0.995, failures


def test_registry():
    assert available() == ["wyckoff", "wyckoff-plaid", "coords", "cif"]
    with pytest.raises(ValueError, match="unknown representation"):
        get("smiles")


def rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_wyckoff_known_answer_rocksalt():
    rep = get("wyckoff")
    text = rep.encode(rocksalt().get_primitive_structure())
    lines = text.splitlines()
    assert lines[0] == "Na4 Cl4"
    assert lines[1] == "225"
    assert lines[2] == "5.64 5.64 5.64"
    assert lines[3] == "90.00 90.00 90.00"
    assert sorted(ln.split()[-1] for ln in lines[4:]) == ["4a", "4b"]
    decoded = rep.decode(text)
    assert len(decoded) == 8 and decoded.composition.reduced_formula == "NaCl"
    assert decoded.get_space_group_info()[1] == 225


def test_wyckoff_fixes_the_floating_origin_of_polar_groups():
    """Pmm2 (origin free along c): every translation along c is one crystal, so one text, first site at z = 0."""
    from plaid.representations.spacegroups import floating_axes

    assert floating_axes(25) == (2,) and floating_axes(1) == (0, 1, 2) and floating_axes(6) == (0, 2)
    assert floating_axes(221) == floating_axes(2) == floating_axes(123) == ()
    # exactly the 68 groups of the 10 polar point groups (1, 2, m, mm2, 4, 4mm, 3, 3m, 6, 6mm)
    polar = {1, *range(3, 10), *range(25, 47), *range(75, 81), *range(99, 111), *range(143, 147),
             *range(156, 162), *range(168, 174), *range(183, 187)}
    assert {n for n in range(1, 231) if floating_axes(n)} == polar
    species = ["Mg", "Ti", "S", "O", "O"]
    coords = [[0, 0, 0.71], [0.5, 0.5, 0.614], [0, 0.5, 0.39], [0.5, 0, 0.622], [0.5, 0.5, 0.015]]
    base = Structure(Lattice.tetragonal(4.3, 4.31), species, coords)
    rep, free = get("wyckoff"), get("wyckoff", fixed_origin=False)
    text = rep.encode(base)
    assert text.splitlines()[1] == "25"
    first = text.splitlines()[4].split()
    assert first[0] == "Mg" and first[3] == "0.000"
    matcher = StructureMatcher()
    for dz in (0.1, 0.37, 0.5, 0.93):
        moved = base.copy()
        moved.translate_sites(range(len(moved)), [0, 0, dz], frac_coords=True)
        assert rep.encode(moved) == text
        assert matcher.fit(rep.decode(text), moved)
    moved.translate_sites(range(len(moved)), [0, 0, 0.2], frac_coords=True)
    assert free.encode(moved) != free.encode(base)  # the old text carried the arbitrary offset
    cubic = Structure(Lattice.cubic(3.95), ["Ba", "Ti", "O", "O", "O"],
                      [[0.5] * 3, [0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    assert rep.encode(cubic) == free.encode(cubic)  # a fixed origin is left alone


def test_wyckoff_fixes_the_sense_of_the_polar_axis():
    """A polar crystal turned end over end (2-fold rotation perpendicular to c) is the same crystal with every c
    coordinate negated: text version 3 writes one text for both; version 2 wrote two."""
    from plaid.representations.spacegroups import floating_axes, polar_axis_flip, space_group

    c_only = [n for n in range(1, 231) if floating_axes(n) == (2,)]
    assert len(c_only) == 60 and all(polar_axis_flip(n) is not None for n in c_only)
    assert polar_axis_flip(221) is None and polar_axis_flip(6) is None  # fixed origin; monoclinic (b and c float)
    flip = polar_axis_flip(25)
    assert np.allclose(flip, np.diag([1, -1, -1])) and np.isclose(np.linalg.det(flip), 1.0)  # proper rotation
    assert space_group(25).lattice_type == "orthorhombic"
    species = ["Mg", "Ti", "S", "O", "O"]
    coords = np.array([[0, 0, 0.0], [0.5, 0.5, 0.614], [0, 0.5, 0.39], [0.5, 0, 0.622], [0.5, 0.5, 0.015]])
    lattice = Lattice.orthorhombic(4.3, 4.35, 4.31)
    base = Structure(lattice, species, coords)
    turned = Structure(lattice, species, np.mod(coords * [1, -1, -1], 1.0))  # rotated 180 degrees about a
    rep, v2 = get("wyckoff"), get("wyckoff", fixed_polar_direction=False)
    assert StructureMatcher().fit(base, turned)  # one crystal
    assert v2.encode(base) != v2.encode(turned)  # two texts before
    text = rep.encode(base)
    assert rep.encode(turned) == text and rep.text_version == 3
    assert StructureMatcher().fit(rep.decode(text), base)
    z = [float(line.split()[3]) for line in text.splitlines()[4:]]
    assert z[0] == 0.0  # the fixed origin still holds
    # the text written is the one whose coordinates come first: Ti's z is 1 - 0.614 = 0.386, not 0.614
    assert z[1] == pytest.approx(0.386)


def test_wyckoff_lenient_decoder_snaps_special_positions_and_lattice():
    rep = get("wyckoff", strict=False)
    # Rutile TiO2 (P4_2/mnm): O on 4f (x, x, 0); the text is slightly off the special position and off-tetragonal.
    text = "Ti2 O4\n136\n4.60 4.62 2.96\n90.10 89.90 90.00\nTi 0.001 0.000 0.000 2a\nO 0.303 0.307 0.002 4f"
    s = rep.decode(text)
    assert s.lattice.a == pytest.approx(s.lattice.b) and s.lattice.angles == pytest.approx((90, 90, 90))
    o = np.array([site.frac_coords for site in s if site.specie.symbol == "O"])
    assert any(np.allclose(p, [0.305, 0.305, 0.0], atol=1e-9) for p in o)
    assert s.get_space_group_info(symprec=1e-3)[1] == 136
    assert rep.lattice_snap(text) == pytest.approx(0.1)  # a, b -> 4.61 and alpha, beta -> 90: 0.01 and 0.1
    with pytest.raises(DecodeError, match=r"b is 4\.62.*b = a \(4\.6\).*alpha is 90\.1"):
        get("wyckoff").decode(text)  # strict (the default): the same text contradicts its space group


ISSUE_SAMPLE = (
    "Ba1 Ti1 O3\n221\n75.77 43.60 46.75\n90.0 83.50 51.02\nBa 0.500 0.500 0.500 1b\nTi 0.000 0.000 0.000 1a\n"
    "O 0.000 0.500 0.500 3c"
)


def test_strict_decoder_rejects_lattice_contradicting_space_group_with_the_numbers():
    with pytest.raises(DecodeError, match=r"space group 221 \(cubic\).*b is 43\.6.*75\.77.*gamma is 51\.02"):
        get("wyckoff").decode(ISSUE_SAMPLE)
    lenient = get("wyckoff", strict=False)
    assert len(lenient.decode(ISSUE_SAMPLE)) == 5
    assert lenient.lattice_snap(ISSUE_SAMPLE) == pytest.approx(90.0 - 51.02)
    assert get("coords").lattice_snap("3.9 3.9 3.9\n90 90 90\nBa\n0 0 0") is None


@pytest.mark.parametrize(
    "sg, lengths, angles, ok",
    [
        (221, "3.95 3.96 3.95", "90.00 90.00 90.00", True),  # within rounding: both could be 3.955
        (221, "3.95 3.97 3.95", "90.00 90.00 90.00", False),
        (221, "3.95 3.95 3.95", "90.00 90.01 90.00", False),
        (221, "3.95 3.95 3.95", "90 90.0 90.00", True),  # fewer decimals, coarser rounding
        (123, "3.95 3.95 5.10", "90.00 90.00 90.00", True),  # tetragonal: a = b, c free
        (123, "3.95 4.10 5.10", "90.00 90.00 90.00", False),
        (191, "3.95 3.95 5.10", "90.00 90.00 120.00", True),  # hexagonal axes
        (191, "3.95 3.95 5.10", "90.00 90.00 90.00", False),
        (166, "3.95 3.95 5.10", "90.00 90.00 120.00", True),  # rhombohedral group, hexagonal axes (pyxtal's)
        (166, "3.95 3.95 3.95", "80.00 80.00 80.00", False),  # rhombohedral axes are not the decoder's setting
        (47, "3.95 4.10 5.10", "90.00 90.00 90.00", True),  # orthorhombic
        (47, "3.95 4.10 5.10", "90.00 95.00 90.00", False),
        (10, "3.95 4.10 5.10", "90.00 95.00 90.00", True),  # monoclinic, unique axis b
        (10, "3.95 4.10 5.10", "95.00 90.00 90.00", False),
        (2, "3.95 4.10 5.10", "85.00 95.00 100.00", True),  # triclinic: no rule
    ],
)
def test_strict_lattice_rule_per_crystal_system(sg, lengths, angles, ok):
    from plaid.representations.spacegroups import space_group as group

    wp = min(group(sg).wyckoff.values(), key=lambda w: w.multiplicity)
    q = np.array([0.1, 0.2, 0.3])
    rep_xyz = " ".join(f"{v:.3f}" for v in wp.orbit(q)[0])
    text = f"Na{wp.multiplicity}\n{sg}\n{lengths}\n{angles}\nNa {rep_xyz} {wp.label}"
    rep = get("wyckoff")
    if ok:
        rep.decode(text)
    else:
        with pytest.raises(DecodeError, match="lattice contradicts space group"):
            rep.decode(text)


BAD_WYCKOFF = {
    "unknown space group": "Na4 Cl4\n231\n5.64 5.64 5.64\n90 90 90\nNa 0 0 0 4a\nCl 0.5 0.5 0.5 4b",
    "does not exist in space group": "Na4 Cl4\n225\n5.64 5.64 5.64\n90 90 90\nNa 0 0 0 4a\nCl 0.5 0.5 0.5 4z",
    "has multiplicity": "Na4 Cl4\n225\n5.64 5.64 5.64\n90 90 90\nNa 0 0 0 8a\nCl 0.5 0.5 0.5 4b",
    "site count mismatch": "Na4 Cl8\n225\n5.64 5.64 5.64\n90 90 90\nNa 0 0 0 4a\nCl 0.5 0.5 0.5 4b",
    "contradicts space group 225": "Na4 Cl4\n225\n5.64 5.60 5.64\n90 90 90\nNa 0 0 0 4a\nCl 0.5 0.5 0.5 4b",
    "truncated": "Na4 Cl4\n225\n5.64 5.64 5.64",
    "expected element": "Na4 Cl4\n225\n5.64 5.64 5.64\n90 90 90\nNa 0 0 0 4a\nCl 0.5 0.5",
    "unknown element": "Na4 Xx4\n225\n5.64 5.64 5.64\n90 90 90\nNa 0 0 0 4a\nXx 0.5 0.5 0.5 4b",
    "non-physical lattice": "Na4 Cl4\n225\n-5.64 5.64 5.64\n90 90 90\nNa 0 0 0 4a\nCl 0.5 0.5 0.5 4b",
    "collapse": "C8\n227\n3.57 3.57 3.57\n90 90 90\nC 0.0 0.0 0.0 32e",
}


@pytest.mark.parametrize("needle,text", list(BAD_WYCKOFF.items()))
def test_wyckoff_decode_errors_say_what_is_wrong(needle, text):
    with pytest.raises(DecodeError, match=needle):
        get("wyckoff").decode(text)


def test_other_decode_errors():
    with pytest.raises(DecodeError, match="truncated"):
        get("coords").decode("3.9 3.9 3.9\n90 90 90\nBa")
    with pytest.raises(DecodeError, match="non-physical lattice"):
        get("coords").decode("3.9 3.9 3.9\n120 120 120\nBa\n0 0 0")
    cif = get("cif").encode(rocksalt())
    with pytest.raises(DecodeError, match="unknown space group"):
        get("cif").decode(cif.replace("_symmetry_Int_Tables_number 225", "_symmetry_Int_Tables_number 999"))
    with pytest.raises(DecodeError, match="site count mismatch"):
        get("cif").decode(cif.replace("_chemical_formula_sum 'Na4 Cl4'", "_chemical_formula_sum 'Na4 Cl8'"))
    with pytest.raises(DecodeError):
        get("cif").decode(cif[: len(cif) // 2])


@pytest.mark.parametrize("name", ["wyckoff", "coords", "cif"])
def test_only_decode_error_escapes_on_mutated_text(name, perov_structures, carbon_structures):
    """Random truncations, character swaps and junk never raise anything but DecodeError."""
    rep = get(name)
    rng = np.random.default_rng(0)
    texts = [rep.encode(s) for s in perov_structures[:15] + carbon_structures[:15]]
    alphabet = list("0123456789.- \nabcxyzOBaTiC_'()/") + ["Xx", "999", "nan", "inf", "1e308", "\x00"]
    n_ok = 0
    for i in range(300):
        text = texts[i % len(texts)]
        kind = i % 3
        if kind == 0:
            mutated = text[: int(rng.integers(0, len(text)))]
        elif kind == 1:
            chars = list(text)
            for _ in range(int(rng.integers(1, 4))):
                chars[int(rng.integers(len(chars)))] = alphabet[int(rng.integers(len(alphabet)))]
            mutated = "".join(chars)
        else:
            mutated = "".join(alphabet[int(k)] for k in rng.integers(0, len(alphabet), size=int(rng.integers(0, 80))))
        try:
            structure = rep.decode(mutated)
        except DecodeError:
            continue
        assert isinstance(structure, Structure) and len(structure) > 0
        n_ok += 1
    assert n_ok < 300  # most mutations are caught, and none raised another exception type
    with pytest.raises(DecodeError):
        rep.decode(None)  # type: ignore[arg-type]


def test_encode_rejects_partial_occupancy():
    s = Structure(Lattice.cubic(4), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    for name in available():
        with pytest.raises(EncodeError, match="partial occupancy"):
            get(name).encode(s)


def osmium_oxide() -> Structure:
    return Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.5, 3.2), ["Os", "O"], [[0, 0, 0], [0.31, 0.31, 0]]
    )


@pytest.mark.parametrize("name", ["wyckoff", "coords", "cif"])
@pytest.mark.parametrize("element", ["O", "Os"])
def test_mask_element_only_touches_that_element(name, element):
    rep = get(name)
    text = rep.encode(osmium_oxide())
    masked = rep.mask_element(text, element)
    assert MASK in masked
    other = "Os" if element == "O" else "O"
    assert masked.replace(MASK, element) == text  # nothing else changed
    assert rep.elements(masked.replace(MASK, element)) == rep.elements(text)
    assert other in rep.elements(masked)
    if name == "cif":  # the space-group symbol and keywords are not elements
        assert "P4_2/mnm" in masked or "P4_2/mnm" not in text


def test_cif_mask_leaves_symbols_and_keywords():
    rep = get("cif")
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.4), ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    text = rep.encode(s)
    masked = rep.mask_element(text, "F")
    assert "Fm-3m" in masked and "_symmetry_space_group_name_H-M" in masked
    assert masked.count(MASK) >= 3  # data_ line, formula lines, site line


def test_space_group_tables():
    g = space_group(225)
    assert g.symbol == "Fm-3m" and g.wyckoff["a"].multiplicity == 4 and g.wyckoff["l"].multiplicity == 192
    assert parse_space_group("P4_2/mnm") == 136 == parse_space_group("136")
    with pytest.raises(ValueError):
        parse_space_group("Q9")


# MP-20 validation structures whose CIF did not decode before the decoder merged rounded symmetry images
# ("site count mismatch: _chemical_formula_sum says Cs2 U1 Cl6, sites give Cs2 U1 Cl10" and the like).
CIF_FAILURES_BEFORE = [
    "mp-1102023", "mp-8393", "mp-867537", "mp-559734", "mp-1103465", "mp-1219065", "mp-771246", "mp-756498",
    "mp-1225421", "mp-1078600", "mp-867261", "mp-23077", "mp-642845", "mp-753150",
]


def test_cif_round_trips_mp20_structures_that_failed():
    import pandas as pd

    from .conftest import data_path

    df = pd.read_csv(data_path("mp_20/val.csv")).set_index("material_id").loc[CIF_FAILURES_BEFORE]
    structures = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    assert roundtrip_failures("cif", structures) == []
    rep = get("cif", verify=False)  # even unverified, the text's formula agrees with its sites
    for s in structures:
        decoded = rep.decode(rep.encode(s))
        assert decoded.composition.reduced_composition == s.composition.reduced_composition


def test_spglib_warnings_silenced_but_other_stderr_kept(capfd):
    import os

    from plaid.representations.quiet import quiet_spglib

    with quiet_spglib():
        os.write(2, b"Warning: ssm_get_exact_positions failed (attempt=0).\n")
        os.write(2, b"spglib: get_bravais_exact_positions_and_lattice failed.\n")
        os.write(2, b"real trouble: something else\n")
    err = capfd.readouterr().err
    assert "ssm_get_exact_positions" not in err and "get_bravais" not in err
    assert "real trouble: something else" in err
