"""Checks of hyper-parameters: each raises ``ValueError`` naming the argument, value and rule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

Check = Callable[[str, Any], None]


def _number(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {list(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return float(value)


def non_negative(name: str, value: Any) -> None:
    """``value >= 0`` (finite)."""
    v = _number(name, value)
    if not 0.0 <= v < math.inf:
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")


def positive(name: str, value: Any) -> None:
    """``value > 0`` (finite)."""
    v = _number(name, value)
    if not 0.0 < v < math.inf:
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")


def unit_interval_open_right(name: str, value: Any) -> None:
    """``0 <= value < 1`` (a decay rate such as a beta)."""
    v = _number(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def unit_interval(name: str, value: Any) -> None:
    """``0 <= value <= 1`` (an interpolation weight)."""
    v = _number(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def betas(name: str, value: Any) -> None:
    """A pair ``(beta1, beta2)``, each in ``[0, 1)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    for i, beta in enumerate(value):
        unit_interval_open_right(f"{name}[{i}]", beta)


def rectification_threshold(name: str, value: Any) -> None:
    """RAdam's ``n_sma_threshold``: at least 4, where the rectification term is defined."""
    v = _number(name, value)
    if not 4.0 <= v < math.inf:
        raise ValueError(
            f"{name} must be >= 4 (the rectification needs rho_t > 4), got {value!r}"
        )


def flag(name: str, value: Any) -> None:
    """A ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def optional_flag(name: str, value: Any) -> None:
    """``None`` (an automatic choice) or a ``bool``."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(
            f"{name} must be None (automatic choice), True or False, got "
            f"{type(value).__name__} {value!r}"
        )


def positive_int(name: str, value: Any) -> None:
    """An ``int >= 1``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_all(values: dict[str, Any], rules: dict[str, Check]) -> None:
    """Apply ``rules[name]`` to ``values[name]`` for every rule whose name is present."""
    for name, rule in rules.items():
        if name in values:
            rule(name, values[name])
