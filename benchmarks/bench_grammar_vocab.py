"""Per-step cost of grammar-constrained decoding with a 32,000-piece LLaMA-2-like vocabulary, today's processor
vs the previous one (one trie walk per row, per-row index lists, a full boolean mask), in the same run.

    PLAID_DATA_DIR=../shared/data python benchmarks/bench_grammar_vocab.py [--batch-sizes 64,256] [--steps 120] \\
        [--repeats 3] [--representations wyckoff,coords] [--modes forced,random]

No model: the processors are driven directly, so the figure is the grammar's own work per decoding step (the
processor's wall time: advancing every row's state, computing its allowed tokens, building the masked scores of a
batch x 32,000 float32 tensor on CPU). Rows:

- ``forced``: each row follows the tokenizer's own (canonical) tokenization of a real Perov-5 validation structure's
  text, as a trained model would write it (rows are distinct structures; a row that ends is left free);
- ``random``: each row takes a uniformly random allowed token (an untrained model): more branching, longer texts.

Every step both processors see the same ``input_ids``; their masks must be equal (checked; the run stops
otherwise). Each gets its own, freshly built grammar objects per repeat (no warm caches from the other). Printed:
median ms per step of each, the ratio old / new, and in ``random`` mode how many finished rows' token sequences
differ from the tokenizer's encoding of their text (non-canonical tokenizations). The vocabulary is
``plaid.llama_vocab.llama_like_tokenizer()`` (built once, ~1 min CPU, then cached).

Sample first, mask on rejection (``--reject-rates``, what ``plaid sample`` does for plain temperature or greedy
sampling): the rows follow the same canonical texts, each row's drawn token is checked (``check_sampled``) and a
fraction of rows, drawn at the given rate, proposes a token outside the grammar instead (a model's mass outside the
grammar) and is masked and given the canonical token. Printed: median ms per step of the grammar's work (the
processor's own clock: advance, check, masks of the rejected rows), against the full mask of every row in the same
run. ``--model M`` first measures the rate a trained plaid model really has (its own tokenizer and grammar, T=1.0):
row-steps whose sampled token the grammar rejected, over ``--model-samples`` constrained samples.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch


class PreviousGrammarLogitsProcessor:
    """The processor as it was before this benchmark (kept here as the baseline): every row walks the trie from
    its own state each step, and the mask is a full boolean tensor filled from Python index lists."""

    def __init__(self, grammars, trie, max_new_tokens):
        self.grammars = list(grammars)
        self.trie = trie
        self.max_new_tokens = max_new_tokens
        self.states = [g.initial() for g in self.grammars]
        self.next = [{} for _ in self.grammars]
        self.done = [False] * len(self.grammars)
        self.failures = []
        self.prompt_len = None

    def _advance(self, last):
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
                self.failures.append(i)
                self.done[i] = True
            self.states[i] = state

    def __call__(self, input_ids, scores):
        batch, length = input_ids.shape
        if self.prompt_len is None:
            self.prompt_len = length
        else:
            self._advance(input_ids[:, -1].tolist())
        budget = self.max_new_tokens - (length - self.prompt_len) - 1
        rows, cols, free_rows = [], [], []
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
            if not ids:
                ids = list(self.trie.eos_ids)
            rows.extend([i] * len(ids))
            cols.extend(ids)
        mask = torch.ones_like(scores, dtype=torch.bool)
        if rows:
            mask[torch.tensor(rows), torch.tensor(cols)] = False
        if free_rows:
            mask[torch.tensor(free_rows)] = False
        return scores.masked_fill(mask, float("-inf"))


def real_texts(representation: str, n: int) -> list[str]:
    import os
    from pathlib import Path

    import pandas as pd
    from pymatgen.core import Structure

    from plaid.representations import get

    rep = get(representation)
    df = pd.read_csv(Path(os.environ.get("PLAID_DATA_DIR", "../shared/data")) / "perov_5" / "val.csv")
    out = []
    for cif in df["cif"]:
        try:
            out.append(rep.encode(Structure.from_str(cif, fmt="cif")))
        except Exception:  # noqa: BLE001 - an unencodable structure is skipped (counted below)
            continue
        if len(out) >= n:
            break
    return out


def grammar_for(representation: str):
    from plaid.representations import get
    from plaid.sampling.constrained import make_grammar

    rep = get(representation)
    if representation == "coords":
        return make_grammar(
            "coords",
            {},
            max_atoms=24,
            length_decimals=rep.length_decimals,
            angle_decimals=rep.angle_decimals,
            coord_decimals=rep.coord_decimals,
        )
    return make_grammar("wyckoff", {}, max_atoms=24)


def canonical(tok, prompt_ids: list[int], prompt: str, text: str) -> list[int] | None:
    ids = tok(prompt + text, add_special_tokens=False).input_ids
    return ids[len(prompt_ids) :] if ids[: len(prompt_ids)] == prompt_ids else None


def run_once(tok, trie, representation, mode, batch, steps, texts, seed):
    from plaid.prompts import generation_prompt
    from plaid.sampling.constrained import GrammarLogitsProcessor

    prompt = generation_prompt(representation)
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    max_new = 400
    old = PreviousGrammarLogitsProcessor([grammar_for(representation)] * batch, trie, max_new)
    new = GrammarLogitsProcessor([grammar_for(representation)] * batch, trie, max_new)
    forced = None
    if mode == "forced":
        forced = []
        for k in range(batch):
            ids = canonical(tok, prompt_ids, prompt, texts[k % len(texts)])
            forced.append(ids + [tok.eos_token_id])
    rng = random.Random(seed)
    vocab = len(tok)
    seq = [[] for _ in range(batch)]
    ended = [False] * batch
    t_old, t_new = [], []
    for step in range(steps):
        input_ids = torch.zeros((batch, 1 + step), dtype=torch.long)
        if step:
            input_ids[:, 1:] = torch.tensor(seq)
        scores = torch.zeros((batch, vocab))
        order = (old, new) if step % 2 == 0 else (new, old)
        outs = {}
        for proc in order:
            start = time.perf_counter()
            outs[proc] = proc(input_ids, scores)
            (t_old if proc is old else t_new).append(time.perf_counter() - start)
        a, b = torch.isfinite(outs[old]), torch.isfinite(outs[new])
        if not torch.equal(a, b):
            raise SystemExit(f"masks differ at step {step} ({representation}, {mode}, batch {batch})")
        if old.failures or new.failures:
            raise SystemExit(f"rows rejected by the grammar: old {old.failures}, new {new.failures}")
        for i in range(batch):
            if ended[i]:
                nxt = tok.eos_token_id
            elif forced is not None:
                nxt = forced[i][step] if step < len(forced[i]) else tok.eos_token_id
            else:
                allowed = torch.nonzero(b[i]).flatten().tolist()
                nxt = rng.choice(allowed)
            if nxt == tok.eos_token_id:
                ended[i] = True
            seq[i].append(nxt)
        if all(ended):
            break
    differ = finished = 0
    if mode == "random":
        for i in range(batch):
            if not ended[i]:
                continue
            body = [t for t in seq[i] if t != tok.eos_token_id]
            text = tok.decode(body, skip_special_tokens=True)
            finished += 1
            differ += canonical(tok, prompt_ids, prompt, text) != body
    return t_old, t_new, finished, differ


def run_check_first(tok, trie, representation, batch, steps, texts, rate, seed):
    """Per-step seconds of sample-then-check on canonical texts, ``rate`` of the row-steps rejected, and of the
    full mask of every row on the same texts."""
    from plaid.prompts import generation_prompt
    from plaid.sampling.constrained import GrammarLogitsProcessor

    prompt = generation_prompt(representation)
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    forced = [canonical(tok, prompt_ids, prompt, texts[k % len(texts)]) + [tok.eos_token_id] for k in range(batch)]
    outside = trie.strings.index("@")  # never part of a crystal text
    rng = random.Random(seed)
    vocab = len(tok)
    times = {}
    for how in ("check", "mask") if seed % 2 == 0 else ("mask", "check"):
        proc = GrammarLogitsProcessor([grammar_for(representation)] * batch, trie, 400)
        seq = [[] for _ in range(batch)]
        times[how] = []
        for step in range(steps):
            input_ids = torch.zeros((batch, 1 + step), dtype=torch.long)
            if step:
                input_ids[:, 1:] = torch.tensor(seq)
            scores = torch.zeros((batch, vocab))
            want = [f[step] if step < len(f) else tok.eos_token_id for f in forced]
            before = proc.seconds
            proc.begin(input_ids)
            if how == "check":
                drawn = [outside if rng.random() < rate else t for t in want]
                bad = proc.check_sampled(drawn)
                if bad:
                    out = proc.masked(scores[bad], bad)
                    if not all(torch.isfinite(out[k, want[i]]) for k, i in enumerate(bad)):
                        raise SystemExit("a canonical token was masked out")
            else:
                out = proc.masked(scores)
            times[how].append(proc.seconds - before)
            if proc.failures:
                raise SystemExit(f"rows rejected by the grammar: {proc.failures}")
            for i in range(batch):
                seq[i].append(want[i])
            if all(step >= len(f) for f in forced):
                break
    return times["check"], times["mask"]


def measured_reject_rate(model: str, n: int) -> tuple[int, int, float]:
    """(row-steps checked, rejected, seconds) of ``n`` constrained samples from a trained model at T=1.0, in the
    representation it was trained on."""
    from plaid.app.cli import model_representation
    from plaid.prompts import generation_prompt
    from plaid.sampling.constrained import make_grammar
    from plaid.sampling.generate import HFBackend, SamplingParams

    representation = model_representation(model) or "wyckoff"
    backend = HFBackend.load(model, device="cpu")
    grammar = make_grammar(representation, {}, max_atoms=24)
    start = time.perf_counter()
    backend.generate(
        [generation_prompt(representation)] * n, list(range(n)), SamplingParams(max_new_tokens=400), [grammar] * n
    )
    checked, rejected = backend.last_constraint_checks
    return checked, rejected, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--steps", type=int, default=120, help="decoding steps per run at most")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--representations", default="wyckoff,coords")
    parser.add_argument("--modes", default="forced,random")
    parser.add_argument("--reject-rates", default="0.01,0.1", help="sample-then-check runs ('' for none)")
    parser.add_argument("--model", help="a trained plaid model whose real rejection rate is measured first")
    parser.add_argument("--model-samples", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from plaid.llama_vocab import llama_like_tokenizer
    from plaid.sampling.constrained import TokenTrie

    if args.model:
        checked, rejected, seconds = measured_reject_rate(args.model, args.model_samples)
        print(
            f"{args.model}: {args.model_samples} constrained samples at T=1.0 in {seconds:.1f} s, sampled token "
            f"rejected at {rejected} of {checked} row-steps ({100 * rejected / max(checked, 1):.2f}%)"
        )
    tok = llama_like_tokenizer()
    trie = TokenTrie(tok)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    print(f"vocabulary: {len(tok)} ids (LLaMA-2-like, plaid.llama_vocab); 1 torch thread; up to {args.steps} steps")
    print("| representation | rows | batch | old ms/step | new ms/step | old / new | non-canonical |")
    print("|---|---|---|---|---|---|---|")
    for representation in args.representations.split(","):
        texts = real_texts(representation, max(batches)) if "forced" in args.modes else []
        for mode in [m for m in args.modes.split(",") if m]:
            for batch in batches:
                old_ms, new_ms, ratios, fin, diff = [], [], [], 0, 0
                for r in range(args.repeats):
                    t_old, t_new, f, d = run_once(tok, trie, representation, mode, batch, args.steps, texts, r)
                    old_ms.append(1e3 * statistics.median(t_old))
                    new_ms.append(1e3 * statistics.median(t_new))
                    ratios.append(sum(t_old) / sum(t_new))
                    fin, diff = fin + f, diff + d
                canon = f"{diff}/{fin} samples" if mode == "random" else "canonical by construction"
                print(
                    f"| {representation} | {mode} | {batch} | {statistics.median(old_ms):.2f} | "
                    f"{statistics.median(new_ms):.2f} | {statistics.median(ratios):.2f}x | {canon} |",
                    flush=True,
                )

    rates = [float(r) for r in args.reject_rates.split(",") if r]
    if rates:
        print()
        print("| representation | batch | rejected row-steps | sample-then-check ms/step | full masks ms/step | ratio |")
        print("|---|---|---|---|---|---|")
    for representation in args.representations.split(",") if rates else []:
        texts = real_texts(representation, max(batches))
        for rate in rates:
            for batch in batches:
                check_ms, mask_ms = [], []
                for r in range(args.repeats):
                    t_check, t_mask = run_check_first(tok, trie, representation, batch, args.steps, texts, rate, r)
                    check_ms.append(1e3 * statistics.median(t_check))
                    mask_ms.append(1e3 * statistics.median(t_mask))
                c, m = statistics.median(check_ms), statistics.median(mask_ms)
                print(f"| {representation} | {batch} | {100 * rate:.0f}% | {c:.2f} | {m:.2f} | {m / c:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
