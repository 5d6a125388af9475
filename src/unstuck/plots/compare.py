"""Figures of an optimizer comparison (``unstuck compare``): learning curves and lr curves.

Both take plain data (label -> runs or curves) and return a Figure; one colour per optimizer,
in the order given, the same in both figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from unstuck.plots.canvas import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["compare_curves_figure", "compare_lr_figure", "optimizer_colors"]


def optimizer_colors(n: int) -> list[Any]:
    """``n`` distinct colours: matplotlib's ``tab10`` up to 10, ``tab20`` up to 20, then a
    continuous map."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / max(n - 1, 1)) for i in range(n)]


def _band(
    runs: Sequence[Mapping[str, Any]], key: str, transform: Any
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per x (epoch): mean, min and max over the runs' finite values of ``key``."""
    by_x: dict[float, list[float]] = {}
    for run in runs:
        for x, value in zip(run["epochs"], run[key]):
            value = transform(float(value))
            if math.isfinite(value):
                by_x.setdefault(float(x), []).append(value)
    xs = sorted(by_x)
    return (
        xs,
        [sum(by_x[x]) / len(by_x[x]) for x in xs],
        [min(by_x[x]) for x in xs],
        [max(by_x[x]) for x in xs],
    )


def compare_curves_figure(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    metric_name: str = "accuracy",
    metric_as_error: bool | None = None,
    title: str | None = None,
) -> Figure:
    """Learning curves of several optimizers over several seeds: train loss, validation loss and
    validation metric per epoch.

    Each optimizer is one colour: its mean over the seeds as a line, the range over the seeds
    (min..max) as a shaded band. Losses are on a log axis. A seed that diverged ends early: its
    last point is marked with an ``x`` and the legend says how many seeds diverged.

    Args:
        runs: optimizer label -> one mapping per seed with ``"epochs"`` (the x values),
            ``"train_loss"``, ``"val_loss"``, ``"val_metric"`` (one value per epoch) and
            optionally ``"diverged"`` (bool).
        metric_name: what the metric measures (axis label).
        metric_as_error: draw ``1 - metric`` on a log axis (an error rate, or for R^2 the
            unexplained variance), which separates 97% from 98% where a linear axis cannot;
            None: when every value is at most 1.
        title: the figure's title (default: none).

    Returns:
        A :class:`matplotlib.figure.Figure` with three panels and one legend below them.

    Example::

        runs = {"adam": [{"epochs": [0, 1, 2], "train_loss": [2.3, 0.5, 0.2],
                          "val_loss": [2.3, 0.6, 0.3], "val_metric": [0.1, 0.8, 0.9]}]}
        compare_curves_figure(runs).savefig("curves.png")
    """
    if not runs or not all(runs.values()):
        raise ValueError("runs must hold at least one optimizer with at least one run")
    values = [
        float(v) for seeds in runs.values() for run in seeds for v in run["val_metric"]
        if math.isfinite(float(v))
    ]
    if metric_as_error is None:
        metric_as_error = bool(values) and max(values) <= 1.0
    figure = new_figure(13.0, 4.6)
    axes = figure.subplots(1, 3)
    panels = [
        ("train_loss", "training loss (log scale)", "training loss", True, float),
        ("val_loss", "validation loss (log scale)", "validation loss", True, float),
    ]
    if metric_as_error:
        panels.append(("val_metric", f"1 - validation {metric_name} (log scale)",
                       f"validation error: 1 - {metric_name}", True, lambda v: 1.0 - v))
    else:
        panels.append(("val_metric", f"validation {metric_name}", f"validation {metric_name}",
                       False, float))
    colors = optimizer_colors(len(runs))
    for ax, (key, ylabel, panel_title, log, transform) in zip(axes, panels):
        for color, (label, seeds) in zip(colors, runs.items()):
            xs, mean, low, high = _band(seeds, key, transform)
            diverged = sum(bool(run.get("diverged")) for run in seeds)
            name = label if not diverged else f"{label} (diverged {diverged}/{len(seeds)})"
            if log:
                mean, low, high = ([v if v > 0 else math.nan for v in c] for c in (mean, low, high))
            ax.plot(xs, mean, color=color, linewidth=1.6, label=name)
            if len(seeds) > 1:
                ax.fill_between(xs, low, high, color=color, alpha=0.12, linewidth=0)
            for run in seeds:
                if run.get("diverged") and len(run["epochs"]):
                    last = transform(float(run[key][-1])) if len(run[key]) else math.nan
                    y = last if math.isfinite(last) and (last > 0 or not log) else None
                    if y is not None:
                        ax.plot([run["epochs"][-1]], [y], marker="x", color=color, markersize=8,
                                markeredgewidth=2, linestyle="none")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.1)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
                  fontsize="small", frameon=False)
    if title:
        figure.suptitle(title)
    return figure


def compare_lr_figure(
    curves: Mapping[str, Sequence[float]],
    *,
    steps_per_epoch: int | None = None,
    title: str | None = None,
) -> Figure:
    """The learning rate of each optimizer at every optimizer step, on a log axis.

    The legend gives each curve's largest lr; line styles cycle so that curves with the same lr
    (lying on top of each other) stay visible.

    Args:
        curves: optimizer label -> learning rate of steps 0, 1, 2, ...
        steps_per_epoch: when given, the x axis counts epochs (step / steps_per_epoch).
        title: the figure's title (default: "learning rate per step").

    Example::

        compare_lr_figure({"adam": [1e-3 * min(1, (t + 1) / 10) for t in range(100)]})
    """
    if not curves or not all(len(c) for c in curves.values()):
        raise ValueError("curves must hold at least one non-empty curve")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1 or None, got {steps_per_epoch}")
    figure = new_figure(9.0, 4.6)
    ax = figure.add_subplot()
    scale = 1.0 / steps_per_epoch if steps_per_epoch else 1.0
    peaks = [max((float(v) for v in c if float(v) > 0), default=math.nan) for c in curves.values()]
    styles = ("-", "--", ":", "-.")  # curves with the same lr lie on top of each other
    for i, (color, (label, curve), peak) in enumerate(
        zip(optimizer_colors(len(curves)), curves.items(), peaks)
    ):
        xs = [t * scale for t in range(len(curve))]
        ys = [float(v) if float(v) > 0 else math.nan for v in curve]
        ax.plot(xs, ys, color=color, linewidth=1.8, linestyle=styles[i % len(styles)],
                label=f"{label}: {peak:.3g}" if math.isfinite(peak) else label)
    ax.set_yscale("log")
    finite = [p for p in peaks if math.isfinite(p)]
    if finite:  # a decay to (nearly) 0 would stretch the axis over many empty decades
        ax.set_ylim(bottom=max(ax.get_ylim()[0], min(finite) * 1e-3))
    ax.set_xlabel("epoch" if steps_per_epoch else "optimizer step")
    ax.set_ylabel("learning rate (log scale)")
    ax.set_title(title if title is not None else "learning rate per step")
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.1)
    figure.legend(loc="outside right upper", fontsize="small", frameon=False,
                  title="optimizer: peak lr", title_fontsize="small")
    return figure
