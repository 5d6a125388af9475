"""The digits tasks: scikit-learn's 8x8 handwritten digits, read from its installed data file.

``digits-mlp`` (an MLP 64-64-10) and ``digits-cnn`` (a small conv net) share the same fixed
60/20/20 splits and the default learning rates :data:`DIGITS_LRS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from unstuck.lab.tasks.base import Task, fixed_splits, seeded

__all__ = ["DIGITS_LRS", "digits_cnn", "digits_mlp"]


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
    return _digits_task(
        "digits-mlp", "8x8 digits (scikit-learn), MLP 64-64-10",
        lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
        epochs=40, split_seed=split_seed,
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
    return _digits_task(
        "digits-cnn", "8x8 digits (scikit-learn), conv net 2x(conv3x3, pool) + linear",
        _digits_cnn_model, epochs=15, split_seed=split_seed,
    )


def _digits_task(
    name: str, description: str, model: Callable[[], nn.Module], *, epochs: int, split_seed: int
) -> Task:
    """A digits task: the 60/20/20 splits seeded with ``split_seed``, batch 32, target loss
    0.1, learning rates :data:`DIGITS_LRS`."""
    train, val, test = fixed_splits(*_load_digits(), seed=split_seed)
    return Task(
        name=name, description=description, make_model=seeded(model),
        train=train, val=val, test=test,
        epochs=epochs, batch_size=32, target_loss=0.1, default_lrs=DIGITS_LRS,
    )
