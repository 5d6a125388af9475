"""Runs of the same recipe with one change: the checks and the fixes the doctor tries.

A :class:`Recipe` holds what one training needs (the model, optimizer and scheduler *as they
were before training*, the loss, the data, the steps, clipping and a step hook). From it the
doctor runs copies that differ in one thing, with the same batches in the same order and the same
number of steps, so that a difference in the result is the change's:

- :meth:`Recipe.run` with ``lr_scale``: the learning-rate probes (every group's lr, its
  ``initial_lr`` and the scheduler's base lrs scaled);
- :meth:`Recipe.run_model`: another model (a reference) with the same optimizer settings;
- :func:`try_fixes`: the fixes of a verdict that can be applied mechanically (a lower or higher
  lr, clipping, a warm-up, random init, RAdam), each measured against the run itself. A fix that
  does not help is reported as not helping.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.doctor.evidence import RunOutcome

__all__ = ["CHECKED_BY_FIX", "FIXES", "Change", "Recipe", "TrainResult", "batches", "evaluate",
           "is_pair", "try_fixes"]

NONFINITE_STOP = 3
"""Training stops after this many consecutive non-finite losses (nothing more to learn)."""


def is_pair(data: Any) -> bool:
    """``data`` is an ``(inputs, targets)`` pair of tensors with as many rows."""
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(t, Tensor) for t in data
    ) and data[0].shape[:1] == data[1].shape[:1]


def batches(name: str, data: Any, batch_size: int | None, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless training batches: shuffled mini-batches of a pair, or the iterable, cycled."""
    if is_pair(data):
        inputs, targets = data
        n = inputs.shape[0]
        if n == 0:
            raise ValueError(f"{name} must hold at least one example, got 0")
        if batch_size is None or batch_size >= n:
            while True:
                yield inputs, targets
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                index = order[start : start + batch_size].to(inputs.device)
                yield inputs[index], targets[index]
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            f"{name} must be an (inputs, targets) pair of tensors or an iterable of such "
            f"batches, got {type(data).__name__}"
        )
    while True:
        empty = True
        for batch in data:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError(
                    f"{name} must yield (inputs, targets) pairs, got {type(batch).__name__}"
                )
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise ValueError(f"{name} yielded no batch")


def evaluate(model: nn.Module, criterion: Callable, data: Any) -> float:
    """The mean loss on ``data`` (a pair, or an iterable of batches weighted by size), eval mode;
    nan when it cannot be computed (a broken model is a finding, not a crash)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            if is_pair(data):
                return float(criterion(model(data[0]), data[1]))
            total, count = 0.0, 0
            for inputs, targets in data:
                n = len(targets) if hasattr(targets, "__len__") else 1
                total += float(criterion(model(inputs), targets)) * n
                count += n
            return total / count if count else math.nan
    finally:
        model.train(was)


@dataclass
class TrainResult:
    """What one training loop returned: step losses and evaluations ``{name: (steps, losses)}``."""

    losses: list[float]
    curves: dict[str, tuple[list[int], list[float]]]


def scale_lr(optimizer: Optimizer, scheduler: Any, factor: float) -> None:
    """Multiply every learning rate of ``optimizer`` (and ``scheduler``'s base lrs) by
    ``factor``: ``lr``, ``initial_lr``, ``max_lr``, ``min_lr`` of every group."""
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if key in group:
                group[key] = group[key] * factor
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [b * factor for b in scheduler.base_lrs]


def same_optimizer(optimizer: Optimizer) -> Callable[[Any], Optimizer]:
    """A factory ``params -> Optimizer`` of the class and first group's hyper-parameters of
    ``optimizer`` (tensor values copied)."""
    cls = type(optimizer)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    options = {
        k: (v.clone() if isinstance(v, Tensor) else v)
        for k, v in optimizer.param_groups[0].items()
        if k in accepted
    }
    return lambda params: cls(params, **options)


@dataclass
class Change:
    """One change to a recipe: a label, a factor for the learning rate, and optional edits.

    ``model`` replaces the model (``None``: the recipe's, copied); ``optimizer`` builds another
    optimizer from parameters; ``edit(model, optimizer)`` edits the copies in place before
    training (re-initialise, ...); ``wrap_scheduler(optimizer, scheduler)`` returns the scheduler
    to use; ``clip`` sets gradient clipping.
    """

    label: str
    lr_scale: float = 1.0
    model: nn.Module | None = None
    optimizer: Callable[[Any], Optimizer] | None = None
    edit: Callable[[nn.Module, Optimizer], None] | None = None
    wrap_scheduler: Callable[[Optimizer, Any], Any] | None = None
    clip: float | None = None


class Recipe:
    """Everything one training needs, kept as it was before training (see the module docstring).

    Args:
        model, optimizer, scheduler: the starting state (deep-copied now, together, so the
            optimizer of the copy holds the copy's parameters and the scheduler its optimizer).
        criterion: ``criterion(outputs, targets)`` -> loss.
        train_data, batch_size, seed: the batches (see :func:`batches`).
        steps: optimizer steps per run.
        clip_grad_norm: clip the global gradient norm at this value before each step, or None.
        step_hook: ``step_hook(model, step)`` after backward, before the step, or None.
        val_data: data whose loss is a run's score.
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer, scheduler: Any,
                 criterion: Callable, train_data: Any, batch_size: int | None, seed: int,
                 steps: int, clip_grad_norm: float | None = None,
                 step_hook: Callable[[nn.Module, int], None] | None = None,
                 val_data: Any = None) -> None:
        self._start = copy.deepcopy((model, optimizer, scheduler))
        self.criterion, self.train_data = criterion, train_data
        self.batch_size, self.seed, self.steps = batch_size, seed, steps
        self.clip_grad_norm, self.step_hook, self.val_data = clip_grad_norm, step_hook, val_data

    def fresh(self) -> tuple[nn.Module, Optimizer, Any]:
        """A new copy of the starting model, optimizer and scheduler."""
        return copy.deepcopy(self._start)

    def train(self, model: nn.Module, optimizer: Optimizer, scheduler: Any = None, *,
              monitor: Any = None, every: int | None = None, evals: tuple = (),
              clip: float | None = None) -> TrainResult:
        """Train ``steps`` steps on the recipe's batches; stops after ``NONFINITE_STOP``
        non-finite losses in a row."""
        losses: list[float] = []
        curves: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name, _ in evals}
        clip = self.clip_grad_norm if clip is None else clip
        source = batches("train_data", self.train_data, self.batch_size, self.seed)
        bad = 0
        model.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            warnings.filterwarnings("ignore", message=".*optimizer.step.*")
            for step in range(self.steps):
                inputs, targets = next(source)
                optimizer.zero_grad()
                loss = self.criterion(model(inputs), targets)
                loss.backward()
                if self.step_hook is not None:
                    self.step_hook(model, step)
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                if monitor is not None:
                    monitor.observe(loss)
                optimizer.step()
                value = float(loss.detach())
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(value)  # it steps on a metric: the training loss here
                elif scheduler is not None:
                    scheduler.step()
                losses.append(value)
                if every and (step % every == 0 or step == self.steps - 1):
                    for name, data in evals:
                        curves[name][0].append(step)
                        curves[name][1].append(evaluate(model, self.criterion, data))
                bad = bad + 1 if not math.isfinite(value) else 0
                if bad >= NONFINITE_STOP:
                    break
        return TrainResult(losses, curves)

    def run(self, change: Change) -> RunOutcome:
        """Train a copy with ``change`` and summarise it (see :class:`RunOutcome`)."""
        model, optimizer, scheduler = self.fresh()
        if change.model is not None:
            model = change.model
            factory = change.optimizer or same_optimizer(optimizer)
            optimizer = factory(model.parameters())
            scheduler = _rebind(scheduler, optimizer)
        elif change.optimizer is not None:
            optimizer = change.optimizer(model.parameters())
            scheduler = _rebind(scheduler, optimizer)
        if change.edit is not None:
            change.edit(model, optimizer)
        if change.lr_scale != 1.0:
            scale_lr(optimizer, scheduler, change.lr_scale)
        if change.wrap_scheduler is not None:
            scheduler = change.wrap_scheduler(optimizer, scheduler)
        try:
            result = self.train(model, optimizer, scheduler, clip=change.clip)
        except (RuntimeError, ValueError) as error:  # a broken variant is a result, not a crash
            return RunOutcome(f"{change.label} (failed: {str(error).splitlines()[0][:80]})",
                              math.nan, None, True, 0)
        val = evaluate(model, self.criterion, self.val_data) if self.val_data is not None else None
        return RunOutcome.of(change.label, result.losses, val)


def _rebind(scheduler: Any, optimizer: Optimizer) -> Any:
    """A copy of ``scheduler`` driving ``optimizer`` (None when the groups do not match)."""
    if scheduler is None or not hasattr(scheduler, "optimizer"):
        return None
    if len(scheduler.optimizer.param_groups) != len(optimizer.param_groups):
        return None
    for group, old in zip(optimizer.param_groups, scheduler.optimizer.param_groups):
        if "initial_lr" in old:
            group.setdefault("initial_lr", old["initial_lr"])
    made = copy.deepcopy(scheduler, {id(scheduler.optimizer): optimizer})
    for group, lr in zip(optimizer.param_groups, made.get_last_lr()):
        group["lr"] = lr
    return made


# ----------------------------------------------------------------------------- fixes
def _reinit(model: nn.Module, _optimizer: Optimizer) -> None:
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()


def _warmup(steps: int) -> Callable[[Optimizer, Any], Any]:
    def wrap(optimizer: Optimizer, scheduler: Any) -> Any:
        if scheduler is not None:
            return scheduler  # a schedule is in place: leave it (the fix is to lengthen it)
        warm = max(1, steps // 5)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min(1.0, (t + 1) / warm))
    return wrap


def _radam(optimizer: Optimizer) -> Callable[[Any], Optimizer]:
    from unstuck.optim import RAdam

    lr = float(optimizer.param_groups[0]["lr"])
    return lambda params: RAdam(params, lr=lr)


FIXES: dict[str, Callable[[Recipe, dict[str, Any]], list[Change]]] = {
    "lr_too_large": lambda r, e: [Change("lr x0.1", 0.1), Change("lr x0.3", 0.3)],
    "divergence": lambda r, e: [Change("lr x0.1", 0.1), Change("clip at 1", clip=1.0)],
    "oscillation": lambda r, e: [Change("lr x0.3", 0.3), Change("lr x0.1", 0.1)],
    "lr_too_small": lambda r, e: [Change("lr x3", 3.0), Change("lr x10", 10.0)],
    "exploding_gradients": lambda r, e: [
        Change(f"clip at {e.get('clip_grad_norm', 1.0):.3g}",
               clip=float(e.get("clip_grad_norm", 1.0)))],
    "needs_warmup": lambda r, e: [
        Change("linear warm-up over a fifth of the steps", wrap_scheduler=_warmup(r.steps)),
        Change("RAdam", optimizer=_radam(r.fresh()[1])), Change("lr x0.1", 0.1)],
    "symmetric_init": lambda r, e: [Change("random init (reset_parameters)", edit=_reinit)],
    "dead_units": lambda r, e: [Change("random init (reset_parameters)", edit=_reinit),
                                Change("lr x0.1", 0.1)],
    "saddle_point": lambda r, e: [Change("random init (reset_parameters)", edit=_reinit)],
    "adagrad_blowup": lambda r, e: [Change("clip at 1", clip=1.0), Change("lr x0.1", 0.1)],
}
"""Each verdict's fixes that can be applied mechanically (the rest stay advice)."""

CHECKED_BY_FIX = ("exploding_gradients", "needs_warmup")
"""Verdicts read off the steps whose first fix :func:`~unstuck.doctor.examine` runs before it
gives them (``Evidence.fix_checks``): a gradient spike or an early rise of the loss is a verdict
only when the fix (clipping, a warm-up) measurably does better; a noisy small-batch run has
spikes that do it no harm."""


def try_fixes(recipe: Recipe, code: str, evidence: dict[str, Any],
              baseline: RunOutcome,
              measured: Mapping[str, RunOutcome] | None = None) -> list[dict[str, Any]]:
    """Run the mechanical fixes of ``code`` on copies and measure each against ``baseline`` (the
    run itself, same steps and batches). Best first; ``score_before``/``score_after`` are the
    validation loss (else training loss) of the run and of the fix; ``helped`` is False for a fix
    that did not lower it (a run that diverged scores as infinitely bad). ``measured``: runs of
    this recipe already made, by change label (the checks' lr probes and fix checks): a fix
    with one of those labels is read from it, not run again."""
    make = FIXES.get(code)
    if make is None:
        return []
    measured = measured or {}
    out = []
    for change in make(recipe, evidence):
        after = measured.get(change.label) or recipe.run(change)
        out.append({
            "fix": change.label,
            "score_before": baseline.loss,
            "score_after": after.loss,
            "train_loss_after": after.train_loss_end,
            "val_loss_after": after.val_loss_end,
            "diverged": after.diverged,
            "helped": after.score < baseline.score,
        })
    out.sort(key=lambda t: (t["diverged"], t["score_after"]))
    return out
