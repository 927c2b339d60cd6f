"""GPU readiness: PLaID-scale QLoRA SFT, KV-cache sampling and batched CHGNet relaxation in one run (<= 8 min).

    benchmarks/gpu/run.sh                      # one H100/H200; prints one JSON summary on stdout
    python benchmarks/gpu/run.py --budget-s 450 --out gpu.json
    python benchmarks/gpu/run.py --smoke       # the same code on CPU with tiny sizes (tests/test_gpu_script.py)

Sections (each timed and guarded: a failing section records its error and the others still run):

- ``model``: a randomly initialised model with LLaMA-2-7B's architecture (LlamaConfig hidden 4096, intermediate
  11008, 32 layers, 32 heads, vocab 32000), built directly in bf16 on the GPU and saved to a temporary directory so
  that training loads it through plaid's own path. No weights are downloaded. The tokenizer is plaid's Wyckoff
  domain tokenizer padded to the model's 32,000 ids with inert filler tokens (the LLaMA-2 tokenizer is not
  available offline); token counts of Wyckoff text are therefore plaid's, not SentencePiece's.
- ``sampling``: ``plaid.sampling.HFBackend`` (KV cache, per-row seeded sampler) on the bf16 model, N samples at
  batch B, unconstrained and grammar-constrained (``make_grammar("wyckoff")``); tokens/s and projected minutes per
  10,000 samples (PLaID reports 88.8 min on an H100). An untrained model never emits EOS unconstrained, so those
  samples run to ``max_new_tokens``; the projection is at the measured mean length, which is printed.
- ``qlora``: ``recipes/configs/llama2-7b/sft_qlora.yaml`` parsed by plaid's recipe parser (NF4, double quant, bf16
  compute, LoRA r=8 alpha=32 dropout 0.05 on q,k,v,o,gate,up,down, activation checkpointing, AdamW), loaded by
  ``plaid.training.model.load_model_for_training``, TRL's SFTTrainer, ``upcast_trainable_adapters``; batch 16 of
  ``--seq-len`` tokens; median step time, tokens/s, peak GPU memory.
- ``relax``: real MP-20 (or Perov-5) validation structures, perturbed (0.1 A sites, +-3 % cell strain), relaxed
  by plaid's batched CHGNet relaxer, and one at a time by ASE FIRE + FrechetCellFilter (the reference path) on the
  first structures until its time share is spent; structures/s of both and the ratio.

``--budget-s`` bounds the whole run: each section gets a share and stops early (recording what it completed).
``--smoke`` runs on CPU: a 2-layer model, a 512-id tokenizer, a few samples and structures, no 4-bit (bitsandbytes'
NF4 needs a GPU here), fp32.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "configs" / "llama2-7b" / "sft_qlora.yaml"
PLAID_H100_MIN_PER_10K = 88.8  # PLaID (Xu et al. 2025): minutes to sample 10,000 structures on one H100

LLAMA2_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)

# full run / smoke run sizes
SIZES = {
    "full": dict(vocab=32000, samples=2048, batch=256, max_new_tokens=256, train_batch=16, seq_len=256,
                 train_steps=12, warmup_steps=2, structures=1000, relax_batch=128, max_steps=200),
    "smoke": dict(vocab=512, samples=4, batch=2, max_new_tokens=96, train_batch=2, seq_len=32,
                  train_steps=3, warmup_steps=1, structures=2, relax_batch=2, max_steps=5),
}
# share of the budget each timed section may use (model building is not capped; it is measured)
SHARES = {"sampling": 0.40, "qlora": 0.25, "relax": 0.35}


def relax_api():
    """The only import of plaid's relaxation code (its public names as of this script)."""
    from plaid.relax import get_relaxer

    return get_relaxer


# ------------------------------------------------------------------------------------------------ helpers


class Clock:
    def __init__(self, budget_s: float):
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def section(name: str, summary: dict, fn, *args):
    """Run one section, recording its result (or error) and wall time in ``summary['sections'][name]``."""
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON summary
            result = fn(*args)
        entry = {"ok": True, **result}
    except Exception as exc:  # noqa: BLE001 - one failing section must not stop the others
        entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        result = None
    entry["seconds"] = time.perf_counter() - start
    summary["sections"][name] = entry
    print(f"[gpu-bench] {name}: {'ok' if entry['ok'] else entry['error']} ({entry['seconds']:.1f} s)",
          file=sys.stderr, flush=True)
    return result


def padded_tokenizer(vocab_size: int):
    """plaid's Wyckoff domain tokenizer with inert filler tokens up to ``vocab_size`` ids."""
    from plaid.tokenizer import build_tokenizer

    tok = build_tokenizer("wyckoff")
    if vocab_size < len(tok):
        raise ValueError(f"vocab_size {vocab_size} < domain tokenizer size {len(tok)}")
    tok.add_tokens([f"<filler{i}>" for i in range(vocab_size - len(tok))])
    return tok


# -------------------------------------------------------------------------------------------------- model


def build_model(ctx: dict) -> dict:
    """Random LLaMA-2-7B-architecture model (bf16, on the device) saved with its tokenizer to ``ctx['model_dir']``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sizes = ctx["sizes"]
    t0 = time.perf_counter()
    tok = padded_tokenizer(sizes["vocab"])
    tokenizer_s = time.perf_counter() - t0
    from plaid.training.model import LOCAL_ARCHITECTURES

    arch = LOCAL_ARCHITECTURES["plaid-tiny-llama"] if ctx["smoke"] else LLAMA2_7B
    config = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        **arch,
    )
    dtype = torch.bfloat16 if ctx["cuda"] else torch.float32
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(ctx["device"]):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    sync()
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.save_pretrained(ctx["model_dir"])
    tok.save_pretrained(ctx["model_dir"])
    save_s = time.perf_counter() - t0
    ctx["model"], ctx["tokenizer"] = model, tok
    return {
        "architecture": "LLaMA-2-7B (random init)" if not ctx["smoke"] else "2-layer LLaMA (smoke)",
        "config": {k: getattr(config, k) for k in ("vocab_size", *arch)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(dtype).replace("torch.", ""),
        "tokenizer": f"plaid wyckoff domain tokenizer padded to {len(tok)} ids",
        "tokenizer_s": tokenizer_s,
        "init_s": init_s,
        "save_s": save_s,
    }


# ----------------------------------------------------------------------------------------------- sampling


def run_sampling(ctx: dict, clock: Clock, budget_s: float) -> dict:
    from plaid.prompts import generation_prompt
    from plaid.representations import get
    from plaid.sampling import HFBackend, SamplingParams, make_grammar

    sizes = ctx["sizes"]
    backend = HFBackend(ctx["model"], ctx["tokenizer"], ctx["model_dir"])
    rep = get("wyckoff")
    prompt = generation_prompt("wyckoff")
    grammar = make_grammar("wyckoff", {}, max_atoms=20)
    params = SamplingParams(max_new_tokens=sizes["max_new_tokens"])
    t0 = time.perf_counter()
    backend.trie  # noqa: B018 - the vocabulary trie of the constrained decoder, built once per tokenizer
    backend.generate([prompt] * 2, [0, 1], SamplingParams(max_new_tokens=4))  # CUDA / kernel warm-up
    warmup_s = time.perf_counter() - t0
    out = {"samples_requested": sizes["samples"], "batch_size": sizes["batch"],
           "max_new_tokens": sizes["max_new_tokens"], "warmup_s": warmup_s,
           "plaid_paper_min_per_10k_h100": PLAID_H100_MIN_PER_10K}
    deadline = time.perf_counter() + budget_s - warmup_s
    modes = ("unconstrained", "constrained")
    for k, mode in enumerate(modes):
        mode_deadline = time.perf_counter() + (deadline - time.perf_counter()) / (len(modes) - k)
        done, tokens, parsed, elapsed, grammar_s, batch_s = 0, 0, 0, 0.0, 0.0, []
        while done < sizes["samples"]:
            n = min(sizes["batch"], sizes["samples"] - done)
            seeds = list(range(done, done + n))
            sync()
            t0 = time.perf_counter()
            gens = backend.generate([prompt] * n, seeds, params, [grammar] * n if mode == "constrained" else None)
            sync()
            dt = time.perf_counter() - t0
            batch_s.append(dt)
            elapsed += dt
            grammar_s += backend.last_constraint_seconds
            done += n
            tokens += sum(g.num_tokens for g in gens)
            for g in gens:
                try:
                    rep.decode(g.text)
                    parsed += 1
                except Exception:  # noqa: BLE001 - unparseable text is counted, not raised
                    pass
            if time.perf_counter() + statistics.median(batch_s) > mode_deadline:
                break  # the next batch would overrun this mode's share of the budget
        per_sample_s = elapsed / done
        out[mode] = {
            "samples": done,
            "seconds": elapsed,
            "generated_tokens": tokens,
            "mean_tokens_per_sample": tokens / done,
            "tokens_per_s": tokens / elapsed,
            "samples_per_s": done / elapsed,
            "projected_min_per_10k": per_sample_s * 10_000 / 60,
            "parse_rate": parsed / done,
            "grammar_seconds": grammar_s,
            "stopped_early": done < sizes["samples"],
        }
    return out


# -------------------------------------------------------------------------------------------------- QLoRA


def run_qlora(ctx: dict, clock: Clock, budget_s: float) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from plaid.training.args import parse_recipe_config
    from plaid.training.model import load_model_for_training, load_tokenizer
    from plaid.training.run import upcast_trainable_adapters

    sizes = ctx["sizes"]
    steps = sizes["warmup_steps"] + sizes["train_steps"]
    overrides = [
        "--model_name_or_path", ctx["model_dir"],
        "--output_dir", str(Path(ctx["tmp"]) / "sft"),
        "--per_device_train_batch_size", str(sizes["train_batch"]),
        "--max_length", str(sizes["seq_len"]),
        "--max_steps", str(steps),
        "--save_strategy", "no",
        "--eval_strategy", "no",
        "--logging_steps", "1000",
        "--completion_only_loss", "false",
        "--dataloader_num_workers", "0",
    ]
    if not ctx["cuda"]:  # bitsandbytes NF4 and bf16 autocast are GPU paths here: same code, fp32, unquantized
        overrides += ["--load_in_4bit", "false", "--use_bnb_nested_quant", "false", "--bf16", "false",
                      "--dtype", "float32", "--use_cpu", "true"]
    script_args, training_args, model_args, plaid_args = parse_recipe_config("sft", RECIPE, *overrides)
    tokenizer = load_tokenizer(ctx["model_dir"])
    if ctx["cuda"]:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, peft_config = load_model_for_training(model_args, plaid_args, training_args, tokenizer)
    load_s = time.perf_counter() - t0
    quantized = bool(getattr(model, "is_loaded_in_4bit", False))

    # fixed-length rows of random in-vocabulary domain tokens (the step cost depends on the length, not the text)
    gen = torch.Generator().manual_seed(0)
    n_rows = sizes["train_batch"] * steps
    n_domain = sum(1 for t in tokenizer.get_vocab() if not t.startswith("<filler"))  # ids 4.. are text pieces
    ids = torch.randint(4, n_domain, (n_rows, sizes["seq_len"]), generator=gen).tolist()
    dataset = Dataset.from_dict({"input_ids": ids})

    step_s: list[float] = []
    deadline = time.perf_counter() + budget_s - load_s

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            step_s.append(time.perf_counter() - self.t0)
            if len(step_s) > sizes["warmup_steps"] and time.perf_counter() + statistics.median(step_s) > deadline:
                control.should_training_stop = True

    trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[StepTimer()])
    upcast = upcast_trainable_adapters(trainer.model)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    trainable_dtypes = sorted({str(p.dtype) for p in trainer.model.parameters() if p.requires_grad})
    result = trainer.train()
    timed = step_s[sizes["warmup_steps"]:] or step_s
    median = statistics.median(timed)
    tokens_per_step = sizes["train_batch"] * sizes["seq_len"]
    out = {
        "recipe": str(RECIPE.relative_to(ROOT)),
        "quantized_4bit": quantized,
        "quant_type": model_args.bnb_4bit_quant_type if quantized else None,
        "double_quant": bool(model_args.use_bnb_nested_quant) if quantized else None,
        "compute_dtype": model_args.dtype,
        "lora": {"r": model_args.lora_r, "alpha": model_args.lora_alpha, "dropout": model_args.lora_dropout,
                 "target_modules": list(model_args.lora_target_modules)},
        "activation_checkpointing": bool(training_args.activation_checkpointing),
        "batch_size": sizes["train_batch"],
        "seq_len": sizes["seq_len"],
        "load_s": load_s,
        "adapter_tensors_upcast_fp32": upcast,
        "trainable_parameters": trainable,
        "trainable_dtypes": trainable_dtypes,
        "steps_run": len(step_s),
        "steps_timed": len(timed),
        "median_step_s": median,
        "tokens_per_s": tokens_per_step / median,
        "train_loss": float(result.training_loss),
    }
    if ctx["cuda"]:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    del trainer, model
    return out


# -------------------------------------------------------------------------------------------------- relax


def perturbed_structures(n: int, seed: int = 0):
    """The first ``n`` MP-20 validation structures (Perov-5 if MP-20 is absent), perturbed: every site moved 0.1 A in
    a random direction and the cell strained by up to 3 % per component."""
    import numpy as np
    import pandas as pd
    from pymatgen.core import Lattice, Structure

    from plaid.paths import data_dir

    for name in ("mp_20", "perov_5"):
        path = data_dir() / name / "val.csv"
        if path.exists():
            break
    else:
        raise FileNotFoundError(f"no mp_20 or perov_5 val.csv under {data_dir()}")
    cifs = pd.read_csv(path, usecols=["cif"], nrows=n)["cif"].tolist()
    rng = np.random.default_rng(seed)
    out = []
    for cif in cifs:
        s = Structure.from_str(cif, fmt="cif")
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        s = Structure(Lattice(s.lattice.matrix @ strain), s.species, s.frac_coords)
        vec = rng.normal(size=(len(s), 3))
        vec *= 0.1 / np.linalg.norm(vec, axis=1, keepdims=True)
        for i, v in enumerate(vec):
            s.translate_sites([i], v, frac_coords=False, to_unit_cell=True)
        out.append(s)
    return name, out


def run_relax(ctx: dict, clock: Clock, budget_s: float) -> dict:
    import torch

    get_relaxer = relax_api()
    sizes = ctx["sizes"]
    start = time.perf_counter()
    dataset, structures = perturbed_structures(sizes["structures"])
    relaxer = get_relaxer("chgnet", fmax=0.1, max_steps=sizes["max_steps"], batch_size=sizes["relax_batch"],
                          device=ctx["device"])
    setup_s = time.perf_counter() - start
    if ctx["cuda"]:
        torch.cuda.reset_peak_memory_stats()
    # batched, in chunks of a few relaxer batches so that a slow run stops inside its share (60 % of the section)
    batched, batched_s, chunk = [], 0.0, 2 * sizes["relax_batch"]
    batched_deadline = start + 0.6 * budget_s
    for lo in range(0, len(structures), chunk):
        sync()
        t0 = time.perf_counter()
        part = structures[lo : lo + chunk]
        batched += relaxer.relax(part, ids=[str(i) for i in range(lo, lo + len(part))], progress=False,
                                 batched=True)
        sync()
        dt = time.perf_counter() - t0
        batched_s += dt
        if time.perf_counter() + dt > batched_deadline:
            break
    out = {
        "dataset": dataset,
        "perturbation": "0.1 A per site, cell strain U(-3%, 3%) per component",
        "relaxer": relaxer.describe(),
        "device": ctx["device"],
        "setup_s": setup_s,
        "structures_requested": len(structures),
        "batched": {"structures": len(batched), "seconds": batched_s, "structures_per_s": len(batched) / batched_s,
                    "statuses": _counts(r.status for r in batched),
                    "fire_steps": int(sum(r.n_steps for r in batched))},
    }
    if ctx["cuda"]:
        out["batched"]["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    # ASE one at a time on the first structures, within what is left of this section's share (at least one)
    ase_deadline = start + budget_s
    results, ase_s, step_s = [], 0.0, []
    for i, s in enumerate(structures):
        t0 = time.perf_counter()
        results += relaxer.relax([s], ids=[str(i)], progress=False, batched=False)
        dt = time.perf_counter() - t0
        ase_s += dt
        step_s.append(dt)
        if time.perf_counter() + statistics.median(step_s) > ase_deadline:
            break
    k = len(results)
    same = batched[:k]
    diff = [abs(a.energy_per_atom - b.energy_per_atom) for a, b in zip(same, results)]
    diff = [d for d in diff if math.isfinite(d)]
    out["ase_sequential"] = {"structures": k, "seconds": ase_s, "structures_per_s": k / ase_s,
                             "statuses": _counts(r.status for r in results),
                             "fire_steps": int(sum(r.n_steps for r in results))}
    out["speedup_batched_vs_ase"] = out["batched"]["structures_per_s"] / out["ase_sequential"]["structures_per_s"]
    if diff:
        out["energy_within_10meV_of_ase"] = sum(d <= 0.010 for d in diff) / len(diff)
    return out


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (for the test suite)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="wall-clock budget for the whole run (default 450 s full, 40 s smoke)")
    parser.add_argument("--sections", default="sampling,qlora,relax", help="comma-separated subset to run")
    parser.add_argument("--samples", type=int, help="override the number of samples per mode")
    parser.add_argument("--structures", type=int, help="override the number of structures to relax")
    parser.add_argument("--seq-len", type=int, help="override the SFT sequence length")
    parser.add_argument("--out", help="also write the JSON summary to this file")
    args = parser.parse_args(argv)

    os.environ.setdefault("PLAID_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    sizes = dict(SIZES["smoke" if args.smoke else "full"])
    for key in ("samples", "structures", "seq_len"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    budget = args.budget_s if args.budget_s is not None else (40.0 if args.smoke else 450.0)
    clock = Clock(budget)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    summary: dict = {
        "smoke": bool(args.smoke),
        "device": "cuda" if cuda else "cpu",
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "budget_s": budget,
        "sizes": sizes,
        "sections": {},
    }
    if not args.smoke and not cuda:
        summary["warning"] = "no CUDA device: the full sizes on CPU will not finish in the budget; use --smoke"
    if args.smoke:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="plaid-gpu-bench-") as tmp:
        ctx = {"smoke": args.smoke, "cuda": cuda, "device": "cuda" if cuda else "cpu", "sizes": sizes,
               "tmp": tmp, "model_dir": str(Path(tmp) / "model")}
        if {"sampling", "qlora"} & set(wanted):
            section("model", summary, build_model, ctx)
        share_total = sum(SHARES[s] for s in wanted if s in SHARES)
        order = [s for s in ("sampling", "qlora", "relax") if s in wanted]
        for k, name in enumerate(order):
            # this section's share of what is left (unused time of earlier sections carries over)
            remaining_share = sum(SHARES[s] for s in order[k:]) or share_total
            section_budget = max(clock.left(), 0.0) * SHARES[name] / remaining_share
            if name in ("sampling", "qlora") and not summary["sections"]["model"]["ok"]:
                summary["sections"][name] = {"ok": False, "error": "model section failed", "seconds": 0.0}
                continue
            if name != "sampling" and ctx.pop("model", None) is not None:  # free the bf16 sampling model
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
            fn = {"sampling": run_sampling, "qlora": run_qlora, "relax": run_relax}[name]
            section(name, summary, fn, ctx, clock, section_budget)
            if args.out:  # what is done so far survives a run killed later (run.sh's hard limit)
                Path(args.out).write_text(json.dumps({**summary, "partial": True}, indent=2, default=str))
    summary["total_s"] = clock.elapsed()
    summary["within_budget"] = summary["total_s"] <= budget
    text = json.dumps(summary, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if all(s.get("ok") for s in summary["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
