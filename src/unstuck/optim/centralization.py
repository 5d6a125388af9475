"""Gradient Centralization for any optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from unstuck.optim.wrapper import OptimizerWrapper

__all__ = ["GradientCentralization", "centralize", "centralized"]


def centralized(grad: Tensor) -> Tensor:
    r"""Gradient Centralization of one tensor (a new tensor; 0-D and 1-D are returned as is).

    .. math:: \hat g = g - \operatorname{mean}_{\text{all dims but the first}}(g)

    Reference: Yong, Huang, Hua & Zhang, "Gradient Centralization: A New Optimization Technique
    for Deep Neural Networks", ECCV 2020.
    """
    if grad.dim() <= 1:
        return grad
    return grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)


class GradientCentralization(OptimizerWrapper):
    """Runs the inner optimizer on centralized gradients, leaving ``p.grad`` as it was.

    For the step only, each gradient with more than one dimension is replaced by its
    centralized copy (:func:`centralized`); the original gradient tensors are put back after
    the inner step, so ``step()`` does not modify ``p.grad``. Made by :func:`centralize`.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        originals: list[tuple[Tensor, Tensor]] = []
        try:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and p.grad.dim() > 1 and not p.grad.is_sparse:
                        originals.append((p, p.grad))
                        p.grad = centralized(p.grad)
            self.step_inner()
        finally:
            for p, grad in originals:
                p.grad = grad
        return loss


def centralize(optimizer: Optimizer) -> GradientCentralization:
    """Gradient Centralization (Yong et al., 2020) for any ``torch.optim.Optimizer``.

    unstuck's own optimizers take ``centralize=True`` instead (no wrapper needed); this
    wrapper adds it to any other, e.g. torch's.

    Example:
        >>> opt = unstuck.centralize(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    """
    return GradientCentralization(optimizer)
