"""Every matplotlib figure of unstuck: one function per figure, data in, Figure out.

matplotlib is an optional dependency (``pip install 'unstuck[plot]'``) and is imported inside each
function, so ``import unstuck.plots`` is free and the rest of the library never needs it. The
figures are plain :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas: no pyplot, no
global backend, no windows; save one with ``figure.savefig(path)``.

Example::

    from unstuck.plots import schedule_figure

    curves = {"linear decay": [1e-3 * (1 - t / 100) for t in range(100)]}
    schedule_figure(curves, base_lr=1e-3).savefig("schedule.png")

Figures live in one module per subject (``schedules``, ``diagnose``, ...); this package
re-exports them all.
"""

from unstuck.plots.canvas import new_figure
from unstuck.plots.compare import compare_curves_figure, compare_lr_figure
from unstuck.plots.diagnose import lr_find_figure, monitor_figure, spectrum_figure
from unstuck.plots.doctor import gradient_figure, loss_curves_figure
from unstuck.plots.schedules import WARMUP_GID, detect_warmup, schedule_figure
from unstuck.plots.surfaces import surface_animation, surface_figure

__all__ = [
    "compare_curves_figure",
    "compare_lr_figure",
    "WARMUP_GID",
    "detect_warmup",
    "gradient_figure",
    "loss_curves_figure",
    "lr_find_figure",
    "monitor_figure",
    "new_figure",
    "schedule_figure",
    "spectrum_figure",
    "surface_animation",
    "surface_figure",
]
