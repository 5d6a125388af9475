"""The blank canvas every figure starts from, and small helpers shared by the figure modules."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["INSTALL_HINT", "new_figure", "positive"]

INSTALL_HINT = "plots need matplotlib: pip install 'unstuck[plot]'"


def new_figure(width: float, height: float) -> Figure:
    """An empty Figure on its own Agg canvas (no pyplot, no global backend)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is in the test environment
        raise ImportError(INSTALL_HINT) from error
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def positive(value: float | None) -> float:
    """``value`` for a log axis: NaN (not drawn) where it is missing, not positive or infinite
    (an overflowed statistic has no place on an axis, and ``inf`` breaks a colour scale)."""
    return value if value is not None and 0 < value < math.inf else float("nan")
