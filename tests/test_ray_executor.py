"""The per-structure stages on a local Ray cluster with 2 CPU workers (``--executor ray``): relaxation, labelling
(checks, matching, M3GNet relaxation, E_hull) and evaluation give the records of the local run, a task whose worker
process dies is run again, and a stage interrupted after some results resumes with only the rest."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from plaid.executors import Executor, LocalExecutor, RayExecutor, make_executor  # noqa: E402
from plaid.io import JsonlWriter, dumps, read_jsonl  # noqa: E402
from plaid.relax import Relaxer  # noqa: E402
from tests.test_relax import LennardJonesModel, _argon  # noqa: E402

# Ray's own processes start in seconds on an idle machine; on a loaded 2-core one they take minutes, past Ray's
# default startup waits (the raylet waits for its agents), so the waits are raised here, and the wall-clock limit
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
STARTUP_WAITS = {"RAY_raylet_start_wait_time_s": "900", "RAY_agent_register_timeout_ms": "900000",
                 "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "900"}


@pytest.fixture(scope="module")
def executor():
    for key, value in STARTUP_WAITS.items():
        os.environ.setdefault(key, value)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield make_executor("ray")  # the running local cluster: 2 workers
    finally:
        ray.shutdown()


def _assert_same_relaxations(got, expected) -> None:
    """Same statuses and FIRE step counts; energies and structures to float64 rounding. Not bitwise: a structure's
    batch-mates (its chunk on a worker, the refilled batch in one process) change the last bits of the batched
    cell algebra, as between two batch sizes in one process (measured: <= 3e-14 eV/atom, 2e-12 A)."""
    assert [r.id for r in got] == [r.id for r in expected]
    for a, b in zip(got, expected):
        assert (a.status, a.n_steps, a.reason) == (b.status, b.n_steps, b.reason)
        assert a.energy_per_atom == pytest.approx(b.energy_per_atom, abs=1e-9)
        assert a.initial_energy_per_atom == pytest.approx(b.initial_energy_per_atom, abs=1e-12)
        assert np.allclose(a.structure.lattice.matrix, b.structure.lattice.matrix, atol=1e-8)
        assert np.allclose(a.structure.cart_coords, b.structure.cart_coords, atol=1e-8)


class _Counting(Executor):
    """An executor that counts the structures of the relaxation chunks it passes on."""

    def __init__(self, inner):
        self.inner, self.workers, self.structures = inner, inner.workers, 0

    def imap_unordered(self, fn, payloads, gpus=0.0):
        payloads = list(payloads)
        self.structures += sum(len(chunk) for chunk in payloads)
        return self.inner.imap_unordered(fn, payloads, gpus)


def test_relaxation_on_ray_is_the_local_relaxation_and_resumes(executor, tmp_path):
    assert isinstance(executor, RayExecutor) and executor.workers == 2
    structures = [_argon(seed=s) for s in range(3)]
    relaxer = Relaxer(LennardJonesModel(), fmax=0.05, max_steps=60, batch_size=2)
    local = relaxer.relax(structures, progress=False)
    out = tmp_path / "relax.jsonl"
    on_ray = relaxer.relax(structures, out_path=out, progress=False, executor=executor)
    _assert_same_relaxations(on_ray, local)
    assert {r["id"] for r in read_jsonl(out)} == {"0", "1", "2"}
    # a driver killed after one result: the file holds it; the re-run relaxes only the other two
    kept = read_jsonl(out)[:1]
    out.write_text("".join(dumps(r) + "\n" for r in kept))
    counting = _Counting(executor)
    again = relaxer.relax(structures, out_path=out, progress=False, executor=counting)
    assert counting.structures == 2
    _assert_same_relaxations(again, local)
    lines = read_jsonl(out)
    assert len(lines) == 3 and lines[:1] == kept


def _dies_once(payload):
    """Kills its own worker process the first time it sees an item (a marker file says it was seen)."""
    marker, value, driver_pid = payload
    if not Path(marker).exists():
        Path(marker).write_text("seen")
        if os.getpid() == driver_pid:  # run here, not on a worker: fail the test instead of ending the session
            raise AssertionError("the task ran in the driver process, not on a Ray worker")
        os._exit(1)
    return {"square": value * value, "pid": os.getpid()}


def test_a_task_whose_worker_dies_is_run_again(executor, tmp_path):
    from plaid.evaluation.stages import run_stage

    items = [(f"k{i}", (str(tmp_path / f"m{i}"), i, os.getpid())) for i in range(3)]
    with JsonlWriter(tmp_path / "stage.jsonl", key="id") as writer:
        out = run_stage(_dies_once, items, writer, executor, "dies once")
    assert {k: r["square"] for k, r in out.items()} == {"k0": 0, "k1": 1, "k2": 4}
    assert len(read_jsonl(tmp_path / "stage.jsonl")) == 3
    assert all(Path(tmp_path / f"m{i}").exists() for i in range(3))
    with pytest.raises(AssertionError, match="driver"):  # here it refuses; on a worker it really exits
        _dies_once((str(tmp_path / "fresh"), 0, os.getpid()))


def test_labels_on_ray_are_the_local_labels(executor, tmp_path, perov_csv, perov_structures, m3gnet_path):
    """plaid pairs' labelling (checks, matching, M3GNet relaxation, offline hull) with the stages on Ray."""
    import pandas as pd

    from plaid.hull import load_hull
    from plaid.preferences import label_samples
    from plaid.relax import get_relaxer
    from plaid.representations import get

    reference = tmp_path / "ref.csv"
    pd.read_csv(perov_csv, nrows=300).to_csv(reference, index=False)
    hull = load_hull(None, reference_csv=reference)
    rep = get("wyckoff")
    records = [{"sample_id": str(i), "prompt": "P", "text": rep.encode(s), "parsed": True, "cif": s.to(fmt="cif"),
                "representation": "wyckoff", "error": None} for i, s in enumerate(perov_structures[:3])]
    records.append({"sample_id": "3", "prompt": "P", "text": "Sr1 Ti1", "parsed": False, "cif": None,
                    "representation": "wyckoff", "error": "truncated"})
    relaxer = get_relaxer("m3gnet", model_path=m3gnet_path, max_steps=5, batch_size=2)
    local = label_samples(records, tmp_path / "local", relaxer=relaxer, hull=hull, progress=False)
    on_ray = label_samples(records, tmp_path / "ray", relaxer=relaxer, hull=hull, progress=False, n_jobs=executor)
    assert [lab.status for lab in local] == ["ok", "ok", "ok", "unparsed"]
    numbers = ("e_hull", "energy_per_atom")
    for a, b in zip(local, on_ray):
        a, b = a.to_record(), b.to_record()
        assert {k: v for k, v in a.items() if k not in numbers} == {k: v for k, v in b.items() if k not in numbers}
        for key in numbers:  # M3GNet in float32, other batch-mates on the workers: equal to 0.1 meV/atom
            assert (a[key] is None) == (b[key] is None)
            assert a[key] is None or math.isclose(a[key], b[key], rel_tol=0, abs_tol=1e-4)
    relaxed_local = {r["id"]: r for r in read_jsonl(tmp_path / "local" / "relax.jsonl")}
    relaxed_ray = {r["id"]: r for r in read_jsonl(tmp_path / "ray" / "relax.jsonl")}
    assert relaxed_local.keys() == relaxed_ray.keys() == {"0", "1", "2"}
    for sid, r in relaxed_local.items():
        assert relaxed_ray[sid]["n_steps"] == r["n_steps"] and relaxed_ray[sid]["status"] == r["status"]
        assert math.isclose(relaxed_ray[sid]["energy_per_atom"], r["energy_per_atom"], rel_tol=0, abs_tol=1e-4)


def test_evaluate_on_ray_is_the_local_evaluation(executor, tmp_path, perov_csv, perov_structures, monkeypatch):
    import pandas as pd

    from plaid.evaluation import EvaluationConfig, evaluate
    from plaid.evaluation.pipeline import read_structures_csv

    monkeypatch.setenv("PLAID_CACHE_DIR", str(tmp_path / "cache"))
    reference = tmp_path / "train.csv"
    pd.read_csv(perov_csv, skiprows=range(1, 11), nrows=6).to_csv(reference, index=False)
    samples = tmp_path / "samples.csv"
    pd.DataFrame({"cif": [s.to(fmt="cif") for s in perov_structures[:4]] + [perov_structures[0].to(fmt="cif")]
                  }).to_csv(samples, index=False)
    rows = {}
    for kind in ("local", "ray"):
        cfg = EvaluationConfig(dataset="perov_5", relax=False, plots=False, executor=kind)
        report = evaluate(samples, reference, tmp_path / kind, cfg)
        rows[kind] = read_structures_csv(tmp_path / kind / "structures.csv")
        assert report["n_samples"] == 5
    for a, b in zip(rows["local"], rows["ray"]):
        a.pop("gen_time_s"), b.pop("gen_time_s")
        assert a == b
    assert rows["ray"][4]["is_unique"] == "False"  # the repeated structure: matching ran on Ray too


def test_executor_arguments():
    assert LocalExecutor(1).workers == 1 and list(LocalExecutor(1).imap_unordered(abs, [-1, 2])) == [1, 2]
    with pytest.raises(ValueError, match="--ray-address needs --executor ray"):
        make_executor("local", ray_address="auto")
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask")
