"""Dataset builders: sources, task formats on real structures, failure accounting, resume, download, CLI."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from pymatgen.core import Composition

from plaid.data import build as build_module
from plaid.data import build_dataset, load_built, load_source, parse_task_mix, resolve_named
from plaid.data.sources import download, sha256_of
from plaid.prompts import generation_prompt
from plaid.representations import MASK, get


@pytest.fixture(scope="module")
def perov_built(tmp_path_factory, perov_csv):
    out = tmp_path_factory.mktemp("perov_built")
    dataset, report = build_dataset(str(perov_csv), "wyckoff", out_dir=out, max_structures=150, num_proc=2, seed=3)
    return out, dataset, report


def all_rows(dataset):
    return [row for split in dataset.values() for row in split]


def test_build_splits_and_counts(perov_built):
    out, dataset, report = perov_built
    assert set(dataset) == {"train", "validation", "test"}
    assert report.n_input == 150 and report.n_encoded == 150 and report.failures == {}
    assert sum(report.split_counts.values()) == 150
    assert len(dataset["train"]) > len(dataset["validation"])
    ids = [set(dataset[s]["material_id"]) for s in dataset]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])  # split by structure
    tasks = pd.Series([r["task"] for r in all_rows(dataset)]).value_counts()
    assert set(tasks.index) == {"unconditional", "conditional", "infill"} and tasks.min() >= 25
    reloaded = load_built(out)
    assert reloaded["train"][0] == dataset["train"][0]
    card = (out / "README.md").read_text()
    assert "wyckoff" in card and "150 of 150" in card and "heat_ref" in card


def test_generation_rows_are_prompt_plus_crystal_text(perov_built):
    _, dataset, _ = perov_built
    rep = get("wyckoff")
    for row in all_rows(dataset):
        if row["task"] == "infill":
            continue
        conditions = json.loads(row["conditions"])
        assert row["prompt"] == generation_prompt("wyckoff", conditions)
        assert row["completion"] == row["text"]
        structure = rep.decode(row["completion"])
        if "formula" in conditions:
            assert conditions["formula"] == structure.composition.reduced_formula
            assert f"The chemical formula is {conditions['formula']}." in row["prompt"]
        if "composition" in conditions:
            assert Composition(conditions["composition"]) == structure.composition
        if "spacegroup" in conditions:
            assert conditions["spacegroup"] == row["text"].splitlines()[1]
        if "formation_energy" in conditions:
            assert f"The formation energy per atom is {conditions['formation_energy']} eV." in row["prompt"]


def test_conditional_properties_come_from_the_source(perov_built, perov_csv):
    _, dataset, _ = perov_built
    source = pd.read_csv(perov_csv).set_index("material_id")
    checked = 0
    for row in all_rows(dataset):
        conditions = json.loads(row["conditions"])
        if "band_gap" in conditions:
            expected = source.loc[int(row["material_id"]), "ind_gap"]
            assert float(conditions["band_gap"]) == pytest.approx(expected, abs=0.005 + 1e-9)
            checked += 1
    assert checked > 0


def test_infill_rows_mask_one_element_without_corrupting_text(perov_built):
    _, dataset, _ = perov_built
    rows = [r for r in all_rows(dataset) if r["task"] == "infill"]
    for row in rows:
        element = row["completion"]
        masked = row["prompt"].split("\n")[1:-2]
        masked_text = "\n".join(masked)
        assert MASK in masked_text
        assert masked_text.replace(MASK, element) == row["text"]
        assert element in get("wyckoff").elements(row["text"])


def test_bad_input_is_counted_by_reason(tmp_path, perov_csv):
    good = pd.read_csv(perov_csv, nrows=4)
    partial = good.iloc[0].copy()
    partial["cif"] = partial["cif"].replace("  Cu  Cu0  1", "  Cu  Cu0  1").replace(
        "-0.00000000  1\n", "-0.00000000  0.5\n", 1
    )
    broken = good.iloc[1].copy()
    broken["cif"] = "data_broken\n_cell_length_a 3\nthis is not a cif"
    df = pd.concat([good, partial.to_frame().T, broken.to_frame().T], ignore_index=True)
    df["material_id"] = [f"m{i}" for i in range(len(df))]
    path = tmp_path / "mixed.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    _, report = build_dataset(str(path), "wyckoff", out_dir=out)
    assert report.n_input == 6 and report.n_encoded == 4
    assert report.failures == {"partial occupancy": 1, "unparseable CIF": 1}
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["material_id"] for f in failures} == {"m4", "m5"}
    assert "partial occupancy" in (out / "README.md").read_text()


def test_killed_build_resumes_without_reencoding(tmp_path, perov_csv, monkeypatch):
    out = tmp_path / "resume"
    first, _ = build_dataset(str(perov_csv), "coords", out_dir=out, max_structures=40)
    encoded = (out / "encoded.jsonl").read_text().splitlines()
    assert len(encoded) == 40
    # Simulate a kill after 25 structures, with a torn last line.
    (out / "encoded.jsonl").write_text("\n".join(encoded[:25]) + "\n" + encoded[25][:30])
    calls = []
    real = build_module.encode_record
    monkeypatch.setattr(build_module, "encode_record", lambda *a, **k: calls.append(1) or real(*a, **k))
    second, _ = build_dataset(str(perov_csv), "coords", out_dir=out, max_structures=40)
    assert len(calls) == 15
    assert len((out / "encoded.jsonl").read_text().splitlines()) == 40
    for split in first:
        assert first[split]["prompt"] == second[split]["prompt"]
        assert first[split]["completion"] == second[split]["completion"]
    # another representation in the same directory does not reuse the coords encodings
    third, _ = build_dataset(str(perov_csv), "wyckoff", out_dir=out, max_structures=40)
    assert (out / "encoded.jsonl.stale").exists()
    assert all(row["completion"].splitlines()[1].isdigit() for row in third["train"] if row["task"] != "infill")


def test_named_dataset_resolves_from_data_dir(perov_csv):
    assert resolve_named("perov_5", "val") == perov_csv.resolve()
    df, desc = load_source("perov_5", splits=("val",))
    assert len(df) == len(pd.read_csv(perov_csv)) and desc["files"]["val"]["sha256"].startswith("326f4012")


def test_named_dataset_download_with_checksum(tmp_path, perov_csv, monkeypatch):
    mirror = tmp_path / "mirror" / "mp_20"
    mirror.mkdir(parents=True)
    pd.read_csv(perov_csv, nrows=5).to_csv(mirror / "train.csv", index=False)
    monkeypatch.setenv("PLAID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PLAID_DATA_DIR", str(tmp_path / "empty"))
    base = (tmp_path / "mirror").as_uri()
    path = resolve_named("mp_20", "train", base_url=base)
    assert path.is_relative_to(tmp_path / "cache") and len(pd.read_csv(path)) == 5
    assert path.with_suffix(".csv.sha256").read_text().strip() == sha256_of(path)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download(base + "/mp_20/train.csv", tmp_path / "other.csv", sha256="0" * 64)
    df, _ = load_source("mp_20", splits=("train",), base_url=base)
    assert len(df) == 5


def test_cif_directory_and_local_hf_sources(tmp_path, perov_csv):
    df = pd.read_csv(perov_csv, nrows=3)
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for mid, cif in zip(df["material_id"], df["cif"]):
        (cifs / f"{mid}.cif").write_text(cif)
    from_dir, desc = load_source(str(cifs))
    assert desc["kind"] == "cif_dir" and sorted(from_dir["material_id"]) == sorted(map(str, df["material_id"]))
    hf_dir = tmp_path / "hfdata"
    hf_dir.mkdir()
    df.to_csv(hf_dir / "train.csv", index=False)
    from_hf, desc = load_source(f"hf:{hf_dir}")
    assert desc["kind"] == "huggingface" and len(from_hf) == 3 and "formation_energy" in from_hf


def test_task_mix_parsing():
    assert parse_task_mix("unconditional=2,infill=1") == pytest.approx({"unconditional": 2 / 3, "infill": 1 / 3})
    with pytest.raises(ValueError, match="unknown task"):
        parse_task_mix("generate=1")


def test_cli_build_and_info(tmp_path, carbon_csv, capsys):
    from plaid.cli import main

    out = tmp_path / "carbon"
    assert main(["data", "build", str(carbon_csv), "--out", str(out), "--representation", "cif",
                 "--max-structures", "12", "--task-mix", "unconditional=1"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["n_encoded"] == 12
    dataset = load_built(out)
    assert {r["task"] for split in dataset.values() for r in split} == {"unconditional"}
    assert main(["data", "info", str(out)]) == 0
    shutil.rmtree(out)
