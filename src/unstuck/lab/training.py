"""One training run of a task with one optimizer: every curve and number a comparison needs.

:func:`train` is the training loop of the lab (``unstuck demo`` and ``unstuck compare`` both use
it). It trains ``task.make_model(seed)`` with mini-batches in an order drawn from a generator
seeded with ``seed`` (so every optimizer sees the same start and the same batches for a seed),
optionally drives the learning rate with a schedule (:class:`unstuck.schedules.Scheduler`, one
scheduler step per optimizer step), and records:

- per optimizer step: the mini-batch loss (on the weights before the step) and the learning rate
  the step used (group 0);
- per epoch: the mean mini-batch loss, and the loss and metric of the whole train, validation and
  test splits at the end of the epoch (and at epoch 0, before training) in eval mode;
- the wall time of the optimizer steps (forward, backward, step; evaluation and monitoring
  excluded) and so the mean step time;
- divergence: a mini-batch loss that is not finite stops the run (``diverged_step``); so does a
  non-finite loss of an evaluation;
- optionally a :class:`~unstuck.diagnose.monitor.Monitor` summary and history.

Nothing here prints or touches global state: progress goes to an optional callback.

Example:
    >>> import unstuck
    >>> from unstuck.lab.tasks import digits_mlp
    >>> run = train(digits_mlp(), lambda p: unstuck.Adam(p, lr=1e-3), epochs=1)
    >>> len(run.step_loss) == run.steps_per_epoch, run.diverged
    (True, False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unstuck.lab.tasks import Task

__all__ = [
    "EpochReport",
    "OptimizerFactory",
    "TrainingRun",
    "smoothed",
    "run_from_dict",
    "run_to_dict",
    "steps_to_target",
    "train",
]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
"""Builds an optimizer for the given parameters, e.g. ``lambda p: unstuck.Adam(p, lr=1e-3)``."""

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EpochReport:
    """Progress of one run: sent to the ``progress`` callback after every epoch."""

    optimizer: str
    epoch: int
    epochs: int
    train_loss: float
    """Mean mini-batch loss over this epoch (NaN when the run diverged in it)."""
    seed: int = 0
    diverged: bool = False


@dataclass
class TrainingRun:
    """Everything one run recorded (plain numbers and lists, ready for JSON).

    Attributes:
        optimizer, seed, lr: the run's label, seed and base learning rate (group 0 at the start).
        epochs, steps_per_epoch, batch_size: the planned run.
        step_loss: mini-batch loss of every step taken (the diverging one included).
        lr_curve: learning rate of every step taken.
        epoch_loss: mean mini-batch loss of every finished epoch.
        eval_epochs: the epochs at which the splits were evaluated (0 = before training).
        curves: ``"train_loss"``, ``"train_metric"``, ``"val_loss"``, ... -> one value per
            entry of :attr:`eval_epochs`.
        seconds: wall time of the optimizer steps; :attr:`step_time` is the mean per step.
        diverged_step: the step whose loss was not finite (None: finished normally).
        monitor: the Monitor's ``{"every", "summary", "history"}`` when one watched the run.
    """

    optimizer: str
    seed: int
    lr: float
    epochs: int
    steps_per_epoch: int
    batch_size: int
    step_loss: list[float] = field(default_factory=list)
    lr_curve: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    eval_epochs: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    diverged_step: int | None = None
    monitor: dict[str, Any] | None = None

    @property
    def diverged(self) -> bool:
        """True if a loss became NaN or infinite and the run was stopped."""
        return self.diverged_step is not None

    @property
    def step_time(self) -> float:
        """Mean wall time of one optimizer step in seconds (NaN before the first step)."""
        return self.seconds / len(self.step_loss) if self.step_loss else math.nan

    def final(self, key: str) -> float:
        """The last value of ``curves[key]`` of a run that finished; NaN if it diverged."""
        values = self.curves.get(key, [])
        return values[-1] if values and not self.diverged else math.nan


def smoothed(losses: Sequence[float], beta: float = 0.9) -> list[float]:
    r"""Bias-corrected exponential moving average of a loss curve.

    .. math:: s_t = \beta s_{t-1} + (1 - \beta)\,\ell_t,\quad s_{-1} = 0,\qquad
              \hat s_t = s_t / (1 - \beta^{t+1})

    (as the LR range test of fastai and Adam's bias correction). A non-finite loss makes every
    later value non-finite.

    Example:
        >>> smoothed([1.0, 1.0, 1.0])
        [1.0, 1.0, 1.0]
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    out, average = [], 0.0
    for t, loss in enumerate(losses):
        average = beta * average + (1.0 - beta) * loss
        out.append(average / (1.0 - beta ** (t + 1)))
    return out


def steps_to_target(losses: Sequence[float], target: float, beta: float = 0.9) -> int | None:
    """Optimizer steps taken before the smoothed mini-batch loss first reaches ``target``.

    The loss of step ``t`` (0-based) is measured on the weights after ``t`` updates, so the
    result is the first ``t`` with ``smoothed(losses)[t] <= target`` (see :func:`smoothed`;
    ``beta=0.9`` averages over about ten steps, so one lucky mini-batch does not count). None
    when the target is never reached.

    Example:
        >>> steps_to_target([2.0, 1.0, 0.5, 0.1, 0.05, 0.01], target=0.5, beta=0.0)
        2
    """
    for t, value in enumerate(smoothed(losses, beta)):
        if value <= target:
            return t
    return None


def _evaluate(task: Task, model: nn.Module, run: TrainingRun, epoch: int) -> bool:
    """Evaluate every split into ``run.curves``; False when a loss is not finite."""
    run.eval_epochs.append(epoch)
    finite = True
    for split in SPLITS:
        loss, metric = task.evaluate(model, getattr(task, split))
        run.curves.setdefault(f"{split}_loss", []).append(loss)
        run.curves.setdefault(f"{split}_metric", []).append(metric)
        finite = finite and math.isfinite(loss)
    return finite


def train(
    task: Task,
    make_optimizer: OptimizerFactory,
    *,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    schedule: Callable[[int], float] | None = None,
    label: str = "",
    evaluate_every_epoch: bool = True,
    monitor_every: int | None = None,
    progress: Callable[[EpochReport], None] | None = None,
) -> TrainingRun:
    """Train ``task``'s model with one optimizer and record the run (see the module docstring).

    Args:
        task: the task (model factory, splits, loss, metric).
        make_optimizer: builds the optimizer over the model's parameters.
        epochs: passes over the training split (>= 1); ``task.epochs`` when None.
        seed: initial weights (``task.make_model(seed)``) and mini-batch order.
        batch_size: mini-batch size (>= 1); ``task.batch_size`` when None. The last batch of an
            epoch may be smaller.
        schedule: ``step -> multiplier`` of the base lr (e.g. ``parse("warmup(cosine(90), 10)")``);
            None keeps the lr constant.
        label: the optimizer's name in the result and the progress reports.
        evaluate_every_epoch: evaluate the splits at epoch 0 and after every epoch (False: only
            after the last one).
        monitor_every: watch the run with a Monitor sampling every that many steps (None: no
            monitor).
        progress: called with an :class:`EpochReport` after every epoch.

    Every optimizer step is ``optimizer.step(closure)`` with a closure that zeroes the
    gradients, computes the mini-batch loss and back-propagates, so optimizers that need a
    closure (L-BFGS) work too; the recorded loss is that of the closure's first call.
    """
    epochs = task.epochs if epochs is None else epochs
    batch_size = task.batch_size if batch_size is None else batch_size
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if monitor_every is not None and monitor_every < 1:
        raise ValueError(f"monitor_every must be >= 1 or None, got {monitor_every}")

    model = task.make_model(seed)
    optimizer = make_optimizer(model.parameters())
    base_lr = float(optimizer.param_groups[0]["lr"])  # before a scheduler sets the first lr
    scheduler = None
    if schedule is not None:
        from unstuck.schedules import Scheduler

        scheduler = Scheduler(optimizer, schedule)
    monitor = None
    if monitor_every is not None:
        from unstuck.diagnose.monitor import Monitor

        monitor = Monitor(model, optimizer, every=monitor_every)
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = task.train.inputs, task.train.targets
    steps_per_epoch = math.ceil(len(task.train) / batch_size)
    run = TrainingRun(
        optimizer=label,
        seed=seed,
        lr=base_lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
    )
    if evaluate_every_epoch and not _evaluate(task, model, run, 0):
        run.diverged_step = 0
    model.train()
    try:
        for epoch in range(1, epochs + 1):
            if run.diverged:
                break
            _train_epoch(model, optimizer, scheduler, monitor, task, inputs, targets,
                         torch.randperm(len(targets), generator=generator).split(batch_size), run)
            if not run.diverged:
                epoch_losses = run.step_loss[-steps_per_epoch:]
                run.epoch_loss.append(sum(epoch_losses) / len(epoch_losses))
                if (evaluate_every_epoch or epoch == epochs) and not _evaluate(
                    task, model, run, epoch
                ):
                    run.diverged_step = len(run.step_loss) - 1
            if progress is not None:
                mean = math.nan if run.diverged else run.epoch_loss[-1]
                progress(EpochReport(label, epoch, epochs, mean, seed, run.diverged))
    finally:
        if monitor is not None:
            monitor.close()
            run.monitor = {
                "every": monitor_every,
                "summary": monitor.summary(),
                "history": monitor.history,
            }
    return run


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    monitor: Any,
    task: Task,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batches: Sequence[torch.Tensor],
    run: TrainingRun,
) -> None:
    """One pass over ``batches`` (index tensors), appending to ``run``; stops at a bad loss."""
    group = optimizer.param_groups[0]
    for batch in batches:
        x, y = inputs[batch], targets[batch]
        first: list[torch.Tensor] = []
        lr = float(group["lr"])

        def closure(x: torch.Tensor = x, y: torch.Tensor = y, first: list = first) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model(x), y)
            loss.backward()
            if not first:
                first.append(loss.detach())
                if monitor is not None:  # after backward, before the update (not timed)
                    start = time.perf_counter()
                    monitor.observe(loss)
                    run.seconds -= time.perf_counter() - start
            return loss

        start = time.perf_counter()
        optimizer.step(closure)
        if scheduler is not None:
            scheduler.step()
        run.seconds += time.perf_counter() - start
        loss = first[0].item() if first else math.nan
        run.step_loss.append(loss)
        run.lr_curve.append(lr)
        if not math.isfinite(loss):
            run.diverged_step = len(run.step_loss) - 1
            return


def run_to_dict(run: TrainingRun) -> dict[str, Any]:
    """``run`` as plain JSON-ready data (floats may be NaN or infinite; see ``compare``)."""
    return {
        "optimizer": run.optimizer,
        "seed": run.seed,
        "lr": run.lr,
        "epochs": run.epochs,
        "steps_per_epoch": run.steps_per_epoch,
        "batch_size": run.batch_size,
        "step_loss": list(run.step_loss),
        "lr_curve": list(run.lr_curve),
        "epoch_loss": list(run.epoch_loss),
        "eval_epochs": list(run.eval_epochs),
        "curves": {key: list(values) for key, values in run.curves.items()},
        "seconds": run.seconds,
        "diverged_step": run.diverged_step,
        "monitor": run.monitor,
    }


def run_from_dict(data: dict[str, Any]) -> TrainingRun:
    """The :class:`TrainingRun` that :func:`run_to_dict` wrote."""
    return TrainingRun(
        optimizer=data["optimizer"],
        seed=int(data["seed"]),
        lr=float(data["lr"]),
        epochs=int(data["epochs"]),
        steps_per_epoch=int(data["steps_per_epoch"]),
        batch_size=int(data["batch_size"]),
        step_loss=[float(v) for v in data["step_loss"]],
        lr_curve=[float(v) for v in data["lr_curve"]],
        epoch_loss=[float(v) for v in data["epoch_loss"]],
        eval_epochs=[int(v) for v in data["eval_epochs"]],
        curves={k: [float(v) for v in vs] for k, vs in data["curves"].items()},
        seconds=float(data["seconds"]),
        diverged_step=data["diverged_step"],
        monitor=data.get("monitor"),
    )
