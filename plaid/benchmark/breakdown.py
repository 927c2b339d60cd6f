"""Where a CSP score comes from: match rate and mean RMSE per group of targets (by default the target's space
group), with each group's share of the RMSE sum, so a mean carried by a few kinds of structure shows as such."""

from __future__ import annotations

from collections import defaultdict

from .stats import wilson_interval


def csp_breakdown(per_target: list[dict], groups: list[str], n_values: tuple[int, ...]) -> list[dict]:
    """One row per group (most targets first): ``n_targets`` and, for each n, ``matched_at_n``,
    ``match_rate_at_n`` with its 95% Wilson interval, ``mean_rmse_at_n`` over the group's matched targets and
    ``rmse_share_at_n`` (the group's part of the sum whose mean over all matched targets is the reported RMSE).

    ``per_target`` rows carry ``rmse_at_{n}`` (None: unmatched), as ``plaid.evaluation.evaluate_csp`` writes them;
    ``groups[i]`` is target i's group."""
    if len(groups) != len(per_target):
        raise ValueError(f"{len(groups)} groups for {len(per_target)} targets")
    members: dict[str, list[dict]] = defaultdict(list)
    for row, group in zip(per_target, groups):
        members[group].append(row)
    totals = {n: sum(r[f"rmse_at_{n}"] for r in per_target if r[f"rmse_at_{n}"] is not None) for n in n_values}
    rows = []
    for group, rows_in in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out = {"group": group, "n_targets": len(rows_in)}
        for n in n_values:
            found = [r[f"rmse_at_{n}"] for r in rows_in if r[f"rmse_at_{n}"] is not None]
            out[f"matched_at_{n}"] = len(found)
            out[f"match_rate_at_{n}"] = len(found) / len(rows_in)
            out[f"match_rate_ci95_at_{n}"] = [round(x, 4) for x in wilson_interval(len(found), len(rows_in))]
            out[f"mean_rmse_at_{n}"] = sum(found) / len(found) if found else None
            out[f"rmse_share_at_{n}"] = sum(found) / totals[n] if found and totals[n] > 0 else None
        rows.append(out)
    return rows


def breakdown_table(rows: list[dict], n_values: tuple[int, ...], label: str = "space group") -> list[str]:
    """Markdown lines of :func:`csp_breakdown`'s rows."""
    head = f"| {label} | targets | " + " | ".join(
        f"match n={n} % | RMSE n={n} | share of RMSE sum n={n} %" for n in n_values) + " |"
    lines = [head, "|---" * (2 + 3 * len(n_values)) + "|"]
    for row in rows:
        cells = []
        for n in n_values:
            rmse, share = row[f"mean_rmse_at_{n}"], row[f"rmse_share_at_{n}"]
            cells += [f"{100 * row[f'match_rate_at_{n}']:.1f}", "-" if rmse is None else f"{rmse:.4f}",
                      "-" if share is None else f"{100 * share:.1f}"]
        lines.append(f"| {row['group']} | {row['n_targets']} | " + " | ".join(cells) + " |")
    return lines
