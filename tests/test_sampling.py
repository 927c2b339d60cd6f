"""plaid sample: requests and prompt files, every mode on a tiny local model, resume after a kill, exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plaid.io import read_jsonl
from plaid.prompts import generation_prompt, infill_prompt
from plaid.representations import get
from plaid.sampling.generate import SamplingParams
from plaid.sampling.requests import RequestError, make_request, read_prompt_file, zscan_conditions
from plaid.sampling.run import SampleConfig, Sampler, export_structures, sample_seed

BATIO3 = "Ba1 Ti1 O3\n221\n3.95 3.95 3.95\n90.00 90.00 90.00\nBa 0.500 0.500 0.500 1b\nTi 0.000 0.000 0.000 1a\nO 0.000 0.500 0.500 3c"


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared CPU: one thread is fastest
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    return create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def backend(tiny_model_dir, one_thread):
    from plaid.sampling.generate import HFBackend

    return HFBackend.load(tiny_model_dir, device="cpu")


def _config(**kw):
    base = dict(
        batch_size=4, seed=0, params=SamplingParams(max_new_tokens=48), grammar_options={"max_atoms": 12}
    )
    base.update(kw)
    return SampleConfig(**base)


# ------------------------------------------------------------------------------------------------ requests


def test_prompt_file_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "targets.csv"
    csv_path.write_text("id,formula,spacegroup,num_samples\nbto,BaTiO3,Pm-3m,2\n,NaCl,225,\n")
    reqs = read_prompt_file(csv_path, default_num_samples=3)
    assert [r.request_id for r in reqs] == ["bto", "row2"]
    assert reqs[0].conditions == {"formula": "BaTiO3", "spacegroup": "221"} and reqs[0].num_samples == 2
    assert reqs[1].num_samples == 3
    jsonl = tmp_path / "targets.jsonl"
    jsonl.write_text(
        json.dumps({"id": "m", "masked_text": BATIO3.replace("Ti", "[MASK]")})
        + "\n"
        + json.dumps({"id": "z", "formula": "NaCl", "z_scan": True})
        + "\n"
    )
    reqs = read_prompt_file(jsonl)
    assert [r.task for r in reqs] == ["infill", "zscan"]
    assert zscan_conditions(reqs[1], 4) == {"formula": "NaCl", "composition": "Na4 Cl4"}


def test_malformed_prompt_files_fail_with_every_row_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,formula,spacegroup,colour\na,NaCl,225,red\n")
    with pytest.raises(RequestError, match="unknown column"):
        read_prompt_file(bad)
    bad.write_text("id,formula,spacegroup\na,XqCl,225\nb,NaCl,999\nc,NaCl,P9\nd,BaTiO3,221\nd,NaCl,225\n")
    with pytest.raises(RequestError) as info:
        read_prompt_file(bad)
    message = str(info.value)
    assert "line 2" in message and "Xq" in message
    assert "line 3" in message and "999" in message
    assert "line 4" in message and "P9" in message
    assert "line 6" in message and "duplicate" in message
    assert "line 5" not in message
    broken = tmp_path / "bad.jsonl"
    broken.write_text('{"formula": "NaCl"}\n{"formula": \n')
    with pytest.raises(RequestError, match="line 2: not JSON"):
        read_prompt_file(broken)
    with pytest.raises(RequestError, match="num_samples"):
        make_request("x", {"formula": "NaCl"}, 0)


def test_cli_rejects_bad_requests_before_loading_a_model(tmp_path, capsys):
    from plaid.cli import main

    out = tmp_path / "s.jsonl"
    missing_model = tmp_path / "no-such-model"
    for extra in (
        ["--formula", "Xx2O"],
        ["--spacegroup", "231"],
        ["--spacegroup", "Qq3"],
        ["--constrained", "--formula", "BaTiO3", "--z", "1", "--spacegroup", "225"],
    ):
        code = main(["sample", "--model", str(missing_model), "--out", str(out), *extra])
        assert code == 2, extra
        assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_sample_ids_and_seeds_are_deterministic():
    assert sample_seed(0, "a-00001") == sample_seed(0, "a-00001") != sample_seed(1, "a-00001")
    assert 0 <= sample_seed(7, "x") < 2**63


# ------------------------------------------------------------------------------------------------ modes


def test_unconditional_and_conditional_records(backend, tmp_path):
    out = tmp_path / "s.jsonl"
    reqs = [make_request("u", {}, 3), make_request("c", {"formula": "NaCl", "spacegroup": "Fm-3m"}, 2)]
    summary = Sampler(backend, _config(constrained=True, params=SamplingParams(max_new_tokens=120))).run(
        reqs, out, progress=False
    )
    records = read_jsonl(out)
    assert sorted(r["sample_id"] for r in records) == ["c-00000", "c-00001", "u-00000", "u-00001", "u-00002"]
    for r in records:
        for key in (
            "sample_id",
            "prompt",
            "conditions",
            "text",
            "parsed",
            "error",
            "cif",
            "representation",
            "seed",
            "temperature",
            "gen_time_s",
        ):
            assert key in r
        assert r["parsed"] and r["error"] is None and r["cif"].startswith("# generated using pymatgen")
        assert r["seed"] == sample_seed(0, r["sample_id"])
    cond = [r for r in records if r["request_id"] == "c"]
    assert cond[0]["prompt"] == generation_prompt("wyckoff", {"formula": "NaCl", "spacegroup": "225"})
    assert all(r["formula"] == "NaCl" for r in cond)
    assert summary["attempts"] == 5 and summary["parse_rate"] == 1.0 and summary["samples_per_second"] > 0
    assert json.loads(Path(str(out) + ".summary.json").read_text())["parsed"] == 5
    grammar = summary["grammar"]  # an untrained model: many draws fall outside the grammar and are drawn again
    assert grammar["seconds"] > 0 and 0 < grammar["rejected_then_masked"] <= grammar["sampled_tokens_checked"]
    assert grammar["rejected_fraction"] == round(
        grammar["rejected_then_masked"] / grammar["sampled_tokens_checked"], 5
    )


def test_unconstrained_failures_are_recorded_not_dropped(backend, tmp_path):
    out = tmp_path / "u.jsonl"
    summary = Sampler(backend, _config()).run([make_request("u", {}, 4)], out, progress=False)
    records = read_jsonl(out)
    assert len(records) == 4 and summary["attempts"] == 4
    for r in records:
        assert r["parsed"] is (r["error"] is None)
        if not r["parsed"]:
            assert r["cif"] is None and r["error"]
    assert summary["parsed"] + sum(summary["errors"].values()) == 4


def test_same_seed_same_samples(backend, tmp_path):
    runs = []
    for name in ("a", "b"):
        Sampler(backend, _config()).run(
            [make_request("u", {}, 3)], tmp_path / f"{name}.jsonl", progress=False
        )
        runs.append([r["text"] for r in read_jsonl(tmp_path / f"{name}.jsonl")])
    assert runs[0] == runs[1]


def test_resume_refuses_a_file_from_other_arguments(backend, tmp_path):
    out = tmp_path / "s.jsonl"
    Sampler(backend, _config()).run([make_request("c", {"formula": "NaCl"}, 1)], out, progress=False)
    with pytest.raises(RequestError, match="different request"):
        Sampler(backend, _config()).run([make_request("c", {"formula": "KCl"}, 2)], out, progress=False)
    with pytest.raises(RequestError, match="different request"):
        Sampler(backend, _config(seed=5)).run(
            [make_request("c", {"formula": "NaCl"}, 2)], out, progress=False
        )
    assert len(read_jsonl(out)) == 1


def test_a_sample_does_not_depend_on_its_batch(backend):
    # Per-row random streams + left padding: the same (prompt, seed) gives the same text alone or in a batch of
    # prompts of different lengths (float32 CPU; a flip would need a draw within ~1e-7 of a CDF boundary).
    prompts = [
        generation_prompt("wyckoff"),
        generation_prompt("wyckoff", {"formula": "NaCl", "spacegroup": "225"}),
        generation_prompt("wyckoff", {"band_gap": 1.5}),
    ]
    seeds = [11, 22, 33]
    params = SamplingParams(max_new_tokens=32)
    batched = [g.text for g in backend.generate(prompts, seeds, params)]
    alone = [backend.generate([p], [s], params)[0].text for p, s in zip(prompts, seeds)]
    assert batched == alone


def test_until_parsed_caps_attempts_and_reports_rejections(backend, tmp_path):
    # Unconstrained, an untrained model almost never writes a decodable text: the cap stops the loop.
    out = tmp_path / "cap.jsonl"
    summary = Sampler(backend, _config(until_parsed=2, max_attempts=6)).run(
        [make_request("u", {}, 1)], out, progress=False
    )
    assert summary["attempts"] <= 6 and (summary["parsed"] >= 2 or summary["attempts"] == 6)
    assert summary["rejection_rate"] == round(1 - summary["parsed"] / summary["attempts"], 4)
    assert summary["until_parsed"]["target"] == 2
    # Constrained, every attempt decodes: exactly the target.
    out = tmp_path / "ok.jsonl"
    cfg = _config(until_parsed=3, constrained=True, params=SamplingParams(max_new_tokens=120))
    summary = Sampler(backend, cfg).run([make_request("u", {}, 1)], out, progress=False)
    assert summary["attempts"] == 3 and summary["parsed"] == 3 and summary["rejection_rate"] == 0.0


def test_zscan_stops_at_the_first_valid_z(backend, tmp_path):
    out = tmp_path / "z.jsonl"
    cfg = _config(constrained=True, zscan_valid="parsed", params=SamplingParams(max_new_tokens=120))
    summary = Sampler(backend, cfg).run(
        [make_request("nacl", {"formula": "NaCl"}, 2, z_scan=True)], out, progress=False
    )
    records = read_jsonl(out)
    assert {r["z"] for r in records} == {1}  # constrained: Z = 1 already decodes, the scan stops there
    assert all("The cell composition is Na1 Cl1." in r["prompt"] for r in records)
    assert summary["zscan_z_found"] == {"nacl": 1}
    # With a space group that cannot hold Na1Cl1 (Fm-3m needs multiples of 4), Z = 1, 2, 3 are skipped.
    out = tmp_path / "z225.jsonl"
    req = make_request("nacl225", {"formula": "NaCl", "spacegroup": "225"}, 1, z_scan=True)
    summary = Sampler(backend, cfg).run([req], out, progress=False)
    assert {r["z"] for r in read_jsonl(out)} == {4}
    assert summary["zscan_z_found"] == {"nacl225": 4}


def test_infill_mode(backend, tmp_path):
    from pymatgen.core import Element, Structure

    rep = get("wyckoff")
    masked = rep.mask_element(BATIO3, "Ti")
    out = tmp_path / "i.jsonl"
    cfg = _config(constrained=True)
    Sampler(backend, cfg).run([make_request("m", masked_text=masked, num_samples=3)], out, progress=False)
    records = read_jsonl(out)
    assert len(records) == 3
    for r in records:
        assert r["prompt"] == infill_prompt(masked)
        assert r["parsed"], r
        assert Element.is_valid_symbol(r["text"])
        assert Element(r["text"]) in Structure.from_str(r["cif"], fmt="cif").composition


def test_export_cif_dir_and_extxyz(backend, tmp_path):
    from ase.io import read

    out = tmp_path / "e.jsonl"
    Sampler(backend, _config(constrained=True, params=SamplingParams(max_new_tokens=120))).run(
        [make_request("u", {}, 3)], out, progress=False
    )
    records = read_jsonl(out)
    n = export_structures(records, tmp_path / "cifs", tmp_path / "all.extxyz")
    assert n == 3 and len(list((tmp_path / "cifs").glob("*.cif"))) == 3
    frames = read(tmp_path / "all.extxyz", index=":")
    assert [f.info["sample_id"] for f in frames] == [r["sample_id"] for r in records]
    assert [len(f) for f in frames] == [r["num_sites"] for r in records]


# ------------------------------------------------------------------------------------------------ resume


# The killed-and-resumed CLI run is in tests/test_kill_resume.py (compared with an uninterrupted run).


def test_adapter_directory_loads_and_samples(tiny_model_dir, tmp_path, one_thread):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from plaid.sampling.generate import HFBackend

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    backend = HFBackend.load(adapter, device="cpu")
    out = tmp_path / "a.jsonl"
    summary = Sampler(backend, _config(constrained=True, params=SamplingParams(max_new_tokens=120))).run(
        [make_request("u", {}, 2)], out, progress=False
    )
    assert summary["parsed"] == 2
    assert all(r["model"] == str(adapter) for r in read_jsonl(out))


def test_vllm_backend_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from plaid.sampling.generate import VLLMBackend

        with pytest.raises(ImportError, match=r"plaid\[vllm\]"):
            VLLMBackend("/nonexistent")
    else:  # pragma: no cover - only where vLLM is installed
        pytest.skip("vLLM is installed")


def test_row_sampler_temperature_top_k_top_p():
    import torch

    from plaid.sampling.generate import RowSampler

    scores = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 4.9, -1.0]])
    greedy = scores.argmax(-1)
    assert torch.equal(RowSampler([1, 2], 0.0, 0, 1.0)(None, scores), scores)  # temperature 0: untouched
    for sampler in (RowSampler([1, 2], 1.0, 1, 1.0), RowSampler([3, 4], 1.0, 0, 1e-6)):
        out = sampler(None, scores)
        assert torch.equal(out.argmax(-1), greedy)
        assert torch.isinf(out).sum() == 6  # one finite score per row: the sampled token
    # top-k = 2 never picks outside the two best tokens; each row follows its own seed
    picks = {
        tuple(RowSampler([s, s + 100], 1.0, 2, 1.0)(None, scores).argmax(-1).tolist()) for s in range(40)
    }
    assert all(a in (1, 3) and b in (0, 2) for a, b in picks) and len(picks) > 1


def test_cli_prompt_file_with_exports(tiny_model_dir, tmp_path, one_thread, capsys):
    from ase.io import read

    from plaid.cli import main

    targets = tmp_path / "targets.csv"
    targets.write_text("id,formula,spacegroup,num_samples\nnacl,NaCl,225,2\nbto,BaTiO3,Pm-3m,1\n")
    out = tmp_path / "p.jsonl"
    code = main(
        ["sample", "--model", str(tiny_model_dir), "--prompt-file", str(targets), "--out", str(out),
         "--constrained", "--max-atoms", "10", "--max-new-tokens", "160", "--no-progress",
         "--cif-dir", str(tmp_path / "cifs"), "--extxyz", str(tmp_path / "p.extxyz")]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    records = read_jsonl(out)
    assert sorted(r["sample_id"] for r in records) == ["bto-00000", "nacl-00000", "nacl-00001"]
    assert {r["formula"] for r in records} == {"NaCl", "BaTiO3"} and summary["parsed"] == 3
    assert summary["exported"] == 3 and len(read(tmp_path / "p.extxyz", index=":")) == 3
    assert len(list((tmp_path / "cifs").glob("*.cif"))) == 3
