r"""Pure learning-rate schedules: ``step -> multiplier`` of each parameter group's base lr.

A schedule is a small frozen value: calling it with ``step`` (the number of optimizer steps
already taken, 0 for the first, as torch's ``last_epoch``) gives the factor that multiplies each
parameter group's base learning rate (the convention of torch's ``LambdaLR`` and of Hugging
Face). Its ``repr`` is its text form, which :func:`unstuck.schedules.parse` reads back::

    >>> s = warmup(cosine(total=10000), steps=500)
    >>> s
    warmup(cosine(total=10000), steps=500)
    >>> s(0), s(500), s(10500)
    (0.0, 1.0, 0.0)

Schedules compare equal when their arguments are equal, hash, and pickle. A schedule with an end
(``total`` steps) holds its last value past the end. Every argument is checked when the schedule
is made, and a bad one raises ``ValueError`` (``TypeError`` for a wrong type) naming the
argument, the rule and the value: ``gamma must be > 0, got -1``. Calling a schedule with a
negative step raises ``ValueError``.

Steps may be fractional (``float``, e.g. epochs with a fraction) as with torch's
``CosineAnnealingWarmRestarts``; every formula below is written for a real ``t >= 0``.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import operator
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = [
    "SCHEDULES",
    "Schedule",
    "constant",
    "constant_with_warmup",
    "cosine",
    "cosine_restarts",
    "cosine_with_warmup",
    "exponential",
    "inverse_sqrt",
    "inverse_time",
    "join",
    "linear",
    "linear_with_warmup",
    "multistep",
    "noam",
    "one_cycle",
    "polynomial",
    "scale",
    "step_decay",
    "warmup",
    "warmup_stable_decay",
]

Step = int | float

_SHAPES = ("linear", "cosine", "sqrt")


# --------------------------------------------------------------------------------------------
# Checks: each names the argument, the rule and the value, and returns the normalized value.


def _integer(name: str, value: Any, minimum: int) -> int:
    """An ``int >= minimum``; an integral float (``1e4`` from the text form) becomes an int."""
    if isinstance(value, float) and value.is_integer():
        value_int = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    else:
        value_int = value
    if value_int < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value_int


def _real(name: str, value: Any, *, low: float = -math.inf, low_open: bool = False,
          high: float = math.inf, high_open: bool = False) -> float:
    """A finite real in the interval given by ``low``/``high`` (open where ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def _schedule(name: str, value: Any) -> Schedule:
    if not isinstance(value, Schedule):
        raise TypeError(f"{name} must be a Schedule, got {type(value).__name__} {value!r}")
    return value


def _sequence(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list, got {type(value).__name__} {value!r}")
    return tuple(value)


def _step(step: Any) -> Step:
    """The argument of a schedule: an integer (or a real, for fractional epochs) ``>= 0``."""
    if isinstance(step, float):
        value: Step = step
    elif isinstance(step, bool):
        raise TypeError(f"step must be an integer, got bool {step!r}")
    else:
        try:
            value = operator.index(step)
        except TypeError:
            raise TypeError(
                f"step must be an integer, got {type(step).__name__} {step!r}"
            ) from None
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"step must be >= 0 and finite, got {step!r}")
    return value


def _power(base: float, exponent: Step) -> float:
    """``base ** exponent``, ``inf`` where it leaves the float range (a growing schedule)."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def _set(schedule: Schedule, name: str, value: Any) -> None:
    object.__setattr__(schedule, name, value)


def _format(value: Any) -> str:
    """An argument in the text form (what :func:`unstuck.schedules.parse` reads)."""
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)  # numbers, True/False, None, schedules


# --------------------------------------------------------------------------------------------


class Schedule:
    """A learning-rate schedule: ``schedule(step)`` is the multiplier of the base learning rate.

    Subclasses are frozen dataclasses whose fields are the schedule's arguments; they implement
    ``_value(t)`` for a checked ``t >= 0``. The ``repr`` is the text form: the class name and its
    arguments by keyword, defaults left out (a wrapped schedule comes first, unnamed).

    Example:
        >>> cosine(total=100)(50)
        0.5
    """

    __slots__ = ()
    #: fields written without their name in the text form (the wrapped schedule(s))
    _positional: ClassVar[tuple[str, ...]] = ()

    def __call__(self, step: Step) -> float:
        return self._value(_step(step))

    def _value(self, t: Step) -> float:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.name in self._positional:
                parts.append(_format(value))
            elif field.default is dataclasses.MISSING or value != field.default:
                parts.append(f"{field.name}={_format(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"


_schedule_class = dataclasses.dataclass(frozen=True, repr=False)


# --------------------------------------------------------------------------------------------
# Decays


@_schedule_class
class constant(Schedule):
    r"""The base learning rate, unchanged: :math:`\lambda(t) = 1`.

    Example:
        >>> constant()(1000)
        1.0
    """

    def _value(self, t: Step) -> float:
        return 1.0


@_schedule_class
class step_decay(Schedule):
    r"""Staircase decay by ``gamma`` every ``step_size`` steps (torch's ``StepLR``).

    .. math:: \lambda(t) = \gamma^{\lfloor t / \text{step\_size} \rfloor}

    A ``gamma`` above 1 grows the learning rate (to ``inf`` past the float range).

    Example:
        >>> step_decay(step_size=30, gamma=0.1)(65)  # two decays
        0.010000000000000002
    """

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _set(self, "step_size", _integer("step_size", self.step_size, 1))
        _set(self, "gamma", _real("gamma", self.gamma, low=0.0, low_open=True))

    def _value(self, t: Step) -> float:
        return _power(self.gamma, t // self.step_size)


@_schedule_class
class multistep(Schedule):
    r"""Decay by ``gamma`` at each milestone (torch's ``MultiStepLR``).

    .. math:: \lambda(t) = \gamma^{\#\{m \in \text{milestones} : m \le t\}}

    Milestones are non-decreasing step numbers; one listed twice decays twice, as in torch.

    Example:
        >>> multistep(milestones=[30, 80], gamma=0.1)(50)
        0.1
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        milestones = tuple(
            _integer(f"milestones[{i}]", m, 0)
            for i, m in enumerate(_sequence("milestones", self.milestones))
        )
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be in increasing order, got {list(milestones)}")
        _set(self, "milestones", milestones)
        _set(self, "gamma", _real("gamma", self.gamma, low=0.0, low_open=True))

    def _value(self, t: Step) -> float:
        return _power(self.gamma, bisect.bisect_right(self.milestones, t))


@_schedule_class
class exponential(Schedule):
    r"""Exponential decay (torch's ``ExponentialLR`` for ``every=1``; Keras' ``ExponentialDecay``).

    .. math:: \lambda(t) = \gamma^{t / \text{every}}
        \quad(\lfloor t / \text{every} \rfloor \text{ when staircase})

    A ``gamma`` above 1 grows the learning rate (as in an LR range test; ``inf`` past the
    float range).

    Example:
        >>> exponential(gamma=0.5, every=10)(20)
        0.25
    """

    gamma: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        _set(self, "gamma", _real("gamma", self.gamma, low=0.0, low_open=True))
        _set(self, "every", _integer("every", self.every, 1))
        _set(self, "staircase", _flag("staircase", self.staircase))

    def _value(self, t: Step) -> float:
        e = t // self.every if self.staircase else t / self.every
        return _power(self.gamma, e)


@_schedule_class
class inverse_time(Schedule):
    r"""Inverse-time decay, the lectures' ``1 / (1 + decay_rate * epoch)``.

    .. math:: \lambda(t) = \frac{1}{1 + \text{decay\_rate} \cdot t / \text{every}}
        \quad(\lfloor t / \text{every} \rfloor \text{ when staircase})

    Reference: Keras' ``InverseTimeDecay``.

    Example:
        >>> inverse_time(decay_rate=1.0)(3)
        0.25
    """

    decay_rate: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        _set(self, "decay_rate", _real("decay_rate", self.decay_rate, low=0.0))
        _set(self, "every", _integer("every", self.every, 1))
        _set(self, "staircase", _flag("staircase", self.staircase))

    def _value(self, t: Step) -> float:
        e = t // self.every if self.staircase else t / self.every
        return 1.0 / (1.0 + self.decay_rate * e)


@_schedule_class
class polynomial(Schedule):
    r"""Polynomial decay from 1 to ``final`` over ``total`` steps (torch's ``PolynomialLR``
    when ``final = 0``); holds ``final`` afterwards.

    .. math:: \lambda(t) = f + (1 - f)\,\bigl(1 - \min(t, T)/T\bigr)^{p}

    Example:
        >>> polynomial(total=100, power=2.0)(50)
        0.25
    """

    total: int
    power: float = 1.0
    final: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 1))
        _set(self, "power", _real("power", self.power, low=0.0, low_open=True))
        _set(self, "final", _real("final", self.final, low=0.0))

    def _value(self, t: Step) -> float:
        return self.final + (1.0 - self.final) * (
            1.0 - min(self.total, t) / self.total
        ) ** self.power


@_schedule_class
class linear(Schedule):
    r"""Linear interpolation from ``start`` to ``end`` over ``total`` steps (torch's
    ``LinearLR(start_factor, end_factor, total_iters)``); holds ``end`` afterwards.

    .. math:: \lambda(t) = s + (e - s)\,\min(t, T) / T

    Example:
        >>> linear(total=10, start=1.0, end=0.5)(5)
        0.75
    """

    total: int
    start: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 1))
        _set(self, "start", _real("start", self.start, low=0.0))
        _set(self, "end", _real("end", self.end, low=0.0))

    def _value(self, t: Step) -> float:
        return self.start + (self.end - self.start) * min(self.total, t) / self.total


@_schedule_class
class cosine(Schedule):
    r"""Cosine annealing from 1 to ``final`` over ``total`` steps; holds ``final`` afterwards
    (torch's ``CosineAnnealingLR(T_max=total, eta_min=final * base_lr)``, closed form).

    .. math:: \lambda(t) = f + (1 - f)\,\frac{1 + \cos(\pi \min(t, T) / T)}{2}

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.

    Example:
        >>> cosine(total=100, final=0.1)(100)
        0.1
    """

    total: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 1))
        _set(self, "final", _real("final", self.final, low=0.0))

    def _value(self, t: Step) -> float:
        t = min(t, self.total)
        return self.final + (1.0 - self.final) * (1 + math.cos(math.pi * t / self.total)) / 2


@_schedule_class
class cosine_restarts(Schedule):
    r"""Cosine annealing with warm restarts, SGDR (torch's ``CosineAnnealingWarmRestarts``).

    The first cycle lasts :math:`T_0` steps, each next one ``t_mult`` times longer; within a
    cycle of length :math:`T_i`, with :math:`t_c` steps since its restart,

    .. math:: \lambda(t) = f + (1 - f)\,\frac{1 + \cos(\pi t_c / T_i)}{2}

    It never ends.

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.

    Example:
        >>> cosine_restarts(t0=10)(15), cosine_restarts(t0=10)(20)
        (0.5, 1.0)
    """

    t0: int
    t_mult: int = 1
    final: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "t0", _integer("t0", self.t0, 1))
        _set(self, "t_mult", _integer("t_mult", self.t_mult, 1))
        _set(self, "final", _real("final", self.final, low=0.0))

    def _value(self, t: Step) -> float:
        period = self.t0
        if self.t_mult == 1:
            t = t % period
        else:
            while t >= period:
                t -= period
                period *= self.t_mult
        return self.final + (1.0 - self.final) * (1 + math.cos(math.pi * t / period)) / 2


@_schedule_class
class noam(Schedule):
    r"""The Transformer's schedule: linear warm-up, then inverse square-root decay.

    .. math:: \lambda(t) = d^{-1/2} \min\bigl(n^{-1/2},\ n\,w^{-3/2}\bigr), \quad n = t + 1

    With base lr 1 these are the paper's learning rates, peaking at step ``warmup - 1``
    (:math:`6.9877 \times 10^{-4}` for ``d_model=512, warmup=4000``); a base lr other than 1
    acts as the paper's scale factor.

    Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 5.3.

    Example:
        >>> round(noam(d_model=512, warmup=4000)(3999), 8)
        0.00069877
    """

    d_model: int
    warmup: int

    def __post_init__(self) -> None:
        _set(self, "d_model", _integer("d_model", self.d_model, 1))
        _set(self, "warmup", _integer("warmup", self.warmup, 1))

    def _value(self, t: Step) -> float:
        n = t + 1
        return self.d_model**-0.5 * min(n**-0.5, n * self.warmup**-1.5)


@_schedule_class
class one_cycle(Schedule):
    r"""The 1cycle policy as a multiplier of the maximum learning rate (torch's ``OneCycleLR``
    with ``anneal_strategy="cos"``, ``three_phase=False``; base lr = ``max_lr``).

    With :math:`a = 1/\text{div\_factor}` (initial), :math:`b = a/\text{final\_div\_factor}`
    (minimum), phase ends :math:`e_1 = \text{pct\_start}\cdot T - 1` and :math:`e_2 = T - 1`, and
    :math:`c(x, y, p) = y + (x - y)(1 + \cos \pi p)/2`:

    .. math::
        \lambda(t) = \begin{cases}
            c(a, 1, t / e_1) & t \le e_1 \\
            c(1, b, (t - e_1)/(e_2 - e_1)) & e_1 < t \le e_2
        \end{cases}

    It lasts ``total`` steps (the last is ``total - 1``) and holds :math:`b` afterwards (torch
    raises instead). ``pct_start * total`` must exceed 1, so the warm-up phase is not empty.

    Reference: Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using
    Large Learning Rates", 2017.

    Example:
        >>> one_cycle(total=1000)(299)
        1.0
    """

    total: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 2))
        _set(self, "pct_start",
             _real("pct_start", self.pct_start, low=0.0, low_open=True, high=1.0, high_open=True))
        _set(self, "div_factor", _real("div_factor", self.div_factor, low=0.0, low_open=True))
        _set(self, "final_div_factor",
             _real("final_div_factor", self.final_div_factor, low=0.0, low_open=True))
        if not self.pct_start * self.total > 1:
            raise ValueError(
                f"pct_start must be > 1/total = {1 / self.total:g} (pct_start * total steps of "
                f"warm-up, at least one), got {self.pct_start!r}"
            )

    def _value(self, t: Step) -> float:
        initial = 1.0 / self.div_factor
        end1 = float(self.pct_start * self.total) - 1
        end2 = self.total - 1
        if t <= end1:
            start, end, pct = initial, 1.0, t / end1
        else:
            start, end = 1.0, initial / self.final_div_factor
            pct = (min(t, end2) - end1) / (end2 - end1)
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


@_schedule_class
class warmup_stable_decay(Schedule):
    r"""Warm-up, stable, decay (WSD): linear warm-up from 0 over ``warmup`` steps, 1 for
    ``stable`` steps, then a decay to ``final`` over ``decay`` steps; holds ``final`` afterwards.

    With :math:`p = \min\bigl(1, (t - w - s)/\max(1, d)\bigr)` in the decay phase,

    .. math:: \lambda(t) = f + (1 - f)\,g(p),\quad
        g(p) = 1 - p \ (\text{linear}),\ \tfrac{1}{2}(1 + \cos \pi p)\ (\text{cosine}),\
        1 - \sqrt{p}\ (\text{sqrt})

    and :math:`\lambda(t) = t / \max(1, w)` during the warm-up (Hugging Face's
    ``get_wsd_schedule``, with ``"sqrt"`` for its ``"1-sqrt"``).

    References: Hu et al., "MiniCPM", 2024; Hägele et al., "Scaling Laws and Compute-Optimal
    Training beyond Fixed Training Durations", 2024.

    Example:
        >>> s = warmup_stable_decay(warmup=10, stable=80, decay=10, shape="cosine")
        >>> s(5), s(50), s(95), s(100)
        (0.5, 1.0, 0.5, 0.0)
    """

    warmup: int
    stable: int
    decay: int
    final: float = 0.0
    shape: str = "linear"

    def __post_init__(self) -> None:
        _set(self, "warmup", _integer("warmup", self.warmup, 0))
        _set(self, "stable", _integer("stable", self.stable, 0))
        _set(self, "decay", _integer("decay", self.decay, 0))
        _set(self, "final", _real("final", self.final, low=0.0))
        if self.shape not in _SHAPES:
            raise ValueError(
                f"shape must be one of {', '.join(map(repr, _SHAPES))}, got {self.shape!r}"
            )

    def _value(self, t: Step) -> float:
        if t < self.warmup:
            return t / max(1, self.warmup)
        if t < self.warmup + self.stable:
            return 1.0
        p = min(1.0, (t - self.warmup - self.stable) / max(1, self.decay))
        if self.shape == "linear":
            g = 1.0 - p
        elif self.shape == "cosine":
            g = 0.5 * (1.0 + math.cos(math.pi * p))
        else:
            g = 1.0 - math.sqrt(p)
        return self.final + (1.0 - self.final) * g


# --------------------------------------------------------------------------------------------
# Combinators


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


# --------------------------------------------------------------------------------------------
# Hugging Face's schedules, with their exact formulas


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


#: Every schedule by its name in the text form.
SCHEDULES: MappingProxyType[str, type[Schedule]] = MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            constant, step_decay, multistep, exponential, inverse_time, polynomial, linear,
            cosine, cosine_restarts, noam, one_cycle, warmup_stable_decay, warmup, join, scale,
            linear_with_warmup, cosine_with_warmup, constant_with_warmup, inverse_sqrt,
        )
    }
)
