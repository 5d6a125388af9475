r"""Reference Ranger: Gradient Centralization + RAdam + Lookahead.

RAdam is Liu et al. 2020 (https://arxiv.org/abs/1908.03265), Lookahead Zhang et al. 2019, GC Yong
et al. 2020. Per tensor, at step ``t = 1, 2, ...``:

.. math::
    g &\leftarrow -g \text{ if maximize};\quad g \leftarrow \Phi_{GC}(g) \text{ if centralize} \\
    p &\leftarrow p (1 - \eta \lambda) \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
    \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \quad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
    p &\leftarrow p - \eta\, r_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \frac{m_t}{\sqrt{v_t} + \epsilon}
        \text{ if } \rho_t > \text{n\_sma\_threshold}, \quad
    r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
        {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
    p &\leftarrow p - \eta \frac{m_t}{1 - \beta_1^t} \text{ otherwise}

then Lookahead(k, alpha) over the whole thing (:func:`lookahead.lookahead`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .centralize import centralize as centralize_gradient
from .driver import GradFn, State, StepFn
from .lookahead import lookahead


def rho(t: int, beta2: float) -> tuple[float, float]:
    r"""``(rho_inf, rho_t)``: the maximum and the step-``t`` length of the approximated SMA.

    Example:
        >>> rho(1, 0.999)[1]  # always 1 at t = 1
        1.0...
    """
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = math.pow(beta2, t)
    rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
    return rho_inf, rho_t


def rectification(t: int, beta2: float) -> float:
    r"""``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``."""
    rho_inf, rho_t = rho(t, beta2)
    return math.sqrt(
        (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    )


def is_rectified(t: int, beta2: float, n_sma_threshold: float) -> bool:
    """Whether step ``t`` takes the rectified branch: ``rho_t > n_sma_threshold`` (strictly)."""
    return rho(t, beta2)[1] > n_sma_threshold


def radam_direction(
    m: torch.Tensor,
    v: torch.Tensor,
    t: int,
    betas: tuple[float, float],
    eps: float,
    n_sma_threshold: float,
) -> torch.Tensor:
    r"""The RAdam step direction (before ``lr``).

    ``r_t sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`` when rectified, else
    ``m / (1 - b1^t)``.
    """
    beta1, beta2 = betas
    bias_correction1 = 1.0 - math.pow(beta1, t)
    bias_correction2 = 1.0 - math.pow(beta2, t)
    if is_rectified(t, beta2, n_sma_threshold):
        r_t = rectification(t, beta2)
        return r_t * math.sqrt(bias_correction2) / bias_correction1 * m / (v.sqrt() + eps)
    return m / bias_correction1


def ranger_inner_step(
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.95, 0.999),
    eps: float = 1e-5,
    weight_decay: float = 0.0,
    n_sma_threshold: float = 5,
    centralize: bool = True,
    maximize: bool = False,
) -> StepFn:
    """GC, decoupled weight decay and RAdam for one tensor (Ranger without the Lookahead)."""
    beta1, beta2 = betas

    def step(p: torch.Tensor, g: torch.Tensor, state: State, t: int) -> torch.Tensor:
        if maximize:
            g = -g
        if centralize:
            g = centralize_gradient(g)
        p = p * (1.0 - lr * weight_decay)
        m = state.get("m", torch.zeros_like(p))
        v = state.get("v", torch.zeros_like(p))
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        state["m"], state["v"] = m, v
        return p - lr * radam_direction(m, v, t, betas, eps, n_sma_threshold)

    return step


def ranger(
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
    maximize: bool = False,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` Ranger steps (see the module docstring for the rule)."""
    inner = ranger_inner_step(
        lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
        n_sma_threshold=n_sma_threshold, centralize=centralize, maximize=maximize,
    )
    return lookahead(params, grad_fn, steps, inner, k=k, alpha=alpha)
