"""``plaid benchmark csp``: crystal structure prediction as CDVAE, DiffCSP and CrystaLLM measure it.

For every test structure (target), the model is prompted with its cell composition (optionally with its space
group) and ``max(n)`` candidates are sampled; ``plaid.evaluation.evaluate_csp`` matches the first n candidates of
each target against it with StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10) and reports the match rate (matched
targets / all targets) and the mean RMSE over matched targets (RMS displacement normalised by (V/N)^(1/3)).

The cell composition in the prompt is the one the model's representation writes for the target (the cell it was
trained to generate: for ``wyckoff``, the conventional standard cell), so the prompt is one the model has seen
the like of. Each candidate carries its target's ``material_id``, so polymorphs of one formula get only their own
candidates. Sampling, matching and the report are resumable: re-running with the same ``--out`` continues.

How the candidates are drawn (independent samples by default; ``first_greedy``; ``distinct``) is
``plaid.benchmark.candidates``; ``results.json`` says which (``settings.decoding``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .breakdown import csp_breakdown
from .candidates import SAMPLES_FILE, draw_candidates
from .settings import BenchmarkSampling
from .stats import wilson_interval
from .targets import load_targets, model_info

logger = logging.getLogger(__name__)

TARGETS_FILE = "targets.csv"


@dataclass
class CSPBenchmarkConfig(BenchmarkSampling):
    n_values: tuple[int, ...] = (1, 20)
    num_targets: int | None = None  # first K targets (in file order) of the test set
    spacegroup: bool = False  # prompt with the target's space group too
    split: str = "test"  # split of a built dataset given as targets
    candidate_filter: str = "struct_valid"
    first_greedy: bool = False  # candidate 1 greedy (T=0), candidates 2..max(n) sampled at `temperature`
    distinct: bool = False  # candidates pairwise different structures (uniqueness matcher); duplicates redrawn
    max_draws_per_candidate: int = 5  # with distinct: at most this many draws per candidate slot, per target


def csp_prompt_rows(
    targets: pd.DataFrame, representation: str, num_samples: int, spacegroup: bool
) -> tuple[list[dict], list[int | None]]:
    """One sampler request per target: id, material_id, cell composition (as ``representation`` writes the cell)
    and optionally the space group; targets the representation cannot encode are prompted with their own cell.
    Also each target's space group number (the representation's, else spglib's at symprec 0.1; None: unreadable)."""
    from ..data.build import encode_record

    rows, numbers = [], []
    for _, t in targets.iterrows():
        enc = encode_record(t["cif"], representation)
        if enc["text"] is None:
            from pymatgen.core import Structure
            from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

            try:
                s = Structure.from_str(t["cif"], fmt="cif")
            except Exception as exc:  # noqa: BLE001 - an unreadable target is scored unmatched, not sampled for
                logger.warning("target %s unreadable (%s): no candidates", t["material_id"], exc)
                numbers.append(None)
                continue
            composition = " ".join(f"{el.symbol}{int(n)}" for el, n in s.composition.items())
            number = SpacegroupAnalyzer(s, symprec=0.1).get_space_group_number()
            logger.warning(
                "target %s not encodable (%s): prompted with its own cell", t["material_id"], enc["error"]
            )
        else:
            composition, number = enc["composition"], enc["spacegroup"]
        row = {
            "id": _safe_id(t["material_id"]),
            "material_id": str(t["material_id"]),
            "num_samples": num_samples,
            "composition": composition,
        }
        if spacegroup:
            row["spacegroup"] = number
        rows.append(row)
        numbers.append(int(number))
    return rows, numbers


def spacegroup_label(number: int | None) -> str:
    from pymatgen.symmetry.groups import SpaceGroup

    if number is None:
        return "unreadable target"
    return f"{SpaceGroup.from_int_number(number).symbol} ({number})"


def _decoding(cfg: CSPBenchmarkConfig) -> str:
    k = max(cfg.n_values)
    sampled = f"sampled at T={cfg.temperature}" if cfg.temperature > 0 else "greedy"
    text = f"candidate 1 greedy, candidates 2..{k} {sampled}" if cfg.first_greedy else f"all candidates {sampled}"
    if cfg.distinct:
        text += (f"; candidates pairwise distinct (StructureMatcher ltol 0.2, stol 0.3, angle 5), duplicates "
                 f"redrawn, at most {cfg.max_draws_per_candidate * k} draws per target")
    return text


def _per_target(path: Path, n_values) -> list[dict]:
    """``csp_targets.csv`` rows in target order, with ``rmse_at_{n}`` a float or None (unmatched)."""
    frame = pd.read_csv(path, dtype={"material_id": str})
    return [{f"rmse_at_{n}": None if pd.isna(row[f"rmse_at_{n}"]) else float(row[f"rmse_at_{n}"]) for n in n_values}
            for _, row in frame.iterrows()]


def _safe_id(value) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.\-+=]", "_", str(value))


def run_csp_benchmark(
    model: str, targets: str, out_dir: str | Path, config: CSPBenchmarkConfig | None = None, backend=None
) -> dict:
    """Sample candidates for each target, evaluate CSP, write ``results.json`` and ``table.md``; returns results."""
    from ..evaluation.csp import run_csp
    from .table import csp_table

    cfg = config or CSPBenchmarkConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    info = model_info(model)
    representation = cfg.representation or info.get("representation") or "wyckoff"
    frame, source = load_targets(targets, split=cfg.split, num_targets=cfg.num_targets)
    frame[["material_id", "cif"]].to_csv(out / TARGETS_FILE, index=False)
    prompts, numbers = csp_prompt_rows(frame, representation, max(cfg.n_values), cfg.spacegroup)
    if not prompts:
        raise ValueError(f"{targets}: no readable target structure")
    summary = draw_candidates(model, prompts, out, cfg, representation, backend)
    report = run_csp(
        out / SAMPLES_FILE,
        out / TARGETS_FILE,
        out / "csp",
        n_values=tuple(cfg.n_values),
        candidate_filter=cfg.candidate_filter,
        n_jobs=cfg.n_jobs,
    )
    dataset = cfg.dataset or source.get("dataset")
    matched = {n: report["metrics"][f"n={n}"]["n_matched"] for n in cfg.n_values}
    per_target = _per_target(out / "csp" / "csp_targets.csv", cfg.n_values)
    results = {
        "benchmark": "csp",
        "match_rate": {str(n): report[f"match_rate_at_{n}"] for n in cfg.n_values},
        "match_rate_ci95": {str(n): [round(x, 4) for x in wilson_interval(matched[n], report["n_targets"])]
                            for n in cfg.n_values},
        "rmse": {str(n): report[f"mean_rmse_at_{n}"] for n in cfg.n_values},
        "counts": {
            "targets": report["n_targets"],
            "targets_unreadable": report["n_targets_unreadable"],
            "samples": report["n_samples"],
            "draws": summary.get("draws"),
            "targets_short_of_distinct": summary.get("targets_short_of_distinct"),
            "samples_parsed": report["n_samples_parsed"],
            "candidates_ok": report["n_candidates_ok"],
            "samples_unassigned": report["n_samples_unassigned"],
            "assignment": report.get("assignment"),
            "matched": {k: v.get("n_matched") for k, v in report["metrics"].items()},
        },
        "settings": {
            **asdict(cfg),
            "representation": representation,
            "prompt_style": cfg.resolved_prompt_style(model),
            "prompt": "cell composition" + (" + space group" if cfg.spacegroup else ""),
            "decoding": _decoding(cfg),
            "matcher": report["settings"]["matcher"],
            "rmse": report["settings"]["rmse"],
            "match_rate_denominator": report["denominators"]["match_rate"],
            "rmse_denominator": report["denominators"]["mean_rmse"],
        },
        "sampling": {k: summary.get(k) for k in ("parse_rate", "samples_per_second", "generation_seconds")},
        "model": info,
        "data": {"targets": source, "dataset": dataset},
        "elapsed_s": round(time.time() - started, 1),
    }
    results["curve"] = report["curve"]
    # by the target's space group (the representation's symmetry): which kinds of target carry the mean RMSE
    results["by_spacegroup"] = csp_breakdown(per_target, [spacegroup_label(k) for k in numbers], cfg.n_values)
    from ..evaluation.plots import write_csp_curve

    results["plot"] = write_csp_curve(out / "match_rate_vs_n.png", report["curve"],
                                      f"CSP, {report['n_targets']} targets ({dataset or 'test set'})")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "table.md").write_text(csp_table(results, dataset))
    return results
