"""Scenarios about what the model can fit and how it generalises (guide steps 1 and 2).

Each function trains a small model for real (generated data, one CPU core, about a second) and
returns :func:`unstuck.doctor.examine`'s Diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import unstuck
from unstuck.doctor.examine import examine
from unstuck.doctor.scenarios.data import circles, moons, rotate, split
from unstuck.doctor.verdicts import Diagnosis

__all__ = [
    "healthy",
    "layer_ratio_spread",
    "lr_too_small",
    "mismatch",
    "model_bias",
    "needs_warmup",
    "optimization_failure",
    "overfitting",
]


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with the global RNG seeded by ``seed`` (and restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mlp(*sizes: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Linear, act, Linear, act, ..., Linear`` through ``sizes``."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def healthy(seed: int, **options: Any) -> Diagnosis:
    """An MLP 2-32-32-2 on two moons with Adam (lr 1e-2), mini-batches of 64: trains well."""
    train, val, test = split(moons(700, 0.15, seed), 400, 150, 150)
    model = seeded(seed, lambda: mlp(2, 32, 32, 2))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=1e-2), steps=150, batch_size=64,
                   seed=seed, title="healthy: an MLP on two moons", **options)


def model_bias(seed: int, **options: Any) -> Diagnosis:
    """A linear classifier on two concentric circles: no line separates them, so the training
    loss stays at ln 2 however well it is optimised (the Hessian says: a minimum)."""
    train, val, test = split(circles(700, 0.05, seed), 400, 150, 150)
    model = seeded(seed, lambda: nn.Sequential(nn.Linear(2, 2)))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=5e-2), steps=150, seed=seed,
                   title="model bias: a linear classifier on concentric circles", **options)


def optimization_failure(seed: int, **options: Any) -> Diagnosis:
    """A deep plain sigmoid MLP (7 hidden layers) with SGD on two moons stays at ln 2, while the
    automatic reference (one hidden layer, same optimizer) learns: the deeper one could represent
    it, so its optimisation fails (vanishing gradients through the sigmoids)."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)
    model = seeded(seed, lambda: mlp(2, *[32] * 7, 2, act=nn.Sigmoid))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.5), steps=200, seed=seed,
                   title="optimisation failure: a deep sigmoid MLP", **options)


def overfitting(seed: int, **options: Any) -> Diagnosis:
    """A large MLP (2-128-128-2) on 30 noisy training examples: it memorises them (training loss
    near 0) while the validation loss grows."""
    train, val, test = split(moons(330, 0.35, seed), 30, 150, 150)
    model = seeded(seed, lambda: mlp(2, 128, 128, 2))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=1e-2), steps=200, seed=seed,
                   title="overfitting: a large MLP on 30 examples", **options)


def mismatch(seed: int, **options: Any) -> Diagnosis:
    """Train and train-dev from one distribution, test rotated by 60 degrees: the train-dev loss
    is as low as the training loss, the test loss is large."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)
    test = (rotate(test[0], 60.0), test[1])
    model = seeded(seed, lambda: mlp(2, 32, 32, 2))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: unstuck.Adam(p, lr=1e-2), steps=150, batch_size=64,
                   seed=seed, title="mismatch: the test data are rotated", **options)


def lr_too_small(seed: int, **options: Any) -> Diagnosis:
    """SGD with lr 2e-4 on two moons: the loss falls at a steady, tiny rate."""
    train, val, test = split(moons(700, 0.1, seed), 400, 150, 150)
    model = seeded(seed, lambda: mlp(2, 32, 32, 2))
    return examine(model, F.cross_entropy, train, val, test,
                   optimizer=lambda p: torch.optim.SGD(p, lr=2e-4), steps=150, seed=seed,
                   title="learning rate too small: SGD at lr 2e-4", **options)


class BagOfWords(nn.Module):
    """Mean of token embeddings (``nn.EmbeddingBag``, initialised N(0, 1)) -> MLP -> 2 classes."""

    def __init__(self, vocabulary: int, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocabulary, width, mode="mean")
        self.mlp = mlp(width, width, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(tokens))


def layer_ratio_spread(seed: int, **options: Any) -> Diagnosis:
    """A bag-of-words classifier with SGD: the embedding (3000 x 32, N(0, 1) as nn.Embedding
    initialises it, sparse gradients) moves by ~1e-5 of its norm per step, the linear layers by
    ~1e-2: one learning rate cannot suit both (the LARS observation)."""
    generator = torch.Generator().manual_seed(seed)
    vocabulary = 3000
    tokens = torch.randint(0, vocabulary, (1000, 12), generator=generator)
    score = torch.randn(vocabulary, generator=generator)
    labels = (score[tokens].mean(1) > 0).long()
    train, val = (tokens[:800], labels[:800]), (tokens[800:], labels[800:])
    model = seeded(seed, lambda: BagOfWords(vocabulary))
    return examine(model, F.cross_entropy, train, val,
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), steps=150,
                   batch_size=64, seed=seed, title="layer ratio spread: embedding and MLP",
                   **options)


class PostLNTransformer(nn.Module):
    """A 2-layer post-LN Transformer encoder (d 32, 4 heads) over 8 tokens of 16 kinds."""

    def __init__(self, vocabulary: int = 16, length: int = 8, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(0.1 * torch.randn(length, width))
        layer = nn.TransformerEncoderLayer(width, 4, 64, dropout=0.0, batch_first=True,
                                           norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.position)).transpose(1, 2)


def needs_warmup(seed: int, **options: Any) -> Diagnosis:
    """A post-LN Transformer learning to reverse 8 tokens, Adam at lr 0.05 without warm-up: the
    first steps change the weights by ~30% each, the loss jumps up, then sticks near ln 16; the
    same run with a linear warm-up learns the task."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 16, (1024, 8), generator=generator)
    data = (tokens, tokens.flip(1))
    train, val = split(data, 768, 256)
    model = seeded(seed, PostLNTransformer)
    return examine(model, F.cross_entropy, train, val,
                   optimizer=lambda p: unstuck.Adam(p, lr=0.05), steps=200, batch_size=32,
                   seed=seed, title="needs warm-up: a post-LN Transformer with Adam at lr 0.05",
                   **options)
