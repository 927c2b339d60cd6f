"""Fixed-point numbers as an automaton: which digit strings can still end inside an interval.

A number is ``int_digits`` integer digits at most, no leading zeros, then optionally ``.`` and 1..``decimals``
decimals. Intervals are closed and read on the number's grid (units of 10**-decimals), with a 1e-9 slack so that
bounds computed in floating point still admit the grid point they stand for."""

from __future__ import annotations

import math
from functools import lru_cache


def units(value: float, decimals: int, up: bool) -> int:
    """``value`` in grid units, rounded up (lower bounds) or down (upper bounds)."""
    x = value * 10**decimals
    return math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)


def grid_up(value: float, decimals: int) -> float:
    return units(value, decimals, True) / 10**decimals


def grid_down(value: float, decimals: int) -> float:
    return units(value, decimals, False) / 10**decimals


@lru_cache(maxsize=1 << 16)
def number_prefix_ok(buf: str, lo: float, hi: float, int_digits: int, decimals: int) -> bool:
    """Whether ``buf`` starts a fixed-point number that can end inside [lo, hi]."""
    lo_u, hi_u = units(lo, decimals, True), units(hi, decimals, False)
    if lo_u > hi_u:
        return False
    scale = 10**decimals
    if "." in buf and decimals == 0:
        return False
    if "." in buf:
        ip, fp = buf.split(".", 1)
        if not ip or len(fp) > decimals or (fp and not fp.isdigit()) or not ip.isdigit():
            return False
        if len(ip) > int_digits or (len(ip) > 1 and ip[0] == "0"):
            return False
        base = int(ip) * scale + (int(fp) * 10 ** (decimals - len(fp)) if fp else 0)
        top = base + 10 ** (decimals - len(fp)) - 1
        return max(base, lo_u) <= min(top, hi_u)
    if buf and (not buf.isdigit() or len(buf) > int_digits or (len(buf) > 1 and buf[0] == "0")):
        return False
    ranges = []
    if not buf:
        for k in range(1, int_digits + 1):
            low = 0 if k == 1 else 10 ** (k - 1)
            ranges.append((low, 10**k - 1))
    else:
        v = int(buf)
        extra = 0 if buf == "0" else int_digits - len(buf)
        for k in range(extra + 1):
            ranges.append((v * 10**k, v * 10**k + 10**k - 1))
    return any(max(a * scale, lo_u) <= min(b * scale + scale - 1, hi_u) for a, b in ranges)


@lru_cache(maxsize=1 << 16)
def number_complete(buf: str, lo: float, hi: float, decimals: int) -> bool:
    """Whether ``buf`` is a whole number inside [lo, hi]."""
    if decimals == 0:
        if not buf.isdigit() or (len(buf) > 1 and buf[0] == "0"):
            return False
        return units(lo, 0, True) <= int(buf) <= units(hi, 0, False)
    if "." not in buf:
        return False
    ip, fp = buf.split(".", 1)
    if not ip.isdigit() or not fp.isdigit() or len(fp) > decimals:
        return False
    v = int(ip) * 10**decimals + int(fp) * 10 ** (decimals - len(fp))
    return units(lo, decimals, True) <= v <= units(hi, decimals, False)


def prefix_interval(buf: str, decimals: int) -> tuple[float, float] | None:
    """The values (on the grid, full decimals) a fraction prefix ``0``, ``0.``, ``0.3``... can still end as, for
    numbers in [0, 1); None for an empty or non-fraction prefix."""
    if buf in ("", "0", "0."):
        return 0.0, 1.0 - 10.0**-decimals
    if not buf.startswith("0.") or not buf[2:].isdigit():
        return None
    fp = buf[2:]
    base = int(fp) * 10 ** (decimals - len(fp))
    return base / 10**decimals, (base + 10 ** (decimals - len(fp)) - 1) / 10**decimals


def closest_completion(buf: str, target: float, decimals: int) -> str:
    """The full-decimal fraction string in [0, 1) that starts with ``buf`` and lies closest to ``target``
    (periodically: 0.999 is next to 0.000)."""
    lo, hi = prefix_interval(buf, decimals)
    if buf.startswith("0.") and len(buf) - 2 == decimals:
        return buf
    t = target % 1.0
    candidates = [min(max(t, lo), hi), lo, hi]
    best = min(candidates, key=lambda v: min(abs(v - t), 1 - abs(v - t)))
    k = round(best * 10**decimals)
    k = min(max(k, round(lo * 10**decimals)), round(hi * 10**decimals))
    return f"0.{k:0{decimals}d}"
