"""``plaid relax``: relax the structures of a file, optionally with E_hull."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .engine import FILTERS, get_relaxer
from .results import RelaxResult


def _read_inputs(path: Path) -> tuple[list, list[str], list[tuple[str, str]]]:
    """Structures and ids from a CSV with a ``cif`` column, a JSONL with ``cif``, or a directory of .cif files.
    Unparseable rows come back separately as (id, reason)."""
    from pymatgen.core import Structure

    rows: list[tuple[str, str]] = []
    if path.is_dir():
        rows = [(p.stem, p.read_text()) for p in sorted(path.glob("*.cif"))]
    elif path.suffix == ".jsonl":
        from plaid.io import read_jsonl

        for i, rec in enumerate(read_jsonl(path)):
            rows.append((str(rec.get("sample_id", rec.get("id", rec.get("material_id", i)))), rec.get("cif") or ""))
    else:
        import pandas as pd

        df = pd.read_csv(path)
        id_col = next((c for c in ("sample_id", "id", "material_id") if c in df.columns), None)
        ids = df[id_col].astype(str) if id_col else df.index.astype(str)
        rows = list(zip(ids, df["cif"].fillna("")))
    structures, ids, bad = [], [], []
    for sid, cif in rows:
        try:
            structures.append(Structure.from_str(cif, fmt="cif"))
            ids.append(sid)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            bad.append((sid, f"unparseable CIF: {type(exc).__name__}: {exc}"))
    return structures, ids, bad


def _cli(args) -> int:
    import csv
    from collections import Counter

    from ..executors import make_executor, require_executor

    require_executor(args)
    structures, ids, bad = _read_inputs(Path(args.input))
    relaxer = get_relaxer(args.relaxer, model_path=args.model_path, fmax=args.fmax, max_steps=args.max_steps,
                          filter=args.filter, batch_size=args.batch_size, timeout_s=args.timeout, device=args.device,
                          energy_scale=args.energy_scale)
    executor = make_executor(args.executor, args.jobs, args.ray_address) if args.executor == "ray" else None
    results = relaxer.relax(structures, ids=ids, out_path=args.out, progress=not args.no_progress,
                            executor=executor)
    results += [RelaxResult(id=sid, status="error", reason=reason) for sid, reason in bad]
    print(json.dumps(relaxer.describe()))
    print("statuses:", dict(Counter(r.status for r in results)), f"({len(results)} inputs)")
    if args.hull or args.reference_csv:
        from plaid.hull import load_hull

        hull = load_hull(args.hull, reference_csv=args.reference_csv)
        out = Path(args.out).with_suffix(".ehull.csv")
        with open(out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "status", "energy_per_atom", "e_hull", "reason"])
            for r in results:
                e, reason = (math.nan, f"relaxation {r.status}: {r.reason}") if r.failed else \
                    hull.e_above_hull(r.structure, r.energy_per_atom, energy_scale=relaxer.energy_scale)
                writer.writerow([r.id, r.status, r.energy_per_atom, e, reason or ""])
        print(json.dumps(hull.describe()))
        print(f"E_hull per structure: {out}")
    return 0


def register(subparsers) -> None:
    from ..executors import add_executor_arguments

    p = subparsers.add_parser(
        "relax", help="relax structures with CHGNet/M3GNet (batched FIRE + cell filter), optional E_hull",
        description="Relax the structures of INPUT (CSV with a cif column, JSONL with cif, or a directory of "
                    ".cif files); results go to OUT (JSONL, resumable). With --hull/--reference-csv, also writes "
                    "OUT.ehull.csv with the energy above hull.")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="JSONL of per-structure results (re-run resumes)")
    p.add_argument("--relaxer", default="chgnet", choices=["chgnet", "m3gnet"])
    p.add_argument("--model-path", default=None)
    p.add_argument("--fmax", type=float, default=0.1, help="eV/A (default 0.1)")
    p.add_argument("--max-steps", "--relax-steps", dest="max_steps", type=int, default=500)
    p.add_argument("--filter", default="frechet", choices=list(FILTERS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--timeout", type=float, default=None, help="seconds per structure")
    p.add_argument("--device", default="cpu", help="torch device of the energy model (cpu, cuda, cuda:1...)")
    p.add_argument("--energy-scale", default=None, choices=["mp2020", "mp_raw"],
                   help="scale of --model-path's energies (required for weights other than the stock ones)")
    p.add_argument("--hull", default=None, help="2023-02-07-ppd-mp.pkl.gz or MP entries .json.gz")
    p.add_argument("--reference-csv", default=None, help="offline hull from formation energies (+ MP elemental refs)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="with --executor ray and no --ray-address: the CPUs of the local Ray (default: all)")
    add_executor_arguments(p, jobs=False)
    p.set_defaults(func=_cli)
