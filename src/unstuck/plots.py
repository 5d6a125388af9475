"""Every matplotlib figure of unstuck: one function per figure, data in, Figure out.

matplotlib is an optional dependency (``pip install 'unstuck[plot]'``) and is imported inside each
function, so ``import unstuck.plots`` is free and the rest of the library never needs it. The
figures are plain :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas: no pyplot, no
global backend, no windows; save one with ``figure.savefig(path)``.

Example::

    from unstuck.plots import schedule_figure

    curves = {"linear decay": [1e-3 * (1 - t / 100) for t in range(100)]}
    schedule_figure(curves, base_lr=1e-3).savefig("schedule.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "detect_warmup",
    "lr_find_figure",
    "monitor_figure",
    "schedule_figure",
    "spectrum_figure",
]

WARMUP_GID = "warm-up"
"""The ``gid`` of the shaded warm-up regions in :func:`schedule_figure` (to find them again)."""

_INSTALL_HINT = "plots need matplotlib: pip install 'unstuck[plot]'"


def _new_figure(width: float, height: float) -> Figure:
    """An empty Figure on its own Agg canvas (no pyplot, no global backend)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is in the test environment
        raise ImportError(_INSTALL_HINT) from error
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


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

    figure = _new_figure(9.0, 5.0)
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


if TYPE_CHECKING:
    from unstuck.diagnose.lr_finder import LRFinderResult


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

    figure = _new_figure(8.0, 5.0)
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


if TYPE_CHECKING:
    from unstuck.diagnose.hessian import Spectrum


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
    figure = _new_figure(8.0, 4.5)
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
    y), the per-tensor update/weight ratio as a heat-map (tensors x steps, log colour scale) and,
    when recorded, the effective-lr band (min..max over all tensors, median line)."""
    from matplotlib.colors import LogNorm

    steps = [r["step"] for r in history]
    has_lr = any(r.get("effective_lr") for r in history)
    figure = _new_figure(8.0, 9.0 if has_lr else 6.5)
    axes = figure.subplots(3 if has_lr else 2, 1, sharex=True)
    top = axes[0]
    top.plot(steps, [_positive(r["loss"]) for r in history], label="loss")
    top.plot(steps, [_positive(r["grad_norm"]) for r in history], label="gradient norm (L2)")
    top.set_yscale("log")
    top.set_ylabel("loss, gradient norm")
    top.legend()
    names = list(history[0]["layers"]) if history else []
    grid = [[_positive(r["layers"][n]["update_ratio"]) for r in history] for n in names]
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
    axes[-1].set_xlabel("step")
    return figure


def _positive(value: float | None) -> float:
    """``value`` for a log axis: NaN (not drawn) where it is missing or not positive."""
    return value if value is not None and value > 0 else float("nan")
