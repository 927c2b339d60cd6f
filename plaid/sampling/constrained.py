"""Grammar-constrained decoding: a Hugging Face ``LogitsProcessor`` that masks every token that would make the text
stop being a prefix of a decodable crystal (``plaid.sampling.grammar``), and the same check as a vLLM per-request
logits processor.

The allowed tokens of a parse state come from walking a character trie of the vocabulary from that state, trying
only the characters the state can accept next (``TokenTrie.allowed``, the definition): a token is allowed when its
whole string is accepted and the completion it leaves fits in the tokens still available (``State.u <= budget``);
the end-of-sequence token only when the text is complete.

The processor computes that walk once per distinct state and step, not once per row (``TokenTrie.candidates``):
rows that took the same tokens share their state objects, so a batch that starts from one initial state or is
conditioned on one composition walks the trie once for all of them; the walk is done without the budget and
kept with each candidate's ``u``, so one walk serves every budget, and hashable states (the formula line, where no
earlier line fixes anything) keep their walk across steps and ``generate`` calls (an LRU per grammar). The mask
is built for the whole batch at once from the rows' candidate ids and ``u`` (one budget comparison, one gather and
one scatter over the allowed (row, token) pairs); no Python loop runs over the vocabulary. The states reached are kept, so the sampled token's state is never recomputed.

Sample first, mask on rejection (``check_sampled``, used by ``generate.RowSampler`` for plain temperature or greedy
sampling): each row's token is drawn from the unmasked distribution and only that token is checked (one ``feed``);
a row whose token the grammar rejects gets its full mask and a second, independent draw from the masked
distribution. For a token t the grammar allows (mass A of the allowed set), P(t) = p(t) + (1 - A) p(t) / A =
p(t) / A: exactly the masked distribution, and for greedy decoding the same argmax. A model that has learned the
grammar puts little mass outside it, so most steps cost one ``feed`` per row instead of a trie walk; an accepted row
is advanced by the check itself, and the next step's ``begin`` only confirms that it took that token. With top-k or
top-p the truncation depends on the mask, so every step is masked first.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from transformers import LogitsProcessor

from .grammar import BIG, CoordsGrammar, ElementGrammar, PlaidWyckoffGrammar, State, WyckoffGrammar

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


class Candidates:
    """The tokens a state accepts, whatever the budget: ``next`` (token id -> state after it), ``ids`` and ``u``
    (lists, same order) and ``can_end``."""

    __slots__ = ("next", "ids", "u", "can_end")

    def __init__(self, nxt: dict[int, State], can_end: bool):
        self.next = nxt
        self.ids = list(nxt)
        self.u = [st.u for st in nxt.values()]
        self.can_end = can_end


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
        self.cache_size = 4096  # hashable states kept per grammar
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
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

    def candidates(self, grammar, state: State) -> Candidates:
        """``allowed(grammar, state, budget)`` for every budget at once: the tokens the grammar accepts from
        ``state`` (any ``u``), with their states and ``u``; cached per grammar for hashable states."""
        key = state
        try:
            hash(state)  # states whose fields are all hashable (no arrays, no dicts) are cached by value
        except TypeError:
            key = None
        cache = None
        if key is not None:
            cache = self._cache.get(grammar)
            if cache is None:
                cache = self._cache[grammar] = OrderedDict()
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        found = Candidates(self.allowed(grammar, state, BIG), grammar.can_end(state))
        if cache is not None:
            cache[key] = found
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        return found


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


_ADVANCED: Mapping[int, State] = {}  # ``next`` of a row check_sampled advanced (a marker, never read)


class GrammarLogitsProcessor(LogitsProcessor):
    """Hugging Face logits processor constraining each row of a batch to its grammar.

    One processor serves one ``generate`` call: ``grammars`` has one grammar per row (rows may share one);
    ``max_new_tokens`` is the budget the completion must fit in. Rows that end (EOS) are left unmasked, as
    ``generate`` pads them anyway. ``failures`` lists rows whose sampled token the grammar rejected (a bug guard:
    such a row is left unconstrained). The mask of a row is exactly ``TokenTrie.allowed`` (plus EOS where the text
    may end); see the module docstring for how the work is shared between rows.
    """

    def __init__(self, grammars: Sequence, trie: TokenTrie, max_new_tokens: int):
        self.grammars = list(grammars)
        self.trie = trie
        self.max_new_tokens = max_new_tokens
        initial: dict[int, State] = {}  # one initial state per grammar object, so that its rows share it
        for g in self.grammars:
            if id(g) not in initial:
                initial[id(g)] = g.initial()
        self.states: list[State | None] = [initial[id(g)] for g in self.grammars]
        self.done = [False] * len(self.grammars)
        self.failures: list[int] = []
        self.prompt_len: int | None = None
        self.budget = max_new_tokens - 1
        self.next: list[Mapping[int, State] | None] = [None] * len(self.grammars)  # token -> state, per row
        self._checked: list[int] | None = None  # the tokens check_sampled saw at this step (rows it advanced)
        self._before: list[State | None] = []  # the states before check_sampled advanced them
        self.seconds = 0.0  # time spent in this processor (the constraint's own cost)
        self.checked = 0  # row-steps whose sampled token was checked first (check_sampled)
        self.rejected = 0  # ... and rejected, so that the row was masked and drawn again
        need = max(s.u for s in self.states)
        if need > max_new_tokens:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} is too small for constrained decoding (the shortest complete "
                f"text here needs up to {need} tokens)"
            )

    def _advance(self, last: list[int]) -> None:
        rows: Iterable[int] = range(len(last))
        checked, self._checked = self._checked, None
        nxt_of = self.next
        if checked is not None:  # rows check_sampled advanced by this very token are done; the rest go on below
            rows = [i for i, (tok, seen) in enumerate(zip(last, checked)) if tok != seen or nxt_of[i] is not _ADVANCED]
            for i in rows:
                if nxt_of[i] is _ADVANCED:  # advanced by a token the caller then did not take: undo
                    self.states[i], nxt_of[i] = self._before[i], None
        eos, done = set(self.trie.eos_ids), self.done
        for i in rows:
            if done[i]:
                continue
            tok = last[i]
            if tok in eos:
                done[i] = True
                continue
            nxt = nxt_of[i]
            state = nxt.get(tok) if nxt is not None else None
            if state is None:
                text = self.trie.strings[tok] if tok < self.trie.vocab_size else None
                state = self.grammars[i].feed(text, self.states[i]) if text else None
            if state is None:
                logger.warning("row %d: token %d rejected by the grammar; row left unconstrained", i, tok)
                self.failures.append(i)
                self.done[i] = True
            self.states[i] = state

    def __call__(self, input_ids, scores):
        self.begin(input_ids)
        return self.masked(scores)

    def begin(self, input_ids) -> int:
        """Advance every row by the token it just took (nothing at the first step); the budget of this step."""
        start = time.perf_counter()
        batch, length = input_ids.shape
        if batch != len(self.grammars):
            raise ValueError(f"processor built for {len(self.grammars)} rows, got {batch}")
        if self.prompt_len is None:
            self.prompt_len = length
        else:
            self._advance(input_ids[:, -1].tolist())
        self.budget = self.max_new_tokens - (length - self.prompt_len) - 1
        self.seconds += time.perf_counter() - start
        return self.budget

    def check_sampled(self, tokens: Sequence[int]) -> list[int]:
        """The live rows whose sampled token (one per row) the grammar rejects at this step: a token is accepted
        when ``feed`` accepts its text and the state reached fits the budget (EOS: when the text may end), exactly
        the condition of the mask. Accepted rows are advanced at once (the next ``begin`` only confirms that they
        took that token, and undoes it for a row that did not); ended rows accept anything. At this step only
        the rejected rows may then be masked."""
        start = time.perf_counter()
        bad = []
        eos = set(self.trie.eos_ids)
        strings, vocab, budget = self.trie.strings, self.trie.vocab_size, self.budget
        done, grammars, states, nxt_of = self.done, self.grammars, self.states, self.next
        self._before, self._checked = list(states), list(tokens)
        checked = 0
        for i, tok in enumerate(tokens):
            if done[i]:
                continue
            checked += 1
            if tok in eos:
                ok = grammars[i].can_end(states[i])
                nxt_of[i] = None
            else:
                text = strings[tok] if 0 <= tok < vocab else None
                if not text:
                    nxt = None
                elif len(text) == 1:  # most sampled tokens are one character (digits are split one per token)
                    nxt = grammars[i].step(states[i], text)
                else:
                    nxt = grammars[i].feed(text, states[i])
                ok = nxt is not None and nxt.u <= budget
                if ok:  # advanced now; ``begin`` at the next step keeps it when the row took this token
                    states[i], nxt_of[i] = nxt, _ADVANCED
                else:
                    nxt_of[i] = None
            if not ok:
                bad.append(i)
        self.checked += checked
        self.rejected += len(bad)
        self.seconds += time.perf_counter() - start
        return bad

    def masked(self, scores, rows: Sequence[int] | None = None):
        """``scores`` with every token the grammar disallows at this step set to -inf; with ``rows``, ``scores``
        holds only those rows (in that order) and only they are masked. Ended rows are left as they are."""
        start = time.perf_counter()
        rows_idx, cols, free_rows = self.allowed_index(self.budget, rows)
        out = scores.new_full(scores.shape, float("-inf"))
        if len(rows_idx):
            rows_idx, cols = rows_idx.to(scores.device), cols.to(scores.device)
            out[rows_idx, cols] = scores[rows_idx, cols]
        if free_rows:
            free = torch_tensor(free_rows, scores.device)
            out[free] = scores[free]
        self.seconds += time.perf_counter() - start
        return out

    def allowed_index(self, budget: int, rows: Sequence[int] | None = None):
        """(rows, cols) int64 tensors of every allowed (row, token) pair at this step (EOS included), and the
        rows left free (ended or failed); with ``rows``, for those rows only, numbered by their place in
        ``rows``."""
        import torch

        shared: dict[tuple[int, int], Candidates] = {}
        ids: list[int] = []
        us: list[int] = []
        row_of: list[int] = []
        free_rows, end_rows = [], []
        eos = self.trie.eos_ids
        for at, i in enumerate(range(len(self.grammars)) if rows is None else rows):
            grammar = self.grammars[i]
            if self.done[i]:
                free_rows.append(at)
                continue
            if self.next[i] is _ADVANCED:
                raise RuntimeError(f"row {i} was masked after check_sampled accepted its token at this step")
            state = self.states[i]
            key = (id(grammar), id(state))
            cands = shared.get(key)
            if cands is None:
                cands = shared[key] = self.trie.candidates(grammar, state)
            self.next[i] = cands.next
            ids.extend(cands.ids)
            us.extend(cands.u)
            row_of.extend([at] * len(cands.ids))
            if cands.can_end:
                end_rows.append(at)
            elif not cands.ids or min(cands.u) > budget:
                # a live row with nothing allowed cannot happen while the budget invariant holds; end it rather
                # than crash
                logger.warning("row %d: no token allowed at %r", i, state)
                end_rows.append(at)
        keep = torch.tensor(us, dtype=torch.long) <= budget
        rows_t = torch.tensor(row_of, dtype=torch.long)[keep]
        cols = torch.tensor(ids, dtype=torch.long)[keep]
        if end_rows:
            rows_t = torch.cat([rows_t, torch.tensor([r for r in end_rows for _ in eos], dtype=torch.long)])
            cols = torch.cat([cols, torch.tensor(eos * len(end_rows), dtype=torch.long)])
        return rows_t, cols, free_rows


def torch_tensor(values, device):
    import torch

    return torch.tensor(values, dtype=torch.long, device=device)


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
