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

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = ["Schedule", "Step"]

Step = int | float


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
