"""The issue-9 "done when" check on real MP-20 data: ``plaid evaluate`` on 300 MP-20 validation structures as
samples, plus 25 planted copies of training structures and 25 planted duplicates of samples, against the training
reference ``train_partial.csv``.

    python benchmarks/eval_mp20_check.py build DIR [N_SAMPLES N_COPIES N_DUPLICATES N_COVERAGE N_TRAIN]
    plaid evaluate DIR/samples.csv --reference DIR/train.csv --out DIR/eval \\
        --coverage-reference DIR/coverage.csv --dataset mp_20 --no-plots --no-relax
    python benchmarks/eval_mp20_check.py check DIR/eval [DIR/eval_old]

``check`` verifies that every planted training copy is not novel, that the unique count equals brute-force
all-pairs StructureMatcher over the valid samples, and prints the report's main rates (next to a second report,
e.g. one made by an older plaid, when given).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd

SIZES = (300, 25, 25, 300, 0)  # samples, planted training copies, planted duplicates, coverage set, TRAIN rows (0: all)
KEYS = ["n_samples", "valid_rate", "unique_rate", "novel_rate", "unique_novel_rate", "cov_recall", "cov_precision",
        "amcd_recall", "wdist_density", "wdist_num_elems", "stable_rate", "metastable_rate", "sun_rate"]


def build(out: Path, sizes=SIZES) -> None:
    n_samples, n_copies, n_dups, n_cov, n_train = sizes
    data = Path(os.environ.get("PLAID_DATA_DIR", "../shared/data")) / "mp_20"
    val = pd.read_csv(data / "val.csv")
    train = pd.read_csv(data / "train_partial.csv", nrows=n_train or None)
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    N_SAMPLES, N_TRAIN_COPIES, N_DUPLICATES, N_COVERAGE = n_samples, n_copies, n_dups, n_cov  # noqa: N806
    samples = val.iloc[:N_SAMPLES][["material_id", "cif"]].copy()
    samples["sample_id"] = [f"val-{i}" for i in range(N_SAMPLES)]
    copies = train.sample(N_TRAIN_COPIES, random_state=0)[["material_id", "cif"]].copy()
    copies["sample_id"] = [f"train-copy-{i}" for i in range(N_TRAIN_COPIES)]
    dups = val.iloc[:N_DUPLICATES][["material_id", "cif"]].copy()
    dups["sample_id"] = [f"dup-{i}" for i in range(N_DUPLICATES)]
    pd.concat([samples, copies, dups])[["sample_id", "material_id", "cif"]].to_csv(out / "samples.csv", index=False)
    val.iloc[N_SAMPLES:N_SAMPLES + N_COVERAGE].to_csv(out / "coverage.csv", index=False)
    print(f"wrote {out}/samples.csv ({N_SAMPLES + N_TRAIN_COPIES + N_DUPLICATES} samples), coverage.csv "
          f"({N_COVERAGE}) and train.csv ({len(train)} rows of train_partial.csv)")


def _truthy(v) -> bool:
    return str(v) == "True"


def check(eval_dir: Path, other: Path | None) -> None:
    from plaid.evaluation.matching import brute_force_unique
    from plaid.evaluation.samples import load_samples

    rows = pd.read_csv(eval_dir / "structures.csv", dtype=str, keep_default_na=False)
    report = json.loads((eval_dir / "report.json").read_text())
    planted = rows[rows.sample_id.str.startswith("train-copy")]
    novel_planted = int(planted.is_novel.map(_truthy).sum())
    print(f"planted training copies: {len(planted)}, novel among them: {novel_planted}")
    valid_ids = set(rows.sample_id[rows.valid.map(_truthy)])
    samples = load_samples(eval_dir.parent / "samples.csv")
    structures = [s.structure if str(s.sample_id) in valid_ids else None for s in samples]
    brute = brute_force_unique(structures)
    n_brute = sum(u is True for u in brute)
    print(f"unique (report counts): {report['counts']['unique']}, brute force: {n_brute}")
    assert novel_planted == 0 and report["counts"]["unique"] == n_brute
    named = {k: report.get(k) for k in ("hull_kind",)}
    named["sun_protocol"] = (report.get("sun") or {}).get("protocol")
    named["matcher"] = report["settings"].get("matching")
    named["scaler"] = report["settings"]["fingerprints"]["composition"]
    print(json.dumps(named, indent=1))
    reports = [("this", report)]
    if other is not None:
        reports.append((other.name, json.loads((other / "report.json").read_text())))
    print("| metric | " + " | ".join(name for name, _ in reports) + " |")
    print("|---|" + "---|" * len(reports))
    for k in KEYS + ["counts.stable", "counts.sun", "counts.unique", "counts.novel", "counts.valid"]:
        cells = []
        for _, r in reports:
            v = r["counts"].get(k.split(".")[1]) if k.startswith("counts.") else r.get(k)
            cells.append(f"{v:.4f}" if isinstance(v, float) else str(v))
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]), tuple(int(x) for x in sys.argv[3:8]) if len(sys.argv) > 3 else SIZES)
    else:
        check(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
