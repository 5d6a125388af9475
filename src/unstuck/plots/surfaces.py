"""Figures of optimizers on 2-D error surfaces: paths over contours, loss and gradient norm.

:func:`surface_figure` draws the surface's contours (log-spaced levels of ``f - min`` on a
surface bounded below, so the flat floor of a valley still shows), one labelled path per
optimizer with the start, the minima and the saddles marked, and beside it the loss and the
gradient norm per step on log axes. :func:`surface_animation` writes the paths growing step by
step as a GIF (matplotlib's Pillow writer; the file is written atomically).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from unstuck.plots.canvas import new_figure, positive

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from unstuck.lab.surfaces import Surface
    from unstuck.lab.trajectories import Trajectory

__all__ = ["surface_animation", "surface_figure"]

_GRID = 200


def _contours(axes: Axes, surface: Surface, *, log_levels: bool | None, levels: int,
              image: bool = False) -> None:
    """Filled contours of ``surface`` over its view box, with the minima and saddles marked
    (``image``: the colours as one image, faster to redraw for every frame of an animation)."""
    import numpy as np
    import torch
    from matplotlib.colors import LogNorm

    x0, x1, y0, y1 = surface.box
    xs = torch.linspace(x0, x1, _GRID, dtype=torch.float64)
    ys = torch.linspace(y0, y1, _GRID, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        z = surface.value(grid_x, grid_y).numpy()
    best = surface.minimum_value
    if log_levels is None:
        log_levels = surface.bounded and best is not None
    if log_levels:
        floor = best if best is not None else float(np.nanmin(z))
        gap = np.maximum(z - floor, 0.0)
        top = float(np.nanmax(gap))
        low = max(top * 1e-6, float(np.nanmin(gap[gap > 0])) if (gap > 0).any() else 1e-12)
        field, norm, bounds = np.maximum(gap, low), LogNorm(low, top), np.geomspace(low, top,
                                                                                    levels)
    else:
        field, norm = z, None
        bounds = np.linspace(float(np.nanmin(z)), float(np.nanmax(z)), levels)
    if image:
        axes.imshow(field, extent=(x0, x1, y0, y1), origin="lower", aspect="auto",
                    cmap="Blues_r", norm=norm, alpha=0.9, interpolation="bilinear")
    else:
        axes.contourf(xs, ys, field, levels=bounds, norm=norm, cmap="Blues_r", alpha=0.9)
    axes.contour(xs, ys, field, levels=bounds[:: 2 if image else 1], colors="white",
                 linewidths=0.4, alpha=0.6)
    for i, (mx, my) in enumerate(surface.minima):
        axes.plot(mx, my, marker="*", markersize=15, color="gold", markeredgecolor="black",
                  linestyle="none", zorder=5, label="minimum" if i == 0 else None)
    for i, (sx, sy) in enumerate(surface.saddles):
        axes.plot(sx, sy, marker="X", markersize=10, color="white", markeredgecolor="black",
                  linestyle="none", zorder=5, label="saddle point" if i == 0 else None)
    axes.set_xlim(x0, x1)
    axes.set_ylim(y0, y1)
    axes.set_xlabel("x")
    axes.set_ylabel("y")


def _colors(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return [palette[(i + 1) % len(palette)] for i in range(count)]


def _start(axes: Axes, trajectories: Sequence[Trajectory]) -> None:
    starts = sorted({t.path[0] for t in trajectories})
    for i, (sx, sy) in enumerate(starts):
        axes.plot(sx, sy, marker="o", markersize=9, color="white", markeredgecolor="black",
                  markeredgewidth=1.5, linestyle="none", zorder=6,
                  label="start" if i == 0 else None)


def surface_figure(
    surface: Surface,
    trajectories: Sequence[Trajectory],
    *,
    title: str | None = None,
    log_levels: bool | None = None,
    levels: int = 24,
) -> Figure:
    """Optimizer paths over the contours of ``surface``, and their loss and gradient norm.

    Args:
        surface: the surface the trajectories ran on.
        trajectories: one per optimizer (their ``label`` names the path).
        title: the figure title; default the surface's name and formula.
        log_levels: log-spaced contour levels of ``f - min``; default on surfaces bounded below
            with a known minimum.
        levels: the number of contour levels.

    Returns:
        A Figure: the contour map on the left (paths with a dot per step, start, minima,
        saddles, a legend), the loss per step (top right; ``f - min`` on a log axis where the
        minimum is known, else a symmetric log axis) and the gradient norm per step (bottom
        right, log axis). A run that diverged or escaped ends in a cross.
    """
    import matplotlib.gridspec as gridspec

    figure = new_figure(13.0, 6.2)
    grid = gridspec.GridSpec(2, 2, figure=figure, width_ratios=(1.55, 1.0))
    contour_axes = figure.add_subplot(grid[:, 0])
    loss_axes = figure.add_subplot(grid[0, 1])
    norm_axes = figure.add_subplot(grid[1, 1], sharex=loss_axes)
    _contours(contour_axes, surface, log_levels=log_levels, levels=levels)

    best = surface.minimum_value
    gap = surface.bounded and best is not None
    for trajectory, color in zip(trajectories, _colors(len(trajectories)), strict=True):
        xs = [p[0] for p in trajectory.path]
        ys = [p[1] for p in trajectory.path]
        label = trajectory.label + ("" if trajectory.status == "finished"
                                    else f" ({trajectory.status})")
        contour_axes.plot(xs, ys, color=color, linewidth=1.6, marker="o", markersize=2.2,
                          label=label, zorder=4)
        steps = range(len(trajectory.loss))
        loss = ([positive(v - best) for v in trajectory.loss] if gap  # type: ignore[operator]
                else list(trajectory.loss))
        loss_axes.plot(steps, loss, color=color, linewidth=1.4, label=trajectory.label)
        norm_axes.plot(steps, [positive(v) for v in trajectory.grad_norm], color=color,
                       linewidth=1.4, label=trajectory.label)
        if trajectory.status != "finished":
            contour_axes.plot(xs[-1], ys[-1], marker="X", color=color, markersize=11,
                              markeredgecolor="black", zorder=6)
            for axes, values in ((loss_axes, loss), (norm_axes, trajectory.grad_norm)):
                axes.plot(steps[-1], values[-1], marker="X", color=color, markersize=9,
                          markeredgecolor="black")
    _start(contour_axes, trajectories)
    contour_axes.legend(loc="best", fontsize="small", framealpha=0.9)

    if gap:
        loss_axes.set_yscale("log")
        loss_axes.set_ylabel("loss - minimum (log)")
    else:
        loss_axes.set_yscale("symlog", linthresh=1.0, linscale=0.5)
        loss_axes.set_ylabel("loss (symmetric log)")
    loss_axes.set_title("loss per step", fontsize="medium")
    norm_axes.set_yscale("log")
    norm_axes.set_ylabel("gradient norm (log)")
    norm_axes.set_xlabel("step")
    norm_axes.set_title("gradient norm per step", fontsize="medium")
    for axes in (loss_axes, norm_axes):
        axes.grid(True, which="major", alpha=0.3)
    loss_axes.tick_params(labelbottom=False)
    if len(trajectories) <= 8:
        loss_axes.legend(loc="best", fontsize="x-small", framealpha=0.9)
    figure.suptitle(title if title is not None else
                    f"{surface.name}: f(x, y) = {surface.formula}")
    return figure


def surface_animation(
    surface: Surface,
    trajectories: Sequence[Trajectory],
    path: str | os.PathLike[str],
    *,
    frames: int = 40,
    fps: int = 10,
    overwrite: bool = False,
    title: str | None = None,
    dpi: int = 72,
) -> None:
    """Write a GIF of the paths growing over the contours of ``surface``.

    The paths are drawn up to evenly spaced steps (``frames`` frames at most, the last one
    holding every step); the GIF is rendered to a temporary file and written to ``path``
    atomically (:func:`unstuck.files.write_bytes`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ImportError: matplotlib or Pillow is missing.
    """
    from matplotlib.animation import PillowWriter

    from unstuck.files import write_bytes

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    figure = new_figure(7.0, 5.0)
    axes = figure.add_subplot()
    _contours(axes, surface, log_levels=None, levels=20, image=True)
    _start(axes, trajectories)
    longest = max((len(t.path) for t in trajectories), default=1)
    marks = sorted({math.ceil(i * (longest - 1) / max(frames - 1, 1)) for i in range(frames)})
    lines, heads = [], []
    for trajectory, color in zip(trajectories, _colors(len(trajectories)), strict=True):
        (line,) = axes.plot([], [], color=color, linewidth=1.6, label=trajectory.label)
        (head,) = axes.plot([], [], marker="o", color=color, markeredgecolor="black",
                            markersize=7, linestyle="none")
        lines.append(line)
        heads.append(head)
    axes.legend(loc="best", fontsize="x-small", framealpha=0.9)
    heading = axes.set_title(f"{title or surface.name}: step {longest - 1}")
    figure.canvas.draw()  # lay out once, then keep the layout: redrawing it every frame is slow
    figure.set_layout_engine("none")

    writer = PillowWriter(fps=fps)
    with tempfile.TemporaryDirectory() as directory:
        temporary = os.path.join(directory, "animation.gif")
        with writer.saving(figure, temporary, dpi):
            for step in marks:
                for trajectory, line, head in zip(trajectories, lines, heads, strict=True):
                    shown = trajectory.path[: step + 1]
                    line.set_data([p[0] for p in shown], [p[1] for p in shown])
                    head.set_data([shown[-1][0]], [shown[-1][1]])
                heading.set_text(f"{title or surface.name}: step {step}")
                writer.grab_frame()
        with open(temporary, "rb") as stream:
            data = stream.read()
    write_bytes(path, data, overwrite=overwrite)
