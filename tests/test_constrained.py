"""Grammar-constrained decoding: the Wyckoff grammar on real and hand-made texts, site-count feasibility with known
answers, and 100% decodable samples from an UNTRAINED tiny model (unconstrained rate reported for comparison)."""

from __future__ import annotations

import random

import pytest
from pymatgen.core import Composition

from plaid.representations import get
from plaid.sampling.constrained import TokenTrie, make_grammar, token_strings
from plaid.sampling.grammar import (
    BIG,
    SiteCounter,
    WyckoffGrammar,
    angle_interval,
    cell_factor,
    number_complete,
    number_prefix_ok,
)


@pytest.fixture(scope="module")
def grammar():
    return WyckoffGrammar()


@pytest.fixture(scope="module")
def real_texts(perov_structures, carbon_structures):
    rep = get("wyckoff")
    return [rep.encode(s) for s in perov_structures[:25] + carbon_structures[:25]]


def _accepts(g, text):
    state = g.feed(text)
    return state is not None and g.can_end(state)


def test_real_texts_are_accepted(grammar, real_texts):
    for text in real_texts:
        assert _accepts(grammar, text), text
        assert _accepts(grammar, text + "\n"), "a trailing newline before EOS is fine"


def test_prefixes_of_real_texts_cannot_end(grammar, real_texts):
    text = real_texts[0]
    cut = text[: text.rindex("\n")]  # one orbit line missing: the site counts are not filled
    state = grammar.feed(cut)
    assert state is not None and not grammar.can_end(state)


BATIO3 = "Ba1 Ti1 O3\n221\n3.95 3.95 3.95\n90.00 90.00 90.00\nBa 0.500 0.500 0.500 1b\nTi 0.000 0.000 0.000 1a\nO 0.000 0.500 0.500 3c"


@pytest.mark.parametrize(
    "bad, why",
    [
        (BATIO3.replace("Ba1", "Xq1"), "unknown element"),
        (BATIO3.replace("221", "231"), "space group > 230"),
        (BATIO3.replace("221", "021"), "leading zero"),
        (BATIO3.replace("3c", "3z"), "letter not in Pm-3m"),
        (BATIO3.replace("3c", "6c"), "multiplicity inconsistent with the letter"),
        (BATIO3.replace("1a", "1b"), "fixed position used twice"),
        (BATIO3.replace("0.000 0.500 0.500 3c", "1.000 0.500 0.500 3c"), "fractional coordinate >= 1"),
        (BATIO3.replace("90.00 90.00 90.00", "90.00 90.00 190.00"), "angle > 180"),
        (BATIO3.replace("90.00 90.00 90.00", "60.00 60.00 150.00"), "angles that form no cell"),
        (BATIO3.replace("3.95 3.95 3.95", "3.95 0.20 3.95"), "length out of range"),
        (BATIO3.replace("O3", "O4"), "formula/site count mismatch"),
        (BATIO3.replace("Ba1 Ti1", "Ba1 Ba1"), "element twice in the formula"),
        (BATIO3 + "\nO 0.000 0.500 0.500 3c", "more atoms than the formula"),
        (BATIO3.replace("Ba 0.500", "Sr 0.500"), "orbit element not in the formula"),
        (BATIO3.replace("3.95 3.95", "3.95  3.95"), "double space"),
    ],
)
def test_bad_texts_are_rejected(grammar, bad, why):
    assert _accepts(grammar, BATIO3)
    assert not _accepts(grammar, bad), why


def test_collapsing_orbit_is_rejected():
    # P-1 general position 2i at an inversion centre collapses onto one site: the decoder rejects it.
    g = WyckoffGrammar()
    head = "Na2\n2\n4.00 5.00 6.00\n80.00 85.00 95.00\nNa "
    assert _accepts(g, head + "0.100 0.200 0.300 2i")
    assert not _accepts(g, head + "0.500 0.500 0.500 2i")
    assert _accepts(g, head.replace("Na2", "Na1 Cl1") + "0.500 0.500 0.500 1h\nCl 0.000 0.000 0.000 1a")


def test_site_counter_known_answers():
    c = SiteCounter(max_atoms=64)
    assert c.min_orbits(1, [5]) == 5  # P1: one atom per orbit
    assert c.min_orbits(221, [1, 1, 3]) == 3  # BaTiO3 in Pm-3m: 1a, 1b, 3c
    assert c.min_orbits(225, [4, 4]) == 2  # NaCl in Fm-3m: 4a, 4b
    assert c.min_orbits(225, [1]) == BIG  # Fm-3m has no position with fewer than 4 sites
    assert c.min_orbits(225, [4, 4, 8]) == 3  # 4a, 4b, 8c
    assert c.min_orbits(225, [4, 4, 4]) == BIG  # only two 4-fold positions (4a, 4b), each usable once
    assert c.min_orbits(47, [9]) == 2  # Pmmm: 8 fixed 1-fold positions + one 8-fold general = 2 orbits


def test_number_automaton():
    assert number_prefix_ok("", 1.0, 100.0, 3, 2)
    assert not number_prefix_ok("0", 1.0, 100.0, 3, 2)  # 0.xx < 1
    assert number_prefix_ok("100", 1.0, 100.0, 3, 2) and not number_prefix_ok("100.1", 1.0, 100.0, 3, 2)
    assert not number_prefix_ok("101", 1.0, 100.0, 3, 2)
    assert not number_prefix_ok("05", 0.0, 100.0, 3, 2)
    assert number_prefix_ok("0.99", 0.0, 0.999, 1, 3) and not number_prefix_ok("1", 0.0, 0.999, 1, 3)
    assert number_complete("3.95", 1.0, 100.0, 2) and not number_complete("3.", 1.0, 100.0, 2)
    assert not number_complete("3.951", 1.0, 100.0, 2)


def test_angle_intervals_leave_a_cell():
    lo, hi = angle_interval(())
    assert 0 < lo < 1 and 179 < hi < 180
    lo, hi = angle_interval((60.0, 60.0))  # gamma must lie strictly between 0 and 120 degrees
    assert 0 < lo < 1 and 119 < hi < 120
    assert cell_factor(60.0, 60.0, (lo + hi) / 2) > 0


def _random_walk(g, rng, budget):
    state, text = g.initial(), ""
    while True:
        budget -= 1
        options = [
            (ch, s)
            for ch in g.next_chars(state)
            for s in [g.step(state, ch)]
            if s is not None and s.u <= budget
        ]
        if not options or (g.can_end(state) and rng.random() < 0.3):
            assert g.can_end(state), f"dead end at {text!r}"
            return text
        ch, state = rng.choice(options)
        text += ch


@pytest.mark.parametrize("budget", [80, 120, 400])
def test_random_walks_always_decode_within_budget(grammar, budget):
    rep = get("wyckoff")
    rng = random.Random(budget)
    for _ in range(40):
        text = _random_walk(grammar, rng, budget)
        assert len(text) <= budget
        rep.decode(text)


def test_conditions_are_forced():
    rep = get("wyckoff")
    rng = random.Random(0)
    g = make_grammar("wyckoff", {"formula": "BaTiO3", "spacegroup": "221"}, max_atoms=40)
    for _ in range(20):
        text = _random_walk(g, rng, 300)
        s = rep.decode(text)
        assert s.composition.reduced_formula == "BaTiO3"
        assert text.split("\n")[1] == "221"
    g = make_grammar("wyckoff", {"composition": "Na4Cl4"})
    text = _random_walk(g, rng, 300)
    assert rep.decode(text).composition == Composition("Na4Cl4")


def test_infeasible_conditions_raise_before_generation():
    with pytest.raises(ValueError, match="no crystal satisfies"):
        make_grammar("wyckoff", {"formula": "BaTiO3", "z": "1", "spacegroup": "225"})
    with pytest.raises(ValueError, match="implemented for wyckoff"):
        make_grammar("cif", {})


# ------------------------------------------------------------------------------------------ with a model


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    import torch

    from plaid.sampling.generate import HFBackend
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    path = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared CPU: one thread is fastest
    yield HFBackend.load(path, device="cpu")
    torch.set_num_threads(threads)


def test_token_strings_of_domain_tokenizer(tiny_backend):
    tok = tiny_backend.tokenizer
    strings = token_strings(tok)
    assert strings[tok.eos_token_id] is None and strings[tok.pad_token_id] is None
    assert strings[tok.convert_tokens_to_ids("Ba")] == "Ba"
    assert strings[tok.convert_tokens_to_ids("\n")] == "\n"
    trie = TokenTrie(tok)
    allowed = trie.allowed(WyckoffGrammar(), WyckoffGrammar().initial(), 500)
    names = {strings[i] for i in allowed}
    assert "Ba" in names and "B" in names and "Xq" not in names and "1" not in names


def test_untrained_model_constrained_decodes_every_sample(tiny_backend):
    from plaid.prompts import generation_prompt
    from plaid.sampling.generate import SamplingParams

    rep = get("wyckoff")
    prompt = generation_prompt("wyckoff")
    n = 16
    params = SamplingParams(max_new_tokens=200)
    grammar = make_grammar("wyckoff", {}, max_atoms=24)
    constrained = tiny_backend.generate([prompt] * n, list(range(n)), params, [grammar] * n)
    unconstrained = tiny_backend.generate([prompt] * n, list(range(n)), params, None)

    def rate(gens):
        ok = 0
        for g in gens:
            try:
                rep.decode(g.text)
                ok += 1
            except ValueError:
                pass
        return ok / len(gens)

    print(
        f"untrained tiny model, {n} samples: constrained parse rate {rate(constrained):.2f}, "
        f"unconstrained {rate(unconstrained):.2f}"
    )
    assert rate(constrained) == 1.0
    assert all(
        len(tiny_backend.tokenizer(g.text, add_special_tokens=False).input_ids) <= 200 for g in constrained
    )
    assert rate(unconstrained) < 1.0  # an untrained model writes noise; the grammar is what makes it decode


def test_constrained_conditional_and_infill(tiny_backend):
    from plaid.prompts import generation_prompt, infill_prompt
    from plaid.sampling.generate import SamplingParams

    rep = get("wyckoff")
    cond = {"formula": "NaCl", "spacegroup": "225"}
    grammar = make_grammar("wyckoff", cond, max_atoms=16)
    gens = tiny_backend.generate(
        [generation_prompt("wyckoff", cond)] * 4,
        [1, 2, 3, 4],
        SamplingParams(max_new_tokens=120),
        [grammar] * 4,
    )
    for g in gens:
        s = rep.decode(g.text)
        assert s.composition.reduced_formula == "NaCl" and g.text.split("\n")[1] == "225"
    masked = rep.mask_element(BATIO3, "Ti")
    infill = make_grammar("wyckoff", task="infill")
    gens = tiny_backend.generate(
        [infill_prompt(masked)] * 4, [5, 6, 7, 8], SamplingParams(max_new_tokens=4), [infill] * 4
    )
    for g in gens:
        rep.decode(masked.replace("[MASK]", g.text))


# ------------------------------------------------------------------------------------------ coords text


def _coords_grammar(**kw):
    rep = get("coords")
    options = dict(
        length_decimals=rep.length_decimals,
        angle_decimals=rep.angle_decimals,
        coord_decimals=rep.coord_decimals,
    )
    options.update(kw)
    return make_grammar("coords", {}, **options)


def test_coords_grammar_accepts_real_texts_and_walks_decode(perov_structures, carbon_structures):
    rep = get("coords")
    g = _coords_grammar(max_atoms=24)
    for s in perov_structures[:20] + carbon_structures[:20]:
        assert _accepts(g, rep.encode(s))
    assert not _accepts(g, "3.9 3.9 3.9\n90 90 90\nBa\n0.500 0.500")  # a site without its third coordinate
    assert not _accepts(g, "3.9 3.9 3.9\n60 60 150\nBa\n0.500 0.500 0.500")  # no cell
    rng = random.Random(1)
    for budget in (60, 200):
        for _ in range(30):
            text = _random_walk(g, rng, budget)
            assert len(text) <= budget
            rep.decode(text)


def test_untrained_model_constrained_coords(tiny_backend):
    from plaid.prompts import generation_prompt
    from plaid.sampling.generate import SamplingParams

    rep = get("coords")
    grammar = _coords_grammar(max_atoms=8)
    gens = tiny_backend.generate(
        [generation_prompt("coords")] * 8, list(range(8)), SamplingParams(max_new_tokens=120), [grammar] * 8
    )
    for g in gens:
        rep.decode(g.text)
