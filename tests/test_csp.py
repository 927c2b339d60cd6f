"""CSP assignment from real ``plaid sample`` output: a prompt file's material_id reaches every record, and
``plaid evaluate-csp`` gives each target only its own candidates, also when polymorphs share a formula."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from plaid.io import read_jsonl

from .conftest import data_path

POLYMORPHS = {"AgBr": ["mp-570301", "mp-866291"], "Ac2Mg": ["mp-1183089", "mp-985286"]}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    return create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sampled(tiny_model, tmp_path_factory):
    import torch

    from plaid.cli import main

    root = tmp_path_factory.mktemp("csp")
    val = pd.read_csv(data_path("mp_20/val.csv"))
    ids = [m for ms in POLYMORPHS.values() for m in ms]
    val[val.material_id.isin(ids)].to_csv(root / "targets.csv", index=False)
    prompts = root / "prompts.csv"
    with open(prompts, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "material_id", "formula", "num_samples"])
        for formula, mids in POLYMORPHS.items():
            for k, mid in enumerate(mids):
                w.writerow([f"{formula}-{k}", mid, formula, 2 + k])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["sample", "--model", str(tiny_model), "--prompt-file", str(prompts), "--out",
                     str(root / "samples.jsonl"), "--constrained", "--max-atoms", "8", "--max-new-tokens", "120",
                     "--no-progress", "--batch-size", "10"])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return root


def test_prompt_file_material_id_reaches_every_record(sampled):
    records = read_jsonl(sampled / "samples.jsonl")
    assert len(records) == 2 + 3 + 2 + 3
    for r in records:
        formula, k = r["request_id"].rsplit("-", 1)
        assert r["material_id"] == POLYMORPHS[formula][int(k)]


def test_evaluate_csp_assigns_each_target_its_own_candidates(sampled):
    from plaid.cli import main
    from plaid.evaluation.csp import evaluate_csp
    from plaid.evaluation.samples import load_reference

    out = sampled / "eval"
    assert main(["evaluate-csp", str(sampled / "samples.jsonl"), "--targets", str(sampled / "targets.csv"),
                 "--out", str(out), "--n", "1", "3"]) == 0
    report = json.loads((out / "csp_report.json").read_text())
    assert report["assignment"] == "material_id" and report["n_samples_unassigned"] == 0
    with open(out / "csp_targets.csv") as fh:
        rows = {r["material_id"]: r for r in csv.DictReader(fh)}
    for mids in POLYMORPHS.values():  # 2 and 3 candidates, not 5 each as by formula
        assert [rows[m]["n_candidates"] for m in mids] == ["2", "3"]
    with open(out / "csp_samples.csv") as fh:
        for r in csv.DictReader(fh):
            formula, k = r["sample_id"].rsplit("-", 2)[0], int(r["sample_id"].split("-")[-2])
            assert r["target"] == POLYMORPHS[formula][k]
    # the library function gives the same numbers, keyed by n
    structures, ids, _ = load_reference(sampled / "targets.csv")
    result = evaluate_csp(read_jsonl(sampled / "samples.jsonl"), list(zip(ids, structures)), n_values=(1, 3))
    assert result["match_rate"] == {1: report["match_rate_at_1"], 3: report["match_rate_at_3"]}
    assert set(result["rmse"]) == {1, 3} and result["assignment"] == "material_id"
    # records without a target id fall back to the formula, with a warning and the report saying so
    stripped = sampled / "no_ids.jsonl"
    stripped.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("material_id", "request_id")})
                                + "\n" for r in read_jsonl(sampled / "samples.jsonl")))
    assert main(["evaluate-csp", str(stripped), "--targets", str(sampled / "targets.csv"), "--out",
                 str(sampled / "eval_formula")]) == 0
    fallback = json.loads((sampled / "eval_formula" / "csp_report.json").read_text())
    assert fallback["assignment"] == "formula" and fallback["warnings"]
    with open(sampled / "eval_formula" / "csp_targets.csv") as fh:
        assert {r["n_candidates"] for r in csv.DictReader(fh)} == {"5"}
