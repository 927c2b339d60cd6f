"""Preference pairs from labelled samples (pure functions, seeded).

Pairs are made within one prompt: chosen and rejected are the model's own generated texts for that prompt.

Modes:
- ``basic`` (PLaID): accepted = E_hull < ``threshold`` (0.08 eV/atom); rejected = the rest, including unparsed,
  invalid and failed-relaxation generations; each accepted text is paired with ``ratio`` rejected ones (PLaID:
  1:3).
- ``tiered`` (PLaID++): novel-stable > known-stable > metastable > unstable > bad; each text is paired with
  ``ratio`` texts from lower tiers of the same prompt. Stable = E_hull <= ``stable_threshold`` (0.0), metastable =
  below ``threshold``. Without novelty labels, stable texts form one tier.
- ``msun`` (M.S.U.N.-aware): accepted = the texts that count toward M.S.U.N. (PLaID++): metastable (E_hull below
  ``threshold``), relaxed structure of a class that matches no training structure, and that class's representative
  (each class once); rejected = unstable and bad texts *and* metastable texts of known classes, so a known low-energy
  structure (diamond among Carbon-24's samples) is not rewarded; further members of an accepted class are neither
  (they are the same structure as a chosen text). Needs novelty labels (a training reference), computed at the same
  ``threshold`` (``OutcomeSettings.metastable_threshold``).
- ``spacegroup``: for prompts that request a space group, chosen = E_hull < ``threshold`` *and* relaxed structure
  in the requested group (spglib, symprec 0.1); rejected = the other texts of that prompt.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from ..evaluation.outcome import is_metastable, is_stable
from .labels import BAD_STATUSES, Label

MODES = ("basic", "tiered", "msun", "spacegroup")
TIER_NAMES = ("novel_stable", "stable", "metastable", "unstable", "bad")


class PairingError(ValueError):
    """The labelled samples cannot give any preference pair; the message says why."""


def tier(label: Label, threshold: float = 0.08, stable_threshold: float = 0.0, use_novelty: bool = True) -> int | None:
    """Tier index into TIER_NAMES (lower is better); None for samples that cannot be ranked (unlabelled)."""
    if label.status in BAD_STATUSES:
        return 4
    if label.status != "ok":
        return None
    e = label.e_hull_value
    if is_stable(e, stable_threshold):
        return 0 if (use_novelty and label.is_novel) else 1
    return 2 if is_metastable(e, threshold) else 3


def _is_accepted(label: Label, mode: str, threshold: float) -> bool | None:
    if label.status in BAD_STATUSES:
        return False
    if label.status != "ok":
        return None
    accepted = is_metastable(label.e_hull_value, threshold)
    if mode == "spacegroup":
        accepted = accepted and label.spacegroup == label.requested_spacegroup
    return accepted


def _msun_role(label: Label, threshold: float) -> str | None:
    """``msun``, ``known_metastable``, ``unstable`` or ``bad`` (the last three rejected); None: neither side
    (unlabelled, a further member of an accepted class, novelty unknown)."""
    if label.status in BAD_STATUSES:
        return "bad"
    if label.status != "ok":
        return None
    metastable = is_metastable(label.e_hull_value, threshold)
    if label.is_metastable is not None and label.is_metastable != metastable:
        raise PairingError(
            f"sample {label.sample_id} (E_hull {label.e_hull}) was labelled with another metastable threshold than "
            f"{threshold} eV/atom, so its M.S.U.N. class is not this threshold's: relabel with this threshold")
    if not metastable:
        return "unstable"
    if label.msun_class is None or label.msun_novel is None:
        return None  # the matcher could not decide its class or novelty
    if not label.msun_novel:
        return "known_metastable"
    return "msun" if label.is_msun else None


def _pair(chosen: Label, rejected: Label, pair_type: str) -> dict:
    return {
        "prompt": chosen.prompt,
        "chosen": chosen.text,
        "rejected": rejected.text,
        "chosen_e_hull": chosen.e_hull,
        "rejected_e_hull": rejected.e_hull,
        "chosen_id": chosen.sample_id,
        "rejected_id": rejected.sample_id,
        "rejected_status": rejected.status,
        "pair_type": pair_type,
    }


def _draw(rng: random.Random, pool: list[Label], k: int, cursor: dict, key) -> list[Label]:
    """k distinct items from ``pool``, cycling through a shuffled order so rejected texts are spread over chosen."""
    if not pool:
        return []
    if key not in cursor:
        order = pool[:]
        rng.shuffle(order)
        cursor[key] = [order, 0]
    order, pos = cursor[key]
    picks = []
    for _ in range(min(k, len(order))):
        picks.append(order[pos % len(order)])
        pos += 1
    cursor[key][1] = pos
    return picks


def build_pairs(
    labels: Sequence[Label],
    mode: str = "basic",
    ratio: int = 3,
    threshold: float = 0.08,
    stable_threshold: float = 0.0,
    seed: int = 0,
) -> tuple[list[dict], dict]:
    """Pairs and statistics (counts per label status, accepted/rejected, pairs per type, prompts)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    rng = random.Random(seed)
    by_prompt: dict[str, list[Label]] = defaultdict(list)
    for lab in labels:
        if lab.text:  # an empty generation has no text to prefer or reject
            by_prompt[lab.prompt].append(lab)
    stats: dict = {
        "n_samples": len(labels),
        "status_counts": dict(Counter(lab.status for lab in labels)),
        "n_prompts": len(by_prompt),
        "mode": mode,
        "ratio": ratio,
        "threshold": threshold,
        "stable_threshold": stable_threshold,
        "seed": seed,
    }
    if mode == "spacegroup":
        by_prompt = {p: labs for p, labs in by_prompt.items() if labs[0].requested_spacegroup is not None}
        if not by_prompt:
            raise PairingError("spacegroup mode needs samples from space-group-conditioned prompts; none found")

    pairs: list[dict] = []
    cursor: dict = {}
    n_accepted = n_rejected = 0
    if mode in ("basic", "spacegroup"):
        for prompt, labs in by_prompt.items():
            accepted = [lab for lab in labs if _is_accepted(lab, mode, threshold) is True]
            rejected = [lab for lab in labs if _is_accepted(lab, mode, threshold) is False]
            n_accepted += len(accepted)
            n_rejected += len(rejected)
            for chosen in accepted:
                for rej in _draw(rng, rejected, ratio, cursor, prompt):
                    if rej.text != chosen.text:
                        pairs.append(_pair(chosen, rej, f"accepted>{rej.status if rej.status in BAD_STATUSES else 'rejected'}"))
    elif mode == "msun":
        roles_count: Counter = Counter()
        for prompt, labs in by_prompt.items():
            roles = [(_msun_role(lab, threshold), lab) for lab in labs]
            roles_count.update(r or "neither" for r, _ in roles)
            accepted = [lab for r, lab in roles if r == "msun"]
            rejected = [(r, lab) for r, lab in roles if r in ("known_metastable", "unstable", "bad")]
            for chosen in accepted:
                for r, rej in _draw(rng, rejected, ratio, cursor, prompt):
                    if rej.text != chosen.text:
                        pairs.append(_pair(chosen, rej, f"msun>{r}"))
        # after the roles: a label of another threshold is reported as such first
        metastable = [lab for lab in labels if lab.status == "ok" and is_metastable(lab.e_hull_value, threshold)]
        if metastable and all(lab.msun_novel is None for lab in metastable):
            raise PairingError(f"msun mode needs the novelty of metastable samples ({len(metastable)} here have "
                               f"none): label with a training reference ({_describe(stats)})")
        stats["role_counts"] = dict(roles_count)
        n_accepted = roles_count["msun"]
        n_rejected = roles_count["known_metastable"] + roles_count["unstable"] + roles_count["bad"]
    else:
        use_novelty = any(lab.is_novel is not None for lab in labels)
        stats["novelty_labels"] = use_novelty
        tiers_count: Counter = Counter()
        for prompt, labs in by_prompt.items():
            ranked = [(tier(lab, threshold, stable_threshold, use_novelty), lab) for lab in labs]
            ranked = [(t, lab) for t, lab in ranked if t is not None]
            tiers_count.update(TIER_NAMES[t] for t, _ in ranked)
            for t, chosen in ranked:
                lower = [lab for u, lab in ranked if u > t]
                for rej in _draw(rng, lower, ratio, cursor, (prompt, t)):
                    if rej.text != chosen.text:
                        u = tier(rej, threshold, stable_threshold, use_novelty)
                        pairs.append(_pair(chosen, rej, f"{TIER_NAMES[t]}>{TIER_NAMES[u]}"))
        stats["tier_counts"] = dict(tiers_count)
        n_accepted = tiers_count["novel_stable"] + tiers_count["stable"] + tiers_count["metastable"]
        n_rejected = tiers_count["unstable"] + tiers_count["bad"]

    stats.update(n_accepted=n_accepted, n_rejected=n_rejected, n_pairs=len(pairs),
                 pair_types=dict(Counter(p["pair_type"] for p in pairs)))
    if not pairs:
        unlabelled = stats["status_counts"].get("unlabelled", 0)
        if n_accepted == 0:
            raise PairingError(
                f"no accepted sample among {len(labels)} ({_describe(stats)}): nothing to prefer; sample more, "
                f"or raise the threshold ({threshold} eV/atom)" + (f"; {unlabelled} had no E_hull" if unlabelled else "")
            )
        if n_rejected == 0:
            raise PairingError(f"no rejected sample among {len(labels)} ({_describe(stats)}): every sample is accepted")
        raise PairingError(f"accepted and rejected samples never share a prompt ({_describe(stats)})")
    return pairs, stats


def _describe(stats: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(stats["status_counts"].items()))


def split_pairs(pairs: list[dict], test_size: float, seed: int) -> tuple[list[dict], list[dict], str]:
    """Seeded train/test split, by prompt when there are several prompts (no prompt in both), else by pair."""
    if not 0 <= test_size < 1:
        raise ValueError(f"test_size must be in [0, 1), got {test_size}")
    prompts = sorted({p["prompt"] for p in pairs})
    rng = random.Random(seed)
    if test_size == 0:
        return pairs, [], "none"
    if len(prompts) >= 2:
        rng.shuffle(prompts)
        n_test = max(1, math.floor(len(prompts) * test_size))
        test_prompts = set(prompts[:n_test])
        return ([p for p in pairs if p["prompt"] not in test_prompts],
                [p for p in pairs if p["prompt"] in test_prompts], "prompt")
    if len(pairs) < 2:
        raise PairingError(f"only {len(pairs)} pair from one prompt: too few for a train/test split (use test_size 0)")
    order = list(range(len(pairs)))
    rng.shuffle(order)
    n_test = max(1, math.floor(len(pairs) * test_size))
    test = set(order[:n_test])
    return [p for i, p in enumerate(pairs) if i not in test], [p for i, p in enumerate(pairs) if i in test], "pair"
