"""``plaid evaluate`` and ``plaid evaluate-csp``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..executors import add_executor_arguments

    p = subparsers.add_parser(
        "evaluate",
        help="validity, uniqueness, novelty, coverage, E_hull and S.U.N. of generated samples",
        description="Evaluate SAMPLES (plaid sample JSONL, or a CSV with a 'cif' column) against a training set "
        "TRAIN (CDVAE-format CSV). Writes DIR/structures.csv, DIR/report.json and PNG plots; re-running with "
        "the same DIR resumes.",
    )
    p.add_argument("samples", help="plaid sample JSONL, a CSV with a 'cif' column (e.g. crystal-text-llm's), a PLaID "
                   "sample CSV (gen_str), or a directory / .tar.gz of CIF files (CrystaLLM's)")
    p.add_argument(
        "--reference", required=True, help="training set CSV (novelty; coverage unless --coverage-reference)"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--coverage-reference", default=None, help="CSV for coverage/wdist (CDVAE uses the test set)"
    )
    p.add_argument(
        "--dataset",
        choices=["mp_20", "perov_5", "carbon_24"],
        default=None,
        help="coverage cutoffs (CDVAE); default: inferred from the reference path, else mp_20",
    )
    p.add_argument(
        "--structure-column",
        choices=["gen_str", "cif", "relaxed_cif"],
        default=None,
        help="PLaID sample CSV: decode gen_str (prompt + generated wyckoff-plaid text; the default for a CSV with "
        "a gen_str column), or read the cif / relaxed_cif column",
    )
    p.add_argument(
        "--e-hull-column",
        default=None,
        metavar="COLUMN",
        help="take E_hull (eV/atom) from this column of SAMPLES (PLaID CSVs: e_above_hull) instead of relaxing; "
        "recorded as hull kind 'given'",
    )
    p.add_argument("--no-relax", action="store_true", help="skip MLIP relaxation, E_hull and S.U.N.")
    p.add_argument("--relaxer", choices=["chgnet", "m3gnet"], default="chgnet")
    p.add_argument("--relaxer-model", default=None, help="model path (m3gnet)")
    p.add_argument("--energy-scale", choices=["mp2020", "mp_raw"], default=None,
                   help="scale of --relaxer-model's energies (needed for weights other than the stock ones)")
    p.add_argument("--device", default="cpu", help="torch device of the relaxation model (cpu, cuda, cuda:1...)")
    p.add_argument("--fmax", type=float, default=0.1)
    p.add_argument("--max-steps", "--relax-steps", dest="max_steps", type=int, default=500,
                   help="FIRE steps per structure")
    p.add_argument("--relax-timeout", type=float, default=None, help="seconds per structure")
    p.add_argument(
        "--hull",
        default=None,
        help="reference hull file (2023-02-07-ppd-mp.pkl.gz); default: an offline hull from the reference's "
        "formation energies, with a warning (incomplete: stability rates are upper bounds)",
    )
    p.add_argument(
        "--stable-threshold", type=float, default=0.0, help="stable: E_hull <= this (eV/atom; stable_rate, S.U.N.)"
    )
    p.add_argument(
        "--metastable-threshold", type=float, default=0.08, help="metastable: E_hull < this (eV/atom; PLaID)"
    )
    p.add_argument(
        "--sun-protocol",
        choices=["relaxed", "unrelaxed"],
        default="relaxed",
        help="structures S.U.N. classes and novelty are matched on (default: relaxed, as FlowMM/PLaID++/MatterGen)",
    )
    p.add_argument("--oxidation-states", default="smact14", help="smact14 (CDVAE numbers), icsd24, or a file")
    p.add_argument("--coverage-over", choices=["parsed", "valid"], default="parsed")
    p.add_argument("--struct-cutoff", type=float, default=None)
    p.add_argument("--comp-cutoff", type=float, default=None)
    p.add_argument(
        "--comp-scaler",
        default="cdvae",
        help="Magpie standardisation: cdvae (CDVAE's fixed MP-20 constants, default), fit (fitted on the coverage "
        "reference), or an .npz with 'means' and 'stds'",
    )
    p.add_argument("--fingerprint-timeout", type=float, default=60.0, help="seconds per structure")
    p.add_argument(
        "--orbit-symprec",
        type=float,
        default=None,
        help="compute CrystalNN fingerprints and bond-length scores on one site per orbit of sites equivalent at "
        "this spglib tolerance (A), weighted by orbit size (default: plaid.evaluation.fingerprints.ORBIT_SYMPREC, "
        "1e-5); 0: every site, as CDVAE",
    )
    p.add_argument(
        "--fingerprint-backend",
        choices=("plaid", "matminer"),
        default="plaid",
        help="who computes the CrystalNN fingerprint's order parameters: plaid's vectorised implementation "
        "(default, equal to matminer's to ~1e-15) or matminer's per-site featurize (CDVAE's way, ~4x slower)",
    )
    p.add_argument("--no-crystallm-checks", action="store_true", help="skip bond-length/multiplicity checks")
    p.add_argument("--model-version", default=None, help="recorded in report.json")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="worker processes (with --executor ray and no --ray-address: the CPUs of the local Ray)")
    add_executor_arguments(p, jobs=False)
    p.set_defaults(func=_run_evaluate)

    c = subparsers.add_parser(
        "evaluate-csp",
        help="CSP match rate and RMSE at n=1 and n=20 candidates per test structure",
        description="Match samples generated for test compositions against TEST (CDVAE-format CSV). Samples map "
        "to targets by material_id (give `plaid sample --prompt-file` a material_id column), else by request id, "
        "else (with a warning) by their composition condition.",
    )
    c.add_argument("samples")
    c.add_argument("--targets", required=True, help="test set CSV")
    c.add_argument("--out", required=True)
    c.add_argument("--n", type=int, nargs="+", default=[1, 20], help="candidates per target to consider")
    c.add_argument("--candidate-filter", choices=["struct_valid", "valid", "parsed"], default="struct_valid")
    c.add_argument("-j", "--jobs", type=int, default=1)
    add_executor_arguments(c, jobs=False)
    c.set_defaults(func=_run_csp)


def _print_summary(report: dict, keys: list[str]) -> None:
    for k in keys:
        v = report.get(k)
        print(f"{k:>24}: {v:.4f}" if isinstance(v, float) else f"{k:>24}: {v}")


def _check_evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..cli_checks import (
        read_csv_checked,
        require_file,
        require_hull,
        require_positive,
        require_samples,
        require_writable_dir,
    )
    from ..errors import InputError, UsageError
    from ..executors import require_executor

    require_samples(args.samples, "samples")
    _check_sample_columns(args)
    read_csv_checked(args.reference, "training set", "--reference")
    if args.coverage_reference is not None:
        read_csv_checked(args.coverage_reference, "coverage reference", "--coverage-reference")
    require_writable_dir(args.out, "--out")
    if args.comp_scaler is not None and args.comp_scaler not in ("cdvae", "fit"):
        require_file(args.comp_scaler, "Magpie scaler", "--comp-scaler", "give an .npz with 'means' and 'stds'")
    if args.oxidation_states not in ("smact14", "icsd24"):
        require_file(args.oxidation_states, "oxidation-state table", "--oxidation-states",
                     "give smact14, icsd24 or a table file")
    if args.e_hull_column is None and not args.no_relax:
        require_hull(args.hull)  # without --hull the reference's formation energies (if any) give an offline hull
        if args.relaxer_model is not None and not Path(args.relaxer_model).expanduser().exists():
            raise InputError(f"--relaxer-model: {args.relaxer_model} does not exist; give the MLIP weights")
    elif args.hull is not None or args.relaxer_model is not None:
        raise UsageError("--hull and --relaxer-model need relaxation: drop them or drop --no-relax")
    require_positive(args.jobs, "--jobs")
    require_executor(args)
    require_positive(args.max_steps, "--max-steps")
    for option, value in (("--fmax", args.fmax), ("--relax-timeout", args.relax_timeout),
                          ("--fingerprint-timeout", args.fingerprint_timeout)):
        if value is not None and value <= 0:
            raise UsageError(f"{option} must be > 0, got {value}")
    if args.orbit_symprec is not None and args.orbit_symprec < 0:
        raise UsageError(f"--orbit-symprec must be >= 0 (0: every site), got {args.orbit_symprec}")


def _check_sample_columns(args: argparse.Namespace) -> None:
    """--structure-column / --e-hull-column name columns of the samples file (a CSV; --e-hull-column: or JSONL
    records with that field)."""
    from pathlib import Path

    from ..cli_checks import read_csv_checked, read_jsonl_checked
    from ..errors import InputError, UsageError

    if args.e_hull_column is not None and (args.hull is not None or args.relaxer_model is not None):
        raise UsageError("--e-hull-column takes E_hull from the samples file: drop --hull/--relaxer-model, or "
                         "drop --e-hull-column to relax")
    is_csv = Path(args.samples).suffix.lower() == ".csv"
    if args.structure_column is not None:
        if not is_csv:
            raise UsageError("--structure-column reads a column of a sample CSV (PLaID's); SAMPLES is not a CSV")
        read_csv_checked(args.samples, "samples", columns=(args.structure_column,),
                         hint="give a PLaID sample CSV (gen_str, cif, relaxed_cif, e_above_hull)")
    if args.e_hull_column is not None:
        if is_csv:
            read_csv_checked(args.samples, "samples", columns=(args.e_hull_column,),
                             hint="name the column that holds E_hull (PLaID: e_above_hull)")
        elif not any(args.e_hull_column in r for r in read_jsonl_checked(args.samples, "samples",
                                                                          allow_corrupt=True)):
            raise InputError(f"samples: no record of {args.samples} has a {args.e_hull_column!r} field; name the "
                             "field that holds E_hull")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .fingerprints import ORBIT_SYMPREC
    from .pipeline import EvaluationConfig, evaluate

    _check_evaluate(args)

    cfg = EvaluationConfig(
        dataset=args.dataset,
        struct_cutoff=args.struct_cutoff,
        comp_cutoff=args.comp_cutoff,
        comp_scaler=args.comp_scaler,
        oxidation_states=args.oxidation_states,
        crystallm_checks=not args.no_crystallm_checks,
        coverage_over=args.coverage_over,
        fingerprint_timeout_s=args.fingerprint_timeout,
        orbit_symprec=ORBIT_SYMPREC if args.orbit_symprec is None else (args.orbit_symprec or None),
        fingerprint_backend=args.fingerprint_backend,
        relax=not args.no_relax,
        relaxer=args.relaxer,
        relaxer_model_path=args.relaxer_model,
        relaxer_energy_scale=args.energy_scale,
        device=args.device,
        fmax=args.fmax,
        max_steps=args.max_steps,
        relax_timeout_s=args.relax_timeout,
        hull=args.hull,
        stable_threshold=args.stable_threshold,
        metastable_threshold=args.metastable_threshold,
        sun_protocol=args.sun_protocol,
        coverage_reference=args.coverage_reference,
        n_jobs=args.jobs,
        executor=args.executor,
        ray_address=args.ray_address,
        model_version=args.model_version,
        plots=not args.no_plots,
        structure_column=args.structure_column,
        e_hull_column=args.e_hull_column,
    )
    report = evaluate(args.samples, args.reference, args.out, cfg)
    _print_summary(
        report,
        [
            "n_samples",
            "struct_valid_rate",
            "comp_valid_rate",
            "valid_rate",
            "unique_rate",
            "novel_rate",
            "cov_recall",
            "cov_precision",
            "wdist_density",
            "wdist_num_elems",
            "stable_rate",
            "sun_rate",
            "msun_rate",
        ],
    )
    for warning in report.get("warnings", []):
        print(f"warning: {warning}")
    print(f"wrote {args.out}/report.json and {args.out}/structures.csv")
    return 0


def _run_csp(args: argparse.Namespace) -> int:
    from ..cli_checks import read_csv_checked, require_positive, require_samples, require_writable_dir
    from ..errors import NothingProducedError
    from ..executors import make_executor, require_executor
    from .csp import run_csp

    require_samples(args.samples, "samples")
    read_csv_checked(args.targets, "test set", "--targets")
    require_writable_dir(args.out, "--out")
    for n in args.n:
        require_positive(n, "--n")
    require_positive(args.jobs, "--jobs")
    require_executor(args)
    jobs = make_executor(args.executor, args.jobs, args.ray_address) if args.executor == "ray" else args.jobs

    report = run_csp(
        args.samples,
        args.targets,
        args.out,
        n_values=tuple(args.n),
        candidate_filter=args.candidate_filter,
        n_jobs=jobs,
    )
    _print_summary(
        report,
        ["n_targets", "n_samples", "n_samples_unassigned", "assignment"]
        + [k for k in report if k.startswith(("match_rate_at_", "mean_rmse_at_"))],
    )
    print(f"wrote {args.out}/csp_report.json")
    if report.get("n_samples", 0) - report.get("n_samples_unassigned", 0) <= 0:
        raise NothingProducedError(
            f"none of the {report.get('n_samples')} samples maps to one of the {report.get('n_targets')} targets "
            "(by material_id or composition condition); every match rate is 0 by construction; see "
            f"{args.out}/csp_report.json"
        )
    return 0
