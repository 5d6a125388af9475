"""Diagnostics: a cheap per-step monitor, Hessian analysis of critical points, an LR range test.

``unstuck.diagnose.hessian`` holds the Hessian tools (``hvp``, ``lanczos``, ``trace``,
``spectrum``, ``critical_point``); the names below are the ones most code needs.
"""

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

__all__ = [
    "CriticalPoint",
    "LRFinderResult",
    "LanczosResult",
    "Monitor",
    "Spectrum",
    "TraceEstimate",
    "critical_point",
    "hvp",
    "lanczos",
    "lr_find",
    "read_jsonl",
    "spectrum",
    "trace",
]
