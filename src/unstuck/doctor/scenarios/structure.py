"""Scenarios about the model's units, the learning rate's size and the noise floor.

Each function trains a small model for real (generated data, one CPU core, seconds) and returns
:func:`unstuck.doctor.examine`'s Diagnosis.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import unstuck
from unstuck.doctor.examine import examine
from unstuck.doctor.scenarios.data import moons, split
from unstuck.doctor.scenarios.fitting import mlp, seeded
from unstuck.doctor.verdicts import Diagnosis

__all__ = ["dead_units", "lr_too_large", "noise_floor", "symmetric_init"]


def _flip(labels: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1000)
    flip = torch.rand(len(labels), generator=generator) < share
    return torch.where(flip, 1 - labels, labels)


def lr_too_large(seed: int, **options: Any) -> Diagnosis:
    """An MLP 2-32-32-2 on two moons with SGD at lr 8 (more than 10 times the working lr): every
    step throws the weights far, and the loss bounces at its start instead of falling."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)
    model = seeded(seed, lambda: mlp(2, 32, 32, 2, act=nn.Tanh))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: torch.optim.SGD(p, lr=8.0), steps=150, batch_size=64,
                   seed=seed, title="learning rate too large: SGD at lr 8", **options)


def noise_floor(seed: int, **options: Any) -> Diagnosis:
    """An MLP 2-32-32-2 on two well-separated moons whose labels are flipped at random for 25%
    of the examples: no model can do better than the label noise, and a 4x wider one does not."""
    data = moons(1000, 0.05, seed)
    data = (data[0], _flip(data[1], 0.25, seed))
    train, val, test = split(data, 600, 200, 200)
    model = seeded(seed, lambda: mlp(2, 32, 32, 2))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=1e-2), steps=400, batch_size=64,
                   seed=seed, title="noise floor: a quarter of the labels flipped", **options)


def dead_units(seed: int, **options: Any) -> Diagnosis:
    """An MLP 2-64-64-2 on two moons whose hidden biases start at -3: most ReLU units are
    negative on every example, pass no gradient and never recover."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)

    def build() -> nn.Sequential:
        model = mlp(2, 64, 64, 2)
        with torch.no_grad():
            for layer in (model[0], model[2]):
                layer.bias.fill_(-3.0)
        return model

    model = seeded(seed, build)
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), steps=150,
                   batch_size=64, seed=seed, title="dead units: ReLU biases started at -3",
                   **options)


def symmetric_init(seed: int, **options: Any) -> Diagnosis:
    """An MLP 2-32-32-2 (tanh) whose weights all start at 0.1: every hidden unit of a layer has
    the same weights, gets the same gradient and stays a copy of the others; the network works
    as if each layer had one unit."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)

    def build() -> nn.Sequential:
        model = mlp(2, 32, 32, 2, act=nn.Tanh)
        with torch.no_grad():
            for layer in (model[0], model[2]):
                layer.weight.fill_(0.1)
                layer.bias.zero_()
        return model

    model = seeded(seed, build)
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=1e-2), steps=150, batch_size=64,
                   seed=seed, title="symmetric init: every weight 0.1", **options)
