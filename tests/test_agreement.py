"""Labeller-vs-judge agreement (`plaid.evaluation.agreement`) on hand-made outcomes, and the benchmark script on
two real `plaid evaluate` output layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plaid.evaluation.agreement import relaxer_agreement

ROOT = Path(__file__).resolve().parents[1]


def out(i, e_hull, metastable=None, msun=False, stable=False):
    return {"sample_id": str(i), "e_hull": e_hull, "is_metastable": metastable if metastable is not None else
            (e_hull is not None and e_hull < 0.5), "is_msun": msun, "is_stable": stable}


def test_counts_overlap_and_correlation():
    labeller = [out(0, 0.1, msun=True), out(1, 0.2, msun=True), out(2, 0.3), out(3, 1.0), out(4, None)]
    judge = [out(0, 0.4), out(1, 1.5), out(2, 2.0), out(3, 2.5), out(4, 0.2)]
    r = relaxer_agreement(labeller, judge)
    assert r["n_samples"] == 5 and r["n_both"] == 4  # sample 4 failed under the labeller: no pair, still counted
    assert r["metastable"] == [3, 2] and r["metastable_in_both"] == 1
    assert r["msun"] == [2, 0] and r["msun_confirmed"] == 1  # sample 0: the judge agrees it is below 0.5
    # by hand: dx = (-.3, -.2, -.1, .6), dy = (-1.2, -.1, .4, .9): r = 0.88 / sqrt(0.5 * 2.42) = 0.8
    assert r["pearson"] == pytest.approx(0.8)
    assert r["spearman"] == pytest.approx(1.0)
    assert r["median_e_hull"] == [pytest.approx(0.25), pytest.approx(1.5)]  # each over its own relaxed samples


def test_refuses_different_samples_and_leaves_undefined_correlation_empty():
    with pytest.raises(ValueError, match="different samples"):
        relaxer_agreement([out(0, 0.1)], [out(1, 0.1)])
    r = relaxer_agreement([out(0, 0.1), out(1, None)], [out(0, 0.3), out(1, 0.2)])
    assert r["n_both"] == 1 and r["pearson"] is None and r["spearman"] is None


def _write_eval(directory: Path, outcomes: list[dict], threshold: float, sha: str = "abc") -> Path:
    directory.mkdir()
    (directory / "outcomes.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outcomes))
    settings = {"settings": {"metastable_threshold": threshold}, "samples_sha256": sha,
                "energies": {"relaxer": {"name": "m3gnet", "model_version": "M3GNet-MP-2021.2.8-PES",
                                         "max_steps": 20, "fmax": 0.1}}}
    (directory / "outcome_settings.json").write_text(json.dumps(settings))
    return directory


def test_script_prints_the_table_and_refuses_mismatched_runs(tmp_path):
    a = _write_eval(tmp_path / "a", [out(0, 0.1, msun=True), out(1, 0.9), out(2, 1.2)], 0.5)
    b = _write_eval(tmp_path / "b", [out(0, 1.1), out(1, 0.4), out(2, 1.3)], 0.5)
    script = str(ROOT / "benchmarks/compare_relaxers.py")
    done = subprocess.run([sys.executable, script, str(a), str(b)], capture_output=True, text=True, check=True)
    assert "| M.S.U.N. | 1 | 0 | 0 of the first's metastable in the second |" in done.stdout
    assert "| metastable | 1 | 1 | 0 |" in done.stdout and "3 samples both relaxed" in done.stdout
    c = _write_eval(tmp_path / "c", [out(0, 1.1), out(1, 0.4), out(2, 1.3)], 0.08)
    bad = subprocess.run([sys.executable, script, str(a), str(c)], capture_output=True, text=True)
    assert bad.returncode != 0 and "thresholds differ" in bad.stderr
    d = _write_eval(tmp_path / "d", [out(0, 1.1), out(1, 0.4), out(2, 1.3)], 0.5, sha="other")
    bad = subprocess.run([sys.executable, script, str(a), str(d)], capture_output=True, text=True)
    assert bad.returncode != 0 and "different sample files" in bad.stderr
