"""Optimizers built from composable multi-tensor transforms."""

from unstuck.optim.base import Bucket, ChainOptimizer, Transform
from unstuck.optim.centralization import GradientCentralization, centralize, centralized
from unstuck.optim.lookahead import Lookahead
from unstuck.optim.optimizers import (
    LARS,
    SGD,
    Adagrad,
    AdagradRMS,
    Adam,
    AdamW,
    RAdam,
    Ranger,
    RangerLARS,
    RMSprop,
)
from unstuck.optim.wrapper import OptimizerWrapper

__all__ = [
    "LARS",
    "SGD",
    "Adagrad",
    "AdagradRMS",
    "Adam",
    "AdamW",
    "Bucket",
    "ChainOptimizer",
    "GradientCentralization",
    "Lookahead",
    "OptimizerWrapper",
    "RAdam",
    "RMSprop",
    "Ranger",
    "RangerLARS",
    "Transform",
    "centralize",
    "centralized",
]
