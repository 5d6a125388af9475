"""Learning-rate schedules: pure ``step -> multiplier`` functions, their text form, and the
schedulers that drive an optimizer with them.

Example:
    >>> from unstuck.schedules import cosine, parse, warmup
    >>> s = warmup(cosine(total=10000), steps=500)
    >>> parse(repr(s)) == s
    True
"""

from unstuck.schedules.base import Schedule
from unstuck.schedules.combinators import join, scale, warmup
from unstuck.schedules.decay import (
    constant,
    cosine,
    cosine_restarts,
    exponential,
    inverse_time,
    linear,
    multistep,
    noam,
    one_cycle,
    polynomial,
    step_decay,
    warmup_stable_decay,
)
from unstuck.schedules.huggingface import (
    constant_with_warmup,
    cosine_with_warmup,
    inverse_sqrt,
    linear_with_warmup,
)
from unstuck.schedules.parse import ScheduleSyntaxError, parse
from unstuck.schedules.registry import SCHEDULES
from unstuck.schedules.scheduler import ReduceLROnPlateau, Scheduler

__all__ = [
    "SCHEDULES",
    "ReduceLROnPlateau",
    "Schedule",
    "ScheduleSyntaxError",
    "Scheduler",
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
    "parse",
    "polynomial",
    "scale",
    "step_decay",
    "warmup",
    "warmup_stable_decay",
]
