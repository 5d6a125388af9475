"""unstuck: optimizers, schedules and diagnostics for PyTorch training that does not work yet."""

from unstuck import grad
from unstuck.factory import create_optimizer, create_scheduler
from unstuck.optim import (
    LARS,
    SGD,
    Adagrad,
    AdagradRMS,
    Adam,
    AdamW,
    Lookahead,
    RAdam,
    Ranger,
    RangerLARS,
    RMSprop,
    centralize,
)

__version__ = "0.1.0"

__all__ = [
    "LARS",
    "SGD",
    "Adagrad",
    "AdagradRMS",
    "Adam",
    "AdamW",
    "Lookahead",
    "RAdam",
    "RMSprop",
    "Ranger",
    "RangerLARS",
    "__version__",
    "centralize",
    "create_optimizer",
    "create_scheduler",
    "grad",
]
