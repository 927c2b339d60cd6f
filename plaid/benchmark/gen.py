"""``plaid benchmark gen``: unconditional generation evaluated as CDVAE and PLaID report it.

Samples N unconditional structures, then runs ``plaid.evaluation.evaluate`` (the same code as ``plaid evaluate``):
structural / compositional validity over all samples, coverage (COV-R / COV-P with CDVAE's cutoffs and scaler)
against the test set, Wasserstein distances of density and number of elements, novelty against the training set,
and with a relaxer and a hull: stability and S.U.N. Resumable like its parts."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .settings import BenchmarkSampling, run_sampling
from .stats import difference_interval, wilson_interval
from .targets import guess_dataset, model_info, split_as_csv

SAMPLES_FILE = "samples.jsonl"


@dataclass
class GenBenchmarkConfig(BenchmarkSampling):
    num_samples: int = 1000
    relaxer: str | None = None  # chgnet / m3gnet; None: no relaxation (no stability, no S.U.N.)
    relaxer_model_path: str | None = None  # m3gnet weights directory
    relax_steps: int = 500  # FIRE steps per structure (fmax 0.1 eV/A)
    hull: str | None = None


# rates over all samples, reported with a 95% Wilson interval
RATE_METRICS = ("struct_valid", "comp_valid", "valid", "unique", "novel", "stable_relaxed", "metastable", "sun", "msun")


def compare_gen_results(before: dict, after: dict, metrics: tuple[str, ...] = RATE_METRICS) -> list[dict]:
    """Rows (metric, before, after, after - before with its 95% interval) for two ``benchmark gen`` results."""
    n1, n2 = before["counts"]["samples"], after["counts"]["samples"]
    rows = []
    for key in metrics:
        a, b = before["metrics"].get(key), after["metrics"].get(key)
        if a is None or b is None or a != a or b != b:
            continue
        k1, k2 = round(a * n1), round(b * n2)
        d, lo, hi = difference_interval(k2, n2, k1, n1)
        rows.append({"metric": key, "before": a, "before_ci95": wilson_interval(k1, n1), "after": b,
                     "after_ci95": wilson_interval(k2, n2), "difference": d, "difference_ci95": (lo, hi)})
    return rows


def rate_intervals(metrics: dict, n: int | None) -> dict:
    """95% Wilson intervals of the rate metrics (fractions over ``n`` samples); None where a rate is missing."""
    out = {}
    for key in RATE_METRICS:
        value = metrics.get(key)
        if value is None or not n:
            continue
        out[key] = [round(x, 4) for x in wilson_interval(round(value * n), n)]
    return out


def coverage_counts(report: dict) -> dict:
    """COV-R's and COV-P's numerators and denominators (CDVAE's: all coverage-reference structures, all samples)."""
    cov = report.get("coverage") or {}
    if not cov.get("n_reference") and not cov.get("n_generated"):
        return {}
    return {
        "reference_structures": cov.get("n_reference"),
        "reference_covered": cov.get("n_reference_covered"),
        "samples": cov.get("n_generated"),
        "samples_precise": cov.get("n_generated_precise"),
    }


def coverage_intervals(counts: dict) -> dict:
    """95% Wilson intervals of COV-R (over the reference structures) and COV-P (over the samples)."""
    out = {}
    for key, k, n in (("cov_recall", "reference_covered", "reference_structures"),
                      ("cov_precision", "samples_precise", "samples")):
        if counts.get(n) and counts.get(k) is not None:
            out[key] = [round(x, 4) for x in wilson_interval(counts[k], counts[n])]
    return out


# report.json key -> results key (fractions; distances as they are)
_METRICS = {
    "struct_valid": "struct_valid_rate",
    "comp_valid": "comp_valid_rate",
    "valid": "valid_rate",
    "cov_recall": "cov_recall",
    "cov_precision": "cov_precision",
    "wdist_density": "wdist_density",
    "wdist_num_elems": "wdist_num_elems",
    "unique": "unique_rate",
    "novel": "novel_rate",
    "stable_relaxed": "stable_rate",
    "metastable": "metastable_rate",
    "sun": "sun_rate",
    "msun": "msun_rate",
}


def run_gen_benchmark(
    model: str,
    reference: str,
    out_dir: str | Path,
    test: str | None = None,
    config: GenBenchmarkConfig | None = None,
    backend=None,
) -> dict:
    """Sample, evaluate, write ``results.json`` and ``table.md``; returns the results."""
    from ..evaluation import EvaluationConfig, evaluate
    from ..sampling.requests import make_request
    from .table import gen_table

    cfg = config or GenBenchmarkConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    dataset = cfg.dataset or guess_dataset(test, reference)
    reference = split_as_csv(reference, "train", out / "reference.csv")
    test = split_as_csv(test, "test", out / "test.csv") if test else None
    info = model_info(model)
    representation = cfg.representation or info.get("representation") or "wyckoff"
    requests = [make_request("unconditional", {}, cfg.num_samples)]
    summary = run_sampling(model, requests, out / SAMPLES_FILE, cfg, representation, backend)
    eval_cfg = EvaluationConfig(
        dataset=dataset if dataset in ("mp_20", "perov_5", "carbon_24") else None,
        coverage_reference=str(test) if test else None,
        relax=cfg.relaxer is not None,
        relaxer=cfg.relaxer or "chgnet",
        relaxer_model_path=cfg.relaxer_model_path,
        max_steps=cfg.relax_steps,
        hull=cfg.hull,
        n_jobs=cfg.n_jobs,
        plots=True,
    )
    report = evaluate(out / SAMPLES_FILE, reference, out / "eval", eval_cfg)
    metrics = {k: report.get(v) for k, v in _METRICS.items()}
    coverage = coverage_counts(report)
    results = {
        "benchmark": "gen",
        "metrics": metrics,
        "ci95": {**rate_intervals(metrics, report.get("n_samples")), **coverage_intervals(coverage)},
        "counts": {"samples": report.get("n_samples"), "parsed": summary.get("parsed"), "coverage": coverage},
        "settings": {
            **asdict(cfg),
            "representation": representation,
            "prompt_style": cfg.resolved_prompt_style(model),
            "reference": str(reference),
            "coverage_reference": str(test) if test else str(reference),
            "summary": f"representation {representation}, constrained {cfg.constrained}, temperature "
            f"{cfg.temperature}; coverage against {Path(test).name if test else Path(reference).name}; "
            f"relaxer {cfg.relaxer or 'none (no stability / S.U.N.)'}. Full settings in eval/report.json.",
        },
        "evaluation_report": str(Path("eval") / "report.json"),
        "model": info,
        "data": {"reference": str(reference), "test": str(test) if test else None, "dataset": dataset},
        "elapsed_s": round(time.time() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "table.md").write_text(gen_table(results, dataset))
    return results
