"""Generated data of the development cases: small images, sequences and token tasks (no download).

Every generator is deterministic in ``seed`` (a ``salt`` tells apart data sets of one case).
"""

from __future__ import annotations

import math

import torch

from .families_common import Pair, generator

__all__ = [
    "bag_of_words",
    "bars",
    "blobs",
    "majority",
    "parity",
    "recall",
    "shapes",
    "sine",
    "sums",
    "token_task",
]


def shapes(seed: int, n: int, size: int = 10, noise: float = 0.3, salt: int = 0) -> Pair:
    """Images ``(n, 1, size, size)`` of one of 4 shapes at a random place, plus Gaussian pixel
    noise: 0 a horizontal bar, 1 a vertical bar, 2 a diagonal, 3 a hollow square (all 4x4)."""
    gen = generator(seed, 100 + salt)
    templates = torch.zeros(4, 4, 4)
    templates[0, 1, :] = 1.0
    templates[1, :, 2] = 1.0
    templates[2] = torch.eye(4)
    templates[3] = 1.0
    templates[3, 1:3, 1:3] = 0.0
    labels = torch.randint(0, 4, (n,), generator=gen)
    rows = torch.randint(0, size - 3, (n,), generator=gen).tolist()
    cols = torch.randint(0, size - 3, (n,), generator=gen).tolist()
    images = noise * torch.randn(n, 1, size, size, generator=gen)
    for i, (label, r, c) in enumerate(zip(labels.tolist(), rows, cols)):
        images[i, 0, r : r + 4, c : c + 4] += templates[label]
    return images, labels


def blobs(seed: int, n: int, size: int = 8, noise: float = 0.1, salt: int = 0) -> Pair:
    """Images ``(n, 1, size, size)`` of a Gaussian blob (width 1 pixel) centred at a random point
    of one of the 4 quadrants; the label is the quadrant."""
    gen = generator(seed, 200 + salt)
    labels = torch.randint(0, 4, (n,), generator=gen)
    half = size / 2
    centre = torch.rand(n, 2, generator=gen) * (half - 1) + 0.5
    centre = centre + half * torch.stack([labels // 2, labels % 2], dim=1).float()
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dy = grid.view(1, size, 1) - centre[:, 0].view(n, 1, 1)
    dx = grid.view(1, 1, size) - centre[:, 1].view(n, 1, 1)
    images = torch.exp(-(dx**2 + dy**2) / 2.0).unsqueeze(1)
    return images + noise * torch.randn(images.shape, generator=gen), labels


def bars(seed: int, n: int, size: int = 8, target_noise: float = 0.5, salt: int = 0) -> Pair:
    """Regression images: a vertical bar (random length, column ``c``) plus pixel noise 0.1; the
    target is the standardised column plus Gaussian noise of std ``target_noise`` (so the best
    possible mean squared error is ``target_noise**2``)."""
    gen = generator(seed, 300 + salt)
    column = torch.randint(0, size, (n,), generator=gen)
    top = torch.randint(0, size // 2, (n,), generator=gen)
    length = torch.randint(2, size // 2 + 1, (n,), generator=gen)
    rows = torch.arange(size).view(1, size)
    on_rows = (rows >= top.view(n, 1)) & (rows < (top + length).view(n, 1))
    on_cols = torch.nn.functional.one_hot(column, size).bool()
    images = (on_rows.unsqueeze(2) & on_cols.unsqueeze(1)).float().unsqueeze(1)
    images = images + 0.1 * torch.randn(images.shape, generator=gen)
    spread = math.sqrt((size**2 - 1) / 12)
    target = (column.float() - (size - 1) / 2) / spread
    target = target + target_noise * torch.randn(n, generator=gen)
    return images, target.unsqueeze(1)


def parity(seed: int, n: int, length: int, salt: int = 0) -> Pair:
    """Sequences ``(n, length, 1)`` of +-1 bits; the target is the running parity of the bits
    (one class per position, ``(n, length)``)."""
    bits = torch.randint(0, 2, (n, length), generator=generator(seed, 400 + salt))
    return (2.0 * bits - 1).unsqueeze(2), bits.cumsum(1) % 2


def sums(seed: int, n: int, length: int, last: int, noise: float = 0.0, salt: int = 0) -> Pair:
    """Sequences ``(n, length, 1)`` of N(0, 1) values; the target is the sum of the ``last``
    values divided by their square root (variance 1), plus N(0, ``noise``**2)."""
    gen = generator(seed, 500 + salt)
    x = torch.randn(n, length, 1, generator=gen)
    y = x[:, -last:, 0].sum(1, keepdim=True) / math.sqrt(last)
    return x, y + noise * torch.randn(y.shape, generator=gen)


def majority(seed: int, n: int, length: int, salt: int = 0) -> Pair:
    """Sequences ``(n, length, 1)`` of +-1 values (``length`` odd); the class is 1 where the
    +1s are the majority."""
    bits = 2.0 * torch.randint(0, 2, (n, length, 1), generator=generator(seed, 650 + salt)) - 1
    return bits, (bits.sum((1, 2)) > 0).long()


def recall(seed: int, n: int, length: int, first: int, salt: int = 0) -> Pair:
    """Sequences ``(n, length, 1)`` of N(0, 1) values; the target is the vector of the ``first``
    values (to be recalled at the end of the sequence)."""
    x = torch.randn(n, length, 1, generator=generator(seed, 600 + salt))
    return x, x[:, :first, 0].clone()


def sine(seed: int, n: int, length: int, noise: float = 0.0, salt: int = 0) -> Pair:
    """Windows ``(n, length, 1)`` of sines of random frequency (0.2-0.6 rad per step), phase and
    amplitude (0.5-1.5); the target is the next value, plus N(0, ``noise``**2)."""
    gen = generator(seed, 700 + salt)
    frequency = 0.2 + 0.4 * torch.rand(n, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen)
    amplitude = 0.5 + torch.rand(n, 1, generator=gen)
    t = torch.arange(length + 1, dtype=torch.float32).view(1, -1)
    wave = amplitude * torch.sin(frequency * t + phase)
    target = wave[:, -1:] + noise * torch.randn(n, 1, generator=gen)
    return wave[:, :-1].unsqueeze(2), target


def token_task(
    seed: int, n: int, task: str, length: int = 8, vocabulary: int = 16, low: int = 0,
    high: int | None = None, salt: int = 0,
) -> Pair:
    """Token sequences ``(n, length)`` drawn from ``[low, high)`` (default: the whole
    vocabulary); the target ``(n, length)`` is the sequence reversed (``"reverse"``), sorted
    (``"sort"``) or the same (``"copy"``)."""
    tokens = torch.randint(low, vocabulary if high is None else high, (n, length),
                           generator=generator(seed, 800 + salt))
    if task == "reverse":
        return tokens, tokens.flip(1)
    if task == "sort":
        return tokens, tokens.sort(dim=1).values
    if task == "copy":
        return tokens, tokens.clone()
    raise ValueError(f"task must be 'reverse', 'sort' or 'copy', got {task!r}")


def bag_of_words(
    seed: int, n: int, vocabulary: int = 400, length: int = 16, cue: int = 4,
    flip: float = 0.0, regression: bool = False, salt: int = 0,
) -> Pair:
    """Token sequences ``(n, length)`` of a 2-class 'sentiment' task.

    The first 40 words of the vocabulary are positive cues, the next 40 negative cues, the rest
    neutral. Each sequence holds ``cue`` cues of its class at random places among neutral words,
    so a bag-of-words model can be exact. ``flip`` of the labels are flipped at random (known
    label noise: the best cross-entropy is then the entropy of ``flip``). ``regression``: the
    target is instead the mean of a fixed random score per word, standardised (float ``(n, 1)``).
    """
    gen = generator(seed, 900 + salt)
    labels = torch.randint(0, 2, (n,), generator=gen)
    tokens = torch.randint(80, vocabulary, (n, length), generator=gen)
    cues = torch.randint(0, 40, (n, cue), generator=gen) + 40 * (1 - labels).view(n, 1)
    places = torch.rand(n, length, generator=gen).argsort(dim=1)[:, :cue]
    tokens.scatter_(1, places, cues)
    if regression:
        score = torch.randn(vocabulary, generator=gen)
        target = score[tokens].mean(1, keepdim=True) * math.sqrt(length)
        return tokens, target
    flipped = torch.rand(n, generator=gen) < flip
    return tokens, torch.where(flipped, 1 - labels, labels)
