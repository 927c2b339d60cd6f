"""Grammar-constrained decoding with a LLaMA-2-like vocabulary (32,000 SentencePiece-style BPE pieces, byte
fallback, single digits, multi-character element symbols and words; ``plaid.llama_vocab``, built locally):

- the tokenizer is of LLaMA-2's kind (id layout, byte fallback for newlines, digits split, ``▁`` word pieces);
- masks are right by brute force on states sampled along random constrained walks: a token is allowed exactly
  when the grammar accepts its whole string from the state within the budget (no valid continuation masked out),
  and allowed tokens lead to states that still complete into texts the strict decoder accepts;
- the batched processor gives the same masks as the per-row definition (``TokenTrie.allowed``), with rows in one
  state sharing one walk;
- the tokenizer's own (canonical) tokenization of real texts is allowed at every step, and how often random
  constrained token sequences differ from it is measured.
"""

from __future__ import annotations

import random

import pytest
import torch

from plaid.representations import get
from plaid.sampling.constrained import GrammarLogitsProcessor, TokenTrie, make_grammar, token_strings


@pytest.fixture(scope="module")
def llama_tok():
    from plaid.llama_vocab import llama_like_tokenizer

    return llama_like_tokenizer()


@pytest.fixture(scope="module")
def trie(llama_tok):
    return TokenTrie(llama_tok)


def _grammar(representation):
    rep = get(representation)
    if representation == "coords":
        return make_grammar(
            "coords",
            {},
            max_atoms=12,
            length_decimals=rep.length_decimals,
            angle_decimals=rep.angle_decimals,
            coord_decimals=rep.coord_decimals,
        )
    return make_grammar("wyckoff", {}, max_atoms=12)


def test_vocabulary_is_llama2_like(llama_tok):
    tok = llama_tok
    assert len(tok) == 32000
    pieces = tok.convert_ids_to_tokens(list(range(259)))
    assert pieces[:3] == ["<unk>", "<s>", "</s>"] and pieces[3] == "<0x00>" and pieces[258] == "<0xFF>"
    text = "Ba1 Ti1 O3\n221\n4.00 4.00 4.00\n"
    ids = tok(text, add_special_tokens=False).input_ids
    toks = tok.convert_ids_to_tokens(ids)
    assert toks[:6] == ["▁Ba", "1", "▁Ti", "1", "▁O", "3"], toks  # element pieces with the word marker
    assert "<0x0A>" in toks and "\n" not in tok.get_vocab()  # newlines are byte fallback
    digits = [t for t in toks if any(c.isdigit() for c in t) and not t.startswith("<0x")]
    assert digits and all(len(t) == 1 for t in digits)  # digits one per token
    assert tok.decode(ids) == text
    multi = [p for p in tok.get_vocab() if len(p.lstrip("▁")) > 3 and p.lstrip("▁").isalpha()]
    assert len(multi) > 5000  # many multi-character (word) pieces
    cif = get("cif")
    from pymatgen.core import Lattice, Structure

    cif_text = cif.encode(Structure(Lattice.cubic(4.0), ["Ba", "Ti", "O", "O", "O"], [[0.5] * 3, [0] * 3, [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]))
    assert tok.decode(tok(cif_text, add_special_tokens=False).input_ids) == cif_text


def test_token_strings_of_llama_like_vocab(llama_tok):
    tok = llama_tok
    strings = token_strings(tok)
    v = tok.get_vocab()
    assert strings[v["<0x0A>"]] == "\n" and strings[v["▁Ba"]] == " Ba" and strings[v["▁Ti"]] == " Ti"
    word = next(p for p in v if p.isalpha() and len(p) > 3)  # a piece without the word marker
    assert strings[v[word]] == word
    assert strings[v["▁"]] == " " and strings[v["7"]] == "7"
    assert strings[tok.eos_token_id] is None and strings[tok.bos_token_id] is None


def _walk_states(grammar, trie, rng, steps, budget):
    """(state, budget, text so far) along one random constrained token walk."""
    state, text, out = grammar.initial(), "", []
    for t in range(steps):
        b = budget - t - 1
        out.append((state, b, text))
        allowed = trie.allowed(grammar, state, b)
        if not allowed or (grammar.can_end(state) and rng.random() < 0.1):
            break
        tok = rng.choice(sorted(allowed))
        state, text = allowed[tok], text + trie.strings[tok]
    return out


@pytest.mark.parametrize("representation", ["wyckoff", "coords"])
def test_masks_match_brute_force_on_sampled_states(llama_tok, trie, representation):
    grammar, rep = _grammar(representation), get(representation)
    rng = random.Random(7)
    sampled = []
    for _ in range(3):
        states = _walk_states(grammar, trie, rng, 70, 300)
        sampled += states[:: max(1, len(states) // 6)]
    # a tight budget too: tokens whose completion no longer fits must be masked
    sampled += [(st, st.u + 1, text) for st, _, text in sampled[1::4]]
    strings = trie.strings
    by_first: dict[str, list[int]] = {}
    for i, s in enumerate(strings):
        if s:
            by_first.setdefault(s[0], []).append(i)
    for state, budget, prefix in sampled:
        allowed = trie.allowed(grammar, state, budget)
        brute = set()
        for first, ids in by_first.items():  # exact: the grammar reads characters, feed(s) = feed(s[1:], feed(s[0]))
            after = grammar.feed(first, state)
            if after is None:
                continue
            for i in ids:
                nxt = grammar.feed(strings[i][1:], after) if len(strings[i]) > 1 else after
                if nxt is not None and nxt.u <= budget:
                    brute.add(i)
        assert set(allowed) == brute, prefix
        # allowed tokens keep the text a valid prefix: a random completion from the new state decodes strictly
        for tok_id in rng.sample(sorted(allowed), min(2, len(allowed))):
            rest = grammar.random_text(rng, budget, state=allowed[tok_id])
            rep.decode(prefix + strings[tok_id] + rest)


def test_batched_processor_equals_per_row_definition(llama_tok, trie):
    grammar = _grammar("wyckoff")
    batch, max_new = 8, 200
    proc = GrammarLogitsProcessor([grammar] * batch, trie, max_new)
    rng = random.Random(3)
    seq = [[] for _ in range(batch)]
    states = [proc.states[0]] * batch
    ended = [False] * batch
    vocab = len(llama_tok)
    for step in range(40):
        input_ids = torch.zeros((batch, 1 + step), dtype=torch.long)
        if step:
            input_ids[:, 1:] = torch.tensor(seq)
        out = proc(input_ids, torch.zeros((batch, vocab)))
        budget = max_new - step - 1
        for i in range(batch):
            if ended[i]:
                assert torch.isfinite(out[i]).all()
                continue
            want = set(trie.allowed(grammar, states[i], budget))
            if grammar.can_end(states[i]):
                want.add(llama_tok.eos_token_id)
            assert set(torch.nonzero(torch.isfinite(out[i])).flatten().tolist()) == want
        # rows 0-3 take the same tokens (one shared state), the others their own
        pick = None
        for i in range(batch):
            allowed = sorted(torch.nonzero(torch.isfinite(out[i])).flatten().tolist())
            if i == 0 or i >= 4:
                pick = rng.choice(allowed)
            tok = llama_tok.eos_token_id if ended[i] else pick
            if tok == llama_tok.eos_token_id:
                ended[i] = True
            else:
                states[i] = grammar.feed(trie.strings[tok], states[i])
            seq[i].append(tok)
        assert all(proc.next[i] is proc.next[0] for i in range(4) if not ended[i])
    assert not proc.failures


@pytest.mark.parametrize("representation", ["wyckoff", "coords"])
def test_canonical_tokenization_of_real_texts_is_allowed(llama_tok, trie, perov_structures, representation):
    """Teacher-force the tokenizer's own tokenization of real texts through the processor: no step rejects it."""
    from plaid.prompts import generation_prompt

    rep = get(representation)
    texts = [rep.encode(s) for s in perov_structures[:12]]
    prompt = generation_prompt(representation)
    p_ids = llama_tok(prompt, add_special_tokens=False).input_ids
    forced = []
    for text in texts:
        ids = llama_tok(prompt + text, add_special_tokens=False).input_ids
        assert ids[: len(p_ids)] == p_ids
        forced.append(ids[len(p_ids) :] + [llama_tok.eos_token_id])
    grammar = _grammar(representation) if representation == "coords" else make_grammar("wyckoff", {}, max_atoms=24)
    batch = len(forced)
    proc = GrammarLogitsProcessor([grammar] * batch, trie, 400)
    steps = max(map(len, forced))
    for step in range(steps):
        input_ids = torch.zeros((batch, 1 + step), dtype=torch.long)
        if step:
            input_ids[:, 1:] = torch.tensor([f[:step] + [llama_tok.eos_token_id] * (step - len(f[:step])) for f in forced])
        out = proc(input_ids, torch.zeros((batch, len(llama_tok))))
        for i, f in enumerate(forced):
            if step < len(f):
                assert torch.isfinite(out[i, f[step]]), (representation, i, step, llama_tok.decode(f[:step]))
    assert not proc.failures


def test_non_canonical_tokenizations_are_measured(llama_tok, trie):
    """A uniformly random constrained walk (an untrained model) mostly writes non-canonical token sequences:
    measured here (printed), not a property the processor enforces."""
    from plaid.prompts import generation_prompt

    grammar = _grammar("wyckoff")
    prompt = generation_prompt("wyckoff")
    p_ids = llama_tok(prompt, add_special_tokens=False).input_ids
    rng = random.Random(11)
    differ = n = 0
    for _ in range(6):
        state, ids, budget = grammar.initial(), [], 200
        for t in range(budget):
            allowed = trie.allowed(grammar, state, budget - t - 1)
            if grammar.can_end(state) and (not allowed or rng.random() < 0.2):
                break
            tok = rng.choice(sorted(allowed))
            ids.append(tok)
            state = allowed[tok]
        text = "".join(trie.strings[i] for i in ids)
        get("wyckoff").decode(text)
        n += 1
        differ += llama_tok(prompt + text, add_special_tokens=False).input_ids[len(p_ids) :] != ids
    print(f"random constrained walks: {differ}/{n} token sequences differ from the tokenizer's own encoding")
    assert n == 6
