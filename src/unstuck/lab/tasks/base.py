"""What a task is: :class:`Split` and :class:`Task`, and the helpers its factories build one with.

A factory cuts its data with :func:`fixed_splits` (60/20/20, shuffled by a seed) and wraps its
model builder with :func:`seeded` (same seed, same weights; the global random state untouched).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from unstuck.lab.tasks.metrics import accuracy

__all__ = ["Split", "Task", "fixed_splits", "seeded", "split_indices"]


@dataclass(frozen=True)
class Split:
    """One split of a data set: ``inputs[i]`` is labelled ``targets[i]``."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same length, got {self.inputs.shape[0]} "
                f"and {self.targets.shape[0]}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass(frozen=True)
class Task:
    """A supervised training problem: model factory, data splits, loss, metric and defaults.

    Attributes:
        name: registry name, e.g. ``"digits-mlp"``.
        description: one line for tables and ``--help``.
        make_model: ``make_model(seed)`` returns a freshly initialised model; the same seed gives
            the same weights, and the global random state is left untouched.
        train, val, test: the fixed data splits.
        loss: ``loss(outputs, targets)`` -> scalar tensor to minimise.
        metric: ``metric(outputs, targets)`` -> float to *maximise* (accuracy by default).
        metric_name: what :attr:`metric` measures, for tables.
        epochs: default passes over the training split for a comparison.
        batch_size: default mini-batch size.
        target_loss: the training loss that "steps to target" waits for (see
            :mod:`unstuck.lab.training`); None: not measured.
        default_lrs: optimizer name (lower case, as in ``unstuck.lab.optimizer_specs``) ->
            learning rate that suits this task under a warm-up + cosine schedule. Optimizers
            not listed use the comparison's general table.
    """

    name: str
    description: str
    make_model: Callable[[int], nn.Module]
    train: Split
    val: Split
    test: Split
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(default=F.cross_entropy)
    metric: Callable[[torch.Tensor, torch.Tensor], float] = field(default=accuracy)
    metric_name: str = "accuracy"
    epochs: int = 20
    batch_size: int = 64
    target_loss: float | None = None
    default_lrs: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.target_loss is not None and not math.isfinite(self.target_loss):
            raise ValueError(f"target_loss must be finite or None, got {self.target_loss}")
        for optimizer, lr in self.default_lrs.items():
            if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
                raise ValueError(f"default_lrs[{optimizer!r}] must be a number > 0, got {lr!r}")

    def evaluate(self, model: nn.Module, split: Split) -> tuple[float, float]:
        """``(loss, metric)`` of ``model`` on the whole ``split``, in eval mode, without grad.

        The model's train/eval mode is restored afterwards.
        """
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs = model(split.inputs)
                return self.loss(outputs, split.targets).item(), self.metric(outputs, split.targets)
        finally:
            model.train(was_training)


def split_indices(
    n: int, fractions: tuple[float, float] = (0.6, 0.2), seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train, validation and test indices.

    ``fractions`` are the train and validation shares; the test split takes the rest.

    Example:
        >>> [len(i) for i in split_indices(10)]
        [6, 2, 2]
    """
    train_share, val_share = fractions
    if train_share <= 0 or val_share < 0 or train_share + val_share >= 1:
        raise ValueError(f"fractions must be train > 0, val >= 0, train + val < 1, got {fractions}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_train, n_val = int(train_share * n), int(val_share * n)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def fixed_splits(
    inputs: torch.Tensor, targets: torch.Tensor, seed: int
) -> tuple[Split, Split, Split]:
    """The 60/20/20 train/validation/test splits of ``(inputs, targets)``, shuffled by ``seed``."""
    train, val, test = (
        Split(inputs[idx], targets[idx]) for idx in split_indices(len(targets), seed=seed)
    )
    return train, val, test


def seeded(build: Callable[[], nn.Module]) -> Callable[[int], nn.Module]:
    """Wrap a model builder so that ``make(seed)`` initialises from ``seed`` on a forked RNG."""

    def make(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build()

    return make
