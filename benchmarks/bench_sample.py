"""Sampling throughput and parse rate on CPU, constrained vs unconstrained decoding, batch sizes 1-64.

    python benchmarks/bench_sample.py [--model DIR] [--batch-sizes 1,4,16,64] [--samples 64] [--repeats 3]

Without --model, an untrained ``plaid-tiny-llama`` (2 layers, built locally) is used: its unconstrained parse rate
is ~0 and the constrained one must be 1.0. For each batch size both modes sample the same prompts and seeds; the
printed figures are medians over repeats: samples/s, ms per decoding step (wall time / steps, where a batch takes
as many steps as its longest sample) and the constrained/unconstrained ratio of the latter, the grammar's overhead
(the target is <= 2x). Samples/s differ also because constrained samples have different lengths, and a step's cost
grows with the sequence length, so the per-step ratio is confounded; "overhead" is the cleaner figure: the
constrained run's wall time over the same run minus the time spent inside the grammar's logits processor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: untrained plaid-tiny-llama)")
    parser.add_argument("--batch-sizes", default="1,4,16,64")
    parser.add_argument("--samples", type=int, default=64, help="samples per batch size and mode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-atoms", type=int, default=24)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for a tiny model)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from plaid.prompts import generation_prompt
    from plaid.representations import get
    from plaid.sampling.constrained import make_grammar
    from plaid.sampling.generate import HFBackend, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from plaid.tokenizer import build_tokenizer
            from plaid.training.model import create_local_model

            torch.manual_seed(0)
            path = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp)
        backend = HFBackend.load(path, device="cpu")
        rep = get("wyckoff")
        prompt = generation_prompt("wyckoff")
        grammar = make_grammar("wyckoff", {}, max_atoms=args.max_atoms)
        params = SamplingParams(max_new_tokens=args.max_new_tokens)
        backend.generate([prompt] * 2, [0, 1], params, [grammar] * 2)  # warm-up: space-group tables, trie
        print(
            f"model: {path if args.model else 'untrained plaid-tiny-llama'}; threads={args.threads}; "
            f"max_new_tokens={args.max_new_tokens}; max_atoms={args.max_atoms}; medians of {args.repeats}"
        )
        print(
            f"{'batch':>5} {'mode':>13} {'samples/s':>10} {'ms/step':>8} {'parse':>6} {'step ratio':>10} "
            f"{'overhead':>9}"
        )
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            n = max(args.samples, bs)
            results = {}
            for mode in ("unconstrained", "constrained"):
                rates, step_ms, parsed, overhead = [], [], [], []
                for r in range(args.repeats):
                    seeds = list(range(r * n, (r + 1) * n))
                    elapsed, steps, ok, grammar_s = 0.0, 0, 0, 0.0
                    for start in range(0, n, bs):
                        batch_seeds = seeds[start : start + bs]
                        grammars = [grammar] * len(batch_seeds) if mode == "constrained" else None
                        t0 = time.perf_counter()
                        gens = backend.generate([prompt] * len(batch_seeds), batch_seeds, params, grammars)
                        elapsed += time.perf_counter() - t0
                        grammar_s += backend.last_constraint_seconds
                        steps += max(g.num_tokens for g in gens)
                        for g in gens:
                            try:
                                rep.decode(g.text)
                                ok += 1
                            except ValueError:
                                pass
                    rates.append(n / elapsed)
                    step_ms.append(1000 * elapsed / steps)
                    parsed.append(ok / n)
                    overhead.append(elapsed / (elapsed - grammar_s))
                results[mode] = (
                    statistics.median(rates),
                    statistics.median(step_ms),
                    statistics.median(parsed),
                    statistics.median(overhead),
                )
            base = results["unconstrained"][1]
            for mode, (rate, ms, pr, over) in results.items():
                ratio = f"{ms / base:.2f}x" if mode == "constrained" else "1.00x"
                print(f"{bs:>5} {mode:>13} {rate:>10.2f} {ms:>8.2f} {pr:>6.2f} {ratio:>10} {over:>8.2f}x")


if __name__ == "__main__":
    main()
