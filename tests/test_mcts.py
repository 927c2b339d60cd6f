"""MCTS decoding: the tree logic on a fake policy, the reward, a tiny local model under the grammar with a fast fake
scorer, the plaid sample --mcts CLI (resume), and one run with a real MLIP (CHGNet)."""

from __future__ import annotations

import json
import math

import pytest

from plaid.sampling.mcts.scoring import CompletionScorer, CrystaLLMReward
from plaid.sampling.mcts.tree import Child, Evaluation, Node, Search, TreeConfig

EOS = 0


class ToyPolicy:
    """A made-up language: tokens 1..4 and EOS, texts of at most ``length`` tokens; after token 4 the next token is
    4 again with weight ``sure`` (to exercise the only-child rule)."""

    def __init__(self, length=4, sure=0.995):
        self.length, self.sure, self.calls, self.rollouts = length, sure, 0, 0

    def children(self, context, state, width):
        self.calls += 1
        if len(context) >= self.length:
            return [Child(EOS, 1.0, None, True)]
        last = len(context) + 1 >= self.length
        if context and context[-1] == 4:
            rest = (1 - self.sure) / 3
            kids = [Child(4, self.sure, None, last)] + [Child(t, rest, None, last) for t in (1, 2, 3)]
        else:
            kids = [Child(t, w, None, last) for t, w in ((1, 0.4), (2, 0.3), (3, 0.2), (4, 0.1))]
        return kids[:width]

    def rollout(self, context, state, width, seed):
        import random

        self.rollouts += 1
        rng = random.Random(seed)
        out = list(context)
        while len(out) < self.length:
            out.append(rng.choice((1, 2, 3, 4)[:width]))
            self.calls += 1
        return tuple(out) + (EOS,)


def _score(tokens):
    """Lower is better: the distance of the text from 3 3 3 3; texts that start with 1 are invalid."""
    body = [t for t in tokens if t != EOS]
    if body[:1] == [1]:
        return Evaluation(False, None, "starts with 1")
    return Evaluation(True, float(sum(abs(t - 3) for t in body)))


def _search(policy=None, **kw):
    policy = policy or ToyPolicy()
    cfg = TreeConfig(**{"iterations": 60, "width": 4, **kw})
    return Search(policy, _score, CrystaLLMReward(), cfg, calls=lambda: policy.calls), policy


def test_reward_is_crystallm_sigmoid_of_the_running_z_score():
    r = CrystaLLMReward(lam=2.0)
    assert r(Evaluation(True, 1.0)) == 0.5  # one score: 0.5
    # scores [1, 2]: mu 1.5, sigma 0.5 (population), z = 1 -> 1 / (1 + e^2)
    assert r(Evaluation(True, 2.0)) == pytest.approx(1 / (1 + math.e**2))
    assert r(Evaluation(False, None, "bad")) == -1.0  # worst reward, and not part of the statistics
    assert r.scores == [1.0, 2.0]
    # lower energy than the mean -> reward above 0.5
    assert r(Evaluation(True, 0.0)) > 0.5
    same = CrystaLLMReward()
    assert same(Evaluation(True, 3.0)) == same(Evaluation(True, 3.0)) == 0.5  # all equal: 0.5


def test_puct_prefers_unvisited_then_value_plus_prior_bonus():
    parent = Node((), None, visits=9)
    a = Node((1,), None, prior=0.5, parent=parent, visits=3, value=1.5)
    b = Node((2,), None, prior=0.1, parent=parent, visits=0)
    assert b.puct(1.0) == math.inf
    assert a.puct(1.0) == pytest.approx(1.5 / 3 + 1.0 * 0.5 * 3 / 4)
    assert a.puct(0.0) == pytest.approx(0.5)


def test_backup_counts_every_iteration_on_the_path():
    search, _ = _search(iterations=40)
    result = search.run(lambda it, r: it)
    assert search.root.visits == 40 == len(result.visits)

    def check(node):
        # a node is visited once per iteration whose leaf lies in its subtree: a non-terminal node was the leaf
        # once (the iteration that created it; the root never), a terminal one every time it was selected
        own = node.visits - sum(c.visits for c in node.children)
        if not node.terminal:
            assert own == (0 if node is search.root else 1)
        for c in node.children:
            check(c)

    check(search.root)
    total = sum(v.evaluation.reward for v in result.visits)
    assert search.root.value == pytest.approx(total)


def test_expansion_adds_top_width_children_with_renormalised_priors():
    search, _ = _search(iterations=4, width=2)
    search.run(lambda it, r: it)
    priors = sorted(c.prior for c in search.root.children)
    assert len(search.root.children) == 2 and not search.root.untried
    assert priors == pytest.approx([0.3, 0.4])  # the toy policy's weights, top-2 (the policy renormalises)


def test_near_certain_only_child_is_appended_without_a_rollout():
    policy = ToyPolicy(length=6)
    search = Search(policy, _score, CrystaLLMReward(), TreeConfig(iterations=200, width=4), calls=lambda: 0)
    search.run(lambda it, r: it)
    # every child of a node whose context ends in 4 extends the 4 -> 4 chain inside the same node
    stack, seen = [search.root], 0
    while stack:
        node = stack.pop()
        for c in node.children:
            added = c.context[len(node.context):]
            if len(added) > 1:
                seen += 1
                assert all(t == 4 for t in added[:-1])
        stack.extend(node.children)
    assert seen > 0
    no_extend = Search(ToyPolicy(length=6), _score, CrystaLLMReward(),
                       TreeConfig(iterations=200, width=4, extend_only_child=False), calls=lambda: 0)
    no_extend.run(lambda it, r: it)
    stack = [no_extend.root]
    while stack:
        node = stack.pop()
        for c in node.children:
            assert len(c.context) == len(node.context) + 1
        if node.context and node.context[-1] == 4 and (node.children or node.untried):
            assert len(node.children) + len(node.untried) == 1  # the single child, weight 1
        stack.extend(node.children)


def test_search_concentrates_on_the_best_branch_and_finds_the_optimum():
    import random
    import statistics

    search, policy = _search(iterations=120)
    result = search.run(lambda it, r: it)
    best = min((v for v in result.visits if v.evaluation.valid), key=lambda v: v.evaluation.score)
    assert best.evaluation.score == 0.0 and best.tokens[:4] == (3, 3, 3, 3)
    by_first = {c.context[0]: c.visits for c in search.root.children}
    assert max(by_first, key=by_first.get) == 3  # the branch of the optimum gets most visits
    assert by_first[1] == min(by_first.values())  # texts starting with 1 are invalid (reward -1)
    # the second half of the search scores far better than as many uniform random texts
    late = [v.evaluation.score if v.evaluation.valid else 9 for v in result.visits[60:]]
    rng = random.Random(0)
    rand = [_score(tuple(rng.choice((1, 2, 3, 4)) for _ in range(4))) for _ in range(60)]
    assert statistics.mean(late) < statistics.mean(e.score if e.valid else 9 for e in rand) - 2
    assert result.stats["iterations"] == 120 and result.stats["best_score"] == 0.0
    assert result.stats["model_calls"] == policy.calls


def test_terminal_leaf_is_re_evaluated_not_rolled_out():
    policy = ToyPolicy(length=1)
    search = Search(policy, _score, CrystaLLMReward(), TreeConfig(iterations=30, width=4), calls=lambda: 0)
    result = search.run(lambda it, r: it)
    assert policy.rollouts == 0  # every child of the root ends the text
    assert {v.tokens for v in result.visits} == {(t,) for t in (1, 2, 3, 4)}  # the budget ends each text


def test_deadline_stops_the_search():
    import time

    search, _ = _search(iterations=1000)
    result = search.run(lambda it, r: it, deadline=time.monotonic() - 1)
    assert result.visits == [] and "time limit" in result.stats["stopped"]


# ---------------------------------------------------------------------------------------- tiny model + grammar


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    import torch

    from plaid.sampling.generate import HFBackend
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    path = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFBackend.load(path, device="cpu")
    torch.set_num_threads(threads)


def volume_energy(structures):
    """A fast fake energy: volume per atom (eV/atom stands in for A^3/atom)."""
    return [{"score": s.volume / len(s), "energy_per_atom": s.volume / len(s)} for s in structures]


def _mcts(backend, iterations=12, **tree):
    from plaid.sampling.generate import SamplingParams
    from plaid.sampling.mcts import MCTSConfig, MCTSSampler
    from plaid.sampling.run import SampleConfig

    cfg = SampleConfig(constrained=True, params=SamplingParams(max_new_tokens=160), grammar_options={"max_atoms": 6})
    scorer = CompletionScorer("wyckoff", volume_energy, validity="structural")
    return MCTSSampler(backend, cfg, MCTSConfig(TreeConfig(iterations=iterations, **tree)), scorer)


def test_grammar_mask_applies_inside_the_tree_and_in_rollouts(tiny_backend):
    from plaid.sampling.mcts.constraint import GrammarCursor
    from plaid.sampling.mcts.model import LMPolicy
    from plaid.sampling.requests import make_request

    mcts = _mcts(tiny_backend)
    req = make_request("nacl", {"formula": "NaCl"})
    out = mcts.search(req)
    assert len(out.records) == 12
    assert all(r["parsed"] for r in out.records)  # untrained model: only the grammar makes these decode
    assert all(r["formula"] == "NaCl" for r in out.records)
    # rebuild a tree by hand and check every expanded child token against the grammar
    grammar = mcts.sampler.grammar(req, req.conditions)
    cursor = GrammarCursor(grammar, tiny_backend.trie)
    tok = tiny_backend.tokenizer
    prompt_ids = tok(out.records[0]["prompt"])["input_ids"]
    policy = LMPolicy(tiny_backend.model, tok, prompt_ids, 160, 1.0, cursor)
    search = Search(policy, lambda t: Evaluation(True, 0.0), CrystaLLMReward(), TreeConfig(iterations=6),
                    cursor.initial(), calls=lambda: policy.calls)
    search.run(lambda it, r: it)
    stack = [search.root]
    while stack:
        node = stack.pop()
        for child in node.children:
            state = node.state
            for k, t in enumerate(child.context[len(node.context):]):
                allowed = cursor.allowed(state, 160 - len(node.context) - k - 1)
                assert t in allowed
                state = allowed[t]
        stack.extend(node.children)
    assert search.n_nodes > 1


def test_records_have_sample_fields_reward_iteration_tree_and_one_best(tiny_backend):
    from plaid.sampling.requests import make_request

    out = _mcts(tiny_backend).search(make_request("kcl", {"formula": "KCl"}))
    recs = out.records
    for key in ("sample_id", "request_id", "prompt", "text", "parsed", "cif", "seed", "run_seed", "model",
                "reward", "iteration", "first_iteration", "valid", "score", "tree", "model_calls", "rank"):
        assert key in recs[0], key
    assert [r["iteration"] for r in recs] == list(range(1, 13))
    assert len({r["sample_id"] for r in recs}) == 12
    best = [r for r in recs if r["best"]]
    valid = [r for r in recs if r["valid"]]
    assert len(best) == (1 if valid else 0)
    if valid:
        assert best[0]["score"] == min(r["score"] for r in valid) and best[0]["rank"] == 1
        from pymatgen.core import Structure

        structure = Structure.from_str(best[0]["cif"], fmt="cif")
        assert best[0]["score"] == pytest.approx(structure.volume / len(structure), rel=1e-3)
    assert sum(r["model_calls"] for r in recs) <= out.stats["model_calls"]
    assert out.stats["root_visits"] == 12


def test_same_seed_same_search(tiny_backend):
    from plaid.sampling.requests import make_request

    a = _mcts(tiny_backend, iterations=6).search(make_request("x", {"formula": "NaCl"}))
    b = _mcts(tiny_backend, iterations=6).search(make_request("x", {"formula": "NaCl"}))
    assert [r["text"] for r in a.records] == [r["text"] for r in b.records]


def test_scorer_caches_by_text_and_rejects_condition_mismatch():
    calls = []

    def energy(structures):
        calls.append(len(structures))
        return volume_energy(structures)

    text = "Na1 Cl1\n225\n5.60 5.60 5.60\n90.00 90.00 90.00\nNa 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b"
    scorer = CompletionScorer("wyckoff", energy, validity="structural")
    ev = scorer.evaluate(text, {"formula": "NaCl"})  # 4a/4b orbits hold 4 + 4 atoms, not Na1 Cl1
    assert not ev.valid and ev.reason.startswith("does not decode")
    ok = "Na4 Cl4\n225\n5.60 5.60 5.60\n90.00 90.00 90.00\nNa 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b"
    first = scorer.evaluate(ok, {"formula": "NaCl"})
    again = scorer.evaluate(ok, {"formula": "NaCl"})
    assert first.valid and again.valid and first.score == again.score == pytest.approx(5.6**3 / 8)
    assert again.extra["cached"] and not first.extra["cached"]
    wrong = scorer.evaluate(ok, {"formula": "KCl"})
    assert not wrong.valid and "not the requested KCl" in wrong.reason
    assert calls == [1]  # the energy of a text is computed once, whatever the conditions
    bad = scorer.evaluate("Na4 Cl4\n225\n5.60", {})
    assert not bad.valid and bad.reason.startswith("does not decode")


def test_cli_mcts_with_chgnet_writes_resumable_records(tiny_backend, tmp_path, capsys):
    """The real-MLIP test: CHGNet single-point energies, crystallm validity, through plaid sample --mcts."""
    from plaid.cli import main
    from plaid.io import read_jsonl

    model = tiny_backend.model_path
    out = tmp_path / "m.jsonl"
    argv = ["sample", "--model", model, "--out", str(out), "--formula", "NaCl", "--constrained",
            "--max-atoms", "4", "--max-new-tokens", "160", "--mcts", "--mcts-iterations", "4", "--device", "cpu",
            "--no-progress", "--mcts-validity", "structural"]
    assert main(argv) == 0
    recs = read_jsonl(out)
    assert len(recs) == 4 and all(r["decoding"] == "mcts" for r in recs)
    summary = json.loads((tmp_path / "m.jsonl.summary.json").read_text())
    assert summary["rollouts"] == 4
    assert summary["settings"]["scorer"]["energy_model"] == "chgnet"
    scored = [r for r in recs if r["valid"]]
    assert scored  # structurally valid NaCl cells from the grammar, each with a CHGNet energy
    for r in scored:
        assert r["energy_per_atom"] is not None and math.isfinite(r["energy_per_atom"])
        assert -15 < r["energy_per_atom"] < 30  # eV/atom: CHGNet on a decoded NaCl cell
    for r in recs:
        if not r["valid"]:
            assert r["reward"] == -1.0 and r["invalid_reason"]
    capsys.readouterr()
    assert main(argv) == 0  # resume: nothing redone
    assert len(read_jsonl(out)) == 4
    assert json.loads((tmp_path / "m.jsonl.summary.json").read_text())["searched_this_run"] == 0
    other = argv[:]
    other[other.index("4", other.index("--mcts-iterations"))] = "5"
    assert main(other) == 2  # other MCTS settings on the same file: refused
    assert "different request" in capsys.readouterr().err


def test_cli_rejects_mcts_misuse_before_loading(tmp_path, capsys):
    from plaid.cli import main

    base = ["sample", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o.jsonl"), "--mcts"]
    assert main(base + ["--formula", "NaCl", "--z-scan"]) == 2
    assert "Z-scan" in capsys.readouterr().err
    assert main(base + ["--formula", "NaCl", "--mcts-width", "0"]) == 2
    assert "width" in capsys.readouterr().err
