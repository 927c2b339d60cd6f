"""The seeds' own texts: crystal-text-llm's coords text and prompts, CrystaLLM's standardized CIF and prompts, PLaID's
prompts, and their sample files (a crystal-text-llm CSV, a directory and a .tar.gz of CrystaLLM CIFs) through
``plaid evaluate``. Every file here is written by hand in the seed's format; every expected structure is worked out
by hand from the file."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Element, Lattice, Structure

from plaid.cli import main
from plaid.evaluation import read_structures_csv
from plaid.evaluation.samples import load_samples
from plaid.prompts import generation_prompt, infill_prompt, normalize_conditions, trained_prompt_style
from plaid.representations import get

SEED_GEN = (
    "Generate a description of the lengths and angles of the lattice vectors and then the element type and "
    "coordinates for each atom within the lattice:\n"
)
SEED_INFILL_HEAD = 'Below is a partial description of a bulk material where one element has been replaced with the string "[MASK]":\n'
SEED_INFILL_TAIL = "\nGenerate an element that could replace [MASK] in the bulk material:\n"
CONDITIONS = {"formula": "TiBaO3", "spacegroup": "Pm-3m", "formation_energy": -3.456789, "band_gap": 1.0,
              "e_hull": 0.012345}

# ---------------------------------------------------------------------------------------------------- prompts


def test_plaid_paper_prompts_byte_for_byte():
    assert generation_prompt("wyckoff", None, "plaid-paper") == "Below is a description of a bulk material. " + SEED_GEN
    assert generation_prompt("wyckoff", CONDITIONS, "plaid-paper") == (
        "Below is a description of a bulk material. The chemical formula is BaTiO3. The spacegroup number is 221. "
        "The formation energy per atom is -3.4568. The band gap is 1.0. The energy above the convex hull is 0.0123. "
        + SEED_GEN
    )
    masked = "BaTiO3\nSpacegroup: Pm-3m\n[MASK] 0.000 0.000 0.000 1a"
    assert infill_prompt(masked, "plaid-paper") == SEED_INFILL_HEAD + masked + SEED_INFILL_TAIL


def test_crystal_text_llm_prompts_byte_for_byte():
    # llama_sample.py's unconditional prompt; llama_finetune.py's sentences, formula first
    assert generation_prompt("coords", {}, "crystal-text-llm") == "Below is a description of a bulk material. " + SEED_GEN
    assert generation_prompt("coords", CONDITIONS, "crystal-text-llm") == (
        "Below is a description of a bulk material. The chemical formula is BaTiO3. The formation energy per atom "
        "is -3.4568. The band gap is 1.0. The energy above the convex hull is 0.0123. The spacegroup number is 221. "
        + SEED_GEN
    )
    masked = "3.9 3.9 3.9\n90 90 90\n[MASK]\n0.50 0.50 0.50"
    assert infill_prompt(masked, "crystal-text-llm") == SEED_INFILL_HEAD + masked + SEED_INFILL_TAIL
    # numbers as Python's round(v, 4) prints them, as both seeds write them
    assert normalize_conditions({"e_hull": 0.1, "band_gap": 0}, "crystal-text-llm") == {
        "band_gap": "0.0", "e_hull": "0.1"}


def test_plaid_prompts_unchanged():
    assert generation_prompt("wyckoff", {"composition": "Ba1 Ti1 O3", "spacegroup": 221}) == (
        "Below is a description of a bulk material. The cell composition is Ba1 Ti1 O3. The space group number is "
        "221. Generate the formula, space group, lattice parameters and Wyckoff positions of the crystal:\n"
    )


def _props_rows(*symbols):
    rows = []
    for s in symbols:
        el = Element(s)
        rows.append(f"{s} {el.X:.4f} {el.atomic_radius:.4f} {el.average_ionic_radius:.4f}")
    return rows


def test_crystallm_prompts_byte_for_byte():
    assert generation_prompt("cif", {"composition": "Cl2 Na2"}, "crystallm") == "data_Na2Cl2\n"
    assert generation_prompt("cif", {"formula": "NaCl", "z": 4}, "crystallm") == "data_Na4Cl4\n"
    assert generation_prompt("cif", None, "crystallm") == "data_"
    head = "loop_\n_atom_type_symbol\n_atom_type_electronegativity\n_atom_type_radius\n_atom_type_ionic_radius\n"
    assert generation_prompt("cif", {"composition": "Na4Cl4", "spacegroup": 225}, "crystallm") == (
        "data_Na4Cl4\n" + head + "\n".join(_props_rows("Na", "Cl")) + "\n_symmetry_space_group_name_H-M Fm-3m\n"
    )
    assert _props_rows("Na")[0].startswith("Na 0.9300 1.8000 ")  # Pauling X and atomic radius of Na
    with pytest.raises(ValueError, match="no infill"):
        infill_prompt("data_[MASK]4", "crystallm")
    with pytest.raises(ValueError, match="cif"):
        generation_prompt("coords", {"composition": "Na4Cl4"}, "crystallm")
    with pytest.raises(ValueError, match="cannot state composition"):
        generation_prompt("wyckoff", {"composition": "Na4Cl4"}, "plaid-paper")
    with pytest.raises(ValueError, match="unknown prompt style"):
        generation_prompt("wyckoff", None, "gpt")


# ---------------------------------------------------------------------------------------------- coords text


def test_coords_is_crystal_text_llm_text():
    """get_crystal_string: lengths {:.1f}, angles str(int(x)), per site the element and {:.2f} coordinates."""
    lattice = Lattice.from_parameters(3.912, 4.05, 5.0, 90, 100.7, 90)
    s = Structure(lattice, ["Ba", "Ti", "O"], [[0.5, 0.5, 0.5], [0.0, 0.0, 0.9961], [-0.25, 0.5, 0.123]])
    assert get("coords").encode(s) == "3.9 4.0 5.0\n90 100 90\nBa\n0.50 0.50 0.50\nTi\n0.00 0.00 1.00\nO\n0.75 0.50 0.12"
    cubic60 = Structure(Lattice.from_parameters(4, 4, 4, 59.999999, 59.999999, 59.999999), ["Cu"], [[0, 0, 0]])
    assert get("coords").encode(cubic60).splitlines()[1] == "59 59 59"  # int() truncates, as in crystal-text-llm
    assert get("coords", angle_rounding="round").encode(cubic60).splitlines()[1] == "60 60 60"


def test_crystal_text_llm_generation_decodes():
    text = "4.2 4.2 4.2\n60 60 60\nTi\n0.41 0.75 0.50\nTi\n0.91 0.25 0.00\nMn\n0.66 0.00 0.75\nNi\n0.16 0.50 0.25\n"
    s = get("coords").decode(text)
    assert [str(x) for x in s.species] == ["Ti", "Ti", "Mn", "Ni"]
    assert s.lattice.abc == pytest.approx((4.2, 4.2, 4.2)) and s.lattice.angles == pytest.approx((60, 60, 60))
    assert s[2].frac_coords == pytest.approx([0.66, 0.0, 0.75])
    assert s.volume == pytest.approx(4.2**3 / np.sqrt(2), rel=1e-6)  # a 60-degree rhombohedral cell: a^3/sqrt(2)


# ------------------------------------------------------------------------------------------------- CIF text

# what a CrystaLLM model writes for rock salt (its tokenizer's single spaces, identity operator, properties loop)
CRYSTALLM_NACL = """data_Na4Cl4
loop_
_atom_type_symbol
_atom_type_electronegativity
_atom_type_radius
_atom_type_ionic_radius
Na 0.9300 1.8000 1.1600
Cl 3.1600 1.0000 1.6700
_symmetry_space_group_name_H-M Fm-3m
_cell_length_a 5.6402
_cell_length_b 5.6402
_cell_length_c 5.6402
_cell_angle_alpha 90.0000
_cell_angle_beta 90.0000
_cell_angle_gamma 90.0000
_symmetry_Int_Tables_number 225
_chemical_formula_structural NaCl
_chemical_formula_sum 'Na4 Cl4'
_cell_volume 179.4252
_cell_formula_units_Z 4
loop_
_symmetry_equiv_pos_site_id
_symmetry_equiv_pos_as_xyz
1 'x, y, z'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_symmetry_multiplicity
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na Na0 4 0.0000 0.0000 0.0000 1
Cl Cl1 4 0.0000 0.0000 0.5000 1

"""
# CrystaLLM's post-processed form (bin/postprocess.py): the group's operators restored, properties loop removed
CRYSTALLM_POST_P1BAR = """data_Li2O2
_symmetry_space_group_name_H-M P-1
_cell_length_a 3.0000
_cell_length_b 4.0000
_cell_length_c 5.0000
_cell_angle_alpha 80.0000
_cell_angle_beta 85.0000
_cell_angle_gamma 95.0000
_symmetry_Int_Tables_number 2
_chemical_formula_structural LiO
_chemical_formula_sum 'Li2 O2'
_cell_volume 59.0000
_cell_formula_units_Z 2
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
  2  '-x, -y, -z'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_symmetry_multiplicity
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Li Li0 2 0.1000 0.2000 0.3000 1
O O1 2 0.4000 0.1000 0.2000 1
"""


def _sites(structure):
    return sorted((str(site.specie), *np.mod(np.round(site.frac_coords, 4), 1)) for site in structure)


def test_crystallm_generated_cif_decodes():
    s = get("cif").decode(CRYSTALLM_NACL)
    fcc = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    expected = [("Na", *p) for p in fcc] + [("Cl", *np.mod(np.add(p, (0, 0, 0.5)), 1)) for p in fcc]
    assert _sites(s) == sorted(expected)
    assert s.lattice.abc == pytest.approx((5.6402,) * 3)
    # a model without an end token runs on into the next CIF: the first one is read
    assert _sites(get("cif").decode(CRYSTALLM_NACL + "data_Na4Cl4\nloop_\n_atom_ty")) == sorted(expected)
    p1bar = get("cif").decode(CRYSTALLM_POST_P1BAR)
    assert _sites(p1bar) == sorted([("Li", 0.1, 0.2, 0.3), ("Li", 0.9, 0.8, 0.7), ("O", 0.4, 0.1, 0.2),
                                    ("O", 0.6, 0.9, 0.8)])
    assert p1bar.lattice.angles == pytest.approx((80, 85, 95))


def test_cif_encode_is_crystallm_standardized_text():
    """CifWriter(symprec=0.1) -> data_ cell composition -> identity operator -> properties loop before the space
    group -> 4 decimals -> CrystaLLM's tokenizer blanks."""
    rock = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6402), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    text = get("cif").encode(rock)
    lines = text.splitlines()
    assert lines[:6] == ["data_Na4Cl4", "loop_", "_atom_type_symbol", "_atom_type_electronegativity",
                         "_atom_type_radius", "_atom_type_ionic_radius"]
    assert lines[6:8] == _props_rows("Na", "Cl")
    assert lines[8:16] == ["_symmetry_space_group_name_H-M Fm-3m", "_cell_length_a 5.6402", "_cell_length_b 5.6402",
                           "_cell_length_c 5.6402", "_cell_angle_alpha 90.0000", "_cell_angle_beta 90.0000",
                           "_cell_angle_gamma 90.0000", "_symmetry_Int_Tables_number 225"]
    assert "_chemical_formula_sum 'Na4 Cl4'" in lines and "_cell_formula_units_Z 4" in lines
    ops = lines.index("_symmetry_equiv_pos_as_xyz")
    assert lines[ops + 1 : ops + 3] == ["1 'x, y, z'", "loop_"]
    assert lines[-2:] == ["Na Na0 4 0.0000 0.0000 0.0000 1", "Cl Cl1 4 0.0000 0.0000 0.5000 1"]
    assert text.endswith("1\n") and "  " not in text and "#" not in text
    # the text of CRYSTALLM_NACL except the pymatgen version's ionic radius of Cl and the volume's last digits
    assert get("cif").decode(text).matches(get("cif").decode(CRYSTALLM_NACL))
    masked = get("cif").mask_element(text, "Na")
    assert "[MASK] 0.9300 1.8000" in masked and "[MASK] [MASK]0 4 0.0000" in masked and "data_[MASK]4Cl4" in masked


# ------------------------------------------------------------------------------------------- sample files

CTL_ROW = """# generated using pymatgen
data_{name}
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   {a:.8f}
_cell_length_b   {a:.8f}
_cell_length_c   {a:.8f}
_cell_angle_alpha   90.00000000
_cell_angle_beta   90.00000000
_cell_angle_gamma   90.00000000
_symmetry_Int_Tables_number   1
_chemical_formula_structural   {name}
_chemical_formula_sum   '{sum}'
_cell_volume   {v:.8f}
_cell_formula_units_Z   1
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
{sites}"""


def _ctl_cif(name, formula_sum, a, sites):
    rows = "".join(f"  {el}  {el}{i}  1  {x:.8f}  {y:.8f}  {z:.8f}  1\n" for i, (el, x, y, z) in enumerate(sites))
    return CTL_ROW.format(name=name, sum=formula_sum, a=a, v=a**3, sites=rows)


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory, perov_csv):
    root = tmp_path_factory.mktemp("seed_files")
    pd.read_csv(perov_csv, nrows=8).to_csv(root / "train.csv", index=False)
    # crystal-text-llm's released samples: an unnamed index column and `cif` (pymatgen P1 CIFs, coordinates that
    # stray below 0 and above 1 as its parse_fn writes them)
    cscl = _ctl_cif("CsCl", "Cs1 Cl1", 4.12, [("Cs", -0.0000339, 0, 0), ("Cl", 0.5, 0.5, 1.0000339)])
    ktao3 = _ctl_cif("KTaO3", "K1 Ta1 O3", 3.99, [("K", 0, 0, 0), ("Ta", 0.5, 0.5, 0.5), ("O", 0.5, 0.5, 0),
                                                     ("O", 0.5, 0, 0.5), ("O", 0, 0.5, 0.5)])
    truncated = cscl[: cscl.index("loop_")]
    pd.DataFrame({"cif": [cscl, ktao3, truncated]}).to_csv(root / "ctl_samples.csv")
    # CrystaLLM's generated CIFs, one per file
    cifs = root / "crystallm"
    cifs.mkdir()
    (cifs / "NaCl_1.cif").write_text(CRYSTALLM_NACL)
    (cifs / "Li2O2_1.cif").write_text(CRYSTALLM_POST_P1BAR)
    (cifs / "NaCl_2.cif").write_text(CRYSTALLM_NACL.replace("'Na4 Cl4'", "'Na4 Cl8'"))  # formula disagrees
    (cifs / "broken_1.cif").write_bytes(b"data_\xff\xfe\n")  # not UTF-8
    (cifs / "notes.txt").write_text("not a CIF: ignored")
    with tarfile.open(root / "crystallm.tar.gz", "w:gz") as tar:
        for path in sorted(cifs.glob("*.cif")):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"gen/{path.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return root


@pytest.fixture
def cache(seed_files, monkeypatch):
    monkeypatch.setenv("PLAID_CACHE_DIR", str(seed_files / "cache"))  # shared: reference fingerprints once


def test_crystal_text_llm_csv_loads(seed_files):
    samples = load_samples(seed_files / "ctl_samples.csv")
    assert [s.sample_id for s in samples] == [0, 1, 2]
    cscl, ktao3, broken = (s.structure for s in samples)
    assert _sites(cscl) == [("Cl", 0.5, 0.5, 0.0), ("Cs", 0.0, 0.0, 0.0)]
    assert cscl.lattice.abc == pytest.approx((4.12,) * 3)
    assert ktao3.composition.reduced_formula == "KTaO3" and len(ktao3) == 5
    assert broken is None and samples[2].error.startswith("unreadable structure")


def test_crystallm_cif_directory_loads(seed_files):
    samples = {s.sample_id: s for s in load_samples(seed_files / "crystallm")}
    assert sorted(samples) == ["Li2O2_1.cif", "NaCl_1.cif", "NaCl_2.cif", "broken_1.cif"]
    assert len(samples["NaCl_1.cif"].structure) == 8 and len(samples["Li2O2_1.cif"].structure) == 4
    assert "site count mismatch" in samples["NaCl_2.cif"].error and samples["NaCl_2.cif"].structure is None
    assert samples["broken_1.cif"].error.startswith("unreadable file: not UTF-8")


@pytest.mark.parametrize("name,ids", [
    ("ctl_samples.csv", ["0", "1", "2"]),
    ("crystallm", ["Li2O2_1.cif", "NaCl_1.cif", "NaCl_2.cif", "broken_1.cif"]),
    ("crystallm.tar.gz", ["gen/Li2O2_1.cif", "gen/NaCl_1.cif", "gen/NaCl_2.cif", "gen/broken_1.cif"]),
])
def test_evaluate_seed_sample_files(seed_files, cache, name, ids):
    out = seed_files / f"eval_{name.replace('.', '_')}"
    rc = main(["evaluate", str(seed_files / name), "--reference", str(seed_files / "train.csv"), "--out", str(out),
               "--no-relax", "--no-plots", "--dataset", "perov_5"])
    assert rc == 0
    rows = read_structures_csv(out / "structures.csv")
    assert [r["sample_id"] for r in rows] == ids
    report = json.loads((out / "report.json").read_text())
    parsed = {"ctl_samples.csv": 2}.get(name, 2)  # CTL: CsCl + KTaO3; CrystaLLM: NaCl_1 + Li2O2_1
    assert report["n_samples"] == len(ids) and report["counts"]["parsed"] == parsed
    reasons = {r["sample_id"]: r["error"] for r in rows if r["parsed"] == "False"}
    assert len(reasons) == len(ids) - parsed and all(reasons.values())


def test_evaluate_rejects_empty_cif_directory(tmp_path, perov_csv, capsys, monkeypatch):
    monkeypatch.setenv("PLAID_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    rc = main(["evaluate", str(tmp_path / "empty"), "--reference", str(perov_csv), "--out", str(tmp_path / "o"),
               "--no-relax"])
    assert rc == 2 and "no .cif files" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ datasets and sampling


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory, perov_csv):
    path = tmp_path_factory.mktemp("tiny_source") / "train.csv"
    pd.read_csv(perov_csv, nrows=3).to_csv(path, index=False)
    return path


def test_crystallm_style_dataset(tiny_source, tmp_path):
    from plaid.data import build_dataset

    mix = "unconditional=1,conditional=1,csp=1,csp_spacegroup=1"
    ds, report = build_dataset(str(tiny_source), "cif", out_dir=tmp_path / "b", task_mix=mix, split_fractions=(1, 0, 0),
                               examples_per_structure=6, prompt_style="crystallm")
    rows = ds["train"]
    assert report.prompt_style == "crystallm" and len(rows) == 18 and not report.failures
    assert json.loads((tmp_path / "b" / "build_report.json").read_text())["prompt_style"] == "crystallm"
    assert "prompt style\n  `crystallm`" in (tmp_path / "b" / "README.md").read_text()
    for row in rows:
        assert row["prompt"] + row["completion"] == row["text"] and row["prompt"].startswith("data_")
        conditions = json.loads(row["conditions"])
        if row["task"] == "unconditional":
            assert row["prompt"] == "data_"
        else:
            assert row["prompt"].splitlines()[0] == row["text"].splitlines()[0]
            assert ("spacegroup" in conditions) == row["prompt"].rstrip().startswith(
                row["text"][: row["text"].index("\n_cell_length_a")])
    with pytest.raises(ValueError, match="no infill"):
        build_dataset(str(tiny_source), "cif", task_mix="infill=1", prompt_style="crystallm")


def test_crystal_text_llm_style_dataset(tiny_source):
    from plaid.data import build_dataset

    ds, report = build_dataset(str(tiny_source), "coords", task_mix="conditional=1,infill=1",
                               split_fractions=(1, 0, 0), examples_per_structure=4, prompt_style="crystal-text-llm")
    for row in ds["train"]:
        if row["task"] == "conditional":  # the formula first, then at least one property, crystal-text-llm's way
            assert row["prompt"].startswith("Below is a description of a bulk material. The chemical formula is ")
            assert row["prompt"].endswith(SEED_GEN) and row["prompt"].count(". The ") >= 2
        else:
            assert row["prompt"].startswith(SEED_INFILL_HEAD) and row["prompt"].endswith(SEED_INFILL_TAIL)
        assert row["completion"] == (row["text"] if row["task"] == "conditional" else row["completion"])
    with pytest.raises(ValueError, match="cannot state composition"):
        build_dataset(str(tiny_source), "coords", task_mix="csp=1", prompt_style="crystal-text-llm")


class _Continue:
    """A stand-in model that writes the rest of a known CIF after CrystaLLM's prompt."""

    name = "continue"
    model_path = "continue"

    def __init__(self, text):
        self.text = text

    def generate(self, prompts, seeds, params, grammars=None):
        from plaid.sampling.generate import Generation

        return [Generation(self.text[len(p):] if self.text.startswith(p) else "garbage", 10, True) for p in prompts]


def test_sampler_decodes_crystallm_prompt_and_completion(tmp_path):
    from plaid.io import read_jsonl
    from plaid.sampling.requests import make_request
    from plaid.sampling.run import SampleConfig, Sampler

    request = make_request("nacl", {"composition": "Na4 Cl4", "spacegroup": 225}, 1, style="crystallm")
    config = SampleConfig(representation="cif", prompt_style="crystallm", batch_size=1)
    Sampler(_Continue(CRYSTALLM_NACL.replace("1.6700", f"{Element('Cl').average_ionic_radius:.4f}")), config).run(
        [request], tmp_path / "s.jsonl", progress=False)
    record = read_jsonl(tmp_path / "s.jsonl")[0]
    assert record["prompt_style"] == "crystallm" and record["prompt"].startswith("data_Na4Cl4\nloop_\n")
    assert record["parsed"] and record["text"].startswith("_cell_length_a 5.6402\n")  # what the model wrote
    sample = load_samples(tmp_path / "s.jsonl")[0]  # evaluation reads prompt + completion, as the sampler did
    assert sample.text.startswith("data_Na4Cl4\n") and len(sample.structure) == 8


def test_trained_prompt_style_from_run_record(tmp_path):
    assert trained_prompt_style(tmp_path) is None
    (tmp_path / "plaid_run.json").write_text(json.dumps({"plaid_args": {"representation": "cif"}}))
    assert trained_prompt_style(tmp_path) == "plaid"  # a run from before prompt styles
    (tmp_path / "plaid_run.json").write_text(json.dumps({"plaid_args": {"prompt_style": "crystallm"}}))
    assert trained_prompt_style(tmp_path) == "crystallm"


def test_coords_grammar_accepts_what_the_encoder_writes():
    from plaid.sampling.constrained import make_grammar

    rep = get("coords")
    grammar = make_grammar("coords", {}, length_decimals=1, angle_decimals=0, coord_decimals=rep.coord_decimals)

    def accepts(text):
        state = grammar.initial()
        for ch in text:
            state = grammar.step(state, ch) if ch in grammar.next_chars(state) else None
            if state is None:
                return False
        return grammar.can_end(state)

    assert accepts("3.9 4.0 5.0\n90 100 90\nBa\n0.50 0.50 0.50\nTi\n0.00 0.00 1.00")  # 0.9961 -> 1.00
    assert not accepts("3.9 4.0 5.0\n90 100 90\nBa\n0.50 0.50 1.01")


def test_cli_refuses_a_style_its_seed_never_wrote(tiny_source, tmp_path, capsys):
    rc = main(["data", "build", str(tiny_source), "--out", str(tmp_path / "d"), "--representation", "coords",
               "--prompt-style", "crystallm"])
    assert rc == 2 and "prompt style crystallm is for the cif representation" in capsys.readouterr().err
    rc = main(["data", "build", str(tiny_source), "--out", str(tmp_path / "d"), "--representation", "cif",
               "--prompt-style", "crystallm"])  # the default task mix has infill
    assert rc == 2 and "no infill prompt" in capsys.readouterr().err
