"""The digits demo: train one small model with several optimizers and compare them.

:func:`run_demo` trains the ``digits-mlp`` task (see :mod:`unstuck.lab.tasks`) once per
optimizer, from the same initial weights and the same mini-batch order, and returns one
:class:`DemoResult` each; :func:`format_table` turns them into a plain-text table. Nothing here
prints: progress goes to an optional callback, so the CLI decides what to show.

Example:
    >>> results = run_demo(epochs=2)
    >>> print(format_table(results))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from unstuck.lab import training
from unstuck.lab.tasks import Task, digits_mlp
from unstuck.lab.training import EpochReport, OptimizerFactory

__all__ = [
    "DEFAULT_EPOCHS",
    "DemoResult",
    "EpochReport",
    "OptimizerFactory",
    "default_optimizers",
    "format_table",
    "run_demo",
    "train",
]

DEFAULT_EPOCHS = 50  # 17 steps per epoch: about half a second per optimizer on one core
DEFAULT_BATCH_SIZE = 64
_LARS_LR = 2.0  # LARS scales each layer's step by trust_coefficient * |w| / |g|: lr is large.


@dataclass(frozen=True)
class DemoResult:
    """How one optimizer did on the task.

    Attributes:
        optimizer: the name it was given.
        train_loss: loss on the whole training split after the last epoch.
        val_accuracy, test_accuracy: the task's metric on those splits, in [0, 1].
        seconds: wall-clock time of the training loop (evaluation excluded).
        history: mean mini-batch loss of each epoch.
    """

    optimizer: str
    train_loss: float
    val_accuracy: float
    test_accuracy: float
    seconds: float
    history: tuple[float, ...]

    @property
    def finite(self) -> bool:
        """False if the run diverged (the final training loss is NaN or infinite)."""
        return math.isfinite(self.train_loss)


def default_optimizers(lr: float | None = None) -> dict[str, OptimizerFactory]:
    """The demo's optimizer set, each with a learning rate that suits the digits MLP.

    ``lr`` replaces every optimizer's learning rate when given.
    """
    import unstuck

    def pick(default: float) -> float:
        return default if lr is None else lr

    return {
        "SGD": lambda p: unstuck.SGD(p, lr=pick(0.1), momentum=0.9),
        "Adam": lambda p: unstuck.Adam(p, lr=pick(1e-2)),
        "AdamW": lambda p: unstuck.AdamW(p, lr=pick(1e-2)),
        "RAdam": lambda p: unstuck.RAdam(p, lr=pick(1e-2)),
        "Ranger": lambda p: unstuck.Ranger(p, lr=pick(1e-2)),
        "LARS": lambda p: unstuck.LARS(p, lr=pick(_LARS_LR)),
    }


def train(
    task: Task,
    name: str,
    make_optimizer: OptimizerFactory,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[EpochReport], None] | None = None,
) -> DemoResult:
    """Train ``task``'s model with one optimizer and score it.

    The training loop is :func:`unstuck.lab.training.train` (constant learning rate, the splits
    evaluated once at the end): the initial weights come from ``task.make_model(seed)`` and the
    mini-batch order from a generator seeded with ``seed``, so every optimizer sees the same
    start and the same batches. A run whose loss stops being finite is stopped there and scores
    NaN.
    """
    run = training.train(
        task,
        make_optimizer,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        label=name,
        evaluate_every_epoch=False,
        progress=progress,
    )
    if run.diverged:
        nan = math.nan
        return DemoResult(name, nan, nan, nan, run.seconds, (*run.epoch_loss, nan))
    return DemoResult(
        name,
        run.curves["train_loss"][-1],
        run.curves["val_metric"][-1],
        run.curves["test_metric"][-1],
        run.seconds,
        tuple(run.epoch_loss),
    )


def run_demo(
    optimizers: Mapping[str, OptimizerFactory] | None = None,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    task: Task | None = None,
    progress: Callable[[EpochReport], None] | None = None,
    threads: int | None = 1,
) -> list[DemoResult]:
    """Train the digits MLP (or ``task``) once per optimizer; results in the given order.

    Args:
        optimizers: name -> factory; :func:`default_optimizers` when None.
        epochs: passes over the training split (>= 1).
        seed: initial weights and mini-batch order; the data split is fixed.
        batch_size: mini-batch size (>= 1).
        task: the task to train; :func:`~unstuck.lab.tasks.digits_mlp` when None.
        progress: called with an :class:`EpochReport` after every epoch of every optimizer.
        threads: torch's intra-op threads while training, restored afterwards; None leaves
            them alone. One is fastest for a model this small, and never oversubscribes a
            machine that runs other work (many threads can make it ten times slower).

    Example:
        >>> import unstuck
        >>> run_demo({"SGD": lambda p: unstuck.SGD(p, lr=0.1)}, epochs=1)[0].optimizer
        'SGD'
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if optimizers is None:
        optimizers = default_optimizers()
    if not optimizers:
        raise ValueError("optimizers must name at least one optimizer, got none")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    if task is None:
        task = digits_mlp()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return [
            train(
                task,
                name,
                factory,
                epochs=epochs,
                seed=seed,
                batch_size=batch_size,
                progress=progress,
            )
            for name, factory in optimizers.items()
        ]
    finally:
        if threads is not None:
            torch.set_num_threads(previous_threads)


def format_table(results: Sequence[DemoResult]) -> str:
    """A plain-text table with one row per result, in the order given.

    Example:
        optimizer  train loss  val acc  test acc  time (s)
        SGD            0.0123   97.49%    97.22%      0.41
    """
    header = ("optimizer", "train loss", "val acc", "test acc", "time (s)")
    rows = [
        (
            r.optimizer,
            f"{r.train_loss:.4f}",
            f"{100 * r.val_accuracy:.2f}%",
            f"{100 * r.test_accuracy:.2f}%",
            f"{r.seconds:.2f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))
        return "  ".join((first, *rest))

    return "\n".join([line(header), *(line(row) for row in rows)])
