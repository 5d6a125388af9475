"""Built-in training tasks on embedded or generated data: no download, fixed splits.

A :class:`Task` bundles everything needed to train and score a model: a seeded model factory,
train/validation/test splits as tensors, a loss, a metric (always *maximised*), and the training
settings it was tuned for (epochs, batch size, the target loss of "steps to target", default
learning rates per optimizer). Tasks are built by factories registered in :data:`TASKS` under a
short name, so the CLI and the lab look them up by name; :func:`register_task` adds your own.

Built-in tasks (defaults: epochs, batch size):

- ``digits-mlp`` (40, 32): scikit-learn's 8x8 digits, MLP 64-64-10, accuracy.
- ``digits-cnn`` (15, 32): the same splits, a small conv net (two 3x3 conv + pool blocks).
- ``deep-linear`` (40, 32): generated ill-conditioned regression (input covariance with condition
  number 100, a teacher that needs the weak directions) fitted by a 4-layer linear network from a
  small initialisation (the saddle at zero); metric R^2.

Example:
    >>> task = TASKS["digits-mlp"]()
    >>> model = task.make_model(0)
    >>> loss = task.loss(model(task.train.inputs), task.train.targets)

Registering a task of your own (a factory that takes no argument and returns a Task)::

    from unstuck.lab.tasks import Split, Task, register_task

    def my_task() -> Task:
        x, y = ...                                   # tensors, loaded or generated here
        train, val, test = ...                       # three Splits, fixed (seeded) once
        return Task("my-task", "what it is", make_model=seeded_builder, train=train,
                    val=val, test=test, epochs=20, batch_size=64)

    register_task("my-task", my_task)                # now: unstuck.lab.compare.compare("my-task")

Run ``compare(..., jobs>1)`` only on tasks registered when their module is imported: the worker
processes build the task again by its name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TASKS",
    "Split",
    "Task",
    "accuracy",
    "deep_linear",
    "digits_cnn",
    "digits_mlp",
    "get_task",
    "r_squared",
    "register_task",
    "split_indices",
]


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the target class, in ``[0, 1]``.

    Example:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        0.5
    """
    if logits.shape[0] == 0:
        raise ValueError("accuracy needs at least one example, got 0")
    return (logits.argmax(dim=-1) == targets).float().mean().item()


def r_squared(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    r"""Coefficient of determination over all outputs: :math:`R^2 = 1 - \mathrm{SSE}/\mathrm{SST}`.

    .. math:: R^2 = 1 - \frac{\sum_{ij} (\hat y_{ij} - y_{ij})^2}{\sum_{ij} (y_{ij} - \bar y_j)^2}

    with :math:`\bar y_j` the mean of output :math:`j` over the rows. 1 is a perfect fit, 0 is
    as good as predicting the mean, negative is worse; NaN when the outputs are not finite.

    Example:
        >>> r_squared(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [3.0]]))
        0.5
    """
    if targets.shape[0] < 2:
        raise ValueError(f"r_squared needs at least two examples, got {targets.shape[0]}")
    sse = (outputs - targets).pow(2).sum()
    sst = (targets - targets.mean(dim=0)).pow(2).sum()
    return (1.0 - sse / sst).item()


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


def _splits(inputs: torch.Tensor, targets: torch.Tensor, seed: int) -> tuple[Split, Split, Split]:
    """The 60/20/20 train/validation/test splits of ``(inputs, targets)``, shuffled by ``seed``."""
    train, val, test = (
        Split(inputs[idx], targets[idx]) for idx in split_indices(len(targets), seed=seed)
    )
    return train, val, test


def _seeded(build: Callable[[], nn.Module]) -> Callable[[int], nn.Module]:
    """Wrap a model builder so that ``make(seed)`` initialises from ``seed`` on a forked RNG."""

    def make(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build()

    return make


def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (1797 images, shipped with the package) as float32 in [0, 1].

    The data file is read straight from scikit-learn's installed package (``datasets/data/
    digits.csv.gz``, the file ``load_digits`` reads), which skips importing scikit-learn (seconds,
    in every worker process of a comparison); ``load_digits`` is the fallback.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError(
            "the digits tasks need scikit-learn; install it with: pip install 'unstuck[demo]'"
        )
    package = Path(next(iter(spec.submodule_search_locations or ["."])))
    path = package / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        import numpy as np

        data = np.loadtxt(path, delimiter=",", dtype=np.float32)
        pixels, labels = data[:, :-1], data[:, -1]
    else:  # pragma: no cover - another layout of scikit-learn
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, labels = digits.data, digits.target
    inputs = torch.as_tensor(pixels, dtype=torch.float32) / 16.0
    targets = torch.as_tensor(labels, dtype=torch.int64)
    return inputs, targets


DIGITS_LRS: Mapping[str, float] = {
    "sgd": 1.0,
    "momentum": 0.1,
    "nesterov": 0.1,
    "adagrad": 0.3,
    "rmsprop": 0.01,
    "adam": 0.01,
    "adamw": 0.03,
    "radam": 0.03,
    "ranger": 0.03,
    "lars": 3.0,
    "rangerlars": 0.01,
}
"""Default learning rates on the digits tasks: for each optimizer (its other options at their
defaults), the best of the half-decade grid ``10**(k/2)`` by final validation loss of
``digits-mlp`` (mean over seeds 0 and 1; 40 epochs of batch 32, warm-up + cosine). Momentum
methods take about a tenth of plain SGD's lr (their step is about ``lr / (1 - momentum)``); LARS
scales each layer's step by ``0.001 * |w| / |g|``, hence its large lr."""


def digits_mlp(split_seed: int = 0) -> Task:
    """Classify scikit-learn's 8x8 handwritten digits with an MLP 64 -> 64 -> 10 (ReLU).

    Pixels are scaled to [0, 1]; the 1797 images are split 60/20/20 (1078 / 359 / 360) into
    train, validation and test by a permutation seeded with ``split_seed``. Loss: cross-entropy;
    metric: accuracy. Defaults: 40 epochs of batch 32 (34 steps per epoch), target loss 0.1
    (the cross-entropy starts at ln 10 = 2.30), learning rates :data:`DIGITS_LRS`.

    Example:
        >>> task = digits_mlp()
        >>> len(task.train), len(task.val), len(task.test)
        (1078, 359, 360)
    """
    train, val, test = _splits(*_load_digits(), seed=split_seed)
    return Task(
        name="digits-mlp",
        description="8x8 digits (scikit-learn), MLP 64-64-10",
        make_model=_seeded(lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))),
        train=train,
        val=val,
        test=test,
        epochs=40,
        batch_size=32,
        target_loss=0.1,
        default_lrs=DIGITS_LRS,
    )


def _digits_cnn_model() -> nn.Module:
    """1x8x8 -> conv3x3(16) ReLU maxpool -> conv3x3(32) ReLU maxpool -> 32x2x2 -> linear(10)."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
    )


def digits_cnn(split_seed: int = 0) -> Task:
    """Classify the 8x8 digits with a small conv net (the splits of :func:`digits_mlp`).

    The model sees each row of 64 pixels as a 1x8x8 image: two blocks of 3x3 convolution
    (16, then 32 channels, padding 1), ReLU and 2x2 max-pooling, then a linear layer from the
    32x2x2 features to 10 logits (about 7k parameters). Loss: cross-entropy; metric: accuracy.
    Defaults: 15 epochs of batch 32, target loss 0.1, learning rates :data:`DIGITS_LRS`.

    Example:
        >>> task = digits_cnn()
        >>> task.make_model(0)(task.val.inputs[:2]).shape
        torch.Size([2, 10])
    """
    train, val, test = _splits(*_load_digits(), seed=split_seed)
    return Task(
        name="digits-cnn",
        description="8x8 digits (scikit-learn), conv net 2x(conv3x3, pool) + linear",
        make_model=_seeded(_digits_cnn_model),
        train=train,
        val=val,
        test=test,
        epochs=15,
        batch_size=32,
        target_loss=0.1,
        default_lrs=DIGITS_LRS,
    )


DEEP_LINEAR_LRS: Mapping[str, float] = {
    "sgd": 1.0,
    "momentum": 0.3,
    "nesterov": 0.3,
    "adagrad": 0.1,
    "rmsprop": 3e-3,
    "adam": 3e-3,
    "adamw": 3e-3,
    "radam": 0.01,
    "ranger": 0.1,
    "lars": 10.0,
    "rangerlars": 0.01,
}
"""Default learning rates on ``deep-linear``, chosen as :data:`DIGITS_LRS` (best of the
half-decade grid by final validation loss, seeds 0 and 1, 40 epochs of batch 32, warm-up +
cosine). The adaptive methods reach the noise floor over a decade or more of lrs; the smallest
loss is kept."""


def deep_linear(
    split_seed: int = 0,
    *,
    data_seed: int = 0,
    n: int = 2000,
    inputs: int = 32,
    outputs: int = 8,
    condition: float = 1e4,
    noise: float = 0.1,
    depth: int = 4,
    rotate: bool = False,
) -> Task:
    r"""Ill-conditioned linear regression fitted by a deep linear network (generated data).

    Inputs :math:`x = z\,\Lambda^{1/2} Q^\top` with :math:`z \sim N(0, I_d)` and
    :math:`\Lambda = \mathrm{diag}(\lambda_i)`, :math:`\lambda_i` log-spaced from 1 down to
    ``1 / condition``; :math:`Q = I` (axis-aligned: each input coordinate has its own scale, the
    case per-coordinate adaptive methods fix) or, with ``rotate=True``, a random rotation (the
    case they cannot). The loss's Hessian (for a single linear layer, the input covariance
    :math:`Q \Lambda Q^\top`) has condition number ``condition``. The teacher is
    :math:`y = x\, Q \Lambda^{-1/2} A / \sqrt{d} + \sigma \varepsilon` with :math:`A` and
    :math:`\varepsilon` standard normal: every eigen-direction of the inputs carries the same
    share of the signal, so the fit must travel far along the flat directions (weights scaled by
    :math:`\lambda_i^{-1/2}`) where the gradient is small. The model is ``depth`` bias-free
    linear layers ``inputs -> inputs -> ... -> outputs`` with torch's default initialisation,
    whose product starts near zero: the saddle point at the origin of a deep linear network
    (Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks", ICLR 2014), where training plateaus before it takes off.

    Loss: mean squared error; its floor is :math:`\sigma^2` (0.01 by default) and the signal
    variance per output is about 1. Metric: :func:`r_squared` (maximised; about 0.99 at the noise
    floor). Data generated from ``data_seed`` (``n`` rows, split 60/20/20 by ``split_seed``).
    Defaults: 40 epochs of batch 32, target loss 0.05 (five times the noise floor), learning
    rates :data:`DEEP_LINEAR_LRS`. What it shows, with the defaults: the adaptive methods (Adam,
    Adagrad, RMSprop, RAdam, Ranger) reach the noise floor; plain SGD, whose largest stable lr is
    far too small for the flat directions, stops near R^2 = 0.92; momentum and LARS get close.

    Example:
        >>> task = deep_linear()
        >>> len(task.train), task.train.inputs.shape[1], task.train.targets.shape[1]
        (1200, 32, 8)
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if not condition >= 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    generator = torch.Generator().manual_seed(data_seed)
    rotation, _ = torch.linalg.qr(torch.randn(inputs, inputs, generator=generator))
    if not rotate:
        rotation = torch.eye(inputs)
    eigenvalues = torch.logspace(0, -math.log10(condition), inputs)
    z = torch.randn(n, inputs, generator=generator)
    x = (z * eigenvalues.sqrt()) @ rotation.T
    teacher = rotation @ torch.diag(eigenvalues.rsqrt()) @ torch.randn(
        inputs, outputs, generator=generator
    ) / math.sqrt(inputs)
    y = x @ teacher + noise * torch.randn(n, outputs, generator=generator)
    train, val, test = _splits(x, y, seed=split_seed)
    widths = [inputs] * depth + [outputs]

    def build() -> nn.Module:
        return nn.Sequential(
            *(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        )

    return Task(
        name="deep-linear",
        description=f"generated regression, condition number {condition:g}"
        f"{' (rotated)' if rotate else ''}, {depth}-layer linear net",
        make_model=_seeded(build),
        train=train,
        val=val,
        test=test,
        loss=F.mse_loss,
        metric=r_squared,
        metric_name="R^2",
        epochs=40,
        batch_size=32,
        target_loss=5 * noise**2,
        default_lrs=DEEP_LINEAR_LRS,
    )


TASKS: dict[str, Callable[[], Task]] = {
    "digits-mlp": digits_mlp,
    "digits-cnn": digits_cnn,
    "deep-linear": deep_linear,
}
"""Registry of tasks: name -> factory that builds the :class:`Task` (see :func:`register_task`)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def register_task(name: str, factory: Callable[[], Task], *, replace: bool = False) -> None:
    """Add a task to :data:`TASKS` so that ``compare(name)`` and ``unstuck compare --task``
    find it.

    Args:
        name: letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit.
        factory: called with no argument, returns the :class:`Task` (build the data inside it,
            so that listing the tasks costs nothing).
        replace: allow replacing a task already registered under ``name``.

    Raises:
        ValueError: a bad name, or ``name`` taken and ``replace`` False.
        TypeError: ``factory`` is not callable.

    Example:
        >>> register_task("digits-mlp-2", lambda: digits_mlp(split_seed=2))
        >>> get_task("digits-mlp-2").name
        'digits-mlp'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name must be letters, digits, '-', '_' or '.' (starting with a letter or digit), "
            f"got {name!r}"
        )
    if not callable(factory):
        raise TypeError(f"factory must be callable () -> Task, got {factory!r}")
    if name in TASKS and not replace:
        raise ValueError(f"name {name!r} is already registered; pass replace=True to replace it")
    TASKS[name] = factory


def get_task(name: str) -> Task:
    """Build the registered task ``name``; the error lists the known names."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}") from None
    task = factory()
    if not isinstance(task, Task):
        raise TypeError(f"the factory of task {name!r} must return a Task, got {task!r}")
    return task
