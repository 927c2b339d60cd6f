"""``table.md``: plaid's measured row beside the published rows (``published.py``), with what differs."""

from __future__ import annotations

import math
from pathlib import Path

from .breakdown import breakdown_table
from .published import CSP_PUBLISHED, CSP_SOURCE, GEN_COLUMNS, GEN_PUBLISHED, SOURCES


def _fmt(value, pct: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}" if pct else f"{value:.4f}"


def csp_table(results: dict, dataset: str | None) -> str:
    ns = list(results["match_rate"])
    head = "| model | " + " | ".join(f"match n={n} % | RMSE n={n}" for n in ns) + " |"
    lines = [f"# CSP benchmark ({dataset or 'unnamed dataset'})", "", head, "|---" * (1 + 2 * len(ns)) + "|"]
    cells = [f"{_fmt(results['match_rate'][n], True)} | {_fmt(results['rmse'][n], False)}" for n in ns]
    lines.append("| **plaid (this run)** | " + " | ".join(cells) + " |")
    for name, row in CSP_PUBLISHED.get(dataset or "", {}).items():
        cells = []
        for n in ns:
            rate, rmse = row.get(int(n), (None, None))
            cells.append(
                f"{'-' if rate is None else f'{rate:.2f}'} | {'-' if rmse is None else f'{rmse:.4f}'}"
            )
        lines.append(f"| {name} [{CSP_SOURCE}] | " + " | ".join(cells) + " |")
    c, s, m = results["counts"], results["settings"], results["model"]
    intervals = results.get("match_rate_ci95") or {}
    if intervals:
        lines += ["", "plaid's match rates, 95% Wilson intervals: " + ", ".join(
            f"n={n} [{100 * lo:.1f}, {100 * hi:.1f}]" for n, (lo, hi) in intervals.items()) + "."]
    lines += [
        "",
        f"plaid: {c['targets']} targets from {results['data']['targets'].get('path')} "
        f"({results['data']['targets'].get('kind')}, split {results['data']['targets'].get('split', '-')}), "
        f"{c['samples']} samples ({c['samples_parsed']} parsed, {c['candidates_ok']} candidates kept by the "
        f"'{s['candidate_filter']}' filter); prompt: {s['prompt']}; representation {s['representation']}; "
        f"constrained decoding: {s['constrained']}; {s.get('decoding') or 'temperature ' + str(s['temperature'])}, "
        f"top-k {s['top_k']}.",
        f"Model: {m.get('path')} {m.get('architecture', '')}, trained on {m.get('trained_on')} "
        f"in {m.get('train_runtime_s')} s.",
        f"Matcher: {s['matcher']}; RMSE: {s['rmse']}; match rate over {s['match_rate_denominator']}, "
        f"RMSE over {s['rmse_denominator']}.",
        "",
        f"[{CSP_SOURCE}] {SOURCES[CSP_SOURCE]}. Published models were trained on the full training split and "
        "tested on the full test split; '-' is a number not transcribed here.",
    ]
    if results.get("by_spacegroup"):
        lines += ["", "## By the target's space group", "",
                  *breakdown_table(results["by_spacegroup"], tuple(int(n) for n in ns)), "",
                  "RMSE: mean over the group's matched targets; share: the group's part of the sum of matched "
                  "targets' RMSEs whose mean is the reported RMSE."]
    return "\n".join(lines) + "\n"


def gen_interval_line(results: dict) -> str:
    """plaid's rates with their 95% Wilson intervals, and what COV-R / COV-P count."""
    ci, cov = results.get("ci95") or {}, (results.get("counts") or {}).get("coverage") or {}
    labels = [("struct_valid", "struct. valid"), ("comp_valid", "comp. valid"), ("cov_recall", "COV-R"),
              ("cov_precision", "COV-P")]
    parts = [f"{label} [{100 * ci[k][0]:.2f}, {100 * ci[k][1]:.2f}]" for k, label in labels if k in ci]
    if not parts:
        return ""
    line = "plaid's rates, 95% Wilson intervals: " + ", ".join(parts) + "."
    if cov.get("reference_structures"):
        where = Path(str((results.get("settings") or {}).get("coverage_reference", "the coverage reference"))).name
        line += (f" COV-R: {cov['reference_covered']} of the {cov['reference_structures']} structures of {where} have"
                 f" a sample within the cutoffs; COV-P: {cov['samples_precise']} of {cov['samples']} samples lie"
                 " within them of one of those structures.")
    return line


def gen_table(results: dict, dataset: str | None) -> str:
    head = "| model | " + " | ".join(label for _, label in GEN_COLUMNS) + " |"
    lines = [
        f"# Unconditional generation benchmark ({dataset or 'unnamed dataset'})",
        "",
        head,
        "|---" * (1 + len(GEN_COLUMNS)) + "|",
    ]
    pct = {k: not k.startswith("wdist") for k, _ in GEN_COLUMNS}
    mine = results["metrics"]
    lines.append(
        "| **plaid (this run)** | " + " | ".join(_fmt(mine.get(k), pct[k]) for k, _ in GEN_COLUMNS) + " |"
    )
    cited = set()
    for name, (row, source) in GEN_PUBLISHED.get(dataset or "", {}).items():
        cited.add(source)
        cells = [
            "-" if row[k] is None else (f"{row[k]:.2f}" if pct[k] else f"{row[k]:.3f}")
            for k, _ in GEN_COLUMNS
        ]
        lines.append(f"| {name} [{source}] | " + " | ".join(cells) + " |")
    s = results["settings"]
    extra = [("unique", "unique"), ("novel", "novel"), ("metastable", "metastable"), ("msun", "M.S.U.N.")]
    shown = ", ".join(f"{label} {_fmt(mine[k], True)} %" for k, label in extra if mine.get(k) is not None)
    lines += ["", f"plaid: {results['counts']['samples']} samples; {s.get('summary', '')}", ""]
    if shown:
        lines += [f"plaid, beyond the published columns: {shown}.", ""]
    intervals = gen_interval_line(results)
    if intervals:
        lines += [intervals, ""]
    lines += [f"[{k}] {SOURCES[k]}." for k in sorted(cited)]
    return "\n".join(lines) + "\n"
