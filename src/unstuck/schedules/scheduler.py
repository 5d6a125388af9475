"""Schedulers that every trainer accepts: a pure schedule driving the optimizer, and
``ReduceLROnPlateau`` with a warm-up in front.

Both are ``torch.optim.lr_scheduler.LRScheduler`` subclasses, so a plain training loop, Hugging
Face-style loops and Lightning (``configure_optimizers`` returning ``{"scheduler": ...,
"interval": "step"}``) take them unchanged. This module imports only torch and the standard
library: a schedule is any callable ``step -> multiplier``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

from torch import Tensor
from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_lr_scheduler

__all__ = ["ReduceLROnPlateau", "Scheduler"]

Schedule = Callable[[int], float]
"""A schedule: the number of optimizer steps already taken -> multiplier of the base lr."""

# torch's text, so that our deprecation warning reads as its own does.
_EPOCH_DEPRECATION = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where "
    "possible. Please use `scheduler.step()` to step the scheduler. During the deprecation, if "
    "epoch is different from None, the closed form is used instead of the new chainable form, "
    "where available. Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)


def set_group_lr(group: dict[str, Any], lr: float | Tensor) -> None:
    """Write ``lr`` into a param group, in place when the group holds a tensor lr (as torch)."""
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(lr.item() if isinstance(lr, Tensor) else lr)
    else:
        group["lr"] = lr


def _group_lrs(optimizer: Optimizer) -> list[float | Tensor]:
    """The param groups' lrs, tensors cloned so that callers cannot alias them."""
    return [
        g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"] for g in optimizer.param_groups
    ]


def _step_is_patched(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step`` still carries torch's scheduler wrapper (marker names differ
    between torch versions)."""
    step = optimizer.step
    return hasattr(step, "_wrapped_by_lr_sched") or hasattr(step, "_with_counter")


class Scheduler(torch_lr_scheduler.LRScheduler):
    r"""Sets every param group's learning rate from a pure schedule, in closed form.

    .. math::
        \mathrm{lr}_g(t) = \mathrm{base\_lr}_g \cdot s_g(t)

    where :math:`t` is the number of optimizer steps already taken (``last_epoch``: 0 before
    the first step, as torch), :math:`\mathrm{base\_lr}_g` is group :math:`g`'s
    ``initial_lr`` (its ``lr`` when the scheduler was created; per-group base lrs are
    respected) and :math:`s_g` is ``schedule`` (or ``schedule[g]``). Nothing accumulates from
    step to step, so the value at step :math:`t` is exactly ``base_lr * schedule(t)``: the same
    numbers as ``torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)``.

    Call :meth:`step` after every ``optimizer.step()`` (the Hugging Face convention; in
    Lightning, ``"interval": "step"``). Unlike torch's schedulers, it does not warn
    "Detected call of ``lr_scheduler.step()`` before ``optimizer.step()``" when the optimizer's
    step did not run on the first iteration: that is what ``torch.amp.GradScaler`` does when
    the first gradients overflow, and the warning then only alarms. (The scheduler cannot tell
    that case from calling the two in the wrong order, so it warns in neither.) Every other
    behaviour is torch's: ``get_last_lr()``, ``last_epoch``, the deprecated ``step(epoch)``,
    and "create the scheduler before loading the optimizer's state".

    ``state_dict()`` holds the counters and base lrs, and the schedules' ``repr`` for
    information only: the callables are not saved, so build the scheduler with the same
    schedule and then :meth:`load_state_dict` to resume exactly.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (unstuck's, torch's, ``unstuck.Lookahead``).
        schedule: a callable ``step -> multiplier``, or a list with one per param group.
        last_epoch: the index of the last step taken; ``-1`` (default) to start afresh.

    Example:
        >>> opt = unstuck.AdamW(model.parameters(), lr=3e-4)
        >>> sched = Scheduler(opt, lambda t: min(1.0, (t + 1) / 500))  # warm up over 500 steps
        >>> for batch in loader:
        ...     loss_fn(model(batch)).backward()
        ...     opt.step()
        ...     sched.step()
        ...     opt.zero_grad()
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Schedule | Sequence[Schedule],
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        n_groups = len(optimizer.param_groups)
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != n_groups:
                raise ValueError(
                    f"schedule must be one callable or one per param group ({n_groups}), "
                    f"got a list of {len(schedule)}"
                )
            schedules = list(schedule)
        else:
            schedules = [schedule] * n_groups
        for i, s in enumerate(schedules):
            if not callable(s):
                where = "schedule" if len(schedules) == 1 else f"schedule[{i}]"
                raise TypeError(f"{where} must be a callable step -> multiplier, got {s!r}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"last_epoch must be an int >= -1, got {last_epoch!r}")
        self.schedules: list[Schedule] = schedules
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | Tensor]:
        """The learning rates for step ``last_epoch``: ``base_lr * schedule(last_epoch)`` per
        group (closed form; calling it changes nothing)."""
        if len(self.base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"the optimizer has {len(self.optimizer.param_groups)} param groups but the "
                f"scheduler was created for {len(self.base_lrs)}; create a new Scheduler after "
                "add_param_group"
            )
        t = self.last_epoch
        return [
            base_lr * float(schedule(t)) for base_lr, schedule in zip(self.base_lrs, self.schedules)
        ]

    def _get_closed_form_lr(self) -> list[float | Tensor]:
        return self.get_lr()

    def step(self, epoch: int | None = None) -> None:
        """Advance one optimizer step and set every group's lr (call after ``optimizer.step()``).

        Args:
            epoch: deprecated (as in torch): jump to this step instead of advancing by one.
        """
        if self._step_count == 1 and not _step_is_patched(self.optimizer):
            warnings.warn(
                "Seems like `optimizer.step()` has been overridden after learning rate scheduler "
                "initialization. Please, make sure to call `optimizer.step()` before "
                "`lr_scheduler.step()`. See more details at "
                "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate",
                UserWarning,
                stacklevel=2,
            )
        # torch's "lr_scheduler.step() before optimizer.step()" warning is deliberately not
        # raised: a GradScaler that skipped the first optimizer step triggers it (see class doc).
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
        else:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
            self.last_epoch = epoch
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            set_group_lr(group, lr)
        self._last_lr: list[float | Tensor] = _group_lrs(self.optimizer)

    def state_dict(self) -> dict[str, Any]:
        """Counters, base lrs and last lrs; ``"schedules"`` holds each schedule's ``repr``
        (information only, never loaded back)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}
        state["schedules"] = [repr(s) for s in self.schedules]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the schedules stay the ones given to the constructor)."""
        state = {k: v for k, v in state_dict.items() if k != "schedules"}
        self.__dict__.update(state)


class ReduceLROnPlateau(torch_lr_scheduler.ReduceLROnPlateau):
    r"""torch's ``ReduceLROnPlateau`` with an optional linear warm-up in front.

    Each call ``step(metric)`` is one tick: make it once per epoch (after validation) or once
    per optimizer step, as torch's; ``warmup_steps``, ``patience`` and ``cooldown`` count these
    calls. With :math:`W` = ``warmup_steps``, :math:`a` = ``warmup_start`` and :math:`k` the
    number of calls made so far, the lr of group :math:`g` during the warm-up is

    .. math::
        \mathrm{lr}_g(k) = \mathrm{base\_lr}_g \cdot \Big(a + (1 - a)\,\frac{k}{W}\Big),
        \qquad k = 0, 1, \dots, W

    so training starts at ``base_lr * warmup_start`` (set when the scheduler is created) and
    the lr is exactly ``base_lr`` after the :math:`W`-th call. ``base_lr`` is each group's lr
    when the scheduler is created. The metrics passed during the warm-up (the first :math:`W`
    calls) are ignored, since they were measured under a still-rising lr; the warm-up lr is not
    clipped to ``min_lr``. From call :math:`W + 1` on, the scheduler behaves exactly as torch's
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` created at that moment with the same
    arguments: it is that class, so Lightning and other trainers recognise it as a plateau
    scheduler (Lightning needs ``"monitor"``). With ``warmup_steps=0`` (default) it is torch's.

    ``state_dict()`` includes the warm-up counter (``warmup_calls``) and ``base_lrs``; create
    the scheduler before loading the optimizer's state, as torch advises.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        mode: ``"min"`` (lower metric is better) or ``"max"``.
        factor: the lr is multiplied by it on a plateau, in ``[0, 1)``.
        patience: calls without improvement tolerated before reducing (>= 0).
        threshold: the least change that counts as an improvement (>= 0).
        threshold_mode: ``"rel"`` (``best * (1 -/+ threshold)``) or ``"abs"``
            (``best -/+ threshold``).
        cooldown: calls to wait after a reduction before counting bad ones again (>= 0).
        min_lr: a lower bound for reductions, one number or one per param group (>= 0).
        eps: reductions smaller than this are skipped (>= 0).
        warmup_steps: number of ``step`` calls of linear warm-up (>= 0; 0: none).
        warmup_start: the warm-up's first multiplier of the base lr, in ``[0, 1]``.

    Example:
        >>> opt = unstuck.Adam(model.parameters(), lr=1e-3)
        >>> sched = ReduceLROnPlateau(opt, factor=0.5, patience=3, warmup_steps=5)
        >>> for epoch in range(100):
        ...     train_one_epoch(model, opt)
        ...     sched.step(validation_loss(model))
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0,
        eps: float = 1e-8,
        warmup_steps: int = 0,
        warmup_start: float = 0.0,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if _number("factor", factor) >= 1.0:
            raise ValueError(f"factor must be < 1, got {factor!r}")
        if factor < 0.0:
            raise ValueError(f"factor must be >= 0, got {factor!r}")
        for name, value in (
            ("patience", patience),
            ("cooldown", cooldown),
            ("threshold", threshold),
            ("eps", eps),
        ):
            if not 0.0 <= _number(name, value) < math.inf:
                raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
        n_groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(
                    f"min_lr must be one number or one per param group ({n_groups}), "
                    f"got a list of {len(min_lr)}"
                )
            for i, value in enumerate(min_lr):
                if _number(f"min_lr[{i}]", value) < 0.0:
                    raise ValueError(f"min_lr[{i}] must be >= 0, got {value!r}")
        elif _number("min_lr", min_lr) < 0.0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int):
            raise TypeError(f"warmup_steps must be an int, got {warmup_steps!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        if not 0.0 <= _number("warmup_start", warmup_start) <= 1.0:
            raise ValueError(f"warmup_start must be in [0, 1], got {warmup_start!r}")

        super().__init__(
            optimizer,
            mode=mode,  # type: ignore[arg-type]
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,  # type: ignore[arg-type]
            cooldown=cooldown,
            min_lr=list(min_lr) if isinstance(min_lr, (list, tuple)) else min_lr,
            eps=eps,
        )
        self.warmup_steps = warmup_steps
        self.warmup_start = float(warmup_start)
        self.warmup_calls = 0
        self.base_lrs: list[float | Tensor] = _group_lrs(optimizer)
        if warmup_steps > 0:
            self._apply_warmup()

    @property
    def in_warmup(self) -> bool:
        """Whether the next :meth:`step` call is still part of the warm-up."""
        return self.warmup_calls < self.warmup_steps

    def warmup_multiplier(self, calls: int) -> float:
        """The warm-up's multiplier of the base lr after ``calls`` calls (1.0 from
        ``warmup_steps`` on)."""
        if calls >= self.warmup_steps:
            return 1.0
        return self.warmup_start + (1.0 - self.warmup_start) * calls / self.warmup_steps

    def _apply_warmup(self) -> None:
        if len(self.base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"the optimizer has {len(self.optimizer.param_groups)} param groups but the "
                f"scheduler was created for {len(self.base_lrs)}; create a new scheduler after "
                "add_param_group"
            )
        m = self.warmup_multiplier(self.warmup_calls)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            set_group_lr(group, base_lr * m)
        self._last_lr = _group_lrs(self.optimizer)

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """One tick: advance the warm-up (ignoring ``metrics``) or, after it, torch's plateau
        logic on ``metrics``."""
        if not self.in_warmup:
            super().step(metrics, epoch)
            return
        float(metrics)  # the same check as torch's: a number or a one-element tensor
        if epoch is None:
            self.last_epoch += 1
        else:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
            self.last_epoch = epoch
        self.warmup_calls += 1
        self._apply_warmup()


def _number(name: str, value: Any) -> float:
    """``value`` as a float; ``TypeError``/``ValueError`` naming ``name`` when it is not a
    number (or is nan)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return float(value)
