"""Published adapter layouts: a PEFT adapter directory (adapter_config.json + adapter_model.safetensors, no
tokenizer) whose base_model_name_or_path is a Hub id, as PLaID and crystal-text-llm publish them on LLaMA-2 and
Qwen2.5 bases. The bases here are tiny LLaMA and Qwen2 models built in the test (tokenizer trained with
``tokenizers``) and saved into a Hugging Face cache layout under a temporary HF_HUB_CACHE, so the adapter's Hub id
resolves offline as it does for a user who has the base cached. The ids are made up; nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plaid.cli import main
from plaid.errors import EXIT_USAGE
from plaid.prompts import generation_prompt

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = [
    "Ba1 Ti1 O3\n221\n4.00 4.00 4.00\n90.00 90.00 90.00\nBa 0.500 0.500 0.500 1b\nTi 0.000 0.000 0.000 1a\n",
    "Sr1 Ti1 O3\n221\n3.90 3.90 3.90\n90.00 90.00 90.00\nO 0.000 0.500 0.500 3c\n",
    generation_prompt("wyckoff"),
]


def _tokenizer(arch: str):
    """A small byte-level BPE: LLaMA-2's special tokens and no pad token, or Qwen2's <|endoftext|> as pad/eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>"] if arch == "llama" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>" if arch == "llama" else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS, trainer)
    if arch == "llama":
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def _base_model(arch: str, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256,
                  eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    if arch == "llama":  # LLaMA-2: untied embeddings, no pad token
        return LlamaForCausalLM(LlamaConfig(num_key_value_heads=4, bos_token_id=tokenizer.bos_token_id,
                                            tie_word_embeddings=False, **common))  # fmt: skip
    return Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=2, tie_word_embeddings=True, **common))  # Qwen2.5-0.5B


def _cache_base(cache: Path, repo_id: str, model, tokenizer) -> Path:
    """Save model + tokenizer as the Hugging Face cache does for a downloaded repo (refs/main -> snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _publish_adapter(out: Path, base_model, repo_id: str, tokenizer=None, embeddings: bool = False):
    """A LoRA adapter with non-zero B (so it changes the logits), saved as a published adapter: only the adapter
    files (+ the tokenizer when given), its base recorded as the Hub id."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(base_model, lora)
    model.save_pretrained(out, save_embedding_layers=embeddings)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = repo_id
    (out / "adapter_config.json").write_text(json.dumps(config))
    return model.eval()


def _logits(model, tokenizer, text=TEXTS[0]):
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"]).logits.float()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def published(request, tmp_path_factory):
    """(arch, HF_HUB_CACHE, base snapshot dir, adapter dir, in-memory PEFT model, tokenizer, repo id)."""
    arch = request.param
    root = tmp_path_factory.mktemp(f"published_{arch}")
    repo_id = f"tiny-org/tiny-{arch}"
    tokenizer = _tokenizer(arch)
    snapshot = _cache_base(root / "hub", repo_id, _base_model(arch, tokenizer), tokenizer)
    adapter = root / "adapter"
    peft_model = _publish_adapter(adapter, _base_model(arch, tokenizer), repo_id)
    return arch, root / "hub", snapshot, adapter, peft_model, tokenizer, repo_id


def test_published_layout_has_no_tokenizer_and_a_hub_base(published):
    _, _, _, adapter, *_ = published
    assert sorted(p.name for p in adapter.iterdir()) == ["README.md", "adapter_config.json",
                                                        "adapter_model.safetensors"]  # fmt: skip


@pytest.mark.timeout(900)  # one subprocess: 8 s of CPU, but 8+ minutes of wall time on a loaded 2-core machine
def test_hub_id_base_resolves_from_the_cache_offline(published):
    """plaid sample --model ADAPTER, HF_HUB_OFFLINE=1 and the base only in the (temporary) cache: the base and its
    tokenizer load from the cache snapshot and sampling writes every record."""
    arch, cache, _, adapter, _, _, repo_id = published
    out = adapter.parent / "samples.jsonl"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "plaid.cli", "sample", "--model", str(adapter), "--representation", "wyckoff",
         "--num-samples", "2", "--batch-size", "2", "--max-new-tokens", "6", "--device", "cpu",
         "--dtype", "bfloat16", "--out", str(out), "--no-progress"],  # fmt: skip
        env=env, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(r["prompt"] == generation_prompt("wyckoff") for r in records)
    assert all(0 < r["num_tokens"] <= 6 for r in records)


def test_hub_id_base_not_in_the_cache_is_a_usage_error(published, tmp_path, capsys):
    """The same adapter where its base is not cached (this process's cache): one line naming the id, the cache and
    --base-model, before anything loads."""
    _, _, _, adapter, _, _, repo_id = published
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--model", str(adapter), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert repo_id in err and "Hugging Face cache" in err and "--base-model" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loaded_adapter_matches_the_trained_one(published, dtype):
    """load_for_inference(adapter, base_model=DIR) gives the logits of the in-memory PEFT model (fp32 exactly; bf16
    within bf16 rounding), not those of the bare base; the tokenizer is the base's, with a pad token."""
    from transformers import AutoModelForCausalLM

    from plaid.training.model import load_for_inference

    arch, _, snapshot, adapter, peft_model, tokenizer, _ = published
    model, tok = load_for_inference(adapter, device="cpu", dtype=dtype, base_model=str(snapshot))
    assert next(model.parameters()).dtype == dtype and tok.padding_side == "left" and tok.pad_token is not None
    assert tok.pad_token == ("<unk>" if arch == "llama" else "<|endoftext|>")
    # the same token ids for both (transformers may load a saved tokenizer as the architecture's own class)
    expected = _logits(peft_model, tok)
    got = _logits(model, tok)
    tol = 1e-5 if dtype == torch.float32 else 0.05 * expected.abs().max().item()
    assert torch.allclose(got, expected, atol=tol), (got - expected).abs().max()
    bare = _logits(AutoModelForCausalLM.from_pretrained(snapshot), tok)
    assert (bare - expected).abs().max() > 10 * (1e-5 if dtype == torch.float32 else tol / 10)


def test_base_model_flag_overrides_a_base_that_lives_elsewhere(published, tmp_path, capsys):
    """The adapter records an id that is nowhere (not cached): --base-model DIR samples from that base."""
    _, _, snapshot, adapter, *_ = published
    moved = tmp_path / "adapter"
    moved.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (moved / name).write_bytes((adapter / name).read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "tiny-org/not-downloaded"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    out = tmp_path / "s.jsonl"
    argv = ["sample", "--model", str(moved), "--num-samples", "1", "--max-new-tokens", "4", "--device", "cpu",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == EXIT_USAGE
    assert "tiny-org/not-downloaded" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--base-model", str(snapshot)]) == 0, capsys.readouterr().err[-2000:]
    assert len(out.read_text().splitlines()) == 1
    assert main([*argv, "--base-model", str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert "--base-model" in capsys.readouterr().err


def test_adapter_trained_with_an_added_pad_token(tmp_path):
    """crystal-text-llm adds a [PAD] token to LLaMA-2 and resizes the embeddings before LoRA: the published adapter
    then holds its tokenizer and the resized embeddings. Loading resizes the base to match and gives the trained
    model's logits, including for the new token."""
    from plaid.training.model import adapter_vocab_size, load_for_inference

    tokenizer = _tokenizer("llama")
    base = _base_model("llama", tokenizer)
    snapshot = tmp_path / "base"
    base.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    trained = _base_model("llama", _tokenizer("llama"))
    trained.resize_token_embeddings(len(tokenizer))
    adapter = tmp_path / "adapter"
    peft_model = _publish_adapter(adapter, trained, "tiny-org/tiny-llama", tokenizer=tokenizer, embeddings=True)
    assert adapter_vocab_size(adapter) == len(tokenizer) == base.config.vocab_size + 1
    model, tok = load_for_inference(adapter, device="cpu", base_model=str(snapshot))
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) and tok.pad_token == "[PAD]"
    text = TEXTS[0] + "[PAD]"
    assert torch.allclose(_logits(model, tok, text), _logits(peft_model, tokenizer, text), atol=1e-5)


def test_4bit_loading_builds_plaids_qlora_config_and_needs_cuda(published, tmp_path, capsys):
    """The 4-bit path's quantization config (bitsandbytes NF4, double quantization, compute in the given dtype,
    every module on the device); on a CPU machine --load-in-4bit is a usage error before anything loads."""
    from plaid.training.model import inference_load_kwargs

    kwargs = inference_load_kwargs("cuda:0", torch.bfloat16, load_in_4bit=True)
    q = kwargs["quantization_config"]
    assert q.load_in_4bit and not q.load_in_8bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_use_double_quant and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert kwargs["device_map"] == {"": "cuda:0"} and kwargs["dtype"] == torch.bfloat16
    assert inference_load_kwargs("cpu", torch.float32) == {"dtype": torch.float32}
    if torch.cuda.is_available():
        pytest.skip("the CPU refusal is checked on CPU machines")
    adapter = published[3]
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--model", str(adapter), "--load-in-4bit", "--out", str(out)]) == EXIT_USAGE
    assert "CUDA" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="4-bit loading needs bitsandbytes on a CUDA device")
def test_4bit_loading_on_cuda(published):
    """On a GPU: the base loads in NF4 (bitsandbytes Linear4bit layers), the adapter on top, and its logits stay
    close to the bf16 model's (4-bit rounding of a random tiny base: loose bound)."""
    from plaid.training.model import load_for_inference

    _, _, snapshot, adapter, _, _, _ = published
    model, tok = load_for_inference(adapter, device="cuda", dtype=torch.bfloat16, load_in_4bit=True,
                                    base_model=str(snapshot))  # fmt: skip
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    reference, _ = load_for_inference(adapter, device="cuda", dtype=torch.bfloat16, base_model=str(snapshot))
    batch = tok([TEXTS[0]], return_tensors="pt").to("cuda")
    with torch.no_grad():
        got = model(input_ids=batch["input_ids"]).logits.float()
        expected = reference(input_ids=batch["input_ids"]).logits.float()
    assert torch.isfinite(got).all()
    assert (got - expected).abs().max() < 0.5 * expected.abs().max()
