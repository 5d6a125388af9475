"""The learning-rate range test: train briefly with a growing learning rate, watch the loss.

:func:`lr_find` takes one optimizer step per batch while the learning rate grows from
``start_lr`` to ``end_lr`` (exponentially or linearly), records the loss, smooths it, stops once
it diverges, suggests a learning rate from the curve, and then puts the model, the optimizer, an
optional scheduler and the random number generator back exactly as they were.

Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017
(the range test); the "valley" suggestion follows fastai's ``lr_find``.

Example:
    >>> import torch, unstuck
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = unstuck.Adam(model.parameters())
    >>> batches = [(torch.randn(32, 4), torch.randn(32, 1)) for _ in range(10)]
    >>> before = [p.detach().clone() for p in model.parameters()]
    >>> result = lr_find(model, optimizer, torch.nn.functional.mse_loss, batches, num_steps=50)
    >>> len(result.lrs), result.lrs[0]
    (50, 1e-07)
    >>> result.suggestion is None or 1e-7 <= result.suggestion <= 10  # None: never went down
    True
    >>> all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # restored exactly
    True
"""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from unstuck.schedules.scheduler import set_group_lr

__all__ = ["LRFinderResult", "lr_find", "ramp", "steepest_index", "valley_index"]

MODES = ("exp", "linear")
SKIP_FRACTION = 0.1
"""Both suggestion rules ignore this leading share of the recorded points (early noise)."""

LossFn = Callable[[nn.Module, Any], torch.Tensor]
Criterion = Callable[[Any, Any], torch.Tensor]


@dataclass(frozen=True)
class LRFinderResult:
    """The curve of an LR range test and the learning rates it suggests.

    ``losses[i]`` is the loss on batch ``i``, measured by the forward pass just before the step
    taken with learning rate ``lrs[i]`` (so it shows the effect of ``lrs[:i]``). With several
    parameter groups, ``lrs`` are those of the first group.

    Attributes:
        lrs: learning rate of each recorded step.
        losses: raw loss of each recorded step (the last one may be NaN/inf if the run diverged).
        smoothed: bias-corrected exponential moving average of ``losses`` (see :func:`lr_find`).
        suggestion: the "steepest" rule's learning rate (:func:`steepest_index`), or None when
            the smoothed curve never descends (e.g. the loss was NaN at the first step).
        valley: the "valley" rule's learning rate (:func:`valley_index`), or None.
        suggestion_index, valley_index: where these lie in ``lrs`` (None with them).
        diverged_at: the step at which the test stopped because the loss diverged (smoothed
            loss above ``diverge_factor`` times the best, or a NaN/inf loss); None if it ran
            all ``num_steps``.
        rule: one line describing how ``suggestion`` was chosen.
        mode: ``"exp"`` or ``"linear"``: the ramp used.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float | None
    valley: float | None
    suggestion_index: int | None
    valley_index: int | None
    diverged_at: int | None
    rule: str
    mode: str

    @property
    def best_index(self) -> int | None:
        """Index of the lowest finite smoothed loss (None when there is none)."""
        finite = [i for i, v in enumerate(self.smoothed) if math.isfinite(v)]
        return min(finite, key=self.smoothed.__getitem__) if finite else None


STEEPEST_RULE = (
    "steepest: the most negative slope d(smoothed loss)/d(log lr), between the first 10% of "
    "the points and the lowest smoothed loss"
)


def steepest_index(lrs: list[float], smoothed: list[float]) -> int | None:
    """The "steepest" rule: where the smoothed loss falls fastest against ``log(lr)``.

    Only points from ``int(0.1 * n)`` (the bias-corrected average is noisy at first, so an
    early spike cannot win) up to the lowest smoothed loss after them (beyond it the curve
    climbs towards divergence) are candidates. The slope is a central difference in ``log lr``
    between candidates (one-sided at the ends of that range); the result is the candidate with
    the most negative slope, or None when there are fewer than two candidates or no slope is
    negative. All points must be finite.
    """
    n = len(smoothed)
    start = int(SKIP_FRACTION * n)
    if n - start < 2:
        return None
    lowest = min(range(start, n), key=smoothed.__getitem__)
    if lowest - start < 1:
        return None
    logs = [math.log(lr) for lr in lrs]
    slopes = {}
    for i in range(start, lowest + 1):  # differences inside the candidates only
        left, right = max(i - 1, start), min(i + 1, lowest)
        slopes[i] = (smoothed[right] - smoothed[left]) / (logs[right] - logs[left])
    best = min(slopes, key=slopes.__getitem__)
    return best if slopes[best] < 0 else None


def valley_index(smoothed: list[float]) -> int | None:
    """fastai's "valley" rule: a point inside the longest descending stretch of the curve.

    With ``L[i]`` the length of the longest strictly decreasing subsequence of ``smoothed``
    ending at ``i``, the stretch ends at the first ``i`` with the largest ``L[i]`` and starts
    ``L[i]`` points earlier; the result is ``start + int(len/3) + int(len/6)`` (fastai's
    formula: about half way down the stretch, where the descent is steady). Computed on the
    points after the first ``int(0.1 * n)`` as fastai does; None when no point descends.
    ``L`` is found in O(n log n) by patience sorting (fastai's loop is O(n^2), same result).
    """
    offset = int(SKIP_FRACTION * len(smoothed))
    values = smoothed[offset:]
    tails: list[float] = []  # tails[k]: largest last value of a decreasing run of length k + 1
    best_end, best_length = 0, 1
    for i, value in enumerate(values):
        # strictly decreasing in value == strictly increasing in -value
        k = bisect.bisect_left(tails, -value)
        if k == len(tails):
            tails.append(-value)
        else:
            tails[k] = -value
        if k + 1 > best_length:
            best_end, best_length = i, k + 1
    if best_length < 2:
        return None
    start = best_end - best_length
    sections = (best_end - start) / 3
    return offset + max(start + int(sections) + int(sections / 2), 0)


def _check(
    start_lr: float,
    end_lr: float,
    num_steps: int,
    mode: str,
    smoothing: float,
    diverge_factor: float,
) -> None:
    """Validate the numeric arguments of :func:`lr_find`; errors name the argument."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if not (isinstance(start_lr, (int, float)) and math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a finite number > 0, got {start_lr!r}")
    if not (isinstance(end_lr, (int, float)) and math.isfinite(end_lr)):
        raise ValueError(f"end_lr must be a finite number, got {end_lr!r}")
    if not end_lr > start_lr:
        raise ValueError(f"end_lr must be > start_lr ({start_lr!r}), got {end_lr!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1 (inf disables it), got {diverge_factor!r}")


def ramp(start_lr: float, end_lr: float, num_steps: int, mode: str = "exp") -> list[float]:
    """The learning rates of the test: ``exp``: ``start * (end / start) ** (i / (n - 1))``;
    ``linear``: ``start + (end - start) * i / (n - 1)``, for ``i = 0 .. n - 1``."""
    last = num_steps - 1
    if mode == "exp":
        return [start_lr * (end_lr / start_lr) ** (i / last) for i in range(num_steps)]
    return [start_lr + (end_lr - start_lr) * i / last for i in range(num_steps)]


def _batches(data: Iterable[Any]) -> Iterator[Any]:
    """The batches of ``data``, starting over whenever it runs out."""
    yielded = 0
    while True:
        count = 0
        for batch in data:
            count += 1
            yield batch
        yielded += count
        if count == 0:
            if yielded == 0:
                raise ValueError("data must yield at least one batch, got none")
            raise ValueError(
                f"data ran out after {yielded} batches and cannot be iterated again; pass a "
                "re-iterable (a list, a DataLoader) or at least num_steps batches"
            )


class _Snapshot:
    """Everything :func:`lr_find` changes, copied before and put back bit for bit after."""

    def __init__(self, model: nn.Module, optimizer: Optimizer, scheduler: Any) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        with torch.no_grad():
            self.params = [(p, p.detach().clone()) for p in model.parameters()]
            self.grads = [
                (p, None if p.grad is None else p.grad.detach().clone())
                for p in self._optimized_and_model_params()
            ]
            self.buffers = [
                (name, b, None if b is None else b.detach().clone())
                for name, b in model.named_buffers(remove_duplicate=False)
            ]
        self.modes = [(m, m.training) for m in model.modules()]
        # load_state_dict builds new group dicts and adds defaults (torch's __setstate__ adds
        # "differentiable"), so the groups and ``defaults`` of the optimizer and of any inner
        # optimizer it wraps are also saved as they are, to be put back in place.
        self.groups = [(group, _copy_items(group)) for group in optimizer.param_groups]
        self.defaults = [(o, _copy_items(o.defaults)) for o in _optimizer_chain(optimizer)]
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.scheduler_state = None if scheduler is None else copy.deepcopy(scheduler.state_dict())

    def _optimized_and_model_params(self) -> list[torch.Tensor]:
        seen: dict[int, torch.Tensor] = {id(p): p for p in self.model.parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                seen.setdefault(id(p), p)
        return list(seen.values())

    @torch.no_grad()
    def restore(self) -> None:
        self.optimizer.load_state_dict(self.optimizer_state)
        # put the saved group dicts back (references such as ``group = param_groups[0]`` stay
        # valid) with exactly their saved entries, and the saved defaults
        current = self.optimizer.param_groups
        for i, (group, items) in enumerate(self.groups):
            _put_items(group, items)
            if i < len(current):
                current[i] = group
        for optimizer, items in self.defaults:
            _put_items(optimizer.defaults, items)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(self.scheduler_state)
        for p, saved in self.params:
            p.copy_(saved)
        for p, saved in self.grads:
            if saved is None:
                p.grad = None
            elif p.grad is None or p.grad.shape != saved.shape:
                p.grad = saved
            else:
                p.grad.copy_(saved)
        for name, original, saved in self.buffers:
            module_name, _, attribute = name.rpartition(".")
            module = self.model.get_submodule(module_name)
            if module._buffers.get(attribute) is not original:  # replaced during the test
                module._buffers[attribute] = original
            if original is not None:
                original.copy_(saved)
        for module, training in self.modes:
            module.training = training


def lr_find(
    model: nn.Module,
    optimizer: Optimizer,
    criterion: Criterion | None,
    data: Iterable[Any],
    *,
    loss_fn: LossFn | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    scheduler: Any = None,
    restore: bool = True,
    progress: Callable[[int, float, float], None] | None = None,
) -> LRFinderResult:
    r"""Run an LR range test and suggest a learning rate; then undo every change it made.

    Step ``i = 0 .. num_steps - 1`` sets the learning rate to ``lrs[i]`` (see :func:`ramp`;
    ``exp``: :math:`lr_i = lr_0 (lr_{end}/lr_0)^{i/(n-1)}`), computes the loss on the next batch,
    and takes one optimizer step. The loss is smoothed by a bias-corrected exponential moving
    average, :math:`a_i = \beta a_{i-1} + (1-\beta)\,\ell_i`, :math:`s_i = a_i / (1-\beta^{i+1})`
    with :math:`\beta` = ``smoothing``. The test stops early at the first step whose loss is NaN or
    infinite, or whose smoothed loss exceeds ``diverge_factor`` times the lowest so far.

    Two suggestions are read from the smoothed curve: ``suggestion`` by the "steepest" rule
    (:func:`steepest_index`: the most negative slope against log lr, skipping the first 10% of
    the points and everything after the minimum) and ``valley`` by fastai's rule
    (:func:`valley_index`). A loss that is NaN at the very first step gives a result with
    ``diverged_at=0`` and both suggestions None (no exception).

    The data contract: ``data`` is an iterable of batches, started over when it runs out (so a
    list or a DataLoader shorter than ``num_steps`` is fine). With ``criterion``, each batch is
    ``(inputs, targets)`` and the loss is ``criterion(model(inputs), targets)``; for anything else
    pass ``criterion=None`` and ``loss_fn(model, batch) -> loss``. The loss must be a tensor with
    one element.

    Several parameter groups keep their ratios: each group's lr is its original lr times
    ``lrs[i] / original lr of the first group`` (when the first group's lr is 0, every group gets
    ``lrs[i]``). The model is put in train mode for the test.

    With ``restore=True`` (the default) everything is put back bit for bit afterwards, also when
    the loss function raises: parameters, their ``.grad``, buffers (BatchNorm running statistics
    and ``num_batches_tracked``), each module's train/eval mode, the optimizer (its
    ``state_dict()``, deep-copied before and loaded after: any optimizer that round-trips its
    state works, wrappers such as Lookahead included; the param group dicts stay the same
    objects), ``scheduler`` (its ``state_dict()``; it is not stepped during the test, the ramp
    sets the lr) and torch's random number generators (CPU, and the CUDA devices of the model),
    so dropout and DataLoader shuffling draw the same numbers as if the test never ran. Python's
    and NumPy's generators are not touched by this function but may be by ``data``.

    Args:
        model: the model being trained.
        optimizer: any ``torch.optim.Optimizer`` over (some of) ``model``'s parameters.
        criterion: ``criterion(outputs, targets) -> loss``, or None when ``loss_fn`` is given.
        data: an iterable of batches (see above).
        loss_fn: ``loss_fn(model, batch) -> loss``, used instead of ``criterion``.
        start_lr, end_lr: the first and last learning rate, ``0 < start_lr < end_lr``.
        num_steps: number of steps (>= 2) if the loss does not diverge first.
        mode: ``"exp"`` (the usual; evenly spaced in log lr) or ``"linear"``.
        smoothing: the EMA factor beta in [0, 1); 0 means no smoothing.
        diverge_factor: stop when the smoothed loss exceeds this times the best (> 1; ``inf``
            never stops except for a NaN/inf loss).
        scheduler: an LR scheduler of ``optimizer`` whose state should be restored, or None.
        restore: put everything back afterwards (set False to keep the trained state).
        progress: called as ``progress(step, lr, smoothed_loss)`` after each step.

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        ValueError: a bad argument (named in the message), a loss that is not a one-element
            tensor or does not depend on any parameter, an optimizer with no parameter that
            requires grad, or empty ``data``.

    Example:
        >>> import torch, unstuck
        >>> _ = torch.manual_seed(0)
        >>> nn = torch.nn
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> batches = [(torch.randn(16, 3), torch.randn(16, 1)) for _ in range(20)]
        >>> result = lr_find(model, unstuck.SGD(model.parameters()), nn.MSELoss(), batches)
        >>> lr = result.suggestion or 1e-3  # then train with this learning rate
        >>> lr > 0
        True
    """
    _check(start_lr, end_lr, num_steps, mode, smoothing, diverge_factor)
    if (criterion is None) == (loss_fn is None):
        given = "both" if criterion is not None else "neither"
        raise ValueError(f"pass exactly one of criterion and loss_fn, got {given}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    trained = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    if not trained:
        raise ValueError("optimizer must hold at least one parameter that requires grad, got none")

    loss_name = "criterion" if criterion is not None else "loss_fn"

    def compute_loss(batch: Any) -> torch.Tensor:
        if loss_fn is not None:
            return loss_fn(model, batch)
        try:
            inputs, targets = batch
        except (TypeError, ValueError):
            raise ValueError(
                "with criterion, each batch of data must be a pair (inputs, targets), got "
                f"{type(batch).__name__}; pass loss_fn(model, batch) for other batches"
            ) from None
        return criterion(model(inputs), targets)

    lrs_planned = ramp(float(start_lr), float(end_lr), num_steps, mode)
    base_lr = float(optimizer.param_groups[0]["lr"])
    ratios = [float(g["lr"]) / base_lr if base_lr != 0 else 1.0 for g in optimizer.param_groups]
    cuda_devices = sorted({p.device.index or 0 for p in trained if p.is_cuda})
    snapshot = _Snapshot(model, optimizer, scheduler) if restore else None

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    diverged_at: int | None = None
    try:
        with torch.random.fork_rng(devices=cuda_devices, enabled=restore):
            model.train()
            average, best = 0.0, math.inf
            batches = _batches(data)
            for i, lr in enumerate(lrs_planned):
                for group, ratio in zip(optimizer.param_groups, ratios):
                    set_group_lr(group, lr * ratio)
                optimizer.zero_grad()
                loss = compute_loss(next(batches))
                _check_loss(loss, loss_name)
                value = float(loss.detach().item())
                lrs.append(lr)
                losses.append(value)
                if not math.isfinite(value):
                    smoothed.append(value)
                    diverged_at = i
                    break
                loss.backward()
                optimizer.step()
                average = smoothing * average + (1 - smoothing) * value
                current = average / (1 - smoothing ** (i + 1))
                smoothed.append(current)
                best = min(best, current)
                if progress is not None:
                    progress(i, lr, current)
                if current > diverge_factor * best or not math.isfinite(current):
                    diverged_at = i
                    break
    finally:
        if snapshot is not None:
            snapshot.restore()

    finite = 0
    while finite < len(smoothed) and math.isfinite(smoothed[finite]):
        finite += 1
    steep = steepest_index(lrs[:finite], smoothed[:finite])
    valley = valley_index(smoothed[:finite])
    return LRFinderResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        suggestion=None if steep is None else lrs[steep],
        valley=None if valley is None else lrs[valley],
        suggestion_index=steep,
        valley_index=valley,
        diverged_at=diverged_at,
        rule=STEEPEST_RULE,
        mode=mode,
    )


def _optimizer_chain(optimizer: Optimizer) -> list[Optimizer]:
    """``optimizer`` and the optimizers it wraps (``.optimizer``, as Lookahead has)."""
    chain: list[Optimizer] = []
    while isinstance(optimizer, Optimizer) and all(optimizer is not o for o in chain):
        chain.append(optimizer)
        optimizer = getattr(optimizer, "optimizer", None)
    return chain


def _copy_items(mapping: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, value, saved copy)`` of each entry, in order; ``params`` lists are kept as is."""
    items = []
    for key, value in mapping.items():
        if key == "params":
            saved = value
        elif isinstance(value, torch.Tensor):
            saved = value.detach().clone()
        else:
            saved = copy.deepcopy(value)
        items.append((key, value, saved))
    return items


def _put_items(mapping: dict[str, Any], items: list[tuple[str, Any, Any]]) -> None:
    """Make ``mapping`` hold exactly the saved entries again (tensors refilled in place)."""
    mapping.clear()
    for key, value, saved in items:
        if isinstance(value, torch.Tensor) and key != "params":
            value.copy_(saved)
            saved = value
        mapping[key] = saved


def _check_loss(loss: Any, name: str) -> None:
    """A loss must be a one-element tensor attached to the graph."""
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"{name} must return a loss tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"{name} must return a scalar loss (one element), got shape {tuple(loss.shape)}; "
            "reduce it, e.g. with .mean()"
        )
    if not loss.requires_grad:
        raise ValueError(
            f"{name} returned a loss that does not depend on any parameter that requires grad"
        )
