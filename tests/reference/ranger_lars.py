r"""Reference RangerLARS: GC + RAdam + a LAMB-style trust ratio + Lookahead.

Per tensor :math:`w` at step ``t`` (2-norms over the whole tensor):

.. math::
    g &\leftarrow -g \text{ if maximize};\quad g \leftarrow \Phi_{GC}(g) \text{ if centralize} \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
    u &= \text{RAdam direction}(m_t, v_t, t) + \lambda w
        \quad \text{(see } \texttt{ranger.radam\_direction}\text{)} \\
    \text{ratio} &= \operatorname{clamp}(\lVert w \rVert / \lVert u \rVert,
        0, \text{max\_trust\_ratio})
        \quad (1 \text{ if either norm is } 0) \\
    w &\leftarrow w - \eta\, \text{ratio}\, u

then Lookahead(k, alpha) as in Ranger.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .centralize import centralize as centralize_gradient
from .driver import GradFn, State, StepFn
from .lookahead import lookahead
from .ranger import radam_direction


def ranger_lars_inner_step(
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.95, 0.999),
    eps: float = 1e-5,
    weight_decay: float = 0.0,
    n_sma_threshold: float = 5,
    centralize: bool = True,
    max_trust_ratio: float = 10.0,
    maximize: bool = False,
) -> StepFn:
    """GC, RAdam, decoupled weight decay and the trust ratio for one tensor (no Lookahead)."""
    beta1, beta2 = betas

    def step(w: torch.Tensor, g: torch.Tensor, state: State, t: int) -> torch.Tensor:
        if maximize:
            g = -g
        if centralize:
            g = centralize_gradient(g)
        m = state.get("m", torch.zeros_like(w))
        v = state.get("v", torch.zeros_like(w))
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        state["m"], state["v"] = m, v
        u = radam_direction(m, v, t, betas, eps, n_sma_threshold) + weight_decay * w
        w_norm = torch.linalg.vector_norm(w).item()
        u_norm = torch.linalg.vector_norm(u).item()
        if w_norm == 0.0 or u_norm == 0.0:
            ratio = 1.0
        else:
            ratio = min(max(w_norm / u_norm, 0.0), max_trust_ratio)
        return w - lr * ratio * u

    return step


def ranger_lars(
    params: Sequence[torch.Tensor],
    grad_fn: GradFn,
    steps: int,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.95, 0.999),
    eps: float = 1e-5,
    weight_decay: float = 0.0,
    k: int = 6,
    alpha: float = 0.5,
    n_sma_threshold: float = 5,
    centralize: bool = True,
    max_trust_ratio: float = 10.0,
    maximize: bool = False,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` RangerLARS steps (see the module docstring)."""
    inner = ranger_lars_inner_step(
        lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, n_sma_threshold=n_sma_threshold,
        centralize=centralize, max_trust_ratio=max_trust_ratio, maximize=maximize,
    )
    return lookahead(params, grad_fn, steps, inner, k=k, alpha=alpha)
