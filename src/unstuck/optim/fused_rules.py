"""Each named optimizer's chain as calls of torch's fused kernels (``kernels.py``).

A rule performs every transform of its optimizer's chain (``optimizers.py``) on a bucket, in
one pass over the parameters, gradients and state wherever the chain is elementwise:

- SGD, Adagrad, Adam/AdamW/AMSGrad: the kernel of the same name computes exactly the chain.
- RAdam (rectified steps): the Adam kernel with the step count ``inf`` (no bias corrections,
  ``denominator = sqrt(v) + eps``) and ``lr * r_t * sqrt(1 - b2^t) / (1 - b1^t)`` as its
  learning rate; decoupled weight decay keeps ``1 - lr * weight_decay`` by rescaling the decay.
  The first steps (``rho_t <= n_sma_threshold``) have no denominator: they run the reference
  chain. Ranger is RAdam with Gradient Centralization and Lookahead's sync every ``k`` steps.
- RMSprop: the Adam kernel with ``beta1 = 0`` (its first moment is the gradient itself, written
  to scratch), ``beta2 = alpha`` and the step count ``inf``. With momentum the kernel updates the
  buffer in the parameter's place: ``b <- momentum * b + g / (sqrt(v) + eps)`` is its decoupled
  decay with ``lr = -1``, ``weight_decay = momentum - 1``; then ``p <- p - lr * b``.
- LARS and RangerLARS (per-tensor trust ratios): ``fused_trust_ratio.py``.

Gradient Centralization, where a chain has it, is computed block by block in the workspace; a
rule never writes ``p.grad``. State keys and values are the reference chain's, so a checkpoint
moves freely between the paths.
"""

from __future__ import annotations

import math
from typing import Any

from unstuck.optim import kernels
from unstuck.optim import transforms as tr
from unstuck.optim.blocks import Workspace
from unstuck.optim.fused import FusedBucket, FusedRule
from unstuck.optim.fused_parts import (
    Momentum,
    chain_directions,
    grad_chunks,
    lookahead,
    lookahead_sync_,
    pick,
    rectified_scale,
    state_list,
    sync_slow_weights,
)
from unstuck.optim.fused_trust_ratio import LarsRule, RangerLarsRule

__all__ = [
    "AdagradRule",
    "AdamRule",
    "LarsRule",
    "RAdamRule",
    "RangerLarsRule",
    "RmspropRule",
    "SgdRule",
]


class AdamRule(FusedRule):
    """Adam, AdamW and AMSGrad (with Gradient Centralization when asked): the Adam kernel
    computes the chain Maximize, Centralize, weight decay (L2 or decoupled), ScaleByAdam,
    ApplyUpdate."""

    kernels = ("adam", "adamw")

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        group = b.group
        beta1, beta2 = group["betas"]
        amsgrad = group.get("amsgrad", False)
        exp_avgs, exp_avg_sqs = state_list(b, "exp_avg"), state_list(b, "exp_avg_sq")
        maxima = state_list(b, "max_exp_avg_sq") if amsgrad else []
        step = kernels.step_tensor(float(b.step), b.params[0])
        for chunk, grads in grad_chunks(b, workspace):
            kernels.adam_(
                pick(b.params, chunk), grads, pick(exp_avgs, chunk),
                pick(exp_avg_sqs, chunk), pick(maxima, chunk) if amsgrad else [], step,
                lr=float(group["lr"]), beta1=beta1, beta2=beta2,
                weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=amsgrad,
                maximize=group["maximize"],
                decoupled=group.get("decoupled_weight_decay", False),
            )
        return True


class RAdamRule(FusedRule):
    """RAdam's rectified steps on the Adam kernel; with ``lookahead``, Ranger's sync too."""

    kernels = ("adam", "adamw", "sgd")

    def __init__(self, lookahead: bool = False) -> None:
        self.lookahead = lookahead

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        group = b.group
        beta1, beta2 = group["betas"]
        scale = rectified_scale(b)
        if scale is None:
            return False  # no denominator yet: the reference chain takes this step
        lr = float(group["lr"])
        step_size = lr * scale
        weight_decay = group["weight_decay"]
        decoupled = group.get("decoupled_weight_decay", False)
        if decoupled:  # the kernel decays by 1 - step_size * weight_decay: keep 1 - lr * wd
            weight_decay = weight_decay * lr / step_size if step_size != 0 else 0.0
        exp_avgs, exp_avg_sqs = state_list(b, "exp_avg"), state_list(b, "exp_avg_sq")
        no_bias_correction = kernels.step_tensor(math.inf, b.params[0])
        # Lookahead's sync, chunk by chunk right after the chunk's update (its parameters are
        # still in cache): slow weights are read and written once, the parameters not re-read.
        slow = sync_slow_weights(b) if self.lookahead else None
        chunks = grad_chunks(b, workspace)
        if slow is not None and not b.group.get("centralize"):  # cache-sized chunks
            chunks = ((c, pick(b.grads, c)) for c in workspace.layout(b.params).all_blocks)
        for chunk, grads in chunks:
            params = pick(b.params, chunk)
            kernels.adam_(
                params, grads, pick(exp_avgs, chunk),
                pick(exp_avg_sqs, chunk), [], no_bias_correction,
                lr=step_size, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                eps=group["eps"], amsgrad=False, maximize=group["maximize"], decoupled=decoupled,
            )
            if slow is not None:
                lookahead_sync_(pick(slow, chunk), params, group["alpha"])
        if self.lookahead and slow is None:
            lookahead(b)
        return True

    def __repr__(self) -> str:
        return f"RAdamRule(lookahead={self.lookahead})"


class SgdRule(FusedRule):
    """SGD with momentum / Nesterov (and Gradient Centralization when asked) on the SGD kernel."""

    kernels = ("sgd",)

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        momentum = Momentum(b)
        for chunk, grads in grad_chunks(b, workspace):
            momentum.step(chunk, grads, weight_decay=b.group["weight_decay"],
                          maximize=b.group["maximize"])
        return True


class AdagradRule(FusedRule):
    """Adagrad on its kernel (torch has it for CPU only)."""

    kernels = ("adagrad",)

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        group = b.group
        sums = state_list(b, "sum", lambda p: tr.ScaleByAdagrad().init(p, group)["sum"])
        step = kernels.step_tensor(float(b.step), b.params[0])
        for chunk, grads in grad_chunks(b, workspace):
            kernels.adagrad_(
                pick(b.params, chunk), grads, pick(sums, chunk), step,
                lr=float(group["lr"]), lr_decay=group["lr_decay"],
                weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
            )
        return True


class RmspropRule(FusedRule):
    """RMSprop (not centered) on the Adam kernel: ``beta1 = 0``, ``beta2 = alpha``, no bias
    correction; the direction (gradient, L2 term included) is its own first moment."""

    kernels = ("adam", "adamw", "sgd")

    def unsupported(self, group: dict[str, Any]) -> str | None:
        if group["centered"]:
            return "centered=True has no fused kernel (sqrt(v - mean^2) is not Adam's)"
        if group["alpha"] == 1:
            return "alpha=1 has no fused kernel (1 - alpha**inf is 0)"
        return None

    def __call__(self, b: FusedBucket, workspace: Workspace) -> bool:
        group = b.group
        lr, alpha, eps = float(group["lr"]), group["alpha"], group["eps"]
        momentum = group["momentum"]
        square_avgs = state_list(b, "square_avg")
        buffers = state_list(b, "momentum_buffer") if momentum > 0 else []
        no_bias_correction = kernels.step_tensor(math.inf, b.params[0])
        layout = workspace.layout(b.params)
        for block, _, directions in chain_directions(
            b, workspace, layout.all_blocks, group["weight_decay"]
        ):
            if momentum > 0:  # buffer <- momentum * buffer + u / (sqrt(sq) + eps)
                kernels.adam_(
                    pick(buffers, block), directions, directions,
                    pick(square_avgs, block), [], no_bias_correction,
                    lr=-1.0, beta1=0.0, beta2=alpha, weight_decay=momentum - 1.0, eps=eps,
                    amsgrad=False, maximize=False, decoupled=True,
                )
                kernels.axpy_(pick(b.params, block), pick(buffers, block), -lr)
            else:
                kernels.adam_(
                    pick(b.params, block), directions, directions,
                    pick(square_avgs, block), [], no_bias_correction,
                    lr=lr, beta1=0.0, beta2=alpha, weight_decay=0.0, eps=eps,
                    amsgrad=False, maximize=False, decoupled=False,
                )
        return True
