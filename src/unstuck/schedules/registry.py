"""The registry of schedules by their name in the text form, built in this one place from the
classes of :mod:`~unstuck.schedules.decay`, :mod:`~unstuck.schedules.combinators` and
:mod:`~unstuck.schedules.huggingface` (which import only :mod:`~unstuck.schedules.base`).
"""

from __future__ import annotations

from types import MappingProxyType

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

__all__ = ["SCHEDULES"]

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
