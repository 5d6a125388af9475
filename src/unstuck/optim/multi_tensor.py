"""Elementwise operations over lists of tensors.

Every transform is written once against these functions. A list of several tensors runs as one
``torch._foreach_*`` call (the multi-tensor path); a list of one tensor runs the plain in-place
tensor op (the per-tensor path runs a whole chain on one-tensor buckets). Both give the same
math, so ``foreach=True`` and ``foreach=False`` agree by construction.

``scalar`` arguments are a number (a Python number, or a 0-dim tensor such as a tensor
hyper-parameter, the same for every tensor) or a list of 0-dim tensors, one per tensor (per-tensor
factors such as trust ratios stay on the device: no host synchronisation). Both paths take both
forms: a one-tensor list runs the plain op with the number or the list's one tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Scalar = float | Tensor | Sequence[Tensor]

__all__ = [
    "add",
    "add_",
    "addcdiv_",
    "addcmul_",
    "clone",
    "copy_",
    "div",
    "div_",
    "div_into",
    "lerp_",
    "maximum_",
    "mul",
    "mul_",
    "neg",
    "norm",
    "sqrt",
]


def _is_number(scalar: object) -> bool:
    """A number for every tensor: a Python number or a 0-dim tensor (not a per-tensor list)."""
    return isinstance(scalar, (int, float)) or (isinstance(scalar, Tensor) and scalar.dim() == 0)


def _one(scalar: Scalar) -> float | Tensor:
    """The scalar of a one-tensor list: the number itself, or the list's one element."""
    return scalar if _is_number(scalar) else scalar[0]  # type: ignore[index,return-value]


def neg(xs: list[Tensor]) -> list[Tensor]:
    """``-x`` for each tensor (new tensors)."""
    return [xs[0].neg()] if len(xs) == 1 else list(torch._foreach_neg(xs))


def clone(xs: list[Tensor]) -> list[Tensor]:
    """A copy of each tensor."""
    return [x.clone() for x in xs]


def copy_(dst: list[Tensor], src: list[Tensor]) -> None:
    """``dst <- src`` in place."""
    if len(dst) == 1:
        dst[0].copy_(src[0])
    else:
        torch._foreach_copy_(dst, src)


def add(xs: list[Tensor], ys: list[Tensor], alpha: float = 1.0) -> list[Tensor]:
    """``x + alpha * y`` (new tensors)."""
    if len(xs) == 1:
        return [xs[0].add(ys[0], alpha=alpha)]
    return list(torch._foreach_add(xs, ys, alpha=alpha))


def add_(xs: list[Tensor], ys: list[Tensor] | float | Tensor, alpha: float = 1.0) -> None:
    """``x <- x + alpha * y`` in place; ``ys`` a list of tensors or one number (a Python number
    or a 0-dim tensor)."""
    if _is_number(ys):
        if alpha != 1.0:
            ys = ys * alpha
        if len(xs) == 1:
            xs[0].add_(ys)
        else:
            torch._foreach_add_(xs, ys)
    elif len(xs) == 1:
        xs[0].add_(ys[0], alpha=alpha)
    else:
        torch._foreach_add_(xs, ys, alpha=alpha)


def mul(xs: list[Tensor], scalar: Scalar) -> list[Tensor]:
    """``s * x`` (new tensors)."""
    if len(xs) == 1:
        return [xs[0].mul(_one(scalar))]
    return list(torch._foreach_mul(xs, scalar))


def mul_(xs: list[Tensor], scalar: Scalar) -> None:
    """``x <- s * x`` in place."""
    if len(xs) == 1:
        xs[0].mul_(_one(scalar))
    else:
        torch._foreach_mul_(xs, scalar)


def div(xs: list[Tensor], ys: list[Tensor]) -> list[Tensor]:
    """``x / y`` (new tensors)."""
    if len(xs) == 1:
        return [xs[0].div(ys[0])]
    return list(torch._foreach_div(xs, ys))


def div_into(numerators: list[Tensor], denominators: list[Tensor]) -> list[Tensor]:
    """``n / d`` written over ``denominators`` (a temporary the caller owns), so no new memory
    is allocated; returns the quotients. torch has no in-place foreach op for ``d <- n / d``, so
    this is a loop of ``torch.div(..., out=...)``: correctly rounded, the same on both paths."""
    for n, d in zip(numerators, denominators, strict=True):
        torch.div(n, d, out=d)
    return denominators


def div_(xs: list[Tensor], scalar: Scalar) -> None:
    """``x <- x / s`` in place."""
    if len(xs) == 1:
        xs[0].div_(_one(scalar))
    else:
        torch._foreach_div_(xs, scalar)


def sqrt(xs: list[Tensor]) -> list[Tensor]:
    """``sqrt(x)`` (new tensors)."""
    return [xs[0].sqrt()] if len(xs) == 1 else list(torch._foreach_sqrt(xs))


def lerp_(xs: list[Tensor], ys: list[Tensor], weight: float) -> None:
    """``x <- x + weight * (y - x)`` in place."""
    if len(xs) == 1:
        xs[0].lerp_(ys[0], weight)
    else:
        torch._foreach_lerp_(xs, ys, weight)


def addcmul_(xs: list[Tensor], a: list[Tensor], b: list[Tensor], value: float) -> None:
    """``x <- x + value * a * b`` in place."""
    if len(xs) == 1:
        xs[0].addcmul_(a[0], b[0], value=value)
    else:
        torch._foreach_addcmul_(xs, a, b, value=value)


def addcdiv_(xs: list[Tensor], a: list[Tensor], b: list[Tensor], value: float = 1.0) -> None:
    """``x <- x + value * a / b`` in place."""
    if len(xs) == 1:
        xs[0].addcdiv_(a[0], b[0], value=value)
    else:
        torch._foreach_addcdiv_(xs, a, b, value=value)


def maximum_(xs: list[Tensor], ys: list[Tensor]) -> None:
    """``x <- max(x, y)`` elementwise, in place."""
    if len(xs) == 1:
        torch.maximum(xs[0], ys[0], out=xs[0])
    else:
        torch._foreach_maximum_(xs, ys)


def norm(xs: list[Tensor]) -> list[Tensor]:
    """The 2-norm of each whole tensor, as 0-dim tensors on the tensors' device."""
    if len(xs) == 1:
        return [torch.linalg.vector_norm(xs[0])]
    return list(torch._foreach_norm(xs))
