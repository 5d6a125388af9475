"""Reading the inputs of the doctor: loss curves and Monitor records as plain lists of floats.

:func:`as_curve` accepts what users have (a list, a tuple, a 1-D tensor or NumPy array, a single
number) and returns a list of floats, keeping NaN/Inf (the rules look for them). The shape
helpers (:func:`tail`, :func:`halves_drop`, :func:`thirds`) read a curve robustly: medians and
means of windows rather than single, noisy points.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from unstuck.doctor.thresholds import MIN_WINDOW, TAIL_FRACTION

__all__ = [
    "as_curve",
    "finite",
    "first_nonfinite",
    "halves_drop",
    "median",
    "records",
    "series",
    "tail",
    "thirds",
]


def as_curve(name: str, values: Any, *, allow_empty: bool = True) -> list[float] | None:
    """``values`` as a list of floats (``None`` stays ``None``; a number is a one-point curve).

    Raises:
        TypeError: ``values`` is not a number or a 1-D sequence of numbers (the error names
            ``name``).
        ValueError: ``values`` is empty and ``allow_empty`` is False, or has more than one
            dimension.
    """
    if values is None:
        return None
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu()
        if values.dim() > 1:
            raise ValueError(f"{name} must be 1-D, got a tensor of shape {tuple(values.shape)}")
        values = values.reshape(-1).tolist()
    elif hasattr(values, "tolist") and hasattr(values, "ndim"):  # a NumPy array or scalar
        if values.ndim > 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {values.shape}")
        values = values.tolist()
    if isinstance(values, bool):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got a bool")
    if isinstance(values, (int, float)):
        return [float(values)]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(
            f"{name} must be a number or a sequence of numbers, got {type(values).__name__}"
        )
    out = []
    for i, v in enumerate(values):
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}[{i}] must be a number, got {type(v).__name__}: {v!r}")
        out.append(float(v))
    if not out and not allow_empty:
        raise ValueError(f"{name} must hold at least one value, got an empty sequence")
    return out


def finite(values: Sequence[float]) -> list[float]:
    """The finite values of a curve, in order."""
    return [v for v in values if math.isfinite(v)]


def first_nonfinite(values: Sequence[float]) -> int | None:
    """Index of the first NaN/Inf, or ``None``."""
    for i, v in enumerate(values):
        if not math.isfinite(v):
            return i
    return None


def median(values: Sequence[float]) -> float:
    """The median (of a non-empty sequence)."""
    return float(statistics.median(values))


def tail(values: Sequence[float]) -> float:
    """The end of a curve: the median of its last ``TAIL_FRACTION`` of values (at least one)."""
    n = max(1, math.ceil(len(values) * TAIL_FRACTION))
    return median(values[-n:])


def halves_drop(values: Sequence[float]) -> tuple[float, float]:
    """``(fall over the first half, fall over the second half)`` of a curve (>= 4 values).

    Each fall is the mean of one quarter minus the mean of the next: first half
    ``mean(q1) - mean(q2)``, second half ``mean(q3) - mean(q4)`` (positive: the loss went down).
    """
    n = len(values)
    q = [values[i * n // 4 : (i + 1) * n // 4] for i in range(4)]
    m = [statistics.fmean(part) for part in q]
    return m[0] - m[1], m[2] - m[3]


def thirds(values: Sequence[float]) -> tuple[float, float, float]:
    """The means of the first, middle and last third of a curve (>= 3 values)."""
    n = len(values)
    return tuple(  # type: ignore[return-value]
        statistics.fmean(values[i * n // 3 : (i + 1) * n // 3]) for i in range(3)
    )


def records(monitor: Any) -> list[dict[str, Any]] | None:
    """The Monitor's records: ``monitor.history`` for a Monitor, a list of records as is."""
    if monitor is None:
        return None
    history = getattr(monitor, "history", monitor)
    if not isinstance(history, (list, tuple)) or not all(isinstance(r, dict) for r in history):
        raise TypeError(
            "monitor must be an unstuck.diagnose.Monitor or its history (a list of record dicts), "
            f"got {type(monitor).__name__}"
        )
    return list(history)


def series(history: Sequence[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of the records whose ``key`` is a number (``None`` left out)."""
    out = []
    for i, r in enumerate(history):
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((int(r.get("step", i)), float(v)))
    return out


def window(n: int, fraction: float) -> int:
    """A window of ``fraction`` of ``n`` records, at least ``MIN_WINDOW`` (and at most ``n``)."""
    return min(n, max(MIN_WINDOW, math.ceil(n * fraction)))
