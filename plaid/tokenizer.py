"""A local domain tokenizer for crystal text (no Hub download), saved as a ``PreTrainedTokenizerFast``.

Pieces, tried longest first at each position of the text:

- the words of the prompts in ``plaid.prompts`` (built from the real prompt strings, so every prompt is covered)
  and the mask token ``[MASK]``;
- element symbols (H ... Og);
- for the ``cif`` representation, CIF keywords (``_cell_length_a``, ``loop_``, ``data_`` ...) and Hermann-Mauguin
  space-group symbols (only right after ``_symmetry_space_group_name_H-M``, so ``P1`` in a formula stays ``P`` ``1``);
- one character each for everything else: every digit is its own token (as in LLaMA), and so are ``.``, ``-``,
  spaces, newlines, Wyckoff letters and any other printable ASCII character.

Any ASCII text therefore tokenizes without ``<unk>``; decoding concatenates pieces, so
``decode(encode(text)) == text`` exactly. Wyckoff labels are multiplicity digits plus a letter (``4`` ``8`` ``n``);
space-group numbers are digits (``2`` ``2`` ``1``). Special tokens: ``<s>`` (bos, added in front of every encoded
text), ``</s>`` (eos), ``<pad>``, ``<unk>``.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0..3 in this order
KINDS = ("domain",)
MODEL_MAX_LENGTH = 4096

# Keywords written by plaid.representations.cif (CrystaLLM's standardized CIF).
CIF_KEYWORDS = (
    "data_",
    "loop_",
    "_symmetry_space_group_name_H-M",
    "_symmetry_Int_Tables_number",
    "_symmetry_equiv_pos_site_id",
    "_symmetry_equiv_pos_as_xyz",
    "_cell_length_a",
    "_cell_length_b",
    "_cell_length_c",
    "_cell_angle_alpha",
    "_cell_angle_beta",
    "_cell_angle_gamma",
    "_cell_volume",
    "_cell_formula_units_Z",
    "_chemical_formula_structural",
    "_chemical_formula_sum",
    "_atom_site_type_symbol",
    "_atom_site_label",
    "_atom_site_symmetry_multiplicity",
    "_atom_site_fract_x",
    "_atom_site_fract_y",
    "_atom_site_fract_z",
    "_atom_site_occupancy",
    "_atom_type_symbol",
    "_atom_type_electronegativity",
    "_atom_type_radius",
    "_atom_type_ionic_radius",
    "'x, y, z'",
)
_SG_SYMBOL_CONTEXT = "(?<=_symmetry_space_group_name_H-M )"  # the one space CrystaLLM's text has


@lru_cache(maxsize=1)
def element_symbols() -> tuple[str, ...]:
    from pymatgen.core import Element

    return tuple(e.value for e in Element)


@lru_cache(maxsize=1)
def space_group_symbols() -> tuple[str, ...]:
    """spglib short Hermann-Mauguin symbols of every setting (what CifWriter writes), unique."""
    import spglib

    symbols = {spglib.get_spacegroup_type(hall).international_short for hall in range(1, 531)}
    return tuple(sorted(symbols))


@lru_cache(maxsize=1)
def prompt_words() -> tuple[str, ...]:
    """Every word of every prompt style's templates in plaid.prompts (alphabetic runs, length >= 2)."""
    from . import prompts

    texts = prompts.template_texts()  # every prompt style's fixed strings
    words = {w for text in texts for w in re.findall(r"[A-Za-z]+(?:/[A-Za-z]+)?", text) if len(w) >= 2}
    return tuple(sorted(words))


def _characters() -> list[str]:
    return [c for c in string.printable if c not in "\x0b\x0c"] + ["\u00c5"]  # + Angstrom sign


def vocabulary(representation: str) -> tuple[list[str], list[str]]:
    """(word pieces matched as whole strings, context-dependent space-group pieces) for ``representation``."""
    from .prompts import TASK_INSTRUCTIONS
    from .representations.base import MASK

    if representation not in TASK_INSTRUCTIONS:
        raise ValueError(
            f"unknown representation {representation!r}; choose from {', '.join(TASK_INSTRUCTIONS)}"
        )
    words = {MASK, *prompt_words(), *element_symbols()}
    sg_symbols: list[str] = []
    if representation == "wyckoff-plaid":  # PLaID's fixed words (symbols are spelled by characters)
        words.update(("Spacegroup:", "abc:", "angles:", "Sites"))
    if representation == "cif":
        words.update(CIF_KEYWORDS)
        sg_symbols = [s for s in space_group_symbols() if len(s) > 1]
    words = {w for w in words if len(w) > 1}  # single characters come from the character set
    return sorted(words, key=lambda w: (-len(w), w)), sorted(sg_symbols, key=lambda w: (-len(w), w))


def _split_pattern(words: list[str], sg_symbols: list[str]) -> str:
    alternatives = []
    if sg_symbols:
        alternatives.append(_SG_SYMBOL_CONTEXT + "(?:" + "|".join(re.escape(s) for s in sg_symbols) + ")")
    alternatives += [re.escape(w) for w in words]
    alternatives.append(r"[\s\S]")  # anything else: one character
    return "|".join(alternatives)


def build_tokenizer(
    representation: str = "wyckoff", kind: str = "domain", padding_side: str = "right"
) -> PreTrainedTokenizerFast:
    """The domain tokenizer for ``representation`` (wyckoff, coords or cif), built locally.

    ``padding_side`` is "right" for training and "left" for batched generation (settable later too).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {', '.join(KINDS)}")
    words, sg_symbols = vocabulary(representation)
    pieces = list(SPECIAL_TOKENS)
    for piece in _characters() + words + sg_symbols:
        if piece not in pieces:
            pieces.append(piece)
    vocab = {piece: i for i, piece in enumerate(pieces)}

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_split_pattern(words, sg_symbols)), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side=padding_side,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
