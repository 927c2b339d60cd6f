"""``plaid benchmark csp`` / ``gen``: the harness computes the field's definitions. A stand-in backend that writes
each target's own text for some targets and another material's for the rest gives known answers; a tiny real
model runs both commands end to end."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from plaid.benchmark import CSPBenchmarkConfig, GenBenchmarkConfig, run_csp_benchmark, run_gen_benchmark
from plaid.benchmark.gen import compare_gen_results
from plaid.benchmark.stats import difference_interval, wilson_interval
from plaid.sampling.generate import Generation


class ScriptedBackend:
    """Answers a prompt with a scripted text per (composition in the prompt, call count)."""

    name = "scripted"
    model_path = "scripted"

    def __init__(self, answers: dict[str, list[str]]):
        self.answers, self.calls, self.temperatures = answers, {}, []

    def generate(self, prompts, seeds, params, grammars=None):
        out = []
        for prompt in prompts:
            self.temperatures.append(params.temperature)
            key = next(k for k in self.answers if f"The cell composition is {k}." in prompt)
            k = self.calls.get(key, 0)
            self.calls[key] = k + 1
            texts = self.answers[key]
            out.append(Generation(texts[min(k, len(texts) - 1)], 10, True))
        return out


@pytest.fixture(scope="module")
def targets(tmp_path_factory, perov_csv):
    path = tmp_path_factory.mktemp("targets") / "test.csv"
    pd.read_csv(perov_csv).iloc[:4][["material_id", "cif"]].to_csv(path, index=False)
    return path


def _answers(targets):
    from pymatgen.core import Structure

    from plaid.representations import get

    rep = get("wyckoff")
    frame = pd.read_csv(targets)
    texts = [rep.encode(Structure.from_str(c, fmt="cif")) for c in frame["cif"]]
    comps = [t.splitlines()[0] for t in texts]
    assert len(set(comps)) == 4
    # target 0: right at once; target 1: right only as the 2nd candidate; targets 2, 3: unparseable text
    return {
        comps[0]: [texts[0]],
        comps[1]: ["garbage", texts[1]],
        comps[2]: ["garbage"],
        comps[3]: ["garbage"],
    }, frame


def test_csp_benchmark_definitions(tmp_path, targets):
    answers, frame = _answers(targets)
    cfg = CSPBenchmarkConfig(n_values=(1, 2), constrained=False, batch_size=1, dataset="perov_5")
    results = run_csp_benchmark("unused", str(targets), tmp_path, cfg, backend=ScriptedBackend(answers))
    assert results["match_rate"] == {"1": 0.25, "2": 0.5}  # matched targets / all targets
    assert (
        results["rmse"]["1"] < 5e-3
    )  # over matched targets only (the text rounds coordinates to 3 decimals)
    assert results["counts"]["targets"] == 4 and results["counts"]["samples"] == 8
    assert results["settings"]["matcher"]["ltol"] == 0.3 and results["settings"]["matcher"]["stol"] == 0.5
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {r["material_id"] for r in records} == set(frame["material_id"].astype(str))  # carried per record
    table = (tmp_path / "table.md").read_text()
    assert "| **plaid (this run)** | 25.00 |" in table and "CrystaLLM small" in table and "47.95" in table
    # the curve over k = 1..max(n) agrees with the reported n values, and is plotted
    assert [(c["n"], c["match_rate"]) for c in results["curve"]] == [(1, 0.25), (2, 0.5)]
    # 95% Wilson intervals of the match rates: 1 of 4 and 2 of 4 targets
    assert results["match_rate_ci95"]["1"] == [round(x, 4) for x in wilson_interval(1, 4)]
    assert results["match_rate_ci95"]["2"] == [round(x, 4) for x in wilson_interval(2, 4)]
    # the breakdown by the target's space group adds up to the whole
    groups = results["by_spacegroup"]
    assert sum(g["n_targets"] for g in groups) == 4 and sum(g["matched_at_2"] for g in groups) == 2
    assert math.isclose(sum(g["rmse_share_at_2"] or 0 for g in groups), 1.0)
    assert "## By the target's space group" in table and "n=2 [15.0, 85.0]" in table
    assert (tmp_path / results["plot"]).stat().st_size > 0
    # resumable: a second run samples nothing new and gives the same numbers
    again = run_csp_benchmark("unused", str(targets), tmp_path, cfg, backend=ScriptedBackend(answers))
    assert again["match_rate"] == results["match_rate"]


def test_csp_first_greedy_puts_the_greedy_candidate_first(tmp_path, targets):
    """--first-greedy: candidate 1 of each target is decoded at T=0 before candidates 2..max(n) are sampled at the
    configured temperature, and n=1 scores that greedy candidate."""
    answers, frame = _answers(targets)
    backend = ScriptedBackend(answers)
    cfg = CSPBenchmarkConfig(n_values=(1, 3), constrained=False, batch_size=1, temperature=0.7, first_greedy=True)
    results = run_csp_benchmark("unused", str(targets), tmp_path, cfg, backend=backend)
    assert backend.temperatures == [0.0] * 4 + [0.7] * 8  # 4 greedy calls first, then 2 sampled per target
    # target 1's 1st (greedy) answer is garbage and its 2nd (1st sampled) is right: matched at 3, not at 1
    assert results["match_rate"] == {"1": 0.25, "3": 0.5}
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 12
    for mid in frame["material_id"].astype(str):
        mine = [r for r in records if r["material_id"] == mid]
        assert [r["decoding"] for r in mine] == ["greedy", "sampled", "sampled"]
    assert len({r["sample_id"] for r in records}) == 12
    assert "candidate 1 greedy, candidates 2..3 sampled at T=0.7" in (tmp_path / "table.md").read_text()
    again = run_csp_benchmark("unused", str(targets), tmp_path, cfg, backend=ScriptedBackend(answers))
    assert again["match_rate"] == results["match_rate"] and again["counts"]["samples"] == 12  # resumed


def test_csp_distinct_redraws_duplicates_within_the_budget(tmp_path, targets):
    """--distinct: a draw that matches an earlier candidate of its target is set aside and redrawn (at most
    max_draws_per_candidate * max(n) draws); a draw that is no structure keeps its slot; a target whose budget
    runs out fills its slots with its duplicates."""
    from pymatgen.core import Structure

    from plaid.representations import get

    frame = pd.read_csv(targets)
    rep = get("wyckoff")
    texts = [rep.encode(Structure.from_str(c, fmt="cif")) for c in frame["cif"]]
    comps = [t.splitlines()[0] for t in texts]
    answers = {
        comps[0]: [texts[0]],  # always the same right answer: 1 distinct candidate, then only duplicates
        comps[1]: ["garbage", texts[1]],  # no structure (keeps its slot), then right
        comps[2]: [texts[3], texts[3], texts[2]],  # wrong twice (one duplicate), then right
        comps[3]: ["garbage"],
    }
    cfg = CSPBenchmarkConfig(n_values=(1, 2), constrained=False, batch_size=1, distinct=True,
                             max_draws_per_candidate=3)
    results = run_csp_benchmark("unused", str(targets), tmp_path, cfg, backend=ScriptedBackend(answers))
    # plain sampling would give target 2 [wrong, wrong]: 0.5 at n=2; distinct redraws the duplicate
    assert results["match_rate"] == {"1": 0.25, "2": 0.75}
    assert results["counts"]["samples"] == 8  # max(n) candidates per target
    assert results["counts"]["draws"] == 6 + 2 + 4 + 2  # target 0 used its whole budget of 3 * 2
    assert results["counts"]["targets_short_of_distinct"] == 1  # target 0
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    first = [r for r in records if r["request_id"] == records[0]["request_id"]]
    assert first[0]["duplicates_set_aside"] == 5 and first[1]["index"] == 1  # the filler is its 1st duplicate
    assert "duplicates redrawn, at most 6 draws per target" in results["settings"]["decoding"]
    again = run_csp_benchmark("unused", str(targets), tmp_path, cfg, backend=ScriptedBackend(answers))
    assert again["match_rate"] == results["match_rate"] and again["counts"]["draws"] == 14  # resumed


def test_csp_prompts_give_the_space_group_when_asked(tmp_path, targets):
    from plaid.benchmark.csp import csp_prompt_rows

    rows, numbers = csp_prompt_rows(pd.read_csv(targets), "wyckoff", 20, spacegroup=True)
    assert all(r["num_samples"] == 20 and 1 <= int(r["spacegroup"]) <= 230 for r in rows)
    assert numbers == [int(r["spacegroup"]) for r in rows]
    assert [r["material_id"] for r in rows] == [str(x) for x in pd.read_csv(targets)["material_id"]]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    return create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))


def test_benchmark_commands_end_to_end_on_a_tiny_model(tmp_path, tiny_model, targets, perov_csv):
    from plaid.cli import main

    out = tmp_path / "csp"
    code = main([
        "benchmark", "csp", "--model", str(tiny_model), "--targets", str(targets), "--n", "1", "2",
        "--num-targets", "1", "--out", str(out), "--batch-size", "2", "--representation", "wyckoff",
        "--first-greedy",
    ])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["targets"] == 1 and results["counts"]["samples"] == 2
    assert 0 <= results["match_rate"]["2"] <= 1 and results["match_rate"]["1"] <= results["match_rate"]["2"]
    assert results["settings"]["prompt_style"] == "plaid"  # the style the tiny model was trained with
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {r["prompt_style"] for r in records} == {"plaid"}
    assert [r["decoding"] for r in records] == ["greedy", "sampled"]  # the real model's greedy path, grammar on

    reference = tmp_path / "train.csv"
    pd.read_csv(perov_csv).iloc[10:40].to_csv(reference, index=False)
    cfg = GenBenchmarkConfig(
        num_samples=2, batch_size=2, representation="wyckoff", max_atoms=6, dataset="perov_5"
    )
    gen = run_gen_benchmark(str(tiny_model), str(reference), tmp_path / "gen", test=str(targets), config=cfg)
    assert gen["counts"]["samples"] == 2
    assert gen["metrics"]["stable_relaxed"] is None or math.isnan(
        gen["metrics"]["stable_relaxed"]
    )  # no relaxer
    assert 0 <= gen["metrics"]["struct_valid"] <= 1
    assert "PLaID" not in (tmp_path / "gen" / "table.md").read_text()  # perov_5: CDVAE's row only
    assert "CDVAE" in (tmp_path / "gen" / "table.md").read_text()
    valid = round(gen["metrics"]["struct_valid"] * 2)
    assert gen["ci95"]["struct_valid"] == [round(x, 4) for x in wilson_interval(valid, 2)]
    # COV-R counts the test structures covered, COV-P the samples near one (CDVAE's denominators: all of each)
    cov = gen["counts"]["coverage"]
    assert cov["reference_structures"] == len(pd.read_csv(targets)) and cov["samples"] == 2
    assert gen["metrics"]["cov_recall"] == cov["reference_covered"] / cov["reference_structures"]
    assert gen["metrics"]["cov_precision"] == cov["samples_precise"] / 2
    assert gen["ci95"]["cov_recall"] == [
        round(x, 4) for x in wilson_interval(cov["reference_covered"], cov["reference_structures"])
    ]
    assert gen["ci95"]["cov_precision"] == [round(x, 4) for x in wilson_interval(cov["samples_precise"], 2)]
    table = (tmp_path / "gen" / "table.md").read_text()
    assert f"COV-R: {cov['reference_covered']} of the {cov['reference_structures']} structures of test.csv" in table


def test_benchmark_prompts_in_the_style_the_model_was_trained_with(tmp_path):
    from plaid.benchmark.settings import BenchmarkSampling

    model = tmp_path / "model"
    model.mkdir()
    (model / "plaid_run.json").write_text(json.dumps({"plaid_args": {"prompt_style": "plaid-paper"}}))
    assert BenchmarkSampling().resolved_prompt_style(str(model)) == "plaid-paper"
    assert BenchmarkSampling(prompt_style="plaid").resolved_prompt_style(str(model)) == "plaid"  # explicit wins
    assert BenchmarkSampling().resolved_prompt_style(str(tmp_path)) == "plaid"  # no run record: plaid's
    assert BenchmarkSampling().sample_config("wyckoff", "plaid-paper").prompt_style == "plaid-paper"


def test_csp_breakdown_known_values():
    """Per-group match rates, mean RMSE over the group's matched targets and shares of the RMSE sum."""
    from plaid.benchmark.breakdown import breakdown_table, csp_breakdown

    per_target = [{"rmse_at_1": 0.1, "rmse_at_20": 0.1}, {"rmse_at_1": None, "rmse_at_20": 0.3},
                  {"rmse_at_1": None, "rmse_at_20": None}, {"rmse_at_1": 0.02, "rmse_at_20": 0.0}]
    rows = csp_breakdown(per_target, ["Pmm2 (25)", "Pmm2 (25)", "Pmm2 (25)", "Pm-3m (221)"], (1, 20))
    polar, cubic = rows  # most targets first
    assert (polar["group"], polar["n_targets"], polar["matched_at_1"], polar["matched_at_20"]) == ("Pmm2 (25)", 3, 1, 2)
    assert math.isclose(polar["match_rate_at_20"], 2 / 3) and math.isclose(polar["mean_rmse_at_20"], 0.2)
    assert math.isclose(polar["rmse_share_at_20"], 1.0) and cubic["rmse_share_at_20"] == 0.0  # 0.4 of 0.4
    assert math.isclose(polar["rmse_share_at_1"], 0.1 / 0.12) and math.isclose(cubic["mean_rmse_at_1"], 0.02)
    assert polar["match_rate_ci95_at_20"] == [round(x, 4) for x in wilson_interval(2, 3)]
    lines = breakdown_table(rows, (1, 20))
    assert lines[2] == "| Pmm2 (25) | 3 | 33.3 | 0.1000 | 83.3 | 66.7 | 0.2000 | 100.0 |"
    with pytest.raises(ValueError):
        csp_breakdown(per_target, ["Pmm2 (25)"], (1,))


def test_wilson_interval_known_values():
    """Wilson 95% score interval (Newcombe 1998, table I): 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775."""
    lo, hi = wilson_interval(81, 263)
    assert abs(lo - 0.2553) < 5e-4 and abs(hi - 0.3662) < 5e-4
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 5e-4
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_difference_interval_known_values():
    """Newcombe 1998, table II, example (a): 56/70 - 48/80 = 0.2000, hybrid score interval 0.0524 to 0.3339."""
    d, lo, hi = difference_interval(56, 70, 48, 80)
    assert abs(d - 0.2) < 1e-12 and abs(lo - 0.0524) < 5e-4 and abs(hi - 0.3339) < 5e-4
    before = {"counts": {"samples": 80}, "metrics": {"metastable": 48 / 80, "sun": None}}
    after = {"counts": {"samples": 70}, "metrics": {"metastable": 56 / 70, "sun": None}}
    (row,) = compare_gen_results(before, after)
    assert row["metric"] == "metastable" and row["difference_ci95"] == (lo, hi)


def test_csp_unreadable_target_is_scored_unmatched(tmp_path, targets):
    """A target whose CIF does not parse gets no prompt, stays in the denominator and is reported as such."""
    answers, frame = _answers(targets)
    bad = pd.concat([frame, pd.DataFrame([{"material_id": "broken", "cif": "not a cif"}])], ignore_index=True)
    path = tmp_path / "with_broken.csv"
    bad.to_csv(path, index=False)
    cfg = CSPBenchmarkConfig(n_values=(1, 2), constrained=False, batch_size=1, dataset="perov_5")
    results = run_csp_benchmark("unused", str(path), tmp_path / "out", cfg, backend=ScriptedBackend(answers))
    assert results["counts"]["targets"] == 5 and results["counts"]["targets_unreadable"] == 1
    assert results["match_rate"] == {"1": 0.2, "2": 0.4}  # 1 and 2 of 5 targets
    assert {"group": "unreadable target", "n_targets": 1}.items() <= next(
        g for g in results["by_spacegroup"] if g["group"] == "unreadable target").items()
