"""Label generated samples for preference pairs: MLIP relaxation, energy above hull, novelty.

PLaID labels its own samples with M3GNet (500 FIRE steps) and keeps CHGNet for evaluation, so the reward cannot be
gamed by one potential. Every sample gets a label record, written to ``labels.jsonl`` as soon as it is known
(relaxations are cached by the relaxer in ``relax.jsonl``), so a re-run or a crash loses nothing.

Label ``status``:
- ``ok``: parsed, structurally valid, relaxed, E_hull known;
- ``unparsed``: the text did not decode; ``invalid``: decoded but structurally invalid (distance < 0.5 A or
  volume < 0.1 A^3, CDVAE); ``relax_failed``: the relaxation exploded, timed out or errored. These three are
  bad generations: always on the rejected side;
- ``unlabelled``: relaxed, but the hull lacks an element, so E_hull is unknown: never paired, counted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..io import JsonlWriter, read_jsonl

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

    @property
    def e_hull_value(self) -> float:
        return float("nan") if self.e_hull is None else float(self.e_hull)

    def to_record(self) -> dict:
        return asdict(self)


def _requested_spacegroup(record: dict) -> int | None:
    conditions = record.get("conditions") or {}
    if isinstance(conditions, str):
        conditions = json.loads(conditions or "{}")
    value = conditions.get("spacegroup")
    return int(value) if value not in (None, "") else None


def label_samples(
    records: list[dict],
    out_dir: str | Path,
    *,
    relaxer,
    hull,
    reference: dict | None = None,
    progress: bool = True,
    batched: bool = True,
) -> list[Label]:
    """Label every sample record (``plaid sample`` JSONL rows) in input order; resumable through ``out_dir``.

    ``relaxer``: a ``plaid.relax.Relaxer``; ``hull``: a ``plaid.hull.ReferenceHull``; ``reference``: the training
    set reduced by ``plaid.evaluation.matching.reduce_reference`` for novelty (None: novelty not computed)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from ..evaluation.samples import structure_from_record
    from ..evaluation.validity import structural_validity

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = JsonlWriter(out / "labels.jsonl", key="sample_id")
    labels: dict[str, Label] = {r["sample_id"]: Label(**r) for r in writer.records}
    try:
        to_relax, structures = [], []
        for rec in records:
            sid = str(rec["sample_id"])
            if sid in labels:
                continue
            base = dict(sample_id=sid, prompt=rec["prompt"], text=rec.get("text"),
                        requested_spacegroup=_requested_spacegroup(rec))
            if not rec.get("parsed") or not rec.get("cif"):
                labels[sid] = Label(**base, status="unparsed", reason=rec.get("error") or "not parsed")
                writer.write(labels[sid].to_record())
                continue
            structure, error = structure_from_record(rec)
            if structure is None:
                labels[sid] = Label(**base, status="unparsed", reason=error)
                writer.write(labels[sid].to_record())
                continue
            valid, why = structural_validity(structure)
            if not valid:
                labels[sid] = Label(**base, status="invalid", reason=f"structurally invalid (CDVAE): {why}")
                writer.write(labels[sid].to_record())
                continue
            to_relax.append(base)
            structures.append(structure)

        if to_relax:
            results = relaxer.relax(structures, ids=[b["sample_id"] for b in to_relax],
                                    out_path=out / "relax.jsonl", progress=progress, batched=batched)
            for base, result in zip(to_relax, results):
                sid = base["sample_id"]
                if result.status not in ("converged", "max_steps") or result.structure is None:
                    labels[sid] = Label(**base, status="relax_failed", reason=f"{result.status}: {result.reason}")
                else:
                    e_hull, reason = hull.e_above_hull(result.structure, result.energy_per_atom,
                                                       relaxer_name=relaxer.name)
                    try:
                        sg = SpacegroupAnalyzer(result.structure, symprec=0.1).get_space_group_number()
                    except Exception:  # noqa: BLE001
                        sg = None
                    known = e_hull is not None and math.isfinite(e_hull)
                    labels[sid] = Label(
                        **base,
                        status="ok" if known else "unlabelled",
                        reason=reason if not known else (reason or ("max_steps" if result.status == "max_steps" else None)),
                        e_hull=float(e_hull) if known else None,
                        energy_per_atom=float(result.energy_per_atom),
                        spacegroup=sg,
                    )
                writer.write(labels[sid].to_record())
    finally:
        writer.close()

    if reference is not None:
        _add_novelty(labels, records, out, reference)
    return [labels[str(r["sample_id"])] for r in records]


def _add_novelty(labels: dict[str, Label], records: list[dict], out: Path, reference: dict) -> None:
    """Novelty vs the training set (StructureMatcher 0.2/0.3/5 through plaid.evaluation), for relaxed samples."""
    from ..evaluation.matching import uniqueness_and_novelty
    from ..relax import RelaxResult

    relaxed = {r["id"]: RelaxResult.from_record(r) for r in read_jsonl(out / "relax.jsonl")}
    ids = [sid for sid, lab in labels.items() if lab.status == "ok" and lab.is_novel is None]
    if not ids:
        return
    structures = [relaxed[sid].structure if sid in relaxed else None for sid in ids]
    result = uniqueness_and_novelty(structures, ids=ids, reference=reference, out_path=out / "novelty.jsonl")
    for sid in ids:
        labels[sid].is_novel = result[sid]["is_novel"]
    with open(out / "labels.jsonl", "w", encoding="utf-8") as fh:  # rewrite once with novelty filled in
        from ..io import dumps

        for rec in records:
            lab = labels.get(str(rec["sample_id"]))
            if lab is not None:
                fh.write(dumps(lab.to_record()) + "\n")


def labels_from_evaluation(records: list[dict], eval_dir: str | Path) -> list[Label]:
    """Labels from a ``plaid evaluate`` output directory (``structures.csv``: one row per sample in input order)."""
    import pandas as pd

    table = pd.read_csv(Path(eval_dir) / "structures.csv")
    if len(table) != len(records):
        raise ValueError(
            f"{eval_dir}/structures.csv has {len(table)} rows but the samples file has {len(records)}: "
            "evaluate the same samples file"
        )
    labels = []
    for rec, row in zip(records, table.to_dict("records")):
        base = dict(sample_id=str(rec["sample_id"]), prompt=rec["prompt"], text=rec.get("text"),
                    requested_spacegroup=_requested_spacegroup(rec))
        e_hull = row.get("e_hull")
        e_hull = None if e_hull is None or (isinstance(e_hull, float) and math.isnan(e_hull)) else float(e_hull)
        if not rec.get("parsed") or not rec.get("cif"):
            labels.append(Label(**base, status="unparsed", reason=rec.get("error") or "not parsed"))
        elif not bool(row.get("struct_valid", True)):
            labels.append(Label(**base, status="invalid", reason="structurally invalid"))
        elif not bool(row.get("valid", True)):  # plaid evaluate relaxes only valid (structural + SMACT) samples
            labels.append(Label(**base, status="invalid", reason="compositionally invalid (SMACT)"))
        elif e_hull is None:
            status = str(row.get("relax_status") or "")
            failed = status and status not in ("converged", "max_steps", "nan")
            labels.append(Label(**base, status="relax_failed" if failed else "unlabelled",
                                reason=str(row.get("e_hull_reason") or row.get("relax_reason") or "no e_hull")))
        else:
            novel = row.get("is_novel")
            labels.append(Label(**base, status="ok", e_hull=e_hull,
                                is_novel=None if novel is None or novel != novel else bool(novel),
                                spacegroup=int(row["spacegroup"]) if row.get("spacegroup") == row.get("spacegroup")
                                and row.get("spacegroup") not in (None, "") else None))
    return labels
