"""The pieces the fused rules share: state lists, chunks, directions, momentum, Lookahead.

A *chunk* is what one kernel call takes: every tensor of a bucket (``None``) or a
:class:`~unstuck.optim.blocks.Block` (same-shape tensors, or a range of rows of one large
tensor). The direction ``u`` of a chain (gradient, maximized, centralized, plus L2 weight
decay) is built block by block in the optimizer's workspace, so ``p.grad`` is never written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import repeat
from operator import is_, itemgetter, methodcaller

import torch
from torch import Tensor

from unstuck.optim import blocks, kernels
from unstuck.optim import multi_tensor as mt
from unstuck.optim import transforms as tr
from unstuck.optim.blocks import Workspace
from unstuck.optim.fused import FusedBucket

__all__ = [
    "Chunk",
    "Momentum",
    "chain_directions",
    "direction_into_",
    "grad_chunks",
    "lookahead",
    "lookahead_sync_",
    "pick",
    "rectified_scale",
    "state_list",
    "sync_slow_weights",
    "zeros",
]

Chunk = blocks.Block | None  # None: every tensor of the bucket
_SLOW = methodcaller("get", "lookahead_slow")


def zeros(p: Tensor) -> Tensor:
    """Zeros like ``p`` (its layout too): a fresh moment."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def state_list(
    b: FusedBucket, name: str, init: Callable[[Tensor], Tensor] = zeros
) -> list[Tensor]:
    """The state tensors ``name`` of the bucket, created by ``init(param)`` where missing."""
    try:
        return list(map(itemgetter(name), b.states))
    except KeyError:
        out = []
        for p, s in zip(b.params, b.states, strict=True):
            value = s.get(name)
            if value is None:
                value = s[name] = init(p)
            out.append(value)
        return out


def rectified_scale(b: FusedBucket) -> float | None:
    """RAdam's step scale for the bucket's step (:func:`~unstuck.optim.transforms.radam_scale`);
    ``None`` before the variance can be rectified (the reference chain takes that step)."""
    beta1, beta2 = b.group["betas"]
    return tr.radam_scale(b.step, beta1, beta2, b.group.get("n_sma_threshold", 5.0))


def pick(xs: list[Tensor], chunk: Chunk) -> list[Tensor]:
    """The chunk's members of a per-parameter list (the list itself for ``None``; kernels do
    not modify their lists)."""
    return xs if chunk is None else chunk.select(xs)


def grad_chunks(b: FusedBucket, workspace: Workspace) -> Iterator[tuple[Chunk, list[Tensor]]]:
    """The gradients in chunks ``(chunk, gradients)``, centralized where the group says so
    (one chunk of the raw gradients otherwise). Maximize is left to the kernels."""
    if b.group.get("centralize"):
        yield from blocks.centered_grads(workspace.layout(b.params), b.grads, workspace)
    else:
        yield None, b.grads


def chain_directions(
    b: FusedBucket, workspace: Workspace, which: list[blocks.Block], weight_decay: float = 0.0
) -> Iterator[tuple[blocks.Block, Tensor, list[Tensor]]]:
    """The chain's direction ``u = ±GC(g) + weight_decay * p`` for each block of ``which``, as
    a writable ``(N, *shape)`` tensor in the workspace (slot 0; slot 1 holds parameters) with
    its per-tensor views. A block of one tensor is read in place (no copy first)."""
    group = b.group
    centralize, maximize = group.get("centralize"), group["maximize"]
    for block in which:
        members = block.select(b.grads)
        if len(members) > 1 or members[0].shape != block.shape:
            if centralize and len(block.shape) > 1:
                u, views = blocks.centered_block(block, b.grads, workspace)
            else:
                u, views = blocks.stacked(block, b.grads, workspace)
            if maximize:
                u.neg_()
            if weight_decay != 0:
                u.add_(blocks.stacked_view(block, b.params, workspace, slot=1),
                       alpha=weight_decay)
            yield block, u, views
            continue
        u, views = workspace.block(block, members[0], slot=0)
        direction_into_(b, block, u, weight_decay)
        yield block, u, views


def direction_into_(
    b: FusedBucket, block: blocks.Block, u: Tensor, weight_decay: float = 0.0
) -> None:
    """``u <- ±GC(g) + weight_decay * p`` for a block of one tensor (whole, or a range of its
    rows), the gradient read in place; ``u`` is the block as an ``(1, *shape)`` tensor."""
    group = b.group
    centralize, maximize = group.get("centralize"), group["maximize"]
    g = block.select(b.grads)[0].unsqueeze(0)
    p = block.select(b.params)[0].unsqueeze(0) if weight_decay != 0 else g
    if centralize and u.dim() > 2:
        blocks.centralize_rows_(u, source=g)
        if maximize:
            u.neg_()
    elif maximize:
        torch.neg(g, out=u)
    elif weight_decay != 0:
        torch.add(g, p, alpha=weight_decay, out=u)
        return
    else:
        u.copy_(g)
    if weight_decay != 0:
        u.add_(p, alpha=weight_decay)


def lookahead(b: FusedBucket) -> None:
    """Lookahead's sync every ``k`` steps (:class:`~unstuck.optim.transforms.LookaheadSync`)."""
    if b.step % b.group["k"] == 0:
        slow = state_list(b, "lookahead_slow", tr.slow_copy)
        lookahead_sync_(slow, b.params, b.group["alpha"])


def sync_slow_weights(b: FusedBucket) -> list[Tensor] | None:
    """The slow weights when this step ends with Lookahead's sync and every parameter has
    them (so that the sync may run chunk by chunk, each chunk right after its update);
    ``None`` otherwise (no sync, or :func:`lookahead` creates the missing ones after the
    update, as the reference chain does)."""
    if b.step % b.group["k"] != 0:
        return None
    slow = list(map(_SLOW, b.states))
    return None if any(map(is_, slow, repeat(None))) else slow


def lookahead_sync_(slow: list[Tensor], fast: list[Tensor], alpha: float) -> None:
    """:func:`~unstuck.optim.transforms.lookahead_sync_` with the interpolation on the SGD
    kernel (``slow <- slow + alpha * (fast - slow)``, then ``fast <- slow``); the tensors must be
    dense float32/float64 on a device with the kernel."""
    kernels.lerp_(slow, fast, alpha)
    mt.copy_(fast, slow)


class Momentum:
    """:class:`~unstuck.optim.transforms.SgdMomentum` and the update, chunk by chunk, on the
    fused SGD kernel. Buffers missing at the start of the step (a parameter's first step) are
    created for whole tensors and start as the direction in every chunk that covers them."""

    def __init__(self, b: FusedBucket) -> None:
        self.b, self.momentum = b, b.group["momentum"]
        self.fresh: set[int] = set()
        self.buffers: list[Tensor] = []
        if self.momentum == 0:
            return
        try:
            self.buffers = [s["momentum_buffer"] for s in b.states]
        except KeyError:
            self.fresh = {i for i, s in enumerate(b.states) if "momentum_buffer" not in s}
            for i in self.fresh:
                b.states[i]["momentum_buffer"] = torch.empty_like(
                    b.params[i], memory_format=torch.preserve_format
                )
            self.buffers = [s["momentum_buffer"] for s in b.states]

    def step(self, chunk: Chunk, grads: list[Tensor], *, weight_decay: float,
             maximize: bool) -> None:
        group = self.b.group
        params = pick(self.b.params, chunk)
        buffers = pick(self.buffers, chunk) if self.momentum != 0 else []

        def run(which: list[int] | None, first_step: bool) -> None:
            def sub(xs: list[Tensor]) -> list[Tensor]:
                return xs if which is None else [xs[k] for k in which]

            kernels.sgd_(
                sub(params), sub(grads), sub(buffers) if buffers else [],
                lr=float(group["lr"]), momentum=self.momentum,
                dampening=group.get("dampening", 0.0), nesterov=group.get("nesterov", False),
                weight_decay=weight_decay, maximize=maximize, first_step=first_step,
            )

        positions = range(len(params)) if chunk is None else chunk.indices
        first = [k for k, i in enumerate(positions) if i in self.fresh] if self.fresh else []
        if not first:
            run(None, False)
            return
        run(first, True)
        if len(first) < len(params):
            first_set = set(first)
            run([k for k in range(len(params)) if k not in first_set], False)
