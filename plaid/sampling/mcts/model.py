"""The language-model side of MCTS: next-token candidates of a node and rollouts, on a Hugging Face model.

Every forward pass that produces a next-token distribution counts as one model call (``calls``): one per node
whose children are computed, one per token a rollout samples. The benchmark compares decoders at equal calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from .tree import Child


class LMPolicy:
    """Candidates and rollouts for one prompt. ``cursor`` (a ``constraint.GrammarCursor``) masks every token the
    grammar rejects, in the tree and in rollouts; without it the model's full distribution is used."""

    def __init__(self, model, tokenizer, prompt_ids: Sequence[int], max_new_tokens: int,
                 temperature: float = 1.0, cursor=None):
        self.model = model
        self.tokenizer = tokenizer
        self.prompt_ids = list(prompt_ids)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.cursor = cursor
        self.eos_id = tokenizer.eos_token_id
        self.calls = 0

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _ids(self, context):
        import torch

        return torch.tensor([self.prompt_ids + list(context)], dtype=torch.long, device=self.device)

    def children(self, context: tuple[int, ...], state, width: int) -> list[Child]:
        import torch

        if context and context[-1] == self.eos_id or len(context) >= self.max_new_tokens:
            return []
        with torch.inference_mode():
            logits = self.model(input_ids=self._ids(context)).logits[0, -1].float()
        self.calls += 1
        if self.temperature > 0:
            logits = logits / self.temperature
        allowed = None
        if self.cursor is not None:
            allowed = self.cursor.allowed(state, self.max_new_tokens - len(context) - 1)
            if not allowed:
                return []
            mask = torch.full_like(logits, float("-inf"))
            mask[torch.tensor(list(allowed), device=logits.device)] = 0.0
            logits = logits + mask
        probs = torch.softmax(logits, dim=-1)
        k = min(width, int(torch.isfinite(logits).sum()))
        top = torch.topk(probs, k)
        weights = top.values.double()
        weights = (weights / weights.sum()).tolist()
        ids = top.indices.tolist()
        last = len(context) + 1 >= self.max_new_tokens
        return [
            Child(t, w, allowed.get(t) if allowed is not None else None, t == self.eos_id or last)
            for t, w in zip(ids, weights)
        ]

    def rollout(self, context: tuple[int, ...], state, width: int, seed: int) -> tuple[int, ...]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from ..generate import RowSampler

        budget = self.max_new_tokens - len(context)
        if budget <= 0 or (context and context[-1] == self.eos_id):
            return tuple(context)
        processors = []
        if self.cursor is not None:
            processors.append(self.cursor.processor(state, budget))
        processors.append(RowSampler([seed], self.temperature, width, 1.0))
        tok = self.tokenizer
        config = GenerationConfig(max_new_tokens=budget, do_sample=False, num_beams=1, use_cache=True,
                                  pad_token_id=tok.pad_token_id, eos_token_id=self.eos_id,
                                  bos_token_id=tok.bos_token_id)
        ids = self._ids(context)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                      logits_processor=LogitsProcessorList(processors))
        new = out[0, ids.shape[1]:].tolist()
        if self.eos_id in new:
            new = new[: new.index(self.eos_id) + 1]
        self.calls += len(new)
        return tuple(context) + tuple(new)

    def decode(self, tokens: Sequence[int]) -> tuple[str, bool]:
        """(text, finished with end of sequence) of a completion."""
        finished = bool(tokens) and tokens[-1] == self.eos_id
        ids = [t for t in tokens if t not in (self.eos_id, self.tokenizer.pad_token_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False), finished
