"""Training recipes on the tiny LLaMA (CPU): strict configs, the completion-only loss mask on builder data, LoRA
SFT and DPO (reference = frozen SFT adapter), 4-bit, the real entry scripts under accelerate, push and merge."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plaid.prompts import generation_prompt
from plaid.representations import get
from plaid.tokenizer import build_tokenizer
from plaid.training.args import parse_recipe_config
from plaid.training.model import create_local_model, load_for_inference, quantization_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "configs").rglob("*.yaml"))
TINY_SFT = ROOT / "recipes" / "configs" / "tiny" / "sft.yaml"
TINY_DPO = ROOT / "recipes" / "configs" / "tiny" / "dpo.yaml"


def _recipe(path: Path) -> str:
    return "dpo" if path.name.startswith("dpo") else "sft"


def _cpu_overrides() -> list[str]:
    return (
        [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    )  # bf16 configs validate only with use_cpu


def _lora_state(model, adapter="default"):
    return {
        n: p.detach().clone() for n, p in model.named_parameters() if f".{adapter}." in n and "lora_" in n
    }


def _base_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def _losses(log_history, key="loss"):
    return [entry[key] for entry in log_history if key in entry]


# ------------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "recipes" / "configs")))
def test_every_config_parses_strictly(config):
    overrides = _cpu_overrides()
    if config.name.startswith(
        "align"
    ):  # plaid align's own strict loader; its DPO recipe config must parse too
        from plaid.preferences.align import AlignConfig

        align = AlignConfig.from_yaml(config)
        config, overrides = ROOT / align.dpo_config, overrides + list(align.dpo_overrides)
    script_args, training_args, model_args, plaid_args = parse_recipe_config(
        _recipe(config), config, *overrides
    )
    assert training_args.output_dir
    assert plaid_args.representation in ("wyckoff", "coords", "cif")
    assert plaid_args.dataset_source or plaid_args.preference_dataset


def test_unknown_yaml_key_and_flag_fail(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SFT.read_text() + "\nlora_rank: 16\n")  # a typo of lora_r
    with pytest.raises(ValueError, match="lora_rank"):
        parse_recipe_config("sft", bad)
    with pytest.raises(ValueError):
        parse_recipe_config("sft", TINY_SFT, "--no_such_flag", "1")
    with pytest.raises(ValueError, match="beta"):  # a DPO key in an SFT config
        bad.write_text(TINY_SFT.read_text() + "\nbeta: 0.1\n")
        parse_recipe_config("sft", bad)


def test_llama2_plaid_settings_and_4bit_config():
    from peft import LoraConfig
    from trl import get_peft_config

    cfg = ROOT / "recipes" / "configs" / "llama2-7b"
    _, sft, model_args, plaid_args = parse_recipe_config("sft", cfg / "sft_qlora.yaml", *_cpu_overrides())
    assert model_args.model_name_or_path == "meta-llama/Llama-2-7b-hf"
    assert plaid_args.representation == "wyckoff"
    assert (sft.learning_rate, sft.num_train_epochs, sft.per_device_train_batch_size) == (1e-5, 10, 16)
    assert sft.gradient_accumulation_steps == 1 and sft.optim == "adamw_torch" and sft.bf16
    bnb = quantization_config(model_args)
    assert bnb.load_in_4bit and not bnb.load_in_8bit
    assert bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16 and model_args.dtype == "bfloat16"
    lora = get_peft_config(model_args)
    assert isinstance(lora, LoraConfig)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 32, 0.05)
    assert set(lora.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }

    _, dpo, dpo_model_args, dpo_plaid = parse_recipe_config("dpo", cfg / "dpo_qlora.yaml", *_cpu_overrides())
    assert (dpo.beta, dpo.learning_rate, dpo.num_train_epochs, dpo.per_device_train_batch_size) == (
        0.1,
        1e-6,
        1,
        16,
    )
    assert dpo_plaid.sft_adapter == sft.output_dir and dpo_plaid.preference_pairs == "saved"
    assert quantization_config(dpo_model_args).bnb_4bit_quant_type == "nf4"

    model_args.dtype = "auto"
    with pytest.raises(ValueError, match="explicit dtype"):
        quantization_config(model_args)


# ------------------------------------------------------------------------------------------- SFT and DPO


@pytest.fixture(scope="module")
def sft_trainer(tmp_path_factory, perov_csv):
    from plaid.training.run import build_sft_trainer

    out = tmp_path_factory.mktemp("sft")
    args = parse_recipe_config(
        "sft", TINY_SFT,
        "--output_dir", str(out), "--dataset_source", str(perov_csv), "--max_structures", "24",
        "--max_steps", "3", "--logging_steps", "1", "--per_device_train_batch_size", "4",
    )  # fmt: skip
    return build_sft_trainer(*args), args


def test_completion_only_loss_mask_on_builder_data(sft_trainer):
    from plaid.data import load_built

    trainer, (_, training_args, _, _) = sft_trainer
    raw = load_built(Path(training_args.output_dir) / "dataset")["train"]
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for i in range(4):
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        real = batch["attention_mask"][i].bool() if "attention_mask" in batch else ids != tok.pad_token_id
        trained = labels != -100
        assert tok.decode(ids[trained]) == raw[i]["completion"] + tok.eos_token  # the crystal text + eos
        assert tok.decode(ids[real & ~trained]) == tok.bos_token + raw[i]["prompt"]  # prompt fully masked
        assert torch.equal(labels[trained], ids[trained])
        assert raw[i]["prompt"].startswith("Below is") and raw[i]["completion"]


@pytest.fixture(scope="module")
def sft_run(sft_trainer):
    """The tiny SFT trained for 3 steps: (output dir, LoRA before, LoRA after, base before, base after, logs)."""
    from plaid.training.run import finish

    trainer, args = sft_trainer
    lora0, base0 = _lora_state(trainer.model), _base_state(trainer.model)
    result = trainer.train()
    out = finish(trainer, "sft", *args, result)
    return (
        out,
        lora0,
        _lora_state(trainer.model),
        base0,
        _base_state(trainer.model),
        trainer.state.log_history,
    )


def test_sft_trains_lora_only(sft_run):
    out, lora0, lora1, base0, base1, logs = sft_run
    losses = _losses(logs)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert lora0 and all(not torch.equal(lora0[n], lora1[n]) for n in lora0)  # every LoRA tensor moved
    assert base0 and all(torch.equal(base0[n], base1[n]) for n in base0)  # base weights untouched
    names = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora0}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "plaid_run.json"):
        assert (out / name).exists(), name
    record = json.loads((out / "plaid_run.json").read_text())
    assert record["recipe"] == "sft" and record["plaid_args"]["representation"] == "wyckoff"


def test_load_for_inference_adapter_and_full_model(sft_run, tmp_path):
    out, *_ = sft_run
    model, tok = load_for_inference(out, device="cpu")
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"
    prompts = [generation_prompt("wyckoff"), generation_prompt("wyckoff", {"formula": "SrTiO3"})]
    batch = tok(prompts, return_tensors="pt", padding=True)
    assert batch["input_ids"][0, 0] == tok.pad_token_id  # the shorter prompt is left padded
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape == (2, batch["input_ids"].shape[1] + 4)
    # the adapter's base moved away: falls back to <adapter>/base_model
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("dataset"))
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    model2, _ = load_for_inference(moved, device="cpu")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, model2(**batch).logits)
    # a full (from-scratch-style) model directory
    full = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path / "full")
    model3, tok3 = load_for_inference(full, device="cpu")
    assert type(model3).__name__ == "LlamaForCausalLM" and tok3.padding_side == "left"


@pytest.fixture(scope="module")
def preference_dir(tmp_path_factory, perov_structures):
    """Hand-made pairs from real Perov-5 structures: chosen = the true Wyckoff text for its formula prompt,
    rejected = the text of another structure (different formula)."""
    from datasets import Dataset, DatasetDict

    rep = get("wyckoff")
    structures = perov_structures[:12]
    texts = [rep.encode(s) for s in structures]
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for i, s in enumerate(structures):
        j = next(
            k for k in range(1, len(structures)) if structures[(i + k) % 12].composition != s.composition
        )
        rows["prompt"].append(generation_prompt("wyckoff", {"formula": s.composition.reduced_formula}))
        rows["chosen"].append(texts[i])
        rows["rejected"].append(texts[(i + j) % 12])
    path = tmp_path_factory.mktemp("pairs")
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(path))
    return path


def test_dpo_from_sft_adapter_with_frozen_reference(sft_run, preference_dir, tmp_path):
    from safetensors.torch import load_file

    from plaid.training.run import build_dpo_trainer, describe_reference, finish

    sft_out = sft_run[0]
    args = parse_recipe_config(
        "dpo", TINY_DPO,
        "--output_dir", str(tmp_path / "dpo"), "--sft_adapter", str(sft_out),
        "--preference_dataset", str(preference_dir), "--preference_pairs", "saved",
        "--max_steps", "2", "--logging_steps", "1",
    )  # fmt: skip
    trainer = build_dpo_trainer(*args)
    model = trainer.model
    assert set(model.peft_config) == {"default", "ref"}
    assert "adapter 'ref'" in describe_reference(trainer) and trainer.ref_model is None
    policy0, ref0, base0 = _lora_state(model, "default"), _lora_state(model, "ref"), _base_state(model)
    sft_weights = load_file(str(sft_out / "adapter_model.safetensors"))
    assert len(sft_weights) == len(policy0)
    for name, value in policy0.items():  # both adapters start at the SFT weights
        assert torch.equal(value, ref0[name.replace(".default.", ".ref.")])
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".ref." in n)

    result = trainer.train()
    policy1, ref1, base1 = _lora_state(model, "default"), _lora_state(model, "ref"), _base_state(model)
    assert any(not torch.equal(policy0[n], policy1[n]) for n in policy0)
    assert all(torch.equal(ref0[n], ref1[n]) for n in ref0)  # the reference stays the SFT adapter
    assert all(torch.equal(base0[n], base1[n]) for n in base0)
    logs = trainer.state.log_history
    for key in ("loss", "rewards/margins", "rewards/accuracies"):
        values = _losses(logs, key)
        assert values and all(math.isfinite(v) for v in values), key
    out = finish(trainer, "dpo", *args, result)
    assert (out / "adapter_model.safetensors").exists() and not (out / "ref").exists()
    assert json.loads((out / "plaid_run.json").read_text())["plaid_args"]["sft_adapter"] == str(sft_out)


def test_real_4bit_lora_step(sft_run, preference_dir, tmp_path, perov_csv):
    """Real NF4 (double-quantized) steps at PLaID's SFT learning rate (1e-5). bitsandbytes 0.50 runs 4-bit on CPU
    too, so this runs everywhere. The LoRA weights are fp32 master weights: in bf16 (what TRL casts them to, and
    what this test asserted before) an update of 1e-5 rounds away for |w| >= 0.0156, so lora_A would not move."""
    pytest.importorskip("bitsandbytes")
    from plaid.training.run import build_sft_trainer

    args = parse_recipe_config(
        "sft", TINY_SFT,
        "--model_name_or_path", str(sft_run[0] / "base_model"), "--tokenizer", str(sft_run[0]),
        "--load_in_4bit", "true", "--dtype", "bfloat16", "--use_bnb_nested_quant", "true",
        "--output_dir", str(tmp_path / "q4"), "--dataset_source", str(perov_csv), "--max_structures", "8",
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "128",
        "--learning_rate", "1e-5", "--lr_scheduler_type", "constant",
        "--activation_checkpointing", "true",  # as in the 7B config: gradients must reach LoRA through it
    )  # fmt: skip
    trainer = build_sft_trainer(*args)
    base_model = trainer.model.get_base_model()
    assert base_model.is_loaded_in_4bit
    layer = base_model.model.layers[0].self_attn.q_proj.base_layer
    assert type(layer).__name__ == "Linear4bit" and layer.weight.quant_state.quant_type == "nf4"
    assert layer.weight.quant_state.nested  # double quantization
    lora0 = _lora_state(trainer.model)
    assert lora0 and all(v.dtype == torch.float32 for v in lora0.values())
    a_names = [n for n in lora0 if "lora_A" in n]
    big = torch.cat([lora0[n].flatten() for n in a_names]).abs() >= 0.0156
    assert big.float().mean() > 0.5  # most lora_A entries are where bf16 would lose a 1e-5 step
    result = trainer.train()
    assert all(math.isfinite(x) for x in _losses(trainer.state.log_history, "train_loss"))
    after = _lora_state(trainer.model)
    moved = torch.cat([(after[n] != lora0[n]).flatten() for n in a_names])
    assert moved.float().mean() > 0.9, f"only {moved.float().mean():.2%} of lora_A entries changed"
    from plaid.training.run import finish

    out = finish(trainer, "sft", *args, result)  # the saved fp32 adapter loads (4-bit) and samples
    model, tok = load_for_inference(out, device="cpu", load_in_4bit=True, dtype=torch.bfloat16)
    prompt = tok(generation_prompt("wyckoff"), return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 4


def test_from_scratch_full_training_on_cif(tmp_path, perov_csv):
    """The from-scratch path (no LoRA, domain tokenizer, CIF text) on the tiny architecture: every weight trains,
    the full model and its tokenizer are saved and load for generation."""
    from plaid.training.run import build_sft_trainer, finish

    args = parse_recipe_config(
        "sft", TINY_SFT,
        "--use_peft", "false", "--tokenizer", "domain", "--representation", "cif",
        "--output_dir", str(tmp_path / "scratch"), "--dataset_source", str(perov_csv), "--max_structures", "8",
        "--max_steps", "1", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
    )  # fmt: skip
    trainer = build_sft_trainer(*args)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert all(p.requires_grad for p in trainer.model.parameters())
    result = trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in ("model.embed_tokens.weight", "lm_head.weight"))
    out = finish(trainer, "sft", *args, result)
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    model, tok = load_for_inference(out, device="cpu")
    assert "_cell_length_a" in tok.get_vocab() and len(tok) == model.config.vocab_size
    with pytest.raises(ValueError, match="use_peft"):
        four_bit = parse_recipe_config(
            "sft", TINY_SFT, "--use_peft", "false", "--load_in_4bit", "true", "--dtype", "bfloat16",
            "--output_dir", str(tmp_path / "bad"),
        )  # fmt: skip
        build_sft_trainer(*four_bit)


# ------------------------------------------------------------------------------------- entry scripts (CLI)


@pytest.mark.slow
def test_entry_scripts_sft_under_accelerate_cpu_then_dpo(tmp_path, perov_csv, monkeypatch, caplog):
    """recipes/sft.py through `accelerate launch --cpu` (subprocess), then recipes/dpo.py run as __main__."""
    import logging
    import runpy

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PLAID_DATA_DIR": str(perov_csv.parents[1])}
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1"]
    sft_out, dpo_out = tmp_path / "sft", tmp_path / "dpo"
    common = ["--max_steps", "2", "--logging_steps", "1"]
    run = subprocess.run(
        [*accelerate, "recipes/sft.py", "--config", str(TINY_SFT), "--output_dir", str(sft_out),
         "--max_structures", "24", *common],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "trainable parameters" in run.stderr

    monkeypatch.setattr(sys, "argv", [
        "recipes/dpo.py", "--config", str(TINY_DPO), "--output_dir", str(dpo_out),
        "--sft_adapter", str(sft_out), "--preference_dataset", str(sft_out / "dataset"), *common,
    ])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="plaid"):
        runpy.run_path(str(ROOT / "recipes" / "dpo.py"), run_name="__main__")
    assert "DPO reference model: adapter 'ref'" in caplog.text
    for out in (sft_out, dpo_out):
        assert (out / "adapter_model.safetensors").exists()
        state = json.loads((out / "trainer_state.json").read_text())
        assert all(math.isfinite(x) for x in _losses(state["log_history"]))


# ------------------------------------------------------------------------------------------ push and merge


class RecordingApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])  # a staged copy, gone after the call: list what it held
        kwargs["staged"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))


def test_push_writes_card_and_uploads_the_adapter(sft_run, tmp_path):
    import shutil

    from huggingface_hub import ModelCard

    from plaid.training.publish import push

    run_dir = tmp_path / "run"
    shutil.copytree(sft_run[0], run_dir)
    report = {"n_samples": 100, "validity": {"structural": 0.97, "compositional": 0.91}, "sun_rate": 0.052}
    (run_dir / "report.json").write_text(json.dumps(report))
    api = RecordingApi()
    files = push(run_dir, "someone/plaid-tiny", api=api, include_base=True)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    upload = api.calls[1][2]
    assert upload["folder_path"] != str(run_dir) and upload["allow_patterns"] == files == upload["staged"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md",
                 "plaid_run.json", "report.json", "base_model/model.safetensors"):  # fmt: skip
        assert name in files, name
    assert not any(f.startswith("dataset") or f.startswith("checkpoint") for f in files)

    card = ModelCard.load(run_dir / "README.md")
    assert card.data.library_name == "peft" and "wyckoff" in card.data.tags and "sft" in card.data.tags
    text = card.text
    assert "base_model" in text and "perov_5/val.csv" in text  # base model and dataset source
    assert "Dataset card" in text and "encoded" in text  # the builder's card is embedded
    assert "| `lora_r` | 8 |" in text and "| `lora_alpha` | 32 |" in text
    assert "| `validity.structural` | 0.97 |" in text and "| `sun_rate` | 0.052 |" in text

    (run_dir / "report.json").unlink()
    push(run_dir, "someone/plaid-tiny", api=RecordingApi())
    assert "No evaluation report" in ModelCard.load(run_dir / "README.md").text


def test_merge_matches_adapter_and_warns_for_4bit_training(sft_run, tmp_path, caplog):
    import logging
    import shutil

    from transformers import AutoModelForCausalLM

    from plaid.training.publish import merge

    adapter = tmp_path / "adapter"
    shutil.copytree(sft_run[0], adapter, ignore=shutil.ignore_patterns("dataset"))
    record = json.loads((adapter / "plaid_run.json").read_text())
    record["model_args"]["load_in_4bit"] = True
    (adapter / "plaid_run.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="plaid.training.publish"):
        out = merge(adapter, tmp_path / "merged", dtype="float32")
    assert "4-bit" in caplog.text
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    peft_model, tok = load_for_inference(adapter, device="cpu")
    batch = tok([generation_prompt("wyckoff")], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, peft_model(**batch).logits, atol=1e-5)
