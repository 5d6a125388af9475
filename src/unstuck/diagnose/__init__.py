"""Diagnostics: a cheap per-step monitor, Hessian analysis of critical points, an LR range test,
dead ReLU units, the gradient noise scale and symmetric (zero or constant) initialisation.

``unstuck.diagnose.hessian`` holds the Hessian tools (``hvp``, ``lanczos``, ``trace``,
``spectrum``, ``critical_point``); the names below are the ones most code needs.
"""

from unstuck.diagnose.activations import DeadUnits, dead_units
from unstuck.diagnose.degenerate import DegenerateTensor, degenerate_weights, is_symmetric_start
from unstuck.diagnose.hessian import (
    CriticalPoint,
    LanczosResult,
    Spectrum,
    TraceEstimate,
    critical_point,
    hvp,
    lanczos,
    spectrum,
    trace,
)
from unstuck.diagnose.lr_finder import LRFinderResult, lr_find
from unstuck.diagnose.monitor import Monitor, read_jsonl
from unstuck.diagnose.noise_scale import NoiseScale, gradient_noise_scale

__all__ = [
    "CriticalPoint",
    "DeadUnits",
    "DegenerateTensor",
    "LRFinderResult",
    "LanczosResult",
    "Monitor",
    "NoiseScale",
    "Spectrum",
    "TraceEstimate",
    "critical_point",
    "dead_units",
    "degenerate_weights",
    "gradient_noise_scale",
    "hvp",
    "is_symmetric_start",
    "lanczos",
    "lr_find",
    "read_jsonl",
    "spectrum",
    "trace",
]
