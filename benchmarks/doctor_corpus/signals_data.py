"""Data of some development cases: 1-D signals, sequence tasks, token tasks, disc images and
topic-word texts (no download).

Every generator is deterministic in ``seed`` (a ``salt`` tells apart data sets of one case).
"""

from __future__ import annotations

import math

import torch

from .families_common import Pair, generator

__all__ = [
    "adding",
    "discs",
    "first_topic",
    "histogram",
    "pulses",
    "running_max",
    "token_count",
    "topics",
    "waveforms",
]


def waveforms(seed: int, n: int, length: int = 48, noise: float = 0.2, salt: int = 0) -> Pair:
    """Signals ``(n, 1, length)`` of one of 4 kinds: 0 sine, 1 square, 2 sawtooth, 3 a train of
    narrow pulses (on a fifth of each period), of 2-6 periods over the window, random phase and
    amplitude (0.5-1.5), plus Gaussian noise of std ``noise``."""
    gen = generator(seed, 1100 + salt)
    labels = torch.randint(0, 4, (n,), generator=gen)
    cycles = 2 + 4 * torch.rand(n, 1, generator=gen)
    phase = torch.rand(n, 1, generator=gen)
    amplitude = 0.5 + torch.rand(n, 1, generator=gen)
    t = torch.arange(length, dtype=torch.float32).view(1, -1) / length
    u = (cycles * t + phase) % 1.0
    kinds = torch.stack([torch.sin(2 * math.pi * u), torch.where(u < 0.5, 1.0, -1.0),
                         2 * u - 1, torch.where(u < 0.2, 1.0, -0.25)], dim=1)
    wave = kinds[torch.arange(n), labels] * amplitude
    wave = wave + noise * torch.randn(wave.shape, generator=gen)
    return wave.unsqueeze(1), labels


def pulses(seed: int, n: int, length: int = 48, target_noise: float = 0.4, salt: int = 0
           ) -> Pair:
    """Signals ``(n, 1, length)`` holding one Gaussian pulse (width 2 samples) at a random place,
    plus Gaussian noise of std 0.2; the target ``(n, 1)`` is the standardised place plus Gaussian
    noise of std ``target_noise`` (the best mean squared error is ``target_noise**2``)."""
    gen = generator(seed, 1200 + salt)
    place = 4 + (length - 8) * torch.rand(n, 1, generator=gen)
    t = torch.arange(length, dtype=torch.float32).view(1, -1)
    signal = torch.exp(-((t - place) ** 2) / 8.0) + 0.2 * torch.randn(n, length, generator=gen)
    target = (place - length / 2) / ((length - 8) / math.sqrt(12))
    return signal.unsqueeze(1), target + target_noise * torch.randn(n, 1, generator=gen)


def adding(seed: int, n: int, length: int, noise: float = 0.0, scale: float = 1.0,
           salt: int = 0) -> Pair:
    """The adding problem: sequences ``(n, length, 2)``, channel 0 uniform values in ``[0,
    scale)``, channel 1 a marker that is 1 at one place of each half; the target ``(n, 1)`` is
    the sum of the two marked values plus Gaussian noise of std ``noise``."""
    gen = generator(seed, 1300 + salt)
    values = scale * torch.rand(n, length, generator=gen)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, length, (n,), generator=gen)
    marks = torch.zeros(n, length)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    target = (values * marks).sum(1, keepdim=True)
    target = target + noise * torch.randn(target.shape, generator=gen)
    return torch.stack([values, marks], dim=2), target


def running_max(seed: int, n: int, length: int, salt: int = 0) -> Pair:
    """Sequences ``(n, length, 1)`` of N(0, 1) values; the target ``(n, length, 1)`` is the
    running maximum (the largest value so far at every step)."""
    x = torch.randn(n, length, 1, generator=generator(seed, 1400 + salt))
    return x, x.cummax(dim=1).values


def token_count(seed: int, n: int, length: int = 12, vocabulary: int = 8, flip: float = 0.0,
                salt: int = 0) -> Pair:
    """Token sequences ``(n, length)`` over ``vocabulary`` kinds; the class is how many times
    token 0 occurs, capped at 4 (5 classes). ``flip``: that fraction of the labels is replaced by
    a uniformly random class (so the best cross-entropy is known)."""
    gen = generator(seed, 1500 + salt)
    tokens = torch.randint(0, vocabulary, (n, length), generator=gen)
    labels = (tokens == 0).sum(1).clamp(max=4)
    if flip:
        replace = torch.rand(n, generator=gen) < flip
        labels = torch.where(replace, torch.randint(0, 5, (n,), generator=gen), labels)
    return tokens, labels


def histogram(seed: int, n: int, length: int = 10, vocabulary: int = 6, salt: int = 0) -> Pair:
    """Token sequences ``(n, length)``; the target ``(n, length)`` at every place is how many
    other places hold the same token (0 to ``length - 1``: the "histogram" task)."""
    tokens = torch.randint(0, vocabulary, (n, length), generator=generator(seed, 1600 + salt))
    same = (tokens.unsqueeze(2) == tokens.unsqueeze(1)).sum(2) - 1
    return tokens, same


def discs(seed: int, n: int, size: int = 12, noise: float = 0.1, brightness: float = 1.0,
          target: str = "clean", salt: int = 0) -> Pair:
    """Images ``(n, 1, size, size)`` of one bright disc (radius 1.5-4, soft edge, random place)
    plus Gaussian pixel noise of std ``noise``. The target is the clean image (``"clean"``, a
    denoising autoencoder's), the disc's area in pixels (``"area"``, ``(n, 1)``, 7 to 50) or its
    standardised radius (``"radius"``, ``(n, 1)``) or its size class (``"size"``: 0 small, 1
    medium, 2 large radius)."""
    gen = generator(seed, 1700 + salt)
    radius = 1.5 + 2.5 * torch.rand(n, generator=gen)
    centre = radius.view(n, 1) + (size - 2 * radius.view(n, 1)) * torch.rand(n, 2, generator=gen)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dy = grid.view(1, size, 1) - centre[:, 0].view(n, 1, 1)
    dx = grid.view(1, 1, size) - centre[:, 1].view(n, 1, 1)
    distance = (dx**2 + dy**2).sqrt()
    clean = brightness * torch.sigmoid(3.0 * (radius.view(n, 1, 1) - distance)).unsqueeze(1)
    noisy = clean + noise * torch.randn(clean.shape, generator=gen)
    if target == "clean":
        return noisy, clean
    if target == "area":
        return noisy, (math.pi * radius**2).unsqueeze(1)
    if target == "size":
        return noisy, ((radius - 1.5) / (2.5 / 3)).long().clamp(max=2)
    if target == "radius":
        return noisy, ((radius - 2.75) / (2.5 / math.sqrt(12))).unsqueeze(1)
    raise ValueError(f"target must be 'clean', 'area', 'radius' or 'size', got {target!r}")


def topics(seed: int, n: int, vocabulary: int = 300, length: int = 20, kinds: int = 3,
           cue: int = 3, flip: float = 0.0, salt: int = 0) -> Pair:
    """Token sequences ``(n, length)`` about one of ``kinds`` topics: words ``30 k`` to ``30 k +
    29`` belong to topic ``k``, the others are shared. Each sequence holds ``cue`` words of its
    topic at random places among shared words. ``flip``: that fraction of the labels is replaced
    by a uniformly random topic (the best cross-entropy is then known)."""
    gen = generator(seed, 1800 + salt)
    labels = torch.randint(0, kinds, (n,), generator=gen)
    tokens = torch.randint(30 * kinds, vocabulary, (n, length), generator=gen)
    cues = torch.randint(0, 30, (n, cue), generator=gen) + 30 * labels.view(n, 1)
    places = torch.rand(n, length, generator=gen).argsort(dim=1)[:, :cue]
    tokens.scatter_(1, places, cues)
    if flip:
        replace = torch.rand(n, generator=gen) < flip
        labels = torch.where(replace, torch.randint(0, kinds, (n,), generator=gen), labels)
    return tokens, labels


def first_topic(seed: int, n: int, vocabulary: int = 300, length: int = 20, kinds: int = 3,
                salt: int = 0) -> Pair:
    """Token sequences ``(n, length)`` holding one word of each of two different topics (words
    ``30 k`` to ``30 k + 29`` belong to topic ``k``) at random places among shared words; the
    class is the topic of the word that comes first (word order decides: a bag of words can at
    best guess between the two)."""
    gen = generator(seed, 1900 + salt)
    tokens = torch.randint(30 * kinds, vocabulary, (n, length), generator=gen)
    first = torch.randint(0, kinds, (n,), generator=gen)
    second = (first + torch.randint(1, kinds, (n,), generator=gen)) % kinds
    places = torch.rand(n, length, generator=gen).argsort(dim=1)[:, :2].sort(dim=1).values
    words = torch.stack([first, second], 1) * 30 + torch.randint(0, 30, (n, 2), generator=gen)
    tokens.scatter_(1, places, words)
    return tokens, first
