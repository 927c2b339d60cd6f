"""PLaID's released Wyckoff text (``wyckoff-plaid``), its grammar, and PLaID's sample CSVs in ``plaid evaluate`` /
``plaid pairs``. Every text here is written by hand in PLaID's format; the structures it must decode to are computed
by hand from the International Tables positions of its space group."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from plaid.representations import DecodeError, get
from plaid.representations.wyckoff_plaid import symbol_number

PROMPT = ("Below is a description of a bulk material. Generate a description of the lengths and angles of the lattice "
          "vectors and then the element type and coordinates for each atom within the lattice:\n")
SG_PROMPT = PROMPT.replace("material. ", "material. The spacegroup number is 225. ")

NACL = """Na4Cl4
Spacegroup: Fm-3m
abc: 5.64 5.64 5.64
angles: 90.00 90.00 90.00
Sites (8)
Na 0.000 0.000 0.000 4a
Cl 0.500 0.500 0.500 4b"""

SRTIO3 = """Sr1Ti1O3
Spacegroup: Pm-3m
abc: 3.91 3.91 3.91
angles: 90.00 90.00 90.00
Sites (5)
Sr 0.500 0.500 0.500 1b
Ti 0.000 0.000 0.000 1a
O 0.500 0.000 0.000 3d"""

HALF_HEUSLER = """Zr4Ni4Pd4
Spacegroup: F-43m
abc: 6.15 6.15 6.15
angles: 90.00 90.00 90.00
Sites (12)
Zr 0.000 0.000 0.000 4a
Ni 0.500 0.500 0.500 4b
Pd 0.750 0.750 0.750 4d"""

WURTZITE = """Zn2O2
Spacegroup: P63mc
abc: 3.25 3.25 5.21
angles: 90.00 90.00 120.00
Sites (4)
Zn 0.333 0.667 0.000 2b
O 0.333 0.667 0.382 2b"""

FCC = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]


def _shift(points, t):
    return [tuple((np.add(p, t)) % 1.0) for p in points]


def _sites(structure: Structure) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for site in structure:
        out.setdefault(site.specie.symbol, []).append(tuple(np.round(site.frac_coords % 1.0, 4) % 1.0))
    return {el: sorted(v) for el, v in out.items()}


def _expect(points) -> list[tuple]:
    return sorted(tuple(np.round(np.asarray(p, dtype=float) % 1.0, 4) % 1.0) for p in points)


@pytest.fixture(scope="module")
def rep():
    return get("wyckoff-plaid")


@pytest.mark.parametrize(
    "text, lengths, angles, expected",
    [
        (NACL, (5.64,) * 3, (90,) * 3, {"Na": FCC, "Cl": _shift(FCC, (0.5, 0.5, 0.5))}),
        # Pm-3m: 1a (0,0,0), 1b (1/2,1/2,1/2), 3d (1/2,0,0), (0,1/2,0), (0,0,1/2)
        (SRTIO3, (3.91,) * 3, (90,) * 3,
         {"Sr": [(0.5, 0.5, 0.5)], "Ti": [(0, 0, 0)], "O": [(0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)]}),
        # F-43m: 4a, 4b = 4a + (1/2,1/2,1/2), 4d = 4a + (3/4,3/4,3/4)
        (HALF_HEUSLER, (6.15,) * 3, (90,) * 3,
         {"Zr": FCC, "Ni": _shift(FCC, (0.5, 0.5, 0.5)), "Pd": _shift(FCC, (0.75, 0.75, 0.75))}),
        # P6_3mc 2b: (1/3,2/3,z), (2/3,1/3,z+1/2); 0.333/0.667 are projected onto 1/3, 2/3
        (WURTZITE, (3.25, 3.25, 5.21), (90, 90, 120),
         {"Zn": [(1 / 3, 2 / 3, 0), (2 / 3, 1 / 3, 0.5)], "O": [(1 / 3, 2 / 3, 0.382), (2 / 3, 1 / 3, 0.882)]}),
    ],
)
def test_hand_written_texts_decode_to_hand_computed_structures(rep, text, lengths, angles, expected):
    s = rep.decode(text)
    np.testing.assert_allclose(s.lattice.abc, lengths, atol=1e-9)
    np.testing.assert_allclose(s.lattice.angles, angles, atol=1e-9)
    assert _sites(s) == {el: _expect(p) for el, p in expected.items()}


def test_encoder_writes_plaids_bytes(rep):
    """The encoder writes what PLaID's pipeline writes: pyxtal's formula (every count), its symbol, Sites (N)
    of the conventional cell, elements by electronegativity (Na before Cl even when Cl is listed first)."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Cl", "Na"], [[0.5, 0.5, 0.5], [0, 0, 0]])
    assert rep.encode(nacl) == NACL
    # the primitive cell encodes as the conventional cell
    assert rep.encode(nacl.get_primitive_structure()) == NACL
    srtio3 = Structure(Lattice.cubic(3.91), ["O", "Ti", "O", "Sr", "O"],
                       [[0.5, 0, 0], [0, 0, 0], [0, 0.5, 0], [0.5, 0.5, 0.5], [0, 0, 0.5]])
    assert rep.encode(srtio3) == SRTIO3
    assert rep.encode(rep.decode(HALF_HEUSLER)) == HALF_HEUSLER


def test_plaids_own_number_forms_decode(rep):
    """PLaID's texts hold coordinates pyxtal did not wrap (``-0.000``, ``-0.303``) and symbols without underscores;
    a pymatgen-style ``P6_3mc`` reads as pyxtal's ``P63mc``."""
    assert _sites(rep.decode(NACL.replace("Na 0.000 0.000 0.000", "Na -0.000 0.000 1.000"))) == _sites(
        rep.decode(NACL))
    assert _sites(rep.decode(WURTZITE.replace("P63mc", "P6_3mc"))) == _sites(rep.decode(WURTZITE))
    assert symbol_number("Fm-3m") == 225 and symbol_number("P63/mmc") == 194 and symbol_number("Pnma") == 62
    assert rep.space_group(NACL) == 225 and rep.space_group("Na1\nSpacegroup: Fm3m") is None
    assert rep.elements(SRTIO3) == ["Sr", "Ti", "O"]
    masked = rep.mask_element(SRTIO3, "Sr")
    assert masked.splitlines()[0] == "[MASK]1Ti1O3" and "Spacegroup: Pm-3m" in masked
    assert masked.splitlines()[5] == "[MASK] 0.500 0.500 0.500 1b" and masked.count("[MASK]") == 2


@pytest.mark.parametrize(
    "bad, why",
    [
        (NACL.replace("Sites (8)", "Sites (9)"), "Sites (9)"),
        (NACL.replace("Fm-3m", "Fm3m"), "unknown space group symbol"),
        (NACL.replace("abc: ", "lengths: "), "'abc:'"),
        (NACL.replace("angles: ", ""), "'angles:'"),
        (NACL.replace("Sites (8)", "Sites 8"), "Sites (N)"),
        (NACL.replace("Na4Cl4", "Na4Cl8"), "site count mismatch"),
        (NACL.replace("4b", "4z"), "does not exist in space group 225"),
        (NACL.replace("4b", "8b"), "multiplicity 4"),
        (NACL.replace("abc: 5.64 5.64 5.64", "abc: 5.64 5.64 6.00"), "c is 6"),
        ("\n".join(NACL.splitlines()[:5]), "truncated"),
        (NACL.replace("Cl 0.500", "Xx 0.500"), "unknown element"),
        (NACL.replace("\nSites", "\n\nSites"), "blank line"),
    ],
)
def test_bad_texts_raise_typed_errors(rep, bad, why):
    with pytest.raises(DecodeError, match=pytest.importorskip("re").escape(why)):
        rep.decode(bad)


def test_lenient_decoder_snaps_the_lattice():
    off = NACL.replace("abc: 5.64 5.64 5.64", "abc: 5.64 5.64 5.70")
    lenient = get("wyckoff-plaid", strict=False)
    s = lenient.decode(off)
    np.testing.assert_allclose(s.lattice.abc, (5.66,) * 3, atol=1e-9)
    assert lenient.lattice_snap(off) == pytest.approx(0.04)
    assert lenient.lattice_snap(NACL) == 0.0


def test_round_trip_on_real_structures(rep, perov_csv):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    df = pd.read_csv(perov_csv, nrows=12)
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
    for cif in df["cif"]:
        s = Structure.from_str(cif, fmt="cif")
        text = rep.encode(s)
        assert text.splitlines()[1].startswith("Spacegroup: ") and text.splitlines()[4] == f"Sites ({len(rep.decode(text))})"
        assert matcher.fit(s, rep.decode(text)), text


# ---------------------------------------------------------------------------------------------------- grammar


@pytest.fixture(scope="module")
def grammar():
    from plaid.sampling.constrained import make_grammar

    return make_grammar("wyckoff-plaid", {}, max_atoms=12)


def test_grammar_accepts_plaid_texts_and_forces_its_words(grammar):
    for text in (NACL, SRTIO3, HALF_HEUSLER):
        state = grammar.feed(text)
        assert state is not None and grammar.can_end(state), text
        assert not grammar.can_end(grammar.feed(text[:-3]))
    # the words PLaID writes are forced, the atom count in Sites (N) included
    assert grammar.next_chars(grammar.feed("Na4Cl4\nSpa")) == frozenset("c")
    assert grammar.next_chars(grammar.feed(NACL.split("Sites")[0] + "Sites (")) == frozenset("8")
    for bad in ("Na4 Cl4\n", "Na4Cl4\nSpacegroup: Fm3", "Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.64 5.7",
                NACL.replace("Sites (8)", "Sites (9)"), NACL.replace("Cl 0.500 0.500 0.500 4b", "Cl 0.000 0.000 0.000 4a")):
        assert grammar.feed(bad) is None, bad


def test_constrained_conditions_are_kept():
    from plaid.sampling.constrained import make_grammar

    g = make_grammar("wyckoff-plaid", {"composition": "Na4 Cl4", "spacegroup": 225}, max_atoms=12)
    assert g.feed(NACL) is not None
    assert g.feed("Na4Cl4\nSpacegroup: Pm") is None  # only Fm-3m
    assert g.feed("K4") is None


def test_grammar_random_walks_decode_within_budget(grammar, rep):
    rng = random.Random(3)
    for _ in range(2):
        text = grammar.random_text(rng, 400)
        assert len(text) <= 400
        rep.decode(text)


def test_untrained_model_constrained_decodes(tmp_path):
    import torch

    from plaid.sampling.constrained import make_grammar
    from plaid.sampling.generate import HFBackend, SamplingParams
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    path = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path / "tiny")
    backend = HFBackend.load(path, device="cpu")
    rep = get("wyckoff-plaid")
    grammar = make_grammar("wyckoff-plaid", {}, max_atoms=8)
    gens = backend.generate([PROMPT] * 4, list(range(4)), SamplingParams(max_new_tokens=260), [grammar] * 4)
    for g in gens:
        s = rep.decode(g.text)
        assert g.text.splitlines()[4] == f"Sites ({len(s)})"


# ---------------------------------------------------------------------------------------------- sample files


def _plaid_csv(path):
    """Four rows as PLaID releases them: rock salt (space-group prompt), the perovskite, a malformed generation
    (its Sites count disagrees), and a half-Heusler whose label is missing."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows = [
        {"gen_str": SG_PROMPT + NACL, "cif": nacl.to(fmt="cif"), "relaxed_cif": nacl.to(fmt="cif"),
         "e_above_hull": 0.0, "actual_spacegroup": 225},
        {"gen_str": PROMPT + SRTIO3, "cif": "", "relaxed_cif": "", "e_above_hull": 0.21, "actual_spacegroup": 221},
        {"gen_str": PROMPT + NACL.replace("Sites (8)", "Sites (7)"), "cif": "", "relaxed_cif": "",
         "e_above_hull": 0.5, "actual_spacegroup": None},
        {"gen_str": PROMPT + HALF_HEUSLER, "cif": "", "relaxed_cif": "", "e_above_hull": None,
         "actual_spacegroup": 216},
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_plaid_csv_rows_become_samples(tmp_path, rep):
    from plaid.evaluation.samples import load_samples
    from plaid.evaluation.seed_files import split_gen_str

    path = _plaid_csv(tmp_path / "plaid.csv")
    samples = load_samples(path)
    assert [s.sample_id for s in samples] == [0, 1, 2, 3]
    assert samples[0].prompt == SG_PROMPT and samples[0].text == NACL and samples[0].representation == "wyckoff-plaid"
    assert samples[0].conditions == {"spacegroup": 225}
    assert _sites(samples[0].structure) == _sites(rep.decode(NACL))
    assert _sites(samples[1].structure)["O"] == _expect([(0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)])
    assert samples[2].structure is None and "Sites (7)" in samples[2].error
    cif_samples = load_samples(path, structure_column="cif")
    assert cif_samples[0].structure is not None and len(cif_samples[0].structure) == 8
    assert cif_samples[1].structure is None and cif_samples[1].error == "empty cif"
    assert cif_samples[1].generated_text == SRTIO3  # kept for pairs
    # an infill row: the masked text, PLaID's instruction and the element
    infill = ('Below is a partial description of a bulk material where one element has been replaced with the string '
              '"[MASK]":\n' + NACL.replace("Na", "[MASK]") + "\nGenerate an element that could replace [MASK] in the "
              "bulk material:\nNa")
    parts = split_gen_str(infill)
    assert parts["text"] == "Na" and parts["masked_text"] == NACL.replace("Na", "[MASK]")


def _reference(path):
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.60), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(6.29), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    pd.DataFrame({"material_id": ["r0", "r1"], "cif": [nacl.to(fmt="cif"), kcl.to(fmt="cif")]}).to_csv(path, index=False)
    return path


def test_evaluate_plaid_csv_without_relaxation_and_with_given_labels(tmp_path):
    from plaid.cli import main

    samples, ref = _plaid_csv(tmp_path / "plaid.csv"), _reference(tmp_path / "ref.csv")
    common = ["--reference", str(ref), "--dataset", "mp_20", "--no-plots"]
    assert main(["evaluate", str(samples), "--out", str(tmp_path / "plain"), "--no-relax", *common]) == 0
    report = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert report["n_samples"] == 4 and report["n_parsed"] == 3 and report["hull"] is None

    out = tmp_path / "given"
    assert main(["evaluate", str(samples), "--out", str(out), "--e-hull-column", "e_above_hull", *common]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["hull_kind"] == "given" and report["hull"]["column"] == "e_above_hull"
    assert report["relaxer"] is None
    outcomes = [json.loads(ln) for ln in (out / "outcomes.jsonl").read_text().splitlines() if ln.strip()]
    rows = {str(r.get("sample_id")): r for r in outcomes if "sample_id" in r}
    # NaCl (valid, given 0.0) is stable and metastable; the perovskite (0.21) neither; the malformed row is
    # unparsed whatever its label; the half-Heusler's label is missing and says so
    assert rows["0"]["e_hull"] == 0.0 and rows["0"]["relax_status"] == "supplied"
    assert rows["1"]["e_hull"] == pytest.approx(0.21)
    assert rows["2"]["e_hull"] is None and rows["2"]["parsed"] is False
    assert rows["3"]["e_hull"] is None and rows["3"]["e_hull_reason"] == "e_above_hull empty"
    assert report["metastable_rate"] == pytest.approx(1 / 4) and report["stable_rate"] == pytest.approx(1 / 4)
    # S.U.N. matches the file's relaxed NaCl, which is the reference's rock salt: stable, not novel, not S.U.N.
    assert report["hull"]["relaxed_column"] == "relaxed_cif"
    assert rows["0"]["is_stable"] is True and rows["0"]["sun_novel"] is False and rows["0"]["is_sun"] is False


def test_pairs_from_plaid_csv_with_given_labels(tmp_path):
    from plaid.cli import main

    rows = pd.read_csv(_plaid_csv(tmp_path / "p.csv"))
    rows["gen_str"] = rows["gen_str"].str.replace(SG_PROMPT, PROMPT, regex=False)  # one prompt for all
    rows.to_csv(tmp_path / "one_prompt.csv", index=False)
    out = tmp_path / "pairs"
    assert main(["pairs", str(tmp_path / "one_prompt.csv"), "--out", str(out), "--e-hull-column", "e_above_hull",
                 "--ratio", "3"]) == 0
    report = json.loads((out / "pairs_report.json").read_text())
    assert report["labeller"]["source"] == "given" and report["hull"]["kind"] == "given"
    assert report["n_accepted"] == 1 and report["status_counts"].get("unlabelled") == 1
    from datasets import load_from_disk

    pairs = load_from_disk(str(out))
    chosen = {r["chosen"] for split in pairs.values() for r in split}
    assert chosen == {NACL}


def test_crystallm_multiplicity_check_reads_plaid_text():
    from plaid.evaluation.checks import site_multiplicity_consistent

    assert site_multiplicity_consistent(NACL, "wyckoff-plaid") is True
    assert site_multiplicity_consistent(NACL.replace("Na4Cl4", "Na8Cl4"), "wyckoff-plaid") is False


def test_plaid_sample_cli_writes_plaid_text_in_plaid_prompts(tmp_path):
    """`plaid sample --representation wyckoff-plaid --prompt-style plaid-paper --constrained`: PLaID's exact prompt
    (as a published PLaID adapter was trained on), texts that decode, the requested formula in the cell."""
    import json

    import torch
    from pymatgen.core import Composition

    from plaid.cli import main
    from plaid.prompts import generation_prompt
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    path = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff-plaid"), tmp_path / "tiny")
    out = tmp_path / "s.jsonl"
    code = main(["sample", "--model", str(path), "--representation", "wyckoff-plaid", "--prompt-style", "plaid-paper",
                 "--formula", "NaCl", "--constrained", "--num-samples", "2", "--batch-size", "2", "--out", str(out),
                 "--no-progress", "--max-new-tokens", "200"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert r["prompt"] == generation_prompt("wyckoff-plaid", {"formula": "NaCl"}, style="plaid-paper")
        assert r["prompt"].startswith("Below is a description of a bulk material. The chemical formula is NaCl. ")
        s = get("wyckoff-plaid").decode(r["text"])
        assert s.composition.reduced_formula == Composition("NaCl").reduced_formula
