"""Agreement of two energy evaluations of the same samples: the alignment's labeller (PLaID: M3GNet) against the
benchmark's judge (CHGNet), or one MLIP at two relaxation depths.

DPO optimises the labeller's verdict. Where the labeller is wrong, the policy learns its errors (reward hacking): the
labeller's rates rise while the judge's do not, and the two evaluations agree less on the policy's samples than on
the SFT model's. :func:`relaxer_agreement` measures that from two sets of per-sample outcomes
(``outcomes.jsonl`` of two ``plaid evaluate`` runs on one sample file, at one metastable threshold).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import stats

from .outcome import finite


def relaxer_agreement(a: Iterable[Mapping], b: Iterable[Mapping]) -> dict:
    """Counts under each evaluation and their overlap, and the per-sample correlation of E_hull.

    ``a`` and ``b`` are outcome records (``plaid.evaluation.outcome.Outcome`` as dicts) of the same samples, keyed by
    ``sample_id``. Rates are left to the caller: every count here is over all ``n_samples``. ``pearson`` and
    ``spearman`` are over the samples with a finite E_hull in both (``n_both``); None with fewer than 3.
    """
    by_a = {o["sample_id"]: o for o in a}
    by_b = {o["sample_id"]: o for o in b}
    if set(by_a) != set(by_b):
        only_a, only_b = sorted(set(by_a) - set(by_b)), sorted(set(by_b) - set(by_a))
        raise ValueError(f"the two evaluations cover different samples (only in the first: {only_a[:3]}, "
                         f"only in the second: {only_b[:3]}): evaluate the same sample file twice")
    ids = sorted(by_a)
    pairs = [(by_a[i]["e_hull"], by_b[i]["e_hull"]) for i in ids
             if finite(by_a[i].get("e_hull")) and finite(by_b[i].get("e_hull"))]
    x = np.array(pairs, dtype=float).reshape(-1, 2)
    correlated = len(x) >= 3 and x[:, 0].std() > 0 and x[:, 1].std() > 0

    def count(records: dict, key: str) -> int:
        return sum(bool(records[i].get(key)) for i in ids)

    def median(records: dict) -> float | None:
        values = [records[i]["e_hull"] for i in ids if finite(records[i].get("e_hull"))]
        return statistics.median(values) if values else None

    return {
        "n_samples": len(ids),
        "n_both": len(x),
        "pearson": float(np.corrcoef(x.T)[0, 1]) if correlated else None,
        "spearman": float(stats.spearmanr(x[:, 0], x[:, 1]).statistic) if correlated else None,
        "median_e_hull": [median(by_a), median(by_b)],
        "metastable": [count(by_a, "is_metastable"), count(by_b, "is_metastable")],
        "metastable_in_both": sum(bool(by_a[i].get("is_metastable")) and bool(by_b[i].get("is_metastable")) for i in ids),
        "stable": [count(by_a, "is_stable"), count(by_b, "is_stable")],
        "msun": [count(by_a, "is_msun"), count(by_b, "is_msun")],
        # of the first evaluation's M.S.U.N. samples, how many the second finds metastable (it may class them apart)
        "msun_confirmed": sum(bool(by_a[i].get("is_msun")) and bool(by_b[i].get("is_metastable")) for i in ids),
    }
