"""Figures of learning-rate schedules: the curves, with warm-up shaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from unstuck.plots.canvas import new_figure

__all__ = ["WARMUP_GID", "detect_warmup", "schedule_figure"]

WARMUP_GID = "warm-up"
"""The ``gid`` of the shaded warm-up regions in :func:`schedule_figure` (to find them again)."""

def detect_warmup(curve: Sequence[float]) -> int:
    """The length of the warm-up of ``curve``: the step at which its initial rising run peaks.

    The warm-up is taken to be the leading run of strictly increasing values: the result is the
    first step ``w`` with ``curve[w + 1] <= curve[w]`` (or the last step when the whole curve
    rises), so steps ``[0, w)`` are the warm-up and ``curve[w]`` is its peak. A curve that does
    not rise at its start (constant, decaying) has no warm-up: 0.

    Example::

        >>> detect_warmup([0.0, 0.5, 1.0, 0.9, 0.8])
        2
        >>> detect_warmup([1.0, 0.5, 0.25])
        0
    """
    values = [float(v) for v in curve]
    for step in range(len(values) - 1):
        if not values[step + 1] > values[step]:
            return step
    return max(len(values) - 1, 0)


def schedule_figure(
    curves: Mapping[str, Sequence[float]],
    *,
    base_lr: float,
    log_scale: bool = False,
    warmup_steps: Mapping[str, int] | None = None,
    title: str | None = None,
) -> Figure:
    """A figure of learning-rate schedules: one labelled curve per schedule.

    Args:
        curves: label -> learning rate at optimizer steps 0, 1, 2, ... (the x axis is the index).
        base_lr: the base learning rate the schedules multiply; shown in the default title.
        log_scale: draw the learning rate on a log axis (values <= 0, such as a warm-up's first
            step, are left out of a log plot rather than drawn).
        warmup_steps: label -> warm-up length in steps. Steps ``[0, warmup)`` of each curve are
            shaded lightly in the curve's colour and the end of the warm-up is marked with a
            dotted line; the shaded regions carry ``gid=WARMUP_GID``. A label not given here
            (or ``warmup_steps=None``) has its warm-up detected by :func:`detect_warmup`: the
            leading run of strictly increasing values. A warm-up of 0 draws nothing.
        title: the figure title; default ``"learning-rate schedules (base lr <base_lr>)"``.

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg canvas) with axes labelled "optimizer step" and
        "learning rate", a legend and a grid.

    Raises:
        ValueError: ``curves`` is empty, a curve is empty, or a warm-up length is negative.
        ImportError: matplotlib is not installed.

    Example::

        curves = {"warm-up then flat": [min(1.0, (t + 1) / 10) * 1e-3 for t in range(100)]}
        schedule_figure(curves, base_lr=1e-3, log_scale=True).savefig("lr.png")
    """
    if not curves:
        raise ValueError("curves must hold at least one schedule, got none")
    for label, curve in curves.items():
        if len(curve) == 0:
            raise ValueError(f"curves[{label!r}] must hold at least one value, got none")
    warmup_steps = dict(warmup_steps or {})
    for label, steps in warmup_steps.items():
        if steps < 0:
            raise ValueError(f"warmup_steps[{label!r}] must be >= 0, got {steps}")

    from matplotlib.patches import Patch

    figure = new_figure(9.0, 5.0)
    axes = figure.add_subplot()
    shaded = False
    for label, curve in curves.items():
        values = [float(v) for v in curve]
        steps = range(len(values))
        if log_scale:  # a log axis cannot show 0: leave such points out instead of clipping
            values = [v if v > 0 else float("nan") for v in values]
        (line,) = axes.plot(steps, values, label=label, linewidth=1.8)
        warmup = warmup_steps.get(label)
        if warmup is None:
            warmup = detect_warmup(curve)
        warmup = min(warmup, len(values) - 1)
        if warmup > 0:
            color = line.get_color()
            axes.axvspan(0, warmup, color=color, alpha=0.1, linewidth=0, gid=WARMUP_GID)
            axes.axvline(warmup, color=color, linestyle=":", linewidth=1.0, alpha=0.8)
            shaded = True

    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    if log_scale:
        axes.set_yscale("log")
    axes.set_xlim(left=0)
    axes.grid(True, which="major", alpha=0.4)
    if log_scale:
        axes.grid(True, which="minor", alpha=0.1)
    axes.set_title(title if title is not None else f"learning-rate schedules (base lr {base_lr:g})")
    handles, labels = axes.get_legend_handles_labels()
    if shaded:
        handles.append(Patch(facecolor="0.5", alpha=0.25))
        labels.append("warm-up: shaded, ends at the dotted line")
    axes.legend(handles, labels, loc="best", fontsize="small", framealpha=0.9)
    return figure

