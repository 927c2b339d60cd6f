"""The EBNF syntax grammar (``plaid.sampling.syntax``) that engines without plaid's own grammar (vLLM's V1 engine)
can enforce through xgrammar: real texts are in it, malformed ones are not, and Hugging Face ``generate`` with
xgrammar's logits processor and an untrained model writes only texts of that form (checked with an independent
regular expression); how many of them plaid's strict decoder then accepts is printed (the semantic checks a
context-free grammar cannot make)."""

from __future__ import annotations

import re

import pytest
import torch

from plaid.representations import get
from plaid.sampling.syntax import syntax_grammar

xgr = pytest.importorskip("xgrammar")

NUM = r"[1-9]\d{0,2}"
WYCKOFF_FORM = re.compile(
    rf"[A-Z][a-z]?{NUM}( [A-Z][a-z]?{NUM})*\n{NUM}\n({NUM}\.\d\d ){{2}}{NUM}\.\d\d\n({NUM}\.\d\d ){{2}}{NUM}\.\d\d"
    rf"(\n[A-Z][a-z]? (0\.\d{{3}} ){{3}}{NUM}[a-zA-Z])+\n?"
)


@pytest.fixture(scope="module")
def llama_tok():
    from plaid.llama_vocab import llama_like_tokenizer

    return llama_like_tokenizer()


def _matcher(tok, grammar):
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    return xgr.GrammarMatcher(xgr.GrammarCompiler(info, max_threads=1).compile_grammar(grammar))


def _accepts(tok, grammar, text) -> bool:
    m = _matcher(tok, grammar)
    prompt = "x\n"
    ids = tok(prompt + text, add_special_tokens=False).input_ids[len(tok(prompt, add_special_tokens=False).input_ids) :]
    return all(m.accept_token(i) for i in ids) and m.accept_token(tok.eos_token_id)


@pytest.mark.parametrize("representation", ["wyckoff", "coords"])
def test_real_texts_are_in_the_syntax(llama_tok, perov_structures, carbon_structures, representation):
    rep = get(representation)
    grammar = syntax_grammar(representation)
    for s in perov_structures[:5] + carbon_structures[:5]:
        text = rep.encode(s)
        assert _accepts(llama_tok, grammar, text), text
    if representation == "wyckoff":
        text = rep.encode(perov_structures[0])
        assert not _accepts(llama_tok, grammar, text.replace(text.split()[0][:2], "Xq", 1))  # unknown element
        lines = text.split("\n")
        assert not _accepts(llama_tok, grammar, "\n".join([lines[0], "231"] + lines[2:]))  # space group > 230
        assert not _accepts(llama_tok, grammar, "\n".join(lines[:2] + lines[3:]))  # no lengths line
        assert not _accepts(llama_tok, grammar, text.split("\n", 1)[0])  # truncated


def test_conditions_fix_space_group_and_composition(llama_tok):
    grammar = syntax_grammar("wyckoff", {"composition": "Ba1 Ti1 O3", "spacegroup": "221"})
    good = "Ti1 Ba1 O3\n221\n4.00 4.00 4.00\n90.00 90.00 90.00\nBa 0.500 0.500 0.500 1b\nTi 0.000 0.000 0.000 1a\nO 0.000 0.500 0.500 3c"
    assert _accepts(llama_tok, grammar, good)
    assert not _accepts(llama_tok, grammar, good.replace("221", "225"))
    assert not _accepts(llama_tok, grammar, good.replace("O3", "O2"))
    assert not _accepts(llama_tok, grammar, good.replace("Ba 0.5", "Sr 0.5"))


def test_hf_generate_with_xgrammar_writes_the_syntax(llama_tok):
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor

    from plaid.prompts import generation_prompt
    from plaid.sampling.syntax import xgrammar_processor

    tok = llama_tok
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    prompt = generation_prompt("wyckoff")
    enc = tok([prompt] * 4, return_tensors="pt")
    processor = xgrammar_processor(tok, syntax_grammar("wyckoff"), vocab_size=config.vocab_size)

    newline = tok.convert_tokens_to_ids("<0x0A>")

    class EndBonus(LogitsProcessor):  # an untrained model rarely ends: favour EOS and newlines (short lines)
        def __call__(self, input_ids, scores):  # wherever the grammar allows them
            scores[:, tok.eos_token_id] += 8.0
            scores[:, newline] += 4.0
            return scores

    with torch.inference_mode():
        out = model.generate(
            **enc, do_sample=True, max_new_tokens=200, logits_processor=[EndBonus(), processor],
            pad_token_id=tok.pad_token_id,
        )
    rep = get("wyckoff")
    complete = decoded = 0
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        ended = tok.eos_token_id in row
        text = tok.decode(row[: row.index(tok.eos_token_id)] if ended else row, skip_special_tokens=True)
        if ended:  # a finished text has the form; a row cut by max_new_tokens is a prefix of it
            complete += 1
            assert WYCKOFF_FORM.fullmatch(text), text
            try:
                rep.decode(text)
                decoded += 1
            except ValueError:
                pass
        else:
            assert text and not text.startswith(" ")
    assert complete >= 2
    print(f"xgrammar syntax only, untrained model: {complete}/4 ended within the cap, {decoded} decode strictly")
