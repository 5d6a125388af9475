r"""Hugging Face's schedules, with their exact formulas (``transformers.optimization``):
linear_with_warmup, cosine_with_warmup, constant_with_warmup and inverse_sqrt.
"""

from __future__ import annotations

import math

from unstuck.schedules.base import Schedule, Step, _integer, _real, _schedule_class, _set

__all__ = [
    "constant_with_warmup",
    "cosine_with_warmup",
    "inverse_sqrt",
    "linear_with_warmup",
]


def _check_warmup_total(schedule: Schedule) -> None:
    _set(schedule, "warmup", _integer("warmup", schedule.warmup, 0))  # type: ignore[attr-defined]
    _set(schedule, "total", _integer("total", schedule.total, 1))  # type: ignore[attr-defined]
    if schedule.warmup > schedule.total:  # type: ignore[attr-defined]
        raise ValueError(
            f"warmup must be <= total ({schedule.total}), "  # type: ignore[attr-defined]
            f"got {schedule.warmup}"  # type: ignore[attr-defined]
        )


@_schedule_class
class linear_with_warmup(Schedule):
    r"""Linear warm-up from 0, then linear decay to 0 at ``total`` (Hugging Face's
    ``get_linear_schedule_with_warmup``); holds 0 afterwards.

    .. math:: \lambda(t) = \begin{cases}
            t / \max(1, W) & t < W \\
            \max\bigl(0, (T - t) / \max(1, T - W)\bigr) & t \ge W
        \end{cases}

    Example:
        >>> linear_with_warmup(warmup=10, total=110)(60)
        0.5
    """

    warmup: int
    total: int

    def __post_init__(self) -> None:
        _check_warmup_total(self)

    def _value(self, t: Step) -> float:
        if t < self.warmup:
            return t / max(1, self.warmup)
        return max(0.0, (self.total - t) / max(1, self.total - self.warmup))


@_schedule_class
class cosine_with_warmup(Schedule):
    r"""Linear warm-up from 0, then ``num_cycles`` cosine periods ending at ``total`` (Hugging
    Face's ``get_cosine_schedule_with_warmup``; the default half period decays to 0); holds its
    value at ``total`` afterwards.

    .. math:: \lambda(t) = \begin{cases}
            t / \max(1, W) & t < W \\
            \max\bigl(0, \tfrac{1}{2}(1 + \cos(2\pi c\, p))\bigr),\
            p = \frac{\min(t, T) - W}{\max(1, T - W)} & t \ge W
        \end{cases}

    Example:
        >>> cosine_with_warmup(warmup=10, total=110)(60)
        0.5
    """

    warmup: int
    total: int
    num_cycles: float = 0.5

    def __post_init__(self) -> None:
        _check_warmup_total(self)
        _set(self, "num_cycles", _real("num_cycles", self.num_cycles, low=0.0, low_open=True))

    def _value(self, t: Step) -> float:
        if t < self.warmup:
            return t / max(1, self.warmup)
        progress = (min(t, self.total) - self.warmup) / max(1, self.total - self.warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * self.num_cycles * 2.0 * progress)))


@_schedule_class
class constant_with_warmup(Schedule):
    r"""Linear warm-up from 0, then constant (Hugging Face's
    ``get_constant_schedule_with_warmup``).

    .. math:: \lambda(t) = \min\bigl(1, t / \max(1, W)\bigr)

    Example:
        >>> constant_with_warmup(warmup=10)(5)
        0.5
    """

    warmup: int

    def __post_init__(self) -> None:
        _set(self, "warmup", _integer("warmup", self.warmup, 0))

    def _value(self, t: Step) -> float:
        if t < self.warmup:
            return t / max(1, self.warmup)
        return 1.0


@_schedule_class
class inverse_sqrt(Schedule):
    r"""Linear warm-up from 0, then inverse square-root decay (Hugging Face's
    ``get_inverse_sqrt_schedule``, after big_vision's).

    With time scale :math:`\tau` (``timescale``, by default ``warmup``):

    .. math:: \lambda(t) = \begin{cases}
            t / \max(1, W) & t < W \\
            1 / \sqrt{(t + \tau - W) / \tau} & t \ge W
        \end{cases}

    so with the default :math:`\lambda(t) = 1/\sqrt{t / W}` after the warm-up.

    Example:
        >>> inverse_sqrt(warmup=100)(400)
        0.5
    """

    warmup: int
    timescale: int | None = None

    def __post_init__(self) -> None:
        _set(self, "warmup", _integer("warmup", self.warmup, 0))
        if self.timescale is not None:
            _set(self, "timescale", _integer("timescale", self.timescale, 1))
        elif self.warmup < 1:
            raise ValueError(
                f"warmup must be >= 1 when timescale is not given (it defaults to warmup), "
                f"got {self.warmup}"
            )

    def _value(self, t: Step) -> float:
        if t < self.warmup:
            return t / max(1, self.warmup)
        timescale = self.warmup if self.timescale is None else self.timescale
        shift = timescale - self.warmup
        return 1.0 / math.sqrt((t + shift) / timescale)

