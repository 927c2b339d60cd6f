"""report.json of ``plaid evaluate``, built from the per-sample outcomes (and the coverage stage's result)."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict

from . import checks as crystallm
from .outcome import Outcome, finite
from .validity import describe_oxidation_table

REPORT_VERSION = 2


def _rate(k: int, d: int) -> float:
    return k / d if d else float("nan")


def _count(rows, key, value=True) -> int:
    return sum(r.get(key) is value for r in rows)


def _tally(values) -> dict:
    out: dict = {}
    for v in values:
        if v is None:
            continue
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _short(text, n: int = 80):
    return None if text is None else str(text).split("\n")[0][:n]


def stability_table(outcomes: list[Outcome], thresholds) -> dict:
    """Per threshold t: samples with E_hull <= t, over all samples (unparsed and invalid included)."""
    n = len(outcomes)
    out = {}
    for t in thresholds:
        k = sum(finite(o.e_hull) and o.e_hull <= t for o in outcomes)
        out[f"{t:g}"] = {"threshold_ev_per_atom": t, "n_e_hull_at_most": k, "rate": _rate(k, n)}
    return out


def build_report(cfg, settings, outcomes: list[Outcome], rows: list[dict], samples, ctx: dict) -> dict:
    """``ctx``: dataset, dataset_source, struct_cut, comp_cut, cov, ref_fp, distributions, reference,
    novelty_ref, cov_reference, info (from compute_outcomes), started, scaler description."""
    n = len(outcomes)
    n_parsed = sum(o.parsed for o in outcomes)
    n_struct = sum(o.struct_valid is True for o in outcomes)
    n_comp = sum(o.comp_valid is True for o in outcomes)
    valid = [o for o in outcomes if o.valid]
    n_valid = len(valid)
    uniq_known = [o for o in valid if o.is_unique is not None]
    novel_known = [o for o in valid if o.is_novel is not None]
    n_unique = sum(o.is_unique is True for o in valid)
    n_novel = sum(o.is_novel is True for o in valid)
    un_known = [o for o in valid if o.is_unique is not None and o.is_novel is not None]
    n_un = sum(o.is_unique is True and o.is_novel is True for o in valid)
    energy = ctx["info"]["energies"]
    computed = energy["computed"]
    n_stable = sum(o.is_stable is True for o in outcomes)
    n_meta = sum(o.is_metastable is True for o in outcomes)
    n_sun = sum(o.is_sun is True for o in outcomes)
    n_msun = sum(o.is_msun is True for o in outcomes)
    sun_known = computed and ctx["novelty_ref"] is not None
    gen_times = [s.gen_time_s for s in samples]
    total_time = float(sum(gen_times)) if gen_times and all(finite(t) for t in gen_times) else None
    cov = ctx["cov"]
    nan = float("nan")
    hull = energy.get("hull")
    report: dict = {
        "report_version": REPORT_VERSION,
        "n_samples": n,
        "n_parsed": n_parsed,
        "parse_rate": _rate(n_parsed, n),
        "struct_valid_rate": _rate(n_struct, n),
        "comp_valid_rate": _rate(n_comp, n),
        "valid_rate": _rate(n_valid, n),
        "unique_rate": _rate(n_unique, len(uniq_known)),
        "novel_rate": _rate(n_novel, len(novel_known)) if ctx["novelty_ref"] is not None else nan,
        "unique_novel_rate": _rate(n_un, len(un_known)),
        "unique_rate_over_all": _rate(n_unique, n),
        "novel_rate_over_all": _rate(n_novel, n),
        "cov_recall": cov["cov_recall"],
        "cov_precision": cov["cov_precision"],
        "amsd_recall": cov["amsd_recall"],
        "amsd_precision": cov["amsd_precision"],
        "amcd_recall": cov["amcd_recall"],
        "amcd_precision": cov["amcd_precision"],
        "wdist_density": ctx["distributions"]["wdist_density"],
        "wdist_num_elems": ctx["distributions"]["wdist_num_elems"],
        "stable_rate": _rate(n_stable, n) if computed else None,
        "metastable_rate": _rate(n_meta, n) if computed else None,
        "sun_rate": _rate(n_sun, n) if sun_known else None,
        "msun_rate": _rate(n_msun, n) if sun_known else None,
        "time_per_sun_s": (total_time / n_sun) if (sun_known and total_time is not None and n_sun) else None,
        "sg_consistent_rate": _rate(_count(rows, "sg_consistent"), n),
        "crystallm_valid_rate": _rate(_count(rows, "crystallm_valid"), n) if cfg.crystallm_checks else nan,
        "counts": {
            "samples": n,
            "parsed": n_parsed,
            "unparsed": n - n_parsed,
            "struct_valid": n_struct,
            "comp_valid": n_comp,
            "valid": n_valid,
            "unique": n_unique,
            "novel": n_novel,
            "unique_and_novel": n_un,
            "uniqueness_undecided": sum(o.is_unique is None for o in valid),
            "novelty_undecided": sum(o.is_novel is None for o in valid) if ctx["novelty_ref"] is not None else None,
            "matcher_errors": _tally(_short(o.match_error, 60) for o in outcomes),
            "reduction_failed": ctx["info"]["n_reduce_failed"],
            "reference_reduction_failed": (ctx["novelty_ref"] or {}).get("n_reduce_failed"),
            "sg_consistent": _count(rows, "sg_consistent"),
            "sg_inconsistent": _count(rows, "sg_consistent", False),
            "sg_not_stated": sum(r.get("parsed") is True and r.get("sg_stated") is None for r in rows),
            "sg_not_stated_reasons": _tally(_short(r.get("sg_stated_reason"), 60) for r in rows
                                            if r.get("parsed") is True and r.get("sg_stated") is None),
            "sg_undetermined": sum(r.get("parsed") is True and r.get("spacegroup") is None for r in rows),
            "multiplicity_consistent": _count(rows, "multiplicity_consistent"),
            "multiplicity_inconsistent": _count(rows, "multiplicity_consistent", False),
            "bond_length_ok": sum((r.get("bond_length_score") or 0) >= crystallm.BOND_SCORE_CUTOFF for r in rows),
            "crystallm_valid": _count(rows, "crystallm_valid"),
            "fingerprint_ok": sum(r.get("fp_status") == "ok" for r in rows),
            "fingerprint_timeout": sum(r.get("fp_status") == "timeout" for r in rows),
            "fingerprint_error": sum(r.get("fp_status") == "error" for r in rows),
            "check_errors": sum(bool(r.get("check_error")) for r in rows),
            "coverage_reference_covered": cov["n_reference_covered"],
            "coverage_generated_precise": cov["n_generated_precise"],
            "with_e_hull": sum(finite(o.e_hull) for o in outcomes),
            "stable": n_stable if computed else None,
            "metastable": n_meta if computed else None,
            "stable_classes": ctx["info"]["sun"]["n_classes"] if computed else None,
            "sun": n_sun if sun_known else None,
            "sun_undecided": ctx["info"]["sun"]["n_undecided"] if sun_known else None,
            "metastable_classes": ctx["info"]["msun"]["n_classes"] if computed else None,
            "msun": n_msun if sun_known else None,
            "msun_undecided": ctx["info"]["msun"]["n_undecided"] if sun_known else None,
            "relax_status": _tally(o.relax_status for o in outcomes),
        },
        "denominators": {
            "parse_rate": "all samples",
            "struct_valid_rate / comp_valid_rate / valid_rate": "all samples (unparsed = invalid); valid = "
            "struct_valid and comp_valid (CDVAE)",
            "unique_rate / novel_rate / unique_novel_rate": "valid samples whose flag the matcher decided (CDVAE/"
            "FlowMM; a matcher error leaves a flag undecided: counted, not in the rate); *_over_all: all samples",
            "cov_recall": "reference structures (coverage reference set)",
            "cov_precision": "all samples (CDVAE num_gen_crystals); candidates: "
            + ("every parsed sample (CDVAE)" if cfg.coverage_over == "parsed" else "valid samples")
            + "; a fingerprint timeout/error is a miss, counted in counts.fingerprint_*",
            "amsd/amcd": "recall: mean over reference structures with fingerprints; precision: over samples with "
            "fingerprints",
            "wdist_density / wdist_num_elems": "valid samples vs all readable coverage-reference structures",
            "stable_rate / metastable_rate / sun_rate / msun_rate": "all samples, unparsed included (MatterGen/PLaID/FlowMM)",
            "time_per_sun_s": "total generation time of all samples / S.U.N. count",
            "sg_consistent_rate / crystallm_valid_rate": "all samples",
        },
        "definitions": {
            "stable": f"valid, relaxed and E_hull <= {settings.stable_threshold:g} eV/atom",
            "metastable": f"valid, relaxed and E_hull < {settings.metastable_threshold:g} eV/atom (PLaID)",
            "unique / novel": "generated (unrelaxed) structures of valid samples: unique = no earlier valid sample "
            "matches; novel = no training structure matches (CDVAE/FlowMM)",
            "sun": _sun_definition(settings.sun_protocol),
            "msun": _sun_definition(settings.sun_protocol, "metastable"),
        },
        "sun": {
            "protocol": settings.sun_protocol,
            "structures": "relaxed" if settings.sun_protocol == "relaxed" else "generated (unrelaxed)",
            "matcher": {**settings.matcher, "primitive_cell": True, "scale": True, "comparator": "SpeciesComparator"},
            "stable_threshold_ev_per_atom": settings.stable_threshold,
            "n_stable": n_stable if computed else None,
            "n_stable_classes": ctx["info"]["sun"]["n_classes"] if computed else None,
            "n_sun": n_sun if sun_known else None,
            "metastable_threshold_ev_per_atom": settings.metastable_threshold,
            "n_metastable": n_meta if computed else None,
            "n_metastable_classes": ctx["info"]["msun"]["n_classes"] if computed else None,
            "n_msun": n_msun if sun_known else None,
        },
        "stability": {
            "computed": computed,
            "source": energy["source"],
            "stable_threshold_ev_per_atom": settings.stable_threshold,
            "metastable_threshold_ev_per_atom": settings.metastable_threshold,
            "e_hull_at_most": stability_table(outcomes, sorted(set(cfg.stability_thresholds)
                                                                | {settings.stable_threshold}))
            if computed else None,
            "total_gen_time_s": total_time,
        },
        "coverage": cov,
        "settings": _settings(cfg, settings, ctx),
        "relaxer": energy.get("relaxer"),
        "hull": hull,
        "hull_kind": hull.get("kind") if hull else f"none ({energy['source']})",
        "reference": {
            **ctx["reference"].describe(),
            "n_structures": ctx["novelty_ref"]["n_structures"],
            "n_unreadable": ctx["novelty_ref"]["n_missing"],
            "used_for": "novelty",
        },
        "coverage_reference": {
            **ctx["cov_reference"].describe(),
            "used_for": "coverage, wdist, space-group plot",
            "same_as_reference": ctx["cov_reference"].path == ctx["reference"].path,
            "n_structures": int(len(ctx["ref_fp"]["ok"])),
            "n_fingerprint_failed": int((~ctx["ref_fp"]["ok"]).sum()),
        },
        "model_version": cfg.model_version or _model_version(samples),
        "seeds": {
            "evaluation": None,
            "note": "the evaluation is deterministic: no sampling or subsampling",
            "generation_run_seeds": generation_metadata(samples).get("run_seed", []),
        },
        "generation": generation_metadata(samples),
        "package_versions": package_versions(),
        "failures": {
            "parse_errors": _tally(_short(o.error) for o in outcomes if not o.parsed),
            "struct_invalid": _tally(_short(o.struct_reason, 40) for o in outcomes if o.struct_valid is False),
            "e_hull_missing": _tally(_short(o.e_hull_reason, 60) for o in outcomes if o.e_hull is None),
            "fingerprint": _tally(_short(r.get("fp_reason"), 60) for r in rows if r.get("fp_status") in
                                  ("timeout", "error")),
            "checks": _tally(_short(r.get("check_error"), 60) for r in rows if r.get("check_error")),
        },
        "elapsed_s": round(time.time() - ctx["started"], 2),
    }
    if hull and hull.get("warning"):
        report["warnings"] = [hull["warning"]]
    return report


def _sun_definition(protocol: str, selected: str = "stable") -> str:
    which = "relaxed" if protocol == "relaxed" else "generated (unrelaxed)"
    name, rate = ("S.U.N.", "sun_rate") if selected == "stable" else ("M.S.U.N.", "msun_rate")
    return (f"{selected} samples grouped into StructureMatcher classes of their {which} structures (first {selected} "
            f"sample of a class = representative); a class is novel when its representative matches no training "
            f"structure; {name} count = {selected} novel classes; {rate} = {name} count / all samples (FlowMM/FlowLLM, "
            f"PLaID++, MatterGen)")


def _settings(cfg, settings, ctx) -> dict:
    return {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "outcome": settings.to_dict(),
        "dataset": ctx["dataset"],
        "dataset_source": ctx["dataset_source"],
        "coverage_cutoffs": {
            "struct": ctx["struct_cut"],
            "comp": ctx["comp_cut"],
            "source": "CDVAE COV_Cutoffs" if cfg.struct_cutoff is None and cfg.comp_cutoff is None else "given",
        },
        "structural_validity": {"min_distance_A": cfg.dist_cutoff, "min_volume_A3": cfg.min_volume,
                                "periodic_images": True},
        "compositional_validity": {
            "method": "SMACT charge neutrality + Pauling test; unary and all-metal compositions valid (CDVAE "
            "smact_validity)",
            "oxidation_table": describe_oxidation_table(cfg.oxidation_states),
        },
        "spacegroup": {"tool": "spglib via pymatgen SpacegroupAnalyzer", "symprec": cfg.symprec},
        "crystallm_checks": {
            "bond_ratio_band": [1 - cfg.bond_tolerance, 1 + cfg.bond_tolerance],
            "h_factor": crystallm.BOND_H_FACTOR,
            "bond_score_cutoff": crystallm.BOND_SCORE_CUTOFF,
            "neighbours": "pymatgen CrystalNN",
        },
        "fingerprints": {
            "structure": "matminer CrystalNNFingerprint.from_preset('ops'), mean over sites",
            "order_parameters": {"plaid": "plaid.evaluation.order_params (vectorised, = pymatgen to ~1e-15)",
                                 "matminer": "matminer/pymatgen LocalStructOrderParams"}[cfg.fingerprint_backend],
            "composition": "matminer ElementProperty.from_preset('magpie'), standardized with "
            + ctx["scaler"] + ", NaN -> 0",
            "comp_scaler": cfg.comp_scaler,
            "timeout_s": cfg.fingerprint_timeout_s,
            "reference_cache": {"file": ctx["ref_fp"]["cache_file"], "hit": ctx["ref_fp"]["cache_hit"]},
        },
        "matching": {
            "matcher": {**settings.matcher, "primitive_cell": True, "scale": True, "comparator": "SpeciesComparator"},
            "uniqueness_novelty_structures": "generated (unrelaxed) structures of valid samples",
            "sun_structures": "relaxed" if settings.sun_protocol == "relaxed" else "generated (unrelaxed)",
        },
        "stability_thresholds_ev_per_atom": sorted(set(cfg.stability_thresholds) | {settings.stable_threshold}),
    }


def _model_version(samples) -> str | list[str]:
    models = sorted({str(s.meta["model"]) for s in samples if s.meta.get("model")})
    if not models:
        return "unknown (not recorded in the sample file; pass --model-version)"
    return models[0] if len(models) == 1 else models


def generation_metadata(samples) -> dict:
    """Distinct values of each generation setting recorded in the samples (model, run_seed, temperature...)."""
    out: dict = {}
    for s in samples:
        for k, v in s.meta.items():
            out.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return {k: [json.loads(v) for v in sorted(vs)] for k, vs in out.items()}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("plaid", "pymatgen", "spglib", "smact", "matminer", "numpy", "scipy", "chgnet", "matgl", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
