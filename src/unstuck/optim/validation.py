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


def not_differentiable(name: str, value: Any) -> None:
    """torch.optim's ``differentiable``: a ``bool``, and only ``False`` is supported.

    unstuck's step runs under ``torch.no_grad()`` and writes parameters and state in place
    (multi-tensor ops, fused kernels), so autograd cannot trace it; ``True`` is refused rather
    than silently ignored.
    """
    flag(name, value)
    if value:
        raise ValueError(
            f"{name}=True is not supported: unstuck's step runs under torch.no_grad() and updates "
            "parameters and state in place (multi-tensor and fused kernels), so autograd cannot "
            f"differentiate through it; use {name}=False (the default) or torch.optim's optimizer"
        )


def nesterov_momentum(
    values: dict[str, Any], defaults: dict[str, Any], *, dampening: bool
) -> None:
    """``nesterov=True`` needs ``momentum > 0`` (and ``dampening == 0`` where the optimizer has
    dampening), checked on ``values`` merged with ``defaults``: a parameter group takes the
    values it does not set from the defaults, as ``add_param_group`` will fill them in."""
    merged = {**defaults, **values}
    if not merged.get("nesterov"):
        return
    momentum = merged.get("momentum", 0)
    damp = merged.get("dampening", 0) if dampening else 0
    if momentum <= 0 or damp:
        rule = "momentum > 0 and dampening == 0" if dampening else "momentum > 0"
        got = f"momentum={momentum!r}" + (f", dampening={damp!r}" if dampening else "")
        raise ValueError(f"nesterov=True requires {rule}, got {got}")


def _capturable_devices() -> list[str]:
    try:
        from torch.optim.optimizer import _get_capturable_supported_devices
    except ImportError:  # pragma: no cover - torch moved it
        return ["cuda", "xpu", "hpu"]
    return list(_get_capturable_supported_devices())


def capturable_step(groups: list[dict[str, Any]]) -> None:
    """What torch.optim checks at a step of a ``capturable=True`` group, and what unstuck cannot.

    - A parameter not on a device that supports capture (a CPU tensor): ``AssertionError`` with
      torch's message (torch.optim's Adam, AdamW, RAdam and RMSprop raise exactly this).
    - The step being captured in a CUDA graph: ``RuntimeError``. unstuck keeps step counts and
      per-step scalars (bias corrections, rectification) as Python numbers, which a captured
      graph would freeze at their first values; uncaptured, ``capturable=True`` runs the same
      step as ``capturable=False``.
    """
    devices: list[str] | None = None
    on_cuda = False
    for index, group in enumerate(groups):
        if not group.get("capturable"):
            continue
        for i, p in enumerate(group["params"]):
            if p.grad is None:  # takes no step (torch checks the parameters with gradients)
                continue
            if devices is None:
                devices = _capturable_devices()
            if p.device.type not in devices:
                raise AssertionError(
                    "If capturable=True, params and state_steps must be on supported devices: "
                    f"{devices}. (param_groups[{index}]['params'][{i}] is on {p.device})"
                )
            on_cuda = on_cuda or p.device.type == "cuda"
    if on_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "capturable=True: unstuck's step cannot be captured in a CUDA graph (step counts, "
            "bias corrections and the learning rate are Python numbers a graph would freeze); "
            "run the step eagerly, or use torch.optim's optimizer with capturable=True"
        )
