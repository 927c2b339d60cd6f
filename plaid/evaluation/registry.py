"""Name -> metric function registry (open-r1 style): every metric is a plain function registered under a name."""

from __future__ import annotations

from collections.abc import Callable

METRICS: dict[str, Callable] = {}


def register_metric(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` as the metric ``name`` (names are unique)."""

    def decorator(fn: Callable) -> Callable:
        if name in METRICS and METRICS[name] is not fn:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> Callable:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(sorted(METRICS))}") from None


def available_metrics() -> list[str]:
    return sorted(METRICS)
