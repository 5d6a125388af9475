r"""Run an optimizer on a 2-D error surface and record where it goes.

:func:`run_trajectory` puts the point :math:`\theta = (x, y)` in one float64 tensor, builds the
optimizer from its :class:`~unstuck.lab.optimizer_specs.OptimizerSpec` (unstuck's or
torch.optim's), optionally drives its learning rate with a schedule (the text form of
:mod:`unstuck.schedules`), and takes N steps. Each step's gradient is the surface's gradient,
plus Gaussian noise of standard deviation ``noise`` when asked (seeded: the same run twice gives
the same path). The :class:`Trajectory` holds the path, the loss and the (noise-free) gradient
norm at steps 0..N.

A run stops early, and says why, when the point, loss or gradient stops being finite or the
point leaves a box 100 times the view box (:data:`FAR`): ``"diverged"`` when the loss rose on
the way out, ``"escaped"`` when it fell (an unbounded surface such as the saddle, left downhill).

The learning rate is the spec's own ``lr=`` when it gives one, else ``lr`` passed in, else the
documented default of :data:`DEFAULT_LRS` for the surface and optimizer, chosen so that each
surface's default picture shows its lesson (see the table's comments), else :data:`BASE_LRS`.
:func:`tune_lr` instead picks it by a small log-grid search (see :func:`lr_objective`).

Example:
    >>> from unstuck.lab.optimizer_specs import parse_optimizer
    >>> from unstuck.lab.surfaces import SURFACES
    >>> t = run_trajectory(SURFACES["valley"], parse_optimizer("adam"), steps=300)
    >>> t.lr, t.status, t.loss[-1] < 1e-3
    (0.1, 'finished', True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from unstuck.lab.optimizer_specs import OptimizerSpec
from unstuck.lab.surfaces import Point, Surface

__all__ = [
    "BASE_LRS",
    "DEFAULT_LRS",
    "FAR",
    "LR_GRID",
    "Trajectory",
    "default_lr",
    "lr_objective",
    "run_trajectory",
    "tune_lr",
]

ScheduleLike = str | Callable[[int], float] | None

FAR = 100.0
"""A run stops when the point leaves the view box scaled by this factor about its centre."""

#: The learning rate of each optimizer on a surface without its own entry in DEFAULT_LRS
#: (torch.optim's optimizers use the entry of the unstuck optimizer of the same name).
BASE_LRS: dict[str, float] = {
    "sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.1, "adagrad_rms": 0.01,
    "rmsprop": 0.01,
    "adam": 0.05, "adamw": 0.05, "radam": 0.05, "ranger": 0.05, "lars": 0.01, "rangerlars": 0.05,
}

#: Default learning rates per surface and optimizer, chosen so that the default pictures show
#: each surface's lesson:
#:
#: - valley: SGD at 0.1999, just under the stability limit 2 / 10 of the steep direction, so it
#:   bounces between the walls (each bounce shrinks by 0.1%) while crawling along the floor:
#:   the loss plateaus with the gradient norm still near 10. Momentum at 0.02 (inside its limit
#:   2 (1 + 0.9) / 10) rolls down in damped swings; the adaptive methods take per-coordinate
#:   steps and go straight for the minimum.
#: - saddle: SGD and momentum at the same 0.01, so the picture shows momentum's speed-up alone:
#:   gradient descent stalls at the saddle for most of the run, momentum escapes early.
DEFAULT_LRS: dict[str, dict[str, float]] = {
    "valley": {"sgd": 0.1999, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.5,
               "adagrad_rms": 0.5,
               "rmsprop": 0.05, "adam": 0.1, "adamw": 0.1, "radam": 0.1, "ranger": 0.2,
               "lars": 0.02, "rangerlars": 0.2},
    "rosenbrock": {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.5,
                   "rmsprop": 0.01, "adam": 0.05, "adamw": 0.05, "radam": 0.05, "ranger": 0.1,
                   "rangerlars": 0.1},
    "beale": {"sgd": 0.01, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.5,
              "rmsprop": 0.01, "adam": 0.05},
    "himmelblau": {"sgd": 0.01, "momentum": 2e-3, "nesterov": 2e-3, "adagrad": 0.5,
                   "rmsprop": 0.05, "adam": 0.1},
    "saddle": {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.05,
               "rmsprop": 0.01, "adam": 0.01},
    "monkey_saddle": {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.05,
                      "rmsprop": 0.01, "adam": 0.01},
    "rastrigin": {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.5,
                  "rmsprop": 0.05, "adam": 0.1},
}

#: The learning rates :func:`tune_lr` tries: 1e-4 to 3, two per decade.
LR_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """The record of one optimizer's run on a surface, at steps 0 (the start) to ``len - 1``.

    ``status`` is ``"finished"`` (all steps ran), ``"diverged"`` (a non-finite value, or the
    point left the far box going uphill) or ``"escaped"`` (left the far box going downhill).
    """

    label: str
    surface: str
    lr: float
    schedule: str | None
    noise: float
    steps: int
    path: tuple[Point, ...]
    loss: tuple[float, ...]
    grad_norm: tuple[float, ...]
    lrs: tuple[float, ...]
    status: str = "finished"

    @property
    def diverged(self) -> bool:
        """Whether the run stopped because it blew up."""
        return self.status == "diverged"

    @property
    def final(self) -> Point:
        """The last recorded point."""
        return self.path[-1]


def default_lr(surface: Surface, spec: OptimizerSpec) -> float | None:
    """The documented default lr of ``spec``'s optimizer on ``surface`` (None: class default)."""
    name = spec.name.removeprefix("torch.")
    table = DEFAULT_LRS.get(surface.name, {})
    return table.get(name, BASE_LRS.get(name))


def _schedule(schedule: ScheduleLike) -> tuple[Callable[[int], float] | None, str | None]:
    if schedule is None:
        return None, None
    if isinstance(schedule, str):
        from unstuck.schedules import parse

        parsed = parse(schedule)
        return parsed, repr(parsed)
    return schedule, repr(schedule)


def run_trajectory(
    surface: Surface,
    spec: OptimizerSpec,
    *,
    steps: int,
    start: Point | None = None,
    lr: float | None = None,
    schedule: ScheduleLike = None,
    noise: float = 0.0,
    seed: int = 0,
) -> Trajectory:
    """Run ``spec``'s optimizer on ``surface`` for ``steps`` steps from ``start``.

    Args:
        surface: where to run.
        spec: the optimizer; its ``lr=`` wins over ``lr``.
        steps: optimizer steps (>= 1).
        start: the start point (default: the surface's).
        lr: the learning rate when the spec gives none (default: :func:`default_lr`).
        schedule: a schedule's text form (``"cosine(300)"``) or any ``step -> multiplier``.
        noise: standard deviation of Gaussian noise added to each gradient (>= 0).
        seed: seed of the noise.

    Raises:
        ValueError: a bad argument, or the optimizer rejects an option.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    start = surface.start if start is None else (float(start[0]), float(start[1]))
    rate = spec.lr if spec.lr is not None else lr if lr is not None else default_lr(surface, spec)
    function, schedule_text = _schedule(schedule)

    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = spec.build([point], default_lr=rate)
    scheduler = None
    if function is not None:
        from unstuck.schedules import Scheduler

        scheduler = Scheduler(optimizer, function)
    generator = torch.Generator().manual_seed(seed)

    def closure() -> torch.Tensor:
        with torch.no_grad():
            gx, gy = surface.gradient(point[0], point[1])
            grad = torch.stack([gx, gy]).to(torch.float64)
            if noise > 0:
                grad = grad + noise * torch.randn(2, generator=generator, dtype=torch.float64)
            point.grad = grad
            return surface(point)

    x0, x1, y0, y1 = surface.box
    centre, half = ((x0 + x1) / 2, (y0 + y1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2)

    def far(p: Point) -> bool:
        return any(abs(p[i] - centre[i]) > FAR * half[i] for i in (0, 1))

    path: list[Point] = []
    losses: list[float] = []
    norms: list[float] = []
    lrs: list[float] = []
    status = "finished"
    for step in range(steps + 1):
        with torch.no_grad():
            here = (float(point[0]), float(point[1]))
            gx, gy = surface.gradient(point[0], point[1])
            loss, norm = float(surface(point)), math.hypot(float(gx), float(gy))
        if not all(map(math.isfinite, (*here, loss, norm))):
            status = "diverged"
            break
        path.append(here)
        losses.append(loss)
        norms.append(norm)
        if far(here):
            status = "diverged" if loss > losses[0] else "escaped"
            break
        if step == steps:
            break
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step(closure)
        if scheduler is not None:
            scheduler.step()
    label = spec.label if spec.lr is not None or rate is None else f"{spec.label}, lr={rate:g}"
    return Trajectory(
        label=label, surface=surface.name, lr=float(optimizer.defaults.get("lr", math.nan)),
        schedule=schedule_text, noise=noise, steps=steps, path=tuple(path), loss=tuple(losses),
        grad_norm=tuple(norms), lrs=tuple(lrs), status=status,
    )


def lr_objective(surface: Surface, trajectory: Trajectory) -> float:
    r"""The score :func:`tune_lr` minimizes: the mean over steps 1..N of the log loss gap.

    .. math::
        J = \frac{1}{N} \sum_{t=1}^{N} \log_{10}\!\left(f(\theta_t) - f^* + 10^{-12}\right)

    where :math:`f^*` is the surface's minimum value. Averaging over the whole run rewards
    getting close early and staying close (not a lucky last step). On a surface without a
    known minimum (the saddles, user functions) it is the mean of :math:`\operatorname{asinh}
    f(\theta_t)`, which is log-like for large :math:`|f|` of either sign. A run that diverged
    scores ``inf`` (excluded); one that escaped counts its last recorded value for the
    remaining steps.
    """
    if trajectory.diverged:
        return math.inf
    values = list(trajectory.loss[1:]) or [trajectory.loss[0]]
    values += [values[-1]] * (trajectory.steps - len(values))
    best = surface.minimum_value
    if best is None:
        return sum(math.asinh(v) for v in values) / len(values)
    return sum(math.log10(max(v - best, 0.0) + 1e-12) for v in values) / len(values)


def tune_lr(
    surface: Surface,
    spec: OptimizerSpec,
    *,
    steps: int,
    grid: Sequence[float] = LR_GRID,
    **options: object,
) -> tuple[float, dict[float, float]]:
    """The lr of ``grid`` with the lowest :func:`lr_objective` for ``spec`` on ``surface``.

    ``options`` go to :func:`run_trajectory` (start, schedule, noise, seed). The spec's own
    ``lr=`` is ignored here. Ties go to the larger lr; when every lr diverges, the smallest.

    Returns:
        ``(best_lr, {lr: objective})``.
    """
    bare = type(spec)(spec.name, {k: v for k, v in spec.options.items() if k != "lr"})
    scores = {
        lr: lr_objective(surface, run_trajectory(surface, bare, steps=steps, lr=lr,
                                                 **options))  # type: ignore[arg-type]
        for lr in grid
    }
    finite = [lr for lr in grid if math.isfinite(scores[lr])]
    if not finite:
        return min(grid), scores
    return min(finite, key=lambda lr: (scores[lr], -lr)), scores
