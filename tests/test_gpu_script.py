"""benchmarks/gpu/run.py --smoke: the GPU readiness script's own code on CPU with tiny sizes.

Checks that every section ran (model, sampling, qlora, relax), that the JSON summary has the keys the README and
the closing note quote, and that the measured figures are positive and finite. The numbers themselves are CPU
smoke numbers and are not asserted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PLAID_DATA_DIR", ROOT.parent / "shared" / "data"))


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.skipif(not (DATA / "mp_20" / "val.csv").exists() and not (DATA / "perov_5" / "val.csv").exists(),
                    reason="needs MP-20 or Perov-5 under PLAID_DATA_DIR")
def test_gpu_script_smoke(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu" / "run.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    summary = json.loads(out.read_text())
    assert json.loads(proc.stdout) == summary  # the one JSON summary on stdout is the file's
    sections = summary["sections"]
    assert set(sections) == {"model", "sampling", "qlora", "relax"}
    failed = {k: v.get("error") for k, v in sections.items() if not v["ok"]}
    assert not failed, failed
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary["smoke"] is True and summary["device"] == "cpu"

    model = sections["model"]
    assert model["config"]["num_hidden_layers"] == 2 and model["parameters"] > 0

    sampling = sections["sampling"]
    for mode in ("unconstrained", "constrained"):
        m = sampling[mode]
        assert 1 <= m["samples"] <= sampling["samples_requested"]
        for key in ("tokens_per_s", "samples_per_s", "projected_min_per_10k", "mean_tokens_per_sample", "seconds"):
            assert _positive(m[key]), (mode, key, m[key])
    # the grammar only lets decodable Wyckoff text through, even from an untrained model
    assert sampling["constrained"]["parse_rate"] == 1.0

    qlora = sections["qlora"]
    assert qlora["lora"] == {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    assert qlora["quantized_4bit"] is False  # NF4 needs the GPU; the smoke run trains the same LoRA unquantized
    assert qlora["steps_timed"] >= 1 and qlora["trainable_parameters"] > 0
    for key in ("median_step_s", "tokens_per_s", "train_loss"):
        assert _positive(qlora[key]), (key, qlora[key])

    relax = sections["relax"]
    assert relax["batched"]["structures"] >= 1 and relax["ase_sequential"]["structures"] >= 1
    for key in ("structures_per_s", "seconds"):
        assert _positive(relax["batched"][key]) and _positive(relax["ase_sequential"][key])
    assert _positive(relax["speedup_batched_vs_ase"])
    for entry in sections.values():
        assert _positive(entry["seconds"])
    assert _positive(summary["total_s"])
