"""Tasks on generated data: ``deep-linear``, an ill-conditioned regression for a deep linear net.

The data are drawn from a seeded generator each time the task is built (no file, no download).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from unstuck.lab.tasks.base import Task, fixed_splits, seeded
from unstuck.lab.tasks.metrics import r_squared

__all__ = ["DEEP_LINEAR_LRS", "deep_linear"]


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
    train, val, test = fixed_splits(x, y, seed=split_seed)
    widths = [inputs] * depth + [outputs]

    def build() -> nn.Module:
        return nn.Sequential(
            *(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        )

    return Task(
        name="deep-linear",
        description=f"generated regression, condition number {condition:g}"
        f"{' (rotated)' if rotate else ''}, {depth}-layer linear net",
        make_model=seeded(build),
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
