"""Tabular data for the calibration cases: scikit-learn's generators and the digits set.

Every function is deterministic in ``seed`` and returns float32 inputs and int64 class labels or
float32 ``(n, 1)`` regression targets; the scikit-learn sets are standardised on the whole set
(inputs, and regression targets). :func:`split` cuts a set into train, val (train-dev) and test
pieces.
"""

from __future__ import annotations

import torch
from sklearn import datasets
from torch import Tensor

__all__ = [
    "Pair",
    "blobs",
    "circles",
    "classification",
    "digits",
    "flip_labels",
    "friedman",
    "linear_noisy",
    "moons",
    "regression",
    "split",
    "valley",
]

Pair = tuple[Tensor, Tensor]


def _standard(x, y, classes: bool) -> Pair:
    inputs = torch.as_tensor(x, dtype=torch.float32)
    inputs = (inputs - inputs.mean(0)) / inputs.std(0).clamp_min(1e-6)
    if classes:
        return inputs, torch.as_tensor(y, dtype=torch.int64)
    targets = torch.as_tensor(y, dtype=torch.float32).reshape(len(inputs), -1)
    return inputs, (targets - targets.mean(0)) / targets.std(0)


def moons(n: int, seed: int, noise: float = 0.15) -> Pair:
    """Two interleaving half-moons: 2 features, 2 classes."""
    x, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    return _standard(x, y, True)


def circles(n: int, seed: int, noise: float = 0.05) -> Pair:
    """Two concentric circles (radii 1 and 0.5): no line separates them."""
    x, y = datasets.make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
    return _standard(x, y, True)


def blobs(n: int, seed: int, centers: int = 3, features: int = 2, spread: float = 1.0) -> Pair:
    """Gaussian blobs: ``centers`` classes in ``features`` dimensions."""
    x, y = datasets.make_blobs(n_samples=n, centers=centers, n_features=features,
                               cluster_std=spread, random_state=seed)
    return _standard(x, y, True)


def classification(n: int, seed: int, features: int = 20, informative: int = 5,
                   classes: int = 2, separation: float = 1.0, clusters: int = 2) -> Pair:
    """``make_classification`` (no label noise: ``flip_y=0``; ``clusters`` per class)."""
    x, y = datasets.make_classification(
        n_samples=n, n_features=features, n_informative=informative, n_redundant=2,
        n_classes=classes, n_clusters_per_class=clusters, class_sep=separation, flip_y=0.0,
        random_state=seed)
    return _standard(x, y, True)


def regression(n: int, seed: int, features: int = 10, informative: int = 5,
               noise: float = 0.0) -> Pair:
    """``make_regression``: a linear target plus Gaussian noise of std ``noise`` (raw units)."""
    x, y = datasets.make_regression(n_samples=n, n_features=features, n_informative=informative,
                                    noise=noise, random_state=seed)
    return _standard(x, y, False)


def linear_noisy(n: int, seed: int, features: int = 10, floor: float = 0.3) -> Pair:
    """A linear target of unit variance whose Gaussian noise has variance ``floor`` (the lowest
    mean squared error any model reaches)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    signal = x @ w / w.norm()
    noise = torch.randn(n, 1, generator=generator)
    return x, signal * (1 - floor) ** 0.5 + noise * floor**0.5


def valley(n: int, seed: int) -> Pair:
    """An ill-conditioned linear target: features of scales 10, 1, 1, 0.5 (a steep valley in the
    first weight), ``y = x @ [1, 0.5, -0.5, 0.3]`` (no noise, not standardised)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator) * torch.tensor([10.0, 1.0, 1.0, 0.5])
    return x, x @ torch.tensor([[1.0], [0.5], [-0.5], [0.3]])


def friedman(n: int, seed: int, noise: float = 0.0, features: int = 5) -> Pair:
    """Friedman #1: ``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise``."""
    x, y = datasets.make_friedman1(n_samples=n, n_features=features, noise=noise,
                                   random_state=seed)
    return _standard(x, y, False)


def digits(seed: int) -> Pair:
    """The 8x8 digits (1797 images, 64 features, 10 classes), shuffled with ``seed``."""
    x, y = datasets.load_digits(return_X_y=True)
    inputs, labels = _standard(x, y, True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return inputs[order], labels[order]


def flip_labels(labels: Tensor, fraction: float, seed: int, classes: int = 2) -> Tensor:
    """A copy of ``labels`` where a random ``fraction`` of them is changed to another class."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    flipped = labels.clone()
    chosen = torch.rand(len(labels), generator=generator) < fraction
    shift = torch.randint(1, classes, (len(labels),), generator=generator)
    flipped[chosen] = (labels[chosen] + shift[chosen]) % classes
    return flipped


def split(data: Pair, *sizes: int) -> list[Pair]:
    """Consecutive pieces of ``data`` of the given sizes (the generators shuffle already)."""
    out, start = [], 0
    for size in sizes:
        out.append((data[0][start : start + size], data[1][start : start + size]))
        start += size
    return out
