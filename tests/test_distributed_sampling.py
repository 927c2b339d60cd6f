"""plaid sample over 2 CPU processes (torchrun, gloo): each rank draws a disjoint share, the merged --out holds the
records of a single-process run with the same settings (same ids, seeds and texts), and a run SIGKILLed mid-way
resumes to that result with nothing duplicated or lost. The model is a tiny local LLaMA built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from plaid.cli import main
from plaid.io import read_jsonl
from plaid.sampling.distributed import Rank, read_with_shards, shard_dir, strip_option
from plaid.sampling.generate import SamplingParams
from plaid.sampling.requests import make_request
from plaid.sampling.run import SampleConfig, Sampler
from tests.test_kill_resume import one_thread  # noqa: F401 - a fixture

TIMING = ("gen_time_s", "batch_gen_time_s", "batch_size")  # wall clock and batching, not part of a sample


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    return create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))


def _argv(model, out, prompt_file) -> list[str]:
    return ["sample", "--model", str(model), "--prompt-file", str(prompt_file), "--out", str(out),
            "--batch-size", "2", "--max-new-tokens", "40", "--seed", "3", "--device", "cpu", "--no-progress"]


def _by_id(records: list[dict]) -> dict:
    counts = Counter(r["sample_id"] for r in records)
    assert all(n == 1 for n in counts.values()), f"duplicated: {[k for k, n in counts.items() if n > 1]}"
    return {r["sample_id"]: {k: v for k, v in r.items() if k not in TIMING} for r in records}


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "plaid.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=600)


def test_share_is_disjoint_and_complete():
    """The rank shares of a plan partition its missing samples; adaptive requests go whole to one rank."""
    reqs = [make_request("u", {}, 5), make_request("c", {"formula": "NaCl"}, 4)]
    sampler = Sampler(None, SampleConfig(params=SamplingParams(max_new_tokens=40)))
    by_request = {"u": [{"index": 1}], "c": []}  # u-00001 already written
    items = [it for r in reqs for it in sampler._pending(r, by_request[r.request_id])]
    shares = [{it.sample_id for it in items if sampler._share(reqs, by_request, Rank(r, 3))(it)} for r in range(3)]
    assert set().union(*shares) == {it.sample_id for it in items} and "u-00001" not in set().union(*shares)
    assert sum(map(len, shares)) == len(items) == 8 and sorted(map(len, shares)) == [2, 3, 3]
    adaptive = Sampler(None, SampleConfig(until_parsed=2, params=SamplingParams(max_new_tokens=40)))
    owners = {rid: [r for r in range(2) if adaptive._share(reqs, {"u": [], "c": []}, Rank(r, 2))(it)]
              for rid, it in (("u", adaptive._item(reqs[0], 0)), ("c", adaptive._item(reqs[1], 0)))}
    assert owners == {"u": [0], "c": [1]}
    assert strip_option(["sample", "--num-processes", "2", "--out", "x", "--num-processes=3"], "--num-processes") \
        == ["sample", "--out", "x"]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.timeout(1800)  # ~45 s of CPU, but 4 interpreter starts: minutes of wall time on a loaded 2-core machine
def test_two_processes_give_the_single_process_records_and_resume_a_killed_run(tiny_model_dir, tmp_path):
    prompts = tmp_path / "requests.jsonl"  # two prompt lengths: batches pad differently in 1 and 2 processes
    prompts.write_text(json.dumps({"id": "u", "num_samples": 7}) + "\n"
                       + json.dumps({"id": "c", "formula": "BaTiO3", "spacegroup": "221", "num_samples": 5}) + "\n")
    single = tmp_path / "single.jsonl"
    assert main(_argv(tiny_model_dir, single, prompts)) == 0
    expected = _by_id(read_jsonl(single))
    assert len(expected) == 12

    out = tmp_path / "multi.jsonl"
    done = _run([*_argv(tiny_model_dir, out, prompts), "--num-processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert not shard_dir(out).exists()  # merged into --out
    assert _by_id(read_jsonl(out)) == expected  # same ids, seeds, prompts, texts and decoded structures
    summary = json.loads(Path(str(out) + ".summary.json").read_text())
    assert summary["attempts"] == 12 and summary["processes"] == 2
    assert [c["rank"] for c in summary["per_rank"]] == [0, 1] and all(c["generated"] > 0 for c in summary["per_rank"])

    # the state a kill leaves: no merged --out yet, rank shards holding part of the records (one torn line)
    killed = tmp_path / "killed.jsonl"
    lines = single.read_text().splitlines()
    shard_dir(killed).mkdir()
    (shard_dir(killed) / "rank0.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (shard_dir(killed) / "rank1.jsonl").write_text("\n".join(lines[3:5]) + "\n" + lines[5][:30])
    assert len(read_with_shards(killed)) == 5
    done = _run([*_argv(tiny_model_dir, killed, prompts), "--num-processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert not shard_dir(killed).exists()
    assert _by_id(read_jsonl(killed)) == expected  # nothing lost, nothing duplicated
    summary = json.loads(Path(str(killed) + ".summary.json").read_text())
    assert summary["generated_this_run"] == 7 and summary["resumed_records"] == 5
