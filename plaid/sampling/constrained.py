"""Grammar-constrained decoding: a Hugging Face ``LogitsProcessor`` that masks every token that would make the text
stop being a prefix of a decodable crystal (``plaid.sampling.grammar``), and the same check as a vLLM per-request
logits processor.

Each step, every row walks a character trie of the vocabulary from its parse state, trying only the characters the
state can accept next; a token is allowed when its whole string is accepted and the completion it leaves fits in
the tokens still available (``State.u <= budget``). The states reached are kept, so the sampled token's state is
never recomputed. The end-of-sequence token is allowed only when the text is complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from transformers import LogitsProcessor

from .grammar import CoordsGrammar, ElementGrammar, PlaidWyckoffGrammar, State, WyckoffGrammar

logger = logging.getLogger(__name__)

CONSTRAINED_REPRESENTATIONS = ("wyckoff", "wyckoff-plaid", "coords")


def token_strings(tokenizer) -> list[str | None]:
    """The text each token id adds when it follows other text (None for special tokens), robust to
    SentencePiece word-boundary markers and byte-level BPE."""
    special = set(tokenizer.all_special_ids)
    ref_ids = tokenizer.encode("0", add_special_tokens=False)
    ref = tokenizer.decode(ref_ids, clean_up_tokenization_spaces=False)
    out: list[str | None] = []
    for i in range(len(tokenizer)):
        if i in special:
            out.append(None)
            continue
        text = tokenizer.decode(ref_ids + [i], clean_up_tokenization_spaces=False)
        out.append(text[len(ref) :] if text.startswith(ref) and len(text) > len(ref) else None)
    return out


class _Node:
    __slots__ = ("children", "keys", "ids")

    def __init__(self):
        self.children: dict[str, _Node] = {}
        self.keys: frozenset[str] = frozenset()
        self.ids: list[int] = []


class TokenTrie:
    """Character trie of a tokenizer's vocabulary (built once per tokenizer, shared by all processors)."""

    def __init__(self, tokenizer):
        self.strings = token_strings(tokenizer)
        self.eos_ids = [tokenizer.eos_token_id]
        self.vocab_size = len(self.strings)
        self.root = _Node()
        for i, s in enumerate(self.strings):
            if not s:
                continue
            node = self.root
            for ch in s:
                node = node.children.setdefault(ch, _Node())
            node.ids.append(i)
        stack = [self.root]
        while stack:
            node = stack.pop()
            node.keys = frozenset(node.children)
            stack.extend(node.children.values())
        missing = sorted(set("0123456789. \n") - self.root.keys)
        if missing:
            logger.warning(
                "vocabulary has no single-character token for %r: constrained budget may not hold", missing
            )

    def allowed(self, grammar, state: State, budget: int) -> dict[int, State]:
        """token id -> state after it, for every token the grammar accepts from ``state`` within ``budget``."""
        out: dict[int, State] = {}
        stack = [(self.root, state)]
        while stack:
            node, st = stack.pop()
            for ch in grammar.next_chars(st) & node.keys:
                nxt = grammar.step(st, ch)
                if nxt is None:
                    continue
                child = node.children[ch]
                if child.ids and nxt.u <= budget:
                    for i in child.ids:
                        out[i] = nxt
                if child.children:
                    stack.append((child, nxt))
        return out


def make_grammar(representation: str, conditions: Mapping | None = None, task: str = "generate", **options):
    """The grammar for ``representation`` under normalized ``conditions`` (formula, composition, z, spacegroup are
    enforced); ``task="infill"`` gives the one-element answer grammar. Raises ValueError for a representation
    without a grammar or conditions that no text can satisfy."""
    if task == "infill":
        return ElementGrammar(options.get("elements"))
    if representation not in CONSTRAINED_REPRESENTATIONS:
        raise ValueError(
            f"constrained decoding is implemented for {', '.join(CONSTRAINED_REPRESENTATIONS)}, "
            f"not {representation!r}"
        )
    from pymatgen.core import Composition

    if representation == "coords":  # conditions are prompt text only here; the grammar enforces decodability
        return CoordsGrammar(**options)
    conditions = dict(conditions or {})
    max_atoms = options.get("max_atoms", 256)
    compositions = None
    if "composition" in conditions:
        compositions = [_int_counts(Composition(conditions["composition"]))]
    elif "formula" in conditions:
        reduced = _int_counts(Composition(conditions["formula"]))
        if "z" in conditions:
            zs = [int(conditions["z"])]
        else:
            zs = range(1, max_atoms // sum(reduced.values()) + 1)
        compositions = [{el: n * z for el, n in reduced.items()} for z in zs]
        if not compositions:
            raise ValueError(f"formula {conditions['formula']} has more than max_atoms={max_atoms} atoms")
    groups = [int(conditions["spacegroup"])] if "spacegroup" in conditions else None
    grammar = WyckoffGrammar(compositions=compositions, space_groups=groups, **options)
    if representation == "wyckoff-plaid":  # PLaID's words around the same Wyckoff rules
        grammar = PlaidWyckoffGrammar(grammar)
    try:
        grammar.check_feasible()
    except ValueError:
        what = ", ".join(
            f"{k}={conditions[k]}" for k in ("formula", "composition", "z", "spacegroup") if k in conditions
        )
        raise ValueError(
            f"no crystal satisfies {what}: its Wyckoff positions cannot hold these atom counts"
        ) from None
    return grammar


def _int_counts(comp) -> dict[str, int]:
    counts = {el.symbol: n for el, n in comp.items()}
    if any(abs(n - round(n)) > 1e-8 for n in counts.values()):
        raise ValueError(f"composition {comp} has non-integer amounts")
    return {el: int(round(n)) for el, n in counts.items()}


class GrammarLogitsProcessor(LogitsProcessor):
    """Hugging Face logits processor constraining each row of a batch to its grammar.

    One processor serves one ``generate`` call: ``grammars`` has one grammar per row (rows may share one);
    ``max_new_tokens`` is the budget the completion must fit in. Rows that end (EOS) are left unmasked, as
    ``generate`` pads them anyway. ``failures`` lists rows whose sampled token the grammar rejected (a bug guard:
    such a row is left unconstrained).
    """

    def __init__(self, grammars: Sequence, trie: TokenTrie, max_new_tokens: int):
        self.grammars = list(grammars)
        self.trie = trie
        self.max_new_tokens = max_new_tokens
        self.states: list[State | None] = [g.initial() for g in self.grammars]
        self.next: list[dict[int, State]] = [{} for _ in self.grammars]
        self.done = [False] * len(self.grammars)
        self.failures: list[int] = []
        self.prompt_len: int | None = None
        self.seconds = 0.0  # time spent in this processor (the constraint's own cost)
        need = max(s.u for s in self.states)
        if need > max_new_tokens:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} is too small for constrained decoding (the shortest complete "
                f"text here needs up to {need} tokens)"
            )

    def _advance(self, last: list[int]) -> None:
        for i, tok in enumerate(last):
            if self.done[i]:
                continue
            if tok in self.trie.eos_ids:
                self.done[i] = True
                continue
            state = self.next[i].get(tok)
            if state is None:
                text = self.trie.strings[tok] if tok < self.trie.vocab_size else None
                state = self.grammars[i].feed(text, self.states[i]) if text else None
            if state is None:
                logger.warning("row %d: token %d rejected by the grammar; row left unconstrained", i, tok)
                self.failures.append(i)
                self.done[i] = True
            self.states[i] = state

    def __call__(self, input_ids, scores):
        start = time.perf_counter()
        out = self._mask(input_ids, scores)
        self.seconds += time.perf_counter() - start
        return out

    def _mask(self, input_ids, scores):
        import torch

        batch, length = input_ids.shape
        if batch != len(self.grammars):
            raise ValueError(f"processor built for {len(self.grammars)} rows, got {batch}")
        if self.prompt_len is None:
            self.prompt_len = length
        else:
            self._advance(input_ids[:, -1].tolist())
        budget = self.max_new_tokens - (length - self.prompt_len) - 1
        rows: list[int] = []
        cols: list[int] = []
        free_rows = []
        for i, grammar in enumerate(self.grammars):
            if self.done[i]:
                free_rows.append(i)
                continue
            state = self.states[i]
            nxt = self.trie.allowed(grammar, state, budget)
            self.next[i] = nxt
            ids = list(nxt)
            if grammar.can_end(state):
                ids.extend(self.trie.eos_ids)
            if not ids:  # cannot happen while the budget invariant holds; end the row rather than crash
                logger.warning("row %d: no token allowed at %r", i, state)
                ids = list(self.trie.eos_ids)
            rows.extend([i] * len(ids))
            cols.extend(ids)
        mask = torch.ones_like(scores, dtype=torch.bool)
        if rows:
            mask[torch.tensor(rows, device=scores.device), torch.tensor(cols, device=scores.device)] = False
        if free_rows:
            mask[torch.tensor(free_rows, device=scores.device)] = False
        return scores.masked_fill(mask, float("-inf"))


class VLLMGrammarProcessor:
    """The same constraint for one vLLM request, for vLLM versions that accept per-request logits processors
    (``SamplingParams(logits_processors=[...])``, called as ``fn(output_token_ids, logits)``)."""

    def __init__(self, grammar, trie: TokenTrie, max_new_tokens: int):
        self.grammar = grammar
        self.trie = trie
        self.max_new_tokens = max_new_tokens
        self.state = grammar.initial()
        self.seen = 0
        self.next: dict[int, State] = {}

    def __call__(self, output_token_ids, logits):
        import torch

        for tok in list(output_token_ids)[self.seen :]:
            state = self.next.get(tok) or self.grammar.feed(self.trie.strings[tok] or "", self.state)
            if state is None:
                return logits
            self.state = state
        self.seen = len(output_token_ids)
        self.next = self.trie.allowed(self.grammar, self.state, self.max_new_tokens - self.seen - 1)
        ids = list(self.next) + (self.trie.eos_ids if self.grammar.can_end(self.state) else [])
        mask = torch.full_like(logits, float("-inf"))
        mask[torch.tensor(ids or self.trie.eos_ids, device=logits.device)] = 0
        return logits + mask
