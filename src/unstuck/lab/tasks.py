"""Built-in training tasks on data that ships with a package: no download, fixed splits.

A :class:`Task` bundles everything needed to train and score a model: a seeded model factory,
train/validation/test splits as tensors, a loss and a metric. Tasks are built by factories
registered in :data:`TASKS` under a short name, so the CLI and the lab can look them up.

Example:
    >>> task = TASKS["digits-mlp"]()
    >>> model = task.make_model(0)
    >>> loss = task.loss(model(task.train.inputs), task.train.targets)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TASKS", "Split", "Task", "accuracy", "digits_mlp", "get_task", "split_indices"]


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the target class, in ``[0, 1]``.

    Example:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        0.5
    """
    if logits.shape[0] == 0:
        raise ValueError("accuracy needs at least one example, got 0")
    return (logits.argmax(dim=-1) == targets).float().mean().item()


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
    """A supervised training problem: model factory, data splits, loss and metric.

    Attributes:
        name: registry name, e.g. ``"digits-mlp"``.
        description: one line for tables and ``--help``.
        make_model: ``make_model(seed)`` returns a freshly initialised model; the same seed gives
            the same weights, and the global random state is left untouched.
        train, val, test: the fixed data splits.
        loss: ``loss(outputs, targets)`` -> scalar tensor to minimise.
        metric: ``metric(outputs, targets)`` -> float to maximise (accuracy by default).
        metric_name: what :attr:`metric` measures, for tables.
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


def _seeded(build: Callable[[], nn.Module]) -> Callable[[int], nn.Module]:
    """Wrap a model builder so that ``make(seed)`` initialises from ``seed`` on a forked RNG."""

    def make(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build()

    return make


def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (1797 images, shipped with the package) as float32 in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits tasks need scikit-learn; install it with: pip install 'unstuck[demo]'"
        ) from error
    digits = load_digits()
    inputs = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    targets = torch.as_tensor(digits.target, dtype=torch.int64)
    return inputs, targets


def digits_mlp(split_seed: int = 0) -> Task:
    """Classify scikit-learn's 8x8 handwritten digits with an MLP 64 -> 64 -> 10 (ReLU).

    Pixels are scaled to [0, 1]; the 1797 images are split 60/20/20 (1078 / 359 / 360) into
    train, validation and test by a permutation seeded with ``split_seed``.

    Example:
        >>> task = digits_mlp()
        >>> len(task.train), len(task.val), len(task.test)
        (1078, 359, 360)
    """
    inputs, targets = _load_digits()
    train, val, test = (
        Split(inputs[idx], targets[idx]) for idx in split_indices(len(targets), seed=split_seed)
    )
    return Task(
        name="digits-mlp",
        description="8x8 digits (scikit-learn), MLP 64-64-10",
        make_model=_seeded(lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))),
        train=train,
        val=val,
        test=test,
    )


TASKS: dict[str, Callable[[], Task]] = {
    "digits-mlp": digits_mlp,
}
"""Registry of built-in tasks: name -> factory that builds the :class:`Task`."""


def get_task(name: str) -> Task:
    """Build the registered task ``name``; the error lists the known names."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}") from None
    return factory()
