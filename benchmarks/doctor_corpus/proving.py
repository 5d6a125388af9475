"""Plain trainings for the corpus's proofs: no doctor involved.

:func:`fit` trains a copy of a case's model the way :func:`unstuck.doctor.examine` would (same
optimizer factory, batch order, steps, scheduler and clipping) and measures the end losses;
:func:`lr_sweep` and :func:`best_scale` compare learning rates; the ``prove_*`` functions are
the proofs several cases share.

Example::

    kwargs = case.build(0)
    slow = fit(kwargs)
    fast = fit(kwargs, lr_scale=10)
    holds = fast.val_loss_end < slow.val_loss_end
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .base import Proof

__all__ = [
    "Fit",
    "batches",
    "best_scale",
    "evaluate",
    "fit",
    "lr_sweep",
    "prove_better",
    "prove_healthy",
    "prove_noise_floor",
    "seeded",
    "tolerance",
]

_NONFINITE_STOP = 3
"""A training stops after this many consecutive non-finite losses (as examine does)."""


@dataclass
class Fit:
    """What a plain training measured.

    Attributes:
        train_loss_end: the median of the last 10% of the step losses.
        val_loss_end: the val loss after training (NaN without val data).
        test_loss_end: the test loss after training (NaN without test data).
        diverged: the loss went non-finite, or ended above 10x the first loss.
        losses: every step's training loss.
        grad_norms: every step's gradient norm (before any clipping).
        update_cosine: the median cosine between consecutive updates over the second half
            (near -1: each step undoes the previous one).
        model: the trained model.
    """

    train_loss_end: float
    val_loss_end: float
    test_loss_end: float
    diverged: bool
    losses: list[float]
    grad_norms: list[float]
    update_cosine: float
    model: nn.Module = field(repr=False)

    @property
    def first_loss(self) -> float:
        """The first step's training loss."""
        return self.losses[0]

    @property
    def spike(self) -> float:
        """The largest gradient norm over the median one."""
        finite = [g for g in self.grad_norms if math.isfinite(g)]
        return max(finite) / max(statistics.median(finite), 1e-30) if finite else math.nan

    @property
    def score(self) -> float:
        """The val loss where there are val data, else the end train loss (inf if diverged)."""
        value = self.val_loss_end if not math.isnan(self.val_loss_end) else self.train_loss_end
        return math.inf if self.diverged or not math.isfinite(value) else value


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with the global RNG seeded by ``seed`` (and restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _is_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list)) and len(data) == 2
        and all(isinstance(t, Tensor) for t in data) and data[0].shape[:1] == data[1].shape[:1]
    )


def batches(data: Any, batch_size: int | None, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless training batches in examine's order.

    A pair gives shuffled mini-batches (``torch.Generator().manual_seed(seed)``, reshuffled each
    epoch, a last partial batch dropped), or the whole pair every step when ``batch_size`` is None
    or not smaller than the data; an iterable of batches is cycled.
    """
    if _is_pair(data):
        inputs, targets = data
        n = inputs.shape[0]
        if batch_size is None or batch_size >= n:
            while True:
                yield inputs, targets
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                index = order[start : start + batch_size]
                yield inputs[index], targets[index]
    assert isinstance(data, Iterable), "train_data must be a pair or an iterable of batches"
    while True:
        for batch in data:
            yield batch[0], batch[1]


def evaluate(model: nn.Module, criterion: Callable, data: Any) -> float:
    """The mean loss on ``data`` (a pair, or batches weighted by size) in eval mode; NaN if None."""
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
                n = len(targets)
                total += float(criterion(model(inputs), targets)) * n
                count += n
            return total / count if count else math.nan
    finally:
        model.train(was)


def fit(
    kwargs: dict[str, Any],
    *,
    steps: int | None = None,
    lr_scale: float = 1.0,
    model: nn.Module | None = None,
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
) -> Fit:
    """Train a copy of ``kwargs["model"]`` (or of ``model``) as examine would on ``kwargs``.

    Args:
        kwargs: a case's ``build(seed)``: model, criterion, train_data, val_data, test_data,
            optimizer (a factory ``params -> Optimizer``), steps, batch_size, seed, and
            optionally scheduler (``optimizer -> LRScheduler``, stepped every step) and
            clip_grad_norm.
        steps: the steps (default ``kwargs["steps"]``).
        lr_scale: the lr of every parameter group is multiplied by this.
        model: train (a copy of) this model instead.
        optimizer: use this factory instead of ``kwargs["optimizer"]``.
    """
    criterion = kwargs["criterion"]
    seed = kwargs.get("seed", 0)
    net = copy.deepcopy(model if model is not None else kwargs["model"])
    factory = optimizer or kwargs.get("optimizer")
    if factory is None:
        opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    else:
        opt = factory(net.parameters())
    for group in opt.param_groups:
        group["lr"] = group["lr"] * lr_scale
    schedule = kwargs.get("scheduler")
    scheduler = schedule(opt) if schedule is not None else None
    clip = kwargs.get("clip_grad_norm")
    data = batches(kwargs["train_data"], kwargs.get("batch_size"), seed)
    losses: list[float] = []
    norms: list[float] = []
    cosines: list[float] = []
    before = torch.cat([p.detach().flatten() for p in net.parameters()])
    previous = None
    bad = 0
    net.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps or kwargs.get("steps", 200)):
            inputs, targets = next(data)
            opt.zero_grad()
            loss = criterion(net(inputs), targets)
            loss.backward()
            grads = [p.grad.flatten() for p in net.parameters() if p.grad is not None]
            norms.append(float(torch.cat(grads).norm()) if grads else 0.0)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
            after = torch.cat([p.detach().flatten() for p in net.parameters()])
            update = after - before
            if previous is not None:
                cosines.append(float(torch.cosine_similarity(update, previous, dim=0)))
            previous = update
            before = after
            bad = bad + 1 if not math.isfinite(losses[-1]) else 0
            if bad >= _NONFINITE_STOP:
                break
    tail = losses[-max(1, len(losses) // 10) :]
    end = statistics.median(tail) if all(math.isfinite(v) for v in tail) else math.nan
    diverged = not math.isfinite(end) or (math.isfinite(losses[0]) and end > 10 * losses[0])
    half = [c for c in cosines[len(cosines) // 2 :] if math.isfinite(c)]
    return Fit(end, evaluate(net, criterion, kwargs.get("val_data")),
               evaluate(net, criterion, kwargs.get("test_data")), diverged, losses, norms,
               statistics.median(half) if half else math.nan, net)


def lr_sweep(
    kwargs: dict[str, Any], scales: Sequence[float] = (0.1, 0.3, 1, 3, 10), **options: Any
) -> dict[float, Fit]:
    """:func:`fit` at every lr scale (``options`` go to :func:`fit`)."""
    return {scale: fit(kwargs, lr_scale=scale, **options) for scale in scales}


def best_scale(sweep: dict[float, Fit]) -> float:
    """The scale of the sweep's best fit: lowest val loss (train loss without val data)."""
    return min(sweep, key=lambda scale: sweep[scale].score)


def tolerance(run: Fit, fraction: float = 0.05) -> float:
    """``fraction`` of the run's first loss: differences below it are ties."""
    return fraction * abs(run.first_loss)


def _numbers(**values: float) -> dict[str, float]:
    return {name: float(value) for name, value in values.items()}


def prove_better(kwargs: dict[str, Any], label: str, truth_holds: str, *, lr_scale: float = 1.0,
                 model: nn.Module | None = None, **changes: Any) -> Proof:
    """The fix (another lr, model or keyword of the case) reaches a score lower by a tolerance.

    ``changes`` replace keywords of ``kwargs`` (``batch_size=16``, ``scheduler=...``);
    ``truth_holds`` says what it shows (``"10x the lr does better"``).
    """
    run = fit(kwargs)
    fixed = fit(dict(kwargs, **changes), lr_scale=lr_scale, model=model)
    holds = fixed.score < run.score - tolerance(run)
    return Proof(holds, f"{truth_holds}: {label} {fixed.score:.4g} vs {run.score:.4g} as run",
                 _numbers(run=run.score, fixed=fixed.score))


def prove_healthy(kwargs: dict[str, Any], bigger: nn.Module,
                  scales: Sequence[float] = (0.1, 0.3, 1, 3, 10)) -> Proof:
    """Healthy: the lr is (within a tolerance of) the best of a sweep, a bigger model does no
    better, val is close to train and test to val."""
    sweep = lr_sweep(kwargs, scales)
    run, best = sweep[1], best_scale(sweep)
    tol = tolerance(run)
    big = fit(kwargs, model=bigger)
    lr_ok = best in (0.3, 1, 3) or run.score <= sweep[best].score + tol
    big_ok = big.score >= run.score - tol
    gap_ok = math.isnan(run.val_loss_end) or run.val_loss_end <= run.train_loss_end + 2 * tol
    test_ok = math.isnan(run.test_loss_end) or run.test_loss_end <= run.val_loss_end + 2 * tol
    holds = lr_ok and big_ok and gap_ok and test_ok and not run.diverged
    summary = (f"best lr x{best} (score {sweep[best].score:.3g} vs {run.score:.3g} as run), "
               f"bigger {big.score:.3g}, train {run.train_loss_end:.3g} val "
               f"{run.val_loss_end:.3g} test {run.test_loss_end:.3g}")
    return Proof(holds, summary, _numbers(run=run.score, best=sweep[best].score,
                                          best_scale=best, bigger=big.score))


def prove_noise_floor(kwargs: dict[str, Any], bigger: nn.Module, floor: float) -> Proof:
    """At the noise floor: val is within 15% of the known Bayes loss ``floor`` and close to
    train, and a bigger model does no better."""
    run = fit(kwargs)
    big = fit(kwargs, model=bigger)
    tol = tolerance(run)
    holds = (big.score >= run.score - tol and abs(run.val_loss_end - floor) <= 0.15 * floor
             and abs(run.val_loss_end - run.train_loss_end) <= 2 * tol)
    summary = (f"floor {floor:.3g}: train {run.train_loss_end:.3g} val {run.val_loss_end:.3g}, "
               f"bigger model val {big.score:.3g}")
    return Proof(holds, summary, _numbers(floor=floor, run=run.score, bigger=big.score))
