"""Gradient norms, gradient clipping and non-finite gradients, named.

Four functions over the gradients of a set of parameters:

- :func:`global_norm`: the norm of all gradients viewed as one vector.
- :func:`clip_by_global_norm_`: scale all gradients so that their global norm is at most
  ``max_norm`` (returns the norm *before* clipping).
- :func:`clip_by_value_`: clamp every gradient element to ``[-clip_value, clip_value]``.
- :func:`nonfinite_grads`: the names of the parameters whose gradient holds NaN or Inf.

Only the functions whose name ends in ``_`` modify anything, and they modify only the ``.grad``
tensors, in place. :func:`global_norm` and :func:`nonfinite_grads` never touch a gradient.

The work runs multi-tensor: gradients are bucketed by device and dtype and each bucket is one
``torch._foreach_*`` call, exactly as :func:`torch.nn.utils.clip_grad_norm_` does, so the norms
and the clipped gradients are bit-for-bit those of ``torch.nn.utils`` on dense gradients.
Where this module differs from ``torch.nn.utils`` it is a strict extension:

- ``params`` may be an :class:`~torch.nn.Module`, tensors, ``(name, tensor)`` pairs or a
  ``{name: tensor}`` mapping; errors then name the parameters. Plain tensors are named by
  position, ``params[i]``.
- A parameter listed twice counts once (``torch.nn.utils`` counts it, and scales it, twice).
- Sparse COO gradients (``nn.Embedding(..., sparse=True)``) are supported: their norm is that of
  the coalesced gradient, i.e. of the dense gradient they stand for. Other sparse layouts raise
  ``TypeError`` naming the parameter.
- The inf-norm of a set that includes a zero-element gradient is defined (torch raises).
- ``norm_type`` must be a p-norm with ``p > 0`` (or ``inf``): ``torch.nn.utils`` accepts
  ``p <= 0`` and then returns a number that is not the norm of the concatenated gradients.

Complex gradients have norms as in torch (``|z|`` is the complex modulus); clamping a complex
number has no meaning, so :func:`clip_by_value_` refuses them by name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias

import torch
from torch import Tensor, nn

# The grouping and the foreach test torch.nn.utils.clip_grad_norm_ uses (private to torch, but
# the only way to agree with it bit for bit: the bucket order decides how the norms round).
from torch.utils._foreach_utils import (
    _group_tensors_by_device_and_dtype,
    _has_foreach_support,
)

__all__ = [
    "ParamsLike",
    "clip_by_global_norm_",
    "clip_by_value_",
    "global_norm",
    "nonfinite_grads",
]

ParamsLike: TypeAlias = (
    Tensor | nn.Module | Mapping[str, Tensor] | Iterable[Tensor] | Iterable[tuple[str, Tensor]]
)
"""What every function here accepts as its parameters.

A single tensor, a module (its ``named_parameters()``), an iterable of tensors, an iterable of
``(name, tensor)`` pairs, or a mapping from name to tensor.
"""

# Added to the total norm before dividing, as in torch.nn.utils.clip_grad_norm_.
_CLIP_EPSILON = 1e-6

_SUPPORTED_LAYOUTS = (torch.strided, torch.sparse_coo)


class _NamedGrad(NamedTuple):
    """A parameter's name (or ``params[i]``) and its gradient."""

    name: str
    grad: Tensor


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def _as_float(name: str, value: Any) -> float:
    """``value`` as a float, or ``TypeError`` naming the argument."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got bool {value!r}")
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a number, got a tensor of shape {list(value.shape)}")
        return float(value.item())
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf  # torch.nn.utils accepts norm_type='inf'
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_positive(name: str, value: Any) -> float:
    """``value > 0`` (``inf`` allowed: it disables the clipping), as a float."""
    number = _as_float(name, value)
    if not number > 0.0:  # also refuses nan
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def _check_norm_type(norm_type: Any) -> float:
    """A p-norm order ``p > 0`` or ``inf``, as a float."""
    p = _as_float("norm_type", norm_type)
    if not p > 0.0:
        raise ValueError(
            f"norm_type must be > 0 (the order p of a p-norm, or inf), got {norm_type!r}"
        )
    return p


def _named_grads(params: ParamsLike) -> list[_NamedGrad]:
    """The gradients of ``params`` with their names, in order.

    Parameters whose ``grad`` is ``None`` are skipped; a parameter listed twice is kept once.
    Unnamed tensors are named by their position in ``params``: ``params[i]``.
    """
    if isinstance(params, Tensor):
        items: Iterable[Any] = [params]
    elif isinstance(params, nn.Module):
        items = params.named_parameters()
    elif isinstance(params, Mapping):
        items = params.items()
    else:
        items = params

    entries: list[_NamedGrad] = []
    seen: set[int] = set()
    for position, item in enumerate(items):
        if isinstance(item, Tensor):
            name, tensor = f"params[{position}]", item
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], Tensor)
        ):
            name, tensor = item
        else:
            raise TypeError(
                "params must be a tensor, a module, or an iterable of tensors or of "
                f"(name, tensor) pairs; item {position} is {type(item).__name__} {item!r:.80}"
            )
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        grad = tensor.grad
        if grad is None:
            continue
        if grad.layout not in _SUPPORTED_LAYOUTS:
            raise TypeError(
                f"the gradient of parameter {name!r} has layout {grad.layout}; only dense "
                "(torch.strided) and sparse COO (torch.sparse_coo) gradients are supported"
            )
        entries.append(_NamedGrad(name, grad))
    return entries


# ---------------------------------------------------------------------------------------------
# Multi-tensor building blocks
# ---------------------------------------------------------------------------------------------


class _Bucket(NamedTuple):
    """Gradients that share device, dtype and layout, and their positions in the input list."""

    device: torch.device
    layout: torch.layout
    grads: list[Tensor]
    indices: list[int]


def _group_by_device_and_dtype(grads: list[Tensor]) -> list[_Bucket]:
    """Buckets of gradients sharing device, dtype and layout: one ``_foreach`` call each.

    Dense gradients are grouped by torch's own grouping, so the buckets come out in the order
    ``torch.nn.utils`` forms them and a total norm stacked from them rounds the same way. Sparse
    gradients follow, grouped in order of first appearance.
    """
    dense = [i for i, grad in enumerate(grads) if grad.layout == torch.strided]
    buckets: list[_Bucket] = []
    if dense:
        grouped = _group_tensors_by_device_and_dtype([[grads[i] for i in dense]], True)
        for (device, _), ([bucket], positions) in grouped.items():
            indices = [dense[j] for j in positions]
            buckets.append(_Bucket(device, torch.strided, list(bucket), indices))
    sparse: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, grad in enumerate(grads):
        if grad.layout == torch.sparse_coo:
            sparse.setdefault((grad.device, grad.dtype), []).append(i)
    for (device, _), indices in sparse.items():
        buckets.append(_Bucket(device, torch.sparse_coo, [grads[i] for i in indices], indices))
    return buckets


def _zero_norm(grad: Tensor) -> Tensor:
    """The norm of a gradient with no elements: a real 0-dim zero on its device."""
    dtype = grad.real.dtype if grad.is_complex() else grad.dtype
    return torch.zeros((), dtype=dtype, device=grad.device)


def _sparse_norm(grad: Tensor, norm_type: float) -> Tensor:
    """The p-norm of a sparse COO gradient: of its coalesced values (duplicates summed)."""
    values = grad.coalesce().values()  # coalesce() returns a new tensor: grad is untouched
    if values.numel() == 0:
        return _zero_norm(values)
    return torch.linalg.vector_norm(values, norm_type)


def _bucket_norms(bucket: list[Tensor], norm_type: float) -> list[Tensor]:
    """The p-norm of each tensor of one bucket (one device, dtype and layout), in order."""
    if bucket[0].layout == torch.sparse_coo:
        return [_sparse_norm(grad, norm_type) for grad in bucket]
    norms: list[Tensor | None] = [None] * len(bucket)
    # Zero-element tensors have norm 0; kept out of the kernel, which refuses the inf-norm of
    # an empty tensor.
    filled = [i for i, grad in enumerate(bucket) if grad.numel() > 0]
    for i, grad in enumerate(bucket):
        if grad.numel() == 0:
            norms[i] = _zero_norm(grad)
    tensors = [bucket[i] for i in filled]
    if tensors:
        if _has_foreach_support(tensors, tensors[0].device):
            computed = list(torch._foreach_norm(tensors, norm_type))
        else:
            computed = [torch.linalg.vector_norm(t, norm_type) for t in tensors]
        for i, norm in zip(filled, computed, strict=True):
            norms[i] = norm
    return [norm for norm in norms if norm is not None]


def _total_norm(grads: list[Tensor], norm_type: float) -> Tensor:
    """``||(||g_1||_p, ..., ||g_n||_p)||_p``: the p-norm of all gradients as one vector.

    On the first gradient's device, in the dtype the per-tensor norms promote to.
    """
    if not grads:
        return torch.tensor(0.0)
    first_device = grads[0].device
    norms: list[Tensor] = []
    for bucket in _group_by_device_and_dtype(grads):
        norms.extend(_bucket_norms(bucket.grads, norm_type))
    stacked = torch.stack([norm.to(first_device) for norm in norms])
    return torch.linalg.vector_norm(stacked, norm_type)


def _scale_(grads: list[Tensor], factor: Tensor) -> None:
    """``g <- factor * g`` in place for every gradient; ``factor`` a 0-dim tensor."""
    for device, layout, bucket, _ in _group_by_device_and_dtype(grads):
        factor_here = factor.to(device)
        if layout == torch.strided and _has_foreach_support(bucket, device):
            torch._foreach_mul_(bucket, factor_here)
        else:
            for grad in bucket:
                grad.mul_(factor_here)


def _clamp_sparse_(grad: Tensor, low: float, high: float) -> None:
    """Clamp the values of a sparse COO gradient in place, after summing duplicates."""
    coalesced = grad.coalesce()
    coalesced.values().clamp_(min=low, max=high)
    if coalesced is not grad:  # grad was not coalesced: write the clamped result back
        grad.copy_(coalesced)


def _nonfinite_flags(grads: list[Tensor]) -> list[bool]:
    """For each gradient, whether it holds a NaN or an Inf (one host synchronisation).

    Uses the inf-norm ``max_j |g_j|``: it is NaN or Inf exactly when some element is (the max
    propagates NaN on CPU and CUDA) and, unlike a sum of squares, it never overflows.
    """
    if not grads:
        return []
    first_device = grads[0].device
    checked = [i for i, grad in enumerate(grads) if grad.numel() > 0]  # empty: finite
    order: list[int] = []
    flags: list[Tensor] = []
    for bucket in _group_by_device_and_dtype([grads[i] for i in checked]):
        norms = _bucket_norms(bucket.grads, math.inf)
        order.extend(checked[j] for j in bucket.indices)
        flags.append(torch.stack(norms).isfinite().logical_not_().to(first_device))
    result = [False] * len(grads)
    if flags:
        for i, bad in zip(order, torch.cat(flags).tolist(), strict=True):
            result[i] = bad
    return result


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def global_norm(params: ParamsLike, norm_type: float = 2.0) -> Tensor:
    r"""The norm of all gradients of ``params``, as if concatenated into one vector.

    .. math::

        \|g\|_p = \Big(\sum_i \|g_i\|_p^p\Big)^{1/p}
                = \big\|(\|g_1\|_p, \dots, \|g_n\|_p)\big\|_p,
        \qquad \|g\|_\infty = \max_i \|g_i\|_\infty,

    where :math:`g_i` is the gradient of parameter :math:`i`. Parameters whose ``grad`` is
    ``None`` are skipped. The per-tensor norms are one ``torch._foreach_norm`` per device and
    dtype, so the result equals :func:`torch.nn.utils.get_total_norm` of the gradients (and the
    value :func:`torch.nn.utils.clip_grad_norm_` returns) bit for bit on dense gradients.
    Modifies nothing.

    Reference: the global norm of Pascanu, Mikolov & Bengio, "On the difficulty of training
    recurrent neural networks", ICML 2013 (arXiv:1211.5063); ``optax.global_norm``.

    Args:
        params: a tensor, a module, or an iterable of tensors or of ``(name, tensor)`` pairs.
        norm_type: the order ``p > 0`` of the norm; ``float('inf')`` (or ``'inf'``) for the max.

    Returns:
        A 0-dim tensor on the first gradient's device; ``tensor(0.)`` when no parameter has a
        gradient.

    Example:
        >>> import torch
        >>> from unstuck.grad import global_norm
        >>> w, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
        >>> w.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
        >>> global_norm([w, b])
        tensor(5.)
        >>> global_norm([w, b], norm_type=float("inf"))
        tensor(4.)
    """
    p = _check_norm_type(norm_type)
    return _total_norm([entry.grad for entry in _named_grads(params)], p)


@torch.no_grad()
def clip_by_global_norm_(
    params: ParamsLike,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    r"""Scale all gradients in place so that their global norm is at most ``max_norm``.

    .. math::

        g_i \leftarrow g_i \cdot \min\Big(1, \frac{\text{max\_norm}}{\|g\|_p + 10^{-6}}\Big)

    with :math:`\|g\|_p` the :func:`global_norm`. Every gradient is scaled by the same factor,
    so the update direction is kept; gradients already inside the ball are multiplied by
    exactly 1 (unchanged). The factor stays on the device (no host synchronisation unless
    ``error_if_nonfinite``). The result equals :func:`torch.nn.utils.clip_grad_norm_` bit for
    bit on dense gradients.

    Reference: Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013 (arXiv:1211.5063), Algorithm 1; ``optax.clip_by_global_norm``.

    Args:
        params: a tensor, a module, or an iterable of tensors or of ``(name, tensor)`` pairs.
        max_norm: the largest global norm allowed, ``> 0``.
        norm_type: the order ``p > 0`` of the norm; ``float('inf')`` for the max.
        error_if_nonfinite: raise ``RuntimeError`` (and leave the gradients untouched) when the
            global norm is NaN or Inf; the message names the parameters whose gradient holds
            NaN or Inf.

    Returns:
        The global norm *before* clipping, a 0-dim tensor (``tensor(0.)`` when no parameter
        has a gradient).

    Example:
        >>> import torch
        >>> from unstuck.grad import clip_by_global_norm_
        >>> w = torch.zeros(2, requires_grad=True)
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> clip_by_global_norm_([w], max_norm=1.0)
        tensor(5.)
        >>> w.grad
        tensor([0.6000, 0.8000])
    """
    max_norm = _check_positive("max_norm", max_norm)
    p = _check_norm_type(norm_type)
    entries = _named_grads(params)
    grads = [entry.grad for entry in entries]
    total = _total_norm(grads, p)
    if not grads:
        return total
    if error_if_nonfinite and not bool(total.isfinite()):
        raise RuntimeError(_nonfinite_norm_message(entries, total, p))
    # Same arithmetic as torch.nn.utils.clip_grad_norm_; multiplying by a factor clamped to 1
    # avoids a data-dependent branch (and the device -> host synchronisation it would need).
    factor = torch.clamp(max_norm / (total + _CLIP_EPSILON), max=1.0)
    _scale_(grads, factor)
    return total


def _nonfinite_norm_message(entries: list[_NamedGrad], total: Tensor, norm_type: float) -> str:
    """Why the global norm is not finite: which gradients hold NaN or Inf, or an overflow."""
    flags = _nonfinite_flags([entry.grad for entry in entries])
    bad = [entry.name for entry, flag in zip(entries, flags, strict=True) if flag]
    head = (
        f"the global {norm_type}-norm of the gradients is {total.item()}, so they cannot be clipped"
    )
    if bad:
        cause = f"non-finite gradients (NaN or Inf) in: {', '.join(map(repr, bad))}"
    else:
        cause = (
            "every gradient is finite, so the norm overflowed "
            f"{total.dtype} (try norm_type=inf or a wider dtype)"
        )
    return f"{head}; {cause}. Pass error_if_nonfinite=False to scale them by it anyway."


@torch.no_grad()
def clip_by_value_(params: ParamsLike, clip_value: float) -> None:
    r"""Clamp every gradient element in place to ``[-clip_value, clip_value]``.

    .. math::

        g_{ij} \leftarrow \max\big(-c, \min(c, g_{ij})\big), \qquad c = \text{clip\_value}

    Unlike :func:`clip_by_global_norm_` this changes the direction of the gradient. Runs as
    ``torch._foreach_clamp_min_`` / ``torch._foreach_clamp_max_`` per device and dtype and
    equals :func:`torch.nn.utils.clip_grad_value_`. A sparse COO gradient is coalesced first
    (duplicate entries summed), then its values are clamped. NaN elements stay NaN.

    Reference: Mikolov, "Statistical Language Models Based on Neural Networks", PhD thesis,
    Brno University of Technology, 2012 (gradient clipping by value); ``optax.clip``.

    Args:
        params: a tensor, a module, or an iterable of tensors or of ``(name, tensor)`` pairs.
        clip_value: the largest magnitude allowed for an element, ``> 0``.

    Raises:
        TypeError: a gradient is complex (a complex number has no order to clamp by); the
            message names it. No gradient is modified then.

    Example:
        >>> import torch
        >>> from unstuck.grad import clip_by_value_
        >>> w = torch.zeros(3, requires_grad=True)
        >>> w.grad = torch.tensor([-2.0, 0.5, 3.0])
        >>> clip_by_value_([w], clip_value=1.0)
        >>> w.grad
        tensor([-1.0000,  0.5000,  1.0000])
    """
    limit = _check_positive("clip_value", clip_value)
    entries = _named_grads(params)
    complex_names = [entry.name for entry in entries if entry.grad.is_complex()]
    if complex_names:
        raise TypeError(
            "clip_by_value_ cannot clamp complex gradients, found in: "
            f"{', '.join(map(repr, complex_names))}; clip_by_global_norm_ handles them"
        )
    grads = [entry.grad for entry in entries]
    for device, layout, bucket, _ in _group_by_device_and_dtype(grads):
        if layout == torch.sparse_coo:
            for grad in bucket:
                _clamp_sparse_(grad, -limit, limit)
        elif _has_foreach_support(bucket, device):
            torch._foreach_clamp_min_(bucket, -limit)
            torch._foreach_clamp_max_(bucket, limit)
        else:
            for grad in bucket:
                grad.clamp_(min=-limit, max=limit)


@torch.no_grad()
def nonfinite_grads(model_or_named_params: ParamsLike) -> list[str]:
    r"""The names of the parameters whose gradient holds a NaN or an Inf, in order.

    A gradient :math:`g` is non-finite when :math:`\|g\|_\infty = \max_j |g_j|` is NaN or Inf,
    which is the case exactly when one of its elements is. The inf-norms are one
    ``torch._foreach_norm`` per device and dtype; the flags reach the host in one transfer, and
    only then are names looked up. Gradients are never modified, and no overflow can report a
    finite gradient (a max, unlike a sum of squares, does not overflow). Parameters whose
    ``grad`` is ``None`` are skipped.

    Reference: the ``found_inf`` check of mixed-precision training (Micikevicius et al.,
    "Mixed Precision Training", ICLR 2018, arXiv:1710.03740; ``torch.amp.GradScaler``), made
    per parameter so it says *where* the first NaN appeared.

    Args:
        model_or_named_params: an :class:`~torch.nn.Module` (its ``named_parameters()``), an
            iterable of ``(name, tensor)`` pairs or a ``{name: tensor}`` mapping. Plain tensors
            are accepted too and named ``params[i]`` by position.

    Returns:
        The names, in the order the parameters were given; ``[]`` when all are finite.

    Example:
        >>> import torch
        >>> from unstuck.grad import nonfinite_grads
        >>> model = torch.nn.Linear(2, 1)
        >>> model.weight.grad = torch.tensor([[1.0, float("nan")]])
        >>> model.bias.grad = torch.tensor([float("inf")])
        >>> nonfinite_grads(model)
        ['weight', 'bias']
    """
    entries = _named_grads(model_or_named_params)
    flags = _nonfinite_flags([entry.grad for entry in entries])
    return [entry.name for entry, flag in zip(entries, flags, strict=True) if flag]
