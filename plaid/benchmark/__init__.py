"""The seeds' benchmarks as commands: CSP (``run_csp_benchmark``) and unconditional generation
(``run_gen_benchmark``), each writing ``results.json`` and a ``table.md`` beside the published rows."""

from .csp import CSPBenchmarkConfig, run_csp_benchmark
from .gen import GenBenchmarkConfig, run_gen_benchmark
from .published import CSP_PUBLISHED, GEN_PUBLISHED, SOURCES

__all__ = [
    "CSP_PUBLISHED",
    "GEN_PUBLISHED",
    "SOURCES",
    "CSPBenchmarkConfig",
    "GenBenchmarkConfig",
    "run_csp_benchmark",
    "run_gen_benchmark",
]
