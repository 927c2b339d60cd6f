"""Generation backends: Hugging Face ``generate`` (default) and vLLM (optional extra).

Both take a batch of prompts with one seed per row and return one ``Generation`` per row. With the HF backend each
row is sampled from its own ``torch.Generator`` (``RowSampler``: temperature, top-k, top-p, then a draw), so a
sample depends on its (prompt, seed) and not on which other prompts share its batch; ``generate`` itself runs
greedy over the sampler's one-hot scores, with left padding and the KV cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = {"wyckoff": 512, "coords": 1024, "cif": 2048}
INFILL_MAX_NEW_TOKENS = 8


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None  # None: DEFAULT_MAX_NEW_TOKENS[representation]

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 = off)")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be positive")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generation:
    text: str
    num_tokens: int
    finished: bool  # ended with EOS (False: stopped at max_new_tokens)
    constraint_failed: bool = False


class RowSampler:
    """Logits processor that samples every row from its own random stream and returns scores whose argmax is the
    sampled token (greedy ``generate`` then emits it). Temperature 0 is greedy.

    Each row draws one uniform number per draw from ``random.Random(seed)`` and inverts the cumulative
    distribution (float64), so a sample depends only on its seed and its own probabilities, on any device.

    ``constraint`` (a ``GrammarLogitsProcessor`` not in the processor list): sample first, then check. Each row's
    token is drawn without the mask and checked by the grammar; only rejected rows are masked and drawn again (a
    second uniform number), which gives exactly the masked distribution (``plaid.sampling.constrained``). Only for
    plain temperature or greedy sampling: with top-k or top-p, which truncate after the mask, put the constraint
    in the processor list before the sampler instead."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int, top_p: float, device=None,
                 constraint=None):
        import random

        if constraint is not None and (top_k or top_p < 1.0):
            raise ValueError("sample-then-check needs top_k=0 and top_p=1 (the truncation depends on the mask)")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rngs = [random.Random(int(s)) for s in seeds]
        self.constraint = constraint

    def _warp(self, scores):
        import torch

        logits = scores.float() / self.temperature
        if self.top_k and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - self.top_p)
            remove[:, -1] = False  # keep at least the most likely token
            logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        return logits

    def _draw(self, scores, rows: Sequence[int]):
        """One token per row of ``scores`` (rows ``rows`` of the batch, whose streams are used)."""
        import torch

        if self.temperature == 0:
            return scores.argmax(dim=-1, keepdim=True)
        cdf = self._warp(scores).softmax(dim=-1).double().cumsum(dim=-1)
        u = torch.tensor([self.rngs[i].random() for i in rows], dtype=torch.float64, device=scores.device)
        target = (u * cdf[:, -1]).unsqueeze(1)
        return torch.searchsorted(cdf, target, right=True).clamp_(max=scores.shape[-1] - 1)

    def __call__(self, input_ids, scores):
        import torch

        if self.constraint is None and self.temperature == 0:
            return scores
        if self.constraint is not None:
            self.constraint.begin(input_ids)
        choice = self._draw(scores, range(scores.shape[0]))
        if self.constraint is not None:
            bad = self.constraint.check_sampled(choice[:, 0].tolist())
            if bad:
                index = torch.tensor(bad, dtype=torch.long, device=scores.device)
                masked = self.constraint.masked(scores[index], bad)
                choice[index] = self._draw(masked, bad)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, choice, 0.0)


class HFBackend:
    """Batched generation with a transformers model (adapter, merged or from-scratch; see load_for_inference)."""

    name = "hf"

    def __init__(self, model, tokenizer, model_path: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.model_path = model_path
        self.tokenizer.padding_side = "left"
        self._trie = None
        self.last_constraint_seconds = 0.0  # time the grammar took in the last generate call
        self.last_constraint_checks = (0, 0)  # (row-steps checked first, of which rejected) in the last call
        self.sample_then_check = True  # constrained, top_k=0, top_p=1: check the sampled token, mask on rejection

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        merge: bool = False,
        load_in_4bit: bool = False,
        base_model: str | None = None,
        dtype=None,
    ):
        from ..training.model import load_for_inference

        model, tokenizer = load_for_inference(
            path, device=device, dtype=dtype, merge=merge, load_in_4bit=load_in_4bit, base_model=base_model
        )
        return cls(model, tokenizer, str(path))

    @property
    def trie(self):
        if self._trie is None:
            from .constrained import TokenTrie

            self._trie = TokenTrie(self.tokenizer)
        return self._trie

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        params: SamplingParams,
        grammars: Sequence | None = None,
    ) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        tok = self.tokenizer
        enc = tok(list(prompts), return_tensors="pt", padding=True)
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        processors = []
        constraint = None
        check_first = False
        if grammars is not None:
            from .constrained import GrammarLogitsProcessor

            constraint = GrammarLogitsProcessor(grammars, self.trie, params.max_new_tokens)
            check_first = self.sample_then_check and not params.top_k and params.top_p == 1.0
            if not check_first:
                processors.append(constraint)
        processors.append(
            RowSampler(
                seeds, params.temperature, params.top_k, params.top_p, self.device,
                constraint=constraint if check_first else None,
            )
        )
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        )
        with torch.inference_mode():
            out = self.model.generate(
                **enc, generation_config=config, logits_processor=LogitsProcessorList(processors)
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        failed = set(constraint.failures) if constraint else set()
        self.last_constraint_seconds = constraint.seconds if constraint else 0.0
        self.last_constraint_checks = (constraint.checked, constraint.rejected) if constraint else (0, 0)
        results = []
        for i, ids in enumerate(new):
            finished = tok.eos_token_id in ids
            if finished:
                ids = ids[: ids.index(tok.eos_token_id)]
            ids = [t for t in ids if t != tok.pad_token_id]
            text = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            results.append(Generation(text, len(ids) + int(finished), finished, i in failed))
        return results


def _vllm_version() -> str | None:
    """The installed vLLM version, read from the package metadata (nothing is imported); None if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm")
    except PackageNotFoundError:
        return None


def check_vllm_constrained() -> None:
    """Raise ValueError unless the installed vLLM accepts per-request logits processors (grammar constraints).

    vLLM < 0.8 does; 0.8 and 0.9 only on the V0 engine (``VLLM_USE_V1=0``); the V1 engine (default from 0.8,
    the only one from 0.10) rejects them when generating. Called before any model is loaded."""
    import os

    from packaging.version import Version

    found = _vllm_version()
    if found is None:
        raise ValueError("the vllm backend needs vLLM: pip install 'plaid[vllm]' (or use --backend hf)")
    v = Version(found)
    if v < Version("0.8") or (v < Version("0.10") and os.environ.get("VLLM_USE_V1") == "0"):
        return
    raise ValueError(
        f"--constrained with --backend vllm needs per-request logits processors, which vLLM {found} (V1 engine) "
        "rejects: use --backend hf for constrained decoding, or install vllm<0.8 (0.8/0.9 work with VLLM_USE_V1=0)"
    )


class VLLMBackend:
    """vLLM engine (``pip install plaid[vllm]``): a LoRA adapter is served without merging, with
    ``max_lora_rank`` read from its adapter_config.json."""

    name = "vllm"

    def __init__(self, path: str | Path, base_model: str | None = None, **engine_kwargs):
        try:
            import vllm
        except ImportError:
            raise ImportError(
                "the vllm backend needs vLLM: pip install 'plaid[vllm]' (or use --backend hf)"
            ) from None
        from ..training.model import adapter_base, is_adapter_dir

        self._vllm = vllm
        self.model_path = str(path)
        self.lora = None
        if is_adapter_dir(path):
            import json

            config = json.loads((Path(path) / "adapter_config.json").read_text())
            base = adapter_base(path, base_model)
            rank = int(config.get("r", 16))
            self.llm = vllm.LLM(
                model=base,
                tokenizer=str(path) if (Path(path) / "tokenizer_config.json").exists() else base,
                enable_lora=True,
                max_lora_rank=_lora_rank(rank),
                **engine_kwargs,
            )
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("plaid", 1, str(path))
        else:
            self.llm = vllm.LLM(model=str(path), **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._trie = None

    def generate(self, prompts, seeds, params: SamplingParams, grammars=None) -> list[Generation]:
        sampling = []
        for i, seed in enumerate(seeds):
            kwargs = dict(
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or -1,
                max_tokens=params.max_new_tokens,
                seed=int(seed),
            )
            if grammars is not None:
                from .constrained import TokenTrie, VLLMGrammarProcessor

                if i == 0:
                    check_vllm_constrained()
                if self._trie is None:
                    self._trie = TokenTrie(self.tokenizer)
                kwargs["logits_processors"] = [
                    VLLMGrammarProcessor(grammars[i], self._trie, params.max_new_tokens)
                ]
            try:
                sampling.append(self._vllm.SamplingParams(**kwargs))
            except TypeError as exc:
                raise RuntimeError(
                    "this vLLM version does not accept per-request logits processors; use --backend hf for "
                    "--constrained"
                ) from exc
        outputs = self.llm.generate(list(prompts), sampling, lora_request=self.lora, use_tqdm=False)
        results = []
        for out in outputs:
            o = out.outputs[0]
            results.append(Generation(o.text, len(o.token_ids), o.finish_reason == "stop"))
        return results


def _lora_rank(rank: int) -> int:
    """vLLM accepts max_lora_rank from a fixed set; the smallest one >= the adapter's rank."""
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank


def load_backend(
    path: str | Path,
    backend: str = "hf",
    device: str | None = None,
    merge: bool = False,
    load_in_4bit: bool = False,
    base_model: str | None = None,
    dtype=None,
):
    """The generation backend for a model directory; ``base_model`` overrides an adapter's recorded base."""
    if backend == "hf":
        return HFBackend.load(
            path, device=device, merge=merge, load_in_4bit=load_in_4bit, base_model=base_model, dtype=dtype
        )
    if backend == "vllm":
        return VLLMBackend(path, base_model=base_model, **({"dtype": dtype} if dtype else {}))
    raise ValueError(f"unknown backend {backend!r}; choose hf or vllm")


def timed_generate(backend, prompts, seeds, params, grammars=None) -> tuple[list[Generation], float]:
    start = time.perf_counter()
    result = backend.generate(prompts, seeds, params, grammars)
    return result, time.perf_counter() - start
