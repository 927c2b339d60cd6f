"""The defects of issue 9, each with a test that failed before its fix (real Perov-5 / MP-20 structures)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from pymatgen.core import Structure

from plaid.cli import main
from plaid.evaluation import EvaluationConfig, evaluate, read_structures_csv
from plaid.io import read_jsonl
from plaid.representations import get


@pytest.fixture(scope="module")
def perov(perov_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("defects")
    df = pd.read_csv(perov_csv, nrows=60)
    df.iloc[:30].to_csv(root / "train.csv", index=False)
    return root, [Structure.from_str(c, fmt="cif") for c in df.cif]


@pytest.fixture(autouse=True)
def _cache(perov, monkeypatch):
    monkeypatch.setenv("PLAID_CACHE_DIR", str(perov[0] / "cache"))


def _rec(sid, s, prompt="P"):
    rep = get("wyckoff")
    text = rep.encode(s)
    return {"sample_id": sid, "prompt": prompt, "representation": "wyckoff", "text": text, "parsed": True,
            "error": None, "cif": rep.decode(text).to(fmt="cif"), "conditions": {}}


def _infill(sid, s):
    rep = get("wyckoff")
    full = rep.encode(s)
    element = s.composition.elements[-1].symbol
    return {"sample_id": sid, "prompt": "I", "representation": "wyckoff", "text": element, "parsed": True,
            "error": None, "cif": rep.decode(full).to(fmt="cif"),
            "conditions": {"masked_text": rep.mask_element(full, element)}, "task": "infill"}


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# 1 ---------------------------------------------------------------------------------------------------- infill
def test_infill_samples_are_evaluated_as_the_completed_structure(perov, tmp_path):
    root, structs = perov
    samples = _write(tmp_path / "s.jsonl", [_infill("i0", structs[40]), _rec("g0", structs[41])])
    report = evaluate(samples, root / "train.csv", tmp_path / "out",
                      EvaluationConfig(dataset="perov_5", relax=False, plots=False))
    rows = {r["sample_id"]: r for r in read_structures_csv(tmp_path / "out" / "structures.csv")}
    assert rows["i0"]["parsed"] == "True" and rows["i0"]["valid"] == "True"
    assert rows["i0"]["sg_stated"] == rows["i0"]["spacegroup"] != ""  # the completed text states its group
    assert report["counts"]["parsed"] == 2 and report["counts"]["sg_not_stated"] == 0


# 2 ------------------------------------------------------------------------------------------- missing sample_id
def test_pairs_accepts_records_without_sample_id_and_names_a_missing_prompt(perov, tmp_path, capsys):
    root, structs = perov
    records = [{k: v for k, v in _rec(None, s).items() if k != "sample_id"} for s in structs[40:44]]
    samples = _write(tmp_path / "s.jsonl", records)
    evaluate(samples, root / "train.csv", tmp_path / "eval", EvaluationConfig(dataset="perov_5", relax=False,
                                                                             plots=False))
    capsys.readouterr()
    # no energies: nothing to prefer, said in one line (exit 3, nothing produced), not a KeyError
    assert main(["pairs", str(samples), "--out", str(tmp_path / "pairs"), "--labels", str(tmp_path / "eval")]) == 3
    assert capsys.readouterr().err.startswith("plaid pairs: error: 0 pairs")
    labels = read_jsonl(tmp_path / "pairs_labels" / "labels.jsonl")
    assert [lab["sample_id"] for lab in labels] == ["0", "1", "2", "3"]  # the ids plaid evaluate gives
    no_prompt = _write(tmp_path / "np.jsonl", [{k: v for k, v in r.items() if k != "prompt"} for r in records])
    assert main(["pairs", str(no_prompt), "--out", str(tmp_path / "p2"), "--labels", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "np.jsonl" in err and "'prompt'" in err and "Traceback" not in err


# 4 ---------------------------------------------------------------------------------------- matcher exceptions
def test_matcher_exceptions_leave_flags_undecided_and_are_counted(perov, tmp_path, monkeypatch):
    from pymatgen.core.structure_matcher import StructureMatcher

    root, structs = perov
    poisoned = structs[45].composition.reduced_formula
    real_fit = StructureMatcher.fit

    def fit(self, a, b, *args, **kwargs):
        if poisoned in (a.composition.reduced_formula, b.composition.reduced_formula):
            raise ValueError("lattice reduction failed")
        return real_fit(self, a, b, *args, **kwargs)

    monkeypatch.setattr(StructureMatcher, "fit", fit)
    copy = structs[45].copy()
    samples = _write(tmp_path / "s.jsonl", [_rec(0, structs[45]), _rec(1, copy), _rec(2, structs[46]),
                                            _rec(3, structs[0])])
    report = evaluate(samples, root / "train.csv", tmp_path / "out",
                      EvaluationConfig(dataset="perov_5", relax=False, plots=False, crystallm_checks=False))
    rows = {r["sample_id"]: r for r in read_structures_csv(tmp_path / "out" / "structures.csv")}
    assert rows["1"]["is_unique"] == "" and "matcher error" in rows["1"]["match_error"]  # not "unique"
    assert rows["2"]["is_unique"] == "True" and rows["3"]["is_novel"] == "False"
    assert report["counts"]["uniqueness_undecided"] == 1
    assert report["unique_rate"] == pytest.approx(3 / 3)  # over the 3 decided valid samples, not 4


# 7 ------------------------------------------------------------------------------------------ device and steps
def test_device_and_relax_steps_reach_the_relaxer(perov, tmp_path, monkeypatch, elemental_refs_path):
    import plaid.relax as relax

    root, structs = perov
    seen = {}

    class Stop(Exception):
        pass

    def fake_get_relaxer(name, **kwargs):
        seen.update(kwargs, name=name)
        raise Stop

    monkeypatch.setattr(relax, "get_relaxer", fake_get_relaxer)
    samples = _write(tmp_path / "s.jsonl", [_rec(0, structs[41])])
    with pytest.raises(Stop):
        main(["evaluate", str(samples), "--reference", str(root / "train.csv"), "--out", str(tmp_path / "e"),
              "--device", "cuda:3", "--relax-steps", "7", "--no-plots"])
    assert seen["device"] == "cuda:3" and seen["max_steps"] == 7
    seen.clear()
    with pytest.raises(Stop):
        main(["pairs", str(samples), "--out", str(tmp_path / "p"), "--reference", str(root / "train.csv"),
              "--device", "cuda:2", "--relax-steps", "9"])
    assert seen["device"] == "cuda:2" and seen["max_steps"] == 9


# 8 ---------------------------------------------------------------------------------------------- stale results
def test_relaxations_with_other_settings_are_redone(perov_structures, tmp_path):
    from plaid.relax import Relaxer

    from .test_relax import LennardJonesModel

    structures = perov_structures[:2]
    first = Relaxer(LennardJonesModel(), fmax=1e-9, max_steps=2).relax(structures, out_path=tmp_path / "r.jsonl",
                                                                     progress=False)
    assert [r.n_steps for r in first] == [2, 2]
    again = Relaxer(LennardJonesModel(), fmax=1e-9, max_steps=4).relax(structures, out_path=tmp_path / "r.jsonl",
                                                                     progress=False)
    assert [r.n_steps for r in again] == [4, 4]  # redone, not the 2-step results with a warning
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 2


def test_labels_follow_the_hull_passed_now(perov_structures, tmp_path, elemental_refs_path):
    from pymatgen.analysis.phase_diagram import PDEntry

    from plaid.hull import ReferenceHull, read_elemental_refs
    from plaid.preferences import label_samples
    from plaid.relax import Relaxer

    from .test_relax import LennardJonesModel

    class ScaledLJ(LennardJonesModel):
        energy_scale = "mp2020"

    refs = list(read_elemental_refs(elemental_refs_path).values())
    s = perov_structures[3]
    records = [_rec("a", s)]
    relaxer = Relaxer(ScaledLJ(), fmax=0.05, max_steps=3)
    hull_a = ReferenceHull(refs, {"hull": "elements only"})
    comp = s.composition
    hull_b = ReferenceHull(refs + [PDEntry(comp, -50.0 * comp.num_atoms)], {"hull": "with a deep entry"})
    first = label_samples(records, tmp_path / "labels", relaxer=relaxer, hull=hull_a, progress=False)
    second = label_samples(records, tmp_path / "labels", relaxer=relaxer, hull=hull_b, progress=False)
    assert first[0].e_hull is not None and second[0].e_hull is not None
    assert second[0].e_hull > first[0].e_hull + 1.0  # the deep entry raised E_hull: labels were recomputed


# 9 ------------------------------------------------------------------------------------------ align spacegroup
def test_align_rejects_spacegroup_mode_when_parsed(tmp_path):
    from plaid.preferences.align import AlignConfig

    path = tmp_path / "a.yaml"
    path.write_text("sft_adapter: a\noutput_dir: b\ndpo_config: c\nreference: r\nmode: spacegroup\n")
    with pytest.raises(ValueError, match="unconditional prompt"):
        AlignConfig.from_yaml(path)


# 10 ------------------------------------------------------------------------------------ vLLM constrained decoding
def test_vllm_constrained_fails_before_loading_with_versions(tmp_path, monkeypatch, capsys):
    import plaid.sampling.generate as generate

    monkeypatch.setattr(generate, "_vllm_version", lambda: "0.8.5")
    monkeypatch.delenv("VLLM_USE_V1", raising=False)
    code = main(["sample", "--model", str(tmp_path / "no-model"), "--backend", "vllm", "--constrained",
                 "--out", str(tmp_path / "s.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "0.8.5" in err and "--backend hf" in err and "vllm<0.8" in err
    monkeypatch.setattr(generate, "_vllm_version", lambda: "0.7.3")
    generate.check_vllm_constrained()  # older vLLM: allowed
    monkeypatch.setattr(generate, "_vllm_version", lambda: "0.9.1")
    monkeypatch.setenv("VLLM_USE_V1", "0")
    generate.check_vllm_constrained()  # V0 engine of 0.9: allowed


# 11 --------------------------------------------------------------------------------------------------- reasons
def test_every_failure_has_a_reason_and_counters_mean_what_they_say(perov, tmp_path, monkeypatch):
    import plaid.evaluation.checks as checks
    import plaid.evaluation.fingerprints as fingerprints

    root, structs = perov
    real_sg, real_fp = checks.spglib_space_group, fingerprints.structure_fingerprint
    odd = structs[47].composition.reduced_formula

    def sg(structure, symprec=0.1):
        return None if structure.composition.reduced_formula == odd else real_sg(structure, symprec)

    def fp(structure, **options):
        if structure.composition.reduced_formula == odd:
            raise ValueError()  # an exception without a message
        return real_fp(structure, **options)

    monkeypatch.setattr(checks, "spglib_space_group", sg)
    monkeypatch.setattr(fingerprints, "structure_fingerprint", fp)
    cif_only = {"sample_id": 2, "prompt": "P", "cif": structs[48].to(fmt="cif"), "parsed": True}
    samples = _write(tmp_path / "s.jsonl", [_rec(0, structs[46]), _rec(1, structs[47]), cif_only])
    report = evaluate(samples, root / "train.csv", tmp_path / "out",
                      EvaluationConfig(dataset="perov_5", relax=False, plots=False))
    counts = report["counts"]
    assert counts["sg_undetermined"] == 1  # spglib found nothing for sample 1: not "not stated"
    assert counts["sg_not_stated"] == 1 and "no text" in next(iter(counts["sg_not_stated_reasons"]))
    assert counts["fingerprint_error"] == 1
    reason = next(iter(report["failures"]["fingerprint"]))
    assert reason.startswith("ValueError (no message)")


# 12 ----------------------------------------------------------------------------------------------- CDVAE scaler
def test_coverage_uses_cdvae_scaler_constants_by_default(perov, tmp_path):
    import numpy as np

    from plaid.evaluation.cdvae_scaler import cdvae_comp_scaler
    from plaid.evaluation.coverage import coverage
    from plaid.evaluation.fingerprints import reference_fingerprints, stack_fingerprints
    from plaid.evaluation.samples import load_reference

    from .conftest import data_path

    root, structs = perov
    for name, values in (("means", cdvae_comp_scaler()[0]), ("stds", cdvae_comp_scaler()[1])):
        assert np.allclose(values, np.loadtxt(data_path(f"cdvae/comp_scaler_{name}.txt")), rtol=0, atol=0)
    samples = _write(tmp_path / "s.jsonl", [_rec(i, structs[40 + i]) for i in range(6)])
    report = evaluate(samples, root / "train.csv", tmp_path / "out",
                      EvaluationConfig(dataset="perov_5", relax=False, plots=False))
    assert report["settings"]["fingerprints"]["comp_scaler"] == "cdvae"
    assert "CDVAE's fixed MP-20 constants" in report["settings"]["fingerprints"]["composition"]
    fps = {r["sample_id"]: r for r in read_jsonl(tmp_path / "out" / "fingerprints.jsonl")}
    gs, gc, ok = stack_fingerprints([fps[i] for i in range(6)])
    ref = reference_fingerprints(root / "train.csv", lambda: load_reference(root / "train.csv")[0])
    expected = coverage(gs[ok], gc[ok], ref["struct_fps"][ref["ok"]], ref["comp_fps"][ref["ok"]], 0.2, 4.0,
                        n_generated=6, n_reference=len(ref["ok"]), comp_scaler=cdvae_comp_scaler())
    assert report["amcd_recall"] == pytest.approx(expected["amcd_recall"])
    assert math.isfinite(report["amcd_recall"])
