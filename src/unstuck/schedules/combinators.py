r"""Combinators: schedules built from other schedules (warmup, join, scale).

Example:
    >>> from unstuck.schedules.decay import constant
    >>> scale(warmup(constant(), steps=4), factor=0.5)(2)
    0.25
"""

from __future__ import annotations

import bisect
from typing import ClassVar

from unstuck.schedules.base import (
    Schedule,
    Step,
    _integer,
    _real,
    _schedule,
    _schedule_class,
    _sequence,
    _set,
)

__all__ = ["join", "scale", "warmup"]


@_schedule_class
class warmup(Schedule):
    r"""A linear warm-up of ``steps`` steps in front of any schedule.

    The wrapped schedule's clock starts after the warm-up: it sees step ``t - steps``. During the
    warm-up the multiplier goes linearly from ``start`` (at step 0) towards the wrapped
    schedule's first value :math:`\lambda_0 = \text{schedule}(0)`, which it reaches at step
    ``steps``:

    .. math:: \lambda(t) = \begin{cases}
            s + (\lambda_0 - s)\, t / W & t < W \\
            \text{schedule}(t - W) & t \ge W
        \end{cases}

    So ``warmup(cosine(total=N), steps=W)`` lasts ``W + N`` steps, and
    ``warmup(constant(), steps=W)`` equals Hugging Face's constant schedule with warm-up.

    Reference: Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017.

    Example:
        >>> s = warmup(cosine(total=100), steps=10)
        >>> s(0), s(5), s(10), s(60)
        (0.0, 0.5, 1.0, 0.5)
    """

    schedule: Schedule
    steps: int
    start: float = 0.0

    _positional: ClassVar[tuple[str, ...]] = ("schedule",)

    def __post_init__(self) -> None:
        _schedule("schedule", self.schedule)
        _set(self, "steps", _integer("steps", self.steps, 0))
        _set(self, "start", _real("start", self.start, low=0.0))

    def _value(self, t: Step) -> float:
        if t < self.steps:
            return self.start + (self.schedule._value(0) - self.start) * (t / self.steps)
        return self.schedule._value(t - self.steps)


@_schedule_class
class join(Schedule):
    r"""Schedules one after another: ``schedules[i]`` runs from ``boundaries[i-1]`` (its clock
    starting at 0 there) to ``boundaries[i]``; the last one runs for ever.

    .. math:: \lambda(t) = \lambda_i(t - b_{i-1}),\quad b_{i-1} \le t < b_i,\ b_{-1} = 0

    Reference: optax's ``join_schedules``.

    Example:
        >>> s = join([constant(), linear(total=10)], boundaries=[100])
        >>> s(99), s(105)
        (1.0, 0.5)
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    _positional: ClassVar[tuple[str, ...]] = ("schedules",)

    def __post_init__(self) -> None:
        schedules = tuple(
            _schedule(f"schedules[{i}]", s)
            for i, s in enumerate(_sequence("schedules", self.schedules))
        )
        if not schedules:
            raise ValueError("schedules must hold at least one schedule, got []")
        boundaries = tuple(
            _integer(f"boundaries[{i}]", b, 1)
            for i, b in enumerate(_sequence("boundaries", self.boundaries))
        )
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(
                f"boundaries must hold one step fewer than schedules ({len(schedules) - 1}), "
                f"got {list(boundaries)}"
            )
        if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {list(boundaries)}")
        _set(self, "schedules", schedules)
        _set(self, "boundaries", boundaries)

    def _value(self, t: Step) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        return self.schedules[i]._value(t - self.boundaries[i - 1] if i else t)


@_schedule_class
class scale(Schedule):
    r"""A schedule times a constant: :math:`\lambda(t) = \text{factor} \cdot \text{schedule}(t)`.

    Example:
        >>> scale(constant(), factor=0.5)(7)
        0.5
    """

    schedule: Schedule
    factor: float

    _positional: ClassVar[tuple[str, ...]] = ("schedule",)

    def __post_init__(self) -> None:
        _schedule("schedule", self.schedule)
        _set(self, "factor", _real("factor", self.factor, low=0.0))

    def _value(self, t: Step) -> float:
        return self.factor * self.schedule._value(t)

