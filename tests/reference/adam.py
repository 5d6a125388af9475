r"""Reference Adam (Kingma & Ba 2015), with L2 weight decay as ``torch.optim.Adam`` applies it.

Per tensor, at step ``t``:

.. math::
    g &\leftarrow -g \text{ if maximize};\quad g \leftarrow g + \lambda p \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g,\quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
    p &\leftarrow p - \eta \frac{m_t / (1 - \beta_1^t)}
        {\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .driver import GradFn, State, StepFn, run


def adam_step(
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> StepFn:
    """The per-tensor Adam update as a :data:`~driver.StepFn`."""
    beta1, beta2 = betas

    def step(p: torch.Tensor, g: torch.Tensor, state: State, t: int) -> torch.Tensor:
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
        m = state.get("m", torch.zeros_like(p))
        v = state.get("v", torch.zeros_like(p))
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        state["m"], state["v"] = m, v
        bias_correction1 = 1.0 - math.pow(beta1, t)
        bias_correction2 = 1.0 - math.pow(beta2, t)
        m_hat = m / bias_correction1
        return p - lr * m_hat / (v.sqrt() / math.sqrt(bias_correction2) + eps)

    return step


def adam(
    params: Sequence[torch.Tensor],
    grad_fn: GradFn,
    steps: int,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` Adam steps (see the module docstring for the rule)."""
    return run(
        params,
        grad_fn,
        steps,
        adam_step(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize),
    )
