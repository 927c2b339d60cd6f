"""Sampling crystals from trained models (``plaid sample``).

- ``Sampler`` / ``SampleConfig`` (``run``): requests -> batches -> decoded records in a resumable JSONL file.
- ``HFBackend`` / ``VLLMBackend`` / ``SamplingParams`` (``generate``): batched generation, per-sample seeds.
- ``SampleRequest``, ``make_request``, ``read_prompt_file`` (``requests``): what to sample, validated up front.
- ``WyckoffGrammar``, ``GrammarLogitsProcessor``, ``make_grammar`` (``grammar``, ``constrained``): decoding that
  only produces decodable Wyckoff text.

Heavy modules (torch, transformers) load on first use of the names that need them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Sampler": "run",
    "SampleConfig": "run",
    "sample_seed": "run",
    "summarize": "run",
    "export_structures": "run",
    "decode_sample": "run",
    "HFBackend": "generate",
    "VLLMBackend": "generate",
    "SamplingParams": "generate",
    "Generation": "generate",
    "load_backend": "generate",
    "SampleRequest": "requests",
    "RequestError": "requests",
    "make_request": "requests",
    "read_prompt_file": "requests",
    "WyckoffGrammar": "grammar",
    "ElementGrammar": "grammar",
    "CoordsGrammar": "grammar",
    "GrammarLogitsProcessor": "constrained",
    "TokenTrie": "constrained",
    "make_grammar": "constrained",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'plaid.sampling' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = list(_EXPORTS)
