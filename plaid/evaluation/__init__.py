"""Evaluation of generated crystals: validity, CrystaLLM checks, coverage, uniqueness/novelty, CSP, S.U.N.

Each metric is a plain function registered by name (``get_metric(name)``, ``available_metrics()``);
``evaluate(...)`` runs them all over a sample file and writes ``structures.csv`` and ``report.json``;
``evaluate_csp(...)`` does crystal structure prediction match rate / RMSE.
"""

from __future__ import annotations

from . import checks, coverage, fingerprints, matching, stability, validity  # noqa: F401 - register metrics
from .checks import (
    bond_length_score,
    site_multiplicity_consistent,
    space_group_consistent,
    spglib_space_group,
)
from .coverage import COVERAGE_CUTOFFS, wdist_density, wdist_num_elems
from .coverage import coverage as coverage_metrics
from .csp import evaluate_csp
from .fingerprints import composition_fingerprint, structure_fingerprint
from .matching import (
    CSP_MATCHER,
    GEN_MATCHER,
    brute_force_novel,
    brute_force_unique,
    csp_metrics,
    csp_rms,
    reduce_reference,
    uniqueness_and_novelty,
)
from .pipeline import EvaluationConfig, evaluate, read_structures_csv
from .registry import METRICS, available_metrics, get_metric, register_metric
from .stability import STABILITY_THRESHOLDS, stability_rates
from .validity import OXIDATION_TABLES, compositional_validity, oxidation_table, structural_validity

__all__ = [
    "COVERAGE_CUTOFFS",
    "CSP_MATCHER",
    "GEN_MATCHER",
    "METRICS",
    "OXIDATION_TABLES",
    "STABILITY_THRESHOLDS",
    "EvaluationConfig",
    "available_metrics",
    "bond_length_score",
    "brute_force_novel",
    "brute_force_unique",
    "composition_fingerprint",
    "compositional_validity",
    "coverage_metrics",
    "csp_metrics",
    "csp_rms",
    "evaluate",
    "evaluate_csp",
    "get_metric",
    "oxidation_table",
    "read_structures_csv",
    "reduce_reference",
    "register_metric",
    "site_multiplicity_consistent",
    "space_group_consistent",
    "spglib_space_group",
    "stability_rates",
    "structural_validity",
    "structure_fingerprint",
    "uniqueness_and_novelty",
    "wdist_density",
    "wdist_num_elems",
]
