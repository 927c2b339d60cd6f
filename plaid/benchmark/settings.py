"""What both benchmarks share: the decoding settings and the sampling run (plaid's own sampler, resumable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchmarkSampling:
    representation: str | None = None  # default: the model's training representation (plaid_run.json)
    constrained: bool = True
    batch_size: int = 32
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    max_new_tokens: int | None = None
    max_atoms: int | None = None  # grammar bound on atoms per cell
    device: str | None = None
    n_jobs: int = 1
    dataset: str | None = None  # perov_5 / carbon_24 / mp_20 / mpts_52: which published rows to show
    prompt_style: str | None = None  # default: the style the model was trained with (plaid_run.json), else plaid

    def resolved_prompt_style(self, model: str | None) -> str:
        """``prompt_style``, else the model's training style, else plaid's (``plaid.prompts``)."""
        from ..prompts import DEFAULT_PROMPT_STYLE, trained_prompt_style

        return self.prompt_style or (trained_prompt_style(model) if model else None) or DEFAULT_PROMPT_STYLE

    def sample_config(self, representation: str, prompt_style: str | None = None):
        from ..sampling.generate import SamplingParams
        from ..sampling.run import SampleConfig

        return SampleConfig(
            representation=representation,
            batch_size=self.batch_size,
            seed=self.seed,
            params=SamplingParams(self.temperature, self.top_p, self.top_k, self.max_new_tokens),
            constrained=self.constrained,
            grammar_options={"max_atoms": self.max_atoms} if self.max_atoms else {},
            prompt_style=prompt_style or self.resolved_prompt_style(None),
        )


def run_sampling(
    model: str, requests, out: Path, settings: BenchmarkSampling, representation: str, backend=None
) -> dict:
    """Check every request before the model loads, then sample them into ``out`` (resumes); the run summary."""
    from ..sampling.generate import load_backend
    from ..sampling.run import Sampler

    config = settings.sample_config(representation, settings.resolved_prompt_style(model))
    Sampler(None, config).check(requests)
    if backend is None:
        backend = load_backend(model, "hf", device=settings.device)
    return Sampler(backend, config).run(requests, out)
