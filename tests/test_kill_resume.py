"""Kill-resume for every long command: start it in a subprocess, SIGKILL it once its first results are on disk, run
it again with the same arguments, and compare with an uninterrupted run of the same command: the same records,
none duplicated, none lost. Inputs and models are tiny and built here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from plaid.cli import main
from plaid.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TIMING = ("gen_time_s", "batch_gen_time_s", "batch_size")  # wall-clock and batching: not part of a sample


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _unique(records: list[dict], key: str) -> dict:
    counts = Counter(str(r[key]) for r in records)
    duplicated = [k for k, n in counts.items() if n > 1]
    assert not duplicated, f"duplicated records: {duplicated[:5]}"
    return {str(r[key]): r for r in records}


def _drop(record: dict, keys) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def _dataset_rows(path: Path) -> dict:
    from datasets import load_from_disk

    ds = load_from_disk(str(path))
    return {split: sorted(json.dumps(row, sort_keys=True) for row in ds[split]) for split in ds}


def _perov_samples(perov_csv, n: int, offset: int = 0, prompt: str = "P") -> list[dict]:
    df = pd.read_csv(perov_csv, skiprows=range(1, offset + 1), nrows=n)
    return [{"sample_id": f"s{i:03d}", "request_id": "u", "prompt": prompt, "text": cif, "parsed": True,
             "cif": cif, "error": None} for i, cif in enumerate(df["cif"])]  # text: no representation, so cif is read


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------------------------------------------- the cases
# Each case: (argv for an output location, the JSONL its results are appended to, how many lines in it mean "first
# results written", what a finished output holds).


def case_data_build(tmp, fx):
    source = tmp / "source.csv"
    pd.read_csv(fx["perov_csv"], nrows=300).to_csv(source, index=False)

    def argv(out):
        return ["data", "build", str(source), "--out", str(out), "--chunk-size", "10", "--seed", "1"]

    def collect(out):
        encoded = _unique(read_jsonl(out / "encoded.jsonl"), "uid")
        report = json.loads((out / "build_report.json").read_text())
        keep = ("n_input", "n_encoded", "failures", "split_counts", "task_counts")
        return {"encoded": encoded, "dataset": _dataset_rows(out / "dataset"), "report": {k: report[k] for k in keep}}

    return argv, lambda out: out / "encoded.jsonl", 10, collect


def case_sample(tmp, fx):
    model = fx["tiny_model"]()

    def argv(out):
        return ["sample", "--model", str(model), "--num-samples", "20", "--batch-size", "2", "--max-new-tokens", "24",
                "--out", str(out / "s.jsonl"), "--no-progress", "--seed", "3", "--device", "cpu"]

    def collect(out):
        records = _unique(read_jsonl(out / "s.jsonl"), "sample_id")
        assert set(records) == {f"unconditional-{k:05d}" for k in range(20)}
        return {k: _drop(r, SAMPLE_TIMING) for k, r in records.items()}

    return argv, lambda out: out / "s.jsonl", 4, collect


def case_evaluate(tmp, fx):
    samples = _write_jsonl(tmp / "samples.jsonl", _perov_samples(fx["perov_csv"], 12, offset=40))
    reference = tmp / "reference.csv"
    pd.read_csv(fx["perov_csv"], nrows=12).to_csv(reference, index=False)

    def argv(out):
        return ["evaluate", str(samples), "--reference", str(reference), "--out", str(out), "--dataset", "perov_5",
                "--no-relax", "--no-plots"]

    def collect(out):
        from plaid.evaluation.pipeline import read_structures_csv

        for stage in ("checks", "fingerprints", "matching"):
            _unique(read_jsonl(out / f"{stage}.jsonl"), "sample_id")
        rows = read_structures_csv(out / "structures.csv")
        report = json.loads((out / "report.json").read_text())
        rates = {k: v for k, v in report.items() if k.endswith("_rate") or k in ("n_samples", "counts", "denominators")}
        return {"rows": rows, "rates": rates}

    return argv, lambda out: out / "checks.jsonl", 2, collect


def case_relax(tmp, fx):
    source = tmp / "structures.csv"
    pd.read_csv(fx["perov_csv"], nrows=4)[["material_id", "cif"]].to_csv(source, index=False)

    def argv(out):
        return ["relax", str(source), "--out", str(out / "relax.jsonl"), "--relaxer", "chgnet", "--max-steps", "20",
                "--batch-size", "1", "--no-progress"]

    def collect(out):
        records = _unique(read_jsonl(out / "relax.jsonl"), "id")
        assert len(records) == 4
        return {k: (r["status"], round(r["energy_per_atom"], 5), r["n_steps"]) for k, r in records.items()}

    return argv, lambda out: out / "relax.jsonl", 1, collect


def case_pairs(tmp, fx):
    records = _perov_samples(fx["perov_csv"], 4, offset=60)
    records += [{"sample_id": f"u{i}", "request_id": "u", "prompt": "P", "text": "Sr1 Ti", "parsed": False, "cif": None,
                 "error": "truncated"} for i in range(3)]
    samples = _write_jsonl(tmp / "samples.jsonl", records)
    reference = tmp / "reference.csv"
    pd.read_csv(fx["perov_csv"], nrows=200).to_csv(reference, index=False)

    def argv(out):  # every relaxed sample accepted (threshold 10 eV/atom), the unparsed ones rejected
        return ["pairs", str(samples), "--out", str(out / "pairs"), "--reference", str(reference), "--relaxer",
                "m3gnet", "--model-path", str(fx["m3gnet_path"]), "--max-steps", "10", "--batch-size", "1",
                "--threshold", "10", "--test-size", "0.25", "--device", "cpu"]

    def collect(out):
        labels = _unique(read_jsonl(out / "pairs_labels" / "labels.jsonl"), "sample_id")
        relaxed = _unique(read_jsonl(out / "pairs_labels" / "relax.jsonl"), "id")
        assert len(labels) == 7 and len(relaxed) == 4
        return {"labels": labels, "pairs": _dataset_rows(out / "pairs")}

    return argv, lambda out: out / "pairs_labels" / "relax.jsonl", 1, collect


def case_align(tmp, fx):
    adapter = fx["sft_adapter"]()
    reference = tmp / "reference.csv"
    pd.read_csv(fx["perov_csv"], nrows=200).to_csv(reference, index=False)

    def argv(out):
        config = out.with_name(out.name + ".yaml")
        config.write_text("\n".join([
            f"sft_adapter: {adapter}", f"output_dir: {out}", f"dpo_config: {ROOT}/recipes/configs/tiny/dpo.yaml",
            f"reference: {reference}", f"relaxer_model_path: {fx['m3gnet_path']}", "iterations: 1", "num_samples: 6",
            "batch_size: 2", "temperatures: [1.0]", "constrained: true", "relax_max_steps: 5", "relax_batch_size: 2",
            "threshold: 10.0", "test_size: 0.25",
            "grammar_options: {max_atoms: 6, max_elements: 3, length_range: [3.0, 7.0]}",
            "dpo_overrides: ['--max_steps', '1', '--per_device_train_batch_size', '2']", "",
        ]))
        return ["align", "--config", str(config)]

    def collect(out):
        d = out / "iter_1"
        samples = _unique(read_jsonl(d / "samples.jsonl"), "sample_id")
        labels = _unique(read_jsonl(d / "labels" / "labels.jsonl"), "sample_id")
        assert len(samples) == 6 and len(labels) == 6
        assert (d / "dpo" / "adapter_model.safetensors").exists() and (d / "dpo.done").exists()
        return {"samples": {k: _drop(r, SAMPLE_TIMING) for k, r in samples.items()}, "labels": labels,
                "pairs": _dataset_rows(d / "pairs")}

    return argv, lambda out: out / "iter_1" / "samples.jsonl", 2, collect


CASES = {"data build": case_data_build, "sample": case_sample, "evaluate": case_evaluate, "relax": case_relax,
         "pairs": case_pairs, "align": case_align}


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fx(tmp_path_factory, perov_csv, m3gnet_path):
    """Lazily built shared inputs: a tiny model (sample) and a tiny SFT adapter (align)."""
    built: dict = {}

    def tiny_model():
        if "model" not in built:
            import torch

            from plaid.tokenizer import build_tokenizer
            from plaid.training.model import create_local_model

            torch.manual_seed(0)
            built["model"] = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"),
                                                tmp_path_factory.mktemp("tiny"))
        return built["model"]

    def sft_adapter():
        if "adapter" not in built:
            from plaid.training.args import parse_recipe_config
            from plaid.training.run import run_sft

            out = tmp_path_factory.mktemp("kill_sft")
            args = parse_recipe_config(
                "sft", ROOT / "recipes/configs/tiny/sft.yaml", "--output_dir", str(out), "--dataset_source",
                str(perov_csv), "--max_structures", "16", "--max_steps", "2", "--per_device_train_batch_size", "4",
            )
            built["adapter"] = run_sft(*args)
        return built["adapter"]

    return {"perov_csv": perov_csv, "m3gnet_path": m3gnet_path, "tiny_model": tiny_model,
            "sft_adapter": sft_adapter}


def _start_and_kill(argv: list[str], started, out: Path, timeout: float = 300) -> None:
    """Run ``plaid ARGV`` in a subprocess and SIGKILL it (and its children) once ``started(out)``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "plaid.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not started(out):
            time.sleep(0.05)
        assert proc.poll() is None, (
            f"the run ended (code {proc.returncode}) before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        assert started(out), "no first results within the timeout"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


@pytest.fixture
def one_thread():
    """The killed run has OMP_NUM_THREADS=1; the in-process runs use one thread too, so float32 sums agree."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", list(CASES))
def test_killed_command_resumes_to_the_uninterrupted_result(command, fx, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("PLAID_CACHE_DIR", str(tmp_path / "cache"))  # reference caches: shared by the three runs
    argv, journal, first, collect = CASES[command](tmp_path, fx)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for d in (killed, clean):
        if command in ("sample", "relax", "pairs"):
            d.mkdir()
    _start_and_kill(argv(killed), lambda out: _lines(journal(out)) >= first, killed)
    before = read_jsonl(journal(killed))  # a torn last line is ignored, as the resuming writer does
    assert main(argv(killed)) == 0, capsys.readouterr().err[-3000:]  # the same arguments: resumes
    after = read_jsonl(journal(killed))
    assert len(after) > len(before) >= first
    assert after[: len(before)] == before  # what was written before the kill is kept as it was
    assert main(argv(clean)) == 0, capsys.readouterr().err[-3000:]
    assert collect(killed) == collect(clean)
