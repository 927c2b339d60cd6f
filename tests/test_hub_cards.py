"""What ``plaid push`` publishes follows the Hub's conventions: card metadata (base_model, datasets, library_name,
pipeline_tag, tags, license, model-index from ``plaid benchmark`` results) parsed back with huggingface_hub, a usage
section that samples and decodes a crystal, and no local absolute path in any uploaded file. A tiny SFT run is
built in the test; its CSP benchmark uses a scripted backend with a known answer (target 0 right, the rest not:
match rate 25% at n=1)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from plaid.cli import main
from tests.test_benchmark import ScriptedBackend, _answers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory, perov_csv):
    """A tiny LoRA SFT run (local plaid-tiny-llama base) with a CSP benchmark and an evaluation report inside."""
    import pandas as pd

    from plaid.benchmark import CSPBenchmarkConfig, run_csp_benchmark
    from plaid.training.args import parse_recipe_config
    from plaid.training.run import run_sft

    root = tmp_path_factory.mktemp("hubcards")
    args = parse_recipe_config(
        "sft", ROOT / "recipes/configs/tiny/sft.yaml", "--output_dir", str(root / "sft"), "--dataset_source",
        str(perov_csv), "--max_structures", "8", "--max_steps", "1", "--per_device_train_batch_size", "4",
    )  # fmt: skip
    out = Path(run_sft(*args))
    targets = root / "test.csv"
    pd.read_csv(perov_csv).iloc[:4][["material_id", "cif"]].to_csv(targets, index=False)
    answers, _ = _answers(targets)
    cfg = CSPBenchmarkConfig(n_values=(1, 2), constrained=False, batch_size=1, dataset="perov_5")
    run_csp_benchmark(str(out), str(targets), out / "bench_csp", cfg, backend=ScriptedBackend(answers))
    # an evaluation report that, like plaid evaluate's, names its inputs by absolute path
    report = {"n_samples": 10, "struct_valid_rate": 0.9, "reference": str(targets), "out_dir": str(root / "eval")}
    (out / "report.json").write_text(json.dumps(report))
    return out


def _local_prefixes(*paths) -> list[bytes]:
    prefixes = {str(Path(p).resolve()) for p in paths} | {str(p) for p in paths}
    prefixes |= {os.environ["PLAID_DATA_DIR"], str(Path(os.environ["PLAID_DATA_DIR"]).resolve()), str(Path.home())}
    return sorted(p.encode() for p in prefixes)


def _assert_no_local_path(stage: Path, files: list[str], prefixes: list[bytes]) -> None:
    on_disk = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    assert on_disk == sorted(files)
    for name in on_disk:
        data = (stage / name).read_bytes()
        for prefix in prefixes:
            assert prefix not in data, f"{name} holds {prefix.decode()}"


def test_card_only_with_a_local_base(run, tmp_path, tmp_path_factory, capsys):
    from huggingface_hub import ModelCard

    from plaid.representations import DecodeError

    stage = tmp_path / "stage"
    argv = ["push", str(run), "me/plaid-tiny", "--card-only", "--stage", str(stage), "--include-base",
            "--dataset-repo", "me/perov5-wyckoff"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr().out
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    for name in ("README.md", "adapter_config.json", "adapter_model.safetensors", "plaid_run.json", "report.json",
                 "tokenizer.json", "base_model/model.safetensors", "benchmarks/bench_csp/results.json",
                 "benchmarks/bench_csp/table.md"):  # fmt: skip
        assert name in files and name in printed, name
    assert not any(f.startswith(("dataset", "checkpoint")) for f in files)
    _assert_no_local_path(stage, files, _local_prefixes(tmp_path_factory.getbasetemp(), run))

    card = ModelCard.load(stage / "README.md")
    assert (stage / "README.md").read_text() == (run / "README.md").read_text()
    assert all((stage / f).stat().st_nlink == 1 for f in files)  # copies: a later run rewrite leaves them alone
    data = card.data
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert data.base_model is None  # plaid created the base: no Hub id to link to (named in the text)
    assert data.datasets == ["me/perov5-wyckoff"] and data.license == "apache-2.0"
    assert {"plaid", "wyckoff", "sft", "lora", "crystal-generation"} <= set(data.tags)
    results = json.loads((run / "bench_csp" / "results.json").read_text())
    assert results["match_rate"]["1"] == 0.25
    by_metric = {r.metric_type: r for r in data.eval_results}
    assert by_metric["match_rate@1"].metric_value == 25.0 and by_metric["match_rate@2"].metric_value == 50.0
    assert by_metric["rmse@1"].metric_value == round(results["rmse"]["1"], 4)
    assert {r.dataset_type for r in data.eval_results} == {"perov_5"}
    assert {r.dataset_split for r in data.eval_results} == {"test"} and data.model_name == "plaid-tiny"
    text = card.text
    assert "`plaid-tiny-llama`" in text and "perov_5/val.csv" in text and "| `struct_valid_rate` | 0.9 |" in text
    assert "plaid sample --model plaid-model --representation wyckoff" in text and "hf download me/plaid-tiny" in text

    # uploaded copies name the base and the sources without this machine's paths; the run's own files keep theirs
    adapter = json.loads((stage / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "plaid-tiny-llama"
    assert Path(json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"]).is_dir()
    record = json.loads((stage / "plaid_run.json").read_text())
    assert record["training_args"]["output_dir"] == "." and record["plaid_args"]["dataset_source"] == "perov_5/val.csv"
    assert json.loads((stage / "report.json").read_text())["reference"] == "hubcards0/test.csv"

    # the usage snippet runs against the uploaded layout (the staged folder stands for the downloaded repo)
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'snapshot_download("me/plaid-tiny")' in code
    code = code.replace('snapshot_download("me/plaid-tiny")', repr(str(stage)))
    code = code.replace("max_new_tokens=512", "max_new_tokens=24")
    try:
        exec(compile(code, "usage", "exec"), {})
    except DecodeError:
        pass  # one step of training: the text is rarely a crystal; it was generated and handed to the decoder


def test_hub_base_in_the_cache_is_published_by_its_id(run, tmp_path, tmp_path_factory, capsys):
    """A run whose base was read from the Hugging Face cache records the snapshot path: the card's base_model and
    the uploaded adapter_config.json name its Hub id; an unknown licence is 'other' unless --license is given."""
    from huggingface_hub import ModelCard

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoint-*", "dataset"))
    snapshot = tmp_path / "hub" / "models--tiny-org--tiny-llama" / "snapshots" / ("ab" * 20)
    shutil.copytree(run / "base_model", snapshot)
    shutil.rmtree(copy / "base_model")
    config = json.loads((copy / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(snapshot)
    (copy / "adapter_config.json").write_text(json.dumps(config))
    stage = tmp_path / "stage"
    assert main(["push", str(copy), "me/plaid-tiny", "--card-only", "--stage", str(stage)]) == 0, \
        capsys.readouterr().err[-3000:]  # fmt: skip
    card = ModelCard.load(stage / "README.md")
    assert card.data.base_model == "tiny-org/tiny-llama" and card.data.license == "other"
    assert card.data.license_link == "https://huggingface.co/tiny-org/tiny-llama"
    assert "AutoPeftModelForCausalLM.from_pretrained(repo)" in card.text
    assert json.loads((stage / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-org/tiny-llama"
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    _assert_no_local_path(stage, files, _local_prefixes(tmp_path_factory.getbasetemp(), copy))

    assert main(["push", str(copy), "me/plaid-tiny", "--card-only", "--license", "apache-2.0",
                 "--base-model", "tiny-org/renamed"]) == 0  # fmt: skip
    card = ModelCard.load(copy / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model == "tiny-org/renamed"
    assert main(["push", str(copy), "me/plaid-tiny", "--card-only", "--base-model", str(snapshot)]) == 2
    assert "--base-model" in capsys.readouterr().err


def test_push_uploads_the_staged_copy(run, tmp_path_factory):
    """push() hands upload_folder a staged folder: the files it lists, none with a local path."""
    from plaid.training.publish import push

    prefixes = _local_prefixes(tmp_path_factory.getbasetemp(), run)
    seen = {}

    class Api:
        def create_repo(self, repo_id, **kwargs):
            seen["repo"] = repo_id

        def upload_folder(self, folder_path, allow_patterns, **kwargs):
            seen["folder"] = folder_path
            _assert_no_local_path(Path(folder_path), allow_patterns, prefixes)
            seen["files"] = allow_patterns

    files = push(run, "me/plaid-tiny", api=Api())
    assert seen["repo"] == "me/plaid-tiny" and seen["files"] == files and "adapter_config.json" in files
    assert not Path(seen["folder"]).exists()  # a temporary staging folder, removed after the upload


def test_dataset_card_names_no_local_path(run, tmp_path_factory):
    card = (run / "dataset" / "README.md").read_bytes()
    for prefix in _local_prefixes(tmp_path_factory.getbasetemp(), run):
        assert prefix not in card
    assert b"perov_5/val.csv" in card
