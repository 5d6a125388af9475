"""Figures of the doctor's report: loss curves (train / val / test / reference) and the gradient
norm with the update cosine. The per-layer ratios and effective learning rates are
:func:`unstuck.plots.monitor_figure`'s, the Hessian density :func:`unstuck.plots.spectrum_figure`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from unstuck.plots.canvas import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["gradient_figure", "loss_curves_figure"]


def _spread(n: int, length: int) -> list[float]:
    """``n`` evaluation positions spread evenly over ``length`` training steps (ending at it)."""
    return [(i + 1) * max(length - 1, 1) / n for i in range(n)]


def loss_curves_figure(
    train: Sequence[float],
    val: Sequence[float] | None = None,
    test: Sequence[float] | None = None,
    reference: Sequence[float] | None = None,
    *,
    val_steps: Sequence[int] | None = None,
    test_steps: Sequence[int] | None = None,
    title: str = "loss curves",
) -> Figure:
    """Training loss per step, with validation (train-dev), test and a reference model's
    training loss where given; log y axis when every finite value is positive. NaN/Inf points
    are left out (the curve breaks there). Val/test values without ``*_steps`` are spread evenly
    over the training steps.

    Example::

        loss_curves_figure([2.3, 0.9, 0.3], val=[2.2, 1.0, 1.4]).savefig("loss.png")
    """
    figure = new_figure(8.0, 4.5)
    axes = figure.add_subplot()

    def clean(values: Sequence[float]) -> list[float]:
        return [v if math.isfinite(v) else float("nan") for v in values]

    axes.plot(range(len(train)), clean(train), color="C0", linewidth=1.2, label="train")
    if reference:
        axes.plot(range(len(reference)), clean(reference), color="C7", linewidth=1.0,
                  linestyle="--", label="reference model (train)")
    for values, steps, color, label in ((val, val_steps, "C1", "validation (train-dev)"),
                                        (test, test_steps, "C3", "test")):
        if values:
            xs = list(steps) if steps is not None else _spread(len(values), len(train))
            axes.plot(xs, clean(values), color=color, marker="o", markersize=3, label=label)
    everything = [v for c in (train, val or [], test or [], reference or []) for v in c
                  if math.isfinite(v)]
    if everything and min(everything) > 0 and max(everything) / min(everything) > 20:
        axes.set_yscale("log")
    axes.set_xlabel("training step")
    axes.set_ylabel("loss")
    axes.grid(True, alpha=0.4)
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small")
    return figure


def gradient_figure(history: Sequence[Mapping]) -> Figure:
    """Two panels of Monitor records: the global gradient norm (log y) and the cosine between
    consecutive updates (-1: each step undoes the last, an oscillation; +1: steady progress)."""
    figure = new_figure(8.0, 5.5)
    top, bottom = figure.subplots(2, 1, sharex=True)
    steps = [r.get("step", i) for i, r in enumerate(history)]

    def value(r: Mapping, key: str) -> float:
        v = r.get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else float("nan")

    grads = [value(r, "grad_norm") for r in history]
    top.plot(steps, [g if g > 0 else float("nan") for g in grads], color="C0")
    if any(g > 0 for g in grads):
        top.set_yscale("log")
    top.set_ylabel("gradient norm (L2)")
    top.grid(True, alpha=0.4)
    bottom.plot(steps, [value(r, "update_cosine") for r in history], color="C2", linewidth=0.8)
    bottom.axhline(0.0, color="black", linewidth=0.6)
    bottom.set_ylim(-1.05, 1.05)
    bottom.set_ylabel("cosine of consecutive updates")
    bottom.set_xlabel("step")
    bottom.grid(True, alpha=0.4)
    return figure
