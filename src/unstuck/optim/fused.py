"""The fused execution path: when it runs, and what a fused rule gets.

A named optimizer's chain is elementwise math plus a few per-tensor reductions, so a whole step
maps onto one of torch's fused kernels (``kernels.py``: one pass over memory, the loop over
tensors in C++), fed arguments that make it compute exactly the chain's update (``fused_rules.py``).
The reference path (the chain of transforms, ``foreach`` or per tensor) stays the definition:
the fused path must agree with it to rounding, and takes over only where it applies.

Every optimizer takes ``fused: bool | None = None``, per parameter group:

- ``None`` (default): the fused path wherever it applies (dense float32/float64 tensors on a
  device with the kernel, a supported configuration) and ``foreach`` is true; silently the
  reference path elsewhere. The fused path is faster everywhere it applies (see
  ``benchmarks/step_speed.py``), so this is the automatic choice.
- ``True``: the fused path wherever it applies (whatever ``foreach`` says); where it does not, a
  ``UserWarning`` is issued once per optimizer and reason, and the reference path runs.
- ``False``: never; ``foreach`` picks the multi-tensor or the per-tensor reference path.

Some steps take the reference chain by design, without a warning: RAdam's first steps, while the
variance is not tractable (``rho_t <= n_sma_threshold``), where the update has no denominator.

torch's kernels trust their inputs (they index every tensor linearly, with the parameter's
``numel``). State is created like its parameter and ``load_state_dict`` checks shapes and
restores layouts; what nothing checks per step, as with ``torch.optim``'s own ``fused=True``,
is a parameter whose shape changes in place (``p.data = ...``) after its state exists: create
the optimizer after reshaping parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from unstuck.optim import kernels
from unstuck.optim.blocks import Workspace

__all__ = ["DTYPES", "FusedBucket", "FusedRule", "choose_rule", "warn_once"]

# The dtypes the fused path takes. The kernels also run float16/bfloat16, computing in float32
# between loads and stores, which is more accurate than the reference chain's op-by-op rounding
# and so not the same result: those dtypes keep the reference path.
DTYPES = frozenset({torch.float32, torch.float64})


@dataclass(slots=True)
class FusedBucket:
    """Parameters of one group sharing device, dtype and step count ``t``, all dense (laid out
    contiguously, as their gradients), with their gradients and state dicts."""

    group: dict[str, Any]
    params: list[Tensor]
    grads: list[Tensor]
    states: list[dict[str, Any]]
    step: int


class FusedRule:
    """How one optimizer's chain runs on fused kernels.

    Subclasses name the ``kernels`` they call (all must exist for the device), may refuse a
    configuration with :meth:`unsupported`, and implement :meth:`__call__`, which performs the
    whole step of a bucket (every transform of the chain, state included) or returns ``False``
    before touching anything, to have the reference chain run this step.
    """

    kernels: ClassVar[tuple[str, ...]] = ()

    def unsupported(self, group: dict[str, Any]) -> str | None:
        """Why this group's configuration has no fused path (``None``: it has one)."""
        return None

    def unsupported_tensors(self, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why tensors of this device and dtype have no fused path (``None``: they have one)."""
        if dtype not in DTYPES:
            return f"dtype {dtype} is not supported (float32 and float64 are)"
        missing = [k for k in self.kernels if not kernels.available(k, device)]
        if missing:
            return f"torch has no fused {'/'.join(missing)} kernel for device type {device.type!r}"
        return None

    def __call__(self, bucket: FusedBucket, workspace: Workspace) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


def choose_rule(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> FusedRule | None:
    """The fused rule for this group's step, or ``None`` for the reference path (warning once
    when ``fused=True`` was asked for and cannot be honoured)."""
    mode = group.get("fused")
    if mode is False:
        return None
    rule: FusedRule | None = getattr(type(optimizer), "fused_rule", None)
    if rule is None:
        if mode:
            warn_once(optimizer, f"{type(optimizer).__name__} has no fused path")
        return None
    if mode is None and not group.get("foreach", True):
        return None
    reason = rule.unsupported(group)
    if reason is not None:
        if mode:
            warn_once(optimizer, reason)
        return None
    return rule


def warn_once(optimizer: torch.optim.Optimizer, reason: str) -> None:
    """A ``UserWarning`` that ``fused=True`` falls back, once per optimizer and reason."""
    warned: set[str] = optimizer.__dict__.setdefault("_fused_warned", set())
    if reason in warned:
        return
    warned.add(reason)
    warnings.warn(
        f"{type(optimizer).__name__}(fused=True): {reason}; these parameters take the "
        "reference path (same result, not fused)",
        UserWarning,
        stacklevel=4,
    )
