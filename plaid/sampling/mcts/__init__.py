"""Monte Carlo tree search decoding (CrystaLLM's MCTS) with an in-process energy model.

- ``tree``: the search (``Search``, ``TreeConfig``: PUCT selection, top-k expansion, only-child extension,
  rollouts, backup), independent of any model.
- ``model``: ``LMPolicy``, candidates and rollouts from a Hugging Face model (grammar mask through
  ``constraint.GrammarCursor``).
- ``scoring``: ``MLIPEnergy`` (CHGNet / M3GNet, optional relaxation steps, E_hull), ``CompletionScorer``
  (decode, validate, score; cached by text), ``CrystaLLMReward``.
- ``run``: ``MCTSSampler`` / ``MCTSConfig``, ``plaid sample --mcts`` records.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Search": "tree",
    "TreeConfig": "tree",
    "Evaluation": "tree",
    "LMPolicy": "model",
    "GrammarCursor": "constraint",
    "MLIPEnergy": "scoring",
    "CompletionScorer": "scoring",
    "CrystaLLMReward": "scoring",
    "MCTSSampler": "run",
    "MCTSConfig": "run",
    "summarize_mcts": "run",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'plaid.sampling.mcts' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = list(_EXPORTS)
