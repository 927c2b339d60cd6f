"""A LLaMA-2-like vocabulary built locally (no Hub download), to test and benchmark constrained decoding at a real
LLM's vocabulary size.

LLaMA-2's tokenizer is a SentencePiece BPE of 32,000 pieces: ids 0-2 are ``<unk>``, ``<s>``, ``</s>``, ids 3-258
the 256 byte-fallback pieces ``<0x00>``..``<0xFF>`` (a newline is ``<0x0A>``: no piece holds one), digits are split
one per token, a space is the word-boundary marker ``▁`` prefixed to the next word (``" Ti"`` is ``▁Ti``, and a lone
``▁`` piece exists), and the text gets one ``▁`` in front (SentencePiece's dummy prefix). Its Hugging Face fast
tokenizer is a ``tokenizers`` BPE with ``byte_fallback=True``, a ``Prepend("▁") + Replace(" ", "▁")`` normalizer
and a ``Replace("▁", " ") + ByteFallback + Fuse + Strip`` decoder.

``llama_like_tokenizer()`` builds a tokenizer of that same kind: BPE merges learned with ``tokenizers`` on English
(Python's own documentation, ``pydoc_data.topics``) plus plaid texts (Wyckoff, coords and CIF text of grammar walks
and fixed crystals), digits kept single, newlines left to byte fallback, the LLaMA id layout and exactly 32,000
ids. So element symbols, CIF keywords and English words are multi-character pieces with and without ``▁``, as in
LLaMA. The pieces are not LLaMA's. The result is cached as ``tokenizer.json`` under ``plaid.paths.cache_dir()``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

SPECIALS = ("<unk>", "<s>", "</s>")
BYTE_PIECES = tuple(f"<0x{b:02X}>" for b in range(256))
VOCAB_SIZE = 32_000
RECIPE_VERSION = 3  # bump when the corpus or the construction changes


def _plaid_texts(n_walks: int, seed: int) -> list[str]:
    from .representations import get
    from .sampling.grammar import CoordsGrammar, WyckoffGrammar

    rng = random.Random(seed)
    texts = []
    for grammar in (WyckoffGrammar(max_atoms=24), CoordsGrammar(max_atoms=12, length_decimals=1, angle_decimals=0)):
        for _ in range(n_walks):
            try:
                texts.append(grammar.random_text(rng, 400))
            except RuntimeError:  # a grammar dead end (a grammar bug, tested elsewhere): not a vocabulary matter
                continue
    from pymatgen.core import Lattice, Structure

    cif = get("cif")
    for a, species in ((4.0, ["Ba", "Ti", "O", "O", "O"]), (5.6, ["Na", "Cl"]), (3.9, ["Sr", "Ti", "O", "O", "O"])):
        coords = [[0.5, 0.5, 0.5], [0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]][: len(species)]
        texts.append(cif.encode(Structure(Lattice.cubic(a), species, coords)))
    from .prompts import generation_prompt

    texts.extend(generation_prompt(r) for r in ("wyckoff", "coords", "cif"))
    # every element symbol as formulas and orbit lines write it (LLaMA met them in its far larger corpus)
    from .sampling.grammar import element_symbols

    for k in range(3):
        texts.append(" ".join(f"{el}{k + 1}" for el in element_symbols()))
        texts.append("\n".join(f"{el} 0.{k}00 0.500 0.250 4a" for el in element_symbols()))
    return texts


def _python_sources(limit: int) -> list[str]:
    """Python's standard-library sources (English comments, docstrings and code), sorted by path, ``limit``
    characters in all."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append(text[: limit - total])
        total += len(out[-1])
        if total >= limit:
            break
    return out


def corpus(n_walks: int = 40, seed: int = 0, code_chars: int = 4_000_000) -> list[str]:
    """English documentation (``pydoc_data.topics``), Python sources and plaid texts, in a fixed order."""
    from pydoc_data.topics import topics

    english = [topics[k] for k in sorted(topics)]
    return english + _python_sources(code_chars) + _plaid_texts(n_walks, seed)


def _key(n_walks: int, seed: int, vocab_size: int) -> str:
    import sys

    import tokenizers

    raw = json.dumps([RECIPE_VERSION, n_walks, seed, vocab_size, tokenizers.__version__, sys.version_info[:2]])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def build_tokenizer_json(texts: list[str], vocab_size: int = VOCAB_SIZE) -> str:
    """A LLaMA-layout ``tokenizer.json`` (string) with BPE merges learned on ``texts``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    learned = vocab_size - len(SPECIALS) - len(BYTE_PIECES)
    # learning: words are split at "▁" (kept in front of the next word), digits are isolated, and newlines are cut
    # out (they stay byte-fallback pieces); "\n" is removed from the learned alphabet below
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="removed"),
            pre_tokenizers.Split(Regex("▁"), behavior="merged_with_next"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=learned, special_tokens=[], show_progress=False, min_frequency=2)
    trainer_tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    learned_vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
    pieces = [p for p, _ in learned_vocab if p not in SPECIALS and p not in BYTE_PIECES]
    pieces = pieces[:learned]
    # pad to the exact size with pieces no text produces (LLaMA has exactly 32,000 ids)
    k = 0
    while len(pieces) < learned:
        pieces.append(f"<extra_{k}>")
        k += 1
    vocab = {p: i for i, p in enumerate(SPECIALS + BYTE_PIECES + tuple(pieces))}
    merges = [m for m in merges if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in merges], unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # inference: digits single, as LLaMA's SentencePiece model (split_digits) does; no other pre-tokenization
    tok.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens(list(SPECIALS))
    return tok.to_str()


def llama_like_tokenizer(cache: str | Path | None = None, n_walks: int = 40, seed: int = 0, vocab_size: int = VOCAB_SIZE):
    """A ``PreTrainedTokenizerFast`` of the LLaMA-2 kind (see module docstring), built once and cached."""
    from transformers import PreTrainedTokenizerFast

    from .paths import cache_dir

    root = Path(cache) if cache is not None else cache_dir() / "llama_like_vocab"
    path = root / _key(n_walks, seed, vocab_size) / "tokenizer.json"
    if not path.exists():
        text = build_tokenizer_json(corpus(n_walks, seed), vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(path), unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    tok.add_bos_token = True
    return tok
