"""Shared pieces of the cases on other model families than the calibration part's (the development
and held-out parts): seeding, the 8x8 digits as images, registration, and the proofs several cases
share (on top of :mod:`.proving`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .base import Case, Proof, register
from .proving import Fit, best_scale, evaluate, fit, lr_sweep, prove_healthy, tolerance

__all__ = [
    "Kwargs",
    "Pair",
    "adam",
    "all_of",
    "digits",
    "generator",
    "development",
    "held_out",
    "kwargs",
    "prove_divergence",
    "prove_exploding",
    "prove_learned",
    "prove_lr_too_large",
    "prove_lr_too_small",
    "prove_mismatch",
    "prove_model_bias",
    "prove_nonfinite",
    "prove_overfitting",
    "sets",
    "sgd",
    "split",
]

Pair = tuple[Tensor, Tensor]
Kwargs = dict[str, Any]


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


def sets(make: Callable[..., Pair], seed: int, train: int, *held: int, **options: Any
         ) -> list[Pair]:
    """``[train, *held]`` pieces from ``make(seed, n, salt=..., **options)``: the training set
    and the held-out sets are drawn apart, so the held-out ones do not change with ``train``."""
    pieces = [make(seed, train, salt=0, **options)]
    if held:
        pieces += split(make(seed, sum(held), salt=1, **options), *held)
    return pieces


@functools.lru_cache(maxsize=1)
def _digits() -> Pair:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


def digits(seed: int) -> Pair:
    """The 1797 8x8 digits shipped with scikit-learn as images ``(n, 1, 8, 8)``, pixels in
    [0, 1], shuffled by ``seed``."""
    images, labels = _digits()
    order = torch.randperm(len(labels), generator=generator(seed, 7))
    return images[order], labels[order]


def adam(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
    """A factory of ``torch.optim.Adam`` at ``lr``."""
    return lambda params: torch.optim.Adam(params, lr=lr)


def sgd(lr: float, momentum: float = 0.0) -> Callable[[Any], torch.optim.Optimizer]:
    """A factory of ``torch.optim.SGD`` at ``lr``."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


def kwargs(model: nn.Module, criterion: Callable, data: list[Pair], optimizer: Callable,
           steps: int, batch_size: int | None, seed: int, title: str, **more: Any) -> Kwargs:
    """Keyword arguments of ``examine``: ``data`` is ``[train]``, ``[train, val]`` or
    ``[train, val, test]``; ``more`` adds others (``reference``, ``scheduler``, ...)."""
    pieces = dict(zip(("train_data", "val_data", "test_data"), data))
    return dict(model=model, criterion=criterion, optimizer=optimizer, steps=steps,
                batch_size=batch_size, seed=seed, title=title, **pieces, **more)


def _register(part: str, name: str, truth: str, description: str,
              build: Callable[[int], Kwargs], proof: Callable[[int], Proof]) -> Case:
    return register(Case(name, name.split("_")[0], truth, part, build, proof,
                         " ".join(description.split())))


def development(name: str, truth: str, description: str, build: Callable[[int], Kwargs],
                proof: Callable[[int], Proof]) -> Case:
    """Register a development case (its family is the first word of ``name``)."""
    return _register("development", name, truth, description, build, proof)


def held_out(name: str, truth: str, description: str, build: Callable[[int], Kwargs],
             proof: Callable[[int], Proof]) -> Case:
    """Register a held-out case (its family is the first word of ``name``)."""
    return _register("held-out", name, truth, description, build, proof)


def all_of(*proofs: Proof) -> Proof:
    """One proof that holds when every one of ``proofs`` does (summaries joined)."""
    numbers: dict[str, float] = {}
    for i, proof in enumerate(proofs):
        numbers.update({f"{i}.{k}" if k in numbers else k: v for k, v in proof.numbers.items()})
    return Proof(all(p.holds for p in proofs), "; ".join(p.summary for p in proofs), numbers)


def _check(holds: bool, summary: str, **numbers: float) -> Proof:
    return Proof(bool(holds), summary, {k: float(v) for k, v in numbers.items()})


def _train_loss(run: Fit, kwargs: Kwargs) -> float:
    """The final loss on the whole training set (eval mode), for pairs; else the end loss."""
    data = kwargs["train_data"]
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        return evaluate(run.model, kwargs["criterion"], data)
    return run.train_loss_end


def prove_learned(kwargs: Kwargs, bigger: nn.Module) -> Proof:
    """Healthy (:func:`.proving.prove_healthy`: the lr is near the best of a sweep, a bigger
    model does no better, val is near train), and the run did learn: its score (val loss) ends
    under half its first training loss (a run that learns nothing at any lr is not healthy)."""
    run = fit(kwargs)
    learned = run.score < 0.5 * run.first_loss
    return all_of(prove_healthy(kwargs, bigger),
                  _check(learned, f"learned: first loss {run.first_loss:.3g} -> score "
                         f"{run.score:.3g}", first=run.first_loss))


def prove_lr_too_small(build: Callable[[int], Kwargs], seed: int, factor: float = 10.0) -> Proof:
    """``factor`` x the lr reaches a score (val loss) under half the run's, and the run's own
    loss still falls (it is slow, not stuck)."""
    run, fast = fit(build(seed)), fit(build(seed), lr_scale=factor)
    falling = run.train_loss_end < run.first_loss - tolerance(run, 0.01)
    return _check(fast.score < 0.5 * run.score and falling and not run.diverged,
                  f"{factor:g}x the lr: score {fast.score:.3g} vs {run.score:.3g} as run "
                  f"(train {run.first_loss:.3g} -> {run.train_loss_end:.3g})",
                  run=run.score, faster=fast.score)


def prove_lr_too_large(build: Callable[[int], Kwargs], seed: int,
                       scales: tuple[float, ...] = (1 / 100, 1 / 30, 1 / 10, 1 / 3)) -> Proof:
    """The run makes no progress (end loss >= 90% of its first, finite: it bounces, it does not
    blow up), and a smaller lr of the sweep reaches under half the run's score."""
    run = fit(build(seed))
    sweep = lr_sweep(build(seed), scales)
    best = best_scale(sweep)
    stuck = run.train_loss_end >= 0.9 * run.first_loss and all(map(math.isfinite, run.losses))
    return _check(stuck and sweep[best].score < 0.5 * run.score,
                  f"run {run.first_loss:.3g} -> {run.train_loss_end:.3g} (score {run.score:.3g}); "
                  f"lr x{best:.3g}: score {sweep[best].score:.3g}",
                  run=run.score, best=sweep[best].score, best_scale=best)


def prove_divergence(build: Callable[[int], Kwargs], seed: int, fix: float = 0.1) -> Proof:
    """The loss grows over 100-fold and stays finite (a blow-up, not NaN); ``fix`` x the lr
    trains (end loss under half the first)."""
    run, slow = fit(build(seed)), fit(build(seed), lr_scale=fix)
    finite = all(map(math.isfinite, run.losses))
    growth = max(run.losses) / run.first_loss if finite else math.inf
    trains = slow.train_loss_end < 0.5 * slow.first_loss and not slow.diverged
    return _check(finite and growth > 100 and trains,
                  f"loss grows x{growth:.3g} over the run (finite: {finite}); {fix:g}x the lr: "
                  f"{slow.first_loss:.3g} -> {slow.train_loss_end:.3g}",
                  growth=growth, fixed=slow.train_loss_end)


def prove_nonfinite(build: Callable[[int], Kwargs], fixed: Callable[[int], Kwargs],
                    seed: int, label: str) -> Proof:
    """The run's loss goes non-finite; the ``fixed`` build (``label``) stays finite and trains
    (end loss under 70% of its first)."""
    run, good = fit(build(seed)), fit(fixed(seed))
    first_bad = next((i for i, v in enumerate(run.losses) if not math.isfinite(v)), -1)
    trains = all(map(math.isfinite, good.losses)) and good.train_loss_end < 0.7 * good.first_loss
    return _check(first_bad >= 0 and trains,
                  f"loss non-finite from step {first_bad}; {label}: {good.first_loss:.3g} -> "
                  f"{good.train_loss_end:.3g}, all finite", first_nonfinite=first_bad,
                  fixed=good.train_loss_end)


def prove_exploding(build: Callable[[int], Kwargs], fixed: Callable[[int], Kwargs], seed: int,
                    label: str, spike: float = 20.0) -> Proof:
    """The gradient norm spikes over ``spike`` x its median (all losses finite), and the
    ``fixed`` build (``label``) reaches a val loss under 80% of the run's."""
    run, good = fit(build(seed)), fit(fixed(seed))
    finite = all(map(math.isfinite, run.losses))
    return _check(finite and run.spike > spike and good.val_loss_end < 0.8 * run.val_loss_end,
                  f"max gradient norm {run.spike:.3g}x the median; {label}: val "
                  f"{good.val_loss_end:.3g} vs {run.val_loss_end:.3g}", spike=run.spike,
                  run=run.val_loss_end, fixed=good.val_loss_end)


def prove_overfitting(build: Callable[[int], Kwargs], more_data: Callable[[int], Kwargs],
                      seed: int, label: str) -> Proof:
    """The training loss ends small and the val loss over 3x it (and 0.3 above); the same model
    on ``more_data`` (``label``) reaches a val loss under half the run's."""
    run, big = fit(build(seed)), fit(more_data(seed))
    train = _train_loss(run, build(seed))
    gap = run.val_loss_end > 3 * train and run.val_loss_end > train + 0.3
    return _check(gap and big.val_loss_end < 0.5 * run.val_loss_end,
                  f"train {train:.3g}, val {run.val_loss_end:.3g}; {label}: val "
                  f"{big.val_loss_end:.3g}", train=train, val=run.val_loss_end,
                  more_data=big.val_loss_end)


def prove_mismatch(build: Callable[[int], Kwargs], shifted: Callable[[int], Kwargs],
                   seed: int, label: str) -> Proof:
    """Val is close to train, test is over 3x val (and 0.5 above); the same model trained on
    the test distribution (``shifted``: ``label``) reaches a test loss under a third of the
    run's: the test data are learnable, the training data do not show them."""
    run, moved = fit(build(seed)), fit(shifted(seed))
    train = _train_loss(run, build(seed))
    close = run.val_loss_end <= train + 2 * tolerance(run)
    far = run.test_loss_end > 3 * run.val_loss_end and run.test_loss_end > run.val_loss_end + 0.5
    return _check(close and far and moved.test_loss_end < run.test_loss_end / 3,
                  f"train {train:.3g} val {run.val_loss_end:.3g} test {run.test_loss_end:.3g}; "
                  f"{label}: test {moved.test_loss_end:.3g}", train=train,
                  val=run.val_loss_end, test=run.test_loss_end, shifted=moved.test_loss_end)


def prove_model_bias(build: Callable[[int], Kwargs], bigger: Callable[[int], nn.Module],
                     seed: int) -> Proof:
    """The model's training loss stays high at the best lr of a sweep and with 3x the steps
    (over 60% of the run's), while a bigger model with the same recipe gets under 40% of it."""
    kw = build(seed)
    run = fit(kw)
    train = _train_loss(run, kw)
    sweep = lr_sweep(build(seed), (0.3, 1, 3, 10))
    best = min(sweep, key=lambda s: _train_loss(sweep[s], kw) if not sweep[s].diverged
               else math.inf)
    longer = fit(build(seed), lr_scale=best, steps=3 * kw["steps"])
    best_train = min(_train_loss(sweep[best], kw), _train_loss(longer, kw))
    big = fit(build(seed), model=bigger(seed))
    big_train = _train_loss(big, kw)
    return _check(best_train > 0.6 * train and big_train < 0.4 * train,
                  f"train {train:.3g} as run, {best_train:.3g} at best lr x{best:g} and 3x the "
                  f"steps; bigger model {big_train:.3g}", train=train, best=best_train,
                  bigger=big_train)
