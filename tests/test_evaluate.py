"""End-to-end ``plaid evaluate`` / ``plaid evaluate-csp`` on real perovskites mixed with broken samples."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pandas as pd
import pytest
from pymatgen.core import Structure

from plaid.cli import main
from plaid.evaluation import EvaluationConfig, evaluate, read_structures_csv
from plaid.representations import get

warnings.filterwarnings("ignore", category=UserWarning)
REQUIRED_COLUMNS = ["struct_valid", "comp_valid", "valid", "is_unique", "is_novel", "e_hull", "spacegroup"]
REQUIRED_KEYS = [
    "n_samples",
    "struct_valid_rate",
    "comp_valid_rate",
    "valid_rate",
    "unique_rate",
    "novel_rate",
    "cov_recall",
    "cov_precision",
    "wdist_density",
    "wdist_num_elems",
    "stable_rate",
    "sun_rate",
]


def _record(sid, structure=None, **extra):
    rep = get("wyckoff")
    if structure is None:
        return {
            "sample_id": sid,
            "prompt": "p",
            "conditions": {},
            "text": "Ba1 Ti1 O3\n999\n",
            "parsed": False,
            "error": "unknown space group 999",
            "cif": None,
            "representation": "wyckoff",
            **extra,
        }
    text = rep.encode(structure)
    decoded = rep.decode(text)
    return {
        "sample_id": sid,
        "prompt": "p",
        "conditions": {},
        "text": text,
        "parsed": True,
        "error": None,
        "cif": decoded.to(fmt="cif"),
        "representation": "wyckoff",
        "gen_time_s": 2.0,
        "model": "tiny-plaid",
        "run_seed": 7,
        **extra,
    }


@pytest.fixture(scope="module")
def setup(perov_csv, tmp_path_factory):
    """A 30-structure reference CSV and 18 samples: 4 copies of reference structures, 8 new ones, 1 duplicate,
    1 unparsed, 1 with overlapping atoms, 1 charge-imbalanced, 1 corrupt JSON line, 1 more new one."""
    root = tmp_path_factory.mktemp("evaluate")
    df = pd.read_csv(perov_csv, nrows=140)
    df.iloc[:30].to_csv(root / "train.csv", index=False)
    structs = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    records = [_record(i, structs[i]) for i in range(4)]  # 0-3: in the reference -> not novel
    records += [_record(4 + i, structs[100 + i]) for i in range(8)]  # 4-11: new
    records.append(_record(12, structs[102]))  # duplicate of sample 6
    records.append(_record(13))  # unparsed
    overlap = structs[120].copy()
    overlap.replace(1, overlap.species[1], coords=overlap[0].coords + [0.2, 0, 0], coords_are_cartesian=True)
    records.append({**_record(14, structs[120]), "cif": overlap.to(fmt="cif"), "text": None})
    imbalanced = structs[121].copy()
    imbalanced.replace_species({el: sp for el, sp in zip(imbalanced.composition.elements, ["Na", "Na", "F"])})
    records.append({**_record(15, structs[121]), "cif": imbalanced.to(fmt="cif"), "text": None})
    lines = [json.dumps(r) for r in records]
    lines.append('{"sample_id": 16, "text": "tor')  # corrupt line in the middle of the file
    lines.append(json.dumps(_record(17, structs[130])))
    (root / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(autouse=True)
def _cache(setup, monkeypatch):
    monkeypatch.setenv("PLAID_CACHE_DIR", str(setup / "cache"))


def test_cli_end_to_end(setup):
    out = setup / "out"
    rc = main(
        [
            "evaluate",
            str(setup / "samples.jsonl"),
            "--reference",
            str(setup / "train.csv"),
            "--out",
            str(out),
            "--no-relax",
            "--dataset",
            "perov_5",
        ]
    )
    assert rc == 0
    rows = read_structures_csv(out / "structures.csv")
    assert [r["sample_id"] for r in rows] == [str(i) for i in range(16)] + ["line16", "17"]
    assert all(c in rows[0] for c in REQUIRED_COLUMNS)
    report = json.loads((out / "report.json").read_text())
    assert all(k in report for k in REQUIRED_KEYS)
    counts = report["counts"]
    assert report["n_samples"] == 18 and counts["parsed"] == 16 and counts["unparsed"] == 2
    assert counts["struct_valid"] == 15 and counts["comp_valid"] == 15 and counts["valid"] == 14
    assert counts["unique"] == 13 and counts["novel"] == 10
    assert report["valid_rate"] == pytest.approx(14 / 18) and report["struct_valid_rate"] == pytest.approx(
        15 / 18
    )
    assert report["unique_rate"] == pytest.approx(13 / 14) and report["novel_rate"] == pytest.approx(10 / 14)
    by_id = {r["sample_id"]: r for r in rows}
    assert by_id["12"]["is_unique"] == "False" and by_id["12"]["duplicate_of"] == "6"
    assert by_id["0"]["is_novel"] == "False" and by_id["5"]["is_novel"] == "True"
    assert by_id["14"]["struct_valid"] == "False" and "apart" in by_id["14"]["struct_reason"]
    assert by_id["15"]["comp_valid"] == "False" and by_id["15"]["valid"] == "False"
    assert (
        by_id["13"]["parsed"] == "False"
        and by_id["13"]["valid"] == "False"
        and by_id["13"]["is_unique"] == ""
    )
    assert by_id["line16"]["error"].startswith("corrupt JSON line")
    assert report["hull_kind"].startswith("none (relaxation disabled")
    assert (
        all(r["e_hull"] == "" for r in rows) and report["stable_rate"] is None and report["sun_rate"] is None
    )
    assert by_id["5"]["spacegroup"] and by_id["5"]["sg_consistent"] == "True"
    # coverage: precision over all 18 samples, recall over the 30 reference structures, perov_5 cutoffs
    cov = report["coverage"]
    assert (
        cov["n_generated"] == 18
        and cov["n_reference"] == 30
        and (cov["struct_cutoff"], cov["comp_cutoff"]) == (0.2, 4.0)
    )
    assert report["cov_recall"] == cov["n_reference_covered"] / 30 and cov["n_reference_covered"] >= 4
    assert report["cov_precision"] == pytest.approx(cov["n_generated_precise"] / 18)
    assert 0 < report["wdist_density"] < 5 and report["wdist_num_elems"] >= 0
    settings = report["settings"]
    assert settings["compositional_validity"]["oxidation_table"]["name"] == "smact14"
    assert (
        settings["structural_validity"]["min_distance_A"] == 0.5 and settings["spacegroup"]["symprec"] == 0.1
    )
    assert report["package_versions"]["pymatgen"] and "denominators" in report
    assert report["model_version"] == "tiny-plaid" and report["seeds"]["generation_run_seeds"] == [7]
    for png in ("spacegroups.png", "e_hull.png", "density.png", "num_elements.png"):
        assert (out / png).stat().st_size > 1000


def test_injected_e_hull_gives_stability_and_sun(setup):
    out = setup / "out_ehull"
    e_hull = {0: 0.0, 5: -0.1, 6: 0.09, 12: -0.2, 15: -1.0, 14: -1.0}
    report = evaluate(
        setup / "samples.jsonl",
        setup / "train.csv",
        out,
        EvaluationConfig(dataset="perov_5", crystallm_checks=False, plots=False),
        e_hull=e_hull,
    )
    # stable at 0.0: samples 0 (not novel), 5 (S.U.N.), 12 (a duplicate of 6, but 6 is not stable: among the
    # stable samples 12 is its own class, and novel -> S.U.N.); 14/15 are invalid
    assert report["counts"]["stable"] == 3 and report["stable_rate"] == pytest.approx(3 / 18)
    assert report["counts"]["sun"] == 2 and report["sun_rate"] == pytest.approx(2 / 18)
    assert report["counts"]["metastable"] == 3 and report["metastable_rate"] == pytest.approx(3 / 18)
    at_01 = report["stability"]["e_hull_at_most"]["0.1"]
    assert at_01["n_e_hull_at_most"] == 4  # 0, 5, 6, 12 (14/15 invalid: no E_hull)
    assert report["time_per_sun_s"] is None  # the corrupt line carries no generation time
    assert report["sun"]["protocol"] == "relaxed" and report["sun"]["n_stable_classes"] == 3
    rows = {r["sample_id"]: r for r in read_structures_csv(out / "structures.csv")}
    assert rows["5"]["is_sun"] == "True" and rows["12"]["is_sun"] == "True" and rows["12"]["is_unique"] == "False"
    assert rows["0"]["is_stable"] == "True" and rows["0"]["is_sun"] == "False" and rows["6"]["is_sun"] == "False"
    assert rows["14"]["e_hull"] == "" and rows["14"]["e_hull_reason"].startswith("invalid")


def test_resume_after_interruption(setup, monkeypatch):
    import plaid.evaluation.fingerprints as fp
    import plaid.evaluation.sample_checks as ev

    out = setup / "out_resume"
    cfg = EvaluationConfig(dataset="perov_5", relax=False, plots=False)
    evaluate(setup / "samples.jsonl", setup / "train.csv", out, cfg)
    first_rows = read_structures_csv(out / "structures.csv")
    # simulate a kill: 5 check records and a torn line survive, fingerprints lost after 8, matching lost
    lines = (out / "checks.jsonl").read_text().splitlines()
    (out / "checks.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    fps = (out / "fingerprints.jsonl").read_text().splitlines()
    (out / "fingerprints.jsonl").write_text("\n".join(fps[:8]) + "\n")
    (out / "matching.jsonl").unlink()
    (out / "report.json").unlink()
    calls = {"checks": 0, "fp": 0}
    real_check, real_fp = ev._payload, fp.fingerprint_record

    def count_check(payload):
        calls["checks"] += 1
        return real_check(payload)

    def count_fp(*args, **kwargs):
        calls["fp"] += 1
        return real_fp(*args, **kwargs)

    monkeypatch.setattr(ev, "_payload", count_check)
    monkeypatch.setattr(fp, "fingerprint_record", count_fp)  # with the checks or in the coverage stage
    evaluate(setup / "samples.jsonl", setup / "train.csv", out, cfg)
    # every sample not yet checked is checked, bit-identical ones once (dedupe); fingerprints: the 10 lost, each
    # once at most (bit-identical structures once), none of the 8 kept
    from plaid.evaluation.fingerprints import structure_key
    from plaid.evaluation.samples import load_samples

    kept = {json.loads(line)["sample_id"] for line in lines[:5]}
    samples = load_samples(setup / "samples.jsonl")
    todo = [s for s in samples if str(s.sample_id) not in {str(k) for k in kept}]
    keys = [ev._sample_key((s, None)) for s in todo]
    assert len(todo) == 18 - 5
    assert calls["checks"] == len({k for k in keys if k is not None}) + keys.count(None)
    lost = {json.loads(line)["sample_id"] for line in fps[8:]}
    lost_parsed = {structure_key(s.structure) for s in samples if s.sample_id in lost and s.structure is not None}
    assert len(lost_parsed) <= calls["fp"] <= 18 - 8
    assert len((out / "fingerprints.jsonl").read_text().splitlines()) == 18
    assert read_structures_csv(out / "structures.csv") == first_rows
    assert len((out / "checks.jsonl").read_text().splitlines()) == 18
    # a changed setting invalidates the stages it feeds: checks are recomputed, results set aside as .stale
    calls.update(checks=0, fp=0)
    evaluate(
        setup / "samples.jsonl",
        setup / "train.csv",
        out,
        EvaluationConfig(dataset="perov_5", relax=False, plots=False, oxidation_states="icsd24"),
    )
    every = [ev._sample_key((s, None)) for s in load_samples(setup / "samples.jsonl")]
    distinct = len({k for k in every if k is not None}) + every.count(None)  # 17: one bit-identical pair
    assert calls == {"checks": distinct, "fp": distinct} and (out / "checks.stale").exists()


def test_csv_samples_with_cif_column(setup, perov_csv):
    df = pd.read_csv(perov_csv, nrows=140).iloc[[0, 101, 102, 103]].copy()
    df.loc[df.index[3], "cif"] = "data_broken\n_cell_length_a 1\n"
    df.to_csv(setup / "samples.csv", index=False)
    out = setup / "out_csv"
    report = evaluate(
        setup / "samples.csv",
        setup / "train.csv",
        out,
        EvaluationConfig(dataset="perov_5", relax=False, plots=False),
    )
    rows = read_structures_csv(out / "structures.csv")
    assert [r["sample_id"] for r in rows] == ["0", "1", "2", "3"]
    assert report["n_samples"] == 4 and report["counts"]["parsed"] == 3 and report["counts"]["novel"] == 2
    assert rows[3]["parsed"] == "False" and rows[3]["error"].startswith("unreadable structure")


def test_evaluate_csp(setup, perov_csv):
    df = pd.read_csv(perov_csv, nrows=140)
    targets = df.iloc[100:104]
    targets.to_csv(setup / "test.csv", index=False)
    structs = [Structure.from_str(c, fmt="cif") for c in targets["cif"]]
    records = []
    for t, (mid, s) in enumerate(zip(targets["material_id"], structs)):
        for k in range(3):
            cand = s.copy() if (t, k) in {(0, 0), (1, 2)} else structs[(t + 1) % 4].copy()
            if (t, k) == (1, 2):
                cand.perturb(0.05, min_distance=0.0)
            records.append(
                {
                    "sample_id": len(records),
                    "conditions": {"material_id": str(mid)},
                    "parsed": True,
                    "cif": cand.to(fmt="cif"),
                    "error": None,
                }
            )
    # target 2's samples carry only a composition: once any sample carries a material_id, assignment is by
    # material_id alone, so they are unassigned (they would also fit every polymorph of that formula)
    for r in records[6:9]:
        r["conditions"] = {"composition": structs[2].composition.formula}
    records.append(
        {"sample_id": 99, "conditions": {"composition": "Xe1"}, "parsed": False, "cif": None, "error": "bad"}
    )
    path = setup / "csp.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = setup / "out_csp"
    rc = main(
        ["evaluate-csp", str(path), "--targets", str(setup / "test.csv"), "--out", str(out), "--n", "1", "3"]
    )
    assert rc == 0
    report = json.loads((out / "csp_report.json").read_text())
    assert report["n_targets"] == 4 and report["n_samples"] == 13 and report["n_samples_unassigned"] == 4
    assert report["assignment"] == "material_id"
    assert report["match_rate_at_1"] == pytest.approx(1 / 4) and report["match_rate_at_3"] == pytest.approx(
        2 / 4
    )
    assert report["mean_rmse_at_1"] == pytest.approx(0.0, abs=1e-6) and 0 < report["mean_rmse_at_3"] < 0.1
    with open(out / "csp_targets.csv") as fh:
        targets_rows = list(csv.DictReader(fh))
    assert [r["matched_at_3"] for r in targets_rows] == ["True", "True", "False", "False"]
    assert targets_rows[2]["n_candidates"] == "0"
    assert math.isclose(report["metrics"]["n=3"]["n_matched"], 2)


@pytest.mark.slow
def test_relaxation_and_offline_hull(setup):
    """CHGNet relaxation (3 FIRE steps) of the valid samples and E_hull against the offline hull built from the
    reference's formation energies (perov_5 heat_ref) + MP elemental references."""
    rows_in = [
        json.loads(line)
        for line in (setup / "samples.jsonl").read_text().splitlines()
        if line.startswith("{") and line.endswith("}")
    ]
    small = setup / "small.jsonl"
    small.write_text("\n".join(json.dumps(r) for r in rows_in if r["sample_id"] in (5, 13, 15)) + "\n")
    out = setup / "out_relax"
    cfg = EvaluationConfig(
        dataset="perov_5", relaxer="chgnet", max_steps=3, crystallm_checks=False, plots=False
    )
    report = evaluate(small, setup / "train.csv", out, cfg)
    rows = {r["sample_id"]: r for r in read_structures_csv(out / "structures.csv")}
    assert rows["5"]["relax_status"] in ("converged", "max_steps")
    assert math.isfinite(float(rows["5"]["energy_per_atom"])) and math.isfinite(float(rows["5"]["e_hull"]))
    assert (
        rows["13"]["e_hull"] == "" and rows["15"]["e_hull"] == ""
    )  # unparsed / charge-imbalanced: not relaxed
    assert rows["15"]["e_hull_reason"].startswith("invalid") and rows["13"]["status"] == "unparsed"
    assert rows["5"]["relaxed_spacegroup"] != ""
    assert report["relaxer"]["name"] == "chgnet" and report["relaxer"]["max_steps"] == 3
    assert report["hull"]["hull"].startswith("offline") and report["hull_kind"] == "offline_reference"
    assert report["hull"]["rates_are_upper_bounds"] is True and report["warnings"]
    assert report["counts"]["with_e_hull"] == 1 and report["stable_rate"] in (0.0, 1 / 3)
    assert report["counts"]["relax_status"] == {rows["5"]["relax_status"]: 1}
    assert (out / "relax.jsonl").exists()
