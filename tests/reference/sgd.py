r"""Reference SGD with momentum, exactly as ``torch.optim.SGD`` documents it, plus optional GC.

Per tensor, at step ``t``:

.. math::
    g &\leftarrow -g \text{ if maximize};\quad g \leftarrow \Phi_{GC}(g) \text{ if centralize};
    \quad g \leftarrow g + \lambda p \\
    b_1 &= g,\quad b_t = \mu b_{t-1} + (1 - \tau) g \\
    d &= g + \mu b_t \text{ (Nesterov)},\quad d = b_t \text{ (otherwise)},
    \quad d = g \text{ if } \mu = 0 \\
    p &\leftarrow p - \eta d
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .centralize import centralize as centralize_gradient
from .driver import GradFn, State, StepFn, run


def sgd_step(
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    centralize: bool = False,
) -> StepFn:
    """The per-tensor SGD update as a :data:`~driver.StepFn` (for :func:`lookahead.lookahead`)."""

    def step(p: torch.Tensor, g: torch.Tensor, state: State, t: int) -> torch.Tensor:
        if maximize:
            g = -g
        if centralize:
            g = centralize_gradient(g)
        if weight_decay != 0.0:
            g = g + weight_decay * p
        if momentum != 0.0:
            if "momentum_buffer" not in state:
                buf = g.clone()
            else:
                buf = momentum * state["momentum_buffer"] + (1.0 - dampening) * g
            state["momentum_buffer"] = buf
            d = g + momentum * buf if nesterov else buf
        else:
            d = g
        return p - lr * d

    return step


def sgd(
    params: Sequence[torch.Tensor],
    grad_fn: GradFn,
    steps: int,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    centralize: bool = False,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` SGD steps (see the module docstring for the rule)."""
    return run(
        params,
        grad_fn,
        steps,
        sgd_step(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                 weight_decay=weight_decay, maximize=maximize, centralize=centralize),
    )
