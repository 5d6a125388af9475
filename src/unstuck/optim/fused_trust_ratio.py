"""LARS and RangerLARS on torch's fused kernels: per-tensor trust ratios, then the update.

A trust ratio multiplies every element of a tensor's update by a number that depends on norms
of the whole tensor, so a step is a reduction pass, then the update pass. Small tensors are
stacked in same-shape blocks (``blocks.py``), where both passes run from cache with one
reduction per block. A tensor larger than a block takes the two passes over ranges of rows:
each range is read for its share of the norms (and, for RangerLARS, its moments and direction),
then again for the update, from cache where it fits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from unstuck.optim import blocks, kernels
from unstuck.optim.blocks import Workspace
from unstuck.optim.fused import FusedBucket, FusedRule
from unstuck.optim.fused_parts import (
    Momentum,
    chain_directions,
    direction_into_,
    lookahead,
    lookahead_sync_,
    pick,
    rectified_scale,
    state_list,
    sync_slow_weights,
)
from unstuck.optim.transforms import lars_host_ratio, lars_ratio

__all__ = ["LarsRule", "RangerLarsRule", "zeroing_decay"]


class LarsRule(FusedRule):
    """LARS: trust ratios, then the SGD kernel (momentum / Nesterov). Small tensors are stacked
    in same-shape blocks; a tensor larger than a block takes two passes over ranges of rows
    (the norms, then the scaled direction and the update), each range staying in cache."""

    kernels = ("sgd",)

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        group = b.group
        layout = workspace.layout(b.params)
        momentum = Momentum(b)
        scaled = layout.all_tensor_blocks
        if group["exclude_1d"]:  # at most 1-D: plain momentum, no ratio, no weight decay
            scaled = layout.multi_tensor_blocks
            if layout.flat:
                flat = blocks.Block(layout.flat, torch.Size())
                momentum.step(flat, pick(b.grads, flat), weight_decay=0.0,
                              maximize=group["maximize"])
        in_place = _ratio_in_kernel(group, b.params[0].device, momentum)
        for block in scaled:
            if in_place and block.shape.numel() >= blocks.LARGE_TENSOR:
                self._in_kernel(b, block, momentum)
                continue
            rows = layout.row_blocks(block)
            if rows is None:
                self._stacked(b, block, workspace, momentum)
            else:
                self._two_pass(b, block, rows, workspace, momentum)
        return True

    def _in_kernel(self, b: FusedBucket, block: blocks.Block, momentum: Momentum) -> None:
        """Large tensors, each in two passes over its own memory: the norms (one call for the
        block), then one SGD kernel call that applies the ratio ``r`` itself, read on the
        host: its L2 term makes ``g' = ±g + wd * p`` and its dampening ``1 - r`` adds
        ``r g'`` to the buffer (without momentum, ``lr * r`` steps along ``g'``). No
        direction is written anywhere."""
        group = b.group
        params, grads = block.select(b.params), block.select(b.grads)
        buffers = block.select(momentum.buffers) if momentum.momentum != 0 else None
        norms = torch._foreach_norm([*params, *grads])
        n = len(params)
        lr, wd, mu = float(group["lr"]), group["weight_decay"], momentum.momentum
        for k in range(n):
            r = _host_ratio(group, float(norms[k]), float(norms[n + k]))
            kernels.sgd_(
                [params[k]], [grads[k]], [buffers[k]] if buffers is not None else [],
                lr=lr if buffers is not None else lr * r, momentum=mu,
                dampening=1.0 - r if buffers is not None else 0.0, nesterov=False,
                weight_decay=wd, maximize=group["maximize"], first_step=False,
            )

    def _ratios(self, group: dict[str, Any], p_norms: Tensor, u_norms: Tensor) -> Tensor:
        return lars_ratio(p_norms, u_norms, group["weight_decay"], group["trust_coefficient"],
                          group["eps"])

    def _stacked(
        self, b: FusedBucket, block: blocks.Block, workspace: Workspace, momentum: Momentum
    ) -> None:
        group = b.group
        members = block.select(b.grads)
        if len(members) == 1 and members[0].shape == block.shape and not _centralized(
            group, block
        ):  # one tensor: its norms read in place, its direction built in one op
            (p,), (g,) = block.select(b.params), members
            ratio = self._ratios(group, torch.linalg.vector_norm(p), torch.linalg.vector_norm(g))
            u, directions = workspace.block(block, g)
            _scaled_direction(group, u[0], g, p, ratio)
            momentum.step(block, directions, weight_decay=0.0, maximize=False)
            return
        ((_, u, directions),) = chain_directions(b, workspace, [block])
        p_norms, p_whole = blocks.member_norms(block, b.params, workspace)
        ratios = self._ratios(group, p_norms, blocks.norms(u))
        if group["weight_decay"] != 0:
            blocks.add_members_(u, directions, block, b.params, p_whole, group["weight_decay"])
        u.mul_(blocks.broadcastable(ratios, u))
        momentum.step(block, directions, weight_decay=0.0, maximize=False)

    def _two_pass(
        self, b: FusedBucket, block: blocks.Block, rows: list[blocks.Block],
        workspace: Workspace, momentum: Momentum,
    ) -> None:
        group = b.group
        (p,), (g,) = block.select(b.params), block.select(b.grads)
        p_norm = torch.linalg.vector_norm(p)
        if _centralized(group, block):  # the norm of the centralized gradient, range by range
            u_norm = torch.linalg.vector_norm(torch.stack(
                [blocks.norms(u)[0] for _, u, _ in chain_directions(b, workspace, rows)]
            ))
            ratio = self._ratios(group, p_norm, u_norm)
            for chunk, u, directions in chain_directions(b, workspace, rows,
                                                         group["weight_decay"]):
                u.mul_(ratio)
                momentum.step(chunk, directions, weight_decay=0.0, maximize=False)
            return
        ratio = self._ratios(group, p_norm, torch.linalg.vector_norm(g))
        for chunk in rows:
            u, directions = workspace.block(chunk, g)
            _scaled_direction(group, u[0], g[chunk.rows], p[chunk.rows], ratio)
            momentum.step(chunk, directions, weight_decay=0.0, maximize=False)


def reads_on_host(device: torch.device) -> bool:
    """Whether trust ratios are read on the host (Python floats passed to the kernels): on
    the CPU, where reading a norm is free; an accelerator keeps them on the device (a read
    would wait for it) and scales the direction instead."""
    return device.type == "cpu"


def zeroing_decay(scale: float, device: torch.device) -> float | None:
    r"""The decoupled weight decay ``w = 1 / scale`` that makes the CPU Adam kernel, given the
    direction ``u`` as both its parameters and its gradients, write RangerLARS' ``d`` over
    ``u`` with no zeroed buffer: it computes

    .. math:: d = u\,(1 - \text{scale}\cdot w) - \text{scale}\, m / (\sqrt{v} + \epsilon),

    where ``1 - scale * w`` is 0 or, when the product rounds (or the build fuses it into an
    FMA), a residual of at most ``2**-52``: ``d`` is the zeroed-buffer result up to
    ``|u| * 2**-52``, far below float32's and float64's rounding of the later steps. Every
    element of ``u`` is read before it is written (the moments are exactly those of the
    zeroed path), and a non-finite ``u`` gives NaN only where ``m`` and ``d`` are non-finite
    anyway. ``None`` off the CPU (other kernels round ``scale * w`` to the parameters' dtype
    first) and for a zero or non-finite ``scale``."""
    if device.type != "cpu" or not math.isfinite(scale) or scale == 0:
        return None
    return 1.0 / scale


def _ratio_in_kernel(group: dict[str, Any], device: torch.device, momentum: Momentum) -> bool:
    """Whether :meth:`LarsRule._in_kernel` applies: on the CPU (the ratio is read on the
    host, which would synchronize an accelerator), the raw gradient as the direction (no
    centralization), no Nesterov term (it adds the unscaled ``g'``) and every buffer
    already there (a first step sets ``b = g'``, unscaled)."""
    return (reads_on_host(device) and not group.get("centralize")
            and not group.get("nesterov", False) and not momentum.fresh)


def _host_ratio(group: dict[str, Any], p_norm: float, u_norm: float) -> float:
    """:meth:`LarsRule._ratios` of one tensor, on the host."""
    return lars_host_ratio(p_norm, u_norm, group["weight_decay"], group["trust_coefficient"],
                           group["eps"])


def _centralized(group: dict[str, Any], block: blocks.Block) -> bool:
    return bool(group.get("centralize")) and len(block.shape) > 1


def _scaled_direction(
    group: dict[str, Any], out: Tensor, g: Tensor, p: Tensor, ratio: Tensor
) -> None:
    """``out <- ratio * (±g + weight_decay * p)`` (no centralization) in one or two passes:
    the gradient is read in place, not copied first."""
    wd, sign = group["weight_decay"], -1.0 if group["maximize"] else 1.0
    if wd != 0:  # (-g + wd p) r = (g - wd p)(-r), exactly
        torch.add(g, p, alpha=sign * wd, out=out)
        out.mul_(ratio * sign)
    else:
        torch.mul(g, ratio * sign, out=out)


class RangerLarsRule(FusedRule):
    """RangerLARS' rectified steps: the Adam kernel writes ``-u`` (the RAdam direction) over the
    chain's direction in the workspace on the CPU (:func:`zeroing_decay`), into a zeroed
    buffer elsewhere (moments updated on the way); then weight decay, the clamped trust ratio,
    the update, Lookahead. A tensor larger than a block takes two passes over ranges of rows:
    moments, ``-u`` and the norms, then the update."""

    kernels = ("adam", "sgd")

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        group = b.group
        beta1, beta2 = group["betas"]
        scale = rectified_scale(b)
        if scale is None:
            return False  # no denominator yet: the reference chain takes this step
        exp_avgs, exp_avg_sqs = state_list(b, "exp_avg"), state_list(b, "exp_avg_sq")
        no_bias_correction = kernels.step_tensor(math.inf, b.params[0])
        layout = workspace.layout(b.params)
        over_u = zeroing_decay(scale, b.params[0].device)  # d written over u: see there

        def direction(chunk: blocks.Block, u_views: list[Tensor], d: Tensor,
                      d_views: list[Tensor]) -> tuple[Tensor, Tensor]:
            """``d <- -(u_radam + wd * p)`` for the chunk (moments updated); returns the
            norms of the chunk's parameters and of ``d``. ``d`` is ``u`` itself when
            ``over_u`` is set, else a separate buffer."""
            if over_u is not None:  # d <- u * (1 - scale * over_u) - scale * m / (...)
                kernels.adam_(
                    d_views, u_views, pick(exp_avgs, chunk), pick(exp_avg_sqs, chunk), [],
                    no_bias_correction, lr=scale, beta1=beta1, beta2=beta2,
                    weight_decay=over_u, eps=group["eps"], amsgrad=False, maximize=False,
                    decoupled=True,
                )
            else:
                d.zero_()
                kernels.adam_(  # moments from u; d <- 0 - scale * m / (sqrt(v) + eps)
                    d_views, u_views, pick(exp_avgs, chunk), pick(exp_avg_sqs, chunk), [],
                    no_bias_correction, lr=scale, beta1=beta1, beta2=beta2, weight_decay=0.0,
                    eps=group["eps"], amsgrad=False, maximize=False, decoupled=False,
                )
            p_norms, p_whole = blocks.member_norms(chunk, b.params, workspace)
            if group["weight_decay"] != 0:
                blocks.add_members_(d, d_views, chunk, b.params, p_whole,
                                    -group["weight_decay"])
            return p_norms, blocks.norms(d)

        lr = float(group["lr"])
        host = reads_on_host(b.params[0].device)
        slow = sync_slow_weights(b)  # Lookahead's sync block by block, while it is in cache
        for block in layout.all_tensor_blocks:
            rows = layout.row_blocks(block)
            if rows is None:  # one pass: the block stays in cache
                ((_, u, u_views),) = chain_directions(b, workspace, [block])
                if over_u is not None:
                    d, d_views = u, u_views
                else:
                    d, d_views = workspace.block(block, b.params[block.indices[0]], slot=2)
                p_norms, d_norms = direction(block, u_views, d, d_views)
                params = pick(b.params, block)
                if host and block.shape.numel() >= blocks.LARGE_TENSOR:  # lr * r per tensor
                    for p, d_view, pn, dn in zip(params, d_views, p_norms.tolist(),
                                                 d_norms.tolist(), strict=True):
                        kernels.axpy_([p], [d_view], lr * self._host_ratio(group, pn, dn))
                else:  # small tensors: one multiplication, one kernel call for the block
                    d.mul_(blocks.broadcastable(self._ratios(group, p_norms, d_norms), d))
                    kernels.axpy_(params, d_views, lr)
                if slow is not None:
                    lookahead_sync_(pick(slow, block), params, group["alpha"])
                continue
            (p,) = block.select(b.params)  # a large tensor: d for all of it, rows in cache
            d_all = workspace.get(p, p.numel(), slot=2).view(p.shape)
            squares = []  # per range: the norms of p and d
            for chunk in rows:
                d = d_all[chunk.rows].unsqueeze(0)
                if over_u is not None:  # u written where d goes
                    direction_into_(b, chunk, d)
                    u_views = [d[0]]
                else:
                    ((_, _, u_views),) = chain_directions(b, workspace, [chunk])
                squares.append(torch.cat(direction(chunk, u_views, d, [d[0]])))
            p_norm, d_norm = torch.linalg.vector_norm(torch.stack(squares), dim=0)
            if host:
                step = lr * self._host_ratio(group, float(p_norm), float(d_norm))
            else:
                ratio = self._ratios(group, p_norm, d_norm)
            for chunk in rows:  # the update, range by range (d is read once, from cache)
                d = d_all[chunk.rows]
                if not host:
                    d.mul_(ratio)
                kernels.axpy_([p[chunk.rows]], [d], step if host else lr)
                if slow is not None:
                    lookahead_sync_(pick(slow, chunk), [p[chunk.rows]], group["alpha"])
        if slow is None:
            lookahead(b)
        return True

    @staticmethod
    def _host_ratio(group: dict[str, Any], p_norm: float, d_norm: float) -> float:
        """:meth:`_ratios` of one tensor, on the host."""
        if p_norm > 0 and d_norm > 0:
            return min(max(p_norm / d_norm, 0.0), group["max_trust_ratio"])
        return 1.0

    def _ratios(self, group: dict[str, Any], p_norms: Tensor, d_norms: Tensor) -> Tensor:
        return torch.where(
            (p_norms > 0) & (d_norms > 0),
            (p_norms / d_norms).clamp(0.0, group["max_trust_ratio"]),
            torch.ones_like(p_norms),
        )
