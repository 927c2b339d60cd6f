"""Preference data for DPO from a model's own samples (``plaid pairs``), and the iterative alignment loop
(``plaid align``)."""

from .labels import BAD_STATUSES, Label, label_samples, labels_from_evaluation
from .pairs import MODES, TIER_NAMES, PairingError, build_pairs, split_pairs

__all__ = [
    "BAD_STATUSES",
    "Label",
    "MODES",
    "PairingError",
    "TIER_NAMES",
    "build_pairs",
    "label_samples",
    "labels_from_evaluation",
    "split_pairs",
]
