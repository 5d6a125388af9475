"""The loop every reference shares: gradients in, one per-tensor update at a time, params out.

A reference optimizer is a :data:`StepFn`: it maps one parameter tensor ``p``, its gradient ``g``,
its own state ``dict`` and the 1-based step number ``t`` to the new parameter tensor. :func:`run`
applies it to every tensor of a problem for ``steps`` steps. Everything is out of place and per
tensor, so a reference reads like the equations it copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

GradFn = Callable[[Sequence[torch.Tensor], int], list[torch.Tensor]]
"""``grad_fn(params, step) -> grads`` with ``step = 0, 1, 2, ...`` (as in ``tests/support.py``)."""

State = dict[str, Any]
"""The per-tensor state of a reference step (moments, momentum buffer, ...)."""

StepFn = Callable[[torch.Tensor, torch.Tensor, State, int], torch.Tensor]
"""``step_fn(p, g, state, t) -> new p`` for one tensor at step ``t = 1, 2, ...``."""


def clone_all(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Detached copies of ``params``, in their own dtype."""
    return [p.detach().clone() for p in params]


def run(
    params: Sequence[torch.Tensor], grad_fn: GradFn, steps: int, step_fn: StepFn
) -> list[torch.Tensor]:
    """Apply ``step_fn`` to every tensor for ``steps`` steps and return the final parameters.

    At step ``t = step + 1`` the gradients are ``grad_fn(current params, step)``, each tensor is
    updated independently, ``p_t = step_fn(p_{t-1}, g_t, state, t)``.

    Example:
        >>> p = run([torch.ones(2)], lambda ps, s: [torch.ones(2)], 3,
        ...         lambda p, g, state, t: p - 0.5 * g)
        >>> p[0].tolist()
        [-0.5, -0.5]
    """
    current = clone_all(params)
    states: list[State] = [{} for _ in current]
    for step in range(steps):
        t = step + 1
        grads = grad_fn(current, step)
        current = [
            step_fn(p, g, state, t) for p, g, state in zip(current, grads, states, strict=True)
        ]
    return current
