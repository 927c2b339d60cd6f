"""The domain tokenizer on real Perov-5 / Carbon-24 structures and on every prompt plaid writes."""

from __future__ import annotations

import itertools

import pytest

from plaid import prompts
from plaid.representations import MASK, get
from plaid.tokenizer import BOS, CIF_KEYWORDS, EOS, PAD, UNK, build_tokenizer, element_symbols

REPRESENTATIONS = ("wyckoff", "coords", "cif")


@pytest.fixture(scope="module")
def tokenizers():
    return {rep: build_tokenizer(rep) for rep in REPRESENTATIONS}


@pytest.fixture(scope="module")
def texts(perov_structures, carbon_structures):
    structures = perov_structures[:25] + carbon_structures[:25]
    return {rep: [get(rep).encode(s) for s in structures] for rep in REPRESENTATIONS}


def _pieces(tok, text):
    return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])


def test_special_tokens_and_bos(tokenizers):
    tok = tokenizers["wyckoff"]
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (BOS, EOS, PAD, UNK)
    assert tok.convert_tokens_to_ids([PAD, BOS, EOS, UNK]) == [0, 1, 2, 3]
    ids = tok("Ba1 Ti1 O3")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    assert _pieces(tok, "Ba1 Ti1 O3") == ["Ba", "1", " ", "Ti", "1", " ", "O", "3"]
    # eos written in a completion (as TRL appends it) becomes the eos token
    assert tok("O3" + EOS, add_special_tokens=False)["input_ids"][-1] == tok.eos_token_id


def test_real_crystal_text_round_trips_without_unk(tokenizers, texts):
    for rep, tok in tokenizers.items():
        for text in texts[rep]:
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids, (rep, text)
            assert tok.decode(ids, skip_special_tokens=True) == text


def test_digits_elements_and_wyckoff_labels_are_single_tokens(tokenizers, texts):
    tok = tokenizers["wyckoff"]
    pieces = set(itertools.chain.from_iterable(_pieces(tok, t) for t in texts["wyckoff"]))
    multi_digit = [p for p in pieces if p.isdigit() and len(p) > 1]
    assert not multi_digit
    vocab = tok.get_vocab()
    assert all(symbol in vocab for symbol in element_symbols())
    # Wyckoff label 48n and space group 227: digits one by one, letter alone
    assert _pieces(tok, "Si 0.125 0.125 0.125 8a\n227") == (
        ["Si", " ", "0", ".", "1", "2", "5", " ", "0", ".", "1", "2", "5", " ", "0", ".", "1", "2", "5", " "]
        + ["8", "a", "\n", "2", "2", "7"]
    )
    assert _pieces(tok, "Ce Co") == ["Ce", " ", "Co"]


def test_cif_keywords_and_space_group_symbols(tokenizers, texts):
    tok = tokenizers["cif"]
    for keyword in CIF_KEYWORDS:
        assert _pieces(tok, keyword) == [keyword]
    for text in texts["cif"]:
        pieces = _pieces(tok, text)
        symbol = next(
            line.split()[1] for line in text.splitlines() if line.startswith("_symmetry_space_group_name")
        )
        keyword_at = pieces.index("_symmetry_space_group_name_H-M")
        assert pieces[keyword_at + 2] == symbol, text  # keyword, one space (CrystaLLM's text), symbol as one piece
    # a symbol-like string outside the space-group field stays digits: P1 in a formula
    assert _pieces(tok, "_chemical_formula_sum P1\n") == [
        "_chemical_formula_sum",
        " ",
        "P",
        "1",
        "\n",
    ]
    # the wyckoff tokenizer has no CIF keyword pieces but still covers CIF text character by character
    wyckoff_tok = tokenizers["wyckoff"]
    assert "_cell_length_a" not in wyckoff_tok.get_vocab()
    assert wyckoff_tok.unk_token_id not in wyckoff_tok(texts["cif"][0])["input_ids"]


def test_every_prompt_tokenizes_without_unk(tokenizers, texts):
    conditions = {
        "formula": "BaTiO3",
        "composition": "Ba1 Ti1 O3",
        "z": 1,
        "spacegroup": "Pm-3m",
        "formation_energy": -2.345,
        "band_gap": 1.5,
        "e_hull": 0.0,
    }
    for rep, tok in tokenizers.items():
        all_prompts = [prompts.generation_prompt(rep, None), prompts.generation_prompt(rep, conditions)]
        all_prompts += [prompts.generation_prompt(rep, {k: v}) for k, v in conditions.items()]
        masked = get(rep).mask_element(texts[rep][0], get(rep).elements(texts[rep][0])[0])
        all_prompts.append(prompts.infill_prompt(masked))
        for prompt in all_prompts:
            ids = tok(prompt)["input_ids"]
            assert tok.unk_token_id not in ids, prompt
            assert tok.decode(ids, skip_special_tokens=True) == prompt
        assert MASK in _pieces(tok, all_prompts[-1])
        # prompt words are whole pieces, so the prompt is a token prefix of prompt + completion
        prompt_ids = tok(all_prompts[1])["input_ids"]
        joint = tok(all_prompts[1] + texts[rep][0])["input_ids"]
        assert joint[: len(prompt_ids)] == prompt_ids
    assert "Generate" in _pieces(tokenizers["wyckoff"], prompts.generation_prompt("wyckoff"))
    # every prompt style's words are pieces too (the vocabulary is built from all of them)
    seed = {k: v for k, v in conditions.items() if k not in ("composition", "z")}
    for style in ("plaid-paper", "crystal-text-llm"):
        prompt = prompts.generation_prompt("coords", seed, style)
        assert "spacegroup" in _pieces(tokenizers["coords"], prompt)
        assert tokenizers["coords"].unk_token_id not in tokenizers["coords"](prompt)["input_ids"]
    crystallm = prompts.generation_prompt("cif", {"composition": "Ba1 Ti1 O3", "spacegroup": 221}, "crystallm")
    pieces = _pieces(tokenizers["cif"], crystallm)
    assert pieces[:2] == ["data_", "Ba"] and "_atom_type_electronegativity" in pieces and "Pm-3m" in pieces


def test_save_reload_and_left_padding(tmp_path, tokenizers, texts):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = tokenizers["cif"]
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert len(loaded) == len(tok)
    for text in texts["cif"][:5]:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    loaded.padding_side = "left"
    batch = loaded(["Ba1 Ti1 O3", "C"], padding=True)
    assert batch["input_ids"][1][:2] == [loaded.pad_token_id] * 2  # left padded
    assert batch["attention_mask"][1] == [0] * 7 + [1, 1]
    left = build_tokenizer("wyckoff", padding_side="left")
    assert left.padding_side == "left"
    with pytest.raises(ValueError, match="unknown representation"):
        build_tokenizer("smiles")
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizer("wyckoff", kind="bpe")
