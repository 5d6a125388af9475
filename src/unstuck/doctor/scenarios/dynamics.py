"""Scenarios about how the optimiser moves: valleys, critical points, blow-ups, broken numbers.

Each function trains a small model for real (generated data, one CPU core, about a second) and
returns :func:`unstuck.doctor.examine`'s Diagnosis.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import unstuck
from unstuck.doctor.examine import examine
from unstuck.doctor.scenarios.data import moons, split
from unstuck.doctor.scenarios.fitting import mlp, seeded
from unstuck.doctor.verdicts import Diagnosis

__all__ = [
    "adagrad_blowup",
    "divergence",
    "exploding_gradients",
    "local_minimum",
    "nonfinite",
    "oscillation",
    "saddle_point",
]


def _regression(seed: int, n: int, scales: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(scales), generator=generator) * torch.tensor(scales)
    w = torch.randn(len(scales), 1, generator=generator)
    return x, x @ w


def oscillation(seed: int, **options: Any) -> Diagnosis:
    """Huber regression on an ill-conditioned valley (feature scales 10 and 0.5), SGD lr 0.03:
    too large for the steep direction, so the weight bounces across the valley, the gradient
    stays large and the loss stops falling."""
    x, y = _regression(seed, 256, [10.0, 0.5])
    model = seeded(seed, lambda: nn.Linear(2, 1))
    return examine(model, nn.SmoothL1Loss(beta=1.0), (x, y),
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.03), steps=150, seed=seed,
                   title="oscillation: SGD across an ill-conditioned valley", **options)


def saddle_point(seed: int, **options: Any) -> Diagnosis:
    """A two-layer linear network ``w2 w1 x`` initialised at all zeros: the origin is a saddle
    point (zero gradient, Hessian eigenvalues of both signs), so SGD never moves, while the
    automatic reference (a linear model) fits the data."""
    x, y = _regression(seed, 256, [1.0] * 4)
    model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.Linear(8, 1, bias=False))
    for p in model.parameters():
        nn.init.zeros_(p)
    return examine(model, F.mse_loss, (x, y),
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), steps=100,
                   seed=seed, title="saddle point: a linear network started at zero", **options)


class Sine(nn.Module):
    """``sin(frequency * x + phase)``: two parameters, a non-convex loss in the frequency."""

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = nn.Parameter(torch.tensor(frequency))
        self.phase = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.frequency * x + self.phase)


class Fourier(nn.Module):
    """A linear model on fixed features ``sin(kx), cos(kx)``, ``k = 1..5``: convex, easy."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.arange(1, 6, dtype=x.dtype)
        return self.linear(torch.cat([torch.sin(k * x), torch.cos(k * x)], dim=1))


def local_minimum(seed: int, **options: Any) -> Diagnosis:
    """Fit ``sin(3x)`` by ``sin(f x + p)`` from ``f`` near 1 with Adam: the loss in ``f`` has
    many local minima and gradient descent settles in one (positive definite Hessian), while a
    linear model on Fourier features (the reference) fits the data."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(256, 1, generator=generator) * 2 - 1) * math.pi
    y = torch.sin(3 * x)
    start = 1.0 + 0.2 * float(torch.rand((), generator=generator))
    model = Sine(start)
    reference = seeded(seed, Fourier)
    return examine(model, F.mse_loss, (x, y), optimizer=lambda p: unstuck.Adam(p, lr=0.02),
                   steps=200, reference=reference, seed=seed,
                   title="local minimum: fitting a frequency", **options)


def divergence(seed: int, **options: Any) -> Diagnosis:
    """Linear regression with SGD at lr 1.2, above 2 / lambda_max of the MSE: every step
    overshoots, the loss grows geometrically."""
    x, y = _regression(seed, 256, [1.0] * 4)
    model = seeded(seed, lambda: nn.Linear(4, 1))
    return examine(model, F.mse_loss, (x, y), optimizer=lambda p: torch.optim.SGD(p, lr=1.2),
                   steps=40, seed=seed, title="divergence: SGD at lr 1.2", **options)


def nonfinite(seed: int, **options: Any) -> Diagnosis:
    """One training example has a NaN feature (a corrupt record): the first mini-batch holding
    it makes the loss NaN; the Monitor names the first module (``hidden``) with a NaN output
    and the parameters whose gradient went NaN."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)
    inputs = train[0].clone()
    inputs[137, 0] = math.nan
    model = seeded(seed, lambda: nn.Sequential(OrderedDict(
        hidden=nn.Linear(2, 32), act=nn.ReLU(), head=nn.Linear(32, 2))))
    return examine(model, F.cross_entropy, (inputs, train[1]), val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=1e-2), steps=100, batch_size=32,
                   reference=None, seed=seed, title="non-finite: a NaN in the data", **options)


def exploding_gradients(seed: int, **options: Any) -> Diagnosis:
    """MLP regression where 4 of 512 targets are off by a factor 1000 (a unit error): the
    mini-batches holding them give gradient spikes of 100x and more, which knock the weights."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 4, generator=generator)
    y = torch.sin(x[:, :1]) + x[:, 1:2]
    y[torch.randperm(512, generator=generator)[:4]] *= 1000.0
    model = seeded(seed, lambda: mlp(4, 32, 1, act=nn.Tanh))
    return examine(model, F.mse_loss, (x, y),
                   optimizer=lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9), steps=150,
                   batch_size=32, reference=None, seed=seed,
                   title="exploding gradients: outliers in the targets", **options)


def adagrad_blowup(seed: int, **options: Any) -> Diagnosis:
    """Linear regression whose second feature is nearly constant for 400 steps (sorted data: a
    flat stretch of the error surface in its weight), then varies: the lectures' Adagrad has
    let sigma shrink to the tiny gradients, and the first real gradient makes a huge step."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.tensor([[1.0], [2.0]])

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(600):
            x = torch.randn(64, 2, generator=generator)
            if step < 400:
                x[:, 1] *= 1e-3
            yield x, x @ w

    model = seeded(seed, lambda: nn.Linear(2, 1, bias=False))
    return examine(model, F.mse_loss, list(batches()),
                   optimizer=lambda p: unstuck.AdagradRMS(p, lr=0.05), steps=600, seed=seed,
                   title="step blow-up: the lectures' Adagrad after a flat stretch", **options)
