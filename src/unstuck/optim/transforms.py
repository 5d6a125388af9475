"""The building blocks: one transform per equation.

Notation: ``g`` gradient, ``u`` the direction being built (``u = g`` at the start of a chain),
``p`` parameter, ``t`` the parameter's step count (1 on its first step), ``lr`` learning rate.
Hyper-parameters are read from the parameter group by the names given, so every one of them can
differ between groups and be changed by a scheduler between steps.

The final transform, :class:`ApplyUpdate`, writes ``p <- p - lr * u``; transforms after it
(:class:`LookaheadSync`) act on the updated parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from unstuck.optim import multi_tensor as mt
from unstuck.optim.base import Bucket, Transform

__all__ = [
    "AddDecayedWeights",
    "ApplyUpdate",
    "Centralize",
    "CoupledWeightDecay",
    "DecoupledWeightDecay",
    "LarsTrustRatio",
    "LookaheadSync",
    "Maximize",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByRAdam",
    "ScaleByRms",
    "SgdMomentum",
    "TrustRatio",
    "lars_host_ratio",
    "lars_ratio",
    "lookahead_sync_",
    "radam_scale",
    "slow_copy",
]


def _zeros(p: Tensor) -> Tensor:
    return torch.zeros_like(p, memory_format=torch.preserve_format)


class Maximize(Transform):
    """``u <- -u`` when the group's ``maximize`` is true (ascend the objective)."""

    def __call__(self, b: Bucket) -> None:
        if b.group["maximize"]:
            b.set_updates(mt.neg(b.updates))


class Centralize(Transform):
    """Gradient Centralization (Yong et al., 2020, arXiv:2004.01461), when ``centralize``.

    For every tensor with more than one dimension, ``u <- u - mean(u)`` where the mean is over all
    dimensions but the first (per output channel / row); 1-D and 0-D tensors are left alone.
    """

    def __call__(self, b: Bucket) -> None:
        if not b.group["centralize"]:
            return
        # ``ndim`` is the parameter's own: over the real view of a complex tensor the trailing
        # (re, im) dimension is excluded from the mean.
        centered = [
            u - u.mean(dim=tuple(range(1, ndim)), keepdim=True) if ndim > 1 else u
            for u, ndim in zip(b.updates, b.ndims, strict=True)
        ]
        b.set_updates(centered, writable=b.is_writable or all(n > 1 for n in b.ndims))


class AddDecayedWeights(Transform):
    """``u <- u + weight_decay * p`` (L2 penalty gradient, or decoupled decay added to ``u``)."""

    def __call__(self, b: Bucket) -> None:
        wd = b.group["weight_decay"]
        if wd != 0:
            b.set_updates(mt.add(b.updates, b.params, alpha=wd))


class CoupledWeightDecay(AddDecayedWeights):
    """L2 regularisation in the gradient, ``u <- u + weight_decay * p``, unless the group's
    ``decoupled_weight_decay`` is true (torch.optim's Adam, RAdam, SGD, ...)."""

    def __call__(self, b: Bucket) -> None:
        if not b.group.get("decoupled_weight_decay", False):
            super().__call__(b)


class DecoupledWeightDecay(Transform):
    """Decoupled weight decay (Loshchilov & Hutter, 2019), when ``decoupled_weight_decay``:
    ``p <- p * (1 - lr * weight_decay)``, applied before the update (AdamW, Ranger)."""

    def __call__(self, b: Bucket) -> None:
        wd = b.group["weight_decay"]
        if wd != 0 and b.group.get("decoupled_weight_decay", False):
            mt.mul_(b.params, 1.0 - b.group["lr"] * wd)


class SgdMomentum(Transform):
    """Heavy-ball / Nesterov momentum as in torch.optim.SGD (Sutskever et al., 2013).

    ``buf <- momentum * buf + (1 - dampening) * u`` (``buf <- u`` on its first step), then
    ``u <- u + momentum * buf`` (Nesterov) or ``u <- buf``. Skipped when ``momentum == 0``.
    State: ``momentum_buffer``.
    """

    def __call__(self, b: Bucket) -> None:
        momentum = b.group["momentum"]
        if momentum == 0:
            return
        dampening = b.group.get("dampening", 0.0)
        fresh = [not h for h in b.has_state("momentum_buffer")]
        if any(fresh):
            sub = b.subset(fresh)
            sub.set_state("momentum_buffer", mt.clone(sub.updates))
        if not all(fresh):
            sub = b.subset([not f for f in fresh])
            bufs = sub.state("momentum_buffer", _zeros)
            mt.mul_(bufs, momentum)
            mt.add_(bufs, sub.updates, alpha=1.0 - dampening)
        bufs = b.state("momentum_buffer", _zeros)
        if b.group.get("nesterov", False):
            b.set_updates(mt.add(b.updates, bufs, alpha=momentum))
        else:
            b.set_updates(bufs, writable=False)  # the buffer is state


class ScaleByAdagrad(Transform):
    """Adagrad (Duchi et al., 2011), as torch.optim.Adagrad.

    ``sum <- sum + u^2``; ``u <- u / (sqrt(sum) + eps) / (1 + (t - 1) * lr_decay)``.
    State: ``sum``, starting at ``initial_accumulator_value``.
    """

    def init(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        v = group["initial_accumulator_value"]
        fill = complex(v, v) if param.is_complex() else v
        return {"sum": torch.full_like(param, fill, memory_format=torch.preserve_format)}

    def __call__(self, b: Bucket) -> None:
        sums = b.state("sum", lambda p: self.init(p, b.group)["sum"])
        mt.addcmul_(sums, b.updates, b.updates, value=1.0)
        std = mt.sqrt(sums)
        mt.add_(std, b.group["eps"])
        u = mt.div_into(b.updates, std)
        decay = 1.0 + (b.step - 1) * b.group["lr_decay"]
        if decay != 1.0:
            mt.div_(u, decay)
        b.set_updates(u)


class ScaleByRootMeanSquare(Transform):
    """The lectures' Adagrad: scale by the root *mean* square of all gradients so far.

    ``sum <- sum + u^2``; ``u <- u / (sqrt(sum / t) + eps)``. State: ``sum`` (as Adagrad's).
    """

    def __call__(self, b: Bucket) -> None:
        sums = b.state("sum", lambda p: torch.zeros_like(p, memory_format=torch.preserve_format))
        mt.addcmul_(sums, b.updates, b.updates, value=1.0)
        sigma = mt.sqrt(sums)
        mt.div_(sigma, math.sqrt(b.step))
        mt.add_(sigma, b.group["eps"])
        b.set_updates(mt.div_into(b.updates, sigma))


class ScaleByRms(Transform):
    """RMSprop (Hinton, 2012; centered: Graves, 2013), as torch.optim.RMSprop.

    ``sq <- alpha * sq + (1 - alpha) * u^2``; centered: ``avg <- alpha * avg + (1 - alpha) * u``,
    ``d = sqrt(sq - avg^2) + eps``, else ``d = sqrt(sq) + eps``; then with ``momentum > 0``:
    ``buf <- momentum * buf + u / d``, ``u <- buf``; else ``u <- u / d``.
    State: ``square_avg``, ``grad_avg`` (centered), ``momentum_buffer`` (momentum).
    """

    def __call__(self, b: Bucket) -> None:
        alpha = b.group["alpha"]
        square_avgs = b.state("square_avg", _zeros)
        mt.mul_(square_avgs, alpha)
        mt.addcmul_(square_avgs, b.updates, b.updates, value=1.0 - alpha)
        if b.group["centered"]:
            grad_avgs = b.state("grad_avg", _zeros)
            mt.lerp_(grad_avgs, b.updates, 1.0 - alpha)
            centered = mt.clone(square_avgs)
            mt.addcmul_(centered, grad_avgs, grad_avgs, value=-1.0)
            denom = mt.sqrt(centered)
        else:
            denom = mt.sqrt(square_avgs)
        mt.add_(denom, b.group["eps"])
        momentum = b.group["momentum"]
        if momentum > 0:
            bufs = b.state("momentum_buffer", _zeros)
            mt.mul_(bufs, momentum)
            mt.addcdiv_(bufs, b.updates, denom)
            b.set_updates(bufs, writable=False)  # the buffer is state
        else:
            b.set_updates(mt.div_into(b.updates, denom))


def _adam_moments(b: Bucket) -> tuple[list[Tensor], list[Tensor]]:
    """``m <- b1 m + (1 - b1) u``, ``v <- b2 v + (1 - b2) u^2``; returns ``(m, v)``."""
    beta1, beta2 = b.group["betas"]
    exp_avgs = b.state("exp_avg", _zeros)
    exp_avg_sqs = b.state("exp_avg_sq", _zeros)
    mt.lerp_(exp_avgs, b.updates, 1.0 - beta1)
    mt.mul_(exp_avg_sqs, beta2)
    mt.addcmul_(exp_avg_sqs, b.updates, b.updates, value=1.0 - beta2)
    return exp_avgs, exp_avg_sqs


class ScaleByAdam(Transform):
    """Adam (Kingma & Ba, 2015) and AMSGrad (Reddi et al., 2018), as torch.optim.Adam.

    ``m <- b1 m + (1 - b1) u``; ``v <- b2 v + (1 - b2) u^2``; AMSGrad: ``vmax <- max(vmax, v)``
    is used for ``v`` below; ``u <- (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``, with
    ``sqrt(v / (1 - b2^t))`` computed as ``sqrt(v) / sqrt(1 - b2^t)``.
    State: ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """

    def __call__(self, b: Bucket) -> None:
        beta1, beta2 = b.group["betas"]
        exp_avgs, exp_avg_sqs = _adam_moments(b)
        if b.group.get("amsgrad", False):
            maxima = b.state("max_exp_avg_sq", _zeros)
            mt.maximum_(maxima, exp_avg_sqs)
            exp_avg_sqs = maxima
        denom = mt.sqrt(exp_avg_sqs)
        mt.div_(denom, math.sqrt(1.0 - beta2**b.step))
        mt.add_(denom, b.group["eps"])
        u = mt.div_into(exp_avgs, denom)
        mt.div_(u, 1.0 - beta1**b.step)
        b.set_updates(u)


class ScaleByRAdam(Transform):
    """Rectified Adam (Liu et al., 2020, arXiv:1908.03265), as torch.optim.RAdam.

    Moments as Adam; ``rho_inf = 2 / (1 - b2) - 1``, ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)``.
    If ``rho_t > n_sma_threshold`` (default 5, torch's):
    ``u <- r_t * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`` with
    ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``;
    otherwise (variance not yet tractable) ``u <- m / (1 - b1^t)``.
    State: ``exp_avg``, ``exp_avg_sq``.
    """

    def __call__(self, b: Bucket) -> None:
        beta1, beta2 = b.group["betas"]
        exp_avgs, exp_avg_sqs = _adam_moments(b)
        scale = radam_scale(b.step, beta1, beta2, b.group.get("n_sma_threshold", 5.0))
        if scale is not None:
            denom = mt.sqrt(exp_avg_sqs)
            mt.add_(denom, b.group["eps"])
            u = mt.div_into(exp_avgs, denom)
            mt.mul_(u, scale)
        else:
            u = mt.clone(exp_avgs)
            mt.div_(u, 1.0 - beta1**b.step)
        b.set_updates(u)


def radam_scale(step: int, beta1: float, beta2: float, n_sma_threshold: float) -> float | None:
    """RAdam's factor ``r_t * sqrt(1 - b2^t) / (1 - b1^t)`` on ``m / (sqrt(v) + eps)`` at step
    ``t``, or ``None`` while ``rho_t <= n_sma_threshold`` (the un-rectified steps). Python
    numbers (a tensor beta is read once, so the scale is the float beta's)."""
    beta1, beta2, n_sma_threshold = float(beta1), float(beta2), float(n_sma_threshold)
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2**step / bias_correction2
    if not rho_t > n_sma_threshold:
        return None
    rect = math.sqrt(
        (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    )
    return rect * math.sqrt(bias_correction2) / bias_correction1


class LarsTrustRatio(Transform):
    """LARS layer-wise trust ratio (You et al., 2017, arXiv:1708.03888), before momentum.

    Per tensor: ``u <- ratio * (u + wd * p)`` with
    ``ratio = trust_coefficient * ||p|| / (||u|| + wd * ||p|| + eps)``, or 1 where ``||p||`` or
    the whole denominator ``||u|| + wd * ||p||`` is 0 (as the paper's implementations test it:
    a frozen tensor, ``u = 0``, with weight decay still gets the ratio, not the full
    ``lr * wd`` decay). With ``exclude_1d``, tensors with at most one dimension (biases, norm
    weights, scalars) get neither the ratio nor weight decay.
    """

    def __call__(self, b: Bucket) -> None:
        if b.group["exclude_1d"]:
            keep = [n > 1 for n in b.ndims]
            if not any(keep):
                return
            if not all(keep):
                sub = b.subset(keep)
                self(sub)
                new = iter(sub.updates)
                merged = [next(new) if k else u for u, k in zip(b.updates, keep, strict=True)]
                # the excluded tensors may still alias the gradients
                b.set_updates(merged, writable=False)
                return
        wd = b.group["weight_decay"]
        p_norms = mt.norm(b.params)
        u_norms = mt.norm(b.updates)
        ratios = [lars_ratio(pn, un, wd, b.group["trust_coefficient"], b.group["eps"])
                  for pn, un in zip(p_norms, u_norms, strict=True)]
        u = mt.add(b.updates, b.params, alpha=wd) if wd != 0 else mt.clone(b.updates)
        mt.mul_(u, ratios)
        b.set_updates(u)


def lars_ratio(
    p_norm: Tensor, u_norm: Tensor, weight_decay: float, trust_coefficient: float, eps: float
) -> Tensor:
    """LARS' trust ratio from the norms (tensors of any shape, elementwise):
    ``trust_coefficient * ||p|| / (||u|| + wd * ||p|| + eps)``, or 1 where ``||p|| = 0`` or
    ``||u|| + wd * ||p|| = 0`` (You et al., 2017; the fallback tests the whole denominator,
    as NVIDIA's LARC and torchlars do).

    Example:
        >>> float(lars_ratio(torch.tensor(2.0), torch.tensor(0.0), 0.1, 1e-3, 0.0))
        0.01
    """
    denominator = u_norm + weight_decay * p_norm
    return torch.where(
        (p_norm > 0) & (denominator > 0),
        trust_coefficient * p_norm / (denominator + eps),
        torch.ones_like(p_norm),
    )


def lars_host_ratio(
    p_norm: float, u_norm: float, weight_decay: float, trust_coefficient: float, eps: float
) -> float:
    """:func:`lars_ratio` of one tensor, from norms read on the host (the same arithmetic)."""
    denominator = u_norm + weight_decay * p_norm
    if p_norm > 0 and denominator > 0:
        return trust_coefficient * p_norm / (denominator + eps)
    return 1.0


class TrustRatio(Transform):
    """LAMB-style trust ratio (You et al., 2020, arXiv:1904.00962), as in RangerLARS.

    Per tensor: ``u <- ratio * u`` with ``ratio = clamp(||p|| / ||u||, 0, max_trust_ratio)``,
    or 1 where ``||p||`` or ``||u||`` is 0.
    """

    def __call__(self, b: Bucket) -> None:
        p_norms = mt.norm(b.params)
        u_norms = mt.norm(b.updates)
        ratios = [
            torch.where(
                (pn > 0) & (un > 0),
                (pn / un).clamp(0.0, b.group["max_trust_ratio"]),
                torch.ones_like(pn),
            )
            for pn, un in zip(p_norms, u_norms, strict=True)
        ]
        u = b.writable_updates()
        mt.mul_(u, ratios)


class ApplyUpdate(Transform):
    """The step itself: ``p <- p - lr * u``."""

    def __call__(self, b: Bucket) -> None:
        mt.add_(b.params, b.updates, alpha=-b.group["lr"])


class LookaheadSync(Transform):
    """Lookahead (Zhang et al., 2019, arXiv:1907.08610) inside a chain, after the update.

    Slow weights start as a copy of the parameter on its first step, before the update. When
    ``t % k == 0``: ``slow <- slow + alpha * (p - slow)``, ``p <- slow``.
    State: ``lookahead_slow``.
    """

    def init(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"lookahead_slow": slow_copy(param)}

    def __call__(self, b: Bucket) -> None:
        if b.step % b.group["k"] == 0:
            lookahead_sync_(b.state("lookahead_slow", slow_copy), b.params, b.group["alpha"])


def slow_copy(param: Tensor) -> Tensor:
    """Lookahead's slow weights at the start: a copy of the parameter."""
    return param.detach().clone(memory_format=torch.preserve_format)


def lookahead_sync_(slow: list[Tensor], fast: list[Tensor], alpha: float) -> None:
    """``slow <- slow + alpha * (fast - slow)``; ``fast <- slow`` (Zhang et al., 2019)."""
    mt.lerp_(slow, fast, alpha)
    mt.copy_(fast, slow)
