"""Every command's boundaries: a missing, empty, wrong-format or corrupt input, a directory that is not a model, an
unwritable output, incompatible options and a resume with other settings each end in a non-zero exit code and one
line on stderr that names the problem, without a traceback and without writing the output. Commands whose input
holds no usable item exit 3 after writing their report.

Commands run in-process through ``plaid.cli.main`` (fast); a few run as real subprocesses to prove the exit code
and stderr a shell sees. Tests run as root, so an unwritable output is a path under a regular file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from plaid.cli import main
from plaid.errors import EXIT_NOTHING, EXIT_USAGE, UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory, perov_csv):
    """Good and bad inputs shared by the matrix (all tiny)."""
    from pymatgen.core import Structure

    d = tmp_path_factory.mktemp("inputs")
    ref = pd.read_csv(perov_csv, nrows=12)
    f = {"dir": d, "missing": d / "no-such-file.csv", "missing_jsonl": d / "no-such-file.jsonl"}
    f["reference"] = d / "reference.csv"
    ref.to_csv(f["reference"], index=False)
    f["empty_csv"] = d / "empty.csv"
    f["empty_csv"].write_text("")
    f["empty_jsonl"] = d / "empty.jsonl"
    f["empty_jsonl"].write_text("\n\n")
    f["header_only"] = d / "header_only.csv"
    f["header_only"].write_text("material_id,cif\n")
    f["cif"] = d / "BaTiO3.cif"
    Structure.from_str(ref["cif"][0], fmt="cif").to(filename=str(f["cif"]))
    f["cif_as_csv"] = d / "structure.csv"  # a CIF under a .csv name: detected by content
    f["cif_as_csv"].write_text(f["cif"].read_text())
    f["no_cif_column"] = d / "no_cif_column.csv"
    ref.drop(columns=["cif"]).to_csv(f["no_cif_column"], index=False)
    f["corrupt_csv"] = d / "corrupt.csv"
    f["corrupt_csv"].write_text('material_id,cif\na,"data_x\nb,unterminated\n')
    records = [
        {"sample_id": f"s{i}", "request_id": "u", "prompt": "p", "text": None, "parsed": True, "cif": cif,
         "error": None}
        for i, cif in enumerate(ref["cif"][:3])
    ]
    f["samples"] = d / "samples.jsonl"
    f["samples"].write_text("".join(json.dumps(r) + "\n" for r in records))
    f["corrupt_jsonl"] = d / "corrupt.jsonl"  # a broken line in the middle (not a torn last line)
    lines = [json.dumps(r) for r in records]
    f["corrupt_jsonl"].write_text("\n".join([lines[0], '{"sample_id": "s1", "cif": "da', lines[2]]) + "\n")
    f["all_corrupt_jsonl"] = d / "garbage.jsonl"
    f["all_corrupt_jsonl"].write_text("this is not json\nnor this\n")
    f["no_prompt_jsonl"] = d / "no_prompt.jsonl"
    f["no_prompt_jsonl"].write_text(json.dumps({"sample_id": "a", "cif": ref["cif"][0]}) + "\n")
    f["not_model"] = d / "not_a_model"
    f["not_model"].mkdir()
    (f["not_model"] / "notes.txt").write_text("no config.json here")
    f["config_only"] = d / "config_only"  # config.json without weights: an unfinished run
    f["config_only"].mkdir()
    (f["config_only"] / "config.json").write_text("{}")
    f["file"] = d / "a_regular_file"
    f["file"].write_text("x")
    f["unwritable_dir"] = f["file"] / "out"  # under a regular file: cannot be created, even by root
    f["unwritable_file"] = f["file"] / "out.jsonl"
    return f


def _fails(argv, capsys, code=EXIT_USAGE, needles=(), absent=()):
    """Run ``plaid ARGV``; assert the exit code, exactly one error line naming the problem, no traceback, and
    that no output path in ``absent`` was created."""
    got = main([str(a) for a in argv])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("plaid ") and ": error: " in line]
    assert got == code, (argv, got, captured.err[-2000:])
    assert len(errors) == 1, captured.err[-2000:]
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    for path in absent:
        assert not Path(path).exists(), f"{path} was written by a failed command"
    _fails.captured = captured
    return errors[0]


# --------------------------------------------------------------------------------------------------- the matrix


def _matrix():
    """(command, case, argv builder, needles that must appear in the message, outputs that must not exist)."""
    ref = "{reference}"
    rows = [
        # plaid data build
        ("data build", "missing", ["data", "build", "{missing}", "--out", "{o}"], ["no-such-file.csv", "does not exist"]),
        ("data build", "empty", ["data", "build", "{empty_csv}", "--out", "{o}"], ["empty.csv", "empty"]),
        ("data build", "cif_not_csv", ["data", "build", "{cif_as_csv}", "--out", "{o}"], ["CIF file, not a CSV"]),
        ("data build", "no_column", ["data", "build", "{no_cif_column}", "--out", "{o}"], ["no 'cif' column"]),
        ("data build", "corrupt_line", ["data", "build", "{corrupt_csv}", "--out", "{o}"], ["not a well-formed CSV"]),
        ("data build", "header_only", ["data", "build", "{header_only}", "--out", "{o}"], ["no rows"]),
        ("data build", "unwritable", ["data", "build", ref, "--out", "{unwritable_dir}"], ["--out", "is a file"]),
        ("data build", "bad_option", ["data", "build", ref, "--out", "{o}", "--splits", "0.5,0.6"], ["--splits"]),
        ("data build", "bad_task_mix", ["data", "build", ref, "--out", "{o}", "--task-mix", "dance=1"], ["--task-mix"]),
        # plaid sample
        ("sample", "missing_model", ["sample", "--model", "{dir}/no-model", "--out", "{o}.jsonl"],
         ["--model", "no model directory"]),
        ("sample", "not_model", ["sample", "--model", "{not_model}", "--out", "{o}.jsonl"],
         ["not a model directory", "config.json"]),
        ("sample", "no_weights", ["sample", "--model", "{config_only}", "--out", "{o}.jsonl"], ["no weights"]),
        ("sample", "missing", ["sample", "--model", "{config_only}", "--prompt-file", "{missing}", "--out", "{o}.jsonl"],
         ["--prompt-file", "does not exist"]),
        ("sample", "empty", ["sample", "--model", "{config_only}", "--prompt-file", "{empty_csv}", "--out", "{o}.jsonl"],
         ["empty"]),
        ("sample", "wrong_format", ["sample", "--model", "{config_only}", "--prompt-file", "{cif}", "--out",
                                    "{o}.jsonl"], [".csv, .tsv or .jsonl"]),
        ("sample", "corrupt_line", ["sample", "--model", "{config_only}", "--prompt-file", "{corrupt_jsonl}", "--out",
                                    "{o}.jsonl"], ["line 2", "not JSON"]),
        ("sample", "unwritable", ["sample", "--model", "{config_only}", "--out", "{unwritable_file}"],
         ["--out", "is a file"]),
        ("sample", "incompatible", ["sample", "--model", "{config_only}", "--out", "{o}.jsonl", "--merge",
                                    "--load-in-4bit"], ["--merge"]),
        # plaid evaluate
        ("evaluate", "missing", ["evaluate", "{missing}", "--reference", ref, "--out", "{o}"], ["no-such-file.csv"]),
        ("evaluate", "empty", ["evaluate", "{empty_jsonl}", "--reference", ref, "--out", "{o}"], ["holds no records"]),
        ("evaluate", "cif_as_samples", ["evaluate", "{cif}", "--reference", ref, "--out", "{o}"], ["CIF file"]),
        ("evaluate", "cif_as_reference", ["evaluate", "{samples}", "--reference", "{cif_as_csv}", "--out", "{o}"],
         ["--reference", "CIF file, not a CSV"]),
        ("evaluate", "no_column", ["evaluate", "{no_cif_column}", "--reference", ref, "--out", "{o}"],
         ["no 'cif' column"]),
        ("evaluate", "every_line_corrupt", ["evaluate", "{all_corrupt_jsonl}", "--reference", ref, "--out", "{o}"],
         ["corrupt line"]),
        ("evaluate", "missing_reference", ["evaluate", "{samples}", "--reference", "{missing}", "--out", "{o}"],
         ["--reference", "does not exist"]),
        ("evaluate", "hull_wrong_format", ["evaluate", "{samples}", "--reference", ref, "--out", "{o}", "--hull", "{cif}"],
         ["--hull", "not a hull file"]),
        ("evaluate", "unwritable", ["evaluate", "{samples}", "--reference", ref, "--out", "{unwritable_dir}"],
         ["--out"]),
        ("evaluate", "incompatible", ["evaluate", "{samples}", "--reference", ref, "--out", "{o}", "--no-relax",
                                      "--hull", "{file}"], ["--no-relax"]),
        ("evaluate", "bad_fingerprint_backend", ["evaluate", "{samples}", "--reference", ref, "--out", "{o}",
                                                 "--fingerprint-backend", "fortran"], ["--fingerprint-backend"]),
        ("evaluate", "given_e_hull_and_hull", ["evaluate", "{samples}", "--reference", ref, "--out", "{o}",
                                               "--e-hull-column", "e", "--hull", "{file}"], ["--e-hull-column"]),
        ("evaluate", "no_e_hull_field", ["evaluate", "{samples}", "--reference", ref, "--out", "{o}",
                                         "--e-hull-column", "nope"], ["'nope'"]),
        ("evaluate", "no_e_hull_column", ["evaluate", ref, "--reference", ref, "--out", "{o}", "--e-hull-column",
                                          "nope"], ["'nope'"]),
        ("evaluate", "structure_column_not_csv", ["evaluate", "{samples}", "--reference", ref, "--out", "{o}",
                                                  "--structure-column", "cif"], ["--structure-column"]),
        ("evaluate", "no_structure_column", ["evaluate", ref, "--reference", ref, "--out", "{o}",
                                             "--structure-column", "relaxed_cif"], ["'relaxed_cif'"]),
        # plaid evaluate-csp
        ("evaluate-csp", "missing", ["evaluate-csp", "{missing_jsonl}", "--targets", ref, "--out", "{o}"],
         ["does not exist"]),
        ("evaluate-csp", "empty", ["evaluate-csp", "{empty_jsonl}", "--targets", ref, "--out", "{o}"], ["no records"]),
        ("evaluate-csp", "wrong_format", ["evaluate-csp", "{samples}", "--targets", "{cif}", "--out", "{o}"],
         ["--targets", "CIF file"]),
        ("evaluate-csp", "no_column", ["evaluate-csp", "{samples}", "--targets", "{no_cif_column}", "--out", "{o}"],
         ["no 'cif' column"]),
        ("evaluate-csp", "corrupt_line", ["evaluate-csp", "{samples}", "--targets", "{corrupt_csv}", "--out", "{o}"],
         ["not a well-formed CSV"]),
        ("evaluate-csp", "unwritable", ["evaluate-csp", "{samples}", "--targets", ref, "--out", "{unwritable_dir}"],
         ["--out"]),
        # plaid relax
        ("relax", "missing", ["relax", "{missing}", "--out", "{o}.jsonl"], ["does not exist"]),
        ("relax", "empty", ["relax", "{empty_csv}", "--out", "{o}.jsonl"], ["empty"]),
        ("relax", "wrong_format", ["relax", "{cif}", "--out", "{o}.jsonl"], ["CIF file, not a CSV"]),
        ("relax", "no_column", ["relax", "{no_cif_column}", "--out", "{o}.jsonl"], ["no 'cif' column"]),
        ("relax", "corrupt_line", ["relax", "{corrupt_jsonl}", "--out", "{o}.jsonl"], ["line 2", "corrupt"]),
        ("relax", "not_model", ["relax", ref, "--out", "{o}.jsonl", "--model-path", "{dir}/no-weights"],
         ["--model-path", "does not exist"]),
        ("relax", "unwritable", ["relax", ref, "--out", "{unwritable_file}"], ["--out", "is a file"]),
        ("relax", "hull_wrong_format", ["relax", ref, "--out", "{o}.jsonl", "--hull", ref], ["--hull", "not a hull file"]),
        # plaid pairs
        ("pairs", "missing", ["pairs", "{missing_jsonl}", "--out", "{o}", "--reference", ref], ["does not exist"]),
        ("pairs", "empty", ["pairs", "{empty_jsonl}", "--out", "{o}", "--reference", ref], ["no records"]),
        ("pairs", "wrong_format", ["pairs", "{cif}", "--out", "{o}", "--reference", ref], ["CIF file"]),
        ("pairs", "corrupt_line", ["pairs", "{corrupt_jsonl}", "--out", "{o}", "--reference", ref], ["line 2"]),
        ("pairs", "no_prompt", ["pairs", "{no_prompt_jsonl}", "--out", "{o}", "--reference", ref], ["prompt"]),
        ("pairs", "not_eval_dir", ["pairs", "{samples}", "--out", "{o}", "--labels", "{not_model}"],
         ["--labels", "structures.csv"]),
        ("pairs", "no_hull", ["pairs", "{samples}", "--out", "{o}"], ["--hull", "--reference"]),
        ("pairs", "not_model", ["pairs", "{samples}", "--out", "{o}", "--reference", ref, "--model-path",
                                "{dir}/no-weights"], ["--model-path"]),
        ("pairs", "unwritable", ["pairs", "{samples}", "--out", "{unwritable_dir}", "--reference", ref], ["--out"]),
        ("pairs", "given_e_hull_and_hull", ["pairs", "{samples}", "--out", "{o}", "--e-hull-column", "e",
                                            "--hull", "{file}"], ["--e-hull-column"]),
        ("pairs", "no_e_hull_field", ["pairs", "{samples}", "--out", "{o}", "--e-hull-column", "nope"], ["'nope'"]),
        ("pairs", "csv_not_plaid", ["pairs", ref, "--out", "{o}", "--e-hull-column", "e"], ["'gen_str'"]),
        ("pairs", "structure_column_not_csv", ["pairs", "{samples}", "--out", "{o}", "--structure-column", "cif"],
         ["--structure-column"]),
        # plaid align
        ("align", "missing", ["align", "--config", "{dir}/no-such.yaml"], ["--config", "does not exist"]),
        ("align", "empty", ["align", "--config", "{empty_csv}"], ["--config", "empty"]),
        # plaid push --card-only
        ("push", "missing", ["push", "{dir}/no-run", "me/model", "--card-only"], ["RUN_DIR", "does not exist"]),
        ("push", "not_model", ["push", "{not_model}", "me/model", "--card-only"], ["not a model directory"]),
        ("push", "wrong_format", ["push", "{file}", "me/model", "--card-only"], ["not a directory"]),
        # plaid merge
        ("merge", "missing", ["merge", "{dir}/no-adapter", "{o}"], ["ADAPTER_DIR", "no LoRA adapter"]),
        ("merge", "not_model", ["merge", "{not_model}", "{o}"], ["not a LoRA adapter"]),
        ("merge", "full_model", ["merge", "{config_only}", "{o}"], ["not a LoRA adapter"]),
        # plaid data info
        ("data info", "not_built", ["data", "info", "{not_model}"], ["build_report.json"]),
        # plaid benchmark csp / gen
        ("benchmark csp", "missing_model", ["benchmark", "csp", "--model", "{dir}/no-model", "--targets", ref,
                                            "--out", "{o}"], ["--model", "no model directory"]),
        ("benchmark csp", "missing", ["benchmark", "csp", "--model", "{config_only}", "--targets", "{missing}",
                                      "--out", "{o}"], ["--targets", "does not exist"]),
        ("benchmark csp", "wrong_format", ["benchmark", "csp", "--model", "{config_only}", "--targets", "{cif}",
                                           "--out", "{o}"], ["--targets", "CIF file"]),
        ("benchmark csp", "not_built", ["benchmark", "csp", "--model", "{config_only}", "--targets", "{not_model}",
                                        "--out", "{o}"], ["--targets", "not a dataset built by plaid"]),
        ("benchmark csp", "unwritable", ["benchmark", "csp", "--model", "{config_only}", "--targets", ref,
                                         "--out", "{unwritable_dir}"], ["--out"]),
        ("benchmark csp", "bad_option", ["benchmark", "csp", "--model", "{config_only}", "--targets", ref,
                                         "--prompt-style", "llama", "--out", "{o}"], ["--prompt-style", "llama"]),
        ("benchmark gen", "no_column", ["benchmark", "gen", "--model", "{config_only}", "--reference",
                                        "{no_cif_column}", "--out", "{o}"], ["--reference", "no 'cif' column"]),
        ("benchmark gen", "bad_option", ["benchmark", "gen", "--model", "{config_only}", "--reference", ref,
                                         "--num-samples", "0", "--out", "{o}"], ["--num-samples"]),
        # plaid serve / plaid convert
        ("serve", "not_model", ["serve", "--model", "{not_model}"], ["not a model directory"]),
        ("convert crystallm", "missing", ["convert", "crystallm", "{missing}", "{o}", "--meta", "{file}"],
         ["CKPT", "does not exist"]),
        ("convert crystallm", "wrong_format", ["convert", "crystallm", "{cif}", "{o}", "--meta", "{file}"], [".cif"]),
    ]
    return rows


@pytest.mark.parametrize(("command", "case", "argv", "needles"), _matrix(), ids=[f"{r[0]}:{r[1]}" for r in _matrix()])
def test_bad_input_matrix(command, case, argv, needles, files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [a.format(o=out, **{k: v for k, v in files.items()}) for a in argv]
    line = _fails(argv, capsys, needles=needles, absent=[out, Path(f"{out}.jsonl")])
    assert line.startswith(f"plaid {command}: error: ")


def test_every_subcommand_is_in_the_matrix():
    from plaid.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    covered = {r[0].split()[0] for r in _matrix()}
    assert set(sub.choices) <= covered | {"data"}, set(sub.choices) - covered


# ------------------------------------------------------------------------------------- models that are not whole


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory):
    """A LoRA adapter whose base model is gone, and one whose adapter_config.json is not JSON."""
    d = tmp_path_factory.mktemp("adapters")
    lost = d / "lost_base"
    lost.mkdir()
    (lost / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(d / "gone")}))
    (lost / "adapter_model.safetensors").write_bytes(b"")
    torn = d / "torn"
    torn.mkdir()
    (torn / "adapter_config.json").write_text('{"base_model_name_or_pa')
    return lost, torn


def test_adapters_with_a_lost_base_or_a_torn_config(adapter_dirs, tmp_path, capsys):
    lost, torn = adapter_dirs
    _fails(["sample", "--model", lost, "--out", tmp_path / "s.jsonl"], capsys, needles=["base model", "not found"],
           absent=[tmp_path / "s.jsonl"])
    _fails(["merge", torn, tmp_path / "m"], capsys, needles=["not valid JSON"], absent=[tmp_path / "m"])
    _fails(["merge", lost, lost], capsys, needles=["base model"])


def test_push_card_only_checks_the_run(files, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"")
    _fails(["push", run, "me/model", "--card-only"], capsys, needles=["plaid_run.json"])
    (run / "plaid_run.json").write_text("{not json")
    _fails(["push", run, "me/model", "--card-only"], capsys, needles=["plaid_run.json", "not valid JSON"])
    (run / "plaid_run.json").write_text("{}")
    _fails(["push", run, "me/model", "--card-only"], capsys, needles=["lacks plaid_args"])
    (run / "plaid_run.json").write_text(json.dumps({"plaid_args": {}, "model_args": {}, "training_args": {}}))
    _fails(["push", run, "not a repo id", "--card-only"], capsys, needles=["REPO_ID"])
    _fails(["push", run, "me/model", "--card-only", "--eval-report", files["missing"]], capsys,
           needles=["--eval-report"])
    assert not (run / "README.md").exists()


def test_align_config_errors(files, tmp_path, capsys):
    config = tmp_path / "align.yaml"
    config.write_text("sft_adapter: [unclosed\n")
    _fails(["align", "--config", config], capsys, needles=["not valid YAML"])
    config.write_text(f"sft_adapter: {files['not_model']}\noutput_dir: {tmp_path}/a\ndpo_config: x\n"
                      f"reference: {files['reference']}\nnum_sample: 3\n")
    _fails(["align", "--config", config], capsys, needles=["unknown key", "num_sample"])
    config.write_text(f"sft_adapter: {files['not_model']}\noutput_dir: {tmp_path}/a\ndpo_config: x\n"
                      f"reference: {files['reference']}\n")
    _fails(["align", "--config", config], capsys, needles=["sft_adapter", "not a model directory"],
           absent=[tmp_path / "a"])


# ------------------------------------------------------------------------------------------ resume guards


def test_resume_with_other_settings_is_refused(files, tmp_path, capsys):
    # relax: results made with fmax 0.05 are not silently reused by a run with fmax 0.1
    out = tmp_path / "relax.jsonl"
    out.write_text(json.dumps({"id": "x", "status": "converged", "settings": {
        "name": "chgnet", "model_version": "CHGNet 0.3.0", "fmax": 0.05, "max_steps": 500, "filter": "frechet"}}) + "\n")
    _fails(["relax", files["reference"], "--out", out], capsys, needles=["other settings", "fmax"])
    # sample: samples drawn at another temperature, or from another model, are not continued
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"sample_id": "unconditional-00000", "temperature": 0.7, "top_p": 1.0, "top_k": 0,
                                   "constrained": False, "model": str(model)}) + "\n")
    _fails(["sample", "--model", model, "--out", samples], capsys, needles=["other settings", "temperature 0.7"])
    # pairs: labels made with another labeller
    labels = tmp_path / "pairs_labels"
    labels.mkdir()
    (labels / "labeller.json").write_text(json.dumps({"relaxer": "chgnet"}))
    _fails(["pairs", files["samples"], "--out", tmp_path / "pairs", "--reference", files["reference"]], capsys,
           needles=["other settings", "--labels-dir"], absent=[tmp_path / "pairs"])
    # align: an output_dir made with another config
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(files["config_only"])}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    root = tmp_path / "align"
    root.mkdir()
    config = tmp_path / "align.yaml"
    config.write_text(f"sft_adapter: {adapter}\noutput_dir: {root}\ndpo_config: {ROOT}/recipes/configs/tiny/dpo.yaml\n"
                      f"reference: {files['reference']}\nnum_samples: 4\niterations: 1\n")
    from plaid.preferences.align import AlignConfig

    previous = AlignConfig.from_yaml(config).__dict__ | {"num_samples": 8, "iterations": 3}
    (root / "align_config.json").write_text(json.dumps(previous))
    _fails(["align", "--config", config], capsys, needles=["other settings", "num_samples"])


# ---------------------------------------------------------------------------------- nothing produced: exit 3


def test_build_with_nothing_encoded_exits_3_after_its_report(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"material_id": ["a", "b"], "cif": ["not a cif", "data_x\n_cell_length_a 1\n"]}).to_csv(bad, index=False)
    out = tmp_path / "built"
    line = _fails(["data", "build", bad, "--out", out], capsys, code=EXIT_NOTHING,
                  needles=["0 of 2 structures encoded", "failures.jsonl"])
    assert "unparseable CIF" in line
    report = json.loads((out / "build_report.json").read_text())
    assert report["n_input"] == 2 and report["n_encoded"] == 0
    assert len((out / "failures.jsonl").read_text().splitlines()) == 2


def test_csp_with_no_assigned_sample_exits_3_after_its_report(files, tmp_path, capsys):
    out = tmp_path / "csp"
    _fails(["evaluate-csp", files["samples"], "--targets", files["reference"], "--out", out], capsys,
           code=EXIT_NOTHING, needles=["none of the 3 samples", "csp_report.json"])
    report = json.loads((out / "csp_report.json").read_text())
    assert report["n_samples_unassigned"] == 3


def test_pairs_with_no_pair_exits_3_and_writes_nothing(files, tmp_path, capsys):
    """Labels from a real plaid evaluate run without relaxation: no sample has an E_hull, so none is accepted."""
    eval_dir = tmp_path / "eval"
    assert main(["evaluate", str(files["samples"]), "--reference", str(files["reference"]), "--out", str(eval_dir),
                 "--no-relax", "--no-plots"]) == 0
    capsys.readouterr()
    out = tmp_path / "pairs"
    _fails(["pairs", files["samples"], "--out", out, "--labels", eval_dir], capsys, code=EXIT_NOTHING,
           needles=["0 pairs"], absent=[out])


def test_relax_with_no_readable_structure_exits_3(tmp_path, capsys):
    inp = tmp_path / "in.csv"
    pd.DataFrame({"material_id": ["a", "b"], "cif": ["not a cif", "nor this"]}).to_csv(inp, index=False)
    out = tmp_path / "r.jsonl"
    _fails(["relax", inp, "--out", out, "--no-progress"], capsys, code=EXIT_NOTHING,
           needles=["no structure was relaxed"])
    assert "statuses: {'error': 2} (2 inputs)" in _fails.captured.out  # the report, printed before the error


# ----------------------------------------------------------------------------------------------- debug switch


def test_debug_switch_reraises_expected_errors(files, tmp_path, monkeypatch):
    argv = ["evaluate", str(files["missing"]), "--reference", str(files["reference"]), "--out", str(tmp_path / "o")]
    with pytest.raises(UsageError, match="does not exist"):
        main(["--debug", *argv])
    monkeypatch.setenv("PLAID_DEBUG", "1")
    with pytest.raises(UsageError):
        main(argv)


def test_argparse_errors_return_2_in_process(capsys):
    assert main(["evaluate"]) == 2  # missing required arguments: argparse's own message, code 2
    assert "required" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- real subprocesses


def _run(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "plaid.cli", *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_subprocess_exit_codes_and_stderr(files, tmp_path):
    proc = _run("evaluate", files["missing"], "--reference", files["reference"], "--out", tmp_path / "e")
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.strip().splitlines() == [
        f"plaid evaluate: error: samples: {files['missing']} does not exist; give plaid sample JSONL, a CSV with "
        "a 'cif' column, or a directory / .tar.gz of CIF files"
    ]
    assert not (tmp_path / "e").exists()
    proc = _run("sample", "--model", "/nonexistent", "--out", tmp_path / "s.jsonl")
    assert proc.returncode == EXIT_USAGE and "no model directory at /nonexistent" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run("evaluate", files["missing"], "--reference", files["reference"], "--out", tmp_path / "e",
                env={"PLAID_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "plaid.errors.InputError" in proc.stderr


def test_valid_push_and_merge_pass_the_checks(tmp_path, perov_csv, capsys):
    """The checks accept a real (tiny) recipe run: push --card-only writes the card, merge writes a model."""
    from plaid.training.args import parse_recipe_config
    from plaid.training.run import run_sft

    args = parse_recipe_config(
        "sft", ROOT / "recipes/configs/tiny/sft.yaml", "--output_dir", str(tmp_path / "sft"), "--dataset_source",
        str(perov_csv), "--max_structures", "8", "--max_steps", "1", "--per_device_train_batch_size", "4",
    )
    run = run_sft(*args)
    assert main(["push", str(run), "me/tiny", "--card-only"]) == 0, capsys.readouterr().err[-2000:]
    assert (Path(run) / "README.md").exists()
    merged = tmp_path / "merged"
    assert main(["merge", str(run), str(merged), "--dtype", "float32"]) == 0, capsys.readouterr().err[-2000:]
    assert (merged / "config.json").exists()
    _fails(["merge", merged, tmp_path / "again"], capsys, needles=["not a LoRA adapter"], absent=[tmp_path / "again"])
