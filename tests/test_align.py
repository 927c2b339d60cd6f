"""The alignment loop end to end on the tiny model: two iterations of sample -> M3GNet label -> pairs -> DPO,
each starting from the previous adapter, then a resume that redoes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_from_disk

from plaid.io import read_jsonl
from plaid.preferences import align as align_module
from plaid.preferences.align import AlignConfig, run_alignment
from plaid.training.args import parse_recipe_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory, perov_csv):
    from plaid.training.run import run_sft

    out = tmp_path_factory.mktemp("align_sft")
    args = parse_recipe_config(
        "sft", ROOT / "recipes/configs/tiny/sft.yaml", "--output_dir", str(out), "--dataset_source", str(perov_csv),
        "--max_structures", "24", "--max_steps", "4", "--per_device_train_batch_size", "4",
    )
    return run_sft(*args)


def test_config_is_strict(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft_adapter: a\noutput_dir: b\ndpo_config: c\nreference: r\nnum_sample: 3\n")
    with pytest.raises(ValueError, match="unknown key.*num_sample"):
        AlignConfig.from_yaml(bad)
    config = AlignConfig.from_yaml(ROOT / "recipes/configs/llama2-7b/align.yaml")
    assert config.temperatures == [0.7, 0.7, 0.9, 0.9, 1.1, 1.1, 1.3] and config.num_samples == 10000
    assert config.relaxer == "m3gnet" and config.relax_max_steps == 500 and config.ratio == 3
    assert config.temperature(9) == 1.3
    basic = AlignConfig.from_yaml(ROOT / "recipes/configs/carbon_24/align.yaml")
    msun = AlignConfig.from_yaml(ROOT / "recipes/configs/carbon_24/align_msun.yaml")
    assert (basic.mode, msun.mode) == ("basic", "msun") and msun.reference == basic.reference
    differs = {k for k in basic.__dict__ if basic.__dict__[k] != msun.__dict__[k]}
    assert differs == {"mode", "output_dir"}  # the same samples and labels, only the pairing differs


def test_two_iterations_end_to_end_then_resume(tmp_path, sft_adapter, perov_csv, monkeypatch, m3gnet_path):
    import pandas as pd

    reference = tmp_path / "reference.csv"  # 600 real Perov-5 structures: offline hull, novelty, S.U.N.
    pd.read_csv(perov_csv, nrows=600).to_csv(reference, index=False)
    base = AlignConfig.from_yaml(ROOT / "recipes/configs/tiny/align.yaml")
    config = AlignConfig(**{
        **base.__dict__,
        "sft_adapter": str(sft_adapter), "output_dir": str(tmp_path / "align"), "reference": str(reference),
        "dpo_config": str(ROOT / "recipes/configs/tiny/dpo.yaml"),
        "dpo_overrides": ["--max_steps", "2", "--per_device_train_batch_size", "4"],
        "num_samples": 10, "batch_size": 10, "relax_max_steps": 8, "relaxer_model_path": str(m3gnet_path),
        "grammar_options": {"max_atoms": 8, "max_elements": 3, "length_range": [3.0, 7.0]},
    })
    summary = run_alignment(config)
    rows = summary["rows"]
    assert [r["iteration"] for r in rows] == [1, 2], summary
    root = Path(config.output_dir)
    assert rows[0]["start_adapter"] == str(sft_adapter)
    assert rows[1]["start_adapter"] == str(root / "iter_1" / "dpo")  # iteration 2 continues from iteration 1
    for it, row in zip((1, 2), rows):
        d = root / f"iter_{it}"
        samples = read_jsonl(d / "samples.jsonl")
        assert len(samples) == 10 and row["parse_rate"] == 1.0  # constrained decoding
        labels = read_jsonl(d / "labels" / "labels.jsonl")
        assert sorted(lab["sample_id"] for lab in labels) == sorted(s["sample_id"] for s in samples)
        pairs = load_from_disk(str(d / "pairs"))
        texts = {s["sample_id"]: (s["prompt"], s["text"]) for s in samples}
        for pair in pairs["train"]:
            assert texts[pair["chosen_id"]] == (pair["prompt"], pair["chosen"])  # the model's own texts
            assert texts[pair["rejected_id"]] == (pair["prompt"], pair["rejected"])
        assert row["n_pairs"] == len(pairs["train"]) > 0
        tiers = json.loads((d / "pairs.done").read_text())["tier_counts"]  # the tiny config pairs by tiers
        assert row["n_accepted"] + row["n_rejected"] == sum(tiers.values()) == 10  # tiers pair unstable > bad too
        assert (d / "dpo" / "adapter_model.safetensors").exists()
        run = json.loads((d / "dpo" / "plaid_run.json").read_text())
        assert run["plaid_args"]["sft_adapter"] == row["start_adapter"]  # policy start = frozen reference
        assert row["rewards/accuracies"] is not None
    assert "| 2 |" in (root / "summary.md").read_text()

    def fail(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(align_module, "sample_stage", fail)
    monkeypatch.setattr(align_module, "dpo_stage", fail)
    again = run_alignment(config)
    assert [r["n_pairs"] for r in again["rows"]] == [r["n_pairs"] for r in rows]


def test_dpo_stage_starts_a_full_model_by_name_and_an_adapter_in_place(tmp_path, monkeypatch, sft_adapter):
    """A from-scratch recipe's full model is DPO-trained whole (model_name_or_path); a LoRA adapter in place."""
    from plaid.training import run as run_module

    seen = []

    def fake_run_dpo(script_args, training_args, model_args, plaid_args):
        seen.append((model_args.model_name_or_path, plaid_args.sft_adapter))
        return tmp_path / "dpo"

    monkeypatch.setattr(run_module, "run_dpo", fake_run_dpo)
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    config = AlignConfig.from_yaml(ROOT / "recipes/configs/carbon_24/align.yaml")
    align_module.dpo_stage(config, str(full), tmp_path / "pairs", tmp_path / "dpo")
    align_module.dpo_stage(config, str(sft_adapter), tmp_path / "pairs", tmp_path / "dpo")
    assert seen[0] == (str(full), None)
    assert seen[1][1] == str(sft_adapter)


def test_sampling_uses_the_sft_models_prompt_style(tmp_path, monkeypatch):
    """Every iteration prompts in the wording the SFT model was trained on (its plaid_run.json)."""
    import plaid.sampling as sampling

    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "plaid_run.json").write_text(json.dumps({"plaid_args": {"prompt_style": "plaid-paper"}}))
    seen = {}

    class FakeSampler:
        def __init__(self, backend, config):
            seen["style"] = config.prompt_style

        def run(self, requests, out):
            return {"n": 0}

    monkeypatch.setattr(sampling, "load_backend", lambda *a, **k: object())
    monkeypatch.setattr(sampling, "Sampler", FakeSampler)
    config = AlignConfig(sft_adapter=str(sft), output_dir=str(tmp_path / "out"), dpo_config="unused.yaml")
    align_module.sample_stage(config, str(tmp_path / "dpo-iteration-1"), tmp_path / "s.jsonl", 2)
    assert seen["style"] == "plaid-paper"
