"""From-scratch recipes: architecture size from the YAML, CSP task mix, a training file used whole, and the run
record written with every checkpoint (so a run killed after a checkpoint says how it was made)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plaid.training.args import parse_recipe_config

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = sorted((ROOT / "recipes" / "configs").glob("*/sft_scratch*.yaml"))


def test_scratch_recipes_exist_for_the_three_datasets():
    assert {p.parent.name for p in SCRATCH} >= {"perov_5", "carbon_24", "mp_20"}


@pytest.mark.parametrize("config", SCRATCH, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scratch_recipe_sets_architecture_and_csp_tasks(config):
    _, training, model_args, plaid_args = parse_recipe_config(
        "sft", config, "--dataset_source", "x.csv", "--output_dir", "/tmp/elsewhere"
    )
    assert model_args.model_name_or_path == "plaid-scratch-llama" and not model_args.use_peft
    arch = plaid_args.architecture_overrides()
    assert {"num_hidden_layers", "hidden_size", "num_attention_heads"} <= set(arch)
    assert arch["num_key_value_heads"] == arch["num_attention_heads"]
    from plaid.data.tasks import parse_task_mix

    assert "csp" in parse_task_mix(plaid_args.task_mix)
    assert plaid_args.dataset_source == "x.csv" and training.output_dir == "/tmp/elsewhere"


def test_architecture_keys_build_the_model_and_reject_other_bases(tmp_path):
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model, resolve_base_model

    tok = build_tokenizer("wyckoff")
    path = create_local_model(
        "plaid-scratch-llama", tok, tmp_path / "m",
        overrides={"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 4,
                   "intermediate_size": 64, "max_position_embeddings": 256},
    )  # fmt: skip
    config = json.loads((path / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["max_position_embeddings"]) == (
        2,
        32,
        256,
    )
    with pytest.raises(ValueError, match="another configuration"):  # never silently replaced
        create_local_model("plaid-scratch-llama", tok, tmp_path / "m", overrides={"num_hidden_layers": 3})
    _, training, model_args, plaid_args = parse_recipe_config(
        "sft", ROOT / "recipes/configs/tiny/sft.yaml", "--model_name_or_path", "some/hub-model",
        "--num_hidden_layers", "3", "--output_dir", str(tmp_path / "o"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="only to local architectures"):
        resolve_base_model(model_args, plaid_args, tok, training.output_dir)


def test_csp_tasks_prompt_the_cell_composition(perov_csv):
    from plaid.data import build_dataset
    from plaid.prompts import generation_prompt

    ds, report = build_dataset(
        str(perov_csv), "wyckoff", task_mix="csp=1,csp_spacegroup=1", max_structures=30,
        split_fractions=(1, 0, 0),
    )  # fmt: skip
    assert list(ds) == ["train"] and report.split_counts["train"] == 30  # the whole file, not 90%
    rows = ds["train"]
    for prompt, task, conditions, text in zip(rows["prompt"], rows["task"], rows["conditions"], rows["text"]):
        cond = json.loads(conditions)
        assert set(cond) == ({"composition"} if task == "csp" else {"composition", "spacegroup"})
        assert text.splitlines()[0] == cond["composition"]  # the composition of the cell the text writes
        assert prompt == generation_prompt("wyckoff", cond)
    assert set(rows["task"]) == {"csp", "csp_spacegroup"}


def test_a_single_named_split_is_used_whole(tmp_path, perov_csv):
    import pandas as pd

    from plaid.data import build_dataset

    (tmp_path / "perov_5").mkdir()
    pd.read_csv(perov_csv).iloc[:12].to_csv(tmp_path / "perov_5" / "train.csv", index=False)
    ds, report = build_dataset("perov_5", "wyckoff", source_splits=("train",), data_root=tmp_path)
    assert report.split_counts == {"train": 12, "validation": 0, "test": 0}


def test_run_record_is_written_with_each_checkpoint(tmp_path, perov_csv):
    from plaid.training.run import train

    out = tmp_path / "run"
    args = parse_recipe_config(
        "sft", ROOT / "recipes/configs/tiny/sft.yaml", "--output_dir", str(out), "--dataset_source",
        str(perov_csv), "--max_structures", "8", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--save_strategy", "steps", "--save_steps", "1",
    )  # fmt: skip
    train("sft", *args)
    for checkpoint in ("checkpoint-1", "checkpoint-2"):
        record = json.loads((out / checkpoint / "plaid_run.json").read_text())
        assert record["global_step"] == int(checkpoint.split("-")[1])
        assert record["plaid_args"]["representation"] == "wyckoff"
    assert "train_metrics" in json.loads((out / "plaid_run.json").read_text())
