"""Slow, obviously-correct reference optimizers, written per tensor straight from the equations.

Each reference takes the initial parameters (cloned, never modified; computed in their own
dtype), a gradient function ``grad_fn(params, step)`` with ``step = 0, 1, 2, ...`` and a number of
steps, and returns the final parameters. No ``torch.optim`` and no ``unstuck`` in here: the
parity tests compare both against these.
"""

from .adam import adam, adam_step
from .centralize import centralize
from .driver import GradFn, State, StepFn, run
from .lars import lars, lars_step
from .lookahead import lookahead
from .ranger import radam_direction, ranger, ranger_inner_step, rectification, rho
from .ranger_lars import ranger_lars, ranger_lars_inner_step
from .sgd import sgd, sgd_step

__all__ = [
    "GradFn",
    "State",
    "StepFn",
    "adam",
    "adam_step",
    "centralize",
    "lars",
    "lars_step",
    "lookahead",
    "radam_direction",
    "ranger",
    "ranger_inner_step",
    "ranger_lars",
    "ranger_lars_inner_step",
    "rectification",
    "rho",
    "run",
    "sgd",
    "sgd_step",
]
