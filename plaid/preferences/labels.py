"""Labels for preference pairs, read from per-sample outcomes (:mod:`plaid.evaluation.outcome`).

Both labelling paths go through the same :class:`~plaid.evaluation.outcome.Outcome` records, so they give the same
label for the same sample and settings: :func:`label_samples` computes them with the MLIP and hull it is given
(PLaID labels its own samples with M3GNet, 500 FIRE steps, and keeps CHGNet for evaluation, so the reward cannot be
gamed by one potential), and :func:`labels_from_evaluation` reads the ``outcomes.jsonl`` that ``plaid evaluate``
wrote. Every stage is cached in the labels directory and recomputed when its inputs or settings change
(``stages.json``; relaxations made with other relaxer settings are redone); ``labels.jsonl`` is rewritten from the
outcomes on every run, so a changed relaxer or hull always applies.

Label ``status`` (from ``Outcome.status``):
- ``ok``: parsed, valid (structurally: no atoms closer than 0.5 A, volume >= 0.1 A^3; and SMACT, CDVAE), relaxed,
  E_hull known;
- ``unparsed``, ``invalid``, ``relax_failed`` (exploded, timed out or errored): bad generations, always rejected;
- ``unlabelled``: relaxed, but E_hull unknown (the hull lacks an element, ...): never paired, counted.

``is_novel`` is the novelty of a *stable* sample under the S.U.N. protocol (its relaxed structure's class matches
no training structure); None for the others and without a training reference. ``msun_class`` / ``msun_novel`` /
``is_msun``: the same for metastable samples (M.S.U.N.; the representative's sample id, its class's novelty,
whether this sample is the representative). ``spacegroup`` is the relaxed
structure's (spglib, symprec 0.1).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..evaluation.outcome import Outcome, OutcomeSettings, finite, read_outcomes
from ..io import dumps

log = logging.getLogger(__name__)

BAD_STATUSES = ("unparsed", "invalid", "relax_failed")


@dataclass
class Label:
    sample_id: str
    prompt: str
    text: str | None
    status: str  # ok | unparsed | invalid | relax_failed | unlabelled
    reason: str | None = None
    e_hull: float | None = None
    energy_per_atom: float | None = None
    is_novel: bool | None = None
    spacegroup: int | None = None  # of the relaxed structure (spglib, symprec 0.1)
    requested_spacegroup: int | None = None
    is_metastable: bool | None = None  # at the threshold the outcomes were computed with (its M.S.U.N. classes')
    msun_class: str | None = None
    msun_novel: bool | None = None
    is_msun: bool | None = None

    @property
    def e_hull_value(self) -> float:
        return float("nan") if self.e_hull is None else float(self.e_hull)

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_outcome(cls, outcome: Outcome, prompt: str | None = None) -> Label:
        status = outcome.status
        if status == "not_relaxed":
            status = "unlabelled"
        return cls(
            sample_id=outcome.sample_id,
            prompt=outcome.prompt if prompt is None else prompt,
            text=outcome.text,
            status=status,
            reason=outcome.reason,
            e_hull=outcome.e_hull if finite(outcome.e_hull) else None,
            energy_per_atom=outcome.energy_per_atom,
            is_novel=outcome.sun_novel if outcome.is_stable else None,
            spacegroup=outcome.relaxed_spacegroup,
            requested_spacegroup=outcome.requested_spacegroup,
            is_metastable=outcome.is_metastable,
            msun_class=outcome.msun_class,
            msun_novel=outcome.msun_novel,
            is_msun=outcome.is_msun,
        )


def samples_from_records(records: list[dict], source: str = "samples"):
    """:class:`plaid.evaluation.samples.Sample` objects for sample records, ids assigned as ``plaid evaluate``
    does (``sample_id``, else the record's position); every record needs a ``prompt`` (pairs are per prompt)."""
    from ..evaluation.samples import _check_unique_ids, _sample_from_record

    missing = [i for i, r in enumerate(records) if not isinstance(r.get("prompt"), str)]
    if missing:
        raise ValueError(f"{source}: {len(missing)} record(s) have no 'prompt' (first: line {missing[0] + 1}); "
                         "preference pairs are made within a prompt")
    samples = [_sample_from_record(r, i) for i, r in enumerate(records)]
    _check_unique_ids(samples, source)
    return samples


def label_outcomes(records: list[dict], out_dir, *, relaxer, hull, reference: dict | None = None,
                   reference_sha256: str | None = None, settings: OutcomeSettings | None = None,
                   progress: bool = True, source: str = "samples", batched: bool = True,
                   e_hull: dict | None = None, e_hull_source: dict | None = None,
                   relaxed_given: dict | None = None, n_jobs=1) -> list[Outcome]:
    """Outcomes of sample records (``plaid sample`` JSONL rows) with ``relaxer`` and ``hull``, or with given
    ``e_hull`` values (``{sample_id: E_hull or reason}``, from ``e_hull_source``; ``relaxed_given``: the relaxed
    structures they belong to) instead; cached in ``out_dir``. ``n_jobs``: local processes or a :class:`plaid.executors.Executor` (see
    ``compute_outcomes``)."""
    from ..evaluation.compute import compute_outcomes, records_sha256
    from ..evaluation.outcome import write_outcomes
    from ..evaluation.sample_checks import default_check_cfg

    settings = settings or OutcomeSettings()
    samples = samples_from_records(records, source)
    sha = records_sha256(records)
    outcomes, _, info = compute_outcomes(
        samples, out_dir, settings, check_cfg=default_check_cfg(), inputs_sha256=sha, reference=reference,
        reference_sha256=reference_sha256 if reference is not None else None, relaxer=relaxer, hull=hull,
        progress=progress, batched=batched, e_hull=e_hull, e_hull_source=e_hull_source, relaxed_given=relaxed_given,
        n_jobs=n_jobs,
    )
    write_outcomes(out_dir, outcomes, settings, {"energies": info["energies"], "samples_sha256": sha})
    return outcomes


def label_samples(
    records: list[dict],
    out_dir: str | Path,
    *,
    relaxer,
    hull,
    reference: dict | None = None,
    reference_sha256: str | None = None,
    settings: OutcomeSettings | None = None,
    progress: bool = True,
    source: str = "samples",
    batched: bool = True,
    e_hull: dict | None = None,
    e_hull_source: dict | None = None,
    relaxed_given: dict | None = None,
    n_jobs=1,
) -> list[Label]:
    """Label every sample record in input order; resumable through ``out_dir`` (``labels.jsonl`` is rewritten).

    ``relaxer``: a ``plaid.relax.Relaxer``; ``hull``: a ``plaid.hull.ReferenceHull``; ``reference``: the training
    set reduced by ``plaid.evaluation.matching.reduce_reference`` (novelty and S.U.N.; None: not computed);
    ``e_hull``/``e_hull_source``: given labels instead of relaxer and hull (see :func:`label_outcomes`)."""
    out = Path(out_dir)
    outcomes = label_outcomes(records, out, relaxer=relaxer, hull=hull, reference=reference,
                              reference_sha256=reference_sha256, settings=settings, progress=progress, source=source,
                              batched=batched, e_hull=e_hull, e_hull_source=e_hull_source,
                              relaxed_given=relaxed_given, n_jobs=n_jobs)
    labels = [Label.from_outcome(o) for o in outcomes]
    write_labels(out, labels)
    return labels


def write_labels(out_dir: str | Path, labels: list[Label]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "labels.jsonl.tmp"
    tmp.write_text("".join(dumps(lab.to_record()) + "\n" for lab in labels), encoding="utf-8")
    tmp.replace(out / "labels.jsonl")


def labels_from_evaluation(records: list[dict], eval_dir: str | Path,
                           stable_threshold: float | None = None, source: str = "samples") -> list[Label]:
    """Labels from the ``outcomes.jsonl`` of a ``plaid evaluate`` output directory (same samples file).

    ``stable_threshold``: the threshold the caller pairs with; it must be the one the evaluation used (the
    novelty of stable samples depends on it)."""
    outcomes, meta = read_outcomes(eval_dir)
    samples = samples_from_records(records, source)
    if len(outcomes) != len(samples):
        raise ValueError(f"{eval_dir}/outcomes.jsonl has {len(outcomes)} samples but the samples file has "
                         f"{len(samples)}: evaluate the same samples file")
    ids = [str(s.sample_id) for s in samples]
    if [o.sample_id for o in outcomes] != ids:
        raise ValueError(f"{eval_dir}: its samples are not those of the samples file (sample ids differ)")
    used = (meta.get("settings") or {}).get("stable_threshold")
    if stable_threshold is not None and used is not None and float(used) != float(stable_threshold):
        raise ValueError(f"{eval_dir} was evaluated with stable threshold {used} eV/atom, pairs asked for "
                         f"{stable_threshold}: re-evaluate with --stable-threshold {stable_threshold}")
    return [Label.from_outcome(o, prompt=s.prompt) for o, s in zip(outcomes, samples)]
