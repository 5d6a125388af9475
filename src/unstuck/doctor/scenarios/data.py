"""Small generated data sets for the scenarios (scikit-learn's generators, NumPy; no download)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["circles", "moons", "rotate", "split"]

Pair = tuple[Tensor, Tensor]


def _sklearn():
    try:
        from sklearn import datasets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the doctor's scenarios need scikit-learn; install it with: pip install 'unstuck[demo]'"
        ) from error
    return datasets


def moons(n: int, noise: float, seed: int) -> Pair:
    """Two interleaving half-moons (2 features, 2 classes), standardised-ish (centred)."""
    x, y = _sklearn().make_moons(n_samples=n, noise=noise, random_state=seed)
    x = torch.as_tensor(x, dtype=torch.float32)
    return x - torch.tensor([0.5, 0.25]), torch.as_tensor(y, dtype=torch.int64)


def circles(n: int, noise: float, seed: int) -> Pair:
    """Two concentric circles (2 features, 2 classes): no line separates them."""
    x, y = _sklearn().make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """The 2-D points ``x`` rotated by ``degrees`` about the origin (a distribution shift)."""
    a = math.radians(degrees)
    rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return x @ rotation.T


def split(data: Pair, *sizes: int) -> list[Pair]:
    """Consecutive pieces of ``data`` of the given sizes (the data are already shuffled)."""
    out, start = [], 0
    for size in sizes:
        out.append((data[0][start : start + size], data[1][start : start + size]))
        start += size
    return out
