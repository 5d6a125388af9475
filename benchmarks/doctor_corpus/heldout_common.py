"""Shared pieces of the held-out cases: seeding, the 8x8 digits, and plain training runs.

:func:`train` repeats what :func:`unstuck.doctor.examine` does to a case's keyword arguments
(the same mini-batches in the same order, the same optimizer recipe, scheduler and clipping)
without any of the doctor's machinery, so a proof can rerun a case with one thing changed
(the learning rate, the model, the data) and compare.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Pair",
    "Run",
    "best_scale",
    "digits",
    "generator",
    "loss_of",
    "lr_sweep",
    "seeded",
    "split",
    "train",
]

Pair = tuple[Tensor, Tensor]


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with the global RNG seeded by ``seed`` (and restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def generator(seed: int, salt: int = 0) -> torch.Generator:
    """A torch Generator for a case's data: distinct per ``seed`` and per ``salt``."""
    return torch.Generator().manual_seed(1000 * seed + salt)


def split(data: Pair, *sizes: int) -> list[Pair]:
    """Consecutive pieces of ``data`` of the given sizes (the data are already shuffled)."""
    out, start = [], 0
    for size in sizes:
        out.append((data[0][start : start + size], data[1][start : start + size]))
        start += size
    return out


@functools.lru_cache(maxsize=1)
def _digits() -> Pair:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


def digits(seed: int) -> Pair:
    """The 1797 8x8 digits of scikit-learn (shipped with it), pixels in [0, 1], shape
    ``(n, 1, 8, 8)``, shuffled by ``seed``."""
    images, labels = _digits()
    order = torch.randperm(len(labels), generator=generator(seed, 7))
    return images[order], labels[order]


@dataclass
class Run:
    """What a plain training run measured.

    Attributes:
        losses: the training loss of every step (stops after 3 non-finite ones in a row).
        val: the final val loss (eval mode), NaN when there are no val data.
        test: the final test loss, NaN when there are no test data.
        grad_norms: the total gradient norm of every step, before any clipping.
        model: the trained model.
    """

    losses: list[float]
    val: float
    test: float
    grad_norms: list[float] = field(default_factory=list)
    model: nn.Module | None = None

    @property
    def finite(self) -> bool:
        """Every training loss was finite (and all of the steps ran)."""
        return all(math.isfinite(v) for v in self.losses)

    @property
    def start(self) -> float:
        """The first training loss."""
        return self.losses[0]

    def end(self, last: int = 10) -> float:
        """The mean training loss of the ``last`` steps (inf when any is not finite)."""
        tail = self.losses[-last:]
        return sum(tail) / len(tail) if all(math.isfinite(v) for v in tail) else math.inf

    @property
    def first_nonfinite(self) -> int:
        """The first step whose loss was not finite, or -1."""
        return next((i for i, v in enumerate(self.losses) if not math.isfinite(v)), -1)


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(t, Tensor) for t in data
    ) and data[0].shape[:1] == data[1].shape[:1]


def _batches(data: Any, batch_size: int | None, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless batches, in the order :func:`unstuck.doctor.examine` draws them."""
    if _is_pair(data):
        inputs, targets = data
        n = inputs.shape[0]
        if batch_size is None or batch_size >= n:
            while True:
                yield inputs, targets
        gen = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=gen)
            for start in range(0, n - batch_size + 1, batch_size):
                index = order[start : start + batch_size]
                yield inputs[index], targets[index]
    assert isinstance(data, Iterable)
    while True:
        for inputs, targets in data:
            yield inputs, targets


def loss_of(model: nn.Module, criterion: Callable, data: Any) -> float:
    """The mean loss of ``model`` on ``data`` (a pair or batches) in eval mode; NaN for None."""
    if data is None:
        return math.nan
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            if _is_pair(data):
                return float(criterion(model(data[0]), data[1]))
            total, count = 0.0, 0
            for inputs, targets in data:
                total += float(criterion(model(inputs), targets)) * len(targets)
                count += len(targets)
            return total / count
    finally:
        model.train(was)


def train(
    kwargs: dict[str, Any],
    *,
    steps: int | None = None,
    lr_scale: float = 1.0,
    model: nn.Module | None = None,
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
    train_data: Any = None,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None | str = "same",
    clip_grad_norm: float | None | str = "same",
) -> Run:
    """Train a case's keyword arguments as :func:`unstuck.doctor.examine` would, without it.

    Anything given replaces the case's own (``scheduler=None`` / ``clip_grad_norm=None`` drop
    the case's); ``lr_scale`` multiplies every group's learning rate. The model is deep-copied
    first, so ``kwargs`` can be trained again.
    """
    net = copy.deepcopy(model if model is not None else kwargs["model"])
    factory = optimizer or kwargs.get("optimizer")
    opt = factory(net.parameters()) if factory is not None else torch.optim.Adam(
        net.parameters(), lr=1e-3)
    for group in opt.param_groups:
        group["lr"] *= lr_scale
    make_schedule = kwargs.get("scheduler") if scheduler == "same" else scheduler
    schedule = make_schedule(opt) if make_schedule is not None else None
    clip = kwargs.get("clip_grad_norm") if clip_grad_norm == "same" else clip_grad_norm
    criterion = kwargs["criterion"]
    seed = kwargs.get("seed", 0)
    data = train_data if train_data is not None else kwargs["train_data"]
    batches = _batches(data, kwargs.get("batch_size"), seed)
    params = [p for p in net.parameters() if p.requires_grad]
    losses: list[float] = []
    norms: list[float] = []
    bad = 0
    net.train()
    for _ in range(steps or kwargs.get("steps", 200)):
        inputs, targets = next(batches)
        opt.zero_grad()
        loss = criterion(net(inputs), targets)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0
        norms.append(norm)
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if schedule is not None:
            schedule.step()
        value = float(loss.detach())
        losses.append(value)
        bad = bad + 1 if not math.isfinite(value) else 0
        if bad >= 3:
            break
    return Run(losses, loss_of(net, criterion, kwargs.get("val_data")),
               loss_of(net, criterion, kwargs.get("test_data")), norms, net)


def lr_sweep(
    build: Callable[[int], dict[str, Any]],
    seed: int,
    scales: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0),
    **options: Any,
) -> dict[float, Run]:
    """:func:`train` a fresh ``build(seed)`` at each learning-rate scale."""
    return {scale: train(build(seed), lr_scale=scale, **options) for scale in scales}


def best_scale(runs: dict[float, Run], on: str = "val") -> float:
    """The scale whose run has the lowest final ``on`` loss (``"val"`` or ``"train"``);
    a run that did not stay finite never wins."""

    def score(run: Run) -> float:
        value = run.val if on == "val" else run.end()
        return value if run.finite and math.isfinite(value) else math.inf

    return min(runs, key=lambda scale: score(runs[scale]))
