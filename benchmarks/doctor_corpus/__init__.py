"""The doctor's scenario corpus: importing the package fills :data:`CASES` with every part.

The calibration part (MLPs and linear models on tabular data) is always there; the development
(``development_*.py``) and held-out (``heldout_*.py``) modules, on other model families, are
imported when present.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import BENIGN, CASES, PARTS, Case, Proof, register

__all__ = ["BENIGN", "CASES", "PARTS", "Case", "Proof", "register"]

for _name in ("calibration", "calibration_dynamics"):
    importlib.import_module(f"{__name__}.{_name}")
for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name.startswith(("development_", "heldout_")):
        importlib.import_module(f"{__name__}.{_module.name}")
