"""torch's own fused optimizer kernels, as the fused path calls them.

Each function here is one call of a kernel that torch ships compiled (C++ on CPU, CUDA on GPUs):
one pass over memory for a whole list of tensors, the loop over tensors in C++. No compiler is
needed at run time. The docstrings give the exact per-element math the kernel computes, since
the fused path (``fused_rules.py``) feeds these kernels arguments that make them compute other
update rules: a step count of ``inf`` turns the bias corrections off (``1 - beta**inf = 1``),
``beta1 = 0`` makes Adam's first moment the gradient itself, a negative ``lr`` turns the
decoupled weight decay into a momentum factor.

Every tensor of one call must be dense and laid out like its parameter (the kernels index them
linearly); ``numel`` must match, shapes need not. torch does not check either (a state tensor
smaller than its parameter is read and written past its end), so the callers guarantee them:
state is created like its parameter, ``load_state_dict`` restores the layout, and the fused
path takes only contiguous parameters and gradients. A step count is a 0-dim float32 tensor on
the parameters' device, shared by the whole list (all tensors of a bucket share ``t``). Scalars
may be Python numbers or 0-dim tensors (read to the host).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["adagrad_", "adam_", "available", "axpy_", "lerp_", "sgd_", "step_tensor"]

_ALL_FUSED_DEVICES: frozenset[str]
try:  # torch's own list of device types with fused Adam/AdamW/SGD kernels
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    _ALL_FUSED_DEVICES = frozenset(_get_fused_kernels_supported_devices())
except ImportError:  # pragma: no cover - older torch
    _ALL_FUSED_DEVICES = frozenset({"cpu", "cuda"})

# kernel name -> (torch op, device types it runs on). torch.optim.Adagrad(fused=True) is CPU only.
_KERNELS: dict[str, tuple[str, frozenset[str]]] = {
    "adam": ("_fused_adam_", _ALL_FUSED_DEVICES),
    "adamw": ("_fused_adamw_", _ALL_FUSED_DEVICES),
    "sgd": ("_fused_sgd_", _ALL_FUSED_DEVICES),
    "adagrad": ("_fused_adagrad_", frozenset({"cpu"})),
}


def available(kernel: str, device: torch.device) -> bool:
    """Whether this torch build has ``kernel`` (``"adam"``, ``"adamw"``, ``"sgd"``,
    ``"adagrad"``) for ``device``'s type."""
    op, devices = _KERNELS[kernel]
    return device.type in devices and hasattr(torch, op)


def step_tensor(value: float, like: Tensor) -> Tensor:
    """A step count as the kernels read it: a 0-dim float32 tensor on ``like``'s device."""
    return torch.full((), value, dtype=torch.float32, device=like.device)


def adam_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    step: Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> None:
    r"""One Adam / AdamW step (``torch._fused_adam_`` / ``torch._fused_adamw_``), in place.

    Per element, with ``t`` the step count and ``g`` the gradient:

    .. math::
        g \leftarrow \pm g;\quad g \leftarrow g + \lambda p \ (\text{Adam});\quad
        p \leftarrow p\,(1 - \eta\lambda) \ (\text{decoupled, AdamW});\\
        m \leftarrow \operatorname{lerp}(m, g, 1 - \beta_1);\quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2;\quad
        p \leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
        \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    (AMSGrad: ``vmax <- max(vmax, v)`` replaces ``v`` in the denominator.) Scalars are rounded
    to the parameters' dtype. ``lr`` may be negative and ``weight_decay`` any number: the
    kernel does not check them.
    """
    op = torch._fused_adamw_ if decoupled else torch._fused_adam_
    op(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, [step] * len(params),
        lr=float(lr), beta1=float(beta1), beta2=float(beta2), weight_decay=float(weight_decay),
        eps=float(eps), amsgrad=amsgrad, maximize=maximize,
    )


def sgd_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    first_step: bool,
) -> None:
    r"""One SGD step (``torch._fused_sgd_``), in place.

    .. math::
        g \leftarrow \pm g + \lambda p;\quad
        b \leftarrow \mu b + (1 - \tau) g \ (b \leftarrow g \text{ when first\_step});\quad
        p \leftarrow p - \eta\,(g + \mu b \text{ if nesterov else } b)

    With ``momentum == 0`` there is no buffer (pass an empty list) and ``p <- p - lr * g``.
    """
    torch._fused_sgd_(
        params, grads, momentum_buffers if momentum != 0 else [],
        weight_decay=float(weight_decay), momentum=float(momentum), lr=float(lr),
        dampening=float(dampening), nesterov=nesterov, maximize=maximize,
        is_first_step=first_step,
    )


def adagrad_(
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    step: Tensor,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    r"""One Adagrad step (``torch._fused_adagrad_``, CPU only), in place.

    .. math::
        g \leftarrow \pm g + \lambda p;\quad s \leftarrow s + g^2;\quad
        p \leftarrow p - \frac{\eta}{1 + (t - 1)\,\text{lr\_decay}}\,\frac{g}{\sqrt{s} + \epsilon}
    """
    torch._fused_adagrad_(
        params, grads, sums, [step] * len(params), lr=float(lr), lr_decay=float(lr_decay),
        weight_decay=float(weight_decay), eps=float(eps), maximize=maximize,
    )


def axpy_(xs: list[Tensor], ys: list[Tensor], alpha: float) -> None:
    """``x <- x + alpha * y`` on the SGD kernel (``lr = -alpha``, no momentum): the same math as
    ``torch._foreach_add_(xs, ys, alpha=alpha)`` at a fraction of its per-tensor cost on CPU."""
    sgd_(xs, ys, [], lr=-alpha, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
         maximize=False, first_step=False)


def lerp_(xs: list[Tensor], ends: list[Tensor], weight: float) -> None:
    """``x <- x + weight * (end - x)`` on the SGD kernel: its L2 term with ``weight_decay = -1``
    makes the gradient ``end - x``, and ``lr = -weight`` steps along it."""
    sgd_(xs, ends, [], lr=-weight, momentum=0.0, dampening=0.0, nesterov=False,
         weight_decay=-1.0, maximize=False, first_step=False)
