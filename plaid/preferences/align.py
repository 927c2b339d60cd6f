"""The iterative alignment loop (PLaID / PLaID++): sample -> label -> pairs -> DPO, N times.

Iteration i samples from the adapter of iteration i-1 (iteration 1: the SFT adapter) at the scheduled temperature,
labels the samples with the MLIP and the hull, builds preference pairs, and runs DPO with that adapter as the
policy's starting point *and* frozen reference. Each iteration lives in ``output_dir/iter_<i>/`` with
``samples.jsonl``, ``labels/``, ``pairs/`` and ``dpo/``; a stage that finished leaves ``<stage>.done`` and is
skipped on a re-run, and a stage that was killed resumes from its own files (sampling and relaxation append per
sample). ``summary.json`` and ``summary.md`` hold one row per iteration.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PLAID_PP_TEMPERATURES = [0.7, 0.7, 0.9, 0.9, 1.1, 1.1, 1.3]  # PLaID++'s per-iteration schedule


@dataclass
class AlignConfig:
    """Flat YAML config of ``plaid align`` (unknown keys are errors)."""

    sft_adapter: str  # the SFT model the first iteration starts from: a LoRA adapter dir or a full model dir
    output_dir: str
    dpo_config: str  # a DPO recipe YAML (recipes/configs/...); sft_adapter/preference_dataset/output_dir are set here
    iterations: int = 7
    representation: str = "wyckoff"
    num_samples: int = 10000
    batch_size: int = 64
    temperatures: list[float] = field(default_factory=lambda: list(PLAID_PP_TEMPERATURES))
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None
    constrained: bool = False
    grammar_options: dict = field(default_factory=dict)  # e.g. {max_atoms: 20, length_range: [2.5, 12.0]}
    device: str | None = None
    relaxer: str = "m3gnet"  # labeller (PLaID: M3GNet); evaluate with CHGNet separately
    relaxer_model_path: str | None = None
    relaxer_energy_scale: str | None = None  # mp2020 | mp_raw: scale of relaxer_model_path's energies
    relax_device: str | None = None  # device of the labelling MLIP (default: `device`, else cpu)
    relax_max_steps: int = 500
    relax_fmax: float = 0.1
    relax_batch_size: int = 32
    hull: str | None = None  # MP hull file; None: offline hull from `reference`
    reference: str | None = None  # training CSV or built dataset dir (its train split): offline hull, novelty, S.U.N.
    mode: str = "basic"
    ratio: int = 3
    threshold: float = 0.08
    stable_threshold: float = 0.0
    test_size: float = 0.1
    seed: int = 0
    dpo_overrides: list[str] = field(default_factory=list)  # extra recipe flags, e.g. ["--max_steps", "10"]

    @classmethod
    def from_yaml(cls, path: str | Path) -> AlignConfig:
        import os

        import yaml

        data = yaml.safe_load(os.path.expandvars(Path(path).read_text())) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        from .pairs import MODES

        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if not self.temperatures:
            raise ValueError("temperatures must list at least one value")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if self.mode == "spacegroup":
            raise ValueError("mode: spacegroup pairs samples of space-group-conditioned prompts, but the alignment "
                             "loop samples only the unconditional prompt: use mode basic, tiered or msun, or build "
                             "space-group pairs with `plaid sample --prompt-file` + `plaid pairs --mode spacegroup`")
        if self.mode == "msun" and self.reference is None:
            raise ValueError("mode: msun needs `reference` (the training set) for the novelty of metastable samples")
        if self.hull is None and self.reference is None:
            raise ValueError("give `hull` (MP hull file) or `reference` (training CSV for an offline hull)")

    def temperature(self, iteration: int) -> float:
        """Temperature of 1-based ``iteration``; the schedule's last value repeats past its end."""
        return float(self.temperatures[min(iteration, len(self.temperatures)) - 1])


def _done(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _mark(path: Path, payload: dict) -> dict:
    tmp = path.with_name(path.name + ".tmp")  # a kill mid-write must not leave a torn marker
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
    return payload


class _Labeller:
    """Relaxer, hull and reduced reference loaded once for all iterations, on first use."""

    def __init__(self, config: AlignConfig):
        self.config = config
        self._relaxer = self._hull = self._reference = None

    @property
    def relaxer(self):
        if self._relaxer is None:
            from .dataset import load_labeller

            c = self.config
            self._relaxer = load_labeller(c.relaxer, c.relaxer_model_path, c.relax_fmax, c.relax_max_steps,
                                          c.relax_batch_size, device=c.relax_device or c.device or "cpu",
                                          energy_scale=c.relaxer_energy_scale)
        return self._relaxer

    @property
    def hull(self):
        if self._hull is None:
            from ..hull import load_hull

            self._hull = load_hull(self.config.hull, reference_csv=None if self.config.hull else self.config.reference)
        return self._hull

    @property
    def reference(self):
        if self._reference is None and self.config.reference:
            from .dataset import load_reference_for_novelty

            self._reference = load_reference_for_novelty(self.config.reference)
        return self._reference


def sample_stage(config: AlignConfig, adapter: str, out: Path, iteration: int) -> dict:
    from ..prompts import DEFAULT_PROMPT_STYLE, trained_prompt_style
    from ..sampling import SampleConfig, Sampler, SamplingParams, load_backend, make_request

    params = SamplingParams(config.temperature(iteration), config.top_p, config.top_k, config.max_new_tokens)
    style = trained_prompt_style(config.sft_adapter) or DEFAULT_PROMPT_STYLE  # every iteration: the SFT wording
    sample_config = SampleConfig(representation=config.representation, batch_size=config.batch_size,
                                 seed=config.seed + 1000 * iteration, params=params, constrained=config.constrained,
                                 grammar_options=dict(config.grammar_options), prompt_style=style)
    backend = load_backend(adapter, "hf", device=config.device)
    try:
        summary = Sampler(backend, sample_config).run([make_request("unconditional", None, config.num_samples)], out)
    finally:
        del backend
        gc.collect()
    return summary


def iteration_metrics(samples: Path, labels_dir: Path, labeller: _Labeller, config: AlignConfig) -> dict:
    """Parse, validity, stability, metastability and S.U.N. rates of one iteration, all over every sample, read
    from the labelling's per-sample outcomes (the definitions of plaid evaluate: plaid.evaluation.outcome)."""
    from ..evaluation.outcome import read_outcomes

    outcomes, _ = read_outcomes(labels_dir)
    n = len(outcomes)

    def rate(k: int) -> float:
        return k / n if n else 0.0

    return {
        "n_samples": n,
        "parse_rate": rate(sum(o.parsed for o in outcomes)),
        "valid_rate": rate(sum(o.valid for o in outcomes)),
        "metastable_rate": rate(sum(o.is_metastable is True for o in outcomes)),
        "stable_rate": rate(sum(o.is_stable is True for o in outcomes)),
        "sun_rate": rate(sum(o.is_sun is True for o in outcomes)) if labeller.reference is not None else None,
        "msun_rate": rate(sum(o.is_msun is True for o in outcomes)) if labeller.reference is not None else None,
    }


def dpo_stage(config: AlignConfig, adapter: str, pairs_dir: Path, out: Path) -> dict:
    from ..training.args import parse_recipe_config
    from ..training.model import is_adapter_dir
    from ..training.run import run_dpo

    # a LoRA adapter is DPO-trained in place (its frozen copy is the reference); a full model (e.g. a from-scratch
    # recipe's) is trained whole, with a frozen copy of itself as the reference
    start = "--sft_adapter" if is_adapter_dir(adapter) else "--model_name_or_path"
    args = parse_recipe_config(
        "dpo", config.dpo_config,
        start, str(adapter), "--preference_dataset", str(pairs_dir), "--preference_pairs", "saved",
        "--output_dir", str(out), "--dataset_train_split", "train", "--dataset_test_split", "test",
        *config.dpo_overrides,
    )
    path = run_dpo(*args)
    record = json.loads((Path(path) / "plaid_run.json").read_text()) if (Path(path) / "plaid_run.json").exists() else {}
    history = record.get("log_history", [])
    last = next((h for h in reversed(history) if "rewards/accuracies" in h), {})
    gc.collect()
    return {"adapter": str(path), "rewards/accuracies": last.get("rewards/accuracies"),
            "rewards/margins": last.get("rewards/margins"), "train_loss": record.get("train_metrics", {}).get("train_loss")}


def run_alignment(config: AlignConfig) -> dict:
    """Run (or resume) every iteration; returns the summary (rows and a Markdown table)."""
    from ..benchmark.targets import split_as_csv
    from .dataset import make_preference_dataset
    from .pairs import PairingError

    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "align_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))  # as given
    if config.reference:
        config = dataclasses.replace(config, reference=split_as_csv(config.reference, "train", root / "reference.csv"))
    labeller = _Labeller(config)
    adapter = config.sft_adapter
    rows = []
    for it in range(1, config.iterations + 1):
        d = root / f"iter_{it}"
        d.mkdir(exist_ok=True)
        row = {"iteration": it, "temperature": config.temperature(it), "start_adapter": adapter}
        t0 = time.perf_counter()
        sampled = _done(d / "sample.done") or _mark(d / "sample.done", sample_stage(config, adapter, d / "samples.jsonl", it))
        row["samples_per_second"] = sampled.get("samples_per_second")
        pairs = _done(d / "pairs.done")
        if pairs is None:
            try:
                _, stats = make_preference_dataset(
                    d / "samples.jsonl", d / "pairs", labels_dir=d / "labels", mode=config.mode, ratio=config.ratio,
                    threshold=config.threshold, stable_threshold=config.stable_threshold, relaxer=labeller.relaxer,
                    hull=labeller.hull, reference=labeller.reference,
                    test_size=config.test_size,
                    seed=config.seed + it,
                )
            except PairingError as exc:
                row.update(iteration_metrics(d / "samples.jsonl", d / "labels", labeller, config))
                row["stopped"] = f"no preference pairs: {exc}"
                rows.append(row)
                log.error("iteration %d: %s; stopping", it, exc)
                break
            kept = ("n_pairs", "pair_types", "n_accepted", "n_rejected", "split_counts", "tier_counts", "role_counts")
            pairs = _mark(d / "pairs.done", {k: stats[k] for k in kept if k in stats})
        row.update(n_pairs=pairs["n_pairs"], n_accepted=pairs["n_accepted"], n_rejected=pairs["n_rejected"])
        metrics = _done(d / "metrics.done") or _mark(d / "metrics.done", iteration_metrics(d / "samples.jsonl", d / "labels", labeller, config))
        row.update(metrics)
        dpo = _done(d / "dpo.done") or _mark(d / "dpo.done", dpo_stage(config, adapter, d / "pairs", d / "dpo"))
        row.update({k: v for k, v in dpo.items() if k != "adapter"}, end_adapter=dpo["adapter"])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        adapter = dpo["adapter"]
        rows.append(row)
        _write_summary(root, rows, config)
    return _write_summary(root, rows, config)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _write_summary(root: Path, rows: list[dict], config: AlignConfig) -> dict:
    columns = ["iteration", "temperature", "n_samples", "parse_rate", "valid_rate", "metastable_rate", "stable_rate",
               "sun_rate", "msun_rate", "n_accepted", "n_rejected", "n_pairs", "rewards/accuracies", "rewards/margins"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    table = "\n".join(lines)
    note = (f"Labeller {config.relaxer} ({config.relax_max_steps} FIRE steps, fmax {config.relax_fmax}); hull "
            f"{config.hull or 'offline from ' + str(config.reference)}; metastable: E_hull < {config.threshold}, "
            f"stable: E_hull <= {config.stable_threshold} eV/atom; rates over all samples of the iteration.")
    summary = {"rows": rows, "table": table, "note": note}
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (root / "summary.md").write_text(f"# plaid align\n\n{table}\n\n{note}\n")
    return summary
