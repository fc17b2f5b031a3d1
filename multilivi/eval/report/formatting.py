"""Number formatting of report values; whether a value is a count comes from the metric registry."""

from __future__ import annotations

import math

from multilivi.eval.metrics import find


def is_count(task: str, metric: str) -> bool:
    """Whether rows ``(task, metric)`` are counts (shown as integers), from their ``Metric.count``."""
    declared = find(task, metric)
    return declared is not None and declared.count


def format_number(value: float, *, count: bool = False, signed: bool = False) -> str:
    """Format a metric value: counts as integers; else 1 decimal at ≥ 100, 4 significant digits in [1, 100),
    3 significant digits below 1 (scientific below 1e-4), ``n/a`` for NaN.
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    sign = "+" if signed else ""
    if count:
        return f"{int(round(value)):{sign},d}" if round(value) else "0"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{value:{sign},.1f}"
    if a >= 1:
        return f"{value:{sign}.4g}"
    if a >= 1e-4:
        return f"{value:{sign}.3g}"
    return f"{value:{sign}.2e}"


def format_value(value: float, sd: float, *, count: bool = False) -> str:
    """``mean ± sd`` when ``sd`` is finite, else the value alone."""
    text = format_number(value, count=count)
    if sd is not None and math.isfinite(sd):
        text += f" ± {format_number(sd, count=count)}"
    return text


def format_interval(value: float, low: float, high: float, *, signed: bool = False) -> str:
    """``value [low, high]``: a mean over replicates and its 95 % interval (``signed`` for differences)."""
    shown = [format_number(x, signed=signed) for x in (value, low, high)]
    return f"{shown[0]} [{shown[1]}, {shown[2]}]"


def format_percent(fraction: float) -> str:
    """A fraction as a percentage for captions: 0.05 → ``"5 %"``."""
    return f"{fraction * 100:g} %"
