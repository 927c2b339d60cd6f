"""The syntax of plaid's texts as an EBNF grammar (xgrammar's GBNF dialect, which vLLM's structured outputs also
take), for engines that cannot run plaid's own grammar (``plaid.sampling.grammar``) inside their sampling loop.

A context-free grammar cannot count or compute: it cannot tie the orbit lines' multiplicities to the formula's
counts, check a Wyckoff letter against the space group, force the crystal system's lattice, or keep atoms apart.
So ``syntax_grammar`` enforces only the *form* of the text (line structure, known element symbols, number formats
with the representation's decimals, space-group numbers 1-230, fractional coordinates in [0, 1) (``coords`` also
1.00), a Wyckoff label as digits and a letter) and, under conditions, the space-group line and the formula's
elements; everything else is left to plaid's decoder, which checks each sample afterwards (``plaid sample`` records ``parsed`` and ``error``
per sample, and ``--until-parsed`` resamples). ``xgrammar_processor`` wraps it for Hugging Face ``generate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from .grammar import element_symbols

SYNTAX_REPRESENTATIONS = ("wyckoff", "coords")


def _alt(options) -> str:
    return " | ".join(f'"{o}"' for o in options)


def _number(int_digits: int, decimals: int) -> str:
    """A fixed-point number >= 1: 1..int_digits integer digits without a leading zero, exactly ``decimals``
    decimals."""
    body = "[1-9]" + " [0-9]?" * (int_digits - 1)
    return body + (' "." ' + " ".join(["[0-9]"] * decimals) if decimals else "")


def syntax_grammar(
    representation: str,
    conditions: Mapping | None = None,
    length_decimals: int | None = None,
    angle_decimals: int | None = None,
    coord_decimals: int | None = None,
) -> str:
    """EBNF of the texts of ``representation`` (see module docstring); decimals default to the representation's.
    ``conditions`` (normalized, as ``plaid.prompts``): ``spacegroup`` fixes the space-group line, ``composition`` /
    ``formula`` restrict the formula line's and the orbit lines' elements to the formula's (and a composition of at
    most 4 elements to its exact counts, in any order)."""
    from ..representations import get

    if representation not in SYNTAX_REPRESENTATIONS:
        raise ValueError(f"no syntax grammar for {representation!r}; one of {', '.join(SYNTAX_REPRESENTATIONS)}")
    rep = get(representation)
    ld = rep.length_decimals if length_decimals is None else length_decimals
    ad = rep.angle_decimals if angle_decimals is None else angle_decimals
    cd = rep.coord_decimals if coord_decimals is None else coord_decimals
    conditions = dict(conditions or {})
    elements = sorted(element_symbols(), key=lambda e: (-len(e), e))
    counts = None
    if "composition" in conditions or "formula" in conditions:
        from pymatgen.core import Composition

        comp = Composition(conditions.get("composition") or conditions["formula"])
        elements = sorted((el.symbol for el in comp), key=lambda e: (-len(e), e))
        if "composition" in conditions and len(comp) <= 4:
            counts = {el.symbol: int(round(n)) for el, n in comp.items()}
    frac = '"0." ' + " ".join(["[0-9]"] * cd)
    if representation == "coords":  # crystal-text-llm's 2 decimals round 0.995-1 up to 1.00 (the coords grammar too)
        frac = f'({frac}) | "1.{"0" * cd}"'
    rules = [
        f"length ::= {_number(3, ld)}",
        f"angle ::= {_number(3, ad)}",
        f"frac ::= {frac}",
        f"el ::= {_alt(elements)}",
        "count ::= [1-9] [0-9]? [0-9]?",
    ]
    lattice = 'length " " length " " length "\\n" angle " " angle " " angle'
    if representation == "coords":
        rules.insert(0, f'root ::= {lattice} ("\\n" el "\\n" frac " " frac " " frac)+ "\\n"?')
        return "\n".join(rules) + "\n"
    if counts is not None:
        lines = [" ".join(f"{el}{counts[el]}" for el in perm) for perm in itertools.permutations(counts)]
        formula = f"formula ::= {_alt(lines)}"
    else:
        formula = 'formula ::= el count (" " el count)*'
    if "spacegroup" in conditions:
        sg = f'sg ::= "{int(conditions["spacegroup"])}"'
    else:
        sg = 'sg ::= [1-9] [0-9]? | "1" [0-9] [0-9] | "2" [0-2] [0-9] | "230"'
    rules = [
        f'root ::= formula "\\n" sg "\\n" {lattice} ("\\n" orbit)+ "\\n"?',
        formula,
        sg,
        'orbit ::= el " " frac " " frac " " frac " " count [a-zA-Z]',
    ] + rules
    return "\n".join(rules) + "\n"


def xgrammar_processor(tokenizer, grammar: str, vocab_size: int | None = None):
    """A Hugging Face logits processor (xgrammar's ``contrib.hf.LogitsProcessor``) constraining every row of one
    ``generate`` call to ``grammar`` (EBNF); ``vocab_size`` is the model's (it may exceed the tokenizer's).
    Needs ``pip install 'plaid[xgrammar]'``."""
    try:
        import xgrammar as xgr
        import xgrammar.contrib.hf  # noqa: F401 - registers the HF processor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("xgrammar is not installed: pip install 'plaid[xgrammar]'") from exc
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size or len(tokenizer))
    compiled = xgr.GrammarCompiler(info, max_threads=1).compile_grammar(grammar)
    return xgr.contrib.hf.LogitsProcessor(compiled)
