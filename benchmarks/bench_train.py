"""Training throughput of the tiny SFT config on CPU: real (non-pad) tokens per second, with and without packing.

    PLAID_DATA_DIR=/path/to/data python benchmarks/bench_train.py [--steps 20] [--repeats 3]

The baseline is the tiny config as shipped (no packing, right padding), measured in the same run. Each variant is
trained ``--steps`` steps ``--repeats`` times from the same locally created tiny LLaMA; the median tokens/s is
reported with its ratio to the baseline. Tokens are TRL's ``num_tokens`` (attention-mask tokens, i.e. without
padding) over ``train_runtime``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TINY_SFT = ROOT / "recipes" / "configs" / "tiny" / "sft.yaml"
VARIANTS = {
    "no packing (baseline)": ["--packing", "false"],
    "packing bfd (padding-free)": ["--packing", "true", "--packing_strategy", "bfd"],
    "packing wrapped": ["--packing", "true", "--packing_strategy", "wrapped"],
}


def measure(workdir: Path, dataset: str, extra: list[str], steps: int, batch: int) -> float:
    from plaid.training.args import parse_recipe_config
    from plaid.training.run import build_sft_trainer

    args = parse_recipe_config(
        "sft", TINY_SFT,
        "--output_dir", str(workdir), "--dataset_source", dataset, "--max_steps", str(steps),
        "--per_device_train_batch_size", str(batch), "--logging_steps", str(steps), "--disable_tqdm", "true",
        *extra,
    )  # fmt: skip
    from transformers.trainer_callback import PrinterCallback

    trainer = build_sft_trainer(*args)
    trainer.remove_callback(PrinterCallback)  # quiet: only the table is printed
    trainer.train()
    logs = trainer.state.log_history
    tokens = max(e["num_tokens"] for e in logs if "num_tokens" in e)
    runtime = next(e["train_runtime"] for e in logs if "train_runtime" in e)
    return tokens / runtime


def main() -> None:
    import logging

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-structures", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if not os.environ.get("PLAID_DATA_DIR"):
        raise SystemExit("set PLAID_DATA_DIR (perov_5/val.csv is used)")

    from plaid.data import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp) / "dataset"
        build_dataset(
            str(Path(os.environ["PLAID_DATA_DIR"]) / "perov_5" / "val.csv"),
            "wyckoff",
            out_dir=built,
            max_structures=args.max_structures,
        )
        results = {}
        for repeat in range(args.repeats):
            for name, extra in VARIANTS.items():  # interleaved so load changes hit every variant alike
                rate = measure(Path(tmp) / f"run{repeat}", str(built), extra, args.steps, args.batch)
                results.setdefault(name, []).append(rate)
    base = statistics.median(results["no packing (baseline)"])
    print(
        f"tiny SFT ({args.steps} steps x batch {args.batch}, {args.repeats} repeats, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU)"
    )
    print(f"{'variant':<30} {'median tokens/s':>16} {'ratio':>7}   all runs")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"{name:<30} {median:>16.0f} {median / base:>7.2f}   {', '.join(f'{r:.0f}' for r in rates)}")


if __name__ == "__main__":
    main()
