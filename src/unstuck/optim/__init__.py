"""Optimizers built from composable multi-tensor transforms."""

from unstuck.optim.base import Bucket, ChainOptimizer, Transform
from unstuck.optim.centralization import GradientCentralization, centralize, centralized
from unstuck.optim.composed import LARS, Ranger, RangerLARS
from unstuck.optim.lookahead import Lookahead
from unstuck.optim.optimizers import SGD, Adagrad, AdagradRMS, Adam, AdamW, RAdam, RMSprop
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
