"""Scale-out throughput against one process, measured in the same run, with identical results checked:

1. ``plaid sample`` with ``--num-processes P`` vs 1 process (a tiny local LLaMA, unconstrained): samples per wall
   second, process start-up and model loading included, and whether the merged file holds the one-process records;
2. M3GNet labelling stages (``plaid pairs``: checks, matching, relaxation, E_hull) on a local Ray cluster of W CPUs
   vs in this process: samples per second and whether the labels agree.

    python benchmarks/bench_scaleout.py [--samples 64] [--processes 2] [--labels 16] [--workers 2] [--repeats 1]
    python benchmarks/bench_scaleout.py --skip-sampling --labels 256 --workers 16 --max-steps 100   # a 16-core node

Prints one JSON object: medians over ``--repeats`` and the ratios (``speedup`` = baseline seconds / scaled seconds).
On a machine with fewer idle cores than processes or workers the ratio is below 1: it measures the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMING = ("gen_time_s", "batch_gen_time_s", "batch_size")


def _records(path: Path) -> dict:
    from plaid.io import read_jsonl

    return {r["sample_id"]: {k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(path)}


def bench_sampling(n: int, processes: int, repeats: int, root: Path) -> dict:
    import torch

    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    model = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), root / "model")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    times: dict[int, list[float]] = {1: [], processes: []}
    outputs: dict[int, Path] = {}
    for r in range(repeats):
        for p in (1, processes):
            out = root / f"samples-p{p}-r{r}.jsonl"
            argv = [sys.executable, "-m", "plaid.cli", "sample", "--model", str(model), "--num-samples", str(n),
                    "--batch-size", "8", "--max-new-tokens", "64", "--device", "cpu", "--no-progress", "--out",
                    str(out), "--num-processes", str(p)]
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[p].append(time.perf_counter() - start)
            outputs[p] = out
    one, many = statistics.median(times[1]), statistics.median(times[processes])
    return {"samples": n, "processes": processes, "seconds_1_process": round(one, 2),
            f"seconds_{processes}_processes": round(many, 2), "samples_per_s_1": round(n / one, 3),
            f"samples_per_s_{processes}": round(n / many, 3), "speedup": round(one / many, 3),
            "identical_records": _records(outputs[1]) == _records(outputs[processes])}


def bench_labels(n: int, workers: int, max_steps: int, repeats: int, root: Path) -> dict:
    import ray

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pairs import make_records

    from plaid.executors import make_executor
    from plaid.hull import load_hull
    from plaid.preferences.labels import label_samples
    from plaid.relax import get_relaxer

    data = Path(os.environ.get("PLAID_DATA_DIR", "../shared/data"))
    records = make_records(n)
    hull = load_hull(None, reference_csv=data / "perov_5" / "val.csv")
    relaxer = get_relaxer("m3gnet", max_steps=max_steps, batch_size=8)
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    executor = make_executor("ray")
    times: dict[str, list[float]] = {"local": [], "ray": []}
    labels: dict[str, list] = {}
    for r in range(repeats):
        for kind, jobs in (("local", 1), ("ray", executor)):
            start = time.perf_counter()
            labels[kind] = label_samples(records, root / f"labels-{kind}-{r}", relaxer=relaxer, hull=hull,
                                         progress=False, n_jobs=jobs)
            times[kind].append(time.perf_counter() - start)
    ray.shutdown()
    local, on_ray = statistics.median(times["local"]), statistics.median(times["ray"])
    same_status = [a.status for a in labels["local"]] == [b.status for b in labels["ray"]]
    diffs = [abs(a.e_hull - b.e_hull) for a, b in zip(labels["local"], labels["ray"])
             if a.e_hull is not None and b.e_hull is not None]
    return {"samples": n, "ray_workers": workers, "max_steps": max_steps, "seconds_local": round(local, 2),
            "seconds_ray": round(on_ray, 2), "samples_per_s_local": round(n / local, 3),
            "samples_per_s_ray": round(n / on_ray, 3), "speedup": round(local / on_ray, 3),
            "same_statuses": same_status, "max_e_hull_difference": max(diffs) if diffs else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--labels", type=int, default=16, help="samples labelled (0: skip)")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-sampling", action="store_true")
    args = ap.parse_args()
    result: dict = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_sampling:
            result["sampling"] = bench_sampling(args.samples, args.processes, args.repeats, Path(tmp))
        if args.labels:
            result["labelling"] = bench_labels(args.labels, args.workers, args.max_steps, args.repeats, Path(tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
