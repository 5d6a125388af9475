"""Figures of the diagnostics: LR range test, Hessian spectrum, Monitor history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from unstuck.plots.canvas import new_figure, positive

if TYPE_CHECKING:
    from unstuck.diagnose.hessian import Spectrum
    from unstuck.diagnose.lr_finder import LRFinderResult

__all__ = ["lr_find_figure", "monitor_figure", "spectrum_figure"]


def lr_find_figure(result: LRFinderResult, *, title: str | None = None) -> Figure:
    """A figure of an LR range test: loss against learning rate, suggestions marked.

    The raw loss of every step is drawn faintly, the smoothed loss boldly, against the learning
    rate on a log axis; non-finite points (a diverged last step) are left out. Each suggestion
    of the result (``suggestion``: the steepest-descent rule; ``valley``: fastai's valley rule)
    is marked by a dashed vertical line and a labelled marker on the smoothed curve, its value in
    the legend. When the test stopped because the loss diverged, the title says at which lr.

    Args:
        result: what :func:`unstuck.diagnose.lr_finder.lr_find` returned.
        title: the figure title; default ``"LR range test"`` plus how the test ended.

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg canvas) with axes labelled "learning rate (log
        scale)" and "training loss", a legend and a grid.

    Raises:
        ValueError: the result holds no point.
        ImportError: matplotlib is not installed.

    Example::

        result = lr_find(model, optimizer, criterion, batches)
        lr_find_figure(result).savefig("lr_find.png")
    """
    import math

    lrs = [float(v) for v in result.lrs]
    if not lrs:
        raise ValueError("result must hold at least one point, got none")

    def finite(values: Sequence[float]) -> list[float]:
        return [float(v) if math.isfinite(float(v)) else float("nan") for v in values]

    figure = new_figure(8.0, 5.0)
    axes = figure.add_subplot()
    axes.plot(lrs, finite(result.losses), color="C0", alpha=0.3, linewidth=1.0, label="loss")
    smoothed = finite(result.smoothed)
    axes.plot(lrs, smoothed, color="C0", linewidth=2.0, label="smoothed loss")
    marks = (
        ("steepest", result.suggestion, result.suggestion_index, "C3", "o"),
        ("valley", result.valley, result.valley_index, "C2", "s"),
    )
    for name, lr, index, color, marker in marks:
        if lr is None or index is None:
            continue
        axes.axvline(lr, color=color, linestyle="--", linewidth=1.0, alpha=0.8)
        axes.plot(
            [lr],
            [smoothed[index]],
            marker=marker,
            markersize=8,
            linestyle="none",
            color=color,
            label=f"{name}: lr = {lr:.2e}",
        )
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss")
    visible = [v for v in smoothed if not math.isnan(v)]
    if visible:  # keep the diverging tail from squashing the interesting part
        raw = [v for v in finite(result.losses) if not math.isnan(v)]
        low, high, first = min(visible + raw), max(visible), visible[0]
        top = min(high, first + 0.5 * (first - low)) if first > low else high
        pad = 0.05 * (top - low) if top > low else max(abs(low) * 0.05, 1e-12)
        axes.set_ylim(low - pad, top + pad)
    axes.grid(True, which="major", alpha=0.4)
    axes.grid(True, which="minor", alpha=0.1)
    if title is None:
        title = "LR range test"
        if result.diverged_at is not None and result.diverged_at < len(lrs):
            title += f" (loss diverged at lr {lrs[result.diverged_at]:.2e})"
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    return figure

def spectrum_figure(
    spectrum: Spectrum,
    lambda_min: float | None = None,
    lambda_max: float | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """A figure of a Hessian eigenvalue density (:func:`unstuck.diagnose.hessian.spectrum`).

    The smoothed density is drawn against the eigenvalue on a log y axis (outliers carry a tiny
    fraction of the mass and would vanish on a linear axis); the axis is cut at ``1e-7`` times
    the peak so the Gaussian tails do not squash it. ``lambda_min`` / ``lambda_max`` (for
    example from :func:`~unstuck.diagnose.hessian.lanczos` or
    :func:`~unstuck.diagnose.hessian.critical_point`) are marked with labelled vertical lines;
    left as ``None`` nothing is marked.

    Args:
        spectrum: the :class:`~unstuck.diagnose.hessian.Spectrum` (``grid`` and ``density``).
        lambda_min: the smallest eigenvalue to mark, or ``None``.
        lambda_max: the largest eigenvalue to mark, or ``None``.
        title: the figure title; default says how many HVPs the density took.

    Returns:
        A :class:`matplotlib.figure.Figure` with axes "eigenvalue of the Hessian" and "density
        (log scale)".

    Example::

        density = spectrum(loss_fn, params, n_probes=3, steps=80)
        spectrum_figure(density, density.lambda_min, density.lambda_max).savefig("spectrum.png")
    """
    grid = [float(v) for v in spectrum.grid]
    density = [float(v) for v in spectrum.density]
    if not grid or len(grid) != len(density):
        raise ValueError(
            f"spectrum.grid and spectrum.density must be non-empty and of equal length, got "
            f"{len(grid)} and {len(density)}"
        )
    figure = new_figure(8.0, 4.5)
    axes = figure.add_subplot()
    peak = max(density)
    floor = peak * 1e-7 if peak > 0 else 1e-12
    axes.plot(
        grid,
        [max(v, floor) for v in density],
        color="tab:blue",
        linewidth=1.5,
        label="eigenvalue density",
    )
    for value, name, color in (
        (lambda_min, "lambda_min", "tab:red"),
        (lambda_max, "lambda_max", "tab:green"),
    ):
        if value is not None:
            axes.axvline(
                float(value),
                color=color,
                linestyle="--",
                linewidth=1.2,
                label=f"{name} = {float(value):.4g}",
            )
    axes.set_yscale("log")
    axes.set_ylim(bottom=floor, top=peak * 3 if peak > 0 else 1.0)
    axes.set_xlabel("eigenvalue of the Hessian")
    axes.set_ylabel("density (log scale)")
    axes.grid(True, which="major", alpha=0.4)
    axes.set_title(title if title is not None else f"Hessian spectrum ({spectrum.hvps} HVPs)")
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    return figure


def monitor_figure(history: Sequence[Mapping]) -> Figure:
    """A figure of :attr:`unstuck.diagnose.Monitor.history`: loss and gradient norm per step (log
    y), the per-tensor update/weight ratio as a heat-map (tensors x steps, log colour scale),
    when recorded the effective-lr band (min..max over all tensors, median line) and, when a
    schedule changed it, each parameter group's learning rate."""
    from matplotlib.colors import LogNorm

    steps = [r["step"] for r in history]
    has_lr = any(r.get("effective_lr") for r in history)
    scheduled = [(r["step"], r["lr"]) for r in history if r.get("lr")]
    has_schedule = len({tuple(lrs) for _, lrs in scheduled}) > 1
    panels = 2 + has_lr + has_schedule
    figure = new_figure(8.0, 2.0 + 2.3 * panels)
    axes = figure.subplots(panels, 1, sharex=True)
    top = axes[0]
    top.plot(steps, [positive(r["loss"]) for r in history], label="loss")
    top.plot(steps, [positive(r["grad_norm"]) for r in history], label="gradient norm (L2)")
    top.set_yscale("log")
    top.set_ylabel("loss, gradient norm")
    top.legend()
    names = list(history[0]["layers"]) if history else []
    grid = [[positive(r["layers"][n]["update_ratio"]) for r in history] for n in names]
    valid = [v for row in grid for v in row if v == v]
    heat = axes[1]
    if valid:
        image = heat.pcolormesh(
            steps, range(len(names)), grid, norm=LogNorm(min(valid), max(valid)), shading="nearest"
        )
        figure.colorbar(image, ax=heat, label="update norm / weight norm")
    heat.set_yticks(range(len(names)), names)
    heat.set_ylabel("parameter tensor")
    if has_lr:
        rows = [(r["step"], r["effective_lr"]) for r in history if r.get("effective_lr")]
        xs = [s for s, _ in rows]
        band = axes[2]
        band.fill_between(xs, [e["min"] for _, e in rows], [e["max"] for _, e in rows],
                          alpha=0.3, label="min..max")
        band.plot(xs, [e["median"] for _, e in rows], label="median")
        band.set_yscale("log")
        band.set_ylabel("effective lr (lr / sigma)")
        band.legend()
    if has_schedule:
        schedule = axes[-1]
        groups = max(len(lrs) for _, lrs in scheduled)
        for k in range(groups):
            points = [(s, lrs[k]) for s, lrs in scheduled if len(lrs) > k]
            schedule.plot([s for s, _ in points], [v for _, v in points],
                          label=f"group {k}" if groups > 1 else None)
        schedule.set_ylabel("learning rate")
        if groups > 1:
            schedule.legend()
    axes[-1].set_xlabel("step")
    return figure
