r"""Reference LARS (You et al. 2017, https://arxiv.org/abs/1708.03888).

Per tensor :math:`w` with gradient :math:`g` (2-norms over the whole tensor):

.. math::
    g &\leftarrow -g \text{ if maximize};\quad g \leftarrow \Phi_{GC}(g) \text{ if centralize} \\
    g' &= g + \lambda w \\
    \text{ratio} &= \frac{\text{tc}\, \lVert w \rVert}
        {\lVert g \rVert + \lambda \lVert w \rVert + \epsilon}
        \quad (1 \text{ if } \lVert w \rVert = 0 \text{ or } \lVert g \rVert = 0) \\
    b_1 &= \text{ratio}\, g', \quad b_t = \mu b_{t-1} + \text{ratio}\, g' \\
    d &= \text{ratio}\, g' + \mu b_t \text{ (Nesterov)}, \quad d = b_t \text{ (otherwise)},
    \quad d = \text{ratio}\, g' \text{ if } \mu = 0 \\
    w &\leftarrow w - \eta d

With ``exclude_1d``, tensors with at most one dimension use ``ratio = 1`` and ``lambda = 0`` (but
keep the momentum).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .centralize import centralize as centralize_gradient
from .driver import GradFn, State, StepFn, run


def lars_step(
    *,
    lr: float = 1e-1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    trust_coefficient: float = 1e-3,
    eps: float = 1e-8,
    nesterov: bool = False,
    exclude_1d: bool = True,
    maximize: bool = False,
    centralize: bool = False,
) -> StepFn:
    """The per-tensor LARS update as a :data:`~driver.StepFn`."""

    def step(w: torch.Tensor, g: torch.Tensor, state: State, t: int) -> torch.Tensor:
        if maximize:
            g = -g
        if centralize:
            g = centralize_gradient(g)
        excluded = exclude_1d and w.dim() <= 1
        wd = 0.0 if excluded else weight_decay
        g_prime = g + wd * w
        w_norm = torch.linalg.vector_norm(w).item()
        g_norm = torch.linalg.vector_norm(g).item()
        if excluded or w_norm == 0.0 or g_norm + wd * w_norm == 0.0:
            ratio = 1.0
        else:
            ratio = trust_coefficient * w_norm / (g_norm + wd * w_norm + eps)
        scaled = ratio * g_prime
        if momentum != 0.0:
            if "momentum_buffer" not in state:
                buf = scaled.clone()
            else:
                buf = momentum * state["momentum_buffer"] + scaled
            state["momentum_buffer"] = buf
            d = scaled + momentum * buf if nesterov else buf
        else:
            d = scaled
        return w - lr * d

    return step


def lars(
    params: Sequence[torch.Tensor],
    grad_fn: GradFn,
    steps: int,
    *,
    lr: float = 1e-1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    trust_coefficient: float = 1e-3,
    eps: float = 1e-8,
    nesterov: bool = False,
    exclude_1d: bool = True,
    maximize: bool = False,
    centralize: bool = False,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` LARS steps (see the module docstring for the rule)."""
    return run(
        params,
        grad_fn,
        steps,
        lars_step(lr=lr, momentum=momentum, weight_decay=weight_decay,
                  trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov,
                  exclude_1d=exclude_1d, maximize=maximize, centralize=centralize),
    )
